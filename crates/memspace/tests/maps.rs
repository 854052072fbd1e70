//! `SharedMap`: behaviour on threads and processes, a model test against `HashMap`, growth,
//! and SIGKILLs in the middle of inserts.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use memspace::collections::SharedMap;
use memspace::spawn::{Mode, Process, StartMethod, Worker};
use memspace::sync::Mutex;
use memspace::{Segment, inspect};
use proptest::prelude::*;

const MAP: &str = "MEMSPACE_MAPS_NAME";

fn watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_mins(1));
        eprintln!("watchdog: the test hung");
        std::process::abort();
    });
}

fn modes(test: &str) -> [Mode; 3] {
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
    [
        Mode::Thread,
        Mode::Process(StartMethod::Fork),
        Mode::Process(StartMethod::Spawn),
    ]
}

fn insert_range((map, worker): (SharedMap<(u32, String), u64>, u32)) {
    for i in 0..2000u64 {
        map.insert(&(worker, format!("k{i}")), &(i * 10))
            .expect("insert");
    }
    for i in (0..2000u64).step_by(2) {
        assert_eq!(
            map.remove(&(worker, format!("k{i}"))).expect("remove"),
            Some(i * 10)
        );
    }
}

#[test]
fn workers_on_threads_and_processes_fill_one_map() {
    for mode in modes("workers_on_threads_and_processes_fill_one_map") {
        let map = SharedMap::<(u32, String), u64>::new().expect("map");
        let mut workers: Vec<_> = (0..4)
            .map(|w| Worker::new(mode, insert_range, (map.clone(), w)))
            .collect();
        for w in &mut workers {
            w.start().expect("start");
        }
        for w in &mut workers {
            w.join().expect("join");
        }
        assert_eq!(map.len(), 4000, "{mode:?}");
        for worker in 0..4 {
            for i in 0..2000u64 {
                let expected = (i % 2 == 1).then_some(i * 10);
                assert_eq!(map.get(&(worker, format!("k{i}"))).expect("get"), expected);
            }
        }
        assert!(inspect::verify(map.segment()).is_consistent());
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[test]
fn keys_and_values_of_many_types_round_trip() {
    let by_point = SharedMap::<Point, Vec<String>>::new().expect("map");
    by_point
        .insert(&Point { x: 1, y: -2 }, &vec!["a".into(), String::new()])
        .expect("insert");
    assert_eq!(
        by_point.get(&Point { x: 1, y: -2 }).expect("get"),
        Some(vec!["a".to_owned(), String::new()])
    );
    assert_eq!(by_point.get(&Point { x: -2, y: 1 }).expect("get"), None);
    let by_int = SharedMap::<i64, Option<f64>>::new().expect("map");
    by_int.insert(&-1, &Some(0.5)).expect("insert");
    by_int.insert(&i64::MAX, &None).expect("insert");
    assert_eq!(by_int.get(&-1).expect("get"), Some(Some(0.5)));
    assert_eq!(by_int.get(&i64::MAX).expect("get"), Some(None));
    assert!(by_int.contains_key(&i64::MAX).expect("contains"));
    assert_eq!(by_int.to_hash_map().expect("copy").len(), 2);
}

#[test]
fn a_map_grows_to_a_hundred_thousand_entries_and_clear_reclaims_it() {
    let map = SharedMap::<u64, u64>::new().expect("map");
    for i in 0..100_000 {
        map.insert(&i, &(i ^ 0xabc)).expect("insert");
    }
    assert_eq!(map.len(), 100_000);
    for i in (0..100_000).step_by(997) {
        assert_eq!(map.get(&i).expect("get"), Some(i ^ 0xabc));
    }
    assert!(inspect::verify(map.segment()).is_consistent());
    let size = map.segment().size();
    map.clear().expect("clear");
    assert!(map.is_empty());
    for i in 0..100_000 {
        map.insert(&i, &i).expect("insert again");
    }
    assert_eq!(
        map.segment().size(),
        size,
        "after clear, the same entries fit in the same space"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u16),
    Remove(u8),
    Get(u8),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
        3 => any::<u8>().prop_map(Op::Remove),
        3 => any::<u8>().prop_map(Op::Get),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_shared_map_behaves_like_a_hash_map(ops in proptest::collection::vec(op(), 1..400)) {
        let map = SharedMap::<u8, u16>::new().expect("map");
        let mut model = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) => prop_assert_eq!(map.insert(&k, &v).expect("insert"), model.insert(k, v)),
                Op::Remove(k) => prop_assert_eq!(map.remove(&k).expect("remove"), model.remove(&k)),
                Op::Get(k) => prop_assert_eq!(map.get(&k).expect("get"), model.get(&k).copied()),
                Op::Clear => {
                    map.clear().expect("clear");
                    model.clear();
                }
            }
            prop_assert_eq!(map.len(), model.len() as u64);
        }
        prop_assert_eq!(map.to_hash_map().expect("copy"), model);
        prop_assert!(inspect::verify(map.segment()).is_consistent());
    }
}

