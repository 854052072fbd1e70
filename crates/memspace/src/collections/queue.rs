//! [`Queue<T>`]: a multi-producer, multi-consumer FIFO queue for threads and processes, bounded
//! or not, that does not lose an item when the consumer that took it dies.
//!
//! The delivery guarantee, the space a queue uses and how calls block are documented on
//! [`Queue`]; this page is how they are kept.
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
//!             receivers, senders   how many threads sleep on `items` / `space`
//! ring:       [u64 slots][u64 bytes][16 reserved][slots entries][bytes of records]
//! entry:      [u64 record][u32 state][u32 deliveries][u32 taker pid][u32][u64 taker start]
//! record:     [u32 length][u32 CRC-32][payload][padding to 8]  (record.rs)
//! ```
//!
//! Entry `seq` lives in slot `seq % slots`; `state` is 1 ready, 2 taken, 3 acknowledged. The
//! records of entries `head..end` lie one after the other in the ring's byte area, wrapping
//! around at its end: a new record goes after the last one, or at the start of the area if it
//! fits before the record of `head`.
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
//! and marks the lock consistent. Items taken by a dead process are not a lock matter: they
//! stay taken until a receiver finds their taker dead (pid gone, or reused by a process with
//! another start time) and delivers them again.
//!
//! # Space and blocking
//!
//! See [`Queue`]. Outgrown rings are never reused, so `verify`, which reads without the lock,
//! never finds a ring it loaded rewritten under it as another ring. Sleepers read the futex
//! word under the lock and sleep only while it is unchanged, so a wake-up between unlocking and
//! sleeping is not lost; `receivers` and `senders` let a put or an ack skip the wake-up system
//! call when nobody sleeps. A sleeper killed while counted leaves a count too high, which costs
//! wake-ups, never a lost one.
//!
//! # Safety
//!
//! The one `unsafe` operation is `record::write`, whose contract is that no published offset
//! points into the bytes written. It is called under the lock, in two places: in `Raw::put`,
//! at a position `free_position` found in the ring's free space (outside the records of the
//! live entries `head..end`, the only ones anybody follows); and in `Raw::grow`, in a new ring
//! past the end of the current one, which no offset points into until `ring` is stored.

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{codec, record};
#[cfg(doc)]
use crate::error::OpenError;
use crate::error::{Error, Result};
use crate::inspect::Report;
use crate::redis::{Object, Received, RedisQueue};
use crate::segment::{self, DATA_START, Kind, Segment, SegmentName, SegmentOptions};
use crate::sync::{RawGuard, lock_and_repair};
use crate::sys;

/// Slots of the first ring; each larger ring doubles them.
const INITIAL_SLOTS: u64 = 64;
/// The most slots a ring can have.
const MAX_SLOTS: u64 = 1 << 40;
/// Record bytes of the first ring.
const INITIAL_BYTES: u64 = 8 << 10;
/// Bytes before a ring's entries: `slots`, `bytes` and two reserved words.
const RING_HEADER: u64 = 32;
const RING_ALIGN: u64 = 64;
const ENTRY_SIZE: u64 = 32;
/// How often a waiting receiver looks for items taken by processes that died meanwhile.
const REDELIVERY_CHECK: Duration = Duration::from_millis(50);
/// Every this many deliveries, a receiver looks for items of dead takers first even when other
/// items are ready (it always looks when none is).
const ORPHAN_SCAN_EVERY: u64 = 16;
/// How often [`verify`] tries to read the queue between two changes.
const VERIFY_ATTEMPTS: u32 = 16;

const READY: u32 = 1;
const TAKEN: u32 = 2;
const DONE: u32 = 3;

/// The queue's words in the segment's kind area (see the module docs).
#[repr(C)]
pub(crate) struct QueueArea {
    ring: AtomicU64,
    head: AtomicU64,
    end: AtomicU64,
    capacity: AtomicU64,
    waiting: AtomicU64,
    unacked: AtomicU64,
    hint: AtomicU64,
    changes: AtomicU64,
    items: AtomicU32,
    space: AtomicU32,
    receivers: AtomicU32,
    senders: AtomicU32,
}

/// One slot of a ring (see the module docs).
#[repr(C)]
pub(crate) struct Entry {
    record: AtomicU64,
    state: AtomicU32,
    deliveries: AtomicU32,
    taker_pid: AtomicU32,
    reserved: AtomicU32,
    taker_start: AtomicU64,
}

const _: () = assert!(size_of::<Entry>() == ENTRY_SIZE as usize);
const _: () = assert!(size_of::<QueueArea>() == 80);

/// Why a queue operation did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// `try_put`: a bounded queue holds its capacity of unacknowledged items.
    #[error(
        "queue `{name}` is full: {capacity} items are waiting or not yet acknowledged; retry \
         once a consumer has acknowledged one, or use `put` to wait"
    )]
    Full {
        /// The queue.
        name: SegmentName,
        /// Its bound.
        capacity: u64,
    },
    /// `try_get`/`try_receive`: no item is ready.
    #[error("queue `{name}` is empty")]
    Empty {
        /// The queue.
        name: SegmentName,
    },
    /// A timed call gave up.
    #[error("queue `{name}`: gave up after waiting {waited:?}")]
    Timeout {
        /// The queue.
        name: SegmentName,
        /// The timeout the caller gave.
        waited: Duration,
    },
    /// [`Delivery::ack`] or [`Delivery::nack`] in a process that does not hold the item: the
    /// delivery was copied into a child by `fork`. The item stays with the process that
    /// received it.
    #[error(
        "item {seq} of queue `{name}` is not in flight with this process (was the delivery \
         inherited through fork?); only the receiving process can acknowledge it"
    )]
    NotInFlight {
        /// The queue.
        name: SegmentName,
        /// The item's sequence number.
        seq: u64,
    },
    /// A receive found that the next item is not a `T` (a value of another type was put, by
    /// a program or by `memspace queue put --force`). The item is in flight with the error:
    /// [`Undecodable::discard`] removes it for good (after [`Undecodable::payload`] or
    /// [`Undecodable::decode`] has kept it as a dead letter, if wanted), and dropping the error
    /// puts it back in its place.
    #[error(transparent)]
    Undecodable(Box<Undecodable>),
    /// The segment, the lock or the encoding failed.
    #[error(transparent)]
    Other(#[from] Error),
}

