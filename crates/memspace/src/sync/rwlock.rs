//! [`RwLock<T>`]: many readers or one writer of a plain value in shared memory, across
//! processes, that no dead participant can wedge.
//!
//! `pthread_rwlock_t` is not robust: a reader killed while holding it keeps every writer out
//! forever. This lock is built from the segment's robust mutex and a table of reader slots,
//! one per process (pid, start time, how many read guards it holds):
//!
//! * a reader takes the mutex just long enough to count itself in its slot, then releases it.
//!   A slot names its process by pid *and* start time, so a process that reuses a dead one's
//!   pid is not counted in the dead one's slot. A process keeps its slot between reads; a
//!   reader that finds every slot taken takes one whose process holds no read guard, and only
//!   when all are in use looks for dead owners;
//! * a writer takes the mutex (so no new reader can count itself in) and holds it for the
//!   whole write, after waiting until no slot counts a reader. It asks whether a reader's
//!   process is alive only while that reader keeps it waiting: at once and after each wake-up
//!   or nap (at most 50 ms), emptying the slots of dead ones;
//! * who waits for a slot to empty reads `sequence`, looks once more, and sleeps on it counted
//!   in `sleepers`; the reader whose drop takes its slot's count to zero bumps `sequence` and
//!   makes the system call that wakes the sleepers only if some are counted
//!   (`sys::futex_wake_counted`). So an uncontended read or write makes no system call;
//! * a writer killed mid-write leaves the mutex "owner died": the next locker is told. Readers
//!   are then told too ([`LockError::OwnerDied`] with a read guard: the value may be torn)
//!   until a writer repairs it and calls [`RwLockWriteGuard::mark_consistent`].
//!
//! # Safety
//!
//! The value lives at `DATA_START` of the segment, inside the first mapping, so its address is
//! fixed for the handle's lifetime. `T: Pod` makes every bit pattern a valid `T`. Shared
//! references exist only while the calling process is counted in a reader slot, and the
//! mutable reference only while the calling thread holds the mutex *and* no slot counts a
//! reader;
//! every process that follows this protocol therefore reads only while nobody writes.

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::{LockError, RawGuard, TryLockError, acquire, blocking, plain, shrunk_under};
use crate::error::Result;
use crate::handle::Place;
use crate::segment::{self, Kind, Segment, SegmentName};
use crate::shm_safe::ShmSafe;
use crate::sys::{self, ThreadStamp, Wait};

/// How many processes can read at once (a reader waits for a slot whose process reads
/// nothing).
pub(crate) const READER_SLOTS: usize = 64;
/// How often a waiting writer checks that the readers it waits for are alive.
const LIVENESS_INTERVAL: Duration = Duration::from_millis(50);

#[repr(C)]
struct ReaderSlot {
    pid: AtomicU32,
    readers: AtomicU32,
    start_time: AtomicU64,
    /// The namespaces in which `pid` and `start_time` mean something (`ThreadStamp`): a slot
    /// of other namespaces is never judged dead from here.
    namespaces: AtomicU64,
}

#[repr(C)]
struct RwLockArea {
    /// Size and alignment of the value (`plain::ValueShape`).
    shape: [AtomicU64; 2],
    /// Bumped whenever a reader's drop takes its slot's count to zero; waiting writers (and
    /// readers waiting for a slot) sleep on it.
    sequence: AtomicU32,
    /// 1 after a writer died holding the lock, until a writer marks the value consistent.
    writer_died: AtomicU32,
    /// How many sleep on `sequence`: a slot that empties wakes them only if there are any.
    sleepers: AtomicU32,
    reserved: AtomicU32,
    slots: [ReaderSlot; READER_SLOTS],
}

impl ReaderSlot {
    /// Whether it is the slot of the process `me` (its pid, start time and namespaces).
    #[inline]
    fn belongs_to(&self, me: ThreadStamp) -> bool {
        self.pid.load(Ordering::Acquire) == me.pid
            && self.start_time.load(Ordering::Relaxed) == me.start
            && self.namespaces.load(Ordering::Relaxed) == me.namespaces
    }

