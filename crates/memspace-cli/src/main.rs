//! `memspace`: the threads-versus-processes demo, and tools to see, use and clean up what is in
//! shared memory.

mod cli;
mod cmd;

use std::borrow::Cow;
use std::io;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use clap::Parser;
use memspace::segment::redact_credentials;

fn main() -> ExitCode {
    // First, always: in a worker started with the spawn start method, this runs the worker
    // and exits.
    memspace::init();
    silence_closed_stdout_panics();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    match run(cli) {
        Ok(code) => code,
        // The reader of our output went away (`memspace ls | head -1`): nothing more to say,
        // and no one to say it to.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // The context names what the user typed, which may be a URL with a password.
            eprintln!(
                "memspace: error: {}",
                redact_credentials(&format!("{err:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

/// Whether `err`, or an error it wraps, is a write into a pipe whose reader has closed it.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Whether a panic's message is std's for a `print!` or `println!` into a closed pipe: "failed
/// printing to stdout: Broken pipe (os error 32)".
fn is_closed_stdout(message: &str) -> bool {
    message.starts_with("failed printing to stdout")
        && message.to_ascii_lowercase().contains("broken pipe")
}

/// Makes a `print!` or `println!` into a closed pipe end the command quietly with status 0, as
/// a write through [`cmd::out`] that returns the error does, instead of panicking with "failed
/// printing to stdout: Broken pipe" and exit status 101. Every other panic is reported as
/// usual.
///
/// Rust ignores `SIGPIPE`, so a write into a closed pipe fails with `EPIPE`, which the print
/// macros turn into a panic; restoring `SIGPIPE`'s default action would need `unsafe`, which
/// this crate forbids. The printing paths write through [`cmd::out`] and return the error;
/// this covers a `println!` that remains: its panic is not reported, and [`run`] ends the
/// command quietly when it reaches `main`.
fn silence_closed_stdout_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload_as_str().is_some_and(is_closed_stdout) {
            report(info);
        }
    }));
}

/// Runs the command; a panic of a `println!` into a closed pipe is a quiet success.
fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    // Unwind safety: after a panic nothing the closure touched is used again.
    match std::panic::catch_unwind(AssertUnwindSafe(|| cmd::run(cli))) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            if message.is_some_and(is_closed_stdout) {
                Ok(ExitCode::SUCCESS)
            } else {
                std::panic::resume_unwind(payload)
            }
        }
    }
}

/// Prints clap's message (which may quote an argument, such as a URL with a password: hidden)
/// and exits as clap would: 0 for `--help` and `--version`, 2 for a usage error.
fn usage_error(err: &clap::Error) -> ExitCode {
    let plain = err.render().to_string();
    match redact_credentials(&plain) {
        // Nothing to hide: clap prints it, in colour where it would.
        Cow::Borrowed(_) => {
            let _ = err.print();
        }
        Cow::Owned(redacted) if err.use_stderr() => eprint!("{redacted}"),
        Cow::Owned(redacted) => print!("{redacted}"),
    }
    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2))
}
