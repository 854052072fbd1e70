//! The lock slot in every segment's control page: a futex lock whose word names the thread that
//! holds it, so that any process can tell whether the holder still lives.
//!
//! # The protocol
//!
//! `word` is 0 when the lock is free, and otherwise the holder's thread id, with bit 31
//! ([`WAITERS`]) set once some thread sleeps on it.
//!
//! * **Lock**: one compare-and-swap from 0 to the caller's tid. When that fails, the caller
//!   spins briefly while the holder works without waiters, then sets `WAITERS` and sleeps on
//!   the word (a *shared* futex: the kernel keys it by the page, so it reaches other processes).
//! * **Unlock**: one compare-and-swap from the caller's tid back to 0; if a waiter set
//!   `WAITERS`, a swap to 0 and a futex wake. A holder whose word names someone else (it was
//!   judged dead and taken over) leaves it alone.
//! * **A holder that died**: a sleeper wakes after [`FIRST_CHECK`], then at least every
//!   [`CHECK_INTERVAL`], and asks whether the holder lives: the kernel first (signal 0: no such
//!   task means dead), then `/proc` (a zombie is dead; so is a thread that started at another
//!   time than the one it stamped into `stamp`, because its id now belongs to someone else).
//!   Only a definite answer condemns: what cannot be read (`/proc` hidden or missing, no file
//!   descriptor left) leaves the holder alive. The sleeper first clears the very stamp it
//!   judged (a compare-and-swap: had the holder released the lock, or a later holder with the
//!   same id stamped it, the stamp would differ), then takes the word over with a
//!   compare-and-swap from the value it judged, so that exactly one waiter takes over, and is
//!   told [`Recovery::OwnerDied`]. A holder that has not stamped yet (it is a few instructions
//!   past its compare-and-swap, or died there) is condemned only if it is missing at two checks
//!   in a row with the word unchanged, so that an id freed and reused between a waiter's look
//!   at the word and its look at the kernel cannot fool it.
//!
//! Thread ids mean something only inside one pid namespace. The holder records its namespace
//! beside its stamp, and the segment remembers whether any process from another namespace than
//! its creator's opened it: a holder from another namespace (a container sharing `/dev/shm`)
//! is never judged dead from here, only waited for; `try_lock_for` bounds that wait.
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
//! against 10.6 ns for `std::sync::Mutex` on the benchmark machine (this lock: about 13 ns),
//! and glibc never spins before sleeping. Checking the holder's liveness ourselves costs
//! nothing on the fast path; the price is paid only by a waiter, as a look at the holder every
//! few milliseconds while the lock stays held, and as up to [`CHECK_INTERVAL`] of delay before
//! a dead holder's lock is taken over. A thread can only die holding the lock if its process
//! dies, or if it leaked the guard (in Rust, `mem::forget`): unwinding drops the guard.
//!
//! What the kernel's robust list did that this lock does not: notice the death of a holder in
//! another pid namespace (waiters here wait for it), and of a main thread whose process goes
//! on under the same id because another of its threads called `exec` (the kernel gives that
//! thread the main thread's id and start time). A failed `try_lock` looks the holder up (a
//! signal 0 and a read of `/proc`): polling `try_lock` in a tight loop on a held lock costs
//! microseconds per attempt, not nanoseconds.
//!
//! # Held by a process
//!
//! A guard's lock is held by a thread, and only that thread releases it. A binding that offers
//! Python's `lock.acquire()` ... `lock.release()` needs a lock that any thread of the process
//! may release, and that stays held when the thread that took it exits. Such an acquisition
//! ([`LockSlot::acquire_for_process`]) names the process instead: the word holds the pid,
//! which is the id of the main thread, and the stamp is the main thread's (the process's
//! start time) with [`PROCESS_HELD`] set. Waiters judge it exactly as a thread's hold: it is
//! dead when the process is (its main thread ending ends a Rust or Python program). The mark
//! keeps the main thread from mistaking the process's hold for its own (its stamp never has
//! it), so that a thread of the holding process that locks again waits for a release by
//! another thread rather than failing with a deadlock. The release
//! ([`LockSlot::release_for_process`]) clears the stamp with a compare-and-swap first, so that
//! of two threads releasing at once exactly one frees the lock. No per-thread state is left
//! behind by either: this lock uses no kernel robust list, so a release from another thread
//! than the acquiring one has nothing to unlink.
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
const WAITERS: u32 = 1 << 31;
/// Set in `stamp` (above the holder's id) when the holder is a process, not one of its threads
/// (see the module docs).
const PROCESS_HELD: u64 = 1 << 63;
/// The holder's thread id in `word`, 0 when free (Linux keeps ids below 2^22; a damaged word's
/// larger "id" names no thread, and is taken over).
const TID_MASK: u32 = WAITERS - 1;

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

