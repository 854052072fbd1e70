//! [`Barrier`]: `parties` threads or processes wait until all have arrived, like Python's
//! `multiprocessing.Barrier`, including its *broken* state.
//!
//! The state lives under the segment's robust lock: how many arrived in this round, who they
//! are (pid and start time), a round counter, a reset counter and a broken flag. Waiters sleep
//! on a futex sequence word bumped by every change, and wake at least every 50 ms to check that
//! the parties they wait with are alive: a party that dies inside `wait` breaks the barrier for
//! everyone instead of leaving them hanging (and so does a holder of the state lock that dies,
//! since the round's state is then unknown).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{RawGuard, lock_and_repair};
use crate::error::{Error, Result};
use crate::handle::{Blueprint, Place};
use crate::segment::{self, Kind, Segment, SegmentName, SegmentOptions};
use crate::shm_safe::ShmSafe;
use crate::sys;

/// The most parties a barrier can have.
pub const MAX_PARTIES: u32 = 64;
/// How often a waiter checks that the other parties are alive.
const LIVENESS_INTERVAL: Duration = Duration::from_millis(50);

#[repr(C)]
struct Party {
    pid: AtomicU32,
    reserved: AtomicU32,
    start_time: AtomicU64,
}

#[repr(C)]
struct BarrierArea {
    parties: AtomicU32,
    arrived: AtomicU32,
    /// Bumped when the barrier trips.
    round: AtomicU32,
    /// Bumped by `reset`.
    resets: AtomicU32,
    broken: AtomicU32,
    /// Bumped by every change; waiters sleep on it.
    sequence: AtomicU32,
    waiting: [Party; MAX_PARTIES as usize],
}

// SAFETY: `#[repr(C)]` of fixed-width atomics and an array of `#[repr(C)]` party slots of
// atomics: one layout in every process, any bits are a valid value, mutation is atomic, and
// it owns nothing and needs no `Drop`.
#[allow(unsafe_code)]
unsafe impl ShmSafe for BarrierArea {}

const _: () = assert!(size_of::<BarrierArea>() as u64 <= crate::segment::KIND_SIZE);

/// Why [`Barrier::wait`] did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier is broken: aborted, reset while waiting, timed out or lost a party. Call
    /// [`Barrier::reset`] to use it again.
    #[error("barrier `{name}` is broken; reset it to use it again")]
    Broken {
        /// The barrier.
        name: SegmentName,
    },
    /// This wait timed out; the barrier is now broken for the other parties too.
    #[error(
        "barrier `{name}`: not every party arrived within {waited:?}; the barrier is now broken"
    )]
    Timeout {
        /// The barrier.
        name: SegmentName,
        /// How long the caller waited.
        waited: Duration,
    },
    /// A party died while waiting; the barrier is now broken.
    #[error("barrier `{name}`: process {pid} died while waiting; the barrier is now broken")]
    PartyDied {
        /// The barrier.
        name: SegmentName,
        /// The dead party.
        pid: u32,
    },
    /// The barrier's segment or lock failed.
    #[error(transparent)]
    Other(#[from] Error),
}

