//! [`SharedPodMap<K, V>`]: a hash map of plain, fixed-size keys and values (`K, V: Pod`) kept
//! in the slots of its table, looked up without a lock: the fast path for maps of numbers, as
//! [`SharedVec`](super::SharedVec) is for lists.
//!
//! Where [`SharedMap`](super::SharedMap) encodes its keys and values with serde into records
//! of any size, checksummed, this map stores their bytes in the slots themselves: a lookup
//! hashes the key's bytes, reads a few words of one cache line or two, and copies the value
//! out. Every change is atomic across a crash of its writer (see `shm.rs`).

mod shm;
mod verify;

use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;

use self::shm::{MAX_ENTRY_BYTES, Raw, Shape};
pub(crate) use self::verify::{len, verify};
use crate::error::Result;
use crate::handle::{Blueprint, NoRedis, Place};
use crate::segment::{Kind, Segment, SegmentName, SegmentOptions};
use crate::sync::expect_type;

/// A hash map of plain fixed-size keys and values (`K, V:`[`Pod`]) in shared memory, for
/// every thread and process that opens it.
///
/// Lookups ([`get`](SharedPodMap::get), [`contains_key`](SharedPodMap::contains_key)) take
/// no lock: they read between two changes, and read again if a writer overlapped them.
/// Changes take the segment's robust lock; each is atomic across a crash of its writer (a
/// replace killed half-way leaves the old value), and the map grows while others have it open.
///
/// Two keys are the same key exactly when their bytes are equal. For integers and arrays of
/// them that is `==`; for floats it is not (`0.0` and `-0.0` are two keys, and a `NaN` finds
/// itself).
///
/// Keys and values together take at most 1 024 bytes. For keys or values of any serde type,
/// use [`SharedMap`](super::SharedMap).
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::collections::SharedPodMap;
///
/// let scores = SharedPodMap::<u64, f64>::new()?;
/// assert_eq!(scores.insert(7, 0.5)?, None);
/// assert_eq!(scores.insert(7, 0.75)?, Some(0.5));
/// assert_eq!(scores.get(&7)?, Some(0.75));
/// assert_eq!(scores.remove(&7)?, Some(0.75));
/// assert!(scores.is_empty()?);
/// # Ok(())
/// # }
/// ```
pub struct SharedPodMap<K, V> {
    place: Place<NoRedis>,
    shape: Shape,
    _types: PhantomData<Types<K, V>>,
}

/// What a map's handle holds of its key and value types: nothing, and it is `Send` and `Sync`
/// whatever they are.
type Types<K, V> = fn(K, V) -> (K, V);

impl<K, V> Clone for SharedPodMap<K, V> {
    fn clone(&self) -> Self {
        SharedPodMap {
            place: self.place.clone(),
            shape: self.shape,
            _types: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for SharedPodMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPodMap")
            .field("name", self.name())
            .field("len", &len(self.shm()))
            .finish_non_exhaustive()
    }
}

impl<K, V> SharedPodMap<K, V> {
    /// The segment: this map lives only in shared memory.
    fn shm(&self) -> &Segment {
        self.place.local()
    }

    fn raw(&self) -> Raw<'_> {
        Raw {
            segment: self.shm(),
            shape: self.shape,
        }
    }

    place_accessors!("map", local, typed);
}

impl<K: Pod, V: Pod> SharedPodMap<K, V> {
    create_constructors!("map", local);

    /// Opens the map `name`, checking that its keys and values have `K`'s and `V`'s sizes and
    /// alignments.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind),
    /// [`OpenError::TypeMismatch`](crate::OpenError::TypeMismatch).
    pub fn open(name: &str) -> Result<Self> {
        Self::checked(Place::open(name, Kind::PodMap)?)
    }

