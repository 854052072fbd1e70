//! `SharedValue` in shared memory under SIGKILL: a writer stopped between writing the new
//! record and switching to it, and a storm of kills against a writer while readers read.
//! (Its behaviour on both backends is in `backends.rs`.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use memspace::{SharedValue, inspect};
use memspace_testkit::children::was_sigkilled;
use memspace_testkit::{Removal, Rng, Watchdog, roles};

const VALUE_VARIABLE: &str = "MEMSPACE_TEST_SHARED_VALUE";

/// Value number `n`: its number and a padding whose length and letter follow from it, so that
/// a reader tells a whole value from a torn one.
type Numbered = (u64, String);

fn numbered(n: u64) -> Numbered {
    let letter = char::from(b'a' + (n % 26) as u8);
    (
        n,
        std::iter::repeat_n(letter, (n * 131 % 3000) as usize).collect(),
    )
}

fn assert_whole(value: &Numbered) {
    assert_eq!(*value, numbered(value.0), "a torn value");
}

/// Child role `setter`: sets values 1, 2, 3, ... for ever (until killed), or once if a
/// failpoint stops it.
fn setter() {
    let value = SharedValue::<Numbered>::open(&std::env::var(VALUE_VARIABLE).expect("name"))
        .expect("open the value");
    let start = value.get().expect("get").0;
    for n in start + 1.. {
        value.set(&numbered(n)).expect("set");
    }
}

fn roles_here() -> bool {
    match roles::role().as_deref() {
        Some("setter") => setter(),
        Some(other) => panic!("unknown role {other}"),
        None => return false,
    }
    true
}

#[test]
fn a_writer_killed_before_it_switched_to_its_new_value_leaves_the_old_one() {
    if roles_here() {
        return;
    }
    let _watchdog = Watchdog::start();
    let name = Removal::fresh("value-failpoint");
    let value = SharedValue::create(name.name(), &numbered(7)).expect("create");
    let point = "shared_value.written";
    let mut writer = roles::child_in_role(
        "setter",
        &[(VALUE_VARIABLE, name.name()), ("MEMSPACE_FAILPOINT", point)],
    );
    writer.wait_until_stopped(point);
    let status = writer.kill();
    assert!(was_sigkilled(status), "the setter ended with {status}");
    // The next access takes the dead setter's lock over; the value is the one before.
    assert_eq!(value.get().expect("get"), numbered(7));
    let report = inspect::verify(value.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    value.set(&numbered(8)).expect("set after the kill");
    assert_eq!(value.get().expect("get"), numbered(8));
}

#[test]
fn readers_see_only_whole_values_while_writers_are_killed_at_random() {
    if roles_here() {
        return;
    }
    let _watchdog = Watchdog::start();
    let name = Removal::fresh("value-storm");
    let value = SharedValue::create(name.name(), &numbered(0)).expect("create");
    let stop = AtomicBool::new(false);
    let mut rng = Rng::from_env();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert_whole(&value.get().expect("a read between kills"));
                reads += 1;
            }
            reads
        });
        let mut last = 0;
        for _ in 0..20 {
            let mut writer = roles::child_in_role("setter", &[(VALUE_VARIABLE, name.name())]);
            // The delay only chooses where the kill lands.
            std::thread::sleep(Duration::from_micros(rng.below(20_000)));
            let status = writer.kill();
            assert!(was_sigkilled(status), "the setter ended with {status}");
            let now = value.get().expect("get after a kill");
            assert_whole(&now);
            assert!(
                now.0 >= last,
                "the value went back from {last} to {}",
                now.0
            );
            last = now.0;
        }
        stop.store(true, Ordering::Relaxed);
        let reads = reader.join().expect("the reader");
        eprintln!("{reads} whole reads; the last value set was number {last}");
    });
    let report = inspect::verify(value.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    let size = value.segment().expect("in shared memory").size();
    assert!(size <= 64 << 10, "values of at most 3 KB took {size} bytes");
}

#[test]
fn replacing_values_of_every_size_keeps_the_segment_bounded() {
    let name = Removal::fresh("value-space");
    let value = SharedValue::create(name.name(), &String::new()).expect("create");
    let segment_size = || value.segment().expect("in shared memory").size();
    // Orders that push a new record past the current one: a large value, a small one (which
    // goes before it), then large ones that fit neither before the current record nor where
    // the first one was. A record goes past the current one only while that one starts less
    // than a largest value into the data, so nothing reaches past three largest values.
    let mib = 1 << 20;
    let mut written = 0;
    for round in 0..44 {
        let len = [mib, 8, mib + 16, mib + 32, 100, mib / 2][round % 6];
        value.set(&"x".repeat(len)).expect("set");
        assert_eq!(value.get().expect("get").len(), len);
        written += len;
    }
    let size = segment_size();
    assert!(
        size <= 4 * mib as u64 + 8192,
        "{size} bytes after {written} bytes of values of at most 1 MiB"
    );
}
