//! The fixed layout at the start of every segment, and its validation.
//!
//! ```text
//! offset  size  what
//!      0   128  Header        magic, version, kind, state, sizes, creator (never moves)
//!    128    64  LockSlot      the segment's lock word, its holder, state and poison flag
//!    192    64  Meta          boot id, count of users the table could not hold
//!    256  2048  Users         128 slots (pid, start time) of attached processes
//!   2304  1728  kind area     the collection's own control words (len, index table, ...)
//!   4032    64  LockSlot      a second lock, for kinds whose operations split in two (a
//!                             queue's receivers lock it, its senders the segment's lock)
//!   4096  4096  TypeName      the item type's Rust name, for tools (length, then UTF-8)
//!   8192     …  data          records, index blocks, values: grows at the end
//! ```
//!
//! The first two pages are the *control pages*: they are mapped once and never remapped, so
//! the locks in them keep their addresses while threads sleep on them. Every field is an
//! atomic, so a reader never races a writer non-atomically, even a hostile one; the creator
//! fills the fields, then publishes them with a release store of `init_state = READY`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::shm_safe::ShmSafe;

/// `b"MEMSPACE"` read as a little-endian integer.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"MEMSPACE");
/// The layout this build reads and writes. Bumped on any change to a shared layout.
/// Version 2 replaced the robust pthread mutex of the lock slot by memspace's own futex lock;
/// version 3 moved the type name out of the header into a page of its own; version 4 gave a
/// list its sequence word, live-byte count and journal; version 5 gave a map its migration
/// words (an old table and how much of it moved) and its high-water mark of written bytes;
/// version 6 widened the lock word to 64 bits, the holder's start time beside its id; version 7
/// checks records with CRC-32C instead of CRC-32 (SSE4.2 computes it in an instruction);
/// version 8 counts the sleepers of an event, a condition variable, a semaphore and a
/// reader-writer lock, whose wakers make no system call when nobody sleeps (a waiter of an
/// older build, not counted, would never be woken); version 9 hands a contended lock over to
/// a waiter that waited too long (a word a lock of an older build would take for a dead
/// holder's); version 10 gave every segment a second lock slot in the last 64 bytes of the
/// kind area (which shrank from 1792 bytes to 1728), which a queue's receivers take while its
/// senders take the segment's lock, and laid the queue's words out anew in three cache lines,
/// its futex words 64 bits wide with their sleepers' counts, `acked` and `settled` in place of
/// `unacked` and `waiting` (a receiver of an older build would take the segment's lock and
/// race the senders of this one); version 11 gave a queue's receivers `sole_taker`, the process
/// that holds every item in flight, which a receiver of an older build would leave naming one
/// while it took items itself.
pub(crate) const LAYOUT_VERSION: u32 = 11;
/// The size of the control pages.
pub(crate) const CONTROL_SIZE: u64 = 8192;
/// Where the segment's lock slot lives.
pub(crate) const LOCK_OFFSET: u64 = 128;
/// Where the segment's metadata lives.
pub(crate) const META_OFFSET: u64 = 192;
/// Where the table of attached processes lives.
pub(crate) const USERS_OFFSET: u64 = 256;
/// Where the kind-specific control words live.
pub(crate) const KIND_OFFSET: u64 = 2304;
/// Where the second lock slot lives: the last 64 bytes of the first control page, after the
/// kind area.
pub(crate) const SECOND_LOCK_OFFSET: u64 = TYPE_NAME_OFFSET - 64;
/// The size of the kind area, up to the second lock slot.
pub(crate) const KIND_SIZE: u64 = SECOND_LOCK_OFFSET - KIND_OFFSET;
/// Where the item type's name lives: the second control page.
pub(crate) const TYPE_NAME_OFFSET: u64 = 4096;
/// The first byte of the data area.
pub(crate) const DATA_START: u64 = CONTROL_SIZE;
/// The largest `max_size` a segment may declare (64 TiB: half the `x86_64` user address space).
pub(crate) const MAX_RESERVATION: u64 = 1 << 46;
/// How many bytes of the header are read to validate it.
pub(crate) const HEADER_SIZE: usize = 128;

/// `init_state` values.
pub(crate) const STATE_INITIALIZING: u32 = 1;
pub(crate) const STATE_READY: u32 = 2;

/// Words of type name bytes in [`TypeName`].
const TYPE_NAME_WORDS: usize = 511;
/// The most bytes of a type name a segment keeps.
pub(crate) const TYPE_NAME_BYTES: usize = TYPE_NAME_WORDS * 8;

