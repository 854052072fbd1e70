//! The storage under `memspace.SharedDict`: a memspace `SharedMap` of MessagePack keys and
//! values. Keys are converted by [`to_key`], so that keys Python holds equal (`1`, `1.0`,
//! `True`) are one key, and read back with tuples as tuples. The Python class
//! (python/memspace/__init__.py) adds the `MutableMapping` protocol.

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rmpv::Value;

use crate::convert::{key_to_py, to_key, to_py, to_value};
use crate::{collection, errors};

type Inner = memspace::SharedMap<Value, Value>;

/// A dict in shared memory.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct SharedDict {
    inner: Inner,
}

fn missing(key: &Bound<'_, PyAny>) -> PyErr {
    PyKeyError::new_err(key.clone().unbind())
}

collection::collection_pymethods!(SharedDict, Inner, "dict", {
    /// The value of `key` (`KeyError` if it has none).
    fn get_item<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = to_key(key)?;
        match py.detach(|| self.inner.get(&k)) {
            Ok(Some(value)) => to_py(py, &value),
            Ok(None) => Err(missing(key)),
            Err(e) => Err(errors::to_py(&e)),
        }
    }

    /// Sets the value of `key`.
    fn set_item(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (k, v) = (to_key(key)?, to_value(value)?);
        py.detach(|| self.inner.insert(&k, &v))
            .map(drop)
            .map_err(|e| errors::to_py(&e))
    }

    /// The value of `key`, set to `default` first if it had none, in one atomic step.
    fn setdefault<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (k, v) = (to_key(key)?, to_value(default)?);
        match py.detach(|| self.inner.insert_if_absent(&k, &v)) {
            Ok(Some(kept)) => to_py(py, &kept),
            Ok(None) => Ok(default.clone()),
            Err(e) => Err(errors::to_py(&e)),
        }
    }

    /// Removes `key` and returns its value (`KeyError` if it has none).
    fn remove<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let k = to_key(key)?;
        match py.detach(|| self.inner.remove(&k)) {
            Ok(Some(value)) => to_py(py, &value),
            Ok(None) => Err(missing(key)),
            Err(e) => Err(errors::to_py(&e)),
        }
    }

    /// Whether `key` has a value.
    fn contains(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = to_key(key)?;
        py.detach(|| self.inner.contains_key(&k))
            .map_err(|e| errors::to_py(&e))
    }

    /// Removes every entry.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.clear())
            .map_err(|e| errors::to_py(&e))
    }

    /// Every entry, read at once, as a plain dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let entries = py
            .detach(|| self.inner.to_vec())
            .map_err(|e| errors::to_py(&e))?;
        let dict = PyDict::new(py);
        for (k, v) in &entries {
            dict.set_item(key_to_py(py, k)?, to_py(py, v)?)?;
        }
        Ok(dict)
    }

    /// Every key, read at once, as a list.
    fn keys_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let keys = py
            .detach(|| self.inner.keys().collect::<memspace::Result<Vec<_>>>())
            .map_err(|e| errors::to_py(&e))?;
        let list = PyList::empty(py);
        for k in &keys {
            list.append(key_to_py(py, k)?)?;
        }
        Ok(list)
    }
});
