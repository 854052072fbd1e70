//! The reentrant lock (`RLock`) and the guardless `acquire` / `release` of `Lock` and `RLock`:
//! reentrancy in threads and processes, mutual exclusion between processes, a holder killed
//! at depth three, a hold released in a later call and by another thread, and releases of
//! what is not held.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::time::Duration;

use memspace::spawn::{Mode, StartMethod, Worker};
use memspace::sync::{Lock, LockError, Mutex, RLock, ReleaseError, TryLockError};
use memspace::{Error, OpenError, Value};
use memspace_testkit::backends::Fixture;
use memspace_testkit::{Parent, Removal, Running, flags};

memspace_testkit::per_mode! {
    an_rlock_held_twice_by_each_worker_excludes_the_others: thread, fork, spawn;
    an_rlock_holder_killed_at_depth_three_gives_the_next_locker_owner_died: fork, spawn;
    a_lock_acquired_by_a_process_is_released_only_by_it_and_its_death_is_owner_died: fork, spawn;
}

memspace_testkit::on_both_backends!(
    a_lock_acquired_in_one_call_is_released_in_a_later_one_by_any_thread,
    releasing_a_lock_not_acquired_is_an_error_naming_it_and_its_owner,
);

fn try_label<G>(result: Result<G, TryLockError<G>>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(TryLockError::WouldBlock { .. }) => "would block",
        Err(TryLockError::Timeout { .. }) => "timeout",
        Err(TryLockError::Lock(LockError::OwnerDied(_))) => "owner died",
        Err(TryLockError::Lock(LockError::WouldDeadlock { .. })) => "would deadlock",
        Err(_) => "another error",
    }
}

// ---------------------------------------------------------------------------------------------
// RLock in one thread

#[test]
fn an_rlock_is_taken_again_by_its_holder_and_released_as_often() {
    let lock = RLock::new().expect("rlock");
    let outer = lock.lock().expect("lock");
    let inner = lock.lock().expect("lock again in the same thread");
    lock.acquire().expect("and once more without a guard");
    assert_eq!(lock.depth(), 3);
    assert_eq!(lock.owner(), Some(std::process::id()));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(try_label(lock.try_lock()), "would block");
            assert_eq!(try_label(lock.try_acquire()), "would block");
            assert_eq!(
                try_label(lock.acquire_timeout(Duration::from_millis(20))),
                "timeout"
            );
            assert_eq!(lock.depth(), 0, "another thread does not hold it");
            assert!(
                matches!(lock.release(), Err(ReleaseError::NotOwner { .. })),
                "only the owner thread may release"
            );
        });
    });
    // Guards and releases count in the same depth, in any order.
    drop(outer);
    assert_eq!(lock.depth(), 2);
    lock.release().expect("release the guardless level");
    assert_eq!(lock.depth(), 1);
    drop(inner);
    assert_eq!(lock.depth(), 0);
    assert!(!lock.is_held_by_current_thread());
    assert_eq!(lock.owner(), None);
    let err = lock.release().expect_err("nothing left to release");
    let text = err.to_string();
    assert!(
        matches!(err, ReleaseError::NotOwner { owner: None, .. }),
        "{err:?}"
    );
    assert!(text.contains(&lock.name().to_string()), "{text}");
    std::thread::scope(|s| {
        s.spawn(|| drop(lock.try_lock().expect("free for another thread")));
    });
}

#[test]
fn an_rlock_acquired_in_one_call_is_released_in_a_later_one() {
    let lock = RLock::new().expect("rlock");
    let again = RLock::open(&lock.name().to_string()).expect("open by name");
    for _ in 0..3 {
        lock.acquire().expect("acquire");
    }
    assert_eq!(
        again.depth(),
        3,
        "the depth is the lock's, seen by every handle"
    );
    for left in (0..3).rev() {
        again.release().expect("release");
        assert_eq!(lock.depth(), left);
    }
    assert!(lock.release().is_err());
}

