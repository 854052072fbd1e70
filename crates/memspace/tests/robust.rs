//! Robust locks across processes: a holder killed with SIGKILL (the next locker is told, and
//! repairs), a lock left unrepaired (unrecoverable), a process blocked in `lock()` when the
//! holder dies, timeouts, poisoning by a panic, relocking in one thread, mutual exclusion, and a
//! list writer killed inside `push` while it holds the list's lock.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::time::{Duration, Instant};

use memspace::spawn::{ExitStatus, JoinError, Process, StartMethod};
use memspace::sync::{Lock, LockError, LockGuard, Mutex, RLock, RwLock, TryLockError};
use memspace::{SharedList, Thread, inspect};
use memspace_testkit::names::SegmentFile;
use memspace_testkit::{Parent, Removal, Running, Watchdog, flags, names, procfs, roles};

/// A short name for what a lock call returned.
fn label(result: &impl Outcome) -> &'static str {
    result.label()
}

/// What a lock call returned: a blocking call's outcome or a `try_` call's.
trait Outcome {
    fn label(&self) -> &'static str;
}

impl<G> Outcome for Result<G, LockError<G>> {
    fn label(&self) -> &'static str {
        match self {
            Ok(_) => "ok",
            Err(LockError::OwnerDied(_)) => "owner died",
            Err(LockError::Poisoned(_)) => "poisoned",
            Err(LockError::Unrecoverable { .. }) => "unrecoverable",
            Err(LockError::WouldDeadlock { .. }) => "would deadlock",
            Err(_) => "another error",
        }
    }
}

impl<G> Outcome for Result<G, TryLockError<G>> {
    fn label(&self) -> &'static str {
        match self {
            Ok(_) => "ok",
            Err(TryLockError::WouldBlock { .. }) => "would block",
            Err(TryLockError::Timeout { .. }) => "timeout",
            Err(TryLockError::Lock(LockError::OwnerDied(_))) => "owner died",
            Err(TryLockError::Lock(LockError::Poisoned(_))) => "poisoned",
            Err(TryLockError::Lock(LockError::Unrecoverable { .. })) => "unrecoverable",
            Err(TryLockError::Lock(LockError::WouldDeadlock { .. })) => "would deadlock",
            Err(_) => "another error",
        }
    }
}

/// Takes the lock, says so through `ready`, and holds it until killed.
fn hold_until_killed((lock, ready, parent): (Lock, Mutex<u32>, u32)) {
    let guard = lock.lock();
    assert_eq!(label(&guard), "ok", "the child takes the free lock");
    flags::set_flag(&ready, 1);
    Parent::from(parent).park_until_killed()
}

/// A child that holds a lock until killed, and its readiness flag. The flag outlives the child
/// (fields drop in order), so that the test removes it: a spawned child attaches to it, and an
/// anonymous segment is removed by its last live user.
struct Holder {
    process: Running<(Lock, Mutex<u32>, u32), ()>,
    _ready: Mutex<u32>,
}

/// Starts a child (by `method`) that holds `lock` until killed; returns once it holds it.
fn start_holder(method: StartMethod, lock: &Lock) -> Holder {
    let ready = flags::new_flag();
    let process = Running::start_by(
        method,
        hold_until_killed,
        (lock.clone(), ready.clone(), std::process::id()),
    );
    flags::wait_for_flag(&ready, 1, process.pid());
    Holder {
        process,
        _ready: ready,
    }
}

/// Kills `holder` with SIGKILL and checks that `join` reports exactly that.
fn kill_and_join<A, R>(holder: &mut Running<A, R>)
where
    A: serde::Serialize + serde::de::DeserializeOwned,
    R: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pid = holder.pid();
    holder.kill();
    match holder.join() {
        Err(JoinError::Killed {
            pid: killed,
            signal,
        }) => {
            assert_eq!((killed, signal), (pid, 9), "killed by SIGKILL");
        }
        other => panic!("expected JoinError::Killed {{ signal: 9 }}, got {other:?}"),
    }
    assert_eq!(
        holder.process().exit_status(),
        Some(ExitStatus::Signaled(9))
    );
}

