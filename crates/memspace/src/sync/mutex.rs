//! [`Mutex<T>`]: a robust cross-process lock around one plain value in shared memory.
//!
//! # Safety
//!
//! The value lives at `DATA_START` of the segment, inside the first mapping, so its address is
//! fixed for the segment handle's lifetime (see `segment/mapping.rs`). `T: Pod` makes every bit
//! pattern a valid `T`, so whatever a dead or misbehaving peer left there is a value, never UB.
//! A [`MutexGuard`] exists only while the calling thread holds the segment's lock; every
//! process that follows the protocol touches the value only under that lock, so the guard's
//! `&T`/`&mut T` do not alias a concurrent access.

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use super::{AcquireError, LockError, RawGuard, Recovery, TryLockError, acquire, plain};
use crate::error::Result;
use crate::handle::{NoRedis, Place};
use crate::segment::{InSegment, Kind, LockAnchor, Segment, SegmentName};
use crate::sys::Wait;

/// A value of plain data (`T: Pod`) in shared memory, behind a robust cross-process lock.
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::sync::Mutex;
///
/// let counter = Mutex::new(0u64)?;
/// *counter.lock()? += 1;
/// assert_eq!(*counter.lock()?, 1);
/// # Ok(())
/// # }
/// ```
pub struct Mutex<T> {
    /// Anchored, as a `Lock` is (see `segment/lock_anchor.rs`), guarding the value.
    place: Place<NoRedis, LockAnchor<true>>,
    value: NonNull<T>,
    _type: PhantomData<T>,
}

// SAFETY: the value is only reached through a guard, which requires the cross-process lock; `T:
// Send` because a guard in any thread may move values in and out.
unsafe impl<T: Pod + Send> Send for Mutex<T> {}
// SAFETY: as above: shared access to a `Mutex` hands out `&mut T` only under the lock.
unsafe impl<T: Pod + Send> Sync for Mutex<T> {}

impl<T> Clone for Mutex<T> {
    fn clone(&self) -> Self {
        Mutex {
            place: self.place.clone(),
            value: self.value,
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("name", self.place.name())
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Mutex<T> {
    /// Creates an anonymous mutex holding `value`, removed when this process drops its last
    /// handle.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn new(value: T) -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), value, true, Kind::Mutex)
    }

    /// Creates the mutex `name` holding `value`; it persists until removed.
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists), [`OpenError::InvalidName`](crate::OpenError::InvalidName), or what the system refuses.
    pub fn create(name: &str, value: T) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, value, false, Kind::Mutex)
    }

    /// Opens the mutex `name`, checking that it holds values of `T`'s size.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound), [`OpenError::WrongKind`](crate::OpenError::WrongKind), [`OpenError::TypeMismatch`](crate::OpenError::TypeMismatch).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_kind(&SegmentName::new(name)?, Kind::Mutex)
    }

    /// Opens a segment of `kind` laid out as a mutex and its value (shared with `Value<T>`).
    pub(crate) fn open_kind(name: &SegmentName, kind: Kind) -> Result<Self> {
        let (segment, value) = plain::open(name, kind)?;
        Ok(Self::wrap(segment, value))
    }

    /// A mutex over an already open segment of `kind` laid out as a mutex and its value
    /// (shared with `Value<T>`).
    pub(crate) fn from_kind_segment(segment: Segment, kind: Kind) -> Result<Self> {
        let (segment, value) = plain::from_segment(segment, kind)?;
        Ok(Self::wrap(segment, value))
    }

    /// Creates a segment of `kind` laid out as a mutex and its value (shared with `Value<T>`).
    pub(crate) fn create_segment(
        name: &SegmentName,
        value: T,
        anonymous: bool,
        kind: Kind,
    ) -> Result<Self> {
        let (segment, value) = plain::create(name, kind, value, anonymous, |_| {})?;
        Ok(Self::wrap(segment, value))
    }

    fn wrap(segment: Segment, value: NonNull<T>) -> Self {
        Mutex {
            place: Place::Shm(LockAnchor::new(Arc::new(segment))),
            value,
            _type: PhantomData,
        }
    }

    /// Blocks until the lock is acquired; the guard gives access to the value.
    ///
    /// # Errors
    ///
    /// As [`Lock::lock`](super::Lock::lock).
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, LockError<MutexGuard<'_, T>>> {
        self.acquire(Wait::Forever)
    }

    /// Acquires the lock if it is free.
    ///
    /// # Errors
    ///
    /// As [`Lock::try_lock`](super::Lock::try_lock).
    #[inline]
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        self.acquire(Wait::Never)
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Errors
    ///
    /// As [`Lock::try_lock_for`](super::Lock::try_lock_for).
    pub fn try_lock_for(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        self.acquire(Wait::For(timeout))
    }

    #[inline]
    fn acquire<'a, E: AcquireError<MutexGuard<'a, T>>>(
        &'a self,
        wait: Wait,
    ) -> Result<MutexGuard<'a, T>, E> {
        acquire(self.place.local(), wait, |raw, recovery| MutexGuard {
            mutex: self,
            raw,
            recovery,
            value: self.value,
            _borrow: PhantomData,
        })
    }

    place_accessors!("mutex", local);
}

