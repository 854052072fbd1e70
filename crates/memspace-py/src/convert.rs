//! Python values to and from the MessagePack the Rust side stores (rmp-serde's encoding):
//! `None`, `bool`, `int` (64 bits), `float`, `str`, `bytes`, and lists, tuples and dicts of
//! them are stored as MessagePack's own types, so a Rust `SharedList<serde_json::Value>` reads
//! them (a tuple comes back as a list). Anything else (an `int` beyond 64 bits, a set, an
//! instance of a class, a subclass of a built-in type) is pickled into a MessagePack extension
//! of type [`PICKLE_EXT`], which only Python reads back.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use rmpv::Value;

/// The MessagePack extension type of a pickled Python object.
pub(crate) const PICKLE_EXT: i8 = 80;

/// How deep lists and dicts may nest before a value is pickled instead (pickle has its own
/// recursion limit, and rejects cycles).
const MAX_DEPTH: usize = 64;

/// `obj` as a MessagePack value.
pub(crate) fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    to_value_at(obj, 0)
}

fn to_value_at(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Nil);
    }
    if depth < MAX_DEPTH {
        if let Ok(b) = obj.cast_exact::<PyBool>() {
            return Ok(Value::Boolean(b.is_true()));
        }
        if obj.is_exact_instance_of::<PyInt>() {
            if let Ok(i) = obj.extract::<i64>() {
                return Ok(Value::from(i));
            }
            if let Ok(u) = obj.extract::<u64>() {
                return Ok(Value::from(u));
            }
        } else if let Ok(f) = obj.cast_exact::<PyFloat>() {
            return Ok(Value::F64(f.value()));
        } else if let Ok(s) = obj.cast_exact::<PyString>() {
            return Ok(Value::from(s.to_cow()?.as_ref()));
        } else if let Ok(b) = obj.cast_exact::<PyBytes>() {
            return Ok(Value::Binary(b.as_bytes().to_vec()));
        } else if let Ok(l) = obj.cast_exact::<PyList>() {
            return l
                .iter()
                .map(|item| to_value_at(&item, depth + 1))
                .collect::<PyResult<_>>()
                .map(Value::Array);
        } else if let Ok(t) = obj.cast_exact::<PyTuple>() {
            return t
                .iter()
                .map(|item| to_value_at(&item, depth + 1))
                .collect::<PyResult<_>>()
                .map(Value::Array);
        } else if let Ok(d) = obj.cast_exact::<PyDict>() {
            return d
                .iter()
                .map(|(k, v)| Ok((to_value_at(&k, depth + 1)?, to_value_at(&v, depth + 1)?)))
                .collect::<PyResult<_>>()
                .map(Value::Map);
        }
    }
    let pickled = obj
        .py()
        .import("pickle")?
        .call_method1("dumps", (obj,))?
        .cast_into::<PyBytes>()?;
    Ok(Value::Ext(PICKLE_EXT, pickled.as_bytes().to_vec()))
}

/// `obj` as a `SharedDict` key: as [`to_value`], with Python's equal keys made one key (`True`
/// and `1.0` are the key `1`, `-0.0` is `0`), since the map compares keys by their encoding;
/// `TypeError` for an unhashable key.
pub(crate) fn to_key(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    // A dict's keys are hashable: a list or a dict is refused with Python's `TypeError`.
    obj.hash()?;
    if let Ok(b) = obj.cast_exact::<PyBool>() {
        return Ok(Value::from(i64::from(b.is_true())));
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        let v = f.value();
        // Exactly representable integers only: `2.0**63` is not an i64.
        if v.fract() == 0.0 && v >= -(2f64.powi(63)) && v < 2f64.powi(63) {
            #[allow(clippy::cast_possible_truncation)]
            return Ok(Value::from(v as i64));
        }
    }
    if let Ok(t) = obj.cast_exact::<PyTuple>() {
        return t
            .iter()
            .map(|item| to_key(&item))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    to_value(obj)
}

/// A stored key as a Python object: as [`to_py`], with arrays read back as tuples, so that the
/// key is hashable.
pub(crate) fn key_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    match value {
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|item| key_to_py(py, item))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyTuple::new(py, items)?.into_any())
        }
        other => to_py(py, other),
    }
}

/// A stored value as a Python object.
pub(crate) fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Nil => py.None().into_bound(py),
        Value::Boolean(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(v), _) => v.into_pyobject(py)?.into_any(),
            (None, Some(v)) => v.into_pyobject(py)?.into_any(),
            (None, None) => return Err(PyValueError::new_err("an integer out of range")),
        },
        Value::F32(f) => PyFloat::new(py, f64::from(*f)).into_any(),
        Value::F64(f) => PyFloat::new(py, *f).into_any(),
        Value::String(s) => match s.as_str() {
            Some(text) => PyString::new(py, text).into_any(),
            None => PyBytes::new(py, s.as_bytes()).into_any(),
        },
        Value::Binary(b) => PyBytes::new(py, b).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Map(entries) => {
            let dict = PyDict::new(py);
            for (k, v) in entries {
                dict.set_item(to_py(py, k)?, to_py(py, v)?)?;
            }
            dict.into_any()
        }
        Value::Ext(PICKLE_EXT, data) => py
            .import("pickle")?
            .call_method1("loads", (PyBytes::new(py, data),))?,
        Value::Ext(kind, _) => {
            return Err(PyValueError::new_err(format!(
                "a MessagePack extension of type {kind}, which memspace does not read"
            )));
        }
    })
}
