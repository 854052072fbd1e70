//! Child processes of a test: killed (SIGKILL) and reaped on drop if the test did not reap
//! them, so that a failing test leaves no process running (and attached to its segments)
//! behind; and children that leave by themselves once their test process is gone.

use std::fmt::Debug;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use memspace::spawn::{JoinError, Process, StartMethod};
use memspace::sync::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::procfs;
use crate::watchdog;

/// Sends SIGKILL to `pid` (errors ignored: it may have ended already).
pub fn sigkill(pid: u32) {
    send_signal(pid, rustix::process::Signal::KILL);
}

/// Stops `pid` with SIGSTOP and waits until it is stopped: it runs no instruction until
/// [`sigcont`].
///
/// # Panics
///
/// If `pid` ends first, or is not stopped within [`WAIT_LIMIT`].
pub fn sigstop(pid: u32) {
    send_signal(pid, rustix::process::Signal::STOP);
    wait_until(&format!("{pid} stops"), || {
        assert!(!procfs::has_ended(pid), "{pid} ended instead of stopping");
        matches!(procfs::process_state(pid), Some('T' | 't'))
    });
}

/// Lets `pid`, stopped by [`sigstop`], go on (SIGCONT).
pub fn sigcont(pid: u32) {
    send_signal(pid, rustix::process::Signal::CONT);
}

/// Sends `signal` to `pid` (errors ignored: it may have ended already).
fn send_signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Reaps this process's child `pid`, waiting for it to end: for a child no handle will reap
/// (one whose `Process` was dropped). Whether it was reaped here.
pub fn reap_zombie(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    matches!(
        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()),
        Ok(Some(_))
    )
}

/// Whether `status` is the end of a process killed with `SIGKILL`.
pub fn was_sigkilled(status: ExitStatus) -> bool {
    status.signal() == Some(9)
}

/// The pause between two polls of a condition.
pub(crate) fn pace() {
    std::thread::sleep(Duration::from_micros(200));
}

/// How long [`wait_until`] waits before it gives up.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Polls `condition` until it holds. Waiting for a flag, not a sleep deciding an order.
///
/// # Panics
///
/// If it does not hold within [`WAIT_LIMIT`], naming `what` the test waited for.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < WAIT_LIMIT,
            "waited {WAIT_LIMIT:?} in vain for: {what}"
        );
        pace();
    }
}

// ---------------------------------------------------------------------------------------------
// memspace workers

/// A started [`Process`], killed (SIGKILL) and joined on drop if the test did not join it.
#[derive(Debug)]
pub struct Running<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    process: Process<A, R>,
    pid: u32,
}

impl<A, R> Running<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    /// Starts `process`.
    ///
    /// # Panics
    ///
    /// If it does not start.
    pub fn start(mut process: Process<A, R>) -> Self {
        process.start().expect("start a worker process");
        let pid = process.pid().expect("a started process has a pid");
        watchdog::watch_child(pid);
        Running { process, pid }
    }

    /// Starts `target(args)` in a process started by `method`.
    ///
    /// # Panics
    ///
    /// If it does not start.
    pub fn start_by(method: StartMethod, target: fn(A) -> R, args: A) -> Self {
        Running::start(Process::new(target, args).start_method(method))
    }

    /// Starts `target(args)` in a spawned process (a fresh run of this test binary, see
    /// [`start_test`](crate::start_test)).
    ///
    /// # Panics
    ///
    /// If it does not start.
    pub fn spawn(target: fn(A) -> R, args: A) -> Self {
        Running::start_by(StartMethod::Spawn, target, args)
    }

    /// The process's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends SIGKILL through [`Process::kill`].
    ///
    /// # Panics
    ///
    /// If the signal cannot be sent.
    pub fn kill(&self) {
        self.process.kill().expect("Process::kill");
    }

    /// Kills the process with SIGKILL and joins it.
    ///
    /// # Panics
    ///
    /// If the signal cannot be sent, or the process ended otherwise (on its own, or by another
    /// signal), naming it `what`.
    pub fn kill_and_reap(&mut self, what: &str)
    where
        R: Debug,
    {
        self.kill();
        match self.join() {
            Err(JoinError::Killed { signal: 9, .. }) => {}
            other => panic!("{what} ended otherwise than by the SIGKILL: {other:?}"),
        }
    }

    /// Joins the process.
    ///
    /// # Errors
    ///
    /// How the process ended, if not by returning.
    pub fn join(&mut self) -> Result<R, JoinError> {
        let result = self.process.join();
        watchdog::forget_child(self.pid);
        result
    }

    /// Joins the process if it ends within `timeout` (`Ok(None)` if it still runs).
    ///
    /// # Errors
    ///
    /// How the process ended, if not by returning.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<R>, JoinError> {
        let result = self.process.join_timeout(timeout);
        if !matches!(result, Ok(None)) {
            watchdog::forget_child(self.pid);
        }
        result
    }

    /// The process.
    pub fn process(&self) -> &Process<A, R> {
        &self.process
    }

    /// Whether the process has ended (it is a zombie, or gone).
    pub fn has_ended(&self) -> bool {
        procfs::has_ended(self.pid)
    }

    /// Polls `condition` until it holds; if the process ends meanwhile (the condition would
    /// never hold), reports how it ended instead of waiting for the watchdog.
    ///
    /// # Panics
    ///
    /// If the process ends first.
    pub fn wait_until(&mut self, what: &str, mut condition: impl FnMut() -> bool)
    where
        R: Debug,
    {
        while !condition() {
            if self.has_ended() {
                let ended = self.join();
                panic!(
                    "process {} ended while the test waited until {what}: {ended:?}",
                    self.pid
                );
            }
            pace();
        }
    }
}

