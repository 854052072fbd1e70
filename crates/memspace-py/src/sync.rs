//! `Event`, `Semaphore` (and `BoundedSemaphore`), `Barrier` and `Condition`: the API of
//! `multiprocessing`'s (and `threading`'s) classes on memspace's. Every blocking call waits
//! through [`crate::wait`]: the GIL released, Ctrl-C raising `KeyboardInterrupt`.
//!
//! A barrier's or a condition's wait cannot be cut into slices (a barrier's timeout breaks
//! it; a condition's wait reads the notification counter once, before it releases the lock),
//! so it runs whole in a thread of its own while the calling thread waits for its result in
//! slices. Interrupted, the calling thread ends that wait first (it aborts the barrier, as
//! `threading.Barrier` does when a wait raises, or wakes the condition's waiters, a spurious
//! wakeup they re-check), so the lock is held again when `KeyboardInterrupt` is raised.

use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use memspace::sync::{BarrierError, LockError, Relock, SemaphoreError};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors;
use crate::lock::{reduce, transport};
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

    /// The event's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().as_str().to_owned()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let name = transport(&self.inner)?;
        reduce(py, "Event", [name.into_pyobject(py)?.into_any()])
    }

    fn __repr__(&self) -> PyResult<String> {
        Ok(format!(
            "<memspace.Event {:?} set={}>",
            self.inner.name().as_str(),
            if self.is_set()? { "True" } else { "False" }
        ))
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
            Err(SemaphoreError::Timeout { .. } | SemaphoreError::WouldBlock { .. }) => Slice::Again,
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

    /// The semaphore's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().as_str().to_owned()
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release(1)
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let name = transport(&self.inner)?;
        reduce(py, "Semaphore", [name.into_pyobject(py)?.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "<memspace.Semaphore {:?} value={}>",
            self.inner.name().as_str(),
            self.inner.value()
        )
    }
}

/// A barrier for `parties` processes (1 to 64), as `multiprocessing.Barrier` (without
/// `action`): a party that times out, is interrupted or dies breaks it for all.
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct Barrier {
    inner: memspace::sync::Barrier,
    timeout: Option<f64>,
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

#[pymethods]
impl Barrier {
    /// An anonymous barrier for `parties` parties; `timeout` is the default of `wait`.
    #[new]
    #[pyo3(signature = (parties, action = None, timeout = None))]
    fn new(parties: i64, action: Option<Bound<'_, PyAny>>, timeout: Option<f64>) -> PyResult<Self> {
        refuse_action(action.as_ref())?;
        memspace::sync::Barrier::new(party_count(parties)?)
            .map(|inner| Self { inner, timeout })
            .map_err(barrier_err)
    }

    /// Creates the barrier `name` (`FileExistsError` if it exists).
    #[staticmethod]
    #[pyo3(signature = (name, parties, timeout = None))]
    fn create(name: &str, parties: i64, timeout: Option<f64>) -> PyResult<Self> {
        memspace::sync::Barrier::create(name, party_count(parties)?)
            .map(|inner| Self { inner, timeout })
            .map_err(barrier_err)
    }

    /// Opens the existing barrier `name` (`FileNotFoundError` if there is none).
    #[staticmethod]
    #[pyo3(signature = (name, timeout = None))]
    fn open(name: &str, timeout: Option<f64>) -> PyResult<Self> {
        memspace::sync::Barrier::open(name)
            .map(|inner| Self { inner, timeout })
            .map_err(|e| errors::to_py(&e))
    }

    /// Waits until every party has called `wait`, at most `timeout` seconds (default: the
    /// barrier's); returns this party's arrival index (0 to `parties - 1`). Raises
    /// `threading.BrokenBarrierError` if the barrier is or becomes broken, or times out.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<u32> {
        let limit = duration(timeout.or(self.timeout))?;
        let barrier = self.inner.clone();
        let result = in_thread(
            py,
            move || match limit {
                None => barrier.wait(),
                Some(limit) => barrier.wait_timeout(limit),
            },
            || {
                // Only a damaged segment fails to abort; the waiting thread then ends on its
                // own deadline or when the barrier trips.
                let _ = self.inner.abort();
            },
        )?;
        result.map_err(barrier_err)
    }

    /// Breaks the barrier: waiting and later `wait` calls raise `BrokenBarrierError` until
    /// `reset()`.
    fn abort(&self) -> PyResult<()> {
        self.inner.abort().map_err(|e| errors::to_py(&e))
    }

    /// Returns the barrier to its empty, unbroken state; parties waiting now raise
    /// `BrokenBarrierError`.
    fn reset(&self) -> PyResult<()> {
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
        self.inner.is_broken()
    }

    /// The default timeout of `wait`, in seconds.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.timeout
    }

    /// The barrier's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().as_str().to_owned()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let name = transport(&self.inner)?;
        reduce(
            py,
            "Barrier",
            [
                name.into_pyobject(py)?.into_any(),
                self.timeout.into_pyobject(py)?.into_any(),
            ],
        )
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

fn refuse_action(action: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    match action {
        Some(a) if !a.is_none() => Err(PyValueError::new_err(
            "memspace.Barrier takes no action: call it after `wait()` in the party that gets 0",
        )),
        _ => Ok(()),
    }
}

/// The lock of a [`Condition`] as a guard the condition variable releases and takes again:
/// the process holds the lock (`Lock.acquire`), and keeps holding it after the wait.
struct Held<'a> {
    lock: &'a HeldLock,
}

/// A condition's lock, and the error taking it again met, which [`Relock`] cannot carry
/// without a guard.
struct HeldLock {
    lock: memspace::Lock,
    failure: Mutex<Option<String>>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Dropped by the condition variable before it sleeps: the wait releases the lock.
        if let Err(e) = self.lock.lock.release() {
            *self
                .lock
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
        }
    }
}

