//! [`RedisEvent`]: an `Event` as a Redis string, `1` when set. Waiters poll it (every 2 ms at
//! first, backing off to 50 ms): simple, and it survives a server restart, which a
//! subscription would not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::redis::{CHECKED_SET, Object};

/// The Redis side of an `Event`: the string `memspace:{NAME}:items`.
#[derive(Debug, Clone)]
pub(crate) struct RedisEvent {
    object: Arc<Object>,
}

redis_engine!(RedisEvent);

impl RedisEvent {
    /// Sets (`true`) or clears the flag, or fails with `OpenError::NotFound` if the event was
    /// removed. Idempotent, so it is retried like a read.
    pub(crate) fn store(&self, set: bool) -> Result<()> {
        let object = &self.object;
        object.conn().read(object.name(), "setting", |c| {
            object
                .guarded(&CHECKED_SET)
                .key(self.object.items_key())
                .arg(if set { "1" } else { "0" })
                .invoke::<u64>(c)
        })?;
        Ok(())
    }

    /// Whether the flag is set; `OpenError::NotFound` if the event was removed,
    /// `OpenError::Replaced` if it was created again (its flag is written at creation and by
    /// every store, so only removal, or damage, leaves none).
    pub(crate) fn is_set(&self) -> Result<bool> {
        Ok(self
            .object
            .get_checked("reading", self.object.items_key())?
            == b"1")
    }

    /// Waits until the flag is set or `timeout` (if any) passes; returns whether it is set.
    /// An event removed meanwhile ends the wait with `OpenError::NotFound`.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut pause = Duration::from_millis(2);
        loop {
            if self.is_set()? {
                return Ok(true);
            }
            let sleep = match deadline {
                None => pause,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(pause),
                    _ => return Ok(false),
                },
            };
            std::thread::sleep(sleep);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}
