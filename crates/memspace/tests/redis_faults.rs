//! The Redis backend under faults, against a real `redis-server`: the server is killed
//! (`SIGKILL`) and restarted while clients work; a lock holder is killed, or stopped for
//! longer than its lease.

use std::process::Command;
use std::time::{Duration, Instant};

use memspace::collections::Queue;
use memspace::sync::{Event, LeaseError, TryLockError};
use memspace::{Error, Lock, SharedList};

use memspace_testkit::children::wait_until;
use memspace_testkit::redis_server::{self, RedisServer};
use memspace_testkit::writer::{self, Writer};
use memspace_testkit::{ChildGuard, Watchdog, roles};

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

#[test]
fn clients_report_a_killed_server_clearly_and_recover_after_its_restart() {
    let (_dog, mut server) = redis_server::start_test();
    let name = server.unique_name("restart");
    let list = SharedList::<u32>::create(&name).expect("create");
    let queue = Queue::<u32>::create(&server.name("restart-queue")).expect("create a queue");
    for i in 0..50 {
        list.push(&i).expect("push");
    }
    queue.put(&7).expect("put");

    server.kill();
    let err = list
        .push(&50)
        .expect_err("a push with the server down fails");
    let text = err.to_string();
    assert!(matches!(err, Error::RedisUnreachable { .. }), "{err:?}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port()))
            && text.contains(&format!("redis-server --port {}", server.port())),
        "the error names the server and says how to start one: {text}"
    );
    assert!(matches!(list.get(0), Err(Error::RedisUnreachable { .. })));
    assert!(matches!(list.len(), Err(Error::RedisUnreachable { .. })));

    server.restart();
    // Everything acknowledged before the kill is back (append-only file, fsync always).
    assert_eq!(
        list.to_vec().expect("read after restart"),
        (0..50).collect::<Vec<_>>()
    );
    list.push(&50).expect("push after restart");
    assert_eq!(list.len().expect("len"), 51);
    assert_eq!(queue.get().expect("the queued item survived"), 7);
    let lock = Lock::create(&server.name("restart-lock")).expect("create a lock");
    lock.lock()
        .expect("lock after restart")
        .unlock()
        .expect("unlock");
}

#[test]
fn no_acknowledged_push_is_lost_when_the_server_is_killed_and_restarted_mid_run() {
    if roles::role().is_some() {
        writer::run_child(|_| false);
        return;
    }
    let (_dog, mut server) = redis_server::start_test();
    let name = server.unique_name("midrun");
    let list = SharedList::<u64>::create(&name).expect("create");
    let writer = Writer::start(&name, "midrun-writer");
    wait_until("a few pushes", || list.len().expect("len") >= 200);
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    server.restart();
    let resumed = list.len().expect("len");
    wait_until("pushes after the restart", || {
        list.len().expect("len") >= resumed + 200
    });
    let pushes = writer.stop();
    assert!(
        pushes.uncertain.len() + pushes.not_applied > 0,
        "the writer saw the server go away"
    );
    // Acknowledged pushes are all there, in order; a push whose answer was lost may or may
    // not be; nothing else is, and nothing twice.
    pushes.assert_kept_in(&list.to_vec().expect("read the list"));
}

