//! The CLI against a real `redis-server`: `redis://HOST:PORT/NAME` wherever a name is taken,
//! `ls --redis`, `inspect`, `rm`, `lock`, `demo --mode redis` and `bench --redis`.

use memspace_testkit::cli::{fail, memspace, stderr, stdout, succeed};
use memspace_testkit::redis_cluster::RedisCluster;
use memspace_testkit::redis_server::{RedisServer, assert_hides_password};
use serde_json::Value;

#[test]
fn lists_maps_and_queues_work_by_url_and_show_in_ls_and_inspect() {
    let server = RedisServer::start();
    let (list, map, queue) = (
        server.name("jobs"),
        server.name("ages"),
        server.name("work"),
    );
    succeed(&["list", "create", &list]);
    succeed(&["list", "push", &list, "1", "\"two\"", "{\"a\": [3]}"]);
    assert_eq!(
        succeed(&["list", "get", &list]).trim(),
        r#"[1,"two",{"a":[3]}]"#
    );
    assert_eq!(succeed(&["list", "get", &list, "1"]).trim(), r#""two""#);
    assert_eq!(succeed(&["list", "len", &list]).trim(), "3");

    succeed(&["map", "create", &map]);
    succeed(&["map", "set", &map, "\"ada\"", "36"]);
    assert_eq!(succeed(&["map", "get", &map, "\"ada\""]).trim(), "36");
    assert_eq!(succeed(&["map", "remove", &map, "\"ada\""]).trim(), "36");
    assert_eq!(succeed(&["map", "len", &map]).trim(), "0");

    succeed(&["queue", "create", "--capacity", "5", &queue]);
    succeed(&["queue", "put", &queue, "7", "8"]);
    assert_eq!(succeed(&["queue", "len", &queue]).trim(), "2");
    assert_eq!(succeed(&["queue", "get", &queue]).trim(), "7");

    let listed: Value =
        serde_json::from_str(&succeed(&["ls", "--redis", &server.url(), "--json"])).expect("JSON");
    let names: Vec<(&str, &str)> = listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|o| {
            (
                o["name"].as_str().expect("a name"),
                o["kind"].as_str().expect("a kind"),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (map.as_str(), "map"),
            (list.as_str(), "list"),
            (queue.as_str(), "queue")
        ]
    );
    let table = succeed(&["ls", "--redis", &server.url()]);
    assert!(table.contains(&list) && table.contains("list"), "{table}");

    let shown = succeed(&["inspect", &list, "--items"]);
    assert!(shown.contains("kind               list"), "{shown}");
    assert!(
        shown.contains(r#"{"index":2,"value":{"a":[3]}}"#),
        "{shown}"
    );
    let json: Value =
        serde_json::from_str(&succeed(&["inspect", &queue, "--json", "--items"])).expect("JSON");
    assert_eq!(json["kind"], "queue");
    assert_eq!(json["values"], serde_json::json!([8]));

    // A URL that names another kind, or nothing, fails with the reason.
    let wrong = fail(&["map", "get", &list]);
    assert!(wrong.contains("holds a list, not a map"), "{wrong}");
    succeed(&["rm", &list, &map]);
    let gone = fail(&["list", "get", &list]);
    assert!(gone.contains("does not exist"), "{gone}");
    assert!(gone.contains("memspace ls --redis redis://"), "{gone}");
    assert!(fail(&["rm", &list]).contains("does not exist"));
}

#[test]
fn lock_by_url_runs_the_command_under_a_lease_and_inspect_shows_the_token() {
    let server = RedisServer::start();
    let lock = server.name("deploy");
    assert_eq!(
        succeed(&["lock", &lock, "--", "echo", "under the lock"]).trim(),
        "under the lock"
    );
    let output = memspace(&["lock", &lock, "--", "sh", "-c", "exit 3"]);
    assert_eq!(output.status.code(), Some(3), "the command's status");
    let shown = succeed(&["inspect", &lock]);
    assert!(shown.contains("held               no"), "{shown}");
    assert!(shown.contains("last fencing token 2"), "{shown}");
}

#[test]
fn a_url_without_a_server_fails_with_how_to_start_one() {
    // A port nobody listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let err = fail(&["list", "len", &format!("{url}/x")]);
    assert!(
        err.contains(&format!("redis-server --port {port}")),
        "{err}"
    );
    let err = fail(&["demo", "--mode", "redis", "--redis", &url]);
    assert!(
        err.contains("no Redis server answers") && err.contains("apt-get install redis-server"),
        "{err}"
    );
    assert!(fail(&["ls", "--redis", &url]).contains("cannot reach"));
}

#[test]
fn demo_mode_redis_shares_a_list_between_processes_and_cleans_up() {
    let server = RedisServer::start();
    let out = succeed(&["demo", "--mode", "redis", "--redis", &server.url()]);
    let last_main = out
        .lines()
        .find(|line| line.starts_with("Main Process : ["))
        .expect("the final list");
    assert_eq!(
        last_main, "Main Process : [0, 1, 2, 0, 1, 2, 0, 1, 2]",
        "{out}"
    );
    assert!(out.contains("memory shared: yes (through Redis)"), "{out}");
    let listed = succeed(&["ls", "--redis", &server.url()]);
    assert!(listed.contains("no memspace objects"), "{listed}");
}

#[test]
fn bench_redis_reports_shared_memory_beside_redis_with_and_without_batching_and_a_cluster() {
    let server = RedisServer::start();
    let cluster = RedisCluster::start();
    let out = succeed(&[
        "bench",
        "--redis",
        &server.url(),
        "--redis-cluster",
        &cluster.url(),
        "--quick",
        "--json",
    ]);
    let rows: Value = serde_json::from_str(&out).expect("JSON");
    let rows = rows.as_array().expect("an array");
    let baselines: Vec<&str> = rows
        .iter()
        .map(|row| row["baseline"].as_str().expect("a baseline"))
        .collect();
    assert_eq!(
        baselines,
        [
            "redis_list_push",
            "redis_extend_100",
            "redis_lock_lease",
            "redis_queue_put_get",
            "one_server_push_30_lists"
        ]
    );
    // Speed is for the benchmark to show, not for a test to assert: the test checks that each
    // row measured both sides and that its ratio is theirs.
    for row in rows {
        let ours = row["memspace"].as_f64().expect("memspace's figure");
        let theirs = row["baseline_value"]
            .as_f64()
            .expect("the baseline's figure");
        let speedup = row["speedup"].as_f64().expect("a ratio");
        assert!(ours > 0.0 && theirs > 0.0, "{row}");
        assert!((speedup - ours / theirs).abs() <= 1e-9 * speedup, "{row}");
        assert!(
            row["unit"]
                .as_str()
                .is_some_and(|unit| unit.ends_with("/s")),
            "{row}"
        );
    }
    // The bench removes its objects, on every master too.
    for url in [server.url(), cluster.url()] {
        let listed = succeed(&["ls", "--redis", &url]);
        assert!(listed.contains("no memspace objects"), "{url}: {listed}");
    }
}

#[test]
fn ls_redis_through_one_node_of_a_cluster_lists_the_objects_of_every_master() {
    let cluster = RedisCluster::start();
    for i in 0..30 {
        succeed(&[
            "list",
            "create",
            &cluster.nodes()[0].name(&format!("spread.{i}")),
        ]);
    }
    let listed = succeed(&["ls", "--redis", &cluster.nodes()[1].url()]);
    assert_eq!(listed.matches("spread.").count(), 30, "{listed}");
}

#[test]
fn ls_lists_every_object_when_some_keys_are_damaged_and_rm_removes_them() {
    let server = RedisServer::start();
    let (good, odd, half) = (server.name("jobs"), server.name("odd"), server.name("half"));
    succeed(&["list", "create", &good]);
    succeed(&["list", "push", &good, "1"]);
    // A meta key that is not a hash, and an object whose items key has the wrong type.
    assert_eq!(server.command(&["SET", "memspace:{odd}", "junk"]), "+OK");
    assert_eq!(
        server.command(&[
            "HSET",
            "memspace:{half}",
            "kind",
            "list",
            "type",
            "",
            "size",
            "0",
            "capacity",
            "0",
            "version",
            "2",
            "incarnation",
            "1"
        ]),
        ":6"
    );
    assert_eq!(
        server.command(&["SET", "memspace:{half}:items", "x"]),
        "+OK"
    );

    let table = succeed(&["ls", "--redis", &server.url()]);
    let line = |name: &str| {
        table
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name} in\n{table}"))
            .to_owned()
    };
    assert!(
        line(&good).contains("list") && line(&good).contains(" 1 "),
        "{table}"
    );
    assert!(line(&odd).contains("damaged"), "{table}");
    assert!(line(&half).contains("damaged"), "{table}");
    assert!(
        table.contains(&format!(
            "damaged: {odd}: its meta record `memspace:{{odd}}` is a Redis string, not a hash; \
             `memspace rm {odd}` removes it"
        )),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "damaged: {half}: its items key `memspace:{{half}}:items` cannot be read as a list"
        )),
        "{table}"
    );

    let listed: Value =
        serde_json::from_str(&succeed(&["ls", "--redis", &server.url(), "--json"])).expect("JSON");
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), 3, "{listed:?}");
    let entry = |name: &str| {
        listed
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {listed:?}"))
    };
    assert_eq!(entry(&good)["kind"], "list");
    assert_eq!(entry(&good)["items"], 1);
    assert!(
        entry(&odd)["error"]
            .as_str()
            .is_some_and(|why| why.contains("not a hash")),
        "{listed:?}"
    );
    assert!(
        entry(&half)["error"]
            .as_str()
            .is_some_and(|why| why.contains("WRONGTYPE")),
        "{listed:?}"
    );
    assert_eq!(entry(&half)["damaged"], true);

    // inspect shows the damage instead of failing on it.
    let shown = succeed(&["inspect", &half]);
    assert!(
        shown.contains("damaged            its keys cannot be read as the list it is")
            && shown.contains(&format!("`memspace rm {half}` removes it")),
        "{shown}"
    );

    succeed(&["rm", &odd, &half]);
    let table = succeed(&["ls", "--redis", &server.url()]);
    assert!(
        !table.contains("damaged") && table.contains(&good),
        "{table}"
    );
}

