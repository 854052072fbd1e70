//! Crash safety with real SIGKILLs: a storm of random kills against processes appending to one
//! list, and kills at exact points inside an append (failpoints: the test build has the
//! `failpoints` feature, and a process whose environment names a point stops itself there).

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memspace::spawn::Process;
use memspace::sync::Mutex;
use memspace::{Segment, SharedList, inspect};

const ROLE: &str = "MEMSPACE_TORTURE_ROLE";
const LIST: &str = "MEMSPACE_TORTURE_LIST";

fn watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_mins(2));
        eprintln!("watchdog: the test hung");
        std::process::abort();
    });
}

/// A small deterministic generator, so that a failing run can be replayed from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A unique segment name, removed on drop.
struct Name(String);

impl Name {
    fn new(test: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        Name(format!(
            "torture.{}.{test}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.0);
    }
}

type Item = (u32, u64, String);
const WORKERS: u32 = 4;

/// One incarnation of a worker: resumes after the last item of its own that is in the list,
/// then appends forever, recording each acknowledged push in `acked`.
fn push_forever((list, acked, worker, seed): (SharedList<Item>, Mutex<[u64; 8]>, u32, u64)) {
    let mut next = 0;
    let len = list.len();
    for index in (0..len).rev() {
        let (w, seq, _) = list.get(index).expect("read").expect("published");
        if w == worker {
            next = seq + 1;
            break;
        }
    }
    let mut random = XorShift(seed | 1);
    loop {
        let padding = "p".repeat(random.below(3000) as usize);
        list.push(&(worker, next, padding)).expect("push");
        // Acknowledged: from here on the item must survive anything.
        let mut acked = match acked.lock() {
            Ok(guard) => guard,
            Err(memspace::sync::LockError::OwnerDied(guard)) => {
                guard.mark_consistent().expect("consistent");
                guard
            }
            Err(err) => panic!("{err}"),
        };
        acked[worker as usize] = next + 1;
        drop(acked);
        next += 1;
    }
}

#[test]
fn torture_kills_never_lose_or_tear_acknowledged_pushes() {
    watchdog();
    let seed = std::env::var("MEMSPACE_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("seed = {seed} (replay with MEMSPACE_TORTURE_SEED={seed})");
    let mut random = XorShift(seed | 1);
    let list = SharedList::<Item>::new().expect("list");
    let acked = Mutex::new([0u64; 8]).expect("acks");
    let start = |worker: u32, random: &mut XorShift| {
        let mut p = Process::new(
            push_forever,
            (list.clone(), acked.clone(), worker, random.next()),
        );
        p.start().expect("start worker");
        p
    };
    let mut workers: Vec<_> = (0..WORKERS).map(|w| start(w, &mut random)).collect();
    let mut kills = 0;
    while kills < 200 {
        let victim = random.below(u64::from(WORKERS)) as usize;
        std::thread::sleep(Duration::from_micros(random.below(3000)));
        workers[victim].kill().expect("SIGKILL");
        let ended = workers[victim].join();
        assert!(
            matches!(
                ended,
                Err(memspace::spawn::JoinError::Killed { signal: 9, .. })
            ),
            "worker {victim} ended on its own: {ended:?}"
        );
        kills += 1;
        workers[victim] = start(victim as u32, &mut random);
    }
    for worker in &mut workers {
        worker.kill().expect("SIGKILL");
        let _ = worker.join();
    }
    // Every item decodes and passes its checksum; the segment is consistent.
    let items = list.to_vec().expect("every item decodes");
    let report = inspect::verify(list.segment());
    assert!(report.is_consistent(), "seed {seed}: {report:?}");
    let acked = acked_after_recovery(&acked);
    for worker in 0..WORKERS {
        let seqs: Vec<u64> = items
            .iter()
            .filter(|(w, _, _)| *w == worker)
            .map(|(_, seq, _)| *seq)
            .collect();
        // Exactly once and in order: 0, 1, 2, ... with no gap and no repeat.
        assert_eq!(
            seqs,
            (0..seqs.len() as u64).collect::<Vec<_>>(),
            "seed {seed}: worker {worker}"
        );
        assert!(
            acked[worker as usize] <= seqs.len() as u64,
            "seed {seed}: worker {worker} had {} pushes acknowledged but only {} are in the list",
            acked[worker as usize],
            seqs.len()
        );
    }
    eprintln!("{kills} kills, {} items, all consistent", items.len());
    // The lock still works.
    list.push(&(99, 0, String::new()))
        .expect("push after the storm");
    assert_eq!(list.len(), items.len() as u64 + 1);
}

/// The acknowledgement array after its lock's holder was killed: recover and read it.
fn acked_after_recovery(acked: &Mutex<[u64; 8]>) -> [u64; 8] {
    match acked.lock() {
        Ok(guard) => *guard,
        Err(memspace::sync::LockError::OwnerDied(guard)) => {
            guard.mark_consistent().expect("consistent");
            *guard
        }
        Err(err) => panic!("{err}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Kills at exact points of an append

/// In the child role: appends to the list named in the environment until a failpoint stops
/// this process (the parent then kills it).
fn child_role() {
    let name = std::env::var(LIST).expect("list name");
    let list = SharedList::<String>::open(&name).expect("open");
    for i in 0..100_000 {
        list.push(&format!("{i:06}{}", "x".repeat(5000)))
            .expect("push");
    }
    panic!("the failpoint was never reached");
}

fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

fn stop_child_at(test: &str, point: &str, list: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture"])
        .env(ROLE, "child")
        .env(LIST, list)
        .env("MEMSPACE_FAILPOINT", point)
        .spawn()
        .expect("start child");
    let pid = child.id();
    loop {
        match state_of(pid) {
            Some('T') => break,
            Some('Z') | None => {
                let status = child.wait().expect("wait");
                panic!("the child ended ({status}) before reaching {point}");
            }
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    child
}

fn kill_at(test: &str, point: &str, prefill: usize) {
    if std::env::var(ROLE).is_ok() {
        return child_role();
    }
    watchdog();
    let name = Name::new(point);
    let list = SharedList::<String>::create(&name.0).expect("create");
    for i in 0..prefill {
        list.push(&format!("{i:06}")).expect("prefill");
    }
    let before = list.len();
    let size_before = list.segment().size();
    let mut child = stop_child_at(test, point, &name.0);
    let during = list.len();
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let after = list.len();
    assert_eq!(
        during, after,
        "{point}: the list changed after the child stopped"
    );
    let report = inspect::verify(list.segment());
    assert!(report.is_consistent(), "{point}: {report:?}");
    let items = list.to_vec().expect("every item decodes");
    assert_eq!(items.len() as u64, after);
    match point {
        // The child's first push stopped after publishing: its item is there, whole.
        "list.published" => {
            assert_eq!(after, before + 1);
            assert!(items[before as usize].starts_with("000000xxx"));
        }
        // Stopped before publishing: nothing of it is visible.
        "list.written" | "list.block_reserved" => assert_eq!(after, before),
        // Stopped while growing for the push after `after - before` successful ones.
        "grow.allocated" => {
            assert!(after >= before);
            assert!(list.segment().size() >= size_before);
        }
        other => panic!("unknown failpoint {other}"),
    }
    // The next append (which is told the writer died) and another process's appends work.
    list.push(&"after".to_owned()).expect("push after the kill");
    let mut other = Process::new(push_three, name.0.clone());
    other.start().expect("start");
    other.join().expect("join");
    let all = list.to_vec().expect("read");
    assert_eq!(
        &all[..items.len()],
        &items[..],
        "the next writer overwrote published items"
    );
    assert_eq!(&all[all.len() - 4..], ["after", "a", "b", "c"]);
    assert!(inspect::verify(list.segment()).is_consistent());
    assert!(before <= after);
}

fn push_three(name: String) {
    let list = SharedList::<String>::open(&name).expect("open");
    for s in ["a", "b", "c"] {
        list.push(&s.to_owned()).expect("push");
    }
}

#[test]
fn a_kill_after_an_index_block_is_reserved_leaves_nothing_visible() {
    kill_at(
        "a_kill_after_an_index_block_is_reserved_leaves_nothing_visible",
        "list.block_reserved",
        0,
    );
}

#[test]
fn a_kill_after_the_record_is_written_leaves_nothing_visible() {
    kill_at(
        "a_kill_after_the_record_is_written_leaves_nothing_visible",
        "list.written",
        3,
    );
}

#[test]
fn a_kill_after_publishing_keeps_the_item_and_repairs_the_end_of_data() {
    kill_at(
        "a_kill_after_publishing_keeps_the_item_and_repairs_the_end_of_data",
        "list.published",
        3,
    );
}

#[test]
fn a_kill_in_the_middle_of_growth_leaves_a_usable_list() {
    kill_at(
        "a_kill_in_the_middle_of_growth_leaves_a_usable_list",
        "grow.allocated",
        3,
    );
}

fn read_continuously((list, rounds): (SharedList<String>, u32)) -> u64 {
    let mut seen = 0;
    for _ in 0..rounds {
        for item in &list {
            let item = item.expect("a reader never sees a torn item");
            assert!(item.starts_with('v'), "{item}");
            seen += 1;
        }
    }
    seen
}

fn write_forever(list: SharedList<String>) {
    let mut i = 0u64;
    loop {
        list.push(&format!("v{i}{}", "w".repeat((i % 700) as usize)))
            .expect("push");
        i += 1;
    }
}

#[test]
fn readers_never_see_torn_items_while_writers_are_killed() {
    watchdog();
    let list = SharedList::<String>::new().expect("list");
    list.push(&"v-first".to_owned()).expect("push");
    let mut reader = Process::new(read_continuously, (list.clone(), 200));
    reader.start().expect("start reader");
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..50 {
        let mut writer = Process::new(write_forever, list.clone());
        writer.start().expect("start writer");
        std::thread::sleep(Duration::from_micros(random.below(2000)));
        writer.kill().expect("SIGKILL");
        let _ = writer.join();
    }
    let seen = reader.join().expect("the reader saw only whole items");
    assert!(seen >= 200);
    assert!(inspect::verify(list.segment()).is_consistent());
}
