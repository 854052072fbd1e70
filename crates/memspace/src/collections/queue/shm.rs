//! The shared-memory engine of [`Queue`](super::Queue): the ring of `layout.rs`, changed under
//! the segment's robust lock, and the futexes that blocked callers sleep on.
//!
//! # Protocol: one store commits each change
//!
//! Every operation holds the segment's robust lock, and each change is committed by one
//! atomic store:
//!
//! * **put** writes its record into free ring space and its entry into the free slot `end`,
//!   then stores `end + 1`;
//! * **receive** stores `taken` into the entry's state (after writing the taker and counting
//!   the delivery), **ack** stores `acknowledged`, a dropped delivery stores `ready` again;
//! * `head` then moves past acknowledged entries (each position it can stop at is consistent),
//!   freeing their slots and their record space for reuse;
//! * when the ring has no free slot or no room for the record, a put builds a larger ring past
//!   the current one, copies the live entries and records into it, and stores its offset into
//!   `ring`.
//!
//! # Recovery
//!
//! A process killed before a commit leaves garbage in free space, which nothing points to; one
//! killed after leaves only the derived words stale. The next locker is told that the owner
//! died ([`LockError::OwnerDied`](crate::sync::LockError::OwnerDied)), recounts `waiting` and
//! `unacked` from the entries, resets `hint` to `head`, checks every live record's bounds,
//! wakes every sleeper of both futex words (a holder killed as it woke them may have uncounted
//! them first: see "Space and blocking"), and marks the lock consistent. Items taken by a dead
//! process are not a lock matter: they stay taken until a receiver finds their taker dead (pid
//! gone, or reused by a process with another start time) and delivers them again.
//!
//! # Closing and joining
//!
//! `closed` is committed by one store under the lock; an immediate close then marks the ready
//! entries acknowledged (each a commit of its own, as an `ack`), so a close killed half-way
//! leaves a closed queue with some ready items left, which receivers do not take and the next
//! joiner discards. A joiner sleeps on `space` with the senders, since only an
//! acknowledgement can end its wait; a close bumps and wakes both futex words.
//!
//! # Space and blocking
//!
//! See [`Queue`](super::Queue). Outgrown rings are never reused, so `verify`, which reads
//! without the lock, never finds a ring it loaded rewritten under it as another ring. Sleepers
//! read the futex word under the lock and sleep only while it is unchanged, so a wake-up
//! between unlocking and sleeping is not lost; `receivers` and `senders` let a put or an ack
//! skip the wake-up system call when nobody sleeps. Both counts change under the lock only: a
//! sleeper counts itself before it unlocks, and a waker that finds a count sets it to zero and
//! wakes every sleeper of the word, still under the lock. So the puts that follow a wake-up,
//! before the woken receiver has run (tens of microseconds when the processors are busy), make
//! no system call. A waker killed between the two leaves the lock to a recovery that wakes
//! every sleeper. A sleeper that wakes otherwise (its timeout), or is killed, leaves its count
//! behind, which costs one needless wake-up, never a lost one.
//!
//! # Safety
//!
//! The one `unsafe` operation is `record::write`, whose contract is that no published offset
//! points into the bytes written. It is called under the lock, in two places: in `Raw::put`,
//! at a position `free_position` found in the ring's free space (outside the records of the
//! live entries `head..end`, the only ones anybody follows); and in `Raw::grow`, in a new ring
//! past the end of the current one, which no offset points into until `ring` is stored.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::QueueError;
use super::layout::{
    CLOSED, CLOSED_NOW, DONE, ENTRY_SIZE, Entry, MAX_SLOTS, OPEN, READY, RING_ALIGN, RING_HEADER,
    Raw, Ring, TAKEN,
};
use crate::collections::changes::{Change, count_down, count_up};
use crate::collections::wait::{Next, deadline, next_sleep, spin_while};
use crate::collections::{codec, record};
use crate::error::{Error, Result};
use crate::segment::{self, DATA_START};
use crate::sync::{RawGuard, lock_and_repair};
use crate::sys;

/// Slots of the first ring; each larger ring doubles them.
const INITIAL_SLOTS: u64 = 64;
/// Record bytes of the first ring.
const INITIAL_BYTES: u64 = 8 << 10;
/// How often a waiting receiver looks for items taken by processes that died meanwhile.
pub(super) const REDELIVERY_CHECK: Duration = Duration::from_millis(50);
/// Every this many deliveries, a receiver looks for items of dead takers first even when other
/// items are ready (it always looks when none is).
const ORPHAN_SCAN_EVERY: u64 = 16;

/// This process's pid and start time, which identify it as a taker. The start time is read
/// from `/proc` once per process (a forked child sees another pid and reads its own).
fn me() -> (u32, u64) {
    static PID: AtomicU32 = AtomicU32::new(0);
    static START: AtomicU64 = AtomicU64::new(0);
    let pid = sys::pid();
    if PID.load(Ordering::Acquire) == pid {
        return (pid, START.load(Ordering::Relaxed));
    }
    let start = sys::process_start_time(pid).unwrap_or(0);
    START.store(start, Ordering::Relaxed);
    PID.store(pid, Ordering::Release);
    (pid, start)
}

