//! [`Lock`]: a named, robust, cross-process lock with no data of its own.

#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub(crate) use self::redis::RedisLock;
#[cfg(feature = "redis")]
use self::redis::{Attempt, Lease};
#[cfg(not(feature = "redis"))]
use crate::handle::NoRedis as RedisLock;

use std::fmt;
use std::mem::ManuallyDrop;
use std::time::Duration;

#[cfg(feature = "redis")]
use std::time::Instant;

use super::{
    AcquireError, LeaseError, LockError, RawGuard, Recovery, ReleaseError, TryLockError, acquire,
    acquire_for_process, blocking,
};
use crate::error::Result;
use crate::handle::{Blueprint, Place};
use crate::segment::{Kind, LockAnchor, LockSite, SegmentName, SegmentOptions};
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
/// # Fairness
///
/// In shared memory, a lock released goes to whoever takes it first, usually the process that
/// released it and locks again, until a waiter has waited 1 ms: the next release then hands it
/// over to a waiting process, and [`try_lock`](Lock::try_lock) meanwhile reports
/// [`TryLockError::WouldBlock`]. A process that locks in a loop cannot keep another waiting
/// for long, and an uncontended lock pays nothing for it. (The same lock guards every
/// collection's changes.)
///
/// # On Redis: a lease with fencing tokens
///
/// A name `redis://HOST:PORT/NAME` makes the lock a lease on a Redis key (10 s, or
/// `?lease_ms=N`), taken with `SET NX PX`, renewed by a thread while the guard lives and
/// deleted on release only if it is still the holder's. Each acquisition gets a fencing token,
/// larger than every earlier one ([`LockGuard::fencing_token`]); removing the lock
/// ([`Lock::unlink`], `memspace rm`) keeps its fencing counter, so that tokens keep growing if
/// it is created again. What it guarantees, and what not:
///
/// * With **one Redis server** and holders that keep renewing, at most one holder at a time.
///   A holder that is killed (`kill -9`) stops renewing: the next one gets the lock at most
///   one lease later, with a larger token. There is no `OwnerDied` on Redis: the server cannot
///   tell a dead holder from an expired lease.
/// * A holder **paused longer than its lease** (stopped, swapped out, cut off from Redis)
///   loses the lock while it still runs; [`LockGuard::check`] and [`LockGuard::unlock`] then
///   report [`LeaseError::Lost`], but work it did meanwhile may overlap the next holder's.
/// * **Replication and failover**: Redis replicates asynchronously, so a replica promoted
///   after a crash may not know of a lease, and hand the lock to a second holder.
/// * So for correctness, not just efficiency, pass the **fencing token** to the storage you
///   write to, and have it refuse tokens smaller than the largest it has seen.
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
    /// In shared memory, anchored: every call of a `Lock` takes its lock. The Redis engine is
    /// boxed, so that the handle holds no `UnsafeCell` of its own and the compiler may keep
    /// what it loads from it in registers across a loop of locks.
    place: Place<Box<RedisLock>, LockAnchor>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Debug` never waits: no holder is asked of a Redis server.
        let mut out = f.debug_struct("Lock");
        out.field("name", self.name());
        if let Place::Shm(anchor) = &self.place {
            out.field("owner", &anchor.slot().owner_pid());
        }
        out.finish_non_exhaustive()
    }
}

impl Lock {
    /// Creates an anonymous lock, removed when this process drops its last handle.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment: [`Error::NoSpace`](crate::Error::NoSpace),
    /// [`OpenError::PermissionDenied`](crate::OpenError::PermissionDenied),
    /// [`Error::Os`](crate::Error::Os).
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

    /// The lock at `place`.
    fn at(place: Place<RedisLock>) -> Self {
        Lock {
            place: place.map(LockAnchor::new, Box::new),
        }
    }

    open_constructors!(Kind::Lock, "lock", create_in);

    fn options() -> SegmentOptions {
        SegmentOptions::control_only()
    }

    fn create_segment(
        name: &SegmentName,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        let blueprint = Blueprint::untyped(Kind::Lock, options, anonymous);
        Ok(Self::at(Place::create(name, &blueprint, |_| Ok(()))?))
    }

    /// Blocks until the lock is acquired.
    ///
    /// # Errors
    ///
    /// * [`LockError::OwnerDied`] with the guard if the previous holder died holding it;
    /// * [`LockError::Poisoned`] with the guard if a holder panicked;
    /// * [`LockError::WouldDeadlock`] if this thread holds it already;
    /// * [`LockError::Unrecoverable`] or [`LockError::Corrupt`];
    /// * on Redis, [`LockError::Unavailable`] if the server cannot be reached, refuses, or the
    ///   lock was removed (its source says which), and [`LockError::CorruptLease`] if the
    ///   lease key holds something that never expires.
    #[allow(
        clippy::inline_always,
        reason = "measured: left to the compiler, the guard came back through memory"
    )]
    #[inline(always)]
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire_guard(Wait::Forever)
    }

    /// Acquires the lock if it is free.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is held (or handed over to a waiting process: see
    /// [`Lock`]), otherwise as [`Lock::lock`] (wrapped in
    /// [`TryLockError::Lock`]).
    #[inline]
    pub fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        self.acquire_guard(Wait::Never)
    }

    /// Waits at most `timeout` for the lock (measured on the monotonic clock).
    ///
    /// # Errors
    ///
    /// [`TryLockError::Timeout`] if it was not released in time, otherwise as [`Lock::lock`]
    /// (wrapped in [`TryLockError::Lock`]).
    pub fn try_lock_for(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        self.acquire_guard(Wait::For(timeout))
    }

    #[allow(
        clippy::inline_always,
        reason = "measured: left to the compiler, the guard came back through memory"
    )]
    #[inline(always)]
    fn acquire_guard<'a, E: AcquireError<LockGuard<'a>>>(
        &'a self,
        wait: Wait,
    ) -> Result<LockGuard<'a>, E> {
        match self.place.as_ref() {
            Place::Shm(anchor) => acquire(anchor, wait, |raw, _| LockGuard {
                lock: self,
                raw: Part::new(raw),
                lease: Part::NONE,
            }),
            #[cfg(feature = "redis")]
            Place::Redis(lock) => self.acquire_lease(lock, wait, false).map_err(E::from_try),
        }
    }

    /// Blocks until the lock is acquired, for the calling process rather than for a guard:
    /// the lock stays held until [`release`](Lock::release), which any thread of the process
    /// may call, even after the acquiring thread has exited. For bindings that offer Python's
    /// `lock.acquire()` ... `lock.release()` across calls; in Rust, prefer
    /// [`lock`](Lock::lock), whose guard cannot be forgotten.
    ///
    /// The hold belongs to the process: another thread of it that calls `acquire` (or
    /// [`lock`](Lock::lock)) waits until a `release`, as with Python's `Lock`, rather than
    /// failing with [`LockError::WouldDeadlock`]. The process's death releases it as a
    /// holder's death does: in shared memory the next locker is told
    /// [`LockError::OwnerDied`]; on Redis the lease (kept by the process, and renewed by a
    /// thread until `release`) expires. Only the death of the process counts: the main
    /// thread is the one whose liveness others check, so a program whose main thread exits
    /// while other threads go on (which neither Rust nor Python programs do) loses the lock
    /// to the next locker.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use memspace::sync::Lock;
    ///
    /// let lock = Lock::new()?;
    /// lock.acquire()?;
    /// // Released by another thread, as Python's locks allow.
    /// std::thread::scope(|s| s.spawn(|| lock.release()).join().unwrap())?;
    /// assert!(lock.release().is_err()); // not held any more
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Lock::lock`], without a guard: after [`LockError::OwnerDied`] and
    /// [`LockError::Poisoned`] the lock *is* held. After `OwnerDied`, repair the data and
    /// call [`mark_consistent`](Lock::mark_consistent) before `release`, or the lock becomes
    /// unrecoverable, as when a guard is dropped unrepaired.
    pub fn acquire(&self) -> Result<(), LockError<()>> {
        blocking(self.acquire_held(Wait::Forever))
    }

    /// [`acquire`](Lock::acquire) if the lock is free.
    ///
    /// # Errors
    ///
    /// [`TryLockError::WouldBlock`] if it is held (or handed over to a waiting process),
    /// otherwise as [`Lock::acquire`].
    #[inline]
    pub fn try_acquire(&self) -> Result<(), TryLockError<()>> {
        self.acquire_held(Wait::Never)
    }

    /// [`acquire`](Lock::acquire), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TryLockError::Timeout`] if it was not released in time, otherwise as
    /// [`Lock::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), TryLockError<()>> {
        self.acquire_held(Wait::For(timeout))
    }

    #[inline]
    fn acquire_held(&self, wait: Wait) -> Result<(), TryLockError<()>> {
        match self.place.as_ref() {
            // The raw guard is forgotten: the lock names the process, and `release` frees it.
            Place::Shm(anchor) => acquire_for_process(anchor, wait, |raw, _| std::mem::forget(raw)),
            #[cfg(feature = "redis")]
            Place::Redis(lock) => {
                let keep = |mut guard: LockGuard<'_>| {
                    if let Some(lease) = guard.lease.take() {
                        lock.keep_for_process(*lease);
                    }
                };
                self.acquire_lease(lock, wait, true)
                    .map(keep)
                    .map_err(|err| err.map_guard(keep))
            }
        }
    }

    /// Releases the lock taken with [`acquire`](Lock::acquire) by this process, from any of
    /// its threads.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotHeld`] if this process does not hold it through `acquire` (it is
    /// free, another process holds it, a guard holds it, or another thread released it
    /// already), naming the recorded owner; Python raises `RuntimeError` there. On Redis,
    /// [`ReleaseError::Lease`] if the lease expired before the release (someone else may
    /// have held the lock meanwhile) or the server could not be reached (the lease then
    /// expires on its own).
    pub fn release(&self) -> Result<(), ReleaseError> {
        match self.place.as_ref() {
            Place::Shm(anchor) => {
                let slot = anchor.slot();
                if slot.release_for_process() {
                    Ok(())
                } else {
                    Err(ReleaseError::NotHeld {
                        name: self.name().clone(),
                        owner: slot.owner_pid(),
                    })
                }
            }
            #[cfg(feature = "redis")]
            Place::Redis(lock) => match lock.release_for_process() {
                Some(released) => released.map_err(ReleaseError::from),
                None => Err(ReleaseError::NotHeld {
                    name: self.name().clone(),
                    owner: lock.holder().ok().flatten().map(|(pid, _)| pid),
                }),
            },
        }
    }

    /// After [`acquire`](Lock::acquire) reported [`LockError::OwnerDied`]: declares the
    /// protected data repaired, so that the lock stays usable after
    /// [`release`](Lock::release). On Redis, which has no `OwnerDied`, does nothing.
    ///
    /// # Errors
    ///
    /// An I/O error (`InvalidInput`) if this process does not hold the lock through
    /// `acquire`, or the lock was not taken over from a holder that died.
    pub fn mark_consistent(&self) -> std::io::Result<()> {
        match self.place.as_ref() {
            Place::Shm(anchor) => anchor.slot().mark_consistent_for_process(),
            #[cfg(feature = "redis")]
            Place::Redis(_) => Ok(()),
        }
    }

    /// Tries to take the lease until `wait` runs out, sleeping 1 ms between attempts at
    /// first, backing off to 20 ms. Out of line: a network round trip dwarfs a call, and the
    /// shared-memory path stays small enough to inline.
    #[cfg(feature = "redis")]
    #[cold]
    #[inline(never)]
    fn acquire_lease(
        &self,
        lock: &RedisLock,
        wait: Wait,
        for_process: bool,
    ) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let attempt = if for_process {
                lock.try_acquire_for_process()
            } else {
                lock.try_acquire()
            };
            match attempt {
                Ok(Attempt::Held(lease)) => {
                    return Ok(LockGuard {
                        lock: self,
                        raw: Part::NONE,
                        lease: Part::new(Box::new(lease)),
                    });
                }
                Ok(Attempt::Busy) => {}
                Err(err) => return Err(err.into()),
            }
            let name = self.name().clone();
            let sleep = match wait {
                Wait::Never => return Err(TryLockError::WouldBlock { name }),
                Wait::Forever => pause,
                Wait::For(limit) => match limit.checked_sub(started.elapsed()) {
                    Some(left) if !left.is_zero() => left.min(pause),
                    _ => {
                        return Err(TryLockError::Timeout {
                            name,
                            waited: limit,
                        });
                    }
                },
            };
            std::thread::sleep(sleep);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// The pid recorded as holding the lock, if it is held (informational: it can change at any
    /// moment, and a holder that died keeps its pid here until the next owner takes over, or,
    /// on Redis, until its lease expires).
    ///
    /// # Errors
    ///
    /// Never in shared memory. On Redis,
    /// [`Error::RedisUnreachable`](crate::Error::RedisUnreachable) if the server cannot be
    /// reached, [`OpenError::NotFound`](crate::OpenError::NotFound) or
    /// [`OpenError::Replaced`](crate::OpenError::Replaced) if the lock was removed (or created
    /// again) since this handle opened it.
    pub fn owner(&self) -> Result<Option<u32>> {
        match self.place.as_ref() {
            Place::Shm(anchor) => Ok(anchor.slot().owner_pid()),
            #[cfg(feature = "redis")]
            Place::Redis(lock) => Ok(lock.holder()?.map(|(pid, _)| pid)),
        }
    }

    /// How many times a holder died and the lock was taken over (always 0 on Redis, which
    /// cannot tell a dead holder from an expired lease).
    #[must_use]
    pub fn owner_deaths(&self) -> u32 {
        match self.place.as_ref() {
            Place::Shm(anchor) => anchor.slot().owner_deaths(),
            #[cfg(feature = "redis")]
            Place::Redis(_) => 0,
        }
    }

    place_accessors!("lock");

    /// The largest fencing token handed out so far, for a Redis lock (`None` in shared
    /// memory, which has no tokens).
    ///
    /// # Errors
    ///
    /// As [`Lock::owner`].
    pub fn last_fencing_token(&self) -> Result<Option<u64>> {
        match self.place.as_ref() {
            Place::Shm(_) => Ok(None),
            #[cfg(feature = "redis")]
            Place::Redis(lock) => lock.last_token().map(Some),
        }
    }
}

