//! A real `redis-server` for the tests of the Redis backend: started on a free loopback port
//! with its data in a fresh temporary directory (append-only file, `fsync` on every write, so
//! that a restart loses nothing acknowledged), stopped and removed on drop.
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

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    /// Further `redis-server` arguments (a cluster node's, a replica's).
    extra: Vec<String>,
    /// A sentinel's configuration file (which it rewrites): the server runs as a sentinel.
    sentinel_config: Option<PathBuf>,
    server: Option<Child>,
    guardian: Option<Child>,
}

pub(crate) fn free_port() -> u16 {
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
        Self::start_with(|_| Vec::new())
    }

    /// Starts a server on a free port with the further arguments `extra` gives for that port
    /// (`--cluster-enabled yes`, `--replicaof ...`).
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_with(extra: impl Fn(u16) -> Vec<String>) -> Self {
        Self::start_inner(|port, _| (None, extra(port)))
    }

    /// Starts a Redis Sentinel on a free port that monitors the primary on `primary_port`
    /// under the name `service`, with quorum 2, and deems it down after 1 s without an answer.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`].
    pub fn start_sentinel(primary_port: u16, service: &str) -> Self {
        Self::start_inner(|_, dir| {
            let config = dir.join("sentinel.conf");
            std::fs::write(
                &config,
                format!(
                    "sentinel monitor {service} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {service} 1000\n\
                     sentinel failover-timeout {service} 5000\n\
                     sentinel parallel-syncs {service} 1\n"
                ),
            )
            .expect("write the sentinel's configuration");
            (Some(config), Vec::new())
        })
    }

    /// Starts a server whose configuration file (a sentinel's) and further arguments `launch`
    /// gives for its port and directory.
    fn start_inner(
        launch: impl Fn(u16, &std::path::Path) -> (Option<PathBuf>, Vec<String>),
    ) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        for _ in 0..5 {
            let port = free_port();
            let (sentinel_config, extra) = launch(port, &dir);
            let mut server = RedisServer {
                port,
                dir: dir.clone(),
                extra,
                sentinel_config,
                server: None,
                guardian: None,
            };
            if server.launch() {
                return server;
            }
            // Another process took the port between our probe and the server's bind.
            server.stop();
        }
        panic!(
            "redis-server did not start on any of 5 free ports (see its log in {})",
            dir.display()
        );
    }

    /// Starts `redis-server` on this server's port and directory; whether it answers.
    fn launch(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        if let Some(config) = &self.sentinel_config {
            // The configuration file comes first.
            command.arg(config).arg("--sentinel");
        }
        let server = command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
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
            .args(&self.extra)
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
            if ping(self.port) {
                return true;
            }
            if let Some(Ok(Some(_))) = self.server.as_mut().map(Child::try_wait) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
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
        let output = Command::new("redis-cli")
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
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set a read timeout");
        stream.write_all(&request).expect("send the command");
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