#[test]
fn a_server_that_stops_answering_is_a_timeout_error_and_the_client_recovers() {
    let (_dog, server) = redis_server::start_test();
    let list = SharedList::<u32>::create(&server.unique_name("hung")).expect("create");
    list.push(&1).expect("push");
    signal(server.pid(), "-STOP");
    let asked = Instant::now();
    let err = list.len().expect_err("a stopped server does not answer");
    let waited = asked.elapsed();
    signal(server.pid(), "-CONT");
    assert!(matches!(err, Error::RedisUnreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains("cannot reach the Redis server"),
        "{err}"
    );
    assert!(
        waited >= Duration::from_secs(1),
        "it waited for an answer ({waited:?})"
    );
    list.push(&2).expect("push once the server answers again");
    assert_eq!(list.to_vec().expect("read"), [1, 2]);
}

/// The lease of the locks below.
const LEASE_MS: u64 = 400;

/// Child role: takes the lock, reports its token on the list, then waits for the event and
/// reports what `check` and `unlock` say.
fn hold_lock_child(base: &str) {
    let lock = Lock::open(&format!("{base}.lock?lease_ms={LEASE_MS}")).expect("open the lock");
    let report = SharedList::<String>::open(&format!("{base}.report")).expect("open the report");
    let resume = Event::open(&format!("{base}.resume")).expect("open the event");
    let guard = lock.lock().expect("lock");
    let token = guard.fencing_token().expect("a Redis lock has tokens");
    report.push(&token.to_string()).expect("report the token");
    resume.wait().expect("wait");
    let checked = guard.check();
    let unlocked = guard.unlock();
    let outcome = match (checked, unlocked) {
        (Err(LeaseError::Lost { .. }), Err(LeaseError::Lost { .. })) => "lost".to_owned(),
        other => format!("{other:?}"),
    };
    report.push(&outcome).expect("report the outcome");
}

/// A lock on `server` taken by a child in role `hold`; returns once the child holds it: the
/// lock, the child's report (its fencing token first), the event that lets it go on, the
/// child, and its token.
fn held_by_a_child(server: &RedisServer) -> (Lock, SharedList<String>, Event, ChildGuard, u64) {
    let base = server.unique_name("lease");
    let lock = Lock::create(&format!("{base}.lock?lease_ms={LEASE_MS}")).expect("create");
    let report =
        SharedList::<String>::create(&format!("{base}.report")).expect("create the report");
    let resume = Event::create(&format!("{base}.resume")).expect("create the event");
    let holder = roles::child_in_role("hold", &[(roles::SEGMENT, &base)]);
    wait_until("the child to hold the lock", || {
        report.len().expect("len") == 1
    });
    let token = report
        .get(0)
        .expect("read")
        .expect("the token")
        .parse()
        .expect("a number");
    (lock, report, resume, holder, token)
}

#[test]
fn a_sigkilled_lock_holder_loses_its_lease_after_the_ttl_and_the_next_owner_gets_a_larger_token() {
    if roles::role().is_some() {
        hold_lock_child(&roles::role_segment());
        return;
    }
    let (_dog, server) = redis_server::start_test();
    let (lock, _report, _resume, mut holder, child_token) = held_by_a_child(&server);
    assert_eq!(lock.owner().expect("owner"), Some(holder.pid()));
    // The holder keeps its lease by renewing it: three leases later it still holds it.
    std::thread::sleep(Duration::from_millis(3 * LEASE_MS));
    assert!(matches!(
        lock.try_lock(),
        Err(TryLockError::WouldBlock { .. })
    ));

    holder.kill();
    let killed = Instant::now();
    let guard = lock
        .try_lock_for(Duration::from_secs(10))
        .expect("the lease expires");
    let waited = killed.elapsed();
    let token = guard.fencing_token().expect("a token");
    assert!(
        token > child_token,
        "next token {token} > dead holder's {child_token}"
    );
    assert!(
        waited >= Duration::from_millis(LEASE_MS / 4),
        "the lock was not free before the lease ran out ({waited:?})"
    );
    guard.unlock().expect("unlock");
}

#[test]
fn a_holder_stopped_past_its_lease_is_told_it_lost_the_lock() {
    if roles::role().is_some() {
        hold_lock_child(&roles::role_segment());
        return;
    }
    let (_dog, server) = redis_server::start_test();
    let (lock, report, resume, holder, child_token) = held_by_a_child(&server);

    // A pause longer than the lease: the child cannot renew, and the lock passes on.
    signal(holder.pid(), "-STOP");
    let guard = lock
        .try_lock_for(Duration::from_secs(10))
        .expect("the stopped holder's lease expires");
    assert!(guard.fencing_token() > Some(child_token));
    signal(holder.pid(), "-CONT");
    resume.set().expect("set");
    wait_until("the child's verdict", || report.len().expect("len") == 2);
    assert_eq!(report.get(1).expect("read").as_deref(), Some("lost"));
    // The stale holder's release did not remove the new holder's lease.
    assert_eq!(lock.owner().expect("owner"), Some(std::process::id()));
    guard.check().expect("the new holder still holds it");
    guard.unlock().expect("unlock");
}

/// Keeps the server at `url` busy with a script for `busy` (it answers everyone else `BUSY`
/// meanwhile, once its busy-reply threshold has passed).
fn keep_busy(url: &str, busy: Duration) -> std::thread::JoinHandle<()> {
    let client = redis::Client::open(url).expect("a client");
    let micros = busy.as_micros().to_string();
    std::thread::spawn(move || {
        let mut conn = client.get_connection().expect("connect");
        let _: i64 = redis::cmd("EVAL")
            .arg(
                "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] \
                 while true do local n = redis.call('TIME') \
                 if n[1] * 1000000 + n[2] - start > tonumber(ARGV[1]) then return 1 end end",
            )
            .arg(0)
            .arg(micros)
            .query(&mut conn)
            .expect("the busy script");
    })
}

/// A server that answers BUSY once a script has run for 100 ms, and a connection to it.
fn server_soon_busy() -> (RedisServer, redis::Connection) {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).expect("a client");
    let mut admin = client.get_connection().expect("connect");
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg(100)
        .query(&mut admin)
        .expect("lower the busy-reply threshold");
    (server, admin)
}

