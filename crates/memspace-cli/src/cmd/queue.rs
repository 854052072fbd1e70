//! `memspace queue ...`: shared queues of JSON items from the shell.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use memspace::collections::{Queue, QueueError};
use serde_json::Value;

use crate::cli::QueueCommand;

/// The exit status when `--timeout` expires (`EX_TEMPFAIL`).
const TIMED_OUT: u8 = 75;

fn open(name: &str) -> anyhow::Result<Queue<Value>> {
    Queue::open(name).with_context(|| format!("opening queue `{name}`"))
}

pub(crate) fn run(command: QueueCommand) -> anyhow::Result<ExitCode> {
    match command {
        QueueCommand::Create { name, capacity } => {
            Queue::<Value>::create(&name, capacity.unwrap_or(0))
                .with_context(|| format!("creating queue `{name}`"))?;
        }
        QueueCommand::Put { name, values } => {
            let values = values
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    serde_json::from_str::<Value>(text).with_context(|| {
                        format!(
                            "value {} (`{text}`) is not JSON; quote strings as '\"text\"'",
                            i + 1
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let queue = open(&name)?;
            for value in &values {
                queue
                    .put(value)
                    .with_context(|| format!("putting into queue `{name}`"))?;
            }
        }
        QueueCommand::Get { name, timeout } => {
            let queue = open(&name)?;
            let got = match timeout {
                None => queue.get(),
                Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
                    queue.get_timeout(Duration::from_secs_f64(seconds))
                }
                Some(seconds) => bail!("--timeout {seconds} is not a number of seconds"),
            };
            match got {
                Ok(value) => println!("{value}"),
                Err(QueueError::Timeout { waited, .. }) => {
                    eprintln!("memspace: queue `{name}` stayed empty for {waited:?}");
                    return Ok(ExitCode::from(TIMED_OUT));
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("getting from queue `{name}`"));
                }
            }
        }
        QueueCommand::Len { name } => println!("{}", open(&name)?.len()),
    }
    Ok(ExitCode::SUCCESS)
}
