//! Linux: POSIX shared memory under `/dev/shm`, address-space reservations, futexes, `fork`,
//! pipes and `/proc`.
//!
//! # Safety
//!
//! This file is where raw memory and process state are touched. The invariants it relies on:
//!
//! 1. Mappings are created inside an address-space reservation owned by one `Mapping` value
//!    (`segment/mapping.rs`), which alone replaces or releases its pages.
//! 2. `fork` is only called by `spawn`, which documents for users that the child runs with a
//!    single thread and must not rely on locks held by other threads at the fork.

#![allow(unsafe_code)]
#![allow(clippy::disallowed_methods)] // we are sys: the one place allowed to call libc directly

use std::ffi::c_int;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::ptr::NonNull;
use std::time::Duration;

use rustix::fs::{FallocateFlags, Mode};
use rustix::mm::{MapFlags, ProtFlags};

// ---------------------------------------------------------------------------------------------
// Shared-memory objects and files

/// Where POSIX shared-memory objects live on Linux.
const SHM_DIR: &str = "/dev/shm";

/// The path of the shared-memory object `name` (`/memspace.NAME`).
fn shm_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(SHM_DIR).join(name.trim_start_matches('/'))
}

/// The flags every open of a segment's object adds, as glibc's `shm_open` does: a symbolic
/// link planted at the name is refused (`ELOOP`) rather than followed, and a FIFO or device
/// planted there cannot make the open block.
fn segment_open_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY
}

/// Creates a new POSIX shared-memory object; fails with `AlreadyExists` if the name is taken.
#[doc(alias = "shm_open")]
pub(crate) fn shm_create(name: &str, mode: u32) -> io::Result<OwnedFd> {
    file_create(&shm_path(name), mode)
}

/// Sets the permission bits of `fd` exactly (the mode given at creation is masked by the
/// umask).
#[doc(alias = "fchmod")]
pub(crate) fn set_mode(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// Opens an existing POSIX shared-memory object for reading and writing.
pub(crate) fn shm_open(name: &str) -> io::Result<OwnedFd> {
    file_open(&shm_path(name))
}

/// The directory of the shared-memory object `name`, and the object's entry in it (for
/// [`open_entry`] and [`unlink_entry`]).
pub(crate) fn shm_entry(name: &str) -> (std::path::PathBuf, std::ffi::OsString) {
    (
        SHM_DIR.into(),
        name.trim_start_matches('/').to_owned().into(),
    )
}

/// Opens directory `path`, to act on one entry in it without resolving the path again.
pub(crate) fn open_directory(path: &std::path::Path) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens `entry` of directory `dir` for reading, never following a symbolic link.
pub(crate) fn open_entry(dir: BorrowedFd<'_>, entry: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    Ok(rustix::fs::openat(
        dir,
        entry,
        OFlags::RDONLY | segment_open_flags(),
        Mode::empty(),
    )?)
}

/// The device and inode `entry` of `dir` names now (a symbolic link is not followed).
pub(crate) fn entry_identity(
    dir: BorrowedFd<'_>,
    entry: &std::ffi::OsStr,
) -> io::Result<(u64, u64)> {
    let st = rustix::fs::statat(dir, entry, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    Ok((st.st_dev, st.st_ino))
}

/// Removes `entry` from `dir`.
#[doc(alias = "unlinkat")]
pub(crate) fn unlink_entry(dir: BorrowedFd<'_>, entry: &std::ffi::OsStr) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(
        dir,
        entry,
        rustix::fs::AtFlags::empty(),
    )?)
}

/// The effective user id of this process: the user whose segments it trusts by default.
#[doc(alias = "geteuid")]
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// What `fstat` says about a segment's backing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub(crate) size: u64,
    pub(crate) device: u64,
    pub(crate) inode: u64,
    pub(crate) owner_uid: u32,
    pub(crate) mode: u32,
    /// Whether it is a regular file (a shared-memory object is one too).
    pub(crate) regular: bool,
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
        regular: rustix::fs::FileType::from_raw_mode(st.st_mode)
            == rustix::fs::FileType::RegularFile,
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
// Faults in mappings: a peer that shrinks a segment's file

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering as AtomicOrdering};

/// How many mappings the fault handler can watch at once. A slot is 32 bytes, so the table
/// takes 512 KiB of address space, of which only the pages of used slots are ever touched.
const WATCHED_MAPPINGS: usize = 16_384;