#[test]
fn a_lease_outlives_a_server_busy_with_a_long_script() {
    let _dog = Watchdog::start();
    let (server, _admin) = server_soon_busy();
    let name = format!("{}?lease_ms=1500", server.name("busy-lock"));
    let lock = Lock::create(&name).expect("create the lock");
    let guard = lock.lock().expect("lock");
    let token = guard.fencing_token();
    // The script outlasts the renewals due at 0.5 s and 1 s; the server answers them BUSY.
    let busy = keep_busy(&server.url(), Duration::from_millis(1200));
    let other = std::thread::spawn(move || {
        let lock = Lock::open(&name).expect("open the lock");
        match lock.try_lock_for(Duration::from_secs(3)) {
            Err(TryLockError::Timeout { .. }) => "timeout".to_owned(),
            Ok(guard) => format!("took it, token {:?}", guard.fencing_token()),
            Err(other) => format!("{other}"),
        }
    });
    busy.join().expect("the busy script ends");
    assert_eq!(other.join().expect("the other locker"), "timeout");
    guard.check().expect("the lease is still ours");
    assert_eq!(guard.fencing_token(), token);
    guard.unlock().expect("unlock");
}

#[test]
fn reads_wait_out_a_server_busy_with_a_long_script() {
    let _dog = Watchdog::start();
    let (server, mut admin) = server_soon_busy();
    let list = SharedList::<u32>::create(&server.name("busy-list")).expect("create the list");
    list.extend([1, 2, 3]).expect("extend");
    let queue = Queue::<u32>::create(&server.name("busy-queue")).expect("create the queue");
    queue.put(&4).expect("put");
    let busy = keep_busy(&server.url(), Duration::from_secs(1));
    // The server answers BUSY once the script has run past the threshold.
    loop {
        match redis::cmd("PING").query::<String>(&mut admin) {
            Err(err) if err.code() == Some("BUSY") => break,
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    // A whole-collection read is a transaction, whose commands the server refuses one by one
    // while busy: the client waits, as for any read.
    assert_eq!(list.to_vec().expect("to_vec while busy"), [1, 2, 3]);
    assert_eq!(queue.to_vec().expect("queue to_vec"), [4]);
    assert_eq!(list.len().expect("len"), 3);
    busy.join().expect("the busy script ends");
}
