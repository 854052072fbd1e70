//! `memspace inspect NAME`: a segment's header, lock, users, consistency and items.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use memspace::SharedList;
use memspace::collections::{Queue, SharedMap};
use memspace::inspect::{self, Description, LockInfo};
use memspace::segment::Kind;
use serde_json::{Value, json};

use super::ls::bytes;
use super::process;

/// The exit status of `inspect` when the segment was read and `verify` found damage.
pub(crate) const DAMAGED: u8 = 3;

/// Prints what is known of `name`. Exits 0 if the segment is healthy, [`DAMAGED`] if
/// `verify` found damage (after printing it), and 1 if it could not be read at all, or its
/// items could not (for example, their lock stayed held for the observer's whole wait).
pub(crate) fn run(name: &str, items: bool, as_json: bool) -> anyhow::Result<ExitCode> {
    let described = inspect::describe(name, super::open_options())
        .with_context(|| format!("inspecting `{name}`"))?;
    let (info, report, segment) = match described {
        Description::Segment {
            info,
            report,
            segment,
        } => (info, report, segment),
        Description::Redis { kind, fields } => {
            run_redis(name, kind, &fields, items, as_json)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => bail!("`{name}`: this build of the command cannot show what the library described"),
    };
    let values = if items {
        items_of(info.kind, name, Some(*segment))
    } else {
        Ok(None)
    };
    let mut out = super::out();
    if as_json {
        let mut object = serde_json::to_value(&info)?;
        object["verify"] = serde_json::to_value(&report)?;
        if let Ok(Some(values)) = &values {
            object["values"] = Value::Array(values.clone());
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&object)?)?;
    } else {
        print_info(&mut out, &info, &report)?;
        if let Ok(Some(values)) = &values {
            writeln!(out, "values")?;
            for (index, value) in values.iter().enumerate() {
                writeln!(out, "{}", json!({ "index": index, "value": value }))?;
            }
        }
    }
    values?;
    if report.is_consistent() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "memspace: `{name}` is damaged: {} problem(s) found (listed above)",
            report.problems.len()
        );
        Ok(ExitCode::from(DAMAGED))
    }
}

/// `inspect redis://HOST:PORT/NAME`: the object's kind, keys and state, and its items.
fn run_redis(
    name: &str,
    kind: Kind,
    fields: &[(&'static str, String)],
    items: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    let values = if items {
        items_of(kind.as_str(), name, None)?
    } else {
        None
    };
    let mut out = super::out();
    if as_json {
        let mut object = json!({ "name": super::shown(name), "kind": kind.as_str() });
        for (what, value) in fields {
            object[what.replace(' ', "_")] = Value::String(value.clone());
        }
        if let Some(values) = values {
            object["values"] = Value::Array(values);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&object)?)?;
        return Ok(());
    }
    writeln!(out, "{:<18} {}", "object", super::shown(name))?;
    writeln!(out, "{:<18} {}", "kind", kind.as_str())?;
    for (what, value) in fields {
        writeln!(out, "{what:<18} {value}")?;
    }
    if let Some(values) = values {
        writeln!(out, "values")?;
        for (index, value) in values.iter().enumerate() {
            writeln!(out, "{}", json!({ "index": index, "value": value }))?;
        }
    }
    Ok(())
}

/// The items of the collection `name` of `kind`, as JSON values (`None` for other kinds), read
/// from `observed` (a segment mapped without joining its users, `inspect::observe`), or else
/// opened by its URL (a Redis object).
fn items_of(
    kind: &str,
    name: &str,
    observed: Option<memspace::Segment>,
) -> anyhow::Result<Option<Vec<Value>>> {
    let context = || format!("reading the items of `{name}`");
    let values = match kind {
        "list" => match observed {
            Some(segment) => SharedList::<Value>::from_segment(segment),
            None => SharedList::<Value>::open(name),
        }
        .and_then(|list| list.to_vec()),
        "map" => match observed {
            Some(segment) => SharedMap::<Value, Value>::from_segment(segment),
            None => SharedMap::<Value, Value>::open(name),
        }
        .and_then(|map| map.to_vec())
        .map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| Value::Array(vec![k, v]))
                .collect()
        }),
        "queue" => match observed {
            Some(segment) => Queue::<Value>::from_segment(segment),
            None => Queue::<Value>::open(name),
        }
        .and_then(|queue| queue.to_vec()),
        "array" => match observed {
            Some(segment) => array_items(segment),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    values.map(Some).with_context(context)
}

