//! One process's view of a segment: an address-space reservation the size of the segment's
//! maximum, whose front is mapped to the segment's file as the segment grows.
//!
//! # Safety
//!
//! The invariants every `unsafe` block here relies on, established in [`Mapping::new`] and kept
//! by [`Mapping::extend`]:
//!
//! 1. `base..base + reserved` is an address range this value owns alone, from
//!    `sys::reserve_address_space`, released only in `Drop`; `mapped` never exceeds
//!    `reserved`, so every mapped byte lies inside it.
//! 2. `base..base + mapped` is mapped read-write and shared to the backing file, and `mapped`
//!    only grows. Pages are never unmapped while the value lives (only replaced in place, by
//!    invariant 4), so a reference handed out for `&self` stays valid: addresses never move
//!    and mapped bytes stay mapped.
//! 3. `mapped` never exceeds the backing file's size when it is raised (the segment checks
//!    `fstat` first), so no mapped page lies beyond the end of the file (which would `SIGBUS`).
//! 4. A peer can still shrink the file afterwards (`ftruncate`). Then an access to a lost page
//!    raises `SIGBUS`, and the handler `sys::watch_mapping` installs replaces the pages from
//!    there to the end of the mapping with private zero pages, at the same addresses, and
//!    marks the mapping [`faulted`](Mapping::faulted). Addresses stay valid (invariant 2
//!    holds); the bytes are zeros a peer could have written, which invariant-free readers of
//!    `ShmSafe` data and checksummed copies already tolerate.
//! 5. `mapped` is at least [`CONTROL_SIZE`] from the start, and `base` is aligned to
//!    [`PAGE_ALIGN`] (it comes from `mmap`): the control pages are always mapped, and an
//!    offset aligned for a type of alignment up to [`PAGE_ALIGN`] is an aligned address.
//!
//! Segment bytes are written by other processes at any time. References are therefore only
//! formed to [`ShmSafe`] types (atomics and the like); bytes are copied in and out through raw
//! pointers, never through `&[u8]`.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Segment;
use super::header::CONTROL_SIZE;
use crate::shm_safe::ShmSafe;
use crate::sys;

/// What `base` is aligned to at least: the smallest page size of the platforms served.
const PAGE_ALIGN: usize = 4096;

pub(crate) struct Mapping {
    base: NonNull<u8>,
    reserved: usize,
    /// The `SIGBUS` handler's record of this mapping (see `sys::watch_mapping`).
    watched: sys::WatchedMapping,
    /// Bytes mapped so far; only grows (invariant 2). Read without the lock, raised under it.
    mapped: AtomicUsize,
    /// Serialises `extend` between threads of this process.
    growing: Mutex<()>,
}

