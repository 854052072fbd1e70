//! `Event`, `Semaphore` (and `BoundedSemaphore`), `Barrier` and `Condition`: the API of
//! `multiprocessing`'s (and `threading`'s) classes on memspace's. Every blocking call waits
//! through [`crate::wait`]: the GIL released, Ctrl-C raising `KeyboardInterrupt`.
//!
//! A barrier's wait cannot be cut into slices (its timeout breaks it), so it runs whole in a
//! thread of its own while the calling thread waits for its result in slices. Interrupted,
//! the calling thread aborts the barrier first, as `threading.Barrier` does when a wait
//! raises. A condition's wait is cut into slices: it waits on a ticket of the condition
//! variable (`Condvar::ticket`), which no notification sent after it was taken can miss.

use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use memspace::sync::{BarrierError, SemaphoreError};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors;
use crate::handle::{self, reduce, transport};
use crate::wait::{self, Deadline, Slice};

pyo3::import_exception!(threading, BrokenBarrierError);

/// `timeout` in seconds as a duration (`None`: no limit); negative means 0, as in `threading`.
fn duration(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    timeout
        .map(|t| {
            if t.is_nan() {
                return Err(PyValueError::new_err(
                    "timeout must be a number of seconds, not nan",
                ));
            }
            Duration::try_from_secs_f64(t.max(0.0))
                .map_err(|_| PyValueError::new_err(format!("timeout {t} is too large")))
        })
        .transpose()
}

/// Runs `job` in a thread of its own, and waits for its result in slices; if Python's signal
/// handlers raise meanwhile, runs `interrupt` until the job ends, then raises their exception.
fn in_thread<T: Send + 'static>(
    py: Python<'_>,
    job: impl FnOnce() -> T + Send + 'static,
    interrupt: impl Fn() + Sync,
) -> PyResult<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("memspace-wait".into())
        .spawn(move || {
            // The receiver is gone only if the caller's thread panicked.
            let _ = tx.send(job());
        })
        .map_err(|e| PyRuntimeError::new_err(format!("could not start a waiting thread: {e}")))?;
    let rx = Mutex::new(rx);
    let receive = |slice: Duration| {
        let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match rx.recv_timeout(slice) {
            Ok(value) => Slice::Done(Ok(value)),
            Err(mpsc::RecvTimeoutError::Timeout) => Slice::Again,
            Err(mpsc::RecvTimeoutError::Disconnected) => Slice::Done(Err(())),
        }
    };
    let lost = |()| PyRuntimeError::new_err("the waiting thread ended without a result");
    match wait::wait(py, Deadline::from_seconds(None, false)?, receive, lost) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => unreachable!("a wait without a deadline ends only with a result"),
        Err(raised) => {
            py.detach(|| {
                loop {
                    interrupt();
                    if !matches!(receive(wait::SLICE), Slice::Again) {
                        break;
                    }
                }
            });
            Err(raised)
        }
    }
}

/// An event shared by processes, as `multiprocessing.Event`: a flag that `wait` waits for.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct Event {
    inner: memspace::sync::Event,
}

handle::handle_pymethods! {
    "event", kind = "Event";
    #[pymethods]
    impl Event {
        /// An anonymous event, cleared, removed when the last process using it exits.
        #[new]
        fn new() -> PyResult<Self> {
            memspace::sync::Event::new()
                .map(|inner| Self { inner })
                .map_err(|e| errors::to_py(&e))
        }

        /// Creates the event `name` (`FileExistsError` if it exists).
        #[staticmethod]
        fn create(name: &str) -> PyResult<Self> {
            memspace::sync::Event::create(name)
                .map(|inner| Self { inner })
                .map_err(|e| errors::to_py(&e))
        }

        /// Opens the existing event `name` (`FileNotFoundError` if there is none).
        #[staticmethod]
        fn open(name: &str) -> PyResult<Self> {
            memspace::sync::Event::open(name)
                .map(|inner| Self { inner })
                .map_err(|e| errors::to_py(&e))
        }

        /// Sets the flag and wakes every waiter.
        fn set(&self) -> PyResult<()> {
            self.inner.set().map_err(|e| errors::to_py(&e))
        }

        /// Clears the flag.
        fn clear(&self) -> PyResult<()> {
            self.inner.clear().map_err(|e| errors::to_py(&e))
        }

        /// Whether the flag is set.
        fn is_set(&self) -> PyResult<bool> {
            self.inner.is_set().map_err(|e| errors::to_py(&e))
        }

        /// Waits until the flag is set, at most `timeout` seconds; returns whether it is.
        #[pyo3(signature = (timeout = None))]
        fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
            let deadline = Deadline::from_seconds(timeout.map(|t| t.max(0.0)), false)?;
            let attempt = |slice| match self.inner.wait_timeout(slice) {
                Ok(true) => Slice::Done(Ok(())),
                Ok(false) => Slice::Again,
                Err(e) => Slice::Done(Err(e)),
            };
            if wait::wait(py, deadline, attempt, |e| errors::to_py(&e))?.is_some() {
                return Ok(true);
            }
            self.is_set()
        }

        fn __repr__(&self) -> PyResult<String> {
            Ok(format!(
                "<memspace.Event {:?} set={}>",
                self.inner.name().as_str(),
                if self.is_set()? { "True" } else { "False" }
            ))
        }
}
}

