//! The word that names a hash map's slot table in its segment (both maps', `SharedMap`'s and
//! `SharedPodMap`'s): the table's offset, a multiple of [`TABLE_ALIGN`], with log2 of its
//! capacity in the low bits that alignment leaves free; and the capacity a table gets for a
//! number of keys.

/// Tables start at a multiple of this, which leaves the low bits of a table word for the log2
/// of the capacity.
pub(crate) const TABLE_ALIGN: u64 = 64;
pub(crate) const MIN_CAPACITY_LOG2: u64 = 4;
pub(crate) const MAX_CAPACITY_LOG2: u64 = 40;

/// A slot table, as decoded from a table word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) offset: u64,
    pub(crate) capacity: u64,
}

impl Table {
    /// The table a table word names, if its capacity is one a map can have.
    #[inline]
    pub(crate) fn from_word(word: u64) -> Option<Self> {
        let log2 = word % TABLE_ALIGN;
        (MIN_CAPACITY_LOG2..=MAX_CAPACITY_LOG2)
            .contains(&log2)
            .then(|| Table {
                offset: word - log2,
                capacity: 1 << log2,
            })
    }

    pub(crate) fn word(self) -> u64 {
        self.offset | u64::from(self.capacity.trailing_zeros())
    }
}

/// The capacity of a table for `live` entries: they fill at most half of it.
pub(crate) fn capacity_for(live: u64) -> Option<u64> {
    let capacity = live
        .checked_mul(2)?
        .max(1 << MIN_CAPACITY_LOG2)
        .checked_next_power_of_two()?;
    (capacity <= 1 << MAX_CAPACITY_LOG2).then_some(capacity)
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
        assert_eq!(Table::from_word(table.word()), Some(table));
        assert_eq!(Table::from_word(4096 + 3), None, "fewer than 16 slots");
        assert_eq!(Table::from_word(4096 + 41), None, "more than 2^40 slots");
    }

    #[test]
    fn a_table_holds_its_entries_at_half_load_at_most() {
        assert_eq!(capacity_for(0), Some(16));
        assert_eq!(capacity_for(8), Some(16));
        assert_eq!(capacity_for(9), Some(32));
        assert_eq!(capacity_for(1 << 39), Some(1 << 40));
        assert_eq!(capacity_for((1 << 39) + 1), None);
        assert_eq!(capacity_for(u64::MAX), None);
    }
}
