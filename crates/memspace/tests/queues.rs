//! `Queue`: bounded and unbounded, blocking and timed, many producers and consumers on threads
//! and processes, a model test against `VecDeque`, and consumers killed with items in flight.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use memspace::collections::{Queue, QueueError};
use memspace::inspect;
use memspace::spawn::{Mode, Process, StartMethod, Worker};
use memspace::sync::Event;
use proptest::prelude::*;

fn watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_mins(1));
        eprintln!("watchdog: the test hung");
        std::process::abort();
    });
}

fn modes(test: &str) -> [Mode; 3] {
    memspace::init();
    memspace::spawn::set_child_args([
        std::env::current_exe()
            .expect("test binary")
            .into_os_string(),
        "--exact".into(),
        test.into(),
        "--nocapture".into(),
    ]);
    watchdog();
    [
        Mode::Thread,
        Mode::Process(StartMethod::Fork),
        Mode::Process(StartMethod::Spawn),
    ]
}

#[test]
fn a_bounded_queue_is_full_at_its_capacity_and_empty_after() {
    watchdog();
    let queue = Queue::<u32>::bounded(6).expect("queue");
    for i in 0..6 {
        queue.put(&i).expect("put");
    }
    assert_eq!(queue.len(), 6);
    assert!(matches!(
        queue.try_put(&6),
        Err(QueueError::Full { capacity: 6, .. })
    ));
    assert!(matches!(
        queue.put_timeout(&6, Duration::from_millis(20)),
        Err(QueueError::Timeout { .. })
    ));
    for i in 0..6 {
        assert_eq!(queue.get().expect("get"), i);
    }
    assert!(queue.is_empty());
    assert!(matches!(queue.try_get(), Err(QueueError::Empty { .. })));
    assert!(matches!(
        queue.get_timeout(Duration::from_millis(20)),
        Err(QueueError::Timeout { .. })
    ));
    // Room comes back as items are acknowledged.
    queue.put(&7).expect("room again");
}

fn produce((queue, producer, count): (Queue<(u32, u32)>, u32, u32)) {
    for seq in 0..count {
        queue.put(&(producer, seq)).expect("put");
    }
}

fn consume((queue, count): (Queue<(u32, u32)>, u32)) -> Vec<(u32, u32)> {
    (0..count).map(|_| queue.get().expect("get")).collect()
}

#[test]
fn producers_and_consumers_exchange_every_item_exactly_once() {
    for mode in modes("producers_and_consumers_exchange_every_item_exactly_once") {
        let queue = Queue::<(u32, u32)>::bounded(100).expect("queue");
        let (producers, per_producer, consumers) = (4u32, 2000u32, 3u32);
        let total = producers * per_producer;
        let mut workers: Vec<Worker<_, ()>> = (0..producers)
            .map(|p| Worker::new(mode, produce, (queue.clone(), p, per_producer)))
            .collect();
        let shares = [total / 3, total / 3, total - 2 * (total / 3)];
        let mut eaters: Vec<Worker<_, Vec<(u32, u32)>>> = (0..consumers as usize)
            .map(|c| Worker::new(mode, consume, (queue.clone(), shares[c])))
            .collect();
        for w in &mut workers {
            w.start().expect("start producer");
        }
        for e in &mut eaters {
            e.start().expect("start consumer");
        }
        for w in &mut workers {
            w.join().expect("producer");
        }
        let mut all = Vec::new();
        for e in &mut eaters {
            let got = e.join().expect("consumer");
            // Each producer's items reach any one consumer in the order they were put.
            for p in 0..producers {
                let seqs: Vec<u32> = got
                    .iter()
                    .filter(|(w, _)| *w == p)
                    .map(|(_, s)| *s)
                    .collect();
                assert!(
                    seqs.windows(2).all(|w| w[0] < w[1]),
                    "{mode:?}: out of order"
                );
            }
            all.extend(got);
        }
        assert_eq!(all.len() as u32, total, "{mode:?}");
        let distinct: HashSet<_> = all.into_iter().collect();
        assert_eq!(distinct.len() as u32, total, "{mode:?}: duplicates");
        assert!(queue.is_empty());
        assert_eq!(queue.unacknowledged(), 0);
        assert!(inspect::verify(queue.segment()).is_consistent());
    }
}

#[test]
fn a_producer_joined_before_the_consumer_drains_does_not_deadlock() {
    let queue = Queue::<String>::new().expect("queue");
    let mut producer = Process::new(
        |q: Queue<String>| {
            for i in 0..5000 {
                q.put(&format!("item {i} {}", "x".repeat(100)))
                    .expect("put");
            }
        },
        queue.clone(),
    );
    producer.start().expect("start");
    producer
        .join()
        .expect("the producer finished without a consumer");
    assert_eq!(queue.len(), 5000);
    assert!(queue.get().expect("get").starts_with("item 0 "));
}

fn get_one((queue, started): (Queue<u64>, Event)) -> u64 {
    started.set();
    queue.get().expect("get")
}

