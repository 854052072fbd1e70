//! Workers: return values, panics, exits and signals come back to `join` from fork- and
//! spawn-started processes; processes run in pids of their own, threads in this one; `Worker`
//! runs one function in all three modes; misuse is an error.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::collections::BTreeMap;
use std::time::Duration;

use memspace::collections::Value;
use memspace::spawn::{
    ExitStatus, JoinError, Mode, Process, SpawnError, StartMethod, Thread, Worker,
};
use memspace::sync::{Event, Lock};
use memspace_testkit::children::{sigkill, wait_until};
use memspace_testkit::{Parent, Removal, Running, Watchdog, roles};
use serde::{Deserialize, Serialize};

const BOTH: [StartMethod; 2] = [StartMethod::Fork, StartMethod::Spawn];

memspace_testkit::per_mode! {
    processes_return_their_targets_values_to_join: fork, spawn;
    a_panic_in_a_worker_comes_back_as_panicked_with_its_message: thread, fork, spawn;
    a_worker_that_exits_is_reported_with_its_exit_code: fork, spawn;
    a_worker_ended_by_a_signal_is_reported_as_killed: fork, spawn;
    a_join_with_a_timeout_gives_up_while_the_worker_runs_and_a_later_join_succeeds: thread, fork, spawn;
    a_process_that_exited_is_not_running_before_it_is_joined: fork, spawn;
    a_process_killed_by_sigkill_is_not_running_before_it_is_joined: fork, spawn;
    a_result_larger_than_its_file_may_grow_is_reported_cut_short: fork, spawn;
    a_join_does_not_wait_for_a_grandchild_that_holds_the_result_file_open: fork, spawn;
    a_child_killed_while_it_writes_its_result_is_reported_killed: fork, spawn;
    a_child_whose_process_was_dropped_still_writes_its_result_and_ends: fork, spawn;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    pid: u32,
    parent: u32,
    words: Vec<String>,
    lengths: BTreeMap<String, usize>,
    longest: Option<String>,
    ratio: f64,
}

fn twice(x: u64) -> u64 {
    2 * x
}

/// Ends this process's main thread, then, from another thread, spawns a worker (a fresh run
/// of the test binary) and says what it returned. Leaves by itself if the test process is
/// gone.
fn spawn_after_the_main_thread_ends((answer, said): (Value<u64>, Event)) {
    let parent = Parent::here();
    memspace_testkit::threads::go_on_without_the_main_thread(parent, move || {
        let mut worker = Process::new(twice, 21).start_method(StartMethod::Spawn);
        let got = match worker.start() {
            Ok(()) => worker.join().map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        // An error is told as 0, with its message on standard error.
        answer
            .set(got.unwrap_or_else(|err| {
                eprintln!("the worker: {err}");
                0
            }))
            .expect("set");
        said.set().expect("set");
        parent.park_until_killed();
    });
}

/// A process whose main thread ended while its other threads run on (`pthread_exit` in
/// `main`) still spawns: `/proc/self`, whose `exe` is then gone, names the program only in
/// the child that runs it.
#[test]
fn a_process_whose_main_thread_ended_spawns_workers() {
    let _dog = memspace_testkit::start_test();
    let (answer, said) = (
        Value::new(0u64).expect("value"),
        Event::new().expect("event"),
    );
    let _forked = Running::start(
        Process::new(
            spawn_after_the_main_thread_ends,
            (answer.clone(), said.clone()),
        )
        .start_method(StartMethod::Fork),
    );
    assert!(
        said.wait_timeout(Duration::from_secs(30)).expect("wait"),
        "the worker's answer never came"
    );
    assert_eq!(
        answer.get().expect("get"),
        42,
        "the worker failed (its error is above)"
    );
}

/// Computes something from its arguments in the worker, with where it ran.
fn summarise((text, divisor): (String, u32)) -> Summary {
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    Summary {
        pid: std::process::id(),
        parent: std::os::unix::process::parent_id(),
        lengths: words.iter().map(|w| (w.clone(), w.len())).collect(),
        longest: words.iter().max_by_key(|w| w.len()).cloned(),
        ratio: f64::from(u32::try_from(words.len()).expect("few words")) / f64::from(divisor),
        words,
    }
}

/// Returns `len` bytes.
fn big_result(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn processes_return_their_targets_values_to_join(method: StartMethod) {
    let text = "the quick brown fox jumps over the lazy dog".to_owned();
    let mut process = Running::start_by(method, summarise, (text.clone(), 4));
    let pid = process.pid();
    let summary = process.join().expect("join");
    assert_eq!(summary.pid, pid, "{method}: it ran in the child");
    assert_eq!(
        summary.parent,
        std::process::id(),
        "{method}: a child of the test"
    );
    assert_eq!(
        Summary {
            pid: 0,
            parent: 0,
            ..summary
        },
        Summary {
            pid: 0,
            parent: 0,
            ..summarise((text.clone(), 4))
        },
        "{method}"
    );
    assert_eq!(process.process().exit_status(), Some(ExitStatus::Exited(0)));
    assert_eq!(process.process().exit_code(), Some(0));

    let len = 4 << 20;
    let mut big = Running::start_by(method, big_result, len);
    assert!(
        big.join().expect("join") == big_result(len),
        "{method}: 4 MiB came back"
    );
    // Around the size a forked child frames on its stack and `join` reads onto its own (512
    // bytes with the length: 365 to 379 bytes encode to frames of 505 to 520), and a pipe's
    // buffer (64 KiB).
    for len in (365..=379).chain([0, 1, 490, 520, 4096, 65_530, 65_536, 300_000]) {
        let mut result = Running::start_by(method, big_result, len);
        assert!(
            result.join().expect("join") == big_result(len),
            "{method}: {len} bytes came back"
        );
    }
}

/// A result whose encoding fails in the worker.
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unencodable)
    }
}