serialize_as_name!(Lock);

/// Without the `redis` feature a guard never holds a lease: this stands in for the Redis
/// lease, and has no values, so a guard's `lease` is always `None`.
#[cfg(not(feature = "redis"))]
enum Lease {}

#[cfg(not(feature = "redis"))]
impl Lease {
    fn token(&self) -> u64 {
        match *self {}
    }

    fn check(&self) -> Result<(), LeaseError> {
        match *self {}
    }

    fn release(&mut self) -> Result<(), LeaseError> {
        match *self {}
    }
}

/// Proof that this thread holds a [`Lock`]; releases it when dropped.
///
/// The guard is `!Send`: the lock names the thread that holds it, which must be the one to
/// release it.
///
/// For a Redis lock the guard holds a lease, renewed in the background while it lives;
/// [`check`](LockGuard::check) and [`unlock`](LockGuard::unlock) say whether it was kept.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    /// In shared memory: the held lock (empty on Redis).
    raw: Part<RawGuard<'a>>,
    /// On Redis: the lease. Boxed: a lease is larger than a shared-memory guard, and guards
    /// travel inside errors.
    lease: Part<Box<Lease>>,
}

/// A part of a [`LockGuard`], released by the guard's own `Drop` rather than by drop glue of
/// its own: dropping a guard is then one small function, with no cleanup path for one part
/// should the other's release unwind, which the compiler inlines into callers' loops in every
/// crate (BENCHMARKS.md, "Sixth pass").
struct Part<T>(ManuallyDrop<Option<T>>);

