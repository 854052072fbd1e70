//! Growth: the holder of a segment's lock extends its file and publishes the new size; every
//! process maps growth made by others when it follows an offset past its mapping.
//!
//! # Bounded steps, ahead of the writers
//!
//! The committed size is always backed by `fallocate` (a full file system is
//! [`Error::NoSpace`] on the write that needed the space, never `SIGBUS` later), and
//! `fallocate` takes time in proportion to the bytes it allocates (on tmpfs about a
//! millisecond per MiB). Growing by doubling when a write needs more would make one write
//! pay for half the segment. Instead every growth allocates at most [`GROWTH_STEP`] more
//! than the write in hand needs (a segment smaller than the step doubles), and a segment of
//! [`AHEAD_FROM`] or more grows early: once a write reaches past half its committed size, the
//! segment grows by one step, so the committed size stays about twice what the writers use. A
//! collection that reserves a large range at once (the list's next index block, a third of its
//! bytes) then finds it already committed, and no write waits for more than the bytes it
//! writes itself plus one step. A range larger than what the writes before it add (a map's next
//! table, twice its current one, against records of a few dozen bytes) is committed ahead by
//! the collection itself, a step at a time as its writes advance ([`Segment::commit_toward`]). A smaller segment grows only when a write
//! needs more, so that small segments stay small.
//!
//! A step is a growth like any other: allocate, then publish the size (a process killed in
//! between leaves a file longer than the committed size, which the next growth allocates
//! again). A step ahead that finds the file system full is skipped, and the write goes on in
//! the space already committed; only the bytes the write itself needs are an error.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use super::RawGuard;
use super::Segment;
use crate::error::Error;
use crate::sys;

