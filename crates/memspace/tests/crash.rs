//! Crash safety with real processes and real SIGKILLs: a storm of random kills against
//! processes appending to one list, kills at each failpoint of an append (the test build has
//! the `failpoints` feature: a process whose environment has `MEMSPACE_FAILPOINT=NAME` stops
//! itself there, and the test kills it while it is stopped), readers running through kills,
//! a storm of random kills against processes taking one lock in turn, and the robust lock's
//! behaviour when its holder is killed or panics.
//!
//! Events are ordered with flags in shared memory and `/proc` states, never with sleeps; the
//! random delays of the storm only choose *where* a kill lands.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::time::Duration;

use memspace::spawn::JoinError;
use memspace::sync::{Event, Lock, LockError, Mutex, TryLockError};
use memspace::{SharedList, inspect};

use memspace_testkit::children::was_sigkilled;
use memspace_testkit::flags::lock_recovering;
use memspace_testkit::rng::seed_from_env;
use memspace_testkit::{Parent, Removal, Rng, Running, Watchdog, procfs, roles};

/// How a report of `inspect::verify` reads in an assertion.
fn verified(list: &SharedList<impl Sized>) -> inspect::Report {
    let report = inspect::verify(list.segment().expect("in shared memory"));
    assert!(
        report.is_consistent(),
        "{} is inconsistent: {report:#?}",
        list.name()
    );
    report
}

// =============================================================================================
// 1. The storm: random kills of processes appending to one list

/// `(worker, seq, padding)`.
type Item = (u32, u64, String);

const WORKERS: u32 = 4;
const KILLS: u32 = 200;
const SEED_VARIABLE: &str = "MEMSPACE_TORTURE_SEED";

