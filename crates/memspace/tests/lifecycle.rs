//! Who removes a segment, and when, with real processes: an anonymous segment lives while any
//! process uses it and is removed by the last; one whose users were all killed (`SIGKILL`)
//! stays until `memspace gc` removes it; a named one persists until removed; a forked copy of a
//! handle removes nothing; a `file:` segment survives its processes and a reboot (simulated by
//! erasing the boot id it records).

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime};

use memspace::inspect::{Abandoned, UNFINISHED_AGE};
use memspace::spawn::{JoinError, StartMethod};
use memspace::sync::{Event, Lock, LockError, Mutex};
use memspace::{OpenError, Segment, SharedList, SharedMap, inspect};

use memspace_testkit::flags::lock_recovering;
use memspace_testkit::names::{self, SegmentFile, TempDir, shm_exists, shm_path};
use memspace_testkit::{Parent, Removal, Running, Watchdog, cli, procfs, roles};

fn live_users(name: &str) -> usize {
    inspect::info(&inspect::observe(name).expect("observe the segment")).live_users
}

// =============================================================================================
// 1. An anonymous segment lives while any user does

/// Keeps the list open (it attached when its arguments were decoded), says so, and when told
/// to, appends, reads the list and drops it.
fn keep_open((list, attached, release): (SharedList<u32>, Event, Event)) -> Vec<u32> {
    let parent = Parent::here();
    attached.set().expect("set");
    parent.wait(&release);
    list.push(&2).expect("push after the creator let go");
    list.to_vec().expect("read")
}

#[test]
fn an_anonymous_list_outlives_its_creators_handle_while_a_spawned_child_uses_it() {
    let _watchdog = memspace_testkit::start_test();
    let list = SharedList::<u32>::new().expect("create the list");
    let name = list.name().to_string();
    let _removal = Removal::of(&name);
    list.push(&1).expect("push");
    let (attached, release) = (Event::new().expect("event"), Event::new().expect("event"));
    let mut child = Running::spawn(keep_open, (list.clone(), attached.clone(), release.clone()));
    child.wait_until("it attached", || attached.is_set().expect("is_set"));
    assert_eq!(live_users(&name), 2, "the creator and the child");
    drop(list);
    assert!(
        shm_exists(&name),
        "the creator's drop removed a segment that a live child still uses"
    );
    assert_eq!(live_users(&name), 1, "the child");
    release.set().expect("set");
    assert_eq!(
        child.join().expect("the child pushed and let go"),
        [1, 2],
        "the child kept using the list after its creator let go"
    );
    assert!(
        !shm_exists(&name),
        "the last user's drop did not remove the segment"
    );
}

// =============================================================================================
// 2. An anonymous segment whose only user was killed stays until gc

/// Creates an anonymous list, reports its name, and waits to be killed.
fn create_and_park((names, created): (SharedList<String>, Event)) {
    let parent = Parent::here();
    let orphan = SharedList::<u32>::new().expect("create the list");
    orphan.push(&7).expect("push");
    names
        .push(&orphan.name().to_string())
        .expect("report the name");
    created.set().expect("set");
    parent.park_until_killed();
}

/// An anonymous list whose only user, a child, was killed (`SIGKILL`) after creating it; the
/// list of names the child reported it in and the event it set stay with the test, and all
/// three names are removed when it ends.
struct Orphan {
    name: String,
    /// The killed creator's pid.
    creator: u32,
    names: SharedList<String>,
    created: Event,
    _removals: [Removal; 3],
}

fn orphan_of_a_killed_creator() -> Orphan {
    let names = SharedList::<String>::new().expect("create the list of names");
    let created = Event::new().expect("event");
    let mut creator = Running::spawn(create_and_park, (names.clone(), created.clone()));
    creator.wait_until("it created the list", || created.is_set().expect("is_set"));
    let name = names
        .get(0)
        .expect("read")
        .expect("the child reported a name");
    let removals = [
        Removal::of(names.name()),
        Removal::of(created.name()),
        Removal::of(&name),
    ];
    let pid = creator.pid();
    creator.kill();
    assert!(matches!(
        creator.join(),
        Err(JoinError::Killed { signal: 9, .. })
    ));
    assert!(
        shm_exists(&name),
        "nobody could remove it: its only user was killed"
    );
    Orphan {
        name,
        creator: pid,
        names,
        created,
        _removals: removals,
    }
}

