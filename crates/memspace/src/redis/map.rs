//! [`RedisMap`]: a `SharedMap` as a Redis hash whose fields and values are encoded items.

use std::sync::{Arc, LazyLock};

use redis::Script;

use super::{Object, write_script};
use crate::error::Result;

/// `HSET` that returns the value it replaced, atomically, unless the map was removed.
static REPLACE: LazyLock<Script> = LazyLock::new(|| {
    write_script(
        r"
local old = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return old
",
    )
});

/// `HDEL` that returns the value it removed, atomically, unless the map was removed.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    write_script(
        r"
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then redis.call('HDEL', KEYS[2], ARGV[1]) end
return old
",
    )
});

/// Deletes the entries, unless the map was removed.
static CLEAR: LazyLock<Script> = LazyLock::new(|| {
    write_script(
        r"
redis.call('DEL', KEYS[2])
return 1
",
    )
});

/// The Redis side of a `SharedMap`: the hash `memspace:{NAME}:items`, encoded key to encoded
/// value.
#[derive(Debug, Clone)]
pub(crate) struct RedisMap {
    object: Arc<Object>,
    /// The meta hash, which every write checks.
    meta: String,
    items: String,
}

impl RedisMap {
    pub(crate) fn new(object: Arc<Object>) -> Self {
        let (meta, items) = (object.meta_key(), object.key("items"));
        RedisMap {
            object,
            meta,
            items,
        }
    }

    pub(crate) fn object(&self) -> &Object {
        &self.object
    }

    pub(crate) fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let object = &self.object;
        object.conn().write(object.name(), "inserting", |c| {
            REPLACE
                .key(&self.meta)
                .key(&self.items)
                .arg(key)
                .arg(value)
                .invoke(c)
        })
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let object = &self.object;
        object.conn().read(object.name(), "looking up a key", |c| {
            redis::cmd("HGET").arg(&self.items).arg(key).query(c)
        })
    }

    pub(crate) fn contains(&self, key: &[u8]) -> Result<bool> {
        let object = &self.object;
        object.conn().read(object.name(), "looking up a key", |c| {
            redis::cmd("HEXISTS").arg(&self.items).arg(key).query(c)
        })
    }

    pub(crate) fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let object = &self.object;
        object.conn().write(object.name(), "removing a key", |c| {
            TAKE.key(&self.meta).key(&self.items).arg(key).invoke(c)
        })
    }

    pub(crate) fn clear(&self) -> Result<()> {
        let object = &self.object;
        object.conn().write(object.name(), "clearing", |c| {
            CLEAR.key(&self.meta).key(&self.items).invoke::<u64>(c)
        })?;
        Ok(())
    }

    pub(crate) fn len(&self) -> Result<u64> {
        let object = &self.object;
        object
            .conn()
            .read(object.name(), "reading the length", |c| {
                redis::cmd("HLEN").arg(&self.items).query(c)
            })
    }

    /// Every entry, in one `HGETALL` (a consistent snapshot).
    pub(crate) fn all(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let object = &self.object;
        object
            .conn()
            .read(object.name(), "reading the entries", |c| {
                redis::cmd("HGETALL").arg(&self.items).query(c)
            })
    }
}
