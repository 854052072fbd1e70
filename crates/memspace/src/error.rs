//! Errors as values: one enum per operation that has reasons of its own, and the umbrella
//! [`Error`] that `?` converts them into.
//!
//! Every message names the object (the segment's name) and, where there is one, says what to
//! do next. Causes are exposed through `source()`, not repeated in the message.

use std::io;

use crate::collections::QueueError;
use crate::segment::{Kind, SegmentName};
use crate::spawn::{JoinError, SpawnError, TaskError};
use crate::sync::{BarrierError, LeaseError, LockError, SemaphoreError, TryLockError};

/// A `Result` whose error is memspace's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any failure of a memspace operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A segment could not be created or opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The segment reached the largest size it was created to grow to.
    #[error(
        "segment `{name}` is full: it needs {needed} bytes and was created to grow to at most \
         {max_size}; create it with a larger `SegmentOptions::max_size` (`--max-size` of \
         `memspace list|map|queue create`)"
    )]
    Full {
        /// The segment.
        name: SegmentName,
        /// The size the operation needed.
        needed: u64,
        /// The largest size the segment may have.
        max_size: u64,
    },
    /// The system has no memory (or `/dev/shm`, or the file system) left to create the segment
    /// or to grow it. Nothing was written; a segment that existed is unchanged.
    #[error(
        "no space left for segment `{name}` to have {needed} bytes; free space in its file system \
         (`df -h /dev/shm`, `memspace ls`) and retry"
    )]
    NoSpace {
        /// The segment.
        name: SegmentName,
        /// The size the operation needed.
        needed: u64,
    },
    /// The object breaks an invariant memspace keeps: a segment's header or content (a peer
    /// wrote garbage, or the file was edited by something else), or a Redis object's keys.
    #[error(
        "`{name}` is damaged: {what}; `memspace rm {name}` removes it (`memspace inspect {name}` \
         shows what of it can still be read)"
    )]
    Corrupt {
        /// The segment.
        name: SegmentName,
        /// What was found.
        what: String,
    },
    /// An item was stored intact but does not decode as the requested type.
    #[error(
        "item {index} of `{name}` cannot be read as `{expected}`; was it written with another type?"
    )]
    Decode {
        /// The collection's segment.
        name: SegmentName,
        /// The item's position.
        index: u64,
        /// The Rust type it was read as.
        expected: &'static str,
        /// The decoder's complaint.
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// A value of a Redis map was stored intact but does not decode as the requested type. (A
    /// Redis map has no positions to name, so the error names the key.)
    #[error(
        "the value of key {key} in map `{name}` cannot be read as `{expected}`; was it written \
         with another type?"
    )]
    DecodeMapValue {
        /// The map.
        name: SegmentName,
        /// The key, as text (`"ada"`, `[1, 2]`), shortened if it is long.
        key: String,
        /// The Rust type it was read as.
        expected: &'static str,
        /// The decoder's complaint (boxed: it would make every `Result` larger).
        #[source]
        source: Box<rmp_serde::decode::Error>,
    },
    /// An index lies past the end of a list or an array (Python's `IndexError`); nothing was
    /// changed.
    #[error("index {index} is out of range for `{name}`, which has {len} items")]
    IndexOutOfRange {
        /// The list or array.
        name: SegmentName,
        /// The index asked for.
        index: u64,
        /// Its length when it was asked.
        len: u64,
    },
    /// A slice of another length than the array it is copied into.
    #[error("`{name}` has {len} elements; a slice of {given} cannot be copied into it")]
    LengthMismatch {
        /// The array.
        name: SegmentName,
        /// Its number of elements.
        len: u64,
        /// The slice's.
        given: u64,
    },
    /// A value could not be encoded for storage (for example a map with non-string keys that
    /// the encoding cannot represent).
    #[error("a value of type `{type_name}` cannot be stored in `{name}`")]
    Encode {
        /// The collection's segment.
        name: SegmentName,
        /// The Rust type of the value.
        type_name: &'static str,
        /// The encoder's complaint.
        #[source]
        source: rmp_serde::encode::Error,
    },
    /// A lock operation failed; the guard, if there was one, has been released.
    #[error(transparent)]
    Lock(LockError<()>),
    /// A worker could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// A worker ended without returning a value.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// The Redis server of a Redis-backed object could not be reached, or did not answer in
    /// time. Reads are retried for two seconds, reconnecting, before this is returned; writes
    /// are not replayed once sent (a write whose answer was lost may have been applied: see
    /// `maybe_applied`).
    #[error(
        "cannot reach the Redis server `{server}` for `{name}` while {op}{}; is redis-server \
         running there? start one with `redis-server --port {}`, or check the URL",
        if *.maybe_applied { " (the write may or may not have been applied: read the object to find out)" } else { "" },
        port_of(.server)
    )]
    RedisUnreachable {
        /// The object.
        name: SegmentName,
        /// `HOST:PORT`, or the path of a unix socket.
        server: String,
        /// What was being done (`"pushing"`, `"reading an item"`, ...).
        op: &'static str,
        /// Whether a write was sent and its answer lost: it may or may not have been applied.
        maybe_applied: bool,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The Redis server of `name` does not let memspace in: a password is missing or wrong,
    /// the ACL user is refused, or may not run what memspace needs (see [`AuthProblem`]).
    #[error("cannot log in to the Redis server `{server}` for `{name}`: {problem}")]
    RedisAuth {
        /// The object.
        name: SegmentName,
        /// `HOST:PORT`, or the path of a unix socket.
        server: String,
        /// What it refused (boxed: it would make every `Result` larger).
        problem: Box<AuthProblem>,
    },
    /// The Redis server answered with an error (for example a key of `name` was changed by
    /// something other than memspace).
    #[error(
        "the Redis server refused {op} on `{name}`; `memspace inspect {name}` shows the object"
    )]
    Redis {
        /// The object.
        name: SegmentName,
        /// What was being done.
        op: &'static str,
        /// The server's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The operation exists only for shared-memory objects.
    #[error("`{name}` is a Redis object: {what} exists only for shared-memory objects")]
    Unsupported {
        /// The object.
        name: SegmentName,
        /// The operation.
        what: &'static str,
    },
    /// A `try_` form found the object's lock held by someone else.
    #[error("the lock of `{name}` is held by someone else")]
    WouldBlock {
        /// The object.
        name: SegmentName,
    },
    /// A timed form waited in vain for the object's lock, or an observer (`inspect`) gave up
    /// its bounded wait for it.
    #[error("the lock of `{name}` was not released within {waited:?}")]
    Timeout {
        /// The object.
        name: SegmentName,
        /// How long the caller waited.
        waited: std::time::Duration,
    },
    /// A Redis lock's guard lost its lease, or could not tell (see [`LeaseError`]).
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// A queue operation's own failure (full, empty, timed out, an item not in flight, an item
    /// that does not decode): see [`QueueError`].
    #[error(transparent)]
    Queue(Box<QueueError>),
    /// A semaphore operation's own failure: see [`SemaphoreError`].
    #[error(transparent)]
    Semaphore(Box<SemaphoreError>),
    /// A barrier operation's own failure: see [`BarrierError`].
    #[error(transparent)]
    Barrier(Box<BarrierError>),
    /// A pool's task failed: see [`TaskError`].
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The operating system refused an operation on a segment.
    #[error("{op} on segment `{name}` failed")]
    Os {
        /// The segment.
        name: SegmentName,
        /// The call that failed (`"fallocate"`, `"mmap"`, ...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// The port of `HOST:PORT`, for the hint that starts a server there.
fn port_of(server: &str) -> &str {
    server.rsplit_once(':').map_or("6379", |(_, port)| port)
}

/// `From` for an operation's error type whose `Other` variant holds an [`Error`]: that one is
/// unwrapped, the rest are kept boxed in `$variant`.
macro_rules! from_operation_error {
    ($type:ident, $variant:ident) => {
        impl From<$type> for Error {
            fn from(err: $type) -> Self {
                match err {
                    $type::Other(err) => err,
                    other => Error::$variant(Box::new(other)),
                }
            }
        }
    };
}

from_operation_error!(QueueError, Queue);
from_operation_error!(SemaphoreError, Semaphore);
from_operation_error!(BarrierError, Barrier);

impl<G> From<TryLockError<G>> for Error {
    /// As the conversion of a [`LockError`]: the guard, if any, is dropped.
    fn from(err: TryLockError<G>) -> Self {
        match err {
            TryLockError::WouldBlock { name } => Error::WouldBlock { name },
            TryLockError::Timeout { name, waited } => Error::Timeout { name, waited },
            TryLockError::Lock(err) => err.into(),
        }
    }
}

impl<G> From<LockError<G>> for Error {
    /// Keeps the reason and drops the guard, which unlocks the lock. A lock reported as
    /// `OwnerDied` that is converted this way was never marked consistent, so it becomes
    /// unrecoverable: handle `OwnerDied` before using `?` when the lock must survive.
    fn from(err: LockError<G>) -> Self {
        Error::Lock(err.without_guard())
    }
}

/// Why a Redis server does not let memspace in ([`Error::RedisAuth`]). None of them shows a
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthProblem {
    /// The server needs a password (`requirepass`, or an ACL default user with one), and the
    /// URL gives none.
    #[error(
        "it needs a password, and the URL gives none; write `:PASSWORD@` before the host in \
         the URL (`USER:PASSWORD@` for an ACL user, `pass=PASSWORD` on a unix socket), or set \
         MEMSPACE_REDIS_PASSWORD"
    )]
    PasswordMissing,
    /// The password of the default user is wrong.
    #[error("the password is wrong; check it against the server's `requirepass`")]
    WrongPassword,
    /// The URL gives a password, and the server's default user needs none.
    #[error(
        "the URL gives a password, and the server needs none; remove it from the URL (or \
         unset MEMSPACE_REDIS_PASSWORD)"
    )]
    PasswordNotNeeded,
    /// The ACL user does not exist, is disabled, or its password is wrong: Redis answers the
    /// three alike.
    #[error(
        "user `{user}` does not exist, is disabled, or its password is wrong (Redis does not \
         say which); check the URL against `ACL LIST` on the server"
    )]
    UserRefused {
        /// The user name of the URL.
        user: String,
    },
    /// The user logged in, and may not run a command or touch a key memspace needs.
    #[error(
        "user `{user}` is not allowed to do what memspace needs ({what}); allow it memspace's \
         keys and commands, for example `ACL SETUSER {user} ~memspace:* +@all`"
    )]
    NotPermitted {
        /// The user name (`default` for the default user).
        user: String,
        /// What the server said.
        what: String,
    },
    /// The server's TLS certificate is not signed by a CA this client trusts (or is not for
    /// this host, or has expired).
    #[error(
        "its TLS certificate is not trusted ({why}); if a private CA signed it, name the CA's \
         PEM file in MEMSPACE_REDIS_CA"
    )]
    CertificateNotTrusted {
        /// What TLS found wrong (`UnknownIssuer`, `NotValidForName`, `Expired`).
        why: String,
    },
    /// The server asks for a client certificate, and got none it trusts.
    #[error(
        "it asks for a client certificate signed by its CA ({why}); name the certificate's PEM \
         file in MEMSPACE_REDIS_CERT and its private key's in MEMSPACE_REDIS_KEY"
    )]
    ClientCertificateRefused {
        /// The TLS alert the server sent (`CertificateRequired`, `UnknownCA`).
        why: String,
    },
    /// The server has no database with the URL's number (see its `databases` setting).
    #[error("it has no database {db} (see its `databases` setting); use another number")]
    NoSuchDatabase {
        /// The database number of the URL.
        db: u32,
    },
    /// The server is a node of a Redis Cluster, which has database 0 only, and the URL names
    /// another.
    #[error(
        "it is a node of a Redis Cluster, which has only database 0; drop the database {db} \
         from the name (`redis://HOST:PORT/NAME`)"
    )]
    ClusterHasNoDatabase {
        /// The database number of the URL.
        db: u32,
    },
}