fn unencodable((): ()) -> Unencodable {
    Unencodable
}

#[test]
fn a_result_that_cannot_be_encoded_comes_back_as_failed_naming_its_type() {
    let _dog = memspace_testkit::start_test();
    for method in BOTH {
        let mut process = Running::start_by(method, unencodable, ());
        match process.join() {
            Err(JoinError::Failed { message, .. }) => assert!(
                message.contains("Unencodable") && message.contains("refuses to be encoded"),
                "{method}: {message}"
            ),
            other => panic!("{method}: expected Failed, got {:?}", other.map(|_| ())),
        }
    }
}

fn panic_with(message: String) -> u32 {
    panic!("worker gave up: {message}");
}

fn a_panic_in_a_worker_comes_back_as_panicked_with_its_message(mode: Mode) {
    let Mode::Process(method) = mode else {
        let mut thread = Thread::new(panic_with, "in a thread".to_owned());
        thread.start().expect("start a thread");
        match thread.join() {
            Err(JoinError::Panicked { worker, message }) => {
                assert_eq!(worker, "thread");
                assert_eq!(message, "worker gave up: in a thread");
            }
            other => panic!("thread: expected Panicked, got {other:?}"),
        }
        return;
    };
    let mut process = Running::start_by(method, panic_with, format!("{method} #7"));
    let pid = process.pid();
    match process.join() {
        Err(err @ JoinError::Panicked { .. }) => {
            let JoinError::Panicked {
                ref worker,
                ref message,
            } = err
            else {
                unreachable!()
            };
            assert_eq!(message, &format!("worker gave up: {method} #7"));
            assert_eq!(worker, &format!("process {pid}"));
            assert!(err.to_string().contains("worker gave up"), "{err}");
        }
        other => panic!("{method}: expected Panicked, got {other:?}"),
    }
    assert_eq!(
        process.process().exit_status(),
        Some(ExitStatus::Exited(101)),
        "{method}: a panicking child exits as Rust's do"
    );
}

#[allow(
    clippy::disallowed_methods,
    reason = "the test is what a user's `std::process::exit` does in a worker"
)]
fn exit_with(code: i32) -> u32 {
    std::process::exit(code)
}

#[allow(unsafe_code, reason = "`_exit` is the exit that runs nothing at all")]
fn underscore_exit_with(code: i32) -> u32 {
    // SAFETY: `_exit` ends the process at once; it has no memory-safety preconditions.
    unsafe { libc::_exit(code) }
}

