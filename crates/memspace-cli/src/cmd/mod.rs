//! One module per subcommand.

mod bench;
mod bench_redis;
mod demo;
mod gc;
mod inspect;
mod list;
mod lock;
mod ls;
mod map;
mod queue;
mod typed;

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Cli, Command};

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => demo::run(&args)?,
        Command::Bench(args) => bench::run(&args)?,
        Command::List(command) => list::run(command)?,
        Command::Map(command) => map::run(command)?,
        Command::Queue(command) => return queue::run(command),
        Command::Rm { names } => {
            for name in &names {
                if is_redis(name) {
                    memspace::remote::remove(name)
                } else {
                    memspace::Segment::remove(name).map_err(memspace::Error::from)
                }
                .with_context(|| format!("removing `{name}`"))?;
            }
        }
        Command::Ls { json, redis: None } => ls::run(json)?,
        Command::Ls {
            json,
            redis: Some(url),
        } => ls::run_redis(&url, json)?,
        Command::Inspect { name, items, json } => inspect::run(&name, items, json)?,
        Command::Gc {
            names,
            dry_run,
            json,
        } => gc::run(&names, dry_run, json)?,
        Command::Lock {
            name,
            timeout,
            command,
        } => return lock::run(&name, timeout, &command),
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `name` selects the Redis backend (`redis://HOST:PORT/NAME`).
pub(crate) fn is_redis(name: &str) -> bool {
    name.starts_with(memspace::segment::REDIS_PREFIX)
}

/// Formats a process for a table: `1234` or `1234 (dead)`.
pub(crate) fn process(pid: u32, alive: bool) -> String {
    if alive {
        pid.to_string()
    } else {
        format!("{pid} (dead)")
    }
}
