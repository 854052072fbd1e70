//! [`gc`]: removes the segments nobody can use any more, the rules of `memspace gc`.

use std::fmt;
use std::io;
use std::time::{Duration, SystemTime};

use crate::error::{Error, OpenError};
use crate::segment::{SHM_PREFIX, Segment};

use super::{info, observe, shm_segment_names};

/// How old a segment whose header was never finished must be before [`gc`] counts it as
/// abandoned (a younger one may still be being created).
pub const UNFINISHED_AGE: Duration = Duration::from_mins(1);

/// Why [`gc`] counts a segment as abandoned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Abandoned {
    /// An anonymous segment whose every recorded user is dead: its creator and everyone it
    /// handed the segment to were killed before they could remove it.
    UsersDead {
        /// The dead users' pids (empty if no user was ever recorded).
        pids: Vec<u32>,
    },
    /// Its creator died while creating it: the header was never finished, and the file is at
    /// least [`UNFINISHED_AGE`] old.
    Unfinished,
}

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Abandoned::UsersDead { pids } if pids.is_empty() => {
                f.write_str("anonymous, and no user is recorded")
            }
            Abandoned::UsersDead { pids } => {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                write!(f, "anonymous, and every user is dead ({})", pids.join(", "))
            }
            Abandoned::Unfinished => f.write_str("its creator died while creating it"),
        }
    }
}

/// A segment [`gc`] removed, would have removed (a dry run), or failed to remove.
#[derive(Debug)]
#[non_exhaustive]
pub struct Collected {
    /// The segment's name.
    pub name: String,
    /// Why it counts as abandoned.
    pub reason: Abandoned,
    /// The size of its file in `/dev/shm`, in bytes: the memory its removal frees (0 if the
    /// file could not be measured).
    pub size: u64,
    /// Whether it was removed (never in a dry run).
    pub removed: bool,
    /// Why it could not be removed (another process removed it first, its file changed).
    pub error: Option<Error>,
}

/// Removes the memspace segments in `/dev/shm` that nobody can use any more, and returns
/// them with why each counted as abandoned, in name order:
///
/// * an anonymous segment whose every recorded user is dead ([`Abandoned::UsersDead`]): its
///   creator and everyone it handed the segment to were killed before they could remove it;
/// * a segment whose creator died while creating it ([`Abandoned::Unfinished`]), once it is
///   [`UNFINISHED_AGE`] old.
///
/// Named segments are kept: like files, they persist until removed ([`Segment::remove`]). An
/// anonymous segment with a live user, with attachments its table of users could not record,
/// or with users in another PID namespace is kept too. Only the segments named in `names` are
/// considered, if it is given (names that are not shared-memory segments are ignored).
/// With `dry_run`, nothing is removed: the result is what would be.
///
/// Meant for a supervisor starting up after a crash, as `memspace gc` is for a user: a
/// segment is never removed while one of its recorded users runs.
///
/// # Errors
///
/// If `/dev/shm` cannot be read. A segment that cannot be removed is returned with its
/// [`Collected::error`], and the others are still removed.
///
/// # Examples
///
/// ```no_run
/// for collected in memspace::inspect::gc(None, false)? {
///     println!("removed {} ({} bytes): {}", collected.name, collected.size, collected.reason);
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn gc(names: Option<&[&str]>, dry_run: bool) -> io::Result<Vec<Collected>> {
    let mut candidates = shm_segment_names()?;
    if let Some(only) = names {
        candidates.retain(|name| only.contains(&name.as_str()));
    }
    let mut collected = Vec::new();
    for name in candidates {
        let Some((reason, size)) = abandoned(&name) else {
            continue;
        };
        let outcome = if dry_run {
            Ok(())
        } else {
            Segment::remove(&name)
        };
        collected.push(Collected {
            name,
            reason,
            size,
            removed: !dry_run && outcome.is_ok(),
            error: outcome.err(),
        });
    }
    Ok(collected)
}

/// Whether the segment `name` is abandoned, why, and the size of its file.
fn abandoned(name: &str) -> Option<(Abandoned, u64)> {
    match observe(name) {
        Ok(segment) => {
            let info = info(&segment);
            if !info.anonymous
                || info.live_users > 0
                || info.untracked_users > 0
                || info.foreign_users
            {
                return None;
            }
            let pids = info.users.iter().map(|user| user.pid).collect();
            Some((Abandoned::UsersDead { pids }, info.file_size))
        }
        Err(Error::Open(OpenError::NotInitialized { .. })) => {
            let metadata = std::fs::metadata(format!("/dev/shm/{SHM_PREFIX}{name}")).ok()?;
            let age = SystemTime::now()
                .duration_since(metadata.modified().ok()?)
                .ok()?;
            (age >= UNFINISHED_AGE).then_some((Abandoned::Unfinished, metadata.len()))
        }
        Err(_) => None,
    }
}
