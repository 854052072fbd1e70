//! Segments are private to their user unless created with a wider mode, and a lock held from
//! another pid namespace (a container sharing `/dev/shm`) is waited for, never taken over. The
//! tests switch to the `nobody` user with setpriv(1) and enter a new pid namespace with
//! unshare(1), which need root (CI runs as root); elsewhere they say why they did not run.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use memspace_testkit::Removal;
use memspace_testkit::cli::{binary, command, memspace};
use memspace_testkit::names::TempDir;
use memspace_testkit::procfs::skip_without_root;

fn memspace_as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(binary())
        .args(args)
        .output()
        .expect("run setpriv")
}

/// Waits until `memspace inspect` shows lock `name` held (at most 10 s).
fn wait_until_held(name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !String::from_utf8_lossy(&memspace(&["inspect", name]).stdout).contains("held by") {
        assert!(
            std::time::Instant::now() < deadline,
            "the holder of {name} never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn another_user_cannot_open_a_segment_created_with_the_default_mode() {
    if skip_without_root("switching to another user") {
        return;
    }
    let name = Removal::fresh("private");
    assert!(memspace(&["list", "create", name.name()]).status.success());
    let mode = std::fs::metadata(format!("/dev/shm/memspace.{}", name.name()))
        .expect("segment file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let output = memspace_as_nobody(&["list", "len", name.name()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains(name.name()), "{stderr}");
}

#[test]
fn a_wider_mode_lets_another_user_in() {
    if skip_without_root("switching to another user") {
        return;
    }
    let name = Removal::fresh("shared");
    assert!(
        memspace(&["list", "create", name.name(), "--mode", "666"])
            .status
            .success()
    );
    // Even its creator accepts a mode wider than 0600 only when told to.
    let output = memspace(&["list", "push", name.name(), "1"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        memspace(&["--accept-mode", "666", "list", "push", name.name(), "1"])
            .status
            .success()
    );
    let output = memspace_as_nobody(&[
        "list",
        "push",
        name.name(),
        "2",
        "--trust-owner",
        "root",
        "--accept-mode",
        "666",
    ]);
    assert!(output.status.success(), "{output:?}");
    let output = memspace(&["--accept-mode", "666", "list", "get", name.name()]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "[1,2]");
}

/// The size of `path`, and a digest of its bytes, to see that nothing wrote into it.
fn fingerprint(path: &str) -> (u64, u64) {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).expect("read the planted file");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    (bytes.len() as u64, hasher.finish())
}

#[test]
fn a_segment_planted_by_another_user_is_refused_unless_its_owner_is_trusted() {
    if skip_without_root("switching to another user") {
        return;
    }
    // `nobody` plants a list, a lock and a file segment, open to everyone, where root will
    // look for its own.
    let list = Removal::fresh("planted-list");
    let lock = Removal::fresh("planted-lock");
    let file = Removal::of(&format!(
        "file:/tmp/memspace-security.{}.planted",
        std::process::id()
    ));
    for (kind, name) in [("list", list.name()), ("queue", file.name())] {
        let output = memspace_as_nobody(&[kind, "create", name, "--mode", "666"]);
        assert!(output.status.success(), "{output:?}");
    }
    let output = memspace_as_nobody(&["lock", lock.name(), "--", "true"]);
    assert!(output.status.success(), "{output:?}");
    let list_path = format!("/dev/shm/memspace.{}", list.name());
    let lock_path = format!("/dev/shm/memspace.{}", lock.name());
    let file_path = file.name().trim_start_matches("file:").to_owned();
    let before = [&list_path, &lock_path, &file_path].map(|path| fingerprint(path));

    for args in [
        vec!["list", "push", list.name(), "1"],
        vec!["list", "len", list.name()],
        vec!["queue", "put", file.name(), "1"],
        vec!["lock", lock.name(), "--", "true"],
    ] {
        let output = memspace(&args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?} as root: {output:?}"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("belongs to user 65534") && stderr.contains("--trust-owner 65534"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        [&list_path, &lock_path, &file_path].map(|path| fingerprint(path)),
        before,
        "a refused open wrote into the planted segment"
    );
    // Trusting the owner is not enough while the mode lets everyone in; both are.
    let output = memspace(&["--trust-owner", "nobody", "list", "push", list.name(), "1"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("mode 0666"));
    let trusted = ["--trust-owner", "nobody", "--accept-mode", "666"];
    let output = memspace(&[&trusted[..], &["list", "push", list.name(), "1"]].concat());
    assert!(output.status.success(), "{output:?}");
    let output = memspace(&[&trusted[..], &["lock", lock.name(), "--", "true"]].concat());
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn rm_removes_only_memspace_segments() {
    let temp = TempDir::new("rm");
    let dir = temp.path();
    let plain = dir.join("notes.txt");
    std::fs::write(&plain, "not a segment\n").expect("write a plain file");
    let segment = Removal::of(&format!("file:{}", dir.join("list.seg").display()));
    assert!(
        memspace(&["list", "create", segment.name()])
            .status
            .success()
    );
    let link = dir.join("link.seg");
    std::os::unix::fs::symlink(dir.join("list.seg"), &link).expect("make a symbolic link");
    let planted = format!("security.{}.planted-garbage", std::process::id());
    let planted_path = format!("/dev/shm/memspace.{planted}");
    std::fs::write(&planted_path, vec![0xA5u8; 8192]).expect("plant garbage in /dev/shm");

    let refused = [
        (
            format!("file:{}", plain.display()),
            "not a memspace segment",
        ),
        (format!("file:{}", link.display()), "a symbolic link"),
        (format!("file:{}", dir.display()), "not a regular file"),
        (planted.clone(), "not a memspace segment"),
    ];
    for (name, why) in &refused {
        let output = memspace(&["rm", name]);
        assert_eq!(output.status.code(), Some(1), "rm {name}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(why) && stderr.contains(name.as_str()),
            "rm {name}: {stderr}"
        );
    }
    assert!(plain.exists() && link.exists() && dir.join("list.seg").exists());
    assert!(std::path::Path::new(&planted_path).exists());
    std::fs::remove_file(&planted_path).expect("remove the planted file");

    let output = memspace(&["rm", segment.name()]);
    assert!(output.status.success(), "{output:?}");
    assert!(!dir.join("list.seg").exists());
    std::fs::remove_dir_all(dir).expect("remove the directory");
}

/// Runs a holder of the lock `name` under `unshare ARGS --fork`, in namespaces of its own, and
/// checks that a locker here waits for it (and times out) rather than taking the lock over,
/// that `inspect` says so, and that the lock is free once the holder ends.
fn assert_waited_for_across(unshare: &[&str], name: &str) {
    let mut holder = Command::new("unshare")
        .args(unshare)
        .args(["--fork", "--"])
        .arg(binary())
        .args(["lock", name, "--", "sleep", "3"])
        .spawn()
        .expect("run unshare");
    wait_until_held(name);
    let output = memspace(&["lock", "--timeout", "1", name, "--", "true"]);
    assert_eq!(
        output.status.code(),
        Some(75),
        "the lock was taken from a live holder under unshare {unshare:?}: {output:?}"
    );
    let inspect = String::from_utf8_lossy(&memspace(&["inspect", name]).stdout).into_owned();
    assert!(
        inspect.contains("another pid or time namespace"),
        "{inspect}"
    );
    assert!(holder.wait().expect("wait for the holder").success());
    let output = memspace(&["lock", "--timeout", "10", name, "--", "true"]);
    assert!(output.status.success(), "once released: {output:?}");
}

#[test]
fn a_lock_held_from_another_pid_namespace_is_waited_for_not_taken_over() {
    if skip_without_root("a new pid namespace") {
        return;
    }
    let name = Removal::fresh("namespaced-lock");
    // The holder is pid 1 of a namespace of its own: its thread id there names another process
    // (or none) in this namespace's /proc.
    assert_waited_for_across(&["--pid"], name.name());
}

#[test]
fn a_lock_held_from_another_time_namespace_is_waited_for_not_taken_over() {
    if skip_without_root("a new time namespace") {
        return;
    }
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        eprintln!("skipped: this kernel has no time namespaces");
        return;
    }
    let name = Removal::fresh("time-namespaced-lock");
    // The holder's boot-time clock runs 1000 s ahead of this namespace's: the start time it
    // reads of itself in /proc is 1000 s later than the one this namespace's /proc shows.
    assert_waited_for_across(&["--time", "--boottime", "1000"], name.name());
}

#[test]
fn a_process_without_proc_waits_for_a_live_holder_and_resets_nothing() {
    if skip_without_root("a mount namespace") {
        return;
    }
    let name = Removal::fresh("no-proc");
    let mut holder = command(&[])
        .args(["lock", name.name(), "--", "sleep", "3"])
        .spawn()
        .expect("start the holder");
    wait_until_held(name.name());
    // Without /proc this process can check neither the holder nor the boot id: it must wait
    // (and time out), not take the lock over or reset it as if the machine had rebooted.
    let script = format!(
        "mount -t tmpfs none /proc && exec {} lock --timeout 1 {} -- true",
        binary().display(),
        name.name()
    );
    let output = Command::new("unshare")
        .args(["--mount", "--", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    assert_eq!(
        output.status.code(),
        Some(75),
        "a process without /proc took a live holder's lock: {output:?}"
    );
    let output = memspace(&["lock", "--timeout", "1", name.name(), "--", "true"]);
    assert_eq!(
        output.status.code(),
        Some(75),
        "the lock was reset by the process without /proc: {output:?}"
    );
    assert!(holder.wait().expect("wait for the holder").success());
}

/// Runs `memspace ARGS`, killing it if it has not ended after `limit`: `None` if it hung.
fn memspace_within(args: &[&str], limit: std::time::Duration) -> Option<Output> {
    let mut child = command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run memspace");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait for memspace").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Some(child.wait_with_output().expect("collect the output"))
}

#[test]
fn inspect_and_ls_never_wait_for_ever_on_a_held_lock() {
    let name = Removal::fresh("held-map");
    assert!(memspace(&["map", "create", name.name()]).status.success());
    assert!(
        memspace(&["map", "set", name.name(), "1", "2"])
            .status
            .success()
    );
    // The lock word names a live thread (this test's main thread) that never releases it: a
    // hostile or stuck holder.
    let file = name.file();
    let pid = std::process::id().to_le_bytes();
    // The lock word (the holder's id, its start time unknown), then the holder's id and pid
    // beside it.
    file.write(128, &pid);
    file.write(132, &[0; 4]);
    for at in [136, 140] {
        file.write(at, &pid);
    }
    let limit = std::time::Duration::from_secs(20);
    let output = memspace_within(&["inspect", name.name(), "--items"], limit)
        .expect("inspect --items waited for ever behind the held lock");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("held by {}", std::process::id())) && stdout.contains("verify"),
        "inspect printed what it could before failing: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(name.name()) && stderr.contains("not released"),
        "{stderr}"
    );
    let output = memspace_within(&["ls"], limit).expect("ls waited for ever");
    // 3: a test running beside this one may have a damaged segment in /dev/shm.
    assert!(matches!(output.status.code(), Some(0 | 3)), "{output:?}");
    file.write(128, &[0; 8]);
    let output = memspace_within(&["inspect", name.name(), "--items"], limit).expect("inspect");
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn inspect_and_ls_exit_non_zero_on_a_damaged_segment() {
    let name = Removal::fresh("damaged-list");
    assert!(memspace(&["list", "create", name.name()]).status.success());
    assert!(
        memspace(&["list", "push", name.name(), "\"zzzzzzzzzzzzzzzz\""])
            .status
            .success()
    );
    assert!(memspace(&["inspect", name.name()]).status.success());
    let file = name.file();
    let at = file.find(b"zzzzzzzzzzzzzzzz").expect("the item's bytes");
    file.write(at, b"y");
    let output = memspace(&["inspect", name.name()]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("PROBLEMS"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is damaged"));

    // A file cut below its committed size is damage `ls` sees without reading items.
    let cut = Removal::fresh("cut-list");
    assert!(memspace(&["list", "create", cut.name()]).status.success());
    cut.file().set_len(8192);
    let output = memspace(&["ls"]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains(cut.name()));
}

#[test]
fn a_peer_shrinking_the_file_never_kills_the_command_line_by_a_signal() {
    use std::os::unix::process::ExitStatusExt;
    let name = Removal::fresh("shrinking");
    assert!(memspace(&["list", "create", name.name()]).status.success());
    let item = format!("\"{}\"", "x".repeat(500));
    let items: Vec<&str> = std::iter::repeat_n(item.as_str(), 400).collect();
    assert!(
        memspace(&[&["list", "push", name.name()][..], &items].concat())
            .status
            .success()
    );
    let file = name.file();
    let full = file.len();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The peer: cuts the file to its control page and grows it back (with zeros), again and
    // again, while readers run.
    let peer = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                file.set_len(4096);
                std::thread::sleep(std::time::Duration::from_micros(300));
                file.set_len(full);
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        })
    };
    let mut failures = 0;
    for round in 0..150 {
        let args: &[&str] = if round % 2 == 0 {
            &["list", "get", name.name()]
        } else {
            &["inspect", name.name(), "--items"]
        };
        let output = memspace(args);
        assert_eq!(
            output.status.signal(),
            None,
            "{args:?} died by a signal: {output:?}"
        );
        if !output.status.success() {
            failures += 1;
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains(name.name()) && !stderr.contains("panicked"),
                "{args:?}: {stderr}"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    peer.join().expect("the peer");
    assert!(failures > 0, "the peer never disturbed a reader");
}