#[test]
fn an_anonymous_list_whose_creator_was_killed_stays_until_gc_removes_it() {
    let _watchdog = memspace_testkit::start_test();
    let Orphan {
        name: orphan,
        creator,
        names,
        created: _,
        _removals,
    } = orphan_of_a_killed_creator();
    let info = inspect::info(&inspect::observe(&orphan).expect("observe"));
    assert_eq!(info.live_users, 0);
    assert_eq!(
        info.users.len(),
        1,
        "the killed creator's slot is left behind"
    );
    assert_eq!(info.users[0].pid, creator);
    assert!(info.anonymous);
    assert!(!info.creator.alive);
    assert_eq!(info.items, Some(1));

    let Some(binary) = cli::find_binary() else {
        // Run through scripts/test.sh (`cargo nextest run --workspace`), which builds the CLI
        // first; here the library's view of gc's rule is all that can be checked.
        eprintln!("NOTE: no memspace CLI binary next to the test binary; gc not exercised");
        Segment::remove(&orphan).expect("remove as gc would");
        assert!(!shm_exists(&orphan));
        return;
    };
    eprintln!("using the CLI at {}", binary.display());
    // A dry run over all of /dev/shm (it removes nothing, so other tests are not disturbed)...
    let planned = cli::succeed(&["gc", "--dry-run"]);
    assert!(
        planned.contains(&format!("would remove {orphan}:")),
        "gc --dry-run does not list {orphan}:\n{planned}"
    );
    assert!(shm_exists(&orphan), "a dry run removed it");
    assert!(
        !planned.contains(names.name().as_str()),
        "gc --dry-run would remove a list this process still uses:\n{planned}"
    );
    // ... and a real one limited to our segments (another test's orphans are its own business).
    let only_ours = [orphan.as_str(), names.name().as_str()];
    let done = cli::succeed(&[&["gc"][..], &only_ours[..]].concat());
    assert!(
        done.contains(&format!("removed {orphan}:")),
        "gc did not remove {orphan}:\n{done}"
    );
    assert!(!shm_exists(&orphan));
    assert!(shm_exists(names.name().as_str()), "gc removed a live list");
    let again = cli::succeed(&[&["gc"][..], &only_ours[..]].concat());
    assert_eq!(again.trim(), "nothing to remove");
}

// =============================================================================================
// 3. A named segment persists

fn open_and_push(name: String) {
    SharedList::<u32>::open(&name)
        .expect("open by name")
        .push(&2)
        .expect("push");
}

#[test]
fn a_named_list_persists_after_every_user_exits_and_gc_leaves_it_alone() {
    let _watchdog = memspace_testkit::start_test();
    let removal = Removal::fresh("named");
    let name = removal.name().to_owned();
    let list = SharedList::<u32>::create(&name).expect("create");
    list.push(&1).expect("push");
    let mut child = Running::spawn(open_and_push, name.clone());
    child.join().expect("the child pushed");
    drop(list);
    assert!(shm_exists(&name), "a named list vanished with its users");
    let info = inspect::info(&inspect::observe(&name).expect("observe"));
    assert!(!info.anonymous);
    assert!(
        info.users.is_empty(),
        "every user detached: {:?}",
        info.users
    );
    if cli::find_binary().is_some() {
        let planned = cli::succeed(&["gc", "--dry-run"]);
        assert!(
            !planned.contains(&name),
            "gc would remove a named list:\n{planned}"
        );
        let done = cli::succeed(&["gc", &name]);
        assert_eq!(done.trim(), "nothing to remove");
        assert!(shm_exists(&name));
    } else {
        eprintln!("NOTE: no memspace CLI binary next to the test binary; gc not exercised");
    }
    let again = SharedList::<u32>::open(&name).expect("reopen");
    assert_eq!(again.to_vec().expect("read"), [1, 2]);
    drop(again);
    Segment::remove(&name).expect("remove");
    assert!(!shm_exists(&name));
    assert!(matches!(
        Segment::remove(&name),
        Err(memspace::Error::Open(OpenError::NotFound { .. }))
    ));
    assert!(matches!(
        SharedList::<u32>::open(&name),
        Err(memspace::Error::Open(OpenError::NotFound { .. }))
    ));
}

// =============================================================================================
// 4. A forked copy of a handle removes nothing

/// Runs in a forked child, on the copy of the parent's handle it inherited.
fn push_and_drop_the_copy(list: SharedList<u32>) -> u32 {
    list.push(&2).expect("push through the inherited mapping");
    drop(list);
    std::process::id()
}

