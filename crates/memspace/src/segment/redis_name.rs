//! Redis names and server URLs: where a Redis object lives, as whom memspace logs in there,
//! and how a password is kept out of everything that is shown.
//!
//! # Forms
//!
//! * `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]/NAME`: the object `NAME` in database `DB`
//!   (0 if not given) of the server at `HOST:PORT` (port 6379 if not given), logged in as the
//!   ACL user `USER` (the default user if not given) with `PASSWORD`. The path is one segment
//!   (the object) or two (the database, digits only, then the object): `redis://h/7` is the
//!   object `7` in database 0, `redis://h/2/7` the object `7` in database 2. A server URL (for
//!   [`Backend::redis`](crate::Backend::redis), `memspace ls --redis`) has no object, so there
//!   a single segment of digits is the database: `redis://h/2`.
//! * `rediss://…`: the same over TLS.
//! * `unix:///PATH/redis.sock?name=NAME[&db=DB][&user=USER][&pass=PASSWORD]`: a server on a
//!   unix socket; the object and the rest are query parameters, as `redis-rs` spells them for
//!   this form.
//! * `redis+sentinel://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]/SERVICE/NAME`: the object
//!   `NAME` on the primary that the Redis Sentinels at `HOST:PORT,...` name for `SERVICE`,
//!   logged in there as `USER` with `PASSWORD` (the sentinels themselves are asked without
//!   credentials). Such a name has neither a database (the primary's database 0) nor TLS.
//!
//! A user name or password holding `:`, `@`, `/`, `?`, `&`, `#` or `%` is percent-encoded
//! (`p%40ss` for `p@ss`), as in any URL.
//!
//! # Passwords
//!
//! A name shows its password as `***` wherever it is shown: its `Display`, `Debug`, every
//! error naming it, what the CLI prints. The password itself is kept beside the name and used
//! only to log in. Such a shown name can be opened again in the same process (and in its
//! forked children): a password written as `***` is the one this process last used for that
//! user on that server. A URL without a password takes the one in the environment variable
//! [`PASSWORD_ENV`] (`MEMSPACE_REDIS_PASSWORD`), if it is set, which keeps a password out of a
//! command line, where `ps` shows it. A handle sent to a child started with the spawn start
//! method carries its password through the child's private pipe, never its command line.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

/// The prefix of a plain-text Redis name: `redis://127.0.0.1:6379/jobs`.
pub const REDIS_PREFIX: &str = "redis://";
/// The prefix of a Redis name over TLS: `rediss://redis.example.com:6380/jobs`.
pub const REDIS_TLS_PREFIX: &str = "rediss://";
/// The prefix of a Redis name on a unix socket: `unix:///run/redis/redis.sock?name=jobs`.
pub const REDIS_UNIX_PREFIX: &str = "unix://";
/// The prefix of a name on the primary that a group of Redis Sentinels names, following it
/// through failovers: `redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/jobs` (the
/// sentinels, the service name they monitor, the object).
pub const REDIS_SENTINEL_PREFIX: &str = "redis+sentinel://";
/// The environment variable that gives the password of a Redis URL that holds none (as
/// `REDISCLI_AUTH` does for `redis-cli`), so that it need not be on a command line.
pub const PASSWORD_ENV: &str = "MEMSPACE_REDIS_PASSWORD";
/// How a name shows its password, and how a name that was shown asks for it again.
pub(crate) const HIDDEN: &str = "***";

/// The port of a Redis URL that gives none.
const DEFAULT_PORT: u16 = 6379;
/// The shortest lease a Redis name may ask for: renewed every third of it, a lease must
/// outlast several round trips.
const MIN_LEASE_MS: u64 = 100;

/// Whether `name` starts like a Redis name or server URL.
pub(crate) fn is_redis_url(name: &str) -> bool {
    [
        REDIS_PREFIX,
        REDIS_TLS_PREFIX,
        REDIS_UNIX_PREFIX,
        REDIS_SENTINEL_PREFIX,
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

/// A password: shown as `***` by `Debug`, and without `Display`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Secret(String);

impl Secret {
    /// The secret itself, to send to the server.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HIDDEN)
    }
}

/// How memspace reaches a Redis server.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Endpoint {
    /// TCP, plain (`redis://`) or TLS (`rediss://`).
    Tcp {
        /// A host name or an IP address (an IPv6 address without its brackets).
        host: String,
        port: u16,
        tls: bool,
    },
    /// A unix socket (`unix://`).
    Unix(PathBuf),
}

