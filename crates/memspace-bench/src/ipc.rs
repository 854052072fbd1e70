//! The baselines of the two-process queue scenarios (`queues.rs`): Servo's `ipc-channel` and
//! iceoryx2's publish-subscribe, each moving `u64` items from a producer process (started by
//! fork, as memspace's) to this process, timed from the first item received to the last.
//! Built only with the feature `ipc-baselines`.
//!
//! iceoryx2 keeps its services in files under `/dev/shm` and in a directory (`/tmp/iceoryx2`
//! by default), and keeps some of them after its last node is dropped. Each run therefore gets
//! a configuration of its own: a file prefix and a root directory named after this process and
//! the run, which [`Iceoryx2Files`] removes when the run ends, however it ends.

#![allow(
    clippy::cast_precision_loss,
    reason = "counts and durations become floating-point rates"
)]

use std::time::{Duration, Instant};

use iceoryx2::prelude::*;
use ipc_channel::ipc::{IpcOneShotServer, IpcSender};
use memspace::spawn::Process;

use crate::measure::per_second;

/// How many samples iceoryx2's subscriber buffers (and its publisher may have in flight).
const ICEORYX2_BUFFER: usize = 256;
/// How long the subscriber waits for a sample before it gives the run up.
const STALL: Duration = Duration::from_secs(10);

fn ipc_channel_produce((server, n): (String, u64)) {
    let tx = IpcSender::<u64>::connect(server).expect("connect to the one-shot server");
    for i in 0..n {
        tx.send(i).expect("send");
    }
}

/// A producer process sends `n` `u64` one `send` at a time through an `ipc-channel`
/// (`IpcSender<u64>`, a Unix socket, each item serialised by bincode); this process takes them
/// with a blocking `recv` each. Items per second.
pub(crate) fn ipc_channel(n: u64) -> anyhow::Result<f64> {
    let (server, name) = IpcOneShotServer::<u64>::new()?;
    let mut producer = Process::new(ipc_channel_produce, (name, n));
    producer.start()?;
    let (rx, first) = server
        .accept()
        .map_err(|e| anyhow::anyhow!("accepting the producer: {e:?}"))?;
    let start = Instant::now();
    let mut sum = first;
    for _ in 1..n {
        let item = rx.recv().map_err(|e| anyhow::anyhow!("recv: {e:?}"))?;
        sum = sum.wrapping_add(item);
    }
    let elapsed = start.elapsed();
    producer.join()?;
    anyhow::ensure!(sum == n * (n - 1) / 2, "items lost or changed on the way");
    Ok(per_second((n - 1) as f64, elapsed))
}

/// The iceoryx2 service of one run: publish-subscribe of `u64`, one publisher and one
/// subscriber, no history, no overflow (a full subscriber buffer makes the publisher retry).
fn iceoryx2_service(
    node: &Node<ipc::Service>,
    name: &str,
) -> anyhow::Result<
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, u64, ()>,
> {
    let name: ServiceName = name.try_into()?;
    Ok(node
        .service_builder(&name)
        .publish_subscribe::<u64>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(ICEORYX2_BUFFER)
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(1)
        .open_or_create()?)
}

/// The files of one iceoryx2 run: its configuration (a file prefix and a root directory of
/// its own), and their removal on drop.
struct Iceoryx2Files {
    prefix: String,
    root: std::path::PathBuf,
}

impl Iceoryx2Files {
    fn new() -> Self {
        let tag = format!("msbench{}_{}", std::process::id(), unique());
        Iceoryx2Files {
            root: std::env::temp_dir().join(&tag),
            prefix: format!("{tag}_"),
        }
    }

    /// The configuration of a node of this run, in this process or in the producer.
    fn config(prefix: &str, root: &str) -> anyhow::Result<Config> {
        let mut config = Config::default();
        config.global.prefix = FileName::new(prefix.as_bytes())
            .map_err(|e| anyhow::anyhow!("iceoryx2 file prefix {prefix}: {e:?}"))?;
        config.global.set_root_path(
            &Path::new(root.as_bytes())
                .map_err(|e| anyhow::anyhow!("iceoryx2 root {root}: {e:?}"))?,
        );
        Ok(config)
    }

