//! The Redis backend on a real three-master Redis Cluster that each test creates
//! (`redis-cli --cluster create`): objects named through one node spread over every master and
//! are all listed; a slot moved to another master while a writer process pushes loses no
//! acknowledged item. (The behaviour suite of every kind and the lock runs on a cluster too:
//! `tests/backends.rs`, `redis_cluster::*`.)

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use memspace::inspect::list_objects;
use memspace::{Error, SharedList};
use memspace_testkit::children::wait_until;
use memspace_testkit::redis_cluster::RedisCluster;
use memspace_testkit::{Watchdog, roles, unique_name};

/// The flat object name of a Redis name (what its keys are made from).
fn object_of(name: &str) -> &str {
    name.rsplit_once('/').expect("a Redis name").1
}

#[test]
fn objects_named_through_one_node_spread_over_every_master_and_are_all_listed() {
    let _dog = Watchdog::start();
    let cluster = RedisCluster::start();
    let base = unique_name("spread");
    let names: Vec<String> = (0..100)
        .map(|i| format!("{}/{base}.{i}", cluster.url()))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let list = SharedList::<u64>::create(name).expect("create through the first node");
        list.push(&(i as u64)).expect("push");
    }
    let masters: BTreeSet<usize> = names
        .iter()
        .map(|name| cluster.node_of_object(object_of(name)))
        .collect();
    assert_eq!(
        masters.len(),
        3,
        "100 objects land on all three masters: {masters:?}"
    );

    let listed: Vec<_> = list_objects(&cluster.url())
        .expect("list through the first node")
        .into_iter()
        .filter(|listed| listed.name.contains(&base))
        .collect();
    let mut shown: Vec<String> = listed.iter().map(|listed| listed.name.clone()).collect();
    shown.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(
        shown, expected,
        "every object is listed once, by the name given"
    );
    assert!(
        listed
            .iter()
            .all(|listed| listed.kind == "list" && listed.len == 1 && listed.problem.is_none()),
        "{listed:?}"
    );
    // Through another node, the same objects.
    let through_third = list_objects(&cluster.nodes()[2].url()).expect("list through node 2");
    assert_eq!(
        through_third
            .iter()
            .filter(|listed| listed.name.contains(&base))
            .count(),
        100
    );
}

/// What the writer child logs for each push: `a N` acknowledged, `u N` may or may not have
/// been applied, `e N ERROR` any other failure.
fn writer_child() {
    let name = roles::role_segment();
    let log_path = PathBuf::from(std::env::var("MEMSPACE_TEST_LOG").expect("a log path"));
    let stop = log_path.with_extension("stop");
    let list = SharedList::<u64>::open(&name).expect("open the list");
    let mut log = std::fs::File::create(&log_path).expect("create the log");
    let mut next = 0u64;
    while !stop.exists() {
        let line = match list.push(&next) {
            Ok(()) => format!("a {next}"),
            Err(Error::RedisUnreachable {
                maybe_applied: true,
                ..
            }) => format!("u {next}"),
            Err(err) => format!("e {next} {err}"),
        };
        writeln!(log, "{line}").expect("log");
        next += 1;
    }
    log.flush().expect("flush the log");
}

