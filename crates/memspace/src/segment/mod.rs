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
//! the new size and bumps the generation in the header. Every other process notices a larger
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
//!   last user dropped it gets [`OpenError::NotFound`]: join the children you hand a handle to
//!   before dropping your own (the tutorial's pattern).
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

mod header;
mod mapping;
mod name;
mod users;

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, OpenError};
use crate::shm_safe::ShmSafe;
use crate::sync::{LockSlot, RawGuard};
use crate::sys;

pub use self::header::Kind;
pub(crate) use self::header::{CONTROL_SIZE, DATA_START, Header, HeaderFields};
use self::header::{
    FLAG_ANONYMOUS, HeaderProblem, KIND_OFFSET, LOCK_OFFSET, MAX_RESERVATION, META_OFFSET,
    USERS_OFFSET,
};
pub(crate) use self::mapping::Mapping;
pub use self::name::redact_credentials;
use self::name::{Access, Location};
pub use self::name::{FILE_PREFIX, MAX_NAME_LEN, REDIS_PREFIX, SHM_PREFIX, SegmentName};
pub(crate) use self::name::{RedisLocation, server_of_url};
pub use self::users::User;
pub(crate) use self::users::{Meta, Users};
pub(crate) use self::users::{is_alive as process_alive, pid_alive, users_alive};

/// How long `open` waits for a segment whose creator is still initialising it.
const INIT_WAIT: Duration = Duration::from_secs(2);
/// How long an observer (`inspect`, `ls`) waits for a segment's lock before it reports the
/// lock as held instead of reading what it guards: a holder may keep it for ever (a live
/// process, or one in another pid namespace that is never judged dead).
const OBSERVER_LOCK_WAIT: Duration = Duration::from_secs(1);

/// The most bytes of its item type's name a segment records: a longer name is cut at a
/// character boundary at or before this length (see [`Segment::type_name`]).
pub const TYPE_NAME_MAX: usize = header::TYPE_NAME_WORDS * 8;

