//! [`Queue<T>`]: a multi-producer, multi-consumer FIFO queue for threads and processes, bounded
//! or not, that does not lose an item when the consumer that took it dies.
//!
//! The delivery guarantee, the space a queue uses and how calls block are documented on
//! [`Queue`]. A handle holds a [`Place`] and runs each call on the engine of its backend, the
//! way crossbeam-channel's `Sender` dispatches to its flavors. The files:
//!
//! * `layout.rs`: the queue's words in a segment (kind area, rings, entries) and their
//!   validated reads;
//! * `shm.rs`: the shared-memory engine: senders under the segment's robust lock, receivers
//!   under the segment's second one, recovery after a holder died, sleeping on futexes;
//! * `redis.rs`: the Redis engine: a stream read through a consumer group, and its polling;
//! * `delivery.rs`: [`Delivery`], and the claim on an item in flight that settles it;
//! * `error.rs`: [`QueueError`], and [`Undecodable`], an item that is not the receiver's type;
//! * `verify.rs`: what `inspect` reads of a queue's segment, without its locks.

mod delivery;
mod error;
mod layout;
#[cfg(feature = "redis")]
mod redis;
mod shm;
mod verify;

pub use self::delivery::{Deliveries, Delivery};
pub use self::error::{QueueError, Undecodable};
#[cfg(feature = "redis")]
pub(crate) use self::redis::RedisQueue;
pub(crate) use self::verify::{len, verify};
#[cfg(not(feature = "redis"))]
pub(crate) use crate::handle::NoRedis as RedisQueue;

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use self::delivery::{Claim, Claims};
use self::layout::{QueueArea, Raw};
use self::shm::Received;
use super::{codec, record};
#[cfg(doc)]
use crate::error::OpenError;
use crate::error::{Error, Result};
use crate::handle::{Blueprint, Place};
#[cfg(feature = "redis")]
use crate::redis::{FirstData, Init};
use crate::segment::{Kind, Segment, SegmentName, SegmentOptions};

