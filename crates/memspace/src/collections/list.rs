//! [`SharedList<T>`]: an append-only list of serde values in a growable segment.
//!
//! # Layout
//!
//! ```text
//! kind area:  len      items published (readers load it with Acquire)
//!             tail     first free byte of the data area (meaningful under the lock)
//!             blocks   40 offsets of index blocks; block b holds 512 << b entries
//! data area:  index blocks (u64 record offsets) and records, bump-allocated from `tail`
//! record:     [u32 payload length][u32 CRC-32 of payload][payload][padding to 8] (record.rs)
//! ```
//!
//! # Append: reserve, write, publish
//!
//! Under the segment's lock a writer places the record at `tail`, growing the segment first if
//! needed, writes the record and its index entry, then publishes it by storing `len + 1` with
//! release ordering, and only then advances `tail`. A writer killed at any point before the
//! `len` store leaves nothing visible: the next writer overwrites the unpublished bytes. A
//! writer killed after it leaves a published item and a stale `tail`; the next locker is told
//! the owner died and recomputes `tail` from the published items and index blocks before it
//! writes (see `Raw::recover`). Readers take no lock: they load `len` and read only
//! published records, which are never written again.
//!
//! # Safety
//!
//! The one `unsafe` operation here is `record::write`. Its contract (no concurrent access to
//! the range from this process) holds because every write happens under the segment's lock, at
//! offsets at or past `tail`, which no published index entry points to: readers only follow
//! entries below `len`, and entries below `len` point below `tail`.

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{codec, record};
use crate::error::{Error, Result};
use crate::inspect::Report;
use crate::redis::{Object, RedisList};
use crate::segment::{DATA_START, Kind, Segment, SegmentName, SegmentOptions};
use crate::shm_safe::ShmSafe;
use crate::sync::{RawGuard, lock_and_repair};

const INDEX_BLOCKS: usize = 40;
const FIRST_BLOCK_ENTRIES: u64 = 512;

#[repr(C)]
struct ListArea {
    len: AtomicU64,
    tail: AtomicU64,
    blocks: [AtomicU64; INDEX_BLOCKS],
}

// SAFETY: `#[repr(C)]`, atomics only.
unsafe impl ShmSafe for ListArea {}

/// Which index block holds entry `index`, where in it, and how many entries the block has.
fn locate(index: u64) -> Option<(usize, u64, u64)> {
    let q = index / FIRST_BLOCK_ENTRIES + 1;
    let block = 63 - q.leading_zeros() as usize;
    if block >= INDEX_BLOCKS {
        return None;
    }
    let first = FIRST_BLOCK_ENTRIES * ((1u64 << block) - 1);
    Some((block, index - first, FIRST_BLOCK_ENTRIES << block))
}

/// A growable list of `T` in shared memory, appended to and read by any number of threads and
/// processes at once.
///
/// Items are stored in `MessagePack` (a self-describing encoding), so `memspace list get NAME`
/// prints any list as JSON without knowing `T`. Every item carries a CRC-32; a damaged item is
/// an error, never a wrong value.
///
/// A name `redis://HOST:PORT/NAME` puts the list on a Redis server instead (a Redis list of
/// the same encoded items; see [`crate::backend`]); every method works the same, except
/// [`segment`](SharedList::segment).
///
/// On Redis every method can also fail with
/// [`Error::RedisUnreachable`](crate::Error::RedisUnreachable), or with
/// [`OpenError::NotFound`](crate::OpenError::NotFound) or
/// [`OpenError::Replaced`](crate::OpenError::Replaced) once the list was removed (or removed and
/// created again) through another handle (see [`crate::backend`]).
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::collections::SharedList;
///
/// let nums = SharedList::<i64>::new()?;
/// nums.push(&0)?;
/// nums.extend([1, 2])?;
/// assert_eq!(nums.to_vec()?, [0, 1, 2]);
/// assert_eq!(nums.get(1)?, Some(1));
/// # Ok(())
/// # }
/// ```
pub struct SharedList<T> {
    repr: Repr,
    _items: PhantomData<fn(T) -> T>,
}

