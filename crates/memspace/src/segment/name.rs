//! Segment names: where a segment lives.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::access::Access;
use super::redis_name::{self, HIDDEN, RedisLocation, RedisServer, is_redis_url};
use crate::error::OpenError;
use crate::sys;

/// The prefix of every memspace object in `/dev/shm`.
pub const SHM_PREFIX: &str = "memspace.";
/// The longest name a shared-memory segment may have (the file name in `/dev/shm` adds
/// [`SHM_PREFIX`]).
pub const MAX_NAME_LEN: usize = 200;
/// The prefix that makes a name a file path: `file:/var/lib/app/jobs.memspace`.
pub const FILE_PREFIX: &str = "file:";

/// A validated segment name.
///
/// * `jobs`: a POSIX shared-memory object, `/dev/shm/memspace.jobs`. 1 to 200 of
///   `A-Z a-z 0-9 . _ -`, not starting with `.`; names are flat, so they never reach outside
///   `/dev/shm`. Gone at reboot.
/// * `file:PATH`: a regular file at `PATH`, mapped the same way; its content survives a reboot
///   (the lock is reset by the first process that opens it after the reboot).
/// * `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]/NAME`, `rediss://…` (TLS) or
///   `unix:///PATH/redis.sock?name=NAME`: the object `NAME` on a Redis server (see
///   [`crate::backend`] for every form); `NAME` follows the rules of shared-memory names, and
///   the name shows its password as `***`. Only [`Lock`](crate::sync::Lock),
///   [`SharedList`](crate::collections::SharedList), [`SharedMap`](crate::collections::SharedMap),
///   [`Queue`](crate::collections::Queue), [`Value`](crate::collections::Value) and
///   [`Event`](crate::sync::Event) have a Redis backend. A lock or a queue may add
///   `?lease_ms=N` (`&lease_ms=N` on a unix socket; N ≥ 100): the length of a lock's lease, or how long a queue's item may be
///   in flight before it is delivered again.
#[derive(Clone)]
pub struct SegmentName {
    /// The name as the user wrote it (a Redis name's password hidden), followed, when the handle that carries the name was
    /// opened or created accepting more than the defaults (another owner, a wider mode), by
    /// [`ACCESS_SEPARATOR`] and that access: it travels with a handle to a child process,
    /// which then reopens the segment as its parent did. (Kept in the text rather than in a
    /// field of its own: names travel inside every error, which must stay small.)
    text: String,
    location: Location,
}

/// Separates a name from the access it carries when a handle travels to a child. A NUL byte
/// can appear in no name (paths and shared-memory names cannot hold one), so a name a user
/// typed never splits here.
const ACCESS_SEPARATOR: char = '\0';

// Names compare as the user wrote them: the access a handle carries is not part of the name.
impl PartialEq for SegmentName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SegmentName {}

impl std::hash::Hash for SegmentName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for SegmentName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SegmentName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Location {
    /// The name given to `shm_open` (`/memspace.NAME`).
    Shm(String),
    File(PathBuf),
    /// An object on a Redis server (boxed: it is rare, and names travel inside every error).
    Redis(Box<RedisLocation>),
}

impl SegmentName {
    /// Checks `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::InvalidName`] saying what is wrong.
    pub fn new(name: &str) -> Result<Self, OpenError> {
        if let Some((plain, access)) = name.split_once(ACCESS_SEPARATOR) {
            // Only a handle passed between a worker and its parent brings trust with it
            // (see `decoding_from_own_process` in `access.rs`); a NUL byte anywhere else is
            // just invalid.
            let access = super::trust_may_travel()
                .then(|| Access::decode(access))
                .flatten()
                .ok_or_else(|| OpenError::InvalidName {
                    name: redact_url(name),
                    reason: "it contains a NUL byte",
                })?;
            return Ok(Self::new(plain)?.with_access(access));
        }
        let invalid = |reason| OpenError::InvalidName {
            name: redact_url(name),
            reason,
        };
        if let Some(path) = name.strip_prefix(FILE_PREFIX) {
            if path.is_empty() {
                return Err(invalid("`file:` needs a path after it"));
            }
            if path.contains('\0') {
                return Err(invalid("it contains a NUL byte"));
            }
            return Ok(SegmentName {
                text: name.to_owned(),
                location: Location::File(PathBuf::from(path)),
            });
        }
        if is_redis_url(name) {
            return Self::redis(name);
        }
        check_flat(name).map_err(invalid)?;
        Ok(SegmentName {
            text: name.to_owned(),
            location: Location::Shm(format!("/{SHM_PREFIX}{name}")),
        })
    }

