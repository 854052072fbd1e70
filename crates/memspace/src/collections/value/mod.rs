//! [`Value<T>`]: one plain value in shared memory, read and written atomically, like Python's
//! `multiprocessing.Value` but with an update that really is atomic.
//!
//! In shared memory a value is a [`Mutex<T>`] segment of its own kind; on a Redis server it is
//! the string that `redis.rs` updates in optimistic transactions.

#[cfg(feature = "redis")]
mod redis;

use std::fmt;

use bytemuck::Pod;

#[cfg(feature = "redis")]
pub(super) use self::redis::RedisValue;
use crate::error::Result;
#[cfg(not(feature = "redis"))]
use crate::handle::NoRedis as RedisValue;
use crate::handle::{Blueprint, Place};
#[cfg(feature = "redis")]
use crate::redis::{FirstData, Init};
use crate::segment::{Kind, Segment, SegmentName, SegmentOptions};
use crate::sync::{LockError, Mutex, MutexGuard, TryLockError};

/// A value of plain data (`T: Pod`) shared by threads and processes.
///
/// Every access takes the value's robust lock, so [`update`](Value::update) is atomic:
/// `counter.update(|v| *v += 1)` from ten processes fifty times each gives exactly 500
/// (Python's `v.value += 1` does not). If a process is killed while it holds the lock, the next
/// access carries on with what it left: for a `T` of up to 8 bytes that is the old or the new
/// value, never a mix; a larger `T` may be half-written, so use a [`Mutex<T>`] to be told.
///
/// A name `redis://HOST:PORT/NAME` puts the value on a Redis server, as `T`'s bytes in a
/// string; `update` is then an optimistic transaction (`WATCH`/`MULTI`/`EXEC`), started again
/// when another writer got there first, so `change` may run more than once.
///
/// On Redis every method can also fail with
/// [`Error::RedisUnreachable`](crate::Error::RedisUnreachable), or with
/// [`OpenError::NotFound`](crate::OpenError::NotFound) or
/// [`OpenError::Replaced`](crate::OpenError::Replaced) once the value was removed (or removed and
/// created again) through another handle (see [`crate::backend`]).
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::collections::Value;
///
/// let counter = Value::new(0u64)?;
/// assert_eq!(counter.update(|v| *v += 1)?, 1);
/// counter.set(41)?;
/// assert_eq!(counter.update(|v| *v += 1)?, 42);
/// assert_eq!(counter.get()?, 42);
/// # Ok(())
/// # }
/// ```
pub struct Value<T> {
    place: ValuePlace<T>,
}

/// Where a value lives: a [`Mutex<T>`] segment, or a Redis string.
type ValuePlace<T> = Place<RedisValue, Mutex<T>>;

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            place: self.place.clone(),
        }
    }
}

