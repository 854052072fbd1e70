//! `memspace queue ...`: shared queues of JSON items from the shell.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use memspace::collections::{Queue, QueueError};
use serde_json::Value;

use super::collection::{self, create_options, open};
use crate::cli::QueueCommand;

/// The exit status when `--timeout` expires (`EX_TEMPFAIL`).
const TIMED_OUT: u8 = 75;

pub(crate) fn run(command: QueueCommand) -> anyhow::Result<ExitCode> {
    match command {
        QueueCommand::Create {
            name,
            capacity,
            max_size,
            mode,
        } => {
            Queue::<Value>::create_with(&name, capacity, &create_options(max_size, mode))
                .with_context(|| format!("creating queue `{name}`"))?;
        }
        QueueCommand::Put {
            name,
            values,
            force,
        } => {
            let (queue, values) =
                collection::open_to_write_items::<Queue<Value>>(&name, &values, force)?;
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
            let queue: Queue<Value> = open(&name)?;
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
        QueueCommand::Len { name } => collection::print_len::<Queue<Value>>(&name)?,
    }
    Ok(ExitCode::SUCCESS)
}
