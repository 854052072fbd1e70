//! Linux: POSIX shared memory under `/dev/shm`, address-space reservations, robust
//! process-shared pthread mutexes, `fork`, pipes and `/proc`.
//!
//! # Safety
//!
//! This file is where raw memory and process state are touched. The invariants it relies on:
//!
//! 1. Memory handed to the `robust_mutex_*` functions is a `pthread_mutex_t` that lives in a
//!    `MAP_SHARED` mapping which stays mapped at the same address for as long as any thread of
//!    this process holds the mutex. glibc links held robust mutexes into the thread's robust
//!    list *by address*, and the kernel writes `FUTEX_OWNER_DIED` through that address when the
//!    thread dies; an unmapped or remapped address would be written to blindly. The segment
//!    layer keeps every mutex in the first page of a segment and never remaps that page.
//! 2. Mappings are created inside an address-space reservation owned by one `Mapping` value
//!    (`segment/mapping.rs`), which alone replaces or releases its pages.
//! 3. `fork` is only called by `spawn`, which documents for users that the child runs with a
//!    single thread and must not rely on locks held by other threads at the fork.

#![allow(unsafe_code)]
#![allow(clippy::disallowed_methods)] // we are sys: the one place allowed to call libc directly

use std::ffi::c_int;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::ptr::NonNull;
use std::time::Duration;

use rustix::fs::{FallocateFlags, Mode};
use rustix::mm::{MapFlags, ProtFlags};

/// The platform's mutex type, placed inside segments.
pub(crate) type PthreadMutex = libc::pthread_mutex_t;

// ---------------------------------------------------------------------------------------------
// Shared-memory objects and files

/// Creates a new POSIX shared-memory object; fails with `AlreadyExists` if the name is taken.
#[doc(alias = "shm_open")]
pub(crate) fn shm_create(name: &str, mode: u32) -> io::Result<OwnedFd> {
    let flags = rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR;
    Ok(rustix::shm::open(name, flags, Mode::from_raw_mode(mode))?)
}

/// Sets the permission bits of `fd` exactly (the mode given at creation is masked by the
/// umask).
#[doc(alias = "fchmod")]
pub(crate) fn set_mode(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// Opens an existing POSIX shared-memory object for reading and writing.
pub(crate) fn shm_open(name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::shm::open(
        name,
        rustix::shm::OFlags::RDWR,
        Mode::empty(),
    )?)
}

/// Removes the name of a POSIX shared-memory object; existing mappings stay valid.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(rustix::shm::unlink(name)?)
}

/// What `fstat` says about a segment's backing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub(crate) size: u64,
    pub(crate) device: u64,
    pub(crate) inode: u64,
    pub(crate) owner_uid: u32,
    pub(crate) mode: u32,
}

#[doc(alias = "fstat")]
pub(crate) fn file_info(fd: BorrowedFd<'_>) -> io::Result<FileInfo> {
    let st = rustix::fs::fstat(fd)?;
    Ok(FileInfo {
        size: u64::try_from(st.st_size).unwrap_or(0),
        device: st.st_dev,
        inode: st.st_ino,
        owner_uid: st.st_uid,
        mode: st.st_mode & 0o7777,
    })
}

/// Allocates backing store for `[from, to)`, extending the file to `to` bytes.
///
/// On tmpfs this really allocates pages, so a full `/dev/shm` fails here with `ENOSPC` instead
/// of raising `SIGBUS` later, when a page of a sparse file is first touched.
#[doc(alias = "fallocate")]
pub(crate) fn allocate(fd: BorrowedFd<'_>, from: u64, to: u64) -> io::Result<()> {
    debug_assert!(from < to);
    loop {
        match rustix::fs::fallocate(fd, FallocateFlags::empty(), from, to - from) {
            Err(rustix::io::Errno::INTR) => {}
            // A file system without fallocate: write the zeros ourselves, so that blocks are
            // allocated now and a full disk is ENOSPC here, not SIGBUS later.
            Err(rustix::io::Errno::OPNOTSUPP) => return write_zeros(fd, from, to),
            other => return Ok(other?),
        }
    }
}