fn a_lock_whose_holder_is_killed_reports_owner_died_and_then_works(method: StartMethod) {
    let lock = Lock::new().expect("create a lock");
    let mut started = start_holder(method, &lock);
    let holder = &mut started.process;
    let holder_pid = holder.pid();
    assert!(
        matches!(lock.try_lock(), Err(TryLockError::WouldBlock { .. })),
        "{method}: the live child holds the lock"
    );
    assert_eq!(lock.owner().expect("owner"), Some(holder_pid));
    kill_and_join(holder);

    match lock.lock() {
        Err(LockError::OwnerDied(guard)) => {
            assert_eq!(guard.previous_owner_died(), Some(holder_pid));
            guard.mark_consistent().expect("mark the lock consistent");
        }
        other => panic!("{method}: expected OwnerDied, got {}", label(&other)),
    }
    assert_eq!(lock.owner_deaths(), 1);
    // From here on the lock works as if nothing had happened.
    {
        let guard = lock.lock().expect("lock after the repair");
        assert_eq!(guard.previous_owner_died(), None);
        assert_eq!(lock.owner().expect("owner"), Some(std::process::id()));
        let lock_in_thread = lock.clone();
        let elsewhere = std::thread::spawn(move || label(&lock_in_thread.try_lock()));
        assert_eq!(elsewhere.join().expect("thread"), "would block");
    }
    drop(lock.try_lock().expect("try_lock after the repair"));
    drop(lock.lock().expect("lock again"));
    // And another process agrees.
    let mut checker = Running::start_by(method, try_lock_label, lock.clone());
    assert_eq!(checker.join().expect("checker"), "ok");
    assert_eq!(lock.owner_deaths(), 1);
}

fn try_lock_label(lock: Lock) -> String {
    label(&lock.try_lock()).to_owned()
}

fn lock_label(lock: Lock) -> String {
    label(&lock.lock()).to_owned()
}

memspace_testkit::per_mode! {
    a_lock_whose_holder_is_killed_reports_owner_died_and_then_works: fork, spawn;
}

#[test]
fn an_owner_died_guard_dropped_without_mark_consistent_leaves_the_lock_unrecoverable() {
    let _dog = memspace_testkit::start_test();
    let removal = Removal::fresh("unrecoverable");
    let lock = Lock::create(removal.name()).expect("create a lock");
    let mut holder = start_holder(StartMethod::Fork, &lock);
    kill_and_join(&mut holder.process);
    match lock.lock() {
        Err(LockError::OwnerDied(guard)) => drop(guard), // no mark_consistent
        other => panic!("expected OwnerDied, got {}", label(&other)),
    }
    for attempt in 0..2 {
        match lock.lock() {
            Err(LockError::Unrecoverable { name }) => assert_eq!(name.as_str(), removal.name()),
            other => panic!(
                "attempt {attempt}: expected Unrecoverable, got {}",
                label(&other)
            ),
        }
    }
    assert_eq!(label(&lock.try_lock()), "unrecoverable");
    assert_eq!(
        label(&lock.try_lock_for(Duration::from_millis(10))),
        "unrecoverable"
    );
    let message = lock.lock().expect_err("an error").to_string();
    assert!(message.contains(removal.name()), "{message}");
    // So it is for every process, including one that opens it afresh. (The `try_lock`s above
    // must not have left it looking held.)
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let mut other = Running::start_by(method, every_label, lock.clone());
        assert_eq!(
            other.join().expect("another process"),
            ["unrecoverable"; 4],
            "{method}: try_lock, try_lock_for, lock, try_lock"
        );
    }
    assert_eq!(label(&lock.lock()), "unrecoverable");
}

/// What `try_lock`, `try_lock_for`, `lock` and `try_lock` again return, in this order. The
/// timed wait is long so that a lock that looks held is reported as a timeout, not a hang.
fn every_label(lock: Lock) -> Vec<String> {
    vec![
        label(&lock.try_lock()).to_owned(),
        label(&lock.try_lock_for(Duration::from_secs(20))).to_owned(),
        label(&lock.lock()).to_owned(),
        label(&lock.try_lock()).to_owned(),
    ]
}

/// Says it is about to lock, then blocks in `lock()`; returns what it got and, after an owner
/// died, the dead owner's pid (after repairing the lock).
fn lock_and_report((lock, about_to_lock): (Lock, Mutex<u32>)) -> (String, Option<u32>) {
    flags::set_flag(&about_to_lock, 1);
    match lock.lock() {
        Err(LockError::OwnerDied(guard)) => {
            let previous = guard.previous_owner_died();
            guard.mark_consistent().expect("mark the lock consistent");
            ("owner died".to_owned(), previous)
        }
        other => (label(&other).to_owned(), None),
    }
}

fn a_process_blocked_in_lock_is_woken_with_owner_died_when_the_holder_is_killed(
    waiter_method: StartMethod,
) {
    let lock = Lock::new().expect("create a lock");
    let mut holder = start_holder(StartMethod::Fork, &lock);
    let about_to_lock = flags::new_flag();
    let mut waiter = Running::start_by(
        waiter_method,
        lock_and_report,
        (lock.clone(), about_to_lock.clone()),
    );
    flags::wait_for_flag(&about_to_lock, 1, waiter.pid());
    // It said it is about to lock; once all its threads sleep, it sleeps in `lock()`.
    while !procfs::all_threads_sleeping(waiter.pid()) {
        assert!(!waiter.has_ended(), "the waiter ended instead of blocking");
        std::thread::yield_now();
    }
    assert!(!waiter.has_ended());
    let holder_pid = holder.process.pid();
    kill_and_join(&mut holder.process);
    let (got, previous) = waiter.join().expect("the waiter");
    assert_eq!(
        got, "owner died",
        "{waiter_method}: the blocked waiter is woken and told"
    );
    assert_eq!(previous, Some(holder_pid));
    // The waiter repaired it: the next lock is clean.
    let guard = lock.lock().expect("lock after the waiter's repair");
    assert_eq!(guard.previous_owner_died(), None);
    assert_eq!(lock.owner_deaths(), 1);
}

