//! What `inspect` reads of a queue's segment: how many items are ready, and a check of the
//! ring and its items, made without its locks while operations go on.

use std::sync::atomic::Ordering;

use super::layout::{DONE, READY, Raw, Ring, TAKEN, mark_pid};
use crate::collections::changes::verify_between_changes;
use crate::collections::{codec, record};
use crate::error::Error;
use crate::segment::Report;
use crate::segment::{self, Segment};

/// The number of ready items of the queue in `segment`.
pub(crate) fn len(segment: &Segment) -> u64 {
    Raw { segment }.ready()
}

/// Checks the queue in `segment` without its locks: the ring, every live entry's state and
/// record (bounds, order, checksum, encoding), the bound, the counters, and that every entry
/// in flight is the named sole taker's, if one is named.
///
/// Operations may go on meanwhile, in this process or others. The check is retried until it
/// ran between two changes of the receivers (`changes` even and unchanged), or while the
/// receive lock's holder is dead (nothing changes until the next receiver recovers); after a
/// few tries it gives up with a note. Puts change nothing it compares: they add entries past
/// the `end` it read.
pub(crate) fn verify(segment: &Segment, report: &mut Report) {
    let raw = Raw { segment };
    if let Some(owner) = segment.second_lock_slot().owner_pid()
        && !segment::pid_alive(owner)
    {
        report.note(format!(
            "the receive lock is recorded as held by process {owner}, which is dead; the next \
             receiver is told and recovers"
        ));
    }
    verify_between_changes(
        segment.second_lock_slot(),
        &raw.area().changes,
        ("the queue", "items"),
        report,
        |found, _| check(raw, found),
    );
}

fn check(raw: Raw<'_>, report: &mut Report) {
    let segment = raw.segment;
    let area = raw.area();
    let ring = match raw.ring() {
        Ok(ring) => ring,
        Err(err) => return report.problem(describe(&err)),
    };
    let window = match raw.window(ring) {
        Ok(window) => window,
        Err(err) => return report.problem(describe(&err)),
    };
    let end = window.1;
    let (ready, unacked) = match ring {
        Some(ring) => {
            let sole = area.sole_taker.load(Ordering::Relaxed);
            check_entries(raw, ring, window, sole, report)
        }
        None => (0, 0),
    };
    if let Err(err) = raw.closed_state() {
        report.problem(describe(&err));
    }
    let capacity = area.capacity.load(Ordering::Relaxed);
    if capacity != 0 && unacked > capacity {
        report.problem(format!(
            "{unacked} items are unacknowledged, more than the capacity {capacity}"
        ));
    }
    // Derived from `end` as read once, for the window: senders may commit more meanwhile,
    // which changes neither counter.
    let (settled, acked) = (
        area.settled.load(Ordering::Relaxed),
        area.acked.load(Ordering::Relaxed),
    );
    let counted = (end.checked_sub(settled), end.checked_sub(acked));
    if counted != (Some(ready), Some(unacked)) {
        let show =
            |count: Option<u64>| count.map_or_else(|| "less than no".to_owned(), |c| c.to_string());
        let what = format!(
            "the counters say {} ready and {} unacknowledged, the entries {ready} and \
             {unacked}",
            show(counted.0),
            show(counted.1),
        );
        if segment.second_lock_slot().owner_pid().is_some() {
            report.note(format!(
                "{what}: a holder of the receive lock was interrupted; the next receiver \
                 recounts"
            ));
        } else {
            report.problem(what);
        }
    }
}

/// Checks the live entries and their records, and that every entry in flight carries the
/// mark of `sole`, the queue's sole taker, unless it is 0; returns how many are ready and
/// unacknowledged.
fn check_entries(
    raw: Raw<'_>,
    ring: Ring,
    (head, end): (u64, u64),
    sole: u64,
    report: &mut Report,
) -> (u64, u64) {
    let segment = raw.segment;
    let (mut waiting, mut unacked) = (0u64, 0u64);
    let mut first = None;
    let mut previous_end = None;
    let mut wrapped = false;
    let mut orphans = Vec::new();
    // The first entry in flight with another process than `sole`.
    let mut strays = None;
    for seq in head..end {
        if report.is_full() {
            break;
        }
        let entry = match raw.entry(ring, seq) {
            Ok(entry) => entry,
            Err(err) => {
                report.problem(format!("entry {seq}: {}", describe(&err)));
                continue;
            }
        };
        let state = entry.state.load(Ordering::Acquire);
        match state {
            READY => {
                waiting += 1;
                unacked += 1;
            }
            TAKEN => {
                unacked += 1;
                let (pid, start) = (
                    entry.taker_pid.load(Ordering::Relaxed),
                    entry.taker_start.load(Ordering::Relaxed),
                );
                if !segment::process_alive(pid, start) {
                    orphans.push(seq);
                }
                if sole != 0 && entry.taker_mark() != sole {
                    strays.get_or_insert((seq, entry.taker_mark()));
                }
            }
            DONE => {}
            other => report.problem(format!("entry {seq} has state {other}")),
        }
        let record = entry.record.load(Ordering::Relaxed);
        let record_end = match raw.record_end(ring, record) {
            Ok(record_end) => record_end,
            Err(err) => {
                report.problem(format!("entry {seq}: {}", describe(&err)));
                continue;
            }
        };
        // Records follow each other, wrapping around once, never reaching the first.
        let first = *first.get_or_insert(record);
        if let Some(previous) = previous_end {
            if record != previous {
                if record == ring.lo && !wrapped {
                    wrapped = true;
                } else {
                    report.problem(format!(
                        "entry {seq}: its record at {record} does not follow the previous one \
                         (ending at {previous})"
                    ));
                }
            }
            if wrapped && record_end > first {
                report.problem(format!(
                    "entry {seq}: its record at {record} overlaps the oldest one at {first}"
                ));
            }
        }
        previous_end = Some(record_end);
        if state == READY || state == TAKEN {
            match record::read(segment, record) {
                Ok(payload) if codec::decode::<serde::de::IgnoredAny>(&payload).is_ok() => {}
                Ok(_) => report.problem(format!("item {seq} is not a well-formed value")),
                Err(err) => report.problem(format!("item {seq}: {}", describe(&err))),
            }
            report.items_checked += 1;
        }
    }
    if let (Some(first), Some(last)) = (orphans.first(), orphans.last()) {
        report.note(format!(
            "{} items ({first}..={last}) are in flight with processes that died; they are \
             delivered again to the next receivers",
            orphans.len()
        ));
    }
    if let Some((seq, mark)) = strays {
        // That process would skip the look for items of dead takers.
        report.problem(format!(
            "entry {seq} is in flight with {}, but the queue records {} as holding every item \
             in flight",
            describe_taker(mark),
            describe_taker(sole)
        ));
    }
    (waiting, unacked)
}

/// The process of a taker mark, for a report: its pid and what the mark keeps of its start.
fn describe_taker(mark: u64) -> String {
    format!(
        "process {} (started at clock tick {} modulo 2^32)",
        mark_pid(mark),
        mark >> 32
    )
}

fn describe(err: &Error) -> String {
    match err {
        Error::Corrupt { what, .. } => what.clone(),
        other => other.to_string(),
    }
}
