//! `SharedMap`: behaviour on threads and on processes (fork and spawn), keys of many types,
//! growth to 100,000 entries while other processes have the map open, space that follows what
//! the map holds, a model test against `HashMap`, damaged segments, and real SIGKILLs: a child
//! changing the map killed at random moments, and killed at every failpoint of insert, remove,
//! growth, compaction and clear, while readers look keys up without the lock and check that
//! every value they get is one a writer committed.
//!
//! Events are ordered through shared memory (events, counters in segments, `/proc` states of
//! the children), never by sleeping; no test asserts how long anything took.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use memspace::collections::{SharedMap, Value};
use memspace::spawn::{Mode, StartMethod, Worker};
use memspace::sync::{Event, Mutex};
use memspace::{Error, SegmentOptions, inspect};
use memspace_testkit::flags::lock_recovering;
use memspace_testkit::rng::seed_from_env;
use memspace_testkit::{Parent, Removal, Rng, Running, Watchdog, roles};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// The map a child in a role works on.
const MAP: &str = "MEMSPACE_MAP_TEST_MAP";
/// The `Value<u64>` where a child in a role counts the steps it completed.
const DONE: &str = "MEMSPACE_MAP_TEST_DONE";
/// The seed of a child's steps (random kills) or the name of its script (failpoints).
const SCRIPT: &str = "MEMSPACE_MAP_TEST_SCRIPT";

// ---------------------------------------------------------------------------------------------
// Harness