    /// A map over an already open segment (for example one from
    /// [`inspect::observe`](crate::inspect::observe)).
    ///
    /// # Errors
    ///
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind),
    /// [`OpenError::TypeMismatch`](crate::OpenError::TypeMismatch).
    pub fn from_segment(segment: Segment) -> Result<Self> {
        Self::checked(Place::from_segment(segment, Kind::PodMap)?)
    }

    /// The shape of `K` and `V`, which the compiler checks a map can hold.
    fn shape() -> Shape {
        const {
            assert!(
                size_of::<K>() > 0,
                "zero-sized keys cannot tell entries apart"
            );
            assert!(
                size_of::<K>() + size_of::<V>() <= MAX_ENTRY_BYTES,
                "a key and a value take at most 1024 bytes together"
            );
        };
        Shape::new(size_of::<K>() as u64, size_of::<V>() as u64)
            .expect("the sizes were checked at compile time")
    }

    fn create_segment(
        name: &SegmentName,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        let shape = Self::shape();
        let blueprint = Blueprint::of::<(K, V)>(Kind::PodMap, options, anonymous);
        let place = Place::create(name, &blueprint, |segment| {
            Raw { segment, shape }.init(align_of::<K>() as u64, align_of::<V>() as u64)
        })?;
        Self::checked(place)
    }

    /// The map in `place`, once its segment says it holds `K` keys and `V` values.
    fn checked(place: Place<NoRedis>) -> Result<Self> {
        let shape = Self::shape();
        let segment = place.local();
        let area = Raw { segment, shape }.area();
        let load =
            |word: &std::sync::atomic::AtomicU64| word.load(std::sync::atomic::Ordering::Relaxed);
        expect_type::<K>(segment, load(&area.key_size), load(&area.key_align))?;
        expect_type::<V>(segment, load(&area.value_size), load(&area.value_align))?;
        Ok(SharedPodMap {
            place,
            shape,
            _types: PhantomData,
        })
    }

    /// The value of `key`, if it has one. Takes no lock (see [`SharedPodMap`]).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`](crate::Error::Corrupt) if the segment was damaged.
    #[inline]
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let mut value = V::zeroed();
        let found = self
            .raw()
            .get(bytemuck::bytes_of(key), bytemuck::bytes_of_mut(&mut value))?;
        Ok(found.then_some(value))
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    ///
    /// As [`SharedPodMap::get`].
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.get(key).map(|value| value.is_some())
    }

    /// Maps `key` to `value`; returns the value it replaced, if the key had one.
    ///
    /// # Errors
    ///
    /// [`Error::Full`](crate::Error::Full) or [`Error::NoSpace`](crate::Error::NoSpace) if the
    /// map must grow and the segment cannot (the map is unchanged);
    /// [`Error::Corrupt`](crate::Error::Corrupt) if the segment was damaged.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let mut old = V::zeroed();
        let replaced = self.raw().insert(
            bytemuck::bytes_of(&key),
            bytemuck::bytes_of(&value),
            bytemuck::bytes_of_mut(&mut old),
        )?;
        Ok(replaced.then_some(old))
    }

    /// Removes `key`; returns its value, if it had one.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`](crate::Error::Corrupt) if the segment was damaged.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let mut old = V::zeroed();
        let removed = self
            .raw()
            .remove(bytemuck::bytes_of(key), bytemuck::bytes_of_mut(&mut old))?;
        Ok(removed.then_some(old))
    }

    /// Removes every entry, in one step: the map switches to a new, empty table.
    ///
    /// # Errors
    ///
    /// As [`SharedPodMap::insert`].
    pub fn clear(&self) -> Result<()> {
        self.raw().clear()
    }

    /// The number of entries.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`](crate::Error::Corrupt) if the segment was damaged.
    pub fn len(&self) -> Result<u64> {
        self.raw().len()
    }

    /// Whether the map has no entry.
    ///
    /// # Errors
    ///
    /// As [`SharedPodMap::len`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of every entry, in the order of the map's table, taken between two changes.
    ///
    /// # Errors
    ///
    /// As [`SharedPodMap::get`].
    pub fn to_vec(&self) -> Result<Vec<(K, V)>> {
        let mut entries = Vec::new();
        self.raw().entries(|entry| match entry {
            None => entries.clear(),
            Some((key_words, value_words)) => {
                let (mut key, mut value) = (K::zeroed(), V::zeroed());
                shm::load_bytes(key_words, bytemuck::bytes_of_mut(&mut key));
                shm::load_bytes(value_words, bytemuck::bytes_of_mut(&mut value));
                entries.push((key, value));
            }
        })?;
        Ok(entries)
    }
}

serialize_as_name!(SharedPodMap<K, V> where K: Pod, V: Pod);
