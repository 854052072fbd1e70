//! [`RedisLock`]: a `Lock` as a lease on a Redis key, with fencing tokens.
//!
//! * **Acquire**: one script checks that `memspace:{NAME}:items` is absent, takes the next
//!   fencing token with `INCR memspace:{NAME}:fence` and sets the key to
//!   `PID:NONCE:TOKEN` with `PX lease`: `SET NX PX` with a token, atomically. A key that is
//!   present and expires is a holder's lease, whatever it holds: the locker waits for it. A
//!   key that never expires is not one (the lock always sets an expiry) and would never be
//!   released: the script reports it, and the locker fails with
//!   [`LockError::CorruptLease`] instead of waiting for ever.
//! * **Hold**: a thread renews the lease every third of its length with a compare-and-`PEXPIRE`
//!   script, so a live holder keeps it however long it works. A holder that is killed stops
//!   renewing, and the lease expires after at most its length.
//! * **Release**: a compare-and-delete script, so a holder whose lease expired never deletes
//!   the next holder's lease. If the lease was gone, the release reports
//!   [`LeaseError::Lost`].
//!
//! * **Behind Redis Sentinel** (a `redis+sentinel://` name), an acquisition also waits for
//!   a replica to confirm it (`WAIT 1`, a quarter of the lease, at most a second) before its
//!   token is handed out; unconfirmed, the lease is given back and the locker fails with
//!   [`LockError::Unavailable`]. Sentinel promotes the replica that has replicated the most,
//!   so after a failover of the primary the fencing counter is at least at every token handed
//!   out, and tokens keep growing. (The lease itself may still be missing on the promoted
//!   replica if a renewal was lost; the token is what stays ordered.)
//!
//! What this does *not* give: mutual exclusion is only as good as the lease. A holder paused
//! for longer than its lease (a stopped process, a long GC-like stall, a partition from
//! Redis) loses the lock while it still runs, and a Redis failover with asynchronous
//! replication can hand the lock to two holders. The fencing token is what makes such
//! overlaps harmless: it grows with every acquisition, and a storage service that remembers
//! the largest token it has seen and refuses smaller ones rejects the stale holder's writes.

use std::cell::RefCell;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, LazyLock, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Script;

use crate::error::{Error, OpenError, Result};
use crate::redis::{Object, checked_script, refused};
use crate::sync::{LeaseError, LockError};
use crate::sys;

thread_local! {
    /// The leases this thread holds (pid, `HOST:PORT` and key): taking one of them again would
    /// wait forever, since this thread renews it, so it is `WouldDeadlock` as in shared memory.
    /// A guard never leaves the thread that took it (it is `!Send`); the pid keeps a forked
    /// child, which inherits a copy of this list, from taking its parent's leases for its own.
    static HELD: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// The leases taken with `Lock::acquire`, which belong to the process rather than to a guard
/// (keyed as [`HELD`] is, by pid, server and key): any thread of the process releases one with
/// `Lock::release`, and it is renewed until then. A forked child inherits copies, which its
/// pid keeps it from releasing (and [`Lease`] from renewing or deleting).
static PROCESS_LEASES: std::sync::Mutex<Vec<(String, Lease)>> = std::sync::Mutex::new(Vec::new());

/// How long a lease lasts unless the name says `?lease_ms=N`.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// Takes the lease: its fencing token; nil if the key is held (it expires); else, for a key that
/// never expires, `{TYPE}` or `{'string', VALUE}`. A fencing counter that holds no count
/// (written by hand) is refused before anything is written.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local found = redis.call('TYPE', KEYS[2]).ok
if found == 'none' then
  local last = tonumber(redis.call('GET', KEYS[3]) or '0')
  if not last or last < 0 then
    return redis.error_reply('MEMSPACE_FENCE the fencing counter holds no count of tokens')
  end
  local token = redis.call('INCR', KEYS[3])
  redis.call('SET', KEYS[2], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
  return token
end
if redis.call('PTTL', KEYS[2]) >= 0 then return false end
if found == 'string' then return {found, redis.call('GET', KEYS[2])} end
return {found}
",
    )
});

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    // Retried after a lost reply, it must not report as lost a release that happened: with
    // the key gone and the fencing counter still at our token, nobody took the lock after us,
    // so the first attempt deleted it.
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
if not v and redis.call('GET', KEYS[2]) == ARGV[2] then
  return 1
