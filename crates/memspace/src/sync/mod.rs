//! Locks that work between processes and survive the death of a holder.
//!
//! # The locking protocol
//!
//! Every segment carries one lock in its control page: a futex word that names the thread holding
//! it (see `raw_mutex.rs`). When a holder dies (a `kill -9`, a crash) the next locker finds the
//! holder gone from `/proc`, takes the lock over *and* is told: [`LockError::OwnerDied`] carries
//! the guard. The new holder
//! repairs what the lock protects and calls `mark_consistent()`; if it drops the guard without
//! doing so, the lock becomes permanently [`LockError::Unrecoverable`] (POSIX's rule: a lock
//! whose data nobody vouched for must not be handed out again). A holder whose repair failed
//! releases the guard with `unlock_unrepaired()`: the lock stays recoverable, and the next
//! locker is told the owner died and tries again.
//!
//! A holder that *panics* unwinds and unlocks normally; its guard marks the lock poisoned in
//! shared memory first, so that every process sees [`LockError::Poisoned`] until someone calls
//! `clear_poison()`.
//!
//! The collections built on this lock never need the user's help: their data is consistent by
//! construction (a new item becomes visible with one atomic store), so they repair themselves
//! and carry on. A repair that fails (damaged data, a transient system error) is the caller's
//! error; the lock stays recoverable, and the next call repairs again.
//!
//! Every blocking call has a timed form (`try_lock_for`) and a non-blocking one (`try_lock`):
//! robustness covers death, not a holder that hangs.

mod barrier;
mod condvar;
mod event;
mod lock;
mod mutex;
mod plain;
mod raw_mutex;
mod rwlock;
mod semaphore;

use std::fmt;
use std::time::Duration;

pub(crate) use self::barrier::BarrierArea;
pub use self::barrier::{Barrier, BarrierError, MAX_PARTIES};
pub(crate) use self::condvar::CondvarArea;
pub use self::condvar::{Condvar, Relock};
pub use self::event::Event;
pub(crate) use self::event::EventArea;
pub(crate) use self::event::RedisEvent;
pub(crate) use self::lock::RedisLock;
pub use self::lock::{Lock, LockGuard};
pub use self::mutex::{Mutex, MutexGuard};
pub(crate) use self::plain::{ValueShape, expect_type, type_mismatch};
pub(crate) use self::raw_mutex::{LockSlot, RawFailure, RawGuard, Recovery};
pub(crate) use self::rwlock::RwLockArea;
pub use self::rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub(crate) use self::semaphore::SemaphoreArea;
pub use self::semaphore::{Permit, Semaphore, SemaphoreError};

use crate::segment::{Kind, Segment, SegmentName};
use crate::sys::Wait;

/// Why a lock was not acquired cleanly.
///
/// `OwnerDied` and `Poisoned` carry the guard: the lock *is* held, and the caller decides what
/// to do with the data it protects.
#[non_exhaustive]
pub enum LockError<G> {
    /// The previous holder died while holding the lock. You hold it now: repair the data it
    /// protects, then call `mark_consistent()` on the guard. Dropping the guard without doing
    /// so makes the lock unrecoverable; if the repair failed, release the guard with
    /// `unlock_unrepaired()` instead, and the next locker is told the owner died and repairs
    /// again. (The collections do this themselves: a failed repair is retried by the next
    /// call.)
    OwnerDied(G),
    /// A previous holder panicked while holding the lock. You hold it now; call
    /// `clear_poison()` on the guard once the data is known to be sound.
    Poisoned(G),
    /// `try_lock`: someone else holds the lock.
    WouldBlock {
        /// The lock's segment.
        name: SegmentName,
    },
    /// `try_lock_for`: the lock was not released in time.
    Timeout {
        /// The lock's segment.
        name: SegmentName,
        /// How long the caller waited.
        waited: Duration,
    },
    /// A holder died and the next one released the lock without marking it consistent.
    Unrecoverable {
        /// The lock's segment.
        name: SegmentName,
    },
    /// This thread already holds the lock (it is not recursive).
    WouldDeadlock {
        /// The lock's segment.
        name: SegmentName,
    },
    /// The lock in the segment is damaged.
    Corrupt {
        /// The lock's segment.
        name: SegmentName,
        /// The lock's state word, which holds a value the protocol never writes.
        state: u32,
    },
    /// A Redis lock's lease ran out (or was taken by another holder) before it was released or
    /// checked: another holder may have held the lock at the same time. Work done under the
    /// guard must be treated as unprotected; a storage service that checks
    /// [`fencing_token`](LockGuard::fencing_token)s will have refused writes made with it.
    LockLost {
        /// The lock.
        name: SegmentName,
        /// The fencing token of the lost lease.
        token: u64,
    },
    /// A Redis lock's lease key holds something that never expires and that is not a lease
    /// this lock can wait for (a value written by hand, a key of another type, or a lease
    /// whose expiry was removed): waiting would never end. Remove the lock with `memspace rm`
    /// and create it again. (Something that does expire is treated as a holder's lease, and
    /// waited for until it does.)
    CorruptLease {
        /// The lock.
        name: SegmentName,
        /// The lease key (`memspace:{NAME}:items`).
        key: String,
        /// What it holds.
        found: String,
    },
    /// A Redis lock could not be taken: its server could not be reached or refused the
    /// command, or the lock was removed (or removed and created again) while this handle was
    /// open. In shared memory: another process shrank the segment's file under this
    /// process's mapping (see [`Segment::check_intact`](crate::Segment::check_intact)).
    /// `detail` says which and what to do; `source` holds the error.
    Unavailable {
        /// The lock.
        name: SegmentName,
        /// What happened, and what to do.
        detail: String,
        /// The error that made the lock unavailable (a [`crate::Error`] naming the server and
        /// the operation, whose own source is the Redis client's error), if there was one.
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl<G> LockError<G> {
    /// The same error without its guard (dropping the guard releases the lock).
    #[must_use]
    pub fn without_guard(self) -> LockError<()> {
        self.map_guard(drop)
    }

    /// The same error with its guard (if it has one) turned into another by `f`.
    pub(crate) fn map_guard<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(guard) => LockError::OwnerDied(f(guard)),
            LockError::Poisoned(guard) => LockError::Poisoned(f(guard)),
            LockError::WouldBlock { name } => LockError::WouldBlock { name },
            LockError::Timeout { name, waited } => LockError::Timeout { name, waited },
            LockError::Unrecoverable { name } => LockError::Unrecoverable { name },
            LockError::WouldDeadlock { name } => LockError::WouldDeadlock { name },
            LockError::Corrupt { name, state } => LockError::Corrupt { name, state },
            LockError::LockLost { name, token } => LockError::LockLost { name, token },
            LockError::CorruptLease { name, key, found } => {
                LockError::CorruptLease { name, key, found }
            }
            LockError::Unavailable {
                name,
                detail,
                source,
            } => LockError::Unavailable {
                name,
                detail,
                source,
            },
        }
    }

