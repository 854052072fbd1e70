//! [`SharedMap<K, V>`]: a hash map of serde keys and values in a growable segment, or on a
//! Redis server.
//!
//! The public type holds a [`Place`] and dispatches each method to one of two engines: the
//! hash table in shared memory (`shm/`: its layout, protocol and crash recovery in `mod.rs`,
//! the slot table and the hash in `table.rs`, growth, compaction and `clear` in `space.rs`,
//! `len` and `verify`, which read without the lock, in `verify.rs`) or a Redis hash
//! (`redis.rs`). Both store keys and values in their `MessagePack` encoding (`codec.rs`). The
//! iterators are in `iter.rs`.

mod iter;
#[cfg(feature = "redis")]
mod redis;
mod shm;

pub use self::iter::{MapIter, MapKeys, MapValues};
pub(crate) use self::shm::{len, verify};

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(feature = "redis")]
use self::redis::RedisMap;
use self::shm::{Entry, KEY_LENGTH, Raw};
use super::{codec, record};
#[cfg(doc)]
use crate::error::OpenError;
use crate::error::{Error, Result};
#[cfg(not(feature = "redis"))]
use crate::handle::NoRedis as RedisMap;
use crate::handle::{Blueprint, Place};
use crate::segment::{Kind, SegmentName, SegmentOptions};

/// A hash map whose entries live in shared memory, read and changed by any number of threads
/// and processes at once.
///
/// Keys and values are any serde types, stored in their `MessagePack` encoding (so `memspace
/// map get NAME` prints any map as JSON). Two keys are the same key when their encodings are
/// equal: integers of every width and signedness with the same value are the same key
/// (`5u8` and `5i64`), a struct and a map with the same fields in the same order are too, and
/// `1.0f32` and `1.0f64` are not. Do not use types whose encoding depends on the process, such
/// as a `HashMap` or `HashSet` with the default `RandomState` (their order differs), as keys:
/// use a `BTreeMap` or a sorted `Vec`.
///
/// Every change takes the map's robust lock; a process killed in the middle of one leaves
/// the map as it was before the change or as it is after it (see the module docs for the
/// protocol and what a crash leaves behind). [`get`](SharedMap::get),
/// [`contains_key`](SharedMap::contains_key) and [`len`](SharedMap::len) take no lock: they
/// read optimistically and read again if a change overlapped, so readers in many processes
/// do not wait for one another, and see each change whole or not at all.
///
/// A map that outgrows its table does not rebuild it in one insert: from 1 024 slots on, it
/// moves its entries into the larger table 64 slots at a time, over the inserts that follow, so
/// that no insert pays for the whole map (at 10 M keys, the longest insert went from 0.2 to
/// 0.4 s to the scale of a scheduler's time slice). A `clear`, and a compaction of replaced and
/// removed entries, still take time in proportion to the map.
///
/// A name `redis://HOST:PORT/NAME` puts the map on a Redis server instead, as a hash of
/// encoded keys to encoded values, with the same methods ([`segment`](SharedMap::segment)
/// aside); iteration copies it with one `HGETALL`.
///
/// On Redis every method can also fail with
/// [`Error::RedisUnreachable`](crate::Error::RedisUnreachable), or with
/// [`OpenError::NotFound`](crate::OpenError::NotFound) or
/// [`OpenError::Replaced`](crate::OpenError::Replaced) once the map was removed (or removed and
/// created again) through another handle (see [`crate::backend`]).
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::collections::SharedMap;
///
/// let name = format!("doc-map-{}", std::process::id());
/// let ages = SharedMap::<String, u32>::create(&name)?;
/// assert_eq!(ages.insert(&"ada".into(), &36)?, None);
/// assert_eq!(ages.insert(&"ada".into(), &37)?, Some(36));
/// ages.insert(&"alan".into(), &41)?;
///
/// // Another process would open it by name, as this second handle does.
/// let same = SharedMap::<String, u32>::open(&name)?;
/// assert_eq!(same.get(&"ada".into())?, Some(37));
/// assert_eq!(same.len()?, 2);
/// let mut names = same.keys().collect::<memspace::Result<Vec<_>>>()?;
/// names.sort();
/// assert_eq!(names, ["ada", "alan"]);
///
/// assert_eq!(ages.remove(&"ada".into())?, Some(37));
/// assert!(!same.contains_key(&"ada".into())?);
/// ages.unlink()?;
/// # Ok(())
/// # }
/// ```
pub struct SharedMap<K, V> {
    place: Place<RedisMap>,
    _entries: PhantomData<Entries<K, V>>,
}

