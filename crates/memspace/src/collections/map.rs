//! [`SharedMap<K, V>`]: a hash map of serde keys and values in a growable segment.
//!
//! # Layout
//!
//! ```text
//! kind area:  table    offset of the slot array | log2(capacity)   (one word: one commit)
//!             len      live entries             used   live entries + tombstones
//!             tail     first free byte of the data area
//! slot:       [u64 hash][u64 record offset; 0 = empty, 1 = tombstone]
//! record:     [u32 key length][key][value]  as a record (length, CRC-32, payload: record.rs)
//! ```
//!
//! Keys and values are encoded with `MessagePack`; a key is found by the FNV-1a hash of its
//! encoding, with linear probing, and two keys are equal when their encodings are. Hashing is
//! deterministic (never `RandomState`), so every process finds every key.
//!
//! # Crash consistency
//!
//! Every operation holds the segment's robust lock, readers included. Each change is committed
//! by one atomic store: an insert writes its record past `tail` and then stores the record's
//! offset into the slot; a remove stores the tombstone; growth builds a larger table past
//! `tail` and then switches the `table` word. A writer killed before its commit leaves garbage
//! past `tail` that nothing points to; one killed after leaves `len`, `used` or `tail` stale,
//! and the next locker, told the owner died, recounts them from the committed table before it
//! goes on.
//!
//! Space: replaced and removed entries, and the tables outgrown, stay allocated until
//! [`SharedMap::clear`] (which reclaims everything). Growth doubles the table when live entries
//! and tombstones pass 70 % of it.
//!
//! # Safety
//!
//! The one `unsafe` operation is `record::write`, called under the lock at `tail`, which lies
//! past the committed table and every record it points to (recomputed so after a crash): no
//! published offset points into the bytes it writes.

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{codec, record};
use crate::error::{Error, OpenError, Result};
use crate::inspect::Report;
use crate::segment::{DATA_START, Kind, Segment, SegmentName, SegmentOptions};
use crate::sync::{LockError, RawGuard, acquire};
use crate::sys::Wait;

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = 1;
const SLOT_SIZE: u64 = 16;
const MIN_CAPACITY_LOG2: u64 = 4;
const MAX_CAPACITY_LOG2: u64 = 40;

#[repr(C)]
pub(crate) struct MapArea {
    /// Table offset (64-byte aligned) | log2(capacity) in the low 6 bits.
    table: AtomicU64,
    len: AtomicU64,
    used: AtomicU64,
    tail: AtomicU64,
}

/// A slot of the table, read from shared memory.
#[derive(Clone, Copy)]
struct Table {
    offset: u64,
    capacity: u64,
}

impl Table {
    fn from_word(word: u64) -> Self {
        Table {
            offset: word & !63,
            capacity: 1 << (word & 63).min(MAX_CAPACITY_LOG2),
        }
    }

    fn word(self) -> u64 {
        self.offset | u64::from(self.capacity.trailing_zeros())
    }

    fn end(self) -> u64 {
        self.offset + self.capacity * SLOT_SIZE
    }

    fn slot(self, index: u64) -> u64 {
        self.offset + (index & (self.capacity - 1)) * SLOT_SIZE
    }
}

/// FNV-1a, 64 bits: deterministic in every process.
fn hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A hash map shared by threads and processes.
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::collections::SharedMap;
///
/// let ages = SharedMap::<String, u32>::new()?;
/// ages.insert(&"ada".into(), &36)?;
/// assert_eq!(ages.insert(&"ada".into(), &37)?, Some(36));
/// assert_eq!(ages.get(&"ada".into())?, Some(37));
/// assert_eq!(ages.remove(&"ada".into())?, Some(37));
/// assert!(ages.is_empty());
/// # Ok(())
/// # }
/// ```
pub struct SharedMap<K, V> {
    segment: Arc<Segment>,
    _entries: PhantomData<Entries<K, V>>,
}