fn assert_consistent(map: &SharedMap<impl Sized, impl Sized>, context: &str) {
    let report = inspect::verify(map.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{context}: {report:#?}");
}

// ---------------------------------------------------------------------------------------------
// Behaviour

#[test]
fn insert_get_replace_remove_and_clear_behave_as_in_a_hash_map() {
    let name = Removal::fresh("basics");
    let map = SharedMap::<String, i32>::create(name.name()).expect("create");
    let key = |k: &str| k.to_owned();
    assert!(map.is_empty().expect("is_empty"));
    assert_eq!(map.get(&key("a")).expect("get"), None);
    assert_eq!(map.insert(&key("a"), &1).expect("insert"), None);
    assert_eq!(map.insert(&key("b"), &2).expect("insert"), None);
    assert_eq!(map.insert(&key("a"), &3).expect("replace"), Some(1));
    assert_eq!(map.len().expect("len"), 2);
    assert_eq!(map.get(&key("a")).expect("get"), Some(3));
    assert!(map.contains_key(&key("b")).expect("contains"));
    assert!(!map.contains_key(&key("c")).expect("contains"));

    let mut entries = map.to_vec().expect("to_vec");
    entries.sort();
    assert_eq!(entries, [(key("a"), 3), (key("b"), 2)]);
    let mut keys = map
        .keys()
        .collect::<memspace::Result<Vec<_>>>()
        .expect("keys");
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    let mut values = map
        .values()
        .collect::<memspace::Result<Vec<_>>>()
        .expect("values");
    values.sort_unstable();
    assert_eq!(values, [2, 3]);
    let mut iter = map.iter();
    assert_eq!(
        iter.size_hint(),
        (0, None),
        "nothing is copied before the first item"
    );
    assert!(iter.next().is_some());
    assert_eq!(iter.size_hint(), (1, Some(1)));
    assert_eq!((&map).into_iter().count(), 2);
    assert_eq!(
        map.to_hash_map().expect("to_hash_map"),
        HashMap::from([(key("a"), 3), (key("b"), 2)])
    );

    assert_eq!(map.remove(&key("a")).expect("remove"), Some(3));
    assert_eq!(map.remove(&key("a")).expect("remove again"), None);
    assert_eq!(map.len().expect("len"), 1);
    assert_eq!(map.get(&key("a")).expect("get"), None);
    assert_consistent(&map, "after removing");

    map.clear().expect("clear");
    assert!(map.is_empty().expect("is_empty"));
    assert_eq!(map.get(&key("b")).expect("get"), None);
    assert_eq!(map.iter().count(), 0);
    assert_eq!(map.insert(&key("b"), &4).expect("insert after clear"), None);
    assert_eq!(map.get(&key("b")).expect("get"), Some(4));
    assert_consistent(&map, "after clearing");
}

#[test]
fn a_handle_travels_as_the_maps_name_and_reattaches() {
    let name = Removal::fresh("serde");
    let map = SharedMap::<u32, u32>::create(name.name()).expect("create");
    map.insert(&1, &10).expect("insert");
    let json = serde_json::to_string(&map).expect("serialize");
    assert_eq!(json, format!("\"{}\"", name.name()));
    let back: SharedMap<u32, u32> = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back.get(&1).expect("get"), Some(10));
    assert_eq!(
        back.segment().expect("in shared memory").inode(),
        map.segment().expect("in shared memory").inode()
    );
    assert!(format!("{map:?}").contains(name.name()));
}

/// Fills keys `(worker, "k0")..` with inserts, replaces and removes; returns how many it left.
fn churn_own_keys((map, worker): (SharedMap<(u32, String), u64>, u32)) -> u64 {
    for i in 0..1500u64 {
        assert_eq!(
            map.insert(&(worker, format!("k{i}")), &i).expect("insert"),
            None
        );
    }
    for i in (1..1500u64).step_by(2) {
        let old = map
            .insert(&(worker, format!("k{i}")), &(i * 10))
            .expect("replace");
        assert_eq!(old, Some(i));
    }
    for i in (0..1500u64).step_by(3) {
        assert!(
            map.remove(&(worker, format!("k{i}")))
                .expect("remove")
                .is_some()
        );
    }
    1000
}

memspace_testkit::per_mode! {
    four_workers_on_threads_and_on_processes_fill_one_map: thread, fork, spawn;
}

fn expected_value(i: u64) -> Option<u64> {
    if i.is_multiple_of(3) {
        None
    } else if i % 2 == 1 {
        Some(i * 10)
    } else {
        Some(i)
    }
}

fn four_workers_on_threads_and_on_processes_fill_one_map(mode: Mode) {
    let _dog = Watchdog::start();
    let map = SharedMap::<(u32, String), u64>::new().expect("map");
    let mut workers: Vec<_> = (0..4)
        .map(|worker| Worker::new(mode, churn_own_keys, (map.clone(), worker)))
        .collect();
    for worker in &mut workers {
        worker.start().expect("start");
    }
    let left: u64 = workers
        .iter_mut()
        .map(|worker| worker.join().expect("join"))
        .sum();
    assert_eq!(map.len().expect("len"), left, "{mode:?}");
    let all = map.to_hash_map().expect("copy");
    assert_eq!(all.len() as u64, left, "{mode:?}");
    for worker in 0..4 {
        for i in 0..1500u64 {
            assert_eq!(
                all.get(&(worker, format!("k{i}"))).copied(),
                expected_value(i),
                "{mode:?}: worker {worker}, key {i}"
            );
        }
    }
    assert_eq!(
        map.get(&(2, "k7".to_owned())).expect("get"),
        Some(70),
        "{mode:?}"
    );
    assert_consistent(&map, &format!("{mode:?}"));
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Shape {
    Circle(u32),
    Square { side: u32 },
    Dot,
}

#[test]
fn keys_of_many_types_find_their_values() {
    let strings = SharedMap::<String, Vec<String>>::new().expect("map");
    strings
        .insert(&"späť".to_owned(), &vec!["a".into(), String::new()])
        .expect("insert");
    strings.insert(&String::new(), &vec![]).expect("insert");
    assert_eq!(
        strings.get(&"späť".to_owned()).expect("get"),
        Some(vec!["a".to_owned(), String::new()])
    );
    assert_eq!(strings.get(&String::new()).expect("get"), Some(vec![]));
    assert_eq!(strings.get(&"spat".to_owned()).expect("get"), None);

    let integers = SharedMap::<i64, Option<f64>>::new().expect("map");
    for key in [i64::MIN, -1, 0, 1, 127, 128, i64::MAX] {
        integers.insert(&key, &Some(0.5)).expect("insert");
    }
    integers.insert(&42, &None).expect("insert");
    assert_eq!(integers.get(&i64::MIN).expect("get"), Some(Some(0.5)));
    assert_eq!(integers.get(&42).expect("get"), Some(None));
    assert_eq!(integers.get(&2).expect("get"), None);
    assert_eq!(integers.len().expect("len"), 8);

    let tuples = SharedMap::<(u8, String, bool), char>::new().expect("map");
    tuples.insert(&(1, "a".into(), true), &'x').expect("insert");
    tuples
        .insert(&(1, "a".into(), false), &'y')
        .expect("insert");
    assert_eq!(tuples.get(&(1, "a".into(), true)).expect("get"), Some('x'));
    assert_eq!(tuples.get(&(1, "a".into(), false)).expect("get"), Some('y'));

    let structs = SharedMap::<Point, Shape>::new().expect("map");
    structs
        .insert(&Point { x: 1, y: -2 }, &Shape::Square { side: 3 })
        .expect("insert");
    structs
        .insert(&Point { x: -2, y: 1 }, &Shape::Dot)
        .expect("insert");
    assert_eq!(
        structs.get(&Point { x: 1, y: -2 }).expect("get"),
        Some(Shape::Square { side: 3 })
    );
    assert_eq!(
        structs.get(&Point { x: -2, y: 1 }).expect("get"),
        Some(Shape::Dot)
    );

    let enums = SharedMap::<Shape, Point>::new().expect("map");
    enums
        .insert(&Shape::Circle(1), &Point { x: 0, y: 0 })
        .expect("insert");
    assert!(enums.contains_key(&Shape::Circle(1)).expect("contains"));
    assert!(!enums.contains_key(&Shape::Circle(2)).expect("contains"));
    assert_consistent(&enums, "enums");
}

#[test]
fn keys_are_equal_when_their_encodings_are() {
    let name = Removal::fresh("encodings");
    let narrow = SharedMap::<u8, String>::create(name.name()).expect("create");
    narrow.insert(&5, &"five".to_owned()).expect("insert");
    // Integers are encoded by value, whatever their width or signedness.
    let wide = SharedMap::<i64, String>::open(name.name()).expect("open");
    assert_eq!(wide.get(&5).expect("get").as_deref(), Some("five"));
    assert_eq!(
        wide.insert(&5, &"cinq".to_owned())
            .expect("replace")
            .as_deref(),
        Some("five")
    );
    assert_eq!(narrow.len().expect("len"), 1);

    // A struct is encoded as a map of its fields, in order: the map with the same fields in
    // the same order is the same key.
    let name = Removal::fresh("structs");
    let points = SharedMap::<Point, u32>::create(name.name()).expect("create");
    points.insert(&Point { x: 1, y: 2 }, &12).expect("insert");
    let maps = SharedMap::<BTreeMap<String, i32>, u32>::open(name.name()).expect("open");
    let same = BTreeMap::from([("x".to_owned(), 1), ("y".to_owned(), 2)]);
    assert_eq!(maps.get(&same).expect("get"), Some(12));
}

#[test]
fn a_value_of_another_type_is_a_decode_error_naming_the_map() {
    let name = Removal::fresh("decode");
    let numbers = SharedMap::<String, u32>::create(name.name()).expect("create");
    numbers.insert(&"n".to_owned(), &7).expect("insert");
    let texts = SharedMap::<String, String>::open(name.name()).expect("open");
    let err = texts
        .get(&"n".to_owned())
        .expect_err("a u32 read as a String");
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains(name.name()), "{err}");
    assert!(texts.iter().next().expect("one entry").is_err());
}

/// Waits until the parent filled the map, then counts the entries it finds.
fn count_filled((map, filled, count): (SharedMap<u64, String>, Event, u64)) -> u64 {
    filled.wait().expect("wait");
    let found = (0..count)
        .filter(|i| map.get(i).expect("get") == Some(format!("v{i}")))
        .count();
    u64::try_from(found).expect("a count")
}

#[test]
fn a_map_grows_to_100_000_entries_while_other_processes_have_it_open() {
    const COUNT: u64 = 100_000;
    let _dog = memspace_testkit::start_test();
    let modes = [
        Mode::Process(StartMethod::Fork),
        Mode::Process(StartMethod::Spawn),
    ];
    let map = SharedMap::<u64, String>::new().expect("map");
    let filled = Event::new().expect("event");
    // The readers map the segment while it is small, and must follow its growth.
    let mut readers: Vec<_> = modes
        .iter()
        .map(|&mode| Worker::new(mode, count_filled, (map.clone(), filled.clone(), COUNT)))
        .collect();
    for reader in &mut readers {
        reader.start().expect("start");
    }
    let size_before = map.segment().expect("in shared memory").size();
    for i in 0..COUNT {
        assert_eq!(map.insert(&i, &format!("v{i}")).expect("insert"), None);
    }
    assert!(
        map.segment().expect("in shared memory").size() > size_before,
        "the segment grew"
    );
    filled.set().expect("set");
    for reader in &mut readers {
        assert_eq!(reader.join().expect("join"), COUNT);
    }
    assert_eq!(map.len().expect("len"), COUNT);
    assert_eq!(
        map.get(&(COUNT - 1)).expect("get"),
        Some(format!("v{}", COUNT - 1))
    );
    assert_eq!(map.get(&COUNT).expect("get"), None);
    assert_consistent(&map, "after 100,000 inserts");
}

/// Keys that the writer of [`readers_never_miss_a_key_a_writer_keeps_while_it_compacts`]
/// replaces again and again, but never removes.
const KEPT_KEYS: u64 = 64;

/// The value of kept key `key` at `version`: the version first, then padding of a length that
/// varies with both, so that records move about as the map compacts.
fn versioned(key: u64, version: u64) -> String {
    format!(
        "{version}:{}",
        "p".repeat(((key * 7 + version * 13) % 90) as usize)
    )
}

/// The writer of [`readers_never_miss_a_key_a_writer_keeps_while_it_compacts`]: replaces every
/// kept key with each version in turn, inserting and removing other keys meanwhile (which
/// grows the table and leaves tombstones); sets `finished` at the end. Returns how many
/// compactions the map's space went through, as its reused bytes show: none is 0.
fn rewrite_versions((map, finished, versions): (SharedMap<u64, String>, Event, u64)) -> u64 {
    let mut peak = 0;
    let mut compactions = 0;
    for version in 1..=versions {
        for key in 0..KEPT_KEYS {
            map.insert(&key, &versioned(key, version)).expect("replace");
        }
        let other = 1000 + version % 700;
        map.insert(&other, &"o".repeat(20)).expect("insert");
        if version % 3 == 0 {
            map.remove(&(1000 + (version / 3) % 700)).expect("remove");
        }
        let used = map.used_bytes();
        if used < peak {
            compactions += 1;
        }
        peak = used;
    }
    finished.set().expect("set");
    compactions
}

/// Readers without the lock, in two threads, must never find a key missing that every
/// committed state of the map holds, nor go back to an older value of it, while another
/// process (or thread) replaces values (so that the map compacts again and again, rewriting
/// the space old records and tables took), grows its table and removes other keys: a stress
/// of both lookup paths against real rebuilds. That a lookup reads again when the map changed
/// under it is shown step by step by
/// [`a_lookup_stopped_while_the_map_is_rebuilt_under_it_reads_again`], which stops lookups
/// inside a read; here the overlaps are left to chance, and a lookup that kept a stale read
/// is caught only when the timing lands it.
#[test]
fn readers_never_miss_a_key_a_writer_keeps_while_it_compacts() {
    const VERSIONS: u64 = 3000;
    let _dog = memspace_testkit::start_test();
    for mode in [Mode::Thread, Mode::Process(StartMethod::Fork)] {
        let name = Removal::fresh("kept");
        let map = SharedMap::<u64, String>::create(name.name()).expect("create");
        for key in 0..KEPT_KEYS {
            map.insert(&key, &versioned(key, 0)).expect("insert");
        }
        let finished = Event::new().expect("event");
        let mut writer = Worker::new(
            mode,
            rewrite_versions,
            (map.clone(), finished.clone(), VERSIONS),
        );
        writer.start().expect("start");
        let read_until_finished = || {
            let mut seen = [0u64; KEPT_KEYS as usize];
            let mut lookups = 0u64;
            while !finished.is_set().expect("is_set") {
                for key in 0..KEPT_KEYS {
                    let value = map
                        .get(&key)
                        .expect("get")
                        .unwrap_or_else(|| panic!("{mode:?}: kept key {key} was missing"));
                    let version: u64 = value
                        .split_once(':')
                        .and_then(|(version, _)| version.parse().ok())
                        .unwrap_or_else(|| panic!("{mode:?}: key {key} holds {value:?}"));
                    assert_eq!(value, versioned(key, version), "{mode:?}: key {key}");
                    assert!(
                        version >= seen[key as usize],
                        "{mode:?}: key {key} went back from version {} to {version}",
                        seen[key as usize]
                    );
                    seen[key as usize] = version;
                    lookups += 1;
                }
            }
            lookups
        };
        let lookups: u64 = std::thread::scope(|scope| {
            let other = scope.spawn(read_until_finished);
            read_until_finished() + other.join().expect("the other reader")
        });
        // Counts the times the map's used bytes went down from one version to the next.
        let compactions = writer.join().expect("join");
        assert!(compactions > 10, "{mode:?}: only {compactions} compactions");
        for key in 0..KEPT_KEYS {
            assert_eq!(
                map.get(&key).expect("get"),
                Some(versioned(key, VERSIONS)),
                "{mode:?}"
            );
        }
        eprintln!("{mode:?}: {lookups} lookups through {compactions} compactions");
        assert_consistent(&map, &format!("{mode:?}"));
    }
}

/// The key a looker of [`a_lookup_stopped_while_the_map_is_rebuilt_under_it_reads_again`]
/// looks up.
const KEY: &str = "MEMSPACE_MAP_TEST_KEY";

/// The value of `key` in [`a_lookup_stopped_while_the_map_is_rebuilt_under_it_reads_again`].
fn looked_up(key: u64) -> String {
    format!("value of {key}")
}

/// Lookers stop inside a lookup without the lock, having read where the map's table is and
/// nothing of it yet (failpoint `map.read_table`), one looker per key. Meanwhile the map grows
/// to larger tables and compacts twice, the second copy going to the start of the data area:
/// the table each looker found is gone, and its bytes hold the start of another, larger table.
/// A looker that probed those bytes as the table it found would miss its key (which holds its
/// value throughout) wherever the larger table puts it past them; each must see that the map
/// changed under it, read again, and find its value.
#[test]
fn a_lookup_stopped_while_the_map_is_rebuilt_under_it_reads_again() {
    const KEYS: u64 = 12;
    if roles::role().as_deref() == Some("looker") {
        let map = SharedMap::<u64, String>::open(&std::env::var(MAP).expect("map name"))
            .expect("open the map");
        let key: u64 = std::env::var(KEY).expect("key").parse().expect("a key");
        let found = map.get(&key).expect("get");
        assert_eq!(found, Some(looked_up(key)), "key {key}");
        return;
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("rebuilt");
    let map = SharedMap::<u64, String>::create(name.name()).expect("create");
    for key in 0..KEYS {
        map.insert(&key, &looked_up(key)).expect("insert");
    }
    let mut lookers: Vec<_> = (0..KEYS)
        .map(|key| {
            let mut looker = roles::child_in_role(
                "looker",
                &[
                    (MAP, name.name()),
                    (KEY, &key.to_string()),
                    ("MEMSPACE_FAILPOINT", "map.read_table"),
                ],
            );
            looker.wait_until_stopped("map.read_table");
            looker
        })
        .collect();
    // More keys (the table grows twice), then one key's value replaced by large ones until the
    // garbage is worth a compaction.
    for key in KEYS..2 * KEYS {
        map.insert(&key, &looked_up(key)).expect("insert");
    }
    for round in 0..20 {
        map.insert(&1000, &"x".repeat(2000 + round))
            .expect("replace");
    }
    // 20 values of 2 KB: 40 KB of garbage, unless the map compacted.
    assert!(
        map.used_bytes() < 30_000,
        "the map did not compact: {} bytes used",
        map.used_bytes()
    );
    for looker in &lookers {
        looker.resume();
    }
    for (key, looker) in lookers.iter_mut().enumerate() {
        let status = looker.wait();
        assert!(status.success(), "the looker of key {key} failed: {status}");
    }
    assert_consistent(&map, "after the lookups");
}

#[test]
fn replacing_and_removing_entries_reuses_space_instead_of_growing() {
    let map = SharedMap::<u32, String>::new().expect("map");
    let initial_size = map.segment().expect("in shared memory").size();
    let value = |round: u32| format!("{round:>1000}");
    // 20,000 values of 1 KB under 10 keys: 20 MB of replaced entries without compaction, and
    // about 10 KB of live entries. A compaction runs once the garbage reaches 16 KiB, and the
    // copy it makes past the end of data fits in the first 64 KiB.
    for round in 0..20_000u32 {
        map.insert(&(round % 10), &value(round)).expect("replace");
    }
    assert_eq!(map.len().expect("len"), 10);
    for key in 0..10u32 {
        assert_eq!(map.get(&key).expect("get"), Some(value(19_990 + key)));
    }
    assert!(
        map.used_bytes() < 48 << 10,
        "{} bytes used for 10 KB of entries",
        map.used_bytes()
    );
    assert_eq!(
        map.segment().expect("in shared memory").size(),
        initial_size,
        "the segment never grew"
    );
    assert_consistent(&map, "after replacing");

    for key in 0..2000u32 {
        map.insert(&key, &"r".repeat(200)).expect("insert");
    }
    let full = map.used_bytes();
    for key in 0..2000u32 {
        assert!(map.remove(&key).expect("remove").is_some());
    }
    assert!(map.is_empty().expect("is_empty"));
    assert!(
        map.used_bytes() < full / 2,
        "removing every entry left {} of {full} bytes in use",
        map.used_bytes()
    );
    assert_consistent(&map, "after removing");
    map.clear().expect("clear");
    assert_eq!(
        map.used_bytes(),
        8192 + 16 * 16,
        "an empty table at the start of the data area"
    );
}

#[test]
fn a_full_map_refuses_an_insert_unchanged_and_can_still_be_cleared() {
    let name = Removal::fresh("full");
    let options = SegmentOptions::new()
        .initial_size(64 << 10)
        .max_size(64 << 10);
    let map = SharedMap::<u32, String>::create_with(name.name(), &options).expect("create");
    let mut inserted = 0;
    let err = loop {
        match map.insert(&inserted, &"x".repeat(100)) {
            Ok(None) => inserted += 1,
            Ok(Some(_)) => panic!("key {inserted} was there already"),
            Err(err) => break err,
        }
    };
    assert!(matches!(err, Error::Full { .. }), "{err:?}");
    assert!(err.to_string().contains(name.name()), "{err}");
    assert!(inserted > 100, "only {inserted} entries fit in 64 KiB");
    assert_eq!(
        map.len().expect("len"),
        u64::from(inserted),
        "the refused insert changed nothing"
    );
    assert_eq!(map.get(&inserted).expect("get"), None);
    assert_consistent(&map, "full");
    map.clear().expect("clear a full map");
    assert!(map.is_empty().expect("is_empty"));
    for key in 0..inserted {
        map.insert(&key, &"y".repeat(100))
            .expect("insert after clear");
    }
    assert_consistent(&map, "refilled");
}

// ---------------------------------------------------------------------------------------------
// A model test against `HashMap`, through two handles (two mappings of the segment)

#[derive(Debug, Clone)]
enum Op {
    Insert(u16, Vec<u8>),
    InsertIfAbsent(u16, Vec<u8>),
    Remove(u16),
    Get(u16),
    ContainsKey(u16),
    Len,
    Iter,
    Clear,
}

fn op() -> impl Strategy<Value = (bool, Op)> {
    let key = 0..200u16;
    let op = prop_oneof![
        8 => (key.clone(), proptest::collection::vec(any::<u8>(), 0..700))
            .prop_map(|(k, v)| Op::Insert(k, v)),
        3 => (key.clone(), proptest::collection::vec(any::<u8>(), 0..700))
            .prop_map(|(k, v)| Op::InsertIfAbsent(k, v)),
        4 => key.clone().prop_map(Op::Remove),
        3 => key.clone().prop_map(Op::Get),
        1 => key.prop_map(Op::ContainsKey),
        1 => Just(Op::Len),
        1 => Just(Op::Iter),
        1 => Just(Op::Clear),
    ];
    (any::<bool>(), op)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_shared_map_behaves_like_a_hash_map(ops in proptest::collection::vec(op(), 1..400)) {
        let name = Removal::fresh("model");
        let first = SharedMap::<u16, Vec<u8>>::create(name.name()).expect("create");
        let second = SharedMap::<u16, Vec<u8>>::open(name.name()).expect("open");
        let mut model = HashMap::new();
        for (use_second, op) in ops {
            let map = if use_second { &second } else { &first };
            match op {
                Op::Insert(k, v) => {
                    prop_assert_eq!(map.insert(&k, &v).expect("insert"), model.insert(k, v));
                }
                Op::InsertIfAbsent(k, v) => {
                    let kept = model.get(&k).cloned();
                    model.entry(k).or_insert_with(|| v.clone());
                    prop_assert_eq!(map.insert_if_absent(&k, &v).expect("insert_if_absent"), kept);
                }
                Op::Remove(k) => prop_assert_eq!(map.remove(&k).expect("remove"), model.remove(&k)),
                Op::Get(k) => prop_assert_eq!(map.get(&k).expect("get"), model.get(&k).cloned()),
                Op::ContainsKey(k) => {
                    prop_assert_eq!(map.contains_key(&k).expect("contains"), model.contains_key(&k));
                }
                Op::Len => prop_assert_eq!(map.len().expect("len"), model.len() as u64),
                Op::Iter => prop_assert_eq!(&map.to_hash_map().expect("copy"), &model),
                Op::Clear => {
                    map.clear().expect("clear");
                    model.clear();
                }
            }
            prop_assert_eq!(map.is_empty().expect("is_empty"), model.is_empty());
        }
        prop_assert_eq!(first.to_hash_map().expect("copy"), model);
        let report = inspect::verify(first.segment().expect("in shared memory"));
        prop_assert!(report.is_consistent(), "{:#?}", report);
        prop_assert!(report.notes.is_empty(), "{:#?}", report);
    }
}

/// A long random churn through two handles over a key range that widens as it goes: the
/// table is outgrown again and again (from 1 024 slots on, by moving the entries over the
/// inserts that follow), so inserts, replaces, removes and lookups meet keys in both tables of
/// a migration. Every answer is `HashMap`'s, and the map checks whole (`inspect::verify`) every
/// 251 steps, in the middle of migrations too.
#[test]
fn a_map_moving_its_entries_to_a_larger_table_behaves_like_a_hash_map() {
    let _dog = Watchdog::start();
    let seed = seed_from_env("MEMSPACE_TEST_SEED");
    let mut rng = Rng::new(seed);
    let name = Removal::fresh("migrating");
    let first = SharedMap::<u32, u64>::create(name.name()).expect("create");
    let second = SharedMap::<u32, u64>::open(name.name()).expect("open");
    let mut model = HashMap::new();
    let mut largest = 0;
    for step in 0..40_000u64 {
        largest = largest.max(model.len());
        let map = if rng.below(2) == 0 { &first } else { &second };
        let key = rng.below((500 + step / 6).min(6000)) as u32;
        let context = || format!("seed {seed}, step {step}, key {key}");
        match rng.below(100) {
            0..=59 => assert_eq!(
                map.insert(&key, &step).expect("insert"),
                model.insert(key, step),
                "{}: insert",
                context()
            ),
            60..=69 => {
                let kept = model.get(&key).copied();
                model.entry(key).or_insert(step);
                assert_eq!(
                    map.insert_if_absent(&key, &step).expect("insert_if_absent"),
                    kept,
                    "{}: insert_if_absent",
                    context()
                );
            }
            70..=84 => assert_eq!(
                map.remove(&key).expect("remove"),
                model.remove(&key),
                "{}: remove",
                context()
            ),
            85..=98 => assert_eq!(
                map.get(&key).expect("get"),
                model.get(&key).copied(),
                "{}: get",
                context()
            ),
            _ if rng.below(400) == 0 => {
                map.clear().expect("clear");
                model.clear();
            }
            _ => assert_eq!(
                map.len().expect("len"),
                model.len() as u64,
                "{}: len",
                context()
            ),
        }
        if step % 251 == 0 {
            let report = inspect::verify(first.segment().expect("in shared memory"));
            assert!(
                report.is_consistent() && report.notes.is_empty(),
                "{}: {report:#?}",
                context()
            );
        }
    }
    assert_eq!(second.to_hash_map().expect("copy"), model, "seed {seed}");
    assert!(largest > 3000, "seed {seed}: the map stayed small");
}

// ---------------------------------------------------------------------------------------------
// Damaged segments

const KIND_AREA: u64 = 2304;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random bytes over the map's words, its table and its entries give errors naming the
    /// segment, or wrong answers, never a panic, a crash or a hang.
    #[test]
    fn a_damaged_map_gives_errors_never_a_panic(
        entries in 0..300u32,
        damage in proptest::collection::vec(
            (0..64u64, proptest::collection::vec(any::<u8>(), 1..24)), 1..6),
        into_words in any::<bool>(),
    ) {
        let _dog = Watchdog::start();
        let name = Removal::fresh("damaged");
        let options = SegmentOptions::new().max_size(4 << 20);
        let map = SharedMap::<u32, String>::create_with(name.name(), &options).expect("create");
        for key in 0..entries {
            map.insert(&key, &format!("value {key}")).expect("insert");
        }
        let used = map.used_bytes();
        let file = name.file();
        for (position, bytes) in damage {
            // Either the map's own words, or anywhere in its data.
            let at = if into_words {
                KIND_AREA + position % 72
            } else {
                8192 + (position * 7919) % (used - 8192)
            };
            file.write(at, &bytes);
        }
        let report = inspect::verify(map.segment().expect("in shared memory"));
        prop_assert!(report.problems.len() <= inspect::Report::MAX_PROBLEMS);
        let named = |result: memspace::Result<()>| match result {
            Err(Error::Corrupt { name: damaged, .. }) => assert_eq!(damaged.as_str(), name.name()),
            Ok(()) | Err(Error::Decode { .. } | Error::Full { .. }) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        };
        let _ = map.len();
        let _ = map.is_empty();
        named(map.get(&1).map(drop));
        named(map.contains_key(&entries).map(drop));
        named(map.to_vec().map(drop));
        named(map.iter().take(10).try_for_each(|entry| entry.map(drop)));
        named(map.insert(&1, &"new".to_owned()).map(drop));
        named(map.insert(&(entries + 1), &"new".to_owned()).map(drop));
        named(map.remove(&2).map(drop));
        named(map.clear());
        let _ = inspect::verify(map.segment().expect("in shared memory"));
        let _ = inspect::info(map.segment().expect("in shared memory"));
    }
}

#[test]
fn a_table_word_pointing_outside_the_segment_is_reported_as_damage() {
    let name = Removal::fresh("table-word");
    let map = SharedMap::<u32, u32>::create(name.name()).expect("create");
    map.insert(&1, &1).expect("insert");
    name.file().write_u64(KIND_AREA, u64::MAX - 63 + 10);
    let err = map.get(&1).expect_err("a table outside the segment");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(name.name()), "{err}");
    let report = inspect::verify(map.segment().expect("in shared memory"));
    assert!(!report.is_consistent());
    assert!(report.problems[0].contains("table"), "{report:?}");
}

