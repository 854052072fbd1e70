//! [`RLock`]: a reentrant lock shared by threads and processes, robust to its holder's death.
//!
//! It is the segment's robust lock (see `segment/raw_mutex.rs`) and a depth in the kind area.
//! The lock word names the holding thread and when it started, so "does this thread hold it?"
//! is one load of the word, and the death of the holder is noticed exactly as a [`Lock`]'s
//! is: the next locker takes the lock over and is told [`LockError::OwnerDied`], whatever
//! depth the dead holder had reached. Only the holder writes the depth: a locker that takes
//! the lock (cleanly or from a dead holder) sets it to 1, each reentry adds one, each release
//! takes one away, and the release that brings it to 0 unlocks. A holder killed between
//! taking the word and writing the depth leaves a depth that the next holder overwrites.
//!
//! Its own kind rather than a [`Lock`] with a depth beside it: a `Lock` opened as an `RLock`
//! (or the reverse) would mix a process's hold with a thread's, and a reentrant release by
//! a program that thinks the lock plain would free it too early; the kind check at open
//! refuses that.
//!
//! Shared memory only: a Redis lease names a process, and reentrancy needs a thread; an
//! `RLock` on a `redis://` name is refused when it is opened or created.
//!
//! [`Lock`]: super::Lock

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{AcquireError, LockError, Recovery, ReleaseError, TryLockError, acquire, blocking};
use crate::error::Result;
use crate::handle::{Blueprint, Place};
use crate::segment::{Kind, Segment, SegmentName, SegmentOptions};
use crate::shm_safe::ShmSafe;
use crate::sys::Wait;

/// The kind area of an `RLock` segment.
#[repr(C)]
struct RLockArea {
    /// How many times the holder acquired the lock and has not yet released it; meaningful only
    /// to the thread the lock word names (0 when free, or stale after a holder died).
    depth: AtomicU32,
    reserved: AtomicU32,
}

// SAFETY: `#[repr(C)]` of fixed-width atomics: one layout in every process, any bits are a
// valid value (a stale depth is overwritten by the next holder), mutation is atomic, and it
// owns nothing and needs no `Drop`.
#[allow(unsafe_code)]
unsafe impl ShmSafe for RLockArea {}

const _: () = assert!(size_of::<RLockArea>() == 8);

/// A reentrant lock shared by threads and processes, that survives the death of its holder.
///
/// Like Python's `multiprocessing.RLock`: the thread that holds it may acquire it again, and
/// must release it as many times; only that thread may release it. A holder killed with
/// `kill -9`, at whatever depth, does not wedge it: the next [`lock`](RLock::lock) reports
/// [`LockError::OwnerDied`] and hands over the lock at depth 1.
///
/// Two ways to hold it: [`lock`](RLock::lock) returns a guard per level (the default in
/// Rust), and [`acquire`](RLock::acquire) / [`release`](RLock::release) count levels without
/// guards (for bindings, such as Python's `rlock.acquire()` ... `rlock.release()`). Both
/// count in the same depth, on the calling thread.
///
/// Shared memory only: a name `redis://HOST:PORT/NAME` is refused with
/// [`OpenError::InvalidName`](crate::OpenError::InvalidName), whose message says which kinds
/// have a Redis backend (on Redis, use a [`Lock`](super::Lock), which is not reentrant).
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::sync::RLock;
///
/// let lock = RLock::new()?;
/// let outer = lock.lock()?;
/// let inner = lock.lock()?; // the same thread: no deadlock
/// assert_eq!(lock.depth(), 2);
/// drop(inner);
/// drop(outer);
/// assert_eq!(lock.depth(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RLock {
    place: Place,
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("name", self.name())
            .field("owner", &self.owner())
            .finish_non_exhaustive()
    }
}

