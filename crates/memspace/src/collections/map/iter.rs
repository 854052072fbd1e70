//! Iterating over a [`SharedMap`]: [`MapIter`], [`MapKeys`] and [`MapValues`], each over a
//! copy of the entries taken when its first item is asked for.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::SharedMap;
use super::shm::{Entry, Raw};
use crate::error::Result;
use crate::handle::Place;

impl<K, V> SharedMap<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// The entries, in no particular order.
    ///
    /// The iterator copies the map, under the lock, when its first item is asked for, and
    /// yields the entries of that copy: each once, as they were at that moment, whatever other
    /// processes do meanwhile. It yields one error instead if the copy cannot be made.
    #[must_use]
    pub fn iter(&self) -> MapIter<'_, K, V> {
        MapIter {
            map: self,
            snapshot: Snapshot::default(),
        }
    }

    /// The keys, in no particular order (copied as [`SharedMap::iter`] says).
    #[must_use]
    pub fn keys(&self) -> MapKeys<'_, K, V> {
        MapKeys {
            map: self,
            snapshot: Snapshot::default(),
        }
    }

    /// The values, in no particular order (copied as [`SharedMap::iter`] says).
    #[must_use]
    pub fn values(&self) -> MapValues<'_, K, V> {
        MapValues {
            map: self,
            snapshot: Snapshot::default(),
        }
    }

    /// A copy of the entries, in no particular order.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](crate::Error::Decode) if an entry is not a `(K, V)` (its `index` is
    /// the entry's slot); [`Error::Corrupt`](crate::Error::Corrupt) if the segment was damaged.
    pub fn to_vec(&self) -> Result<Vec<(K, V)>> {
        self.iter().collect()
    }

    /// A copy of the map as a `HashMap`.
    ///
    /// # Errors
    ///
    /// As [`SharedMap::to_vec`].
    pub fn to_hash_map(&self) -> Result<HashMap<K, V>>
    where
        K: Hash + Eq,
    {
        self.iter().collect()
    }
}

impl<K, V> SharedMap<K, V> {
    /// The entries, copied (for the iterators).
    fn entries(&self) -> Result<Vec<(u64, Entry)>> {
        match self.place.as_ref() {
            Place::Shm(segment) => Raw { segment }.entries(),
            #[cfg(feature = "redis")]
            Place::Redis(map) => map.entries(),
        }
    }
}

/// A copy of a map's entries, made when first asked for.
#[derive(Default)]
enum Snapshot {
    #[default]
    NotTaken,
    Taken(std::vec::IntoIter<(u64, Entry)>),
    Failed,
}

impl Snapshot {
    fn next(
        &mut self,
        entries: impl FnOnce() -> Result<Vec<(u64, Entry)>>,
    ) -> Option<Result<(u64, Entry)>> {
        if let Snapshot::NotTaken = self {
            match entries() {
                Ok(entries) => *self = Snapshot::Taken(entries.into_iter()),
                Err(err) => {
                    *self = Snapshot::Failed;
                    return Some(Err(err));
                }
            }
        }
        match self {
            Snapshot::Taken(entries) => entries.next().map(Ok),
            Snapshot::NotTaken | Snapshot::Failed => None,
        }
    }

    fn remaining(&self) -> Option<usize> {
        match self {
            Snapshot::NotTaken => None,
            Snapshot::Taken(entries) => Some(entries.len()),
            Snapshot::Failed => Some(0),
        }
    }
}

/// The entries of a [`SharedMap`]; see [`SharedMap::iter`].
pub struct MapIter<'a, K, V> {
    map: &'a SharedMap<K, V>,
    snapshot: Snapshot,
}

/// The keys of a [`SharedMap`]; see [`SharedMap::keys`].
pub struct MapKeys<'a, K, V> {
    map: &'a SharedMap<K, V>,
    snapshot: Snapshot,
}

/// The values of a [`SharedMap`]; see [`SharedMap::values`].
pub struct MapValues<'a, K, V> {
    map: &'a SharedMap<K, V>,
    snapshot: Snapshot,
}

macro_rules! map_iterator {
    ($name:ident, $item:ty, |$map:ident, $slot:ident, $entry:ident| $decode:expr) => {
        impl<K, V> Iterator for $name<'_, K, V>
        where
            K: Serialize + DeserializeOwned,
            V: Serialize + DeserializeOwned,
        {
            type Item = Result<$item>;

            fn next(&mut self) -> Option<Self::Item> {
                let $map = self.map;
                Some(
                    self.snapshot
                        .next(|| $map.entries())?
                        .and_then(|($slot, $entry)| $decode),
                )
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                match self.snapshot.remaining() {
                    Some(n) => (n, Some(n)),
                    None => (0, None),
                }
            }
        }

        impl<K, V> fmt::Debug for $name<'_, K, V> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("map", self.map.name())
                    .field("remaining", &self.snapshot.remaining())
                    .finish()
            }
        }
    };
}

map_iterator!(MapIter, (K, V), |map, slot, entry| Ok((
    map.decode(entry.key(), slot)?,
    map.decode(entry.value(), slot)?
)));
map_iterator!(MapKeys, K, |map, slot, entry| map.decode(entry.key(), slot));
map_iterator!(MapValues, V, |map, slot, entry| map
    .decode(entry.value(), slot));

impl<'a, K, V> IntoIterator for &'a SharedMap<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    type Item = Result<(K, V)>;
    type IntoIter = MapIter<'a, K, V>;

    fn into_iter(self) -> MapIter<'a, K, V> {
        self.iter()
    }
}