end
return 0
",
    )
});

/// The Redis side of a `Lock`.
#[derive(Debug, Clone)]
pub(crate) struct RedisLock {
    object: Arc<Object>,
    /// The server as the deadlock check names it: its first resolved address, so that
    /// `localhost:6379` and `127.0.0.1:6379` are one server (the name as given if it does not
    /// resolve). Resolved at the first acquisition, not when the lock is opened.
    server: OnceLock<String>,
    lease_key: String,
    fence_key: String,
    lease: Duration,
}

/// What a failed acquisition attempt says.
pub(crate) enum Attempt {
    Held(Lease),
    Busy,
}

/// The `PID` and `TOKEN` of a lease value `PID:NONCE:TOKEN`, as the lock writes it.
fn parse_lease(value: &str) -> Option<(u32, u64)> {
    let mut parts = value.split(':');
    let pid = parts.next()?.parse().ok()?;
    let nonce = parts.next()?;
    let token = parts.next()?.parse().ok()?;
    let well_formed =
        parts.next().is_none() && !nonce.is_empty() && nonce.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then_some((pid, token))
}

/// What a lease key that is not a live lease holds, for messages: a lease without expiry, a
/// short quote of a string, or the key's type.
fn describe_found(found: &str, value: Option<&[u8]>) -> String {
    /// How many characters of a string to quote.
    const QUOTED: usize = 40;
    match value {
        Some(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            if let Some((pid, token)) = parse_lease(&text) {
                return format!("a lease of pid {pid} (fencing token {token})");
            }
            let mut quoted: String = text.chars().take(QUOTED).collect();
            if text.chars().count() > QUOTED {
                quoted.push_str("...");
            }
            format!("the string {quoted:?}")
        }
        None => format!("a Redis {found}"),
    }
}

impl crate::handle::RedisEngine for RedisLock {
    fn attach(object: Arc<Object>) -> Self {
        RedisLock::new(object)
    }

    fn object(&self) -> &Object {
        self.object()
    }
}

impl RedisLock {
    pub(crate) fn new(object: Arc<Object>) -> Self {
        let lease = object
            .lease_ms()
            .map_or(DEFAULT_LEASE, Duration::from_millis);
        RedisLock {
            server: OnceLock::new(),
            lease_key: object.key("items"),
            fence_key: object.key("fence"),
            object,
            lease,
        }
    }

    pub(crate) fn object(&self) -> &Object {
        &self.object
    }

    /// The lock error for a failed command: the command's error is its source, so that the
    /// server, the operation and the client's complaint stay reachable.
    fn unavailable<G>(&self, err: Error) -> LockError<G> {
        LockError::Unavailable {
            name: self.object.name().clone(),
            detail: self.why_unavailable(&err),
            source: Some(Box::new(err)),
        }
    }

    /// [`RedisLock::unavailable`] for a holder asking after its lease: whether it still holds
    /// it is unknown.
    fn lease_unavailable(&self, err: Error) -> LeaseError {
        LeaseError::Unavailable {
            name: self.object.name().clone(),
            detail: self.why_unavailable(&err),
            source: Some(Box::new(err)),
        }
    }

    /// What a failed command means for the lock, and what to do.
    fn why_unavailable(&self, err: &Error) -> String {
        let fence_damaged = refused(err, &["MEMSPACE_FENCE"]);
        match err {
            Error::Open(OpenError::NotFound { .. }) => {
                "it was removed while this handle was open: create it again".to_owned()
            }
            Error::Open(OpenError::Replaced { .. }) => {
                "it was removed and created again while this handle was open: open it again"
                    .to_owned()
            }
            Error::Corrupt { what, .. } => {
                format!("{what}; `memspace rm {}` removes it", self.object.name())
            }
            _ if fence_damaged => format!(
                "its fencing counter `{}` holds no count of tokens (a negative number or text, \
                 written by hand): set it to the largest token ever issued (`redis-cli SET {} \
                 N`), so that tokens keep growing; no lease was taken",
                self.fence_key, self.fence_key
            ),
            _ => "its Redis server did not carry out the request".to_owned(),
        }
    }

