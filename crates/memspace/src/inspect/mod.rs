//! Read-only, validating views of objects: what `memspace ls` and `memspace inspect` print
//! ([`info`] of a segment, [`describe`] of a segment or a Redis object, `list_objects` of a
//! Redis server with the `redis` feature), and [`verify`], which checks a segment's invariants (the crash tests run it
//! after every kill).
//!
//! [`gc`] is the one function here that changes anything: it removes the segments nobody can use
//! any more (what `memspace gc` does), for a supervisor to clean up at start.
//!
//! Inspecting never changes a segment: [`observe`] maps it without joining its table of users
//! (so an observer never keeps a segment alive, nor removes one when it is done) and without
//! resetting a lock left over from an earlier boot.

mod gc;
#[cfg(feature = "redis")]
mod remote;

use std::io;

use serde::Serialize;

use crate::collections;
use crate::error::Result;
#[cfg(doc)]
use crate::error::{Error, OpenError};
use crate::segment::users_alive;
use crate::segment::{Kind, LockSlot, SHM_PREFIX, Segment, SegmentName, SegmentOptions, User};

pub use self::gc::{Abandoned, Collected, UNFINISHED_AGE, gc};
#[cfg(feature = "redis")]
pub use self::remote::{Listed, Problem, list_objects};
pub use crate::segment::Report;

/// Checks `segment`: its sizes against its file, its lock, and its collection's structure
/// (for a list: index blocks, every published item's bounds, order, checksum and encoding).
/// Safe to run while other processes use the segment.
#[must_use]
pub fn verify(segment: &Segment) -> Report {
    let mut report = Report::default();
    let size = segment.size();
    if size > segment.max_size() {
        report.problem(format!(
            "size {size} exceeds the maximum {}",
            segment.max_size()
        ));
    }
    match segment.file_size() {
        Ok(file_size) if file_size < size => report.problem(format!(
            "the file has {file_size} bytes but {size} are committed (it was truncated)"
        )),
        Ok(_) => {}
        Err(err) => report.problem(format!("fstat failed: {err}")),
    }
    if let Some(owner) = segment.lock_owner()
        && !crate::segment::pid_alive(owner)
    {
        report.note(format!(
            "the lock is recorded as held by process {owner}, which is dead; the next locker is \
             told and recovers"
        ));
    }
    if segment.lock_poisoned() {
        report.note("the lock is poisoned: a holder panicked while holding it".to_owned());
    }
    // The kind's own structural checks.
    match segment.kind() {
        Kind::List => collections::verify_list(segment, &mut report),
        Kind::Vec => collections::verify_vec(segment, &mut report),
        Kind::Array => collections::verify_array(segment, &mut report),
        Kind::SharedValue => collections::verify_shared_value(segment, &mut report),
        Kind::Map => collections::verify_map(segment, &mut report),
        Kind::PodMap => collections::verify_pod_map(segment, &mut report),
        Kind::PodQueue => collections::verify_pod_queue(segment, &mut report),
        Kind::Queue => collections::verify_queue(segment, &mut report),
        _ => {}
    }
    report
}

/// Opens the segment `name` as an observer: validated like any open, but without joining its
/// table of users.
///
/// # Errors
///
/// As [`Segment::open_any`].
pub fn observe(name: &str) -> Result<Segment> {
    Segment::open_observer(&SegmentName::new(name)?)
}

/// The names of the memspace segments in `/dev/shm` (without the `memspace.` prefix), sorted.
///
/// # Errors
///
/// If `/dev/shm` cannot be read.
pub fn shm_segment_names() -> io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_prefix(SHM_PREFIX).map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The creator of a segment.
#[derive(Debug, Clone, Serialize)]
pub struct Creator {
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks after boot.
    pub start_time: u64,
    /// Whether that process still runs.
    pub alive: bool,
}

/// The state of a segment's lock (or of a queue's receive lock).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LockInfo {
    /// The pid recorded as holding it.
    pub owner: Option<u32>,
    /// Whether that process still runs.
    pub owner_alive: Option<bool>,
    /// Whether a holder panicked and nobody cleared the flag.
    pub poisoned: bool,
    /// How many times a holder died and the lock was taken over.
    pub owner_deaths: u32,
}

impl LockInfo {
    /// The lock in `slot`, as it is now (it can change at any moment).
    fn of(slot: &LockSlot) -> Self {
        let owner = slot.owner_pid();
        LockInfo {
            owner,
            owner_alive: owner.map(crate::segment::pid_alive),
            poisoned: slot.is_poisoned(),
            owner_deaths: slot.owner_deaths(),
        }
    }
}