    /// Whether it counts a read guard of a process.
    #[inline]
    fn is_busy(&self) -> bool {
        self.pid.load(Ordering::Acquire) != 0 && self.readers.load(Ordering::Acquire) > 0
    }

    /// Whether it counts no read guard (free, or its process reads nothing now).
    #[inline]
    fn is_idle(&self) -> bool {
        !self.is_busy()
    }
}

// SAFETY: `#[repr(C)]` of fixed-width atomics and an array of `#[repr(C)]` reader slots of
// atomics: one layout in every process, any bits are a valid value, mutation is atomic, and
// it owns nothing and needs no `Drop`.
unsafe impl ShmSafe for RwLockArea {}

const _: () = assert!(size_of::<RwLockArea>() as u64 <= crate::segment::KIND_SIZE);
// The slots' place, which tests that write a slot into a segment's file rely on.
const _: () =
    assert!(std::mem::offset_of!(RwLockArea, slots) == 32 && size_of::<ReaderSlot>() == 24);

/// A reader-writer lock around a value of plain data (`T: Pod`) in shared memory.
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::sync::RwLock;
///
/// let config = RwLock::new([0u32; 4])?;
/// config.write()?[0] = 7;
/// let a = config.read()?;
/// let b = config.read()?;
/// assert_eq!(a[0] + b[0], 14);
/// # Ok(())
/// # }
/// ```
pub struct RwLock<T> {
    place: Place,
    value: NonNull<T>,
    _type: PhantomData<T>,
}

// SAFETY: the value is only reached through guards, which follow the protocol in the module's
// `# Safety`; `T: Send + Sync` because guards in any thread read it or move values in and out.
unsafe impl<T: Pod + Send + Sync> Send for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send + Sync> Sync for RwLock<T> {}

