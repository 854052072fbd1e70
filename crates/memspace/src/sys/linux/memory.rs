//! Address space: the reservation each process makes for a segment's largest size, and the
//! shared mappings of the segment's file placed inside it as the segment grows.
//!
//! # Safety
//!
//! Mappings are created inside an address-space reservation owned by one `Mapping` value
//! (`segment/mapping.rs`), which alone replaces or releases its pages. The `unsafe fn`s here
//! state what their callers must guarantee of the range they name.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use rustix::mm::{MapFlags, ProtFlags};

/// The system page size.
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

/// Reserves `len` bytes of address space that nothing may touch (`PROT_NONE`) and that counts
/// against no memory limit (`MAP_NORESERVE`). Segments map their file into the front of it as
/// they grow, so their base address never moves within a process. The address is a multiple
/// of the page size, as every address `mmap` chooses.
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
    debug_assert!(
        ptr.addr().is_multiple_of(page_size()),
        "mmap chose {ptr:p}, not on a page boundary"
    );
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
