//! Collections that live in shared memory: every thread and process that opens one sees the
//! same items.
//!
//! * [`SharedList<T>`]: append-only, growable list of serde values (variable size), readable
//!   without a lock, appended under the segment's robust lock.

mod codec;
mod list;
mod record;

pub use self::list::{Iter, SharedList};
pub(crate) use self::list::{len as list_len, verify as verify_list};