/// A multi-producer, multi-consumer FIFO queue shared by threads and processes, bounded or
/// not, that does not lose an item when the consumer that took it dies.
///
/// Items are encoded with `MessagePack` (so `memspace queue get NAME` prints any item as
/// JSON) and carry a CRC-32C. A handle travels to a child process as the queue's name.
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
///   the death (a receiver already waiting looks every 50 ms). A receiver that takes a batch
///   ([`Queue::receive_many`], [`Queue::get_many`]) looks once a batch: a process that dies
///   while the batch is taken has its items delivered again from the next receive on.
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
/// # Waiting for the work to be done: `join`
///
/// [`Queue::join`] waits until every item ever put has been **done**, which here means
/// acknowledged: by [`Delivery::ack`], by [`get`](Queue::get) (which acknowledges at once),
/// or by [`Queue::task_done`]. Python's `JoinableQueue` counts `put` against `task_done`; the
/// same count here is [`Queue::unacknowledged`], kept by the queue itself, so it can never go
/// below zero nor count an item twice:
///
/// | Python `JoinableQueue` | memspace |
/// | --- | --- |
/// | `item = q.get()` ... `q.task_done()` | `let d = q.receive()?;` ... `d.ack()?` |
/// | the same, the item kept by value | `let item = q.receive()?.into_task();` ... `q.task_done()?` |
/// | `q.join()` | `q.join()?` ([`join_timeout`](Queue::join_timeout) to give up) |
///
/// `task_done` acknowledges the oldest item in flight with the calling process (threads of a
/// process share them, as Python's count is shared); called when the process holds none it
/// fails with [`QueueError::NoTaskInFlight`], as Python's raises `ValueError`. An item taken
/// with `get` is done already: the work on it is not waited for, so a program whose `join`
/// must wait for the work receives and acknowledges after it. A worker killed before it
/// acknowledged leaves its item unfinished: it is delivered again, and done when another
/// worker acknowledges it, so a `join` neither hangs on it nor returns before it is done.
///
/// # Batches
///
/// [`Queue::put_many`] appends several items as one change (a process killed meanwhile leaves
/// all of them or none), [`Queue::get_many`] takes and acknowledges up to a number of ready
/// items, and [`Queue::receive_many`] takes them in flight as [`Deliveries`], acknowledged
/// together. Each takes its lock once for the whole batch (on Redis: one script for a put or
/// an acknowledgement), which makes it several times faster per item than single calls.
///
/// # Closing
///
/// [`Queue::close`] is Python 3.13's `Queue.shutdown()`: every handle's `put` fails with
/// [`QueueError::Closed`] from then on, including senders waiting for room (woken at once);
/// receivers go on taking the items left, and fail with `Closed` once nothing is left
/// unacknowledged (while items are in flight with others they wait, since one may come back
/// from a receiver that dies). [`Queue::close_immediately`] is `shutdown(immediate=True)`:
/// the ready items are discarded and every receive fails at once; items in flight can still
/// be acknowledged, and are discarded if put back or if their receiver dies, so that `join`
/// returns. A closed queue stays closed until it is removed.
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
/// [`put`](Queue::put) while a bounded queue is full, [`join`](Queue::join) while items are
/// unacknowledged, on futexes shared with every process: no polling, except that a receiver
/// waiting while items are in flight with others looks every 50 ms whether their takers died
/// (and so does a `join` after an immediate close). Each has a non-blocking (`try_`) and a timed
/// (`_timeout`) form. A put wakes every sleeping receiver, not just one: a receiver killed
/// between being woken and taking the item could otherwise strand it while the others sleep.
///
/// On shared memory, senders and receivers take two different locks: a producer process and
/// a consumer process work at the same time instead of taking turns, and each side reads
/// the other's words only when its own copy of them runs out.
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
    place: Place<RedisQueue>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue::at(self.place.clone())
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Debug` never waits: a Redis queue shows no count from the server.
        let mut out = f.debug_struct("Queue");
        out.field("name", self.name());
        if let Place::Shm(segment) = &self.place {
            out.field("len", &len(segment));
        }
        out.field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl<T> Queue<T> {
    /// The handle of the queue at `place`.
    fn at(place: Place<RedisQueue>) -> Self {
        Queue {
            place,
            _items: PhantomData,
        }
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
        match self.place.as_ref() {
            Place::Shm(segment) => Ok(len(segment)),
            #[cfg(feature = "redis")]
            Place::Redis(queue) => queue.len(),
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
        match self.place.as_ref() {
            Place::Shm(segment) => Ok(Raw { segment }.unacknowledged()),
            #[cfg(feature = "redis")]
            Place::Redis(queue) => Ok(queue.len()? + queue.in_flight()?),
        }
    }

    /// Items in flight: received and not yet acknowledged.
    ///
    /// # Errors
    ///
    /// As [`Queue::len`].
    pub fn in_flight(&self) -> Result<u64> {
        match self.place.as_ref() {
            Place::Shm(segment) => Ok(Raw { segment }.in_flight()),
            #[cfg(feature = "redis")]
            Place::Redis(queue) => queue.in_flight(),
        }
    }

    /// The bound on unacknowledged items, if the queue is bounded.
    #[must_use]
    pub fn capacity(&self) -> Option<u64> {
        let capacity = match self.place.as_ref() {
            Place::Shm(segment) => Raw { segment }.area().capacity.load(Ordering::Relaxed),
            #[cfg(feature = "redis")]
            Place::Redis(queue) => queue.object().capacity(),
        };
        match capacity {
            0 => None,
            n => Some(n),
        }
    }

    place_accessors!("queue", typed);

    /// Marks done the oldest item this process holds in flight (Python's
    /// `JoinableQueue.task_done()`): it is acknowledged, as by [`Delivery::ack`]. Meant for
    /// items kept with [`Delivery::into_task`]; see [`Queue`]'s section on `join`.
    ///
    /// # Errors
    ///
    /// [`QueueError::NoTaskInFlight`] if this process holds no item in flight (nothing was
    /// counted); [`QueueError::Other`] if the segment is damaged. On Redis, also if an item
    /// was in flight longer than the lease: it was taken over by another receiver.
    pub fn task_done(&self) -> std::result::Result<(), QueueError> {
        match self.place.as_ref() {
            Place::Shm(segment) => Raw { segment }.ack_oldest(),
            #[cfg(feature = "redis")]
            Place::Redis(queue) => {
                if queue.ack_oldest()? {
                    Ok(())
                } else {
                    Err(QueueError::NoTaskInFlight {
                        name: self.name().clone(),
                    })
                }
            }
        }
    }

    fn join_until(&self, timeout: Option<Duration>) -> std::result::Result<(), QueueError> {
        let joined = match self.place.as_ref() {
            Place::Shm(segment) => Raw { segment }.join_until(timeout)?,
            #[cfg(feature = "redis")]
            Place::Redis(queue) => queue.join_until(timeout)?,
        };
        if joined {
            Ok(())
        } else {
            Err(QueueError::Timeout {
                name: self.name().clone(),
                waited: timeout.unwrap_or_default(),
            })
        }
    }

    /// Waits until every item put has been done: acknowledged, by any process (Python's
    /// `JoinableQueue.join()`; see [`Queue`]'s section on `join`). Returns at once if nothing
    /// is unacknowledged.
    ///
    /// # Errors
    ///
    /// [`QueueError::Other`] if the segment is damaged. On Redis, as [`Queue::len`].
    pub fn join(&self) -> std::result::Result<(), QueueError> {
        self.join_until(None)
    }

    /// Waits at most `timeout` until every item put has been done (see [`Queue::join`]).
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`] if items are still unacknowledged after `timeout`, or as
    /// [`Queue::join`].
    pub fn join_timeout(&self, timeout: Duration) -> std::result::Result<(), QueueError> {
        self.join_until(Some(timeout))
    }

    /// Closes the queue for every handle (Python 3.13's `Queue.shutdown()`): puts fail with
    /// [`QueueError::Closed`], receivers take what is left and then fail with it, and every
    /// waiting sender and receiver is woken (see [`Queue`]'s section on closing). Closing a
    /// closed queue changes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the segment is damaged; on Redis, as [`Queue::len`].
    pub fn close(&self) -> Result<()> {
        self.close_with(false)
    }

    /// Closes the queue and discards its ready items (Python 3.13's
    /// `Queue.shutdown(immediate=True)`): puts and receives fail with [`QueueError::Closed`]
    /// from now on; items in flight can still be acknowledged, and are discarded if put back
    /// or if their receiver dies, so that [`Queue::join`] returns.
    ///
    /// # Errors
    ///
    /// As [`Queue::close`].
    pub fn close_immediately(&self) -> Result<()> {
        self.close_with(true)
    }

    fn close_with(&self, immediately: bool) -> Result<()> {
        match self.place.as_ref() {
            Place::Shm(segment) => Raw { segment }.close(immediately),
            #[cfg(feature = "redis")]
            Place::Redis(queue) => queue.close(immediately),
        }
    }

    /// Whether the queue was closed ([`Queue::close`] or [`Queue::close_immediately`]).
    ///
    /// # Errors
    ///
    /// In shared memory, [`Error::Corrupt`] if the word that says so is damaged (neither
    /// open nor closed); on Redis, as [`Queue::len`].
    pub fn is_closed(&self) -> Result<bool> {
        match self.place.as_ref() {
            Place::Shm(segment) => Ok(Raw { segment }.closed()?.is_some()),
            #[cfg(feature = "redis")]
            Place::Redis(queue) => Ok(queue.closed()?.is_some()),
        }
    }

    /// The error of a call that gave up: [`QueueError::Timeout`] after a wait, else `Full` (a
    /// put) or `Empty` (a receive).
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

    open_constructors!(Kind::Queue, "queue", create_in);

    fn create_segment(
        name: &SegmentName,
        capacity: u64,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        let blueprint = Blueprint {
            #[cfg(feature = "redis")]
            redis: Init {
                capacity,
                first: FirstData::Stream {
                    group: redis::GROUP,
                },
                ..Init::default()
            },
            ..Blueprint::of::<T>(Kind::Queue, options, anonymous)
        };
        let place = Place::create(name, &blueprint, |segment| {
            // A new object is zero-filled: only the bound needs setting.
            let area = segment.kind_area::<QueueArea>();
            area.capacity.store(capacity, Ordering::Relaxed);
            Ok(())
        })?;
        Ok(Queue::at(place))
    }

    /// Appends the encoding of `value` to `out`: an error if it cannot be encoded, or is
    /// larger than a record can hold.
    fn encode_into(&self, out: &mut Vec<u8>, value: &T) -> Result<()> {
        let before = out.len();
        codec::encode_into(out, value).map_err(|source| Error::Encode {
            name: self.name().clone(),
            type_name: std::any::type_name::<T>(),
            source,
        })?;
        let len = out.len() - before;
        if len > record::MAX_PAYLOAD {
            return Err(Error::Full {
                name: self.name().clone(),
                needed: len as u64,
                max_size: record::MAX_PAYLOAD as u64,
            });
        }
        Ok(())
    }

    /// Encodes `values` one after the other into a buffer of this thread (kept between calls,
    /// so that a put allocates nothing) and runs `put` on their payloads. Encoded before
    /// anything is locked: a value that cannot be encoded changes nothing.
    fn with_payloads<R>(
        &self,
        values: &[T],
        put: impl FnOnce(&[&[u8]]) -> std::result::Result<R, QueueError>,
    ) -> std::result::Result<R, QueueError> {
        thread_local! {
            static ENCODED: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
        }
        // Taken out while in use: a nested put (from a `Serialize` impl) gets its own.
        let mut buffer = codec::take_kept(&ENCODED);
        buffer.clear();
        let answer = match values {
            // One item, the common case: no lists of ends and payloads to allocate.
            [value] => self
                .encode_into(&mut buffer, value)
                .map_err(QueueError::from)
                .and_then(|()| put(&[buffer.as_slice()])),
            _ => self
                .encode_each(&mut buffer, values)
                .map_err(QueueError::from)
                .and_then(|ends| {
                    let mut start = 0;
                    let payloads: Vec<&[u8]> = ends
                        .iter()
                        .map(|&end| {
                            let payload = &buffer[start..end];
                            start = end;
                            payload
                        })
                        .collect();
                    put(&payloads)
                }),
        };
        codec::keep(&ENCODED, buffer);
        answer
    }

    /// Encodes `values` one after the other into `buffer`; returns where each ends.
    fn encode_each(&self, buffer: &mut Vec<u8>, values: &[T]) -> Result<Vec<usize>> {
        let mut ends = Vec::with_capacity(values.len());
        for value in values {
            self.encode_into(buffer, value)?;
            ends.push(buffer.len());
        }
        Ok(ends)
    }

    fn put_until(
        &self,
        value: &T,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), QueueError> {
        let put = self.with_payloads(std::slice::from_ref(value), |payloads| {
            match self.place.as_ref() {
                Place::Shm(segment) => Raw { segment }.put_until(payloads, timeout),
                #[cfg(feature = "redis")]
                Place::Redis(queue) => queue.put_until(payloads[0], timeout),
            }
        })?;
        if put {
            Ok(())
        } else {
            Err(self.give_up(timeout, true))
        }
    }

    /// Appends `value`, waiting while a bounded queue is full.
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue was closed (also while waiting for room);
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

    /// Receives from the queue's `segment` into `received` (see `Raw::receive_until`); the
    /// error of a receive that gave up once `timeout` passed.
    fn receive_from(
        &self,
        segment: &Segment,
        timeout: Option<Duration>,
        (max, ack): (usize, bool),
        accept: &mut dyn FnMut(&[u8]) -> bool,
        received: &mut Received,
    ) -> std::result::Result<(), QueueError> {
        let raw = Raw { segment };
        if raw.receive_until(timeout, max, ack, accept, received)? {
            Ok(())
        } else {
            Err(self.give_up(timeout, false))
        }
    }

    fn receive_until(
        &self,
        timeout: Option<Duration>,
    ) -> std::result::Result<Delivery<'_, T>, QueueError> {
        let taken = match self.place.as_ref() {
            Place::Shm(segment) => {
                let mut decoder = Decoder::<T>::default();
                let mut received = Received::default();
                self.receive_from(
                    segment,
                    timeout,
                    (1, false),
                    &mut |p| decoder.accept(p),
                    &mut received,
                )?;
                if let (Some(value), Some(&(seq, deliveries))) =
                    (decoder.values.pop(), received.taken.first())
                {
                    return Ok(Delivery::new(self, value, Claim::shm_item(seq, deliveries)));
                }
                received.refused.map(Claim::shm)
            }
            #[cfg(feature = "redis")]
            Place::Redis(queue) => queue.receive_until(timeout)?.map(Claim::redis),
        };
        let Some((claim, payload)) = taken else {
            return Err(self.give_up(timeout, false));
        };
        match codec::decode(&payload) {
            Ok(value) => Ok(Delivery::new(self, value, claim)),
            Err(source) => Err(self.undecodable(payload, source, claim)),
        }
    }

    /// The error holding an item that is not a `T` in flight: the caller discards it, or
    /// dropping the error puts it back.
    fn undecodable(
        &self,
        payload: Vec<u8>,
        source: rmp_serde::decode::Error,
        claim: Claim,
    ) -> QueueError {
        QueueError::Undecodable(Box::new(Undecodable::new(
            self.place.clone(),
            std::any::type_name::<T>(),
            payload,
            source,
            claim,
        )))
    }

    /// The error for the refused item of a shared-memory receive, which holds it in flight.
    fn refused(&self, refused: shm::Taken) -> QueueError {
        let (mut claim, payload) = Claim::shm(refused);
        if let Err(source) = codec::decode::<T>(&payload) {
            return self.undecodable(payload, source, claim);
        }
        // Refused, so not decodable: a decoding that succeeds now found a changed item, which
        // cannot be (it is in flight with this process). Put it back.
        claim.release(&self.place);
        QueueError::Other(Error::Corrupt {
            name: self.name().clone(),
            what: "an item changed while in flight".to_owned(),
        })
    }

    /// Takes up to `max` items (at least one, waiting for it) and, if `ack`, acknowledges
    /// them at once (else they are in flight under the returned claims). Stops before an item
    /// that is not a `T`; that item is [`QueueError::Undecodable`] if it is the first.
    fn receive_many_until(
        &self,
        timeout: Option<Duration>,
        max: usize,
        ack: bool,
    ) -> std::result::Result<(Vec<T>, Claims), QueueError> {
        match self.place.as_ref() {
            Place::Shm(segment) => {
                let mut decoder = Decoder::<T>::default();
                let mut received = Received::default();
                self.receive_from(
                    segment,
                    timeout,
                    (max, ack),
                    &mut |p| decoder.accept(p),
                    &mut received,
                )?;
                let claims = Claims::shm(received.taken);
                match received.refused {
                    Some(refused) if decoder.values.is_empty() => Err(self.refused(refused)),
                    refused => {
                        // Put back now: the next receive reports it.
                        if let Some(refused) = refused {
                            Claim::shm(refused).0.release(&self.place);
                        }
                        Ok((decoder.values, claims))
                    }
                }
            }
            #[cfg(feature = "redis")]
            Place::Redis(queue) => {
                let received = queue
                    .receive_many_until(timeout, max.max(1))?
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| self.give_up(timeout, false))?;
                let (mut claims, payloads) = Claims::redis(received);
                let mut values = Vec::with_capacity(payloads.len());
                for payload in &payloads {
                    match codec::decode(payload) {
                        Ok(value) => values.push(value),
                        Err(source) if values.is_empty() => {
                            // The first: reported with its claim, the rest put back.
                            let mut rest = claims.split_off(1);
                            rest.release(&self.place);
                            let first = claims.into_single();
                            return Err(self.undecodable(payload.clone(), source, first));
                        }
                        Err(_) => break,
                    }
                }
                let mut rest = claims.split_off(values.len());
                rest.release(&self.place);
                if ack {
                    claims.settle(&self.place, true)?;
                }
                Ok((values, claims))
            }
        }
    }

    /// Appends every item of `values`, in order, as one change: a process killed meanwhile
    /// leaves all of them in the queue or none. On a bounded queue it waits until there is
    /// room for all of them. One lock for the whole batch (one script on Redis), so it is
    /// much faster than a `put` per item.
    ///
    /// # Errors
    ///
    /// [`QueueError::Full`] at once if a bounded queue's capacity is smaller than the batch;
    /// else as [`Queue::put`] (nothing is put if any value cannot be encoded).
    pub fn put_many(&self, values: &[T]) -> std::result::Result<(), QueueError> {
        if values.is_empty() {
            return Ok(());
        }
        let put = self.with_payloads(values, |payloads| match self.place.as_ref() {
            Place::Shm(segment) => Raw { segment }.put_until(payloads, None),
            #[cfg(feature = "redis")]
            Place::Redis(queue) => queue.put_many_until(payloads, None),
        })?;
        if put {
            Ok(())
        } else {
            Err(self.give_up(None, true))
        }
    }

    /// Waits for an item, then takes up to `max` ready items (at least one) in flight, under
    /// one lock; acknowledge them all at once with [`Deliveries::ack`]. A batch stops before
    /// an item that is not a `T` (the next receive reports it).
    ///
    /// # Errors
    ///
    /// As [`Queue::receive`].
    pub fn receive_many(&self, max: usize) -> std::result::Result<Deliveries<'_, T>, QueueError> {
        let (values, claims) = self.receive_many_until(None, max, false)?;
        Ok(Deliveries::new(self, values, claims))
    }

    /// Waits for an item, then takes and acknowledges up to `max` ready items (at least
    /// one), under one lock (at most once, as [`Queue::get`]). A batch stops before an item
    /// that is not a `T` (the next receive reports it).
    ///
    /// # Errors
    ///
    /// As [`Queue::receive`].
    pub fn get_many(&self, max: usize) -> std::result::Result<Vec<T>, QueueError> {
        Ok(self.receive_many_until(None, max, true)?.0)
    }

    /// Takes and acknowledges up to `max` ready items, if any is ready (see
    /// [`Queue::get_many`]).
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`], or as [`Queue::receive`].
    pub fn try_get_many(&self, max: usize) -> std::result::Result<Vec<T>, QueueError> {
        Ok(self.receive_many_until(Some(Duration::ZERO), max, true)?.0)
    }

    /// Receives and acknowledges one item: on shared memory under one lock, the item decoded
    /// before its acknowledgement is committed.
    fn get_until(&self, timeout: Option<Duration>) -> std::result::Result<T, QueueError> {
        match self.place.as_ref() {
            Place::Shm(segment) => {
                // One item: decoded into place, no list of values to allocate.
                let mut value = None;
                let mut received = Received::default();
                self.receive_from(
                    segment,
                    timeout,
                    (1, true),
                    &mut |payload| {
                        value = codec::decode(payload).ok();
                        value.is_some()
                    },
                    &mut received,
                )?;
                match (value, received.refused) {
                    (Some(value), _) => Ok(value),
                    (None, Some(refused)) => Err(self.refused(refused)),
                    (None, None) => Err(self.give_up(timeout, false)),
                }
            }
            #[cfg(feature = "redis")]
            Place::Redis(_) => self.receive_until(timeout)?.ack(),
        }
    }

    /// Waits for an item and takes it in flight; acknowledge it with [`Delivery::ack`].
    ///
    /// # Errors
    ///
    /// [`QueueError::Closed`] once the queue was closed and nothing is left unacknowledged
    /// (at once after [`Queue::close_immediately`]); [`QueueError::Undecodable`] if the next item is not a `T`: the item is in flight with
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
        self.get_until(None)
    }

    /// Takes and acknowledges an item if one is ready.
    ///
    /// # Errors
    ///
    /// [`QueueError::Empty`], or as [`Queue::receive`].
    pub fn try_get(&self) -> std::result::Result<T, QueueError> {
        self.get_until(Some(Duration::ZERO))
    }

    /// Waits at most `timeout` for an item, takes it and acknowledges it.
    ///
    /// # Errors
    ///
    /// [`QueueError::Timeout`] (or [`QueueError::Empty`] for a zero timeout), or as
    /// [`Queue::receive`].
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, QueueError> {
        self.get_until(Some(timeout))
    }

    /// Copies of the items ready to be received, oldest first (items in flight are left out).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if an item is not a `T`; [`Error::Corrupt`] if the segment is damaged.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let ready = match self.place.as_ref() {
            Place::Shm(segment) => Raw { segment }.ready_payloads()?,
            // Numbered by position among the waiting items.
            #[cfg(feature = "redis")]
            Place::Redis(queue) => (0u64..).zip(queue.waiting()?).collect(),
        };
        ready
            .iter()
            .map(|(index, payload)| decode_item(self.name(), *index, payload))
            .collect()
    }
}

serialize_as_name!(Queue<T> where T: Serialize + DeserializeOwned);

/// Decodes the payloads a shared-memory receive offers under the receive lock, keeping the
/// values.
struct Decoder<T> {
    values: Vec<T>,
}

impl<T> Default for Decoder<T> {
    fn default() -> Self {
        Decoder { values: Vec::new() }
    }
}

impl<T: DeserializeOwned> Decoder<T> {
    /// Whether `payload` is a `T` (kept if so).
    fn accept(&mut self, payload: &[u8]) -> bool {
        match codec::decode(payload) {
            Ok(value) => {
                self.values.push(value);
                true
            }
            Err(_) => false,
        }
    }
}

/// Decodes item `index` of the queue `name` as a `U`.
fn decode_item<U: DeserializeOwned>(name: &SegmentName, index: u64, payload: &[u8]) -> Result<U> {
    codec::decode(payload).map_err(|source| Error::Decode {
        name: name.clone(),
        index,
        expected: std::any::type_name::<U>(),
        source,
    })
}
