//! One behaviour suite, two backends: every test here runs once on shared memory and once on a
//! real `redis-server` (started per test on a free loopback port, see
//! `memspace_testkit::backends`), through the same public API. Names are the only difference:
//! `mstest.PID.TAG.N` or `redis://127.0.0.1:PORT/mstest.PID.TAG.N`.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::collections::HashMap;
use std::time::Duration;

use memspace::collections::{Queue, QueueError, SharedMap, SharedValue, Value};
use memspace::segment::Kind;
use memspace::spawn::{Process, StartMethod};
use memspace::sync::{Event, LockError, TryLockError};
use memspace::{Error, Lock, OpenError, SharedList};
use memspace_testkit::Running;
use memspace_testkit::backends::Fixture;
use serde::{Deserialize, Serialize};

memspace_testkit::on_both_backends!(
    a_list_pushes_extends_and_reads_back_in_order,
    structured_items_come_back_equal_and_other_types_are_decode_errors,
    a_list_read_item_by_item_skips_an_item_of_another_type,
    names_are_created_once_opened_by_kind_and_removed,
    a_map_inserts_replaces_removes_and_clears,
    processes_racing_to_insert_a_key_if_absent_all_get_the_first_value,
    a_bounded_queue_is_fifo_and_refuses_past_its_capacity,
    a_queue_item_put_back_or_dropped_is_delivered_again_and_acked_once,
    an_item_put_back_behind_many_in_flight_is_delivered_next,
    a_receiver_discards_an_item_of_another_type_and_receives_the_next,
    a_receiver_waiting_in_one_thread_gets_what_other_threads_put_through_clones,
    a_value_updates_atomically_and_checks_its_type,
    an_event_is_set_cleared_and_waited_for,
    a_lock_excludes_a_second_holder_until_released,
    a_forked_child_is_told_its_parent_holds_the_lock,
    forked_processes_sharing_a_list_under_a_lock_see_every_item,
    spawned_processes_sharing_a_list_under_a_lock_see_every_item,
    processes_updating_a_value_lose_no_update,
    a_shared_value_of_a_struct_is_read_replaced_and_updated,
    processes_updating_a_shared_value_lose_no_update,
    a_queue_hands_each_item_to_exactly_one_of_several_processes,
    a_queue_puts_and_takes_batches_in_order_and_settles_them_together,
    batches_put_by_one_process_reach_another_exactly_once_and_in_order,
);

// Every kind, the lock, and processes sharing them, on a three-master Redis Cluster, every
// name given through one node (most objects live on another, which it redirects to).
memspace_testkit::on_a_redis_cluster_too!(
    a_list_pushes_extends_and_reads_back_in_order,
    names_are_created_once_opened_by_kind_and_removed,
    a_map_inserts_replaces_removes_and_clears,
    a_bounded_queue_is_fifo_and_refuses_past_its_capacity,
    a_queue_item_put_back_or_dropped_is_delivered_again_and_acked_once,
    a_receiver_waiting_in_one_thread_gets_what_other_threads_put_through_clones,
    a_value_updates_atomically_and_checks_its_type,
    an_event_is_set_cleared_and_waited_for,
    a_lock_excludes_a_second_holder_until_released,
    forked_processes_sharing_a_list_under_a_lock_see_every_item,
    processes_updating_a_shared_value_lose_no_update,
    a_queue_hands_each_item_to_exactly_one_of_several_processes,
);

// ---------------------------------------------------------------------------------------------
// SharedList

