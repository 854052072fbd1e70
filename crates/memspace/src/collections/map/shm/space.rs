//! How a map in shared memory makes room: a bigger table when the current one fills up
//! (growth, at once or by a migration spread over the inserts that follow), a copy of the live
//! entries when the garbage outweighs them (compaction), and an empty table for `clear`. Each
//! commits with one store of the `table` word, and each step of a migration with one store of
//! `moved` (see the protocol in the parent module). A compaction and a `clear` first finish a
//! migration under way: they copy from one table.
//!
//! # Space
//!
//! Replaced and removed entries, and outgrown tables, stay allocated until a compaction, which
//! runs once they outweigh the live data: a map uses at most about three times the bytes of
//! its live entries and table, plus 16 KiB. The segment itself never shrinks (it grows ahead
//! of its writers, to about twice what they reach); compaction and [`SharedMap::clear`](crate::collections::SharedMap::clear) make its space
//! reusable.
//!
//! A compaction needs room for its copy past `tail`. A map that reached its segment's maximum
//! size therefore keeps its garbage until a copy of what is left fits, or until it is cleared:
//! every change but `clear` leaves room below the maximum for an empty table, so `clear`
//! always works.

use std::sync::atomic::Ordering;

use super::table::{Table, capacity_for, hash};
use super::{
    EMPTY, MAX_CAPACITY_LOG2, MIGRATE_FROM, MIN_CAPACITY_LOG2, MOVES_PER_INSERT, Migration, Raw,
    SLOT_SIZE, State, TABLE_ALIGN, TOMBSTONE,
};
use crate::error::{Error, Result};
use crate::segment::DATA_START;
use crate::sync::RawGuard;

/// Garbage below this is never worth a compaction.
const MIN_GARBAGE: u64 = 16 << 10;
/// Room every change but `clear` leaves below the segment's maximum size, so that `clear` can
/// always place an empty table past the end of data: a full map can still be cleared.
const CLEAR_RESERVE: u64 = TABLE_ALIGN + (1 << MIN_CAPACITY_LOG2) * SLOT_SIZE;

impl State {
    /// The bytes of the table, and of a migration's old table.
    pub(super) fn table_bytes(self) -> u64 {
        self.table.bytes() + self.migration.map_or(0, |m| m.old.bytes())
    }

    /// Bytes below `tail` that nothing points to.
    fn garbage(self) -> u64 {
        // `Raw::state` checked that the tables and the live bytes fit below `tail`.
        self.tail - DATA_START - self.table_bytes() - self.bytes
    }

    /// Whether the garbage outweighs the live data enough to be worth a compaction.
    fn wants_compaction(self) -> bool {
        self.garbage() >= MIN_GARBAGE.max(self.table_bytes() + self.bytes)
    }
}

/// A copy of a map's live entries, table and records, that nothing points to yet.
struct Copied {
    table: Table,
    /// The end of its last record (or of its table).
    end: u64,
    /// How many entries it holds.
    len: u64,
}

