//! Growth: the holder of a segment's lock extends its file and publishes the new size; every
//! process maps growth made by others when it follows an offset past its mapping.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use super::RawGuard;
use super::Segment;
use crate::error::Error;
use crate::sys;

impl Segment {
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
}
