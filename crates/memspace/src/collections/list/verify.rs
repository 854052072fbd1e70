//! What `inspect` reads of a list: its length, and a check of its whole segment.

use std::sync::atomic::Ordering;

use super::shm::{FIRST_BLOCK_ENTRIES, Raw};
use crate::collections::record;
use crate::error::Error;
use crate::segment::Report;
use crate::segment::{DATA_START, Segment};

/// The number of published items of the list in `segment`.
pub(crate) fn len(segment: &Segment) -> u64 {
    Raw::new(segment).len()
}

/// Checks a list segment without taking its lock (appends may go on meanwhile): the index
/// blocks, every published record (bounds, order, checksum, well-formed encoding) and the
/// recorded end of data. Used by [`inspect::verify`](crate::inspect::verify).
pub(crate) fn verify(segment: &Segment, report: &mut Report) {
    let raw = Raw::new(segment);
    let area = raw.area();
    let len = area.len.load(Ordering::Acquire);
    let mut block_ends = 0;
    let mut previous_block_end = DATA_START;
    for (block, offset) in area.blocks.iter().enumerate() {
        let offset = offset.load(Ordering::Acquire);
        if offset == 0 {
            continue;
        }
        let end = offset.saturating_add(8 * (FIRST_BLOCK_ENTRIES << block));
        // Appends go on meanwhile: compare with the size read after the offset (a block is
        // grown for before its offset is published).
        let size = segment.size();
        if offset < previous_block_end || !offset.is_multiple_of(8) || end > size {
            report.problem(format!(
                "index block {block} at {offset}..{end} overlaps an earlier block or lies outside \
                 the segment ({size} bytes)"
            ));
        }
        previous_block_end = end;
        block_ends = block_ends.max(end);
    }
    let mut previous_end = DATA_START;
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
        if record < previous_end {
            report.problem(format!(
                "item {index}: record at {record} overlaps the previous item (ending at {previous_end})"
            ));
        }
        previous_end = record_end;
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
    let tail = area.tail.load(Ordering::Acquire);
    // Read after `tail`: every growth a writer made before advancing `tail` is seen.
    let size = segment.size();
    let needed = previous_end.max(block_ends);
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
