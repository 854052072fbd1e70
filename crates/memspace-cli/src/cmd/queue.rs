//! `memspace queue ...`: shared queues of JSON items from the shell.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use memspace::SegmentOptions;
use memspace::collections::{Queue, QueueError};
use serde_json::Value;

use super::typed::{Part, Target};
use crate::cli::QueueCommand;

/// The exit status when `--timeout` expires (`EX_TEMPFAIL`).
const TIMED_OUT: u8 = 75;

fn open(name: &str) -> anyhow::Result<Queue<Value>> {
    match super::open_segment(name) {
        Ok(Some(segment)) => Queue::from_segment(segment),
        Ok(None) => Queue::open(name),
        Err(err) => Err(err),
    }
    .with_context(|| format!("opening queue `{name}`"))
}

pub(crate) fn run(command: QueueCommand) -> anyhow::Result<ExitCode> {
    match command {
        QueueCommand::Create {
            name,
            capacity,
            max_size,
            mode,
        } => {
            let mut options = SegmentOptions::new();
            if let Some(bytes) = max_size {
                options = options.max_size(bytes);
            }
            if let Some(mode) = mode {
                options = options.mode(mode);
            }
            Queue::<Value>::create_with(&name, capacity, &options)
                .with_context(|| format!("creating queue `{name}`"))?;
        }
        QueueCommand::Put {
            name,
            values,
            force,
        } => {
            let values = super::json_values(&values)?;
            let queue = open(&name)?;
            let target = Target {
                kind: "queue",
                name: &name,
                recorded: queue.recorded_type_name(),
                in_shared_memory: queue.segment().is_some(),
            };
            target.check_each(Part::Item, &values, force)?;
            for value in &values {
                queue
                    .put(value)
                    .with_context(|| format!("putting into queue `{name}`"))?;
            }
        }
        QueueCommand::Get { name, timeout } => {
            let timeout = match timeout {
                None => None,
                Some(seconds) => Some(Duration::try_from_secs_f64(seconds).map_err(|_| {
                    anyhow::anyhow!("--timeout {seconds} is not a number of seconds")
                })?),
            };
            let queue = open(&name)?;
            let got = match timeout {
                None => queue.get(),
                Some(timeout) => queue.get_timeout(timeout),
            };
            match got {
                Ok(value) => println!("{value}"),
                Err(QueueError::Timeout { waited, .. }) => {
                    eprintln!("memspace: queue `{name}` stayed empty for {waited:?}");
                    return Ok(ExitCode::from(TIMED_OUT));
                }
                Err(QueueError::Empty { .. }) => {
                    eprintln!("memspace: queue `{name}` is empty");
                    return Ok(ExitCode::from(TIMED_OUT));
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("getting from queue `{name}`"));
                }
            }
        }
        QueueCommand::Len { name } => println!(
            "{}",
            open(&name)?
                .len()
                .with_context(|| format!("reading the length of queue `{name}`"))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}