/// A Redis server as a name or URL gives it: where, which database, as whom.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RedisServer {
    pub(crate) endpoint: Endpoint,
    pub(crate) db: u32,
    /// The ACL user, or `None` for the default user.
    pub(crate) user: Option<String>,
    /// The password: written in the URL, remembered for a `***`, or from [`PASSWORD_ENV`].
    pub(crate) password: Option<Secret>,
    /// The server's URL with its password hidden, without a trailing `/`:
    /// `redis://app:***@10.0.0.5:6379/2`, `unix:///run/redis.sock?db=2`.
    pub(crate) shown: String,
}

#[cfg(any(feature = "redis", test))]
impl RedisServer {
    /// Where it is, for messages: `HOST:PORT`, or the socket's path.
    pub(crate) fn address(&self) -> String {
        match &self.endpoint {
            Endpoint::Tcp { host, port, .. } if host.contains(':') => format!("[{host}]:{port}"),
            Endpoint::Tcp { host, port, .. } => format!("{host}:{port}"),
            Endpoint::Unix(path) => path.display().to_string(),
        }
    }

    /// The full name of object `object` on this server (its password hidden).
    pub(crate) fn locate(&self, object: &str) -> String {
        match self.endpoint {
            Endpoint::Tcp { .. } => format!("{}/{object}", self.shown),
            Endpoint::Unix(_) => {
                let separator = if self.shown.contains('?') { '&' } else { '?' };
                format!("{}{separator}name={object}", self.shown)
            }
        }
    }
}

/// Where a Redis object lives: a server, and the object's flat name there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RedisLocation {
    pub(crate) server: RedisServer,
    /// The object's flat name, which its keys are made from.
    pub(crate) object: String,
    /// `lease_ms=N` (locks and queues).
    pub(crate) lease_ms: Option<u64>,
    /// The name as written, password and all, when it held one: what a handle sends to a
    /// child over their private pipe.
    pub(crate) written: Option<Secret>,
    /// For a `redis+sentinel://` name: the sentinels that name the primary, which `server`'s
    /// user, password and database log in to (its endpoint is the first sentinel's).
    pub(crate) sentinels: Option<Sentinels>,
}

/// The sentinels of a `redis+sentinel://` name and the service they monitor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Sentinels {
    /// `HOST` and `PORT` of each sentinel, as written (an IPv6 address without brackets).
    pub(crate) nodes: Vec<(String, u16)>,
    /// The name of the primary they monitor.
    pub(crate) service: String,
    /// `HOST:PORT,HOST:PORT...`, for messages.
    pub(crate) shown: String,
}

/// A parsed Redis name: its location, and the text it is shown as.
pub(crate) struct Parsed {
    pub(crate) location: RedisLocation,
    pub(crate) shown: String,
}

/// Parses the Redis name `name` (see the module docs).
pub(crate) fn parse_name(name: &str) -> Result<Parsed, &'static str> {
    let (parts, sentinels) = if name.starts_with(REDIS_SENTINEL_PREFIX) {
        let (parts, sentinels) = split_sentinel(name)?;
        (parts, Some(sentinels))
    } else {
        (split(name)?, None)
    };
    let object = parts.object.clone().ok_or(NAME_MISSING)?;
    super::name::check_flat(&object)?;
    let server = parts.server()?;
    let written = if parts.password_written {
        Some(Secret(name.to_owned()))
    } else if parts.password.is_some() {
        // A `***` this process knows the password of: a child over its pipe gets it written.
        server
            .password
            .as_ref()
            .map(|password| Secret(with_password(&parts.shown, password)))
    } else {
        None
    };
    Ok(Parsed {
        location: RedisLocation {
            server,
            object,
            lease_ms: parts.lease_ms,
            written,
            sentinels,
        },
        shown: parts.shown,
    })
}

