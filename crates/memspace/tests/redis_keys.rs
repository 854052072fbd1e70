//! The Redis backend when its keys change behind a handle's back, against a real
//! `redis-server`: an object removed while handles to it are open, a lock's key or an object's
//! meta hash written by hand, a map value of another type; and what its errors carry.

use std::error::Error as _;
use std::sync::mpsc;
use std::time::Duration;

use memspace::collections::{Queue, QueueError, SharedMap, Value};
use memspace::sync::{Event, LockError, TryLockError};
use memspace::{Error, Lock, OpenError, SharedList};

use memspace_testkit::redis_server::{self, RedisServer};
use memspace_testkit::unique_name;

/// A connection for writing keys by hand, as an operator with `redis-cli` would.
fn admin(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .expect("a client")
        .get_connection()
        .expect("connect")
}

/// Runs a command by hand, as an operator with `redis-cli` would, and checks that the server
/// carried it out.
fn by_hand(server: &RedisServer, command: &[&str]) {
    let answer = server.command(command);
    assert!(!answer.starts_with('-'), "{command:?}: {answer}");
}

/// The keys memspace made on `server`, sorted.
fn memspace_keys(server: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("memspace:*")
        .query(&mut admin(server))
        .expect("KEYS");
    keys.sort();
    keys
}

/// The part of a test name after `redis://HOST:PORT/`: what the keys are made of.
fn object_of(name: &str) -> &str {
    name.rsplit('/').next().expect("a name")
}

/// The key that holds the data of the object `name` (a lock's lease).
fn items_key(name: &str) -> String {
    format!("memspace:{{{}}}:items", object_of(name))
}

/// Asserts that `result` is `OpenError::NotFound` for `name` (the object was removed).
fn assert_not_found<T: std::fmt::Debug>(what: &str, name: &str, result: Result<T, Error>) {
    assert_gone(what, name, result, false);
}

/// Asserts that `result` is `OpenError::Replaced` for `name` (removed and created again).
fn assert_replaced<T: std::fmt::Debug>(what: &str, name: &str, result: Result<T, Error>) {
    assert_gone(what, name, result, true);
}

fn assert_gone<T: std::fmt::Debug>(what: &str, name: &str, result: Result<T, Error>, again: bool) {
    match (result, again) {
        (Err(Error::Open(OpenError::NotFound { name: found })), false)
        | (Err(Error::Open(OpenError::Replaced { name: found })), true) => {
            assert_eq!(found.as_str(), name, "{what}: the error names the object");
        }
        (other, _) => {
            let expected = if again { "Replaced" } else { "NotFound" };
            panic!("{what}: expected {expected}, got {other:?}");
        }
    }
}

/// Asserts that `update` through `value`, whose object `name` is gone (removed, or created
/// `again`), fails as [`assert_gone`] expects and never runs its change on `what`.
fn assert_update_gone(value: &Value<u64>, name: &str, again: bool, what: &str) {
    let mut changed = false;
    assert_gone(
        "update",
        name,
        value.update(|v| {
            changed = true;
            *v += 1;
        }),
        again,
    );
    assert!(!changed, "update ran its change on {what}");
}

/// The crate's error inside a queue's error.
fn queue_error<T>(result: Result<T, QueueError>) -> Result<T, Error> {
    result.map_err(|err| match err {
        QueueError::Other(err) => err,
        other => panic!("expected a queue error wrapping memspace's, got {other:?}"),
    })
}

