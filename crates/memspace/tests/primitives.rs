//! The synchronisation primitives and plain-data collections, each behaviour written once and
//! run on threads, on fork-started processes and on spawn-started processes; then the kill
//! tests, which really SIGKILL a participant.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::time::Duration;

use memspace::collections::{SharedVec, Value};
use memspace::spawn::{Mode, Process, Worker};
use memspace::sync::{
    Barrier, BarrierError, Condvar, Event, LockError, Mutex, RwLock, Semaphore, SemaphoreError,
    TryLockError,
};
use memspace_testkit::modes::run_all;
use memspace_testkit::{Parent, Removal, Running, Watchdog};

memspace_testkit::per_mode! {
    an_event_set_by_a_worker_wakes_the_waiter: thread, fork, spawn;
    wait_while_sees_a_counter_another_worker_increments: thread, fork, spawn;
    notify_all_wakes_every_waiter: thread, fork, spawn;
    semaphore_counts_permits_across_workers: thread, fork, spawn;
    parties_pass_a_barrier_in_lockstep: thread, fork, spawn;
    readers_share_and_writers_exclude: thread, fork, spawn;
    ten_workers_adding_fifty_each_make_exactly_five_hundred: thread, fork, spawn;
    four_workers_pushing_ten_thousand_each_are_all_there_in_order: thread, fork, spawn;
    two_workers_hand_an_event_back_and_forth_without_losing_a_wake: thread, fork;
    two_workers_take_turns_through_a_condvar_without_losing_a_wake: thread, fork;
}

/// Rounds of the hand-over tests: each is a sleep and a wake when the other side is slower.
const HANDOVERS: u32 = 2_000;

// ---------------------------------------------------------------------------------------------
// Event

fn set_event(event: Event) {
    event.set().expect("set");
}

fn an_event_set_by_a_worker_wakes_the_waiter(mode: Mode) {
    let event = Event::new().expect("event");
    assert!(!event.wait_timeout(Duration::ZERO).expect("wait"));
    assert!(!event.wait_timeout(Duration::from_millis(20)).expect("wait"));
    run_all(mode, set_event, vec![event.clone()]);
    event.wait().expect("wait");
    assert!(event.is_set().expect("is_set"), "{mode:?}");
    event.clear().expect("clear");
    assert!(!event.is_set().expect("is_set"));
}

fn answer_events((mine, theirs): (Event, Event)) {
    for _ in 0..HANDOVERS {
        mine.wait().expect("wait");
        mine.clear().expect("clear");
        theirs.set().expect("set");
    }
}

/// A set wakes its waiter only if the waiter counted itself asleep: a wake lost between the
/// two would leave both sides waiting for ever (the watchdog ends the test).
fn two_workers_hand_an_event_back_and_forth_without_losing_a_wake(mode: Mode) {
    let _dog = Watchdog::start();
    let (mine, theirs) = (Event::new().expect("event"), Event::new().expect("event"));
    let mut worker = Worker::new(mode, answer_events, (theirs.clone(), mine.clone()));
    worker.start().expect("start");
    for _ in 0..HANDOVERS {
        theirs.set().expect("set");
        mine.wait().expect("wait");
        mine.clear().expect("clear");
    }
    worker.join().expect("join");
}

fn wait_on_event((event, ready): (Event, Event)) {
    ready.set().expect("set");
    event.wait().expect("wait");
}

/// A waiter killed while asleep stays counted among the event's sleepers: a later `set` still
/// wakes the waiters that are left.
#[test]
fn a_waiter_killed_asleep_does_not_keep_set_from_waking_the_others() {
    let _dog = Watchdog::start();
    let event = Event::new().expect("event");
    let asleep = start_until_ready(wait_on_event, &event);
    // Long enough for it to go to sleep (no assertion rests on it).
    std::thread::sleep(Duration::from_millis(30));
    kill(asleep);
    let waiter = {
        let event = event.clone();
        std::thread::spawn(move || event.wait().expect("wait"))
    };
    std::thread::sleep(Duration::from_millis(30));
    event.set().expect("set");
    waiter.join().expect("the waiter left was woken");
}

