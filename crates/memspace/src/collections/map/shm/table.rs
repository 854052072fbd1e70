//! The slot table of a map in shared memory (see the layout in `shm/mod.rs`), and the hash that
//! places keys in it.
//!
//! The map's `table` word names the committed table: its offset, with log2 of its capacity in
//! the low bits its alignment leaves free.
//!
//! # Hashing and key equality
//!
//! A key's slot is found from the hash of its *encoding*: FNV-1a (64 bits) followed by the
//! `MurmurHash3` finaliser, so that the low bits, which pick the slot, depend on every bit of the
//! key. The hash has no seed and no per-process state (never `RandomState`): every process
//! computes the same hash for the same key, in every run. Collisions are resolved by linear
//! probing, and two keys are the same key exactly when their encodings are equal.

use super::SLOT_SIZE;
pub(super) use crate::collections::table_word::{Table, capacity_for};

/// What the map's engine knows of a table beyond its word: where its slots lie.
impl Table {
    pub(super) fn bytes(self) -> u64 {
        self.capacity * SLOT_SIZE
    }

    /// The first byte past the table (validated tables only: see `Raw::table`).
    pub(super) fn end(self) -> u64 {
        self.offset + self.bytes()
    }

    /// The offset of slot `index` (taken modulo the capacity).
    pub(super) fn slot(self, index: u64) -> u64 {
        self.offset + (index & (self.capacity - 1)) * SLOT_SIZE
    }

    pub(super) fn home(self, hash: u64) -> u64 {
        hash & (self.capacity - 1)
    }
}

/// The hash of a key's encoding: FNV-1a (64 bits), then `MurmurHash3`'s 64-bit finaliser.
/// Deterministic: the same in every process and every run.
pub(super) fn hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV-1a's low bits depend only on the low bits of each byte; the finaliser mixes every
    // bit into every other, so that the low bits can pick the slot.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_is_fnv1a_then_the_murmur3_finaliser() {
        // Fixed values: a change here changes where every existing map keeps its keys.
        assert_eq!(hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash(b"a"), 0x82a2_a958_a9be_ce5b);
    }

    #[test]
    fn keys_that_differ_in_high_bits_only_spread_over_a_small_table() {
        // FNV-1a alone would put all of these in one slot of a 16-slot table.
        let homes: std::collections::HashSet<u64> = (0..16u8)
            .map(|high| hash(&[high << 4, 0x01]) & 15)
            .collect();
        assert!(homes.len() > 4, "{homes:?}");
    }
}
