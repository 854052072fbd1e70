//! Child processes: `fork`, leaving a child without its parent's destructors, the files and
//! descriptors handed to a child across `exec`, and waiting for children and pipes.
//!
//! # Safety
//!
//! `fork` is only called by `spawn`, which documents for users that the child runs with a
//! single thread and must not rely on locks held by other threads at the fork. Descriptors a
//! child adopts or closes are owned by nothing else in it (the spawn protocol).

#![allow(unsafe_code)]

use rustix::event::{PollFd, PollFlags};
use std::ffi::c_int;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Instant;

/// Which side of a fork the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    Child,
    Parent(u32),
}

/// Forks the calling process.
///
/// # Safety
///
/// In the child only the calling thread exists. Locks held by other threads at the fork stay
/// held forever in the child, so the caller must run nothing in the child that could wait for
/// one (the `spawn` module documents this as the contract of the `fork` start method), and
/// must leave the child with [`exit_now`].
#[inline]
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    flush_std_streams();
    // SAFETY: fork has no memory-safety preconditions of its own; the caller upholds the
    // single-thread contract of the child (see `# Safety`).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        child => Ok(Forked::Parent(child.unsigned_abs())),
    }
}

/// Flushes stdout, then ends the process at once with `code`, running no destructors and no
/// `atexit` handlers: after `fork`, those belong to the parent.
pub(crate) fn exit_now(code: i32) -> ! {
    flush_std_streams();
    // SAFETY: _exit is async-signal-safe and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Flushes stdout's buffer, so that neither side of a fork writes what the other already
/// wrote. (Stderr has no buffer.)
fn flush_std_streams() {
    // Nothing useful can be done if the terminal went away; the exit or fork goes on.
    let _ = io::stdout().flush();
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

/// Waits for the child `pid` to end and reaps it.
#[doc(alias = "waitpid")]
pub(crate) fn wait_child(pid: u32) -> io::Result<ExitStatus> {
    wait_child_inner(pid, 0).map(|status| status.expect("a blocking waitpid returns a status"))
}

/// Reaps the child `pid` if it has ended, without waiting.
pub(crate) fn try_wait_child(pid: u32) -> io::Result<Option<ExitStatus>> {
    wait_child_inner(pid, libc::WNOHANG)
}

fn wait_child_inner(pid: u32, flags: c_int) -> io::Result<Option<ExitStatus>> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid, writable int on the stack.
        let rc = unsafe { libc::waitpid(pid, &raw mut status, flags) };
        if rc == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if rc == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some(ExitStatus::Exited(libc::WEXITSTATUS(status))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some(ExitStatus::Signaled(libc::WTERMSIG(status))));
        }
    }
}

/// Writes to a descriptor with the system calls themselves (`std`'s `File` calls libc's
/// `write` and `writev`, whose code a forked child has to fault in first), and leaves it open
/// when dropped.
#[derive(Debug)]
pub(crate) struct FdWriter<'fd>(pub(crate) BorrowedFd<'fd>);

