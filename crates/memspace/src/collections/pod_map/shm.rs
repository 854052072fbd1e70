//! The engine of [`SharedPodMap`](super::SharedPodMap): its words in the segment and the
//! lookups made without the lock (the changes made under it are in `write.rs`). It knows keys
//! and values as bytes of the sizes the segment records, so `inspect` checks a map without
//! knowing its types.
//!
//! # Layout
//!
//! ```text
//! kind area:  table    offset of the table | log2 of its capacity        committed
//!             seed     the hash's seed                                  fixed at creation
//!             len      live keys                                        derived
//!             used     live and removed slots of the table              derived
//!             changes  odd while a holder of the lock changes the map   (sequence lock)
//!             journal  0, or 1 + the slot a replace is rewriting        committed
//!             key_size, key_align, value_size, value_align              fixed at creation
//!             old      0, or the table a migration moves entries from   committed
//!             moved    slots of `old` whose entries were moved          committed
//!             clean    past it, the data area was never written         derived
//! data area:  [journal: the value a replace overwrites][tables ...]
//! slot:       [tag][key words][value words], every one a u64
//! ```
//!
//! A slot's tag is 0 (empty), 1 (removed) or the key's hash with the top bit set (live). Keys
//! and values are stored as their bytes in little-endian words, the last one zero-padded. Keys
//! are placed by linear probing from their hash (see [`hash`]); a table is at most 7/10 full,
//! counting removed slots.
//!
//! # Growth
//!
//! A table of fewer than [`MIGRATE_FROM`] slots is rebuilt in one step: a new table is built
//! beside it, then `table` is switched. A larger one migrates: a new table, empty, becomes
//! `table` and the current one `old`; every insert then first moves the entries of the next
//! [`MOVES_PER_INSERT`] slots of `old` (each placed in `table`, then `moved` advanced past
//! them), and the insert that moves the last one clears `old`. Until then lookups look in
//! `table`, then in the slots of `old` at or past `moved`. A key written meanwhile is written
//! in `table` (a key still in `old` is copied over first); a key removed meanwhile is removed
//! from `old` too, before `table`. An entry can so be in both tables, after a kill or a
//! replace: the one in `table` is the key's, and a migration step finds it there and moves
//! nothing. The new table holds the live keys and one more per insert the migration lasts, so
//! it is not outgrown before `old` is empty; its bytes are committed ahead, a step at a time,
//! from when the table is 4/10 full, and past `clean` they need no zeroing.
//!
//! # Crash safety
//!
//! Every change is made under the segment's robust lock and commits with one store:
//!
//! * a new key: its key and value words go into a vacant slot, then the slot's tag is stored;
//! * a replace: the old value is copied to the journal and `journal` names the slot, then the
//!   new value is written and `journal` cleared (the commit). Recovery copies an interrupted
//!   replace's journal back: the old value stays;
//! * a remove: the slot's tag becomes removed (or empty, when the next slot is empty);
//! * a rebuild, and `clear` (which finishes a migration first): a new table is built beside
//!   the current one (at the start of the table area if it fits before the current one, else
//!   after it), then `table` is switched;
//! * a migration's start: `old` is named, then `table` switched; its steps: an entry placed in
//!   `table`, then `moved` stored.
//!
//! Recovery after a holder's death runs inside the change the holder left under way (or a
//! change of its own), so that readers wait until it is done: it puts back an interrupted
//! replace, ends a migration that did not start (`old` naming `table`), recounts `len` and
//! `used` (a key in both tables counted once) and raises `clean` past both tables. A
//! recovery that fails leaves the change under way, for the next locker's.
//!
//! # Readers
//!
//! Lookups take no lock: they read between two changes (`changes` even and unmoved; see
//! `changes.rs`), every word with an atomic load, so a slot that a writer rewrites meanwhile
//! is read whole or the read is made again.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::collections::changes::{self, Window};
use crate::collections::table_word::{MIN_CAPACITY_LOG2, TABLE_ALIGN, Table, capacity_for};
pub(super) use crate::collections::words::{holds, load_bytes, store_bytes, word_of};
use crate::error::{Error, Result};
use crate::segment::{DATA_START, Segment};
use crate::shm_safe::ShmSafe;