/// Where `memspace` lists the objects that could have been meant by `name`.
fn where_to_look(name: &SegmentName) -> String {
    if name
        .as_str()
        .starts_with(crate::segment::REDIS_SENTINEL_PREFIX)
    {
        return "`memspace ls --redis redis://HOST:PORT` with the primary the sentinels name \
                lists what is there"
            .to_owned();
    }
    match name.redis_server() {
        Some(server) => format!("`memspace ls --redis {server}` lists what is there"),
        None => "`memspace ls` lists segments".to_owned(),
    }
}

/// Why a segment could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The name is not a valid segment name.
    #[error("`{name}` is not a valid segment name: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file that `MEMSPACE_REDIS_CA`, `MEMSPACE_REDIS_CERT` or `MEMSPACE_REDIS_KEY` names
    /// for a `rediss://` name cannot be used.
    #[error("`{name}` needs TLS, and {variable} cannot be used: {problem}")]
    TlsFile {
        /// The object.
        name: SegmentName,
        /// The environment variable.
        variable: &'static str,
        /// What is wrong, naming the file.
        problem: String,
    },
    /// The name is a Redis object's (`redis://HOST:PORT/NAME`), and this memspace was built
    /// without its `redis` feature, so it has no Redis backend. (The variant exists either
    /// way, so that code matching on it builds with and without the feature.)
    #[error(
        "`{name}` is a Redis object, and this memspace was built without its `redis` feature, \
         which is its Redis backend; enable it with `features = [\"redis\"]` on memspace in \
         Cargo.toml (it is a default feature: `default-features = false` turns it off)"
    )]
    RedisDisabled {
        /// The object.
        name: SegmentName,
    },
    /// No segment (or Redis object) has this name.
    #[error(
        "`{name}` does not exist; check the name ({}) or create it first",
        where_to_look(name)
    )]
    NotFound {
        /// The segment.
        name: SegmentName,
    },
    /// A Redis object was removed and created again since this handle opened it: the handle
    /// refers to the object that is gone, and writes nothing into the new one.
    #[error(
        "`{name}` was removed and created again since this handle opened it; open it again to \
         use the new object"
    )]
    Replaced {
        /// The object.
        name: SegmentName,
    },
    /// A segment with this name exists already.
    #[error("`{name}` already exists; open it instead, or remove it with `memspace rm {name}`")]
    AlreadyExists {
        /// The segment.
        name: SegmentName,
    },
    /// The segment belongs to another user, or its mode forbids this user.
    #[error(
        "permission denied on segment `{name}`: it belongs to another user or its mode forbids access"
    )]
    PermissionDenied {
        /// The segment.
        name: SegmentName,
    },
    /// The segment belongs to another user than this process's effective user. Its owner can
    /// change anything in it (or hold its lock for ever), so it is opened only when the caller
    /// trusts that user.
    #[error(
        "segment `{name}` belongs to user {owner}, not to you (user {user}): its owner can change \
         anything in it; open it only if you trust that user (`SegmentOptions::trust_owner({owner})`, \
         `--trust-owner {owner}` on the command line)"
    )]
    UntrustedOwner {
        /// The segment.
        name: SegmentName,
        /// The uid that owns it.
        owner: u32,
        /// This process's effective uid.
        user: u32,
    },
    /// The segment's mode lets in more users than the open accepts: any of them can change it.
    #[error(
        "segment `{name}` has mode {mode:04o}, which grants more than the {accepted:04o} this open \
         accepts: every user it lets in can change it; accept it with `SegmentOptions::mode(0o{mode:o})` \
         (`--accept-mode {mode:o}` on the command line) if you trust them, or narrow it with `chmod`"
    )]
    UntrustedMode {
        /// The segment.
        name: SegmentName,
        /// Its permission bits.
        mode: u32,
        /// The widest bits the open accepted.
        accepted: u32,
    },
    /// Something other than a regular file is at the segment's name (a symbolic link, a
    /// directory, a FIFO, a device): memspace neither opens nor removes it.
    #[error(
        "`{name}` is {what}: memspace opens and removes only the regular files it creates; leave \
         it alone, or remove it by other means if it is yours"
    )]
    NotAFile {
        /// The name.
        name: SegmentName,
        /// What is there (`"a symbolic link"`, ...).
        what: &'static str,
    },
    /// The creator has not finished initialising it: it may still be starting, or it died
    /// while creating it.
    #[error(
        "segment `{name}` was never finished by its creator (still starting, or it died while \
         creating it); retry, or remove it with `memspace rm {name}`"
    )]
    NotInitialized {
        /// The segment.
        name: SegmentName,
    },
    /// The object exists but was not written by memspace.
    #[error(
        "`{name}` is not a memspace segment (its header has no memspace signature): memspace neither \
         uses nor removes it; leave it alone, or remove it by other means if it is yours"
    )]
    Foreign {
        /// The segment.
        name: SegmentName,
    },
    /// The segment was written by an incompatible layout version of this library.
    #[error(
        "`{name}` has layout v{found}, this build reads v{expected}; use a matching memspace version"
    )]
    VersionMismatch {
        /// The segment.
        name: SegmentName,
        /// The version in the segment.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The segment holds another kind of object than the one asked for.
    #[error("`{name}` holds a {found}, not a {expected}")]
    WrongKind {
        /// The segment.
        name: SegmentName,
        /// What the segment holds.
        found: Kind,
        /// What the caller asked for.
        expected: Kind,
    },
    /// The segment holds the right kind of object but for another value type.
    #[error(
        "`{name}` holds values of type `{found}` ({found_size} bytes), not `{expected}` ({expected_size} bytes)"
    )]
    TypeMismatch {
        /// The segment.
        name: SegmentName,
        /// The type name recorded by the creator.
        found: String,
        /// The size of the stored values.
        found_size: u64,
        /// The type asked for.
        expected: &'static str,
        /// Its size.
        expected_size: u64,
    },
    /// The backing file is shorter than the header says: something truncated it.
    #[error(
        "segment `{name}` is truncated: its file has {file_size} bytes, its header needs {expected}; remove it with `memspace rm {name}`"
    )]
    Truncated {
        /// The segment.
        name: SegmentName,
        /// The size of the backing file.
        file_size: u64,
        /// The size the header claims.
        expected: u64,
    },
}

impl Error {
    /// Maps an `io::Error` from `op` on `name` to the most specific error: the ones that say
    /// why a name could not be opened are [`OpenError`]s, anything else is [`Error::Os`].
    pub(crate) fn from_io(name: &SegmentName, op: &'static str, err: io::Error) -> Self {
        let name = name.clone();
        match err.kind() {
            io::ErrorKind::NotFound => OpenError::NotFound { name }.into(),
            io::ErrorKind::AlreadyExists => OpenError::AlreadyExists { name }.into(),
            io::ErrorKind::PermissionDenied => OpenError::PermissionDenied { name }.into(),
            // ELOOP: the last component is a symbolic link, which segment opens never follow.
            _ if err.raw_os_error() == Some(crate::sys::ELOOP) => OpenError::NotAFile {
                name,
                what: "a symbolic link",
            }
            .into(),
            _ => Error::Os {
                name,
                op,
                source: err,
            },
        }
    }
}
