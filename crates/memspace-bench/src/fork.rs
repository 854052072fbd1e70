//! The baselines of a process start by `fork`. [`rate`]: a bare `fork`, `_exit(0)` in the
//! child at once, `waitpid` in the parent; no process start can cost less. [`rate_with_results`]:
//! the least a join that returns a result needs, in bare system calls: a new file in memory (a
//! memfd) the child writes a 12-byte frame into before its `_exit`, and a parent that reaps the
//! child and then reads the file. `process_start_fork` is memspace's `Process` (the target run,
//! its outcome encoded, written and read back on that protocol) against each.
//!
//! # Safety
//!
//! The child of `fork` holds a copy of one thread only: a lock another thread held at the
//! fork (the allocator's, stdout's) stays locked forever in it. The child therefore calls
//! nothing but `write` and `_exit`, which are async-signal-safe and take no lock, so it is
//! sound whatever the parent's other threads were doing.

#![allow(unsafe_code)]
#![allow(
    clippy::cast_precision_loss,
    reason = "a count becomes a floating-point rate"
)]

use std::io;
use std::os::fd::AsRawFd;
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

/// Forks and waits for `count` children that each write a 12-byte frame into a file in memory
/// before they exit; starts per second.
pub(crate) fn rate_with_results(count: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..count {
        fork_and_read()?;
    }
    Ok(per_second(f64::from(count), start.elapsed()))
}

/// Makes a memfd, forks a child that writes a frame into it (a 4-byte length, then 8 bytes)
/// and exits, reaps the child, and reads the file.
fn fork_and_read() -> io::Result<()> {
    let file = rustix::fs::memfd_create(c"results", rustix::fs::MemfdFlags::CLOEXEC)?;
    let fd = file.as_raw_fd();
    // SAFETY: the child only calls `write` and `_exit` (module `# Safety`).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut frame = [0_u8; 12];
        frame[..4].copy_from_slice(&8_u32.to_le_bytes());
        frame[4..].copy_from_slice(&7_u64.to_le_bytes());
        // SAFETY: `frame` is 12 readable bytes; a short or failed write only makes the parent
        // read less.
        unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
        // SAFETY: `_exit` has no preconditions.
        unsafe { libc::_exit(0) }
    }
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    reap(pid)?;
    let mut frame = [0_u8; 64];
    let read = rustix::io::pread(&file, &mut frame, 0)?;
    if read == 12 {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "the child wrote {read} bytes, not 12"
        )))
    }
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
