//! Records: variable-size byte strings bump-allocated in a segment's data area, each
//! `[u32 payload length][u32 CRC-32C of payload][payload][padding to 8]`. The list, the map and
//! the queue keep their items as records and their structure as offsets to them.
//!
//! # Safety
//!
//! [`write`](fn@write) copies into the segment with `Mapping::write`, whose contract is that no
//! thread of this process accesses the range meanwhile. [`write`](fn@write) passes that duty on
//! to its caller (see its `# Safety`): collections call it under the segment's lock, at or past
//! their end of data, where no published offset points.
//!
//! The checksum of a short payload is computed with SSE4.2's `crc32` instruction, in a
//! function compiled for processors that have it (`inline_crc32c`); [`checksum`] calls it only
//! after it detected the feature on this processor.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Result;
use crate::segment::Segment;
use crate::sync::RawGuard;

/// Bytes before a record's payload.
pub(crate) const HEADER: u64 = 8;

/// The bytes a record of `payload_len` bytes takes: header, payload, padding to 8.
#[inline]
pub(crate) fn size(payload_len: usize) -> u64 {
    (HEADER + payload_len as u64).next_multiple_of(8)
}
/// The largest payload: the length field is 32 bits.
pub(crate) const MAX_PAYLOAD: usize = u32::MAX as usize;
/// The most bytes of a payload a reader's fast path copies onto its stack ([`read_short`]):
/// numbers, short strings, small structs.
pub(crate) const SHORT_PAYLOAD: usize = 128;
/// Where [`read_short`] copies a payload: [`SHORT_PAYLOAD`] bytes as 8-byte words, each
/// written whole from one atomic load.
pub(crate) type ShortCopy = [[u8; 8]; SHORT_PAYLOAD / 8];

/// The most bytes of a payload whose checksum [`checksum`] computes inline, one 8-byte word per
/// instruction; past it, `crc32c` runs three streams at once.
const INLINE_CHECKSUM: usize = 256;

/// The CRC-32C (Castagnoli: iSCSI's, ext4's, and that of SSE4.2's `crc32` instruction) of a
/// record's payload.
///
/// A payload of a few bytes (a number, a short string: most items) costs less than the call
/// that would check it: on x86-64 processors with SSE4.2 it is computed inline, with the
/// instruction; longer payloads, and other processors, go through `crc32c` (also hardware,
/// where the processor has it).
#[allow(
    clippy::inline_always,
    reason = "measured: left to the compiler, a record's write called it out of line"
)]
#[inline(always)]
fn checksum(payload: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if payload.len() <= INLINE_CHECKSUM && std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: `inline_crc32c` needs SSE4.2 and nothing else; the processor has it (just
        // detected).
        return unsafe { inline_crc32c(payload) };
    }
    crc32c::crc32c(payload)
}

/// [`checksum`] with SSE4.2's `crc32` instruction: a word at a time, then the last 4, 2 and 1
/// bytes, each in one instruction (one after the other: each takes the last one's result).
///
/// Compiled for processors with SSE4.2: calling it (an `unsafe` call outside such a function)
/// is sound only on one that has it, which [`checksum`] detects first.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn inline_crc32c(payload: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64};
    let (words, mut rest) = payload.as_chunks::<8>();
    let mut crc = u32::MAX;
    for word in words {
        // The instruction leaves the upper half of its result zero.
        crc = _mm_crc32_u64(u64::from(crc), u64::from_le_bytes(*word)) as u32;
    }
    if let Some((four, after)) = rest.split_first_chunk::<4>() {
        crc = _mm_crc32_u32(crc, u32::from_le_bytes(*four));
        rest = after;
    }
    if let Some((two, after)) = rest.split_first_chunk::<2>() {
        crc = _mm_crc32_u16(crc, u16::from_le_bytes(*two));
        rest = after;
    }
    if let Some(&byte) = rest.first() {
        crc = _mm_crc32_u8(crc, byte);
    }
    !crc
}

