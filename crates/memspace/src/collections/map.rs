//! [`SharedMap<K, V>`]: a hash map of serde keys and values in a growable segment.
//!
//! # Layout
//!
//! ```text
//! kind area:  table    offset of the slot table | log2(its capacity)      committed, one word
//!             len      live entries                                      derived
//!             used     slots that are not empty: live entries, tombstones  derived
//!             bytes    bytes of the live entries' records                derived
//!             tail     first free byte of the data area                  derived
//!             changes  odd while a holder of the lock changes the map    (for `len`, `verify`)
//! table:      `capacity` slots of 16 bytes (a power of two, at least 16), 64-byte aligned
//! slot:       [u64 hash of the key][u64 record: 0 empty, 1 tombstone, else the entry's offset]
//! record:     [u32 length][u32 CRC-32][u32 key length][key][value][padding to 8]  (record.rs)
//! ```
//!
//! Tables and records are bump-allocated in the data area, below `tail`. Keys and values are
//! stored in their `MessagePack` encoding (`codec.rs`).
//!
//! # Hashing and key equality
//!
//! A key's slot is found from the hash of its *encoding*: FNV-1a (64 bits) followed by the
//! `MurmurHash3` finaliser, so that the low bits, which pick the slot, depend on every bit of the
//! key. The hash has no seed and no per-process state (never `RandomState`): every process
//! computes the same hash for the same key, in every run. Collisions are resolved by linear
//! probing, and two keys are the same key exactly when their encodings are equal.
//!
//! # Protocol: one store commits each change
//!
//! Every operation, readers included, holds the segment's robust lock. Each change becomes
//! visible with one atomic store:
//!
//! * **insert** writes the entry's record at `tail` (nothing points there), then stores its
//!   offset into the slot: an empty slot or a tombstone for a new key (the slot's hash word is
//!   written first), the slot of the old entry for an existing key;
//! * **remove** stores a tombstone into the entry's slot, or *empty* when the next slot is
//!   empty (no probe sequence goes through such a slot), turning the tombstones just before it
//!   into empty slots too, one store each;
//! * **growth**: when an insert into an empty slot would bring live entries and tombstones to
//!   more than 7/10 of the table, a new table, sized so that the live entries fill at most half
//!   of it, is built past `tail` from the old one's slots, and one store of the `table` word
//!   switches every process to it;
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
//! The counts (`len`, `used`, `bytes`) and `tail` are updated after the commit; nothing reads
//! them as truth without the lock but `len` (see below) and `verify`.
//!
//! # Crash recovery
//!
//! A holder killed before a commit leaves bytes past `tail` (or, during the second copy of a
//! compaction, below the copy in use) that nothing points to; one killed after it leaves the
//! counts or `tail` stale. The next locker is told the owner died
//! ([`LockError::OwnerDied`](crate::sync::LockError::OwnerDied)), recounts `len`, `used` and
//! `bytes` from the committed table, recomputes `tail` past that table and every record it
//! points to, and marks the lock consistent (`lock_and_repair`). Every state a holder can be
//! killed in is therefore either the map before the change or the map after it.
//!
//! # Readers without the lock
//!
//! [`SharedMap::len`] and `verify` read without the lock, guarded by `changes` (a sequence
//! lock): a holder makes it odd before it changes anything and even when it is done, so a
//! reading between two equal even values is consistent. `len` falls back to the lock when a
//! change is under way (or its maker died); `verify` retries, and accepts an odd value only
//! when the holder is dead (nothing changes until the next locker recovers).
//!
//! # Space
//!
//! Replaced and removed entries, and outgrown tables, stay allocated until a compaction, which
//! runs once they outweigh the live data: a map uses at most about three times the bytes of
//! its live entries and table, plus 16 KiB. The segment itself never shrinks (it grows by
//! doubling); compaction and [`SharedMap::clear`] make its space reusable.
//!
//! A compaction needs room for its copy past `tail`. A map that reached its segment's maximum
//! size therefore keeps its garbage until a copy of what is left fits, or until it is cleared:
//! every change but `clear` leaves room below the maximum for an empty table, so `clear`
//! always works.
//!
//! # Safety
//!
//! The one `unsafe` operation is `record::write`, whose contract is that no published offset
//! points into the bytes written (and so no reader in this process reads them). Every call is
//! made under the lock, at a position no slot of the committed table points to:
//!
//! 1. in an insert and in the first copy of a compaction, at or past `tail`, which lies past
//!    the committed table and every record it points to (an invariant every change keeps, and
//!    recovery re-establishes after a crash);
//! 2. in the second copy of a compaction, below the first copy's table, after the map was
//!    switched to that copy, whose table and records all lie past it.
//!
//! (`clear`'s empty table at the start of the data area is written with atomic stores, and
//! only when the committed table and every record lie past it.)
//!
//! One reader takes no lock: `verify`. Run in a process where another thread compacts or
//! clears the same map, it can copy bytes of a record that became garbage while they are
//! rewritten. That copy is a race on plain bytes, as in the queue's `verify`: its result is
//! discarded, because `changes` moved meanwhile. (`memspace inspect` runs `verify` in a
//! process of its own.)

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::{codec, record};
#[cfg(doc)]
use crate::error::OpenError;
use crate::error::{Error, Result};
use crate::inspect::Report;
use crate::redis::{Object, RedisMap};
use crate::segment::{self, DATA_START, Kind, Segment, SegmentName, SegmentOptions};
use crate::sync::{RawGuard, lock_and_repair};

/// A slot's record word: never used.
const EMPTY: u64 = 0;
/// A slot's record word: its entry was removed (probe sequences go on past it).
const TOMBSTONE: u64 = 1;
const SLOT_SIZE: u64 = 16;
const TABLE_ALIGN: u64 = 64;
const MIN_CAPACITY_LOG2: u64 = 4;
const MAX_CAPACITY_LOG2: u64 = 40;
/// Bytes before a record's key: the key's length.
const KEY_LENGTH: usize = 4;
/// Garbage below this is never worth a compaction.
const MIN_GARBAGE: u64 = 16 << 10;
/// Room every change but `clear` leaves below the segment's maximum size, so that `clear` can
/// always place an empty table past the end of data: a full map can still be cleared.
const CLEAR_RESERVE: u64 = TABLE_ALIGN + (1 << MIN_CAPACITY_LOG2) * SLOT_SIZE;
/// How often `verify` tries to read the map between two changes.
const VERIFY_ATTEMPTS: u32 = 16;

/// The map's words in the segment's kind area (see the module docs).
#[repr(C)]
pub(crate) struct MapArea {
    table: AtomicU64,
    len: AtomicU64,
    used: AtomicU64,
    bytes: AtomicU64,
    tail: AtomicU64,
    changes: AtomicU64,
}

const _: () = assert!(size_of::<MapArea>() == 48);