impl<T> Clone for RwLock<T> {
    fn clone(&self) -> Self {
        RwLock {
            place: self.place.clone(),
            value: self.value,
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("name", self.place.local().name())
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T: Pod> RwLock<T> {
    /// An anonymous lock around `value`, removed when its last user drops it.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn new(value: T) -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), value, true)
    }

    /// Creates the lock `name` around `value`; it persists until removed.
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists), [`OpenError::InvalidName`](crate::OpenError::InvalidName), or what the system refuses.
    pub fn create(name: &str, value: T) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, value, false)
    }

    /// Opens the lock `name`, checking that it holds values of `T`'s size.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound), [`OpenError::WrongKind`](crate::OpenError::WrongKind), [`OpenError::TypeMismatch`](crate::OpenError::TypeMismatch).
    pub fn open(name: &str) -> Result<Self> {
        let (segment, value) = plain::open(&SegmentName::new(name)?, Kind::RwLock)?;
        Ok(Self::wrap(segment, value))
    }

    fn create_segment(name: &SegmentName, value: T, anonymous: bool) -> Result<Self> {
        let (segment, value) = plain::create(name, Kind::RwLock, value, anonymous, |_| {})?;
        Ok(Self::wrap(segment, value))
    }

    fn wrap(segment: Segment, value: NonNull<T>) -> Self {
        RwLock {
            place: Place::Shm(Arc::new(segment)),
            value,
            _type: PhantomData,
        }
    }

    fn area(&self) -> &RwLockArea {
        self.place.local().kind_area::<RwLockArea>()
    }

    /// Takes the mutex; an owner death is remembered in `writer_died` (until a writer repairs)
    /// and the mutex itself made consistent, so that the lock stays usable.
    fn lock_mutex(
        &self,
        wait: Wait,
    ) -> std::result::Result<(RawGuard<'_>, bool, bool), TryLockError<()>> {
        let (raw, poisoned) = match acquire(&**self.place.local(), wait, |raw, _| raw) {
            Ok(raw) => (raw, false),
            Err(TryLockError::Lock(LockError::OwnerDied(raw))) => {
                self.area().writer_died.store(1, Ordering::Release);
                if raw.mark_consistent().is_err() {
                    return Err(LockError::Unrecoverable {
                        name: self.place.local().name().clone(),
                    }
                    .into());
                }
                (raw, false)
            }
            Err(TryLockError::Lock(LockError::Poisoned(raw))) => (raw, true),
            Err(other) => return Err(other.without_guard()),
        };
        let died = self.area().writer_died.load(Ordering::Acquire) != 0;
        Ok((raw, died, poisoned))
    }

    fn deadline(timeout: Option<Duration>) -> Option<Instant> {
        timeout.and_then(|t| Instant::now().checked_add(t))
    }

    fn remaining(deadline: Option<Instant>) -> Wait {
        match deadline {
            None => Wait::Forever,
            Some(deadline) => Wait::For(deadline.saturating_duration_since(Instant::now())),
        }
    }

    fn read_until(
        &self,
        timeout: Option<Duration>,
    ) -> std::result::Result<RwLockReadGuard<'_, T>, TryLockError<RwLockReadGuard<'_, T>>> {
        let deadline = Self::deadline(timeout);
        let me = sys::this_process();
        loop {
            let (raw, died, poisoned) =
                self.lock_mutex(Self::remaining(deadline)).map_err(retype)?;
            if let Some(slot) = self.claim_slot(me) {
                slot.readers.fetch_add(1, Ordering::AcqRel);
                drop(raw);
                let guard = RwLockReadGuard {
                    lock: self,
                    slot,
                    pid: me.pid,
                };
                return match (died, poisoned) {
                    (true, _) => Err(LockError::OwnerDied(guard).into()),
                    (false, true) => Err(LockError::Poisoned(guard).into()),
                    (false, false) => Ok(guard),
                };
            }
            // Every slot belongs to a live process that reads: wait for one to empty.
            drop(raw);
            let nap = self.nap(deadline, timeout)?;
            self.sleep_unless(nap, || self.area().slots.iter().any(ReaderSlot::is_idle));
        }
    }

    /// How long a waiter sleeps before it looks again (for dead readers, or at the clock): the
    /// liveness interval, or what is left of the deadline; `Timeout` once that has passed.
    fn nap<G>(
        &self,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> std::result::Result<Duration, TryLockError<G>> {
        let Some(deadline) = deadline else {
            return Ok(LIVENESS_INTERVAL);
        };
        match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(left.min(LIVENESS_INTERVAL)),
            _ => Err(TryLockError::Timeout {
                name: self.place.local().name().clone(),
                waited: timeout.unwrap_or_default(),
            }),
        }
    }

    /// Sleeps at most `nap` on `sequence` until a slot empties, unless `done` says, once
    /// `sequence` is read, that there is nothing to wait for: a slot emptied after that read
    /// has moved `sequence`, and one emptied before it is seen by `done`.
    fn sleep_unless(&self, nap: Duration, done: impl Fn() -> bool) {
        let area = self.area();
        let seen = area.sequence.load(Ordering::Acquire);
        if !done() {
            sys::futex_wait_counted(&area.sequence, &area.sleepers, seen, Some(nap), || {
                self.place.local().is_intact()
            });
        }
    }

    /// The reader slot of the calling process `me`, claimed if needed (caller holds the
    /// mutex): an idle one that bears its pid (a dead process's, whose pid it reuses), else a
    /// free one, else one whose process holds no read guard, else one freed from a dead reader.
    ///
    /// A slot whose readers count is zero is taken from its live process safely: counts go up
    /// only in `read_until`, under the mutex, and that process's next read claims a slot again.
    fn claim_slot(&self, me: ThreadStamp) -> Option<&ReaderSlot> {
        let slots = &self.area().slots;
        if let Some(slot) = slots.iter().find(|s| s.belongs_to(me)) {
            return Some(slot);
        }
        let idle = || slots.iter().find(|s| s.is_idle());
        let same_pid = slots
            .iter()
            .find(|s| s.pid.load(Ordering::Acquire) == me.pid && s.is_idle());
        let free = || slots.iter().find(|s| s.pid.load(Ordering::Acquire) == 0);
        let slot = if let Some(slot) = same_pid.or_else(free).or_else(idle) {
            slot
        } else {
            self.reap_dead_readers();
            idle()?
        };
        slot.pid.store(0, Ordering::Release);
        slot.readers.store(0, Ordering::Relaxed);
        slot.start_time.store(me.start, Ordering::Relaxed);
        slot.namespaces.store(me.namespaces, Ordering::Relaxed);
        slot.pid.store(me.pid, Ordering::Release);
        Some(slot)
    }

    /// Frees the slots whose process counts read guards but no longer exists (caller holds the
    /// mutex). A slot that counts none is left alone: it keeps no writer out, and asking the
    /// kernel about its process costs system calls. A slot of a process of other namespaces
    /// (another container sharing `/dev/shm`) is never judged: its pid means another process
    /// here. Such a reader that dies keeps writers out; their timed calls time out.
    fn reap_dead_readers(&self) {
        let here = sys::this_process().namespaces;
        for slot in &self.area().slots {
            let pid = slot.pid.load(Ordering::Acquire);
            if slot.is_busy()
                && slot.namespaces.load(Ordering::Relaxed) == here
                && !segment::process_alive_watched(pid, slot.start_time.load(Ordering::Relaxed))
            {
                slot.readers.store(0, Ordering::Release);
                slot.pid.store(0, Ordering::Release);
            }
        }
    }

    /// Whether a slot counts a read guard.
    fn any_reader(&self) -> bool {
        self.area().slots.iter().any(ReaderSlot::is_busy)
    }

    /// Whether a slot of process `me` counts a read guard. The pid is read again after the
    /// count: a slot taken meanwhile by another process (which stores its pid before it counts
    /// itself) is not this process's.
    fn reads_in(&self, me: ThreadStamp) -> bool {
        self.area().slots.iter().any(|s| {
            s.belongs_to(me)
                && s.readers.load(Ordering::Acquire) > 0
                && s.pid.load(Ordering::Acquire) == me.pid
        })
    }

    /// The error of a writer whose process reads.
    #[cold]
    fn would_deadlock<G>(&self) -> TryLockError<G> {
        LockError::WouldDeadlock {
            name: self.place.local().name().clone(),
        }
        .into()
    }

    fn write_until(
        &self,
        timeout: Option<Duration>,
    ) -> std::result::Result<RwLockWriteGuard<'_, T>, TryLockError<RwLockWriteGuard<'_, T>>> {
        let deadline = Self::deadline(timeout);
        let me = sys::this_process();
        // A reader of this process waiting for all readers to leave would wait for itself: it
        // is looked for before waiting, for the mutex (held now: another writer may hold it
        // while it waits for that very reader) or for the readers. Uncontended, the mutex is
        // free, and one look at the slots once it is taken tells that nobody reads.
        let segment = self.place.local();
        if segment.lock_slot().is_held() && self.reads_in(me) {
            return Err(self.would_deadlock());
        }
        let (raw, died, poisoned) = self.lock_mutex(Self::remaining(deadline)).map_err(retype)?;
        if self.any_reader() {
            if self.reads_in(me) {
                drop(raw);
                return Err(self.would_deadlock());
            }
            // Readers that died holding guards are looked for only once some slot counts one,
            // and again after each nap.
            while segment.is_intact() {
                self.reap_dead_readers();
                if !self.any_reader() {
                    break;
                }
                let nap = self.nap(deadline, timeout)?;
                self.sleep_unless(nap, || !self.any_reader());
                if !self.any_reader() {
                    break;
                }
            }
        }
        // Slots read from pages lost to a shrunk file read as zeros: no reader, wrongly.
        if !segment.is_intact() {
            drop(raw);
            return Err(shrunk_under(segment).into());
        }
        let guard = RwLockWriteGuard {
            lock: self,
            raw,
            _borrow: PhantomData,
        };
        match (died, poisoned) {
            (true, _) => Err(LockError::OwnerDied(guard).into()),
            (false, true) => Err(LockError::Poisoned(guard).into()),
            (false, false) => Ok(guard),
        }
    }

    /// Waits until no writer holds the lock, and reads.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard) while a writer's death is unrepaired: the
    /// value may be torn; [`LockError::Poisoned`] (with the guard) after a writer panicked.
    pub fn read(
        &self,
    ) -> std::result::Result<RwLockReadGuard<'_, T>, LockError<RwLockReadGuard<'_, T>>> {
        blocking(self.read_until(None))
    }

    /// As [`read`](RwLock::read), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`TryLockError::Timeout`], and as [`RwLock::read`] (wrapped in [`TryLockError::Lock`]).
    pub fn try_read_for(
        &self,
        timeout: Duration,
    ) -> std::result::Result<RwLockReadGuard<'_, T>, TryLockError<RwLockReadGuard<'_, T>>> {
        self.read_until(Some(timeout))
    }

    /// Waits until no one else reads or writes, and writes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the guard: repair the value, then `mark_consistent`) if a
    /// writer died holding the lock; [`LockError::Poisoned`]; [`LockError::WouldDeadlock`] if
    /// this process holds a read guard.
    pub fn write(
        &self,
    ) -> std::result::Result<RwLockWriteGuard<'_, T>, LockError<RwLockWriteGuard<'_, T>>> {
        blocking(self.write_until(None))
    }

    /// As [`write`](RwLock::write), waiting at most `timeout` (for the lock and the readers).
    ///
    /// # Errors
    ///
    /// [`TryLockError::Timeout`], and as [`RwLock::write`] (wrapped in [`TryLockError::Lock`]).
    pub fn try_write_for(
        &self,
        timeout: Duration,
    ) -> std::result::Result<RwLockWriteGuard<'_, T>, TryLockError<RwLockWriteGuard<'_, T>>> {
        self.write_until(Some(timeout))
    }

    /// How many read guards are held now, in all processes.
    #[must_use]
    pub fn readers(&self) -> u32 {
        self.area()
            .slots
            .iter()
            .filter(|s| s.pid.load(Ordering::Acquire) != 0)
            .map(|s| s.readers.load(Ordering::Acquire))
            // Counts come from the segment: a damaged one must not overflow.
            .fold(0, u32::saturating_add)
    }

    place_accessors!("lock", local);
}

