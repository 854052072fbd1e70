//! `Queue`: bounded and unbounded, blocking and timed, many producers and consumers on threads
//! and on processes (fork and spawn), a model test against `VecDeque`, space that follows what
//! the queue holds, and real SIGKILLs: a consumer killed holding an item, a storm of random
//! kills of producers and consumers, and kills at every failpoint of put, receive, ack and nack.
//!
//! Events are ordered through shared memory (events, the queue itself, `/proc` states of the
//! children), never by sleeping; no test asserts how long anything took.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use memspace::collections::{Delivery, Queue, QueueError, SharedList};
use memspace::spawn::{JoinError, Mode, Process, StartMethod, Worker};
use memspace::sync::Event;
use memspace::{Error, inspect};
use memspace_testkit::rng::seed_from_env;
use memspace_testkit::{Removal, Rng, Watchdog, children, procfs, roles};
use proptest::prelude::*;
use serde::{Deserialize, Serialize, Serializer};

/// The queue a child in a role works on.
const QUEUE: &str = "MEMSPACE_QUEUE_TEST_QUEUE";

// ---------------------------------------------------------------------------------------------
// Harness

/// In a worker process: aborts it once the test process that started it is gone, so that a
/// failed or aborted test leaves no worker running (workers block or loop forever by design).
/// One watcher thread per process; in a thread worker it watches the test runner, harmlessly.
fn exit_with_parent() {
    static WATCHED: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    // Keyed by pid: a forked child inherits the flag of a parent that has a watcher, but not
    // the watcher thread itself.
    if WATCHED.swap(pid, Ordering::Relaxed) == pid {
        return;
    }
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            if std::os::unix::process::parent_id() != parent {
                eprintln!("worker {pid}: the test process is gone; aborting");
                std::process::abort();
            }
        }
    });
}

/// Waits until the single-threaded child `pid` sleeps in a futex wait: it is blocked in the
/// queue, not on its way there. (It cannot be waiting for the queue's lock: nobody holds it.)
fn wait_until_asleep_in_futex(pid: u32) {
    while !procfs::asleep_in_futex(pid) {
        assert!(
            !procfs::has_ended(pid),
            "child {pid} ended instead of blocking"
        );
        std::thread::yield_now();
    }
}

memspace_testkit::per_mode! {
    a_bounded_queue_refuses_a_seventh_item_until_a_consumer_drains_it: thread, fork, spawn;
    len_counts_exactly_the_ready_items_seen_from_every_mode: thread, fork, spawn;
    a_producer_joined_before_the_consumer_drains_does_not_deadlock: thread, fork, spawn;
    producers_and_consumers_exchange_every_item_exactly_once_in_order: thread, fork, spawn;
}

fn is_empty_error(result: Result<impl std::fmt::Debug, QueueError>, name: &str) {
    match result {
        Err(err @ QueueError::Empty { .. }) => assert!(err.to_string().contains(name), "{err}"),
        other => panic!("expected Empty, got {other:?}"),
    }
}

fn is_timeout_error(result: Result<impl std::fmt::Debug, QueueError>, timeout: Duration) {
    match result {
        Err(QueueError::Timeout { waited, .. }) => assert_eq!(waited, timeout),
        other => panic!("expected Timeout, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Bounds, timeouts, lengths (AT-Q-01, AT-Q-02, AT-Q-03, AT-Q-07)

fn drain((queue, count): (Queue<u32>, u32)) -> Vec<u32> {
    exit_with_parent();
    (0..count).map(|_| queue.get().expect("get")).collect()
}

fn a_bounded_queue_refuses_a_seventh_item_until_a_consumer_drains_it(mode: Mode) {
    let _dog = Watchdog::start();
    let name = Removal::fresh("bounded");
    let queue = Queue::<u32>::create_bounded(name.name(), 6).expect("create");
    assert_eq!(queue.capacity(), Some(6));
    for i in 0..6 {
        queue.put(&i).expect("put");
    }
    assert_eq!(queue.len().expect("len"), 6);
    match queue.try_put(&6) {
        Err(err @ QueueError::Full { capacity: 6, .. }) => {
            assert!(err.to_string().contains(name.name()), "{err}");
        }
        other => panic!("{mode:?}: expected Full, got {other:?}"),
    }
    let timeout = Duration::from_millis(30);
    is_timeout_error(queue.put_timeout(&6, timeout), timeout);
    assert_eq!(
        queue.len().expect("len"),
        6,
        "{mode:?}: a refused put changed the queue"
    );
    let mut consumer = Worker::new(mode, drain, (queue.clone(), 6));
    consumer.start().expect("start");
    assert_eq!(
        consumer.join().expect("join"),
        [0, 1, 2, 3, 4, 5],
        "{mode:?}"
    );
    assert!(queue.is_empty().expect("is_empty"));
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
    queue.try_put(&7).expect("room again");
}

#[test]
fn put_timeout_zero_on_a_full_queue_is_full_not_timeout() {
    let queue = Queue::<u8>::bounded(1).expect("queue");
    queue.put(&1).expect("put");
    assert!(matches!(
        queue.put_timeout(&2, Duration::ZERO),
        Err(QueueError::Full { capacity: 1, .. })
    ));
}

#[test]
fn an_empty_queue_reports_empty_at_once_and_timeout_after_waiting() {
    let _dog = Watchdog::start();
    let name = Removal::fresh("empty");
    let queue = Queue::<u32>::create(name.name()).expect("create");
    is_empty_error(queue.try_get(), name.name());
    is_empty_error(queue.try_receive(), name.name());
    is_empty_error(queue.get_timeout(Duration::ZERO), name.name());
    let timeout = Duration::from_millis(200);
    is_timeout_error(queue.get_timeout(timeout), timeout);
    is_timeout_error(queue.receive_timeout(timeout), timeout);
    let err = queue.get_timeout(timeout).expect_err("timeout");
    assert!(err.to_string().contains(name.name()), "{err}");
    // The queue is still usable afterwards.
    queue.put(&5).expect("put");
    assert_eq!(queue.get_timeout(timeout).expect("get"), 5);
}

fn put_range((queue, from, to): (Queue<u32>, u32, u32)) {
    exit_with_parent();
    for i in from..to {
        queue.put(&i).expect("put");
    }
}

fn get_count((queue, count): (Queue<u32>, u32)) -> u32 {
    exit_with_parent();
    (0..count).map(|_| queue.get().expect("get")).sum()
}

fn len_counts_exactly_the_ready_items_seen_from_every_mode(mode: Mode) {
    let _dog = Watchdog::start();
    let queue = Queue::<u32>::new().expect("queue");
    let mut producer = Worker::new(mode, put_range, (queue.clone(), 0, 1000));
    producer.start().expect("start");
    producer.join().expect("join");
    assert_eq!(queue.len().expect("len"), 1000, "{mode:?}");
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 1000);
    let mut consumer = Worker::new(mode, get_count, (queue.clone(), 10));
    consumer.start().expect("start");
    assert_eq!(consumer.join().expect("join"), (0..10).sum());
    assert_eq!(queue.len().expect("len"), 990, "{mode:?}");
    let held: Vec<_> = (0..3).map(|_| queue.receive().expect("receive")).collect();
    assert_eq!(
        (
            queue.len().expect("len"),
            queue.in_flight().expect("in_flight")
        ),
        (987, 3)
    );
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 990);
    let mut held = held.into_iter();
    drop(held.next());
    assert_eq!(
        (
            queue.len().expect("len"),
            queue.in_flight().expect("in_flight")
        ),
        (988, 2)
    );
    held.next().expect("held").ack().expect("ack");
    assert_eq!(
        (
            queue.len().expect("len"),
            queue.unacknowledged().expect("unacknowledged")
        ),
        (988, 989)
    );
    drop(held);
    assert_eq!(
        (
            queue.len().expect("len"),
            queue.unacknowledged().expect("unacknowledged")
        ),
        (989, 989)
    );
}

fn put_big_strings((queue, count): (Queue<String>, u32)) {
    exit_with_parent();
    for i in 0..count {
        queue
            .put(&format!("item {i:05} {}", "x".repeat(200)))
            .expect("put");
    }
}

fn a_producer_joined_before_the_consumer_drains_does_not_deadlock(mode: Mode) {
    let _dog = Watchdog::start();
    let queue = Queue::<String>::new().expect("queue");
    let mut producer = Worker::new(mode, put_big_strings, (queue.clone(), 5000));
    producer.start().expect("start");
    producer
        .join()
        .expect("the producer finished without a consumer");
    assert_eq!(queue.len().expect("len"), 5000, "{mode:?}");
    for i in 0..5000 {
        let item = queue.get().expect("get");
        assert!(
            item.starts_with(&format!("item {i:05} ")),
            "{mode:?}: {item}"
        );
    }
    assert!(queue.is_empty().expect("is_empty"));
}

// ---------------------------------------------------------------------------------------------
// Many producers, many consumers

type Tagged = Option<(u32, u32)>;
/// What a consumer took, and what it put back.
type Consumed = (Vec<(u32, u32)>, Vec<(u32, u32)>);

fn produce((queue, producer, count): (Queue<Tagged>, u32, u32)) {
    exit_with_parent();
    for seq in 0..count {
        queue.put(&Some((producer, seq))).expect("put");
    }
}

/// Takes items until a `None` sentinel; consumer 0 uses `get`, the others `receive` + `ack`,
/// and consumer 2 also puts every tenth item back once before taking it again. Returns the
/// items taken, and those put back.
fn consume((queue, consumer): (Queue<Tagged>, u32)) -> Consumed {
    exit_with_parent();
    let (mut got, mut put_back) = (Vec::new(), Vec::new());
    loop {
        let item = if consumer == 0 {
            queue.get().expect("get")
        } else {
            let delivery = queue.receive().expect("receive");
            if consumer == 2 && delivery.deliveries() == 1 && got.len() % 10 == 0 {
                if let Some(item) = *delivery.value() {
                    put_back.push(item);
                }
                delivery.nack().expect("nack");
                continue;
            }
            delivery.ack().expect("ack")
        };
        match item {
            Some(item) => got.push(item),
            None => return (got, put_back),
        }
    }
}

fn producers_and_consumers_exchange_every_item_exactly_once_in_order(mode: Mode) {
    const PRODUCERS: u32 = 4;
    const PER_PRODUCER: u32 = 5000;
    const CONSUMERS: u32 = 3;
    let _dog = Watchdog::start();
    let name = Removal::fresh("mpmc");
    let queue = Queue::<Tagged>::create_bounded(name.name(), 64).expect("create");
    let mut consumers: Vec<Worker<_, Consumed>> = (0..CONSUMERS)
        .map(|c| Worker::new(mode, consume, (queue.clone(), c)))
        .collect();
    let mut producers: Vec<Worker<_, ()>> = (0..PRODUCERS)
        .map(|p| Worker::new(mode, produce, (queue.clone(), p, PER_PRODUCER)))
        .collect();
    for worker in &mut consumers {
        worker.start().expect("start consumer");
    }
    for worker in &mut producers {
        worker.start().expect("start producer");
    }
    for worker in &mut producers {
        worker.join().expect("producer");
    }
    for _ in 0..CONSUMERS {
        queue.put(&None).expect("sentinel");
    }
    let results: Vec<_> = consumers
        .iter_mut()
        .map(|worker| worker.join().expect("consumer"))
        .collect();
    let put_back: HashSet<(u32, u32)> = results
        .iter()
        .flat_map(|(_, put_back)| put_back.iter().copied())
        .collect();
    assert!(!put_back.is_empty(), "{mode:?}: nothing was put back");
    let mut all = Vec::new();
    for (got, _) in results {
        // FIFO: each producer's items reach any one consumer in the order they were put
        // (an item put back may come later, to anyone).
        for producer in 0..PRODUCERS {
            let seqs: Vec<u32> = got
                .iter()
                .filter(|item| item.0 == producer && !put_back.contains(item))
                .map(|(_, seq)| *seq)
                .collect();
            assert!(
                seqs.is_sorted_by(|a, b| a < b),
                "{mode:?}: producer {producer}'s items out of order: {seqs:?}"
            );
        }
        all.extend(got);
    }
    assert_eq!(all.len(), (PRODUCERS * PER_PRODUCER) as usize, "{mode:?}");
    let distinct: HashSet<_> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "{mode:?}: an item arrived twice");
    assert!(queue.is_empty().expect("is_empty"));
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{mode:?}: {report:?}");
}