// ---------------------------------------------------------------------------------------------
// Kills

fn insert_forever((map, acked, worker): (SharedMap<u64, String>, Mutex<[u64; 4]>, u64)) {
    let mut i = {
        let guard = match acked.lock() {
            Ok(g) => g,
            Err(memspace::sync::LockError::OwnerDied(g)) => {
                g.mark_consistent().expect("consistent");
                g
            }
            Err(e) => panic!("{e}"),
        };
        guard[worker as usize]
    };
    loop {
        let key = worker << 32 | i;
        map.insert(&key, &"v".repeat((i % 200) as usize))
            .expect("insert");
        let mut guard = match acked.lock() {
            Ok(g) => g,
            Err(memspace::sync::LockError::OwnerDied(g)) => {
                g.mark_consistent().expect("consistent");
                g
            }
            Err(e) => panic!("{e}"),
        };
        guard[worker as usize] = i + 1;
        drop(guard);
        i += 1;
    }
}

#[test]
fn inserts_killed_at_random_never_lose_acknowledged_entries() {
    watchdog();
    let map = SharedMap::<u64, String>::new().expect("map");
    let acked = Mutex::new([0u64; 4]).expect("acks");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for kill in 0..60 {
        let worker = kill % 2;
        let mut p = Process::new(insert_forever, (map.clone(), acked.clone(), worker));
        p.start().expect("start");
        std::thread::sleep(Duration::from_micros(200 + next(3000)));
        p.kill().expect("SIGKILL");
        let _ = p.join();
    }
    let acked = match acked.lock() {
        Ok(g) => *g,
        Err(memspace::sync::LockError::OwnerDied(g)) => {
            g.mark_consistent().expect("consistent");
            *g
        }
        Err(e) => panic!("{e}"),
    };
    // Recount happens on the next lock; then every acknowledged key is there.
    map.insert(&u64::MAX, &String::new())
        .expect("insert after the kills");
    let report = inspect::verify(map.segment());
    assert!(report.is_consistent(), "{report:?}");
    for worker in 0..2u64 {
        for i in 0..acked[worker as usize] {
            assert_eq!(
                map.get(&(worker << 32 | i)).expect("get"),
                Some("v".repeat((i % 200) as usize)),
                "worker {worker} key {i}"
            );
        }
    }
    let entries = map.to_vec().expect("every entry decodes");
    assert_eq!(entries.len() as u64, map.len());
}

fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

fn kill_at(test: &str, point: &str) {
    if let Ok(name) = std::env::var(MAP) {
        // Child role: insert until the failpoint stops this process.
        let map = SharedMap::<u64, String>::open(&name).expect("open");
        for i in 1000.. {
            map.insert(&i, &"x".repeat(100)).expect("insert");
        }
        return;
    }
    watchdog();
    let name = format!("maps.{}.{point}", std::process::id());
    let map = SharedMap::<u64, String>::create(&name).expect("create");
    for i in 0..5 {
        map.insert(&i, &format!("{i}")).expect("prefill");
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture"])
        .env(MAP, &name)
        .env("MEMSPACE_FAILPOINT", point)
        .spawn()
        .expect("start child");
    while state_of(child.id()) != Some('T') {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the child ended before {point}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // The next operation recounts; the prefill is intact and the map works.
    for i in 0..5 {
        assert_eq!(map.get(&i).expect("get"), Some(format!("{i}")), "{point}");
    }
    map.insert(&99, &"after".to_owned())
        .expect("insert after the kill");
    assert_eq!(map.get(&99).expect("get").as_deref(), Some("after"));
    let entries = map.to_vec().expect("every entry decodes");
    assert_eq!(
        entries.len() as u64,
        map.len(),
        "{point}: the count matches the table"
    );
    let report = inspect::verify(map.segment());
    assert!(report.is_consistent(), "{point}: {report:?}");
    drop(map);
    Segment::remove(&name).expect("remove");
}

#[test]
fn a_kill_after_writing_an_entry_leaves_it_out() {
    kill_at("a_kill_after_writing_an_entry_leaves_it_out", "map.written");
}

#[test]
fn a_kill_after_committing_an_entry_is_recounted() {
    kill_at(
        "a_kill_after_committing_an_entry_is_recounted",
        "map.committed",
    );
}

#[test]
fn a_kill_while_growing_the_table_keeps_the_old_one() {
    kill_at(
        "a_kill_while_growing_the_table_keeps_the_old_one",
        "map.table_built",
    );
}
