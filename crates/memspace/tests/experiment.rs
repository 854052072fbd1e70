//! The tutorial's experiment: three workers, started and joined one after another, each append
//! 0, 1, 2 to a list under a `Lock`.
//!
//! * On threads a plain list (`Arc<std::sync::Mutex<Vec<i64>>>`) is shared: the parent ends
//!   with `[0, 1, 2, 0, 1, 2, 0, 1, 2]`.
//! * On processes (fork or spawn) the same plain list is *copied* into each child: the parent's
//!   stays `[]`, and each child's own copy ends `[0, 1, 2]` (the child returns it).
//! * With a `SharedList<i64>` processes give the threads' result.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::sync::{Arc, Mutex as StdMutex};

use memspace::spawn::{Mode, StartMethod, Worker};
use memspace::sync::Lock;
use memspace::{SharedList, Thread};
use memspace_testkit::Watchdog;

type Plain = Arc<StdMutex<Vec<i64>>>;

const ALL: [i64; 9] = [0, 1, 2, 0, 1, 2, 0, 1, 2];

/// The tutorial's `func` on a plain list; returns the pid it ran in and what its list holds at
/// the end.
fn append_plain((nums, lock): (Plain, Lock)) -> (u32, Vec<i64>) {
    for i in 0..3 {
        let _held = lock.lock().expect("lock");
        nums.lock().expect("std mutex").push(i);
    }
    let mine = nums.lock().expect("std mutex").clone();
    (std::process::id(), mine)
}

/// The tutorial's `func` on a shared list; returns the pid it ran in and the list as it sees it
/// at the end.
fn append_shared((nums, lock): (SharedList<i64>, Lock)) -> (u32, Vec<i64>) {
    for i in 0..3 {
        let _held = lock.lock().expect("lock");
        nums.push(&i).expect("push");
    }
    (std::process::id(), nums.to_vec().expect("read the list"))
}

/// Runs three workers of `target` in `mode`, each started after the previous one was joined;
/// returns what each returned.
fn three_in_a_row<A>(mode: Mode, target: fn(A) -> (u32, Vec<i64>), args: &A) -> Vec<(u32, Vec<i64>)>
where
    A: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    (0..3)
        .map(|_| {
            let mut worker = Worker::new(mode, target, args.clone());
            worker.start().expect("start a worker");
            let pid = worker.pid().expect("a started worker has a pid");
            let (ran_in, list) = worker.join().expect("join a worker");
            assert_eq!(ran_in, pid, "{mode:?}: the worker ran where pid() says");
            (ran_in, list)
        })
        .collect()
}

/// Asserts that the workers ran in processes other than this one, each in its own.
fn assert_ran_in_three_children(results: &[(u32, Vec<i64>)], mode: Mode) {
    let mut pids: Vec<u32> = results.iter().map(|(pid, _)| *pid).collect();
    assert!(
        pids.iter().all(|&pid| pid != std::process::id()),
        "{mode:?}: a worker ran in the test process itself: {pids:?}"
    );
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "{mode:?}: three processes, three pids");
}

fn processes_append_to_their_own_copy_of_a_plain_list(method: StartMethod) {
    let mode = Mode::Process(method);
    let lock = Lock::new().expect("create a lock");
    let nums: Plain = Arc::default();
    let results = three_in_a_row(mode, append_plain, &(Arc::clone(&nums), lock.clone()));
    assert_ran_in_three_children(&results, mode);
    assert_eq!(
        *nums.lock().expect("std mutex"),
        Vec::<i64>::new(),
        "{method}: the parent's plain list is untouched by its children"
    );
    for (pid, child_list) in &results {
        assert_eq!(
            child_list,
            &[0, 1, 2],
            "{method}: child {pid} appended to a copy of its own, starting empty"
        );
    }
}

fn processes_appending_to_a_shared_list_give_the_threads_result(method: StartMethod) {
    let mode = Mode::Process(method);
    let lock = Lock::new().expect("create a lock");
    let nums = SharedList::<i64>::new().expect("create a list");
    let results = three_in_a_row(mode, append_shared, &(nums.clone(), lock.clone()));
    assert_ran_in_three_children(&results, mode);
    assert_eq!(nums.to_vec().expect("read the list"), ALL, "{method}");
    // Each child saw what the earlier ones appended: one list, not copies.
    let seen: Vec<usize> = results.iter().map(|(_, list)| list.len()).collect();
    assert_eq!(seen, [3, 6, 9], "{method}: what each child saw at its end");
}

#[test]
fn threads_appending_to_a_plain_list_all_append_to_the_parents_list() {
    let _dog = Watchdog::start();
    let lock = Lock::new().expect("create a lock");
    let nums: Plain = Arc::default();
    let results = three_in_a_row(Mode::Thread, append_plain, &(Arc::clone(&nums), lock));
    assert!(
        results.iter().all(|(pid, _)| *pid == std::process::id()),
        "threads run in the test process"
    );
    assert_eq!(*nums.lock().expect("std mutex"), ALL);
    let seen: Vec<&[i64]> = results.iter().map(|(_, list)| list.as_slice()).collect();
    assert_eq!(seen, [&ALL[..3], &ALL[..6], &ALL[..]], "one list, shared");
}

memspace_testkit::per_mode! {
    processes_append_to_their_own_copy_of_a_plain_list: fork, spawn;
}

#[test]
fn threads_appending_to_a_shared_list_give_the_tutorials_result() {
    let _dog = Watchdog::start();
    let lock = Lock::new().expect("create a lock");
    let nums = SharedList::<i64>::new().expect("create a list");
    for _ in 0..3 {
        let mut worker = Thread::new(append_shared, (nums.clone(), lock.clone()));
        worker.start().expect("start a thread");
        worker.join().expect("join a thread");
    }
    assert_eq!(nums.to_vec().expect("read the list"), ALL);
}

memspace_testkit::per_mode! {
    processes_appending_to_a_shared_list_give_the_threads_result: fork, spawn;
}
