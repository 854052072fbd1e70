//! A real `redis-server` for the tests of the Redis backend: started on a free loopback port
//! with its data in a fresh temporary directory (append-only file, `fsync` on every write, so
//! that a restart loses nothing acknowledged), stopped and removed on drop.
//!
//! [`RedisServer::start_with`] starts one as production servers are set up: a password
//! (`requirepass`), ACL users, a unix socket, TLS only (with a CA, server and client
//! certificates that `openssl` makes for it in its directory), and as the parts of a
//! replicated deployment: a node of a Redis Cluster (see `redis_cluster`), a replica, a
//! Redis Sentinel.
//!
//! A guardian shell kills the server if the test process disappears without dropping it (a
//! watchdog abort, a SIGKILL), so no test leaves a server running. `scripts/test.sh` installs
//! Debian's `redis-server` when it is missing and checks that none is left behind.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::names::unique_name;
use crate::watchdog::Watchdog;

/// Every test server's directory starts with this, so that `scripts/test.sh` can find
/// leftovers.
pub const DIR_PREFIX: &str = "memspace-redis-test.";

/// The process title of every test server (`ps` shows it; `scripts/test.sh` checks that none
/// is left once the tests are done).
pub const PROCESS_TITLE: &str = "{title} {listen-addr} memspace-redis-test";

/// Asserts that `shown` holds nothing of the password the tests put in URLs, `hunter2`: not
/// even its end, which a URL with a `/` in it (`hun/ter2`) would leave. `what` is what showed
/// it.
///
/// # Panics
///
/// If it holds some.
pub fn assert_hides_password(what: &str, shown: &str) {
    assert!(
        !shown.contains("hunter2") && !shown.contains("ter2"),
        "{what} shows the password: {shown}"
    );
}

/// First statement of a test against a server of its own: the test's [`Watchdog`] (keep it
/// until the end of the test) and its server.
pub fn start_test() -> (Watchdog, RedisServer) {
    (Watchdog::start(), RedisServer::start())
}

/// The configuration file of a server that runs as a sentinel, in its directory.
const SENTINEL_CONFIG: &str = "sentinel.conf";

/// How a test server is set up beyond the defaults (see [`RedisServer::start_with`]).
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `requirepass`: the default user's password.
    pub requirepass: Option<String>,
    /// ACL users, each `(name, password, key pattern)`: `("app", "hunter2", "~memspace:*")`
    /// lets `app` run every command on memspace's keys.
    pub users: Vec<(String, String, String)>,
    /// Also listen on a unix socket ([`RedisServer::socket`]).
    pub unix_socket: bool,
    /// Listen with TLS only, on [`RedisServer::port`], with certificates made for the test
    /// ([`RedisServer::tls_file`]).
    pub tls: bool,
    /// With `tls`: refuse a client without a certificate signed by the test's CA.
    pub tls_client_certificates: bool,
    /// What it is in a deployment: a server of its own, a cluster node, a replica, a sentinel.
    pub role: Role,
    /// The password a replica (or a cluster node's replica) or a sentinel logs in to its
    /// primary with (`masterauth`, `sentinel auth-pass`).
    pub primary_password: Option<String>,
    /// Listen on this port rather than a free one (the address a killed server left).
    pub port: Option<u16>,
}

/// What a test server is in a deployment ([`ServerOptions::role`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Role {
    /// A server of its own.
    #[default]
    Server,
    /// A node of a Redis Cluster (`--cluster-enabled yes`, a node timeout of 2 s, a cluster
    /// bus on a free port of its own, kept across restarts); see `redis_cluster`.
    ClusterNode,
    /// A replica of the server on this loopback port (`--replicaof`).
    ReplicaOf(u16),
    /// A Redis Sentinel that monitors the primary on this loopback port under this service
    /// name, with quorum 2, and deems it down after 1 s without an answer.
    SentinelOf(u16, String),
}

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    options: ServerOptions,
    /// The cluster bus port of a cluster node.
    cluster_port: Option<u16>,
    server: Option<Child>,
    guardian: Option<Child>,
}