/// How to create a segment (permissions, first size, largest size), and which existing
/// segments an open accepts.
///
/// # Whose segments are opened
///
/// A segment is written by every process that opens it, and a process that can write it can
/// change anything in it, hold its lock for ever or hand its readers crafted data. So an open
/// accepts only a segment that belongs to this process's effective user and whose mode grants
/// nothing beyond [`mode`](SegmentOptions::mode) (`0600` by default): a segment another user
/// planted under the name (`/dev/shm` is writable by everyone) is refused with
/// [`OpenError::UntrustedOwner`], and one that other users may write with
/// [`OpenError::UntrustedMode`]. A program that shares segments between users says whom it
/// trusts: [`trust_owner`](SegmentOptions::trust_owner) and a wider `mode`, then
/// [`open`](SegmentOptions::open). A handle opened that way carries the same trust to the
/// processes it is passed to.
///
/// # Examples
///
/// ```
/// use memspace::SegmentOptions;
/// let options = SegmentOptions::new().mode(0o640).max_size(1 << 30);
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    mode: u32,
    initial_size: u64,
    max_size: u64,
    trusted_owner: Option<u32>,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SegmentOptions {
    /// Mode `0600` (this user only), 64 KiB at first, growing to at most 64 GiB.
    #[must_use]
    pub fn new() -> Self {
        SegmentOptions {
            mode: 0o600,
            initial_size: 64 << 10,
            max_size: 64 << 30,
            trusted_owner: None,
        }
    }

    /// The permission bits of the backing object (`0o600` by default) when creating; when
    /// opening, the widest bits accepted: a segment whose mode grants anything beyond them is
    /// refused ([`OpenError::UntrustedMode`]).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Also opens segments owned by user `uid`, not only this process's effective user's.
    /// Whoever owns a segment can change anything in it: trust only a user you would let
    /// write into your process's data.
    #[must_use]
    pub fn trust_owner(mut self, uid: u32) -> Self {
        self.trusted_owner = Some(uid);
        self
    }

    /// Opens the segment `name` (of any kind) if its owner and mode are accepted (see
    /// [Whose segments are opened](SegmentOptions#whose-segments-are-opened)); hand it to a
    /// collection's or lock's `from_segment`.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> memspace::Result<()> {
    /// use memspace::{SegmentOptions, SharedList};
    ///
    /// let name = format!("doc-trust-{}", std::process::id());
    /// let group = SegmentOptions::new().mode(0o660);
    /// SharedList::<u32>::create_with(&name, &group)?.push(&7)?;
    /// // A plain `open` accepts mode 0600 at most; this one accepts the group's bits.
    /// assert!(SharedList::<u32>::open(&name).is_err());
    /// let list = SharedList::<u32>::from_segment(group.open(&name)?)?;
    /// assert_eq!(list.to_vec()?, [7]);
    /// list.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As the collections' `open`: [`OpenError::NotFound`], [`OpenError::UntrustedOwner`],
    /// [`OpenError::UntrustedMode`], [`OpenError::Corrupt`], ...
    pub fn open(&self, name: &str) -> Result<Segment, OpenError> {
        Segment::open(&SegmentName::new(name)?.with_access(self.access()), None)
    }

    /// Opens the segment `name` as an observer, as [`inspect::observe`] does, accepting for
    /// the handles made from it (`from_segment`) the owners and modes these options accept.
    ///
    /// # Errors
    ///
    /// As [`inspect::observe`].
    ///
    /// [`inspect::observe`]: crate::inspect::observe
    pub fn observe(&self, name: &str) -> Result<Segment, OpenError> {
        Segment::open_observer(&SegmentName::new(name)?.with_access(self.access()))
    }

    /// What an open with these options accepts.
    fn access(&self) -> Access {
        Access {
            owner: self.trusted_owner,
            mode: self.mode,
        }
    }

    /// The size allocated at creation, rounded up to a page (64 KiB by default).
    #[must_use]
    pub fn initial_size(mut self, bytes: u64) -> Self {
        self.initial_size = bytes;
        self
    }

    /// The largest size the segment may grow to (64 GiB by default, at most 64 TiB). Every
    /// process that maps the segment reserves this much *address space* (not memory).
    #[must_use]
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// The smallest segment: the control page and one spare page, for objects whose state fits
    /// in the kind area (locks, events, semaphores, ...).
    pub(crate) fn control_only() -> Self {
        SegmentOptions::new().initial_size(0).max_size(0)
    }

    fn sizes(&self) -> (u64, u64) {
        let page = sys::page_size() as u64;
        let max = self.max_size.clamp(CONTROL_SIZE * 2, MAX_RESERVATION);
        let max = max.next_multiple_of(page).min(MAX_RESERVATION);
        let initial = self
            .initial_size
            .clamp(CONTROL_SIZE * 2, max)
            .next_multiple_of(page)
            .min(max);
        (initial, max)
    }
}

