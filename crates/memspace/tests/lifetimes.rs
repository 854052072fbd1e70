//! Who removes a segment, and when: anonymous segments are removed by their last live user,
//! or by `gc` once every user is dead; named ones persist; file-backed ones survive a reboot.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use memspace::spawn::{Process, StartMethod};
use memspace::sync::{Event, Lock, LockError};
use memspace::{Segment, SharedList, inspect};

fn watchdog() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_mins(1));
        eprintln!("watchdog: the test hung");
        std::process::abort();
    });
}

fn init_spawn(test: &str) {
    memspace::init();
    memspace::spawn::set_child_args([
        std::env::current_exe()
            .expect("test binary")
            .into_os_string(),
        "--exact".into(),
        test.into(),
        "--nocapture".into(),
    ]);
    watchdog();
}

fn exists(name: &str) -> bool {
    Path::new(&format!("/dev/shm/memspace.{name}")).exists()
}

/// Attaches the list (a user of its own), says so, waits for `go`, pushes, and exits.
fn attach_and_wait((list, attached, go): (SharedList<u32>, Event, Event)) {
    attached.set();
    go.wait();
    list.push(&7).expect("push after the creator let go");
}

#[test]
fn an_anonymous_segment_lives_while_any_user_does() {
    init_spawn("an_anonymous_segment_lives_while_any_user_does");
    let list = SharedList::<u32>::new().expect("list");
    let name = list.name().to_string();
    let (attached, go) = (Event::new().expect("event"), Event::new().expect("event"));
    let mut child = Process::new(
        attach_and_wait,
        (list.clone(), attached.clone(), go.clone()),
    )
    .start_method(StartMethod::Spawn);
    child.start().expect("start");
    attached.wait();
    let observer = inspect::observe(&name).expect("observe");
    assert_eq!(inspect::info(&observer).live_users, 2, "creator and child");
    drop(observer);
    drop(list); // the creator lets go: the child still uses it
    assert!(exists(&name), "removed while a user remained");
    go.set();
    child.join().expect("child pushed and exited");
    assert!(!exists(&name), "the last user did not remove it");
}

fn create_and_park((names, ready): (SharedList<String>, Event)) {
    let orphan = SharedList::<u32>::new().expect("list");
    orphan.push(&1).expect("push");
    names.push(&orphan.name().to_string()).expect("report name");
    ready.set();
    loop {
        std::thread::park();
    }
}

#[test]
fn gc_removes_an_anonymous_segment_whose_users_were_all_killed() {
    watchdog();
    let names = SharedList::<String>::new().expect("list");
    let ready = Event::new().expect("event");
    let mut child = Process::new(create_and_park, (names.clone(), ready.clone()));
    child.start().expect("start");
    ready.wait();
    let orphan = names.get(0).expect("read").expect("a name");
    child.kill().expect("SIGKILL");
    let _ = child.join();
    assert!(
        exists(&orphan),
        "nobody could remove it: its only user was killed"
    );
    let info = inspect::info(&inspect::observe(&orphan).expect("observe"));
    assert_eq!(info.live_users, 0);
    assert!(!info.creator.alive);
    assert!(info.anonymous);
    // The CLI's gc applies exactly this rule; here the library's view of it is checked and the
    // segment removed as gc does (the CLI itself is tested in the CLI crate).
    Segment::remove(&orphan).expect("remove");
    assert!(!exists(&orphan));
}

fn drop_copy(list: SharedList<u32>) {
    drop(list);
}

#[test]
fn a_forked_child_dropping_its_copy_does_not_remove_the_segment() {
    watchdog();
    let list = SharedList::<u32>::new().expect("list");
    let name = list.name().to_string();
    let mut child = Process::new(drop_copy, list.clone()).start_method(StartMethod::Fork);
    child.start().expect("start");
    child.join().expect("join");
    assert!(exists(&name));
    list.push(&1).expect("the parent still works with it");
    drop(list);
    assert!(!exists(&name));
}

