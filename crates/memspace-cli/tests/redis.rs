//! The CLI against a real `redis-server`: `redis://HOST:PORT/NAME` wherever a name is taken,
//! `ls --redis`, `inspect`, `rm`, `lock`, `demo --mode redis` and `bench --redis`.

use memspace_testkit::cli::{command, fail, memspace, stderr, stdout, succeed};
use memspace_testkit::redis_cluster::RedisCluster;
use memspace_testkit::redis_server::{RedisServer, ServerOptions, assert_hides_password};
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
    // A port nobody listens on, held so that no server another test starts can take it.
    let refused = memspace_testkit::redis_server::RefusedPort::new();
    let port = refused.port();
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

/// Runs `memspace args` with `env`, which must succeed, and checks that nothing it printed
/// holds the password; returns its standard output.
fn succeed_without_password(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = command(args)
        .envs(env.iter().copied())
        .output()
        .expect("run memspace");
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(
        output.status.success(),
        "memspace {args:?} failed: {out}{err}"
    );
    assert_hides_password(&format!("memspace {args:?}"), &out);
    assert_hides_password(&format!("memspace {args:?}"), &err);
    out
}

/// A server whose default user needs the password `hunter2`.
fn password_server() -> RedisServer {
    RedisServer::start_with(ServerOptions {
        requirepass: Some("hunter2".to_owned()),
        ..ServerOptions::default()
    })
}

#[test]
fn every_command_takes_a_password_in_the_url_and_never_prints_it() {
    let server = password_server();
    let object = memspace_testkit::unique_name("pw");
    for (base, env) in [
        (server.url_as(":hunter2"), &[][..]),
        (server.url_as("default:hun%74er2"), &[][..]),
        // The password from the environment, as `redis-cli` takes REDISCLI_AUTH.
        (server.url(), &[("MEMSPACE_REDIS_PASSWORD", "hunter2")][..]),
    ] {
        let name = format!("{base}/{object}");
        let run = |args: &[&str]| succeed_without_password(args, env);
        run(&["list", "create", &name]);
        run(&["list", "push", &name, "1", "2"]);
        assert_eq!(run(&["list", "get", &name]).trim(), "[1,2]");
        let listed = run(&["ls", "--redis", &base]);
        assert!(listed.contains(&object), "{listed}");
        run(&["ls", "--json", "--redis", &base]);
        let shown = run(&["inspect", &name, "--items"]);
        assert!(shown.contains("kind               list"), "{shown}");
        run(&["inspect", "--json", &name]);
        run(&["lock", &format!("{name}.lock"), "--", "true"]);
        run(&["rm", &name, &format!("{name}.lock")]);
        let demo = run(&[
            "demo", "--mode", "redis", "--redis", &base, "--start", "spawn",
        ]);
        assert!(demo.contains("memory shared: yes"), "{demo}");
    }
}

#[test]
fn a_missing_or_wrong_password_is_named_and_never_printed() {
    let server = password_server();
    let object = memspace_testkit::unique_name("pw");
    // What a password-protected server used to answer: an object named `ls`, and NOAUTH.
    let missing = fail_without_password(&["ls", "--redis", &server.url()]);
    assert!(missing.contains("needs a password"), "{missing}");
    assert!(
        !missing.contains("`ls`") && !missing.contains("NOAUTH"),
        "{missing}"
    );
    let wrong_base = server.url_as("app:hun/ter2");
    for (base, says) in [
        (server.url_as(":hunter3"), "password is wrong"),
        (wrong_base.clone(), "user `app` does not exist"),
        (server.url(), "needs a password"),
    ] {
        let name = format!("{base}/{object}");
        for args in [
            &["list", "create", &name][..],
            &["list", "get", &name],
            &["map", "get", &name, "\"k\""],
            &["queue", "put", &name, "1"],
            &["inspect", &name],
            &["inspect", "--json", &name],
            &["rm", &name],
            &["lock", &name, "--", "true"],
            &["ls", "--redis", &base],
            &["ls", &format!("--redis={base}")],
            &["ls", "--json", "--redis", &base],
            &["demo", "--mode", "redis", "--redis", &base],
            &["bench", "--quick", "--redis", &base],
        ] {
            let message = fail_without_password(args);
            assert!(message.contains(says), "memspace {args:?}: {message}");
        }
    }
    // Usage errors quote the argument they refuse.
    let name = format!("{wrong_base}/{object}");
    fail_without_password(&["ls", &name]);
    fail_without_password(&["inspect", &name, "extra"]);
    fail_without_password(&["rm", "--bogus", &name]);
    fail_without_password(&["lock", &name]);
    fail_without_password(&["list", "get", &name, "not-an-index"]);
    fail_without_password(&["list", "get", &format!("{wrong_base}/a/b/c")]);
    fail_without_password(&["ls", "--redis", "unix:///nowhere.sock?pass=hunter2"]);
}

