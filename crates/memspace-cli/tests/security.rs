//! Segments are private to their user unless created with a wider mode. The test switches to
//! the `nobody` user with setpriv(1), which needs root (CI runs as root); elsewhere it says why
//! it did not run.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .map(|line| line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn memspace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memspace"))
        .args(args)
        .output()
        .expect("run memspace")
}

fn memspace_as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_memspace"))
        .args(args)
        .output()
        .expect("run setpriv")
}

struct Name(String);

impl Drop for Name {
    fn drop(&mut self) {
        let _ = memspace(&["rm", &self.0]);
    }
}

#[test]
fn another_user_cannot_open_a_segment_created_with_the_default_mode() {
    if !is_root() {
        eprintln!("skipped: switching to another user needs root");
        return;
    }
    let name = Name(format!("security.{}.private", std::process::id()));
    assert!(memspace(&["list", "create", &name.0]).status.success());
    let mode = std::fs::metadata(format!("/dev/shm/memspace.{}", name.0))
        .expect("segment file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let output = memspace_as_nobody(&["list", "len", &name.0]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains(&name.0), "{stderr}");
}

#[test]
fn a_wider_mode_lets_another_user_in() {
    if !is_root() {
        eprintln!("skipped: switching to another user needs root");
        return;
    }
    let name = Name(format!("security.{}.shared", std::process::id()));
    assert!(
        memspace(&["list", "create", &name.0, "--mode", "666"])
            .status
            .success()
    );
    assert!(memspace(&["list", "push", &name.0, "1"]).status.success());
    let output = memspace_as_nobody(&["list", "push", &name.0, "2"]);
    assert!(output.status.success(), "{output:?}");
    let output = memspace(&["list", "get", &name.0]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "[1,2]");
}
