//! What every extension class over one named memspace handle (its field `inner`) has alike:
//! the handle's name, its removal, and pickling as a reference that `memspace._rebuild`
//! reopens by name in another process.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// The name a handle travels as (its segment's name, with the access it was opened with), to
/// reopen it in another process.
pub(crate) fn transport<T: serde::Serialize>(handle: &T) -> PyResult<String> {
    match serde_json::to_value(handle) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        other => Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "a handle's name could not be taken for pickling: {other:?}"
        ))),
    }
}

/// `(memspace._rebuild, (kind, args...))`: what `__reduce__` returns, so that unpickling
/// reopens the object by name.
pub(crate) fn reduce<'py>(
    py: Python<'py>,
    kind: &str,
    args: impl IntoIterator<Item = Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let rebuild = py.import("memspace")?.getattr("_rebuild")?;
    let mut all = vec![kind.into_pyobject(py)?.into_any()];
    all.extend(args);
    PyTuple::new(py, [rebuild, PyTuple::new(py, all)?.into_any()])
}

/// What a class's `rebuild` method returns for [`handle_pymethods`]: the kind
/// `memspace._rebuild` reopens the object as, and its arguments after the handle's name.
pub(crate) type Rebuild<'py> = (&'static str, Vec<Bound<'py, PyAny>>);

/// A `#[pymethods]` block of a class whose field `inner` is a named memspace handle, with the
/// `name` getter and `unlink()` added to the class's own methods. `$what` names the object in
/// the docs:
///
/// ```text
/// named_pymethods!("list"; #[pymethods] impl SharedList { /* its own methods */ });
/// ```
///
/// The attribute is taken as the caller wrote it (`$pound $attr`: `#` and `[pymethods]`), not
/// written by this macro: pyo3 binds a method's `*args` in the hygiene context of the
/// attribute, and the method reads them in the context it was written in, so the two must be
/// the caller's.
macro_rules! named_pymethods {
    ($what:literal; $pound:tt $attr:tt impl $class:ident { $($methods:tt)* }) => {
        $pound $attr
        impl $class {
            #[doc = concat!("The ", $what, "'s name.")]
            #[getter]
            fn name(&self) -> String {
                self.inner.name().as_str().to_owned()
            }

            #[doc = concat!(
                "Removes the ", $what, "'s name (processes that have it open keep it)."
            )]
            pub(crate) fn unlink(&self) -> PyResult<()> {
                self.inner.unlink().map_err(|e| $crate::errors::to_py(&e))
            }

            $($methods)*
        }
    };
}

pub(crate) use named_pymethods;

/// [`named_pymethods`] and `__reduce__`: the object pickles as
/// `memspace._rebuild(kind, name, args...)`, `name` being the one `inner` travels as. With
/// `kind = "Kind"` there are no `args`; with `rebuild = method`, the class's
/// `fn method(&self, py) -> PyResult<Rebuild<'py>>` gives the kind and the args:
///
/// ```text
/// handle_pymethods! {
///     "event", kind = "Event";
///     #[pymethods]
///     impl Event { /* its own methods */ }
/// }
/// ```
macro_rules! handle_pymethods {
    (
        $what:literal, kind = $kind:literal;
        $pound:tt $attr:tt impl $class:ident { $($methods:tt)* }
    ) => {
        impl $class {
            /// What pickling hands `memspace._rebuild` after the name: the kind alone.
            #[allow(clippy::unnecessary_wraps)]
            fn rebuild<'py>(&self, _py: Python<'py>) -> PyResult<$crate::handle::Rebuild<'py>> {
                Ok(($kind, Vec::new()))
            }
        }

        $crate::handle::handle_pymethods!(
            $what, rebuild = rebuild; $pound $attr impl $class { $($methods)* }
        );
    };
    (
        $what:literal, rebuild = $rebuild:ident;
        $pound:tt $attr:tt impl $class:ident { $($methods:tt)* }
    ) => {
        $crate::handle::named_pymethods!($what; $pound $attr impl $class {
            fn __reduce__<'py>(
                &self,
                py: Python<'py>,
            ) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
                let name = $crate::handle::transport(&self.inner)?.into_pyobject(py)?.into_any();
                let (kind, args) = self.$rebuild(py)?;
                $crate::handle::reduce(py, kind, std::iter::once(name).chain(args))
            }

            $($methods)*
        });
    };
}

pub(crate) use handle_pymethods;
