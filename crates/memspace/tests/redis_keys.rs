//! The Redis backend when its keys change behind a handle's back, against a real
//! `redis-server`: an object removed while handles to it are open, a lock's key or an object's
//! meta hash written by hand, a map value of another type; and what its errors carry.

mod common;
mod redis_server;

use std::error::Error as _;

use memspace::sync::LockError;
use memspace::{Error, Lock};

use redis_server::RedisServer;

#[test]
fn an_unavailable_lock_keeps_the_redis_error_as_its_source() {
    let _dog = common::Watchdog::start();
    let mut server = RedisServer::start();
    let lock = Lock::create(&server.name(&common::unique_name("lock"))).expect("create");
    server.kill();
    let err = lock.try_lock().map(drop).expect_err("no server: no lock");
    assert!(matches!(err, LockError::Unavailable { .. }), "{err:?}");
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
