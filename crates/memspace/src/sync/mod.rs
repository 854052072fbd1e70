//! Locks that work between processes and survive the death of a holder.
//!
//! # The locking protocol
//!
//! Every segment carries one lock in its control page: a futex word that names the thread holding
//! it (see `segment/raw_mutex.rs`). When a holder dies (a `kill -9`, a crash) the next locker finds the
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
mod error;
mod event;
mod lock;
mod mutex;
mod plain;
mod rlock;
mod rwlock;
mod semaphore;

use std::time::Duration;

pub use self::barrier::{Barrier, BarrierError, MAX_PARTIES};
pub use self::condvar::{Condvar, Relock, Ticket};
pub use self::error::{LeaseError, LockError, ReleaseError, TryLockError};
pub use self::event::Event;
#[cfg(feature = "redis")]
pub(crate) use self::event::RedisEvent;
#[cfg(feature = "redis")]
pub(crate) use self::lock::RedisLock;
pub use self::lock::{Lock, LockGuard};
pub use self::mutex::{Mutex, MutexGuard};
pub(crate) use self::plain::{expect_type, type_mismatch};
pub use self::rlock::{RLock, RLockGuard};
pub use self::rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use self::semaphore::{Permit, Semaphore, SemaphoreError};
use crate::segment::{LockSlot, RawFailure};
pub(crate) use crate::segment::{RawGuard, Recovery};

use crate::segment::{Kind, LockSite, Segment};
use crate::sys::Wait;

/// The kind-specific state `inspect` shows for the synchronisation kinds.
pub(crate) fn describe(segment: &Segment) -> Vec<(&'static str, String)> {
    match segment.kind() {
        Kind::Event => event::describe(segment),
        Kind::Condvar => condvar::describe(segment),
        Kind::Semaphore => semaphore::describe(segment),
        Kind::Barrier => barrier::describe(segment),
        Kind::RLock => rlock::describe(segment),
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
    site: &'a (impl LockSite + ?Sized),
    repair: impl FnOnce(&RawGuard<'a>) -> crate::Result<()>,
) -> crate::Result<RawGuard<'a>> {
    let segment = site.segment();
    match acquire::<_, TryLockError<_>>(site, segment.lock_wait(), |raw, _| raw) {
        Ok(held) => Ok(held),
        // An observer (`inspect`) changes nothing, not even a repair: the next writer does it.
        Err(TryLockError::Lock(LockError::OwnerDied(held))) if segment.is_observer() => {
            held.unlock_unrepaired();
            Err(crate::Error::Lock(LockError::Unavailable {
                name: segment.name().clone(),
                detail: "its last holder died in the middle of a change, which the next \
                         writer repairs; an observer changes nothing"
                    .to_owned(),
                source: None,
            }))
        }
        Err(TryLockError::Lock(LockError::OwnerDied(held))) => {
            if let Err(err) = repair(&held) {
                held.unlock_unrepaired();
                return Err(err);
            }
            held.mark_consistent()
                .map_err(|source| segment.os_error("mark the lock consistent", source))?;
            Ok(held)
        }
        Err(TryLockError::Lock(LockError::Poisoned(held))) => {
            held.clear_poison();
            Ok(held)
        }
        Err(other) => Err(other.into()),
    }
}

/// Acquires `segment`'s lock and wraps the raw guard into the caller's guard type, mapping the
/// outcome onto the caller's error type: a [`TryLockError`], or a [`LockError`] for a
/// `Wait::Forever`, which never gives `WouldBlock` or `Timeout` (see [`AcquireError`]).
/// Shared by [`Lock`], [`Mutex`] and the collections.
#[allow(
    clippy::inline_always,
    reason = "measured: left to the compiler, a guard came back through memory (see `finish_acquire`)"
)]
#[inline(always)]
pub(crate) fn acquire<'a, G, E: AcquireError<G>>(
    site: &'a (impl LockSite + ?Sized),
    wait: Wait,
    wrap: impl FnOnce(RawGuard<'a>, Recovery) -> G,
) -> Result<G, E> {
    let slot = site.slot();
    finish_acquire(site, slot, wait, slot.acquire(wait), wrap)
}

/// As [`acquire`], for the calling process rather than the calling thread (see
/// `segment/raw_mutex.rs`): `wrap` must forget the raw guard, and the lock is released with
/// `LockSlot::release_for_process`.
#[inline]
pub(crate) fn acquire_for_process<'a, G, E: AcquireError<G>>(
    site: &'a (impl LockSite + ?Sized),
    wait: Wait,
    wrap: impl FnOnce(RawGuard<'a>, Recovery) -> G,
) -> Result<G, E> {
    let slot = site.slot();
    finish_acquire(site, slot, wait, slot.acquire_for_process(wait), wrap)
}

