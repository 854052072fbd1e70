//! What `/proc` says about processes and threads: their states (a stopped child, a thread asleep
//! in the kernel), thread ids, start times, and whether the test runs as root.

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`, ...), from `/proc/PID/stat`; `None`
/// once it was reaped.
pub fn process_state(pid: u32) -> Option<char> {
    stat_state(&format!("/proc/{pid}/stat"))
}

/// The state letter of thread `tid` of process `pid`.
pub fn thread_state(pid: u32, tid: u32) -> Option<char> {
    stat_state(&format!("/proc/{pid}/task/{tid}/stat"))
}

/// The state letter in the `stat` file at `path`.
pub fn stat_state(path: &str) -> Option<char> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may contain anything: skip past it.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Whether process `pid` has ended (it is a zombie, or gone).
pub fn has_ended(pid: u32) -> bool {
    matches!(process_state(pid), Some('Z' | 'X') | None)
}

/// Whether every thread of process `pid` is asleep in the kernel (state `S`): a worker that
/// said it is about to lock, and then sleeps, is blocked in the lock.
pub fn all_threads_sleeping(pid: u32) -> bool {
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

/// Whether the single-threaded process `pid` sleeps (state `S`) in a futex wait: blocked in a
/// queue or a lock, not on its way there.
pub fn asleep_in_futex(pid: u32) -> bool {
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    process_state(pid) == Some('S') && wchan.contains("futex")
}

/// Where thread `tid` of process `pid` sleeps in the kernel (`/proc/PID/task/TID/wchan`, such
/// as `poll_schedule_timeout` or `futex_wait_queue`); empty if `/proc` does not tell.
pub fn thread_wchan(pid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan")).unwrap_or_default()
}

/// The calling thread's id (`/proc/thread-self` links to `PID/task/TID`).
///
/// # Panics
///
/// If `/proc` cannot tell.
pub fn current_tid() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("read /proc/thread-self");
    link.file_name()
        .and_then(|tid| tid.to_str())
        .and_then(|tid| tid.parse().ok())
        .expect("/proc/thread-self ends in the thread id")
}

/// The calling process's start time in clock ticks after boot (field 22 of `/proc/self/stat`),
/// as memspace records a creator's.
///
/// # Panics
///
/// If `/proc` cannot tell.
pub fn own_start_time() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    stat[stat.rfind(')').expect("a command name") + 1..]
        .split_whitespace()
        .nth(22 - 3)
        .and_then(|field| field.parse().ok())
        .expect("field 22 of /proc/self/stat")
}

/// Whether a test must be skipped because this process is not root and the test needs root
/// for `what`; says so on standard error when it must.
pub fn skip_without_root(what: &str) -> bool {
    let skip = !is_root();
    if skip {
        eprintln!("skipped: {what} needs root");
    }
    skip
}

/// Whether this process runs as root (tests that switch users or mount need it).
pub fn is_root() -> bool {
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
