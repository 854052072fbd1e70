//! [`Thread`]: the in-process worker, with the same API as [`Process`](super::Process).

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{JoinError, SpawnError, panic_message};
use crate::sys;

/// Runs `target(args)` on a new thread of this process.
///
/// The arguments are moved to the thread; what they point to (an `Arc`, a `Lock`) is shared
/// with the caller, because threads share one address space.
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::spawn::Thread;
///
/// fn double(x: u32) -> u32 { x * 2 }
///
/// let mut t = Thread::new(double, 21);
/// t.start()?;
/// assert_eq!(t.join()?, 42);
/// # Ok(())
/// # }
/// ```
pub struct Thread<A, R = ()> {
    target: fn(A) -> R,
    args: Option<A>,
    handle: Option<JoinHandle<R>>,
    /// Set when the target returned or panicked, for [`Thread::join_timeout`].
    finished: Arc<Finished>,
}

#[derive(Default)]
struct Finished {
    done: Mutex<bool>,
    changed: Condvar,
}

/// Marks the thread finished when dropped: after its target returns, and while a panic unwinds.
struct MarkFinished(Arc<Finished>);

impl Drop for MarkFinished {
    fn drop(&mut self) {
        *self.0.done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.0.changed.notify_all();
    }
}

impl<A, R> fmt::Debug for Thread<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Thread")
            .field("started", &self.args.is_none())
            .field(
                "running",
                &self.handle.as_ref().is_some_and(|h| !h.is_finished()),
            )
            .finish_non_exhaustive()
    }
}

impl<A: Send + 'static, R: Send + 'static> Thread<A, R> {
    /// A thread that will run `target(args)` once started.
    pub fn new(target: fn(A) -> R, args: A) -> Self {
        Thread {
            target,
            args: Some(args),
            handle: None,
            finished: Arc::default(),
        }
    }

    /// Starts the thread.
    ///
    /// # Errors
    ///
    /// [`SpawnError::AlreadyStarted`], or [`SpawnError::Os`] if the system has no thread to give.
    pub fn start(&mut self) -> Result<(), SpawnError> {
        let args = self.args.take().ok_or(SpawnError::AlreadyStarted)?;
        let target = self.target;
        let finished = MarkFinished(Arc::clone(&self.finished));
        let handle = std::thread::Builder::new()
            .spawn(move || {
                let _finished = finished;
                target(args)
            })
            .map_err(|source| SpawnError::Os {
                op: "pthread_create",
                source,
            })?;
        self.handle = Some(handle);
        Ok(())
    }

    /// Waits for the thread and returns what the target returned.
    ///
    /// # Errors
    ///
    /// [`JoinError::Panicked`] if the target panicked, [`JoinError::NotStarted`].
    pub fn join(&mut self) -> Result<R, JoinError> {
        let handle = self.handle.take().ok_or(JoinError::NotStarted)?;
        handle.join().map_err(|payload| JoinError::Panicked {
            worker: "thread".to_owned(),
            message: panic_message(&*payload),
        })
    }

    /// Waits at most `timeout` for the thread to finish: `Ok(None)` if it still runs then.
    /// Join it again later.
    ///
    /// # Errors
    ///
    /// As [`Thread::join`], once the thread has finished.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<R>, JoinError> {
        if self.handle.is_none() {
            return Err(JoinError::NotStarted);
        }
        let deadline = Instant::now().checked_add(timeout);
        let mut done = self
            .finished
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !*done {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Ok(None);
            }
            done = self
                .finished
                .changed
                .wait_timeout(done, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(done);
        self.join().map(Some)
    }

    /// This process's pid (a thread has no pid of its own), once started.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.args.is_none().then(sys::pid)
    }

    /// Whether the thread was started and has not finished (nor been joined).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }
}
