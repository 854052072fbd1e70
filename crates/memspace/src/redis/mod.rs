//! The Redis backend: [`Lock`](crate::sync::Lock), [`SharedList`](crate::collections::SharedList),
//! [`SharedMap`](crate::collections::SharedMap), [`Queue`](crate::collections::Queue),
//! [`Value`](crate::collections::Value) and [`Event`](crate::sync::Event) on a Redis server,
//! selected by a `redis://HOST:PORT/NAME` name.
//!
//! # Keys
//!
//! Object `NAME` owns the keys `memspace:{NAME}` (a hash: `kind`, `type`, `size`, `capacity`,
//! `version`, `created_ms` and `incarnation`; what `memspace ls --redis` and `inspect` read) and
//! `memspace:{NAME}:items` (the data, in the native type that fits the kind). A lock also has
//! `memspace:{NAME}:fence`, the fencing counter, which removing the lock keeps so that tokens never
//! go back; a queue has `memspace:{NAME}:seq`. The braces are a Redis Cluster hash tag: all keys of
//! one object live in one slot, so the scripts that touch several of them are valid on a cluster
//! too.
//!
//! Items are encoded as in shared memory (`MessagePack`, see `collections::codec`), so the CLI
//! prints both backends' items alike.
//!
//! # Removal
//!
//! Removing an object (`unlink`, `memspace rm`) deletes its keys while other handles to it may
//! still be open, and the name may be created again meanwhile. Each creation draws an
//! `incarnation`, which every handle reads when it opens the object. Every write is a script
//! that first checks, atomically with the write, that the meta hash still exists and records
//! that incarnation ([`checked_script`]): a write through an outdated handle fails with
//! [`OpenError::NotFound`] (removed) or [`OpenError::Replaced`] (created again) instead of
//! recreating a data key that no meta hash describes, or writing into another object. Taking
//! a lock's lease, claiming, acknowledging and putting back a queue's items, and every read
//! through a handle of a collection, a value, an event or a lock's holder
//! ([`Object::read_checked`]) are such scripts too, so an outdated handle
//! neither reads a removed object as empty nor another object as its own; reads of a whole
//! collection check the same in a transaction instead ([`Object::read_checked_bulk`]), which
//! spares their items a trip through Lua. A queue receiver blocked on a deleted stream asks
//! the same check to tell a removal from damage.

mod conn;
mod list;
mod queue;
mod value;

use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::{Script, ScriptInvocation};

pub(crate) use self::conn::Conn;
pub(crate) use self::queue::Received;

use crate::error::{Error, OpenError, Result};
use crate::segment::{Kind, RedisLocation, SegmentName};

/// The layout version of the keys (the `version` field of the meta hash). Version 2 added
/// the `incarnation` field.
const VERSION: u32 = 2;
/// The consumer group every queue consumer belongs to.
pub(crate) const GROUP: &str = "memspace";
/// The error code of a checked script that found its object's meta hash gone: the object was
/// removed while this handle was open ([`OpenError::NotFound`]).
const REMOVED: &str = "MEMSPACE_REMOVED";
/// The error code of a checked script that found another incarnation in the meta hash: the
/// object was removed and created again ([`OpenError::Replaced`]).
const REPLACED: &str = "MEMSPACE_REPLACED";
/// The error code of a checked script that found the meta hash without its `incarnation`
/// field (damage: the creator always writes it; [`OpenError::Corrupt`]).
const NO_INCARNATION: &str = "MEMSPACE_NO_INCARNATION";

/// What a [`checked_script`]'s refusal to run means for object `name`, if `err` is one; the
/// script did nothing. [`Conn`] reports it in place of the server's error.
pub(crate) fn guard_refusal(err: &redis::RedisError, name: &SegmentName) -> Option<Error> {
    let name = name.clone();
    let refusal = match err.code()? {
        REMOVED => OpenError::NotFound { name },
        REPLACED => OpenError::Replaced { name },
        NO_INCARNATION => OpenError::Corrupt {
            name,
            what: "its meta record has no `incarnation` field".to_owned(),
        },
        _ => return None,
    };
    Some(refusal.into())
}