/// Parses the Redis server URL `url`: a name without its object.
pub(crate) fn parse_server(url: &str) -> Result<RedisServer, &'static str> {
    let mut parts = split(url)?;
    if parts.lease_ms.is_some() {
        return Err(SERVER_URL);
    }
    if parts.unix.is_none() {
        // A server URL's one path segment is its database.
        match parts.path.as_slice() {
            [] => {}
            [db] => {
                parts.db = Some(parse_db(db).map_err(|_| SERVER_URL)?);
                parts.object = None;
            }
            _ => return Err(SERVER_URL),
        }
    }
    if parts.object.is_some() {
        return Err(SERVER_URL);
    }
    parts.server()
}

/// What a Redis name looks like.
const NAME_MISSING: &str = "a Redis name is `redis://HOST[:PORT][/DB]/NAME` (with `USER:PASSWORD@` \
     before the host to log in), `rediss://…` (TLS) or `unix:///PATH?name=NAME`: the NAME is \
     missing";
/// What a Redis server URL looks like.
pub(crate) const SERVER_URL: &str = "a Redis server is `redis://HOST[:PORT][/DB]` (with \
     `USER:PASSWORD@` before the host to log in), `rediss://…` (TLS) or \
     `unix:///PATH/redis.sock[?db=N]`, for example `redis://127.0.0.1:6379`";

/// The pieces of a Redis URL, before they are checked against each other.
#[derive(Default)]
struct Parts<'a> {
    /// `redis://` or `rediss://` (TCP) or `unix://`.
    scheme: &'a str,
    tls: bool,
    /// TCP: host and port as written.
    host: &'a str,
    port: Option<&'a str>,
    /// Unix: the socket's path.
    unix: Option<&'a str>,
    /// TCP: the path's segments after the host.
    path: Vec<&'a str>,
    user: Option<String>,
    password: Option<String>,
    /// Whether a real password (not `***`) was written.
    password_written: bool,
    db: Option<u32>,
    object: Option<String>,
    lease_ms: Option<u64>,
    /// The URL as written, each password replaced by `***`.
    shown: String,
}

/// Splits `url` into its pieces.
fn split(url: &str) -> Result<Parts<'_>, &'static str> {
    if let Some(rest) = url.strip_prefix(REDIS_UNIX_PREFIX) {
        return split_unix(rest);
    }
    let (scheme, tls, rest) = if let Some(rest) = url.strip_prefix(REDIS_PREFIX) {
        (REDIS_PREFIX, false, rest)
    } else if let Some(rest) = url.strip_prefix(REDIS_TLS_PREFIX) {
        (REDIS_TLS_PREFIX, true, rest)
    } else {
        return Err(SERVER_URL);
    };
    let mut parts = Parts {
        scheme,
        tls,
        ..Parts::default()
    };
    let (shown_credentials, rest) = parts.take_credentials(rest)?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], Some(&rest[slash + 1..])),
        None => (rest, None),
    };
    (parts.host, parts.port) = split_host(authority)?;
    if let Some(path) = path {
        let path = path.strip_suffix('/').unwrap_or(path);
        if !path.is_empty() {
            parts.path = path.split('/').collect();
        }
    }
    match parts.path.as_slice() {
        [] => {}
        [object] => parts.object = Some((*object).to_owned()),
        [db, object] => {
            parts.db = Some(parse_db(db)?);
            parts.object = Some((*object).to_owned());
        }
        _ => {
            return Err(
                "a Redis name's path is `/NAME` or `/DB/NAME` (DB a database number): \
                 names are flat, they hold no `/`",
            );
        }
    }
    if let Some(query) = query {
        parts.lease_ms = Some(parse_lease(query)?);
    }
    parts.shown = match query {
        Some(query) => format!("{scheme}{shown_credentials}{rest}?{query}"),
        None => format!("{scheme}{shown_credentials}{rest}"),
    };
    Ok(parts)
}

/// What a Redis Sentinel name looks like.
const SENTINEL_NAME: &str = "a Redis Sentinel name is `redis+sentinel://[USER:PASSWORD@]HOST:PORT\
     [,HOST:PORT...]/SERVICE/NAME`: the sentinels, the name of the primary they monitor, the \
     object (on database 0, without TLS)";

