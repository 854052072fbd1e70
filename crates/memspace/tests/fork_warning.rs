//! The tutorial's experiment through the library, on threads, fork-started and spawn-started
//! processes; many processes appending to one list; and a lock whose holder is killed.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use memspace::spawn::{JoinError, Mode, Process, StartMethod, Worker};
use memspace::sync::{Event, Lock, LockError};
use memspace::{SharedList, inspect};

fn watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_mins(1));
        eprintln!("watchdog: the test hung");
        std::process::abort();
    });
}

fn init_spawn(test: &str) {
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
}

type Plain = Arc<StdMutex<Vec<i64>>>;

/// The tutorial's `func` on a plain list: returns what this worker's list holds at the end.
fn append_plain((nums, lock): (Plain, Lock)) -> Vec<i64> {
    for i in 0..3 {
        let _held = lock.lock().expect("lock");
        nums.lock().expect("std mutex").push(i);
    }
    nums.lock().expect("std mutex").clone()
}

/// The tutorial's `func` on a shared list.
fn append_shared((nums, lock): (SharedList<i64>, Lock)) -> Vec<i64> {
    for i in 0..3 {
        let _held = lock.lock().expect("lock");
        nums.push(&i).expect("push");
    }
    nums.to_vec().expect("read")
}

const ALL: [i64; 9] = [0, 1, 2, 0, 1, 2, 0, 1, 2];

#[test]
fn the_experiment_gives_the_tutorials_results_in_every_mode() {
    init_spawn("the_experiment_gives_the_tutorials_results_in_every_mode");
    for mode in [
        Mode::Thread,
        Mode::Process(StartMethod::Fork),
        Mode::Process(StartMethod::Spawn),
    ] {
        // A plain list: shared by threads, copied into processes.
        let lock = Lock::new().expect("lock");
        let nums: Plain = Arc::default();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut worker = Worker::new(mode, append_plain, (nums.clone(), lock.clone()));
            worker.start().expect("start");
            seen.push(worker.join().expect("join"));
        }
        let parent = nums.lock().expect("std mutex").clone();
        match mode {
            Mode::Thread => {
                assert_eq!(parent, ALL);
                assert_eq!(seen[2], ALL);
            }
            Mode::Process(_) => {
                assert_eq!(
                    parent,
                    Vec::<i64>::new(),
                    "{mode:?}: the parent's list is untouched"
                );
                for child in &seen {
                    assert_eq!(child, &[0, 1, 2], "{mode:?}: each child had its own copy");
                }
            }
        }
        // A shared list: the same result everywhere.
        let shared = SharedList::<i64>::new().expect("list");
        for _ in 0..3 {
            let mut worker = Worker::new(mode, append_shared, (shared.clone(), lock.clone()));
            worker.start().expect("start");
            worker.join().expect("join");
        }
        assert_eq!(shared.to_vec().expect("read"), ALL, "{mode:?}");
    }
}

fn push_many((list, worker): (SharedList<(u32, u32)>, u32)) {
    for seq in 0..10_000 {
        list.push(&(worker, seq)).expect("push");
    }
}

#[test]
fn four_processes_pushing_ten_thousand_items_each_lose_and_duplicate_nothing() {
    init_spawn("four_processes_pushing_ten_thousand_items_each_lose_and_duplicate_nothing");
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let list = SharedList::<(u32, u32)>::new().expect("list");
        let mut workers: Vec<_> = (0..4)
            .map(|w| Process::new(push_many, (list.clone(), w)).start_method(method))
            .collect();
        for worker in &mut workers {
            worker.start().expect("start");
        }
        for worker in &mut workers {
            worker.join().expect("join");
        }
        let items = list.to_vec().expect("read");
        assert_eq!(items.len(), 40_000, "{method:?}");
        for worker in 0..4 {
            let mine: Vec<u32> = items
                .iter()
                .filter(|(w, _)| *w == worker)
                .map(|(_, seq)| *seq)
                .collect();
            assert_eq!(
                mine,
                (0..10_000).collect::<Vec<_>>(),
                "{method:?}: worker {worker}'s items, each once, in its order"
            );
        }
        assert!(inspect::verify(list.segment()).is_consistent());
    }
}

fn hold_lock_forever((lock, holding): (Lock, Event)) {
    let _held = lock.lock().expect("lock");
    holding.set();
    loop {
        std::thread::park();
    }
}

#[test]
fn a_lock_whose_holder_is_killed_reports_the_death_and_then_works() {
    watchdog();
    let lock = Lock::new().expect("lock");
    let holding = Event::new().expect("event");
    let mut holder = Process::new(hold_lock_forever, (lock.clone(), holding.clone()));
    holder.start().expect("start");
    holding.wait();
    let pid = holder.pid().expect("started");
    assert_eq!(lock.owner(), Some(pid));
    assert!(matches!(lock.try_lock(), Err(LockError::WouldBlock { .. })));
    holder.kill().expect("SIGKILL");
    assert!(matches!(
        holder.join(),
        Err(JoinError::Killed { signal: 9, .. })
    ));
    let Err(LockError::OwnerDied(guard)) = lock.lock() else {
        panic!("the holder's death was not reported");
    };
    assert_eq!(guard.previous_owner_died(), Some(pid));
    guard.mark_consistent().expect("mark consistent");
    drop(guard);
    assert!(lock.lock().is_ok());
    assert!(lock.try_lock().is_ok());
    assert_eq!(lock.owner_deaths(), 1);
}

