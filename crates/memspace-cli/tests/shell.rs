//! The queue, list and map commands as parts of shell pipelines: `queue put --timeout`, values
//! read from standard input, and `queue work`, which feeds items to a command.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use memspace::collections::Queue;
use memspace_testkit::cli::{command, create, fail_with, stderr, succeed};
use memspace_testkit::{Removal, unique_name};

/// Runs `memspace args` with `input` on its standard input, through a pipe, to its end.
fn with_stdin(args: &[&str], input: &str) -> Output {
    let mut child = command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start memspace");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    // Written from another thread: the command reads while this one waits for its output.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("wait for memspace");
    writer.join().expect("writer").expect("write stdin");
    output
}

#[test]
fn a_put_into_a_full_queue_gives_up_after_its_timeout() {
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("put-timeout");
    succeed(&["queue", "create", name.name(), "--capacity", "1"]);
    // Room for one: the put succeeds at once.
    succeed(&["queue", "put", name.name(), "--timeout", "0.2", "1"]);
    let started = Instant::now();
    let stderr = fail_with(&["queue", "put", name.name(), "--timeout", "0.2", "2"], 75);
    let waited = started.elapsed();
    assert!(
        stderr.contains("stayed full") && stderr.contains(name.name()),
        "{stderr}"
    );
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Several values: those that found room are put, and the message counts them.
    assert_eq!(succeed(&["queue", "get", name.name()]), "1");
    let stderr = fail_with(
        &["queue", "put", name.name(), "--timeout", "0", "3", "4"],
        75,
    );
    assert!(stderr.contains("1 value was put"), "{stderr}");
    assert_eq!(succeed(&["queue", "len", name.name()]), "1");
    assert_eq!(succeed(&["queue", "get", name.name()]), "3");
    let stderr = fail_with(&["queue", "put", name.name(), "--timeout=-1", "5"], 1);
    assert!(stderr.contains("not a number of seconds"), "{stderr}");
}

#[test]
fn list_push_reads_ten_thousand_values_from_stdin() {
    let _dog = memspace_testkit::start_test();
    let name = create("list", "stdin");
    let mut input: String = (0..10_000).map(|i| i.to_string() + "\n").collect();
    input.push_str("\n   \n{\"last\": [true, null]}"); // blank lines; no final newline
    let output = with_stdin(&["list", "push", name.name(), "-"], &input);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(succeed(&["list", "len", name.name()]), "10001");
    assert_eq!(succeed(&["list", "get", name.name(), "9999"]), "9999");
    assert_eq!(
        succeed(&["list", "get", name.name(), "10000"]),
        r#"{"last":[true,null]}"#
    );
}

#[test]
fn a_line_that_is_not_json_appends_nothing_to_a_list() {
    let _dog = memspace_testkit::start_test();
    let name = create("list", "stdin-bad");
    let output = with_stdin(&["list", "push", name.name(), "-"], "1\n\n2\nthree\n4\n");
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(
        stderr.contains("line 4")
            && stderr.contains("three")
            && stderr.contains("appended nothing"),
        "{stderr}"
    );
    assert_eq!(succeed(&["list", "len", name.name()]), "0");
    let stderr = fail_with(&["list", "push", name.name(), "1", "-"], 1);
    assert!(stderr.contains("only value"), "{stderr}");
}

