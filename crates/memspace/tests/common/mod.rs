//! Helpers shared by the integration tests (`experiment`, `list`, `robust`, `segment`,
//! `spawn`): the spawn start method pointed at the running test, a watchdog, unique segment
//! names removed on drop, flags in shared memory to order events between processes, workers
//! killed on drop, and `/proc` states.
//!
//! Ordering between processes goes through flags in shared memory ([`set_flag`],
//! [`wait_for_flag`]); the short sleeps in the polling loops only pace the polling, they never
//! decide an order.

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of the helpers"
)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, PoisonError};
use std::time::Duration;

use memspace::Segment;
use memspace::spawn::Process;
use memspace::sync::{LockError, Mutex, MutexGuard};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long a test may run before its watchdog aborts it.
pub(crate) const WATCHDOG_LIMIT: Duration = Duration::from_mins(1);

/// The environment variable that puts a re-run test binary into a child role ([`run_role`]).
pub(crate) const ROLE: &str = "MEMSPACE_TEST_ROLE";
/// The segment a child role works on.
pub(crate) const ROLE_SEGMENT: &str = "MEMSPACE_TEST_SEGMENT";

// ---------------------------------------------------------------------------------------------
// The spawn start method

/// First statement of every test that uses `StartMethod::Spawn`. In a child started by the
/// spawn start method, `memspace::init()` runs the requested target and exits: it does not
/// return. In the test itself it makes spawned children re-run this one test only
/// (`--exact TEST`), whose first statement then lands in `init()` again.
pub(crate) fn init_spawn(test: &str) {
    memspace::init();
    let exe: OsString = std::env::current_exe()
        .expect("the test binary's path")
        .into();
    memspace::spawn::set_child_args([
        exe,
        "--exact".into(),
        test.into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Watchdog

/// Pids of the worker processes this test started and has not reaped: the watchdog kills them
/// before it aborts, so that a hung test leaves no orphans behind.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn register_child(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(pid);
}

fn unregister_child(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|&p| p != pid);
}

/// Sends SIGKILL to `pid` (errors ignored: it may have ended already).
pub(crate) fn sigkill(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Aborts the test process after [`WATCHDOG_LIMIT`] (killing its registered workers first);
/// dropping it cancels it, so that under `cargo test`, where tests share a process, it never
/// fires during a later test.
#[must_use = "the watchdog is cancelled when dropped"]
pub(crate) struct Watchdog {
    done: Arc<(std::sync::Mutex<bool>, Condvar)>,
}

impl Watchdog {
    pub(crate) fn start() -> Self {
        let done = Arc::new((std::sync::Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&done);
        let test = std::thread::current()
            .name()
            .unwrap_or("the test")
            .to_owned();
        std::thread::Builder::new()
            .name("watchdog".to_owned())
            .spawn(move || {
                let (finished, changed) = &*flag;
                let finished = finished.lock().unwrap_or_else(PoisonError::into_inner);
                let (finished, _) = changed
                    .wait_timeout_while(finished, WATCHDOG_LIMIT, |finished| !*finished)
                    .unwrap_or_else(PoisonError::into_inner);
                if !*finished {
                    eprintln!("watchdog: {test} did not finish within {WATCHDOG_LIMIT:?}");
                    for &pid in CHILDREN
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter()
                    {
                        sigkill(pid);
                    }
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
// Worker processes

/// A started [`Process`], killed (SIGKILL) and joined on drop if the test did not join it, so
/// that a failing test leaves no worker running (and attached to its segments) behind.
#[derive(Debug)]
pub(crate) struct Running<A, R>
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
    pub(crate) fn start(mut process: Process<A, R>) -> Self {
        process.start().expect("start a worker process");
        let pid = process.pid().expect("a started process has a pid");
        register_child(pid);
        Running { process, pid }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends SIGKILL through [`Process::kill`].
    pub(crate) fn kill(&self) {
        self.process.kill().expect("Process::kill");
    }

    /// Joins the process.
    pub(crate) fn join(&mut self) -> Result<R, memspace::spawn::JoinError> {
        let result = self.process.join();
        unregister_child(self.pid);
        result
    }

    pub(crate) fn process(&self) -> &Process<A, R> {
        &self.process
    }

    /// Whether the process has ended (it is a zombie, or gone).
    pub(crate) fn has_ended(&self) -> bool {
        matches!(process_state(self.pid), Some('Z' | 'X') | None)
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
        unregister_child(self.pid);
    }
}

/// Re-runs the current test binary as a child in `role` (see [`ROLE`]) on `segment`, with
/// `env` added, for tests that need a child with its own environment (failpoints); returns
/// the child, killed and reaped on drop.
pub(crate) fn run_role(test: &str, role: &str, segment: &str, env: &[(&str, &str)]) -> RoleChild {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(ROLE_SEGMENT, segment);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().expect("start a child test process");
    register_child(child.id());
    RoleChild(Some(child))
}

/// Runs the current test binary as a child in `role` to its end; returns its output.
pub(crate) fn run_role_to_end(test: &str, role: &str) -> Output {
    Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .output()
        .expect("run a child test process")
}

/// The role this process was started in by [`run_role`], if any, and its segment.
pub(crate) fn role() -> Option<(String, String)> {
    Some((
        std::env::var(ROLE).ok()?,
        std::env::var(ROLE_SEGMENT).unwrap_or_default(),
    ))
}

/// A child started by [`run_role`].
#[derive(Debug)]
pub(crate) struct RoleChild(Option<std::process::Child>);

impl RoleChild {
    pub(crate) fn pid(&self) -> u32 {
        self.0.as_ref().expect("the child").id()
    }

    /// Sends SIGKILL and reaps the child; returns how it ended.
    pub(crate) fn kill(&mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("the child");
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("reap the child");
        unregister_child(child.id());
        status
    }

    /// Waits until the child stopped itself at a failpoint (state `T`); panics if it ended.
    pub(crate) fn wait_until_stopped(&mut self, point: &str) {
        let pid = self.pid();
        loop {
            match process_state(pid) {
                Some('T' | 't') => return,
                Some('Z' | 'X') | None => {
                    let status = self.0.take().expect("the child").wait();
                    unregister_child(pid);
                    panic!("the child ended ({status:?}) without stopping at failpoint {point}");
                }
                Some(_) => pace(),
            }
        }
    }
}

impl Drop for RoleChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
            unregister_child(child.id());
        }
    }
}

/// Parks a child until it is killed. It leaves (by a panic, which its parent would report) if
/// its parent `parent` is gone, so that an aborted test leaves no child behind.
pub(crate) fn park_until_killed(parent: u32) -> ! {
    loop {
        std::thread::sleep(Duration::from_millis(5));
        exit_if_orphaned(parent);
    }
}

/// Panics if this process's parent is no longer `parent`.
pub(crate) fn exit_if_orphaned(parent: u32) {
    assert_eq!(
        std::os::unix::process::parent_id(),
        parent,
        "child {}: the test process is gone",
        std::process::id()
    );
}

/// The pause between two polls of a condition.
fn pace() {
    std::thread::sleep(Duration::from_micros(200));
}

// ---------------------------------------------------------------------------------------------
// Flags in shared memory

/// A new flag: an anonymous `Mutex<u32>` holding 0, shared with children passed it.
pub(crate) fn new_flag() -> Mutex<u32> {
    Mutex::new(0).expect("create a flag")
}

/// Locks `mutex`, taking over from a holder that died or panicked.
pub(crate) fn lock_recovering<T: bytemuck::Pod>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(LockError::OwnerDied(guard)) => {
            guard.mark_consistent().expect("mark the flag consistent");
            guard
        }
        Err(LockError::Poisoned(guard)) => {
            guard.clear_poison();
            guard
        }
        Err(other) => panic!("locking flag {}: {other}", mutex.name()),
    }
}

pub(crate) fn set_flag(flag: &Mutex<u32>, value: u32) {
    *lock_recovering(flag) = value;
}

pub(crate) fn add_to_flag(flag: &Mutex<u32>, n: u32) -> u32 {
    let mut value = lock_recovering(flag);
    *value += n;
    *value
}

pub(crate) fn read_flag(flag: &Mutex<u32>) -> u32 {
    *lock_recovering(flag)
}

/// Waits (in the test) until `flag` is at least `value`; fails at once if the process `pid`
/// that should set it ended.
pub(crate) fn wait_for_flag(flag: &Mutex<u32>, value: u32, pid: u32) {
    while read_flag(flag) < value {
        assert!(
            !matches!(process_state(pid), Some('Z' | 'X') | None),
            "process {pid} ended before it set flag {} to {value}",
            flag.name()
        );
        pace();
    }
}

/// Waits (in a child) until `flag` is at least `value`; leaves if the test process `parent`
/// is gone.
pub(crate) fn child_wait_for_flag(flag: &Mutex<u32>, value: u32, parent: u32) {
    while read_flag(flag) < value {
        exit_if_orphaned(parent);
        pace();
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`, ...), from `/proc/PID/stat`.
pub(crate) fn process_state(pid: u32) -> Option<char> {
    stat_state(&format!("/proc/{pid}/stat"))
}

pub(crate) fn stat_state(path: &str) -> Option<char> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may contain anything: skip past it.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Whether every thread of process `pid` is asleep in the kernel (state `S`): a worker that
/// said it is about to lock, and then sleeps, is blocked in the lock.
pub(crate) fn all_threads_sleeping(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks.flatten() {
        any = true;
        let path = task.path().join("stat");
        if stat_state(&path.to_string_lossy()) != Some('S') {
            return false;
        }
    }
    any
}

/// Whether this process runs as root (tests that switch users or mount need it).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .map(|line| line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Segment names

/// A segment name unique to this process, test and call: `mstest.PID.TAG.N`.
pub(crate) fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "mstest.{}.{tag}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A segment name removed on drop, whether or not the test got that far and whether or not the
/// segment still exists.
#[derive(Debug)]
pub(crate) struct Removal(String);

impl Removal {
    /// A fresh [`unique_name`], removed on drop.
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
        // `Segment::remove` refuses what is not a segment; a test that planted garbage under
        // the name removes its own file.
        if Segment::remove(&self.0).is_err() && !self.0.starts_with("file:") {
            let _ = std::fs::remove_file(shm_path(&self.0));
        }
    }
}

/// The backing file of segment `name`.
pub(crate) fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/memspace.{name}"))
}

/// Writes `bytes` as the backing file of segment `name`, with the mode a segment has (0600), as
/// a test that crafts a segment by hand needs: a wider mode would be refused on open.
pub(crate) fn write_segment_file(name: &str, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(shm_path(name))
        .and_then(|mut file| file.write_all(bytes))
        .expect("write the segment's file");
}

/// Whether segment `name` exists.
pub(crate) fn shm_exists(name: &str) -> bool {
    shm_path(name).exists()
}

// ---------------------------------------------------------------------------------------------
// Randomness

/// A small deterministic generator (splitmix64-seeded xorshift64), so that a failing run
/// replays from its printed seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// A seed from `MEMSPACE_TEST_SEED` if set, else from the clock; printed either way.
    pub(crate) fn from_env() -> Self {
        let seed = std::env::var("MEMSPACE_TEST_SEED")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            });
        eprintln!("seed = {seed} (replay with MEMSPACE_TEST_SEED={seed})");
        Rng::new(seed)
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

    /// `len` random bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
