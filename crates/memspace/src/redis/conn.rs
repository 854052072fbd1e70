//! [`Conn`]: connections to a Redis server, reopened when they break, in a forked child, or
//! after a restart of the server, and sent where a Redis Cluster redirects them.
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
//!
//! # Redis Cluster
//!
//! Nothing is configured: a `Conn` talks to the node its name gives, and follows the
//! redirections a cluster node answers with. All keys of one object share one hash slot (see
//! the module docs of `redis`), so every command, script and transaction of an object runs on
//! the one node that serves its slot, on a plain connection (a [`Link`]):
//!
//! * `MOVED SLOT HOST:PORT`: the slot lives on another node. The command was not carried out,
//!   so it is sent again to that node, writes included, and later commands go there first.
//! * `ASK SLOT HOST:PORT`: the slot is being migrated and this key has already left. The
//!   command is sent again, once, to that node on a fresh connection preceded by `ASKING`
//!   (every command of it: a transaction's `WATCH`, reads and `EXEC` alike).
//! * `TRYAGAIN`: during the migration some keys of the command are on each side; nothing was
//!   carried out, so it is asked again after a pause, like `BUSY` or `LOADING`.
//!
//! A closure given to [`Conn::read`] or [`Conn::write`] runs again from its first command after
//! a redirection, so a transaction's `WATCH` is always on the node that runs its `EXEC`. If the
//! node stops answering (a failover), the next connection goes to the name's node or to one
//! a redirection named, which redirects again once the cluster has promoted a replica.
//!
//! # Redis Sentinel
//!
//! For a `redis+sentinel://` name, each new connection asks the sentinels which server is the
//! primary of the service now (and checks its `ROLE`): after a failover, the first connection
//! that breaks is replaced by one to the promoted replica. [`Conn::is_replicated`] tells the
//! lock to wait for a replica to confirm an acquisition (see `sync/lock/redis.rs`).
//!
//! # Logging in
//!
//! A cluster node a redirection names, and the primary the sentinels name, are logged in to
//! as the name's server is: the same user, password and TLS settings, only the address
//! differs. A cluster has database 0 only: a name with another database is refused with
//! [`AuthProblem::ClusterHasNoDatabase`]. The sentinels themselves are asked without
//! credentials. Messages name a node by its address, never its password.
//!
//! The redirections are followed here rather than by the `redis` crate's `ClusterConnection`
//! because that one sends a command again after its connection broke, which would apply a
//! write twice when only the answer was lost.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::{Connection, ConnectionLike, RedisError, RedisResult, Value};

use super::target;
use crate::error::{AuthProblem, Error, Result};
use crate::segment::{RedisLocation, RedisServer, SegmentName};
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
/// How many redirections one command follows before giving up (a cluster that keeps sending
/// it around is reconfiguring, or misconfigured).
const MAX_REDIRECTIONS: u32 = 16;

/// Connections to one Redis server, or to the nodes of a Redis Cluster that serve one
/// object's slot, shared by the clones of a handle.
pub(crate) struct Conn {
    /// Where the name's server is, for messages: `HOST:PORT`, the socket's path, or the
    /// sentinels (`HOST:PORT,HOST:PORT...`).
    server: String,
    /// The server as the name gives it: how every connection logs in (to the name's server,
    /// a cluster node, the primary), and what a refused login is diagnosed with.
    target: RedisServer,
    /// A client for the name's server.
    client: redis::Client,
    /// For a `redis+sentinel://` name: the client that asks the sentinels for the primary.
    sentinel: Option<Mutex<redis::sentinel::SentinelClient>>,
    /// Where commands go: the node the last `MOVED` named (or the name's server), and the
    /// nodes redirections named so far, to try when that one stops answering.
    route: Mutex<Route>,
    /// Idle connections, most recently used last.
    idle: Mutex<Vec<Open>>,
}

/// Where a [`Conn`] sends its commands.
#[derive(Debug, Default)]
struct Route {
    /// The node that served the object's slot at the last redirection (`None`: the name's
    /// server).
    node: Option<String>,
    /// Every node a redirection named, to fall back on when `node` stops answering.
    known: Vec<String>,
}

struct Open {
    /// The process that opened it: a forked child must not talk on its parent's socket.
    pid: u32,
    /// The node it is connected to (`HOST:PORT`, or the name's server as [`Conn::server`]
    /// gives it).
    node: String,
    link: Link,
    last_used: Instant,
}

