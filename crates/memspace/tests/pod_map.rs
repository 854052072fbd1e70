//! `SharedPodMap`: a model test against `HashMap` through two handles, keys and values of odd
//! sizes, four processes filling one map while this one reads it without the lock, types and
//! damaged segments refused with errors, and real SIGKILLs at every failpoint of an insert, a
//! replace, a remove and a growth, while two reader processes check that every value they
//! find is whole and one the key held.
//!
//! Events are ordered through shared memory (events, counters in segments, `/proc` states of
//! the children), never by sleeping; no test asserts how long anything took.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use memspace::collections::{SharedPodMap, Value};
use memspace::sync::{Event, Mutex};
use memspace::{Error, OpenError, Process, inspect};
use memspace_testkit::flags::lock_recovering;
use memspace_testkit::rng::seed_from_env;
use memspace_testkit::{Parent, Removal, Rng, Running, roles};

/// The map a child in a role works on.
const MAP: &str = "MEMSPACE_POD_MAP_TEST_MAP";
/// The `Value<u64>` where a child in a role counts the steps it completed.
const DONE: &str = "MEMSPACE_POD_MAP_TEST_DONE";
/// The name of the script a child in a role runs.
const SCRIPT: &str = "MEMSPACE_POD_MAP_TEST_SCRIPT";

/// Where the map's table word lies in its segment file (the kind area's first word).
const TABLE_WORD: u64 = 2304;
/// Where a map of 8-byte values puts its first table: past the data area's start (8192) and
/// the journal (one value, rounded up to 64 bytes).
const FIRST_TABLE: u64 = 8192 + 64;

