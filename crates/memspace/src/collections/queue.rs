//! [`Queue<T>`]: a multi-producer, multi-consumer FIFO queue for threads and processes, bounded
//! or not, that does not lose an item when the consumer that took it dies.
//!
//! # The delivery guarantee
//!
//! [`Queue::receive`] hands out an item as a [`Delivery`]: the item stays in the queue, marked
//! as taken by the receiving process (pid and start time), until the delivery is acknowledged
//! with [`Delivery::ack`]. If the receiver drops the delivery without acknowledging it, the item
//! is put back at once; if the receiving process *dies* first, the next receiver that looks
//! finds the taker dead and delivers the item again, with [`Delivery::deliveries`] counting the
//! attempts. An acknowledged item is never delivered again and never lost: delivery is
//! *at least once*, and exactly once for consumers that are not killed between receiving and
//! acknowledging. [`Queue::get`] receives and acknowledges in one step (at most once from the
//! caller's side: an item it returned is gone from the queue, whatever happens next).
//!
//! # Layout and protocol
//!
//! ```text
//! kind area:  head, end      entries [head, end) are not yet all acknowledged
//!             waiting        entries ready to be received      unacked  put, not acknowledged
//!             capacity       0: unbounded                      tail     first free data byte
//!             items, space   futex words: bumped when items appear / room appears
//!             blocks         40 offsets of entry blocks; block b holds 256 << b entries
//! entry:      [u64 record][u32 state][u32 deliveries][u32 taker pid][u32][u64 taker start]
//! ```
//!
//! Every operation holds the segment's robust lock. A put writes the item's record and entry
//! past `end`, then commits with one store of `end + 1`; taking and acknowledging an item are
//! single stores of its `state`. The counters are derived data: after a holder of the lock
//! died, the next locker recounts them from the entries. When every entry is acknowledged the
//! queue resets to empty and its record space is reused.
//!
//! # Safety
//!
//! The one `unsafe` operation is `record::write`, under the lock at `tail`, past every record
//! of an entry below `end` (recomputed so after a crash).

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{codec, record};
use crate::error::{Error, OpenError, Result};
use crate::inspect::Report;
use crate::segment::{self, DATA_START, Kind, Segment, SegmentName, SegmentOptions};
use crate::sync::{LockError, RawGuard, acquire};
use crate::sys::{self, Wait};

const BLOCKS: usize = 40;
const FIRST_BLOCK_ENTRIES: u64 = 256;
const ENTRY_SIZE: u64 = 32;
/// How often a waiting receiver looks for items taken by processes that died.
const REDELIVERY_CHECK: Duration = Duration::from_millis(50);

const READY: u32 = 1;
const TAKEN: u32 = 2;
const DONE: u32 = 3;

#[repr(C)]
pub(crate) struct QueueArea {
    head: AtomicU64,
    end: AtomicU64,
    waiting: AtomicU64,
    unacked: AtomicU64,
    capacity: AtomicU64,
    tail: AtomicU64,
    items: AtomicU32,
    space: AtomicU32,
    blocks: [AtomicU64; BLOCKS],
}

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

fn locate(index: u64) -> Option<(usize, u64, u64)> {
    let q = index / FIRST_BLOCK_ENTRIES + 1;
    let block = 63 - q.leading_zeros() as usize;
    (block < BLOCKS).then(|| {
        let first = FIRST_BLOCK_ENTRIES * ((1u64 << block) - 1);
        (block, index - first, FIRST_BLOCK_ENTRIES << block)
    })
}

