//! `memspace map ...` and `memspace queue ...`, driven as a user would.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

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

struct Name(String);

impl Name {
    fn new(test: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        Name(format!(
            "cli-collections.{}.{test}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = memspace(&["rm", &self.0]);
    }
}

#[test]
fn map_set_get_remove_and_len_speak_json() {
    let name = Name::new("map");
    succeed(&["map", "create", &name.0]);
    succeed(&["map", "set", &name.0, "\"ada\"", "36"]);
    succeed(&["map", "set", &name.0, "-7", r#"{"x":[1,2]}"#]);
    succeed(&["map", "set", &name.0, "\"ada\"", "37"]);
    assert_eq!(succeed(&["map", "get", &name.0, "\"ada\""]), "37");
    assert_eq!(succeed(&["map", "len", &name.0]), "2");
    let all: serde_json::Value =
        serde_json::from_str(&succeed(&["map", "get", &name.0])).expect("JSON");
    let mut pairs = all.as_array().expect("array").clone();
    pairs.sort_by_key(ToString::to_string);
    assert_eq!(
        serde_json::Value::Array(pairs).to_string(),
        r#"[["ada",37],[-7,{"x":[1,2]}]]"#
    );
    assert_eq!(succeed(&["map", "remove", &name.0, "-7"]), r#"{"x":[1,2]}"#);
    let output = memspace(&["map", "get", &name.0, "-7"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("has no key -7"));
    let items = succeed(&["inspect", &name.0, "--items"]);
    assert!(
        items.contains(r#"{"index":0,"value":["ada",37]}"#),
        "{items}"
    );
}

#[test]
fn a_map_is_shared_with_the_library() {
    let name = Name::new("map-lib");
    succeed(&["map", "create", &name.0]);
    succeed(&["map", "set", &name.0, "\"k\"", "5"]);
    let map = memspace::collections::SharedMap::<String, u32>::open(&name.0).expect("open");
    assert_eq!(map.get(&"k".to_owned()).expect("get"), Some(5));
    map.insert(&"j".to_owned(), &6).expect("insert");
    assert_eq!(succeed(&["map", "get", &name.0, "\"j\""]), "6");
}

#[test]
fn queue_put_get_and_len_in_order() {
    let name = Name::new("queue");
    succeed(&["queue", "create", &name.0]);
    succeed(&["queue", "put", &name.0, "1", "\"two\"", "[3]"]);
    assert_eq!(succeed(&["queue", "len", &name.0]), "3");
    assert_eq!(succeed(&["queue", "get", &name.0]), "1");
    assert_eq!(succeed(&["queue", "get", &name.0]), "\"two\"");
    assert_eq!(succeed(&["queue", "get", &name.0, "--timeout", "1"]), "[3]");
    let output = memspace(&["queue", "get", &name.0, "--timeout", "0.05"]);
    assert_eq!(output.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&output.stderr).contains("stayed empty"));
}

#[test]
fn a_blocked_get_returns_when_another_process_puts() {
    let name = Name::new("queue-block");
    succeed(&["queue", "create", &name.0]);
    let getter = Command::new(env!("CARGO_BIN_EXE_memspace"))
        .args(["queue", "get", &name.0, "--timeout", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start getter");
    succeed(&["queue", "put", &name.0, "\"hello\""]);
    let output = getter.wait_with_output().expect("getter");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "\"hello\"");
}

#[test]
fn a_bounded_queue_made_by_the_cli_refuses_more_than_its_capacity() {
    let name = Name::new("queue-bounded");
    succeed(&["queue", "create", &name.0, "--capacity", "1"]);
    succeed(&["queue", "put", &name.0, "1"]);
    let queue = memspace::collections::Queue::<u32>::open(&name.0).expect("open");
    assert_eq!(queue.capacity(), Some(1));
    assert!(queue.try_put(&2).is_err());
    assert_eq!(queue.get().expect("get"), 1);
    assert!(queue.try_put(&2).is_ok());
}
