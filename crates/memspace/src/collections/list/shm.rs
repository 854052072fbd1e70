//! The shared-memory engine of a [`SharedList`](super::SharedList): index blocks and records in
//! a growable segment, changed under the segment's lock, read without it.
//!
//! # Layout
//!
//! ```text
//! kind area:  len      items published (readers load it with Acquire)
//!             tail     first free byte of the data area                         derived
//!             blocks   40 offsets of index blocks; block b holds 512 << b entries
//!             version  even when the items are at rest, odd while a holder of the
//!                      lock changes them in place (a sequence lock for readers)
//!             live     bytes of the index blocks and of the published records    derived
//!             journal  op | index | record | old_len | progress: an insert, a
//!                      remove or a swap-remove under way, for recovery to finish
//! data area:  index blocks (u64 record offsets) and records, bump-allocated from `tail`
//! record:     [u32 payload length][u32 CRC-32C of payload][payload][padding to 8] (record.rs)
//! ```
//!
//! Every index block and every record that an entry below `len` points to lies below `tail`
//! (an invariant every change keeps and recovery re-establishes). Bytes below `tail` that
//! nothing points to are garbage: `tail - DATA_START - live` bytes of it.
//!
//! # Append: reserve, write, publish
//!
//! Under the segment's lock a writer places the record at `tail`, growing the segment first if
//! needed, writes the record and its index entry, then publishes it by storing `len + 1` with
//! release ordering, and only then advances `tail`. A writer killed at any point before the
//! `len` store leaves nothing visible: the next writer overwrites the unpublished bytes. A
//! writer killed after it leaves a published item and a stale `tail`; the next locker is told
//! the owner died and recomputes `tail` (and `live`) from the published items and index
//! blocks before it writes (see `Raw::recover`).
//!
//! An append does not touch `version`: what it writes (a record at `tail`, the entry at
//! position `len`) is reachable only through the new `len`, whose release store publishes it
//! whole. A reader sees the list before the append or after it, never between.
//!
//! # Changes in place: a sequence lock and a journal
//!
//! Every other change makes `version` odd (`Change::begin`), changes the items, and makes it
//! even again:
//!
//! * **set** writes the new record at `tail`, then stores its offset into the entry: one store,
//!   the commit;
//! * **pop** and **truncate** store the shorter `len`: one store;
//! * **insert** (not at the end), **remove** (not of the last item) and **swap-remove** move
//!   entries, several stores. Before the first, the holder writes the journal: `index`,
//!   `record` (an insert's new record, written at `tail` beforehand), `old_len`, `progress`,
//!   and last `op` (the commit). It then moves the entries one by one, recording each move in
//!   `progress`, stores the new `len` and clears `op`. Each move copies an entry that no
//!   earlier move overwrote (an insert moves from the end, a remove from the front), so
//!   redoing the move `progress` names gives the same result: the journal can always be
//!   rolled forward;
//! * **clear** stores `len = 0`, then releases the index blocks from the last one down (the
//!   ones left always a prefix), then lowers `tail` to the start of the data area;
//! * **compaction** (below) moves records and index blocks, which leaves the items as they
//!   are.
//!
//! # Readers
//!
//! Readers take no lock. They load `version` (Acquire), read `len`, the entries and the
//! records, and load `version` again after an Acquire fence; they keep what they read only if
//! it did not change and was even, and otherwise try again: a few spins, then yields, then
//! sleeps of 50 µs. What they see was published by a writer, and a record they read is whole
//! (a torn or reclaimed one fails its checksum or moves `version`, and `version` is checked
//! before a checksum failure is reported as damage). A reader that keeps finding `version` odd
//! looks every few milliseconds whether the lock's holder died, and if so takes the lock
//! itself, which repairs the list (if nobody holds the lock, the odd word is damage: an
//! [`Error::Corrupt`]); one whose reads keep being overtaken by changes takes the
//! lock once and reads under it, so no writer can starve it.
//!
//! `get` first tries a fast path (`Raw::read_short`): one read with `version` even, of an item
//! of at most 128 bytes copied onto the stack a word at a time, kept only if `version` did not
//! move and no page was lost; anything else reads as above.
//!
//! # Space
//!
//! A replaced or removed record, and an index block a compaction no longer needs, is garbage
//! (a popped record at the very end is not: `tail` is lowered over it). When the garbage
//! outweighs the live bytes (and is at least 16 KiB), the change that made it compacts the
//! list as the map does: it copies the index blocks the items need and their records, in
//! order, past `tail`, switches every block word to the copy, and, when a second copy fits
//! below the first, copies again to the start of the data area and switches to that, which
//! frees everything after it. Each switch happens with `version` odd. A list thus uses at
//! most about three times the bytes of its live items and index, plus 16 KiB; a segment that
//! cannot grow for the first copy keeps its garbage (the change itself succeeded).
//!
//! # Crash recovery, step by step
//!
//! The next locker after a holder's death runs `Raw::recover` (the lock reports the owner
//! died); so does any locker that finds `op` set or `version` odd. Where the holder can have
//! been killed, and what the list is then:
//!
//! 1. before a commit store (a record written at `tail`, a block reserved, a compaction's copy
//!    built): nothing published points there. The list is as before; recovery lowers `tail`
//!    over the unreferenced bytes.
//! 2. after the one store of a set, pop, truncate or an append's `len`: the list is as after.
//! 3. after a journal's `op` store, at any move, or after the new `len`: recovery redoes the
//!    move `progress` names and the rest, stores `len` and clears `op`: the list is as after.
//!    Before the `op` store the journal is ignored: the list is as before (no entry moved).
//! 4. during clear, after `len = 0`: the list is empty (as after); any blocks left are a
//!    prefix, which a later append reuses.
//! 5. during a compaction's switch: every block word points either to the old block or to its
//!    copy, whose entries point to copies of the same records: the list's items are the same
//!    either way (as before, which is as after).
//!
//! Recovery then recomputes `tail` (past every referenced block and record) and `live`, and
//! makes `version` even. A reader that was reading meanwhile sees `version` differ from what
//! it started with, and reads again.
//!
//! # Safety
//!
//! The one `unsafe` operation here is `record::write`. Its contract (no concurrent access to
//! the range from this process) holds for every write but one case: every write happens under
//! the segment's lock, at offsets at or past `tail` (or, in a compaction's second copy, below
//! the first copy, after the list was switched to it), where no entry below `len` points. A
//! reader that followed an entry before a change made its record garbage may still be copying
//! those bytes when a later write reuses them: that copy is a race on plain bytes, as the map's
//! and the queue's `verify` have, whose result the reader discards because `version` moved
//! meanwhile (the writer issues a release fence before writing reclaimed bytes, so a reader
//! that saw any of them sees the new `version` after its acquire fence).

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::collections::changes::{self, Change, Window, count_down, count_up};
use crate::collections::record;
use crate::error::{Error, Result};
use crate::segment::{DATA_START, Segment};
use crate::shm_safe::ShmSafe;
use crate::sync::{RawGuard, lock_and_repair};

