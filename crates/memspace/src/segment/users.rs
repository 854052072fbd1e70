//! Who uses a segment: a table of attached processes, each identified by pid *and* start
//! time, so that a dead process is recognised even after its pid was reused.
//!
//! A process claims a slot when it maps the segment and clears it when its handle is dropped.
//! A process killed with SIGKILL leaves its slot behind; everyone treats such a slot as free
//! once its process is gone (`is_alive`). This is what lets an anonymous segment be removed by
//! the last of its users, and `memspace gc` remove segments all of whose users are dead.
//!
//! Processes in another pid namespace that share `/dev/shm` would look dead from here (or be
//! mistaken for someone else), and those in another time namespace would show other start
//! times than they recorded: the segment then notes that it has foreign users, and neither its
//! last user here nor `gc` removes it. Forked children inherit their parent's mapping without
//! claiming a slot of their own.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::Segment;
use crate::shm_safe::ShmSafe;
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

// SAFETY: `#[repr(C)]` arrays of `#[repr(C)]` slots of fixed-width atomics: one layout in
// every process, every bit pattern valid (a slot with garbage reads as some pid, judged alive
// or dead like any other), atomic mutation only, nothing owned, no `Drop`.
#[allow(unsafe_code)]
unsafe impl ShmSafe for Users {}
// SAFETY: `#[repr(C)]` of fixed-width atomics only (the boot id, a count, reserved words):
// every bit pattern valid, atomic mutation only, nothing owned, no `Drop`.
#[allow(unsafe_code)]
unsafe impl ShmSafe for Meta {}

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
/// is a leak `gc` collects later, one removed under a live user is lost data. A process whose
/// main thread ended while others run on is alive (`sys::process_liveness`).
pub(crate) fn is_alive(pid: u32, start_time: u64) -> bool {
    match sys::process_liveness(pid) {
        sys::Liveness::Gone => false,
        sys::Liveness::Running {
            start: Some(started),
        } => start_time == 0 || started == start_time,
        sys::Liveness::Running { start: None } => true,
    }
}

impl UserSlot {
    /// Frees the slot if it still belongs to `pid`. The start time is forgotten first: a
    /// process that claims the slot next is, until it stores its own, "pid alive, start
    /// unknown", never mistaken for dead.
    fn release(&self, pid: u32) {
        self.start_time.store(0, Ordering::Release);
        let _ = self
            .pid
            .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
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
            slot.release(pid);
        }
    }

    /// Frees the slots of processes that no longer exist.
    pub(crate) fn reap(&self) {
        for slot in &self.slots {
            let pid = slot.pid.load(Ordering::Acquire);
            if pid != 0 && !is_alive(pid, slot.start_time.load(Ordering::Acquire)) {
                slot.release(pid);
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

impl Segment {
    /// Claims a slot in the table of users (see the module docs).
    pub(super) fn attach(&mut self) {
        self.note_user_namespace();
        let pid = sys::pid();
        let start_time = sys::process_start_time(pid).unwrap_or(0);
        match self.users_table().attach(pid, start_time) {
            Some(index) => self.user = Some((index, pid)),
            None => {
                self.meta().untracked_users.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The processes recorded as attached to the segment, alive or not.
    #[must_use]
    pub fn users(&self) -> Vec<User> {
        self.users_table().list()
    }

    /// How many attachments found the table of users full (those are not tracked).
    #[must_use]
    pub fn untracked_users(&self) -> u32 {
        self.meta().untracked_users.load(Ordering::Relaxed)
    }

    /// Whether a process from another pid or time namespace than the creator's (a container
    /// sharing `/dev/shm`, a process under `unshare --time`) opened the segment. Its users'
    /// pids or start times mean nothing here, so none of them is
    /// judged dead: the segment is neither removed by its last user here nor by `gc`.
    #[must_use]
    pub fn has_foreign_users(&self) -> bool {
        self.lock_slot().has_foreign_users()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Only the process that claimed the slot releases it: after `fork`, a child owns a copy
        // of its parent's handles, and must neither release the parent's slot nor remove what
        // the parent still uses.
        let Some((index, pid)) = self.user else {
            return;
        };
        if pid != sys::pid() {
            return;
        }
        let users = self.users_table();
        users.detach(index, pid);
        // A table of users lost to a shrunk file reads as empty: nothing tells who still uses
        // the segment, so it is left for `memspace gc`, which asks the file itself.
        if self.map.faulted() {
            return;
        }
        if !self.is_anonymous()
            || self.has_foreign_users()
            || users.list().iter().any(|user| user.alive)
        {
            return;
        }
        // The last user of an anonymous segment removes it, if the name still names our
        // object (someone may have removed it and created another under the same name).
        // Errors are ignored: drop cannot report them, and `memspace gc` collects what is left.
        let _ = self.unlink();
    }
}
