//! The baseline of a process start by `fork`: a bare `fork`, `_exit(0)` in the child at once,
//! `waitpid` in the parent. No process start can cost less; `process_start_fork` is memspace's
//! `Process` (a results pipe, the target run, its outcome encoded and read back) against it.
//!
//! # Safety
//!
//! The child of `fork` holds a copy of one thread only: a lock another thread held at the
//! fork (the allocator's, stdout's) stays locked forever in it. The child therefore calls
//! nothing but `_exit`, which is async-signal-safe and takes no lock, so it is sound whatever
//! the parent's other threads were doing.

#![allow(unsafe_code)]
#![allow(
    clippy::cast_precision_loss,
    reason = "a count becomes a floating-point rate"
)]

use std::io;
use std::time::Instant;

use crate::measure::per_second;

/// Forks and waits for `count` children that exit at once; starts per second.
pub(crate) fn rate(count: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..count {
        fork_and_wait()?;
    }
    Ok(per_second(f64::from(count), start.elapsed()))
}

/// Forks a child that exits at once, and waits for it.
#[doc(alias = "fork")]
#[doc(alias = "waitpid")]
fn fork_and_wait() -> io::Result<()> {
    // SAFETY: the child only calls `_exit` (module `# Safety`).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        // SAFETY: `_exit` has no preconditions; it ends the child without running the
        // parent's destructors, `atexit` handlers or stdio flushes, which are the parent's.
        0 => unsafe { libc::_exit(0) },
        child => reap(child),
    }
}

/// Waits for the child `pid` to end, and reaps it.
fn reap(pid: libc::pid_t) -> io::Result<()> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid, writable int on the stack.
        if unsafe { libc::waitpid(pid, &raw mut status, 0) } == pid {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
