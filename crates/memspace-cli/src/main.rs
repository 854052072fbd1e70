//! `memspace`: the threads-versus-processes demo, and tools to see, use and clean up what is in
//! shared memory.

mod cli;
mod cmd;

use std::borrow::Cow;
use std::process::ExitCode;

use clap::Parser;
use memspace::segment::redact_credentials;

fn main() -> ExitCode {
    // First, always: in a worker started with the spawn start method, this runs the worker
    // and exits.
    memspace::init();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    match cmd::run(cli) {
        Ok(code) => code,
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