impl Write for FdWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        Ok(rustix::io::write(self.0, bytes)?)
    }

    fn write_vectored(&mut self, parts: &[io::IoSlice<'_>]) -> io::Result<usize> {
        Ok(rustix::io::writev(self.0, parts)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A new, empty file in memory (a memfd), closed on `exec`, for a child's result: unlike a pipe
/// it holds a result of any size without blocking its writer, and its reader need not read
/// until the writer ended.
///
/// Where `memfd_create` is missing (before Linux 3.17) or refused (a seccomp filter), it is an
/// unnamed temporary file (`O_TMPFILE`, mode 600) in `/dev/shm`, else in the temporary
/// directory: a file no other process can open by name, which serves the same way.
#[doc(alias = "memfd_create")]
pub(crate) fn result_file() -> io::Result<OwnedFd> {
    let refused =
        match rustix::fs::memfd_create(c"memspace-result", rustix::fs::MemfdFlags::CLOEXEC) {
            Ok(file) => return Ok(file),
            Err(e @ (rustix::io::Errno::NOSYS | rustix::io::Errno::PERM)) => e,
            Err(e) => return Err(e.into()),
        };
    unnamed_file().ok_or_else(|| {
        io::Error::other(format!(
            "no file for a child's result: memfd_create was refused ({refused}), and neither \
             /dev/shm nor the temporary directory takes an unnamed file"
        ))
    })
}

/// An unnamed temporary file, readable and writable by this user alone, closed on `exec`, in
/// `/dev/shm` or else the temporary directory: [`result_file`] where there is no memfd.
fn unnamed_file() -> Option<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    [std::path::PathBuf::from("/dev/shm"), std::env::temp_dir()]
        .iter()
        .find_map(|dir| rustix::fs::open(dir, flags, Mode::RUSR | Mode::WUSR).ok())
}

/// Empties the file `fd` (a [`result_file`] once read): its memory is freed even while another
/// process keeps it open (a grandchild that inherited it).
#[doc(alias = "ftruncate")]
pub(crate) fn empty_file(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        match rustix::fs::ftruncate(fd, 0) {
            Err(rustix::io::Errno::INTR) => {}
            other => return Ok(other?),
        }
    }
}

/// Reads the start of the file `fd` into `into` with one `pread`; returns how many bytes came.
/// Fewer than `into` holds means the file ends there, once nothing writes it any more (a
/// [`result_file`] whose child ended).
pub(crate) fn read_file_start(fd: BorrowedFd<'_>, into: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::pread(fd, &mut *into, 0) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A pipe whose two ends are closed on `exec`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Makes `cmd` keep `fds` open across its `exec` (they are `CLOEXEC` in the parent so that no
/// other child inherits them).
pub(crate) fn keep_fds_across_exec(cmd: &mut Command, fds: [RawFd; 2]) {
    let clear = move || -> io::Result<()> {
        for fd in fds {
            // SAFETY: fcntl is async-signal-safe; `fd` was open in the parent at fork time and
            // so is open in this child.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if flags == -1 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above.
            let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) };
            if rc == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the closure only calls fcntl, which is async-signal-safe, and allocates nothing,
    // as `pre_exec` requires of code that runs between fork and exec.
    unsafe { cmd.pre_exec(clear) };
}

/// Takes ownership of a file descriptor this process inherited from its memspace parent.
///
/// Checks that `fd` is open. The spawn protocol (`spawn::child`) calls it once per descriptor
/// named in the environment, at the start of `main`, before anything else could own it.
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only inspects the descriptor table.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::other(format!(
            "file descriptor {fd} named by the parent is not open"
        )));
    }
    // SAFETY: `fd` is open (checked above) and, per the spawn protocol, owned by nothing else in
    // this process: the parent created it for this child alone and `init()` adopts it once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
    Ok(owned)
}

/// The number of a descriptor, to pass to a child through its environment.
pub(crate) fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}

