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
//! The crate root re-exports every type a program names (handles, their errors and guards), so
//! `use memspace::{Queue, Pool, Semaphore};` is enough; each module also exports its own, with
//! the iterators and the rarer types.
//!
//! * [`spawn`] runs work: [`Thread`], [`Process`] (start methods `fork` and `spawn`,
//!   [`StartMethod`]), [`Worker`] (either, chosen by a [`Mode`]), [`Pool`] (worker processes
//!   that take tasks in turn, a dead one replaced; [`PoolOptions`] to start one), [`init`].
//! * [`sync`] has the robust cross-process locks [`Lock`] (with guards, or a raw
//!   `acquire`/`release` held by the process), [`RLock`] (reentrant), [`Mutex`] and
//!   [`RwLock`], and [`Event`], [`Condvar`], [`Semaphore`] and [`Barrier`]; their errors are
//!   [`LockError`], [`TryLockError`], [`LeaseError`] (a Redis lock's lease),
//!   [`ReleaseError`], [`SemaphoreError`] and [`BarrierError`].
//! * [`collections`] has [`SharedList`] (mutable list), [`SharedVec`] (plain elements,
//!   read as a slice), [`SharedArray`] (a fixed number of numbers, each updated atomically),
//!   [`SharedMap`] (hash map), [`SharedPodMap`] (hash map of plain keys and values, kept in
//!   its slots: the fast path for numbers), [`Queue`] (FIFO whose items come back when
//!   their consumer dies; [`Delivery`], [`QueueError`]), [`PodQueue`] (bounded FIFO ring
//!   of plain items, put and taken without a lock), [`Value`] (one plain value, updated
//!   atomically) and [`SharedValue`] (one value of any serde type).
//! * [`segment`] is the named shared-memory segments everything lives in.
//! * [`inspect`] has read-only views of objects ([`inspect::describe`], [`inspect::verify`],
//!   `inspect::list_objects` for a Redis server), and [`inspect::gc`], which removes the
//!   segments nobody can use any more (as `memspace gc` does), for a supervisor's start.
//! * [`backend`] says where objects live: shared memory, or a Redis server
//!   (`redis://HOST:PORT/NAME`) to share them between machines ([`Backend`]).
//! * [`remove`] removes an object by name from either backend.
//!
//! # Features
//!
//! * `redis` (default): the Redis backend, `redis://HOST:PORT/NAME` names, and
//!   `inspect::list_objects`. Without it (`default-features = false`) memspace is shared
//!   memory alone, and a clean build compiles 22 crates instead of 61 (`cargo tree -p memspace
//!   -e normal` lists 32 lines instead of 115); a Redis name is then refused with
//!   [`OpenError::RedisDisabled`], which says how to turn the feature on.
//! * `redis-tls`: `rediss://` names, Redis over TLS (rustls, with its `ring` provider), with
//!   a private CA and a client certificate (see [Redis names](backend#redis-names)). Not a
//!   default: it adds a TLS stack; the `memspace` command turns it on. Without it a
//!   `rediss://` name is refused with an error that says how to turn it on.
//! * `failpoints`: named points where the crash tests freeze a process to kill it there;
//!   inert unless the `MEMSPACE_FAILPOINT` environment variable names one.
//!
//! # Layout
//!
//! Layers from the bottom up: `sys` (the platform), [`segment`] (shared memory), `redis`
//! (the Redis infrastructure, which knows no kind), `handle` (where a handle's object lives,
//! and its life cycle), the kinds in [`sync`] and [`collections`] (a kind with two backends is
//! a folder holding its public type, its shared-memory engine and its Redis engine), [`spawn`],
//! and the views [`inspect`] and [`backend`]. A layer imports only from those below it.
//! `ARCHITECTURE.md` in the repository is the map, with where a new kind or backend goes.
//!
//! # Safety model
//!
//! * **What survives a crashed peer.** A process killed at any instruction (SIGKILL included)
//!   leaves every lock recoverable ([`sync::LockError::OwnerDied`]) and every collection
//!   consistent: an append it had not published is invisible, one it had published is
//!   complete. Nothing acknowledged to a caller is lost.
//! * **Whose segments are opened.** Segments are created mode `0600`, so only processes of
//!   the same user can open them. An open accepts only a segment that belongs to this
//!   process's effective user and whose mode grants nothing beyond what the opener asked for
//!   (`0600` unless [`SegmentOptions::mode`] says more): a segment another user planted under
//!   the name (`/dev/shm` is writable by everyone) is refused with
//!   [`OpenError::UntrustedOwner`], one other users may write with
//!   [`OpenError::UntrustedMode`], and a symbolic link at the name with
//!   [`OpenError::NotAFile`]. Trust is explicit ([`SegmentOptions::trust_owner`], the CLI's
//!   `--trust-owner` and `--accept-mode`) and travels with a handle to the worker processes
//!   it is passed to, and only there: a name that brings trust from anywhere else is refused.
//!   An observer ([`inspect::observe`]) makes a handle only of a segment an open would
//!   accept. [`Segment::remove`] and `memspace rm` remove only a memspace segment (a
//!   regular file with memspace's signature, reached without following a symbolic link).
//! * **What a misbehaving peer can do** (a process of your own user, or of a user you chose to
//!   trust). A segment is treated as untrusted input: its header is validated on open, and
//!   every offset and size read from it is checked before anything is read or written through
//!   it, so garbage gives an error naming the segment, never out-of-bounds access, a panic or
//!   a runaway allocation. A peer with write access can still destroy the *data*, write items
//!   of another type (reported as `Decode` errors, which a reader can skip), or hold a lock
//!   for ever by writing a live thread's id into it (`try_lock_for` bounds the wait; `inspect`
//!   and `ls` wait at most a second). A peer that *shrinks* the file (`ftruncate`) takes away
//!   pages other processes have mapped: an access to one would kill the process with
//!   `SIGBUS`. memspace installs a `SIGBUS` handler (once, at the first mapping; faults outside
//!   segments go to the handler that was there before) that gives the lost pages zeros in this
//!   process and marks the segment; from then on every operation of this process that reads or
//!   writes an item or takes one of the segment's locks fails with [`Error::Corrupt`] saying
//!   the file was shrunk ([`Segment::check_intact`]). What it cannot undo: the data past the new
//!   end is gone for everyone, a lock-free count read during the shrink may read 0, and a
//!   zero-copy [`SharedVec`] slice shows zeros (or whatever a peer writes: its published
//!   elements are only immutable among well-behaved processes). A program that
//!   installs its own `SIGBUS` handler after memspace's replaces it.
//! * **Redis-backed objects** (`redis://HOST:PORT/NAME`) have Redis's guarantees, not these:
//!   the lock is a lease with fencing tokens, and durability is the server's (see [`backend`]).
//! * **Platforms.** Linux (shared futexes, `/proc`, `/dev/shm`, `fallocate`). Platform code
//!   lives in one module (`sys`) so others can follow.
//!
//! # Diagnostics
//!
//! The library prints nothing of its own. Its two diagnostics, a warning when a process with
//! several threads forks (`MEMSPACE_FORK_WARNING=0` silences it) and the reason a worker
//! process stops when it cannot read its task, go through the [`log`] crate with target
//! `memspace`; a program that has installed no logger gets them on standard error instead,
//! so that they are never lost.

