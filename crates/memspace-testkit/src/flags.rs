//! Flags in shared memory, to order events between processes: an anonymous `Mutex<u32>` that
//! the test and its children set, add to and wait for.

use memspace::sync::{LockError, Mutex, MutexGuard};

use crate::children::{Parent, pace};
use crate::procfs;

/// A new flag: an anonymous `Mutex<u32>` holding 0, shared with children passed it.
///
/// # Panics
///
/// If it cannot be created.
pub fn new_flag() -> Mutex<u32> {
    Mutex::new(0).expect("create a flag")
}

/// Locks `mutex`, taking over from a holder that died or panicked.
///
/// # Panics
///
/// If the lock fails otherwise.
pub fn lock_recovering<T: bytemuck::Pod>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(LockError::OwnerDied(guard)) => {
            guard.mark_consistent().expect("mark the flag consistent");
            guard
        }
        Err(LockError::Poisoned(guard)) => {
            guard.clear_poison();
            guard
        }
        Err(other) => panic!("locking flag {}: {other}", mutex.name()),
    }
}

/// Sets `flag` to `value`.
pub fn set_flag(flag: &Mutex<u32>, value: u32) {
    *lock_recovering(flag) = value;
}

/// Adds `n` to `flag`; returns the new value.
pub fn add_to_flag(flag: &Mutex<u32>, n: u32) -> u32 {
    let mut value = lock_recovering(flag);
    *value += n;
    *value
}

/// The value of `flag`.
pub fn read_flag(flag: &Mutex<u32>) -> u32 {
    *lock_recovering(flag)
}

/// Waits (in the test) until `flag` is at least `value`.
///
/// # Panics
///
/// At once if the process `pid` that should set it ended.
pub fn wait_for_flag(flag: &Mutex<u32>, value: u32, pid: u32) {
    while read_flag(flag) < value {
        assert!(
            !procfs::has_ended(pid),
            "process {pid} ended before it set flag {} to {value}",
            flag.name()
        );
        pace();
    }
}

/// Waits (in a child) until `flag` is at least `value`; leaves if the test process `parent`
/// is gone.
pub fn child_wait_for_flag(flag: &Mutex<u32>, value: u32, parent: u32) {
    let parent = Parent::from(parent);
    while read_flag(flag) < value {
        parent.exit_if_gone();
        pace();
    }
}
