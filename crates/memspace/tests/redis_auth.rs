//! Redis as it is deployed: a server with a password, one with ACL users, a unix socket,
//! database numbers. Each test starts its own `redis-server` on a free loopback port; every
//! error, `Debug` and `Display` the tests provoke is checked for the password (`hunter2`),
//! and a child started with the spawn start method gets a handle without the password ever
//! reaching its command line or its environment.

#![allow(
    clippy::needless_pass_by_value,
    reason = "worker targets take their arguments by value: that is how workers receive them"
)]

use memspace::collections::{Queue, SharedMap, Value};
use memspace::spawn::StartMethod;
use memspace::sync::Event;
use memspace::{AuthProblem, Backend, Error, Lock, OpenError, SharedList};
use memspace_testkit::redis_server::{RedisServer, ServerOptions, assert_hides_password};
use memspace_testkit::{Running, start_test, unique_name};

/// The password of every test server here.
const PASSWORD: &str = "hunter2";

/// A server whose default user needs [`PASSWORD`].
fn password_server() -> RedisServer {
    RedisServer::start_with(ServerOptions {
        requirepass: Some(PASSWORD.to_owned()),
        ..ServerOptions::default()
    })
}

/// Checks that neither the `Display` (with its sources) nor the `Debug` of `err` holds the
/// password, and returns the `Display`.
fn without_password(what: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut shown = vec![format!("{err} {err:?}")];
    let mut source = err.source();
    while let Some(cause) = source {
        shown.push(format!("{cause} {cause:?}"));
        source = cause.source();
    }
    assert_hides_password(what, &shown.join(" "));
    err.to_string()
}

/// The [`AuthProblem`] of `outcome`, which must be an [`Error::RedisAuth`] that hides the
/// password.
fn auth_problem<T>(what: &str, outcome: memspace::Result<T>) -> AuthProblem {
    let Err(err) = outcome else {
        panic!("{what} succeeded");
    };
    let message = without_password(what, &err);
    match err {
        Error::RedisAuth { problem, .. } => *problem,
        other => panic!("{what}: not an authentication error: {message} ({other:?})"),
    }
}

#[test]
fn a_password_server_takes_the_right_password_and_says_which_is_missing_or_wrong() {
    let _dog = start_test();
    let server = password_server();
    let object = unique_name("auth");
    let right = format!("{}/{object}", server.url_as(":hunter2"));
    let list = SharedList::<u64>::create(&right).expect("create with the right password");
    list.push(&7).expect("push");
    assert_eq!(list.to_vec().expect("read"), [7]);

    assert_eq!(
        auth_problem(
            "no password",
            SharedList::<u64>::open(&server.name(&object))
        ),
        AuthProblem::PasswordMissing
    );
    let message = without_password(
        "no password",
        &SharedList::<u64>::open(&server.name(&object)).expect_err("no password"),
    );
    assert!(message.contains("needs a password"), "{message}");
    assert!(!message.contains("NOAUTH"), "{message}");
    assert_eq!(
        auth_problem(
            "wrong password",
            SharedList::<u64>::open(&format!("{}/{object}", server.url_as(":hunter3")))
        ),
        AuthProblem::WrongPassword
    );
    assert_eq!(
        auth_problem(
            "an unknown user",
            SharedList::<u64>::open(&format!("{}/{object}", server.url_as("nobody:hunter2")))
        ),
        AuthProblem::UserRefused {
            user: "nobody".to_owned()
        }
    );
    // The server-wide listing says the same, naming the server rather than an object.
    let listing = memspace::inspect::list_objects(&server.url()).expect_err("no password");
    let message = without_password("ls", &listing);
    assert!(
        message.contains(&server.url()) && !message.contains("`ls`"),
        "{message}"
    );
    assert!(
        matches!(&listing, Error::RedisAuth { problem, .. } if **problem == AuthProblem::PasswordMissing),
        "{listing:?}"
    );
    list.unlink().expect("remove");
}

#[test]
fn a_password_given_to_a_server_without_one_is_reported_as_not_needed() {
    let _dog = start_test();
    let server = RedisServer::start();
    let name = format!("{}/{}", server.url_as(":hunter2"), unique_name("none"));
    assert_eq!(
        auth_problem("a needless password", SharedList::<u64>::create(&name)),
        AuthProblem::PasswordNotNeeded
    );
}