// ---------------------------------------------------------------------------------------------
// Blocking across processes

fn get_one<T: Serialize + serde::de::DeserializeOwned>((queue, started): (Queue<T>, Event)) -> T {
    exit_with_parent();
    started.set().expect("set");
    queue.get().expect("get")
}

#[test]
fn a_blocked_get_is_woken_by_a_put_from_another_process() {
    let _dog = memspace_testkit::start_test();
    let queue = Queue::<u64>::new().expect("queue");
    let started = Event::new().expect("event");
    let mut consumer = Process::new(get_one, (queue.clone(), started.clone()));
    consumer.start().expect("start");
    started.wait().expect("wait");
    wait_until_asleep_in_futex(consumer.pid().expect("pid"));
    queue.put(&42).expect("put");
    assert_eq!(consumer.join().expect("join"), 42);
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
}

/// Where the count of receivers asleep on the queue's `items` word lies (the high half, in
/// little-endian order, of `items`, the second word of the kind area's second line; see
/// "Untrusted input" below).
const ITEMS_SLEEPERS_OFFSET: u64 = KIND_AREA + 76;

/// The count of receivers asleep, read from the segment's file.
fn receivers_counted(name: &Removal) -> u32 {
    let bytes = name.file().read(ITEMS_SLEEPERS_OFFSET, 4);
    u32::from_le_bytes(bytes.try_into().expect("4 bytes"))
}

#[test]
fn a_put_that_wakes_the_sleeping_receivers_stops_counting_them_before_they_run() {
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("wake");
    let queue = Queue::<u64>::create(name.name()).expect("create");
    let started = Event::new().expect("event");
    let mut consumer = Process::new(get_one, (queue.clone(), started.clone()));
    consumer.start().expect("start");
    started.wait().expect("wait");
    let pid = consumer.pid().expect("pid");
    wait_until_asleep_in_futex(pid);
    assert_eq!(
        receivers_counted(&name),
        1,
        "the receiver asleep is counted"
    );
    // Stopped, the receiver runs nothing: whatever the count says after the put, the put
    // left it so.
    children::sigstop(pid);
    queue.put(&7).expect("put");
    assert_eq!(
        receivers_counted(&name),
        0,
        "the put stopped counting the receiver it woke: the puts after it make no wake-up \
         call while the receiver has not run"
    );
    queue.put(&8).expect("put");
    children::sigcont(pid);
    assert_eq!(consumer.join().expect("join"), 7);
    assert_eq!(queue.get().expect("get"), 8);
    assert_eq!(receivers_counted(&name), 0);
}

/// A process running [`get_one`] on a queue of strings.
type Receiver = Process<(Queue<String>, Event), String>;

/// Creates the queue `name`, starts a receiver process and waits until it sleeps on the empty
/// queue, then runs a child that puts in the role of `point` and kills it where it stopped.
fn a_receiver_asleep_and_a_put_killed_at(point: &str, name: &Removal) -> (Queue<String>, Receiver) {
    let queue = Queue::<String>::create(name.name()).expect("create");
    let started = Event::new().expect("event");
    let mut consumer = Process::new(get_one::<String>, (queue.clone(), started.clone()));
    consumer.start().expect("start");
    started.wait().expect("wait");
    wait_until_asleep_in_futex(consumer.pid().expect("pid"));
    kill_child_at(point, point, name);
    (queue, consumer)
}