fn a_list_pushes_extends_and_reads_back_in_order(fx: &Fixture) {
    let name = fx.name("list");
    let list = SharedList::<i64>::create(&name).expect("create");
    assert!(list.is_empty().expect("is_empty"));
    list.push(&0).expect("push");
    list.extend([1, 2]).expect("extend");
    assert_eq!(list.to_vec().expect("to_vec"), [0, 1, 2]);
    assert_eq!(list.len().expect("len"), 3);
    assert_eq!(list.get(1).expect("get"), Some(1));
    assert_eq!(list.get(3).expect("get past the end"), None);
    let iterated: Vec<i64> = list.iter().collect::<Result<_, _>>().expect("iter");
    assert_eq!(iterated, [0, 1, 2]);

    let other = SharedList::<i64>::open(&name).expect("open");
    other.push(&3).expect("push through another handle");
    assert_eq!(list.to_vec().expect("to_vec"), [0, 1, 2, 3]);
    assert_eq!(other.name().as_str(), name);
    assert_eq!(list.segment().is_some(), !fx.is_redis());
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
    tags: Vec<String>,
    weight: Option<f64>,
}

fn structured_items_come_back_equal_and_other_types_are_decode_errors(fx: &Fixture) {
    let name = fx.name("jobs");
    let jobs = SharedList::<Job>::create(&name).expect("create");
    let job = Job {
        id: 7,
        name: "resize".into(),
        tags: vec!["img".into(), "fast".into()],
        weight: Some(0.5),
    };
    jobs.push(&job).expect("push");
    let same = SharedList::<Job>::open(&name).expect("open");
    assert_eq!(same.get(0).expect("get"), Some(job));

    let numbers = SharedList::<u32>::open(&name).expect("open as numbers");
    assert!(
        matches!(numbers.get(0), Err(Error::Decode { index: 0, .. })),
        "{:?}",
        numbers.get(0)
    );
    assert!(matches!(numbers.to_vec(), Err(Error::Decode { .. })));
}

fn a_list_read_item_by_item_skips_an_item_of_another_type(fx: &Fixture) {
    let name = fx.name("skip");
    let numbers = SharedList::<i64>::create(&name).expect("create");
    numbers.push(&1).expect("push");
    SharedList::<String>::open(&name)
        .expect("open as strings")
        .push(&"a string".to_owned())
        .expect("push a string");
    numbers.push(&3).expect("push");

    assert!(
        matches!(numbers.to_vec(), Err(Error::Decode { index: 1, .. })),
        "to_vec stops at the string"
    );
    let mut items = numbers.iter();
    assert_eq!(items.next().map(Result::ok), Some(Some(1)));
    match items.next() {
        Some(Err(err @ Error::Decode { index: 1, .. })) => {
            assert!(err.to_string().contains(&name), "{err}");
        }
        other => panic!("expected a decode error for item 1, got {other:?}"),
    }
    assert_eq!(
        items.next().map(Result::ok),
        Some(Some(3)),
        "the iteration goes on past the item it cannot decode"
    );
    assert!(items.next().is_none());
    let readable: Vec<i64> = numbers.iter().filter_map(Result::ok).collect();
    assert_eq!(readable, [1, 3]);
    assert_eq!(numbers.get(2).expect("get"), Some(3));
}

fn names_are_created_once_opened_by_kind_and_removed(fx: &Fixture) {
    let name = fx.name("kinds");
    let list = SharedList::<u8>::create(&name).expect("create");
    assert!(matches!(
        SharedList::<u8>::create(&name),
        Err(Error::Open(OpenError::AlreadyExists { .. }))
    ));
    match SharedMap::<String, u8>::open(&name) {
        Err(Error::Open(OpenError::WrongKind {
            found: Kind::List,
            expected: Kind::Map,
            ..
        })) => {}
        other => panic!("expected WrongKind, got {other:?}"),
    }
    assert!(matches!(
        Lock::open(&name),
        Err(Error::Open(OpenError::WrongKind { .. }))
    ));
    list.unlink().expect("unlink");
    assert!(matches!(
        SharedList::<u8>::open(&name),
        Err(Error::Open(OpenError::NotFound { .. }))
    ));
    // A backend value selects the same objects as a full name.
    let short = name.rsplit('/').next().expect("a name");
    let created = SharedList::<u8>::create_in(&fx.backend(), short).expect("create_in");
    created.push(&9).expect("push");
    let opened = SharedList::<u8>::open(&name).expect("open by full name");
    assert_eq!(opened.to_vec().expect("to_vec"), [9]);
}