#[test]
fn writes_through_handles_of_a_removed_object_fail_and_recreate_no_key() {
    let (_dog, server) = redis_server::start_test();
    let name = |tag: &str| server.unique_name(tag);
    let (list_name, map_name, queue_name, value_name, event_name) = (
        name("list"),
        name("map"),
        name("queue"),
        name("value"),
        name("event"),
    );
    let list = SharedList::<u32>::create(&list_name).expect("create the list");
    let map = SharedMap::<String, u32>::create(&map_name).expect("create the map");
    let queue = Queue::<u32>::create(&queue_name).expect("create the queue");
    let value = Value::create(&value_name, 1u64).expect("create the value");
    let event = Event::create(&event_name).expect("create the event");
    list.push(&1).expect("push");
    map.insert(&"a".to_owned(), &1).expect("insert");
    queue.put(&1).expect("put");

    // Removed through other handles, as `memspace rm` in another process would.
    SharedList::<u32>::open(&list_name)
        .expect("open")
        .unlink()
        .expect("unlink");
    memspace::remove(&map_name).expect("rm the map");
    memspace::remove(&queue_name).expect("rm the queue");
    memspace::remove(&value_name).expect("rm the value");
    memspace::remove(&event_name).expect("rm the event");
    assert_eq!(memspace_keys(&server), Vec::<String>::new());

    assert_not_found("push", &list_name, list.push(&2));
    assert_not_found("extend", &list_name, list.extend([3, 4]));
    let key = "a".to_owned();
    assert_not_found("insert", &map_name, map.insert(&key, &2));
    assert_not_found("remove", &map_name, map.remove(&key));
    assert_not_found("clear", &map_name, map.clear());
    assert_not_found("put after removal", &queue_name, queue_error(queue.put(&2)));
    assert_not_found("set", &value_name, value.set(2));
    assert_update_gone(&value, &value_name, false, "a removed value");
    assert_not_found("set", &event_name, event.set());
    assert_not_found("clear", &event_name, event.clear());

    let err = list.push(&5).expect_err("a push after removal");
    assert!(
        err.to_string().contains("does not exist"),
        "the message says the object is gone: {err}"
    );
    assert_eq!(
        memspace_keys(&server),
        Vec::<String>::new(),
        "a failed write left a key behind"
    );
    // The name can be created afresh, and the new object starts empty; the old handle refers
    // to the object that is gone, and writes nothing into the new one.
    let again = SharedList::<u32>::create(&list_name).expect("create again");
    assert_eq!(again.to_vec().expect("read"), Vec::<u32>::new());
    match list.push(&6) {
        Err(Error::Open(OpenError::Replaced { name })) => assert_eq!(name.as_str(), list_name),
        other => panic!("push through the old handle: expected Replaced, got {other:?}"),
    }
    assert_eq!(again.to_vec().expect("read"), Vec::<u32>::new());
    // Nor into an object of another kind made under the name: a map's `clear` would
    // otherwise delete a new queue's stream, and a value's `set` overwrite a new list.
    let queue_again = Queue::<u32>::create(&map_name).expect("a queue where the map was");
    queue_again.put(&7).expect("put");
    assert!(matches!(
        map.clear(),
        Err(Error::Open(OpenError::Replaced { .. }))
    ));
    assert_eq!(queue_again.get().expect("the queue kept its item"), 7);
    let list_again = SharedList::<u32>::create(&value_name).expect("a list where the value was");
    list_again.push(&8).expect("push");
    assert!(matches!(
        value.set(9),
        Err(Error::Open(OpenError::Replaced { .. }))
    ));
    assert!(matches!(
        value.get(),
        Err(Error::Open(OpenError::Replaced { .. }))
    ));
    assert_eq!(list_again.to_vec().expect("read"), [8]);
    for name in [&list_name, &map_name, &value_name] {
        memspace::remove(name).expect("rm");
    }
}

