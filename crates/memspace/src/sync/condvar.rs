//! [`Condvar`]: a condition variable for processes, paired with a [`Lock`](super::Lock) or a
//! [`Mutex`](super::Mutex).
//!
//! It is a futex sequence counter, not a pthread condvar: POSIX defines no recovery for a
//! waiter killed inside `pthread_cond_wait`, and glibc's process-shared condvars have lost
//! wakeups (glibc bug 25847). A counter has no owner, so nothing needs recovering: a waiter
//! killed while asleep leaves the kernel's wait queue, and a notification goes to a waiter
//! that is still there. (A waiter killed in the instant between being woken and relocking
//! takes its `notify_one` with it, as a thread that exits there would.)
//!
//! Sleepers count themselves in a word beside the counter, and a notification makes the
//! `futex` system call only when the count is not zero (`sys::futex_wait_counted`). A waiter
//! killed while asleep leaves the count one too high for good: notifications then make the
//! call every time, as they all did before the count existed.
//!
//! Waits may wake spuriously: re-check the condition, or use [`Condvar::wait_while`].

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::LockError;
use crate::error::Result;
use crate::handle::{Blueprint, Place};
use crate::segment::{Kind, Segment, SegmentName, SegmentOptions};
use crate::shm_safe::ShmSafe;
use crate::sys::{self, Woken};

#[repr(C)]
struct CondvarArea {
    /// Bumped by every notification; waiters sleep while it holds the value they read.
    sequence: AtomicU32,
    /// How many waiters sleep on `sequence` (`sys::futex_wait_counted`): a notification
    /// makes a system call only if there are any.
    sleepers: AtomicU32,
}

// SAFETY: `#[repr(C)]`, two `AtomicU32`s: any bits are a valid value, mutation is atomic, and
// it owns nothing and needs no `Drop`.
#[allow(unsafe_code)]
unsafe impl ShmSafe for CondvarArea {}

/// Guards a [`Condvar`] can wait with: it releases the lock while it sleeps and takes it
/// again before returning. Implemented by [`LockGuard`](super::LockGuard) and
/// [`MutexGuard`](super::MutexGuard).
pub trait Relock<'a>: Sized {
    /// What the guard locks.
    type Owner: 'a;

    /// The lock this guard holds.
    fn owner(&self) -> &'a Self::Owner;

    /// Takes the lock again.
    ///
    /// # Errors
    ///
    /// As the owner's `lock`.
    fn lock_again(owner: &'a Self::Owner) -> std::result::Result<Self, LockError<Self>>;
}

/// A condition variable shared by threads and processes.
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use std::time::Duration;
/// use memspace::sync::{Condvar, Mutex};
///
/// let ready = Mutex::new(0u32)?;
/// let changed = Condvar::new()?;
/// let (guard, timed_out) = changed.wait_timeout(ready.lock()?, Duration::from_millis(1))?;
/// assert!(timed_out && *guard == 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Condvar {
    place: Place,
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar")
            .field("name", self.place.local().name())
            .finish()
    }
}

