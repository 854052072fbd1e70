//! What `inspect` reads of a list: its length, and a check of its whole segment.

use std::sync::atomic::Ordering;

use super::shm::{FIRST_BLOCK_ENTRIES, OP_INSERT, OP_NONE, OP_REMOVE, OP_SWAP_REMOVE, Raw};
use crate::collections::changes::verify_between_changes;
use crate::collections::record;
use crate::error::Error;
use crate::segment::{DATA_START, Report, Segment};

/// The number of published items of the list in `segment`.
pub(crate) fn len(segment: &Segment) -> u64 {
    Raw::new(segment).len()
}

/// Checks a list segment without taking its lock (changes may go on meanwhile): the index
/// blocks, every published record (bounds, checksum, well-formed encoding, no two overlapping),
/// the journal of a change its holder died in, and the recorded end of data. It keeps only a
/// reading made between two changes (see `changes::verify_between_changes`); appends, which
/// do not count as changes, only add items it does not look at. Used by
/// [`inspect::verify`](crate::inspect::verify).
pub(crate) fn verify(segment: &Segment, report: &mut Report) {
    let area = Raw::new(segment).area();
    verify_between_changes(
        segment.lock_slot(),
        &area.version,
        ("the list", "items"),
        report,
        |found, interrupted| check(segment, found, interrupted),
    );
}

/// One reading of the list; `interrupted` says that its last holder died in a change.
fn check(segment: &Segment, report: &mut Report, interrupted: bool) {
    let raw = Raw::new(segment);
    let area = raw.area();
    let len = area.len.load(Ordering::Acquire);
    let op = area.journal.op.load(Ordering::Acquire);
    let mid_move = interrupted && op != OP_NONE;
    if interrupted {
        let what = match op {
            OP_NONE => "a change",
            OP_INSERT => "an insert",
            OP_REMOVE => "a remove",
            OP_SWAP_REMOVE => "a swap-remove",
            _ => "an unknown operation",
        };
        report.note(format!(
            "a holder of the lock died in {what}; the next locker finishes it"
        ));
    } else if op != OP_NONE {
        report.problem(format!(
            "its journal records operation {op}, but no change is under way"
        ));
    }
    // Every referenced range: index blocks and records, to find overlaps.
    let mut ranges: Vec<(u64, u64, String)> = Vec::new();
    let mut block_ends = DATA_START;
    for (block, offset) in area.blocks.iter().enumerate() {
        let offset = offset.load(Ordering::Acquire);
        if offset == 0 {
            continue;
        }
        let end = offset.saturating_add(8 * (FIRST_BLOCK_ENTRIES << block));
        // Appends go on meanwhile: compare with the size read after the offset (a block is
        // grown for before its offset is published).
        let size = segment.size();
        if offset < DATA_START || !offset.is_multiple_of(8) || end > size {
            report.problem(format!(
                "index block {block} at {offset}..{end} lies outside the data area ({size} bytes)"
            ));
        }
        block_ends = block_ends.max(end);
        ranges.push((offset, end, format!("index block {block}")));
    }
    let mut record_ends = DATA_START;
    for index in 0..len {
        if report.is_full() {
            break;
        }
        let (record, record_end) = match raw
            .record_of(index)
            .and_then(|record| Ok((record, record::end(segment, record)?)))
        {
            Ok(found) => found,
            Err(err) => {
                report.problem(format!("item {index}: {}", describe(&err)));
                continue;
            }
        };
        record_ends = record_ends.max(record_end);
        ranges.push((record, record_end, format!("item {index}")));
        match raw.read_payload(index) {
            Ok(payload) => {
                if rmp_serde::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
                    report.problem(format!(
                        "item {index}: its bytes are not a well-formed value"
                    ));
                }
            }
            Err(err) => report.problem(describe(&err)),
        }
        report.items_checked += 1;
    }
    // In the middle of moving entries one entry is there twice: the next locker fixes that.
    if !mid_move {
        ranges.sort_unstable_by_key(|&(start, end, _)| (start, end));
        for pair in ranges.windows(2) {
            let ((_, end, first), (start, _, second)) = (&pair[0], &pair[1]);
            if start < end && !report.is_full() {
                report.problem(format!(
                    "{second} at {start} overlaps {first} (ending at {end})"
                ));
            }
        }
    }
    let tail = area.tail.load(Ordering::Acquire);
    // Read after `tail`: every growth a writer made before advancing `tail` is seen.
    let size = segment.size();
    let needed = record_ends.max(block_ends);
    // A writer may have finished between loading `tail` and looking for a holder: look again.
    if tail < needed && area.tail.load(Ordering::Acquire) < needed {
        if segment.lock_owner().is_some() {
            report.note(format!(
                "end of data {tail} is behind the published data ({needed}): a writer was \
                 interrupted; the next locker repairs it"
            ));
        } else {
            report.problem(format!(
                "end of data {tail} is behind the published data ({needed}), and no holder of \
                 the lock is recorded"
            ));
        }
    }
    if tail > size {
        report.problem(format!(
            "end of data {tail} lies past the segment's size {size}"
        ));
    }
}

fn describe(err: &Error) -> String {
    match err {
        Error::Corrupt { what, .. } => what.clone(),
        other => other.to_string(),
    }
}