#[test]
fn record_offsets_at_the_end_of_the_address_space_are_damage_not_a_panic() {
    let name = Removal::fresh("far-offsets");
    let map = SharedMap::<u32, u32>::create(name.name()).expect("create");
    map.insert(&1, &1).expect("insert");
    let file = name.file();
    // Every record word of the first table (16 slots at the start of the data area).
    for slot in 0..16 {
        file.write_u64(8192 + 16 * slot + 8, u64::MAX - 7);
    }
    let err = map.get(&1).expect_err("a record past the segment");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(!inspect::verify(map.segment().expect("in shared memory")).is_consistent());
}

// ---------------------------------------------------------------------------------------------
// Kills: the steps a child takes, and what the map must hold after each

#[derive(Debug, Clone)]
enum Step {
    Insert(u64, String),
    Remove(u64),
    Clear,
}

impl Step {
    fn apply(&self, map: &SharedMap<u64, String>) {
        match self {
            Step::Insert(key, value) => drop(map.insert(key, value).expect("insert")),
            Step::Remove(key) => drop(map.remove(key).expect("remove")),
            Step::Clear => map.clear().expect("clear"),
        }
    }

    fn model(&self, model: &mut HashMap<u64, String>) {
        match self {
            Step::Insert(key, value) => drop(model.insert(*key, value.clone())),
            Step::Remove(key) => drop(model.remove(key)),
            Step::Clear => model.clear(),
        }
    }
}

