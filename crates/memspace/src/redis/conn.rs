//! [`Conn`]: connections to a Redis server, reopened when they break, in a forked child, or
//! after a restart of the server.
//!
//! A `Conn` keeps a few idle connections; each command takes one for its duration and gives it
//! back, so threads sharing a handle run their commands side by side, and one that blocks in
//! the server (a receiver waiting for an item) holds up nobody else.
//!
//! # Retries
//!
//! A command that fails because the connection broke is retried only when that is safe:
//! reads ([`Conn::read`]) are retried after reconnecting, for up to [`RETRY_WINDOW`]; writes
//! ([`Conn::write`]) are retried only while no byte of them can have reached the server (the
//! connection could not be opened). A write whose answer was lost is reported as "may or may
//! not have been applied", never replayed: replaying a push could push twice. Before a write
//! on a connection that sat idle, a `PING` checks that it still works, so a server restart
//! between two writes costs a reconnect, not an uncertain write.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::{Connection, RedisError, RedisResult};

use super::target;
use crate::error::{AuthProblem, Error, Result};
use crate::segment::{RedisServer, SegmentName};
use crate::sys;

/// How long reads (and writes that were never sent) keep reconnecting before giving up.
pub(crate) const RETRY_WINDOW: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may wait for its answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection idle this long is pinged before a write is sent on it.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// How many idle connections a `Conn` keeps for later commands.
const MAX_IDLE: usize = 4;

/// Connections to one Redis server, shared by the clones of a handle.
pub(crate) struct Conn {
    /// Where it is, for messages: `HOST:PORT` or the socket's path.
    server: String,
    /// The server as the name gives it: what a refused login is diagnosed with.
    target: RedisServer,
    client: redis::Client,
    /// Idle connections, most recently used last.
    idle: Mutex<Vec<Open>>,
}

struct Open {
    /// The process that opened it: a forked child must not talk on its parent's socket.
    pid: u32,
    connection: Connection,
    last_used: Instant,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The first part of an error's text that the client repeats (`UnknownIssuer: UnknownIssuer`).
fn first_part(text: &str) -> String {
    text.split(':').next().unwrap_or(text).trim().to_owned()
}

/// Whether `err` means the connection is unusable (as opposed to the server refusing a
/// command on a working connection).
/// Whether the server refused the command for now and asks to be asked again: still loading
/// its data after a restart (`LOADING`), running a long script (`BUSY`), `TRYAGAIN`,
/// `MASTERDOWN`. Nothing was applied, so reads and writes alike may be retried.
pub(crate) fn server_asks_to_wait(err: &RedisError) -> bool {
    // A transaction's commands are refused one by one, and `EXEC` then aborts it: the codes
    // are inside.
    matches!(err.retry_method(), redis::RetryMethod::WaitAndRetry)
        || super::refused_with(err, &["BUSY", "LOADING", "TRYAGAIN", "MASTERDOWN"])
}

pub(crate) fn is_connection_problem(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
}

impl Conn {
    /// A connection to `server`, the server of `name`, opened on first use.
    pub(crate) fn new(name: &SegmentName, server: &RedisServer) -> Result<Self> {
        Ok(Conn {
            server: server.address(),
            target: server.clone(),
            client: target::client(name, server)?,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// `HOST:PORT`, or the path of a unix socket.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// An idle connection opened by this process, if there is one.
    fn take(&self) -> Option<Open> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let pid = sys::pid();
        // Connections inherited through fork are the parent's sockets: forget them without
        // a word to the server (dropping one only closes this process's copy).
        idle.retain(|open| open.pid == pid);
        idle.pop()
    }

    fn give_back(&self, open: Open) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(open);
        }
    }

    /// Drops the idle connections: after one broke, the others are likely broken too.
    fn forget_idle(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn connect(&self) -> RedisResult<Open> {
        let connection = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        connection.set_read_timeout(Some(IO_TIMEOUT))?;
        connection.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Open {
            pid: sys::pid(),
            connection,
            last_used: Instant::now(),
        })
    }