memspace_testkit::per_mode! {
    a_process_blocked_in_lock_is_woken_with_owner_died_when_the_holder_is_killed: fork, spawn;
}

/// Takes the lock, sets `flag` to 1, holds the lock until the test sets it to 2, then releases
/// it and returns.
fn hold_until_told((lock, flag, parent): (Lock, Mutex<u32>, u32)) -> bool {
    let guard = lock.lock().expect("the child takes the free lock");
    flags::set_flag(&flag, 1);
    flags::child_wait_for_flag(&flag, 2, parent);
    drop(guard);
    true
}

#[test]
fn try_lock_for_times_out_while_another_process_holds_the_lock_and_succeeds_once_released() {
    let _dog = Watchdog::start();
    let lock = Lock::new().expect("create a lock");
    let flag = flags::new_flag();
    let mut holder = Running::start(Process::new(
        hold_until_told,
        (lock.clone(), flag.clone(), std::process::id()),
    ));
    flags::wait_for_flag(&flag, 1, holder.pid());

    let timeout = Duration::from_millis(100);
    let started = Instant::now();
    match lock.try_lock_for(timeout) {
        Err(TryLockError::Timeout { name, waited }) => {
            assert_eq!(name, *lock.name());
            assert_eq!(waited, timeout);
        }
        other => panic!("expected Timeout, got {}", label(&other)),
    }
    assert!(
        started.elapsed() >= timeout,
        "it waited at least the timeout ({:?})",
        started.elapsed()
    );
    match lock.try_lock() {
        Err(TryLockError::WouldBlock { name }) => assert_eq!(name, *lock.name()),
        other => panic!("expected WouldBlock, got {}", label(&other)),
    }
    let message = lock
        .try_lock_for(Duration::from_millis(1))
        .expect_err("still held")
        .to_string();
    assert!(message.contains(lock.name().as_str()), "{message}");

    flags::set_flag(&flag, 2);
    let guard = lock
        .try_lock_for(Duration::from_secs(30))
        .expect("the holder releases the lock");
    assert_eq!(guard.previous_owner_died(), None);
    drop(guard);
    assert!(holder.join().expect("the holder"));
}

/// Says it is about to lock (`flag` 1), blocks in `lock()`, says it holds the lock (`flag` 2)
/// and releases it at once.
fn lock_and_say_so((lock, flag): (Lock, Mutex<u32>)) -> String {
    flags::set_flag(&flag, 1);
    let got = lock.lock();
    let seen = label(&got).to_owned();
    flags::set_flag(&flag, 2);
    seen
}

/// Says it is about to lock (`flag` 1), then waits at most 300 ms for the lock.
fn try_lock_for_a_while((lock, flag): (Lock, Mutex<u32>)) -> String {
    flags::set_flag(&flag, 1);
    label(&lock.try_lock_for(Duration::from_millis(300))).to_owned()
}

/// A child process that waits for a lock, started with its flag.
type Waiter = Running<(Lock, Mutex<u32>), String>;

/// Holds `lock` (created as `removal`) while a child process runs `waiter` (which sets `flag`
/// to 1, then waits for the lock) until the child has waited long enough to ask for the lock
/// to be handed over; returns the guard, the running child and its flag.
fn hold_while_a_child_starves<'a>(
    lock: &'a Lock,
    removal: &Removal,
    waiter: fn((Lock, Mutex<u32>)) -> String,
) -> (LockGuard<'a>, Waiter, Mutex<u32>) {
    let guard = lock.lock().expect("lock the new lock");
    let flag = flags::new_flag();
    let child = Running::start(Process::new(waiter, (lock.clone(), flag.clone())));
    flags::wait_for_flag(&flag, 1, child.pid());
    // It waits at least 1 ms, then asks before it sleeps again (about 2 ms after it first
    // slept, when it looks at whether this process lives).
    let file = removal.file();
    while file.read(LOCK_STARVING, 4) != 1u32.to_le_bytes() {
        assert!(!child.has_ended(), "the waiter ended instead of blocking");
        std::thread::sleep(Duration::from_millis(1));
    }
    (guard, child, flag)
}

