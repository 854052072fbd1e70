//! Forking a process that runs other threads: the warning, once, and how to silence it. (The
//! tutorial's experiment itself is in `experiment.rs`, processes in `spawn.rs`.)

use std::time::Duration;

use memspace::spawn::{Process, StartMethod};

fn nothing((): ()) {}

#[test]
fn forking_a_process_that_runs_other_threads_warns_once() {
    if std::env::var("MEMSPACE_TUTORIAL_ROLE").is_ok() {
        // Child role: make sure another thread runs, then fork twice.
        let _other = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(5)));
        for _ in 0..2 {
            let mut p = Process::new(nothing, ()).start_method(StartMethod::Fork);
            p.start().expect("start");
            p.join().expect("join");
        }
        return;
    }
    let run = |silence: bool| {
        let mut command = std::process::Command::new(std::env::current_exe().expect("test binary"));
        command
            .args([
                "--exact",
                "forking_a_process_that_runs_other_threads_warns_once",
                "--nocapture",
            ])
            .env("MEMSPACE_TUTORIAL_ROLE", "child");
        if silence {
            command.env("MEMSPACE_FORK_WARNING", "0");
        }
        let output = command.output().expect("run child");
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
