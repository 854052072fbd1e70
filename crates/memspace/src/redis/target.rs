//! How the server of a Redis name becomes a [`redis::Client`]: its address (TCP, TLS or a
//! unix socket), its database, the user and password to log in with, and for TLS the
//! certificates to trust and to present.
//!
//! # TLS
//!
//! A `rediss://` name needs the `redis-tls` feature (rustls). The server's certificate is
//! checked against the system's trusted roots, or only against the CA in the PEM file that
//! [`CA_ENV`](crate::backend::CA_ENV) (`MEMSPACE_REDIS_CA`) names when it is set (a private CA). A server that asks
//! for a client certificate (`tls-auth-clients yes`) gets the one in the PEM files that
//! `MEMSPACE_REDIS_CERT` and `MEMSPACE_REDIS_KEY` name.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

#[cfg(feature = "redis-tls")]
use crate::backend::{CA_ENV, CERT_ENV, KEY_ENV};
use crate::error::{OpenError, Result};
use crate::segment::{Endpoint, RedisServer, SegmentName};

/// What the client sends when it logs in: where, which database, as whom.
fn connection_info(server: &RedisServer) -> ConnectionInfo {
    let addr = match &server.endpoint {
        Endpoint::Tcp {
            host,
            port,
            tls: false,
        } => ConnectionAddr::Tcp(host.clone(), *port),
        Endpoint::Tcp {
            host,
            port,
            tls: true,
        } => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: false,
            tls_params: None,
        },
        Endpoint::Unix(path) => ConnectionAddr::Unix(path.clone()),
    };
    // Infallible for a `ConnectionAddr`: it only wraps it.
    let info = addr
        .into_connection_info()
        .expect("a ConnectionAddr converts to a ConnectionInfo");
    info.set_redis_settings(login(server))
}

/// How the client logs in to `server`, wherever it is: the database, the user, the password.
pub(crate) fn login(server: &RedisServer) -> RedisConnectionInfo {
    let mut redis = RedisConnectionInfo::default().set_db(i64::from(server.db));
    if let Some(user) = &server.user {
        redis = redis.set_username(user);
    }
    if let Some(password) = &server.password {
        redis = redis.set_password(password.expose());
    }
    redis
}

/// `server` as reached at `HOST:PORT` instead, a node of its Redis Cluster that a redirection
/// named: the same database, user, password and TLS (a node reached over a unix socket
/// redirects to plain TCP ones).
pub(crate) fn at_node(server: &RedisServer, host: &str, port: u16) -> RedisServer {
    let tls = matches!(server.endpoint, Endpoint::Tcp { tls: true, .. });
    RedisServer {
        endpoint: Endpoint::Tcp {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            tls,
        },
        ..server.clone()
    }
}

/// A client for `server`, the server of `name`.
///
/// # Errors
///
/// [`OpenError::InvalidName`] for a `rediss://` name in a build without the `redis-tls`
/// feature; [`OpenError::TlsFile`] if a file that `MEMSPACE_REDIS_CA`, `…_CERT` or `…_KEY` names
/// cannot be read or holds no PEM block.
pub(crate) fn client(name: &SegmentName, server: &RedisServer) -> Result<redis::Client> {
    let info = connection_info(server);
    let tls = matches!(server.endpoint, Endpoint::Tcp { tls: true, .. });
    if tls {
        return tls_client(name, info);
    }
    redis::Client::open(info).map_err(|source| crate::Error::Redis {
        name: name.clone(),
        op: "preparing a connection",
        source: Box::new(source),
    })
}

#[cfg(not(feature = "redis-tls"))]
fn tls_client(name: &SegmentName, _: ConnectionInfo) -> Result<redis::Client> {
    Err(OpenError::InvalidName {
        name: name.as_str().to_owned(),
        reason: "a `rediss://` name needs TLS, and this memspace was built without its \
                 `redis-tls` feature; enable it with `features = [\"redis-tls\"]` on memspace \
                 in Cargo.toml (the `memspace` command has it)",
    }
    .into())
}

#[cfg(feature = "redis-tls")]
fn tls_client(name: &SegmentName, info: ConnectionInfo) -> Result<redis::Client> {
    let read = |variable: &'static str| -> Result<Option<Vec<u8>>> {
        let Some(path) = std::env::var_os(variable) else {
            return Ok(None);
        };
        let shown = std::path::Path::new(&path).display().to_string();
        let bytes = std::fs::read(&path).map_err(|source| OpenError::TlsFile {
            name: name.clone(),
            variable,
            problem: format!("reading `{shown}`: {source}"),
        })?;
        if !bytes.windows(11).any(|window| window == b"-----BEGIN ") {
            return Err(OpenError::TlsFile {
                name: name.clone(),
                variable,
                problem: format!("`{shown}` holds no PEM block (`-----BEGIN …`)"),
            }
            .into());
        }
        Ok(Some(bytes))
    };
    let root_cert = read(CA_ENV)?;
    let client_tls = match (read(CERT_ENV)?, read(KEY_ENV)?) {
        (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
            client_cert,
            client_key,
        }),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(OpenError::TlsFile {
                name: name.clone(),
                variable: if std::env::var_os(CERT_ENV).is_some() {
                    KEY_ENV
                } else {
                    CERT_ENV
                },
                problem: format!(
                    "a client certificate needs both {CERT_ENV} (the certificate) and {KEY_ENV} \
                     (its private key)"
                ),
            }
            .into());
        }
    };
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|source| crate::Error::Redis {
        name: name.clone(),
        op: "loading the TLS certificates",
        source: Box::new(source),
    })
}

#[cfg(all(test, not(feature = "redis-tls")))]
mod tests {
    use crate::collections::SharedList;
    use crate::{Error, OpenError};

    #[test]
    fn a_tls_name_without_the_tls_feature_says_how_to_turn_it_on() {
        // Refused before any connection: no server is needed.
        let name = "rediss://app:hunter2@127.0.0.1:1/jobs";
        let err = SharedList::<u64>::open(name).expect_err("a TLS name without TLS");
        let message = err.to_string();
        assert!(
            matches!(err, Error::Open(OpenError::InvalidName { .. })),
            "{message}"
        );
        assert!(
            message.contains("redis-tls") && message.contains("app:***@"),
            "{message}"
        );
        assert!(!format!("{message} {err:?}").contains("hunter2"), "{err:?}");
    }
}