impl<'a> Relock<'a> for Held<'a> {
    type Owner = HeldLock;

    fn owner(&self) -> &'a HeldLock {
        self.lock
    }

    fn lock_again(owner: &'a HeldLock) -> Result<Self, LockError<Self>> {
        match owner.lock.acquire() {
            Ok(()) => Ok(Held { lock: owner }),
            Err(LockError::OwnerDied(())) => Err(LockError::OwnerDied(Held { lock: owner })),
            Err(LockError::Poisoned(())) => Err(LockError::Poisoned(Held { lock: owner })),
            Err(other) => {
                *owner
                    .failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(other.to_string());
                Err(LockError::Unrecoverable {
                    name: owner.lock.name().clone(),
                })
            }
        }
    }
}

/// How a condition's wait ended.
enum Woke {
    /// Notified (or a spurious wakeup): `true`, or timed out: `false`; the lock held.
    Held(bool),
    /// The lock's previous holder died: the lock is held, and `OwnerDied` raised.
    OwnerDied,
    /// The lock could not be released or taken again.
    Failed(String),
}

/// A condition variable shared by processes, as `multiprocessing.Condition`, with a
/// `memspace.Lock` (its own if none is given).
#[pyclass(module = "memspace._memspace", frozen)]
pub(crate) struct Condition {
    condvar: memspace::sync::Condvar,
    lock: Py<crate::lock::Lock>,
}

impl Condition {
    fn check_held(&self, py: Python<'_>, what: &str) -> PyResult<()> {
        let owner = self
            .lock
            .bind(py)
            .get()
            .handle()
            .owner()
            .map_err(|e| errors::to_py(&e))?;
        if owner == Some(std::process::id()) {
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
    /// A condition with `lock` (a `memspace.Lock`), or a new anonymous lock.
    #[new]
    #[pyo3(signature = (lock = None))]
    fn new(py: Python<'_>, lock: Option<Py<crate::lock::Lock>>) -> PyResult<Self> {
        let lock = match lock {
            Some(lock) => lock,
            None => Py::new(py, crate::lock::Lock::new()?)?,
        };
        memspace::sync::Condvar::new()
            .map(|condvar| Self { condvar, lock })
            .map_err(|e| errors::to_py(&e))
    }

    /// Reopens a condition from its condition variable's name and its lock.
    #[staticmethod]
    fn open(name: &str, lock: Py<crate::lock::Lock>) -> PyResult<Self> {
        memspace::sync::Condvar::open(name)
            .map(|condvar| Self { condvar, lock })
            .map_err(|e| errors::to_py(&e))
    }

    /// The condition's lock.
    #[getter]
    fn lock(&self, py: Python<'_>) -> Py<crate::lock::Lock> {
        self.lock.clone_ref(py)
    }

    /// Takes the lock, as `Lock.acquire`.
    #[pyo3(signature = (block = true, timeout = -1.0))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: f64) -> PyResult<bool> {
        self.lock.bind(py).get().acquire(py, block, timeout)
    }

    /// Releases the lock.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.lock.bind(py).get().release()
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, -1.0)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release(py)
    }

    /// Releases the lock (which this process must hold), waits until notified or `timeout`
    /// seconds pass, and takes the lock again; returns `False` if the wait timed out. Wakeups
    /// may be spurious: re-check the condition, or use `wait_for`.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.check_held(py, "wait")?;
        let limit = duration(timeout)?;
        let held = HeldLock {
            lock: self.lock.bind(py).get().handle().clone(),
            failure: Mutex::new(None),
        };
        let condvar = self.condvar.clone();
        let woke = in_thread(
            py,
            move || {
                let guard = Held { lock: &held };
                let result = match limit {
                    None => condvar.wait(guard).map(|g| (g, false)),
                    Some(limit) => condvar.wait_timeout(guard, limit),
                };
                let failure = held
                    .failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                match (result, failure) {
                    (Ok((guard, timed_out)), None) => {
                        // The lock stays held, by the process, for the caller.
                        std::mem::forget(guard);
                        Woke::Held(!timed_out)
                    }
                    (Err(LockError::OwnerDied(guard)), None) => {
                        std::mem::forget(guard);
                        Woke::OwnerDied
                    }
                    (Ok((guard, _)), Some(failure)) => {
                        std::mem::forget(guard);
                        Woke::Failed(failure)
                    }
                    (Err(err), failure) => {
                        if let Some(guard) = err.into_guard() {
                            std::mem::forget(guard);
                        }
                        Woke::Failed(failure.unwrap_or_else(|| "the lock failed".into()))
                    }
                }
            },
            || self.condvar.notify_all(),
        )?;
        match woke {
            Woke::Held(notified) => Ok(notified),
            Woke::OwnerDied => Err(errors::OwnerDied::new_err(
                "the previous holder of the condition's lock died while holding it; the lock \
                 is held now: repair the data, call `lock.mark_consistent()`",
            )),
            Woke::Failed(text) => Err(PyRuntimeError::new_err(text)),
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

    /// Wakes up to `n` waiters (the lock must be held).
    #[pyo3(signature = (n = 1))]
    fn notify(&self, py: Python<'_>, n: u64) -> PyResult<()> {
        self.check_held(py, "notify")?;
        for _ in 0..n {
            self.condvar.notify_one();
        }
        Ok(())
    }

    /// Wakes every waiter (the lock must be held).
    fn notify_all(&self, py: Python<'_>) -> PyResult<()> {
        self.check_held(py, "notify")?;
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
            [
                name.into_pyobject(py)?.into_any(),
                self.lock.clone_ref(py).into_bound(py).into_any(),
            ],
        )
    }
}
