//! [`SharedValue<T>`]: one value of any serde type, shared by threads and processes, like
//! Python's `Manager().Value` (a string, a struct, a map): read, replaced and updated
//! atomically.
//!
//! In shared memory it is one checksummed record that a replacement writes beside the current
//! one and then switches to (`shm.rs`); on a Redis server it is the string of its encoded bytes
//! that a `Value<T>` also uses, updated in optimistic transactions.

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use self::shm::Raw;
use super::codec;
#[cfg(feature = "redis")]
use super::value::RedisValue;
use crate::error::{Error, Result};
#[cfg(not(feature = "redis"))]
use crate::handle::NoRedis as RedisValue;
use crate::handle::{Blueprint, Place};
#[cfg(feature = "redis")]
use crate::redis::{FirstData, Init};
use crate::segment::{Kind, SegmentName, SegmentOptions};

mod shm;

pub(crate) use self::shm::verify;

/// One value of any serde type (`T: Serialize + DeserializeOwned`: a `String`, a struct, a
/// `Vec`) shared by threads and processes, read and replaced whole: Python's
/// `Manager().Value`, without a server process.
///
/// Every access takes the value's robust lock, so [`update`](SharedValue::update) is atomic.
/// A process killed while it replaces the value leaves the old value or the new one, never a
/// mix, and the next access has nothing to repair. For a plain number, [`Value<T>`] is the
/// faster choice (no encoding, a fixed place).
///
/// A name `redis://HOST:PORT/NAME` puts the value on a Redis server; `update` is then an
/// optimistic transaction, started again when another writer got there first, so `change`
/// may run more than once. There every method can also fail with
/// [`Error::RedisUnreachable`], or with
/// [`OpenError::NotFound`](crate::OpenError::NotFound) or
/// [`OpenError::Replaced`](crate::OpenError::Replaced) once the value was removed (or removed
/// and created again) through another handle (see [`crate::backend`]).
///
/// [`Value<T>`]: crate::Value
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::collections::SharedValue;
///
/// let status = SharedValue::new(&String::from("starting"))?;
/// status.set(&"running".to_owned())?;
/// let shown = status.update(|s| s.push_str(" (3 workers)"))?;
/// assert_eq!(shown, "running (3 workers)");
/// assert_eq!(status.get()?, "running (3 workers)");
/// # Ok(())
/// # }
/// ```
pub struct SharedValue<T> {
    place: Place<RedisValue>,
    _value: PhantomData<fn(T) -> T>,
}

impl<T> Clone for SharedValue<T> {
    fn clone(&self) -> Self {
        Self::at(self.place.clone())
    }
}

