//! The queue's words in a segment, and the validated reads of them that the shared-memory
//! engine (`shm.rs`) and the check (`verify.rs`) share.
//!
//! # Layout
//!
//! ```text
//! kind area, first line: read by both sides, written under both locks
//!   ring          offset of the current ring (0: none yet)                committed
//!   capacity      0: unbounded                                             fixed at creation
//!   closed        0 open, 1 closed, 2 closed immediately                   committed
//!   (40 bytes of padding)
//! second line: the senders', written under the segment's lock
//!   end           sequence number after the last item put                 committed
//!   items         futex word: bumped when an item becomes ready (low half), and how many
//!                 receivers sleep on it (high half)
//!   sender_head   the senders' copy of `head`: no later than `head`       derived
//!   sender_first  where the record of entry `sender_head` starts           derived
//!   sender_tail   where the record of entry `end - 1` ends                 derived
//!   sender_acked  the senders' copy of `acked`: no later than `acked`     derived
//!   (16 bytes of padding)
//! third line: the receivers', written under the receive lock
//!   head          entries [head, end) are live                             committed
//!   acked         head + the acknowledged entries after it                 derived
//!   settled       head + the entries after it that are not ready           derived
//!   hint          no ready entry lies in [head, hint)                      derived
//!   changes       odd while a holder of the receive lock changes the queue (for `verify`)
//!   space         futex word: bumped when an item is acknowledged (low half), and how
//!                 many senders and joiners sleep on it (high half)
//!   receiver_end  the receivers' copy of `end`: no later than `end`        derived
//!   sole_taker    the process that holds every item in flight (a taker      derived
//!                 mark), if one does; 0: none known
//! ring:       [u64 slots][u64 bytes][16 reserved][slots entries][bytes of records]
//! entry:      [u64 record][u32 state][u32 deliveries][u32 taker pid][u32][u64 taker start]
//! record:     [u32 length][u32 CRC-32C][payload][padding to 8]  (record.rs)
//! ```
//!
//! Ready items number `end - settled`, unacknowledged ones `end - acked`. Each side writes
//! its own line, except the futex words, which the other side's wakers bump and its own
//! sleepers count themselves in (a close, under both locks, bumps both). A side reads the
//! other's line only when its copy (`sender_head`, `receiver_end`, ...) runs out, so that the
//! line one side writes at every item is not pulled away from its processor by the other's.
//!
//! `sole_taker` lets a receiver it names skip the look for items of dead takers, a walk past
//! every item in flight. A receiver stores it before the commit of its first take in flight
//! under the receive lock: its mark if nothing is in flight or the word names it already, 0
//! otherwise (a dead taker's item, which it may take again, is in flight and not its own). So
//! whenever it is not 0, every entry in flight carries that mark, whatever instruction a
//! receiver died at; a receiver that holds every item in flight while the word is 0 stays
//! unnamed until nothing is in flight or a recovery recounts. A taker mark ([`taker_mark`]) is
//! the pid in the low half and the low 32 bits of the start time in the high half: a process
//! whose pid and start time both repeat a dead taker's modulo 2^32 clock ticks (497 days at
//! 100 Hz) is not told apart from it.
//!
//! Entry `seq` lives in slot `seq % slots`; `state` is 1 ready, 2 taken, 3 acknowledged. The
//! records of entries `head..end` lie one after the other in the ring's byte area, wrapping
//! around at its end: a new record goes after the last one, or at the start of the area if it
//! fits before the record of `head`.
//!
//! Everything read here may have been written by a process that died half-way, or by one
//! that means harm: each offset is checked against the segment's committed size before it is
//! followed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::collections::record;
use crate::error::{Error, Result};
use crate::segment::{InSegment, LockSite, LockSlot, Segment};
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