mod write;

/// A slot's tag: never used, so a probe ends here.
const EMPTY: u64 = 0;
/// A slot's tag: its entry was removed; probes go past it.
const REMOVED: u64 = 1;
/// The bit set in the tag of a live slot (the rest is the key's hash).
const LIVE: u64 = 1 << 63;

/// Tables of this many slots or more migrate instead of being rebuilt in one step.
pub(super) const MIGRATE_FROM: u64 = 1024;
/// Slots of the old table each insert moves during a migration.
pub(super) const MOVES_PER_INSERT: u64 = 64;
/// The largest key and value together, in bytes: a slot is one cache line or a few, not
/// kilobytes.
pub(super) const MAX_ENTRY_BYTES: usize = 1024;
/// A lookup without the lock looks this many slots between checks that its window still holds:
/// a table read while it was rebuilt can be garbage, with no empty slot to end a probe.
const PROBES_PER_LOOK: u64 = 64;

/// The map's words in the segment's kind area (see the module docs).
#[repr(C)]
pub(super) struct PodMapArea {
    pub(super) table: AtomicU64,
    pub(super) seed: AtomicU64,
    pub(super) len: AtomicU64,
    pub(super) used: AtomicU64,
    pub(super) changes: AtomicU64,
    pub(super) journal: AtomicU64,
    pub(super) key_size: AtomicU64,
    pub(super) key_align: AtomicU64,
    pub(super) value_size: AtomicU64,
    pub(super) value_align: AtomicU64,
    pub(super) old: AtomicU64,
    pub(super) moved: AtomicU64,
    pub(super) clean: AtomicU64,
}

// SAFETY: `#[repr(C)]`, fixed-width atomics only: one layout in every process, any bits are a
// value (every word is checked before it is followed), mutation is atomic, nothing to drop.
#[allow(unsafe_code)]
unsafe impl ShmSafe for PodMapArea {}

/// How many words a key and a value take, from their sizes in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    key_bytes: usize,
    value_bytes: usize,
    key_words: usize,
    value_words: usize,
}

impl Shape {
    /// The shape of keys of `key_bytes` and values of `value_bytes`, if a map can hold them.
    pub(super) fn new(key_bytes: u64, value_bytes: u64) -> Option<Self> {
        let key_bytes = usize::try_from(key_bytes).ok()?;
        let value_bytes = usize::try_from(value_bytes).ok()?;
        (key_bytes > 0 && key_bytes.checked_add(value_bytes)? <= MAX_ENTRY_BYTES).then_some(Shape {
            key_bytes,
            value_bytes,
            key_words: key_bytes.div_ceil(8),
            value_words: value_bytes.div_ceil(8),
        })
    }

    fn slot_words(self) -> usize {
        1 + self.key_words + self.value_words
    }

    fn slot_bytes(self) -> u64 {
        self.slot_words() as u64 * 8
    }

    /// The bytes the journal takes at the start of the data area: room for one value, rounded
    /// up so that tables start aligned.
    fn journal_bytes(self) -> u64 {
        (self.value_words as u64 * 8)
            .next_multiple_of(TABLE_ALIGN)
            .max(TABLE_ALIGN)
    }

    fn tables_start(self) -> u64 {
        DATA_START + self.journal_bytes()
    }
}

/// A table checked to lie in the data area and mapped, with its words: every slot of it can be
/// read without another check.
#[derive(Clone, Copy)]
struct Slots<'a> {
    offset: u64,
    capacity: u64,
    words: &'a [AtomicU64],
    /// Words per slot.
    width: usize,
}

impl<'a> Slots<'a> {
    /// Slot `index` (taken modulo the capacity).
    #[inline]
    fn slot(self, index: u64) -> &'a [AtomicU64] {
        // `words` holds `capacity * width` words: the masked index's slot lies inside.
        let start = (index & (self.capacity - 1)) as usize * self.width;
        &self.words[start..start + self.width]
    }

    fn mask(self) -> u64 {
        self.capacity - 1
    }

    fn table(self) -> Table {
        Table {
            offset: self.offset,
            capacity: self.capacity,
        }
    }

    /// The first byte past the table.
    fn end(self) -> u64 {
        // Checked when the slots were made: inside the committed size.
        self.offset + self.words.len() as u64 * 8
    }
}

