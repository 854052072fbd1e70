//! `SharedArray`: element operations, atomic read-modify-writes from threads and processes,
//! the lock for multi-element updates (and a holder killed with SIGKILL while it holds it),
//! type checks on open, and a damaged length.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use memspace::spawn::{Mode, StartMethod};
use memspace::sync::{LockError, Mutex};
use memspace::{Error, OpenError, SharedArray, inspect};
use memspace_testkit::modes::run_all;
use memspace_testkit::{Parent, Removal, Running, flags};

memspace_testkit::per_mode! {
    workers_adding_to_every_element_lose_no_addition: thread, fork, spawn;
    a_compare_exchange_lets_exactly_one_worker_claim_each_slot: thread, fork, spawn;
    updates_under_the_lock_never_interleave: thread, fork, spawn;
}

#[test]
fn elements_are_read_written_and_swapped_one_at_a_time() {
    let array = SharedArray::<i32>::from_slice(&[1, -2, 3]).expect("array");
    assert_eq!(array.len(), 3);
    assert_eq!(array.get(1).expect("get"), -2);
    array.set(1, 20).expect("set");
    assert_eq!(array.swap(2, 30).expect("swap"), 3);
    assert_eq!(array.fetch_add(0, 9).expect("add"), 1);
    assert_eq!(array.fetch_sub(0, 4).expect("sub"), 10);
    assert_eq!(array.to_vec().expect("to_vec"), [6, 20, 30]);
    assert_eq!(array.compare_exchange(0, 6, 7).expect("cas"), Ok(6));
    assert_eq!(array.compare_exchange(0, 6, 8).expect("cas"), Err(7));
    array.fill(-1).expect("fill");
    assert_eq!(array.to_vec().expect("to_vec"), [-1, -1, -1]);
    array.copy_from_slice(&[4, 5, 6]).expect("copy");
    assert_eq!(array.to_vec().expect("to_vec"), [4, 5, 6]);
    // Additions wrap at the type's bounds, as the machine's (and a C int's) do.
    array.set(0, i32::MAX).expect("set");
    assert_eq!(array.fetch_add(0, 1).expect("add"), i32::MAX);
    assert_eq!(array.get(0).expect("get"), i32::MIN);

    let floats = SharedArray::<f64>::new(2).expect("floats");
    assert_eq!(
        floats.to_vec().expect("to_vec"),
        [0.0, 0.0],
        "a new array is zeros"
    );
    floats.set(1, 2.5).expect("set");
    assert_eq!(floats.compare_exchange(1, 2.5, -0.5).expect("cas"), Ok(2.5));
    assert_eq!(floats.get(1).expect("get").to_bits(), (-0.5f64).to_bits());
}