/// A mapping the `SIGBUS` handler watches: `[base, base + len)` is mapped to a segment's file,
/// inside a reservation that ends at `base + reserved`.
struct Watched {
    /// A sequence word: even while the slot is stable (free, or describing one mapping), odd
    /// while it is being filled in or emptied. The handler reads the other words between two
    /// equal even values of it, so it never acts on half of one mapping and half of another.
    sequence: AtomicU32,
    /// 1 while the slot describes a mapping.
    used: AtomicU32,
    /// Set by the handler before it replaces pages of this mapping: from then on, what this
    /// process sees of the segment is no longer the file.
    faulted: AtomicU32,
    base: AtomicUsize,
    reserved: AtomicUsize,
    len: AtomicUsize,
}

#[allow(
    clippy::declare_interior_mutable_const,
    reason = "the initialiser of the table"
)]
const UNUSED: Watched = Watched {
    sequence: AtomicU32::new(0),
    used: AtomicU32::new(0),
    faulted: AtomicU32::new(0),
    base: AtomicUsize::new(0),
    reserved: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
};

static WATCHED: [Watched; WATCHED_MAPPINGS] = [UNUSED; WATCHED_MAPPINGS];
/// One past the highest slot ever claimed: the handler scans no further.
static WATCHED_END: AtomicUsize = AtomicUsize::new(0);
/// Serialises claiming and freeing slots between threads (never taken by the handler).
static WATCHED_CLAIMS: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// The page size, read once before the handler is installed (the handler may not ask).
static FAULT_PAGE: AtomicUsize = AtomicUsize::new(0);
/// The `SIGBUS` action in place before ours, which faults outside our mappings go to.
static PREVIOUS_SIGBUS: std::sync::OnceLock<SavedAction> = std::sync::OnceLock::new();
/// Our own action, to put back when a handler we passed a signal to removed it.
static OUR_SIGBUS: std::sync::OnceLock<SavedAction> = std::sync::OnceLock::new();

struct SavedAction(libc::sigaction);
// SAFETY: a `sigaction` is plain data (a handler address, a mask and flags), set once and
// only read afterwards.
unsafe impl Sync for SavedAction {}
// SAFETY: as above.
unsafe impl Send for SavedAction {}

/// A mapping watched for faults; see [`watch_mapping`]. Keeps a reference to its slot's
/// `faulted` word, so that the check on every lock and copy is one load.
#[derive(Debug)]
pub(crate) struct WatchedMapping {
    slot: Option<usize>,
    faulted: &'static AtomicU32,
}

/// The `faulted` word of a mapping the table had no room for: never set.
static NEVER_FAULTED: AtomicU32 = AtomicU32::new(0);

/// Starts watching `[base, base + reserved)`, a reservation whose front is a shared mapping of
/// a segment's file ([`set_watched_len`] says how much of it).
///
/// Accessing a page of a file mapping past the end of the file raises `SIGBUS`, which kills
/// the process; a peer that shrinks a segment's file (`ftruncate`) makes any reader's next
/// access to the lost pages do that. The first call installs a handler for `SIGBUS` that, for a
/// fault the kernel raised inside a watched mapping, marks the mapping
/// [`faulted`](mapping_faulted) and maps private zero pages over the rest of it; the access is
/// then repeated and reads zeros. The segment reports the fault as an error from then on. A
/// fault anywhere else, and a `SIGBUS` another process sent, go to the handler that was
/// installed before (by default, the process dies as it would have).
///
/// The zeros are what a peer that zeroed the file would have left, which readers of `ShmSafe`
/// data and checksummed copies tolerate. Memory behind a plain shared reference (a
/// `SharedVec` slice) changes under it as it would under such a peer: the library reports the
/// fault at its next read or write, and a program that must not see it should copy.
///
/// If the table of watched mappings is full, the mapping is not watched (the old behaviour).
pub(crate) fn watch_mapping(base: NonNull<u8>, reserved: usize) -> WatchedMapping {
    install_fault_handler();
    let _claiming = WATCHED_CLAIMS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (index, slot) in WATCHED.iter().enumerate() {
        if slot.used.load(AtomicOrdering::Relaxed) == 0 {
            write_slot(slot, || {
                slot.used.store(1, AtomicOrdering::Relaxed);
                slot.faulted.store(0, AtomicOrdering::Relaxed);
                slot.base
                    .store(base.as_ptr() as usize, AtomicOrdering::Relaxed);
                slot.reserved.store(reserved, AtomicOrdering::Relaxed);
                slot.len.store(0, AtomicOrdering::Relaxed);
            });
            WATCHED_END.fetch_max(index + 1, AtomicOrdering::Release);
            return WatchedMapping {
                slot: Some(index),
                faulted: &slot.faulted,
            };
        }
    }
    WatchedMapping {
        slot: None,
        faulted: &NEVER_FAULTED,
    }
}