/// A loopback port held bound without listening, for as long as the value lives: a connection
/// to it is refused, and no server another test starts meanwhile can take it (a port merely
/// found free and let go can be).
#[derive(Debug)]
pub struct RefusedPort {
    _socket: std::os::fd::OwnedFd,
    port: u16,
}

impl RefusedPort {
    /// Binds a TCP socket to a free loopback port, and does not listen on it.
    ///
    /// # Panics
    ///
    /// If no socket can be bound.
    #[must_use]
    pub fn new() -> Self {
        use rustix::net::{AddressFamily, SocketAddrAny, SocketType, bind, getsockname, socket};
        let socket = socket(AddressFamily::INET, SocketType::STREAM, None).expect("a TCP socket");
        bind(&socket, &std::net::SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a port");
        let bound: SocketAddrAny = getsockname(&socket).expect("the bound address");
        let port = std::net::SocketAddr::try_from(bound)
            .expect("an IP address")
            .port();
        Self {
            _socket: socket,
            port,
        }
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for RefusedPort {
    fn default() -> Self {
        Self::new()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free loopback port")
        .port()
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

impl RedisServer {
    /// Starts a server on a free port.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed (`scripts/test.sh` installs it) or does not start.
    pub fn start() -> Self {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server set up as `options` say, on a free port.
    ///
    /// # Panics
    ///
    /// If `redis-server` (or, for TLS, `openssl`) is not installed (`scripts/test.sh`
    /// installs them) or the server does not start.
    pub fn start_with(options: ServerOptions) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        if options.tls {
            make_certificates(&dir);
        }
        if let Role::SentinelOf(primary_port, service) = &options.role {
            // A sentinel rewrites its configuration file: written once, kept across restarts.
            std::fs::write(
                dir.join(SENTINEL_CONFIG),
                format!(
                    "sentinel monitor {service} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {service} 1000\n\
                     sentinel failover-timeout {service} 5000\n\
                     sentinel parallel-syncs {service} 1\n{}",
                    options
                        .primary_password
                        .as_ref()
                        .map(|password| format!("sentinel auth-pass {service} {password}\n"))
                        .unwrap_or_default()
                ),
            )
            .expect("write the sentinel's configuration");
        }
        let mut server = RedisServer {
            port: 0,
            dir,
            options,
            cluster_port: None,
            server: None,
            guardian: None,
        };
        for _ in 0..5 {
            server.port = server.options.port.unwrap_or_else(free_port);
            // The bus port: PORT + 10000 could be taken, or past 65535.
            server.cluster_port = (server.options.role == Role::ClusterNode).then(free_port);
            if server.launch() {
                return server;
            }
            // Another process took the port between our probe and the server's bind.
            server.stop();
        }
        let log = std::fs::read_to_string(server.dir.join("redis.log")).unwrap_or_default();
        panic!("redis-server did not start on any of 5 free ports; its log:\n{log}");
    }

    /// Adds the arguments `options` asks for to `command` (`redis-server`).
    fn add_options(&self, command: &mut Command) {
        if let Role::SentinelOf(..) = self.options.role {
            // The configuration file comes first.
            command
                .arg(self.dir.join(SENTINEL_CONFIG))
                .arg("--sentinel");
        }
        command.args(["--bind", "127.0.0.1"]);
        if self.options.tls {
            let file = |name: &str| self.dir.join(name).display().to_string();
            command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-cert-file", &file("server.crt")])
                .args(["--tls-key-file", &file("server.key")])
                .args(["--tls-ca-cert-file", &file("ca.crt")])
                .args([
                    "--tls-auth-clients",
                    if self.options.tls_client_certificates {
                        "yes"
                    } else {
                        "no"
                    },
                ]);
        } else {
            command.args(["--port", &self.port.to_string()]);
        }
        if let Some(password) = &self.options.requirepass {
            command.args(["--requirepass", password]);
        }
        for (user, password, keys) in &self.options.users {
            command.args(["--user", user, "on", &format!(">{password}"), keys, "+@all"]);
        }
        if self.options.unix_socket {
            command
                .arg("--unixsocket")
                .arg(self.socket())
                .args(["--unixsocketperm", "700"]);
        }
        if let Some(cluster_port) = self.cluster_port {
            command
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "2000"])
                .args(["--cluster-port", &cluster_port.to_string()])
                // A replica syncs at once, not 5 s after it asked.
                .args(["--repl-diskless-sync-delay", "0"]);
        }
        match &self.options.role {
            Role::Server | Role::ClusterNode => {}
            Role::ReplicaOf(primary_port) => {
                command.args(["--replicaof", "127.0.0.1", &primary_port.to_string()]);
            }
            Role::SentinelOf(..) => return,
        }
        if let Some(password) = &self.options.primary_password {
            command.args(["--masterauth", password]);
        }
    }

    /// Starts `redis-server` on this server's port and directory; whether it answers.
    fn launch(&mut self) -> bool {
        let log = self.dir.join("redis.log");
        let logged_before = std::fs::read_to_string(&log).map_or(0, |text| text.len());
        let mut command = Command::new("redis-server");
        self.add_options(&mut command);
        let server = command
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            // What `scripts/test.sh` looks for to find servers a test left running.
            .args(["--proc-title-template", PROCESS_TITLE])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run redis-server ({err}): the Redis tests need Debian's \
                     redis-server; `bash scripts/test.sh` installs it, or run \
                     `apt-get install -y redis-server`"
                )
            });
        // Kills the server if this test process is gone without stopping it.
        let guardian = Command::new("sh")
            .arg("-c")
            .arg(
                "while kill -0 \"$1\" 2>/dev/null && kill -0 \"$2\" 2>/dev/null; do sleep 0.2; done; \
                 kill -0 \"$1\" 2>/dev/null || kill -9 \"$2\" 2>/dev/null",
            )
            .args(["guardian", &std::process::id().to_string(), &server.id().to_string()])
            .stdin(Stdio::null())
            .spawn()
            .ok();
        self.server = Some(server);
        self.guardian = guardian;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            // A server that needs a password or TLS answers no plain PING: its log says when
            // it is ready.
            let ready = std::fs::read_to_string(&log).is_ok_and(|text| {
                text.get(logged_before..)
                    .is_some_and(|new| new.contains("Ready to accept connections"))
            });
            // A sentinel logs no such line, and answers a plain PING.
            let ready = ready || matches!(self.options.role, Role::SentinelOf(..));
            if ready && (self.options.tls || self.options.requirepass.is_some() || ping(self.port))
            {
                return true;
            }
            if let Some(Ok(Some(_))) = self.server.as_mut().map(Child::try_wait) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `redis://CREDENTIALS@127.0.0.1:PORT` (`rediss://` for a TLS server): `credentials` is
    /// `USER:PASSWORD` or `:PASSWORD`, percent-encoded.
    pub fn url_as(&self, credentials: &str) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        format!("{scheme}://{credentials}@127.0.0.1:{}", self.port)
    }