// ---------------------------------------------------------------------------------------------
// SharedMap

fn a_map_inserts_replaces_removes_and_clears(fx: &Fixture) {
    let name = fx.name("map");
    let ages = SharedMap::<String, u32>::create(&name).expect("create");
    assert_eq!(ages.insert(&"ada".into(), &36).expect("insert"), None);
    assert_eq!(ages.insert(&"ada".into(), &37).expect("replace"), Some(36));
    assert_eq!(ages.insert(&"alan".into(), &41).expect("insert"), None);
    let same = SharedMap::<String, u32>::open(&name).expect("open");
    assert_eq!(same.get(&"ada".into()).expect("get"), Some(37));
    assert!(same.contains_key(&"alan".into()).expect("contains"));
    assert!(!same.contains_key(&"grace".into()).expect("contains"));
    assert_eq!(same.len().expect("len"), 2);
    let all: HashMap<String, u32> = same.to_hash_map().expect("to_hash_map");
    assert_eq!(
        all,
        HashMap::from([("ada".to_owned(), 37), ("alan".to_owned(), 41)])
    );
    let mut keys: Vec<String> = same.keys().collect::<Result<_, _>>().expect("keys");
    keys.sort();
    assert_eq!(keys, ["ada", "alan"]);
    assert_eq!(ages.remove(&"ada".into()).expect("remove"), Some(37));
    assert_eq!(ages.remove(&"ada".into()).expect("remove again"), None);
    ages.clear().expect("clear");
    assert!(same.is_empty().expect("is_empty"));
    assert_eq!(same.get(&"alan".into()).expect("get"), None);
}

/// Claims `key` for this process with `insert_if_absent`; returns this process's pid and the
/// value the key holds afterwards.
fn claim((map, key, ready): (SharedMap<String, u32>, String, Event)) -> (u32, u32) {
    ready.wait().expect("wait for the start");
    let me = std::process::id();
    let held = map.insert_if_absent(&key, &me).expect("insert_if_absent");
    (me, held.unwrap_or(me))
}

fn processes_racing_to_insert_a_key_if_absent_all_get_the_first_value(fx: &Fixture) {
    let map = SharedMap::<String, u32>::create(&fx.name("claims")).expect("create");
    assert_eq!(
        map.insert_if_absent(&"mine".into(), &1).expect("insert"),
        None
    );
    assert_eq!(
        map.insert_if_absent(&"mine".into(), &2).expect("kept"),
        Some(1)
    );
    assert_eq!(map.get(&"mine".into()).expect("get"), Some(1));
    let go = Event::create(&fx.name("go")).expect("event");
    let mut claimants: Vec<_> = (0..4)
        .map(|_| {
            Running::start(Process::new(
                claim,
                (map.clone(), "leader".to_owned(), go.clone()),
            ))
        })
        .collect();
    go.set().expect("start the race");
    let results: Vec<(u32, u32)> = claimants
        .iter_mut()
        .map(|c| c.join().expect("a claimant"))
        .collect();
    let leader = map.get(&"leader".into()).expect("get").expect("a leader");
    assert!(results.iter().any(|&(pid, _)| pid == leader), "{results:?}");
    assert!(
        results.iter().all(|&(_, held)| held == leader),
        "{results:?}"
    );
    assert_eq!(map.len().expect("len"), 2);
}

// ---------------------------------------------------------------------------------------------
// Queue