/// Splits a `redis+sentinel://` name: the credentials (for the primary), the sentinels, the
/// service, the object and the lease.
fn split_sentinel(url: &str) -> Result<(Parts<'_>, Sentinels), &'static str> {
    let rest = url
        .strip_prefix(REDIS_SENTINEL_PREFIX)
        .ok_or(SENTINEL_NAME)?;
    let mut parts = Parts {
        scheme: REDIS_SENTINEL_PREFIX,
        ..Parts::default()
    };
    let (shown_credentials, rest) = parts.take_credentials(rest)?;
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (listed, path) = rest.split_once('/').ok_or(SENTINEL_NAME)?;
    let (service, object) = path.split_once('/').ok_or(SENTINEL_NAME)?;
    super::name::check_flat(service)
        .map_err(|_| "the service name of a Redis Sentinel name is not a flat name")?;
    let mut nodes = Vec::new();
    for (index, sentinel) in listed.split(',').enumerate() {
        let (host, port_text) = split_host(sentinel)?;
        let port = port_text
            .and_then(|port| port.parse::<u16>().ok())
            .filter(|port| *port != 0)
            .ok_or("each sentinel of a Redis Sentinel name is `HOST:PORT`, PORT from 1 to 65535")?;
        if index == 0 {
            // The password `***` stands for is looked up by the first sentinel.
            (parts.host, parts.port) = (host, port_text);
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        nodes.push((host.to_owned(), port));
    }
    parts.path = vec![service, object];
    parts.object = Some(object.to_owned());
    if let Some(query) = query {
        parts.lease_ms = Some(parse_lease(query)?);
    }
    parts.shown = match query {
        Some(query) => format!("{REDIS_SENTINEL_PREFIX}{shown_credentials}{rest}?{query}"),
        None => format!("{REDIS_SENTINEL_PREFIX}{shown_credentials}{rest}"),
    };
    let sentinels = Sentinels {
        nodes,
        service: service.to_owned(),
        shown: listed.to_owned(),
    };
    Ok((parts, sentinels))
}

/// Splits the part after `unix://`: `/PATH?QUERY`.
fn split_unix(rest: &str) -> Result<Parts<'_>, &'static str> {
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if !path.starts_with('/') || path.len() < 2 || path.contains('\0') {
        return Err("a Redis unix socket is `unix:///PATH/redis.sock`, with an absolute path");
    }
    let mut parts = Parts {
        scheme: REDIS_UNIX_PREFIX,
        unix: Some(path),
        ..Parts::default()
    };
    let mut shown = format!("{REDIS_UNIX_PREFIX}{path}");
    let mut separator = '?';
    for pair in query.into_iter().flat_map(|query| query.split('&')) {
        let (key, value) = pair.split_once('=').ok_or(UNIX_QUERY)?;
        match key {
            "name" if parts.object.is_none() => parts.object = Some(decode(value)?),
            "db" if parts.db.is_none() => parts.db = Some(parse_db(value)?),
            "user" if parts.user.is_none() => parts.user = Some(decode(value)?),
            "pass" if parts.password.is_none() => parts.set_password(value)?,
            "lease_ms" if parts.lease_ms.is_none() => parts.lease_ms = Some(parse_lease(pair)?),
            _ => return Err(UNIX_QUERY),
        }
        let value = if key == "pass" { HIDDEN } else { value };
        shown = format!("{shown}{separator}{key}={value}");
        separator = '&';
    }
    parts.shown = shown;
    Ok(parts)
}

const UNIX_QUERY: &str = "a Redis unix socket name is `unix:///PATH?name=NAME`, optionally with \
     `&db=N`, `&user=USER`, `&pass=PASSWORD` and `&lease_ms=N`, each once";

impl Parts<'_> {
    /// Takes the `USER[:PASSWORD]@` at the start of `rest` (the part after the scheme):
    /// returns them as shown (the password hidden) and what follows them.
    fn take_credentials<'r>(&mut self, rest: &'r str) -> Result<(String, &'r str), &'static str> {
        // A password may hold any character, even unencoded: the credentials end at the last
        // `@` (a host, a database and an object name hold none).
        let Some(at) = rest.rfind('@') else {
            return Ok((String::new(), rest));
        };
        let (credentials, rest) = (&rest[..at], &rest[at + 1..]);
        let (user, password) = match credentials.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (credentials, None),
        };
        if !user.is_empty() {
            self.user = Some(decode(user)?);
        }
        let shown = match password {
            Some(password) => {
                self.set_password(password)?;
                format!("{user}:{HIDDEN}@")
            }
            None => format!("{user}@"),
        };
        Ok((shown, rest))
    }

    /// Records the password written as `written` (percent-encoded): `***` asks for the one
    /// this process remembers.
    fn set_password(&mut self, written: &str) -> Result<(), &'static str> {
        if written == HIDDEN {
            // Looked up in `server`, once the user and the server are known.
            self.password = Some(HIDDEN.to_owned());
            self.password_written = false;
        } else {
            self.password = Some(decode(written)?);
            self.password_written = true;
        }
        Ok(())
    }

    /// The server these parts name, its password resolved.
    fn server(&self) -> Result<RedisServer, &'static str> {
        let endpoint = match self.unix {
            Some(path) => Endpoint::Unix(PathBuf::from(path)),
            None => Endpoint::Tcp {
                host: self
                    .host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port: match self.port {
                    None => DEFAULT_PORT,
                    Some(port) => port
                        .parse::<u16>()
                        .ok()
                        .filter(|port| *port != 0)
                        .ok_or("the Redis port must be a number from 1 to 65535")?,
                },
                tls: self.tls,
            },
        };
        let key = remembered_key(self.scheme, &endpoint, self.user.as_deref());
        let password = match self.password.as_deref() {
            Some(_) if !self.password_written => Some(
                remembered(&key)
                    .or_else(password_from_env)
                    .ok_or(PASSWORD_HIDDEN)?,
            ),
            Some(password) => {
                let password = Secret(password.to_owned());
                remember(key, &password);
                Some(password)
            }
            None => password_from_env(),
        };
        if self.user.is_some() && password.is_none() {
            // The client would log in as the default user, and the ACL user be ignored.
            return Err(USER_WITHOUT_PASSWORD);
        }
        let shown = self.shown_server();
        Ok(RedisServer {
            endpoint,
            db: self.db.unwrap_or(0),
            user: self.user.clone(),
            password,
            shown,
        })
    }

    /// The shown URL without the object and the lease: the server's.
    fn shown_server(&self) -> String {
        if self.unix.is_some() {
            let (base, query) = self.shown.split_once('?').unwrap_or((&self.shown, ""));
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| {
                    !pair.is_empty() && !pair.starts_with("name=") && !pair.starts_with("lease_ms=")
                })
                .collect();
            if kept.is_empty() {
                return base.to_owned();
            }
            return format!("{base}?{}", kept.join("&"));
        }
        let base = self
            .shown
            .split_once('?')
            .map_or(&*self.shown, |(base, _)| base);
        let base = base.trim_end_matches('/');
        // Drop the object's segment, keep the database's.
        match (self.object.is_some(), base.rsplit_once('/')) {
            (true, Some((server, _))) if !server.ends_with('/') => server.to_owned(),
            _ => base.to_owned(),
        }
    }
}

