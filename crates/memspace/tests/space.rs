//! A full file system: growth fails with a clear `NoSpace` error, never `SIGBUS`, and nothing
//! is corrupted. The test mounts a 1 MiB tmpfs, which needs root (CI runs as root); elsewhere
//! it says why it did not run.

use std::process::Command;

use memspace::{Error, SharedList, inspect};
use memspace_testkit::names::TempDir;
use memspace_testkit::procfs;

/// A tiny tmpfs, unmounted on drop (and its mount point removed).
struct TinyFs(TempDir);

impl TinyFs {
    fn mount(test: &str, size: &str) -> Option<Self> {
        let dir = TempDir::new(test);
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        if status.is_ok_and(|s| s.success()) {
            Some(TinyFs(dir))
        } else {
            assert!(
                !procfs::is_root(),
                "mounting a tmpfs failed although we are root"
            );
            eprintln!("skipped: mounting a tmpfs needs root");
            None
        }
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_file_system_is_a_no_space_error_and_the_list_stays_intact() {
    let Some(fs) = TinyFs::mount("nospace", "1m") else {
        return;
    };
    let name = fs.0.segment("list.seg");
    let list = SharedList::<String>::create(&name).expect("create in the tiny file system");
    let mut pushed = Vec::new();
    let err = loop {
        let item = format!("{:04}{}", pushed.len(), "q".repeat(4000));
        match list.push(&item) {
            Ok(()) => pushed.push(item),
            Err(err) => break err,
        }
        assert!(pushed.len() < 1000, "a 1 MiB file system took 4 MB");
    };
    assert!(matches!(err, Error::NoSpace { .. }), "{err:?}");
    assert!(err.to_string().contains("no space left"), "{err}");
    assert!(!pushed.is_empty());
    // Nothing half-done is visible, and everything acknowledged is intact.
    assert_eq!(list.len().expect("len"), pushed.len() as u64);
    assert_eq!(list.to_vec().expect("read back"), pushed);
    let report = inspect::verify(list.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    // A second segment in the full file system cannot be created either.
    let second = fs.0.segment("second.seg");
    let err = SharedList::<u8>::create(&second).expect_err("created in a full file system");
    assert!(matches!(err, Error::NoSpace { .. }), "{err:?}");
    assert!(
        !fs.0.path().join("second.seg").exists(),
        "the failed creation left its file behind"
    );
    // Small items still fit in what is left of the segment's last growth, or fail cleanly.
    match list.push(&"x".to_owned()) {
        Ok(()) => assert_eq!(
            list.get(list.len().expect("len") - 1).expect("read"),
            Some("x".to_owned())
        ),
        Err(err) => assert!(matches!(err, Error::NoSpace { .. }), "{err:?}"),
    }
    drop(list);
    memspace::Segment::remove(&name).expect("remove");
}

#[test]
fn only_a_push_whose_own_bytes_do_not_fit_is_a_no_space_error() {
    // The segment grows ahead of its writers: a step ahead that does not fit is skipped, and
    // the pushes go on in the space left. In a 1.5 MiB file system a list that doubled would
    // stop near 1 MiB (its growth to 2 MiB cannot fit); this one fills the file system.
    let Some(fs) = TinyFs::mount("nospacestep", "1536k") else {
        return;
    };
    let name = fs.0.segment("list.seg");
    let list = SharedList::<String>::create(&name).expect("create in the tiny file system");
    let mut pushed = 0_usize;
    let err = loop {
        match list.push(&"s".repeat(1000)) {
            Ok(()) => pushed += 1,
            Err(err) => break err,
        }
        assert!(pushed < 10_000, "a 1.5 MiB file system took 10 MB");
    };
    assert!(matches!(err, Error::NoSpace { .. }), "{err:?}");
    let used = list.used_bytes();
    assert!(
        used > 1280 << 10,
        "the list stopped at {used} bytes in a 1.5 MiB file system"
    );
    assert_eq!(list.len().expect("len"), pushed as u64);
    assert_eq!(
        list.get(pushed as u64 - 1).expect("read"),
        Some("s".repeat(1000))
    );
    let report = inspect::verify(list.segment().expect("in shared memory"));
    assert!(report.is_consistent(), "{report:?}");
    drop(list);
    memspace::Segment::remove(&name).expect("remove");
}
