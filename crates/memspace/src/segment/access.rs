//! Whose segments an open accepts: the owner and the permission bits a segment may have, the
//! check made of them before a process writes into a segment, and their encoding in a name
//! that travels with a handle to a child process.
//!
//! A process that can write a segment can change anything in it, so an open accepts only a
//! segment of this process's effective user (or of a user the caller chose to trust) whose
//! mode grants nothing beyond the accepted bits (see [`SegmentOptions`]).
//!
//! [`SegmentOptions`]: crate::SegmentOptions

use super::SegmentName;
use crate::error::OpenError;
use crate::sys;
use std::cell::Cell;

/// Which segments an open accepts: those owned by this process's effective user or by
/// `owner`, whose mode grants nothing beyond `mode` (see [`SegmentOptions`]).
///
/// [`SegmentOptions`]: crate::SegmentOptions
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Access {
    /// Another user whose segments are trusted.
    pub(crate) owner: Option<u32>,
    /// The widest permission bits accepted.
    pub(crate) mode: u32,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            owner: None,
            mode: 0o600,
        }
    }
}

impl Access {
    /// The `OWNER:MODE` text a name carries (`OWNER` is `-` for none, `MODE` is octal).
    pub(super) fn encode(self) -> String {
        let Access { owner, mode } = self;
        let owner = owner.map_or_else(|| "-".to_owned(), |uid| uid.to_string());
        format!("{owner}:{mode:o}")
    }

    /// Parses what [`Access::encode`] writes.
    pub(super) fn decode(text: &str) -> Option<Self> {
        let (owner, mode) = text.split_once(':')?;
        let owner = match owner {
            "-" => None,
            uid => Some(uid.parse().ok()?),
        };
        let mode = u32::from_str_radix(mode, 8)
            .ok()
            .filter(|mode| *mode <= 0o777)?;
        Some(Access { owner, mode })
    }
}

/// Refuses a segment that another user owns or that other users may change, unless the name
/// carries the caller's trust in them (see [`SegmentOptions`](crate::SegmentOptions)).
pub(super) fn check_access(name: &SegmentName, info: &sys::FileInfo) -> Result<(), OpenError> {
    let access = name.access();
    let user = sys::effective_uid();
    if info.owner_uid != user && Some(info.owner_uid) != access.owner {
        return Err(OpenError::UntrustedOwner {
            name: name.clone(),
            owner: info.owner_uid,
            user,
        });
    }
    if info.mode & !access.mode != 0 {
        return Err(OpenError::UntrustedMode {
            name: name.clone(),
            mode: info.mode,
            accepted: access.mode,
        });
    }
    Ok(())
}

thread_local! {
    static FROM_OWN_PROCESS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `decode` with handles allowed to bring the trust they were opened with (see the
/// docs of `handle`): for the arguments and results a worker and its parent send each other.
pub(crate) fn decoding_from_own_process<T>(decode: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            FROM_OWN_PROCESS.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(FROM_OWN_PROCESS.with(|flag| flag.replace(true)));
    decode()
}

/// Whether a name read now may bring trust (inside [`decoding_from_own_process`]).
pub(crate) fn trust_may_travel() -> bool {
    FROM_OWN_PROCESS.with(Cell::get)
}