// SAFETY: the mapping is plain shared memory reachable from any thread; `mapped` is atomic and
// `extend` is serialised by `growing`. Nothing in it is tied to the creating thread.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared access only hands out `ShmSafe` references and copies.
unsafe impl Sync for Mapping {}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("base", &self.base)
            .field("reserved", &self.reserved)
            .field("mapped", &self.mapped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Mapping {
    /// Reserves `reserved` bytes of address space and maps the first `len` bytes of `fd`,
    /// at least the control pages.
    ///
    /// # Panics
    ///
    /// If `len` exceeds `reserved` or is less than [`CONTROL_SIZE`]: the callers checked the
    /// sizes (a header's, when a segment is opened) before.
    pub(crate) fn new(fd: BorrowedFd<'_>, reserved: usize, len: usize) -> io::Result<Self> {
        assert!(
            len <= reserved,
            "mapping {len} bytes into a {reserved}-byte reservation"
        );
        // Invariant 5.
        assert!(
            len >= CONTROL_SIZE as usize,
            "mapping {len} bytes, less than the {CONTROL_SIZE}-byte control pages"
        );
        let base = sys::reserve_address_space(reserved)?;
        let mapping = Mapping {
            base,
            reserved,
            watched: sys::watch_mapping(base, reserved),
            mapped: AtomicUsize::new(0),
            growing: Mutex::new(()),
        };
        // SAFETY: `[base, base + len)` lies in the reservation just made, which nothing
        // references yet (invariant 1).
        unsafe { sys::map_shared_fixed(base, len, fd, 0) }?;
        sys::set_watched_len(&mapping.watched, len);
        mapping.mapped.store(len, Ordering::Release);
        Ok(mapping)
    }

    /// The address at which this process sees the segment's first byte.
    pub(crate) fn base_address(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// Bytes mapped in this process.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.mapped.load(Ordering::Acquire)
    }

    /// Maps more of `fd` so that the first `new_len` bytes are visible. The caller has checked
    /// that the file has at least `new_len` bytes (invariant 3).
    pub(crate) fn extend(&self, fd: BorrowedFd<'_>, new_len: usize) -> io::Result<()> {
        if new_len > self.reserved {
            return Err(io::Error::other(format!(
                "{new_len} bytes do not fit the {}-byte reservation",
                self.reserved
            )));
        }
        // A poisoned lock only means another thread panicked mid-extend; `mapped` is still
        // accurate because it is stored after a successful mmap.
        let _serialise = self
            .growing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.mapped.load(Ordering::Acquire);
        if new_len <= old {
            return Ok(());
        }
        let at = self.base.as_ptr().wrapping_add(old);
        let at = NonNull::new(at).expect("inside a non-null reservation");
        // SAFETY: `[old, new_len)` lies inside the reservation (checked above) and beyond
        // `mapped`, so those pages are PROT_NONE and no reference points into them (invariant
        // 2 hands out references below `mapped` only).
        unsafe { sys::map_shared_fixed(at, new_len - old, fd, old as u64) }?;
        // Watched before any thread can learn of the new pages (invariant 4).
        sys::set_watched_len(&self.watched, new_len);
        self.mapped.store(new_len, Ordering::Release);
        Ok(())
    }

    /// Whether pages of this mapping were replaced by zeros because its file was shrunk under
    /// it (see invariant 4): what this process sees is then no longer the segment.
    ///
    /// Asked after the accesses it vouches for. The handler that sets the flag runs on the
    /// thread whose access faulted, in the middle of that access, so a compiler fence (no
    /// instruction) keeps the check from being moved before them: a plain copy, or a relaxed
    /// load of another word, may otherwise be, and then a read of a lost page reports success.
    #[inline]
    pub(crate) fn faulted(&self) -> bool {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        sys::mapping_faulted(&self.watched)
    }

    /// The word [`faulted`](Mapping::faulted) reads, for a handle to keep beside the segment's
    /// `Arc`: it means this mapping only while the mapping lives (its slot in the fault
    /// handler's table then watches the next mapping).
    pub(crate) fn fault_flag(&self) -> sys::FaultFlag {
        sys::fault_flag(&self.watched)
    }

    /// `start` as a `usize` if `[start, start + len)` is mapped.
    #[inline]
    fn checked(&self, start: u64, len: usize) -> Option<usize> {
        let start = usize::try_from(start).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.len()).then_some(start)
    }

    /// A shared reference to the `T` at `offset`, if it is mapped and aligned.
    #[allow(
        clippy::inline_always,
        reason = "measured: left to the compiler, a list's append called it out of line twice"
    )]
    #[inline(always)]
    pub(crate) fn get<T: ShmSafe>(&self, offset: u64) -> Option<&T> {
        const { assert!(align_of::<T>() <= PAGE_ALIGN) };
        let start = self.checked(offset, size_of::<T>())?;
        // The offset, not the address: the base is aligned to `PAGE_ALIGN` (invariant 5), so
        // an offset aligned for `T` is an aligned address.
        if !start.is_multiple_of(align_of::<T>()) {
            return None;
        }
        // SAFETY: `checked` proved `start + size_of::<T>()` is at most the mapped length, so
        // the pointer stays inside the reservation, one allocation (invariant 1), and the
        // offset is below `isize::MAX` (reservations are at most 2^46 bytes).
        let ptr = unsafe { self.base.as_ptr().add(start) }.cast::<T>();
        // SAFETY: `[start, start + size_of::<T>())` lies in the mapped range (`checked`), which
        // stays mapped at this address while `self` lives (invariant 2); the address is aligned
        // (`start` is a multiple of `T`'s alignment, at most `PAGE_ALIGN`: invariant 5);
        // `T: ShmSafe` makes a shared reference sound while other processes write: any bits
        // are valid and mutation is atomic.
        Some(unsafe { &*ptr })
    }

    /// The `T` at `OFFSET` in the control pages, which are always mapped (invariant 5): no
    /// check at run time, where [`Mapping::get`] compares with the mapped length and tests
    /// the alignment on every call (a put and a get of a queue make a dozen such calls).
    #[allow(
        clippy::inline_always,
        reason = "a few instructions, on every lock and every collection call"
    )]
    #[inline(always)]
    pub(crate) fn control<T: ShmSafe, const OFFSET: u64>(&self) -> &T {
        const {
            assert!(OFFSET + size_of::<T>() as u64 <= CONTROL_SIZE);
            assert!(OFFSET.is_multiple_of(align_of::<T>() as u64));
            assert!(align_of::<T>() <= PAGE_ALIGN);
        };
        let ptr = self.base.as_ptr().wrapping_add(OFFSET as usize).cast::<T>();
        // SAFETY: `[OFFSET, OFFSET + size_of::<T>())` lies in the control pages (asserted at
        // compile time), which are mapped for as long as `self` lives (invariants 2 and 5);
        // the pointer is aligned, `OFFSET` being a multiple of `T`'s alignment, at most
        // `PAGE_ALIGN` (invariant 5, and the assertions); `T: ShmSafe` makes a shared reference
        // sound while other processes write: any bits are valid and mutation is atomic.
        unsafe { &*ptr }
    }

    /// The `n` words at `offset`, if they are mapped and `offset` is 8-aligned: a run of
    /// atomics that every process may read and write while others do (a plain-value map's
    /// slots).
    #[inline]
    pub(crate) fn words(&self, offset: u64, n: usize) -> Option<&[AtomicU64]> {
        self.checked(offset, n.checked_mul(8)?)?;
        let first = self.pointer::<AtomicU64>(offset)?;
        // SAFETY: `checked` proved the `8 * n` bytes from `offset` lie in the mapped range,
        // which stays mapped at this address while `self` lives (invariant 2); `pointer`
        // checked the first word is mapped and aligned, so every word is; `AtomicU64` accepts
        // any bits and all its accesses are atomic, so a shared slice is sound while other
        // processes write the words.
        Some(unsafe { std::slice::from_raw_parts(first.as_ptr(), n) })
    }

    /// A pointer to the `T` at `offset`, if it is mapped and aligned. Dereferencing it is the
    /// caller's business: the memory may be written by other processes.
    pub(crate) fn pointer<T>(&self, offset: u64) -> Option<NonNull<T>> {
        let start = self.checked(offset, size_of::<T>())?;
        let ptr = self.base.as_ptr().wrapping_add(start).cast::<T>();
        if !ptr.is_aligned() {
            return None;
        }
        NonNull::new(ptr)
    }

    /// Copies `out.len()` bytes starting at `offset` into `out`; `None` if they are not mapped,
    /// or if the mapping [`faulted`](Mapping::faulted).
    ///
    /// The bytes must not be written concurrently by this process (they may be, by a
    /// misbehaving peer: the copy then yields garbage, which the caller detects by checksum).
    pub(crate) fn read(&self, offset: u64, out: &mut [u8]) -> Option<()> {
        let start = self.checked(offset, out.len())?;
        let src = self.base.as_ptr().wrapping_add(start);
        // SAFETY: the source range is mapped (checked) and does not overlap `out`, a Rust
        // buffer outside every mapping; u8 has no alignment or validity requirements.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
        // Zeros from pages lost to a shrunk file are not the segment's bytes (invariant 4).
        (!self.faulted()).then_some(())
    }

    /// Copies `data` into the segment at `offset`; `None` if the range is not mapped, or if the
    /// mapping [`faulted`](Mapping::faulted).
    ///
    /// # Safety
    ///
    /// No thread of this process may read or write `[offset, offset + data.len())` during the
    /// call: the caller holds the segment's lock and the range is not yet published to readers
    /// (it lies past the collection's published end).
    #[inline]
    pub(crate) unsafe fn write(&self, offset: u64, data: &[u8]) -> Option<()> {
        let start = self.checked(offset, data.len())?;
        let dst = self.base.as_ptr().wrapping_add(start);
        // SAFETY: the range is mapped (checked) and writable (invariant 2); the caller
        // guarantees nobody in this process accesses it concurrently (see `# Safety`); `data`
        // is a Rust buffer outside every mapping, so the ranges do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        // Bytes written into pages lost to a shrunk file reach no one (invariant 4).
        (!self.faulted()).then_some(())
    }

    /// Asks the processor to fetch the cache lines of `[offset, offset + len)` (the first
    /// [`PREFETCH_LIMIT`] bytes of it) for writing, ahead of stores to them: a hint, which
    /// changes no memory, cannot fault and is dropped where the range is not mapped. Lines
    /// another core holds then move while the caller works, several at once, instead of one at
    /// a time as each store reaches them. Only on x86-64 processors that have `prefetchw`;
    /// elsewhere it does nothing.
    #[inline]
    pub(crate) fn prefetch_for_write(&self, offset: u64, len: u64) {
        let len = len.min(PREFETCH_LIMIT) as usize;
        if let Some(start) = self.checked(offset, len) {
            // The base is page-aligned (invariant 5): offsets and addresses share their lines.
            prefetch_lines_for_write(self.base.as_ptr().wrapping_add(start), len);
        }
    }
}

