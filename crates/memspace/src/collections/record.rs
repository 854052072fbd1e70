//! Records: variable-size byte strings bump-allocated in a segment's data area, each
//! `[u32 payload length][u32 CRC-32 of payload][payload][padding to 8]`. The list, the map and
//! the queue keep their items as records and their structure as offsets to them.
//!
//! # Safety
//!
//! [`write`] copies into the segment with `Mapping::write`, whose contract is that no thread
//! of this process accesses the range meanwhile. [`write`] passes that duty on to its caller
//! (see its `# Safety`): collections call it under the segment's lock, at or past their end of
//! data, where no published offset points.

#![allow(unsafe_code)]

use crate::error::Result;
use crate::segment::{DATA_START, Segment};
use crate::sync::RawGuard;

/// Bytes before a record's payload.
pub(crate) const HEADER: u64 = 8;
/// The largest payload: the length field is 32 bits.
pub(crate) const MAX_PAYLOAD: usize = u32::MAX as usize;

/// Writes `payload` as a record at the first 8-aligned offset at or after `at`, growing the
/// segment as needed. Returns the record's offset and the 8-aligned offset just past it.
///
/// # Safety
///
/// The caller holds the segment's lock (`held`) and no published offset of its collection
/// points into `[at, end)`: readers in this process cannot be reading those bytes.
pub(crate) unsafe fn write(
    segment: &Segment,
    held: &RawGuard<'_>,
    at: u64,
    payload: &[u8],
) -> Result<(u64, u64)> {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    // `at` comes from the segment: arithmetic on it is checked.
    let (record, end) = at
        .max(DATA_START)
        .checked_next_multiple_of(8)
        .and_then(|record| Some((record, record.checked_add(HEADER + payload.len() as u64)?)))
        .ok_or_else(|| segment.corrupt(format!("the end of data is {at}")))?;
    segment.grow_to(end, held)?;
    let mut header = [0u8; HEADER as usize];
    header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
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
    // Below the maximum size (validated on open: at most 2^46), `record + HEADER + len` cannot
    // overflow.
    if record < DATA_START || !record.is_multiple_of(8) || record >= segment.max_size() {
        return Err(segment.corrupt(format!("a record offset is {record}")));
    }
    segment.ensure_mapped(record + HEADER)?;
    let mut header = [0u8; HEADER as usize];
    segment
        .mapping()
        .read(record, &mut header)
        .ok_or_else(|| segment.corrupt(format!("record at {record} is not mapped")))?;
    let len = u64::from(u32::from_le_bytes(header[..4].try_into().expect("4 bytes")));
    segment.ensure_mapped(record + HEADER + len)?;
    Ok(len)
}

/// The 8-aligned offset just past the record at `record`.
pub(crate) fn end(segment: &Segment, record: u64) -> Result<u64> {
    Ok((record + HEADER + payload_len(segment, record)?).next_multiple_of(8))
}

/// Copies out the payload of the record at `record` and checks its CRC.
pub(crate) fn read(segment: &Segment, record: u64) -> Result<Vec<u8>> {
    let len = payload_len(segment, record)?;
    let mut header = [0u8; HEADER as usize];
    let mut payload = vec![0u8; len as usize];
    segment
        .mapping()
        .read(record, &mut header)
        .and_then(|()| segment.mapping().read(record + HEADER, &mut payload))
        .ok_or_else(|| segment.corrupt(format!("record at {record} is not mapped")))?;
    let stored = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if crc32fast::hash(&payload) != stored {
        return Err(segment.corrupt(format!("record at {record} fails its checksum")));
    }
    Ok(payload)
}