fn retype<G>(err: TryLockError<()>) -> TryLockError<G> {
    err.map_guard(|()| unreachable!("lock_mutex turns owner death and poison into flags"))
}

/// Shared access to an [`RwLock`]'s value.
#[must_use = "the read lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T> {
    lock: &'a RwLock<T>,
    /// The slot that counts this guard: it stays this process's while it counts one.
    slot: &'a ReaderSlot,
    /// After `fork`, a child holds a copy of its parent's guards; only the reader releases.
    pid: u32,
}

impl<T: Pod> Deref for RwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `value` is mapped, aligned and fixed for the handle's lifetime, which the
        // guard's borrow outlives; `T: Pod` accepts any bits; this process is counted in its
        // reader slot, so no writer that follows the protocol writes meanwhile.
        unsafe { self.lock.value.as_ref() }
    }
}

impl<T: fmt::Debug + Pod> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RwLockReadGuard").field(&**self).finish()
    }
}

impl<T> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        if self.pid != sys::pid() {
            return;
        }
        // A slot emptied by a writer that wrongly judged this process dead may have been
        // claimed by another reader since: its count is not this guard's to take.
        if !self.slot.belongs_to(sys::this_process()) {
            return;
        }
        let area = self.lock.place.local().kind_area::<RwLockArea>();
        let before = self
            .slot
            .readers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before == Ok(1) {
            area.sequence.fetch_add(1, Ordering::Release);
            sys::futex_wake_counted(&area.sequence, &area.sleepers, u32::MAX);
        }
    }
}