impl<T> fmt::Debug for SharedValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Debug` never waits: the name only.
        f.debug_struct("SharedValue")
            .field("name", self.name())
            .finish_non_exhaustive()
    }
}

impl<T> SharedValue<T> {
    fn at(place: Place<RedisValue>) -> Self {
        SharedValue {
            place,
            _value: PhantomData,
        }
    }

    place_accessors!("value", typed);
}

impl<T: Serialize + DeserializeOwned> SharedValue<T> {
    /// An anonymous value, removed when the last process using it drops its handles.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if `value` cannot be encoded; what the system refuses when creating
    /// the segment.
    pub fn new(value: &T) -> Result<Self> {
        let name = SegmentName::anonymous();
        Self::create_place(&name, value, &SegmentOptions::new(), true)
    }

    /// Creates the value `name`, which persists until removed (`memspace rm NAME`,
    /// `unlink`).
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists),
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName), [`Error::Encode`], or what the
    /// system refuses.
    pub fn create(name: &str, value: &T) -> Result<Self> {
        Self::create_with(name, value, &SegmentOptions::new())
    }

    /// Creates the value `name` with `options` (mode, initial and maximum size; they do not
    /// apply on Redis).
    ///
    /// # Errors
    ///
    /// As [`SharedValue::create`].
    pub fn create_with(name: &str, value: &T, options: &SegmentOptions) -> Result<Self> {
        Self::create_place(&SegmentName::new(name)?, value, options, false)
    }

    /// Creates the value `name` in `backend` (see [`Backend::locate`](crate::Backend::locate)).
    ///
    /// # Errors
    ///
    /// As [`SharedValue::create`].
    pub fn create_in(backend: &crate::Backend, name: &str, value: &T) -> Result<Self> {
        Self::create(&backend.locate(name), value)
    }

    open_constructors!(Kind::SharedValue, "value");

    fn create_place(
        name: &SegmentName,
        value: &T,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        let payload = encode(name, value)?;
        let blueprint = Blueprint {
            #[cfg(feature = "redis")]
            redis: Init {
                first: FirstData::String(&payload),
                ..Init::default()
            },
            ..Blueprint::of::<T>(Kind::SharedValue, options, anonymous)
        };
        let place = Place::create(name, &blueprint, |segment| Raw::new(segment).init(&payload))?;
        Ok(Self::at(place))
    }

    /// The current value.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the value stored is not a `T` (a program using another type wrote
    /// it); [`Error::Corrupt`] if its record was damaged; if the lock is damaged; on Redis, as
    /// the type's docs say.
    pub fn get(&self) -> Result<T> {
        let bytes = match self.place.as_ref() {
            Place::Shm(segment) => {
                let raw = Raw::new(segment);
                let held = raw.lock()?;
                raw.read(&held)?
            }
            #[cfg(feature = "redis")]
            Place::Redis(remote) => remote.get()?,
        };
        self.decode(&bytes)
    }

    /// Replaces the value.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if `value` cannot be encoded (nothing is written);
    /// [`Error::Full`] or [`Error::NoSpace`] if the segment cannot grow to hold it (the old
    /// value stays); on Redis, as the type's docs say.
    pub fn set(&self, value: &T) -> Result<()> {
        let payload = encode(self.name(), value)?;
        match self.place.as_ref() {
            Place::Shm(segment) => {
                let raw = Raw::new(segment);
                let held = raw.lock()?;
                raw.write(&held, &payload)
            }
            #[cfg(feature = "redis")]
            Place::Redis(remote) => remote.set(&payload),
        }
    }

    /// Changes the value atomically with `change`; returns the new value. On Redis `change`
    /// may run more than once (see the type's docs).
    ///
    /// # Errors
    ///
    /// As [`SharedValue::get`] and [`SharedValue::set`]; a value that cannot be decoded is
    /// left as it is, and `change` does not run.
    pub fn update(&self, mut change: impl FnMut(&mut T)) -> Result<T> {
        match self.place.as_ref() {
            Place::Shm(segment) => {
                let raw = Raw::new(segment);
                let held = raw.lock()?;
                let mut value = self.decode(&raw.read(&held)?)?;
                change(&mut value);
                raw.write(&held, &encode(self.name(), &value)?)?;
                Ok(value)
            }
            #[cfg(feature = "redis")]
            Place::Redis(remote) => {
                // An encoding error ends the update unwritten, and is reported after it.
                let mut failed = None;
                let stored = remote.update(&mut |bytes| {
                    let mut value = codec::decode::<T>(bytes).ok()?;
                    change(&mut value);
                    match encode(self.name(), &value) {
                        Ok(payload) => Some(payload),
                        Err(err) => {
                            failed = Some(err);
                            None
                        }
                    }
                })?;
                if let Some(err) = failed {
                    return Err(err);
                }
                self.decode(&stored)
            }
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<T> {
        // The value is the object's one item: item 0.
        codec::decode(bytes).map_err(|source| Error::Decode {
            name: self.name().clone(),
            index: 0,
            expected: std::any::type_name::<T>(),
            source,
        })
    }
}

/// `value` encoded for `name`: at most a record's largest payload (4 GiB).
fn encode<T: Serialize>(name: &SegmentName, value: &T) -> Result<Vec<u8>> {
    let payload = codec::encode(value).map_err(|source| Error::Encode {
        name: name.clone(),
        type_name: std::any::type_name::<T>(),
        source,
    })?;
    if payload.len() > super::record::MAX_PAYLOAD {
        return Err(Error::Full {
            name: name.clone(),
            needed: payload.len() as u64,
            max_size: super::record::MAX_PAYLOAD as u64,
        });
    }
    Ok(payload)
}

serialize_as_name!(SharedValue<T> where T: Serialize + DeserializeOwned);