/// The lock slot at offset 128 of every segment.
#[repr(C, align(64))]
pub(crate) struct LockSlot {
    /// 0, or the holder's tid | [`WAITERS`].
    word: AtomicU32,
    /// The holder's pid, for `inspect` and `OwnerDied`: written after locking, cleared before
    /// unlocking (a holder killed in between leaves it, and the next owner reads it).
    owner_pid: AtomicU32,
    /// The holder's tid (high half) and the low 32 bits of its start time, written right after
    /// locking and cleared before unlocking; 0 in between.
    stamp: AtomicU64,
    /// [`CONSISTENT`], [`INCONSISTENT`] or [`NOT_RECOVERABLE`].
    state: AtomicU32,
    /// 1 if a holder unwound from a panic while holding the lock.
    poisoned: AtomicU32,
    /// How many times a holder died and the lock was taken over.
    owner_deaths: AtomicU32,
    /// 1 once a process from another pid namespace than [`LockSlot::home_namespace`] opened the
    /// segment: a holder that has not stamped yet may then be one whose id means nothing here.
    foreign_users: AtomicU32,
    /// The holder's pid namespace, written before `stamp` (see [`LockSlot::is_dead`]).
    owner_namespace: AtomicU64,
    /// The pid namespace of the segment's creator.
    home_namespace: AtomicU64,
    /// The pid of the holder that died, kept while the lock is free but still inconsistent (a
    /// repair failed and released it unrepaired), for the next locker's `OwnerDied`; 0 if
    /// unknown. Written only by a holder.
    died_pid: AtomicU32,
    reserved: [AtomicU32; 3],
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

fn stamp_of(thread: ThreadStamp) -> u64 {
    (u64::from(thread.tid) << 32) | (thread.start & u64::from(u32::MAX))
}

impl LockSlot {
    /// Initialises the slot of a segment being created.
    pub(crate) fn init(&self) {
        self.word.store(0, Ordering::Relaxed);
        self.owner_pid.store(0, Ordering::Relaxed);
        self.stamp.store(0, Ordering::Relaxed);
        self.state.store(CONSISTENT, Ordering::Relaxed);
        self.poisoned.store(0, Ordering::Relaxed);
        self.owner_deaths.store(0, Ordering::Relaxed);
        self.foreign_users.store(0, Ordering::Relaxed);
        self.owner_namespace.store(0, Ordering::Relaxed);
        self.home_namespace
            .store(sys::this_thread().pid_namespace, Ordering::Relaxed);
        self.died_pid.store(0, Ordering::Relaxed);
        for word in &self.reserved {
            word.store(0, Ordering::Relaxed);
        }
    }