fn write_zeros(fd: BorrowedFd<'_>, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let len = usize::try_from(to - at)
            .unwrap_or(usize::MAX)
            .min(zeros.len());
        match rustix::io::pwrite(fd, &zeros[..len], at) {
            Ok(n) => at += n as u64,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

// ---------------------------------------------------------------------------------------------
// Mappings

/// Reserves `len` bytes of address space that nothing may touch (`PROT_NONE`) and that counts
/// against no memory limit (`MAP_NORESERVE`). Segments map their file into the front of it as
/// they grow, so their base address never moves within a process.
pub(crate) fn reserve_address_space(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a new private anonymous mapping at an address the kernel chooses overlaps nothing
    // that exists, so it cannot invalidate any reference.
    let ptr = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            len,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    }?;
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned a null address"))
}

/// Maps `len` bytes of `fd`, starting at file offset `offset`, read-write and shared, at `at`.
///
/// # Safety
///
/// `[at, at + len)` must lie inside an address-space reservation owned by the caller (see
/// [`reserve_address_space`]), and no reference may point into that range: its pages are
/// replaced.
pub(crate) unsafe fn map_shared_fixed(
    at: NonNull<u8>,
    len: usize,
    fd: BorrowedFd<'_>,
    offset: u64,
) -> io::Result<()> {
    // SAFETY: the caller guarantees the range belongs to its own reservation and is not
    // borrowed (see `# Safety`); MAP_FIXED therefore replaces only PROT_NONE pages it owns.
    unsafe {
        rustix::mm::mmap(
            at.as_ptr().cast(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED | MapFlags::FIXED,
            fd,
            offset,
        )
    }?;
    Ok(())
}

/// Releases `[at, at + len)`.
///
/// # Safety
///
/// The caller must own the range (a reservation from [`reserve_address_space`]) and nothing may
/// use it afterwards; no mutex in it may be held by a thread of this process.
pub(crate) unsafe fn unmap(at: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller owns the range and will not touch it again (see `# Safety`).
    Ok(unsafe { rustix::mm::munmap(at.as_ptr().cast(), len) }?)
}

// ---------------------------------------------------------------------------------------------
// Robust process-shared mutexes

/// What a lock attempt on a robust mutex produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockOutcome {
    /// The calling thread holds the mutex.
    Acquired,
    /// The calling thread holds the mutex; its previous owner died holding it.
    OwnerDied,
    /// `try` only: another thread holds it.
    WouldBlock,
    /// Timed only: the deadline passed.
    TimedOut,
    /// A previous owner died and the mutex was unlocked without being made consistent.
    Unrecoverable,
    /// The calling thread already holds it.
    Deadlock,
    /// The mutex word is not a robust mutex (the segment was damaged); the errno is kept.
    Invalid(i32),
}

/// How long a lock attempt may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    Forever,
    Never,
    For(Duration),
}

unsafe extern "C" {
    // glibc 2.30+: like pthread_mutex_timedlock, on a clock we choose (CLOCK_MONOTONIC, so that
    // a wall-clock jump neither shortens nor lengthens a timed lock).
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> c_int;
}

/// Initialises a process-shared, robust, error-checking mutex at `m`.
///
/// # Safety
///
/// `m` must point to writable, suitably aligned memory for a `pthread_mutex_t` in a shared
/// mapping that no other thread or process uses as a mutex yet (a segment being created).
pub(crate) unsafe fn robust_mutex_init(m: *mut PthreadMutex) -> io::Result<()> {
    fn check(rc: c_int, what: &str) -> io::Result<()> {
        if rc == 0 {
            return Ok(());
        }
        let cause = io::Error::from_raw_os_error(rc);
        Err(io::Error::new(cause.kind(), format!("{what}: {cause}")))
    }
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `attr` is a local; pthread_mutexattr_init initialises it before any other use.
    let rc = unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) };
    check(rc, "pthread_mutexattr_init")?;
    let attr = attr.as_mut_ptr();
    let configure = || -> io::Result<()> {
        // SAFETY: `attr` was initialised above and is only ours.
        let rc = unsafe { libc::pthread_mutexattr_setpshared(attr, libc::PTHREAD_PROCESS_SHARED) };
        check(rc, "pthread_mutexattr_setpshared")?;
        // SAFETY: as above.
        let rc = unsafe { libc::pthread_mutexattr_setrobust(attr, libc::PTHREAD_MUTEX_ROBUST) };
        check(rc, "pthread_mutexattr_setrobust")?;
        // SAFETY: as above.
        let rc = unsafe { libc::pthread_mutexattr_settype(attr, libc::PTHREAD_MUTEX_ERRORCHECK) };
        check(rc, "pthread_mutexattr_settype")?;
        // SAFETY: the caller guarantees `m` is writable, aligned and unused (see `# Safety`);
        // `attr` is initialised.
        let rc = unsafe { libc::pthread_mutex_init(m, attr) };
        check(rc, "pthread_mutex_init")
    };
    let result = configure();
    // SAFETY: `attr` is initialised and no longer needed; the mutex keeps no reference to it.
    unsafe { libc::pthread_mutexattr_destroy(attr) };
    result
}