impl<A, R> Drop for Running<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    fn drop(&mut self) {
        if self.process.is_running() {
            let _ = self.process.kill();
            let _ = self.process.join();
        }
        watchdog::forget_child(self.pid);
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

/// A child started with [`Command`], killed and reaped on drop if the test did not reap it.
#[derive(Debug)]
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Starts `command`.
    ///
    /// # Panics
    ///
    /// If it does not start.
    pub fn spawn(command: &mut Command) -> Self {
        let child = command.spawn().expect("start a child process");
        watchdog::watch_child(child.id());
        ChildGuard(Some(child))
    }

    /// The child's pid.
    ///
    /// # Panics
    ///
    /// If it was reaped.
    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    fn child(&self) -> &Child {
        self.0.as_ref().expect("the child was reaped already")
    }

    fn reap(&mut self, kill: bool) -> ExitStatus {
        let mut child = self.0.take().expect("the child was reaped already");
        if kill {
            child.kill().expect("SIGKILL the child");
        }
        let status = child.wait().expect("reap the child");
        watchdog::forget_child(child.id());
        status
    }

    /// Sends SIGKILL and reaps the child; returns how it ended.
    pub fn kill(&mut self) -> ExitStatus {
        self.reap(true)
    }

    /// Waits for the child to end; returns how it ended.
    pub fn wait(&mut self) -> ExitStatus {
        self.reap(false)
    }

    /// Whether the child has ended (it is a zombie, or gone); it is not reaped.
    pub fn has_ended(&self) -> bool {
        procfs::has_ended(self.pid())
    }

    /// Lets a child stopped at a failpoint go on (`SIGCONT`).
    pub fn resume(&self) {
        sigcont(self.pid());
    }

    /// Waits until the child stopped itself at a failpoint (state `T`).
    ///
    /// # Panics
    ///
    /// If the child ends first.
    pub fn wait_until_stopped(&mut self, point: &str) {
        loop {
            match procfs::process_state(self.pid()) {
                Some('T' | 't') => return,
                Some('Z' | 'X') | None => {
                    let status = self.wait();
                    panic!("the child ended ({status}) without stopping at failpoint {point}");
                }
                Some(_) => pace(),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
            watchdog::forget_child(child.id());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Orphans

/// The parent of a child process, to notice being orphaned: a child that runs until it is
/// killed leaves by itself (by a panic, which its test reports) once its test process died,
/// say aborted by its watchdog.
#[derive(Debug, Clone, Copy)]
pub struct Parent(u32);

impl Parent {
    /// The current parent; call it first in a child's target.
    pub fn here() -> Self {
        Parent(std::os::unix::process::parent_id())
    }

    /// Ends this child at once (by a panic) if its parent is gone (it was re-parented).
    ///
    /// # Panics
    ///
    /// If the parent is gone.
    pub fn exit_if_gone(self) {
        assert_eq!(
            std::os::unix::process::parent_id(),
            self.0,
            "child {}: the test process is gone",
            std::process::id()
        );
    }

    /// Sleeps until killed (or until the parent is gone).
    pub fn park_until_killed(self) -> ! {
        loop {
            std::thread::park_timeout(Duration::from_millis(5));
            self.exit_if_gone();
        }
    }

    /// Waits for `event`, leaving if the parent is gone.
    ///
    /// # Panics
    ///
    /// If the wait fails, or the parent is gone.
    pub fn wait(self, event: &Event) {
        while !event.wait_timeout(Duration::from_millis(50)).expect("wait") {
            self.exit_if_gone();
        }
    }
}

/// The test process `pid`, as a child that was given its pid knows it.
impl From<u32> for Parent {
    fn from(pid: u32) -> Self {
        Parent(pid)
    }
}
