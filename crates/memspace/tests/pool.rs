//! `Pool`: tasks spread over worker processes; a worker that dies is replaced and its task
//! reported (or retried), never a hang.

use std::collections::HashSet;
use std::time::Duration;

use memspace::spawn::{Pool, StartMethod, TaskError};
use memspace_testkit::Watchdog;

fn square(x: u64) -> u64 {
    x * x
}

fn pid_of(_: u32) -> u32 {
    std::process::id()
}

/// Dies without unwinding (SIGABRT) when asked to, like a crash in native code.
fn crash_on(x: u64) -> u64 {
    if x == 3 {
        std::process::abort();
    }
    x + 100
}

fn panic_on(x: u64) -> u64 {
    assert!(x != 2, "two is not allowed");
    x
}

#[test]
fn map_returns_results_in_input_order() {
    let _dog = Watchdog::start();
    let pool = Pool::new(3).expect("pool");
    let squares: Vec<u64> = pool
        .map(square, 0..50)
        .expect("map")
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("no task fails");
    assert_eq!(squares, (0..50).map(|x| x * x).collect::<Vec<_>>());
    pool.join();
}

#[test]
fn tasks_run_in_the_workers_not_in_the_parent() {
    let _dog = Watchdog::start();
    let pool = Pool::new(2).expect("pool");
    let workers: HashSet<u32> = pool.worker_pids().into_iter().collect();
    let pids: HashSet<u32> = pool
        .map(pid_of, 0..20)
        .expect("map")
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    assert!(!pids.contains(&std::process::id()));
    assert!(pids.is_subset(&workers), "{pids:?} not in {workers:?}");
}

#[test]
fn a_worker_that_dies_fails_its_task_and_is_replaced() {
    let _dog = Watchdog::start();
    let pool = Pool::new(2).expect("pool");
    let results = pool.map(crash_on, 0..8).expect("map");
    for (x, result) in (0u64..).zip(&results) {
        if x == 3 {
            assert!(
                matches!(result, Err(TaskError::WorkerDied { how, .. }) if how.contains("signal 6")),
                "{result:?}"
            );
        } else {
            assert_eq!(result, &Ok(x + 100));
        }
    }
    assert_eq!(pool.replaced(), 1);
    assert_eq!(pool.worker_pids().len(), 2);
    // The pool goes on working with the replacement.
    assert_eq!(pool.apply(square, &7).expect("apply"), Ok(49));
}

#[test]
fn a_killed_worker_is_replaced_while_others_go_on() {
    let _dog = Watchdog::start();
    let pool = Pool::new(2).expect("pool");
    let before = pool.worker_pids();
    // SIGKILL an idle worker from outside: the next task sent to it is not lost.
    let killed = before[0];
    std::process::Command::new("kill")
        .args(["-9", &killed.to_string()])
        .status()
        .expect("kill");
    // Wait until it is a zombie (dead, not yet reaped by the pool), so that the pool finds
    // it dead when it hands it a task.
    while !std::fs::read_to_string(format!("/proc/{killed}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    }) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let results: Vec<u64> = pool
        .map(square, 0..10)
        .expect("map")
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("no task lost");
    assert_eq!(results[9], 81);
    assert!(!pool.worker_pids().contains(&killed));
}

#[test]
fn a_panicking_task_is_reported_and_its_worker_survives() {
    let _dog = Watchdog::start();
    let pool = Pool::new(1).expect("pool");
    let worker = pool.worker_pids()[0];
    let results = pool.map(panic_on, 0..4).expect("map");
    assert!(
        matches!(&results[2], Err(TaskError::Panicked { message, .. }) if message.contains("two is not allowed")),
        "{:?}",
        results[2]
    );
    assert_eq!(results[3], Ok(3));
    assert_eq!(
        pool.worker_pids(),
        [worker],
        "a panic does not cost the worker"
    );
    assert_eq!(pool.replaced(), 0);
}

#[test]
fn retries_run_a_task_again_after_its_worker_died() {
    let _dog = Watchdog::start();
    let pool = Pool::new(2).expect("pool").retries(2);
    // crash_on(3) crashes every time: two retries, then reported.
    let results = pool.map(crash_on, [3, 4]).expect("map");
    assert!(matches!(results[0], Err(TaskError::WorkerDied { .. })));
    assert_eq!(results[1], Ok(104));
    assert_eq!(pool.replaced(), 3);
}

#[test]
fn imap_unordered_yields_every_index_once() {
    let _dog = Watchdog::start();
    let pool = Pool::new(3).expect("pool");
    let mut seen: Vec<(usize, u64)> = pool
        .imap_unordered(square, 0..30)
        .expect("imap")
        .map(|item| {
            let (index, result) = item.expect("pool");
            (index, result.expect("task"))
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..30).map(|i| (i, (i * i) as u64)).collect::<Vec<_>>()
    );
}

#[test]
fn apply_async_collects_results_later() {
    let _dog = Watchdog::start();
    let pool = Pool::new(2).expect("pool");
    let a = pool.apply_async(square, &3).expect("submit");
    let b = pool.apply_async(square, &4).expect("submit");
    assert_eq!(b.wait().expect("pool"), Ok(16));
    assert_eq!(a.wait().expect("pool"), Ok(9));
}

#[test]
fn a_spawn_started_pool_works_the_same() {
    let _dog = memspace_testkit::start_test();
    let pool = Pool::with_start_method(2, StartMethod::Spawn).expect("pool");
    let results = pool.map(crash_on, 0..6).expect("map");
    assert_eq!(results[5], Ok(105));
    assert!(matches!(results[3], Err(TaskError::WorkerDied { .. })));
}

fn sleep_forever(_: u32) -> u32 {
    loop {
        std::thread::park();
    }
}

#[test]
fn dropping_a_pool_with_a_task_that_never_ends_does_not_hang() {
    let _dog = Watchdog::start();
    let pool = Pool::new(2).expect("pool");
    let pids = pool.worker_pids();
    let never = pool.apply_async(sleep_forever, &1).expect("submit");
    drop(never);
    drop(pool);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} outlived the pool"
        );
    }
}

#[test]
fn task_handles_of_two_pools_each_collect_their_own_pools_task() {
    // Both pools number their tasks from 0: each handle must get its own pool's answer.
    let _dog = Watchdog::start();
    let a = Pool::new(1).expect("pool a");
    let b = Pool::new(1).expect("pool b");
    let of_a = a.apply_async(square, &7).expect("submit to a");
    let of_b = b.apply_async(square, &5).expect("submit to b");
    assert_eq!(of_b.wait().expect("pool b"), Ok(25));
    assert_eq!(of_a.wait().expect("pool a"), Ok(49));
    a.terminate();
    b.terminate();
}

#[test]
fn joining_a_pool_does_not_wait_for_the_workers_of_another_pool() {
    // Pool b's worker, forked while pool a existed, holds a copy of pool a's task pipe: the
    // end of that input alone never came, and joining pool a waited for pool b.
    let _dog = Watchdog::start();
    let a = Pool::new(1).expect("pool a");
    let b = Pool::new(1).expect("pool b");
    assert_eq!(a.apply(square, &3).expect("pool a"), Ok(9));
    a.join();
    assert_eq!(b.apply(square, &4).expect("pool b"), Ok(16));
    b.join();
}