fn a_worker_that_exits_is_reported_with_its_exit_code(method: StartMethod) {
    for (how, target, code) in [
        ("exit", exit_with as fn(i32) -> u32, 3),
        ("_exit", underscore_exit_with as fn(i32) -> u32, 4),
        ("exit(0)", exit_with as fn(i32) -> u32, 0),
    ] {
        let mut process = Running::start_by(method, target, code);
        let pid = process.pid();
        match process.join() {
            Err(err @ JoinError::Exited { .. }) => {
                let JoinError::Exited {
                    pid: exited,
                    code: reported,
                } = err
                else {
                    unreachable!()
                };
                assert_eq!((exited, reported), (pid, code), "{method} {how}");
                assert!(err.to_string().contains(&code.to_string()), "{err}");
            }
            other => panic!("{method} {how}({code}): expected Exited, got {other:?}"),
        }
        assert_eq!(
            process.process().exit_status(),
            Some(ExitStatus::Exited(code))
        );
        assert_eq!(process.process().exit_code(), Some(code));
    }
}

fn abort_now((): ()) -> u32 {
    std::process::abort()
}

fn sleep_until_killed(parent: u32) -> u32 {
    Parent::from(parent).park_until_killed()
}

fn a_worker_ended_by_a_signal_is_reported_as_killed(method: StartMethod) {
    let mut aborted = Running::start_by(method, abort_now, ());
    let pid = aborted.pid();
    match aborted.join() {
        Err(err @ JoinError::Killed { .. }) => {
            assert!(
                matches!(err, JoinError::Killed { pid: p, signal: 6 } if p == pid),
                "{err:?}"
            );
            assert!(err.to_string().contains("SIGABRT"), "{err}");
        }
        other => panic!("{method}: expected Killed by SIGABRT, got {other:?}"),
    }
    assert_eq!(
        aborted.process().exit_status(),
        Some(ExitStatus::Signaled(6))
    );
    assert_eq!(aborted.process().exit_code(), None);

    let mut killed = Running::start_by(method, sleep_until_killed, std::process::id());
    assert!(killed.process().is_running());
    killed.kill();
    assert!(matches!(
        killed.join(),
        Err(JoinError::Killed { signal: 9, .. })
    ));
    assert!(!killed.process().is_running());
    killed.kill(); // killing a joined worker is a no-op
}

/// Where the worker ran: its pid and its parent's.
fn where_am_i(tag: u32) -> (u32, u32, u32) {
    (tag, std::process::id(), std::os::unix::process::parent_id())
}

#[test]
fn processes_run_in_pids_of_their_own_and_threads_in_the_test_process() {
    let _dog = memspace_testkit::start_test();
    let me = std::process::id();
    let mut pids = Vec::new();
    for method in BOTH {
        let process = Process::new(where_am_i, 1).start_method(method);
        assert_eq!(process.pid(), None, "no pid before start");
        let mut process = Running::start(process);
        let pid = process.pid();
        assert_ne!(pid, me, "{method}");
        assert_eq!(process.join().expect("join"), (1, pid, me), "{method}");
        assert_eq!(
            process.process().pid(),
            Some(pid),
            "the pid stays after join"
        );
        pids.push(pid);
    }
    assert_ne!(pids[0], pids[1]);

    let mut thread = Thread::new(where_am_i, 2);
    assert_eq!(thread.pid(), None, "no pid before start");
    thread.start().expect("start a thread");
    assert_eq!(thread.pid(), Some(me));
    let parent = std::os::unix::process::parent_id();
    assert_eq!(thread.join().expect("join"), (2, me, parent));
}

/// The same work in every mode: append to a shared list under a lock, return a value computed
/// from the arguments and where it ran.
fn shared_work((list, lock, base): (memspace::SharedList<u64>, Lock, u64)) -> (u64, u32) {
    let _held = lock.lock().expect("lock");
    list.push(&base).expect("push");
    (base * 2, std::process::id())
}

#[test]
fn a_worker_runs_the_same_function_as_a_thread_and_as_fork_and_spawn_processes() {
    let _dog = memspace_testkit::start_test();
    let list = memspace::SharedList::<u64>::new().expect("create a list");
    let lock = Lock::new().expect("create a lock");
    let modes = [
        Mode::Thread,
        Mode::Process(StartMethod::Fork),
        Mode::Process(StartMethod::Spawn),
    ];
    for (base, mode) in (10u64..).zip(modes) {
        let mut worker = Worker::new(mode, shared_work, (list.clone(), lock.clone(), base));
        assert_eq!(worker.pid(), None);
        worker.start().expect("start");
        let pid = worker.pid().expect("a started worker has a pid");
        let (doubled, ran_in) = worker.join().expect("join");
        assert_eq!(doubled, base * 2, "{mode:?}");
        assert_eq!(ran_in, pid, "{mode:?}");
        match mode {
            Mode::Thread => assert_eq!(pid, std::process::id()),
            Mode::Process(_) => assert_ne!(pid, std::process::id(), "{mode:?}"),
        }
    }
    assert_eq!(list.to_vec().expect("read"), [10, 11, 12]);
}

