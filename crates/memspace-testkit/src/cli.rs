//! Running the `memspace` command as a user would, and checking how it ended.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::names::Removal;

/// The `memspace` command of the same build profile as this test binary, if it was built.
///
/// `MEMSPACE_CLI=PATH` names another binary. Otherwise: nextest's `NEXTEST_BIN_EXE_memspace`
/// in the CLI's own tests, else the binary beside the test binaries' directory (a test binary
/// is `target/<profile>/deps/<test>-<hash>`; cargo puts the CLI at `target/<profile>/memspace`).
/// The CLI's tests always find it; `cargo nextest run --workspace` (what `scripts/test.sh`
/// runs) builds it before any test runs, `cargo nextest run -p memspace` does not, and may find
/// a binary from an earlier build or none.
pub fn find_binary() -> Option<PathBuf> {
    for variable in ["MEMSPACE_CLI", "NEXTEST_BIN_EXE_memspace"] {
        if let Some(path) = std::env::var_os(variable) {
            return Some(PathBuf::from(path));
        }
    }
    let exe = std::env::current_exe().ok()?;
    let cli = exe.parent()?.parent()?.join("memspace");
    cli.is_file().then_some(cli)
}

/// The `memspace` command (see [`find_binary`]).
///
/// # Panics
///
/// If it was not built.
pub fn binary() -> PathBuf {
    find_binary().expect("the memspace binary (cargo builds it for the CLI's tests)")
}

/// A command that runs `memspace args`.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command.args(args);
    command
}

/// Runs `memspace args` to its end.
///
/// # Panics
///
/// If it cannot be run.
pub fn memspace(args: &[&str]) -> Output {
    command(args).output().expect("run memspace")
}

/// What the command printed on standard output.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the command printed on standard error.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `memspace args`, expecting success; returns its standard output, trimmed.
///
/// # Panics
///
/// If it fails, with what it printed.
pub fn succeed(args: &[&str]) -> String {
    let output = memspace(args);
    assert!(
        output.status.success(),
        "memspace {args:?} failed ({}): {}{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output).trim().to_owned()
}

/// A fresh segment name (removed on drop) on which `memspace KIND create NAME` made a `kind`
/// (`list`, `map`, `queue`).
///
/// # Panics
///
/// If the command fails.
pub fn create(kind: &str, tag: &str) -> Removal {
    let name = Removal::fresh(tag);
    succeed(&[kind, "create", name.name()]);
    name
}

/// Runs `memspace args`, expecting it to fail; returns its standard error.
///
/// # Panics
///
/// If it succeeds.
pub fn fail(args: &[&str]) -> String {
    let output = memspace(args);
    assert!(
        !output.status.success(),
        "memspace {args:?} succeeded: {}",
        stdout(&output)
    );
    stderr(&output)
}

/// Runs `memspace args`, expecting it to exit with `code`.
fn ended_with(args: &[&str], code: i32) -> Output {
    let output = memspace(args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "memspace {args:?}: {}{}",
        stdout(&output),
        stderr(&output)
    );
    output
}

/// Runs `memspace args`, expecting it to exit with `code`; returns its standard error.
///
/// # Panics
///
/// If it exits otherwise.
pub fn fail_with(args: &[&str], code: i32) -> String {
    stderr(&ended_with(args, code))
}

/// Runs `memspace args`, expecting it to fail with exit status 1 and print no result on
/// standard output; returns its standard error.
///
/// # Panics
///
/// If it exits otherwise, or prints a result.
pub fn fail_without_result(args: &[&str]) -> String {
    let output = ended_with(args, 1);
    assert!(
        output.stdout.is_empty(),
        "memspace {args:?} printed a result"
    );
    stderr(&output)
}
