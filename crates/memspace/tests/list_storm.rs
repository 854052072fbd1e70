//! A storm of random kills against a process that changes a `SharedList` in every way (`set`,
//! `insert`, `remove`, `swap_remove`, `pop`, `push`, `truncate`, `clear`), while a reader reads
//! it without a lock. The kills land wherever the random delays put them (the failpoint tests
//! of each step are in `list_crash.rs`).
//!
//! The changes are a sequence fixed by the run's seed: change `k` depends only on `k` and the
//! list's length. After each kill the list must equal the state after the changes the writer
//! had acknowledged, or after one more; the next writer resumes from there. The reader must
//! never fail, and every snapshot it takes must be a list of whole items with no value twice
//! (a half-done move shows as an item twice).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use memspace::sync::Mutex;
use memspace::{SharedList, inspect};
use memspace_testkit::children::was_sigkilled;
use memspace_testkit::flags::lock_recovering;
use memspace_testkit::rng::seed_from_env;
use memspace_testkit::{Removal, Rng, Watchdog, roles};

/// `(value, body)`: the body follows from the value, so that a torn item shows.
type Item = (u64, String);

const LIST_VARIABLE: &str = "MEMSPACE_STORM_LIST";
const ACKED_VARIABLE: &str = "MEMSPACE_STORM_ACKED";
const SEED_VARIABLE: &str = "MEMSPACE_STORM_SEED";
const KILLS: u32 = 30;
const PREFILL: u64 = 60;

fn item(value: u64) -> Item {
    let letter = char::from(b'a' + (value % 26) as u8);
    let body = letter.to_string().repeat((value * 37 % 300) as usize);
    (value, format!("{value}:{body}"))
}

/// A change of the list, and the index it works at.
#[derive(Debug, Clone, Copy)]
enum Change {
    Set(u64),
    Insert(u64),
    Remove(u64),
    SwapRemove(u64),
    Pop,
    Push,
    Truncate(u64),
    Clear,
}