/// A counting semaphore shared by processes, as `multiprocessing.Semaphore` (bounded:
/// `BoundedSemaphore`). A permit held by a process that dies comes back.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct Semaphore {
    inner: memspace::sync::Semaphore,
}

fn permits(value: i64) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| PyValueError::new_err("semaphore initial value must be >= 0"))
}

fn semaphore_err(err: SemaphoreError) -> PyErr {
    match err {
        SemaphoreError::OverReleased { .. } => {
            PyValueError::new_err(format!("Semaphore released too many times: {err}"))
        }
        SemaphoreError::Other(e) => errors::to_py(&e),
        other => PyRuntimeError::new_err(other.to_string()),
    }
}

handle::handle_pymethods! {
    "semaphore", kind = "Semaphore";
    #[pymethods]
    impl Semaphore {
        /// An anonymous semaphore with `value` permits; `bounded` refuses releases beyond them.
        #[new]
        #[pyo3(signature = (value = 1, *, bounded = false))]
        fn new(value: i64, bounded: bool) -> PyResult<Self> {
            let n = permits(value)?;
            let inner = if bounded {
                memspace::sync::Semaphore::bounded(n)
            } else {
                memspace::sync::Semaphore::new(n)
            };
            inner
                .map(|inner| Self { inner })
                .map_err(|e| errors::to_py(&e))
        }

        /// Creates the semaphore `name` (`FileExistsError` if it exists).
        #[staticmethod]
        #[pyo3(signature = (name, value = 1, *, bounded = false))]
        fn create(name: &str, value: i64, bounded: bool) -> PyResult<Self> {
            memspace::sync::Semaphore::create(name, permits(value)?, bounded)
                .map(|inner| Self { inner })
                .map_err(|e| errors::to_py(&e))
        }

        /// Opens the existing semaphore `name` (`FileNotFoundError` if there is none).
        #[staticmethod]
        fn open(name: &str) -> PyResult<Self> {
            memspace::sync::Semaphore::open(name)
                .map(|inner| Self { inner })
                .map_err(|e| errors::to_py(&e))
        }

        /// Takes a permit, waiting at most `timeout` seconds (`None`: for ever) if `block`;
        /// returns whether it was taken.
        #[pyo3(signature = (block = true, timeout = None))]
        fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
            if !block {
                if timeout.is_some() {
                    return Err(PyValueError::new_err(
                        "can't specify timeout for non-blocking acquire",
                    ));
                }
                return match self.inner.try_acquire() {
                    Ok(permit) => {
                        permit.forget();
                        Ok(true)
                    }
                    Err(SemaphoreError::WouldBlock { .. }) => Ok(false),
                    Err(e) => Err(semaphore_err(e)),
                };
            }
            let deadline = Deadline::from_seconds(timeout.map(|t| t.max(0.0)), false)?;
            let attempt = |slice| match self.inner.acquire_timeout(slice) {
                Ok(permit) => {
                    permit.forget();
                    Slice::Done(Ok(()))
                }
                Err(SemaphoreError::Timeout { .. } | SemaphoreError::WouldBlock { .. }) => {
                    Slice::Again
                }
                Err(e) => Slice::Done(Err(e)),
            };
            Ok(wait::wait(py, deadline, attempt, semaphore_err)?.is_some())
        }

        /// Returns `n` permits (`ValueError` for a bounded semaphore all of whose permits are
        /// free).
        #[pyo3(signature = (n = 1))]
        fn release(&self, n: u64) -> PyResult<()> {
            for _ in 0..n {
                self.inner.release().map_err(semaphore_err)?;
            }
            Ok(())
        }

        /// The number of free permits.
        fn get_value(&self) -> u64 {
            self.inner.value()
        }

        fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
            self.acquire(py, true, None)
        }

        #[pyo3(signature = (*_args))]
        fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
            self.release(1)
        }

        fn __repr__(&self) -> String {
            format!(
                "<memspace.Semaphore {:?} value={}>",
                self.inner.name().as_str(),
                self.inner.value()
            )
        }
}
}