/// The header at offset 0. All fields are little-endian atomics (`x86_64` and `aarch64` are both
/// little-endian; a big-endian peer would fail the magic check).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) magic: AtomicU64,
    pub(crate) layout_version: AtomicU32,
    pub(crate) kind: AtomicU32,
    pub(crate) init_state: AtomicU32,
    pub(crate) control_size: AtomicU32,
    /// The largest size the segment may grow to; each process reserves this much address space.
    pub(crate) max_size: AtomicU64,
    /// The committed size: the backing file has at least this many allocated bytes.
    pub(crate) size: AtomicU64,
    /// Incremented after every growth, so a process sees at a glance that it must remap.
    pub(crate) generation: AtomicU64,
    pub(crate) creator_pid: AtomicU32,
    pub(crate) flags: AtomicU32,
    /// The creator's start time in clock ticks after boot: with the pid, it tells a live creator
    /// from a new process that reused its pid.
    pub(crate) creator_start_time: AtomicU64,
    pub(crate) created_unix_ms: AtomicU64,
    pub(crate) last_writer_pid: AtomicU32,
    pub(crate) reserved: AtomicU32,
    /// Layout 2 kept the type name here; layout 3 keeps it in [`TypeName`].
    pub(crate) reserved_words: [AtomicU64; 6],
}

// SAFETY: `#[repr(C)]` of fixed-width atomics only, so it has one layout in every process,
// every bit pattern is a valid value, all mutation is atomic, and it owns nothing and needs
// no `Drop`.
#[allow(unsafe_code)]
unsafe impl ShmSafe for Header {}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(LOCK_OFFSET as usize >= HEADER_SIZE);

/// `flags`: the segment was created without a name of the user's and is removed when its
/// creator's handles are dropped (or by `memspace gc` once the creator is dead).
pub(crate) const FLAG_ANONYMOUS: u32 = 1;

/// The Rust type name of the items, for `inspect` and for the CLI's choice of a type
/// (informational only: nothing trusts it). `len` bytes of UTF-8 in `bytes`, as little-endian
/// words.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct TypeName {
    len: AtomicU32,
    reserved: AtomicU32,
    bytes: [AtomicU64; TYPE_NAME_WORDS],
}

// SAFETY: `#[repr(C)]` of fixed-width atomics only: one layout in every process, every bit
// pattern a valid value (a length past the end is clamped when read), atomic mutation only,
// nothing owned, no `Drop`.
#[allow(unsafe_code)]
unsafe impl ShmSafe for TypeName {}

const _: () = assert!(size_of::<TypeName>() == (CONTROL_SIZE - TYPE_NAME_OFFSET) as usize);