#[test]
fn queue_put_reads_values_from_stdin_until_a_line_that_is_not_json() {
    let _dog = memspace_testkit::start_test();
    let name = create("queue", "stdin");
    let input = (0..10_000)
        .map(|i| format!("[{i}]"))
        .collect::<Vec<_>>()
        .join("\n\n");
    let output = with_stdin(&["queue", "put", name.name(), "-"], &input);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(succeed(&["queue", "len", name.name()]), "10000");
    assert_eq!(succeed(&["queue", "get", name.name()]), "[0]");

    let other = create("queue", "stdin-bad");
    let output = with_stdin(
        &["queue", "put", other.name(), "-"],
        "\"a\"\n\n\"b\"\nc\n\"d\"\n",
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(
        stderr.contains("line 4") && stderr.contains("after putting 2 values"),
        "{stderr}"
    );
    assert_eq!(succeed(&["queue", "len", other.name()]), "2");
    assert_eq!(succeed(&["queue", "get", other.name()]), "\"a\"");
    assert_eq!(succeed(&["queue", "get", other.name()]), "\"b\"");
}

/// A fresh directory for a test's files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir(&path).expect("create a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Items in flight on the queue `name`, as the library sees them.
fn in_flight(name: &str) -> u64 {
    Queue::<serde_json::Value>::open(name)
        .expect("open the queue")
        .in_flight()
        .expect("in flight")
}

/// A shell script for `queue work`: fails (exit 7) the first time it runs, then appends its item
/// and `MEMSPACE_DELIVERIES` to `done` in `dir`.
fn fails_once(dir: &TempDir) -> String {
    let dir = dir.0.display();
    format!(
        r#"read -r item; if [ ! -e "{dir}/failed" ]; then touch "{dir}/failed"; exit 7; fi; echo "$item $MEMSPACE_DELIVERIES" >> "{dir}/done""#
    )
}

#[test]
fn queue_work_puts_back_the_item_of_a_failed_command_and_acknowledges_the_others() {
    let _dog = memspace_testkit::start_test();
    let name = create("queue", "work");
    let dir = TempDir::new("work");
    succeed(&[
        "queue",
        "put",
        name.name(),
        "\"one\"",
        "\"two\"",
        "\"three\"",
    ]);
    let script = fails_once(&dir);
    let args = [
        "queue",
        "work",
        name.name(),
        "--count",
        "4",
        "--",
        "sh",
        "-c",
        &script,
    ];
    // Four runs: "one" fails and goes back to the front, then all three succeed. The status
    // is the failed run's.
    let stderr = fail_with(&args, 7);
    assert!(
        stderr.contains("went back") && stderr.contains(name.name()),
        "{stderr}"
    );
    let done = std::fs::read_to_string(dir.0.join("done")).expect("read done");
    assert_eq!(done, "\"one\" 2\n\"two\" 1\n\"three\" 1\n");
    assert_eq!(succeed(&["queue", "len", name.name()]), "0");
    assert_eq!(in_flight(name.name()), 0);
}

#[test]
fn queue_work_stops_on_its_timeout() {
    let _dog = memspace_testkit::start_test();
    let name = create("queue", "work-timeout");
    let dir = TempDir::new("work-timeout");
    let done = dir.0.join("done");
    let script = format!("cat >> '{}'", done.display());
    succeed(&["queue", "put", name.name(), "1", "2"]);
    // --count 3 with two items: both are processed, then the timeout ends it with 75.
    let work = |more: &[&str]| {
        let mut args = vec!["queue", "work", name.name(), "--timeout", "0.2"];
        args.extend_from_slice(more);
        args.extend_from_slice(&["--", "sh", "-c", &script]);
        args.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    let args = work(&["--count", "3"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stderr = fail_with(&args, 75);
    assert!(stderr.contains("2 of 3 items"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&done).expect("read"), "1\n2\n");
    // --forever: drains the queue, and the timeout is its normal end.
    succeed(&["queue", "put", name.name(), "3"]);
    let args = work(&["--forever"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    succeed(&args);
    assert_eq!(std::fs::read_to_string(&done).expect("read"), "1\n2\n3\n");
    assert_eq!(in_flight(name.name()), 0);
}

#[test]
fn queue_work_puts_back_the_item_of_a_command_that_cannot_start() {
    let _dog = memspace_testkit::start_test();
    let name = create("queue", "work-missing");
    succeed(&["queue", "put", name.name(), "1"]);
    let stderr = fail_with(
        &[
            "queue",
            "work",
            name.name(),
            "--",
            "/nonexistent/memspace-test-command",
        ],
        1,
    );
    assert!(
        stderr.contains("went back") && stderr.contains("/nonexistent/memspace-test-command"),
        "{stderr}"
    );
    assert_eq!(succeed(&["queue", "len", name.name()]), "1");
    assert_eq!(in_flight(name.name()), 0);
}

#[test]
fn list_get_counts_negative_indexes_from_the_end() {
    let name = create("list", "negative");
    let stderr = fail_with(&["list", "get", name.name(), "-1"], 1);
    assert!(
        stderr.contains("out of range") && stderr.contains("0 items"),
        "{stderr}"
    );
    succeed(&["list", "push", name.name(), "10", "20", "30"]);
    assert_eq!(succeed(&["list", "get", name.name(), "-1"]), "30");
    assert_eq!(succeed(&["list", "get", name.name(), "-3"]), "10");
    assert_eq!(succeed(&["list", "get", name.name(), "0"]), "10");
    let stderr = fail_with(&["list", "get", name.name(), "-4"], 1);
    assert!(stderr.contains("index -4 is out of range"), "{stderr}");
    let stderr = fail_with(&["list", "get", name.name(), "3"], 1);
    assert!(stderr.contains("index 3 is out of range"), "{stderr}");
}

#[test]
fn map_get_of_a_missing_key_exits_4() {
    let name = create("map", "missing-key");
    succeed(&["map", "set", name.name(), "\"a\"", "1"]);
    let stderr = fail_with(&["map", "get", name.name(), "\"b\""], 4);
    assert!(stderr.contains("has no key \"b\""), "{stderr}");
    let stderr = fail_with(&["map", "remove", name.name(), "\"b\""], 4);
    assert!(stderr.contains("has no key"), "{stderr}");
    // Other errors stay 1: a map that does not exist, a key that is not JSON.
    fail_with(&["map", "get", &format!("{}-absent", name.name()), "1"], 1);
    fail_with(&["map", "get", name.name(), "b"], 1);
    assert_eq!(succeed(&["map", "get", name.name(), "\"a\""]), "1");
}
