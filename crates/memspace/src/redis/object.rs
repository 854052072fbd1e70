//! [`Object`]: one Redis-backed object, its meta hash, its creation, opening and removal, and
//! the checked reads every kind's engine uses.

use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::{Script, ScriptInvocation};

use super::Conn;
use super::script::{checked_script, damage_text, is_wrong_type};
use crate::error::{Error, OpenError, Result};
use crate::segment::{Kind, RedisLocation, SegmentName};

/// The layout version of the keys (the `version` field of the meta hash). Version 2 added
/// the `incarnation` field.
const VERSION: u32 = 2;

/// Creates the meta hash and the object's first data (see [`FirstData`]) in one step, unless
/// the object exists.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
if ARGV[5] == 'stream' then
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[6], '0', 'MKSTREAM')
elseif ARGV[5] == 'string' then
  redis.call('SET', KEYS[2], ARGV[6])
end
redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'type', ARGV[2], 'size', ARGV[3],
  'capacity', ARGV[4], 'version', ARGV[7], 'created_ms', ARGV[8], 'incarnation', ARGV[9])
return 1
",
    )
});

/// Reads a meta hash in one step: `{TYPE}` if the key is not a hash (`none` if it is missing),
/// else `{'hash', kind, type, size, capacity, version, incarnation}`, a missing field as nil.
static READ_META: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local found = redis.call('TYPE', KEYS[1]).ok
if found ~= 'hash' then return {found} end
return {found, unpack(redis.call('HMGET', KEYS[1], 'kind', 'type', 'size', 'capacity', 'version',
  'incarnation'))}
",
    )
});

/// What an object's meta hash records, checked field by field.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) kind: Kind,
    pub(crate) type_name: String,
    size: u64,
    capacity: u64,
    incarnation: String,
}

/// Reads and checks the meta hash of object `object` (the flat name) on `conn`.
///
/// # Errors
///
/// [`OpenError::NotFound`] if there is none; [`OpenError::VersionMismatch`] if another layout
/// version of memspace wrote it; [`Error::Corrupt`](crate::Error::Corrupt) naming the field that is missing or
/// unreadable (or saying that the key is not a hash); what the connection reports.
pub(crate) fn read_meta(conn: &Conn, name: &SegmentName, object: &str) -> Result<Meta> {
    let key = meta_key(object);
    let reply: Vec<Option<Vec<u8>>> =
        conn.read(name, "opening", |c| READ_META.key(&key).invoke(c))?;
    let text = |at: usize| {
        reply
            .get(at)
            .cloned()
            .flatten()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    };
    let corrupt = |what: String| Error::Corrupt {
        name: name.clone(),
        what: format!("its meta record `{key}` {what}"),
    };
    match text(0).as_deref() {
        Some("hash") => {}
        Some("none") | None => return Err(OpenError::NotFound { name: name.clone() }.into()),
        Some(other) => return Err(corrupt(format!("is a Redis {other}, not a hash"))),
    }
    let field =
        |at: usize, field: &str| text(at).ok_or_else(|| corrupt(format!("has no `{field}` field")));
    let number = |at: usize, field_name: &str| -> Result<u64> {
        let value = field(at, field_name)?;
        value
            .parse()
            .map_err(|_| corrupt(format!("has `{field_name}` = `{value}`, not a number")))
    };
    let version = number(5, "version")?;
    if version != u64::from(VERSION) {
        return Err(OpenError::VersionMismatch {
            name: name.clone(),
            found: u32::try_from(version).unwrap_or(u32::MAX),
            expected: VERSION,
        }
        .into());
    }
    let kind = field(1, "kind")?;
    let kind = Kind::from_name(&kind).ok_or_else(|| {
        corrupt(format!(
            "has `kind` = `{kind}`, which is no kind memspace knows"
        ))
    })?;
    Ok(Meta {
        kind,
        type_name: field(2, "type")?,
        size: number(3, "size")?,
        capacity: number(4, "capacity")?,
        incarnation: field(6, "incarnation")?,
    })
}