/// A slot table, as decoded from the `table` word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Table {
    offset: u64,
    capacity: u64,
}

impl Table {
    /// The table a `table` word names, if its capacity is one a map can have.
    fn from_word(word: u64) -> Option<Self> {
        let log2 = word % TABLE_ALIGN;
        (MIN_CAPACITY_LOG2..=MAX_CAPACITY_LOG2)
            .contains(&log2)
            .then(|| Table {
                offset: word - log2,
                capacity: 1 << log2,
            })
    }

    fn word(self) -> u64 {
        self.offset | u64::from(self.capacity.trailing_zeros())
    }

    fn bytes(self) -> u64 {
        self.capacity * SLOT_SIZE
    }

    /// The first byte past the table (validated tables only: see [`Raw::table`]).
    fn end(self) -> u64 {
        self.offset + self.bytes()
    }

    /// The offset of slot `index` (taken modulo the capacity).
    fn slot(self, index: u64) -> u64 {
        self.offset + (index & (self.capacity - 1)) * SLOT_SIZE
    }

    fn home(self, hash: u64) -> u64 {
        hash & (self.capacity - 1)
    }
}

/// The capacity of a table for `live` entries: they fill at most half of it.
fn capacity_for(live: u64) -> Option<u64> {
    let capacity = live
        .checked_mul(2)?
        .max(1 << MIN_CAPACITY_LOG2)
        .checked_next_power_of_two()?;
    (capacity <= 1 << MAX_CAPACITY_LOG2).then_some(capacity)
}

/// The hash of a key's encoding: FNV-1a (64 bits), then `MurmurHash3`'s 64-bit finaliser.
/// Deterministic: the same in every process and every run.
fn hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV-1a's low bits depend only on the low bits of each byte; the finaliser mixes every
    // bit into every other, so that the low bits can pick the slot.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The bytes a record of `payload_len` bytes takes, padding included.
fn record_size(payload_len: usize) -> u64 {
    (record::HEADER + payload_len as u64).next_multiple_of(8)
}

/// A hash map whose entries live in shared memory, read and changed by any number of threads
/// and processes at once.
///
/// Keys and values are any serde types, stored in their `MessagePack` encoding (so `memspace
/// map get NAME` prints any map as JSON). Two keys are the same key when their encodings are
/// equal: integers of every width and signedness with the same value are the same key
/// (`5u8` and `5i64`), a struct and a map with the same fields in the same order are too, and
/// `1.0f32` and `1.0f64` are not. Do not use types whose encoding depends on the process, such
/// as a `HashMap` or `HashSet` with the default `RandomState` (their order differs), as keys:
/// use a `BTreeMap` or a sorted `Vec`.
///
/// Every operation takes the map's robust lock; a process killed in the middle of one leaves
/// the map as it was before the operation or as it is after it (see the module docs for the
/// protocol and what a crash leaves behind).
///
/// A name `redis://HOST:PORT/NAME` puts the map on a Redis server instead, as a hash of
/// encoded keys to encoded values, with the same methods ([`segment`](SharedMap::segment)
/// aside); iteration copies it with one `HGETALL`.
///
/// On Redis every method can also fail with
/// [`Error::RedisUnreachable`](crate::Error::RedisUnreachable), or with
/// [`OpenError::NotFound`](crate::OpenError::NotFound) or
/// [`OpenError::Replaced`](crate::OpenError::Replaced) once the map was removed (or removed and
/// created again) through another handle (see [`crate::backend`]).
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::collections::SharedMap;
///
/// let name = format!("doc-map-{}", std::process::id());
/// let ages = SharedMap::<String, u32>::create(&name)?;
/// assert_eq!(ages.insert(&"ada".into(), &36)?, None);
/// assert_eq!(ages.insert(&"ada".into(), &37)?, Some(36));
/// ages.insert(&"alan".into(), &41)?;
///
/// // Another process would open it by name, as this second handle does.
/// let same = SharedMap::<String, u32>::open(&name)?;
/// assert_eq!(same.get(&"ada".into())?, Some(37));
/// assert_eq!(same.len()?, 2);
/// let mut names = same.keys().collect::<memspace::Result<Vec<_>>>()?;
/// names.sort();
/// assert_eq!(names, ["ada", "alan"]);
///
/// assert_eq!(ages.remove(&"ada".into())?, Some(37));
/// assert!(!same.contains_key(&"ada".into())?);
/// ages.unlink()?;
/// # Ok(())
/// # }
/// ```
pub struct SharedMap<K, V> {
    repr: Repr,
    _entries: PhantomData<Entries<K, V>>,
}

/// Where the map lives.
#[derive(Clone)]
enum Repr {
    Shm(Arc<Segment>),
    Redis(RedisMap),
}

/// The map stores encodings, never a `K` or a `V`: it is `Send` and `Sync` whatever they are.
type Entries<K, V> = fn(K, V) -> (K, V);