/// Changes a slot's words with its sequence word odd meanwhile (see [`Watched::sequence`]).
fn write_slot(slot: &Watched, change: impl FnOnce()) {
    slot.sequence.fetch_add(1, AtomicOrdering::AcqRel);
    std::sync::atomic::fence(AtomicOrdering::Release);
    change();
    slot.sequence.fetch_add(1, AtomicOrdering::Release);
}

/// Records that the watched mapping now spans `len` bytes of its reservation. Called before
/// the new length is published to other threads, so that no access beyond the watched length
/// can fault.
pub(crate) fn set_watched_len(watched: &WatchedMapping, len: usize) {
    if let Some(index) = watched.slot {
        // Growing only moves the end within the same reservation: a handler that reads the
        // old or the new length acts within this mapping either way.
        WATCHED[index].len.store(len, AtomicOrdering::Release);
    }
}

/// Whether the handler replaced pages of this mapping (its file was shrunk under it).
#[inline]
pub(crate) fn mapping_faulted(watched: &WatchedMapping) -> bool {
    // Relaxed: the thread that faulted sees its own handler's store; another thread sees it
    // at its next look, as it would see any store of a peer.
    watched.faulted.load(AtomicOrdering::Relaxed) != 0
}

/// Stops watching (before the mapping is unmapped).
pub(crate) fn unwatch_mapping(watched: &WatchedMapping) {
    if let Some(index) = watched.slot {
        let _claiming = WATCHED_CLAIMS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &WATCHED[index];
        write_slot(slot, || {
            slot.len.store(0, AtomicOrdering::Relaxed);
            slot.used.store(0, AtomicOrdering::Relaxed);
        });
    }
}

fn install_fault_handler() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        FAULT_PAGE.store(page_size(), AtomicOrdering::Relaxed);
        // SAFETY: `sigaction` is plain data, for which zeros are a valid value.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: asks for the current action only (no new one), into a live value.
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &raw mut previous) } != 0 {
            return;
        }
        // Saved before ours is installed, so that the handler always finds it.
        let _ = PREVIOUS_SIGBUS.set(SavedAction(previous));
        // SAFETY: as above, zeros are a valid `sigaction`.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        let _ = OUR_SIGBUS.set(SavedAction(action));
        // SAFETY: a pointer to a live, initialised `sigaction`; `on_sigbus` has the
        // three-argument signature `SA_SIGINFO` calls for and lives for the whole program.
        unsafe { libc::sigaction(libc::SIGBUS, &raw const action, std::ptr::null_mut()) };
    });
}

/// The watched mapping `address` lies in, as `(slot, base, end)` with `end` the end of its
/// mapped part, read consistently (see [`Watched::sequence`]).
fn watched_at(address: usize) -> Option<(&'static Watched, usize, usize)> {
    let end = WATCHED_END
        .load(AtomicOrdering::Acquire)
        .min(WATCHED_MAPPINGS);
    for slot in &WATCHED[..end] {
        let before = slot.sequence.load(AtomicOrdering::Acquire);
        if before % 2 != 0 || slot.used.load(AtomicOrdering::Relaxed) == 0 {
            continue;
        }
        let base = slot.base.load(AtomicOrdering::Relaxed);
        let reserved = slot.reserved.load(AtomicOrdering::Relaxed);
        let len = slot.len.load(AtomicOrdering::Acquire).min(reserved);
        std::sync::atomic::fence(AtomicOrdering::Acquire);
        if slot.sequence.load(AtomicOrdering::Relaxed) != before {
            continue;
        }
        let mapped_end = base.saturating_add(len);
        if (base..mapped_end).contains(&address) {
            return Some((slot, base, mapped_end));
        }
    }
    None
}

