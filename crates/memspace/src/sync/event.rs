//! [`Event`]: a flag that processes wait for, like Python's `multiprocessing.Event`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::redis::{Object, RedisEvent};
use crate::segment::{Kind, Segment, SegmentName, SegmentOptions};
use crate::sys::{self, Woken};

#[repr(C)]
pub(crate) struct EventArea {
    /// 0: clear, 1: set. Waiters sleep on this word.
    flag: AtomicU32,
}

/// A flag shared by threads and processes: [`set`](Event::set) wakes every waiter.
///
/// An event has no owner, so nothing is left to recover when a participant dies: a waiter
/// killed while waiting simply stops waiting, and a setter killed after `set` has set it.
///
/// A name `redis://HOST:PORT/NAME` puts the event on a Redis server: waiters then poll it
/// (every 2 ms, backing off to 50 ms). The methods that cannot return an error retry while
/// the server is unreachable (see `# Panics`); each has a `checked_` form that reports.
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use std::time::Duration;
/// use memspace::sync::Event;
///
/// let ready = Event::new()?;
/// assert!(!ready.wait_timeout(Duration::from_millis(1)));
/// ready.set();
/// assert!(ready.wait_timeout(Duration::ZERO));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Event {
    repr: Repr,
}

/// Where the event lives.
#[derive(Clone)]
enum Repr {
    Shm(Arc<Segment>),
    Redis(RedisEvent),
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", self.name())
            .field("set", &self.checked_is_set().ok())
            .finish()
    }
}

/// How long the methods of a Redis event that cannot return an error keep retrying.
const RETRY_FOR: Duration = Duration::from_mins(1);

