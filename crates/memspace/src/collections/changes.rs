//! The change counter of a structure that `inspect` checks without its lock (the map, the
//! queue): writers mark each change (the counter is odd while one is under way), and a checker
//! keeps only a reading made between two changes.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::segment::Report;
use crate::segment::{self, Segment};
use crate::sync::RawGuard;

/// How often [`verify_between_changes`] tries to read the structure between two changes.
const VERIFY_ATTEMPTS: u32 = 16;

/// Marks the structure as changing (its counter odd) for as long as it lives. A holder killed
/// meanwhile leaves the counter odd; the structure's recovery makes it even again.
pub(crate) struct Change<'a> {
    changes: &'a AtomicU64,
}

impl<'a> Change<'a> {
    /// Starts a change, under the lock (`_held` proves it).
    pub(crate) fn begin(changes: &'a AtomicU64, _held: &RawGuard<'_>) -> Self {
        changes.fetch_add(1, Ordering::Relaxed);
        // The odd value is visible before any of the writes that follow.
        fence(Ordering::Release);
        Change { changes }
    }
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        self.changes.fetch_add(1, Ordering::Release);
    }
}

/// Runs `check` (which is told whether a change was under way when it started) until it read
/// the structure between two changes (`changes` even and unchanged), or while the lock's holder
/// is dead (nothing changes until the next locker recovers), and adds what it found to
/// `report`. After [`VERIFY_ATTEMPTS`] tries it gives up with a note naming `what` (`"the
/// map"`) and the `parts` it could not check (`"entries"`).
pub(crate) fn verify_between_changes(
    segment: &Segment,
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
        let holder_dead = segment
            .lock_owner()
            .is_some_and(|pid| !segment::pid_alive(pid));
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