fn nothing((): ()) {}

#[test]
fn starting_twice_and_joining_unstarted_workers_are_errors() {
    let _dog = Watchdog::start();
    let mut process = Process::new(nothing, ());
    assert!(matches!(process.join(), Err(JoinError::NotStarted)));
    process.start().expect("start");
    assert!(matches!(process.start(), Err(SpawnError::AlreadyStarted)));
    process.join().expect("join");
    assert!(
        matches!(process.join(), Err(JoinError::NotStarted)),
        "joined already"
    );

    let mut thread = Thread::new(nothing, ());
    assert!(matches!(thread.join(), Err(JoinError::NotStarted)));
    thread.start().expect("start");
    assert!(matches!(thread.start(), Err(SpawnError::AlreadyStarted)));
    thread.join().expect("join");
}

#[test]
fn the_spawn_start_method_without_init_refuses_to_start() {
    // In a fresh process that never called `memspace::init()` or `set_child_args` (a child of
    // this test, so that no other test in the same process can have called them).
    if let Some(role) = roles::role() {
        assert_eq!(role, "no-init");
        let mut process = Process::new(nothing, ()).start_method(StartMethod::Spawn);
        match process.start() {
            Err(err @ SpawnError::NotInitialized) => {
                assert!(err.to_string().contains("memspace::init()"), "{err}");
                println!("no-init: refused");
            }
            other => panic!("expected NotInitialized, got {other:?}"),
        }
        // Fork needs no init.
        let mut forked = Process::new(nothing, ());
        forked.start().expect("fork without init");
        forked.join().expect("join");
        return;
    }
    let _dog = Watchdog::start();
    let output = roles::run_role_to_end("no-init", &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("no-init: refused"),
        "the child failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn print_unfinished_line(text: String) {
    print!("{text}");
}

#[test]
fn a_forked_child_writes_its_unfinished_line_and_not_its_parents_again() {
    // In a child of this test, whose stdout is a pipe the test reads.
    if let Some(role) = roles::role() {
        assert_eq!(role, "print");
        print!("parent,");
        for word in ["first,", "second"] {
            let mut child = Process::new(print_unfinished_line, word.to_owned());
            child.start().expect("start");
            child.join().expect("join");
        }
        println!(",end");
        return;
    }
    let _dog = Watchdog::start();
    let output = roles::run_role_to_end("print", &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("parent,first,second,end\n"),
        "each line once, in order:\n{stdout}"
    );
}

fn use_lock(lock: Lock) -> bool {
    lock.try_lock().is_ok()
}

#[test]
fn a_spawned_child_that_cannot_reattach_its_arguments_reports_failed() {
    let _dog = memspace_testkit::start_test();
    let lock = Lock::new().expect("create a lock");
    // The lock's name is gone: this process keeps using it, a new process cannot open it.
    memspace::Segment::remove(lock.name().as_str()).expect("remove the lock's name");
    let mut child = Running::spawn(use_lock, lock.clone());
    let pid = child.pid();
    match child.join() {
        Err(err @ JoinError::Failed { .. }) => {
            let JoinError::Failed {
                pid: failed,
                ref message,
            } = err
            else {
                unreachable!()
            };
            assert_eq!(failed, pid);
            assert!(
                message.contains(lock.name().as_str()) && message.contains("does not exist"),
                "{message}"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // A forked child needs no name: it inherits the mapping.
    let mut forked = Running::start(Process::new(use_lock, lock.clone()));
    assert!(forked.join().expect("join"));
}

/// Returns `value` once `go` is set.
fn answer_when_told((go, value): (Event, u64)) -> u64 {
    go.wait().expect("wait for the go");
    value
}

fn a_join_with_a_timeout_gives_up_while_the_worker_runs_and_a_later_join_succeeds(mode: Mode) {
    let name = Removal::fresh("join-timeout");
    let go = Event::create(name.name()).expect("create an event");
    let mut worker = Worker::new(mode, answer_when_told, (go.clone(), 42));
    worker.start().expect("start");
    // The worker cannot end before `go` is set: each timed join must give up.
    for timeout in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_millis(30),
    ] {
        assert!(
            matches!(worker.join_timeout(timeout), Ok(None)),
            "{mode:?}: a join of {timeout:?} returned while the worker waits"
        );
        assert!(worker.is_running(), "{mode:?}");
    }
    go.set().expect("set");
    assert_eq!(worker.join().expect("join"), 42, "{mode:?}");
    assert!(!worker.is_running(), "{mode:?}");

    // A timed join returns the result as soon as the worker ends.
    go.clear().expect("clear");
    go.set().expect("set");
    let mut worker = Worker::new(mode, answer_when_told, (go, 7));
    worker.start().expect("start");
    let value = loop {
        if let Some(value) = worker
            .join_timeout(Duration::from_secs(1))
            .expect("join_timeout")
        {
            break value;
        }
    };
    assert_eq!(value, 7, "{mode:?}");
    assert!(
        matches!(
            worker.join_timeout(Duration::ZERO),
            Err(JoinError::NotStarted)
        ),
        "{mode:?}: joined already"
    );
}

fn a_process_that_exited_is_not_running_before_it_is_joined(method: StartMethod) {
    let mut process = Running::start_by(method, big_result, 1 << 10);
    let pid = process.pid();
    // Once it ended it is not running, before any join (it used to count as running until
    // joined); looking does not reap it: it stays a zombie and join still has its result.
    wait_until("the child is seen as not running", || {
        !process.process().is_running()
    });
    assert_eq!(
        memspace_testkit::procfs::process_state(pid),
        Some('Z'),
        "{method}"
    );
    assert!(!process.process().is_running(), "{method}");
    assert_eq!(
        process.join().expect("join"),
        big_result(1 << 10),
        "{method}"
    );
    assert_eq!(process.process().exit_code(), Some(0));
}

fn a_process_killed_by_sigkill_is_not_running_before_it_is_joined(method: StartMethod) {
    let mut process = Running::start_by(method, sleep_until_killed, std::process::id());
    let pid = process.pid();
    assert!(process.process().is_running(), "{method}");
    assert!(matches!(
        process.join_timeout(Duration::from_millis(5)),
        Ok(None)
    ));
    sigkill(pid); // from outside, as `kill -9` would
    wait_until("the killed child is seen as not running", || {
        !process.process().is_running()
    });
    assert_eq!(
        memspace_testkit::procfs::process_state(pid),
        Some('Z'),
        "{method}"
    );
    assert!(
        matches!(
            process.join_timeout(Duration::from_secs(30)),
            Err(JoinError::Killed { signal: 9, .. })
        ),
        "{method}"
    );
}

/// Limits the files this worker writes to `limit` bytes, a write past the limit failing (its
/// signal ignored), then returns `len` bytes: more than its result file may then hold.
#[allow(
    unsafe_code,
    reason = "the limit, the signal's disposition and standard error are set with libc"
)]
fn result_past_a_file_size_limit((limit, len): (u64, usize)) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    // Standard error becomes a file already past the limit, as `2>>log` would make it: the
    // child's message why its result was cut short cannot be written either.
    let log = std::env::temp_dir().join(format!("memspace-full-stderr-{}", std::process::id()));
    std::fs::write(&log, vec![b'.'; 2 * 4096]).expect("write the log");
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open the log");
    std::fs::remove_file(&log).expect("remove the log's name");
    // SAFETY: both descriptors are open; fd 2 is replaced, as a shell's redirection does.
    let set = unsafe { libc::dup2(file.as_raw_fd(), 2) };
    assert_eq!(set, 2, "dup2");
    // SAFETY: `SIG_IGN` installs no handler; the signal then only makes the write fail.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let limit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: `limit` is a valid `rlimit` that lives through the call.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &raw const limit) };
    assert_eq!(set, 0, "setrlimit");
    big_result(len)
}