/// Deletes the keys of object `object` (all but a lock's fencing counter), whatever they hold.
///
/// # Errors
///
/// [`OpenError::NotFound`] if there were none; what the connection reports.
fn remove_keys(conn: &Conn, name: &SegmentName, object: &str) -> Result<()> {
    let keys = [
        meta_key(object),
        format!("memspace:{{{object}}}:items"),
        format!("memspace:{{{object}}}:seq"),
    ];
    let removed: i64 = conn.write(name, "removing", |c| redis::cmd("DEL").arg(&keys).query(c))?;
    if removed == 0 {
        return Err(OpenError::NotFound { name: name.clone() }.into());
    }
    Ok(())
}

/// One Redis-backed object: its name, where it lives and a connection to its server.
#[derive(Debug)]
pub(crate) struct Object {
    name: SegmentName,
    /// The flat name the keys are made from.
    base: String,
    lease_ms: Option<u64>,
    conn: Conn,
    /// The meta hash's key.
    meta: String,
    /// The data's key (`memspace:{NAME}:items`).
    items: String,
    /// What tells this object from one made later under the same name (the meta hash's
    /// `incarnation`, chosen by the creator): every write checks it.
    incarnation: String,
    /// The `type` recorded by the creator.
    type_name: String,
    /// The `size` recorded by the creator (values only).
    size: u64,
    /// The `capacity` recorded by the creator (queues only; 0: unbounded).
    capacity: u64,
}

/// What a new object records in its meta hash besides its kind and item type, and its first
/// data.
#[derive(Debug, Default)]
pub(crate) struct Init<'a> {
    /// The size of its one value (a `Value<T>`'s `T`), or 0.
    pub(crate) size: u64,
    /// Its bound (a bounded queue's), or 0.
    pub(crate) capacity: u64,
    /// What its data key holds at first.
    pub(crate) first: FirstData<'a>,
}

/// What an object's data key (`memspace:{NAME}:items`) holds when it is created. A kind whose
/// data is a list or a hash starts with none: Redis makes those at the first write.
#[derive(Debug, Default)]
pub(crate) enum FirstData<'a> {
    /// No key.
    #[default]
    Nothing,
    /// A string of these bytes.
    String(&'a [u8]),
    /// An empty stream with this consumer group.
    Stream {
        /// The group's name.
        group: &'a str,
    },
}

fn location(name: &SegmentName) -> Result<&RedisLocation> {
    name.redis_location().ok_or_else(|| {
        Error::from(OpenError::InvalidName {
            name: name.as_str().to_owned(),
            reason: "not a Redis name (`redis://HOST:PORT/NAME`)",
        })
    })
}

/// A value no other creation of the same name picks: the creator's pid, the time and a
/// counter of this process.
fn new_incarnation(since_epoch: std::time::Duration) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{:x}.{:x}.{:x}.{count:x}",
        crate::sys::pid(),
        since_epoch.as_secs(),
        since_epoch.subsec_nanos()
    )
}

/// The meta hash's key of object `object`.
pub(crate) fn meta_key(object: &str) -> String {
    format!("memspace:{{{object}}}")
}

impl Object {
    /// Creates `name` as a `kind` of items of `type_name` (the type its creator used).
    pub(crate) fn create(
        name: &SegmentName,
        kind: Kind,
        type_name: &str,
        init: &Init<'_>,
    ) -> Result<Arc<Self>> {
        let at = location(name)?;
        let conn = Conn::for_location(name, at)?;
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let created_ms = since_epoch.as_millis();
        let meta = Meta {
            kind,
            type_name: type_name.to_owned(),
            size: init.size,
            capacity: init.capacity,
            incarnation: new_incarnation(since_epoch),
        };
        let object = Object::assemble(name, at, conn, meta);
        let seq = object.key("seq");
        let made: i64 = object.conn.write(name, "creating", |c| {
            CREATE
                .key(object.meta_key())
                .key(object.items_key())
                .key(&seq)
                .arg(kind.as_str())
                .arg(type_name)
                .arg(init.size)
                .arg(init.capacity)
                .arg(match init.first {
                    FirstData::Nothing => "",
                    FirstData::String(_) => "string",
                    FirstData::Stream { .. } => "stream",
                })
                .arg(match init.first {
                    FirstData::Nothing => &b""[..],
                    FirstData::String(bytes) => bytes,
                    FirstData::Stream { group } => group.as_bytes(),
                })
                .arg(VERSION)
                .arg(created_ms.to_string())
                .arg(&object.incarnation)
                .invoke(c)
        })?;
        if made == 0 {
            return Err(OpenError::AlreadyExists { name: name.clone() }.into());
        }
        Ok(Arc::new(object))
    }

