//! Named shared-memory segments: create, open, validate, grow, remove.
//!
//! A segment is a POSIX shared-memory object (`/dev/shm/memspace.NAME`) with a fixed control
//! page in front (see `header.rs` for the layout) and a data area that grows at the end.
//!
//! # Growth while others are attached
//!
//! Every process reserves the segment's *maximum* size of address space when it maps a
//! segment (`PROT_NONE`, `MAP_NORESERVE`: no memory is committed) and maps the file into the
//! front of that reservation. Growth happens under the segment's lock: the grower allocates the
//! new bytes with `fallocate` (so a full `/dev/shm` is `ENOSPC`, never `SIGBUS`), then publishes
//! the new size and bumps the generation in the header. It grows in bounded steps, ahead of
//! the writers, so that no write waits for the allocation of more than it writes plus one step
//! (see `growth.rs`). Every other process notices a larger
//! size when it follows an offset beyond its mapping, and maps the new tail in place. Nothing
//! is ever remapped or moved: addresses stay valid, and the lock in the control page never
//! changes address while threads sleep on it.
//!
//! # Who removes a segment
//!
//! * A segment created with a name (`SharedList::create("jobs")`) persists until it is removed
//!   explicitly ([`Segment::remove`], the handle's `unlink`, or `memspace rm jobs`): like a
//!   file, it outlives the processes that use it. `memspace gc` leaves it alone.
//! * An anonymous segment (`SharedList::new()`, `Lock::new()`) is reference-counted by the
//!   processes attached to it: every process that maps it claims a slot in its table of users
//!   (pid and start time), and the last one to drop its handle removes it. A user killed with
//!   SIGKILL cannot remove anything; its slot is recognised as dead (its pid is gone, or now
//!   belongs to a process with another start time), so `memspace gc` removes an anonymous
//!   segment once every user recorded in it is dead. A process that attaches by name after the
//!   last user dropped it gets [`OpenError::NotFound`](crate::OpenError::NotFound): join the
//!   children you hand a handle to before dropping your own (the tutorial's pattern).
//!
//! This avoids both failures of Python's resource tracker: a segment is neither removed while
//! another process still uses it, nor leaked forever when its users crash.
//!
//! # Files and reboots
//!
//! A `file:PATH` segment lives in a regular file and survives a reboot. A reboot kills every
//! holder of its lock without the kernel marking the lock as abandoned, so the header records
//! the boot it was initialised in; the first process to open it in a later boot (under an
//! exclusive `flock`) resets the lock and the table of users, and the next locker is told the
//! previous owner died, so that collections recover their state as after any crash.

mod access;
mod control;
mod create;
mod growth;
mod header;
mod integrity;
mod lock_anchor;
mod mapping;
mod name;
mod open;
mod options;
mod raw_mutex;
mod redis_name;
mod removal;
mod report;
mod users;

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys;

pub(crate) use self::access::{decoding_from_own_process, trust_may_travel};
use self::header::FLAG_ANONYMOUS;
pub use self::header::Kind;
pub(crate) use self::header::{DATA_START, HeaderFields, KIND_SIZE, MAX_RESERVATION};
pub(crate) use self::lock_anchor::{LockAnchor, LockSite};
pub(crate) use self::mapping::Mapping;
pub use self::name::redact_credentials;
pub(crate) use self::name::server_of_url;
pub use self::name::{FILE_PREFIX, MAX_NAME_LEN, SHM_PREFIX, SegmentName};
pub use self::options::SegmentOptions;
pub(crate) use self::raw_mutex::{LockSlot, RawFailure, RawGuard, Recovery};
#[cfg(feature = "redis")]
pub(crate) use self::redis_name::{Endpoint, RedisLocation, RedisServer};
pub use self::redis_name::{
    PASSWORD_ENV, REDIS_PREFIX, REDIS_SENTINEL_PREFIX, REDIS_TLS_PREFIX, REDIS_UNIX_PREFIX,
};
pub(crate) use self::redis_name::{encoding_for_own_process, opening_received_name};
pub use self::report::Report;
pub use self::users::User;
pub(crate) use self::users::{
    is_alive as process_alive, is_alive_watched as process_alive_watched, pid_alive, users_alive,
};

/// The smallest segment, in bytes: its two control pages and one page of data. A smaller
/// [`SegmentOptions::max_size`] or [`SegmentOptions::initial_size`] is raised to it.
pub const MIN_SIZE: u64 = header::CONTROL_SIZE + 4096;

/// The most bytes of its item type's name a segment records: a longer name is cut at a
/// character boundary at or before this length (see [`Segment::type_name`]).
pub const TYPE_NAME_MAX: usize = header::TYPE_NAME_BYTES;

/// A mapped segment: the shared object, its header, its lock and its data area.
///
/// Collections and locks own a `Segment` each; use it directly to look at a segment's identity
/// (name, kind, size, address in this process, inode) or to remove one by name.
pub struct Segment {
    name: SegmentName,
    fd: OwnedFd,
    map: Mapping,
    fields: HeaderFields,
    /// The item type's name, as recorded by the creator (read once, at open).
    type_name: String,
    identity: sys::FileInfo,
    /// This handle's slot in the table of users, and the pid that claimed it (a forked child
    /// inherits the handle but not the slot).
    user: Option<(usize, u32)>,
    /// Opened to be looked at (`inspect`, `ls`): it joined no table of users, the collections
    /// over it repair nothing, and they wait for its lock a bounded time.
    observer: bool,
    /// How long a collection's write through this handle waits for the segment's lock
    /// ([`SegmentOptions::lock_timeout`]); `None`: as long as a live process holds it.
    lock_timeout: Option<std::time::Duration>,
    /// What a collection remembers of a structure it checked (see [`Segment::memo`]).
    memo: Memo,
    /// When this process's writes next need the growth path (see `growth.rs`).
    pace: growth::Pace,
}

