//! What `inspect` checks of a [`SharedPodMap`](super::SharedPodMap), knowing it only by the
//! key and value sizes its segment records.

use std::sync::atomic::Ordering;

use super::shm::{PodMapArea, Raw, Shape};
use crate::collections::changes::verify_between_changes;
use crate::segment::{Report, Segment};

/// The number of entries of the map in `segment` (as last counted by a writer).
pub(crate) fn len(segment: &Segment) -> u64 {
    segment
        .kind_area::<PodMapArea>()
        .len
        .load(Ordering::Acquire)
}

/// Checks the map's table slot by slot, between two changes (see [`Raw::check`]).
pub(crate) fn verify(segment: &Segment, report: &mut Report) {
    let area = segment.kind_area::<PodMapArea>();
    let (key_size, value_size) = (
        area.key_size.load(Ordering::Relaxed),
        area.value_size.load(Ordering::Relaxed),
    );
    let Some(shape) = Shape::new(key_size, value_size) else {
        report.problem(format!(
            "the map records keys of {key_size} bytes and values of {value_size}, which no map \
             holds"
        ));
        return;
    };
    let raw = Raw { segment, shape };
    verify_between_changes(
        segment.lock_slot(),
        &area.changes,
        ("the map", "slots"),
        report,
        |found, interrupted| {
            let census = match raw.check() {
                Ok(census) => census,
                Err(err) => {
                    found.problem(err.to_string());
                    return;
                }
            };
            for problem in census.problems {
                found.problem(problem);
            }
            // A new table is zeroed only below `clean`: below a table's end, it would find
            // that table's tags.
            if census.clean < census.tables_end {
                found.problem(format!(
                    "the map's clean mark {} lies below its tables' end {}",
                    census.clean, census.tables_end
                ));
            }
            found.items_checked += census.live;
            if interrupted {
                if census.journal != 0 {
                    found.note(format!(
                        "a replace of slot {} was interrupted; the next writer puts the old \
                         value back",
                        census.journal - 1
                    ));
                }
                return;
            }
            if census.journal != 0 {
                found.problem(format!(
                    "the journal names slot {} outside a change",
                    census.journal - 1
                ));
            }
            let keys = census.live + census.old_only;
            if census.len != keys || census.used != census.live + census.removed {
                found.problem(format!(
                    "the map counts {} keys and {} used slots, its tables hold {keys} keys and \
                     its table of {} slots {} used",
                    census.len,
                    census.used,
                    census.capacity,
                    census.live + census.removed
                ));
            }
        },
    );
}
