//! Re-running the current test binary in a child (STYLE.md, section 6): never `fork()` inside
//! the multi-threaded test harness to get a process with its own environment.
//!
//! A child runs the same test again (`--exact NAME`, the name of the thread libtest runs the
//! test on), and the test's first statement sends it where it belongs:
//!
//! * memspace's spawn start method: [`spawn_runs_this_test`] makes spawned workers re-run this
//!   test, whose first statement, `memspace::init()`, then runs the worker's target and exits;
//! * a role: [`child_in_role`] starts the test with [`ROLE`] in its environment (and whatever
//!   else the role needs, such as `MEMSPACE_FAILPOINT`); the test starts with
//!   `if let Some(role) = role() { ... return; }`.

use std::ffi::OsString;
use std::process::{Command, Output};

use crate::children::ChildGuard;

/// The environment variable that puts a re-run test binary into a child role.
pub const ROLE: &str = "MEMSPACE_TEST_ROLE";
/// The environment variable that names the segment a child role works on.
pub const SEGMENT: &str = "MEMSPACE_TEST_SEGMENT";

/// The name of the running test: libtest runs every test on a thread named after it, and
/// `--exact NAME` selects it again in a child.
///
/// # Panics
///
/// If called outside a test's thread.
pub fn this_test() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .expect("tests run on a thread named after the test")
        .to_owned()
}

/// The arguments that re-run this test alone.
fn rerun_this_test() -> [OsString; 5] {
    [
        std::env::current_exe()
            .expect("the test binary's path")
            .into(),
        "--exact".into(),
        this_test().into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ]
}

/// Prepares [`StartMethod::Spawn`](memspace::spawn::StartMethod::Spawn) for a test: first
/// statement of every test that spawns (see [`start_test`](crate::start_test)). In a spawned
/// child it runs the requested target and exits (it does not return); in the test itself it
/// makes children re-run this test only, whose first statement then lands here again.
pub fn spawn_runs_this_test() {
    memspace::init();
    memspace::spawn::set_child_args(rerun_this_test());
}

/// The role this process was started in by [`child_in_role`], if any.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// The segment a child role was given as `(SEGMENT, name)`.
///
/// # Panics
///
/// If it was given none.
pub fn role_segment() -> String {
    std::env::var(SEGMENT).expect("the child role was given a segment")
}

fn command_in_role(role: &str, env: &[(&str, &str)]) -> Command {
    let [exe, args @ ..] = rerun_this_test();
    let mut command = Command::new(exe);
    command.args(args).env(ROLE, role);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Re-runs the current test in a child process in `role`, with `env` added to its
/// environment; the child is killed and reaped on drop.
pub fn child_in_role(role: &str, env: &[(&str, &str)]) -> ChildGuard {
    ChildGuard::spawn(&mut command_in_role(role, env))
}

/// Runs the current test in a child process in `role` to its end; returns its output.
///
/// # Panics
///
/// If the child cannot be run.
pub fn run_role_to_end(role: &str, env: &[(&str, &str)]) -> Output {
    command_in_role(role, env)
        .output()
        .expect("run a child test process")
}