impl RLock {
    /// Creates an anonymous reentrant lock, removed when this process drops its last handle.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment: [`Error::NoSpace`](crate::Error::NoSpace),
    /// [`OpenError::PermissionDenied`](crate::OpenError::PermissionDenied),
    /// [`Error::Os`](crate::Error::Os).
    pub fn new() -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), true)
    }

    /// Creates the reentrant lock `name`, which persists until removed (`memspace rm NAME`).
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists) if the name is taken,
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName),
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName) (also for a Redis name: an
    /// `RLock` lives only in shared memory), or what the system refuses.
    pub fn create(name: &str) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, false)
    }

    /// The reentrant lock at `place`.
    fn at(place: Place) -> Self {
        RLock { place }
    }

    open_constructors!(Kind::RLock, "reentrant lock", create_in);

    fn create_segment(name: &SegmentName, anonymous: bool) -> Result<Self> {
        let options = SegmentOptions::control_only();
        let blueprint = Blueprint::untyped(Kind::RLock, &options, anonymous);
        Ok(RLock {
            place: Place::create(name, &blueprint, |_| Ok(()))?,
        })
    }

    fn segment_ref(&self) -> &Segment {
        self.place.local()
    }

    fn area(&self) -> &RLockArea {
        self.segment_ref().kind_area::<RLockArea>()
    }

    /// Blocks until the calling thread holds the lock: at once, one level deeper, if it holds
    /// it already.
    ///
    /// # Errors
    ///
    /// * [`LockError::OwnerDied`] with the guard if the previous holder died holding it (at
    ///   any depth): repair the data and call `mark_consistent()` on the guard;
    /// * [`LockError::Poisoned`] with the guard if a holder panicked;
    /// * [`LockError::Unrecoverable`] or [`LockError::Corrupt`];
    /// * [`LockError::Unavailable`] if the thread holds it already `u32::MAX` times.
    pub fn lock(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.acquire_guard(Wait::Forever)
    }

    /// Acquires the lock if it is free or held by the calling thread.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if another thread holds it, otherwise as
    /// [`RLock::lock`] (wrapped in [`TryLockError::Lock`]).
    pub fn try_lock(&self) -> Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        self.acquire_guard(Wait::Never)
    }

    /// Waits at most `timeout` for the lock (measured on the monotonic clock).
    ///
    /// # Errors
    ///
    /// [`TryLockError::Timeout`] if it was not released in time, otherwise as
    /// [`RLock::lock`] (wrapped in [`TryLockError::Lock`]).
    pub fn try_lock_for(
        &self,
        timeout: Duration,
    ) -> Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        self.acquire_guard(Wait::For(timeout))
    }

    /// Acquires one level, with the outcome as the caller's error type (see `AcquireError`:
    /// converted afterwards, the guard would be copied through memory).
    fn acquire_guard<'a, E: AcquireError<RLockGuard<'a>>>(
        &'a self,
        wait: Wait,
    ) -> Result<RLockGuard<'a>, E> {
        let segment = self.segment_ref();
        let area = self.area();
        if let Some(held) = segment.lock_slot().held_by_current_thread() {
            // The outermost level owns the hold; this one only counts, and a level refused
            // below leaves the hold as it was.
            std::mem::forget(held);
            // Only the holder writes the depth: a load and a store suffice.
            let depth = area.depth.load(Ordering::Relaxed);
            let Some(deeper) = depth.checked_add(1) else {
                return Err(LockError::Unavailable {
                    name: self.name().clone(),
                    detail: format!(
                        "this thread holds it {depth} times already, the most it can count"
                    ),
                    source: None,
                }
                .into());
            };
            area.depth.store(deeper, Ordering::Relaxed);
            return Ok(self.guard(Recovery::Clean));
        }
        acquire(segment, wait, |raw, recovery| {
            // Every guard shares the one hold: the release that brings the depth to 0 adopts
            // it and unlocks (see `release_level`).
            std::mem::forget(raw);
            area.depth.store(1, Ordering::Relaxed);
            self.guard(recovery)
        })
    }

    fn guard(&self, recovery: Recovery) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            previous_owner_died: match recovery {
                Recovery::Clean => None,
                Recovery::OwnerDied { pid } => Some(pid),
            },
            _not_send: PhantomData,
        }
    }

    /// Takes one level away from the calling thread's hold, unlocking at depth 0 (as dropping
    /// a guard does: a lock still inconsistent then becomes not recoverable). False if the
    /// calling thread does not hold the lock.
    fn release_level(&self) -> bool {
        let Some(held) = self.segment_ref().lock_slot().held_by_current_thread() else {
            return false;
        };
        let area = self.area();
        let depth = area.depth.load(Ordering::Relaxed);
        if depth > 1 {
            area.depth.store(depth - 1, Ordering::Relaxed);
            std::mem::forget(held);
        } else {
            area.depth.store(0, Ordering::Relaxed);
            drop(held);
        }
        true
    }

    /// Blocks until the calling thread holds the lock, one level deeper if it holds it
    /// already, without a guard: the level is given back with [`release`](RLock::release),
    /// by the same thread. For bindings (Python's `rlock.acquire()`); in Rust, prefer
    /// [`lock`](RLock::lock).
    ///
    /// # Errors
    ///
    /// As [`RLock::lock`], without a guard: after [`LockError::OwnerDied`] and
    /// [`LockError::Poisoned`] the lock *is* held (at depth 1). After `OwnerDied`, repair the
    /// data and call [`mark_consistent`](RLock::mark_consistent) before the last `release`,
    /// or the lock becomes unrecoverable.
    pub fn acquire(&self) -> Result<(), LockError<()>> {
        // No guard comes back, so converting the outcome afterwards copies only an error.
        blocking(self.acquire_level(Wait::Forever))
    }

    /// [`acquire`](RLock::acquire) if the lock is free or held by the calling thread.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if another thread holds it, otherwise as
    /// [`RLock::acquire`].
    pub fn try_acquire(&self) -> Result<(), TryLockError<()>> {
        self.acquire_level(Wait::Never)
    }

    /// [`acquire`](RLock::acquire), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TryLockError::Timeout`] if it was not released in time, otherwise as
    /// [`RLock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), TryLockError<()>> {
        self.acquire_level(Wait::For(timeout))
    }

    fn acquire_level(&self, wait: Wait) -> Result<(), TryLockError<()>> {
        // A forgotten guard keeps its level: `release` gives it back.
        self.acquire_guard::<TryLockError<_>>(wait)
            .map(std::mem::forget)
            .map_err(|err| err.map_guard(std::mem::forget))
    }

    /// Gives back one level of the calling thread's hold; the last one unlocks.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotOwner`] if the calling thread does not hold the lock (it is free, or
    /// another thread or process holds it), naming the recorded owner; Python raises
    /// `RuntimeError` there.
    pub fn release(&self) -> std::result::Result<(), ReleaseError> {
        if self.release_level() {
            Ok(())
        } else {
            Err(ReleaseError::NotOwner {
                name: self.name().clone(),
                owner: self.owner(),
            })
        }
    }

    /// After [`acquire`](RLock::acquire) reported [`LockError::OwnerDied`]: declares the
    /// protected data repaired, so that the lock stays usable after the last
    /// [`release`](RLock::release).
    ///
    /// # Errors
    ///
    /// An I/O error (`InvalidInput`) if the calling thread does not hold the lock, or it was
    /// not taken over from a holder that died.
    pub fn mark_consistent(&self) -> std::io::Result<()> {
        match self.segment_ref().lock_slot().held_by_current_thread() {
            Some(held) => held.forget_after(super::RawGuard::mark_consistent),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "reentrant lock `{}` is not held by this thread",
                    self.name()
                ),
            )),
        }
    }

    /// How many times the calling thread holds the lock (0 if it does not).
    #[must_use]
    pub fn depth(&self) -> u32 {
        match self.segment_ref().lock_slot().held_by_current_thread() {
            Some(held) => held.forget_after(|_| self.area().depth.load(Ordering::Relaxed)),
            None => 0,
        }
    }

    /// Whether the calling thread holds the lock (Python's `RLock._is_owned()`).
    #[must_use]
    pub fn is_held_by_current_thread(&self) -> bool {
        self.depth() > 0
    }

    /// The pid recorded as holding the lock, if it is held (informational: it can change at
    /// any moment, and a holder that died keeps its pid here until the next owner takes
    /// over).
    #[must_use]
    pub fn owner(&self) -> Option<u32> {
        self.segment_ref().lock_slot().owner_pid()
    }

    /// How many times a holder died and the lock was taken over.
    #[must_use]
    pub fn owner_deaths(&self) -> u32 {
        self.segment_ref().lock_slot().owner_deaths()
    }

    place_accessors!("reentrant lock", local);
}

