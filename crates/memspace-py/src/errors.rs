//! memspace's errors as Python exceptions: the built-in class that fits (a missing object is a
//! `FileNotFoundError`, an existing one a `FileExistsError`, an unreachable Redis server a
//! `ConnectionError`, a refused login a `PermissionError`), `RuntimeError` otherwise, with
//! memspace's message, which names the object and says what to do.

use memspace::sync::{LockError, ReleaseError};
use memspace::{Error, OpenError};
use pyo3::create_exception;
use pyo3::exceptions::{
    PyConnectionError, PyFileExistsError, PyFileNotFoundError, PyIndexError, PyPermissionError,
    PyRuntimeError, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;

create_exception!(
    _memspace,
    OwnerDied,
    PyRuntimeError,
    "The previous holder of a lock died while holding it. The lock is now held by this \
     process: repair the data it protects, call `lock.mark_consistent()`, then `release()`. \
     Released without `mark_consistent()`, the lock becomes unusable for everyone."
);

/// A memspace error as the Python exception that fits it.
pub(crate) fn to_py(err: &Error) -> PyErr {
    let text = err.to_string();
    match err {
        Error::Open(open) => open_to_py(open, text),
        Error::IndexOutOfRange { .. } => PyIndexError::new_err(text),
        Error::Timeout { .. } => PyTimeoutError::new_err(text),
        Error::Encode { .. } => PyValueError::new_err(text),
        Error::Lock(lock) => lock_to_py(lock),
        Error::RedisUnreachable { .. } => PyConnectionError::new_err(text),
        Error::RedisAuth { .. } => PyPermissionError::new_err(text),
        _ => PyRuntimeError::new_err(text),
    }
}

fn open_to_py(err: &OpenError, text: String) -> PyErr {
    match err {
        OpenError::NotFound { .. } => PyFileNotFoundError::new_err(text),
        OpenError::AlreadyExists { .. } => PyFileExistsError::new_err(text),
        OpenError::PermissionDenied { .. }
        | OpenError::UntrustedOwner { .. }
        | OpenError::UntrustedMode { .. } => PyPermissionError::new_err(text),
        OpenError::InvalidName { .. } => PyValueError::new_err(text),
        // An object that is not the kind, or not of the item type, the caller opens it as.
        OpenError::TypeMismatch { .. } | OpenError::WrongKind { .. } => {
            pyo3::exceptions::PyTypeError::new_err(text)
        }
        _ => PyRuntimeError::new_err(text),
    }
}

/// A failed acquisition. After `OwnerDied` the lock is held by this process.
pub(crate) fn lock_to_py(err: &LockError<()>) -> PyErr {
    let text = err.to_string();
    match err {
        LockError::OwnerDied(()) => OwnerDied::new_err(text),
        _ => PyRuntimeError::new_err(text),
    }
}

/// A failed release: `RuntimeError`, as Python's locks raise.
pub(crate) fn release_to_py(err: &ReleaseError) -> PyErr {
    PyRuntimeError::new_err(err.to_string())
}
