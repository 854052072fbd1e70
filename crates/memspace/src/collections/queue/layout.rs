//! The queue's words in a segment, and the validated reads of them that the shared-memory
//! engine (`shm.rs`) and the check (`verify.rs`) share.
//!
//! # Layout
//!
//! ```text
//! kind area:  ring       offset of the current ring (0: none yet)         committed
//!             head, end  sequence numbers: entries [head, end) are live    committed
//!             capacity   0: unbounded                                      fixed at creation
//!             waiting    items ready to be received                        derived
//!             unacked    items put and not acknowledged (ready or taken)   derived
//!             hint       no ready entry lies in [head, hint)               derived
//!             changes    odd while a holder of the lock changes the queue  (for `verify`)
//!             items      futex word, bumped when an item becomes ready
//!             space      futex word, bumped when an item is acknowledged
//!             receivers, senders   how many threads sleep on `items` / `space` (senders
//!                        and joiners); zeroed by the waker that wakes them
//!             closed     0 open, 1 closed, 2 closed immediately            committed
//! ring:       [u64 slots][u64 bytes][16 reserved][slots entries][bytes of records]
//! entry:      [u64 record][u32 state][u32 deliveries][u32 taker pid][u32][u64 taker start]
//! record:     [u32 length][u32 CRC-32C][payload][padding to 8]  (record.rs)
//! ```
//!
//! Entry `seq` lives in slot `seq % slots`; `state` is 1 ready, 2 taken, 3 acknowledged. The
//! records of entries `head..end` lie one after the other in the ring's byte area, wrapping
//! around at its end: a new record goes after the last one, or at the start of the area if it
//! fits before the record of `head`.
//!
//! Everything read here may have been written by a process that died half-way, or by one
//! that means harm: each offset is checked against the segment's committed size before it is
//! followed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::collections::record;
use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::shm_safe::ShmSafe;
use crate::sync::RawGuard;

/// The most slots a ring can have.
pub(super) const MAX_SLOTS: u64 = 1 << 40;
/// Bytes before a ring's entries: `slots`, `bytes` and two reserved words.
pub(super) const RING_HEADER: u64 = 32;
pub(super) const RING_ALIGN: u64 = 64;
pub(super) const ENTRY_SIZE: u64 = 32;

pub(super) const READY: u32 = 1;
pub(super) const TAKEN: u32 = 2;
pub(super) const DONE: u32 = 3;

/// `closed`: puts and receives go on.
pub(super) const OPEN: u32 = 0;
/// `closed`: puts fail; receives fail once nothing is left unacknowledged.
pub(super) const CLOSED: u32 = 1;
/// `closed`: puts and receives fail; the ready items were discarded, and so is an item put
/// back or left behind by a dead receiver.
pub(super) const CLOSED_NOW: u32 = 2;

/// The queue's words in the segment's kind area (see the module docs).
#[repr(C)]
pub(super) struct QueueArea {
    pub(super) ring: AtomicU64,
    pub(super) head: AtomicU64,
    pub(super) end: AtomicU64,
    pub(super) capacity: AtomicU64,
    pub(super) waiting: AtomicU64,
    pub(super) unacked: AtomicU64,
    pub(super) hint: AtomicU64,
    pub(super) changes: AtomicU64,
    pub(super) items: AtomicU32,
    pub(super) space: AtomicU32,
    pub(super) receivers: AtomicU32,
    pub(super) senders: AtomicU32,
    /// [`OPEN`], [`CLOSED`] or [`CLOSED_NOW`]. Zero in a segment made before queues could be
    /// closed, where the word was unused and zero-filled: such a queue reads as open.
    pub(super) closed: AtomicU32,
    pub(super) reserved: AtomicU32,
}

/// One slot of a ring (see the module docs).
#[repr(C)]
pub(super) struct Entry {
    pub(super) record: AtomicU64,
    pub(super) state: AtomicU32,
    pub(super) deliveries: AtomicU32,
    pub(super) taker_pid: AtomicU32,
    pub(super) reserved: AtomicU32,
    pub(super) taker_start: AtomicU64,
}

