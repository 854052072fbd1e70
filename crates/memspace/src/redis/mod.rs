//! The Redis infrastructure the kinds' Redis engines share: a connection with retries
//! (`Conn`), the object protocol ([`Object`]: the meta hash, creation, opening, checked reads,
//! removal) and the guard every write script runs behind ([`checked_script`]). It knows no
//! kind: each kind's engine (`redis.rs` in the kind's folder) builds on it, and `inspect`
//! lists, describes and removes objects with it. An object is selected by a
//! `redis://HOST:PORT/NAME` name (a server, or any node of a Redis Cluster, which redirects to
//! the master of the object's slot), or a `redis+sentinel://HOST:PORT,.../SERVICE/NAME` name
//! (the primary that sentinels name): see `conn.rs`.
//!
//! # Keys
//!
//! Object `NAME` owns the keys `memspace:{NAME}` (a hash: `kind`, `type`, `size`, `capacity`,
//! `version`, `created_ms` and `incarnation`; what `memspace ls --redis` and `inspect` read) and
//! `memspace:{NAME}:items` (the data, in the native type that fits the kind). A lock also has
//! `memspace:{NAME}:fence`, the fencing counter, which removing the lock keeps so that tokens never
//! go back; a queue has `memspace:{NAME}:seq`. The braces are a Redis Cluster hash tag: all keys of
//! one object live in one slot, so the scripts that touch several of them are valid on a cluster
//! too, and run on the one master that serves the slot. No key lives outside an object's tag.
//!
//! Items are encoded as in shared memory (`MessagePack`, see `collections::codec`), so the CLI
//! prints both backends' items alike.
//!
//! # Removal
//!
//! Removing an object (`unlink`, `memspace rm`) deletes its keys while other handles to it may
//! still be open, and the name may be created again meanwhile. Each creation draws an
//! `incarnation`, which every handle reads when it opens the object. Every write is a script
//! that first checks, atomically with the write, that the meta hash still exists and records
//! that incarnation ([`checked_script`]): a write through an outdated handle fails with
//! [`OpenError::NotFound`](crate::OpenError::NotFound) (removed) or
//! [`OpenError::Replaced`](crate::OpenError::Replaced) (created again) instead of
//! recreating a data key that no meta hash describes, or writing into another object. Taking
//! a lock's lease, claiming, acknowledging and putting back a queue's items, and every read
//! through a handle of a collection, a value, an event or a lock's holder
//! ([`Object::read_checked`]) are such scripts too, so an outdated handle
//! neither reads a removed object as empty nor another object as its own; reads of a whole
//! collection check the same in a transaction instead ([`Object::read_checked_bulk`]), which
//! spares their items a trip through Lua. A queue receiver blocked on a deleted stream asks
//! the same check to tell a removal from damage.

mod conn;
mod object;
mod script;
mod target;

pub(crate) use self::conn::{Conn, Link};
pub(crate) use self::object::{FirstData, Init, Object, read_meta};
pub(crate) use self::script::{
    CHECKED_SET, checked_script, damage_text, deepest_cause, guard_refusal, refused, refused_with,
};
pub(crate) use self::target::at_node;
