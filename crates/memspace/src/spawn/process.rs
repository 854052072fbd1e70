//! [`Process`]: a child process running a function, started by `fork` or by re-executing the
//! program.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::child::{self, Outcome};
use super::{JoinError, SpawnError, StartMethod};
use crate::sys;

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

enum State {
    NotStarted,
    Running {
        pid: u32,
        /// The results pipe, until its end of input.
        results: Option<File>,
        /// Readable once the child ended (where the kernel has pidfds).
        ended: Option<OwnedFd>,
        /// What the child sent so far: kept across timed-out joins.
        received: Vec<u8>,
    },
    Joined {
        pid: u32,
        status: ExitStatus,
    },
}

/// Runs `target(args)` in a child process.
///
/// The arguments are *copied* into the child; the target's return value is copied back to
/// [`join`](Process::join). Handles to shared objects travel as references (see
/// [`spawn`](crate::spawn)).
///
/// A process that is dropped while running is neither killed nor waited for: join it (or
/// [`kill`](Process::kill) it and join) to reap it.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> memspace::Result<()> {
/// use memspace::spawn::Process;
///
/// fn double(x: u32) -> u32 { x * 2 }
///
/// let mut p = Process::new(double, 21);
/// p.start()?;
/// assert_eq!(p.join()?, 42);
/// # Ok(())
/// # }
/// ```
pub struct Process<A, R = ()> {
    target: fn(A) -> R,
    args: Option<A>,
    method: StartMethod,
    state: State,
}

impl<A, R> fmt::Debug for Process<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pid, status) = match &self.state {
            State::NotStarted => (None, None),
            State::Running { pid, .. } => (Some(*pid), None),
            State::Joined { pid, status } => (Some(*pid), Some(*status)),
        };
        f.debug_struct("Process")
            .field("method", &self.method)
            .field("pid", &pid)
            .field("status", &status)
            .finish_non_exhaustive()
    }
}