fn assert_consistent<K, V>(map: &SharedPodMap<K, V>, context: &str) {
    let report = inspect::verify(map.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{context}: {report:#?}");
}

fn sorted<K: Ord + Copy, V: Copy>(entries: Vec<(K, V)>) -> BTreeMap<K, V> {
    entries.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Behaviour

#[test]
fn a_pod_map_behaves_like_a_hash_map_through_two_handles() {
    let seed = seed_from_env("MEMSPACE_POD_MAP_SEED");
    let name = Removal::fresh("pod-model");
    let first = SharedPodMap::<u64, [u64; 3]>::create(name.name()).expect("create");
    let second = SharedPodMap::<u64, [u64; 3]>::open(name.name()).expect("open");
    let mut model = HashMap::new();
    let mut rng = Rng::new(seed);
    for step in 0..20_000u64 {
        let map = if rng.below(2) == 0 { &first } else { &second };
        // Keys crowd 0..3000 for many replaces and removes; the map grows past 2 048 entries.
        let key = rng.below(3000);
        let value = [step, key, !step];
        let context = format!("seed {seed}, step {step}");
        match rng.below(1000) {
            0 => {
                map.clear().expect("clear");
                model.clear();
            }
            1..=300 => assert_eq!(
                map.remove(&key).expect("remove"),
                model.remove(&key),
                "{context}: remove {key}"
            ),
            301..=550 => assert_eq!(
                map.get(&key).expect("get"),
                model.get(&key).copied(),
                "{context}: get {key}"
            ),
            _ => assert_eq!(
                map.insert(key, value).expect("insert"),
                model.insert(key, value),
                "{context}: insert {key}"
            ),
        }
        if step % 997 == 0 {
            assert_eq!(map.len().expect("len"), model.len() as u64, "{context}");
            assert_consistent(map, &context);
        }
    }
    assert_eq!(
        sorted(first.to_vec().expect("entries")),
        model.into_iter().collect::<BTreeMap<_, _>>(),
        "seed {seed}: at the end"
    );
    assert_consistent(&second, &format!("seed {seed}: at the end"));
}

#[test]
fn keys_and_values_of_odd_sizes_and_a_set_without_values() {
    let name = Removal::fresh("pod-odd");
    let map = SharedPodMap::<[u8; 3], u16>::create(name.name()).expect("create");
    for i in 0..500u16 {
        let [lo, hi] = i.to_le_bytes();
        assert_eq!(map.insert([lo, hi, 7], i).expect("insert"), None);
    }
    for i in 0..500u16 {
        let [lo, hi] = i.to_le_bytes();
        assert_eq!(map.get(&[lo, hi, 7]).expect("get"), Some(i));
        assert_eq!(map.get(&[lo, hi, 8]).expect("get"), None);
    }
    assert_consistent(&map, "odd sizes");

    let set_name = Removal::fresh("pod-set");
    let set = SharedPodMap::<u32, ()>::create(set_name.name()).expect("create");
    assert_eq!(set.insert(5, ()).expect("insert"), None);
    assert_eq!(set.insert(5, ()).expect("insert again"), Some(()));
    assert!(set.contains_key(&5).expect("contains"));
    assert!(!set.contains_key(&6).expect("contains"));
    assert_eq!(set.remove(&5).expect("remove"), Some(()));
    assert!(set.is_empty().expect("is_empty"));
    assert_consistent(&set, "a set");
}

#[test]
fn float_keys_are_equal_when_their_bits_are() {
    let name = Removal::fresh("pod-floats");
    let map = SharedPodMap::<f64, u8>::create(name.name()).expect("create");
    map.insert(0.0, 1).expect("insert");
    map.insert(-0.0, 2).expect("insert");
    map.insert(f64::NAN, 3).expect("insert");
    assert_eq!(map.get(&0.0).expect("get"), Some(1));
    assert_eq!(map.get(&-0.0).expect("get"), Some(2));
    assert_eq!(map.get(&f64::NAN).expect("get"), Some(3));
    assert_eq!(map.len().expect("len"), 3);
}

fn fill_part((map, part, n): (SharedPodMap<u64, [u64; 4]>, u64, u64)) -> u64 {
    for key in part * n..(part + 1) * n {
        map.insert(key, [key; 4]).expect("insert");
    }
    n
}

#[test]
fn four_processes_fill_one_map_while_this_one_reads_it_without_the_lock() {
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("pod-fill");
    let map = SharedPodMap::<u64, [u64; 4]>::create(name.name()).expect("create");
    let n = 20_000;
    let mut workers: Vec<_> = (0..4)
        .map(|part| {
            let mut process = Process::new(fill_part, (map.clone(), part, n));
            process.start().expect("start a filler");
            process
        })
        .collect();
    // While they insert (growing the table again and again), every value read is whole.
    let mut rng = Rng::new(seed_from_env("MEMSPACE_POD_MAP_SEED"));
    let mut seen = 0;
    while workers.iter().any(Process::is_running) {
        let key = rng.below(4 * n);
        if let Some(value) = map.get(&key).expect("get while others insert") {
            assert_eq!(value, [key; 4], "key {key} holds a torn value");
            seen += 1;
        }
    }
    for worker in &mut workers {
        assert_eq!(worker.join().expect("a filler"), n);
    }
    eprintln!("{seen} values read while the map was being filled");
    assert_eq!(map.len().expect("len"), 4 * n);
    for key in 0..4 * n {
        assert_eq!(map.get(&key).expect("get"), Some([key; 4]), "key {key}");
    }
    assert_consistent(&map, "after four processes filled it");
}

#[test]
fn a_map_opened_with_other_types_is_a_type_mismatch() {
    let name = Removal::fresh("pod-types");
    let _map = SharedPodMap::<u64, u64>::create(name.name()).expect("create");
    let err = SharedPodMap::<u32, u64>::open(name.name()).expect_err("other key type");
    assert!(
        matches!(err, Error::Open(OpenError::TypeMismatch { .. })),
        "{err:?}"
    );
    let err = SharedPodMap::<u64, [u64; 2]>::open(name.name()).expect_err("other value type");
    assert!(
        matches!(err, Error::Open(OpenError::TypeMismatch { .. })),
        "{err:?}"
    );
    let err = memspace::SharedVec::<u64>::open(name.name()).expect_err("another kind");
    assert!(
        matches!(err, Error::Open(OpenError::WrongKind { .. })),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Damage

fn write_at(name: &Removal, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    name.file()
        .file()
        .write_all_at(bytes, at)
        .expect("write into the segment file");
}

#[test]
fn a_table_word_pointing_outside_the_segment_is_damage_not_a_panic() {
    let name = Removal::fresh("pod-table-word");
    let map = SharedPodMap::<u64, u64>::create(name.name()).expect("create");
    map.insert(1, 1).expect("insert");
    // Zero, too small a capacity, far past the segment, all ones, inside the journal.
    for word in [0u64, 0x3, (1 << 40) | 0xa, u64::MAX, 0x2000 | 0x4] {
        write_at(&name, TABLE_WORD, &word.to_le_bytes());
        let get = map.get(&1).expect_err("a damaged table word");
        assert!(matches!(get, Error::Corrupt { .. }), "{word:#x}: {get:?}");
        let insert = map.insert(2, 2).expect_err("a damaged table word");
        assert!(
            matches!(insert, Error::Corrupt { .. }),
            "{word:#x}: {insert:?}"
        );
        assert!(
            !inspect::verify(map.segment().expect("in shared memory")).is_consistent(),
            "{word:#x}"
        );
    }
}

#[test]
fn slot_tags_no_writer_stores_are_damage_not_a_panic() {
    let name = Removal::fresh("pod-tags");
    let map = SharedPodMap::<u64, u64>::create(name.name()).expect("create");
    // Every slot of the first table (16 slots of 3 words) gets a tag that is neither empty,
    // removed nor live.
    for slot in 0..16 {
        write_at(&name, FIRST_TABLE + slot * 24, &2u64.to_le_bytes());
    }
    let err = map.get(&1).expect_err("a bad tag");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    let err = map.insert(1, 1).expect_err("a bad tag");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(!inspect::verify(map.segment().expect("in shared memory")).is_consistent());
}

// ---------------------------------------------------------------------------------------------
// Kills: the steps a child takes, and what the map must hold after each

/// A value whose two words tell a torn read from a whole one.
fn value(v: u64) -> [u64; 2] {
    [v, !v]
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Insert(u64, u64),
    Remove(u64),
    Clear,
}

impl Step {
    fn apply(self, map: &SharedPodMap<u64, [u64; 2]>) {
        match self {
            Step::Insert(key, v) => drop(map.insert(key, value(v)).expect("insert")),
            Step::Remove(key) => drop(map.remove(&key).expect("remove")),
            Step::Clear => map.clear().expect("clear"),
        }
    }

    fn model(self, model: &mut HashMap<u64, [u64; 2]>) {
        match self {
            Step::Insert(key, v) => drop(model.insert(key, value(v))),
            Step::Remove(key) => drop(model.remove(&key)),
            Step::Clear => model.clear(),
        }
    }
}

/// The scripts the failpoint tests run, each reaching its failpoints in its own way.
fn script(name: &str) -> Vec<Step> {
    // The table is rebuilt at the 12th key, the 23rd, ... and at the 717th (step 716) starts
    // migrating from 1 024 slots to 2 048, 64 old slots moved per insert (to step 732).
    let fill = |keys: std::ops::Range<u64>| keys.map(|key| Step::Insert(key, key));
    if name == "clear" {
        // 10 keys fit the first table: the clear is the first rebuild.
        let mut steps: Vec<Step> = fill(0..10).collect();
        steps.push(Step::Clear);
        steps.extend(fill(10..30));
        return steps;
    }
    let mut steps: Vec<Step> = fill(0..20).collect();
    match name {
        // A rebuild, a replace, a remove, the removed key again.
        "change" => {
            steps.push(Step::Insert(3, 300));
            steps.push(Step::Remove(5));
            steps.push(Step::Insert(5, 500));
        }
        // Right after the migration starts, keys still in the old table are replaced (each
        // copied over with its new value), then inserts finish the migration.
        "migrate" => {
            steps.extend(fill(20..718));
            steps.extend((5..16).map(|key| Step::Insert(key, 1000 + key)));
            steps.extend(fill(718..1100));
        }
        // As "migrate", with removes of keys still in the old table.
        "migrate_remove" => {
            steps.extend(fill(20..718));
            steps.extend((5..16).map(Step::Remove));
            steps.extend(fill(718..1100));
        }
        // Keys still in the old table replaced (each copied over with its new value), then
        // removed while the migration has not reached their old slots, then inserts finish it.
        "migrate_replace_remove" => {
            steps.extend(fill(20..718));
            steps.extend((5..16).map(|key| Step::Insert(key, 1000 + key)));
            steps.extend((5..16).map(Step::Remove));
            steps.extend(fill(718..1100));
        }
        other => panic!("no script {other}"),
    }
    steps
}

/// A reader process: until `stop`, looks every key of the script up without the lock. Each
/// value found (or its absence) must be the key's in one of the script's states, never in a
/// state earlier than one it already saw: a value seen, then undone, fails. Counts passes in
/// `passes`.
fn script_reader(
    (map, script_name, passes, stop): (SharedPodMap<u64, [u64; 2]>, String, Mutex<u64>, Event),
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
        for key in &keys {
            let found = map
                .get(key)
                .unwrap_or_else(|err| panic!("pass {pass}: get({key}) failed: {err}"));
            at += states[at..]
                .iter()
                .position(|state| state.get(key) == found.as_ref())
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaves {
    Before,
    After,
}

/// Runs `script_name` in a child until it stops at `point`, kills it there, checks the map is
/// the map before the step under way (or after it, as `leaves` says), then finishes the
/// script.
fn kill_at(point: &str, script_name: &str, leaves: Leaves) {
    if roles::role().as_deref() == Some("script") {
        let map = SharedPodMap::<u64, [u64; 2]>::open(&std::env::var(MAP).expect("map name"))
            .expect("open the map");
        let done =
            Value::<u64>::open(&std::env::var(DONE).expect("counter name")).expect("counter");
        let steps = script(&std::env::var(SCRIPT).expect("script name"));
        for (index, step) in steps.into_iter().enumerate() {
            step.apply(&map);
            done.set(index as u64 + 1).expect("count");
        }
        return;
    }
    let _dog = memspace_testkit::start_test();
    let steps = script(script_name);
    let (map_name, done_name) = (
        Removal::fresh("pod-failpoint"),
        Removal::fresh("pod-failpoint-done"),
    );
    let map = SharedPodMap::<u64, [u64; 2]>::create(map_name.name()).expect("create");
    let done = Value::create(done_name.name(), 0u64).expect("counter");
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
    let context = format!("killed at {point} in step {stopped_in} of `{script_name}`");
    let mut expected = HashMap::new();
    for step in &steps[..stopped_in] {
        step.model(&mut expected);
    }
    if leaves == Leaves::After {
        steps[stopped_in].model(&mut expected);
    }
    assert_eq!(
        sorted(map.to_vec().expect("entries")),
        expected.clone().into_iter().collect::<BTreeMap<_, _>>(),
        "{context}: {leaves:?} the step"
    );
    assert_eq!(map.len().expect("len"), expected.len() as u64, "{context}");
    assert_consistent(&map, &format!("{context}, once recovered"));
    // Finish the script here, re-doing the step under way.
    for step in &steps[stopped_in..] {
        step.apply(&map);
        step.model(&mut expected);
    }
    assert_eq!(
        sorted(map.to_vec().expect("entries")),
        expected.into_iter().collect::<BTreeMap<_, _>>(),
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
    assert!(
        map.segment().expect("in shared memory").lock_owner_deaths() > 0,
        "{context}: the kill did not land inside the map's lock"
    );
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
    a_kill_after_writing_a_new_entry_leaves_it_out: "pod_map.written" in "change" leaves Before;
    a_kill_after_committing_a_new_entry_keeps_it: "pod_map.committed" in "change" leaves After;
    a_kill_after_journaling_a_replace_keeps_the_old_value:
        "pod_map.journaled" in "change" leaves Before;
    a_kill_after_writing_a_replacing_value_keeps_the_old_one:
        "pod_map.value_written" in "change" leaves Before;
    a_kill_after_removing_an_entry_keeps_it_removed: "pod_map.removed" in "change" leaves After;
    a_kill_before_switching_to_a_larger_table_keeps_the_old_one:
        "pod_map.table_built" in "change" leaves Before;
    a_kill_after_switching_to_a_larger_table_keeps_every_entry:
        "pod_map.table_switched" in "change" leaves Before;
    a_kill_before_a_migration_switches_tables_keeps_the_old_one:
        "pod_map.migration_named" in "migrate" leaves Before;
    a_kill_after_a_migration_switched_tables_keeps_every_entry:
        "pod_map.migration_begun" in "migrate" leaves Before;
    a_kill_after_moving_an_entry_keeps_it_once:
        "pod_map.entry_moved" in "migrate" leaves Before;
    a_kill_after_copying_a_replaced_key_out_of_the_old_table_keeps_the_new_value:
        "pod_map.removed_from_old" in "migrate" leaves After;
    a_kill_after_removing_a_key_from_the_old_table_keeps_it_removed:
        "pod_map.removed_from_old" in "migrate_remove" leaves After;
    a_kill_between_copying_a_replaced_key_and_removing_it_from_the_old_table_keeps_the_new_value:
        "pod_map.placed_over_old" in "migrate_replace_remove" leaves After;
    a_kill_after_removing_a_replaced_key_from_the_old_table_then_removes_leave_it_removed:
        "pod_map.removed_from_old" in "migrate_replace_remove" leaves After;
    a_kill_after_moving_an_entry_then_removes_leave_it_removed:
        "pod_map.entry_moved" in "migrate_replace_remove" leaves Before;
    a_kill_after_a_migration_ends_keeps_every_entry:
        "pod_map.migration_done" in "migrate" leaves Before;
    a_kill_before_a_clear_switches_tables_keeps_every_entry:
        "pod_map.table_built" in "clear" leaves Before;
    a_kill_after_a_clear_switched_tables_leaves_the_map_empty:
        "pod_map.table_switched" in "clear" leaves After;
}

/// A replace killed after writing its new value leaves its journal for the next locker; that
/// locker killed in the middle of its recovery must leave the replace still undone for
/// lookups without the lock, until a third process's recovery puts the old value back.
#[test]
fn a_kill_inside_a_recovery_never_shows_an_uncommitted_value() {
    let open = || {
        SharedPodMap::<u64, [u64; 2]>::open(&std::env::var(MAP).expect("map name"))
            .expect("open the map")
    };
    match roles::role().as_deref() {
        Some("replace") => {
            open().insert(3, value(300)).expect("replace");
            return;
        }
        Some("recover") => {
            open().insert(100, value(100)).expect("insert");
            return;
        }
        _ => {}
    }
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("pod-recovery-kill");
    let map = SharedPodMap::<u64, [u64; 2]>::create(name.name()).expect("create");
    map.insert(3, value(3)).expect("insert");
    for (role, point) in [
        ("replace", "pod_map.value_written"),
        ("recover", "pod_map.recovering"),
    ] {
        let mut child =
            roles::child_in_role(role, &[(MAP, name.name()), ("MEMSPACE_FAILPOINT", point)]);
        child.wait_until_stopped(point);
        child.kill();
    }
    // The lookup finds the map's change under way and its holder dead: it takes the lock,
    // which recovers, and reads the old value.
    assert_eq!(map.get(&3).expect("get"), Some(value(3)));
    assert_eq!(map.get(&100).expect("get"), None);
    assert_eq!(map.len().expect("len"), 1);
    assert_eq!(
        map.segment().expect("in shared memory").lock_owner_deaths(),
        2
    );
    assert_consistent(&map, "after two kills");
}

/// `len` and `used` are derived words a damaged segment can hold anything in: an insert
/// neither panics on them nor sizes a table from them.
#[test]
fn damaged_counts_are_neither_a_panic_nor_a_huge_table() {
    const LEN_WORD: u64 = TABLE_WORD + 16;
    const USED_WORD: u64 = TABLE_WORD + 24;
    for word in [LEN_WORD, USED_WORD] {
        let name = Removal::fresh("pod-counts");
        let map = SharedPodMap::<u64, u64>::create(name.name()).expect("create");
        for key in 0..5 {
            map.insert(key, key).expect("insert");
        }
        write_at(&name, word, &u64::MAX.to_le_bytes());
        // The next inserts grow the table (with a damaged `used`, at once).
        for key in 5..30 {
            map.insert(key, key).expect("insert over damaged counts");
        }
        let size = map.segment().expect("in shared memory").size();
        assert!(
            size < 1 << 20,
            "word {word}: the segment grew to {size} bytes"
        );
        for key in 0..30 {
            assert_eq!(
                map.get(&key).expect("get"),
                Some(key),
                "word {word}: key {key}"
            );
        }
    }
}

/// Where the map's `old` and `moved` words lie (the kind area's 11th and 12th words).
const OLD_WORD: u64 = TABLE_WORD + 10 * 8;
const MOVED_WORD: u64 = TABLE_WORD + 11 * 8;

#[test]
fn damaged_migration_words_are_damage_not_a_panic() {
    use std::os::unix::fs::FileExt;
    let name = Removal::fresh("pod-old-word");
    let map = SharedPodMap::<u64, u64>::create(name.name()).expect("create");
    map.insert(1, 1).expect("insert");
    let mut table = [0u8; 8];
    name.file()
        .file()
        .read_exact_at(&mut table, TABLE_WORD)
        .expect("read the table word");
    let table = u64::from_le_bytes(table);
    // Garbage, a table far past the segment, too small a capacity, and the table itself with
    // more slots moved than it has.
    for (old, moved) in [
        (u64::MAX, 0u64),
        ((1 << 40) | 0xa, 0),
        (0x3, 0),
        (table, 1 << 20),
    ] {
        write_at(&name, OLD_WORD, &old.to_le_bytes());
        write_at(&name, MOVED_WORD, &moved.to_le_bytes());
        let get = map.get(&2).expect_err("a damaged old word");
        assert!(
            matches!(get, Error::Corrupt { .. }),
            "{old:#x}/{moved}: {get:?}"
        );
        let insert = map.insert(2, 2).expect_err("a damaged old word");
        assert!(
            matches!(insert, Error::Corrupt { .. }),
            "{old:#x}/{moved}: {insert:?}"
        );
        assert!(
            !inspect::verify(map.segment().expect("in shared memory")).is_consistent(),
            "{old:#x}/{moved}"
        );
    }
}

/// Seeds whose key spaces keep the table around 1 024 slots under churn: migrations (some to a
/// table of the same size, when removed slots filled the old one) with removes, replaces and
/// clears under way, checked against `HashMap` at every step, and by `verify` now and then.
#[test]
fn churn_through_migrations_behaves_like_a_hash_map() {
    let first = seed_from_env("MEMSPACE_POD_MAP_SEED");
    for round in 0..12u64 {
        let seed = first.wrapping_add(round);
        let name = Removal::fresh("pod-churn");
        let map = SharedPodMap::<u64, [u64; 2]>::create(name.name()).expect("create");
        let mut model = HashMap::new();
        let mut rng = Rng::new(seed);
        let space = [900u64, 1100, 1500, 3000][(round % 4) as usize];
        for step in 0..12_000u64 {
            let key = rng.below(space);
            let context = format!("seed {seed}, step {step}");
            match rng.below(10_000) {
                0..=2 => {
                    map.clear().expect("clear");
                    model.clear();
                }
                3..=4500 => assert_eq!(
                    map.remove(&key).expect("remove"),
                    model.remove(&key),
                    "{context}: remove {key}"
                ),
                4501..=5000 => assert_eq!(
                    map.get(&key).expect("get"),
                    model.get(&key).copied(),
                    "{context}: get {key}"
                ),
                _ => assert_eq!(
                    map.insert(key, [step, key]).expect("insert"),
                    model.insert(key, [step, key]),
                    "{context}: insert {key}"
                ),
            }
            if step % 1009 == 0 {
                assert_eq!(map.len().expect("len"), model.len() as u64, "{context}");
                assert_consistent(&map, &context);
            }
        }
        assert_eq!(
            sorted(map.to_vec().expect("entries")),
            model.into_iter().collect::<BTreeMap<_, _>>(),
            "seed {seed}: at the end"
        );
    }
}