#![cfg_attr(docsrs, feature(doc_cfg))]
// Without the Redis backend a `match` on a handle's place can have one arm left, and a
// crate-private function can keep an `Option` or `Result` that only Redis needs: the code
// keeps one shape for both builds.
#![cfg_attr(
    not(feature = "redis"),
    allow(clippy::infallible_destructuring_match, clippy::unnecessary_wraps)
)]

#[macro_use]
mod handle;

pub mod backend;
pub mod collections;
mod diag;
mod error;
mod failpoint;
pub mod inspect;
#[cfg(feature = "redis")]
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

pub use crate::backend::{Backend, remove};
pub use crate::collections::{
    ArrayGuard, Delivery, PodQueue, Queue, QueueError, SharedArray, SharedList, SharedMap,
    SharedPodMap, SharedValue, SharedVec, Value,
};
pub use crate::error::{AuthProblem, Error, OpenError, Result};
pub use crate::segment::{Segment, SegmentOptions};
pub use crate::spawn::{
    JoinError, Mode, Pool, PoolOptions, Process, SpawnError, StartMethod, TaskError, Thread,
    Worker, init,
};
pub use crate::sync::{
    Barrier, BarrierError, Condvar, Event, LeaseError, Lock, LockError, LockGuard, Mutex,
    MutexGuard, Permit, RLock, RLockGuard, ReleaseError, RwLock, RwLockReadGuard, RwLockWriteGuard,
    Semaphore, SemaphoreError, TryLockError,
};