/// Locks the robust mutex at `m`, waiting as `wait` says.
///
/// # Safety
///
/// `m` must point to a mutex initialised by [`robust_mutex_init`] (or memory that claims to
/// be one: glibc validates the kind and reports `EINVAL`), in a shared mapping that stays at
/// this address while the calling thread holds the mutex (see the module's `# Safety`).
pub(crate) unsafe fn robust_mutex_lock(m: *mut PthreadMutex, wait: Wait) -> LockOutcome {
    let rc = match wait {
        // SAFETY: the caller guarantees `m` is a mapped mutex (see `# Safety`).
        Wait::Forever => unsafe { libc::pthread_mutex_lock(m) },
        Wait::Never => {
            // SAFETY: as above.
            let rc = unsafe { libc::pthread_mutex_trylock(m) };
            if rc == libc::ENOTRECOVERABLE {
                // SAFETY: as above.
                unsafe { release_word_left_by_trylock(m) };
            }
            rc
        }
        Wait::For(timeout) => {
            let deadline = monotonic_deadline(timeout);
            // SAFETY: as above; `deadline` is a valid timespec on the stack.
            unsafe { pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &raw const deadline) }
        }
    };
    match rc {
        0 => LockOutcome::Acquired,
        libc::EOWNERDEAD => LockOutcome::OwnerDied,
        libc::EBUSY => LockOutcome::WouldBlock,
        libc::ETIMEDOUT => LockOutcome::TimedOut,
        libc::ENOTRECOVERABLE => LockOutcome::Unrecoverable,
        libc::EDEADLK => LockOutcome::Deadlock,
        other => LockOutcome::Invalid(other),
    }
}

/// Undoes a glibc slip: `pthread_mutex_trylock` on a robust mutex that is not recoverable
/// takes the lock word (a compare-and-swap from 0 to the caller's tid), then returns
/// `ENOTRECOVERABLE` without releasing it (it unlocks only `if (oldval == id)`, and `oldval` is
/// 0 after that swap; `pthread_mutex_lock` and `pthread_mutex_clocklock` do unlock). Left so,
/// the word names the calling thread forever: this thread's next `lock` says `EDEADLK`, and
/// every other thread and process sees the mutex held (`lock` waits forever) instead of
/// `ENOTRECOVERABLE`. Releases the word if it still names the calling thread, and wakes the
/// waiters as glibc's unlock would; each then takes the word, sees the mutex unrecoverable and
/// releases it again.
///
/// # Safety
///
/// As for [`robust_mutex_lock`].
unsafe fn release_word_left_by_trylock(m: *mut PthreadMutex) {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
    const FUTEX_WAITERS: u32 = 0x8000_0000;
    // The lock word is the first field of glibc's `pthread_mutex_t` (`__data.__lock`), in the
    // format of the kernel's robust-futex protocol: owner tid, `FUTEX_WAITERS`,
    // `FUTEX_OWNER_DIED`.
    // SAFETY: `m` points to a mapped, aligned `pthread_mutex_t` (see `# Safety`), whose first
    // four bytes are that word; glibc and the kernel only access it atomically, and an
    // `AtomicU32` has the layout of a `u32`.
    let word = unsafe { &*m.cast::<AtomicU32>() };
    let tid = rustix::thread::gettid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs();
    let mut current = word.load(Ordering::Relaxed);
    while current & FUTEX_TID_MASK == tid {
        match word.compare_exchange_weak(current, 0, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => {
                if current & FUTEX_WAITERS != 0 {
                    futex_wake(word, u32::MAX);
                }
                return;
            }
            Err(now) => current = now,
        }
    }
}