/// A record's header word, loaded from the segment: its payload length and its stored CRC.
#[inline]
fn split_header(word: u64) -> (u32, u32) {
    // The header's bytes are `[length, little-endian][CRC, little-endian]`.
    let word = u64::from_le(word);
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the low and the high half of the word, each 32 bits"
    )]
    (word as u32, (word >> 32) as u32)
}

/// Writes `payload` as a record at `at`, growing the segment as needed. Returns the record's
/// offset and the 8-aligned offset just past it.
///
/// `at` must be 8-aligned, in the data area and inside the committed size (it is checked: a
/// damaged end of data is [`Error::Corrupt`](crate::Error::Corrupt)), so the segment grows by
/// at most this record.
///
/// # Safety
///
/// The caller holds the segment's lock (`held`) and no published offset of its collection
/// points into `[at, end)`: readers in this process cannot be reading those bytes.
#[inline]
pub(crate) unsafe fn write(
    segment: &Segment,
    held: &RawGuard<'_>,
    at: u64,
    payload: &[u8],
) -> Result<(u64, u64)> {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    // `at` comes from the segment (an end of data, a free position): it must lie in the data
    // area, inside the committed size, so that the segment grows by this record at most.
    segment.data_range(|| "the position of a new record".to_owned(), at, 0, 8)?;
    // Below the committed size (at most 2^46) plus a 32-bit length: no overflow.
    let (record, end) = (at, at + HEADER + payload.len() as u64);
    segment.grow_to(end, held)?;
    let mut header = [0u8; HEADER as usize];
    header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(&checksum(payload).to_le_bytes());
    let map = segment.mapping();
    // SAFETY: the caller guarantees nobody in this process reads `[record, end)` (see
    // `# Safety`); `grow_to` mapped it.
    unsafe { map.write(record, &header) }
        .and_then(|()| {
            // SAFETY: as above.
            unsafe { map.write(record + HEADER, payload) }
        })
        .ok_or_else(|| segment.corrupt(format!("record at {record} is not mapped")))?;
    Ok((record, end.next_multiple_of(8)))
}

/// The payload length of the record at `record`, bounds-checked against the segment (the
/// offset comes from shared memory: untrusted). Maps the record if another process grew the
/// segment.
pub(crate) fn payload_len(segment: &Segment, record: u64) -> Result<u64> {
    header(segment, record).map(|(len, _)| len)
}

/// The header of the record at `record`, checked as [`payload_len`] says: the payload's length
/// and its stored CRC-32C.
fn header(segment: &Segment, record: u64) -> Result<(u64, u32)> {
    let what = || "a record".to_owned();
    let start = segment.data_range(what, record, HEADER, 8)?;
    // One word: records are 8-aligned (just checked).
    let header = segment
        .mapping()
        .get::<AtomicU64>(record)
        .ok_or_else(|| segment.corrupt(format!("record at {record} is not mapped")))?
        .load(Ordering::Relaxed);
    // A header read from a page lost to a shrunk file (as zeros) is not the record's.
    segment.check_intact()?;
    let (len, stored) = split_header(header);
    let len = u64::from(len);
    segment.data_range(
        || format!("the payload of the record at {record}"),
        start,
        len,
        1,
    )?;
    Ok((len, stored))
}

/// The 8-aligned offset just past the record at `record`.
pub(crate) fn end(segment: &Segment, record: u64) -> Result<u64> {
    // `payload_len` checked the record first: inside the committed size, nothing overflows.
    let len = payload_len(segment, record)?;
    Ok((record + HEADER + len).next_multiple_of(8))
}

/// Copies out the payload of the record at `record` and checks its CRC.
pub(crate) fn read(segment: &Segment, record: u64) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    read_into(segment, record, &mut payload)?;
    Ok(payload)
}

/// Copies the payload of the record at `record` into `payload` (replacing what it held) and
/// checks its CRC: [`read`] without an allocation when `payload` has room already. Returns the
/// 8-aligned offset just past the record, as [`end`].
pub(crate) fn read_into(segment: &Segment, record: u64, payload: &mut Vec<u8>) -> Result<u64> {
    let (len, stored) = header(segment, record)?;
    copy_payload(segment, record, (len, stored), payload)
}