/// A script that acts only on the object this handle opened (every write, and the reads that must
/// tell a removal from damage), run through [`Object::guarded`], which passes the object's meta
/// hash as `KEYS[1]` and the handle's incarnation as an extra first argument. `body` runs only
/// while the meta hash exists and records that incarnation, and sees `ARGV` without it; otherwise
/// the script fails with [`REMOVED`] or [`REPLACED`] having written nothing. Checking inside the
/// script makes the check and the write one atomic step, in one round trip.
pub(crate) fn checked_script(body: &str) -> Script {
    let guard = format!(
        "local incarnation = table.remove(ARGV, 1)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('{REMOVED} the object was removed')
end
local found = redis.call('HGET', KEYS[1], 'incarnation')
if not found then
  return redis.error_reply('{NO_INCARNATION} the meta record has no incarnation')
end
if found ~= incarnation then
  return redis.error_reply('{REPLACED} the object was removed and created again')
end"
    );
    Script::new(&format!("{guard}\n{body}"))
}

const KINDS: [Kind; 12] = [
    Kind::Lock,
    Kind::Mutex,
    Kind::List,
    Kind::Vec,
    Kind::Map,
    Kind::Queue,
    Kind::Value,
    Kind::Condvar,
    Kind::Event,
    Kind::Semaphore,
    Kind::Barrier,
    Kind::RwLock,
];

fn parse_kind(text: &str) -> Option<Kind> {
    KINDS.into_iter().find(|kind| kind.as_str() == text)
}

/// Sets the string `KEYS[2]` to `ARGV[1]`, through the guard (a value's bytes, an event's flag).
pub(crate) static CHECKED_SET: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
redis.call('SET', KEYS[2], ARGV[1])
return 1
",
    )
});

/// Creates the meta hash and the kind's initial data in one step, unless the object exists.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
if ARGV[1] == 'queue' then
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[7], '0', 'MKSTREAM')
elseif ARGV[1] == 'value' then
  redis.call('SET', KEYS[2], ARGV[5])
elseif ARGV[1] == 'event' then
  redis.call('SET', KEYS[2], '0')
end
redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'type', ARGV[2], 'size', ARGV[3],
  'capacity', ARGV[4], 'version', ARGV[6], 'created_ms', ARGV[8], 'incarnation', ARGV[9])
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
struct Meta {
    kind: Kind,
    type_name: String,
    size: u64,
    capacity: u64,
    incarnation: String,
}