impl Raw<'_> {
    /// A zeroed table of `capacity` slots at the first aligned offset at or after `at`.
    fn new_table(self, held: &RawGuard<'_>, at: u64, capacity: u64) -> Result<Table> {
        let table = Table {
            offset: at.next_multiple_of(TABLE_ALIGN),
            capacity,
        };
        self.segment.grow_to(table.end(), held)?;
        // Space that was written before (after a compaction, a `clear`, or by a holder that
        // died) may hold an earlier table or records; the space past it is still zero.
        let clean = self.area().clean.load(Ordering::Relaxed);
        let dirty = clean.saturating_sub(table.offset).div_ceil(SLOT_SIZE);
        for index in 0..capacity.min(dirty) {
            for word in self.slot(table, index)? {
                word.store(0, Ordering::Relaxed);
            }
        }
        self.written_up_to(table.end());
        Ok(table)
    }

    /// Puts (`hash`, `record`) into the first empty slot of its probe sequence in `table`,
    /// which nobody else can see yet.
    fn place(self, table: Table, hash: u64, record: u64) -> Result<()> {
        for probe in 0..table.capacity {
            let [stored_hash, word] = self.slot(table, hash.wrapping_add(probe))?;
            if word.load(Ordering::Relaxed) == EMPTY {
                stored_hash.store(hash, Ordering::Relaxed);
                // After the hash: a slot naming a record always has its hash.
                word.store(record, Ordering::Release);
                return Ok(());
            }
        }
        Err(self.corrupt("the map has more entries than its counts say".to_owned()))
    }

    /// Builds a table for at least `len + 1` entries past `tail` and switches to it: a small
    /// table's entries are placed in it at once, a large one's are moved over the inserts that
    /// follow (see "Growth" in the parent module). A migration still under way is finished
    /// first.
    pub(super) fn regrow(self, held: &RawGuard<'_>, state: State) -> Result<State> {
        let state = self.migrate(held, state, u64::MAX)?;
        let migrating = state.table.capacity >= MIGRATE_FROM;
        // A migration's table holds, besides the entries moved, one entry per insert until
        // it ends: sized for all of them, it is never outgrown before the old table is empty
        // (however few entries are live among the tombstones that filled the old one).
        let during = if migrating {
            state.table.capacity.div_ceil(MOVES_PER_INSERT)
        } else {
            0
        };
        let capacity = state
            .len
            .checked_add(1 + during)
            .and_then(capacity_for)
            .ok_or_else(|| self.too_many(state.len))?;
        let grown = self.new_table(held, state.tail, capacity)?;
        let area = self.area();
        if migrating {
            self.keep_reserve(held, grown.end())?;
            area.moved.store(0, Ordering::Relaxed);
            area.old.store(state.table.word(), Ordering::Release);
            crate::failpoint::hit("map.migration_named");
            // Commit: every process looks keys up in the new table, then in the old one.
            area.table.store(grown.word(), Ordering::Release);
            crate::failpoint::hit("map.migration_begun");
            area.used.store(0, Ordering::Relaxed);
            area.tail.store(grown.end(), Ordering::Relaxed);
            let state = State {
                table: grown,
                migration: Some(Migration {
                    old: state.table,
                    moved: 0,
                }),
                used: 0,
                tail: grown.end(),
                ..state
            };
            return self.migrate(held, state, MOVES_PER_INSERT);
        }
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

    /// Moves the entries of the next `slots` slots of a migration's old table (if a migration
    /// is under way) into the table, and ends the migration when none is left.
    pub(super) fn migrate(self, _held: &RawGuard<'_>, state: State, slots: u64) -> Result<State> {
        let Some(Migration { old, moved }) = state.migration else {
            return Ok(state);
        };
        let area = self.area();
        let end = moved.saturating_add(slots).min(old.capacity);
        let mut used = state.used;
        for index in moved..end {
            let [stored_hash, word] = self.slot(old, index)?;
            let at = word.load(Ordering::Relaxed);
            if at > TOMBSTONE {
                self.place(state.table, stored_hash.load(Ordering::Relaxed), at)?;
                used += 1;
                crate::failpoint::hit("map.entry_placed");
            }
            // Commit: readers pass the slot over; the entry is the table's.
            area.moved.store(index + 1, Ordering::Release);
        }
        area.used.store(used, Ordering::Relaxed);
        let migration = if end == old.capacity {
            // Commit: the old table is garbage.
            area.old.store(0, Ordering::Release);
            crate::failpoint::hit("map.migration_done");
            None
        } else {
            Some(Migration { old, moved: end })
        };
        Ok(State {
            migration,
            used,
            ..state
        })
    }

    /// Moves the entry in slot `index` of a migration's `old` table, not moved yet, to slot
    /// `vacant` of the table, which its probe sequence reaches first.
    pub(super) fn move_entry(
        self,
        state: State,
        old: Table,
        index: u64,
        vacant: u64,
    ) -> Result<State> {
        let [old_hash, old_word] = self.slot(old, index)?;
        let [stored_hash, word] = self.slot(state.table, vacant)?;
        let was = word.load(Ordering::Relaxed);
        stored_hash.store(old_hash.load(Ordering::Relaxed), Ordering::Relaxed);
        // Commit: the entry is the table's (a holder killed before the next store leaves the
        // same record in both tables, which recovery passes over in the old one).
        word.store(old_word.load(Ordering::Relaxed), Ordering::Release);
        crate::failpoint::hit("map.entry_moved");
        old_word.store(TOMBSTONE, Ordering::Release);
        let used = state.used + u64::from(was == EMPTY);
        self.area().used.store(used, Ordering::Relaxed);
        Ok(State { used, ..state })
    }

    /// Makes sure the segment has room for `clear`'s table past `end` (see [`CLEAR_RESERVE`]).
    pub(super) fn keep_reserve(self, held: &RawGuard<'_>, end: u64) -> Result<()> {
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
    /// after. Nothing points to the copy yet.
    fn copy(
        self,
        held: &RawGuard<'_>,
        from: Table,
        at: u64,
        capacity: u64,
        keep: bool,
    ) -> Result<Copied> {
        let table = self.new_table(held, at, capacity)?;
        let (mut end, mut len) = (table.end(), 0);
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
                    len += 1;
                }
            }
        }
        Ok(Copied { table, end, len })
    }

    /// Switches the map to `copy` (the commit: one store, after which everything else is
    /// garbage), stops at `failpoint`, and stores the copy's counts.
    fn switch_to(self, copy: &Copied, failpoint: &'static str) -> State {
        self.area()
            .table
            .store(copy.table.word(), Ordering::Release);
        crate::failpoint::hit(failpoint);
        let state = State {
            table: copy.table,
            migration: None,
            len: copy.len,
            used: copy.len,
            bytes: copy.end - copy.table.end(),
            tail: copy.end,
        };
        let area = self.area();
        area.len.store(state.len, Ordering::Relaxed);
        area.used.store(state.used, Ordering::Relaxed);
        area.bytes.store(state.bytes, Ordering::Relaxed);
        area.tail.store(state.tail, Ordering::Relaxed);
        state
    }

    /// Compacts the map (or, if not `keep`, empties it): see the protocol in the parent
    /// module. The map is unchanged if the segment cannot grow for the first copy.
    fn compact(self, held: &RawGuard<'_>, state: State, keep: bool) -> Result<State> {
        let len = if keep { state.len } else { 0 };
        let capacity = capacity_for(len).ok_or_else(|| self.too_many(len))?;
        let far = self.copy(held, state.table, state.tail, capacity, keep)?;
        crate::failpoint::hit("map.copy_built");
        // Commit: the map is the copy; everything below it is garbage. (No room is kept for
        // `clear` past the copy: it lies past the start of the data area, where `clear` puts
        // its table then.)
        let state = self.switch_to(&far, "map.copy_switched");
        // A second copy at the start of the data area frees everything after it. It must end
        // before the first copy, which it reads, and leave room for `clear` after it.
        if DATA_START + (far.end - far.table.offset) + CLEAR_RESERVE <= far.table.offset {
            return self.move_to_start(held, far.table, capacity, true);
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
        let near = self.copy(held, from, DATA_START, capacity, keep)?;
        Ok(self.switch_to(&near, "map.moved"))
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
    pub(super) fn tidy(self, held: &RawGuard<'_>, state: State) -> Result<State> {
        if !state.wants_compaction() {
            return Ok(state);
        }
        let state = self.migrate(held, state, u64::MAX)?;
        match self.compact(held, state, true) {
            Ok(state) => Ok(state),
            // Read again rather than trust `state`: whatever was committed is what counts.
            Err(Error::Full { .. } | Error::NoSpace { .. }) => self.state(held),
            Err(other) => Err(other),
        }
    }

    /// Switches the map to an empty table, and makes the space it took reusable.
    pub(super) fn empty(self, held: &RawGuard<'_>, state: State) -> Result<State> {
        let state = self.migrate(held, state, u64::MAX)?;
        let smallest = capacity_for(0).expect("an empty table has a capacity");
        if self.lowest_offset(state.table)? >= DATA_START + smallest * SLOT_SIZE {
            // Nothing the map points to lies at the start of the data area (the map is a
            // compaction's first copy): its empty table goes there at once.
            self.move_to_start(held, state.table, smallest, false)
        } else {
            self.compact(held, state, false)
        }
    }
}
