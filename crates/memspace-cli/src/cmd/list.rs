//! `memspace list ...`: shared lists of JSON values from the shell.

use anyhow::{Context, bail};
use memspace::{SegmentOptions, SharedList};
use serde_json::Value;

use super::typed::{Part, Target};
use crate::cli::ListCommand;

pub(crate) fn run(command: ListCommand) -> anyhow::Result<()> {
    match command {
        ListCommand::Create {
            name,
            max_size,
            mode,
        } => {
            let mut options = SegmentOptions::new();
            if let Some(bytes) = max_size {
                options = options.max_size(bytes);
            }
            if let Some(mode) = mode {
                options = options.mode(mode);
            }
            SharedList::<Value>::create_with(&name, &options)
                .with_context(|| format!("creating list `{name}`"))?;
        }
        ListCommand::Push {
            name,
            values,
            force,
        } => {
            let values = super::json_values(&values)?;
            let list = open(&name)?;
            let target = Target {
                kind: "list",
                name: &name,
                recorded: list.recorded_type_name(),
                in_shared_memory: list.segment().is_some(),
            };
            target.check_each(Part::Item, &values, force)?;
            list.extend(&values)
                .with_context(|| format!("appending to list `{name}`"))?;
        }
        ListCommand::Get { name, index } => {
            let list = open(&name)?;
            let json = match index {
                Some(index) => match list
                    .get(index)
                    .with_context(|| format!("reading item {index} of list `{name}`"))?
                {
                    Some(value) => value,
                    None => bail!(
                        "index {index} is out of range: list `{name}` has {} items",
                        list.len()
                            .with_context(|| format!("reading the length of list `{name}`"))?
                    ),
                },
                None => Value::Array(
                    list.to_vec()
                        .with_context(|| format!("reading list `{name}`"))?,
                ),
            };
            println!("{json}");
        }
        ListCommand::Len { name } => println!(
            "{}",
            open(&name)?
                .len()
                .with_context(|| format!("reading the length of list `{name}`"))?
        ),
    }
    Ok(())
}

fn open(name: &str) -> anyhow::Result<SharedList<Value>> {
    match super::open_segment(name) {
        Ok(Some(segment)) => SharedList::from_segment(segment),
        Ok(None) => SharedList::open(name),
        Err(err) => Err(err),
    }
    .with_context(|| format!("opening list `{name}`"))
}