#[test]
fn a_forked_child_dropping_its_copy_of_an_anonymous_list_does_not_remove_it() {
    let _watchdog = Watchdog::start();
    let list = SharedList::<u32>::new().expect("create the list");
    let name = list.name().to_string();
    let _removal = Removal::of(&name);
    list.push(&1).expect("push");
    let mut child = Running::start_by(StartMethod::Fork, push_and_drop_the_copy, list.clone());
    let child_pid = child.join().expect("the forked child ran");
    assert_ne!(child_pid, std::process::id());
    assert!(
        shm_exists(&name),
        "a forked child's drop removed its parent's segment"
    );
    let users = list.segment().expect("in shared memory").users();
    assert_eq!(users.len(), 1, "only the parent is a user: {users:?}");
    assert_eq!(users[0].pid, std::process::id());
    list.push(&3).expect("the parent still works with it");
    assert_eq!(list.to_vec().expect("read"), [1, 2, 3]);
    drop(list);
    assert!(!shm_exists(&name), "the parent, its last user, removed it");
}

// =============================================================================================
// 5. File-backed segments: shared, persistent, reset after a reboot

/// Opens the file-backed list, returns what it holds, and appends.
fn read_and_append(name: String) -> Vec<String> {
    let list = SharedList::<String>::open(&name).expect("open the file");
    let items = list.to_vec().expect("read");
    list.push(&"from a child".to_owned()).expect("push");
    items
}

#[test]
fn a_file_backed_list_keeps_its_items_across_processes_until_removed() {
    let _watchdog = memspace_testkit::start_test();
    let dir = TempDir::new("file-list");
    let name = dir.segment("list.seg");
    let path = dir.path().join("list.seg");
    let list = SharedList::<String>::create(&name).expect("create in a file");
    list.extend(["one".to_owned(), "two".to_owned()])
        .expect("push");
    drop(list);
    assert!(path.is_file(), "the file is on disk");
    let mut child = Running::spawn(read_and_append, name.clone());
    assert_eq!(
        child.join().expect("the child read the file"),
        ["one", "two"]
    );
    let again = SharedList::<String>::open(&name).expect("reopen");
    assert_eq!(
        again.to_vec().expect("read"),
        ["one", "two", "from a child"]
    );
    assert!(!again.segment().expect("in shared memory").is_anonymous());
    drop(again);
    assert!(path.is_file(), "a file-backed list persists");
    Segment::remove(&name).expect("remove");
    assert!(!path.exists(), "Segment::remove deletes the file");
}

/// Offset and length of the boot id in a segment's header (the `Meta` block at offset 192;
/// see `segment/header.rs`).
const BOOT_ID: (u64, usize) = (192, 16);

/// Simulates a reboot for the segment file at `path`: replaces the boot id it recorded by
/// another one. (Zeros would mean "unknown": a creator that could not read its boot id.)
fn change_boot_id(path: &Path) {
    SegmentFile::open(path).write(BOOT_ID.0, &[0xab; BOOT_ID.1]);
}

/// Takes the file-backed lock, says so, and holds it until killed.
fn hold_file_lock((name, holding): (String, Event)) {
    let parent = Parent::here();
    let lock = Lock::open(&name).expect("open the file lock");
    let _held = lock.lock().expect("lock");
    holding.set().expect("set");
    parent.park_until_killed();
}

/// Locks the file-backed lock in another process: `"clean"`, or what happened.
fn lock_elsewhere(name: String) -> String {
    match Lock::open(&name).expect("open").lock() {
        Ok(_) => "clean".to_owned(),
        Err(other) => format!("{other:?}"),
    }
}

#[test]
fn a_file_backed_lock_held_at_a_reboot_reports_owner_died_once_then_works() {
    let _watchdog = memspace_testkit::start_test();
    let dir = TempDir::new("file-lock");
    let name = dir.segment("lock.seg");
    drop(Lock::create(&name).expect("create in a file"));
    // The file as a reboot would leave it: copied while a process holds the lock, so that the
    // lock word names a thread of an earlier boot.
    let holding = Event::new().expect("event");
    let mut holder = Running::spawn(hold_file_lock, (name.clone(), holding.clone()));
    holder.wait_until("it holds the lock", || holding.is_set().expect("is_set"));
    let rebooted = dir.path().join("rebooted.seg");
    std::fs::copy(dir.path().join("lock.seg"), &rebooted).expect("copy the file");
    holder.kill();
    let _ = holder.join();
    change_boot_id(&rebooted);
    let rebooted_name = dir.segment("rebooted.seg");

    let lock = Lock::open(&rebooted_name).expect("open after the 'reboot'");
    let users = lock.segment().expect("in shared memory").users();
    assert_eq!(users.len(), 1, "the table of users was reset: {users:?}");
    assert_eq!(users[0].pid, std::process::id());
    let second_handle = Lock::open(&rebooted_name).expect("open again in the same boot");
    match lock.lock() {
        Err(LockError::OwnerDied(guard)) => guard.mark_consistent().expect("mark consistent"),
        other => panic!("the lock held at the 'reboot' was not reported: {other:?}"),
    }
    assert!(
        second_handle.lock().is_ok(),
        "the reset is reported once, not once per opener"
    );
    assert!(lock.lock().is_ok());
    let mut other = Running::spawn(lock_elsewhere, rebooted_name.clone());
    assert_eq!(
        other.join().expect("join"),
        "clean",
        "another process of this boot"
    );

    // The original file, whose holder was killed in this boot: the next locker takes over.
    let original = Lock::open(&name).expect("open the original");
    match original.lock() {
        Err(LockError::OwnerDied(guard)) => guard.mark_consistent().expect("mark consistent"),
        other => panic!("the killed holder was not reported: {other:?}"),
    }
    drop((lock, second_handle, original));
    Segment::remove(&rebooted_name).expect("remove the copy");
    Segment::remove(&name).expect("remove");
}