#[test]
fn an_rlock_is_a_kind_of_its_own_and_not_on_redis() {
    let removal = Removal::fresh("rlockkind");
    let lock = RLock::create(removal.name()).expect("create");
    assert!(matches!(
        Lock::open(removal.name()),
        Err(Error::Open(OpenError::WrongKind { .. }))
    ));
    let segment = lock.segment().expect("segment");
    assert_eq!(segment.kind(), memspace::segment::Kind::RLock);
    let _outer = lock.lock().expect("lock");
    let _inner = lock.lock().expect("lock again");
    let info = memspace::inspect::info(segment);
    assert_eq!(info.state.get("depth").map(String::as_str), Some("2"));
    assert!(memspace::inspect::verify(segment).is_consistent());
    let refused = RLock::create("redis://127.0.0.1:1/rlock").expect_err("no RLock on Redis");
    let text = refused.to_string();
    assert!(
        matches!(refused, Error::Open(OpenError::InvalidName { .. })),
        "{refused:?}"
    );
    assert!(text.contains("Redis backend"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// RLock across workers

/// Adds one to `counter` `rounds` times, each under the lock taken twice (the second time
/// reentrantly), with a read and a separate write that only mutual exclusion keeps whole.
fn add_under_the_rlock((lock, counter, rounds): (RLock, Value<u64>, u32)) -> u32 {
    let mut deepest = 0;
    for _ in 0..rounds {
        let _outer = lock.lock().expect("lock");
        let _inner = lock.lock().expect("lock again");
        deepest = deepest.max(lock.depth());
        let seen = counter.get().expect("get");
        std::thread::yield_now();
        counter.set(seen + 1).expect("set");
    }
    deepest
}

/// A worker running [`add_under_the_rlock`].
type Adder = Worker<(RLock, Value<u64>, u32), u32>;

fn an_rlock_held_twice_by_each_worker_excludes_the_others(mode: Mode) {
    let lock = RLock::new().expect("rlock");
    let counter = Value::new(0u64).expect("value");
    let mut workers: Vec<Adder> = (0..4)
        .map(|_| {
            Worker::new(
                mode,
                add_under_the_rlock,
                (lock.clone(), counter.clone(), 200),
            )
        })
        .collect();
    for worker in &mut workers {
        worker.start().expect("start");
    }
    for worker in &mut workers {
        assert_eq!(worker.join().expect("join"), 2, "{mode:?}: depth 2 inside");
    }
    assert_eq!(counter.get().expect("get"), 800, "{mode:?}: no update lost");
    assert_eq!(lock.owner(), None);
}

/// Holds the lock at depth three (a guard and two guardless levels), says so, and waits to
/// be killed.
fn hold_three_deep((lock, ready, parent): (RLock, Mutex<u32>, u32)) {
    let guard = lock.lock().expect("lock");
    lock.acquire().expect("acquire");
    lock.acquire().expect("acquire");
    assert_eq!(lock.depth(), 3);
    std::mem::forget(guard);
    flags::set_flag(&ready, 1);
    Parent::from(parent).park_until_killed()
}

fn an_rlock_holder_killed_at_depth_three_gives_the_next_locker_owner_died(method: StartMethod) {
    let lock = RLock::new().expect("rlock");
    let ready = flags::new_flag();
    let mut holder = Running::start_by(
        method,
        hold_three_deep,
        (lock.clone(), ready.clone(), std::process::id()),
    );
    flags::wait_for_flag(&ready, 1, holder.pid());
    let pid = holder.pid();
    assert_eq!(lock.owner(), Some(pid));
    assert_eq!(try_label(lock.try_lock()), "would block");
    holder.kill();
    assert!(holder.join().is_err(), "killed");
    let guard = match lock.lock() {
        Err(LockError::OwnerDied(guard)) => guard,
        Ok(_) => panic!("{method}: expected OwnerDied, got the lock cleanly"),
        Err(other) => panic!("{method}: expected OwnerDied, got {other}"),
    };
    assert_eq!(guard.previous_owner_died(), Some(pid));
    assert_eq!(lock.depth(), 1, "the dead holder's depth is not inherited");
    guard.mark_consistent().expect("mark consistent");
    let inner = lock.lock().expect("reentrant after the takeover");
    drop(inner);
    drop(guard);
    assert_eq!(lock.depth(), 0);
    assert_eq!(lock.owner_deaths(), 1);
    drop(lock.lock().expect("clean again"));
}

// ---------------------------------------------------------------------------------------------
// Lock: acquire and release without a guard

fn a_lock_acquired_in_one_call_is_released_in_a_later_one_by_any_thread(fx: &Fixture) {
    let lock = Lock::create(&fx.name("rawlock")).expect("create");
    lock.acquire().expect("acquire");
    assert_eq!(lock.owner().expect("owner"), Some(std::process::id()));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(try_label(lock.try_lock()), "would block");
            assert_eq!(try_label(lock.try_acquire()), "would block");
        });
    });
    // Another thread releases it, as Python's locks allow.
    std::thread::scope(|s| {
        s.spawn(|| lock.release().expect("release from another thread"));
    });
    assert!(matches!(
        lock.release(),
        Err(ReleaseError::NotHeld { owner: None, .. })
    ));
    // A hold taken by a thread that then ends is still held: it is the process's.
    std::thread::scope(|s| {
        s.spawn(|| lock.acquire().expect("acquire in a thread that ends"));
    });
    assert_eq!(
        try_label(lock.acquire_timeout(Duration::from_millis(150))),
        "timeout",
        "the hold outlives the thread that took it, and is not taken over"
    );
    assert_eq!(try_label(lock.try_lock()), "would block");
    lock.release().expect("release from the main thread");
    // The guard API is unchanged beside it.
    let guard = lock.lock().expect("lock");
    assert!(
        matches!(lock.release(), Err(ReleaseError::NotHeld { .. })),
        "a guard's hold is not released by `release`"
    );
    drop(guard);
    lock.acquire().expect("acquire after the guard");
    lock.release().expect("release");
}