/// The elements of the array in `segment`, by the element type its creator recorded (one of
/// the ten number types an array can hold).
fn array_items(segment: memspace::Segment) -> memspace::Result<Vec<Value>> {
    fn read<T: memspace::collections::Element + Into<Value>>(
        segment: memspace::Segment,
    ) -> memspace::Result<Vec<Value>> {
        let array = memspace::SharedArray::<T>::from_segment(segment)?;
        Ok(array.to_vec()?.into_iter().map(Into::into).collect())
    }
    match segment.type_name() {
        "i8" => read::<i8>(segment),
        "u8" => read::<u8>(segment),
        "i16" => read::<i16>(segment),
        "u16" => read::<u16>(segment),
        "i32" => read::<i32>(segment),
        "u32" => read::<u32>(segment),
        "i64" => read::<i64>(segment),
        "u64" => read::<u64>(segment),
        "f32" => read::<f32>(segment),
        // An unknown name is opened as `f64`, which reports the mismatch.
        _ => read::<f64>(segment),
    }
}

fn print_info(
    out: &mut impl Write,
    info: &inspect::SegmentInfo,
    report: &inspect::Report,
) -> io::Result<()> {
    let anonymous = if info.anonymous {
        "anonymous: removed by its last user"
    } else {
        "named: persists until `memspace rm`"
    };
    writeln!(out, "segment      {} ({anonymous})", info.name)?;
    writeln!(out, "kind         {}", info.kind)?;
    if !info.type_name.is_empty() {
        writeln!(out, "type         {}", info.type_name)?;
    }
    if let Some(n) = info.items {
        writeln!(out, "items        {n}")?;
    }
    writeln!(
        out,
        "size         {} committed, {} in the file, at most {}; grown {} times",
        bytes(info.size),
        bytes(info.file_size),
        bytes(info.max_size),
        info.generation
    )?;
    writeln!(out, "inode        {}", info.inode)?;
    writeln!(
        out,
        "creator      {} (start time {}), created {}",
        process(info.creator.pid, info.creator.alive),
        info.creator.start_time,
        utc_date(info.created_unix_ms)
    )?;
    writeln!(
        out,
        "last writer  {}",
        match info.last_writer_pid {
            0 => "none yet".to_owned(),
            pid => pid.to_string(),
        }
    )?;
    let users: Vec<String> = info.users.iter().map(|u| process(u.pid, u.alive)).collect();
    writeln!(
        out,
        "users        {} alive of {} recorded{}{}",
        info.live_users,
        info.users.len(),
        if users.is_empty() {
            String::new()
        } else {
            format!(": {}", users.join(", "))
        },
        match (info.untracked_users, info.foreign_users) {
            (0, false) => String::new(),
            (0, true) => " (and some in another pid or time namespace)".to_owned(),
            (n, false) => format!(" (+{n} untracked)"),
            (n, true) => format!(" (+{n} untracked, and some in another pid or time namespace)"),
        }
    )?;
    writeln!(out, "lock         {}", lock_line(&info.lock))?;
    if let Some(lock) = &info.receive_lock {
        writeln!(out, "receive lock {}", lock_line(lock))?;
    }
    for (what, value) in &info.state {
        writeln!(out, "{what:<12} {value}")?;
    }
    if report.is_consistent() {
        writeln!(
            out,
            "verify       consistent ({} items checked)",
            report.items_checked
        )?;
    } else {
        writeln!(
            out,
            "verify       {} PROBLEMS ({} items checked)",
            report.problems.len(),
            report.items_checked
        )?;
        for problem in &report.problems {
            writeln!(out, "  problem: {problem}")?;
        }
    }
    for note in &report.notes {
        writeln!(out, "  note: {note}")?;
    }
    Ok(())
}

/// A lock's line: its holder, whether poisoned, how many holders' deaths it recovered from.
fn lock_line(lock: &LockInfo) -> String {
    let holder = match (lock.owner, lock.owner_alive) {
        (None, _) => "free".to_owned(),
        (Some(pid), Some(false)) => {
            format!("held by {pid}, which is dead: the next locker recovers it")
        }
        (Some(pid), _) => format!("held by {pid}"),
    };
    format!(
        "{holder}{}; {} owner deaths recovered",
        if lock.poisoned { ", poisoned" } else { "" },
        lock.owner_deaths
    )
}

/// `ms` milliseconds after the Unix epoch as a UTC date and time, `2026-12-04 16:00:31.123 UTC`
/// (the proleptic Gregorian calendar; `--json` keeps the milliseconds).
fn utc_date(ms: u64) -> String {
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`), in eras of
    // 400 years that start on 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    let (hours, minutes) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    let (seconds, millis) = (ms_of_day / 1000 % 60, ms_of_day % 1000);
    format!("{year:04}-{month:02}-{day:02} {hours:02}:{minutes:02}:{seconds:02}.{millis:03} UTC")
}

#[cfg(test)]
mod tests {
    use super::utc_date;

    #[test]
    fn milliseconds_after_the_epoch_read_as_utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
        assert_eq!(utc_date(1_796_400_031_123), "2026-12-04 16:00:31.123 UTC");
    }
}