/// One connection to one server or cluster node, as the commands of a [`Conn`] see it.
///
/// After an `ASK` redirection it precedes every command with `ASKING`, which a node importing
/// a slot requires before it serves a key of that slot (for a transaction, before `MULTI`:
/// the server keeps the permission until `EXEC`).
pub(crate) struct Link {
    connection: Connection,
    asking: bool,
}

impl Open {
    /// A fresh connection to `node` through `client`; `asking`: after an `ASK` redirection.
    fn new(node: &str, asking: bool, client: &redis::Client) -> RedisResult<Self> {
        let connection = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        connection.set_read_timeout(Some(IO_TIMEOUT))?;
        connection.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Open {
            pid: sys::pid(),
            node: node.to_owned(),
            link: Link { connection, asking },
            last_used: Instant::now(),
        })
    }
}

impl Link {
    fn ask(&mut self) -> RedisResult<()> {
        if self.asking {
            let answer = self
                .connection
                .req_packed_command(b"*1\r\n$6\r\nASKING\r\n")?;
            answer.extract_error()?;
        }
        Ok(())
    }
}

impl ConnectionLike for Link {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.ask()?;
        self.connection.req_packed_command(cmd)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.ask()?;
        self.connection.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.connection.get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.connection.check_connection()
    }

    fn is_open(&self) -> bool {
        self.connection.is_open()
    }
}

/// A redirection a cluster node answered with (see the module docs).
#[derive(Debug, PartialEq, Eq)]
enum Redirect {
    /// The slot lives on this node now.
    Moved(String),
    /// This key of a slot being migrated is on this node already.
    Ask(String),
}

/// The redirection `err` carries: the error itself, or one command's inside a pipeline or an
/// aborted transaction.
fn redirect_of(err: &RedisError) -> Option<Redirect> {
    let errors = err.clone().into_server_errors()?;
    errors.iter().find_map(|(_, error)| {
        let node = error.details()?.split_ascii_whitespace().nth(1)?.to_owned();
        match error.code() {
            "MOVED" => Some(Redirect::Moved(node)),
            "ASK" => Some(Redirect::Ask(node)),
            _ => None,
        }
    })
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

/// Checks that the server at `node`, which a redirection named, is a cluster node. A node
/// that died leaves its address free, and another server may take it: one that is not part of
/// the cluster would answer for the slot's keys as if the object did not exist, and never
/// redirect. Such a server is unreachable as far as the cluster goes (an error the caller
/// treats as a node that stopped answering). Any other answer, an ACL refusal included,
/// accepts the node.
fn is_cluster_node(node: &str, link: &mut Link) -> RedisResult<()> {
    match redis::cmd("CLUSTER")
        .arg("MYID")
        .query::<Value>(&mut link.connection)
    {
        Err(err)
            if err
                .detail()
                .is_some_and(|d| d.contains("cluster support disabled")) =>
        {
            Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("{node} is not a node of the cluster any more: {err}"),
            )))
        }
        Err(err) if is_connection_problem(&err) => Err(err),
        _ => Ok(()),
    }
}

pub(crate) fn is_connection_problem(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
}