serialize_as_name!(RLock);

/// One level of the calling thread's hold on an [`RLock`]; the lock is released when the
/// last guard of the thread is dropped.
///
/// The guard is `!Send`: the lock names the thread that holds it, which must be the one to
/// release it.
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    /// The pid of the holder that died, if this level took the lock over from it.
    previous_owner_died: Option<u32>,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("lock", self.lock.name())
            .field("previous_owner_died", &self.previous_owner_died)
            .finish_non_exhaustive()
    }
}

impl RLockGuard<'_> {
    /// After [`LockError::OwnerDied`]: declares the protected data repaired, so that the lock
    /// stays usable after the last guard is dropped.
    ///
    /// # Errors
    ///
    /// An I/O error (`InvalidInput`) if the lock was not taken over from a holder that died.
    pub fn mark_consistent(&self) -> std::io::Result<()> {
        self.lock.mark_consistent()
    }

    /// After [`LockError::Poisoned`]: clears the poison flag for every process.
    pub fn clear_poison(&self) {
        if let Some(held) = self.lock.segment_ref().lock_slot().held_by_current_thread() {
            held.forget_after(super::RawGuard::clear_poison);
        }
    }

    /// If this acquisition took over from a holder that died, the pid that held it (0 if
    /// unknown).
    #[must_use]
    pub fn previous_owner_died(&self) -> Option<u32> {
        self.previous_owner_died
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // False only if the thread's hold was already given back by `RLock::release` calls:
        // nothing is left to release.
        let _ = self.lock.release_level();
    }
}

/// What `inspect` shows of a reentrant lock: its holder's depth.
pub(crate) fn describe(segment: &Segment) -> Vec<(&'static str, String)> {
    let depth = segment
        .kind_area::<RLockArea>()
        .depth
        .load(Ordering::Relaxed);
    let held = segment.lock_slot().is_held();
    vec![(
        "depth",
        if held {
            depth.to_string()
        } else {
            "0 (free)".to_owned()
        },
    )]
}
