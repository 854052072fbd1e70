//! Helpers of the crash and lifecycle tests (`tests/crash.rs`, `tests/lifecycle.rs`), beside
//! those they share with the other tests (`tests/common`): children killed on drop, the spawn
//! start method pointed at the running test, thread states, temporary directories, seeds to
//! replay a run, and where the `memspace` CLI binary is.
//!
//! Cross-process tests re-run the current test binary in a child role (STYLE.md, section 6):
//! either through memspace's own spawn start method ([`spawn_runs_this_test`]) or through
//! [`Command`] with [`ROLE`] in the environment ([`child_in_role`]).

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of the helpers"
)]

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memspace::spawn::Process;
use serde::Serialize;
use serde::de::DeserializeOwned;

// The helpers both sets of tests need (the watchdog, segment names removed on drop, `/proc`
// states, recovering locks, the replayable generator) are the other tests' own.
#[path = "../common/mod.rs"]
mod common;
#[allow(
    unused_imports,
    reason = "each test binary uses its own subset of the helpers"
)]
pub(crate) use common::{
    Removal, Rng, Watchdog, lock_recovering, process_state, shm_exists, unique_name,
};

/// The environment variable that puts a re-run test binary into a child role.
pub(crate) const ROLE: &str = "MEMSPACE_CRASH_TEST_ROLE";

// ---------------------------------------------------------------------------------------------
// Child processes

/// The name of the running test: libtest runs every test on a thread named after it, and
/// `--exact NAME` selects it again in a child.
pub(crate) fn this_test() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .expect("tests run on a thread named after the test")
        .to_owned()
}

/// Prepares [`StartMethod::Spawn`](memspace::spawn::StartMethod::Spawn) for a test: first
/// statement of every test that spawns. In a spawned child it runs the requested target and
/// exits (it does not return); in the test itself it makes children re-run this test only
/// (`--exact NAME`), whose first statement then lands here again.
pub(crate) fn spawn_runs_this_test() {
    memspace::init();
    let exe: OsString = std::env::current_exe()
        .expect("the test binary's path")
        .into();
    memspace::spawn::set_child_args([
        exe,
        "--exact".into(),
        this_test().into(),
        "--nocapture".into(),
    ]);
}

/// The role this process was started in by [`child_in_role`], if any.
pub(crate) fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// Re-runs the current test in a child process with `ROLE=role` and `env` in its environment.
pub(crate) fn child_in_role(role: &str, env: &[(&str, &str)]) -> ChildGuard {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args(["--exact", &this_test(), "--nocapture"])
        .env(ROLE, role);
    for (key, value) in env {
        command.env(key, value);
    }
    ChildGuard(Some(command.spawn().expect("start a child test process")))
}

/// A child started with [`Command`], killed and reaped on drop if the test did not do it.
#[derive(Debug)]
pub(crate) struct ChildGuard(Option<Child>);

impl ChildGuard {
    pub(crate) fn pid(&self) -> u32 {
        self.0.as_ref().expect("the child").id()
    }

    /// Sends SIGKILL and reaps the child; returns how it ended.
    pub(crate) fn kill(&mut self) -> ExitStatus {
        let mut child = self.0.take().expect("the child");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap the child")
    }

    /// Waits for the child to exit.
    pub(crate) fn wait(&mut self) -> ExitStatus {
        self.0
            .take()
            .expect("the child")
            .wait()
            .expect("reap the child")
    }