#[test]
fn ls_shows_an_object_of_another_layout_version_as_unreadable_not_damaged() {
    let server = RedisServer::start();
    let newer = server.name("newer");
    succeed(&["list", "create", &newer]);
    assert_eq!(
        server.command(&["HSET", "memspace:{newer}", "version", "3"]),
        ":0"
    );
    let table = succeed(&["ls", "--redis", &server.url()]);
    assert!(
        table.contains("unreadable (see below)")
            && table.contains(&format!("unreadable: {newer}: "))
            && !table.contains("memspace rm"),
        "nothing suggests removing it: {table}"
    );
    let listed: Value =
        serde_json::from_str(&succeed(&["ls", "--redis", &server.url(), "--json"])).expect("JSON");
    assert_eq!(listed[0]["damaged"], false, "{listed}");
    assert!(
        listed[0]["error"]
            .as_str()
            .is_some_and(|why| why.contains("version")),
        "{listed}"
    );
    succeed(&["rm", &newer]);
}

/// Runs `memspace args`, which must fail, and checks that nothing it printed holds the
/// password; returns what it printed on standard error.
fn fail_without_password(args: &[&str]) -> String {
    let output = memspace(args);
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(
        !output.status.success(),
        "memspace {args:?} succeeded: {out}"
    );
    assert_hides_password(&format!("memspace {args:?}"), &out);
    assert_hides_password(&format!("memspace {args:?}"), &err);
    err
}

