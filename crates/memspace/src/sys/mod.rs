//! The operating-system layer: the only code that calls `rustix` or `libc`.
//!
//! Everything above this module sees typed, documented wrappers. The platform is chosen once,
//! here; today only Linux (glibc or musl) is implemented: the lock sleeps on a shared futex and
//! checks a holder's life in `/proc`.

#[cfg_attr(target_os = "linux", path = "linux/mod.rs")]
mod imp;

pub(crate) use self::imp::*;