    /// Resets the lock of a segment that was last used during an earlier boot: every holder
    /// then is gone, and nobody would wake a waiter. If the lock was held when the machine went
    /// down, the next locker is told the owner died. The caller holds the segment file's
    /// exclusive `flock` and has checked the boot id under it, so no process of this boot uses
    /// the lock yet.
    pub(crate) fn reset_after_reboot(&self) {
        if self.word.swap(0, Ordering::AcqRel) != 0 {
            // Moves CONSISTENT to INCONSISTENT and keeps NOT_RECOVERABLE as it is.
            let _ = self.state.compare_exchange(
                CONSISTENT,
                INCONSISTENT,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        self.stamp.store(0, Ordering::Release);
        // Namespaces are numbered afresh at every boot.
        self.home_namespace
            .store(sys::this_thread().pid_namespace, Ordering::Relaxed);
        self.foreign_users.store(0, Ordering::Release);
    }

    /// Records that a process of pid namespace `namespace` uses the segment (called when it
    /// opens it, before it can lock).
    pub(crate) fn note_user_namespace(&self, namespace: u64) {
        if namespace != self.home_namespace.load(Ordering::Relaxed) {
            self.foreign_users.store(1, Ordering::SeqCst);
        }
    }

    /// Locks, waiting as `wait` says. The uncontended path is inlined into the caller (always:
    /// the compiler's estimate left it out of line in the CLI's callers of `Lock::lock`): one
    /// compare-and-swap, two loads and four stores to the same cache line.
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

    /// Locks for `me`, stamping it with `mark` (0 for a thread, [`PROCESS_HELD`] for a
    /// process).
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
        // AcqRel: a waiter that reads our tid in the word also sees what this process wrote
        // before locking (`foreign_users`, when it opened the segment).
        let took_over = if self
            .word
            .compare_exchange(0, me.tid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            false
        } else {
            self.acquire_contended(me, mark, wait)?
        };
        // Before the stamp: a waiter that sees our stamp sees these too.
        self.owner_namespace
            .store(me.pid_namespace, Ordering::Relaxed);
        // Only the holder writes `owner_pid`: a load and a store, no read-modify-write.
        let previous_pid = self.owner_pid.load(Ordering::Relaxed);
        self.owner_pid.store(sys::pid(), Ordering::Relaxed);
        self.stamp.store(stamp_of(me) | mark, Ordering::Release);
        let state = self.state.load(Ordering::Acquire);
        if took_over || state != CONSISTENT {
            return self.acquired_after_a_death(me, took_over, state, previous_pid);
        }
        Ok((self.guard(me, Recovery::Clean), Recovery::Clean))
    }

    fn guard(&self, me: ThreadStamp, recovery: Recovery) -> RawGuard<'_> {
        let previous = match recovery {
            Recovery::Clean => 0,
            Recovery::OwnerDied { pid: 0 } => u32::MAX,
            Recovery::OwnerDied { pid } => pid,
        };
        RawGuard {
            slot: self,
            held: u64::from(me.tid) | (u64::from(previous) << 32),
            _not_send: PhantomData,
        }
    }

    /// The end of an acquisition that took the lock from a dead holder, or found it
    /// inconsistent, not recoverable or damaged.
    #[cold]
    #[inline(never)]
    fn acquired_after_a_death(
        &self,
        me: ThreadStamp,
        took_over: bool,
        state: u32,
        previous_pid: u32,
    ) -> Result<(RawGuard<'_>, Recovery), RawFailure> {
        let recovery = match state {
            CONSISTENT | INCONSISTENT => {
                if took_over {
                    self.owner_deaths.fetch_add(1, Ordering::Relaxed);
                    self.state.store(INCONSISTENT, Ordering::Release);
                }
                // Released unrepaired, the lock no longer names the dead holder's pid in
                // `owner_pid`: `died_pid` kept it.
                let pid = if !took_over && previous_pid == 0 {
                    self.died_pid.load(Ordering::Relaxed)
                } else {
                    previous_pid
                };
                Recovery::OwnerDied { pid }
            }
            NOT_RECOVERABLE => {
                self.release(me.tid);
                return Err(RawFailure::Unrecoverable);
            }
            damaged => {
                self.release(me.tid);
                return Err(RawFailure::Damaged(damaged));
            }
        };
        Ok((self.guard(me, recovery), recovery))
    }