impl<T> Part<T> {
    const NONE: Self = Part(ManuallyDrop::new(None));

    fn new(value: T) -> Self {
        Part(ManuallyDrop::new(Some(value)))
    }

    fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }

    fn take(&mut self) -> Option<T> {
        self.0.take()
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        drop(self.raw.take());
        if let Some(lease) = self.lease.take() {
            release_lease(lease);
        }
    }
}

/// Out of line: a shared-memory guard's drop only tests for a lease.
#[cold]
#[inline(never)]
fn release_lease(lease: Box<Lease>) {
    drop(lease);
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("LockGuard");
        match self.lease.get() {
            None => out.field("recovery", &self.raw.get().map(RawGuard::recovery)),
            Some(lease) => out.field("fencing_token", &lease.token()),
        };
        out.finish_non_exhaustive()
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
        match self.raw.get() {
            Some(raw) => raw.mark_consistent(),
            None => Ok(()),
        }
    }

    /// After [`LockError::Poisoned`]: clears the poison flag for every process.
    pub fn clear_poison(&self) {
        if let Some(raw) = self.raw.get() {
            raw.clear_poison();
        }
    }

    /// After [`LockError::OwnerDied`], when the repair failed: releases the lock without
    /// declaring the data repaired, and without making the lock unrecoverable (as dropping
    /// the guard would). The next locker is told [`LockError::OwnerDied`] again, with the
    /// same pid, and can retry the repair. After a clean acquisition, or once
    /// [`mark_consistent`](LockGuard::mark_consistent) was called, this is a plain unlock; on
    /// Redis it releases the lease as dropping the guard does.
    pub fn unlock_unrepaired(mut self) {
        if let Some(raw) = self.raw.take() {
            raw.unlock_unrepaired();
        }
    }

    /// If this acquisition took over from a holder that died, the pid that held it.
    #[must_use]
    pub fn previous_owner_died(&self) -> Option<u32> {
        match self.raw.get().map(RawGuard::recovery) {
            Some(Recovery::OwnerDied { pid }) => Some(pid),
            Some(Recovery::Clean) | None => None,
        }
    }

    /// The fencing token of a Redis lock's lease: larger than that of every earlier
    /// acquisition of the lock. Hand it to the storage you write to under the lock, which
    /// should refuse a token smaller than the largest it has seen (see [`Lock`]). `None` in
    /// shared memory, where a holder cannot lose the lock while it lives.
    #[must_use]
    pub fn fencing_token(&self) -> Option<u64> {
        self.lease.get().map(|lease| lease.token())
    }

    /// Whether this guard still holds the lock: always in shared memory; on Redis, whether the
    /// lease is still this holder's (asking the server).
    ///
    /// # Errors
    ///
    /// [`LeaseError::Lost`] if the lease expired or was taken over;
    /// [`LeaseError::Unavailable`] if the server cannot be reached (the lease may still be
    /// held: the renewal thread keeps trying until it would expire).
    pub fn check(&self) -> Result<(), LeaseError> {
        match self.lease.get() {
            None => Ok(()),
            Some(lease) => lease.check(),
        }
    }

    /// Releases the lock, reporting what dropping the guard cannot: on Redis, whether the
    /// lease was still held.
    ///
    /// # Errors
    ///
    /// [`LeaseError::Lost`] if the lease had expired or been taken over before the
    /// release: someone else may have held the lock meanwhile. [`LeaseError::Unavailable`] if
    /// the server cannot be reached (the lease then expires on its own).
    pub fn unlock(mut self) -> Result<(), LeaseError> {
        match self.lease.take() {
            None => Ok(()),
            Some(mut lease) => lease.release(),
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
