//! The objects memspace keeps on a Redis server, seen from outside any handle: list them,
//! describe one, remove one whatever state its keys are in (what `memspace ls --redis`,
//! `inspect` and `rm` show and do).

use std::sync::Arc;

use crate::error::{Error, OpenError, Result};
use crate::handle::RedisEngine;
use crate::redis::{Conn, Object, damage_text, deepest_cause, read_meta, refused};
use crate::segment::{Endpoint, Kind, RedisServer, SegmentName};

/// An object that `memspace ls --redis` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub struct Listed {
    /// Its full name, `redis://HOST:PORT/NAME` (a password shown as `***`).
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
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
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
    matches!(err, Error::Corrupt { .. }) || refused(err, &["WRONGTYPE", "NOGROUP"])
}

/// One object for [`list_objects`]: its meta hash and length, or what is damaged; `None` if
/// its keys were removed since the scan found them.
///
/// # Errors
///
/// [`Error::RedisUnreachable`] only: any other failure is the object's, and it is listed as
/// damaged.
fn list_one(conn: &Conn, server: &RedisServer, object: &str) -> Result<Option<Listed>> {
    let full = server.locate(object);
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

/// The meta hash keys (`memspace:{NAME}`) on the server or cluster node `conn` talks to.
fn scan_metas(conn: &Conn, probe: &SegmentName) -> Result<Vec<Vec<u8>>> {
    conn.read(probe, "listing objects", |c| {
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
    })
}

/// The servers that hold keys: `server` itself, or, if it is a node of a Redis Cluster
/// (`cluster_enabled:1` in `INFO cluster`), every master that serves slots (`CLUSTER
/// SLOTS`), each logged in to as `server` is.
fn masters(conn: &Conn, probe: &SegmentName, server: &RedisServer) -> Result<Vec<RedisServer>> {
    let info: String = conn.read(probe, "listing objects", |c| {
        redis::cmd("INFO").arg("cluster").query(c)
    })?;
    if !info.lines().any(|line| line.trim() == "cluster_enabled:1") {
        return Ok(vec![server.clone()]);
    }
    let slots: redis::Value = conn.read(probe, "listing the cluster's masters", |c| {
        redis::cmd("CLUSTER").arg("SLOTS").query(c)
    })?;
    // [[first slot, last slot, [host, port, id, ...], replicas...], ...]; an empty host means
    // the node that answered does not know its own address: the one we reached it by.
    let seed_host = match &server.endpoint {
        Endpoint::Tcp { host, .. } => host.as_str(),
        Endpoint::Unix(_) => "127.0.0.1",
    };
    let mut masters: Vec<RedisServer> = Vec::new();
    if let redis::Value::Array(ranges) = slots {
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let Some(redis::Value::Array(master)) = parts.get(2) else {
                continue;
            };
            let host = master
                .first()
                .and_then(|host| redis::from_redis_value_ref::<String>(host).ok())
                .filter(|host| !host.is_empty() && host != "?")
                .unwrap_or_else(|| seed_host.to_owned());
            let Some(port) = master
                .get(1)
                .and_then(|port| redis::from_redis_value_ref::<u16>(port).ok())
            else {
                continue;
            };
            let node = crate::redis::at_node(server, &host, port);
            if !masters.contains(&node) {
                masters.push(node);
            }
        }
    }
    if masters.is_empty() {
        // A cluster with no slots assigned holds no keys; scan the node itself anyway.
        masters.push(server.clone());
    }
    Ok(masters)
}

/// The memspace objects on the Redis server `url` (`redis://HOST:PORT[/DB]`, or another
/// server URL: see [Redis names](crate::backend#redis-names)), by name; if it is a node of a
/// Redis Cluster, those on every master of the cluster (logged in to with the URL's
/// credentials). An object whose keys are damaged is listed with [`Listed::problem`] saying
/// how; it does not stop the listing.
///
/// # Errors
///
/// [`Error::RedisUnreachable`] if the server cannot be reached;
/// [`Error::RedisAuth`] if it refuses the login; [`OpenError::InvalidName`] if `url` is not a
/// server URL (the error hides its password).
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub fn list_objects(url: &str) -> Result<Vec<Listed>> {
    let server = crate::segment::server_of_url(url)?;
    // Errors name the server: the URL as given, its password hidden.
    let probe = SegmentName::server(&server);
    let conn = Conn::new(&probe, &server)?;
    // On a cluster, each master holds the keys of its slots: every one is scanned, and its
    // objects are read on it.
    let mut nodes = Vec::new();
    let mut metas = Vec::new();
    for node in masters(&conn, &probe, &server)? {
        let node_conn = Conn::new(&probe, &node)?;
        metas.extend(
            scan_metas(&node_conn, &probe)?
                .into_iter()
                .map(|meta| (meta, nodes.len())),
        );
        nodes.push(node_conn);
    }
    metas.sort();
    metas.dedup_by(|a, b| a.0 == b.0);
    let mut listed = Vec::new();
    for (meta, node) in metas {
        let conn = &nodes[node];
        let Some(object) = meta
            .strip_prefix(b"memspace:{")
            .and_then(|rest| rest.strip_suffix(b"}"))
        else {
            continue;
        };
        match std::str::from_utf8(object) {
            Ok(object) => listed.extend(list_one(conn, &server, object)?),
            Err(_) => listed.push(Listed {
                name: server.locate(&String::from_utf8_lossy(object).escape_debug().to_string()),
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

/// What [`describe`](super::describe) tells of a Redis object: its kind and a few fields. If the data
/// keys cannot be read as the kind says (a key of another type, written by hand), the fields
/// end with `damaged`, saying what the server answered.
///
/// # Errors
///
/// [`OpenError::NotFound`], [`Error::Corrupt`](crate::Error::Corrupt) if the meta hash is damaged,
/// [`Error::RedisUnreachable`].
pub(crate) fn describe(name: &SegmentName) -> Result<(Kind, Vec<(&'static str, String)>)> {
    let name = name.clone();
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
            let queue = crate::collections::RedisQueue::new(Arc::clone(object));
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
            let set =
                <crate::sync::RedisEvent as RedisEngine>::attach(Arc::clone(object)).is_set()?;
            fields.push(("set", if set { "yes" } else { "no" }.to_owned()));
        }
        Kind::Value => fields.push(("size", object.size().to_string())),
        _ => {}
    }
    Ok(())
}
