//! `inspect::gc`, the cleanup a supervisor runs at start, with real processes: an anonymous
//! list whose only user was killed (`SIGKILL`) is reported by a dry run and removed by a real
//! one; a segment whose creator died while creating it is removed once it is old enough; named
//! segments, young unfinished ones and segments with a live user are kept.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use std::fs::File;
use std::time::{Duration, SystemTime};

use memspace::inspect::{self, Abandoned, UNFINISHED_AGE};
use memspace::spawn::JoinError;
use memspace::sync::Event;
use memspace::{SharedList, SharedMap};

use memspace_testkit::names::{self, shm_exists, shm_path};
use memspace_testkit::{Parent, Removal, Running};

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

#[test]
fn gc_reports_and_removes_an_anonymous_list_whose_only_user_was_killed() {
    let _watchdog = memspace_testkit::start_test();
    let names = SharedList::<String>::new().expect("create the list of names");
    let _names_removal = Removal::of(names.name());
    let created = Event::new().expect("event");
    let _created_removal = Removal::of(created.name());
    let mut creator = Running::spawn(create_and_park, (names.clone(), created.clone()));
    creator.wait_until("it created the list", || created.is_set().expect("is_set"));
    let orphan = names
        .get(0)
        .expect("read")
        .expect("the child reported a name");
    let _orphan_removal = Removal::of(&orphan);
    creator.kill();
    assert!(matches!(
        creator.join(),
        Err(JoinError::Killed { signal: 9, .. })
    ));
    assert!(
        shm_exists(&orphan),
        "nobody could remove it: its only user was killed"
    );
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
            pids: vec![creator.pid()]
        }
    );
    assert_eq!(
        plan.reason.to_string(),
        format!("anonymous, and every user is dead ({})", creator.pid())
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
