//! [`Backend`]: where an object lives, shared memory (the default, no server) or a Redis
//! server (to share state between machines).
//!
//! The backend is chosen by the name: `jobs` (or `file:PATH`) is shared memory,
//! `redis://HOST:PORT/jobs` is the object `jobs` on that Redis server (see [Redis
//! names](#redis-names) for every form). [`Lock`](crate::Lock),
//! [`SharedList`](crate::SharedList), [`SharedMap`](crate::collections::SharedMap),
//! [`Queue`](crate::collections::Queue), [`Value`](crate::collections::Value) and
//! [`Event`](crate::sync::Event) accept both, with the same methods, and a handle to a Redis
//! object passed to a [`Process`](crate::Process) travels as its URL. A `Backend` value
//! selects the backend once for several names (`SharedList::open_in(&backend, "jobs")`).
//!
//! # What Redis changes
//!
//! * **Failures.** Every call is a round trip that can fail: errors name the server and say
//!   how to start one ([`Error::RedisUnreachable`](crate::Error::RedisUnreachable)). Reads,
//!   and writes that can be repeated without harm, are retried after reconnecting for up to
//!   two seconds (so a restart of the server is ridden out); other writes are never replayed,
//!   and an error says when a write may or may not have been applied. So every method that
//!   asks the server returns a `Result`, even those that cannot fail in shared memory (`len`,
//!   `Event::set`); `Debug` never asks.
//! * **Removal.** Removing an object deletes its keys under the handles still open to it:
//!   their next write, receive, wait or lock attempt fails with
//!   [`OpenError::NotFound`](crate::OpenError::NotFound), or with
//!   [`OpenError::Replaced`](crate::OpenError::Replaced) once the name was created again, and
//!   writes nothing. (A shared-memory handle keeps the memory it mapped.)
//! * **Durability** is Redis's: an acknowledged write survives a restart only if the server
//!   persists it (`appendonly yes`, `appendfsync always` for every write).
//! * **The lock is a lease** (see [`Lock`](crate::Lock)): it protects a holder only as long as
//!   the holder renews it, and a Redis failover can hand it to two holders; the fencing token
//!   on the guard is what a storage service must check.
//! * **A queue cannot see a dead receiver**: an item in flight longer than the queue's lease
//!   (30 s, `?lease_ms=N`) is delivered again.
//! * **Redis Cluster** is detected, not configured: `redis://HOST:PORT/NAME` may name any
//!   node, which redirects each object's commands to the master that serves it (`MOVED`, and
//!   `ASK` or `TRYAGAIN` while its slot moves to another master; both are followed, and a write
//!   is sent again only when the node said it did not carry it out). All keys of one object
//!   share one hash slot, so each object lives on one master and its scripts and transactions
//!   stay atomic; objects spread over the masters, and `memspace ls --redis` lists them all.
//!   Every node is logged in to with the name's user, password and TLS settings. A cluster
//!   has database 0 only: a name with another database is refused with
//!   [`Error::RedisAuth`](crate::Error::RedisAuth) (`ClusterHasNoDatabase`).
//!   A **failover** of a master (its replica promoted after it died) is followed: the next
//!   connection goes to a node that redirects to the new master. Until the cluster has
//!   promoted it, calls fail, with [`Error::RedisUnreachable`](crate::Error::RedisUnreachable)
//!   or with the cluster's `CLUSTERDOWN` refusal ([`Error::Redis`](crate::Error::Redis),
//!   nothing applied), and a push the old master acknowledged just before it died may be
//!   missing (the last ones). What the lock guarantees on a cluster is what it guarantees on
//!   the one master of its slot:
//!   * its lease and its fencing counter live in one slot, so on one master at a time: taking
//!     the lease, drawing the next token and releasing are each one atomic script there, and
//!     tokens grow by one per acquisition;
//!   * moving the slot to another master (a resharding) moves the lease with its expiry and
//!     the counter with its value; while the keys are split between the two, taking the lock
//!     is refused by the cluster (`TRYAGAIN`) and retried for up to two seconds, then fails
//!     with [`LockError::Unavailable`](crate::sync::LockError::Unavailable): never taken twice;
//!   * a failover is not covered: replication is asynchronous, so a replica promoted after its
//!     master crashed may have missed the last acquisitions, and hand the lock to a second
//!     holder **with a token already handed out**. The fencing token only grows as long as
//!     every master that serves the slot received every earlier acquisition: no failover, or
//!     one to a replica that was up to date (`WAIT`, `min-replicas-to-write`).
//! * **Redis Sentinel**: `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE/NAME`
//!   puts the object on the primary the sentinels name for `SERVICE` (logged in to with the
//!   user and password; the sentinels are asked without; database 0, no TLS), and each new connection asks them
//!   again, so a failover is followed once the sentinels have promoted a replica (calls made
//!   meanwhile fail as with a server that is down). Replication stays asynchronous: a push the
//!   old primary acknowledged just before it died may be missing on the promoted replica (the
//!   last ones, never one in between). The lock waits for a replica to confirm each
//!   acquisition (`WAIT`) before it hands out its fencing token, and refuses to hand one out
//!   unconfirmed ([`LockError::Unavailable`](crate::sync::LockError::Unavailable)), so tokens
//!   keep growing across failovers; a primary without a connected replica cannot be locked.
//!
//! # Redis names
//!
//! | name | the object `jobs` … |
//! | --- | --- |
//! | `redis://10.0.0.5:6379/jobs` | on the server at `10.0.0.5:6379`, database 0 |
//! | `redis://10.0.0.5/jobs` | the same: the port is 6379 unless given |
//! | `redis://10.0.0.5/2/jobs` | in database 2 |
//! | `redis://:s3cret@10.0.0.5/jobs` | logging in with the password `s3cret` (`requirepass`) |
//! | `redis://app:s3cret@10.0.0.5/jobs` | logging in as the ACL user `app` |
//! | `rediss://app:s3cret@db.example.com:6380/jobs` | over TLS (the `redis-tls` feature) |
//! | `unix:///run/redis/redis.sock?name=jobs` | through a unix socket |
//! | `unix:///run/redis/redis.sock?name=jobs&db=2&user=app&pass=s3cret` | the same, database 2, as `app` |
//! | `redis+sentinel://app:s3cret@10.0.0.5:26379,10.0.0.6:26379/mymaster/jobs` | on the primary the sentinels name for `mymaster`, as `app` |
//!
//! **Database or object?** After the host, the path is one segment, the object, or two, a
//! database number (digits only) and then the object: `redis://h/7` is the object `7` in
//! database 0, and `redis://h/2/7` the object `7` in database 2. The same name in two
//! databases is two objects. A server URL, which names no object ([`Backend::redis`],
//! `memspace ls --redis`), is `redis://HOST[:PORT][/DB]`: there a single segment is the
//! database. A lock or a queue may add `?lease_ms=N` (`&lease_ms=N` on a unix socket). A user
//! name or password holding `:`, `@`, `/`, `?`, `&`, `#` or `%` is percent-encoded (`p%40ss`
//! for `p@ss`).
//!
//! **Passwords are never shown.** A name shows its password as `***`: in its `Display` and
//! `Debug`, in every error, in what `memspace ls`, `inspect` and `demo` print
//! (`redis://app:***@10.0.0.5/jobs`). Such a shown name opens the same object again in the
//! same process (and its forked children): a `***` password is the one this process last
//! logged in with as that user on that server. A URL without a password takes the one in
//! [`PASSWORD_ENV`] (`MEMSPACE_REDIS_PASSWORD`) if it is set, as `redis-cli` does with
//! `REDISCLI_AUTH`: a command line holding a password is visible to every user of the
//! machine (`ps`), the environment only to the same user. A handle sent to a child process
//! started by fork keeps its password in the child's copy of memory; one sent to a spawned
//! child travels, password and all, through the pipe only that child reads. A handle
//! serialized anywhere else (pushed to a queue, written to a file) carries the name as shown:
//! whoever reads it there needs the password of their own. Such a handle, read back as data,
//! opens with a password the reading process already used with that server and user, never
//! with [`PASSWORD_ENV`]: whoever wrote the data chose the server it names.
//!
//! A refused login is an [`Error::RedisAuth`](crate::Error::RedisAuth) saying which
//! [`AuthProblem`](crate::AuthProblem): the password missing, wrong or not needed, the ACL
//! user refused, a command or key the user may not use, a database the server lacks.
//!
//! **TLS.** A `rediss://` name checks the server's certificate against the system's roots, or
//! against the CA certificates in the PEM file that [`CA_ENV`] (`MEMSPACE_REDIS_CA`) names; a
//! server that asks for a client certificate gets the one in the PEM files [`CERT_ENV`] and
//! [`KEY_ENV`] name. It needs the `redis-tls` feature (not a default of the library; the
//! `memspace` command has it).

