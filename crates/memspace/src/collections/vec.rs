//! [`SharedVec<T>`]: a growable array of plain, fixed-size elements in shared memory, with
//! zero-copy reads: the fast path for numbers.
//!
//! Elements are stored contiguously from the start of the data area. A push writes the element
//! past the published length, then publishes it with one release store of `len` (under the
//! segment's robust lock, so pushes from many processes serialise). Published elements are
//! never written again, and the segment never moves in a process's address space while it
//! grows, so a slice of the published prefix stays valid for as long as the handle lives.
//! A pusher killed at any point leaves either its element published or nothing visible; there
//! is nothing else to repair.
//!
//! # Safety
//!
//! Two operations are `unsafe`, besides the [`ShmSafe`] promise for the kind area (`VecArea`,
//! fixed-width atomics). `Mapping::write` (a push) writes past `len` under the lock,
//! where no reader looks. `std::slice::from_raw_parts` in [`SharedVec::as_slice`] builds a
//! slice over the published prefix: it is mapped (`ensure_mapped`), aligned (the data area
//! starts on a page, `T`'s alignment is at most a page and every element is at a multiple of
//! its size), never written again by a process that follows the protocol, and every bit pattern
//! is a valid `T` (`T: Pod`). The slice borrows the handle, which keeps the mapping alive.

#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::handle::{Blueprint, NoRedis, Place};
use crate::segment::{
    DATA_START, InSegment, Kind, LockAnchor, Segment, SegmentName, SegmentOptions,
};
use crate::shm_safe::ShmSafe;
use crate::sync::{RawGuard, expect_type, lock_and_repair};

#[repr(C)]
struct VecArea {
    len: AtomicU64,
    element_size: AtomicU64,
    element_align: AtomicU64,
}

// SAFETY: `#[repr(C)]`, fixed-width atomics only: any bits are valid, every change is atomic,
// nothing to drop.
unsafe impl ShmSafe for VecArea {}

/// A growable array of `T: Pod` in shared memory, appended to by any thread or process and
/// read without copying.
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::collections::SharedVec;
///
/// let samples = SharedVec::<u64>::new()?;
/// samples.push(1)?;
/// samples.extend_from_slice(&[2, 3])?;
/// assert_eq!(samples.as_slice()?, &[1, 2, 3]);
/// assert_eq!(samples.as_slice()?.iter().sum::<u64>(), 6);
/// # Ok(())
/// # }
/// ```
pub struct SharedVec<T> {
    /// Its segment, with the lock slot's address kept beside it: every push takes the lock.
    place: Place<NoRedis, LockAnchor<true>>,
    _elements: PhantomData<fn(T) -> T>,
}

impl<T> Clone for SharedVec<T> {
    fn clone(&self) -> Self {
        SharedVec {
            place: self.place.clone(),
            _elements: PhantomData,
        }
    }
}

impl<T> fmt::Debug for SharedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedVec")
            .field("name", self.name())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<T> SharedVec<T> {
    /// The segment: a vector lives only in shared memory.
    fn shm(&self) -> &Segment {
        self.place.local().segment()
    }

    fn area(&self) -> &VecArea {
        self.shm().kind_area::<VecArea>()
    }

    /// The number of published elements.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.area().len.load(Ordering::Acquire)
    }

    /// Whether no element is published.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    place_accessors!("vector", local, typed);
}

impl<T: Pod> SharedVec<T> {
    create_constructors!("vector", local);

    /// Opens the vector `name`, checking that its elements have `T`'s size and alignment.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind),
    /// [`OpenError::TypeMismatch`](crate::OpenError::TypeMismatch).
    pub fn open(name: &str) -> Result<Self> {
        Self::checked(Place::open(name, Kind::Vec)?)
    }

