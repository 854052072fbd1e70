//! A map in shared memory: a hash table of records in the segment's data area, changed under
//! the segment's robust lock.
//!
//! # Layout
//!
//! ```text
//! kind area:  table    offset of the slot table | log2(its capacity)      committed, one word
//!             len      live entries (of both tables during a migration)  derived
//!             used     slots of `table` that are not empty: live, tombstones  derived
//!             bytes    bytes of the live entries' records                derived
//!             tail     first free byte of the data area                  derived
//!             changes  odd while a holder of the lock changes the map    (for `len`, `verify`)
//!             old      the table being moved into `table`, as `table`; 0: none   committed
//!             moved    slots of `old`, from the first, already moved      committed
//!             clean    no byte of the data area at or past it was ever written
//! table:      `capacity` slots of 16 bytes (a power of two, at least 16), 64-byte aligned
//! slot:       [u64 hash of the key][u64 record: 0 empty, 1 tombstone, else the entry's offset]
//! record:     [u32 length][u32 CRC-32C][u32 key length][key][value][padding to 8]  (record.rs)
//! ```
//!
//! Tables and records are bump-allocated in the data area, below `tail`. Keys and values are
//! stored in their `MessagePack` encoding (`codec.rs`). The table, and the hash that places a
//! key in it, are in `table.rs`.
//!
//! # Protocol: one store commits each change
//!
//! Every change holds the segment's robust lock, and marks itself in `changes` (odd while it
//! is under way: a sequence lock for readers, see below). Each change becomes visible with one
//! atomic store:
//!
//! * **insert** writes the entry's record at `tail` (nothing points there), then stores its
//!   offset into the slot: an empty slot or a tombstone for a new key (the slot's hash word is
//!   written first), the slot of the old entry for an existing key;
//! * **remove** stores a tombstone into the entry's slot, or *empty* when the next slot is
//!   empty (no probe sequence goes through such a slot), turning the tombstones just before it
//!   into empty slots too, one store each;
//! * **growth**: when an insert into an empty slot would bring live entries and tombstones to
//!   more than 7/10 of the table, a new table, sized so that the live entries fill at most half
//!   of it, is placed past `tail`. A small table (under 1 024 slots) is copied into it at once,
//!   and one store of the `table` word switches every process to it. A larger one would make
//!   one insert pay for every entry (a table of 16 M slots took 0.2 to 0.8 s), so the map
//!   *migrates* instead: it stores the current table into `old` (`moved` 0), then switches
//!   `table` to the new one; from then on each insert first moves the entries of the next 64
//!   slots of the old table (each placed in the table by its stored hash, then `moved`
//!   advanced past its slot), and the insert that moves the last one stores 0 into `old`. A
//!   table of `C` slots is thus empty after `C / 64` inserts, before the new one is 7/10 full:
//!   it is sized so that the live entries and one entry per insert of the migration fill at
//!   most half of it (a table filled by tombstones, with few live entries, still leaves room
//!   for those inserts). An insert's share is at most 64 slots read in order and about 45
//!   entries placed (no insert of one process growing a map to 10 M keys took 1 ms); the
//!   migration's whole cost is the rebuild's. Meanwhile a key is
//!   looked up in the table, then in the slots of `old` at or past `moved`; an insert that
//!   replaces a key found in `old` first moves its entry (placed in the table, then a tombstone
//!   left in `old`), and a remove of such a key leaves a tombstone in `old`. An old table is
//!   never written otherwise, so its probe sequences stay whole. The new table needs zeroing
//!   only below `clean` (space a compaction, a `clear` or a dead writer wrote before): past
//!   it, the segment's bytes are still the zeros the file was extended with;
//! * **compaction**: when the garbage below `tail` (replaced and removed records, outgrown
//!   tables) outweighs the map's live bytes (and is at least 16 KiB), the live entries are
//!   copied, table and records, past `tail` and the map is switched to the copy; if a second
//!   copy fits below the first (with room for `clear`'s table after it), it is then copied
//!   again to the start of the data area and switched to, which makes the space after it free
//!   again;
//! * **clear** does the same with no entries, or, when nothing the map points to lies at the
//!   start of the data area (the map is a compaction's first copy), switches at once to an
//!   empty table there.
//!
//! Growth, compaction and clear are in `space.rs`. The counts (`len`, `used`, `bytes`) and
//! `tail` are updated after the commit; nothing reads them as truth without the lock but `len`
//! and `verify` (`verify.rs`).
//!
//! # Readers: no lock, a sequence lock
//!
//! A lookup (`get`, and so `contains_key`) takes no lock. It loads `changes` (Acquire), and if
//! it is even reads the `table` word (and `old` and `moved`), probes the slots (of the table,
//! then of the old table) and copies out the record of a slot whose hash matches, then loads
//! `changes` again after an Acquire fence: it keeps what it found only if `changes` did not
//! move; otherwise it reads again, as the list's readers do (`changes::read_stable`: spins,
//! yields, naps; takes the lock if the holder died, which repairs the map, or after 32 reads
//! overtaken by changes). A reading kept was made while no change was under way, so it is a
//! map some writer committed whole.
//!
//! The first read of a lookup is a fast path (`Raw::look_up_short`): with no migration under
//! way, an entry of at most 128 bytes, found within 64 slots of its home, is copied onto the
//! stack a word at a time with atomic loads, its checksum and key checked, and kept under the
//! same condition (`changes` even and unmoved, and no page of the mapping lost to a shrunk
//! file).
//! Anything else (a change under way or overlapping, a migration, a longer entry, anything
//! that does not look right) makes it give up without a verdict, and the lookup reads again as
//! above, which says what is wrong. A test stops lookups inside the fast path (failpoint
//! `map.read_table`) while the map is rebuilt under them.
//!
//! Everything read before the second load is untrusted until then: the `table` word is
//! checked to lie in the data area (mapping growth another process made, in this process's
//! reserved address range: addresses never move), a record offset and its length are checked
//! against the committed size before a byte is copied, a length is trusted for an allocation
//! only after `changes` was checked, a probe looks at `changes` every 64 slots and never goes
//! past the table's capacity, and a checksum failure or any other error counts only if
//! `changes` did not move. A reader thus never faults, never loops for ever, and never returns
//! a value no writer committed.
//!
//! # Crash recovery
//!
//! A holder killed before a commit leaves bytes past `tail` (or, during the second copy of a
//! compaction, below the copy in use) that nothing points to; one killed after it leaves the
//! counts or `tail` stale. The next locker is told the owner died
//! ([`LockError::OwnerDied`](crate::sync::LockError::OwnerDied)), recounts `len`, `used` and
//! `bytes` from the committed tables, recomputes `tail` past them and every record they point
//! to, raises `clean` to `tail` if it was lower, and marks the lock consistent
//! (`lock_and_repair`). A migration adds two states to repair: `old` naming the table itself
//! (killed between the two stores that begin a migration) means no migration, and an entry of
//! `old`, not passed over, whose record the table holds too (killed between placing an entry
//! and advancing `moved`, or between placing it and leaving its tombstone) is the table's:
//! recovery leaves a tombstone in `old`. Every state a holder can be killed in is therefore
//! either the map before the change or the map after it.
//!
//! # Safety
//!
//! `MapArea` is [`ShmSafe`]: it is read in place in the segment (its SAFETY comment says why it
//! may be).
//!
//! The one `unsafe` operation is `record::write`, whose contract is that no published offset
//! points into the bytes written (and so no reader in this process reads them). Every call is
//! made under the lock, at a position no slot of the committed tables points to:
//!
//! 1. in an insert and in the first copy of a compaction, at or past `tail`, which lies past
//!    the committed tables and every record they point to (an invariant every change keeps,
//!    and recovery re-establishes after a crash);
//! 2. in the second copy of a compaction, below the first copy's table, after the map was
//!    switched to that copy, whose table and records all lie past it (a compaction first
//!    finishes a migration under way, so no old table remains).
//!
//! (`clear`'s empty table at the start of the data area is written with atomic stores, and
//! only when the committed table and every record lie past it.)
//!
//! Two readers take no lock: `get` and `verify`. Run in a process where another thread
//! compacts, clears or inserts into the same map, they can copy bytes of a record that became
//! garbage while they are rewritten (a compaction's second copy, or a write past a `tail` a
//! compaction lowered). That copy is a race on plain bytes, as in the list's readers and the
//! queue's `verify`: its result is discarded, because `changes` moved meanwhile (every change
//! makes `changes` odd and issues a release fence before it writes anything, so a reader that
//! saw any byte it wrote sees the new `changes` after its acquire fence).

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

