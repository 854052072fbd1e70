//! Segment names: where a segment lives.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::OpenError;
use crate::sys;

/// The prefix of every memspace object in `/dev/shm`.
pub const SHM_PREFIX: &str = "memspace.";
/// The longest name a shared-memory segment may have (the file name in `/dev/shm` adds
/// [`SHM_PREFIX`]).
pub const MAX_NAME_LEN: usize = 200;
/// The prefix that makes a name a file path: `file:/var/lib/app/jobs.memspace`.
pub const FILE_PREFIX: &str = "file:";

/// A validated segment name.
///
/// * `jobs`: a POSIX shared-memory object, `/dev/shm/memspace.jobs`. 1 to 200 of
///   `A-Z a-z 0-9 . _ -`, not starting with `.`; names are flat, so they never reach outside
///   `/dev/shm`. Gone at reboot.
/// * `file:PATH`: a regular file at `PATH`, mapped the same way; its content survives a reboot
///   (the lock is reset by the first process that opens it after the reboot).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentName {
    text: String,
    location: Location,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Location {
    /// The name given to `shm_open` (`/memspace.NAME`).
    Shm(String),
    File(PathBuf),
}

impl SegmentName {
    /// Checks `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::InvalidName`] saying what is wrong.
    pub fn new(name: &str) -> Result<Self, OpenError> {
        let invalid = |reason| OpenError::InvalidName {
            name: name.to_owned(),
            reason,
        };
        if let Some(path) = name.strip_prefix(FILE_PREFIX) {
            if path.is_empty() {
                return Err(invalid("`file:` needs a path after it"));
            }
            if path.contains('\0') {
                return Err(invalid("it contains a NUL byte"));
            }
            return Ok(SegmentName {
                text: name.to_owned(),
                location: Location::File(PathBuf::from(path)),
            });
        }
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("it is longer than 200 bytes"));
        }
        if name.starts_with('.') {
            return Err(invalid("it starts with `.`"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(match bad {
                '/' => invalid("it contains `/`; names are flat (use `file:PATH` for a file)"),
                '\0' => invalid("it contains a NUL byte"),
                _ => invalid("only letters, digits, `.`, `_` and `-` are allowed"),
            });
        }
        Ok(SegmentName {
            text: name.to_owned(),
            location: Location::Shm(format!("/{SHM_PREFIX}{name}")),
        })
    }

    /// A fresh name for an anonymous segment: `anon.PID.SEQUENCE.NONCE`.
    pub(crate) fn anonymous() -> Self {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        SegmentName::new(&format!("anon.{}.{sequence}.{nonce:08x}", sys::pid()))
            .expect("anonymous names are valid")
    }

    /// The name as the user wrote it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The file path, for a `file:` segment.
    #[must_use]
    pub fn file_path(&self) -> Option<&Path> {
        match &self.location {
            Location::File(path) => Some(path),
            Location::Shm(_) => None,
        }
    }

    pub(crate) fn location(&self) -> &Location {
        &self.location
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(SegmentName::new("jobs-1.v2_x").is_ok());
        for bad in [
            "",
            ".hidden",
            "a/b",
            "..",
            "a\0b",
            "spa ce",
            "file:",
            &"x".repeat(201),
        ] {
            assert!(
                matches!(SegmentName::new(bad), Err(OpenError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn file_names_are_paths() {
        let name = SegmentName::new("file:/tmp/x.seg").unwrap();
        assert_eq!(name.file_path(), Some(Path::new("/tmp/x.seg")));
        assert_eq!(name.as_str(), "file:/tmp/x.seg");
    }

    #[test]
    fn anonymous_names_are_valid_and_distinct() {
        let a = SegmentName::anonymous();
        let b = SegmentName::anonymous();
        assert_ne!(a, b);
        assert!(SegmentName::new(a.as_str()).is_ok());
    }
}
