//! [`RedisMap`]: a `SharedMap` as a Redis hash whose fields and values are encoded items, and
//! how an encoded key is shown in an error message.

use std::fmt;
use std::sync::{Arc, LazyLock};

use redis::Script;
use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};

use super::shm::Entry;
use crate::collections::codec;
use crate::error::{Error, Result};
use crate::redis::{Object, checked_script};

/// How many characters of a key an error message shows.
const KEY_TEXT_MAX: usize = 60;

/// `HSET` that returns the value it replaced, atomically, unless the map was removed.
static REPLACE: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local old = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return old
",
    )
});

/// `HSETNX` that returns the value the key has already, if any, atomically, unless the map was
/// removed.
static KEEP: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return old
",
    )
});

/// `HDEL` that returns the value it removed, atomically, unless the map was removed.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then redis.call('HDEL', KEYS[2], ARGV[1]) end
return old
",
    )
});

/// Deletes the entries, unless the map was removed.
static CLEAR: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
redis.call('DEL', KEYS[2])
return 1
",
    )
});

/// The Redis side of a `SharedMap`: the hash `memspace:{NAME}:items`, encoded key to encoded
/// value.
#[derive(Debug, Clone)]
pub(super) struct RedisMap {
    object: Arc<Object>,
}

redis_engine!(RedisMap);

impl RedisMap {
    /// Decodes the value stored under the encoded `key`, if there is one; if it is not a `T`,
    /// the error names the key.
    fn decode_value<T: DeserializeOwned>(
        &self,
        key: &[u8],
        value: Option<Vec<u8>>,
    ) -> Result<Option<T>> {
        let Some(value) = value else { return Ok(None) };
        codec::decode(&value)
            .map(Some)
            .map_err(|source| Error::DecodeMapValue {
                name: self.object.name().clone(),
                key: key_text(key),
                expected: std::any::type_name::<T>(),
                source: Box::new(source),
            })
    }

    /// Stores `value` under `key` (with `replace`, over the value it has; without, only if
    /// it has none); returns the value the key had, decoded.
    pub(super) fn insert<T: DeserializeOwned>(
        &self,
        key: &[u8],
        value: &[u8],
        replace: bool,
    ) -> Result<Option<T>> {
        let object = &self.object;
        let script: &Script = if replace { &REPLACE } else { &KEEP };
        let old = object.conn().write(object.name(), "inserting", |c| {
            object
                .guarded(script)
                .key(self.object.items_key())
                .arg(key)
                .arg(value)
                .invoke(c)
        })?;
        self.decode_value(key, old)
    }

    /// The value of `key`, decoded.
    pub(super) fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        let value = self.object.read_checked(
            "looking up a key",
            self.object.items_key(),
            &[b"HGET", key],
        )?;
        self.decode_value(key, value)
    }

    pub(super) fn contains(&self, key: &[u8]) -> Result<bool> {
        self.object.read_checked(
            "looking up a key",
            self.object.items_key(),
            &[b"HEXISTS", key],
        )
    }

    /// Removes `key`; returns its value, decoded.
    pub(super) fn remove<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        let object = &self.object;
        let old = object.conn().write(object.name(), "removing a key", |c| {
            object
                .guarded(&TAKE)
                .key(self.object.items_key())
                .arg(key)
                .invoke(c)
        })?;
        self.decode_value(key, old)
    }

    pub(super) fn clear(&self) -> Result<()> {
        let object = &self.object;
        object.conn().write(object.name(), "clearing", |c| {
            object
                .guarded(&CLEAR)
                .key(self.object.items_key())
                .invoke::<u64>(c)
        })?;
        Ok(())
    }

    pub(super) fn len(&self) -> Result<u64> {
        self.object
            .read_checked("reading the length", self.object.items_key(), &[b"HLEN"])
    }

    /// Every entry, in one `HGETALL` (a consistent snapshot), numbered in the order the
    /// server lists them.
    pub(super) fn entries(&self) -> Result<Vec<(u64, Entry)>> {
        let mut all = redis::cmd("HGETALL");
        all.arg(self.object.items_key());
        let all: Vec<(Vec<u8>, Vec<u8>)> = self.object.read_bulk("reading the entries", all)?;
        Ok((0u64..)
            .zip(all)
            .map(|(index, (key, value))| (index, Entry::new(&key, &value)))
            .collect())
    }
}

/// An encoded key as text for messages: JSON-like (`"ada"`, `[1, 2]`, `{"x": 1}`), cut after
/// [`KEY_TEXT_MAX`] characters; the bytes in hex if they do not decode at all.
fn key_text(encoded: &[u8]) -> String {
    let text = codec::decode::<Shown>(encoded).map_or_else(|_| hex(encoded), |shown| shown.0);
    if text.chars().count() <= KEY_TEXT_MAX {
        return text;
    }
    let mut cut: String = text.chars().take(KEY_TEXT_MAX).collect();
    cut.push_str("...");
    cut
}

/// `0x` and the bytes in hex.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::from("0x"), |mut text, byte| {
        let _ = write!(text, "{byte:02x}"); // writing to a String cannot fail
        text
    })
}

/// Any decoded value, rendered as text.
struct Shown(String);

impl<'de> Deserialize<'de> for Shown {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShowVisitor).map(Shown)
    }
}

struct ShowVisitor;

impl<'de> Visitor<'de> for ShowVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(format!("{v:?}"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(format!("{v:?}"))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<String, E> {
        Ok(hex(v))
    }

    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        let mut parts = Vec::new();
        while let Some(Shown(part)) = seq.next_element()? {
            parts.push(part);
        }
        Ok(format!("[{}]", parts.join(", ")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        let mut parts = Vec::new();
        while let Some((Shown(key), Shown(value))) = map.next_entry()? {
            parts.push(format!("{key}: {value}"));
        }
        Ok(format!("{{{}}}", parts.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::{KEY_TEXT_MAX, key_text};
    use crate::collections::codec;

    fn shown<T: serde::Serialize + ?Sized>(key: &T) -> String {
        key_text(&codec::encode(key).expect("encode"))
    }

    #[test]
    fn keys_are_shown_as_json_like_text() {
        assert_eq!(shown("ada"), "\"ada\"");
        assert_eq!(shown(&42u32), "42");
        assert_eq!(shown(&-3i64), "-3");
        assert_eq!(shown(&(1u8, "b")), "[1, \"b\"]");
        assert_eq!(shown(&Some(true)), "true");
        let map = std::collections::BTreeMap::from([("x", 1.5f64)]);
        assert_eq!(shown(&map), "{\"x\": 1.5}");
        assert_eq!(shown(&"k".repeat(100)).chars().count(), KEY_TEXT_MAX + 3);
        assert_eq!(key_text(&[0xc1]), "0xc1", "a byte MessagePack never uses");
    }
}