#[test]
fn a_process_that_waited_gets_the_lock_before_the_process_that_releases_it_locks_again() {
    let _dog = Watchdog::start();
    // A round can miss the hand-over for reasons of the machine's: the waiter asks again
    // before each sleep, every millisecond, and a release that finds it between two sleeps
    // (this process preempted after it saw the waiter asleep) wakes nobody and frees the lock
    // to 0 after all, as it would for a waiter gone; or this process, preempted after its
    // release, finds the lock free again because the waiter took it and released it
    // meanwhile. So a few rounds, each passing only if this process found the lock handed
    // over and the waiter held it first, and two of them must. Without the hand-over, a round
    // passes only if this process is preempted between its release and its `try_lock` while
    // the waiter takes the lock (about one round in 300 here).
    let rounds = 10;
    let served = (0..rounds)
        .filter(|round| hands_over_to_the_waiter(*round))
        .take(2)
        .count();
    assert_eq!(
        served, 2,
        "in {rounds} rounds, the lock was handed over to the process that waited {served} times"
    );
}

/// One round: a child waits for the lock this process holds until it asks for it, this
/// process releases it, fails to take it at once, and locks again. Whether it was handed over
/// to the child, which held it in between.
fn hands_over_to_the_waiter(round: usize) -> bool {
    let removal = Removal::fresh(&format!("handed-over-{round}"));
    let lock = Lock::create(removal.name()).expect("create a lock");
    let (guard, mut waiter, flag) = hold_while_a_child_starves(&lock, &removal, lock_and_say_so);
    // Where `/proc` does not tell, the round goes on after a while, and may miss.
    let looking_since = Instant::now();
    while !procfs::asleep_in_futex(waiter.pid()) && looking_since.elapsed() < Duration::from_secs(1)
    {
        assert!(!waiter.has_ended(), "the waiter ended instead of blocking");
        std::thread::yield_now();
    }
    // Freed to 0, the lock would go straight back to this process, which runs; handed over,
    // this process waits for the child to take it and release it.
    drop(guard);
    let blocked = label(&lock.try_lock()) == "would block";
    let guard = lock.lock().expect("lock again once the waiter released it");
    let waiter_first = flags::read_flag(&flag) == 2;
    assert_eq!(guard.previous_owner_died(), None);
    drop(guard);
    assert_eq!(waiter.join().expect("the waiter"), "ok");
    assert_eq!(
        removal.file().read(LOCK_STARVING, 4),
        [0; 4],
        "asked, then served or withdrawn"
    );
    blocked && waiter_first
}

#[test]
fn a_lock_released_for_a_waiter_killed_meanwhile_is_free_for_the_next_locker() {
    let _dog = Watchdog::start();
    let removal = Removal::fresh("handed-to-dead");
    let lock = Lock::create(removal.name()).expect("create a lock");
    let (guard, mut waiter, _) = hold_while_a_child_starves(&lock, &removal, lock_and_say_so);
    kill_and_join(&mut waiter);
    // It asked, but nobody sleeps any more: the release wakes nobody and frees the lock after
    // all, for `try_lock` too.
    drop(guard);
    assert_eq!(removal.file().read_u64(LOCK_WORD), 0);
    let guard = lock.try_lock().expect("free: nobody to hand it to");
    assert_eq!(guard.previous_owner_died(), None);
    drop(guard);
    assert_eq!(lock.owner_deaths(), 0);
}

#[test]
fn a_waiter_that_asked_and_timed_out_withdraws_its_request() {
    let _dog = Watchdog::start();
    let removal = Removal::fresh("asked-gave-up");
    let lock = Lock::create(removal.name()).expect("create a lock");
    let (guard, mut waiter, _) = hold_while_a_child_starves(&lock, &removal, try_lock_for_a_while);
    assert_eq!(waiter.join().expect("the waiter"), "timeout");
    let file = removal.file();
    assert_eq!(
        file.read(LOCK_STARVING, 4),
        [0; 4],
        "withdrawn as it gave up"
    );
    drop(guard);
    assert_eq!(file.read_u64(LOCK_WORD), 0, "freed, not handed over");
    assert_eq!(label(&lock.try_lock()), "ok");
}

fn panic_holding(lock: Lock) {
    let _held = lock.lock().expect("lock");
    panic!("boom while holding the lock");
}

/// Locks, expecting the poison; clears it.
fn clear_poison(lock: Lock) -> String {
    match lock.lock() {
        Err(LockError::Poisoned(guard)) => {
            guard.clear_poison();
            "poisoned".to_owned()
        }
        other => label(&other).to_owned(),
    }
}

