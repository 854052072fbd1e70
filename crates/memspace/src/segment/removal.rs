//! Removing a segment's name: only a memspace segment, reached without following a symbolic
//! link, and only if the name still names the object that was checked.

use std::os::fd::AsFd;

use super::header;
use super::name::{Location, not_a_segment};
use super::{Segment, SegmentName};
use crate::error::{Error, OpenError};
use crate::sys;

impl Segment {
    /// Removes the segment `name` from the system. Processes that have it mapped keep using it;
    /// it is freed when the last of them unmaps it.
    ///
    /// Only a memspace segment is removed: the object at the name is opened without following
    /// a symbolic link, must be a regular file whose header carries memspace's signature (or,
    /// in `/dev/shm`, the zeros of a creation that never finished), and is unlinked only if
    /// the name still names it then. Anything else stays where it is.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`] if there is no such segment, [`OpenError::InvalidName`],
    /// [`OpenError::PermissionDenied`], [`OpenError::NotAFile`] for a symbolic link or
    /// another kind of file, [`OpenError::Foreign`] for a file that is not a segment.
    #[doc(alias = "shm_unlink")]
    pub fn remove(name: &str) -> Result<(), Error> {
        remove_object(&SegmentName::new(name)?, Removal::Memspace)
    }

    /// Removes this segment's name (see [`Segment::remove`]), if it still names this segment.
    ///
    /// # Errors
    ///
    /// As [`Segment::remove`]; [`OpenError::NotFound`] also when the name was removed and
    /// now names another object.
    pub fn unlink(&self) -> Result<(), Error> {
        remove_object(&self.name, Removal::of(&self.identity))
    }
}

/// What must be true of the object at a name for [`remove_object`] to unlink it.
#[derive(Clone, Copy)]
pub(super) enum Removal {
    /// It is a memspace segment (a user asked to remove a name).
    Memspace,
    /// It is the object with this device and inode (a handle removes its own segment).
    Ours((u64, u64)),
}

impl Removal {
    /// The object `info` describes, and no other.
    pub(super) fn of(info: &sys::FileInfo) -> Self {
        Removal::Ours((info.device, info.inode))
    }
}

/// Unlinks `name` if the object there passes `removal`'s check. The object is opened without
/// following a symbolic link, through a descriptor of its directory, and unlinked only if the
/// directory entry still names the object that was checked: a name swapped for something else
/// in between is not removed.
pub(super) fn remove_object(name: &SegmentName, removal: Removal) -> Result<(), Error> {
    let (directory, entry) = match name.location() {
        Location::Shm(object) => sys::shm_entry(object),
        // `/d/seg/` and `/d/seg/.` name no file (an open fails), though `file_name` says `seg`.
        Location::File(path)
            if path.as_os_str().as_encoded_bytes().ends_with(b"/")
                || path.as_os_str().as_encoded_bytes().ends_with(b"/.") =>
        {
            return Err(OpenError::NotAFile {
                name: name.clone(),
                what: "a directory",
            }
            .into());
        }
        Location::File(path) => match (path.parent(), path.file_name()) {
            (Some(parent), Some(entry)) => (
                if parent.as_os_str().is_empty() {
                    ".".into()
                } else {
                    parent.to_owned()
                },
                entry.to_owned(),
            ),
            _ => {
                return Err(OpenError::NotAFile {
                    name: name.clone(),
                    what: "a directory",
                }
                .into());
            }
        },
        Location::Redis(_) => return Err(not_a_segment(name).into()),
    };
    let io_error = |op| move |e| Error::from_io(name, op, e);
    let directory = sys::open_directory(&directory).map_err(io_error("open"))?;
    let fd = sys::open_entry(directory.as_fd(), &entry).map_err(io_error("open"))?;
    let info = sys::file_info(fd.as_fd()).map_err(io_error("fstat"))?;
    if !info.regular {
        return Err(OpenError::NotAFile {
            name: name.clone(),
            what: "not a regular file",
        }
        .into());
    }
    let checked = (info.device, info.inode);
    match removal {
        Removal::Ours(ours) if ours != checked => {
            return Err(OpenError::NotFound { name: name.clone() }.into());
        }
        Removal::Ours(_) => {}
        Removal::Memspace => {
            let mut bytes = [0u8; header::HEADER_SIZE];
            let got = sys::read_at(fd.as_fd(), &mut bytes, 0).map_err(io_error("pread"))?;
            let signed = got >= 8 && bytes[..8] == header::MAGIC.to_le_bytes();
            // A creator that died before writing its header left zeros (or nothing) under a
            // name in memspace's part of /dev/shm; a file elsewhere could be anybody's.
            let unfinished =
                matches!(name.location(), Location::Shm(_)) && bytes[..got].iter().all(|&b| b == 0);
            if !signed && !unfinished {
                return Err(OpenError::Foreign { name: name.clone() }.into());
            }
        }
    }
    if sys::entry_identity(directory.as_fd(), &entry).map_err(io_error("stat"))? != checked {
        return Err(OpenError::NotFound { name: name.clone() }.into());
    }
    sys::unlink_entry(directory.as_fd(), &entry).map_err(io_error("unlink"))
}
