//! The queue, list and map commands as parts of shell pipelines: `queue put --timeout`, values
//! read from standard input, and `queue work`, which feeds items to a command.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use memspace_testkit::Removal;
use memspace_testkit::cli::{command, create, fail_with, stderr, succeed};

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
    let mut input: String = (0..10_000).map(|i| format!("{i}\n")).collect();
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
    let input: String = (0..10_000).map(|i| format!("[{i}]\n\n")).collect();
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
