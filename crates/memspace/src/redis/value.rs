//! [`RedisValue`]: a `Value<T>` as a Redis string holding `T`'s bytes, updated with
//! `WATCH`/`MULTI`/`EXEC` so that an update is atomic.

use std::sync::{Arc, LazyLock};

use redis::Script;

use super::{Object, write_script};
use crate::error::Result;

/// Replaces the bytes, unless the value was removed.
static SET: LazyLock<Script> = LazyLock::new(|| {
    write_script(
        r"
redis.call('SET', KEYS[2], ARGV[1])
return 1
",
    )
});

/// How one optimistic attempt at an update ended.
enum Attempt {
    /// The new bytes were stored.
    Applied(Vec<u8>),
    /// Another writer changed the value (or removed it) first: nothing was stored.
    Raced,
    /// The meta hash is gone: the value was removed, and nothing was stored.
    Removed,
    /// The value key is missing (the meta hash is there): nothing was stored.
    Missing,
    /// `change` left the value as it was (it cannot read these bytes): nothing was stored.
    Declined(Vec<u8>),
}

/// The Redis side of a `Value<T>`: the string `memspace:{NAME}:items`.
#[derive(Debug, Clone)]
pub(crate) struct RedisValue {
    object: Arc<Object>,
    /// The meta hash, which every write checks.
    meta: String,
    items: String,
}

impl RedisValue {
    pub(crate) fn new(object: Arc<Object>) -> Self {
        let (meta, items) = (object.meta_key(), object.key("items"));
        RedisValue {
            object,
            meta,
            items,
        }
    }

    pub(crate) fn object(&self) -> &Object {
        &self.object
    }

    pub(crate) fn get(&self) -> Result<Vec<u8>> {
        let object = &self.object;
        let bytes: Option<Vec<u8>> = object.conn().read(object.name(), "reading", |c| {
            redis::cmd("GET").arg(&self.items).query(c)
        })?;
        match bytes {
            Some(bytes) => Ok(bytes),
            None => Err(self.missing()?),
        }
    }

    /// Why the value key is missing: `OpenError::NotFound` if the value was removed (its meta
    /// hash is gone too), else `Error::Corrupt`.
    fn missing(&self) -> Result<crate::error::Error> {
        let object = &self.object;
        let exists: bool = object.conn().read(object.name(), "reading", |c| {
            redis::cmd("EXISTS").arg(&self.meta).query(c)
        })?;
        Ok(if exists {
            self.missing_key()
        } else {
            crate::error::OpenError::NotFound {
                name: object.name().clone(),
            }
            .into()
        })
    }

    /// The value key is missing while the meta hash says the value exists.
    fn missing_key(&self) -> crate::error::Error {
        crate::error::Error::Corrupt {
            name: self.object.name().clone(),
            what: format!("its value key `{}` is missing", self.items),
        }
    }

    /// Replaces the bytes, or fails with `OpenError::NotFound` if the value was removed.
    pub(crate) fn set(&self, bytes: &[u8]) -> Result<()> {
        let object = &self.object;
        object.conn().write(object.name(), "writing", |c| {
            SET.key(&self.meta)
                .key(&self.items)
                .arg(bytes)
                .invoke::<u64>(c)
        })?;
        Ok(())
    }

    /// Applies `change` to the current bytes and stores the result, unless another writer
    /// changed the value in between (then it starts again). Returns the new bytes, or the
    /// current ones, unwritten, if `change` returns `None`. Fails without storing anything if
    /// the value was removed (`OpenError::NotFound`) or its key is missing (`Error::Corrupt`):
    /// `change` does not run then.
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
                    .arg(&self.meta)
                    .arg(&self.items)
                    .query::<()>(c)?;
                let (current, exists): (Option<Vec<u8>>, bool) = redis::pipe()
                    .cmd("GET")
                    .arg(&self.items)
                    .cmd("EXISTS")
                    .arg(&self.meta)
                    .query(c)?;
                let Some(current) = current.filter(|_| exists) else {
                    redis::cmd("UNWATCH").query::<()>(c)?;
                    return Ok(if exists {
                        Attempt::Missing
                    } else {
                        Attempt::Removed
                    });
                };
                let Some(new) = change(&current) else {
                    redis::cmd("UNWATCH").query::<()>(c)?;
                    return Ok(Attempt::Declined(current));
                };
                let applied: Option<()> = redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&self.items)
                    .arg(&new)
                    .ignore()
                    .query(c)?;
                Ok(applied.map_or(Attempt::Raced, |()| Attempt::Applied(new)))
            })?;
            match attempt {
                Attempt::Applied(bytes) | Attempt::Declined(bytes) => return Ok(bytes),
                Attempt::Raced => {}
                Attempt::Removed => {
                    return Err(crate::error::OpenError::NotFound {
                        name: object.name().clone(),
                    }
                    .into());
                }
                Attempt::Missing => return Err(self.missing_key()),
            }
        }
    }
}