const INDEX_BLOCKS: usize = 40;
/// Entries in index block 0; block `b` holds `FIRST_BLOCK_ENTRIES << b`.
pub(super) const FIRST_BLOCK_ENTRIES: u64 = 512;
/// Garbage below this is never worth a compaction.
const MIN_GARBAGE: u64 = 16 << 10;

/// The journal's `op`: nothing under way.
pub(super) const OP_NONE: u64 = 0;
/// The journal's `op`: an insert at `index` of `record`.
pub(super) const OP_INSERT: u64 = 1;
/// The journal's `op`: a remove of the item at `index`.
pub(super) const OP_REMOVE: u64 = 2;
/// The journal's `op`: a swap-remove of the item at `index`.
pub(super) const OP_SWAP_REMOVE: u64 = 3;

/// The list's words in the segment's kind area (see the module docs).
#[repr(C)]
pub(super) struct ListArea {
    pub(super) len: AtomicU64,
    pub(super) tail: AtomicU64,
    pub(super) blocks: [AtomicU64; INDEX_BLOCKS],
    pub(super) version: AtomicU64,
    pub(super) live: AtomicU64,
    pub(super) journal: Journal,
}

/// A change that moves entries, recorded before its first move (see the module docs).
#[repr(C)]
pub(super) struct Journal {
    pub(super) op: AtomicU64,
    pub(super) index: AtomicU64,
    pub(super) record: AtomicU64,
    pub(super) old_len: AtomicU64,
    pub(super) progress: AtomicU64,
}

const _: () = assert!(size_of::<ListArea>() == 8 * (2 + INDEX_BLOCKS + 2 + 5));

// SAFETY: `#[repr(C)]`, atomics only: the same layout in every process, any bits a valid
// value, every change atomic, nothing to drop, offsets rather than pointers.
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

/// How many index blocks `len` entries take.
fn blocks_for(len: u64) -> usize {
    match len.checked_sub(1).and_then(locate) {
        Some((block, _, _)) => block + 1,
        None => 0,
    }
}

