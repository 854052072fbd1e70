//! [`Thread`]: the in-process worker, with the same API as [`Process`](super::Process).

use std::fmt;
use std::thread::JoinHandle;

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
        let handle = std::thread::Builder::new()
            .spawn(move || target(args))
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

    /// This process's pid (a thread has no pid of its own), once started.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.args.is_none().then(sys::pid)
    }

    /// Whether the thread was started and has not finished.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }
}