/// Why a name whose password is `***` cannot be opened.
const PASSWORD_HIDDEN: &str = "its password is hidden (`***`), and this process has not logged \
     in to that server as that user with its password; write the password in the URL, or set \
     MEMSPACE_REDIS_PASSWORD";

/// Why a name with a user and no password is refused.
const USER_WITHOUT_PASSWORD: &str = "it names an ACL user without a password: write \
     `USER:PASSWORD@` before the host (any password for a `nopass` user), or set \
     MEMSPACE_REDIS_PASSWORD";

/// `HOST` and `PORT` of `HOST[:PORT]` (`[IPV6][:PORT]`).
fn split_host(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    const HOST: &str = "the Redis host must be a host name or an IP address";
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(HOST)?;
        let (host, after) = authority.split_at(close + 1);
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(HOST),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let inner = host.trim_start_matches('[').trim_end_matches(']');
    if inner.is_empty()
        || !inner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        || (inner.contains(':') && !host.starts_with('['))
    {
        return Err(HOST);
    }
    Ok((host, port))
}

/// A database number: digits only.
fn parse_db(db: &str) -> Result<u32, &'static str> {
    const DB: &str = "a Redis database is a number (`/2/NAME`, `?db=2`)";
    if db.is_empty() || !db.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DB);
    }
    db.parse().map_err(|_| DB)
}

