//! `memspace`: the threads-versus-processes demo, and tools to see, use and clean up what is in
//! shared memory.

mod cli;
mod cmd;

use std::borrow::Cow;
use std::io;
use std::process::ExitCode;

use clap::Parser;
use memspace::segment::redact_credentials;

fn main() -> ExitCode {
    // First, always: in a worker started with the spawn start method, this runs the worker
    // and exits.
    memspace::init();
    end_quietly_on_closed_stdout();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    match cmd::run(cli) {
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

/// Makes `print!` and `println!` into a closed pipe end the program quietly with status 0, as
/// a write through [`cmd::out`] that returns the error does, instead of panicking with "failed
/// printing to stdout: Broken pipe" and exit status 101. Every other panic is reported as
/// usual.
///
/// Rust ignores `SIGPIPE`, so a write into a closed pipe fails with `EPIPE`, which the print
/// macros turn into a panic; restoring `SIGPIPE`'s default action would need `unsafe`, which
/// this crate forbids. The printing paths write through [`cmd::out`] and return the error;
/// this hook covers a `println!` that remains.
fn end_quietly_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // std's message: "failed printing to stdout: Broken pipe (os error 32)".
        let closed_stdout = info.payload_as_str().is_some_and(|message| {
            message.starts_with("failed printing to stdout")
                && message.to_ascii_lowercase().contains("broken pipe")
        });
        if closed_stdout {
            std::process::exit(0);
        }
        report(info);
    }));
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