impl<T: Pod + fmt::Debug + Send> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Debug` never waits: the value only if its lock is free, and none from a Redis server.
        let mut out = f.debug_struct("Value");
        out.field("name", self.name());
        if let Place::Shm(inner) = &self.place
            && let Ok(guard) = self.recovering(inner.try_lock())
        {
            out.field("value", &*guard);
        }
        out.finish_non_exhaustive()
    }
}

impl<T: Pod + Send> Value<T> {
    /// An anonymous value, removed when its last user drops it.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn new(value: T) -> Result<Self> {
        Self::create_place(&SegmentName::anonymous(), value, true)
    }

    /// Creates the value `name`; it persists until removed.
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists),
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName), or what the system refuses.
    pub fn create(name: &str, value: T) -> Result<Self> {
        Self::create_place(&SegmentName::new(name)?, value, false)
    }

    /// Creates the value `name` in `backend` (see [`Backend::locate`](crate::Backend::locate)).
    ///
    /// # Errors
    ///
    /// As [`Value::create`].
    pub fn create_in(backend: &crate::Backend, name: &str, value: T) -> Result<Self> {
        Self::create(&backend.locate(name), value)
    }

    /// Opens the value `name`, checking that it holds a value of `T`'s size.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind),
    /// [`OpenError::TypeMismatch`](crate::OpenError::TypeMismatch).
    pub fn open(name: &str) -> Result<Self> {
        let name = SegmentName::new(name)?;
        let place = match ValuePlace::<T>::open_redis(&name, Kind::Value)? {
            #[cfg(feature = "redis")]
            Some(remote) => Place::Redis(Self::checked(remote)?),
            None => Place::Shm(Mutex::open_kind(&name, Kind::Value)?),
        };
        Ok(Value { place })
    }

    /// Opens the value `name` in `backend`.
    ///
    /// # Errors
    ///
    /// As [`Value::open`].
    pub fn open_in(backend: &crate::Backend, name: &str) -> Result<Self> {
        Self::open(&backend.locate(name))
    }

    /// A value over an already open segment (for example one opened with
    /// [`SegmentOptions::open`], which can accept another user's segment).
    ///
    /// # Errors
    ///
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind) if the segment is not a value,
    /// [`OpenError::TypeMismatch`](crate::OpenError::TypeMismatch) if it holds another type.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> memspace::Result<()> {
    /// use memspace::SegmentOptions;
    /// use memspace::collections::Value;
    ///
    /// let name = format!("doc-value-from-segment-{}", std::process::id());
    /// let counter = Value::create(&name, 7u32)?;
    /// let again = Value::<u32>::from_segment(SegmentOptions::new().open(&name)?)?;
    /// assert_eq!(again.get()?, 7);
    /// assert_eq!(again.recorded_type_name(), "u32");
    /// assert!(again.segment().is_some());
    /// assert!(Value::<u64>::from_segment(SegmentOptions::new().open(&name)?).is_err());
    /// counter.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_segment(segment: Segment) -> Result<Self> {
        Ok(Value {
            place: Place::Shm(Mutex::from_kind_segment(segment, Kind::Value)?),
        })
    }

    fn create_place(name: &SegmentName, value: T, anonymous: bool) -> Result<Self> {
        let blueprint = Blueprint {
            kind: Kind::Value,
            // Not used: a value's segment is sized to hold the value.
            options: &SegmentOptions::new(),
            anonymous,
            type_name: std::any::type_name::<T>(),
            #[cfg(feature = "redis")]
            redis: Init {
                size: size_of::<T>() as u64,
                first: FirstData::String(bytemuck::bytes_of(&value)),
                ..Init::default()
            },
        };
        let place = match ValuePlace::<T>::create_redis(name, &blueprint)? {
            #[cfg(feature = "redis")]
            Some(remote) => Place::Redis(remote),
            None => Place::Shm(Mutex::create_segment(name, value, anonymous, Kind::Value)?),
        };
        Ok(Value { place })
    }

    /// A Redis value, checked to hold values of `T`'s size.
    #[cfg(feature = "redis")]
    fn checked(remote: RedisValue) -> Result<RedisValue> {
        use crate::handle::RedisEngine;
        use crate::sync::type_mismatch;

        let object = remote.object();
        if object.size() != size_of::<T>() as u64 {
            return Err(type_mismatch::<T>(
                object.name(),
                object.type_name(),
                object.size(),
            ));
        }
        Ok(remote)
    }

    /// Reads `T` from the bytes a Redis value holds.
    #[cfg(feature = "redis")]
    fn decode(&self, bytes: &[u8]) -> Result<T> {
        bytemuck::try_pod_read_unaligned(bytes).map_err(|_| crate::Error::Corrupt {
            name: self.name().clone(),
            what: format!(
                "it holds {} bytes, a `{}` has {}",
                bytes.len(),
                std::any::type_name::<T>(),
                size_of::<T>()
            ),
        })
    }

    /// Takes the lock, carrying on after a holder's death or panic (see the type's docs).
    fn lock<'a>(&self, inner: &'a Mutex<T>) -> Result<MutexGuard<'a, T>> {
        self.recovering(inner.lock().map_err(TryLockError::Lock))
    }

    /// What [`Value::lock`] makes of a locking attempt's outcome: a guard taken over from a
    /// dead or panicked holder is repaired (dropping it unrepaired would make the lock
    /// unrecoverable for everyone).
    fn recovering<'a>(
        &self,
        attempt: std::result::Result<MutexGuard<'a, T>, TryLockError<MutexGuard<'a, T>>>,
    ) -> Result<MutexGuard<'a, T>> {
        match attempt {
            Ok(guard) => Ok(guard),
            Err(TryLockError::Lock(LockError::OwnerDied(guard))) => {
                guard.mark_consistent().map_err(|source| crate::Error::Os {
                    name: self.name().clone(),
                    op: "mark the lock consistent",
                    source,
                })?;
                Ok(guard)
            }
            Err(TryLockError::Lock(LockError::Poisoned(guard))) => {
                guard.clear_poison();
                Ok(guard)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The current value.
    ///
    /// # Errors
    ///
    /// If the lock is damaged; on Redis, if the server cannot be reached, or
    /// [`OpenError::NotFound`](crate::OpenError::NotFound) if the value was removed (a write
    /// then stores nothing).
    pub fn get(&self) -> Result<T> {
        match self.place.as_ref() {
            Place::Shm(inner) => Ok(*self.lock(inner)?),
            #[cfg(feature = "redis")]
            Place::Redis(value) => self.decode(&value.get()?),
        }
    }

    /// Replaces the value.
    ///
    /// # Errors
    ///
    /// As [`Value::get`].
    pub fn set(&self, value: T) -> Result<()> {
        match self.place.as_ref() {
            Place::Shm(inner) => *self.lock(inner)? = value,
            #[cfg(feature = "redis")]
            Place::Redis(remote) => remote.set(bytemuck::bytes_of(&value))?,
        }
        Ok(())
    }

    /// Changes the value atomically with `change`; returns the new value. On Redis `change`
    /// may run more than once (see the type's docs).
    ///
    /// # Errors
    ///
    /// As [`Value::get`].
    pub fn update(&self, mut change: impl FnMut(&mut T)) -> Result<T> {
        match self.place.as_ref() {
            Place::Shm(inner) => {
                let mut guard = self.lock(inner)?;
                change(&mut guard);
                Ok(*guard)
            }
            #[cfg(feature = "redis")]
            Place::Redis(remote) => {
                let new = remote.update(&mut |bytes| {
                    // A value of the wrong size is left as it is, unwritten; `decode`
                    // reports it.
                    let mut value = bytemuck::try_pod_read_unaligned::<T>(bytes).ok()?;
                    change(&mut value);
                    Some(bytemuck::bytes_of(&value).to_vec())
                })?;
                self.decode(&new)
            }
        }
    }

    place_accessors!("value", typed);
}

serialize_as_name!(Value<T> where T: Pod + Send);
