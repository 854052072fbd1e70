//! The typecodes `Value` and `Array` take: those of Python's `array` module, each with the
//! Rust number type it is stored as (a C `long` is 64 bits on Linux).

/// Calls `$callback! { "b" => I8(i8), ... }` with every typecode, the name of its variant and
/// its Rust type, so that `Value` and `Array` dispatch over one list.
macro_rules! with_typecodes {
    ($callback:ident) => {
        $callback! {
            "b" => I8(i8), "B" => U8(u8), "h" => I16(i16), "H" => U16(u16),
            "i" => I32(i32), "I" => U32(u32), "l" => Long(i64), "L" => ULong(u64),
            "q" => I64(i64), "Q" => U64(u64), "f" => F32(f32), "d" => F64(f64),
        }
    };
}

pub(crate) use with_typecodes;

// 'l' and 'L' are a C `long`, stored as 64 bits: true on 64-bit Linux, which memspace runs on.
const _: () = assert!(size_of::<std::ffi::c_long>() == 8);

/// The error for a typecode not in the list `known`.
pub(crate) fn unknown(what: &str, code: &str, known: &str) -> pyo3::PyErr {
    pyo3::exceptions::PyValueError::new_err(format!(
        "unknown typecode {code:?}: memspace's {what} takes one of {known:?} (as the array module)"
    ))
}

/// What `Value` and `Array` share: the typed handle of a typecode, and the `RLock` that
/// `get_lock()` returns, named after the handle (`NAME.lock`) when the handle is named.
pub(crate) struct WithLock<T> {
    pub(crate) typecode: String,
    pub(crate) typed: T,
    pub(crate) lock: pyo3::Py<crate::lock::RLock>,
}

/// A typed handle of `Value` or `Array`: one variant per typecode.
pub(crate) trait Typed: Sized {
    /// Opens the object `name` of the type `code` names.
    fn open(code: &str, name: &str) -> pyo3::PyResult<Self>;
    fn name(&self) -> &str;
    fn unlink(&self) -> pyo3::PyResult<()>;
    /// The name it travels as to another process.
    fn transport(&self) -> pyo3::PyResult<String>;
}

/// The name of a named object's lock.
pub(crate) fn lock_name(name: &str) -> String {
    format!("{name}.lock")
}

impl<T: Typed> WithLock<T> {
    /// `typed`, new and anonymous, with a new anonymous lock.
    pub(crate) fn anonymous(
        py: pyo3::Python<'_>,
        typecode: &str,
        typed: T,
    ) -> pyo3::PyResult<Self> {
        Ok(Self {
            typecode: typecode.to_owned(),
            typed,
            lock: pyo3::Py::new(py, crate::lock::RLock::new()?)?,
        })
    }

    /// `typed`, just created under `name`, with its lock created as `name.lock`. Without its
    /// lock the object is of no use: if the lock cannot be created, `typed`'s name is taken
    /// back.
    pub(crate) fn named(
        py: pyo3::Python<'_>,
        name: &str,
        typecode: &str,
        typed: T,
    ) -> pyo3::PyResult<Self> {
        let lock = crate::lock::RLock::create(&lock_name(name)).and_then(|l| pyo3::Py::new(py, l));
        match lock {
            Ok(lock) => Ok(Self {
                typecode: typecode.to_owned(),
                typed,
                lock,
            }),
            Err(err) => {
                let _ = typed.unlink();
                Err(err)
            }
        }
    }

    /// Opens an object and its lock by the names they travel as.
    pub(crate) fn reopen(
        py: pyo3::Python<'_>,
        typecode: &str,
        name: &str,
        lock: &str,
    ) -> pyo3::PyResult<Self> {
        Ok(Self {
            typecode: typecode.to_owned(),
            typed: T::open(typecode, name)?,
            lock: pyo3::Py::new(py, crate::lock::RLock::open(lock)?)?,
        })
    }

    /// Removes the names of the object and of its lock.
    pub(crate) fn unlink(&self) -> pyo3::PyResult<()> {
        self.typed.unlink()?;
        self.lock.get().unlink()
    }