/// Waits until at least one of `fds` is readable or closed by its writer, or until `deadline`
/// passes (never, for `None`); returns which are (all `false` when the deadline passed). A
/// deadline already past polls once without waiting.
#[doc(alias = "poll")]
pub(crate) fn wait_readable(
    fds: &[BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> io::Result<Vec<bool>> {
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    poll_until(&mut polls, deadline)?;
    Ok(polls.iter().map(readable).collect())
}

/// [`wait_readable`] for one descriptor and perhaps a second, allocating nothing (a process
/// joining a child it forked writes as few pages as it can: each is copied first).
pub(crate) fn wait_readable_pair(
    first: BorrowedFd<'_>,
    second: Option<BorrowedFd<'_>>,
    deadline: Option<Instant>,
) -> io::Result<(bool, bool)> {
    let mut polls = [
        PollFd::new(&first, PollFlags::IN),
        PollFd::new(second.as_ref().unwrap_or(&first), PollFlags::IN),
    ];
    let count = if second.is_some() { 2 } else { 1 };
    poll_until(&mut polls[..count], deadline)?;
    Ok((readable(&polls[0]), count == 2 && readable(&polls[1])))
}

/// Polls `polls` until one is ready or `deadline` passes, through interruptions.
fn poll_until(polls: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<()> {
    use rustix::event::Timespec;
    loop {
        // Recomputed after every interruption, so that a signal does not extend the wait.
        let timeout = deadline.map(|deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            // A wait too long for a timespec (centuries) is the same as none.
            Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        match rustix::event::poll(polls, timeout.as_ref()) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a polled descriptor is readable or closed by its writer.
fn readable(poll: &PollFd<'_>) -> bool {
    poll.revents()
        .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
}

/// Whether `err` says that a descriptor was not open (`EBADF`).
pub(crate) fn is_not_open(err: &io::Error) -> bool {
    err.raw_os_error() == Some(rustix::io::Errno::BADF.raw_os_error())
}

/// Whether the child `pid` has ended, without reaping it: it stays a zombie until
/// [`wait_child`] collects its status.
#[doc(alias = "waitid")]
pub(crate) fn child_has_ended(pid: u32) -> io::Result<bool> {
    use rustix::process::{WaitId, WaitIdOptions};
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| io::Error::other("pid out of range"))?;
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    loop {
        match rustix::process::waitid(WaitId::Pid(pid), options) {
            Ok(status) => return Ok(status.is_some()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A descriptor that becomes readable when the process `pid` ends (a child before it is
/// reaped; for any process, once all its threads ended), or `None` where the kernel has no
/// `pidfd_open` (before Linux 5.3) or refuses it (a sandbox), no process has that pid (or it
/// names a thread, not a process), or no descriptor is left.
#[doc(alias = "pidfd_open")]
pub(crate) fn end_notifier(pid: u32) -> Option<OwnedFd> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Whether the process an [`end_notifier`] descriptor watches has ended: one poll that does
/// not wait. `EBADF` ([`is_not_open`]) if `notifier` is no open descriptor any more.
#[doc(alias = "poll")]
pub(crate) fn has_ended(notifier: BorrowedFd<'_>) -> io::Result<bool> {
    let mut polls = [PollFd::new(&notifier, PollFlags::IN)];
    // A deadline already past: one poll that does not wait.
    poll_until(&mut polls, Some(Instant::now()))?;
    if polls[0].revents().contains(PollFlags::NVAL) {
        return Err(rustix::io::Errno::BADF.into());
    }
    Ok(readable(&polls[0]))
}

/// Closes descriptor `fd` in a forked child.
///
/// # Safety
///
/// `fd` must be a descriptor whose owning Rust value (a `File`, an `OwnedFd`) will never be
/// used or dropped in this process again: a child after `fork`, which only runs its task and
/// leaves with [`exit_now`].
pub(crate) unsafe fn close_inherited(fd: RawFd) {
    // SAFETY: the caller guarantees nothing will use or close `fd` again (see `# Safety`);
    // close has no other preconditions, and its error (EBADF) is harmless here.
    unsafe { libc::close(fd) };
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;

    use super::{FdWriter, empty_file, read_file_start, result_file, unnamed_file};

    /// Both kinds of result file take a frame, give it back from its start, and empty.
    #[test]
    fn a_result_file_and_its_fallback_give_back_what_was_written_and_empty() {
        let fallback =
            unnamed_file().expect("an unnamed file in /dev/shm or the temporary directory");
        for file in [result_file().expect("a result file"), fallback] {
            FdWriter(file.as_fd()).write_all(b"framed").expect("write");
            let mut start = [0u8; 16];
            assert_eq!(read_file_start(file.as_fd(), &mut start).expect("read"), 6);
            assert_eq!(&start[..6], b"framed");
            empty_file(file.as_fd()).expect("empty");
            assert_eq!(read_file_start(file.as_fd(), &mut start).expect("read"), 0);
        }
    }
}