/// Marks a mutex whose previous owner died as consistent again.
///
/// # Safety
///
/// The calling thread must hold `m`, acquired with [`LockOutcome::OwnerDied`].
pub(crate) unsafe fn robust_mutex_consistent(m: *mut PthreadMutex) -> io::Result<()> {
    // SAFETY: the caller holds the mutex after EOWNERDEAD (see `# Safety`).
    match unsafe { libc::pthread_mutex_consistent(m) } {
        0 => Ok(()),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

/// Unlocks the mutex at `m`.
///
/// # Safety
///
/// The calling thread must hold `m`.
pub(crate) unsafe fn robust_mutex_unlock(m: *mut PthreadMutex) -> io::Result<()> {
    // SAFETY: the caller holds the mutex (see `# Safety`).
    match unsafe { libc::pthread_mutex_unlock(m) } {
        0 => Ok(()),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

fn monotonic_deadline(timeout: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
    let nanos = now.tv_nsec + i64::from(timeout.subsec_nanos());
    let secs = i64::try_from(timeout.as_secs())
        .unwrap_or(i64::MAX / 2)
        .saturating_add(now.tv_sec)
        .saturating_add(nanos / 1_000_000_000);
    libc::timespec {
        tv_sec: secs,
        tv_nsec: nanos % 1_000_000_000,
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

// The pid is asked for on every lock acquisition (to record the owner), and `getpid` is a
// system call: cache it, and forget it in the child of every fork (`pthread_atfork`).
static PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn forget_ids_after_fork() {
    PID.store(0, std::sync::atomic::Ordering::Relaxed);
}

fn forget_ids_in_fork_children() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe, as the child
        // of a fork requires; it lives for the whole program (a plain `extern "C" fn`).
        unsafe { libc::pthread_atfork(None, None, Some(forget_ids_after_fork)) };
    });
}

/// The calling process's id.
pub(crate) fn pid() -> u32 {
    let cached = PID.load(std::sync::atomic::Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    forget_ids_in_fork_children();
    let pid = rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs();
    PID.store(pid, std::sync::atomic::Ordering::Relaxed);
    pid
}

/// Which side of a fork the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    Child,
    Parent(u32),
}

/// Forks the calling process.
///
/// # Safety
///
/// In the child only the calling thread exists. Locks held by other threads at the fork stay
/// held forever in the child, so the caller must run nothing in the child that could wait for
/// one (the `spawn` module documents this as the contract of the `fork` start method), and
/// must leave the child with [`exit_now`].
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    flush_std_streams();
    // SAFETY: fork has no memory-safety preconditions of its own; the caller upholds the
    // single-thread contract of the child (see `# Safety`).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        child => Ok(Forked::Parent(child.unsigned_abs())),
    }
}

/// Flushes stdout and stderr, then ends the process at once with `code`, running no
/// destructors and no `atexit` handlers: after `fork`, those belong to the parent.
pub(crate) fn exit_now(code: i32) -> ! {
    flush_std_streams();
    // SAFETY: _exit is async-signal-safe and has no preconditions.
    unsafe { libc::_exit(code) }
}

fn flush_std_streams() {
    // Nothing useful can be done if the terminal went away; the exit or fork goes on.
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

/// Waits for the child `pid` to end and reaps it.
#[doc(alias = "waitpid")]
pub(crate) fn wait_child(pid: u32) -> io::Result<ExitStatus> {
    wait_child_inner(pid, 0).map(|status| status.expect("a blocking waitpid returns a status"))
}

/// Reaps the child `pid` if it has ended, without waiting.
pub(crate) fn try_wait_child(pid: u32) -> io::Result<Option<ExitStatus>> {
    wait_child_inner(pid, libc::WNOHANG)
}

fn wait_child_inner(pid: u32, flags: c_int) -> io::Result<Option<ExitStatus>> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid, writable int on the stack.
        let rc = unsafe { libc::waitpid(pid, &raw mut status, flags) };
        if rc == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if rc == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some(ExitStatus::Exited(libc::WEXITSTATUS(status))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some(ExitStatus::Signaled(libc::WTERMSIG(status))));
        }
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

/// Whether a process with this id exists, and its start time (clock ticks after boot, field 22
/// of `/proc/PID/stat`): together they identify a process even after its pid is reused.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')': skip past the
    // last ')'. Fields after it start with field 3 (the state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None; // a zombie has ended; only its exit status remains
    }
    fields.nth(22 - 4)?.parse().ok()
}

/// The number of threads in the calling process.
pub(crate) fn thread_count() -> usize {
    // Field 20 of /proc/self/stat: one small read, cheaper than listing /proc/self/task.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().nth(20 - 3)?.parse().ok()
        })
        .unwrap_or(1)
}

/// A pipe whose two ends are closed on `exec`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Makes `cmd` keep `fds` open across its `exec` (they are `CLOEXEC` in the parent so that no
/// other child inherits them).
pub(crate) fn keep_fds_across_exec(cmd: &mut Command, fds: [RawFd; 2]) {
    let clear = move || -> io::Result<()> {
        for fd in fds {
            // SAFETY: fcntl is async-signal-safe; `fd` was open in the parent at fork time and
            // so is open in this child.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if flags == -1 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above.
            let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) };
            if rc == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the closure only calls fcntl, which is async-signal-safe, and allocates nothing,
    // as `pre_exec` requires of code that runs between fork and exec.
    unsafe { cmd.pre_exec(clear) };
}

