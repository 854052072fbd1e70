//! Forking a process that runs other threads: the warning, once, and how to silence it. (The
//! tutorial's experiment itself is in `experiment.rs`, processes in `spawn.rs`.)

use std::time::Duration;

use memspace::spawn::{Process, StartMethod};
use memspace_testkit::roles;

fn nothing((): ()) {}

#[test]
fn forking_a_process_that_runs_other_threads_warns_once() {
    if roles::role().is_some() {
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
