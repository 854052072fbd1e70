//! The library's diagnostics: a warning that a fork may deadlock, the last words of a worker
//! process that cannot go on.
//!
//! They go through the [`log`] crate, with target `memspace`, so that a program with a logger
//! decides where they go and which it keeps. A program without one (`log`'s maximum level is
//! `Off` until a logger raises it) still sees them on standard error, because they report
//! something the user must act on and would otherwise lose: a library never prints anything
//! else.

use std::fmt;

use log::{Level, LevelFilter};

/// Reports a hazard the program can avoid (see the module's docs for where it goes).
pub(crate) fn warn(message: fmt::Arguments<'_>) {
    emit(Level::Warn, message);
}

/// Reports why this process stops (see the module's docs for where it goes).
pub(crate) fn error(message: fmt::Arguments<'_>) {
    emit(Level::Error, message);
}

fn emit(level: Level, message: fmt::Arguments<'_>) {
    if log::max_level() == LevelFilter::Off {
        match level {
            Level::Warn => eprintln!("memspace: warning: {message}"),
            _ => eprintln!("memspace: {message}"),
        }
    } else {
        log::log!(target: "memspace", level, "{message}");
    }
}
