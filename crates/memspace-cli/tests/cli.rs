//! Drives the `memspace` binary as a user would.

use memspace::spawn::StartMethod;
use memspace_testkit::Removal;
use memspace_testkit::cli::{create, memspace, stderr, succeed};

/// The lines of one demo run, with the line that ends the tutorial's output and the verdict.
fn demo(args: &[&str]) -> Vec<String> {
    let mut all = vec!["demo"];
    all.extend_from_slice(args);
    succeed(&all).lines().map(str::to_owned).collect()
}

fn tutorial_end(lines: &[String]) -> (&str, &str) {
    let n = lines.len();
    assert!(n >= 2, "demo printed {lines:?}");
    (&lines[n - 2], &lines[n - 1])
}

#[test]
fn threads_share_the_list() {
    let lines = demo(&["--mode", "thread"]);
    let (last, verdict) = tutorial_end(&lines);
    assert_eq!(last, "Main Thread : [0, 1, 2, 0, 1, 2, 0, 1, 2]");
    assert!(verdict.starts_with("-> memory shared: yes."), "{verdict}");
    assert!(lines.contains(&"Thread -2 :  [0, 1, 2, 0, 1, 2, 0, 1, 2]".to_owned()));
}

/// The lines of a demo of processes appending to plain lists, started by `start`, and its
/// verdict, checked to say that the parent's list stayed empty and nothing was shared.
fn demo_of_copies(start: &str) -> (Vec<String>, String) {
    let lines = demo(&["--mode", "process", "--start", start]);
    let (last, verdict) = tutorial_end(&lines);
    assert_eq!(last, "Main Process : []");
    assert!(verdict.starts_with("-> memory shared: no."), "{verdict}");
    let verdict = verdict.to_owned();
    (lines, verdict)
}

#[test]
fn forked_processes_append_to_copies() {
    let (lines, verdict) = demo_of_copies("fork");
    // Every child starts from an empty copy: each prints [0], [0, 1], [0, 1, 2].
    for line in [
        "Process -0 :  [0]",
        "Process -1 :  [0, 1]",
        "Process -2 :  [0, 1, 2]",
    ] {
        assert_eq!(
            lines.iter().filter(|l| *l == line).count(),
            3,
            "{line} in {lines:?}"
        );
    }
    // The demo must not imply that equal addresses mean shared memory.
    assert!(verdict.contains("different memory"), "{verdict}");
}

#[test]
fn spawned_processes_append_to_copies() {
    let (lines, _) = demo_of_copies("spawn");
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "Process -2 :  [0, 1, 2]")
            .count(),
        3
    );
}

fn processes_share_a_shared_list(start: StartMethod) {
    let lines = demo(&["--mode", "shared", "--start", &start.to_string()]);
    let (last, verdict) = tutorial_end(&lines);
    assert_eq!(
        last, "Main Process : [0, 1, 2, 0, 1, 2, 0, 1, 2]",
        "{start}"
    );
    assert!(
        verdict.starts_with("-> memory shared: yes."),
        "{start}: {verdict}"
    );
    assert!(
        lines.iter().any(|l| l.contains("shared segment anon.")),
        "{lines:?}"
    );
}

memspace_testkit::per_mode! {
    processes_share_a_shared_list: fork, spawn;
}

#[test]
fn the_default_demo_runs_all_three_modes() {
    let out = succeed(&["demo"]);
    let finals: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("Main ") && l.contains('['))
        .collect();
    assert_eq!(
        finals,
        [
            "Main Thread : [0, 1, 2, 0, 1, 2, 0, 1, 2]",
            "Main Process : []",
            "Main Process : [0, 1, 2, 0, 1, 2, 0, 1, 2]"
        ]
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("-> memory shared:"))
            .count(),
        3
    );
}

#[test]
fn workers_and_count_change_the_numbers() {
    let lines = demo(&["--mode", "shared", "--workers", "2", "--count", "4"]);
    let (last, _) = tutorial_end(&lines);
    assert_eq!(last, "Main Process : [0, 1, 2, 3, 0, 1, 2, 3]");
}

#[test]
fn bad_demo_arguments_are_refused() {
    let output = memspace(&["demo", "--workers", "0"]);
    assert!(!output.status.success());
    let output = memspace(&["demo", "--mode", "fiber"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("fiber"));
}

#[test]
fn list_commands_round_trip_json() {
    let name = create("list", "roundtrip");
    succeed(&[
        "list",
        "push",
        name.name(),
        "1",
        "\"two\"",
        r#"{"three":[3,3.5,null,true]}"#,
    ]);
    assert_eq!(succeed(&["list", "len", name.name()]).trim(), "3");
    assert_eq!(
        succeed(&["list", "get", name.name()]).trim(),
        r#"[1,"two",{"three":[3,3.5,null,true]}]"#
    );
    assert_eq!(
        succeed(&["list", "get", name.name(), "1"]).trim(),
        r#""two""#
    );
}

#[test]
fn a_list_pushed_from_the_cli_is_read_by_the_library() {
    let name = create("list", "library");
    succeed(&["list", "push", name.name(), "5", "-7", "9"]);
    let list = memspace::SharedList::<i64>::open(name.name()).expect("open");
    assert_eq!(list.to_vec().expect("read"), [5, -7, 9]);
}

#[test]
fn list_errors_name_the_list_and_exit_non_zero() {
    let name = Removal::fresh("errors");
    let output = memspace(&["list", "get", name.name()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&format!("`{}` does not exist", name.name())));

    succeed(&["list", "create", name.name()]);
    let output = memspace(&["list", "create", name.name()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );

    let output = memspace(&["list", "push", name.name(), "not json"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("is not JSON"));
    assert_eq!(
        succeed(&["list", "len", name.name()]).trim(),
        "0",
        "a bad value appends nothing"
    );

    let output = memspace(&["list", "get", name.name(), "0"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("out of range"));

    let output = memspace(&["list", "create", "../etc"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("not a valid segment name"));
}

#[test]
fn rm_removes_and_reports_missing_segments() {
    let name = create("list", "rm");
    succeed(&["rm", name.name()]);
    let output = memspace(&["rm", name.name()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("does not exist"));
}