#[test]
fn reads_waits_and_locks_on_a_removed_object_say_it_was_removed() {
    let (_dog, server) = redis_server::start_test();
    let name = |tag: &str| server.unique_name(tag);
    let (queue_name, event_name, lock_name) = (name("queue"), name("event"), name("lock"));
    let queue = Queue::<u32>::create(&queue_name).expect("create the queue");
    let event = Event::create(&event_name).expect("create the event");
    let lock = Lock::create(&lock_name).expect("create the lock");

    // A receiver blocked in the server, and an event waiter polling, when the objects go away
    // end with the error too.
    let receiver = {
        let queue = queue.clone();
        std::thread::spawn(move || queue.get().map_err(|err| err.to_string()))
    };
    let waiter = {
        let event = event.clone();
        std::thread::spawn(move || event.wait())
    };
    // The receiver is blocked in the server once `INFO` counts a blocked client.
    let mut admin = admin(&server);
    while !redis::cmd("INFO")
        .arg("clients")
        .query::<String>(&mut admin)
        .expect("INFO")
        .lines()
        .any(|line| line.starts_with("blocked_clients:") && line != "blocked_clients:0")
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    for removed in [&queue_name, &event_name, &lock_name] {
        memspace::remove(removed).expect("rm");
    }
    let got = receiver.join().expect("the receiver");
    assert!(
        got.as_ref()
            .is_err_and(|err| err.contains("does not exist")),
        "a receiver blocked on a removed queue: {got:?}"
    );
    assert_not_found(
        "a blocked wait",
        &event_name,
        waiter.join().expect("waiter"),
    );

    assert_not_found(
        "try_get after removal",
        &queue_name,
        queue_error(queue.try_get()),
    );
    assert_not_found("is_set", &event_name, event.is_set());
    assert_not_found("len", &queue_name, queue.len());
    assert_not_found("to_vec", &queue_name, queue.to_vec());
    assert_not_found(
        "wait_timeout",
        &event_name,
        event.wait_timeout(Duration::from_secs(1)),
    );
    match lock.try_lock() {
        Err(TryLockError::Lock(LockError::Unavailable {
            name,
            detail,
            source,
        })) => {
            assert_eq!(name.as_str(), lock_name);
            assert!(detail.contains("removed"), "{detail}");
            let source = source.expect("a source");
            assert!(
                matches!(
                    source.downcast_ref::<Error>(),
                    Some(Error::Open(OpenError::NotFound { .. }))
                ),
                "{source:?}"
            );
        }
        other => panic!("try_lock after removal: expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        memspace_keys(&server)
            .iter()
            .filter(|key| !key.ends_with(":fence"))
            .count(),
        0,
        "a read, a wait or a lock attempt recreated a key: {:?}",
        memspace_keys(&server)
    );
}

#[test]
fn handles_opened_before_a_name_was_created_again_leave_the_new_object_alone() {
    let (_dog, server) = redis_server::start_test();
    let name = |tag: &str| server.unique_name(tag);
    let (value_name, event_name, lock_name, queue_name) =
        (name("value"), name("event"), name("lock"), name("queue"));
    let (list_name, map_name) = (name("list"), name("map"));
    let list = SharedList::<u32>::create(&list_name).expect("create the list");
    let map = SharedMap::<String, u32>::create(&map_name).expect("create the map");
    list.push(&1).expect("push");
    map.insert(&"a".to_owned(), &1).expect("insert");
    let value = Value::create(&value_name, 1u64).expect("create the value");
    let event = Event::create(&event_name).expect("create the event");
    let lock = Lock::create(&lock_name).expect("create the lock");
    let queue = Queue::<u32>::create(&queue_name).expect("create the queue");
    queue.put(&1).expect("put");
    let delivery = queue.receive().expect("receive");

    let all = [
        &value_name,
        &event_name,
        &lock_name,
        &queue_name,
        &list_name,
        &map_name,
    ];
    for gone in all {
        memspace::remove(gone).expect("rm");
    }
    // Reads through the old handles of a removed list and map say so.
    assert_not_found("list len", &list_name, list.len());
    assert_not_found("list to_vec", &list_name, list.to_vec());
    assert_not_found("list get", &list_name, list.get(0));
    assert_not_found("map get", &map_name, map.get(&"a".to_owned()));
    assert_not_found("map len", &map_name, map.len());
    // Created again, one as another kind: the old handles read neither.
    let new_list = SharedList::<u32>::create(&list_name).expect("create the list again");
    new_list.push(&5).expect("push");
    Queue::<u32>::create(&map_name).expect("a queue where the map was");
    assert_replaced("list to_vec", &list_name, list.to_vec());
    assert_replaced("map to_hash_map", &map_name, map.to_hash_map());
    assert_replaced(
        "map contains_key",
        &map_name,
        map.contains_key(&"a".to_owned()),
    );
    let new_value = Value::create(&value_name, 10u64).expect("create the value again");
    let new_event = Event::create(&event_name).expect("create the event again");
    Lock::create(&lock_name).expect("create the lock again");
    let new_queue = Queue::<u32>::create(&queue_name).expect("create the queue again");
    new_queue.put(&2).expect("put into the new queue");

    assert_update_gone(&value, &value_name, true, "another object");
    assert_eq!(new_value.get().expect("get"), 10);
    assert_replaced("set", &event_name, event.set());
    assert!(
        !new_event.is_set().expect("is_set"),
        "the old handle set the new event"
    );
    assert_replaced("is_set", &event_name, event.is_set());
    match lock.try_lock() {
        Err(TryLockError::Lock(LockError::Unavailable { detail, source, .. })) => {
            assert!(detail.contains("open it again"), "{detail}");
            assert!(
                matches!(
                    source.as_deref().and_then(|s| s.downcast_ref::<Error>()),
                    Some(Error::Open(OpenError::Replaced { .. }))
                ),
                "{source:?}"
            );
        }
        other => panic!("try_lock after re-creation: expected Unavailable, got {other:?}"),
    }
    assert_replaced(
        "ack after re-creation",
        &queue_name,
        queue_error(delivery.ack()),
    );
    assert_replaced(
        "try_get after re-creation",
        &queue_name,
        queue_error(queue.try_get()),
    );
    assert_eq!(new_queue.get().expect("the new queue kept its item"), 2);
    // Removing through an old handle leaves the new object alone too.
    assert_replaced("list unlink", &list_name, list.unlink());
    assert_replaced("value unlink", &value_name, value.unlink());
    assert_replaced("event unlink", &event_name, event.unlink());
    assert_replaced("queue unlink", &queue_name, queue.unlink());
    assert_eq!(new_list.to_vec().expect("the new list is still there"), [5]);
    assert_eq!(new_value.get().expect("the new value is still there"), 10);
    for gone in all {
        memspace::remove(gone).expect("rm");
    }
}

#[test]
fn a_value_update_on_a_missing_key_fails_without_writing() {
    let (_dog, server) = redis_server::start_test();
    let name = server.unique_name("value");
    let value = Value::create(&name, 7u64).expect("create");
    let items = items_key(&name);
    by_hand(&server, &["DEL", &items]);

    let mut changed = false;
    let err = value
        .update(|v| {
            changed = true;
            *v += 1;
        })
        .expect_err("an update of a missing value fails");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&name), "{err}");
    assert!(!changed, "the change ran on a value that is not there");
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&items)
        .query(&mut admin(&server))
        .expect("EXISTS");
    assert_eq!(exists, 0, "the failed update wrote the value key");

    // Bytes of another size: reported, and left as they are. A `SET`, even of the same bytes,
    // would drop the key's expiry.
    by_hand(&server, &["SET", &items, "abc", "EX", "1000"]);
    let err = value
        .update(|v| *v += 1)
        .expect_err("3 bytes are not a u64");
    assert!(err.to_string().contains("3 bytes"), "{err}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&items)
        .query(&mut admin(&server))
        .expect("PTTL");
    assert!(
        ttl > 0,
        "the failed update rewrote the value key (PTTL {ttl})"
    );
}

