//! `memspace lock NAME -- COMMAND...`: like flock(1), with a lock that survives its holder.

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, bail};
use memspace::sync::{LeaseError, Lock, LockError, TryLockError};
use memspace::{Error, OpenError};

/// The exit status when `--timeout` expires (`EX_TEMPFAIL`).
const TIMED_OUT: u8 = 75;

pub(crate) fn run(
    name: &str,
    timeout: Option<f64>,
    command: &[String],
) -> anyhow::Result<ExitCode> {
    let lock = open_or_create(name)?;
    let acquired = match timeout {
        None => lock.lock().map_err(TryLockError::Lock),
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            lock.try_lock_for(Duration::from_secs_f64(seconds))
        }
        Some(seconds) => bail!("--timeout {seconds} is not a number of seconds"),
    };
    let guard = match acquired {
        Ok(guard) => guard,
        Err(TryLockError::Lock(LockError::OwnerDied(guard))) => {
            let who = guard
                .previous_owner_died()
                .filter(|pid| *pid != 0)
                .map_or_else(String::new, |pid| format!(" (pid {pid})"));
            eprintln!(
                "memspace: the previous holder of lock `{name}`{who} died while holding it; taking over",
                name = super::shown(name)
            );
            guard
                .mark_consistent()
                .with_context(|| format!("recovering lock `{name}`"))?;
            guard
        }
        Err(TryLockError::Lock(LockError::Poisoned(guard))) => {
            eprintln!(
                "memspace: a previous holder of lock `{name}` panicked; clearing the flag",
                name = super::shown(name)
            );
            guard.clear_poison();
            guard
        }
        Err(TryLockError::Timeout { waited, .. }) => {
            eprintln!(
                "memspace: lock `{name}` was not released within {waited:?}",
                name = super::shown(name)
            );
            return Ok(ExitCode::from(TIMED_OUT));
        }
        Err(err) => return Err(Error::from(err)).with_context(|| format!("locking `{name}`")),
    };
    let status = Command::new(&command[0])
        .args(&command[1..])
        .status()
        .with_context(|| format!("running `{}`", command[0]))?;
    // A Redis lease may have run out while the command ran (the command outlived a pause, or
    // the server was gone for longer than the lease): then another holder may have run at the
    // same time, which the caller must hear about.
    match guard.unlock() {
        Ok(()) => {}
        Err(err @ LeaseError::Lost { .. }) => {
            return Err(Error::from(err)).with_context(|| format!("holding `{name}`"));
        }
        Err(err) => eprintln!(
            "memspace: releasing lock `{name}`: {err}",
            name = super::shown(name)
        ),
    }
    Ok(ExitCode::from(super::exit_code(status)))
}

fn open_or_create(name: &str) -> anyhow::Result<Lock> {
    let open = || Lock::open_with(name, super::open_options());
    match open() {
        Err(Error::Open(OpenError::NotFound { .. })) => match Lock::create(name) {
            Err(Error::Open(OpenError::AlreadyExists { .. })) => open(),
            other => other,
        },
        other => other,
    }
    .with_context(|| format!("opening lock `{name}`"))
}
