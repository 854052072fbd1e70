//! Segments as untrusted input and as resources: garbage, empty, truncated, other-version and
//! other-kind segments give the right `OpenError` naming the segment (never a panic); damaged
//! list data gives `Error::Corrupt`; invalid names are refused; `create` twice, missing names;
//! who removes anonymous and named segments.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::time::Duration;

use memspace::segment::Kind;
use memspace::spawn::Process;
use memspace::sync::{Lock, Mutex};
use memspace::{Error, OpenError, Segment, SegmentOptions, SharedList, inspect};
use memspace_testkit::names::{shm_exists, shm_path};
use memspace_testkit::{Parent, Removal, Rng, Running, Watchdog, flags, names, roles, unique_name};

/// The `OpenError` inside `err`.
fn open_error(err: Error) -> OpenError {
    match err {
        Error::Open(err) => err,
        other => panic!("expected an OpenError, got {other:?}"),
    }
}

/// Opens `name` in every way there is; returns each way's error (or `None` if it opened).
fn open_every_way(name: &str) -> Vec<(&'static str, Option<Error>)> {
    vec![
        ("Segment::open_any", Segment::open_any(name).err()),
        ("inspect::observe", inspect::observe(name).err()),
        ("SharedList::open", SharedList::<u64>::open(name).err()),
        ("Lock::open", Lock::open(name).err()),
        ("Mutex::open", Mutex::<u64>::open(name).err()),
    ]
}

/// Asserts that every way of opening `name` fails with an error that `expected` accepts and
/// whose message names the segment.
fn assert_every_open_fails(name: &str, what: &str, expected: impl Fn(&Error) -> bool) {
    for (way, err) in open_every_way(name) {
        let err = err.unwrap_or_else(|| panic!("{what}: {way} opened it"));
        assert!(expected(&err), "{what}: {way} gave {err:?}");
        let message = err.to_string();
        assert!(
            message.contains(name),
            "{what}: {way}'s message does not name the segment: {message}"
        );
    }
}

/// The layout version of this build (`src/segment/header.rs`).
const LAYOUT_VERSION: u32 = 11;

/// A header that passes validation, for a segment of `file_size` bytes (see
/// `src/segment/header.rs` for the layout).
fn valid_header(kind: u32, size: u64) -> Vec<u8> {
    let mut header = vec![0u8; 8192];
    header[0..8].copy_from_slice(b"MEMSPACE");
    header[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&kind.to_le_bytes());
    header[16..20].copy_from_slice(&2u32.to_le_bytes()); // ready
    header[20..24].copy_from_slice(&8192u32.to_le_bytes()); // control pages
    header[24..32].copy_from_slice(&(1u64 << 30).to_le_bytes()); // max size
    header[32..40].copy_from_slice(&size.to_le_bytes());
    header
}

// ---------------------------------------------------------------------------------------------
// Bad content

#[test]
fn random_bytes_are_not_a_memspace_segment() {
    let mut rng = Rng::from_env();
    for len in [1, 7, 100, 127, 128, 4096, 65536, 1 << 20] {
        let removal = Removal::fresh("garbage");
        let mut bytes = rng.bytes(len);
        bytes[0] |= 1; // not all zero, which would mean "not initialised yet"
        names::write_segment_file(removal.name(), &bytes);
        assert_every_open_fails(removal.name(), &format!("{len} random bytes"), |err| {
            matches!(err, Error::Open(OpenError::Foreign { .. }))
        });
        assert!(shm_exists(removal.name()), "a foreign object is left alone");
    }
}

#[test]
fn an_empty_segment_is_one_its_creator_has_not_initialised() {
    // A zero-length file (its creator has not sized it yet) and an all-zero page (not written
    // yet): opening waits a moment for the creator, then says so. (Both at once: each wait
    // takes two seconds.)
    let cases = [("zero bytes", vec![]), ("a zero page", vec![0u8; 4096])].map(|(what, bytes)| {
        std::thread::spawn(move || {
            let removal = Removal::fresh("empty");
            names::write_segment_file(removal.name(), &bytes);
            let err = open_error(SharedList::<u64>::open(removal.name()).expect_err(what));
            assert!(
                matches!(err, OpenError::NotInitialized { .. }),
                "{what}: {err:?}"
            );
            assert!(err.to_string().contains(removal.name()), "{err}");
            assert!(shm_exists(removal.name()), "{what}: left alone");
        })
    });
    for case in cases {
        case.join().expect("a case");
    }
}

