//! How a segment reports damage: an offset or length read from it that falls outside the data
//! area, a file shrunk under this process's mapping, and operating-system errors.

use std::os::fd::AsFd;

use super::Segment;
use super::header::DATA_START;
use crate::error::Error;
use crate::sys;

impl Segment {
    /// Checks that `[offset, offset + len)`, a range named by words read from the segment, lies
    /// in the data area: at or past [`DATA_START`] (never in the control pages, whose header,
    /// lock and table of users no collection writes through an offset), a multiple of `align`,
    /// and inside the committed size; maps it if another process grew the segment. Returns the
    /// end of the range.
    ///
    /// Readers and writers both check every offset and length they follow with this, so a
    /// damaged one is an [`Error::Corrupt`] naming `what`: it can neither make a writer write
    /// outside the data area nor, as an end of data, make it grow the segment by more than
    /// what it appends there. `align` is a power of two (an alignment).
    #[inline]
    pub(crate) fn data_range(
        &self,
        what: impl FnOnce() -> String,
        offset: u64,
        len: u64,
        align: u64,
    ) -> Result<u64, Error> {
        match self.end_in_data_area(offset, len, align) {
            Some(end) => {
                self.ensure_mapped(end)?;
                Ok(end)
            }
            None => Err(self.outside_data_area(&what(), offset, len, align)),
        }
    }

    /// Whether [`Segment::data_range`] would accept `[offset, offset + len)` as it is mapped
    /// now, for a reader's fast path: `false` where it would fail, and where it would map
    /// growth another process made, for the reader's slow path to do that or say what is
    /// wrong. It does not look whether the mapping lost pages to a shrunk file: the reader
    /// does, once, at the end of its read.
    #[inline]
    pub(crate) fn holds_data(&self, offset: u64, len: u64, align: u64) -> bool {
        self.end_in_data_area(offset, len, align)
            .is_some_and(|end| end <= self.map.len() as u64)
    }

    /// The end of `[offset, offset + len)` if it lies in the data area, is a multiple of
    /// `align` and ends inside the committed size: the checks of [`Segment::data_range`],
    /// without mapping anything.
    #[inline]
    fn end_in_data_area(&self, offset: u64, len: u64, align: u64) -> Option<u64> {
        debug_assert!(align.is_power_of_two(), "an alignment of {align}");
        // A mask, not a division: `align` is rarely a constant here.
        let aligned = offset & (align - 1) == 0;
        offset
            .checked_add(len)
            .filter(|&end| offset >= DATA_START && aligned && end <= self.data_limit())
    }

    /// The committed size, read from the segment too: bounded by the validated maximum.
    #[inline]
    fn data_limit(&self) -> u64 {
        self.size().min(self.fields.max_size)
    }

    /// The error of [`Segment::data_range`], out of the way of the checks' fast path.
    #[cold]
    #[inline(never)]
    fn outside_data_area(&self, what: &str, offset: u64, len: u64, align: u64) -> Error {
        let size = self.data_limit();
        self.corrupt(format!(
            "{what} at {offset} ({len} bytes) lies outside the data area {DATA_START}..{size}{}",
            if offset.is_multiple_of(align) {
                String::new()
            } else {
                format!(" or is not a multiple of {align}")
            }
        ))
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
    /// its lock, returns this error instead of using them. (A [`Lock`](crate::sync::Lock),
    /// which holds no items, checks the one page it reads: its lock's.)
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