const _: () = assert!(size_of::<Entry>() == ENTRY_SIZE as usize);
const _: () = assert!(size_of::<QueueArea>() == 88);

// SAFETY: `#[repr(C)]` with only fixed-width atomics, so its layout is the same in every
// process (pinned by the size assertion above), every bit pattern is a value, all mutation is
// atomic, and it needs no `Drop`; the ring is named by an offset, not a pointer.
#[allow(unsafe_code)]
unsafe impl ShmSafe for QueueArea {}
// SAFETY: as for `QueueArea`: `#[repr(C)]`, fixed-width atomics only, its record an offset.
#[allow(unsafe_code)]
unsafe impl ShmSafe for Entry {}

/// A ring read from the segment and validated: its slots and record bytes lie inside the
/// committed, mapped size.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ring {
    pub(super) at: u64,
    pub(super) slots: u64,
    /// The record area is `[lo, hi)`.
    pub(super) lo: u64,
    pub(super) hi: u64,
}

impl Ring {
    pub(super) fn entry_offset(self, seq: u64) -> u64 {
        // Cannot overflow: `lo` (past the last slot) was computed with checked arithmetic.
        self.at + RING_HEADER + (seq & (self.slots - 1)) * ENTRY_SIZE
    }

    pub(super) fn bytes(self) -> u64 {
        self.hi - self.lo
    }
}

/// The queue in one segment, read through the checks of this module; the engine's operations
/// on it are in `shm.rs`.
#[derive(Clone, Copy)]
pub(super) struct Raw<'a> {
    pub(super) segment: &'a Segment,
}