/// Why a queue operation did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// `try_put`: a bounded queue is full.
    #[error("queue `{name}` is full ({capacity} items waiting to be acknowledged)")]
    Full {
        /// The queue.
        name: SegmentName,
        /// Its bound.
        capacity: u64,
    },
    /// `try_get`/`try_receive`: nothing is waiting.
    #[error("queue `{name}` is empty")]
    Empty {
        /// The queue.
        name: SegmentName,
    },
    /// A timed call gave up.
    #[error("queue `{name}`: gave up after {waited:?}")]
    Timeout {
        /// The queue.
        name: SegmentName,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The segment, the lock or the encoding failed.
    #[error(transparent)]
    Other(#[from] Error),
}

/// A FIFO queue shared by threads and processes.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), memspace::collections::QueueError> {
/// use memspace::collections::Queue;
///
/// let jobs = Queue::<String>::bounded(2)?;
/// jobs.put(&"first".into())?;
/// jobs.put(&"second".into())?;
/// assert!(jobs.try_put(&"third".into()).is_err());
/// let job = jobs.receive()?;
/// assert_eq!(job.value(), "first");
/// job.ack()?;
/// assert_eq!(jobs.get()?, "second");
/// # Ok(())
/// # }
/// ```
pub struct Queue<T> {
    segment: Arc<Segment>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            segment: Arc::clone(&self.segment),
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", self.segment.name())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// The queue's machinery, independent of the item type.
#[derive(Clone, Copy)]
struct Raw<'a> {
    segment: &'a Segment,
}

impl<'a> Raw<'a> {
    fn area(self) -> &'a QueueArea {
        self.segment.kind_area::<QueueArea>()
    }

    fn entry(self, index: u64) -> Result<&'a Entry> {
        let segment = self.segment;
        let (block, position, _) =
            locate(index).ok_or_else(|| segment.corrupt(format!("entry {index} out of range")))?;
        let offset = self.area().blocks[block].load(Ordering::Acquire);
        if offset < DATA_START {
            return Err(segment.corrupt(format!("entry block {block} is at {offset}")));
        }
        let at = offset + position * ENTRY_SIZE;
        segment.ensure_mapped(at + ENTRY_SIZE)?;
        segment
            .mapping()
            .get::<Entry>(at)
            .ok_or_else(|| segment.corrupt(format!("entry {index} is not mapped")))
    }

    fn lock(self) -> Result<RawGuard<'a>> {
        match acquire(self.segment, Wait::Forever, |raw, _| raw) {
            Ok(held) => Ok(held),
            Err(LockError::OwnerDied(held)) => {
                self.recover()?;
                held.mark_consistent()
                    .map_err(|e| self.segment.os_error("pthread_mutex_consistent", e))?;
                Ok(held)
            }
            Err(LockError::Poisoned(held)) => {
                held.clear_poison();
                Ok(held)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Recounts the derived words from the committed entries.
    fn recover(self) -> Result<()> {
        let area = self.area();
        let end = area.end.load(Ordering::Relaxed);
        let head = area.head.load(Ordering::Relaxed).min(end);
        let (mut waiting, mut unacked) = (0, 0);
        let mut tail = DATA_START;
        for (block, offset) in area.blocks.iter().enumerate() {
            let offset = offset.load(Ordering::Relaxed);
            if offset != 0 {
                tail = tail.max(offset + ENTRY_SIZE * (FIRST_BLOCK_ENTRIES << block));
            }
        }
        for index in head..end {
            let entry = self.entry(index)?;
            match entry.state.load(Ordering::Relaxed) {
                READY => {
                    waiting += 1;
                    unacked += 1;
                }
                TAKEN => unacked += 1,
                _ => {}
            }
            tail = tail.max(record::end(
                self.segment,
                entry.record.load(Ordering::Relaxed),
            )?);
        }
        area.head.store(head, Ordering::Relaxed);
        area.waiting.store(waiting, Ordering::Relaxed);
        area.unacked.store(unacked, Ordering::Relaxed);
        area.tail.store(tail, Ordering::Relaxed);
        Ok(())
    }

    fn put(self, held: &RawGuard<'_>, payload: &[u8]) -> Result<()> {
        let area = self.area();
        let index = area.end.load(Ordering::Relaxed);
        let (block, _, entries) = locate(index).ok_or_else(|| Error::Full {
            name: self.segment.name().clone(),
            needed: index + 1,
            max_size: FIRST_BLOCK_ENTRIES * ((1 << BLOCKS) - 1),
        })?;
        let mut tail = area.tail.load(Ordering::Relaxed);
        if area.blocks[block].load(Ordering::Relaxed) == 0 {
            let at = tail.next_multiple_of(ENTRY_SIZE);
            let end = at + ENTRY_SIZE * entries;
            self.segment.grow_to(end, held)?;
            area.blocks[block].store(at, Ordering::Release);
            area.tail.store(end, Ordering::Relaxed);
            tail = end;
        }
        // SAFETY: we hold the lock and `tail` is past every block and every record of an entry
        // below `end` (module `# Safety`).
        let (record, end) = unsafe { record::write(self.segment, held, tail, payload) }?;
        let entry = self.entry(index)?;
        entry.record.store(record, Ordering::Relaxed);
        entry.deliveries.store(0, Ordering::Relaxed);
        entry.taker_pid.store(0, Ordering::Relaxed);
        entry.state.store(READY, Ordering::Relaxed);
        crate::failpoint::hit("queue.written");
        area.end.store(index + 1, Ordering::Release); // commit
        area.waiting.fetch_add(1, Ordering::Relaxed);
        area.unacked.fetch_add(1, Ordering::Relaxed);
        area.tail.store(end, Ordering::Relaxed);
        area.items.fetch_add(1, Ordering::Release);
        self.segment.note_writer();
        Ok(())
    }

    /// Takes the first ready item, or one whose taker died; `None` if there is none.
    fn take(self, _held: &RawGuard<'_>) -> Result<Option<(u64, u32, Vec<u8>)>> {
        let area = self.area();
        let (head, end) = (
            area.head.load(Ordering::Relaxed),
            area.end.load(Ordering::Relaxed),
        );
        let pid = sys::pid();
        for index in head..end {
            let entry = self.entry(index)?;
            let state = entry.state.load(Ordering::Relaxed);
            let orphaned = state == TAKEN
                && !segment::process_alive(
                    entry.taker_pid.load(Ordering::Relaxed),
                    entry.taker_start.load(Ordering::Relaxed),
                );
            if state == READY || orphaned {
                let payload = record::read(self.segment, entry.record.load(Ordering::Relaxed))?;
                entry
                    .taker_start
                    .store(sys::process_start_time(pid).unwrap_or(0), Ordering::Relaxed);
                entry.taker_pid.store(pid, Ordering::Relaxed);
                let deliveries = entry.deliveries.fetch_add(1, Ordering::Relaxed) + 1;
                entry.state.store(TAKEN, Ordering::Release); // commit
                crate::failpoint::hit("queue.taken");
                if state == READY {
                    area.waiting.fetch_sub(1, Ordering::Relaxed);
                }
                return Ok(Some((index, deliveries, payload)));
            }
        }
        Ok(None)
    }

    /// Whether an item is taken by a live process (then it may come back).
    fn any_in_flight(self) -> bool {
        self.area().unacked.load(Ordering::Relaxed) > self.area().waiting.load(Ordering::Relaxed)
    }

    fn ack(self, index: u64) -> Result<()> {
        let _held = self.lock()?;
        let area = self.area();
        let entry = self.entry(index)?;
        if entry.state.load(Ordering::Relaxed) != TAKEN
            || entry.taker_pid.load(Ordering::Relaxed) != sys::pid()
        {
            return Ok(()); // acknowledged already, or redelivered after this process was
            // declared dead (it cannot be: it is running this code), nothing to do
        }
        entry.state.store(DONE, Ordering::Release); // commit
        crate::failpoint::hit("queue.acked");
        area.unacked.fetch_sub(1, Ordering::Relaxed);
        let end = area.end.load(Ordering::Relaxed);
        let mut head = area.head.load(Ordering::Relaxed);
        while head < end && self.entry(head)?.state.load(Ordering::Relaxed) == DONE {
            head += 1;
        }
        area.head.store(head, Ordering::Relaxed);
        if head == end {
            // Everything acknowledged: start again from the first entry and reuse the space
            // after the entry blocks.
            area.head.store(0, Ordering::Relaxed);
            area.end.store(0, Ordering::Release);
            let blocks_end = area
                .blocks
                .iter()
                .enumerate()
                .filter_map(|(b, o)| {
                    let o = o.load(Ordering::Relaxed);
                    (o != 0).then(|| o + ENTRY_SIZE * (FIRST_BLOCK_ENTRIES << b))
                })
                .max()
                .unwrap_or(DATA_START);
            area.tail.store(blocks_end, Ordering::Relaxed);
        }
        area.space.fetch_add(1, Ordering::Release);
        sys::futex_wake(&area.space, u32::MAX);
        Ok(())
    }

    fn nack(self, index: u64) -> Result<()> {
        let _held = self.lock()?;
        let area = self.area();
        let entry = self.entry(index)?;
        if entry.state.load(Ordering::Relaxed) == TAKEN
            && entry.taker_pid.load(Ordering::Relaxed) == sys::pid()
        {
            entry.state.store(READY, Ordering::Release);
            area.waiting.fetch_add(1, Ordering::Relaxed);
            area.items.fetch_add(1, Ordering::Release);
            sys::futex_wake(&area.items, 1);
        }
        Ok(())
    }
}

/// A received item, in flight until [`ack`](Delivery::ack)ed. Dropped without an ack, it goes
/// back to the queue; if its process dies, it is delivered again to the next receiver.
#[must_use = "an item that is not acknowledged goes back to the queue"]
pub struct Delivery<'a, T> {
    queue: &'a Queue<T>,
    index: u64,
    deliveries: u32,
    /// Present until acknowledged.
    value: Option<T>,
    pid: u32,
    acked: bool,
}