/// Step `index` of the random churn of seed `seed`: mostly inserts (new keys and replaced
/// ones, values of 0 to 300 bytes), a quarter removes, and a clear now and then. Each step is
/// a function of its index, so a child can start anywhere, and re-doing a step is harmless.
fn random_step(seed: u64, index: u64) -> Step {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let key = rng.below(1500);
    match rng.below(2000) {
        0 => Step::Clear,
        1..=500 => Step::Remove(key),
        _ => Step::Insert(
            key,
            format!("{index}:{}", "x".repeat(rng.below(300) as usize)),
        ),
    }
}

/// The scripts the failpoint tests run, each reaching its failpoints in its own way.
fn script(name: &str) -> Vec<Step> {
    let value = |i: u64, len: usize| format!("{i}:{}", "v".repeat(len));
    let mut steps: Vec<Step> = (0..40)
        .map(|key| Step::Insert(key, value(key, 20)))
        .collect();
    match name {
        // 40 inserts (the table grows at the 12th and the 23rd), a replace, removes.
        "change" => {
            steps.push(Step::Insert(5, value(100, 30)));
            steps.extend((0..20).map(Step::Remove));
        }
        // Replacing one key with 2 KB values until the garbage is worth a compaction.
        "compact" => steps.extend((0..20).map(|i| Step::Insert(30, value(i, 2000)))),
        // The first clear finds the start of the data area free (the first table was
        // outgrown) and puts its empty table there at once; the second, with the map back at
        // the start, goes through a copy past the end of data.
        "clear" => steps.push(Step::Clear),
        // 677 more inserts: the last (the 717th key) outgrows the table of 1 024 slots, and
        // the map moves its entries to a table of 2 048 over the next 16 inserts (64 slots
        // each). Right away a key still in the old table is replaced (moved first) and another
        // removed; 323 inserts then finish the migration.
        "migrate" => {
            steps.extend((40..717).map(|key| Step::Insert(key, value(key, 20))));
            steps.push(Step::Insert(5, value(2000, 30)));
            steps.push(Step::Remove(6));
            steps.extend((717..1040).map(|key| Step::Insert(key, value(key, 20))));
        }
        other => panic!("no script {other}"),
    }
    steps.push(Step::Insert(1000, value(1000, 10)));
    steps.push(Step::Remove(39));
    steps.push(Step::Clear);
    steps.extend((0..30).map(|key| Step::Insert(key, value(key, 50))));
    steps
}