// ---------------------------------------------------------------------------------------------
// Condvar

/// Takes the odd turns of `turn` (the caller the even ones), waiting for each on `changed`.
fn take_odd_turns((turn, changed): (Mutex<u32>, Condvar)) {
    for round in 0..HANDOVERS {
        let mut guard = changed
            .wait_while(turn.lock().expect("lock"), |t| **t != 2 * round + 1)
            .expect("wait");
        *guard += 1;
        drop(guard);
        changed.notify_all();
    }
}

/// As the event's hand-over, with a condition variable: a notification wakes only counted
/// sleepers, and a lost one leaves both sides waiting.
fn two_workers_take_turns_through_a_condvar_without_losing_a_wake(mode: Mode) {
    let _dog = Watchdog::start();
    let turn = Mutex::new(0u32).expect("mutex");
    let changed = Condvar::new().expect("condvar");
    let mut worker = Worker::new(mode, take_odd_turns, (turn.clone(), changed.clone()));
    worker.start().expect("start");
    for round in 0..HANDOVERS {
        let mut guard = changed
            .wait_while(turn.lock().expect("lock"), |t| **t != 2 * round)
            .expect("wait");
        *guard += 1;
        drop(guard);
        changed.notify_all();
    }
    worker.join().expect("join");
    assert_eq!(*turn.lock().expect("lock"), 2 * HANDOVERS);
}

fn count_and_notify((counter, changed): (Mutex<u32>, Condvar)) {
    for _ in 0..4 {
        *counter.lock().expect("lock") += 1;
        changed.notify_all();
    }
}

fn wait_while_sees_a_counter_another_worker_increments(mode: Mode) {
    let counter = Mutex::new(0u32).expect("mutex");
    let changed = Condvar::new().expect("condvar");
    let mut worker = Worker::new(mode, count_and_notify, (counter.clone(), changed.clone()));
    worker.start().expect("start");
    let guard = changed
        .wait_while(counter.lock().expect("lock"), |g| **g < 4)
        .expect("wait");
    assert_eq!(*guard, 4, "{mode:?}");
    drop(guard);
    worker.join().expect("join");
}

#[test]
fn a_condvar_wait_times_out_when_nobody_notifies() {
    let counter = Mutex::new(0u32).expect("mutex");
    let changed = Condvar::new().expect("condvar");
    let (guard, timed_out) = changed
        .wait_timeout(counter.lock().expect("lock"), Duration::from_millis(30))
        .expect("wait");
    assert!(timed_out);
    let (_guard, timed_out) = changed
        .wait_timeout_while(guard, Duration::from_millis(30), |g| **g == 0)
        .expect("wait");
    assert!(timed_out);
}

fn wait_for_go((flag, changed, arrived): (Mutex<u32>, Condvar, Semaphore)) -> u32 {
    let guard = flag.lock().expect("lock");
    arrived.release().expect("release");
    let guard = changed.wait_while(guard, |g| **g == 0).expect("wait");
    *guard
}