fn a_bounded_queue_is_fifo_and_refuses_past_its_capacity(fx: &Fixture) {
    let name = fx.name("queue");
    let jobs = Queue::<String>::create_bounded(&name, 2).expect("create");
    assert_eq!(jobs.capacity(), Some(2));
    jobs.put(&"first".into()).expect("put");
    jobs.put(&"second".into()).expect("put");
    assert!(matches!(
        jobs.try_put(&"third".into()),
        Err(QueueError::Full { capacity: 2, .. })
    ));
    assert!(matches!(
        jobs.put_timeout(&"third".into(), Duration::from_millis(20)),
        Err(QueueError::Timeout { .. })
    ));
    assert_eq!(jobs.to_vec().expect("to_vec"), ["first", "second"]);
    let same = Queue::<String>::open(&name).expect("open");
    assert_eq!(same.len().expect("len"), 2);
    assert_eq!(same.get().expect("get"), "first");
    jobs.try_put(&"third".into()).expect("a place is free");
    assert_eq!(same.get().expect("get"), "second");
    assert_eq!(same.get().expect("get"), "third");
    assert!(matches!(same.try_get(), Err(QueueError::Empty { .. })));
    assert!(matches!(
        same.get_timeout(Duration::from_millis(20)),
        Err(QueueError::Timeout { .. })
    ));
    assert!(same.is_empty().expect("is_empty"));
}

