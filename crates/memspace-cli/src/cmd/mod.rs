//! One module per subcommand.

mod bench;
mod collection;
mod demo;
mod gc;
mod inspect;
mod list;
mod lock;
mod ls;
mod map;
mod queue;
mod typed;

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::{Context, bail};
use clap::CommandFactory;
use memspace::SegmentOptions;
use memspace::segment::redact_credentials;

use crate::cli::{Cli, Command};

/// Which segments this command opens (`--trust-owner`, `--accept-mode`).
static OPEN_OPTIONS: OnceLock<SegmentOptions> = OnceLock::new();

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut options = SegmentOptions::new();
    if let Some(user) = &cli.trust_owner {
        options = options.trust_owner(uid_of(user)?);
    }
    if let Some(mode) = cli.accept_mode {
        options = options.mode(mode);
    }
    let _ = OPEN_OPTIONS.set(options);
    match cli.command {
        Command::Demo(args) => demo::run(&args)?,
        Command::Bench(args) => bench::run(&args)?,
        Command::List(command) => list::run(command)?,
        Command::Map(command) => return map::run(command),
        Command::Queue(command) => return queue::run(command),
        Command::Rm { names, force } => return Ok(rm(&names, force)),
        Command::Ls { json, redis: None } => return ls::run(json),
        Command::Ls {
            json,
            redis: Some(url),
        } => ls::run_redis(&url, json)?,
        Command::Inspect { name, items, json } => return inspect::run(&name, items, json),
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
        Command::Completions { shell } => completions(shell)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes each of `names`, going on past one that cannot be removed: each failure is reported
/// on standard error, and the status is 1 if any failed. With `force`, a name that does not
/// exist is no failure (as `rm -f`).
fn rm(names: &[String], force: bool) -> ExitCode {
    let mut failed = 0;
    for name in names {
        match memspace::remove(name) {
            Ok(()) => {}
            Err(memspace::Error::Open(memspace::OpenError::NotFound { .. })) if force => {}
            Err(err) => {
                failed += 1;
                // A Redis URL may hold a password.
                eprintln!(
                    "memspace: error: removing `{}`: {}",
                    redact_credentials(name),
                    redact_credentials(&err.to_string())
                );
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the completion script of `shell`.
fn completions(shell: clap_complete::Shell) -> io::Result<()> {
    // Generated in memory (clap_complete panics on a failed write), then written through
    // `out()`, which reports a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "memspace", &mut script);
    out().write_all(&script)
}

/// Standard output, for a command's results: write with `writeln!(out, ...)?` and return the
/// error. A write into a pipe whose reader has gone (`memspace ls | head -1`) fails with
/// [`io::ErrorKind::BrokenPipe`], which `main` turns into a quiet exit with status 0, where
/// `println!` would panic.
pub(crate) fn out() -> io::StdoutLock<'static> {
    io::stdout().lock()
}

/// `name` as the command shows it: a Redis name's password hidden (`redis://app:***@HOST`).
pub(crate) fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    memspace::segment::redact_credentials(name)
}

/// The owners and modes the command line trusts (`--trust-owner`, `--accept-mode`).
pub(crate) fn open_options() -> &'static SegmentOptions {
    OPEN_OPTIONS.get_or_init(SegmentOptions::new)
}

/// The uid of `user`: a number, or a name looked up in /etc/passwd.
fn uid_of(user: &str) -> anyhow::Result<u32> {
    if let Ok(uid) = user.parse() {
        return Ok(uid);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let mut fields = line.split(':');
        if fields.next() == Some(user)
            && let Some(uid) = fields.nth(1).and_then(|uid| uid.parse().ok())
        {
            return Ok(uid);
        }
    }
    bail!("--trust-owner {user}: no such user in /etc/passwd; give a uid instead")
}

/// The JSON values given on the command line, in order; an error names the one that is not
/// JSON.
pub(crate) fn json_values(texts: &[String]) -> anyhow::Result<Vec<serde_json::Value>> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            serde_json::from_str(text).with_context(|| {
                format!(
                    "value {} (`{text}`) is not JSON; quote strings as '\"text\"'",
                    i + 1
                )
            })
        })
        .collect()
}

/// Formats a process for a table: `1234` or `1234 (dead)`.
pub(crate) fn process(pid: u32, alive: bool) -> String {
    if alive {
        pid.to_string()
    } else {
        format!("{pid} (dead)")
    }
}

/// The exit status that reports `status` as a shell would: its code, or 128 + the signal that
/// killed it.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> u8 {
    let code = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    u8::try_from(code).unwrap_or(1)
}