/// The `N` of `lease_ms=N`, at least [`MIN_LEASE_MS`].
fn parse_lease(query: &str) -> Result<u64, &'static str> {
    query
        .strip_prefix("lease_ms=")
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms >= MIN_LEASE_MS)
        .ok_or(
            "the only query a Redis name takes is `?lease_ms=N`, with N at least 100 (a lease \
             must outlast several round trips to the server)",
        )
}

/// `shown` (a URL as shown) with `password` written where it shows `***`.
fn with_password(shown: &str, password: &Secret) -> String {
    let encoded = encode(password.expose());
    let (marker, replacement) = if shown.starts_with(REDIS_UNIX_PREFIX) {
        ("pass=***", format!("pass={encoded}"))
    } else {
        (":***@", format!(":{encoded}@"))
    };
    shown.replacen(marker, &replacement, 1)
}

/// Percent-encodes every byte of `text` but the unreserved ones (`A-Z a-z 0-9 - . _ ~`).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}"); // writing to a String cannot fail
        }
    }
    out
}

/// Percent-decodes a user name, password or object name.
fn decode(text: &str) -> Result<String, &'static str> {
    const BAD: &str = "a `%` in a Redis URL must start a percent-encoded byte (`%40` for `@`), \
         and the bytes must be UTF-8";
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text.get(at + 1..at + 3).ok_or(BAD)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| BAD)?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| BAD)
}

// ---------------------------------------------------------------------------------------------
// Remembered passwords

/// The passwords this process logged in with, by server and user: what a `***` stands for.
static REMEMBERED: Mutex<Option<HashMap<String, Secret>>> = Mutex::new(None);

fn remembered_key(scheme: &str, endpoint: &Endpoint, user: Option<&str>) -> String {
    let user = user.unwrap_or("");
    match endpoint {
        Endpoint::Tcp { host, port, .. } => format!("{scheme}{user}@{host}:{port}"),
        Endpoint::Unix(path) => format!("{scheme}{user}@{}", path.display()),
    }
}

fn remember(key: String, password: &Secret) {
    REMEMBERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(key, password.clone());
}

fn remembered(key: &str) -> Option<Secret> {
    REMEMBERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|map| map.get(key).cloned())
}

fn password_from_env() -> Option<Secret> {
    if RECEIVED.with(Cell::get) {
        return None;
    }
    std::env::var(PASSWORD_ENV)
        .ok()
        .filter(|password| !password.is_empty())
        .map(Secret)
}

thread_local! {
    static RECEIVED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `open` on a handle's name that arrived as data (deserialized from a queue item, a
/// file): the password in [`PASSWORD_ENV`] is not sent to the server such a name names, which
/// whoever wrote the data chose. A `***` there is still the password this process used with
/// that very server and user. Names a worker and its parent send each other over their pipes
/// are this program's own, and open as usual.
pub(crate) fn opening_received_name<T>(open: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            RECEIVED.with(|flag| flag.set(self.0));
        }
    }
    if super::trust_may_travel() {
        return open();
    }
    let _reset = Reset(RECEIVED.with(|flag| flag.replace(true)));
    open()
}

// ---------------------------------------------------------------------------------------------
// Passwords travelling to a child

