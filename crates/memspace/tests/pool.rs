//! `Pool`: tasks spread over worker processes; a worker that dies is replaced and its task
//! reported (or retried), never a hang.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use memspace::spawn::{Pool, PoolOptions, SpawnError, StartMethod, TaskError};
use memspace::sync::Event;
use memspace_testkit::children::wait_until;
use memspace_testkit::{Removal, Watchdog};

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

memspace_testkit::per_mode! {
    starmap_calls_the_target_with_the_items_of_each_tuple: fork, spawn;
    chunks_of_inputs_go_to_one_worker_each_and_a_crash_costs_only_its_task: fork, spawn;
    the_initializer_runs_once_in_each_worker_before_its_first_task: fork, spawn;
    a_failing_initializer_fails_the_tasks_instead_of_restarting_workers_forever: fork, spawn;
    each_worker_is_replaced_after_max_tasks_per_child_tasks: fork, spawn;
    task_handles_wait_with_a_timeout_and_say_whether_they_are_ready_and_successful: fork, spawn;
}

fn power(base: u64, exponent: u32) -> u64 {
    base.pow(exponent)
}

fn describe(name: String, times: usize, separator: char) -> String {
    vec![name; times].join(&separator.to_string())
}

fn starmap_calls_the_target_with_the_items_of_each_tuple(method: StartMethod) {
    let pool = Pool::with_start_method(2, method).expect("pool");
    let powers = pool
        .starmap(power as fn(u64, u32) -> u64, [(2, 10), (3, 2), (10, 0)])
        .expect("starmap");
    assert_eq!(powers, [Ok(1024), Ok(9), Ok(1)], "{method}");
    let described = pool
        .starmap(
            describe as fn(String, usize, char) -> String,
            [("ab".to_owned(), 3, '-'), ("x".to_owned(), 1, '+')],
        )
        .expect("starmap");
    assert_eq!(described, [Ok("ab-ab-ab".to_owned()), Ok("x".to_owned())]);
    let later = pool
        .starmap_async(power as fn(u64, u32) -> u64, [(5, 3)])
        .expect("starmap_async");
    assert_eq!(later.wait().expect("wait"), [Ok(125)]);
    pool.join();
}

fn chunks_of_inputs_go_to_one_worker_each_and_a_crash_costs_only_its_task(method: StartMethod) {
    let pool = PoolOptions::new()
        .workers(2)
        .start_method(method)
        .chunksize(4)
        .start()
        .expect("pool");
    let pids: Vec<u32> = pool
        .map(pid_of, 0..8)
        .expect("map")
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    // Inputs 0..4 went to one worker in one frame, 4..8 to the other: with chunks of one, the
    // first two inputs go to the two idle workers.
    assert!(
        pids[..4].iter().all(|&p| p == pids[0]),
        "{method}: {pids:?}"
    );
    assert!(
        pids[4..].iter().all(|&p| p == pids[4]),
        "{method}: {pids:?}"
    );
    assert_ne!(pids[0], pids[4], "{method}: {pids:?}");

    // Input 3 crashes its worker in the middle of the chunk 0..4: only it fails.
    let results = pool.map(crash_on, 0..8).expect("map");
    for (x, result) in (0u64..).zip(&results) {
        if x == 3 {
            assert!(
                matches!(result, Err(TaskError::WorkerDied { .. })),
                "{result:?}"
            );
        } else {
            assert_eq!(result, &Ok(x + 100), "{method}: input {x}");
        }
    }
    assert_eq!(pool.replaced(), 1);
}

static INITIALIZED: AtomicU32 = AtomicU32::new(0);
static TAG: AtomicU32 = AtomicU32::new(0);

fn initialize(tag: u32) {
    INITIALIZED.fetch_add(1, Ordering::SeqCst);
    TAG.store(tag, Ordering::SeqCst);
}

/// What the worker's initializer left: (pid, runs of the initializer, its tag).
fn initialized(_: u32) -> (u32, u32, u32) {
    (
        std::process::id(),
        INITIALIZED.load(Ordering::SeqCst),
        TAG.load(Ordering::SeqCst),
    )
}

