//! Processes and threads: this process's and thread's identity (cached, and forgotten in the
//! child of a fork), whether another process or thread still runs, the boot, and signals.
//!
//! # Safety
//!
//! The `unsafe` calls here are `pthread_atfork` with a handler that only stores to an atomic
//! and to the calling thread's own thread-locals, `kill` and `raise`, which have no
//! memory-safety preconditions, and `dlsym` for glibc's `__libc_single_threaded`, a `char`
//! that lives as long as the process and is only read.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

// The pid and the thread's id are asked for on every lock acquisition (to record the owner),
// and `getpid` and `gettid` are system calls: cache them, and forget them in the child of every
// fork (`pthread_atfork`), where the one thread left has new ids.
static PID: AtomicU32 = AtomicU32::new(0);
/// Counts the forks this process descends from. Read only where a cache is filled: a fork
/// from a signal handler between the system call and the store would leave the child its
/// parent's ids, and the fill, seeing the count change, asks again.
static FORKS: AtomicU32 = AtomicU32::new(0);

/// Forgets the ids cached before a fork, in its child. The one thread there is the one that
/// forked: the caches of the threads that did not follow are gone with them.
extern "C" fn forget_ids_after_fork() {
    FORKS.fetch_add(1, Ordering::Relaxed);
    PID.store(0, Ordering::Relaxed);
    THIS_THREAD.with(CachedStamp::forget);
    THIS_PROCESS.with(CachedStamp::forget);
}

fn forget_ids_in_fork_children() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: the handler lives for the whole program (a plain `extern "C" fn`). It stores
        // to atomics and to cells of the calling thread's `const`-initialised thread-locals,
        // which have no lock or destructor. In a library loaded with `dlopen` (the Python
        // extension), a thread's first touch of its thread-locals may allocate them
        // (`__tls_get_addr`); the child of a fork may allocate on glibc, which resets the
        // allocator's locks before it runs these handlers, and musl allocates a loaded
        // library's thread-locals when it loads it.
        unsafe { libc::pthread_atfork(None, None, Some(forget_ids_after_fork)) };
    });
}

/// Runs `fill` (which asks the system for ids and caches them) until no fork happened during
/// it (see [`FORKS`]).
fn fill_across_forks<T>(mut fill: impl FnMut() -> T) -> T {
    loop {
        let forks = FORKS.load(Ordering::Relaxed);
        let filled = fill();
        // A signal handler runs on this thread: its fork may not be ordered after the check.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        if FORKS.load(Ordering::Relaxed) == forks {
            return filled;
        }
    }
}

/// The calling process's id.
#[inline]
pub(crate) fn pid() -> u32 {
    let cached = PID.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    ask_pid()
}

#[cold]
fn ask_pid() -> u32 {
    forget_ids_in_fork_children();
    fill_across_forks(|| {
        let pid = rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs();
        PID.store(pid, Ordering::Relaxed);
        pid
    })
}

/// A thread as other processes can check on it: its id, when it started (clock ticks after
/// boot), which tells a live thread from a later one that reused the id, and the namespaces in
/// which the two mean something (`namespaces`: the pid namespace, mixed with the time
/// namespace; see [`namespaces()`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThreadStamp {
    pub(crate) tid: u32,
    /// The id of the thread's process (for a process's stamp, `tid` again).
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) namespaces: u64,
}

/// A stamp cached by each thread (tid 0: none yet), which the child of a fork forgets (see
/// [`forget_ids_after_fork`]): its ids differ, and it takes its own. One cell per field, so
/// that a lock's fast path reads the fields it needs straight into registers rather than
/// copying the whole stamp through the stack; and nothing but thread-locals, at a fixed offset
/// from the thread pointer: a process-wide word is reached from a caller's crate through the
/// global offset table, a dependent load on every lock (BENCHMARKS.md, "Seventh pass").
/// Aligned so that its 24 bytes never straddle two cache lines: a lock then reads one line
/// of thread-locals, not two.
#[repr(C, align(32))]
struct CachedStamp {
    tid: Cell<u32>,
    pid: Cell<u32>,
    start: Cell<u64>,
    namespaces: Cell<u64>,
}

