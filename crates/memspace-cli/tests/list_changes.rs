//! `memspace list set`, `list pop` and `list remove`: changes in place from the shell, read
//! back by the library, on shared memory and on Redis; out-of-range indexes and an empty list
//! are errors naming the list; a value the list's recorded item type could not read is refused
//! unless `--force`.

use memspace::SharedList;
use memspace_testkit::backends::Fixture;
use memspace_testkit::cli::{fail_with, succeed};

fn list_set_pop_and_remove_change_the_list_in_place(fx: &Fixture) {
    let name = fx.name("cli-changes");
    let list = SharedList::<serde_json::Value>::create(&name).expect("create");
    succeed(&["list", "push", &name, "1", "\"two\"", "3", "4"]);

    succeed(&["list", "set", &name, "1", r#"{"two":2}"#]);
    succeed(&["list", "set", &name, "-1", "-4"]);
    assert_eq!(
        succeed(&["list", "get", &name]).trim(),
        r#"[1,{"two":2},3,-4]"#
    );
    assert_eq!(succeed(&["list", "remove", &name, "0"]).trim(), "1");
    assert_eq!(succeed(&["list", "remove", &name, "-2"]).trim(), "3");
    assert_eq!(succeed(&["list", "pop", &name]).trim(), "-4");
    assert_eq!(
        list.to_vec().expect("the library reads it"),
        [serde_json::json!({"two": 2})]
    );

    for args in [
        vec!["list", "set", &name, "1", "0"],
        vec!["list", "set", &name, "-2", "0"],
        vec!["list", "remove", &name, "5"],
    ] {
        let stderr = fail_with(&args, 1);
        assert!(
            stderr.contains("out of range") && stderr.contains(&name),
            "memspace {args:?}: {stderr}"
        );
    }
    assert_eq!(succeed(&["list", "pop", &name]).trim(), r#"{"two":2}"#);
    let stderr = fail_with(&["list", "pop", &name], 1);
    assert!(
        stderr.contains("empty") && stderr.contains(&name),
        "{stderr}"
    );
    let stderr = fail_with(&["list", "set", &name, "0", "not json"], 1);
    assert!(stderr.contains("is not JSON"), "{stderr}");
}

fn list_set_checks_the_recorded_item_type(fx: &Fixture) {
    let name = fx.name("cli-typed");
    let numbers = SharedList::<i64>::create(&name).expect("create a list of i64");
    numbers.extend([1, 2]).expect("extend");
    let stderr = fail_with(&["list", "set", &name, "0", "\"a string\""], 1);
    assert!(
        stderr.contains("`i64`") && stderr.contains("--force") && stderr.contains(&name),
        "{stderr}"
    );
    succeed(&["list", "set", &name, "0", "7"]);
    assert_eq!(numbers.to_vec().expect("to_vec"), [7, 2]);
    succeed(&["list", "set", "--force", &name, "1", "\"a string\""]);
    assert!(numbers.get(1).is_err(), "--force wrote it");
    assert_eq!(
        succeed(&["list", "remove", &name, "1"]).trim(),
        "\"a string\""
    );
    assert_eq!(numbers.to_vec().expect("to_vec"), [7]);
}

memspace_testkit::on_both_backends!(
    list_set_pop_and_remove_change_the_list_in_place,
    list_set_checks_the_recorded_item_type,
);
