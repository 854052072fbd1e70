//! `memspace list ...`: shared lists of JSON values from the shell.

use std::io::Write;

use anyhow::Context;
use memspace::SharedList;
use serde_json::Value;

use super::collection::{self, create_options, open};
use super::typed::Part;
use crate::cli::ListCommand;

pub(crate) fn run(command: ListCommand) -> anyhow::Result<()> {
    match command {
        ListCommand::Create {
            name,
            max_size,
            mode,
        } => {
            SharedList::<Value>::create_with(&name, &create_options(max_size, mode))
                .with_context(|| format!("creating list `{name}`"))?;
        }
        ListCommand::Push {
            name,
            values,
            force,
        } => {
            let (list, values) = if collection::from_stdin(&values)? {
                let list: SharedList<Value> = open(&name)?;
                let values = read_stdin(&list, &name, force)?;
                (list, values)
            } else {
                collection::open_to_write_items::<SharedList<Value>>(&name, &values, force)?
            };
            list.extend(&values)
                .with_context(|| format!("appending to list `{name}`"))?;
        }
        ListCommand::Get { name, index } => {
            let list: SharedList<Value> = open(&name)?;
            let json = match index {
                Some(index) => item(&list, &name, index)?,
                None => Value::Array(
                    list.to_vec()
                        .with_context(|| format!("reading list `{name}`"))?,
                ),
            };
            writeln!(super::out(), "{json}")?;
        }
        ListCommand::Len { name } => collection::print_len::<SharedList<Value>>(&name)?,
    }
    Ok(())
}

/// The values on standard input for `list push NAME -`, each checked against the recorded item
/// type of `list` (unless `force`); an error before any is appended.
fn read_stdin(list: &SharedList<Value>, name: &str, force: bool) -> anyhow::Result<Vec<Value>> {
    let target = collection::target(list, name);
    let mut values = Vec::new();
    for line in collection::stdin_values() {
        let (number, value) = line.with_context(|| format!("appended nothing to list `{name}`"))?;
        target.check(Part::Item, &value, force).with_context(|| {
            format!("appended nothing to list `{name}`: line {number} of standard input")
        })?;
        values.push(value);
    }
    Ok(values)
}

/// The item at `index` of `list`, called `name`: from 0 at the front, from -1 at the back
/// (counted from the end as it was when read: a list only grows).
fn item(list: &SharedList<Value>, name: &str, index: i64) -> anyhow::Result<Value> {
    let out_of_range =
        |len: u64| anyhow::anyhow!("index {index} is out of range: list `{name}` has {len} items");
    let position = if let Ok(position) = u64::try_from(index) {
        position
    } else {
        let len = collection::len(list, name)?;
        len.checked_sub(index.unsigned_abs())
            .ok_or_else(|| out_of_range(len))?
    };
    match list
        .get(position)
        .with_context(|| format!("reading item {index} of list `{name}`"))?
    {
        Some(value) => Ok(value),
        None => Err(out_of_range(collection::len(list, name)?)),
    }
}
