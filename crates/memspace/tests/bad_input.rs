//! Segments written by anything else: garbage, truncated, damaged, of another kind or type.
//! Opening, inspecting, verifying and reading them must give errors, never a panic, a crash
//! (SIGSEGV, SIGBUS) or a hang. The property tests stand in for a fuzzer (cargo-fuzz needs a
//! nightly toolchain): random bytes, and valid segments with random bytes overwritten.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU32, Ordering};

use memspace::inspect;
use memspace::{Error, OpenError, Segment, SegmentOptions, SharedList};
use proptest::prelude::*;
use serde_json::Value;

/// A unique segment name, removed on drop.
struct Name(String);

impl Name {
    fn new(test: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        Name(format!(
            "bad-input.{}.{test}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn path(&self) -> String {
        format!("/dev/shm/memspace.{}", self.0)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        // `Segment::remove` refuses garbage that is no segment: the test removes what it wrote.
        if Segment::remove(&self.0).is_err() {
            let _ = std::fs::remove_file(self.path());
        }
    }
}

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

/// Writes `bytes` as a segment's file, with a segment's mode (a wider one is refused before
/// the content is looked at).
fn write_file(path: &str, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create segment file");
    file.write_all(bytes).expect("write segment file");
}

#[test]
fn garbage_is_refused_as_foreign_naming_the_segment() {
    let name = Name::new("garbage");
    write_file(&name.path(), &[0xA5; 8192]);
    let err = Segment::open_any(&name.0).expect_err("garbage opened");
    assert!(
        matches!(err, Error::Open(OpenError::Foreign { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains(&name.0), "{err}");
    let err = SharedList::<u64>::open(&name.0).expect_err("garbage opened as a list");
    assert!(
        matches!(err, Error::Open(OpenError::Foreign { .. })),
        "{err:?}"
    );
}

#[test]
fn an_empty_file_is_not_initialised() {
    let name = Name::new("empty");
    write_file(&name.path(), &[]);
    let err = Segment::open_any(&name.0).expect_err("empty file opened");
    assert!(
        matches!(err, Error::Open(OpenError::NotInitialized { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("memspace rm"), "{err}");
}

#[test]
fn a_truncated_list_is_refused() {
    let name = Name::new("truncated");
    let list = SharedList::<String>::create(&name.0).expect("create");
    list.extend(["a", "b"].map(String::from)).expect("push");
    drop(list);
    OpenOptions::new()
        .write(true)
        .open(name.path())
        .and_then(|f| f.set_len(4096))
        .expect("truncate");
    let err = SharedList::<String>::open(&name.0).expect_err("truncated list opened");
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
    let name = Name::new("version");
    drop(SharedList::<u8>::create(&name.0).expect("create"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.path())
        .expect("open");
    file.seek(SeekFrom::Start(8)).expect("seek");
    file.write_all(&99u32.to_le_bytes()).expect("write version");
    let err = Segment::open_any(&name.0).expect_err("future version opened");
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
    let name = Name::new("sizes");
    drop(SharedList::<u8>::create(&name.0).expect("create"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.path())
        .expect("open");
    // The committed size (offset 32) claims 1 GiB: more than the file holds.
    file.seek(SeekFrom::Start(32)).expect("seek");
    file.write_all(&(1u64 << 30).to_le_bytes())
        .expect("write size");
    let err = Segment::open_any(&name.0).expect_err("oversized header opened");
    assert!(
        matches!(err, Error::Open(OpenError::Truncated { .. })),
        "{err:?}"
    );
    // A size that is not a page multiple is damage, not truncation.
    file.seek(SeekFrom::Start(32)).expect("seek");
    file.write_all(&12_345u64.to_le_bytes())
        .expect("write size");
    let err = Segment::open_any(&name.0).expect_err("odd size opened");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

#[test]
fn a_list_opened_as_a_lock_is_the_wrong_kind() {
    let name = Name::new("kind");
    let _list = SharedList::<String>::create(&name.0).expect("create");
    let err = memspace::Lock::open(&name.0).expect_err("list opened as a lock");
    assert!(
        matches!(err, Error::Open(OpenError::WrongKind { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("`{}` holds a list, not a lock", name.0)
    );
}

#[test]
fn a_list_of_strings_read_as_numbers_names_the_index() {
    let name = Name::new("type");
    let strings = SharedList::<String>::create(&name.0).expect("create");
    strings.push(&"seven".to_owned()).expect("push");
    let numbers = SharedList::<u64>::open(&name.0).expect("same kind: opens");
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
    let name = Name::new("mutex-type");
    let _value = memspace::Mutex::create(&name.0, 7u32).expect("create");
    let err = memspace::Mutex::<u64>::open(&name.0).expect_err("u32 opened as u64");
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
    let name = Name::new("checksum");
    let list = SharedList::<String>::create(&name.0).expect("create");
    list.push(&"abcdefgh".to_owned()).expect("push");
    // Find the payload in the file and change one letter.
    let mut bytes = Vec::new();
    OpenOptions::new()
        .read(true)
        .open(name.path())
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .expect("read");
    let at = bytes
        .windows(8)
        .position(|w| w == b"abcdefgh")
        .expect("payload in file");
    let mut file = OpenOptions::new()
        .write(true)
        .open(name.path())
        .expect("open");
    file.seek(SeekFrom::Start(at as u64)).expect("seek");
    file.write_all(b"X").expect("write");
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
    let name = Name::new("strings");
    let list = SharedList::<String>::create(&name.0).expect("create");
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
    let name = Name::new("full");
    let options = SegmentOptions::new().initial_size(0).max_size(64 << 10);
    let list = SharedList::<String>::create_with(&name.0, &options).expect("create");
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
        let name = Name::new("random");
        write_file(&name.path(), &bytes);
        poke(&name.0);
    }

    #[test]
    fn a_valid_header_over_random_bytes_never_panics_or_crashes(
        tail in proptest::collection::vec(any::<u8>(), 0..12_000),
        len in any::<u64>(),
    ) {
        let name = Name::new("header-over-random");
        drop(SharedList::<u8>::create(&name.0).expect("create"));
        let mut bytes = Vec::new();
        OpenOptions::new()
            .read(true)
            .open(name.path())
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .expect("read");
        // Keep the header (and the lock), replace everything after it, including the list's
        // control words, with random bytes.
        bytes.truncate(256);
        bytes.extend_from_slice(&tail);
        bytes.resize(bytes.len().max(64 << 10), 0);
        write_file(&name.path(), &bytes);
        let mut file = OpenOptions::new().write(true).open(name.path()).expect("open");
        file.seek(SeekFrom::Start(2304)).expect("seek");
        file.write_all(&len.to_le_bytes()).expect("write len");
        poke(&name.0);
    }

    #[test]
    fn random_damage_to_a_valid_list_never_panics_or_crashes(
        flips in proptest::collection::vec((0usize..70_000, any::<u8>()), 1..40),
    ) {
        let name = Name::new("damaged");
        let list = SharedList::<(u32, String)>::create(&name.0).expect("create");
        for i in 0..600u32 {
            list.push(&(i, "z".repeat((i % 50) as usize))).expect("push");
        }
        drop(list);
        let mut bytes = Vec::new();
        OpenOptions::new()
            .read(true)
            .open(name.path())
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .expect("read");
        for (at, value) in flips {
            let at = at % bytes.len();
            // Leave the lock slot alone: inspection never locks, so keep the damage to what a
            // reader follows (robust.rs damages the lock slot itself).
            if !(128..192).contains(&at) {
                bytes[at] = value;
            }
        }
        write_file(&name.path(), &bytes);
        poke(&name.0);
    }
}
