//! Changes of a `SharedList` killed at every step: a process stopped at a failpoint inside
//! `set`, `insert`, `remove`, `swap_remove`, `pop`, `truncate`, `clear` and a compaction (the
//! test build has the `failpoints` feature; see `crash.rs`) and killed (SIGKILL) there, while reader
//! processes read the list. The list must then equal the state before the change or the
//! state after it (exactly the one the failpoint's place implies), no acknowledged change may
//! be lost, the readers never fail and never see a state no writer published, and the next
//! locker (another process) repairs what was left.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use memspace::sync::{Event, Mutex};
use memspace::{SharedList, inspect};
use memspace_testkit::children::was_sigkilled;
use memspace_testkit::flags::lock_recovering;
use memspace_testkit::{Parent, Removal, Running, roles};

/// `(value, body)`: the body is derived from the value, so a torn item shows.
type Item = (u64, String);

const LIST_VARIABLE: &str = "MEMSPACE_CRASH_LIST";
const INTENT_VARIABLE: &str = "MEMSPACE_CRASH_INTENT";
const OP_VARIABLE: &str = "MEMSPACE_CRASH_OP";
/// Items in the list before the change.
const PREFILL: u64 = 40;
/// The most steps a changer takes (a compaction comes after about fifty sets).
const MAX_STEPS: u64 = 400;

fn item(value: u64) -> Item {
    let letter = char::from(b'a' + (value % 26) as u8);
    (
        value,
        format!(
            "{value}:{}",
            letter.to_string().repeat(200 + (value * 53 % 500) as usize)
        ),
    )
}

/// Step `step` of the changer's operation `op`, applied to a `Vec`.
fn apply_to_model(op: &str, step: u64, model: &mut Vec<Item>) {
    let len = model.len();
    match op {
        "set" => model[step as usize % len] = item(1000 + step),
        "insert" => model.insert(3, item(1000 + step)),
        "remove" => drop(model.remove(3)),
        "swap_remove" => drop(model.swap_remove(3)),
        "pop" => drop(model.pop()),
        "truncate" => model.truncate(len - 2),
        "clear" => model.clear(),
        other => panic!("no operation {other}"),
    }
}

/// Step `step` of the changer's operation `op`, applied to the list.
fn apply_to_list(op: &str, step: u64, list: &SharedList<Item>) {
    let len = list.len().expect("len");
    match op {
        "set" => list.set(step % len, &item(1000 + step)).expect("set"),
        "insert" => list.insert(3, &item(1000 + step)).expect("insert"),
        "remove" => drop(list.remove(3).expect("remove")),
        "swap_remove" => drop(list.swap_remove(3).expect("swap_remove")),
        "pop" => drop(list.pop().expect("pop")),
        "truncate" => list.truncate(len - 2).expect("truncate"),
        "clear" => list.clear().expect("clear"),
        other => panic!("no operation {other}"),
    }
}

/// Whether step `op` can be taken on a list of `len` items.
fn possible(op: &str, len: usize) -> bool {
    match op {
        "set" => len > 0,
        "remove" | "swap_remove" => len > 3,
        "truncate" => len >= 2,
        _ => true,
    }
}

/// The list's states: before step 0, after step 0, after step 1, ... (as many as the
/// operation can be taken, at most [`MAX_STEPS`]).
fn states(op: &str) -> Vec<Vec<Item>> {
    let mut model: Vec<Item> = (0..PREFILL).map(item).collect();
    let mut states = vec![model.clone()];
    for step in 0..MAX_STEPS {
        if !possible(op, model.len()) {
            break;
        }
        apply_to_model(op, step, &mut model);
        states.push(model.clone());
    }
    states
}

/// Child role `changer`: records in the intent mutex which step it is about to take, takes it,
/// and goes on until a failpoint stops the process (the parent then kills it).
fn changer() {
    let list = SharedList::<Item>::open(&std::env::var(LIST_VARIABLE).expect("list name"))
        .expect("open the list");
    let intent = Mutex::<u64>::open(&std::env::var(INTENT_VARIABLE).expect("intent name"))
        .expect("open the intent");
    let op = std::env::var(OP_VARIABLE).expect("operation");
    for step in 0..MAX_STEPS {
        if !possible(&op, list.len().expect("len") as usize) {
            break;
        }
        *lock_recovering(&intent) = step;
        apply_to_list(&op, step, &list);
    }
    panic!("the failpoint was never reached");
}

