//! The shared-memory engine of a [`SharedValue`](super::SharedValue): the current value as one
//! checksummed record, replaced by writing the new one beside it and switching one offset.
//!
//! # Layout
//!
//! ```text
//! kind area:  current   offset of the record holding the value (under the lock)
//! data area:  at most two records: the current one, and the one a writer is writing
//! ```
//!
//! # Replace: write beside, then switch
//!
//! Under the segment's lock a writer places the new record where it overlaps nothing the
//! current offset reaches: at the start of the data area if it fits before the current record,
//! else just past the current record (growing the segment as needed). It writes the record,
//! then stores its offset in `current` with one release store. A writer killed before that
//! store left bytes nobody points to, which the next writer overwrites; one killed after it
//! finished. Either way the value is the old one or the new one, and the next locker has
//! nothing to repair. A new record goes past the current one only when it does not fit
//! before it, that is while the current one starts less than a largest value into the data
//! area: so nothing reaches past three largest values, and the segment (which grows ahead to
//! about twice what its writers reach, and never shrinks) stays under about six.
//!
//! Readers take the lock too, `inspect`'s check included: a record is overwritten once it
//! stops being current, so a reader without the lock could read one half replaced.
//!
//! # Safety
//!
//! The one `unsafe` operation is `record::write`, whose contract (nothing in this process
//! reads the range) holds because readers and writers both hold the segment's lock, and the
//! range written never overlaps the current record.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use crate::collections::record;
use crate::error::Result;
use crate::segment::{DATA_START, Segment};
use crate::shm_safe::ShmSafe;
use crate::sync::{LockError, RawGuard, TryLockError, acquire, lock_and_repair};
use crate::sys::Wait;

/// How long `verify` waits for the lock before it gives up checking.
const VERIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

#[repr(C)]
struct ValueArea {
    current: AtomicU64,
}

// SAFETY: `#[repr(C)]`, one atomic: any bits are valid (an offset is checked before it is
// followed), every change is atomic, nothing to drop.
unsafe impl ShmSafe for ValueArea {}

/// The value's machinery, independent of its type.
#[derive(Clone, Copy)]
pub(super) struct Raw<'a> {
    segment: &'a Segment,
}

impl<'a> Raw<'a> {
    pub(super) fn new(segment: &'a Segment) -> Self {
        Raw { segment }
    }

    fn current(self) -> &'a AtomicU64 {
        &self.segment.kind_area::<ValueArea>().current
    }

    /// Takes the lock: a writer that died left nothing to repair (see the module's docs).
    pub(super) fn lock(self) -> Result<RawGuard<'a>> {
        lock_and_repair(self.segment, |_| Ok(()))
    }

    /// Gives a new segment its first value.
    pub(super) fn init(self, payload: &[u8]) -> Result<()> {
        // The segment is not published yet: no other process holds or waits for its lock.
        let held = self.lock()?;
        self.write(&held, payload)
    }

    /// The encoded value (the caller holds the lock).
    pub(super) fn read(self, _held: &RawGuard<'_>) -> Result<Vec<u8>> {
        record::read(self.segment, self.current().load(Ordering::Acquire))
    }

    /// Replaces the value with `payload` (the caller holds the lock).
    pub(super) fn write(self, held: &RawGuard<'_>, payload: &[u8]) -> Result<()> {
        let segment = self.segment;
        let current = self.current().load(Ordering::Acquire);
        let needed = record::HEADER + payload.len() as u64;
        // A fresh segment has no current record: its offset reads 0, below the data area.
        let at = if current < DATA_START || DATA_START + needed <= current {
            DATA_START
        } else {
            record::end(segment, current)?
        };
        // SAFETY: we hold the lock (so does every reader), and `[at, at + needed)` lies before
        // the current record or past its end (module `# Safety`).
        let (written, _) = unsafe { record::write(segment, held, at, payload)? };
        crate::failpoint::hit("shared_value.written");
        self.current().store(written, Ordering::Release);
        segment.note_writer();
        Ok(())
    }
}

/// Checks that the current record lies in the segment and its checksum holds, holding the
/// lock (a record stops being current before it is overwritten). It repairs nothing: a lock
/// taken from a dead holder is released as it was found, for the next writer to take over.
pub(crate) fn verify(segment: &Segment, report: &mut crate::segment::Report) {
    let check = |report: &mut crate::segment::Report| {
        let at = Raw::new(segment).current().load(Ordering::Acquire);
        match record::read(segment, at) {
            Ok(_) => report.items_checked += 1,
            Err(err) => report.problem(format!("the value's record at {at}: {err}")),
        }
    };
    match acquire(segment, Wait::For(VERIFY_WAIT), |raw, _| raw) {
        Ok(held) => {
            check(report);
            drop(held);
        }
        Err(TryLockError::Lock(LockError::OwnerDied(held) | LockError::Poisoned(held))) => {
            check(report);
            held.unlock_unrepaired();
        }
        Err(err) => report.note(format!("the value's record was not checked: {err}")),
    }
}