fn a_queue_puts_and_takes_batches_in_order_and_settles_them_together(fx: &Fixture) {
    let name = fx.name("batches");
    let queue = Queue::<u64>::create(&name).expect("create");
    queue.put_many(&[]).expect("an empty batch");
    queue
        .put_many(&(0..10).collect::<Vec<_>>())
        .expect("put_many");
    queue.put(&10).expect("put");
    assert_eq!(queue.len().expect("len"), 11);
    assert_eq!(queue.get_many(4).expect("get_many"), [0, 1, 2, 3]);
    let batch = queue.receive_many(5).expect("receive_many");
    assert_eq!(batch.values(), [4, 5, 6, 7, 8]);
    assert_eq!(batch.len(), 5);
    assert!(batch.deliveries().all(|d| d == 1));
    assert_eq!(queue.in_flight().expect("in_flight"), 5);
    // Dropped: back in their places, before the items put after them.
    drop(batch);
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 7);
    let batch = queue.receive_many(100).expect("receive_many");
    assert_eq!(batch.values(), [4, 5, 6, 7, 8, 9, 10]);
    assert!(batch.deliveries().eq([2, 2, 2, 2, 2, 1, 1]));
    let seqs: Vec<u64> = batch.seqs().collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(batch.ack().expect("ack"), [4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
    assert!(matches!(
        queue.try_get_many(3),
        Err(QueueError::Empty { .. })
    ));
    // A bounded queue takes a batch only whole, and never one larger than its capacity.
    let bounded_name = fx.name("bounded-batches");
    let bounded = Queue::<u64>::create_bounded(&bounded_name, 4).expect("create");
    assert!(matches!(
        bounded.put_many(&[1, 2, 3, 4, 5]),
        Err(QueueError::Full { capacity: 4, .. })
    ));
    bounded.put_many(&[1, 2, 3]).expect("put_many");
    assert_eq!(bounded.len().expect("len"), 3);
    let batch = bounded.receive_many(2).expect("receive_many");
    batch.nack().expect("nack");
    assert_eq!(bounded.get_many(10).expect("get_many"), [1, 2, 3]);
    // A batch stops before an item of another type, which the next receive reports.
    Queue::<String>::open(&name)
        .expect("open")
        .put(&"not a number".to_owned())
        .expect("put");
    queue.put_many(&[20, 21]).expect("put_many");
    Queue::<String>::open(&name)
        .expect("open")
        .put(&"not a number".to_owned())
        .expect("put");
    match queue.get_many(10) {
        Err(QueueError::Undecodable(item)) => {
            item.discard().expect("discard");
        }
        other => panic!("expected an undecodable item, got {other:?}"),
    }
    assert_eq!(queue.get_many(10).expect("get_many"), [20, 21]);
    assert!(matches!(
        queue.get_many(10),
        Err(QueueError::Undecodable(_))
    ));
}

fn put_batches((name, batches): (String, u64)) {
    let queue = Queue::<u64>::open(&name).expect("open");
    for b in 0..batches {
        queue
            .put_many(&(b * 10..b * 10 + 10).collect::<Vec<_>>())
            .expect("put_many");
    }
}

fn batches_put_by_one_process_reach_another_exactly_once_and_in_order(fx: &Fixture) {
    let name = fx.name("batch-processes");
    let queue = Queue::<u64>::create(&name).expect("create");
    let mut producer = Running::start(Process::new(put_batches, (name, 50)));
    let mut got = Vec::new();
    while got.len() < 500 {
        if got.len() % 2 == 0 {
            got.extend(queue.get_many(7).expect("get_many"));
        } else {
            got.extend(
                queue
                    .receive_many(13)
                    .expect("receive_many")
                    .ack()
                    .expect("ack"),
            );
        }
    }
    producer.join().expect("producer");
    assert_eq!(got, (0..500).collect::<Vec<_>>());
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
}

fn a_queue_item_put_back_or_dropped_is_delivered_again_and_acked_once(fx: &Fixture) {
    let name = fx.name("redeliver");
    let queue = Queue::<u32>::create(&name).expect("create");
    queue.put(&1).expect("put");
    queue.put(&2).expect("put");
    let first = queue.receive().expect("receive");
    assert_eq!((*first.value(), first.deliveries()), (1, 1));
    assert_eq!(queue.in_flight().expect("in_flight"), 1);
    first.nack().expect("nack");
    let again = queue.receive().expect("receive again");
    assert_eq!((*again.value(), again.deliveries()), (1, 2));
    drop(again);
    let third = queue.receive().expect("receive a third time");
    assert_eq!((*third.value(), third.deliveries()), (1, 3));
    let seq_of_first = third.seq();
    assert_eq!(third.ack().expect("ack"), 1);
    let second = queue.receive().expect("receive the second item");
    assert_eq!(*second.value(), 2);
    assert!(second.seq() > seq_of_first, "seq grows in put order");
    assert_eq!(second.ack().expect("ack"), 2);
    assert_eq!(
        (
            queue.len().expect("len"),
            queue.in_flight().expect("in_flight")
        ),
        (0, 0)
    );
    assert!(matches!(queue.try_receive(), Err(QueueError::Empty { .. })));
}

fn an_item_put_back_behind_many_in_flight_is_delivered_next(fx: &Fixture) {
    // (Redis's XAUTOCLAIM looks at no more than 10 pending entries per call: an item put back
    // behind more than that must still be found.)
    let name = fx.name("behind");
    let queue = Queue::<u32>::create(&name).expect("create");
    for i in 0..12 {
        queue.put(&i).expect("put");
    }
    let mut held: Vec<_> = (0..11).map(|_| queue.receive().expect("receive")).collect();
    let last = held.pop().expect("eleven deliveries");
    assert_eq!(*last.value(), 10);
    last.nack().expect("nack");
    let again = queue.try_receive().expect("the put-back item is waiting");
    assert_eq!((*again.value(), again.deliveries()), (10, 2));
    let next = queue.try_receive().expect("the twelfth item");
    assert_eq!(*next.value(), 11);
    drop((again, next, held));
}

fn a_receiver_discards_an_item_of_another_type_and_receives_the_next(fx: &Fixture) {
    let name = fx.name("undecodable");
    let numbers = Queue::<u64>::create(&name).expect("create");
    Queue::<String>::open(&name)
        .expect("open as strings")
        .put(&"a string".to_owned())
        .expect("put a string");
    numbers.put(&7).expect("put");
    numbers.put(&8).expect("put");

    // Dropping the error puts the item back in its place: it is the next one again.
    match numbers.try_receive() {
        Err(QueueError::Undecodable(item)) => {
            assert_eq!(item.deliveries(), 1);
            assert_eq!(item.name().as_str(), name);
            assert_eq!(item.expected(), "u64");
            assert_eq!(
                numbers.in_flight().expect("in_flight"),
                1,
                "held by the error"
            );
        }
        other => panic!("expected an undecodable item, got {other:?}"),
    }
    if !fx.is_redis() {
        // (A Redis queue counts an item put back as in flight until it is taken again.)
        assert_eq!(numbers.len().expect("len"), 3, "put back");
    }

    // Taken again, it is dead-lettered and discarded; the items behind it then come.
    let dead_letters = Queue::<String>::new().expect("dead-letter queue");
    let err = numbers.get().expect_err("the string is still first");
    let message = err.to_string();
    assert!(
        message.contains(&name) && message.contains("`u64`") && message.contains("discard"),
        "the message names the queue and the type, and says what to do: {message}"
    );
    let QueueError::Undecodable(item) = err else {
        panic!("expected an undecodable item, got {err:?}")
    };
    assert_eq!(item.deliveries(), 2);
    let text: String = item.decode().expect("it is a string");
    dead_letters.put(&text).expect("dead-letter it");
    assert!(matches!(
        item.decode::<u64>(),
        Err(Error::Decode {
            expected: "u64",
            ..
        })
    ));
    let payload = item.payload().to_vec();
    assert_eq!(item.discard().expect("discard"), payload);
    assert_eq!(numbers.get().expect("the next item"), 7);
    assert_eq!(numbers.get().expect("the next item"), 8);
    assert!(numbers.is_empty().expect("is_empty"));
    assert_eq!(numbers.unacknowledged().expect("unacknowledged"), 0);
    assert_eq!(dead_letters.get().expect("the dead letter"), "a string");

    // `nack` puts it back at once, reporting an error if that fails.
    Queue::<i64>::open(&name)
        .expect("open as signed numbers")
        .put(&-1)
        .expect("put -1");
    let Err(QueueError::Undecodable(item)) = numbers.try_get() else {
        panic!("-1 is not a u64")
    };
    item.nack().expect("nack");
    let Err(QueueError::Undecodable(item)) = numbers.try_get() else {
        panic!("-1 is not a u64")
    };
    assert_eq!(item.deliveries(), 2, "put back and taken again");
    assert_eq!(item.decode::<i64>().expect("an i64"), -1);
    item.discard().expect("discard");
    assert!(numbers.is_empty().expect("is_empty"));
}

fn a_receiver_waiting_in_one_thread_gets_what_other_threads_put_through_clones(fx: &Fixture) {
    const PER_THREAD: u32 = 50;
    let queue = Queue::<u32>::create(&fx.name("threads")).expect("create");
    let list = SharedList::<u32>::create(&fx.name("threadslist")).expect("create a list");
    std::thread::scope(|scope| {
        // The receiver blocks first; the others must still get their calls through.
        let receiver = scope.spawn(|| {
            (0..2 * PER_THREAD)
                .map(|_| queue.get().expect("get"))
                .collect::<Vec<_>>()
        });
        for offset in [0, PER_THREAD] {
            let (queue, list) = (queue.clone(), list.clone());
            scope.spawn(move || {
                for item in offset..offset + PER_THREAD {
                    queue.put(&item).expect("put");
                    list.push(&item).expect("push");
                }
            });
        }
        let mut got = receiver.join().expect("the receiver");
        got.sort_unstable();
        assert_eq!(got, (0..2 * PER_THREAD).collect::<Vec<_>>());
    });
    assert_eq!(list.len().expect("len"), u64::from(2 * PER_THREAD));
}

// ---------------------------------------------------------------------------------------------
// Value, Event, Lock

fn a_value_updates_atomically_and_checks_its_type(fx: &Fixture) {
    let name = fx.name("value");
    let counter = Value::create(&name, 5u64).expect("create");
    assert_eq!(counter.get().expect("get"), 5);
    assert_eq!(counter.update(|v| *v += 1).expect("update"), 6);
    let same = Value::<u64>::open(&name).expect("open");
    same.set(41).expect("set");
    assert_eq!(counter.update(|v| *v += 1).expect("update"), 42);
    assert!(matches!(
        Value::<u32>::open(&name),
        Err(Error::Open(OpenError::TypeMismatch { .. }))
    ));
}

fn an_event_is_set_cleared_and_waited_for(fx: &Fixture) {
    let name = fx.name("event");
    let ready = Event::create(&name).expect("create");
    let same = Event::open(&name).expect("open");
    assert!(!same.is_set().expect("is_set"));
    assert!(!same.wait_timeout(Duration::from_millis(10)).expect("wait"));
    let setter = {
        let ready = ready.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            ready.set().expect("set");
        })
    };
    same.wait().expect("wait");
    setter.join().expect("the setter thread");
    assert!(same.is_set().expect("is_set"));
    ready.clear().expect("clear");
    assert!(!same.is_set().expect("is_set"));
}

