//! Blocking waits that Python can interrupt: the GIL is released while waiting, and the wait
//! runs in slices of [`SLICE`], with Python's signal handlers run between them, so that Ctrl-C
//! raises `KeyboardInterrupt` in a blocked `get`, `acquire` or `join` within a slice.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// How long one wait lasts before Python's signal handlers run.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// When a wait ends: `None` waits for ever.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// A deadline from Python's `timeout` in seconds, `None` (or, with `negative_forever`, any
    /// negative number, as `Lock.acquire` takes -1) for no limit.
    pub(crate) fn from_seconds(timeout: Option<f64>, negative_forever: bool) -> PyResult<Self> {
        match timeout {
            None => Ok(Deadline(None)),
            Some(t) if t < 0.0 && negative_forever => Ok(Deadline(None)),
            Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(format!(
                "timeout must be a non-negative number of seconds, not {t}"
            ))),
            Some(t) => {
                let wait = Duration::try_from_secs_f64(t)
                    .map_err(|_| PyValueError::new_err(format!("timeout {t} is too large")))?;
                Ok(Deadline(Instant::now().checked_add(wait)))
            }
        }
    }

    /// The next slice to wait, or `None` once the deadline has passed.
    pub(crate) fn next_slice(self) -> Option<Duration> {
        match self.0 {
            None => Some(SLICE),
            Some(end) => {
                let left = end.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(SLICE))
            }
        }
    }
}

/// What one slice of a wait gave.
pub(crate) enum Slice<T, E> {
    /// Done, with a value or an error.
    Done(Result<T, E>),
    /// Nothing yet: wait another slice.
    Again,
}

/// Runs `attempt` with the GIL released, one slice at a time, until it is done or `deadline`
/// passes (then `Ok(None)`); runs Python's signal handlers between slices, so that an exception
/// they raise (`KeyboardInterrupt`) ends the wait.
pub(crate) fn wait<T: Send, E: Send>(
    py: Python<'_>,
    deadline: Deadline,
    attempt: impl Fn(Duration) -> Slice<T, E> + Sync,
    to_py: impl Fn(E) -> PyErr,
) -> PyResult<Option<T>> {
    loop {
        let Some(slice) = deadline.next_slice() else {
            return Ok(None);
        };
        match py.detach(|| attempt(slice)) {
            Slice::Done(Ok(value)) => return Ok(Some(value)),
            Slice::Done(Err(err)) => return Err(to_py(err)),
            Slice::Again => py.check_signals()?,
        }
    }
}
