//! One suite, two backends: a behaviour written once, as a function of a [`Fixture`], and one
//! test generated per backend by [`on_both_backends!`](crate::on_both_backends): on shared
//! memory and on a real `redis-server` started for the test. Names are the only difference:
//! `mstest.PID.TAG.N` or `redis://127.0.0.1:PORT/mstest.PID.TAG.N`.

use std::cell::RefCell;

use memspace::{Backend, Segment};

use crate::names::unique_name;
use crate::redis_cluster::RedisCluster;
use crate::redis_server::RedisServer;

/// Where a test's objects live, and the names it made (shared-memory ones are removed on drop;
/// a Redis server takes its data with it).
#[derive(Debug)]
pub struct Fixture {
    redis: Option<RedisServer>,
    cluster: Option<RedisCluster>,
    names: RefCell<Vec<String>>,
}

impl Fixture {
    /// Objects in shared memory.
    pub fn shared_memory() -> Self {
        Fixture {
            redis: None,
            cluster: None,
            names: RefCell::default(),
        }
    }

    /// Objects on a `redis-server` of their own.
    pub fn redis() -> Self {
        Fixture {
            redis: Some(RedisServer::start()),
            cluster: None,
            names: RefCell::default(),
        }
    }

    /// Objects on a three-master Redis Cluster of their own, named through its first node:
    /// most of them live on another node, which the first one redirects to.
    pub fn redis_cluster() -> Self {
        Fixture {
            redis: None,
            cluster: Some(RedisCluster::start()),
            names: RefCell::default(),
        }
    }

    /// The backend.
    ///
    /// # Panics
    ///
    /// If the test server's URL is refused.
    pub fn backend(&self) -> Backend {
        let url = match (&self.redis, &self.cluster) {
            (Some(server), _) => server.url(),
            (None, Some(cluster)) => cluster.url(),
            (None, None) => return Backend::SharedMemory,
        };
        Backend::redis(&url).expect("the test server's URL")
    }

    /// A fresh object name in this fixture's backend.
    pub fn name(&self, tag: &str) -> String {
        let name = self.backend().locate(&unique_name(tag));
        self.names.borrow_mut().push(name.clone());
        name
    }

    /// Whether the objects are on Redis.
    pub fn is_redis(&self) -> bool {
        self.redis.is_some() || self.cluster.is_some()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !self.is_redis() {
            for name in self.names.borrow().iter() {
                let _ = Segment::remove(name);
            }
        }
    }
}

/// Generates, for each behaviour (a function of `&Fixture`), one test on shared memory
/// (`shared_memory::BEHAVIOUR`) and one on Redis (`redis::BEHAVIOUR`). Each starts as
/// [`start_test`](crate::start_test) does.
#[macro_export]
macro_rules! on_both_backends {
    ($($behaviour:ident),* $(,)?) => {
        mod shared_memory {
            $(
                #[test]
                fn $behaviour() {
                    let _watchdog = $crate::start_test();
                    super::$behaviour(&$crate::backends::Fixture::shared_memory());
                }
            )*
        }

        mod redis {
            $(
                #[test]
                fn $behaviour() {
                    let _watchdog = $crate::start_test();
                    super::$behaviour(&$crate::backends::Fixture::redis());
                }
            )*
        }
    };
}

/// Generates, for each behaviour (a function of `&Fixture`), one more test on a three-master
/// Redis Cluster (`redis_cluster::BEHAVIOUR`), named through one node. Each starts as
/// [`start_test`](crate::start_test) does.
#[macro_export]
macro_rules! on_a_redis_cluster_too {
    ($($behaviour:ident),* $(,)?) => {
        mod redis_cluster {
            $(
                #[test]
                fn $behaviour() {
                    let _watchdog = $crate::start_test();
                    super::$behaviour(&$crate::backends::Fixture::redis_cluster());
                }
            )*
        }
    };
}
