//! `memspace queue create|put|get|len` and `memspace inspect --items` on queues, driven as a
//! user would, against the library on the other side.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use memspace::collections::{Queue, QueueError};

fn memspace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memspace"))
        .args(args)
        .output()
        .expect("run memspace")
}

fn succeed(args: &[&str]) -> String {
    let output = memspace(args);
    assert!(
        output.status.success(),
        "memspace {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs `memspace args`, expecting it to fail with `code`; returns its standard error.
fn fail(args: &[&str], code: i32) -> String {
    let output = memspace(args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "memspace {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A unique queue name, removed when dropped (also when the test fails).
struct Name(String);

impl Name {
    fn new(test: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cli-queue.{}.{test}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        live_names().push(name.clone());
        Name(name)
    }
}

/// The names of this process's tests not yet removed: the watchdog removes them before it
/// aborts (an abort runs no destructor).
fn live_names() -> std::sync::MutexGuard<'static, Vec<String>> {
    static NAMES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    NAMES.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Name {
    fn drop(&mut self) {
        live_names().retain(|name| *name != self.0);
        let _ = memspace::Segment::remove(&self.0);
    }
}

/// Aborts the test process if the test has not finished after a minute.
struct Watchdog(Arc<(Mutex<bool>, Condvar)>);

impl Watchdog {
    fn start() -> Self {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&done);
        std::thread::spawn(move || {
            let (finished, wake) = &*flag;
            let finished = finished.lock().unwrap_or_else(PoisonError::into_inner);
            let (finished, _) = wake
                .wait_timeout_while(finished, Duration::from_mins(1), |finished| !*finished)
                .unwrap_or_else(PoisonError::into_inner);
            if !*finished {
                eprintln!("watchdog: the test did not finish within a minute: aborting");
                for name in live_names().iter() {
                    let _ = memspace::Segment::remove(name);
                }
                std::process::abort();
            }
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (finished, wake) = &*self.0;
        *finished.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }
}

#[test]
fn queue_put_get_and_len_speak_json_in_order() {
    let name = Name::new("json");
    succeed(&["queue", "create", &name.0]);
    succeed(&["queue", "put", &name.0, "1", "\"two\"", "[3]"]);
    succeed(&["queue", "put", &name.0, r#"{"four":null}"#]);
    assert_eq!(succeed(&["queue", "len", &name.0]), "4");
    assert_eq!(succeed(&["queue", "get", &name.0]), "1");
    assert_eq!(succeed(&["queue", "get", &name.0]), "\"two\"");
    assert_eq!(succeed(&["queue", "get", &name.0, "--timeout", "5"]), "[3]");
    assert_eq!(succeed(&["queue", "len", &name.0]), "1");
    assert_eq!(succeed(&["queue", "get", &name.0]), r#"{"four":null}"#);
    assert_eq!(succeed(&["queue", "len", &name.0]), "0");
}

#[test]
fn a_get_that_times_out_says_so_and_exits_non_zero() {
    let name = Name::new("timeout");
    succeed(&["queue", "create", &name.0]);
    let stderr = fail(&["queue", "get", &name.0, "--timeout", "0.05"], 75);
    assert!(
        stderr.contains("stayed empty") && stderr.contains(&name.0),
        "{stderr}"
    );
    let stderr = fail(&["queue", "get", &name.0, "--timeout", "0"], 75);
    assert!(stderr.contains("is empty"), "{stderr}");
    let stderr = fail(&["queue", "get", &name.0, "--timeout=-1"], 1);
    assert!(stderr.contains("not a number of seconds"), "{stderr}");
    let stderr = fail(&["queue", "get", &name.0, "--timeout", "1e300"], 1);
    assert!(stderr.contains("not a number of seconds"), "{stderr}");
}

#[test]
fn a_bounded_queue_created_by_the_cli_is_bounded_for_the_library() {
    let name = Name::new("bounded");
    succeed(&["queue", "create", &name.0, "--capacity", "2"]);
    succeed(&["queue", "put", &name.0, "1", "2"]);
    let queue = Queue::<u32>::open(&name.0).expect("open");
    assert_eq!(queue.capacity(), Some(2));
    assert!(matches!(
        queue.try_put(&3),
        Err(QueueError::Full { capacity: 2, .. })
    ));
    assert_eq!(queue.get().expect("get"), 1);
    queue.try_put(&3).expect("room after a get");
    assert_eq!(succeed(&["queue", "get", &name.0]), "2");
    assert_eq!(succeed(&["queue", "get", &name.0]), "3");
}

#[test]
fn queue_create_sets_the_mode_it_is_given() {
    let name = Name::new("mode");
    succeed(&["queue", "create", &name.0, "--mode", "640"]);
    let path = format!("/dev/shm/{}{}", memspace::segment::SHM_PREFIX, name.0);
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "{path}");
    let stderr = fail(&["queue", "create", &name.0], 1);
    assert!(stderr.contains(&name.0), "{stderr}");
}

/// The state of process `pid` is `S` and it sleeps in a futex (its only thread: the CLI starts
/// none).
fn asleep_in_futex(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    state.starts_with('S') && wchan.contains("futex")
}

#[test]
fn a_blocked_get_returns_when_another_process_puts() {
    let _dog = Watchdog::start();
    let name = Name::new("block");
    succeed(&["queue", "create", &name.0]);
    let getter = Command::new(env!("CARGO_BIN_EXE_memspace"))
        .args(["queue", "get", &name.0])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start getter");
    // Wait until it is blocked in the queue, so that the put below has to wake it.
    while !asleep_in_futex(getter.id()) {
        std::thread::yield_now();
    }
    succeed(&["queue", "put", &name.0, "\"hello\""]);
    let output = getter.wait_with_output().expect("getter");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "\"hello\"");
}

#[test]
fn inspect_items_shows_the_waiting_items_in_order() {
    let name = Name::new("inspect");
    succeed(&["queue", "create", &name.0]);
    succeed(&[
        "queue",
        "put",
        &name.0,
        "\"first\"",
        "\"second\"",
        "\"third\"",
    ]);
    let queue = Queue::<String>::open(&name.0).expect("open");
    // In flight: not waiting any more, so not listed.
    let delivery = queue.receive().expect("receive");
    assert_eq!(delivery.value(), "first");
    let shown = succeed(&["inspect", &name.0, "--items"]);
    assert!(shown.contains("kind         queue"), "{shown}");
    assert!(shown.contains("items        2"), "{shown}");
    assert!(shown.contains("verify       consistent"), "{shown}");
    let second = shown
        .find(r#"{"index":0,"value":"second"}"#)
        .expect("second listed first");
    let third = shown
        .find(r#"{"index":1,"value":"third"}"#)
        .expect("third listed");
    assert!(second < third, "{shown}");
    assert!(!shown.contains("\"first\""), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&succeed(&["inspect", &name.0, "--items", "--json"])).expect("JSON");
    assert_eq!(json["values"], serde_json::json!(["second", "third"]));
    assert_eq!(json["items"], 2);
    drop(delivery);
    assert_eq!(succeed(&["queue", "get", &name.0]), "\"first\"");
}

#[test]
fn invalid_json_puts_nothing() {
    let name = Name::new("invalid");
    succeed(&["queue", "create", &name.0]);
    let stderr = fail(&["queue", "put", &name.0, "1", "not json"], 1);
    assert!(stderr.contains("value 2"), "{stderr}");
    assert_eq!(succeed(&["queue", "len", &name.0]), "0");
}

#[test]
fn queue_commands_on_a_missing_queue_or_another_kind_fail_clearly() {
    let name = Name::new("missing");
    let stderr = fail(&["queue", "len", &name.0], 1);
    assert!(stderr.contains(&name.0), "{stderr}");
    succeed(&["list", "create", &name.0]);
    let stderr = fail(&["queue", "get", &name.0, "--timeout", "0"], 1);
    assert!(
        stderr.contains("list") && stderr.contains("queue"),
        "{stderr}"
    );
}
