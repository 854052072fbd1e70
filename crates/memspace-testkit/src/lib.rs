//! The test harness of the memspace workspace, shared by the integration tests of `memspace`
//! and of `memspace-cli` (a dev-dependency only; never published).
//!
//! Every cross-process test here re-runs the current test binary in a child: either through
//! memspace's spawn start method ([`roles::spawn_runs_this_test`]) or in a named role
//! ([`roles::child_in_role`]). Events between processes are ordered through shared memory
//! ([`flags`], events, `/proc` states), never by sleeping; the short sleeps in the polling
//! loops only pace the polling.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`watchdog`] | the [`Watchdog`] that aborts a hung test, and what it cleans up first |
//! | [`names`] | unique segment names, removed on drop ([`Removal`]); their files, directories |
//! | [`roles`] | re-running this test binary: the spawn start method, child roles |
//! | [`children`] | processes killed on drop ([`Running`], [`ChildGuard`]), orphan checks |
//! | [`threads`] | a process whose main thread ended while others run on |
//! | [`procfs`] | process and thread states from `/proc` |
//! | [`flags`] | counters in shared memory that order events between processes |
//! | [`modes`] | one test per thread / fork / spawn mode ([`per_mode!`]) |
//! | [`backends`] | one test per backend, shared memory and Redis ([`on_both_backends!`]) |
//! | [`redis_server`] | a real `redis-server` per test |
//! | [`redis_cluster`] | a real three-master Redis Cluster, and moving a slot by hand |
//! | [`writer`] | a child that pushes onto a list while a test breaks its server, and its log |
//! | [`rng`] | a replayable random generator |
//! | [`cli`] | running the `memspace` command |

#![allow(
    clippy::must_use_candidate,
    reason = "a test harness: tests call its helpers for their checks as often as for their value"
)]

pub mod backends;
pub mod children;
pub mod cli;
pub mod flags;
pub mod modes;
pub mod names;
pub mod procfs;
pub mod redis_cluster;
pub mod redis_server;
pub mod rng;
pub mod roles;
pub mod threads;
pub mod watchdog;
pub mod writer;

pub use children::{ChildGuard, Parent, Running};
pub use names::{Removal, unique_name};
pub use rng::Rng;
pub use watchdog::Watchdog;

/// First statement of a test that starts processes or may block: spawned children re-run this
/// test ([`roles::spawn_runs_this_test`]), and the returned [`Watchdog`] aborts the test if it
/// hangs (keep it until the end of the test).
pub fn start_test() -> Watchdog {
    roles::spawn_runs_this_test();
    Watchdog::start()
}
