//! Who uses a segment: a table of attached processes, each identified by pid *and* start
//! time, so that a dead process is recognised even after its pid was reused.
//!
//! A process claims a slot when it maps the segment and clears it when its handle is dropped.
//! A process killed with SIGKILL leaves its slot behind; everyone treats such a slot as free
//! once its process is gone (`is_alive`). This is what lets an anonymous segment be removed by
//! the last of its users, and `memspace gc` remove segments all of whose users are dead.
//!
//! Processes in another pid namespace that share `/dev/shm` would look dead from here (or be
//! mistaken for someone else): the segment then notes that it has foreign users, and neither its
//! last user here nor `gc` removes it. Forked children inherit their parent's mapping without
//! claiming a slot of their own.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::sys;

/// How many attached processes the table tracks.
pub(crate) const USER_SLOTS: usize = 128;

#[repr(C)]
pub(crate) struct UserSlot {
    pid: AtomicU32,
    reserved: AtomicU32,
    start_time: AtomicU64,
}

#[repr(C)]
pub(crate) struct Users {
    slots: [UserSlot; USER_SLOTS],
}

/// The metadata block at offset 192.
#[repr(C)]
pub(crate) struct Meta {
    /// `/proc/sys/kernel/random/boot_id` of the boot during which the segment was last
    /// initialised: a file-backed segment opened after a reboot has a stale lock word.
    pub(crate) boot_id: [AtomicU64; 2],
    /// Users that found the table full and are not tracked.
    pub(crate) untracked_users: AtomicU32,
    reserved: [AtomicU32; 11],
}

const _: () = assert!(size_of::<Users>() == 2048);
const _: () = assert!(size_of::<Meta>() == 64);

/// A process recorded in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks after boot (0 if not recorded yet).
    pub start_time: u64,
    /// Whether that process still exists.
    pub alive: bool,
}

/// How many of `users` still run.
pub(crate) fn users_alive(users: &[User]) -> usize {
    users.iter().filter(|user| user.alive).count()
}

/// Whether a process with this pid exists (and is not a zombie). Unknown counts as alive.
pub(crate) fn pid_alive(pid: u32) -> bool {
    sys::liveness(pid) != sys::Liveness::Gone
}

/// Whether the process `pid` that started at `start_time` (0: unknown) still runs. What cannot
/// be read (`/proc` hidden or out of file descriptors) counts as alive: a segment kept too long
/// is a leak `gc` collects later, one removed under a live user is lost data.
pub(crate) fn is_alive(pid: u32, start_time: u64) -> bool {
    match sys::liveness(pid) {
        sys::Liveness::Gone => false,
        sys::Liveness::Running {
            start: Some(started),
        } => start_time == 0 || started == start_time,
        sys::Liveness::Running { start: None } => true,
    }
}

impl Users {
    /// Claims a slot for `pid`; reaps slots of dead processes if the table is full. `None` if
    /// it stays full (the caller is then counted in `Meta::untracked_users`).
    pub(crate) fn attach(&self, pid: u32, start_time: u64) -> Option<usize> {
        for round in 0..2 {
            for (index, slot) in self.slots.iter().enumerate() {
                if slot
                    .pid
                    .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    slot.start_time.store(start_time, Ordering::Release);
                    return Some(index);
                }
            }
            if round == 0 {
                self.reap();
            }
        }
        None
    }

    /// Frees slot `index` if it still belongs to `pid`.
    pub(crate) fn detach(&self, index: usize, pid: u32) {
        if let Some(slot) = self.slots.get(index)
            && slot.pid.load(Ordering::Acquire) == pid
        {
            // Forget the start time first: a process that claims the slot next is, until it
            // stores its own, "pid alive, start unknown", never mistaken for dead.
            slot.start_time.store(0, Ordering::Release);
            let _ = slot
                .pid
                .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Frees the slots of processes that no longer exist.
    pub(crate) fn reap(&self) {
        for slot in &self.slots {
            let pid = slot.pid.load(Ordering::Acquire);
            if pid != 0 && !is_alive(pid, slot.start_time.load(Ordering::Acquire)) {
                // As in `detach`: forget the dead user's start time before freeing the slot.
                slot.start_time.store(0, Ordering::Release);
                let _ = slot
                    .pid
                    .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// Frees every slot (the segment was found to come from an earlier boot).
    pub(crate) fn clear(&self) {
        for slot in &self.slots {
            slot.pid.store(0, Ordering::Release);
            slot.start_time.store(0, Ordering::Release);
        }
    }

    /// Every process recorded in the table, alive or not.
    pub(crate) fn list(&self) -> Vec<User> {
        self.slots
            .iter()
            .filter_map(|slot| {
                let pid = slot.pid.load(Ordering::Acquire);
                let start_time = slot.start_time.load(Ordering::Acquire);
                (pid != 0).then(|| User {
                    pid,
                    start_time,
                    alive: is_alive(pid, start_time),
                })
            })
            .collect()
    }
}