    fn root(&self) -> String {
        self.root.display().to_string()
    }
}

impl Drop for Iceoryx2Files {
    fn drop(&mut self) {
        // Best effort: what cannot be removed is left for the machine's own cleaning.
        if let Ok(entries) = std::fs::read_dir("/dev/shm") {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&self.prefix)
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A node with the configuration `(prefix, root)` of a run.
fn iceoryx2_node(prefix: &str, root: &str) -> anyhow::Result<Node<ipc::Service>> {
    set_log_level(LogLevel::Error);
    Ok(NodeBuilder::new()
        .config(&Iceoryx2Files::config(prefix, root)?)
        .create::<ipc::Service>()?)
}

fn iceoryx2_produce((name, prefix, root, n): (String, String, String, u64)) {
    let node = iceoryx2_node(&prefix, &root).expect("iceoryx2 node");
    let service = iceoryx2_service(&node, &name).expect("iceoryx2 service");
    let publisher = service
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .expect("iceoryx2 publisher");
    // A sample sent before the subscriber is connected reaches nobody.
    while service.dynamic_config().number_of_subscribers() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 0..n {
        // A send can reach nobody although the subscriber is connected (iceoryx2 0.10 skips
        // a subscriber whose used-chunk list is full, even when told to retry): send again.
        loop {
            let sample = publisher.loan_uninit().expect("loan");
            if sample.write_payload(i).send().expect("send") > 0 {
                break;
            }
            // The subscriber gave up (or its process ended): so does the producer.
            if service.dynamic_config().number_of_subscribers() == 0 {
                return;
            }
            std::hint::spin_loop();
        }
    }
    // Keep the samples alive until the subscriber has them all: dropping the publisher first
    // would take undelivered ones with it.
    while service.dynamic_config().number_of_subscribers() != 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A producer process publishes `n` `u64` through iceoryx2 publish-subscribe (zero-copy: a
/// loaned sample per item, written in place and sent; a full subscriber buffer of 256 makes it
/// retry, so nothing is lost); this process busy-polls `receive` (no sleeping, no wake-up
/// system call on either side). Items per second.
pub(crate) fn iceoryx2_publish_subscribe(n: u64) -> anyhow::Result<f64> {
    let files = Iceoryx2Files::new();
    let name = format!("memspace-bench/{}/{}", std::process::id(), unique());
    let node = iceoryx2_node(&files.prefix, &files.root())?;
    let service = iceoryx2_service(&node, &name)?;
    let subscriber = service
        .subscriber_builder()
        .buffer_size(ICEORYX2_BUFFER)
        .create()?;
    let mut producer = Process::new(
        iceoryx2_produce,
        (name, files.prefix.clone(), files.root(), n),
    );
    producer.start()?;
    let mut sum = 0u64;
    let mut got = 0;
    let mut start = None;
    let mut idle = 0u32;
    let mut last = Instant::now();
    while got < n {
        if let Some(sample) = subscriber.receive()? {
            start.get_or_insert_with(Instant::now);
            sum = sum.wrapping_add(*sample);
            got += 1;
            idle = 0;
            continue;
        }
        idle += 1;
        // Now and then, whether the producer still sends: a lost sample must end the run, not
        // hang it.
        if idle.is_multiple_of(1 << 20) {
            anyhow::ensure!(
                last.elapsed() < STALL,
                "iceoryx2: no sample for {STALL:?} after {got} of {n}"
            );
        } else if idle == 1 {
            last = Instant::now();
        }
        std::hint::spin_loop();
    }
    let elapsed = start.map(|s| s.elapsed()).unwrap_or_default();
    drop(subscriber);
    producer.join()?;
    drop(service);
    drop(node);
    drop(files);
    anyhow::ensure!(sum == n * (n - 1) / 2, "items lost or changed on the way");
    Ok(per_second((n - 1) as f64, elapsed))
}

/// A number of its own for each run of this process.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