#[test]
fn a_password_in_a_redis_url_is_never_printed() {
    // No server is needed: the URL is refused before any connection.
    for (name, server) in [
        (
            "redis://app:hunter2@127.0.0.1:6379/jobs",
            "redis://app:hunter2@127.0.0.1:6379",
        ),
        (
            "redis://:hunter2@127.0.0.1:6379/jobs",
            "redis://:hunter2@127.0.0.1:6379/",
        ),
        (
            "redis://app:hun/ter2@127.0.0.1:6379/jobs",
            "redis://app:hun/ter2@127.0.0.1:6379",
        ),
        (
            "redis://hunter2@127.0.0.1:6379/jobs",
            "redis://hunter2@127.0.0.1:6379",
        ),
    ] {
        let message = fail_without_password(&["list", "push", name, "1"]);
        assert!(
            message.contains("***") && message.contains("not supported yet"),
            "{message}"
        );
        fail_without_password(&["list", "create", name]);
        fail_without_password(&["list", "get", name]);
        fail_without_password(&["map", "get", name, "\"k\""]);
        fail_without_password(&["queue", "put", name, "1"]);
        fail_without_password(&["inspect", name]);
        fail_without_password(&["inspect", "--json", name]);
        fail_without_password(&["rm", name]);
        fail_without_password(&["lock", name, "--", "true"]);
        let message = fail_without_password(&["ls", "--redis", server]);
        assert!(message.contains("not supported yet"), "{message}");
        fail_without_password(&["ls", &format!("--redis={server}")]);
        fail_without_password(&["ls", "--json", "--redis", server]);
        fail_without_password(&["demo", "--mode", "redis", "--redis", server]);
        fail_without_password(&["demo", "--mode", "redis", &format!("--redis={server}")]);
        fail_without_password(&["bench", "--quick", "--redis", server]);
        // Usage errors quote the argument they refuse.
        fail_without_password(&["ls", name]);
        fail_without_password(&["inspect", name, "extra"]);
        fail_without_password(&["rm", "--bogus", name]);
        fail_without_password(&["lock", name]);
        fail_without_password(&["list", "get", name, "not-an-index"]);
    }
}