/// Child role `appender`: pushes the next three items.
fn appender() {
    let list = SharedList::<Item>::open(&std::env::var(LIST_VARIABLE).expect("list name"))
        .expect("open the list");
    for value in 0..3 {
        list.push(&item(10_000 + value))
            .expect("push from a second process");
    }
}

fn roles_here() -> bool {
    match roles::role().as_deref() {
        Some("changer") => changer(),
        Some("appender") => appender(),
        Some(other) => panic!("unknown role {other}"),
        None => return false,
    }
    true
}

/// A reader process: until `stop`, reads the whole list (and each item alone) again and again.
/// Every snapshot must be one of the states of `op`, never an earlier one than the last it
/// saw; every item must be whole. Counts passes in `passes`.
fn reader((list, op, passes, stop): (SharedList<Item>, String, Mutex<u64>, Event)) -> u64 {
    let parent = Parent::here();
    let states = states(&op);
    let mut at = 0;
    let mut pass = 0;
    while !stop.is_set().expect("is_set") {
        let snapshot = list
            .to_vec()
            .unwrap_or_else(|err| panic!("pass {pass}: to_vec failed: {err}"));
        let found = states[at..]
            .iter()
            .position(|state| *state == snapshot)
            .unwrap_or_else(|| {
                panic!(
                    "pass {pass}: a snapshot of {} items is no published state at or after \
                     step {at}",
                    snapshot.len()
                )
            });
        at += found;
        for index in 0..snapshot.len() as u64 {
            match list.get(index) {
                Ok(Some((value, body))) => {
                    assert_eq!(
                        (value, body),
                        item(value),
                        "pass {pass}: item {index} is torn"
                    );
                }
                Ok(None) => {} // the list shrank meanwhile
                Err(err) => panic!("pass {pass}: get({index}) failed: {err}"),
            }
        }
        pass += 1;
        *lock_recovering(&passes) = pass;
        parent.exit_if_gone();
    }
    pass
}