impl<'a> Raw<'a> {
    pub(super) fn area(self) -> &'a QueueArea {
        self.segment.kind_area::<QueueArea>()
    }

    pub(super) fn corrupt(self, what: String) -> Error {
        self.segment.corrupt(what)
    }

    /// A word of the segment's data area at `at` (8-aligned, mapped).
    pub(super) fn word(self, at: u64) -> Result<&'a AtomicU64> {
        self.segment
            .data_range(|| "a ring's word".to_owned(), at, 8, 8)?;
        self.segment
            .mapping()
            .get::<AtomicU64>(at)
            .ok_or_else(|| self.corrupt(format!("word at {at} is not mapped or not aligned")))
    }

    /// The current ring, validated, or `None` before the first put.
    pub(super) fn ring(self) -> Result<Option<Ring>> {
        let at = self.area().ring.load(Ordering::Acquire);
        if at == 0 {
            return Ok(None);
        }
        let segment = self.segment;
        segment.data_range(
            || "the queue's ring".to_owned(),
            at,
            RING_HEADER,
            RING_ALIGN,
        )?;
        let slots = self.word(at)?.load(Ordering::Relaxed);
        let bytes = self.word(at + 8)?.load(Ordering::Relaxed);
        if !slots.is_power_of_two() || slots > MAX_SLOTS || !bytes.is_multiple_of(8) || bytes == 0 {
            return Err(self.corrupt(format!(
                "the ring at {at} claims {slots} slots and {bytes} record bytes"
            )));
        }
        // `slots <= 2^40` and `at` is inside the committed size: no overflow.
        let lo = at + RING_HEADER + slots * ENTRY_SIZE;
        let hi = segment.data_range(
            || format!("the record area of the ring at {at}"),
            lo,
            bytes,
            8,
        )?;
        Ok(Some(Ring { at, slots, lo, hi }))
    }

    /// [`Raw::ring`] for a holder of the lock: a ring this handle checked before is taken
    /// from its [`Memo`](crate::segment::Memo) (the ring's offset, slots, and record area)
    /// instead of being checked again. Rings are never rebuilt in
    /// place (a larger one goes past the current one), so an offset names one ring for good.
    pub(super) fn ring_held(self, _held: &RawGuard<'_>) -> Result<Option<Ring>> {
        let at = self.area().ring.load(Ordering::Acquire);
        let [known, slots, lo, hi] = self.segment.memo().words();
        if at != 0 && known.load(Ordering::Relaxed) == at {
            return Ok(Some(Ring {
                at,
                slots: slots.load(Ordering::Relaxed),
                lo: lo.load(Ordering::Relaxed),
                hi: hi.load(Ordering::Relaxed),
            }));
        }
        let ring = self.ring()?;
        if let Some(ring) = ring {
            slots.store(ring.slots, Ordering::Relaxed);
            lo.store(ring.lo, Ordering::Relaxed);
            hi.store(ring.hi, Ordering::Relaxed);
            known.store(ring.at, Ordering::Relaxed);
        }
        Ok(ring)
    }

    #[inline]
    pub(super) fn entry(self, ring: Ring, seq: u64) -> Result<&'a Entry> {
        let at = ring.entry_offset(seq);
        match self.segment.mapping().get::<Entry>(at) {
            Some(entry) => Ok(entry),
            None => Err(self.unmapped_entry(seq, at)),
        }
    }

    #[cold]
    fn unmapped_entry(self, seq: u64, at: u64) -> Error {
        self.corrupt(format!("entry {seq} at {at} is not mapped"))
    }

    /// `head` and `end`, checked against each other and the ring. Inline, its error out of
    /// line: every put and receive reads it, some twice.
    #[inline]
    pub(super) fn window(self, ring: Option<Ring>) -> Result<(u64, u64)> {
        let area = self.area();
        let (head, end) = (
            area.head.load(Ordering::Relaxed),
            area.end.load(Ordering::Relaxed),
        );
        let slots = ring.map_or(0, |r| r.slots);
        // `end + 1` is the next sequence number: it must exist.
        match end.checked_sub(head) {
            Some(live) if live <= slots && end < u64::MAX => Ok((head, end)),
            _ => Err(self.bad_window(head, end, slots)),
        }
    }

    #[cold]
    fn bad_window(self, head: u64, end: u64, slots: u64) -> Error {
        self.corrupt(format!(
            "entries {head}..{end} do not fit the ring's {slots} slots"
        ))
    }

    /// The offset just past the record at `record`, which must lie inside the ring's record
    /// area.
    pub(super) fn record_end(self, ring: Ring, record: u64) -> Result<u64> {
        self.starts_in_ring(ring, record)?;
        let end = record::end(self.segment, record)?;
        self.ends_in_ring(ring, record, end)
    }

    /// Checks that a record offset lies inside the ring's record area, 8-aligned.
    #[inline]
    pub(super) fn starts_in_ring(self, ring: Ring, record: u64) -> Result<()> {
        // The bounds as plain values: the error, out of line, takes no copy of the ring.
        let Ring { lo, hi, .. } = ring;
        if record < lo || record >= hi || !record.is_multiple_of(8) {
            return Err(self.outside_ring(record, lo, hi));
        }
        Ok(())
    }

    #[cold]
    fn outside_ring(self, record: u64, lo: u64, hi: u64) -> Error {
        self.corrupt(format!(
            "a record offset {record} lies outside the ring's records {lo}..{hi}"
        ))
    }

    /// Checks that the record at `record`, which ends at `end`, does not run past the ring's
    /// record area; returns `end`.
    pub(super) fn ends_in_ring(self, ring: Ring, record: u64, end: u64) -> Result<u64> {
        if end > ring.hi {
            return Err(self.past_ring_end(ring, record));
        }
        Ok(end)
    }

    /// The damage of a record that runs past the ring's record area.
    #[cold]
    pub(super) fn past_ring_end(self, ring: Ring, record: u64) -> Error {
        self.corrupt(format!(
            "the record at {record} runs past the ring's end {}",
            ring.hi
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_slot_is_its_sequence_number_modulo_the_slots() {
        let ring = Ring {
            at: 4096,
            slots: 64,
            lo: 4096 + RING_HEADER + 64 * ENTRY_SIZE,
            hi: 4096 + RING_HEADER + 64 * ENTRY_SIZE + 1024,
        };
        assert_eq!(ring.entry_offset(0), 4096 + RING_HEADER);
        assert_eq!(ring.entry_offset(64), 4096 + RING_HEADER);
        assert_eq!(ring.entry_offset(65), 4096 + RING_HEADER + ENTRY_SIZE);
        assert_eq!(ring.bytes(), 1024);
    }
}