/// A barrier for `parties` processes (1 to 64), as `multiprocessing.Barrier`: a party that
/// times out, is interrupted or dies breaks it for all.
///
/// With an `action`, the parties pass a second barrier after the first: the last to arrive
/// at the first calls the action, then joins the others at the second, so that no party
/// leaves `wait` before the action is done. An action that raises breaks both.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct Barrier {
    inner: memspace::sync::Barrier,
    timeout: Option<f64>,
    action: Option<Action>,
}

/// A barrier's action and the barrier its parties wait at while it runs.
struct Action {
    call: Py<PyAny>,
    after: memspace::sync::Barrier,
}

/// Waits at `barrier` for at most `limit`; Ctrl-C breaks it, as `threading.Barrier` does
/// when a wait raises.
fn wait_at(
    py: Python<'_>,
    barrier: &memspace::sync::Barrier,
    limit: Option<Duration>,
) -> PyResult<u32> {
    let waiting = barrier.clone();
    let result = in_thread(
        py,
        move || match limit {
            None => waiting.wait(),
            Some(limit) => waiting.wait_timeout(limit),
        },
        || {
            // Only a damaged segment fails to abort; the waiting thread then ends on its
            // own deadline or when the barrier trips.
            let _ = barrier.abort();
        },
    )?;
    result.map_err(barrier_err)
}

fn barrier_err(err: BarrierError) -> PyErr {
    match err {
        BarrierError::Other(e) => errors::to_py(&e),
        other => BrokenBarrierError::new_err(other.to_string()),
    }
}

fn party_count(parties: i64) -> PyResult<u32> {
    u32::try_from(parties)
        .ok()
        .filter(|p| (1..=memspace::sync::MAX_PARTIES).contains(p))
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "a barrier has 1 to {} parties, not {parties}",
                memspace::sync::MAX_PARTIES
            ))
        })
}

impl Barrier {
    /// What pickling hands `memspace._rebuild` after the name: the default timeout, and with
    /// an action, the second barrier's name and the action.
    fn rebuild<'py>(&self, py: Python<'py>) -> PyResult<handle::Rebuild<'py>> {
        let timeout = self.timeout.into_pyobject(py)?.into_any();
        Ok(match &self.action {
            None => ("Barrier", vec![timeout]),
            Some(action) => (
                "Barrier with action",
                vec![
                    timeout,
                    transport(&action.after)?.into_pyobject(py)?.into_any(),
                    action.call.bind(py).clone(),
                ],
            ),
        })
    }
}

