//! [`RedisEvent`]: an `Event` as a Redis string, `1` when set. Waiters poll it (every 2 ms at
//! first, backing off to 50 ms): simple, and it survives a server restart, which a
//! subscription would not.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use redis::Script;

use super::{Object, write_script};
use crate::error::{Error, OpenError, Result};

/// Sets the flag to `ARGV[1]`, unless the event was removed.
static STORE: LazyLock<Script> = LazyLock::new(|| {
    write_script(
        r"
redis.call('SET', KEYS[2], ARGV[1])
return 1
",
    )
});

/// The Redis side of an `Event`: the string `memspace:{NAME}:items`.
#[derive(Debug, Clone)]
pub(crate) struct RedisEvent {
    object: Arc<Object>,
    /// The meta hash, which every write checks.
    meta: String,
    items: String,
}

impl RedisEvent {
    pub(crate) fn new(object: Arc<Object>) -> Self {
        let (meta, items) = (object.meta_key(), object.key("items"));
        RedisEvent {
            object,
            meta,
            items,
        }
    }

    pub(crate) fn object(&self) -> &Object {
        &self.object
    }

    /// Sets (`true`) or clears the flag, or fails with `OpenError::NotFound` if the event was
    /// removed. Idempotent, so it is retried like a read.
    pub(crate) fn store(&self, set: bool) -> Result<()> {
        let object = &self.object;
        object.conn().read(object.name(), "setting", |c| {
            STORE
                .key(&self.meta)
                .key(&self.items)
                .arg(if set { "1" } else { "0" })
                .invoke::<u64>(c)
        })?;
        Ok(())
    }

    /// Whether the flag is set; `OpenError::NotFound` if the event was removed (its flag is
    /// written at creation and by every store, so only removal, or damage, leaves none).
    pub(crate) fn is_set(&self) -> Result<bool> {
        let object = &self.object;
        let (flag, described): (Option<String>, bool) =
            object.conn().read(object.name(), "reading", |c| {
                redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg(&self.items)
                    .cmd("EXISTS")
                    .arg(&self.meta)
                    .query(c)
            })?;
        match flag {
            Some(flag) => Ok(flag == "1"),
            None if !described => Err(OpenError::NotFound {
                name: object.name().clone(),
            }
            .into()),
            None => Err(Error::Corrupt {
                name: object.name().clone(),
                what: format!(
                    "its flag key `{}` is missing; remove the event with `memspace rm` and \
                     create it again",
                    self.items
                ),
            }),
        }
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
