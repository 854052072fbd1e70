//! The Redis backend on Redis as it is deployed, all real processes each test starts:
//!
//! * a three-master Redis Cluster (`redis-cli --cluster create`): objects named through one
//!   node spread over every master and are all listed; a slot moved to another master while a
//!   writer process pushes loses no acknowledged item; a lock held while its slot moves keeps
//!   everyone else out and its tokens keep growing; with a replica per master, a master
//!   killed while a writer pushes is replaced and the writer goes on, what was lost stated
//!   against what was acknowledged. (The behaviour suite of every kind and
//!   the lock runs on a cluster too: `tests/backends.rs`, `redis_cluster::*`.)
//! * a primary, a replica and three sentinels (`redis+sentinel://`): the primary is killed
//!   while a writer process pushes and a lock is held; the writer goes on once the replica is
//!   promoted, what was lost is stated against what was acknowledged, and the lock's fencing
//!   token keeps growing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use memspace::inspect::list_objects;
use memspace::sync::{LockError, TryLockError};
use memspace::{AuthProblem, Error, Lock, SharedList};
use memspace_testkit::children::{WAIT_LIMIT, wait_until};
use memspace_testkit::redis_cluster::RedisCluster;
use memspace_testkit::redis_server::{RedisServer, Role, ServerOptions, assert_hides_password};
use memspace_testkit::writer::{self, Pushes, Writer};
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

/// Every node of a cluster with a password, and every master it redirects to.
fn with_password() -> ServerOptions {
    ServerOptions {
        requirepass: Some("hunter2".to_owned()),
        primary_password: Some("hunter2".to_owned()),
        ..ServerOptions::default()
    }
}

