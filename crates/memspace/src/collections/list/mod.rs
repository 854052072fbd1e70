//! [`SharedList<T>`]: a mutable list of serde values, in a growable segment or on a Redis
//! server.
//!
//! The public type dispatches each operation to where the list lives: `shm.rs` keeps it in
//! shared memory (index blocks and checksummed records, read without a lock through a
//! sequence word, changed under the segment's lock with a journal that recovery rolls
//! forward after a writer's death), `redis.rs` in a Redis list; `verify.rs` is what `inspect`
//! reads of a list segment.

#[cfg(feature = "redis")]
mod redis;
mod shm;
mod verify;

pub(crate) use self::verify::{len, verify};

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(feature = "redis")]
use self::redis::RedisList;
use self::shm::Raw;
use super::{codec, record};
use crate::error::{Error, Result};
#[cfg(not(feature = "redis"))]
use crate::handle::NoRedis as RedisList;
use crate::handle::{Blueprint, Place};
use crate::segment::{Kind, SegmentName, SegmentOptions};

/// A growable, mutable list of `T` in shared memory, changed and read by any number of threads
/// and processes at once (Python's `Manager().list()`).
///
/// Writers take the segment's lock; readers ([`get`](SharedList::get),
/// [`to_vec`](SharedList::to_vec), [`len`](SharedList::len), ...) take none, and see the list as
/// some writer left it, never in the middle of a change. Every change is atomic even if its
/// process is killed: the list is then as before the change or as after it, and the next
/// writer finishes what was left. Appends are the fast path (one record and one store); a
/// [`set`](SharedList::set), [`pop`](SharedList::pop) or [`truncate`](SharedList::truncate) is
/// a few stores more, an [`insert`](SharedList::insert) or [`remove`](SharedList::remove) in
/// the middle moves the index entries after it (O(n) words, not the items). Space of replaced
/// and removed items is reclaimed: the list uses at most about three times the bytes of its
/// items, plus 16 KiB.
///
/// Indexes count from the front; an index past the end is [`Error::IndexOutOfRange`] (Python's
/// `IndexError`), never a panic. From the end, [`last`](SharedList::last) reads and
/// [`pop`](SharedList::pop) removes: they pick the last item atomically, where `len() - 1`
/// computed first could be stale by the time it is used.
///
/// Items are stored in `MessagePack` (a self-describing encoding), so `memspace list get NAME`
/// prints any list as JSON without knowing `T`. Every item carries a CRC-32C; a damaged item is
/// an error, never a wrong value.
///
/// A name `redis://HOST:PORT/NAME` puts the list on a Redis server instead (a Redis list of
/// the same encoded items; see [`crate::backend`]); every method works the same, except
/// [`segment`](SharedList::segment).
///
/// On Redis every method can also fail with
/// [`Error::RedisUnreachable`](crate::Error::RedisUnreachable), or with
/// [`OpenError::NotFound`](crate::OpenError::NotFound) or
/// [`OpenError::Replaced`](crate::OpenError::Replaced) once the list was removed (or removed and
/// created again) through another handle (see [`crate::backend`]).
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::collections::SharedList;
///
/// let nums = SharedList::<i64>::new()?;
/// nums.push(&0)?;
/// nums.extend([1, 2])?;
/// assert_eq!(nums.to_vec()?, [0, 1, 2]);
/// assert_eq!(nums.get(1)?, Some(1));
/// nums.set(0, &10)?;
/// nums.insert(1, &5)?;
/// assert_eq!(nums.remove(2)?, 1);
/// assert_eq!(nums.pop()?, Some(2));
/// assert_eq!(nums.to_vec()?, [10, 5]);
/// assert!(matches!(nums.set(7, &0), Err(memspace::Error::IndexOutOfRange { index: 7, len: 2, .. })));
/// # Ok(())
/// # }
/// ```
pub struct SharedList<T> {
    place: Place<RedisList>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for SharedList<T> {
    fn clone(&self) -> Self {
        Self::at(self.place.clone())
    }
}

impl<T> fmt::Debug for SharedList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Debug` never waits: a Redis list shows its name only, not a count from the server.
        let mut out = f.debug_struct("SharedList");
        out.field("name", self.name());
        if let Some(segment) = self.place.shm() {
            out.field("len", &Raw::new(segment).len());
        }
        out.finish_non_exhaustive()
    }
}

impl<T> SharedList<T> {
    fn at(place: Place<RedisList>) -> Self {
        SharedList {
            place,
            _items: PhantomData,
        }
    }

    /// The number of published items (on Redis, asked of the server, retrying after a
    /// reconnect).
    ///
    /// # Errors
    ///
    /// Never for shared memory. On Redis, [`Error::RedisUnreachable`] if the server cannot be
    /// reached, [`OpenError::NotFound`](crate::OpenError::NotFound) or
    /// [`OpenError::Replaced`](crate::OpenError::Replaced) if the list was removed (or created
    /// again) since this handle opened it.
    pub fn len(&self) -> Result<u64> {
        match self.place.as_ref() {
            Place::Shm(segment) => Ok(Raw::new(segment).len()),
            #[cfg(feature = "redis")]
            Place::Redis(list) => list.len(),
        }
    }

    /// Whether the list has no items.
    ///
    /// # Errors
    ///
    /// As [`SharedList::len`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Bytes of the segment in use: the control pages, the index and the records (the segment
    /// itself grows ahead of its writers, so its size can be about twice this).
    /// 0 for a Redis list.
    #[must_use]
    pub fn used_bytes(&self) -> u64 {
        match self.place.as_ref() {
            Place::Shm(segment) => Raw::new(segment).used_bytes(),
            #[cfg(feature = "redis")]
            Place::Redis(_) => 0,
        }
    }

    place_accessors!("list", typed);
}

impl<T: Serialize + DeserializeOwned> SharedList<T> {
    create_constructors!("list");

    open_constructors!(Kind::List, "list", create_in);

    fn create_segment(
        name: &SegmentName,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        let blueprint = Blueprint::of::<T>(Kind::List, options, anonymous);
        let place = Place::create(name, &blueprint, |segment| {
            Raw::new(segment).init();
            Ok(())
        })?;
        Ok(Self::at(place))
    }

    /// Appends `value`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if `value` cannot be encoded; [`Error::Full`] or [`Error::NoSpace`] if
    /// the segment cannot grow (the list is unchanged); [`Error::Corrupt`] if the segment was
    /// damaged. On Redis, [`OpenError::NotFound`](crate::OpenError::NotFound) if the list was
    /// removed (nothing is written), or [`Error::RedisUnreachable`].
    pub fn push(&self, value: &T) -> Result<()> {
        match self.place.as_ref() {
            Place::Shm(segment) => codec::with_encoded(
                value,
                |source| self.encode_error(source),
                |payload| {
                    self.check_size(payload)?;
                    let raw = Raw::new(segment);
                    let held = raw.lock()?;
                    raw.append(&held, payload)
                },
            ),
            #[cfg(feature = "redis")]
            Place::Redis(list) => list.push(&[self.encode(value)?]),
        }
    }

    /// Appends every item of `values` under one acquisition of the lock; other writers'
    /// items do not interleave with them.
    ///
    /// # Errors
    ///
    /// As [`SharedList::push`]. Items are encoded before any is appended, so an encoding error
    /// appends nothing; a growth error leaves the items before it appended.
    pub fn extend<I>(&self, values: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<T>,
    {
        let payloads = values
            .into_iter()
            .map(|value| self.encode(std::borrow::Borrow::borrow(&value)))
            .collect::<Result<Vec<_>>>()?;
        self.append(&payloads)
    }

    /// Appends encoded items, in shared memory under one acquisition of the lock (taken even
    /// for none: it repairs what a dead writer left), on Redis in one atomic step.
    fn append(&self, payloads: &[Vec<u8>]) -> Result<()> {
        match self.place.as_ref() {
            Place::Shm(segment) => {
                let raw = Raw::new(segment);
                let held = raw.lock()?;
                payloads
                    .iter()
                    .try_for_each(|payload| raw.append(&held, payload))
            }
            #[cfg(feature = "redis")]
            Place::Redis(list) => list.push(payloads),
        }
    }

    /// The item at `index`, or `None` past the end.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the item is not a `T`; [`Error::Corrupt`] if it fails its checksum
    /// or points outside the segment.
    pub fn get(&self, index: u64) -> Result<Option<T>> {
        match self.place.as_ref() {
            Place::Shm(segment) => {
                Raw::new(segment).get_with(index, |payload| self.decode(index, payload))
            }
            #[cfg(feature = "redis")]
            Place::Redis(list) => list
                .get(index)?
                .map(|payload| self.decode(index, &payload))
                .transpose(),
        }
    }

    /// The last item, or `None` if the list is empty: one read, so the item is the last one at
    /// some moment even while other processes push and pop.
    ///
    /// # Errors
    ///
    /// As [`SharedList::get`].
    pub fn last(&self) -> Result<Option<T>> {
        match self.place.as_ref() {
            Place::Shm(segment) => Raw::new(segment)
                .last()?
                .map(|(index, payload)| self.decode(index, &payload))
                .transpose(),
            #[cfg(feature = "redis")]
            Place::Redis(list) => match list.last()? {
                Some(payload) => {
                    let index = list.len().unwrap_or(1).saturating_sub(1);
                    self.decode(index, &payload).map(Some)
                }
                None => Ok(None),
            },
        }
    }

    /// Replaces the item at `index` by `value` (Python's `items[index] = value`).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if `index` is not below the length (nothing is written);
    /// otherwise as [`SharedList::push`].
    pub fn set(&self, index: u64, value: &T) -> Result<()> {
        let payload = self.encode(value)?;
        match self.place.as_ref() {
            Place::Shm(segment) => {
                let raw = Raw::new(segment);
                raw.set(&raw.lock()?, index, &payload)
            }
            #[cfg(feature = "redis")]
            Place::Redis(list) => list.set(index, &payload),
        }
    }

    /// Inserts `value` at `index` (at most the length; at the length it appends), moving the
    /// items from there one place up.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if `index` is past the length (nothing is written);
    /// otherwise as [`SharedList::push`].
    pub fn insert(&self, index: u64, value: &T) -> Result<()> {
        let payload = self.encode(value)?;
        match self.place.as_ref() {
            Place::Shm(segment) => {
                let raw = Raw::new(segment);
                raw.insert(&raw.lock()?, index, &payload)
            }
            #[cfg(feature = "redis")]
            Place::Redis(list) => list.insert(index, &payload),
        }
    }

    /// Removes and returns the item at `index`, moving the items after it one place down
    /// (Python's `items.pop(index)`).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if `index` is not below the length; [`Error::Decode`] if the
    /// item is not a `T` (in shared memory it is then left in place; on Redis it was removed);
    /// [`Error::Corrupt`] if the segment was damaged; on Redis as [`SharedList::push`].
    pub fn remove(&self, index: u64) -> Result<T> {
        self.take_at(index, false)
    }

    /// Removes and returns the item at `index`, putting the last item in its place: O(1), but
    /// the order of the items changes.
    ///
    /// # Errors
    ///
    /// As [`SharedList::remove`].
    pub fn swap_remove(&self, index: u64) -> Result<T> {
        self.take_at(index, true)
    }

    fn take_at(&self, index: u64, swap: bool) -> Result<T> {
        match self.place.as_ref() {
            Place::Shm(segment) => {
                let raw = Raw::new(segment);
                raw.remove(&raw.lock()?, index, swap, |payload| {
                    self.decode(index, &payload)
                })
            }
            #[cfg(feature = "redis")]
            Place::Redis(list) => self.decode(index, &list.remove(index, swap)?),
        }
    }

    /// Removes and returns the last item, or `None` if the list is empty.
    ///
    /// # Errors
    ///
    /// As [`SharedList::remove`].
    pub fn pop(&self) -> Result<Option<T>> {
        match self.place.as_ref() {
            Place::Shm(segment) => {
                let raw = Raw::new(segment);
                let held = raw.lock()?;
                let len = raw.len();
                raw.pop(&held, |payload| {
                    self.decode(len.saturating_sub(1), &payload)
                })
            }
            #[cfg(feature = "redis")]
            Place::Redis(list) => list
                .pop()?
                .map(|payload| {
                    let index = list.len().unwrap_or(0);
                    self.decode(index, &payload)
                })
                .transpose(),
        }
    }

    /// Keeps the first `len` items and removes the rest (nothing if the list is not longer).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the segment was damaged; on Redis as [`SharedList::push`].
    pub fn truncate(&self, len: u64) -> Result<()> {
        match self.place.as_ref() {
            Place::Shm(segment) => {
                let raw = Raw::new(segment);
                raw.truncate(&raw.lock()?, len)
            }
            #[cfg(feature = "redis")]
            Place::Redis(list) => list.truncate(len),
        }
    }

    /// Removes every item; in shared memory the space they took is free again at once.
    ///
    /// # Errors
    ///
    /// As [`SharedList::truncate`].
    pub fn clear(&self) -> Result<()> {
        self.truncate(0)
    }

    /// The published items, in order, as they are when each is reached (items pushed during
    /// the iteration are included; an item inserted or removed before the iterator's position
    /// meanwhile shifts the items after it, as for Python's list iterator; use
    /// [`to_vec`](SharedList::to_vec) for a copy taken at one moment).
    ///
    /// Each item is read on its own: one that cannot be read ([`Error::Decode`] for an item of
    /// another type, [`Error::Corrupt`] for a damaged one) is an `Err` in its place, and the
    /// iteration goes on with the next, so a reader can skip what it cannot decode (where
    /// [`to_vec`](SharedList::to_vec) stops at the first error).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> memspace::Result<()> {
    /// use memspace::collections::SharedList;
    ///
    /// let name = format!("doc-list-iter-{}", std::process::id());
    /// let numbers = SharedList::<i64>::create(&name)?;
    /// numbers.push(&1)?;
    /// SharedList::<String>::open(&name)?.push(&"two".to_owned())?; // another type
    /// numbers.push(&3)?;
    /// let readable: Vec<i64> = numbers.iter().filter_map(Result::ok).collect();
    /// assert_eq!(readable, [1, 3]);
    /// numbers.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            list: self,
            next: 0,
        }
    }

    /// A copy of the items as they are at one moment (between two changes).
    ///
    /// # Errors
    ///
    /// As [`SharedList::get`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let payloads = match self.place.as_ref() {
            Place::Shm(segment) => Raw::new(segment).all()?,
            #[cfg(feature = "redis")]
            Place::Redis(list) => list.all()?,
        };
        (0u64..)
            .zip(payloads)
            .map(|(index, payload)| self.decode(index, &payload))
            .collect()
    }

    fn decode(&self, index: u64, payload: &[u8]) -> Result<T> {
        codec::decode(payload).map_err(|source| Error::Decode {
            name: self.name().clone(),
            index,
            expected: std::any::type_name::<T>(),
            source,
        })
    }

    fn encode(&self, value: &T) -> Result<Vec<u8>> {
        let mut payload = Vec::new();
        self.encode_into(&mut payload, value)?;
        Ok(payload)
    }

    /// Encodes `value` into `payload` (empty), checking that it fits a record.
    fn encode_into(&self, payload: &mut Vec<u8>, value: &T) -> Result<()> {
        codec::encode_into(payload, value).map_err(|source| self.encode_error(source))?;
        self.check_size(payload)
    }

    /// The error for an item that could not be encoded.
    #[cold]
    fn encode_error(&self, source: rmp_serde::encode::Error) -> Error {
        Error::Encode {
            name: self.name().clone(),
            type_name: std::any::type_name::<T>(),
            source,
        }
    }

    /// Checks that an encoded item fits a record.
    #[inline]
    fn check_size(&self, payload: &[u8]) -> Result<()> {
        if payload.len() > record::MAX_PAYLOAD {
            return Err(Error::Full {
                name: self.name().clone(),
                needed: payload.len() as u64,
                max_size: record::MAX_PAYLOAD as u64,
            });
        }
        Ok(())
    }
}

serialize_as_name!(SharedList<T> where T: Serialize + DeserializeOwned);

/// Iterator over a [`SharedList`]; see [`SharedList::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    list: &'a SharedList<T>,
    next: u64,
}

impl<T: Serialize + DeserializeOwned> Iterator for Iter<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        let index = self.next;
        let item = self.list.get(index).transpose()?;
        self.next += 1;
        Some(item)
    }
}

impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a SharedList<T> {
    type Item = Result<T>;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}