handle::handle_pymethods! {
    "barrier", rebuild = rebuild;
    #[pymethods]
    impl Barrier {
        /// An anonymous barrier for `parties` parties; `action`, if given, is called by one party
        /// once all have arrived and before any leaves (it travels to other processes pickled,
        /// by reference for a function); `timeout` is the default of `wait`.
        #[new]
        #[pyo3(signature = (parties, action = None, timeout = None))]
        fn new(
            parties: i64,
            action: Option<Bound<'_, PyAny>>,
            timeout: Option<f64>,
        ) -> PyResult<Self> {
            let parties = party_count(parties)?;
            let inner = memspace::sync::Barrier::new(parties).map_err(barrier_err)?;
            let action = match action.filter(|a| !a.is_none()) {
                None => None,
                Some(call) if call.is_callable() => Some(Action {
                    call: call.unbind(),
                    after: memspace::sync::Barrier::new(parties).map_err(barrier_err)?,
                }),
                Some(other) => {
                    return Err(PyTypeError::new_err(format!(
                        "a barrier's action must be callable, not {}",
                        other.get_type().name()?
                    )));
                }
            };
            Ok(Self {
                inner,
                timeout,
                action,
            })
        }

        /// Creates the barrier `name` (`FileExistsError` if it exists).
        #[staticmethod]
        #[pyo3(signature = (name, parties, timeout = None))]
        fn create(name: &str, parties: i64, timeout: Option<f64>) -> PyResult<Self> {
            memspace::sync::Barrier::create(name, party_count(parties)?)
                .map(|inner| Self {
                    inner,
                    timeout,
                    action: None,
                })
                .map_err(barrier_err)
        }

        /// Opens the existing barrier `name` (`FileNotFoundError` if there is none).
        #[staticmethod]
        #[pyo3(signature = (name, timeout = None))]
        fn open(name: &str, timeout: Option<f64>) -> PyResult<Self> {
            memspace::sync::Barrier::open(name)
                .map(|inner| Self {
                    inner,
                    timeout,
                    action: None,
                })
                .map_err(|e| errors::to_py(&e))
        }

        /// Reopens a barrier with an action by the names it travelled as.
        #[staticmethod]
        fn reopen(
            name: &str,
            timeout: Option<f64>,
            after: &str,
            action: Py<PyAny>,
        ) -> PyResult<Self> {
            let open = |name| memspace::sync::Barrier::open(name).map_err(|e| errors::to_py(&e));
            Ok(Self {
                inner: open(name)?,
                timeout,
                action: Some(Action {
                    call: action,
                    after: open(after)?,
                }),
            })
        }

        /// Waits until every party has called `wait`, at most `timeout` seconds (default: the
        /// barrier's); returns this party's arrival index (0 to `parties - 1`). Raises
        /// `threading.BrokenBarrierError` if the barrier is or becomes broken, or times out.
        #[pyo3(signature = (timeout = None))]
        fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<u32> {
            let limit = duration(timeout.or(self.timeout))?;
            let end = limit.and_then(|limit| Instant::now().checked_add(limit));
            let index = wait_at(py, &self.inner, limit)?;
            let Some(action) = &self.action else {
                return Ok(index);
            };
            if index + 1 == self.inner.parties()
                && let Err(err) = action.call.call0(py)
            {
                // As `threading.Barrier`: the parties waiting for the action learn it failed.
                let _ = action.after.abort();
                let _ = self.inner.abort();
                return Err(err);
            }
            let left = end.map(|end| end.saturating_duration_since(Instant::now()));
            wait_at(py, &action.after, limit.and(left))?;
            Ok(index)
        }

        /// Breaks the barrier: waiting and later `wait` calls raise `BrokenBarrierError` until
        /// `reset()`.
        fn abort(&self) -> PyResult<()> {
            if let Some(action) = &self.action {
                action.after.abort().map_err(|e| errors::to_py(&e))?;
            }
            self.inner.abort().map_err(|e| errors::to_py(&e))
        }

        /// Returns the barrier to its empty, unbroken state; parties waiting now raise
        /// `BrokenBarrierError`.
        fn reset(&self) -> PyResult<()> {
            if let Some(action) = &self.action {
                action.after.reset().map_err(|e| errors::to_py(&e))?;
            }
            self.inner.reset().map_err(|e| errors::to_py(&e))
        }

        /// How many parties must arrive.
        #[getter]
        fn parties(&self) -> u32 {
            self.inner.parties()
        }

        /// How many parties are waiting now.
        #[getter]
        fn n_waiting(&self) -> u32 {
            self.inner.waiting()
        }

        /// Whether the barrier is broken.
        #[getter]
        fn broken(&self) -> bool {
            self.inner.is_broken() || self.action.as_ref().is_some_and(|a| a.after.is_broken())
        }

        /// The default timeout of `wait`, in seconds.
        #[getter]
        fn timeout(&self) -> Option<f64> {
            self.timeout
        }

        fn __repr__(&self) -> String {
            format!(
                "<memspace.Barrier {:?} parties={} waiting={} broken={}>",
                self.inner.name().as_str(),
                self.inner.parties(),
                self.inner.waiting(),
                if self.inner.is_broken() {
                    "True"
                } else {
                    "False"
                }
            )
        }
}
}