/// The padding of item `seq` of `worker`: 0 to 2999 bytes (long ones one time in sixteen, so
/// that the list grows during the storm without taking much memory), its length and letter
/// derived from the run's seed, so that the parent can tell a whole item from a torn one.
fn padding(seed: u64, worker: u32, seq: u64) -> String {
    let mut rng =
        Rng::new(seed ^ (u64::from(worker) << 56) ^ seq.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let len = if rng.below(16) == 0 {
        rng.below(3000)
    } else {
        rng.below(100)
    } as usize;
    let letter = char::from(b'a' + (seq % 26) as u8);
    std::iter::repeat_n(letter, len).collect()
}

/// Where an incarnation of `worker` resumes: after the last of its items in the list (pushed
/// by an earlier incarnation, acknowledged or not).
fn resume_point(list: &SharedList<Item>, worker: u32) -> u64 {
    for index in (0..list.len().expect("len")).rev() {
        let (owner, seq, _) = list
            .get(index)
            .expect("a published item decodes")
            .expect("a published item is there");
        if owner == worker {
            return seq + 1;
        }
    }
    0
}

/// The storm's shared control words: `[ACKS + w]` says that worker `w`'s pushes up to that seq
/// (exclusive) returned `Ok`; `[BURSTS + w]` is bumped by the test to ask worker `w` to push
/// flat out for a while (it is about to be killed).
type Control = Mutex<[u64; 8]>;
const ACKS: usize = 0;
const BURSTS: usize = 4;
/// How many pushes a worker makes flat out when asked to, so that the kill that follows lands
/// in the middle of a push. Between bursts a worker paces itself: flat out all the time, the
/// workers of a release build would fill the list with a gigabyte during the storm.
const BURST: u32 = 1000;

/// One incarnation of a storm worker: resumes after its last item in the list, then pushes
/// until killed, acknowledging each push that returned `Ok` in the control words.
fn storm_worker((list, control, worker, seed): (SharedList<Item>, Control, u32, u64)) {
    let parent = Parent::here();
    let w = worker as usize;
    let mut next = resume_point(&list, worker);
    let (acknowledged, mut burst) = {
        let words = lock_recovering(&control);
        (words[ACKS + w], words[BURSTS + w])
    };
    assert!(
        next >= acknowledged,
        "worker {worker}: pushes up to {acknowledged} were acknowledged, but the list holds its \
         items only up to {next}"
    );
    let mut rng = Rng::new(seed ^ next ^ u64::from(worker));
    let mut flat_out = 0;
    loop {
        list.push(&(worker, next, padding(seed, worker, next)))
            .expect("push");
        // Acknowledged: from here on the item must survive anything.
        let asked = {
            let mut words = lock_recovering(&control);
            words[ACKS + w] = next + 1;
            words[BURSTS + w]
        };
        next += 1;
        if asked != burst {
            (burst, flat_out) = (asked, BURST);
        }
        if flat_out > 0 {
            flat_out -= 1;
        } else {
            std::thread::sleep(Duration::from_micros(rng.below(200)));
            parent.exit_if_gone();
        }
    }
}

#[test]
fn random_kills_of_appending_processes_never_lose_tear_or_duplicate_an_acknowledged_push() {
    let _watchdog = memspace_testkit::start_test();
    let seed = seed_from_env(SEED_VARIABLE);
    let mut rng = Rng::new(seed);
    let list = SharedList::<Item>::new().expect("create the list");
    let _list_removal = Removal::of(list.name());
    let control = Control::new([0; 8]).expect("create the control words");
    let start =
        |worker: u32| Running::spawn(storm_worker, (list.clone(), control.clone(), worker, seed));
    let mut workers: Vec<_> = (0..WORKERS).map(start).collect();
    let mut kills = 0;
    while kills < KILLS {
        let victim = rng.below(u64::from(WORKERS)) as usize;
        let acked = {
            let mut words = lock_recovering(&control);
            words[BURSTS + victim] += 1;
            words[ACKS + victim]
        };
        // The victim acknowledged a push after the request: it is in its push loop (not
        // starting up), pushing flat out.
        workers[victim].wait_until("it acknowledged a push", || {
            lock_recovering(&control)[ACKS + victim] > acked
        });
        // 0 to 3 ms, short ones more often (a release build pushes in about a microsecond).
        std::thread::sleep(Duration::from_micros(rng.below(3001) >> rng.below(6)));
        workers[victim].kill_and_reap(&format!("seed {seed}: worker {victim}"));
        kills += 1;
        if kills == KILLS / 2 {
            // Safe while the others keep appending.
            let report = verified(&list);
            eprintln!(
                "{kills} kills: {} items checked, notes {:?}",
                report.items_checked, report.notes
            );
        }
        workers[victim] = start(victim as u32);
    }
    // The last kills, of every worker in the middle of its pushes.
    let acked: Vec<u64> = {
        let mut words = lock_recovering(&control);
        (0..WORKERS as usize)
            .map(|w| {
                words[BURSTS + w] += 1;
                words[ACKS + w]
            })
            .collect()
    };
    for (w, worker) in workers.iter_mut().enumerate() {
        worker.wait_until("it acknowledged a push", || {
            lock_recovering(&control)[ACKS + w] > acked[w]
        });
        worker.kill();
        let _ = worker.join();
    }
    let words = *lock_recovering(&control);
    check_storm_result(&list, &words[ACKS..ACKS + WORKERS as usize], seed);
    assert!(
        list.segment().expect("in shared memory").generation() > 0,
        "the list never grew during the storm"
    );
    // The lock still works (the first locker repairs what the last kills left), and the new
    // item is readable.
    list.push(&(99, 0, "after the storm".to_owned()))
        .expect("push after the storm");
    assert_eq!(
        list.get(list.len().expect("len") - 1)
            .expect("read")
            .expect("there"),
        (99, 0, "after the storm".to_owned())
    );
    verified(&list);
    eprintln!(
        "{} kills, {} items, {} kills while holding the list's lock, {} growths to {} bytes",
        kills + WORKERS,
        list.len().expect("len") - 1,
        list.segment()
            .expect("in shared memory")
            .lock_owner_deaths(),
        list.segment().expect("in shared memory").generation(),
        list.segment().expect("in shared memory").size()
    );
}

/// Every acknowledged push is in the list exactly once, in order, whole.
fn check_storm_result(list: &SharedList<Item>, acked: &[u64], seed: u64) {
    let report = verified(list);
    eprintln!("after the storm: {report:?}");
    let items = list.to_vec().expect("every item decodes");
    let mut next = [0u64; WORKERS as usize];
    for (index, (worker, seq, pad)) in items.iter().enumerate() {
        let w = *worker as usize;
        assert!(
            w < WORKERS as usize,
            "seed {seed}: item {index} names worker {worker}"
        );
        // Each worker's items come exactly once, in order: 0, 1, 2, ... (a push that was not
        // acknowledged may be missing only if no later one of that worker is present).
        assert_eq!(
            *seq, next[w],
            "seed {seed}: item {index} is seq {seq} of worker {worker}, expected {}",
            next[w]
        );
        assert!(
            *pad == padding(seed, *worker, *seq),
            "seed {seed}: item {index} (worker {worker}, seq {seq}) has a torn padding of {} bytes",
            pad.len()
        );
        next[w] += 1;
    }
    for worker in 0..WORKERS as usize {
        assert!(
            acked[worker] <= next[worker],
            "seed {seed}: worker {worker} had pushes up to {} acknowledged, but only {} are in \
             the list",
            acked[worker],
            next[worker]
        );
        eprintln!(
            "worker {worker}: {} items, {} acknowledged",
            next[worker], acked[worker]
        );
    }
}

// =============================================================================================
// 2. Kills at each failpoint of an append

const LIST_VARIABLE: &str = "MEMSPACE_CRASH_LIST";
const INTENT_VARIABLE: &str = "MEMSPACE_CRASH_INTENT";

/// Items of the failpoint tests: `(seq, body)`.
type Entry = (u64, String);

/// The body of item `seq`: 1000 to 2499 bytes, so that pushes grow the segment.
fn body(seq: u64) -> String {
    let letter = char::from(b'A' + (seq % 26) as u8);
    format!(
        "{seq:08}:{}",
        letter.to_string().repeat(1000 + (seq * 37 % 1500) as usize)
    )
}

fn entry(seq: u64) -> Entry {
    (seq, body(seq))
}

/// Child role `writer`: records in the intent mutex which item it is about to push, pushes it,
/// and goes on until a failpoint stops the process (the parent then kills it).
fn failpoint_writer() {
    let list = SharedList::<Entry>::open(&std::env::var(LIST_VARIABLE).expect("list name"))
        .expect("open the list");
    let intent = Mutex::<u64>::open(&std::env::var(INTENT_VARIABLE).expect("intent name"))
        .expect("open the intent");
    let first = list.len().expect("len");
    for seq in first..first + 100_000 {
        *lock_recovering(&intent) = seq;
        list.push(&entry(seq)).expect("push");
    }
    panic!("the failpoint was never reached");
}

/// Child role `appender`: pushes the next three items.
fn appender() {
    let list = SharedList::<Entry>::open(&std::env::var(LIST_VARIABLE).expect("list name"))
        .expect("open the list");
    let first = list.len().expect("len");
    for seq in first..first + 3 {
        list.push(&entry(seq)).expect("push from a second process");
    }
}

/// Child role `opener`: opens the list (stopped at `open.sized` by its parent, which grows the
/// list meanwhile) and reads its length.
fn opener() {
    let list = SharedList::<Entry>::open(&std::env::var(LIST_VARIABLE).expect("list name"))
        .expect("open the list while it grows");
    list.len().expect("len");
}

fn failpoint_roles() -> bool {
    match roles::role().as_deref() {
        Some("writer") => failpoint_writer(),
        Some("appender") => appender(),
        Some("opener") => opener(),
        Some(other) => panic!("unknown role {other}"),
        None => return false,
    }
    true
}

/// Stops a writer at `point` on the push of item `prefill` or later, kills it there, and
/// checks what is left: a consistent list holding exactly the published items, usable by this
/// process and by another.
fn kill_at_failpoint(point: &str, prefill: u64) {
    if failpoint_roles() {
        return;
    }
    let _watchdog = Watchdog::start();
    let list_name = Removal::fresh("failpoint");
    let intent_name = Removal::fresh("intent");
    let list = SharedList::<Entry>::create(list_name.name()).expect("create the list");
    list.extend((0..prefill).map(entry)).expect("prefill");
    let intent = Mutex::create(intent_name.name(), u64::MAX).expect("create the intent");
    let mut writer = roles::child_in_role(
        "writer",
        &[
            (LIST_VARIABLE, list_name.name()),
            (INTENT_VARIABLE, intent_name.name()),
            ("MEMSPACE_FAILPOINT", point),
        ],
    );
    writer.wait_until_stopped(point);
    let in_flight = *lock_recovering(&intent);
    let stopped_len = list.len().expect("len");
    let status = writer.kill();
    assert!(
        was_sigkilled(status),
        "{point}: the writer ended with {status}"
    );
    assert_eq!(
        list.len().expect("len"),
        stopped_len,
        "{point}: the kill changed the list"
    );

    // The push in flight is visible (whole) only if it was stopped after publishing.
    let published = if point == "list.published" {
        in_flight + 1
    } else {
        in_flight
    };
    assert_eq!(
        stopped_len, published,
        "{point}: the writer was pushing item {in_flight}; {stopped_len} items are visible"
    );
    let report = verified(&list);
    eprintln!("{point}: killed while pushing item {in_flight}: {report:?}");
    if point == "grow.allocated" {
        let info = inspect::info(list.segment().expect("in shared memory"));
        assert!(
            info.file_size > info.size,
            "{point}: the file ({} bytes) should have been extended past the published size ({})",
            info.file_size,
            info.size
        );
        // From 8 MiB on, the segment grows ahead of its writers: the growth the writer was
        // killed in was a step ahead, and its push (at most 2.5 KB) fitted what was committed.
        if info.size >= 8 << 20 {
            assert!(
                list.used_bytes() + 4096 <= info.size,
                "{point}: {} bytes used of {} committed: not a step ahead",
                list.used_bytes(),
                info.size
            );
        }
    }
    assert_eq!(
        list.to_vec().expect("every item decodes"),
        (0..published).map(entry).collect::<Vec<_>>(),
        "{point}: the list does not hold exactly the published items"
    );

    // Another process takes the lock first (and repairs the list), then this one.
    let mut second = roles::child_in_role("appender", &[(LIST_VARIABLE, list_name.name())]);
    let status = second.wait();
    assert!(
        status.success(),
        "{point}: the second process failed: {status}"
    );
    let len = list.len().expect("len");
    for seq in len..len + 3 {
        list.push(&entry(seq)).expect("push after the kill");
    }
    assert_eq!(
        list.to_vec().expect("every item decodes"),
        (0..published + 6).map(entry).collect::<Vec<_>>(),
        "{point}: the pushes after the kill are not all there, in order"
    );
    let report = verified(&list);
    assert!(
        report.notes.is_empty(),
        "{point}: notes after the repair: {report:?}"
    );
    assert_eq!(list.segment().expect("in shared memory").lock_owner(), None);
}

#[test]
fn a_writer_killed_after_growing_the_file_but_before_publishing_the_size_leaves_its_push_invisible()
{
    kill_at_failpoint("grow.allocated", 3);
}

#[test]
fn a_writer_killed_in_a_growth_step_ahead_of_its_push_leaves_its_push_invisible() {
    // 6000 items of 1 to 2.5 KB take about 10 MiB: the segment grows ahead of its writers by
    // then, so the writer stops in a step taken before its push needed the space.
    kill_at_failpoint("grow.allocated", 6_000);
}

#[test]
fn a_writer_killed_after_reserving_an_index_block_leaves_its_push_invisible() {
    // Item 512 is the first of the second index block: the writer pushes items 3 to 511, then
    // stops after reserving the block for item 512.
    kill_at_failpoint("list.block_reserved", 3);
}

#[test]
fn a_writer_killed_after_writing_a_record_but_before_publishing_it_leaves_its_push_invisible() {
    kill_at_failpoint("list.written", 3);
}

#[test]
fn a_writer_killed_right_after_publishing_leaves_its_push_visible_and_whole() {
    kill_at_failpoint("list.published", 3);
}

// =============================================================================================
// 3. Reading while writers are killed

/// `(incarnation, seq, body)`.
type Written = (u32, u64, String);

const WRITER_KILLS: u32 = 40;

fn written_body(incarnation: u32, seq: u64) -> String {
    let letter = char::from(b'a' + ((u64::from(incarnation) + seq) % 26) as u8);
    letter
        .to_string()
        .repeat(((u64::from(incarnation) * 131 + seq * 17) % 2000) as usize)
}

/// A writer incarnation: pushes until killed.
fn killed_writer((list, incarnation): (SharedList<Written>, u32)) {
    let parent = Parent::here();
    for seq in 0.. {
        list.push(&(incarnation, seq, written_body(incarnation, seq)))
            .expect("push");
        if seq % 64 == 63 {
            parent.exit_if_gone();
        }
    }
}

/// The reader: reads the whole list again and again (by `get`, and by iterating, in turns)
/// until `stop` is set, checking every item against what its writer wrote and against what the
/// reader saw there before; counts finished passes in `passes`. Returns the items it checked.
fn reader((list, passes, stop): (SharedList<Written>, Mutex<u64>, Event)) -> u64 {
    let parent = Parent::here();
    let mut seen: Vec<(u32, u64)> = Vec::new();
    let mut checked = 0;
    let mut pass = 0u64;
    while !stop.is_set().expect("is_set") {
        let check = |index: u64, item: memspace::Result<Written>| {
            let (incarnation, seq, text) = item
                .unwrap_or_else(|err| panic!("pass {pass}: item {index} could not be read: {err}"));
            assert!(
                text == written_body(incarnation, seq),
                "pass {pass}: item {index} (incarnation {incarnation}, seq {seq}) is torn"
            );
            (incarnation, seq)
        };
        let len = list.len().expect("len");
        let read: Vec<(u32, u64)> = if pass.is_multiple_of(2) {
            (0..len)
                .map(|index| {
                    let item = list
                        .get(index)
                        .transpose()
                        .expect("a published item is there");
                    check(index, item)
                })
                .collect()
        } else {
            // The iterator also reads the items published meanwhile.
            (0..)
                .zip(&list)
                .map(|(index, item)| check(index, item))
                .collect()
        };
        assert!(read.len() as u64 >= len, "pass {pass}: the list shrank");
        for (index, id) in read.iter().enumerate() {
            if let Some(before) = seen.get(index) {
                assert_eq!(
                    before, id,
                    "pass {pass}: item {index} changed after it was published"
                );
            } else {
                // Each incarnation's items come in order, from 0, without gaps.
                let previous = seen.iter().rev().find(|(i, _)| *i == id.0);
                let expected = previous.map_or(0, |(_, seq)| seq + 1);
                assert_eq!(id.1, expected, "pass {pass}: item {index} is out of order");
                seen.push(*id);
            }
        }
        checked += read.len() as u64;
        pass += 1;
        *lock_recovering(&passes) = pass;
        parent.exit_if_gone();
    }
    checked
}

#[test]
fn a_reader_never_sees_an_error_or_a_torn_item_while_writers_are_killed_mid_push() {
    let _watchdog = memspace_testkit::start_test();
    let seed = seed_from_env("MEMSPACE_READER_SEED");
    let mut rng = Rng::new(seed);
    let list = SharedList::<Written>::new().expect("create the list");
    let _list_removal = Removal::of(list.name());
    let passes = Mutex::new(0u64).expect("create the pass counter");
    let stop = Event::new().expect("create the stop flag");
    let mut reading = Running::spawn(reader, (list.clone(), passes.clone(), stop.clone()));
    for incarnation in 0..WRITER_KILLS {
        let before = list.len().expect("len");
        let mut writer = Running::spawn(killed_writer, (list.clone(), incarnation));
        // The writer is in its push loop: an item of its own is published.
        writer.wait_until("it published an item", || list.len().expect("len") > before);
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        writer.kill_and_reap(&format!("seed {seed}: writer {incarnation}"));
        // The reader finishes a whole pass over what the killed writer left.
        let pass = *lock_recovering(&passes);
        reading.wait_until("it read the list once more", || {
            *lock_recovering(&passes) >= pass + 2
        });
    }
    stop.set().expect("set");
    let checked = reading
        .join()
        .unwrap_or_else(|err| panic!("seed {seed}: the reader failed: {err}"));
    verified(&list);
    list.push(&(u32::MAX, 0, String::new()))
        .expect("push after the kills");
    assert_eq!(
        list.to_vec().expect("every item decodes").len() as u64,
        list.len().expect("len")
    );
    eprintln!(
        "{WRITER_KILLS} writers killed; the reader checked {checked} items in {} passes; {} \
         kills landed while holding the list's lock",
        *lock_recovering(&passes),
        list.segment()
            .expect("in shared memory")
            .lock_owner_deaths()
    );
}

/// Appends `count` items of up to 2 KB (the list doubles eight times meanwhile), then returns.
fn append_and_grow((list, count): (SharedList<Written>, u64)) {
    let parent = Parent::here();
    for seq in 0..count {
        list.push(&(0, seq, written_body(0, seq))).expect("push");
        if seq % 64 == 63 {
            parent.exit_if_gone();
        }
    }
}

#[test]
fn inspect_verify_finds_no_damage_while_another_process_appends_and_grows_the_list() {
    // The crash tests run `verify` while workers append; it must not mistake an append or a
    // growth that happens during the check for damage (it once compared the end of data with
    // the size it had read before the segment grew).
    let _watchdog = memspace_testkit::start_test();
    let list = SharedList::<Written>::new().expect("create the list");
    let _list_removal = Removal::of(list.name());
    let mut writer = Running::spawn(append_and_grow, (list.clone(), 16_000));
    writer.wait_until("it appended", || !list.is_empty().expect("is_empty"));
    let mut checks = 0;
    while list.len().expect("len") < 16_000 {
        let report = inspect::verify(list.segment().expect("in shared memory"));
        assert!(
            report.is_consistent(),
            "check {checks}, at {} items and {} bytes: {report:#?}",
            list.len().expect("len"),
            list.segment().expect("in shared memory").size()
        );
        checks += 1;
    }
    writer.join().expect("the writer appended everything");
    eprintln!(
        "{checks} checks while the list grew {} times",
        list.segment().expect("in shared memory").generation()
    );
    let report = verified(&list);
    assert!(report.notes.is_empty(), "{report:?}");
}

// =============================================================================================
// 4. A holder killed while another process waits; a timed wait on a live holder

/// Takes the lock, says so, and holds it until killed.
fn hold_until_killed((lock, holding): (Lock, Event)) {
    let parent = Parent::here();
    let _held = lock.lock().expect("lock");
    holding.set().expect("set");
    parent.park_until_killed();
}

/// Starts a spawned process that takes `lock` and holds it until it is killed; returns once
/// it holds it, with the event it set (keep it until the holder is reaped: the last live user
/// of an anonymous segment removes it, and the holder is killed).
fn start_holder(lock: &Lock) -> (Running<(Lock, Event), ()>, Event) {
    let holding = Event::new().expect("event");
    let mut holder = Running::spawn(hold_until_killed, (lock.clone(), holding.clone()));
    holder.wait_until("it holds the lock", || holding.is_set().expect("is_set"));
    (holder, holding)
}

/// Says which thread is about to block, blocks in `lock()`, and reports how the lock came:
/// the pid the dead holder had, and whether the next acquisition was clean.
fn block_in_lock((lock, tid, blocking): (Lock, Mutex<u32>, Event)) -> (Option<u32>, bool) {
    *lock_recovering(&tid) = procfs::current_tid();
    blocking.set().expect("set");
    let previous = match lock.lock() {
        Err(LockError::OwnerDied(guard)) => {
            let previous = guard.previous_owner_died();
            guard.mark_consistent().expect("mark consistent");
            previous
        }
        Ok(_) => panic!("the blocked locker got the lock without being told its holder died"),
        Err(other) => panic!("the blocked locker got {other:?}"),
    };
    let clean = lock.lock().is_ok();
    (previous, clean)
}

#[test]
fn a_process_blocked_in_lock_is_woken_with_owner_died_when_the_holder_is_killed() {
    let _watchdog = memspace_testkit::start_test();
    let lock = Lock::new().expect("create the lock");
    let _lock_removal = Removal::of(lock.name());
    let blocking = Event::new().expect("event");
    let tid = Mutex::new(0u32).expect("mutex");
    let (mut holder, _holding) = start_holder(&lock);
    let mut blocked = Running::spawn(block_in_lock, (lock.clone(), tid.clone(), blocking.clone()));
    blocked.wait_until("it is about to lock", || blocking.is_set().expect("is_set"));
    // Blocked: its thread sleeps (in the futex wait of `lock()`; nothing else can put it to
    // sleep between setting the flag and locking).
    let (pid, tid) = (blocked.pid(), *lock_recovering(&tid));
    blocked.wait_until("it sleeps in lock()", || {
        procfs::thread_state(pid, tid) == Some('S')
    });
    // A margin, not the ordering (the thread's state is): it stays asleep in the kernel.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(lock.owner().expect("owner"), Some(holder.pid()));
    holder.kill_and_reap("the holder");
    let (previous, clean) = blocked.join().expect("the blocked locker was woken");
    assert_eq!(
        previous,
        Some(holder.pid()),
        "OwnerDied names the killed holder"
    );
    assert!(clean, "after mark_consistent the next lock is clean");
    assert_eq!(lock.owner_deaths(), 1);
    assert!(
        lock.lock().is_ok(),
        "the lock is clean for this process too"
    );
}

#[test]
fn try_lock_for_on_a_lock_held_by_a_live_process_times_out() {
    let _watchdog = memspace_testkit::start_test();
    let lock = Lock::new().expect("create the lock");
    let _lock_removal = Removal::of(lock.name());
    let (mut holder, _holding) = start_holder(&lock);
    match lock.try_lock_for(Duration::from_millis(200)) {
        Err(TryLockError::Timeout { waited, .. }) => assert_eq!(waited, Duration::from_millis(200)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(matches!(
        lock.try_lock(),
        Err(TryLockError::WouldBlock { .. })
    ));
    assert!(
        procfs::process_state(holder.pid()).is_some_and(|state| state != 'Z'),
        "the holder is alive throughout"
    );
    holder.kill();
    let _ = holder.join();
    match lock.try_lock_for(Duration::from_millis(200)) {
        Err(TryLockError::Lock(LockError::OwnerDied(guard))) => {
            guard.mark_consistent().expect("mark consistent");
        }
        other => panic!("expected OwnerDied once the holder is dead, got {other:?}"),
    }
    assert!(lock.try_lock_for(Duration::from_millis(200)).is_ok());
}

// =============================================================================================
// 5. A panic while holding a lock poisons it for every process

fn panic_while_holding(lock: Lock) {
    let _held = lock.lock().expect("lock");
    panic!("deliberate panic while holding the lock");
}

/// How `lock()` goes in another process: `"poisoned"`, `"clean"` or the error.
fn lock_state(lock: Lock) -> String {
    match lock.lock() {
        Ok(_) => "clean".to_owned(),
        Err(LockError::Poisoned(_)) => "poisoned".to_owned(),
        Err(other) => format!("{other:?}"),
    }
}

fn in_another_process(lock: &Lock) -> String {
    let mut child = Running::spawn(lock_state, lock.clone());
    child.join().expect("the child reports the lock's state")
}

#[test]
fn a_panic_while_holding_a_lock_poisons_it_for_every_process_until_cleared() {
    let _watchdog = memspace_testkit::start_test();
    let lock = Lock::new().expect("create the lock");
    let _lock_removal = Removal::of(lock.name());
    let mut panicking = Running::spawn(panic_while_holding, lock.clone());
    match panicking.join() {
        Err(JoinError::Panicked { message, .. }) => {
            assert!(message.contains("deliberate panic"), "{message}");
        }
        other => panic!("expected the child's panic, got {other:?}"),
    }
    assert!(lock.segment().expect("in shared memory").lock_poisoned());
    assert_eq!(in_another_process(&lock), "poisoned");
    match lock.lock() {
        Err(LockError::Poisoned(guard)) => guard.clear_poison(),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    assert!(lock.lock().is_ok(), "cleared for this process");
    assert_eq!(
        in_another_process(&lock),
        "clean",
        "cleared for every process"
    );
    assert_eq!(
        lock.owner_deaths(),
        0,
        "a panic unlocks: nobody died holding it"
    );
}

// =============================================================================================
// 6. A repair that fails leaves the lock recoverable

/// Where, in the segment file's `bytes`, the record of published item `seq` (of the failpoint
/// tests, `seq` < 128) starts: its payload is the `MessagePack` array `[seq, body]` (`0x92`,
/// `seq` as a positive fixint, `0xda` and the body's 16-bit length, then the body), after the
/// record's 8-byte header (payload length, CRC).
fn record_start(bytes: &[u8], seq: u64) -> usize {
    let body = body(seq);
    let found = bytes
        .windows(9)
        .position(|window| window == &body.as_bytes()[..9])
        .expect("the item's body is in the file");
    let at = found - 5 - 8;
    let length = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!(
        (
            bytes[found - 5],
            u64::from(bytes[found - 4]),
            length as usize
        ),
        (0x92, seq, body.len() + 5),
        "item {seq} is not encoded as this test expects"
    );
    at
}

#[test]
fn a_repair_that_fails_after_a_kill_leaves_the_lock_recoverable_for_the_next_writer() {
    if failpoint_roles() {
        return;
    }
    let _watchdog = Watchdog::start();
    let list_name = Removal::fresh("failed-repair");
    let intent_name = Removal::fresh("failed-repair-intent");
    let list = SharedList::<Entry>::create(list_name.name()).expect("create the list");
    list.extend((0..3).map(entry)).expect("prefill");
    let _intent = Mutex::create(intent_name.name(), u64::MAX).expect("create the intent");
    let mut writer = roles::child_in_role(
        "writer",
        &[
            (LIST_VARIABLE, list_name.name()),
            (INTENT_VARIABLE, intent_name.name()),
            ("MEMSPACE_FAILPOINT", "list.written"),
        ],
    );
    writer.wait_until_stopped("list.written");
    let status = writer.kill();
    assert!(was_sigkilled(status), "the writer ended with {status}");

    // Damage the record the repair reads (the last published item's): its length now reaches
    // past the segment.
    let file = list_name.file();
    let bytes = file.bytes();
    let at = record_start(&bytes, 2);
    let length = &bytes[at..at + 4];
    file.write(at as u64, &[0xf0, 0xff, 0xff, 0xff]);

    // Every writer meanwhile is told the list is damaged, and the lock is not bricked: each is
    // told the owner died, and tries the repair again.
    for attempt in 0..2 {
        let err = list
            .push(&entry(3))
            .expect_err("the repair read a damaged record");
        assert!(
            matches!(err, memspace::Error::Corrupt { .. }),
            "attempt {attempt}: {err:?}"
        );
    }
    let mut second = roles::child_in_role("appender", &[(LIST_VARIABLE, list_name.name())]);
    assert!(
        !second.wait().success(),
        "another process pushed onto the damaged list"
    );

    // The damage undone, the next writer repairs the list and pushes.
    file.write(at as u64, length);
    list.push(&entry(3))
        .expect("push once the damage is undone");
    let mut second = roles::child_in_role("appender", &[(LIST_VARIABLE, list_name.name())]);
    let status = second.wait();
    assert!(status.success(), "the second process failed: {status}");
    assert_eq!(
        list.to_vec().expect("every item decodes"),
        (0..7).map(entry).collect::<Vec<_>>(),
        "the pushes after the repair are not all there, in order"
    );
    let report = verified(&list);
    assert!(
        report.notes.is_empty(),
        "notes after the repair: {report:?}"
    );
    assert_eq!(list.segment().expect("in shared memory").lock_owner(), None);
}

/// Takes the lock after its holder was killed, and releases it unrepaired: reports the pid
/// `OwnerDied` named.
fn release_unrepaired(lock: Lock) -> Option<u32> {
    match lock.lock() {
        Err(LockError::OwnerDied(guard)) => {
            let previous = guard.previous_owner_died();
            guard.unlock_unrepaired();
            previous
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
}

#[test]
fn a_lock_released_unrepaired_after_a_kill_tells_the_next_locker_the_owner_died() {
    let _watchdog = memspace_testkit::start_test();
    let lock = Lock::new().expect("create the lock");
    let _lock_removal = Removal::of(lock.name());
    let (mut holder, _holding) = start_holder(&lock);
    let dead = holder.pid();
    holder.kill_and_reap("the holder");

    // Another process's repair fails: it releases the lock unrepaired.
    let mut repairer = Running::spawn(release_unrepaired, lock.clone());
    assert_eq!(repairer.join().expect("the repairer"), Some(dead));
    // The next locker is told the same death, and repairs.
    match lock.lock() {
        Err(LockError::OwnerDied(guard)) => {
            assert_eq!(guard.previous_owner_died(), Some(dead));
            guard.mark_consistent().expect("mark consistent");
        }
        other => panic!("expected OwnerDied again, got {other:?}"),
    }
    assert!(lock.lock().is_ok(), "repaired, the lock is clean");
    assert_eq!(lock.owner_deaths(), 1, "one death, reported twice");
}

#[test]
fn an_open_that_reads_a_header_grown_since_it_sized_the_file_opens_it() {
    if failpoint_roles() {
        return;
    }
    let _watchdog = Watchdog::start();
    let list_name = Removal::fresh("growing");
    let list = SharedList::<Entry>::create(list_name.name()).expect("create the list");
    let mut opener = roles::child_in_role(
        "opener",
        &[
            (LIST_VARIABLE, list_name.name()),
            ("MEMSPACE_FAILPOINT", "open.sized"),
        ],
    );
    // The opener has the file's size and not yet the header: grow the segment under it.
    opener.wait_until_stopped("open.sized");
    let segment = list.segment().expect("in shared memory");
    let size = segment.size();
    let mut seq = 0;
    while segment.size() == size {
        list.push(&entry(seq)).expect("push");
        seq += 1;
    }
    opener.resume();
    let status = opener.wait();
    assert!(
        status.success(),
        "an open that raced a growth failed ({status}) instead of reading the new size"
    );
}

// =============================================================================================
// 7. A storm of random kills against processes taking one lock in turn

/// The words of the lock storm, under its mutex: the locker inside (1-based, 0 for none), the
/// rounds in all, the clean acquisitions that found a locker inside, the repairs after a
/// holder's death, and each locker's rounds.
type LockStormWords = Mutex<[u64; 8]>;
const INSIDE: usize = 0;
const ROUNDS: usize = 1;
const OVERLAPS: usize = 2;
const REPAIRS: usize = 3;
const PER_LOCKER: usize = 4;
const LOCKERS: u32 = 3;
const LOCK_KILLS: u32 = 60;

/// Locks the storm's mutex as every locker does: a clean acquisition must find nobody inside
/// (else it counts an overlap); one that took the lock from a dead holder clears the dead
/// holder's mark and declares the words repaired.
fn lock_storm(storm: &LockStormWords) -> memspace::sync::MutexGuard<'_, [u64; 8]> {
    match storm.lock() {
        Ok(mut words) => {
            if words[INSIDE] != 0 {
                words[OVERLAPS] += 1;
            }
            words
        }
        Err(LockError::OwnerDied(mut words)) => {
            words[INSIDE] = 0;
            words[REPAIRS] += 1;
            words
                .mark_consistent()
                .expect("mark the storm's words consistent");
            words
        }
        Err(other) => panic!("locking the storm's mutex: {other}"),
    }
}

/// A locker of the lock storm: marks itself inside, spins a little, counts its round and
/// leaves, over and over, until killed.
fn storm_locker((storm, locker): (LockStormWords, u32)) {
    let parent = Parent::here();
    let me = u64::from(locker) + 1;
    loop {
        for _ in 0..100 {
            let mut words = lock_storm(&storm);
            words[INSIDE] = me;
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            words[ROUNDS] += 1;
            words[PER_LOCKER + locker as usize] += 1;
            words[INSIDE] = 0;
            drop(words);
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
        parent.exit_if_gone();
    }
}

#[test]
fn random_kills_of_lockers_never_let_two_hold_the_lock_nor_wedge_it() {
    let _watchdog = memspace_testkit::start_test();
    let seed = seed_from_env(SEED_VARIABLE);
    let mut rng = Rng::new(seed);
    let storm = LockStormWords::new([0; 8]).expect("create the storm's mutex");
    let _removal = Removal::of(storm.name());
    let start = |locker: u32| Running::spawn(storm_locker, (storm.clone(), locker));
    let mut lockers: Vec<_> = (0..LOCKERS).map(start).collect();
    for _ in 0..LOCK_KILLS {
        let victim = rng.below(u64::from(LOCKERS)) as usize;
        let before = lock_storm(&storm)[PER_LOCKER + victim];
        // The victim is in its loop (not starting up): a kill lands inside the lock or out.
        lockers[victim].wait_until("it went round", || {
            lock_storm(&storm)[PER_LOCKER + victim] > before
        });
        std::thread::sleep(Duration::from_micros(rng.below(2001) >> rng.below(6)));
        lockers[victim].kill_and_reap(&format!("seed {seed}: locker {victim}"));
        lockers[victim] = start(victim as u32);
    }
    for locker in &mut lockers {
        locker.kill();
        let _ = locker.join();
    }
    let words = *lock_storm(&storm);
    eprintln!(
        "{} rounds, {} kills, {} of them while holding the lock",
        words[ROUNDS],
        LOCK_KILLS + LOCKERS,
        words[REPAIRS]
    );
    assert_eq!(
        words[OVERLAPS], 0,
        "seed {seed}: a clean acquisition found another locker inside"
    );
    assert!(
        words[REPAIRS] > 0,
        "seed {seed}: no kill landed while a locker held the lock"
    );
}
