//! [`RedisValue`]: a `Value<T>` as a Redis string holding `T`'s bytes, updated with
//! `WATCH`/`MULTI`/`EXEC` so that an update is atomic.

use std::sync::Arc;

use crate::error::Result;
use crate::redis::{CHECKED_SET, Object};

/// How one optimistic attempt at an update ended.
enum Attempt {
    /// The new bytes were stored.
    Applied(Vec<u8>),
    /// Another writer changed the value (or removed it) first: nothing was stored.
    Raced,
    /// The value key is missing, or the meta hash is gone or records another incarnation:
    /// nothing was stored.
    Absent,
    /// `change` left the value as it was (it cannot read these bytes): nothing was stored.
    Declined(Vec<u8>),
}

/// The Redis side of a `Value<T>`: the string `memspace:{NAME}:items`.
#[derive(Debug, Clone)]
pub(crate) struct RedisValue {
    object: Arc<Object>,
}

redis_engine!(RedisValue);

impl RedisValue {
    /// The bytes; `OpenError::NotFound` if the value was removed, `OpenError::Replaced` if it
    /// was created again, `Error::Corrupt` if its key is missing.
    pub(crate) fn get(&self) -> Result<Vec<u8>> {
        self.object.get_checked("reading", self.object.items_key())
    }

    /// Replaces the bytes, or fails with `OpenError::NotFound` if the value was removed.
    pub(crate) fn set(&self, bytes: &[u8]) -> Result<()> {
        let object = &self.object;
        object.conn().write(object.name(), "writing", |c| {
            object
                .guarded(&CHECKED_SET)
                .key(self.object.items_key())
                .arg(bytes)
                .invoke::<u64>(c)
        })?;
        Ok(())
    }

    /// Applies `change` to the current bytes and stores the result, unless another writer
    /// changed the value in between (then it starts again). Returns the new bytes, or the
    /// current ones, unwritten, if `change` returns `None`. Fails without storing anything if
    /// the value was removed (`OpenError::NotFound`), created again (`OpenError::Replaced`) or
    /// its key is missing (`Error::Corrupt`): `change` does not run then.
    ///
    /// Safe to run again after a lost connection: `EXEC` either applied the whole update or
    /// nothing, and a retry re-reads the value first. A lost answer to `EXEC` itself is
    /// reported, not retried. The meta hash is watched with the value, so a removal between
    /// the read and `EXEC` makes `EXEC` store nothing, and the next attempt sees it.
    pub(crate) fn update(
        &self,
        change: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let object = &self.object;
        loop {
            let attempt = object.conn().write(object.name(), "updating", |c| {
                redis::cmd("WATCH")
                    .arg(object.meta_key())
                    .arg(self.object.items_key())
                    .query::<()>(c)?;
                let attempt = self.attempt(c, change);
                // `EXEC` ends the watch; any other ending must, or the connection would carry
                // it back to the pool and into its next transaction.
                if !matches!(attempt, Ok(Attempt::Applied(_) | Attempt::Raced)) {
                    let _ = redis::cmd("UNWATCH").query::<()>(c);
                }
                attempt
            })?;
            match attempt {
                Attempt::Applied(bytes) | Attempt::Declined(bytes) => return Ok(bytes),
                Attempt::Raced => {}
                Attempt::Absent => {
                    return Err(object.explain_missing(
                        "updating",
                        format!("its key `{}` is missing", self.object.items_key()),
                    ));
                }
            }
        }
    }

    /// One attempt of [`RedisValue::update`], under the `WATCH` of the value and its meta hash.
    fn attempt(
        &self,
        c: &mut crate::redis::Link,
        change: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> redis::RedisResult<Attempt> {
        let object = &self.object;
        // The incarnation first: the key of an object made later under the name may hold
        // another type, which `GET` would refuse.
        let incarnation: Option<String> = redis::cmd("HGET")
            .arg(object.meta_key())
            .arg("incarnation")
            .query(c)?;
        let current: Option<Vec<u8>> = if incarnation.as_deref() == Some(object.incarnation()) {
            redis::cmd("GET").arg(self.object.items_key()).query(c)?
        } else {
            None
        };
        let Some(current) = current else {
            return Ok(Attempt::Absent);
        };
        let Some(new) = change(&current) else {
            return Ok(Attempt::Declined(current));
        };
        let applied: Option<()> = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.object.items_key())
            .arg(&new)
            .ignore()
            .query(c)?;
        Ok(applied.map_or(Attempt::Raced, |()| Attempt::Applied(new)))
    }
}