use crate::error::Result;
#[cfg(feature = "redis")]
use crate::redis::Object;
pub use crate::segment::PASSWORD_ENV;
use crate::segment::{Segment, SegmentName, server_of_url};

/// The environment variable naming a PEM file with the CA certificates a `rediss://` server's
/// certificate must be signed by (instead of the system's roots).
pub const CA_ENV: &str = "MEMSPACE_REDIS_CA";
/// The environment variable naming a PEM file with the client certificate to present to a
/// `rediss://` server that asks for one (`tls-auth-clients yes`).
pub const CERT_ENV: &str = "MEMSPACE_REDIS_CERT";
/// The environment variable naming a PEM file with the private key of [`CERT_ENV`]'s
/// certificate.
pub const KEY_ENV: &str = "MEMSPACE_REDIS_KEY";

/// Where objects live: shared memory, or a Redis server.
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::Backend;
///
/// let redis = Backend::redis("redis://127.0.0.1:6379")?;
/// assert_eq!(redis.locate("jobs"), "redis://127.0.0.1:6379/jobs");
/// assert_eq!(Backend::SharedMemory.locate("jobs"), "jobs");
///
/// // Database 2, as the ACL user `app`: the password is never shown, and the name as shown
/// // opens the object in this process.
/// let app = Backend::redis("redis://app:s3cret@127.0.0.1:6379/2")?;
/// assert_eq!(app.locate("jobs"), "redis://app:***@127.0.0.1:6379/2/jobs");
/// let socket = Backend::redis("unix:///run/redis/redis.sock?db=2")?;
/// assert_eq!(socket.locate("jobs"), "unix:///run/redis/redis.sock?db=2&name=jobs");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// POSIX shared memory on this machine (the default).
    #[default]
    SharedMemory,
    /// A Redis server.
    Redis {
        /// The server's URL, its password shown as `***`: `redis://HOST:PORT[/DB]`,
        /// `rediss://…` or `unix:///PATH[?db=N]`.
        server: String,
    },
}