#[test]
fn a_lock_recovered_without_mark_consistent_becomes_unrecoverable() {
    watchdog();
    let lock = Lock::new().expect("lock");
    let holding = Event::new().expect("event");
    let mut holder = Process::new(hold_lock_forever, (lock.clone(), holding.clone()));
    holder.start().expect("start");
    holding.wait();
    holder.kill().expect("SIGKILL");
    let _ = holder.join();
    let Err(LockError::OwnerDied(guard)) = lock.lock() else {
        panic!("the holder's death was not reported");
    };
    drop(guard);
    assert!(matches!(lock.lock(), Err(LockError::Unrecoverable { .. })));
    assert!(matches!(
        lock.try_lock(),
        Err(LockError::Unrecoverable { .. })
    ));
}

fn block_on_lock(lock: Lock) -> String {
    match lock.lock() {
        Ok(_) => "clean".to_owned(),
        Err(LockError::OwnerDied(guard)) => {
            guard.mark_consistent().expect("mark consistent");
            "owner died".to_owned()
        }
        Err(err) => format!("{err}"),
    }
}

#[test]
fn a_process_blocked_in_lock_is_woken_when_the_holder_is_killed() {
    watchdog();
    let lock = Lock::new().expect("lock");
    let holding = Event::new().expect("event");
    let mut holder = Process::new(hold_lock_forever, (lock.clone(), holding.clone()));
    holder.start().expect("start");
    holding.wait();
    let mut waiter = Process::new(block_on_lock, lock.clone());
    waiter.start().expect("start");
    // Give the waiter time to block (if it has not, it still gets OwnerDied: the assertion
    // holds either way, only the path differs).
    std::thread::sleep(Duration::from_millis(100));
    holder.kill().expect("SIGKILL");
    let _ = holder.join();
    assert_eq!(waiter.join().expect("join"), "owner died");
    assert!(lock.lock().is_ok());
}

#[test]
fn a_timed_lock_gives_up_on_a_live_holder() {
    watchdog();
    let lock = Lock::new().expect("lock");
    let holding = Event::new().expect("event");
    let mut holder = Process::new(hold_lock_forever, (lock.clone(), holding.clone()));
    holder.start().expect("start");
    holding.wait();
    assert!(matches!(
        lock.try_lock_for(Duration::from_millis(50)),
        Err(LockError::Timeout { .. })
    ));
    holder.kill().expect("SIGKILL");
    let _ = holder.join();
}

fn panic_holding(lock: Lock) {
    let _held = lock.lock().expect("lock");
    panic!("boom while holding the lock");
}

#[test]
fn a_holder_that_panics_poisons_the_lock_for_every_process() {
    watchdog();
    let lock = Lock::new().expect("lock");
    let mut child = Process::new(panic_holding, lock.clone());
    child.start().expect("start");
    let Err(JoinError::Panicked { message, .. }) = child.join() else {
        panic!("the child's panic was not reported");
    };
    assert!(message.contains("boom while holding the lock"), "{message}");
    let Err(LockError::Poisoned(guard)) = lock.lock() else {
        panic!("the lock was not poisoned");
    };
    guard.clear_poison();
    drop(guard);
    assert!(lock.lock().is_ok());
    assert!(matches!(
        lock.lock().map(|g| {
            let again = lock.try_lock();
            drop(g);
            again.is_err()
        }),
        Ok(true)
    ));
}

fn relock(lock: Lock) -> bool {
    let _held = lock.lock().expect("lock");
    matches!(lock.lock(), Err(LockError::WouldDeadlock { .. }))
}

#[test]
fn locking_twice_in_one_thread_is_an_error_not_a_deadlock() {
    watchdog();
    assert!(relock(Lock::new().expect("lock")));
}

#[allow(
    clippy::disallowed_methods,
    reason = "this worker's job is to exit without returning"
)]
fn child_exit(code: i32) {
    std::process::exit(code);
}

fn give_back(x: (u32, String)) -> (String, u32) {
    (x.1, x.0 * 2)
}

#[test]
fn processes_return_values_and_report_exits() {
    init_spawn("processes_return_values_and_report_exits");
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let mut p = Process::new(give_back, (21, "hi".to_owned())).start_method(method);
        p.start().expect("start");
        assert_ne!(p.pid(), Some(std::process::id()));
        assert_eq!(p.join().expect("join"), ("hi".to_owned(), 42));
        assert_eq!(p.exit_code(), Some(0));
        let mut p = Process::new(child_exit, 3).start_method(method);
        p.start().expect("start");
        assert!(
            matches!(p.join(), Err(JoinError::Exited { code: 3, .. })),
            "{method:?}"
        );
    }
}

fn nothing((): ()) {}

#[test]
fn forking_a_process_that_runs_other_threads_warns_once() {
    if std::env::var("MEMSPACE_TUTORIAL_ROLE").is_ok() {
        // Child role: make sure another thread runs, then fork twice.
        let _other = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(5)));
        for _ in 0..2 {
            let mut p = Process::new(nothing, ()).start_method(StartMethod::Fork);
            p.start().expect("start");
            p.join().expect("join");
        }
        return;
    }
    let run = |silence: bool| {
        let mut command = std::process::Command::new(std::env::current_exe().expect("test binary"));
        command
            .args([
                "--exact",
                "forking_a_process_that_runs_other_threads_warns_once",
                "--nocapture",
            ])
            .env("MEMSPACE_TUTORIAL_ROLE", "child");
        if silence {
            command.env("MEMSPACE_FORK_WARNING", "0");
        }
        let output = command.output().expect("run child");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run(false);
    assert_eq!(
        stderr.matches("memspace: warning: process").count(),
        1,
        "expected one warning: {stderr}"
    );
    assert!(stderr.contains("StartMethod::Spawn"), "{stderr}");
    assert!(!run(true).contains("memspace: warning"));
}
