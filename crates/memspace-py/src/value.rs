//! `Value(typecode, v)`: `multiprocessing.Value`'s API on a memspace `Value<T>` of the
//! typecode's type, with its own `RLock` for `get_lock()` (each read and write of `.value` is
//! atomic by itself; `with v.get_lock(): v.value += 1` makes a read-modify-write atomic).

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::lock::{RLock, reduce, transport};
use crate::{errors, typecode};

macro_rules! typed {
    ($($code:literal => $variant:ident($t:ty)),+ $(,)?) => {
        /// A memspace value of the type a typecode names.
        enum Typed {
            $($variant(memspace::Value<$t>),)+
        }

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
                    _ => Err(unknown(code)),
                }
            }

            fn open(code: &str, name: &str) -> PyResult<Self> {
                match code {
                    $($code => memspace::Value::open(name)
                        .map(Typed::$variant)
                        .map_err(|e| errors::to_py(&e)),)+
                    _ => Err(unknown(code)),
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

            fn transport(&self) -> PyResult<String> {
                match self {
                    $(Typed::$variant(v) => transport(v),)+
                }
            }

            fn name(&self) -> &str {
                match self {
                    $(Typed::$variant(v) => v.name().as_str(),)+
                }
            }

            fn unlink(&self) -> PyResult<()> {
                match self {
                    $(Typed::$variant(v) => v.unlink().map_err(|e| errors::to_py(&e)),)+
                }
            }
        }
    };
}

typecode::with_typecodes!(typed);

fn unknown(code: &str) -> PyErr {
    typecode::unknown("Value", code, Typed::CODES)
}

/// One number shared by processes, as `multiprocessing.Value`.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct Value {
    typecode: String,
    value: Typed,
    lock: Py<RLock>,
}

/// The name of a named value's lock.
fn lock_name(name: &str) -> String {
    format!("{name}.lock")
}

#[pymethods]
impl Value {
    /// An anonymous value of `typecode` ('i', 'd', ...) holding `value`.
    #[new]
    #[pyo3(signature = (typecode, value = None))]
    fn new(py: Python<'_>, typecode: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let zero = 0i64.into_pyobject(py)?.into_any();
        let value = Typed::new(typecode, None, value.unwrap_or(&zero))?;
        let lock = Py::new(py, RLock::new()?)?;
        Ok(Self {
            typecode: typecode.to_owned(),
            value,
            lock,
        })
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
        let lock = RLock::create(&lock_name(name)).and_then(|lock| Py::new(py, lock));
        match lock {
            Ok(lock) => Ok(Self {
                typecode: typecode.to_owned(),
                value,
                lock,
            }),
            Err(err) => {
                // Without its lock the value is of no use: take its name back.
                let _ = value.unlink();
                Err(err)
            }
        }
    }

    /// Opens the existing value `name` of `typecode`.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str, typecode: &str) -> PyResult<Self> {
        Self::reopen(py, typecode, name, &lock_name(name))
    }

    /// Opens a value and its lock by the names they travel as.
    #[staticmethod]
    fn reopen(py: Python<'_>, typecode: &str, value: &str, lock: &str) -> PyResult<Self> {
        Ok(Self {
            typecode: typecode.to_owned(),
            value: Typed::open(typecode, value)?,
            lock: Py::new(py, RLock::open(lock)?)?,
        })
    }

    /// The value.
    #[getter(value)]
    fn get_value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.value.get(py)
    }

    #[setter(value)]
    fn set_value(&self, py: Python<'_>, new: &Bound<'_, PyAny>) -> PyResult<()> {
        self.value.set(py, new)
    }

    /// The lock that makes several accesses atomic together.
    fn get_lock(&self, py: Python<'_>) -> Py<RLock> {
        self.lock.clone_ref(py)
    }

    /// `get_lock().acquire(...)`.
    #[pyo3(signature = (block = true, timeout = -1.0))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: f64) -> PyResult<bool> {
        self.lock.get().acquire(py, block, timeout)
    }

    /// `get_lock().release()`.
    fn release(&self) -> PyResult<()> {
        self.lock.get().release()
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, -1.0)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release()
    }

    /// The typecode.
    #[getter]
    fn typecode(&self) -> &str {
        &self.typecode
    }

    /// The value's name.
    #[getter]
    fn name(&self) -> &str {
        self.value.name()
    }

    /// Removes the names of the value and of its lock (processes that have them open keep
    /// them).
    fn unlink(&self) -> PyResult<()> {
        self.value.unlink()?;
        self.lock.get().unlink()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let lock = transport(self.lock.get().handle())?;
        reduce(
            py,
            "Value",
            [
                self.typecode.clone().into_pyobject(py)?.into_any(),
                self.value.transport()?.into_pyobject(py)?.into_any(),
                lock.into_pyobject(py)?.into_any(),
            ],
        )
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<memspace.Value({:?}, {})>",
            self.typecode,
            self.value.get(py)?.repr()?
        ))
    }
}
