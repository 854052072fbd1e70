//! When a blocking call of either engine stops waiting: the deadline of the caller's timeout,
//! and how long each sleep before it may last.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Rounds of [`spin_while`] at first, at least and at most. A round is one `spin_loop` hint
/// and one load: the most is some microseconds, less than a futex sleep and wake-up cost.
const SPIN_START: u32 = 1 << 8;
const SPIN_LEAST: u32 = 1 << 4;
const SPIN_MOST: u32 = 1 << 11;

/// This process's budget of rounds for [`spin_while`]: doubled each time a spin saw the
/// change, halved each time it did not, so that spinning goes on only while it pays (the
/// other side runs on another core and answers within the budget) and stops costing a core
/// when it does not (an idle queue, or more runnable threads than cores).
static SPIN_BUDGET: AtomicU32 = AtomicU32::new(SPIN_START);

/// Spins while `word` still holds `seen`, at most this process's budget of rounds; whether it
/// changed meanwhile. For a caller about to sleep on `word`, who unlocked first: a change
/// seen here saves the sleep and the other side's wake-up system call.
pub(super) fn spin_while(word: &AtomicU32, seen: u32) -> bool {
    let budget = SPIN_BUDGET.load(Ordering::Relaxed);
    for _ in 0..budget {
        if word.load(Ordering::Relaxed) != seen {
            SPIN_BUDGET.store((budget * 2).min(SPIN_MOST), Ordering::Relaxed);
            return true;
        }
        std::hint::spin_loop();
    }
    SPIN_BUDGET.store((budget / 2).max(SPIN_LEAST), Ordering::Relaxed);
    false
}

/// When a timed call gives up (`None`: never, also for a timeout too large to represent).
pub(super) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// What a waiting loop does next.
pub(super) enum Next {
    /// Sleep at most this long (`None`: until woken).
    Sleep(Option<Duration>),
    /// The deadline passed.
    GiveUp,
}

/// How long to sleep before `deadline`, at most `at_most`.
pub(super) fn next_sleep(
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    at_most: Option<Duration>,
) -> Next {
    let left = match (timeout, deadline) {
        (None, _) | (Some(_), None) => None,
        (Some(_), Some(deadline)) => match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => return Next::GiveUp,
        },
    };
    Next::Sleep(match (left, at_most) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collections::queue::shm::REDELIVERY_CHECK;

    #[test]
    fn next_sleep_gives_up_only_after_a_deadline() {
        assert!(matches!(next_sleep(None, None, None), Next::Sleep(None)));
        assert!(matches!(
            next_sleep(None, None, Some(REDELIVERY_CHECK)),
            Next::Sleep(Some(REDELIVERY_CHECK))
        ));
        let past = Instant::now();
        assert!(matches!(
            next_sleep(Some(Duration::ZERO), Some(past), None),
            Next::GiveUp
        ));
        // A timeout too large for an `Instant` never expires.
        assert!(matches!(
            next_sleep(Some(Duration::MAX), None, None),
            Next::Sleep(None)
        ));
        let later = Instant::now() + Duration::from_hours(1);
        match next_sleep(
            Some(Duration::from_hours(1)),
            Some(later),
            Some(REDELIVERY_CHECK),
        ) {
            Next::Sleep(Some(sleep)) => assert_eq!(sleep, REDELIVERY_CHECK),
            _ => panic!("expected a bounded sleep"),
        }
    }
}
