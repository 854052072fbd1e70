//! What `list`, `map` and `queue` share: a collection of JSON values opened by the name given
//! on the command line, the options of `create`, and what a write checks first.

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use memspace::collections::{Queue, SharedList, SharedMap};
use memspace::{Segment, SegmentOptions};
use serde_json::Value;

use super::typed::{Part, Target, shorten};

/// A collection of JSON values that the CLI opens by name.
pub(crate) trait Collection: Sized {
    /// `list`, `map` or `queue`, as messages name it.
    const KIND: &'static str;

    /// Opens the collection `name` of either backend, accepting a segment as `options` allow.
    fn open_with(name: &str, options: &SegmentOptions) -> memspace::Result<Self>;

    /// The item type its creator recorded.
    fn recorded_type_name(&self) -> &str;

    /// Its segment, if it lives in shared memory.
    fn segment(&self) -> Option<&Segment>;

    /// How many items (or entries) it holds.
    fn len(&self) -> memspace::Result<u64>;
}

/// Implements [`Collection`] for `$type` by its inherent methods of the same names.
macro_rules! collection {
    ($type:ty, $kind:literal) => {
        impl Collection for $type {
            const KIND: &'static str = $kind;

            fn open_with(name: &str, options: &SegmentOptions) -> memspace::Result<Self> {
                <$type>::open_with(name, options)
            }

            fn recorded_type_name(&self) -> &str {
                <$type>::recorded_type_name(self)
            }

            fn segment(&self) -> Option<&Segment> {
                <$type>::segment(self)
            }

            fn len(&self) -> memspace::Result<u64> {
                <$type>::len(self)
            }
        }
    };
}

collection!(SharedList<Value>, "list");
collection!(SharedMap<Value, Value>, "map");
collection!(Queue<Value>, "queue");

/// Opens the collection `name` as the command line's trust allows (`--trust-owner`,
/// `--accept-mode`).
pub(crate) fn open<C: Collection>(name: &str) -> anyhow::Result<C> {
    C::open_with(name, super::open_options())
        .with_context(|| format!("opening {} `{name}`", C::KIND))
}

/// The number of items in `collection`, which the command line calls `name`.
pub(crate) fn len<C: Collection>(collection: &C, name: &str) -> anyhow::Result<u64> {
    collection
        .len()
        .with_context(|| format!("reading the length of {} `{name}`", C::KIND))
}

/// Opens the collection `name` and prints its number of items.
pub(crate) fn print_len<C: Collection>(name: &str) -> anyhow::Result<()> {
    let len = len(&open::<C>(name)?, name)?;
    writeln!(super::out(), "{len}")?;
    Ok(())
}

/// Opens the collection `name` to write `texts` into it as items: parses each as JSON, and
/// checks that a program using its recorded item type could read each back (unless `force`),
/// before any is written.
pub(crate) fn open_to_write_items<C: Collection>(
    name: &str,
    texts: &[String],
    force: bool,
) -> anyhow::Result<(C, Vec<Value>)> {
    let values = super::json_values(texts)?;
    let collection = open::<C>(name)?;
    target(&collection, name).check_each(Part::Item, &values, force)?;
    Ok((collection, values))
}

/// `collection`, which the command line calls `name`, as the target of a write.
pub(crate) fn target<'a, C: Collection>(collection: &'a C, name: &'a str) -> Target<'a> {
    Target {
        kind: C::KIND,
        name,
        recorded: collection.recorded_type_name(),
        in_shared_memory: collection.segment().is_some(),
    }
}

/// The segment options of `create`: `--max-size` and `--mode`, each only if given.
pub(crate) fn create_options(max_size: Option<u64>, mode: Option<u32>) -> SegmentOptions {
    let mut options = SegmentOptions::new();
    if let Some(bytes) = max_size {
        options = options.max_size(bytes);
    }
    if let Some(mode) = mode {
        options = options.mode(mode);
    }
    options
}

/// Whether the values on the command line are `-`: read them from standard input.
///
/// # Errors
///
/// If `-` is given with other values.
pub(crate) fn from_stdin(texts: &[String]) -> anyhow::Result<bool> {
    match texts {
        [only] if only == "-" => Ok(true),
        _ if texts.iter().any(|text| text == "-") => {
            bail!("`-` (read the values from standard input) must be the only value")
        }
        _ => Ok(false),
    }
}

/// The JSON values on standard input, one per line, with their line numbers (from 1); blank
/// lines are skipped. An item is an error if the line cannot be read or is not JSON; the
/// caller stops there.
pub(crate) fn stdin_values() -> impl Iterator<Item = anyhow::Result<(usize, Value)>> {
    std::io::stdin()
        .lock()
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let number = i + 1;
            let line = match line {
                Ok(line) => line,
                Err(err) => {
                    return Some(
                        Err(err)
                            .with_context(|| format!("reading line {number} of standard input")),
                    );
                }
            };
            if line.trim().is_empty() {
                return None;
            }
            Some(
                serde_json::from_str(&line)
                    .with_context(|| {
                        format!(
                            "line {number} of standard input (`{}`) is not JSON",
                            shorten(&line)
                        )
                    })
                    .map(|value| (number, value)),
            )
        })
}