impl<T: fmt::Debug> fmt::Debug for Delivery<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
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
    /// Never: the value is only taken out by [`ack`](Delivery::ack), which consumes the
    /// delivery.
    pub fn value(&self) -> &T {
        self.value
            .as_ref()
            .expect("the value is present until acknowledged")
    }

    /// How many times the item has been delivered (more than 1 after a receiver died or put it
    /// back).
    #[must_use]
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// Acknowledges the item: it leaves the queue for good. Returns it.
    ///
    /// # Errors
    ///
    /// If the queue's segment is damaged (the item then stays in flight, and goes back to the
    /// queue when the delivery is dropped).
    ///
    /// # Panics
    ///
    /// Never: the value is present until this call, which consumes the delivery.
    pub fn ack(mut self) -> std::result::Result<T, QueueError> {
        Raw {
            segment: &self.queue.segment,
        }
        .ack(self.index)?;
        self.acked = true;
        Ok(self
            .value
            .take()
            .expect("the value is present until acknowledged"))
    }
}

impl<T> Drop for Delivery<'_, T> {
    fn drop(&mut self) {
        if !self.acked && self.pid == sys::pid() {
            // Put it back. If that fails the item is still recorded as ours, and is delivered
            // again once this process has ended.
            let _ = Raw {
                segment: &self.queue.segment,
            }
            .nack(self.index);
        }
    }
}