/// The child role: opens the map and the step counter, then takes `steps` from where the
/// counter says, counting each one done.
fn take_steps(steps: impl Fn(u64) -> Option<Step>) {
    let map = SharedMap::<u64, String>::open(&std::env::var(MAP).expect("map name"))
        .expect("open the map");
    let done = Value::<u64>::open(&std::env::var(DONE).expect("counter name")).expect("counter");
    let mut index = done.get().expect("counter");
    while let Some(step) = steps(index) {
        step.apply(&map);
        index += 1;
        done.set(index).expect("count");
    }
}

/// What the map may hold after a kill: the model after the steps counted as done, and, if
/// the step under way may have been committed, after that one too.
fn check_after_kill(
    map: &SharedMap<u64, String>,
    model: &HashMap<u64, String>,
    under_way: Option<&Step>,
    context: &str,
) -> HashMap<u64, String> {
    // Before anyone takes the lock: the committed structure is whole; counts the dead writer
    // left stale are notes, not problems.
    let report = inspect::verify(map.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{context}: {report:#?}");
    // `len` sees the change under way (its maker is dead), takes the lock and recounts.
    let len = map.len().expect("len");
    let found = map.to_hash_map().expect("every entry decodes");
    assert_eq!(len, found.len() as u64, "{context}: len");
    let mut after = model.clone();
    if let Some(step) = under_way {
        step.model(&mut after);
    }
    assert!(
        found == *model || found == after,
        "{context}: the map holds neither the state before the step under way nor after it \
         ({} entries; {} before, {} after)",
        found.len(),
        model.len(),
        after.len()
    );
    // The map still works, and its counts are right again.
    assert_eq!(
        map.insert(&u64::MAX, &"alive".to_owned()).expect("insert"),
        None
    );
    assert_eq!(
        map.remove(&u64::MAX).expect("remove").as_deref(),
        Some("alive")
    );
    let report = inspect::verify(map.segment().expect("in shared memory"));
    assert!(
        report.is_consistent() && report.notes.is_empty(),
        "{context}: after recovery: {report:#?}"
    );
    found
}

#[test]
fn a_child_killed_at_random_moments_never_loses_an_acknowledged_change() {
    if let Ok(seed) = std::env::var(SCRIPT)
        && roles::role().as_deref() == Some("churn")
    {
        let seed = seed.parse().expect("seed");
        return take_steps(|index| Some(random_step(seed, index)));
    }
    let _dog = Watchdog::start();
    let seed = seed_from_env("MEMSPACE_TEST_SEED");
    let (map_name, done_name) = (Removal::fresh("churn"), Removal::fresh("churn-done"));
    let map = SharedMap::<u64, String>::create(map_name.name()).expect("create");
    let done = Value::create(done_name.name(), 0u64).expect("counter");
    let mut rng = Rng::new(seed);
    let mut model = HashMap::new();
    let mut modelled = 0;
    let seed_text = seed.to_string();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| read_committed_values(&map, &done, seed, &stop));
        for kill in 0..100 {
            let target = modelled + rng.below(300);
            let mut child = roles::child_in_role(
                "churn",
                &[
                    (MAP, map_name.name()),
                    (DONE, done_name.name()),
                    (SCRIPT, &seed_text),
                ],
            );
            while done.get().expect("counter") < target {
                assert!(
                    !child.has_ended(),
                    "seed {seed}, kill {kill}: the child ended"
                );
                std::thread::yield_now();
            }
            child.kill();
            let done_now = done.get().expect("counter");
            for index in modelled..done_now {
                random_step(seed, index).model(&mut model);
            }
            modelled = done_now;
            check_after_kill(
                &map,
                &model,
                Some(&random_step(seed, modelled)),
                &format!("seed {seed}, kill {kill} after step {modelled}"),
            );
        }
        stop.store(true, Ordering::Relaxed);
        let reads = reader.join().expect("the reader");
        eprintln!("seed {seed}: {reads} lookups without the lock through 100 kills");
    });
    assert!(
        modelled > 1000,
        "seed {seed}: only {modelled} steps were taken"
    );
    // Kills inside the map's lock are what this test is about: most of the child's time is
    // spent there, so among 100 kills some land there (each does with probability near 1/2).
    let deaths = map.segment().expect("in shared memory").lock_owner_deaths();
    eprintln!("seed {seed}: {deaths} of 100 kills landed inside an operation on the map");
    assert!(
        deaths > 0,
        "seed {seed}: no kill landed inside the map's lock"
    );
}

