//! `memspace map create|set|get|remove|len` and `memspace inspect --items` on maps, driven as a
//! user would, against the library on the other side.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use memspace::collections::SharedMap;
use memspace_testkit::Removal;
use memspace_testkit::cli::{create, fail_with, fail_without_result, memspace, succeed};
use serde_json::{Value, json};

/// `memspace map get NAME` as a sorted list of `[key, value]` pairs.
fn all_pairs(name: &str) -> Vec<(Value, Value)> {
    let printed: Value =
        serde_json::from_str(&succeed(&["map", "get", name])).expect("a JSON document");
    let mut pairs: Vec<(Value, Value)> = printed
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([key, value]) => (key.clone(), value.clone()),
            _ => panic!("{pair} is not a [key, value] pair"),
        })
        .collect();
    pairs.sort_by_key(|(key, _)| key.to_string());
    pairs
}

#[test]
fn set_get_remove_and_len_speak_json() {
    let name = create("map", "json");
    let name = name.name();
    assert_eq!(succeed(&["map", "len", name]), "0");
    succeed(&["map", "set", name, r#""ada""#, "36"]);
    succeed(&["map", "set", name, "-7", r#"{"x": [1, 2.5, null]}"#]);
    succeed(&["map", "set", name, "[1, \"two\"]", "true"]);
    succeed(&["map", "set", name, r#""ada""#, "37"]);
    assert_eq!(succeed(&["map", "len", name]), "3");
    assert_eq!(succeed(&["map", "get", name, r#""ada""#]), "37");
    assert_eq!(succeed(&["map", "get", name, "[1, \"two\"]"]), "true");
    let nested: Value = serde_json::from_str(&succeed(&["map", "get", name, "-7"])).expect("JSON");
    assert_eq!(nested, json!({"x": [1, 2.5, null]}));
    assert_eq!(succeed(&["map", "remove", name, r#""ada""#]), "37");
    assert_eq!(succeed(&["map", "len", name]), "2");
    assert_eq!(
        all_pairs(name),
        [
            (json!(-7), json!({"x": [1, 2.5, null]})),
            (json!([1, "two"]), json!(true)),
        ]
    );
}

#[test]
fn get_without_a_key_prints_every_entry_as_a_key_value_pair() {
    let name = create("map", "all");
    let name = name.name();
    assert_eq!(succeed(&["map", "get", name]), "[]");
    for i in 0..50 {
        succeed(&["map", "set", name, &format!("\"k{i:02}\""), &i.to_string()]);
    }
    let pairs = all_pairs(name);
    let expected: Vec<(Value, Value)> = (0..50)
        .map(|i| (json!(format!("k{i:02}")), json!(i)))
        .collect();
    assert_eq!(pairs, expected);
}

#[test]
fn a_missing_key_is_an_error_naming_the_key_and_the_map() {
    let name = create("map", "missing");
    let name = name.name();
    succeed(&["map", "set", name, "1", "\"one\""]);
    for command in ["get", "remove"] {
        let err = fail_with(&["map", command, name, r#""nope""#], 4);
        assert!(
            err.contains(name) && err.contains(r#""nope""#),
            "{command}: {err}"
        );
    }
    assert_eq!(succeed(&["map", "len", name]), "1", "nothing was removed");
}

#[test]
fn a_key_or_value_that_is_not_json_is_refused_with_a_hint() {
    let name = create("map", "not-json");
    let name = name.name();
    let err = fail_without_result(&["map", "set", name, "ada", "36"]);
    assert!(
        err.contains("`ada` is not JSON") && err.contains("quote"),
        "{err}"
    );
    let err = fail_without_result(&["map", "set", name, "\"ada\"", "{"]);
    assert!(err.contains("value `{` is not JSON"), "{err}");
    fail_without_result(&["map", "get", name, "ada"]);
    assert_eq!(succeed(&["map", "len", name]), "0");
}

#[test]
fn create_honours_mode_and_max_size_and_refuses_an_existing_name() {
    let name = Removal::fresh("options");
    let name = name.name();
    succeed(&[
        "map",
        "create",
        name,
        "--mode",
        "640",
        "--max-size",
        "65536",
    ]);
    let mode = std::fs::metadata(format!("/dev/shm/memspace.{name}"))
        .expect("the segment's file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    // Opening a segment whose mode lets others in takes the opener's consent.
    let err = fail_without_result(&["map", "len", name]);
    assert!(
        err.contains("mode 0640") && err.contains("--accept-mode 640"),
        "{err}"
    );
    let big = format!("\"{}\"", "x".repeat(100_000));
    let err = fail_without_result(&["--accept-mode", "640", "map", "set", name, "1", &big]);
    assert!(err.contains("full") && err.contains(name), "{err}");
    assert_eq!(
        succeed(&["--accept-mode", "640", "map", "len", name]),
        "0",
        "the refused entry is not there"
    );
    succeed(&["--accept-mode", "640", "map", "set", name, "1", "\"fits\""]);
    let err = fail_without_result(&["map", "create", name]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        succeed(&["--accept-mode", "640", "map", "get", name, "1"]),
        "\"fits\""
    );
    // A bad option is a usage error (clap's exit status 2), and creates nothing.
    let bad = format!("{name}-bad");
    let output = memspace(&["map", "create", &bad, "--mode", "999"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("octal mode"));
    assert!(memspace::Segment::open_any(&bad).is_err());
}

#[test]
fn a_map_made_by_the_cli_is_shared_with_the_library_both_ways() {
    let name = create("map", "library");
    let name = name.name();
    succeed(&["map", "set", name, "\"k\"", "5"]);
    succeed(&["map", "set", name, "\"point\"", r#"{"x": 1, "y": -2}"#]);
    let numbers = SharedMap::<String, u32>::open(name).expect("open");
    assert_eq!(numbers.get(&"k".to_owned()).expect("get"), Some(5));
    numbers.insert(&"j".to_owned(), &6).expect("insert");
    assert_eq!(succeed(&["map", "get", name, "\"j\""]), "6");
    let points = SharedMap::<String, BTreeMap<String, i32>>::open(name).expect("open");
    assert_eq!(
        points.get(&"point".to_owned()).expect("get"),
        Some(BTreeMap::from([("x".to_owned(), 1), ("y".to_owned(), -2)]))
    );
    // Integer keys are the same key whatever their width: the CLI finds the library's u8.
    let by_number = SharedMap::<u8, String>::open(name).expect("open");
    by_number.insert(&7, &"seven".to_owned()).expect("insert");
    assert_eq!(succeed(&["map", "get", name, "7"]), "\"seven\"");
    assert_eq!(succeed(&["map", "len", name]), "4");
}

#[test]
fn map_commands_on_another_kind_say_what_it_holds() {
    let name = create("list", "kind");
    let name = name.name();
    let err = fail_without_result(&["map", "get", name, "1"]);
    assert!(err.contains("holds a list, not a map"), "{err}");
    let err = fail_without_result(&["map", "len", &format!("{name}-absent")]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn inspect_items_prints_a_maps_entries() {
    let name = create("map", "inspect");
    let name = name.name();
    succeed(&["map", "set", name, "\"a\"", "1"]);
    succeed(&["map", "set", name, "\"b\"", "[2]"]);
    succeed(&["map", "remove", name, "\"a\""]);
    let text = succeed(&["inspect", name, "--items"]);
    assert!(text.contains("kind         map"), "{text}");
    assert!(text.contains("items        1"), "{text}");
    assert!(
        text.contains("verify       consistent (1 items checked)"),
        "{text}"
    );
    assert!(text.contains(r#"{"index":0,"value":["b",[2]]}"#), "{text}");
    let object: Value =
        serde_json::from_str(&succeed(&["inspect", name, "--items", "--json"])).expect("JSON");
    assert_eq!(object["kind"], "map");
    assert_eq!(object["items"], 1);
    assert_eq!(object["values"], json!([["b", [2]]]));
    assert_eq!(object["verify"]["problems"], json!([]));
}