    /// Checks a Redis name (see [`crate::backend`]).
    fn redis(name: &str) -> Result<Self, OpenError> {
        let parsed = redis_name::parse_name(name).map_err(|reason| OpenError::InvalidName {
            name: redact_url(name),
            reason,
        })?;
        Ok(SegmentName {
            text: parsed.shown,
            location: Location::Redis(Box::new(parsed.location)),
        })
    }

    /// A name for the Redis server `server` itself, shown as its URL: what errors of
    /// server-wide operations (`memspace ls --redis`) name. It names no object.
    #[cfg(feature = "redis")]
    pub(crate) fn server(server: &RedisServer) -> Self {
        SegmentName {
            text: server.shown.clone(),
            location: Location::Redis(Box::new(RedisLocation {
                server: server.clone(),
                object: String::new(),
                lease_ms: None,
                written: None,
                sentinels: None,
            })),
        }
    }

    /// The URL of the Redis server of a Redis name, its password hidden and without the
    /// object: `redis://127.0.0.1:6379`, `rediss://app:***@db.example.com/2`.
    #[must_use]
    pub fn redis_server(&self) -> Option<&str> {
        match &self.location {
            Location::Redis(at) => Some(&at.server.shown),
            _ => None,
        }
    }

    /// Whether this names an object on a Redis server.
    #[must_use]
    pub fn is_redis(&self) -> bool {
        matches!(self.location, Location::Redis(_))
    }

    /// A fresh name for an anonymous segment: `anon.PID.SEQUENCE.NONCE`.
    pub(crate) fn anonymous() -> Self {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        SegmentName::new(&format!("anon.{}.{sequence}.{nonce:08x}", sys::pid()))
            .expect("anonymous names are valid")
    }

    /// The name as the user wrote it, a Redis name's password shown as `***` (see
    /// [`crate::backend`]: the same process can open the name as shown).
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.text
            .split_once(ACCESS_SEPARATOR)
            .map_or(&self.text, |(plain, _)| plain)
    }

    /// The file path, for a `file:` segment.
    #[must_use]
    pub fn file_path(&self) -> Option<&Path> {
        match &self.location {
            Location::File(path) => Some(path),
            Location::Shm(_) | Location::Redis(_) => None,
        }
    }

    /// Where a `redis://` object lives.
    #[cfg(feature = "redis")]
    pub(crate) fn redis_location(&self) -> Option<&RedisLocation> {
        match &self.location {
            Location::Redis(at) => Some(at),
            _ => None,
        }
    }

    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    /// What an open of this name accepts.
    pub(crate) fn access(&self) -> Access {
        self.text
            .split_once(ACCESS_SEPARATOR)
            .and_then(|(_, access)| Access::decode(access))
            .unwrap_or_default()
    }

    /// This name, carrying `access` (kept only if it differs from the default).
    pub(crate) fn with_access(mut self, access: Access) -> Self {
        self.text.truncate(self.as_str().len());
        if access != Access::default() {
            self.text = format!("{}{ACCESS_SEPARATOR}{}", self.text, access.encode());
        }
        self
    }

    /// The name as a handle travels: the text, and the access it was opened with if that is
    /// not the default, so that a child reopens the segment as its parent did. A Redis name
    /// carries its password only to a child over their private pipe (see
    /// `encoding_for_own_process`), and is shown everywhere else.
    pub(crate) fn to_transport(&self) -> Cow<'_, str> {
        match &self.location {
            Location::Redis(at) => redis_name::transport(&self.text, at),
            _ => Cow::Borrowed(&self.text),
        }
    }
}

/// `text` with the credentials of every URL in it hidden: `redis://USER:PASSWORD@HOST` becomes
/// `redis://USER:***@HOST`, `redis://SECRET@HOST` becomes `redis://***@HOST` (a lone word
/// there may be a password typed in the wrong place), and `pass=PASSWORD` in a URL's query
/// becomes `pass=***`. For tools
/// that echo what a user typed (an error message, a log line): memspace's own errors already
/// hide them.
///
/// Each whitespace-separated word is taken as one URL at most: from its `://` to its last `@`
/// is the user name and password (a name never contains `@`, so even a password holding a `/`
/// is hidden whole).
///
/// # Examples
///
/// ```
/// use memspace::segment::redact_credentials;
///
/// assert_eq!(
///     redact_credentials("listing `redis://app:hunter2@db:6379`: refused"),
///     "listing `redis://app:***@db:6379`: refused"
/// );
/// assert_eq!(redact_credentials("redis://127.0.0.1:6379/jobs"), "redis://127.0.0.1:6379/jobs");
/// ```
#[must_use]
pub fn redact_credentials(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !(text.contains('@') || text.contains("pass=")) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        out.push_str(&redact_url(word));
        let space_end = after
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(after.len());
        out.push_str(&after[..space_end]);
        rest = &after[space_end..];
    }
    Cow::Owned(out)
}