/// Keeps `SharedMap` `Send` and `Sync` whatever `K` and `V` are: it stores their encodings,
/// never values.
type Entries<K, V> = fn(K, V) -> (K, V);

impl<K, V> Clone for SharedMap<K, V> {
    fn clone(&self) -> Self {
        SharedMap {
            segment: Arc::clone(&self.segment),
            _entries: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for SharedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMap")
            .field("name", self.segment.name())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// The map's machinery, independent of the key and value types.
#[derive(Clone, Copy)]
struct Raw<'a> {
    segment: &'a Segment,
}

impl<'a> Raw<'a> {
    fn area(self) -> &'a MapArea {
        self.segment.kind_area::<MapArea>()
    }

    fn table(self) -> Result<Table> {
        let table = Table::from_word(self.area().table.load(Ordering::Acquire));
        if table.offset < DATA_START || table.end() > self.segment.size() {
            return Err(self.segment.corrupt(format!(
                "the table at {} with {} slots lies outside the segment",
                table.offset, table.capacity
            )));
        }
        self.segment.ensure_mapped(table.end())?;
        Ok(table)
    }

    fn word(self, offset: u64) -> Result<&'a AtomicU64> {
        self.segment
            .mapping()
            .get::<AtomicU64>(offset)
            .ok_or_else(|| {
                self.segment
                    .corrupt(format!("slot at {offset} is not mapped"))
            })
    }