impl CachedStamp {
    const fn empty() -> Self {
        CachedStamp {
            tid: Cell::new(0),
            pid: Cell::new(0),
            start: Cell::new(0),
            namespaces: Cell::new(0),
        }
    }

    /// Forgets the stamp, in the child of a fork.
    fn forget(&self) {
        self.tid.set(0);
    }
}

thread_local! {
    /// The calling thread's stamp.
    static THIS_THREAD: CachedStamp = const { CachedStamp::empty() };
    /// The calling process's stamp, as this thread took it.
    static THIS_PROCESS: CachedStamp = const { CachedStamp::empty() };
}

/// The stamp `cache` holds, after `take` filled it if it held none. The stamp is always read
/// back from the cells: were the one `take` returns passed on, the two would meet in a stack
/// slot, and every lock would copy its stamp through memory.
#[allow(
    clippy::inline_always,
    reason = "on every lock's fast path, which must stay a thread-local read"
)]
#[inline(always)]
fn cached(
    cache: &'static std::thread::LocalKey<CachedStamp>,
    take: fn() -> ThreadStamp,
) -> ThreadStamp {
    cache.with(|cached| {
        if cached.tid.get() == 0 {
            refill(cached, take);
        }
        ThreadStamp {
            tid: cached.tid.get(),
            pid: cached.pid.get(),
            start: cached.start.get(),
            namespaces: cached.namespaces.get(),
        }
    })
}

/// Fills `cached` with the stamp `take` gives. The fork handler is registered here, before
/// the first fill, for every stamp at once.
#[cold]
#[inline(never)]
fn refill(cached: &CachedStamp, take: fn() -> ThreadStamp) {
    forget_ids_in_fork_children();
    fill_across_forks(|| {
        let stamp = take();
        cached.pid.set(stamp.pid);
        cached.start.set(stamp.start);
        cached.namespaces.set(stamp.namespaces);
        cached.tid.set(stamp.tid);
    });
}

/// The calling thread's stamp: two system calls and a read of `/proc` the first time a thread
/// asks (and again after a fork), a thread-local read after that.
#[inline]
pub(crate) fn this_thread() -> ThreadStamp {
    cached(&THIS_THREAD, stamp_this_thread)
}

#[cold]
fn stamp_this_thread() -> ThreadStamp {
    let tid = rustix::thread::gettid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs();
    // The thread is alive (it is us), so only an unreadable /proc (not mounted) leaves no start
    // time; 0 then means "unknown", and others fall back on the thread's existence alone.
    // Its own directory: `/proc/thread-self` names it too, but only since Linux 3.17.
    let own = format!("/proc/self/task/{tid}");
    let start = read_stat(&format!("{own}/stat")).map_or(0, |stat| stat.start);
    ThreadStamp {
        tid,
        pid: pid(),
        start,
        namespaces: namespaces(&own),
    }
}

/// The calling process as a lock holder: the stamp of its main thread (whose id is the pid,
/// and whose start time is the process's), which stays alive as long as the process does,
/// whichever of its threads asks. A read of `/proc/self/stat` the first time a process asks
/// (and again after a fork), a thread-local read after that.
#[inline]
pub(crate) fn this_process() -> ThreadStamp {
    cached(&THIS_PROCESS, stamp_this_process)
}

#[cold]
fn stamp_this_process() -> ThreadStamp {
    static START: AtomicU64 = AtomicU64::new(0);
    /// The pid `START` was read for: a forked child has another pid, and reads its own.
    static START_OF: AtomicU32 = AtomicU32::new(0);
    let pid = pid();
    let start = if START_OF.load(Ordering::Acquire) == pid {
        START.load(Ordering::Relaxed)
    } else {
        // 0 (unknown) only without /proc, as for a thread's stamp.
        let start = read_stat("/proc/self/stat").map_or(0, |stat| stat.start);
        START.store(start, Ordering::Relaxed);
        START_OF.store(pid, Ordering::Release);
        start
    };
    ThreadStamp {
        tid: pid,
        pid,
        start,
        namespaces: this_thread().namespaces,
    }
}