/// Change `k` of the run with `seed`, on a list of `len` items: the length wanders between
/// about 20 and 200, with a rare `clear` and `truncate`.
fn change(seed: u64, k: u64, len: u64) -> Change {
    let mut rng = Rng::new(seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let roll = rng.below(100);
    let any = |rng: &mut Rng| rng.below(len.max(1));
    match roll {
        0 => Change::Clear,
        1..=2 if len > 10 => Change::Truncate(len / 2),
        _ if len < 20 => {
            if roll.is_multiple_of(2) {
                Change::Push
            } else {
                Change::Insert(rng.below(len + 1))
            }
        }
        3..=32 => Change::Set(any(&mut rng)),
        33..=52 => Change::Insert(rng.below(len + 1)),
        53..=67 if len > 0 => Change::Remove(any(&mut rng)),
        68..=77 if len > 0 => Change::SwapRemove(any(&mut rng)),
        78..=87 if len > 0 && len < 200 => Change::Push,
        _ if len > 0 => Change::Pop,
        _ => Change::Push,
    }
}

/// The value change `k` writes: a new one for each change, never one of the prefill's.
fn value_of(k: u64) -> u64 {
    1_000_000 + k
}

fn apply_to_model(seed: u64, k: u64, model: &mut Vec<Item>) {
    let len = model.len() as u64;
    let value = item(value_of(k));
    match change(seed, k, len) {
        Change::Set(i) => model[i as usize] = value,
        Change::Insert(i) => model.insert(i as usize, value),
        Change::Remove(i) => drop(model.remove(i as usize)),
        Change::SwapRemove(i) => drop(model.swap_remove(i as usize)),
        Change::Pop => drop(model.pop()),
        Change::Push => model.push(value),
        Change::Truncate(n) => model.truncate(n as usize),
        Change::Clear => model.clear(),
    }
}

fn apply_to_list(seed: u64, k: u64, list: &SharedList<Item>) {
    let len = list.len().expect("len");
    let value = item(value_of(k));
    match change(seed, k, len) {
        Change::Set(i) => list.set(i, &value).expect("set"),
        Change::Insert(i) => list.insert(i, &value).expect("insert"),
        Change::Remove(i) => drop(list.remove(i).expect("remove")),
        Change::SwapRemove(i) => drop(list.swap_remove(i).expect("swap_remove")),
        Change::Pop => drop(list.pop().expect("pop")),
        Change::Push => list.push(&value).expect("push"),
        Change::Truncate(n) => list.truncate(n).expect("truncate"),
        Change::Clear => list.clear().expect("clear"),
    }
}

/// Child role `changer`: takes the changes from the one after the last acknowledged, and
/// acknowledges each once it returned, until killed.
fn changer() {
    let var = |name| std::env::var(name).expect(name);
    let list = SharedList::<Item>::open(&var(LIST_VARIABLE)).expect("open the list");
    let acked = Mutex::<u64>::open(&var(ACKED_VARIABLE)).expect("open the acknowledgements");
    let seed: u64 = var(SEED_VARIABLE).parse().expect("seed");
    let start = *lock_recovering(&acked);
    for k in start.. {
        apply_to_list(seed, k, &list);
        *lock_recovering(&acked) = k + 1;
    }
}

/// Checks a snapshot: whole items, no value twice.
fn assert_published(snapshot: &[Item]) {
    let mut seen = HashSet::new();
    for entry in snapshot {
        assert_eq!(*entry, item(entry.0), "a torn item");
        assert!(
            seen.insert(entry.0),
            "value {} twice in one snapshot",
            entry.0
        );
    }
}

#[test]
fn a_list_changed_in_every_way_survives_random_kills_and_its_reader_never_fails() {
    if roles::role().as_deref() == Some("changer") {
        changer();
        return;
    }
    let _watchdog = Watchdog::start();
    let seed = seed_from_env("MEMSPACE_LIST_STORM_SEED");
    let list_name = Removal::fresh("storm-list");
    let acked_name = Removal::fresh("storm-acked");
    let list = SharedList::<Item>::create(list_name.name()).expect("create the list");
    list.extend((0..PREFILL).map(item)).expect("prefill");
    let acked = Mutex::create(acked_name.name(), 0u64).expect("create the acknowledgements");
    let mut model: Vec<Item> = (0..PREFILL).map(item).collect();
    let mut done = 0u64;
    let mut rng = Rng::new(seed);
    let stop = AtomicBool::new(false);
    let seed_text = seed.to_string();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut snapshots = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert_published(&list.to_vec().expect("a read while writers are killed"));
                snapshots += 1;
            }
            snapshots
        });
        for kill in 0..KILLS {
            let mut writer = roles::child_in_role(
                "changer",
                &[
                    (LIST_VARIABLE, list_name.name()),
                    (ACKED_VARIABLE, acked_name.name()),
                    (SEED_VARIABLE, &seed_text),
                ],
            );
            // The delay only chooses where the kill lands.
            std::thread::sleep(Duration::from_micros(2_000 + rng.below(15_000)));
            let status = writer.kill();
            assert!(was_sigkilled(status), "the changer ended with {status}");
            let now_acked = *lock_recovering(&acked);
            while done < now_acked {
                apply_to_model(seed, done, &mut model);
                done += 1;
            }
            let found = list.to_vec().expect("read after a kill");
            if found != model {
                // The change after the last acknowledged one may have been made.
                let mut after = model.clone();
                apply_to_model(seed, done, &mut after);
                assert_eq!(
                    found, after,
                    "kill {kill}: the list is neither the state after change {done} nor after \
                     the one before"
                );
                model = after;
                done += 1;
                *lock_recovering(&acked) = done;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let snapshots = reader.join().expect("the reader");
        eprintln!("{done} changes through {KILLS} kills; {snapshots} snapshots read");
        assert!(done > u64::from(KILLS), "the changers made {done} changes");
    });
    let report = inspect::verify(list.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(list.to_vec().expect("read"), model);
}