serialize_as_name!(Mutex<T> where T: Pod);

impl<T> InSegment for Mutex<T> {
    fn segment(&self) -> &Segment {
        self.place.local().segment()
    }
}

/// Access to a [`Mutex`]'s value while the lock is held.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
    raw: RawGuard<'a>,
    recovery: Recovery,
    value: NonNull<T>,
    _borrow: PhantomData<&'a mut T>,
}

impl<T: fmt::Debug + Pod> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MutexGuard").field(&**self).finish()
    }
}

impl<T> MutexGuard<'_, T> {
    /// After [`LockError::OwnerDied`]: declares the value repaired.
    ///
    /// # Errors
    ///
    /// An I/O error if the lock was not acquired from a dead owner.
    pub fn mark_consistent(&self) -> std::io::Result<()> {
        self.raw.mark_consistent()
    }

    /// After [`LockError::Poisoned`]: clears the poison flag for every process.
    pub fn clear_poison(&self) {
        self.raw.clear_poison();
    }

    /// After [`LockError::OwnerDied`], when the repair failed: releases the lock without
    /// declaring the value repaired, and without making the lock unrecoverable (as dropping
    /// the guard would). The next locker is told [`LockError::OwnerDied`] again, with the
    /// same pid, and can retry the repair. After a clean acquisition, or once
    /// [`mark_consistent`](MutexGuard::mark_consistent) was called, this is a plain unlock.
    pub fn unlock_unrepaired(self) {
        self.raw.unlock_unrepaired();
    }

    /// If this acquisition took over from a holder that died, the pid that held it.
    #[must_use]
    pub fn previous_owner_died(&self) -> Option<u32> {
        match self.recovery {
            Recovery::OwnerDied { pid } => Some(pid),
            Recovery::Clean => None,
        }
    }
}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `value` is mapped, aligned and fixed for the segment's lifetime, which the
        // guard's borrow outlives; `T: Pod` accepts any bits; the lock is held by this thread
        // (the guard proves it), so no access that follows the protocol races this one.
        unsafe { self.value.as_ref() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference handed out by this
        // guard, and the lock excludes every other guard in every process.
        unsafe { self.value.as_mut() }
    }
}

impl<'a, T: Pod> super::Relock<'a> for MutexGuard<'a, T> {
    type Owner = Mutex<T>;

    fn owner(&self) -> &'a Mutex<T> {
        self.mutex
    }

    fn lock_again(owner: &'a Mutex<T>) -> Result<Self, LockError<Self>> {
        owner.lock()
    }
}