/// An item taken in flight under the lock, with its payload.
pub(super) struct Taken {
    pub(super) seq: u64,
    pub(super) deliveries: u32,
    pub(super) payload: Vec<u8>,
}

thread_local! {
    /// The buffer a receive copies payloads into, kept between calls so that a receive
    /// allocates nothing (taken out while in use, so a nested call just allocates its own).
    static PAYLOAD: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// What one receive took under the lock.
#[derive(Default)]
pub(super) struct Received {
    /// Items accepted (decoded by the caller).
    pub(super) accepted: usize,
    /// Of those, acknowledged at once.
    pub(super) acked: usize,
    /// Of those, taken in flight: sequence number and deliveries, in the order taken.
    pub(super) taken: Vec<(u64, u32)>,
    /// The item refused (not decodable), taken in flight; it ended the batch.
    pub(super) refused: Option<Taken>,
}

/// Where a record of `need` bytes fits in `ring` whose live records start at `first` and end
/// at `tail` (8-aligned), if anywhere.
fn fit(ring: Ring, first: u64, tail: u64, need: u64) -> Option<u64> {
    if need > ring.bytes() {
        return None;
    }
    // Records of the live entries occupy `[first, tail)`, or `[first, hi)` and `[lo, tail)`
    // once they wrapped around.
    if first < tail {
        if tail + need <= ring.hi {
            Some(tail)
        } else if ring.lo + need <= first {
            Some(ring.lo)
        } else {
            None
        }
    } else if tail + need <= first {
        Some(tail)
    } else {
        None
    }
}

/// The offset just past the record at `record`, whose payload is `payload_len` bytes.
fn record_end(record: u64, payload_len: usize) -> u64 {
    record + record::size(payload_len)
}

impl<'a> Raw<'a> {
    /// [`QueueError::Closed`] for this queue.
    fn closed_error(self) -> QueueError {
        QueueError::Closed {
            name: self.segment.name().clone(),
        }
    }

    /// Appends `payloads` (one item each, committed together: all or none), sleeping while a
    /// bounded queue has no room for all of them; `false` once `timeout` has passed first (at
    /// once for a zero timeout), [`QueueError::Closed`] once the queue is closed.
    /// [`QueueError::Full`] at once if there are more payloads than the queue's capacity.
    pub(super) fn put_until(
        self,
        payloads: &[&[u8]],
        timeout: Option<Duration>,
    ) -> std::result::Result<bool, QueueError> {
        let area = self.area();
        let deadline = deadline(timeout);
        let count = payloads.len() as u64;
        let capacity = area.capacity.load(Ordering::Relaxed);
        if capacity != 0 && count > capacity {
            return Err(QueueError::Full {
                name: self.segment.name().clone(),
                capacity,
            });
        }
        let mut spun = false;
        loop {
            let guard = self.lock()?;
            if area.closed.load(Ordering::Relaxed) != OPEN {
                return Err(self.closed_error());
            }
            if capacity == 0 || area.unacked.load(Ordering::Relaxed) + count <= capacity {
                self.put(&guard, payloads)?;
                wake_and_unlock(guard, &area.items, &area.receivers);
                return Ok(true);
            }
            let Next::Sleep(sleep) = next_sleep(timeout, deadline, None) else {
                return Ok(false);
            };
            let Some(guard) = spin_before_sleep(&mut spun, guard, &area.space, deadline) else {
                continue;
            };
            sleep_on(guard, &area.space, &area.senders, sleep);
        }
    }

    /// Takes up to `max` items (at least one) under one lock (see [`Raw::take`]) into
    /// `received` (which starts empty), sleeping while none is ready; `false` once `timeout`
    /// has passed first (at once for a zero timeout). Each payload is offered to `accept`
    /// under the lock: an accepted item is acknowledged at once if `ack`, else taken in
    /// flight; the first refused one is taken in flight and ends the batch.
    /// [`QueueError::Closed`] at once if the queue was closed immediately, and once nothing is
    /// left unacknowledged if it was closed: until then an item in flight with another
    /// receiver may come back, put back or left by a receiver that died.
    pub(super) fn receive_until(
        self,
        timeout: Option<Duration>,
        max: usize,
        ack: bool,
        accept: &mut dyn FnMut(&[u8]) -> bool,
        received: &mut Received,
    ) -> std::result::Result<bool, QueueError> {
        debug_assert!(
            received.accepted == 0 && received.taken.is_empty() && received.refused.is_none(),
            "a receive starts with nothing received"
        );
        let area = self.area();
        let deadline = deadline(timeout);
        let mut spun = false;
        loop {
            if !spun && timeout != Some(Duration::ZERO) {
                // Nothing ready, by a look without the lock (derived words, so only a hint):
                // spin for a put before locking at all. A streaming receiver then takes the
                // lock once per item, not once to find nothing and once to take it.
                let seen = area.items.load(Ordering::Acquire);
                if area.waiting.load(Ordering::Relaxed) == 0
                    && area.closed.load(Ordering::Relaxed) == OPEN
                {
                    spun = true;
                    spin_while(&area.items, seen, deadline);
                }
            }
            let guard = self.lock()?;
            let closed = area.closed.load(Ordering::Relaxed);
            if closed == CLOSED_NOW {
                return Err(self.closed_error());
            }
            let change = Change::begin(&area.changes, &guard);
            let ring = self.ring_held(&guard)?;
            self.take(ring, max.max(1), ack, accept, received)?;
            let closed_now = received.acked > 0 && self.finish_acks(ring.as_ref());
            drop(change);
            if received.accepted > 0 || received.refused.is_some() {
                if received.acked > 0 {
                    self.wake_after_acks(guard, closed_now);
                }
                return Ok(true);
            }
            let unacked = area.unacked.load(Ordering::Relaxed);
            if closed != OPEN && unacked == 0 {
                return Err(self.closed_error());
            }
            // Items in flight come back if their taker dies, which wakes nobody: look again
            // now and then while there are any.
            let poll = (unacked > area.waiting.load(Ordering::Relaxed)).then_some(REDELIVERY_CHECK);
            let Next::Sleep(sleep) = next_sleep(timeout, deadline, poll) else {
                return Ok(false);
            };
            let Some(guard) = spin_before_sleep(&mut spun, guard, &area.items, deadline) else {
                continue;
            };
            sleep_on(guard, &area.items, &area.receivers, sleep);
        }
    }

    /// Waits until no item is left unacknowledged; `false` once `timeout` has passed first.
    /// After an immediate close, items in flight with processes that died are discarded
    /// meanwhile (no receiver would take them again), looking every `REDELIVERY_CHECK`.
    pub(super) fn join_until(self, timeout: Option<Duration>) -> Result<bool> {
        let area = self.area();
        let deadline = deadline(timeout);
        loop {
            let guard = self.lock()?;
            let poll = if area.closed.load(Ordering::Relaxed) == CLOSED_NOW {
                let _change = Change::begin(&area.changes, &guard);
                self.discard_ready()?;
                self.discard_orphans()?;
                Some(REDELIVERY_CHECK)
            } else {
                None
            };
            if area.unacked.load(Ordering::Relaxed) == 0 {
                return Ok(true);
            }
            let Next::Sleep(sleep) = next_sleep(timeout, deadline, poll) else {
                return Ok(false);
            };
            // An acknowledgement bumps `space`; joiners sleep there with the senders.
            sleep_on(guard, &area.space, &area.senders, sleep);
        }
    }

    /// Closes the queue (see [`CLOSED`] and [`CLOSED_NOW`]; an immediate close is not undone
    /// by a later plain one) and wakes every sleeper. An immediate close discards the ready
    /// items and those in flight with dead processes.
    pub(super) fn close(self, immediately: bool) -> Result<()> {
        let area = self.area();
        let guard = self.lock()?;
        let change = Change::begin(&area.changes, &guard);
        let state = if immediately { CLOSED_NOW } else { CLOSED };
        if area.closed.load(Ordering::Relaxed) != CLOSED_NOW {
            area.closed.store(state, Ordering::Release); // commit
        }
        crate::failpoint::hit("queue.closed");
        if immediately {
            self.discard_ready()?;
            self.discard_orphans()?;
        }
        area.items.fetch_add(1, Ordering::Release);
        area.space.fetch_add(1, Ordering::Release);
        drop(change);
        self.segment.note_writer();
        drop(guard);
        // Unconditionally: a sleeper counted in neither word must not be missed here.
        sys::futex_wake(&area.items, u32::MAX);
        sys::futex_wake(&area.space, u32::MAX);
        Ok(())
    }

    /// Whether the queue was closed: `Some(true)` immediately.
    pub(super) fn closed(self) -> Option<bool> {
        match self.area().closed.load(Ordering::Acquire) {
            OPEN => None,
            CLOSED => Some(false),
            _ => Some(true),
        }
    }

    /// Discards the ready items (an immediate close); the caller holds the lock, inside a
    /// change.
    fn discard_ready(self) -> Result<()> {
        let area = self.area();
        let Some(ring) = self.ring()? else {
            return Ok(());
        };
        let (head, end) = self.window(Some(ring))?;
        let mut discarded = 0;
        for seq in head..end {
            let entry = self.entry(ring, seq)?;
            if entry.state.load(Ordering::Relaxed) == READY {
                entry.state.store(DONE, Ordering::Release); // commit, as an `ack`
                discarded += 1;
            }
        }
        area.waiting.store(0, Ordering::Relaxed);
        count_down(&area.unacked, discarded);
        area.hint.store(end, Ordering::Relaxed);
        self.advance_head(ring, head, end)?;
        Ok(())
    }

    /// Discards the items in flight with processes that died (after an immediate close); the
    /// caller holds the lock, inside a change.
    fn discard_orphans(self) -> Result<()> {
        let area = self.area();
        let Some(ring) = self.ring()? else {
            return Ok(());
        };
        loop {
            let window = self.window(Some(ring))?;
            let Some(seq) = self.find_orphan(&ring, window)? else {
                return Ok(());
            };
            self.entry(ring, seq)?.state.store(DONE, Ordering::Release);
            count_down(&area.unacked, 1);
            self.advance_head(ring, window.0, window.1)?;
            area.space.fetch_add(1, Ordering::Release);
        }
    }

    /// Takes the segment's lock, repairing the queue's derived words if a holder died.
    fn lock(self) -> Result<RawGuard<'a>> {
        lock_and_repair(self.segment, |guard| self.recover(guard))
    }

    /// Recounts the derived words from the committed state (see the module docs), inside the
    /// change a dead holder left under way or a change of its own, so that `inspect`'s check
    /// without the lock never reads half-recounted words. A recount that fails leaves the
    /// change under way, for the next locker's.
    fn recover(self, guard: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let change = Change::recovering(&area.changes, guard);
        let recounted = self.recount();
        if recounted.is_err() {
            std::mem::forget(change);
        }
        // The dead holder may have uncounted sleepers and died before waking them
        // (`wake_counted`): every sleeper of both words wakes and looks again.
        sys::futex_wake(&area.items, u32::MAX);
        sys::futex_wake(&area.space, u32::MAX);
        recounted
    }

    /// The recount of [`Raw::recover`].
    fn recount(self) -> Result<()> {
        let area = self.area();
        let ring = self.ring()?;
        let end = area.end.load(Ordering::Relaxed);
        let head = area.head.load(Ordering::Relaxed).min(end);
        area.head.store(head, Ordering::Relaxed);
        let (head, end) = self.window(ring)?;
        let (mut waiting, mut unacked) = (0, 0);
        if let Some(ring) = ring {
            for seq in head..end {
                let entry = self.entry(ring, seq)?;
                match entry.state.load(Ordering::Relaxed) {
                    READY => {
                        waiting += 1;
                        unacked += 1;
                    }
                    TAKEN => unacked += 1,
                    DONE => {}
                    other => return Err(self.corrupt(format!("entry {seq} has state {other}"))),
                }
                self.record_end(ring, entry.record.load(Ordering::Relaxed))?;
            }
        }
        area.waiting.store(waiting, Ordering::Relaxed);
        area.unacked.store(unacked, Ordering::Relaxed);
        area.hint.store(head, Ordering::Relaxed);
        Ok(())
    }

    /// Moves `head` past acknowledged entries; returns the new head.
    #[inline]
    fn advance_head(self, ring: Ring, head: u64, end: u64) -> Result<u64> {
        let mut new_head = head;
        while new_head < end && self.entry(ring, new_head)?.state.load(Ordering::Relaxed) == DONE {
            new_head += 1;
        }
        if new_head != head {
            self.area().head.store(new_head, Ordering::Relaxed);
        }
        Ok(new_head)
    }

    /// Where a record of `need` bytes fits in the ring's free space, if anywhere.
    fn free_position(self, ring: Ring, head: u64, end: u64, need: u64) -> Result<Option<u64>> {
        if need > ring.bytes() {
            return Ok(None);
        }
        if head == end {
            return Ok(Some(ring.lo));
        }
        let first = self.entry(ring, head)?.record.load(Ordering::Relaxed);
        self.record_end(ring, first)?;
        let last = self.entry(ring, end - 1)?.record.load(Ordering::Relaxed);
        let tail = self.record_end(ring, last)?;
        Ok(fit(ring, first, tail, need))
    }

    /// Builds a ring with room for one more entry and `need` more record bytes past the
    /// current one, copies the live entries and records into it, and switches to it.
    fn grow(
        self,
        guard: &RawGuard<'_>,
        old: Option<Ring>,
        (head, end): (u64, u64),
        need: u64,
    ) -> Result<Ring> {
        let area = self.area();
        let segment = self.segment;
        let full = || Error::Full {
            name: segment.name().clone(),
            needed: u64::MAX,
            max_size: segment.max_size(),
        };
        let (mut slots, mut bytes, from) = match old {
            None => (INITIAL_SLOTS, INITIAL_BYTES, DATA_START),
            Some(ring) => (ring.slots, ring.bytes(), ring.hi),
        };
        while slots <= end - head {
            slots = slots
                .checked_mul(2)
                .filter(|s| *s <= MAX_SLOTS)
                .ok_or_else(full)?;
        }
        let mut live = 0;
        if let Some(ring) = old {
            for seq in head..end {
                let record = self.entry(ring, seq)?.record.load(Ordering::Relaxed);
                live += self.record_end(ring, record)? - record;
            }
        }
        // At least half of the new ring is free, so that rings are not rebuilt often.
        let want = (live + need).checked_mul(2).ok_or_else(full)?;
        while bytes < want {
            bytes = bytes.checked_mul(2).ok_or_else(full)?;
        }
        let at = from.next_multiple_of(RING_ALIGN);
        let lo = at + RING_HEADER + slots * ENTRY_SIZE;
        let hi = lo.checked_add(bytes).ok_or_else(full)?;
        segment.grow_to(hi, guard)?;
        self.word(at)?.store(slots, Ordering::Relaxed);
        self.word(at + 8)?.store(bytes, Ordering::Relaxed);
        let new = Ring { at, slots, lo, hi };
        let mut position = lo;
        if let Some(ring) = old {
            for seq in head..end {
                let from = self.entry(ring, seq)?;
                let payload = record::read(segment, from.record.load(Ordering::Relaxed))?;
                // SAFETY: we hold the lock (`guard`), and `[position, hi)` lies in the new ring,
                // past the end of the current one, which no offset points into before `ring`
                // is stored below (module `# Safety`).
                let (record, next) = unsafe { record::write(segment, guard, position, &payload) }?;
                position = next;
                let to = self.entry(new, seq)?;
                to.record.store(record, Ordering::Relaxed);
                to.state
                    .store(from.state.load(Ordering::Relaxed), Ordering::Relaxed);
                to.deliveries
                    .store(from.deliveries.load(Ordering::Relaxed), Ordering::Relaxed);
                to.taker_pid
                    .store(from.taker_pid.load(Ordering::Relaxed), Ordering::Relaxed);
                to.taker_start
                    .store(from.taker_start.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        crate::failpoint::hit("queue.ring_built");
        // Commit: the new ring, its entries and records happen-before any Acquire load of it.
        area.ring.store(at, Ordering::Release);
        Ok(new)
    }

    /// Appends encoded items, committed together by one store of `end`; the caller holds the
    /// lock and checked the bound.
    fn put(self, guard: &RawGuard<'_>, payloads: &[&[u8]]) -> Result<()> {
        let area = self.area();
        let mut ring = self.ring_held(guard)?;
        let (mut head, end) = self.window(ring)?;
        let _change = Change::begin(&area.changes, guard);
        if let Some(current) = ring {
            head = self.advance_head(current, head, end)?;
        }
        // Entries `end..next` are written and not yet committed: nobody but this call follows
        // them, and a grown ring copies them along with the live ones.
        let mut next = end;
        // Where the live records start and end in the current ring, once this call wrote one:
        // the next record's place follows from them without reading the entries again.
        let mut span: Option<(u64, u64)> = None;
        for payload in payloads {
            let need = record::size(payload.len());
            let mut at = None;
            if let Some(current) = ring
                && next - head < current.slots
            {
                at = match span {
                    Some((first, tail)) => fit(current, first, tail, need),
                    None => self.free_position(current, head, next, need)?,
                };
            }
            let (current, at) = if let (Some(current), Some(at)) = (ring, at) {
                (current, at)
            } else {
                let grown = self.grow(guard, ring, (head, next), need)?;
                let at = self
                    .free_position(grown, head, next, need)?
                    .ok_or_else(|| {
                        self.corrupt("a freshly built ring has no room for its record".to_owned())
                    })?;
                ring = Some(grown);
                span = None;
                (grown, at)
            };
            // SAFETY: we hold the lock (`guard`), and `free_position` (or `fit`, from the
            // bounds of the live records that `free_position` checked and this call extended)
            // placed `[at, at + need)` in the ring's free space, outside every live record and
            // every record this call wrote before (module `# Safety`).
            let (record, after) = unsafe { record::write(self.segment, guard, at, payload) }?;
            let first = match span {
                Some((first, _)) => first,
                None if head == next => record,
                None => self.entry(current, head)?.record.load(Ordering::Relaxed),
            };
            span = Some((first, after));
            let entry = self.entry(current, next)?;
            entry.record.store(record, Ordering::Relaxed);
            entry.deliveries.store(0, Ordering::Relaxed);
            entry.taker_pid.store(0, Ordering::Relaxed);
            entry.taker_start.store(0, Ordering::Relaxed);
            entry.state.store(READY, Ordering::Relaxed);
            next += 1;
            if next == end + 1 && payloads.len() > 1 {
                crate::failpoint::hit("queue.batch_first_written");
            }
        }
        crate::failpoint::hit("queue.written");
        // Commit: the records and the entries happen-before any Acquire load of `end`.
        area.end.store(next, Ordering::Release);
        crate::failpoint::hit("queue.committed");
        let added = next - end;
        // Under the lock, which every writer of these words holds: plain stores, no locked
        // read-modify-write.
        count_up(&area.waiting, added);
        count_up(&area.unacked, added);
        area.items.store(
            area.items.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
        self.segment.note_writer();
        Ok(())
    }

    /// The first entry taken by a dead process, if any.
    fn find_orphan(self, ring: &Ring, (head, end): (u64, u64)) -> Result<Option<u64>> {
        let area = self.area();
        let in_flight = area
            .unacked
            .load(Ordering::Relaxed)
            .saturating_sub(area.waiting.load(Ordering::Relaxed));
        let (my_pid, my_start) = me();
        let mut seen = 0;
        let mut checked: Vec<(u32, u64, bool)> = Vec::new();
        for seq in head..end {
            if seen >= in_flight {
                break;
            }
            let entry = self.entry(*ring, seq)?;
            if entry.state.load(Ordering::Relaxed) != TAKEN {
                continue;
            }
            seen += 1;
            let pid = entry.taker_pid.load(Ordering::Relaxed);
            let start = entry.taker_start.load(Ordering::Relaxed);
            if (pid, start) == (my_pid, my_start) {
                continue;
            }
            let alive = if let Some(&(_, _, alive)) =
                checked.iter().find(|(p, s, _)| (*p, *s) == (pid, start))
            {
                alive
            } else {
                let alive = segment::process_alive(pid, start);
                checked.push((pid, start, alive));
                alive
            };
            if !alive {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// The first ready entry at or after `hint`, moving `hint` up to it.
    fn find_ready(self, ring: &Ring, (head, end): (u64, u64)) -> Result<Option<u64>> {
        let area = self.area();
        let hint = area.hint.load(Ordering::Relaxed);
        // Derived, so untrusted: outside the window it is ignored.
        let from = if (head..=end).contains(&hint) {
            hint
        } else {
            head
        };
        for seq in from..end {
            if self.entry(*ring, seq)?.state.load(Ordering::Relaxed) == READY {
                area.hint.store(seq, Ordering::Relaxed);
                return Ok(Some(seq));
            }
        }
        area.hint.store(end, Ordering::Relaxed);
        Ok(None)
    }

    /// The next item to take: usually the first ready one; an item of a dead taker when none
    /// is ready, or every `ORPHAN_SCAN_EVERY` deliveries.
    fn next_to_take(self, ring: &Ring, window: (u64, u64)) -> Result<Option<u64>> {
        let ready = self.find_ready(ring, window)?;
        let orphans_first = ready.is_none_or(|seq| seq.is_multiple_of(ORPHAN_SCAN_EVERY));
        let orphan = if orphans_first {
            self.find_orphan(ring, window)?
        } else {
            None
        };
        Ok(orphan.or(ready))
    }

    /// Takes up to `max` items (see [`Raw::next_to_take`]) into `received`, offering each
    /// payload to `accept`:
    /// an accepted item is acknowledged (`ack`: its state goes straight to acknowledged, one
    /// commit) or taken in flight; the first refused one is taken in flight and ends the
    /// batch. The caller holds the lock, inside a change, and calls [`Raw::finish_acks`] if
    /// any was acknowledged.
    fn take(
        self,
        ring: Option<Ring>,
        max: usize,
        ack: bool,
        accept: &mut dyn FnMut(&[u8]) -> bool,
        received: &mut Received,
    ) -> Result<()> {
        let area = self.area();
        let Some(ring) = ring else {
            return Ok(());
        };
        let window = self.window(Some(ring))?;
        // This thread's kept buffer, taken on the first payload too long for the stack.
        let mut kept: Option<Vec<u8>> = None;
        while received.accepted < max {
            let Some(seq) = self.next_to_take(&ring, window)? else {
                break;
            };
            let entry = self.entry(ring, seq)?;
            let was = entry.state.load(Ordering::Relaxed);
            let record = entry.record.load(Ordering::Relaxed);
            // Checked to lie in the ring before it is copied: a damaged record could claim a
            // length up to the segment's size.
            self.starts_in_ring(ring, record)?;
            let in_ring = |end| end <= ring.hi;
            let mut short = [[0; 8]; record::SHORT_PAYLOAD / 8];
            let read: &[u8] = match record::read_short(self.segment, record, &mut short) {
                Some(len) if in_ring(record_end(record, len)) => &short.as_flattened()[..len],
                _ => {
                    let payload = kept.get_or_insert_with(|| codec::take_kept(&PAYLOAD));
                    if record::read_into_if(self.segment, record, payload, in_ring)?.is_none() {
                        return Err(self.past_ring_end(ring, record));
                    }
                    payload
                }
            };
            let accepted = accept(read);
            // Counted before the commit: a receiver killed in between counts as an attempt, so
            // the count may overstate deliveries but never hides one.
            let deliveries = entry.deliveries.load(Ordering::Relaxed).saturating_add(1);
            entry.deliveries.store(deliveries, Ordering::Relaxed);
            if accepted && ack {
                entry.state.store(DONE, Ordering::Release); // commit
                crate::failpoint::hit("queue.acked");
                count_down(&area.unacked, 1);
                received.acked += 1;
            } else {
                let (pid, start) = me();
                entry.taker_start.store(start, Ordering::Relaxed);
                entry.taker_pid.store(pid, Ordering::Relaxed);
                entry.state.store(TAKEN, Ordering::Release); // commit
                crate::failpoint::hit("queue.taken");
            }
            if was == READY {
                count_down(&area.waiting, 1);
                area.hint.store(seq + 1, Ordering::Relaxed);
            }
            if !accepted {
                received.refused = Some(Taken {
                    seq,
                    deliveries,
                    payload: read.to_vec(),
                });
                break;
            }
            received.accepted += 1;
            if !ack {
                received.taken.push((seq, deliveries));
            }
        }
        if let Some(payload) = kept {
            codec::keep(&PAYLOAD, payload);
        }
        Ok(())
    }

    /// After acknowledgements, inside their change: moves `head` and bumps the futex words
    /// (`space`, and `items` on a closed queue, whose receivers wait for nothing to be left
    /// unacknowledged). Returns whether the queue is closed.
    fn finish_acks(self, ring: Option<&Ring>) -> bool {
        let area = self.area();
        if let Some(&ring) = ring
            && let Ok((head, end)) = self.window(Some(ring))
        {
            // Moving `head` is housekeeping: a failure here leaves it for the next put.
            let _ = self.advance_head(ring, head, end);
        }
        area.space.store(
            area.space.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
        let closed = area.closed.load(Ordering::Relaxed) != OPEN;
        if closed {
            area.items.store(
                area.items.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Release,
            );
        }
        closed
    }

    /// After acknowledgements, wakes the senders and joiners, and the receivers of a `closed`
    /// queue, then unlocks.
    fn wake_after_acks(self, guard: RawGuard<'_>, closed: bool) {
        let area = self.area();
        if closed {
            wake_counted(&guard, &area.items, &area.receivers);
        }
        wake_and_unlock(guard, &area.space, &area.senders);
    }

    /// The entry of `seq` in `ring` (the current one) if this process holds it in flight.
    fn held_entry(
        self,
        ring: Option<Ring>,
        seq: u64,
    ) -> std::result::Result<(Ring, &'a Entry), QueueError> {
        let not_in_flight = || QueueError::NotInFlight {
            name: self.segment.name().clone(),
            seq,
        };
        let ring = ring.ok_or_else(not_in_flight)?;
        let (head, end) = self.window(Some(ring))?;
        if !(head..end).contains(&seq) {
            return Err(not_in_flight());
        }
        let entry = self.entry(ring, seq)?;
        let taker = (
            entry.taker_pid.load(Ordering::Relaxed),
            entry.taker_start.load(Ordering::Relaxed),
        );
        if entry.state.load(Ordering::Relaxed) != TAKEN || taker != me() {
            return Err(not_in_flight());
        }
        Ok((ring, entry))
    }

    /// Acknowledges items `seqs`, which this process holds in flight, under one lock: they
    /// leave the queue for good (each by a commit of its own), and a sender waiting for room
    /// is woken. [`QueueError::NotInFlight`] names the first that this process does not hold,
    /// once the others are acknowledged.
    pub(super) fn ack(self, seqs: &[u64]) -> std::result::Result<(), QueueError> {
        let area = self.area();
        let guard = self.lock()?;
        let mut missing = None;
        let mut acked = 0;
        let mut closed = false;
        {
            let _change = Change::begin(&area.changes, &guard);
            let ring = self.ring_held(&guard)?;
            for &seq in seqs {
                match self.held_entry(ring, seq) {
                    Ok((_, entry)) => {
                        entry.state.store(DONE, Ordering::Release); // commit
                        crate::failpoint::hit("queue.acked");
                        count_down(&area.unacked, 1);
                        acked += 1;
                    }
                    Err(err) => {
                        missing.get_or_insert(err);
                    }
                }
            }
            if acked > 0 {
                closed = self.finish_acks(ring.as_ref());
            }
        }
        if acked > 0 {
            self.wake_after_acks(guard, closed);
        }
        missing.map_or(Ok(()), Err)
    }

    /// Acknowledges the oldest item this process holds in flight (`task_done`);
    /// [`QueueError::NoTaskInFlight`] if it holds none.
    pub(super) fn ack_oldest(self) -> std::result::Result<(), QueueError> {
        let guard = self.lock()?;
        if let Some(ring) = self.ring_held(&guard)? {
            let (head, end) = self.window(Some(ring))?;
            for seq in head..end {
                let entry = self.entry(ring, seq)?;
                let taker = (
                    entry.taker_pid.load(Ordering::Relaxed),
                    entry.taker_start.load(Ordering::Relaxed),
                );
                if entry.state.load(Ordering::Relaxed) == TAKEN && taker == me() {
                    self.acknowledge(guard, ring, entry);
                    return Ok(());
                }
            }
        }
        Err(QueueError::NoTaskInFlight {
            name: self.segment.name().clone(),
        })
    }

    /// Commits the acknowledgement of `entry` (in `ring`), which this process holds in
    /// flight, unlocks and wakes (see [`Raw::wake_after_acks`]).
    fn acknowledge(self, guard: RawGuard<'_>, ring: Ring, entry: &Entry) {
        let area = self.area();
        let closed = {
            let _change = Change::begin(&area.changes, &guard);
            entry.state.store(DONE, Ordering::Release); // commit
            crate::failpoint::hit("queue.acked");
            count_down(&area.unacked, 1);
            self.finish_acks(Some(&ring))
        };
        self.wake_after_acks(guard, closed);
    }

    /// Puts items `seqs`, which this process holds in flight, back in their places under one
    /// lock, and wakes the waiting receivers; after an immediate close they are discarded
    /// instead. [`QueueError::NotInFlight`] names the first that this process does not hold,
    /// once the others are put back.
    pub(super) fn nack(self, seqs: &[u64]) -> std::result::Result<(), QueueError> {
        let area = self.area();
        let guard = self.lock()?;
        if area.closed.load(Ordering::Relaxed) == CLOSED_NOW {
            drop(guard);
            return self.ack(seqs);
        }
        let mut missing = None;
        let change = Change::begin(&area.changes, &guard);
        let ring = self.ring_held(&guard)?;
        for &seq in seqs {
            let entry = match self.held_entry(ring, seq) {
                Ok((_, entry)) => entry,
                Err(err) => {
                    missing.get_or_insert(err);
                    continue;
                }
            };
            entry.state.store(READY, Ordering::Release); // commit
            crate::failpoint::hit("queue.returned");
            count_up(&area.waiting, 1);
            if area.hint.load(Ordering::Relaxed) > seq {
                area.hint.store(seq, Ordering::Relaxed);
            }
        }
        area.items.store(
            area.items.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Release,
        );
        drop(change);
        wake_and_unlock(guard, &area.items, &area.receivers);
        missing.map_or(Ok(()), Err)
    }

    /// Copies of the payloads of the ready items, oldest first.
    pub(super) fn ready_payloads(self) -> Result<Vec<(u64, Vec<u8>)>> {
        let _held = self.lock()?;
        let Some(ring) = self.ring()? else {
            return Ok(Vec::new());
        };
        let (head, end) = self.window(Some(ring))?;
        let mut payloads = Vec::new();
        for seq in head..end {
            let entry = self.entry(ring, seq)?;
            if entry.state.load(Ordering::Relaxed) == READY {
                let record = entry.record.load(Ordering::Relaxed);
                self.record_end(ring, record)?;
                payloads.push((seq, record::read(self.segment, record)?));
            }
        }
        Ok(payloads)
    }
}

/// Wakes every sleeper on `word` if `sleepers` counts any (see [`wake_counted`]), then
/// unlocks.
fn wake_and_unlock(guard: RawGuard<'_>, word: &AtomicU32, sleepers: &AtomicU32) {
    wake_counted(&guard, word, sleepers);
    drop(guard);
}

/// Wakes every sleeper on `word` if `sleepers` counts any, and sets the count back to zero:
/// the puts that follow, before a woken sleeper has run, make no system call. The caller
/// changed `word` first, and holds the lock (`_held`) for the count and the call both: a waker
/// killed between the two leaves the wake-up to the lock's recovery ([`Raw::recover`]), where
/// a call made after unlocking would have been lost with the count.
fn wake_counted(_held: &RawGuard<'_>, word: &AtomicU32, sleepers: &AtomicU32) {
    if sleepers.load(Ordering::Relaxed) != 0 {
        sleepers.store(0, Ordering::Relaxed);
        crate::failpoint::hit("queue.sleepers_uncounted");
        sys::futex_wake(word, u32::MAX);
    }
}

/// Once per wait, before its sleep: unlocks and spins while `word` is unchanged (see
/// [`spin_while`]), and the caller takes the lock and reads the queue again (`None`); the next
/// time, hands the guard back for the sleep (and the wait after it spins again). A put or an
/// acknowledgement coming within microseconds is met without a sleep and a wake-up.
fn spin_before_sleep<'g>(
    spun: &mut bool,
    guard: RawGuard<'g>,
    word: &AtomicU32,
    deadline: Option<std::time::Instant>,
) -> Option<RawGuard<'g>> {
    if *spun {
        *spun = false;
        return Some(guard);
    }
    *spun = true;
    let seen = word.load(Ordering::Relaxed);
    drop(guard);
    spin_while(word, seen, deadline);
    None
}

/// Counts itself in `sleepers`, unlocks and sleeps on `word` for at most `sleep` (`None`: until
/// woken). The count is the waker's to clear ([`wake_counted`]).
fn sleep_on(guard: RawGuard<'_>, word: &AtomicU32, sleepers: &AtomicU32, sleep: Option<Duration>) {
    // Read under the lock: a change after we unlock (a put, an acknowledgement) bumps it, and
    // the futex then does not sleep.
    let seen = word.load(Ordering::Relaxed);
    // Changed under the lock only, by sleepers and wakers, so that no count is lost. A sleeper
    // that wakes otherwise (its timeout) leaves its count behind. Saturating: a count never
    // wraps to zero.
    sleepers.store(
        sleepers.load(Ordering::Relaxed).saturating_add(1),
        Ordering::Relaxed,
    );
    drop(guard);
    sys::futex_wait(word, seen, sleep);
}
