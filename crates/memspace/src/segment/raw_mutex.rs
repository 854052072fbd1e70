//! The lock slot in every segment's control page: a futex lock whose word names the thread that
//! holds it, and when that thread started, so that any process can tell whether the holder
//! still lives.
//!
//! # The protocol
//!
//! `word` is a 64-bit word, 0 when the lock is free (or [`HANDED_OVER`]: free for a thread that
//! slept on it, see "Handing over"). Its low half names the holder: its thread id, with
//! [`WAITERS`] (bit 31) set once some thread sleeps on the lock and the marks
//! [`PROCESS_HELD`], [`FOREIGN`] and [`RELEASING`] described below. Its high half is the low
//! 32 bits of the holder's start time (clock ticks after boot; 0 if unknown). The futex calls
//! sleep and wake on the low half (the kernel compares 32 bits); every access from memspace is
//! to the whole word.
//!
//! * **Lock**: one 64-bit compare-and-swap from 0 to the caller's word. When that fails, the
//!   caller spins briefly while the holder works without waiters, then sets `WAITERS` and
//!   sleeps on the word (a *shared* futex: the kernel keys it by the page, so it reaches other
//!   processes).
//! * **Unlock**: one compare-and-swap from the caller's word back to 0 (or, to a waiter that
//!   asked, to [`HANDED_OVER`]); if a waiter set `WAITERS` (or, to a process's hold, another
//!   of its threads set `RELEASING`), a loop of compare-and-swaps from the word as last seen,
//!   then a futex wake. A holder whose word names someone else (it was judged dead and taken
//!   over) leaves it alone.
//! * **Nothing else is written** on the way of an uncontended lock and unlock by a holder of
//!   the home namespaces: its identity and start time arrive with the compare-and-swap that
//!   takes the lock and leave with the one that frees it. (The pid beside it, for `inspect`
//!   and `OwnerDied`, is written only when another thread than the last holder locks.) Each
//!   store between the two read-modify-writes would delay the second until it reached the
//!   cache (BENCHMARKS.md, "Sixth pass").
//! * **A holder that died**: a sleeper wakes after [`FIRST_CHECK`], then at least every
//!   [`CHECK_INTERVAL`], and asks whether the holder lives: the kernel first (signal 0: no such
//!   task means dead), then `/proc` (a zombie is dead; so is a thread that started at another
//!   time than the word records, because its id now belongs to someone else). Only a definite
//!   answer condemns: what cannot be read (`/proc` hidden or missing, no file descriptor left)
//!   leaves the holder alive. The sleeper then takes the word over with a compare-and-swap
//!   from the very value it judged, so that exactly one waiter takes over, and only from that
//!   holder (a release, or a later holder, changes the word), and is told
//!   [`Recovery::OwnerDied`]. Since the start time is part of the word, there is no moment at
//!   which a holder is named without it: a new holder that reused a dead one's id is never
//!   judged by the dead one's start time.
//!
//! # Handing over
//!
//! A lock freed to 0 goes to whoever takes it first, and that is, as a rule, the thread that
//! just freed it: a process that locks in a loop locks again within nanoseconds, while the
//! sleeper it woke needs microseconds to run (on a virtual machine whose other processor
//! idles, about 0.4 ms). Two processes inserting into one map showed it: one went on for 14 ms
//! while the other woke every 0.4 ms to find the lock taken again. So a waiter that has waited
//! [`FAIR_AFTER`] sets `starving` before each sleep, and the next release that finds
//! [`WAITERS`] hands the lock over instead of freeing it: it stores [`HANDED_OVER`] (the
//! `WAITERS` mark alone, a word no holder has), clears `starving` and wakes one sleeper.
//!
//! * **Who takes it**: only a thread that has slept on the lock. The fast path's
//!   compare-and-swap from 0 fails on it; a blocking lock that has not slept yet sleeps first,
//!   and `try_lock` fails with `WouldBlock`, as on a held lock.
//! * **When**: nothing is written for it on the uncontended path, and a release hands over
//!   only once a waiter has waited [`FAIR_AFTER`]: between two processes, at most once per
//!   millisecond of the waiter's wait, and each time the lock stays free for as long as the
//!   sleeper takes to wake, the price of a bounded wait. With more, every release that finds a
//!   waiter that asked hands over.
//! * **A request lost**: a release that hands the lock to another sleeper clears `starving`,
//!   and so does a waiter that asked and leaves without a hand-over (it took the lock freed,
//!   took it over from a dead holder, or gave up): a waiter that asked wakes every
//!   [`FAIR_AFTER`] to ask again.
//! * **Nobody to take it**: a release whose wake-up finds no sleeper (the waiter that asked
//!   timed out, or was killed) frees the lock to 0 after all. What is left is a sleeper woken,
//!   then killed before it took the word: the next blocking locker takes it after its first
//!   sleep ([`FIRST_CHECK`] at most), and `try_lock` fails until then. A lock handed over has
//!   no holder, and nobody is judged dead for it.
//!
//! Thread ids mean something only inside one pid namespace, and start times inside one time
//! namespace (`/proc` shifts them into the reader's). The segment remembers the namespaces of
//! its creator (its *home*); a holder from other ones (a container sharing `/dev/shm`, a
//! process under `unshare --time`) marks its word [`FOREIGN`] and records its namespaces
//! beside it once it holds the lock. A holder is judged only from its own namespaces: a
//! foreign holder whose namespaces are not recorded yet, or are not the judge's, is waited
//! for, and `try_lock_for` bounds that wait. A foreign holder killed between taking the word
//! and recording its namespaces (the rest of the acquisition's fast path and a call: a few
//! dozen instructions, no system call), or between forgetting them and freeing
//! the word, is therefore waited for forever, from every namespace: `lock` hangs and
//! `try_lock_for` times out, until the lock is removed. Conversely, in theory, a judge could
//! condemn a live foreign holder: if, between its two loads of the record, the holder
//! releases, a holder of the judge's namespaces locks and unlocks, and the first locks again
//! with the same word, the judge pairs the foreign word with its own namespaces.
//!
//! After a takeover the lock is *inconsistent* until its new holder calls `mark_consistent`; a
//! holder that drops its guard still inconsistent makes it *not recoverable* for everyone, which
//! is POSIX's rule for robust mutexes: data nobody vouched for is not handed out again. A holder
//! whose repair failed (damaged data, a transient error) instead releases it with
//! [`RawGuard::unlock_unrepaired`]: the lock stays inconsistent, and the next locker is told
//! the owner died and tries the repair again.
//!
//! # Why not a robust pthread mutex
//!
//! Earlier layouts held a robust, process-shared pthread mutex here, whose dead owners the
//! kernel reports through glibc's per-thread robust list. Its bookkeeping (the list, the
//! pending-operation word, the error checks) made an uncontended lock and unlock cost 23 ns
//! against 10.6 ns for `std::sync::Mutex` on the benchmark machine, and glibc never spins
//! before sleeping. Checking the holder's liveness ourselves costs nothing on the fast path;
//! the price is paid only by a waiter, as a look at the holder every few milliseconds while
//! the lock stays held, and as up to [`CHECK_INTERVAL`] of delay before a dead holder's lock
//! is taken over. A thread can only die holding the lock if its process dies, or if it leaked
//! the guard (in Rust, `mem::forget`): unwinding drops the guard.
//!
//! What the kernel's robust list did that this lock does not: notice the death of a holder in
//! another pid namespace (waiters here wait for it), and of a main thread whose process goes
//! on under the same id because another of its threads called `exec` (the kernel gives that
//! thread the main thread's id and start time). A failed `try_lock` looks the holder up (a
//! signal 0 and a read of `/proc`): polling `try_lock` in a tight loop on a held lock costs
//! microseconds per attempt, not nanoseconds. A holder is also misjudged if its id was freed
//! and given to a new thread that started within the same clock tick (10 ms) and took the
//! lock, between a waiter's look at the word and its look at the kernel: the ids of a pid
//! namespace would have to wrap around within that tick.
//!
//! # Held by a process
//!
//! A guard's lock is held by a thread, and only that thread releases it. A binding that offers
//! Python's `lock.acquire()` ... `lock.release()` needs a lock that any thread of the process
//! may release, and that stays held when the thread that took it exits. Such an acquisition
//! ([`LockSlot::acquire_for_process`]) names the process instead: the word holds the pid,
//! which is the id of the main thread, the main thread's start time (the process's) and the
//! mark [`PROCESS_HELD`]. Waiters judge it exactly as a thread's hold: it is dead when the
//! process is (its main thread ending ends a Rust or Python program). The mark keeps the main
//! thread from mistaking the process's hold for its own, so that a thread of the holding
//! process that locks again waits for a release by another thread rather than failing with a
//! deadlock. The release ([`LockSlot::release_for_process`]) first marks the word
//! [`RELEASING`] with a compare-and-swap, so that of two threads releasing at once exactly one
//! frees the lock. No per-thread state is left behind by either: this lock uses no kernel
//! robust list, so a release from another thread than the acquiring one has nothing to unlink.
//!
//! All words are atomics, so a damaged slot is a wrong number, never undefined behaviour: a
//! garbage `word` names a thread that does not exist (and is taken over), a garbage `state`
//! is reported as a damaged lock.

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::shm_safe::ShmSafe;
use crate::sys::{self, ThreadStamp, Wait};

