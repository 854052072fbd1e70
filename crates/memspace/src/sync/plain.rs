//! A segment that holds one plain value (`T: Pod`) at the start of its data area: the layout
//! shared by [`Mutex`](super::Mutex), [`RwLock`](super::RwLock) and `Value`.
//!
//! Every such kind begins its kind area with the value's size and alignment, so that opening
//! it as another type is a clear [`OpenError::TypeMismatch`], not a misread value.
//!
//! # Safety
//!
//! The one `unsafe` operation writes the initial value while the segment is being created:
//! nobody else can reach the segment before it is published as ready.

#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::Pod;

use crate::error::{Error, OpenError, Result};
use crate::segment::{DATA_START, Kind, Segment, SegmentName, SegmentOptions};
use crate::shm_safe::ShmSafe;

/// The first words of the kind area of every kind that holds one plain value.
#[repr(C)]
pub(crate) struct ValueShape {
    size: AtomicU64,
    align: AtomicU64,
}

// SAFETY: `#[repr(C)]`, two `AtomicU64`s: any bits are a valid value (a size or alignment read
// from it is checked before use), mutation is atomic, and it owns nothing and needs no `Drop`.
unsafe impl ShmSafe for ValueShape {}

/// Creates a segment of `kind` holding `value`; `init` sets up the rest of the kind area.
pub(crate) fn create<T: Pod>(
    name: &SegmentName,
    kind: Kind,
    value: T,
    anonymous: bool,
    init: impl FnOnce(&Segment),
) -> Result<(Segment, NonNull<T>)> {
    let size = DATA_START + size_of::<T>() as u64;
    let options = SegmentOptions::new().initial_size(size).max_size(size);
    let segment = Segment::create(
        name,
        kind,
        std::any::type_name::<T>(),
        &options,
        anonymous,
        |segment| {
            let shape = segment.kind_area::<ValueShape>();
            shape.size.store(size_of::<T>() as u64, Ordering::Relaxed);
            shape.align.store(align_of::<T>() as u64, Ordering::Relaxed);
            init(segment);
            // SAFETY: the segment is being created: nobody else can reach it yet, so the write
            // cannot race; the initial size covers the value.
            unsafe {
                segment
                    .mapping()
                    .write(DATA_START, bytemuck::bytes_of(&value))
            }
            .ok_or_else(|| segment.corrupt("the value does not fit the segment".into()))?;
            Ok(())
        },
    )?;
    let value = pointer(&segment)?;
    Ok((segment, value))
}

/// Opens the segment `name` of `kind`, checking that it holds a `T`.
pub(crate) fn open<T: Pod>(name: &SegmentName, kind: Kind) -> Result<(Segment, NonNull<T>)> {
    holding(Segment::open(name, Some(kind))?)
}

/// An already open segment, which must be of `kind` and hold a `T`.
pub(crate) fn from_segment<T: Pod>(segment: Segment, kind: Kind) -> Result<(Segment, NonNull<T>)> {
    holding(segment.expecting(kind)?)
}

/// The segment and its value, once its shape says it holds a `T`.
fn holding<T: Pod>(segment: Segment) -> Result<(Segment, NonNull<T>)> {
    let shape = segment.kind_area::<ValueShape>();
    expect_type::<T>(
        &segment,
        shape.size.load(Ordering::Relaxed),
        shape.align.load(Ordering::Relaxed),
    )?;
    let value = pointer(&segment)?;
    Ok((segment, value))
}

/// Checks that the `size` and `align` a segment records for its values or elements are
/// `T`'s: [`OpenError::TypeMismatch`] otherwise, naming the type its creator recorded.
pub(crate) fn expect_type<T>(segment: &Segment, size: u64, align: u64) -> Result<()> {
    if size == size_of::<T>() as u64 && align == align_of::<T>() as u64 {
        return Ok(());
    }
    Err(type_mismatch::<T>(
        segment.name(),
        segment.type_name(),
        size,
    ))
}

/// [`OpenError::TypeMismatch`]: `name` holds values of `found` (`found_size` bytes), not `T`.
pub(crate) fn type_mismatch<T>(name: &SegmentName, found: &str, found_size: u64) -> Error {
    OpenError::TypeMismatch {
        name: name.clone(),
        found: found.to_owned(),
        found_size,
        expected: std::any::type_name::<T>(),
        expected_size: size_of::<T>() as u64,
    }
    .into()
}

fn pointer<T>(segment: &Segment) -> Result<NonNull<T>> {
    const {
        assert!(
            align_of::<T>() <= 4096,
            "values are placed at a page boundary"
        );
    };
    segment
        .mapping()
        .pointer::<T>(DATA_START)
        .ok_or_else(|| segment.corrupt("the value lies outside the mapping".into()))
}

/// What `inspect` shows of a segment holding one plain value.
pub(crate) fn describe(segment: &Segment) -> Vec<(&'static str, String)> {
    let shape = segment.kind_area::<ValueShape>();
    vec![(
        "value bytes",
        shape.size.load(Ordering::Relaxed).to_string(),
    )]
}
