//! [`PodQueue<T>`]: a bounded multi-producer, multi-consumer FIFO ring of plain fixed-size
//! items (`T: Pod`), put and taken without the segment's lock: the fast path for queues of
//! numbers and small records, as [`SharedVec`](super::SharedVec) is for lists.
//!
//! Where [`Queue`](super::Queue) encodes its items with serde into checksummed records and
//! changes them under the segment's robust lock, this queue keeps each item's bytes in a slot
//! of a ring, claimed with one compare-and-swap (a `get_many` swaps for its first slot and
//! claims the ready ones after it with stores) and handed over with one store. Every put and
//! get is safe against a crash of its caller (see `ring.rs`).

mod ring;
mod verify;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;

use self::ring::{MAX_CAPACITY, MAX_ITEM_BYTES, PodQueueArea, Ring, Shape};
pub(crate) use self::verify::{len, verify};
use super::QueueError;
use crate::error::{Error, Result};
use crate::handle::{Blueprint, NoRedis, Place};
use crate::segment::{DATA_START, Kind, MAX_RESERVATION, Segment, SegmentName, SegmentOptions};
use crate::sync::expect_type;
use crate::sys::Wait;

/// A bounded multi-producer, multi-consumer FIFO queue of plain fixed-size items
/// (`T:`[`Pod`]) in shared memory, for every thread and process that opens it.
///
/// Its items live in a ring of `capacity` slots (a power of two, fixed when the queue is made),
/// each a 64-byte cache line of its own (whole lines for items over 48 bytes), so that producers
/// and consumers working on neighbouring slots do not take each other's lines. A put claims the
/// next free slot with one compare-and-swap, writes the item's bytes and marks it ready with one
/// store; a get claims the next ready slot, copies the item out and frees the slot. No lock is
/// taken, and producers and consumers meet only at the slots they hand over, so two processes pass
/// each other millions of items a second.
///
/// # Crashes
///
/// Each slot's state names the process that claimed it, so a call killed at any point (a
/// `kill -9`) is recognised by the next call that waits on its slot:
///
/// * **A put killed before it returned** put nothing: its slot is skipped.
/// * **A get killed before it freed its slot** did not return the item: the next get takes
///   the item over and returns it. No item is lost or returned twice, except one that a get
///   had taken when its process died (it was in the dead process's hands).
///
/// # Blocking
///
/// [`put`](PodQueue::put) waits while the queue is full and [`get`](PodQueue::get) while it is
/// empty: first spinning (a process that answers within microseconds saves both sides a
/// system call), then asleep on a futex until the other side wakes it. `try_` forms never
/// wait for room or an item; `_timeout` forms wait at most so long.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), memspace::collections::QueueError> {
/// use memspace::collections::PodQueue;
///
/// let jobs = PodQueue::<[u64; 2]>::new(1024)?;
/// jobs.put([7, 1])?;
/// jobs.put_many(&[[8, 2], [9, 3]])?;
/// assert_eq!(jobs.len(), 3);
/// assert_eq!(jobs.get()?, [7, 1]);
/// assert_eq!(jobs.get_many(10)?, vec![[8, 2], [9, 3]]);
/// jobs.close()?;
/// assert!(jobs.get().is_err(), "closed and empty");
/// # Ok(())
/// # }
/// ```
pub struct PodQueue<T> {
    place: Place<NoRedis>,
    shape: Shape,
    _item: PhantomData<fn(T) -> T>,
}

impl<T> Clone for PodQueue<T> {
    fn clone(&self) -> Self {
        PodQueue {
            place: self.place.clone(),
            shape: self.shape,
            _item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for PodQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodQueue")
            .field("name", self.name())
            .field("len", &len(self.shm()))
            .field("capacity", &self.shape.capacity())
            .finish_non_exhaustive()
    }
}

impl<T> PodQueue<T> {
    /// The segment: this queue lives only in shared memory.
    fn shm(&self) -> &Segment {
        self.place.local()
    }