    /// `__reduce__`: reopened by `kind`'s `reopen(typecode, name, lock)`.
    pub(crate) fn reduce<'py>(
        &self,
        py: pyo3::Python<'py>,
        kind: &str,
    ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::types::PyTuple>> {
        use pyo3::IntoPyObject;
        let lock = crate::handle::transport(self.lock.get().handle())?;
        crate::handle::reduce(
            py,
            kind,
            [
                self.typecode.clone().into_pyobject(py)?.into_any(),
                self.typed.transport()?.into_pyobject(py)?.into_any(),
                lock.into_pyobject(py)?.into_any(),
            ],
        )
    }
}

/// `#[pymethods]` of a class with a `WithLock` field `inner`: the class's own `$methods`
/// (which include `reopen(py, typecode, name, lock)`), and the ones every such class has:
/// `open`, `get_lock`, `acquire`, `release`, `with`, `typecode`, `name`, `unlink` and
/// pickling.
macro_rules! with_lock_pymethods {
    ($class:ident, $what:literal, { $($methods:tt)* }) => {
        #[pyo3::pymethods]
        impl $class {
            $($methods)*

            #[doc = concat!("Opens the existing ", $what, " `name` of `typecode`.")]
            #[staticmethod]
            fn open(py: Python<'_>, name: &str, typecode: &str) -> PyResult<Self> {
                Self::reopen(py, typecode, name, &$crate::typecode::lock_name(name))
            }

            /// The lock that makes several accesses atomic together.
            fn get_lock(&self, py: Python<'_>) -> Py<$crate::lock::RLock> {
                self.inner.lock.clone_ref(py)
            }

            /// `get_lock().acquire(...)`.
            #[pyo3(signature = (block = true, timeout = -1.0))]
            fn acquire(&self, py: Python<'_>, block: bool, timeout: f64) -> PyResult<bool> {
                self.inner.lock.get().acquire(py, block, timeout)
            }

            /// `get_lock().release()`.
            fn release(&self) -> PyResult<()> {
                self.inner.lock.get().release()
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
                self.acquire(py, true, -1.0)
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
                self.release()
            }

            /// The typecode.
            #[getter]
            fn typecode(&self) -> &str {
                &self.inner.typecode
            }

            #[doc = concat!("The ", $what, "'s name.")]
            #[getter]
            fn name(&self) -> &str {
                $crate::typecode::Typed::name(&self.inner.typed)
            }

            #[doc = concat!(
                "Removes the names of the ", $what, " and of its lock (processes that have ",
                "them open keep them)."
            )]
            fn unlink(&self) -> PyResult<()> {
                self.inner.unlink()
            }

            fn __reduce__<'py>(
                &self,
                py: Python<'py>,
            ) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
                self.inner.reduce(py, stringify!($class))
            }
        }
    };
}

pub(crate) use with_lock_pymethods;

/// `impl Typed for $enum`, an enum of memspace handles with one variant per typecode (each
/// handle a `$handle<T>`); `$what` names it in errors.
macro_rules! impl_typed {
    ($enum:ident, $handle:ident, $what:literal, $($code:literal => $variant:ident),+) => {
        impl $crate::typecode::Typed for $enum {
            fn open(code: &str, name: &str) -> PyResult<Self> {
                match code {
                    $($code => memspace::$handle::open(name)
                        .map($enum::$variant)
                        .map_err(|e| $crate::errors::to_py(&e)),)+
                    _ => Err($crate::typecode::unknown($what, code, concat!($($code),+))),
                }
            }

            fn name(&self) -> &str {
                match self {
                    $($enum::$variant(handle) => handle.name().as_str(),)+
                }
            }

            fn unlink(&self) -> PyResult<()> {
                match self {
                    $($enum::$variant(handle) => {
                        handle.unlink().map_err(|e| $crate::errors::to_py(&e))
                    })+
                }
            }

            fn transport(&self) -> PyResult<String> {
                match self {
                    $($enum::$variant(handle) => $crate::handle::transport(handle),)+
                }
            }
        }
    };
}

pub(crate) use impl_typed;
