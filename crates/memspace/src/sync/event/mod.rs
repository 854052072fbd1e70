//! [`Event`]: a flag that processes wait for, like Python's `multiprocessing.Event`.

#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub(crate) use self::redis::RedisEvent;
#[cfg(not(feature = "redis"))]
pub(crate) use crate::handle::NoRedis as RedisEvent;

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::handle::{Blueprint, Place};
#[cfg(feature = "redis")]
use crate::redis::{FirstData, Init};
use crate::segment::{Kind, Segment, SegmentName, SegmentOptions};
use crate::sys::{self, Woken};

#[repr(C)]
struct EventArea {
    /// 0: clear, 1: set. Waiters sleep on this word.
    flag: AtomicU32,
    /// How many waiters sleep on `flag` (`sys::futex_wait_counted`): `set` wakes them only if
    /// there are any.
    sleepers: AtomicU32,
}

// SAFETY: `#[repr(C)]`, two `AtomicU32`s: any bits are a valid value, mutation is atomic, and
// it owns nothing and needs no `Drop`.
#[allow(unsafe_code)]
unsafe impl crate::shm_safe::ShmSafe for EventArea {}

/// A flag shared by threads and processes: [`set`](Event::set) wakes every waiter.
///
/// An event has no owner, so nothing is left to recover when a participant dies: a waiter
/// killed while waiting simply stops waiting, and a setter killed after `set` has set it.
/// (`set` makes the system call that wakes waiters only if some are counted asleep; one
/// killed asleep stays counted, so every later `set` makes the call.)
///
/// A name `redis://HOST:PORT/NAME` puts the event on a Redis server: waiters then poll it
/// (every 2 ms, backing off to 50 ms), and every method reports an unreachable server as an
/// error. In shared memory the methods never fail.
///
/// On Redis every method can also fail with
/// [`Error::RedisUnreachable`](crate::Error::RedisUnreachable), or with
/// [`OpenError::NotFound`](crate::OpenError::NotFound) or
/// [`OpenError::Replaced`](crate::OpenError::Replaced) once the event was removed (or removed and
/// created again) through another handle (see [`crate::backend`]).
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use std::time::Duration;
/// use memspace::sync::Event;
///
/// let ready = Event::new()?;
/// assert!(!ready.wait_timeout(Duration::from_millis(1))?);
/// ready.set()?;
/// assert!(ready.wait_timeout(Duration::ZERO)?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Event {
    place: Place<RedisEvent>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Debug` never waits: a Redis event's flag is not asked of the server.
        let mut out = f.debug_struct("Event");
        out.field("name", self.name());
        if let Place::Shm(segment) = &self.place {
            out.field("set", &Self::is_set_in(segment));
        }
        out.finish_non_exhaustive()
    }
}

impl Event {
    /// Creates an anonymous event, clear, removed when its last user drops it.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn new() -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), true)
    }

    /// Creates the event `name`, clear; it persists until removed.
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists),
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName), or what the system refuses.
    pub fn create(name: &str) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, false)
    }

    /// The event at `place`.
    fn at(place: Place<RedisEvent>) -> Self {
        Event { place }
    }

    open_constructors!(Kind::Event, "event", create_in);

    fn create_segment(name: &SegmentName, anonymous: bool) -> Result<Self> {
        let options = SegmentOptions::control_only();
        let blueprint = Blueprint {
            // The flag, clear.
            #[cfg(feature = "redis")]
            redis: Init {
                first: FirstData::String(b"0"),
                ..Init::default()
            },
            ..Blueprint::untyped(Kind::Event, &options, anonymous)
        };
        let place = Place::create(name, &blueprint, |segment| {
            segment
                .kind_area::<EventArea>()
                .flag
                .store(0, Ordering::Relaxed);
            Ok(())
        })?;
        Ok(Event { place })
    }

    fn flag(segment: &Segment) -> &AtomicU32 {
        &segment.kind_area::<EventArea>().flag
    }

    /// Sets the flag and wakes every waiter, in every process.
    ///
    /// # Errors
    ///
    /// In shared memory, [`Error::Corrupt`](crate::Error::Corrupt) if another process shrank
    /// the segment's file under this process's mapping. On Redis,
    /// [`Error::RedisUnreachable`](crate::Error::RedisUnreachable) if the server cannot be
    /// reached; [`OpenError::NotFound`](crate::OpenError::NotFound) if the event was removed,
    /// [`OpenError::Replaced`](crate::OpenError::Replaced) if it was removed and created again
    /// since this handle opened it. ([`is_set`](Event::is_set) and the waits also report
    /// [`Error::Corrupt`](crate::Error::Corrupt) if the flag key is missing; setting or
    /// clearing writes it anew.)
    pub fn set(&self) -> Result<()> {
        match self.place.as_ref() {
            Place::Shm(segment) => {
                let area = segment.kind_area::<EventArea>();
                area.flag.store(1, Ordering::Release);
                // The store went nowhere if the flag's page was lost to a shrunk file.
                segment.check_intact()?;
                sys::futex_wake_counted(&area.flag, &area.sleepers, u32::MAX);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Place::Redis(event) => event.store(true),
        }
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// As [`Event::set`].
    pub fn clear(&self) -> Result<()> {
        match self.place.as_ref() {
            Place::Shm(segment) => {
                Self::flag(segment).store(0, Ordering::Release);
                segment.check_intact()
            }
            #[cfg(feature = "redis")]
            Place::Redis(event) => event.store(false),
        }
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    ///
    /// As [`Event::set`].
    pub fn is_set(&self) -> Result<bool> {
        match self.place.as_ref() {
            Place::Shm(segment) => Self::is_set_in(segment),
            #[cfg(feature = "redis")]
            Place::Redis(event) => event.is_set(),
        }
    }

    /// Sleeps while the flag is clear, at most `timeout`.
    fn sleep(segment: &Segment, timeout: Option<Duration>) -> Woken {
        let area = segment.kind_area::<EventArea>();
        sys::futex_wait_counted(&area.flag, &area.sleepers, 0, timeout, || {
            segment.is_intact()
        })
    }

    /// Reads the flag; an error if its page was lost to a file shrunk under this process's
    /// mapping (the zeros read then are nobody's flag, and a futex on them is never woken).
    fn is_set_in(segment: &Segment) -> Result<bool> {
        let set = Self::flag(segment).load(Ordering::Acquire) != 0;
        segment.check_intact()?;
        Ok(set)
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// As [`Event::set`]: a Redis waiter reports the server becoming unreachable instead of
    /// waiting on.
    pub fn wait(&self) -> Result<()> {
        match self.place.as_ref() {
            Place::Shm(segment) => {
                while !Self::is_set_in(segment)? {
                    Self::sleep(segment, None);
                }
                Ok(())
            }
            #[cfg(feature = "redis")]
            Place::Redis(event) => event.wait(None).map(drop),
        }
    }

    /// Waits at most `timeout` for the flag; returns whether it is set.
    ///
    /// # Errors
    ///
    /// As [`Event::wait`].
    #[must_use = "the result says whether the event was set or the wait timed out"]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        let segment = match self.place.as_ref() {
            Place::Shm(segment) => segment,
            #[cfg(feature = "redis")]
            Place::Redis(event) => return event.wait(Some(timeout)),
        };
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if Self::is_set_in(segment)? {
                return Ok(true);
            }
            let remaining = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Self::is_set_in(segment),
                },
                None => None,
            };
            if Self::sleep(segment, remaining) == Woken::TimedOut {
                return Self::is_set_in(segment);
            }
        }
    }

    place_accessors!("event");
}

serialize_as_name!(Event);

/// What `inspect` shows of an event.
pub(crate) fn describe(segment: &Segment) -> Vec<(&'static str, String)> {
    let set = segment
        .kind_area::<EventArea>()
        .flag
        .load(Ordering::Acquire)
        != 0;
    vec![("set", if set { "yes" } else { "no" }.to_owned())]
}
