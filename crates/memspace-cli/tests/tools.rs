//! `ls`, `inspect`, `gc` and `lock`, driven as a user would, with real processes killed.

use std::process::Stdio;
use std::time::Duration;

use memspace_testkit::children::wait_until;
use memspace_testkit::cli::{command, create, memspace, succeed};
use memspace_testkit::{ChildGuard, Removal};
use serde_json::Value;

/// The output of `memspace ls ARGS`, which exits 0, or 3 when a segment is damaged: tests
/// running beside this one leave damaged segments in /dev/shm for a while.
fn ls(args: &[&str]) -> String {
    let output = memspace(&[&["ls"][..], args].concat());
    assert!(
        matches!(output.status.code(), Some(0 | 3)),
        "memspace ls {args:?} failed: {output:?}"
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn inspect_json(name: &str) -> Value {
    serde_json::from_str(&succeed(&["inspect", name, "--json"])).expect("inspect --json is JSON")
}

#[test]
fn ls_lists_segments_with_kind_items_and_creator() {
    let list = Removal::fresh("ls-list");
    let lock = Removal::fresh("ls-lock");
    succeed(&["list", "create", list.name()]);
    succeed(&["list", "push", list.name(), "1", "2", "3"]);
    succeed(&["lock", lock.name(), "--", "true"]);
    let table = ls(&[]);
    let row = table
        .lines()
        .find(|line| line.starts_with(&format!("{} ", list.name())))
        .unwrap_or_else(|| panic!("{} not in\n{table}", list.name()));
    assert!(row.contains(" list "), "{row}");
    assert!(row.contains(" 3 "), "{row}");
    assert!(
        row.contains("(dead)"),
        "the creating CLI process has exited: {row}"
    );
    let json: Value = serde_json::from_str(&ls(&["--json"])).expect("JSON");
    let entries = json.as_array().expect("an array");
    let find = |name: &str| {
        entries
            .iter()
            .find(|entry| entry["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {json}"))
            .clone()
    };
    assert_eq!(find(list.name())["kind"], "list");
    assert_eq!(find(list.name())["items"], 3);
    assert_eq!(find(lock.name())["kind"], "lock");
    assert_eq!(find(lock.name())["items"], Value::Null);
}

#[test]
fn inspect_shows_the_header_the_lock_and_the_items() {
    let name = create("list", "inspect");
    succeed(&["list", "push", name.name(), r#"{"job":1}"#, r#""two""#]);
    let text = succeed(&["inspect", name.name(), "--items"]);
    assert!(text.contains("kind         list"), "{text}");
    assert!(text.contains("items        2"), "{text}");
    assert!(text.contains("lock         free"), "{text}");
    assert!(
        text.contains("verify       consistent (2 items checked)"),
        "{text}"
    );
    assert!(text.contains(r#"{"index":0,"value":{"job":1}}"#), "{text}");
    let json = inspect_json(name.name());
    assert_eq!(json["items"], 2);
    assert_eq!(json["anonymous"], false);
    assert_eq!(json["verify"]["problems"], Value::Array(vec![]));
    let output = memspace(&["inspect", "no-such-segment-here"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
}

#[test]
fn lock_runs_the_command_and_passes_its_exit_status() {
    let name = Removal::fresh("lock-status");
    let output = memspace(&["lock", name.name(), "--", "sh", "-c", "echo inside; exit 7"]);
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "inside\n");
    let output = memspace(&["lock", name.name(), "--", "no-such-program-anywhere"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-program-anywhere"));
}

/// Starts `memspace lock NAME -- cat`, which holds the lock until its input closes (when the
/// test drops the holder, even after killing `memspace`, no process is left behind); returns
/// once it holds the lock.
fn start_holder(name: &str) -> ChildGuard {
    let holder = ChildGuard::spawn(
        command(&["lock", name, "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let pid = holder.pid();
    wait_until("the holder holds the lock", || {
        memspace(&["inspect", name, "--json"]).status.success()
            && inspect_json(name)["lock"]["owner"] == pid
    });
    holder
}

#[test]
fn lock_excludes_a_second_holder_until_the_first_is_done() {
    let name = Removal::fresh("lock-exclusion");
    let _holder = start_holder(name.name());
    let output = memspace(&["lock", name.name(), "--timeout", "0.2", "--", "true"]);
    assert_eq!(output.status.code(), Some(75), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("was not released within"));
}

#[test]
fn lock_reports_a_holder_that_was_killed_and_takes_over() {
    let name = Removal::fresh("lock-kill");
    let mut holder = start_holder(name.name());
    let pid = holder.pid();
    holder.kill();
    let text = succeed(&["inspect", name.name()]);
    assert!(text.contains("which is dead"), "{text}");
    let output = memspace(&["lock", name.name(), "--", "echo", "recovered"]);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("(pid {pid}) died while holding it")),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "recovered\n");
    // The next holder finds a healthy lock.
    let output = memspace(&["lock", name.name(), "--", "true"]);
    assert!(output.status.success());
    assert!(output.stderr.is_empty(), "{output:?}");
    assert_eq!(inspect_json(name.name())["lock"]["owner_deaths"], 1);
}

#[test]
fn gc_keeps_named_segments_and_dry_run_removes_nothing() {
    let name = create("list", "gc-named");
    // Other tests run at the same time and may own orphans of their own: name ours.
    let out = succeed(&["gc", "--dry-run", "--json", name.name()]);
    let planned: Value = serde_json::from_str(&out).expect("JSON");
    assert!(
        planned
            .as_array()
            .expect("array")
            .iter()
            .all(|entry| entry["name"] != name.name()),
        "gc would remove a named segment: {out}"
    );
    let done = succeed(&["gc", name.name()]);
    assert!(done.contains("nothing to remove"), "{done}");
    assert_eq!(succeed(&["list", "len", name.name()]).trim(), "0");
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value"
)]
fn create_orphan_and_park((names, ready): (memspace::SharedList<String>, memspace::sync::Event)) {
    let orphan = memspace::SharedList::<u32>::new().expect("list");
    names.push(&orphan.name().to_string()).expect("report name");
    ready.set().expect("set");
    loop {
        std::thread::park();
    }
}

#[test]
fn gc_removes_an_anonymous_segment_whose_every_user_was_killed() {
    let names = memspace::SharedList::<String>::new().expect("list");
    let ready = memspace::sync::Event::new().expect("event");
    let mut child = memspace::Process::new(create_orphan_and_park, (names.clone(), ready.clone()));
    child.start().expect("start");
    assert!(
        ready.wait_timeout(Duration::from_mins(1)).expect("wait"),
        "the child never got ready"
    );
    let orphan = names.get(0).expect("read").expect("a name");
    child.kill().expect("SIGKILL");
    let _ = child.join();
    // Other tests run at the same time and may own orphans of their own: name the segments.
    let planned = succeed(&["gc", "--dry-run", &orphan, names.name().as_str()]);
    assert!(
        planned.contains(&format!(
            "would remove {orphan}: anonymous, and every user is dead"
        )),
        "{planned}"
    );
    assert!(std::path::Path::new(&format!("/dev/shm/memspace.{orphan}")).exists());
    let done = succeed(&["gc", &orphan, names.name().as_str()]);
    assert!(done.contains(&format!("removed {orphan}")), "{done}");
    assert!(!std::path::Path::new(&format!("/dev/shm/memspace.{orphan}")).exists());
    // Our own anonymous list has a live user (this process): gc leaves it alone.
    assert!(!done.contains(names.name().as_str()), "{done}");
    assert_eq!(names.len().expect("len"), 1);
}

#[test]
fn inspect_shows_the_state_of_every_synchronisation_kind() {
    let semaphore = memspace::sync::Semaphore::bounded(3).expect("semaphore");
    let _permit = semaphore.acquire().expect("acquire");
    let text = succeed(&["inspect", semaphore.name().as_str()]);
    assert!(text.contains("kind         semaphore"), "{text}");
    assert!(text.contains("free permits 2"), "{text}");
    assert!(text.contains("bound        3"), "{text}");
    assert!(
        text.contains(&format!("{} holds 1", std::process::id())),
        "{text}"
    );

    let barrier = memspace::sync::Barrier::new(4).expect("barrier");
    let json = inspect_json(barrier.name().as_str());
    assert_eq!(json["kind"], "barrier");
    assert_eq!(json["state"]["parties"], "4");
    assert_eq!(json["state"]["broken"], "no");

    let event = memspace::sync::Event::new().expect("event");
    event.set().expect("set");
    assert_eq!(inspect_json(event.name().as_str())["state"]["set"], "yes");

    let rwlock = memspace::sync::RwLock::new(0u64).expect("rwlock");
    let _reading = rwlock.read().expect("read");
    let json = inspect_json(rwlock.name().as_str());
    assert_eq!(json["state"]["value bytes"], "8");
    assert!(
        json["state"]["readers"]
            .as_str()
            .is_some_and(|r| r.contains("reads (1)")),
        "{json}"
    );
}