impl Backend {
    /// The Redis server at `url`: `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]`,
    /// `rediss://…` or `unix:///PATH[?db=N…]` (see [Redis names](self#redis-names)). A
    /// password in it is remembered by this process, so that the names [`locate`](Self::locate)
    /// gives, which show it as `***`, open the objects.
    ///
    /// # Errors
    ///
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName) if `url` is not such a URL
    /// (the error hides its password).
    pub fn redis(url: &str) -> Result<Self> {
        let server = server_of_url(url)?;
        Ok(Backend::Redis {
            server: server.shown,
        })
    }

    /// The full name of object `name` in this backend: `name` itself for shared memory,
    /// `redis://HOST:PORT/name` for Redis (`unix:///PATH?name=name` on a unix socket), its
    /// password shown as `***`.
    #[must_use]
    pub fn locate(&self, name: &str) -> String {
        match self {
            Backend::SharedMemory => name.to_owned(),
            Backend::Redis { server } => {
                if server.starts_with(crate::segment::REDIS_UNIX_PREFIX) {
                    let separator = if server.contains('?') { '&' } else { '?' };
                    format!("{server}{separator}name={name}")
                } else {
                    format!("{server}/{name}")
                }
            }
        }
    }
}

/// Removes the object `name` from its backend, whatever its kind: a segment of this machine's
/// shared memory (see [`Segment::remove`]: only a memspace segment is removed), or the keys of
/// a Redis object (`redis://HOST:PORT/NAME` and the other Redis names, whatever state they are in: what an error about
/// a damaged object says to do; a lock keeps its fencing counter). Handles already open keep
/// their memory; on Redis their next call fails (see the module docs).
///
/// # Errors
///
/// [`OpenError::NotFound`](crate::OpenError::NotFound) if there is none,
/// [`OpenError::InvalidName`](crate::OpenError::InvalidName),
/// [`Error::RedisUnreachable`](crate::Error::RedisUnreachable), or what the system refuses.
pub fn remove(name: &str) -> Result<()> {
    let name = SegmentName::new(name)?;
    // Without the `redis` feature the segment side refuses a Redis name.
    #[cfg(feature = "redis")]
    if name.is_redis() {
        return Object::remove_named(&name);
    }
    Segment::remove(name.as_str())
}