/// The namespaces in which the calling process's ids and start times mean what `/proc` here
/// says (0 if unknown): the inode of `ns/pid` in the calling thread's directory `own`
/// (`/proc/self/task/TID`), mixed with that of `ns/time` where the kernel has time
/// namespaces. The thread's, not the process's: once a process's main thread has ended while
/// others run on, `/proc/self/ns/time` names no namespace, and a thread that asked there
/// would tell itself apart from its own process. Thread and process ids mean
/// something only inside one pid namespace: a process in another one that shares `/dev/shm`
/// (a container) has ids that `/proc` here does not show, or shows as someone else. And
/// `/proc` gives a task's start time shifted into the reader's time namespace, so a process
/// of another one (`unshare --time`, a restored checkpoint) would read a live holder's start
/// time as another than the holder recorded, and judge it dead.
fn namespaces(own: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let inode = |name: &str| std::fs::metadata(format!("{own}/ns/{name}")).map_or(0, |m| m.ino());
    match inode("pid") {
        0 => 0,
        pid => pid ^ inode("time").rotate_left(32),
    }
}

/// Sends `signal` to process `pid`.
pub(crate) fn send_signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SIGKILL`, for callers that must not depend on libc's constants.
pub(crate) const SIGKILL: i32 = libc::SIGKILL;
/// `SIGTERM`.
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
/// Stops the calling process with `SIGSTOP`, sent to the calling *thread* (`raise`), so that
/// the stop happens before this thread runs another instruction of its own; a signal sent to
/// the process could be taken by another thread, and this one run on meanwhile.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) fn stop_self() {
    // SAFETY: raise has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGSTOP) };
}

/// The start time of process `pid` (clock ticks after boot, field 22 of `/proc/PID/stat`),
/// which together with the pid identifies a process even after its pid is reused; `None` if
/// it cannot be read (no such process, a zombie, or `/proc` unreadable). For judging whether a
/// process is dead, use [`liveness`], which tells those cases apart.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    match read_stat(&format!("/proc/{pid}/stat")) {
        Some(Stat {
            zombie: false,
            start,
        }) => Some(start),
        _ => None,
    }
}

/// What can be known, from this pid namespace, about the task (process or thread) `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// No such task, or a zombie: it has ended.
    Gone,
    /// It exists; `start` is its start time if `/proc` could be read (`hidepid`, no file
    /// descriptors left or no `/proc` at all leave it unknown).
    Running { start: Option<u64> },
}

/// Whether task `id` (a pid, or a thread id: both name tasks) still runs. Existence is asked of
/// the kernel with signal 0, which needs neither `/proc` nor a file descriptor; `/proc` then
/// tells a zombie from a live task and gives the start time. Only a definite answer is
/// `Gone`: anything that cannot be read leaves the task running, so that a live holder or
/// user is never mistaken for a dead one.
pub(crate) fn liveness(id: u32) -> Liveness {
    let Some(pid) = i32::try_from(id)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Liveness::Gone; // 0 or beyond any pid: names no task
    };
    // Any other answer than ESRCH (EPERM: it belongs to another user) means it exists.
    if let Err(rustix::io::Errno::SRCH) = rustix::process::test_kill_process(pid) {
        return Liveness::Gone;
    }
    match read_stat(&format!("/proc/{id}/stat")) {
        Some(Stat { zombie: true, .. }) => Liveness::Gone,
        Some(Stat { start, .. }) => Liveness::Running { start: Some(start) },
        None => Liveness::Running { start: None },
    }
}

/// Whether the process `pid` still runs: as [`liveness`] of its main thread, except that a
/// main thread that ended while other threads of the process run on (`pthread_exit` in
/// `main`, which leaves it a zombie in `/proc`) does not end the process. For judging a
/// *process* that claimed something, where [`liveness`] judges a thread.
pub(crate) fn process_liveness(pid: u32) -> Liveness {
    match liveness(pid) {
        Liveness::Gone if other_threads_run(pid) => Liveness::Running {
            start: read_stat(&format!("/proc/{pid}/stat")).map(|stat| stat.start),
        },
        answer => answer,
    }
}

/// Whether a thread of process `pid` other than its main thread runs (its `/proc/PID/task`
/// lists one that is not a zombie).
fn other_threads_run(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        let name = task.file_name();
        name.to_str() != Some(&pid.to_string())
            && read_stat(&format!("/proc/{pid}/task/{}/stat", name.to_string_lossy()))
                .is_some_and(|stat| !stat.zombie)
    })
}

struct Stat {
    zombie: bool,
    start: u64,
}

