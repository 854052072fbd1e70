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
//! is ever remapped or moved: addresses stay valid, and the robust mutex in the control page
//! never changes address while held.
//!
//! # Who removes a segment
//!
//! * A segment created with a name (`SharedList::create("jobs")`) persists until it is removed
//!   explicitly ([`Segment::remove`], the handle's `unlink`, or `memspace rm jobs`): like a
//!   file, it outlives the processes that use it.
//! * An anonymous segment (`SharedList::new()`, `Lock::new()`) is removed when the creating
//!   process drops its last handle to it. Other processes that attached keep their mapping; a
//!   process that tries to attach *after* that gets [`OpenError::NotFound`]. Children started
//!   by a handle's owner must therefore be joined before the owner drops it (the tutorial's
//!   pattern). If the creator is killed, the anonymous segment stays behind, marked with the
//!   creator's pid and start time, so that a collector can tell it is orphaned.

mod header;
mod mapping;

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
use self::header::{FLAG_ANONYMOUS, HeaderProblem, KIND_OFFSET, LOCK_OFFSET, MAX_RESERVATION};
pub(crate) use self::mapping::Mapping;

/// The prefix of every memspace object in `/dev/shm`.
pub const SHM_PREFIX: &str = "memspace.";
/// The longest name a segment may have (the file name in `/dev/shm` adds [`SHM_PREFIX`]).
pub const MAX_NAME_LEN: usize = 200;

/// How long `open` waits for a segment whose creator is still initialising it.
const INIT_WAIT: Duration = Duration::from_secs(2);