#[cfg(all(test, not(feature = "redis")))]
mod tests {
    use crate::collections::{Queue, SharedList, SharedMap, SharedVec, Value};
    use crate::sync::{Event, Lock, Mutex};
    use crate::{Error, OpenError, Result, SegmentOptions, inspect};

    const NAME: &str = "redis://127.0.0.1:1/x";

    /// Asserts that `outcome` is the error of a build without the Redis backend, naming the
    /// object and saying how to turn the backend on.
    fn assert_redis_disabled<T>(what: &str, outcome: Result<T>) {
        let Err(err) = outcome else {
            panic!("{what} of `{NAME}` succeeded in a build without the `redis` feature");
        };
        assert!(
            matches!(&err, Error::Open(OpenError::RedisDisabled { name }) if name.as_str() == NAME),
            "{what}: {err:?}"
        );
        let message = err.to_string();
        for part in [
            NAME,
            "built without its `redis` feature",
            r#"features = ["redis"]"#,
        ] {
            assert!(message.contains(part), "{what}: {message}");
        }
    }

    #[test]
    fn a_redis_name_is_refused_with_how_to_enable_the_backend() {
        assert_redis_disabled("Lock::open", Lock::open(NAME));
        assert_redis_disabled("Lock::create", Lock::create(NAME));
        assert_redis_disabled("SharedList::open", SharedList::<i64>::open(NAME));
        assert_redis_disabled("SharedList::create", SharedList::<i64>::create(NAME));
        assert_redis_disabled(
            "SharedList::open_with",
            SharedList::<i64>::open_with(NAME, &SegmentOptions::new()),
        );
        assert_redis_disabled("SharedMap::open", SharedMap::<String, i64>::open(NAME));
        assert_redis_disabled("Queue::create", Queue::<i64>::create(NAME));
        assert_redis_disabled("Value::open", Value::<u32>::open(NAME));
        assert_redis_disabled("Value::create", Value::create(NAME, 1u32));
        assert_redis_disabled("Event::open", Event::open(NAME));
        // Kinds that live only in shared memory say the same: no build has them on Redis,
        // but this one has no Redis names at all.
        assert_redis_disabled("SharedVec::open", SharedVec::<u32>::open(NAME));
        assert_redis_disabled("Mutex::open", Mutex::<u32>::open(NAME));
        assert_redis_disabled("remove", super::remove(NAME));
        assert_redis_disabled(
            "inspect::describe",
            inspect::describe(NAME, &SegmentOptions::new()),
        );
    }
}