/// `name` cut at a character boundary to at most [`TYPE_NAME_BYTES`], as a segment records it.
pub(crate) fn cut_type_name(name: &str) -> &str {
    let mut end = name.len().min(TYPE_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

impl TypeName {
    /// Records `name`, cut as [`cut_type_name`] does.
    pub(crate) fn store(&self, name: &str) {
        let end = cut_type_name(name).len();
        let mut bytes = [0u8; TYPE_NAME_BYTES];
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        for (word, chunk) in self.bytes.iter().zip(bytes.chunks_exact(8)) {
            let chunk: [u8; 8] = chunk.try_into().expect("chunks_exact(8)");
            word.store(u64::from_le_bytes(chunk), Ordering::Relaxed);
        }
        self.len.store(end as u32, Ordering::Relaxed);
    }

    /// The recorded name. A segment is untrusted input: a length past the block is clamped and
    /// bytes that are not UTF-8 are replaced.
    pub(crate) fn load(&self) -> String {
        let len = (self.len.load(Ordering::Relaxed) as usize).min(TYPE_NAME_BYTES);
        let bytes: Vec<u8> = self
            .bytes
            .iter()
            .flat_map(|word| word.load(Ordering::Relaxed).to_le_bytes())
            .take(len)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The kinds of object a segment can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A [`Lock`](crate::sync::Lock): a robust mutex and nothing else.
    Lock,
    /// A [`Mutex<T>`](crate::sync::Mutex): a robust mutex and one fixed-size value.
    Mutex,
    /// A [`SharedList<T>`](crate::collections::SharedList).
    List,
    /// A `SharedVec<T>`: fixed-size elements, contiguous.
    Vec,
    /// A `SharedMap<K, V>`.
    Map,
    /// A `Queue<T>`.
    Queue,
    /// A `Value<T>`.
    Value,
    /// A `Condvar`.
    Condvar,
    /// An `Event`.
    Event,
    /// A `Semaphore` (bounded or not).
    Semaphore,
    /// A `Barrier`.
    Barrier,
    /// An `RwLock<T>`.
    RwLock,
    /// An [`RLock`](crate::sync::RLock): a robust mutex that its holder thread may take again,
    /// and its depth.
    RLock,
    /// A `SharedArray<T>`: a fixed number of numbers, each kept in an atomic.
    Array,
    /// A `SharedValue<T>`: one value of any serde type.
    SharedValue,
    /// A `SharedPodMap<K, V>`: a hash map of plain fixed-size keys and values, kept in its
    /// slots.
    PodMap,
    /// A `PodQueue<T>`: a bounded FIFO ring of plain fixed-size items, put and taken without
    /// the segment's lock.
    PodQueue,
}

impl Kind {
    pub(crate) fn to_raw(self) -> u32 {
        match self {
            Kind::Lock => 1,
            Kind::Mutex => 2,
            Kind::List => 3,
            Kind::Vec => 4,
            Kind::Map => 5,
            Kind::Queue => 6,
            Kind::Value => 7,
            Kind::Condvar => 8,
            Kind::Event => 9,
            Kind::Semaphore => 10,
            Kind::Barrier => 11,
            Kind::RwLock => 12,
            Kind::RLock => 13,
            Kind::Array => 14,
            Kind::SharedValue => 15,
            Kind::PodMap => 16,
            Kind::PodQueue => 17,
        }
    }

    pub(crate) fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Kind::Lock,
            2 => Kind::Mutex,
            3 => Kind::List,
            4 => Kind::Vec,
            5 => Kind::Map,
            6 => Kind::Queue,
            7 => Kind::Value,
            8 => Kind::Condvar,
            9 => Kind::Event,
            10 => Kind::Semaphore,
            11 => Kind::Barrier,
            12 => Kind::RwLock,
            13 => Kind::RLock,
            14 => Kind::Array,
            15 => Kind::SharedValue,
            16 => Kind::PodMap,
            17 => Kind::PodQueue,
            _ => return None,
        })
    }

    /// The kind named `text` (as [`Kind::as_str`] writes it; a Redis object records it so).
    #[cfg(feature = "redis")]
    pub(crate) fn from_name(text: &str) -> Option<Self> {
        (1..=16)
            .filter_map(Kind::from_raw)
            .find(|kind| kind.as_str() == text)
    }

    /// The kind's name as the CLI prints it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lock => "lock",
            Kind::Mutex => "mutex",
            Kind::List => "list",
            Kind::Vec => "vec",
            Kind::Map => "map",
            Kind::Queue => "queue",
            Kind::Value => "value",
            Kind::Condvar => "condvar",
            Kind::Event => "event",
            Kind::Semaphore => "semaphore",
            Kind::Barrier => "barrier",
            Kind::RwLock => "rwlock",
            Kind::RLock => "rlock",
            Kind::Array => "array",
            Kind::SharedValue => "shared_value",
            Kind::PodMap => "pod_map",
            Kind::PodQueue => "pod_queue",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The header fields, copied out of a segment and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderFields {
    pub(crate) kind: Kind,
    pub(crate) max_size: u64,
    pub(crate) size: u64,
    pub(crate) generation: u64,
    pub(crate) creator_pid: u32,
    pub(crate) creator_start_time: u64,
    pub(crate) created_unix_ms: u64,
    pub(crate) flags: u32,
    pub(crate) last_writer_pid: u32,
}

/// What is wrong with a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    /// Shorter than a header, or all zero: the creator has not written it yet (or died).
    NotInitialized,
    Foreign,
    Version(u32),
    UnknownKind(u32),
    Truncated {
        file_size: u64,
        expected: u64,
    },
    Corrupt(String),
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Validates the first bytes of a segment (at most [`HEADER_SIZE`] are looked at) against the
/// size of its backing file. Pure: no memory is mapped and no offset is followed.
pub(crate) fn parse(
    bytes: &[u8],
    file_size: u64,
    page_size: u64,
) -> Result<HeaderFields, HeaderProblem> {
    if bytes.len() < HEADER_SIZE {
        // A creator sizes the file before it writes the magic: a short file that has the magic
        // was cut short after its creation.
        if bytes.len() >= 8 && u64_at(bytes, 0) == MAGIC {
            return Err(HeaderProblem::Truncated {
                file_size,
                expected: CONTROL_SIZE,
            });
        }
        return Err(if bytes.iter().any(|&b| b != 0) {
            HeaderProblem::Foreign
        } else {
            HeaderProblem::NotInitialized
        });
    }
    let magic = u64_at(bytes, 0);
    let state = u32_at(bytes, 16);
    if magic != MAGIC {
        // A creator publishes the magic together with the rest; a zero page is a segment whose
        // creator has not got that far.
        return Err(if magic == 0 && state == 0 {
            HeaderProblem::NotInitialized
        } else {
            HeaderProblem::Foreign
        });
    }
    if state != STATE_READY {
        return Err(if state == STATE_INITIALIZING {
            HeaderProblem::NotInitialized
        } else {
            HeaderProblem::Corrupt(format!("unknown initialisation state {state}"))
        });
    }
    let version = u32_at(bytes, 8);
    if version != LAYOUT_VERSION {
        return Err(HeaderProblem::Version(version));
    }
    let raw_kind = u32_at(bytes, 12);
    let kind = Kind::from_raw(raw_kind).ok_or(HeaderProblem::UnknownKind(raw_kind))?;
    let control_size = u64::from(u32_at(bytes, 20));
    if control_size != CONTROL_SIZE {
        return Err(HeaderProblem::Corrupt(format!(
            "control pages size {control_size}, expected {CONTROL_SIZE}"
        )));
    }
    let max_size = u64_at(bytes, 24);
    let size = u64_at(bytes, 32);
    if !(CONTROL_SIZE..=MAX_RESERVATION).contains(&max_size) || !max_size.is_multiple_of(page_size)
    {
        return Err(HeaderProblem::Corrupt(format!(
            "maximum size {max_size} is not a page multiple between {CONTROL_SIZE} and {MAX_RESERVATION}"
        )));
    }
    if !(CONTROL_SIZE..=max_size).contains(&size) || !size.is_multiple_of(page_size) {
        return Err(HeaderProblem::Corrupt(format!(
            "size {size} is not a page multiple between {CONTROL_SIZE} and the maximum {max_size}"
        )));
    }
    if file_size < size {
        return Err(HeaderProblem::Truncated {
            file_size,
            expected: size,
        });
    }
    Ok(HeaderFields {
        kind,
        max_size,
        size,
        generation: u64_at(bytes, 40),
        creator_pid: u32_at(bytes, 48),
        flags: u32_at(bytes, 52),
        creator_start_time: u64_at(bytes, 56),
        created_unix_ms: u64_at(bytes, 64),
        last_writer_pid: u32_at(bytes, 72),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        b[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&Kind::List.to_raw().to_le_bytes());
        b[16..20].copy_from_slice(&STATE_READY.to_le_bytes());
        b[20..24].copy_from_slice(&(CONTROL_SIZE as u32).to_le_bytes());
        b[24..32].copy_from_slice(&(1u64 << 30).to_le_bytes());
        b[32..40].copy_from_slice(&65536u64.to_le_bytes());
        b
    }

    #[test]
    fn a_valid_header_parses() {
        let fields = parse(&valid(), 65536, 4096).unwrap();
        assert_eq!(fields.kind, Kind::List);
        assert_eq!(fields.size, 65536);
    }

    #[test]
    fn zeroes_mean_not_initialised_and_garbage_means_foreign() {
        assert_eq!(
            parse(&[0; HEADER_SIZE], 4096, 4096),
            Err(HeaderProblem::NotInitialized)
        );
        assert_eq!(
            parse(&[0; 10], 10, 4096),
            Err(HeaderProblem::NotInitialized)
        );
        assert_eq!(
            parse(&[7; HEADER_SIZE], 4096, 4096),
            Err(HeaderProblem::Foreign)
        );
        assert_eq!(parse(b"hello", 5, 4096), Err(HeaderProblem::Foreign));
    }

    #[test]
    fn a_short_file_is_truncated() {
        assert_eq!(
            parse(&valid(), 8192, 4096),
            Err(HeaderProblem::Truncated {
                file_size: 8192,
                expected: 65536
            })
        );
        assert_eq!(
            parse(&valid()[..64], 64, 4096),
            Err(HeaderProblem::Truncated {
                file_size: 64,
                expected: CONTROL_SIZE
            })
        );
    }

    #[test]
    fn sizes_out_of_range_are_corrupt() {
        let mut b = valid();
        b[32..40].copy_from_slice(&(1u64 << 31).to_le_bytes()); // size above max
        assert!(matches!(
            parse(&b, u64::MAX, 4096),
            Err(HeaderProblem::Corrupt(_))
        ));
        let mut b = valid();
        b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse(&b, u64::MAX, 4096),
            Err(HeaderProblem::Corrupt(_))
        ));
    }

    #[test]
    fn unknown_version_and_kind_are_reported() {
        let mut b = valid();
        b[8..12].copy_from_slice(&99u32.to_le_bytes());
        assert_eq!(parse(&b, 65536, 4096), Err(HeaderProblem::Version(99)));
        let mut b = valid();
        b[12..16].copy_from_slice(&77u32.to_le_bytes());
        assert_eq!(parse(&b, 65536, 4096), Err(HeaderProblem::UnknownKind(77)));
    }
}