impl<K, V> Clone for SharedMap<K, V> {
    fn clone(&self) -> Self {
        SharedMap {
            repr: self.repr.clone(),
            _entries: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for SharedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Debug` never waits: the count as stored, without the lock, and none from a Redis
        // server.
        let mut out = f.debug_struct("SharedMap");
        out.field("name", self.name());
        if let Repr::Shm(segment) = &self.repr {
            out.field("len", &Raw { segment }.area().len.load(Ordering::Relaxed));
        }
        out.finish_non_exhaustive()
    }
}

/// Marks the map as changing (`changes` odd) for as long as it lives. A holder killed meanwhile
/// leaves `changes` odd; recovery makes it even again.
struct Change<'a> {
    area: &'a MapArea,
}

impl<'a> Change<'a> {
    fn begin(area: &'a MapArea, _held: &RawGuard<'_>) -> Self {
        area.changes.fetch_add(1, Ordering::Relaxed);
        // The odd value is visible before any of the writes that follow.
        fence(Ordering::Release);
        Change { area }
    }
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        self.area.changes.fetch_add(1, Ordering::Release);
    }
}

/// The map's words, read and validated under the lock.
#[derive(Debug, Clone, Copy)]
struct State {
    table: Table,
    len: u64,
    used: u64,
    bytes: u64,
    tail: u64,
}

impl State {
    /// Bytes below `tail` that nothing points to.
    fn garbage(self) -> u64 {
        self.tail - DATA_START - self.table.bytes() - self.bytes
    }

    /// Whether the garbage outweighs the live data enough to be worth a compaction.
    fn wants_compaction(self) -> bool {
        self.garbage() >= MIN_GARBAGE.max(self.table.bytes() + self.bytes)
    }
}

/// An entry's record, copied out of the segment.
struct Entry {
    payload: Vec<u8>,
    key_len: usize,
}

impl Entry {
    fn key(&self) -> &[u8] {
        &self.payload[KEY_LENGTH..KEY_LENGTH + self.key_len]
    }

    fn value(&self) -> &[u8] {
        &self.payload[KEY_LENGTH + self.key_len..]
    }

    fn size(&self) -> u64 {
        record_size(self.payload.len())
    }
}

/// Where a key is, or where it would go.
enum Probe {
    Found { index: u64, entry: Entry },
    Vacant { index: u64 },
}

/// The map's machinery, independent of the key and value types (shared by every
/// `SharedMap<K, V>` and by `inspect::verify`).
#[derive(Clone, Copy)]
struct Raw<'a> {
    segment: &'a Segment,
}

impl<'a> Raw<'a> {
    fn area(self) -> &'a MapArea {
        self.segment.kind_area::<MapArea>()
    }

    fn corrupt(self, what: String) -> Error {
        self.segment.corrupt(what)
    }

    /// The committed table, checked to lie in the segment's data area, and mapped.
    fn table(self) -> Result<Table> {
        let word = self.area().table.load(Ordering::Acquire);
        let table = Table::from_word(word)
            .ok_or_else(|| self.corrupt(format!("the map's table word is {word:#x}")))?;
        self.segment.data_range(
            || format!("the map's table of {} slots", table.capacity),
            table.offset,
            table.bytes(),
            TABLE_ALIGN,
        )?;
        Ok(table)
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
        let state = State {
            table,
            len: area.len.load(Ordering::Relaxed),
            used: area.used.load(Ordering::Relaxed),
            bytes: area.bytes.load(Ordering::Relaxed),
            tail: area.tail.load(Ordering::Relaxed),
        };
        // Writes go at `tail`: in the data area, inside the committed size.
        self.segment
            .data_range(|| "the map's end of data".to_owned(), state.tail, 0, 8)?;
        let room = state.tail.checked_sub(DATA_START + table.bytes());
        if state.len > state.used
            || state.used >= table.capacity
            || !state.tail.is_multiple_of(8)
            || state.tail < table.end()
            || state.tail > self.segment.size()
            || room.is_none_or(|room| state.bytes > room)
        {
            return Err(self.corrupt(format!(
                "the map's counts are impossible: {} entries, {} used slots of {}, {} bytes of \
                 entries, end of data at {}",
                state.len, state.used, table.capacity, state.bytes, state.tail
            )));
        }
        Ok(state)
    }

    /// Recounts the derived words from the committed table, after a holder of the lock died.
    fn recover(self, _held: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let table = self.table()?;
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
        // A holder killed inside a change left `changes` odd: make it even, after the counts.
        if !area.changes.load(Ordering::Relaxed).is_multiple_of(2) {
            area.changes.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// Copies out and checks the entry whose record is at `at`.
    fn read_entry(self, at: u64) -> Result<Entry> {
        let payload = record::read(self.segment, at)?;
        let key_len = payload
            .first_chunk::<KEY_LENGTH>()
            .map(|bytes| u32::from_le_bytes(*bytes) as usize)
            .filter(|&key_len| key_len <= payload.len() - KEY_LENGTH)
            .ok_or_else(|| {
                self.corrupt(format!(
                    "the map entry at {at} has a key longer than the entry"
                ))
            })?;
        Ok(Entry { payload, key_len })
    }

    /// Looks `key` up in `table`.
    fn find(self, table: Table, key: &[u8], hash: u64) -> Result<Probe> {
        let mut vacant = None;
        for probe in 0..table.capacity {
            let index = table.home(hash.wrapping_add(probe));
            let [stored_hash, record] = self.slot(table, index)?;
            match record.load(Ordering::Acquire) {
                EMPTY => {
                    return Ok(Probe::Vacant {
                        index: vacant.unwrap_or(index),
                    });
                }
                TOMBSTONE => {
                    vacant.get_or_insert(index);
                }
                at => {
                    if stored_hash.load(Ordering::Relaxed) == hash {
                        let entry = self.read_entry(at)?;
                        if entry.key() == key {
                            return Ok(Probe::Found { index, entry });
                        }
                    }
                }
            }
        }
        vacant
            .map(|index| Probe::Vacant { index })
            .ok_or_else(|| self.corrupt("the map's table has no free slot".to_owned()))
    }

    /// Writes `payload` as a record at `at` (or just after); returns its offset and its end.
    fn write_record(self, held: &RawGuard<'_>, at: u64, payload: &[u8]) -> Result<(u64, u64)> {
        // SAFETY: we hold the lock (`held`), and every caller passes a position no slot of the
        // committed table points to (see the module's `# Safety`: `tail` in `insert` and in
        // `copy`'s first use, below the copy in use in its second).
        unsafe { record::write(self.segment, held, at, payload) }
    }

    /// A zeroed table of `capacity` slots at the first aligned offset at or after `at`.
    fn new_table(self, held: &RawGuard<'_>, at: u64, capacity: u64) -> Result<Table> {
        let table = Table {
            offset: at.next_multiple_of(TABLE_ALIGN),
            capacity,
        };
        self.segment.grow_to(table.end(), held)?;
        // The space may have held an earlier table or records (after a compaction).
        for index in 0..capacity {
            for word in self.slot(table, index)? {
                word.store(0, Ordering::Relaxed);
            }
        }
        Ok(table)
    }

    /// Puts (`hash`, `record`) into the first empty slot of its probe sequence in `table`,
    /// which nobody else can see yet.
    fn place(self, table: Table, hash: u64, record: u64) -> Result<()> {
        for probe in 0..table.capacity {
            let [stored_hash, word] = self.slot(table, hash.wrapping_add(probe))?;
            if word.load(Ordering::Relaxed) == EMPTY {
                stored_hash.store(hash, Ordering::Relaxed);
                word.store(record, Ordering::Relaxed);
                return Ok(());
            }
        }
        Err(self.corrupt("the map has more entries than its counts say".to_owned()))
    }

    /// Builds a table for at least `len + 1` entries past `tail`, holding the entries of the
    /// current one (their records stay where they are), and switches to it.
    fn regrow(self, held: &RawGuard<'_>, state: State) -> Result<State> {
        let capacity = state
            .len
            .checked_add(1)
            .and_then(capacity_for)
            .ok_or_else(|| self.too_many(state.len))?;
        let grown = self.new_table(held, state.tail, capacity)?;
        for index in 0..state.table.capacity {
            let [stored_hash, word] = self.slot(state.table, index)?;
            let at = word.load(Ordering::Relaxed);
            if at > TOMBSTONE {
                self.place(grown, stored_hash.load(Ordering::Relaxed), at)?;
            }
        }
        self.keep_reserve(held, grown.end())?;
        crate::failpoint::hit("map.table_built");
        // Commit: one store switches every process to the new table.
        let area = self.area();
        area.table.store(grown.word(), Ordering::Release);
        crate::failpoint::hit("map.table_switched");
        area.used.store(state.len, Ordering::Relaxed);
        area.tail.store(grown.end(), Ordering::Relaxed);
        Ok(State {
            table: grown,
            used: state.len,
            tail: grown.end(),
            ..state
        })
    }

    /// Makes sure the segment has room for `clear`'s table past `end` (see [`CLEAR_RESERVE`]).
    fn keep_reserve(self, held: &RawGuard<'_>, end: u64) -> Result<()> {
        self.segment.grow_to(end + CLEAR_RESERVE, held)
    }

    fn too_many(self, len: u64) -> Error {
        Error::Full {
            name: self.segment.name().clone(),
            needed: len.saturating_add(1).saturating_mul(2 * SLOT_SIZE),
            max_size: (1 << MAX_CAPACITY_LOG2) * SLOT_SIZE,
        }
    }

    /// Copies the live entries of `from` (none if not `keep`), table and records, to `at` and
    /// after; returns the new table, the end of the copy and how many entries it holds.
    /// Nothing points to the copy yet.
    fn copy(
        self,
        held: &RawGuard<'_>,
        from: Table,
        at: u64,
        capacity: u64,
        keep: bool,
    ) -> Result<(Table, u64, u64)> {
        let table = self.new_table(held, at, capacity)?;
        let (mut end, mut count) = (table.end(), 0);
        if keep {
            for index in 0..from.capacity {
                let record = self.record_word(from, index)?.load(Ordering::Relaxed);
                if record > TOMBSTONE {
                    let entry = self.read_entry(record)?;
                    let (copied, copy_end) = self.write_record(held, end, &entry.payload)?;
                    // The hash is recomputed, not copied: the copy is right even if a stored
                    // hash was not.
                    self.place(table, hash(entry.key()), copied)?;
                    end = copy_end;
                    count += 1;
                }
            }
        }
        Ok((table, end, count))
    }

    /// Compacts the map (or, if not `keep`, empties it): see the module docs. The map is
    /// unchanged if the segment cannot grow for the first copy.
    fn compact(self, held: &RawGuard<'_>, state: State, keep: bool) -> Result<State> {
        let area = self.area();
        let len = if keep { state.len } else { 0 };
        let capacity = capacity_for(len).ok_or_else(|| self.too_many(len))?;
        let (far, far_end, copied) = self.copy(held, state.table, state.tail, capacity, keep)?;
        crate::failpoint::hit("map.copy_built");
        // Commit: the map is the copy; everything below it is garbage. (No room is kept for
        // `clear` past the copy: it lies past the start of the data area, where `clear` puts
        // its table then.)
        area.table.store(far.word(), Ordering::Release);
        crate::failpoint::hit("map.copy_switched");
        let state = self.store_counts(State {
            table: far,
            len: copied,
            used: copied,
            bytes: far_end - far.end(),
            tail: far_end,
        });
        // A second copy at the start of the data area frees everything after it. It must end
        // before the first copy, which it reads, and leave room for `clear` after it.
        if DATA_START + (far_end - far.offset) + CLEAR_RESERVE <= far.offset {
            return self.move_to_start(held, far, capacity, true);
        }
        Ok(state)
    }

    /// Copies the entries of `from` (none if not `keep`) to the start of the data area and
    /// switches to the copy. The caller has checked that nothing the map points to lies
    /// where the copy goes.
    fn move_to_start(
        self,
        held: &RawGuard<'_>,
        from: Table,
        capacity: u64,
        keep: bool,
    ) -> Result<State> {
        let (near, near_end, len) = self.copy(held, from, DATA_START, capacity, keep)?;
        // Commit.
        self.area().table.store(near.word(), Ordering::Release);
        crate::failpoint::hit("map.moved");
        Ok(self.store_counts(State {
            table: near,
            len,
            used: len,
            bytes: near_end - near.end(),
            tail: near_end,
        }))
    }

    fn store_counts(self, state: State) -> State {
        let area = self.area();
        area.len.store(state.len, Ordering::Relaxed);
        area.used.store(state.used, Ordering::Relaxed);
        area.bytes.store(state.bytes, Ordering::Relaxed);
        area.tail.store(state.tail, Ordering::Relaxed);
        state
    }

    /// The lowest offset of the table and of the records it points to.
    fn lowest_offset(self, table: Table) -> Result<u64> {
        let mut lowest = table.offset;
        for index in 0..table.capacity {
            let at = self.record_word(table, index)?.load(Ordering::Relaxed);
            if at > TOMBSTONE {
                lowest = lowest.min(at);
            }
        }
        Ok(lowest)
    }

    /// Compacts the map if its garbage calls for it. A segment that cannot grow for the copy
    /// just keeps its garbage (the map is unchanged).
    fn tidy(self, held: &RawGuard<'_>, state: State) -> Result<State> {
        if !state.wants_compaction() {
            return Ok(state);
        }
        match self.compact(held, state, true) {
            Ok(state) => Ok(state),
            // Read again rather than trust `state`: whatever was committed is what counts.
            Err(Error::Full { .. } | Error::NoSpace { .. }) => self.state(held),
            Err(other) => Err(other),
        }
    }

    /// Looks `key` up; returns its slot and entry.
    fn get(self, key: &[u8]) -> Result<Option<(u64, Entry)>> {
        let _held = self.lock()?;
        let table = self.table()?;
        let found = match self.find(table, key, hash(key))? {
            Probe::Found { index, entry } => Some((index, entry)),
            Probe::Vacant { .. } => None,
        };
        // An absent key may only have looked absent: the table's page may have been lost to a
        // file shrunk during the lookup (read as zeros).
        self.segment.check_intact()?;
        Ok(found)
    }

    /// Inserts the entry encoded in `payload` (key length, key, value); returns the slot and
    /// entry it replaced.
    fn insert(self, payload: &[u8], key_len: usize) -> Result<Option<(u64, Entry)>> {
        let key = &payload[KEY_LENGTH..KEY_LENGTH + key_len];
        let hash = hash(key);
        let held = self.lock()?;
        let area = self.area();
        let _change = Change::begin(area, &held);
        let mut state = self.tidy(&held, self.state(&held)?)?;
        let mut probe = self.find(state.table, key, hash)?;
        if let Probe::Vacant { index } = probe
            && self
                .record_word(state.table, index)?
                .load(Ordering::Relaxed)
                == EMPTY
            && (state.used + 1) * 10 > state.table.capacity * 7
        {
            state = self.regrow(&held, state)?;
            probe = self.find(state.table, key, hash)?;
        }
        let (at, end) = self.write_record(&held, state.tail, payload)?;
        self.keep_reserve(&held, end)?;
        area.tail.store(end, Ordering::Relaxed);
        crate::failpoint::hit("map.written");
        let size = end - at;
        let replaced = match probe {
            Probe::Found { index, entry } => {
                // Commit: the slot points to the new record instead of the old one.
                self.record_word(state.table, index)?
                    .store(at, Ordering::Release);
                crate::failpoint::hit("map.replaced");
                let bytes = state.bytes.saturating_sub(entry.size()) + size;
                area.bytes.store(bytes, Ordering::Relaxed);
                Some((index, entry))
            }
            Probe::Vacant { index } => {
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
            }
        };
        self.segment.note_writer();
        Ok(replaced)
    }

    /// Removes `key`; returns the slot and entry it had.
    fn remove(self, key: &[u8]) -> Result<Option<(u64, Entry)>> {
        let hash = hash(key);
        let held = self.lock()?;
        let area = self.area();
        let _change = Change::begin(area, &held);
        let state = self.tidy(&held, self.state(&held)?)?;
        let Probe::Found { index, entry } = self.find(state.table, key, hash)? else {
            return Ok(None);
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

    /// Every entry with its slot, read under the lock.
    fn entries(self) -> Result<Vec<(u64, Entry)>> {
        let _held = self.lock()?;
        let table = self.table()?;
        let mut entries = Vec::new();
        for index in 0..table.capacity {
            let at = self.record_word(table, index)?.load(Ordering::Acquire);
            if at > TOMBSTONE {
                entries.push((index, self.read_entry(at)?));
            }
        }
        Ok(entries)
    }

    /// Empties the map and makes its space reusable.
    fn clear(self) -> Result<()> {
        let held = self.lock()?;
        let _change = Change::begin(self.area(), &held);
        let state = self.state(&held)?;
        let smallest = capacity_for(0).expect("an empty table has a capacity");
        if self.lowest_offset(state.table)? >= DATA_START + smallest * SLOT_SIZE {
            // Nothing the map points to lies at the start of the data area (the map is a
            // compaction's first copy): its empty table goes there at once.
            self.move_to_start(&held, state.table, smallest, false)?;
        } else {
            self.compact(&held, state, false)?;
        }
        self.segment.note_writer();
        Ok(())
    }
}

impl<K, V> SharedMap<K, V> {
    /// The entries, copied (for the iterators).
    fn entries(&self) -> Result<Vec<(u64, Entry)>> {
        match &self.repr {
            Repr::Shm(segment) => Raw { segment }.entries(),
            Repr::Redis(map) => Ok((0u64..)
                .zip(map.all()?)
                .map(|(index, (key, value))| {
                    let mut payload = Vec::with_capacity(KEY_LENGTH + key.len() + value.len());
                    payload.extend_from_slice(&[0; KEY_LENGTH]);
                    payload.extend_from_slice(&key);
                    payload.extend_from_slice(&value);
                    (
                        index,
                        Entry {
                            payload,
                            key_len: key.len(),
                        },
                    )
                })
                .collect()),
        }
    }

    /// The number of entries.
    ///
    /// Read without the lock, unless a change is under way in another thread or process (or
    /// its maker died in the middle of it): then it waits for the lock, so that the count is
    /// always that of a whole map, before or after each change.
    /// On Redis, the server is asked.
    ///
    /// # Errors
    ///
    /// Never for shared memory. On Redis, [`Error::RedisUnreachable`] if the server cannot be
    /// reached, [`OpenError::NotFound`](crate::OpenError::NotFound) or
    /// [`OpenError::Replaced`](crate::OpenError::Replaced) if the map was removed (or created
    /// again) since this handle opened it.
    pub fn len(&self) -> Result<u64> {
        let segment = match &self.repr {
            Repr::Shm(segment) => segment,
            Repr::Redis(map) => return map.len(),
        };
        Ok(Self::shm_len(Raw { segment }))
    }

    fn shm_len(raw: Raw<'_>) -> u64 {
        let area = raw.area();
        let before = area.changes.load(Ordering::Acquire);
        if before.is_multiple_of(2) {
            let len = area.len.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if area.changes.load(Ordering::Relaxed) == before {
                return len;
            }
        }
        // Under the lock, after any recovery, the count is exact. If the lock cannot be had
        // (it is damaged), the stored count is the best answer there is.
        let _held = raw.lock();
        area.len.load(Ordering::Relaxed)
    }

    /// Whether the map has no entries.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::len`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Bytes of the segment in use: the control page, the table, the entries, and the garbage
    /// of replaced and removed entries not yet compacted away (the segment itself grows by
    /// doubling, so its size can be up to twice this).
    /// 0 for a Redis map.
    #[must_use]
    pub fn used_bytes(&self) -> u64 {
        match &self.repr {
            Repr::Shm(segment) => Raw { segment }.area().tail.load(Ordering::Relaxed),
            Repr::Redis(_) => 0,
        }
    }

    /// The map's name (`redis://HOST:PORT/NAME` for a Redis map).
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        match &self.repr {
            Repr::Shm(segment) => segment.name(),
            Repr::Redis(map) => map.object().name(),
        }
    }

    /// The item type recorded by the map's creator: [`std::any::type_name`] of `(K, V)`,
    /// the type the creator used, which need not be this handle's.
    ///
    /// In shared memory the name is cut at [`TYPE_NAME_MAX`](crate::segment::TYPE_NAME_MAX)
    /// bytes (see [`Segment::type_name`]); on Redis it is whole. Tools use it to refuse a write
    /// that a program of the creator's type could not read (`memspace map ...` does).
    #[must_use]
    pub fn recorded_type_name(&self) -> &str {
        match &self.repr {
            Repr::Shm(segment) => segment.type_name(),
            Repr::Redis(map) => map.object().type_name(),
        }
    }

    /// The map's segment (identity, size, address in this process), or `None` for a
    /// Redis map, which has none.
    #[must_use]
    pub fn segment(&self) -> Option<&Segment> {
        match &self.repr {
            Repr::Shm(segment) => Some(segment),
            Repr::Redis(_) => None,
        }
    }

    /// Removes the map's name from the system (see [`Segment::remove`]); for a Redis map,
    /// deletes its keys.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`] if it was removed already.
    pub fn unlink(&self) -> Result<()> {
        match &self.repr {
            Repr::Shm(segment) => Ok(segment.unlink()?),
            Repr::Redis(map) => map.object().remove(),
        }
    }
}

impl<K, V> SharedMap<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// Creates an anonymous map, removed when the last process using it drops its handles.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment (no space, permissions).
    pub fn new() -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), &SegmentOptions::new(), true)
    }

    /// Creates the map `name`, which persists until removed (`memspace rm NAME`).
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`], [`OpenError::InvalidName`], or what the system refuses.
    pub fn create(name: &str) -> Result<Self> {
        Self::create_with(name, &SegmentOptions::new())
    }

    /// Creates the map `name` with `options` (mode, initial and maximum size; they do not
    /// apply to a Redis map).
    ///
    /// # Errors
    ///
    /// As [`SharedMap::create`].
    pub fn create_with(name: &str, options: &SegmentOptions) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, options, false)
    }

    /// Opens the existing map `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`], [`OpenError::WrongKind`] if it holds something else, or a
    /// header problem.
    pub fn open(name: &str) -> Result<Self> {
        let name = SegmentName::new(name)?;
        if name.is_redis() {
            return Ok(SharedMap {
                repr: Repr::Redis(RedisMap::new(Object::open(&name, Kind::Map)?)),
                _entries: PhantomData,
            });
        }
        Self::from_segment(Segment::open(&name, Some(Kind::Map))?)
    }

    /// Creates the map `name` in `backend` (see [`Backend::locate`](crate::Backend::locate)).
    ///
    /// # Errors
    ///
    /// As [`SharedMap::create`].
    pub fn create_in(backend: &crate::Backend, name: &str) -> Result<Self> {
        Self::create(&backend.locate(name))
    }

    /// Opens the map `name` in `backend`.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::open`].
    pub fn open_in(backend: &crate::Backend, name: &str) -> Result<Self> {
        Self::open(&backend.locate(name))
    }

    /// A map over an already open segment (for example one opened with
    /// [`inspect::observe`](crate::inspect::observe), which does not join its users).
    ///
    /// # Errors
    ///
    /// [`OpenError::WrongKind`] if the segment is not a map.
    pub fn from_segment(segment: Segment) -> Result<Self> {
        let segment = segment.expecting(Kind::Map)?;
        Ok(SharedMap {
            repr: Repr::Shm(Arc::new(segment)),
            _entries: PhantomData,
        })
    }

    fn create_segment(
        name: &SegmentName,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        if name.is_redis() {
            let init = crate::redis::Init {
                type_name: std::any::type_name::<(K, V)>(),
                ..Default::default()
            };
            return Ok(SharedMap {
                repr: Repr::Redis(RedisMap::new(Object::create(name, Kind::Map, &init)?)),
                _entries: PhantomData,
            });
        }
        let segment = Segment::create(
            name,
            Kind::Map,
            std::any::type_name::<(K, V)>(),
            options,
            anonymous,
            |segment| {
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
                Ok(())
            },
        )?;
        Self::from_segment(segment)
    }

    fn encode_error<T: ?Sized>(&self, source: rmp_serde::encode::Error) -> Error {
        Error::Encode {
            name: self.name().clone(),
            type_name: std::any::type_name::<T>(),
            source,
        }
    }

    fn encode_key(&self, key: &K) -> Result<Vec<u8>> {
        codec::encode(key).map_err(|source| self.encode_error::<K>(source))
    }

    /// The record payload of an entry: key length, key, value; and the key's length.
    fn encode_entry(&self, key: &K, value: &V) -> Result<(Vec<u8>, usize)> {
        let mut payload = vec![0; KEY_LENGTH];
        codec::encode_into(&mut payload, key).map_err(|source| self.encode_error::<K>(source))?;
        let key_len = payload.len() - KEY_LENGTH;
        codec::encode_into(&mut payload, value).map_err(|source| self.encode_error::<V>(source))?;
        let too_long = || Error::Full {
            name: self.name().clone(),
            needed: payload.len() as u64,
            max_size: record::MAX_PAYLOAD as u64,
        };
        let key_len_word = u32::try_from(key_len).map_err(|_| too_long())?;
        if payload.len() > record::MAX_PAYLOAD {
            return Err(too_long());
        }
        payload[..KEY_LENGTH].copy_from_slice(&key_len_word.to_le_bytes());
        Ok((payload, key_len))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8], slot: u64) -> Result<T> {
        codec::decode(bytes).map_err(|source| Error::Decode {
            name: self.name().clone(),
            index: slot,
            expected: std::any::type_name::<T>(),
            source,
        })
    }

    /// Inserts `value` under `key`; returns the value it replaced, if the key had one.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the key or value cannot be encoded; [`Error::Full`] or
    /// [`Error::NoSpace`] if the segment cannot grow (the map is unchanged); [`Error::Decode`] if
    /// the replaced value is not a `V` (it is replaced all the same; the error's `index` is the
    /// entry's slot; on Redis it is [`Error::DecodeMapValue`], naming the key); [`Error::Corrupt`]
    /// if the segment was damaged. On Redis, [`OpenError::NotFound`] if the map was removed
    /// (nothing is written), or [`Error::RedisUnreachable`].
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        let (payload, key_len) = self.encode_entry(key, value)?;
        let segment = match &self.repr {
            Repr::Shm(segment) => segment,
            Repr::Redis(map) => {
                let (key, value) = payload[KEY_LENGTH..].split_at(key_len);
                return map
                    .insert(key, value)?
                    .map(|old| map.decode_value(key, &old))
                    .transpose();
            }
        };
        Raw { segment }
            .insert(&payload, key_len)?
            .map(|(slot, old)| self.decode(old.value(), slot))
            .transpose()
    }

    /// The value of `key`, if it has one.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the key cannot be encoded; [`Error::Decode`] if the stored value is not
    /// a `V` (on Redis [`Error::DecodeMapValue`], naming the key); [`Error::Corrupt`] if the
    /// segment was damaged.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let key = self.encode_key(key)?;
        match &self.repr {
            Repr::Shm(segment) => Raw { segment }
                .get(&key)?
                .map(|(slot, entry)| self.decode(entry.value(), slot))
                .transpose(),
            Repr::Redis(map) => map
                .get(&key)?
                .map(|v| map.decode_value(&key, &v))
                .transpose(),
        }
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::get`], except that the value is not decoded.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        let key = self.encode_key(key)?;
        match &self.repr {
            Repr::Shm(segment) => Ok(Raw { segment }.get(&key)?.is_some()),
            Repr::Redis(map) => map.contains(&key),
        }
    }

    /// Removes `key`; returns its value, if it had one.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::get`]; a value that is not a `V` is removed all the same. On Redis,
    /// [`OpenError::NotFound`] if the map was removed.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let key = self.encode_key(key)?;
        match &self.repr {
            Repr::Shm(segment) => Raw { segment }
                .remove(&key)?
                .map(|(slot, old)| self.decode(old.value(), slot))
                .transpose(),
            Repr::Redis(map) => map
                .remove(&key)?
                .map(|v| map.decode_value(&key, &v))
                .transpose(),
        }
    }

    /// Removes every entry, and makes the space they took reusable.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the segment was damaged. On Redis, [`OpenError::NotFound`] if the
    /// map was removed.
    pub fn clear(&self) -> Result<()> {
        match &self.repr {
            Repr::Shm(segment) => Raw { segment }.clear(),
            Repr::Redis(map) => map.clear(),
        }
    }

    /// The entries, in no particular order.
    ///
    /// The iterator copies the map, under the lock, when its first item is asked for, and
    /// yields the entries of that copy: each once, as they were at that moment, whatever other
    /// processes do meanwhile. It yields one error instead if the copy cannot be made.
    #[must_use]
    pub fn iter(&self) -> MapIter<'_, K, V> {
        MapIter {
            map: self,
            snapshot: Snapshot::default(),
        }
    }

    /// The keys, in no particular order (copied as [`SharedMap::iter`] says).
    #[must_use]
    pub fn keys(&self) -> MapKeys<'_, K, V> {
        MapKeys {
            map: self,
            snapshot: Snapshot::default(),
        }
    }

    /// The values, in no particular order (copied as [`SharedMap::iter`] says).
    #[must_use]
    pub fn values(&self) -> MapValues<'_, K, V> {
        MapValues {
            map: self,
            snapshot: Snapshot::default(),
        }
    }

    /// A copy of the entries, in no particular order.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if an entry is not a `(K, V)` (its `index` is the entry's slot);
    /// [`Error::Corrupt`] if the segment was damaged.
    pub fn to_vec(&self) -> Result<Vec<(K, V)>> {
        self.iter().collect()
    }

    /// A copy of the map as a `HashMap`.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::to_vec`].
    pub fn to_hash_map(&self) -> Result<HashMap<K, V>>
    where
        K: Hash + Eq,
    {
        self.iter().collect()
    }
}