fn read_stat(path: &str) -> Option<Stat> {
    let stat = std::fs::read_to_string(path).ok()?;
    let mut fields = stat_fields(&stat)?;
    let state = fields.next()?;
    Some(Stat {
        // A zombie has ended; only its exit status remains.
        zombie: state == "Z" || state == "X",
        start: fields.nth(22 - 4)?.parse().ok()?,
    })
}

/// The fields of a `/proc/.../stat` line from field 3 (the state) on. The command name (field
/// 2) is in parentheses and may hold spaces or ')': the fields start past the last ')'.
fn stat_fields(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace())
}

/// The number of threads in the calling process.
///
/// A process that has never started a thread through the C library (as `std::thread` does) has
/// one, and is told so without a system call where the C library keeps count (glibc 2.32 on).
pub(crate) fn thread_count() -> usize {
    use std::os::unix::fs::MetadataExt;
    if never_threaded() {
        return 1;
    }
    // procfs gives a process's `task` directory a link count of 2 plus one per thread: one
    // `statx`, where reading /proc/self/stat takes four system calls and makes the kernel
    // format fifty fields.
    if let Ok(task) = std::fs::metadata("/proc/self/task")
        && let Some(threads) = task.nlink().checked_sub(2).filter(|&n| n > 0)
    {
        return usize::try_from(threads).unwrap_or(usize::MAX);
    }
    // Field 20 of /proc/self/stat.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat_fields(&stat)?.nth(20 - 3)?.parse().ok())
        .unwrap_or(1)
}

/// Whether the C library says that this process has never started a thread: glibc's
/// `__libc_single_threaded`, which `pthread_create` clears before the first thread exists and
/// which stays clear. `false` where there is no such flag (musl, glibc before 2.32).
fn never_threaded() -> bool {
    /// The flag's address, or null.
    struct Flag(*const libc::c_char);
    // SAFETY: the address of a static of the C library, valid for the whole program, through
    // which this module only reads.
    unsafe impl Send for Flag {}
    // SAFETY: as above.
    unsafe impl Sync for Flag {}
    static FLAG: std::sync::OnceLock<Flag> = std::sync::OnceLock::new();
    let flag = FLAG.get_or_init(|| {
        // SAFETY: `dlsym` with `RTLD_DEFAULT` and a NUL-terminated name only looks the name up.
        let address =
            unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__libc_single_threaded".as_ptr()) };
        Flag(address.cast())
    });
    // SAFETY: a non-null `flag.0` is the address of glibc's `char __libc_single_threaded`, which
    // lives as long as the process (see `Flag`). Only the creation of a thread writes it, from 1
    // to 0: while it is 1, no other thread exists to write it as we read.
    !flag.0.is_null() && unsafe { flag.0.read_volatile() } != 0
}

/// This boot's identity (`/proc/sys/kernel/random/boot_id`, a UUID) as two integers; `None`
/// if it cannot be read (no `/proc`, no file descriptor left). Read once per process: it does
/// not change until the next boot.
pub(crate) fn boot_id() -> Option<[u64; 2]> {
    static BOOT_ID: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();
    if let Some(id) = BOOT_ID.get() {
        return Some(*id);
    }
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    let half = |range: std::ops::Range<usize>| {
        hex.get(range).and_then(|h| u64::from_str_radix(h, 16).ok())
    };
    let id = [half(0..16)?, half(16..32)?];
    Some(*BOOT_ID.get_or_init(|| id))
}

#[cfg(test)]
mod tests {
    use super::thread_count;

    #[test]
    fn thread_count_sees_a_thread_start_and_end() {
        // Other tests of this binary may run threads of their own meanwhile: compare the
        // count seen inside a new thread, while it surely runs, with the count after it ended,
        // read from `/proc/self/stat` as well.
        let (started, stop) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                started.wait();
                stop.wait();
            });
            started.wait();
            let with = thread_count();
            let stat: usize = std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|stat| super::stat_fields(&stat)?.nth(20 - 3)?.parse().ok())
                .expect("/proc/self/stat");
            assert!(with >= 2, "{with} threads while two surely run");
            assert!(
                with.abs_diff(stat) <= 8,
                "{with} against /proc/self/stat's {stat}"
            );
            stop.wait();
        });
    }
}