/// The hash of a key's bytes from the map's `seed`, word by word, then `MurmurHash3`'s 64-bit
/// finaliser. No per-process state: every process places a key in the same slot. The seed,
/// drawn when the map is made, keeps whoever picks the keys (and cannot read the segment)
/// from choosing keys that all probe the same slots.
#[inline]
pub(super) fn hash(seed: u64, key: &[u8]) -> u64 {
    let mut hash = seed ^ 0x9e37_79b9_7f4a_7c15 ^ key.len() as u64;
    for chunk in key.chunks(8) {
        hash = (hash ^ word_of(chunk)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 32;
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// A seed no one can guess: from the standard library's randomly keyed hasher.
fn fresh_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// Where a key is, or where it would go.
enum Probe {
    /// In slot `index`.
    Found(u64),
    /// Nowhere: it would go in slot `index`, which is empty (`fresh`) or removed.
    Vacant { index: u64, fresh: bool },
    /// Nowhere, and the table has no vacant slot on its probe sequence.
    Full,
    /// A lookup without the lock saw its window close.
    Interrupted,
}

/// The map in one segment, its keys and values of `shape`.
#[derive(Clone, Copy)]
pub(super) struct Raw<'a> {
    pub(super) segment: &'a Segment,
    pub(super) shape: Shape,
}

impl<'a> Raw<'a> {
    pub(super) fn area(self) -> &'a PodMapArea {
        self.segment.kind_area::<PodMapArea>()
    }

    /// Sets up the map's words in a segment being created.
    pub(super) fn init(self, key_align: u64, value_align: u64) -> Result<()> {
        let area = self.area();
        area.key_size
            .store(self.shape.key_bytes as u64, Ordering::Relaxed);
        area.key_align.store(key_align, Ordering::Relaxed);
        area.value_size
            .store(self.shape.value_bytes as u64, Ordering::Relaxed);
        area.value_align.store(value_align, Ordering::Relaxed);
        area.len.store(0, Ordering::Relaxed);
        area.used.store(0, Ordering::Relaxed);
        area.changes.store(0, Ordering::Relaxed);
        area.journal.store(0, Ordering::Relaxed);
        area.old.store(0, Ordering::Relaxed);
        area.moved.store(0, Ordering::Relaxed);
        area.seed.store(fresh_seed(), Ordering::Relaxed);
        let table = Table {
            offset: self.shape.tables_start(),
            capacity: 1 << MIN_CAPACITY_LOG2,
        };
        let end = self.end_of(table)?;
        self.segment.ensure_mapped(end)?;
        // A new segment's data area reads as zeros: every slot is empty.
        area.clean.store(end, Ordering::Relaxed);
        area.table.store(table.word(), Ordering::Release);
        Ok(())
    }

    fn corrupt(self, what: String) -> Error {
        self.segment.corrupt(what)
    }

    /// The end of `table`'s slots, if it lies in the data area past the journal.
    fn end_of(self, table: Table) -> Result<u64> {
        let bytes = table
            .capacity
            .checked_mul(self.shape.slot_bytes())
            .ok_or_else(|| self.bad_table(table.word()))?;
        if table.offset < self.shape.tables_start() {
            return Err(self.bad_table(table.word()));
        }
        self.segment.data_range(
            || format!("the map's table of {} slots", table.capacity),
            table.offset,
            bytes,
            TABLE_ALIGN,
        )
    }

    /// The committed table, checked to lie in the data area past the journal, and mapped. A
    /// table word this handle checked before is not checked again: the handle's
    /// [`Memo`](crate::segment::Memo) keeps the last one (one word, stored with Release once
    /// its table was checked, loaded with Acquire, compared whole), whose table stays inside
    /// the segment, which never shrinks under a mapping. Its slots are still looked up in the
    /// mapping, which another thread may have extended for it: not mapped here yet, the table
    /// is checked again, which maps it.
    #[allow(
        clippy::inline_always,
        reason = "measured: left to the compiler, a lookup called it and returned its result through memory"
    )]
    #[inline(always)]
    fn table(self) -> Result<Slots<'a>> {
        let word = self.area().table.load(Ordering::Acquire);
        if self.segment.memo().words()[0].load(Ordering::Acquire) == word
            && let Some(table) = Table::from_word(word)
            && let Some(slots) = self.mapped_slots(table)
        {
            return Ok(slots);
        }
        self.checked_table(word)
    }

    /// [`Raw::table`] without the shortcut: the table word checked in full.
    fn table_checked(self) -> Result<Slots<'a>> {
        self.checked_table(self.area().table.load(Ordering::Acquire))
    }

    fn checked_table(self, word: u64) -> Result<Slots<'a>> {
        let table = Table::from_word(word).ok_or_else(|| self.bad_table(word))?;
        self.end_of(table)?;
        let slots = self.slots(table)?;
        self.segment.memo().words()[0].store(word, Ordering::Release);
        Ok(slots)
    }

    /// The words of `table`, which was checked ([`Raw::end_of`]).
    fn slots(self, table: Table) -> Result<Slots<'a>> {
        self.mapped_slots(table)
            .ok_or_else(|| self.unmapped(table.offset))
    }

    /// The words of `table`, if they are mapped in this process.
    #[allow(
        clippy::inline_always,
        reason = "measured: left to the compiler, a lookup called it and returned its result through memory"
    )]
    #[inline(always)]
    fn mapped_slots(self, table: Table) -> Option<Slots<'a>> {
        let width = self.shape.slot_words();
        let words = usize::try_from(table.capacity)
            .ok()
            .and_then(|capacity| capacity.checked_mul(width))
            .and_then(|n| self.segment.mapping().words(table.offset, n))?;
        Some(Slots {
            offset: table.offset,
            capacity: table.capacity,
            words,
            width,
        })
    }

    #[cold]
    fn bad_table(self, word: u64) -> Error {
        self.corrupt(format!("the map's table word is {word:#x}"))
    }

    #[cold]
    fn unmapped(self, at: u64) -> Error {
        self.corrupt(format!("the map's slot at {at} is not mapped"))
    }

    fn key_words(self, slot: &'a [AtomicU64]) -> &'a [AtomicU64] {
        &slot[1..=self.shape.key_words]
    }

    fn value_words(self, slot: &'a [AtomicU64]) -> &'a [AtomicU64] {
        &slot[1 + self.shape.key_words..]
    }

    /// The journal's words, at the start of the data area.
    fn journal(self) -> Result<&'a [AtomicU64]> {
        self.segment.ensure_mapped(self.shape.tables_start())?;
        self.segment
            .mapping()
            .words(DATA_START, self.shape.value_words)
            .ok_or_else(|| self.unmapped(DATA_START))
    }

    /// The live slots of `table` in `range`, each with its index and tag; a tag that no
    /// writer stores is damage.
    fn live_slots(
        self,
        table: Slots<'a>,
        range: std::ops::Range<u64>,
    ) -> impl Iterator<Item = Result<(u64, &'a [AtomicU64], u64)>> {
        range.filter_map(move |index| {
            let slot = table.slot(index);
            match slot[0].load(Ordering::Relaxed) {
                tag if tag & LIVE != 0 => Some(Ok((index, slot, tag))),
                EMPTY | REMOVED => None,
                tag => Some(Err(self.bad_tag(index, tag))),
            }
        })
    }

    #[cold]
    fn bad_tag(self, index: u64, tag: u64) -> Error {
        self.corrupt(format!("slot {index} of the map has the tag {tag:#x}"))
    }

    /// Looks up, in `table`, the key hashed to `hash` whose words `matches`: under the lock
    /// (`window` is `None`), or without it, when a long probe looks now and then whether its
    /// window still holds. Live slots below `moved` are passed over (in a migration's old
    /// table, their entries were moved); an empty slot ends the probe.
    #[allow(
        clippy::inline_always,
        reason = "measured: left to the compiler, a lookup called it and returned its result through memory"
    )]
    #[inline(always)]
    fn probe(
        self,
        table: Slots<'_>,
        hash: u64,
        window: Option<&Window<'_>>,
        moved: u64,
        matches: impl Fn(&[AtomicU64]) -> bool,
    ) -> Result<Probe> {
        let wanted = hash | LIVE;
        let mut vacant = None;
        for probe in 0..table.capacity {
            if probe % PROBES_PER_LOOK == PROBES_PER_LOOK - 1
                && window.is_some_and(|window| !window.unchanged())
            {
                return Ok(Probe::Interrupted);
            }
            let index = hash.wrapping_add(probe) & table.mask();
            let slot = table.slot(index);
            match slot[0].load(Ordering::Acquire) {
                EMPTY => {
                    return Ok(match vacant {
                        Some(index) => Probe::Vacant {
                            index,
                            fresh: false,
                        },
                        None => Probe::Vacant { index, fresh: true },
                    });
                }
                REMOVED => {
                    vacant.get_or_insert(index);
                }
                tag if tag == wanted && index >= moved && matches(self.key_words(slot)) => {
                    return Ok(Probe::Found(index));
                }
                tag if tag & LIVE != 0 => {}
                tag => return Err(self.bad_tag(index, tag)),
            }
        }
        Ok(match vacant {
            Some(index) => Probe::Vacant {
                index,
                fresh: false,
            },
            None => Probe::Full,
        })
    }

    /// The migration under way, if any: its old table checked as [`Raw::table`] checks the
    /// table, and its count of moved slots against that table.
    fn migration(self) -> Result<Option<Migration<'a>>> {
        let area = self.area();
        let word = area.old.load(Ordering::Acquire);
        if word == 0 {
            return Ok(None);
        }
        let table = Table::from_word(word).ok_or_else(|| self.bad_old(word))?;
        self.end_of(table)?;
        let old = self.slots(table)?;
        let moved = area.moved.load(Ordering::Acquire);
        if moved > old.capacity {
            return Err(self.corrupt(format!(
                "{moved} slots of the map's old table of {} were moved",
                old.capacity
            )));
        }
        Ok(Some(Migration { old, moved }))
    }

    #[cold]
    fn bad_old(self, word: u64) -> Error {
        self.corrupt(format!("the map's old table word is {word:#x}"))
    }

    /// The value of `key`, copied into `out`, without the lock: `false` if the key is absent.
    pub(super) fn get(self, key: &[u8], out: &mut [u8]) -> Result<bool> {
        let area = self.area();
        let hash = hash(area.seed.load(Ordering::Relaxed), key);
        let found = changes::read_stable(
            self.segment,
            &area.changes,
            || self.lock(),
            |window| {
                let table = self.table()?;
                let slot = match self
                    .probe(table, hash, Some(window), 0, |words| holds(words, key))?
                {
                    Probe::Interrupted => return Ok(None),
                    Probe::Found(index) => table.slot(index),
                    // Read in the same window as the table: a migration under way then, or none.
                    Probe::Vacant { .. } | Probe::Full if area.old.load(Ordering::Acquire) == 0 => {
                        return Ok(Some(false));
                    }
                    Probe::Vacant { .. } | Probe::Full => {
                        match self.find_in_old(key, hash, window)? {
                            InOld::Found(slot) => slot,
                            InOld::Absent => return Ok(Some(false)),
                            InOld::Interrupted => return Ok(None),
                        }
                    }
                };
                load_bytes(self.value_words(slot), out);
                Ok(Some(true))
            },
        )?;
        // An absent key may only have looked absent: the table's page may have been lost to a
        // file shrunk during the lookup (read as zeros).
        self.segment.check_intact()?;
        Ok(found)
    }

    /// The part of [`Raw::get`] a migration adds: `key`, absent from the table, looked up in
    /// the slots of the old table not moved yet (`Interrupted` if `window` closed, or if the
    /// migration ended since `old` was read).
    #[cold]
    fn find_in_old(self, key: &[u8], hash: u64, window: &Window<'_>) -> Result<InOld<'a>> {
        let Some(Migration { old, moved }) = self.migration()? else {
            return Ok(InOld::Interrupted);
        };
        Ok(
            match self.probe(old, hash, Some(window), moved, |words| holds(words, key))? {
                Probe::Interrupted => InOld::Interrupted,
                Probe::Found(index) => InOld::Found(old.slot(index)),
                Probe::Vacant { .. } | Probe::Full => InOld::Absent,
            },
        )
    }

    /// The number of live keys, read between two changes.
    pub(super) fn len(self) -> Result<u64> {
        let area = self.area();
        changes::read_stable(
            self.segment,
            &area.changes,
            || self.lock(),
            |_| Ok(Some(area.len.load(Ordering::Relaxed))),
        )
    }

    /// Every live entry, as `(key words, value words)`, read between two changes: `each` is
    /// given `None` whenever the read starts (again), then every entry (during a migration,
    /// the old table's entries not in the table too).
    pub(super) fn entries(
        self,
        mut each: impl FnMut(Option<(&[AtomicU64], &[AtomicU64])>),
    ) -> Result<()> {
        let area = self.area();
        changes::read_stable(
            self.segment,
            &area.changes,
            || self.lock(),
            |window| {
                each(None);
                let table = self.table()?;
                for index in 0..table.capacity {
                    if index % PROBES_PER_LOOK == 0 && !window.unchanged() {
                        return Ok(None);
                    }
                    let slot = table.slot(index);
                    if slot[0].load(Ordering::Acquire) & LIVE != 0 {
                        each(Some((self.key_words(slot), self.value_words(slot))));
                    }
                }
                if area.old.load(Ordering::Acquire) == 0 {
                    return Ok(Some(()));
                }
                let Some(Migration { old, moved }) = self.migration()? else {
                    return Ok(None);
                };
                for index in moved..old.capacity {
                    if index % PROBES_PER_LOOK == 0 && !window.unchanged() {
                        return Ok(None);
                    }
                    let slot = old.slot(index);
                    let tag = slot[0].load(Ordering::Acquire);
                    if tag & LIVE == 0 {
                        continue;
                    }
                    let key = self.key_words(slot);
                    match self.probe(table, tag, Some(window), 0, |words| same(words, key))? {
                        Probe::Interrupted => return Ok(None),
                        Probe::Found(_) => {}
                        Probe::Vacant { .. } | Probe::Full => {
                            each(Some((key, self.value_words(slot))));
                        }
                    }
                }
                Ok(Some(()))
            },
        )?;
        self.segment.check_intact()
    }
}

