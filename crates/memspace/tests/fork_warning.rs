//! Forking a process that runs other threads: the warning, once, and how to silence it; on
//! stderr, or through the program's logger when it has one. (The tutorial's experiment itself
//! is in `experiment.rs`, processes in `spawn.rs`.)

use std::time::Duration;

use memspace::spawn::{Process, StartMethod};
use memspace_testkit::roles;

fn nothing((): ()) {}

/// Forks twice while another thread runs.
fn fork_twice_beside_a_thread() {
    let _other = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(5)));
    for _ in 0..2 {
        let mut p = Process::new(nothing, ()).start_method(StartMethod::Fork);
        p.start().expect("start");
        p.join().expect("join");
    }
}

/// A program's logger: prints each record on stdout, for the parent to read.
struct Printer;

impl log::Log for Printer {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        println!(
            "logged {} {}: {}",
            record.level(),
            record.target(),
            record.args()
        );
    }

    fn flush(&self) {}
}

#[test]
fn forking_a_process_that_runs_other_threads_warns_once() {
    if roles::role().is_some() {
        fork_twice_beside_a_thread();
        return;
    }
    let run = |silence: bool| {
        let env: &[(&str, &str)] = if silence {
            &[("MEMSPACE_FORK_WARNING", "0")]
        } else {
            &[]
        };
        let output = roles::run_role_to_end("child", env);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run(false);
    assert_eq!(
        stderr.matches("memspace: warning: process").count(),
        1,
        "expected one warning: {stderr}"
    );
    assert!(stderr.contains("StartMethod::Spawn"), "{stderr}");
    assert!(!run(true).contains("memspace: warning"));
}

#[test]
fn a_program_with_a_logger_gets_the_warning_there_not_on_stderr() {
    if roles::role().is_some() {
        log::set_logger(&Printer).expect("the only logger");
        log::set_max_level(log::LevelFilter::Info);
        fork_twice_beside_a_thread();
        return;
    }
    let output = roles::run_role_to_end("child", &[]);
    assert!(output.status.success(), "{output:?}");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    // The test harness prints its own words around the record, on the same line.
    let logged: Vec<&str> = stdout
        .match_indices("logged ")
        .map(|(at, _)| stdout[at..].lines().next().unwrap_or_default())
        .collect();
    assert_eq!(logged.len(), 1, "one warning, logged: {stdout}");
    assert!(
        logged[0].starts_with("logged WARN memspace: process ")
            && logged[0].contains("StartMethod::Spawn"),
        "{}",
        logged[0]
    );
    assert!(!stderr.contains("forks while"), "also on stderr: {stderr}");
}
