//! `SharedList` as a mutable list: `set`, `insert`, `remove`, `swap_remove`, `pop`,
//! `truncate`, `clear` and `last` against a `Vec` on both backends, out-of-range indexes as
//! errors, space reclaimed, a model-based property test of random operations from several
//! workers (threads, forked and spawned processes), and concurrent changes without a lock
//! that lose, duplicate and tear nothing while a reader watches.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::collections::BTreeMap;

use memspace::spawn::{Mode, Worker};
use memspace::sync::{Event, Lock};
use memspace::{Error, SharedList, inspect};
use memspace_testkit::backends::Fixture;
use memspace_testkit::{Removal, Rng};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde::{Deserialize, Serialize};

fn assert_consistent<T>(list: &SharedList<T>, context: &str) {
    if let Some(segment) = list.segment() {
        let report = inspect::verify(segment);
        assert!(report.is_consistent(), "{context}: {report:#?}");
        assert!(report.notes.is_empty(), "{context}: {report:#?}");
    }
}

fn assert_out_of_range<T: std::fmt::Debug>(
    result: memspace::Result<T>,
    list: &str,
    index: u64,
    len: u64,
) {
    match result {
        Err(err @ Error::IndexOutOfRange { .. }) => {
            let Error::IndexOutOfRange {
                ref name,
                index: reported,
                len: reported_len,
            } = err
            else {
                unreachable!()
            };
            assert_eq!(name.as_str(), list);
            assert_eq!((reported, reported_len), (index, len), "{err}");
            let message = err.to_string();
            assert!(
                message.contains(list)
                    && message.contains(&index.to_string())
                    && message.contains(&len.to_string()),
                "the message names the list, the index and the length: {message}"
            );
        }
        other => panic!("expected IndexOutOfRange {{ index: {index}, len: {len} }}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Every operation against a Vec, on both backends

fn every_change_matches_a_vec(fx: &Fixture) {
    let name = fx.name("changes");
    let list = SharedList::<String>::create(&name).expect("create");
    let other = SharedList::<String>::open(&name).expect("open");
    let mut model: Vec<String> = Vec::new();
    let check = |model: &Vec<String>, step: &str| {
        assert_eq!(&list.to_vec().expect("to_vec"), model, "after {step}");
        assert_eq!(&other.to_vec().expect("to_vec"), model, "after {step}");
        assert_eq!(list.len().expect("len"), model.len() as u64, "after {step}");
        for (index, item) in model.iter().enumerate() {
            assert_eq!(
                other.get(index as u64).expect("get").as_ref(),
                Some(item),
                "after {step}: item {index}"
            );
        }
        assert_eq!(list.last().expect("last").as_ref(), model.last());
        assert_consistent(&list, step);
    };
    let text = |n: u32| format!("item {n} {}", "x".repeat((n % 7) as usize));

    assert_eq!(list.pop().expect("pop of an empty list"), None);
    assert_eq!(list.last().expect("last of an empty list"), None);
    assert_out_of_range(list.set(0, &text(0)), &name, 0, 0);
    assert_out_of_range(list.remove(0), &name, 0, 0);
    assert_out_of_range(list.swap_remove(0), &name, 0, 0);
    assert_out_of_range(list.insert(1, &text(0)), &name, 1, 0);
    list.truncate(3).expect("truncate of an empty list");
    list.clear().expect("clear of an empty list");
    check(&model, "nothing");

    list.insert(0, &text(0)).expect("insert into an empty list");
    model.insert(0, text(0));
    list.extend((1..6).map(text)).expect("extend");
    model.extend((1..6).map(text));
    check(&model, "extend");

    other.set(2, &text(20)).expect("set");
    model[2] = text(20);
    check(&model, "set");
    assert_out_of_range(list.set(6, &text(0)), &name, 6, 6);

    list.insert(0, &text(30)).expect("insert at the front");
    model.insert(0, text(30));
    list.insert(3, &text(31)).expect("insert in the middle");
    model.insert(3, text(31));
    list.insert(8, &text(32)).expect("insert at the end");
    model.insert(8, text(32));
    check(&model, "insert");
    assert_out_of_range(list.insert(10, &text(0)), &name, 10, 9);

    assert_eq!(list.remove(0).expect("remove the first"), model.remove(0));
    assert_eq!(list.remove(3).expect("remove one"), model.remove(3));
    let final_index = model.len() as u64 - 1;
    assert_eq!(
        list.remove(final_index).expect("remove the last"),
        model.remove(final_index as usize)
    );
    check(&model, "remove");
    assert_out_of_range(list.remove(6), &name, 6, 6);

    assert_eq!(
        list.swap_remove(1).expect("swap_remove"),
        model.swap_remove(1)
    );
    let final_index = model.len() as u64 - 1;
    assert_eq!(
        list.swap_remove(final_index).expect("swap_remove the last"),
        model.swap_remove(final_index as usize)
    );
    check(&model, "swap_remove");
    assert_out_of_range(list.swap_remove(4), &name, 4, 4);

    assert_eq!(list.pop().expect("pop"), model.pop());
    check(&model, "pop");
    list.push(&text(40)).expect("push after pop");
    model.push(text(40));
    check(&model, "push after pop");

    list.truncate(10).expect("truncate to more");
    list.truncate(2).expect("truncate");
    model.truncate(2);
    check(&model, "truncate");

    other.clear().expect("clear");
    model.clear();
    check(&model, "clear");
    list.extend((50..1100).map(text))
        .expect("extend past one index block");
    model.extend((50..1100).map(text));
    list.insert(3, &text(2000)).expect("insert across blocks");
    model.insert(3, text(2000));
    assert_eq!(
        list.remove(600).expect("remove across blocks"),
        model.remove(600)
    );
    check(&model, "changes across index blocks");

    // An item of another type is an error, and in shared memory stays in place.
    let numbers = SharedList::<u64>::open(&name).expect("open as numbers");
    assert!(matches!(numbers.pop(), Err(Error::Decode { .. })));
    if !fx.is_redis() {
        assert!(matches!(
            numbers.remove(0),
            Err(Error::Decode { index: 0, .. })
        ));
        check(&model, "failed decodes");
    }
}

memspace_testkit::on_both_backends!(every_change_matches_a_vec);

// ---------------------------------------------------------------------------------------------
// Space

/// `bytes` of payload in one item.
fn blob(tag: u64, bytes: usize) -> String {
    let mut text = format!("{tag}:");
    while text.len() < bytes {
        text.push(char::from(b'a' + (tag % 26) as u8));
    }
    text
}

#[test]
fn replaced_and_removed_items_leave_bounded_garbage_and_readers_see_every_value() {
    let removal = Removal::fresh("space");
    let list = SharedList::<String>::create(removal.name()).expect("create");
    let mut model: Vec<String> = (0..64).map(|i| blob(i, 500)).collect();
    list.extend(&model).expect("extend");
    let live = list.used_bytes();
    let mut highest = live;
    let mut rng = Rng::new(7);
    for round in 0..20_000u64 {
        let index = rng.below(64);
        let value = blob(round, 300 + rng.below(400) as usize);
        match round % 4 {
            0 | 1 => {
                list.set(index, &value).expect("set");
                model[index as usize] = value;
            }
            2 => {
                assert_eq!(
                    list.remove(index).expect("remove"),
                    model.remove(index as usize)
                );
                list.insert(index, &value).expect("insert");
                model.insert(index as usize, value);
            }
            _ => {
                assert_eq!(list.pop().expect("pop"), model.pop());
                list.push(&value).expect("push");
                model.push(value);
            }
        }
        highest = highest.max(list.used_bytes());
        if round % 997 == 0 {
            assert_eq!(list.to_vec().expect("to_vec"), model, "round {round}");
            assert_consistent(&list, &format!("round {round}"));
        }
    }
    assert_eq!(list.to_vec().expect("to_vec"), model);
    assert_consistent(&list, "the end");
    // 20 000 changes of ~600 bytes wrote 12 MB; the list stays within three times its live
    // bytes plus the 16 KiB a compaction waits for (and the control pages).
    assert!(
        highest <= 3 * live + (64 << 10),
        "used {highest} bytes for about {live} bytes of live items"
    );
    let segment_size = list.segment().expect("in shared memory").size();
    assert!(
        segment_size <= 4 * (3 * live + (64 << 10)),
        "the segment grew to {segment_size}"
    );

    list.clear().expect("clear");
    assert!(
        list.used_bytes() <= 8192 + 4096,
        "clear frees the data area: {} bytes in use",
        list.used_bytes()
    );
    list.push(&blob(1, 10)).expect("push after clear");
    assert_eq!(list.to_vec().expect("to_vec"), [blob(1, 10)]);
    assert_consistent(&list, "after clear");
}

#[test]
fn a_pop_and_push_loop_reuses_the_same_space() {
    let removal = Removal::fresh("popping");
    let list = SharedList::<String>::create(removal.name()).expect("create");
    list.extend((0..10).map(|i| blob(i, 100))).expect("extend");
    let used = list.used_bytes();
    for round in 0..10_000 {
        let popped = list.pop().expect("pop").expect("an item");
        list.push(&popped).expect("push");
        assert_eq!(list.used_bytes(), used, "round {round}");
    }
}

// ---------------------------------------------------------------------------------------------
// A model-based property test: random operations from several workers under a lock

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Op {
    Push(i64),
    Set(u64, i64),
    Insert(u64, i64),
    Remove(u64),
    SwapRemove(u64),
    Pop,
    Truncate(u64),
    Clear,
    Get(u64),
    Last,
}

/// What an operation returned: nothing, an item (or none), or an out-of-range `(index, len)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Outcome {
    Done,
    Item(Option<i64>),
    OutOfRange(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let index = 0..12u64;
    prop_oneof![
        4 => any::<i64>().prop_map(Op::Push),
        3 => (index.clone(), any::<i64>()).prop_map(|(i, v)| Op::Set(i, v)),
        3 => (index.clone(), any::<i64>()).prop_map(|(i, v)| Op::Insert(i, v)),
        2 => index.clone().prop_map(Op::Remove),
        2 => index.clone().prop_map(Op::SwapRemove),
        2 => Just(Op::Pop),
        1 => index.clone().prop_map(Op::Truncate),
        1 => Just(Op::Clear),
        2 => index.prop_map(Op::Get),
        1 => Just(Op::Last),
    ]
}

/// Applies `op` to the model.
fn apply_to_model(model: &mut Vec<i64>, op: &Op) -> Outcome {
    let len = model.len() as u64;
    let out = |index: u64| Outcome::OutOfRange(index, len);
    match *op {
        Op::Push(v) => {
            model.push(v);
            Outcome::Done
        }
        Op::Set(i, v) if i < len => {
            model[i as usize] = v;
            Outcome::Done
        }
        Op::Insert(i, v) if i <= len => {
            model.insert(i as usize, v);
            Outcome::Done
        }
        Op::Remove(i) if i < len => Outcome::Item(Some(model.remove(i as usize))),
        Op::SwapRemove(i) if i < len => Outcome::Item(Some(model.swap_remove(i as usize))),
        Op::Set(i, _) | Op::Insert(i, _) | Op::Remove(i) | Op::SwapRemove(i) => out(i),
        Op::Pop => Outcome::Item(model.pop()),
        Op::Truncate(n) => {
            model.truncate(n as usize);
            Outcome::Done
        }
        Op::Clear => {
            model.clear();
            Outcome::Done
        }
        Op::Get(i) => Outcome::Item(model.get(i as usize).copied()),
        Op::Last => Outcome::Item(model.last().copied()),
    }
}

/// Applies `op` to the list.
fn apply_to_list(list: &SharedList<i64>, op: &Op) -> Outcome {
    let result = match *op {
        Op::Push(v) => list.push(&v).map(|()| Outcome::Done),
        Op::Set(i, v) => list.set(i, &v).map(|()| Outcome::Done),
        Op::Insert(i, v) => list.insert(i, &v).map(|()| Outcome::Done),
        Op::Remove(i) => list.remove(i).map(|v| Outcome::Item(Some(v))),
        Op::SwapRemove(i) => list.swap_remove(i).map(|v| Outcome::Item(Some(v))),
        Op::Pop => list.pop().map(Outcome::Item),
        Op::Truncate(n) => list.truncate(n).map(|()| Outcome::Done),
        Op::Clear => list.clear().map(|()| Outcome::Done),
        Op::Get(i) => list.get(i).map(Outcome::Item),
        Op::Last => list.last().map(Outcome::Item),
    };
    match result {
        Ok(outcome) => outcome,
        Err(Error::IndexOutOfRange { index, len, .. }) => Outcome::OutOfRange(index, len),
        Err(err) => panic!("{op:?} failed: {err}"),
    }
}

/// One worker: applies its operations in order, each under the lock, and records it in the
/// log (`(worker, step, outcome)`) before letting go, so the log's order is the order they
/// were applied in.
/// What a worker of the property test gets: the list, the log, the lock, its number and its
/// operations.
type Plan = (
    SharedList<i64>,
    SharedList<(u32, u32, Outcome)>,
    Lock,
    u32,
    Vec<Op>,
);

fn apply_logged((list, log, lock, worker, ops): Plan) {
    for (step, op) in ops.iter().enumerate() {
        let _held = lock.lock().expect("lock");
        let outcome = apply_to_list(&list, op);
        log.push(&(worker, step as u32, outcome)).expect("log");
    }
}

fn random_operations_from_several_workers_match_a_vec_replayed_in_their_order(mode: Mode) {
    let cases = if matches!(mode, Mode::Thread) { 24 } else { 8 };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let workers = proptest::collection::vec(proptest::collection::vec(op(), 0..40), 1..4);
    let initial = proptest::collection::vec(any::<i64>(), 0..10);
    runner
        .run(
            &(initial, workers, 0..3usize),
            |(initial, plans, rounds)| {
                let list = SharedList::<i64>::new().expect("create");
                let log = SharedList::<(u32, u32, Outcome)>::new().expect("create the log");
                let lock = Lock::new().expect("create the lock");
                list.extend(&initial).expect("extend");
                let mut model = initial.clone();
                // Several rounds of the same plans: the model is compared after each join.
                for round in 0..=rounds {
                    log.clear().expect("clear the log");
                    let mut running: Vec<_> = plans
                        .iter()
                        .enumerate()
                        .map(|(worker, ops)| {
                            let mut w = Worker::new(
                                mode,
                                apply_logged,
                                (
                                    list.clone(),
                                    log.clone(),
                                    lock.clone(),
                                    worker as u32,
                                    ops.clone(),
                                ),
                            );
                            w.start().expect("start a worker");
                            w
                        })
                        .collect();
                    for worker in &mut running {
                        worker.join().expect("a worker");
                    }
                    let entries = log.to_vec().expect("read the log");
                    let mut next = vec![0u32; plans.len()];
                    for (worker, step, outcome) in entries {
                        let w = worker as usize;
                        prop_assert_eq!(step, next[w], "worker {}'s steps out of order", worker);
                        next[w] += 1;
                        let expected = apply_to_model(&mut model, &plans[w][step as usize]);
                        prop_assert_eq!(
                            outcome,
                            expected,
                            "round {}, worker {} step {}",
                            round,
                            worker,
                            step
                        );
                    }
                    let planned: Vec<u32> = plans.iter().map(|ops| ops.len() as u32).collect();
                    prop_assert_eq!(next, planned, "every step was logged once");
                    prop_assert_eq!(list.to_vec().expect("to_vec"), model.clone());
                    assert_consistent(&list, &format!("{mode:?}, round {round}"));
                }
                for name in [list.name().as_str(), log.name().as_str()] {
                    let _ = memspace::Segment::remove(name);
                }
                let _ = lock.unlink();
                Ok(())
            },
        )
        .unwrap_or_else(|failure| panic!("{mode:?}: {failure}"));
}

memspace_testkit::per_mode! {
    random_operations_from_several_workers_match_a_vec_replayed_in_their_order: thread, fork, spawn;
}

// ---------------------------------------------------------------------------------------------
// Changes without a lock: the list's own atomicity

const CHURNERS: u32 = 3;
const CHURN_STEPS: u64 = 1500;

/// Pushes, inserts, pops, removes and reads at random (values unique to this worker and step);
/// returns what it added and what it took out. Indexes come from a `len` that other workers
/// may have changed meanwhile: an out-of-range error is then a right answer.
fn churn((list, worker, seed): (SharedList<u64>, u32, u64)) -> (Vec<u64>, Vec<u64>) {
    let mut rng = Rng::new(seed ^ u64::from(worker));
    let (mut added, mut taken) = (Vec::new(), Vec::new());
    for step in 0..CHURN_STEPS {
        let value = (u64::from(worker) << 32) | step;
        let len = list.len().expect("len");
        let index = rng.below(len + 1);
        let result = match rng.below(7) {
            0 | 1 => list.push(&value).map(|()| added.push(value)),
            2 => list.insert(index, &value).map(|()| added.push(value)),
            3 => list.pop().map(|item| taken.extend(item)),
            4 => list.remove(index).map(|item| taken.push(item)),
            5 => list.swap_remove(index).map(|item| taken.push(item)),
            _ => list.get(index).map(drop),
        };
        match result {
            Ok(()) | Err(Error::IndexOutOfRange { .. }) => {}
            Err(err) => panic!("worker {worker} step {step}: {err}"),
        }
    }
    (added, taken)
}

/// Reads snapshots until `stop`: each must hold no value twice (an entry moved halfway would
/// show one twice). Returns how many it checked.
fn watch((list, stop): (SharedList<u64>, Event)) -> u64 {
    let mut snapshots = 0;
    while !stop.is_set().expect("is_set") {
        let items = list.to_vec().expect("a reader never fails");
        let mut seen = std::collections::HashSet::new();
        for item in &items {
            assert!(
                seen.insert(*item),
                "a snapshot of {} items holds {item:#x} twice",
                items.len()
            );
        }
        list.last().expect("a reader never fails");
        snapshots += 1;
    }
    snapshots
}

fn workers_changing_one_list_without_a_lock_lose_duplicate_and_tear_nothing(mode: Mode) {
    let list = SharedList::<u64>::new().expect("create");
    let _removal = Removal::of(list.name());
    // Initial items carry values no worker uses.
    // Many, so that moving the entries after an insert or a remove takes a while: a reader
    // that did not check the sequence word would catch one half done.
    let initial: Vec<u64> = (0..3000).map(|i| (1 << 40) + i).collect();
    list.extend(&initial).expect("extend");
    let stop = Event::new().expect("create the stop flag");
    let mut reader = Worker::new(mode, watch, (list.clone(), stop.clone()));
    reader.start().expect("start the reader");
    let seed = memspace_testkit::rng::seed_from_env("MEMSPACE_CHURN_SEED");
    let mut workers: Vec<_> = (0..CHURNERS)
        .map(|worker| {
            let mut w = Worker::new(mode, churn, (list.clone(), worker, seed));
            w.start().expect("start a worker");
            w
        })
        .collect();
    let mut count: BTreeMap<u64, i64> = initial.iter().map(|&value| (value, 1)).collect();
    for worker in &mut workers {
        let (added, taken) = worker.join().expect("a worker");
        for value in added {
            *count.entry(value).or_default() += 1;
        }
        for value in taken {
            *count.entry(value).or_default() -= 1;
        }
    }
    stop.set().expect("stop the reader");
    let snapshots = reader.join().expect("the reader");
    eprintln!("{mode:?}: the reader checked {snapshots} snapshots");
    // What is left: every value added (or there at the start) and not taken, once.
    for value in list.to_vec().expect("to_vec") {
        *count.entry(value).or_default() -= 1;
    }
    for (value, n) in count {
        assert_eq!(
            n, 0,
            "seed {seed}: {value:#x} was added {n} times more than it was taken or is left"
        );
    }
    assert_consistent(&list, &format!("{mode:?}"));
}

memspace_testkit::per_mode! {
    workers_changing_one_list_without_a_lock_lose_duplicate_and_tear_nothing: thread, fork, spawn;
}