/// Exclusive access to an [`RwLock`]'s value.
#[must_use = "the write lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T> {
    lock: &'a RwLock<T>,
    raw: RawGuard<'a>,
    _borrow: PhantomData<&'a mut T>,
}

impl<T> RwLockWriteGuard<'_, T> {
    /// After [`LockError::OwnerDied`]: declares the value repaired, for readers and writers.
    pub fn mark_consistent(&self) {
        self.lock
            .place
            .local()
            .kind_area::<RwLockArea>()
            .writer_died
            .store(0, Ordering::Release);
    }

    /// After [`LockError::Poisoned`]: clears the poison flag for every process.
    pub fn clear_poison(&self) {
        self.raw.clear_poison();
    }
}

impl<T: Pod> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: as in `deref_mut`, shared.
        unsafe { self.lock.value.as_ref() }
    }
}

impl<T: Pod> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: `value` is mapped, aligned and fixed for the handle's lifetime; `T: Pod`
        // accepts any bits; this thread holds the mutex and no reader slot counted a reader when
        // it got it, and readers cannot count themselves in while the mutex is held; `&mut self`
        // makes this the only reference handed out by this guard.
        unsafe { { self.lock.value }.as_mut() }
    }
}

impl<T: fmt::Debug + Pod> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RwLockWriteGuard").field(&**self).finish()
    }
}