fn a_lock_excludes_a_second_holder_until_released(fx: &Fixture) {
    let name = fx.name("lock");
    let lock = Lock::create(&name).expect("create");
    let other = Lock::open(&name).expect("open");
    let first_token;
    {
        let guard = lock.lock().expect("lock");
        first_token = guard.fencing_token();
        assert_eq!(first_token.is_some(), fx.is_redis());
        assert_eq!(other.owner().expect("owner"), Some(std::process::id()));
        // The holder itself is told, rather than waiting for itself forever.
        assert!(matches!(
            other.try_lock_for(Duration::from_millis(30)),
            Err(TryLockError::Lock(LockError::WouldDeadlock { .. }))
        ));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert!(matches!(
                    other.try_lock(),
                    Err(TryLockError::WouldBlock { .. })
                ));
                assert!(matches!(
                    other.try_lock_for(Duration::from_millis(30)),
                    Err(TryLockError::Timeout { .. })
                ));
            });
        });
        guard.check().expect("still held");
    }
    let guard = other.try_lock().expect("free after the guard is dropped");
    if fx.is_redis() {
        assert!(guard.fencing_token() > first_token, "tokens grow");
        assert_eq!(
            other.last_fencing_token().expect("last_fencing_token"),
            guard.fencing_token()
        );
    }
    guard.unlock().expect("unlock");
    if fx.is_redis() {
        assert_eq!(
            lock.owner().expect("owner"),
            None,
            "a released lease names no holder"
        );
    }
}

