//! The queue, list and map commands as parts of shell pipelines: `queue put --timeout`, values
//! read from standard input, and `queue work`, which feeds items to a command.

use std::time::{Duration, Instant};

use memspace_testkit::Removal;
use memspace_testkit::cli::{fail_with, succeed};

#[test]
fn a_put_into_a_full_queue_gives_up_after_its_timeout() {
    let _dog = memspace_testkit::start_test();
    let name = Removal::fresh("put-timeout");
    succeed(&["queue", "create", name.name(), "--capacity", "1"]);
    // Room for one: the put succeeds at once.
    succeed(&["queue", "put", name.name(), "--timeout", "0.2", "1"]);
    let started = Instant::now();
    let stderr = fail_with(&["queue", "put", name.name(), "--timeout", "0.2", "2"], 75);
    let waited = started.elapsed();
    assert!(
        stderr.contains("stayed full") && stderr.contains(name.name()),
        "{stderr}"
    );
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Several values: those that found room are put, and the message counts them.
    assert_eq!(succeed(&["queue", "get", name.name()]), "1");
    let stderr = fail_with(
        &["queue", "put", name.name(), "--timeout", "0", "3", "4"],
        75,
    );
    assert!(stderr.contains("1 value was put"), "{stderr}");
    assert_eq!(succeed(&["queue", "len", name.name()]), "1");
    assert_eq!(succeed(&["queue", "get", name.name()]), "3");
    let stderr = fail_with(&["queue", "put", name.name(), "--timeout=-1", "5"], 1);
    assert!(stderr.contains("not a number of seconds"), "{stderr}");
}