thread_local! {
    static TO_OWN_PROCESS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `encode` with Redis names serialized password and all: for the arguments and results
/// a worker and its parent send each other over their private pipes. Anywhere else (a handle
/// pushed to a queue, written to a file) a name is serialized as shown, its password hidden.
pub(crate) fn encoding_for_own_process<T>(encode: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            TO_OWN_PROCESS.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(TO_OWN_PROCESS.with(|flag| flag.replace(true)));
    encode()
}

/// The text a Redis name at `location`, shown as `shown`, is serialized as now.
pub(crate) fn transport<'a>(shown: &'a str, location: &'a RedisLocation) -> Cow<'a, str> {
    match &location.written {
        Some(written) if TO_OWN_PROCESS.with(Cell::get) => Cow::Borrowed(written.expose()),
        _ => Cow::Borrowed(shown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Parsed {
        parse_name(text).unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    #[test]
    fn every_url_form_names_its_server_database_user_and_object() {
        let plain = name("redis://10.0.0.5/jobs");
        assert_eq!(
            plain.location.server.endpoint,
            Endpoint::Tcp {
                host: "10.0.0.5".into(),
                port: 6379,
                tls: false
            }
        );
        assert_eq!(plain.location.server.db, 0);
        assert_eq!(plain.location.object, "jobs");
        assert_eq!(plain.location.server.shown, "redis://10.0.0.5");

        // One path segment is the object, even digits; two are the database and the object.
        assert_eq!(name("redis://h/7").location.object, "7");
        assert_eq!(name("redis://h/7").location.server.db, 0);
        let in_db = name("redis://h:7000/2/7");
        assert_eq!(
            (in_db.location.server.db, &*in_db.location.object),
            (2, "7")
        );
        assert_eq!(in_db.location.server.shown, "redis://h:7000/2");
        assert_eq!(parse_server("redis://h:7000/2").unwrap().db, 2);
        assert_eq!(parse_server("redis://h:7000/2/").unwrap().db, 2);
        assert!(parse_server("redis://h:7000/jobs").is_err());
        assert!(parse_name("redis://h/x/jobs").is_err());

        let user = name("rediss://app:s%40cret@db.example.com:6380/3/jobs?lease_ms=500");
        let server = &user.location.server;
        assert_eq!(
            server.endpoint,
            Endpoint::Tcp {
                host: "db.example.com".into(),
                port: 6380,
                tls: true
            }
        );
        assert_eq!(server.user.as_deref(), Some("app"));
        assert_eq!(server.password.as_ref().map(Secret::expose), Some("s@cret"));
        assert_eq!(user.location.lease_ms, Some(500));
        assert_eq!(
            user.shown,
            "rediss://app:***@db.example.com:6380/3/jobs?lease_ms=500"
        );
        assert_eq!(server.shown, "rediss://app:***@db.example.com:6380/3");

        let v6 = name("redis://[::1]:7000/jobs");
        assert_eq!(v6.location.server.address(), "[::1]:7000");

        let unix = name("unix:///run/redis.sock?db=2&user=app&pass=p%26w&name=jobs&lease_ms=200");
        let server = &unix.location.server;
        assert_eq!(server.endpoint, Endpoint::Unix("/run/redis.sock".into()));
        assert_eq!((server.db, server.user.as_deref()), (2, Some("app")));
        assert_eq!(server.password.as_ref().map(Secret::expose), Some("p&w"));
        assert_eq!(unix.location.object, "jobs");
        assert_eq!(unix.location.lease_ms, Some(200));
        assert_eq!(
            unix.shown,
            "unix:///run/redis.sock?db=2&user=app&pass=***&name=jobs&lease_ms=200"
        );
        assert_eq!(
            server.shown,
            "unix:///run/redis.sock?db=2&user=app&pass=***"
        );
        assert_eq!(
            server.locate("x"),
            "unix:///run/redis.sock?db=2&user=app&pass=***&name=x"
        );
    }

    #[test]
    fn a_password_is_shown_hidden_and_a_hidden_one_is_the_one_remembered() {
        let written = name("redis://pwuser:tiger%2F7@remembered.example:1/a");
        assert!(!format!("{:?}", written.location).contains("tiger"));
        assert!(!written.shown.contains("tiger"));
        // The name as shown opens with the password written before.
        let again = name(&written.shown);
        assert_eq!(
            again.location.server.password.as_ref().map(Secret::expose),
            Some("tiger/7")
        );
        // Another user on that server has no remembered password.
        assert_eq!(
            parse_name("redis://other:***@remembered.example:1/a").err(),
            Some(PASSWORD_HIDDEN)
        );
        // Only a handle sent to a child over its pipe carries the password, written or
        // remembered.
        assert_eq!(transport(&again.shown, &again.location), again.shown);
        let sent =
            encoding_for_own_process(|| transport(&again.shown, &again.location).into_owned());
        assert_eq!(sent, "redis://pwuser:tiger%2F7@remembered.example:1/a");
        assert_eq!(transport(&written.shown, &written.location), written.shown);
        let sent =
            encoding_for_own_process(|| transport(&written.shown, &written.location).into_owned());
        assert_eq!(sent, "redis://pwuser:tiger%2F7@remembered.example:1/a");
        // A user needs a password.
        assert!(
            parse_name("redis://lonely@h/a").is_err() || std::env::var_os(PASSWORD_ENV).is_some()
        );
    }
}