/// Until `stop`, looks random keys of the churn of `seed` up without the lock while children
/// changing the map are killed: every value found must be whole and the very value some step
/// of the churn inserted under that key, a step already taken or under way (never one of a
/// later step). Returns how many lookups it made.
fn read_committed_values(
    map: &SharedMap<u64, String>,
    done: &Value<u64>,
    seed: u64,
    stop: &AtomicBool,
) -> u64 {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut reads = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = rng.below(1500);
        let found = map.get(&key).unwrap_or_else(|err| {
            panic!("seed {seed}: get({key}) while writers are killed: {err}")
        });
        let taken = done.get().expect("counter");
        if let Some(value) = found {
            let index: u64 = value
                .split_once(':')
                .and_then(|(index, _)| index.parse().ok())
                .unwrap_or_else(|| panic!("seed {seed}: key {key} holds a torn value {value:?}"));
            assert!(
                matches!(random_step(seed, index), Step::Insert(k, ref v) if k == key && *v == value),
                "seed {seed}: key {key} holds {value:?}, which step {index} did not insert"
            );
            // The step that wrote it was taken, or under way, when the value was read.
            assert!(
                index <= taken,
                "seed {seed}: key {key} holds the value of step {index}, but only {taken} steps \
                 were taken"
            );
        }
        reads += 1;
    }
    reads
}