/// A condition's lock: a `memspace.Lock`, held by a process, or a `memspace.RLock`, held by a
/// thread at some depth.
enum CondLock {
    Lock(Py<crate::lock::Lock>),
    RLock(Py<crate::lock::RLock>),
}

impl CondLock {
    fn from_py(lock: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(lock) = lock.cast::<crate::lock::Lock>() {
            return Ok(Self::Lock(lock.clone().unbind()));
        }
        if let Ok(lock) = lock.cast::<crate::lock::RLock>() {
            return Ok(Self::RLock(lock.clone().unbind()));
        }
        Err(PyTypeError::new_err(format!(
            "a memspace.Condition takes a memspace.Lock or a memspace.RLock, not {}: its lock \
             must be one other processes can see",
            lock.get_type().name()?
        )))
    }

    fn object<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match self {
            Self::Lock(lock) => lock.bind(py).clone().into_any(),
            Self::RLock(lock) => lock.bind(py).clone().into_any(),
        }
    }

    fn acquire(&self, py: Python<'_>, block: bool, timeout: f64) -> PyResult<bool> {
        match self {
            Self::Lock(lock) => lock.get().acquire(py, block, timeout),
            Self::RLock(lock) => lock.get().acquire(py, block, timeout),
        }
    }

    fn release(&self) -> PyResult<()> {
        match self {
            Self::Lock(lock) => lock.get().release(),
            Self::RLock(lock) => lock.get().release(),
        }
    }

    /// Whether the caller holds the lock: this process for a `Lock`, this thread for an
    /// `RLock`.
    fn is_mine(&self) -> PyResult<bool> {
        match self {
            Self::Lock(lock) => {
                let owner = lock.get().handle().owner().map_err(|e| errors::to_py(&e))?;
                Ok(owner == Some(std::process::id()))
            }
            Self::RLock(lock) => Ok(lock.get().handle().is_held_by_current_thread()),
        }
    }

    /// Releases the lock whole (every level of an `RLock`); returns how many levels
    /// [`restore`](Self::restore) takes again.
    fn release_all(&self) -> PyResult<u32> {
        let levels = match self {
            Self::Lock(_) => 1,
            Self::RLock(lock) => lock.get().handle().depth(),
        };
        for _ in 0..levels {
            self.release()?;
        }
        Ok(levels)
    }

    /// Takes the lock again at `levels`, waiting as long as it takes, whatever signal comes
    /// meanwhile (as `threading.Condition` does: the caller's `with` block must find the lock
    /// held). If its holder died meanwhile, the lock is taken at every level all the same and
    /// `OwnerDied` raised.
    fn restore(&self, py: Python<'_>, levels: u32) -> PyResult<()> {
        let take = || match self {
            Self::Lock(lock) => lock.get().handle().acquire(),
            Self::RLock(lock) => lock.get().handle().acquire(),
        };
        let mut died = None;
        for _ in 0..levels {
            match py.detach(take) {
                Ok(()) => {}
                Err(err @ memspace::sync::LockError::OwnerDied(())) => {
                    died = Some(errors::lock_to_py(&err));
                }
                Err(err) => return Err(errors::lock_to_py(&err)),
            }
        }
        died.map_or(Ok(()), Err)
    }
}

/// A condition variable shared by processes, as `multiprocessing.Condition`, with a
/// `memspace.RLock` (its own if none is given) or a `memspace.Lock`.
///
/// A wait takes a ticket of the condition variable while the lock is held, releases the lock
/// whole, and waits on the ticket in slices: a notification sent once the ticket was taken is
/// never missed, and Ctrl-C ends the wait between two slices, once the lock is held again.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct Condition {
    condvar: memspace::sync::Condvar,
    lock: CondLock,
}

impl Condition {
    fn check_held(&self, what: &str) -> PyResult<()> {
        if self.lock.is_mine()? {
            Ok(())
        } else {
            Err(PyRuntimeError::new_err(format!(
                "cannot {what} on un-acquired lock"
            )))
        }
    }
}