    /// Opens `name`, which must hold a `kind`, checking its meta hash (see [`read_meta`]).
    pub(crate) fn open(name: &SegmentName, kind: Kind) -> Result<Arc<Self>> {
        let (object, found) = Self::open_any(name)?;
        if found != kind {
            return Err(OpenError::WrongKind {
                name: name.clone(),
                found,
                expected: kind,
            }
            .into());
        }
        Ok(object)
    }

    /// Opens `name` whatever it holds, and says what that is.
    pub(crate) fn open_any(name: &SegmentName) -> Result<(Arc<Self>, Kind)> {
        let at = location(name)?;
        let conn = Conn::for_location(name, at)?;
        let meta = read_meta(&conn, name, &at.object)?;
        let kind = meta.kind;
        let object = Object::assemble(name, at, conn, meta);
        Ok((Arc::new(object), kind))
    }

    /// The object `name` at `at`, as its meta hash describes it.
    fn assemble(name: &SegmentName, at: &RedisLocation, conn: Conn, meta: Meta) -> Self {
        Object {
            name: name.clone(),
            base: at.object.clone(),
            lease_ms: at.lease_ms,
            conn,
            meta: meta_key(&at.object),
            items: format!("memspace:{{{}}}:items", at.object),
            incarnation: meta.incarnation,
            type_name: meta.type_name,
            size: meta.size,
            capacity: meta.capacity,
        }
    }

    pub(crate) fn name(&self) -> &SegmentName {
        &self.name
    }

