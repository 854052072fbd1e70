//! `memspace gc`: removes what nobody can use any more, by the rules of
//! [`memspace::inspect::gc`]:
//!
//! * an anonymous segment whose every recorded user is dead (its creator and everyone it
//!   handed the segment to were killed before they could remove it);
//! * a segment whose creator died while creating it (its header was never finished), once it
//!   is a minute old.
//!
//! Named segments are kept: like files, they persist until removed with `memspace rm`.

use std::io::Write;

use anyhow::Context;
use serde_json::json;

pub(crate) fn run(only: &[String], dry_run: bool, as_json: bool) -> anyhow::Result<()> {
    let only: Vec<&str> = only.iter().map(String::as_str).collect();
    let names = (!only.is_empty()).then_some(only.as_slice());
    let collected = memspace::inspect::gc(names, dry_run).context("reading /dev/shm")?;
    let mut out = super::out();
    if as_json {
        let array: Vec<serde_json::Value> = collected
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "reason": c.reason.to_string(),
                    "removed": c.removed,
                    "error": c.error.as_ref().map(ToString::to_string),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&array)?)?;
        return Ok(());
    }
    for c in &collected {
        let (name, reason) = (&c.name, &c.reason);
        match &c.error {
            None if dry_run => writeln!(out, "would remove {name}: {reason}")?,
            None => writeln!(out, "removed {name}: {reason}")?,
            Some(err) => eprintln!("memspace: could not remove {name}: {err}"),
        }
    }
    if collected.is_empty() {
        writeln!(out, "nothing to remove")?;
    }
    Ok(())
}