/// A copy of a map's entries, made when first asked for.
#[derive(Default)]
enum Snapshot {
    #[default]
    NotTaken,
    Taken(std::vec::IntoIter<(u64, Entry)>),
    Failed,
}

impl Snapshot {
    fn next(
        &mut self,
        entries: impl FnOnce() -> Result<Vec<(u64, Entry)>>,
    ) -> Option<Result<(u64, Entry)>> {
        if let Snapshot::NotTaken = self {
            match entries() {
                Ok(entries) => *self = Snapshot::Taken(entries.into_iter()),
                Err(err) => {
                    *self = Snapshot::Failed;
                    return Some(Err(err));
                }
            }
        }
        match self {
            Snapshot::Taken(entries) => entries.next().map(Ok),
            Snapshot::NotTaken | Snapshot::Failed => None,
        }
    }

    fn remaining(&self) -> Option<usize> {
        match self {
            Snapshot::NotTaken => None,
            Snapshot::Taken(entries) => Some(entries.len()),
            Snapshot::Failed => Some(0),
        }
    }
}

/// The entries of a [`SharedMap`]; see [`SharedMap::iter`].
pub struct MapIter<'a, K, V> {
    map: &'a SharedMap<K, V>,
    snapshot: Snapshot,
}

/// The keys of a [`SharedMap`]; see [`SharedMap::keys`].
pub struct MapKeys<'a, K, V> {
    map: &'a SharedMap<K, V>,
    snapshot: Snapshot,
}

