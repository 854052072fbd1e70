//! [`SegmentOptions`]: how a segment is created (mode, first and largest size) and which
//! existing segments an open accepts.

use super::MIN_SIZE;
use super::access::Access;
use super::header::MAX_RESERVATION;
use super::{Kind, Segment, SegmentName};
use crate::error::Error;
#[cfg(doc)]
use crate::error::OpenError;
use crate::sys;

/// How to create a segment (permissions, first size, largest size), and which existing
/// segments an open accepts.
///
/// # Whose segments are opened
///
/// A segment is written by every process that opens it, and a process that can write it can
/// change anything in it, hold its lock for ever or hand its readers crafted data. So an open
/// accepts only a segment that belongs to this process's effective user and whose mode grants
/// nothing beyond [`mode`](SegmentOptions::mode) (`0600` by default): a segment another user
/// planted under the name (`/dev/shm` is writable by everyone) is refused with
/// [`OpenError::UntrustedOwner`], and one that other users may write with
/// [`OpenError::UntrustedMode`]. A program that shares segments between users says whom it
/// trusts: [`trust_owner`](SegmentOptions::trust_owner) and a wider `mode`, then
/// [`open`](SegmentOptions::open). A handle opened that way carries the same trust to the
/// processes it is passed to.
///
/// # Examples
///
/// ```
/// use memspace::SegmentOptions;
/// let options = SegmentOptions::new().mode(0o640).max_size(1 << 30);
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    mode: u32,
    initial_size: u64,
    max_size: u64,
    trusted_owner: Option<u32>,
    lock_timeout: Option<std::time::Duration>,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SegmentOptions {
    /// Mode `0600` (this user only), 64 KiB at first, growing to at most 64 GiB.
    #[must_use]
    pub fn new() -> Self {
        SegmentOptions {
            mode: 0o600,
            initial_size: 64 << 10,
            max_size: 64 << 30,
            trusted_owner: None,
            lock_timeout: None,
        }
    }

    /// The permission bits of the backing object (`0o600` by default) when creating; when
    /// opening, the widest bits accepted: a segment whose mode grants anything beyond them is
    /// refused ([`OpenError::UntrustedMode`]).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Also opens segments owned by user `uid`, not only this process's effective user's.
    /// Whoever owns a segment can change anything in it: trust only a user you would let
    /// write into your process's data.
    #[must_use]
    pub fn trust_owner(mut self, uid: u32) -> Self {
        self.trusted_owner = Some(uid);
        self
    }

    /// Bounds how long a write of a collection made with these options (`push`, `insert`,
    /// `put`, `update`, ...) waits for the segment's lock: past `timeout` it fails with
    /// [`Error::Timeout`] and changes nothing. Without it, a write waits as long as a live
    /// process holds the lock (one that died is detected and its change repaired at once).
    ///
    /// It applies to the handles opened or created with these options, and to their clones; a
    /// handle sent to another process waits there without bound unless that process opens it
    /// with its own options. Redis objects take no lock: their writes are single atomic steps.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> memspace::Result<()> {
    /// use std::time::Duration;
    /// use memspace::{SegmentOptions, SharedList};
    ///
    /// let name = format!("doc-lock-timeout-{}", std::process::id());
    /// let patient = SegmentOptions::new().lock_timeout(Duration::from_millis(200));
    /// let list = SharedList::<u32>::create_with(&name, &patient)?;
    /// list.push(&1)?; // an `Error::Timeout` if another process held the lock for 200 ms
    /// let reader = SharedList::<u32>::open_with(&name, &patient)?;
    /// assert_eq!(reader.to_vec()?, [1]);
    /// list.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn lock_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// Opens the segment `name` (of any kind) if its owner and mode are accepted (see
    /// [Whose segments are opened](SegmentOptions#whose-segments-are-opened)); hand it to a
    /// collection's or lock's `from_segment`.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> memspace::Result<()> {
    /// use memspace::{SegmentOptions, SharedList};
    ///
    /// let name = format!("doc-trust-{}", std::process::id());
    /// let group = SegmentOptions::new().mode(0o660);
    /// SharedList::<u32>::create_with(&name, &group)?.push(&7)?;
    /// // A plain `open` accepts mode 0600 at most; this one accepts the group's bits.
    /// assert!(SharedList::<u32>::open(&name).is_err());
    /// let list = SharedList::<u32>::from_segment(group.open(&name)?)?;
    /// assert_eq!(list.to_vec()?, [7]);
    /// list.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As the collections' `open`: [`OpenError::NotFound`], [`OpenError::UntrustedOwner`],
    /// [`OpenError::UntrustedMode`], [`Error::Corrupt`], ...
    pub fn open(&self, name: &str) -> Result<Segment, Error> {
        Ok(
            Segment::open(&SegmentName::new(name)?.with_access(self.access()), None)?
                .with_lock_timeout(self.lock_timeout),
        )
    }

    /// [`SegmentOptions::open`], refusing a segment of another kind than `expected` before it is
    /// mapped (for the handles' `open_with`).
    pub(crate) fn open_kind(&self, name: &str, expected: Kind) -> Result<Segment, Error> {
        Ok(Segment::open(
            &SegmentName::new(name)?.with_access(self.access()),
            Some(expected),
        )?
        .with_lock_timeout(self.lock_timeout))
    }

    /// Opens the segment `name` as an observer, as [`inspect::observe`] does, accepting for
    /// the handles made from it (`from_segment`) the owners and modes these options accept.
    ///
    /// # Errors
    ///
    /// As [`inspect::observe`].
    ///
    /// [`inspect::observe`]: crate::inspect::observe
    pub fn observe(&self, name: &str) -> Result<Segment, Error> {
        Ok(
            Segment::open_observer(&SegmentName::new(name)?.with_access(self.access()))?
                .with_lock_timeout(self.lock_timeout),
        )
    }

    /// The bound on a write's wait for the lock ([`SegmentOptions::lock_timeout`]).
    pub(super) fn lock_wait_limit(&self) -> Option<std::time::Duration> {
        self.lock_timeout
    }

    /// What an open with these options accepts.
    pub(super) fn access(&self) -> Access {
        Access {
            owner: self.trusted_owner,
            mode: self.mode,
        }
    }

    /// The size allocated at creation, rounded up to a page (64 KiB by default).
    #[must_use]
    pub fn initial_size(mut self, bytes: u64) -> Self {
        self.initial_size = bytes;
        self
    }

    /// The largest size the segment may grow to (64 GiB by default, at most 64 TiB). Every
    /// process that maps the segment reserves this much *address space* (not memory).
    #[must_use]
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// The smallest segment ([`MIN_SIZE`]), for objects whose state fits in the kind area
    /// (locks, events, semaphores, ...).
    pub(crate) fn control_only() -> Self {
        SegmentOptions::new().initial_size(0).max_size(0)
    }

    /// The first and the largest size, whole pages, at least [`MIN_SIZE`] and at most
    /// [`MAX_RESERVATION`].
    pub(super) fn sizes(&self) -> (u64, u64) {
        let page = sys::page_size() as u64;
        let max = self.max_size.clamp(MIN_SIZE, MAX_RESERVATION);
        let max = max.next_multiple_of(page).min(MAX_RESERVATION);
        let initial = self
            .initial_size
            .clamp(MIN_SIZE, max)
            .next_multiple_of(page)
            .min(max);
        (initial, max)
    }
}
