//! The lock slot in every segment's control page: a robust process-shared pthread mutex, plus
//! the words that let other processes see who holds it and whether a holder panicked.
//!
//! # Safety
//!
//! The slot lives in the control page of a segment, which is mapped once per process and never
//! moved or unmapped while a [`RawGuard`] borrows the segment (see `segment/mapping.rs`). That
//! is what glibc's robust list needs: it records held mutexes by address and the kernel writes
//! through that address when the holder dies. A `RawGuard` exists only while the calling thread
//! holds the mutex: it is created by a successful lock call, it is `!Send` (pthread mutexes
//! belong to a thread), and its `Drop` is the only unlock.
//!
//! State words (all `AtomicU32`, so that a garbage value is a wrong number, never UB):
//!
//! | word | meaning |
//! | --- | --- |
//! | `owner_pid` | the holder's pid, written after locking and cleared before unlocking (informational: a holder killed in between leaves it set, and the next owner overwrites it) |
//! | `poisoned` | 1 if a holder unwound from a panic while holding the lock |
//! | `owner_deaths` | how many times a holder died and the lock was recovered |
//! | `recover_pending` | 1 after the lock was reset because its segment comes from an earlier boot (a `file:` segment): the next locker is told the owner died, as the kernel would have told it had the holder died in this boot |

#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::shm_safe::ShmSafe;
use crate::sys::{self, LockOutcome, PthreadMutex, Wait};

/// The lock slot at offset 128 of every segment.
#[repr(C, align(64))]
pub(crate) struct LockSlot {
    mutex: UnsafeCell<PthreadMutex>,
    owner_pid: AtomicU32,
    /// Unused (was the owner's tid; the pid says all that `inspect` shows).
    reserved_tid: AtomicU32,
    poisoned: AtomicU32,
    owner_deaths: AtomicU32,
    recover_pending: AtomicU32,
    reserved: AtomicU32,
}

const _: () = assert!(size_of::<PthreadMutex>() <= 48);
const _: () = assert!(size_of::<LockSlot>() == 64);

// SAFETY: the slot is `#[repr(C)]`; the mutex bytes are only ever touched by pthread calls,
// which validate the mutex kind (EINVAL) and synchronise internally with atomic operations,
// shared across processes by PTHREAD_PROCESS_SHARED; the other fields are atomics.
unsafe impl Sync for LockSlot {}
// SAFETY: as above; every bit pattern is a value (glibc reports a damaged mutex as EINVAL),
// nothing needs `Drop`, and the slot holds no pointer of ours. (glibc itself keeps robust-list
// links inside a *held* mutex; a peer that overwrites those can misdirect glibc, which is why
// segments are created mode 0600: only the owner's processes can write them.)
unsafe impl ShmSafe for LockSlot {}

/// How an acquisition went, when it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The previous holder released the lock normally.
    Clean,
    /// The previous holder died holding it; `pid` is who the slot said held it (0 if unknown).
    OwnerDied { pid: u32 },
}

/// Why an acquisition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawFailure {
    WouldBlock,
    TimedOut,
    Unrecoverable,
    Deadlock,
    Invalid(i32),
}

impl LockSlot {
    fn raw(&self) -> *mut PthreadMutex {
        self.mutex.get()
    }

    /// Initialises the mutex of a segment being created.
    pub(crate) fn init(&self) -> io::Result<()> {
        self.owner_pid.store(0, Ordering::Relaxed);
        self.reserved_tid.store(0, Ordering::Relaxed);
        self.poisoned.store(0, Ordering::Relaxed);
        self.owner_deaths.store(0, Ordering::Relaxed);
        self.recover_pending.store(0, Ordering::Relaxed);
        // SAFETY: the slot is in the control page of a segment that is still being created
        // (O_EXCL, not yet published as ready): no one uses this mutex yet; the memory is
        // writable, shared and aligned to 64 (the slot's alignment, checked by `Mapping::get`).
        unsafe { sys::robust_mutex_init(self.raw()) }
    }