/// The map stores encodings, never a `K` or a `V`: it is `Send` and `Sync` whatever they are.
type Entries<K, V> = fn(K, V) -> (K, V);

impl<K, V> Clone for SharedMap<K, V> {
    fn clone(&self) -> Self {
        Self::at(self.place.clone())
    }
}

impl<K, V> fmt::Debug for SharedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Debug` never waits: the count as stored, without the lock, and none from a Redis
        // server.
        let mut out = f.debug_struct("SharedMap");
        out.field("name", self.name());
        if let Place::Shm(segment) = &self.place {
            out.field("len", &Raw { segment }.stored_len());
        }
        out.finish_non_exhaustive()
    }
}

impl<K, V> SharedMap<K, V> {
    /// The handle of the map at `place`.
    fn at(place: Place<RedisMap>) -> Self {
        SharedMap {
            place,
            _entries: PhantomData,
        }
    }

    /// The number of entries.
    ///
    /// Read without the lock, unless a change is under way in another thread or process (or
    /// its maker died in the middle of it): then it waits for the lock, so that the count is
    /// always that of a whole map, before or after each change.
    /// On Redis, the server is asked.
    ///
    /// # Errors
    ///
    /// Never for shared memory. On Redis, [`Error::RedisUnreachable`] if the server cannot be
    /// reached, [`OpenError::NotFound`](crate::OpenError::NotFound) or
    /// [`OpenError::Replaced`](crate::OpenError::Replaced) if the map was removed (or created
    /// again) since this handle opened it.
    pub fn len(&self) -> Result<u64> {
        match self.place.as_ref() {
            Place::Shm(segment) => Ok(Raw { segment }.len()),
            #[cfg(feature = "redis")]
            Place::Redis(map) => map.len(),
        }
    }

    /// Whether the map has no entries.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::len`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Bytes of the segment in use: the control pages, the table, the entries, and the garbage
    /// of replaced and removed entries not yet compacted away (the segment itself grows ahead
    /// of its writers, so its size can be about twice this).
    /// 0 for a Redis map.
    #[must_use]
    pub fn used_bytes(&self) -> u64 {
        match self.place.as_ref() {
            Place::Shm(segment) => Raw { segment }.tail(),
            #[cfg(feature = "redis")]
            Place::Redis(_) => 0,
        }
    }

    place_accessors!("map", typed);
}