/// [`read_into`] for a reader that must look at a record's extent before it allocates for it:
/// once the header is checked, `go_on` is given the offset just past the record and says
/// whether to copy it (`None` if not). A record read without the lock may be garbage, its
/// length anything up to the segment's size: `go_on` checks that the structure did not change
/// under the reader, or that the record lies where it should.
pub(crate) fn read_into_if(
    segment: &Segment,
    record: u64,
    payload: &mut Vec<u8>,
    go_on: impl FnOnce(u64) -> bool,
) -> Result<Option<u64>> {
    let (len, stored) = header(segment, record)?;
    // `header` checked the record: inside the committed size, nothing overflows.
    if !go_on((record + HEADER + len).next_multiple_of(8)) {
        return Ok(None);
    }
    copy_payload(segment, record, (len, stored), payload).map(Some)
}

/// Copies the payload of the record at `record` into the start of `out` and checks its CRC, for
/// a reader's fast path: the payload's length, or `None` if `out` cannot hold it padded to 8
/// bytes, or if the record is not one [`read_into`] would return (outside the data area,
/// failing its checksum, read from pages a shrunk file took): the caller's slow path then reads
/// it again and says what is wrong.
///
/// The record is copied a word at a time with atomic loads (records are 8-aligned and padded
/// to 8 bytes).
#[inline]
pub(crate) fn read_short(segment: &Segment, record: u64, out: &mut ShortCopy) -> Option<usize> {
    let map = segment.mapping();
    let (len, stored) = split_header(map.get::<AtomicU64>(record)?.load(Ordering::Relaxed));
    // In 64 bits: a length near `u32::MAX` padded to 8 does not overflow.
    let padded = u64::from(len).next_multiple_of(8);
    let copy = out.get_mut(..usize::try_from(padded / 8).ok()?)?;
    if !segment.holds_data(record, HEADER + padded, 8) {
        return None;
    }
    let words = map.words(record + HEADER, copy.len())?;
    for (bytes, word) in copy.iter_mut().zip(words) {
        *bytes = word.load(Ordering::Relaxed).to_ne_bytes();
    }
    let payload = &copy.as_flattened()[..len as usize];
    (segment.is_intact() && checksum(payload) == stored).then_some(payload.len())
}

/// Copies the payload of the record at `record`, whose checked header says `len` and `stored`
/// (its CRC), into `payload`; returns the offset just past the record.
#[inline]
fn copy_payload(
    segment: &Segment,
    record: u64,
    (len, stored): (u64, u32),
    payload: &mut Vec<u8>,
) -> Result<u64> {
    // Resized, not cleared first: a buffer kept from a payload of the same size (the next
    // number, the next key) is not zero-filled again before it is overwritten.
    payload.resize(len as usize, 0);
    segment
        .mapping()
        .read(record + HEADER, payload)
        .ok_or_else(|| segment.corrupt(format!("record at {record} is not mapped")))?;
    if checksum(payload) != stored {
        return Err(segment.corrupt(format!("record at {record} fails its checksum")));
    }
    // `header` checked the record: inside the committed size, nothing overflows.
    Ok((record + HEADER + len).next_multiple_of(8))
}

#[cfg(test)]
mod tests {
    use super::{checksum, size};

    #[test]
    fn record_sizes_include_the_header_and_padding() {
        assert_eq!(size(0), 8);
        assert_eq!(size(1), 16);
        assert_eq!(size(8), 16);
        assert_eq!(size(9), 24);
    }

    #[test]
    fn the_checksum_is_crc32c_inline_and_past_it() {
        let bytes: Vec<u8> = (0..600u32).map(|i| (i * 151 + 7) as u8).collect();
        // Short payloads, and past the length where the checksum stops computing inline.
        for len in (0..=300).chain([511, 512, 513]) {
            for start in [0, 1, 13] {
                let payload = &bytes[start..start + len];
                assert_eq!(checksum(payload), crc32c::crc32c(payload), "{len} bytes");
            }
        }
        // The check value of CRC-32C (CRC-32/ISCSI).
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
    }
}
