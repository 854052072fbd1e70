//! The library's diagnostics: a warning that a fork may deadlock, the last words of a worker
//! process that cannot go on.
//!
//! They go through the [`log`] crate, with target `memspace`, so that a program with a logger
//! decides where they go and which it keeps. A program without one (`log`'s maximum level is
//! `Off` until a logger raises it) still sees them on standard error, because they report
//! something the user must act on and would otherwise lose: a library never prints anything
//! else.

use std::fmt;
use std::io::Write;
use std::os::fd::AsFd;

use log::{Level, LevelFilter};

use crate::sys;

/// Reports a hazard the program can avoid (see the module's docs for where it goes).
pub(crate) fn warn(message: fmt::Arguments<'_>) {
    emit(Level::Warn, message);
}

/// Reports why this process stops (see the module's docs for where it goes).
pub(crate) fn error(message: fmt::Arguments<'_>) {
    emit(Level::Error, message);
}

/// Reports why a forked child stops, on standard error through the system call itself, and
/// never through `log`: the child holds copies of the parent's locks (the logger's, standard
/// error's) as they were at the fork, perhaps held by a thread that does not exist in it.
pub(crate) fn error_in_forked_child(message: fmt::Arguments<'_>) {
    // Nobody is left to tell if standard error is gone or full.
    let _ = writeln!(
        sys::FdWriter(std::io::stderr().as_fd()),
        "memspace: {message}"
    );
}

fn emit(level: Level, message: fmt::Arguments<'_>) {
    if log::max_level() == LevelFilter::Off {
        // Not `eprintln!`, which panics when standard error cannot be written: nobody is left
        // to tell then.
        let mut stderr = std::io::stderr();
        let _ = match level {
            Level::Warn => writeln!(stderr, "memspace: warning: {message}"),
            _ => writeln!(stderr, "memspace: {message}"),
        };
    } else {
        log::log!(target: "memspace", level, "{message}");
    }
}