/// Set in `word` while at least one thread sleeps (or is about to sleep) on it.
const WAITERS: u64 = 1 << 31;
/// Set in `word` when the holder is a process, not one of its threads (see the module docs).
const PROCESS_HELD: u64 = 1 << 30;
/// Set in `word` when the holder's namespaces (pid and time) are not the segment's home ones.
const FOREIGN: u64 = 1 << 29;
/// Set in `word` by the one thread of a holding process that is releasing the lock.
const RELEASING: u64 = 1 << 28;
/// Set in a guard's copy of the word, never in the word itself: the acquisition reports
/// [`Recovery::OwnerDied`] (it took the lock from a holder that died, or found it inconsistent
/// after a failed repair; see [`RawGuard::recovery`]).
const OWNER_DIED: u64 = 1 << 27;
/// The word of a lock handed over to the threads that sleep on it (see "Handing over" in the
/// module docs): free, but only for a thread that has slept. [`WAITERS`] alone: no holder's word
/// is, since a thread's id is never 0.
const HANDED_OVER: u64 = WAITERS;
/// The holder's thread id in `word` (Linux keeps ids below 2^22; a damaged word's larger "id"
/// names no thread, and is taken over).
const TID_MASK: u64 = OWNER_DIED - 1;
/// What names the holder in a word: everything but the marks others may add while it holds.
const HOLDER: u64 = !(WAITERS | RELEASING);