/// A lock on `server`: its name, a handle to it, and the key of its lease.
fn new_lock(server: &RedisServer) -> (String, Lock, String) {
    let name = server.unique_name("lock");
    let lock = Lock::create(&name).expect("create");
    let key = items_key(&name);
    (name, lock, key)
}

/// Runs `attempt` on a thread, with a fresh handle to lock `name`, and returns what it
/// returned, or panics if it has not returned within 10 s (a lock that waits for ever on a key
/// nobody will remove).
fn within_10_s(
    what: &str,
    name: &str,
    attempt: impl FnOnce(&Lock) -> String + Send + 'static,
) -> String {
    let name = name.to_owned();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(attempt(&Lock::open(&name).expect("open")));
    });
    receiver
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} is still waiting after 10 s"))
}

#[test]
fn junk_without_expiry_in_a_lock_key_is_reported_naming_the_key_and_the_fix() {
    let (_dog, server) = redis_server::start_test();
    let (name, lock, key) = new_lock(&server);
    by_hand(&server, &["SET", &key, "junk"]);

    let outcome = within_10_s("lock()", &name, |lock| match lock.lock() {
        Ok(_) => "acquired".to_owned(),
        Err(err) => format!("{err:?}\n{err}"),
    });
    assert!(outcome.starts_with("CorruptLease"), "{outcome}");
    assert!(
        outcome.contains(&key) && outcome.contains(&format!("memspace rm {name}")),
        "the error names the key and says how to remove it: {outcome}"
    );
    assert!(matches!(
        lock.try_lock_for(Duration::from_millis(50)),
        Err(TryLockError::Lock(LockError::CorruptLease { .. }))
    ));
    assert!(matches!(
        lock.try_lock(),
        Err(TryLockError::Lock(LockError::CorruptLease { .. }))
    ));

    // `inspect` shows what blocks the lock.
    let memspace::inspect::Description::Redis { fields, .. } =
        memspace::inspect::describe(&name, &memspace::SegmentOptions::new()).expect("describe")
    else {
        panic!("{name} is described as a Redis object");
    };
    let held = fields
        .iter()
        .find(|(what, _)| *what == "held")
        .map(|(_, value)| value.as_str());
    assert_eq!(
        held,
        Some(
            format!(
                "blocked by the string \"junk\", which memspace did not write; it never \
                 expires: remove the lock with `memspace rm {name}`"
            )
            .as_str()
        )
    );

    // What the message says to do works.
    memspace::remove(&name).expect("rm");
    let lock = Lock::create(&name).expect("create again");
    lock.lock().expect("lock").unlock().expect("unlock");
}

