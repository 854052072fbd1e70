//! A writer process for tests that break a Redis deployment under a client: a child of the
//! test in role [`ROLE`] pushes 0, 1, 2, ... onto a `SharedList<u64>` and logs what became of
//! each push, until the test tells it to stop; the test then holds what the list kept against
//! what was acknowledged.
//!
//! ```no_run
//! # use memspace::SharedList;
//! # use memspace_testkit::{roles, writer::{self, Writer}};
//! # fn test(name: &str) {
//! if roles::role().is_some() {
//!     writer::run_child(|_| false);
//!     return;
//! }
//! let writer = Writer::start(name, "failover");
//! // ... break the deployment, let it recover ...
//! let pushes = writer.stop();
//! let list = SharedList::<u64>::open(name).expect("open");
//! pushes.assert_kept_in(&list.to_vec().expect("read"));
//! # }
//! ```

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use memspace::{Error, SharedList};

use crate::children::ChildGuard;
use crate::names::unique_name;
use crate::roles;

/// The role the writer child runs in.
pub const ROLE: &str = "writer";

/// The environment variable that gives the writer child its log's path; the file that tells
/// it to stop is beside it, with the extension `stop`.
const LOG: &str = "MEMSPACE_TEST_LOG";

/// A writer child, killed on drop; its log and stop file are removed on drop.
#[derive(Debug)]
pub struct Writer {
    child: ChildGuard,
    log: PathBuf,
    stop: PathBuf,
}

impl Writer {
    /// Re-runs the current test in role [`ROLE`] to push onto the list `name`, logging to a
    /// file of the temporary directory named after `tag`. The test's first statement hands the
    /// child to [`run_child`].
    ///
    /// # Panics
    ///
    /// If the temporary directory's path is not UTF-8, or the child cannot be started.
    pub fn start(name: &str, tag: &str) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", unique_name(tag)));
        let stop = log.with_extension("stop");
        let log_text = log.to_str().expect("a UTF-8 path").to_owned();
        let child = roles::child_in_role(ROLE, &[(roles::SEGMENT, name), (LOG, &log_text)]);
        Self { child, log, stop }
    }

    /// Tells the writer to stop, waits for it to end, and returns what it logged.
    ///
    /// # Panics
    ///
    /// If the writer did not end successfully, or its log cannot be read.
    pub fn stop(mut self) -> Pushes {
        std::fs::write(&self.stop, b"").expect("tell the writer to stop");
        let status = self.child.wait();
        assert!(status.success(), "the writer ended with {status}");
        let logged = std::fs::read_to_string(&self.log).expect("read the writer's log");
        Pushes::read(&logged)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Either may be missing: the writer did not get as far, or was never told to stop.
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.stop);
    }
}

/// The writer child: pushes 0, 1, 2, ... onto the list of [`roles::role_segment`] until told
/// to stop, and logs each push: `a N` acknowledged, `u N` may or may not have been applied,
/// `n N` not applied (the server could not be reached, or `refused(err)` says the push was
/// refused, such as by a cluster without a master for the slot), `e N ERROR` any other
/// failure. After a push that was not acknowledged it waits 20 ms: while no server answers,
/// no need to log a line a millisecond.
///
/// # Panics
///
/// If the list cannot be opened or the log written.
pub fn run_child(refused: impl Fn(&Error) -> bool) {
    let name = roles::role_segment();
    let log_path = PathBuf::from(std::env::var(LOG).expect("a log path"));
    let stop = log_path.with_extension("stop");
    let list = SharedList::<u64>::open(&name).expect("open the list");
    let mut log = std::fs::File::create(&log_path).expect("create the log");
    let mut next = 0u64;
    while !stop.exists() {
        let line = match list.push(&next) {
            Ok(()) => format!("a {next}"),
            Err(Error::RedisUnreachable { maybe_applied, .. }) => {
                std::thread::sleep(Duration::from_millis(20));
                format!("{} {next}", if maybe_applied { "u" } else { "n" })
            }
            Err(err) if refused(&err) => {
                std::thread::sleep(Duration::from_millis(20));
                format!("n {next}")
            }
            Err(err) => format!("e {next} {err:?}"),
        };
        writeln!(log, "{line}").expect("log");
        next += 1;
    }
    log.flush().expect("flush the log");
}

/// The pushes a writer logged (see [`run_child`]).
#[derive(Debug)]
pub struct Pushes {
    /// Acknowledged, in order.
    pub acknowledged: Vec<u64>,
    /// May or may not have been applied.
    pub uncertain: Vec<u64>,
    /// How many were not applied.
    pub not_applied: usize,
}

impl Pushes {
    /// Reads a writer's log.
    ///
    /// # Panics
    ///
    /// If a push failed otherwise than the server not answering or refusing it.
    fn read(logged: &str) -> Self {
        let mut pushes = Self {
            acknowledged: Vec::new(),
            uncertain: Vec::new(),
            not_applied: 0,
        };
        for line in logged.lines() {
            let (what, rest) = line.split_once(' ').expect("a log line");
            let item: u64 = rest
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a number");
            match what {
                "a" => pushes.acknowledged.push(item),
                "u" => pushes.uncertain.push(item),
                "n" => pushes.not_applied += 1,
                _ => panic!("push {item} failed: {line}"),
            }
        }
        pushes
    }

    /// Asserts that `stored` holds every acknowledged push, in order, an uncertain one or
    /// not, nothing else, and nothing twice.
    ///
    /// # Panics
    ///
    /// If it does not.
    pub fn assert_kept_in(&self, stored: &[u64]) {
        let mut expected = self.acknowledged.iter().peekable();
        for item in stored {
            if expected.peek() == Some(&item) {
                expected.next();
            } else {
                assert!(
                    self.uncertain.contains(item),
                    "item {item} was stored but neither acknowledged nor uncertain"
                );
            }
        }
        assert!(
            expected.peek().is_none(),
            "acknowledged push {:?} is missing",
            expected.peek()
        );
        let unique: BTreeSet<_> = stored.iter().collect();
        assert_eq!(unique.len(), stored.len(), "an item was stored twice");
    }
}