    /// Runs an idempotent command, reconnecting and retrying while the connection is the
    /// problem, for up to [`RETRY_WINDOW`].
    pub(crate) fn read<T>(
        &self,
        name: &SegmentName,
        op: &'static str,
        mut command: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T> {
        self.run(name, op, true, &mut command)
    }

    /// Runs a command that must not be replayed: retried only while it cannot have been sent.
    pub(crate) fn write<T>(
        &self,
        name: &SegmentName,
        op: &'static str,
        mut command: impl FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T> {
        self.run(name, op, false, &mut command)
    }

    fn run<T>(
        &self,
        name: &SegmentName,
        op: &'static str,
        idempotent: bool,
        command: &mut dyn FnMut(&mut Connection) -> RedisResult<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        let mut open = self.take();
        loop {
            let mut current = match open.take() {
                Some(current) => current,
                None => match self.connect() {
                    Ok(fresh) => fresh,
                    Err(err) => {
                        if let Some(refusal) = self.refused_login(name, &err) {
                            return Err(refusal);
                        }
                        // Nothing was sent: retrying is safe for reads and writes alike.
                        if started.elapsed() + pause < RETRY_WINDOW {
                            std::thread::sleep(pause);
                            pause = (pause * 2).min(Duration::from_millis(200));
                            continue;
                        }
                        return Err(self.unreachable(name, op, false, err));
                    }
                },
            };
            if !idempotent && current.last_used.elapsed() > IDLE_CHECK {
                let ping: RedisResult<()> = redis::cmd("PING").query(&mut current.connection);
                if let Err(err) = ping {
                    // The connection died while idle (a server restart): a fresh one, and the
                    // write was never sent.
                    self.forget_idle();
                    if is_connection_problem(&err) && started.elapsed() < RETRY_WINDOW {
                        continue;
                    }
                    if let Some(refusal) = self.refused_login(name, &err) {
                        return Err(refusal);
                    }
                    return Err(self.unreachable(name, op, false, err));
                }
            }
            let outcome = command(&mut current.connection);
            current.last_used = Instant::now();
            match outcome {
                Ok(value) => {
                    self.give_back(current);
                    return Ok(value);
                }
                Err(err) if is_connection_problem(&err) => {
                    // This connection is done for, and the idle ones most likely too (the server
                    // went away); the next attempt opens a new one.
                    drop(current);
                    self.forget_idle();
                    if idempotent && started.elapsed() < RETRY_WINDOW {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(200));
                        continue;
                    }
                    return Err(self.unreachable(name, op, !idempotent, err));
                }
                Err(err) if server_asks_to_wait(&err) && started.elapsed() < RETRY_WINDOW => {
                    // Refused, not applied: wait and ask again, writes included.
                    self.give_back(current);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(err) => {
                    // The server answered: the connection is fine.
                    self.give_back(current);
                    if let Some(refusal) = self.refused_login(name, &err) {
                        return Err(refusal);
                    }
                    // A checked script that refused to run says why, having done nothing.
                    if let Some(refusal) = super::guard_refusal(&err, name) {
                        return Err(refusal);
                    }
                    return Err(Error::Redis {
                        name: name.clone(),
                        op,
                        source: Box::new(err),
                    });
                }
            }
        }
    }

    /// The error to report if `err` says the server does not let this client in: a
    /// password missing or refused, a user refused, a command its ACL user may not run, a
    /// database it does not have.
    fn refused_login(&self, name: &SegmentName, err: &RedisError) -> Option<Error> {
        let auth = |problem| Error::RedisAuth {
            name: name.clone(),
            server: self.server.clone(),
            problem: Box::new(problem),
        };
        let user = || {
            self.target
                .user
                .clone()
                .unwrap_or_else(|| "default".to_owned())
        };
        if err.kind() == redis::ErrorKind::AuthenticationFailed {
            return Some(auth(self.diagnose_refused_password(name)));
        }
        if super::refused_with(err, &["NOAUTH"]) {
            return Some(auth(AuthProblem::PasswordMissing));
        }
        if super::refused_with(err, &["NOPERM"]) {
            return Some(auth(AuthProblem::NotPermitted {
                user: user(),
                what: err
                    .detail()
                    .unwrap_or("run a command memspace needs")
                    .to_owned(),
            }));
        }
        // The client selects the database as it logs in, and reports a refusal with the
        // server's words after its own.
        let text = err.to_string();
        // TLS: the client refused the server's certificate, or the server wants one of the
        // client's that it did not get (or did not trust).
        if let Some(why) = text.split("invalid peer certificate: ").nth(1) {
            return Some(auth(AuthProblem::CertificateNotTrusted {
                why: first_part(why),
            }));
        }
        if let Some(why) = text.split("received fatal alert: ").nth(1)
            && why.contains("Certificate")
        {
            return Some(auth(AuthProblem::ClientCertificateRefused {
                why: first_part(why),
            }));
        }
        // A client that has not logged in may only send short commands: a longer one (a
        // script) is refused as a protocol error, and the connection closed.
        if text.contains("unauthenticated") {
            return Some(auth(AuthProblem::PasswordMissing));
        }
        if text.contains("refused to switch database") {
            if text.contains("NOAUTH") || text.contains("Authentication required") {
                return Some(auth(AuthProblem::PasswordMissing));
            }
            if text.contains("NOPERM") || text.contains("no permissions") {
                return Some(auth(AuthProblem::NotPermitted {
                    user: user(),
                    what: format!("select database {}", self.target.db),
                }));
            }
            return Some(auth(AuthProblem::NoSuchDatabase { db: self.target.db }));
        }
        None
    }

    /// Why the server refused the password: for a user, Redis does not say whether the user
    /// or the password is wrong; for the default user, a login without any password tells
    /// whether the server needs one.
    fn diagnose_refused_password(&self, name: &SegmentName) -> AuthProblem {
        if let Some(user) = &self.target.user {
            return AuthProblem::UserRefused { user: user.clone() };
        }
        let mut bare = self.target.clone();
        bare.password = None;
        let needs_none = target::client(name, &bare)
            .ok()
            .and_then(|client| client.get_connection_with_timeout(CONNECT_TIMEOUT).ok())
            .is_some_and(|mut connection| {
                redis::cmd("PING").query::<String>(&mut connection).is_ok()
            });
        if needs_none {
            AuthProblem::PasswordNotNeeded
        } else {
            AuthProblem::WrongPassword
        }
    }

    fn unreachable(
        &self,
        name: &SegmentName,
        op: &'static str,
        maybe_applied: bool,
        err: RedisError,
    ) -> Error {
        Error::RedisUnreachable {
            name: name.clone(),
            server: self.server.clone(),
            op,
            maybe_applied,
            source: Box::new(err),
        }
    }
}