    /// Re-initialises the mutex of a segment that was last used during an earlier boot: every
    /// holder then is gone, but the lock word may still name one, and nobody would ever wake
    /// a waiter. The caller holds the segment file's exclusive `flock` and has checked the
    /// boot id under it, so no process of this boot uses the mutex yet.
    pub(crate) fn reset_after_reboot(&self) -> io::Result<()> {
        // SAFETY: as the doc says, no thread of this boot can hold or wait on this mutex: every
        // opener checks the boot id under the flock we hold before touching the lock.
        unsafe { sys::robust_mutex_init(self.raw()) }?;
        self.recover_pending.store(1, Ordering::Release);
        Ok(())
    }

    /// Locks the mutex, waiting as `wait` says.
    pub(crate) fn acquire(&self, wait: Wait) -> Result<(RawGuard<'_>, Recovery), RawFailure> {
        // SAFETY: the mutex lives in the control page, mapped at a fixed address for as long as
        // `self` is borrowed, which outlives any guard (see the module's `# Safety`).
        let outcome = unsafe { sys::robust_mutex_lock(self.raw(), wait) };
        let recovery = match outcome {
            LockOutcome::Acquired if self.recover_pending.load(Ordering::Acquire) != 0 => {
                Recovery::OwnerDied {
                    pid: self.owner_pid.load(Ordering::Relaxed),
                }
            }
            LockOutcome::Acquired => Recovery::Clean,
            LockOutcome::OwnerDied => {
                self.owner_deaths.fetch_add(1, Ordering::Relaxed);
                Recovery::OwnerDied {
                    pid: self.owner_pid.load(Ordering::Relaxed),
                }
            }
            LockOutcome::WouldBlock => return Err(RawFailure::WouldBlock),
            LockOutcome::TimedOut => return Err(RawFailure::TimedOut),
            LockOutcome::Unrecoverable => return Err(RawFailure::Unrecoverable),
            LockOutcome::Deadlock => return Err(RawFailure::Deadlock),
            LockOutcome::Invalid(errno) => return Err(RawFailure::Invalid(errno)),
        };
        self.owner_pid.store(sys::pid(), Ordering::Relaxed);
        Ok((
            RawGuard {
                slot: self,
                _not_send: PhantomData,
            },
            recovery,
        ))
    }

    /// The pid recorded as holding the lock, if any (informational: see the module docs).
    pub(crate) fn owner_pid(&self) -> Option<u32> {
        match self.owner_pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire) != 0
    }

    pub(crate) fn owner_deaths(&self) -> u32 {
        self.owner_deaths.load(Ordering::Relaxed)
    }
}

/// Proof that the calling thread holds a segment's lock; unlocks on drop.
pub(crate) struct RawGuard<'a> {
    slot: &'a LockSlot,
    /// pthread mutexes are owned by a thread: the guard must be dropped where it was made.
    _not_send: PhantomData<*const ()>,
}

impl RawGuard<'_> {
    /// After [`Recovery::OwnerDied`]: declares the protected state repaired.
    pub(crate) fn mark_consistent(&self) -> io::Result<()> {
        if self.slot.recover_pending.swap(0, Ordering::AcqRel) != 0 {
            // A reset after a reboot: the pthread mutex itself is consistent already.
            return Ok(());
        }
        // SAFETY: this guard proves the calling thread holds the mutex (see the module's
        // `# Safety`); glibc returns EINVAL if it was not acquired with EOWNERDEAD.
        unsafe { sys::robust_mutex_consistent(self.slot.raw()) }
    }

    pub(crate) fn clear_poison(&self) {
        self.slot.poisoned.store(0, Ordering::Release);
    }
}

impl Drop for RawGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Unwinding unlocks over possibly half-updated data: tell every process.
            self.slot.poisoned.store(1, Ordering::Release);
        }
        self.slot.owner_pid.store(0, Ordering::Relaxed);
        // SAFETY: this guard proves the calling thread holds the mutex. Unlock cannot fail for
        // a held error-checking mutex; if the memory was damaged meanwhile there is nothing
        // useful `drop` can do, so the error is ignored.
        let _ = unsafe { sys::robust_mutex_unlock(self.slot.raw()) };
    }
}