mod space;
mod table;
mod verify;

pub(crate) use self::verify::{len, verify};

use self::table::{Table, hash};
use crate::collections::changes::{self, Change, Window};
use crate::collections::table_word::{MAX_CAPACITY_LOG2, MIN_CAPACITY_LOG2, TABLE_ALIGN};
use crate::collections::{codec, record};
use crate::error::{Error, Result};
use crate::segment::{DATA_START, Segment};
use crate::shm_safe::ShmSafe;
use crate::sync::{RawGuard, lock_and_repair};

/// A slot's record word: never used.
const EMPTY: u64 = 0;
/// A slot's record word: its entry was removed (probe sequences go on past it).
const TOMBSTONE: u64 = 1;
const SLOT_SIZE: u64 = 16;
/// Tables of at least this many slots are outgrown by a migration spread over the inserts
/// that follow (smaller ones are rebuilt in one go).
const MIGRATE_FROM: u64 = 1 << 10;
/// How many slots of an old table each insert moves during a migration.
const MOVES_PER_INSERT: u64 = 64;
/// How many slots a reader without the lock probes between two looks at `changes`.
const PROBES_PER_LOOK: u64 = 64;
/// Bytes before a record's key: the key's length.
pub(super) const KEY_LENGTH: usize = 4;

/// The map's words in the segment's kind area (see the module docs).
#[repr(C)]
struct MapArea {
    table: AtomicU64,
    len: AtomicU64,
    used: AtomicU64,
    bytes: AtomicU64,
    tail: AtomicU64,
    changes: AtomicU64,
    /// The table whose entries are being moved into `table` (its word), or 0.
    old: AtomicU64,
    /// How many slots of `old`, from the first, were moved.
    moved: AtomicU64,
    /// No byte of the data area at or past this was ever written: it is still zero.
    clean: AtomicU64,
}

const _: () = assert!(size_of::<MapArea>() == 72);