/// The `SIGBUS` handler. It only reads atomics, calls `mmap`, `sigaction` and `raise`
/// (system calls), and the previous handler, as a signal handler may.
extern "C" fn on_sigbus(signal: c_int, info: *mut libc::siginfo_t, context: *mut std::ffi::c_void) {
    // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO` handler.
    let details = unsafe { &*info };
    // Only a fault the kernel raised (`si_code` > 0, `BUS_ADRERR` for a page past the end of
    // a file) says where it happened; a `SIGBUS` sent by a process chooses its own fields.
    if details.si_code > 0 {
        // SAFETY: for a kernel-raised SIGBUS, the union member `si_addr` is the one filled
        // in: the faulting address.
        let address = unsafe { details.si_addr() } as usize;
        if let Some((slot, base, end)) = watched_at(address) {
            let page = FAULT_PAGE.load(AtomicOrdering::Relaxed).max(1);
            let from = address - (address - base) % page;
            // Marked first, so that no thread reads the zeros and then finds the mapping
            // intact.
            slot.faulted.store(1, AtomicOrdering::SeqCst);
            // SAFETY: `[from, end)` lies inside the mapped part of a reservation a live
            // `Mapping` owns (its slot was stable around the reads, and a `Mapping` stops
            // being watched before it is unmapped, which cannot happen while one of its pages
            // is being accessed). Replacing its pages with private zero pages at the same
            // addresses keeps every address valid; what the bytes read as afterwards is what
            // a peer writing zeros could have left (see `watch_mapping`).
            let replaced = unsafe {
                rustix::mm::mmap_anonymous(
                    from as *mut std::ffi::c_void,
                    end - from,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::PRIVATE | MapFlags::FIXED,
                )
            };
            if replaced.is_ok() {
                return;
            }
        }
    }
    pass_on_sigbus(signal, info, context);
}