/// The queue's words in the segment's kind area (see the module docs): a line both sides
/// read, a line the senders write and a line the receivers write.
#[repr(C, align(64))]
pub(super) struct QueueArea {
    pub(super) ring: AtomicU64,
    pub(super) capacity: AtomicU64,
    /// [`OPEN`], [`CLOSED`] or [`CLOSED_NOW`].
    pub(super) closed: AtomicU32,
    reserved: AtomicU32,
    padding_0: [AtomicU64; 5],
    pub(super) end: AtomicU64,
    pub(super) items: AtomicU64,
    pub(super) sender_head: AtomicU64,
    pub(super) sender_first: AtomicU64,
    pub(super) sender_tail: AtomicU64,
    pub(super) sender_acked: AtomicU64,
    padding_1: [AtomicU64; 2],
    pub(super) head: AtomicU64,
    pub(super) acked: AtomicU64,
    pub(super) settled: AtomicU64,
    pub(super) hint: AtomicU64,
    pub(super) changes: AtomicU64,
    pub(super) space: AtomicU64,
    pub(super) receiver_end: AtomicU64,
    pub(super) sole_taker: AtomicU64,
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

/// The mark of the taker with `pid` and start time `start`, as `sole_taker` holds it (see the
/// module docs): never 0, since no taker has pid 0.
#[inline]
pub(super) fn taker_mark(pid: u32, start: u64) -> u64 {
    (start << 32) | u64::from(pid)
}

/// The pid in a taker mark ([`taker_mark`]).
#[allow(
    clippy::cast_possible_truncation,
    reason = "the mark's low half is the pid"
)]
#[inline]
pub(super) fn mark_pid(mark: u64) -> u32 {
    mark as u32
}

impl Entry {
    /// The mark of the process recorded as this entry's taker ([`taker_mark`]).
    #[inline]
    pub(super) fn taker_mark(&self) -> u64 {
        taker_mark(
            self.taker_pid.load(Ordering::Relaxed),
            self.taker_start.load(Ordering::Relaxed),
        )
    }
}

const _: () = assert!(size_of::<Entry>() == ENTRY_SIZE as usize);
const _: () = assert!(size_of::<QueueArea>() == 192);
const _: () = assert!(std::mem::offset_of!(QueueArea, end) == 64);
const _: () = assert!(std::mem::offset_of!(QueueArea, head) == 128);

// SAFETY: `#[repr(C, align(64))]` with only fixed-width atomics, so its layout is the same in
// every process (pinned by the size and offset assertions above), every bit pattern is a value,
// all mutation is atomic, and it needs no `Drop`; the ring is named by an offset, not a pointer.
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

/// Receivers take the segment's second lock (see `segment/header.rs`) through the queue's
/// view of its segment; senders take the segment's own through the segment.
impl InSegment for Raw<'_> {
    #[inline]
    fn segment(&self) -> &Segment {
        self.segment
    }
}