/// The protected data is sound.
const CONSISTENT: u32 = 0;
/// A holder died; the current holder has not yet declared the data repaired.
const INCONSISTENT: u32 = 1;
/// A holder released the lock while it was inconsistent: nobody may take it again.
const NOT_RECOVERABLE: u32 = 2;

/// How long, at most, a waiter goes without checking whether the holder still lives.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// The first check comes sooner: most waits are short, and a holder killed with `kill -9` is
/// best noticed at once.
const FIRST_CHECK: Duration = Duration::from_millis(2);
/// How many times a locker re-reads the word before it sleeps (as `std::sync::Mutex` does).
const SPINS: u32 = 100;
/// How long a waiter waits before it asks for the lock to be handed over to the sleepers (see
/// "Handing over" in the module docs).
const FAIR_AFTER: Duration = Duration::from_millis(1);

/// The lock slot at offset 128 of every segment.
#[repr(C, align(64))]
pub(crate) struct LockSlot {
    /// 0, or the holder: its tid and marks (low half), the low 32 bits of its start time (high
    /// half); or [`HANDED_OVER`]. See the module docs.
    word: AtomicU64,
    /// The tid (low half) and pid (high half) of the latest thread that took the lock, written
    /// after locking when they changed, never cleared: the holder's pid while the low half
    /// matches the word's tid, for `inspect` and `OwnerDied`.
    owner: AtomicU64,
    /// [`CONSISTENT`], [`INCONSISTENT`] or [`NOT_RECOVERABLE`].
    state: AtomicU32,
    /// 1 if a holder unwound from a panic while holding the lock.
    poisoned: AtomicU32,
    /// How many times a holder died and the lock was taken over.
    owner_deaths: AtomicU32,
    /// 1 once a process from other namespaces than [`LockSlot::home_namespace`] opened the
    /// segment.
    foreign_users: AtomicU32,
    /// The namespaces (pid and time, as `sys::this_thread` gives them) of the [`FOREIGN`]
    /// holder whose word is in `namespace_of`.
    owner_namespace: AtomicU64,
    /// The word (without the marks others add) of the foreign holder whose namespace
    /// `owner_namespace` records: written after `owner_namespace` once it holds the lock,
    /// cleared before it frees the word; 0 otherwise.
    namespace_of: AtomicU64,
    /// The namespaces (pid and time) of the segment's creator (0 if unknown). Written only
    /// by `init` and `reset_after_reboot`, before any process of this boot can lock: a lock
    /// that finds it 0 where it was not is on a page lost to a shrunk file (see
    /// `LockAnchor::is_intact`).
    home_namespace: AtomicU64,
    /// The pid of the last holder that died (0 if unknown): written by the holder that took
    /// the lock over, read by it for `OwnerDied`, and by the next locker while the lock is
    /// still inconsistent (its repair failed and released it unrepaired). Written only by a
    /// holder, or by `reset_after_reboot` under the segment file's exclusive lock.
    died_pid: AtomicU32,
    /// 1 once a waiter has waited [`FAIR_AFTER`]: the next release that finds [`WAITERS`]
    /// hands the lock over ([`HANDED_OVER`]) instead of freeing it, and clears it. Also
    /// cleared by a waiter that asked and leaves without a hand-over, and by `init` and
    /// `reset_after_reboot`.
    starving: AtomicU32,
}

// SAFETY: `#[repr(C, align(64))]` of fixed-width atomics only: one layout in every process,
// any bits are a valid value (the lock protocol treats an unknown state or holder as the
// corruption it is), mutation is atomic, and it owns nothing and needs no `Drop`.
#[allow(unsafe_code)]
unsafe impl ShmSafe for LockSlot {}

const _: () = assert!(size_of::<LockSlot>() == 64);

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
    /// The slot holds values the protocol never writes; the value is the bad `state`.
    Damaged(u32),
}

/// The thread id a lock word names.
fn tid_in(word: u64) -> u32 {
    (word & TID_MASK) as u32
}

/// The `owner` word of thread `tid` of process `pid`.
fn owner_of(tid: u32, pid: u32) -> u64 {
    u64::from(tid) | (u64::from(pid) << 32)
}

impl LockSlot {
    /// Initialises the slot of a segment being created.
    pub(crate) fn init(&self) {
        self.word.store(0, Ordering::Relaxed);
        self.owner.store(0, Ordering::Relaxed);
        self.state.store(CONSISTENT, Ordering::Relaxed);
        self.poisoned.store(0, Ordering::Relaxed);
        self.owner_deaths.store(0, Ordering::Relaxed);
        self.foreign_users.store(0, Ordering::Relaxed);
        self.owner_namespace.store(0, Ordering::Relaxed);
        self.namespace_of.store(0, Ordering::Relaxed);
        self.home_namespace
            .store(sys::this_thread().namespaces, Ordering::Relaxed);
        self.died_pid.store(0, Ordering::Relaxed);
        self.starving.store(0, Ordering::Relaxed);
    }