impl<K, V> SharedMap<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    create_constructors!("map");

    open_constructors!(Kind::Map, "map", create_in);

    fn create_segment(
        name: &SegmentName,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        let blueprint = Blueprint::of::<(K, V)>(Kind::Map, options, anonymous);
        Ok(Self::at(Place::create(name, &blueprint, shm::init)?))
    }

    fn encode_error<T: ?Sized>(&self, source: rmp_serde::encode::Error) -> Error {
        Error::Encode {
            name: self.name().clone(),
            type_name: std::any::type_name::<T>(),
            source,
        }
    }

    fn encode_key(&self, key: &K) -> Result<Vec<u8>> {
        codec::encode(key).map_err(|source| self.encode_error::<K>(source))
    }

    /// Runs `look_up` on `key` encoded on the stack (or, for a long key, in this thread's
    /// scratch buffer): a lookup allocates nothing for its key.
    #[inline]
    fn with_key<R>(&self, key: &K, look_up: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        codec::with_encoded(key, |source| self.encode_error::<K>(source), look_up)
    }

    /// Appends the record payload of an entry to the empty `payload`: key length, key, value;
    /// returns the key's length.
    fn encode_entry(&self, payload: &mut Vec<u8>, key: &K, value: &V) -> Result<usize> {
        payload.extend_from_slice(&[0; KEY_LENGTH]);
        codec::encode_into(payload, key).map_err(|source| self.encode_error::<K>(source))?;
        let key_len = payload.len() - KEY_LENGTH;
        codec::encode_into(payload, value).map_err(|source| self.encode_error::<V>(source))?;
        let too_long = || Error::Full {
            name: self.name().clone(),
            needed: payload.len() as u64,
            max_size: record::MAX_PAYLOAD as u64,
        };
        let key_len_word = u32::try_from(key_len).map_err(|_| too_long())?;
        if payload.len() > record::MAX_PAYLOAD {
            return Err(too_long());
        }
        payload[..KEY_LENGTH].copy_from_slice(&key_len_word.to_le_bytes());
        Ok(key_len)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8], slot: u64) -> Result<T> {
        codec::decode(bytes).map_err(|source| Error::Decode {
            name: self.name().clone(),
            index: slot,
            expected: std::any::type_name::<T>(),
            source,
        })
    }

    /// The value of an entry the shared-memory engine found (with its slot), if any, decoded.
    fn value_of(&self, found: Option<(u64, Entry)>) -> Result<Option<V>> {
        found
            .map(|(slot, entry)| self.decode(entry.value(), slot))
            .transpose()
    }

    /// Inserts `value` under `key`; returns the value it replaced, if the key had one.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the key or value cannot be encoded; [`Error::Full`] or
    /// [`Error::NoSpace`] if the segment cannot grow (the map is unchanged); [`Error::Decode`] if
    /// the replaced value is not a `V` (it is replaced all the same; the error's `index` is the
    /// entry's slot; on Redis it is [`Error::DecodeMapValue`], naming the key); [`Error::Corrupt`]
    /// if the segment was damaged. On Redis, [`OpenError::NotFound`] if the map was removed
    /// (nothing is written), or [`Error::RedisUnreachable`].
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        self.store(key, value, true)
    }

    /// Inserts `value` under `key` unless the key has a value already, in one atomic step;
    /// returns the value the key had, or `None` if `value` was inserted. Python's
    /// `dict.setdefault`, and the way for several processes to agree on one value for a key:
    /// whichever inserts first, every caller gets that value back.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::insert`]; a value found that is not a `V` is [`Error::Decode`] (the map
    /// is unchanged).
    pub fn insert_if_absent(&self, key: &K, value: &V) -> Result<Option<V>> {
        self.store(key, value, false)
    }

    /// [`insert`](Self::insert) with `replace`, [`insert_if_absent`](Self::insert_if_absent)
    /// without.
    /// The entry is encoded into this thread's scratch buffer: a store allocates nothing for it.
    fn store(&self, key: &K, value: &V, replace: bool) -> Result<Option<V>> {
        codec::with_scratch(|payload| {
            let key_len = self.encode_entry(payload, key, value)?;
            match self.place.as_ref() {
                Place::Shm(segment) => {
                    self.value_of(Raw { segment }.insert(payload, key_len, replace)?)
                }
                #[cfg(feature = "redis")]
                Place::Redis(map) => {
                    let (key, value) = payload[KEY_LENGTH..].split_at(key_len);
                    map.insert(key, value, replace)
                }
            }
        })
    }

    /// The value of `key`, if it has one.
    ///
    /// Read without the lock: a change made meanwhile by another thread or process makes it
    /// read again (after a few overlapping changes it reads under the lock, so a stream of
    /// writes cannot starve it), and a holder of the lock killed in the middle of a change is
    /// recovered from as by a writer.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the key cannot be encoded; [`Error::Decode`] if the stored value is not
    /// a `V` (on Redis [`Error::DecodeMapValue`], naming the key); [`Error::Corrupt`] if the
    /// segment was damaged.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.place.as_ref() {
            Place::Shm(segment) => self.with_key(key, |key| {
                Raw { segment }.get(key, |slot, value| self.decode(value, slot))
            }),
            #[cfg(feature = "redis")]
            Place::Redis(map) => map.get(&self.encode_key(key)?),
        }
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::get`], except that the value is not decoded.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        match self.place.as_ref() {
            Place::Shm(segment) => Ok(self
                .with_key(key, |key| Raw { segment }.get(key, |_, _| Ok(())))?
                .is_some()),
            #[cfg(feature = "redis")]
            Place::Redis(map) => map.contains(&self.encode_key(key)?),
        }
    }

    /// Removes `key`; returns its value, if it had one.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::get`]; a value that is not a `V` is removed all the same. On Redis,
    /// [`OpenError::NotFound`] if the map was removed.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let key = self.encode_key(key)?;
        match self.place.as_ref() {
            Place::Shm(segment) => self.value_of(Raw { segment }.remove(&key)?),
            #[cfg(feature = "redis")]
            Place::Redis(map) => map.remove(&key),
        }
    }

    /// Removes every entry, and makes the space they took reusable.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the segment was damaged. On Redis, [`OpenError::NotFound`] if the
    /// map was removed.
    pub fn clear(&self) -> Result<()> {
        match self.place.as_ref() {
            Place::Shm(segment) => Raw { segment }.clear(),
            #[cfg(feature = "redis")]
            Place::Redis(map) => map.clear(),
        }
    }
}

serialize_as_name!(SharedMap<K, V> where K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned);
