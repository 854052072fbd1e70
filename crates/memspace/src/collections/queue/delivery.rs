//! [`Delivery`]: an item in flight with the process that received it, and the [`Claim`] on it
//! that a delivery and an [`Undecodable`](super::Undecodable) item share: acknowledging it,
//! putting it back, and putting it back when dropped, on either backend. [`Deliveries`]: items
//! received together, settled together under one [`Claims`].

use std::fmt;

use super::layout::Raw;
#[cfg(feature = "redis")]
use super::redis::Received;
use super::shm::Taken;
use super::{Queue, QueueError, RedisQueue};
use crate::handle::Place;
use crate::sys;

/// This process's hold on an item in flight.
pub(super) struct Claim {
    pub(super) seq: u64,
    pub(super) deliveries: u32,
    /// The process that received it: a forked copy must not put it back.
    pid: u32,
    /// Acknowledged or put back (or no longer this process's to settle).
    settled: bool,
    /// For a Redis queue: the stream entry and its receiver.
    #[cfg(feature = "redis")]
    remote: Option<Received>,
}

impl Claim {
    /// The claim on an item taken from a segment, and its payload.
    pub(super) fn shm(taken: Taken) -> (Self, Vec<u8>) {
        (Self::new(taken.seq, taken.deliveries), taken.payload)
    }

    /// The claim on item `seq`, taken from a segment for the `deliveries`th time.
    pub(super) fn shm_item(seq: u64, deliveries: u32) -> Self {
        Self::new(seq, deliveries)
    }

    /// The claim on an item received from a Redis stream, and its payload.
    #[cfg(feature = "redis")]
    pub(super) fn redis(mut item: Received) -> (Self, Vec<u8>) {
        let payload = std::mem::take(&mut item.payload);
        let mut claim = Self::new(item.seq, item.deliveries);
        claim.remote = Some(item);
        (claim, payload)
    }

    fn new(seq: u64, deliveries: u32) -> Self {
        Claim {
            seq,
            deliveries,
            pid: sys::pid(),
            settled: false,
            #[cfg(feature = "redis")]
            remote: None,
        }
    }

    /// Acknowledges the item (`ack`) or puts it back, in the queue at `place`. It counts as
    /// settled once the backend answered, also when the answer is that the item is no longer
    /// in flight with its receiver ([`QueueError::NotInFlight`]); an error on the way leaves it
    /// in flight, to be put back when the claim's owner is dropped.
    pub(super) fn settle(
        &mut self,
        place: &Place<RedisQueue>,
        ack: bool,
    ) -> Result<(), QueueError> {
        let done = match place.as_ref() {
            Place::Shm(segment) if ack => Raw { segment }.ack(&[self.seq]).map(|()| true)?,
            Place::Shm(segment) => Raw { segment }.nack(&[self.seq]).map(|()| true)?,
            #[cfg(feature = "redis")]
            Place::Redis(queue) => match &self.remote {
                Some(item) if ack => queue.ack(item)?,
                Some(item) => queue.nack(item)?,
                None => false,
            },
        };
        self.settled = true;
        if done {
            Ok(())
        } else {
            Err(QueueError::NotInFlight {
                name: place.name().clone(),
                seq: self.seq,
            })
        }
    }

    /// Puts the item back now, reporting the error (`nack` on a delivery): settled whatever
    /// the answer.
    pub(super) fn put_back(&mut self, place: &Place<RedisQueue>) -> Result<(), QueueError> {
        self.settled = true;
        self.settle(place, false)
    }

    /// Leaves the item in flight with this process: dropping the claim's owner no longer puts
    /// it back.
    pub(super) fn keep(&mut self) {
        self.settled = true;
    }

    /// What dropping the claim's owner does: puts the item back unless it was settled, or the
    /// claim is a forked copy.
    pub(super) fn release(&mut self, place: &Place<RedisQueue>) {
        if !self.settled && self.pid == sys::pid() {
            // If this fails the item is still recorded as ours, and is delivered again once
            // this process has ended (or, on Redis, its lease has run out): nothing is lost,
            // so the error can be dropped.
            let _ = self.settle(place, false);
        }
    }
}

/// A received item, in flight until [`ack`](Delivery::ack)ed.
///
/// Dropped without an ack, it goes back to the queue in its old place; if its process dies
/// first, it is delivered again to another receiver (see [`Queue`]'s delivery guarantee).
#[must_use = "an item that is not acknowledged goes back to the queue"]
pub struct Delivery<'a, T> {
    queue: &'a Queue<T>,
    /// Present until acknowledged.
    value: Option<T>,
    claim: Claim,
}