/// A mapped segment: the shared object, its header, its lock and its data area.
///
/// Collections and locks own a `Segment` each; use it directly to look at a segment's identity
/// (name, kind, size, address in this process, inode) or to remove one by name.
pub struct Segment {
    name: SegmentName,
    fd: OwnedFd,
    map: Mapping,
    fields: HeaderFields,
    identity: sys::FileInfo,
    /// This handle's slot in the table of users, and the pid that claimed it (a forked child
    /// inherits the handle but not the slot).
    user: Option<(usize, u32)>,
    /// Opened to be looked at (`inspect`, `ls`): it joined no table of users, the collections
    /// over it repair nothing, and they wait for its lock a bounded time.
    observer: bool,
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
    /// Creates a new segment of `kind`, runs `init` on it, then publishes it as ready.
    pub(crate) fn create(
        name: &SegmentName,
        kind: Kind,
        type_name: &str,
        options: &SegmentOptions,
        anonymous: bool,
        init: impl FnOnce(&Segment) -> Result<(), Error>,
    ) -> Result<Self, Error> {
        let (initial, max) = options.sizes();
        // The handle carries the options' access, so that the processes it is passed to
        // accept the mode it was created with.
        let name = &name.clone().with_access(options.access());
        let fd = create_object(name, options.mode)?;
        // From here on, a failure must not leave a half-made object behind.
        let created = sys::file_info(fd.as_fd()).map(|info| (info.device, info.inode));
        let remove = || {
            if let Ok(identity) = created {
                let _ = remove_object(name, Removal::Ours(identity));
            }
        };
        let built = (|| {
            sys::allocate(fd.as_fd(), 0, initial).map_err(|e| {
                if e.raw_os_error() == Some(sys::ENOSPC) {
                    OpenError::NoSpace {
                        name: name.clone(),
                        size: initial,
                    }
                } else {
                    OpenError::from_io(name, "fallocate", e)
                }
            })?;
            let identity =
                sys::file_info(fd.as_fd()).map_err(|e| OpenError::from_io(name, "fstat", e))?;
            let map = Mapping::new(fd.as_fd(), max as usize, initial as usize)
                .map_err(|e| OpenError::from_io(name, "mmap", e))?;
            let pid = sys::pid();
            let fields = HeaderFields {
                kind,
                max_size: max,
                size: initial,
                generation: 0,
                creator_pid: pid,
                creator_start_time: sys::process_start_time(pid).unwrap_or(0),
                created_unix_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                flags: if anonymous { FLAG_ANONYMOUS } else { 0 },
                last_writer_pid: 0,
                type_name: type_name.to_owned(),
            };
            Ok::<_, Error>(Segment {
                name: name.clone(),
                fd,
                map,
                fields,
                identity,
                user: None,
                observer: false,
            })
        })();
        let segment = match built {
            Ok(segment) => segment,
            Err(err) => {
                remove();
                return Err(err);
            }
        };
        let mut segment = segment;
        // Join the table of users before the segment is published as ready, so that
        // `memspace gc` never sees a ready anonymous segment without a live user.
        segment.attach();
        if let Err(err) = segment.initialise(init) {
            remove();
            return Err(err);
        }
        Ok(segment)
    }

    fn initialise(&self, init: impl FnOnce(&Segment) -> Result<(), Error>) -> Result<(), Error> {
        let h = self.header();
        let f = &self.fields;
        // The magic goes first, with state INITIALIZING: an opener that races us then waits
        // instead of calling the object foreign.
        h.magic.store(header::MAGIC, Ordering::Relaxed);
        h.init_state
            .store(header::STATE_INITIALIZING, Ordering::Release);
        h.layout_version
            .store(header::LAYOUT_VERSION, Ordering::Relaxed);
        h.kind.store(f.kind.to_raw(), Ordering::Relaxed);
        h.control_size.store(CONTROL_SIZE as u32, Ordering::Relaxed);
        h.max_size.store(f.max_size, Ordering::Relaxed);
        h.size.store(f.size, Ordering::Relaxed);
        h.creator_pid.store(f.creator_pid, Ordering::Relaxed);
        h.creator_start_time
            .store(f.creator_start_time, Ordering::Relaxed);
        h.created_unix_ms
            .store(f.created_unix_ms, Ordering::Relaxed);
        h.flags.store(f.flags, Ordering::Relaxed);
        h.store_type_name(&f.type_name);
        // Zeros when this process cannot read the boot id: "unknown", adopted by the next
        // opener that can (see `reset_if_from_earlier_boot`).
        let boot = sys::boot_id().unwrap_or_default();
        for (word, value) in self.meta().boot_id.iter().zip(boot) {
            word.store(value, Ordering::Relaxed);
        }
        self.lock_slot().init();
        init(self)?;
        h.init_state.store(header::STATE_READY, Ordering::Release);
        Ok(())
    }

    /// Opens the segment `name`, checking its header and, if given, its kind.
    pub(crate) fn open(name: &SegmentName, expected: Option<Kind>) -> Result<Self, OpenError> {
        Self::open_with(name, expected, true)
    }