    /// The path of its unix socket (with [`ServerOptions::unix_socket`]).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// A file of its TLS setup (with [`ServerOptions::tls`]): `ca.crt`, `client.crt`,
    /// `client.key`, `other-ca.crt` (a CA that signed nothing of this server's).
    pub fn tls_file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it runs (it was not killed, or was restarted).
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// The server's pid.
    ///
    /// # Panics
    ///
    /// If it was killed.
    pub fn pid(&self) -> u32 {
        self.server.as_ref().expect("a running server").id()
    }

    /// `redis://127.0.0.1:PORT/NAME`.
    pub fn name(&self, name: &str) -> String {
        format!("{}/{name}", self.url())
    }

    /// A fresh object name on this server: `redis://127.0.0.1:PORT/`[`unique_name`]`(tag)`.
    pub fn unique_name(&self, tag: &str) -> String {
        self.name(&unique_name(tag))
    }

    /// The directory it keeps its files in.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Runs `redis-cli` against this server with `args` and returns what it printed: for
    /// answers of more than one line (`CLUSTER NODES`, `INFO`).
    ///
    /// # Panics
    ///
    /// If `redis-cli` cannot be run or fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        if let Some(password) = &self.options.requirepass {
            // Kept off the command line, as `redis-cli` advises.
            command.env("REDISCLI_AUTH", password);
        }
        let output = command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli (installed with redis-server)");
        assert!(
            output.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Sends one command to the server as a new client and returns the first line of its
    /// answer (`+OK`, `:1`, `-ERR ...`): for tests that write keys by hand, as an operator with
    /// `redis-cli` would.
    ///
    /// # Panics
    ///
    /// If the server cannot be reached.
    pub fn command(&self, args: &[&str]) -> String {
        let mut request = Vec::new();
        write!(request, "*{}\r\n", args.len()).expect("write to a Vec");
        for arg in args {
            write!(request, "${}\r\n{arg}\r\n", arg.len()).expect("write to a Vec");
        }
        if let Some(password) = &self.options.requirepass {
            // Logged in on the same connection first; its `+OK` is read before the answer.
            let mut auth = Vec::new();
            write!(
                auth,
                "*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n",
                password.len()
            )
            .expect("write to a Vec");
            auth.extend(request);
            request = auth;
        }
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set a read timeout");
        stream.write_all(&request).expect("send the command");
        if self.options.requirepass.is_some() {
            let mut byte = [0u8; 1];
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                stream
                    .read_exact(&mut byte)
                    .expect("read the answer to AUTH");
                line.push(byte[0]);
            }
            assert_eq!(line, b"+OK\r\n", "the test server refused its own password");
        }
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).expect("read the answer");
            answer.push(byte[0]);
        }
        String::from_utf8_lossy(&answer).trim_end().to_owned()
    }

    /// Kills the server with SIGKILL (no shutdown, no final save) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        if let Some(mut guardian) = self.guardian.take() {
            let _ = guardian.kill();
            let _ = guardian.wait();
        }
    }

    /// Starts the server again on the same port and directory: it reloads its append-only
    /// file, so every write it acknowledged is back.
    ///
    /// # Panics
    ///
    /// If it does not start again.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.launch(),
            "redis-server did not restart on port {} (see {})",
            self.port,
            self.dir.join("redis.log").display()
        );
    }

    fn stop(&mut self) {
        self.kill();
    }
}