/// The outcome of an acquisition of `segment`'s lock (`slot`) as [`acquire`] describes it.
/// A clean acquisition is a few loads inline; everything else is out of line, each piece
/// passed on its own so that nothing is built in memory on the way every uncontended lock
/// takes. (Passing `taken` whole to the cold path made the compiler build it on the stack and
/// read the guard back from there, stalling on the store: 22 ns a lock and unlock against
/// 16 ns.)
///
/// The cold paths return their outcome boxed, for the same reason: an outcome written in
/// place goes through a pointer to the caller's result, which must then live in memory on
/// every path, and a clean acquisition would store its guard there too (five stores in front
/// of the unlock's locked instruction, which waits for them). Moved out of a box, the result
/// is the caller's own value, kept in registers where the caller's code allows (BENCHMARKS.md,
/// "Eleventh pass").
#[allow(
    clippy::inline_always,
    reason = "measured: left to the compiler, a guard came back through memory"
)]
#[inline(always)]
fn finish_acquire<'a, G, E: AcquireError<G>>(
    site: &'a (impl LockSite + ?Sized),
    slot: &LockSlot,
    wait: Wait,
    taken: Result<(RawGuard<'a>, Recovery), RawFailure>,
    wrap: impl FnOnce(RawGuard<'a>, Recovery) -> G,
) -> Result<G, E> {
    match taken {
        Ok((raw, recovery)) => {
            let intact = site.is_intact();
            if recovery == Recovery::Clean && intact && !slot.is_poisoned() {
                Ok(wrap(raw, Recovery::Clean))
            } else {
                *acquired_unclean(site.segment(), slot, intact, raw, recovery, wrap)
            }
        }
        Err(failure) => Err(*not_acquired(site.segment(), wait, failure)),
    }
}

/// [`finish_acquire`] of an acquisition that took the lock from a dead holder, found it
/// poisoned, or found the segment's file shrunk (boxed: see `finish_acquire`).
#[allow(
    clippy::unnecessary_box_returns,
    reason = "boxed so that the caller's result stays in registers (see `finish_acquire`)"
)]
#[cold]
#[inline(never)]
fn acquired_unclean<'a, G, E: AcquireError<G>>(
    segment: &'a Segment,
    slot: &LockSlot,
    intact: bool,
    raw: RawGuard<'a>,
    recovery: Recovery,
    wrap: impl FnOnce(RawGuard<'a>, Recovery) -> G,
) -> Box<Result<G, E>> {
    // Pages of the segment were lost to a file shrunk under this mapping (as far as the lock
    // must know: `intact` is its site's answer). If the lock word's page was among them, what
    // was taken is a private copy that excludes no one; if not, it is the real lock, and is
    // released as it was found (consistent or not).
    if !intact {
        raw.unlock_unrepaired();
        return Box::new(Err(shrunk_under(segment).into()));
    }
    let poisoned = slot.is_poisoned();
    let guard = wrap(raw, recovery);
    Box::new(match recovery {
        Recovery::OwnerDied { .. } => Err(LockError::OwnerDied(guard).into()),
        Recovery::Clean if poisoned => Err(LockError::Poisoned(guard).into()),
        Recovery::Clean => Ok(guard),
    })
}

/// The error of a lock whose segment's file was shrunk under this process's mapping: pages
/// it reads may be private zeros (the segment's own error, if it has one, as the source).
#[cold]
pub(crate) fn shrunk_under<G>(segment: &Segment) -> LockError<G> {
    let source = segment.check_intact().err().map(|err| Box::new(err) as _);
    LockError::Unavailable {
        name: segment.name().clone(),
        detail: "the segment's file was shrunk under this process's mapping".to_owned(),
        source,
    }
}

/// [`finish_acquire`] of an acquisition that failed (boxed: see `finish_acquire`).
#[allow(
    clippy::unnecessary_box_returns,
    reason = "boxed so that the caller's result stays in registers (see `finish_acquire`)"
)]
#[cold]
#[inline(never)]
fn not_acquired<G, E: AcquireError<G>>(
    segment: &Segment,
    wait: Wait,
    failure: RawFailure,
) -> Box<E> {
    let name = segment.name().clone();
    let err = match failure {
        RawFailure::WouldBlock => TryLockError::WouldBlock { name },
        RawFailure::TimedOut => TryLockError::Timeout {
            name,
            waited: match wait {
                Wait::For(d) => d,
                Wait::Forever | Wait::Never => Duration::ZERO,
            },
        },
        RawFailure::Unrecoverable => LockError::Unrecoverable { name }.into(),
        RawFailure::Deadlock => LockError::WouldDeadlock { name }.into(),
        RawFailure::Damaged(state) => LockError::Corrupt { name, state }.into(),
    };
    Box::new(E::from_try(err))
}

/// The outcome of an acquisition that waits for ever, which can be neither `WouldBlock` nor
/// `Timeout`: as a [`LockError`].
#[inline]
pub(crate) fn blocking<G>(outcome: Result<G, TryLockError<G>>) -> Result<G, LockError<G>> {
    outcome.map_err(LockError::from_try)
}

/// The error an acquisition reports: a [`TryLockError`] from one that may give up, a
/// [`LockError`] from one that waits for ever. [`acquire`] builds its outcome as the caller's
/// type at once: converting a `Result<G, TryLockError<G>>` afterwards ([`blocking`]) copies
/// the guard through the stack, and the loads of the copy stall on the stores that just built
/// it (measured: 19 ns a lock and unlock against 13 ns, depending on the caller's code).
pub(crate) trait AcquireError<G>: From<LockError<G>> {
    /// The error of an acquisition that failed, as [`TryLockError`] describes it.
    fn from_try(err: TryLockError<G>) -> Self;
}

impl<G> AcquireError<G> for TryLockError<G> {
    fn from_try(err: TryLockError<G>) -> Self {
        err
    }
}

impl<G> AcquireError<G> for LockError<G> {
    /// Only `Lock`: an acquisition that waits for ever neither gives up nor times out.
    fn from_try(err: TryLockError<G>) -> Self {
        match err {
            TryLockError::Lock(err) => err,
            TryLockError::WouldBlock { name } | TryLockError::Timeout { name, .. } => {
                unreachable!("an acquisition of `{name}` that waits for ever gave up")
            }
        }
    }
}
