//! Segments written by anything else: garbage, truncated, damaged, of another kind or type.
//! Opening, inspecting, verifying and reading them must give errors, never a panic, a crash
//! (SIGSEGV, SIGBUS) or a hang. The property tests stand in for a fuzzer (cargo-fuzz needs a
//! nightly toolchain): random bytes, and valid segments with random bytes overwritten.

use memspace::inspect;
use memspace::{Error, OpenError, Segment, SegmentOptions, SharedList};
use memspace_testkit::{Removal, names};
use proptest::prelude::*;
use serde_json::Value;

/// Everything a tool does with a segment it did not write: none of it may panic or crash.
fn poke(name: &str) {
    if let Ok(segment) = inspect::observe(name) {
        let info = inspect::info(&segment);
        let report = inspect::verify(&segment);
        assert!(report.problems.len() <= inspect::Report::MAX_PROBLEMS);
        if info.kind == "list"
            && let Ok(list) = SharedList::<Value>::from_segment(segment)
        {
            let _ = list.to_vec();
            let _ = list.get(0);
            let _ = list.get(list.len().expect("len").saturating_sub(1));
            for item in list.iter().take(64) {
                let _ = item;
            }
        }
    }
    let _ = Segment::open_any(name);
}

#[test]
fn garbage_is_refused_as_foreign_naming_the_segment() {
    let name = Removal::fresh("garbage");
    names::write_file(&name.path(), &[0xA5; 8192]);
    let err = Segment::open_any(name.name()).expect_err("garbage opened");
    assert!(
        matches!(err, Error::Open(OpenError::Foreign { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains(name.name()), "{err}");
    let err = SharedList::<u64>::open(name.name()).expect_err("garbage opened as a list");
    assert!(
        matches!(err, Error::Open(OpenError::Foreign { .. })),
        "{err:?}"
    );
}

#[test]
fn an_empty_file_is_not_initialised() {
    let name = Removal::fresh("empty");
    names::write_file(&name.path(), &[]);
    let err = Segment::open_any(name.name()).expect_err("empty file opened");
    assert!(
        matches!(err, Error::Open(OpenError::NotInitialized { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("memspace rm"), "{err}");
}

#[test]
fn a_truncated_list_is_refused() {
    let name = Removal::fresh("truncated");
    let list = SharedList::<String>::create(name.name()).expect("create");
    list.extend(["a", "b"].map(String::from)).expect("push");
    drop(list);
    name.file().set_len(4096);
    let err = SharedList::<String>::open(name.name()).expect_err("truncated list opened");
    assert!(
        matches!(
            err,
            Error::Open(OpenError::Truncated {
                file_size: 4096,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn another_layout_version_is_refused() {
    let name = Removal::fresh("version");
    drop(SharedList::<u8>::create(name.name()).expect("create"));
    name.file().write(8, &99u32.to_le_bytes());
    let err = Segment::open_any(name.name()).expect_err("future version opened");
    assert!(
        matches!(
            err,
            Error::Open(OpenError::VersionMismatch { found: 99, .. })
        ),
        "{err:?}"
    );
}

#[test]
fn a_header_whose_sizes_point_outside_the_file_is_refused() {
    let name = Removal::fresh("sizes");
    drop(SharedList::<u8>::create(name.name()).expect("create"));
    let file = name.file();
    // The committed size (offset 32) claims 1 GiB: more than the file holds.
    file.write_u64(32, 1 << 30);
    let err = Segment::open_any(name.name()).expect_err("oversized header opened");
    assert!(
        matches!(err, Error::Open(OpenError::Truncated { .. })),
        "{err:?}"
    );
    // A size that is not a page multiple is damage, not truncation.
    file.write_u64(32, 12_345);
    let err = Segment::open_any(name.name()).expect_err("odd size opened");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

#[test]
fn a_list_opened_as_a_lock_is_the_wrong_kind() {
    let name = Removal::fresh("kind");
    let _list = SharedList::<String>::create(name.name()).expect("create");
    let err = memspace::Lock::open(name.name()).expect_err("list opened as a lock");
    assert!(
        matches!(err, Error::Open(OpenError::WrongKind { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("`{}` holds a list, not a lock", name.name())
    );
}

#[test]
fn a_list_of_strings_read_as_numbers_names_the_index() {
    let name = Removal::fresh("type");
    let strings = SharedList::<String>::create(name.name()).expect("create");
    strings.push(&"seven".to_owned()).expect("push");
    let numbers = SharedList::<u64>::open(name.name()).expect("same kind: opens");
    let err = numbers.get(0).expect_err("a string decoded as u64");
    assert!(
        matches!(
            err,
            Error::Decode {
                index: 0,
                expected: "u64",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("item 0"), "{err}");
}

#[test]
fn a_mutex_opened_with_another_size_of_value_is_a_type_mismatch() {
    let name = Removal::fresh("mutex-type");
    let _value = memspace::Mutex::create(name.name(), 7u32).expect("create");
    let err = memspace::Mutex::<u64>::open(name.name()).expect_err("u32 opened as u64");
    assert!(
        matches!(
            err,
            Error::Open(OpenError::TypeMismatch { found_size: 4, .. })
        ),
        "{err:?}"
    );
}

#[test]
fn a_damaged_item_fails_its_checksum_instead_of_decoding_wrongly() {
    let name = Removal::fresh("checksum");
    let list = SharedList::<String>::create(name.name()).expect("create");
    list.push(&"abcdefgh".to_owned()).expect("push");
    // Find the payload in the file and change one letter.
    let file = name.file();
    let at = file.find(b"abcdefgh").expect("payload in file");
    file.write(at, b"X");
    let err = list.get(0).expect_err("damaged item read");
    assert!(
        matches!(&err, Error::Corrupt { what, .. } if what.contains("checksum")),
        "{err:?}"
    );
    let report = inspect::verify(list.segment().expect("in shared memory"));
    assert!(!report.is_consistent());
    assert!(report.problems[0].contains("item 0"), "{report:?}");
}

#[test]
fn strings_with_nul_bytes_and_multibyte_text_round_trip_exactly() {
    let name = Removal::fresh("strings");
    let list = SharedList::<String>::create(name.name()).expect("create");
    let values = [
        "encodés",
        "trailing\0",
        "\0",
        "",
        "日本語テキスト",
        &"x".repeat(100_000),
    ]
    .map(String::from);
    list.extend(&values).expect("push");
    assert_eq!(list.to_vec().expect("read"), values);
}

#[test]
fn a_full_segment_refuses_the_push_and_stays_usable() {
    let name = Removal::fresh("full");
    let options = SegmentOptions::new().initial_size(0).max_size(64 << 10);
    let list = SharedList::<String>::create_with(name.name(), &options).expect("create");
    let item = "y".repeat(1000);
    let mut pushed = 0;
    let err = loop {
        match list.push(&item) {
            Ok(()) => pushed += 1,
            Err(err) => break err,
        }
        assert!(pushed < 1000, "a 64 KiB list took {pushed} KiB");
    };
    assert!(matches!(err, Error::Full { .. }), "{err:?}");
    assert!(err.to_string().contains("max_size"), "{err}");
    assert_eq!(
        list.len().expect("len"),
        pushed,
        "the refused push appended nothing"
    );
    assert!(inspect::verify(list.segment().expect("in shared memory")).is_consistent());
    assert_eq!(list.get(0).expect("read"), Some(item));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_bytes_never_panic_or_crash(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
        let name = Removal::fresh("random");
        names::write_file(&name.path(), &bytes);
        poke(name.name());
    }

    #[test]
    fn a_valid_header_over_random_bytes_never_panics_or_crashes(
        tail in proptest::collection::vec(any::<u8>(), 0..12_000),
        len in any::<u64>(),
    ) {
        let name = Removal::fresh("header-over-random");
        drop(SharedList::<u8>::create(name.name()).expect("create"));
        let mut bytes = name.file().bytes();
        // Keep the header (and the lock), replace everything after it, including the list's
        // control words, with random bytes.
        bytes.truncate(256);
        bytes.extend_from_slice(&tail);
        bytes.resize(bytes.len().max(64 << 10), 0);
        names::write_file(&name.path(), &bytes);
        name.file().write_u64(2304, len);
        poke(name.name());
    }

    #[test]
    fn random_damage_to_a_valid_list_never_panics_or_crashes(
        flips in proptest::collection::vec((0usize..70_000, any::<u8>()), 1..40),
    ) {
        let name = Removal::fresh("damaged");
        let list = SharedList::<(u32, String)>::create(name.name()).expect("create");
        for i in 0..600u32 {
            list.push(&(i, "z".repeat((i % 50) as usize))).expect("push");
        }
        drop(list);
        let mut bytes = name.file().bytes();
        for (at, value) in flips {
            let at = at % bytes.len();
            // Leave the lock slot alone: inspection never locks, so keep the damage to what a
            // reader follows (robust.rs damages the lock slot itself).
            if !(128..192).contains(&at) {
                bytes[at] = value;
            }
        }
        names::write_file(&name.path(), &bytes);
        poke(name.name());
    }
}
