//! `Queue` as Python's `JoinableQueue` and 3.13's `Queue.shutdown`: `join` waits until every
//! item put has been acknowledged (by `ack`, `get` or `task_done`) in other threads and
//! processes, `task_done` never counts an item twice nor below zero, `close` wakes blocked
//! getters and putters in other processes with `QueueError::Closed`, `close_immediately`
//! discards what waits, and a worker killed (SIGKILL) holding an item while a `join` waits leaves the
//! join to return once another worker did the item. On shared memory and on Redis, in
//! threads, forked and spawned processes.
//!
//! Events are ordered through shared memory (events, the queue itself, `/proc` states of the
//! children), never by sleeping; no test asserts how long anything took.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::time::Duration;

use memspace::collections::{Queue, QueueError, SharedList};
use memspace::spawn::{JoinError, Mode, Process, Worker};
use memspace::sync::Event;
use memspace_testkit::backends::Fixture;
use memspace_testkit::{Removal, procfs};

/// A short wait that must run out: the condition it waits for cannot happen meanwhile.
const SHORT: Duration = Duration::from_millis(30);

/// Waits until the child `pid` sleeps in a futex wait: blocked in the queue, not on its way.
fn wait_until_asleep_in_futex(pid: u32) {
    while !procfs::asleep_in_futex(pid) {
        assert!(
            !procfs::has_ended(pid),
            "child {pid} ended instead of blocking"
        );
        std::thread::yield_now();
    }
}

fn is_closed_error<T: std::fmt::Debug>(result: Result<T, QueueError>, name: &str) {
    match result {
        Err(err @ QueueError::Closed { .. }) => {
            let shown = err.to_string();
            assert!(shown.contains(name) && shown.contains("closed"), "{shown}");
        }
        other => panic!("expected Closed, got {other:?}"),
    }
}

