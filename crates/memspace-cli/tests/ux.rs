//! The command as a shell user meets it: output into a pipe its reader closes, `rm` of several
//! names, sizes with units, shell completions.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use memspace_testkit::cli::{command, create, memspace, stderr, succeed};
use memspace_testkit::names::shm_exists;

/// A list of `n` numbers, far more output than a pipe holds (64 KiB) when printed.
fn long_list(tag: &str, n: usize) -> memspace_testkit::Removal {
    let name = create("list", tag);
    let values: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    for chunk in values.chunks(5_000) {
        let mut args = vec!["list", "push", name.name()];
        args.extend(chunk.iter().map(String::as_str));
        succeed(&args);
    }
    name
}

/// Runs `memspace args` with its output into a pipe, reads the first `bytes` bytes (or the
/// first line if `bytes` is `None`), closes the pipe as `head` does, and checks that the
/// command then ended quietly: no panic (status 101), nothing on standard error.
fn read_then_close(args: &[&str], bytes: Option<usize>) {
    let mut child = command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run memspace");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout piped"));
    let read = if let Some(n) = bytes {
        let mut start = vec![0; n];
        reader.read_exact(&mut start).expect("read the first bytes");
        String::from_utf8_lossy(&start).into_owned()
    } else {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read the first line");
        line
    };
    assert!(!read.is_empty(), "memspace {args:?} printed nothing");
    drop(reader);
    let output = child.wait_with_output().expect("wait for memspace");
    assert_eq!(
        output.status.code(),
        Some(0),
        "memspace {args:?} into a closed pipe: {}",
        stderr(&output)
    );
    assert!(
        output.stderr.is_empty(),
        "memspace {args:?} into a closed pipe said: {}",
        stderr(&output)
    );
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let list = long_list("pipe", 20_000);
    read_then_close(&["inspect", list.name(), "--items"], None);
    read_then_close(&["inspect", list.name(), "--items", "--json"], None);
    // One long line.
    read_then_close(&["list", "get", list.name()], Some(10));
    // Workers that print, in threads and in child processes.
    read_then_close(&["demo", "--mode", "thread"], None);
    read_then_close(&["demo", "--mode", "shared", "--count", "2000"], None);
}