    /// Resets the lock of a segment that was last used during an earlier boot: every holder
    /// then is gone, and nobody would wake a waiter. If the lock was held when the machine went
    /// down, the next locker is told the owner died. The caller holds the segment file's
    /// exclusive `flock` and has checked the boot id under it, so no process of this boot uses
    /// the lock yet.
    pub(crate) fn reset_after_reboot(&self) {
        let held = self.word.swap(0, Ordering::AcqRel);
        self.starving.store(0, Ordering::Relaxed);
        if held != 0 && held != HANDED_OVER {
            self.died_pid
                .store(self.pid_of(held).unwrap_or(0), Ordering::Relaxed);
            // Moves CONSISTENT to INCONSISTENT and keeps NOT_RECOVERABLE as it is.
            let _ = self.state.compare_exchange(
                CONSISTENT,
                INCONSISTENT,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        self.namespace_of.store(0, Ordering::Release);
        // Namespaces are numbered afresh at every boot.
        self.home_namespace
            .store(sys::this_thread().namespaces, Ordering::Relaxed);
        self.foreign_users.store(0, Ordering::Release);
    }

    /// Whether the slot records the namespaces of the segment's creator (see
    /// `LockAnchor::is_intact`, which relies on a slot replaced by zeros saying no).
    #[inline]
    pub(crate) fn home_is_known(&self) -> bool {
        self.home_namespace.load(Ordering::Relaxed) != 0
    }

    /// Records that a process of namespaces `namespace` uses the segment (called when it
    /// opens it, before it can lock).
    pub(crate) fn note_user_namespace(&self, namespace: u64) {
        if namespace != self.home_namespace.load(Ordering::Relaxed) {
            self.foreign_users.store(1, Ordering::SeqCst);
        }
    }

    /// The word that names `me` as the holder, with `mark` (0 for a thread, [`PROCESS_HELD`]
    /// for a process), and [`FOREIGN`] if `me` is not of the segment's home namespace.
    ///
    /// The id is not masked: the kernel keeps ids below 2^22 (`PID_MAX_LIMIT`), under the
    /// marks. Masked, it would tell the compiler that the word's [`FOREIGN`] bit is the
    /// comparison of namespaces, and the compiler would test that comparison again after the
    /// compare-and-swap instead of the bit, keeping both namespaces in registers through the
    /// lock, and a caller's values on the stack (BENCHMARKS.md, "Seventh pass").
    #[inline]
    fn word_of(&self, me: ThreadStamp, mark: u64) -> u64 {
        debug_assert!(
            u64::from(me.tid) <= TID_MASK,
            "thread id {} of 2^27 or more",
            me.tid
        );
        let foreign = if me.namespaces == self.home_namespace.load(Ordering::Relaxed) {
            0
        } else {
            FOREIGN
        };
        ((me.start & u64::from(u32::MAX)) << 32) | u64::from(me.tid) | mark | foreign
    }

    /// Locks, waiting as `wait` says. The uncontended path is inlined into the caller (always:
    /// the compiler's estimate left it out of line in the CLI's callers of `Lock::lock`): for a
    /// holder of the home namespaces, one compare-and-swap and a few loads of the same cache
    /// line.
    #[allow(
        clippy::inline_always,
        reason = "measured: left to the compiler, callers of `Lock::lock` call it out of line"
    )]
    #[inline(always)]
    pub(crate) fn acquire(&self, wait: Wait) -> Result<(RawGuard<'_>, Recovery), RawFailure> {
        self.acquire_as(sys::this_thread(), 0, wait)
    }

    /// Locks for the calling process rather than the calling thread (see the module docs):
    /// the returned guard must not be dropped (forget it); any thread of the process releases
    /// the lock with [`LockSlot::release_for_process`]. A thread of the process that already
    /// holds it this way waits for that release instead of failing with `Deadlock`.
    pub(crate) fn acquire_for_process(
        &self,
        wait: Wait,
    ) -> Result<(RawGuard<'_>, Recovery), RawFailure> {
        self.acquire_as(sys::this_process(), PROCESS_HELD, wait)
    }

