//! Opening an existing segment: its header validated against the file before anything is
//! mapped, its owner and mode checked, a file from an earlier boot reset, and observers
//! (`inspect`, `ls`) that join nothing and wait for the lock a bounded time.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::access::check_access;
use super::header::{self, HeaderProblem, Kind, TYPE_NAME_OFFSET, TypeName};
use super::mapping::Mapping;
use super::name::{Location, not_a_segment};
use super::users::Meta;
use super::{Segment, SegmentName};
use crate::error::{Error, OpenError};
use crate::sys;

/// How long `open` waits for a segment whose creator is still initialising it.
const INIT_WAIT: Duration = Duration::from_secs(2);
/// How long an observer (`inspect`, `ls`) waits for a segment's lock before it reports the
/// lock as held instead of reading what it guards: a holder may keep it for ever (a live
/// process, or one in another pid namespace that is never judged dead).
const OBSERVER_LOCK_WAIT: Duration = Duration::from_secs(1);

impl Segment {
    /// Opens the segment `name`, checking its header and, if given, its kind.
    pub(crate) fn open(name: &SegmentName, expected: Option<Kind>) -> Result<Self, Error> {
        Self::open_with(name, expected, true)
    }

    fn open_with(
        name: &SegmentName,
        expected: Option<Kind>,
        participate: bool,
    ) -> Result<Self, Error> {
        let fd = open_object(name)?;
        let fstat = || sys::file_info(fd.as_fd()).map_err(|e| Error::from_io(name, "fstat", e));
        let mut identity = fstat()?;
        crate::failpoint::hit("open.sized");
        if !identity.regular {
            return Err(OpenError::NotAFile {
                name: name.clone(),
                what: "not a regular file",
            }
            .into());
        }
        let page = sys::page_size() as u64;
        let started = Instant::now();
        let fields = loop {
            let mut bytes = [0u8; header::HEADER_SIZE];
            let want = usize::try_from(identity.size)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let got = sys::read_at(fd.as_fd(), &mut bytes[..want], 0)
                .map_err(|e| Error::from_io(name, "pread", e))?;
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
                // The file grew between the `fstat` and the read (a peer's growth sizes the
                // file, then records the size in the header): read it again with the new size.
                // A file cut short keeps its size, and is reported.
                Err(HeaderProblem::Truncated { .. })
                    if started.elapsed() < INIT_WAIT && fstat()?.size != identity.size =>
                {
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
            }
            .into());
        }
        let map = Mapping::new(fd.as_fd(), fields.max_size as usize, fields.size as usize)
            .map_err(|e| Error::from_io(name, "mmap", e))?;
        // `parse` saw READY in bytes read with `pread`; an acquire load of the same word
        // through the mapping orders this process's reads of what the creator wrote before it
        // (the type name, the kind area).
        map.control::<header::Header, 0>()
            .init_state
            .load(Ordering::Acquire);
        let type_name = map.control::<TypeName, TYPE_NAME_OFFSET>().load();
        let mut segment =
            Segment::assemble(name, fd, map, fields, type_name, identity, !participate);
        if participate {
            segment
                .reset_if_from_earlier_boot()
                .map_err(|e| Error::from_io(name, "flock", e))?;
            segment.attach();
        }
        Ok(segment)
    }

    /// If the segment was last initialised during an earlier boot (a `file:` segment after a
    /// reboot), resets its locks and its table of users, once, under an exclusive `flock`.
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
                for slot in self.lock_slots() {
                    slot.reset_after_reboot();
                }
            }
            for (word, value) in self.meta().boot_id.iter().zip(boot) {
                word.store(value, Ordering::Release);
            }
        }
        sys::unlock_file(self.fd.as_fd())
    }

    /// Opens `name` as an observer (see [`inspect::observe`](crate::inspect::observe)).
    pub(crate) fn open_observer(name: &SegmentName) -> Result<Self, Error> {
        Self::open_with(name, None, false)
    }

    /// Whether this segment was opened as an observer (see [`inspect::observe`]).
    ///
    /// [`inspect::observe`]: crate::inspect::observe
    pub(crate) fn is_observer(&self) -> bool {
        self.observer
    }

    /// How long the collections wait for this segment's lock (see `OBSERVER_LOCK_WAIT` and
    /// [`SegmentOptions::lock_timeout`](crate::SegmentOptions::lock_timeout)).
    pub(crate) fn lock_wait(&self) -> sys::Wait {
        match (self.observer, self.lock_timeout) {
            (true, Some(timeout)) => sys::Wait::For(timeout.min(OBSERVER_LOCK_WAIT)),
            (true, None) => sys::Wait::For(OBSERVER_LOCK_WAIT),
            (false, Some(timeout)) => sys::Wait::For(timeout),
            (false, None) => sys::Wait::Forever,
        }
    }

    /// Bounds the collections' wait for this segment's lock (see
    /// [`SegmentOptions::lock_timeout`](crate::SegmentOptions::lock_timeout)).
    pub(crate) fn with_lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Opens the segment `name` whatever its kind (for tools such as `memspace inspect`).
    ///
    /// # Errors
    ///
    /// [`OpenError`] if the name is invalid, the segment does not exist, is not readable, is not
    /// a memspace segment or is truncated; [`Error::Corrupt`] if its header is damaged;
    /// [`Error::Os`] if the system refuses.
    pub fn open_any(name: &str) -> Result<Self, Error> {
        Segment::open(&SegmentName::new(name)?, None)
    }

    /// The segment itself if it holds `expected`, for the `from_segment` constructors. A handle
    /// writes, so a segment that was only observed must pass the check an open makes of its
    /// owner and mode (see [`SegmentOptions`](crate::SegmentOptions)).
    pub(crate) fn expecting(self, expected: Kind) -> Result<Self, Error> {
        if self.observer {
            check_access(&self.name, &self.identity)?;
            // A handle claims locks and slots under this process's pid: the segment learns its
            // namespace, as an open does, so that no one judges those pids in another.
            self.note_user_namespace();
        }
        if self.kind() == expected {
            Ok(self)
        } else {
            Err(OpenError::WrongKind {
                name: self.name.clone(),
                found: self.kind(),
                expected,
            }
            .into())
        }
    }
}

fn open_object(name: &SegmentName) -> Result<OwnedFd, Error> {
    match name.location() {
        Location::Shm(path) => sys::shm_open(path).map_err(|e| Error::from_io(name, "shm_open", e)),
        Location::File(path) => sys::file_open(path).map_err(|e| Error::from_io(name, "open", e)),
        Location::Redis(_) => Err(not_a_segment(name).into()),
    }
}

fn problem_to_error(name: &SegmentName, problem: HeaderProblem) -> Error {
    let name = name.clone();
    match problem {
        HeaderProblem::UnknownKind(kind) => Error::Corrupt {
            name,
            what: format!("unknown kind {kind}"),
        },
        HeaderProblem::Corrupt(what) => Error::Corrupt { name, what },
        HeaderProblem::NotInitialized => OpenError::NotInitialized { name }.into(),
        HeaderProblem::Foreign => OpenError::Foreign { name }.into(),
        HeaderProblem::Version(found) => OpenError::VersionMismatch {
            name,
            found,
            expected: header::LAYOUT_VERSION,
        }
        .into(),
        HeaderProblem::Truncated {
            file_size,
            expected,
        } => OpenError::Truncated {
            name,
            file_size,
            expected,
        }
        .into(),
    }
}
