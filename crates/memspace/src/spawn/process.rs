//! [`Process`]: a child process running a function, started by `fork` or by re-executing the
//! program.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
        /// The file the child writes its outcome into (`child`'s module docs).
        results: OwnedFd,
        /// Readable once the child ended: its pidfd, opened by the first join with a deadline
        /// (where the kernel has pidfds).
        ended: Option<OwnedFd>,
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
    /// arguments cannot be serialized; [`SpawnError::Os`] if `fork`, `exec` or the making of
    /// the file the child's result comes back in fail.
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
            results,
            ended: None,
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
    /// * [`JoinError::Failed`] if it could not decode its arguments, or encode or write all of
    ///   its result;
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
        } = &mut self.state
        else {
            return Err(JoinError::NotStarted);
        };
        let pid = *pid;
        let os = |op| move |source| JoinError::Os { op, source };
        // The child's result file never blocks it, so its end is all there is to wait for.
        if let Some(deadline) = deadline
            && !wait_for_end(pid, ended, deadline)?
        {
            return Ok(None);
        }
        let status = match sys::wait_child(pid).map_err(os("waitpid"))? {
            sys::ExitStatus::Exited(code) => ExitStatus::Exited(code),
            sys::ExitStatus::Signaled(signal) => ExitStatus::Signaled(signal),
        };
        // A small result is read onto the stack, in pages the start has written already since
        // the fork, and decoded there: after a fork, every page this process writes is copied
        // (or at least faulted) first, and the allocator's pages are among them.
        let mut first = [0u8; RESULT_ROOM];
        let mut larger = Vec::new();
        let received = read_result(results.as_fd(), &mut first, &mut larger);
        // Nothing else reads it; a grandchild that inherited it would keep its memory.
        let _ = sys::empty_file(results.as_fd());
        self.state = State::Joined { pid, status };
        outcome(pid, status, received.map_err(os("read"))?)
    }
}

/// Waits until the child `pid` has ended or `deadline` has passed; returns whether it ended.
///
/// The first wait opens the child's pidfd into `ended`, which later ones reuse. It looks first
/// (`waitid`) that `pid` is still a child of this process, not yet reaped: then the pid names
/// it and no other process. (Code that reaps every child, `waitpid(-1)` or `SIGCHLD` ignored,
/// takes that away; the look then fails with `ECHILD`.) Where the kernel has no pidfds
/// (before Linux 5.3) the child is looked at every few milliseconds.
fn wait_for_end(
    pid: u32,
    ended: &mut Option<OwnedFd>,
    deadline: Instant,
) -> Result<bool, JoinError> {
    let os = |op| move |source| JoinError::Os { op, source };
    if ended.is_none() {
        if sys::child_has_ended(pid).map_err(os("waitid"))? {
            return Ok(true);
        }
        *ended = sys::end_notifier(pid);
    }
    match ended {
        Some(ended) => Ok(sys::wait_readable_pair(ended.as_fd(), None, Some(deadline))
            .map_err(os("poll"))?
            .0),
        None => look_until_ended(pid, deadline).map_err(os("waitid")),
    }
}

/// Looks whether the child `pid` has ended, every few milliseconds until `deadline`; returns
/// whether it ended.
fn look_until_ended(pid: u32, deadline: Instant) -> std::io::Result<bool> {
    let mut pause = Duration::from_micros(100);
    loop {
        if sys::child_has_ended(pid)? {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// The frame an ended child wrote into its result file: onto `first` if it fits, otherwise
/// onto `larger`, as much of it as the file holds.
fn read_result<'a>(
    results: BorrowedFd<'_>,
    first: &'a mut [u8; RESULT_ROOM],
    larger: &'a mut Vec<u8>,
) -> std::io::Result<&'a [u8]> {
    let read = sys::read_file_start(results, first)?;
    if read < RESULT_ROOM || child::frame_len(first).is_some() {
        return Ok(&first[..read]);
    }
    let frame = 4 + u64::from(u32::from_le_bytes([first[0], first[1], first[2], first[3]]));
    let size = usize::try_from(frame.min(sys::file_info(results)?.size))
        .map_err(|_| std::io::Error::other("a result larger than the address space"))?;
    larger.resize(size, 0);
    let read = sys::read_at(results, larger, 0)?;
    larger.truncate(read);
    Ok(larger)
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
            ExitStatus::Exited(code) if let Some(why) = child::cut_short(bytes) => {
                JoinError::Failed {
                    pid,
                    message: format!("{why} (exit code {code})"),
                }
            }
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
        // left alone (it is not ours to kill). Its result is never read: emptied, the file
        // holds no memory for a grandchild that inherited it.
        if let State::Running { pid, results, .. } = &self.state {
            let _ = sys::try_wait_child(*pid);
            let _ = sys::empty_file(results.as_fd());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::look_until_ended;

    /// The way a timed join waits where the kernel has no pidfds.
    #[test]
    fn looking_for_a_childs_end_gives_up_at_the_deadline_and_sees_the_end() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("start sleep");
        let pid = child.id();
        let looked = look_until_ended(pid, Instant::now() + Duration::from_millis(20));
        assert!(!looked.expect("look"), "sleep 30 ended within the look");
        child.kill().expect("kill sleep");
        let looked = look_until_ended(pid, Instant::now() + Duration::from_mins(1));
        assert!(looked.expect("look"), "the killed child was not seen ended");
        child.wait().expect("reap sleep");
        // Reaped, it is no child of this process any more.
        assert!(look_until_ended(pid, Instant::now()).is_err());
    }
}
