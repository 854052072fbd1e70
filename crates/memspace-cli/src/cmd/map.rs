//! `memspace map ...`: shared maps of JSON keys and values from the shell.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use memspace::collections::SharedMap;
use serde_json::Value;

use super::collection::{self, create_options, open};
use super::typed::Part;
use crate::cli::MapCommand;

/// A map of JSON keys to JSON values, as the CLI creates them.
type JsonMap = SharedMap<Value, Value>;

fn json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text)
        .with_context(|| format!("the {what} `{text}` is not JSON; quote strings as '\"text\"'"))
}

/// The exit status of `get` and `remove` when the map has no such key.
const NOT_FOUND: u8 = 4;

/// Prints the value found under `key` in the map `name`; if there was none, says so and
/// returns [`NOT_FOUND`].
fn print_found(found: Option<Value>, name: &str, key: &Value) -> std::io::Result<ExitCode> {
    if let Some(value) = found {
        writeln!(super::out(), "{value}")?;
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "memspace: map `{name}` has no key {key}",
            name = super::shown(name)
        );
        Ok(ExitCode::from(NOT_FOUND))
    }
}

pub(crate) fn run(command: MapCommand) -> anyhow::Result<ExitCode> {
    match command {
        MapCommand::Create {
            name,
            max_size,
            mode,
        } => {
            JsonMap::create_with(&name, &create_options(max_size, mode))
                .with_context(|| format!("creating map `{name}`"))?;
        }
        MapCommand::Set {
            name,
            key,
            value,
            force,
        } => {
            let (key, value) = (json("key", &key)?, json("value", &value)?);
            let map: JsonMap = open(&name)?;
            let target = collection::target(&map, &name);
            target.check(Part::Key, &key, force)?;
            target.check(Part::Value, &value, force)?;
            map.insert(&key, &value)
                .with_context(|| format!("setting {key} in map `{name}`"))?;
        }
        MapCommand::Get { name, key: None } => {
            let entries = open::<JsonMap>(&name)?
                .to_vec()
                .with_context(|| format!("reading map `{name}`"))?;
            let pairs: Vec<Value> = entries
                .into_iter()
                .map(|(k, v)| Value::Array(vec![k, v]))
                .collect();
            writeln!(super::out(), "{}", Value::Array(pairs))?;
        }
        MapCommand::Get {
            name,
            key: Some(key),
        } => {
            let key = json("key", &key)?;
            let found = open::<JsonMap>(&name)?
                .get(&key)
                .with_context(|| format!("reading {key} in map `{name}`"))?;
            return Ok(print_found(found, &name, &key)?);
        }
        MapCommand::Remove { name, key } => {
            let key = json("key", &key)?;
            let found = open::<JsonMap>(&name)?
                .remove(&key)
                .with_context(|| format!("removing {key} from map `{name}`"))?;
            return Ok(print_found(found, &name, &key)?);
        }
        MapCommand::Len { name } => collection::print_len::<JsonMap>(&name)?,
    }
    Ok(ExitCode::SUCCESS)
}
