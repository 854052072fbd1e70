//! `memspace gc`: removes what nobody can use any more.
//!
//! * an anonymous segment whose every recorded user is dead (its creator and everyone it
//!   handed the segment to were killed before they could remove it);
//! * a segment whose creator died while creating it (its header was never finished), once it
//!   is a minute old.
//!
//! Named segments are kept: like files, they persist until removed with `memspace rm`.

use std::time::{Duration, SystemTime};

use memspace::{OpenError, Segment};
use serde_json::json;

use super::ls::{Entry, scan};

/// How old an unfinished segment must be before it counts as abandoned.
const UNFINISHED_AGE: Duration = Duration::from_mins(1);

pub(crate) fn run(only: &[String], dry_run: bool, as_json: bool) -> anyhow::Result<()> {
    let mut done = Vec::new();
    for entry in scan(only)? {
        let (name, reason) = match entry {
            Entry::Readable(info) => {
                if !info.anonymous
                    || info.live_users > 0
                    || info.untracked_users > 0
                    || info.foreign_users
                {
                    continue;
                }
                let users: Vec<String> = info.users.iter().map(|u| u.pid.to_string()).collect();
                let reason = if users.is_empty() {
                    "anonymous, and no user is recorded".to_owned()
                } else {
                    format!("anonymous, and every user is dead ({})", users.join(", "))
                };
                (info.name, reason)
            }
            Entry::Unreadable { name, .. } => {
                if !abandoned_while_created(&name) {
                    continue;
                }
                (name, "its creator died while creating it".to_owned())
            }
        };
        let outcome = if dry_run {
            Ok(())
        } else {
            Segment::remove(&name)
        };
        if !as_json {
            match &outcome {
                Ok(()) if dry_run => println!("would remove {name}: {reason}"),
                Ok(()) => println!("removed {name}: {reason}"),
                Err(err) => eprintln!("memspace: could not remove {name}: {err}"),
            }
        }
        done.push(json!({
            "name": name,
            "reason": reason,
            "removed": !dry_run && outcome.is_ok(),
            "error": outcome.err().map(|e| e.to_string()),
        }));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else if done.is_empty() {
        println!("nothing to remove");
    }
    Ok(())
}

/// Whether `name` never got a finished header and is old enough that its creator is gone.
fn abandoned_while_created(name: &str) -> bool {
    if !matches!(
        memspace::inspect::observe(name),
        Err(memspace::Error::Open(OpenError::NotInitialized { .. }))
    ) {
        return false;
    }
    let path = format!("/dev/shm/{}{name}", memspace::segment::SHM_PREFIX);
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age >= UNFINISHED_AGE)
}