serialize_as_name!(RwLock<T> where T: Pod);

/// What `inspect` shows of a reader-writer lock.
pub(crate) fn describe(segment: &Segment) -> Vec<(&'static str, String)> {
    let area = segment.kind_area::<RwLockArea>();
    let readers: Vec<String> = area
        .slots
        .iter()
        .filter_map(|slot| {
            let (pid, n) = (
                slot.pid.load(Ordering::Relaxed),
                slot.readers.load(Ordering::Relaxed),
            );
            (pid != 0 && n > 0).then(|| format!("{pid} reads ({n})"))
        })
        .collect();
    vec![
        (
            "readers",
            if readers.is_empty() {
                "none".to_owned()
            } else {
                readers.join(", ")
            },
        ),
        (
            "writer died unrepaired",
            if area.writer_died.load(Ordering::Relaxed) != 0 {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::RwLock;
    use crate::sys;

    /// A slot left by a dead process whose pid this process now has (its start time differs),
    /// still counting the dead one's read guard. This process must count itself in a slot of
    /// its own: the dead one's is emptied by the next writer that looks for dead readers, and
    /// a count of this process's in it would go with it, under a live read guard.
    #[test]
    fn a_slot_of_a_dead_process_with_this_pid_is_not_this_process_s() {
        let lock = RwLock::new(1u64).expect("rwlock");
        let me = sys::this_process();
        let stale = &lock.area().slots[0];
        stale.start_time.store(me.start + 1, Ordering::Relaxed);
        stale.namespaces.store(me.namespaces, Ordering::Relaxed);
        stale.readers.store(1, Ordering::Relaxed);
        stale.pid.store(me.pid, Ordering::Release);

        let guard = lock.read().expect("read");
        assert!(
            !std::ptr::eq(guard.slot, stale),
            "counted in the dead process's slot"
        );
        lock.reap_dead_readers();
        assert_eq!(
            stale.readers.load(Ordering::Relaxed),
            0,
            "the dead slot was reaped"
        );
        assert_eq!(
            lock.readers(),
            1,
            "this process's count survived the reaping"
        );
        drop(guard);
        assert_eq!(lock.readers(), 0);
        *lock.write().expect("write") = 2;
        assert_eq!(*lock.read().expect("read"), 2);
    }
}