/// A child whose result file cannot take its whole result (`RLIMIT_FSIZE` here; a memory limit
/// does the same) ends with the protocol's exit code, and `join` says the result was cut short
/// and how much of it arrived: it never decodes a part of it. Its standard error is full too,
/// so its message why fails as well: that ends nothing early (a panic there would unwind a
/// forked child into its parent's frames).
fn a_result_larger_than_its_file_may_grow_is_reported_cut_short(method: StartMethod) {
    let mut process = Running::start_by(method, result_past_a_file_size_limit, (4096, 100_000));
    match process.join() {
        Err(JoinError::Failed { message, .. }) => {
            assert!(
                message.contains("cut short: 4092 of its") && message.contains("exit code 70"),
                "{method}: {message}"
            );
        }
        other => panic!("{method}: expected Failed, got {other:?}"),
    }
    assert_eq!(process.process().exit_code(), Some(70), "{method}");
}

/// Runs until `release` is set, or the test process `test` is gone.
fn linger((release, test): (Event, u32)) {
    while !release
        .wait_timeout(Duration::from_millis(50))
        .expect("wait for the release")
    {
        if memspace_testkit::procfs::has_ended(test) {
            return;
        }
    }
}

/// Starts a grandchild of the test that outlives this worker, and returns its pid. The
/// grandchild inherits this worker's descriptors, its result file among them.
fn leave_a_grandchild((release, test): (Event, u32)) -> u32 {
    let mut grandchild = Process::new(linger, (release, test));
    grandchild.start().expect("start the grandchild");
    grandchild.pid().expect("started")
}