fn is_timeout_error<T: std::fmt::Debug>(result: Result<T, QueueError>) {
    match result {
        Err(QueueError::Timeout { waited, .. }) => assert_eq!(waited, SHORT),
        other => panic!("expected Timeout, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Threads, fork, spawn (shared memory)

memspace_testkit::per_mode! {
    join_returns_only_after_workers_marked_every_item_done: thread, fork, spawn;
    close_wakes_a_blocked_putter_at_once_and_a_blocked_getter_once_nothing_is_in_flight: thread, fork, spawn;
}

/// Python's worker loop: `get`, work, `task_done`, until the queue is closed. Each item is
/// logged as done before it is marked done; the work waits for `release`.
fn python_style_worker((queue, log, release): (Queue<u32>, SharedList<u32>, Event)) -> u32 {
    let mut done = 0;
    loop {
        let item = match queue.receive() {
            Ok(delivery) => delivery.into_task(),
            Err(QueueError::Closed { .. }) => return done,
            Err(err) => panic!("receive: {err}"),
        };
        release.wait().expect("wait");
        log.push(&item).expect("log");
        queue.task_done().expect("task_done");
        done += 1;
    }
}

fn join_returns_only_after_workers_marked_every_item_done(mode: Mode) {
    const ITEMS: u32 = 40;
    let name = Removal::fresh("join");
    let queue = Queue::<u32>::create(name.name()).expect("create");
    let log = SharedList::<u32>::new().expect("log");
    let release = Event::new().expect("event");
    queue.join().expect("nothing put: join returns at once");
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            let mut worker = Worker::new(
                mode,
                python_style_worker,
                (queue.clone(), log.clone(), release.clone()),
            );
            worker.start().expect("start");
            worker
        })
        .collect();
    for item in 0..ITEMS {
        queue.put(&item).expect("put");
    }
    // No item can be done before `release`.
    is_timeout_error(queue.join_timeout(SHORT));
    assert_eq!(
        queue.unacknowledged().expect("unacknowledged"),
        u64::from(ITEMS)
    );
    release.set().expect("set");
    queue.join().expect("join");
    // Every item was logged before it was marked done, so the log is complete now.
    let mut logged = log.to_vec().expect("log");
    logged.sort_unstable();
    assert_eq!(logged, (0..ITEMS).collect::<Vec<_>>(), "{mode:?}");
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
    // The workers end on the close.
    queue.close().expect("close");
    let done: u32 = workers.iter_mut().map(|w| w.join().expect("worker")).sum();
    assert_eq!(done, ITEMS);
    let report = memspace::inspect::verify(queue.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
}

fn put_until_closed((queue, started): (Queue<u32>, Event)) -> String {
    started.set().expect("set");
    match queue.put(&2) {
        Err(QueueError::Closed { name }) => name.to_string(),
        other => panic!("a blocked put ended with {other:?}"),
    }
}

fn get_until_closed((queue, started): (Queue<u32>, Event)) -> String {
    started.set().expect("set");
    match queue.get() {
        Err(QueueError::Closed { name }) => name.to_string(),
        other => panic!("a blocked get ended with {other:?}"),
    }
}

/// Starts `target` and, in a process, waits until it sleeps in the queue.
fn start_blocked(
    mode: Mode,
    target: fn((Queue<u32>, Event)) -> String,
    queue: &Queue<u32>,
) -> Worker<(Queue<u32>, Event), String> {
    let started = Event::new().expect("event");
    let mut worker = Worker::new(mode, target, (queue.clone(), started.clone()));
    worker.start().expect("start");
    started.wait().expect("wait");
    if let (Mode::Process(_), Some(pid)) = (mode, worker.pid()) {
        wait_until_asleep_in_futex(pid);
    }
    worker
}

fn close_wakes_a_blocked_putter_at_once_and_a_blocked_getter_once_nothing_is_in_flight(mode: Mode) {
    let name = Removal::fresh("close");
    let queue = Queue::<u32>::create_bounded(name.name(), 1).expect("create");
    queue.put(&1).expect("put");
    // In flight with this process: the queue is full, and nothing is ready.
    let held = queue.receive().expect("receive");
    let mut putter = start_blocked(mode, put_until_closed, &queue);
    let mut getter = start_blocked(mode, get_until_closed, &queue);
    queue.close().expect("close");
    assert_eq!(putter.join().expect("putter"), name.name(), "{mode:?}");
    // The held item could still come back: the getter waits for it.
    if let (Mode::Process(_), Some(pid)) = (mode, getter.pid()) {
        wait_until_asleep_in_futex(pid);
    }
    assert_eq!(held.ack().expect("ack"), 1);
    assert_eq!(getter.join().expect("getter"), name.name(), "{mode:?}");
    is_closed_error(queue.try_put(&3), name.name());
    queue.join().expect("join");
}

// ---------------------------------------------------------------------------------------------
// Both backends

memspace_testkit::on_both_backends!(
    task_done_marks_the_oldest_item_held_and_never_one_too_many,
    join_waits_for_acknowledgements_from_other_processes,
    a_closed_queue_refuses_puts_and_hands_out_what_is_left,
    close_immediately_discards_the_waiting_items_and_lets_join_return,
    close_wakes_a_getter_and_a_putter_blocked_in_other_processes,
    a_worker_killed_holding_an_item_while_a_join_waits_does_not_hang_the_join,
);

fn task_done_marks_the_oldest_item_held_and_never_one_too_many(fx: &Fixture) {
    let name = fx.name("task-done");
    let queue = Queue::<u32>::create(&name).expect("create");
    for item in 1..=4 {
        queue.put(&item).expect("put");
    }
    assert_eq!(queue.receive().expect("receive").into_task(), 1);
    assert_eq!(queue.receive().expect("receive").into_task(), 2);
    assert_eq!(
        (
            queue.unacknowledged().expect("unacknowledged"),
            queue.in_flight().expect("in_flight")
        ),
        (4, 2)
    );
    queue.task_done().expect("task_done");
    queue.task_done().expect("task_done");
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 2);
    assert_eq!(queue.in_flight().expect("in_flight"), 0);
    // `get` acknowledges at once: its item needs no `task_done`, and one is refused.
    assert_eq!(queue.get().expect("get"), 3);
    match queue.task_done() {
        Err(err @ QueueError::NoTaskInFlight { .. }) => {
            let shown = err.to_string();
            assert!(
                shown.contains(&name) && shown.contains("task_done"),
                "{shown}"
            );
        }
        other => panic!("expected NoTaskInFlight, got {other:?}"),
    }
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 1);
    // A delivery acknowledged by `task_done` is no longer this process's to acknowledge.
    let last = queue.receive().expect("receive");
    queue.task_done().expect("task_done");
    assert!(matches!(last.ack(), Err(QueueError::NotInFlight { .. })));
    assert!(matches!(
        queue.task_done(),
        Err(QueueError::NoTaskInFlight { .. })
    ));
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
    queue.join().expect("join");
}