impl<A, R> Process<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    /// A process that will run `target(args)` once started, by `fork` unless
    /// [`start_method`](Process::start_method) says otherwise.
    pub fn new(target: fn(A) -> R, args: A) -> Self {
        Process {
            target,
            args: Some(args),
            method: StartMethod::default(),
            state: State::NotStarted,
        }
    }

    /// Chooses how the child is started.
    #[must_use]
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// Starts the child.
    ///
    /// # Errors
    ///
    /// [`SpawnError::AlreadyStarted`]; [`SpawnError::NotInitialized`] for
    /// [`StartMethod::Spawn`] without [`init()`](crate::init); [`SpawnError::Encode`] if the
    /// arguments cannot be serialized; [`SpawnError::Os`] if `fork`, `pipe` or `exec` fail.
    pub fn start(&mut self) -> Result<(), SpawnError> {
        if !matches!(self.state, State::NotStarted) {
            return Err(SpawnError::AlreadyStarted);
        }
        let args = self.args.take().ok_or(SpawnError::AlreadyStarted)?;
        let (pid, results) = match self.method {
            StartMethod::Fork => child::fork_and_run(self.target, args)?,
            StartMethod::Spawn => child::spawn_and_run(self.target, &args)?,
        };
        self.state = State::Running {
            pid,
            results: Some(File::from(results)),
            ended: sys::child_end_notifier(pid),
            // Allocated only for a result that does not fit on `join`'s stack: after a fork,
            // every page this process writes is copied (or at least faulted) first, and the
            // allocator's pages are among them.
            received: Vec::new(),
        };
        Ok(())
    }

    /// Waits for the child to end and returns what its target returned.
    ///
    /// # Errors
    ///
    /// * [`JoinError::Panicked`] if the target panicked (the message comes from the child);
    /// * [`JoinError::Killed`] if a signal ended the child;
    /// * [`JoinError::Exited`] if it exited without a result;
    /// * [`JoinError::Failed`] if it could not decode its arguments or encode its result;
    /// * [`JoinError::NotStarted`].
    pub fn join(&mut self) -> Result<R, JoinError> {
        match self.join_until(None)? {
            Some(value) => Ok(value),
            None => unreachable!("a join without a deadline waits until the child ends"),
        }
    }

    /// Waits at most `timeout` for the child to end: `Ok(None)` if it still runs then, as
    /// Python's `Process.join(timeout)`. The child is not disturbed; join it again later.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> memspace::Result<()> {
    /// use std::time::Duration;
    /// use memspace::spawn::Process;
    ///
    /// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    ///
    /// let mut p = Process::new(slow, 500);
    /// p.start()?;
    /// if p.join_timeout(Duration::from_millis(10))?.is_none() {
    ///     println!("still running");
    /// }
    /// assert_eq!(p.join()?, 500);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Process::join`], once the child has ended.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<R>, JoinError> {
        // A timeout too large for an `Instant` (centuries) is no timeout.
        self.join_until(Instant::now().checked_add(timeout))
    }

    fn join_until(&mut self, deadline: Option<Instant>) -> Result<Option<R>, JoinError> {
        let State::Running {
            pid,
            results,
            ended,
            received,
        } = &mut self.state
        else {
            return Err(JoinError::NotStarted);
        };
        let pid = *pid;
        let os = |op| move |source| JoinError::Os { op, source };
        // A small result is read onto the stack, in pages the start has written already since
        // the fork, and decoded there; the heap is touched only for a larger one.
        let mut first = [0u8; RESULT_ROOM];
        let mut first_len = 0;
        // Read while waiting: a child blocked writing a large result to a full pipe would never
        // exit, and we would wait for it forever.
        loop {
            let Some(pipe) = results.as_mut() else {
                // The child closed its pipe or sent its whole result; it is about to end, or
                // ended. Without a deadline, `waitpid` below waits for that.
                if let (Some(ended), Some(_)) = (ended.as_ref(), deadline) {
                    let (ready, _) = sys::wait_readable_pair(ended.as_fd(), None, deadline)
                        .map_err(os("poll"))?;
                    if !ready {
                        return Ok(None);
                    }
                }
                break;
            };
            let (readable, child_ended) =
                sys::wait_readable_pair(pipe.as_fd(), ended.as_ref().map(AsFd::as_fd), deadline)
                    .map_err(os("poll"))?;
            if !readable && !child_ended {
                return Ok(None);
            }
            if readable {
                let read = if received.is_empty() && deadline.is_none() {
                    let read = sys::read(pipe.as_fd(), &mut first).map_err(os("read"))?;
                    if child::frame_len(&first[..read]).is_some() {
                        first_len = read;
                    } else {
                        // More is coming: gathered on the heap.
                        received.extend_from_slice(&first[..read]);
                    }
                    read
                } else {
                    read_some(pipe, received).map_err(os("read"))?
                };
                if read == 0 {
                    *results = None;
                    continue;
                }
                if first_len > 0 || child::frame_len(received).is_some() {
                    // The whole result is here and the child sends nothing more: only its exit
                    // is left to wait for, without a wake-up for its end of the pipe closing.
                    *results = None;
                    continue;
                }
            }
            if child_ended {
                // The child ended. What it wrote is in the pipe; anything more would come from
                // a process it started, which we do not wait for.
                while sys::wait_readable_pair(pipe.as_fd(), None, Some(Instant::now()))
                    .map_err(os("poll"))?
                    .0
                    && read_some(pipe, received).map_err(os("read"))? != 0
                {}
                break;
            }
        }
        let gathered = std::mem::take(received);
        let bytes = if first_len > 0 {
            &first[..first_len]
        } else {
            &gathered[..]
        };
        let status = match sys::wait_child(pid).map_err(os("waitpid"))? {
            sys::ExitStatus::Exited(code) => ExitStatus::Exited(code),
            sys::ExitStatus::Signaled(signal) => ExitStatus::Signaled(signal),
        };
        self.state = State::Joined { pid, status };
        outcome(pid, status, bytes)
    }
}