    /// Takes the lock, recounting after a holder died.
    fn lock(self) -> Result<RawGuard<'a>> {
        match acquire(self.segment, Wait::Forever, |raw, _| raw) {
            Ok(held) => Ok(held),
            Err(LockError::OwnerDied(held)) => {
                self.recover()?;
                held.mark_consistent()
                    .map_err(|e| self.segment.os_error("pthread_mutex_consistent", e))?;
                Ok(held)
            }
            Err(LockError::Poisoned(held)) => {
                held.clear_poison();
                Ok(held)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Recomputes `len`, `used` and `tail` from the committed table.
    fn recover(self) -> Result<()> {
        let table = self.table()?;
        let (mut len, mut used, mut tail) = (0, 0, table.end());
        for index in 0..table.capacity {
            let at = self.word(table.slot(index) + 8)?.load(Ordering::Acquire);
            match at {
                EMPTY => {}
                TOMBSTONE => used += 1,
                record => {
                    len += 1;
                    used += 1;
                    tail = tail.max(record::end(self.segment, record)?);
                }
            }
        }
        let area = self.area();
        area.len.store(len, Ordering::Relaxed);
        area.used.store(used, Ordering::Relaxed);
        area.tail.store(tail, Ordering::Relaxed);
        Ok(())
    }

    /// Finds `key`: `Ok(Ok(slot))` where it is, or `Ok(Err(slot))` where it would go (the first
    /// tombstone or empty slot on its probe path).
    fn find(self, table: Table, key: &[u8], hash: u64) -> Result<std::result::Result<u64, u64>> {
        let mut free = None;
        for probe in 0..table.capacity {
            let slot = table.slot(hash.wrapping_add(probe));
            let at = self.word(slot + 8)?.load(Ordering::Acquire);
            match at {
                EMPTY => return Ok(Err(free.unwrap_or(slot))),
                TOMBSTONE => {
                    free.get_or_insert(slot);
                }
                record => {
                    if self.word(slot)?.load(Ordering::Relaxed) == hash
                        && self.read_key(record)?.as_slice() == key
                    {
                        return Ok(Ok(slot));
                    }
                }
            }
        }
        free.map(Err).ok_or_else(|| {
            self.segment
                .corrupt("the table is full of live entries".to_owned())
        })
    }

    fn read_entry(self, record: u64) -> Result<(Vec<u8>, Vec<u8>)> {
        let payload = record::read(self.segment, record)?;
        let key_len = payload
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .filter(|&n| n <= payload.len() - 4)
            .ok_or_else(|| {
                self.segment
                    .corrupt(format!("entry at {record} is malformed"))
            })?;
        Ok((
            payload[4..4 + key_len].to_vec(),
            payload[4 + key_len..].to_vec(),
        ))
    }

    fn read_key(self, record: u64) -> Result<Vec<u8>> {
        self.read_entry(record).map(|(key, _)| key)
    }

    /// Writes an entry record at `tail`; returns its offset (nothing points to it yet).
    fn write_entry(self, held: &RawGuard<'_>, key: &[u8], value: &[u8]) -> Result<u64> {
        let mut payload = Vec::with_capacity(4 + key.len() + value.len());
        payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
        payload.extend_from_slice(key);
        payload.extend_from_slice(value);
        if payload.len() > record::MAX_PAYLOAD {
            return Err(Error::Full {
                name: self.segment.name().clone(),
                needed: payload.len() as u64,
                max_size: record::MAX_PAYLOAD as u64,
            });
        }
        let area = self.area();
        let tail = area.tail.load(Ordering::Relaxed);
        // SAFETY: we hold the lock and `tail` is past the table and every record it points to
        // (it is recomputed so after a crash), so nothing published points into the range.
        let (at, end) = unsafe { record::write(self.segment, held, tail, payload.as_slice()) }?;
        area.tail.store(end, Ordering::Relaxed);
        Ok(at)
    }

    /// Allocates a zeroed table of `capacity` slots at `at` (64-byte aligned), holding the lock.
    fn new_table(self, held: &RawGuard<'_>, at: u64, capacity: u64) -> Result<Table> {
        let table = Table {
            offset: at.next_multiple_of(64),
            capacity,
        };
        self.segment.grow_to(table.end(), held)?;
        for index in 0..capacity {
            self.word(table.slot(index))?.store(0, Ordering::Relaxed);
            self.word(table.slot(index) + 8)?
                .store(EMPTY, Ordering::Relaxed);
        }
        Ok(table)
    }

    /// Doubles the table if an insert would pass 70 % occupancy (tombstones included).
    fn reserve_one(self, held: &RawGuard<'_>) -> Result<Table> {
        let table = self.table()?;
        let area = self.area();
        let used = area.used.load(Ordering::Relaxed);
        if (used + 1) * 10 <= table.capacity * 7 {
            return Ok(table);
        }
        let live = area.len.load(Ordering::Relaxed);
        let mut capacity = table.capacity;
        while (live + 1) * 10 > capacity * 5 {
            capacity *= 2;
        }
        if u64::from(capacity.trailing_zeros()) > MAX_CAPACITY_LOG2 {
            return Err(Error::Full {
                name: self.segment.name().clone(),
                needed: live + 1,
                max_size: 1 << MAX_CAPACITY_LOG2,
            });
        }
        let grown = self.new_table(held, area.tail.load(Ordering::Relaxed), capacity)?;
        area.tail.store(grown.end(), Ordering::Relaxed);
        for index in 0..table.capacity {
            let at = self.word(table.slot(index) + 8)?.load(Ordering::Acquire);
            if at > TOMBSTONE {
                let hash = self.word(table.slot(index))?.load(Ordering::Relaxed);
                let slot = (0..grown.capacity)
                    .map(|probe| grown.slot(hash.wrapping_add(probe)))
                    .find(|&slot| {
                        self.word(slot + 8)
                            .is_ok_and(|w| w.load(Ordering::Relaxed) == EMPTY)
                    })
                    .ok_or_else(|| self.segment.corrupt("the new table overflowed".into()))?;
                self.word(slot)?.store(hash, Ordering::Relaxed);
                self.word(slot + 8)?.store(at, Ordering::Relaxed);
            }
        }
        crate::failpoint::hit("map.table_built");
        // Commit: one store switches every process to the new table.
        area.table.store(grown.word(), Ordering::Release);
        area.used.store(live, Ordering::Relaxed);
        Ok(grown)
    }

    fn get(self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _held = self.lock()?;
        let table = self.table()?;
        match self.find(table, key, hash(key))? {
            Ok(slot) => {
                let record = self.word(slot + 8)?.load(Ordering::Acquire);
                Ok(Some(self.read_entry(record)?.1))
            }
            Err(_) => Ok(None),
        }
    }

    fn insert(self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        let held = self.lock()?;
        let table = self.reserve_one(&held)?;
        let hash = hash(key);
        let found = self.find(table, key, hash)?;
        let record = self.write_entry(&held, key, value)?;
        crate::failpoint::hit("map.written");
        let area = self.area();
        let old = match found {
            Ok(slot) => {
                let word = self.word(slot + 8)?;
                let old = self.read_entry(word.load(Ordering::Acquire))?.1;
                word.store(record, Ordering::Release); // commit: the new value replaces the old
                Some(old)
            }
            Err(slot) => {
                let word = self.word(slot + 8)?;
                let was = word.load(Ordering::Relaxed);
                self.word(slot)?.store(hash, Ordering::Relaxed);
                word.store(record, Ordering::Release); // commit: the entry exists
                crate::failpoint::hit("map.committed");
                area.len.fetch_add(1, Ordering::Relaxed);
                if was == EMPTY {
                    area.used.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
        };
        self.segment.note_writer();
        Ok(old)
    }

    fn remove(self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _held = self.lock()?;
        let table = self.table()?;
        match self.find(table, key, hash(key))? {
            Ok(slot) => {
                let word = self.word(slot + 8)?;
                let old = self.read_entry(word.load(Ordering::Acquire))?.1;
                word.store(TOMBSTONE, Ordering::Release); // commit
                self.area().len.fetch_sub(1, Ordering::Relaxed);
                self.segment.note_writer();
                Ok(Some(old))
            }
            Err(_) => Ok(None),
        }
    }

    /// Every entry's encoded key and value, read under the lock.
    fn entries(self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let _held = self.lock()?;
        let table = self.table()?;
        let mut entries = Vec::new();
        for index in 0..table.capacity {
            let at = self.word(table.slot(index) + 8)?.load(Ordering::Acquire);
            if at > TOMBSTONE {
                entries.push(self.read_entry(at)?);
            }
        }
        Ok(entries)
    }

    /// Empties the map and reclaims all its space.
    fn clear(self) -> Result<()> {
        let held = self.lock()?;
        let area = self.area();
        // First an empty table past everything, committed: from then on nothing points below.
        let far = self.new_table(
            &held,
            area.tail.load(Ordering::Relaxed),
            1 << MIN_CAPACITY_LOG2,
        )?;
        area.table.store(far.word(), Ordering::Release);
        area.len.store(0, Ordering::Relaxed);
        area.used.store(0, Ordering::Relaxed);
        area.tail.store(far.end(), Ordering::Relaxed);
        // Then an empty table at the start, committed, and the space after it free again.
        let near = self.new_table(&held, DATA_START, 1 << MIN_CAPACITY_LOG2)?;
        area.table.store(near.word(), Ordering::Release);
        area.tail.store(near.end(), Ordering::Relaxed);
        self.segment.note_writer();
        Ok(())
    }
}

impl<K, V> SharedMap<K, V> {
    fn raw(&self) -> Raw<'_> {
        Raw {
            segment: &self.segment,
        }
    }

    /// The number of entries.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.raw().area().len.load(Ordering::Acquire)
    }

    /// Whether the map has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map's segment name.
    #[must_use]
    pub fn name(&self) -> &SegmentName {
        self.segment.name()
    }

    /// The map's segment.
    #[must_use]
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Removes the map's name from the system.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`] if it was removed already.
    pub fn unlink(&self) -> Result<()> {
        Ok(self.segment.unlink()?)
    }
}

impl<K, V> SharedMap<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// Creates an anonymous map, removed when its last user drops it.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment.
    pub fn new() -> Result<Self> {
        Self::create_segment(&SegmentName::anonymous(), &SegmentOptions::new(), true)
    }

    /// Creates the map `name`; it persists until removed.
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`], [`OpenError::InvalidName`], or what the system refuses.
    pub fn create(name: &str) -> Result<Self> {
        Self::create_with(name, &SegmentOptions::new())
    }

    /// Creates the map `name` with `options` (mode, initial and maximum size).
    ///
    /// # Errors
    ///
    /// As [`SharedMap::create`].
    pub fn create_with(name: &str, options: &SegmentOptions) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, options, false)
    }

    /// Opens the map `name`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`], [`OpenError::WrongKind`].
    pub fn open(name: &str) -> Result<Self> {
        Self::from_segment(Segment::open(&SegmentName::new(name)?, Some(Kind::Map))?)
    }