fn ack_count((queue, count): (Queue<u32>, u32)) -> u32 {
    (0..count)
        .map(|_| queue.receive().expect("receive").ack().expect("ack"))
        .sum()
}

fn join_in_a_process(queue: Queue<u32>) -> u64 {
    queue.join().expect("join");
    queue.unacknowledged().expect("unacknowledged")
}

fn join_waits_for_acknowledgements_from_other_processes(fx: &Fixture) {
    let queue = Queue::<u32>::create(&fx.name("join")).expect("create");
    for item in 0..10 {
        queue.put(&item).expect("put");
    }
    let mut joiner = Process::new(join_in_a_process, queue.clone());
    joiner.start().expect("start");
    is_timeout_error(queue.join_timeout(SHORT));
    assert!(
        !procfs::has_ended(joiner.pid().expect("pid")),
        "the join returned with items unacknowledged"
    );
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            let mut worker = Process::new(ack_count, (queue.clone(), 5));
            worker.start().expect("start");
            worker
        })
        .collect();
    let sum: u32 = workers.iter_mut().map(|w| w.join().expect("worker")).sum();
    assert_eq!(sum, (0..10).sum());
    assert_eq!(joiner.join().expect("joiner"), 0);
    queue.join_timeout(SHORT).expect("all acknowledged");
}

fn a_closed_queue_refuses_puts_and_hands_out_what_is_left(fx: &Fixture) {
    let name = fx.name("closed");
    let queue = Queue::<u32>::create(&name).expect("create");
    queue.put(&1).expect("put");
    queue.put(&2).expect("put");
    assert!(!queue.is_closed().expect("is_closed"));
    let other = Queue::<u32>::open(&name).expect("open");
    other.close().expect("close");
    assert!(queue.is_closed().expect("is_closed"));
    is_closed_error(queue.put(&3), &name);
    is_closed_error(queue.try_put(&3), &name);
    assert_eq!(queue.get().expect("get"), 1);
    let last = queue.receive().expect("receive");
    // One item is in flight: it may come back, so a receiver waits rather than fail.
    is_timeout_error(queue.receive_timeout(SHORT));
    drop(last); // back in its place
    assert_eq!(queue.get().expect("get the item put back"), 2);
    is_closed_error(queue.receive(), &name);
    is_closed_error(queue.try_get(), &name);
    queue.close().expect("closing twice changes nothing");
    queue.join().expect("join");
}

fn close_immediately_discards_the_waiting_items_and_lets_join_return(fx: &Fixture) {
    let name = fx.name("closed-now");
    let queue = Queue::<u32>::create(&name).expect("create");
    for item in 1..=3 {
        queue.put(&item).expect("put");
    }
    let held = queue.receive().expect("receive");
    let kept = queue.receive().expect("receive");
    queue.close_immediately().expect("close_immediately");
    assert_eq!(queue.len().expect("len"), 0);
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 2);
    is_closed_error(queue.receive(), &name);
    is_closed_error(queue.put(&4), &name);
    is_timeout_error(queue.join_timeout(SHORT));
    // An item in flight can still be acknowledged; one put back is discarded.
    assert_eq!(held.ack().expect("ack"), 1);
    drop(kept);
    assert_eq!(queue.unacknowledged().expect("unacknowledged"), 0);
    queue.join().expect("join");
    // A plain close does not reopen the receiving side.
    queue.close().expect("close");
    is_closed_error(queue.try_receive(), &name);
}

