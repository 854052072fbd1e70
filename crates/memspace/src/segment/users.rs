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

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, TryLockError};

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
    judge(pid, start_time) != Verdict::Gone
}

/// What [`judge`] found of a process.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Gone,
    /// It runs, and its start time was read and is the one asked about.
    Confirmed,
    /// It runs, or seems to: its start time was not asked about or could not be read.
    Presumed,
}

/// [`is_alive`]'s look at `/proc`, telling a start time it confirmed from one it could not.
fn judge(pid: u32, start_time: u64) -> Verdict {
    match sys::process_liveness(pid) {
        sys::Liveness::Gone => Verdict::Gone,
        sys::Liveness::Running {
            start: Some(started),
        } if started == start_time => Verdict::Confirmed,
        sys::Liveness::Running { start: Some(_) } if start_time != 0 => Verdict::Gone,
        sys::Liveness::Running { .. } => Verdict::Presumed,
    }
}

/// A process [`is_alive_watched`] judged alive, and a descriptor that becomes readable when
/// it ends.
struct Watched {
    pid: u32,
    start_time: u64,
    ended: OwnedFd,
}

/// The processes one process watches (see [`is_alive_watched`]).
struct WatchList {
    /// The process whose descriptors these are: a child forked with the list inherits numbers
    /// it may since have closed or reused, and starts a list of its own.
    owner: u32,
    watched: Vec<Watched>,
}

/// This process's watch list.
static WATCHED: Mutex<WatchList> = Mutex::new(WatchList {
    owner: 0,
    watched: Vec::new(),
});

/// The most processes watched at once (one descriptor each). Once the list is full, other
/// processes are judged the way [`is_alive`] does until a watched one ends.
const WATCHED_MOST: usize = 64;

/// [`is_alive`] for a caller that asks about the same processes again and again: a queue's
/// receivers about the takers of the items in flight (as they look for items of dead takers,
/// under their lock), a semaphore about its holders while no permit is free, a reader-writer
/// lock about its readers while a writer waits, a barrier about the parties it waits for. The
/// first judgement of a process is [`is_alive`]'s (a signal to its pid and a read of its
/// `/proc/PID/stat`); if it runs, with the start time asked about, this process keeps a
/// descriptor that becomes readable when it ends (its pidfd, opened before the read, so that
/// the start time the read confirms is that of the process the descriptor watches, not of a
/// later one given its pid), and later judgements of it are one `poll` of that descriptor.
///
/// Without a start time to confirm, where the kernel has no pidfds (or refuses one), and while
/// another thread of this process is judging, this is [`is_alive`].
pub(crate) fn is_alive_watched(pid: u32, start_time: u64) -> bool {
    if start_time == 0 {
        return is_alive(pid, start_time);
    }
    let mut list = match WATCHED.try_lock() {
        Ok(list) => list,
        // Nothing panics while the list is held; it is whole whatever happened.
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return is_alive(pid, start_time),
    };
    let me = sys::pid();
    if list.owner != me {
        // Inherited through `fork`: the numbers are not this process's to poll or close.
        for inherited in std::mem::take(&mut list.watched) {
            std::mem::forget(inherited.ended);
        }
        list.owner = me;
    }
    judge_watched(&mut list.watched, pid, start_time)
}

/// [`is_alive_watched`] with the list `watched` (of this process's descriptors).
fn judge_watched(watched: &mut Vec<Watched>, pid: u32, start_time: u64) -> bool {
    if let Some(at) = watched
        .iter()
        .position(|w| (w.pid, w.start_time) == (pid, start_time))
    {
        match sys::has_ended(watched[at].ended.as_fd()) {
            Ok(false) => return true,
            // The descriptor watched this very process, whose start time was confirmed.
            Ok(true) => {
                drop(watched.swap_remove(at));
                return false;
            }
            // Not a descriptor any more (closed behind this list's back): not ours to close.
            Err(e) if sys::is_not_open(&e) => {
                std::mem::forget(watched.swap_remove(at).ended);
            }
            // The poll failed: the process is judged afresh.
            Err(_) => drop(watched.swap_remove(at)),
        }
    }
    let ended = sys::end_notifier(pid);
    let verdict = judge(pid, start_time);
    if verdict == Verdict::Confirmed
        && watched.len() < WATCHED_MOST
        && let Some(ended) = ended
    {
        watched.push(Watched {
            pid,
            start_time,
            ended,
        });
    }
    verdict != Verdict::Gone
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

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};

    use super::{Watched, judge_watched};
    use crate::sys;

    /// A child that sleeps until killed (also when a test fails), and its start time.
    struct Sleeper {
        child: Child,
        pid: u32,
        start: u64,
    }

    impl Sleeper {
        fn start() -> Self {
            let child = Command::new("sleep")
                .arg("60")
                .spawn()
                .expect("spawn sleep");
            let pid = child.id();
            let start = sys::process_start_time(pid).expect("the child's start time");
            Sleeper { child, pid, start }
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Whether the kernel gives pidfds (Linux 5.3 on): without, nothing is watched.
    fn pidfds() -> bool {
        sys::end_notifier(std::process::id()).is_some()
    }

    fn watches(watched: &[Watched], pid: u32, start_time: u64) -> bool {
        watched
            .iter()
            .any(|w| (w.pid, w.start_time) == (pid, start_time))
    }

    #[test]
    fn a_watched_process_is_alive_until_it_is_killed_and_then_dead_before_it_is_reaped() {
        if !pidfds() {
            return;
        }
        let mut sleeper = Sleeper::start();
        let (pid, start) = (sleeper.pid, sleeper.start);
        let mut watched = Vec::new();
        assert!(judge_watched(&mut watched, pid, start));
        assert!(watches(&watched, pid, start), "judged alive, so watched");
        assert!(
            judge_watched(&mut watched, pid, start),
            "judged again by its descriptor"
        );
        sleeper.child.kill().expect("SIGKILL");
        // A zombie until reaped: ended for its descriptor, as for /proc, soon after the signal.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while judge_watched(&mut watched, pid, start) {
            assert!(
                std::time::Instant::now() < deadline,
                "alive 10 s after SIGKILL"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            !watches(&watched, pid, start),
            "an ended process is no longer watched"
        );
        assert!(!judge_watched(&mut watched, pid, start));
    }

    #[test]
    fn a_process_of_another_start_time_is_dead_and_not_watched() {
        let sleeper = Sleeper::start();
        let (pid, start) = (sleeper.pid, sleeper.start);
        let mut watched = Vec::new();
        assert!(
            !judge_watched(&mut watched, pid, start + 1),
            "its pid, another process"
        );
        assert!(watched.is_empty());
        drop(sleeper);
        assert!(!judge_watched(&mut watched, pid, start));
    }
}