impl<T: fmt::Debug> fmt::Debug for Delivery<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", self.queue.name())
            .field("seq", &self.claim.seq)
            .field("value", &self.value)
            .field("deliveries", &self.claim.deliveries)
            .finish_non_exhaustive()
    }
}

impl<'a, T> Delivery<'a, T> {
    /// The delivery of `value`, received from `queue` under `claim`.
    pub(super) fn new(queue: &'a Queue<T>, value: T, claim: Claim) -> Self {
        Delivery {
            queue,
            value: Some(value),
            claim,
        }
    }

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
        self.claim.deliveries
    }

    /// The item's sequence number in its queue (increasing in the order items were put).
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.claim.seq
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
    pub fn ack(mut self) -> Result<T, QueueError> {
        self.claim.settle(&self.queue.place, true)?;
        Ok(self
            .value
            .take()
            .expect("the value is present until acknowledged"))
    }

    /// Returns the item and leaves it in flight with this process, to be marked done later
    /// by [`Queue::task_done`] (Python's `JoinableQueue.get()` then `task_done()`). Until
    /// then it counts as unfinished for [`Queue::join`]; if this process dies first, the
    /// item is delivered again to another receiver, as any item in flight.
    ///
    /// # Panics
    ///
    /// Never: the value is present until this call, which consumes the delivery.
    #[must_use = "the item stays in flight until `task_done`"]
    pub fn into_task(mut self) -> T {
        self.claim.keep();
        self.value
            .take()
            .expect("the value is present until acknowledged")
    }

    /// Puts the item back now, in its old place (what dropping the delivery does, with the
    /// error reported).
    ///
    /// # Errors
    ///
    /// As [`Delivery::ack`].
    pub fn nack(mut self) -> Result<(), QueueError> {
        self.claim.put_back(&self.queue.place)
    }
}

impl<T> Drop for Delivery<'_, T> {
    fn drop(&mut self) {
        self.claim.release(&self.queue.place);
    }
}

/// This process's hold on items received together: acknowledged or put back together, with
/// one lock (shared memory) or one script (Redis).
pub(super) struct Claims {
    /// Sequence number and deliveries of each item, in the order received.
    items: Vec<(u64, u32)>,
    /// The process that received them: a forked copy must not put them back.
    pid: u32,
    settled: bool,
    /// For a Redis queue: the stream entries and their receiver.
    #[cfg(feature = "redis")]
    remote: Vec<Received>,
}

impl Claims {
    /// Claims on items taken from a segment: `(seq, deliveries)` each.
    pub(super) fn shm(items: Vec<(u64, u32)>) -> Self {
        Claims {
            items,
            pid: sys::pid(),
            settled: false,
            #[cfg(feature = "redis")]
            remote: Vec::new(),
        }
    }

    /// Claims on items received from a Redis stream, and their payloads.
    #[cfg(feature = "redis")]
    pub(super) fn redis(mut received: Vec<Received>) -> (Self, Vec<Vec<u8>>) {
        let payloads = received
            .iter_mut()
            .map(|item| std::mem::take(&mut item.payload))
            .collect();
        let mut claims = Self::shm(
            received
                .iter()
                .map(|item| (item.seq, item.deliveries))
                .collect(),
        );
        claims.remote = received;
        (claims, payloads)
    }

    /// Keeps only the first `n` items; the claims on the others are handed back (for a
    /// receiver that could not decode them), to be put back.
    #[cfg(feature = "redis")]
    pub(super) fn split_off(&mut self, n: usize) -> Claims {
        Claims {
            items: self.items.split_off(n.min(self.items.len())),
            pid: self.pid,
            settled: self.settled,
            #[cfg(feature = "redis")]
            remote: self.remote.split_off(n.min(self.remote.len())),
        }
    }

    /// The claim on the first item alone (for an item reported as undecodable).
    #[cfg(feature = "redis")]
    pub(super) fn into_single(mut self) -> Claim {
        let (seq, deliveries) = self.items.first().copied().unwrap_or_default();
        let mut claim = Claim::new(seq, deliveries);
        claim.remote = (!self.remote.is_empty()).then(|| self.remote.swap_remove(0));
        claim
    }

