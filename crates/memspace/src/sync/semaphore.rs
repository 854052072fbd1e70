//! [`Semaphore`]: counted permits shared by threads and processes, bounded or not, that come
//! back when their holder dies.
//!
//! POSIX semaphores (`sem_t`) have no `SEM_UNDO`: a process killed while holding a permit
//! loses it forever. This one keeps its state under the segment's robust lock, with a table of
//! holders (pid, start time, permits held):
//!
//! * invariant: `free + Σ held = total`;
//! * `acquire` takes a free permit and records it against the calling process;
//! * `release` returns one of the caller's permits, or, if the caller holds none (a permit
//!   handed from one process to another), one of another holder's; if nobody holds any, it
//!   adds a permit (`total + 1`), which a *bounded* semaphore refuses;
//! * permits held by processes that no longer exist are returned whenever a waiter finds none
//!   free (waiters look at least every 50 ms), and after a holder died *holding the lock*, the
//!   next locker recomputes `free = total − Σ held` before going on.
//!
//! Waiters sleep on a futex sequence word bumped by every release, counted in `sleepers`: a
//! release makes the system call that wakes one only if the count is not zero (a waiter killed
//! asleep stays counted, and every later release makes the call).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{RawGuard, lock_and_repair};
use crate::error::{Error, Result};
use crate::handle::{Blueprint, Place};
use crate::segment::{self, Kind, Segment, SegmentName, SegmentOptions};
use crate::shm_safe::ShmSafe;
use crate::sys;

/// How many processes can hold permits at once (more wait until a slot frees).
pub(crate) const HOLDER_SLOTS: usize = 64;
/// How often a waiter looks for permits held by dead processes.
const REAP_INTERVAL: Duration = Duration::from_millis(50);

#[repr(C)]
struct HolderSlot {
    pid: AtomicU32,
    reserved: AtomicU32,
    start_time: AtomicU64,
    held: AtomicU64,
}

#[repr(C)]
struct SemaphoreArea {
    free: AtomicU64,
    total: AtomicU64,
    /// `total` may never exceed it (`u64::MAX`: unbounded).
    bound: AtomicU64,
    /// Bumped by every release; waiters sleep on it.
    sequence: AtomicU32,
    /// How many waiters sleep on `sequence` (`sys::futex_wait_counted`): a release makes a
    /// system call only if there are any.
    sleepers: AtomicU32,
    holders: [HolderSlot; HOLDER_SLOTS],
}

// SAFETY: `#[repr(C)]` of fixed-width atomics and an array of `#[repr(C)]` holder slots of
// atomics: one layout in every process, any bits are a valid value, mutation is atomic, and
// it owns nothing and needs no `Drop`.
#[allow(unsafe_code)]
unsafe impl ShmSafe for SemaphoreArea {}

const _: () = assert!(size_of::<SemaphoreArea>() as u64 <= crate::segment::KIND_SIZE);

/// Why a semaphore operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SemaphoreError {
    /// `try_acquire`: no permit is free.
    #[error("semaphore `{name}` has no free permit")]
    WouldBlock {
        /// The semaphore.
        name: SegmentName,
    },
    /// `acquire_timeout`: no permit came free in time.
    #[error("semaphore `{name}` had no free permit within {waited:?}")]
    Timeout {
        /// The semaphore.
        name: SegmentName,
        /// How long the caller waited.
        waited: Duration,
    },
    /// A bounded semaphore was released more often than acquired.
    #[error("semaphore `{name}` is bounded to {bound} permits: released more often than acquired")]
    OverReleased {
        /// The semaphore.
        name: SegmentName,
        /// Its bound.
        bound: u64,
    },
    /// The lock protecting the semaphore's state or the segment failed.
    #[error(transparent)]
    Other(#[from] Error),
}

/// A counting semaphore shared by threads and processes.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), memspace::sync::SemaphoreError> {
/// use memspace::sync::Semaphore;
///
/// let slots = Semaphore::bounded(2)?;
/// let a = slots.acquire()?;
/// let _b = slots.acquire()?;
/// assert!(slots.try_acquire().is_err());
/// drop(a);
/// assert_eq!(slots.value(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Semaphore {
    place: Place,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", self.place.local().name())
            .field("value", &self.value())
            .finish()
    }
}

