//! [`Process`]: a child process running a function, started by `fork` or by re-executing the
//! program.

use std::fmt;
use std::io::Read;
use std::os::fd::OwnedFd;

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
    Running { pid: u32, results: OwnedFd },
    Joined { pid: u32, status: ExitStatus },
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
        self.state = State::Running { pid, results };
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
        let (pid, results) = match std::mem::replace(&mut self.state, State::NotStarted) {
            State::Running { pid, results } => (pid, results),
            other => {
                self.state = other;
                return Err(JoinError::NotStarted);
            }
        };
        // Read to the end first: a child blocked writing a large result to a full pipe would
        // never exit, and we would wait for it forever.
        let mut bytes = Vec::new();
        let read = std::fs::File::from(results).read_to_end(&mut bytes);
        let status = match sys::wait_child(pid) {
            Ok(sys::ExitStatus::Exited(code)) => ExitStatus::Exited(code),
            Ok(sys::ExitStatus::Signaled(signal)) => ExitStatus::Signaled(signal),
            Err(source) => {
                return Err(JoinError::Os {
                    op: "waitpid",
                    source,
                });
            }
        };
        self.state = State::Joined { pid, status };
        read.map_err(|source| JoinError::Os { op: "read", source })?;
        if let ExitStatus::Signaled(signal) = status {
            return Err(JoinError::Killed { pid, signal });
        }
        match child::decode_outcome::<R>(&bytes) {
            Some(Outcome::Returned(value)) => Ok(value),
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
}

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

    /// Whether the child was started and has not been joined. (A child that ended but was not
    /// joined yet is a zombie and counts as alive until joined.)
    #[must_use]
    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
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