    /// The slow path of [`LockSlot::acquire`]: returns once the word names `me`, and whether
    /// it was taken from a dead holder.
    #[inline(never)]
    fn acquire_contended(
        &self,
        me: ThreadStamp,
        mark: u64,
        wait: Wait,
    ) -> Result<bool, RawFailure> {
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
        let mut next_check = Instant::now() + FIRST_CHECK;
        // Once this thread has slept, others may sleep too: it locks with WAITERS set, so that
        // its unlock wakes the next one; and if it leaves without the lock, it passes on the
        // wake-up it may have consumed.
        let mut waiters = 0;
        // A word whose unstamped holder was missing at the last check (see `is_dead`).
        let mut suspect = None;
        loop {
            let mut current = self.word.load(Ordering::Acquire);
            while current & TID_MASK != 0 && current & WAITERS == 0 && spins > 0 {
                std::hint::spin_loop();
                spins -= 1;
                current = self.word.load(Ordering::Acquire);
            }
            if self.state.load(Ordering::Acquire) == NOT_RECOVERABLE {
                return self.give_up(waiters, RawFailure::Unrecoverable);
            }
            if current == 0 {
                if self
                    .word
                    .compare_exchange(0, me.tid | waiters, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(false);
                }
                continue;
            }
            let holder = current & TID_MASK;
            // A process's hold may be released by any of its threads: waiting for it is not a
            // deadlock.
            if holder == me.tid && mark == 0 && self.held_by(me) {
                return Err(RawFailure::Deadlock);
            }
            let now = Instant::now();
            let out_of_time = match wait {
                Wait::Never => true,
                Wait::Forever => false,
                Wait::For(_) => deadline.is_some_and(|deadline| now >= deadline),
            };
            if out_of_time || now >= next_check {
                if self.take_over_if_dead(current, me, &mut suspect) {
                    return Ok(true);
                }
                if out_of_time {
                    return self.give_up(
                        waiters,
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
            // However the sleep ends (a wake, a signal, the timeout), the loop re-checks the
            // time: a stream of signals cannot postpone the liveness check.
            let until = deadline.map_or(next_check, |deadline| deadline.min(next_check));
            sys::futex_wait(
                &self.word,
                sleeping_on,
                Some(until.saturating_duration_since(now)),
            );
            spins = SPINS;
        }
    }

    /// Leaves the contended path without the lock. A thread that slept (`waiters` set) may
    /// have consumed the wake-up meant for the next one in line: it passes one on.
    fn give_up(&self, waiters: u32, failure: RawFailure) -> Result<bool, RawFailure> {
        if waiters != 0 {
            sys::futex_wake(&self.word, 1);
        }
        Err(failure)
    }

    /// Whether the word's holder is the calling thread itself (and not a dead thread, or one of
    /// another pid namespace, that had the same id).
    fn held_by(&self, me: ThreadStamp) -> bool {
        self.stamp.load(Ordering::Acquire) == stamp_of(me)
            && self.owner_namespace.load(Ordering::Relaxed) == me.pid_namespace
    }

    /// If the holder named by `observed` still holds the lock and is dead, makes `me` the
    /// holder (keeping `WAITERS`: others may sleep) and returns true. `suspect` carries, from
    /// one check to the next, a word whose unstamped holder was missing.
    fn take_over_if_dead(&self, observed: u32, me: ThreadStamp, suspect: &mut Option<u32>) -> bool {
        let stamp = self.stamp.load(Ordering::Acquire);
        if !self.is_dead(
            observed & TID_MASK,
            stamp,
            me.pid_namespace,
            observed,
            suspect,
        ) {
            return false;
        }
        let current = self.word.load(Ordering::Acquire);
        // The verdict is about the holder whose stamp was judged: clearing that very stamp
        // proves it still holds (a release clears the stamp, a later holder writes its own),
        // and keeps anyone from judging the new holder by the dead one's start time should both
        // have the same id. The compare-and-swaps let one waiter through.
        current & TID_MASK == observed & TID_MASK
            && self
                .stamp
                .compare_exchange(stamp, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            && self
                .word
                .compare_exchange(
                    current,
                    me.tid | WAITERS,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Whether thread `holder`, named by the lock word `observed` with `stamp` in the slot, is
    /// dead, as seen from pid namespace `here`. A holder whose id belongs to another namespace
    /// is never judged: the kernel and `/proc` here cannot see it (or show someone else under
    /// its number), so it counts as alive; so does every holder when our own namespace is
    /// unknown. An unstamped holder is condemned only when found missing twice in a row under
    /// the same word (`suspect`).
    fn is_dead(
        &self,
        holder: u32,
        stamp: u64,
        here: u64,
        observed: u32,
        suspect: &mut Option<u32>,
    ) -> bool {
        // A process's stamp carries `PROCESS_HELD` above the id.
        let stamped = (stamp & !PROCESS_HELD) >> 32 == u64::from(holder);
        let judgeable = here != 0
            && if stamped {
                // Written before the stamp, so the stamp's acquire load shows it.
                self.owner_namespace.load(Ordering::Relaxed) == here
            } else {
                // The stamp follows the word by a few instructions; until it names `holder`,
                // its namespace is known only if every user of the segment shares ours.
                self.foreign_users.load(Ordering::SeqCst) == 0
                    && self.home_namespace.load(Ordering::Relaxed) == here
            };
        if !judgeable {
            return false;
        }
        match sys::liveness(holder) {
            sys::Liveness::Gone if stamped => true,
            sys::Liveness::Gone => {
                let again = *suspect == Some(observed & TID_MASK);
                *suspect = Some(observed & TID_MASK);
                again
            }
            sys::Liveness::Running { start: Some(start) } => {
                let stamped_start = stamp & u64::from(u32::MAX);
                stamped && stamped_start != 0 && stamped_start != start & u64::from(u32::MAX)
            }
            sys::Liveness::Running { start: None } => false,
        }
    }

    /// Frees the word, if thread `tid` still holds it, waking one waiter (every waiter if the
    /// lock is now not recoverable, so that each learns it). A holder that finds the word no
    /// longer names it (taken over after being judged dead) leaves it alone.
    #[inline]
    fn release(&self, tid: u32) {
        self.owner_pid.store(0, Ordering::Relaxed);
        self.stamp.store(0, Ordering::Relaxed);
        self.free_word(tid);
    }

    /// Frees the word held by `tid`, waking a waiter if one sleeps.
    #[inline]
    fn free_word(&self, tid: u32) {
        // Without waiters the word is exactly our tid: one compare-and-swap releases it.
        if let Err(current) =
            self.word
                .compare_exchange(tid, 0, Ordering::Release, Ordering::Relaxed)
        {
            self.release_contended(current, tid);
        }
    }

    #[inline(never)]
    fn release_contended(&self, current: u32, tid: u32) {
        if current & TID_MASK != tid {
            return; // not ours any more
        }
        // Only WAITERS can change under us now, and it may only be added: a swap to 0 frees
        // the word and tells whether someone sleeps.
        if self.word.swap(0, Ordering::Release) & WAITERS != 0 {
            self.wake_waiter();
        }
    }

    #[inline(never)]
    fn wake_waiter(&self) {
        let wake = if self.state.load(Ordering::Relaxed) == NOT_RECOVERABLE {
            u32::MAX
        } else {
            1
        };
        sys::futex_wake(&self.word, wake);
    }

    /// A guard for the lock the calling thread holds (taken with [`LockSlot::acquire`]), or
    /// `None` if it does not hold it. For a reentrant lock, whose nested guards share one hold:
    /// the guard that brings the depth to zero adopts the hold and drops it.
    pub(crate) fn held_by_current_thread(&self) -> Option<RawGuard<'_>> {
        let me = sys::this_thread();
        // Only this thread writes its own id into the word and its stamp; a dead thread that had
        // the same id left another start time in the stamp.
        (self.word.load(Ordering::Relaxed) & TID_MASK == me.tid && self.held_by(me))
            .then(|| self.guard(me, Recovery::Clean))
    }

    /// Whether the calling process holds the lock through [`LockSlot::acquire_for_process`].
    pub(crate) fn is_held_by_this_process(&self) -> bool {
        let me = sys::this_process();
        self.word.load(Ordering::Acquire) & TID_MASK == me.tid
            && self.stamp.load(Ordering::Acquire) == stamp_of(me) | PROCESS_HELD
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
        self.guard(sys::this_process(), Recovery::Clean)
            .forget_after(RawGuard::mark_consistent)
    }

    /// Releases a lock held by the calling process (taken with
    /// [`LockSlot::acquire_for_process`]), from any of its threads, as dropping a guard does
    /// (a lock still inconsistent becomes not recoverable). Returns false, changing nothing,
    /// if the process does not hold it (it is free, held by another process or by a thread's
    /// guard, or another thread released it first).
    pub(crate) fn release_for_process(&self) -> bool {
        let me = sys::this_process();
        if self.word.load(Ordering::Acquire) & TID_MASK != me.tid {
            return false;
        }
        // Clearing the stamp first makes the release once-only: of two threads releasing at
        // once, one wins the compare-and-swap; the other finds the stamp changed and leaves the
        // word (which a new holder may already have taken) alone.
        if self
            .stamp
            .compare_exchange(
                stamp_of(me) | PROCESS_HELD,
                0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        if self.state.load(Ordering::Relaxed) == INCONSISTENT {
            self.state.store(NOT_RECOVERABLE, Ordering::Release);
        }
        // The stamp is clear already: the rest of `release`.
        self.owner_pid.store(0, Ordering::Relaxed);
        self.free_word(me.tid);
        true
    }

    pub(crate) fn has_foreign_users(&self) -> bool {
        self.foreign_users.load(Ordering::Relaxed) != 0
    }

    /// Whether a pid read from the segment names, in this process's pid namespace, the process
    /// that wrote it: every user of the segment shares the namespace of its creator, and so
    /// does this process.
    pub(crate) fn pids_are_ours(&self) -> bool {
        let here = sys::this_thread().pid_namespace;
        here != 0
            && self.foreign_users.load(Ordering::SeqCst) == 0
            && self.home_namespace.load(Ordering::Relaxed) == here
    }

    /// The pid recorded as holding the lock, if any (informational: see the field's doc).
    pub(crate) fn owner_pid(&self) -> Option<u32> {
        match self.owner_pid.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
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
    /// The holder's thread id, as in the word (low half), and how the lock was acquired (high
    /// half: 0 cleanly, else the pid of the holder that died, `u32::MAX` if unknown). One word,
    /// so that the guard is two machine words that copy as written.
    held: u64,
    /// The word names the locking thread, which must be the one to unlock.
    _not_send: PhantomData<*const ()>,
}

impl RawGuard<'_> {
    /// How the lock was acquired.
    pub(crate) fn recovery(&self) -> Recovery {
        match (self.held >> 32) as u32 {
            0 => Recovery::Clean,
            u32::MAX => Recovery::OwnerDied { pid: 0 },
            pid => Recovery::OwnerDied { pid },
        }
    }

    /// After [`Recovery::OwnerDied`]: declares the protected state repaired.
    pub(crate) fn mark_consistent(&self) -> io::Result<()> {
        self.slot.died_pid.store(0, Ordering::Relaxed);
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
    /// the next locker is told the owner died (with the same pid) and repairs again. For a
    /// repair that failed: one damaged entry or one transient error must not brick the lock.
    /// After a clean acquisition, or once marked consistent, this is a plain unlock.
    pub(crate) fn unlock_unrepaired(self) {
        let this = std::mem::ManuallyDrop::new(self);
        if std::thread::panicking() {
            this.slot.poisoned.store(1, Ordering::Release);
        }
        if let Recovery::OwnerDied { pid } = this.recovery() {
            this.slot.died_pid.store(pid, Ordering::Relaxed);
        }
        // Not `drop`, which would make an inconsistent lock not recoverable.
        this.slot.release(this.held as u32);
    }
}

impl Drop for RawGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Unwinding unlocks over possibly half-updated data: tell every process.
            self.slot.poisoned.store(1, Ordering::Release);
        }
        // Released without `mark_consistent`: nobody vouched for the data. (Only the holder
        // writes `state`, so a plain load and store suffice, and keep the fast path free of a
        // second read-modify-write.)
        if self.slot.state.load(Ordering::Relaxed) == INCONSISTENT {
            self.slot.state.store(NOT_RECOVERABLE, Ordering::Release);
        }
        self.slot.release(self.held as u32);
    }
}
