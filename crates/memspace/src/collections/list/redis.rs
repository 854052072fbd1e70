//! [`RedisList`]: a `SharedList` as a Redis list of encoded items (`RPUSH`, `LINDEX`, `LRANGE`).

use std::sync::{Arc, LazyLock};

use redis::Script;

use crate::error::Result;
use crate::redis::{Object, checked_script};

/// `RPUSH` of every argument, unless the object was removed. Lua's `unpack` takes a few
/// thousand values at most, so long batches go in slices; the script is one atomic step all
/// the same, and other writers' items do not interleave.
static PUSH: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local len = 0
for i = 1, #ARGV, 4000 do
  len = redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
end
return len
",
    )
});

/// The Redis side of a `SharedList`: encoded items in the list `memspace:{NAME}:items`.
#[derive(Debug, Clone)]
pub(crate) struct RedisList {
    object: Arc<Object>,
}

redis_engine!(RedisList);

impl RedisList {
    /// Appends the payloads in one atomic step, or fails with `OpenError::NotFound` if the
    /// list was removed.
    pub(crate) fn push(&self, payloads: &[Vec<u8>]) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        let object = &self.object;
        object.conn().write(object.name(), "pushing", |c| {
            object
                .guarded(&PUSH)
                .key(self.object.items_key())
                .arg(payloads)
                .invoke::<u64>(c)
        })?;
        Ok(())
    }

    pub(crate) fn len(&self) -> Result<u64> {
        self.object
            .read_checked("reading the length", self.object.items_key(), &[b"LLEN"])
    }

    pub(crate) fn get(&self, index: u64) -> Result<Option<Vec<u8>>> {
        let index = index.to_string();
        self.object.read_checked(
            "reading an item",
            self.object.items_key(),
            &[b"LINDEX", index.as_bytes()],
        )
    }

    /// Every item, in one `LRANGE`.
    pub(crate) fn all(&self) -> Result<Vec<Vec<u8>>> {
        let mut range = redis::cmd("LRANGE");
        range.arg(self.object.items_key()).arg(0).arg(-1);
        self.object.read_bulk("reading the items", range)
    }
}
