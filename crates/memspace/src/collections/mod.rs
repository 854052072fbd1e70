//! Collections that live in shared memory: every thread and process that opens one sees the
//! same items.
//!
//! * [`SharedList<T>`]: growable, mutable list of serde values (variable size), readable
//!   without a lock, changed under the segment's robust lock, each change atomic across a
//!   crash.
//! * [`SharedVec<T>`]: growable array of plain fixed-size elements, read as a slice without
//!   copying: the fast path for numbers.
//! * [`SharedMap<K, V>`]: hash map of serde keys and values, deterministic hashing, growth
//!   while attached.
//! * [`SharedPodMap<K, V>`]: hash map of plain fixed-size keys and values kept in its slots,
//!   looked up without a lock: the fast path for maps of numbers.
//! * [`Queue<T>`]: multi-producer, multi-consumer FIFO, bounded or not, whose items come back
//!   when the consumer that took them dies before acknowledging.
//! * [`PodQueue<T>`]: bounded multi-producer, multi-consumer FIFO ring of plain fixed-size
//!   items, put and taken without a lock: the fast path for queues of numbers.
//! * [`Value<T>`]: one plain value with atomic reads, writes and updates.

mod array;
mod changes;
pub(crate) mod codec;
mod list;
mod map;
mod pod_map;
mod pod_queue;
mod queue;
mod record;
mod shared_value;
mod table_word;
mod value;
mod vec;
mod wait;
mod words;

pub use self::array::{ArrayGuard, Element, Integer, SharedArray};
pub(crate) use self::array::{len as array_len, verify as verify_array};
pub use self::list::{Iter, SharedList};
pub(crate) use self::list::{len as list_len, verify as verify_list};
pub use self::map::{MapIter, MapKeys, MapValues, SharedMap};
pub(crate) use self::map::{len as map_len, verify as verify_map};
pub use self::pod_map::SharedPodMap;
pub(crate) use self::pod_map::{len as pod_map_len, verify as verify_pod_map};
pub use self::pod_queue::PodQueue;
pub(crate) use self::pod_queue::{len as pod_queue_len, verify as verify_pod_queue};
#[cfg(feature = "redis")]
pub(crate) use self::queue::RedisQueue;
pub use self::queue::{Deliveries, Delivery, Queue, QueueError, Undecodable};
pub(crate) use self::queue::{len as queue_len, verify as verify_queue};
pub use self::shared_value::SharedValue;
pub(crate) use self::shared_value::verify as verify_shared_value;
pub use self::value::Value;
pub use self::vec::SharedVec;
pub(crate) use self::vec::{len as vec_len, verify as verify_vec};
