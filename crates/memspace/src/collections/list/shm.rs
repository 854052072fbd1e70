//! The shared-memory engine of a [`SharedList`](super::SharedList): index blocks and records in
//! a growable segment, appended under the segment's lock, read without it.
//!
//! # Layout
//!
//! ```text
//! kind area:  len      items published (readers load it with Acquire)
//!             tail     first free byte of the data area (meaningful under the lock)
//!             blocks   40 offsets of index blocks; block b holds 512 << b entries
//! data area:  index blocks (u64 record offsets) and records, bump-allocated from `tail`
//! record:     [u32 payload length][u32 CRC-32 of payload][payload][padding to 8] (record.rs)
//! ```
//!
//! # Append: reserve, write, publish
//!
//! Under the segment's lock a writer places the record at `tail`, growing the segment first if
//! needed, writes the record and its index entry, then publishes it by storing `len + 1` with
//! release ordering, and only then advances `tail`. A writer killed at any point before the
//! `len` store leaves nothing visible: the next writer overwrites the unpublished bytes. A
//! writer killed after it leaves a published item and a stale `tail`; the next locker is told
//! the owner died and recomputes `tail` from the published items and index blocks before it
//! writes (see `Raw::recover`). Readers take no lock: they load `len` and read only
//! published records, which are never written again.
//!
//! # Safety
//!
//! The one `unsafe` operation here is `record::write`. Its contract (no concurrent access to
//! the range from this process) holds because every write happens under the segment's lock, at
//! offsets at or past `tail`, which no published index entry points to: readers only follow
//! entries below `len`, and entries below `len` point below `tail`.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use crate::collections::record;
use crate::error::{Error, Result};
use crate::segment::{DATA_START, Segment};
use crate::shm_safe::ShmSafe;
use crate::sync::{RawGuard, lock_and_repair};

const INDEX_BLOCKS: usize = 40;
/// Entries in index block 0; block `b` holds `FIRST_BLOCK_ENTRIES << b`.
pub(super) const FIRST_BLOCK_ENTRIES: u64 = 512;

#[repr(C)]
pub(super) struct ListArea {
    pub(super) len: AtomicU64,
    pub(super) tail: AtomicU64,
    pub(super) blocks: [AtomicU64; INDEX_BLOCKS],
}

// SAFETY: `#[repr(C)]`, atomics only.
unsafe impl ShmSafe for ListArea {}

/// Which index block holds entry `index`, where in it, and how many entries the block has.
fn locate(index: u64) -> Option<(usize, u64, u64)> {
    let q = index / FIRST_BLOCK_ENTRIES + 1;
    let block = 63 - q.leading_zeros() as usize;
    if block >= INDEX_BLOCKS {
        return None;
    }
    let first = FIRST_BLOCK_ENTRIES * ((1u64 << block) - 1);
    Some((block, index - first, FIRST_BLOCK_ENTRIES << block))
}

/// The list's machinery, independent of the item type (shared by every `SharedList<T>` and
/// by `inspect::verify`).
#[derive(Clone, Copy)]
pub(super) struct Raw<'a> {
    segment: &'a Segment,
}

impl<'a> Raw<'a> {
    /// The list in `segment`, which holds one.
    pub(super) fn new(segment: &'a Segment) -> Self {
        Raw { segment }
    }

    /// Gives a new segment an empty list.
    pub(super) fn init(self) {
        let area = self.area();
        area.len.store(0, Ordering::Relaxed);
        area.tail.store(DATA_START, Ordering::Relaxed);
        for block in &area.blocks {
            block.store(0, Ordering::Relaxed);
        }
    }