    /// Waits until the child stopped itself (a failpoint: state `T`); panics if it ended.
    pub(crate) fn wait_until_stopped(&mut self, point: &str) {
        let pid = self.pid();
        loop {
            match process_state(pid) {
                Some('T' | 't') => return,
                Some('Z' | 'X') | None => {
                    let status = self.wait();
                    panic!("the child ended ({status}) without stopping at failpoint {point}");
                }
                Some(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `status` is the end of a process killed with `SIGKILL`.
pub(crate) fn was_sigkilled(status: ExitStatus) -> bool {
    status.signal() == Some(9)
}

/// A [`Process`] that is killed (`SIGKILL`) and joined on drop if it still runs (so that a failing
/// test does not leave workers behind).
#[derive(Debug)]
pub(crate) struct Reaped<A, R>(pub(crate) Process<A, R>)
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned;

impl<A, R> Reaped<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    /// Starts `process`.
    pub(crate) fn start(mut process: Process<A, R>) -> Self {
        process.start().expect("start a worker process");
        Reaped(process)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.0.pid().expect("started")
    }

    /// Polls `condition` until it holds, like [`wait_until`]; if the process ends meanwhile
    /// (the condition would never hold), reports how it ended instead of waiting for the
    /// watchdog.
    pub(crate) fn wait_until(&mut self, what: &str, mut condition: impl FnMut() -> bool)
    where
        R: std::fmt::Debug,
    {
        while !condition() {
            if matches!(process_state(self.pid()), Some('Z' | 'X') | None) {
                let ended = self.0.join();
                panic!(
                    "process {} ended while the test waited until {what}: {ended:?}",
                    self.pid()
                );
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

impl<A, R> Drop for Reaped<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    fn drop(&mut self) {
        if self.0.is_running() {
            let _ = self.0.kill();
            let _ = self.0.join();
        }
    }
}

/// The parent of a child-role process, to notice being orphaned: a child that runs until it is
/// killed exits by itself if its test process died (say, aborted by its watchdog).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parent(u32);

impl Parent {
    /// Records the current parent; call it first in a child's target.
    pub(crate) fn here() -> Self {
        Parent(std::os::unix::process::parent_id())
    }

    /// Ends this child at once (by a panic, which its test or `Process` reports as a failure)
    /// if the parent is gone (we were re-parented).
    pub(crate) fn exit_if_gone(self) {
        assert_eq!(
            std::os::unix::process::parent_id(),
            self.0,
            "child {}: the test process is gone",
            std::process::id()
        );
    }

    /// Sleeps until killed (or until the parent is gone).
    pub(crate) fn park_until_killed(self) -> ! {
        loop {
            std::thread::park_timeout(Duration::from_millis(50));
            self.exit_if_gone();
        }
    }

    /// Waits for `event`, leaving if the parent is gone.
    pub(crate) fn wait(self, event: &memspace::sync::Event) {
        while !event.wait_timeout(Duration::from_millis(50)).expect("wait") {
            self.exit_if_gone();
        }
    }
}

/// The state letter of thread `tid` of process `pid`.
pub(crate) fn thread_state(pid: u32, tid: u32) -> Option<char> {
    common::stat_state(&format!("/proc/{pid}/task/{tid}/stat"))
}

/// The calling thread's id (`/proc/thread-self` links to `PID/task/TID`).
pub(crate) fn current_tid() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("read /proc/thread-self");
    link.file_name()
        .and_then(|tid| tid.to_str())
        .and_then(|tid| tid.parse().ok())
        .expect("/proc/thread-self ends in the thread id")
}

/// The calling process's start time in clock ticks after boot (field 22 of `/proc/self/stat`),
/// as memspace records a creator's.
pub(crate) fn own_start_time() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    stat[stat.rfind(')').expect("a command name") + 1..]
        .split_whitespace()
        .nth(22 - 3)
        .and_then(|field| field.parse().ok())
        .expect("field 22 of /proc/self/stat")
}

/// Polls `condition` until it holds. Waiting for a flag, not a sleep deciding an order: the
/// test's watchdog ends the wait if the flag never comes.
pub(crate) fn wait_until(mut condition: impl FnMut() -> bool) {
    while !condition() {
        std::thread::sleep(Duration::from_micros(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Segments and files

/// A fresh directory under the system's temporary directory, removed with its content on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// The segment name `file:DIR/FILE`.
    pub(crate) fn segment(&self, file: &str) -> String {
        format!(
            "{}{}",
            memspace::segment::FILE_PREFIX,
            self.0.join(file).display()
        )
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness

/// The seed in `variable` if set (to replay a run), else one from the clock; printed either way.
pub(crate) fn seed_from_env(variable: &str) -> u64 {
    let seed = match std::env::var(variable) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{variable}={text} is not a u64")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64),
    };
    eprintln!("seed = {seed} (replay with {variable}={seed})");
    seed
}

// ---------------------------------------------------------------------------------------------
// The CLI

/// The `memspace` CLI of the same build profile as this test binary.
///
/// The test executable is `target/<profile>/deps/<test>-<hash>`; cargo puts the CLI binary at
/// `target/<profile>/memspace`. `cargo nextest run --workspace` (what `scripts/test.sh` runs)
/// builds it before any test runs; `cargo nextest run -p memspace` does not, and may find a
/// binary from an earlier build or none. `MEMSPACE_CLI=PATH` names another binary.
pub(crate) fn cli_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MEMSPACE_CLI") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let cli = profile_dir.join("memspace");
    cli.is_file().then_some(cli)
}

/// Runs the CLI with `args`; returns its standard output, panicking if it fails.
pub(crate) fn run_cli(cli: &Path, args: &[&str]) -> String {
    let output = Command::new(cli)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", cli.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "`memspace {}` failed ({}):\n{stdout}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