/// Does with a `SIGBUS` that is not ours what would have happened without our handler.
fn pass_on_sigbus(signal: c_int, info: *mut libc::siginfo_t, context: *mut std::ffi::c_void) {
    let previous = PREVIOUS_SIGBUS.get().map(|saved| saved.0);
    match previous {
        Some(previous)
            if previous.sa_sigaction != libc::SIG_DFL && previous.sa_sigaction != libc::SIG_IGN =>
        {
            if previous.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this
                // signature; it is called as the kernel would have called it.
                let handler: extern "C" fn(c_int, *mut libc::siginfo_t, *mut std::ffi::c_void) =
                    unsafe { std::mem::transmute(previous.sa_sigaction) };
                handler(signal, info, context);
            } else {
                // SAFETY: without SA_SIGINFO a handler takes the signal number only.
                let handler: extern "C" fn(c_int) =
                    unsafe { std::mem::transmute(previous.sa_sigaction) };
                handler(signal);
            }
            // A signal another process sent does not come again: if the handler we passed it
            // to put the default action back (as std's does for what is not a stack
            // overflow), put ours back, or the next lost page would kill the process. A fault
            // the kernel raised comes again on return, and must meet the default action.
            // SAFETY: `info` is valid (see above).
            let sent = unsafe { (*info).si_code } <= 0;
            if sent && let Some(ours) = OUR_SIGBUS.get() {
                // SAFETY: a pointer to a live `sigaction`; sigaction is async-signal-safe.
                unsafe { libc::sigaction(libc::SIGBUS, &raw const ours.0, std::ptr::null_mut()) };
            }
        }
        _ => {
            // The default action: restore it and let the signal take effect, as it would
            // have without this handler (a fault repeats on return; a sent signal is raised
            // again, and delivered once this handler returns).
            // SAFETY: zeros are a valid `sigaction`, and SIG_DFL is 0.
            let default: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: a pointer to a live `sigaction`; sigaction is async-signal-safe.
            unsafe { libc::sigaction(libc::SIGBUS, &raw const default, std::ptr::null_mut()) };
            // SAFETY: `info` is valid (see above).
            if unsafe { (*info).si_code } <= 0 {
                // SAFETY: raise is async-signal-safe.
                unsafe { libc::raise(libc::SIGBUS) };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lock waits

/// How long a lock attempt may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    Forever,
    Never,
    For(Duration),
}

// ---------------------------------------------------------------------------------------------
// Processes

// The pid and the thread's id are asked for on every lock acquisition (to record the owner),
// and `getpid` and `gettid` are system calls: cache them, and forget them in the child of every
// fork (`pthread_atfork`), where the one thread left has new ids.
static PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
/// Counts the forks this process descends from since it started, so that a thread's cached
/// identity can tell it was made before a fork.
static FORK_GENERATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn forget_ids_after_fork() {
    PID.store(0, std::sync::atomic::Ordering::Relaxed);
    FORK_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
#[inline]
pub(crate) fn pid() -> u32 {
    let cached = PID.load(std::sync::atomic::Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    ask_pid()
}

#[cold]
fn ask_pid() -> u32 {
    forget_ids_in_fork_children();
    let pid = rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs();
    PID.store(pid, std::sync::atomic::Ordering::Relaxed);
    pid
}

/// A thread as other processes can check on it: its id, when it started (clock ticks after
/// boot), which tells a live thread from a later one that reused the id, and the pid namespace
/// in which that id means something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThreadStamp {
    pub(crate) tid: u32,
    pub(crate) start: u64,
    pub(crate) pid_namespace: u64,
}

thread_local! {
    /// The calling thread's stamp and the fork generation it was taken in (tid 0: not yet).
    static THIS_THREAD: std::cell::Cell<(u32, ThreadStamp)> =
        const {
            std::cell::Cell::new((
                0,
                ThreadStamp {
                    tid: 0,
                    start: 0,
                    pid_namespace: 0,
                },
            ))
        };
}

/// The calling thread's stamp: two system calls and a read of `/proc` the first time a thread
/// asks (and again after a fork), a thread-local read after that.
#[inline]
pub(crate) fn this_thread() -> ThreadStamp {
    let generation = FORK_GENERATION.load(std::sync::atomic::Ordering::Relaxed);
    let (cached_generation, stamp) = THIS_THREAD.get();
    if stamp.tid != 0 && cached_generation == generation {
        return stamp;
    }
    stamp_this_thread(generation)
}

#[cold]
fn stamp_this_thread(generation: u32) -> ThreadStamp {
    forget_ids_in_fork_children();
    let tid = rustix::thread::gettid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs();
    // The thread is alive (it is us), so only an unreadable /proc (not mounted) leaves no start
    // time; 0 then means "unknown", and others fall back on the thread's existence alone.
    let start = read_stat("/proc/thread-self/stat").map_or(0, |stat| stat.start);
    let stamp = ThreadStamp {
        tid,
        start,
        pid_namespace: pid_namespace(),
    };
    THIS_THREAD.set((generation, stamp));
    stamp
}

/// The calling process's pid namespace (the inode of `/proc/self/ns/pid`; 0 if unreadable).
/// Thread and process ids mean something only inside one namespace: a process in another one
/// that shares `/dev/shm` (a container) has ids that `/proc` here does not show, or shows as
/// someone else.
pub(crate) fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
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

struct Stat {
    zombie: bool,
    start: u64,
}

fn read_stat(path: &str) -> Option<Stat> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')': skip past the
    // last ')'. Fields after it start with field 3 (the state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    Some(Stat {
        // A zombie has ended; only its exit status remains.
        zombie: state == "Z" || state == "X",
        start: fields.nth(22 - 4)?.parse().ok()?,
    })
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
/// `ELOOP`: an open with `O_NOFOLLOW` met a symbolic link.
pub(crate) const ELOOP: i32 = libc::ELOOP;

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

/// Creates a new regular file for a file-backed segment; fails if it exists (`O_EXCL` also
/// refuses a symbolic link at `path`).
pub(crate) fn file_create(path: &std::path::Path, mode: u32) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | segment_open_flags();
    Ok(rustix::fs::open(path, flags, Mode::from_raw_mode(mode))?)
}

/// Opens an existing regular file for reading and writing, without following a symbolic link
/// at `path` itself.
pub(crate) fn file_open(path: &std::path::Path) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    Ok(rustix::fs::open(
        path,
        OFlags::RDWR | segment_open_flags(),
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
        // EFAULT: the word's page lies past the end of a file a peer shrank; the caller's next
        // access to it faults, the fault handler replaces the page (see `watch_mapping`), and
        // the segment reports the damage. Re-check, as after any change of the word.
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::FAULT) => Woken::Changed,
        Err(rustix::io::Errno::TIMEDOUT) => Woken::TimedOut,
        // EINVAL: the word is ours, mapped and aligned (`Mapping::get` checked), so this is a
        // bug in memspace, not a condition to handle.
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
