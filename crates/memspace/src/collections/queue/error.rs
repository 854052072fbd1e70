//! Why a queue operation did not complete: [`QueueError`], and [`Undecodable`], the item a
//! receiver could not read as its type, which the error holds in flight.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::delivery::Claim;
#[cfg(doc)]
use super::{Delivery, Queue};
use super::{RedisQueue, decode_item};
use crate::error::{Error, Result};
use crate::handle::Place;
use crate::segment::SegmentName;

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
    /// The queue was closed ([`Queue::close`]): a put fails, and so does a receive once
    /// nothing is left unacknowledged (at once after [`Queue::close_immediately`]). Waiting
    /// senders and receivers are woken with it.
    #[error(
        "queue `{name}` is closed: it takes no more items, and hands out none once the last \
         one is acknowledged; create the queue again to reuse its name"
    )]
    Closed {
        /// The queue.
        name: SegmentName,
    },
    /// [`Queue::task_done`] in a process that holds no item in flight: every item it received
    /// was acknowledged already (by [`Queue::get`], which acknowledges at once, by
    /// [`Delivery::ack`], or by earlier `task_done` calls), or taken over by another receiver.
    #[error(
        "queue `{name}`: task_done was called more times than this process took items; it marks \
         done an item received with `receive` and kept with `Delivery::into_task` (`get` \
         already marks its item done)"
    )]
    NoTaskInFlight {
        /// The queue.
        name: SegmentName,
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
    place: Place<RedisQueue>,
    expected: &'static str,
    payload: Vec<u8>,
    source: rmp_serde::decode::Error,
    claim: Claim,
}

impl fmt::Debug for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Undecodable")
            .field("queue", self.name())
            .field("seq", &self.claim.seq)
            .field("deliveries", &self.claim.deliveries)
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
            self.claim.seq,
            self.name(),
            self.expected
        )
    }
}

impl std::error::Error for Undecodable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl Undecodable {
    /// The item `payload`, taken under `claim` from the queue at `place`, which cannot be
    /// decoded as the receiver's type `expected`.
    pub(super) fn new(
        place: Place<RedisQueue>,
        expected: &'static str,
        payload: Vec<u8>,
        source: rmp_serde::decode::Error,
        claim: Claim,
    ) -> Self {
        Undecodable {
            place,
            expected,
            payload,
            source,
            claim,
        }
    }

    /// The queue.
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        self.place.name()
    }

    /// The item's sequence number in its queue (as [`Delivery::seq`]).
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.claim.seq
    }

    /// How many times the item has been handed out, this time included (as
    /// [`Delivery::deliveries`]).
    #[must_use]
    pub fn deliveries(&self) -> u32 {
        self.claim.deliveries
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
        decode_item(self.name(), self.claim.seq, &self.payload)
    }

    /// Acknowledges the item without reading it: it leaves the queue for good, and frees a
    /// place in a bounded queue. Returns its payload.
    ///
    /// # Errors
    ///
    /// As [`Delivery::ack`]: the item then stays in flight, and goes back to the queue as
    /// this value is dropped.
    pub fn discard(mut self) -> std::result::Result<Vec<u8>, QueueError> {
        self.claim.settle(&self.place, true)?;
        Ok(std::mem::take(&mut self.payload))
    }

    /// Puts the item back now, in its old place (what dropping this value does, with the
    /// error reported).
    ///
    /// # Errors
    ///
    /// As [`Delivery::nack`].
    pub fn nack(mut self) -> std::result::Result<(), QueueError> {
        self.claim.put_back(&self.place)
    }
}

impl Drop for Undecodable {
    fn drop(&mut self) {
        self.claim.release(&self.place);
    }
}