    /// The key of the object's data, `memspace:{NAME}:items`.
    pub(crate) fn items_key(&self) -> &str {
        &self.items
    }

    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
    }

    pub(crate) fn type_name(&self) -> &str {
        &self.type_name
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn lease_ms(&self) -> Option<u64> {
        self.lease_ms
    }

    pub(crate) fn meta_key(&self) -> &str {
        &self.meta
    }

    pub(crate) fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// Why something of this object that should exist does not (`missing` says what, as
    /// "its key `K` is missing"): [`OpenError::NotFound`] if the object was removed,
    /// [`OpenError::Replaced`] if it was created again since this handle opened it, what the
    /// server answered if it could not be asked, and otherwise damage: [`Error::Corrupt`].
    pub(crate) fn explain_missing(&self, op: &'static str, missing: String) -> Error {
        // The check alone: the command only runs once the guard has passed.
        match self.read_checked::<i64>(op, &self.meta, &[b"EXISTS"]) {
            Ok(_) => Error::Corrupt {
                name: self.name.clone(),
                what: missing,
            },
            Err(err) => err,
        }
    }

    /// Runs the read-only command `command` (its name, then its arguments after the key) on
    /// `key` in a [`checked_script`], so that it answers only if the object is still the one
    /// this handle opened, and converts the answer; otherwise [`OpenError::NotFound`] or
    /// [`OpenError::Replaced`]. One script, one answer: a server that stops answering costs
    /// one timeout, not one per reply as a transaction would. Read-only, so retried like any
    /// read.
    pub(crate) fn read_checked<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        command: &[&[u8]],
    ) -> Result<T> {
        static READ: LazyLock<Script> = LazyLock::new(|| {
            checked_script("return redis.call(ARGV[1], KEYS[2], unpack(ARGV, 2))")
        });
        let answer: Result<redis::Value> = self.conn.read(&self.name, op, |c| {
            let mut invocation = self.guarded(&READ);
            invocation.key(key);
            for part in command {
                invocation.arg(part);
            }
            invocation.invoke(c)
        });
        match answer {
            Ok(answer) => self.parse(op, answer),
            // The guard passed: the object is this handle's, and its key is damaged.
            Err(err) if is_wrong_type(&err) => Err(Error::Corrupt {
                name: self.name.clone(),
                what: format!("its key `{key}` holds another type than its kind's"),
            }),
            Err(err) => Err(err),
        }
    }

    /// Runs the read-only `commands`, which may answer with many items, in one transaction
    /// after a read of the meta hash's incarnation, and returns their answers if the object is
    /// still the one this handle opened; otherwise the error [`Object::explain_missing`] gives.
    /// A transaction, not a script as in [`Object::read_checked`]: a script would hand the
    /// items through Lua, which made reading a list of a million items take the server
    /// 300 ms instead of 45 ms. The price is a timeout per answer (`MULTI`, each command,
    /// `EXEC`) if the server stops answering midway.
    pub(crate) fn read_checked_bulk(
        &self,
        op: &'static str,
        commands: &[redis::Cmd],
    ) -> Result<Vec<redis::Value>> {
        let answers: Result<Vec<redis::Value>> = self.conn.read(&self.name, op, |c| {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("HGET").arg(&self.meta).arg("incarnation");
            for command in commands {
                pipe.add_command(command.clone());
            }
            pipe.query(c)
        });
        let mut answers = match answers {
            Ok(answers) => answers,
            Err(err) if is_wrong_type(&err) => {
                let what = format!(
                    "a key holds another type than its kind's: {}",
                    damage_text(&err)
                );
                return Err(self.explain_missing(op, what));
            }
            Err(err) => return Err(err),
        };
        let ours = answers.first().is_some_and(|found| {
            redis::from_redis_value_ref::<Option<String>>(found)
                .is_ok_and(|found| found.as_deref() == Some(self.incarnation.as_str()))
        });
        if !ours {
            return Err(self.explain_missing(op, "its meta record changed".to_owned()));
        }
        answers.remove(0);
        Ok(answers)
    }

    /// [`Object::read_checked_bulk`] for one command, its answer converted to `T`.
    pub(crate) fn read_bulk<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        command: redis::Cmd,
    ) -> Result<T> {
        let answer = self.read_checked_bulk(op, &[command])?.pop();
        self.parse(op, answer.unwrap_or(redis::Value::Nil))
    }

    /// Converts a server's answer, or says what could not be read.
    pub(crate) fn parse<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        answer: redis::Value,
    ) -> Result<T> {
        redis::from_redis_value(answer).map_err(|err| Error::Redis {
            name: self.name.clone(),
            op,
            source: Box::new(redis::RedisError::from(err)),
        })
    }

    /// The string at `key`, checked in the same script to belong to the object this handle
    /// opened: [`OpenError::NotFound`] if it was removed, [`OpenError::Replaced`] if it was
    /// created again, [`Error::Corrupt`] if the key is missing.
    pub(crate) fn get_checked(&self, op: &'static str, key: &str) -> Result<Vec<u8>> {
        let bytes: Option<Vec<u8>> = self.read_checked(op, key, &[b"GET"])?;
        // The guard passed: the object is this handle's, and the key's absence is damage.
        bytes.ok_or_else(|| Error::Corrupt {
            name: self.name.clone(),
            what: format!("its key `{key}` is missing"),
        })
    }

    /// An invocation of the [`checked_script`] `script` for this object: the meta hash as its
    /// first key and the incarnation as its first argument; the caller adds the rest.
    pub(crate) fn guarded<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut invocation = script.key(&self.meta);
        invocation.arg(&self.incarnation);
        invocation
    }

    /// The key `memspace:{NAME}:part`.
    pub(crate) fn key(&self, part: &str) -> String {
        format!("memspace:{{{}}}:{part}", self.base)
    }

    /// Removes the keys of the object `name` whatever its kind and whatever state they are in
    /// (all but a lock's fencing counter), without opening it.
    pub(crate) fn remove_named(name: &SegmentName) -> Result<()> {
        let at = location(name)?;
        let conn = Conn::for_location(name, at)?;
        remove_keys(&conn, name, &at.object)
    }

    /// Removes the object's keys (all but a lock's fencing counter) if it is still the object
    /// this handle opened: [`OpenError::NotFound`] if it was removed, [`OpenError::Replaced`]
    /// if it was created again since (that object is left alone).
    pub(crate) fn remove(&self) -> Result<()> {
        static REMOVE: LazyLock<Script> =
            LazyLock::new(|| checked_script("return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])"));
        let seq = self.key("seq");
        self.conn.write(&self.name, "removing", |c| {
            self.guarded(&REMOVE)
                .key(&self.items)
                .key(&seq)
                .invoke::<i64>(c)
        })?;
        Ok(())
    }
}
