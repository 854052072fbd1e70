//! [`SharedList<T>`]: an append-only list of serde values, in a growable segment or on a Redis
//! server.
//!
//! The public type dispatches each operation to where the list lives: `shm.rs` keeps it in
//! shared memory (index blocks and checksummed records, repaired after a writer's death),
//! `redis.rs` in a Redis list; `verify.rs` is what `inspect` reads of a list segment.

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

/// A growable list of `T` in shared memory, appended to and read by any number of threads and
/// processes at once.
///
/// Items are stored in `MessagePack` (a self-describing encoding), so `memspace list get NAME`
/// prints any list as JSON without knowing `T`. Every item carries a CRC-32; a damaged item is
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
    /// itself grows by doubling, so its size can be up to twice this).
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
        self.append(&[self.encode(value)?])
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
        let payload = match self.place.as_ref() {
            Place::Shm(segment) => {
                if index >= self.len()? {
                    return Ok(None);
                }
                Raw::new(segment).read_payload(index)?
            }
            #[cfg(feature = "redis")]
            Place::Redis(list) => match list.get(index)? {
                Some(payload) => payload,
                None => return Ok(None),
            },
        };
        self.decode(index, &payload).map(Some)
    }

    /// The published items, in order, as they are when each is reached (items pushed during
    /// the iteration are included).
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

    /// A copy of the items published when the call starts.
    ///
    /// # Errors
    ///
    /// As [`SharedList::get`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let segment = match self.place.as_ref() {
            Place::Shm(segment) => segment,
            #[cfg(feature = "redis")]
            Place::Redis(list) => {
                return (0u64..)
                    .zip(list.all()?)
                    .map(|(index, payload)| self.decode(index, &payload))
                    .collect();
            }
        };
        let len = self.len()?;
        (0..len)
            .map(|index| {
                self.get(index)?
                    .ok_or_else(|| segment.corrupt(format!("item {index} vanished")))
            })
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