/// Makes, in `dir`, a CA (`ca.crt`, `ca.key`), a certificate for `127.0.0.1` and `localhost`
/// signed by it (`server.crt`, `server.key`), a client certificate signed by it
/// (`client.crt`, `client.key`), and another CA that signed nothing (`other-ca.crt`).
fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run openssl ({err}): the TLS tests make their certificates with it; \
                     `bash scripts/test.sh` installs it, or run `apt-get install -y openssl`"
                )
            });
        assert!(
            output.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let (crt, pem_key, subject) = (
            format!("{ca}.crt"),
            format!("{ca}.key"),
            format!("/CN=memspace test {ca}"),
        );
        let mut args = vec!["req", "-x509"];
        args.extend(key);
        args.extend([
            "-keyout", &pem_key, "-out", &crt, "-days", "2", "-subj", &subject,
        ]);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&args);
    }
    for (who, extensions) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (crt, pem_key, csr, ext) = (
            format!("{who}.crt"),
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.ext"),
        );
        std::fs::write(dir.join(&ext), extensions).expect("write the certificate's extensions");
        let subject = format!("/CN=memspace test {who}");
        let mut args = vec!["req"];
        args.extend(key);
        args.extend(["-keyout", &pem_key, "-out", &csr, "-subj", &subject]);
        openssl(&args);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