impl<T> Queue<T> {
    fn raw(&self) -> Raw<'_> {
        Raw {
            segment: &self.segment,
        }
    }

    /// Items waiting to be received (not counting those in flight).
    #[must_use]
    pub fn len(&self) -> u64 {
        self.raw().area().waiting.load(Ordering::Acquire)
    }

    /// Whether no item is waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items put and not yet acknowledged (waiting or in flight).
    #[must_use]
    pub fn unacknowledged(&self) -> u64 {
        self.raw().area().unacked.load(Ordering::Acquire)
    }

    /// The bound, if the queue is bounded.
    #[must_use]
    pub fn capacity(&self) -> Option<u64> {
        match self.raw().area().capacity.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// The queue's segment name.
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        self.segment.name()
    }

    /// The queue's segment.
    #[must_use]
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Removes the queue's name from the system.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`] if it was removed already.
    pub fn unlink(&self) -> Result<()> {
        Ok(self.segment.unlink()?)
    }
}

/// When a timed call gives up (`None`: never, also for a timeout too large to represent).
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// How long to sleep, at most `at_most`, before the deadline; `None` when it has passed.
fn nap(deadline: Option<Instant>, at_most: Duration) -> Option<Duration> {
    match deadline {
        None => Some(at_most),
        Some(deadline) => deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .map(|left| left.min(at_most)),
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An anonymous unbounded queue, removed when its last user drops it.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn new() -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), 0, true)
    }

    /// An anonymous queue holding at most `capacity` unacknowledged items.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn bounded(capacity: u64) -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), capacity.max(1), true)
    }

    /// Creates the queue `name` (`capacity` 0: unbounded); it persists until removed.
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`], [`OpenError::InvalidName`], or what the system refuses.
    pub fn create(name: &str, capacity: u64) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, capacity, false)
    }

    /// Opens the queue `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`], [`OpenError::WrongKind`].
    pub fn open(name: &str) -> Result<Self> {
        Self::from_segment(Segment::open(&SegmentName::new(name)?, Some(Kind::Queue))?)
    }

    /// A queue over an already open segment.
    ///
    /// # Errors
    ///
    /// [`OpenError::WrongKind`] if the segment is not a queue.
    pub fn from_segment(segment: Segment) -> Result<Self> {
        if segment.kind() != Kind::Queue {
            return Err(OpenError::WrongKind {
                name: segment.name().clone(),
                found: segment.kind(),
                expected: Kind::Queue,
            }
            .into());
        }
        Ok(Queue {
            segment: Arc::new(segment),
            _items: PhantomData,
        })
    }

    fn create_segment(name: &SegmentName, capacity: u64, anonymous: bool) -> Result<Self> {
        let segment = Segment::create(
            name,
            Kind::Queue,
            std::any::type_name::<T>(),
            &SegmentOptions::new(),
            anonymous,
            |segment| {
                let area = segment.kind_area::<QueueArea>();
                area.capacity.store(capacity, Ordering::Relaxed);
                area.tail.store(DATA_START, Ordering::Relaxed);
                Ok(())
            },
        )?;
        Self::from_segment(segment)
    }

    fn put_until(
        &self,
        value: &T,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), QueueError> {
        let payload = codec::encode(value).map_err(|source| Error::Encode {
            name: self.name().clone(),
            type_name: std::any::type_name::<T>(),
            source,
        })?;
        let raw = self.raw();
        let area = raw.area();
        let deadline = deadline(timeout);
        loop {
            let held = raw.lock()?;
            let capacity = area.capacity.load(Ordering::Relaxed);
            if capacity == 0 || area.unacked.load(Ordering::Relaxed) < capacity {
                raw.put(&held, &payload)?;
                drop(held);
                sys::futex_wake(&area.items, 1);
                return Ok(());
            }
            let seen = area.space.load(Ordering::Acquire);
            drop(held);
            let Some(sleep) = nap(deadline, Duration::MAX) else {
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
            };
            let sleep = (sleep != Duration::MAX).then_some(sleep);
            sys::futex_wait(&area.space, seen, sleep);
        }
    }

    /// Appends `value`, waiting while a bounded queue is full.
    ///
    /// # Errors
    ///
    /// [`QueueError::Other`] for encoding or segment failures.
    pub fn put(&self, value: &T) -> std::result::Result<(), QueueError> {
        self.put_until(value, None)
    }

    /// Appends `value` if there is room now.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`].
    pub fn try_put(&self, value: &T) -> std::result::Result<(), QueueError> {
        self.put_until(value, Some(Duration::ZERO))
    }

    /// Appends `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`].
    pub fn put_timeout(&self, value: &T, timeout: Duration) -> std::result::Result<(), QueueError> {
        self.put_until(value, Some(timeout))
    }

    fn receive_until(
        &self,
        timeout: Option<Duration>,
    ) -> std::result::Result<Delivery<'_, T>, QueueError> {
        let raw = self.raw();
        let area = raw.area();
        let deadline = deadline(timeout);
        loop {
            let held = raw.lock()?;
            if let Some((index, deliveries, payload)) = raw.take(&held)? {
                drop(held);
                let value = codec::decode(&payload).map_err(|source| Error::Decode {
                    name: self.name().clone(),
                    index,
                    expected: std::any::type_name::<T>(),
                    source,
                });
                let value = match value {
                    Ok(value) => value,
                    Err(err) => {
                        // Leave an undecodable item for a receiver of the right type.
                        let _ = raw.nack(index);
                        return Err(err.into());
                    }
                };
                return Ok(Delivery {
                    queue: self,
                    index,
                    deliveries,
                    value: Some(value),
                    pid: sys::pid(),
                    acked: false,
                });
            }
            let seen = area.items.load(Ordering::Acquire);
            // Items in flight may come back if their taker dies: look again now and then.
            let limit = if raw.any_in_flight() {
                REDELIVERY_CHECK
            } else {
                Duration::MAX
            };
            drop(held);
            let Some(sleep) = nap(deadline, limit) else {
                return Err(match timeout {
                    Some(waited) if !waited.is_zero() => QueueError::Timeout {
                        name: self.name().clone(),
                        waited,
                    },
                    _ => QueueError::Empty {
                        name: self.name().clone(),
                    },
                });
            };
            let sleep = (sleep != Duration::MAX).then_some(sleep);
            sys::futex_wait(&area.items, seen, sleep);
        }
    }

    /// Waits for an item and takes it in flight; acknowledge it with [`Delivery::ack`].
    ///
    /// # Errors
    ///
    /// [`QueueError::Other`] if the item is not a `T` (it stays in the queue) or the segment
    /// is damaged.
    pub fn receive(&self) -> std::result::Result<Delivery<'_, T>, QueueError> {
        self.receive_until(None)
    }

    /// Takes an item in flight if one is waiting.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`].
    pub fn try_receive(&self) -> std::result::Result<Delivery<'_, T>, QueueError> {
        self.receive_until(Some(Duration::ZERO))
    }

    /// Waits at most `timeout` for an item and takes it in flight.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`].
    pub fn receive_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Delivery<'_, T>, QueueError> {
        self.receive_until(Some(timeout))
    }

    /// Waits for an item, takes it and acknowledges it.
    ///
    /// # Errors
    ///
    /// As [`Queue::receive`].
    pub fn get(&self) -> std::result::Result<T, QueueError> {
        self.receive()?.ack()
    }

    /// Takes and acknowledges an item if one is waiting.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`].
    pub fn try_get(&self) -> std::result::Result<T, QueueError> {
        self.try_receive()?.ack()
    }

    /// Waits at most `timeout` for an item, takes it and acknowledges it.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, QueueError> {
        self.receive_timeout(timeout)?.ack()
    }

    /// Copies of the items waiting, oldest first (for inspection).
    ///
    /// # Errors
    ///
    /// [`QueueError::Other`] if an item is not a `T` or the segment is damaged.
    pub fn peek_all(&self) -> std::result::Result<Vec<T>, QueueError> {
        let raw = self.raw();
        let _held = raw.lock()?;
        let area = raw.area();
        let mut items = Vec::new();
        for index in area.head.load(Ordering::Relaxed)..area.end.load(Ordering::Relaxed) {
            let entry = raw.entry(index)?;
            if entry.state.load(Ordering::Relaxed) == READY {
                let payload = record::read(&self.segment, entry.record.load(Ordering::Relaxed))?;
                items.push(codec::decode(&payload).map_err(|source| Error::Decode {
                    name: self.name().clone(),
                    index,
                    expected: std::any::type_name::<T>(),
                    source,
                })?);
            }
        }
        Ok(items)
    }
}