/// Retries `attempt` while a Redis server is unreachable; panics after [`RETRY_FOR`].
fn retrying<T>(name: &SegmentName, mut attempt: impl FnMut() -> Result<T>) -> T {
    let started = Instant::now();
    loop {
        match attempt() {
            Ok(value) => return value,
            Err(_) if started.elapsed() < RETRY_FOR => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => panic!("event `{name}`: {err}"),
        }
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
        let name = SegmentName::new(name)?;
        if name.is_redis() {
            let object = Object::create(&name, Kind::Event, &crate::redis::Init::default())?;
            return Ok(Event {
                repr: Repr::Redis(RedisEvent::new(object)),
            });
        }
        Self::create_segment(&name, false)
    }

    /// Creates the event `name` in `backend` (see [`Backend::locate`](crate::Backend::locate)).
    ///
    /// # Errors
    ///
    /// As [`Event::create`].
    pub fn create_in(backend: &crate::Backend, name: &str) -> Result<Self> {
        Self::create(&backend.locate(name))
    }

    /// Opens the event `name` in `backend`.
    ///
    /// # Errors
    ///
    /// As [`Event::open`].
    pub fn open_in(backend: &crate::Backend, name: &str) -> Result<Self> {
        Self::open(&backend.locate(name))
    }

    /// Opens the event `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind).
    pub fn open(name: &str) -> Result<Self> {
        let name = SegmentName::new(name)?;
        if name.is_redis() {
            return Ok(Event {
                repr: Repr::Redis(RedisEvent::new(Object::open(&name, Kind::Event)?)),
            });
        }
        let segment = Segment::open(&name, Some(Kind::Event))?;
        Ok(Event {
            repr: Repr::Shm(Arc::new(segment)),
        })
    }

    fn create_segment(name: &SegmentName, anonymous: bool) -> Result<Self> {
        let segment = Segment::create(
            name,
            Kind::Event,
            "",
            &SegmentOptions::control_only(),
            anonymous,
            |segment| {
                segment
                    .kind_area::<EventArea>()
                    .flag
                    .store(0, Ordering::Relaxed);
                Ok(())
            },
        )?;
        Ok(Event {
            repr: Repr::Shm(Arc::new(segment)),
        })
    }

    fn flag(segment: &Segment) -> &AtomicU32 {
        &segment.kind_area::<EventArea>().flag
    }

    /// Sets the flag and wakes every waiter, in every process.
    ///
    /// # Panics
    ///
    /// On Redis, if the server stays unreachable for a minute (use
    /// [`checked_set`](Event::checked_set) to handle that).
    pub fn set(&self) {
        match &self.repr {
            Repr::Shm(segment) => {
                let flag = Self::flag(segment);
                flag.store(1, Ordering::Release);
                sys::futex_wake(flag, u32::MAX);
            }
            Repr::Redis(_) => retrying(self.name(), || self.checked_set()),
        }
    }

    /// Sets the flag, or says why the server could not.
    ///
    /// # Errors
    ///
    /// [`Error::RedisUnreachable`](crate::Error::RedisUnreachable) on Redis; never in shared
    /// memory.
    pub fn checked_set(&self) -> Result<()> {
        match &self.repr {
            Repr::Shm(_) => {
                self.set();
                Ok(())
            }
            Repr::Redis(event) => event.store(true),
        }
    }

    /// Clears the flag.
    ///
    /// # Panics
    ///
    /// As [`Event::set`].
    pub fn clear(&self) {
        match &self.repr {
            Repr::Shm(segment) => Self::flag(segment).store(0, Ordering::Release),
            Repr::Redis(event) => retrying(self.name(), || event.store(false)),
        }
    }

    /// Whether the flag is set.
    ///
    /// # Panics
    ///
    /// As [`Event::set`].
    #[must_use]
    pub fn is_set(&self) -> bool {
        match &self.repr {
            Repr::Shm(segment) => Self::flag(segment).load(Ordering::Acquire) != 0,
            Repr::Redis(event) => retrying(self.name(), || event.is_set()),
        }
    }

    /// Whether the flag is set, or why the server could not say.
    ///
    /// # Errors
    ///
    /// As [`Event::checked_set`].
    pub fn checked_is_set(&self) -> Result<bool> {
        match &self.repr {
            Repr::Shm(_) => Ok(self.is_set()),
            Repr::Redis(event) => event.is_set(),
        }
    }

    /// Waits until the flag is set.
    ///
    /// # Panics
    ///
    /// As [`Event::set`].
    pub fn wait(&self) {
        let segment = match &self.repr {
            Repr::Shm(segment) => segment,
            Repr::Redis(event) => {
                retrying(self.name(), || event.wait(None));
                return;
            }
        };
        while !self.is_set() {
            sys::futex_wait(Self::flag(segment), 0, None);
        }
    }

    /// Waits at most `timeout` for the flag, or says why the server could not be asked.
    ///
    /// # Errors
    ///
    /// As [`Event::checked_set`].
    pub fn checked_wait_timeout(&self, timeout: Duration) -> Result<bool> {
        match &self.repr {
            Repr::Shm(_) => Ok(self.wait_timeout(timeout)),
            Repr::Redis(event) => event.wait(Some(timeout)),
        }
    }

    /// Waits at most `timeout` for the flag; returns whether it is set.
    ///
    /// # Panics
    ///
    /// As [`Event::set`].
    #[must_use = "the result says whether the event was set or the wait timed out"]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let segment = match &self.repr {
            Repr::Shm(segment) => segment,
            Repr::Redis(event) => return retrying(self.name(), || event.wait(Some(timeout))),
        };
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.is_set() {
                return true;
            }
            let remaining = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return self.is_set(),
                },
                None => None,
            };
            if sys::futex_wait(Self::flag(segment), 0, remaining) == Woken::TimedOut {
                return self.is_set();
            }
        }
    }

    /// The event's name (`redis://HOST:PORT/NAME` for a Redis event).
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        match &self.repr {
            Repr::Shm(segment) => segment.name(),
            Repr::Redis(event) => event.object().name(),
        }
    }

    /// Removes the event's name (for a Redis event, its keys).
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound) if it was removed already.
    pub fn unlink(&self) -> Result<()> {
        match &self.repr {
            Repr::Shm(segment) => Ok(segment.unlink()?),
            Repr::Redis(event) => event.object().remove(),
        }
    }
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