    /// One attempt to take the lease.
    ///
    /// If the connection breaks after the attempt was sent, the lease may have been taken for
    /// nobody: it then expires after its length, like a dead holder's.
    pub(crate) fn try_acquire<G>(&self) -> Result<Attempt, LockError<G>> {
        self.try_take(true)
    }

    /// One attempt to take the lease for the calling process (`Lock::acquire`): no deadlock
    /// check, since another thread may release it; keep the lease with
    /// [`RedisLock::keep_for_process`].
    pub(crate) fn try_acquire_for_process<G>(&self) -> Result<Attempt, LockError<G>> {
        self.try_take(false)
    }

    /// Keeps `lease`, taken with [`RedisLock::try_acquire_for_process`], until
    /// [`RedisLock::release_for_process`].
    pub(crate) fn keep_for_process(&self, lease: Lease) {
        let key = self.held_key();
        PROCESS_LEASES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((key, lease));
    }

    /// Releases the lease this process took with `Lock::acquire`: `None` if it holds none.
    pub(crate) fn release_for_process(&self) -> Option<Result<(), LeaseError>> {
        let key = self.held_key();
        let mut lease = {
            let mut leases = PROCESS_LEASES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let at = leases.iter().position(|(held, _)| *held == key)?;
            leases.swap_remove(at).1
        };
        // Outside the table's lock: a release is a round trip to the server.
        Some(lease.release())
    }

