//! The watchdog: a hang is a test failure, not a stuck CI job.
//!
//! A test that can block starts a [`Watchdog`]; if the test has not dropped it after
//! [`WATCHDOG_LIMIT`], it kills the child processes the test started and has not reaped,
//! removes the segment names the test has not removed (an abort runs no destructor), and
//! aborts the test process.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use memspace::Segment;

/// How long a test may run before its watchdog aborts it.
pub const WATCHDOG_LIMIT: Duration = Duration::from_mins(1);

/// Pids of the children this process started and has not reaped.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Segment names this process's tests made and have not removed.
static NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn children() -> MutexGuard<'static, Vec<u32>> {
    CHILDREN.lock().unwrap_or_else(PoisonError::into_inner)
}

fn names() -> MutexGuard<'static, Vec<String>> {
    NAMES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records a started child, for the watchdog to kill.
pub(crate) fn watch_child(pid: u32) {
    children().push(pid);
}

/// Forgets a child that was reaped.
pub(crate) fn forget_child(pid: u32) {
    children().retain(|&p| p != pid);
}

/// Records a segment name, for the watchdog to remove.
pub(crate) fn watch_name(name: &str) {
    names().push(name.to_owned());
}

/// Forgets a name that was removed.
pub(crate) fn forget_name(name: &str) {
    names().retain(|n| n != name);
}

/// Aborts the test process after [`WATCHDOG_LIMIT`] (killing its children and removing its
/// names first); dropping it cancels it, so that under `cargo test`, where tests share a
/// process, it never fires during a later test.
#[derive(Debug)]
#[must_use = "the watchdog is cancelled when dropped"]
pub struct Watchdog {
    done: Arc<(Mutex<bool>, Condvar)>,
}

impl Watchdog {
    /// Starts the watchdog of the running test.
    ///
    /// # Panics
    ///
    /// If its thread cannot be started.
    pub fn start() -> Self {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&done);
        let test = std::thread::current()
            .name()
            .unwrap_or("the test")
            .to_owned();
        std::thread::Builder::new()
            .name("watchdog".to_owned())
            .spawn(move || {
                let (finished, changed) = &*flag;
                let finished = finished.lock().unwrap_or_else(PoisonError::into_inner);
                let (finished, _) = changed
                    .wait_timeout_while(finished, WATCHDOG_LIMIT, |finished| !*finished)
                    .unwrap_or_else(PoisonError::into_inner);
                if !*finished {
                    eprintln!("watchdog: {test} did not finish within {WATCHDOG_LIMIT:?}");
                    for &pid in children().iter() {
                        crate::children::sigkill(pid);
                    }
                    for name in names().iter() {
                        let _ = Segment::remove(name);
                    }
                    std::process::abort();
                }
            })
            .expect("start the watchdog thread");
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (finished, changed) = &*self.done;
        *finished.lock().unwrap_or_else(PoisonError::into_inner) = true;
        changed.notify_all();
    }
}