#[test]
fn no_acknowledged_push_is_lost_while_its_slot_moves_to_another_master() {
    if roles::role().is_some() {
        writer_child();
        return;
    }
    let _dog = Watchdog::start();
    let cluster = RedisCluster::start();
    let name = cluster.unique_name("migrate");
    let object = object_of(&name).to_owned();
    let list = SharedList::<u64>::create(&name).expect("create");
    let slot = cluster.slot_of(&format!("memspace:{{{object}}}"));
    let from = cluster.owner_of_slot(slot);
    let to = (from + 1) % 3;

    let log = std::env::temp_dir().join(format!("{}.log", unique_name("migrate-writer")));
    let stop = log.with_extension("stop");
    let log_text = log.to_str().expect("a UTF-8 path").to_owned();
    let mut writer = roles::child_in_role(
        "writer",
        &[(roles::SEGMENT, &name), ("MEMSPACE_TEST_LOG", &log_text)],
    );
    wait_until("the writer's first pushes", || {
        list.len().expect("len") >= 200
    });

    // Reads through another handle all along: they follow the same redirections.
    let moving = AtomicBool::new(true);
    let reads = AtomicU64::new(0);
    let reader_list = SharedList::<u64>::open(&name).expect("open");
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            while moving.load(Ordering::Relaxed) {
                reader_list.len().expect("len while the slot moves");
                reader_list.get(0).expect("get while the slot moves");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        });
        // A pause after each key: the writer meets the slot with keys on both sides
        // (`TRYAGAIN`), with its keys moved (`ASK`), and moved (`MOVED`).
        cluster.migrate_slot(slot, from, to, Duration::from_millis(300));
        let moved = list.len().expect("len after the move");
        wait_until("pushes after the move", || {
            list.len().expect("len") >= moved + 200
        });
        moving.store(false, Ordering::Relaxed);
        reader.join().expect("the reader");
    });
    std::fs::write(&stop, b"").expect("tell the writer to stop");
    let status = writer.wait();
    let logged = std::fs::read_to_string(&log).expect("read the writer's log");
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&stop);
    assert!(status.success(), "the writer ended with {status}");
    assert_eq!(cluster.owner_of_slot(slot), to, "the slot moved");
    assert!(
        cluster.keys_in_slot(to, slot).len() >= 2,
        "the list's keys are on the new master"
    );
    assert!(reads.load(Ordering::Relaxed) > 0);
    // The old master answered every kind of redirection the clients had to follow.
    let errors = cluster.nodes()[from].cli(&["INFO", "errorstats"]);
    println!("the old master's error replies: {}", errors.trim());
    for code in ["TRYAGAIN", "ASK", "MOVED"] {
        assert!(
            errors.contains(&format!("errorstat_{code}:count=")),
            "the clients met {code}: {errors}"
        );
    }

    let (acknowledged, uncertain) = read_log(&logged);
    let stored = list.to_vec().expect("read the list");
    println!(
        "{} pushes acknowledged, {} uncertain, {} stored; {} reads meanwhile",
        acknowledged.len(),
        uncertain.len(),
        stored.len(),
        reads.load(Ordering::Relaxed)
    );
    assert_acknowledged_kept(&acknowledged, &uncertain, &stored);
}

/// The pushes a writer logged (see [`writer_child`]): those acknowledged, and those that may
/// or may not have been applied.
///
/// # Panics
///
/// If a push failed otherwise.
fn read_log(logged: &str) -> (Vec<u64>, Vec<u64>) {
    let (mut acknowledged, mut uncertain) = (Vec::new(), Vec::new());
    for line in logged.lines() {
        let (what, rest) = line.split_once(' ').expect("a log line");
        let item: u64 = rest
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a number");
        match what {
            "a" => acknowledged.push(item),
            "u" => uncertain.push(item),
            _ => panic!("push {item} failed: {line}"),
        }
    }
    (acknowledged, uncertain)
}

/// Asserts that `stored` holds every acknowledged push, in order, an uncertain one or not,
/// nothing else, and nothing twice.
fn assert_acknowledged_kept(acknowledged: &[u64], uncertain: &[u64], stored: &[u64]) {
    let mut expected = acknowledged.iter().peekable();
    for item in stored {
        if expected.peek() == Some(&item) {
            expected.next();
        } else {
            assert!(
                uncertain.contains(item),
                "item {item} was stored but neither acknowledged nor uncertain"
            );
        }
    }
    assert!(
        expected.peek().is_none(),
        "acknowledged push {:?} is missing",
        expected.peek()
    );
    let unique: BTreeSet<_> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "an item was stored twice");
}