    fn try_take<G>(&self, for_thread: bool) -> Result<Attempt, LockError<G>> {
        static NONCE: AtomicU64 = AtomicU64::new(0);
        let held_here = self.held_key();
        if for_thread && HELD.with_borrow(|held| held.contains(&held_here)) {
            return Err(LockError::WouldDeadlock {
                name: self.object.name().clone(),
            });
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let owner = format!(
            "{}:{nanos:08x}{:x}",
            sys::pid(),
            NONCE.fetch_add(1, Ordering::Relaxed)
        );
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let object = &self.object;
        // Behind sentinels, a replica confirms the acquisition before its token is handed out
        // (see the module docs); it has a quarter of the lease, up to a second, to do so.
        let replica_wait_ms = (lease_ms / 4).clamp(10, 1000);
        let (reply, confirmed): (redis::Value, bool) = object
            .conn()
            .write(object.name(), "acquiring", |c| {
                let reply: redis::Value = object
                    .guarded(&ACQUIRE)
                    .key(&self.lease_key)
                    .key(&self.fence_key)
                    .arg(&owner)
                    .arg(lease_ms)
                    .invoke(c)?;
                if !matches!(reply, redis::Value::Int(_)) || !object.conn().is_replicated() {
                    return Ok((reply, true));
                }
                let replicas: i64 = redis::cmd("WAIT").arg(1).arg(replica_wait_ms).query(c)?;
                Ok((reply, replicas >= 1))
            })
            .map_err(|err| self.unavailable(err))?;
        if let (redis::Value::Int(token), false) = (&reply, confirmed) {
            // Unconfirmed, the token could be handed out again after a failover: the lease is
            // given back (if that fails too, it expires) and the token never used.
            let _: Result<u64> = object.conn().read(object.name(), "releasing", |c| {
                RELEASE
                    .key(&self.lease_key)
                    .key(&self.fence_key)
                    .arg(format!("{owner}:{token}"))
                    .arg(*token)
                    .invoke(c)
            });
            return Err(LockError::Unavailable {
                name: object.name().clone(),
                detail: format!(
                    "no replica confirmed taking the lease within {replica_wait_ms} ms, so a \
                     failover could hand its fencing token {token} out again; the lease was \
                     given back: try again once the primary's replicas are connected"
                ),
                source: None,
            });
        }
        let token = match reply {
            redis::Value::Nil => return Ok(Attempt::Busy),
            redis::Value::Int(token) => token.cast_unsigned(),
            redis::Value::Array(parts) => {
                let text = |at: usize| {
                    parts
                        .get(at)
                        .and_then(|part| redis::from_redis_value_ref::<Vec<u8>>(part).ok())
                };
                let found = text(0).map_or_else(String::new, |bytes| {
                    String::from_utf8_lossy(&bytes).into_owned()
                });
                return Err(LockError::CorruptLease {
                    name: object.name().clone(),
                    key: self.lease_key.clone(),
                    found: describe_found(&found, text(1).as_deref()),
                });
            }
            other => {
                return Err(LockError::Unavailable {
                    name: object.name().clone(),
                    detail: format!("its Redis server answered {other:?} to taking the lease"),
                    source: None,
                });
            }
        };
        if for_thread {
            HELD.with_borrow_mut(|held| held.push(held_here));
        }
        let (mut lease, not_renewed) =
            Lease::start(self.clone(), format!("{owner}:{token}"), token);
        if let Some(spawn_error) = not_renewed {
            // Unrenewed, the lease would run out under a live holder: give it back.
            let _ = lease.release();
            return Err(LockError::Unavailable {
                name: self.object.name().clone(),
                detail: "the thread that renews the lease could not be started (the process may \
                         be out of threads or memory); the lease was released"
                    .to_owned(),
                source: Some(Box::new(spawn_error)),
            });
        }
        Ok(Attempt::Held(lease))
    }

    /// What [`HELD`] records for this lock.
    fn held_key(&self) -> String {
        let server = self.server.get_or_init(|| {
            let given = self.object.conn().server();
            given
                .to_socket_addrs()
                .ok()
                .and_then(Iterator::min)
                .map_or_else(|| given.to_owned(), |address| address.to_string())
        });
        format!("{} {server} {}", sys::pid(), self.lease_key)
    }

    /// The pid and fencing token of the current holder, if the lease is held.
    pub(crate) fn holder(&self) -> Result<Option<(u32, u64)>> {
        let value: Option<String> =
            self.object
                .read_checked("reading the holder", &self.lease_key, &[b"GET"])?;
        Ok(value.as_deref().and_then(parse_lease))
    }

    /// Whether the lease is held and by whom, for `inspect`: also what holds the key if it is
    /// not a lease of this lock, and whether it expires.
    pub(crate) fn describe_holder(&self) -> Result<String> {
        let object = &self.object;
        let (found, ttl_ms): (String, i64) =
            object
                .conn()
                .read(object.name(), "reading the holder", |c| {
                    // A transaction: after an `ASK`, `ASKING` before it covers both commands.
                    redis::pipe()
                        .atomic()
                        .cmd("TYPE")
                        .arg(&self.lease_key)
                        .cmd("PTTL")
                        .arg(&self.lease_key)
                        .query(c)
                })?;
        if found == "none" {
            return Ok("no".to_owned());
        }
        let value: Option<Vec<u8>> = if found == "string" {
            object
                .conn()
                .read(object.name(), "reading the holder", |c| {
                    redis::cmd("GET").arg(&self.lease_key).query(c)
                })?
        } else {
            None
        };
        let lease = value
            .as_deref()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(parse_lease);
        let what = match lease {
            Some((pid, token)) => format!("yes, by pid {pid}, fencing token {token}"),
            None => format!(
                "blocked by {}, which memspace did not write",
                describe_found(&found, value.as_deref())
            ),
        };
        Ok(if ttl_ms >= 0 {
            what
        } else {
            format!(
                "{what}; it never expires: remove the lock with `memspace rm {}`",
                object.name()
            )
        })
    }

    /// The largest fencing token handed out so far (0: none).
    pub(crate) fn last_token(&self) -> Result<u64> {
        let token: Option<u64> =
            self.object
                .read_checked("reading the token", &self.fence_key, &[b"GET"])?;
        Ok(token.unwrap_or(0))
    }
}

/// A held lease, renewed by a thread until released or dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    /// The process that took the lease: a copy of the guard inherited through fork must
    /// neither release the parent's lease nor wait for the parent's renewal thread.
    pid: u32,
    lock: RedisLock,
    value: String,
    token: u64,
    lost: Arc<AtomicBool>,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<JoinHandle<()>>,
}

impl Lease {
    /// The lease, and the error that kept its renewal thread from starting, if one did.
    fn start(lock: RedisLock, value: String, token: u64) -> (Self, Option<std::io::Error>) {
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let spawned = {
            let (lock, value, lost) = (lock.clone(), value.clone(), Arc::clone(&lost));
            std::thread::Builder::new()
                .name("memspace-lease".to_owned())
                .spawn(move || renew(&lock, &value, &lost, &stopped))
        };
        let (renewer, not_started) = match spawned {
            Ok(renewer) => (Some(renewer), None),
            Err(err) => (None, Some(err)),
        };
        let lease = Lease {
            pid: sys::pid(),
            lock,
            value,
            token,
            lost,
            stop: Some(stop),
            renewer,
        };
        (lease, not_started)
    }

    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    fn lost(&self) -> LeaseError {
        LeaseError::Lost {
            name: self.lock.object.name().clone(),
            token: self.token,
        }
    }