/// Child role `writer`: appends to the file-backed list until the failpoint stops it.
fn file_writer() {
    let list = SharedList::<String>::open(&std::env::var(FILE_LIST).expect("list name"))
        .expect("open the file");
    for i in 0..100 {
        list.push(&format!("item {i}")).expect("push");
    }
    panic!("the failpoint was never reached");
}

const FILE_LIST: &str = "MEMSPACE_LIFECYCLE_FILE_LIST";

#[test]
fn a_file_backed_list_copied_while_an_append_was_half_done_recovers_after_a_reboot() {
    if roles::role().as_deref() == Some("writer") {
        return file_writer();
    }
    let _watchdog = Watchdog::start();
    let dir = TempDir::new("file-reboot");
    let name = dir.segment("list.seg");
    let list = SharedList::<String>::create(&name).expect("create in a file");
    list.extend(["item 0".to_owned(), "item 1".to_owned()])
        .expect("push");
    drop(list);
    // A writer stops holding the lock with an unpublished record written: the file as a reboot
    // at that moment would leave it.
    let mut writer = roles::child_in_role(
        "writer",
        &[(FILE_LIST, &name), ("MEMSPACE_FAILPOINT", "list.written")],
    );
    writer.wait_until_stopped("list.written");
    let rebooted = dir.path().join("rebooted.seg");
    std::fs::copy(dir.path().join("list.seg"), &rebooted).expect("copy the file");
    writer.kill();
    change_boot_id(&rebooted);

    let list =
        SharedList::<String>::open(&dir.segment("rebooted.seg")).expect("open after the 'reboot'");
    assert_eq!(
        list.to_vec().expect("read"),
        ["item 0", "item 1"],
        "the half-done append is invisible"
    );
    assert_eq!(
        list.segment().expect("in shared memory").users().len(),
        1,
        "the table of users was reset"
    );
    // The push takes the lock (told the owner died), repairs the list and appends.
    list.push(&"after the reboot".to_owned())
        .expect("push after the 'reboot'");
    assert_eq!(
        list.to_vec().expect("read"),
        ["item 0", "item 1", "after the reboot"]
    );
    let report = inspect::verify(list.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    assert!(report.notes.is_empty(), "{report:?}");
    drop(list);
    Segment::remove(&dir.segment("rebooted.seg")).expect("remove the copy");
    Segment::remove(&name).expect("remove");
}

// =============================================================================================
// 6. The creator is recorded

/// Creates a named list, reports its pid and start time, and exits when told.
fn create_named((name, created, exit, me): (String, Event, Event, Mutex<[u64; 2]>)) {
    let parent = Parent::here();
    let list = SharedList::<u32>::create(&name).expect("create");
    list.push(&1).expect("push");
    *lock_recovering(&me) = [u64::from(std::process::id()), procfs::own_start_time()];
    created.set().expect("set");
    parent.wait(&exit);
}

#[test]
fn the_creator_pid_and_start_time_of_a_list_made_by_a_child_are_recorded() {
    let _watchdog = memspace_testkit::start_test();
    let removal = Removal::fresh("creator");
    let (created, exit) = (Event::new().expect("event"), Event::new().expect("event"));
    let me = Mutex::new([0u64; 2]).expect("mutex");
    let mut child = Running::spawn(
        create_named,
        (
            removal.name().to_owned(),
            created.clone(),
            exit.clone(),
            me.clone(),
        ),
    );
    child.wait_until("it created the list", || created.is_set().expect("is_set"));
    let [pid, start_time] = *lock_recovering(&me);
    assert_eq!(pid, u64::from(child.pid()));
    let info = inspect::info(&inspect::observe(removal.name()).expect("observe"));
    assert_eq!(u64::from(info.creator.pid), pid);
    assert_eq!(info.creator.start_time, start_time);
    assert!(info.creator.alive, "the creator is running");
    assert_eq!(info.last_writer_pid, child.pid());
    exit.set().expect("set");
    child.join().expect("the child exited");
    let info = inspect::info(&inspect::observe(removal.name()).expect("observe"));
    assert_eq!(u64::from(info.creator.pid), pid);
    assert_eq!(info.creator.start_time, start_time);
    assert!(!info.creator.alive, "the creator has exited");
    assert_eq!(info.live_users, 0);
}

// =============================================================================================
// `inspect::gc`, the cleanup a supervisor runs at start: an anonymous list whose only user was
// killed is reported by a dry run and removed by a real one; a segment whose creator died while
// creating it is removed once it is old enough; named, young unfinished and live segments stay.

#[test]
fn gc_reports_and_removes_an_anonymous_list_whose_only_user_was_killed() {
    let _watchdog = memspace_testkit::start_test();
    let Orphan {
        name: orphan,
        creator,
        names,
        created,
        _removals,
    } = orphan_of_a_killed_creator();
    let file_size = std::fs::metadata(shm_path(&orphan)).expect("stat").len();

    // Other tests run at the same time and may own orphans of their own: name ours.
    let ours = [
        orphan.as_str(),
        names.name().as_str(),
        created.name().as_str(),
    ];
    let planned = inspect::gc(Some(&ours), true).expect("gc --dry-run");
    assert_eq!(
        planned.len(),
        1,
        "only the orphan is abandoned: {planned:?}"
    );
    let plan = &planned[0];
    assert_eq!(plan.name, orphan);
    assert_eq!(
        plan.reason,
        Abandoned::UsersDead {
            pids: vec![creator]
        }
    );
    assert_eq!(
        plan.reason.to_string(),
        format!("anonymous, and every user is dead ({creator})")
    );
    assert_eq!(plan.size, file_size);
    assert!(plan.size > 0);
    assert!(!plan.removed, "a dry run says it removed something");
    assert!(plan.error.is_none(), "{:?}", plan.error);
    assert!(shm_exists(&orphan), "a dry run removed it");

    let done = inspect::gc(Some(&ours), false).expect("gc");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].name, orphan);
    assert!(done[0].removed, "{done:?}");
    assert!(done[0].error.is_none(), "{done:?}");
    assert!(!shm_exists(&orphan), "gc reported a removal it did not do");
    assert!(
        shm_exists(names.name().as_str()),
        "gc removed a list in use"
    );
    assert_eq!(names.len().expect("the list in use still works"), 1);

    let again = inspect::gc(Some(&ours), false).expect("gc again");
    assert!(again.is_empty(), "{again:?}");
}

