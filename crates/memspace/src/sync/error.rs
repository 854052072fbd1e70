//! The errors of acquiring a lock, one type per form of the call, as std splits
//! `LockResult` from `TryLockResult`: [`LockError`] for a blocking acquisition (`lock`, `read`,
//! `write`), which cannot report a lock that is busy; [`TryLockError`] for the forms that give
//! up (`try_lock`, `try_lock_for`, ...), which wraps it; [`LeaseError`] for what only a Redis
//! lock's guard can report, a lease lost while it was held; [`ReleaseError`] for a release
//! without a guard (`Lock::release`, `RLock::release`).

use std::fmt;
use std::time::Duration;

use crate::segment::SegmentName;

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
            LockError::Unrecoverable { name } => LockError::Unrecoverable { name },
            LockError::WouldDeadlock { name } => LockError::WouldDeadlock { name },
            LockError::Corrupt { name, state } => LockError::Corrupt { name, state },
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
            LockError::Unrecoverable { name } => write!(
                f,
                "lock `{name}` is unrecoverable: a holder died and the next one released it \
                 without calling `mark_consistent()`; remove and recreate it (`memspace rm \
                 {name}` from a shell)"
            ),
            LockError::WouldDeadlock { name } => write!(
                f,
                "this thread already holds lock `{name}`; it is not recursive"
            ),
            LockError::Corrupt { name, state } => write!(
                f,
                "the lock of `{name}` is damaged (state word {state:#x}); remove and recreate it \
                 (`memspace rm {name}` from a shell)"
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

/// Why a `try_` or timed acquisition (`try_lock`, `try_lock_for`, `try_read_for`, ...) did
/// not return a guard.
#[non_exhaustive]
pub enum TryLockError<G> {
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
    /// The acquisition failed, or succeeded with news, as a blocking one would have (a
    /// previous holder died, the lock is poisoned, ...).
    Lock(LockError<G>),
}

impl<G> From<LockError<G>> for TryLockError<G> {
    fn from(err: LockError<G>) -> Self {
        TryLockError::Lock(err)
    }
}

impl<G> TryLockError<G> {
    /// The same error without its guard (dropping the guard releases the lock).
    #[must_use]
    pub fn without_guard(self) -> TryLockError<()> {
        self.map_guard(drop)
    }

    /// The same error with its guard (if it has one) turned into another by `f`.
    pub(crate) fn map_guard<H>(self, f: impl FnOnce(G) -> H) -> TryLockError<H> {
        match self {
            TryLockError::WouldBlock { name } => TryLockError::WouldBlock { name },
            TryLockError::Timeout { name, waited } => TryLockError::Timeout { name, waited },
            TryLockError::Lock(err) => TryLockError::Lock(err.map_guard(f)),
        }
    }

    /// The guard, for `OwnerDied` and `Poisoned`.
    pub fn into_guard(self) -> Option<G> {
        match self {
            TryLockError::Lock(err) => err.into_guard(),
            _ => None,
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock { name } => write!(f, "lock `{name}` is held by someone else"),
            TryLockError::Timeout { name, waited } => {
                write!(f, "lock `{name}` was not released within {waited:?}")
            }
            TryLockError::Lock(err) => fmt::Display::fmt(err, f),
        }
    }
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock { name } => {
                f.debug_struct("WouldBlock").field("name", name).finish()
            }
            TryLockError::Timeout { name, waited } => f
                .debug_struct("Timeout")
                .field("name", name)
                .field("waited", waited)
                .finish(),
            TryLockError::Lock(err) => f.debug_tuple("Lock").field(err).finish(),
        }
    }
}

impl<G> std::error::Error for TryLockError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryLockError::Lock(err) => err.source(),
            _ => None,
        }
    }
}

/// What a Redis lock's guard reports when asked whether it still holds the lock
/// ([`LockGuard::check`](super::LockGuard::check)) or when released
/// ([`LockGuard::unlock`](super::LockGuard::unlock)). A shared-memory guard never reports one:
/// a holder cannot lose that lock while it lives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The lease ran out (or was taken by another holder) before it was released or checked:
    /// another holder may have held the lock at the same time. Work done under the guard must
    /// be treated as unprotected; a storage service that checks
    /// [`fencing_token`](super::LockGuard::fencing_token)s will have refused writes made with
    /// it.
    #[error(
        "the lease on lock `{name}` (fencing token {token}) expired or was taken over before it \
         was released: another holder may have held it too; redo the work under a new lock, or \
         use a longer lease (`?lease_ms=N`)"
    )]
    Lost {
        /// The lock.
        name: SegmentName,
        /// The fencing token of the lost lease.
        token: u64,
    },
    /// The server could not be reached or refused, or the lock was removed: whether the lease
    /// is still held is unknown (the renewal keeps trying until it would expire).
    #[error("lock `{name}` is unavailable: {detail}")]
    Unavailable {
        /// The lock.
        name: SegmentName,
        /// What happened, and what to do.
        detail: String,
        /// The error, naming the server and the operation.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Why a release without a guard ([`Lock::release`](super::Lock::release),
/// [`RLock::release`](super::RLock::release)) failed. Python raises `RuntimeError` for the
/// first two.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// A [`Lock`](super::Lock) this process does not hold through
    /// [`acquire`](super::Lock::acquire): it is free, another process holds it, a guard holds
    /// it, or another thread released it first.
    #[error("lock `{name}` is not held by this process ({}); release only what `acquire` took", holder_text(*.owner, "a guard in this process holds it"))]
    NotHeld {
        /// The lock.
        name: SegmentName,
        /// The pid recorded as holding it, if anyone does.
        owner: Option<u32>,
    },
    /// An [`RLock`](super::RLock) the calling thread does not hold: only its owner thread may
    /// release it, as in Python.
    #[error("reentrant lock `{name}` is not held by this thread ({}); only the thread that acquired it may release it", holder_text(*.owner, "another thread of this process holds it"))]
    NotOwner {
        /// The lock.
        name: SegmentName,
        /// The pid recorded as holding it, if anyone does.
        owner: Option<u32>,
    },
    /// On Redis: the lease was lost before the release, or the server could not be reached.
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

/// Who holds a lock, for a message; `here` says how the calling process can hold it without
/// being its holder.
fn holder_text(owner: Option<u32>, here: &str) -> String {
    match owner {
        None => "it is free".to_owned(),
        Some(pid) if pid == std::process::id() => here.to_owned(),
        Some(pid) => format!("pid {pid} holds it"),
    }
}