#[test]
fn a_put_killed_after_it_uncounted_the_sleeping_receiver_leaves_its_wake_up_to_the_next_locker() {
    const POINT: &str = "queue.sleepers_uncounted";
    if let Some(point) = roles::role() {
        return child_role(&point);
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("uncounted");
    let (queue, mut consumer) = a_receiver_asleep_and_a_put_killed_at(POINT, &name);
    assert_eq!(
        receivers_counted(&name),
        0,
        "the put was killed after it stopped counting the receiver, before it woke it"
    );
    // The next locker is told the put's process died; its recovery wakes the receiver, which
    // takes the dead put's item.
    queue.put(&"after".to_owned()).expect("put");
    assert_eq!(
        consumer
            .join_timeout(Duration::from_secs(10))
            .expect("join"),
        Some("child".to_owned()),
        "the receiver still sleeps, uncounted, with items ready"
    );
    assert_eq!(queue.get().expect("get"), "after");
}

/// The receivers' sleeps are bounded: a producer killed between uncounting them and waking
/// them leaves its item to their next look, though no one takes the producers' lock again.
#[test]
fn a_receiver_left_asleep_by_a_killed_put_looks_again_by_itself() {
    const POINT: &str = "queue.sleepers_uncounted";
    if let Some(point) = roles::role() {
        return child_role(&point);
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("look-again");
    let (_queue, mut consumer) = a_receiver_asleep_and_a_put_killed_at(POINT, &name);
    assert_eq!(
        consumer
            .join_timeout(Duration::from_secs(10))
            .expect("join"),
        Some("child".to_owned()),
        "the receiver sleeps on with an item ready and no one to wake it"
    );
}

fn put_one((queue, started): (Queue<u64>, Event)) {
    exit_with_parent();
    started.set().expect("set");
    queue.put(&2).expect("put");
}

#[test]
fn a_blocked_put_is_woken_by_a_get_from_another_process() {
    let _dog = memspace_testkit::start_test();
    let queue = Queue::<u64>::bounded(1).expect("queue");
    queue.put(&1).expect("put");
    let started = Event::new().expect("event");
    let mut producer = Process::new(put_one, (queue.clone(), started.clone()));
    producer.start().expect("start");
    started.wait().expect("wait");
    wait_until_asleep_in_futex(producer.pid().expect("pid"));
    assert_eq!(queue.len().expect("len"), 1, "the blocked put went through");
    assert_eq!(queue.get().expect("get"), 1);
    producer.join().expect("join");
    assert_eq!(queue.get().expect("get"), 2);
}

// ---------------------------------------------------------------------------------------------
// Deliveries, wrong types, unencodable items

#[test]
fn a_delivery_dropped_without_ack_goes_back_to_its_place() {
    let queue = Queue::<u8>::new().expect("queue");
    for i in 1..=3 {
        queue.put(&i).expect("put");
    }
    let first = queue.receive().expect("receive");
    let second = queue.receive().expect("receive");
    assert_eq!((*first.value(), *second.value()), (1, 2));
    assert_eq!(first.deliveries(), 1);
    assert_eq!(queue.len().expect("len"), 1);
    drop(first);
    assert_eq!(queue.len().expect("len"), 2);
    // Back before the items put after it.
    let again = queue.receive().expect("receive");
    assert_eq!((*again.value(), again.deliveries()), (1, 2));
    assert_eq!(again.ack().expect("ack"), 1);
    assert_eq!(second.ack().expect("ack"), 2);
    assert_eq!(queue.get().expect("get"), 3);
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
}

#[test]
fn an_item_of_another_type_is_reported_by_name_and_kept() {
    let name = Removal::fresh("types");
    let strings = Queue::<String>::create(name.name()).expect("create");
    strings.put(&"not a number".to_owned()).expect("put");
    let numbers = Queue::<u32>::open(name.name()).expect("open");
    match numbers.try_receive() {
        Err(err @ QueueError::Undecodable(_)) => {
            assert!(err.to_string().contains(name.name()), "{err}");
            assert_eq!(strings.len().expect("len"), 0, "in flight with the error");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(strings.len().expect("len"), 1, "the item was lost");
    assert_eq!(strings.get().expect("get"), "not a number");
}

/// A value whose encoding fails for 13.
#[derive(Debug, PartialEq, Deserialize)]
struct Unlucky(u32);

impl Serialize for Unlucky {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 cannot be stored"));
        }
        serializer.serialize_u32(self.0)
    }
}

#[test]
fn an_item_that_cannot_be_encoded_changes_nothing() {
    let queue = Queue::<Unlucky>::bounded(2).expect("queue");
    queue.put(&Unlucky(1)).expect("put");
    assert!(matches!(
        queue.put(&Unlucky(13)),
        Err(QueueError::Other(Error::Encode { .. }))
    ));
    assert_eq!(
        (
            queue.len().expect("len"),
            queue.unacknowledged().expect("unacknowledged")
        ),
        (1, 1)
    );
    queue.put(&Unlucky(2)).expect("put");
    assert_eq!(queue.get().expect("get"), Unlucky(1));
    assert_eq!(queue.get().expect("get"), Unlucky(2));
    assert!(inspect::verify(queue.segment().expect("in shared memory")).is_consistent());
}

// ---------------------------------------------------------------------------------------------
// Untrusted input

/// Where the queue's words start in a segment (the kind area), and how many there are: this
/// test writes garbage over them, so it knows the layout (`collections/queue/layout.rs`).
const KIND_AREA: u64 = 2304;
const QUEUE_WORDS: u64 = 24;
/// The word that holds `closed` (and the reserved half beside it).
const CLOSED_WORD: u64 = KIND_AREA + 16;

#[test]
fn garbage_in_a_queue_segment_is_an_error_naming_it_never_a_crash() {
    let mut rng = Rng::new(seed_from_env("MEMSPACE_QUEUE_SEED"));
    let mut next_random = move || rng.next_u64();
    let name = Removal::fresh("garbage");
    let queue = Queue::<String>::create(name.name()).expect("create");
    for i in 0..40 {
        queue
            .put(&format!("{i}{}", "w".repeat(i * 37)))
            .expect("put");
    }
    for _ in 0..5 {
        queue.get().expect("get");
    }
    let held = queue.receive().expect("receive");
    held.nack().expect("nack");
    let file = name.file();
    let pristine = file.bytes();
    let data_end = pristine.len() as u64;
    let (mut corrupt, mut intact) = (0, 0);
    for round in 0..300 {
        file.write(0, &pristine);
        // One word of garbage: in the queue's words or anywhere in its data.
        let at = if round % 2 == 0 {
            KIND_AREA + 8 * (next_random() % QUEUE_WORDS)
        } else {
            (8192 + next_random() % (data_end - 8192)) & !7
        };
        let value = match next_random() % 5 {
            0 => 0,
            1 => u64::MAX,
            2 => next_random() % data_end,
            3 => next_random() % 64,
            _ => next_random(),
        };
        file.write_u64(at, value);
        let _ = inspect::verify(queue.segment().expect("in shared memory"));
        let results = [
            queue.to_vec().map(drop).map_err(QueueError::from),
            queue.try_receive().and_then(Delivery::ack).map(drop),
            queue.try_put(&"more".to_owned()),
            queue.try_get().map(drop),
            queue.is_closed().map(drop).map_err(QueueError::from),
        ];
        for result in results {
            match result {
                Err(QueueError::Other(Error::Corrupt { name: damaged, .. })) => {
                    assert_eq!(damaged.as_str(), name.name());
                    corrupt += 1;
                }
                Ok(())
                | Err(
                    QueueError::Empty { .. }
                    | QueueError::Full { .. }
                    | QueueError::Undecodable(_)
                    | QueueError::Other(Error::Decode { .. } | Error::Full { .. }),
                ) => intact += 1,
                // A 1 or a 2 in the `closed` word is a state, not damage: closed.
                Err(QueueError::Closed { .. }) if at == CLOSED_WORD && matches!(value, 1 | 2) => {
                    intact += 1;
                }
                Err(other) => panic!("round {round}, garbage {value:#x} at {at}: {other:?}"),
            }
        }
    }
    eprintln!("{corrupt} operations reported damage, {intact} went through");
    assert!(corrupt > 0, "no garbage was ever noticed");
}

/// The senders' copies of the receivers' words and the receivers' copy of `end` are derived:
/// a copy past the word it copies, or that does not fit the ring, is read afresh, and the
/// queue goes on as if it had not been damaged.
#[test]
fn copies_of_the_other_sides_words_that_do_not_fit_are_read_afresh() {
    // `collections/queue/layout.rs`: the senders' line, then the receivers'.
    let end_word = KIND_AREA + 64;
    let sender_copies = [80, 88, 96, 104].map(|at| KIND_AREA + at);
    let receiver_end = KIND_AREA + 176;
    for damaged in [u64::MAX, 1 << 40, 3] {
        let name = Removal::fresh("damaged-copies");
        let queue = Queue::<u64>::create_bounded(name.name(), 6).expect("create");
        let file = name.file();
        for i in 0..6 {
            queue.put(&i).expect("put");
        }
        assert_eq!(queue.get_many(4).expect("get"), [0, 1, 2, 3]);
        // Entries 4 and 5 are live and `end` is 6. The senders' copies are then set far past
        // what they copy (`u64::MAX`, `1 << 40`) or to a stale value outside the ring (3), the
        // receivers' copy of `end` to that plus 6.
        assert_eq!(file.read_u64(end_word), 6);
        for word in sender_copies {
            file.write_u64(word, damaged);
        }
        file.write_u64(receiver_end, damaged.wrapping_add(6));
        // Room for four more by `acked` itself, whatever the copy says.
        for i in 6..10 {
            queue.try_put(&i).expect("room by acked");
        }
        assert!(matches!(queue.try_put(&10), Err(QueueError::Full { .. })));
        assert_eq!(queue.get_many(10).expect("get"), [4, 5, 6, 7, 8, 9]);
        assert!(matches!(queue.try_get(), Err(QueueError::Empty { .. })));
        let report = inspect::verify(queue.segment().expect("in shared memory"));
        assert!(report.is_consistent(), "copies at {damaged}: {report:?}");
    }
}

#[test]
fn a_damaged_closed_word_is_reported_not_read_as_closed() {
    let name = Removal::fresh("closed-garbage");
    let queue = Queue::<u64>::create(name.name()).expect("create");
    queue.put(&1).expect("put");
    let file = name.file();
    for (value, closed) in [
        (1, Some(true)),
        (2, Some(true)),
        (0, Some(false)),
        (3, None),
    ] {
        file.write(CLOSED_WORD, &u32::to_le_bytes(value));
        match (queue.is_closed(), closed) {
            (Ok(found), Some(expected)) => assert_eq!(found, expected, "closed word {value}"),
            (Err(Error::Corrupt { name: damaged, .. }), None) => {
                assert_eq!(damaged.as_str(), name.name());
            }
            (other, _) => panic!("closed word {value}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Space

#[test]
fn a_queue_that_never_drains_reuses_its_space() {
    let queue = Queue::<String>::new().expect("queue");
    let item = |i: u32| format!("{i:08}{}", "y".repeat(1000));
    for i in 0..8 {
        queue.put(&item(i)).expect("put");
    }
    // A busy worker pool: one item always in flight, several waiting, 50 MB through the queue.
    let mut held = queue.receive().expect("receive");
    for i in 8..50_000 {
        queue.put(&item(i)).expect("put");
        let next = queue.receive().expect("receive");
        held.ack().expect("ack");
        held = next;
    }
    assert_eq!(held.ack().expect("ack"), item(49_992));
    assert_eq!(queue.len().expect("len"), 7);
    let size = queue.segment().expect("in shared memory").size();
    assert!(
        size <= 1 << 20,
        "the segment grew to {size} bytes for about 8 KB of items"
    );
    assert!(inspect::verify(queue.segment().expect("in shared memory")).is_consistent());
}

fn put_up_to((queue, count): (Queue<u64>, u64)) {
    for i in 0..count {
        queue.put(&i).expect("put");
    }
}

/// Senders see room by their copy of `head`: when it runs out, they read `head` again before
/// building a larger ring, or a streaming queue would build ring after ring.
#[test]
fn a_queue_streamed_between_two_processes_reuses_its_space() {
    const ITEMS: u64 = 300_000;
    let _dog = memspace_testkit::start_test();
    let queue = Queue::<u64>::bounded(1_000).expect("queue");
    let mut producer = Process::new(put_up_to, (queue.clone(), ITEMS));
    producer.start().expect("start");
    for i in 0..ITEMS {
        assert_eq!(queue.get().expect("get"), i);
    }
    producer.join().expect("join");
    let size = queue.segment().expect("in shared memory").size();
    assert!(
        size <= 1 << 20,
        "the segment grew to {size} bytes for at most 1 000 items of 8 bytes"
    );
    assert!(inspect::verify(queue.segment().expect("in shared memory")).is_consistent());
}

/// A handle keeps the ring it validated between calls; another process growing the queue into
/// a new ring must not leave it reading or writing the old one.
#[test]
fn a_handle_follows_a_ring_that_another_process_outgrew() {
    let _dog = memspace_testkit::start_test();
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let queue = Queue::<u32>::new().expect("queue");
        queue.put(&0).expect("put");
        assert_eq!(queue.get().expect("get"), 0);
        queue.put(&1).expect("put");
        let before = queue.segment().expect("in shared memory").size();
        // Far more than the first ring's 64 slots: the producer builds larger rings.
        let mut producer = Process::new(put_range, (queue.clone(), 2, 5_000)).start_method(method);
        producer.start().expect("start");
        producer.join().expect("join");
        assert!(queue.segment().expect("in shared memory").size() > before);
        queue.put(&5_000).expect("put after the growth");
        for i in 1..=5_000 {
            assert_eq!(queue.get().expect("get"), i, "{method:?}");
        }
        assert!(queue.is_empty().expect("is_empty"));
        assert!(inspect::verify(queue.segment().expect("in shared memory")).is_consistent());
    }
}

#[test]
fn batches_of_varying_sizes_wrap_around_the_ring_and_come_back_intact() {
    let queue = Queue::<String>::new().expect("queue");
    let mut model = std::collections::VecDeque::new();
    let mut rng = Rng::new(seed_from_env("MEMSPACE_QUEUE_SEED"));
    let mut next = 0u32;
    // Each round puts a batch of 1 to 40 items of 0 to 300 bytes and takes a batch of 1 to
    // 50: the records wrap around the ring's end again and again, in the middle of batches.
    for round in 0..2_000 {
        let batch: Vec<String> = (0..=rng.below(40))
            .map(|_| {
                next += 1;
                format!("{next:08}{}", "z".repeat(rng.below(300) as usize))
            })
            .collect();
        queue.put_many(&batch).expect("put_many");
        model.extend(batch);
        let want = 1 + rng.below(50) as usize;
        let got = queue.get_many(want).expect("get_many");
        let expected: Vec<String> = model.drain(..want.min(model.len())).collect();
        assert_eq!(got, expected, "round {round}");
    }
    assert_eq!(queue.to_vec().expect("to_vec"), Vec::from(model));
    let size = queue.segment().expect("in shared memory").size();
    assert!(size <= 4 << 20, "the segment grew to {size} bytes");
    assert!(inspect::verify(queue.segment().expect("in shared memory")).is_consistent());
}

#[test]
fn a_long_held_delivery_keeps_later_items_space_until_acknowledged() {
    let queue = Queue::<String>::new().expect("queue");
    queue.put(&"slow job".to_owned()).expect("put");
    let slow = queue.receive().expect("receive");
    for i in 0..5000 {
        queue.put(&format!("{i:0100}")).expect("put");
        queue.get().expect("get");
    }
    let pinned = queue.segment().expect("in shared memory").size();
    assert_eq!(slow.ack().expect("ack"), "slow job");
    // Everything is acknowledged: the same space serves the next items.
    for i in 0..5000 {
        queue.put(&format!("{i:0100}")).expect("put");
        queue.get().expect("get");
    }
    assert_eq!(queue.segment().expect("in shared memory").size(), pinned);
    assert!(inspect::verify(queue.segment().expect("in shared memory")).is_consistent());
}

// ---------------------------------------------------------------------------------------------
// The model: a queue behaves like a `VecDeque` with deliveries in flight

#[derive(Debug, Clone)]
enum Op {
    /// Put an item of this many bytes (`try_put` when bounded).
    Put(u16),
    /// `try_get`.
    Get,
    /// `try_receive`, keeping the delivery.
    Receive,
    /// Acknowledge the held delivery at this position (modulo their number).
    Ack(u8),
    /// Drop the held delivery at this position: it goes back.
    Drop(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u16..3000).prop_map(Op::Put),
        2 => Just(Op::Get),
        2 => Just(Op::Receive),
        1 => any::<u8>().prop_map(Op::Ack),
        1 => any::<u8>().prop_map(Op::Drop),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_queue_behaves_like_a_vec_deque_with_deliveries_in_flight(
        capacity in prop_oneof![Just(None), (1u64..40).prop_map(Some)],
        ops in proptest::collection::vec(op(), 1..400),
    ) {
        let queue = match capacity {
            Some(capacity) => Queue::<String>::bounded(capacity),
            None => Queue::<String>::new(),
        }
        .expect("queue");
        // Ready items by order of putting; deliveries in flight; how often each was delivered.
        let mut ready: BTreeMap<u64, String> = BTreeMap::new();
        let mut held = Vec::new();
        let mut delivered: HashMap<u64, u32> = HashMap::new();
        let mut next = 0u64;
        for op in ops {
            match op {
                Op::Put(size) => {
                    let value = format!("{next}:{}", "z".repeat(usize::from(size)));
                    let unacked = (ready.len() + held.len()) as u64;
                    match (queue.try_put(&value), capacity) {
                        (Err(QueueError::Full { .. }), Some(capacity)) => {
                            prop_assert_eq!(unacked, capacity);
                        }
                        (Ok(()), _) => {
                            prop_assert!(capacity.is_none_or(|c| unacked < c));
                            ready.insert(next, value);
                            next += 1;
                        }
                        (other, _) => prop_assert!(false, "put: {:?}", other),
                    }
                }
                Op::Get => match (queue.try_get(), ready.pop_first()) {
                    (Ok(got), Some((seq, expected))) => {
                        prop_assert_eq!(got, expected);
                        delivered.remove(&seq);
                    }
                    (Err(QueueError::Empty { .. }), None) => {}
                    (got, expected) => prop_assert!(false, "get: {:?} vs {:?}", got, expected),
                },
                Op::Receive => match (queue.try_receive(), ready.pop_first()) {
                    (Ok(delivery), Some((seq, expected))) => {
                        prop_assert_eq!(delivery.value(), &expected);
                        prop_assert_eq!(delivery.seq(), seq);
                        let count = delivered.entry(seq).or_insert(0);
                        *count += 1;
                        prop_assert_eq!(delivery.deliveries(), *count);
                        held.push((seq, expected, delivery));
                    }
                    (Err(QueueError::Empty { .. }), None) => {}
                    (got, expected) => prop_assert!(false, "receive: {:?} vs {:?}", got, expected),
                },
                Op::Ack(at) if !held.is_empty() => {
                    let (seq, expected, delivery) = held.remove(usize::from(at) % held.len());
                    prop_assert_eq!(delivery.ack().expect("ack"), expected);
                    delivered.remove(&seq);
                }
                Op::Drop(at) if !held.is_empty() => {
                    let (seq, expected, delivery) = held.remove(usize::from(at) % held.len());
                    drop(delivery);
                    ready.insert(seq, expected);
                }
                Op::Ack(_) | Op::Drop(_) => {}
            }
            prop_assert_eq!(queue.len().expect("len"), ready.len() as u64);
            prop_assert_eq!(queue.in_flight().expect("in_flight"), held.len() as u64);
            prop_assert_eq!(queue.unacknowledged().expect("unacknowledged"), (ready.len() + held.len()) as u64);
        }
        prop_assert_eq!(queue.to_vec().expect("to_vec"), ready.values().cloned().collect::<Vec<_>>());
        let report = inspect::verify(queue.segment().expect("in shared memory"));
        prop_assert!(report.is_consistent(), "{:?}", report);
    }
}

// ---------------------------------------------------------------------------------------------
// Kills: a consumer killed holding an item (AT-Q-10)

fn receive_and_hang((queue, took): (Queue<String>, Event)) {
    exit_with_parent();
    let delivery = queue.receive().expect("receive");
    assert_eq!(delivery.deliveries(), 1);
    hang_holding(delivery, &took);
}

/// Sets `took` and hangs until the process is killed, holding `held`: deliveries, or an error
/// that keeps its item in flight.
fn hang_holding<T>(held: T, took: &Event) -> ! {
    let _held = held;
    took.set().expect("set");
    loop {
        std::thread::park();
    }
}

fn receive_and_ack(queue: Queue<String>) -> (String, u32) {
    exit_with_parent();
    let delivery = queue.receive().expect("receive");
    let deliveries = delivery.deliveries();
    (delivery.ack().expect("ack"), deliveries)
}

/// A consumer that took items in flight and hangs, holding them.
type Hanging = Process<(Queue<String>, Event)>;

/// Starts a consumer that runs `hang` (which takes items in flight, sets its event and hangs),
/// and waits until it took them.
fn start_a_hanging_consumer(queue: &Queue<String>, hang: fn((Queue<String>, Event))) -> Hanging {
    let took = Event::new().expect("event");
    let mut consumer = Process::new(hang, (queue.clone(), took.clone()));
    consumer.start().expect("start");
    took.wait().expect("wait");
    consumer
}

/// Kills `consumer` with SIGKILL, and checks that it died of it.
fn kill_hanging(mut consumer: Hanging) {
    consumer.kill().expect("SIGKILL");
    assert!(matches!(
        consumer.join(),
        Err(JoinError::Killed { signal: 9, .. })
    ));
}

/// Starts a consumer that takes an item and is then killed, holding it.
fn kill_a_consumer_holding_an_item(queue: &Queue<String>) {
    let consumer = start_a_hanging_consumer(queue, receive_and_hang);
    assert_eq!(queue.in_flight().expect("in_flight"), 1);
    kill_hanging(consumer);
}

#[test]
fn an_item_taken_by_a_consumer_killed_before_acking_is_delivered_again() {
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("redeliver");
    let queue = Queue::<String>::create(name.name()).expect("create");
    queue.put(&"precious".to_owned()).expect("put");
    kill_a_consumer_holding_an_item(&queue);
    assert_eq!(
        (
            queue.len().expect("len"),
            queue.unacknowledged().expect("unacknowledged")
        ),
        (0, 1)
    );
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    assert!(
        report
            .notes
            .iter()
            .any(|note| note.contains("in flight with processes that died")),
        "{report:?}"
    );
    // Another consumer process gets it, and is told it is the second delivery.
    let mut other = Process::new(receive_and_ack, queue.clone());
    other.start().expect("start");
    assert_eq!(other.join().expect("join"), ("precious".to_owned(), 2));
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
    is_empty_error(queue.try_get(), name.name());
}

#[test]
fn an_item_of_a_killed_consumer_comes_back_within_sixteen_deliveries_on_a_busy_queue() {
    let _dog = memspace_testkit::start_test();
    let queue = Queue::<String>::new().expect("queue");
    queue.put(&"precious".to_owned()).expect("put");
    kill_a_consumer_holding_an_item(&queue);
    precious_comes_back_among_40_within_sixteen(&queue);
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
}

/// In the child: a get of an item it cannot decode as a number, which leaves it in flight with
/// the error; sets `took` and hangs, holding it.
fn get_undecodable_and_hang((queue, took): (Queue<String>, Event)) {
    exit_with_parent();
    let numbers = Queue::<u32>::open(queue.name().as_str()).expect("open as numbers");
    let error = numbers.get().expect_err("a decode error");
    assert!(matches!(error, QueueError::Undecodable(_)), "{error:?}");
    hang_holding(error, &took);
}

/// A get that refuses an item takes it in flight: with this process named as holding every
/// item in flight, the get's process must clear the name before it takes the item, or the item
/// is lost once that process is killed.
#[test]
fn an_item_refused_by_a_killed_consumers_get_comes_back_to_a_process_holding_its_own() {
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("refused-beside-ours");
    let queue = Queue::<String>::create(name.name()).expect("create");
    queue.put(&"mine".to_owned()).expect("put");
    let mine = queue.receive().expect("receive");
    queue.put(&"not a number".to_owned()).expect("put");
    let consumer = start_a_hanging_consumer(&queue, get_undecodable_and_hang);
    assert_eq!(queue.in_flight().expect("in_flight"), 2);
    kill_hanging(consumer);
    assert_eq!(drain_all(&queue), vec![("not a number".to_owned(), 2)]);
    assert_eq!(mine.ack().expect("ack"), "mine");
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
}

/// Puts 40 more items, receives everything ready one at a time, and checks that "precious",
/// held by a consumer killed before, came back within the first 17, as its second delivery.
fn precious_comes_back_among_40_within_sixteen(queue: &Queue<String>) {
    for i in 0..40 {
        queue.put(&format!("later {i}")).expect("put");
    }
    let mut got = Vec::new();
    while let Ok(delivery) = queue.try_receive() {
        got.push((delivery.deliveries(), delivery.ack().expect("ack")));
    }
    assert_eq!(got.len(), 41);
    let position = got
        .iter()
        .position(|(_, item)| item == "precious")
        .expect("the item of the killed consumer was lost");
    assert!(position <= 16, "redelivered only as item {position}");
    assert_eq!(got[position].0, 2);
}

#[test]
fn an_item_of_a_consumer_seen_alive_and_then_killed_comes_back_within_sixteen_deliveries() {
    let _dog = memspace_testkit::start_test();
    let queue = Queue::<String>::new().expect("queue");
    queue.put(&"precious".to_owned()).expect("put");
    let consumer = start_a_hanging_consumer(&queue, receive_and_hang);
    // 40 deliveries while the consumer runs: this process looks twice for items of dead
    // takers, finds the consumer alive, and from then on watches it.
    for i in 0..40 {
        queue.put(&format!("before {i}")).expect("put");
    }
    for _ in 0..40 {
        let delivery = queue.try_receive().expect("an item");
        assert_ne!(*delivery.value(), "precious", "taken from a live consumer");
        delivery.ack().expect("ack");
    }
    kill_hanging(consumer);
    precious_comes_back_among_40_within_sixteen(&queue);
}

#[test]
fn every_item_of_a_killed_consumer_comes_back_in_one_batch_with_fresh_ones() {
    let _dog = memspace_testkit::start_test();
    let queue = Queue::<String>::new().expect("queue");
    for i in 0..3 {
        queue.put(&format!("precious {i}")).expect("put");
    }
    let consumer = start_a_hanging_consumer(&queue, receive_batch_and_hang);
    assert_eq!(queue.in_flight().expect("in_flight"), 3);
    kill_hanging(consumer);
    for i in 0..40 {
        queue.put(&format!("later {i}")).expect("put");
    }
    // One receive: the dead consumer's items are found as the batch goes, each by a look for
    // items of dead takers, until a look finds none.
    let deliveries = queue.receive_many(64).expect("receive_many");
    let mut got = deliveries.values().to_vec();
    assert_eq!(got.len(), 43, "{got:?}");
    for i in 0..3 {
        assert!(
            got.contains(&format!("precious {i}")),
            "precious {i} did not come back in the batch: {got:?}"
        );
    }
    deliveries.ack().expect("ack");
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 43, "an item came twice");
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
}

/// A receiver that holds every item in flight itself skips the look for items of dead takers
/// (`sole_taker`): a consumer's item taken before this process took its own must not be
/// skipped once the consumer is killed.
#[test]
fn an_item_of_a_killed_consumer_comes_back_to_a_process_holding_items_of_its_own() {
    let _dog = memspace_testkit::start_test();
    let queue = Queue::<String>::new().expect("queue");
    queue.put(&"precious".to_owned()).expect("put");
    let consumer = start_a_hanging_consumer(&queue, receive_and_hang);
    queue.put(&"mine".to_owned()).expect("put");
    let mine = queue.receive().expect("receive");
    assert_eq!(*mine.value(), "mine");
    assert_eq!(queue.in_flight().expect("in_flight"), 2);
    kill_hanging(consumer);
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    precious_comes_back_among_40_within_sixteen(&queue);
    assert_eq!(mine.ack().expect("ack"), "mine");
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
}

// ---------------------------------------------------------------------------------------------
// Kills: a storm of random kills (AT-Q-11)

/// `(producer, incarnation, seq)`: unique per put attempt.
type Item = (u32, u32, u64);

const PUT: u8 = 0;
const RECEIVED: u8 = 1;
const ACKING: u8 = 2;
const ACKED: u8 = 3;

/// One line of the shared log: what, which item, its delivery count.
type LogLine = (u8, Item, u32);

fn produce_forever(
    (queue, log, producer, incarnation): (Queue<Item>, SharedList<LogLine>, u32, u32),
) {
    exit_with_parent();
    for seq in 0.. {
        let item = (producer, incarnation, seq);
        queue.put(&item).expect("put");
        log.push(&(PUT, item, 0)).expect("log");
    }
}

fn consume_forever((queue, log): (Queue<Item>, SharedList<LogLine>)) {
    exit_with_parent();
    loop {
        let delivery = queue.receive().expect("receive");
        let (item, deliveries) = (*delivery.value(), delivery.deliveries());
        log.push(&(RECEIVED, item, deliveries)).expect("log");
        log.push(&(ACKING, item, deliveries)).expect("log");
        delivery.ack().expect("ack");
        log.push(&(ACKED, item, deliveries)).expect("log");
    }
}

/// Checks the log of a storm: no item put is lost, none acknowledged is delivered again, an
/// item received and not acknowledged is delivered again with a higher count, and at most one
/// unlogged put per producer incarnation (the one it was killed in) shows up.
fn check_storm_log(log: &[LogLine]) -> (usize, usize) {
    let mut puts: HashMap<(u32, u32), Vec<u64>> = HashMap::new();
    let mut history: HashMap<Item, Vec<(u8, u32)>> = HashMap::new();
    for &(what, item, deliveries) in log {
        if what == PUT {
            puts.entry((item.0, item.1)).or_default().push(item.2);
        } else {
            history.entry(item).or_default().push((what, deliveries));
        }
    }
    for (&(producer, incarnation), seqs) in &puts {
        assert_eq!(
            *seqs,
            (0..seqs.len() as u64).collect::<Vec<_>>(),
            "producer {producer}/{incarnation} logged puts out of order"
        );
        for &seq in seqs {
            assert!(
                history.contains_key(&(producer, incarnation, seq)),
                "item {producer}/{incarnation}/{seq} was put and never received: lost"
            );
        }
    }
    let mut redelivered = 0;
    for (item, events) in &history {
        let logged = puts.get(&(item.0, item.1)).map_or(0, Vec::len) as u64;
        assert!(
            item.2 <= logged,
            "item {item:?} was never put (the last logged put of its producer is {logged})"
        );
        // Split into deliveries: each starts with RECEIVED.
        let mut attempts: Vec<Vec<(u8, u32)>> = Vec::new();
        for &event in events {
            if event.0 == RECEIVED {
                attempts.push(vec![event]);
            } else {
                attempts
                    .last_mut()
                    .unwrap_or_else(|| panic!("{item:?}: acknowledged before received"))
                    .push(event);
            }
        }
        for pair in attempts.windows(2) {
            let (earlier, later) = (&pair[0], &pair[1]);
            assert!(
                !earlier.iter().any(|(what, _)| *what == ACKED),
                "{item:?} was acknowledged and then delivered again: {events:?}"
            );
            assert!(
                later[0].1 > earlier[0].1,
                "{item:?}: the delivery count did not grow: {events:?}"
            );
        }
        let last = attempts.last().expect("received at least once");
        assert!(
            last.iter().any(|(what, _)| *what == ACKING),
            "{item:?} was received by a consumer that died before acknowledging it, and never \
             delivered again: lost: {events:?}"
        );
        redelivered += attempts.len() - 1;
    }
    (history.len(), redelivered)
}

#[test]
fn producers_and_consumers_killed_at_random_lose_no_acknowledged_item() {
    const KILLS: u32 = 100;
    let _dog = memspace_testkit::start_test();
    let seed = seed_from_env("MEMSPACE_QUEUE_SEED");
    let mut rng = Rng::new(seed);
    let mut next_random = move |below: u64| rng.below(below);
    let (queue_name, log_name) = (Removal::fresh("storm"), Removal::fresh("storm-log"));
    let queue = Queue::<Item>::create_bounded(queue_name.name(), 32).expect("create");
    let log = SharedList::<LogLine>::create(log_name.name()).expect("log");
    // Workers 0 and 1 produce, 2 and 3 consume.
    let mut incarnations = [0u32; 4];
    let start = |worker: usize, incarnation: u32| -> Process<_, ()> {
        let mut process = if worker < 2 {
            Process::new(
                |(q, l, w, i): (Queue<Item>, SharedList<LogLine>, u32, u32)| {
                    produce_forever((q, l, w, i));
                },
                (queue.clone(), log.clone(), worker as u32, incarnation),
            )
        } else {
            Process::new(
                |(q, l, _, _): (Queue<Item>, SharedList<LogLine>, u32, u32)| {
                    consume_forever((q, l));
                },
                (queue.clone(), log.clone(), worker as u32, incarnation),
            )
        };
        process.start().expect("start worker");
        process
    };
    let mut workers: Vec<_> = (0..4).map(|w| start(w, 0)).collect();
    let mut checked_live = 0;
    for kill in 0..KILLS {
        let victim = next_random(4) as usize;
        // Let the workers run a random while (not an ordering: any moment is a valid one).
        std::thread::sleep(Duration::from_micros(next_random(3000)));
        workers[victim].kill().expect("SIGKILL");
        let ended = workers[victim].join();
        assert!(
            matches!(ended, Err(JoinError::Killed { signal: 9, .. })),
            "seed {seed}: worker {victim} ended on its own: {ended:?}"
        );
        // Checked while the other workers go on (`verify` retries until it reads the queue
        // between two changes, and says so when it never could).
        let report = inspect::verify(queue.segment().expect("in shared memory"));
        assert!(
            report.is_consistent(),
            "seed {seed}, kill {kill}: {report:?}"
        );
        if report.items_checked > 0 {
            checked_live += 1;
        }
        incarnations[victim] += 1;
        workers[victim] = start(victim, incarnations[victim]);
    }
    for worker in &mut workers {
        worker.kill().expect("SIGKILL");
        let _ = worker.join();
    }
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "seed {seed}: {report:?}");
    // Drain: items of dead consumers come back; the log records this last consumer too.
    while let Ok(delivery) = queue.try_receive() {
        let (item, deliveries) = (*delivery.value(), delivery.deliveries());
        log.push(&(RECEIVED, item, deliveries)).expect("log");
        log.push(&(ACKING, item, deliveries)).expect("log");
        delivery.ack().expect("ack");
        log.push(&(ACKED, item, deliveries)).expect("log");
    }
    assert_eq!(
        queue.unacknowledged().expect("unacknowledged"),
        0,
        "seed {seed}"
    );
    let (items, redelivered) = check_storm_log(&log.to_vec().expect("log"));
    eprintln!(
        "{KILLS} kills, {items} items, {redelivered} delivered again after a kill; \
         {checked_live} checks of the live queue read its items"
    );
    assert!(items > 0, "seed {seed}: nothing went through the queue");
    // The queue still works.
    queue.put(&(9, 9, 9)).expect("put after the storm");
    assert_eq!(queue.get().expect("get"), (9, 9, 9));
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "seed {seed}: {report:?}");
}

// ---------------------------------------------------------------------------------------------
// Kills at exact points (failpoints: a child with MEMSPACE_FAILPOINT=<point> stops itself there)

const PREFILL: [&str; 3] = ["a", "b", "c"];

/// In the child role: does what reaches `point`, on the queue named in the environment. The
/// failpoint stops this process there; the parent kills it.
fn child_role(point: &str) {
    exit_with_parent();
    let queue = Queue::<String>::open(&std::env::var(QUEUE).expect("queue name")).expect("open");
    match point {
        "queue.written" | "queue.committed" | "queue.sleepers_uncounted" => {
            queue.put(&"child".to_owned()).expect("put");
        }
        "queue.ring_built" | "grow.allocated" => {
            for i in 0..100_000 {
                queue
                    .put(&format!("child {i:06} {}", "g".repeat(500)))
                    .expect("put");
            }
        }
        "queue.taking" | "queue.taken" => drop(queue.receive().expect("receive")),
        "queue.acked" => {
            queue.receive().expect("receive").ack().expect("ack");
        }
        "queue.returned" => queue.receive().expect("receive").nack().expect("nack"),
        other => panic!("no action reaches {other}"),
    }
    panic!("the failpoint {point} was never reached");
}

/// Receives everything, acknowledging it: `(item, deliveries)` in the order received.
fn drain_all(queue: &Queue<String>) -> Vec<(String, u32)> {
    let mut got = Vec::new();
    while let Ok(delivery) = queue.try_receive() {
        let deliveries = delivery.deliveries();
        got.push((delivery.ack().expect("ack"), deliveries));
    }
    got
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn put_get_three(name: String) -> Vec<String> {
    exit_with_parent();
    let queue = Queue::<String>::open(&name).expect("open");
    for s in ["x", "y", "z"] {
        queue.put(&s.to_owned()).expect("put");
    }
    (0..3).map(|_| queue.get().expect("get")).collect()
}

/// Starts a child in `role` on the queue `queue` that stops at the failpoint `point`, and
/// kills it there.
fn kill_child_at(role: &str, point: &str, queue: &Removal) {
    let mut child = roles::child_in_role(
        role,
        &[(QUEUE, queue.name()), ("MEMSPACE_FAILPOINT", point)],
    );
    child.wait_until_stopped(point);
    let status = child.kill();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{role} stopped at {point} ended otherwise: {status}"
    );
}

/// Creates the queue `name` holding [`PREFILL`], then runs a child in the role of `point`
/// (see [`child_role`]) and kills it where it stopped there.
fn prefilled_with_a_child_killed_at(point: &str, name: &Removal) -> Queue<String> {
    let queue = Queue::<String>::create(name.name()).expect("create");
    for item in PREFILL {
        queue.put(&item.to_owned()).expect("prefill");
    }
    kill_child_at(point, point, name);
    queue
}

/// Stops a child at `point`, kills it there, and checks what the queue holds afterwards.
fn kill_at(point: &str) {
    if let Some(point) = roles::role() {
        return child_role(&point);
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh(point);
    let queue = prefilled_with_a_child_killed_at(point, &name);
    // Before anyone repairs it: consistent, perhaps with notes about the dead holder, and
    // checked: a dead holder's change under way does not stop the check.
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{point}: {report:?}");
    let info = inspect::info(queue.segment().expect("in shared memory"));
    let receive_lock = info.receive_lock.expect("a queue's receive lock");
    if matches!(point, "queue.taken" | "queue.acked" | "queue.returned") {
        assert!(
            report
                .notes
                .iter()
                .any(|note| note.contains("receive lock") && note.contains("dead")),
            "{point}: a receiver died holding the receive lock: {report:?}"
        );
    }
    // Who held which lock when killed: a receiver the receive lock, a sender the segment's, a
    // sender that built a larger ring both.
    let (senders, receivers) = match point {
        "queue.taken" | "queue.acked" | "queue.returned" => (false, true),
        "queue.ring_built" | "grow.allocated" => (true, true),
        _ => (true, false),
    };
    for (lock, held, which) in [
        (&info.lock, senders, "the segment's lock"),
        (&receive_lock, receivers, "the receive lock"),
    ] {
        let dead_holder = lock.owner.is_some() && lock.owner_alive == Some(false);
        assert_eq!(dead_holder, held, "{point}: {which}: {lock:?}");
    }
    assert!(
        !report
            .notes
            .iter()
            .any(|note| note.contains("were not checked")),
        "{point}: {report:?}"
    );
    // `to_vec` takes the receive lock: after a receiver's death, its next holder is told and
    // recounts. After a sender's, the segment's lock is repaired by the put below.
    let ready = queue.to_vec().expect("read after the kill");
    match point {
        "queue.written" => assert_eq!(ready, strings(&PREFILL), "the unfinished put is visible"),
        "queue.committed" => assert_eq!(ready, strings(&["a", "b", "c", "child"])),
        "queue.ring_built" | "grow.allocated" => {
            assert_eq!(ready[..3], strings(&PREFILL));
            for (i, item) in ready[3..].iter().enumerate() {
                assert!(
                    item.starts_with(&format!("child {i:06} ")),
                    "{point}: {item}"
                );
            }
        }
        // The child took "a" and died holding it.
        "queue.taken" => {
            assert_eq!(ready, strings(&["b", "c"]));
            assert_eq!(queue.in_flight().expect("in_flight"), 1);
        }
        "queue.acked" => {
            assert_eq!(ready, strings(&["b", "c"]));
            assert_eq!(
                queue.in_flight().expect("in_flight"),
                0,
                "an acknowledged item is in flight"
            );
        }
        "queue.returned" => assert_eq!(ready, strings(&PREFILL)),
        other => panic!("unknown failpoint {other}"),
    }
    assert_eq!(queue.len().expect("len"), ready.len() as u64);
    let got = drain_all(&queue);
    let expected_a = match point {
        "queue.taken" | "queue.returned" => Some(("a".to_owned(), 2)),
        "queue.acked" => None,
        _ => Some(("a".to_owned(), 1)),
    };
    assert_eq!(
        got.iter().find(|(item, _)| item == "a").cloned(),
        expected_a,
        "{point}: {got:?}"
    );
    assert_eq!(got.len(), ready.len() + usize::from(point == "queue.taken"));
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
    // The queue works, in this process and in another.
    queue.put(&"after".to_owned()).expect("put after the kill");
    assert_eq!(queue.get().expect("get"), "after");
    let mut other = Process::new(put_get_three, name.name().to_owned());
    other.start().expect("start");
    assert_eq!(other.join().expect("join"), strings(&["x", "y", "z"]));
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{point}: {report:?}");
    assert!(report.notes.is_empty(), "{point}: {report:?}");
}

#[test]
fn a_kill_after_a_put_wrote_its_item_leaves_nothing_visible() {
    kill_at("queue.written");
}

#[test]
fn a_kill_after_a_put_committed_keeps_the_item_and_recounts() {
    kill_at("queue.committed");
}

/// A sender killed after its commit, before it kept its view of the live records: the next
/// sender reads them afresh and writes past the dead one's item, not over it.
#[test]
fn a_put_after_a_sender_died_past_its_commit_keeps_that_item() {
    if let Some(point) = roles::role() {
        return child_role(&point);
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("committed-then-put");
    let queue = prefilled_with_a_child_killed_at("queue.committed", &name);
    queue.put(&"after".to_owned()).expect("put after the kill");
    assert_eq!(
        queue.to_vec().expect("read"),
        strings(&["a", "b", "c", "child", "after"])
    );
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
}

#[test]
fn a_kill_after_a_larger_ring_was_built_keeps_the_old_one() {
    kill_at("queue.ring_built");
}

#[test]
fn a_kill_while_a_put_grows_the_segment_keeps_every_item() {
    kill_at("grow.allocated");
}

#[test]
fn a_kill_after_an_item_was_taken_delivers_it_again() {
    kill_at("queue.taken");
}

/// A consumer killed after it took an item, holding the receive lock, while this process holds
/// an item of its own: the recovery's recount must not name this process as the one that holds
/// every item in flight, or it would never look for the dead consumer's.
#[test]
fn a_kill_after_an_item_was_taken_beside_one_of_ours_delivers_it_again() {
    const POINT: &str = "queue.taken";
    if let Some(point) = roles::role() {
        return child_role(&point);
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("taken-beside-ours");
    let queue = Queue::<String>::create(name.name()).expect("create");
    for item in PREFILL {
        queue.put(&item.to_owned()).expect("prefill");
    }
    let ours = queue.receive().expect("receive");
    assert_eq!(*ours.value(), "a");
    // Nothing else is in flight: this process is named.
    let named = name.file().read_u64(SOLE_TAKER);
    assert_eq!(named & u64::from(u32::MAX), u64::from(std::process::id()));
    kill_child_at(POINT, POINT, &name);
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    // The child took "b" and died holding it and the receive lock.
    assert_eq!(
        queue.to_vec().expect("read after the kill"),
        strings(&["c"])
    );
    assert_eq!(queue.in_flight().expect("in_flight"), 2);
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    // "c" first: a look for items of dead takers comes when nothing is ready.
    assert_eq!(
        drain_all(&queue),
        vec![("c".to_owned(), 1), ("b".to_owned(), 2)]
    );
    assert_eq!(ours.ack().expect("ack"), "a");
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    assert!(report.notes.is_empty(), "{report:?}");
}

/// A receiver killed as it takes again the item of a consumer that died, between its stores of
/// its start time and its pid into the entry, which so names neither process: the queue must
/// not name the receiver as holding every item in flight, and the item comes back once more.
#[test]
fn a_kill_while_the_item_of_a_dead_consumer_is_taken_again_leaves_the_queue_consistent() {
    const POINT: &str = "queue.taking";
    if let Some(point) = roles::role() {
        return child_role(&point);
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("taking-again");
    let queue = Queue::<String>::create(name.name()).expect("create");
    queue.put(&"precious".to_owned()).expect("put");
    kill_a_consumer_holding_an_item(&queue);
    // Nothing is ready: the child's receive takes the dead consumer's item.
    kill_child_at(POINT, POINT, &name);
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(drain_all(&queue), vec![("precious".to_owned(), 3)]);
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    assert!(report.notes.is_empty(), "{report:?}");
}

/// The receivers' `sole_taker` (`collections/queue/layout.rs`): the process that holds every
/// item in flight, if one does.
const SOLE_TAKER: u64 = KIND_AREA + 184;

/// A damaged `sole_taker` is reported by `inspect`, and the recovery after a receiver died
/// holding the receive lock recounts it from the entries.
#[test]
fn a_damaged_sole_taker_is_reported_and_recounted_by_the_next_recovery() {
    const POINT: &str = "queue.acked";
    if roles::role().is_some() {
        // The child: a get, stopped after the commit of its acknowledgement.
        exit_with_parent();
        let queue =
            Queue::<String>::open(&std::env::var(QUEUE).expect("queue name")).expect("open");
        drop(queue.get());
        panic!("the failpoint {POINT} was never reached");
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("sole-taker");
    let queue = Queue::<String>::create(name.name()).expect("create");
    queue.put(&"precious".to_owned()).expect("put");
    kill_a_consumer_holding_an_item(&queue);
    for item in ["a", "b"] {
        queue.put(&item.to_owned()).expect("put");
    }
    // Another process than the dead consumer (pid 12345, started at tick 256) named as
    // holding every item in flight.
    name.file().write_u64(SOLE_TAKER, (256 << 32) + 12_345);
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.contains("as holding every item in flight")),
        "{report:?}"
    );
    kill_child_at("get", POINT, &name);
    // The child acknowledged "a" without touching the word; the recovery recounts it.
    assert_eq!(
        queue.to_vec().expect("read after the kill"),
        strings(&["b"])
    );
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(
        drain_all(&queue),
        vec![("b".to_owned(), 1), ("precious".to_owned(), 2)]
    );
}

#[test]
fn a_kill_after_an_ack_committed_never_delivers_the_item_again() {
    kill_at("queue.acked");
}

#[test]
fn a_kill_after_a_delivery_was_put_back_keeps_it_ready() {
    kill_at("queue.returned");
}

// ---------------------------------------------------------------------------------------------
// Kills in the middle of batches

/// In the child role `role`: a batch operation on the queue named in the environment, which
/// the failpoint the parent armed stops half-way.
fn batch_child_role(role: &str) {
    exit_with_parent();
    let queue = Queue::<String>::open(&std::env::var(QUEUE).expect("queue name")).expect("open");
    match role {
        "batch.put" => queue
            .put_many(&strings(&["x", "y", "z"]))
            .expect("put_many"),
        "batch.ack" => {
            let batch = queue.receive_many(3).expect("receive_many");
            assert_eq!(batch.values(), strings(&["a", "b", "c"]));
            batch.ack().expect("ack");
        }
        other => panic!("no batch role {other}"),
    }
    panic!("the failpoint of {role} was never reached");
}

#[test]
fn a_kill_in_the_middle_of_a_batch_put_leaves_none_of_the_batch_visible() {
    if let Some(role) = roles::role() {
        return batch_child_role(&role);
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("batch-put");
    let queue = Queue::<String>::create(name.name()).expect("create");
    queue.put_many(&strings(&PREFILL)).expect("prefill");
    kill_child_at("batch.put", "queue.batch_first_written", &name);
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    // The first item of the batch was written, not committed: none of the batch is there.
    assert_eq!(
        queue.to_vec().expect("read after the kill"),
        strings(&PREFILL)
    );
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 3);
    // The queue works on, and a whole batch goes in after the torn one.
    queue.put_many(&strings(&["d", "e"])).expect("put_many");
    assert_eq!(
        queue.get_many(10).expect("get_many"),
        strings(&["a", "b", "c", "d", "e"])
    );
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(
        report.is_consistent() && report.notes.is_empty(),
        "{report:?}"
    );
}

fn receive_batch_and_hang((queue, took): (Queue<String>, Event)) {
    exit_with_parent();
    let batch = queue.receive_many(10).expect("receive_many");
    assert!(batch.deliveries().all(|d| d == 1));
    hang_holding(batch, &took);
}

#[test]
fn a_batch_taken_by_a_process_killed_before_its_ack_is_delivered_again_whole_and_in_order() {
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("batch-get");
    let queue = Queue::<String>::create(name.name()).expect("create");
    queue.put_many(&strings(&PREFILL)).expect("put_many");
    let consumer = start_a_hanging_consumer(&queue, receive_batch_and_hang);
    assert_eq!(queue.in_flight().expect("in_flight"), 3);
    kill_hanging(consumer);
    // Nothing else is ready, so the items of the dead receiver come back at once.
    let again = queue.receive_many(10).expect("receive_many");
    assert_eq!(again.values(), strings(&["a", "b", "c"]));
    assert_eq!(again.deliveries().collect::<Vec<_>>(), [2, 2, 2]);
    assert_eq!(again.ack().expect("ack").len(), 3);
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
    is_empty_error(queue.try_get(), name.name());
}

#[test]
fn a_kill_in_the_middle_of_a_batch_ack_never_delivers_an_acknowledged_item_again() {
    if let Some(role) = roles::role() {
        return batch_child_role(&role);
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("batch-ack");
    let queue = Queue::<String>::create(name.name()).expect("create");
    queue.put_many(&strings(&PREFILL)).expect("put_many");
    // Stopped right after the first acknowledgement of the batch was committed.
    kill_child_at("batch.ack", "queue.acked", &name);
    let report = inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    // `to_vec` takes the lock: the next locker is told the holder died and recounts. Nothing
    // is ready: "a" is acknowledged, "b" and "c" in flight with the dead process.
    assert!(queue.to_vec().expect("read after the kill").is_empty());
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 2);
    let got = drain_all(&queue);
    assert_eq!(
        got,
        [("b".to_owned(), 2), ("c".to_owned(), 2)],
        "the acknowledged item came back, or an unacknowledged one was lost"
    );
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
}

// ---------------------------------------------------------------------------------------------
// Throughput (not a test: `cargo test --release --test queue -- --ignored --nocapture`)

fn produce_numbers((queue, count): (Queue<u64>, u64)) {
    exit_with_parent();
    for i in 0..count {
        queue.put(&i).expect("put");
    }
}

fn consume_numbers((queue, count): (Queue<u64>, u64)) -> u64 {
    exit_with_parent();
    (0..count).map(|_| queue.get().expect("get")).sum()
}

#[test]
#[ignore = "a measurement, not a check; run it with --release"]
#[allow(clippy::cast_precision_loss, reason = "a rate for people to read")]
fn throughput_of_one_producer_and_one_consumer_process() {
    const COUNT: u64 = 1_000_000;
    memspace::init();
    let queue = Queue::<u64>::new().expect("queue");
    let started = Instant::now();
    for i in 0..COUNT {
        queue.put(&i).expect("put");
        std::hint::black_box(queue.get().expect("get"));
    }
    eprintln!(
        "one process: {:.0} ns per put+get",
        started.elapsed().as_nanos() as f64 / COUNT as f64
    );
    let batch: Vec<u64> = (0..64).collect();
    let started = Instant::now();
    for _ in 0..COUNT / 64 {
        queue.put_many(&batch).expect("put_many");
        std::hint::black_box(queue.get_many(64).expect("get_many"));
    }
    eprintln!(
        "one process, batches of 64: {:.0} ns per item put and got",
        started.elapsed().as_nanos() as f64 / COUNT as f64
    );
    for capacity in [None, Some(1024)] {
        let queue = match capacity {
            Some(capacity) => Queue::<u64>::bounded(capacity),
            None => Queue::<u64>::new(),
        }
        .expect("queue");
        let started = Instant::now();
        let mut consumer = Process::new(consume_numbers, (queue.clone(), COUNT));
        let mut producer = Process::new(produce_numbers, (queue.clone(), COUNT));
        consumer.start().expect("start");
        producer.start().expect("start");
        producer.join().expect("producer");
        assert_eq!(consumer.join().expect("consumer"), COUNT * (COUNT - 1) / 2);
        let elapsed = started.elapsed();
        eprintln!(
            "capacity {capacity:?}: {COUNT} items in {elapsed:.2?}: {:.0} items/s",
            COUNT as f64 / elapsed.as_secs_f64()
        );
    }
}
