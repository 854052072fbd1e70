//! What the extension classes of the shared collections (`SharedList`, `SharedDict`) have
//! alike: a memspace handle `inner`, made anonymous, created or opened by name, carried to
//! another process by its name, removed, and measured.

/// `#[pymethods]` of a collection class `$class` with one field `inner: $inner` (a memspace
/// collection handle): the class's own `$methods`, and `new()`, `create(name)`,
/// `open(name)`, `transport()`, `name`, `unlink()` and `len()`. `$what` names the collection
/// in the docs.
macro_rules! collection_pymethods {
    ($class:ident, $inner:ty, $what:literal, { $($methods:tt)* }) => {
        impl $class {
            fn wrap(result: memspace::Result<$inner>) -> PyResult<Self> {
                result
                    .map(|inner| Self { inner })
                    .map_err(|e| $crate::errors::to_py(&e))
            }
        }

        $crate::handle::named_pymethods!($what; #[pyo3::pymethods] impl $class {
            #[doc = concat!("An anonymous ", $what, ", removed when the last process using it exits.")]
            #[new]
            fn new() -> PyResult<Self> {
                Self::wrap(<$inner>::new())
            }

            #[doc = concat!("Creates the ", $what, " `name` (`FileExistsError` if it exists).")]
            #[staticmethod]
            fn create(name: &str) -> PyResult<Self> {
                Self::wrap(<$inner>::create(name))
            }

            #[doc = concat!(
                "Opens the existing ", $what, " `name` (`FileNotFoundError` if there is none)."
            )]
            #[staticmethod]
            fn open(name: &str) -> PyResult<Self> {
                Self::wrap(<$inner>::open(name))
            }

            /// The name it travels as to another process.
            fn transport(&self) -> PyResult<String> {
                $crate::handle::transport(&self.inner)
            }

            fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
                let len = py
                    .detach(|| self.inner.len())
                    .map_err(|e| $crate::errors::to_py(&e))?;
                Ok(usize::try_from(len).unwrap_or(usize::MAX))
            }

            $($methods)*
        });
    };
}

pub(crate) use collection_pymethods;