/// The most bytes [`Mapping::prefetch_for_write`] asks for: 64 lines, the entries (32 bytes
/// each) or the records of a batch of about a hundred small items.
const PREFETCH_LIMIT: u64 = 4096;

/// Issues `prefetchw` for each cache line of `[start, start + len)`, a mapped range.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline]
fn prefetch_lines_for_write(start: *const u8, len: usize) {
    /// The cache line's size on the processors memspace runs on.
    const CACHE_LINE: usize = 64;
    if !has_prefetchw() {
        return;
    }
    let end = start.wrapping_add(len);
    // The line `start` lies in, then every line that starts in the range.
    let mut line = start.wrapping_sub(start.addr() % CACHE_LINE);
    while line < end {
        // SAFETY:
        // 1. The processor has `prefetchw` (`has_prefetchw`).
        // 2. It is a hint: it changes no memory, register or flag, and cannot fault, not even
        //    on an unmapped address (this one is mapped: the caller checked the range).
        // 3. It is declared `readonly` rather than `nomem` only so that the compiler keeps it
        //    before the stores it prepares for.
        unsafe {
            std::arch::asm!(
                "prefetchw [{line}]",
                line = in(reg) line,
                options(nostack, readonly, preserves_flags),
            );
        }
        line = line.wrapping_add(CACHE_LINE);
    }
}

