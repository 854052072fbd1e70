//! `memspace queue create|put|get|len` and `memspace inspect --items` on queues, driven as a
//! user would, against the library on the other side.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use memspace::collections::{Queue, QueueError};
use memspace_testkit::cli::{command, create, fail_with, succeed};
use memspace_testkit::{Removal, Watchdog, procfs};

#[test]
fn queue_put_get_and_len_speak_json_in_order() {
    let name = create("queue", "json");
    succeed(&["queue", "put", name.name(), "1", "\"two\"", "[3]"]);
    succeed(&["queue", "put", name.name(), r#"{"four":null}"#]);
    assert_eq!(succeed(&["queue", "len", name.name()]), "4");
    assert_eq!(succeed(&["queue", "get", name.name()]), "1");
    assert_eq!(succeed(&["queue", "get", name.name()]), "\"two\"");
    assert_eq!(
        succeed(&["queue", "get", name.name(), "--timeout", "5"]),
        "[3]"
    );
    assert_eq!(succeed(&["queue", "len", name.name()]), "1");
    assert_eq!(succeed(&["queue", "get", name.name()]), r#"{"four":null}"#);
    assert_eq!(succeed(&["queue", "len", name.name()]), "0");
}

#[test]
fn a_get_that_times_out_says_so_and_exits_non_zero() {
    let name = create("queue", "timeout");
    let stderr = fail_with(&["queue", "get", name.name(), "--timeout", "0.05"], 75);
    assert!(
        stderr.contains("stayed empty") && stderr.contains(name.name()),
        "{stderr}"
    );
    let stderr = fail_with(&["queue", "get", name.name(), "--timeout", "0"], 75);
    assert!(stderr.contains("is empty"), "{stderr}");
    let stderr = fail_with(&["queue", "get", name.name(), "--timeout=-1"], 1);
    assert!(stderr.contains("not a number of seconds"), "{stderr}");
    let stderr = fail_with(&["queue", "get", name.name(), "--timeout", "1e300"], 1);
    assert!(stderr.contains("not a number of seconds"), "{stderr}");
}

#[test]
fn a_bounded_queue_created_by_the_cli_is_bounded_for_the_library() {
    let name = Removal::fresh("bounded");
    succeed(&["queue", "create", name.name(), "--capacity", "2"]);
    succeed(&["queue", "put", name.name(), "1", "2"]);
    let queue = Queue::<u32>::open(name.name()).expect("open");
    assert_eq!(queue.capacity(), Some(2));
    assert!(matches!(
        queue.try_put(&3),
        Err(QueueError::Full { capacity: 2, .. })
    ));
    assert_eq!(queue.get().expect("get"), 1);
    queue.try_put(&3).expect("room after a get");
    assert_eq!(succeed(&["queue", "get", name.name()]), "2");
    assert_eq!(succeed(&["queue", "get", name.name()]), "3");
}

#[test]
fn queue_create_sets_the_mode_it_is_given() {
    let name = Removal::fresh("mode");
    succeed(&["queue", "create", name.name(), "--mode", "640"]);
    let path = format!("/dev/shm/{}{}", memspace::segment::SHM_PREFIX, name.name());
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "{path}");
    let stderr = fail_with(&["queue", "create", name.name()], 1);
    assert!(stderr.contains(name.name()), "{stderr}");
}

#[test]
fn a_blocked_get_returns_when_another_process_puts() {
    let _dog = Watchdog::start();
    let name = create("queue", "block");
    let getter = command(&["queue", "get", name.name()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start getter");
    // Wait until it is blocked in the queue, so that the put below has to wake it.
    while !procfs::asleep_in_futex(getter.id()) {
        std::thread::yield_now();
    }
    succeed(&["queue", "put", name.name(), "\"hello\""]);
    let output = getter.wait_with_output().expect("getter");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "\"hello\"");
}

#[test]
fn inspect_items_shows_the_waiting_items_in_order() {
    let name = create("queue", "inspect");
    succeed(&[
        "queue",
        "put",
        name.name(),
        "\"first\"",
        "\"second\"",
        "\"third\"",
    ]);
    let queue = Queue::<String>::open(name.name()).expect("open");
    // In flight: not waiting any more, so not listed.
    let delivery = queue.receive().expect("receive");
    assert_eq!(delivery.value(), "first");
    let shown = succeed(&["inspect", name.name(), "--items"]);
    assert!(shown.contains("kind         queue"), "{shown}");
    assert!(shown.contains("items        2"), "{shown}");
    assert!(shown.contains("verify       consistent"), "{shown}");
    // Its senders' lock and its receivers'.
    assert!(
        shown.contains("lock         free; 0 owner deaths recovered"),
        "{shown}"
    );
    assert!(
        shown.contains("receive lock free; 0 owner deaths recovered"),
        "{shown}"
    );
    let second = shown
        .find(r#"{"index":0,"value":"second"}"#)
        .expect("second listed first");
    let third = shown
        .find(r#"{"index":1,"value":"third"}"#)
        .expect("third listed");
    assert!(second < third, "{shown}");
    assert!(!shown.contains("\"first\""), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&succeed(&["inspect", name.name(), "--items", "--json"]))
            .expect("JSON");
    assert_eq!(json["values"], serde_json::json!(["second", "third"]));
    assert_eq!(json["items"], 2);
    assert_eq!(json["receive_lock"]["owner"], serde_json::Value::Null);
    assert_eq!(json["receive_lock"]["owner_deaths"], 0);
    drop(delivery);
    assert_eq!(succeed(&["queue", "get", name.name()]), "\"first\"");
}

#[test]
fn invalid_json_puts_nothing() {
    let name = create("queue", "invalid");
    let stderr = fail_with(&["queue", "put", name.name(), "1", "not json"], 1);
    assert!(stderr.contains("value 2"), "{stderr}");
    assert_eq!(succeed(&["queue", "len", name.name()]), "0");
}

#[test]
fn queue_commands_on_a_missing_queue_or_another_kind_fail_clearly() {
    let name = Removal::fresh("missing");
    let stderr = fail_with(&["queue", "len", name.name()], 1);
    assert!(stderr.contains(name.name()), "{stderr}");
    succeed(&["list", "create", name.name()]);
    let stderr = fail_with(&["queue", "get", name.name(), "--timeout", "0"], 1);
    assert!(
        stderr.contains("list") && stderr.contains("queue"),
        "{stderr}"
    );
}

#[test]
fn queue_join_waits_until_every_item_is_acknowledged_and_exits_75_on_timeout() {
    let _dog = Watchdog::start();
    let name = create("queue", "join");
    succeed(&["queue", "join", name.name()]);
    succeed(&["queue", "put", name.name(), "1", "2"]);
    let stderr = fail_with(&["queue", "join", name.name(), "--timeout", "0.05"], 75);
    assert!(
        stderr.contains(name.name()) && stderr.contains("2 items were still unacknowledged"),
        "{stderr}"
    );
    let mut joiner = command(&["queue", "join", name.name()])
        .spawn()
        .expect("start joiner");
    // Blocked in the queue: only the acknowledgements below can end it.
    while !procfs::asleep_in_futex(joiner.id()) {
        std::thread::yield_now();
    }
    let queue = Queue::<u32>::open(name.name()).expect("open");
    let first = queue.receive().expect("receive").into_task();
    assert_eq!(first, 1);
    assert_eq!(succeed(&["queue", "get", name.name()]), "2");
    assert!(
        joiner.try_wait().expect("try_wait").is_none(),
        "the join ended with an item in flight"
    );
    queue.task_done().expect("task_done");
    assert!(joiner.wait().expect("joiner").success());
}

#[test]
fn queue_close_wakes_a_blocked_get_refuses_puts_and_ends_workers() {
    let _dog = Watchdog::start();
    let name = create("queue", "close");
    let getter = command(&["queue", "get", name.name()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start getter");
    while !procfs::asleep_in_futex(getter.id()) {
        std::thread::yield_now();
    }
    succeed(&["queue", "close", name.name()]);
    let output = getter.wait_with_output().expect("getter");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(name.name()) && stderr.contains("closed"),
        "{stderr}"
    );
    let stderr = fail_with(&["queue", "put", name.name(), "1"], 1);
    assert!(stderr.contains("is closed"), "{stderr}");
    succeed(&["queue", "join", name.name()]);

    // A plain close leaves the items for the workers, which then end; an immediate one
    // discards them.
    let work = create("queue", "close-work");
    succeed(&["queue", "put", work.name(), "1", "2"]);
    succeed(&["queue", "close", work.name()]);
    succeed(&["queue", "work", work.name(), "--forever", "--", "true"]);
    assert_eq!(succeed(&["queue", "len", work.name()]), "0");
    succeed(&["queue", "join", work.name()]);
    let dropped = create("queue", "close-now");
    succeed(&["queue", "put", dropped.name(), "1", "2"]);
    succeed(&["queue", "close", dropped.name(), "--immediate"]);
    assert_eq!(succeed(&["queue", "len", dropped.name()]), "0");
    succeed(&["queue", "join", dropped.name(), "--timeout", "5"]);
    let stderr = fail_with(&["queue", "get", dropped.name()], 1);
    assert!(stderr.contains("is closed"), "{stderr}");
}
