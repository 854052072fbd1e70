//! `Value(typecode, v)`: `multiprocessing.Value`'s API on a memspace `Value<T>` of the
//! typecode's type, with its own `RLock` for `get_lock()` (each read and write of `.value` is
//! atomic by itself; `with v.get_lock(): v.value += 1` makes a read-modify-write atomic).

use pyo3::prelude::*;

use crate::errors;
use crate::typecode::{self, WithLock};

macro_rules! typed {
    ($($code:literal => $variant:ident($t:ty)),+ $(,)?) => {
        /// A memspace value of the type a typecode names.
        enum Typed {
            $($variant(memspace::Value<$t>),)+
        }

        typecode::impl_typed!(Typed, Value, "Value", $($code => $variant),+);

        impl Typed {
            const CODES: &'static str = concat!($($code),+);

            fn new(code: &str, name: Option<&str>, initial: &Bound<'_, PyAny>) -> PyResult<Self> {
                match code {
                    $($code => {
                        let v: $t = initial.extract()?;
                        let made = match name {
                            None => memspace::Value::new(v),
                            Some(name) => memspace::Value::create(name, v),
                        };
                        made.map(Typed::$variant).map_err(|e| errors::to_py(&e))
                    })+
                    _ => Err(typecode::unknown("Value", code, Self::CODES)),
                }
            }

            fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                match self {
                    $(Typed::$variant(v) => {
                        let got = py.detach(|| v.get()).map_err(|e| errors::to_py(&e))?;
                        Ok(got.into_pyobject(py)?.into_any())
                    })+
                }
            }

            fn set(&self, py: Python<'_>, new: &Bound<'_, PyAny>) -> PyResult<()> {
                match self {
                    $(Typed::$variant(v) => {
                        let new: $t = new.extract()?;
                        py.detach(|| v.set(new)).map_err(|e| errors::to_py(&e))
                    })+
                }
            }
        }
    };
}

typecode::with_typecodes!(typed);

/// One number shared by processes, as `multiprocessing.Value`.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct Value {
    inner: WithLock<Typed>,
}

typecode::with_lock_pymethods!(Value, "value", {
    /// An anonymous value of `typecode` ('i', 'd', ...) holding `value`.
    #[new]
    #[pyo3(signature = (typecode, value = None))]
    fn new(py: Python<'_>, typecode: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let zero = 0i64.into_pyobject(py)?.into_any();
        let value = Typed::new(typecode, None, value.unwrap_or(&zero))?;
        let inner = WithLock::anonymous(py, typecode, value)?;
        Ok(Self { inner })
    }

    /// Creates the value `name` (and its lock `name.lock`).
    #[staticmethod]
    #[pyo3(signature = (name, typecode, value = None))]
    fn create(
        py: Python<'_>,
        name: &str,
        typecode: &str,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let zero = 0i64.into_pyobject(py)?.into_any();
        let value = Typed::new(typecode, Some(name), value.unwrap_or(&zero))?;
        let inner = WithLock::named(py, name, typecode, value)?;
        Ok(Self { inner })
    }

    /// Opens a value and its lock by the names they travel as.
    #[staticmethod]
    fn reopen(py: Python<'_>, typecode: &str, value: &str, lock: &str) -> PyResult<Self> {
        let inner = WithLock::reopen(py, typecode, value, lock)?;
        Ok(Self { inner })
    }

    /// The value.
    #[getter(value)]
    fn get_value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inner.typed.get(py)
    }

    #[setter(value)]
    fn set_value(&self, py: Python<'_>, new: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner.typed.set(py, new)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<memspace.Value({:?}, {})>",
            self.inner.typecode,
            self.inner.typed.get(py)?.repr()?
        ))
    }
});
