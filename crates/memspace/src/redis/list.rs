//! [`RedisList`]: a `SharedList` as a Redis list of encoded items (`RPUSH`, `LINDEX`, `LRANGE`).

use std::sync::Arc;

use super::Object;
use crate::error::Result;

/// The Redis side of a `SharedList`: encoded items in the list `memspace:{NAME}:items`.
#[derive(Debug, Clone)]
pub(crate) struct RedisList {
    object: Arc<Object>,
    items: String,
}

impl RedisList {
    pub(crate) fn new(object: Arc<Object>) -> Self {
        let items = object.key("items");
        RedisList { object, items }
    }

    pub(crate) fn object(&self) -> &Object {
        &self.object
    }

    /// Appends the payloads in one `RPUSH`: atomic, so other writers' items do not interleave.
    pub(crate) fn push(&self, payloads: &[Vec<u8>]) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        let object = &self.object;
        object.conn().write(object.name(), "pushing", |c| {
            redis::cmd("RPUSH")
                .arg(&self.items)
                .arg(payloads)
                .query::<u64>(c)
        })?;
        Ok(())
    }

    pub(crate) fn len(&self) -> Result<u64> {
        let object = &self.object;
        object
            .conn()
            .read(object.name(), "reading the length", |c| {
                redis::cmd("LLEN").arg(&self.items).query(c)
            })
    }

    pub(crate) fn get(&self, index: u64) -> Result<Option<Vec<u8>>> {
        let object = &self.object;
        object.conn().read(object.name(), "reading an item", |c| {
            redis::cmd("LINDEX").arg(&self.items).arg(index).query(c)
        })
    }

    /// Every item, in one `LRANGE`.
    pub(crate) fn all(&self) -> Result<Vec<Vec<u8>>> {
        let object = &self.object;
        object.conn().read(object.name(), "reading the items", |c| {
            redis::cmd("LRANGE")
                .arg(&self.items)
                .arg(0)
                .arg(-1)
                .query(c)
        })
    }
}