/// What a child sees when it tries the lock its parent holds.
fn try_the_lock(lock: Lock) -> String {
    match lock.try_lock() {
        Ok(_) => "acquired".to_owned(),
        Err(TryLockError::WouldBlock { .. }) => "would block".to_owned(),
        Err(other) => format!("{other:?}"),
    }
}

fn a_forked_child_is_told_its_parent_holds_the_lock(fx: &Fixture) {
    let lock = Lock::create(&fx.name("forklock")).expect("create");
    let guard = lock.lock().expect("lock");
    let seen = Running::start_by(StartMethod::Fork, try_the_lock, lock.clone())
        .join()
        .expect("the child");
    // Not `WouldDeadlock`: the child is another process, whatever it inherited.
    assert_eq!(seen, "would block");
    guard.check().expect("still the parent's");
}

// ---------------------------------------------------------------------------------------------
// Across processes

/// The tutorial's worker: pushes 0, 1, 2 under the lock.
fn push_three((nums, lock): (SharedList<i64>, Lock)) {
    let _held = lock.lock().expect("lock");
    for i in 0..3 {
        nums.push(&i).expect("push");
    }
}

fn processes_share_a_list(fx: &Fixture, method: StartMethod) {
    let nums = SharedList::<i64>::create(&fx.name("nums")).expect("create the list");
    let lock = Lock::create(&fx.name("numslock")).expect("create the lock");
    let mut workers: Vec<_> = (0..3)
        .map(|_| Running::start_by(method, push_three, (nums.clone(), lock.clone())))
        .collect();
    for worker in &mut workers {
        worker.join().expect("a worker");
    }
    assert_eq!(
        nums.to_vec().expect("to_vec"),
        [0, 1, 2, 0, 1, 2, 0, 1, 2],
        "{method}"
    );
}

fn forked_processes_sharing_a_list_under_a_lock_see_every_item(fx: &Fixture) {
    processes_share_a_list(fx, StartMethod::Fork);
}

