//! Share memory between processes the way threads do.
//!
//! Threads of one process share its address space; processes each get their own, so a list
//! handed to three child processes comes back empty to the parent. memspace gives Rust one API
//! to run work as threads or as processes ([`Thread`], [`Process`]), and locks and collections
//! that live in shared memory ([`Lock`], [`SharedList`]): handles to them travel to a child as
//! references, so parent and children see the same data. They survive a participant being
//! `kill -9`ed, and grow while others are attached.
//!
//! ```
//! # fn main() -> memspace::Result<()> {
//! use memspace::{Lock, SharedList, Thread};
//!
//! fn work((nums, lock): (SharedList<i64>, Lock)) {
//!     for i in 0..3 {
//!         let _held = lock.lock().expect("lock");
//!         nums.push(&i).expect("push");
//!     }
//! }
//!
//! let (nums, lock) = (SharedList::new()?, Lock::new()?);
//! for _ in 0..3 {
//!     // `Process::new` instead runs it in a child process, with the same result.
//!     let mut worker = Thread::new(work, (nums.clone(), lock.clone()));
//!     worker.start()?;
//!     worker.join()?;
//! }
//! assert_eq!(nums.to_vec()?, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//!
//! * [`spawn`] runs work: [`Thread`], [`Process`] (start methods `fork` and `spawn`), [`init`].
//! * [`sync`] has the robust cross-process locks [`Lock`] and [`Mutex`].
//! * [`collections`] has [`SharedList`].
//! * [`segment`] is the named shared-memory segments everything lives in.
//! * [`inspect`] has read-only views of segments and [`inspect::verify`].
//! * [`backend`] says where objects live: shared memory, or a Redis server
//!   (`redis://HOST:PORT/NAME`) to share them between machines ([`Backend`]).
//! * [`remote`] lists and removes the objects memspace keeps on a Redis server.
//!
//! # Safety model
//!
//! * **What survives a crashed peer.** A process killed at any instruction (SIGKILL included)
//!   leaves every lock recoverable ([`sync::LockError::OwnerDied`]) and every collection
//!   consistent: an append it had not published is invisible, one it had published is
//!   complete. Nothing acknowledged to a caller is lost.
//! * **What a misbehaving peer can do.** Segments are created mode `0600`, so only processes
//!   of the same user can open them. A segment is treated as untrusted input: its header is
//!   validated on open and every offset is bounds-checked before it is followed, so garbage
//!   gives an error naming the segment, never out-of-bounds access. A peer with write access
//!   can still destroy the *data* (or hold a lock forever by writing a live thread's id into
//!   it); memspace does not defend against a hostile process of your own user.
//! * **Redis-backed objects** (`redis://HOST:PORT/NAME`) have Redis's guarantees, not these:
//!   the lock is a lease with fencing tokens, and durability is the server's (see [`backend`]).
//! * **Platforms.** Linux (shared futexes, `/proc`, `/dev/shm`, `fallocate`). Platform code
//!   lives in one module (`sys`) so others can follow.

#[macro_use]
mod handle;

pub mod backend;
pub mod collections;
mod error;
mod failpoint;
pub mod inspect;
mod redis;
pub mod segment;
mod shm_safe;
pub mod spawn;
pub mod sync;
mod sys;

/// The README's examples, compiled as doctests so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;

pub use crate::backend::Backend;
pub use crate::collections::SharedList;
pub use crate::error::{Error, OpenError, Result};
pub use crate::segment::{Segment, SegmentOptions};
pub use crate::spawn::{Process, Thread, init};
pub use crate::sync::{Lock, Mutex};

/// The objects memspace keeps on a Redis server: list, inspect and remove them by name (what
/// `memspace ls --redis`, `inspect` and `rm` use).
pub mod remote {
    pub use crate::redis::{Listed, Problem, describe, list_objects, remove};
}
