//! The baselines of a process start by `fork`. [`rate`]: a bare `fork`, `_exit(0)` in the
//! child at once, `waitpid` in the parent; no process start can cost less. [`rate_with_results`]:
//! the least a join that returns a result needs, in bare system calls: a pipe the child writes
//! 8 bytes into before its `_exit`, and a parent that waits on the pipe and on a pidfd at once
//! (so that a child that dies without a word is told from one still writing), reads, and
//! reaps. `process_start_fork` is memspace's `Process` (the target run, its outcome encoded,
//! sent and read back on that protocol) against each.
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

/// Forks and waits for `count` children that each send 8 bytes on a pipe before they exit;
/// starts per second.
pub(crate) fn rate_with_results(count: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..count {
        fork_and_read()?;
    }
    Ok(per_second(f64::from(count), start.elapsed()))
}

/// Forks a child that writes 8 bytes into a pipe and exits; waits on the pipe and the child's
/// pidfd, reads, and reaps it.
fn fork_and_read() -> io::Result<()> {
    let mut ends = [0; 2];
    // SAFETY: `ends` is a valid, writable array of two ints.
    check(unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) })?;
    let [read_end, write_end] = ends;
    // SAFETY: the child only calls `write` and `_exit` (module `# Safety`).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let result = 7_u64.to_ne_bytes();
        // SAFETY: `result` is 8 readable bytes; a short or failed write only makes the
        // parent read less.
        unsafe { libc::write(write_end, result.as_ptr().cast(), result.len()) };
        // SAFETY: `_exit` has no preconditions.
        unsafe { libc::_exit(0) }
    }
    close(write_end);
    if pid == -1 {
        let err = io::Error::last_os_error();
        close(read_end);
        return Err(err);
    }
    let outcome = wait_and_read(pid, read_end);
    close(read_end);
    let reaped = reap(pid);
    outcome.and(reaped)
}

/// Waits until the pipe `read_end` has the child's bytes or the child `pid` ended, and reads.
fn wait_and_read(pid: libc::pid_t, read_end: libc::c_int) -> io::Result<()> {
    let child = rustix::process::Pid::from_raw(pid).ok_or_else(|| io::Error::other("pid 0"))?;
    let pidfd = rustix::process::pidfd_open(child, rustix::process::PidfdFlags::empty())?;
    let mut watched = [
        libc::pollfd {
            fd: read_end,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let polled = loop {
        // SAFETY: `watched` is a valid array of two `pollfd`s.
        let n = unsafe { libc::poll(watched.as_mut_ptr(), 2, -1) };
        if n != -1 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break check(n);
        }
    };
    let read = polled.and_then(|_| {
        let mut buf = [0_u8; 64];
        // SAFETY: `buf` is 64 writable bytes.
        let n = unsafe { libc::read(read_end, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    });
    drop(pidfd);
    read
}

/// `value`, or the error `errno` holds if it is -1.
fn check(value: libc::c_int) -> io::Result<libc::c_int> {
    if value == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// Closes `fd` (a close that fails has nothing left to undo).
fn close(fd: libc::c_int) {
    // SAFETY: `fd` is a descriptor this module opened and closes once.
    unsafe { libc::close(fd) };
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