/// Leaves a segment file of zeros under `name`, as a creator killed before it wrote the
/// header does, last modified `age` ago.
fn unfinished(name: &str, age: Duration) {
    names::write_segment_file(name, &[0; 4096]);
    File::options()
        .write(true)
        .open(shm_path(name))
        .expect("open the file")
        .set_modified(SystemTime::now() - age)
        .expect("set its modification time");
}

#[test]
fn gc_removes_an_unfinished_segment_once_it_is_old_and_keeps_named_and_young_ones() {
    let _watchdog = memspace_testkit::start_test();
    let old = Removal::fresh("gc-unfinished-old");
    unfinished(old.name(), UNFINISHED_AGE + Duration::from_secs(5));
    let young = Removal::fresh("gc-unfinished-young");
    unfinished(young.name(), Duration::ZERO);
    let named = Removal::fresh("gc-named");
    let map = SharedMap::<String, u32>::create(named.name()).expect("create a named map");
    drop(map);

    let ours = [old.name(), young.name(), named.name()];
    let done = inspect::gc(Some(&ours), false).expect("gc");
    assert_eq!(done.len(), 1, "only the old unfinished segment: {done:?}");
    assert_eq!(done[0].name, old.name());
    assert_eq!(done[0].reason, Abandoned::Unfinished);
    assert_eq!(
        done[0].reason.to_string(),
        "its creator died while creating it"
    );
    assert_eq!(done[0].size, 4096);
    assert!(done[0].removed, "{done:?}");
    assert!(!shm_exists(old.name()));
    assert!(
        shm_exists(young.name()),
        "gc removed a segment that may still be being created"
    );
    assert!(
        shm_exists(named.name()),
        "gc removed a named segment nobody uses"
    );
}
