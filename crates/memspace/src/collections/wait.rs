//! When a blocking call of a queue stops waiting (`Queue`'s engines and `PodQueue`): the
//! deadline of the caller's timeout, how long each sleep before it may last, and how long to
//! spin before sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long [`spin_while`] spins at first, in nanoseconds: about what a futex sleep and its
/// wake-up cost the two sides together.
const SPIN_START: u64 = 4_000;
/// The least a budget shrinks to, so that it can grow again once spinning pays.
const SPIN_LEAST: u64 = 500;
/// The most a budget grows to.
const SPIN_MOST: u64 = 20_000;
/// Rounds of `spin_loop` between two looks at the clock.
const ROUNDS_PER_LOOK: u32 = 32;

/// This process's budget for [`spin_while`], in nanoseconds: doubled each time a spin saw the
/// change, halved each time it did not, so that spinning goes on only while it pays (the other
/// side runs on another core and answers within the budget) and stops costing a core when it
/// does not (an idle queue, or more runnable threads than cores).
static SPIN_BUDGET: AtomicU64 = AtomicU64::new(SPIN_START);

/// Spins while the futex word in the low half of `word` still holds `seen`, for at most this
/// process's budget and never past `deadline`. For a caller about to sleep on it, holding no
/// lock: a change seen here saves the sleep and the other side's wake-up system call.
pub(super) fn spin_while(word: &AtomicU64, seen: u32, deadline: Option<Instant>) {
    spin_until(|| word.load(Ordering::Relaxed) as u32 != seen, deadline);
}

/// Spins until `changed` says so, for at most this process's budget (see [`SPIN_BUDGET`]) and
/// never past `deadline`; returns whether it did.
#[inline]
pub(super) fn spin_until(changed: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
    let budget = SPIN_BUDGET.load(Ordering::Relaxed);
    let start = Instant::now();
    let until = start + Duration::from_nanos(budget);
    let until = deadline.map_or(until, |deadline| deadline.min(until));
    loop {
        for _ in 0..ROUNDS_PER_LOOK {
            if changed() {
                SPIN_BUDGET.store((budget * 2).min(SPIN_MOST), Ordering::Relaxed);
                return true;
            }
            std::hint::spin_loop();
        }
        if Instant::now() >= until {
            break;
        }
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

    /// A bound on each sleep, as a queue's redelivery check gives.
    const REDELIVERY_CHECK: Duration = Duration::from_millis(50);

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
