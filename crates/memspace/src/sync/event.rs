//! [`Event`]: a flag that processes wait for, like Python's `multiprocessing.Event`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::Result;
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
    segment: Arc<Segment>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", self.segment.name())
            .field("set", &self.is_set())
            .finish()
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

    /// Opens the event `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind).
    pub fn open(name: &str) -> Result<Self> {
        let segment = Segment::open(&SegmentName::new(name)?, Some(Kind::Event))?;
        Ok(Event {
            segment: Arc::new(segment),
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
            segment: Arc::new(segment),
        })
    }

    fn flag(&self) -> &AtomicU32 {
        &self.segment.kind_area::<EventArea>().flag
    }

    /// Sets the flag and wakes every waiter, in every process.
    pub fn set(&self) {
        self.flag().store(1, Ordering::Release);
        sys::futex_wake(self.flag(), u32::MAX);
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.flag().store(0, Ordering::Release);
    }

    /// Whether the flag is set.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.flag().load(Ordering::Acquire) != 0
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        while !self.is_set() {
            sys::futex_wait(self.flag(), 0, None);
        }
    }

    /// Waits at most `timeout` for the flag; returns whether it is set.
    #[must_use = "the result says whether the event was set or the wait timed out"]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
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
            if sys::futex_wait(self.flag(), 0, remaining) == Woken::TimedOut {
                return self.is_set();
            }
        }
    }

    /// The event's segment name.
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        self.segment.name()
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
