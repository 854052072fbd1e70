//! [`LockAnchor`]: a segment's lock slot and fault flag, resolved once for a handle whose
//! every call takes the lock; [`LockSite`]: where a lock is taken, a segment or an anchor.
//!
//! Reached through the segment, the slot is two dependent loads away from the handle (the
//! `Arc`'s pointer, then the mapping's base, beside its length for the bounds check), and the
//! compiler may keep none of them in registers across a caller's loop: the lock's atomic
//! operations may change any memory it cannot prove unchanging. A locked instruction runs no
//! later load before it completes, so such chains are paid on every lock: in a model of the
//! lock's fast path, the slot reached through the `Arc` took a lock and unlock from 11 ns to
//! 13 ns (see BENCHMARKS.md, "Seventh pass"). The anchor keeps the slot's address in the
//! handle itself, one load away; and a handle that holds no `UnsafeCell` of its own (a
//! `Lock` boxes its Redis engine) lets the compiler load it once, before the loop.
//!
//! # Safety
//!
//! `slot` points at the lock slot in the control pages of `segment`'s mapping. The mapping
//! never unmaps a page nor moves while the `Segment` lives (invariant 2 of `mapping.rs`), and
//! the anchor keeps the `Segment` alive through its `Arc`: the pointer stays valid, and
//! aligned, for as long as the anchor exists.

#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::Arc;

use super::{LockSlot, Segment};
use crate::sys;

/// Where a segment's lock is taken: through the [`Segment`] itself, or through a handle's
/// [`LockAnchor`], which reaches the same slot and flag in fewer loads.
pub(crate) trait LockSite {
    /// The segment whose lock it is.
    fn segment(&self) -> &Segment;
    /// Its lock slot.
    fn slot(&self) -> &LockSlot;
    /// Whether no page of the segment's mapping was lost to a shrunk file (see
    /// [`Segment::check_intact`]).
    fn is_intact(&self) -> bool;
}

impl LockSite for Segment {
    #[inline]
    fn segment(&self) -> &Segment {
        self
    }

    #[inline]
    fn slot(&self) -> &LockSlot {
        self.lock_slot()
    }

    #[inline]
    fn is_intact(&self) -> bool {
        Segment::is_intact(self)
    }
}

impl LockSite for Arc<Segment> {
    #[inline]
    fn segment(&self) -> &Segment {
        self
    }

    #[inline]
    fn slot(&self) -> &LockSlot {
        self.lock_slot()
    }

    #[inline]
    fn is_intact(&self) -> bool {
        Segment::is_intact(self)
    }
}

/// A segment, with the address of its lock slot and its fault flag: see the module docs.
#[derive(Clone)]
pub(crate) struct LockAnchor {
    slot: NonNull<LockSlot>,
    fault: sys::FaultFlag,
    segment: Arc<Segment>,
}

// SAFETY: the pointer stands for a `&LockSlot` borrowed from `segment` (see the module docs),
// and `LockSlot` is `Sync` (atomics only): a shared reference to it may go to, and be used
// from, any thread, as the `Arc<Segment>` beside it may.
unsafe impl Send for LockAnchor {}
// SAFETY: as for `Send`: shared access only ever hands out `&LockSlot`.
unsafe impl Sync for LockAnchor {}

impl LockAnchor {
    /// The anchor of `segment`'s lock.
    pub(crate) fn new(segment: Arc<Segment>) -> Self {
        LockAnchor {
            slot: NonNull::from(segment.lock_slot()),
            fault: segment.mapping().fault_flag(),
            segment,
        }
    }

    /// The segment, shared.
    pub(crate) fn shared(&self) -> &Arc<Segment> {
        &self.segment
    }
}

impl LockSite for LockAnchor {
    #[inline]
    fn segment(&self) -> &Segment {
        &self.segment
    }

    #[inline]
    fn slot(&self) -> &LockSlot {
        // SAFETY: valid and aligned while `self` lives (see the module docs); a `LockSlot` is
        // `ShmSafe`, so a shared reference to it is sound while other processes write it.
        unsafe { self.slot.as_ref() }
    }

    /// Whether the lock's own page is still the segment's: a page lost to a shrunk file reads
    /// as zeros, and the slot's `home_namespace`, in the lock word's cache line, is never 0
    /// unless this machine's namespaces are unknown (no `/proc`), where every lock then asks
    /// the mapping. A `Lock` holds no data, so a page lost elsewhere leaves it a lock that
    /// excludes as it should. A word of the lock's own cache line costs nothing after its
    /// atomic operation; the mapping's fault word, in another line, took the model's lock and
    /// unlock from 11 ns to 12.9 ns (see BENCHMARKS.md, "Seventh pass").
    #[inline]
    fn is_intact(&self) -> bool {
        self.slot().home_is_known() || !self.fault.is_set()
    }
}