/// A multi-producer, multi-consumer FIFO queue shared by threads and processes, bounded or
/// not, that does not lose an item when the consumer that took it dies.
///
/// Items are encoded with `MessagePack` (so `memspace queue get NAME` prints any item as
/// JSON) and carry a CRC-32. A handle travels to a child process as the queue's name.
///
/// # The delivery guarantee
///
/// [`Queue::receive`] hands out an item as a [`Delivery`]: the item stays in the queue, marked
/// as taken by the receiving process (its pid and start time), until the delivery is
/// acknowledged with [`Delivery::ack`]. In plain words:
///
/// * **An acknowledged item is gone for good**: it is never delivered again, and an `ack` that
///   returned `Ok` is never undone, whoever is killed afterwards.
/// * **An item is never lost before it is acknowledged.** If the receiver drops the delivery
///   without acknowledging it, the item goes back at once, in its old place (before the items
///   put after it). If the receiving process *dies* first (a `kill -9`, a crash), the item is
///   delivered again to another receiver, with [`Delivery::deliveries`] counting the attempts:
///   at once when no other item is ready, and at the latest with the 16th item delivered after
///   the death (a receiver already waiting looks every 50 ms).
/// * So delivery is **at least once**, and exactly once for receivers that are not killed
///   between receiving and acknowledging: an item reaches the application twice only if the
///   first receiver died holding it, and the second delivery says so (`deliveries() > 1`).
///
/// [`Queue::get`] receives and acknowledges in one step: *at most once* from the caller's
/// side. An item it returned is gone from the queue, whatever happens to the caller next.
///
/// A bounded queue counts items in flight against its capacity: a put waits until an item is
/// acknowledged, not merely received.
///
/// # On Redis
///
/// A name `redis://HOST:PORT/NAME` puts the queue on a Redis server, as a stream read through
/// a consumer group, with the same methods. One difference: Redis cannot see that a receiver
/// on another machine died, so an item in flight for longer than the queue's lease (30 s, or
/// `?lease_ms=N` in the name) is delivered again, and its first receiver's `ack` is then
/// [`QueueError::NotInFlight`]. Waiting receivers block in the server for 100 ms at a time;
/// waiting senders of a full bounded queue poll.
///
/// On Redis every method can also fail with
/// [`Error::RedisUnreachable`](crate::Error::RedisUnreachable), or with
/// [`OpenError::NotFound`](crate::OpenError::NotFound) or
/// [`OpenError::Replaced`](crate::OpenError::Replaced) once the queue was removed (or removed and
/// created again) through another handle (see [`crate::backend`]).
///
/// # Space
///
/// Items live in a ring whose slots and bytes are reused as items are acknowledged, so a
/// queue's size follows the most items (and bytes) it held at once, not how many went through
/// it. A full ring is replaced by one twice as large, and the segment never shrinks; outgrown
/// rings are not reused, which at most doubles the total. Space is freed in order: an item held
/// in flight for a long time keeps the space of every item put after it until it is
/// acknowledged.
///
/// # Blocking
///
/// [`get`](Queue::get) and [`receive`](Queue::receive) sleep while nothing is ready,
/// [`put`](Queue::put) while a bounded queue is full, on futexes shared with every process:
/// no polling, except that a receiver waiting while items are in flight with others looks
/// every 50 ms whether their takers died. Each has a non-blocking (`try_`) and a timed
/// (`_timeout`) form. A put wakes every sleeping receiver, not just one: a receiver killed
/// between being woken and taking the item could otherwise strand it while the others sleep.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), memspace::collections::QueueError> {
/// use memspace::collections::Queue;
///
/// let jobs = Queue::<String>::bounded(2)?; // anonymous: removed with its last handle
/// jobs.put(&"first".into())?;
/// jobs.put(&"second".into())?;
/// assert!(jobs.try_put(&"third".into()).is_err()); // full
///
/// let job = jobs.receive()?; // in flight until acknowledged
/// assert_eq!(job.value(), "first");
/// job.ack()?;
/// assert_eq!(jobs.get()?, "second"); // receive and acknowledge at once
/// assert!(jobs.is_empty()?);
///
/// let name = format!("doc-queue-{}", std::process::id());
/// let named = Queue::<u32>::create(&name)?; // persists until removed
/// named.put(&7)?;
/// assert_eq!(Queue::<u32>::open(&name)?.get()?, 7);
/// named.unlink()?;
/// # Ok(())
/// # }
/// ```
pub struct Queue<T> {
    repr: Repr,
    _items: PhantomData<fn(T) -> T>,
}

