//! The objects that back segments: POSIX shared-memory objects under `/dev/shm` and regular
//! files (`file:` names). Opening, creating, sizing, reading, locking and removing them.
//!
//! Every open of a segment's object refuses a symbolic link at the name and cannot block on a
//! FIFO or device planted there (see `segment_open_flags`); removal goes through a descriptor
//! of the directory, so that the entry checked is the entry removed.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{FallocateFlags, Mode};

/// Where POSIX shared-memory objects live on Linux.
const SHM_DIR: &str = "/dev/shm";

/// `ENOSPC`: no space left on the device.
pub(crate) const ENOSPC: i32 = libc::ENOSPC;
/// `ELOOP`: an open with `O_NOFOLLOW` met a symbolic link.
pub(crate) const ELOOP: i32 = libc::ELOOP;

/// The path of the shared-memory object `name` (`/memspace.NAME`).
fn shm_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(SHM_DIR).join(name.trim_start_matches('/'))
}

/// The flags every open of a segment's object adds, as glibc's `shm_open` does: a symbolic
/// link planted at the name is refused (`ELOOP`) rather than followed, and a FIFO or device
/// planted there cannot make the open block.
fn segment_open_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY
}

/// Creates a new POSIX shared-memory object; fails with `AlreadyExists` if the name is taken.
#[doc(alias = "shm_open")]
pub(crate) fn shm_create(name: &str, mode: u32) -> io::Result<OwnedFd> {
    file_create(&shm_path(name), mode)
}

/// Sets the permission bits of `fd` exactly (the mode given at creation is masked by the
/// umask).
#[doc(alias = "fchmod")]
pub(crate) fn set_mode(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// Opens an existing POSIX shared-memory object for reading and writing.
pub(crate) fn shm_open(name: &str) -> io::Result<OwnedFd> {
    file_open(&shm_path(name))
}

/// Creates a new regular file for a file-backed segment; fails if it exists (`O_EXCL` also
/// refuses a symbolic link at `path`).
pub(crate) fn file_create(path: &std::path::Path, mode: u32) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | segment_open_flags();
    Ok(rustix::fs::open(path, flags, Mode::from_raw_mode(mode))?)
}

/// Opens an existing regular file for reading and writing, without following a symbolic link
/// at `path` itself.
pub(crate) fn file_open(path: &std::path::Path) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    Ok(rustix::fs::open(
        path,
        OFlags::RDWR | segment_open_flags(),
        Mode::empty(),
    )?)
}

/// The directory of the shared-memory object `name`, and the object's entry in it (for
/// [`open_entry`] and [`unlink_entry`]).
pub(crate) fn shm_entry(name: &str) -> (std::path::PathBuf, std::ffi::OsString) {
    (
        SHM_DIR.into(),
        name.trim_start_matches('/').to_owned().into(),
    )
}

/// Opens directory `path`, to act on one entry in it without resolving the path again.
pub(crate) fn open_directory(path: &std::path::Path) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens `entry` of directory `dir` for reading, never following a symbolic link.
pub(crate) fn open_entry(dir: BorrowedFd<'_>, entry: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    Ok(rustix::fs::openat(
        dir,
        entry,
        OFlags::RDONLY | segment_open_flags(),
        Mode::empty(),
    )?)
}

/// The device and inode `entry` of `dir` names now (a symbolic link is not followed).
pub(crate) fn entry_identity(
    dir: BorrowedFd<'_>,
    entry: &std::ffi::OsStr,
) -> io::Result<(u64, u64)> {
    let st = rustix::fs::statat(dir, entry, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    Ok((st.st_dev, st.st_ino))
}

/// Removes `entry` from `dir`.
#[doc(alias = "unlinkat")]
pub(crate) fn unlink_entry(dir: BorrowedFd<'_>, entry: &std::ffi::OsStr) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(
        dir,
        entry,
        rustix::fs::AtFlags::empty(),
    )?)
}

/// The effective user id of this process: the user whose segments it trusts by default.
#[doc(alias = "geteuid")]
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// What `fstat` says about a segment's backing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub(crate) size: u64,
    pub(crate) device: u64,
    pub(crate) inode: u64,
    pub(crate) owner_uid: u32,
    pub(crate) mode: u32,
    /// Whether it is a regular file (a shared-memory object is one too).
    pub(crate) regular: bool,
}

#[doc(alias = "fstat")]
pub(crate) fn file_info(fd: BorrowedFd<'_>) -> io::Result<FileInfo> {
    let st = rustix::fs::fstat(fd)?;
    Ok(FileInfo {
        size: u64::try_from(st.st_size).unwrap_or(0),
        device: st.st_dev,
        inode: st.st_ino,
        owner_uid: st.st_uid,
        mode: st.st_mode & 0o7777,
        regular: rustix::fs::FileType::from_raw_mode(st.st_mode)
            == rustix::fs::FileType::RegularFile,
    })
}

/// Allocates backing store for `[from, to)`, extending the file to `to` bytes.
///
/// On tmpfs this really allocates pages, so a full `/dev/shm` fails here with `ENOSPC` instead
/// of raising `SIGBUS` later, when a page of a sparse file is first touched.
#[doc(alias = "fallocate")]
pub(crate) fn allocate(fd: BorrowedFd<'_>, from: u64, to: u64) -> io::Result<()> {
    debug_assert!(from < to);
    loop {
        match rustix::fs::fallocate(fd, FallocateFlags::empty(), from, to - from) {
            Err(rustix::io::Errno::INTR) => {}
            // A file system without fallocate: write the zeros ourselves, so that blocks are
            // allocated now and a full disk is ENOSPC here, not SIGBUS later.
            Err(rustix::io::Errno::OPNOTSUPP) => return write_zeros(fd, from, to),
            other => return Ok(other?),
        }
    }
}

fn write_zeros(fd: BorrowedFd<'_>, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let len = usize::try_from(to - at)
            .unwrap_or(usize::MAX)
            .min(zeros.len());
        match rustix::io::pwrite(fd, &zeros[..len], at) {
            Ok(n) => at += n as u64,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes at `offset` without moving the file position; returns how many
/// were read (fewer at the end of the file).
#[doc(alias = "pread")]
pub(crate) fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Takes an exclusive `flock` on `fd`, blocking; released when `fd` is closed or by
/// [`unlock_file`].
pub(crate) fn lock_file(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        match rustix::fs::flock(fd, rustix::fs::FlockOperation::LockExclusive) {
            Err(rustix::io::Errno::INTR) => {}
            other => return Ok(other?),
        }
    }
}

/// Releases a `flock` taken with [`lock_file`].
pub(crate) fn unlock_file(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::flock(fd, rustix::fs::FlockOperation::Unlock)?)
}