#[test]
fn acl_users_log_in_by_name_and_a_wrong_user_or_a_missing_permission_is_named() {
    let _dog = start_test();
    let server = RedisServer::start_with(ServerOptions {
        requirepass: Some("default-secret".to_owned()),
        users: vec![
            ("app".into(), PASSWORD.into(), "~memspace:*".into()),
            ("elsewhere".into(), PASSWORD.into(), "~other:*".into()),
        ],
        ..ServerOptions::default()
    });
    let object = unique_name("acl");
    let as_app = format!("{}/{object}", server.url_as("app:hunter2"));
    let map = SharedMap::<String, u64>::create(&as_app).expect("create as app");
    map.insert(&"k".to_owned(), &1).expect("insert as app");
    let lock = Lock::create(&format!("{as_app}.lock")).expect("create a lock as app");
    let guard = lock.lock().expect("lock as app");
    assert!(guard.fencing_token().is_some_and(|token| token > 0));
    drop(guard);

    assert_eq!(
        auth_problem(
            "app with a wrong password",
            SharedMap::<String, u64>::open(&format!("{}/{object}", server.url_as("app:hunter3")))
        ),
        AuthProblem::UserRefused {
            user: "app".to_owned()
        }
    );
    assert_eq!(
        auth_problem(
            "a user that does not exist",
            SharedMap::<String, u64>::open(&format!("{}/{object}", server.url_as("apq:hunter2")))
        ),
        AuthProblem::UserRefused {
            user: "apq".to_owned()
        }
    );
    let AuthProblem::NotPermitted { user, what } = auth_problem(
        "a user without memspace's keys",
        SharedMap::<String, u64>::open(&format!("{}/{object}", server.url_as("elsewhere:hunter2"))),
    ) else {
        panic!("a user without memspace's keys is not refused for its permissions");
    };
    assert_eq!(user, "elsewhere");
    assert!(!what.is_empty());
    // A user name without a password would log in as the default user: refused at once.
    let alone = format!("{}/{object}", server.url_as("app"));
    let err = SharedMap::<String, u64>::open(&alone).expect_err("a user without a password");
    assert!(
        matches!(err, Error::Open(OpenError::InvalidName { .. })),
        "{err}"
    );
    lock.unlink().expect("remove the lock");
    map.unlink().expect("remove the map");
}

#[test]
fn no_error_debug_or_display_of_any_kind_shows_the_password() {
    let _dog = start_test();
    let server = password_server();
    let base = server.url_as("default:hun%2Fter2%40");
    // The password has a `/` and an `@`, percent-encoded: the server's is another, so every
    // open is refused, and every refusal checked.
    let bad = format!("{base}/{}", unique_name("hidden"));
    without_password("list", &SharedList::<u64>::open(&bad).expect_err("list"));
    without_password("list", &SharedList::<u64>::create(&bad).expect_err("list"));
    without_password(
        "map",
        &SharedMap::<String, u64>::open(&bad).expect_err("map"),
    );
    without_password("queue", &Queue::<u64>::open(&bad).expect_err("queue"));
    without_password("value", &Value::<u64>::open(&bad).expect_err("value"));
    without_password("event", &Event::open(&bad).expect_err("event"));
    without_password("lock", &Lock::open(&bad).expect_err("lock"));
    without_password("lock", &Lock::create(&bad).expect_err("lock"));
    without_password("remove", &memspace::remove(&bad).expect_err("remove"));
    without_password(
        "describe",
        &memspace::inspect::describe(&bad, &memspace::SegmentOptions::new()).expect_err("describe"),
    );
    without_password(
        "ls",
        &memspace::inspect::list_objects(&base).expect_err("ls"),
    );
    // Invalid names hide it too.
    for invalid in [
        format!("{base}/a/b/c"),
        format!("{base}/x?ttl=1"),
        "unix:///s.sock?pass=hunter2&name=a/b".to_owned(),
        "rediss://u:hunter2@[::1/x".to_owned(),
    ] {
        without_password(
            &invalid,
            &SharedList::<u64>::open(&invalid).expect_err(&invalid),
        );
    }

    // With the right password: handles, names, their Debug, what inspect shows.
    let right = format!(
        "{}/{}",
        server.url_as("default:hunter2"),
        unique_name("shown")
    );
    let list = SharedList::<u64>::create(&right).expect("create");
    let queue = Queue::<u64>::create(&format!("{right}.q")).expect("create a queue");
    let lock = Lock::create(&format!("{right}.lock")).expect("create a lock");
    let guard = lock.lock().expect("lock");
    for (what, shown) in [
        ("list Debug", format!("{list:?}")),
        ("list name", list.name().to_string()),
        ("name Debug", format!("{:?}", list.name())),
        ("queue Debug", format!("{queue:?}")),
        ("lock Debug", format!("{lock:?}")),
        ("guard Debug", format!("{guard:?}")),
        (
            "backend",
            format!(
                "{:?}",
                Backend::redis(&server.url_as(":hunter2")).expect("backend")
            ),
        ),
        (
            "describe",
            format!(
                "{:?}",
                memspace::inspect::describe(list.name().as_str(), &memspace::SegmentOptions::new())
                    .expect("describe")
            ),
        ),
        (
            "ls",
            format!(
                "{:?}",
                memspace::inspect::list_objects(&server.url_as(":hunter2")).expect("ls")
            ),
        ),
        (
            "serialized",
            serde_json::to_string(&list).expect("serialize the handle"),
        ),
    ] {
        assert_hides_password(what, &shown);
    }
    assert!(
        list.name().as_str().contains("default:***@"),
        "{}",
        list.name()
    );
    drop(guard);
    lock.unlink().expect("remove the lock");
    queue.unlink().expect("remove the queue");
    list.unlink().expect("remove the list");
}