fn spawned_processes_sharing_a_list_under_a_lock_see_every_item(fx: &Fixture) {
    processes_share_a_list(fx, StartMethod::Spawn);
}

const ADDERS: u64 = 4;
const ADDS: u64 = 25;

fn add_many(counter: Value<u64>) {
    for _ in 0..ADDS {
        counter.update(|v| *v += 1).expect("update");
    }
}

fn processes_updating_a_value_lose_no_update(fx: &Fixture) {
    let counter = Value::create(&fx.name("counter"), 0u64).expect("create");
    let mut adders: Vec<_> = (0..ADDERS)
        .map(|_| Running::start(Process::new(add_many, counter.clone())))
        .collect();
    for adder in &mut adders {
        adder.join().expect("an adder");
    }
    assert_eq!(counter.get().expect("get"), ADDERS * ADDS);
}

/// A struct, as `Manager().Value` holds any object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Status {
    stage: String,
    done: Vec<u32>,
}

fn a_shared_value_of_a_struct_is_read_replaced_and_updated(fx: &Fixture) {
    let name = fx.name("status");
    let first = Status {
        stage: "start".to_owned(),
        done: vec![],
    };
    let status = SharedValue::create(&name, &first).expect("create");
    assert_eq!(status.get().expect("get"), first);
    let same = SharedValue::<Status>::open(&name).expect("open");
    // Values of every size, so that a replacement moves around in the segment.
    for round in 0..50u32 {
        let stage = "x".repeat((round as usize * 37) % 900);
        same.set(&Status {
            stage: stage.clone(),
            done: (0..round).collect(),
        })
        .expect("set");
        assert_eq!(status.get().expect("get").stage, stage);
    }
    let updated = status
        .update(|s| {
            "end".clone_into(&mut s.stage);
            s.done.push(99);
        })
        .expect("update");
    assert_eq!(updated.stage, "end");
    assert_eq!(same.get().expect("get"), updated);
    // Another type: a decode error naming the value, never a wrong value.
    let err = SharedValue::<u64>::open(&name)
        .expect("open: the type is checked when read")
        .get()
        .expect_err("a Status is no u64");
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains(&name), "{err}");
    if let Some(segment) = status.segment() {
        assert!(
            segment.size() <= 64 << 10,
            "50 replacements of at most 1 KB took {} bytes",
            segment.size()
        );
    }
}

fn append_many(log: SharedValue<Vec<u64>>) {
    for i in 0..ADDS {
        log.update(|v| v.push(i)).expect("update");
    }
}

fn processes_updating_a_shared_value_lose_no_update(fx: &Fixture) {
    let log = SharedValue::create(&fx.name("log"), &Vec::<u64>::new()).expect("create");
    let mut appenders: Vec<_> = (0..ADDERS)
        .map(|_| Running::start(Process::new(append_many, log.clone())))
        .collect();
    for appender in &mut appenders {
        appender.join().expect("an appender");
    }
    let mut all = log.get().expect("get");
    assert_eq!(all.len() as u64, ADDERS * ADDS);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, ADDS, "each appender's items, none lost");
}

const ITEMS: u32 = 200;

fn take_until_stop(queue: Queue<u32>) -> Vec<u32> {
    let mut taken = Vec::new();
    loop {
        let item = queue.get().expect("get");
        if item == u32::MAX {
            return taken;
        }
        taken.push(item);
    }
}

fn a_queue_hands_each_item_to_exactly_one_of_several_processes(fx: &Fixture) {
    let queue = Queue::<u32>::create(&fx.name("work")).expect("create");
    let mut consumers: Vec<_> = (0..3)
        .map(|_| Running::start(Process::new(take_until_stop, queue.clone())))
        .collect();
    for item in 0..ITEMS {
        queue.put(&item).expect("put");
    }
    for _ in &consumers {
        queue.put(&u32::MAX).expect("put a stop");
    }
    let mut all: Vec<u32> = consumers
        .iter_mut()
        .flat_map(|consumer| consumer.join().expect("a consumer"))
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..ITEMS).collect::<Vec<_>>());
}