/// What `join` returns for a child `pid` that ended with `status` and sent `bytes`.
fn outcome<R: DeserializeOwned>(
    pid: u32,
    status: ExitStatus,
    bytes: &[u8],
) -> Result<Option<R>, JoinError> {
    if let ExitStatus::Signaled(signal) = status {
        return Err(JoinError::Killed { pid, signal });
    }
    match child::decode_outcome::<R>(bytes) {
        Some(Outcome::Returned(value)) => Ok(Some(value)),
        Some(Outcome::Panicked(message)) => Err(JoinError::Panicked {
            worker: format!("process {pid}"),
            message,
        }),
        Some(Outcome::Failed(message)) => Err(JoinError::Failed { pid, message }),
        None => Err(match status {
            ExitStatus::Exited(code) if !bytes.is_empty() => JoinError::Failed {
                pid,
                message: format!(
                    "its result could not be decoded as `{}` (exit code {code})",
                    std::any::type_name::<R>()
                ),
            },
            ExitStatus::Exited(code) => JoinError::Exited { pid, code },
            ExitStatus::Signaled(signal) => JoinError::Killed { pid, signal },
        }),
    }
}

/// Reads what the pipe holds now (it was polled readable) onto `into`; 0 at its end.
fn read_some(pipe: &mut File, into: &mut Vec<u8>) -> std::io::Result<usize> {
    // In small steps while the result is small, then in larger ones.
    let room = if into.len() < RESULT_ROOM {
        RESULT_ROOM - into.len()
    } else {
        16 * 1024
    };
    sys::read_appending(pipe.as_fd(), into, room)
}

/// Bytes of a child's result read onto the stack: a small result fits.
const RESULT_ROOM: usize = 512;

impl<A, R> Process<A, R> {
    /// The child's pid, once started.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::NotStarted => None,
            State::Running { pid, .. } | State::Joined { pid, .. } => Some(*pid),
        }
    }

    /// How the child ended, once joined.
    #[must_use]
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match &self.state {
            State::Joined { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The child's exit code, once joined, if it exited rather than being killed.
    #[must_use]
    pub fn exit_code(&self) -> Option<i32> {
        match self.exit_status() {
            Some(ExitStatus::Exited(code)) => Some(code),
            _ => None,
        }
    }

    /// Whether the child was started and has not ended, as Python's `Process.is_alive()`.
    ///
    /// A child that ended is not running even before it is joined: this looks without
    /// reaping it, so [`join`](Process::join) still returns its result. A child that some other
    /// code reaped (with `waitpid(-1)`) is not running either.
    #[must_use]
    pub fn is_running(&self) -> bool {
        match self.state {
            State::Running { pid, .. } => !sys::child_has_ended(pid).unwrap_or(true),
            _ => false,
        }
    }

    /// Sends `SIGKILL` to the child: it ends at once, running no destructors. Join it next.
    ///
    /// # Errors
    ///
    /// The `kill` call's error; killing a child that already ended (but was not joined) is not
    /// an error.
    pub fn kill(&self) -> std::io::Result<()> {
        self.signal(sys::SIGKILL)
    }

    /// Sends `SIGTERM` to the child.
    ///
    /// # Errors
    ///
    /// As [`Process::kill`].
    pub fn terminate(&self) -> std::io::Result<()> {
        self.signal(sys::SIGTERM)
    }

    fn signal(&self, signal: i32) -> std::io::Result<()> {
        match &self.state {
            State::Running { pid, .. } => sys::send_signal(*pid, signal),
            _ => Ok(()),
        }
    }
}

impl<A, R> Drop for Process<A, R> {
    fn drop(&mut self) {
        // Reap the child if it has already ended, so that no zombie is left; a running child is
        // left alone (it is not ours to kill).
        if let State::Running { pid, .. } = self.state {
            let _ = sys::try_wait_child(pid);
        }
    }
}