    /// Runs `use_it` on the ring; the error of a segment whose slots are not mapped (checked
    /// when the handle was made, so only a file shrunk under the mapping gets here).
    #[inline]
    fn with_ring<R>(
        &self,
        use_it: impl FnOnce(Ring<'_>) -> std::result::Result<R, QueueError>,
    ) -> std::result::Result<R, QueueError> {
        match Ring::new(self.shm(), self.shape) {
            Some(ring) => use_it(ring),
            None => Err(QueueError::Other(ring::slots_not_mapped(
                self.shm(),
                self.shape,
            ))),
        }
    }

    place_accessors!("queue", local, typed);

    /// How many items it holds at most.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.shape.capacity()
    }

    /// How many items are in the queue: put, and not yet taken (a moment's count while others
    /// put and get).
    #[must_use]
    pub fn len(&self) -> u64 {
        len(self.shm())
    }

    /// Whether the queue holds no item (see [`PodQueue::len`]).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes the queue: puts fail from now on, and gets too once the queue is empty. Every
    /// waiting put and get is woken to learn it. A queue stays closed.
    ///
    /// # Errors
    ///
    /// [`QueueError::Other`] if the segment was damaged.
    pub fn close(&self) -> std::result::Result<(), QueueError> {
        self.with_ring(|ring| {
            ring.close();
            Ok(())
        })
    }

    /// Whether [`PodQueue::close`] was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        verify::is_closed(self.shm())
    }
}

impl<T: Pod> PodQueue<T> {
    /// An anonymous queue of at least `capacity` items (rounded up to a power of two), removed
    /// when its last user drops it.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] if so many items would not fit in a segment; what the system refuses
    /// when creating the segment.
    pub fn new(capacity: u64) -> Result<Self> {
        Self::create_segment(
            &SegmentName::anonymous(),
            capacity,
            &SegmentOptions::new(),
            true,
        )
    }

