//! Named points in the code where a crash test can freeze a process, to kill it at exactly
//! that point (with the `failpoints` feature; without it every call compiles to nothing).
//!
//! A process whose environment has `MEMSPACE_FAILPOINT=NAME` stops itself with `SIGSTOP` when
//! it reaches the point `NAME`; the test sees it stopped (state `T` in `/proc/PID/stat`) and
//! sends `SIGKILL`. The points:
//!
//! | name | where |
//! | --- | --- |
//! | `open.sized` | an open read the file's size, not yet its header |
//! | `grow.allocated` | a segment's file was extended, its new size not yet published |
//! | `list.block_reserved` | a new index block was reserved, no record written yet |
//! | `list.written` | a record and its index entry were written, not yet published |
//! | `list.published` | an item was published, the end of data not yet advanced |
//! | `list.set_written` | a set's new record was written past the end of data, not yet in its entry |
//! | `list.set_switched` | a set's entry points to the new record, the sequence word still odd |
//! | `list.insert_written` | an insert's record was written past the end of data, no journal yet |
//! | `list.insert_journaled` | an insert's journal was committed, no entry moved yet |
//! | `list.remove_journaled` | a remove's (or swap-remove's) journal was committed, no entry moved yet |
//! | `list.moving` | an insert, remove or swap-remove moved an entry and recorded its progress |
//! | `list.moved_all` | an insert, remove or swap-remove stored the new length, the journal not yet cleared |
//! | `list.popped` | a pop stored the shorter length, the sequence word still odd |
//! | `list.truncated` | a truncate stored the shorter length, the sequence word still odd |
//! | `list.cleared` | a clear stored the length 0, the index blocks not yet released |
//! | `list.copy_built` | a compaction's copy (index blocks and records) was built past the end of data, not yet switched to |
//! | `list.copy_switched` | the list was switched to the compacted copy, the sequence word still odd |
//! | `list.near_copy_built` | a second copy was built at the start of the data area, not yet switched to |
//! | `list.near_copy_switched` | the list was switched to the second copy, the sequence word still odd |
//! | `list.read_entry` | a read's fast path read an item's index entry (the record's offset), not its record yet |
//! | `map.written` | an entry's record was written past the end of data, not yet in a slot |
//! | `map.committed` | a new entry was stored in its slot, the counts not yet updated |
//! | `map.replaced` | an existing key's slot was pointed at its new record, the counts not yet updated |
//! | `map.removed` | an entry's slot was emptied, the counts not yet updated |
//! | `map.table_built` | a new table was built from the current one past the end of data, not yet switched to |
//! | `map.table_switched` | the map was switched to the new table, the counts not yet updated |
//! | `map.copy_built` | a compacted copy (table and records) was built past the end of data, not yet switched to |
//! | `map.copy_switched` | the map was switched to the compacted copy, the counts not yet updated |
//! | `map.moved` | the map was switched to a second copy at the start of the data area, the end of data not yet lowered |
//! | `map.read_table` | a lookup's fast path (no migration under way) read the table word, no slot of it yet |
//! | `queue.ring_built` | a larger ring was built and filled, not yet switched to |
//! | `queue.batch_first_written` | a batch put (`put_many`) wrote its first item's record and entry, not yet the others |
//! | `queue.written` | an item's (or a batch's) records and entries were written, not yet committed |
//! | `queue.committed` | an item was committed (`end` stored), the counters not yet updated |
//! | `queue.taking` | a take in flight stored its taker's start time in the entry, not yet its pid |
//! | `queue.taken` | an item was marked taken, the counters not yet updated |
//! | `queue.acked` | an item was marked acknowledged, the counters and `head` not yet updated |
//! | `queue.returned` | a dropped delivery's item was marked ready again, the counters not yet updated |
//! | `pod_map.written` | a plain-value map's entry was written into a vacant slot, its tag not yet stored |
//! | `pod_map.committed` | a new entry's tag was stored, the counts not yet updated |
//! | `pod_map.journaled` | a replace saved the old value in the journal and named the slot, the new value not yet written |
//! | `pod_map.value_written` | a replace wrote the new value, the journal not yet cleared |
//! | `pod_map.removed` | an entry's tag was stored as removed, the counts not yet updated |
//! | `pod_map.placed_over_old` | during a migration, a replace placed a key still in the old table in the new one, with its new value; the old copy not yet marked removed |
//! | `pod_map.removed_from_old` | during a migration, a key's copy in the old table was marked removed (after its new value was placed, for a replace) |
//! | `pod_map.table_built` | a rebuilt (or cleared) table was built beside the current one, not yet switched to |
//! | `pod_map.table_switched` | the map was switched to the rebuilt table, the counts not yet updated |
//! | `pod_map.migration_named` | a migration named the current table `old`, `table` not yet switched |
//! | `pod_map.migration_begun` | a migration switched `table` to the new, empty table |
//! | `pod_map.entry_moved` | a migration step placed an entry in the new table, `moved` not yet advanced |
//! | `pod_map.migration_done` | a migration moved its last slot and cleared `old` |
//! | `pod_map.recovering` | a locker began recovering the map after a holder's death, nothing repaired yet |
//! | `pod_queue.claimed` | a put of a plain-value queue claimed its slot (or a batch's slots), the tail not yet moved |
//! | `pod_queue.written` | a put wrote an item into its claimed slot, not yet marked ready |
//! | `pod_queue.published` | a put marked its items ready, the getters not yet woken |
//! | `pod_queue.claimed_to_read` | a get claimed its slot (or a batch's), nothing copied yet |
//! | `pod_queue.read` | a get copied an item out, its slot not yet freed |
//! | `pod_queue.freed` | a get freed its slots, the head not yet moved |
//! | `pod_queue.taken_over` | a get took over the claim of a dead get, nothing copied yet |
//! | `vec.written` | elements were written past the published length, not yet published |

#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &'static str) {
    use std::sync::OnceLock;
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("MEMSPACE_FAILPOINT").ok());
    if armed.as_deref() == Some(name) {
        crate::sys::stop_self();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &'static str) {}
