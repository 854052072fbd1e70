//! Faults in mappings: the `SIGBUS` handler, and the table of watched mappings it consults,
//! for a peer that shrinks a segment's file under the processes that map it.
//!
//! # Safety
//!
//! 1. The table is a static array of atomics: the handler only loads from it, and reads a
//!    slot between two equal even values of its sequence word, so it never acts on half of one
//!    mapping and half of another.
//! 2. A `Mapping` (`segment/mapping.rs`) stops being watched before it is unmapped, so a range
//!    the handler finds in the table is a live reservation's mapped part, whose pages it may
//!    replace in place.
//! 3. The handler calls only async-signal-safe functions (`mmap`, `sigaction`, `raise`) and
//!    the handler that was installed before ours.

#![allow(unsafe_code)]

use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering as AtomicOrdering};

use rustix::mm::{MapFlags, ProtFlags};

use super::memory::page_size;

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
/// If the table of watched mappings is full, the mapping is not watched: a shrink of its file
/// then kills the process with `SIGBUS`, as it would without the handler.
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
    fault_flag(watched).is_set()
}

/// The word that says whether the handler replaced pages of a watched mapping, copied out of
/// it for a handle to keep (see `segment::LockAnchor`). It speaks of that mapping only while
/// the mapping is watched: once unwatched, its slot may watch another.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FaultFlag(&'static AtomicU32);

impl FaultFlag {
    /// Whether the handler replaced pages of the mapping (its file was shrunk under it).
    #[inline]
    pub(crate) fn is_set(self) -> bool {
        // Relaxed: the thread that faulted sees its own handler's store; another thread sees
        // it at its next look, as it would see any store of a peer.
        self.0.load(AtomicOrdering::Relaxed) != 0
    }
}

/// The fault flag of `watched`.
#[inline]
pub(crate) fn fault_flag(watched: &WatchedMapping) -> FaultFlag {
    FaultFlag(watched.faulted)
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
