//! The shared-memory engine of [`Queue`](super::Queue): the ring of `layout.rs`, changed under
//! two robust locks, and the futexes that blocked callers sleep on.
//!
//! # Two locks
//!
//! Senders take the segment's lock, receivers its second lock (the *receive lock*), so that a
//! sender and a receiver never wait for each other. Each side writes its own line of the
//! queue's words, and reads the other's only when its copy of it runs out (see `layout.rs`):
//!
//! * **Senders** own the free part of the ring: the slots from `end` on and the record bytes
//!   past the last live record. A put writes its record and its entry there, then commits
//!   them by one store of `end + 1`. It knows what is free from its copy of `head`, which is
//!   never later than `head`: one a moment old only makes it see less room.
//! * **Receivers** own the live entries `head..end`: a receive stores `taken` into an entry's
//!   state (after writing the taker and counting the delivery), an ack stores `acknowledged`,
//!   a dropped delivery stores `ready` again. `head` then moves past acknowledged entries,
//!   freeing their slots and record bytes for the senders. A receiver knows what is live from
//!   its copy of `end`, and reads a record only before its entry is acknowledged.
//! * **Under both locks**, the segment's always first and the receive lock second, never the
//!   reverse, goes what changes the ring under everyone: a put that finds no room builds a
//!   larger ring past the current one, copies the live entries and records into it, and
//!   stores its offset into `ring`; a close stores `closed` (and an immediate one discards the
//!   ready items).
//!
//! The counts follow from the receivers' words: `end - settled` items are ready, and
//! `end - acked` unacknowledged. A sender reads its copy of `acked` for the bound, and
//! `acked` itself when the copy says the queue is full.
//!
//! # Recovery
//!
//! A process killed before a commit leaves garbage in free space, which nothing points to; one
//! killed after leaves only the derived words stale. The next locker is told that the owner
//! died ([`LockError::OwnerDied`](crate::sync::LockError::OwnerDied)). Of the receive lock, it
//! recounts `acked`, `settled` and `sole_taker` from the entries, resets `hint` to `head` and
//! the receivers' copy of `end`, and checks every live record's bounds. Of the segment's lock,
//! it reads the senders' copies afresh from `head`, `end` and the entries (a sender killed
//! after its commit left copies of the state before it). Of either, it wakes every sleeper of
//! both futex words (a holder killed as it woke them may have uncounted them first: see "Space
//! and blocking"), and marks the lock consistent. Each recovery needs only its own lock: a
//! sender killed while it built a ring held the receive lock too, and that lock's recovery
//! recounts. Items taken by a dead process are not a lock matter: they stay taken until a
//! receiver finds their taker dead (pid gone, or reused by a process with another start time)
//! and delivers them again.
//!
//! # Closing and joining
//!
//! `closed` is committed by one store under both locks; an immediate close then marks the
//! ready entries acknowledged (each a commit of its own, as an `ack`), so a close killed
//! half-way leaves a closed queue with some ready items left, which receivers do not take and
//! the next joiner discards. A joiner takes the receive lock and sleeps on `space` with the
//! senders, since only an acknowledgement can end its wait; a close bumps both futex words and
//! wakes every sleeper of both before it unlocks.
//!
//! # Space and blocking
//!
//! See [`Queue`](super::Queue). Outgrown rings are never reused, so `verify`, which reads
//! without the locks, never finds a ring it loaded rewritten under it as another ring.
//!
//! A futex word (`items`, `space`) is 64 bits: the low half a number the futex sleeps on, the
//! high half the count of its sleepers. A sleeper reads the low half before it looks at the
//! queue, and after a look that finds nothing, adds itself to the count only while the low
//! half still holds what it read, then unlocks and sleeps while it does. A waker changes the
//! queue, then bumps the low half and zeroes the count in one read-modify-write
//! ([`bump_futex`]), and wakes every sleeper of the word if the count was not zero, still under
//! its lock. Only a look that can end in a sleep reads the word, each on the other side's
//! line: a receiver's look at `end`, a sender's at `acked`. A get that finds its item within
//! the receivers' copy of `end`, and a put whose copy of `acked` leaves room, read neither.
//! The change a sleeper waits for is made under the other lock (a receiver waits for
//! a put, a sender for an acknowledgement), so both steps are read-modify-writes of the one
//! word: whichever comes second sees the first, and either the waker finds the sleeper counted
//! or the sleeper finds the number moved on and looks again. (An unbounded queue's `space`
//! has no sleepers but joiners, which look and count themselves under the receive lock that
//! its wakers hold too: there a load and a store bump it, `Raw::bump_space`.) The puts that
//! follow a wake-up, before the woken receiver has run (tens of microseconds when the
//! processors are busy), find the count zero and make no system call. A waker killed between
//! its bump and its wake-up leaves the lock to a recovery that wakes every sleeper. A sleeper
//! that wakes otherwise (its timeout), or is killed, leaves its count behind, which costs one
//! needless wake-up, never a lost one.
//!
//! # Safety
//!
//! The one `unsafe` operation is `record::write`, whose contract is that no published offset
//! points into the bytes written. It is called under the segment's lock, in two places: in
//! `Raw::put`, at a position [`LiveRecords::room`] found in the ring's free space (outside the
//! records of the live entries from the senders' copy of `head`, which covers the receivers'
//! `head..end`, the only ones anybody follows); and in `Raw::grow`, under the receive lock
//! too, in a new ring past the end of the current one, which no offset points into until
//! `ring` is stored.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