/// A barrier for threads and processes.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), memspace::sync::BarrierError> {
/// use memspace::sync::Barrier;
///
/// let alone = Barrier::new(1)?;
/// assert_eq!(alone.wait()?, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Barrier {
    place: Place,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("name", self.place.local().name())
            .field("parties", &self.parties())
            .field("waiting", &self.waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

impl Barrier {
    /// An anonymous barrier for `parties` (1 to 64) parties.
    ///
    /// # Errors
    ///
    /// [`BarrierError::Other`] wrapping [`Error::Full`] if `parties` is 0 or more than
    /// [`MAX_PARTIES`]; what the system refuses when creating the segment.
    pub fn new(parties: u32) -> std::result::Result<Self, BarrierError> {
        Self::create_segment(&SegmentName::anonymous(), parties, true)
    }

    /// Creates the barrier `name` for `parties` parties; it persists until removed.
    ///
    /// # Errors
    ///
    /// As [`Barrier::new`], and [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists).
    pub fn create(name: &str, parties: u32) -> std::result::Result<Self, BarrierError> {
        Self::create_segment(
            &SegmentName::new(name).map_err(Error::from)?,
            parties,
            false,
        )
    }

    /// Opens the barrier `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind).
    pub fn open(name: &str) -> Result<Self> {
        Ok(Barrier {
            place: Place::open(name, Kind::Barrier)?,
        })
    }

    fn create_segment(
        name: &SegmentName,
        parties: u32,
        anonymous: bool,
    ) -> std::result::Result<Self, BarrierError> {
        if !(1..=MAX_PARTIES).contains(&parties) {
            return Err(Error::Full {
                name: name.clone(),
                needed: u64::from(parties),
                max_size: u64::from(MAX_PARTIES),
            }
            .into());
        }
        let options = SegmentOptions::control_only();
        let blueprint = Blueprint::untyped(Kind::Barrier, &options, anonymous);
        let place = Place::create(name, &blueprint, |segment| {
            segment
                .kind_area::<BarrierArea>()
                .parties
                .store(parties, Ordering::Relaxed);
            Ok(())
        })?;
        Ok(Barrier { place })
    }

    fn area(&self) -> &BarrierArea {
        self.place.local().kind_area::<BarrierArea>()
    }

    /// Takes the state lock; if a holder died, the round's state is unknown: break it.
    fn lock_state(&self) -> Result<RawGuard<'_>> {
        lock_and_repair(&**self.place.local(), |held| {
            self.break_locked(held);
            Ok(())
        })
    }

    fn break_locked(&self, _held: &RawGuard<'_>) {
        let area = self.area();
        area.broken.store(1, Ordering::Release);
        area.sequence.fetch_add(1, Ordering::Release);
    }

    fn wake_all(&self) {
        sys::futex_wake(&self.area().sequence, u32::MAX);
    }

    /// Waits until every party has called `wait`; returns this party's arrival index
    /// (0 to `parties − 1`, different for each).
    ///
    /// # Errors
    ///
    /// [`BarrierError::Broken`] if the barrier is or becomes broken (aborted, reset, another
    /// party timed out or died); [`BarrierError::PartyDied`] if this caller saw a party die.
    pub fn wait(&self) -> std::result::Result<u32, BarrierError> {
        self.wait_until(None)
    }

    /// As [`wait`](Barrier::wait), for at most `timeout`; a timeout breaks the barrier for
    /// everyone (as in Python).
    ///
    /// # Errors
    ///
    /// [`BarrierError::Timeout`], and as [`Barrier::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> std::result::Result<u32, BarrierError> {
        self.wait_until(Some((Instant::now().checked_add(timeout), timeout)))
    }

    fn wait_until(
        &self,
        deadline: Option<(Option<Instant>, Duration)>,
    ) -> std::result::Result<u32, BarrierError> {
        let area = self.area();
        let name = || self.place.local().name().clone();
        let (index, round, resets, mut seen) = {
            let held = self.lock_state()?;
            if area.broken.load(Ordering::Acquire) != 0 {
                return Err(BarrierError::Broken { name: name() });
            }
            let parties = area.parties.load(Ordering::Relaxed).clamp(1, MAX_PARTIES);
            let index = area.arrived.load(Ordering::Relaxed).min(parties - 1);
            if index + 1 == parties {
                area.arrived.store(0, Ordering::Relaxed);
                area.round.fetch_add(1, Ordering::Release);
                area.sequence.fetch_add(1, Ordering::Release);
                drop(held);
                self.wake_all();
                return Ok(index);
            }
            let me = &area.waiting[index as usize];
            let pid = sys::pid();
            me.start_time
                .store(sys::process_start_time(pid).unwrap_or(0), Ordering::Relaxed);
            me.pid.store(pid, Ordering::Relaxed);
            area.arrived.store(index + 1, Ordering::Relaxed);
            (
                index,
                area.round.load(Ordering::Relaxed),
                area.resets.load(Ordering::Relaxed),
                area.sequence.load(Ordering::Acquire),
            )
        };
        loop {
            let nap = match deadline {
                Some((Some(deadline), waited)) => {
                    match deadline.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => left.min(LIVENESS_INTERVAL),
                        _ => {
                            let held = self.lock_state()?;
                            if area.round.load(Ordering::Acquire) != round {
                                return Ok(index);
                            }
                            self.break_locked(&held);
                            drop(held);
                            self.wake_all();
                            return Err(BarrierError::Timeout {
                                name: name(),
                                waited,
                            });
                        }
                    }
                }
                _ => LIVENESS_INTERVAL,
            };
            sys::futex_wait(&area.sequence, seen, Some(nap));
            let held = self.lock_state()?;
            if area.round.load(Ordering::Acquire) != round {
                return Ok(index);
            }
            if area.broken.load(Ordering::Acquire) != 0
                || area.resets.load(Ordering::Acquire) != resets
            {
                return Err(BarrierError::Broken { name: name() });
            }
            let arrived = area.arrived.load(Ordering::Relaxed).min(MAX_PARTIES);
            let dead = area.waiting[..arrived as usize].iter().find_map(|party| {
                let pid = party.pid.load(Ordering::Relaxed);
                (!segment::process_alive_watched(pid, party.start_time.load(Ordering::Relaxed)))
                    .then_some(pid)
            });
            if let Some(pid) = dead {
                self.break_locked(&held);
                drop(held);
                self.wake_all();
                return Err(BarrierError::PartyDied { name: name(), pid });
            }
            seen = area.sequence.load(Ordering::Acquire);
        }
    }

    /// Breaks the barrier: every waiter, and every later `wait`, gets
    /// [`BarrierError::Broken`] until [`reset`](Barrier::reset).
    ///
    /// # Errors
    ///
    /// If the segment's lock fails.
    pub fn abort(&self) -> Result<()> {
        let held = self.lock_state()?;
        self.break_locked(&held);
        drop(held);
        self.wake_all();
        Ok(())
    }

    /// Returns the barrier to its empty, unbroken state; parties waiting now get
    /// [`BarrierError::Broken`].
    ///
    /// # Errors
    ///
    /// If the segment's lock fails.
    pub fn reset(&self) -> Result<()> {
        let held = self.lock_state()?;
        let area = self.area();
        area.arrived.store(0, Ordering::Relaxed);
        area.broken.store(0, Ordering::Relaxed);
        area.resets.fetch_add(1, Ordering::Release);
        area.sequence.fetch_add(1, Ordering::Release);
        drop(held);
        self.wake_all();
        Ok(())
    }

    /// How many parties must arrive.
    #[must_use]
    pub fn parties(&self) -> u32 {
        self.area().parties.load(Ordering::Relaxed)
    }

    /// How many parties are waiting now.
    #[must_use]
    pub fn waiting(&self) -> u32 {
        self.area().arrived.load(Ordering::Relaxed)
    }

    /// Whether the barrier is broken.
    #[must_use]
    pub fn is_broken(&self) -> bool {
        self.area().broken.load(Ordering::Acquire) != 0
    }

    place_accessors!("barrier", local);
}

serialize_as_name!(Barrier);

/// What `inspect` shows of a barrier.
pub(crate) fn describe(segment: &Segment) -> Vec<(&'static str, String)> {
    let area = segment.kind_area::<BarrierArea>();
    vec![
        ("parties", area.parties.load(Ordering::Relaxed).to_string()),
        ("waiting", area.arrived.load(Ordering::Relaxed).to_string()),
        (
            "rounds passed",
            area.round.load(Ordering::Relaxed).to_string(),
        ),
        (
            "broken",
            if area.broken.load(Ordering::Relaxed) != 0 {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
        ),
    ]
}