/// Where the queue lives.
#[derive(Clone)]
enum Repr {
    Shm(Arc<Segment>),
    Redis(RedisQueue),
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            repr: self.repr.clone(),
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Debug` never waits: a Redis queue shows no count from the server.
        let mut out = f.debug_struct("Queue");
        out.field("name", self.name());
        if let Repr::Shm(_) = &self.repr {
            out.field("len", &self.area().waiting.load(Ordering::Acquire));
        }
        out.field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// The machinery, independent of the item type

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

/// A ring read from the segment and validated: its slots and record bytes lie inside the
/// committed, mapped size.
#[derive(Clone, Copy, Debug)]
struct Ring {
    at: u64,
    slots: u64,
    /// The record area is `[lo, hi)`.
    lo: u64,
    hi: u64,
}

impl Ring {
    fn entry_offset(self, seq: u64) -> u64 {
        // Cannot overflow: `lo` (past the last slot) was computed with checked arithmetic.
        self.at + RING_HEADER + (seq & (self.slots - 1)) * ENTRY_SIZE
    }

    fn bytes(self) -> u64 {
        self.hi - self.lo
    }
}

/// An item taken under the lock.
struct Taken {
    seq: u64,
    deliveries: u32,
    payload: Vec<u8>,
}

/// Marks the queue as changing (`changes` odd) for as long as it lives, so that [`verify`]
/// can tell a consistent reading from one that raced a holder of the lock. A holder killed
/// meanwhile leaves `changes` odd; recovery makes it even again.
struct Change<'a> {
    area: &'a QueueArea,
}

impl<'a> Change<'a> {
    fn begin(area: &'a QueueArea, _held: &RawGuard<'_>) -> Self {
        area.changes.fetch_add(1, Ordering::Relaxed);
        // The odd value is visible before any of the writes that follow.
        fence(Ordering::Release);
        Change { area }
    }
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        self.area.changes.fetch_add(1, Ordering::Release);
    }
}

/// The record size of a payload: header, payload, padding to 8.
fn record_size(payload_len: usize) -> u64 {
    (record::HEADER + payload_len as u64).next_multiple_of(8)
}

#[derive(Clone, Copy)]
struct Raw<'a> {
    segment: &'a Segment,
}

impl<'a> Raw<'a> {
    fn area(self) -> &'a QueueArea {
        self.segment.kind_area::<QueueArea>()
    }

    fn corrupt(self, what: String) -> Error {
        self.segment.corrupt(what)
    }

    /// A word of the segment's data area at `at` (8-aligned, mapped).
    fn word(self, at: u64) -> Result<&'a AtomicU64> {
        self.segment
            .data_range(|| "a ring's word".to_owned(), at, 8, 8)?;
        self.segment
            .mapping()
            .get::<AtomicU64>(at)
            .ok_or_else(|| self.corrupt(format!("word at {at} is not mapped or not aligned")))
    }

    /// The current ring, validated, or `None` before the first put.
    fn ring(self) -> Result<Option<Ring>> {
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

    fn entry(self, ring: Ring, seq: u64) -> Result<&'a Entry> {
        let at = ring.entry_offset(seq);
        self.segment
            .mapping()
            .get::<Entry>(at)
            .ok_or_else(|| self.corrupt(format!("entry {seq} at {at} is not mapped")))
    }

    /// `head` and `end`, checked against each other and the ring.
    fn window(self, ring: Option<Ring>) -> Result<(u64, u64)> {
        let area = self.area();
        let (head, end) = (
            area.head.load(Ordering::Relaxed),
            area.end.load(Ordering::Relaxed),
        );
        let slots = ring.map_or(0, |r| r.slots);
        // `end + 1` is the next sequence number: it must exist.
        match end.checked_sub(head) {
            Some(live) if live <= slots && end < u64::MAX => Ok((head, end)),
            _ => Err(self.corrupt(format!(
                "entries {head}..{end} do not fit the ring's {slots} slots"
            ))),
        }
    }

    /// The offset just past the record at `record`, which must lie inside the ring's record
    /// area.
    fn record_end(self, ring: Ring, record: u64) -> Result<u64> {
        if record < ring.lo || record >= ring.hi || !record.is_multiple_of(8) {
            return Err(self.corrupt(format!(
                "a record offset {record} lies outside the ring's records {}..{}",
                ring.lo, ring.hi
            )));
        }
        let end = record::end(self.segment, record)?;
        if end > ring.hi {
            return Err(self.corrupt(format!(
                "the record at {record} runs past the ring's end {}",
                ring.hi
            )));
        }
        Ok(end)
    }

    /// Takes the segment's lock, repairing the queue's derived words if a holder died.
    fn lock(self) -> Result<RawGuard<'a>> {
        lock_and_repair(self.segment, |guard| self.recover(guard))
    }

    /// Recounts the derived words from the committed state (see the module docs).
    fn recover(self, guard: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let _change = Change::begin(area, guard);
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
        // `_change` made `changes` odd, unless a holder killed inside a change had left it odd
        // already: then one more step, so that it ends even when `_change` is dropped.
        if area.changes.load(Ordering::Relaxed).is_multiple_of(2) {
            area.changes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Moves `head` past acknowledged entries; returns the new head.
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
        // Records of `head..end` occupy `[first, tail)`, or `[first, hi)` and `[lo, tail)`
        // once they wrapped around.
        Ok(if first < tail {
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
        })
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

    /// Appends one encoded item; the caller holds the lock and checked the bound.
    fn put(self, guard: &RawGuard<'_>, payload: &[u8]) -> Result<()> {
        let area = self.area();
        let need = record_size(payload.len());
        let ring = self.ring()?;
        let (mut head, end) = self.window(ring)?;
        let _change = Change::begin(area, guard);
        let mut at = None;
        if let Some(current) = ring {
            head = self.advance_head(current, head, end)?;
            if end - head < current.slots {
                at = self.free_position(current, head, end, need)?;
            }
        }
        let (ring, at) = if let (Some(current), Some(at)) = (ring, at) {
            (current, at)
        } else {
            let grown = self.grow(guard, ring, (head, end), need)?;
            let at = self.free_position(grown, head, end, need)?.ok_or_else(|| {
                self.corrupt("a freshly built ring has no room for its record".to_owned())
            })?;
            (grown, at)
        };
        // SAFETY: we hold the lock (`guard`), and `free_position` placed `[at, at + need)` in
        // the ring's free space, outside every live record (module `# Safety`).
        let (record, _) = unsafe { record::write(self.segment, guard, at, payload) }?;
        let entry = self.entry(ring, end)?;
        entry.record.store(record, Ordering::Relaxed);
        entry.deliveries.store(0, Ordering::Relaxed);
        entry.taker_pid.store(0, Ordering::Relaxed);
        entry.taker_start.store(0, Ordering::Relaxed);
        entry.state.store(READY, Ordering::Relaxed);
        crate::failpoint::hit("queue.written");
        // Commit: the record and the entry happen-before any Acquire load of `end`.
        area.end.store(end + 1, Ordering::Release);
        crate::failpoint::hit("queue.committed");
        area.waiting.fetch_add(1, Ordering::Relaxed);
        area.unacked.fetch_add(1, Ordering::Relaxed);
        area.items.fetch_add(1, Ordering::Release);
        self.segment.note_writer();
        Ok(())
    }

    /// The first entry taken by a dead process, if any.
    fn find_orphan(self, ring: Ring, (head, end): (u64, u64)) -> Result<Option<u64>> {
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
            let entry = self.entry(ring, seq)?;
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
    fn find_ready(self, ring: Ring, (head, end): (u64, u64)) -> Result<Option<u64>> {
        let area = self.area();
        let hint = area.hint.load(Ordering::Relaxed);
        // Derived, so untrusted: outside the window it is ignored.
        let from = if (head..=end).contains(&hint) {
            hint
        } else {
            head
        };
        for seq in from..end {
            if self.entry(ring, seq)?.state.load(Ordering::Relaxed) == READY {
                area.hint.store(seq, Ordering::Relaxed);
                return Ok(Some(seq));
            }
        }
        area.hint.store(end, Ordering::Relaxed);
        Ok(None)
    }

    /// Takes the next item: usually the first ready one; an item of a dead taker when none is
    /// ready, or every `ORPHAN_SCAN_EVERY` deliveries. `None` if there is nothing to take.
    fn take(self, guard: &RawGuard<'_>) -> Result<Option<Taken>> {
        let area = self.area();
        let Some(ring) = self.ring()? else {
            return Ok(None);
        };
        let window = self.window(Some(ring))?;
        let _change = Change::begin(area, guard);
        let ready = self.find_ready(ring, window)?;
        let orphans_first = ready.is_none_or(|seq| seq.is_multiple_of(ORPHAN_SCAN_EVERY));
        let orphan = if orphans_first {
            self.find_orphan(ring, window)?
        } else {
            None
        };
        let Some(seq) = orphan.or(ready) else {
            return Ok(None);
        };
        let entry = self.entry(ring, seq)?;
        let was = entry.state.load(Ordering::Relaxed);
        let record = entry.record.load(Ordering::Relaxed);
        self.record_end(ring, record)?;
        let payload = record::read(self.segment, record)?;
        let (pid, start) = me();
        entry.taker_start.store(start, Ordering::Relaxed);
        entry.taker_pid.store(pid, Ordering::Relaxed);
        // Counted before the commit: a receiver killed in between counts as an attempt, so the
        // count may overstate deliveries but never hides one.
        let deliveries = entry.deliveries.load(Ordering::Relaxed).saturating_add(1);
        entry.deliveries.store(deliveries, Ordering::Relaxed);
        entry.state.store(TAKEN, Ordering::Release); // commit
        crate::failpoint::hit("queue.taken");
        if was == READY {
            area.waiting.fetch_sub(1, Ordering::Relaxed);
            area.hint.store(seq + 1, Ordering::Relaxed);
        }
        Ok(Some(Taken {
            seq,
            deliveries,
            payload,
        }))
    }

    /// The entry of `seq` if this process holds it in flight.
    fn held_entry(self, seq: u64) -> std::result::Result<(Ring, &'a Entry), QueueError> {
        let not_in_flight = || QueueError::NotInFlight {
            name: self.segment.name().clone(),
            seq,
        };
        let ring = self.ring()?.ok_or_else(not_in_flight)?;
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

    fn ack(self, seq: u64) -> std::result::Result<(), QueueError> {
        let area = self.area();
        let guard = self.lock()?;
        let (ring, entry) = self.held_entry(seq)?;
        let change = Change::begin(area, &guard);
        entry.state.store(DONE, Ordering::Release); // commit
        crate::failpoint::hit("queue.acked");
        area.unacked.fetch_sub(1, Ordering::Relaxed);
        let (head, end) = self.window(Some(ring))?;
        self.advance_head(ring, head, end)?;
        area.space.fetch_add(1, Ordering::Release);
        drop(change);
        let wake = area.senders.load(Ordering::Relaxed) != 0;
        drop(guard);
        if wake {
            sys::futex_wake(&area.space, u32::MAX);
        }
        Ok(())
    }

    fn nack(self, seq: u64) -> std::result::Result<(), QueueError> {
        let area = self.area();
        let guard = self.lock()?;
        let (_, entry) = self.held_entry(seq)?;
        let change = Change::begin(area, &guard);
        entry.state.store(READY, Ordering::Release); // commit
        crate::failpoint::hit("queue.returned");
        area.waiting.fetch_add(1, Ordering::Relaxed);
        if area.hint.load(Ordering::Relaxed) > seq {
            area.hint.store(seq, Ordering::Relaxed);
        }
        area.items.fetch_add(1, Ordering::Release);
        drop(change);
        let wake = area.receivers.load(Ordering::Relaxed) != 0;
        drop(guard);
        if wake {
            sys::futex_wake(&area.items, u32::MAX);
        }
        Ok(())
    }

    /// Copies of the payloads of the ready items, oldest first.
    fn ready_payloads(self) -> Result<Vec<(u64, Vec<u8>)>> {
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

// ---------------------------------------------------------------------------------------------
// Deliveries

/// A received item, in flight until [`ack`](Delivery::ack)ed.
///
/// Dropped without an ack, it goes back to the queue in its old place; if its process dies
/// first, it is delivered again to another receiver (see [`Queue`]'s delivery guarantee).
#[must_use = "an item that is not acknowledged goes back to the queue"]
pub struct Delivery<'a, T> {
    queue: &'a Queue<T>,
    seq: u64,
    deliveries: u32,
    /// Present until acknowledged.
    value: Option<T>,
    /// The process that received it: a forked copy of the delivery must not put it back.
    pid: u32,
    settled: bool,
    /// For a Redis queue: the stream entry and its receiver.
    remote: Option<Received>,
}

impl<T: fmt::Debug> fmt::Debug for Delivery<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", self.queue.name())
            .field("seq", &self.seq)
            .field("value", &self.value)
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

impl<T> Delivery<'_, T> {
    /// The item.
    ///
    /// # Panics
    ///
    /// Never: the value is only moved out by [`ack`](Delivery::ack), which consumes the
    /// delivery.
    pub fn value(&self) -> &T {
        self.value
            .as_ref()
            .expect("the value is present until acknowledged")
    }

    /// How many times the item has been handed out, this time included: 1 the first time,
    /// more after a receiver put it back or died holding it (a receiver killed while taking
    /// it counts too).
    #[must_use]
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// The item's sequence number in its queue (increasing in the order items were put).
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Acknowledges the item: it leaves the queue for good, and frees a place in a bounded
    /// queue. Returns the item.
    ///
    /// # Errors
    ///
    /// [`QueueError::NotInFlight`] in a forked child of the receiver; [`QueueError::Other`] if
    /// the queue's segment is damaged. The item then stays in flight, and goes back to the
    /// queue when the delivery is dropped (or its receiver ends).
    ///
    /// # Panics
    ///
    /// Never: the value is present until this call, which consumes the delivery.
    pub fn ack(mut self) -> std::result::Result<T, QueueError> {
        match (&self.remote, &self.queue.repr) {
            (Some(item), Repr::Redis(queue)) => {
                if !queue.ack(item)? {
                    self.settled = true;
                    return Err(QueueError::NotInFlight {
                        name: self.queue.name().clone(),
                        seq: self.seq,
                    });
                }
            }
            _ => self.queue.raw().ack(self.seq)?,
        }
        self.settled = true;
        Ok(self
            .value
            .take()
            .expect("the value is present until acknowledged"))
    }

    /// Puts the item back now, in its old place (what dropping the delivery does, with the
    /// error reported).
    ///
    /// # Errors
    ///
    /// As [`Delivery::ack`].
    pub fn nack(mut self) -> std::result::Result<(), QueueError> {
        self.settled = true;
        match (&self.remote, &self.queue.repr) {
            (Some(item), Repr::Redis(queue)) => {
                if queue.nack(item)? {
                    Ok(())
                } else {
                    Err(QueueError::NotInFlight {
                        name: self.queue.name().clone(),
                        seq: self.seq,
                    })
                }
            }
            _ => self.queue.raw().nack(self.seq),
        }
    }
}

impl<T> Drop for Delivery<'_, T> {
    fn drop(&mut self) {
        if !self.settled && self.pid == sys::pid() {
            // If this fails the item is still recorded as ours, and is delivered again once
            // this process has ended (or, on Redis, its lease has run out): nothing is lost,
            // so the error can be dropped.
            match (&self.remote, &self.queue.repr) {
                (Some(item), Repr::Redis(queue)) => {
                    let _ = queue.nack(item);
                }
                _ => {
                    let _ = self.queue.raw().nack(self.seq);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Undecodable items

/// An item a receiver took but could not decode as the queue's type, in flight with the
/// receiving process until it is [`discard`](Undecodable::discard)ed or put back (which
/// dropping it does). It comes in [`QueueError::Undecodable`].
///
/// Without it a receiver of `T` could never get past such an item: putting it back makes it
/// the next one again.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), memspace::collections::QueueError> {
/// use memspace::collections::{Queue, QueueError};
///
/// let name = format!("doc-undecodable-{}", std::process::id());
/// let numbers = Queue::<u64>::create(&name)?;
/// Queue::<String>::open(&name)?.put(&"not a number".to_owned())?;
/// numbers.put(&7)?;
///
/// let dead_letters = Queue::<String>::new()?;
/// match numbers.get() {
///     Err(QueueError::Undecodable(item)) => {
///         dead_letters.put(&item.decode::<String>()?)?; // keep it elsewhere, or not
///         item.discard()?; // gone from `numbers` for good
///     }
///     other => panic!("expected an undecodable item, got {other:?}"),
/// }
/// assert_eq!(numbers.get()?, 7);
/// assert_eq!(dead_letters.get()?, "not a number");
/// numbers.unlink()?;
/// # Ok(())
/// # }
/// ```
pub struct Undecodable {
    repr: Repr,
    name: SegmentName,
    seq: u64,
    deliveries: u32,
    expected: &'static str,
    payload: Vec<u8>,
    source: rmp_serde::decode::Error,
    /// The process that received it: a forked copy must not put it back.
    pid: u32,
    settled: bool,
    /// For a Redis queue: the stream entry and its receiver.
    remote: Option<Received>,
}

impl fmt::Debug for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Undecodable")
            .field("queue", &self.name)
            .field("seq", &self.seq)
            .field("deliveries", &self.deliveries)
            .field("expected", &self.expected)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "item {} of queue `{}` cannot be read as `{}` (was it put with another type?); it \
             stays in flight with this error, which puts it back when dropped: call `discard` \
             on it to remove the item",
            self.seq, self.name, self.expected
        )
    }
}

impl std::error::Error for Undecodable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl Undecodable {
    /// The queue.
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        &self.name
    }

    /// The item's sequence number in its queue (as [`Delivery::seq`]).
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// How many times the item has been handed out, this time included (as
    /// [`Delivery::deliveries`]).
    #[must_use]
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// The Rust type the receiver expected.
    #[must_use]
    pub fn expected(&self) -> &'static str {
        self.expected
    }

    /// The item as stored: its `MessagePack` encoding.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Decodes the item as a `U` instead (for example the type another program put it as).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if it is not a `U` either.
    pub fn decode<U: DeserializeOwned>(&self) -> Result<U> {
        codec::decode(&self.payload).map_err(|source| Error::Decode {
            name: self.name.clone(),
            index: self.seq,
            expected: std::any::type_name::<U>(),
            source,
        })
    }

    /// Acknowledges the item without reading it: it leaves the queue for good, and frees a
    /// place in a bounded queue. Returns its payload.
    ///
    /// # Errors
    ///
    /// As [`Delivery::ack`]: the item then stays in flight, and goes back to the queue as
    /// this value is dropped.
    pub fn discard(mut self) -> std::result::Result<Vec<u8>, QueueError> {
        self.settle(true)?;
        Ok(std::mem::take(&mut self.payload))
    }

    /// Puts the item back now, in its old place (what dropping this value does, with the
    /// error reported).
    ///
    /// # Errors
    ///
    /// As [`Delivery::nack`].
    pub fn nack(mut self) -> std::result::Result<(), QueueError> {
        self.settled = true;
        self.settle(false)
    }

    /// Acknowledges the item (`ack`) or puts it back; marks it settled once that is done.
    fn settle(&mut self, ack: bool) -> std::result::Result<(), QueueError> {
        let done = match (&self.remote, &self.repr) {
            (Some(item), Repr::Redis(queue)) if ack => queue.ack(item)?,
            (Some(item), Repr::Redis(queue)) => queue.nack(item)?,
            (_, Repr::Shm(segment)) if ack => Raw { segment }.ack(self.seq).map(|()| true)?,
            (_, Repr::Shm(segment)) => Raw { segment }.nack(self.seq).map(|()| true)?,
            (None, Repr::Redis(_)) => false,
        };
        self.settled = true;
        if done {
            Ok(())
        } else {
            Err(QueueError::NotInFlight {
                name: self.name.clone(),
                seq: self.seq,
            })
        }
    }
}

