//! Creating a segment: the backing object, its first allocation and mapping, the header
//! written with state `INITIALIZING`, the kind's own initialisation, then `READY`.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use super::header::{self, CONTROL_SIZE, FLAG_ANONYMOUS, HeaderFields, Kind};
use super::mapping::Mapping;
use super::name::{Location, not_a_segment};
use super::options::SegmentOptions;
use super::removal::{Removal, remove_object};
use super::{Segment, SegmentName};
use crate::error::Error;
use crate::sys;

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
        let access = options.access();
        let name = &name.clone().with_access(access);
        let fd = create_object(name, access.mode)?;
        // From here on, a failure must not leave a half-made object behind.
        let created = sys::file_info(fd.as_fd()).map(|info| Removal::of(&info));
        let remove = || {
            if let Ok(ours) = created {
                let _ = remove_object(name, ours);
            }
        };
        let built = (|| {
            sys::allocate(fd.as_fd(), 0, initial).map_err(|e| {
                if e.raw_os_error() == Some(sys::ENOSPC) {
                    Error::NoSpace {
                        name: name.clone(),
                        needed: initial,
                    }
                } else {
                    Error::from_io(name, "fallocate", e)
                }
            })?;
            let identity =
                sys::file_info(fd.as_fd()).map_err(|e| Error::from_io(name, "fstat", e))?;
            let map = Mapping::new(fd.as_fd(), max as usize, initial as usize)
                .map_err(|e| Error::from_io(name, "mmap", e))?;
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
            };
            let type_name = header::cut_type_name(type_name).to_owned();
            Ok::<_, Error>(
                Segment::assemble(name, fd, map, fields, type_name, identity, false)
                    .with_lock_timeout(options.lock_wait_limit()),
            )
        })();
        let mut segment = match built {
            Ok(segment) => segment,
            Err(err) => {
                remove();
                return Err(err);
            }
        };
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
        self.type_name_block().store(&self.type_name);
        // Zeros when this process cannot read the boot id: "unknown", adopted by the next
        // opener that can (see `reset_if_from_earlier_boot`).
        let boot = sys::boot_id().unwrap_or_default();
        for (word, value) in self.meta().boot_id.iter().zip(boot) {
            word.store(value, Ordering::Relaxed);
        }
        for slot in self.lock_slots() {
            slot.init();
        }
        init(self)?;
        h.init_state.store(header::STATE_READY, Ordering::Release);
        Ok(())
    }
}

fn create_object(name: &SegmentName, mode: u32) -> Result<OwnedFd, Error> {
    let fd = match name.location() {
        Location::Shm(path) => {
            sys::shm_create(path, mode).map_err(|e| Error::from_io(name, "shm_open", e))
        }
        Location::File(path) => {
            sys::file_create(path, mode).map_err(|e| Error::from_io(name, "open", e))
        }
        Location::Redis(_) => Err(not_a_segment(name).into()),
    }?;
    // The umask narrowed the mode given to open; the caller asked for exactly this one.
    if let Err(e) = sys::set_mode(fd.as_fd(), mode) {
        if let Ok(info) = sys::file_info(fd.as_fd()) {
            let _ = remove_object(name, Removal::of(&info));
        }
        return Err(Error::from_io(name, "fchmod", e));
    }
    Ok(fd)
}