impl Conn {
    /// A connection to `server`, the server of `name` (or a node of its cluster), opened on
    /// first use.
    pub(crate) fn new(name: &SegmentName, server: &RedisServer) -> Result<Self> {
        Ok(Conn {
            server: server.address(),
            target: server.clone(),
            client: target::client(name, server)?,
            sentinel: None,
            route: Mutex::new(Route::default()),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A connection to where the name puts its object: a server, a cluster through one of
    /// its nodes, or the primary that sentinels name.
    pub(crate) fn for_location(name: &SegmentName, at: &RedisLocation) -> Result<Self> {
        let Some(sentinels) = &at.sentinels else {
            return Self::new(name, &at.server);
        };
        let addresses: Vec<redis::ConnectionAddr> = sentinels
            .nodes
            .iter()
            .map(|(host, port)| redis::ConnectionAddr::Tcp(host.clone(), *port))
            .collect();
        // The primary is logged in to with the name's user and password; the sentinels are
        // asked without.
        let primary = redis::sentinel::SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(target::login(&at.server));
        let client = redis::sentinel::SentinelClient::build(
            addresses,
            sentinels.service.clone(),
            Some(primary),
            redis::sentinel::SentinelServerType::Master,
        )
        .map_err(|source| Error::Redis {
            name: name.clone(),
            op: "parsing the sentinels' addresses",
            source: Box::new(source),
        })?;
        Ok(Conn {
            server: sentinels.shown.clone(),
            target: at.server.clone(),
            client: target::client(name, &at.server)?,
            sentinel: Some(Mutex::new(client)),
            route: Mutex::new(Route::default()),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Whether the object lives on a primary that sentinels watch, with replicas that take
    /// over after a failover: a write that must survive one waits for a replica (`WAIT`).
    pub(crate) fn is_replicated(&self) -> bool {
        self.sentinel.is_some()
    }

    /// `HOST:PORT`, the path of a unix socket, or the sentinels (`HOST:PORT,HOST:PORT...`).
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// An idle connection opened by this process, if there is one.
    fn take(&self) -> Option<Open> {
        let node = self.node();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let pid = sys::pid();
        // Connections inherited through fork are the parent's sockets: forget them without
        // a word to the server (dropping one only closes this process's copy). Those to a
        // node that a redirection replaced would only be redirected.
        idle.retain(|open| open.pid == pid && open.node == node);
        idle.pop()
    }

    fn give_back(&self, open: Open) {
        // A connection that asks for a slot being migrated serves one command only.
        if open.link.asking {
            return;
        }
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

    /// The node commands go to now.
    fn node(&self) -> String {
        let route = self.route.lock().unwrap_or_else(PoisonError::into_inner);
        route.node.clone().unwrap_or_else(|| self.server.clone())
    }

    /// Sends later commands to `node`, which a `MOVED` named.
    fn moved_to(&self, node: &str) {
        let mut route = self.route.lock().unwrap_or_else(PoisonError::into_inner);
        route.node = (node != self.server).then(|| node.to_owned());
        if !route.known.iter().any(|known| known == node) {
            route.known.push(node.to_owned());
        }
    }

    /// After `failed` could not be reached: the next node to try (the name's server, then
    /// those redirections named, in turn).
    fn next_node(&self, failed: &str) {
        let mut route = self.route.lock().unwrap_or_else(PoisonError::into_inner);
        let mut candidates = std::iter::once(self.server.clone())
            .chain(route.known.iter().cloned())
            .collect::<Vec<_>>();
        candidates.dedup();
        let at = candidates.iter().position(|node| node == failed);
        let next = at.map_or(0, |at| (at + 1) % candidates.len());
        route.node = Some(candidates.swap_remove(next)).filter(|node| *node != self.server);
    }

    /// A client for `node`: the name's server, or a cluster node a redirection named
    /// (`HOST:PORT`), logged in to as the name's server is.
    fn client_for(&self, name: &SegmentName, node: &str) -> Result<RedisResult<redis::Client>> {
        if node == self.server {
            return Ok(Ok(self.client.clone()));
        }
        let Some((host, port)) = node
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        else {
            return Ok(Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a cluster node's address in a redirection is not HOST:PORT",
                node.to_owned(),
            ))));
        };
        let at = target::at_node(&self.target, host, port);
        target::client(name, &at).map(Ok)
    }

    /// A fresh connection to `node`; `asking`: after an `ASK` redirection. The outer error is
    /// final (a refused login, certificates that cannot be read); the inner one, that the node
    /// could not be reached, after which the next attempt goes to another known node.
    fn connect(&self, name: &SegmentName, node: &str, asking: bool) -> Result<RedisResult<Open>> {
        let client = match &self.sentinel {
            // The primary now: the sentinels say which server it is, and it says it is one.
            Some(sentinel) if !asking => sentinel
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_client(),
            _ => self.client_for(name, node)?,
        };
        let mut opened = client.and_then(|client| Open::new(node, asking, &client));
        if node != self.server
            && self.sentinel.is_none()
            && let Ok(open) = &mut opened
            && let Err(err) = is_cluster_node(node, &mut open.link)
        {
            opened = Err(err);
        }
        if let Err(err) = &opened {
            if let Some(refusal) = self.refused_login(name, err) {
                return Err(refusal);
            }
            if !asking {
                // A cluster node that failed: try another one, which redirects to the node
                // that took over its slots.
                self.next_node(node);
            }
        }
        Ok(opened)
    }

    /// Runs an idempotent command, reconnecting and retrying while the connection is the
    /// problem, for up to [`RETRY_WINDOW`].
    pub(crate) fn read<T>(
        &self,
        name: &SegmentName,
        op: &'static str,
        mut command: impl FnMut(&mut Link) -> RedisResult<T>,
    ) -> Result<T> {
        self.run(name, op, true, &mut command)
    }

    /// Runs a command that must not be replayed: retried only while it cannot have been sent.
    pub(crate) fn write<T>(
        &self,
        name: &SegmentName,
        op: &'static str,
        mut command: impl FnMut(&mut Link) -> RedisResult<T>,
    ) -> Result<T> {
        self.run(name, op, false, &mut command)
    }

    fn run<T>(
        &self,
        name: &SegmentName,
        op: &'static str,
        idempotent: bool,
        command: &mut dyn FnMut(&mut Link) -> RedisResult<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        let mut open = self.take();
        // The node an `ASK` named: the next attempt goes there, once.
        let mut ask: Option<String> = None;
        let mut redirections = 0;
        loop {
            let asking = ask.take();
            let mut current = match (open.take(), &asking) {
                (Some(current), None) => current,
                (idle, _) => {
                    if let Some(idle) = idle {
                        self.give_back(idle);
                    }
                    let node = asking.clone().unwrap_or_else(|| self.node());
                    match self.connect(name, &node, asking.is_some())? {
                        Ok(fresh) => fresh,
                        Err(err) => {
                            // Nothing was sent: retrying is safe for reads and writes alike.
                            if started.elapsed() + pause < RETRY_WINDOW {
                                std::thread::sleep(pause);
                                pause = (pause * 2).min(Duration::from_millis(200));
                                continue;
                            }
                            return Err(self.unreachable(name, op, false, err));
                        }
                    }
                }
            };
            if !idempotent && current.last_used.elapsed() > IDLE_CHECK {
                let ping: RedisResult<()> = redis::cmd("PING").query(&mut current.link);
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
            let outcome = command(&mut current.link);
            current.last_used = Instant::now();
            let err = match outcome {
                Ok(value) => {
                    self.give_back(current);
                    return Ok(value);
                }
                Err(err) => err,
            };
            if is_connection_problem(&err) {
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
            if let Some(redirect) = redirect_of(&err)
                && redirections < MAX_REDIRECTIONS
            {
                // The command was not carried out (nor, in a transaction, any of the others):
                // sent again, writes included, from the closure's first command. Nodes that
                // keep sending it on disagree about the slot for now (a migration ending):
                // give them a moment.
                redirections += 1;
                if redirections > 2 {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                match redirect {
                    Redirect::Moved(node) => {
                        // Connected to a node that no longer serves the slot, like the idle ones.
                        drop(current);
                        self.forget_idle();
                        self.moved_to(&node);
                    }
                    Redirect::Ask(node) => {
                        self.give_back(current);
                        ask = Some(node);
                    }
                }
                continue;
            }
            if server_asks_to_wait(&err) && started.elapsed() < RETRY_WINDOW {
                // Refused, not applied: wait and ask again, writes included.
                self.give_back(current);
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
                continue;
            }
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
            if text.contains("cluster mode") {
                // `SELECT` of any database but 0, on a cluster node.
                return Some(auth(AuthProblem::ClusterHasNoDatabase {
                    db: self.target.db,
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
        if self.sentinel.is_some() {
            // The address logged in to is the sentinels' choice, not the name's.
            return AuthProblem::WrongPassword;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_are_read_from_errors_and_aborted_transactions() {
        let parse = |reply: &[u8]| -> RedisError {
            match redis::parse_redis_value(reply) {
                Ok(Value::ServerError(err)) => err.into(),
                other => panic!("not an error: {other:?}"),
            }
        };
        assert_eq!(
            redirect_of(&parse(b"-MOVED 3999 127.0.0.1:6381\r\n")),
            Some(Redirect::Moved("127.0.0.1:6381".to_owned()))
        );
        assert_eq!(
            redirect_of(&parse(b"-ASK 3999 10.0.0.2:7000\r\n")),
            Some(Redirect::Ask("10.0.0.2:7000".to_owned()))
        );
        assert_eq!(redirect_of(&parse(b"-TRYAGAIN keys moving\r\n")), None);
        assert_eq!(redirect_of(&parse(b"-ERR wrong\r\n")), None);
    }
}