/// Where the list lives.
#[derive(Clone)]
enum Repr {
    Shm(Arc<Segment>),
    Redis(RedisList),
}

impl<T> Clone for SharedList<T> {
    fn clone(&self) -> Self {
        SharedList {
            repr: self.repr.clone(),
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for SharedList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Debug` never waits: a Redis list shows its name only, not a count from the server.
        let mut out = f.debug_struct("SharedList");
        out.field("name", self.name());
        if let Repr::Shm(segment) = &self.repr {
            out.field("len", &Raw { segment }.area().len.load(Ordering::Acquire));
        }
        out.finish_non_exhaustive()
    }
}

impl<T> SharedList<T> {
    fn shm(segment: Arc<Segment>) -> Self {
        SharedList {
            repr: Repr::Shm(segment),
            _items: PhantomData,
        }
    }

    /// The number of published items (on Redis, asked of the server, retrying after a
    /// reconnect).
    ///
    /// # Errors
    ///
    /// Never for shared memory. On Redis, [`Error::RedisUnreachable`] if the server cannot be
    /// reached, [`OpenError::NotFound`](crate::OpenError::NotFound) or
    /// [`OpenError::Replaced`](crate::OpenError::Replaced) if the list was removed (or created
    /// again) since this handle opened it.
    pub fn len(&self) -> Result<u64> {
        match &self.repr {
            Repr::Shm(segment) => Ok(Raw { segment }.area().len.load(Ordering::Acquire)),
            Repr::Redis(list) => list.len(),
        }
    }

    /// Whether the list has no items.
    ///
    /// # Errors
    ///
    /// As [`SharedList::len`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Bytes of the segment in use: the control page, the index and the records (the segment
    /// itself grows by doubling, so its size can be up to twice this).
    /// 0 for a Redis list.
    #[must_use]
    pub fn used_bytes(&self) -> u64 {
        match &self.repr {
            Repr::Shm(segment) => Raw { segment }.area().tail.load(Ordering::Relaxed),
            Repr::Redis(_) => 0,
        }
    }

    /// The list's name (`redis://HOST:PORT/NAME` for a Redis list).
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        match &self.repr {
            Repr::Shm(segment) => segment.name(),
            Repr::Redis(list) => list.object().name(),
        }
    }

    /// The item type recorded by the list's creator: [`std::any::type_name`] of `T`,
    /// the type the creator used, which need not be this handle's.
    ///
    /// In shared memory the name is cut at [`TYPE_NAME_MAX`](crate::segment::TYPE_NAME_MAX)
    /// bytes (see [`Segment::type_name`]); on Redis it is whole. Tools use it to refuse a write
    /// that a program of the creator's type could not read (`memspace list ...` does).
    #[must_use]
    pub fn recorded_type_name(&self) -> &str {
        match &self.repr {
            Repr::Shm(segment) => segment.type_name(),
            Repr::Redis(list) => list.object().type_name(),
        }
    }

    /// The list's segment (identity, size, address in this process), or `None` for a
    /// Redis list, which has none.
    #[must_use]
    pub fn segment(&self) -> Option<&Segment> {
        match &self.repr {
            Repr::Shm(segment) => Some(segment),
            Repr::Redis(_) => None,
        }
    }

    /// Removes the list's name from the system (see [`Segment::remove`]); for a Redis list,
    /// deletes its keys.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound) if it was removed already.
    pub fn unlink(&self) -> Result<()> {
        match &self.repr {
            Repr::Shm(segment) => Ok(segment.unlink()?),
            Repr::Redis(list) => list.object().remove(),
        }
    }
}

impl<T: Serialize + DeserializeOwned> SharedList<T> {
    /// Creates an anonymous list, removed when this process drops its last handle to it.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment (no space, permissions).
    pub fn new() -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), &SegmentOptions::new(), true)
    }

    /// Creates the list `name`, which persists until removed (`memspace rm NAME`).
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists),
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName), or what the system refuses.
    pub fn create(name: &str) -> Result<Self> {
        Self::create_with(name, &SegmentOptions::new())
    }

    /// Creates the list `name` with `options` (mode, initial and maximum size; they do not
    /// apply to a Redis list).
    ///
    /// # Errors
    ///
    /// As [`SharedList::create`].
    pub fn create_with(name: &str, options: &SegmentOptions) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, options, false)
    }

    /// Opens the existing list `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind) if it holds something else, or a
    /// header problem.
    pub fn open(name: &str) -> Result<Self> {
        let name = SegmentName::new(name)?;
        if name.is_redis() {
            return Ok(SharedList {
                repr: Repr::Redis(RedisList::new(Object::open(&name, Kind::List)?)),
                _items: PhantomData,
            });
        }
        let segment = Segment::open(&name, Some(Kind::List))?;
        Ok(Self::shm(Arc::new(segment)))
    }

    /// Creates the list `name` in `backend` (see [`Backend::locate`](crate::Backend::locate)).
    ///
    /// # Errors
    ///
    /// As [`SharedList::create`].
    pub fn create_in(backend: &crate::Backend, name: &str) -> Result<Self> {
        Self::create(&backend.locate(name))
    }

    /// Opens the list `name` in `backend`.
    ///
    /// # Errors
    ///
    /// As [`SharedList::open`].
    pub fn open_in(backend: &crate::Backend, name: &str) -> Result<Self> {
        Self::open(&backend.locate(name))
    }

    /// A list over an already open segment (for example one opened with
    /// [`inspect::observe`](crate::inspect::observe), which does not join its users).
    ///
    /// # Errors
    ///
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind) if the segment is not a list.
    pub fn from_segment(segment: Segment) -> Result<Self> {
        let segment = segment.expecting(Kind::List)?;
        Ok(Self::shm(Arc::new(segment)))
    }

    fn create_segment(
        name: &SegmentName,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        if name.is_redis() {
            let init = crate::redis::Init {
                type_name: std::any::type_name::<T>(),
                ..Default::default()
            };
            return Ok(SharedList {
                repr: Repr::Redis(RedisList::new(Object::create(name, Kind::List, &init)?)),
                _items: PhantomData,
            });
        }
        let segment = Segment::create(
            name,
            Kind::List,
            std::any::type_name::<T>(),
            options,
            anonymous,
            |segment| {
                let area = segment.kind_area::<ListArea>();
                area.len.store(0, Ordering::Relaxed);
                area.tail.store(DATA_START, Ordering::Relaxed);
                for block in &area.blocks {
                    block.store(0, Ordering::Relaxed);
                }
                Ok(())
            },
        )?;
        Ok(Self::shm(Arc::new(segment)))
    }

    /// Appends `value`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if `value` cannot be encoded; [`Error::Full`] or [`Error::NoSpace`] if
    /// the segment cannot grow (the list is unchanged); [`Error::Corrupt`] if the segment was
    /// damaged. On Redis, [`OpenError::NotFound`](crate::OpenError::NotFound) if the list was
    /// removed (nothing is written), or [`Error::RedisUnreachable`].
    pub fn push(&self, value: &T) -> Result<()> {
        let payload = self.encode(value)?;
        match &self.repr {
            Repr::Shm(segment) => {
                let raw = Raw { segment };
                let held = raw.lock()?;
                raw.append(&held, &payload)
            }
            Repr::Redis(list) => list.push(&[payload]),
        }
    }

    /// Appends every item of `values` under one acquisition of the lock; other writers'
    /// items do not interleave with them.
    ///
    /// # Errors
    ///
    /// As [`SharedList::push`]. Items are encoded before any is appended, so an encoding error
    /// appends nothing; a growth error leaves the items before it appended.
    pub fn extend<I>(&self, values: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<T>,
    {
        let payloads = values
            .into_iter()
            .map(|value| self.encode(std::borrow::Borrow::borrow(&value)))
            .collect::<Result<Vec<_>>>()?;
        let segment = match &self.repr {
            Repr::Shm(segment) => segment,
            Repr::Redis(list) => return list.push(&payloads),
        };
        let raw = Raw { segment };
        let held = raw.lock()?;
        for payload in &payloads {
            raw.append(&held, payload)?;
        }
        Ok(())
    }

    /// The item at `index`, or `None` past the end.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the item is not a `T`; [`Error::Corrupt`] if it fails its checksum
    /// or points outside the segment.
    pub fn get(&self, index: u64) -> Result<Option<T>> {
        let payload = match &self.repr {
            Repr::Shm(segment) => {
                if index >= self.len()? {
                    return Ok(None);
                }
                Raw { segment }.read_payload(index)?
            }
            Repr::Redis(list) => match list.get(index)? {
                Some(payload) => payload,
                None => return Ok(None),
            },
        };
        codec::decode(&payload)
            .map(Some)
            .map_err(|source| Error::Decode {
                name: self.name().clone(),
                index,
                expected: std::any::type_name::<T>(),
                source,
            })
    }

    /// The published items, in order, as they are when each is reached (items pushed during
    /// the iteration are included).
    ///
    /// Each item is read on its own: one that cannot be read ([`Error::Decode`] for an item of
    /// another type, [`Error::Corrupt`] for a damaged one) is an `Err` in its place, and the
    /// iteration goes on with the next, so a reader can skip what it cannot decode (where
    /// [`to_vec`](SharedList::to_vec) stops at the first error).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> memspace::Result<()> {
    /// use memspace::collections::SharedList;
    ///
    /// let name = format!("doc-list-iter-{}", std::process::id());
    /// let numbers = SharedList::<i64>::create(&name)?;
    /// numbers.push(&1)?;
    /// SharedList::<String>::open(&name)?.push(&"two".to_owned())?; // another type
    /// numbers.push(&3)?;
    /// let readable: Vec<i64> = numbers.iter().filter_map(Result::ok).collect();
    /// assert_eq!(readable, [1, 3]);
    /// numbers.unlink()?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            list: self,
            next: 0,
        }
    }

    /// A copy of the items published when the call starts.
    ///
    /// # Errors
    ///
    /// As [`SharedList::get`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let segment = match &self.repr {
            Repr::Shm(segment) => segment,
            Repr::Redis(list) => {
                return (0u64..)
                    .zip(list.all()?)
                    .map(|(index, payload)| {
                        codec::decode(&payload).map_err(|source| {
                            list.object()
                                .decode_error(index, std::any::type_name::<T>(), source)
                        })
                    })
                    .collect();
            }
        };
        let len = self.len()?;
        (0..len)
            .map(|index| {
                self.get(index)?
                    .ok_or_else(|| segment.corrupt(format!("item {index} vanished")))
            })
            .collect()
    }

    fn encode(&self, value: &T) -> Result<Vec<u8>> {
        let payload = codec::encode(value).map_err(|source| Error::Encode {
            name: self.name().clone(),
            type_name: std::any::type_name::<T>(),
            source,
        })?;
        if payload.len() > record::MAX_PAYLOAD {
            return Err(Error::Full {
                name: self.name().clone(),
                needed: payload.len() as u64,
                max_size: record::MAX_PAYLOAD as u64,
            });
        }
        Ok(payload)
    }
}