/// `url` with the part between its first `://` and its last `@` hidden, and the value of a
/// `pass=` in its query (see [`redact_credentials`]); `url` itself if it has neither.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return url.to_owned();
    };
    if let Some(pass) = url.find("?pass=").or_else(|| url.find("&pass=")) {
        let value = pass + "?pass=".len();
        let end = url[value..].find('&').map_or(url.len(), |end| value + end);
        let (before, after) = (&url[..pass], &url[end..]);
        let key = &url[pass..value];
        // Neither side holds this `pass=` any more; the rest may hold another.
        return format!("{}{key}{HIDDEN}{}", redact_url(before), redact_url(after));
    }
    let Some(at) = url[scheme_end..].rfind('@').map(|at| scheme_end + at) else {
        return url.to_owned();
    };
    let credentials = &url[scheme_end..at];
    let shown = match credentials.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{shown}{}", &url[..scheme_end], &url[at..])
}

/// Checks a flat name: 1 to 200 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub(super) fn check_flat(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("it is longer than 200 bytes");
    }
    if name.starts_with('.') {
        return Err("it starts with `.`");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(match bad {
            '/' => "it contains `/`; names are flat (use `file:PATH` for a file)",
            '\0' => "it contains a NUL byte",
            _ => "only letters, digits, `.`, `_` and `-` are allowed",
        });
    }
    Ok(())
}

