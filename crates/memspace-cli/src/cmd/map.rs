//! `memspace map ...`: shared maps of JSON keys and values from the shell.

use anyhow::{Context, bail};
use memspace::SegmentOptions;
use memspace::collections::SharedMap;
use serde_json::Value;

use super::typed::{Part, Target};
use crate::cli::MapCommand;

fn json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text)
        .with_context(|| format!("the {what} `{text}` is not JSON; quote strings as '\"text\"'"))
}

fn open(name: &str) -> anyhow::Result<SharedMap<Value, Value>> {
    match super::open_segment(name) {
        Ok(Some(segment)) => SharedMap::from_segment(segment),
        Ok(None) => SharedMap::open(name),
        Err(err) => Err(err),
    }
    .with_context(|| format!("opening map `{name}`"))
}

pub(crate) fn run(command: MapCommand) -> anyhow::Result<()> {
    match command {
        MapCommand::Create {
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
            SharedMap::<Value, Value>::create_with(&name, &options)
                .with_context(|| format!("creating map `{name}`"))?;
        }
        MapCommand::Set {
            name,
            key,
            value,
            force,
        } => {
            let (key, value) = (json("key", &key)?, json("value", &value)?);
            let map = open(&name)?;
            let target = Target {
                kind: "map",
                name: &name,
                recorded: map.recorded_type_name(),
                in_shared_memory: map.segment().is_some(),
            };
            target.check(Part::Key, &key, force)?;
            target.check(Part::Value, &value, force)?;
            map.insert(&key, &value)
                .with_context(|| format!("setting {key} in map `{name}`"))?;
        }
        MapCommand::Get { name, key: None } => {
            let entries = open(&name)?
                .to_vec()
                .with_context(|| format!("reading map `{name}`"))?;
            let pairs: Vec<Value> = entries
                .into_iter()
                .map(|(k, v)| Value::Array(vec![k, v]))
                .collect();
            println!("{}", Value::Array(pairs));
        }
        MapCommand::Get {
            name,
            key: Some(key),
        } => {
            let key = json("key", &key)?;
            match open(&name)?
                .get(&key)
                .with_context(|| format!("reading {key} in map `{name}`"))?
            {
                Some(value) => println!("{value}"),
                None => bail!("map `{name}` has no key {key}"),
            }
        }
        MapCommand::Remove { name, key } => {
            let key = json("key", &key)?;
            match open(&name)?
                .remove(&key)
                .with_context(|| format!("removing {key} from map `{name}`"))?
            {
                Some(value) => println!("{value}"),
                None => bail!("map `{name}` has no key {key}"),
            }
        }
        MapCommand::Len { name } => println!(
            "{}",
            open(&name)?
                .len()
                .with_context(|| format!("reading the length of map `{name}`"))?
        ),
    }
    Ok(())
}
