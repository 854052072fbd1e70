//! When a blocking call of either engine stops waiting: the deadline of the caller's timeout,
//! and how long each sleep before it may last.

use std::time::{Duration, Instant};

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
