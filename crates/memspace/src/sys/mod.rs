//! The operating-system layer: the only code that calls `rustix` or `libc`.
//!
//! Everything above this module sees typed, documented wrappers. The platform is chosen once,
//! here; today only Linux (glibc or musl) is implemented, because the lock relies on robust
//! process-shared pthread mutexes, which macOS and the BSDs other than FreeBSD lack.

#[cfg_attr(target_os = "linux", path = "linux.rs")]
mod imp;

pub(crate) use self::imp::*;