    /// A map over an already open segment (for example one from
    /// [`inspect::observe`](crate::inspect::observe)).
    ///
    /// # Errors
    ///
    /// [`OpenError::WrongKind`] if the segment is not a map.
    pub fn from_segment(segment: Segment) -> Result<Self> {
        if segment.kind() != Kind::Map {
            return Err(OpenError::WrongKind {
                name: segment.name().clone(),
                found: segment.kind(),
                expected: Kind::Map,
            }
            .into());
        }
        Ok(SharedMap {
            segment: Arc::new(segment),
            _entries: PhantomData,
        })
    }

    fn create_segment(
        name: &SegmentName,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        let segment = Segment::create(
            name,
            Kind::Map,
            std::any::type_name::<(K, V)>(),
            options,
            anonymous,
            |segment| {
                let table = Table {
                    offset: DATA_START,
                    capacity: 1 << MIN_CAPACITY_LOG2,
                };
                segment.ensure_mapped(table.end())?;
                let area = segment.kind_area::<MapArea>();
                area.table.store(table.word(), Ordering::Relaxed);
                area.len.store(0, Ordering::Relaxed);
                area.used.store(0, Ordering::Relaxed);
                area.tail.store(table.end(), Ordering::Relaxed);
                Ok(())
            },
        )?;
        Self::from_segment(segment)
    }