    /// Locks for `me`, marked with `mark` (0 for a thread, [`PROCESS_HELD`] for a process).
    #[allow(
        clippy::inline_always,
        reason = "the body of `acquire`, inlined for the same reason"
    )]
    #[inline(always)]
    fn acquire_as(
        &self,
        me: ThreadStamp,
        mark: u64,
        wait: Wait,
    ) -> Result<(RawGuard<'_>, Recovery), RawFailure> {
        // Two words carry all of `me` that the lock needs: what lives across the call of the
        // contended path must stay in the registers a call preserves, and a caller's loop
        // that runs out of them keeps its own values on the stack instead (each a load, or a
        // store in front of the locked instruction). The slow paths read the namespaces again.
        let mine = self.word_of(me, mark);
        let owner = owner_of(me.tid, me.pid);
        // AcqRel: a waiter that reads our word also sees what this process wrote before
        // locking (`foreign_users`, when it opened the segment).
        let dead = if self
            .word
            .compare_exchange(0, mine, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            0
        } else {
            self.acquire_contended(mine, wait)?
        };
        // Only a holder writes `owner`, and only when it changes: a thread locking again
        // leaves its cache line as it was.
        let previous = self.owner.load(Ordering::Relaxed);
        if previous != owner {
            self.owner.store(owner, Ordering::Relaxed);
        }
        let state = self.state.load(Ordering::Acquire);
        // The rare cases share one test, so that a lock takes one branch between its atomic
        // operation and the caller's code.
        if dead != 0 || state != CONSISTENT || mine & FOREIGN != 0 {
            // The slow path returns the guard's word, in registers: a guard it returned would
            // come back through memory, and with it, where the two paths meet, every guard.
            let guard = self.guard(self.acquired_slow(mine, dead, state, previous)?);
            let recovery = guard.recovery();
            return Ok((guard, recovery));
        }
        Ok((self.guard(mine), Recovery::Clean))
    }

    fn guard(&self, held: u64) -> RawGuard<'_> {
        RawGuard {
            slot: self,
            held,
            _not_send: PhantomData,
        }
    }

    /// Records the namespace of a [`FOREIGN`] holder that just took the lock with word `mine`.
    fn record_namespace(&self, mine: u64, namespace: u64) {
        self.owner_namespace.store(namespace, Ordering::Relaxed);
        self.namespace_of.store(mine, Ordering::Release);
    }

    /// The pid of the holder named by `word`, if `owner` records it.
    fn pid_of(&self, word: u64) -> Option<u32> {
        let owner = self.owner.load(Ordering::Relaxed);
        (word != 0 && owner as u32 == tid_in(word) && owner >> 32 != 0)
            .then_some((owner >> 32) as u32)
    }

    /// The end of an acquisition (with word `mine`) by a
    /// [`FOREIGN`] holder, or that took the lock from the dead holder `dead` (0: none), or
    /// found it inconsistent, not recoverable or damaged; `previous` is what `owner` held
    /// before this acquisition. Returns the word of the guard to make: `mine`, with
    /// [`OWNER_DIED`] if the acquisition reports [`Recovery::OwnerDied`].
    #[cold]
    #[inline(never)]
    fn acquired_slow(
        &self,
        mine: u64,
        dead: u64,
        state: u32,
        previous: u64,
    ) -> Result<u64, RawFailure> {
        if mine & FOREIGN != 0 {
            self.record_namespace(mine, sys::this_thread().namespaces);
        }
        if dead == 0 && state == CONSISTENT {
            return Ok(mine);
        }
        match state {
            CONSISTENT | INCONSISTENT => {
                // Released unrepaired (`dead` 0): `died_pid` kept the pid.
                if dead != 0 {
                    self.owner_deaths.fetch_add(1, Ordering::Relaxed);
                    self.state.store(INCONSISTENT, Ordering::Release);
                    let pid = if previous as u32 == tid_in(dead) {
                        (previous >> 32) as u32
                    } else {
                        0 // it died before recording its pid
                    };
                    self.died_pid.store(pid, Ordering::Relaxed);
                }
                Ok(mine | OWNER_DIED)
            }
            NOT_RECOVERABLE => {
                self.release(mine);
                Err(RawFailure::Unrecoverable)
            }
            damaged => {
                self.release(mine);
                Err(RawFailure::Damaged(damaged))
            }
        }
    }

    /// The slow path of [`LockSlot::acquire`]: returns once the word is `mine` (perhaps with
    /// [`WAITERS`]), with the word of the dead holder it was taken from (0 if none).
    #[inline(never)]
    fn acquire_contended(&self, mine: u64, wait: Wait) -> Result<u64, RawFailure> {
        // The caller's namespaces, a thread's as its process's (see `word_of`).
        let here = sys::this_thread().namespaces;
        let deadline = match wait {
            Wait::For(timeout) => Instant::now().checked_add(timeout),
            Wait::Forever | Wait::Never => None,
        };
        let mut spins = if matches!(wait, Wait::Never) {
            0
        } else {
            SPINS
        };
        let mut check_every = FIRST_CHECK;
        let entered = Instant::now();
        let mut next_check = entered + FIRST_CHECK;
        // Once this thread has slept, others may sleep too: it locks with WAITERS set, so that
        // its unlock wakes the next one; and if it leaves without the lock, it passes on the
        // wake-up it may have consumed.
        let mut waiters = 0;
        // Whether this thread asked for the lock to be handed over (`starving`).
        let mut asked = false;
        loop {
            let mut current = self.word.load(Ordering::Acquire);
            while current != 0 && current & WAITERS == 0 && spins > 0 {
                std::hint::spin_loop();
                spins -= 1;
                current = self.word.load(Ordering::Acquire);
            }
            if self.state.load(Ordering::Acquire) == NOT_RECOVERABLE {
                return self.give_up(waiters, asked, RawFailure::Unrecoverable);
            }
            if current == 0 {
                if self
                    .word
                    .compare_exchange(0, mine | waiters, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.withdraw(asked);
                    return Ok(0);
                }
                continue;
            }
            // Handed over to the sleepers: taken by one that slept (WAITERS kept, since others
            // may sleep too); a thread that has not slept yet sleeps first.
            if current == HANDED_OVER && waiters != 0 {
                if self
                    .word
                    .compare_exchange(current, mine | WAITERS, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(0);
                }
                continue;
            }
            // A process's hold may be released by any of its threads: waiting for it is not a
            // deadlock.
            if current & HOLDER == mine && mine & PROCESS_HELD == 0 && self.holds(mine, here) {
                return Err(RawFailure::Deadlock);
            }
            let now = Instant::now();
            let out_of_time = match wait {
                Wait::Never => true,
                Wait::Forever => false,
                Wait::For(_) => deadline.is_some_and(|deadline| now >= deadline),
            };
            if out_of_time || now >= next_check {
                // A lock handed over names no holder to judge.
                if current != HANDED_OVER && self.take_over_if_dead(current, mine, here) {
                    self.withdraw(asked);
                    return Ok(current);
                }
                if out_of_time {
                    return self.give_up(
                        waiters,
                        asked,
                        if matches!(wait, Wait::Never) {
                            RawFailure::WouldBlock
                        } else {
                            RawFailure::TimedOut
                        },
                    );
                }
                check_every = (check_every * 2).min(CHECK_INTERVAL);
                next_check = now + check_every;
            }
            let sleeping_on = current | WAITERS;
            if current != sleeping_on
                && self
                    .word
                    .compare_exchange(current, sleeping_on, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            waiters = WAITERS;
            if now.duration_since(entered) >= FAIR_AFTER {
                self.starving.store(1, Ordering::Relaxed);
                asked = true;
            }
            // However the sleep ends (a wake, a signal, the timeout), the loop re-checks the
            // time: a stream of signals cannot postpone the liveness check. A waiter that asked
            // for the lock wakes every FAIR_AFTER to ask again, as a release that handed the
            // lock to another sleeper cleared the request.
            let mut until = deadline.map_or(next_check, |deadline| deadline.min(next_check));
            if asked {
                until = until.min(now + FAIR_AFTER);
            }
            sys::futex_wait_low_half(
                &self.word,
                sleeping_on as u32,
                Some(until.saturating_duration_since(now)),
            );
            spins = SPINS;
        }
    }

    /// Leaves the contended path without the lock. A thread that slept (`waiters` set) may
    /// have consumed the wake-up meant for the next one in line: it passes one on.
    fn give_up(&self, waiters: u64, asked: bool, failure: RawFailure) -> Result<u64, RawFailure> {
        self.withdraw(asked);
        if waiters != 0 {
            sys::futex_wake_low_half(&self.word, 1);
        }
        Err(failure)
    }

    /// Withdraws the request of a waiter that `asked` for the lock to be handed over, as it
    /// leaves the contended path other than by a hand-over: no release then hands the lock
    /// over on its account. (A request of another waiter withdrawn with it is made again when
    /// that one wakes, within [`FAIR_AFTER`].)
    fn withdraw(&self, asked: bool) {
        if asked {
            self.starving.store(0, Ordering::Relaxed);
        }
    }

    /// Whether the word `mine`, found in the lock, is the hold of the caller itself (of
    /// namespaces `here`) rather than of another thread with the same id and start time in
    /// other namespaces. Only a
    /// [`FOREIGN`] word can be another's: ids are unique within the home namespace.
    fn holds(&self, mine: u64, here: u64) -> bool {
        mine & FOREIGN == 0 || self.recorded_namespaces_are(mine, here)
    }

    /// Whether the [`FOREIGN`] holder `word` (without the marks others add) recorded its
    /// namespaces, and they are `namespaces`.
    fn recorded_namespaces_are(&self, word: u64, namespaces: u64) -> bool {
        // `namespace_of` is written after `owner_namespace`: naming the word, it vouches for it.
        self.namespace_of.load(Ordering::Acquire) == word
            && self.owner_namespace.load(Ordering::Relaxed) == namespaces
    }

    /// Whether every user of the segment, and `here`, share the namespaces of its creator.
    fn all_at_home(&self, here: u64) -> bool {
        here != 0
            && self.foreign_users.load(Ordering::SeqCst) == 0
            && self.home_namespace.load(Ordering::Relaxed) == here
    }

    /// If the holder named by `observed` still holds the lock and is dead, makes `mine` the
    /// holder (with `WAITERS`: others may sleep) and returns true.
    fn take_over_if_dead(&self, observed: u64, mine: u64, here: u64) -> bool {
        if !self.is_dead(observed, here) {
            return false;
        }
        // The verdict is about the holder `observed` names: the compare-and-swap takes the
        // word from that holder only (a release or a later holder changes it), and lets one
        // waiter through. Only the marks others add may have changed meanwhile.
        let mut current = observed;
        loop {
            match self.word.compare_exchange(
                current,
                mine | WAITERS,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) if now & HOLDER == observed & HOLDER => current = now,
                Err(_) => return false,
            }
        }
    }

    /// Whether the holder named by the lock word `observed` is dead, as seen from namespaces
    /// `here`. A holder whose id belongs to other namespaces is never judged: the kernel and
    /// `/proc` here cannot see it (or show someone else under its number), so it counts as
    /// alive; so does every holder when our own namespace is unknown.
    fn is_dead(&self, observed: u64, here: u64) -> bool {
        let judgeable = here != 0
            && if observed & FOREIGN == 0 {
                self.home_namespace.load(Ordering::Relaxed) == here
            } else {
                // Its namespaces, once recorded, or a mark no process wrote: with no foreign
                // user, the word is damaged, and judged as any other.
                self.recorded_namespaces_are(observed & HOLDER, here) || self.all_at_home(here)
            };
        if !judgeable {
            return false;
        }
        match sys::liveness(tid_in(observed)) {
            sys::Liveness::Gone => true,
            sys::Liveness::Running { start: Some(start) } => {
                let recorded = observed >> 32;
                recorded != 0 && recorded != start & u64::from(u32::MAX)
            }
            sys::Liveness::Running { start: None } => false,
        }
    }

    /// Frees the word, if the holder `held` still holds it, waking one waiter (every waiter if
    /// the lock is now not recoverable, so that each learns it). A holder that finds the word
    /// no longer names it (taken over after being judged dead) leaves it alone.
    #[inline]
    fn release(&self, held: u64) {
        if held & FOREIGN != 0 {
            self.forget_namespace(held);
        }
        // Without waiters the word is exactly ours: one compare-and-swap releases it.
        if let Err(current) =
            self.word
                .compare_exchange(held, 0, Ordering::Release, Ordering::Relaxed)
        {
            self.release_contended(current, held);
        }
    }

    /// The release of a guard's hold `held` (see `RawGuard::drop`) when the lock was found
    /// `state`, [`INCONSISTENT`], or the holder is [`FOREIGN`]. (The hold comes by value: a
    /// guard passed by reference would be kept in memory on every unlock's way.)
    #[cold]
    #[inline(never)]
    fn release_slow(&self, held: u64, state: u32) {
        // Released without `mark_consistent`: nobody vouched for the data. (Only the holder
        // writes `state`, so a plain load and store suffice.)
        if state == INCONSISTENT {
            self.state.store(NOT_RECOVERABLE, Ordering::Release);
        }
        self.release(held);
    }

    /// Clears the namespace record of the foreign holder `held`, before it frees the word.
    #[cold]
    #[inline(never)]
    fn forget_namespace(&self, held: u64) {
        let _ = self
            .namespace_of
            .compare_exchange(held, 0, Ordering::Release, Ordering::Relaxed);
    }

    #[inline(never)]
    fn release_contended(&self, mut current: u64, held: u64) {
        // Others may add WAITERS meanwhile, and, to a process's hold, another of its threads
        // RELEASING (its release then frees the word): each compare-and-swap is from the word
        // as last seen, so that a word freed and taken by someone else is never freed here.
        while current & HOLDER == held && current & RELEASING == 0 {
            match self.free_word(current) {
                Ok(()) => return,
                Err(now) => current = now,
            }
        }
    }

    /// Frees the word, if it is still `current`: handed over to the sleepers if one of them
    /// asked (see "Handing over" in the module docs), else 0; then wakes a sleeper if the word
    /// says one may sleep. A lock handed over that woke nobody (the sleeper that asked timed
    /// out or was killed) is freed to 0 after all. Fails with the word found if it was not
    /// `current`.
    fn free_word(&self, current: u64) -> Result<(), u64> {
        let hand_over = current & WAITERS != 0 && self.starving.load(Ordering::Relaxed) != 0;
        let free = if hand_over { HANDED_OVER } else { 0 };
        self.word
            .compare_exchange(current, free, Ordering::Release, Ordering::Relaxed)?;
        if hand_over {
            self.starving.store(0, Ordering::Relaxed);
        }
        if current & WAITERS != 0 && self.wake_waiter() == 0 && hand_over {
            // A thread about to sleep finds the word changed, and looks again.
            let _ =
                self.word
                    .compare_exchange(HANDED_OVER, 0, Ordering::Release, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Wakes one sleeper (every one if the lock is not recoverable, so that each learns it);
    /// returns how many woke.
    #[inline(never)]
    fn wake_waiter(&self) -> usize {
        let wake = if self.state.load(Ordering::Relaxed) == NOT_RECOVERABLE {
            u32::MAX
        } else {
            1
        };
        sys::futex_wake_low_half(&self.word, wake)
    }

    /// A guard for the lock the calling thread holds (taken with [`LockSlot::acquire`]), or
    /// `None` if it does not hold it. For a reentrant lock, whose nested guards share one hold:
    /// the guard that brings the depth to zero adopts the hold and drops it.
    pub(crate) fn held_by_current_thread(&self) -> Option<RawGuard<'_>> {
        let me = sys::this_thread();
        let mine = self.word_of(me, 0);
        // Only this thread writes its own word; a dead thread that had the same id started at
        // another time.
        (self.word.load(Ordering::Relaxed) & HOLDER == mine && self.holds(mine, me.namespaces))
            .then(|| self.guard(mine))
    }

    /// Whether the calling process holds the lock through [`LockSlot::acquire_for_process`].
    pub(crate) fn is_held_by_this_process(&self) -> bool {
        let me = sys::this_process();
        let mine = self.word_of(me, PROCESS_HELD);
        self.word.load(Ordering::Acquire) & HOLDER == mine && self.holds(mine, me.namespaces)
    }

    /// After [`Recovery::OwnerDied`] of an acquisition for the process: declares the state
    /// repaired. Fails if the process does not hold the lock, or it is consistent.
    pub(crate) fn mark_consistent_for_process(&self) -> io::Result<()> {
        if !self.is_held_by_this_process() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the lock is not held by this process (through `acquire`)",
            ));
        }
        self.guard(self.word_of(sys::this_process(), PROCESS_HELD))
            .forget_after(RawGuard::mark_consistent)
    }

    /// Releases a lock held by the calling process (taken with
    /// [`LockSlot::acquire_for_process`]), from any of its threads, as dropping a guard does
    /// (a lock still inconsistent becomes not recoverable). Returns false, changing nothing,
    /// if the process does not hold it (it is free, held by another process or by a thread's
    /// guard, or another thread released it first).
    pub(crate) fn release_for_process(&self) -> bool {
        let me = sys::this_process();
        let mine = self.word_of(me, PROCESS_HELD);
        // Marking the word RELEASING first makes the release once-only: of two threads
        // releasing at once, one wins the compare-and-swap; the other finds the mark and
        // leaves the lock alone.
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if current & HOLDER != mine
                || current & RELEASING != 0
                || !self.holds(mine, me.namespaces)
            {
                return false;
            }
            match self.word.compare_exchange(
                current,
                current | RELEASING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        if self.state.load(Ordering::Relaxed) == INCONSISTENT {
            self.state.store(NOT_RECOVERABLE, Ordering::Release);
        }
        if mine & FOREIGN != 0 {
            self.forget_namespace(mine);
        }
        // Marked RELEASING, the word is this release's to free: others only add WAITERS.
        let mut current = self.word.load(Ordering::Relaxed);
        while current & HOLDER == mine {
            match self.free_word(current) {
                Ok(()) => break,
                Err(now) => current = now,
            }
        }
        true
    }

    pub(crate) fn has_foreign_users(&self) -> bool {
        self.foreign_users.load(Ordering::Relaxed) != 0
    }

    /// Whether a pid read from the segment names, in this process's namespaces, the process
    /// that wrote it: every user of the segment shares the namespace of its creator, and so
    /// does this process.
    pub(crate) fn pids_are_ours(&self) -> bool {
        self.all_at_home(sys::this_thread().namespaces)
    }

    /// Whether the lock is held, or handed over to a thread that sleeps on it (informational:
    /// it can change at any moment).
    pub(crate) fn is_held(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    /// The pid recorded as holding the lock, if it is held and its holder recorded its pid
    /// (informational: it can change at any moment, and a holder that died keeps the lock, and
    /// its pid here, until the next owner takes over).
    pub(crate) fn owner_pid(&self) -> Option<u32> {
        self.pid_of(self.word.load(Ordering::Acquire))
    }

    #[inline]
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
    /// The word that names the holder, as it took the lock, with [`OWNER_DIED`] if the
    /// acquisition reported [`Recovery::OwnerDied`] (the dead holder's pid is then in the
    /// slot's `died_pid`). One word, so that the guard is two machine words that copy as
    /// written.
    held: u64,
    /// The word names the locking thread, which must be the one to unlock.
    _not_send: PhantomData<*const ()>,
}

impl RawGuard<'_> {
    /// How the lock was acquired.
    pub(crate) fn recovery(&self) -> Recovery {
        if self.held & OWNER_DIED == 0 {
            Recovery::Clean
        } else {
            Recovery::OwnerDied {
                pid: self.slot.died_pid.load(Ordering::Relaxed),
            }
        }
    }

    /// The word that names this guard's holder in the lock, without the marks others add
    /// ([`WAITERS`], [`RELEASING`]).
    fn word(&self) -> u64 {
        self.held & !OWNER_DIED
    }

    /// After [`Recovery::OwnerDied`]: declares the protected state repaired.
    pub(crate) fn mark_consistent(&self) -> io::Result<()> {
        self.slot
            .state
            .compare_exchange(
                INCONSISTENT,
                CONSISTENT,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .map(drop)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the lock was not taken over from a holder that died; it is consistent",
                )
            })
    }

    pub(crate) fn clear_poison(&self) {
        self.slot.poisoned.store(0, Ordering::Release);
    }

    /// Runs `f` on the guard, then forgets it: the lock stays held. For a hold the guard does
    /// not own (a process's, or a reentrant lock's inner level).
    pub(crate) fn forget_after<T>(self, f: impl FnOnce(&Self) -> T) -> T {
        let this = std::mem::ManuallyDrop::new(self);
        f(&this)
    }

    /// Releases the lock without declaring the protected state repaired, and without making
    /// the lock not recoverable: after [`Recovery::OwnerDied`], it stays inconsistent, so that
    /// the next locker is told the owner died (with the same pid, kept in `died_pid`) and
    /// repairs again. For a repair that failed: one damaged entry or one transient error must
    /// not brick the lock. After a clean acquisition, or once marked consistent, this is a
    /// plain unlock.
    pub(crate) fn unlock_unrepaired(self) {
        let this = std::mem::ManuallyDrop::new(self);
        if std::thread::panicking() {
            this.slot.poisoned.store(1, Ordering::Release);
        }
        // Not `drop`, which would make an inconsistent lock not recoverable.
        this.slot.release(this.word());
    }
}

impl Drop for RawGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Unwinding unlocks over possibly half-updated data: tell every process.
            self.slot.poisoned.store(1, Ordering::Release);
        }
        // The rare cases share one test, as on the way in: a lock taken over from a dead
        // holder and not marked consistent, and a FOREIGN holder.
        let state = self.slot.state.load(Ordering::Relaxed);
        if state == INCONSISTENT || self.held & FOREIGN != 0 {
            self.slot.release_slow(self.word(), state);
        } else {
            self.slot.release(self.word());
        }
    }
}
