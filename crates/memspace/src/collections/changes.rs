//! The change counter (a sequence lock) of a structure read without its lock (the list's and
//! the map's readers, and `inspect` for the map and the queue): writers mark each change (the
//! counter is odd while one is under way), and a reader keeps only what it read between two
//! changes.
//!
//! [`read_stable`] is the readers' loop, shared by the list and the map: read with the counter
//! even, check it did not move, otherwise back off and read again; take the lock when the
//! holder died (which repairs the structure) or when changes keep overtaking the read.

use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::Duration;

use crate::error::Result;
use crate::segment::Report;
use crate::segment::{self, LockSlot, Segment};
use crate::sync::RawGuard;

/// How many times a reader retries at once (spinning) before it yields, and yields before it
/// sleeps.
const SPINS: u32 = 64;
const YIELDS: u32 = 128;
/// How long a reader sleeps between tries once it stopped spinning and yielding.
const NAP: Duration = Duration::from_micros(50);
/// Every this many naps, a reader looks whether the lock's holder died.
const NAPS_PER_LOOK: u32 = 64;
/// After this many reads overtaken by changes, a reader reads under the lock.
const OVERTAKEN: u32 = 32;

/// How often [`verify_between_changes`] tries to read the structure between two changes.
const VERIFY_ATTEMPTS: u32 = 16;

/// Marks the structure as changing (its counter odd) for as long as it lives. A holder killed
/// meanwhile leaves the counter odd; the structure's recovery makes it even again.
pub(crate) struct Change<'a> {
    changes: &'a AtomicU64,
}

impl<'a> Change<'a> {
    /// Starts a change, under the lock (`_held` proves it).
    ///
    /// Only holders of the lock write the counter, so a load and a store step it: no locked
    /// read-modify-write, which costs more than the rest of a small change.
    pub(crate) fn begin(changes: &'a AtomicU64, _held: &RawGuard<'_>) -> Self {
        step(changes, Ordering::Relaxed);
        // The odd value is visible before any of the writes that follow.
        fence(Ordering::Release);
        Change { changes }
    }
}

impl<'a> Change<'a> {
    /// Starts the change of a recovery, under the lock of a holder that died: continues the
    /// change the dead holder left under way (the counter odd: it stays odd for the whole
    /// repair, so that no reader takes half-repaired words for a state of the structure), or
    /// starts one. A recovery that fails should [`forget`](std::mem::forget) its change: the
    /// counter then stays odd, and readers wait for the next locker's repair (or, with nobody
    /// holding the lock, report the damage) instead of reading what the failed repair left.
    pub(crate) fn recovering(changes: &'a AtomicU64, held: &RawGuard<'_>) -> Self {
        if changes.load(Ordering::Relaxed).is_multiple_of(2) {
            return Change::begin(changes, held);
        }
        // The repair's writes come after the odd value in this thread's order too.
        fence(Ordering::Release);
        Change { changes }
    }
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        // The writes of the change happen-before the even value.
        step(self.changes, Ordering::Release);
    }
}

/// Adds one to `changes`, which only the holder of the lock writes.
fn step(changes: &AtomicU64, order: Ordering) {
    changes.store(changes.load(Ordering::Relaxed).wrapping_add(1), order);
}

/// Adds `n` to a count that only holders of the structure's lock change (a queue's waiting and
/// unacknowledged items, a list's live bytes); saturating, so that a damaged count cannot
/// overflow.
///
/// A plain load and a store step it, as [`Change`] steps its counter: no locked
/// read-modify-write, which costs more than the rest of a small change. That is enough
/// because every writer holds the lock, so no other write falls between the load and the
/// store; a reader without the lock sees the old count or the new one, never a mix, and a
/// reader that needs the count to agree with the rest of the structure keeps only what it read
/// between two changes (the change counter even and unmoved, see [`read_stable`]).
pub(crate) fn count_up(count: &AtomicU64, n: u64) {
    count.store(
        count.load(Ordering::Relaxed).saturating_add(n),
        Ordering::Relaxed,
    );
}

/// Subtracts `n` from a count that only holders of the structure's lock change (see
/// [`count_up`]); never below 0, so that a damaged count cannot wrap to a huge one.
pub(crate) fn count_down(count: &AtomicU64, n: u64) {
    count.store(
        count.load(Ordering::Relaxed).saturating_sub(n),
        Ordering::Relaxed,
    );
}

/// Runs `check` (which is told whether a change was under way when it started) until it read
/// the structure between two changes (`changes` even and unchanged), or while the holder of
/// `lock` (the lock whose holders write `changes`) is dead (nothing changes until the next
/// locker recovers), and adds what it found to
/// `report`. After [`VERIFY_ATTEMPTS`] tries it gives up with a note naming `what` (`"the
/// map"`) and the `parts` it could not check (`"entries"`).
pub(crate) fn verify_between_changes(
    lock: &LockSlot,
    changes: &AtomicU64,
    (what, parts): (&str, &str),
    report: &mut Report,
    mut check: impl FnMut(&mut Report, bool),
) {
    for _ in 0..VERIFY_ATTEMPTS {
        let before = changes.load(Ordering::Acquire);
        let interrupted = !before.is_multiple_of(2);
        let mut found = Report::default();
        check(&mut found, interrupted);
        fence(Ordering::Acquire);
        let after = changes.load(Ordering::Relaxed);
        let holder_dead = lock.owner_pid().is_some_and(|pid| !segment::pid_alive(pid));
        if before == after && (!interrupted || holder_dead) {
            for problem in found.problems {
                report.problem(problem);
            }
            for note in found.notes {
                report.note(note);
            }
            report.items_checked += found.items_checked;
            return;
        }
        std::thread::yield_now();
    }
    report.note(format!(
        "{what} changed during each of {VERIFY_ATTEMPTS} attempts to check it; its {parts} \
         were not checked"
    ));
}