fn releasing_a_lock_not_acquired_is_an_error_naming_it_and_its_owner(fx: &Fixture) {
    let lock = Lock::create(&fx.name("unheld")).expect("create");
    let err = lock.release().expect_err("not held");
    let text = err.to_string();
    assert!(text.contains(&lock.name().to_string()), "{text}");
    assert!(text.contains("free"), "{text}");
}

/// Takes `lock` with `acquire`, says so, and waits to be killed.
fn acquire_until_killed((lock, ready, parent): (Lock, Mutex<u32>, u32)) {
    lock.acquire().expect("acquire");
    flags::set_flag(&ready, 1);
    Parent::from(parent).park_until_killed()
}

fn a_lock_acquired_by_a_process_is_released_only_by_it_and_its_death_is_owner_died(
    method: StartMethod,
) {
    let lock = Lock::new().expect("lock");
    // This process's stamp, cached by the acquisition, must not pass to a forked child.
    lock.acquire().expect("acquire before starting the holder");
    lock.release().expect("release before starting the holder");
    let ready = flags::new_flag();
    let mut holder = Running::start_by(
        method,
        acquire_until_killed,
        (lock.clone(), ready.clone(), std::process::id()),
    );
    flags::wait_for_flag(&ready, 1, holder.pid());
    let pid = holder.pid();
    match lock.release() {
        Err(err @ ReleaseError::NotHeld { owner, .. }) => {
            assert_eq!(owner, Some(pid));
            assert!(err.to_string().contains(&format!("pid {pid}")), "{err}");
        }
        other => panic!("{method}: another process's hold was released: {other:?}"),
    }
    assert_eq!(try_label(lock.try_acquire()), "would block");
    holder.kill();
    assert!(holder.join().is_err(), "killed");
    match lock.acquire() {
        Err(LockError::OwnerDied(())) => {}
        other => panic!("{method}: expected OwnerDied, got {other:?}"),
    }
    lock.mark_consistent().expect("mark consistent");
    lock.release().expect("release");
    assert_eq!(lock.owner_deaths(), 1);
    drop(lock.lock().expect("clean again"));
}

/// In a process's main thread (whose id is the pid, which a process's hold records): takes
/// `lock` with `acquire`, then asks for it again both ways; returns what each said, and whether
/// this ran on the main thread.
fn acquire_twice_on_the_main_thread(lock: Lock) -> (bool, String, String) {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let main = link
        .to_string_lossy()
        .ends_with(&format!("/task/{}", std::process::id()));
    lock.acquire().expect("acquire");
    let again = try_label(lock.acquire_timeout(Duration::from_millis(30))).to_owned();
    let guard = try_label(lock.try_lock_for(Duration::from_millis(30))).to_owned();
    lock.release().expect("release");
    (main, again, guard)
}

#[test]
fn the_main_thread_of_a_process_holding_a_lock_waits_for_a_release_rather_than_deadlock() {
    let _dog = memspace_testkit::start_test();
    let lock = Lock::new().expect("lock");
    // A forked child runs its target on its only thread, its main thread.
    let mut child = Running::start_by(
        StartMethod::Fork,
        acquire_twice_on_the_main_thread,
        lock.clone(),
    );
    let (main, again, guard) = child.join().expect("child");
    assert!(main, "the target ran on the child's main thread");
    // Another thread could release the process's hold: waiting is right, as in Python.
    assert_eq!((again.as_str(), guard.as_str()), ("timeout", "timeout"));
    drop(lock.try_lock().expect("released by the child"));
}