/// Reads and checks the meta hash of object `object` (the flat name) on `conn`.
///
/// # Errors
///
/// [`OpenError::NotFound`] if there is none; [`OpenError::VersionMismatch`] if another layout
/// version of memspace wrote it; [`OpenError::Corrupt`] naming the field that is missing or
/// unreadable (or saying that the key is not a hash); what the connection reports.
fn read_meta(conn: &Conn, name: &SegmentName, object: &str) -> Result<Meta> {
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
    let corrupt = |what: String| -> Error {
        OpenError::Corrupt {
            name: name.clone(),
            what: format!("its meta record `{key}` {what}"),
        }
        .into()
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
    let kind = parse_kind(&kind).ok_or_else(|| {
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

/// What a new object starts with.
#[derive(Debug, Default)]
pub(crate) struct Init<'a> {
    pub(crate) type_name: &'a str,
    pub(crate) size: u64,
    pub(crate) capacity: u64,
    pub(crate) value: &'a [u8],
}

fn location(name: &SegmentName) -> Result<&RedisLocation> {
    name.redis_location().ok_or_else(|| {
        Error::from(OpenError::InvalidName {
            name: name.as_str().to_owned(),
            reason: "not a `redis://HOST:PORT/NAME` name",
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
    /// Creates `name` as a `kind`.
    pub(crate) fn create(name: &SegmentName, kind: Kind, init: &Init<'_>) -> Result<Arc<Self>> {
        let at = location(name)?;
        let conn = Conn::new(name, &at.server)?;
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let created_ms = since_epoch.as_millis();
        let object = Object {
            name: name.clone(),
            base: at.object.clone(),
            lease_ms: at.lease_ms,
            conn,
            meta: meta_key(&at.object),
            incarnation: new_incarnation(since_epoch),
            type_name: init.type_name.to_owned(),
            size: init.size,
            capacity: init.capacity,
        };
        let (meta, items, seq) = (object.meta_key(), object.key("items"), object.key("seq"));
        let made: i64 = object.conn.write(name, "creating", |c| {
            CREATE
                .key(meta)
                .key(&items)
                .key(&seq)
                .arg(kind.as_str())
                .arg(init.type_name)
                .arg(init.size)
                .arg(init.capacity)
                .arg(init.value)
                .arg(VERSION)
                .arg(GROUP)
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
    fn open_any(name: &SegmentName) -> Result<(Arc<Self>, Kind)> {
        let at = location(name)?;
        let conn = Conn::new(name, &at.server)?;
        let meta = read_meta(&conn, name, &at.object)?;
        let object = Object {
            name: name.clone(),
            base: at.object.clone(),
            lease_ms: at.lease_ms,
            conn,
            meta: meta_key(&at.object),
            incarnation: meta.incarnation,
            type_name: meta.type_name,
            size: meta.size,
            capacity: meta.capacity,
        };
        Ok((Arc::new(object), meta.kind))
    }

    pub(crate) fn name(&self) -> &SegmentName {
        &self.name
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

    /// Removes the object's keys (all but a lock's fencing counter).
    pub(crate) fn remove(&self) -> Result<()> {
        remove_keys(&self.conn, &self.name, &self.base)
    }

    /// Turns a failed decoding of item `index` into an error naming the object.
    pub(crate) fn decode_error(
        &self,
        index: u64,
        expected: &'static str,
        source: rmp_serde::decode::Error,
    ) -> Error {
        Error::Decode {
            name: self.name.clone(),
            index,
            expected,
            source,
        }
    }
}

/// An object that `memspace ls --redis` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listed {
    /// Its full name, `redis://HOST:PORT/NAME`.
    pub name: String,
    /// Its kind (`list`, `map`, ...), as recorded by its creator.
    pub kind: String,
    /// The item type recorded by its creator.
    pub type_name: String,
    /// Items (list, map, queue), or 0.
    pub len: u64,
    /// Why the object cannot be used, if it cannot: `kind`, `type_name` and `len` are then
    /// empty or 0 where they could not be read.
    pub problem: Option<Problem>,
}

/// Why a listed object cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Its keys are damaged (its meta hash is missing a field or is not a hash, its items key
    /// has the wrong type, ...); `memspace rm` removes it.
    Damaged(String),
    /// This build cannot read it although it need not be damaged (another layout version of
    /// memspace made it, the server refused a command, its key is not a name memspace
    /// accepts): nothing suggests removing it.
    Unreadable(String),
}

impl Problem {
    /// What is wrong.
    #[must_use]
    pub fn what(&self) -> &str {
        match self {
            Problem::Damaged(what) | Problem::Unreadable(what) => what,
        }
    }

    /// Whether it is damage, which removing the object is the remedy for.
    #[must_use]
    pub fn is_damage(&self) -> bool {
        matches!(self, Problem::Damaged(_))
    }
}

/// Whether `err` says that an object's keys are damaged (a meta hash missing a field or
/// holding an unreadable one, a key of the wrong type), as opposed to unreachable, refused,
/// or made by another version.
fn is_damage(err: &Error) -> bool {
    matches!(
        err,
        Error::Open(OpenError::Corrupt { .. }) | Error::Corrupt { .. }
    ) || refused(err, &["WRONGTYPE", "NOGROUP"])
}

/// Whether the server refused a command of `err` because a key holds another type.
fn is_wrong_type(err: &Error) -> bool {
    refused(err, &["WRONGTYPE"])
}

/// Whether `err` is the server refusing a command with one of the error `codes`.
pub(crate) fn refused(err: &Error, codes: &[&str]) -> bool {
    matches!(err, Error::Redis { source, .. }
        if source.downcast_ref::<redis::RedisError>().is_some_and(|e| refused_with(e, codes)))
}

/// Whether the server refused a command (or, for a pipeline or transaction, one of its
/// commands) with one of the error `codes`.
pub(crate) fn refused_with(err: &redis::RedisError, codes: &[&str]) -> bool {
    err.clone()
        .into_server_errors()
        .is_some_and(|errors| errors.iter().any(|(_, e)| codes.contains(&e.code())))
}

/// What is wrong, for a damage message that adds its own remedy: an error's `what` when it
/// has one, else the server's complaint.
fn damage_text(err: &Error) -> String {
    match err {
        Error::Open(OpenError::Corrupt { what, .. }) | Error::Corrupt { what, .. } => what.clone(),
        other => deepest_cause(other),
    }
}

/// The text of the deepest cause of `err` (the server's own complaint, for a refused command).
fn deepest_cause(err: &Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// One object for [`list_objects`]: its meta hash and length, or what is damaged; `None` if
/// its keys were removed since the scan found them.
///
/// # Errors
///
/// [`Error::RedisUnreachable`] only: any other failure is the object's, and it is listed as
/// damaged.
fn list_one(conn: &Conn, server: &str, object: &str) -> Result<Option<Listed>> {
    let full = format!("redis://{server}/{object}");
    let listed = |kind: String, type_name: String, len: u64| Listed {
        name: full.clone(),
        kind,
        type_name,
        len,
        problem: None,
    };
    let unusable = |kind: String, type_name: String, err: Error, why: String| {
        let mut entry = listed(kind, type_name, 0);
        entry.problem = Some(if is_damage(&err) {
            Problem::Damaged(why)
        } else {
            Problem::Unreadable(why)
        });
        Ok(Some(entry))
    };
    let name = match SegmentName::new(&full) {
        Ok(name) => name,
        Err(err) => {
            let mut entry = listed(String::new(), String::new(), 0);
            entry.problem = Some(Problem::Unreadable(format!(
                "{err}; its keys can only be removed by hand (`redis-cli DEL \
                 'memspace:{{{object}}}' 'memspace:{{{object}}}:items' 'memspace:{{{object}}}:seq'`)"
            )));
            return Ok(Some(entry));
        }
    };
    let meta = match read_meta(conn, &name, object) {
        Ok(meta) => meta,
        Err(Error::Open(OpenError::NotFound { .. })) => return Ok(None),
        Err(err @ Error::RedisUnreachable { .. }) => return Err(err),
        Err(err) => {
            let why = damage_text(&err);
            return unusable(String::new(), String::new(), err, why);
        }
    };
    let (kind, type_name) = (meta.kind.as_str().to_owned(), meta.type_name);
    let command = match meta.kind {
        Kind::List => "LLEN",
        Kind::Map => "HLEN",
        Kind::Queue => "XLEN",
        _ => return Ok(Some(listed(kind, type_name, 0))),
    };
    let items = format!("memspace:{{{object}}}:items");
    match conn.read(&name, "listing objects", |c| {
        redis::cmd(command).arg(&items).query(c)
    }) {
        Ok(len) => Ok(Some(listed(kind, type_name, len))),
        Err(err @ Error::RedisUnreachable { .. }) => Err(err),
        Err(err) => {
            let why = format!(
                "its items key `{items}` cannot be read as a {kind}: {}",
                deepest_cause(&err)
            );
            unusable(kind, type_name, err, why)
        }
    }
}

/// The memspace objects on the Redis server `url` (`redis://HOST:PORT`), by name. An object
/// whose keys are damaged is listed with [`Listed::problem`] saying how; it does not stop the
/// listing.
///
/// # Errors
///
/// [`Error::RedisUnreachable`] if the server cannot be reached; [`OpenError::InvalidName`]
/// if `url` is not `redis://HOST:PORT`, or holds a user name or password (not supported yet;
/// the error hides them).
pub fn list_objects(url: &str) -> Result<Vec<Listed>> {
    let server = crate::segment::server_of_url(url)?;
    let probe = SegmentName::new(&format!("redis://{server}/ls"))?;
    let conn = Conn::new(&probe, server)?;
    let mut metas: Vec<Vec<u8>> = conn.read(&probe, "listing objects", |c| {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("memspace:{*}")
                .arg("COUNT")
                .arg(1000)
                .query(c)?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    })?;
    metas.sort();
    let mut listed = Vec::new();
    for meta in metas {
        let Some(object) = meta
            .strip_prefix(b"memspace:{")
            .and_then(|rest| rest.strip_suffix(b"}"))
        else {
            continue;
        };
        match std::str::from_utf8(object) {
            Ok(object) => listed.extend(list_one(&conn, server, object)?),
            Err(_) => listed.push(Listed {
                name: format!(
                    "redis://{server}/{}",
                    String::from_utf8_lossy(object).escape_debug()
                ),
                kind: String::new(),
                type_name: String::new(),
                len: 0,
                problem: Some(Problem::Unreadable(
                    "its key is not UTF-8 text, so it names no memspace object; remove it with \
                     `redis-cli` if it is not another program's"
                        .to_owned(),
                )),
            }),
        }
    }
    Ok(listed)
}

/// Removes the object `name` (`redis://HOST:PORT/NAME`) whatever its kind, and whatever
/// state its keys are in: this is what an error about a damaged object says to do.
///
/// # Errors
///
/// [`OpenError::NotFound`] if there is none; [`Error::RedisUnreachable`].
pub fn remove(name: &str) -> Result<()> {
    let name = SegmentName::new(name)?;
    let at = location(&name)?;
    let conn = Conn::new(&name, &at.server)?;
    remove_keys(&conn, &name, &at.object)
}

/// What `memspace inspect` shows of a Redis object: its kind and a few fields. If the data
/// keys cannot be read as the kind says (a key of another type, written by hand), the fields
/// end with `damaged`, saying what the server answered.
///
/// # Errors
///
/// [`OpenError::NotFound`], [`OpenError::Corrupt`] if the meta hash is damaged,
/// [`Error::RedisUnreachable`].
pub fn describe(name: &str) -> Result<(Kind, Vec<(&'static str, String)>)> {
    let name = SegmentName::new(name)?;
    let (object, kind) = Object::open_any(&name)?;
    let items = object.key("items");
    let mut fields = vec![
        ("backend", "redis".to_owned()),
        ("server", object.conn().server().to_owned()),
        ("type", object.type_name().to_owned()),
        ("keys", format!("{} {items}", object.meta_key())),
    ];
    match describe_state(&object, kind, &mut fields) {
        Ok(()) => {}
        Err(err) if !is_damage(&err) => return Err(err),
        Err(err) => fields.push((
            "damaged",
            format!(
                "its keys cannot be read as the {} it is: {}; `memspace rm {name}` removes it",
                kind.as_str(),
                damage_text(&err)
            ),
        )),
    }
    Ok((kind, fields))
}

/// The kind-specific fields of [`describe`].
fn describe_state(
    object: &Arc<Object>,
    kind: Kind,
    fields: &mut Vec<(&'static str, String)>,
) -> Result<()> {
    let items = object.key("items");
    let read_len = |command: &'static str| -> Result<u64> {
        object.conn().read(object.name(), "inspecting", |c| {
            redis::cmd(command).arg(&items).query(c)
        })
    };
    match kind {
        Kind::List => fields.push(("len", read_len("LLEN")?.to_string())),
        Kind::Map => fields.push(("len", read_len("HLEN")?.to_string())),
        Kind::Queue => {
            let queue = queue::RedisQueue::new(Arc::clone(object));
            fields.push(("waiting", queue.len()?.to_string()));
            fields.push(("in flight", queue.in_flight()?.to_string()));
            let capacity = object.capacity();
            if capacity > 0 {
                fields.push(("capacity", capacity.to_string()));
            }
        }
        Kind::Lock => {
            let lock = crate::sync::RedisLock::new(Arc::clone(object));
            fields.push(("held", lock.describe_holder()?));
            fields.push(("last fencing token", lock.last_token()?.to_string()));
        }
        Kind::Event => {
            let set = crate::sync::RedisEvent::new(Arc::clone(object)).is_set()?;
            fields.push(("set", if set { "yes" } else { "no" }.to_owned()));
        }
        Kind::Value => fields.push(("size", object.size().to_string())),
        _ => {}
    }
    Ok(())
}

pub(crate) use self::list::RedisList;
pub(crate) use self::queue::RedisQueue;
pub(crate) use self::value::RedisValue;