/// The list's machinery, independent of the item type (shared by every `SharedList<T>` and
/// by `inspect::verify`).
#[derive(Clone, Copy)]
struct Raw<'a> {
    segment: &'a Segment,
}

impl<'a> Raw<'a> {
    fn area(self) -> &'a ListArea {
        self.segment.kind_area::<ListArea>()
    }

    /// Takes the segment's lock, repairing the list if the previous holder died.
    fn lock(self) -> Result<RawGuard<'a>> {
        lock_and_repair(self.segment, |held| self.recover(held))
    }

    /// Recomputes `tail` after a writer died holding the lock: past the last published record
    /// and past every index block, whichever ends later. Unpublished bytes beyond are garbage
    /// and will be overwritten.
    fn recover(self, _held: &RawGuard<'_>) -> Result<()> {
        let area = self.area();
        let mut tail = DATA_START;
        for (block, offset) in area.blocks.iter().enumerate() {
            let offset = offset.load(Ordering::Relaxed);
            if offset != 0 {
                let end = offset
                    .checked_add(8 * (FIRST_BLOCK_ENTRIES << block))
                    .ok_or_else(|| {
                        self.segment
                            .corrupt(format!("index block {block} overflows"))
                    })?;
                tail = tail.max(end);
            }
        }
        let len = area.len.load(Ordering::Relaxed);
        if len > 0 {
            tail = tail.max(record::end(self.segment, self.record_of(len - 1)?)?);
        }
        if tail > self.segment.size() {
            return Err(self.segment.corrupt(format!(
                "recovered end of data {tail} lies past the committed size {}",
                self.segment.size()
            )));
        }
        area.tail.store(tail, Ordering::Release);
        Ok(())
    }

    /// The offset of index block `block`, checked to lie whole in the data area (see
    /// [`Segment::data_range`]), or `None` if it was never reserved. Readers and writers both
    /// go through here: an offset read from the segment is followed only once it is checked.
    fn index_block(self, block: usize) -> Result<Option<u64>> {
        let offset = self.area().blocks[block].load(Ordering::Acquire);
        if offset == 0 {
            return Ok(None);
        }
        let entries = FIRST_BLOCK_ENTRIES << block;
        self.segment.data_range(
            || format!("the list's index block {block}"),
            offset,
            8 * entries,
            8,
        )?;
        Ok(Some(offset))
    }

    /// The end of data, checked against the list's invariants before anything is written
    /// there: it lies in the data area, inside the committed size, past the index block that
    /// item `len` (the next one) goes into (blocks are reserved in order, each at the end of
    /// data, so it ends after every earlier one in a valid list), and past the last published
    /// record. A damaged `len`, `tail` or block offset is [`Error::Corrupt`], so a writer never
    /// writes outside the data area, over the block or the record it appends after, or grows
    /// the segment for a block or a position that a valid list would not need. (An earlier
    /// block's offset is checked when an item in it is read.) The caller holds the lock.
    fn end_of_data(
        self,
        _held: &RawGuard<'_>,
        len: u64,
        (block, position): (usize, u64),
    ) -> Result<(u64, Option<u64>)> {
        let segment = self.segment;
        let tail = self.area().tail.load(Ordering::Relaxed);
        segment.data_range(|| "the list's end of data".to_owned(), tail, 0, 8)?;
        // The block item `len` goes into, or, when that one is still to be reserved (it is the
        // block's first item), the one before it, which must then be there.
        let current = self.index_block(block)?;
        let reached = match current {
            Some(offset) => Some((block, offset)),
            None if position == 0 && block == 0 => None,
            None if position == 0 => match self.index_block(block - 1)? {
                Some(offset) => Some((block - 1, offset)),
                None => return Err(self.never_reserved(len, block - 1)),
            },
            None => return Err(self.never_reserved(len, block)),
        };
        if let Some((reached, offset)) = reached {
            let end = offset + 8 * (FIRST_BLOCK_ENTRIES << reached);
            if end > tail {
                return Err(segment.corrupt(format!(
                    "the list's index block {reached} ends at {end}, past its end of data {tail}"
                )));
            }
        }
        if let Some(last) = len.checked_sub(1) {
            let end = record::end(segment, self.record_of(last)?).map_err(|e| at_item(e, last))?;
            if end > tail {
                return Err(segment.corrupt(format!(
                    "the list's end of data {tail} lies before the end of item {last} ({end})"
                )));
            }
        }
        Ok((tail, current))
    }

    fn never_reserved(self, len: u64, block: usize) -> Error {
        self.segment.corrupt(format!(
            "the list claims {len} items, but its index block {block} was never reserved"
        ))
    }

    /// Appends one encoded item; the caller holds the lock.
    fn append(self, held: &RawGuard<'_>, payload: &[u8]) -> Result<()> {
        let area = self.area();
        let segment = self.segment;
        let len = area.len.load(Ordering::Relaxed);
        let Some((block, position, capacity)) = locate(len) else {
            // Every index block full: the most items a list holds. More is damage.
            let most = FIRST_BLOCK_ENTRIES * ((1 << INDEX_BLOCKS) - 1);
            return Err(if len == most {
                Error::Full {
                    name: self.segment.name().clone(),
                    needed: len + 1,
                    max_size: most,
                }
            } else {
                segment.corrupt(format!(
                    "the list claims {len} items, more than its index can hold ({most})"
                ))
            });
        };
        let (mut tail, current) = self.end_of_data(held, len, (block, position))?;
        let block_offset = if let Some(offset) = current {
            offset
        } else {
            // Reserve the next index block; `tail` covers it before anything else happens, so
            // a later failure in this push cannot hand its bytes to a record. (`tail` is
            // checked: inside the committed size, at most 2^46, so nothing overflows.)
            let offset = tail;
            let end = offset + 8 * capacity;
            segment.grow_to(end, held)?;
            area.blocks[block].store(offset, Ordering::Release);
            area.tail.store(end, Ordering::Release);
            tail = end;
            crate::failpoint::hit("list.block_reserved");
            offset
        };
        // SAFETY: we hold the lock (`held`) and `tail` is past every published record and
        // index block (checked by `end_of_data`; see the module's `# Safety`).
        let (record, end) = unsafe { record::write(segment, held, tail, payload) }?;
        // Inside the block, which `index_block` checked lies in the data area (or which was
        // just reserved there).
        let entry_at = block_offset + 8 * position;
        let entry = segment
            .mapping()
            .get::<AtomicU64>(entry_at)
            .ok_or_else(|| {
                segment.corrupt(format!(
                    "index block {block} at {block_offset} is not mapped"
                ))
            })?;
        entry.store(record, Ordering::Relaxed);
        crate::failpoint::hit("list.written");
        // Publish: the record, its entry and any growth happen-before a reader's Acquire load.
        area.len.store(len + 1, Ordering::Release);
        crate::failpoint::hit("list.published");
        area.tail.store(end, Ordering::Release);
        segment.note_writer();
        Ok(())
    }

    /// The record offset of published item `index`, bounds-checked.
    fn record_of(self, index: u64) -> Result<u64> {
        let segment = self.segment;
        let (block, position, _) =
            locate(index).ok_or_else(|| segment.corrupt(format!("index {index} out of range")))?;
        let block_offset = self.index_block(block)?.ok_or_else(|| {
            segment.corrupt(format!(
                "item {index}: index block {block} was never \
                         reserved"
            ))
        })?;
        // Inside the checked block: no overflow, and mapped.
        let entry_at = block_offset + 8 * position;
        Ok(segment
            .mapping()
            .get::<AtomicU64>(entry_at)
            .ok_or_else(|| segment.corrupt(format!("item {index}: index entry not mapped")))?
            .load(Ordering::Relaxed))
    }

    /// Copies out and checks the payload of published item `index`.
    fn read_payload(self, index: u64) -> Result<Vec<u8>> {
        record::read(self.segment, self.record_of(index)?).map_err(|err| at_item(err, index))
    }
}

