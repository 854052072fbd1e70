//! One module per subcommand.

mod demo;
mod list;

use anyhow::Context;

use crate::cli::{Cli, Command};

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::List(command) => list::run(command),
        Command::Rm { names } => {
            for name in &names {
                memspace::Segment::remove(name).with_context(|| format!("removing `{name}`"))?;
            }
            Ok(())
        }
    }
}