    /// Acknowledges the items (`ack`) or puts them back, as [`Claim::settle`] does one.
    pub(super) fn settle(
        &mut self,
        place: &Place<RedisQueue>,
        ack: bool,
    ) -> Result<(), QueueError> {
        let seqs: Vec<u64> = self.items.iter().map(|(seq, _)| *seq).collect();
        let missing = match place.as_ref() {
            Place::Shm(segment) => {
                let raw = Raw { segment };
                let settled = if ack { raw.ack(&seqs) } else { raw.nack(&seqs) };
                match settled {
                    Ok(()) => None,
                    Err(QueueError::NotInFlight { seq, .. }) => Some(seq),
                    Err(other) => return Err(other),
                }
            }
            #[cfg(feature = "redis")]
            Place::Redis(queue) => {
                let done = if ack {
                    queue.ack_many(&self.remote)?
                } else {
                    queue.nack_many(&self.remote)?
                };
                done.iter()
                    .zip(&self.remote)
                    .find(|(done, _)| !**done)
                    .map(|(_, item)| item.seq)
            }
        };
        self.settled = true;
        match missing {
            None => Ok(()),
            Some(seq) => Err(QueueError::NotInFlight {
                name: place.name().clone(),
                seq,
            }),
        }
    }

    /// What dropping the claims' owner does: puts the items back unless they were settled,
    /// or the claims are a forked copy.
    pub(super) fn release(&mut self, place: &Place<RedisQueue>) {
        if !self.settled && !self.items.is_empty() && self.pid == sys::pid() {
            // As for one claim: an item this fails to put back stays recorded as ours and is
            // delivered again once this process has ended.
            let _ = self.settle(place, false);
        }
    }
}

/// Items received together by [`Queue::receive_many`], in flight until
/// [`ack`](Deliveries::ack)ed, all at once.
///
/// Dropped without an ack, they go back to the queue in their old places; if the process dies
/// first, each is delivered again to another receiver (see [`Queue`]'s delivery guarantee).
#[must_use = "items that are not acknowledged go back to the queue"]
pub struct Deliveries<'a, T> {
    queue: &'a Queue<T>,
    values: Vec<T>,
    claims: Claims,
}

impl<T: fmt::Debug> fmt::Debug for Deliveries<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deliveries")
            .field("queue", self.queue.name())
            .field("seqs", &self.claims.items)
            .field("values", &self.values)
            .finish_non_exhaustive()
    }
}

impl<'a, T> Deliveries<'a, T> {
    /// The items `values` received from `queue` under `claims` (one claim each, in order).
    pub(super) fn new(queue: &'a Queue<T>, values: Vec<T>, claims: Claims) -> Self {
        Deliveries {
            queue,
            values,
            claims,
        }
    }

    /// The items, oldest first.
    #[must_use]
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// How many items were received (at least one).
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no item was received (never true for a batch handed out by
    /// [`Queue::receive_many`]).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// How many times each item has been handed out, this time included (see
    /// [`Delivery::deliveries`]), in the order of [`Deliveries::values`].
    pub fn deliveries(&self) -> impl Iterator<Item = u32> + '_ {
        self.claims.items.iter().map(|(_, deliveries)| *deliveries)
    }

    /// The items' sequence numbers, in the order of [`Deliveries::values`].
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.claims.items.iter().map(|(seq, _)| *seq)
    }

    /// Acknowledges every item at once (one lock, or one script on Redis): they leave the
    /// queue for good, and free their places in a bounded queue. Returns the items.
    ///
    /// # Errors
    ///
    /// [`QueueError::NotInFlight`] in a forked child of the receiver (naming the first item
    /// it does not hold; the others are acknowledged); [`QueueError::Other`] if the queue's
    /// segment is damaged. Items not acknowledged stay in flight, and go back to the queue
    /// when their receiver ends.
    pub fn ack(mut self) -> Result<Vec<T>, QueueError> {
        self.claims.settle(&self.queue.place, true)?;
        Ok(std::mem::take(&mut self.values))
    }

    /// Puts every item back now, in their old places (what dropping the deliveries does, with
    /// the error reported).
    ///
    /// # Errors
    ///
    /// As [`Deliveries::ack`].
    pub fn nack(mut self) -> Result<(), QueueError> {
        self.claims.settle(&self.queue.place, false)
    }
}

impl<T> Drop for Deliveries<'_, T> {
    fn drop(&mut self) {
        self.claims.release(&self.queue.place);
    }
}