    /// The guard, for `OwnerDied` and `Poisoned`.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(guard) | LockError::Poisoned(guard) => Some(guard),
            _ => None,
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str(
                "the previous holder of the lock died while holding it; the data it protects \
                 may be half-updated: repair it and call `mark_consistent()` on the guard",
            ),
            LockError::Poisoned(_) => f.write_str(
                "a holder of the lock panicked while holding it; check the data it protects and \
                 call `clear_poison()` on the guard",
            ),
            LockError::WouldBlock { name } => write!(f, "lock `{name}` is held by someone else"),
            LockError::Timeout { name, waited } => {
                write!(f, "lock `{name}` was not released within {waited:?}")
            }
            LockError::Unrecoverable { name } => write!(
                f,
                "lock `{name}` is unrecoverable: a holder died and the next one released it \
                 without calling `mark_consistent()`; remove and recreate it"
            ),
            LockError::WouldDeadlock { name } => write!(
                f,
                "this thread already holds lock `{name}`; it is not recursive"
            ),
            LockError::Corrupt { name, state } => write!(
                f,
                "the lock of `{name}` is damaged (state word {state:#x}); remove and recreate it"
            ),
            LockError::LockLost { name, token } => write!(
                f,
                "the lease on lock `{name}` (fencing token {token}) expired or was taken over \
                 before it was released: another holder may have held it too; redo the work \
                 under a new lock, or use a longer lease (`?lease_ms=N`)"
            ),
            LockError::CorruptLease { name, key, found } => write!(
                f,
                "lock `{name}` cannot be taken: its lease key `{key}` holds {found} and never \
                 expires, which memspace never leaves; remove the lock with \
                 `memspace rm {name}` and create it again"
            ),
            LockError::Unavailable { name, detail, .. } => {
                write!(f, "lock `{name}` is unavailable: {detail}")
            }
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Poisoned(_) => f.write_str("Poisoned(..)"),
            LockError::WouldBlock { name } => {
                f.debug_struct("WouldBlock").field("name", name).finish()
            }
            LockError::Timeout { name, waited } => f
                .debug_struct("Timeout")
                .field("name", name)
                .field("waited", waited)
                .finish(),
            LockError::Unrecoverable { name } => {
                f.debug_struct("Unrecoverable").field("name", name).finish()
            }
            LockError::WouldDeadlock { name } => {
                f.debug_struct("WouldDeadlock").field("name", name).finish()
            }
            LockError::Corrupt { name, state } => f
                .debug_struct("Corrupt")
                .field("name", name)
                .field("state", state)
                .finish(),
            LockError::LockLost { name, token } => f
                .debug_struct("LockLost")
                .field("name", name)
                .field("token", token)
                .finish(),
            LockError::CorruptLease { name, key, found } => f
                .debug_struct("CorruptLease")
                .field("name", name)
                .field("key", key)
                .field("found", found)
                .finish(),
            LockError::Unavailable {
                name,
                detail,
                source,
            } => f
                .debug_struct("Unavailable")
                .field("name", name)
                .field("detail", detail)
                .field("source", source)
                .finish(),
        }
    }
}

