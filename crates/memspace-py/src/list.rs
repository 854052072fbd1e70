//! The storage under `memspace.SharedList`: a memspace `SharedList` of MessagePack values, with
//! non-negative indices. The Python class (python/memspace/__init__.py) adds the
//! `MutableSequence` protocol: negative indices, slices, `==`.

use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use rmpv::Value;

use crate::convert::{to_py, to_value};
use crate::{collection, errors};

type Inner = memspace::SharedList<Value>;

/// A list in shared memory, indexed from 0.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct SharedList {
    inner: Inner,
}

collection::collection_pymethods!(SharedList, Inner, "list", {
    /// The item at `index` (`IndexError` past the end).
    fn get<'py>(&self, py: Python<'py>, index: u64) -> PyResult<Bound<'py, PyAny>> {
        match py.detach(|| self.inner.get(index)) {
            Ok(Some(value)) => to_py(py, &value),
            Ok(None) => Err(PyIndexError::new_err("list index out of range")),
            Err(e) => Err(errors::to_py(&e)),
        }
    }

    /// Replaces the item at `index`.
    fn set(&self, py: Python<'_>, index: u64, item: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = to_value(item)?;
        py.detach(|| self.inner.set(index, &value))
            .map_err(|e| errors::to_py(&e))
    }

    /// Inserts `item` before `index` (at most the length).
    fn insert(&self, py: Python<'_>, index: u64, item: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = to_value(item)?;
        py.detach(|| self.inner.insert(index, &value))
            .map_err(|e| errors::to_py(&e))
    }

    /// Removes and returns the item at `index`.
    fn remove_at<'py>(&self, py: Python<'py>, index: u64) -> PyResult<Bound<'py, PyAny>> {
        let value = py
            .detach(|| self.inner.remove(index))
            .map_err(|e| errors::to_py(&e))?;
        to_py(py, &value)
    }

    /// Appends `item`.
    fn append(&self, py: Python<'_>, item: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = to_value(item)?;
        py.detach(|| self.inner.push(&value))
            .map_err(|e| errors::to_py(&e))
    }

    /// Appends every item of `items`, all at once.
    fn extend(&self, py: Python<'_>, items: &Bound<'_, PyAny>) -> PyResult<()> {
        let values = items
            .try_iter()?
            .map(|item| to_value(&item?))
            .collect::<PyResult<Vec<_>>>()?;
        py.detach(|| self.inner.extend(values.iter()))
            .map_err(|e| errors::to_py(&e))
    }

    /// Removes and returns the last item (`IndexError` if the list is empty).
    fn pop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match py.detach(|| self.inner.pop()) {
            Ok(Some(value)) => to_py(py, &value),
            Ok(None) => Err(PyIndexError::new_err("pop from empty list")),
            Err(e) => Err(errors::to_py(&e)),
        }
    }

    /// Removes every item.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.clear())
            .map_err(|e| errors::to_py(&e))
    }

    /// Keeps the first `len` items.
    fn truncate(&self, py: Python<'_>, len: u64) -> PyResult<()> {
        py.detach(|| self.inner.truncate(len))
            .map_err(|e| errors::to_py(&e))
    }

    /// Every item, as a Python list.
    fn to_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let values = py
            .detach(|| self.inner.to_vec())
            .map_err(|e| errors::to_py(&e))?;
        let list = PyList::empty(py);
        for value in &values {
            list.append(to_py(py, value)?)?;
        }
        Ok(list)
    }
});