/// Takes ownership of a file descriptor this process inherited from its memspace parent.
///
/// Checks that `fd` is open. The spawn protocol (`spawn::child`) calls it once per descriptor
/// named in the environment, at the start of `main`, before anything else could own it.
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only inspects the descriptor table.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::other(format!(
            "file descriptor {fd} named by the parent is not open"
        )));
    }
    // SAFETY: `fd` is open (checked above) and, per the spawn protocol, owned by nothing else in
    // this process: the parent created it for this child alone and `init()` adopts it once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
    Ok(owned)
}

/// The number of a descriptor, to pass to a child through its environment.
pub(crate) fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}

/// `ENOSPC`: no space left on the device.
pub(crate) const ENOSPC: i32 = libc::ENOSPC;

/// Reads up to `buf.len()` bytes at `offset` without moving the file position; returns how many
/// were read (fewer at the end of the file).
#[doc(alias = "pread")]
pub(crate) fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// This boot's identity (`/proc/sys/kernel/random/boot_id`, a UUID) as two integers.
pub(crate) fn boot_id() -> [u64; 2] {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    let half = |range: std::ops::Range<usize>| {
        hex.get(range)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    [half(0..16), half(16..32)]
}

/// Takes an exclusive `flock` on `fd`, blocking; released when `fd` is closed or by
/// [`unlock_file`].
pub(crate) fn lock_file(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        match rustix::fs::flock(fd, rustix::fs::FlockOperation::LockExclusive) {
            Err(rustix::io::Errno::INTR) => {}
            other => return Ok(other?),
        }
    }
}

/// Releases a `flock` taken with [`lock_file`].
pub(crate) fn unlock_file(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::flock(fd, rustix::fs::FlockOperation::Unlock)?)
}

/// Creates a new regular file for a file-backed segment; fails if it exists.
pub(crate) fn file_create(path: &std::path::Path, mode: u32) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path, flags, Mode::from_raw_mode(mode))?)
}

/// Opens an existing regular file for reading and writing.
pub(crate) fn file_open(path: &std::path::Path) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    Ok(rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// How a [`futex_wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// Woken by a `futex_wake`, or spuriously: re-check the condition.
    Notified,
    /// The word did not hold the expected value: re-check the condition.
    Changed,
    /// The timeout passed.
    TimedOut,
}

/// Sleeps while `word` holds `expected`, at most `timeout`. The futex is *shared* (no
/// `FUTEX_PRIVATE_FLAG`), so wakers in other processes that map the same memory reach it.
#[doc(alias = "FUTEX_WAIT")]
pub(crate) fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> Woken {
    use rustix::thread::futex;
    let timespec = timeout.map(|t| futex::Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match futex::wait(word, futex::Flags::empty(), expected, timespec.as_ref()) {
        Ok(()) | Err(rustix::io::Errno::INTR) => Woken::Notified,
        Err(rustix::io::Errno::AGAIN) => Woken::Changed,
        Err(rustix::io::Errno::TIMEDOUT) => Woken::TimedOut,
        // EFAULT or EINVAL: the word is ours, mapped and aligned (`Mapping::get` checked), so
        // this is a bug in memspace, not a condition to handle.
        Err(e) => panic!("futex wait failed: {e}"),
    }
}

/// Wakes at most `count` threads sleeping on `word`, in any process; returns how many woke.
#[doc(alias = "FUTEX_WAKE")]
pub(crate) fn futex_wake(word: &std::sync::atomic::AtomicU32, count: u32) -> usize {
    use rustix::thread::futex;
    // The kernel reads the count as a signed int: u32::MAX would be -1 and wake just one.
    let count = count.min(i32::MAX.unsigned_abs());
    futex::wake(word, futex::Flags::empty(), count).unwrap_or(0)
}

/// Waits until at least one of `fds` is readable or closed by its writer; returns which are.
#[doc(alias = "poll")]
pub(crate) fn wait_readable(fds: &[BorrowedFd<'_>]) -> io::Result<Vec<bool>> {
    use rustix::event::{PollFd, PollFlags};
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    loop {
        match rustix::event::poll(&mut polls, None) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(polls
        .iter()
        .map(|p| {
            p.revents()
                .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
        })
        .collect())
}

/// Closes descriptor `fd` in a forked child.
///
/// # Safety
///
/// `fd` must be a descriptor whose owning Rust value (a `File`, an `OwnedFd`) will never be
/// used or dropped in this process again: a child after `fork`, which only runs its task and
/// leaves with [`exit_now`].
pub(crate) unsafe fn close_inherited(fd: RawFd) {
    // SAFETY: the caller guarantees nothing will use or close `fd` again (see `# Safety`);
    // close has no other preconditions, and its error (EBADF) is harmless here.
    unsafe { libc::close(fd) };
}