// SAFETY: `#[repr(C)]` and made of `AtomicU64`s only: the same layout in every process, any
// bits a valid value (a crashed writer's included), every change atomic, nothing to drop and
// no pointers (the table is named by an offset).
unsafe impl ShmSafe for MapArea {}

/// Gives a new map segment its first contents: an empty table at the start of the data area.
pub(super) fn init(segment: &Segment) -> Result<()> {
    // The first table is at the start of the data area, in fresh (zeroed) bytes.
    let table = Table {
        offset: DATA_START,
        capacity: 1 << MIN_CAPACITY_LOG2,
    };
    segment.ensure_mapped(table.end())?;
    let area = segment.kind_area::<MapArea>();
    area.table.store(table.word(), Ordering::Relaxed);
    area.len.store(0, Ordering::Relaxed);
    area.used.store(0, Ordering::Relaxed);
    area.bytes.store(0, Ordering::Relaxed);
    area.tail.store(table.end(), Ordering::Relaxed);
    area.changes.store(0, Ordering::Relaxed);
    area.old.store(0, Ordering::Relaxed);
    area.moved.store(0, Ordering::Relaxed);
    area.clean.store(table.end(), Ordering::Relaxed);
    Ok(())
}

/// A table whose entries are being moved into the map's `table`, and how many of its slots,
/// from the first, were moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Migration {
    old: Table,
    moved: u64,
}

/// The map's words, read and validated under the lock.
#[derive(Debug, Clone, Copy)]
struct State {
    table: Table,
    migration: Option<Migration>,
    len: u64,
    /// Slots of `table` that are not empty.
    used: u64,
    bytes: u64,
    tail: u64,
}

/// An entry's record, copied out of the segment (or, on Redis, put together from a key and a
/// value).
pub(super) struct Entry {
    payload: Vec<u8>,
    key_len: usize,
}

impl Entry {
    /// The entry of encoded `key` and `value`, as a record would hold it.
    #[cfg(feature = "redis")]
    pub(super) fn new(key: &[u8], value: &[u8]) -> Self {
        let mut payload = Vec::with_capacity(KEY_LENGTH + key.len() + value.len());
        payload.extend_from_slice(&[0; KEY_LENGTH]);
        payload.extend_from_slice(key);
        payload.extend_from_slice(value);
        Entry {
            payload,
            key_len: key.len(),
        }
    }

    pub(super) fn key(&self) -> &[u8] {
        &self.payload[KEY_LENGTH..KEY_LENGTH + self.key_len]
    }

    pub(super) fn value(&self) -> &[u8] {
        &self.payload[KEY_LENGTH + self.key_len..]
    }

    fn size(&self) -> u64 {
        record::size(self.payload.len())
    }
}

thread_local! {
    /// The buffer an entry read from the map is copied into, kept between lookups so that a
    /// `get` allocates nothing: taken while an [`Entry`] holds it, given back when it drops (a
    /// second entry alive meanwhile gets a buffer of its own).
    static ENTRY_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Drop for Entry {
    fn drop(&mut self) {
        codec::keep(&ENTRY_BUFFER, std::mem::take(&mut self.payload));
    }
}

/// The key length an entry's record payload begins with, if the payload holds that much key.
#[inline]
fn stored_key_len(payload: &[u8]) -> Option<usize> {
    payload
        .first_chunk::<KEY_LENGTH>()
        .map(|bytes| u32::from_le_bytes(*bytes) as usize)
        .filter(|&key_len| key_len <= payload.len() - KEY_LENGTH)
}

/// Whether the key of an entry copied out of the map is `key`: compared in a loop the compiler
/// keeps inline, where comparing the slices calls `memcmp` (measured: a tenth of a short
/// lookup's time).
#[inline]
fn same_key(stored: &[u8], key: &[u8]) -> bool {
    stored.len() == key.len() && stored.iter().zip(key).all(|(a, b)| a == b)
}

/// What [`Raw::look_up_short`], a lookup's fast path, found.
enum Short {
    /// The key's entry, in slot `index`; its value is at `value` in the copy.
    Found {
        index: u64,
        value: std::ops::Range<usize>,
    },
    /// No entry: the key is absent.
    Absent,
    /// Not decided: the slow path looks the key up.
    Slow,
}

/// Where a key is, or where it would go.
enum Probe {
    /// In slot `index` of the table.
    Found { index: u64, entry: Entry },
    /// In slot `index` of a migration's `old` table, not moved yet; `vacant` is the slot of
    /// the table it goes to.
    Old {
        old: Table,
        index: u64,
        entry: Entry,
        vacant: u64,
    },
    /// Nowhere: its slot in the table would be `index`.
    Vacant { index: u64 },
}

/// The map's machinery, independent of the key and value types (shared by every
/// `SharedMap<K, V>` and by `inspect::verify`).
#[derive(Clone, Copy)]
pub(super) struct Raw<'a> {
    pub(super) segment: &'a Segment,
}