use super::QueueError;
use super::layout::{
    CLOSED, CLOSED_NOW, DONE, ENTRY_SIZE, Entry, MAX_SLOTS, OPEN, READY, RING_ALIGN, RING_HEADER,
    Raw, Ring, TAKEN, taker_mark,
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
/// The longest a sleeper sleeps before it looks at the queue again. A waker killed between its
/// bump and its wake-up is recovered by the next holder of its lock, and the sleepers of the
/// other lock may be all that is left (receivers waiting for a producer that died): they find
/// what it committed at their next look.
const LOOK_AGAIN: Duration = Duration::from_secs(1);
/// Every this many deliveries, a receiver looks for items of dead takers first even when other
/// items are ready (it always looks when none is), until a look finds none: once per hold of
/// the receive lock after that ([`Raw::next_to_take`]).
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

/// An item taken in flight under the receive lock, with its payload.
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

/// What one receive took under the receive lock.
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

/// Whether `count` more items after `end` stay within `capacity` once the items up to `acked`
/// are acknowledged.
fn fits(end: u64, acked: u64, count: u64, capacity: u64) -> bool {
    end.saturating_sub(acked).saturating_add(count) <= capacity
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
            let guard = self.lock_senders()?;
            if self.closed_state()? != OPEN {
                return Err(self.closed_error());
            }
            if capacity == 0 || self.fits_by_copy(count, capacity) {
                self.put_and_wake(&guard, payloads)?;
                return Ok(true);
            }
            // Read only now: `space` lies on the receivers' line, which every acknowledgement
            // writes. Before the look at `acked`: an acknowledgement after this load changes it.
            let seen = futex_value(&area.space);
            if self.fits_by_acked(count, capacity) {
                self.put_and_wake(&guard, payloads)?;
                return Ok(true);
            }
            let Next::Sleep(sleep) = next_sleep(timeout, deadline, Some(LOOK_AGAIN)) else {
                return Ok(false);
            };
            let Some(guard) = spin_before_sleep(&mut spun, guard, &area.space, seen, deadline)
            else {
                continue;
            };
            sleep_on(guard, &area.space, seen, sleep);
        }
    }

    /// Puts `payloads` (see [`Raw::put`]) and wakes the receivers that sleep on `items`.
    fn put_and_wake(self, guard: &RawGuard<'_>, payloads: &[&[u8]]) -> Result<()> {
        self.put(guard, payloads)?;
        let items = &self.area().items;
        wake(guard, items, bump_futex(items));
        Ok(())
    }

    /// Whether `count` more items stay within `capacity` by the senders' copy of `acked`, for a
    /// holder of the segment's lock. A copy past `end` is damaged, not a state: it says no.
    fn fits_by_copy(self, count: u64, capacity: u64) -> bool {
        let area = self.area();
        let end = area.end.load(Ordering::Relaxed);
        let copy = area.sender_acked.load(Ordering::Relaxed);
        copy <= end && fits(end, copy, count, capacity)
    }

    /// Whether `count` more items stay within `capacity` by `acked` itself, which it copies
    /// into the senders' `sender_acked`, for a holder of the segment's lock.
    fn fits_by_acked(self, count: u64, capacity: u64) -> bool {
        let area = self.area();
        let acked = area.acked.load(Ordering::Acquire);
        area.sender_acked.store(acked, Ordering::Relaxed);
        fits(area.end.load(Ordering::Relaxed), acked, count, capacity)
    }

    /// Takes up to `max` items (at least one) under one lock (see [`Raw::take`]) into
    /// `received` (which starts empty), sleeping while none is ready; `false` once `timeout`
    /// has passed first (at once for a zero timeout). Each payload is offered to `accept`
    /// under the receive lock: an accepted item is acknowledged at once if `ack`, else taken in
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
            // Nothing ready, by a look without the lock (derived words, so only a hint): spin
            // for a put before locking at all. A streaming receiver then takes the lock once
            // per item, not once to find nothing and once to take it. The receivers' own line
            // first: items they know of are ready without a look at the senders'.
            if !spun
                && timeout != Some(Duration::ZERO)
                && area.receiver_end.load(Ordering::Relaxed) <= area.settled.load(Ordering::Relaxed)
            {
                let seen = futex_value(&area.items);
                if self.ready() == 0 && area.closed.load(Ordering::Relaxed) == OPEN {
                    spun = true;
                    spin_while(&area.items, seen, deadline);
                }
            }
            let guard = self.lock_receivers()?;
            let closed = self.closed_state()?;
            if closed == CLOSED_NOW {
                return Err(self.closed_error());
            }
            let change = Change::begin(&area.changes, &guard);
            let ring = self.ring_held(&guard)?;
            let seen = self.take(ring, max.max(1), ack, accept, received)?;
            let sleepers = if received.acked > 0 {
                self.finish_acks(ring.as_ref())
            } else {
                ToWake::default()
            };
            drop(change);
            if received.accepted > 0 || received.refused.is_some() {
                self.wake_after_acks(&guard, sleepers);
                return Ok(true);
            }
            let unacked = self.unacknowledged();
            if closed != OPEN && unacked == 0 {
                return Err(self.closed_error());
            }
            // Items in flight come back if their taker dies, which wakes nobody: look again
            // now and then while there are any.
            let poll = if self.in_flight() > 0 {
                REDELIVERY_CHECK
            } else {
                LOOK_AGAIN
            };
            let Next::Sleep(sleep) = next_sleep(timeout, deadline, Some(poll)) else {
                return Ok(false);
            };
            // A take that found nothing has looked at `end`, and read `items` before it.
            let Some(seen) = seen else {
                continue;
            };
            let Some(guard) = spin_before_sleep(&mut spun, guard, &area.items, seen, deadline)
            else {
                continue;
            };
            sleep_on(guard, &area.items, seen, sleep);
        }
    }

    /// Waits until no item is left unacknowledged; `false` once `timeout` has passed first.
    /// After an immediate close, items in flight with processes that died are discarded
    /// meanwhile (no receiver would take them again), looking every `REDELIVERY_CHECK`.
    pub(super) fn join_until(self, timeout: Option<Duration>) -> Result<bool> {
        let area = self.area();
        let deadline = deadline(timeout);
        loop {
            let guard = self.lock_receivers()?;
            // Before the look at what is unacknowledged: an acknowledgement after this load
            // changes it.
            let seen = futex_value(&area.space);
            let poll = if area.closed.load(Ordering::Relaxed) == CLOSED_NOW {
                let _change = Change::begin(&area.changes, &guard);
                self.discard_ready()?;
                self.discard_orphans()?;
                REDELIVERY_CHECK
            } else {
                LOOK_AGAIN
            };
            if self.unacknowledged() == 0 {
                return Ok(true);
            }
            let Next::Sleep(sleep) = next_sleep(timeout, deadline, Some(poll)) else {
                return Ok(false);
            };
            // An acknowledgement bumps `space`; joiners sleep there with the senders.
            sleep_on(guard, &area.space, seen, sleep);
        }
    }

    /// Closes the queue (see [`CLOSED`] and [`CLOSED_NOW`]; an immediate close is not undone
    /// by a later plain one) and wakes every sleeper. An immediate close discards the ready
    /// items and those in flight with dead processes.
    pub(super) fn close(self, immediately: bool) -> Result<()> {
        let area = self.area();
        let send_guard = self.lock_senders()?;
        let receive_guard = self.lock_receivers()?;
        let change = Change::begin(&area.changes, &receive_guard);
        let state = if immediately { CLOSED_NOW } else { CLOSED };
        if area.closed.load(Ordering::Relaxed) != CLOSED_NOW {
            area.closed.store(state, Ordering::Release); // commit
        }
        crate::failpoint::hit("queue.closed");
        if immediately {
            self.discard_ready()?;
            self.discard_orphans()?;
        }
        drop(change);
        self.segment.note_writer();
        // Every sleeper, counted or not, under both locks: a closer killed before this leaves
        // it to the recovery of either lock.
        self.wake_everyone();
        drop(receive_guard);
        drop(send_guard);
        Ok(())
    }

    /// Whether the queue was closed: `Some(true)` immediately.
    pub(super) fn closed(self) -> Result<Option<bool>> {
        let state = self.closed_state()?;
        // Pairs with the closer's Release store (the commit of `close`).
        fence(Ordering::Acquire);
        Ok(match state {
            OPEN => None,
            CLOSED => Some(false),
            _ => Some(true),
        })
    }

    /// Discards the ready items (an immediate close); the caller holds the receive lock, inside
    /// a change.
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
        count_up(&area.settled, discarded);
        count_up(&area.acked, discarded);
        area.hint.store(end, Ordering::Relaxed);
        area.receiver_end.store(end, Ordering::Relaxed);
        self.advance_head(ring, head, end)?;
        Ok(())
    }

    /// Discards the items in flight with processes that died (after an immediate close); the
    /// caller holds the receive lock, inside a change.
    fn discard_orphans(self) -> Result<()> {
        let area = self.area();
        let Some(ring) = self.ring()? else {
            return Ok(());
        };
        loop {
            let window = self.window(Some(ring))?;
            let Some((_, entry)) = self.find_orphan(&ring, window)? else {
                return Ok(());
            };
            entry.state.store(DONE, Ordering::Release);
            count_up(&area.acked, 1);
            self.advance_head(ring, window.0, window.1)?;
            // Under the receive lock, which the caller (a joiner or a closer) holds, as `wake`.
            if bump_futex(&area.space) {
                sys::futex_wake_low_half(&area.space, u32::MAX);
            }
        }
    }

    /// Takes the segment's lock, the senders' (see the module docs), waking every sleeper if a
    /// holder died.
    fn lock_senders(self) -> Result<RawGuard<'a>> {
        lock_and_repair(self.segment, |_| {
            self.wake_everyone();
            self.reread_senders_copies()
        })
    }

    /// Reads the senders' copies afresh (see [`LiveRecords`]), for a holder of the segment's
    /// lock whose last holder died: it may have committed items and died before it kept its
    /// view of them.
    fn reread_senders_copies(self) -> Result<()> {
        let area = self.area();
        let ring = self.ring()?;
        let live = self.read_live_records(ring, area.end.load(Ordering::Relaxed))?;
        self.keep_senders_copies(live, None);
        area.sender_acked
            .store(area.acked.load(Ordering::Acquire), Ordering::Relaxed);
        Ok(())
    }

    /// Takes the receive lock (the segment's second lock, through this view of the segment:
    /// see `layout.rs`), repairing the receivers' derived words if a holder died.
    fn lock_receivers(&self) -> Result<RawGuard<'_>> {
        lock_and_repair(self, |guard| self.recover(guard))
    }

    /// Recounts the receivers' derived words from the committed state (see the module docs),
    /// inside the change a dead holder left under way or a change of its own, so that
    /// `inspect`'s check without the locks never reads half-recounted words. A recount that
    /// fails leaves the change under way, for the next locker's.
    fn recover(self, guard: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let change = Change::recovering(&area.changes, guard);
        let recounted = self.recount();
        if recounted.is_err() {
            std::mem::forget(change);
        }
        self.wake_everyone();
        recounted
    }

    /// Bumps both futex words and wakes every sleeper of both, for a holder of either lock
    /// (a recovery, a close): a holder that died may have uncounted sleepers before it woke
    /// them ([`bump_futex`] zeroes the count before [`wake`]), and a recovery changes what
    /// sleepers of the other lock wait for without their lock (a recount of `acked`). The
    /// bumps reach a sleeper between its look and its sleep too: its futex finds the word
    /// moved on.
    fn wake_everyone(self) {
        let area = self.area();
        bump_futex(&area.items);
        bump_futex(&area.space);
        sys::futex_wake_low_half(&area.items, u32::MAX);
        sys::futex_wake_low_half(&area.space, u32::MAX);
    }

    /// The recount of [`Raw::recover`], under the receive lock. Senders may commit items
    /// meanwhile: they add ready entries past `end`, which change neither count.
    fn recount(self) -> Result<()> {
        let area = self.area();
        let ring = self.ring()?;
        let end = area.end.load(Ordering::Acquire);
        let head = area.head.load(Ordering::Relaxed).min(end);
        area.head.store(head, Ordering::Release);
        let (head, end) = self.window(ring)?;
        let (mut acked, mut settled) = (head, head);
        // The one mark of every entry in flight, 0 if they differ (`None`: none in flight).
        let mut sole = None;
        if let Some(ring) = ring {
            for seq in head..end {
                let entry = self.entry(ring, seq)?;
                match entry.state.load(Ordering::Relaxed) {
                    READY => {}
                    TAKEN => {
                        settled += 1;
                        let mark = entry.taker_mark();
                        sole = Some(sole.map_or(mark, |sole| if sole == mark { sole } else { 0 }));
                    }
                    DONE => {
                        acked += 1;
                        settled += 1;
                    }
                    other => return Err(self.corrupt(format!("entry {seq} has state {other}"))),
                }
                self.record_end(ring, entry.record.load(Ordering::Relaxed))?;
            }
        }
        area.acked.store(acked, Ordering::Release);
        area.settled.store(settled, Ordering::Release);
        area.sole_taker.store(sole.unwrap_or(0), Ordering::Relaxed);
        area.hint.store(head, Ordering::Relaxed);
        area.receiver_end.store(end, Ordering::Relaxed);
        Ok(())
    }

    /// Moves `head` past acknowledged entries, under the receive lock; returns the new head.
    /// A release store: this thread's reads of their records happen-before a sender's writes
    /// over them.
    #[inline]
    fn advance_head(self, ring: Ring, head: u64, end: u64) -> Result<u64> {
        let mut new_head = head;
        while new_head < end && self.entry(ring, new_head)?.state.load(Ordering::Relaxed) == DONE {
            new_head += 1;
        }
        if new_head != head {
            self.area().head.store(new_head, Ordering::Release);
        }
        Ok(new_head)
    }

    /// The senders' view of the live records up to entry `end` (see [`LiveRecords`]): their
    /// copies in the senders' line, or a fresh read if the copies do not fit `end` and the
    /// ring.
    fn senders_live_records(self, ring: Option<Ring>, end: u64) -> Result<LiveRecords> {
        let area = self.area();
        let live = LiveRecords {
            head: area.sender_head.load(Ordering::Relaxed),
            first: area.sender_first.load(Ordering::Relaxed),
            tail: area.sender_tail.load(Ordering::Relaxed),
        };
        if let Some(ring) = ring
            && live.head <= end
            && end - live.head <= ring.slots
            && (live.head == end
                || (self.starts_in_ring(ring, live.first).is_ok()
                    && live.tail > ring.lo
                    && live.tail <= ring.hi
                    && live.tail.is_multiple_of(8)))
        {
            return Ok(live);
        }
        self.read_live_records(ring, end)
    }

    /// The live records up to entry `next` as they are now: `head` as the receivers left it
    /// (a holder of the segment's lock reads it), the record of entry `head` and the end of
    /// the record of entry `next - 1`.
    fn read_live_records(self, ring: Option<Ring>, next: u64) -> Result<LiveRecords> {
        let head = self.area().head.load(Ordering::Acquire);
        let (head, _) = self.checked_window(ring, head, next)?;
        let mut live = LiveRecords {
            head,
            first: 0,
            tail: 0,
        };
        if let Some(ring) = ring
            && head < next
        {
            live.first = self.entry(ring, head)?.record.load(Ordering::Relaxed);
            self.record_end(ring, live.first)?;
            let last = self.entry(ring, next - 1)?.record.load(Ordering::Relaxed);
            live.tail = self.record_end(ring, last)?;
        }
        Ok(live)
    }

    /// Stores `live` as the senders' copies: only the words that differ from `was`, the copies
    /// as the caller read them (`None`: all of them). A put stores its tail at every item, and
    /// its head and first record only when they moved.
    fn keep_senders_copies(self, live: LiveRecords, was: Option<LiveRecords>) {
        let area = self.area();
        let copies = [
            (&area.sender_head, live.head, was.map(|w| w.head)),
            (&area.sender_first, live.first, was.map(|w| w.first)),
            (&area.sender_tail, live.tail, was.map(|w| w.tail)),
        ];
        for (word, value, before) in copies {
            if before != Some(value) {
                word.store(value, Ordering::Relaxed);
            }
        }
    }

    /// Room for entry `next` and a record of `need` bytes, for a put that found none: the
    /// ring, the live records in it and the record's place. The caller holds the segment's
    /// lock (`guard`) and wrote the entries from `end` to `next` that it has not committed
    /// yet.
    /// This takes the receive lock as well, so that `head` stays and no entry changes: if the
    /// receivers freed room meanwhile, the current ring has it; else a larger one is built.
    fn make_room(
        self,
        guard: &RawGuard<'_>,
        ring: Option<Ring>,
        next: u64,
        need: u64,
    ) -> Result<(Ring, LiveRecords, u64)> {
        let area = self.area();
        let held = self.lock_receivers()?;
        let live = self.read_live_records(ring, next)?;
        if let Some(current) = ring
            && let Some(at) = live.room(ring, next, need)
        {
            return Ok((current, live, at));
        }
        let _change = Change::begin(&area.changes, &held);
        let grown = self.grow(guard, ring, (live.head, next), need)?;
        let live = self.read_live_records(Some(grown), next)?;
        let at = live.room(Some(grown), next, need).ok_or_else(|| {
            self.corrupt("a freshly built ring has no room for its record".to_owned())
        })?;
        Ok((grown, live, at))
    }

    /// Builds a ring with room for one more entry and `need` more record bytes past the
    /// current one, copies the entries `head..end` and their records into it, and switches to
    /// it. The caller holds both locks, inside a change.
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
            // One buffer for every record copied: a ring grows with all its live items.
            let mut payload = Vec::new();
            for seq in head..end {
                let from = self.entry(ring, seq)?;
                record::read_into(segment, from.record.load(Ordering::Relaxed), &mut payload)?;
                // SAFETY: we hold the segment's lock (`guard`) and the caller the receive lock,
                // and `[position, hi)` lies in the new ring, past the end of the current one,
                // which no offset points into before `ring` is stored below (module
                // `# Safety`).
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
    /// segment's lock and checked the bound.
    fn put(self, guard: &RawGuard<'_>, payloads: &[&[u8]]) -> Result<()> {
        let area = self.area();
        let mut ring = self.ring_held(guard)?;
        let end = area.end.load(Ordering::Relaxed);
        // The live records as the senders saw them last: at least those the receivers left,
        // since `head` only moves on and an older one covers more.
        let was = self.senders_live_records(ring, end)?;
        // Every sequence number this call takes, and the next, must exist.
        if end.saturating_add(payloads.len() as u64) == u64::MAX {
            return Err(self.corrupt(format!(
                "its sequence numbers end at {end}, too near their last for {} more items",
                payloads.len()
            )));
        }
        let mut live = was;
        // Entries `end..next` are written and not yet committed: nobody but this call follows
        // them, and a grown ring copies them along with the live ones.
        let mut next = end;
        for payload in payloads {
            let need = record::size(payload.len());
            let mut at = live.room(ring, next, need);
            if at.is_none() && ring.is_some() {
                // The receivers may have moved `head` on since the senders read it.
                live = self.read_live_records(ring, next)?;
                at = live.room(ring, next, need);
            }
            let (current, at) = if let (Some(current), Some(at)) = (ring, at) {
                (current, at)
            } else {
                let (current, fresh, at) = self.make_room(guard, ring, next, need)?;
                ring = Some(current);
                live = fresh;
                (current, at)
            };
            if next == end && payloads.len() > 1 {
                self.prefetch_batch(current, end, at, payloads);
            }
            // SAFETY: we hold the segment's lock (`guard`), and `room` placed `[at, at + need)`
            // in the ring's free space by a view that covers at least the receivers' live
            // records (its `head` is no later than theirs), outside every live record and
            // every record this call wrote before (module `# Safety`).
            let (record, after) = unsafe { record::write(self.segment, guard, at, payload) }?;
            if live.head == next {
                live.first = record;
            }
            live.tail = after;
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
        // After the commit: a sender killed before these stores leaves copies of an older
        // state, which the next holder's recovery reads afresh (`Raw::lock_senders`).
        self.keep_senders_copies(live, Some(was));
        self.segment.note_writer();
        Ok(())
    }

    /// Fetches the lines a batch of `payloads` is about to write, from entry `end` and the
    /// record at `at` on, ahead of its stores ([`Mapping::prefetch_for_write`]): a consumer in
    /// another process holds most of them, having read the records and written the entries'
    /// states when it last went round the ring. Records that wrap around the ring's end, and
    /// entries past the last slot, are left to their stores.
    ///
    /// [`Mapping::prefetch_for_write`]: crate::segment::Mapping::prefetch_for_write
    fn prefetch_batch(self, ring: Ring, end: u64, at: u64, payloads: &[&[u8]]) {
        let map = self.segment.mapping();
        let bytes: u64 = payloads.iter().map(|p| record::size(p.len())).sum();
        // `at` lies in the ring (`LiveRecords::room`); records past its end wrap around.
        map.prefetch_for_write(at, bytes.min(ring.hi.saturating_sub(at)));
        let slot = end & (ring.slots - 1);
        let entries = (payloads.len() as u64).min(ring.slots - slot);
        map.prefetch_for_write(ring.entry_offset(end), entries * ENTRY_SIZE);
    }

    /// The first entry taken by a dead process, if any, with its sequence number.
    fn find_orphan(self, ring: &Ring, (head, end): (u64, u64)) -> Result<Option<(u64, &'a Entry)>> {
        let in_flight = self.in_flight();
        let (my_pid, my_start) = me();
        // This process holds every item in flight (see `layout.rs`): none is a dead taker's.
        if in_flight == 0
            || self.area().sole_taker.load(Ordering::Relaxed) == taker_mark(my_pid, my_start)
        {
            return Ok(None);
        }
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
                let alive = segment::process_alive_watched(pid, start);
                checked.push((pid, start, alive));
                alive
            };
            if !alive {
                return Ok(Some((seq, entry)));
            }
        }
        Ok(None)
    }

    /// The first ready entry at or after `hint`, with its sequence number, moving `hint` up to
    /// it.
    fn find_ready(self, ring: &Ring, (head, end): (u64, u64)) -> Result<Option<(u64, &'a Entry)>> {
        let area = self.area();
        let hint = area.hint.load(Ordering::Relaxed);
        // Derived, so untrusted: outside the window it is ignored.
        let from = if (head..=end).contains(&hint) {
            hint
        } else {
            head
        };
        for seq in from..end {
            let entry = self.entry(*ring, seq)?;
            if entry.state.load(Ordering::Relaxed) == READY {
                area.hint.store(seq, Ordering::Relaxed);
                return Ok(Some((seq, entry)));
            }
        }
        area.hint.store(end, Ordering::Relaxed);
        Ok(None)
    }

    /// The next item to take, with its entry: usually the first ready one; an item of a dead
    /// taker when none is ready, or every `ORPHAN_SCAN_EVERY` deliveries, until a look finds
    /// none during this hold of the receive lock (`scanned`). Each look walks every item in
    /// flight, a batch's own included, unless `sole_taker` names this process. So a batch does
    /// not look again every `ORPHAN_SCAN_EVERY` items, which would cost a walk past all it
    /// took so far: a taker that dies while a batch is taken is found by the next hold.
    fn next_to_take(
        self,
        ring: &Ring,
        window: (u64, u64),
        scanned: &mut bool,
    ) -> Result<Option<(u64, &'a Entry)>> {
        let ready = self.find_ready(ring, window)?;
        let orphans_first = ready.is_none_or(|(seq, _)| seq.is_multiple_of(ORPHAN_SCAN_EVERY));
        let orphan = if orphans_first && !*scanned {
            let orphan = self.find_orphan(ring, window)?;
            *scanned = orphan.is_none();
            orphan
        } else {
            None
        };
        Ok(orphan.or(ready))
    }

    /// Takes up to `max` items (see [`Raw::next_to_take`]) into `received`, offering each
    /// payload to `accept`:
    /// an accepted item is acknowledged (`ack`: its state goes straight to acknowledged, one
    /// commit) or taken in flight; the first refused one is taken in flight and ends the
    /// batch. The caller holds the receive lock, inside a change, and calls
    /// [`Raw::finish_acks`] if any was acknowledged.
    ///
    /// Items are looked for in the receivers' window first, and in the senders' `end` only
    /// once that has none: returns the futex word `items` as it was before that look (a put
    /// after it changes the word), for a caller that found nothing and sleeps. A take that
    /// did not look at `end` found something, and returns `None`: it does not read the word
    /// every put writes.
    fn take(
        self,
        ring: Option<Ring>,
        max: usize,
        ack: bool,
        accept: &mut dyn FnMut(&[u8]) -> bool,
        received: &mut Received,
    ) -> Result<Option<u32>> {
        let area = self.area();
        let Some(ring) = ring else {
            // No put has built a ring: one would need the receive lock, which the caller holds.
            return Ok(Some(futex_value(&area.items)));
        };
        let mut window = self.receiver_window(Some(ring))?;
        let mut items_before_refresh = None;
        // This thread's kept buffer, taken on the first payload too long for the stack.
        let mut kept: Option<Vec<u8>> = None;
        // Whether a look for items of dead takers found none (see `Raw::next_to_take`).
        let mut scanned = false;
        // Every accepted item is taken in flight: `sole_taker` is kept once, before the first
        // (see `Raw::name_taker`), outside the loop.
        if !ack {
            self.name_taker();
        }
        // Reads `end` into the receivers' window, once, and `items` before it.
        let mut refresh = |window: &mut (u64, u64)| -> Result<bool> {
            if items_before_refresh.is_some() {
                return Ok(false);
            }
            items_before_refresh = Some(futex_value(&area.items));
            *window = self.refresh_receiver_end(Some(ring))?;
            Ok(true)
        };
        while received.accepted < max {
            // The receivers' window has nothing ready past `hint`: look at `end` before a
            // search that would find nothing.
            if area.hint.load(Ordering::Relaxed) >= window.1 {
                refresh(&mut window)?;
            }
            let (seq, entry) = match self.next_to_take(&ring, window, &mut scanned)? {
                Some(found) => found,
                None if refresh(&mut window)? => continue,
                None => break,
            };
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
                self.commit_ack(entry);
                received.acked += 1;
            } else {
                if ack {
                    // Only a refused item is taken in flight by a receive that acknowledges.
                    self.name_taker();
                }
                let (pid, start) = me();
                entry.taker_start.store(start, Ordering::Relaxed);
                crate::failpoint::hit("queue.taking");
                entry.taker_pid.store(pid, Ordering::Relaxed);
                entry.state.store(TAKEN, Ordering::Release); // commit
                crate::failpoint::hit("queue.taken");
            }
            if was == READY {
                count_up(&area.settled, 1);
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
                if received.taken.capacity() == 0 {
                    // Room for this item and the rest of the batch, as far as the window shows
                    // it, in one allocation.
                    let known = usize::try_from(window.1.saturating_sub(seq)).unwrap_or(usize::MAX);
                    let batch = (max - received.accepted + 1).min(known);
                    received.taken.reserve_exact(room_for::<(u64, u32)>(batch));
                }
                received.taken.push((seq, deliveries));
            }
        }
        if let Some(payload) = kept {
            codec::keep(&PAYLOAD, payload);
        }
        Ok(items_before_refresh)
    }

    /// Keeps `sole_taker` true (see `layout.rs`) before takes in flight by this process: names
    /// it if no item is in flight or the word names it already, and nobody (0) otherwise.
    /// The caller holds the receive lock, inside a change, and calls it before the commit of
    /// its first take in flight of the hold; its later takes add entries of this process.
    ///
    /// An item of a dead taker, which a take may take again, is in flight already and is not
    /// this process's: the word names nobody before the take writes the entry's new taker.
    #[inline(never)]
    fn name_taker(self) {
        let area = self.area();
        let (pid, start) = me();
        let mark = taker_mark(pid, start);
        let sole = area.sole_taker.load(Ordering::Relaxed);
        let now = if self.in_flight() == 0 || sole == mark {
            mark
        } else {
            0
        };
        if now != sole {
            area.sole_taker.store(now, Ordering::Relaxed);
        }
    }

    /// Acknowledges `entry` (ready, or in flight with this process): one commit, and the count
    /// of it. The caller holds the receive lock, inside a change, and calls
    /// [`Raw::finish_acks`] after.
    fn commit_ack(self, entry: &Entry) {
        entry.state.store(DONE, Ordering::Release); // commit
        crate::failpoint::hit("queue.acked");
        count_up(&self.area().acked, 1);
    }

    /// After acknowledgements, inside their change: moves `head` and bumps the futex words
    /// (`space`, and `items` on a closed queue, whose receivers wait for nothing to be left
    /// unacknowledged). Returns the sleepers to wake.
    fn finish_acks(self, ring: Option<&Ring>) -> ToWake {
        let area = self.area();
        if let Some(&ring) = ring
            && let Ok((head, end)) = self.receiver_window(Some(ring))
        {
            // Moving `head` is housekeeping: a failure here leaves it for the next ack.
            let _ = self.advance_head(ring, head, end);
        }
        let space = self.bump_space();
        let items = area.closed.load(Ordering::Relaxed) != OPEN && bump_futex(&area.items);
        ToWake { items, space }
    }

    /// Bumps `space` after acknowledgements, for a holder of the receive lock; returns whether
    /// it counted sleepers. Senders sleep on it only while a bounded queue is full, under
    /// their own lock: then the bump is [`bump_futex`]'s read-modify-write. An unbounded
    /// queue's only sleepers on it are joiners, which count themselves under the receive lock
    /// as the caller bumps it, so a load and a store do: no locked instruction per item.
    #[inline]
    fn bump_space(self) -> bool {
        let area = self.area();
        if area.capacity.load(Ordering::Relaxed) != 0 {
            return bump_futex(&area.space);
        }
        let before = area.space.load(Ordering::Relaxed);
        area.space.store(
            u64::from((before as u32).wrapping_add(1)),
            Ordering::Release,
        );
        before >= SLEEPER
    }

    /// After acknowledgements, still under the receive lock: wakes the senders and joiners,
    /// and the receivers of a closed queue, that [`Raw::finish_acks`] found asleep.
    fn wake_after_acks(self, held: &RawGuard<'_>, sleepers: ToWake) {
        let area = self.area();
        wake(held, &area.items, sleepers.items);
        wake(held, &area.space, sleepers.space);
    }

    /// The current ring and the receivers' window in it, for the calls that look up entries
    /// this process holds in flight ([`Raw::held_entry`]): read once per call, not once per
    /// item. `None` before the first put: no item is in flight.
    fn held_window(self, held: &RawGuard<'_>) -> Result<Option<(Ring, (u64, u64))>> {
        let Some(ring) = self.ring_held(held)? else {
            return Ok(None);
        };
        Ok(Some((ring, self.receiver_window(Some(ring))?)))
    }

    /// The entry of `seq` in the current ring and window ([`Raw::held_window`]) if this
    /// process holds it in flight.
    fn held_entry(
        self,
        window: Option<(Ring, (u64, u64))>,
        seq: u64,
    ) -> std::result::Result<&'a Entry, QueueError> {
        let not_in_flight = || QueueError::NotInFlight {
            name: self.segment.name().clone(),
            seq,
        };
        let (ring, (head, end)) = window.ok_or_else(not_in_flight)?;
        if !(head..end).contains(&seq) {
            return Err(not_in_flight());
        }
        let entry = self.entry(ring, seq)?;
        if !held_by_me(entry) {
            return Err(not_in_flight());
        }
        Ok(entry)
    }

    /// Acknowledges items `seqs`, which this process holds in flight, under one lock: they
    /// leave the queue for good (each by a commit of its own), and a sender waiting for room
    /// is woken. [`QueueError::NotInFlight`] names the first that this process does not hold,
    /// once the others are acknowledged.
    pub(super) fn ack(self, seqs: &[u64]) -> std::result::Result<(), QueueError> {
        let area = self.area();
        let guard = self.lock_receivers()?;
        let mut missing = None;
        let mut acked = 0;
        let mut sleepers = ToWake::default();
        {
            let _change = Change::begin(&area.changes, &guard);
            let held = self.held_window(&guard)?;
            for &seq in seqs {
                match self.held_entry(held, seq) {
                    Ok(entry) => {
                        self.commit_ack(entry);
                        acked += 1;
                    }
                    Err(err) => {
                        missing.get_or_insert(err);
                    }
                }
            }
            if acked > 0 {
                sleepers = self.finish_acks(held.map(|(ring, _)| ring).as_ref());
            }
        }
        self.wake_after_acks(&guard, sleepers);
        missing.map_or(Ok(()), Err)
    }

    /// Acknowledges the oldest item this process holds in flight (`task_done`);
    /// [`QueueError::NoTaskInFlight`] if it holds none.
    pub(super) fn ack_oldest(self) -> std::result::Result<(), QueueError> {
        let guard = self.lock_receivers()?;
        if let Some(ring) = self.ring_held(&guard)? {
            let (head, end) = self.receiver_window(Some(ring))?;
            for seq in head..end {
                let entry = self.entry(ring, seq)?;
                if held_by_me(entry) {
                    self.acknowledge(&guard, ring, entry);
                    return Ok(());
                }
            }
        }
        Err(QueueError::NoTaskInFlight {
            name: self.segment.name().clone(),
        })
    }

    /// Commits the acknowledgement of `entry` (in `ring`), which this process holds in
    /// flight, and wakes (see [`Raw::wake_after_acks`]); the caller holds the receive lock.
    fn acknowledge(self, guard: &RawGuard<'_>, ring: Ring, entry: &Entry) {
        let area = self.area();
        let sleepers = {
            let _change = Change::begin(&area.changes, guard);
            self.commit_ack(entry);
            self.finish_acks(Some(&ring))
        };
        self.wake_after_acks(guard, sleepers);
    }

    /// Puts items `seqs`, which this process holds in flight, back in their places under one
    /// lock, and wakes the waiting receivers; after an immediate close they are discarded
    /// instead. [`QueueError::NotInFlight`] names the first that this process does not hold,
    /// once the others are put back.
    pub(super) fn nack(self, seqs: &[u64]) -> std::result::Result<(), QueueError> {
        let area = self.area();
        let guard = self.lock_receivers()?;
        if area.closed.load(Ordering::Relaxed) == CLOSED_NOW {
            drop(guard);
            return self.ack(seqs);
        }
        let mut missing = None;
        let change = Change::begin(&area.changes, &guard);
        let held = self.held_window(&guard)?;
        for &seq in seqs {
            let entry = match self.held_entry(held, seq) {
                Ok(entry) => entry,
                Err(err) => {
                    missing.get_or_insert(err);
                    continue;
                }
            };
            entry.state.store(READY, Ordering::Release); // commit
            crate::failpoint::hit("queue.returned");
            count_down(&area.settled, 1);
            if area.hint.load(Ordering::Relaxed) > seq {
                area.hint.store(seq, Ordering::Relaxed);
            }
        }
        let sleepers = bump_futex(&area.items);
        drop(change);
        wake(&guard, &area.items, sleepers);
        missing.map_or(Ok(()), Err)
    }

    /// Copies of the payloads of the ready items, oldest first.
    pub(super) fn ready_payloads(self) -> Result<Vec<(u64, Vec<u8>)>> {
        let _held = self.lock_receivers()?;
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

/// The live records as the senders see them: entries from `head` on, whose records lie from
/// `first` (the record of entry `head`) to `tail` (where the record of the last entry ends).
/// `first` and `tail` mean nothing while no entry is live.
#[derive(Clone, Copy, PartialEq, Eq)]
struct LiveRecords {
    head: u64,
    first: u64,
    tail: u64,
}

impl LiveRecords {
    /// Where a record of `need` bytes fits for entry `next` in `ring`'s free space, if
    /// anywhere, by this view of the live records (which covers at least the receivers').
    fn room(self, ring: Option<Ring>, next: u64, need: u64) -> Option<u64> {
        let ring = ring?;
        if next - self.head >= ring.slots || need > ring.bytes() {
            return None;
        }
        if self.head == next {
            return Some(ring.lo);
        }
        fit(ring, self.first, self.tail, need)
    }
}

/// How many values of type `V` to reserve room for, for `wanted` of them: all, up to 64 KiB of
/// them (at least one). `wanted` comes from the segment's words, which a damaged segment may
/// make huge; the rest of a larger batch grows the room as it comes.
fn room_for<V>(wanted: usize) -> usize {
    const MOST_BYTES: usize = 64 << 10;
    wanted.clamp(1, (MOST_BYTES / size_of::<V>().max(1)).max(1))
}

/// Whether `entry` is in flight with this process.
fn held_by_me(entry: &Entry) -> bool {
    let taker = (
        entry.taker_pid.load(Ordering::Relaxed),
        entry.taker_start.load(Ordering::Relaxed),
    );
    entry.state.load(Ordering::Relaxed) == TAKEN && taker == me()
}

/// Which futex words have sleepers to wake.
#[derive(Clone, Copy, Default)]
struct ToWake {
    items: bool,
    space: bool,
}

/// The sleepers' count in the high half of a futex word (see "Space and blocking").
const SLEEPER: u64 = 1 << 32;

/// The futex word in the low half of `word`, read before a look at the queue that may end in
/// a sleep on it.
fn futex_value(word: &AtomicU64) -> u32 {
    word.load(Ordering::Acquire) as u32
}

/// Bumps the futex word in the low half of `word` and zeroes the count of sleepers in its high
/// half, in one read-modify-write; returns whether it counted any. The puts that follow a
/// wake-up, before the woken sleeper has run, then find none and make no system call.
fn bump_futex(word: &AtomicU64) -> bool {
    let next = |w: u64| Some(u64::from((w as u32).wrapping_add(1)));
    // `next` never declines: the update cannot fail.
    let before = word
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, next)
        .unwrap_or_else(|w| w);
    before >= SLEEPER
}