impl Semaphore {
    /// An anonymous semaphore with `permits` free permits; releases beyond them add permits.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn new(permits: u64) -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), permits, u64::MAX, true)
    }

    /// An anonymous *bounded* semaphore: `permits` free permits, and releasing more than were
    /// acquired is [`SemaphoreError::OverReleased`] (Python's `BoundedSemaphore`).
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn bounded(permits: u64) -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), permits, permits, true)
    }

    /// Creates the semaphore `name` with `permits` permits, bounded to them if `bounded`; it
    /// persists until removed.
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists),
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName), or what the system refuses.
    pub fn create(name: &str, permits: u64, bounded: bool) -> Result<Self> {
        let bound = if bounded { permits } else { u64::MAX };
        Self::create_segment(&SegmentName::new(name)?, permits, bound, false)
    }

    /// Opens the semaphore `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind).
    pub fn open(name: &str) -> Result<Self> {
        Ok(Semaphore {
            place: Place::open(name, Kind::Semaphore)?,
        })
    }

    fn create_segment(
        name: &SegmentName,
        permits: u64,
        bound: u64,
        anonymous: bool,
    ) -> Result<Self> {
        let options = SegmentOptions::control_only();
        let blueprint = Blueprint::untyped(Kind::Semaphore, &options, anonymous);
        let place = Place::create(name, &blueprint, |segment| {
            let area = segment.kind_area::<SemaphoreArea>();
            area.free.store(permits, Ordering::Relaxed);
            area.total.store(permits, Ordering::Relaxed);
            area.bound.store(bound, Ordering::Relaxed);
            Ok(())
        })?;
        Ok(Semaphore { place })
    }

    fn area(&self) -> &SemaphoreArea {
        self.place.local().kind_area::<SemaphoreArea>()
    }

    /// Takes the state lock, repairing the counts if a holder of it died.
    fn lock_state(&self) -> Result<RawGuard<'_>> {
        lock_and_repair(&**self.place.local(), |held| {
            self.reap_dead_holders(held);
            let area = self.area();
            let held_total = area
                .holders
                .iter()
                .map(|slot| slot.held.load(Ordering::Relaxed))
                .fold(0u64, u64::saturating_add);
            let total = area.total.load(Ordering::Relaxed).max(held_total);
            area.total.store(total, Ordering::Relaxed);
            area.free.store(total - held_total, Ordering::Relaxed);
            Ok(())
        })
    }

    /// Returns the permits of holders that no longer exist. Caller holds the state lock.
    fn reap_dead_holders(&self, _held: &RawGuard<'_>) {
        let area = self.area();
        for slot in &area.holders {
            let pid = slot.pid.load(Ordering::Relaxed);
            if pid != 0
                && !segment::process_alive_watched(pid, slot.start_time.load(Ordering::Relaxed))
            {
                let permits = slot.held.swap(0, Ordering::Relaxed);
                area.free.fetch_add(permits, Ordering::Relaxed);
                slot.pid.store(0, Ordering::Relaxed);
            }
        }
    }

    /// The calling process's holder slot, claimed if needed. Caller holds the state lock.
    fn my_slot(&self, _held: &RawGuard<'_>) -> Option<&HolderSlot> {
        let pid = sys::pid();
        let slots = &self.area().holders;
        if let Some(slot) = slots.iter().find(|s| s.pid.load(Ordering::Relaxed) == pid) {
            return Some(slot);
        }
        let slot = slots.iter().find(|s| s.pid.load(Ordering::Relaxed) == 0)?;
        slot.held.store(0, Ordering::Relaxed);
        slot.start_time
            .store(sys::process_start_time(pid).unwrap_or(0), Ordering::Relaxed);
        slot.pid.store(pid, Ordering::Relaxed);
        Some(slot)
    }

    /// One attempt: takes a permit if one is free. `Ok(None)` means wait for `sequence` to move
    /// from the value returned in `Err`-free form.
    fn try_take(&self) -> std::result::Result<Option<u32>, Error> {
        let held = self.lock_state()?;
        let area = self.area();
        if area.free.load(Ordering::Relaxed) == 0 {
            self.reap_dead_holders(&held);
        }
        if area.free.load(Ordering::Relaxed) > 0
            && let Some(slot) = self.my_slot(&held)
        {
            // Record the holder first: a death between the two stores leaves `free` one too
            // high relative to `held`, which the recount after OwnerDied corrects.
            slot.held.fetch_add(1, Ordering::Relaxed);
            area.free.fetch_sub(1, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(Some(area.sequence.load(Ordering::Acquire)))
    }

    fn acquire_until(
        &self,
        deadline: Option<Instant>,
        waited: Duration,
    ) -> std::result::Result<Permit<'_>, SemaphoreError> {
        loop {
            let Some(seen) = self.try_take()? else {
                return Ok(Permit {
                    semaphore: self,
                    pid: sys::pid(),
                });
            };
            let nap = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(REAP_INTERVAL),
                    _ => {
                        return Err(if waited.is_zero() {
                            SemaphoreError::WouldBlock {
                                name: self.place.local().name().clone(),
                            }
                        } else {
                            SemaphoreError::Timeout {
                                name: self.place.local().name().clone(),
                                waited,
                            }
                        });
                    }
                },
                None => REAP_INTERVAL,
            };
            let area = self.area();
            sys::futex_wait_counted(&area.sequence, &area.sleepers, seen, Some(nap), || {
                self.place.local().is_intact()
            });
        }
    }

    /// Waits for a free permit and takes it; the permit is released when dropped.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Other`] if the segment is damaged.
    pub fn acquire(&self) -> std::result::Result<Permit<'_>, SemaphoreError> {
        self.acquire_until(None, Duration::MAX)
    }

    /// Takes a free permit if there is one.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::WouldBlock`] if none is free.
    pub fn try_acquire(&self) -> std::result::Result<Permit<'_>, SemaphoreError> {
        self.acquire_until(Some(Instant::now()), Duration::ZERO)
    }

    /// Waits at most `timeout` for a free permit.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Timeout`] if none came free in time.
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Permit<'_>, SemaphoreError> {
        let deadline = Instant::now().checked_add(timeout);
        self.acquire_until(deadline, timeout.max(Duration::from_nanos(1)))
    }

    /// Returns a permit (one this process holds, else one another process holds, else a new
    /// one) and wakes a waiter. Pairs with [`Permit::forget`].
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::OverReleased`] for a bounded semaphore whose permits are all free.
    pub fn release(&self) -> std::result::Result<(), SemaphoreError> {
        let held = self.lock_state()?;
        let area = self.area();
        let pid = sys::pid();
        let mine = area
            .holders
            .iter()
            .find(|s| s.pid.load(Ordering::Relaxed) == pid && s.held.load(Ordering::Relaxed) > 0);
        let any = || {
            area.holders
                .iter()
                .find(|s| s.pid.load(Ordering::Relaxed) != 0 && s.held.load(Ordering::Relaxed) > 0)
        };
        if let Some(slot) = mine.or_else(any) {
            slot.held.fetch_sub(1, Ordering::Relaxed);
        } else {
            let bound = area.bound.load(Ordering::Relaxed);
            let total = area.total.load(Ordering::Relaxed);
            if total >= bound {
                return Err(SemaphoreError::OverReleased {
                    name: self.place.local().name().clone(),
                    bound,
                });
            }
            area.total.store(total + 1, Ordering::Relaxed);
        }
        area.free.fetch_add(1, Ordering::Relaxed);
        area.sequence.fetch_add(1, Ordering::Release);
        drop(held);
        sys::futex_wake_counted(&area.sequence, &area.sleepers, 1);
        Ok(())
    }

    /// The number of free permits now.
    #[must_use]
    pub fn value(&self) -> u64 {
        self.area().free.load(Ordering::Acquire)
    }

    place_accessors!("semaphore", local);
}

/// A permit taken from a [`Semaphore`]; returned when dropped.
#[must_use = "the permit is returned as soon as it is dropped"]
pub struct Permit<'a> {
    semaphore: &'a Semaphore,
    /// After `fork`, a child holds a copy of its parent's permits; only the acquirer returns.
    pid: u32,
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("semaphore", self.semaphore.name())
            .finish()
    }
}

impl Permit<'_> {
    /// Keeps the permit taken without returning it on drop: it goes back with
    /// [`Semaphore::release`] (from any process), or when this process ends.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.pid == sys::pid() {
            // Only a damaged segment can make this fail; `drop` cannot report it, and the
            // permit comes back anyway once this process has ended.
            let _ = self.semaphore.release();
        }
    }
}

serialize_as_name!(Semaphore);

/// What `inspect` shows of a semaphore.
pub(crate) fn describe(segment: &Segment) -> Vec<(&'static str, String)> {
    let area = segment.kind_area::<SemaphoreArea>();
    let bound = area.bound.load(Ordering::Relaxed);
    let holders: Vec<String> = area
        .holders
        .iter()
        .filter_map(|slot| {
            let (pid, held) = (
                slot.pid.load(Ordering::Relaxed),
                slot.held.load(Ordering::Relaxed),
            );
            (pid != 0 && held > 0).then(|| format!("{pid} holds {held}"))
        })
        .collect();
    vec![
        (
            "free permits",
            area.free.load(Ordering::Relaxed).to_string(),
        ),
        (
            "total permits",
            area.total.load(Ordering::Relaxed).to_string(),
        ),
        (
            "bound",
            if bound == u64::MAX {
                "none".to_owned()
            } else {
                bound.to_string()
            },
        ),
        (
            "holders",
            if holders.is_empty() {
                "none".to_owned()
            } else {
                holders.join(", ")
            },
        ),
    ]
}