/// The most bytes one growth allocates beyond what the write that grows the segment needs:
/// about a millisecond of `fallocate` on tmpfs, a few on a loaded machine.
pub(crate) const GROWTH_STEP: u64 = 2 << 20;
/// How far a write must reach past the one that took a step ahead before this process takes
/// the next: steps are spread over the writes, at most four times as fast as they use the
/// space, so that after a large range reserved at once the next writes do not take step after
/// step while the other processes wait for the lock.
const STEP_PACE: u64 = GROWTH_STEP / 4;
/// How far a write must reach past the one that took a step toward a range reserved later
/// ([`Segment::commit_toward`]) before this process takes the next: such a range can be
/// several times what the writes before it add (a map's next table against its small
/// records), so these steps come thirty-two times as fast as the writes use the space.
const TOWARD_PACE: u64 = GROWTH_STEP / 32;
/// From this committed size on, a segment grows ahead of its writers (below it, only when a
/// write needs more, so that small segments stay small).
pub(crate) const AHEAD_FROM: u64 = 4 * GROWTH_STEP;

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
        let size = self.checked_size()?;
        if end > size {
            return Err(self.corrupt(format!(
                "an offset points to byte {end}, past the committed size {size}"
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

    /// Makes sure the segment holds at least `needed` bytes, committed (allocated) and mapped
    /// in this process, and grows it one step ahead of the writers when `needed` passes half
    /// the committed size (see the module docs). Only the holder of the segment's lock grows
    /// it (`held` proves it), so two growers never race.
    #[inline]
    pub(crate) fn grow_to(&self, needed: u64, held: &RawGuard<'_>) -> Result<(), Error> {
        if needed <= self.pace.quiet_below.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.grow_or_follow(needed, held)
    }

    #[inline(never)]
    fn grow_or_follow(&self, needed: u64, _held: &RawGuard<'_>) -> Result<(), Error> {
        let max = self.fields.max_size;
        if needed > max {
            return Err(Error::Full {
                name: self.name.clone(),
                needed,
                max_size: max,
            });
        }
        let size = self.checked_size()?;
        let paced_until = self.pace.paced_until.load(Ordering::Relaxed);
        if needed <= size && !(step_due(needed, size, max) && needed > paced_until) {
            let quiet = quiet_limit(size, max).max(paced_until);
            return self.mapped_and_quiet(needed, size, quiet);
        }
        let page = sys::page_size() as u64;
        let required = needed.next_multiple_of(page).min(max);
        let step = size
            .saturating_add(size.min(GROWTH_STEP))
            .next_multiple_of(page)
            .min(max);
        let new_size = required.max(step);
        match self.allocate(size, new_size) {
            Ok(()) => {}
            // The step ahead does not fit: go on with what is committed, and try again when
            // the segment next has to grow.
            Err(Error::NoSpace { .. }) if needed <= size => {
                return self.mapped_and_quiet(needed, size, size);
            }
            // Only what this write needs, then: the full file system is its error.
            Err(Error::NoSpace { .. }) if required < new_size && required > size => {
                self.allocate(size, required)?;
                return self.publish_size(needed, required, required);
            }
            Err(err) => return Err(err),
        }
        let paced_until = needed.saturating_add(STEP_PACE);
        self.pace.paced_until.store(paced_until, Ordering::Relaxed);
        self.publish_size(
            needed,
            new_size,
            quiet_limit(new_size, max).max(paced_until),
        )
    }

    /// Commits room ahead for a range a collection will reserve whole later (the map's next
    /// table), one step at a time: while `target` lies past the committed size, a write that
    /// ends at `at`, [`TOWARD_PACE`] past the one that took this process's last such step,
    /// takes one more step toward it. The range then finds its bytes committed, instead of one write
    /// waiting for all of them. A step that finds the file system full is skipped (the write
    /// that needs the bytes reports it).
    pub(crate) fn commit_toward(
        &self,
        at: u64,
        target: u64,
        _held: &RawGuard<'_>,
    ) -> Result<(), Error> {
        let max = self.fields.max_size;
        let size = self.checked_size()?;
        if target.min(max) <= size || at <= self.pace.toward_until.load(Ordering::Relaxed) {
            return Ok(());
        }
        let page = sys::page_size() as u64;
        let new_size = size
            .saturating_add(GROWTH_STEP)
            .min(target)
            .next_multiple_of(page)
            .min(max);
        match self.allocate(size, new_size) {
            Ok(()) => {}
            Err(Error::NoSpace { .. }) => return Ok(()),
            Err(err) => return Err(err),
        }
        self.pace
            .toward_until
            .store(at.saturating_add(TOWARD_PACE), Ordering::Relaxed);
        let paced_until = self.pace.paced_until.load(Ordering::Relaxed);
        self.publish_size(at, new_size, quiet_limit(new_size, max).max(paced_until))
    }

    /// The committed size, which the header holds: damage if it exceeds the maximum.
    fn checked_size(&self) -> Result<u64, Error> {
        let size = self.size();
        if size > self.fields.max_size {
            return Err(self.corrupt(format!(
                "the committed size {size} exceeds the maximum {}",
                self.fields.max_size
            )));
        }
        Ok(size)
    }

    /// Allocates the file's bytes `[from, to)`; a full file system is [`Error::NoSpace`].
    fn allocate(&self, from: u64, to: u64) -> Result<(), Error> {
        sys::allocate(self.fd.as_fd(), from, to).map_err(|source| {
            if source.raw_os_error() == Some(sys::ENOSPC) {
                Error::NoSpace {
                    name: self.name.clone(),
                    needed: to,
                }
            } else {
                self.os_error("fallocate", source)
            }
        })
    }

    /// Publishes `new_size`, whose bytes are allocated, then maps the first `needed` bytes.
    fn publish_size(&self, needed: u64, new_size: u64, quiet: u64) -> Result<(), Error> {
        crate::failpoint::hit("grow.allocated");
        let header = self.header();
        header.size.store(new_size, Ordering::Release);
        header.generation.fetch_add(1, Ordering::Release);
        self.mapped_and_quiet(needed, new_size, quiet)
    }

    /// Maps the first `needed` bytes, and lets later writes below `quiet` (at most the
    /// committed size and what is mapped) skip growth.
    fn mapped_and_quiet(&self, needed: u64, size: u64, quiet: u64) -> Result<(), Error> {
        self.ensure_mapped(needed)?;
        let quiet = quiet.min(size).min(self.map.len() as u64);
        self.pace.quiet_below.store(quiet, Ordering::Relaxed);
        Ok(())
    }
}

/// One process's record of when a segment next needs its growth path, read and changed by the
/// holder of the segment's lock.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// Writes that end at or below this need no growth: their bytes are committed and mapped
    /// in this process, and no step ahead is due. The committed size only grows, whoever grows
    /// it, so this stays true however stale it is.
    quiet_below: AtomicU64,
    /// This process takes no step ahead for a write that ends at or below this (see
    /// [`STEP_PACE`]).
    paced_until: AtomicU64,
    /// This process takes no step toward a range reserved later for a write that ends at or
    /// below this (see [`TOWARD_PACE`]).
    toward_until: AtomicU64,
}

/// Whether a write reaching `needed` in a segment of `size` committed bytes (at most `max`)
/// should grow it one step ahead: it reaches past half the committed size of a segment that
/// grows ahead.
fn step_due(needed: u64, size: u64, max: u64) -> bool {
    (AHEAD_FROM..max).contains(&size) && needed > size / 2
}

/// Below which writes need no growth once `size` bytes are committed.
fn quiet_limit(size: u64, max: u64) -> u64 {
    if (AHEAD_FROM..max).contains(&size) {
        size / 2
    } else {
        size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_due_past_half_the_committed_size_of_a_large_segment_below_its_maximum() {
        let (size, max) = (AHEAD_FROM, 4 * AHEAD_FROM);
        assert!(!step_due(size / 2, size, max));
        assert!(step_due(size / 2 + 1, size, max));
        assert!(!step_due(size - 1, size, size), "at the maximum");
        assert!(!step_due(size / 2 - 1, size / 2, max), "a small segment");
        assert_eq!(quiet_limit(size, max), size / 2);
        assert_eq!(quiet_limit(size, size), size);
        assert_eq!(quiet_limit(size / 2, max), size / 2);
    }
}
