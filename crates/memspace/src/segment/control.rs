//! The control pages as typed views: the header, the two lock slots, the table of users, the
//! metadata block and the kind area, each at its fixed offset (see `header.rs`).

use std::sync::atomic::Ordering;

use super::LockSlot;
use super::Segment;
use super::header::{
    Header, KIND_OFFSET, KIND_SIZE, LOCK_OFFSET, META_OFFSET, SECOND_LOCK_OFFSET, TYPE_NAME_OFFSET,
    TypeName, USERS_OFFSET,
};
use super::mapping::Mapping;
use super::users::{Meta, Users};
use crate::shm_safe::ShmSafe;
use crate::sys;

impl Segment {
    /// The `T` at `OFFSET` in the control pages, which are mapped for the segment's lifetime
    /// (each offset is a constant of `header.rs`, aligned for its type: checked at compile
    /// time).
    #[inline]
    fn control<T: ShmSafe, const OFFSET: u64>(&self) -> &T {
        self.map.control::<T, OFFSET>()
    }

    /// The header (magic, version, kind, sizes, creator).
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        self.control::<_, 0>()
    }

    /// The table of processes attached to the segment.
    pub(super) fn users_table(&self) -> &Users {
        self.control::<_, USERS_OFFSET>()
    }

    /// The metadata block (boot id, untracked users).
    pub(super) fn meta(&self) -> &Meta {
        self.control::<_, META_OFFSET>()
    }

    /// The slot of the segment's lock.
    #[inline]
    pub(crate) fn lock_slot(&self) -> &LockSlot {
        self.control::<_, LOCK_OFFSET>()
    }

    /// The second lock slot (see `header.rs`): a queue's receivers take it. Initialised and
    /// reset with the segment's own, in every segment; unused by most kinds.
    #[inline]
    pub(crate) fn second_lock_slot(&self) -> &LockSlot {
        self.control::<_, SECOND_LOCK_OFFSET>()
    }

    /// Both lock slots: the segment's and the second one.
    pub(super) fn lock_slots(&self) -> [&LockSlot; 2] {
        [self.lock_slot(), self.second_lock_slot()]
    }

    /// Records this process's namespaces in both lock slots, before it can lock either (see
    /// `LockSlot::note_user_namespace`).
    pub(super) fn note_user_namespace(&self) {
        let namespaces = sys::this_thread().namespaces;
        for slot in self.lock_slots() {
            slot.note_user_namespace(namespaces);
        }
    }

    /// The kind-specific control words at [`KIND_OFFSET`], up to the second lock slot.
    #[inline]
    pub(crate) fn kind_area<T: ShmSafe>(&self) -> &T {
        const { assert!(size_of::<T>() <= KIND_SIZE as usize) };
        self.control::<_, KIND_OFFSET>()
    }

    /// The block that records the item type's name.
    pub(super) fn type_name_block(&self) -> &TypeName {
        self.control::<_, TYPE_NAME_OFFSET>()
    }

    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }

    /// Records this process as the segment's last writer. The word is written only when it
    /// changes: writers that alternate take turns at a cache line anyway, but a run of writes
    /// from one process should not pull the header's line away from readers.
    #[inline]
    pub(crate) fn note_writer(&self) {
        let pid = sys::pid();
        let last = &self.header().last_writer_pid;
        if last.load(Ordering::Relaxed) != pid {
            last.store(pid, Ordering::Relaxed);
        }
    }
}