/// The number of waiting items of the queue in `segment`.
pub(crate) fn len(segment: &Segment) -> u64 {
    segment
        .kind_area::<QueueArea>()
        .waiting
        .load(Ordering::Acquire)
}

/// Checks every entry not yet acknowledged and the counters.
pub(crate) fn verify(segment: &Segment, report: &mut Report) {
    let raw = Raw { segment };
    let area = raw.area();
    let (head, end) = (
        area.head.load(Ordering::Acquire),
        area.end.load(Ordering::Acquire),
    );
    if head > end {
        report.problem(format!("head {head} is past end {end}"));
        return;
    }
    let (mut waiting, mut unacked) = (0, 0);
    for index in head..end {
        if report.is_full() {
            break;
        }
        match raw.entry(index) {
            Ok(entry) => {
                let state = entry.state.load(Ordering::Acquire);
                match state {
                    READY => {
                        waiting += 1;
                        unacked += 1;
                    }
                    TAKEN => unacked += 1,
                    DONE => {}
                    other => report.problem(format!("entry {index} has state {other}")),
                }
                if state != DONE {
                    match record::read(segment, entry.record.load(Ordering::Relaxed)) {
                        Ok(payload) if codec::decode::<serde::de::IgnoredAny>(&payload).is_ok() => {
                        }
                        Ok(_) => {
                            report.problem(format!("entry {index} is not a well-formed value"));
                        }
                        Err(err) => report.problem(format!("entry {index}: {err}")),
                    }
                    report.items_checked += 1;
                }
            }
            Err(err) => report.problem(format!("entry {index}: {err}")),
        }
    }
    if waiting != area.waiting.load(Ordering::Relaxed)
        || unacked != area.unacked.load(Ordering::Relaxed)
    {
        let what = "the counters disagree with the entries".to_owned();
        if segment.lock_owner().is_some() {
            report.note(format!(
                "{what}: a holder was interrupted; the next locker recounts"
            ));
        } else {
            report.problem(what);
        }
    }
}

impl<T> Serialize for Queue<T> {
    /// A queue travels as a reference: its segment's name.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.segment.name().as_str())
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Queue<T> {
    /// Reattaches the named queue in this process.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Queue::open(&name).map_err(serde::de::Error::custom)
    }
}