/// Without `prefetchw` (another architecture, or Miri): nothing to ask.
#[cfg(not(all(target_arch = "x86_64", not(miri))))]
#[inline]
fn prefetch_lines_for_write(_start: *const u8, _len: usize) {}

/// Whether the processor has `prefetchw` (CPUID leaf `0x8000_0001`, ECX bit 8, which AMD calls
/// 3DNowPrefetch and Intel PREFETCHW); asked once.
#[cfg(all(target_arch = "x86_64", not(miri)))]
fn has_prefetchw() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        use std::arch::x86_64::__cpuid;
        __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
    })
}

impl Drop for Mapping {
    fn drop(&mut self) {
        sys::unwatch_mapping(&self.watched);
        // SAFETY: the reservation is ours (invariant 1) and `&mut self` proves no reference into
        // it remains. Lock guards borrow the segment, so no mutex in it is held through this
        // value. An error here (EINVAL for a bad range) cannot happen for a range we reserved,
        // and there is nothing useful to do about it in `drop`: ignore it, as memmap2 does.
        let _ = unsafe { sys::unmap(self.base, self.reserved) };
    }
}

/// A `T` at a fixed offset of a segment's mapping, held with the segment whose `Arc` keeps
/// the mapping, and so the address, alive: a handle that keeps one reaches the `T` in one
/// load, not through the segment (see `lock_anchor.rs`).
pub(crate) struct Pinned<T> {
    ptr: NonNull<T>,
    segment: Arc<Segment>,
}

impl<T> Clone for Pinned<T> {
    fn clone(&self) -> Self {
        Pinned {
            ptr: self.ptr,
            segment: Arc::clone(&self.segment),
        }
    }
}

// SAFETY: a `Pinned<T>` only hands out `&T`, of a `ShmSafe` type, which is `Sync`; the
// reference is valid while the `Arc<Segment>` beside it lives, and that `Arc` may move to, and
// be shared between, threads.
unsafe impl<T: ShmSafe> Send for Pinned<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: ShmSafe> Sync for Pinned<T> {}

impl<T: ShmSafe> Pinned<T> {
    /// The `T` at `offset` of `segment`, if it is mapped and aligned.
    pub(crate) fn new(segment: Arc<Segment>, offset: u64) -> Option<Self> {
        let ptr = segment.mapping().pointer::<T>(offset)?;
        Some(Pinned { ptr, segment })
    }

    /// The `T`.
    #[inline]
    pub(crate) fn get(&self) -> &T {
        // SAFETY: `pointer` checked that the `T` lies in the mapped part of `segment`'s mapping
        // and is aligned; it stays mapped at this address while `segment` lives (invariant 2),
        // which `self` keeps; `T: ShmSafe` makes a shared reference sound while other
        // processes write.
        unsafe { self.ptr.as_ref() }
    }

    /// The segment.
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }
}