/// The values of a [`SharedMap`]; see [`SharedMap::values`].
pub struct MapValues<'a, K, V> {
    map: &'a SharedMap<K, V>,
    snapshot: Snapshot,
}

macro_rules! map_iterator {
    ($name:ident, $item:ty, |$map:ident, $slot:ident, $entry:ident| $decode:expr) => {
        impl<K, V> Iterator for $name<'_, K, V>
        where
            K: Serialize + DeserializeOwned,
            V: Serialize + DeserializeOwned,
        {
            type Item = Result<$item>;

            fn next(&mut self) -> Option<Self::Item> {
                let $map = self.map;
                Some(
                    self.snapshot
                        .next(|| $map.entries())?
                        .and_then(|($slot, $entry)| $decode),
                )
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                match self.snapshot.remaining() {
                    Some(n) => (n, Some(n)),
                    None => (0, None),
                }
            }
        }

        impl<K, V> fmt::Debug for $name<'_, K, V> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("map", self.map.name())
                    .field("remaining", &self.snapshot.remaining())
                    .finish()
            }
        }
    };
}

map_iterator!(MapIter, (K, V), |map, slot, entry| Ok((
    map.decode(entry.key(), slot)?,
    map.decode(entry.value(), slot)?
)));
map_iterator!(MapKeys, K, |map, slot, entry| map.decode(entry.key(), slot));
map_iterator!(MapValues, V, |map, slot, entry| map
    .decode(entry.value(), slot));