fn the_initializer_runs_once_in_each_worker_before_its_first_task(method: StartMethod) {
    let pool = PoolOptions::new()
        .workers(3)
        .start_method(method)
        .initializer(initialize, &77)
        .start()
        .expect("pool");
    let results = pool.map(initialized, 0..30).expect("map");
    for result in results {
        let (pid, runs, tag) = result.expect("task");
        assert_eq!((runs, tag), (1, 77), "{method}: worker {pid}");
    }
    assert_eq!(INITIALIZED.load(Ordering::SeqCst), 0, "not in the parent");
    pool.join();
}

fn refuse_to_initialize(_: ()) {
    panic!("no database today");
}

fn a_failing_initializer_fails_the_tasks_instead_of_restarting_workers_forever(
    method: StartMethod,
) {
    let pool = PoolOptions::new()
        .workers(2)
        .start_method(method)
        .initializer(refuse_to_initialize, &())
        .start()
        .expect("pool");
    let results = pool.map(square, 0..4).expect("map");
    for result in results {
        assert!(
            matches!(&result, Err(TaskError::Failed { message, .. })
                if message.contains("initializer") && message.contains("no database today")),
            "{method}: {result:?}"
        );
    }
    assert_eq!(pool.replaced(), 0);
}

fn each_worker_is_replaced_after_max_tasks_per_child_tasks(method: StartMethod) {
    let pool = PoolOptions::new()
        .workers(2)
        .start_method(method)
        .max_tasks_per_child(3)
        .chunksize(2) // a chunk is cut to what its worker has left
        .initializer(initialize, &5)
        .start()
        .expect("pool");
    let first = pool.worker_pids();
    let results: Vec<(u32, u32, u32)> = pool
        .map(initialized, 0..12)
        .expect("map")
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let mut per_pid: HashMap<u32, usize> = HashMap::new();
    for &(pid, runs, tag) in &results {
        *per_pid.entry(pid).or_default() += 1;
        assert_eq!(
            (runs, tag),
            (1, 5),
            "{method}: a new worker ran the initializer"
        );
    }
    assert!(
        per_pid.values().all(|&n| n <= 3),
        "{method}: a worker ran more than 3 tasks: {per_pid:?}"
    );
    assert!(
        per_pid.len() >= 4,
        "{method}: 12 tasks, 3 per worker: {per_pid:?}"
    );
    // A worker that ran its 3 tasks was replaced (and reaped); one that ran fewer by the end
    // of the map still works.
    let spent: Vec<u32> = per_pid
        .iter()
        .filter(|(_, n)| **n == 3)
        .map(|(pid, _)| *pid)
        .collect();
    assert_eq!(pool.retired(), spent.len() as u64, "{method}: {per_pid:?}");
    assert_eq!(pool.replaced(), 0, "{method}: retiring is not dying");
    let now = pool.worker_pids();
    assert_eq!(now.len(), 2);
    assert!(
        !now.iter()
            .any(|pid| first.contains(pid) && spent.contains(pid))
    );
    for pid in spent {
        assert!(
            !now.contains(&pid),
            "{method}: {pid} ran 3 tasks and still works"
        );
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{method}: retired worker {pid} was reaped"
        );
    }
    pool.join();
}

/// Returns `x` once `go` is set.
fn square_when_told((go, x): (Event, u64)) -> u64 {
    go.wait().expect("wait for the go");
    x * x
}