#[test]
fn a_name_as_shown_reopens_its_object_in_the_same_process() {
    let _dog = start_test();
    let server = password_server();
    let backend = Backend::redis(&server.url_as(":hunter2")).expect("backend");
    let name = backend.locate(&unique_name("again"));
    assert!(name.contains(":***@"), "{name}");
    let list = SharedList::<u64>::create(&name).expect("create by the shown name");
    list.push(&1).expect("push");
    // A handle that travelled as text (a queue item, a file) is the name as shown: it opens
    // here, where the password is known.
    let text = serde_json::to_string(&list).expect("serialize");
    let back: SharedList<u64> = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(back.to_vec().expect("read"), [1]);
    list.unlink().expect("remove");
}

/// What a spawned child reports: its command line and environment, and what it read.
fn push_and_report(list: SharedList<u64>) -> (String, String, Vec<u64>) {
    list.push(&42).expect("push in the child");
    let cmdline = std::fs::read("/proc/self/cmdline").expect("read /proc/self/cmdline");
    let environ = std::fs::read("/proc/self/environ").expect("read /proc/self/environ");
    (
        String::from_utf8_lossy(&cmdline).into_owned(),
        String::from_utf8_lossy(&environ).into_owned(),
        list.to_vec().expect("read in the child"),
    )
}

#[test]
fn a_spawned_child_gets_a_handle_without_the_password_on_its_command_line() {
    let _dog = start_test();
    let server = password_server();
    // One name with the password written in it, one as shown (`***`), made by a backend.
    let written = format!("{}/{}", server.url_as(":hunter2"), unique_name("child"));
    let backend = Backend::redis(&server.url_as("default:hunter2")).expect("backend");
    let shown = backend.locate(&unique_name("child"));
    for name in [written, shown] {
        let list = SharedList::<u64>::create(&name).expect("create");
        for method in [StartMethod::Spawn, StartMethod::Fork] {
            let mut child = Running::start_by(method, push_and_report, list.clone());
            // While it runs, as `ps` would see it.
            let seen_by_ps = std::fs::read(format!("/proc/{}/cmdline", child.pid()))
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            assert_hides_password("the child's command line seen by ps", &seen_by_ps);
            let (cmdline, environ, items) = child.join().expect("the child");
            assert_hides_password(&format!("{method} child's command line"), &cmdline);
            assert_hides_password(&format!("{method} child's environment"), &environ);
            assert!(items.contains(&42), "{method}: {items:?}");
        }
        assert_eq!(list.to_vec().expect("read"), [42, 42]);
        list.unlink().expect("remove");
    }
}

