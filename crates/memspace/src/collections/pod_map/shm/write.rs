//! The changes to a plain-value map, each under the segment's lock and committed by one store,
//! the recovery after a holder's death, and growth (see the parent module's docs).

use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::{
    EMPTY, LIVE, MIGRATE_FROM, MIN_CAPACITY_LOG2, MOVES_PER_INSERT, Migration, Probe, REMOVED, Raw,
    Slots, TABLE_ALIGN, Table, capacity_for, hash, holds, load_bytes, same, store_bytes,
};
use crate::collections::changes::{Change, count_down, count_up};
use crate::error::{Error, Result};
use crate::sync::{RawGuard, lock_and_repair};

impl<'a> Raw<'a> {
    /// Takes the segment's lock, recovering the map if the previous holder died.
    pub(super) fn lock(self) -> Result<RawGuard<'a>> {
        lock_and_repair(self.segment, |held| self.recover(held))
    }

    /// Repairs what a dead holder left (see the parent module's docs), inside the change the
    /// holder left under way, or a change of its own: readers never see a half-repaired map.
    fn recover(self, held: &RawGuard<'_>) -> Result<()> {
        let change = Change::recovering(&self.area().changes, held);
        crate::failpoint::hit("pod_map.recovering");
        let repaired = self.repair();
        if repaired.is_err() {
            // The change stays under way: readers wait for the next locker's repair.
            std::mem::forget(change);
        }
        repaired
    }

    /// The repairs of [`Raw::recover`].
    fn repair(self) -> Result<()> {
        let area = self.area();
        let table = self.table_checked()?;
        // `old` naming the table itself: the migration's switch did not happen.
        if area.old.load(Ordering::Relaxed) == table.table().word() {
            area.old.store(0, Ordering::Release);
        }
        let journal = area.journal.load(Ordering::Acquire);
        if journal != 0 {
            let index = journal - 1;
            if index >= table.capacity {
                return Err(self.corrupt(format!(
                    "the map's journal names slot {index} of a table of {}",
                    table.capacity
                )));
            }
            let saved = self.journal()?;
            for (word, old) in self.value_words(table.slot(index)).iter().zip(saved) {
                word.store(old.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            area.journal.store(0, Ordering::Release);
        }
        let (live, removed) = self.census(table)?;
        let mut keys = live;
        let mut clean = table.end();
        if let Some(Migration { old, moved }) = self.migration()? {
            keys += self.old_only(table, old, moved)?;
            clean = clean.max(old.end());
        }
        area.len.store(keys, Ordering::Relaxed);
        area.used.store(live + removed, Ordering::Relaxed);
        if area.clean.load(Ordering::Relaxed) < clean {
            area.clean.store(clean, Ordering::Relaxed);
        }
        Ok(())
    }

    /// How many slots of `table` are live and how many removed.
    fn census(self, table: Slots<'_>) -> Result<(u64, u64)> {
        let (mut live, mut removed) = (0, 0);
        for index in 0..table.capacity {
            match table.slot(index)[0].load(Ordering::Relaxed) {
                EMPTY => {}
                REMOVED => removed += 1,
                tag if tag & LIVE != 0 => live += 1,
                tag => return Err(self.bad_tag(index, tag)),
            }
        }
        Ok((live, removed))
    }

    /// The live keys of `old`'s slots from `moved` on that `table` does not hold.
    fn old_only(self, table: Slots<'_>, old: Slots<'a>, moved: u64) -> Result<u64> {
        let mut count = 0;
        for live in self.live_slots(old, moved..old.capacity) {
            let (_, slot, tag) = live?;
            let key = self.key_words(slot);
            if !matches!(
                self.probe(table, tag, None, 0, |words| same(words, key))?,
                Probe::Found(_)
            ) {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Maps `key` to `value`; if it had a value, copies it into `old` and returns `true`.
    pub(in crate::collections::pod_map) fn insert(
        self,
        key: &[u8],
        value: &[u8],
        old: &mut [u8],
    ) -> Result<bool> {
        let held = self.lock()?;
        let area = self.area();
        let hash = hash(area.seed.load(Ordering::Relaxed), key);
        let _change = Change::begin(&area.changes, &held);
        let mut table = self.table()?;
        let mut migration = self.migration()?;
        if let Some(under_way) = migration {
            migration = self.migrate(table, under_way, MOVES_PER_INSERT)?;
        }
        let mut probe = self.probe(table, hash, None, 0, |words| holds(words, key))?;
        if let Probe::Found(index) = probe {
            self.replace(table.slot(index), index, value, old)?;
            return Ok(true);
        }
        // A key the migration did not move yet: written in the table with its new value, then
        // removed from the old one.
        if let Some(Migration { old: from, moved }) = migration
            && let Probe::Found(at) =
                self.probe(from, hash, None, moved, |words| holds(words, key))?
        {
            let Probe::Vacant { index, fresh } = probe else {
                return Err(self.no_room());
            };
            let source = from.slot(at);
            load_bytes(self.value_words(source), old);
            self.place(table.slot(index), hash, key, value);
            if fresh {
                count_up(&area.used, 1);
            }
            crate::failpoint::hit("pod_map.placed_over_old");
            source[0].store(REMOVED, Ordering::Release);
            crate::failpoint::hit("pod_map.removed_from_old");
            self.segment.note_writer();
            return Ok(true);
        }
        let used = area.used.load(Ordering::Relaxed);
        let grows = match probe {
            // `used` is derived (a damaged one must not overflow): at most the capacity.
            Probe::Vacant { fresh, .. } => {
                fresh && (used.min(table.capacity) + 1) * 10 > table.capacity * 7
            }
            _ => true,
        };
        if grows {
            if let Some(under_way) = migration {
                // Not reached while the new table is sized as it is; a damaged count could.
                self.migrate(table, under_way, u64::MAX)?;
            }
            table = self.grow(&held, table)?;
            probe = self.probe(table, hash, None, 0, |words| holds(words, key))?;
        }
        let Probe::Vacant { index, fresh } = probe else {
            return Err(self.no_room());
        };
        // Before the commit: an insert that fails here has changed nothing.
        self.commit_ahead(&held, table)?;
        self.place(table.slot(index), hash, key, value);
        crate::failpoint::hit("pod_map.committed");
        count_up(&area.len, 1);
        if fresh {
            count_up(&area.used, 1);
        }
        self.segment.note_writer();
        Ok(false)
    }

    #[cold]
    fn no_room(self) -> Error {
        self.corrupt("the map's table has no room for a key".to_owned())
    }

    /// Writes an entry into the vacant `slot`: its key and value words, then its tag (the
    /// commit).
    fn place(self, slot: &[AtomicU64], hash: u64, key: &[u8], value: &[u8]) {
        store_bytes(self.key_words(slot), key);
        store_bytes(self.value_words(slot), value);
        crate::failpoint::hit("pod_map.written");
        slot[0].store(hash | LIVE, Ordering::Release); // commit
    }

    /// Replaces the value in `slot` (slot `index`), journaled (see the parent module's docs);
    /// the old value goes into `old`.
    fn replace(self, slot: &[AtomicU64], index: u64, value: &[u8], old: &mut [u8]) -> Result<()> {
        let area = self.area();
        let words = self.value_words(slot);
        let journal = self.journal()?;
        for (saved, word) in journal.iter().zip(words) {
            saved.store(word.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        load_bytes(words, old);
        area.journal.store(index + 1, Ordering::Release);
        // The journal is named before any word of the new value is written, in this thread's
        // order too: a kill between them then leaves a journal to write back. (A Release
        // store keeps earlier writes before it, not later ones.)
        fence(Ordering::Release);
        crate::failpoint::hit("pod_map.journaled");
        store_bytes(words, value);
        crate::failpoint::hit("pod_map.value_written");
        area.journal.store(0, Ordering::Release); // commit
        self.segment.note_writer();
        Ok(())
    }

    /// Removes `key`; if it had a value, copies it into `old` and returns `true`. During a
    /// migration the key is removed from the old table first: removed from the table alone,
    /// the old table's copy would be found again.
    pub(in crate::collections::pod_map) fn remove(
        self,
        key: &[u8],
        old: &mut [u8],
    ) -> Result<bool> {
        let held = self.lock()?;
        let area = self.area();
        let hash = hash(area.seed.load(Ordering::Relaxed), key);
        let _change = Change::begin(&area.changes, &held);
        let table = self.table()?;
        let found = match self.probe(table, hash, None, 0, |words| holds(words, key))? {
            Probe::Found(index) => Some(index),
            _ => None,
        };
        let mut removed = false;
        if let Some(Migration { old: from, moved }) = self.migration()?
            && let Probe::Found(at) =
                self.probe(from, hash, None, moved, |words| holds(words, key))?
        {
            let source = from.slot(at);
            if found.is_none() {
                load_bytes(self.value_words(source), old);
            }
            source[0].store(REMOVED, Ordering::Release); // commit, if the table lacks the key
            crate::failpoint::hit("pod_map.removed_from_old");
            removed = true;
        }
        if let Some(index) = found {
            let slot = table.slot(index);
            load_bytes(self.value_words(slot), old);
            // A slot followed by an empty one ends no probe sequence that goes on: it may be
            // empty again, which keeps removed slots from piling up.
            let next = table.slot(index + 1)[0].load(Ordering::Relaxed);
            let tag = if next == EMPTY { EMPTY } else { REMOVED };
            slot[0].store(tag, Ordering::Release); // commit
            crate::failpoint::hit("pod_map.removed");
            if tag == EMPTY {
                count_down(&area.used, 1);
            }
            removed = true;
        }
        if removed {
            count_down(&area.len, 1);
            self.segment.note_writer();
        }
        Ok(removed)
    }

    /// Removes every entry: the map finishes a migration under way, then switches to a new,
    /// empty table.
    pub(in crate::collections::pod_map) fn clear(self) -> Result<()> {
        let held = self.lock()?;
        let area = self.area();
        let _change = Change::begin(&area.changes, &held);
        let table = self.table()?;
        if let Some(under_way) = self.migration()? {
            self.migrate(table, under_way, u64::MAX)?;
        }
        self.rebuild(&held, table, 1 << MIN_CAPACITY_LOG2, false)?;
        self.segment.note_writer();
        Ok(())
    }

    /// Makes room for one more key in a table that would pass 7/10 full: a small table is
    /// rebuilt at once, a large one starts migrating to one twice as large. Returns the table
    /// to insert into.
    fn grow(self, held: &RawGuard<'_>, table: Slots<'a>) -> Result<Slots<'a>> {
        // `len` is derived: a damaged one must size no table past what the current one can
        // hold. (With no migration under way, the table holds every key.)
        let live = self.area().len.load(Ordering::Relaxed).min(table.capacity);
        if table.capacity < MIGRATE_FROM {
            let capacity = capacity_for(live + 1).ok_or_else(|| self.full())?;
            return self.rebuild(held, table, capacity, true);
        }
        // Room for the live keys and for one more per insert until the old table is empty.
        let moving = table.capacity.div_ceil(MOVES_PER_INSERT);
        let capacity = capacity_for(live + 1 + moving).ok_or_else(|| self.full())?;
        let new = self.new_table(held, table, capacity)?;
        let area = self.area();
        area.moved.store(0, Ordering::Relaxed);
        area.old.store(table.table().word(), Ordering::Release);
        crate::failpoint::hit("pod_map.migration_named");
        area.table.store(new.table().word(), Ordering::Release); // commit
        crate::failpoint::hit("pod_map.migration_begun");
        area.used.store(0, Ordering::Relaxed);
        Ok(new)
    }

    /// Moves the entries of `budget` more slots of the migration's old table into `table`;
    /// returns the migration if it is not over.
    fn migrate(
        self,
        table: Slots<'_>,
        Migration { old, moved }: Migration<'a>,
        budget: u64,
    ) -> Result<Option<Migration<'a>>> {
        let area = self.area();
        let end = moved.saturating_add(budget).min(old.capacity);
        for live in self.live_slots(old, moved..end) {
            let (_, slot, tag) = live?;
            let key = self.key_words(slot);
            let (to, fresh) = match self.probe(table, tag, None, 0, |words| same(words, key))? {
                Probe::Vacant { index, fresh } => (index, fresh),
                // Already in the table: placed before a kill, or written there since.
                Probe::Found(_) => continue,
                // Only a damaged count sizes a table the old one's entries do not fit.
                Probe::Full | Probe::Interrupted => return Err(self.no_room()),
            };
            let target = table.slot(to);
            for (into, from) in target[1..].iter().zip(&slot[1..]) {
                into.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            target[0].store(tag, Ordering::Release); // placed
            crate::failpoint::hit("pod_map.entry_moved");
            if fresh {
                count_up(&area.used, 1);
            }
        }
        area.moved.store(end, Ordering::Release);
        if end < old.capacity {
            return Ok(Some(Migration { old, moved: end }));
        }
        area.old.store(0, Ordering::Release);
        crate::failpoint::hit("pod_map.migration_done");
        Ok(None)
    }

    /// Builds a table of `capacity` slots holding the live entries of `table` (none unless
    /// `keep`), then switches the map to it (see the parent module's docs).
    fn rebuild(
        self,
        held: &RawGuard<'_>,
        table: Slots<'a>,
        capacity: u64,
        keep: bool,
    ) -> Result<Slots<'a>> {
        let area = self.area();
        let new = self.new_table(held, table, capacity)?;
        let mut live = 0;
        if keep {
            for live_slot in self.live_slots(table, 0..table.capacity) {
                let (_, slot, tag) = live_slot?;
                let target = self.vacant_slot(new, tag)?;
                for (to, from) in target[1..].iter().zip(&slot[1..]) {
                    to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                target[0].store(tag, Ordering::Relaxed);
                live += 1;
            }
        }
        crate::failpoint::hit("pod_map.table_built");
        // Commit: the new table's slots happen-before any Acquire load of the word.
        area.table.store(new.table().word(), Ordering::Release);
        crate::failpoint::hit("pod_map.table_switched");
        area.len.store(live, Ordering::Relaxed);
        area.used.store(live, Ordering::Relaxed);
        Ok(new)
    }

    /// An empty table of `capacity` slots beside `table`: at the start of the table area if it
    /// fits before `table`, else just past it. Its place is committed, and its slots emptied
    /// where earlier tables may have written (below `clean`).
    fn new_table(self, held: &RawGuard<'_>, table: Slots<'a>, capacity: u64) -> Result<Slots<'a>> {
        let area = self.area();
        let bytes = capacity
            .checked_mul(self.shape.slot_bytes())
            .ok_or_else(|| self.full())?;
        let start = self.shape.tables_start();
        let offset = match start.checked_add(bytes) {
            Some(end) if end <= table.offset => start,
            // The current table was checked: its end is inside the committed size.
            _ => table.end().next_multiple_of(TABLE_ALIGN),
        };
        let end = offset.checked_add(bytes).ok_or_else(|| self.full())?;
        self.segment.grow_to(end, held)?;
        let new = Table { offset, capacity };
        self.end_of(new)?;
        let new = self.slots(new)?;
        // `clean` is derived: never below what the current table wrote.
        let clean = area.clean.load(Ordering::Relaxed).max(table.end());
        if offset < clean {
            let dirty = (clean.min(end) - offset).div_ceil(self.shape.slot_bytes());
            for index in 0..dirty {
                new.slot(index)[0].store(EMPTY, Ordering::Relaxed);
            }
        }
        if clean < end {
            area.clean.store(end, Ordering::Relaxed);
        }
        Ok(new)
    }

    /// From 4/10 full, a table that will migrate commits the bytes of the next one ahead, a
    /// step at a time as it fills (see `Segment::commit_toward`), so that no insert waits for
    /// all of them at once.
    fn commit_ahead(self, held: &RawGuard<'_>, table: Slots<'_>) -> Result<()> {
        let used = self.area().used.load(Ordering::Relaxed);
        if table.capacity < MIGRATE_FROM || used.min(table.capacity) * 10 <= table.capacity * 4 {
            return Ok(());
        }
        let next = table.end().saturating_add(2 * (table.end() - table.offset));
        let at = table.offset + used.min(table.capacity) * self.shape.slot_bytes();
        self.segment.commit_toward(at, next, held)
    }

    #[cold]
    fn full(self) -> Error {
        Error::Full {
            name: self.segment.name().clone(),
            needed: u64::MAX,
            max_size: self.segment.max_size(),
        }
    }

    /// The first empty slot of `table` on the probe sequence of a key tagged `tag`.
    fn vacant_slot(self, table: Slots<'a>, tag: u64) -> Result<&'a [AtomicU64]> {
        for probe in 0..table.capacity {
            let slot = table.slot(tag.wrapping_add(probe));
            if slot[0].load(Ordering::Relaxed) == EMPTY {
                return Ok(slot);
            }
        }
        Err(self.corrupt("a table being built has no empty slot left".to_owned()))
    }
}