impl Condvar {
    /// Creates an anonymous condition variable, removed when its last user drops it.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn new() -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), true)
    }

    /// Creates the condition variable `name`; it persists until removed.
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists),
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName), or what the system refuses.
    pub fn create(name: &str) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, false)
    }

    /// Opens the condition variable `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind).
    pub fn open(name: &str) -> Result<Self> {
        Ok(Condvar {
            place: Place::open(name, Kind::Condvar)?,
        })
    }

    fn create_segment(name: &SegmentName, anonymous: bool) -> Result<Self> {
        let options = SegmentOptions::control_only();
        let blueprint = Blueprint::untyped(Kind::Condvar, &options, anonymous);
        let place = Place::create(name, &blueprint, |_| Ok(()))?;
        Ok(Condvar { place })
    }

    fn area(&self) -> &CondvarArea {
        self.place.local().kind_area::<CondvarArea>()
    }

    fn sequence(&self) -> &AtomicU32 {
        &self.area().sequence
    }

    /// Sleeps while `sequence` holds `seen` (no notification since), at most `timeout`.
    fn sleep(&self, seen: u32, timeout: Option<Duration>) -> Woken {
        let area = self.area();
        sys::futex_wait_counted(&area.sequence, &area.sleepers, seen, timeout, || {
            self.place.local().is_intact()
        })
    }

    /// Releases `guard`'s lock, sleeps until notified, and takes the lock again.
    ///
    /// # Errors
    ///
    /// As the lock's `lock()` when it is taken again: [`LockError::OwnerDied`] with the guard
    /// if a holder died meanwhile, and so on.
    pub fn wait<'a, G: Relock<'a>>(&self, guard: G) -> std::result::Result<G, LockError<G>> {
        let seen = self.sequence().load(Ordering::Acquire);
        let owner = guard.owner();
        drop(guard);
        self.sleep(seen, None);
        G::lock_again(owner)
    }

    /// As [`wait`](Condvar::wait), for at most `timeout`; the flag says whether it timed out.
    ///
    /// # Errors
    ///
    /// As [`Condvar::wait`].
    pub fn wait_timeout<'a, G: Relock<'a>>(
        &self,
        guard: G,
        timeout: Duration,
    ) -> std::result::Result<(G, bool), LockError<G>> {
        let seen = self.sequence().load(Ordering::Acquire);
        let owner = guard.owner();
        drop(guard);
        let woken = self.sleep(seen, Some(timeout));
        G::lock_again(owner).map(|guard| (guard, woken == Woken::TimedOut))
    }

    /// Waits while `condition` holds, re-checking it under the lock after every wakeup.
    ///
    /// # Errors
    ///
    /// As [`Condvar::wait`].
    pub fn wait_while<'a, G: Relock<'a>>(
        &self,
        mut guard: G,
        mut condition: impl FnMut(&mut G) -> bool,
    ) -> std::result::Result<G, LockError<G>> {
        while condition(&mut guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// As [`wait_while`](Condvar::wait_while), for at most `timeout` in all; the flag says
    /// whether it gave up with the condition still true.
    ///
    /// # Errors
    ///
    /// As [`Condvar::wait`].
    pub fn wait_timeout_while<'a, G: Relock<'a>>(
        &self,
        mut guard: G,
        timeout: Duration,
        mut condition: impl FnMut(&mut G) -> bool,
    ) -> std::result::Result<(G, bool), LockError<G>> {
        let deadline = Instant::now().checked_add(timeout);
        while condition(&mut guard) {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Ok((guard, true));
            }
            guard = self.wait_timeout(guard, left)?.0;
        }
        Ok((guard, false))
    }

    /// Starts a wait in two steps, for a lock that is not a [`Relock`] guard (one held by
    /// another API, or released in several steps, as a reentrant lock at depth 3): take the
    /// ticket while holding the lock, release the lock, then [`wait_ticket`]. A notification
    /// sent after the ticket was taken ends that wait, even one sent before the wait began.
    ///
    /// [`wait_ticket`]: Condvar::wait_ticket
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> memspace::Result<()> {
    /// use std::time::Duration;
    /// use memspace::sync::Condvar;
    ///
    /// let changed = Condvar::new()?;
    /// let ticket = changed.ticket();
    /// assert!(!changed.wait_ticket(ticket, Some(Duration::from_millis(1))));
    /// // A notification between the ticket and the wait is not lost.
    /// changed.notify_one();
    /// assert!(changed.wait_ticket(ticket, Some(Duration::from_secs(60))));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn ticket(&self) -> Ticket {
        Ticket(self.sequence().load(Ordering::Acquire))
    }

    /// Sleeps until a notification sent after `ticket` was taken, or until `timeout` passes
    /// (`None`: no limit). Returns whether it was notified; it may also return `true` on a
    /// spurious wakeup, so re-check the condition under the lock. A ticket may be waited on
    /// again, in slices: a notification that came between two slices ends the next at once.
    #[must_use = "a wait may end spuriously: re-check the condition"]
    pub fn wait_ticket(&self, ticket: Ticket, timeout: Option<Duration>) -> bool {
        if self.sequence().load(Ordering::Acquire) != ticket.0 {
            return true;
        }
        self.sleep(ticket.0, timeout) != Woken::TimedOut
            || self.sequence().load(Ordering::Acquire) != ticket.0
    }

    /// Wakes one waiter, in any process.
    pub fn notify_one(&self) {
        self.notify(1);
    }

    /// Wakes up to `n` sleeping waiters, in any processes. (A waiter that took its ticket but
    /// is not asleep yet, as a [`wait_ticket`](Condvar::wait_ticket) between two slices, wakes
    /// too, as from a spurious wakeup.)
    pub fn notify(&self, n: u32) {
        let area = self.area();
        area.sequence.fetch_add(1, Ordering::Release);
        sys::futex_wake_counted(&area.sequence, &area.sleepers, n);
    }

    /// Wakes every waiter, in every process.
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }

    place_accessors!("condition variable", local);
}

serialize_as_name!(Condvar);

/// The moment a two-step wait began: see [`Condvar::ticket`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u32);

/// What `inspect` shows of a condition variable.
pub(crate) fn describe(segment: &Segment) -> Vec<(&'static str, String)> {
    let notified = segment
        .kind_area::<CondvarArea>()
        .sequence
        .load(Ordering::Relaxed);
    vec![("notifications", notified.to_string())]
}