/// Prefixes a damage report with the item it concerns.
fn at_item(err: Error, index: u64) -> Error {
    match err {
        Error::Corrupt { name, what } => Error::Corrupt {
            name,
            what: format!("item {index}: {what}"),
        },
        other => other,
    }
}

/// The number of published items of the list in `segment`.
pub(crate) fn len(segment: &Segment) -> u64 {
    Raw { segment }.area().len.load(Ordering::Acquire)
}

/// Checks a list segment without taking its lock (appends may go on meanwhile): the index
/// blocks, every published record (bounds, order, checksum, well-formed encoding) and the
/// recorded end of data. Used by [`inspect::verify`](crate::inspect::verify).
pub(crate) fn verify(segment: &Segment, report: &mut Report) {
    let raw = Raw { segment };
    let area = raw.area();
    let len = area.len.load(Ordering::Acquire);
    let mut block_ends = 0;
    let mut previous_block_end = DATA_START;
    for (block, offset) in area.blocks.iter().enumerate() {
        let offset = offset.load(Ordering::Acquire);
        if offset == 0 {
            continue;
        }
        let end = offset.saturating_add(8 * (FIRST_BLOCK_ENTRIES << block));
        // Appends go on meanwhile: compare with the size read after the offset (a block is
        // grown for before its offset is published).
        let size = segment.size();
        if offset < previous_block_end || !offset.is_multiple_of(8) || end > size {
            report.problem(format!(
                "index block {block} at {offset}..{end} overlaps an earlier block or lies outside \
                 the segment ({size} bytes)"
            ));
        }
        previous_block_end = end;
        block_ends = block_ends.max(end);
    }
    let mut previous_end = DATA_START;
    for index in 0..len {
        if report.is_full() {
            break;
        }
        let (record, record_end) = match raw
            .record_of(index)
            .and_then(|record| Ok((record, record::end(segment, record)?)))
        {
            Ok(found) => found,
            Err(err) => {
                report.problem(format!("item {index}: {}", describe(&err)));
                continue;
            }
        };
        if record < previous_end {
            report.problem(format!(
                "item {index}: record at {record} overlaps the previous item (ending at {previous_end})"
            ));
        }
        previous_end = record_end;
        match raw.read_payload(index) {
            Ok(payload) => {
                if rmp_serde::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
                    report.problem(format!(
                        "item {index}: its bytes are not a well-formed value"
                    ));
                }
            }
            Err(err) => report.problem(describe(&err)),
        }
        report.items_checked += 1;
    }
    let tail = area.tail.load(Ordering::Acquire);
    // Read after `tail`: every growth a writer made before advancing `tail` is seen.
    let size = segment.size();
    let needed = previous_end.max(block_ends);
    // A writer may have finished between loading `tail` and looking for a holder: look again.
    if tail < needed && area.tail.load(Ordering::Acquire) < needed {
        if segment.lock_owner().is_some() {
            report.note(format!(
                "end of data {tail} is behind the published data ({needed}): a writer was \
                 interrupted; the next locker repairs it"
            ));
        } else {
            report.problem(format!(
                "end of data {tail} is behind the published data ({needed}), and no holder of \
                 the lock is recorded"
            ));
        }
    }
    if tail > size {
        report.problem(format!(
            "end of data {tail} lies past the segment's size {size}"
        ));
    }
}

fn describe(err: &Error) -> String {
    match err {
        Error::Corrupt { what, .. } => what.clone(),
        other => other.to_string(),
    }
}

serialize_as_name!(SharedList<T> where T: Serialize + DeserializeOwned);

/// Iterator over a [`SharedList`]; see [`SharedList::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    list: &'a SharedList<T>,
    next: u64,
}

impl<T: Serialize + DeserializeOwned> Iterator for Iter<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        let index = self.next;
        let item = self.list.get(index).transpose()?;
        self.next += 1;
        Some(item)
    }
}

impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a SharedList<T> {
    type Item = Result<T>;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_blocks_double() {
        assert_eq!(locate(0), Some((0, 0, 512)));
        assert_eq!(locate(511), Some((0, 511, 512)));
        assert_eq!(locate(512), Some((1, 0, 1024)));
        assert_eq!(locate(1535), Some((1, 1023, 1024)));
        assert_eq!(locate(1536), Some((2, 0, 2048)));
        assert!(locate(u64::MAX).is_none());
    }
}