/// A reader process of the failpoint tests: until `stop`, looks every key of `script_name` up
/// without the lock, again and again. Each value found (or its absence) must be that key's in
/// one of the script's states, never in a state earlier than one it already saw. Counts
/// passes in `passes`.
fn script_reader(
    (map, script_name, passes, stop): (SharedMap<u64, String>, String, Mutex<u64>, Event),
) -> u64 {
    let parent = Parent::here();
    let steps = script(&script_name);
    let mut states = vec![HashMap::new()];
    for step in &steps {
        let mut next = states.last().expect("a state").clone();
        step.model(&mut next);
        states.push(next);
    }
    let keys: BTreeSet<u64> = states.iter().flat_map(HashMap::keys).copied().collect();
    let (mut at, mut pass) = (0, 0);
    while !stop.is_set().expect("is_set") {
        for &key in &keys {
            let found = map
                .get(&key)
                .unwrap_or_else(|err| panic!("pass {pass}: get({key}) failed: {err}"));
            at += states[at..]
                .iter()
                .position(|state| state.get(&key) == found.as_ref())
                .unwrap_or_else(|| {
                    panic!(
                        "pass {pass}: key {key} holds {found:?}, which it holds in no state at or \
                         after state {at} of `{script_name}`"
                    )
                });
        }
        pass += 1;
        *lock_recovering(&passes) = pass;
        parent.exit_if_gone();
    }
    pass
}

