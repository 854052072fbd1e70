//! What `inspect` reads of a [`PodQueue`](super::PodQueue)'s segment, knowing it only by the
//! item size and capacity its segment records: how many items it holds, and a check of every
//! slot's state, made without stopping the puts and gets that go on meanwhile.

use std::sync::atomic::Ordering;

use super::ring::{self, PodQueueArea, Ring, Shape};
use crate::segment::{DATA_START, Report, Segment};

/// How many times [`verify`] reads the ring looking for a moment when `head` and `tail`
/// stayed put, before it checks only what needs no such moment.
const QUIET_TRIES: u32 = 8;

/// The number of items in the queue in `segment`: put and not yet taken.
pub(crate) fn len(segment: &Segment) -> u64 {
    let area = segment.kind_area::<PodQueueArea>();
    let head = area.head.0.load(Ordering::Acquire);
    let tail = area.tail.0.load(Ordering::Acquire);
    let capacity = area.fixed.0.capacity.load(Ordering::Relaxed);
    tail.saturating_sub(head).min(capacity)
}

pub(super) fn is_closed(segment: &Segment) -> bool {
    segment
        .kind_area::<PodQueueArea>()
        .fixed
        .0
        .closed
        .load(Ordering::Acquire)
        != 0
}

/// Checks the queue's slots: every state word must be one a put or a get stores, and, read
/// while `head` and `tail` stayed put, say what the positions between them imply (ready or
/// claimed from `head` to `tail`, free after). Claims held by processes that ended are noted:
/// the next call at them settles them.
pub(crate) fn verify(segment: &Segment, report: &mut Report) {
    let fixed = &segment.kind_area::<PodQueueArea>().fixed.0;
    let capacity = fixed.capacity.load(Ordering::Relaxed);
    let item_size = fixed.item_size.load(Ordering::Relaxed);
    let Some(shape) = Shape::new(capacity, item_size) else {
        report.problem(format!(
            "the queue records {capacity} slots of {item_size}-byte items, which no queue has"
        ));
        return;
    };
    if let Err(err) = segment.data_range(
        || format!("the queue's {capacity} slots"),
        DATA_START,
        shape.ring_bytes(),
        8,
    ) {
        report.problem(err.to_string());
        return;
    }
    let ring = match Ring::checked(segment, shape) {
        Ok(ring) => ring,
        Err(err) => return report.problem(err.to_string()),
    };
    let closed = fixed.closed.load(Ordering::Relaxed);
    if closed > 1 {
        report.problem(format!(
            "its closed word is {closed}, neither open (0) nor closed (1)"
        ));
    }
    let mut quiet = None;
    let mut last = ring.snapshot();
    for _ in 0..QUIET_TRIES {
        let again = ring.snapshot();
        if (again.0, again.1) == (last.0, last.1) && again.2 == last.2 {
            quiet = Some(again);
            break;
        }
        last = again;
    }
    let (head, tail, slots) = quiet.clone().unwrap_or(last);
    let mut ready = 0;
    for (index, &(word, stamp)) in slots.iter().enumerate() {
        match ring::claimant(word) {
            Err(()) => report.problem(format!(
                "the queue's slot {index} has the state {word:#x}, which no put or get stores"
            )),
            Ok(None) => ready += u64::from(ring::is_ready(word)),
            Ok(Some(_)) if ring.claimant_dead(word, stamp) => report.note(format!(
                "the queue's slot {index} is {} ({word:#x}), a process that has ended; the next \
                 call there {}",
                ring::describe(word),
                if ring::is_reading(word) {
                    "takes the item over"
                } else {
                    "skips it"
                }
            )),
            Ok(Some(_)) => {}
        }
    }
    report.items_checked += ready;
    if quiet.is_none() {
        report.note(format!(
            "puts and gets went on during {QUIET_TRIES} reads: the slots' order was not checked"
        ));
        return;
    }
    let word_at = |position: u64| slots[(position & (capacity - 1)) as usize].0;
    // Where the next get and put would find `head` and `tail`: a call killed after its last
    // store leaves them behind the positions it finished (and a put refills a slot a get freed
    // before that get moved `head`).
    let (mut head, mut tail) = (head, tail);
    for _ in 0..capacity {
        if !ring.head_moves_past(word_at(head), head) {
            break;
        }
        head = head.wrapping_add(1);
    }
    for _ in 0..capacity {
        if tail >= head.wrapping_add(capacity) || !ring.tail_moves_past(word_at(tail), tail) {
            break;
        }
        tail = tail.wrapping_add(1);
    }
    if tail < head || tail - head > capacity {
        report.problem(format!(
            "the queue's head is position {head} and its tail {tail}, which no {capacity} slots \
             hold"
        ));
        return;
    }
    for offset in 0..capacity {
        let position = head.wrapping_add(offset);
        let word = word_at(position);
        if let Some(expected) = ring::fits(ring, word, position, position < tail) {
            report.problem(format!(
                "the queue's slot {} is {} ({word:#x}), but position {position} {expected}",
                position & (capacity - 1),
                ring::describe(word),
            ));
        }
    }
}
