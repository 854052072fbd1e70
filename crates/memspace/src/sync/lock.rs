//! [`Lock`]: a named, robust, cross-process lock with no data of its own.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{LockError, RawGuard, Recovery, acquire};
use crate::error::Result;
use crate::segment::{Kind, Segment, SegmentName, SegmentOptions};
use crate::sys::Wait;

/// A lock shared by threads and processes, that survives the death of its holder.
///
/// Like Python's `multiprocessing.Lock`, but a holder killed with `kill -9` does not wedge it:
/// the next [`lock`](Lock::lock) reports [`LockError::OwnerDied`] and hands over the lock.
///
/// A `Lock` is a handle to a segment. Cloning it, moving it to a thread, or passing it to a
/// [`Process`](crate::spawn::Process) (serialized as its segment's name) all refer to the same
/// lock.
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::sync::Lock;
///
/// let lock = Lock::new()?;
/// {
///     let _guard = lock.lock()?;
///     assert!(lock.try_lock().is_err());
/// }
/// assert!(lock.try_lock().is_ok());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Lock {
    segment: Arc<Segment>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("name", self.segment.name())
            .field("owner", &self.owner())
            .finish()
    }
}

impl Lock {
    /// Creates an anonymous lock, removed when this process drops its last handle.
    ///
    /// # Errors
    ///
    /// [`Error::Open`](crate::Error::Open) if `/dev/shm` refuses the segment (no space,
    /// permissions).
    pub fn new() -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), &Self::options(), true)
    }

    /// Creates the lock `name`, which persists until removed (`memspace rm NAME`).
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists) if the name is taken,
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName), or what the system refuses.
    pub fn create(name: &str) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, &Self::options(), false)
    }

    /// Opens the existing lock `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound), or
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind) if `name` holds something else.
    pub fn open(name: &str) -> Result<Self> {
        let segment = Segment::open(&SegmentName::new(name)?, Some(Kind::Lock))?;
        Ok(Lock {
            segment: Arc::new(segment),
        })
    }

    fn options() -> SegmentOptions {
        SegmentOptions::control_only()
    }

    fn create_segment(
        name: &SegmentName,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        let segment = Segment::create(name, Kind::Lock, "", options, anonymous, |_| Ok(()))?;
        Ok(Lock {
            segment: Arc::new(segment),
        })
    }

    /// Blocks until the lock is acquired.
    ///
    /// # Errors
    ///
    /// * [`LockError::OwnerDied`] with the guard if the previous holder died holding it;
    /// * [`LockError::Poisoned`] with the guard if a holder panicked;
    /// * [`LockError::WouldDeadlock`] if this thread holds it already;
    /// * [`LockError::Unrecoverable`] or [`LockError::Corrupt`].
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire(Wait::Forever)
    }

    /// Acquires the lock if it is free.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if it is held, otherwise as [`Lock::lock`].
    #[inline]
    pub fn try_lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire(Wait::Never)
    }

    /// Waits at most `timeout` for the lock (measured on the monotonic clock).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] if it was not released in time, otherwise as [`Lock::lock`].
    pub fn try_lock_for(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire(Wait::For(timeout))
    }

    #[inline]
    fn acquire(&self, wait: Wait) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        acquire(&self.segment, wait, |raw, recovery| LockGuard {
            lock: self,
            raw,
            recovery,
        })
    }

    /// The pid recorded as holding the lock, if it is held (informational: it can change at any
    /// moment, and a holder that died keeps its pid here until the next owner takes over).
    #[must_use]
    pub fn owner(&self) -> Option<u32> {
        self.segment.lock_slot().owner_pid()
    }

    /// How many times a holder died and the lock was taken over.
    #[must_use]
    pub fn owner_deaths(&self) -> u32 {
        self.segment.lock_slot().owner_deaths()
    }

    /// The lock's segment name.
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        self.segment.name()
    }

    /// The lock's segment (identity, size, address in this process).
    #[must_use]
    pub fn segment(&self) -> &Segment {
        &self.segment
    }
}

serialize_as_name!(Lock);

/// Proof that this thread holds a [`Lock`]; releases it when dropped.
///
/// The guard is `!Send`: the lock names the thread that holds it, which must be the one to
/// release it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    raw: RawGuard<'a>,
    recovery: Recovery,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

impl LockGuard<'_> {
    /// After [`LockError::OwnerDied`]: declares the protected data repaired, so that the lock
    /// stays usable after this guard is dropped.
    ///
    /// # Errors
    ///
    /// An I/O error if the lock was not acquired from a dead owner (`EINVAL`).
    pub fn mark_consistent(&self) -> std::io::Result<()> {
        self.raw.mark_consistent()
    }

    /// After [`LockError::Poisoned`]: clears the poison flag for every process.
    pub fn clear_poison(&self) {
        self.raw.clear_poison();
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

impl<'a> super::Relock<'a> for LockGuard<'a> {
    type Owner = Lock;

    fn owner(&self) -> &'a Lock {
        self.lock
    }

    fn lock_again(owner: &'a Lock) -> Result<Self, LockError<Self>> {
        owner.lock()
    }
}