/// What a lookup without the lock found in a migration's old table.
enum InOld<'a> {
    /// The key's slot.
    Found(&'a [AtomicU64]),
    Absent,
    /// The read's window closed.
    Interrupted,
}

/// A migration under way: its old table, and how many of its slots were moved.
#[derive(Clone, Copy)]
struct Migration<'a> {
    old: Slots<'a>,
    moved: u64,
}

/// Whether two runs of words are equal.
fn same(a: &[AtomicU64], b: &[AtomicU64]) -> bool {
    a.iter()
        .zip(b)
        .all(|(a, b)| a.load(Ordering::Relaxed) == b.load(Ordering::Relaxed))
}

/// What `inspect` checks of a map (see `verify.rs`): the parts of the engine it reads.
pub(super) struct Census {
    pub(super) capacity: u64,
    pub(super) live: u64,
    pub(super) removed: u64,
    /// During a migration: the old table's live keys not moved yet and not in the table.
    pub(super) old_only: u64,
    pub(super) len: u64,
    pub(super) used: u64,
    pub(super) journal: u64,
    /// The `clean` mark, and the end of the last of the tables, which it must not be below.
    pub(super) clean: u64,
    pub(super) tables_end: u64,
    /// Problems found slot by slot.
    pub(super) problems: Vec<String>,
}