fn notify_all_wakes_every_waiter(mode: Mode) {
    let flag = Mutex::new(0u32).expect("mutex");
    let changed = Condvar::new().expect("condvar");
    let arrived = Semaphore::new(0).expect("semaphore");
    let mut workers: Vec<_> = (0..3)
        .map(|_| {
            Worker::new(
                mode,
                wait_for_go,
                (flag.clone(), changed.clone(), arrived.clone()),
            )
        })
        .collect();
    for w in &mut workers {
        w.start().expect("start");
    }
    for _ in 0..3 {
        arrived.acquire().expect("arrived").forget();
    }
    *flag.lock().expect("lock") = 7;
    changed.notify_all();
    for w in &mut workers {
        assert_eq!(w.join().expect("join"), 7, "{mode:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Semaphore

fn take_one(semaphore: Semaphore) -> u64 {
    semaphore.acquire().expect("acquire").forget();
    semaphore.value()
}

fn semaphore_counts_permits_across_workers(mode: Mode) {
    let semaphore = Semaphore::new(2).expect("semaphore");
    let left = run_all(mode, take_one, vec![semaphore.clone()]);
    assert_eq!(left, [1]);
    // A permit forgotten by a worker *thread* of this process is still held; one forgotten
    // by a child process that has exited comes back when someone finds none free.
    let a = semaphore.acquire().expect("acquire");
    match mode {
        Mode::Thread => assert!(matches!(
            semaphore.try_acquire(),
            Err(SemaphoreError::WouldBlock { .. })
        )),
        Mode::Process(_) => {
            let b = semaphore
                .try_acquire()
                .expect("the dead child's permit came back");
            drop(b);
        }
    }
    drop(a);
    semaphore.release().expect("release");
}

#[test]
fn a_bounded_semaphore_refuses_over_release() {
    let semaphore = Semaphore::bounded(2).expect("semaphore");
    assert_eq!(semaphore.value(), 2);
    let permit = semaphore.acquire().expect("acquire");
    assert_eq!(semaphore.value(), 1);
    drop(permit);
    assert_eq!(semaphore.value(), 2);
    let err = semaphore.release().expect_err("over-release accepted");
    assert!(
        matches!(err, SemaphoreError::OverReleased { bound: 2, .. }),
        "{err:?}"
    );
    assert!(matches!(
        semaphore
            .acquire_timeout(Duration::ZERO)
            .map(Permit::forget_it),
        Ok(())
    ));
    let _a = semaphore.acquire().expect("second");
    assert!(matches!(
        semaphore.acquire_timeout(Duration::from_millis(20)),
        Err(SemaphoreError::Timeout { .. })
    ));
    let unbounded = Semaphore::new(0).expect("semaphore");
    unbounded
        .release()
        .expect("an unbounded semaphore accepts releases");
    assert_eq!(unbounded.value(), 1);
}

trait Permit {
    fn forget_it(self);
}

impl Permit for memspace::sync::Permit<'_> {
    fn forget_it(self) {
        self.forget();
    }
}

/// Starts `target` in a process with `shared` and a readiness event, and returns the process
/// once the target has set the event (it then holds what it was to hold).
fn start_until_ready<S>(target: fn((S, Event)), shared: &S) -> Process<(S, Event), ()>
where
    S: Clone + serde::Serialize + serde::de::DeserializeOwned,
{
    let ready = Event::new().expect("event");
    let mut process = Process::new(target, (shared.clone(), ready.clone()));
    process.start().expect("start");
    ready.wait().expect("wait");
    process
}

/// Kills `process` with SIGKILL and reaps it.
fn kill<A, R>(mut process: Process<A, R>)
where
    A: serde::Serialize + serde::de::DeserializeOwned,
    R: serde::Serialize + serde::de::DeserializeOwned,
{
    process.kill().expect("SIGKILL");
    let _ = process.join();
}

fn hold_permit_forever((semaphore, holding): (Semaphore, Event)) {
    semaphore.acquire().expect("acquire").forget();
    holding.set().expect("set");
    loop {
        std::thread::park();
    }
}

#[test]
fn a_permit_held_by_a_killed_process_comes_back() {
    let _dog = Watchdog::start();
    let semaphore = Semaphore::new(1).expect("semaphore");
    let holder = start_until_ready(hold_permit_forever, &semaphore);
    assert!(
        semaphore.try_acquire().is_err(),
        "the holder has the only permit"
    );
    kill(holder);
    let permit = semaphore
        .acquire_timeout(Duration::from_secs(10))
        .expect("the dead holder's permit came back");
    drop(permit);
}

// ---------------------------------------------------------------------------------------------
// Barrier

fn cross_barrier((barrier, rounds): (Barrier, u32)) -> Vec<u32> {
    (0..rounds)
        .map(|_| barrier.wait().expect("barrier"))
        .collect()
}

fn parties_pass_a_barrier_in_lockstep(mode: Mode) {
    let barrier = Barrier::new(4).expect("barrier");
    let mut workers: Vec<_> = (0..3)
        .map(|_| Worker::new(mode, cross_barrier, (barrier.clone(), 10)))
        .collect();
    for w in &mut workers {
        w.start().expect("start");
    }
    let mine = cross_barrier((barrier.clone(), 10));
    let mut theirs: Vec<Vec<u32>> = workers
        .iter_mut()
        .map(|w| w.join().expect("join"))
        .collect();
    theirs.push(mine);
    for round in 0..10 {
        let mut indices: Vec<u32> = theirs.iter().map(|v| v[round]).collect();
        indices.sort_unstable();
        assert_eq!(indices, [0, 1, 2, 3], "{mode:?} round {round}");
    }
}

fn wait_at_barrier(barrier: Barrier) -> String {
    match barrier.wait() {
        Ok(index) => format!("passed {index}"),
        Err(err) => format!("{err}"),
    }
}

#[test]
fn abort_and_timeout_break_the_barrier_and_reset_repairs_it() {
    let _dog = Watchdog::start();
    let barrier = Barrier::new(2).expect("barrier");
    let err = barrier
        .wait_timeout(Duration::from_millis(20))
        .expect_err("one party alone passed");
    assert!(matches!(err, BarrierError::Timeout { .. }), "{err:?}");
    assert!(barrier.is_broken());
    assert!(matches!(barrier.wait(), Err(BarrierError::Broken { .. })));
    barrier.reset().expect("reset");
    assert!(!barrier.is_broken());
    let mut waiter = Process::new(wait_at_barrier, barrier.clone());
    waiter.start().expect("start");
    while barrier.waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    barrier.abort().expect("abort");
    let said = waiter.join().expect("join");
    assert!(said.contains("is broken"), "{said}");
}

fn wait_at_barrier_forever(barrier: Barrier) {
    let _ = barrier.wait();
}

#[test]
fn a_party_killed_while_waiting_breaks_the_barrier() {
    let _dog = Watchdog::start();
    let barrier = Barrier::new(3).expect("barrier");
    let mut doomed = Process::new(wait_at_barrier_forever, barrier.clone());
    doomed.start().expect("start");
    while barrier.waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    kill(doomed);
    let err = barrier.wait().expect_err("passed with a dead party");
    assert!(matches!(err, BarrierError::PartyDied { .. }), "{err:?}");
    assert!(barrier.is_broken());
}

// ---------------------------------------------------------------------------------------------
// RwLock

fn read_twice((lock, both): (RwLock<[u64; 4]>, Barrier)) -> u64 {
    let guard = lock.read().expect("read");
    // Two readers inside at once: the barrier only passes if both hold a read guard.
    both.wait().expect("barrier");
    guard.iter().sum()
}

fn readers_share_and_writers_exclude(mode: Mode) {
    let lock = RwLock::new([1u64, 2, 3, 4]).expect("rwlock");
    let both = Barrier::new(2).expect("barrier");
    let sums = run_all(
        mode,
        read_twice,
        vec![(lock.clone(), both.clone()), (lock.clone(), both.clone())],
    );
    assert_eq!(sums, [10, 10], "{mode:?}");
    {
        let reader = lock.read().expect("read");
        assert!(matches!(
            lock.try_write_for(Duration::from_millis(20)),
            Err(TryLockError::Lock(LockError::WouldDeadlock { .. }))
        ));
        drop(reader);
    }
    lock.write().expect("write")[0] = 10;
    assert_eq!(lock.read().expect("read")[0], 10);
}

fn read_forever((lock, reading): (RwLock<u64>, Event)) {
    let _guard = lock.read().expect("read");
    reading.set().expect("set");
    loop {
        std::thread::park();
    }
}

#[test]
fn a_killed_reader_does_not_keep_writers_out() {
    let _dog = Watchdog::start();
    let lock = RwLock::new(5u64).expect("rwlock");
    let reader = start_until_ready(read_forever, &lock);
    assert_eq!(lock.readers(), 1);
    assert!(matches!(
        lock.try_write_for(Duration::from_millis(20)),
        Err(TryLockError::Timeout { .. })
    ));
    kill(reader);
    *lock
        .try_write_for(Duration::from_secs(10))
        .expect("the dead reader was reaped") = 6;
    assert_eq!(*lock.read().expect("read"), 6);
}

fn read_until_told((lock, reading, go): (RwLock<u64>, Event, Event)) {
    let guard = lock.read().expect("read");
    reading.set().expect("set");
    go.wait().expect("wait");
    drop(guard);
    loop {
        std::thread::park();
    }
}

#[test]
fn a_writer_asleep_behind_a_reader_of_another_process_gets_in_when_it_leaves() {
    let _dog = Watchdog::start();
    let lock = RwLock::new(1u64).expect("rwlock");
    let (reading, go) = (Event::new().expect("event"), Event::new().expect("event"));
    let mut reader = Process::new(read_until_told, (lock.clone(), reading.clone(), go.clone()));
    reader.start().expect("start");
    reading.wait().expect("wait");
    let writer = {
        let lock = lock.clone();
        std::thread::spawn(move || *lock.write().expect("write") = 2)
    };
    // Long enough for the writer to go to sleep on the reader (no assertion rests on it).
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(lock.readers(), 1, "the reader still reads");
    assert!(
        !writer.is_finished(),
        "the writer got in while another process read"
    );
    go.set().expect("set");
    writer
        .join()
        .expect("the writer got in once the reader left");
    assert_eq!(*lock.read().expect("read"), 2);
    kill(reader);
}

/// Ends the process's main thread, then reads from another thread until killed: the guard,
/// and the stamp it is taken with, belong to a process that `/proc` shows as a zombie while
/// its reading thread lives on. Leaves by itself if the test process is gone.
fn read_after_the_main_thread_ends((lock, reading): (RwLock<u64>, Event)) {
    let parent = Parent::here();
    memspace_testkit::threads::go_on_without_the_main_thread(parent, move || {
        let _guard = lock.read().expect("read");
        reading.set().expect("set");
        parent.park_until_killed();
    });
}

/// A reader whose process's main thread ended while its reading thread runs on keeps a
/// writer out while it lives (the process is alive), and not once it is killed (the writer
/// judges it from the same namespaces as its own process's, which the reading thread read
/// after the main thread had ended).
#[test]
fn a_reader_whose_main_thread_ended_keeps_writers_out_while_it_lives() {
    let _dog = Watchdog::start();
    let lock = RwLock::new(1u64).expect("rwlock");
    let reading = Event::new().expect("event");
    let mut reader = Running::start(Process::new(
        read_after_the_main_thread_ends,
        (lock.clone(), reading.clone()),
    ));
    reading.wait().expect("wait");
    assert_eq!(
        memspace_testkit::procfs::process_state(reader.pid()),
        Some('Z'),
        "the reader's main thread ended"
    );
    assert_eq!(lock.readers(), 1, "the reader still reads");
    assert!(
        matches!(
            lock.try_write_for(Duration::from_millis(300)),
            Err(TryLockError::Timeout { .. })
        ),
        "a writer got in under the guard of a process whose main thread ended"
    );
    reader.kill_and_reap("the reader");
    *lock
        .try_write_for(Duration::from_secs(10))
        .expect("the killed reader was reaped") = 2;
    assert_eq!(*lock.read().expect("read"), 2);
}

/// Writes once, after saying it is about to.
fn write_once((lock, writing): (RwLock<u64>, Event)) {
    writing.set().expect("set");
    *lock.write().expect("write") = 7;
}

/// A writer whose own process reads is told at once that it would deadlock, even while a
/// writer of another process holds the lock's mutex and waits for that very read guard: it
/// does not wait for the mutex first.
#[test]
fn a_writer_whose_process_reads_is_refused_before_it_waits_for_another_writer() {
    let _dog = Watchdog::start();
    let lock = RwLock::new(1u64).expect("rwlock");
    let reading = lock.read().expect("read");
    let writing = Event::new().expect("event");
    let mut writer = Running::start(Process::new(write_once, (lock.clone(), writing.clone())));
    writing.wait().expect("wait");
    memspace_testkit::children::wait_until("the other writer waits for the reader", || {
        memspace_testkit::procfs::all_threads_sleeping(writer.pid())
    });
    let refused = std::thread::scope(|s| {
        s.spawn(|| {
            lock.try_write_for(Duration::from_secs(10))
                .map(drop)
                .map_err(TryLockError::without_guard)
        })
        .join()
        .expect("the second writer")
    });
    assert!(
        matches!(
            refused,
            Err(TryLockError::Lock(LockError::WouldDeadlock { .. }))
        ),
        "{refused:?}"
    );
    drop(reading);
    writer.join().expect("the other writer wrote");
    assert_eq!(*lock.read().expect("read"), 7);
}

fn read_once((lock, done): (RwLock<u64>, Event)) {
    drop(lock.read().expect("read"));
    done.set().expect("set");
    loop {
        std::thread::park();
    }
}

#[test]
fn a_reader_takes_the_slot_of_a_live_process_that_reads_nothing_now() {
    let _dog = Watchdog::start();
    let lock = RwLock::new(3u64).expect("rwlock");
    // More live processes than the lock has reader slots, each of which read once.
    let idle: Vec<_> = (0..65)
        .map(|_| start_until_ready(read_once, &lock))
        .collect();
    assert_eq!(lock.readers(), 0);
    let guard = lock
        .try_read_for(Duration::from_secs(10))
        .expect("a slot whose process reads nothing is taken");
    assert_eq!((*guard, lock.readers()), (3, 1));
    drop(guard);
    *lock.write().expect("write") = 4;
    idle.into_iter().for_each(kill);
}

fn write_forever((lock, writing): (RwLock<u64>, Event)) {
    let mut guard = lock.write().expect("write");
    *guard = 99;
    writing.set().expect("set");
    loop {
        std::thread::park();
    }
}

#[test]
fn a_killed_writer_is_reported_to_readers_until_a_writer_repairs() {
    let _dog = Watchdog::start();
    let lock = RwLock::new(1u64).expect("rwlock");
    kill(start_until_ready(write_forever, &lock));
    let Err(LockError::OwnerDied(read)) = lock.read() else {
        panic!("a reader was not told the writer died");
    };
    assert_eq!(*read, 99, "the value the dead writer left");
    drop(read);
    let Err(LockError::OwnerDied(mut write)) = lock.write() else {
        panic!("the next writer was not told");
    };
    *write = 2;
    write.mark_consistent();
    drop(write);
    assert_eq!(*lock.read().expect("clean after repair"), 2);
}

// ---------------------------------------------------------------------------------------------
// Value and SharedVec

fn add_fifty(counter: Value<u64>) {
    for _ in 0..50 {
        counter.update(|v| *v += 1).expect("update");
    }
}

fn ten_workers_adding_fifty_each_make_exactly_five_hundred(mode: Mode) {
    let counter = Value::new(0u64).expect("value");
    run_all(mode, add_fifty, vec![counter.clone(); 10]);
    assert_eq!(counter.get().expect("get"), 500, "{mode:?}");
}

#[test]
fn debug_of_a_value_shows_it_when_free_and_never_waits_for_a_holder() {
    let _dog = Watchdog::start();
    let value = Value::new(7u64).expect("value");
    assert!(format!("{value:?}").contains("value: 7"), "{value:?}");
    let (held, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let holder = {
        let value = value.clone();
        let (held, release) = (held.0, release.1);
        std::thread::spawn(move || {
            value
                .update(|v| {
                    *v = 8;
                    held.send(()).expect("tell");
                    release.recv().expect("wait");
                })
                .expect("update")
        })
    };
    held.1.recv().expect("the holder has the lock");
    // Printed while another thread holds the lock: the value is left out, nothing waits.
    let shown = format!("{value:?}");
    assert!(!shown.contains("value:"), "{shown}");
    release.0.send(()).expect("release");
    assert_eq!(holder.join().expect("the holder"), 8);
    assert!(format!("{value:?}").contains("value: 8"), "{value:?}");
}

fn hold_value_forever((value, holding): (Value<u64>, Event)) {
    value
        .update(|v| {
            *v = 9;
            holding.set().expect("set");
            loop {
                std::thread::park();
            }
        })
        .expect("update");
}

#[test]
fn debug_of_a_value_whose_holder_was_killed_repairs_the_lock_it_takes_over() {
    let _dog = Watchdog::start();
    let value = Value::new(1u64).expect("value");
    kill(start_until_ready(hold_value_forever, &value));
    // Debug takes the dead holder's lock over; dropping it unrepaired would leave the lock
    // unrecoverable for every process.
    let shown = format!("{value:?}");
    assert!(shown.contains("value: 9"), "{shown}");
    assert_eq!(value.get().expect("the lock is usable after Debug"), 9);
}

fn push_range((vec, worker): (SharedVec<u64>, u64)) {
    for i in 0..10_000 {
        vec.push(worker << 32 | i).expect("push");
    }
}

fn four_workers_pushing_ten_thousand_each_are_all_there_in_order(mode: Mode) {
    let vec = SharedVec::<u64>::new().expect("vec");
    run_all(mode, push_range, (0..4).map(|w| (vec.clone(), w)).collect());
    let all = vec.as_slice().expect("slice");
    assert_eq!(all.len(), 40_000, "{mode:?}");
    for worker in 0..4u64 {
        let mine: Vec<u64> = all
            .iter()
            .filter(|v| *v >> 32 == worker)
            .map(|v| v & 0xffff_ffff)
            .collect();
        assert_eq!(
            mine,
            (0..10_000).collect::<Vec<_>>(),
            "{mode:?} worker {worker}"
        );
    }
    assert!(memspace::inspect::verify(vec.segment().expect("in shared memory")).is_consistent());
}

#[test]
fn a_shared_vec_of_another_element_type_is_refused() {
    let removal = Removal::fresh("vec-type");
    let name = removal.name();
    let vec = SharedVec::<u32>::create(name).expect("create");
    vec.push(1).expect("push");
    let err = SharedVec::<u64>::open(name).expect_err("u32 elements opened as u64");
    assert!(
        matches!(
            err,
            memspace::Error::Open(memspace::OpenError::TypeMismatch { .. })
        ),
        "{err:?}"
    );
    vec.unlink().expect("unlink");
}

#[test]
fn a_shared_vec_grows_in_steps_of_at_most_2_mib_taken_ahead_of_its_pushes() {
    // 20 MiB of elements, 32 KiB a batch. From 8 MiB on the segment grows ahead of the
    // writers: a batch never finds the room it needs missing, takes at most one step, and no
    // growth commits more than 2 MiB (doubling would commit 8 MiB at once at 8 MiB).
    const STEP: u64 = 2 << 20;
    let vec = SharedVec::<u64>::new().expect("vec");
    let segment = vec.segment().expect("in shared memory");
    let batch = vec![5_u64; 4096];
    let (mut size, mut generation) = (segment.size(), segment.generation());
    while vec.len() < 20 << 17 {
        vec.extend_from_slice(&batch).expect("push a batch");
        let (now, now_generation) = (segment.size(), segment.generation());
        let growths = now_generation - generation;
        assert!(
            now - size <= growths * STEP,
            "at {} elements the segment grew from {size} to {now} bytes in {growths} growths",
            vec.len()
        );
        if size >= 8 << 20 {
            assert!(
                growths <= 1,
                "{growths} growths in one batch at {size} bytes"
            );
            assert!(
                8 * vec.len() + 8192 <= size,
                "a batch at {} elements did not fit the {size} bytes committed before it",
                vec.len()
            );
        }
        (size, generation) = (now, now_generation);
    }
    assert_eq!(vec.get(vec.len() - 1).expect("read"), Some(5));
    assert!(memspace::inspect::verify(segment).is_consistent());
}

#[test]
fn a_slice_taken_before_growth_stays_valid_after_it() {
    let vec = SharedVec::<u64>::new().expect("vec");
    vec.extend_from_slice(&[7; 100]).expect("push");
    let before = vec.as_slice().expect("slice");
    // 2 million elements: 16 MB, far past the first 64 KiB.
    vec.extend_from_slice(&vec![8; 2_000_000]).expect("grow");
    assert_eq!(before, &[7; 100][..]);
    assert_eq!(vec.len(), 2_000_100);
    assert_eq!(vec.as_slice().expect("slice")[2_000_099], 8);
}

fn wait_forever_on_condvar((flag, changed, waiting): (Mutex<u32>, Condvar, Event)) {
    let guard = flag.lock().expect("lock");
    waiting.set().expect("set");
    let _guard = changed.wait_while(guard, |_| true).expect("wait");
}

#[test]
fn a_waiter_killed_while_waiting_does_not_swallow_a_notification() {
    let _dog = Watchdog::start();
    let flag = Mutex::new(0u32).expect("mutex");
    let changed = Condvar::new().expect("condvar");
    let waiting = Event::new().expect("event");
    let mut doomed = Process::new(
        wait_forever_on_condvar,
        (flag.clone(), changed.clone(), waiting.clone()),
    );
    doomed.start().expect("start");
    waiting.wait().expect("wait");
    // The doomed waiter is asleep in the condvar (it released the lock to get there).
    drop(flag.lock().expect("the waiter released the lock"));
    kill(doomed);
    // A live waiter now gets the one notification that is sent.
    let arrived = Semaphore::new(0).expect("semaphore");
    let mut live = Process::new(
        wait_for_go,
        (flag.clone(), changed.clone(), arrived.clone()),
    );
    live.start().expect("start");
    arrived.acquire().expect("arrived").forget();
    *flag.lock().expect("lock") = 3;
    changed.notify_one();
    assert_eq!(live.join().expect("the live waiter woke"), 3);
}

#[test]
fn every_operation_error_converts_into_error_with_question_mark() {
    fn empty_queue() -> memspace::Result<u32> {
        Ok(memspace::collections::Queue::<u32>::new()?.try_get()?)
    }
    fn no_permit() -> memspace::Result<()> {
        let permits = Semaphore::new(0)?;
        let _permit = permits.try_acquire()?;
        Ok(())
    }
    fn busy_lock() -> memspace::Result<()> {
        let lock = memspace::Lock::new()?;
        let _held = lock.lock()?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| lock.try_lock().map(drop).map_err(memspace::Error::from))
                .join()
                .expect("the thread")
        })
    }
    assert!(
        matches!(
            empty_queue(),
            Err(memspace::Error::Queue(err)) if matches!(*err, memspace::collections::QueueError::Empty { .. })
        ),
        "{:?}",
        empty_queue()
    );
    assert!(
        matches!(
            no_permit(),
            Err(memspace::Error::Semaphore(err)) if matches!(*err, SemaphoreError::WouldBlock { .. })
        ),
        "{:?}",
        no_permit()
    );
    assert!(
        matches!(busy_lock(), Err(memspace::Error::WouldBlock { .. })),
        "{:?}",
        busy_lock()
    );
}
