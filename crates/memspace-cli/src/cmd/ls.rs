//! `memspace ls`: every memspace segment in /dev/shm, one line each.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use memspace::OpenError;
use memspace::inspect::{self, SegmentInfo};
use serde_json::json;

use super::inspect::DAMAGED;
use super::process;

/// What scanning found under one name.
pub(crate) enum Entry {
    Readable(Box<SegmentInfo>),
    Unreadable {
        name: String,
        error: String,
        /// Whether the error is damage (a corrupt or truncated segment), not an access
        /// problem or a creation under way.
        damaged: bool,
    },
}

impl Entry {
    /// Whether the segment is damaged, as far as a look without reading its items tells.
    fn is_damaged(&self) -> bool {
        match self {
            Entry::Readable(info) => info.file_size < info.size,
            Entry::Unreadable { damaged, .. } => *damaged,
        }
    }
}

/// Observes the memspace segments in /dev/shm.
fn scan() -> anyhow::Result<Vec<Entry>> {
    let names = inspect::shm_segment_names().context("reading /dev/shm")?;
    Ok(names
        .into_iter()
        .map(|name| match inspect::observe(&name) {
            Ok(segment) => Entry::Readable(Box::new(inspect::info(&segment))),
            Err(err) => Entry::Unreadable {
                name,
                damaged: matches!(
                    err,
                    memspace::Error::Corrupt { .. }
                        | memspace::Error::Open(OpenError::Truncated { .. })
                ),
                error: err.to_string(),
            },
        })
        .collect())
}

/// Lists the segments; exits [`DAMAGED`] if any of them is damaged (a corrupt header, a file
/// shorter than its committed size), after listing them all.
pub(crate) fn run(json: bool) -> anyhow::Result<ExitCode> {
    let entries = scan()?;
    let damaged = entries.iter().filter(|entry| entry.is_damaged()).count();
    let status = if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "memspace: {damaged} segment(s) are damaged; `memspace inspect NAME` shows what is wrong"
        );
        ExitCode::from(DAMAGED)
    };
    let mut out = super::out();
    if json {
        let array: Vec<serde_json::Value> = entries
            .iter()
            .map(|entry| match entry {
                Entry::Readable(info) => {
                    let mut object = serde_json::to_value(info).unwrap_or_default();
                    object["damaged"] = entry.is_damaged().into();
                    object
                }
                Entry::Unreadable {
                    name,
                    error,
                    damaged,
                } => json!({ "name": name, "error": error, "damaged": damaged }),
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&array)?)?;
        return Ok(status);
    }
    if entries.is_empty() {
        writeln!(out, "no memspace segments in /dev/shm")?;
        return Ok(status);
    }
    let mut rows = vec![[
        "NAME".to_owned(),
        "KIND".to_owned(),
        "SIZE".to_owned(),
        "ITEMS".to_owned(),
        "CREATOR".to_owned(),
        "USERS".to_owned(),
        "LAST WRITER".to_owned(),
    ]];
    for entry in &entries {
        rows.push(match entry {
            Entry::Readable(info) => [
                if info.anonymous {
                    format!("{} (anonymous)", info.name)
                } else {
                    info.name.clone()
                },
                info.kind.to_owned(),
                bytes(info.size),
                info.items.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                process(info.creator.pid, info.creator.alive),
                format!("{} alive of {}", info.live_users, info.users.len()),
                match info.last_writer_pid {
                    0 => "-".to_owned(),
                    pid => pid.to_string(),
                },
            ],
            Entry::Unreadable { name, error, .. } => [
                name.clone(),
                "?".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                format!("unreadable: {error}"),
            ],
        });
    }
    print_table(&mut out, &rows)?;
    Ok(status)
}

/// `memspace ls --redis URL`: the objects memspace keeps on a Redis server. A damaged object,
/// or one this build cannot read (another layout version), is listed with what is wrong
/// (`"error"` in JSON, as for an unreadable segment, with `"damaged"` saying which), and the
/// others are listed all the same.
pub(crate) fn run_redis(url: &str, json: bool) -> anyhow::Result<()> {
    let objects =
        memspace::inspect::list_objects(url).with_context(|| format!("listing `{url}`"))?;
    let mut out = super::out();
    if json {
        let array: Vec<serde_json::Value> = objects
            .iter()
            .map(|object| match &object.problem {
                None => json!({
                    "name": object.name,
                    "kind": object.kind,
                    "type_name": object.type_name,
                    "items": object.len,
                }),
                Some(problem) => json!({
                    "name": object.name,
                    "error": problem.what(),
                    "damaged": problem.is_damage(),
                }),
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&array)?)?;
        return Ok(());
    }
    if objects.is_empty() {
        writeln!(out, "no memspace objects on {}", super::shown(url))?;
        return Ok(());
    }
    let mut rows = vec![[
        "NAME".to_owned(),
        "KIND".to_owned(),
        "ITEMS".to_owned(),
        "TYPE".to_owned(),
    ]];
    for object in &objects {
        rows.push(match &object.problem {
            None => [
                object.name.clone(),
                object.kind.clone(),
                match object.kind.as_str() {
                    "list" | "map" | "queue" => object.len.to_string(),
                    _ => "-".to_owned(),
                },
                object.type_name.clone(),
            ],
            Some(problem) => [
                object.name.clone(),
                if object.kind.is_empty() {
                    "?".to_owned()
                } else {
                    object.kind.clone()
                },
                "-".to_owned(),
                if problem.is_damage() {
                    "damaged (see below)"
                } else {
                    "unreadable (see below)"
                }
                .to_owned(),
            ],
        });
    }
    print_table(&mut out, &rows)?;
    for object in &objects {
        match &object.problem {
            Some(problem) if problem.is_damage() => writeln!(
                out,
                "damaged: {}: {}; `memspace rm {}` removes it",
                object.name,
                problem.what(),
                object.name
            )?,
            Some(problem) => writeln!(out, "unreadable: {}: {}", object.name, problem.what())?,
            None => {}
        }
    }
    Ok(())
}

fn print_table<const N: usize>(out: &mut impl Write, rows: &[[String; N]]) -> io::Result<()> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let line = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// `65536` as `64 KiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(
        clippy::cast_precision_loss,
        reason = "a size printed with one decimal"
    )]
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