impl Raw<'_> {
    /// Reads every slot of the committed table (and of a migration's old table) and checks
    /// each live one: a valid tag, the hash of its key, reachable from its home slot without
    /// an empty slot between, and no key twice in one table.
    pub(super) fn check(self) -> Result<Census> {
        let area = self.area();
        let table = self.table()?;
        let mut census = Census {
            capacity: table.capacity,
            live: 0,
            removed: 0,
            old_only: 0,
            len: area.len.load(Ordering::Relaxed),
            used: area.used.load(Ordering::Relaxed),
            journal: area.journal.load(Ordering::Relaxed),
            clean: area.clean.load(Ordering::Relaxed),
            tables_end: table.end(),
            problems: Vec::new(),
        };
        let (live, removed) = self.check_table(table, 0, &mut census.problems, "");
        (census.live, census.removed) = (live, removed);
        if let Some(Migration { old, moved }) = self.migration()? {
            census.tables_end = census.tables_end.max(old.end());
            self.check_table(old, moved, &mut census.problems, "old ");
            for index in moved..old.capacity {
                let slot = old.slot(index);
                let tag = slot[0].load(Ordering::Relaxed);
                if tag & LIVE == 0 {
                    continue;
                }
                let key = self.key_words(slot);
                if !matches!(
                    self.probe(table, tag, None, 0, |words| same(words, key))?,
                    Probe::Found(_)
                ) {
                    census.old_only += 1;
                }
            }
        }
        Ok(census)
    }

    /// [`Raw::check`] of one table, from slot `from` on (what a migration did not move yet);
    /// returns its live and removed slots. One pass, starting after an empty slot: a key is
    /// reachable when its home slot lies in the run of non-empty slots that ends at its own
    /// (so a crafted table cannot make the check quadratic).
    fn check_table(
        self,
        table: Slots<'_>,
        from: u64,
        problems: &mut Vec<String>,
        which: &str,
    ) -> (u64, u64) {
        let (mut live, mut removed) = (0, 0);
        let seed = self.area().seed.load(Ordering::Relaxed);
        let mut keys = std::collections::HashSet::new();
        let mut key = vec![0u8; self.shape.key_bytes];
        let tag_of = |index: u64| table.slot(index)[0].load(Ordering::Relaxed);
        // Without an empty slot every home is reachable: the run is the whole table.
        let first_empty = (0..table.capacity).find(|&index| tag_of(index) == EMPTY);
        let (start, mut run) = match first_empty {
            Some(empty) => (empty + 1, 0),
            None => (0, table.capacity),
        };
        for step in 0..table.capacity {
            let index = start.wrapping_add(step) & table.mask();
            let slot = table.slot(index);
            let tag = slot[0].load(Ordering::Relaxed);
            if first_empty.is_some() {
                run = if tag == EMPTY { 0 } else { run + 1 };
            }
            if index < from {
                continue;
            }
            match tag {
                EMPTY => {}
                REMOVED => removed += 1,
                tag if tag & LIVE != 0 => {
                    live += 1;
                    load_bytes(self.key_words(slot), &mut key);
                    let hash = hash(seed, &key);
                    if hash | LIVE != tag {
                        problems.push(format!(
                            "{which}slot {index}'s key does not hash to its tag"
                        ));
                        continue;
                    }
                    if !keys.insert(key.clone()) {
                        problems.push(format!(
                            "{which}slot {index} holds a key another slot holds"
                        ));
                    }
                    let distance = index.wrapping_sub(hash) & table.mask();
                    if distance >= run {
                        problems.push(format!(
                            "{which}slot {index}'s key is past an empty slot: lookups miss it"
                        ));
                    }
                }
                tag => problems.push(self.bad_tag(index, tag).to_string()),
            }
        }
        (live, removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_count_whole_words_and_refuse_what_a_slot_cannot_hold() {
        let shape = Shape::new(8, 12).expect("a shape");
        assert_eq!((shape.key_words, shape.value_words), (1, 2));
        assert_eq!(shape.slot_bytes(), 32);
        assert_eq!(shape.journal_bytes(), 64);
        assert_eq!(Shape::new(8, 0).map(Shape::slot_words), Some(2));
        assert!(Shape::new(0, 8).is_none(), "keys take room");
        assert!(Shape::new(1000, 100).is_none(), "too large a slot");
    }

    #[test]
    fn the_hash_depends_on_every_byte_and_on_the_length() {
        let base = hash(1, &[0; 12]);
        for at in 0..12 {
            let mut key = [0u8; 12];
            key[at] = 1;
            assert_ne!(hash(1, &key), base, "byte {at}");
        }
        assert_ne!(hash(1, &[0; 8]), hash(1, &[0; 4]));
        assert_ne!(hash(1, &[0; 8]), hash(2, &[0; 8]), "the seed");
        // The same in every run: placement in a table other processes share depends on it.
        assert_eq!(hash(1, &7u64.to_le_bytes()), hash(1, &7u64.to_le_bytes()));
    }
}