/// What a collection remembers, in a handle's own memory (not the segment's), of a structure
/// of the segment it checked, so that its next call that finds the same structure need not
/// check it again: the queue its current ring, the list the state its last push left, the
/// plain-value map its table word. Each collection gives the four words its own meaning. Only
/// holders of the segment's lock read and write them, which orders them between the threads
/// of a process; except the plain-value map's one word, which its lookups read without the
/// lock (stored with Release once the table is checked, loaded with Acquire, compared whole),
/// and the queue's, which its senders and its receivers use under two locks (a sequence lock:
/// `collections/queue/layout.rs`). A structure checked once stays safe to follow: the mapping
/// never shrinks under a handle (a file shrunk by another process is caught by
/// [`Segment::check_intact`]).
#[derive(Debug, Default)]
pub(crate) struct Memo([AtomicU64; 4]);

impl Memo {
    /// The four words.
    pub(crate) fn words(&self) -> &[AtomicU64; 4] {
        &self.0
    }
}

/// Something that lives in one segment: the segment itself, a handle's `Arc` of it, or a
/// typed view of it (a [`LockAnchor`], a [`Mutex`](crate::Mutex)).
pub(crate) trait InSegment {
    /// The segment it lives in.
    fn segment(&self) -> &Segment;
}

impl InSegment for Segment {
    #[inline]
    fn segment(&self) -> &Segment {
        self
    }
}

impl InSegment for std::sync::Arc<Segment> {
    #[inline]
    fn segment(&self) -> &Segment {
        self
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("kind", &self.fields.kind)
            .field("size", &self.size())
            .field("base", &format_args!("{:#x}", self.map.base_address()))
            .finish_non_exhaustive()
    }
}

impl Segment {
    /// A handle over the object `fd` names, mapped as `map`, whose header says `fields` and
    /// whose items are `type_name`; it joins the table of users later, if it participates
    /// (observers never do).
    fn assemble(
        name: &SegmentName,
        fd: OwnedFd,
        map: Mapping,
        fields: HeaderFields,
        type_name: String,
        identity: sys::FileInfo,
        observer: bool,
    ) -> Self {
        Segment {
            name: name.clone(),
            fd,
            map,
            fields,
            type_name,
            identity,
            user: None,
            observer,
            lock_timeout: None,
            memo: Memo::default(),
            pace: growth::Pace::default(),
        }
    }

    /// What a collection remembers of a structure of this segment it checked (see [`Memo`]).
    pub(crate) fn memo(&self) -> &Memo {
        &self.memo
    }

    /// The segment's name.
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        &self.name
    }

    /// What the segment holds.
    #[must_use]
    pub fn kind(&self) -> Kind {
        self.fields.kind
    }

    /// The committed size in bytes (grows; read live from the header).
    #[must_use]
    #[inline]
    pub fn size(&self) -> u64 {
        self.header().size.load(Ordering::Acquire)
    }

    /// The largest size the segment may grow to.
    #[must_use]
    pub fn max_size(&self) -> u64 {
        self.fields.max_size
    }

    /// How many times the segment has grown.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.header().generation.load(Ordering::Acquire)
    }

    /// The address of the segment's first byte in this process. Another process maps the same
    /// memory at another address: compare [`Segment::inode`], not addresses.
    #[must_use]
    pub fn base_address(&self) -> usize {
        self.map.base_address()
    }

    /// The inode of the backing object: equal inodes (on the same device) mean the same memory.
    #[must_use]
    pub fn inode(&self) -> u64 {
        self.identity.inode
    }

    /// The pid of the process that created the segment.
    #[must_use]
    pub fn creator_pid(&self) -> u32 {
        self.fields.creator_pid
    }

    /// The pid of the last process that wrote to the segment (0 if none has yet).
    #[must_use]
    pub fn last_writer_pid(&self) -> u32 {
        self.header().last_writer_pid.load(Ordering::Relaxed)
    }

    /// The Rust type name recorded by the creator (informational), cut to at most
    /// [`TYPE_NAME_MAX`] bytes.
    #[must_use]
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// Whether the segment is removed when its creator's handles are dropped.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        self.fields.flags & FLAG_ANONYMOUS != 0
    }

    /// The pid holding the segment's lock, if the lock slot records one (it may have died).
    #[must_use]
    pub fn lock_owner(&self) -> Option<u32> {
        self.lock_slot().owner_pid()
    }

    /// Whether a holder of the segment's lock panicked and nobody cleared the flag.
    #[must_use]
    pub fn lock_poisoned(&self) -> bool {
        self.lock_slot().is_poisoned()
    }

    /// How many times a holder of the segment's lock died and the lock was taken over.
    #[must_use]
    pub fn lock_owner_deaths(&self) -> u32 {
        self.lock_slot().owner_deaths()
    }

    /// The creator's start time (clock ticks after boot), which tells it from a later process
    /// with the same pid.
    #[must_use]
    pub fn creator_start_time(&self) -> u64 {
        self.fields.creator_start_time
    }

    /// When the segment was created, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn created_unix_ms(&self) -> u64 {
        self.fields.created_unix_ms
    }

    /// The current size of the backing file.
    pub(crate) fn file_size(&self) -> std::io::Result<u64> {
        sys::file_info(self.fd.as_fd()).map(|info| info.size)
    }
}
