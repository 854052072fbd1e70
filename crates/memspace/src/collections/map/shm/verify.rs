//! Reading a map in shared memory without its lock: [`SharedMap::len`](super::super::SharedMap::len)
//! and `verify` (for [`inspect::verify`](crate::inspect::verify)), with the checks `verify`
//! makes.
//!
//! # Readers without the lock
//!
//! `len` and `verify` read without the lock, guarded by `changes` (a sequence lock): a holder
//! makes it odd before it changes anything and even when it is done, so a reading between two
//! equal even values is consistent. `len` falls back to the lock when a change is under way
//! (or its maker died); `verify` retries, and accepts an odd value only when the holder is dead
//! (nothing changes until the next locker recovers).

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{Ordering, fence};

use serde::de::IgnoredAny;

use super::table::{Table, hash};
use super::{EMPTY, Migration, Raw, TOMBSTONE};
use crate::collections::changes::verify_between_changes;
use crate::collections::codec;
use crate::error::Error;
use crate::segment::Report;
use crate::segment::Segment;

impl Raw<'_> {
    /// The number of entries of a whole map, before or after each change: read without the
    /// lock unless a change is under way (see the module docs).
    pub(in crate::collections::map) fn len(self) -> u64 {
        let area = self.area();
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
        let _held = self.lock();
        area.len.load(Ordering::Relaxed)
    }
}

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
    verify_between_changes(
        segment.lock_slot(),
        &raw.area().changes,
        ("the map", "entries"),
        report,
        |found, interrupted| check(raw, found, interrupted),
    );
}

/// One reading of the map for [`verify`].
fn check(raw: Raw<'_>, report: &mut Report, interrupted: bool) {
    let (table, migration) = match raw.table().and_then(|t| Ok((t, raw.migration()?))) {
        Ok(tables) => tables,
        Err(err) => return report.problem(describe(&err)),
    };
    let Some(mut found) = census(raw, table, 0, None, report) else {
        return;
    };
    // `used` counts the table's slots only.
    found.used = found.live + found.tombstones;
    if let Some(Migration { old, moved }) = migration {
        let records: HashSet<u64> = found.hashes.iter().map(|live| live.record).collect();
        let Some(old) = census(raw, old, moved, Some(&records), report) else {
            return;
        };
        if old.shared > 0 {
            let what = format!(
                "{} entries of the old table are in the new one too",
                old.shared
            );
            if interrupted {
                report.note(format!(
                    "{what}: a writer moving them was interrupted; the next locker passes them \
                     over"
                ));
            } else {
                report.problem(what);
            }
        }
        found.live += old.live;
        found.bytes += old.bytes;
        found.end = found.end.max(old.end);
        found.ranges.extend(old.ranges);
        found.hashes.extend(old.hashes);
    }
    found.ranges.sort_unstable();
    for pair in found.ranges.windows(2) {
        if pair[1].0 < pair[0].1 {
            report.problem(format!(
                "the map's data at {}..{} overlaps the data at {}..{}",
                pair[0].0, pair[0].1, pair[1].0, pair[1].1
            ));
        }
    }
    found.hashes.sort_unstable();
    let key_at = |at: u64| Some(raw.read_entry(at).ok()?.key().to_vec());
    for pair in found.hashes.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.hash == b.hash && key_at(a.record).is_some_and(|key| Some(key) == key_at(b.record)) {
            report.problem(format!("{a} and {b} hold the same key"));
        }
    }
    check_counts(raw, &found, report, interrupted);
}

/// What [`census`] found in a table.
#[derive(Debug, Default)]
struct Census {
    live: u64,
    tombstones: u64,
    /// Slots of the map's table that are not empty.
    used: u64,
    /// Entries of an old table whose record the map's table holds too.
    shared: u64,
    bytes: u64,
    /// The end of the table or of its last record, whichever is later.
    end: u64,
    /// The byte ranges of the table and of every record.
    ranges: Vec<(u64, u64)>,
    /// Every live entry, by the hash of its key.
    hashes: Vec<Live>,
}

/// A live entry [`census`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Live {
    hash: u64,
    /// Its slot, and whether that is in a migration's old table.
    old: bool,
    slot: u64,
    record: u64,
}

impl fmt::Display for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = if self.old { "old table's " } else { "" };
        write!(f, "{table}slot {}", self.slot)
    }
}

/// Reads every slot of `table` and checks each entry; `None` if the table cannot be read.
/// For a migration's old table, `in_table` holds the records of the map's table: the entries
/// in slots below `moved` (moved) are passed over, and so are the ones whose record the table
/// holds too (counted as `shared`).
fn census(
    raw: Raw<'_>,
    table: Table,
    moved: u64,
    in_table: Option<&HashSet<u64>>,
    report: &mut Report,
) -> Option<Census> {
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
            _ if index < moved => {}
            at if in_table.is_some_and(|records| records.contains(&at)) => census.shared += 1,
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
                census.hashes.push(Live {
                    hash: key_hash,
                    old: in_table.is_some(),
                    slot: index,
                    record: at,
                });
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
    let clean = area.clean.load(Ordering::Relaxed);
    if clean < tail.max(census.end) {
        // Space past `clean` is taken for zeros by the next table placed there.
        report.problem(format!(
            "the map's mark of written bytes {clean} lies below its data, which ends at {}",
            tail.max(census.end)
        ));
    }
    let Census { live, end, .. } = *census;
    if len != live || used != census.used || bytes != census.bytes || tail < end {
        let what = format!(
            "the counts say {len} entries, {used} used slots, {bytes} bytes, data ending at \
             {tail}; the tables hold {live} entries, {} used slots, {} bytes, ending at {end}",
            census.used, census.bytes
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
