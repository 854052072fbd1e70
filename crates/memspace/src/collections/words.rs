//! Plain values as the atomic words of shared memory: their bytes stored 8 to a word,
//! little-endian and zero-padded, and read back, by the collections that keep values in slots
//! (`SharedPodMap`, `PodQueue`). Every access is an atomic load or store, so a value that a
//! peer rewrites meanwhile is torn at worst, never undefined behaviour: the callers' protocols
//! say when a read counts.

use std::sync::atomic::{AtomicU64, Ordering};

/// Up to 8 bytes as a little-endian word, zero-padded. (A whole word is one load; copying a
/// chunk of unknown length into a buffer instead called `memcpy`, a third of a lookup.)
#[inline]
pub(super) fn word_of(chunk: &[u8]) -> u64 {
    if let Ok(bytes) = <[u8; 8]>::try_from(chunk) {
        return u64::from_le_bytes(bytes);
    }
    chunk
        .iter()
        .rev()
        .fold(0, |word, &byte| (word << 8) | u64::from(byte))
}

/// Stores `bytes` into `words`, 8 to a word.
#[inline]
pub(super) fn store_bytes(words: &[AtomicU64], bytes: &[u8]) {
    for (word, chunk) in words.iter().zip(bytes.chunks(8)) {
        word.store(word_of(chunk), Ordering::Relaxed);
    }
}

/// Loads `out.len()` bytes from `words`.
#[inline]
pub(super) fn load_bytes(words: &[AtomicU64], out: &mut [u8]) {
    for (word, chunk) in words.iter().zip(out.chunks_mut(8)) {
        let bytes = word.load(Ordering::Relaxed).to_le_bytes();
        if let Ok(whole) = <&mut [u8; 8]>::try_from(&mut *chunk) {
            *whole = bytes;
        } else {
            for (to, from) in chunk.iter_mut().zip(bytes) {
                *to = from;
            }
        }
    }
}

/// Whether `words` hold `bytes`.
#[inline]
pub(super) fn holds(words: &[AtomicU64], bytes: &[u8]) -> bool {
    words
        .iter()
        .zip(bytes.chunks(8))
        .all(|(word, chunk)| word.load(Ordering::Relaxed) == word_of(chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_carry_bytes_both_ways_and_pad_with_zeros() {
        let words: Vec<AtomicU64> = (0..2).map(|_| AtomicU64::new(u64::MAX)).collect();
        let bytes: Vec<u8> = (1..=11).collect();
        store_bytes(&words, &bytes);
        assert_eq!(words[1].load(Ordering::Relaxed), 0x000b_0a09);
        let mut out = [0u8; 11];
        load_bytes(&words, &mut out);
        assert_eq!(out.as_slice(), bytes.as_slice());
        assert!(holds(&words, &bytes));
        assert!(!holds(&words, &[1; 11]));
    }
}
