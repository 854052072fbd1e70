//! Run work as threads or as processes, with one API.
//!
//! [`Thread`] and [`Process`] take the same target (a function `fn(A) -> R`) and the same
//! arguments, and have the same `start`/`join`. What differs is memory:
//!
//! * a thread runs in this process's address space; its arguments are *moved* to it, and
//!   anything reached through them (an `Arc`) is shared with the caller;
//! * a process has an address space of its own; its arguments are *copied* into it, so a plain
//!   `Vec` it appends to is its own copy, and the caller never sees the change. Handles to
//!   shared objects ([`Lock`](crate::sync::Lock),
//!   [`SharedList`](crate::collections::SharedList)) travel as references: the child reattaches
//!   the same segment.
//!
//! # Start methods
//!
//! * [`StartMethod::Fork`] (the default): `fork()`. The child is a copy-on-write copy of the
//!   parent, with the arguments already in place; a plain value has the *same virtual address*
//!   in parent and child while being different memory. Only the forking thread exists in the
//!   child: fork before starting other threads (or runtimes), because a lock another thread held
//!   at the fork stays locked forever in the child.
//! * [`StartMethod::Spawn`]: re-executes the current program (`/proc/self/exe`, with the same
//!   command-line arguments) and sends it the target and the serialized arguments through a
//!   pipe. It needs [`init()`](crate::init) as the first statement of `main`: in the child,
//!   `init` runs the target and exits instead of returning. The child shares no memory with
//!   the parent except the segments it reattaches.
//!
//! In both, the target's return value comes back to [`join`](Process::join) serialized, and a
//! panic in the child comes back as [`JoinError::Panicked`].

mod child;
mod pool;
mod process;
mod thread;

use std::fmt;
use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::child::{StarTarget, init, set_child_args};
pub use self::pool::{Imap, ImapUnordered, MapHandle, Pool, PoolOptions, TaskError, TaskHandle};
pub use self::process::{ExitStatus, Process};
pub use self::thread::Thread;

/// How a [`Process`] is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartMethod {
    /// `fork()`: fast, inherits the parent's memory copy-on-write.
    #[default]
    Fork,
    /// Re-execute the current program; requires [`init()`](crate::init) at the start of `main`.
    Spawn,
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
        })
    }
}

/// Where a [`Worker`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// A thread of this process.
    Thread,
    /// A child process, started this way.
    Process(StartMethod),
}

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// `start` was called twice.
    #[error("the worker was already started")]
    AlreadyStarted,
    /// The spawn start method needs `memspace::init()` at the start of `main`.
    #[error(
        "the spawn start method re-runs this program, which must call `memspace::init()` as the \
         first statement of `main`; add the call, or use StartMethod::Fork"
    )]
    NotInitialized,
    /// The arguments could not be serialized for the child.
    #[error("the arguments of type `{type_name}` cannot be sent to a child process")]
    Encode {
        /// The argument type.
        type_name: &'static str,
        /// The encoder's complaint.
        #[source]
        source: rmp_serde::encode::Error,
    },
    /// [`TaskHandle::successful`] or [`MapHandle::successful`] was asked before every task
    /// finished (Python raises `ValueError` there); wait for them first, or ask `ready()`.
    #[error(
        "{tasks} task(s) have not finished, so whether they succeeded is not known yet; wait \
         for them first, or ask `ready()`"
    )]
    NotReady {
        /// How many tasks had not finished.
        tasks: usize,
    },
    /// The operating system refused (`fork`, `pipe`, `memfd_create`, `exec`,
    /// `pthread_create`).
    #[error("{op} failed while starting a worker")]
    Os {
        /// The failing call.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// Why a worker ended without a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// `join` was called before `start`.
    #[error("the worker was never started")]
    NotStarted,
    /// The target panicked; `message` is the panic's payload.
    #[error("{worker} panicked: {message}")]
    Panicked {
        /// `thread` or `process PID`.
        worker: String,
        /// The panic message.
        message: String,
    },
    /// The child process was killed by a signal.
    #[error("process {pid} was killed by signal {signal}{}", signal_name(*signal))]
    Killed {
        /// The child's pid.
        pid: u32,
        /// The signal number.
        signal: i32,
    },
    /// The child process exited without sending a result (it called `exit`, or its target
    /// could not run).
    #[error("process {pid} exited with code {code} without returning a result")]
    Exited {
        /// The child's pid.
        pid: u32,
        /// Its exit code.
        code: i32,
    },
    /// The child ran but could not decode its arguments, encode its result, or write all of
    /// its result (then the message says it was cut short).
    #[error("process {pid} failed: {message}")]
    Failed {
        /// The child's pid.
        pid: u32,
        /// What went wrong.
        message: String,
    },
    /// The operating system refused (`waitpid`, `waitid`, `poll`, `read`).
    #[error("{op} failed while joining a worker")]
    Os {
        /// The failing call.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        9 => " (SIGKILL)",
        15 => " (SIGTERM)",
        11 => " (SIGSEGV)",
        7 => " (SIGBUS)",
        6 => " (SIGABRT)",
        2 => " (SIGINT)",
        _ => "",
    }
}

/// A thread or a process, chosen at run time: for code (and tests) written once for both.
#[derive(Debug)]
pub enum Worker<A, R = ()> {
    /// A thread of this process.
    Thread(Thread<A, R>),
    /// A child process.
    Process(Process<A, R>),
}

impl<A, R> Worker<A, R>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    /// A worker that will run `target(args)` as `mode` says.
    pub fn new(mode: Mode, target: fn(A) -> R, args: A) -> Self {
        match mode {
            Mode::Thread => Worker::Thread(Thread::new(target, args)),
            Mode::Process(method) => {
                Worker::Process(Process::new(target, args).start_method(method))
            }
        }
    }

    /// Starts the worker.
    ///
    /// # Errors
    ///
    /// As [`Thread::start`] or [`Process::start`].
    pub fn start(&mut self) -> Result<(), SpawnError> {
        match self {
            Worker::Thread(t) => t.start(),
            Worker::Process(p) => p.start(),
        }
    }

    /// Waits for the worker and returns what its target returned.
    ///
    /// # Errors
    ///
    /// As [`Thread::join`] or [`Process::join`].
    pub fn join(&mut self) -> Result<R, JoinError> {
        match self {
            Worker::Thread(t) => t.join(),
            Worker::Process(p) => p.join(),
        }
    }

    /// Waits at most `timeout` for the worker: `Ok(None)` if it still runs then.
    ///
    /// # Errors
    ///
    /// As [`Thread::join_timeout`] or [`Process::join_timeout`].
    pub fn join_timeout(&mut self, timeout: std::time::Duration) -> Result<Option<R>, JoinError> {
        match self {
            Worker::Thread(t) => t.join_timeout(timeout),
            Worker::Process(p) => p.join_timeout(timeout),
        }
    }

    /// Whether the worker was started and has not ended (a process that ended counts as ended
    /// before it is joined).
    #[must_use]
    pub fn is_running(&self) -> bool {
        match self {
            Worker::Thread(t) => t.is_running(),
            Worker::Process(p) => p.is_running(),
        }
    }

    /// The pid the worker runs in (this process's, for a thread), once started.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        match self {
            Worker::Thread(t) => t.pid(),
            Worker::Process(p) => p.pid(),
        }
    }
}

/// Extracts the message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
