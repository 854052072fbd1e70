//! A private Redis Cluster for the tests of the Redis backend: three masters, without
//! replicas or with one each, each node a [`RedisServer`] (`--cluster-enabled yes`) on free loopback ports with its
//! own temporary directory, joined with `redis-cli --cluster create`; stopped, and the
//! directories removed, on drop.
//!
//! It also moves a slot from one master to another by hand, key by key, the way
//! `redis-cli --cluster reshard` does (`CLUSTER SETSLOT ... IMPORTING` / `MIGRATING`,
//! `MIGRATE`, `CLUSTER SETSLOT ... NODE`), so that a test can run clients during every step.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::children::wait_until;
use crate::names::unique_name;
use crate::redis_server::{RedisServer, Role, ServerOptions};

/// A running three-master Redis Cluster.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// The slot ranges a node's own line of `CLUSTER NODES` lists (`0-5460 5462`; a slot being
/// migrated appears as `[5461->-ID]`, and stays the node's until the migration ends).
fn own_slots(nodes: &str) -> Vec<(u16, u16)> {
    let Some(line) = nodes.lines().find(|line| line.contains("myself")) else {
        return Vec::new();
    };
    line.split_whitespace()
        .skip(8)
        .filter(|part| !part.starts_with('['))
        .filter_map(|range| {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            Some((first.parse().ok()?, last.parse().ok()?))
        })
        .collect()
}

impl RedisCluster {
    /// Starts three nodes and makes them a cluster of three masters, each serving a third of
    /// the slots; returns once every node says the cluster is up.
    ///
    /// # Panics
    ///
    /// If `redis-server` or `redis-cli` is missing, or the cluster does not form.
    pub fn start() -> Self {
        Self::start_with_replicas(0)
    }

    /// Starts a cluster of three masters with `replicas` replicas each: nodes 0 to 2 are the
    /// masters. A master that fails is replaced by its replica after the node timeout (2 s).
    ///
    /// # Panics
    ///
    /// As [`RedisCluster::start`].
    pub fn start_with_replicas(replicas: usize) -> Self {
        Self::start_with(replicas, &ServerOptions::default())
    }

    /// Starts a cluster of three masters with `replicas` replicas each, every node set up as
    /// `options` say (a password: `requirepass` with the same `primary_password`).
    ///
    /// # Panics
    ///
    /// As [`RedisCluster::start`].
    pub fn start_with(replicas: usize, options: &ServerOptions) -> Self {
        let count = 3 * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                RedisServer::start_with(ServerOptions {
                    role: Role::ClusterNode,
                    ..options.clone()
                })
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let mut create = Command::new("redis-cli");
        if let Some(password) = &options.requirepass {
            create.env("REDISCLI_AUTH", password);
        }
        let created = create
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let cluster = RedisCluster { nodes };
        let known = format!("cluster_known_nodes:{count}");
        wait_until("the cluster to be up on every node", || {
            cluster.nodes.iter().all(|node| {
                let info = node.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains(&known)
            })
        });
        // A replica that never synchronised would not take over from its master.
        wait_until("every replica to follow its master", || {
            cluster.nodes[3..].iter().all(|node| {
                node.cli(&["INFO", "replication"])
                    .contains("master_link_status:up")
            })
        });
        cluster
    }

    /// Its nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Kills node `node` with SIGKILL (see [`RedisServer::kill`]).
    pub fn kill_node(&mut self, node: usize) {
        self.nodes[node].kill();
    }

    /// `redis://127.0.0.1:PORT` of its first node.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// A fresh object name through the first node: `redis://127.0.0.1:PORT/`[`unique_name`].
    pub fn unique_name(&self, tag: &str) -> String {
        self.nodes[0].name(&unique_name(tag))
    }

    /// The node id of node `node`.
    pub fn node_id(&self, node: usize) -> String {
        self.nodes[node].cli(&["CLUSTER", "MYID"]).trim().to_owned()
    }

    /// The hash slot of `key`.
    ///
    /// # Panics
    ///
    /// If the first node does not answer with a number.
    pub fn slot_of(&self, key: &str) -> u16 {
        self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// The index of the node that serves `slot`, as the nodes themselves say.
    ///
    /// # Panics
    ///
    /// If no node claims it.
    pub fn owner_of_slot(&self, slot: u16) -> usize {
        self.owners()
            .iter()
            .position(|ranges| {
                ranges
                    .iter()
                    .any(|(first, last)| (*first..=*last).contains(&slot))
            })
            .unwrap_or_else(|| panic!("no node serves slot {slot}"))
    }

    /// Each node's own slot ranges (none for a node that was killed, or a replica).
    pub fn owners(&self) -> Vec<Vec<(u16, u16)>> {
        self.nodes
            .iter()
            .map(|node| {
                if node.is_running() {
                    own_slots(&node.cli(&["CLUSTER", "NODES"]))
                } else {
                    Vec::new()
                }
            })
            .collect()
    }

    /// The index of the node that serves the keys of the memspace object `object` (its flat
    /// name: the keys are `memspace:{OBJECT}...`).
    pub fn node_of_object(&self, object: &str) -> usize {
        self.owner_of_slot(self.slot_of(&format!("memspace:{{{object}}}")))
    }

    /// The keys node `node` holds in `slot`.
    pub fn keys_in_slot(&self, node: usize, slot: u16) -> BTreeSet<String> {
        self.nodes[node]
            .cli(&["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "1000"])
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Moves `slot` from node `from` to node `to` as `redis-cli --cluster reshard` does, one
    /// key at a time with `pause` after each, so that clients meet every state: keys on both
    /// sides (`TRYAGAIN` for a command on several of them), keys moved (`ASK`), the slot
    /// moved (`MOVED`).
    ///
    /// # Panics
    ///
    /// If a node refuses a step.
    pub fn migrate_slot(&self, slot: u16, from: usize, to: usize, pause: Duration) {
        let slot_text = slot.to_string();
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let ok = |node: usize, args: &[&str]| {
            let answer = self.nodes[node].cli(args);
            assert!(answer.trim() == "OK", "{args:?} on node {node}: {answer}");
        };
        ok(
            to,
            &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &from_id],
        );
        ok(
            from,
            &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &to_id],
        );
        let port = self.nodes[to].port().to_string();
        loop {
            let keys = self.keys_in_slot(from, slot);
            let Some(key) = keys.first() else { break };
            let answer = self.nodes[from].cli(&[
                "MIGRATE",
                "127.0.0.1",
                &port,
                "",
                "0",
                "5000",
                "KEYS",
                key,
            ]);
            assert!(
                matches!(answer.trim(), "OK" | "NOKEY"),
                "MIGRATE {key}: {answer}"
            );
            std::thread::sleep(pause);
        }
        // The importing node first, as redis-cli does: then neither node redirects to the
        // other in a loop.
        ok(to, &["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id]);
        ok(from, &["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id]);
        for other in (0..3).filter(|node| ![from, to].contains(node)) {
            ok(other, &["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::own_slots;

    #[test]
    fn a_nodes_own_slots_are_read_from_its_line_of_cluster_nodes() {
        let nodes = "a1 127.0.0.1:7001@17001 master - 0 0 1 connected 10923-16383\n\
                     b2 127.0.0.1:7000@17000 myself,master - 0 0 2 connected 0-5460 5462 \
                     [5461->-c3]\n";
        assert_eq!(own_slots(nodes), [(0, 5460), (5462, 5462)]);
    }
}