    fn encode_key(&self, key: &K) -> Result<Vec<u8>> {
        codec::encode(key).map_err(|source| Error::Encode {
            name: self.name().clone(),
            type_name: std::any::type_name::<K>(),
            source,
        })
    }

    fn decode_value(&self, bytes: &[u8]) -> Result<V> {
        codec::decode(bytes).map_err(|source| Error::Decode {
            name: self.name().clone(),
            index: 0,
            expected: std::any::type_name::<V>(),
            source,
        })
    }

    /// Inserts or replaces the value of `key`; returns the value it replaced.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`]; [`Error::Full`] or [`Error::NoSpace`] if the segment cannot grow
    /// (the map is unchanged); [`Error::Corrupt`].
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        let key = self.encode_key(key)?;
        let value = codec::encode(value).map_err(|source| Error::Encode {
            name: self.name().clone(),
            type_name: std::any::type_name::<V>(),
            source,
        })?;
        self.raw()
            .insert(&key, &value)?
            .map(|old| self.decode_value(&old))
            .transpose()
    }

    /// The value of `key`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the stored value is not a `V`; [`Error::Corrupt`].
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let key = self.encode_key(key)?;
        self.raw()
            .get(&key)?
            .map(|bytes| self.decode_value(&bytes))
            .transpose()
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::get`].
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        let key = self.encode_key(key)?;
        Ok(self.raw().get(&key)?.is_some())
    }

    /// Removes `key`; returns its value.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::get`].
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let key = self.encode_key(key)?;
        self.raw()
            .remove(&key)?
            .map(|old| self.decode_value(&old))
            .transpose()
    }

    /// Removes every entry and reclaims the map's space.
    ///
    /// # Errors
    ///
    /// If the segment is damaged.
    pub fn clear(&self) -> Result<()> {
        self.raw().clear()
    }

    /// The entries, in no particular order, as they are at the call.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if an entry is not a `(K, V)`; [`Error::Corrupt`].
    pub fn to_vec(&self) -> Result<Vec<(K, V)>> {
        self.raw()
            .entries()?
            .into_iter()
            .map(|(key, value)| {
                let key = codec::decode(&key).map_err(|source| Error::Decode {
                    name: self.name().clone(),
                    index: 0,
                    expected: std::any::type_name::<K>(),
                    source,
                })?;
                Ok((key, self.decode_value(&value)?))
            })
            .collect()
    }

    /// The keys, in no particular order.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::to_vec`].
    pub fn keys(&self) -> Result<Vec<K>> {
        Ok(self.to_vec()?.into_iter().map(|(k, _)| k).collect())
    }

    /// A copy as a `HashMap`.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::to_vec`].
    pub fn to_hash_map(&self) -> Result<std::collections::HashMap<K, V>>
    where
        K: std::hash::Hash + Eq,
    {
        Ok(self.to_vec()?.into_iter().collect())
    }
}

