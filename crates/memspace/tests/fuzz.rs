//! A mutation fuzzer that runs on stable Rust, in the test suite.
//!
//! It takes valid segments of every kind (the collections with items, the sync objects after
//! some use) as bytes, and for each seeded case mutates one: flipped bits, overwritten bytes,
//! `u64`/`u32` fields set to values that break arithmetic or point elsewhere (0, 1, the control
//! page, the end of the segment, 2 GiB, `u64::MAX`, ...), truncation, zeros or garbage
//! appended, ranges spliced in from another segment. The mutated bytes go to a fresh segment
//! file, written whole before anything maps it, and then the library gets everything a program
//! or a tool does with a segment: open it as its kind and as any kind, `inspect::info` and
//! `inspect::verify`, every read, and a write (push, insert, put, set, lock...).
//!
//! Every outcome must be `Ok` or an error. A panic (debug-build overflow checks included) is
//! caught and reported with the case's seed; a signal or a hang kills the test binary, whose
//! stderr then ends with the seed of the case that was running (each case prints it first,
//! and runs under the watchdog). After each case the backing file must not have grown past
//! what a legitimate write can add (a write may double the segment, a queue or a map may build
//! a table or ring twice as large past the current one), and the process's peak resident
//! memory during the case must stay within a bound of the segment's size.
//!
//! Two things are left out on purpose. The lock slots (bytes 128..192, and the second one at
//! 4032..4096 that a queue's receivers take) are never mutated: a lock word naming a live
//! thread is a live holder, and waiting for it is the lock's contract (the lock tests damage
//! it). And a header that says "still being initialised" is made ready, so
//! that no case waits the two seconds `open` gives a creator (`bad_input.rs` covers that).
//!
//! `MEMSPACE_FUZZ_CASES=N` runs `N` cases instead of the default; `MEMSPACE_TEST_SEED=S`
//! replays the run whose seed is `S` (printed at the start), and `MEMSPACE_FUZZ_CASE=C` replays
//! the single case whose seed is `C` (printed for each failure).

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use memspace::collections::{Queue, SharedMap, SharedVec, Value};
use memspace::sync::{Barrier, Condvar, Event, Lock, Mutex, RwLock, Semaphore};
use memspace::{Segment, SharedList, inspect};
use memspace_testkit::names::shm_path;
use memspace_testkit::{Rng, Watchdog, names, unique_name};

/// Cases run by default: enough to find the easy bugs in a few seconds of a debug build.
const DEFAULT_CASES: u64 = 4000;
/// Where the lock slots live (`segment/header.rs`): never mutated (see the module docs).
const LOCK_SLOTS: [std::ops::Range<usize>; 2] = [128..192, 4032..4096];

/// Whether byte `at` lies in a lock slot.
fn in_lock_slot(at: usize) -> bool {
    LOCK_SLOTS.iter().any(|slot| slot.contains(&at))
}
/// Where a collection's own control words start.
const KIND_AREA: usize = 2304;
/// A bound on the growth of the resident set during one case, beyond the segment's size.
const RSS_SLACK: u64 = 64 << 20;

/// The kinds of segment the fuzzer starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sample {
    List,
    LongList,
    Vec,
    Map,
    Queue,
    Value,
    Lock,
    Mutex,
    Condvar,
    Event,
    Semaphore,
    Barrier,
    RwLock,
}

const SAMPLES: [Sample; 13] = [
    Sample::List,
    Sample::LongList,
    Sample::Vec,
    Sample::Map,
    Sample::Queue,
    Sample::Value,
    Sample::Lock,
    Sample::Mutex,
    Sample::Condvar,
    Sample::Event,
    Sample::Semaphore,
    Sample::Barrier,
    Sample::RwLock,
];

/// Creates a valid segment of `sample` with some use behind it, and returns its bytes.
fn valid_bytes(sample: Sample) -> Vec<u8> {
    let name = unique_name("fuzz-sample");
    let path = shm_path(&name);
    {
        // Handles are dropped before the file is read: no user stays recorded in it.
        make(sample, &name);
    }
    let bytes = fs::read(&path).expect("read the sample segment");
    fs::remove_file(&path).expect("remove the sample segment");
    bytes
}