#[test]
fn an_index_past_the_end_and_a_slice_of_another_length_are_errors_naming_the_array() {
    let removal = Removal::fresh("array-bounds");
    let array = SharedArray::<u8>::create(removal.name(), 4).expect("array");
    for result in [
        array.get(4).map(drop),
        array.set(u64::MAX, 1),
        array.fetch_add(9, 1).map(drop),
    ] {
        let err = result.expect_err("out of range");
        assert!(
            matches!(err, Error::IndexOutOfRange { len: 4, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(removal.name()), "{err}");
    }
    let err = array.copy_from_slice(&[1, 2, 3]).expect_err("3 into 4");
    assert!(
        matches!(
            err,
            Error::LengthMismatch {
                len: 4,
                given: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        array.to_vec().expect("to_vec"),
        [0; 4],
        "nothing was written"
    );
}

#[test]
fn an_array_opens_only_as_its_own_element_type() {
    let removal = Removal::fresh("array-type");
    let array = SharedArray::<f32>::create_from(removal.name(), &[1.5, 2.5]).expect("array");
    let again = SharedArray::<f32>::open(removal.name()).expect("open as f32");
    assert_eq!(again.to_vec().expect("to_vec"), [1.5, 2.5]);
    assert_eq!(again.recorded_type_name(), "f32");
    // Same size, another type: the bits of a float are not a count.
    for err in [
        SharedArray::<u32>::open(removal.name()).map(drop),
        SharedArray::<u64>::open(removal.name()).map(drop),
    ] {
        let err = err.expect_err("another type");
        assert!(
            matches!(err, Error::Open(OpenError::TypeMismatch { .. })),
            "{err:?}"
        );
    }
    let err = memspace::SharedVec::<f32>::open(removal.name()).expect_err("not a vector");
    assert!(
        matches!(err, Error::Open(OpenError::WrongKind { .. })),
        "{err:?}"
    );
    drop(array);
}

#[test]
fn a_damaged_length_is_an_error_at_open_never_a_slice_past_the_segment() {
    let removal = Removal::fresh("array-damaged");
    drop(SharedArray::<u64>::create(removal.name(), 8).expect("array"));
    // The kind area starts at 2304 with the length (`src/collections/array.rs`).
    removal.file().write_u64(2304, 1 << 40);
    let err = SharedArray::<u64>::open(removal.name()).expect_err("a length past the segment");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(removal.name()), "{err}");
    let observed = inspect::observe(removal.name()).expect("observe");
    assert!(!inspect::verify(&observed).is_consistent());
}

#[test]
fn an_array_on_a_redis_name_is_refused_with_a_reason() {
    let err = SharedArray::<u8>::create("redis://127.0.0.1:1/array", 4).expect_err("redis");
    let message = err.to_string();
    assert!(message.contains("redis://127.0.0.1:1/array"), "{message}");
}

fn add_one_to_each(array: SharedArray<u64>) {
    for _ in 0..500 {
        for index in 0..array.len() {
            array.fetch_add(index, 1).expect("add");
        }
    }
}

fn workers_adding_to_every_element_lose_no_addition(mode: Mode) {
    let array = SharedArray::<u64>::new(8).expect("array");
    run_all(mode, add_one_to_each, vec![array.clone(); 4]);
    assert_eq!(array.to_vec().expect("to_vec"), [2000; 8], "{mode:?}");
}

fn claim_slots((array, me): (SharedArray<u32>, u32)) -> u32 {
    (0..array.len())
        .filter(|&slot| array.compare_exchange(slot, 0, me).expect("cas").is_ok())
        .count() as u32
}

fn a_compare_exchange_lets_exactly_one_worker_claim_each_slot(mode: Mode) {
    let array = SharedArray::<u32>::new(300).expect("array");
    let claimed: u32 = run_all(
        mode,
        claim_slots,
        (1..=3).map(|me| (array.clone(), me)).collect(),
    )
    .into_iter()
    .sum();
    assert_eq!(claimed, 300, "{mode:?}");
    assert!(
        array
            .to_vec()
            .expect("to_vec")
            .iter()
            .all(|&owner| (1..=3).contains(&owner))
    );
}

/// Moves one unit from element 0 to element 1 and back, 200 times, under the lock: a holder
/// of the lock always sees the two summing to 100.
fn shuffle_under_the_lock(array: SharedArray<i64>) -> u32 {
    let mut torn = 0;
    for round in 0..200 {
        array
            .with_lock(|held| {
                if held.get(0).expect("get") + held.get(1).expect("get") != 100 {
                    torn += 1;
                }
                let (from, to) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
                held.fetch_sub(from, 1).expect("sub");
                std::thread::yield_now();
                held.fetch_add(to, 1).expect("add");
            })
            .expect("lock");
    }
    torn
}

fn updates_under_the_lock_never_interleave(mode: Mode) {
    let array = SharedArray::<i64>::from_slice(&[60, 40]).expect("array");
    let torn: u32 = run_all(mode, shuffle_under_the_lock, vec![array.clone(); 3])
        .into_iter()
        .sum();
    assert_eq!(torn, 0, "{mode:?}: a holder saw another's update half done");
    assert_eq!(array.to_vec().expect("to_vec").iter().sum::<i64>(), 100);
}

/// Takes the lock, moves half of element 0 to element 1 (a multi-element update), says so,
/// and is killed before it finishes.
fn half_update_then_wait((array, ready, parent): (SharedArray<i64>, Mutex<u32>, u32)) {
    let held = array.lock().expect("the free lock");
    held.fetch_sub(0, 50).expect("take");
    flags::set_flag(&ready, 1);
    Parent::from(parent).park_until_killed()
}

#[test]
fn a_holder_killed_in_the_middle_of_an_update_is_reported_to_the_next_locker() {
    let array = SharedArray::<i64>::from_slice(&[100, 0]).expect("array");
    let ready = flags::new_flag();
    let mut holder = Running::start_by(
        StartMethod::Fork,
        half_update_then_wait,
        (array.clone(), ready.clone(), std::process::id()),
    );
    flags::wait_for_flag(&ready, 1, holder.pid());
    holder.kill();
    let _ = holder.join();
    // Element operations never wait for the lock, dead holder or not.
    assert_eq!(array.get(0).expect("get"), 50);
    let guard = match array.lock() {
        Err(LockError::OwnerDied(guard)) => guard,
        other => panic!("expected OwnerDied, got {:?}", other.map(drop)),
    };
    // The repair: finish the move the holder began.
    guard.fetch_add(1, 50).expect("finish");
    guard.mark_consistent().expect("mark consistent");
    drop(guard);
    assert_eq!(array.to_vec().expect("to_vec"), [50, 50]);
    assert!(array.lock().is_ok(), "repaired: a clean lock again");
}