#[test]
fn every_master_of_a_cluster_is_logged_in_to_with_the_names_password() {
    let _dog = Watchdog::start();
    let cluster = RedisCluster::start_with(0, &with_password());
    let url = cluster.nodes()[0].url_as(":hunter2");
    let base = unique_name("login");
    let names: Vec<String> = (0..30).map(|i| format!("{url}/{base}.{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        // Most live on another master than the first node: reached through its `MOVED`,
        // logged in to with the same password.
        let list = SharedList::<u64>::create(name).expect("create through the first node");
        list.push(&(i as u64)).expect("push");
        assert_hides_password("a name", &format!("{} {list:?}", list.name()));
        let again = SharedList::<u64>::open(name).expect("open again");
        assert_eq!(again.get(0).expect("get"), Some(i as u64));
    }
    let masters: BTreeSet<usize> = names
        .iter()
        .map(|name| cluster.node_of_object(object_of(name)))
        .collect();
    assert_eq!(
        masters.len(),
        3,
        "objects on all three masters: {masters:?}"
    );
    let listed: Vec<_> = list_objects(&url)
        .expect("list every master")
        .into_iter()
        .filter(|listed| listed.name.contains(&base))
        .collect();
    assert_eq!(listed.len(), names.len(), "{listed:?}");
    for entry in &listed {
        assert_hides_password("a listed name", &entry.name);
        assert!(entry.problem.is_none() && entry.len == 1, "{entry:?}");
    }

    // Without the password, a refused login (not an unreachable cluster).
    let without_password = format!("{}/{base}.0", cluster.url());
    match SharedList::<u64>::open(&without_password) {
        Err(Error::RedisAuth { problem, .. }) => {
            assert_eq!(*problem, AuthProblem::PasswordMissing);
        }
        other => panic!("open without the password: {other:?}"),
    }
}

#[test]
fn a_name_with_a_database_on_a_cluster_is_refused_saying_a_cluster_has_only_database_0() {
    let _dog = Watchdog::start();
    let cluster = RedisCluster::start_with(0, &with_password());
    let name = format!(
        "{}/2/{}",
        cluster.nodes()[0].url_as(":hunter2"),
        unique_name("db")
    );
    let err = SharedList::<u64>::create(&name).expect_err("database 2 on a cluster");
    let message = err.to_string();
    assert!(
        matches!(&err, Error::RedisAuth { problem, .. }
            if **problem == AuthProblem::ClusterHasNoDatabase { db: 2 }),
        "{err:?}"
    );
    assert!(
        message.contains("Redis Cluster") && message.contains("only database 0"),
        "{message}"
    );
    assert_hides_password("the error", &format!("{message} {err:?}"));
}

/// Whether `err` is a cluster refusing a command because a slot has no master (`CLUSTERDOWN`).
fn refused_as_cluster_down(err: &Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(err);
    while let Some(now) = cause {
        if let Some(redis) = now.downcast_ref::<redis::RedisError>()
            && redis.code() == Some("CLUSTERDOWN")
        {
            return true;
        }
        cause = now.source();
    }
    false
}

#[test]
fn no_acknowledged_push_is_lost_while_its_slot_moves_to_another_master() {
    if roles::role().is_some() {
        writer::run_child(refused_as_cluster_down);
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

    let writer = Writer::start(&name, "migrate-writer");
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
    let pushes = writer.stop();
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

    let stored = list.to_vec().expect("read the list");
    println!(
        "{} pushes acknowledged, {} uncertain, {} stored; {} reads meanwhile",
        pushes.acknowledged.len(),
        pushes.uncertain.len(),
        stored.len(),
        reads.load(Ordering::Relaxed)
    );
    pushes.assert_kept_in(&stored);
}

/// The service name the sentinels of the test below monitor.
const SERVICE: &str = "memspace-primary";

/// What a failover did to a writer's acknowledged pushes: those missing from `stored` (which
/// holds nothing else that was not uncertain, nothing twice, in order) form one run of
/// consecutive acknowledged pushes, the last ones the dead primary acknowledged before its
/// replica had them; everything acknowledged before and after the run is there. Returns the
/// run.
fn lost_in_one_run(pushes: &Pushes, stored: &[u64]) -> Vec<u64> {
    let Pushes {
        acknowledged,
        uncertain,
        ..
    } = pushes;
    let kept: BTreeSet<u64> = stored.iter().copied().collect();
    assert_eq!(kept.len(), stored.len(), "an item was stored twice");
    for item in stored {
        assert!(
            acknowledged.contains(item) || uncertain.contains(item),
            "item {item} was stored but neither acknowledged nor uncertain"
        );
    }
    let in_order: Vec<u64> = stored
        .iter()
        .copied()
        .filter(|item| !uncertain.contains(item))
        .collect();
    let present: Vec<u64> = acknowledged
        .iter()
        .copied()
        .filter(|item| kept.contains(item))
        .collect();
    assert_eq!(
        in_order, present,
        "the stored items are in the order acknowledged"
    );
    let missing: Vec<usize> = (0..acknowledged.len())
        .filter(|at| !kept.contains(&acknowledged[*at]))
        .collect();
    if let (Some(first), Some(last)) = (missing.first(), missing.last()) {
        assert_eq!(
            last - first + 1,
            missing.len(),
            "the lost pushes are one run of consecutive acknowledged pushes: {:?}",
            missing
                .iter()
                .map(|at| acknowledged[*at])
                .collect::<Vec<_>>()
        );
    }
    missing.iter().map(|at| acknowledged[*at]).collect()
}

/// A primary, its replica and three sentinels that monitor it as [`SERVICE`], all ready (the
/// replica in sync, the sentinels aware of each other and of the replica); and the
/// `redis+sentinel://.../SERVICE/OBJECT` name of `object` through them.
fn primary_replica_and_sentinels(
    object: &str,
) -> (RedisServer, RedisServer, String, Vec<RedisServer>) {
    deployment_with_sentinels(object, &ServerOptions::default(), "")
}

/// [`primary_replica_and_sentinels`] with the primary and its replica set up as `options`
/// say (the sentinels log in to them with its `primary_password`), and `credentials`
/// (`USER:PASSWORD@`) in the name.
fn deployment_with_sentinels(
    object: &str,
    options: &ServerOptions,
    credentials: &str,
) -> (RedisServer, RedisServer, String, Vec<RedisServer>) {
    let primary = RedisServer::start_with(options.clone());
    let replica = RedisServer::start_with(ServerOptions {
        role: Role::ReplicaOf(primary.port()),
        ..options.clone()
    });
    wait_until("the replica to follow the primary", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    let sentinels: Vec<RedisServer> = (0..3)
        .map(|_| {
            RedisServer::start_with(ServerOptions {
                role: Role::SentinelOf(primary.port(), SERVICE.to_owned()),
                primary_password: options.primary_password.clone(),
                ..ServerOptions::default()
            })
        })
        .collect();
    let replica_port = replica.port().to_string();
    wait_until("the sentinels to know each other and the replica", || {
        sentinels.iter().all(|sentinel| {
            sentinel
                .cli(&["SENTINEL", "CKQUORUM", SERVICE])
                .contains("OK 3 usable")
                && sentinel
                    .cli(&["SENTINEL", "REPLICAS", SERVICE])
                    .contains(&replica_port)
        })
    });
    let addresses: Vec<String> = sentinels
        .iter()
        .map(|sentinel| format!("127.0.0.1:{}", sentinel.port()))
        .collect();
    let base = format!(
        "redis+sentinel://{credentials}{}/{SERVICE}/{object}",
        addresses.join(",")
    );
    (primary, replica, base, sentinels)
}

#[test]
fn a_sentinel_name_logs_in_to_the_primary_with_its_password_and_never_shows_it() {
    let _dog = Watchdog::start();
    let object = unique_name("sentinel-login");
    let (_primary, _replica, base, _sentinels) =
        deployment_with_sentinels(&object, &with_password(), ":hunter2@");
    let list = SharedList::<u64>::create(&base).expect("create through the sentinels");
    list.push(&7).expect("push");
    assert_eq!(
        SharedList::<u64>::open(&base)
            .expect("open again")
            .get(0)
            .expect("get"),
        Some(7)
    );
    assert_hides_password("a sentinel name", &format!("{} {list:?}", list.name()));

    let wrong = base.replace(":hunter2@", ":wrongpass@");
    let err = SharedList::<u64>::open(&wrong).expect_err("a wrong password");
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(&err, Error::RedisAuth { problem, .. }
            if **problem == AuthProblem::WrongPassword),
        "{shown}"
    );
    assert!(!shown.contains("wrongpass"), "{shown}");
    let without_password = base.replace(":hunter2@", "");
    match SharedList::<u64>::open(&without_password) {
        Err(Error::RedisAuth { problem, .. }) => {
            assert_eq!(*problem, AuthProblem::PasswordMissing);
        }
        other => panic!("open without the password: {other:?}"),
    }
}

/// Takes the lock `lock_name` after its primary failed over to `replica`: refused while the
/// promoted replica has no replica to confirm it, then, once the old `primary` is back as its
/// replica, taken. Returns the token.
fn lock_after_the_failover(
    lock_name: &str,
    primary: &mut RedisServer,
    replica: &RedisServer,
) -> u64 {
    let second = Lock::open(lock_name).expect("open the lock");
    // The promoted replica has no replica of its own: no acquisition can be confirmed, so
    // none is handed out.
    match second.lock() {
        Err(LockError::Unavailable { detail, .. }) => {
            assert!(detail.contains("no replica confirmed"), "{detail}");
        }
        Ok(guard) => panic!(
            "token {:?} handed out with no replica to confirm it",
            guard.fencing_token()
        ),
        Err(other) => panic!("{other:?}"),
    }
    // The old primary comes back, and the sentinels make it a replica of the new one.
    primary.restart();
    wait_until("the old primary to follow the promoted replica", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("state=online")
    });
    // A replica just online may not confirm in time on a loaded machine: the error says to
    // try again, which is what a user does.
    let tried = Instant::now();
    let guard = loop {
        match second.lock() {
            Ok(guard) => break guard,
            Err(LockError::Unavailable { detail, .. })
                if detail.contains("no replica confirmed")
                    && tried.elapsed() < WAIT_FOR_REPLICA => {}
            Err(other) => panic!("lock after the failover: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    guard.fencing_token().expect("a token")
}

/// How long the lock may be refused after the old primary came back as a replica.
const WAIT_FOR_REPLICA: Duration = Duration::from_secs(20);

#[test]
fn after_a_failover_the_writer_goes_on_and_the_fencing_token_keeps_growing() {
    if roles::role().is_some() {
        writer::run_child(refused_as_cluster_down);
        return;
    }
    let _dog = Watchdog::start();
    let (mut primary, replica, base, sentinels) =
        primary_replica_and_sentinels(&unique_name("failover"));
    let replica_port = replica.port().to_string();
    let name = format!("{base}.list");
    let lock_name = format!("{base}.lock?lease_ms=1000");
    let list = SharedList::<u64>::create(&name).expect("create through the sentinels");
    let lock = Lock::create(&lock_name).expect("create the lock");

    let (pushes, first_token, second_token, holder_kept) = std::thread::scope(|scope| {
        let (token_tx, token_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let lock = &lock;
        let holder = scope.spawn(move || {
            let guard = lock.lock().expect("lock before the failover");
            token_tx
                .send(guard.fencing_token().expect("a Redis lock has tokens"))
                .expect("send the token");
            go_rx.recv().expect("the go-ahead");
            guard.check().is_ok()
        });
        let first_token = token_rx.recv().expect("the holder's token");
        let writer = Writer::start(&name, "failover-writer");
        wait_until("the writer's first pushes", || {
            list.len().unwrap_or(0) >= 200
        });
        primary.kill();
        wait_until("the sentinels to promote the replica", || {
            sentinels[0]
                .cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE])
                .contains(&replica_port)
        });
        let mut promoted = None;
        wait_until("the list to answer on the promoted replica", || {
            promoted = list.len().ok();
            promoted.is_some()
        });
        let promoted = promoted.expect("a length");
        wait_until("the writer to go on after the failover", || {
            list.len().unwrap_or(0) >= promoted + 200
        });
        let pushes = writer.stop();
        go_tx.send(()).expect("let the holder go");
        let holder_kept = holder.join().expect("the holder");
        let second_token = lock_after_the_failover(&lock_name, &mut primary, &replica);
        (pushes, first_token, second_token, holder_kept)
    });
    let stored = list.to_vec().expect("read the list on the new primary");
    let lost_pushes = lost_in_one_run(&pushes, &stored);
    println!(
        "failover: {} pushes acknowledged, {} lost {lost_pushes:?}, {} uncertain ({} of them stored), \
         {} refused while no primary answered; lock tokens {first_token} before, \
         {second_token} after; the holder's lease {} the failover",
        pushes.acknowledged.len(),
        lost_pushes.len(),
        pushes.uncertain.len(),
        pushes
            .uncertain
            .iter()
            .filter(|item| stored.contains(item))
            .count(),
        pushes.not_applied,
        if holder_kept {
            "survived"
        } else {
            "was lost in"
        },
    );
    assert!(
        pushes.acknowledged.len() >= 400,
        "the writer pushed before and after the failover"
    );
    assert!(
        second_token > first_token,
        "the fencing token grows across the failover: {first_token} then {second_token}"
    );
}

/// The hash slot Redis Cluster gives the keys of object `object` (`memspace:{OBJECT}...`):
/// CRC16 (XMODEM) of the hash tag, modulo 16384.
fn slot_of_object(object: &str) -> u16 {
    let mut crc: u16 = 0;
    for byte in object.bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc % 16384
}

#[test]
fn a_lock_held_while_its_slot_moves_keeps_out_everyone_else_and_its_tokens_keep_growing() {
    let _dog = Watchdog::start();
    let cluster = RedisCluster::start();
    let base = unique_name("moving-lock");
    let lock_name = format!("{}/{base}?lease_ms=900", cluster.url());
    let slot = slot_of_object(&base);
    assert_eq!(slot, cluster.slot_of(&format!("memspace:{{{base}}}")));
    let lock = Lock::create(&lock_name).expect("create the lock");
    // Its fencing counter exists from the first acquisition on.
    drop(lock.lock().expect("lock once"));
    let from = cluster.owner_of_slot(slot);
    let to = (from + 1) % 3;

    let moving = AtomicBool::new(true);
    let (refused, kept_out) = (AtomicU64::new(0), AtomicU64::new(0));
    let guard = lock.lock().expect("lock before the move");
    let first = guard.fencing_token().expect("a token");
    std::thread::scope(|scope| {
        let contender = scope.spawn(|| {
            let other = Lock::open(&lock_name).expect("open the lock");
            while moving.load(Ordering::Relaxed) {
                match other.try_lock() {
                    Err(TryLockError::WouldBlock { .. }) => {
                        kept_out.fetch_add(1, Ordering::Relaxed);
                    }
                    // The cluster refuses while the lock's keys are on both sides.
                    Err(TryLockError::Lock(LockError::Unavailable { .. })) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(guard) => panic!("taken while held, with token {:?}", guard.fencing_token()),
                    Err(other) => panic!("{other:?}"),
                }
            }
        });
        // Three keys (meta, lease, fencing counter), each moved alone: several renewals
        // of the lease happen while they are split.
        cluster.migrate_slot(slot, from, to, Duration::from_millis(400));
        moving.store(false, Ordering::Relaxed);
        contender.join().expect("the contender");
    });
    assert_eq!(cluster.owner_of_slot(slot), to, "the slot moved");
    assert!(
        kept_out.load(Ordering::Relaxed) > 0,
        "the contender tried while the lock was held"
    );
    guard
        .check()
        .expect("the lease moved with its slot and is still the holder's");
    guard.unlock().expect("unlock on the new master");
    let after = lock.lock().expect("lock after the move");
    let second = after.fencing_token().expect("a token");
    println!(
        "tokens {first} then {second}; the contender was kept out {} times and refused {} times \
         while the keys were split",
        kept_out.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    assert!(second > first, "tokens grow: {first} then {second}");
}

/// A unique name whose object lives on a master other than node 0, the node the name gives
/// (which stays up when that master is killed): the name, the master and the object's slot.
fn name_on_another_master(cluster: &RedisCluster, tag: &str) -> (String, usize, u16) {
    loop {
        let name = cluster.unique_name(tag);
        let master = cluster.node_of_object(object_of(&name));
        if master != 0 {
            let slot = cluster.slot_of(&format!("memspace:{{{}}}", object_of(&name)));
            return (name, master, slot);
        }
    }
}

/// Waits until the replica of `master` has acknowledged every write made so far: replication
/// is asynchronous, and a master killed before its replica has an object's keys takes the
/// object with it (the promoted replica answers that it does not exist). `WAIT` cannot tell
/// this from another connection than the writers' (it waits for that connection's own writes,
/// none), so the master's replication offset is compared with the one its replica last
/// acknowledged (once a second).
fn replica_catches_up(cluster: &RedisCluster, master: usize) {
    let node = &cluster.nodes()[master];
    let info = node.cli(&["INFO", "replication"]);
    let written: u64 = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("master_repl_offset:"))
        .and_then(|offset| offset.parse().ok())
        .unwrap_or_else(|| panic!("no replication offset in the master's INFO: {info}"));
    wait_until(
        "the replica to acknowledge every write of its master",
        || {
            // `slave0:ip=...,port=...,state=online,offset=N,lag=0`
            node.cli(&["INFO", "replication"])
                .lines()
                .filter_map(|line| line.trim().strip_prefix("slave0:"))
                .flat_map(|line| line.split(','))
                .find_map(|part| part.strip_prefix("offset="))
                .and_then(|offset| offset.parse::<u64>().ok())
                .is_some_and(|acknowledged| acknowledged >= written)
        },
    );
}

/// Waits until a node other than the killed `master` owns `slot`.
fn wait_until_taken_over(cluster: &RedisCluster, master: usize, slot: u16) {
    wait_until("a replica to take over the slot", || {
        cluster.owners().iter().enumerate().any(|(node, ranges)| {
            node != master
                && ranges
                    .iter()
                    .any(|(first, last)| (*first..=*last).contains(&slot))
        })
    });
}

/// Prints what each live node (all but the killed `master`) holds of `slot`, and how it sees
/// the cluster: what a failover test that waited in vain shows.
fn show_slot(cluster: &RedisCluster, master: usize, slot: u16) {
    for node in (0..cluster.nodes().len()).filter(|node| *node != master) {
        eprintln!(
            "node {node}: keys of slot {slot}: {:?}\n{}",
            cluster.keys_in_slot(node, slot),
            cluster.nodes()[node].cli(&["CLUSTER", "NODES"])
        );
    }
}

/// A cluster master dies, and a server outside the cluster takes its address (on one machine,
/// another program's server on the port it left): a client that knew the dead master must
/// not take that server's empty answers for the object's, but find the promoted replica.
#[test]
fn a_server_outside_the_cluster_at_a_dead_masters_address_is_not_taken_for_it() {
    let _dog = Watchdog::start();
    let mut cluster = RedisCluster::start_with_replicas(1);
    let (name, master, slot) = name_on_another_master(&cluster, "cluster-impostor");
    let list = SharedList::<u64>::create(&name).expect("create");
    list.extend(0..100u64).expect("extend");
    // This handle now talks to the master; its replica has every item.
    assert_eq!(list.len().expect("len"), 100);
    replica_catches_up(&cluster, master);
    let port = cluster.nodes()[master].port();
    cluster.kill_node(master);
    let impostor = RedisServer::start_with(ServerOptions {
        port: Some(port),
        ..ServerOptions::default()
    });
    assert_eq!(impostor.port(), port);
    wait_until_taken_over(&cluster, master, slot);
    // Until the other nodes learn of the promotion they may still redirect to the old
    // address; then the list answers from the promoted replica.
    let waited = Instant::now();
    let answered = loop {
        match list.len() {
            Ok(len) => break len,
            Err(err) if waited.elapsed() > WAIT_LIMIT => {
                show_slot(&cluster, master, slot);
                panic!(
                    "the list did not answer from the promoted replica within {WAIT_LIMIT:?}; \
                     its last answer: {err}"
                );
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(answered, 100, "what the list answered");
    assert_eq!(list.to_vec().expect("read"), (0..100).collect::<Vec<u64>>());
}

#[test]
fn a_writer_goes_on_after_a_cluster_master_fails_over_to_its_replica() {
    if roles::role().is_some() {
        writer::run_child(refused_as_cluster_down);
        return;
    }
    let _dog = Watchdog::start();
    // Each step is logged with its time, so that a run the watchdog ends shows where it was.
    let began = Instant::now();
    let step = |what: &str| eprintln!("{:>6.2?} {what}", began.elapsed());
    let mut cluster = RedisCluster::start_with_replicas(1);
    step("the cluster runs");
    let (name, master, slot) = name_on_another_master(&cluster, "cluster-failover");
    let list = SharedList::<u64>::create(&name).expect("create");
    let writer = Writer::start(&name, "cluster-failover");
    wait_until("the writer's first pushes", || {
        list.len().unwrap_or(0) >= 200
    });
    step("the writer pushed 200 items");
    // The test is about a writer going on across a failover, not about asynchronous
    // replication: the replica catches up first (pushes made after this may still be lost,
    // which `lost_in_one_run` reports).
    replica_catches_up(&cluster, master);
    step("its replica caught up");
    cluster.kill_node(master);
    step("its master is killed");
    wait_until_taken_over(&cluster, master, slot);
    step("a replica owns the slot");
    // The other nodes learn of the promotion by gossip, later on a loaded machine: until then
    // a node may redirect to the dead master, or refuse with CLUSTERDOWN. Bounded below the
    // watchdog's minute, so that a run that waits in vain says what the list answered.
    let answering = Instant::now();
    let promoted = loop {
        match list.len() {
            Ok(len) => break len,
            Err(err) if answering.elapsed() > Duration::from_secs(40) => {
                show_slot(&cluster, master, slot);
                panic!("the list did not answer on the promoted replica in 40 s: {err}");
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    step("the list answers on the promoted replica");
    wait_until("the writer to go on after the failover", || {
        list.len().unwrap_or(0) >= promoted + 200
    });
    step("the writer went on");
    let pushes = writer.stop();
    step("the writer stopped");
    let stored = list
        .to_vec()
        .expect("read the list on the promoted replica");
    let lost_pushes = lost_in_one_run(&pushes, &stored);
    println!(
        "cluster failover: {} pushes acknowledged, {} lost {lost_pushes:?}, {} uncertain, {} \
         refused while the slot had no master",
        pushes.acknowledged.len(),
        lost_pushes.len(),
        pushes.uncertain.len(),
        pushes.not_applied
    );
}