/// The number of entries of the map in `segment`.
pub(crate) fn len(segment: &Segment) -> u64 {
    segment.kind_area::<MapArea>().len.load(Ordering::Acquire)
}

/// Checks the table and every entry it points to, without taking the lock (every change is
/// one atomic store, so a concurrent writer can only make the view a little stale).
pub(crate) fn verify(segment: &Segment, report: &mut Report) {
    let raw = Raw { segment };
    let table = match raw.table() {
        Ok(table) => table,
        Err(err) => return report.problem(err.to_string()),
    };
    let (mut live, mut end) = (0u64, table.end());
    for index in 0..table.capacity {
        if report.is_full() {
            break;
        }
        let Ok(slot) = raw.word(table.slot(index) + 8) else {
            report.problem(format!("slot {index} is not mapped"));
            continue;
        };
        let at = slot.load(Ordering::Acquire);
        if at <= TOMBSTONE {
            continue;
        }
        live += 1;
        match raw.read_entry(at) {
            Ok((key, value)) => {
                let stored = raw
                    .word(table.slot(index))
                    .map(|w| w.load(Ordering::Relaxed));
                if stored.ok() != Some(hash(&key)) {
                    report.problem(format!(
                        "slot {index}: the stored hash does not match its key"
                    ));
                }
                if codec::decode::<serde::de::IgnoredAny>(&key).is_err()
                    || codec::decode::<serde::de::IgnoredAny>(&value).is_err()
                {
                    report.problem(format!("slot {index}: the entry is not well-formed"));
                }
                if let Ok(record_end) = record::end(segment, at) {
                    end = end.max(record_end);
                }
            }
            Err(err) => report.problem(format!("slot {index}: {err}")),
        }
        report.items_checked += 1;
    }
    let area = raw.area();
    let len = area.len.load(Ordering::Relaxed);
    let tail = area.tail.load(Ordering::Relaxed);
    let held = segment.lock_owner().is_some();
    if len != live || tail < end {
        let what = format!(
            "the counts say {len} entries ending at {tail}, the table holds {live} ending at {end}"
        );
        if held {
            report.note(format!(
                "{what}: a writer was interrupted; the next locker recounts"
            ));
        } else {
            report.problem(what);
        }
    }
}

impl<K, V> Serialize for SharedMap<K, V> {
    /// A map travels as a reference: its segment's name.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.segment.name().as_str())
    }
}

impl<'de, K, V> Deserialize<'de> for SharedMap<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// Reattaches the named map in this process.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        SharedMap::open(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_word_packs_offset_and_capacity() {
        let table = Table {
            offset: 4096 + 640,
            capacity: 1 << 10,
        };
        let back = Table::from_word(table.word());
        assert_eq!((back.offset, back.capacity), (table.offset, table.capacity));
    }

    #[test]
    fn hashing_is_fnv1a() {
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
