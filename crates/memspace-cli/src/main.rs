//! `memspace`: the threads-versus-processes demo, and tools to see, use and clean up what is in
//! shared memory.

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // First, always: in a worker started with the spawn start method, this runs the worker
    // and exits.
    memspace::init();
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("memspace: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