    fn open_with(
        name: &SegmentName,
        expected: Option<Kind>,
        participate: bool,
    ) -> Result<Self, OpenError> {
        let fd = open_object(name)?;
        let fstat = || sys::file_info(fd.as_fd()).map_err(|e| OpenError::from_io(name, "fstat", e));
        let mut identity = fstat()?;
        if !identity.regular {
            return Err(OpenError::NotAFile {
                name: name.clone(),
                what: "not a regular file",
            });
        }
        let page = sys::page_size() as u64;
        let started = Instant::now();
        let fields = loop {
            let mut bytes = [0u8; header::HEADER_SIZE];
            let want = usize::try_from(identity.size)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let got = sys::read_at(fd.as_fd(), &mut bytes[..want], 0)
                .map_err(|e| OpenError::from_io(name, "pread", e))?;
            match header::parse(&bytes[..got], identity.size, page) {
                Ok(fields) => break fields,
                Err(HeaderProblem::NotInitialized) if started.elapsed() < INIT_WAIT => {
                    // Not worth waiting for if it is not ours to open anyway.
                    if participate {
                        check_access(name, &identity)?;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    identity = fstat()?;
                }
                Err(problem) => return Err(problem_to_error(name, problem)),
            }
        };
        // An observer (`inspect`, `ls`, `gc`) looks at any segment it can read, and shows its
        // owner; a participant writes into it, so it must trust whoever else can. (The header
        // was only read, with `pread`: a file that is no segment at all is reported as such.)
        if participate {
            check_access(name, &identity)?;
        }
        if let Some(expected) = expected
            && fields.kind != expected
        {
            return Err(OpenError::WrongKind {
                name: name.clone(),
                found: fields.kind,
                expected,
            });
        }
        let map = Mapping::new(fd.as_fd(), fields.max_size as usize, fields.size as usize)
            .map_err(|e| OpenError::from_io(name, "mmap", e))?;
        let mut segment = Segment {
            name: name.clone(),
            fd,
            map,
            fields,
            identity,
            user: None,
            observer: !participate,
        };
        if participate {
            segment
                .reset_if_from_earlier_boot()
                .map_err(|e| OpenError::from_io(name, "flock", e))?;
            segment.attach();
        }
        Ok(segment)
    }

    /// Claims a slot in the table of users (see the module docs).
    fn attach(&mut self) {
        self.lock_slot()
            .note_user_namespace(sys::this_thread().pid_namespace);
        let pid = sys::pid();
        let start_time = sys::process_start_time(pid).unwrap_or(0);
        match self.users_table().attach(pid, start_time) {
            Some(index) => self.user = Some((index, pid)),
            None => {
                self.meta().untracked_users.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// If the segment was last initialised during an earlier boot (a `file:` segment after a
    /// reboot), resets its lock and its table of users, once, under an exclusive `flock`.
    ///
    /// A process that cannot read the boot id (no `/proc`, no file descriptor left) cannot tell,
    /// and changes nothing: resetting a lock that a process of this boot holds would hand it to
    /// a second holder. A segment whose recorded boot id is unknown (zeros: its creator could
    /// not read it) adopts ours without a reset; a holder left from an earlier boot is then found
    /// dead by the lock's own check.
    fn reset_if_from_earlier_boot(&self) -> std::io::Result<()> {
        let Some(boot) = sys::boot_id() else {
            return Ok(());
        };
        let recorded = |meta: &Meta| meta.boot_id.each_ref().map(|w| w.load(Ordering::Acquire));
        if recorded(self.meta()) == boot {
            return Ok(());
        }
        sys::lock_file(self.fd.as_fd())?;
        let found = recorded(self.meta());
        if found != boot {
            if found != [0, 0] {
                self.users_table().clear();
                self.lock_slot().reset_after_reboot();
            }
            for (word, value) in self.meta().boot_id.iter().zip(boot) {
                word.store(value, Ordering::Release);
            }
        }
        sys::unlock_file(self.fd.as_fd())
    }

    /// Opens `name` as an observer (see [`inspect::observe`](crate::inspect::observe)).
    pub(crate) fn open_observer(name: &SegmentName) -> Result<Self, OpenError> {
        Self::open_with(name, None, false)
    }

    /// Whether this segment was opened as an observer (see [`inspect::observe`]).
    ///
    /// [`inspect::observe`]: crate::inspect::observe
    pub(crate) fn is_observer(&self) -> bool {
        self.observer
    }

    /// How long the collections wait for this segment's lock (see `OBSERVER_LOCK_WAIT`).
    pub(crate) fn lock_wait(&self) -> sys::Wait {
        if self.observer {
            sys::Wait::For(OBSERVER_LOCK_WAIT)
        } else {
            sys::Wait::Forever
        }
    }

    /// The current size of the backing file.
    pub(crate) fn file_size(&self) -> std::io::Result<u64> {
        sys::file_info(self.fd.as_fd()).map(|info| info.size)
    }

    /// Opens the segment `name` whatever its kind (for tools such as `memspace inspect`).
    ///
    /// # Errors
    ///
    /// [`OpenError`] if the name is invalid, the segment does not exist or is not readable, or
    /// its header is not a valid memspace header.
    pub fn open_any(name: &str) -> Result<Self, OpenError> {
        Segment::open(&SegmentName::new(name)?, None)
    }

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
    pub fn remove(name: &str) -> Result<(), OpenError> {
        remove_object(&SegmentName::new(name)?, Removal::Memspace)
    }

    /// Removes this segment's name (see [`Segment::remove`]), if it still names this segment.
    ///
    /// # Errors
    ///
    /// As [`Segment::remove`]; [`OpenError::NotFound`] also when the name was removed and
    /// now names another object.
    pub fn unlink(&self) -> Result<(), OpenError> {
        remove_object(
            &self.name,
            Removal::Ours((self.identity.device, self.identity.inode)),
        )
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

    /// The segment itself if it holds `expected`, for the `from_segment` constructors. A handle
    /// writes, so a segment that was only observed must pass the check an open makes of its
    /// owner and mode (see [`SegmentOptions`]).
    pub(crate) fn expecting(self, expected: Kind) -> Result<Self, OpenError> {
        if self.observer {
            check_access(&self.name, &self.identity)?;
        }
        if self.kind() == expected {
            Ok(self)
        } else {
            Err(OpenError::WrongKind {
                name: self.name.clone(),
                found: self.kind(),
                expected,
            })
        }
    }

    /// The committed size in bytes (grows; read live from the header).
    #[must_use]
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
        &self.fields.type_name
    }

    /// Whether the segment is removed when its creator's handles are dropped.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        self.fields.flags & FLAG_ANONYMOUS != 0
    }

    #[inline]
    pub(crate) fn header(&self) -> &Header {
        self.map
            .get::<Header>(0)
            .expect("the control page is mapped for the segment's lifetime")
    }

    /// The processes recorded as attached to the segment, alive or not.
    #[must_use]
    pub fn users(&self) -> Vec<User> {
        self.users_table().list()
    }

    /// How many attachments found the table of users full (those are not tracked).
    #[must_use]
    pub fn untracked_users(&self) -> u32 {
        self.meta().untracked_users.load(Ordering::Relaxed)
    }

    /// Whether a process from another pid namespace than the creator's (a container sharing
    /// `/dev/shm`) opened the segment. Its users' pids mean nothing here, so none of them is
    /// judged dead: the segment is neither removed by its last user here nor by `gc`.
    #[must_use]
    pub fn has_foreign_users(&self) -> bool {
        self.lock_slot().has_foreign_users()
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

    fn users_table(&self) -> &Users {
        self.map
            .get::<Users>(USERS_OFFSET)
            .expect("the control page is mapped for the segment's lifetime")
    }

    fn meta(&self) -> &Meta {
        self.map
            .get::<Meta>(META_OFFSET)
            .expect("the control page is mapped for the segment's lifetime")
    }

    #[inline]
    pub(crate) fn lock_slot(&self) -> &LockSlot {
        self.map
            .get::<LockSlot>(LOCK_OFFSET)
            .expect("the control page is mapped for the segment's lifetime")
    }

    /// The kind-specific control words at offset 256.
    #[inline]
    pub(crate) fn kind_area<T: ShmSafe>(&self) -> &T {
        const { assert!(size_of::<T>() <= (CONTROL_SIZE - KIND_OFFSET) as usize) };
        self.map
            .get::<T>(KIND_OFFSET)
            .expect("the control page is mapped and the area is aligned")
    }

    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }

    /// Records this process as the segment's last writer. The word is written only when it
    /// changes: writers that alternate take turns at a cache line anyway, but a run of writes
    /// from one process should not pull the header's line away from readers.
    #[inline]
    pub(crate) fn note_writer(&self) {
        let pid = sys::pid();
        let last = &self.header().last_writer_pid;
        if last.load(Ordering::Relaxed) != pid {
            last.store(pid, Ordering::Relaxed);
        }
    }

    /// Makes sure the first `end` bytes are mapped in this process, following growth done by
    /// other processes. `end` comes from the segment, so it is checked against the committed
    /// size and the file's real size before anything is mapped.
    #[inline]
    pub(crate) fn ensure_mapped(&self, end: u64) -> Result<(), Error> {
        if end <= self.map.len() as u64 {
            return self.check_intact();
        }
        self.map_more(end)
    }

    /// The slow part of [`Segment::ensure_mapped`]: maps growth another process made.
    #[inline(never)]
    fn map_more(&self, end: u64) -> Result<(), Error> {
        let size = self.size();
        if end > size {
            return Err(self.corrupt(format!(
                "an offset points to byte {end}, past the committed size {size}"
            )));
        }
        if size > self.fields.max_size {
            return Err(self.corrupt(format!(
                "the committed size {size} exceeds the maximum {}",
                self.fields.max_size
            )));
        }
        let file =
            sys::file_info(self.fd.as_fd()).map_err(|source| self.os_error("fstat", source))?;
        if file.size < size {
            return Err(self.corrupt(format!(
                "its file was truncated to {} bytes while {size} are committed",
                file.size
            )));
        }
        self.map
            .extend(self.fd.as_fd(), size as usize)
            .map_err(|source| self.os_error("mmap", source))
    }

    /// Checks that `[offset, offset + len)`, a range named by words read from the segment, lies
    /// in the data area: at or past [`DATA_START`] (never in the control page, whose header,
    /// lock and table of users no collection writes through an offset), a multiple of `align`,
    /// and inside the committed size; maps it if another process grew the segment. Returns the
    /// end of the range.
    ///
    /// Readers and writers both check every offset and length they follow with this, so a
    /// damaged one is an [`Error::Corrupt`] naming `what`: it can neither make a writer write
    /// outside the data area nor, as an end of data, make it grow the segment by more than
    /// what it appends there.
    #[inline]
    pub(crate) fn data_range(
        &self,
        what: impl FnOnce() -> String,
        offset: u64,
        len: u64,
        align: u64,
    ) -> Result<u64, Error> {
        // The committed size is read from the segment too: bound it by the validated maximum.
        let size = self.size().min(self.fields.max_size);
        match offset.checked_add(len) {
            Some(end) if offset >= DATA_START && offset.is_multiple_of(align) && end <= size => {
                self.ensure_mapped(end)?;
                Ok(end)
            }
            _ => Err(self.outside_data_area(&what(), offset, len, align, size)),
        }
    }

    /// The error of [`Segment::data_range`], out of the way of the checks' fast path.
    #[cold]
    #[inline(never)]
    fn outside_data_area(&self, what: &str, offset: u64, len: u64, align: u64, size: u64) -> Error {
        self.corrupt(format!(
            "{what} at {offset} ({len} bytes) lies outside the data area {DATA_START}..{size}{}",
            if offset.is_multiple_of(align) {
                String::new()
            } else {
                format!(" or is not a multiple of {align}")
            }
        ))
    }

    /// Grows the segment so that it holds at least `needed` bytes. Only the holder of the
    /// segment's lock grows it (`_held` proves it), so two growers never race.
    #[inline]
    pub(crate) fn grow_to(&self, needed: u64, held: &RawGuard<'_>) -> Result<(), Error> {
        // What this process has mapped is committed: nothing to do (the common case).
        if needed <= self.map.len() as u64 {
            return Ok(());
        }
        self.grow_or_follow(needed, held)
    }

    #[inline(never)]
    fn grow_or_follow(&self, needed: u64, _held: &RawGuard<'_>) -> Result<(), Error> {
        let size = self.size();
        if needed <= size {
            return self.ensure_mapped(needed);
        }
        let max = self.fields.max_size;
        if needed > max {
            return Err(Error::Full {
                name: self.name.clone(),
                needed,
                max_size: max,
            });
        }
        let page = sys::page_size() as u64;
        let new_size = needed
            .max(size.saturating_mul(2))
            .next_multiple_of(page)
            .min(max);
        sys::allocate(self.fd.as_fd(), size, new_size).map_err(|source| {
            if source.raw_os_error() == Some(sys::ENOSPC) {
                Error::NoSpace {
                    name: self.name.clone(),
                    needed: new_size,
                }
            } else {
                self.os_error("fallocate", source)
            }
        })?;
        crate::failpoint::hit("grow.allocated");
        let header = self.header();
        header.size.store(new_size, Ordering::Release);
        header.generation.fetch_add(1, Ordering::Release);
        self.ensure_mapped(needed)
    }

    pub(crate) fn corrupt(&self, what: String) -> Error {
        // Whatever looked wrong, a file shrunk under the mapping is the cause to report.
        if let Err(shrunk) = self.check_intact() {
            return shrunk;
        }
        Error::Corrupt {
            name: self.name.clone(),
            what,
        }
    }

    /// Fails if another process shrank the segment's file while this process had it mapped.
    ///
    /// Pages past the new end of the file cannot be read or written any more: an access to
    /// one would kill the process with `SIGBUS`. memspace catches that fault, gives the
    /// mapping zero pages in their place (see the crate's safety model), and from then on
    /// every operation on the segment in this process that reads or writes an item, or takes
    /// its lock, returns this error instead of using them.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] saying that the file was shrunk.
    #[inline]
    pub fn check_intact(&self) -> Result<(), Error> {
        if self.is_intact() {
            return Ok(());
        }
        Err(self.shrunk())
    }

    /// Whether no page of the mapping was lost to a shrunk file (see [`Segment::check_intact`]);
    /// one load, for the lock's fast path.
    #[inline]
    pub(crate) fn is_intact(&self) -> bool {
        !self.map.faulted()
    }

    #[cold]
    fn shrunk(&self) -> Error {
        let now = sys::file_info(self.fd.as_fd())
            .map_or_else(|_| String::new(), |info| format!(" to {} bytes", info.size));
        Error::Corrupt {
            name: self.name.clone(),
            what: format!(
                "another process shrank its file{now} while this process had it mapped, so \
                 data past the new end is lost and nothing written there is kept"
            ),
        }
    }

    pub(crate) fn os_error(&self, op: &'static str, source: std::io::Error) -> Error {
        Error::Os {
            name: self.name.clone(),
            op,
            source,
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Only the process that claimed the slot releases it: after `fork`, a child owns a copy
        // of its parent's handles, and must neither release the parent's slot nor remove what
        // the parent still uses.
        let Some((index, pid)) = self.user else {
            return;
        };
        if pid != sys::pid() {
            return;
        }
        let users = self.users_table();
        users.detach(index, pid);
        // A table of users lost to a shrunk file reads as empty: nothing tells who still uses
        // the segment, so it is left for `memspace gc`, which asks the file itself.
        if self.map.faulted() {
            return;
        }
        if !self.is_anonymous()
            || self.has_foreign_users()
            || users.list().iter().any(|user| user.alive)
        {
            return;
        }
        // The last user of an anonymous segment removes it, if the name still names our
        // object (someone may have removed it and created another under the same name).
        // Errors are ignored: drop cannot report them, and `memspace gc` collects what is left.
        let _ = remove_object(
            &self.name,
            Removal::Ours((self.identity.device, self.identity.inode)),
        );
    }
}

fn create_object(name: &SegmentName, mode: u32) -> Result<OwnedFd, OpenError> {
    let fd = match name.location() {
        Location::Shm(path) => {
            sys::shm_create(path, mode).map_err(|e| OpenError::from_io(name, "shm_open", e))
        }
        Location::File(path) => {
            sys::file_create(path, mode).map_err(|e| OpenError::from_io(name, "open", e))
        }
        Location::Redis(_) => Err(not_a_segment(name)),
    }?;
    // The umask narrowed the mode given to open; the caller asked for exactly this one.
    if let Err(e) = sys::set_mode(fd.as_fd(), mode) {
        if let Ok(info) = sys::file_info(fd.as_fd()) {
            let _ = remove_object(name, Removal::Ours((info.device, info.inode)));
        }
        return Err(OpenError::from_io(name, "fchmod", e));
    }
    Ok(fd)
}

/// Refuses a segment that another user owns or that other users may change, unless the name
/// carries the caller's trust in them (see [`SegmentOptions`]).
fn check_access(name: &SegmentName, info: &sys::FileInfo) -> Result<(), OpenError> {
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

fn open_object(name: &SegmentName) -> Result<OwnedFd, OpenError> {
    match name.location() {
        Location::Shm(path) => {
            sys::shm_open(path).map_err(|e| OpenError::from_io(name, "shm_open", e))
        }
        Location::File(path) => {
            sys::file_open(path).map_err(|e| OpenError::from_io(name, "open", e))
        }
        Location::Redis(_) => Err(not_a_segment(name)),
    }
}

/// What must be true of the object at a name for [`remove_object`] to unlink it.
#[derive(Clone, Copy)]
enum Removal {
    /// It is a memspace segment (a user asked to remove a name).
    Memspace,
    /// It is the object with this device and inode (a handle removes its own segment).
    Ours((u64, u64)),
}

/// Unlinks `name` if the object there passes `removal`'s check. The object is opened without
/// following a symbolic link, through a descriptor of its directory, and unlinked only if the
/// directory entry still names the object that was checked: a name swapped for something else
/// in between is not removed.
fn remove_object(name: &SegmentName, removal: Removal) -> Result<(), OpenError> {
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
            });
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
                });
            }
        },
        Location::Redis(_) => return Err(not_a_segment(name)),
    };
    let io_error = |op| move |e| OpenError::from_io(name, op, e);
    let directory = sys::open_directory(&directory).map_err(io_error("open"))?;
    let fd = sys::open_entry(directory.as_fd(), &entry).map_err(io_error("open"))?;
    let info = sys::file_info(fd.as_fd()).map_err(io_error("fstat"))?;
    if !info.regular {
        return Err(OpenError::NotAFile {
            name: name.clone(),
            what: "not a regular file",
        });
    }
    let checked = (info.device, info.inode);
    match removal {
        Removal::Ours(ours) if ours != checked => {
            return Err(OpenError::NotFound { name: name.clone() });
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
                return Err(OpenError::Foreign { name: name.clone() });
            }
        }
    }
    if sys::entry_identity(directory.as_fd(), &entry).map_err(io_error("stat"))? != checked {
        return Err(OpenError::NotFound { name: name.clone() });
    }
    sys::unlink_entry(directory.as_fd(), &entry).map_err(io_error("unlink"))
}

/// A `redis://` name given to a type that only lives in shared memory.
fn not_a_segment(name: &SegmentName) -> OpenError {
    OpenError::InvalidName {
        name: name.as_str().to_owned(),
        reason: "only Lock, SharedList, SharedMap, Queue, Value and Event have a Redis backend; \
                 this object needs a shared-memory name",
    }
}

fn problem_to_error(name: &SegmentName, problem: HeaderProblem) -> OpenError {
    let name = name.clone();
    match problem {
        HeaderProblem::NotInitialized => OpenError::NotInitialized { name },
        HeaderProblem::Foreign => OpenError::Foreign { name },
        HeaderProblem::Version(found) => OpenError::VersionMismatch {
            name,
            found,
            expected: header::LAYOUT_VERSION,
        },
        HeaderProblem::UnknownKind(kind) => OpenError::Corrupt {
            name,
            what: format!("unknown kind {kind}"),
        },
        HeaderProblem::Truncated {
            file_size,
            expected,
        } => OpenError::Truncated {
            name,
            file_size,
            expected,
        },
        HeaderProblem::Corrupt(what) => OpenError::Corrupt { name, what },
    }
}
