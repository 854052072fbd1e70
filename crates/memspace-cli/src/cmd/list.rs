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
        ListCommand::Set {
            name,
            index,
            value,
            force,
        } => {
            let (list, mut values) = collection::open_to_write_items::<SharedList<Value>>(
                &name,
                std::slice::from_ref(&value),
                force,
            )?;
            let value = values.pop().context("one value")?;
            let position = position(&list, &name, index)?;
            list.set(position, &value)
                .with_context(|| format!("setting item {index} of list `{name}`"))?;
        }
        ListCommand::Pop { name } => {
            let list: SharedList<Value> = open(&name)?;
            let value = list
                .pop()
                .with_context(|| format!("popping from list `{name}`"))?
                .with_context(|| format!("list `{name}` is empty: there is nothing to pop"))?;
            writeln!(super::out(), "{value}")?;
        }
        ListCommand::Remove { name, index } => {
            let list: SharedList<Value> = open(&name)?;
            let position = position(&list, &name, index)?;
            let value = list
                .remove(position)
                .with_context(|| format!("removing item {index} of list `{name}`"))?;
            writeln!(super::out(), "{value}")?;
        }
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

/// The position of `index` in `list`, called `name`: from 0 at the front, from -1 at the back
/// (counted from the end as it was when read: a change by another process meanwhile can make
/// it another item, or out of range).
fn position(list: &SharedList<Value>, name: &str, index: i64) -> anyhow::Result<u64> {
    if let Ok(position) = u64::try_from(index) {
        return Ok(position);
    }
    let len = collection::len(list, name)?;
    len.checked_sub(index.unsigned_abs())
        .ok_or_else(|| out_of_range(name, index, len))
}

fn out_of_range(name: &str, index: i64, len: u64) -> anyhow::Error {
    anyhow::anyhow!("index {index} is out of range: list `{name}` has {len} items")
}

/// The item at `index` of `list`, called `name` (see [`position`]).
fn item(list: &SharedList<Value>, name: &str, index: i64) -> anyhow::Result<Value> {
    match list
        .get(position(list, name, index)?)
        .with_context(|| format!("reading item {index} of list `{name}`"))?
    {
        Some(value) => Ok(value),
        None => Err(out_of_range(name, index, collection::len(list, name)?)),
    }
}