/// Everything `memspace inspect` shows about a segment, except its items.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The segment's name.
    pub name: String,
    /// What it holds (`list`, `lock`, `mutex`).
    pub kind: &'static str,
    /// Removed by its last user (true) or persistent until removed (false).
    pub anonymous: bool,
    /// The committed size in bytes.
    pub size: u64,
    /// The largest size it may grow to.
    pub max_size: u64,
    /// How many times it grew.
    pub generation: u64,
    /// The size of its backing file.
    pub file_size: u64,
    /// Its inode (equal inodes on one device are the same memory).
    pub inode: u64,
    /// The Rust type the creator recorded for its values.
    pub type_name: String,
    /// Who created it.
    pub creator: Creator,
    /// When, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The last process that wrote to it (0: none yet).
    pub last_writer_pid: u32,
    /// The processes recorded as attached.
    pub users: Vec<User>,
    /// How many of them still run.
    pub live_users: usize,
    /// Attachments the table could not record.
    pub untracked_users: u32,
    /// Whether a process of another pid or time namespace opened it: its users cannot all be checked
    /// from here (see [`Segment::has_foreign_users`]).
    pub foreign_users: bool,
    /// Its lock.
    pub lock: LockInfo,
    /// For a queue, the lock its receivers take (the segment's lock is its senders'); `None`
    /// for other kinds, which take the segment's lock alone.
    pub receive_lock: Option<LockInfo>,
    /// For a list, vector, map or queue, the number of items.
    pub items: Option<u64>,
    /// What the kind keeps besides (free permits, waiting parties, readers, ...).
    pub state: std::collections::BTreeMap<&'static str, String>,
}

/// Describes `segment`.
#[must_use]
pub fn info(segment: &Segment) -> SegmentInfo {
    let users = segment.users();
    SegmentInfo {
        name: segment.name().to_string(),
        kind: segment.kind().as_str(),
        anonymous: segment.is_anonymous(),
        size: segment.size(),
        max_size: segment.max_size(),
        generation: segment.generation(),
        file_size: segment.file_size().unwrap_or(0),
        inode: segment.inode(),
        type_name: segment.type_name().to_owned(),
        creator: Creator {
            pid: segment.creator_pid(),
            start_time: segment.creator_start_time(),
            alive: crate::segment::process_alive(
                segment.creator_pid(),
                segment.creator_start_time(),
            ),
        },
        created_unix_ms: segment.created_unix_ms(),
        last_writer_pid: segment.last_writer_pid(),
        live_users: users_alive(&users),
        users,
        untracked_users: segment.untracked_users(),
        foreign_users: segment.has_foreign_users(),
        lock: LockInfo::of(segment.lock_slot()),
        receive_lock: (segment.kind() == Kind::Queue)
            .then(|| LockInfo::of(segment.second_lock_slot())),
        items: match segment.kind() {
            Kind::List => Some(collections::list_len(segment)),
            Kind::Vec => Some(collections::vec_len(segment)),
            Kind::Array => Some(collections::array_len(segment)),
            Kind::Map => Some(collections::map_len(segment)),
            Kind::PodMap => Some(collections::pod_map_len(segment)),
            Kind::PodQueue => Some(collections::pod_queue_len(segment)),
            Kind::Queue => Some(collections::queue_len(segment)),
            _ => None,
        },
        state: crate::sync::describe(segment).into_iter().collect(),
    }
}

/// What [`describe`] tells of one object.
#[derive(Debug)]
#[non_exhaustive]
pub enum Description {
    /// A segment of this machine's shared memory: its header, lock and users ([`info`]),
    /// what [`verify`] found, and the segment itself, observed (mapped without joining its
    /// users; a handle made of it with `from_segment` reads its items).
    Segment {
        /// Its header, lock, users and state.
        info: Box<SegmentInfo>,
        /// What `verify` found.
        report: Report,
        /// The observed segment.
        segment: Box<Segment>,
    },
    /// An object on a Redis server: its kind and a few fields (`backend`, `server`, `type`,
    /// `keys`, and the kind's state), the last `damaged` if its keys cannot be read as the
    /// kind says.
    Redis {
        /// What it holds.
        kind: Kind,
        /// What is known of it, in the order `memspace inspect` prints it.
        fields: Vec<(&'static str, String)>,
    },
}

/// Describes the object `name`, a segment or (`redis://HOST:PORT/NAME`) a Redis object, as
/// `memspace inspect` shows it. A segment is observed as `options` allow (see
/// [`SegmentOptions::observe`]).
///
/// # Errors
///
/// [`OpenError::NotFound`], [`OpenError::InvalidName`], what an observer's open refuses
/// ([`SegmentOptions::observe`]); for a Redis object, [`Error::Corrupt`] if its meta hash
/// is damaged and [`Error::RedisUnreachable`].
pub fn describe(name: &str, options: &SegmentOptions) -> Result<Description> {
    let name = SegmentName::new(name)?;
    // Without the `redis` feature the observer's open refuses a Redis name.
    #[cfg(feature = "redis")]
    if name.is_redis() {
        let (kind, fields) = remote::describe(&name)?;
        return Ok(Description::Redis { kind, fields });
    }
    let segment = options.observe(name.as_str())?;
    Ok(Description::Segment {
        info: Box::new(info(&segment)),
        report: verify(&segment),
        segment: Box::new(segment),
    })
}
