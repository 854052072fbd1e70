//! The write commands (`list push`, `map set`, `queue put`) against collections a Rust program
//! created with its own item type: a value the program could not read back is refused, naming
//! the object, its type and the value, unless `--force`; on shared memory and on Redis.

use memspace::collections::{Queue, QueueError, SharedMap};
use memspace::{Error, SharedList};
use memspace_testkit::backends::Fixture;
use memspace_testkit::cli::{fail_with, succeed};
use serde::{Deserialize, Serialize};

/// Runs `memspace args`, expecting it to be refused; returns its standard error, checked to
/// name the object, the recorded type and the value, and to mention `--force`.
fn refused(args: &[&str], object: &str, recorded: &str, value: &str) -> String {
    let stderr = fail_with(args, 1);
    for needed in [object, &format!("`{recorded}`"), value, "--force"] {
        assert!(
            stderr.contains(needed),
            "memspace {args:?}: the message does not mention {needed}: {stderr}"
        );
    }
    stderr
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
}

fn a_list_of_numbers_takes_numbers_only(place: &Fixture) {
    let name = place.name("numbers");
    let numbers = SharedList::<i64>::create(&name).expect("create a list of i64");
    succeed(&["list", "push", &name, "7", "-8"]);
    refused(
        &["list", "push", &name, "9", "\"a string\""],
        &name,
        "i64",
        "\"a string\"",
    );
    refused(&["list", "push", &name, "1.5"], &name, "i64", "1.5");
    assert_eq!(
        numbers.to_vec().expect("the program still reads its list"),
        [7, -8],
        "a refused push writes none of its values"
    );

    succeed(&["list", "push", "--force", &name, "\"a string\""]);
    assert!(
        matches!(numbers.to_vec(), Err(Error::Decode { index: 2, .. })),
        "--force wrote it"
    );
}

fn a_queue_of_unsigned_numbers_refuses_a_negative_one(place: &Fixture) {
    let name = place.name("unsigned");
    let queue = Queue::<u64>::create(&name).expect("create a queue of u64");
    refused(&["queue", "put", &name, "1", "-1"], &name, "u64", "-1");
    refused(&["queue", "put", &name, "\"x\""], &name, "u64", "\"x\"");
    assert_eq!(
        queue.len().expect("len"),
        0,
        "a refused put puts none of its values"
    );
    succeed(&["queue", "put", &name, "5", "6"]);
    assert_eq!(queue.get().expect("the program takes its item"), 5);

    succeed(&["queue", "put", "--force", &name, "-1"]);
    assert_eq!(queue.get().expect("get"), 6);
    match queue.get() {
        Err(QueueError::Undecodable(item)) => {
            assert_eq!(item.decode::<i64>().expect("an i64"), -1);
            item.discard().expect("discard");
        }
        other => panic!("--force should have put -1, got {other:?}"),
    }
}

fn a_map_checks_keys_and_values_against_their_types(place: &Fixture) {
    let name = place.name("ages");
    let recorded = std::any::type_name::<(String, u32)>();
    let ages = SharedMap::<String, u32>::create(&name).expect("create a map");
    succeed(&["map", "set", &name, "\"ada\"", "36"]);
    refused(
        &["map", "set", &name, "7", "36"],
        &name,
        recorded,
        "the key 7",
    );
    refused(
        &["map", "set", &name, "\"bob\"", "\"old\""],
        &name,
        recorded,
        "the value \"old\"",
    );
    refused(
        &["map", "set", &name, "\"bob\"", "-1"],
        &name,
        recorded,
        "-1",
    );
    assert_eq!(ages.len().expect("len"), 1);
    assert_eq!(ages.get(&"ada".to_owned()).expect("get"), Some(36));

    succeed(&["map", "set", "--force", &name, "\"bob\"", "\"old\""]);
    assert_eq!(ages.len().expect("len"), 2, "--force wrote it");
}

fn a_list_of_a_programs_own_type_is_refused_unless_forced(place: &Fixture) {
    let name = place.name("jobs");
    let recorded = std::any::type_name::<Job>();
    let jobs = SharedList::<Job>::create(&name).expect("create a list of jobs");
    let job = r#"{"id": 1, "name": "resize"}"#;
    let message = refused(&["list", "push", &name, job], &name, recorded, "resize");
    assert!(message.contains("cannot check"), "{message}");
    succeed(&["list", "push", "--force", &name, job]);
    assert_eq!(
        jobs.to_vec().expect("the value had the right shape"),
        [Job {
            id: 1,
            name: "resize".into()
        }]
    );
}

fn the_clis_own_collections_take_any_value(place: &Fixture) {
    let (list, map, queue) = (place.name("list"), place.name("map"), place.name("queue"));
    succeed(&["list", "create", &list]);
    succeed(&["list", "push", &list, "1", "\"two\"", "[3]", "null"]);
    succeed(&["map", "create", &map]);
    // (In shared memory the recorded name of `(Value, Value)` is cut; it is still the CLI's.)
    succeed(&["map", "set", &map, "[1, 2]", "{\"a\": null}"]);
    succeed(&["map", "set", &map, "\"k\"", "-1.5"]);
    succeed(&["queue", "create", &queue]);
    succeed(&["queue", "put", &queue, "-1", "\"x\"", "{}"]);
}

memspace_testkit::on_both_backends!(
    a_list_of_numbers_takes_numbers_only,
    a_queue_of_unsigned_numbers_refuses_a_negative_one,
    a_map_checks_keys_and_values_against_their_types,
    a_list_of_a_programs_own_type_is_refused_unless_forced,
    the_clis_own_collections_take_any_value,
);