/// The Redis server of the URL `url` (see [`crate::backend`]).
pub(crate) fn server_of_url(url: &str) -> Result<RedisServer, OpenError> {
    redis_name::parse_server(url).map_err(|reason| OpenError::InvalidName {
        name: redact_url(url),
        reason,
    })
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A `redis://` name given to a type that only lives in shared memory, or to any type when
/// memspace was built without its `redis` feature.
pub(super) fn not_a_segment(name: &SegmentName) -> OpenError {
    if !cfg!(feature = "redis") {
        return OpenError::RedisDisabled { name: name.clone() };
    }
    OpenError::InvalidName {
        name: name.as_str().to_owned(),
        reason: "only Lock, SharedList, SharedMap, Queue, Value and Event have a Redis backend; \
                 this object needs a shared-memory name",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that every one of `names` is refused as invalid.
    fn assert_all_invalid(names: &[&str]) {
        for bad in names {
            assert!(
                matches!(SegmentName::new(bad), Err(OpenError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn names_are_validated() {
        assert!(SegmentName::new("jobs-1.v2_x").is_ok());
        assert_all_invalid(&[
            "",
            ".hidden",
            "a/b",
            "..",
            "a\0b",
            "spa ce",
            "file:",
            &"x".repeat(201),
        ]);
    }

    #[test]
    fn file_names_are_paths() {
        let name = SegmentName::new("file:/tmp/x.seg").unwrap();
        assert_eq!(name.file_path(), Some(Path::new("/tmp/x.seg")));
        assert_eq!(name.as_str(), "file:/tmp/x.seg");
    }

    #[test]
    fn redis_names_name_a_server_and_an_object() {
        let name = SegmentName::new("redis://127.0.0.1:6379/jobs").unwrap();
        assert_eq!(name.redis_server(), Some("redis://127.0.0.1:6379"));
        assert!(name.is_redis());
        let leased = SegmentName::new("redis://localhost:7000/l?lease_ms=500").unwrap();
        assert!(leased.is_redis());
        assert_all_invalid(&[
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1:0/jobs",
            "redis://:6379/jobs",
            "redis://127.0.0.1:6379/a/b",
            "redis://127.0.0.1:6379/1/a/b",
            "redis://127.0.0.1:6379/",
            "redis://127.0.0.1:6379/x?ttl=4",
            "redis://127.0.0.1:6379/x?lease_ms=0",
            "redis://127.0.0.1:6379/x?lease_ms=99",
            "unix://relative.sock?name=x",
            "unix:///run/redis.sock",
            "unix:///run/redis.sock?name=x&name=y",
            "unix:///run/redis.sock?name=x&color=red",
        ]);
    }

    #[test]
    #[cfg(feature = "redis")]
    fn sentinel_names_name_sentinels_a_service_and_an_object() {
        let name = SegmentName::new(
            "redis+sentinel://127.0.0.1:26379,h2:26380/mymaster/jobs?lease_ms=500",
        )
        .unwrap();
        assert!(name.is_redis());
        let at = name.redis_location().unwrap();
        let sentinels = at.sentinels.as_ref().unwrap();
        assert_eq!(
            sentinels.nodes,
            [("127.0.0.1".to_owned(), 26379), ("h2".to_owned(), 26380)]
        );
        assert_eq!(sentinels.service, "mymaster");
        assert_eq!((at.object.as_str(), at.lease_ms), ("jobs", Some(500)));
        assert_eq!(at.server.db, 0);
        assert_eq!(
            name.redis_server(),
            Some("redis+sentinel://127.0.0.1:26379,h2:26380/mymaster")
        );
        // Credentials are the primary's, shown hidden.
        let with_login =
            SegmentName::new("redis+sentinel://app:s3cret@127.0.0.1:26379/mymaster/jobs").unwrap();
        assert_eq!(
            with_login.as_str(),
            "redis+sentinel://app:***@127.0.0.1:26379/mymaster/jobs"
        );
        let server = &with_login.redis_location().unwrap().server;
        assert_eq!(server.user.as_deref(), Some("app"));
        assert_eq!(
            server.password.as_ref().map(redis_name::Secret::expose),
            Some("s3cret")
        );
        assert!(!format!("{with_login:?}").contains("s3cret"));
        assert_all_invalid(&[
            "redis+sentinel://127.0.0.1:26379/jobs",
            "redis+sentinel://127.0.0.1:26379/mymaster/",
            "redis+sentinel://127.0.0.1:26379,/mymaster/jobs",
            "redis+sentinel://127.0.0.1/mymaster/jobs",
            "redis+sentinel://127.0.0.1:26379/my/master/jobs",
            "redis+sentinel://127.0.0.1:26379/2/mymaster/jobs",
        ]);
    }

    #[test]
    fn access_travels_with_a_name_and_is_not_part_of_it() {
        let plain = SegmentName::new("jobs").unwrap();
        assert_eq!(plain.to_transport(), "jobs");
        let access = Access {
            owner: Some(1000),
            mode: 0o660,
        };
        let trusting = plain.clone().with_access(access);
        // A name that brings trust is refused, except between a worker and its parent.
        assert!(SegmentName::new(&trusting.to_transport()).is_err());
        let travelled = crate::segment::decoding_from_own_process(|| {
            SegmentName::new(&trusting.to_transport())
        })
        .unwrap();
        assert_eq!(travelled.access(), access);
        assert_eq!(travelled, plain);
        assert_eq!(travelled.as_str(), "jobs");
        assert!(SegmentName::new("jobs\0x:y").is_err());
    }

    #[test]
    fn credentials_in_urls_are_hidden() {
        for (text, shown) in [
            ("redis://u:pw@h:1/x", "redis://u:***@h:1/x"),
            ("redis://:pw@h:1/x", "redis://:***@h:1/x"),
            ("redis://pw@h:1", "redis://***@h:1"),
            ("redis://u:p/w@x@h:1/x", "redis://u:***@h:1/x"),
            (
                "a `redis://u:pw@h:1/x` b rediss://pw@h c@d",
                "a `redis://u:***@h:1/x` b rediss://***@h c@d",
            ),
        ] {
            assert_eq!(redact_credentials(text), shown);
        }
        for text in ["redis://h:1/x", "a@b", "file:/a@b", ""] {
            assert!(
                matches!(redact_credentials(text), Cow::Borrowed(_)),
                "{text}"
            );
        }
        let err = SegmentName::new("redis://u:pw@h:1/a/b/c").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("pw"), "{err:?}");
        let err = server_of_url("redis://u:pw@h:1/x/y").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("pw"), "{err:?}");
        assert_eq!(server_of_url("redis://h:1/").unwrap().shown, "redis://h:1");
        assert_eq!(
            redact_credentials("unix:///s.sock?user=app&pass=pw&name=x"),
            "unix:///s.sock?user=app&pass=***&name=x"
        );
        assert_eq!(
            redact_credentials("unix:///s.sock?pass=pw"),
            "unix:///s.sock?pass=***"
        );
    }

    #[test]
    fn anonymous_names_are_valid_and_distinct() {
        let a = SegmentName::anonymous();
        let b = SegmentName::anonymous();
        assert_ne!(a, b);
        assert!(SegmentName::new(a.as_str()).is_ok());
    }
}
