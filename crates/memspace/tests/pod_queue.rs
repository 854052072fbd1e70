//! `PodQueue`: order through two handles and many laps of a small ring, full and empty,
//! timeouts and close, items of odd sizes, types and damaged segments refused with errors,
//! producer and consumer processes passing every item exactly once, real SIGKILLs at every
//! failpoint of a put and a get, and producers and consumers killed at random while items flow.
//!
//! Events are ordered through shared memory (events, counters in segments, `/proc` states of
//! the children), never by sleeping; no test asserts how long anything took.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use memspace::collections::{PodQueue, QueueError, SharedVec, Value};
use memspace::{Error, OpenError, inspect};
use memspace_testkit::rng::seed_from_env;
use memspace_testkit::{Parent, Removal, Rng, Running, Watchdog, roles};

/// The queue a child in a role works on.
const QUEUE: &str = "MEMSPACE_POD_QUEUE_TEST_QUEUE";
/// What a child in a role does.
const SCRIPT: &str = "MEMSPACE_POD_QUEUE_TEST_SCRIPT";

/// Where the queue's capacity word lies in its segment file (the kind area's first word).
const CAPACITY_WORD: u64 = 2304;
/// Where its slots start: the data area.
const FIRST_SLOT: u64 = 8192;

fn assert_consistent<T>(queue: &PodQueue<T>, context: &str) {
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{context}: {report:#?}");
}

fn drain(queue: &PodQueue<u64>) -> Vec<u64> {
    let mut items = Vec::new();
    loop {
        match queue.try_get() {
            Ok(item) => items.push(item),
            Err(QueueError::Empty { .. }) => return items,
            Err(err) => panic!("drain: {err}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Behaviour

#[test]
fn items_come_out_in_order_through_two_handles_and_many_laps() {
    let seed = seed_from_env("MEMSPACE_POD_QUEUE_SEED");
    let name = Removal::fresh("podq-model");
    let first = PodQueue::<u64>::create(name.name(), 6).expect("create");
    assert_eq!(first.capacity(), 8, "rounded up to a power of two");
    let second = PodQueue::<u64>::open(name.name()).expect("open");
    let mut model = std::collections::VecDeque::new();
    let mut rng = Rng::new(seed);
    let mut next = 0u64;
    for step in 0..20_000u64 {
        let queue = if rng.below(2) == 0 { &first } else { &second };
        let context = format!("seed {seed}, step {step}");
        match rng.below(10) {
            0..=3 => match queue.try_put(next) {
                Ok(()) => {
                    model.push_back(next);
                    next += 1;
                }
                Err(QueueError::Full { capacity, .. }) => {
                    assert_eq!((model.len(), capacity), (8, 8), "{context}");
                }
                Err(err) => panic!("{context}: {err}"),
            },
            4 => {
                let room = 8 - model.len();
                let batch: Vec<u64> = (next..next + rng.below(room as u64 + 1)).collect();
                queue.put_many(&batch).expect("put_many");
                next += batch.len() as u64;
                model.extend(batch);
            }
            5..=7 => match queue.try_get() {
                Ok(item) => assert_eq!(Some(item), model.pop_front(), "{context}"),
                Err(QueueError::Empty { .. }) => assert!(model.is_empty(), "{context}"),
                Err(err) => panic!("{context}: {err}"),
            },
            _ => {
                let max = rng.below(10) as usize;
                match queue.try_get_many(max) {
                    Ok(items) => {
                        // Every ready item up to `max`, in order.
                        let take = max.min(model.len());
                        let expected: Vec<u64> = model.drain(..take).collect();
                        assert_eq!(items, expected, "{context}");
                    }
                    Err(QueueError::Empty { .. }) => assert!(model.is_empty(), "{context}"),
                    Err(err) => panic!("{context}: {err}"),
                }
            }
        }
        assert_eq!(queue.len(), model.len() as u64, "{context}");
        if step % 997 == 0 {
            assert_consistent(queue, &context);
        }
    }
    assert_eq!(drain(&first), Vec::from(model), "seed {seed}: at the end");
    assert!(second.is_empty());
    assert_consistent(&second, "at the end");
}

#[test]
fn items_of_odd_sizes_come_back_whole() {
    let name = Removal::fresh("podq-odd");
    let bytes = PodQueue::<[u8; 3]>::create(name.name(), 16).expect("create");
    for i in 0..100u8 {
        bytes.put([i, !i, 7]).expect("put");
        assert_eq!(bytes.get().expect("get"), [i, !i, 7]);
    }
    let records = PodQueue::<[u64; 5]>::new(4).expect("new");
    records
        .put_many(&[[1; 5], [2; 5], [3; 5]])
        .expect("put_many");
    assert_eq!(
        records.get_many(10).expect("get_many"),
        vec![[1; 5], [2; 5], [3; 5]]
    );
    assert_consistent(&bytes, "odd sizes");
}

#[test]
fn timeouts_close_and_wake_ups() {
    let _dog = memspace_testkit::start_test();
    let queue = PodQueue::<u64>::new(2).expect("new");
    let waited = Duration::from_millis(20);
    assert!(matches!(
        queue.get_timeout(waited),
        Err(QueueError::Timeout { waited: w, .. }) if w == waited
    ));
    queue.put_many(&[1, 2]).expect("fill");
    assert!(matches!(
        queue.try_put(3),
        Err(QueueError::Full { capacity: 2, .. })
    ));
    assert!(matches!(
        queue.put_timeout(3, waited),
        Err(QueueError::Timeout { .. })
    ));
    assert_eq!(queue.get_many(0).expect("nothing"), Vec::<u64>::new());

    // A put waiting for room is woken by a get in another thread, and a get waiting for an
    // item by a put.
    std::thread::scope(|scope| {
        let putter = scope.spawn(|| queue.put(3));
        assert_eq!(queue.get().expect("get"), 1);
        putter.join().expect("putter").expect("put");
        assert_eq!(queue.get_many(10).expect("get_many"), vec![2, 3]);
        let getter = scope.spawn(|| queue.get());
        queue.put(4).expect("put");
        assert_eq!(getter.join().expect("getter").expect("get"), 4);
    });

    // Close wakes a waiting get; items put before are still taken, then gets fail.
    queue.put(5).expect("put");
    std::thread::scope(|scope| {
        let putter = scope.spawn(|| {
            queue.put(6).expect("room for one");
            queue.put(7)
        });
        while queue.len() < 2 {
            std::thread::yield_now();
        }
        queue.close().expect("close");
        assert!(matches!(
            putter.join().expect("putter"),
            Err(QueueError::Closed { .. })
        ));
    });
    assert!(queue.is_closed());
    assert!(matches!(queue.put(8), Err(QueueError::Closed { .. })));
    assert_eq!(queue.get_many(10).expect("what was put"), vec![5, 6]);
    assert!(matches!(queue.get(), Err(QueueError::Closed { .. })));
    let empty = PodQueue::<u64>::new(2).expect("new");
    std::thread::scope(|scope| {
        let getter = scope.spawn(|| empty.get());
        while !getter.is_finished() {
            empty.close().expect("close");
            std::thread::yield_now();
        }
        assert!(matches!(
            getter.join().expect("getter"),
            Err(QueueError::Closed { .. })
        ));
    });
}

#[test]
fn a_queue_opened_with_another_type_or_as_another_kind_is_refused() {
    let name = Removal::fresh("podq-types");
    PodQueue::<u64>::create(name.name(), 8).expect("create");
    assert!(matches!(
        PodQueue::<u32>::open(name.name()),
        Err(Error::Open(OpenError::TypeMismatch { .. }))
    ));
    assert!(matches!(
        PodQueue::<[u8; 8]>::open(name.name()),
        Err(Error::Open(OpenError::TypeMismatch { .. }))
    ));
    assert!(matches!(
        memspace::collections::Queue::<u64>::open(name.name()),
        Err(Error::Open(OpenError::WrongKind { .. }))
    ));
    assert!(matches!(
        PodQueue::<u64>::create(name.name(), 8),
        Err(Error::Open(OpenError::AlreadyExists { .. }))
    ));
    assert!(matches!(
        PodQueue::<u64>::new(1 << 40),
        Err(Error::Full { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Damage

fn write_at(name: &Removal, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    name.file()
        .file()
        .write_all_at(bytes, at)
        .expect("write into the segment file");
}

#[test]
fn a_damaged_capacity_is_refused_at_open() {
    let name = Removal::fresh("podq-capacity");
    PodQueue::<u64>::create(name.name(), 8).expect("create");
    // Not a power of two; far past the segment; zero.
    for word in [6u64, 1 << 30, 0] {
        write_at(&name, CAPACITY_WORD, &word.to_le_bytes());
        let open = PodQueue::<u64>::open(name.name()).expect_err("a damaged capacity");
        assert!(matches!(open, Error::Corrupt { .. }), "{word}: {open:?}");
        let segment = inspect::observe(name.name()).expect("observe");
        assert!(!inspect::verify(&segment).is_consistent(), "{word}");
    }
}

#[test]
fn slot_states_no_put_or_get_stores_are_damage_not_a_panic_or_a_hang() {
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("podq-states");
    let queue = PodQueue::<u64>::create(name.name(), 4).expect("create");
    queue.put(1).expect("put");
    // A claim without an owner; a ready slot naming one; a lap far ahead; the lap before,
    // free.
    let lap = |lap: u64| lap << 24;
    for word in [1u64, 2 | (5 << 2), lap(9) | 2, lap((1 << 40) - 1)] {
        write_at(&name, FIRST_SLOT, &word.to_le_bytes());
        let get = queue
            .get_timeout(Duration::from_secs(5))
            .expect_err("damage");
        assert!(
            matches!(get, QueueError::Other(Error::Corrupt { .. })),
            "{word:#x}: {get:?}"
        );
        assert!(
            !inspect::verify(queue.segment().expect("shm")).is_consistent(),
            "{word:#x}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Puts `n` items, `batch` at a time (0: one, then batches of 2, 3 and 4, in turn).
fn produce((queue, producer, n, batch): (PodQueue<u64>, u64, u64, usize)) -> u64 {
    let items: Vec<u64> = (0..n).map(|i| (producer << 32) | i).collect();
    let mut rest = items.as_slice();
    let mut round = 0;
    while !rest.is_empty() {
        let size = if batch == 0 { round % 4 + 1 } else { batch };
        let (chunk, after) = rest.split_at(size.min(rest.len()));
        if size == 1 {
            queue.put(chunk[0]).expect("put");
        } else {
            queue.put_many(chunk).expect("put_many");
        }
        rest = after;
        round += 1;
    }
    n
}

/// Takes items until the queue is closed, `batch` at most at a time (0: one, then up to 2, 3
/// and 4, in turn).
fn consume((queue, batch): (PodQueue<u64>, usize)) -> Vec<u64> {
    let mut items = Vec::new();
    let mut round = 0;
    loop {
        let size = if batch == 0 { round % 4 + 1 } else { batch };
        round += 1;
        let got = if size == 1 {
            queue.get().map(|item| vec![item])
        } else {
            queue.get_many(size)
        };
        match got {
            Ok(got) => items.extend(got),
            Err(QueueError::Closed { .. }) => return items,
            Err(err) => panic!("get: {err}"),
        }
    }
}

/// Checks that no item of `received` (each consumer's items, in the order it took them) came
/// twice, and that each consumer got each producer's items in the order they were put;
/// returns every item received.
fn once_and_in_order(received: &[Vec<u64>], context: &str) -> BTreeSet<u64> {
    let mut received_items = BTreeSet::new();
    for items in received {
        let mut last: BTreeMap<u64, u64> = BTreeMap::new();
        for &item in items {
            assert!(
                received_items.insert(item),
                "{context}: item {item:#x} came twice"
            );
            let (producer, index) = (item >> 32, item & u64::from(u32::MAX));
            if let Some(&before) = last.get(&producer) {
                assert!(
                    before < index,
                    "{context}: producer {producer}'s items out of order"
                );
            }
            last.insert(producer, index);
        }
    }
    received_items
}

#[test]
fn producer_and_consumer_processes_pass_every_item_once_and_in_order() {
    let _dog = memspace_testkit::start_test();
    // A small ring, so that puts wait for room and gets for items, asleep and woken. Batch 0:
    // single items and batches mixed, so that the gets of one item (which take a path of
    // their own where the item is ready) and of several meet at the same slots.
    for (batch, capacity) in [(1, 16), (7, 64), (0, 4)] {
        let queue = PodQueue::<u64>::new(capacity).expect("new");
        let n = 60_000;
        let mut consumers: Vec<_> = (0..2)
            .map(|_| Running::spawn(consume, (queue.clone(), batch)))
            .collect();
        let mut producers: Vec<_> = (0..3)
            .map(|producer| Running::spawn(produce, (queue.clone(), producer, n, batch)))
            .collect();
        let sent: Vec<u64> = producers
            .iter_mut()
            .map(|producer| producer.join().expect("a producer"))
            .collect();
        queue.close().expect("close");
        let received: Vec<Vec<u64>> = consumers
            .iter_mut()
            .map(|consumer| consumer.join().expect("a consumer"))
            .collect();
        let context = if batch == 0 {
            "single items and batches of 2 to 4, mixed".to_owned()
        } else {
            format!("batches of {batch}")
        };
        let received = once_and_in_order(&received, &context);
        assert_eq!(
            received.len() as u64,
            sent.iter().sum::<u64>(),
            "{context}: items lost"
        );
        assert_consistent(&queue, "at the end");
    }
}

// ---------------------------------------------------------------------------------------------
// Kills at failpoints

/// A child's script: `put` puts 7; `put_many` puts 7, 8 and 9 in one call; `get` takes one
/// item; `get_many` takes up to two. Each child stops at its failpoint and is killed there.
fn run_script(queue: &PodQueue<u64>, script: &str) {
    match script {
        "put" => queue.put(7).expect("put"),
        "put_many" => queue.put_many(&[7, 8, 9]).expect("put_many"),
        "get" => drop(queue.get().expect("get")),
        "get_many" => drop(queue.get_many(2).expect("get_many")),
        other => panic!("no script {other}"),
    }
}

fn child_role() -> bool {
    if roles::role().as_deref() != Some("script") {
        return false;
    }
    let queue = PodQueue::<u64>::open(&std::env::var(QUEUE).expect("queue name")).expect("open");
    run_script(&queue, &std::env::var(SCRIPT).expect("script"));
    true
}

/// What a test with kills at failpoints starts from: a queue of 8 slots holding `items` (the
/// test's watchdog kept beside it); `None` in a child, whose script has run.
fn queue_for_kills(tag: &str, items: &[u64]) -> Option<(Watchdog, Removal, PodQueue<u64>)> {
    if child_role() {
        return None;
    }
    let dog = memspace_testkit::start_test();
    let name = Removal::fresh(tag);
    let queue = PodQueue::<u64>::create(name.name(), 8).expect("create");
    queue.put_many(items).expect("put");
    Some((dog, name, queue))
}

/// Runs `script` in a child against `queue` until it stops at `point`, and kills it there.
fn kill_child_at(queue: &Removal, point: &str, script: &str) {
    let mut child = roles::child_in_role(
        "script",
        &[
            (QUEUE, queue.name()),
            (SCRIPT, script),
            ("MEMSPACE_FAILPOINT", point),
        ],
    );
    child.wait_until_stopped(point);
    child.kill();
}

/// Which side meets the dead call's slot first after the kill.
#[derive(Debug, Clone, Copy)]
enum First {
    Put,
    Get,
}

/// A queue holding 1 and 2; a child killed at `point` in `script`; then this process puts 10
/// (or first takes what is there, as `first` says) and takes everything: `expected` before 10.
fn kill_at(point: &str, script: &str, first: First, expected: &[u64]) {
    let Some((_dog, name, queue)) = queue_for_kills("podq-kill", &[1, 2]) else {
        return;
    };
    kill_child_at(&name, point, script);
    let context = format!("killed at {point} in `{script}`, {first:?} first");
    let mut got = Vec::new();
    if let First::Get = first {
        // Everything before the dead call's slot, then (for a dead put) nothing: its
        // position is skipped once a get finds its claimant dead.
        got.extend(drain(&queue));
    }
    queue.put(10).expect("a put after the kill");
    loop {
        let item = queue
            .get_timeout(Duration::from_secs(30))
            .unwrap_or_else(|err| panic!("{context}: {err}"));
        if item == 10 {
            break;
        }
        got.push(item);
    }
    assert_eq!(got, expected, "{context}");
    assert!(queue.is_empty(), "{context}");
    assert_consistent(&queue, &context);
    // The ring goes on: more laps through every slot.
    for i in 0..40 {
        queue.put(i).expect("put");
        assert_eq!(queue.get().expect("get"), i, "{context}");
    }
}

macro_rules! kill_tests {
    ($($test:ident: $point:literal in $script:literal, $first:ident first, leaves $expected:expr;)*) => {$(
        #[test]
        fn $test() {
            kill_at($point, $script, First::$first, &$expected);
        }
    )*};
}

kill_tests! {
    a_put_killed_after_claiming_its_slot_is_skipped_by_the_next_put:
        "pod_queue.claimed" in "put", Put first, leaves [1, 2];
    a_put_killed_after_claiming_its_slot_is_skipped_by_the_next_get:
        "pod_queue.claimed" in "put", Get first, leaves [1, 2];
    a_put_killed_after_writing_its_item_is_skipped:
        "pod_queue.written" in "put", Get first, leaves [1, 2];
    a_put_killed_after_writing_its_item_is_skipped_with_the_next_put_first:
        "pod_queue.written" in "put", Put first, leaves [1, 2];
    a_put_killed_after_publishing_its_item_keeps_it:
        "pod_queue.published" in "put", Get first, leaves [1, 2, 7];
    a_batch_killed_before_its_first_item_was_published_leaves_none:
        "pod_queue.written" in "put_many", Put first, leaves [1, 2];
    a_batch_killed_after_publishing_keeps_it_whole:
        "pod_queue.published" in "put_many", Get first, leaves [1, 2, 7, 8, 9];
    a_get_killed_after_claiming_its_item_gives_it_to_the_next_get:
        "pod_queue.claimed_to_read" in "get", Get first, leaves [1, 2];
    a_get_killed_after_copying_its_item_gives_it_to_the_next_get:
        "pod_queue.read" in "get", Get first, leaves [1, 2];
    a_get_killed_after_freeing_its_slot_took_the_item:
        "pod_queue.freed" in "get", Get first, leaves [2];
    a_batch_get_killed_after_claiming_gives_both_items_to_the_next_gets:
        "pod_queue.claimed_to_read" in "get_many", Get first, leaves [1, 2];
    a_batch_get_killed_after_freeing_took_both_items:
        "pod_queue.freed" in "get_many", Put first, leaves [];
}

/// A get killed holding an item, then the get that took the item over killed too: a third
/// get still returns the item.
#[test]
fn a_get_killed_while_taking_over_a_dead_gets_item_leaves_it_to_the_next() {
    let Some((_dog, name, queue)) = queue_for_kills("podq-takeover", &[1, 2]) else {
        return;
    };
    kill_child_at(&name, "pod_queue.read", "get");
    kill_child_at(&name, "pod_queue.taken_over", "get");
    assert_eq!(drain(&queue), vec![1, 2]);
    assert_consistent(&queue, "after two kills");
}

/// A batch get killed after claiming two items (the second by a store, not a swap): the next
/// batch takes the first over and stops at the second, still claimed by the dead get, which
/// the batch after takes over, with the items behind it.
#[test]
fn batches_after_a_dead_batch_get_take_its_claims_over_one_at_a_time() {
    let Some((_dog, name, queue)) = queue_for_kills("podq-batch-takeover", &[1, 2, 3, 4]) else {
        return;
    };
    kill_child_at(&name, "pod_queue.claimed_to_read", "get_many");
    assert_eq!(queue.get_many(8).expect("the first taken over"), vec![1]);
    assert_consistent(&queue, "after the first takeover");
    assert_eq!(queue.get_many(8).expect("the rest"), vec![2, 3, 4]);
    assert!(queue.is_empty());
    assert_consistent(&queue, "after the second takeover");
}

/// A put into a closed queue fails as closed even where its slot is free.
#[test]
fn a_put_into_a_closed_queue_with_room_fails_as_closed() {
    let _dog = memspace_testkit::start_test();
    let queue = PodQueue::<u64>::new(4).expect("new");
    queue.put(1).expect("put");
    queue.close().expect("close");
    for put in [queue.put(2), queue.try_put(2), queue.put_many(&[2, 3])] {
        assert!(matches!(put, Err(QueueError::Closed { .. })), "{put:?}");
    }
    assert_eq!(queue.get_many(8).expect("what was put"), vec![1]);
}

/// A dead get's claim that no get has met yet is reported by `inspect` as a note, not damage.
#[test]
fn inspect_notes_a_dead_claim_without_calling_it_damage() {
    let Some((_dog, name, queue)) = queue_for_kills("podq-inspect", &[1]) else {
        return;
    };
    kill_child_at(&name, "pod_queue.read", "get");
    let report = inspect::verify(queue.segment().expect("shm"));
    assert!(report.is_consistent(), "{report:#?}");
    assert!(
        report
            .notes
            .iter()
            .any(|note| note.contains("takes the item over")),
        "{report:#?}"
    );
    assert_eq!(queue.get().expect("taken over"), 1);
}

// ---------------------------------------------------------------------------------------------
// Kills at random

/// A producer that puts its items `(id << 32) | i` one at a time, counting each put that
/// returned in `sent`, until killed or `n` are put.
fn endless_producer((queue, id, sent, n): (PodQueue<u64>, u64, Value<u64>, u64)) -> u64 {
    let parent = Parent::here();
    for i in 0..n {
        queue.put((id << 32) | i).expect("put");
        sent.set(i + 1).expect("count");
        if i % 1024 == 0 {
            parent.exit_if_gone();
        }
    }
    n
}

/// A consumer that takes items one at a time (or a few, with `batch`), recording each in
/// `log` after it returned, until the queue is closed or it is killed.
fn logging_consumer((queue, log, batch): (PodQueue<u64>, SharedVec<u64>, usize)) -> u64 {
    let parent = Parent::here();
    let mut taken = 0;
    loop {
        let got = if batch == 1 {
            queue.get().map(|item| vec![item])
        } else {
            queue.get_many(batch)
        };
        match got {
            Ok(items) => {
                for item in items {
                    log.push(item).expect("log");
                    taken += 1;
                }
            }
            Err(QueueError::Closed { .. }) => return taken,
            Err(err) => panic!("get: {err}"),
        }
        if taken % 1024 == 0 {
            parent.exit_if_gone();
        }
    }
}

type Producer = Running<(PodQueue<u64>, u64, Value<u64>, u64), u64>;
type Consumer = Running<(PodQueue<u64>, SharedVec<u64>, usize), u64>;

/// Producers and consumers are killed with SIGKILL at random moments while items flow, and
/// replaced. No item comes out twice or out of its producer's order; every item whose put
/// returned comes out, except the ones a killed consumer had taken and not yet logged (at
/// most its batch); the queue never hangs.
#[test]
fn producers_and_consumers_killed_at_random_lose_and_repeat_nothing() {
    let _dog = memspace_testkit::start_test();
    let seed = seed_from_env("MEMSPACE_POD_QUEUE_SEED");
    let mut rng = Rng::new(seed);
    let queue = PodQueue::<u64>::new(32).expect("new");
    let batch = 3;
    let mut producer_counts = Vec::new();
    let mut logs = Vec::new();
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    let start_producer = |producers: &mut Vec<Producer>, counts: &mut Vec<Value<u64>>| {
        let sent = Value::new(0u64).expect("counter");
        let id = counts.len() as u64;
        counts.push(sent.clone());
        producers.push(Running::spawn(
            endless_producer,
            (queue.clone(), id, sent, 1 << 30),
        ));
    };
    let start_consumer = |consumers: &mut Vec<Consumer>, logs: &mut Vec<SharedVec<u64>>| {
        let log = SharedVec::<u64>::new().expect("log");
        logs.push(log.clone());
        let take = if logs.len().is_multiple_of(2) {
            batch
        } else {
            1
        };
        consumers.push(Running::spawn(logging_consumer, (queue.clone(), log, take)));
    };
    for _ in 0..2 {
        start_producer(&mut producers, &mut producer_counts);
        start_consumer(&mut consumers, &mut logs);
    }
    let mut consumer_kills = 0;
    for round in 0..40 {
        // Let items flow: wait until the logs grew by a few hundred items.
        let logged = |logs: &[SharedVec<u64>]| -> u64 { logs.iter().map(SharedVec::len).sum() };
        let before = logged(&logs);
        let want = before + 200 + rng.below(2000);
        memspace_testkit::children::wait_until(&format!("round {round}: items flow"), || {
            logged(&logs) >= want
        });
        if rng.below(2) == 0 {
            let victim = rng.below(producers.len() as u64) as usize;
            producers[victim].kill();
            drop(producers.remove(victim));
            start_producer(&mut producers, &mut producer_counts);
        } else {
            let victim = rng.below(consumers.len() as u64) as usize;
            consumers[victim].kill();
            drop(consumers.remove(victim));
            consumer_kills += 1;
            start_consumer(&mut consumers, &mut logs);
        }
    }
    for producer in &producers {
        producer.kill();
    }
    drop(producers);
    // Let the consumers drain what is left, then close.
    memspace_testkit::children::wait_until("the queue drains", || queue.is_empty());
    queue.close().expect("close");
    for consumer in &mut consumers {
        consumer.join().expect("a consumer");
    }
    let context = format!("seed {seed}");
    let logged: Vec<Vec<u64>> = logs.iter().map(|log| log.to_vec().expect("log")).collect();
    let received = once_and_in_order(&logged, &context);
    let mut missing = 0;
    for (id, sent) in producer_counts.iter().enumerate() {
        let sent = sent.get().expect("count");
        let id = id as u64;
        missing += (0..sent)
            .filter(|i| !received.contains(&((id << 32) | i)))
            .count() as u64;
        // A producer killed after its put returned, before it counted it.
        let extra = received.range((id << 32) + sent..(id + 1) << 32).count();
        assert!(
            extra <= 1,
            "{context}: producer {id} put {extra} items past its count"
        );
    }
    assert!(
        missing <= consumer_kills * batch as u64,
        "{context}: {missing} items lost, {consumer_kills} consumers killed"
    );
    assert_consistent(&queue, &context);
}

// ---------------------------------------------------------------------------------------------
// Races and dead claims found in review

/// One `close()` wakes a get about to sleep on an empty queue, whenever it comes: the get
/// looks at `closed` again after it announced its sleep.
#[test]
fn a_single_close_wakes_a_get_about_to_sleep() {
    let _dog = memspace_testkit::start_test();
    for round in 0..5000u64 {
        let queue = PodQueue::<u64>::new(2).expect("new");
        let (tx, rx) = std::sync::mpsc::channel();
        let getter = {
            let queue = queue.clone();
            std::thread::spawn(move || tx.send(queue.get()).expect("send"))
        };
        // Close once, at a moment that moves from round to round through the get's spin.
        let until = std::time::Instant::now() + Duration::from_nanos(round % 250 * 200);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        queue.close().expect("close");
        let got = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("round {round}: a get slept through close()"));
        assert!(matches!(got, Err(QueueError::Closed { .. })), "{got:?}");
        getter.join().expect("getter");
    }
}

/// A put that returned `Ok` is never stranded by a close that a get had already reported
/// (the get saw the queue closed and empty): every item put is taken before `Closed`.
#[test]
fn no_put_succeeds_after_a_get_reported_the_queue_closed() {
    let _dog = memspace_testkit::start_test();
    let started = std::time::Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        rounds += 1;
        let queue = PodQueue::<u64>::new(64).expect("new");
        let (put, got) = std::thread::scope(|scope| {
            let producer = scope.spawn(|| {
                let mut put = 0u64;
                while queue.put(put).is_ok() {
                    put += 1;
                }
                put
            });
            let consumer = scope.spawn(|| {
                let mut got = 0u64;
                while queue.get().is_ok() {
                    got += 1;
                }
                got
            });
            let until = std::time::Instant::now() + Duration::from_micros(100 + rounds % 50 * 7);
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
            queue.close().expect("close");
            (
                producer.join().expect("producer"),
                consumer.join().expect("consumer"),
            )
        });
        assert_eq!(put, got, "round {rounds}: items put but never taken");
    }
}

/// A put waiting for room behind a slot that a dead put claimed (a ring of one slot) finds
/// the claimant dead and takes the slot; so does a get, with a put waiting meanwhile.
#[test]
fn a_put_waiting_behind_a_dead_put_takes_its_slot() {
    let Some((_dog, name, queue)) = queue_for_kills("podq-behind-dead", &[]) else {
        return;
    };
    drop(queue);
    let queue = PodQueue::<u64>::create(&format!("{}-1", name.name()), 1).expect("create");
    let one = Removal::of(&queue.name());
    kill_child_at(&one, "pod_queue.written", "put");
    queue
        .put_timeout(2, Duration::from_secs(30))
        .expect("the dead put's slot is skipped");
    assert_eq!(queue.get().expect("get"), 2);
    kill_child_at(&one, "pod_queue.written", "put");
    std::thread::scope(|scope| {
        let putter = scope.spawn(|| queue.put_timeout(3, Duration::from_secs(30)));
        assert_eq!(queue.get_timeout(Duration::from_secs(30)).expect("get"), 3);
        putter.join().expect("putter").expect("put");
    });
    assert_consistent(&queue, "after the skips");
}

/// `inspect` reads a queue whose get died after freeing its slot, before moving `head`, and
/// whose ring puts then filled, as consistent: the next get moves `head` on.
#[test]
fn verify_reads_a_ring_refilled_behind_a_get_killed_before_moving_head() {
    let Some((_dog, name, queue)) = queue_for_kills("podq-refilled", &[1]) else {
        return;
    };
    kill_child_at(&name, "pod_queue.freed", "get");
    for i in 2..=9 {
        queue
            .try_put(i)
            .expect("room: the slot of item 1 was freed");
    }
    assert_consistent(&queue, "a full ring behind a dead get");
    assert_eq!(drain(&queue), (2..=9).collect::<Vec<_>>());
}

/// A put stopped between its claim and its move of `tail` holds up no other put: the next
/// one moves `tail` past the claimed slot.
#[test]
fn a_put_stopped_after_its_claim_holds_up_no_other_put() {
    let Some((_dog, name, queue)) = queue_for_kills("podq-stopped-put", &[]) else {
        return;
    };
    let mut child = roles::child_in_role(
        "script",
        &[
            (QUEUE, name.name()),
            (SCRIPT, "put"),
            ("MEMSPACE_FAILPOINT", "pod_queue.claimed"),
        ],
    );
    child.wait_until_stopped("pod_queue.claimed");
    for i in 0..7 {
        queue.try_put(100 + i).expect("seven free slots");
    }
    assert!(matches!(queue.try_put(200), Err(QueueError::Full { .. })));
    child.resume();
    assert!(child.wait().success());
    let mut items = drain(&queue);
    assert_eq!(items.remove(0), 7, "the stopped put's slot comes first");
    assert_eq!(items, (100..107).collect::<Vec<_>>());
}

/// The states of the threads of process `pid` (field 3 of each `/proc/PID/task/TID/stat`).
fn thread_states(pid: u32) -> Vec<char> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| stat[stat.rfind(')')? + 2..].chars().next())
        .collect()
}

/// A put of a process whose main thread ended while another thread of it puts is not judged
/// dead: a get waits for the put (its process shows as a zombie in `/proc`, its thread lives),
/// and takes the item once the put goes on.
#[test]
fn a_put_of_a_process_whose_main_thread_ended_is_waited_for() {
    if roles::role().as_deref() == Some("leaderless") {
        let queue =
            PodQueue::<u64>::open(&std::env::var(QUEUE).expect("queue name")).expect("open");
        memspace_testkit::threads::end_the_main_thread();
        memspace_testkit::threads::wait_for_the_main_thread_to_end(None);
        queue.put(7).expect("put");
        return;
    }
    let Some((_dog, name, queue)) = queue_for_kills("podq-leaderless", &[]) else {
        return;
    };
    let child = roles::child_in_role(
        "leaderless",
        &[
            (QUEUE, name.name()),
            ("MEMSPACE_FAILPOINT", "pod_queue.written"),
        ],
    );
    let pid = child.pid();
    memspace_testkit::children::wait_until("the child's put stops at its failpoint", || {
        thread_states(pid).contains(&'T')
    });
    assert_eq!(
        memspace_testkit::procfs::process_state(pid),
        Some('Z'),
        "the child's main thread ended"
    );
    assert!(
        matches!(
            queue.get_timeout(Duration::from_millis(300)),
            Err(QueueError::Timeout { .. })
        ),
        "a get waits for the live put"
    );
    child.resume();
    assert_eq!(queue.get_timeout(Duration::from_secs(30)).expect("get"), 7);
    memspace_testkit::children::wait_until("the child ends", || child.has_ended());
    assert_consistent(&queue, "after the put");
}

/// Gets with timeouts too short to pause still look at a dead put's claim before they give
/// up: a consumer polling so gets past it.
#[test]
fn gets_with_short_timeouts_skip_a_dead_put() {
    let Some((_dog, name, queue)) = queue_for_kills("podq-short-timeouts", &[1]) else {
        return;
    };
    kill_child_at(&name, "pod_queue.written", "put");
    queue.put(9).expect("put");
    let mut got = Vec::new();
    for _ in 0..1000 {
        match queue.get_timeout(Duration::from_nanos(1)) {
            Ok(item) => got.push(item),
            Err(QueueError::Timeout { .. }) => {}
            Err(err) => panic!("{err}"),
        }
        if got.len() == 2 {
            break;
        }
    }
    assert_eq!(got, [1, 9]);
}