#[test]
fn databases_and_unix_sockets_keep_objects_apart_in_the_commands() {
    let server = RedisServer::start_with(ServerOptions {
        unix_socket: true,
        ..ServerOptions::default()
    });
    let object = memspace_testkit::unique_name("db");
    let (one, two) = (
        format!("{}/1/{object}", server.url()),
        format!("{}/2/{object}", server.url()),
    );
    succeed(&["list", "create", &one]);
    succeed(&["list", "create", &two]);
    succeed(&["list", "push", &one, "1"]);
    succeed(&["list", "push", &two, "2", "2"]);
    assert_eq!(succeed(&["list", "get", &one]), "[1]");
    assert_eq!(succeed(&["list", "get", &two]), "[2,2]");
    let listed = succeed(&["ls", "--redis", &format!("{}/2", server.url())]);
    assert!(listed.contains(&two) && !listed.contains(&one), "{listed}");
    assert!(succeed(&["ls", "--redis", &server.url()]).contains("no memspace objects"));
    let socket = server.socket().display().to_string();
    let by_socket = format!("unix://{socket}?db=2&name={object}");
    assert_eq!(succeed(&["list", "get", &by_socket]), "[2,2]");
    let listed = succeed(&["ls", "--redis", &format!("unix://{socket}?db=1")]);
    assert!(
        listed.contains(&format!("unix://{socket}?db=1&name={object}")),
        "{listed}"
    );
    succeed(&["rm", &one, &by_socket]);
}

/// The command lines of the spawned workers whose parent is `parent`: processes that were
/// started with the spawn start method's variable in their environment (a child caught
/// between its fork and its exec still shows its parent's command line, and an ended one
/// none).
fn children_command_lines(parent: u32) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `PID (COMM) STATE PPID ...`: the command name may hold spaces and parentheses.
        let parent_of = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|field| field.parse::<u32>().ok());
        let worker = std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|environ| environ.windows(15).any(|w| w == b"MEMSPACE_SPAWN="));
        if parent_of == Some(parent)
            && worker
            && let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && !cmdline.is_empty()
        {
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

#[test]
fn children_the_demo_spawns_never_show_the_password_on_their_command_line() {
    let server = password_server();
    let base = server.url_as(":hunter2");
    // The parent's command line holds the password, as the user typed it; its children's,
    // which re-run the program, must not.
    // The demo prints the list after every append: into a file, which never fills up as a
    // pipe nobody reads would.
    let out_path =
        std::env::temp_dir().join(format!("{}.demo-out", memspace_testkit::unique_name("pw")));
    let out_file = std::fs::File::create(&out_path).expect("create the demo's output file");
    let demo = command(&[
        "demo",
        "--mode",
        "redis",
        "--redis",
        &base,
        "--start",
        "spawn",
        "--workers",
        "3",
        "--count",
        "100",
    ])
    .stdout(out_file)
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("start the demo");
    let parent = demo.id();
    let mut seen = Vec::new();
    let mut demo = Some(demo);
    while let Some(mut running) = demo.take() {
        seen.extend(children_command_lines(parent));
        if running.try_wait().expect("poll the demo").is_none() {
            demo = Some(running);
            std::thread::sleep(std::time::Duration::from_millis(2));
            continue;
        }
        let output = running.wait_with_output().expect("the demo's output");
        let printed = std::fs::read_to_string(&out_path).expect("read the demo's output");
        let _ = std::fs::remove_file(&out_path);
        assert!(
            output.status.success(),
            "the demo failed: {}",
            stderr(&output)
        );
        assert_hides_password("the demo's errors", &stderr(&output));
        assert_hides_password("the demo's output", &printed);
        assert!(printed.contains("memory shared: yes"), "{printed}");
    }
    assert!(
        !seen.is_empty(),
        "no child of the demo was seen while it ran"
    );
    for cmdline in &seen {
        assert!(cmdline.contains("demo"), "{cmdline}");
        assert_hides_password("a spawned child's command line", cmdline);
    }
}
