//! `rediss://`: the commands against a TLS-only `redis-server` whose CA, server and client
//! certificates the test makes with `openssl`. The CA is trusted through
//! `MEMSPACE_REDIS_CA`, the client certificate presented through `MEMSPACE_REDIS_CERT` and
//! `MEMSPACE_REDIS_KEY`; without them the connection is refused, with an error that says
//! which, and that never shows the password.

use std::path::Path;
use std::process::Output;

use memspace_testkit::cli::{command, stderr, stdout};
use memspace_testkit::redis_server::{RedisServer, ServerOptions, assert_hides_password};
use memspace_testkit::unique_name;

/// Runs `memspace args` with the TLS files `env` names; checks that nothing it printed shows
/// the password.
fn run(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = command(args);
    for variable in [
        "MEMSPACE_REDIS_CA",
        "MEMSPACE_REDIS_CERT",
        "MEMSPACE_REDIS_KEY",
    ] {
        command.env_remove(variable);
    }
    for (variable, path) in env {
        command.env(variable, path);
    }
    let output = command.output().expect("run memspace");
    assert_hides_password(&format!("memspace {args:?}"), &stdout(&output));
    assert_hides_password(&format!("memspace {args:?}"), &stderr(&output));
    output
}

/// Runs `memspace args`, which must succeed; returns its standard output, trimmed.
fn succeed(args: &[&str], env: &[(&str, &Path)]) -> String {
    let output = run(args, env);
    assert!(
        output.status.success(),
        "memspace {args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output).trim().to_owned()
}

/// Runs `memspace args`, which must fail; returns its standard error.
fn fail(args: &[&str], env: &[(&str, &Path)]) -> String {
    let output = run(args, env);
    assert!(
        !output.status.success(),
        "memspace {args:?} succeeded: {}",
        stdout(&output)
    );
    stderr(&output)
}

#[test]
fn a_tls_server_is_reached_with_its_ca_and_refused_without_it() {
    let server = RedisServer::start_with(ServerOptions {
        tls: true,
        requirepass: Some("hunter2".to_owned()),
        ..ServerOptions::default()
    });
    let base = server.url_as(":hunter2");
    let name = format!("{base}/{}", unique_name("tls"));
    let ca = server.tls_file("ca.crt");
    let trusted = [("MEMSPACE_REDIS_CA", ca.as_path())];
    succeed(&["list", "create", &name], &trusted);
    succeed(&["list", "push", &name, "1", "2"], &trusted);
    assert_eq!(succeed(&["list", "get", &name], &trusted), "[1,2]");
    let listed = succeed(&["ls", "--redis", &base], &trusted);
    assert!(listed.contains("rediss://:***@127.0.0.1"), "{listed}");

    // Without the CA, or with another one, the server's certificate is not trusted.
    let other = server.tls_file("other-ca.crt");
    for env in [&[][..], &[("MEMSPACE_REDIS_CA", other.as_path())][..]] {
        let refused = fail(&["list", "get", &name], env);
        assert!(
            refused.contains("certificate") && refused.contains("MEMSPACE_REDIS_CA"),
            "{refused}"
        );
    }
    // A CA file that is not there, or holds no certificate, is named.
    let missing = server.tls_file("no-such.crt");
    let refused = fail(
        &["list", "get", &name],
        &[("MEMSPACE_REDIS_CA", missing.as_path())],
    );
    assert!(refused.contains("MEMSPACE_REDIS_CA"), "{refused}");
    let not_pem = server.tls_file("server.ext");
    let refused = fail(
        &["list", "get", &name],
        &[("MEMSPACE_REDIS_CA", not_pem.as_path())],
    );
    assert!(refused.contains("PEM"), "{refused}");
    // Plain text to a TLS-only server gets no answer that reads as Redis.
    let plain = format!("redis://:hunter2@127.0.0.1:{}/x", server.port());
    fail(&["list", "get", &plain], &trusted);
    succeed(&["rm", &name], &trusted);
}

#[test]
fn a_tls_server_that_asks_for_client_certificates_takes_the_one_given() {
    let server = RedisServer::start_with(ServerOptions {
        tls: true,
        tls_client_certificates: true,
        ..ServerOptions::default()
    });
    let name = format!("{}/{}", server.url(), unique_name("mtls"));
    let (ca, cert, key) = (
        server.tls_file("ca.crt"),
        server.tls_file("client.crt"),
        server.tls_file("client.key"),
    );
    let with_certificate = [
        ("MEMSPACE_REDIS_CA", ca.as_path()),
        ("MEMSPACE_REDIS_CERT", cert.as_path()),
        ("MEMSPACE_REDIS_KEY", key.as_path()),
    ];
    succeed(&["queue", "create", &name], &with_certificate);
    succeed(&["queue", "put", &name, "5"], &with_certificate);
    assert_eq!(succeed(&["queue", "get", &name], &with_certificate), "5");

    let refused = fail(
        &["queue", "len", &name],
        &[("MEMSPACE_REDIS_CA", ca.as_path())],
    );
    assert!(refused.contains("MEMSPACE_REDIS_CERT"), "{refused}");
    let half = fail(
        &["queue", "len", &name],
        &[
            ("MEMSPACE_REDIS_CA", ca.as_path()),
            ("MEMSPACE_REDIS_CERT", cert.as_path()),
        ],
    );
    assert!(half.contains("MEMSPACE_REDIS_KEY"), "{half}");
    succeed(&["rm", &name], &with_certificate);
}