impl<'a, K, V> IntoIterator for &'a SharedMap<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    type Item = Result<(K, V)>;
    type IntoIter = MapIter<'a, K, V>;

    fn into_iter(self) -> MapIter<'a, K, V> {
        self.iter()
    }
}

serialize_as_name!(SharedMap<K, V> where K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned);

/// The number of entries of the map in `segment`, as stored (no lock: it can be one off while
/// a writer is in the middle of a change, or died there).
pub(crate) fn len(segment: &Segment) -> u64 {
    Raw { segment }.area().len.load(Ordering::Acquire)
}

/// Checks a map segment without taking its lock (other processes may change it meanwhile):
/// the table, every entry's record (bounds, checksum, encoding, stored hash), that every key is
/// reachable from its home slot and appears once, that records and the table do not overlap,
/// and the counts. Used by [`inspect::verify`](crate::inspect::verify).
///
/// It reads the map between two changes (`changes` even and unchanged), or while the lock's
/// holder is dead (nothing changes until the next locker recovers); then counts that disagree
/// with the table are a note (the next locker recounts), not a problem.
pub(crate) fn verify(segment: &Segment, report: &mut Report) {
    let raw = Raw { segment };
    let area = raw.area();
    for _ in 0..VERIFY_ATTEMPTS {
        let before = area.changes.load(Ordering::Acquire);
        let interrupted = !before.is_multiple_of(2);
        let mut found = Report::default();
        check(raw, &mut found, interrupted);
        fence(Ordering::Acquire);
        let after = area.changes.load(Ordering::Relaxed);
        let holder_dead = segment
            .lock_owner()
            .is_some_and(|pid| !segment::pid_alive(pid));
        if before == after && (!interrupted || holder_dead) {
            for problem in found.problems {
                report.problem(problem);
            }
            for note in found.notes {
                report.note(note);
            }
            report.items_checked += found.items_checked;
            return;
        }
        std::thread::yield_now();
    }
    report.note(format!(
        "the map changed during each of {VERIFY_ATTEMPTS} attempts to check it; its entries \
         were not checked"
    ));
}