#[test]
fn a_lock_key_of_another_type_is_reported_and_a_lease_made_persistent_too() {
    let (_dog, server) = redis_server::start_test();
    let (name, lock, key) = new_lock(&server);
    by_hand(&server, &["RPUSH", &key, "x"]);
    let outcome = within_10_s("try_lock_for", &name, |lock| {
        match lock.try_lock_for(Duration::from_secs(5)) {
            Err(TryLockError::Lock(LockError::CorruptLease { .. })) => "corrupt".to_owned(),
            Err(other) => format!("{other:?}"),
            Ok(_) => "acquired".to_owned(),
        }
    });
    assert_eq!(outcome, "corrupt");

    // A lease in the form the lock writes, but without its expiry (a holder's lease after a
    // `PERSIST`): nobody would ever take the lock again.
    by_hand(&server, &["SET", &key, "4242:0a1b:7"]);
    let err = lock
        .try_lock_for(Duration::from_secs(5))
        .map(drop)
        .expect_err("a lease that never expires");
    assert!(
        matches!(err, TryLockError::Lock(LockError::CorruptLease { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("a lease of pid 4242 (fencing token 7)"),
        "{err}"
    );
}

#[test]
fn junk_with_an_expiry_in_a_lock_key_holds_the_lock_until_it_expires() {
    let (_dog, server) = redis_server::start_test();
    let (_, lock, key) = new_lock(&server);
    by_hand(&server, &["SET", &key, "junk", "PX", "600"]);
    assert!(matches!(
        lock.try_lock(),
        Err(TryLockError::WouldBlock { .. })
    ));
    assert!(matches!(
        lock.try_lock_for(Duration::from_millis(20)),
        Err(TryLockError::Timeout { .. })
    ));
    let guard = lock
        .try_lock_for(Duration::from_secs(10))
        .expect("the junk expires and the lock is free");
    guard.unlock().expect("unlock");
}

#[test]
fn an_unavailable_lock_keeps_the_redis_error_as_its_source() {
    let (_dog, mut server) = redis_server::start_test();
    let lock = Lock::create(&server.unique_name("lock")).expect("create");
    server.kill();
    let err = lock.try_lock().map(drop).expect_err("no server: no lock");
    assert!(
        matches!(err, TryLockError::Lock(LockError::Unavailable { .. })),
        "{err:?}"
    );
    let cause = err.source().expect("the error has a source");
    let cause = cause
        .downcast_ref::<Error>()
        .expect("the source is memspace's error");
    assert!(matches!(cause, Error::RedisUnreachable { .. }), "{cause:?}");
    assert!(
        cause.source().is_some(),
        "the chain goes down to the client's error"
    );
    assert!(
        !err.to_string().contains(&cause.to_string()),
        "the message does not repeat its source's: {err}"
    );
    // Through `?` into memspace's error the chain is the same.
    let err = Error::from(err);
    let cause = err.source().expect("the converted error has a source");
    assert!(
        cause.to_string().contains("cannot reach the Redis server"),
        "{cause}"
    );
}

#[test]
fn a_lease_this_thread_holds_is_would_deadlock_whatever_the_server_is_called() {
    let (_dog, server) = redis_server::start_test();
    let object = unique_name("lock");
    let by_address = server.name(&object);
    let by_host = format!("redis://localhost:{}/{object}", server.port());
    let lock = Lock::create(&by_address).expect("create");
    let guard = lock.lock().expect("lock");
    let same = Lock::open(&by_host).expect("open by host name");
    assert!(
        matches!(
            same.try_lock(),
            Err(TryLockError::Lock(LockError::WouldDeadlock { .. }))
        ),
        "the lease this thread holds, reached through `localhost`"
    );
    guard.unlock().expect("unlock");
    same.lock().expect("free again").unlock().expect("unlock");
    memspace::remove(&by_address).expect("rm");
}

#[test]
fn a_fencing_counter_set_below_zero_by_hand_is_reported_and_no_lease_is_taken() {
    let (_dog, server) = redis_server::start_test();
    let name = server.unique_name("lock");
    let lock = Lock::create(&name).expect("create");
    let object = object_of(&name);
    let fence = format!("memspace:{{{object}}}:fence");
    by_hand(&server, &["SET", &fence, "-5"]);
    let err = lock.try_lock().map(drop).expect_err("a token below 1");
    assert!(
        matches!(err, TryLockError::Lock(LockError::Unavailable { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&fence) && text.contains("redis-cli SET"),
        "the error names the counter and says how to repair it: {text}"
    );
    let err = lock.try_lock().map(drop).expect_err("refused again");
    assert!(
        matches!(err, TryLockError::Lock(LockError::Unavailable { .. })),
        "{err:?}"
    );
    let counter: i64 = redis::cmd("GET")
        .arg(&fence)
        .query(&mut admin(&server))
        .expect("GET");
    assert_eq!(counter, -5, "a refused attempt left the counter as it was");
    assert!(
        !memspace_keys(&server).contains(&items_key(&name)),
        "a lease was taken with a token below 1"
    );
    memspace::remove(&name).expect("rm");
}

/// Sets `field` of `name`'s meta hash to `value`, or removes it (`None`).
fn set_meta_field(server: &RedisServer, name: &str, field: &str, value: Option<&str>) {
    let meta = format!("memspace:{{{}}}", object_of(name));
    let mut command = redis::cmd(if value.is_some() { "HSET" } else { "HDEL" });
    command.arg(&meta).arg(field);
    if let Some(value) = value {
        command.arg(value);
    }
    let _: u64 = command
        .query(&mut admin(server))
        .expect("write the meta hash");
}

#[test]
fn a_damaged_meta_hash_is_reported_naming_the_object_and_the_field() {
    let (_dog, server) = redis_server::start_test();
    let cases: [(&str, Option<&str>); 10] = [
        ("size", None),
        ("size", Some("many")),
        ("capacity", None),
        ("capacity", Some("-")),
        ("version", None),
        ("version", Some("one")),
        ("kind", None),
        ("kind", Some("blob")),
        ("type", None),
        ("incarnation", None),
    ];
    for (field, value) in cases {
        let name = server.unique_name("meta");
        SharedList::<u32>::create(&name).expect("create");
        set_meta_field(&server, &name, field, value);
        match SharedList::<u32>::open(&name) {
            Err(err @ Error::Corrupt { .. }) => {
                let text = err.to_string();
                assert!(
                    text.contains(&name) && text.contains(&format!("`{field}`")),
                    "{field} = {value:?}: the error names the object and the field: {text}"
                );
            }
            other => panic!("{field} = {value:?}: expected Corrupt, got {other:?}"),
        }
        // What the message says to do works on a damaged object.
        memspace::remove(&name).expect("rm a damaged object");
    }

    // A version this build does not know is another layout, not damage.
    let name = server.unique_name("meta");
    SharedList::<u32>::create(&name).expect("create");
    set_meta_field(&server, &name, "version", Some("3"));
    match SharedList::<u32>::open(&name) {
        Err(Error::Open(OpenError::VersionMismatch {
            found: 3,
            expected: 2,
            ..
        })) => {}
        other => panic!("version 3: expected VersionMismatch, got {other:?}"),
    }

    // A meta key that is not a hash at all.
    let name = server.unique_name("meta");
    let () = redis::cmd("SET")
        .arg(format!("memspace:{{{}}}", object_of(&name)))
        .arg("junk")
        .query(&mut admin(&server))
        .expect("SET");
    match SharedList::<u32>::open(&name) {
        Err(err @ Error::Corrupt { .. }) => {
            assert!(err.to_string().contains("not a hash"), "{err}");
        }
        other => panic!("a string meta key: expected Corrupt, got {other:?}"),
    }
    memspace::remove(&name).expect("rm a meta key that is not a hash");
    let meta = format!("memspace:{{{}}}", object_of(&name));
    assert!(
        !memspace_keys(&server).contains(&meta),
        "rm removed the meta key"
    );
}

#[test]
fn a_map_value_of_another_type_names_its_key() {
    let (_dog, server) = redis_server::start_test();
    let name = server.unique_name("map");
    let numbers = SharedMap::<String, u32>::create(&name).expect("create");
    numbers.insert(&"ada".to_owned(), &36).expect("insert");
    let texts = SharedMap::<String, String>::open(&name).expect("open");
    let key = "ada".to_owned();
    for (what, result) in [
        ("get", texts.get(&key)),
        ("insert", texts.insert(&key, &"x".to_owned())),
    ] {
        let err = result.expect_err("a u32 read as a String");
        let text = err.to_string();
        assert!(
            text.contains("\"ada\"") && text.contains(&name) && !text.contains("item 0"),
            "{what}: the error names the key: {text}"
        );
    }
    numbers.insert(&"bob".to_owned(), &7).expect("insert");
    let err = texts
        .remove(&"bob".to_owned())
        .expect_err("a u32 read as a String");
    assert!(err.to_string().contains("\"bob\""), "{err}");
}

#[test]
fn a_data_key_of_another_type_is_damage_for_every_read() {
    let (_dog, server) = redis_server::start_test();
    let name = server.unique_name("list");
    let list = SharedList::<u32>::create(&name).expect("create");
    let key = items_key(&name);
    by_hand(&server, &["SET", &key, "x"]);
    for (what, outcome) in [
        ("len", list.len().map(drop)),
        ("get", list.get(0).map(drop)),
        ("to_vec", list.to_vec().map(drop)),
    ] {
        match outcome {
            Err(Error::Corrupt {
                name: found,
                what: why,
            }) => {
                assert_eq!(found.as_str(), name, "{what}");
                assert!(why.contains("another type"), "{what}: {why}");
            }
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
    }
    memspace::remove(&name).expect("rm");
}