/// Stops a changer doing `op` at `point`, kills it there while two readers read, and checks
/// that the list is the state after the step it was taking if `after`, else the state before,
/// that the readers go on without failing, and that another process repairs and extends it.
fn kill_at(op: &str, point: &str, after: bool) {
    if roles_here() {
        return;
    }
    let _watchdog = memspace_testkit::start_test();
    let list_name = Removal::fresh("listkill");
    let intent_name = Removal::fresh("intent");
    let list = SharedList::<Item>::create(list_name.name()).expect("create the list");
    list.extend((0..PREFILL).map(item)).expect("prefill");
    let intent = Mutex::create(intent_name.name(), u64::MAX).expect("create the intent");
    let passes: Vec<Mutex<u64>> = (0..2)
        .map(|_| Mutex::new(0).expect("a pass counter"))
        .collect();
    let stop_readers = Event::new().expect("create the stop flag");
    let mut readers: Vec<_> = passes
        .iter()
        .map(|passes| {
            Running::spawn(
                reader,
                (
                    list.clone(),
                    op.to_owned(),
                    passes.clone(),
                    stop_readers.clone(),
                ),
            )
        })
        .collect();
    let mut changer = roles::child_in_role(
        "changer",
        &[
            (LIST_VARIABLE, list_name.name()),
            (INTENT_VARIABLE, intent_name.name()),
            (OP_VARIABLE, op),
            ("MEMSPACE_FAILPOINT", point),
        ],
    );
    changer.wait_until_stopped(point);
    let step = *lock_recovering(&intent);
    let status = changer.kill();
    assert!(
        was_sigkilled(status),
        "{op} at {point}: the changer ended with {status}"
    );

    // Exactly the state the failpoint's place implies; every earlier step is there.
    let expected = states(op).swap_remove(if after {
        step as usize + 1
    } else {
        step as usize
    });
    assert_eq!(
        list.to_vec().expect("every item decodes"),
        expected,
        "{op} killed at {point} in step {step}"
    );
    // The readers read on: two more passes each.
    for (reading, passes) in readers.iter_mut().zip(&passes) {
        let pass = *lock_recovering(passes);
        reading.wait_until("it read the list twice more", || {
            *lock_recovering(passes) >= pass + 2
        });
    }
    stop_readers.set().expect("stop the readers");
    for reading in &mut readers {
        let passes = reading
            .join()
            .unwrap_or_else(|err| panic!("{op} at {point}: a reader failed: {err}"));
        assert!(passes > 0);
    }
    let report = inspect::verify(list.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{op} at {point}: {report:#?}");

    // Another process takes the lock (repairing what is left), then this one.
    let mut second = roles::child_in_role("appender", &[(LIST_VARIABLE, list_name.name())]);
    let status = second.wait();
    assert!(
        status.success(),
        "{op} at {point}: the second process failed: {status}"
    );
    list.push(&item(20_000)).expect("push after the kill");
    let mut expected = expected;
    expected.extend((10_000..10_003).map(item));
    expected.push(item(20_000));
    assert_eq!(list.to_vec().expect("to_vec"), expected, "{op} at {point}");
    let report = inspect::verify(list.segment().expect("in shared memory"));
    assert!(
        report.is_consistent() && report.notes.is_empty(),
        "{op} at {point}, after the repair: {report:#?}"
    );
    assert_eq!(list.segment().expect("in shared memory").lock_owner(), None);
}

#[test]
fn a_set_killed_after_writing_its_record_leaves_the_list_as_before() {
    kill_at("set", "list.set_written", false);
}

#[test]
fn a_set_killed_after_switching_the_entry_leaves_the_list_as_after() {
    kill_at("set", "list.set_switched", true);
}

#[test]
fn an_insert_killed_after_writing_its_record_leaves_the_list_as_before() {
    kill_at("insert", "list.insert_written", false);
}

#[test]
fn an_insert_killed_after_its_journal_is_rolled_forward() {
    kill_at("insert", "list.insert_journaled", true);
}

#[test]
fn an_insert_killed_while_moving_entries_is_rolled_forward() {
    kill_at("insert", "list.moving", true);
}

#[test]
fn an_insert_killed_after_its_last_move_is_rolled_forward() {
    kill_at("insert", "list.moved_all", true);
}

#[test]
fn a_remove_killed_after_its_journal_is_rolled_forward() {
    kill_at("remove", "list.remove_journaled", true);
}

#[test]
fn a_remove_killed_while_moving_entries_is_rolled_forward() {
    kill_at("remove", "list.moving", true);
}

#[test]
fn a_remove_killed_after_storing_the_new_length_is_rolled_forward() {
    kill_at("remove", "list.moved_all", true);
}

#[test]
fn a_swap_remove_killed_after_moving_the_last_entry_is_rolled_forward() {
    kill_at("swap_remove", "list.moving", true);
}

#[test]
fn a_pop_killed_after_storing_the_new_length_leaves_the_list_as_after() {
    kill_at("pop", "list.popped", true);
}

#[test]
fn a_truncate_killed_after_storing_the_new_length_leaves_the_list_as_after() {
    kill_at("truncate", "list.truncated", true);
}

#[test]
fn a_clear_killed_before_freeing_the_space_leaves_an_empty_list() {
    kill_at("clear", "list.cleared", true);
}

#[test]
fn a_compaction_killed_after_building_its_copy_leaves_the_items_unchanged() {
    kill_at("set", "list.copy_built", true);
}

#[test]
fn a_compaction_killed_while_switching_to_its_copy_leaves_the_items_unchanged() {
    kill_at("set", "list.copy_switched", true);
}

#[test]
fn a_compaction_killed_after_building_its_second_copy_leaves_the_items_unchanged() {
    kill_at("set", "list.near_copy_built", true);
}

#[test]
fn a_compaction_killed_while_switching_to_its_second_copy_leaves_the_items_unchanged() {
    kill_at("set", "list.near_copy_switched", true);
}
