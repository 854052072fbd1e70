//! [`RedisList`]: a `SharedList` as a Redis list of encoded items (`RPUSH`, `LINDEX`, `LRANGE`,
//! `LSET`, `RPOP`, and scripts for the changes at an index). Every write runs in a checked
//! script (see `redis::script`): one atomic step, only on the list this handle opened.

use std::sync::{Arc, LazyLock};

use redis::Script;

use crate::error::{Error, Result};
use crate::redis::{Object, checked_script};

/// What a script that changes the item at an index answers: `{len}` if the index was out of
/// range (nothing changed), else `{len, item}` (the removed item, or an empty string), the
/// length as text, as it was before the change.
type Answer = Vec<Vec<u8>>;

/// `LSET` of item `ARGV[1]` to `ARGV[2]`, answering as [`Answer`].
static SET: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local len = redis.call('LLEN', KEYS[2])
local i = tonumber(ARGV[1])
if i >= len then return {tostring(len)} end
redis.call('LSET', KEYS[2], i, ARGV[2])
return {tostring(len), ''}
",
    )
});

/// Inserts `ARGV[2]` at index `ARGV[1]` (at most the length), moving the items from there
/// one place up; answers as [`Answer`]. O(n) in the items moved.
static INSERT: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local len = redis.call('LLEN', KEYS[2])
local i = tonumber(ARGV[1])
if i > len then return {tostring(len)} end
if i == 0 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
elseif i == len then
  redis.call('RPUSH', KEYS[2], ARGV[2])
else
  local rest = redis.call('LRANGE', KEYS[2], i, -1)
  redis.call('LTRIM', KEYS[2], 0, i - 1)
  redis.call('RPUSH', KEYS[2], ARGV[2])
  for j = 1, #rest, 4000 do
    redis.call('RPUSH', KEYS[2], unpack(rest, j, math.min(j + 3999, #rest)))
  end
end
return {tostring(len), ''}
",
    )
});

/// Removes the item at index `ARGV[1]` and answers it, as [`Answer`]: with `ARGV[2]` =
/// `swap`, the last item takes its place; otherwise the items after it move one place down
/// (the item is overwritten with a marker that no encoded item equals, and the marker
/// removed: 0xC1 never begins a `MessagePack` value).
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local len = redis.call('LLEN', KEYS[2])
local i = tonumber(ARGV[1])
if i >= len then return {tostring(len)} end
local item = redis.call('LINDEX', KEYS[2], i)
if i == len - 1 then
  redis.call('RPOP', KEYS[2])
elseif ARGV[2] == 'swap' then
  redis.call('LSET', KEYS[2], i, redis.call('RPOP', KEYS[2]))
else
  local marker = '93memspace-removed'
  redis.call('LSET', KEYS[2], i, marker)
  redis.call('LREM', KEYS[2], 1, marker)
end
return {tostring(len), item}
",
    )
});

/// `RPOP`: the last item, or nil.
static POP: LazyLock<Script> =
    LazyLock::new(|| checked_script("return redis.call('RPOP', KEYS[2])"));

/// Keeps the first `ARGV[1]` items (`LTRIM`; all of them gone for 0).
static TRUNCATE: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local keep = tonumber(ARGV[1])
if keep == 0 then return redis.call('DEL', KEYS[2]) end
redis.call('LTRIM', KEYS[2], 0, keep - 1)
return 1
",
    )
});

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

    /// The last item, or `None` if the list is empty.
    pub(crate) fn last(&self) -> Result<Option<Vec<u8>>> {
        self.object.read_checked(
            "reading the last item",
            self.object.items_key(),
            &[b"LINDEX", b"-1"],
        )
    }

    /// Runs a script that changes the item at `index` (see [`Answer`]).
    fn at_index(
        &self,
        op: &'static str,
        script: &Script,
        index: u64,
        value: &[u8],
    ) -> Result<Vec<u8>> {
        let object = &self.object;
        let mut answer: Answer = object.conn().write(object.name(), op, |c| {
            object
                .guarded(script)
                .key(object.items_key())
                .arg(index)
                .arg(value)
                .invoke(c)
        })?;
        let len = answer
            .first()
            .and_then(|len| std::str::from_utf8(len).ok()?.parse().ok())
            .ok_or_else(|| Error::Corrupt {
                name: object.name().clone(),
                what: format!("the server answered {op} with {answer:?}"),
            })?;
        match answer.pop() {
            Some(item) if answer.len() == 1 => Ok(item),
            _ => Err(Error::IndexOutOfRange {
                name: object.name().clone(),
                index,
                len,
            }),
        }
    }

    pub(crate) fn set(&self, index: u64, payload: &[u8]) -> Result<()> {
        self.at_index("replacing an item", &SET, index, payload)
            .map(drop)
    }

    pub(crate) fn insert(&self, index: u64, payload: &[u8]) -> Result<()> {
        self.at_index("inserting an item", &INSERT, index, payload)
            .map(drop)
    }

    /// Removes the item at `index` and returns it; with `swap`, the last item takes its
    /// place.
    pub(crate) fn remove(&self, index: u64, swap: bool) -> Result<Vec<u8>> {
        let how: &[u8] = if swap { b"swap" } else { b"shift" };
        self.at_index("removing an item", &REMOVE, index, how)
    }

    pub(crate) fn pop(&self) -> Result<Option<Vec<u8>>> {
        let object = &self.object;
        object.conn().write(object.name(), "popping", |c| {
            object.guarded(&POP).key(object.items_key()).invoke(c)
        })
    }

    pub(crate) fn truncate(&self, keep: u64) -> Result<()> {
        let object = &self.object;
        object.conn().write(object.name(), "truncating", |c| {
            object
                .guarded(&TRUNCATE)
                .key(object.items_key())
                .arg(keep)
                .invoke::<i64>(c)
        })?;
        Ok(())
    }
}
