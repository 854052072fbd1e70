//! `Lock` and `RLock`: Python's lock API (`acquire(block=True, timeout=-1)`, `release`,
//! `locked`, `with`) on memspace's robust locks, held by the process (or, for `RLock`, the
//! thread) that acquired them. A holder killed while holding one never blocks the others: the
//! next acquirer gets the lock and `OwnerDied` is raised, with the lock held.

use std::time::Duration;

use memspace::sync::TryLockError;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors::{self, lock_to_py, release_to_py};
use crate::wait::{self, Deadline, Slice};

/// Waits for `try_for` in slices, as Python's `acquire(block, timeout)`.
pub(crate) fn acquire_with(
    py: Python<'_>,
    block: bool,
    timeout: f64,
    try_now: impl Fn() -> Result<(), TryLockError<()>>,
    try_for: impl Fn(Duration) -> Result<(), TryLockError<()>> + Sync,
) -> PyResult<bool> {
    let outcome = |result: Result<(), TryLockError<()>>| match result {
        Ok(()) => Slice::Done(Ok(())),
        Err(TryLockError::WouldBlock { .. } | TryLockError::Timeout { .. }) => Slice::Again,
        Err(TryLockError::Lock(err)) => Slice::Done(Err(lock_to_py(&err))),
        Err(other) => Slice::Done(Err(PyRuntimeError::new_err(other.to_string()))),
    };
    if !block {
        if timeout != -1.0 {
            return Err(PyValueError::new_err(
                "can't specify a timeout for a non-blocking call",
            ));
        }
        return match outcome(try_now()) {
            Slice::Done(Ok(())) => Ok(true),
            Slice::Done(Err(err)) => Err(err),
            Slice::Again => Ok(false),
        };
    }
    // A free lock is taken at once, holding the GIL: the wait below releases it for every
    // slice, which costs more than the acquisition itself.
    match outcome(try_now()) {
        Slice::Done(Ok(())) => return Ok(true),
        Slice::Done(Err(err)) => return Err(err),
        Slice::Again => {}
    }
    let deadline = Deadline::from_seconds(Some(timeout), true)?;
    let got = wait::wait(py, deadline, |slice| outcome(try_for(slice)), |e| e)?;
    Ok(got.is_some())
}

macro_rules! py_lock {
    ($py_name:ident, $rust:ty, $kind:literal, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(module = "memspace._memspace", frozen)]
        pub(crate) struct $py_name {
            inner: $rust,
        }

        $crate::handle::handle_pymethods! {
            "lock", kind = $kind;
            #[pymethods]
            impl $py_name {
                /// An anonymous lock, removed when the last process using it exits.
                #[new]
                pub(crate) fn new() -> PyResult<Self> {
                    <$rust>::new()
                        .map(|inner| Self { inner })
                        .map_err(|e| errors::to_py(&e))
                }

                /// Creates the lock `name` (`FileExistsError` if it exists).
                #[staticmethod]
                pub(crate) fn create(name: &str) -> PyResult<Self> {
                    <$rust>::create(name)
                        .map(|inner| Self { inner })
                        .map_err(|e| errors::to_py(&e))
                }

                /// Opens the existing lock `name` (`FileNotFoundError` if there is none).
                #[staticmethod]
                pub(crate) fn open(name: &str) -> PyResult<Self> {
                    <$rust>::open(name)
                        .map(|inner| Self { inner })
                        .map_err(|e| errors::to_py(&e))
                }

                /// Takes the lock, waiting at most `timeout` seconds (-1: for ever) if `block`.
                /// Returns whether it was taken. Raises `OwnerDied`, with the lock taken, if its
                /// previous holder died holding it.
                #[pyo3(signature = (block = true, timeout = -1.0))]
                pub(crate) fn acquire(
                    &self,
                    py: Python<'_>,
                    block: bool,
                    timeout: f64,
                ) -> PyResult<bool> {
                    acquire_with(
                        py,
                        block,
                        timeout,
                        || self.inner.try_acquire(),
                        |slice| self.inner.acquire_timeout(slice),
                    )
                }

                /// Releases the lock (`RuntimeError` if it is not held here).
                pub(crate) fn release(&self) -> PyResult<()> {
                    self.inner.release().map_err(|e| release_to_py(&e))
                }

                /// Whether some process holds the lock.
                fn locked(&self) -> PyResult<bool> {
                    Ok(self.owner()?.is_some())
                }

                /// After `OwnerDied`: declares the protected data repaired, so that the lock
                /// stays usable after `release()`.
                fn mark_consistent(&self) -> PyResult<()> {
                    self.inner
                        .mark_consistent()
                        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
                }

                /// How many times a holder died and the lock was taken over.
                #[getter]
                fn owner_deaths(&self) -> u32 {
                    self.inner.owner_deaths()
                }

                fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
                    self.acquire(py, true, -1.0)
                }

                #[pyo3(signature = (*_args))]
                fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
                    self.release()
                }

                fn __repr__(&self) -> PyResult<String> {
                    Ok(format!(
                        "<memspace.{} {:?} locked={}>",
                        $kind,
                        self.inner.name().as_str(),
                        if self.locked()? { "True" } else { "False" }
                    ))
                }
            }
        }

        impl $py_name {
            /// The lock's handle.
            #[allow(dead_code)]
            pub(crate) fn handle(&self) -> &$rust {
                &self.inner
            }
        }
    };
}

py_lock!(
    Lock,
    memspace::Lock,
    "Lock",
    "A lock shared by processes, as `multiprocessing.Lock`, held by the process that \
     acquired it (any of its threads may release it)."
);

py_lock!(
    RLock,
    memspace::RLock,
    "RLock",
    "A reentrant lock shared by processes, as `multiprocessing.RLock`: the thread that holds \
     it may acquire it again, and releases it as often."
);

impl Lock {
    fn owner(&self) -> PyResult<Option<u32>> {
        self.inner.owner().map_err(|e| errors::to_py(&e))
    }
}

impl RLock {
    #[allow(clippy::unnecessary_wraps)]
    fn owner(&self) -> PyResult<Option<u32>> {
        Ok(self.inner.owner())
    }
}