impl<G> std::error::Error for LockError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Unavailable {
                source: Some(source),
                ..
            } => Some(&**source),
            _ => None,
        }
    }
}

/// The kind-specific state `inspect` shows for the synchronisation kinds.
pub(crate) fn describe(segment: &Segment) -> Vec<(&'static str, String)> {
    match segment.kind() {
        Kind::Event => event::describe(segment),
        Kind::Condvar => condvar::describe(segment),
        Kind::Semaphore => semaphore::describe(segment),
        Kind::Barrier => barrier::describe(segment),
        Kind::RwLock => {
            let mut state = plain::describe(segment);
            state.extend(rwlock::describe(segment));
            state
        }
        Kind::Mutex | Kind::Value => plain::describe(segment),
        _ => Vec::new(),
    }
}

/// Takes `segment`'s lock for a structure that repairs itself. After a holder died, `repair`
/// restores the structure's invariants (holding the lock) and the lock is marked consistent; a
/// poison flag is cleared, since the structures never panic while they hold their lock.
///
/// A repair that fails (a damaged entry, a transient error while mapping) returns its error
/// and releases the lock still inconsistent: the next locker is told the owner died and tries
/// the repair again, once the damage is undone or the fault has passed. Dropping the guard
/// instead would make the lock not recoverable, for good.
#[inline]
pub(crate) fn lock_and_repair<'a>(
    segment: &'a Segment,
    repair: impl FnOnce(&RawGuard<'a>) -> crate::Result<()>,
) -> crate::Result<RawGuard<'a>> {
    match acquire(segment, segment.lock_wait(), |raw, _| raw) {
        Ok(held) => Ok(held),
        // An observer (`inspect`) changes nothing, not even a repair: the next writer does it.
        Err(LockError::OwnerDied(held)) if segment.is_observer() => {
            held.unlock_unrepaired();
            Err(crate::Error::Lock(LockError::Unavailable {
                name: segment.name().clone(),
                detail: "its last holder died in the middle of a change, which the next \
                         writer repairs; an observer changes nothing"
                    .to_owned(),
                source: None,
            }))
        }
        Err(LockError::OwnerDied(held)) => {
            if let Err(err) = repair(&held) {
                held.unlock_unrepaired();
                return Err(err);
            }
            held.mark_consistent()
                .map_err(|source| segment.os_error("mark the lock consistent", source))?;
            Ok(held)
        }
        Err(LockError::Poisoned(held)) => {
            held.clear_poison();
            Ok(held)
        }
        Err(other) => Err(other.into()),
    }
}

/// Acquires `segment`'s lock and wraps the raw guard into the caller's guard type, mapping the
/// outcome onto [`LockError`]. Shared by [`Lock`], [`Mutex`] and the collections.
#[inline]
pub(crate) fn acquire<'a, G>(
    segment: &'a Segment,
    wait: Wait,
    wrap: impl FnOnce(RawGuard<'a>, Recovery) -> G,
) -> Result<G, LockError<G>> {
    let slot = segment.lock_slot();
    match slot.acquire(wait) {
        // Pages of the segment were lost to a file shrunk under this mapping. If the lock
        // word's page was among them, what was taken is a private copy that excludes no one;
        // if not, it is the real lock, and is released as it was found (consistent or not).
        Ok((raw, _)) if !segment.is_intact() => {
            raw.unlock_unrepaired();
            let source = segment.check_intact().err().map(|err| Box::new(err) as _);
            Err(LockError::Unavailable {
                name: segment.name().clone(),
                detail: "the segment's file was shrunk under this process's mapping".to_owned(),
                source,
            })
        }
        Ok((raw, recovery)) => {
            let poisoned = slot.is_poisoned();
            let guard = wrap(raw, recovery);
            match recovery {
                Recovery::OwnerDied { .. } => Err(LockError::OwnerDied(guard)),
                Recovery::Clean if poisoned => Err(LockError::Poisoned(guard)),
                Recovery::Clean => Ok(guard),
            }
        }
        Err(failure) => {
            let name = segment.name().clone();
            Err(match failure {
                RawFailure::WouldBlock => LockError::WouldBlock { name },
                RawFailure::TimedOut => LockError::Timeout {
                    name,
                    waited: match wait {
                        Wait::For(d) => d,
                        Wait::Forever | Wait::Never => Duration::ZERO,
                    },
                },
                RawFailure::Unrecoverable => LockError::Unrecoverable { name },
                RawFailure::Deadlock => LockError::WouldDeadlock { name },
                RawFailure::Damaged(state) => LockError::Corrupt { name, state },
            })
        }
    }
}
