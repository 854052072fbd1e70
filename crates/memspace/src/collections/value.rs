//! [`Value<T>`]: one plain value in shared memory, read and written atomically, like Python's
//! `multiprocessing.Value` but with an update that really is atomic.

use std::fmt;

use bytemuck::Pod;

use crate::error::Result;
use crate::segment::{Kind, SegmentName};
use crate::sync::{LockError, Mutex, MutexGuard};

/// A value of plain data (`T: Pod`) shared by threads and processes.
///
/// Every access takes the value's robust lock, so [`update`](Value::update) is atomic:
/// `counter.update(|v| *v += 1)` from ten processes fifty times each gives exactly 500
/// (Python's `v.value += 1` does not). If a process is killed while it holds the lock, the next
/// access carries on with what it left: for a `T` of up to 8 bytes that is the old or the new
/// value, never a mix; a larger `T` may be half-written, so use a [`Mutex<T>`] to be told.
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
    inner: Mutex<T>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Pod + fmt::Debug + Send> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("name", self.inner.name())
            .field("value", &self.get().ok())
            .finish()
    }
}

impl<T: Pod + Send> Value<T> {
    /// An anonymous value, removed when its last user drops it.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn new(value: T) -> Result<Self> {
        Ok(Value {
            inner: Mutex::create_segment(&SegmentName::anonymous(), value, true, Kind::Value)?,
        })
    }

    /// Creates the value `name`; it persists until removed.
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists),
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName), or what the system refuses.
    pub fn create(name: &str, value: T) -> Result<Self> {
        Ok(Value {
            inner: Mutex::create_segment(&SegmentName::new(name)?, value, false, Kind::Value)?,
        })
    }

    /// Opens the value `name`, checking that it holds a value of `T`'s size.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind),
    /// [`OpenError::TypeMismatch`](crate::OpenError::TypeMismatch).
    pub fn open(name: &str) -> Result<Self> {
        Ok(Value {
            inner: Mutex::open_kind(&SegmentName::new(name)?, Kind::Value)?,
        })
    }

    /// Takes the lock, carrying on after a holder's death or panic (see the type's docs).
    fn lock(&self) -> Result<MutexGuard<'_, T>> {
        match self.inner.lock() {
            Ok(guard) => Ok(guard),
            Err(LockError::OwnerDied(guard)) => {
                guard.mark_consistent().map_err(|source| crate::Error::Os {
                    name: self.inner.name().clone(),
                    op: "mark the lock consistent",
                    source,
                })?;
                Ok(guard)
            }
            Err(LockError::Poisoned(guard)) => {
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
    /// If the lock is damaged.
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Replaces the value.
    ///
    /// # Errors
    ///
    /// If the lock is damaged.
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }

    /// Changes the value atomically with `change`; returns the new value.
    ///
    /// # Errors
    ///
    /// If the lock is damaged.
    pub fn update(&self, change: impl FnOnce(&mut T)) -> Result<T> {
        let mut guard = self.lock()?;
        change(&mut guard);
        Ok(*guard)
    }

    /// The value's segment name.
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        self.inner.name()
    }
}

serialize_as_name!(Value<T> where T: Pod + Send);