#[test]
fn headers_with_bad_fields_are_reported_not_trusted() {
    type Case = (&'static str, fn(&mut Vec<u8>), fn(&Error) -> bool);
    let cases: [Case; 7] = [
        (
            "another layout version",
            |h| h[8..12].copy_from_slice(&99u32.to_le_bytes()),
            |e| {
                matches!(
                    e,
                    Error::Open(OpenError::VersionMismatch {
                        found: 99,
                        expected: LAYOUT_VERSION,
                        ..
                    })
                )
            },
        ),
        (
            "an unknown kind",
            |h| h[12..16].copy_from_slice(&77u32.to_le_bytes()),
            |e| matches!(e, Error::Corrupt { what, .. } if what.contains("77")),
        ),
        (
            "an unknown state",
            |h| h[16..20].copy_from_slice(&9u32.to_le_bytes()),
            |e| matches!(e, Error::Corrupt { .. }),
        ),
        (
            "another control page size",
            |h| h[20..24].copy_from_slice(&512u32.to_le_bytes()),
            |e| matches!(e, Error::Corrupt { .. }),
        ),
        (
            "a size that is no page multiple",
            |h| h[32..40].copy_from_slice(&5000u64.to_le_bytes()),
            |e| matches!(e, Error::Corrupt { .. }),
        ),
        (
            "a size past the maximum",
            |h| h[32..40].copy_from_slice(&(1u64 << 31).to_le_bytes()),
            |e| matches!(e, Error::Corrupt { .. }),
        ),
        (
            "a maximum of 2^64 - 1",
            |h| h[24..32].copy_from_slice(&u64::MAX.to_le_bytes()),
            |e| matches!(e, Error::Corrupt { .. }),
        ),
    ];
    for (what, damage, expected) in cases {
        let removal = Removal::fresh("header");
        let mut header = valid_header(3, 12288);
        damage(&mut header);
        header.resize(12288, 0);
        names::write_segment_file(removal.name(), &header);
        assert_every_open_fails(removal.name(), what, expected);
    }
    // The same header undamaged opens: the cases above fail for their one damage.
    let removal = Removal::fresh("header");
    let mut header = valid_header(3, 12288);
    header.resize(12288, 0);
    names::write_segment_file(removal.name(), &header);
    let list = SharedList::<u64>::open(removal.name()).expect("an undamaged header opens");
    assert_eq!(list.len().expect("len"), 0);
}

#[test]
fn a_real_segment_rewritten_with_another_layout_version_is_a_version_mismatch() {
    let removal = Removal::fresh("version");
    drop(Lock::create(removal.name()).expect("create a lock"));
    removal.file().write(8, &1u32.to_le_bytes());
    assert_every_open_fails(removal.name(), "layout v1", |err| {
        matches!(
            err,
            Error::Open(OpenError::VersionMismatch {
                found: 1,
                expected: LAYOUT_VERSION,
                ..
            })
        )
    });
    let message = Lock::open(removal.name())
        .expect_err("another version")
        .to_string();
    assert!(message.contains(&format!("v{LAYOUT_VERSION}")), "{message}");
}

#[test]
fn a_truncated_list_segment_is_reported_as_truncated() {
    let removal = Removal::fresh("truncated");
    let size = {
        let list = SharedList::<String>::create(removal.name()).expect("create a list");
        for i in 0..20 {
            list.push(&format!("{i}").repeat(20_000)).expect("push");
        }
        list.segment().expect("in shared memory").size()
    };
    assert!(size >= 512 << 10, "the list grew to {size} bytes");
    let file = removal.file();
    for (short, expected) in [
        (size / 2, size),
        (size - 4096, size),
        (8192, size),
        (64, 8192),
    ] {
        file.set_len(short);
        assert_every_open_fails(removal.name(), &format!("{short} bytes"), |err| {
            matches!(
                err,
                Error::Open(OpenError::Truncated { file_size, expected: needed, .. })
                    if *file_size == short && *needed == expected
            )
        });
    }
}

#[test]
fn a_segment_opened_as_another_kind_is_the_wrong_kind() {
    let list_name = Removal::fresh("kind-list");
    let lock_name = Removal::fresh("kind-lock");
    let mutex_name = Removal::fresh("kind-mutex");
    let list = SharedList::<u64>::create(list_name.name()).expect("create a list");
    let _lock = Lock::create(lock_name.name()).expect("create a lock");
    let _mutex = Mutex::create(mutex_name.name(), 7u64).expect("create a mutex");

    let err = open_error(Lock::open(list_name.name()).expect_err("a list is no lock"));
    assert!(
        matches!(
            err,
            OpenError::WrongKind {
                found: Kind::List,
                expected: Kind::Lock,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(list_name.name()) && message.contains("list") && message.contains("lock"),
        "{message}"
    );
    let err = open_error(Mutex::<u64>::open(list_name.name()).expect_err("a list is no mutex"));
    assert!(matches!(
        err,
        OpenError::WrongKind {
            found: Kind::List,
            expected: Kind::Mutex,
            ..
        }
    ));
    let err = open_error(SharedList::<u64>::open(lock_name.name()).expect_err("a lock is no list"));
    assert!(matches!(
        err,
        OpenError::WrongKind {
            found: Kind::Lock,
            expected: Kind::List,
            ..
        }
    ));
    let err = open_error(Lock::open(mutex_name.name()).expect_err("a mutex is no lock"));
    assert!(matches!(
        err,
        OpenError::WrongKind {
            found: Kind::Mutex,
            expected: Kind::Lock,
            ..
        }
    ));
    // The right kind with a value of another size.
    let err = open_error(Mutex::<u32>::open(mutex_name.name()).expect_err("u64 is no u32"));
    assert!(
        matches!(
            err,
            OpenError::TypeMismatch {
                found_size: 8,
                expected_size: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(mutex_name.name()));
    // Nothing was disturbed; any kind opens as a segment.
    list.push(&1).expect("push");
    let segment = Segment::open_any(list_name.name()).expect("open_any");
    assert_eq!(segment.kind(), Kind::List);
    assert_eq!(segment.creator_pid(), std::process::id());
    assert!(!segment.is_anonymous());
    assert_eq!(
        Segment::open_any(lock_name.name())
            .expect("open_any")
            .kind(),
        Kind::Lock
    );
}

/// Offsets in the list's control words (`src/collections/list.rs`, `src/segment/header.rs`):
/// the kind area starts at 2304 with `len`, `tail` and 40 index-block offsets; the first index
/// block (512 entries) starts at 8192, after the two control pages, and the first record right
/// after it, at 12288.
const LIST_LEN: u64 = 2304;
const LIST_BLOCK_1: u64 = 2304 + 16 + 8;
const FIRST_ENTRY: u64 = 8192;
const FIRST_PAYLOAD: u64 = 12288 + 8;

/// Where a segment keeps its item type's name (`src/segment/header.rs`): a length, 4 bytes of
/// padding, then up to 4088 bytes of UTF-8, in the second control page.
const TYPE_NAME: u64 = 4096;

#[test]
fn a_long_type_name_is_recorded_whole_and_a_hostile_one_is_clamped() {
    type Long = Vec<Option<(String, std::collections::BTreeMap<u64, Vec<Option<String>>>)>>;
    let removal = Removal::fresh("type-name");
    let list = SharedList::<Long>::create(removal.name()).expect("create");
    let whole = std::any::type_name::<Long>();
    assert!(whole.len() > 100, "{whole}");
    let opened = Segment::open_any(removal.name()).expect("open");
    assert_eq!(opened.type_name(), whole);
    assert_eq!(list.recorded_type_name(), whole);
    drop((list, opened));

    // A length past the page, and bytes that are not UTF-8: read as far as the page goes, with
    // replacement characters, never past it.
    let file = removal.file();
    file.write(TYPE_NAME, &u32::MAX.to_le_bytes());
    file.write(TYPE_NAME + 8, &[0xff; 16]);
    let name = Segment::open_any(removal.name())
        .expect("open")
        .type_name()
        .to_owned();
    assert_eq!(
        name.len(),
        4088 - 16 + 16 * '\u{fffd}'.len_utf8(),
        "{name:.80}"
    );
    assert!(name.starts_with('\u{fffd}'), "{name:.80}");
}

#[test]
fn damaged_list_data_is_an_error_naming_the_list_never_a_wrong_value_or_a_crash() {
    type Damage = (&'static str, u64, Vec<u8>, u64);
    let cases: [Damage; 4] = [
        // what, where, what is written, which item to read
        ("a flipped payload byte", FIRST_PAYLOAD, vec![0xff], 0),
        (
            "an index entry past the end",
            FIRST_ENTRY,
            (1u64 << 40).to_le_bytes().to_vec(),
            0,
        ),
        (
            "an index entry of 0",
            FIRST_ENTRY + 8,
            0u64.to_le_bytes().to_vec(),
            1,
        ),
        // A length claiming items in a second index block that was never made.
        (
            "a length past the items",
            LIST_LEN,
            100_000u64.to_le_bytes().to_vec(),
            600,
        ),
    ];
    for (what, offset, bytes, index) in cases {
        let removal = Removal::fresh("damaged");
        let list = SharedList::<String>::create(removal.name()).expect("create a list");
        list.extend(["first", "second", "third"].map(str::to_owned))
            .expect("extend");
        removal.file().write(offset, &bytes);
        for reader in [
            list.clone(),
            SharedList::<String>::open(removal.name()).expect("open the damaged list"),
        ] {
            match reader.get(index) {
                Err(Error::Corrupt { name, what: found }) => {
                    assert_eq!(name.as_str(), removal.name(), "{what}: {found}");
                }
                other => panic!("{what}: item {index} gave {other:?}"),
            }
            assert!(
                matches!(reader.to_vec(), Err(Error::Corrupt { .. })),
                "{what}: to_vec"
            );
        }
        let report = inspect::verify(list.segment().expect("in shared memory"));
        assert!(!report.is_consistent(), "{what}: verify finds it");
    }
    // Sanity: the offsets above are where the list keeps what they claim.
    let removal = Removal::fresh("layout");
    let list = SharedList::<String>::create(removal.name()).expect("create a list");
    list.push(&"x".to_owned()).expect("push");
    let file = removal.file();
    assert_eq!(file.read_u64(LIST_LEN), 1, "len");
    assert_eq!(
        file.read_u64(FIRST_ENTRY),
        FIRST_PAYLOAD - 8,
        "the first entry"
    );
    assert_eq!(file.read_u64(LIST_BLOCK_1), 0, "no second index block yet");
}

#[test]
fn headers_of_random_plausible_fields_open_or_fail_without_panicking() {
    let mut rng = Rng::from_env();
    let page = 4096u64;
    let mut opened = 0;
    for round in 0..300 {
        let removal = Removal::fresh("fuzz");
        let file_size = [1, 2, 3, 16][rng.below(4) as usize] * page;
        let pick = |rng: &mut Rng| match rng.below(6) {
            0 => 0,
            1 => page,
            2 => 2 * page,
            3 => file_size,
            4 => 1 << 30,
            _ => rng.next_u64(),
        };
        let size = pick(&mut rng);
        let max = pick(&mut rng);
        let mut bytes = rng.bytes(file_size as usize);
        let header = valid_header(rng.below(14) as u32, size);
        bytes[..40].copy_from_slice(&header[..40]);
        bytes[24..32].copy_from_slice(&max.to_le_bytes());
        if rng.below(2) == 0 {
            // A zeroed lock slot, users table and boot id half the time.
            bytes[128..2304].fill(0);
        }
        names::write_segment_file(removal.name(), &bytes);
        let Ok(segment) = inspect::observe(removal.name()) else {
            continue;
        };
        opened += 1;
        // Opened: reading it as a list must give items or errors, never a crash. (No lock is
        // taken: a garbage mutex may look held forever.)
        if segment.kind() == Kind::List {
            let list = SharedList::<String>::from_segment(segment).expect("a list segment");
            for index in [0, 1, 511, 512, list.len().expect("len").saturating_sub(1)] {
                let _ = list.get(index);
            }
            let _ = list.to_vec();
            let _ = inspect::verify(list.segment().expect("in shared memory"));
        }
        let _ = round;
    }
    eprintln!("{opened} of 300 random headers opened");
}

// ---------------------------------------------------------------------------------------------
// Names

#[test]
fn invalid_names_are_refused_by_every_constructor() {
    let too_long = "x".repeat(201);
    for bad in [
        "a/b",
        "..",
        "",
        too_long.as_str(),
        "a\0b",
        ".hidden",
        "spa ce",
        "file:",
    ] {
        let refusals: Vec<(&str, Option<OpenError>)> = vec![
            (
                "SharedList::create",
                SharedList::<u64>::create(bad).err().map(open_error),
            ),
            (
                "SharedList::open",
                SharedList::<u64>::open(bad).err().map(open_error),
            ),
            ("Lock::create", Lock::create(bad).err().map(open_error)),
            ("Lock::open", Lock::open(bad).err().map(open_error)),
            (
                "Mutex::create",
                Mutex::create(bad, 0u64).err().map(open_error),
            ),
            (
                "Segment::open_any",
                Segment::open_any(bad).err().map(open_error),
            ),
            (
                "Segment::remove",
                Segment::remove(bad).err().map(open_error),
            ),
        ];
        for (way, err) in refusals {
            match err {
                Some(OpenError::InvalidName { name, reason }) => {
                    assert_eq!(name, bad, "{way}");
                    assert!(!reason.is_empty());
                }
                other => panic!("{way}({bad:?}): expected InvalidName, got {other:?}"),
            }
        }
        assert!(
            !shm_path(bad).exists() || bad.is_empty() || bad == "..",
            "{bad:?}: nothing was created"
        );
    }
    assert!(!std::path::Path::new("/dev/shm/memspace.a").exists());
    // 200 bytes is the longest valid name.
    let mut longest = unique_name("long");
    longest.push('.');
    while longest.len() < 200 {
        longest.push('x');
    }
    let removal = Removal::of(&longest);
    let lock = Lock::create(removal.name()).expect("a 200-byte name is valid");
    assert!(shm_exists(&longest));
    drop(lock);
    Segment::remove(&longest).expect("remove it");
    assert!(!shm_exists(&longest));
}

#[test]
fn creating_a_name_twice_is_already_exists_and_leaves_the_first_alone() {
    let removal = Removal::fresh("twice");
    let list = SharedList::<u64>::create(removal.name()).expect("create a list");
    list.push(&42).expect("push");
    let attempts = [
        (
            "SharedList::create",
            SharedList::<u64>::create(removal.name()).err(),
        ),
        ("Lock::create", Lock::create(removal.name()).err()),
        ("Mutex::create", Mutex::create(removal.name(), 1u64).err()),
    ];
    for (way, err) in attempts {
        let err = open_error(err.unwrap_or_else(|| panic!("{way} created it again")));
        assert!(
            matches!(err, OpenError::AlreadyExists { .. }),
            "{way}: {err:?}"
        );
        assert!(err.to_string().contains(removal.name()), "{err}");
    }
    assert_eq!(list.to_vec().expect("read"), [42]);
    let reopened = SharedList::<u64>::open(removal.name()).expect("open");
    assert_eq!(reopened.to_vec().expect("read"), [42]);
}

#[test]
fn opening_or_removing_a_missing_name_is_not_found() {
    let missing = unique_name("missing");
    assert_every_open_fails(&missing, "a missing segment", |err| {
        matches!(err, Error::Open(OpenError::NotFound { .. }))
    });
    match Segment::remove(&missing) {
        Err(Error::Open(OpenError::NotFound { name })) => assert_eq!(name.as_str(), missing),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!shm_exists(&missing), "looking created nothing");
}

// ---------------------------------------------------------------------------------------------
// Who removes a segment

#[test]
fn an_anonymous_segment_is_removed_when_its_creator_drops_its_last_handle() {
    let list = SharedList::<u64>::new().expect("create a list");
    let lock = Lock::new().expect("create a lock");
    let mutex = Mutex::new(1u64).expect("create a mutex");
    let names: Vec<String> = vec![
        list.name().to_string(),
        lock.name().to_string(),
        mutex.name().to_string(),
    ];
    let _removals: Vec<Removal> = names.iter().map(Removal::of).collect();
    assert!(names.iter().all(|name| shm_exists(name)));
    assert!(
        list.segment().expect("in shared memory").is_anonymous()
            && lock.segment().expect("in shared memory").is_anonymous()
    );
    let (list2, lock2, mutex2) = (list.clone(), lock.clone(), mutex.clone());
    drop((list, lock, mutex));
    assert!(
        names.iter().all(|name| shm_exists(name)),
        "a clone keeps them"
    );
    list2.push(&1).expect("the clone works");
    drop((list2, lock2, mutex2));
    for name in &names {
        assert!(!shm_exists(name), "{name} removed with its last handle");
    }
}

/// Drops the handle it was given, then says whether the segment still exists (before, after).
fn drop_handle_and_look(list: SharedList<i64>) -> (bool, bool) {
    let name = list.name().to_string();
    list.push(&7).expect("push");
    let before = shm_exists(&name);
    drop(list);
    (before, shm_exists(&name))
}

/// The test's only handle to a list, where a forked child finds its copy.
static INHERITED: std::sync::Mutex<Option<SharedList<i64>>> = std::sync::Mutex::new(None);

/// In a forked child: takes the handle inherited through [`INHERITED`] and drops it. It is the
/// only reference to its segment in the child, so the segment's `Drop` runs there, on the
/// parent's slot in the table of users.
fn drop_the_inherited_handle((): ()) -> (bool, bool) {
    let list = INHERITED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .expect("the handle inherited from the test");
    drop_handle_and_look(list)
}

#[test]
fn an_anonymous_segment_survives_a_forked_child_dropping_its_copy() {
    let _dog = Watchdog::start();
    let list = SharedList::<i64>::new().expect("create a list");
    let name = list.name().to_string();
    let _removal = Removal::of(&name);
    assert_eq!(
        list.segment().expect("in shared memory").users().len(),
        1,
        "one slot: the test's"
    );
    *INHERITED.lock().expect("the static") = Some(list);
    let mut child = Running::start(Process::new(drop_the_inherited_handle, ()));
    assert_eq!(child.join().expect("the child"), (true, true));
    assert!(shm_exists(&name), "the child's drop removed nothing");
    let list = INHERITED
        .lock()
        .expect("the static")
        .take()
        .expect("the test's handle");
    assert_eq!(
        list.segment().expect("in shared memory").users().len(),
        1,
        "the test's slot is still there"
    );
    assert_eq!(list.to_vec().expect("read"), [7]);
    list.push(&8).expect("still usable");
    drop(list);
    assert!(!shm_exists(&name), "the creator's last handle removes it");
}

#[test]
fn an_anonymous_segment_survives_a_spawned_child_attaching_and_detaching() {
    let _dog = memspace_testkit::start_test();
    let list = SharedList::<i64>::new().expect("create a list");
    let name = list.name().to_string();
    let _removal = Removal::of(&name);
    let mut child = Running::spawn(drop_handle_and_look, list.clone());
    assert_eq!(child.join().expect("the child"), (true, true));
    assert_eq!(list.to_vec().expect("read"), [7]);
    drop(list);
    assert!(!shm_exists(&name));
}

/// What a spawned user of a list gets: the list, its flag, and the test's pid.
type User = (SharedList<i64>, Mutex<u32>, u32);

/// Starts `user` in a spawned child on `list`; returns once it said (`flag` at 1) it attached.
fn start_user<R>(user: fn(User) -> R, list: &SharedList<i64>, flag: &Mutex<u32>) -> Running<User, R>
where
    R: serde::Serialize + serde::de::DeserializeOwned,
{
    let child = Running::spawn(user, (list.clone(), flag.clone(), std::process::id()));
    flags::wait_for_flag(flag, 1, child.pid());
    child
}

/// Attaches, says so, waits until the test dropped its handle, then drops its own; returns
/// whether the segment existed before and after that.
fn outlive_the_creator((list, flag, parent): User) -> (bool, bool) {
    flags::set_flag(&flag, 1);
    flags::child_wait_for_flag(&flag, 2, parent);
    drop_handle_and_look(list)
}

#[test]
fn the_last_user_of_an_anonymous_segment_removes_it_even_if_it_did_not_create_it() {
    let _dog = memspace_testkit::start_test();
    let flag = flags::new_flag();
    let list = SharedList::<i64>::new().expect("create a list");
    let name = list.name().to_string();
    let _removal = Removal::of(&name);
    let mut child = start_user(outlive_the_creator, &list, &flag);
    drop(list);
    assert!(shm_exists(&name), "an attached child keeps it");
    flags::set_flag(&flag, 2);
    assert_eq!(child.join().expect("the child"), (true, false));
    assert!(!shm_exists(&name));
}

fn attach_and_park((list, flag, parent): User) {
    list.push(&1).expect("push");
    flags::set_flag(&flag, 1);
    Parent::from(parent).park_until_killed()
}

#[test]
fn a_killed_user_does_not_keep_an_anonymous_segment_alive() {
    let _dog = memspace_testkit::start_test();
    let flag = flags::new_flag();
    let list = SharedList::<i64>::new().expect("create a list");
    let name = list.name().to_string();
    let _removal = Removal::of(&name);
    let mut child = start_user(attach_and_park, &list, &flag);
    assert_eq!(
        list.segment()
            .expect("in shared memory")
            .users()
            .iter()
            .filter(|u| u.alive)
            .count(),
        2
    );
    child.kill();
    assert!(child.join().is_err(), "killed");
    drop(list);
    assert!(!shm_exists(&name), "a dead user's slot does not keep it");
}

#[test]
fn a_named_segment_persists_after_its_handles_drop_until_removed() {
    let removal = Removal::fresh("named");
    let list = SharedList::<u64>::create(removal.name()).expect("create a list");
    list.extend([1, 2, 3]).expect("extend");
    assert!(!list.segment().expect("in shared memory").is_anonymous());
    drop(list);
    assert!(
        shm_exists(removal.name()),
        "a named segment outlives its handles"
    );
    let reopened = SharedList::<u64>::open(removal.name()).expect("open");
    assert_eq!(reopened.to_vec().expect("read"), [1, 2, 3]);
    // `unlink` removes the name; handles keep working on the memory.
    reopened.unlink().expect("unlink");
    assert!(!shm_exists(removal.name()));
    reopened.push(&4).expect("push after unlink");
    assert_eq!(reopened.to_vec().expect("read"), [1, 2, 3, 4]);
    assert!(matches!(
        reopened.unlink().map_err(open_error),
        Err(OpenError::NotFound { .. })
    ));
    drop(reopened);
    // Created again, it persists until `Segment::remove`.
    drop(Lock::create(removal.name()).expect("create a lock"));
    assert!(shm_exists(removal.name()));
    Segment::remove(removal.name()).expect("remove");
    assert!(!shm_exists(removal.name()));
    assert!(matches!(
        Lock::open(removal.name()).map_err(open_error),
        Err(OpenError::NotFound { .. })
    ));
    assert!(matches!(
        Segment::remove(removal.name()),
        Err(Error::Open(OpenError::NotFound { .. }))
    ));
}

#[test]
fn a_write_with_a_lock_timeout_gives_up_while_a_live_process_holds_the_lock() {
    if let Some(role) = roles::role() {
        assert_eq!(role, "holder");
        let list = SharedList::<u64>::open(&roles::role_segment()).expect("open the list");
        // Stops at the failpoint, holding the lock, until the test resumes it.
        list.push(&1).expect("push");
        return;
    }
    let _dog = Watchdog::start();
    let name = Removal::fresh("lock-timeout");
    let patient = SegmentOptions::new().lock_timeout(Duration::from_millis(30));
    let list = SharedList::<u64>::create_with(name.name(), &patient).expect("create the list");
    let opened = SharedList::<u64>::open_with(name.name(), &patient).expect("open the list");
    let mut holder = roles::child_in_role(
        "holder",
        &[
            (roles::SEGMENT, name.name()),
            ("MEMSPACE_FAILPOINT", "list.written"),
        ],
    );
    holder.wait_until_stopped("list.written");
    // The holder is alive (stopped): without the option these pushes would wait for it.
    for (how, handle) in [
        ("created", &list),
        ("opened", &opened),
        ("cloned", &list.clone()),
    ] {
        let err = handle.push(&2).expect_err("the lock is held");
        assert!(
            matches!(err, Error::Timeout { waited, .. } if waited >= Duration::from_millis(30)),
            "{how}: {err:?}"
        );
        assert!(err.to_string().contains(name.name()), "{how}: {err}");
    }
    assert_eq!(list.to_vec().expect("read without the lock"), [0u64; 0]);
    holder.resume();
    assert!(holder.wait().success(), "the holder finished its push");
    list.push(&2).expect("push once the lock is free");
    assert_eq!(list.to_vec().expect("read"), [1, 2]);
}
