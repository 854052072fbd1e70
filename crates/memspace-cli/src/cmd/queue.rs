//! `memspace queue ...`: shared queues of JSON items from the shell.

use std::io::Write;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
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
                None => queue.receive(),
                Some(timeout) => queue.receive_timeout(timeout),
            };
            match got {
                // Acknowledged once printed: an item that could not be written out (a closed
                // pipe) goes back when its delivery is dropped.
                Ok(delivery) => {
                    let mut out = super::out();
                    writeln!(out, "{}", delivery.value())?;
                    out.flush()?;
                    delivery
                        .ack()
                        .with_context(|| format!("acknowledging an item of queue `{name}`"))?;
                }
                Err(QueueError::Timeout { waited, .. }) => {
                    eprintln!(
                        "memspace: queue `{name}` stayed empty for {waited:?}",
                        name = super::shown(&name)
                    );
                    return Ok(ExitCode::from(TIMED_OUT));
                }
                Err(QueueError::Empty { .. }) => {
                    eprintln!(
                        "memspace: queue `{name}` is empty",
                        name = super::shown(&name)
                    );
                    return Ok(ExitCode::from(TIMED_OUT));
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("getting from queue `{name}`"));
                }
            }
        }
        QueueCommand::Work {
            name,
            count,
            forever,
            timeout,
            command,
        } => {
            let count = (!forever).then_some(count);
            return work(&open(&name)?, &name, count, seconds(timeout)?, &command);
        }
        QueueCommand::Len { name } => collection::print_len::<Queue<Value>>(&name)?,
        QueueCommand::Join { name, timeout } => {
            return join(&open(&name)?, &name, seconds(timeout)?);
        }
        QueueCommand::Close { name, immediate } => {
            let queue: Queue<Value> = open(&name)?;
            let closed = if immediate {
                queue.close_immediately()
            } else {
                queue.close()
            };
            closed.with_context(|| format!("closing queue `{name}`"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `queue join`: waits until every item of `queue`, called `name`, is acknowledged, at most
/// `timeout` if given (exit status 75 once it passed).
fn join(queue: &Queue<Value>, name: &str, timeout: Option<Duration>) -> anyhow::Result<ExitCode> {
    let joined = match timeout {
        None => queue.join(),
        Some(timeout) => queue.join_timeout(timeout),
    };
    match joined {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(QueueError::Timeout { waited, .. }) => {
            let left = queue
                .unacknowledged()
                .map_or_else(|_| "some".to_owned(), |n| n.to_string());
            eprintln!(
                "memspace: queue `{name}`: {left} items were still unacknowledged after \
                 {waited:?}",
                name = super::shown(name)
            );
            Ok(ExitCode::from(TIMED_OUT))
        }
        Err(err) => Err(err).with_context(|| format!("joining queue `{name}`")),
    }
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
                if put == 1 { " was" } else { "s were" },
                name = super::shown(name)
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

/// `queue work`: receives `count` items (for ever if `None`) from `queue`, called `name`, and
/// runs `command` on each, acknowledging the item if the command succeeds and putting it back
/// otherwise. Returns the exit status `queue work --help` describes.
fn work(
    queue: &Queue<Value>,
    name: &str,
    count: Option<u64>,
    timeout: Option<Duration>,
    command: &[String],
) -> anyhow::Result<ExitCode> {
    let mut failed = None;
    let mut received = 0;
    while count.is_none_or(|count| received < count) {
        let received_now = match timeout {
            None => queue.receive(),
            Some(timeout) => queue.receive_timeout(timeout),
        };
        let delivery = match received_now {
            Ok(delivery) => delivery,
            Err(QueueError::Closed { .. }) if count.is_none() || failed.is_some() => break,
            Err(QueueError::Closed { .. }) => {
                eprintln!(
                    "memspace: queue `{name}` was closed; {received} of {} items received",
                    count.unwrap_or_default(),
                    name = super::shown(name)
                );
                return Ok(ExitCode::from(TIMED_OUT));
            }
            Err(QueueError::Timeout { .. } | QueueError::Empty { .. }) => {
                // With `--forever`, the normal end.
                if let Some(count) = count {
                    let waited = timeout.unwrap_or_default();
                    eprintln!(
                        "memspace: queue `{name}` stayed empty for {waited:?}; {received} of \
                         {count} items received",
                        name = super::shown(name)
                    );
                    if failed.is_none() {
                        return Ok(ExitCode::from(TIMED_OUT));
                    }
                }
                break;
            }
            Err(err) => return Err(err).with_context(|| format!("receiving from queue `{name}`")),
        };
        received += 1;
        // Dropped on an error: the item goes back.
        let status =
            run_on(command, delivery.value(), delivery.deliveries()).with_context(|| {
                format!(
                    "running `{}`; the item went back to queue `{name}`",
                    command[0]
                )
            })?;
        if status.success() {
            delivery
                .ack()
                .with_context(|| format!("acknowledging an item of queue `{name}`"))?;
        } else {
            let code = super::exit_code(status);
            eprintln!(
                "memspace: `{}` failed ({status}); the item went back to queue `{name}`",
                command[0],
                name = super::shown(name)
            );
            delivery
                .nack()
                .with_context(|| format!("putting an item back into queue `{name}`"))?;
            failed = Some(code);
        }
    }
    Ok(failed.map_or(ExitCode::SUCCESS, ExitCode::from))
}

/// Runs `command` with `item` as one line of JSON on its standard input, and
/// `MEMSPACE_DELIVERIES` set to `deliveries`; waits for its end.
fn run_on(command: &[String], item: &Value, deliveries: u32) -> std::io::Result<ExitStatus> {
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .env("MEMSPACE_DELIVERIES", deliveries.to_string())
        .stdin(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input closes the pipe: not an error.
        match writeln!(stdin, "{item}") {
            Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                eprintln!("memspace: writing the item to `{}`: {err}", command[0]);
            }
            _ => {}
        }
    }
    child.wait()
}