#[pymethods]
impl Condition {
    /// A condition with `lock` (a `memspace.RLock` or `memspace.Lock`), or a new anonymous
    /// `RLock`.
    #[new]
    #[pyo3(signature = (lock = None))]
    fn new(py: Python<'_>, lock: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let lock = match lock {
            Some(lock) if !lock.is_none() => CondLock::from_py(lock)?,
            _ => CondLock::RLock(Py::new(py, crate::lock::RLock::new()?)?),
        };
        memspace::sync::Condvar::new()
            .map(|condvar| Self { condvar, lock })
            .map_err(|e| errors::to_py(&e))
    }

    /// Reopens a condition from its condition variable's name and its lock.
    #[staticmethod]
    fn open(name: &str, lock: &Bound<'_, PyAny>) -> PyResult<Self> {
        let lock = CondLock::from_py(lock)?;
        memspace::sync::Condvar::open(name)
            .map(|condvar| Self { condvar, lock })
            .map_err(|e| errors::to_py(&e))
    }

    /// The condition's lock.
    #[getter]
    fn lock<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.lock.object(py)
    }

    /// Takes the lock, as `Lock.acquire`.
    #[pyo3(signature = (block = true, timeout = -1.0))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: f64) -> PyResult<bool> {
        self.lock.acquire(py, block, timeout)
    }

    /// Releases the lock.
    fn release(&self) -> PyResult<()> {
        self.lock.release()
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, -1.0)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release()
    }

    /// Releases the lock (which the caller must hold, at any depth), waits until notified or
    /// `timeout` seconds pass, and takes the lock again as it was held; returns `False` if
    /// the wait timed out. Wakeups may be spurious: re-check the condition, or use
    /// `wait_for`.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.check_held("wait")?;
        let deadline = Deadline::from_seconds(timeout.map(|t| t.max(0.0)), false)?;
        let ticket = self.condvar.ticket();
        let levels = self.lock.release_all()?;
        let condvar = &self.condvar;
        let waited = wait::wait(
            py,
            deadline,
            |slice| {
                if condvar.wait_ticket(ticket, Some(slice)) {
                    Slice::Done(Ok(()))
                } else {
                    Slice::Again
                }
            },
            |never: std::convert::Infallible| match never {},
        );
        // Held again whatever ended the wait, as `threading.Condition` does.
        match (waited, self.lock.restore(py, levels)) {
            (Ok(notified), Ok(())) => Ok(notified.is_some()),
            (Ok(_), Err(restoring)) => Err(restoring),
            (Err(interrupted), Ok(())) => Err(interrupted),
            // The lock is held, its holder died: that must not be lost behind the interrupt.
            (Err(interrupted), Err(died)) => {
                died.set_cause(py, Some(interrupted));
                Err(died)
            }
        }
    }

    /// Waits until `predicate()` is true, at most `timeout` seconds in all; returns its last
    /// result.
    #[pyo3(signature = (predicate, timeout = None))]
    fn wait_for<'py>(
        &self,
        py: Python<'py>,
        predicate: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let end = duration(timeout)?.map(|limit| Instant::now().checked_add(limit));
        let mut result = predicate.call0()?;
        while !result.is_truthy()? {
            let left = match end {
                None | Some(None) => None,
                Some(Some(end)) => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    Some(left.as_secs_f64())
                }
            };
            self.wait(py, left)?;
            result = predicate.call0()?;
        }
        Ok(result)
    }

    /// Wakes up to `n` waiters (the lock must be held). A waiter between two slices of its
    /// wait wakes too, as from a spurious wakeup: wait in a loop that checks the condition,
    /// or with `wait_for`, as `threading`'s documentation advises.
    #[pyo3(signature = (n = 1))]
    fn notify(&self, n: u64) -> PyResult<()> {
        self.check_held("notify")?;
        self.condvar.notify(u32::try_from(n).unwrap_or(u32::MAX));
        Ok(())
    }

    /// Wakes every waiter (the lock must be held).
    fn notify_all(&self) -> PyResult<()> {
        self.check_held("notify")?;
        self.condvar.notify_all();
        Ok(())
    }

    /// The condition variable's name.
    #[getter]
    fn name(&self) -> String {
        self.condvar.name().as_str().to_owned()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let name = transport(&self.condvar)?;
        reduce(
            py,
            "Condition",
            [name.into_pyobject(py)?.into_any(), self.lock.object(py)],
        )
    }
}
