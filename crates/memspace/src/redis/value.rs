//! [`RedisValue`]: a `Value<T>` as a Redis string holding `T`'s bytes, updated with
//! `WATCH`/`MULTI`/`EXEC` so that an update is atomic.

use std::sync::Arc;

use super::Object;
use crate::error::Result;

/// The Redis side of a `Value<T>`: the string `memspace:{NAME}:items`.
#[derive(Debug, Clone)]
pub(crate) struct RedisValue {
    object: Arc<Object>,
    items: String,
}

impl RedisValue {
    pub(crate) fn new(object: Arc<Object>) -> Self {
        let items = object.key("items");
        RedisValue { object, items }
    }

    pub(crate) fn object(&self) -> &Object {
        &self.object
    }

    pub(crate) fn get(&self) -> Result<Vec<u8>> {
        let object = &self.object;
        let bytes: Option<Vec<u8>> = object.conn().read(object.name(), "reading", |c| {
            redis::cmd("GET").arg(&self.items).query(c)
        })?;
        bytes.ok_or_else(|| crate::error::Error::Corrupt {
            name: object.name().clone(),
            what: "its value key is missing".to_owned(),
        })
    }

    pub(crate) fn set(&self, bytes: &[u8]) -> Result<()> {
        let object = &self.object;
        object.conn().write(object.name(), "writing", |c| {
            redis::cmd("SET").arg(&self.items).arg(bytes).query::<()>(c)
        })
    }

    /// Applies `change` to the current bytes and stores the result, unless another writer
    /// changed the value in between (then it starts again). Returns the new bytes.
    ///
    /// Safe to run again after a lost connection: `EXEC` either applied the whole update or
    /// nothing, and a retry re-reads the value first. A lost answer to `EXEC` itself is
    /// reported, not retried.
    pub(crate) fn update(&self, change: &mut dyn FnMut(&[u8]) -> Vec<u8>) -> Result<Vec<u8>> {
        let object = &self.object;
        loop {
            let outcome: Option<Vec<u8>> = object.conn().write(object.name(), "updating", |c| {
                redis::cmd("WATCH").arg(&self.items).query::<()>(c)?;
                let current: Option<Vec<u8>> = redis::cmd("GET").arg(&self.items).query(c)?;
                let new = change(current.as_deref().unwrap_or_default());
                let applied: Option<()> = redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&self.items)
                    .arg(&new)
                    .ignore()
                    .query(c)?;
                Ok(applied.map(|()| new))
            })?;
            if let Some(new) = outcome {
                return Ok(new);
            }
        }
    }
}
