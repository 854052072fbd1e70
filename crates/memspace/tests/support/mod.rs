//! Helpers of the crash and lifecycle tests (`tests/crash.rs`, `tests/lifecycle.rs`): a
//! cancellable watchdog, unique segment names removed on drop, children killed on drop, the
//! spawn start method pointed at the running test, `/proc` states, a replayable random
//! generator, and where the `memspace` CLI binary is.
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
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memspace::Segment;
use memspace::spawn::Process;
use memspace::sync::{LockError, Mutex};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The environment variable that puts a re-run test binary into a child role.
pub(crate) const ROLE: &str = "MEMSPACE_CRASH_TEST_ROLE";

/// How long a test may run before its watchdog aborts the process.
pub(crate) const WATCHDOG_LIMIT: Duration = Duration::from_mins(1);

// ---------------------------------------------------------------------------------------------
// Watchdog

/// Aborts the process if the test has not finished within [`WATCHDOG_LIMIT`]; dropping it (at
/// the end of the test, or while unwinding from a failure) cancels it, so that under
/// `cargo test`, where tests share a process, it never fires during a later test.
#[must_use = "the watchdog is cancelled when dropped"]
pub(crate) struct Watchdog {
    done: Arc<(std::sync::Mutex<bool>, Condvar)>,
}

impl Watchdog {
    pub(crate) fn start() -> Self {
        let done = Arc::new((std::sync::Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&done);
        let test = std::thread::current().name().unwrap_or("a test").to_owned();
        std::thread::Builder::new()
            .name("watchdog".to_owned())
            .spawn(move || {
                let (finished, changed) = &*flag;
                let finished = finished.lock().unwrap_or_else(PoisonError::into_inner);
                let (finished, _) = changed
                    .wait_timeout_while(finished, WATCHDOG_LIMIT, |finished| !*finished)
                    .unwrap_or_else(PoisonError::into_inner);
                if !*finished {
                    eprintln!(
                        "watchdog: {test} did not finish within {WATCHDOG_LIMIT:?}: aborting"
                    );
                    std::process::abort();
                }
            })
            .expect("start the watchdog thread");
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (finished, changed) = &*self.done;
        *finished.lock().unwrap_or_else(PoisonError::into_inner) = true;
        changed.notify_all();
    }
}

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
        while !event.wait_timeout(Duration::from_millis(50)) {
            self.exit_if_gone();
        }
    }
}

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`, ...) from `/proc/PID/stat`.
pub(crate) fn process_state(pid: u32) -> Option<char> {
    stat_state(&format!("/proc/{pid}/stat"))
}

/// The state letter of thread `tid` of process `pid`.
pub(crate) fn thread_state(pid: u32, tid: u32) -> Option<char> {
    stat_state(&format!("/proc/{pid}/task/{tid}/stat"))
}

fn stat_state(path: &str) -> Option<char> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may contain anything: skip past it.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
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

/// A segment name unique to this process, test and call (`crashtest.PID.TAG.N`).
pub(crate) fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "crashtest.{}.{tag}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes the segment named on drop (whether or not the test got that far, and whether or
/// not the segment still exists).
#[derive(Debug)]
pub(crate) struct Removal(String);

impl Removal {
    /// A fresh unique name ([`unique_name`]), removed on drop.
    pub(crate) fn fresh(tag: &str) -> Self {
        Removal(unique_name(tag))
    }

    /// Removes `name` on drop (for anonymous segments, whose names the library chooses).
    pub(crate) fn of(name: &impl ToString) -> Self {
        Removal(name.to_string())
    }

    pub(crate) fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.0);
    }
}

/// Whether `/dev/shm/memspace.NAME` exists.
pub(crate) fn shm_exists(name: &str) -> bool {
    Path::new("/dev/shm")
        .join(format!("{}{name}", memspace::segment::SHM_PREFIX))
        .exists()
}

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
// Locks

/// Locks `mutex`, taking over from a holder that died (a killed worker) or panicked.
pub(crate) fn lock_recovering<T: bytemuck::Pod>(
    mutex: &Mutex<T>,
) -> memspace::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(LockError::OwnerDied(guard)) => {
            guard.mark_consistent().expect("mark the mutex consistent");
            guard
        }
        Err(LockError::Poisoned(guard)) => {
            guard.clear_poison();
            guard
        }
        Err(other) => panic!("locking {}: {other}", mutex.name()),
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness

/// A small deterministic generator (xorshift64), so that a failing run replays from its seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        // splitmix64 of the seed: nearby seeds give unrelated streams, and the state is never 0.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

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