#[test]
fn a_named_segment_persists_until_removed() {
    let name = format!("lifetimes.{}.named", std::process::id());
    let list = SharedList::<u32>::create(&name).expect("create");
    list.push(&5).expect("push");
    drop(list);
    assert!(
        exists(&name),
        "a named segment vanished with its creator's handle"
    );
    let again = SharedList::<u32>::open(&name).expect("reopen");
    assert_eq!(again.to_vec().expect("read"), [5]);
    let info = inspect::info(again.segment());
    assert!(!info.anonymous);
    assert_eq!(info.creator.pid, std::process::id());
    drop(again);
    Segment::remove(&name).expect("remove");
    assert!(!exists(&name));
    assert!(matches!(
        Segment::remove(&name),
        Err(memspace::OpenError::NotFound { .. })
    ));
}

fn create_named(name: String) -> u32 {
    SharedList::<u32>::create(&name)
        .expect("create")
        .push(&1)
        .expect("push");
    std::process::id()
}

#[test]
fn the_creators_pid_and_start_time_are_recorded() {
    watchdog();
    let name = format!("lifetimes.{}.creator", std::process::id());
    let mut child = Process::new(create_named, name.clone());
    child.start().expect("start");
    let pid = child.join().expect("join");
    let info = inspect::info(&inspect::observe(&name).expect("observe"));
    assert_eq!(info.creator.pid, pid);
    assert!(info.creator.start_time > 0);
    assert!(!info.creator.alive);
    assert_eq!(info.last_writer_pid, pid);
    Segment::remove(&name).expect("remove");
}

fn push_to_file(path: String) {
    SharedList::<String>::open(&path)
        .expect("open the file")
        .push(&"from a child".to_owned())
        .expect("push");
}

#[test]
fn a_file_backed_list_is_shared_and_survives_its_processes() {
    watchdog();
    let dir = std::env::temp_dir().join(format!("memspace-lifetimes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let name = format!("file:{}/jobs.seg", dir.display());
    let list = SharedList::<String>::create(&name).expect("create in a file");
    list.push(&"from the parent".to_owned()).expect("push");
    let mut child = Process::new(push_to_file, name.clone());
    child.start().expect("start");
    child.join().expect("join");
    drop(list);
    assert!(dir.join("jobs.seg").exists());
    let again = SharedList::<String>::open(&name).expect("reopen");
    assert_eq!(
        again.to_vec().expect("read"),
        ["from the parent", "from a child"]
    );
    drop(again);
    Segment::remove(&name).expect("remove");
    assert!(!dir.join("jobs.seg").exists());
    std::fs::remove_dir(&dir).expect("clean up");
}

fn hold_file_lock((name, holding): (String, Event)) {
    let lock = Lock::open(&name).expect("open");
    let _held = lock.lock().expect("lock");
    holding.set();
    loop {
        std::thread::park();
    }
}

#[test]
fn a_file_backed_lock_from_an_earlier_boot_is_reset_and_reported_once() {
    watchdog();
    let dir = std::env::temp_dir().join(format!("memspace-reboot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("lock.seg");
    let name = format!("file:{}", path.display());
    drop(Lock::create(&name).expect("create"));
    // A holder that never released it (killed: the kernel recovers it in this boot, so the
    // reboot is simulated below by erasing the boot id the segment was initialised in).
    let holding = Event::new().expect("event");
    let mut holder = Process::new(hold_file_lock, (name.clone(), holding.clone()));
    holder.start().expect("start");
    holding.wait();
    holder.kill().expect("SIGKILL");
    let _ = holder.join();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open file");
    file.seek(SeekFrom::Start(192))
        .expect("seek to the boot id");
    file.write_all(&[0; 16]).expect("erase the boot id");
    drop(file);
    let lock = Lock::open(&name).expect("reopen after the 'reboot'");
    let Err(LockError::OwnerDied(guard)) = lock.lock() else {
        panic!("the reset after a reboot was not reported");
    };
    guard.mark_consistent().expect("consistent");
    drop(guard);
    assert!(lock.lock().is_ok(), "reported once, then clean");
    drop(lock);
    Segment::remove(&name).expect("remove");
    std::fs::remove_dir(&dir).expect("clean up");
}