/// A validated segment name: 1 to 200 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
///
/// Names are flat (no `/`), so a name can never reach outside `/dev/shm`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentName(String);

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
                '/' => invalid("it contains `/`; names are flat, not paths"),
                '\0' => invalid("it contains a NUL byte"),
                _ => invalid("only letters, digits, `.`, `_` and `-` are allowed"),
            });
        }
        Ok(SegmentName(name.to_owned()))
    }

    /// A fresh name for an anonymous segment: `anon.PID.SEQUENCE.NONCE`.
    pub(crate) fn anonymous() -> Self {
        use std::sync::atomic::AtomicU64;
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        SegmentName(format!("anon.{}.{sequence}.{nonce:08x}", sys::pid()))
    }

    /// The name as the user wrote it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name given to `shm_open`.
    pub(crate) fn shm_path(&self) -> String {
        format!("/{SHM_PREFIX}{}", self.0)
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// How to create a segment: permissions, first size, largest size.
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
        }
    }

    /// The permission bits of the backing object (`0o600` by default).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
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
    /// The pid of the process that must remove the segment when this handle drops.
    remove_on_drop: Option<u32>,
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
        let path = name.shm_path();
        let fd = sys::shm_create(&path, options.mode)
            .map_err(|e| OpenError::from_io(name, "shm_open", e))?;
        // From here on, a failure must not leave a half-made object behind.
        let remove = || {
            let _ = sys::shm_unlink(&path);
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
                remove_on_drop: anonymous.then_some(pid),
            })
        })();
        let segment = match built {
            Ok(segment) => segment,
            Err(err) => {
                remove();
                return Err(err);
            }
        };
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
        self.lock_slot()
            .init()
            .map_err(|source| self.os_error("pthread_mutex_init", source))?;
        init(self)?;
        h.init_state.store(header::STATE_READY, Ordering::Release);
        Ok(())
    }

    /// Opens the segment `name`, checking its header and, if given, its kind.
    pub(crate) fn open(name: &SegmentName, expected: Option<Kind>) -> Result<Self, OpenError> {
        let fd =
            sys::shm_open(&name.shm_path()).map_err(|e| OpenError::from_io(name, "shm_open", e))?;
        let page = sys::page_size() as u64;
        let started = Instant::now();
        let (fields, identity) = loop {
            let identity =
                sys::file_info(fd.as_fd()).map_err(|e| OpenError::from_io(name, "fstat", e))?;
            let mut bytes = [0u8; header::HEADER_SIZE];
            let want = usize::try_from(identity.size)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let got = sys::read_at(fd.as_fd(), &mut bytes[..want], 0)
                .map_err(|e| OpenError::from_io(name, "pread", e))?;
            match header::parse(&bytes[..got], identity.size, page) {
                Ok(fields) => break (fields, identity),
                Err(HeaderProblem::NotInitialized) if started.elapsed() < INIT_WAIT => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(problem) => return Err(problem_to_error(name, problem)),
            }
        };
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
        Ok(Segment {
            name: name.clone(),
            fd,
            map,
            fields,
            identity,
            remove_on_drop: None,
        })
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
    /// # Errors
    ///
    /// [`OpenError::NotFound`] if there is no such segment, [`OpenError::InvalidName`], or
    /// [`OpenError::PermissionDenied`].
    #[doc(alias = "shm_unlink")]
    pub fn remove(name: &str) -> Result<(), OpenError> {
        let name = SegmentName::new(name)?;
        sys::shm_unlink(&name.shm_path()).map_err(|e| OpenError::from_io(&name, "shm_unlink", e))
    }

    /// Removes this segment's name (see [`Segment::remove`]).
    ///
    /// # Errors
    ///
    /// As [`Segment::remove`].
    pub fn unlink(&self) -> Result<(), OpenError> {
        sys::shm_unlink(&self.name.shm_path())
            .map_err(|e| OpenError::from_io(&self.name, "shm_unlink", e))
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

    /// The Rust type name recorded by the creator (informational).
    #[must_use]
    pub fn type_name(&self) -> &str {
        &self.fields.type_name
    }

    /// Whether the segment is removed when its creator's handles are dropped.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        self.fields.flags & FLAG_ANONYMOUS != 0
    }

    pub(crate) fn header(&self) -> &Header {
        self.map
            .get::<Header>(0)
            .expect("the control page is mapped for the segment's lifetime")
    }

    pub(crate) fn lock_slot(&self) -> &LockSlot {
        self.map
            .get::<LockSlot>(LOCK_OFFSET)
            .expect("the control page is mapped for the segment's lifetime")
    }

    /// The kind-specific control words at offset 256.
    pub(crate) fn kind_area<T: ShmSafe>(&self) -> &T {
        const { assert!(size_of::<T>() <= (CONTROL_SIZE - KIND_OFFSET) as usize) };
        self.map
            .get::<T>(KIND_OFFSET)
            .expect("the control page is mapped and the area is aligned")
    }

    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }

    /// Records this process as the segment's last writer.
    pub(crate) fn note_writer(&self) {
        self.header()
            .last_writer_pid
            .store(sys::pid(), Ordering::Relaxed);
    }

    /// Makes sure the first `end` bytes are mapped in this process, following growth done by
    /// other processes. `end` comes from the segment, so it is checked against the committed
    /// size and the file's real size before anything is mapped.
    pub(crate) fn ensure_mapped(&self, end: u64) -> Result<(), Error> {
        if end <= self.map.len() as u64 {
            return Ok(());
        }
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

    /// Grows the segment so that it holds at least `needed` bytes. Only the holder of the
    /// segment's lock grows it (`_held` proves it), so two growers never race.
    pub(crate) fn grow_to(&self, needed: u64, _held: &RawGuard<'_>) -> Result<(), Error> {
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
        let header = self.header();
        header.size.store(new_size, Ordering::Release);
        header.generation.fetch_add(1, Ordering::Release);
        self.ensure_mapped(needed)
    }

    pub(crate) fn corrupt(&self, what: String) -> Error {
        Error::Corrupt {
            name: self.name.clone(),
            what,
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
        // Only the creating process removes an anonymous segment: after `fork`, a child owns a
        // copy of its parent's handles and must not remove what the parent still uses.
        if self.remove_on_drop != Some(sys::pid()) {
            return;
        }
        // Remove the name only if it still names our object (someone may have removed it and
        // created another under the same name). Errors are ignored: drop cannot report them,
        // and the worst case is a segment that `memspace gc` collects later.
        let path = self.name.shm_path();
        if let Ok(fd) = sys::shm_open(&path)
            && let Ok(info) = sys::file_info(fd.as_fd())
            && info.inode == self.identity.inode
            && info.device == self.identity.device
        {
            let _ = sys::shm_unlink(&path);
        }
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
            &"x".repeat(201),
        ] {
            assert!(
                matches!(SegmentName::new(bad), Err(OpenError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn anonymous_names_are_valid_and_distinct() {
        let a = SegmentName::anonymous();
        let b = SegmentName::anonymous();
        assert_ne!(a, b);
        assert!(SegmentName::new(a.as_str()).is_ok());
    }
}