/// One reading of the map for [`verify`].
fn check(raw: Raw<'_>, report: &mut Report, interrupted: bool) {
    let table = match raw.table() {
        Ok(table) => table,
        Err(err) => return report.problem(describe(&err)),
    };
    let Some(mut census) = census(raw, table, report) else {
        return;
    };
    census.ranges.sort_unstable();
    for pair in census.ranges.windows(2) {
        if pair[1].0 < pair[0].1 {
            report.problem(format!(
                "the map's data at {}..{} overlaps the data at {}..{}",
                pair[0].0, pair[0].1, pair[1].0, pair[1].1
            ));
        }
    }
    census.hashes.sort_unstable();
    let key_at = |index: u64| {
        let at = raw.slot(table, index).ok()?[1].load(Ordering::Acquire);
        Some(raw.read_entry(at).ok()?.key().to_vec())
    };
    for pair in census.hashes.windows(2) {
        let ((hash_a, slot_a), (hash_b, slot_b)) = (pair[0], pair[1]);
        if hash_a == hash_b && key_at(slot_a).is_some_and(|key| Some(key) == key_at(slot_b)) {
            report.problem(format!("slots {slot_a} and {slot_b} hold the same key"));
        }
    }
    check_counts(raw, &census, report, interrupted);
}

/// What [`census`] found in a table.
#[derive(Debug, Default)]
struct Census {
    live: u64,
    tombstones: u64,
    bytes: u64,
    /// The end of the table or of its last record, whichever is later.
    end: u64,
    /// The byte ranges of the table and of every record.
    ranges: Vec<(u64, u64)>,
    /// The hash of every live key, and its slot.
    hashes: Vec<(u64, u64)>,
}