#[test]
fn lookups_do_not_wait_for_a_process_holding_the_map_lock() {
    if roles::role().as_deref() == Some("lister") {
        let map = SharedMap::<u64, String>::open(&std::env::var(MAP).expect("map name"))
            .expect("open the map");
        drop(map.to_vec().expect("copy the map"));
        panic!("the failpoint was never reached");
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("held");
    let map = SharedMap::<u64, String>::create(name.name()).expect("create");
    for key in 0..100 {
        map.insert(&key, &key.to_string()).expect("insert");
    }
    // The child copies the map under its lock, and stops there holding it.
    let mut lister = roles::child_in_role(
        "lister",
        &[(MAP, name.name()), ("MEMSPACE_FAILPOINT", "map.listed")],
    );
    lister.wait_until_stopped("map.listed");
    let segment = map.segment().expect("in shared memory");
    assert_eq!(segment.lock_owner(), Some(lister.pid()));
    for key in 0..100 {
        assert_eq!(map.get(&key).expect("get"), Some(key.to_string()));
    }
    assert!(!map.contains_key(&100).expect("contains_key"));
    assert_eq!(map.len().expect("len"), 100);
    assert_eq!(
        segment.lock_owner(),
        Some(lister.pid()),
        "the lock changed hands"
    );
    lister.kill();
}

/// Whether a kill at a failpoint leaves the step under way out of the map or in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaves {
    Before,
    After,
}

/// Runs `script` in a child until it stops at `point`, kills it there, checks the map is the
/// map before the step under way (or after it, as `leaves` says), then finishes the script.
fn kill_at(point: &str, script_name: &str, leaves: Leaves) {
    if roles::role().as_deref() == Some("script") {
        let steps = script(&std::env::var(SCRIPT).expect("script name"));
        return take_steps(|index| steps.get(index as usize).cloned());
    }
    let _dog = memspace_testkit::start_test();
    let steps = script(script_name);
    let (map_name, done_name) = (
        Removal::fresh("failpoint"),
        Removal::fresh("failpoint-done"),
    );
    let map = SharedMap::<u64, String>::create(map_name.name()).expect("create");
    let done = Value::create(done_name.name(), 0u64).expect("counter");
    // Two processes look keys up without the lock throughout.
    let passes: Vec<Mutex<u64>> = (0..2)
        .map(|_| Mutex::new(0).expect("a pass counter"))
        .collect();
    let stop_readers = Event::new().expect("create the stop flag");
    let mut readers: Vec<_> = passes
        .iter()
        .map(|passes| {
            Running::spawn(
                script_reader,
                (
                    map.clone(),
                    script_name.to_owned(),
                    passes.clone(),
                    stop_readers.clone(),
                ),
            )
        })
        .collect();
    let mut child = roles::child_in_role(
        "script",
        &[
            (MAP, map_name.name()),
            (DONE, done_name.name()),
            (SCRIPT, script_name),
            ("MEMSPACE_FAILPOINT", point),
        ],
    );
    child.wait_until_stopped(point);
    child.kill();
    // The readers read on past the dead writer (taking the lock to recover from its death if
    // they find its change under way): two more passes each.
    for (reading, passes) in readers.iter_mut().zip(&passes) {
        let pass = *lock_recovering(passes);
        reading.wait_until("it looked every key up twice more", || {
            *lock_recovering(passes) >= pass + 2
        });
    }
    let stopped_in = done.get().expect("counter") as usize;
    let mut model = HashMap::new();
    for step in &steps[..stopped_in] {
        step.model(&mut model);
    }
    let context = format!("killed at {point} in step {stopped_in} of `{script_name}`");
    let found = check_after_kill(&map, &model, Some(&steps[stopped_in]), &context);
    let mut expected = model;
    if leaves == Leaves::After {
        steps[stopped_in].model(&mut expected);
    }
    assert_eq!(found, expected, "{context}: {leaves:?} the step");
    // Finish the script here, re-doing the step under way.
    for step in &steps[stopped_in..] {
        step.apply(&map);
        step.model(&mut expected);
    }
    assert_eq!(
        map.to_hash_map().expect("copy"),
        expected,
        "{context}: at the end"
    );
    stop_readers.set().expect("stop the readers");
    for reading in &mut readers {
        let passes = reading
            .join()
            .unwrap_or_else(|err| panic!("{context}: a reader failed: {err}"));
        assert!(passes > 0, "{context}: a reader made no pass");
    }
    assert_consistent(&map, &format!("{context}, at the end"));
}

macro_rules! kill_tests {
    ($($test:ident: $point:literal in $script:literal leaves $leaves:ident;)*) => {$(
        #[test]
        fn $test() {
            kill_at($point, $script, Leaves::$leaves);
        }
    )*};
}

kill_tests! {
    a_kill_after_writing_an_entry_leaves_it_out: "map.written" in "change" leaves Before;
    a_kill_after_committing_a_new_entry_keeps_it: "map.committed" in "change" leaves After;
    a_kill_after_replacing_a_value_keeps_the_new_one: "map.replaced" in "change" leaves After;
    a_kill_after_removing_an_entry_keeps_it_removed: "map.removed" in "change" leaves After;
    a_kill_before_switching_to_a_larger_table_keeps_the_old_one:
        "map.table_built" in "change" leaves Before;
    a_kill_after_switching_to_a_larger_table_keeps_every_entry:
        "map.table_switched" in "change" leaves Before;
    a_kill_before_switching_to_a_compacted_copy_keeps_the_map:
        "map.copy_built" in "compact" leaves Before;
    a_kill_after_switching_to_a_compacted_copy_keeps_every_entry:
        "map.copy_switched" in "compact" leaves Before;
    a_kill_after_moving_the_copy_to_the_start_keeps_every_entry:
        "map.moved" in "compact" leaves Before;
    a_kill_before_a_clear_commits_keeps_every_entry: "map.copy_built" in "clear" leaves Before;
    a_kill_after_a_clear_commits_leaves_the_map_empty:
        "map.copy_switched" in "clear" leaves After;
    a_kill_after_a_clear_moved_its_table_leaves_the_map_empty:
        "map.moved" in "clear" leaves After;
    a_kill_before_a_migration_switches_tables_keeps_the_old_one:
        "map.migration_named" in "migrate" leaves Before;
    a_kill_after_a_migration_switched_tables_keeps_every_entry:
        "map.migration_begun" in "migrate" leaves Before;
    a_kill_between_placing_an_entry_and_passing_it_over_keeps_it_once:
        "map.entry_placed" in "migrate" leaves Before;
    a_kill_after_moving_an_entry_to_replace_it_keeps_the_old_value:
        "map.entry_moved" in "migrate" leaves Before;
    a_kill_after_removing_an_entry_of_the_old_table_keeps_it_removed:
        "map.removed_from_old" in "migrate" leaves After;
    a_kill_after_a_migration_ends_keeps_every_entry:
        "map.migration_done" in "migrate" leaves Before;
}