#[test]
fn a_unix_socket_server_is_named_by_its_path_with_the_object_as_a_query() {
    let _dog = start_test();
    let server = RedisServer::start_with(ServerOptions {
        requirepass: Some(PASSWORD.to_owned()),
        unix_socket: true,
        ..ServerOptions::default()
    });
    let socket = server.socket().display().to_string();
    let object = unique_name("sock");
    let name = format!("unix://{socket}?pass=hunter2&name={object}");
    let queue = Queue::<u64>::create(&name).expect("create on the socket");
    queue.put(&5).expect("put");
    let delivery = queue.receive().expect("receive");
    assert_eq!(*delivery.value(), 5);
    delivery.ack().expect("acknowledge");
    assert!(
        queue.name().as_str().contains("pass=***"),
        "{}",
        queue.name()
    );
    // The same object through TCP.
    let by_tcp = Queue::<u64>::open(&format!("{}/{object}", server.url_as(":hunter2")))
        .expect("open by TCP");
    by_tcp.put(&6).expect("put by TCP");
    let listed = memspace::inspect::list_objects(&format!("unix://{socket}?pass=hunter2"))
        .expect("list on the socket");
    let names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [format!("unix://{socket}?pass=***&name={object}")],
        "{listed:?}"
    );
    assert_eq!(listed[0].len, 1);
    assert_eq!(
        auth_problem(
            "no password on the socket",
            Queue::<u64>::open(&format!("unix://{socket}?name={object}"))
        ),
        AuthProblem::PasswordMissing
    );
    queue.unlink().expect("remove");
}

#[test]
fn the_same_name_in_two_databases_is_two_objects() {
    let _dog = start_test();
    let server = RedisServer::start();
    let object = unique_name("db");
    let in_one = SharedList::<u64>::create(&format!("{}/1/{object}", server.url())).expect("db 1");
    let in_two = SharedList::<u64>::create(&format!("{}/2/{object}", server.url())).expect("db 2");
    in_one.push(&1).expect("push to db 1");
    in_two.extend([2, 2]).expect("push to db 2");
    assert_eq!(in_one.to_vec().expect("db 1"), [1]);
    assert_eq!(in_two.to_vec().expect("db 2"), [2, 2]);
    // Database 0 holds neither; a single path segment is an object, digits or not.
    assert!(matches!(
        SharedList::<u64>::open(&server.name(&object)),
        Err(Error::Open(OpenError::NotFound { .. }))
    ));
    let listed = memspace::inspect::list_objects(&format!("{}/2", server.url())).expect("ls db 2");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].name, format!("{}/2/{object}", server.url()));
    assert_eq!(listed[0].len, 2);
    assert!(
        memspace::inspect::list_objects(&server.url())
            .expect("ls db 0")
            .is_empty()
    );
    let backend = Backend::redis(&format!("{}/1", server.url())).expect("backend in db 1");
    assert_eq!(
        SharedList::<u64>::open_in(&backend, &object)
            .expect("open in db 1")
            .to_vec()
            .expect("read"),
        [1]
    );
    assert_eq!(
        auth_problem(
            "a database the server lacks",
            SharedList::<u64>::create(&format!("{}/99/{object}", server.url()))
        ),
        AuthProblem::NoSuchDatabase { db: 99 }
    );
    in_one.unlink().expect("remove in db 1");
    in_two.unlink().expect("remove in db 2");
}

/// In a child whose environment holds the password: a name opened by the program takes it,
/// the same name received as a handle (data anyone could have written) does not.
fn open_with_the_environment_password_but_not_a_received_handle() {
    let name = memspace_testkit::roles::role_segment();
    let list = SharedList::<u64>::open(&name).expect("open with MEMSPACE_REDIS_PASSWORD");
    assert_eq!(list.to_vec().expect("read"), [3]);
    let received = serde_json::to_string(&name).expect("a handle as data");
    let err = serde_json::from_str::<SharedList<u64>>(&received)
        .expect_err("a received handle logged in with the environment's password");
    assert!(err.to_string().contains("needs a password"), "{err}");
}

#[test]
fn a_received_handle_does_not_take_the_environment_password_to_the_server_it_names() {
    if memspace_testkit::roles::role().is_some() {
        return open_with_the_environment_password_but_not_a_received_handle();
    }
    let _dog = start_test();
    let server = password_server();
    let object = unique_name("received");
    let list = SharedList::<u64>::create(&format!("{}/{object}", server.url_as(":hunter2")))
        .expect("create");
    list.push(&3).expect("push");
    let name = server.name(&object);
    let child = memspace_testkit::roles::run_role_to_end(
        "received",
        &[
            (memspace_testkit::roles::SEGMENT, &name),
            (memspace::backend::PASSWORD_ENV, PASSWORD),
        ],
    );
    assert!(
        child.status.success(),
        "the child failed: {}",
        String::from_utf8_lossy(&child.stderr)
    );
    list.unlink().expect("remove");
}