fn make(sample: Sample, name: &str) {
    match sample {
        Sample::List => {
            let list = SharedList::<String>::create(name).expect("create");
            list.extend(["alpha", "", "gamma"].map(String::from))
                .expect("push");
        }
        Sample::LongList => {
            // Past the first index block (512 entries).
            let list = SharedList::<(u32, String)>::create(name).expect("create");
            let items: Vec<_> = (0..600u32)
                .map(|i| (i, "z".repeat((i % 40) as usize)))
                .collect();
            list.extend(&items).expect("push");
        }
        Sample::Vec => {
            let vec = SharedVec::<u64>::create(name).expect("create");
            vec.extend_from_slice(&(0..300).collect::<Vec<u64>>())
                .expect("push");
        }
        Sample::Map => {
            // Enough to regrow the table, with replaced and removed entries.
            let map = SharedMap::<String, u64>::create(name).expect("create");
            for i in 0..40u64 {
                map.insert(&format!("key {i}"), &i).expect("insert");
            }
            for i in 0..10u64 {
                map.insert(&format!("key {i}"), &(i * 100))
                    .expect("replace");
                map.remove(&format!("key {}", i + 20)).expect("remove");
            }
        }
        Sample::Queue => {
            // Items put, taken and acknowledged, so that the ring's window has moved.
            let queue = Queue::<String>::create(name).expect("create");
            for i in 0..30 {
                queue.put(&format!("item {i}")).expect("put");
            }
            for _ in 0..12 {
                queue.try_receive().expect("receive").ack().expect("ack");
            }
        }
        Sample::Value => drop(Value::create(name, 41u64).expect("create")),
        Sample::Lock => {
            let lock = Lock::create(name).expect("create");
            drop(lock.lock().expect("lock"));
        }
        Sample::Mutex => {
            let mutex = Mutex::create(name, [1u64, 2, 3]).expect("create");
            mutex.lock().expect("lock")[1] = 5;
        }
        Sample::Condvar => Condvar::create(name).expect("create").notify_all(),
        Sample::Event => Event::create(name).expect("create").set().expect("set"),
        Sample::Semaphore => {
            let semaphore = Semaphore::create(name, 3, true).expect("create");
            drop(semaphore.try_acquire().expect("acquire"));
        }
        Sample::Barrier => drop(Barrier::create(name, 3).expect("create")),
        Sample::RwLock => {
            let rwlock = RwLock::create(name, 7u64).expect("create");
            *rwlock.write().expect("write") = 8;
            drop(rwlock.read().expect("read"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// Values that break arithmetic or point where they must not, for a segment of `len` bytes.
fn interesting(rng: &mut Rng, len: u64, old: u64) -> u64 {
    let picks = [
        0,
        1,
        2,
        7,
        8,
        40,
        128,
        2304,
        4088,
        4095,
        4096,
        4097,
        len.saturating_sub(8),
        len,
        len + 8,
        len * 2,
        2 << 30,
        1 << 40,
        1 << 46,
        (1 << 46) + 8,
        i64::MAX as u64,
        u64::MAX,
        u64::MAX - 1,
        !7,
        !63,
        !63 | 4,
        old.wrapping_add(1),
        old.wrapping_sub(1),
        old.wrapping_add(8),
        old.wrapping_sub(8),
        old.wrapping_mul(2),
        old ^ (1 << rng.below(64)),
    ];
    if rng.below(8) == 0 {
        rng.next_u64()
    } else {
        picks[rng.below(picks.len() as u64) as usize]
    }
}

/// An offset to mutate, biased towards the header, the collection's control words and the
/// start of the data area, where the offsets and lengths are.
fn place(rng: &mut Rng, len: usize, align: usize) -> Option<usize> {
    if len < align {
        return None;
    }
    let at = match rng.below(4) {
        0 => rng.below(128) as usize,
        1 => KIND_AREA + rng.below(96) as usize,
        2 => 4096 + rng.below(8192) as usize,
        _ => rng.below(len as u64) as usize,
    };
    let at = (at.min(len - align) / align) * align;
    (!in_lock_slot(at) && !in_lock_slot(at + align - 1)).then_some(at)
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, other: &[u8]) {
    match rng.below(10) {
        // Flip a few bits.
        0 => {
            for _ in 0..=rng.below(8) {
                if let Some(at) = place(rng, bytes.len(), 1) {
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
        }
        // Overwrite a few bytes.
        1 => {
            for _ in 0..=rng.below(8) {
                if let Some(at) = place(rng, bytes.len(), 1) {
                    bytes[at] = rng.next_u64() as u8;
                }
            }
        }
        // A u64 field set to an interesting value (the common case: offsets and lengths).
        2..=5 => {
            if let Some(at) = place(rng, bytes.len(), 8) {
                let old = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
                let value = interesting(rng, bytes.len() as u64, old);
                bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
        }
        // A u32 field.
        6 => {
            if let Some(at) = place(rng, bytes.len(), 4) {
                let old = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
                let value = interesting(rng, bytes.len() as u64, u64::from(old)) as u32;
                bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
        }
        // Truncate, often to a page boundary.
        7 => {
            let len = rng.below(bytes.len() as u64 + 1) as usize;
            let len = if rng.below(2) == 0 {
                len / 4096 * 4096
            } else {
                len
            };
            // Keep each lock slot whole or gone.
            let cut = LOCK_SLOTS.iter().find(|slot| slot.contains(&len));
            bytes.truncate(cut.map_or(len, |slot| slot.start));
        }
        // Extend with zeros or garbage.
        8 => {
            let extra = rng.below(65_536) as usize;
            if rng.below(2) == 0 {
                bytes.resize(bytes.len() + extra, 0);
            } else {
                bytes.extend(rng.bytes(extra));
            }
        }
        // Splice a range from another segment, at the same place or elsewhere.
        _ => {
            if other.is_empty() || bytes.is_empty() {
                return;
            }
            let from = rng.below(other.len() as u64) as usize;
            let len = (rng.below(4096) as usize + 1).min(other.len() - from);
            let to = if rng.below(2) == 0 {
                from
            } else {
                rng.below(bytes.len() as u64) as usize
            };
            for i in 0..len {
                let at = to + i;
                if at < bytes.len() && !in_lock_slot(at) {
                    bytes[at] = other[from + i];
                }
            }
        }
    }
}

/// Makes a header that says "being initialised" (or is all zeros) say "ready": `open` would
/// wait two seconds for its creator (see the module docs).
fn never_waiting(bytes: &mut Vec<u8>) {
    if bytes.len() >= 20 {
        let state = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let magic = u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
        if state == 1 || (magic == 0 && state == 0) {
            bytes[16..20].copy_from_slice(&2u32.to_le_bytes());
        }
    }
    // A short file of zeros (an empty one included) is a creator that has not written yet.
    if bytes.len() < 128 && bytes.iter().all(|&b| b == 0) {
        bytes.clear();
        bytes.push(0xA5);
    }
}

// ---------------------------------------------------------------------------------------------
// What the library is asked to do

/// Opens the mutated segment `name` as `sample` and as any kind, inspects it, reads
/// everything, and writes once. Only panics (and crashes) fail: errors are expected. Returns
/// whether the segment opened (so that the run can tell it exercised more than `open`).
fn exercise(sample: Sample, name: &str) -> bool {
    let opened = Segment::open_any(name);
    let was_opened = opened.is_ok();
    if let Ok(segment) = opened {
        let _ = inspect::info(&segment);
        let report = inspect::verify(&segment);
        assert!(report.problems.len() <= inspect::Report::MAX_PROBLEMS);
        let _ = (segment.size(), segment.users(), segment.lock_owner());
    }
    if let Ok(segment) = inspect::observe(name) {
        let _ = inspect::verify(&segment);
    }
    if !collection(sample, name) {
        sync_object(sample, name);
    }
    was_opened
}

/// Reads and writes the collection `sample` in `name`; `false` if `sample` is not one.
fn collection(sample: Sample, name: &str) -> bool {
    match sample {
        Sample::List => list::<String>(name, &"new".to_owned()),
        Sample::LongList => list::<(u32, String)>(name, &(9, "new".to_owned())),
        Sample::Vec => {
            if let Ok(vec) = SharedVec::<u64>::open(name) {
                let _ = (vec.len(), vec.get(0), vec.get(vec.len().saturating_sub(1)));
                let _ = vec.as_slice().map(<[u64]>::len);
                let _ = vec.push(99);
                let _ = vec.extend_from_slice(&[1, 2, 3]);
                let _ = vec.to_vec();
            }
        }
        Sample::Map => {
            if let Ok(map) = SharedMap::<String, u64>::open(name) {
                let _ = map.len();
                let _ = map.get(&"key 3".to_owned());
                let _ = map.iter().take(100).count();
                let _ = map.to_vec();
                let _ = map.insert(&"key 3".to_owned(), &3);
                let _ = map.insert(&"new key".to_owned(), &1);
                let _ = map.remove(&"key 30".to_owned());
                if map.len().is_ok_and(|len| len % 4 == 0) {
                    let _ = map.clear();
                }
            }
        }
        Sample::Queue => {
            if let Ok(queue) = Queue::<String>::open(name) {
                let _ = (queue.len(), queue.unacknowledged(), queue.in_flight());
                let _ = queue.to_vec();
                if let Ok(delivery) = queue.try_receive() {
                    let _ = delivery.ack();
                }
                if let Ok(delivery) = queue.try_receive() {
                    let _ = delivery.nack();
                }
                let _ = queue.try_put(&"new".to_owned());
                let _ = queue.try_get();
            }
        }
        Sample::Value => {
            if let Ok(value) = Value::<u64>::open(name) {
                let _ = value.get();
                let _ = value.set(5);
                let _ = value.update(|v| *v = v.wrapping_add(1));
            }
        }
        _ => return false,
    }
    true
}

/// Uses the sync object `sample` in `name`, without waiting.
fn sync_object(sample: Sample, name: &str) {
    match sample {
        Sample::Lock => {
            if let Ok(lock) = Lock::open(name) {
                let _ = lock.owner();
                drop(lock.try_lock());
            }
        }
        Sample::Mutex => {
            if let Ok(mutex) = Mutex::<[u64; 3]>::open(name) {
                match mutex.try_lock() {
                    Ok(mut guard) => guard[0] = 9,
                    Err(err) => drop(err),
                }
            }
        }
        Sample::Condvar => {
            if let Ok(condvar) = Condvar::open(name) {
                condvar.notify_one();
                condvar.notify_all();
            }
        }
        Sample::Event => {
            if let Ok(event) = Event::open(name) {
                let _ = event.is_set();
                let _ = event.set();
                let _ = event.wait_timeout(Duration::ZERO);
                let _ = event.clear();
            }
        }
        Sample::Semaphore => {
            if let Ok(semaphore) = Semaphore::open(name) {
                let _ = semaphore.value();
                drop(semaphore.try_acquire());
                let _ = semaphore.release();
            }
        }
        Sample::Barrier => {
            if let Ok(barrier) = Barrier::open(name) {
                let _ = (barrier.parties(), barrier.waiting(), barrier.is_broken());
                let _ = barrier.wait_timeout(Duration::ZERO);
                let _ = barrier.reset();
            }
        }
        Sample::RwLock => {
            if let Ok(rwlock) = RwLock::<u64>::open(name) {
                let _ = rwlock.readers();
                drop(rwlock.try_read_for(Duration::from_millis(1)));
                if let Ok(mut guard) = rwlock.try_write_for(Duration::from_millis(1)) {
                    *guard = 3;
                }
            }
        }
        _ => unreachable!("{sample:?} is a collection"),
    }
}

fn list<T>(name: &str, item: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    if let Ok(list) = SharedList::<T>::open(name) {
        let len = list.len().unwrap_or(0);
        let _ = (list.get(0), list.get(len.saturating_sub(1)), list.get(len));
        let _ = list.iter().take(64).count();
        let _ = list.used_bytes();
        if len <= 1000 {
            let _ = list.to_vec();
        }
        let _ = list.push(item);
        let _ = list.extend([item, item]);
    }
}

// ---------------------------------------------------------------------------------------------
// Resources

/// The peak resident set (`VmHWM`) and the current one (`VmRSS`), in bytes.
fn memory() -> (u64, u64) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets the peak resident set to the current one (`/proc/self/clear_refs`, value 5).
fn reset_peak_memory() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

// ---------------------------------------------------------------------------------------------
// The cases

/// One case: the mutated segment, what was done with it, and what it left.
fn run_case(seed: u64, samples: &[(Sample, Vec<u8>)]) -> Result<bool, String> {
    let mut rng = Rng::new(seed);
    let (sample, valid) = &samples[rng.below(samples.len() as u64) as usize];
    let (_, other) = &samples[rng.below(samples.len() as u64) as usize];
    let mut bytes = valid.clone();
    for _ in 0..=rng.below(4) {
        mutate(&mut rng, &mut bytes, other);
    }
    never_waiting(&mut bytes);
    let name = unique_name("fuzz");
    let path = shm_path(&name);
    // Written whole before anything maps it: no truncation under a mapping here. Mode 0600,
    // as a segment has: a wider one would be refused before anything is read.
    names::write_segment_file(&name, &bytes);
    let before = bytes.len() as u64;
    let measured = reset_peak_memory();
    let (_, rss_before) = memory();
    let outcome = catch_unwind(AssertUnwindSafe(|| exercise(*sample, &name)));
    let (peak, _) = memory();
    let after = fs::metadata(&path).map_or(0, |m| m.len());
    remove(&path);
    let opened = match outcome {
        Ok(opened) => opened,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            return Err(format!("{sample:?}: panicked: {message}"));
        }
    };
    // A legitimate write may double the segment, or build a table or ring twice the size of
    // the current one past it; nothing needs more than four times the file plus 1 MiB.
    if after > before.saturating_mul(4) + (1 << 20) {
        return Err(format!(
            "{sample:?}: the segment grew from {before} to {after} bytes"
        ));
    }
    if measured && peak > rss_before + after.max(before).saturating_mul(2) + RSS_SLACK {
        return Err(format!(
            "{sample:?}: the resident set peaked at {peak} bytes (from {rss_before}) for a \
             {before}-byte segment"
        ));
    }
    Ok(opened)
}

fn remove(path: &Path) {
    // Not `Segment::remove`: a mutated segment may not be recognisable as one any more.
    let _ = fs::remove_file(path);
}

#[test]
fn mutated_segments_of_every_kind_give_errors_never_panics_crashes_or_growth() {
    let cases = std::env::var("MEMSPACE_FUZZ_CASES")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let samples: Vec<(Sample, Vec<u8>)> = SAMPLES
        .iter()
        .map(|&sample| (sample, valid_bytes(sample)))
        .collect();
    // Panics are caught and reported below with their case's seed.
    let seeds: Vec<u64> = if let Ok(one) = std::env::var("MEMSPACE_FUZZ_CASE") {
        vec![one.trim().parse().expect("MEMSPACE_FUZZ_CASE is a number")]
    } else {
        let mut rng = Rng::from_env();
        (0..cases).map(|_| rng.next_u64()).collect()
    };
    let mut failures = Vec::new();
    let mut opened = 0;
    let total = seeds.len();
    for seed in seeds {
        // If this case crashes or hangs, this is the last line of the test's output.
        eprintln!("case {seed}");
        let _dog = Watchdog::start();
        match run_case(seed, &samples) {
            Ok(true) => opened += 1,
            Ok(false) => {}
            Err(failure) => {
                eprintln!("case {seed} failed: {failure}");
                failures.push(format!("{failure} (replay with MEMSPACE_FUZZ_CASE={seed})"));
            }
        }
    }
    eprintln!("{opened} of {total} mutated segments opened and were read and written");
    // Most mutations leave a segment that opens: if few do, the cases stopped reaching the
    // reads and writes (a file the open refuses for its mode, say), and test nothing past it.
    assert!(
        total < 100 || opened * 4 >= total,
        "only {opened} of {total} mutated segments opened"
    );
    assert!(
        failures.is_empty(),
        "{} of the cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