impl LockSite for Raw<'_> {
    #[inline]
    fn slot(&self) -> &LockSlot {
        self.segment.second_lock_slot()
    }

    /// As for the segment's lock: it guards data elsewhere in the segment.
    #[inline]
    fn is_intact(&self) -> bool {
        self.segment.is_intact()
    }
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

    /// [`Raw::ring`] for a holder of either lock: a ring this handle checked before is taken
    /// from its [`Memo`](crate::segment::Memo) (a version, the ring's offset, its slots and
    /// its record bytes) instead of being checked again. Rings are never rebuilt in place (a
    /// larger one goes past the current one), so an offset names one ring for good.
    ///
    /// A sender and a receiver of one handle may write the memo at once, each under its own
    /// lock, for two different rings: the memo is a sequence lock. A writer makes the version
    /// odd with a compare-and-swap (a writer that loses leaves the memo to the winner), and a
    /// reader trusts the words only if the version was even and unchanged around its loads.
    pub(super) fn ring_held(self, _held: &RawGuard<'_>) -> Result<Option<Ring>> {
        let at = self.area().ring.load(Ordering::Acquire);
        let [version, known, slots, bytes] = self.segment.memo().words();
        let seen = version.load(Ordering::Acquire);
        if at != 0 && seen.is_multiple_of(2) && known.load(Ordering::Relaxed) == at {
            let (slots, bytes) = (slots.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if version.load(Ordering::Relaxed) == seen {
                // As `Raw::ring` computed them when it checked this ring: no overflow.
                let lo = at + RING_HEADER + slots * ENTRY_SIZE;
                let hi = lo + bytes;
                return Ok(Some(Ring { at, slots, lo, hi }));
            }
        }
        let ring = self.ring()?;
        if let Some(ring) = ring
            && seen.is_multiple_of(2)
            && version
                .compare_exchange(seen, seen + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            // The odd version is visible before any of the words.
            fence(Ordering::Release);
            known.store(ring.at, Ordering::Relaxed);
            slots.store(ring.slots, Ordering::Relaxed);
            bytes.store(ring.bytes(), Ordering::Relaxed);
            version.store(seen + 2, Ordering::Release);
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

    /// `head` and `end` as they are, checked against each other and the ring: for `verify`,
    /// the rare paths of the receivers (a close, a join, `to_vec`), and a receiver's refresh of
    /// its copy of `end` ([`Raw::refresh_receiver_end`]), whose entries and records it then
    /// reads (an Acquire load). Receivers' hot paths read [`Raw::receiver_window`] instead.
    #[inline]
    pub(super) fn window(self, ring: Option<Ring>) -> Result<(u64, u64)> {
        let area = self.area();
        let head = area.head.load(Ordering::Acquire);
        self.checked_window(ring, head, area.end.load(Ordering::Acquire))
    }

    /// The window as receivers see it, from their own line: `head` and `receiver_end`, their
    /// copy of `end` (see [`Raw::refresh_receiver_end`]), for a holder of the receive lock. A
    /// copy that does not fit `head` and the ring is damaged: `end` is read afresh.
    #[inline]
    pub(super) fn receiver_window(self, ring: Option<Ring>) -> Result<(u64, u64)> {
        let area = self.area();
        let head = area.head.load(Ordering::Relaxed);
        let end = area.receiver_end.load(Ordering::Relaxed);
        self.checked_window(ring, head, end)
            .or_else(|_| self.refresh_receiver_end(ring))
    }

    /// Reads `end` into `receiver_end` (a holder of the receive lock) and returns the window.
    pub(super) fn refresh_receiver_end(self, ring: Option<Ring>) -> Result<(u64, u64)> {
        let window = self.window(ring)?;
        self.area().receiver_end.store(window.1, Ordering::Relaxed);
        Ok(window)
    }

    /// `(head, end)` checked against each other and the ring. Inline, its error out of line:
    /// every put and receive reads it, some twice.
    #[inline]
    pub(super) fn checked_window(
        self,
        ring: Option<Ring>,
        head: u64,
        end: u64,
    ) -> Result<(u64, u64)> {
        let slots = ring.map_or(0, |r| r.slots);
        // `end + 1` is the next sequence number: it must exist.
        match end.checked_sub(head) {
            Some(live) if live <= slots && end < u64::MAX => Ok((head, end)),
            _ => Err(self.bad_window(head, end, slots)),
        }
    }

    /// The `closed` word, checked: [`OPEN`], [`CLOSED`] or [`CLOSED_NOW`].
    pub(super) fn closed_state(self) -> Result<u32> {
        match self.area().closed.load(Ordering::Relaxed) {
            state @ (OPEN | CLOSED | CLOSED_NOW) => Ok(state),
            other => Err(self.corrupt(format!(
                "its closed word is {other}, neither open (0), closed (1) nor closed immediately \
                 (2)"
            ))),
        }
    }

    /// Items ready to be received: `end - settled`. A holder of the receive lock reads
    /// `settled` exact, but `end` may move on under the senders' lock meanwhile.
    #[inline]
    pub(super) fn ready(self) -> u64 {
        let area = self.area();
        // `settled` first: it never passes the `end` of its time, so a later `end` is no less.
        let settled = area.settled.load(Ordering::Acquire);
        area.end.load(Ordering::Acquire).saturating_sub(settled)
    }

    /// Items in flight: `settled - acked`, the receivers' words alone (exact under the
    /// receive lock).
    #[inline]
    pub(super) fn in_flight(self) -> u64 {
        let area = self.area();
        let acked = area.acked.load(Ordering::Acquire);
        area.settled.load(Ordering::Acquire).saturating_sub(acked)
    }

    /// Items put and not acknowledged: `end - acked`, as [`Raw::ready`].
    #[inline]
    pub(super) fn unacknowledged(self) -> u64 {
        let area = self.area();
        let acked = area.acked.load(Ordering::Acquire);
        area.end.load(Ordering::Acquire).saturating_sub(acked)
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