/// Wakes every sleeper on `word` if [`bump_futex`] found any. The caller holds its lock (`_held`)
/// for the bump and the call both: a waker killed between the two leaves the wake-up to the
/// lock's recovery ([`Raw::wake_everyone`]), where a call made after unlocking would have
/// been lost with the count.
fn wake(_held: &RawGuard<'_>, word: &AtomicU64, sleepers: bool) {
    if sleepers {
        crate::failpoint::hit("queue.sleepers_uncounted");
        sys::futex_wake_low_half(word, u32::MAX);
    }
}

/// Once per wait, before its sleep: unlocks and spins while the futex word of `word` is still
/// `seen` (see [`spin_while`]), and the caller takes its lock again and reads the queue again
/// (`None`); the next time, hands the guard back for the sleep (and the wait after it spins
/// again). A put or an acknowledgement coming within microseconds is met without a sleep and
/// a wake-up.
fn spin_before_sleep<'g>(
    spun: &mut bool,
    guard: RawGuard<'g>,
    word: &AtomicU64,
    seen: u32,
    deadline: Option<std::time::Instant>,
) -> Option<RawGuard<'g>> {
    if *spun {
        *spun = false;
        return Some(guard);
    }
    *spun = true;
    drop(guard);
    spin_while(word, seen, deadline);
    None
}

/// Counts itself among the sleepers of `word` if its futex word is still `seen` (read before
/// the caller looked at the queue), unlocks, and sleeps while it is, for at most `sleep`
/// (`None`: until woken). A word that moved on meanwhile (a change the caller's look may have
/// missed) returns at once, and the caller looks again. The count is the waker's to clear
/// ([`bump_futex`]).
fn sleep_on(guard: RawGuard<'_>, word: &AtomicU64, seen: u32, sleep: Option<Duration>) {
    // A read-modify-write on the whole word: of it and a waker's bump, the later sees the
    // earlier (see "Space and blocking"). Saturating: a count never wraps to zero.
    let counted = word.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
        (w as u32 == seen).then(|| w.checked_add(SLEEPER).unwrap_or(w))
    });
    drop(guard);
    if counted.is_ok() {
        sys::futex_wait_low_half(word, seen, sleep);
    }
}