fn put_blocked_until_closed((queue, started): (Queue<u32>, Event)) -> bool {
    started.set().expect("set");
    matches!(queue.put(&9), Err(QueueError::Closed { .. }))
}

fn get_blocked_until_closed((queue, started): (Queue<u32>, Event)) -> bool {
    started.set().expect("set");
    matches!(queue.get(), Err(QueueError::Closed { .. }))
}

fn close_wakes_a_getter_and_a_putter_blocked_in_other_processes(fx: &Fixture) {
    let full = Queue::<u32>::create_bounded(&fx.name("full"), 1).expect("create");
    full.put(&1).expect("put");
    let empty = Queue::<u32>::create(&fx.name("empty")).expect("create");
    let mut blocked = Vec::new();
    for (target, queue) in [
        (put_blocked_until_closed as fn(_) -> bool, &full),
        (get_blocked_until_closed, &empty),
    ] {
        let started = Event::new().expect("event");
        let mut child = Process::new(target, (queue.clone(), started.clone()));
        child.start().expect("start");
        started.wait().expect("wait");
        if !fx.is_redis() {
            wait_until_asleep_in_futex(child.pid().expect("pid"));
        }
        blocked.push(child);
    }
    full.close().expect("close");
    empty.close().expect("close");
    for mut child in blocked {
        assert!(child.join().expect("child"), "woken with another error");
    }
    assert_eq!(full.get().expect("the item put before the close"), 1);
}

fn receive_and_hang((queue, took): (Queue<String>, Event)) {
    let delivery = queue.receive().expect("receive");
    assert_eq!(delivery.deliveries(), 1);
    took.set().expect("set");
    loop {
        std::thread::park();
    }
    #[allow(
        unreachable_code,
        reason = "the delivery must live until the process is killed"
    )]
    drop(delivery);
}

fn join_strings(queue: Queue<String>) -> u64 {
    queue.join().expect("join");
    queue.unacknowledged().expect("unacknowledged")
}

fn finish_one(queue: Queue<String>) -> (String, u32) {
    let delivery = queue.receive().expect("receive");
    let deliveries = delivery.deliveries();
    (delivery.ack().expect("ack"), deliveries)
}

fn a_worker_killed_holding_an_item_while_a_join_waits_does_not_hang_the_join(fx: &Fixture) {
    // On Redis a dead receiver is seen when its lease runs out.
    let mut name = fx.name("killed-worker");
    if fx.is_redis() {
        name.push_str("?lease_ms=300");
    }
    let queue = Queue::<String>::create(&name).expect("create");
    queue.put(&"precious".to_owned()).expect("put");
    let took = Event::new().expect("event");
    let mut doomed = Process::new(receive_and_hang, (queue.clone(), took.clone()));
    doomed.start().expect("start");
    took.wait().expect("wait");
    let mut joiner = Process::new(join_strings, queue.clone());
    joiner.start().expect("start");
    if !fx.is_redis() {
        wait_until_asleep_in_futex(joiner.pid().expect("pid"));
    }
    doomed.kill().expect("SIGKILL");
    assert!(matches!(
        doomed.join(),
        Err(JoinError::Killed { signal: 9, .. })
    ));
    // The killed worker's item is not done: the join still waits.
    is_timeout_error(queue.join_timeout(SHORT));
    assert!(
        !procfs::has_ended(joiner.pid().expect("pid")),
        "the join returned before the item was done"
    );
    let mut other = Process::new(finish_one, queue.clone());
    other.start().expect("start");
    assert_eq!(other.join().expect("worker"), ("precious".to_owned(), 2));
    assert_eq!(joiner.join().expect("the join returned"), 0);
}