/// A copy of the list's index blocks and records that nothing points to yet.
struct Copied {
    blocks: Vec<u64>,
    end: u64,
    live: u64,
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
        area.version.store(0, Ordering::Relaxed);
        area.live.store(0, Ordering::Relaxed);
        let journal = &area.journal;
        for word in [
            &journal.op,
            &journal.index,
            &journal.record,
            &journal.old_len,
            &journal.progress,
        ] {
            word.store(0, Ordering::Relaxed);
        }
    }

    pub(super) fn area(self) -> &'a ListArea {
        self.segment.kind_area::<ListArea>()
    }

    /// The number of published items.
    pub(super) fn len(self) -> u64 {
        self.area().len.load(Ordering::Acquire)
    }

    /// Bytes of the segment in use: the control pages, the index and the records, garbage
    /// included.
    pub(super) fn used_bytes(self) -> u64 {
        self.area().tail.load(Ordering::Relaxed)
    }

    /// Takes the segment's lock, repairing the list if the previous holder died, or if a
    /// holder left a change unfinished (it failed in the middle, which only damage causes).
    #[inline]
    pub(super) fn lock(self) -> Result<RawGuard<'a>> {
        let held = lock_and_repair(self.segment, |held| self.recover(held))?;
        let area = self.area();
        if area.journal.op.load(Ordering::Relaxed) != OP_NONE
            || !area.version.load(Ordering::Relaxed).is_multiple_of(2)
        {
            self.recover(&held)?;
        }
        Ok(held)
    }

    /// Finishes what a holder of the lock left unfinished (see "Crash recovery" in the module
    /// docs): rolls the journal forward, recomputes `tail` and `live`, and makes `version`
    /// even.
    fn recover(self, held: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let journal = &area.journal;
        let op = journal.op.load(Ordering::Acquire);
        if op != OP_NONE {
            // The journal is written inside a change: `version` is odd until it is cleared.
            let index = journal.index.load(Ordering::Relaxed);
            let old_len = journal.old_len.load(Ordering::Relaxed);
            let len = area.len.load(Ordering::Relaxed);
            let expected = if op == OP_INSERT {
                old_len.checked_add(1)
            } else {
                old_len.checked_sub(1)
            };
            if index >= old_len || (len != old_len && Some(len) != expected) {
                return Err(self.segment.corrupt(format!(
                    "its journal (operation {op} at {index} of {old_len} items) does not match \
                     its {len} items"
                )));
            }
            match op {
                OP_INSERT => self.finish_insert(held)?,
                OP_REMOVE => self.finish_remove(held)?,
                OP_SWAP_REMOVE => self.finish_swap_remove(held)?,
                other => {
                    return Err(self
                        .segment
                        .corrupt(format!("its journal names an unknown operation {other}")));
                }
            }
        }
        let (tail, live) = self.measure()?;
        if tail > self.segment.size() {
            return Err(self.segment.corrupt(format!(
                "recovered end of data {tail} lies past the committed size {}",
                self.segment.size()
            )));
        }
        area.tail.store(tail, Ordering::Release);
        area.live.store(live, Ordering::Relaxed);
        let version = area.version.load(Ordering::Relaxed);
        if !version.is_multiple_of(2) {
            area.version
                .store(version.wrapping_add(1), Ordering::Release);
        }
        Ok(())
    }

    /// The end of everything the list references (its index blocks and published records)
    /// and their bytes, read under the lock.
    fn measure(self) -> Result<(u64, u64)> {
        let area = self.area();
        let (mut tail, mut live) = (DATA_START, 0);
        for (block, offset) in area.blocks.iter().enumerate() {
            let offset = offset.load(Ordering::Relaxed);
            if offset != 0 {
                let bytes = 8 * (FIRST_BLOCK_ENTRIES << block);
                let end = offset.checked_add(bytes).ok_or_else(|| {
                    self.segment
                        .corrupt(format!("index block {block} overflows"))
                })?;
                tail = tail.max(end);
                live += bytes;
            }
        }
        for index in 0..area.len.load(Ordering::Relaxed) {
            let record = self.record_of(index)?;
            let end = record::end(self.segment, record).map_err(|e| at_item(e, index))?;
            tail = tail.max(end);
            live += end - record;
        }
        Ok((tail, live))
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

    /// The end of data and the offset of index block `block` if the list is as this handle's
    /// last append left it: the same length and end of data, the next item in the same block
    /// as the last one (`position` past 0), that block at the same offset, and the last entry
    /// naming the record it wrote. That append checked them (through [`Raw::end_of_data`]) and
    /// then ended the data with its own record, so they hold again without reading the last
    /// record back. Any other change of a list moves its length, its end of data or its last
    /// entry. Remembered in the segment's [`Memo`](crate::segment::Memo) (length, end of data,
    /// block offset, record), under the lock.
    #[inline]
    fn as_left(self, len: u64, (block, position): (usize, u64)) -> Option<(u64, u64)> {
        let area = self.area();
        let [left_len, left_tail, left_offset, left_record] = self.segment.memo().words();
        let tail = area.tail.load(Ordering::Relaxed);
        if position == 0
            || left_len.load(Ordering::Relaxed) != len
            || left_tail.load(Ordering::Relaxed) != tail
        {
            return None;
        }
        let offset = area.blocks[block].load(Ordering::Acquire);
        if left_offset.load(Ordering::Relaxed) != offset {
            return None;
        }
        // Inside the block that append checked (or reserved): no overflow.
        let last = self
            .segment
            .mapping()
            .get::<AtomicU64>(offset + 8 * (position - 1))?;
        (last.load(Ordering::Relaxed) == left_record.load(Ordering::Relaxed))
            .then_some((tail, offset))
    }

    /// Remembers how this handle's append left the list, for [`Raw::as_left`].
    #[inline]
    fn leave(self, len: u64, tail: u64, offset: u64, record: u64) {
        let [left_len, left_tail, left_offset, left_record] = self.segment.memo().words();
        left_len.store(len, Ordering::Relaxed);
        left_tail.store(tail, Ordering::Relaxed);
        left_offset.store(offset, Ordering::Relaxed);
        left_record.store(record, Ordering::Relaxed);
    }

    fn never_reserved(self, len: u64, block: usize) -> Error {
        self.segment.corrupt(format!(
            "the list claims {len} items, but its index block {block} was never reserved"
        ))
    }

    /// The entry of position `len` (the next item's), its index block reserved at the end of
    /// data if it was not yet, and the end of data after that; with that block's offset. The
    /// caller holds the lock.
    ///
    /// When the list is as this handle's last append left it (see [`Raw::as_left`]), in line;
    /// otherwise through the checks of [`Raw::end_of_data`], out of line.
    #[allow(
        clippy::inline_always,
        reason = "measured: left to the compiler, the append called it out of line"
    )]
    #[inline(always)]
    fn next_entry(self, held: &RawGuard<'_>, len: u64) -> Result<(&'a AtomicU64, u64, u64)> {
        if let Some((block, position, _)) = locate(len)
            && let Some((tail, offset)) = self.as_left(len, (block, position))
            // Inside the block, which the append that left it checked lies in the data area.
            && let Some(entry) = self.segment.mapping().get::<AtomicU64>(offset + 8 * position)
        {
            return Ok((entry, tail, offset));
        }
        self.next_entry_checked(held, len)
    }

    /// [`Raw::next_entry`] after checking the end of data and the index block.
    #[inline(never)]
    fn next_entry_checked(
        self,
        held: &RawGuard<'_>,
        len: u64,
    ) -> Result<(&'a AtomicU64, u64, u64)> {
        let area = self.area();
        let segment = self.segment;
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
            // a later failure in this change cannot hand its bytes to a record. (`tail` is
            // checked: inside the committed size, at most 2^46, so nothing overflows.)
            let offset = tail;
            let end = offset + 8 * capacity;
            segment.grow_to(end, held)?;
            area.blocks[block].store(offset, Ordering::Release);
            area.tail.store(end, Ordering::Release);
            count_up(&area.live, 8 * capacity);
            tail = end;
            crate::failpoint::hit("list.block_reserved");
            offset
        };
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
        Ok((entry, tail, block_offset))
    }

    /// Writes `payload` as a record at `at`, which nothing published points to, and returns
    /// its offset and end. The caller holds the lock.
    #[inline]
    fn write_record(self, held: &RawGuard<'_>, at: u64, payload: &[u8]) -> Result<(u64, u64)> {
        // A reader still copying garbage here (it followed an entry before a change made this
        // garbage) must find `version` moved once it sees any byte written below: the change
        // that made it garbage moved `version` before this fence (see the module's `# Safety`).
        fence(Ordering::Release);
        // SAFETY: we hold the lock (`held`) and `at` is at or past `tail`, past every
        // published record and index block (checked by `end_of_data`), or in a compaction's
        // second copy below the first copy, which is all the list points to (see the module's
        // `# Safety`).
        unsafe { record::write(self.segment, held, at, payload) }
    }

    /// Appends one encoded item; the caller holds the lock.
    pub(super) fn append(self, held: &RawGuard<'_>, payload: &[u8]) -> Result<()> {
        let area = self.area();
        let len = area.len.load(Ordering::Relaxed);
        let (entry, tail, offset) = self.next_entry(held, len)?;
        let (record, end) = self.write_record(held, tail, payload)?;
        entry.store(record, Ordering::Relaxed);
        crate::failpoint::hit("list.written");
        // Publish: the record, its entry and any growth happen-before a reader's Acquire load.
        area.len.store(len + 1, Ordering::Release);
        crate::failpoint::hit("list.published");
        area.tail.store(end, Ordering::Release);
        count_up(&area.live, end - record);
        self.segment.note_writer();
        self.leave(len + 1, end, offset, record);
        Ok(())
    }

    /// The error for `index` past the end of a list of `len` items.
    fn out_of_range(self, index: u64, len: u64) -> Error {
        Error::IndexOutOfRange {
            name: self.segment.name().clone(),
            index,
            len,
        }
    }

    /// Replaces the item at `index` by `payload`; the caller holds the lock.
    pub(super) fn set(self, held: &RawGuard<'_>, index: u64, payload: &[u8]) -> Result<()> {
        let area = self.area();
        let len = area.len.load(Ordering::Relaxed);
        if index >= len {
            return Err(self.out_of_range(index, len));
        }
        let entry = self.entry(index)?;
        let old = entry.load(Ordering::Relaxed);
        let old_end = record::end(self.segment, old).map_err(|e| at_item(e, index))?;
        let tail = self.checked_tail(held, len)?;
        let (record, end) = self.write_record(held, tail, payload)?;
        crate::failpoint::hit("list.set_written");
        {
            let _change = Change::begin(&area.version, held);
            // Commit: one store.
            entry.store(record, Ordering::Relaxed);
            crate::failpoint::hit("list.set_switched");
        }
        area.tail.store(end, Ordering::Release);
        count_up(&area.live, end - record);
        count_down(&area.live, old_end - old);
        self.segment.note_writer();
        self.tidy(held)
    }

    /// The end of data, checked to lie in the data area and past the last published record,
    /// for a change that writes a record there while `len` items are published (their index
    /// blocks are there already). The caller holds the lock.
    fn checked_tail(self, held: &RawGuard<'_>, len: u64) -> Result<u64> {
        let last = locate(len.saturating_sub(1)).ok_or_else(|| {
            self.segment.corrupt(format!(
                "the list claims {len} items, more than its index holds"
            ))
        })?;
        // `end_of_data` checks the block of the item it is given, which exists here.
        let (tail, _) = self.end_of_data(held, len, (last.0, last.1))?;
        Ok(tail)
    }

    /// Inserts `payload` at `index` (at most `len`), moving the items from there one place
    /// up; the caller holds the lock.
    pub(super) fn insert(self, held: &RawGuard<'_>, index: u64, payload: &[u8]) -> Result<()> {
        let area = self.area();
        let len = area.len.load(Ordering::Relaxed);
        if index > len {
            return Err(self.out_of_range(index, len));
        }
        if index == len {
            return self.append(held, payload);
        }
        // Position `len` gets the last item: its block is reserved first, as for an append.
        let (_, tail, _) = self.next_entry(held, len)?;
        // Every entry that moves is checked before the first move.
        self.check_entries(index, len + 1)?;
        let (record, end) = self.write_record(held, tail, payload)?;
        crate::failpoint::hit("list.insert_written");
        {
            let _change = Change::begin(&area.version, held);
            self.journal(OP_INSERT, index, record, len, len);
            crate::failpoint::hit("list.insert_journaled");
            self.finish_insert(held)?;
        }
        area.tail.store(end, Ordering::Release);
        count_up(&area.live, end - record);
        self.segment.note_writer();
        Ok(())
    }

    /// Writes the journal, `op` last (the commit of a change that moves entries).
    fn journal(self, op: u64, index: u64, record: u64, old_len: u64, progress: u64) {
        let journal = &self.area().journal;
        journal.index.store(index, Ordering::Relaxed);
        journal.record.store(record, Ordering::Relaxed);
        journal.old_len.store(old_len, Ordering::Relaxed);
        journal.progress.store(progress, Ordering::Relaxed);
        journal.op.store(op, Ordering::Release);
    }

    /// Checks that the entries of positions `from..to` can be reached (their index blocks
    /// reserved and mapped), so that moving them cannot fail halfway.
    fn check_entries(self, from: u64, to: u64) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let (first, _, _) = locate(from).ok_or_else(|| self.out_of_range(from, to))?;
        let (last, _, _) = locate(to - 1).ok_or_else(|| self.out_of_range(to - 1, to))?;
        for block in first..=last {
            if self.index_block(block)?.is_none() {
                return Err(self.never_reserved(to, block));
            }
        }
        Ok(())
    }

    /// Rolls the journal's insert forward from its `progress`: moves entries
    /// `index..progress` one place up (from the end), stores the new record at `index`, the
    /// new `len`, and clears the journal. `version` is odd (a change, or recovery).
    fn finish_insert(self, _held: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let journal = &area.journal;
        let index = journal.index.load(Ordering::Relaxed);
        let old_len = journal.old_len.load(Ordering::Relaxed);
        let mut progress = journal.progress.load(Ordering::Relaxed);
        if progress > old_len || progress < index {
            return Err(self.bad_progress(progress));
        }
        while progress > index {
            let moved = self.entry(progress - 1)?.load(Ordering::Relaxed);
            self.entry(progress)?.store(moved, Ordering::Relaxed);
            progress -= 1;
            journal.progress.store(progress, Ordering::Relaxed);
            crate::failpoint::hit("list.moving");
        }
        self.entry(index)?
            .store(journal.record.load(Ordering::Relaxed), Ordering::Relaxed);
        area.len.store(old_len + 1, Ordering::Release);
        crate::failpoint::hit("list.moved_all");
        journal.op.store(OP_NONE, Ordering::Release);
        Ok(())
    }

    /// Rolls the journal's remove forward from its `progress`: moves entries
    /// `progress + 1..old_len` one place down, stores the new `len`, and clears the journal.
    fn finish_remove(self, _held: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let journal = &area.journal;
        let index = journal.index.load(Ordering::Relaxed);
        let old_len = journal.old_len.load(Ordering::Relaxed);
        let mut progress = journal.progress.load(Ordering::Relaxed);
        if progress >= old_len || progress < index {
            return Err(self.bad_progress(progress));
        }
        while progress + 1 < old_len {
            let moved = self.entry(progress + 1)?.load(Ordering::Relaxed);
            self.entry(progress)?.store(moved, Ordering::Relaxed);
            progress += 1;
            journal.progress.store(progress, Ordering::Relaxed);
            crate::failpoint::hit("list.moving");
        }
        area.len.store(old_len - 1, Ordering::Release);
        crate::failpoint::hit("list.moved_all");
        journal.op.store(OP_NONE, Ordering::Release);
        Ok(())
    }

    /// Rolls the journal's swap-remove forward: the last entry to `index`, the new `len`.
    fn finish_swap_remove(self, _held: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let journal = &area.journal;
        let index = journal.index.load(Ordering::Relaxed);
        let old_len = journal.old_len.load(Ordering::Relaxed);
        let last = self.entry(old_len - 1)?.load(Ordering::Relaxed);
        self.entry(index)?.store(last, Ordering::Relaxed);
        crate::failpoint::hit("list.moving");
        area.len.store(old_len - 1, Ordering::Release);
        crate::failpoint::hit("list.moved_all");
        journal.op.store(OP_NONE, Ordering::Release);
        Ok(())
    }

    fn bad_progress(self, progress: u64) -> Error {
        self.segment.corrupt(format!(
            "its journal's progress {progress} lies outside the change it records"
        ))
    }

    /// Removes the item at `index` (below `len`), moving the items after it one place down,
    /// once `take` accepted its payload (a `take` that fails leaves the list unchanged); the
    /// caller holds the lock.
    pub(super) fn remove<R>(
        self,
        held: &RawGuard<'_>,
        index: u64,
        swap: bool,
        take: impl FnOnce(Vec<u8>) -> Result<R>,
    ) -> Result<R> {
        let area = self.area();
        let len = area.len.load(Ordering::Relaxed);
        if index >= len {
            return Err(self.out_of_range(index, len));
        }
        if index == len - 1 {
            return self
                .pop(held, take)?
                .ok_or_else(|| self.out_of_range(index, 0));
        }
        self.check_entries(index, len)?;
        let record = self.record_of(index)?;
        let (taken, bytes) = self.take(index, record, take)?;
        {
            let _change = Change::begin(&area.version, held);
            let op = if swap { OP_SWAP_REMOVE } else { OP_REMOVE };
            self.journal(op, index, record, len, index);
            crate::failpoint::hit("list.remove_journaled");
            if swap {
                self.finish_swap_remove(held)?;
            } else {
                self.finish_remove(held)?;
            }
        }
        count_down(&area.live, bytes);
        self.segment.note_writer();
        self.tidy(held)?;
        Ok(taken)
    }

    /// Reads the item at `index` (whose record is at `record`) and hands it to `take`; returns
    /// what `take` made of it and the record's size.
    fn take<R>(
        self,
        index: u64,
        record: u64,
        take: impl FnOnce(Vec<u8>) -> Result<R>,
    ) -> Result<(R, u64)> {
        let payload = record::read(self.segment, record).map_err(|e| at_item(e, index))?;
        let bytes = record::size(payload.len());
        Ok((take(payload)?, bytes))
    }

    /// Removes the last item, once `take` accepted its payload; `None` if the list is empty.
    /// The caller holds the lock.
    pub(super) fn pop<R>(
        self,
        held: &RawGuard<'_>,
        take: impl FnOnce(Vec<u8>) -> Result<R>,
    ) -> Result<Option<R>> {
        let area = self.area();
        let len = area.len.load(Ordering::Relaxed);
        let Some(last) = len.checked_sub(1) else {
            return Ok(None);
        };
        let record = self.record_of(last)?;
        let (taken, bytes) = self.take(last, record, take)?;
        {
            let _change = Change::begin(&area.version, held);
            // Commit: one store.
            area.len.store(last, Ordering::Release);
            crate::failpoint::hit("list.popped");
        }
        count_down(&area.live, bytes);
        // The last record written (no set or block since): its space is free again at once.
        if record + bytes == area.tail.load(Ordering::Relaxed) {
            area.tail.store(record, Ordering::Release);
        }
        self.segment.note_writer();
        self.tidy(held)?;
        Ok(Some(taken))
    }

    /// Shortens the list to its first `keep` items (nothing if it is not longer); the caller
    /// holds the lock.
    pub(super) fn truncate(self, held: &RawGuard<'_>, keep: u64) -> Result<()> {
        let area = self.area();
        let len = area.len.load(Ordering::Relaxed);
        if keep >= len {
            return Ok(());
        }
        if keep == 0 {
            self.clear(held);
            return Ok(());
        }
        let mut bytes = 0;
        for index in keep..len {
            let record = self.record_of(index)?;
            bytes += record::end(self.segment, record).map_err(|e| at_item(e, index))? - record;
        }
        {
            let _change = Change::begin(&area.version, held);
            // Commit: one store.
            area.len.store(keep, Ordering::Release);
            crate::failpoint::hit("list.truncated");
        }
        count_down(&area.live, bytes);
        self.segment.note_writer();
        self.tidy(held)
    }

    /// Removes every item and frees all the space the list took; the caller holds the lock.
    pub(super) fn clear(self, held: &RawGuard<'_>) {
        let area = self.area();
        {
            let _change = Change::begin(&area.version, held);
            // Commit: one store. What follows frees space nothing published points to.
            area.len.store(0, Ordering::Release);
            crate::failpoint::hit("list.cleared");
            // From the last block down: the blocks left are always a prefix.
            for block in area.blocks.iter().rev() {
                block.store(0, Ordering::Release);
            }
            area.tail.store(DATA_START, Ordering::Release);
            area.live.store(0, Ordering::Relaxed);
        }
        self.segment.note_writer();
    }

    /// Compacts the list if its garbage outweighs its live bytes (see "Space" in the module
    /// docs). A segment that cannot grow for the copy keeps its garbage.
    fn tidy(self, held: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let live = area.live.load(Ordering::Relaxed);
        let garbage = area
            .tail
            .load(Ordering::Relaxed)
            .saturating_sub(DATA_START)
            .saturating_sub(live);
        if garbage < MIN_GARBAGE.max(live) {
            return Ok(());
        }
        match self.compact(held) {
            Err(Error::Full { .. } | Error::NoSpace { .. }) => Ok(()),
            other => other,
        }
    }

    /// Copies the list's index blocks and records past `tail`, switches to the copy, and, if a
    /// second copy fits below the first, copies it again to the start of the data area and
    /// switches to that.
    fn compact(self, held: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let len = area.len.load(Ordering::Relaxed);
        let far_start = self.checked_tail(held, len)?;
        let far = self.copy(held, len, far_start)?;
        crate::failpoint::hit("list.copy_built");
        self.switch_to(held, &far, "list.copy_switched");
        if DATA_START + (far.end - far_start) <= far_start {
            let near = self.copy(held, len, DATA_START)?;
            crate::failpoint::hit("list.near_copy_built");
            self.switch_to(held, &near, "list.near_copy_switched");
        }
        Ok(())
    }

    /// Writes the index blocks for `len` items and a copy of each item's record at `at` and
    /// after; nothing points to them yet. The caller holds the lock.
    fn copy(self, held: &RawGuard<'_>, len: u64, at: u64) -> Result<Copied> {
        let mut end = at;
        let mut blocks = Vec::new();
        for block in 0..blocks_for(len) {
            let bytes = 8 * (FIRST_BLOCK_ENTRIES << block);
            self.segment.grow_to(end + bytes, held)?;
            blocks.push(end);
            end += bytes;
        }
        let mut live = end - at;
        for index in 0..len {
            let payload = self.read_payload(index)?;
            let (record, record_end) = self.write_record(held, end, &payload)?;
            let (block, position, _) = locate(index).expect("below len: located");
            let entry_at = blocks[block] + 8 * position;
            self.segment
                .mapping()
                .get::<AtomicU64>(entry_at)
                .ok_or_else(|| {
                    self.segment
                        .corrupt(format!("copied entry {index} not mapped"))
                })?
                .store(record, Ordering::Relaxed);
            live += record_end - record;
            end = record_end;
        }
        Ok(Copied { blocks, end, live })
    }

    /// Points every block word to `copy` (the ones it does not need to nothing, from the last
    /// down), with `version` odd, stops at `failpoint`, and sets `tail` and `live`.
    fn switch_to(self, held: &RawGuard<'_>, copy: &Copied, failpoint: &'static str) {
        let area = self.area();
        {
            let _change = Change::begin(&area.version, held);
            for (word, offset) in area.blocks.iter().zip(&copy.blocks) {
                word.store(*offset, Ordering::Release);
            }
            for word in area.blocks.iter().skip(copy.blocks.len()).rev() {
                word.store(0, Ordering::Release);
            }
            crate::failpoint::hit(failpoint);
            area.tail.store(copy.end, Ordering::Release);
            area.live.store(copy.live, Ordering::Relaxed);
        }
    }

    /// The entry of published position `index`, bounds-checked.
    fn entry(self, index: u64) -> Result<&'a AtomicU64> {
        let segment = self.segment;
        let (block, position, _) =
            locate(index).ok_or_else(|| segment.corrupt(format!("index {index} out of range")))?;
        let block_offset = self.index_block(block)?.ok_or_else(|| {
            segment.corrupt(format!(
                "item {index}: index block {block} was never reserved"
            ))
        })?;
        // Inside the checked block: no overflow, and mapped.
        let entry_at = block_offset + 8 * position;
        segment
            .mapping()
            .get::<AtomicU64>(entry_at)
            .ok_or_else(|| segment.corrupt(format!("item {index}: index entry not mapped")))
    }

    /// The record offset of published item `index`, bounds-checked.
    pub(super) fn record_of(self, index: u64) -> Result<u64> {
        Ok(self.entry(index)?.load(Ordering::Relaxed))
    }

    /// Copies out and checks the payload of published item `index`.
    pub(super) fn read_payload(self, index: u64) -> Result<Vec<u8>> {
        record::read(self.segment, self.record_of(index)?).map_err(|err| at_item(err, index))
    }

    /// Copies out the payload of item `index` for a reader without the lock: `None` if
    /// `window` closed before the payload was allocated for (the record may be garbage).
    fn read_in(self, window: &Window<'_>, index: u64) -> Result<Option<Vec<u8>>> {
        let record = self.record_of(index)?;
        // A garbage length could ask for a large buffer: check first that it is not garbage.
        record::payload_len(self.segment, record).map_err(|e| at_item(e, index))?;
        if !window.unchanged() {
            return Ok(None);
        }
        record::read(self.segment, record)
            .map(Some)
            .map_err(|e| at_item(e, index))
    }

    /// Reads item `index` without the lock and returns what `value` makes of its payload;
    /// `None` past the end. An item of at most [`record::SHORT_PAYLOAD`] bytes read while no
    /// change is under way is copied onto the stack by [`Raw::read_short`]; anything else
    /// (a longer item, a change that overlaps, anything that looks wrong) is read by
    /// [`Raw::get`], which retries, waits, and says what is wrong.
    #[inline]
    pub(super) fn get_with<R>(
        self,
        index: u64,
        value: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<Option<R>> {
        let mut copy = [[0; 8]; record::SHORT_PAYLOAD / 8];
        match self.read_short(index, &mut copy) {
            Short::Item(len) => value(&copy.as_flattened()[..len]).map(Some),
            Short::PastTheEnd => Ok(None),
            Short::Slow => self.get(index)?.map(|payload| value(&payload)).transpose(),
        }
    }

    /// [`Raw::get_with`]'s fast path: item `index` read in one window between two changes,
    /// its payload (at most [`record::SHORT_PAYLOAD`] bytes) copied into `copy`; `Slow` for
    /// anything else and for anything that does not look right. It decides as the slow path's
    /// first read would, and returns nothing that read would not: a reading kept only if
    /// `version` did not move and no page of the mapping was lost.
    #[inline]
    fn read_short(self, index: u64, copy: &mut record::ShortCopy) -> Short {
        let area = self.area();
        let Some(window) = Window::open(&area.version) else {
            return Short::Slow;
        };
        let found = if index < area.len.load(Ordering::Acquire) {
            let Some(len) = self.copy_item(index, copy) else {
                return Short::Slow;
            };
            Short::Item(len)
        } else {
            Short::PastTheEnd
        };
        if window.unchanged() && self.segment.is_intact() {
            found
        } else {
            Short::Slow
        }
    }

    /// Copies the payload of item `index`, below `len`, into `copy` ([`record::read_short`]):
    /// its length, or `None` if anything on the way does not look right.
    #[inline]
    fn copy_item(self, index: u64, copy: &mut record::ShortCopy) -> Option<usize> {
        let (block, position, entries) = locate(index)?;
        let block_offset = self.area().blocks[block].load(Ordering::Acquire);
        if block_offset == 0 || !self.segment.holds_data(block_offset, 8 * entries, 8) {
            return None;
        }
        // Inside the checked block: no overflow.
        let entry = self
            .segment
            .mapping()
            .get::<AtomicU64>(block_offset + 8 * position)?;
        let record = entry.load(Ordering::Relaxed);
        crate::failpoint::hit("list.read_entry");
        record::read_short(self.segment, record, copy)
    }

    /// The payload of item `index`, or `None` past the end, read without the lock.
    pub(super) fn get(self, index: u64) -> Result<Option<Vec<u8>>> {
        self.read_stable(|raw, window| {
            if index >= raw.area().len.load(Ordering::Acquire) {
                return Ok(Some(None));
            }
            Ok(raw.read_in(window, index)?.map(Some))
        })
    }

    /// The payload of the last item, or `None` if the list is empty, read without the lock.
    pub(super) fn last(self) -> Result<Option<(u64, Vec<u8>)>> {
        self.read_stable(|raw, window| {
            let Some(index) = raw.area().len.load(Ordering::Acquire).checked_sub(1) else {
                return Ok(Some(None));
            };
            Ok(raw.read_in(window, index)?.map(|p| Some((index, p))))
        })
    }

    /// Every item's payload, as published at one moment, read without the lock.
    pub(super) fn all(self) -> Result<Vec<Vec<u8>>> {
        self.read_stable(|raw, window| {
            let len = raw.area().len.load(Ordering::Acquire);
            let mut items = Vec::with_capacity(usize::try_from(len.min(1 << 20)).unwrap_or(0));
            for index in 0..len {
                match raw.read_in(window, index)? {
                    Some(payload) => items.push(payload),
                    None => return Ok(None),
                }
            }
            Ok(Some(items))
        })
    }

    /// Runs `read` between two changes (see "Readers" in the module docs and
    /// [`changes::read_stable`]).
    fn read_stable<R>(
        self,
        mut read: impl FnMut(Raw<'a>, &Window<'a>) -> Result<Option<R>>,
    ) -> Result<R> {
        changes::read_stable(
            self.segment,
            &self.area().version,
            || self.lock(),
            |window| read(self, window),
        )
    }
}

/// What [`Raw::read_short`] found.
enum Short {
    /// The item's payload, of this length, is in the caller's copy.
    Item(usize),
    /// The index is past the end.
    PastTheEnd,
    /// Read by the slow path.
    Slow,
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

    #[test]
    fn blocks_for_counts_the_blocks_len_entries_reach() {
        assert_eq!(blocks_for(0), 0);
        assert_eq!(blocks_for(1), 1);
        assert_eq!(blocks_for(512), 1);
        assert_eq!(blocks_for(513), 2);
        assert_eq!(blocks_for(1536), 2);
        assert_eq!(blocks_for(1537), 3);
    }
}