#[test]
fn a_thread_that_panics_holding_the_lock_poisons_it_for_other_processes_until_cleared() {
    let _dog = memspace_testkit::start_test();
    let lock = Lock::new().expect("create a lock");
    let mut thread = Thread::new(panic_holding, lock.clone());
    thread.start().expect("start a thread");
    match thread.join() {
        Err(JoinError::Panicked { worker, message }) => {
            assert_eq!(worker, "thread");
            assert!(message.contains("boom"), "{message}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert!(lock.segment().expect("in shared memory").lock_poisoned());
    // Here: poisoned, and dropping the guard without clearing leaves it so.
    match lock.try_lock() {
        Err(TryLockError::Lock(LockError::Poisoned(guard))) => drop(guard),
        other => panic!("expected Poisoned, got {}", label(&other)),
    }
    assert!(lock.segment().expect("in shared memory").lock_poisoned());
    // In a spawned process, which shares nothing with this one but the segment: poisoned too;
    // it clears the poison for everyone.
    let mut other = Running::spawn(clear_poison, lock.clone());
    assert_eq!(other.join().expect("the other process"), "poisoned");
    assert!(!lock.segment().expect("in shared memory").lock_poisoned());
    let guard = lock.lock().expect("clean after clear_poison");
    assert_eq!(guard.previous_owner_died(), None);
    drop(guard);
    let mut forked = Running::start(Process::new(lock_label, lock.clone()));
    assert_eq!(forked.join().expect("a forked process"), "ok");
}

#[test]
fn a_process_that_panics_holding_the_lock_poisons_it_for_the_parent() {
    let _dog = Watchdog::start();
    let lock = Lock::new().expect("create a lock");
    let mut child = Running::start(Process::new(panic_holding, lock.clone()));
    match child.join() {
        Err(JoinError::Panicked { message, .. }) => assert!(message.contains("boom"), "{message}"),
        other => panic!("expected a panic, got {other:?}"),
    }
    match lock.lock() {
        Err(LockError::Poisoned(guard)) => guard.clear_poison(),
        other => panic!("expected Poisoned, got {}", label(&other)),
    }
    drop(lock.lock().expect("clean after clear_poison"));
}

#[test]
fn locking_again_in_the_same_thread_is_would_deadlock_not_a_hang() {
    let _dog = Watchdog::start();
    let lock = Lock::new().expect("create a lock");
    let held = lock.lock().expect("lock");
    match lock.lock() {
        Err(LockError::WouldDeadlock { name }) => assert_eq!(name, *lock.name()),
        other => panic!("expected WouldDeadlock, got {}", label(&other)),
    }
    assert_eq!(
        label(&lock.try_lock_for(Duration::from_secs(30))),
        "would deadlock"
    );
    assert_eq!(
        label(&lock.try_lock()),
        "would deadlock",
        "try_lock by the holder"
    );
    drop(held);
    drop(lock.lock().expect("lock once released"));

    let counter = Mutex::new(0u64).expect("create a mutex");
    let mut value = counter.lock().expect("lock the mutex");
    *value = 5;
    assert!(matches!(
        counter.lock(),
        Err(LockError::WouldDeadlock { .. })
    ));
    drop(value);
    assert_eq!(*counter.lock().expect("lock the mutex again"), 5);
}

const INCREMENTS: u64 = 5_000;

/// Increments the counter `INCREMENTS` times, as a read, a pause and a write: without mutual
/// exclusion, increments would be lost.
fn increment(counter: Mutex<u64>) {
    for _ in 0..INCREMENTS {
        let mut value = counter.lock().expect("lock the counter");
        let read = *value;
        std::hint::spin_loop();
        std::thread::yield_now();
        *value = read + 1;
    }
}

#[test]
fn a_mutex_keeps_every_increment_of_four_processes() {
    let _dog = memspace_testkit::start_test();
    let counter = Mutex::new(0u64).expect("create a mutex");
    let mut workers: Vec<_> = [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::Fork,
        StartMethod::Spawn,
    ]
    .into_iter()
    .map(|method| Running::start_by(method, increment, counter.clone()))
    .collect();
    for worker in &mut workers {
        worker.join().expect("a worker");
    }
    assert_eq!(*counter.lock().expect("lock the counter"), 4 * INCREMENTS);
}

// ---------------------------------------------------------------------------------------------
// A list writer killed inside `push`

fn big(tag: char) -> String {
    tag.to_string().repeat(200_000)
}

#[test]
fn a_list_writer_killed_inside_push_holding_the_lists_lock_leaves_it_consistent_and_usable() {
    if let Some(role) = roles::role() {
        // The child: push one big item; the failpoint in its environment stops it inside.
        assert_eq!(role, "push");
        let list = SharedList::<String>::open(&roles::role_segment()).expect("open the list");
        list.push(&big('x')).expect("push");
        return;
    }
    let _dog = Watchdog::start();
    // Where the writer stops: a block reserved, the file grown, the item written but not
    // published, the item published but the end of data not advanced.
    for point in [
        "list.block_reserved",
        "grow.allocated",
        "list.written",
        "list.published",
    ] {
        let removal = Removal::fresh("killedpush");
        let list = SharedList::<String>::create(removal.name()).expect("create a list");
        // 512 items fill the first index block: the child's push reserves the second.
        let before: Vec<String> = (0..512).map(|i| format!("before {i}")).collect();
        list.extend(&before).expect("extend");

        let mut writer = roles::child_in_role(
            "push",
            &[
                (roles::SEGMENT, removal.name()),
                ("MEMSPACE_FAILPOINT", point),
            ],
        );
        writer.wait_until_stopped(point);
        assert_eq!(
            list.segment().expect("in shared memory").lock_owner(),
            Some(writer.pid()),
            "{point}: the stopped writer holds the list's lock"
        );
        let status = writer.kill();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{point}: {status}"
        );

        let report = inspect::verify(list.segment().expect("in shared memory"));
        assert!(
            report.is_consistent(),
            "{point}, before any repair: {report:?}"
        );
        let published = point == "list.published";
        assert_eq!(
            list.len().expect("len"),
            512 + u64::from(published),
            "{point}"
        );

        // The next writer repairs the list and appends; growth still works.
        list.push(&"after".to_owned()).expect("push after the kill");
        list.push(&big('y')).expect("a big push after the kill");
        let mut expected = before;
        if published {
            expected.push(big('x'));
        }
        expected.extend(["after".to_owned(), big('y')]);
        let items = list.to_vec().expect("read the list");
        assert!(
            items == expected,
            "{point}: the list after the kill and two pushes"
        );
        let report = inspect::verify(list.segment().expect("in shared memory"));
        assert!(
            report.is_consistent(),
            "{point}, after the repair: {report:?}"
        );
        assert_eq!(
            list.segment()
                .expect("in shared memory")
                .lock_owner_deaths(),
            1,
            "{point}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// How a waiter tells a dead holder from a live one: the lock word names the holder's thread
// and carries its start time (see `src/segment/raw_mutex.rs`).

#[test]
fn a_thread_that_ends_holding_the_lock_is_a_dead_owner_for_the_next_locker() {
    let _dog = Watchdog::start();
    let lock = Lock::new().expect("create a lock");
    let holder = lock.clone();
    std::thread::spawn(move || std::mem::forget(holder.lock().expect("lock in the thread")))
        .join()
        .expect("the thread ends");
    // The process lives on; only the holding thread is gone.
    let guard = match lock.lock() {
        Err(LockError::OwnerDied(guard)) => guard,
        other => panic!("expected OwnerDied, got {}", label(&other)),
    };
    assert_eq!(guard.previous_owner_died(), Some(std::process::id()));
    guard.mark_consistent().expect("mark consistent");
    drop(guard);
    assert_eq!(label(&lock.try_lock()), "ok");
    assert_eq!(lock.owner_deaths(), 1);
}

/// The lock slot's words, at offset 128 of the segment (see `src/segment/raw_mutex.rs`).
const LOCK_WORD: u64 = 128;
const LOCK_OWNER: u64 = 136;
const LOCK_STATE: u64 = 144;
const LOCK_FOREIGN_USERS: u64 = 156;
const LOCK_OWNER_NAMESPACE: u64 = 160;
const LOCK_NAMESPACE_OF: u64 = 168;
/// 1 once a waiter has waited long enough to have the lock handed over to it.
const LOCK_STARVING: u64 = 188;
/// The lock word's mark of a holder from other namespaces than the segment's creator.
const FOREIGN: u64 = 1 << 29;

/// This process's namespaces as the lock records them: the pid namespace's inode mixed with
/// the time namespace's (0 where the kernel has none).
fn own_namespaces() -> u64 {
    namespaces_with_pid_inode_plus(0)
}

/// Namespaces other than this process's, as the lock records namespaces: this process's,
/// with the pid namespace's inode plus one.
fn other_namespaces() -> u64 {
    namespaces_with_pid_inode_plus(1)
}

fn namespaces_with_pid_inode_plus(delta: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let inode = |path: &str| std::fs::metadata(path).map_or(0, |m| m.ino());
    let pid = std::fs::metadata("/proc/thread-self/ns/pid")
        .expect("stat /proc/thread-self/ns/pid")
        .ino();
    (pid + delta) ^ inode("/proc/thread-self/ns/time").rotate_left(32)
}

/// Writes the lock slot of segment `name` as if thread `tid` of process `tid` held it, having
/// started at `start` (`None`: unknown, as for a holder that could not read `/proc`). Returns
/// the lock word.
fn pretend_held_by(name: &str, tid: u32, start: Option<u64>) -> u64 {
    let file = SegmentFile::open(&names::shm_path(name));
    let word = u64::from(tid) | (start.map_or(0, |start| start & 0xffff_ffff) << 32);
    file.write_u64(LOCK_WORD, word);
    file.write_u64(LOCK_OWNER, u64::from(tid) | (u64::from(tid) << 32));
    word
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read its stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a command name") + 2..]
        .split_whitespace()
        .collect();
    fields[22 - 3].parse().expect("a start time")
}

/// A process that stands in for a lock's holder: it lives until killed (a minute at most).
fn sleeper() -> std::process::Child {
    std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("start sleep(1)")
}

#[test]
fn a_holder_is_alive_while_its_thread_runs_with_the_start_time_its_word_records() {
    let _dog = Watchdog::start();
    let removal = Removal::fresh("start-time");
    let lock = Lock::create(removal.name()).expect("create a lock");
    let mut sleeper = sleeper();
    let pid = sleeper.id();

    // The sleeper as holder, with its own start time: a live holder.
    pretend_held_by(removal.name(), pid, Some(start_time(pid)));
    assert_eq!(label(&lock.try_lock()), "would block");
    assert_eq!(
        label(&lock.try_lock_for(Duration::from_millis(300))),
        "timeout"
    );
    assert_eq!(lock.owner().expect("owner"), Some(pid));

    // Its start time unknown: the thread's existence is all a waiter can go on, so it waits.
    pretend_held_by(removal.name(), pid, None);
    assert_eq!(label(&lock.try_lock()), "would block");

    // With another start time, but from another pid namespace (one that opened the segment,
    // and recorded its namespace beside the word): its ids mean nothing here, so it is waited
    // for, never judged.
    let file = removal.file();
    let word = pretend_held_by(removal.name(), pid, Some(start_time(pid) + 1)) | FOREIGN;
    file.write(LOCK_FOREIGN_USERS, &1u32.to_le_bytes());
    file.write_u64(LOCK_OWNER_NAMESPACE, other_namespaces());
    file.write_u64(LOCK_NAMESPACE_OF, word);
    file.write_u64(LOCK_WORD, word);
    assert_eq!(label(&lock.try_lock()), "would block");
    // Its namespace not recorded yet: still waited for.
    file.write_u64(LOCK_NAMESPACE_OF, 0);
    assert_eq!(label(&lock.try_lock()), "would block");
    // No process of another namespace ever opened the segment: the mark is damage, and the
    // holder is judged as any other (here: the id was reused).
    file.write(LOCK_FOREIGN_USERS, &0u32.to_le_bytes());
    let guard = match lock.try_lock() {
        Err(TryLockError::Lock(LockError::OwnerDied(guard))) => guard,
        other => panic!("expected OwnerDied for a false mark, got {}", label(&other)),
    };
    assert_eq!(guard.previous_owner_died(), Some(pid));
    guard.mark_consistent().expect("mark consistent");
    drop(guard);

    // Another start time in the word: the id was reused, the holder the word names is dead.
    pretend_held_by(removal.name(), pid, Some(start_time(pid) + 1));
    let guard = match lock.try_lock() {
        Err(TryLockError::Lock(LockError::OwnerDied(guard))) => guard,
        other => panic!("expected OwnerDied for a reused id, got {}", label(&other)),
    };
    assert_eq!(guard.previous_owner_died(), Some(pid));
    guard.mark_consistent().expect("mark consistent");
    drop(guard);

    // Its start time unknown, and then the thread ends: a waiter already blocked takes over.
    pretend_held_by(removal.name(), pid, None);
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            let result = lock.lock();
            let seen = label(&result).to_owned();
            if let Err(LockError::OwnerDied(guard)) = result {
                guard.mark_consistent().expect("mark consistent");
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    sleeper.kill().expect("kill sleep(1)");
    sleeper.wait().expect("reap sleep(1)");
    assert_eq!(waiter.join().expect("the waiter"), "owner died");
    assert_eq!(lock.owner_deaths(), 3);
    assert_eq!(label(&lock.try_lock()), "ok");
}

/// An `RLock`'s depth: the first word of its kind area.
const RLOCK_DEPTH: u64 = 2304;

/// A reentry refused because the depth cannot count one more (a depth damaged to `u32::MAX`,
/// or reached) leaves the thread's hold as it was: still held, at the same depth, and
/// released by the guards it has.
#[test]
fn a_reentry_the_depth_cannot_count_leaves_the_hold_as_it_was() {
    let _dog = Watchdog::start();
    let removal = Removal::fresh("rlock-depth");
    let lock = RLock::create(removal.name()).expect("create a reentrant lock");
    let outer = lock.lock().expect("lock");
    let file = removal.file();
    file.write(RLOCK_DEPTH, &u32::MAX.to_le_bytes());
    assert!(matches!(lock.lock(), Err(LockError::Unavailable { .. })));
    assert!(
        lock.is_held_by_current_thread(),
        "the refused reentry released the lock"
    );
    assert_eq!(lock.depth(), u32::MAX);
    file.write(RLOCK_DEPTH, &1u32.to_le_bytes());
    drop(outer);
    assert_eq!(lock.depth(), 0);
    drop(lock.try_lock().expect("free again"));
}

/// The first reader slot of an `RwLock` (pid and read guards, 4 bytes each, then the start
/// time and the namespaces, 8 bytes each), past the 32 bytes that begin its kind area.
const RWLOCK_FIRST_SLOT: u64 = 2304 + 32;

/// Writes the first reader slot of `file`'s `RwLock` as one read guard of process `pid`,
/// started at `start`, of namespaces `namespaces`.
fn pretend_read_by(file: &SegmentFile, pid: u32, start: u64, namespaces: u64) {
    file.write_u64(RWLOCK_FIRST_SLOT, u64::from(pid) | (1 << 32));
    file.write_u64(RWLOCK_FIRST_SLOT + 8, start);
    file.write_u64(RWLOCK_FIRST_SLOT + 16, namespaces);
}

/// A writer judges a reader only from the reader's own namespaces: the pid of a reader of
/// another pid namespace names another process here (or none), so it is waited for, dead or
/// alive; the same reader of this namespace, dead, is reaped.
#[test]
fn a_writer_judges_only_the_readers_of_its_own_namespaces() {
    let _dog = Watchdog::start();
    let removal = Removal::fresh("rwlock-namespaces");
    let lock = RwLock::create(removal.name(), 1u64).expect("create an rwlock");
    let file = removal.file();
    let mut sleeper = sleeper();
    let (pid, start) = (sleeper.id(), start_time(sleeper.id()));
    pretend_read_by(&file, pid, start, other_namespaces());
    assert_eq!(lock.readers(), 1);
    let waits = |what: &str| {
        assert!(
            matches!(
                lock.try_write_for(Duration::from_millis(200)),
                Err(TryLockError::Timeout { .. })
            ),
            "{what}"
        );
    };
    waits("a writer got in under a live reader of another namespace");
    sleeper.kill().expect("kill sleep(1)");
    sleeper.wait().expect("reap sleep(1)");
    waits("a writer judged a reader of another namespace by a pid that means nothing here");
    pretend_read_by(&file, pid, start, own_namespaces());
    *lock
        .try_write_for(Duration::from_secs(10))
        .expect("the dead reader of this namespace was reaped") = 2;
    assert_eq!(lock.readers(), 0);
}

#[test]
fn a_holder_of_the_home_namespace_is_judged_while_other_namespaces_use_the_segment() {
    let _dog = Watchdog::start();
    let removal = Removal::fresh("home-holder");
    let lock = Lock::create(removal.name()).expect("create a lock");
    let mut sleeper = sleeper();
    let pid = sleeper.id();
    pretend_held_by(removal.name(), pid, Some(start_time(pid)));
    // A process of another pid namespace opened the segment: holders of the home namespace
    // (unmarked words) are still judged from here.
    removal
        .file()
        .write(LOCK_FOREIGN_USERS, &1u32.to_le_bytes());
    assert_eq!(label(&lock.try_lock()), "would block");
    sleeper.kill().expect("kill sleep(1)");
    sleeper.wait().expect("reap sleep(1)");
    let guard = match lock.try_lock() {
        Err(TryLockError::Lock(LockError::OwnerDied(guard))) => guard,
        other => panic!("expected OwnerDied, got {}", label(&other)),
    };
    assert_eq!(guard.previous_owner_died(), Some(pid));
    guard.mark_consistent().expect("mark consistent");
}

#[test]
fn a_garbage_lock_word_is_taken_over_and_a_garbage_state_is_reported_as_damage() {
    let _dog = Watchdog::start();
    let removal = Removal::fresh("garbage-lock");
    let lock = Lock::create(removal.name()).expect("create a lock");
    let file = removal.file();

    // A word naming no thread that exists (ids stop at 2^22).
    file.write(LOCK_WORD, &0x3fff_fff0u32.to_le_bytes());
    match lock.lock() {
        Err(LockError::OwnerDied(guard)) => guard.mark_consistent().expect("mark consistent"),
        other => panic!("expected OwnerDied, got {}", label(&other)),
    }

    file.write(LOCK_STATE, &7u32.to_le_bytes());
    match lock.lock() {
        Err(LockError::Corrupt { name, state }) => {
            assert_eq!(name.as_str(), removal.name());
            assert_eq!(state, 7);
        }
        other => panic!("expected Corrupt, got {}", label(&other)),
    }
    let message = lock.lock().expect_err("still damaged").to_string();
    assert!(message.contains(removal.name()), "{message}");
    assert!(message.contains("remove and recreate"), "{message}");
}

/// The calling thread's id, from /proc/thread-self (a link to `PID/task/TID`).
fn this_thread_id() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .expect("read /proc/thread-self")
        .file_name()
        .and_then(|tid| tid.to_str()?.parse().ok())
        .expect("a thread id")
}

#[test]
fn a_dead_holder_with_the_lockers_own_thread_id_is_taken_over_not_a_deadlock() {
    let _dog = Watchdog::start();
    let removal = Removal::fresh("own-id");
    let lock = Lock::create(removal.name()).expect("create a lock");
    let tid = this_thread_id();
    // A thread that had this thread's id before it, and died holding the lock: same id, but
    // another start time in the word.
    pretend_held_by(removal.name(), tid, Some(start_time(tid) + 1));
    match lock.lock() {
        Err(LockError::OwnerDied(guard)) => guard.mark_consistent().expect("mark consistent"),
        other => panic!("expected OwnerDied, got {}", label(&other)),
    }
    // Held by this thread for real, it is a deadlock again.
    let held = lock.lock().expect("lock");
    assert_eq!(label(&lock.try_lock()), "would deadlock");
    drop(held);
}