impl Drop for Undecodable {
    fn drop(&mut self) {
        if !self.settled && self.pid == sys::pid() {
            // As for a dropped `Delivery`: if this fails the item is still recorded as ours, and
            // is delivered again once this process has ended (or its lease has run out).
            let _ = self.settle(false);
        }
    }
}

impl<T> Queue<T> {
    /// The error of a receive that took item `seq` and could not decode it as a `T`; the
    /// item stays in flight with it.
    fn undecodable(
        &self,
        seq: u64,
        deliveries: u32,
        payload: Vec<u8>,
        remote: Option<Received>,
        source: rmp_serde::decode::Error,
    ) -> QueueError {
        QueueError::Undecodable(Box::new(Undecodable {
            repr: self.repr.clone(),
            name: self.name().clone(),
            seq,
            deliveries,
            expected: std::any::type_name::<T>(),
            payload,
            source,
            pid: sys::pid(),
            settled: false,
            remote,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// The typed handle

impl<T> Queue<T> {
    /// The shared-memory machinery; only called once the queue is known to be in shared
    /// memory (every public method dispatches on the backend first).
    fn raw(&self) -> Raw<'_> {
        match &self.repr {
            Repr::Shm(segment) => Raw { segment },
            Repr::Redis(_) => unreachable!("a Redis queue has no shared-memory machinery"),
        }
    }

    fn area(&self) -> &QueueArea {
        self.raw().area()
    }

    /// Items ready to be received (not counting those in flight). Exact when no operation is
    /// under way. On Redis, items put back with `nack` count as in flight until taken again.
    ///
    /// # Errors
    ///
    /// Never for shared memory. On Redis, [`Error::RedisUnreachable`] if the server cannot be
    /// reached, [`OpenError::NotFound`](crate::OpenError::NotFound) or
    /// [`OpenError::Replaced`](crate::OpenError::Replaced) if the queue was removed (or created
    /// again) since this handle opened it.
    pub fn len(&self) -> Result<u64> {
        match &self.repr {
            Repr::Shm(_) => Ok(self.area().waiting.load(Ordering::Acquire)),
            Repr::Redis(queue) => queue.len(),
        }
    }

    /// Whether no item is ready to be received.
    ///
    /// # Errors
    ///
    /// As [`Queue::len`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Items put and not yet acknowledged: ready, or in flight with a receiver.
    ///
    /// # Errors
    ///
    /// As [`Queue::len`].
    pub fn unacknowledged(&self) -> Result<u64> {
        match &self.repr {
            Repr::Shm(_) => Ok(self.area().unacked.load(Ordering::Acquire)),
            Repr::Redis(queue) => Ok(queue.len()? + queue.in_flight()?),
        }
    }

    /// Items in flight: received and not yet acknowledged.
    ///
    /// # Errors
    ///
    /// As [`Queue::len`].
    pub fn in_flight(&self) -> Result<u64> {
        match &self.repr {
            Repr::Shm(_) => Ok(self.unacknowledged()?.saturating_sub(self.len()?)),
            Repr::Redis(queue) => queue.in_flight(),
        }
    }

    /// The bound on unacknowledged items, if the queue is bounded.
    #[must_use]
    pub fn capacity(&self) -> Option<u64> {
        let capacity = match &self.repr {
            Repr::Shm(_) => self.area().capacity.load(Ordering::Relaxed),
            Repr::Redis(queue) => queue.object().capacity(),
        };
        match capacity {
            0 => None,
            n => Some(n),
        }
    }

    /// The queue's name (`redis://HOST:PORT/NAME` for a Redis queue).
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        match &self.repr {
            Repr::Shm(segment) => segment.name(),
            Repr::Redis(queue) => queue.object().name(),
        }
    }

    /// The item type recorded by the queue's creator: [`std::any::type_name`] of `T`,
    /// the type the creator used, which need not be this handle's.
    ///
    /// In shared memory the name is cut at [`TYPE_NAME_MAX`](crate::segment::TYPE_NAME_MAX)
    /// bytes (see [`Segment::type_name`]); on Redis it is whole. Tools use it to refuse a write
    /// that a program of the creator's type could not read (`memspace queue ...` does).
    #[must_use]
    pub fn recorded_type_name(&self) -> &str {
        match &self.repr {
            Repr::Shm(segment) => segment.type_name(),
            Repr::Redis(queue) => queue.object().type_name(),
        }
    }

    /// The queue's segment (identity, size, address in this process), or `None` for a
    /// Redis queue, which has none.
    #[must_use]
    pub fn segment(&self) -> Option<&Segment> {
        match &self.repr {
            Repr::Shm(segment) => Some(segment),
            Repr::Redis(_) => None,
        }
    }

    /// Removes the queue's name from the system (see [`Segment::remove`]); handles already
    /// open keep working.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`] if it was removed already.
    pub fn unlink(&self) -> Result<()> {
        match &self.repr {
            Repr::Shm(segment) => Ok(segment.unlink()?),
            Repr::Redis(queue) => queue.object().remove(),
        }
    }
}

/// When a timed call gives up (`None`: never, also for a timeout too large to represent).
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// What a waiting loop does next.
enum Next {
    /// Sleep at most this long (`None`: until woken).
    Sleep(Option<Duration>),
    /// The deadline passed.
    GiveUp,
}

/// How long to sleep before `deadline`, at most `at_most`.
fn next_sleep(
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    at_most: Option<Duration>,
) -> Next {
    let left = match (timeout, deadline) {
        (None, _) | (Some(_), None) => None,
        (Some(_), Some(deadline)) => match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => return Next::GiveUp,
        },
    };
    Next::Sleep(match (left, at_most) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An anonymous unbounded queue, removed when its last user drops it.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn new() -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), 0, &SegmentOptions::new(), true)
    }