/// Reads every slot of `table` and checks each entry; `None` if the table cannot be read.
fn census(raw: Raw<'_>, table: Table, report: &mut Report) -> Option<Census> {
    let mut first_empty = None;
    for index in 0..table.capacity {
        match raw.record_word(table, index) {
            Ok(record) if record.load(Ordering::Acquire) == EMPTY => {
                first_empty = Some(index);
                break;
            }
            Ok(_) => {}
            Err(err) => {
                report.problem(describe(&err));
                return None;
            }
        }
    }
    let Some(first_empty) = first_empty else {
        report.problem(format!(
            "the map's table has no empty slot among its {} slots",
            table.capacity
        ));
        return None;
    };
    let mut census = Census {
        end: table.end(),
        ranges: vec![(table.offset, table.end())],
        ..Census::default()
    };
    // Scan from just after an empty slot, so that `last_empty` is always the last empty slot
    // before the current one: a key can be found if no empty slot lies between its home slot
    // and its slot.
    let mut last_empty = first_empty;
    for step in 1..=table.capacity {
        if report.is_full() {
            break;
        }
        let index = table.home(first_empty + step);
        let [stored_hash, record] = match raw.slot(table, index) {
            Ok(words) => words,
            Err(err) => {
                report.problem(describe(&err));
                return None;
            }
        };
        match record.load(Ordering::Acquire) {
            EMPTY => last_empty = index,
            TOMBSTONE => census.tombstones += 1,
            at => {
                census.live += 1;
                report.items_checked += 1;
                let entry = match raw.read_entry(at) {
                    Ok(entry) => entry,
                    Err(err) => {
                        report.problem(format!("slot {index}: {}", describe(&err)));
                        continue;
                    }
                };
                let key_hash = hash(entry.key());
                if key_hash != stored_hash.load(Ordering::Relaxed) {
                    report.problem(format!(
                        "slot {index}: the stored hash does not match the entry's key"
                    ));
                }
                let (home, mask) = (table.home(key_hash), table.capacity - 1);
                if index.wrapping_sub(home) & mask >= index.wrapping_sub(last_empty) & mask {
                    report.problem(format!(
                        "slot {index}: its key cannot be found: an empty slot lies between its \
                         home slot {home} and it"
                    ));
                }
                if codec::decode::<IgnoredAny>(entry.key()).is_err()
                    || codec::decode::<IgnoredAny>(entry.value()).is_err()
                {
                    report.problem(format!(
                        "slot {index}: the entry's key or value is not a well-formed value"
                    ));
                }
                census.bytes += entry.size();
                census.end = census.end.max(at + entry.size());
                census.ranges.push((at, at + entry.size()));
                census.hashes.push((key_hash, index));
            }
        }
    }
    Some(census)
}

/// Compares the map's counts with what the table holds.
fn check_counts(raw: Raw<'_>, census: &Census, report: &mut Report, interrupted: bool) {
    let area = raw.area();
    let (len, used, bytes, tail) = (
        area.len.load(Ordering::Relaxed),
        area.used.load(Ordering::Relaxed),
        area.bytes.load(Ordering::Relaxed),
        area.tail.load(Ordering::Relaxed),
    );
    // Read after `tail`: every growth made before `tail` was stored is seen.
    let size = raw.segment.size();
    if tail > size {
        report.problem(format!(
            "the map's end of data {tail} lies past the segment's size {size}"
        ));
    }
    let Census {
        live,
        tombstones,
        end,
        ..
    } = *census;
    if len != live || used != live + tombstones || bytes != census.bytes || tail < end {
        let what = format!(
            "the counts say {len} entries, {used} used slots, {bytes} bytes, data ending at \
             {tail}; the table holds {live} entries, {} used slots, {} bytes, ending at {end}",
            live + tombstones,
            census.bytes
        );
        if interrupted {
            report.note(format!(
                "{what}: a writer was interrupted; the next locker recounts"
            ));
        } else {
            report.problem(what);
        }
    }
}

fn describe(err: &Error) -> String {
    match err {
        Error::Corrupt { what, .. } => what.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_word_packs_offset_and_capacity() {
        let table = Table {
            offset: 4096 + 640,
            capacity: 1 << 10,
        };
        assert_eq!(Table::from_word(table.word()), Some(table));
        assert_eq!(Table::from_word(4096 + 3), None, "fewer than 16 slots");
        assert_eq!(Table::from_word(4096 + 41), None, "more than 2^40 slots");
    }

    #[test]
    fn hashing_is_fnv1a_then_the_murmur3_finaliser() {
        // Fixed values: a change here changes where every existing map keeps its keys.
        assert_eq!(hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash(b"a"), 0x82a2_a958_a9be_ce5b);
    }

    #[test]
    fn keys_that_differ_in_high_bits_only_spread_over_a_small_table() {
        // FNV-1a alone would put all of these in one slot of a 16-slot table.
        let homes: std::collections::HashSet<u64> = (0..16u8)
            .map(|high| hash(&[high << 4, 0x01]) & 15)
            .collect();
        assert!(homes.len() > 4, "{homes:?}");
    }

    #[test]
    fn a_table_holds_its_entries_at_half_load_at_most() {
        assert_eq!(capacity_for(0), Some(16));
        assert_eq!(capacity_for(8), Some(16));
        assert_eq!(capacity_for(9), Some(32));
        assert_eq!(capacity_for(1 << 39), Some(1 << 40));
        assert_eq!(capacity_for((1 << 39) + 1), None);
        assert_eq!(capacity_for(u64::MAX), None);
    }
}