/// The sizes of the result files (memfds) that process `pid` holds open.
fn result_file_sizes(pid: u32) -> Vec<u64> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("list the descriptors");
    fds.filter_map(|fd| {
        let path = fd.ok()?.path();
        let target = std::fs::read_link(&path).ok()?;
        target
            .to_string_lossy()
            .contains("memfd:memspace-result")
            .then(|| std::fs::metadata(&path).map(|file| file.len()).ok())?
    })
    .collect()
}

/// The join waits for the child's end, not for its result file's last holder to close it: a
/// grandchild, which inherited every descriptor of the child, the file among them, does not
/// keep the join waiting while it runs (it runs until the join has returned). The join
/// empties the file it read: the grandchild keeps none of the child's result.
fn a_join_does_not_wait_for_a_grandchild_that_holds_the_result_file_open(method: StartMethod) {
    let name = Removal::fresh("grandchild");
    let release = Event::create(name.name()).expect("create an event");
    let mut child = Running::start_by(
        method,
        leave_a_grandchild,
        (release.clone(), std::process::id()),
    );
    let grandchild = child.join().expect("join");
    assert!(
        !memspace_testkit::procfs::has_ended(grandchild),
        "{method}: the grandchild ended before the join returned, which shows nothing"
    );
    // Its own result file, unwritten while it runs, and the child's, read.
    let sizes = result_file_sizes(grandchild);
    assert!(
        sizes.len() >= 2 && sizes.iter().all(|&size| size == 0),
        "{method}: the grandchild's result files hold {sizes:?} bytes"
    );
    release.set().expect("release the grandchild");
    wait_until("the grandchild ended", || {
        memspace_testkit::procfs::has_ended(grandchild)
    });
}

/// A result of `len` bytes, each `fill`.
fn filled((len, fill): (usize, u8)) -> Vec<u8> {
    vec![fill; len]
}

/// A child `SIGKILL`ed at some moment of its run, while it encodes or writes a result of
/// 32 MiB among them, is reported as killed; `join` never returns a part of its result. Had
/// it finished, the result is whole.
fn a_child_killed_while_it_writes_its_result_is_reported_killed(method: StartMethod) {
    let len = 32 << 20;
    let mut killed = 0;
    for delay_ms in [0, 1, 2, 5, 10, 20, 40, 80] {
        let mut process = Running::start_by(method, filled, (len, 7));
        std::thread::sleep(Duration::from_millis(delay_ms));
        sigkill(process.pid());
        match process.join() {
            Err(JoinError::Killed { signal: 9, .. }) => killed += 1,
            Ok(result) => assert!(
                result.len() == len && result.iter().all(|&b| b == 7),
                "{method}: killed after {delay_ms} ms, it returned {} bytes, not its whole result",
                result.len()
            ),
            other => panic!("{method}: killed after {delay_ms} ms: {other:?}"),
        }
    }
    assert!(killed > 0, "{method}: no child was killed before it ended");
}

/// A `Process` dropped while its child runs leaves the child alone: it writes a result larger
/// than a pipe holds, which nobody reads, and ends.
fn a_child_whose_process_was_dropped_still_writes_its_result_and_ends(method: StartMethod) {
    let mut process = Process::new(filled, (4 << 20, 1)).start_method(method);
    process.start().expect("start");
    let pid = process.pid().expect("started");
    drop(process);
    wait_until("the dropped process's child ended", || {
        memspace_testkit::procfs::has_ended(pid)
    });
    // Reaped here, as nobody else will: the zombie is still this process's child.
    assert!(memspace_testkit::children::reap_zombie(pid), "{method}");
}
