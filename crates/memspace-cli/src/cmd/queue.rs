//! `memspace queue ...`: shared queues of JSON items from the shell.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use memspace::collections::{Queue, QueueError};
use serde_json::Value;

use super::collection::{self, create_options, open};
use super::typed::Part;
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
            timeout,
        } => {
            let timeout = seconds(timeout)?;
            if collection::from_stdin(&values)? {
                return put_stdin(&open(&name)?, &name, force, timeout);
            }
            let (queue, values) =
                collection::open_to_write_items::<Queue<Value>>(&name, &values, force)?;
            for (put, value) in values.iter().enumerate() {
                if let Some(code) = put_one(&queue, &name, value, timeout, put)? {
                    return Ok(code);
                }
            }
        }
        QueueCommand::Get { name, timeout } => {
            let timeout = seconds(timeout)?;
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

/// `--timeout SECONDS` as a duration.
fn seconds(timeout: Option<f64>) -> anyhow::Result<Option<Duration>> {
    timeout
        .map(|seconds| {
            Duration::try_from_secs_f64(seconds)
                .map_err(|_| anyhow::anyhow!("--timeout {seconds} is not a number of seconds"))
        })
        .transpose()
}

/// Puts `value` into `queue` (called `name`), waiting at most `timeout` for room if given;
/// `put` values were put before it. Returns the exit status if the wait timed out.
fn put_one(
    queue: &Queue<Value>,
    name: &str,
    value: &Value,
    timeout: Option<Duration>,
    put: usize,
) -> anyhow::Result<Option<ExitCode>> {
    let result = match timeout {
        None => queue.put(value),
        Some(timeout) => queue.put_timeout(value, timeout),
    };
    match result {
        Ok(()) => Ok(None),
        Err(QueueError::Timeout { .. } | QueueError::Full { .. }) => {
            let waited = timeout.unwrap_or_default();
            eprintln!(
                "memspace: queue `{name}` stayed full for {waited:?}; {put} value{} put before \
                 giving up",
                if put == 1 { " was" } else { "s were" }
            );
            Ok(Some(ExitCode::from(TIMED_OUT)))
        }
        Err(err) => Err(err).with_context(|| {
            format!("putting into queue `{name}` ({put} values were put before this one)")
        }),
    }
}

/// `queue put NAME -`: puts each value on standard input as it is read, so that consumers may
/// start on the first while later ones are still coming.
fn put_stdin(
    queue: &Queue<Value>,
    name: &str,
    force: bool,
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let target = collection::target(queue, name);
    for (put, line) in collection::stdin_values().enumerate() {
        let (number, value) =
            line.with_context(|| format!("stopped after putting {put} values"))?;
        target.check(Part::Item, &value, force).with_context(|| {
            format!("stopped at line {number} of standard input after putting {put} values")
        })?;
        if let Some(code) = put_one(queue, name, &value, timeout, put)? {
            return Ok(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}