    /// An anonymous queue holding at most `capacity` unacknowledged items (a capacity of 0 is
    /// taken as 1).
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn bounded(capacity: u64) -> Result<Self> {
        Self::create_segment(
            &SegmentName::anonymous(),
            capacity.max(1),
            &SegmentOptions::new(),
            true,
        )
    }

    /// Creates the unbounded queue `name`, which persists until removed (`memspace rm NAME`,
    /// [`Queue::unlink`]).
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`], [`OpenError::InvalidName`], or what the system refuses.
    pub fn create(name: &str) -> Result<Self> {
        Self::create_with(name, None, &SegmentOptions::new())
    }

    /// Creates the queue `name` holding at most `capacity` unacknowledged items (0 is taken
    /// as 1).
    ///
    /// # Errors
    ///
    /// As [`Queue::create`].
    pub fn create_bounded(name: &str, capacity: u64) -> Result<Self> {
        Self::create_with(name, Some(capacity), &SegmentOptions::new())
    }

    /// Creates the queue `name`, bounded if `capacity` is given, with `options` (mode, initial
    /// and largest size; they do not apply to a Redis queue).
    ///
    /// # Errors
    ///
    /// As [`Queue::create`].
    pub fn create_with(
        name: &str,
        capacity: Option<u64>,
        options: &SegmentOptions,
    ) -> Result<Self> {
        let capacity = capacity.map_or(0, |c| c.max(1));
        Self::create_segment(&SegmentName::new(name)?, capacity, options, false)
    }

    /// Opens the queue `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`], [`OpenError::WrongKind`] if it holds something else, or a
    /// header problem.
    pub fn open(name: &str) -> Result<Self> {
        let name = SegmentName::new(name)?;
        if name.is_redis() {
            return Ok(Queue {
                repr: Repr::Redis(RedisQueue::new(Object::open(&name, Kind::Queue)?)),
                _items: PhantomData,
            });
        }
        Self::from_segment(Segment::open(&name, Some(Kind::Queue))?)
    }

    /// Creates the unbounded queue `name` in `backend` (see
    /// [`Backend::locate`](crate::Backend::locate)).
    ///
    /// # Errors
    ///
    /// As [`Queue::create`].
    pub fn create_in(backend: &crate::Backend, name: &str) -> Result<Self> {
        Self::create(&backend.locate(name))
    }

    /// Opens the queue `name` in `backend`.
    ///
    /// # Errors
    ///
    /// As [`Queue::open`].
    pub fn open_in(backend: &crate::Backend, name: &str) -> Result<Self> {
        Self::open(&backend.locate(name))
    }

    /// A queue over an already open segment (for example one opened with
    /// [`inspect::observe`](crate::inspect::observe)).
    ///
    /// # Errors
    ///
    /// [`OpenError::WrongKind`] if the segment is not a queue.
    pub fn from_segment(segment: Segment) -> Result<Self> {
        let segment = segment.expecting(Kind::Queue)?;
        Ok(Queue {
            repr: Repr::Shm(Arc::new(segment)),
            _items: PhantomData,
        })
    }

    fn create_segment(
        name: &SegmentName,
        capacity: u64,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        if name.is_redis() {
            let init = crate::redis::Init {
                type_name: std::any::type_name::<T>(),
                capacity,
                ..Default::default()
            };
            return Ok(Queue {
                repr: Repr::Redis(RedisQueue::new(Object::create(name, Kind::Queue, &init)?)),
                _items: PhantomData,
            });
        }
        let segment = Segment::create(
            name,
            Kind::Queue,
            std::any::type_name::<T>(),
            options,
            anonymous,
            |segment| {
                // A new object is zero-filled: only the bound needs setting.
                let area = segment.kind_area::<QueueArea>();
                area.capacity.store(capacity, Ordering::Relaxed);
                Ok(())
            },
        )?;
        Self::from_segment(segment)
    }

    fn encode(&self, value: &T) -> Result<Vec<u8>> {
        let payload = codec::encode(value).map_err(|source| Error::Encode {
            name: self.name().clone(),
            type_name: std::any::type_name::<T>(),
            source,
        })?;
        if payload.len() > record::MAX_PAYLOAD {
            return Err(Error::Full {
                name: self.name().clone(),
                needed: payload.len() as u64,
                max_size: record::MAX_PAYLOAD as u64,
            });
        }
        Ok(payload)
    }

    fn put_until(
        &self,
        value: &T,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), QueueError> {
        // Encoded before anything is locked: a value that cannot be encoded changes nothing.
        let payload = self.encode(value)?;
        if let Repr::Redis(queue) = &self.repr {
            return self.put_remote(queue, &payload, timeout);
        }
        let raw = self.raw();
        let area = raw.area();
        let deadline = deadline(timeout);
        loop {
            let guard = raw.lock()?;
            let capacity = area.capacity.load(Ordering::Relaxed);
            if capacity == 0 || area.unacked.load(Ordering::Relaxed) < capacity {
                raw.put(&guard, &payload)?;
                let wake = area.receivers.load(Ordering::Relaxed) != 0;
                drop(guard);
                if wake {
                    sys::futex_wake(&area.items, u32::MAX);
                }
                return Ok(());
            }
            let sleep = match next_sleep(timeout, deadline, None) {
                Next::Sleep(sleep) => sleep,
                Next::GiveUp => {
                    return Err(match timeout {
                        Some(waited) if !waited.is_zero() => QueueError::Timeout {
                            name: self.name().clone(),
                            waited,
                        },
                        _ => QueueError::Full {
                            name: self.name().clone(),
                            capacity,
                        },
                    });
                }
            };
            // Read under the lock: an acknowledgement after we unlock changes it, and the
            // futex then does not sleep.
            let seen = area.space.load(Ordering::Relaxed);
            area.senders.fetch_add(1, Ordering::Relaxed);
            drop(guard);
            sys::futex_wait(&area.space, seen, sleep);
            area.senders.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Appends `value`, waiting while a bounded queue is full.
    ///
    /// # Errors
    ///
    /// [`QueueError::Other`] with [`Error::Encode`] if `value` cannot be encoded (the queue is
    /// unchanged), [`Error::Full`] or [`Error::NoSpace`] if the segment cannot grow, or
    /// [`Error::Corrupt`] if it is damaged. On Redis, [`OpenError::NotFound`] if the queue was
    /// removed (nothing is written), or [`Error::RedisUnreachable`].
    pub fn put(&self, value: &T) -> std::result::Result<(), QueueError> {
        self.put_until(value, None)
    }

    /// Appends `value` if a bounded queue has room now.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`], or as [`Queue::put`].
    pub fn try_put(&self, value: &T) -> std::result::Result<(), QueueError> {
        self.put_until(value, Some(Duration::ZERO))
    }

    /// Appends `value`, waiting at most `timeout` for room in a bounded queue.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`] (or [`QueueError::Full`] for a zero timeout), or as
    /// [`Queue::put`].
    pub fn put_timeout(&self, value: &T, timeout: Duration) -> std::result::Result<(), QueueError> {
        self.put_until(value, Some(timeout))
    }

    fn receive_until(
        &self,
        timeout: Option<Duration>,
    ) -> std::result::Result<Delivery<'_, T>, QueueError> {
        if let Repr::Redis(queue) = &self.repr {
            return self.receive_remote(queue, timeout);
        }
        let raw = self.raw();
        let area = raw.area();
        let deadline = deadline(timeout);
        loop {
            let guard = raw.lock()?;
            if let Some(Taken {
                seq,
                deliveries,
                payload,
            }) = raw.take(&guard)?
            {
                drop(guard);
                let mut delivery = Delivery {
                    queue: self,
                    seq,
                    deliveries,
                    value: None,
                    pid: sys::pid(),
                    settled: false,
                    remote: None,
                };
                match codec::decode(&payload) {
                    Ok(value) => delivery.value = Some(value),
                    Err(source) => {
                        // The error holds the item in flight now: the caller discards it, or
                        // dropping the error puts it back.
                        delivery.settled = true;
                        return Err(self.undecodable(seq, deliveries, payload, None, source));
                    }
                }
                return Ok(delivery);
            }
            // Items in flight come back if their taker dies, which wakes nobody: look again
            // now and then while there are any.
            let poll = (area.unacked.load(Ordering::Relaxed)
                > area.waiting.load(Ordering::Relaxed))
            .then_some(REDELIVERY_CHECK);
            let sleep = match next_sleep(timeout, deadline, poll) {
                Next::Sleep(sleep) => sleep,
                Next::GiveUp => {
                    return Err(match timeout {
                        Some(waited) if !waited.is_zero() => QueueError::Timeout {
                            name: self.name().clone(),
                            waited,
                        },
                        _ => QueueError::Empty {
                            name: self.name().clone(),
                        },
                    });
                }
            };
            // Read under the lock: a put after we unlock changes it, and the futex then does
            // not sleep.
            let seen = area.items.load(Ordering::Relaxed);
            area.receivers.fetch_add(1, Ordering::Relaxed);
            drop(guard);
            sys::futex_wait(&area.items, seen, sleep);
            area.receivers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Waits for an item and takes it in flight; acknowledge it with [`Delivery::ack`].
    ///
    /// # Errors
    ///
    /// [`QueueError::Undecodable`] if the next item is not a `T`: the item is in flight with
    /// the error, which [`discard`](Undecodable::discard)s it or, dropped, puts it back (where
    /// it is the next item again); [`QueueError::Other`] with [`Error::Corrupt`] if the segment
    /// is damaged.
    pub fn receive(&self) -> std::result::Result<Delivery<'_, T>, QueueError> {
        self.receive_until(None)
    }

    /// Takes an item in flight if one is ready.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`], or as [`Queue::receive`].
    pub fn try_receive(&self) -> std::result::Result<Delivery<'_, T>, QueueError> {
        self.receive_until(Some(Duration::ZERO))
    }

    /// Waits at most `timeout` for an item and takes it in flight.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`] (or [`QueueError::Empty`] for a zero timeout), or as
    /// [`Queue::receive`].
    pub fn receive_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Delivery<'_, T>, QueueError> {
        self.receive_until(Some(timeout))
    }

    /// Waits for an item, takes it and acknowledges it (at most once: see [`Queue`]'s delivery
    /// guarantee).
    ///
    /// # Errors
    ///
    /// As [`Queue::receive`].
    pub fn get(&self) -> std::result::Result<T, QueueError> {
        self.receive()?.ack()
    }

    /// Takes and acknowledges an item if one is ready.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`], or as [`Queue::receive`].
    pub fn try_get(&self) -> std::result::Result<T, QueueError> {
        self.try_receive()?.ack()
    }

    /// Waits at most `timeout` for an item, takes it and acknowledges it.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`] (or [`QueueError::Empty`] for a zero timeout), or as
    /// [`Queue::receive`].
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, QueueError> {
        self.receive_timeout(timeout)?.ack()
    }

    /// Copies of the items ready to be received, oldest first (items in flight are left out).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if an item is not a `T`; [`Error::Corrupt`] if the segment is damaged.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        if let Repr::Redis(queue) = &self.repr {
            return (0u64..)
                .zip(queue.waiting()?)
                .map(|(index, payload)| {
                    codec::decode(&payload).map_err(|source| {
                        queue
                            .object()
                            .decode_error(index, std::any::type_name::<T>(), source)
                    })
                })
                .collect();
        }
        self.raw()
            .ready_payloads()?
            .into_iter()
            .map(|(seq, payload)| {
                codec::decode(&payload).map_err(|source| Error::Decode {
                    name: self.name().clone(),
                    index: seq,
                    expected: std::any::type_name::<T>(),
                    source,
                })
            })
            .collect()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    fn give_up(&self, timeout: Option<Duration>, full: bool) -> QueueError {
        let name = self.name().clone();
        match timeout {
            Some(waited) if !waited.is_zero() => QueueError::Timeout { name, waited },
            _ if full => QueueError::Full {
                name,
                capacity: self.capacity().unwrap_or(0),
            },
            _ => QueueError::Empty { name },
        }
    }

    /// `put` on Redis: the server checks the bound; a full queue is polled (2 ms, backing off
    /// to 50 ms) until a place frees up or the timeout passes.
    fn put_remote(
        &self,
        queue: &RedisQueue,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<(), QueueError> {
        let deadline = deadline(timeout);
        let mut pause = Duration::from_millis(2);
        loop {
            if queue.put(payload)? {
                return Ok(());
            }
            match next_sleep(timeout, deadline, Some(pause)) {
                Next::Sleep(sleep) => std::thread::sleep(sleep.unwrap_or(pause)),
                Next::GiveUp => return Err(self.give_up(timeout, true)),
            }
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// `receive` on Redis: the server blocks for at most 100 ms at a time, so that items whose
    /// lease ran out are looked for in between.
    fn receive_remote(
        &self,
        queue: &RedisQueue,
        timeout: Option<Duration>,
    ) -> std::result::Result<Delivery<'_, T>, QueueError> {
        const CHUNK: Duration = Duration::from_millis(100);
        let deadline = deadline(timeout);
        loop {
            let block = match next_sleep(timeout, deadline, Some(CHUNK)) {
                Next::Sleep(block) => block.filter(|b| !b.is_zero()),
                Next::GiveUp => None,
            };
            if let Some(item) = queue.receive(block)? {
                let mut delivery = Delivery {
                    queue: self,
                    seq: item.seq,
                    deliveries: item.deliveries,
                    value: None,
                    pid: sys::pid(),
                    settled: false,
                    remote: None,
                };
                let decoded = codec::decode(&item.payload);
                delivery.remote = Some(item);
                match decoded {
                    Ok(value) => delivery.value = Some(value),
                    // The error holds the item in flight now (see `receive_until`).
                    Err(source) => {
                        delivery.settled = true;
                        let mut remote = delivery.remote.take();
                        let payload = remote
                            .as_mut()
                            .map(|item| std::mem::take(&mut item.payload))
                            .unwrap_or_default();
                        return Err(self.undecodable(
                            delivery.seq,
                            delivery.deliveries,
                            payload,
                            remote,
                            source,
                        ));
                    }
                }
                return Ok(delivery);
            }
            if let Next::GiveUp = next_sleep(timeout, deadline, Some(CHUNK)) {
                return Err(self.give_up(timeout, false));
            }
        }
    }
}

serialize_as_name!(Queue<T> where T: Serialize + DeserializeOwned);

// ---------------------------------------------------------------------------------------------
// For `inspect`

/// The number of ready items of the queue in `segment`.
pub(crate) fn len(segment: &Segment) -> u64 {
    Raw { segment }.area().waiting.load(Ordering::Acquire)
}

/// Checks the queue in `segment` without its lock: the ring, every live entry's state and
/// record (bounds, order, checksum, encoding), the bound and the counters.
///
/// Operations may go on meanwhile, in this process or others. The check is retried until it
/// ran between two changes (`changes` even and unchanged), or while the lock's holder is dead
/// (nothing changes until the next locker recovers); after [`VERIFY_ATTEMPTS`] tries it gives
/// up with a note.
pub(crate) fn verify(segment: &Segment, report: &mut Report) {
    let raw = Raw { segment };
    let area = raw.area();
    for _ in 0..VERIFY_ATTEMPTS {
        let before = area.changes.load(Ordering::Acquire);
        let mut found = Report::default();
        check(raw, &mut found);
        fence(Ordering::Acquire);
        let after = area.changes.load(Ordering::Relaxed);
        let holder_dead = segment
            .lock_owner()
            .is_some_and(|pid| !segment::pid_alive(pid));
        if before == after && (before.is_multiple_of(2) || holder_dead) {
            for problem in found.problems {
                report.problem(problem);
            }
            for note in found.notes {
                report.note(note);
            }
            report.items_checked += found.items_checked;
            return;
        }
        std::thread::yield_now();
    }
    report.note(format!(
        "the queue changed during each of {VERIFY_ATTEMPTS} attempts to check it; its items \
         were not checked"
    ));
}

fn check(raw: Raw<'_>, report: &mut Report) {
    let segment = raw.segment;
    let area = raw.area();
    let ring = match raw.ring() {
        Ok(ring) => ring,
        Err(err) => return report.problem(describe(&err)),
    };
    let window = match raw.window(ring) {
        Ok(window) => window,
        Err(err) => return report.problem(describe(&err)),
    };
    let (waiting, unacked) = match ring {
        Some(ring) => check_entries(raw, ring, window, report),
        None => (0, 0),
    };
    let capacity = area.capacity.load(Ordering::Relaxed);
    if capacity != 0 && unacked > capacity {
        report.problem(format!(
            "{unacked} items are unacknowledged, more than the capacity {capacity}"
        ));
    }
    let (counted_waiting, counted_unacked) = (
        area.waiting.load(Ordering::Relaxed),
        area.unacked.load(Ordering::Relaxed),
    );
    if (waiting, unacked) != (counted_waiting, counted_unacked) {
        let what = format!(
            "the counters say {counted_waiting} ready and {counted_unacked} unacknowledged, the \
             entries {waiting} and {unacked}"
        );
        if segment.lock_owner().is_some() {
            report.note(format!(
                "{what}: a holder of the lock was interrupted; the next locker recounts"
            ));
        } else {
            report.problem(what);
        }
    }
}

/// Checks the live entries and their records; returns how many are ready and unacknowledged.
fn check_entries(
    raw: Raw<'_>,
    ring: Ring,
    (head, end): (u64, u64),
    report: &mut Report,
) -> (u64, u64) {
    let segment = raw.segment;
    let (mut waiting, mut unacked) = (0u64, 0u64);
    let mut first = None;
    let mut previous_end = None;
    let mut wrapped = false;
    let mut orphans = Vec::new();
    for seq in head..end {
        if report.is_full() {
            break;
        }
        let entry = match raw.entry(ring, seq) {
            Ok(entry) => entry,
            Err(err) => {
                report.problem(format!("entry {seq}: {}", describe(&err)));
                continue;
            }
        };
        let state = entry.state.load(Ordering::Acquire);
        match state {
            READY => {
                waiting += 1;
                unacked += 1;
            }
            TAKEN => {
                unacked += 1;
                let (pid, start) = (
                    entry.taker_pid.load(Ordering::Relaxed),
                    entry.taker_start.load(Ordering::Relaxed),
                );
                if !segment::process_alive(pid, start) {
                    orphans.push(seq);
                }
            }
            DONE => {}
            other => report.problem(format!("entry {seq} has state {other}")),
        }
        let record = entry.record.load(Ordering::Relaxed);
        let record_end = match raw.record_end(ring, record) {
            Ok(record_end) => record_end,
            Err(err) => {
                report.problem(format!("entry {seq}: {}", describe(&err)));
                continue;
            }
        };
        // Records follow each other, wrapping around once, never reaching the first.
        let first = *first.get_or_insert(record);
        if let Some(previous) = previous_end {
            if record != previous {
                if record == ring.lo && !wrapped {
                    wrapped = true;
                } else {
                    report.problem(format!(
                        "entry {seq}: its record at {record} does not follow the previous one \
                         (ending at {previous})"
                    ));
                }
            }
            if wrapped && record_end > first {
                report.problem(format!(
                    "entry {seq}: its record at {record} overlaps the oldest one at {first}"
                ));
            }
        }
        previous_end = Some(record_end);
        if state == READY || state == TAKEN {
            match record::read(segment, record) {
                Ok(payload) if codec::decode::<serde::de::IgnoredAny>(&payload).is_ok() => {}
                Ok(_) => report.problem(format!("item {seq} is not a well-formed value")),
                Err(err) => report.problem(format!("item {seq}: {}", describe(&err))),
            }
            report.items_checked += 1;
        }
    }
    if let (Some(first), Some(last)) = (orphans.first(), orphans.last()) {
        report.note(format!(
            "{} items ({first}..={last}) are in flight with processes that died; they are \
             delivered again to the next receivers",
            orphans.len()
        ));
    }
    (waiting, unacked)
}

fn describe(err: &Error) -> String {
    match err {
        Error::Corrupt { what, .. } => what.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sizes_include_the_header_and_padding() {
        assert_eq!(record_size(0), 8);
        assert_eq!(record_size(1), 16);
        assert_eq!(record_size(8), 16);
        assert_eq!(record_size(9), 24);
    }

    #[test]
    fn next_sleep_gives_up_only_after_a_deadline() {
        assert!(matches!(next_sleep(None, None, None), Next::Sleep(None)));
        assert!(matches!(
            next_sleep(None, None, Some(REDELIVERY_CHECK)),
            Next::Sleep(Some(REDELIVERY_CHECK))
        ));
        let past = Instant::now();
        assert!(matches!(
            next_sleep(Some(Duration::ZERO), Some(past), None),
            Next::GiveUp
        ));
        // A timeout too large for an `Instant` never expires.
        assert!(matches!(
            next_sleep(Some(Duration::MAX), None, None),
            Next::Sleep(None)
        ));
        let later = Instant::now() + Duration::from_hours(1);
        match next_sleep(
            Some(Duration::from_hours(1)),
            Some(later),
            Some(REDELIVERY_CHECK),
        ) {
            Next::Sleep(Some(sleep)) => assert_eq!(sleep, REDELIVERY_CHECK),
            _ => panic!("expected a bounded sleep"),
        }
    }

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