#[test]
fn a_blocked_get_is_woken_by_a_put_from_another_process() {
    watchdog();
    let queue = Queue::<u64>::new().expect("queue");
    let started = Event::new().expect("event");
    let mut consumer = Process::new(get_one, (queue.clone(), started.clone()));
    consumer.start().expect("start");
    started.wait();
    std::thread::sleep(Duration::from_millis(50));
    queue.put(&42).expect("put");
    assert_eq!(consumer.join().expect("join"), 42);
}

fn receive_and_hang((queue, took): (Queue<String>, Event)) {
    let delivery = queue.receive().expect("receive");
    assert_eq!(delivery.deliveries(), 1);
    took.set();
    loop {
        std::thread::park();
    }
    #[allow(unreachable_code)]
    drop(delivery);
}

#[test]
fn an_item_taken_by_a_consumer_killed_before_acking_is_delivered_again() {
    watchdog();
    let queue = Queue::<String>::new().expect("queue");
    queue.put(&"precious".to_owned()).expect("put");
    queue.put(&"second".to_owned()).expect("put");
    let took = Event::new().expect("event");
    let mut consumer = Process::new(receive_and_hang, (queue.clone(), took.clone()));
    consumer.start().expect("start");
    took.wait();
    assert_eq!(queue.len(), 1, "one item is in flight");
    assert_eq!(queue.unacknowledged(), 2);
    consumer.kill().expect("SIGKILL");
    let _ = consumer.join();
    // The next receiver finds the taker dead and gets the item again, first.
    let again = queue.receive().expect("receive");
    assert_eq!(again.value(), "precious");
    assert_eq!(again.deliveries(), 2);
    assert_eq!(again.ack().expect("ack"), "precious");
    assert_eq!(queue.get().expect("get"), "second");
    assert_eq!(queue.unacknowledged(), 0);
}

#[test]
fn a_delivery_dropped_without_ack_goes_back() {
    let queue = Queue::<u8>::new().expect("queue");
    queue.put(&1).expect("put");
    {
        let delivery = queue.receive().expect("receive");
        assert_eq!(*delivery.value(), 1);
        assert!(queue.is_empty());
    }
    assert_eq!(queue.len(), 1);
    let again = queue.receive().expect("receive");
    assert_eq!(again.deliveries(), 2);
    assert_eq!(again.ack().expect("ack"), 1);
}

fn churn(queue: Queue<u64>) {
    let mut i = 0u64;
    loop {
        queue.put(&i).expect("put");
        if i.is_multiple_of(3) {
            let _ = queue.try_get();
        }
        i += 1;
    }
}

#[test]
fn producers_and_consumers_killed_at_random_leave_a_working_queue() {
    watchdog();
    let queue = Queue::<u64>::new().expect("queue");
    let mut seed = 0x853c_49e6_748f_ea9b_u64;
    for _ in 0..60 {
        let mut p = Process::new(churn, queue.clone());
        p.start().expect("start");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(100 + seed % 2000));
        p.kill().expect("SIGKILL");
        let _ = p.join();
    }
    // The next operation recounts; then everything waiting can be drained and acknowledged.
    queue.put(&u64::MAX).expect("put after the kills");
    let report = inspect::verify(queue.segment());
    assert!(report.is_consistent(), "{report:?}");
    let mut drained = 0;
    while let Ok(item) = queue.try_get() {
        drained += 1;
        if item == u64::MAX {
            break;
        }
    }
    assert!(drained >= 1);
    assert!(inspect::verify(queue.segment()).is_consistent());
}

#[derive(Debug, Clone)]
enum Op {
    Put(i16),
    Get,
    Receive(bool),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_queue_behaves_like_a_vec_deque(ops in proptest::collection::vec(
        prop_oneof![3 => any::<i16>().prop_map(Op::Put), 2 => Just(Op::Get), 1 => any::<bool>().prop_map(Op::Receive)],
        1..300,
    )) {
        let queue = Queue::<i16>::new().expect("queue");
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                Op::Put(v) => {
                    queue.put(&v).expect("put");
                    model.push_back(v);
                }
                Op::Get => {
                    let got = queue.try_get();
                    if let Some(v) = model.pop_front() {
                        prop_assert_eq!(got.expect("get"), v);
                    } else {
                        let empty = matches!(got, Err(QueueError::Empty { .. }));
                        prop_assert!(empty);
                    }
                }
                Op::Receive(ack) => {
                    if let Some(front) = model.front().copied() {
                        let delivery = queue.try_receive().expect("receive");
                        prop_assert_eq!(*delivery.value(), front);
                        if ack {
                            delivery.ack().expect("ack");
                            model.pop_front();
                        }
                        // Dropped without ack: back at the front.
                    }
                }
            }
            prop_assert_eq!(queue.len(), model.len() as u64);
        }
        prop_assert_eq!(queue.peek_all().expect("peek"), Vec::from(model));
        prop_assert!(inspect::verify(queue.segment()).is_consistent());
    }
}
