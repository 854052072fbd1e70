//! Whose segments an open accepts, what `Segment::remove` removes, and a file shrunk under a
//! mapping: another user's segment and a wider mode than asked for are refused unless trusted
//! (and the trust travels to a spawned child); only memspace segments are removed, never
//! through a symbolic link; a peer's `ftruncate` is an error in this process, not `SIGBUS`.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::os::unix::fs::PermissionsExt;

use memspace::collections::{Queue, SharedMap, SharedVec};
use memspace::sync::{Event, Lock};
use memspace::{Error, OpenError, Segment, SegmentOptions, SharedList, inspect};
use memspace_testkit::names::{TempDir, shm_path};
use memspace_testkit::{Removal, Running, Watchdog, names, procfs};

fn open_error(result: memspace::Result<impl Sized>) -> OpenError {
    match result {
        Err(Error::Open(err)) => err,
        Err(other) => panic!("expected an OpenError, got {other:?}"),
        Ok(_) => panic!("expected an OpenError, the open succeeded"),
    }
}

#[test]
fn a_mode_wider_than_accepted_is_refused_and_the_creators_trust_travels_to_a_child() {
    let _dog = memspace_testkit::start_test();
    let removal = Removal::fresh("trust-mode");
    let group = SegmentOptions::new().mode(0o660);
    let list = SharedList::<u64>::create_with(removal.name(), &group).expect("create");
    list.push(&1).expect("push");

    let err = open_error(SharedList::<u64>::open(removal.name()));
    assert!(
        matches!(
            err,
            OpenError::UntrustedMode {
                mode: 0o660,
                accepted: 0o600,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(removal.name()) && message.contains("SegmentOptions::mode(0o660)"),
        "{message}"
    );
    let reopened =
        SharedList::<u64>::from_segment(group.open(removal.name()).expect("accepted mode"))
            .expect("a list");
    assert_eq!(reopened.to_vec().expect("read"), [1]);

    // The handle carries the mode it was created with: a spawned child reopens the segment by
    // name, and accepts it as its parent did.
    let mut child = Running::spawn(push_two, list.clone());
    child.join().expect("the child reopened the list");
    assert_eq!(list.to_vec().expect("read"), [1, 2]);
}

fn push_two(list: SharedList<u64>) {
    list.push(&2).expect("push from the child");
}

#[test]
fn a_segment_owned_by_another_user_is_refused_unless_its_owner_is_trusted() {
    if procfs::skip_without_root("giving a segment to another user") {
        return;
    }
    // A segment planted by user 65534 (`nobody`), open to everyone, where this process
    // looks for its own; the CLI's tests plant one as that user itself.
    let kinds = [Removal::fresh("trust-list"), Removal::fresh("trust-lock")];
    let everyone = SegmentOptions::new().mode(0o666);
    SharedList::<u64>::create_with(kinds[0].name(), &everyone).expect("create");
    let lock = Lock::create(kinds[1].name()).expect("create");
    drop(lock);
    for removal in &kinds {
        let path = shm_path(removal.name());
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    }
    let before = std::fs::read(shm_path(kinds[0].name())).expect("read");

    let refusals = [
        (
            kinds[0].name(),
            open_error(SharedList::<u64>::open(kinds[0].name())),
        ),
        (kinds[1].name(), open_error(Lock::open(kinds[1].name()))),
        (
            kinds[0].name(),
            open_error(Segment::open_any(kinds[0].name())),
        ),
    ];
    for (name, err) in refusals {
        assert!(
            matches!(
                err,
                OpenError::UntrustedOwner {
                    owner: 65534,
                    user: 0,
                    ..
                }
            ),
            "{name}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(name) && message.contains("trust_owner(65534)"),
            "{message}"
        );
    }
    assert_eq!(
        std::fs::read(shm_path(kinds[0].name())).expect("read"),
        before,
        "a refused open wrote into the segment"
    );

    // Trusting the owner alone still refuses the mode that lets everyone in; both accept it.
    let owner_only = SegmentOptions::new().trust_owner(65534);
    assert!(matches!(
        owner_only.open(kinds[0].name()),
        Err(Error::Open(OpenError::UntrustedMode { mode: 0o666, .. }))
    ));
    let trusting = owner_only.mode(0o666);
    let list = SharedList::<u64>::from_segment(trusting.open(kinds[0].name()).expect("trusted"))
        .expect("a list");
    list.push(&5).expect("push into a trusted segment");
    let lock = Lock::from_segment(trusting.open(kinds[1].name()).expect("trusted")).expect("lock");
    drop(lock.lock().expect("lock"));
}

#[test]
fn remove_refuses_what_is_not_a_memspace_segment() {
    let temp = TempDir::new("trust");
    let dir = temp.path();
    let plain = dir.join("passwd");
    std::fs::write(&plain, "root:x:0:0::/root:/bin/sh\n").expect("write a plain file");
    let target = dir.join("queue.seg");
    let queue = Queue::<u64>::create(&format!("file:{}", target.display())).expect("create");
    let link = dir.join("link.seg");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let planted = Removal::fresh("trust-garbage");
    names::write_segment_file(planted.name(), &[0x5A; 4096]);

    let plain_name = format!("file:{}", plain.display());
    assert!(matches!(
        Segment::remove(&plain_name),
        Err(Error::Open(OpenError::Foreign { .. }))
    ));
    let link_name = format!("file:{}", link.display());
    assert!(matches!(
        Segment::remove(&link_name),
        Err(Error::Open(OpenError::NotAFile {
            what: "a symbolic link",
            ..
        }))
    ));
    // Opening through the link is refused too: a name is never followed to another file.
    assert!(matches!(
        open_error(Queue::<u64>::open(&link_name)),
        OpenError::NotAFile { .. }
    ));
    assert!(matches!(
        Segment::remove(&format!("file:{}", dir.display())),
        Err(Error::Open(OpenError::NotAFile { .. }))
    ));
    assert!(matches!(
        Segment::remove(planted.name()),
        Err(Error::Open(OpenError::Foreign { .. }))
    ));
    assert!(plain.exists() && link.exists() && target.exists());
    assert!(shm_path(planted.name()).exists());

    // A creation that never finished (zeros under a memspace name in /dev/shm) is removable.
    let unfinished = Removal::fresh("trust-unfinished");
    names::write_segment_file(unfinished.name(), &[]);
    Segment::remove(unfinished.name()).expect("remove an unfinished segment");
    assert!(!shm_path(unfinished.name()).exists());

    queue.unlink().expect("remove the queue");
    assert!(!target.exists());
    std::fs::remove_dir_all(dir).expect("remove the directory");
}

#[test]
fn a_file_shrunk_under_a_mapping_is_an_error_not_a_sigbus() {
    let _dog = Watchdog::start();
    let removal = Removal::fresh("trust-shrunk");
    let list = SharedList::<String>::create(removal.name()).expect("create");
    let item = "x".repeat(200);
    list.extend(std::iter::repeat_n(&item, 2000))
        .expect("fill several pages");
    let map_removal = Removal::fresh("trust-shrunk-map");
    let map = SharedMap::<u64, String>::create(map_removal.name()).expect("create");
    for key in 0..500 {
        map.insert(&key, &item).expect("insert");
    }

    // A peer of the same user shrinks both files to their control page, as `ftruncate` does.
    for removal in [&removal, &map_removal] {
        removal.file().set_len(4096);
    }
    // Reading an item on a lost page would have killed this process with SIGBUS.
    let err = list.get(1999).expect_err("an item past the new end");
    let message = err.to_string();
    assert!(
        message.contains(removal.name()) && message.contains("shrank its file"),
        "{message}"
    );
    assert!(list.to_vec().is_err());
    assert!(
        list.push(&item).is_err(),
        "a write into lost pages reported success"
    );
    let segment = list.segment().expect("a shared-memory list");
    assert!(segment.check_intact().is_err());
    assert!(map.get(&499).is_err());
    assert!(map.insert(&1, &item).is_err());

    // The control page itself: a file cut to nothing. Taking the lock would have written into
    // a page past the end of the file.
    let lock_removal = Removal::fresh("trust-shrunk-lock");
    let lock = Lock::create(lock_removal.name()).expect("create");
    lock_removal.file().set_len(0);
    let err = lock.lock().map(drop).expect_err("a lock on a lost page");
    assert!(err.to_string().contains(lock_removal.name()), "{err}");
}

#[test]
fn trust_comes_only_from_the_program_itself_never_from_a_name_or_an_observer() {
    let removal = Removal::fresh("trust-smuggled");
    let group = SegmentOptions::new().mode(0o660);
    SharedList::<u64>::create_with(removal.name(), &group).expect("create");
    // A name that brings its own trust, typed or received, is just invalid...
    let smuggled = format!("{}\u{0}{}:666", removal.name(), std::process::id());
    assert!(matches!(
        open_error(SharedList::<u64>::open(&smuggled)),
        OpenError::InvalidName { .. }
    ));
    // ... also as a handle that arrives from elsewhere than a worker's parent or child.
    let json = serde_json::to_string(&smuggled).expect("json");
    assert!(serde_json::from_str::<SharedList<u64>>(&json).is_err());
    // An observer's segment makes a handle only if an open would have accepted it.
    let observed = inspect::observe(removal.name()).expect("observe");
    assert!(matches!(
        open_error(SharedList::<u64>::from_segment(observed)),
        OpenError::UntrustedMode { .. }
    ));
    let observed = group.observe(removal.name()).expect("observe as the group");
    assert_eq!(
        SharedList::<u64>::from_segment(observed)
            .expect("accepted")
            .len()
            .expect("len"),
        0
    );
}

#[test]
fn a_shrunk_file_leaves_the_shared_lock_as_it_was_and_fails_an_event() {
    let _dog = Watchdog::start();
    let removal = Removal::fresh("trust-shrunk-vec");
    let vec = SharedVec::<u64>::create(removal.name()).expect("create");
    vec.extend_from_slice(&[7; 2000])
        .expect("fill several pages");
    let file = removal.file();
    file.set_len(4096);
    assert!(vec.get(1000).is_err(), "an element on a lost page");
    // A repair that failed earlier left the (real, shared) lock inconsistent.
    let state_at = 144;
    file.write(state_at, &1u32.to_le_bytes());
    assert!(vec.push(5).is_err());
    let state = file.read(state_at, 4);
    assert_eq!(
        u32::from_le_bytes(state.try_into().expect("four bytes")),
        1,
        "this process's failure made the shared lock unrecoverable for everyone"
    );

    let event_removal = Removal::fresh("trust-shrunk-event");
    let event = Event::create(event_removal.name()).expect("create");
    event_removal.file().set_len(0);
    assert!(event.set().is_err(), "a set nobody can see");
    assert!(event.is_set().is_err());
    assert!(event.wait().is_err(), "a wait on a flag nobody can set");
}

#[test]
fn a_sigbus_another_process_sends_does_not_disarm_the_handling_of_lost_pages() {
    let _dog = Watchdog::start();
    let removal = Removal::fresh("trust-sent-sigbus");
    let list = SharedList::<String>::create(removal.name()).expect("create");
    list.extend(std::iter::repeat_n(&"y".repeat(300), 200))
        .expect("fill several pages");
    // A SIGBUS another process sends (si_code SI_USER): a Rust program survives it (std's
    // handler only acts on a stack overflow)...
    let sent = std::process::Command::new("kill")
        .args(["-BUS", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    // A pending signal is taken by the next thread to leave the kernel: within a sleep.
    std::thread::sleep(std::time::Duration::from_millis(200));
    // ... and a page lost afterwards is still an error, not a death by SIGBUS.
    removal.file().set_len(4096);
    assert!(list.get(199).is_err());
}