    /// Whether the lease is still this holder's, asking the server.
    pub(crate) fn check(&self) -> Result<(), LeaseError> {
        if self.lost.load(Ordering::Acquire) {
            return Err(self.lost());
        }
        let object = &self.lock.object;
        let value: Option<String> = object
            .conn()
            .read(object.name(), "checking the lease", |c| {
                redis::cmd("GET").arg(&self.lock.lease_key).query(c)
            })
            .map_err(|err| self.lock.lease_unavailable(err))?;
        if value.as_deref() == Some(self.value.as_str()) {
            Ok(())
        } else {
            self.lost.store(true, Ordering::Release);
            Err(self.lost())
        }
    }

    fn stop_renewing(&mut self) {
        drop(self.stop.take());
        if self.pid != sys::pid() {
            // The renewal thread exists only in the parent: joining it here would wait forever.
            std::mem::forget(self.renewer.take());
            return;
        }
        if let Some(renewer) = self.renewer.take() {
            // A renewer that panicked has nothing left to clean up.
            let _ = renewer.join();
        }
    }

    /// Stops renewing and deletes the lease if it is still this holder's. In a forked child
    /// holding a copy of the guard, does nothing: the lease is the parent's.
    pub(crate) fn release(&mut self) -> Result<(), LeaseError> {
        self.stop_renewing();
        if self.value.is_empty() || self.pid != sys::pid() {
            return Ok(());
        }
        let held_here = self.lock.held_key();
        HELD.with_borrow_mut(|held| {
            if let Some(at) = held.iter().position(|key| *key == held_here) {
                held.swap_remove(at);
            }
        });
        let value = std::mem::take(&mut self.value);
        let object = &self.lock.object;
        // Compare-and-delete can be repeated without harm, so it is retried like a read.
        let deleted: u64 = object
            .conn()
            .read(object.name(), "releasing", |c| {
                RELEASE
                    .key(&self.lock.lease_key)
                    .key(&self.lock.fence_key)
                    .arg(&value)
                    .arg(self.token)
                    .invoke(c)
            })
            .map_err(|err| self.lock.lease_unavailable(err))?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(self.lost())
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Drop cannot report: a lease that cannot be released expires on its own.
        let _ = self.release();
    }
}

/// Waits `pause` for the stop signal; true if it came (or its sender is gone).
fn stopped_within(stopped: &mpsc::Receiver<()>, pause: Duration) -> bool {
    !matches!(stopped.recv_timeout(pause), Err(RecvTimeoutError::Timeout))
}

/// The renewal thread: extends the lease every third of its length until told to stop, and
/// marks it lost when the server says it is no longer ours, or when it could not be renewed
/// before it would have expired.
fn renew(lock: &RedisLock, value: &str, lost: &AtomicBool, stopped: &mpsc::Receiver<()>) {
    let period = lock.lease / 3;
    let lease_ms = u64::try_from(lock.lease.as_millis()).unwrap_or(u64::MAX);
    let mut valid_until = Instant::now() + lock.lease;
    if stopped_within(stopped, period) {
        return;
    }
    loop {
        let asked = Instant::now();
        let object = &lock.object;
        let renewed: Result<u64> = object.conn().read(object.name(), "renewing", |c| {
            RENEW
                .key(&lock.lease_key)
                .arg(value)
                .arg(lease_ms)
                .invoke(c)
        });
        let pause = match renewed {
            Ok(1) => {
                valid_until = asked + lock.lease;
                period
            }
            // Only the server saying the lease is not ours any more loses it.
            Ok(_) => {
                lost.store(true, Ordering::Release);
                return;
            }
            // Any error (the connection, a busy or loading server, a full memory) may pass:
            // keep trying while the lease may still be valid, and sooner than every third of
            // it.
            Err(_) => {
                let left = valid_until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    lost.store(true, Ordering::Release);
                    return;
                }
                (left / 4).min(period)
            }
        };
        if stopped_within(stopped, pause) {
            return;
        }
    }
}
