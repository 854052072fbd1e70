//! [`LockAnchor`]: a segment's lock slot, kept by a handle whose every call takes the lock;
//! [`LockSite`]: where a lock is taken: a segment or an anchor for the segment's lock, a
//! queue's view of its segment for the second one (see `header.rs`).
//!
//! Reached through the segment, the slot is two dependent loads from the handle (the `Arc`'s
//! pointer, then the mapping's base, beside its length for the bounds check), which the
//! compiler may not keep in registers across a caller's loop: the lock's atomic operations may
//! change any memory it cannot prove unchanging. A locked instruction runs no later load
//! before it completes, so the chain is paid on every lock (BENCHMARKS.md, "Seventh pass"). An
//! anchor keeps the slot's address in the handle itself, one load away; and a handle that
//! holds no `UnsafeCell` of its own (a `Lock` boxes its Redis engine) lets the compiler load
//! it once, before the loop.

use std::sync::Arc;

use super::header::LOCK_OFFSET;
use super::mapping::Pinned;
use super::{InSegment, LockSlot, Segment};
use crate::sys;

/// Where a lock of a segment is taken: its own lock through the [`Segment`] itself, or through
/// a handle's [`LockAnchor`], which reaches the same slot in fewer loads; its second lock
/// through a queue's view of the segment.
pub(crate) trait LockSite: InSegment {
    /// Its lock slot.
    fn slot(&self) -> &LockSlot;
    /// Whether what the lock protects is still the segment's after a peer shrank its file
    /// (see [`Segment::check_intact`]): for a segment (and a queue's view), no page of its
    /// mapping was lost; for a [`LockAnchor`], the lock's own page was not.
    fn is_intact(&self) -> bool;
}

impl LockSite for Segment {
    #[inline]
    fn slot(&self) -> &LockSlot {
        self.lock_slot()
    }

    #[inline]
    fn is_intact(&self) -> bool {
        Segment::is_intact(self)
    }
}

/// A segment's lock slot, one load from the handle that keeps it (see the module docs).
/// `GUARDS_DATA` says whether the lock guards data elsewhere in the segment (a `Mutex`'s
/// value), whose pages a shrunk file may take too: see `is_intact`.
#[derive(Clone)]
pub(crate) struct LockAnchor<const GUARDS_DATA: bool = false> {
    slot: Pinned<LockSlot>,
    /// The mapping's fault flag (see `is_intact`).
    fault: sys::FaultFlag,
}

impl<const GUARDS_DATA: bool> LockAnchor<GUARDS_DATA> {
    /// The anchor of `segment`'s lock.
    pub(crate) fn new(segment: Arc<Segment>) -> Self {
        let fault = segment.mapping().fault_flag();
        LockAnchor {
            slot: Pinned::new(segment, LOCK_OFFSET)
                .expect("the control pages are mapped for the segment's lifetime"),
            fault,
        }
    }
}

impl<const GUARDS_DATA: bool> InSegment for LockAnchor<GUARDS_DATA> {
    #[inline]
    fn segment(&self) -> &Segment {
        self.slot.segment()
    }
}

impl<const GUARDS_DATA: bool> LockSite for LockAnchor<GUARDS_DATA> {
    #[inline]
    fn slot(&self) -> &LockSlot {
        self.slot.get()
    }

    /// For a lock that guards data elsewhere, whether no page of the mapping was lost.
    /// Otherwise (a `Lock`, which holds no data and reads no other page), whether the lock's
    /// own page is still the segment's: a page lost to a shrunk file reads as zeros, and the
    /// slot's `home_namespace`, in the lock word's cache line, is never 0 unless this
    /// machine's namespaces are unknown (no `/proc`), where the fault flag is asked instead. A
    /// word of the lock's own cache line costs nothing after the lock's atomic operation; the
    /// fault flag, in another line, does.
    #[inline]
    fn is_intact(&self) -> bool {
        (!GUARDS_DATA && self.slot().home_is_known()) || !self.fault.is_set()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{Kind, SegmentName, SegmentOptions};

    #[test]
    fn an_anchored_lock_is_intact_exactly_while_its_own_page_is() {
        let segment = Arc::new(
            Segment::create(
                &SegmentName::anonymous(),
                Kind::Lock,
                "",
                &SegmentOptions::control_only(),
                true,
                |_| Ok(()),
            )
            .expect("create a lock's segment"),
        );
        let anchor = LockAnchor::<false>::new(Arc::clone(&segment));
        let guarding = LockAnchor::<true>::new(Arc::clone(&segment));
        assert!(anchor.is_intact() && guarding.is_intact() && segment.is_intact());

        // A peer cuts the file after the lock's page, and this process reads a lost page: the
        // segment is no longer intact, but its lock still is the shared one; a lock that
        // guards data elsewhere in the segment is not intact either.
        rustix::fs::ftruncate(&segment.fd, 4096).expect("shrink to one page");
        let mut byte = [0u8];
        assert!(segment.mapping().read(4096, &mut byte).is_none());
        // The copy is made: a byte nobody reads could be optimised away, and the page with it.
        std::hint::black_box(byte);
        assert!(!segment.is_intact());
        assert!(anchor.is_intact());
        assert!(!guarding.is_intact());

        // Then it cuts the lock's page too: reading the lock word finds a zero page.
        rustix::fs::ftruncate(&segment.fd, 0).expect("shrink to nothing");
        assert!(!anchor.slot().is_held());
        assert!(!anchor.is_intact());
        // A handle cannot count its users in a file cut to nothing, and leaves the name.
        segment.unlink().expect("remove the segment");
    }
}