#[test]
fn an_item_got_into_a_closed_pipe_goes_back_to_the_queue() {
    let queue = create("queue", "pipe-queue");
    let mut child = command(&["queue", "get", queue.name(), "--timeout", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run memspace");
    // The reader goes away before anything is printed; then the item arrives.
    drop(child.stdout.take());
    succeed(&["queue", "put", queue.name(), "{\"job\": 7}"]);
    let output = child.wait_with_output().expect("wait for memspace");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
    assert_eq!(succeed(&["queue", "len", queue.name()]).trim(), "1");
    assert_eq!(
        succeed(&["queue", "get", queue.name()]).trim(),
        "{\"job\":7}",
        "the item that could not be printed"
    );
}

#[test]
fn rm_removes_every_name_it_can_and_reports_the_others() {
    let first = create("list", "rm-first");
    let missing = memspace_testkit::Removal::fresh("rm-missing");
    let last = create("map", "rm-last");
    let output = memspace(&["rm", first.name(), missing.name(), last.name()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(!shm_exists(first.name()), "the name before the missing one");
    assert!(!shm_exists(last.name()), "the name after the missing one");
    let said = stderr(&output);
    assert_eq!(said.lines().count(), 1, "one line per failure: {said}");
    assert!(
        said.contains(&format!("`{}` does not exist", missing.name())),
        "{said}"
    );
}

#[test]
fn rm_force_ignores_missing_names_only() {
    let present = create("list", "rmf-present");
    let missing = memspace_testkit::Removal::fresh("rmf-missing");
    for flag in ["-f", "--force"] {
        let output = memspace(&["rm", flag, missing.name()]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert!(output.stderr.is_empty(), "{}", stderr(&output));
    }
    let output = memspace(&["rm", "-f", missing.name(), present.name()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!shm_exists(present.name()));
    // Not a missing name: an invalid one still fails, and is reported.
    let output = memspace(&["rm", "-f", "../etc", missing.name()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("not a valid segment name"),
        "{}",
        stderr(&output)
    );
}

/// The largest size `memspace inspect --json` reports for `name`.
fn max_size_of(name: &str) -> u64 {
    let info: serde_json::Value =
        serde_json::from_str(&succeed(&["inspect", name, "--json"])).expect("JSON");
    info["max_size"].as_u64().expect("max_size")
}

#[test]
fn max_size_takes_a_unit() {
    for (kind, size, bytes) in [
        ("list", "64KiB", 64 << 10),
        ("map", "1M", 1 << 20),
        ("queue", "1.5 MiB", 3 << 19),
    ] {
        let name = memspace_testkit::Removal::fresh(&format!("size-{kind}"));
        succeed(&[kind, "create", name.name(), "--max-size", size]);
        assert_eq!(max_size_of(name.name()), bytes, "{kind} --max-size {size}");
    }
}

#[test]
fn max_size_below_the_smallest_segment_is_refused() {
    let name = memspace_testkit::Removal::fresh("size-small");
    for size in ["10", "4K"] {
        let output = memspace(&["list", "create", name.name(), "--max-size", size]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        let said = stderr(&output);
        assert!(said.contains("--max-size"), "names the flag: {said}");
        assert!(
            said.contains("12 KiB (12288 bytes)"),
            "names the minimum: {said}"
        );
        assert!(
            !shm_exists(name.name()),
            "--max-size {size} created the list"
        );
    }
    let output = memspace(&["list", "create", name.name(), "--max-size", "12X"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("`12X` is not a size"));
}

#[test]
fn completions_print_a_script_for_each_shell() {
    let bash = succeed(&["completions", "bash"]);
    assert!(bash.contains("memspace"), "{bash}");
    for subcommand in ["inspect", "completions", "--max-size"] {
        assert!(bash.contains(subcommand), "bash completes {subcommand}");
    }
    let syntax = std::process::Command::new("bash")
        .args(["-n", "-c", &bash])
        .output();
    if let Ok(syntax) = syntax {
        assert!(syntax.status.success(), "bash -n: {}", stderr(&syntax));
    }
    assert!(succeed(&["completions", "zsh"]).starts_with("#compdef memspace"));
    assert!(succeed(&["completions", "fish"]).contains("complete -c memspace"));
    let output = memspace(&["completions", "tcsh"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn inspect_shows_when_a_segment_was_created_as_a_date() {
    let list = create("list", "created");
    let before = std::time::SystemTime::now();
    let shown = succeed(&["inspect", list.name()]);
    let line = shown
        .lines()
        .find(|line| line.starts_with("creator"))
        .unwrap_or_else(|| panic!("no creator line in {shown}"));
    // `created YYYY-MM-DD HH:MM:SS.mmm UTC`, in this year.
    let year = 1970
        + before
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs()
            / 31_556_952;
    let date = line
        .split("created ")
        .nth(1)
        .unwrap_or_else(|| panic!("no creation date in {line:?}"));
    assert!(date.ends_with(" UTC"), "{line:?}");
    assert!(
        date.starts_with(&format!("{year}-")) || date.starts_with(&format!("{}-", year + 1)),
        "{line:?}"
    );
    // `--json` keeps the milliseconds.
    let json: serde_json::Value =
        serde_json::from_str(&succeed(&["inspect", list.name(), "--json"])).expect("JSON");
    assert!(
        json["created_unix_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{json}"
    );
}

#[test]
fn a_full_segment_names_the_flag_that_makes_a_larger_one() {
    let list = memspace_testkit::Removal::fresh("full");
    succeed(&["list", "create", list.name(), "--max-size", "12KiB"]);
    let big = format!("\"{}\"", "x".repeat(16 << 10));
    let message = memspace_testkit::cli::fail(&["list", "push", list.name(), &big]);
    assert!(
        message.contains("is full") && message.contains("--max-size"),
        "{message}"
    );
}

/// The subcommands `memspace [GROUP] --help` lists, `help` aside.
fn subcommands(group: &[&str]) -> Vec<String> {
    let mut args = group.to_vec();
    args.push("--help");
    let help = succeed(&args);
    help.lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|command| *command != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_lists_every_command_of_the_help() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the workspace root");
    let section = readme
        .split("## The command line")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README's command-line section");
    let commands = subcommands(&[]);
    assert!(commands.len() >= 10, "{commands:?}");
    for command in commands {
        let nested = subcommands(&[&command]);
        if nested.is_empty() {
            assert!(
                section.contains(&format!("memspace {command} ")),
                "the README's command line does not show `memspace {command}`"
            );
        }
        for sub in nested {
            assert!(
                section.contains(&format!("memspace {command} {sub} ")),
                "the README's command line does not show `memspace {command} {sub}`"
            );
        }
    }
}

#[test]
fn inspect_and_ls_show_an_array_a_program_made() {
    let name = memspace_testkit::Removal::fresh("array-inspect");
    let array = memspace::SharedArray::<u16>::create_from(name.name(), &[3, 1, 4]).expect("array");
    let shown = succeed(&["inspect", name.name()]);
    assert!(shown.contains("array"), "{shown}");
    assert!(shown.contains("u16"), "{shown}");
    let info: serde_json::Value =
        serde_json::from_str(&succeed(&["inspect", name.name(), "--json"])).expect("JSON");
    assert_eq!(info["kind"], "array", "{info}");
    assert_eq!(info["items"], 3, "{info}");
    let listed = succeed(&["ls"]);
    assert!(listed.contains(name.name()), "{listed}");
    let items: serde_json::Value =
        serde_json::from_str(&succeed(&["inspect", name.name(), "--items", "--json"]))
            .expect("JSON");
    assert_eq!(items["values"], serde_json::json!([3, 1, 4]), "{items}");
    drop(array);
}