    pub(super) fn area(self) -> &'a ListArea {
        self.segment.kind_area::<ListArea>()
    }

    /// The number of published items.
    pub(super) fn len(self) -> u64 {
        self.area().len.load(Ordering::Acquire)
    }

    /// Bytes of the segment in use: the control pages, the index and the records.
    pub(super) fn used_bytes(self) -> u64 {
        self.area().tail.load(Ordering::Relaxed)
    }

    /// Takes the segment's lock, repairing the list if the previous holder died.
    pub(super) fn lock(self) -> Result<RawGuard<'a>> {
        lock_and_repair(self.segment, |held| self.recover(held))
    }

    /// Recomputes `tail` after a writer died holding the lock: past the last published record
    /// and past every index block, whichever ends later. Unpublished bytes beyond are garbage
    /// and will be overwritten.
    fn recover(self, _held: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let mut tail = DATA_START;
        for (block, offset) in area.blocks.iter().enumerate() {
            let offset = offset.load(Ordering::Relaxed);
            if offset != 0 {
                let end = offset
                    .checked_add(8 * (FIRST_BLOCK_ENTRIES << block))
                    .ok_or_else(|| {
                        self.segment
                            .corrupt(format!("index block {block} overflows"))
                    })?;
                tail = tail.max(end);
            }
        }
        let len = area.len.load(Ordering::Relaxed);
        if len > 0 {
            tail = tail.max(record::end(self.segment, self.record_of(len - 1)?)?);
        }
        if tail > self.segment.size() {
            return Err(self.segment.corrupt(format!(
                "recovered end of data {tail} lies past the committed size {}",
                self.segment.size()
            )));
        }
        area.tail.store(tail, Ordering::Release);
        Ok(())
    }

    /// The offset of index block `block`, checked to lie whole in the data area (see
    /// [`Segment::data_range`]), or `None` if it was never reserved. Readers and writers both
    /// go through here: an offset read from the segment is followed only once it is checked.
    fn index_block(self, block: usize) -> Result<Option<u64>> {
        let offset = self.area().blocks[block].load(Ordering::Acquire);
        if offset == 0 {
            return Ok(None);
        }
        let entries = FIRST_BLOCK_ENTRIES << block;
        self.segment.data_range(
            || format!("the list's index block {block}"),
            offset,
            8 * entries,
            8,
        )?;
        Ok(Some(offset))
    }

    /// The end of data, checked against the list's invariants before anything is written
    /// there: it lies in the data area, inside the committed size, past the index block that
    /// item `len` (the next one) goes into (blocks are reserved in order, each at the end of
    /// data, so it ends after every earlier one in a valid list), and past the last published
    /// record. A damaged `len`, `tail` or block offset is [`Error::Corrupt`], so a writer never
    /// writes outside the data area, over the block or the record it appends after, or grows
    /// the segment for a block or a position that a valid list would not need. (An earlier
    /// block's offset is checked when an item in it is read.) The caller holds the lock.
    fn end_of_data(
        self,
        _held: &RawGuard<'_>,
        len: u64,
        (block, position): (usize, u64),
    ) -> Result<(u64, Option<u64>)> {
        let segment = self.segment;
        let tail = self.area().tail.load(Ordering::Relaxed);
        segment.data_range(|| "the list's end of data".to_owned(), tail, 0, 8)?;
        // The block item `len` goes into, or, when that one is still to be reserved (it is the
        // block's first item), the one before it, which must then be there.
        let current = self.index_block(block)?;
        let reached = match current {
            Some(offset) => Some((block, offset)),
            None if position == 0 && block == 0 => None,
            None if position == 0 => match self.index_block(block - 1)? {
                Some(offset) => Some((block - 1, offset)),
                None => return Err(self.never_reserved(len, block - 1)),
            },
            None => return Err(self.never_reserved(len, block)),
        };
        if let Some((reached, offset)) = reached {
            let end = offset + 8 * (FIRST_BLOCK_ENTRIES << reached);
            if end > tail {
                return Err(segment.corrupt(format!(
                    "the list's index block {reached} ends at {end}, past its end of data {tail}"
                )));
            }
        }
        if let Some(last) = len.checked_sub(1) {
            let end = record::end(segment, self.record_of(last)?).map_err(|e| at_item(e, last))?;
            if end > tail {
                return Err(segment.corrupt(format!(
                    "the list's end of data {tail} lies before the end of item {last} ({end})"
                )));
            }
        }
        Ok((tail, current))
    }

    fn never_reserved(self, len: u64, block: usize) -> Error {
        self.segment.corrupt(format!(
            "the list claims {len} items, but its index block {block} was never reserved"
        ))
    }

    /// Appends one encoded item; the caller holds the lock.
    pub(super) fn append(self, held: &RawGuard<'_>, payload: &[u8]) -> Result<()> {
        let area = self.area();
        let segment = self.segment;
        let len = area.len.load(Ordering::Relaxed);
        let Some((block, position, capacity)) = locate(len) else {
            // Every index block full: the most items a list holds. More is damage.
            let most = FIRST_BLOCK_ENTRIES * ((1 << INDEX_BLOCKS) - 1);
            return Err(if len == most {
                Error::Full {
                    name: self.segment.name().clone(),
                    needed: len + 1,
                    max_size: most,
                }
            } else {
                segment.corrupt(format!(
                    "the list claims {len} items, more than its index can hold ({most})"
                ))
            });
        };
        let (mut tail, current) = self.end_of_data(held, len, (block, position))?;
        let block_offset = if let Some(offset) = current {
            offset
        } else {
            // Reserve the next index block; `tail` covers it before anything else happens, so
            // a later failure in this push cannot hand its bytes to a record. (`tail` is
            // checked: inside the committed size, at most 2^46, so nothing overflows.)
            let offset = tail;
            let end = offset + 8 * capacity;
            segment.grow_to(end, held)?;
            area.blocks[block].store(offset, Ordering::Release);
            area.tail.store(end, Ordering::Release);
            tail = end;
            crate::failpoint::hit("list.block_reserved");
            offset
        };
        // SAFETY: we hold the lock (`held`) and `tail` is past every published record and
        // index block (checked by `end_of_data`; see the module's `# Safety`).
        let (record, end) = unsafe { record::write(segment, held, tail, payload) }?;
        // Inside the block, which `index_block` checked lies in the data area (or which was
        // just reserved there).
        let entry_at = block_offset + 8 * position;
        let entry = segment
            .mapping()
            .get::<AtomicU64>(entry_at)
            .ok_or_else(|| {
                segment.corrupt(format!(
                    "index block {block} at {block_offset} is not mapped"
                ))
            })?;
        entry.store(record, Ordering::Relaxed);
        crate::failpoint::hit("list.written");
        // Publish: the record, its entry and any growth happen-before a reader's Acquire load.
        area.len.store(len + 1, Ordering::Release);
        crate::failpoint::hit("list.published");
        area.tail.store(end, Ordering::Release);
        segment.note_writer();
        Ok(())
    }

    /// The record offset of published item `index`, bounds-checked.
    pub(super) fn record_of(self, index: u64) -> Result<u64> {
        let segment = self.segment;
        let (block, position, _) =
            locate(index).ok_or_else(|| segment.corrupt(format!("index {index} out of range")))?;
        let block_offset = self.index_block(block)?.ok_or_else(|| {
            segment.corrupt(format!(
                "item {index}: index block {block} was never \
                         reserved"
            ))
        })?;
        // Inside the checked block: no overflow, and mapped.
        let entry_at = block_offset + 8 * position;
        Ok(segment
            .mapping()
            .get::<AtomicU64>(entry_at)
            .ok_or_else(|| segment.corrupt(format!("item {index}: index entry not mapped")))?
            .load(Ordering::Relaxed))
    }

    /// Copies out and checks the payload of published item `index`.
    pub(super) fn read_payload(self, index: u64) -> Result<Vec<u8>> {
        record::read(self.segment, self.record_of(index)?).map_err(|err| at_item(err, index))
    }
}

/// Prefixes a damage report with the item it concerns.
fn at_item(err: Error, index: u64) -> Error {
    match err {
        Error::Corrupt { name, what } => Error::Corrupt {
            name,
            what: format!("item {index}: {what}"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_blocks_double() {
        assert_eq!(locate(0), Some((0, 0, 512)));
        assert_eq!(locate(511), Some((0, 511, 512)));
        assert_eq!(locate(512), Some((1, 0, 1024)));
        assert_eq!(locate(1535), Some((1, 1023, 1024)));
        assert_eq!(locate(1536), Some((2, 0, 2048)));
        assert!(locate(u64::MAX).is_none());
    }
}