fn task_handles_wait_with_a_timeout_and_say_whether_they_are_ready_and_successful(
    method: StartMethod,
) {
    let name = Removal::fresh("pool-go");
    let go = Event::create(name.name()).expect("create an event");
    let pool = Pool::with_start_method(2, method).expect("pool");
    let blocked = pool
        .apply_async(square_when_told, &(go.clone(), 6))
        .expect("submit");
    let many = pool
        .map_async(square_when_told, [(go.clone(), 2), (go.clone(), 3)])
        .expect("submit");
    assert!(!blocked.ready().expect("ready"));
    assert!(matches!(
        blocked.successful(),
        Err(SpawnError::NotReady { tasks: 1 })
    ));
    assert!(
        !blocked
            .wait_timeout(Duration::from_millis(20))
            .expect("wait")
    );
    assert!(!many.wait_timeout(Duration::ZERO).expect("wait"));
    let err = many.successful().expect_err("not ready");
    assert!(err.to_string().contains("ready()"), "{err}");

    go.set().expect("set");
    assert!(blocked.wait_timeout(Duration::from_secs(30)).expect("wait"));
    assert!(blocked.ready().expect("ready"));
    assert!(blocked.successful().expect("successful"));
    assert_eq!(blocked.wait().expect("wait"), Ok(36));
    assert!(many.wait_timeout(Duration::from_secs(30)).expect("wait"));
    assert!(many.successful().expect("successful"));
    assert_eq!(many.wait().expect("wait"), [Ok(4), Ok(9)]);

    let panicked = pool.apply_async(panic_on, &2).expect("submit");
    assert!(
        panicked
            .wait_timeout(Duration::from_secs(30))
            .expect("wait")
    );
    assert!(!panicked.successful().expect("successful"));
    assert!(matches!(
        panicked.wait(),
        Ok(Err(TaskError::Panicked { .. }))
    ));
    let some_panicked = pool.map_async(panic_on, 0..4).expect("submit");
    assert!(
        some_panicked
            .wait_timeout(Duration::from_secs(30))
            .expect("wait")
    );
    assert!(!some_panicked.successful().expect("successful"));

    // imap's next with a timeout.
    go.clear().expect("clear");
    let mut results = pool
        .imap(square_when_told, [(go.clone(), 4)])
        .expect("imap");
    assert!(matches!(
        results.next_timeout(Duration::from_millis(5)),
        Some(Ok(None))
    ));
    go.set().expect("set");
    assert_eq!(
        results
            .next_timeout(Duration::from_secs(30))
            .map(|r| r.expect("pool")),
        Some(Some(Ok(16)))
    );
    assert!(results.next_timeout(Duration::ZERO).is_none());
}

#[test]
fn several_threads_submit_and_wait_on_one_pool_at_once() {
    let _dog = Watchdog::start();
    let pool = Pool::new(3).expect("pool");
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let pool = &pool;
            scope.spawn(move || {
                for round in 0..10u64 {
                    let base = thread * 1000 + round * 10;
                    let squares = pool.map(square, base..base + 5).expect("map");
                    let expected: Vec<_> = (base..base + 5).map(|x| Ok(x * x)).collect();
                    assert_eq!(squares, expected, "thread {thread} round {round}");
                    assert_eq!(pool.apply(square, &base).expect("apply"), Ok(base * base));
                }
            });
        }
    });
    pool.join();
}

#[test]
fn a_thread_waiting_for_a_long_task_does_not_hold_up_another_threads_short_ones() {
    // The thread waiting for the blocked task polls the workers that were busy when it began
    // (only the blocked one); the other thread's tasks go to the idle worker meanwhile, and
    // must still be collected: the poller is woken to look again.
    let _dog = Watchdog::start();
    let go = Event::new().expect("create an event");
    let pool = Pool::new(2).expect("pool");
    std::thread::scope(|scope| {
        let (tid_sender, tid) = std::sync::mpsc::channel();
        let (pool, go) = (&pool, &go);
        let long = scope.spawn(move || {
            tid_sender
                .send(memspace_testkit::procfs::current_tid())
                .expect("send the thread id");
            pool.apply(square_when_told, &(go.clone(), 9))
                .expect("apply")
        });
        let tid = tid.recv().expect("the long thread's id");
        wait_until("the long task's thread polls the workers", || {
            memspace_testkit::procfs::thread_wchan(std::process::id(), tid).contains("poll")
        });
        for x in 0..20 {
            let short = pool.apply_async(square, &x).expect("submit");
            assert!(
                short.wait_timeout(Duration::from_secs(20)).expect("wait"),
                "task {x} was never collected"
            );
            assert_eq!(short.wait().expect("wait"), Ok(x * x));
        }
        go.set().expect("set");
        assert_eq!(long.join().expect("the long thread"), Ok(81));
    });
}

#[test]
fn dropped_handles_and_iterators_leave_no_result_behind_and_the_pool_goes_on() {
    let _dog = Watchdog::start();
    let pool = Pool::new(2).expect("pool");
    drop(pool.apply_async(square, &3).expect("submit"));
    drop(pool.map_async(square, 0..10).expect("submit"));
    let mut some = pool.imap(square, 0..10).expect("imap");
    assert_eq!(some.next().map(|r| r.expect("pool")), Some(Ok(0)));
    drop(some);
    assert_eq!(pool.apply(square, &12).expect("apply"), Ok(144));
    assert!(format!("{pool:?}").contains("queued: 0"), "{pool:?}");
    pool.join();
}