    /// Creates the queue `name` of at least `capacity` items (rounded up to a power of two),
    /// which persists until removed (`memspace rm NAME`, [`PodQueue::unlink`]).
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists),
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName), or as [`PodQueue::new`].
    pub fn create(name: &str, capacity: u64) -> Result<Self> {
        Self::create_with(name, capacity, &SegmentOptions::new())
    }

    /// Creates the queue `name` with `options` (its mode; the segment's size follows from the
    /// capacity).
    ///
    /// # Errors
    ///
    /// As [`PodQueue::create`].
    pub fn create_with(name: &str, capacity: u64, options: &SegmentOptions) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, capacity, options, false)
    }

    /// Opens the queue `name`, checking that its items have `T`'s size and alignment.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind),
    /// [`OpenError::TypeMismatch`](crate::OpenError::TypeMismatch),
    /// [`Error::Corrupt`] if its slots do not fit in its segment.
    pub fn open(name: &str) -> Result<Self> {
        Self::checked(Place::open(name, Kind::PodQueue)?)
    }

    /// A queue over an already open segment (for example one from
    /// [`inspect::observe`](crate::inspect::observe)).
    ///
    /// # Errors
    ///
    /// As [`PodQueue::open`].
    pub fn from_segment(segment: Segment) -> Result<Self> {
        Self::checked(Place::from_segment(segment, Kind::PodQueue)?)
    }

    fn item_bytes() -> u64 {
        const {
            assert!(
                size_of::<T>() > 0,
                "zero-sized items carry nothing: count with a Semaphore"
            );
            assert!(
                size_of::<T>() <= MAX_ITEM_BYTES,
                "an item takes at most 1024 bytes"
            );
        };
        size_of::<T>() as u64
    }

    fn create_segment(
        name: &SegmentName,
        capacity: u64,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        let too_large = || Error::Full {
            name: name.clone(),
            needed: capacity
                .saturating_mul(8 + Self::item_bytes().next_multiple_of(8))
                .saturating_add(DATA_START),
            max_size: MAX_RESERVATION,
        };
        let shape = capacity
            .max(1)
            .checked_next_power_of_two()
            .filter(|&slots| slots <= MAX_CAPACITY)
            .and_then(|slots| Shape::new(slots, Self::item_bytes()))
            .ok_or_else(too_large)?;
        let size = DATA_START
            .checked_add(shape.ring_bytes())
            .filter(|&size| size <= MAX_RESERVATION)
            .ok_or_else(too_large)?;
        let options = options.clone().initial_size(size).max_size(size);
        let blueprint = Blueprint::of::<T>(Kind::PodQueue, &options, anonymous);
        let place = Place::create(name, &blueprint, |segment| {
            Ring::init(segment, shape, align_of::<T>() as u64)
        })?;
        Self::checked(place)
    }

    /// The queue in `place`, once its segment says it holds `T`s in slots that fit in it.
    fn checked(place: Place<NoRedis>) -> Result<Self> {
        let segment = place.local();
        let fixed = &segment.kind_area::<PodQueueArea>().fixed.0;
        let load =
            |word: &std::sync::atomic::AtomicU64| word.load(std::sync::atomic::Ordering::Acquire);
        expect_type::<T>(segment, load(&fixed.item_size), load(&fixed.item_align))?;
        let capacity = load(&fixed.capacity);
        let shape = Shape::new(capacity, Self::item_bytes()).ok_or_else(|| {
            segment.corrupt(format!(
                "the queue records a capacity of {capacity}, which is no power of two up to \
                 {MAX_CAPACITY}"
            ))
        })?;
        segment.data_range(
            || format!("the queue's {capacity} slots"),
            DATA_START,
            shape.ring_bytes(),
            8,
        )?;
        Ring::checked(segment, shape)?;
        Ok(PodQueue {
            place,
            shape,
            _item: PhantomData,
        })
    }

    /// Puts `item` at the back, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`]; [`QueueError::Other`] if the segment was damaged.
    #[inline]
    pub fn put(&self, item: T) -> std::result::Result<(), QueueError> {
        self.put_one(item, Wait::Forever)
    }

    /// Puts `item` at the back if there is room now.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`], or as [`PodQueue::put`].
    pub fn try_put(&self, item: T) -> std::result::Result<(), QueueError> {
        self.put_one(item, Wait::Never)
    }

    /// Puts `item` at the back, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`], or as [`PodQueue::put`].
    pub fn put_timeout(&self, item: T, timeout: Duration) -> std::result::Result<(), QueueError> {
        self.put_one(item, Wait::For(timeout))
    }

    /// Puts every item of `items` at the back, in order, waiting for room as needed. Each step
    /// claims as many free slots as there are (one compare-and-swap each, one move of the
    /// queue's tail and one wake-up for all), so a batch costs much less per item than a
    /// `put` each. Items of other producers may come between two steps. A process killed
    /// meanwhile leaves a first part of the batch in the queue.
    ///
    /// # Errors
    ///
    /// As [`PodQueue::put`]; a queue closed meanwhile keeps the items put before.
    pub fn put_many(&self, items: &[T]) -> std::result::Result<(), QueueError> {
        self.put_many_waiting(items, Wait::Forever)
    }

    /// Puts the items of `items` at the back, in order, as many as there is room for within
    /// `timeout` (none once it passed, if the queue is full); returns how many it put.
    ///
    /// # Errors
    ///
    /// As [`PodQueue::put`] (a queue closed meanwhile keeps the items put before).
    pub fn put_many_timeout(
        &self,
        items: &[T],
        timeout: Duration,
    ) -> std::result::Result<usize, QueueError> {
        let bytes: &[u8] = bytemuck::cast_slice(items);
        self.with_ring(
            |ring| match ring.put(bytes, items.len(), Wait::For(timeout)) {
                (put, Ok(()) | Err(QueueError::Full { .. } | QueueError::Timeout { .. })) => {
                    Ok(put)
                }
                (_, Err(err)) => Err(err),
            },
        )
    }

    /// Puts `item`: into the free slot at the tail if there is one (see
    /// `Ring::put_one_if_free`), else waiting as `wait` says.
    #[inline]
    fn put_one(&self, item: T, wait: Wait) -> std::result::Result<(), QueueError> {
        let bytes = bytemuck::bytes_of(&item);
        self.with_ring(|ring| {
            if ring.put_one_if_free(bytes) {
                Ok(())
            } else {
                ring.put(bytes, 1, wait).1
            }
        })
    }

    fn put_many_waiting(&self, items: &[T], wait: Wait) -> std::result::Result<(), QueueError> {
        let bytes: &[u8] = bytemuck::cast_slice(items);
        self.with_ring(|ring| ring.put(bytes, items.len(), wait).1)
    }

    /// Takes the item at the front, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue is closed and empty; [`QueueError::Other`] if
    /// the segment was damaged.
    #[inline]
    pub fn get(&self) -> std::result::Result<T, QueueError> {
        self.get_one(Wait::Forever)
    }

    /// Takes the item at the front, if one is ready now.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`], or as [`PodQueue::get`].
    pub fn try_get(&self) -> std::result::Result<T, QueueError> {
        self.get_one(Wait::Never)
    }

    /// Takes the item at the front, waiting at most `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`], or as [`PodQueue::get`].
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, QueueError> {
        self.get_one(Wait::For(timeout))
    }

    /// Takes one item: the ready one at the head if there is one (see
    /// `Ring::get_one_if_ready`), else waiting as `wait` says.
    #[inline]
    fn get_one(&self, wait: Wait) -> std::result::Result<T, QueueError> {
        let mut item = T::zeroed();
        let mut out = |words: &[_]| ring::copy_item(words, bytemuck::bytes_of_mut(&mut item));
        self.with_ring(|ring| {
            if ring.get_one_if_ready(&mut out) {
                Ok(1)
            } else {
                ring.get(1, out, wait)
            }
        })?;
        Ok(item)
    }

    /// Takes up to `max` items from the front, in order: waits for the first, then takes
    /// those ready after it. One compare-and-swap for the first item and a store for each of
    /// the others, one move of the queue's head and one wake-up for all. `max` 0 takes nothing
    /// and does not wait.
    ///
    /// # Errors
    ///
    /// As [`PodQueue::get`].
    pub fn get_many(&self, max: usize) -> std::result::Result<Vec<T>, QueueError> {
        self.get_many_waiting(max, Wait::Forever)
    }

    /// Takes up to `max` items from the front if one is ready now.
    ///
    /// # Errors
    ///
    /// As [`PodQueue::try_get`].
    pub fn try_get_many(&self, max: usize) -> std::result::Result<Vec<T>, QueueError> {
        self.get_many_waiting(max, Wait::Never)
    }

    /// Takes up to `max` items from the front, waiting at most `timeout` for the first.
    ///
    /// # Errors
    ///
    /// As [`PodQueue::get_timeout`].
    pub fn get_many_timeout(
        &self,
        max: usize,
        timeout: Duration,
    ) -> std::result::Result<Vec<T>, QueueError> {
        self.get_many_waiting(max, Wait::For(timeout))
    }

    fn get_many_waiting(&self, max: usize, wait: Wait) -> std::result::Result<Vec<T>, QueueError> {
        let mut items = Vec::with_capacity(max.min(self.shape.capacity() as usize));
        if max == 0 {
            return Ok(items);
        }
        self.with_ring(|ring| {
            ring.get(
                max,
                |words| {
                    let mut item = T::zeroed();
                    ring::copy_item(words, bytemuck::bytes_of_mut(&mut item));
                    items.push(item);
                },
                wait,
            )
        })?;
        Ok(items)
    }
}

serialize_as_name!(PodQueue<T> where T: Pod);