/// A reader's view of the change counter from the start of its read: whether it still holds.
pub(crate) struct Window<'a> {
    changes: &'a AtomicU64,
    before: u64,
}

impl<'a> Window<'a> {
    /// The window of a read starting now, if no change is under way (the counter even).
    #[inline]
    pub(crate) fn open(changes: &'a AtomicU64) -> Option<Self> {
        let before = changes.load(Ordering::Acquire);
        before
            .is_multiple_of(2)
            .then_some(Window { changes, before })
    }

    /// Whether no change began since the read started: what was read so far was published
    /// (and, if it was copied from bytes a writer reuses, not overwritten meanwhile).
    #[inline]
    pub(crate) fn unchanged(&self) -> bool {
        fence(Ordering::Acquire);
        self.changes.load(Ordering::Relaxed) == self.before
    }
}

/// Runs `read` between two changes of the structure whose counter is `changes`, in `segment`:
/// until it ran with the counter even and unchanged, and returned `Some` (`None`: it saw its
/// window close). What it found (an error included) counts only then. `lock` takes the
/// structure's lock, repairing it if its holder died.
///
/// While a change is under way it spins, then yields, then naps; every few milliseconds of
/// naps it looks whether the lock's holder died, and if so takes the lock (which repairs the
/// structure); if nobody holds the lock at two looks in a row while the counter stays at the
/// same odd value, the odd counter is damage. A read overtaken by changes [`OVERTAKEN`] times
/// is made under the lock, so no writer can starve a reader.
#[inline]
pub(crate) fn read_stable<'a, R, G>(
    segment: &'a Segment,
    changes: &'a AtomicU64,
    lock: impl Fn() -> Result<G>,
    mut read: impl FnMut(&Window<'a>) -> Result<Option<R>>,
) -> Result<R> {
    let (mut waits, mut overtaken) = (Waits::default(), 0u32);
    loop {
        let before = changes.load(Ordering::Acquire);
        if before.is_multiple_of(2) {
            let window = Window { changes, before };
            let result = read(&window);
            if window.unchanged()
                && let Some(found) = result.transpose()
            {
                return found;
            }
            overtaken += 1;
            if overtaken >= OVERTAKEN {
                return read_locked(segment, changes, &lock, read);
            }
        }
        back_off(segment, &lock, &mut waits, before)?;
    }
}

/// Runs `read` under the lock, where nothing changes.
#[cold]
fn read_locked<'a, R, G>(
    segment: &'a Segment,
    changes: &'a AtomicU64,
    lock: impl Fn() -> Result<G>,
    mut read: impl FnMut(&Window<'a>) -> Result<Option<R>>,
) -> Result<R> {
    let _held = lock()?;
    let window = Window {
        changes,
        before: changes.load(Ordering::Relaxed),
    };
    read(&window)?.ok_or_else(|| segment.corrupt("it changed while its lock was held".to_owned()))
}

/// Waits a little before a reader tries again, having found the counter at `seen` (see
/// [`read_stable`]).
#[cold]
fn back_off<G>(
    segment: &Segment,
    lock: impl Fn() -> Result<G>,
    waits: &mut Waits,
    seen: u64,
) -> Result<()> {
    waits.count = waits.count.saturating_add(1);
    if waits.count < SPINS {
        std::hint::spin_loop();
    } else if waits.count < YIELDS {
        std::thread::yield_now();
    } else {
        std::thread::sleep(NAP);
        // After a look that found nobody holding the lock, the next nap looks again.
        let due = (waits.count - YIELDS).is_multiple_of(NAPS_PER_LOOK) || waits.unheld.is_some();
        if !due || seen.is_multiple_of(2) {
            return Ok(());
        }
        match segment.lock_owner() {
            Some(pid) if !segment::pid_alive(pid) => drop(lock()?),
            Some(_) => waits.unheld = None,
            // A holder makes the counter odd only while it holds the lock, with its pid
            // recorded, and even again before it lets go.
            None if waits.unheld == Some(seen) => {
                return Err(segment.corrupt(
                    "its sequence word says a change is under way, but nobody holds its lock"
                        .to_owned(),
                ));
            }
            None => waits.unheld = Some(seen),
        }
    }
    Ok(())
}

/// How long a reader has waited (see [`back_off`]).
#[derive(Default)]
struct Waits {
    count: u32,
    /// The odd counter at the last look that found nobody holding the lock.
    unheld: Option<u64>,
}