impl<'a> Raw<'a> {
    #[inline]
    fn area(self) -> &'a MapArea {
        self.segment.kind_area::<MapArea>()
    }

    /// The count of entries as stored, read without the lock (it can be one off while a
    /// writer is in the middle of a change, or died there).
    pub(super) fn stored_len(self) -> u64 {
        self.area().len.load(Ordering::Relaxed)
    }

    /// The first free byte of the data area, as stored.
    pub(super) fn tail(self) -> u64 {
        self.area().tail.load(Ordering::Relaxed)
    }

    fn corrupt(self, what: String) -> Error {
        self.segment.corrupt(what)
    }

    /// The committed table, checked to lie in the segment's data area, and mapped.
    #[inline]
    fn table(self) -> Result<Table> {
        self.checked_table(self.area().table.load(Ordering::Acquire), "table")
    }

    /// The table a table word names, checked to lie in the segment's data area, and mapped.
    #[inline]
    fn checked_table(self, word: u64, which: &str) -> Result<Table> {
        let table = Table::from_word(word)
            .ok_or_else(|| self.corrupt(format!("the map's {which} word is {word:#x}")))?;
        self.segment.data_range(
            || format!("the map's {which} of {} slots", table.capacity),
            table.offset,
            table.bytes(),
            TABLE_ALIGN,
        )?;
        Ok(table)
    }

    /// The migration under way, if any: its old table checked as [`Raw::table`] checks the
    /// table, and its count of moved slots against that table.
    #[inline]
    fn migration(self) -> Result<Option<Migration>> {
        let area = self.area();
        let word = area.old.load(Ordering::Acquire);
        if word == 0 {
            return Ok(None);
        }
        let old = self.checked_table(word, "old table")?;
        let moved = area.moved.load(Ordering::Acquire);
        if moved > old.capacity {
            return Err(self.corrupt(format!(
                "{moved} slots of the map's old table of {} were moved",
                old.capacity
            )));
        }
        Ok(Some(Migration { old, moved }))
    }

    /// The two words of slot `index` of `table`: the key's hash and the record.
    fn slot(self, table: Table, index: u64) -> Result<&'a [AtomicU64; 2]> {
        let at = table.slot(index);
        self.segment
            .mapping()
            .get::<[AtomicU64; 2]>(at)
            .ok_or_else(|| self.corrupt(format!("the map's slot at {at} is not mapped")))
    }

    fn record_word(self, table: Table, index: u64) -> Result<&'a AtomicU64> {
        Ok(&self.slot(table, index)?[1])
    }

    /// Takes the segment's lock, recounting the map if the previous holder died.
    fn lock(self) -> Result<RawGuard<'a>> {
        lock_and_repair(self.segment, |held| self.recover(held))
    }

    /// Reads the map's words, checking that they describe a possible map. Holding the lock
    /// (after recovery, if a holder died), they are exact.
    fn state(self, _held: &RawGuard<'_>) -> Result<State> {
        let area = self.area();
        let table = self.table()?;
        let migration = self.migration()?;
        let state = State {
            table,
            migration,
            len: area.len.load(Ordering::Relaxed),
            used: area.used.load(Ordering::Relaxed),
            bytes: area.bytes.load(Ordering::Relaxed),
            tail: area.tail.load(Ordering::Relaxed),
        };
        let clean = area.clean.load(Ordering::Relaxed);
        // Writes go at `tail`: in the data area, inside the committed size.
        self.segment
            .data_range(|| "the map's end of data".to_owned(), state.tail, 0, 8)?;
        let room = state.tail.checked_sub(DATA_START + state.table_bytes());
        let old_end = migration.map_or(0, |m| m.old.end());
        if state.used >= table.capacity
            || (migration.is_none() && state.len > state.used)
            || !state.tail.is_multiple_of(8)
            || state.tail < table.end()
            || state.tail < old_end
            || state.tail > self.segment.size()
            || clean < state.tail
            || room.is_none_or(|room| state.bytes > room)
        {
            return Err(self.corrupt(format!(
                "the map's counts are impossible: {} entries, {} used slots of {}, {} bytes of \
                 entries, end of data at {}, written up to {}",
                state.len, state.used, table.capacity, state.bytes, state.tail, clean
            )));
        }
        Ok(state)
    }

    /// Recounts the derived words from the committed tables, after a holder of the lock died.
    fn recover(self, _held: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let table = self.table()?;
        let mut migration = self.migration()?;
        if migration.is_some_and(|m| m.old == table) {
            // Killed between naming the old table and switching to the new one: no migration.
            area.old.store(0, Ordering::Release);
            migration = None;
        }
        let (mut len, mut used, mut bytes, mut tail) = (0, 0, 0, table.end());
        for index in 0..table.capacity {
            match self.record_word(table, index)?.load(Ordering::Acquire) {
                EMPTY => {}
                TOMBSTONE => used += 1,
                at => {
                    let end = record::end(self.segment, at)?;
                    len += 1;
                    used += 1;
                    bytes += end - at;
                    tail = tail.max(end);
                }
            }
        }
        if let Some(Migration { old, moved }) = migration {
            tail = tail.max(old.end());
            for index in moved..old.capacity {
                let [stored_hash, word] = self.slot(old, index)?;
                let at = word.load(Ordering::Acquire);
                if at <= TOMBSTONE {
                    continue;
                }
                if self.holds(table, stored_hash.load(Ordering::Relaxed), at)? {
                    // Killed between placing the entry in the table and passing it over here:
                    // it is the table's now.
                    word.store(TOMBSTONE, Ordering::Release);
                    continue;
                }
                let end = record::end(self.segment, at)?;
                len += 1;
                bytes += end - at;
                tail = tail.max(end);
            }
        }
        if tail > self.segment.size() {
            return Err(self.corrupt(format!(
                "the map's recovered end of data {tail} lies past the segment's size {}",
                self.segment.size()
            )));
        }
        area.len.store(len, Ordering::Relaxed);
        area.used.store(used, Ordering::Relaxed);
        area.bytes.store(bytes, Ordering::Relaxed);
        area.tail.store(tail, Ordering::Relaxed);
        if area.clean.load(Ordering::Relaxed) < tail {
            area.clean.store(tail, Ordering::Relaxed);
        }
        // A holder killed inside a change left `changes` odd: make it even, after the counts.
        if !area.changes.load(Ordering::Relaxed).is_multiple_of(2) {
            area.changes.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// Whether the probe sequence of `hash` in `table` has a slot holding the record at `at`
    /// (a record belongs to one entry: its offset alone identifies it).
    fn holds(self, table: Table, hash: u64, at: u64) -> Result<bool> {
        for probe in 0..table.capacity {
            match self
                .record_word(table, hash.wrapping_add(probe))?
                .load(Ordering::Acquire)
            {
                EMPTY => return Ok(false),
                record if record == at => return Ok(true),
                _ => {}
            }
        }
        Ok(false)
    }

    /// Copies out and checks the entry whose record is at `at`.
    fn read_entry(self, at: u64) -> Result<Entry> {
        let mut payload = codec::take_kept(&ENTRY_BUFFER);
        record::read_into(self.segment, at, &mut payload)?;
        self.entry_from(at, payload)
    }

    /// Copies out the entry whose record is at `at` for a reader without the lock: `None` if
    /// `window` closed before its payload was allocated for (the record may be garbage, its
    /// length anything up to the segment's size).
    fn read_entry_in(self, window: &Window<'_>, at: u64) -> Result<Option<Entry>> {
        let mut payload = codec::take_kept(&ENTRY_BUFFER);
        if record::read_into_if(self.segment, at, &mut payload, |_| window.unchanged())?.is_none() {
            return Ok(None);
        }
        self.entry_from(at, payload).map(Some)
    }

    /// The entry whose record at `at` holds `payload`, its key length checked.
    fn entry_from(self, at: u64, payload: Vec<u8>) -> Result<Entry> {
        let key_len = stored_key_len(&payload).ok_or_else(|| {
            self.corrupt(format!(
                "the map entry at {at} has a key longer than the entry"
            ))
        })?;
        Ok(Entry { payload, key_len })
    }

    /// Looks `key` up in `table`, under the lock (`window` is `None`), or without it: then
    /// `None` if `window` closed (what was read may be garbage). Entries in the slots below
    /// `moved` are passed over (in an old table, they were moved to the new one).
    fn find(
        self,
        table: Table,
        key: &[u8],
        hash: u64,
        window: Option<&Window<'_>>,
        moved: u64,
    ) -> Result<Option<Probe>> {
        let mut vacant = None;
        for probe in 0..table.capacity {
            // A table read without the lock can be garbage: a long probe looks now and then
            // whether it still reads the map.
            if probe % PROBES_PER_LOOK == PROBES_PER_LOOK - 1
                && window.is_some_and(|window| !window.unchanged())
            {
                return Ok(None);
            }
            let index = table.home(hash.wrapping_add(probe));
            let [stored_hash, record] = self.slot(table, index)?;
            match record.load(Ordering::Acquire) {
                EMPTY => {
                    return Ok(Some(Probe::Vacant {
                        index: vacant.unwrap_or(index),
                    }));
                }
                TOMBSTONE => {
                    vacant.get_or_insert(index);
                }
                at => {
                    if index >= moved && stored_hash.load(Ordering::Relaxed) == hash {
                        let entry = match window {
                            None => self.read_entry(at)?,
                            Some(window) => match self.read_entry_in(window, at)? {
                                Some(entry) => entry,
                                None => return Ok(None),
                            },
                        };
                        if entry.key() == key {
                            return Ok(Some(Probe::Found { index, entry }));
                        }
                    }
                }
            }
        }
        vacant
            .map(|index| Some(Probe::Vacant { index }))
            .ok_or_else(|| self.corrupt("the map's table has no free slot".to_owned()))
    }

    /// Looks `key` up in `table` (passing over the slots below `moved`), under the lock.
    fn find_locked(
        self,
        _held: &RawGuard<'_>,
        table: Table,
        key: &[u8],
        hash: u64,
        moved: u64,
    ) -> Result<Probe> {
        self.find(table, key, hash, None, moved)?
            .ok_or_else(|| self.corrupt("it changed while its lock was held".to_owned()))
    }

    /// Looks `key` up under the lock: in the table, then in the slots of a migration's old
    /// table that were not moved yet.
    fn locate(self, held: &RawGuard<'_>, state: &State, key: &[u8], hash: u64) -> Result<Probe> {
        let probe = self.find_locked(held, state.table, key, hash, 0)?;
        let (Probe::Vacant { index: vacant }, Some(Migration { old, moved })) =
            (&probe, state.migration)
        else {
            return Ok(probe);
        };
        Ok(match self.find_locked(held, old, key, hash, moved)? {
            Probe::Found { index, entry } => Probe::Old {
                old,
                index,
                entry,
                vacant: *vacant,
            },
            _ => probe,
        })
    }

    /// Records that bytes up to `end` of the data area are written (or about to be): the
    /// space past `clean` is known to be zero, which spares a new table the zeroing.
    fn written_up_to(self, end: u64) {
        let clean = &self.area().clean;
        if end > clean.load(Ordering::Relaxed) {
            clean.store(end, Ordering::Relaxed);
        }
    }

    /// Writes `payload` as a record at `at` (or just after); returns its offset and its end.
    fn write_record(self, held: &RawGuard<'_>, at: u64, payload: &[u8]) -> Result<(u64, u64)> {
        self.written_up_to(at.saturating_add(record::size(payload.len())));
        // SAFETY: we hold the lock (`held`), and every caller passes a position no slot of the
        // committed table points to (see the module's `# Safety`: `tail` in `insert` and in
        // `copy`'s first use, below the copy in use in its second).
        unsafe { record::write(self.segment, held, at, payload) }
    }

    /// Looks `key` up, without the lock (see "Readers" in the module docs); returns what
    /// `value` makes of its slot and the encoding of its value.
    ///
    /// A short entry read while no change and no migration is under way is copied onto the
    /// stack by [`Raw::look_up_short`]; anything else (a longer entry, a change that overlaps,
    /// anything that looks wrong) is read by [`Raw::look_up_entry`], which retries, waits, and
    /// says what is wrong.
    #[inline]
    pub(super) fn get<R>(
        self,
        key: &[u8],
        value: impl FnOnce(u64, &[u8]) -> Result<R>,
    ) -> Result<Option<R>> {
        let hash = hash(key);
        let mut copy = [[0; 8]; record::SHORT_PAYLOAD / 8];
        match self.look_up_short(key, hash, &mut copy) {
            Short::Found { index, value: at } => value(index, &copy.as_flattened()[at]).map(Some),
            Short::Absent => Ok(None),
            Short::Slow => match self.look_up_entry(key, hash)? {
                Some((index, entry)) => value(index, entry.value()).map(Some),
                None => Ok(None),
            },
        }
    }

    /// [`Raw::get`]'s fast path: `key` looked up in one read between two changes, with no
    /// migration under way, its entry at most [`record::SHORT_PAYLOAD`] bytes (copied into
    /// `copy`) and at most [`PROBES_PER_LOOK`] slots from its home; `Slow` otherwise, and for
    /// anything that does not look right. It decides as the slow path's first read would, and
    /// returns nothing the slow path would not: a reading kept only if `changes` did not move
    /// and no page of the mapping was lost.
    #[inline]
    fn look_up_short(self, key: &[u8], hash: u64, copy: &mut record::ShortCopy) -> Short {
        let area = self.area();
        let Some(window) = Window::open(&area.changes) else {
            return Short::Slow;
        };
        if area.old.load(Ordering::Acquire) != 0 {
            return Short::Slow;
        }
        let Some(table) = Table::from_word(area.table.load(Ordering::Acquire)).filter(|table| {
            self.segment
                .holds_data(table.offset, table.bytes(), TABLE_ALIGN)
        }) else {
            return Short::Slow;
        };
        // Its slots of 2 words, mapped (checked just above).
        let Some((slots, [])) = self
            .segment
            .mapping()
            .words(table.offset, 2 * table.capacity as usize)
            .map(<[AtomicU64]>::as_chunks::<2>)
        else {
            return Short::Slow;
        };
        crate::failpoint::hit("map.read_table");
        let mut found = Short::Slow;
        for probe in 0..PROBES_PER_LOOK.min(table.capacity) {
            let index = table.home(hash.wrapping_add(probe));
            let Some([stored_hash, record]) = slots.get(index as usize) else {
                return Short::Slow;
            };
            match record.load(Ordering::Acquire) {
                EMPTY => {
                    found = Short::Absent;
                    break;
                }
                TOMBSTONE => {}
                at if stored_hash.load(Ordering::Relaxed) == hash => {
                    let Some(len) = record::read_short(self.segment, at, copy) else {
                        return Short::Slow;
                    };
                    let entry = &copy.as_flattened()[..len];
                    let Some(key_len) = stored_key_len(entry) else {
                        return Short::Slow;
                    };
                    if same_key(&entry[KEY_LENGTH..KEY_LENGTH + key_len], key) {
                        found = Short::Found {
                            index,
                            value: KEY_LENGTH + key_len..len,
                        };
                        break;
                    }
                }
                _ => {}
            }
        }
        if window.unchanged() && self.segment.is_intact() {
            found
        } else {
            Short::Slow
        }
    }

    /// [`Raw::get`]'s slow path: the lookup of any entry, read again while changes overlap
    /// (see "Readers" in the module docs); returns its slot and entry.
    #[inline(never)]
    fn look_up_entry(self, key: &[u8], hash: u64) -> Result<Option<(u64, Entry)>> {
        let found = changes::read_stable(
            self.segment,
            &self.area().changes,
            || self.lock(),
            |window| {
                let table = self.table()?;
                Ok(match self.find(table, key, hash, Some(window), 0)? {
                    None => None,
                    Some(Probe::Found { index, entry }) => Some(Some((index, entry))),
                    // Read in the same window as the table: a migration under way then, or
                    // none.
                    Some(_) if self.area().old.load(Ordering::Acquire) == 0 => Some(None),
                    Some(_) => match self.find_in_old(key, hash, window)? {
                        None => None,
                        Some(Probe::Found { index, entry }) => Some(Some((index, entry))),
                        Some(_) => Some(None),
                    },
                })
            },
        )?;
        // An absent key may only have looked absent: the table's page may have been lost to a
        // file shrunk during the lookup (read as zeros).
        self.segment.check_intact()?;
        Ok(found)
    }

    /// The part of [`Raw::get`] a migration adds: `key`, absent from the table, looked up in
    /// the slots of the old table not moved yet, as [`Raw::find`] does (`None` if `window`
    /// closed).
    #[cold]
    fn find_in_old(self, key: &[u8], hash: u64, window: &Window<'_>) -> Result<Option<Probe>> {
        match self.migration()? {
            Some(Migration { old, moved }) => self.find(old, key, hash, Some(window), moved),
            // No migration after all: the window closed since `old` was read.
            None => Ok(None),
        }
    }

    /// Inserts the entry encoded in `payload` (key length, key, value); returns the slot and
    /// entry it replaced. With `replace` false, a key that has an entry keeps it, and that is
    /// the slot and entry returned.
    pub(super) fn insert(
        self,
        payload: &[u8],
        key_len: usize,
        replace: bool,
    ) -> Result<Option<(u64, Entry)>> {
        let key = &payload[KEY_LENGTH..KEY_LENGTH + key_len];
        let hash = hash(key);
        let held = self.lock()?;
        let area = self.area();
        // Begun before `tidy`, which may compact the map under lock-free readers.
        let _change = Change::begin(&area.changes, &held);
        let mut state = self.tidy(&held, self.state(&held)?)?;
        state = self.migrate(&held, state, MOVES_PER_INSERT)?;
        let mut probe = self.locate(&held, &state, key, hash)?;
        if !replace && let Probe::Found { index, entry } | Probe::Old { index, entry, .. } = probe {
            return Ok(Some((index, entry)));
        }
        if let Probe::Vacant { index } = probe
            && self
                .record_word(state.table, index)?
                .load(Ordering::Relaxed)
                == EMPTY
            && (state.used + 1) * 10 > state.table.capacity * 7
        {
            state = self.regrow(&held, state)?;
            probe = self.locate(&held, &state, key, hash)?;
        }
        // The slot of the table the entry goes to, and the entry it replaces there.
        let (index, replacing) = match probe {
            Probe::Found { index, entry } => (index, Some(entry)),
            Probe::Old {
                old,
                index,
                entry,
                vacant,
            } => {
                // The entry moves to the table first, so that its replacement goes there.
                state = self.move_entry(state, old, index, vacant)?;
                (vacant, Some(entry))
            }
            Probe::Vacant { index } => (index, None),
        };
        let (at, end) = self.write_record(&held, state.tail, payload)?;
        self.keep_reserve(&held, end)?;
        if state.table.capacity >= MIGRATE_FROM && state.used * 10 > state.table.capacity * 4 {
            // The next table, twice this one, will be placed past the end of data in one go:
            // from 4/10 full on, its bytes are committed a step at a time.
            let next = end.saturating_add(2 * state.table.bytes());
            self.segment.commit_toward(end, next, &held)?;
        }
        area.tail.store(end, Ordering::Relaxed);
        crate::failpoint::hit("map.written");
        let size = end - at;
        let replaced = if let Some(entry) = replacing {
            // Commit: the slot points to the new record instead of the old one.
            self.record_word(state.table, index)?
                .store(at, Ordering::Release);
            crate::failpoint::hit("map.replaced");
            let bytes = state.bytes.saturating_sub(entry.size()) + size;
            area.bytes.store(bytes, Ordering::Relaxed);
            Some((index, entry))
        } else {
            let [stored_hash, word] = self.slot(state.table, index)?;
            let was = word.load(Ordering::Relaxed);
            stored_hash.store(hash, Ordering::Relaxed);
            // Commit: the entry exists (its hash is visible with it).
            word.store(at, Ordering::Release);
            crate::failpoint::hit("map.committed");
            area.len.store(state.len + 1, Ordering::Relaxed);
            if was == EMPTY {
                area.used.store(state.used + 1, Ordering::Relaxed);
            }
            area.bytes.store(state.bytes + size, Ordering::Relaxed);
            None
        };
        self.segment.note_writer();
        Ok(replaced)
    }

    /// Removes `key`; returns the slot and entry it had.
    pub(super) fn remove(self, key: &[u8]) -> Result<Option<(u64, Entry)>> {
        let hash = hash(key);
        let held = self.lock()?;
        let area = self.area();
        let _change = Change::begin(&area.changes, &held);
        let state = self.tidy(&held, self.state(&held)?)?;
        let (index, entry) = match self.locate(&held, &state, key, hash)? {
            Probe::Vacant { .. } => return Ok(None),
            Probe::Found { index, entry } => (index, entry),
            Probe::Old {
                old, index, entry, ..
            } => {
                // Commit: an old table is only ever read, so a tombstone will do.
                self.record_word(old, index)?
                    .store(TOMBSTONE, Ordering::Release);
                crate::failpoint::hit("map.removed_from_old");
                area.len
                    .store(state.len.saturating_sub(1), Ordering::Relaxed);
                area.bytes
                    .store(state.bytes.saturating_sub(entry.size()), Ordering::Relaxed);
                self.segment.note_writer();
                return Ok(Some((index, entry)));
            }
        };
        let table = state.table;
        let mut used = state.used;
        let word = self.record_word(table, index)?;
        if self.record_word(table, index + 1)?.load(Ordering::Relaxed) == EMPTY {
            // No probe sequence goes through a slot followed by an empty one: it can be empty
            // itself, and so can the tombstones just before it, one store each.
            word.store(EMPTY, Ordering::Release); // commit
            used = used.saturating_sub(1);
            let mut before = index;
            for _ in 1..table.capacity {
                before = before.wrapping_sub(1);
                let word = self.record_word(table, before)?;
                if word.load(Ordering::Relaxed) != TOMBSTONE {
                    break;
                }
                word.store(EMPTY, Ordering::Release);
                used = used.saturating_sub(1);
            }
        } else {
            word.store(TOMBSTONE, Ordering::Release); // commit
        }
        crate::failpoint::hit("map.removed");
        // Saturating: counts that are wrong (a damaged segment) must not panic; `verify` says so.
        area.len
            .store(state.len.saturating_sub(1), Ordering::Relaxed);
        area.used.store(used, Ordering::Relaxed);
        area.bytes
            .store(state.bytes.saturating_sub(entry.size()), Ordering::Relaxed);
        self.segment.note_writer();
        Ok(Some((index, entry)))
    }

    /// Empties the map and makes its space reusable.
    pub(super) fn clear(self) -> Result<()> {
        let held = self.lock()?;
        let _change = Change::begin(&self.area().changes, &held);
        self.empty(&held, self.state(&held)?)?;
        self.segment.note_writer();
        Ok(())
    }

    /// Every entry with its slot, read under the lock.
    pub(super) fn entries(self) -> Result<Vec<(u64, Entry)>> {
        let _held = self.lock()?;
        let table = self.table()?;
        let mut entries = Vec::new();
        let mut tables = vec![(table, 0)];
        if let Some(Migration { old, moved }) = self.migration()? {
            tables.push((old, moved));
        }
        for (table, moved) in tables {
            for index in moved..table.capacity {
                let at = self.record_word(table, index)?.load(Ordering::Acquire);
                if at > TOMBSTONE {
                    entries.push((index, self.read_entry(at)?));
                }
            }
        }
        crate::failpoint::hit("map.listed");
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::table::hash;
    use crate::collections::{SharedMap, codec};

    /// For each home slot of `range` in a table of `capacity` slots, a `u64` key whose
    /// encoding hashes there.
    fn keys_homed_at(range: std::ops::Range<u64>, capacity: u64) -> Vec<u64> {
        let mut found = vec![None; usize::try_from(range.end - range.start).expect("small")];
        let mut missing = found.len();
        for key in 0u64.. {
            let home = hash(&codec::encode(&key).expect("encode")) & (capacity - 1);
            if let Some(index) = home.checked_sub(range.start)
                && let Some(slot @ None) = found.get_mut(index as usize)
            {
                *slot = Some(key);
                missing -= 1;
                if missing == 0 {
                    break;
                }
            }
        }
        found.into_iter().map(|key| key.expect("found")).collect()
    }

    /// A table of 4 096 slots filled to 7/10 by tombstones around 30 live entries at its end
    /// migrates to a table sized for those 30 and for the inserts the migration lasts: every
    /// insert meanwhile finds room, and every entry stays.
    #[test]
    fn a_migration_from_a_table_of_tombstones_has_room_for_every_insert_it_lasts() {
        const CAPACITY: u64 = 4096;
        // 2 866 keys in one run of slots (placed at their homes), one under 7/10 of the table.
        let run = keys_homed_at(CAPACITY - 2866..CAPACITY, CAPACITY);
        let map = SharedMap::<u64, Vec<u8>>::new().expect("create");
        let big = vec![7u8; 4096]; // so that the removes leave too little garbage to compact
        let (removed, kept) = run.split_at(run.len() - 30);
        for key in removed {
            map.insert(key, &Vec::new()).expect("insert");
        }
        for key in kept {
            map.insert(key, &big).expect("insert");
        }
        // Each removed entry is followed by an occupied slot: each leaves a tombstone.
        for key in removed {
            assert!(map.remove(key).expect("remove").is_some());
        }
        assert_eq!(map.len().expect("len"), 30);
        // Keys homed before the run, where the slots are empty: the second outgrows the table.
        for (i, key) in keys_homed_at(0..200, CAPACITY).into_iter().enumerate() {
            assert_eq!(
                map.insert(&key, &vec![1])
                    .expect("insert during the migration"),
                None,
                "insert {i}"
            );
            assert_eq!(map.get(&key).expect("get"), Some(vec![1]));
        }
        for key in kept {
            assert_eq!(map.get(key).expect("get").as_ref(), Some(&big));
        }
        let report = crate::inspect::verify(map.segment().expect("in shared memory"));
        assert!(
            report.is_consistent() && report.notes.is_empty(),
            "{report:#?}"
        );
    }
}