    /// A vector over an already open segment (for example one from
    /// [`inspect::observe`](crate::inspect::observe)).
    ///
    /// # Errors
    ///
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind),
    /// [`OpenError::TypeMismatch`](crate::OpenError::TypeMismatch).
    pub fn from_segment(segment: Segment) -> Result<Self> {
        Self::checked(Place::from_segment(segment, Kind::Vec)?)
    }

    fn create_segment(
        name: &SegmentName,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        let blueprint = Blueprint::of::<T>(Kind::Vec, options, anonymous);
        let place = Place::create(name, &blueprint, |segment| {
            let area = segment.kind_area::<VecArea>();
            area.len.store(0, Ordering::Relaxed);
            area.element_size
                .store(size_of::<T>() as u64, Ordering::Relaxed);
            area.element_align
                .store(align_of::<T>() as u64, Ordering::Relaxed);
            Ok(())
        })?;
        Self::checked(place)
    }

    /// The vector in `place`, once its segment says its elements have `T`'s size and
    /// alignment.
    fn checked(place: Place<NoRedis>) -> Result<Self> {
        const {
            assert!(align_of::<T>() <= 4096, "elements start at a page boundary");
            assert!(
                size_of::<T>() > 0,
                "zero-sized elements take no memory to share"
            );
        };
        let segment = place.local();
        let area = segment.kind_area::<VecArea>();
        expect_type::<T>(
            segment,
            area.element_size.load(Ordering::Relaxed),
            area.element_align.load(Ordering::Relaxed),
        )?;
        Ok(SharedVec {
            place: place.map(LockAnchor::new, |never| never),
            _elements: PhantomData,
        })
    }

    /// Takes the segment's lock. A pusher that died left nothing to repair: `len` is the only
    /// commit point.
    #[inline]
    fn lock(&self) -> Result<RawGuard<'_>> {
        lock_and_repair(self.place.local(), |_| Ok(()))
    }

    /// The end of the first `len` elements (`len` read from the segment), checked to lie in
    /// the data area inside the committed size, and mapped. Readers and writers both go
    /// through here: a damaged length is [`Error::Corrupt`], never a slice past the mapping
    /// nor a push that grows the segment to wherever the length points.
    fn end_of(&self, len: u64) -> Result<u64> {
        let segment = self.shm();
        let what = || format!("the vector's {len} elements");
        len.checked_mul(size_of::<T>() as u64)
            .ok_or_else(|| segment.corrupt(format!("{} overflow", what())))
            .and_then(|bytes| segment.data_range(what, DATA_START, bytes, align_of::<T>() as u64))
    }

    /// Appends `value`.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] or [`Error::NoSpace`] if the segment cannot grow (nothing is appended);
    /// [`Error::Corrupt`] if the vector's length was damaged (nothing is written).
    #[inline]
    pub fn push(&self, value: T) -> Result<()> {
        self.extend_from_slice(std::slice::from_ref(&value))
    }

    /// Appends `values`, all under one acquisition of the lock and published at once.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] or [`Error::NoSpace`] if the segment cannot grow (nothing is appended);
    /// [`Error::Corrupt`] if the vector's length was damaged (nothing is written).
    #[inline]
    pub fn extend_from_slice(&self, values: &[T]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let segment = self.shm();
        let held = self.lock()?;
        let area = self.area();
        let len = area.len.load(Ordering::Relaxed);
        let at = self.end_of(len)?;
        // `at` is inside the committed size (at most 2^46), so the new length and end only
        // overflow for a slice no segment can hold.
        let full = || Error::Full {
            name: self.name().clone(),
            needed: u64::MAX,
            max_size: segment.max_size(),
        };
        let new_len = len.checked_add(values.len() as u64).ok_or_else(full)?;
        let end = (size_of_val(values) as u64)
            .checked_add(at)
            .ok_or_else(full)?;
        segment.grow_to(end, &held)?;
        // SAFETY: we hold the lock and `[at, end)` lies past the published length, where no
        // reader looks (see the module's `# Safety`).
        unsafe { segment.mapping().write(at, bytemuck::cast_slice(values)) }
            .ok_or_else(|| segment.corrupt(format!("elements at {at} are not mapped")))?;
        crate::failpoint::hit("vec.written");
        area.len.store(new_len, Ordering::Release);
        segment.note_writer();
        Ok(())
    }

    /// The published elements, without copying. The slice stays valid while `self` lives;
    /// elements pushed later are not in it.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the segment's length points past its size.
    pub fn as_slice(&self) -> Result<&[T]> {
        let segment = self.shm();
        let len = self.len();
        self.end_of(len)?;
        let base = segment
            .mapping()
            .pointer::<T>(DATA_START)
            .ok_or_else(|| segment.corrupt("the data area is not mapped".into()))?;
        let len =
            usize::try_from(len).map_err(|_| segment.corrupt(format!("length {len} overflows")))?;
        // SAFETY: `ensure_mapped` proved the `len` elements from DATA_START are mapped; `base`
        // is aligned (checked by `pointer`); published elements are never written again and any
        // bits are a valid `T: Pod`; the mapping outlives the borrow of `self` (module
        // `# Safety`).
        Ok(unsafe { std::slice::from_raw_parts(base.as_ptr(), len) })
    }

    /// The element at `index`, or `None` past the end.
    ///
    /// # Errors
    ///
    /// As [`SharedVec::as_slice`].
    pub fn get(&self, index: u64) -> Result<Option<T>> {
        let slice = self.as_slice()?;
        let element = usize::try_from(index)
            .ok()
            .and_then(|i| slice.get(i))
            .copied();
        // The copy may have read zeros from a page lost to a file shrunk meanwhile.
        self.shm().check_intact()?;
        Ok(element)
    }

    /// A copy of the published elements.
    ///
    /// # Errors
    ///
    /// As [`SharedVec::as_slice`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let elements = self.as_slice()?.to_vec();
        // As in `get`.
        self.shm().check_intact()?;
        Ok(elements)
    }
}

serialize_as_name!(SharedVec<T> where T: Pod);

/// The number of published elements of the vector in `segment`.
pub(crate) fn len(segment: &Segment) -> u64 {
    segment.kind_area::<VecArea>().len.load(Ordering::Acquire)
}

/// Checks that the published elements lie inside the segment.
pub(crate) fn verify(segment: &Segment, report: &mut crate::segment::Report) {
    let area = segment.kind_area::<VecArea>();
    let len = area.len.load(Ordering::Acquire);
    verify_elements(
        segment,
        len,
        area.element_size.load(Ordering::Relaxed),
        report,
    );
}

/// Checks that `len` elements of `size` bytes from the data area's start lie inside the
/// segment (a vector's, an array's).
pub(super) fn verify_elements(
    segment: &Segment,
    len: u64,
    size: u64,
    report: &mut crate::segment::Report,
) {
    match len
        .checked_mul(size)
        .and_then(|bytes| bytes.checked_add(DATA_START))
    {
        Some(end) if end <= segment.size() => {}
        _ => report.problem(format!(
            "{len} elements of {size} bytes do not fit the segment's {} bytes",
            segment.size()
        )),
    }
}
