//! [`SharedArray<T>`]: a fixed-length array of numbers in shared memory, Python's
//! `multiprocessing.Array(typecode, n)`.
//!
//! The elements lie one after another from the start of the data area, each one a std atomic
//! of the element's width ([`Element::Atom`]), so that reading or writing an element is one
//! atomic instruction and no process ever sees half of one. Integers also have atomic
//! read-modify-writes ([`SharedArray::fetch_add`], [`SharedArray::compare_exchange`]). The
//! segment's robust lock ([`SharedArray::lock`]) is for updates of several elements that
//! must not interleave with another holder's: the element operations themselves never take
//! it.
//!
//! The segment is sized for the array when it is created and never grows; its length and the
//! element type are recorded in the kind area and checked when it is opened. A process killed
//! at any instruction leaves every element whole (the old or the new value); one killed while
//! holding the lock leaves a multi-element update half done, and the next [`lock`] is told
//! ([`LockError::OwnerDied`]).
//!
//! [`lock`]: SharedArray::lock
//!
//! # Safety
//!
//! Besides the [`ShmSafe`] promise for the kind area (`ArrayArea`, fixed-width atomics), the
//! handle keeps a pointer to its first element, and `atoms` views the `len` elements from
//! there as a slice of atomics (`std::slice::from_raw_parts`). When the handle is made, the
//! range is checked to lie in the segment and to be mapped (`Segment::data_range`), and the
//! pointer to be aligned (`Mapping::pointer`); mapped bytes never move nor unmap while the
//! segment lives (a hostile shrink of the file is caught by the `SIGBUS` handler, which keeps
//! the pages mapped: see the crate's safety model), and the handle holds the segment. Every
//! bit pattern is a valid atomic, and every access goes through the atomics, so no process
//! races a non-atomic access. The same facts make the handle `Send` and `Sync`.

#![allow(unsafe_code)]

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering,
};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::handle::{Blueprint, NoRedis, Place};
use crate::segment::{DATA_START, Kind, RawGuard, Recovery, Segment, SegmentName, SegmentOptions};
use crate::shm_safe::ShmSafe;
use crate::sync::{
    AcquireError, LockError, TryLockError, acquire, expect_type, lock_and_repair, type_mismatch,
};
use crate::sys::Wait;

#[repr(C)]
struct ArrayArea {
    len: AtomicU64,
    element_size: AtomicU64,
    element_align: AtomicU64,
    /// The element type, as Python's `array` typecode (`b'q'` for `i64`, `b'd'` for `f64`).
    typecode: AtomicU64,
}

// SAFETY: `#[repr(C)]`, fixed-width atomics only: any bits are valid, every change is atomic,
// nothing to drop.
unsafe impl ShmSafe for ArrayArea {}

const _: () = assert!(size_of::<ArrayArea>() == 32);

mod sealed {
    /// What an [`Element`](super::Element) is made of: the atomic it is kept in, its typecode
    /// and its atomic operations. Private, so that no other type can be an element, and none
    /// of it is public API.
    pub trait Sealed: Sized {
        /// The atomic an element is kept in: the same size as `Self`, at least its alignment.
        type Atom: Sync;
        /// Python's `array` typecode of the type.
        const TYPECODE: u8;
        fn load(atom: &Self::Atom) -> Self;
        fn store(atom: &Self::Atom, value: Self);
        fn swap(atom: &Self::Atom, value: Self) -> Self;
        /// Writes `new` if the element is `current` (a float: has the same bits).
        fn compare_exchange(atom: &Self::Atom, current: Self, new: Self) -> Result<Self, Self>;
    }

    /// The atomic additions of an [`Integer`](super::Integer) (wrapping).
    pub trait SealedInteger: Sealed {
        fn fetch_add(atom: &Self::Atom, value: Self) -> Self;
        fn fetch_sub(atom: &Self::Atom, value: Self) -> Self;
    }
}

use self::sealed::{Sealed, SealedInteger};

/// A number a [`SharedArray`] can hold: the integers of 8 to 64 bits (Python's typecodes `b`,
/// `B`, `h`, `H`, `i`, `I`, `q`, `Q`) and `f32`, `f64` (`f`, `d`). Each is kept as the std
/// atomic of its width; a float as the bits of its IEEE value.
pub trait Element: Pod + Sealed {}

/// An integer [`Element`]: it also has atomic additions and subtractions, which wrap around
/// at the type's bounds as the machine's do (and as a C integer in Python's `Array` does).
pub trait Integer: Element + SealedInteger {}

macro_rules! integer_elements {
    ($($int:ty => $atom:ty, $code:literal);+) => {$(
        const _: () = assert!(size_of::<$int>() == size_of::<$atom>());
        const _: () = assert!(align_of::<$int>() <= align_of::<$atom>());

        impl Sealed for $int {
            type Atom = $atom;
            const TYPECODE: u8 = $code;

            fn load(atom: &$atom) -> Self {
                atom.load(Ordering::Acquire)
            }

            fn store(atom: &$atom, value: Self) {
                atom.store(value, Ordering::Release);
            }

            fn swap(atom: &$atom, value: Self) -> Self {
                atom.swap(value, Ordering::AcqRel)
            }

            fn compare_exchange(
                atom: &$atom,
                current: Self,
                new: Self,
            ) -> std::result::Result<Self, Self> {
                atom.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
            }
        }

        impl SealedInteger for $int {
            fn fetch_add(atom: &$atom, value: Self) -> Self {
                atom.fetch_add(value, Ordering::AcqRel)
            }

            fn fetch_sub(atom: &$atom, value: Self) -> Self {
                atom.fetch_sub(value, Ordering::AcqRel)
            }
        }

        impl Element for $int {}
        impl Integer for $int {}
    )+};
}

integer_elements!(
    i8 => AtomicI8, b'b'; u8 => AtomicU8, b'B'; i16 => AtomicI16, b'h'; u16 => AtomicU16, b'H';
    i32 => AtomicI32, b'i'; u32 => AtomicU32, b'I'; i64 => AtomicI64, b'q'; u64 => AtomicU64, b'Q'
);

macro_rules! float_elements {
    ($($float:ty => $atom:ty, $code:literal);+) => {$(
        const _: () = assert!(size_of::<$float>() == size_of::<$atom>());
        const _: () = assert!(align_of::<$float>() <= align_of::<$atom>());

        impl Sealed for $float {
            type Atom = $atom;
            const TYPECODE: u8 = $code;

            fn load(atom: &$atom) -> Self {
                <$float>::from_bits(atom.load(Ordering::Acquire))
            }

            fn store(atom: &$atom, value: Self) {
                atom.store(value.to_bits(), Ordering::Release);
            }

            fn swap(atom: &$atom, value: Self) -> Self {
                <$float>::from_bits(atom.swap(value.to_bits(), Ordering::AcqRel))
            }

            fn compare_exchange(
                atom: &$atom,
                current: Self,
                new: Self,
            ) -> std::result::Result<Self, Self> {
                atom.compare_exchange(
                    current.to_bits(),
                    new.to_bits(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .map(<$float>::from_bits)
                .map_err(<$float>::from_bits)
            }
        }

        impl Element for $float {}
    )+};
}

float_elements!(f32 => AtomicU32, b'f'; f64 => AtomicU64, b'd');

/// A fixed-length array of numbers in shared memory, read and written element by element
/// with atomic operations by any thread or process: Python's `multiprocessing.Array`.
///
/// Pick it for a fixed set of counters, flags or samples that processes update in place.
/// [`SharedVec<T>`](crate::SharedVec) is the growable one: append-only, with zero-copy reads
/// of the published elements, which are never written again. For values of any `serde` type,
/// use a [`SharedList`](crate::SharedList).
///
/// Indexes past the end are [`Error::IndexOutOfRange`], never a panic.
///
/// # Examples
///
/// ```
/// # fn main() -> memspace::Result<()> {
/// use memspace::collections::SharedArray;
///
/// let hits = SharedArray::<u64>::new(4)?;
/// hits.fetch_add(2, 5)?;
/// hits.set(0, 1)?;
/// assert_eq!(hits.to_vec()?, [1, 0, 5, 0]);
/// // Several elements at once, excluding other holders of the lock:
/// let held = hits.lock().expect("lock");
/// let total: u64 = held.to_vec()?.iter().sum();
/// held.fill(0)?;
/// held.set(3, total)?;
/// drop(held);
/// assert_eq!(hits.to_vec()?, [0, 0, 0, 6]);
/// # Ok(())
/// # }
/// ```
pub struct SharedArray<T: Element> {
    place: Place<NoRedis>,
    /// The first element, in the mapping `place` holds (see the module's `# Safety`).
    first: NonNull<T::Atom>,
    /// The number of elements, read from the segment and checked to fit it once, when the
    /// handle was made: the length never changes.
    len: usize,
}

// SAFETY: the handle holds an `Arc` of its segment and a pointer to atomics in that
// segment's mapping, which stay mapped while the segment lives and are only read and written
// atomically through `&` (module `# Safety`).
unsafe impl<T: Element> Send for SharedArray<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Element> Sync for SharedArray<T> {}

impl<T: Element> Clone for SharedArray<T> {
    fn clone(&self) -> Self {
        SharedArray {
            place: self.place.clone(),
            first: self.first,
            len: self.len,
        }
    }
}

impl<T: Element + fmt::Debug> fmt::Debug for SharedArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedArray")
            .field("name", self.name())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<T: Element> SharedArray<T> {
    /// The segment: an array lives only in shared memory.
    fn shm(&self) -> &Segment {
        self.place.local()
    }

    /// The number of elements (fixed when the array was created).
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether the array has no elements.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A pointer to the first element, for code that reads and writes the elements in place
    /// rather than through the handle: Python's buffer protocol (`memoryview`,
    /// `numpy.frombuffer`), a C library, a SIMD loop.
    ///
    /// The [`len`](Self::len) elements lie one after another from there, aligned for `T`. They
    /// stay mapped while any clone of this handle lives (the pointer must not be used after
    /// the last one is dropped), and other threads and processes change them at any moment:
    /// dereferencing the pointer is `unsafe`, and a plain (non-atomic) read may race a write.
    /// Reads and writes of one element through the handle are atomic; through the pointer
    /// they are whatever the caller's code makes them.
    #[must_use]
    pub fn as_ptr(&self) -> *mut T {
        self.first.as_ptr().cast::<T>()
    }

    place_accessors!("array", local, typed);
}

impl<T: Element> SharedArray<T> {
    /// An anonymous array of `len` zeros, removed when the last process using it drops its
    /// handles.
    ///
    /// # Errors
    ///
    /// What the system refuses when creating the segment (no space, permissions).
    pub fn new(len: u64) -> Result<Self> {
        Self::create_segment(
            &SegmentName::anonymous(),
            len,
            None,
            &SegmentOptions::new(),
            true,
        )
    }

    /// An anonymous array holding a copy of `values`.
    ///
    /// # Errors
    ///
    /// As [`SharedArray::new`].
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let len = values.len() as u64;
        let options = SegmentOptions::new();
        Self::create_segment(&SegmentName::anonymous(), len, Some(values), &options, true)
    }

    /// Creates the array `name` of `len` zeros, which persists until removed
    /// (`memspace rm NAME`, `unlink`).
    ///
    /// # Errors
    ///
    /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists),
    /// [`OpenError::InvalidName`](crate::OpenError::InvalidName), or what the system refuses.
    pub fn create(name: &str, len: u64) -> Result<Self> {
        Self::create_with(name, len, &SegmentOptions::new())
    }

    /// Creates the array `name` of `len` zeros with `options` (its mode; its size is the
    /// array's, whatever the options say).
    ///
    /// # Errors
    ///
    /// As [`SharedArray::create`].
    pub fn create_with(name: &str, len: u64, options: &SegmentOptions) -> Result<Self> {
        Self::create_segment(&SegmentName::new(name)?, len, None, options, false)
    }

    /// Creates the array `name` holding a copy of `values`.
    ///
    /// # Errors
    ///
    /// As [`SharedArray::create`].
    pub fn create_from(name: &str, values: &[T]) -> Result<Self> {
        let options = SegmentOptions::new();
        Self::create_segment(
            &SegmentName::new(name)?,
            values.len() as u64,
            Some(values),
            &options,
            false,
        )
    }

    /// Opens the array `name`, checking that it holds elements of `T`.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`](crate::OpenError::NotFound),
    /// [`OpenError::WrongKind`](crate::OpenError::WrongKind),
    /// [`OpenError::TypeMismatch`](crate::OpenError::TypeMismatch) (another element type, even
    /// one of the same size: an `f32` array is not a `u32` one).
    pub fn open(name: &str) -> Result<Self> {
        Self::checked(Place::open(name, Kind::Array)?)
    }

    /// An array over an already open segment (for example one opened with
    /// [`SegmentOptions::open`], which can accept another user's segment).
    ///
    /// # Errors
    ///
    /// As [`SharedArray::open`].
    pub fn from_segment(segment: Segment) -> Result<Self> {
        Self::checked(Place::from_segment(segment, Kind::Array)?)
    }

    fn create_segment(
        name: &SegmentName,
        len: u64,
        values: Option<&[T]>,
        options: &SegmentOptions,
        anonymous: bool,
    ) -> Result<Self> {
        let largest = crate::segment::MAX_RESERVATION;
        let too_long = || Error::Full {
            name: name.clone(),
            needed: len
                .saturating_mul(size_of::<T>() as u64)
                .saturating_add(DATA_START),
            max_size: largest,
        };
        let size = len
            .checked_mul(size_of::<T>() as u64)
            .and_then(|bytes| bytes.checked_add(DATA_START))
            .filter(|&size| size <= largest)
            .ok_or_else(too_long)?;
        let options = options.clone().initial_size(size).max_size(size);
        let blueprint = Blueprint::of::<T>(Kind::Array, &options, anonymous);
        let place = Place::create(name, &blueprint, |segment| {
            let area = segment.kind_area::<ArrayArea>();
            area.len.store(len, Ordering::Relaxed);
            area.element_size
                .store(size_of::<T>() as u64, Ordering::Relaxed);
            area.element_align
                .store(align_of::<T>() as u64, Ordering::Relaxed);
            area.typecode
                .store(u64::from(T::TYPECODE), Ordering::Relaxed);
            if let Some(values) = values {
                let (first, len) = elements::<T>(segment, len)?;
                // SAFETY: `elements` checked the range (module `# Safety`); the segment lives
                // through this closure.
                let atoms = unsafe { std::slice::from_raw_parts(first.as_ptr(), len) };
                for (atom, &value) in atoms.iter().zip(values) {
                    T::store(atom, value);
                }
            }
            Ok(())
        })?;
        Self::checked(place)
    }

    /// The array in `place`, once its segment says it holds `T`s and its elements fit it.
    fn checked(place: Place<NoRedis>) -> Result<Self> {
        const {
            assert!(
                DATA_START.is_multiple_of(align_of::<T>() as u64),
                "elements start at the data area"
            );
        };
        let segment = place.local();
        let area = segment.kind_area::<ArrayArea>();
        expect_type::<T>(
            segment,
            area.element_size.load(Ordering::Relaxed),
            area.element_align.load(Ordering::Relaxed),
        )?;
        // Same size, another type (`u32` and `f32`): the typecode tells them apart.
        if area.typecode.load(Ordering::Relaxed) != u64::from(T::TYPECODE) {
            return Err(type_mismatch::<T>(
                segment.name(),
                segment.type_name(),
                size_of::<T>() as u64,
            ));
        }
        let (first, len) = elements::<T>(segment, area.len.load(Ordering::Relaxed))?;
        Ok(SharedArray { place, first, len })
    }

    /// The elements, as the atomics they are kept in.
    fn atoms(&self) -> &[T::Atom] {
        // SAFETY: `first` and `len` were checked when the handle was made, and the handle
        // holds the mapping (module `# Safety`).
        unsafe { std::slice::from_raw_parts(self.first.as_ptr(), self.len) }
    }

    /// The atomic of element `index`.
    fn atom(&self, index: u64) -> Result<&T::Atom> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.atoms().get(i))
            .ok_or_else(|| Error::IndexOutOfRange {
                name: self.name().clone(),
                index,
                len: self.len as u64,
            })
    }

    /// The element at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] past the end; [`Error::Corrupt`] if the segment's file was
    /// shrunk under this process (see the crate's safety model).
    pub fn get(&self, index: u64) -> Result<T> {
        let value = T::load(self.atom(index)?);
        self.shm().check_intact()?;
        Ok(value)
    }

    /// Writes `value` at `index`.
    ///
    /// # Errors
    ///
    /// As [`SharedArray::get`].
    pub fn set(&self, index: u64, value: T) -> Result<()> {
        T::store(self.atom(index)?, value);
        self.wrote()
    }

    /// Writes `value` at `index` and returns the element it replaced.
    ///
    /// # Errors
    ///
    /// As [`SharedArray::get`].
    pub fn swap(&self, index: u64, value: T) -> Result<T> {
        let old = T::swap(self.atom(index)?, value);
        self.wrote()?;
        Ok(old)
    }

    /// Writes `new` at `index` if the element there is `current` (a float: has the same
    /// bits). `Ok(Ok(current))` if it was written, `Ok(Err(actual))` with the element found
    /// if not.
    ///
    /// # Errors
    ///
    /// As [`SharedArray::get`].
    pub fn compare_exchange(
        &self,
        index: u64,
        current: T,
        new: T,
    ) -> Result<std::result::Result<T, T>> {
        let outcome = T::compare_exchange(self.atom(index)?, current, new);
        self.wrote()?;
        Ok(outcome)
    }

    /// Every element written with `value`, one after another (a reader may see some written
    /// and others not yet: hold the [`lock`](SharedArray::lock) on both sides to exclude that).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the segment's file was shrunk under this process.
    pub fn fill(&self, value: T) -> Result<()> {
        for atom in self.atoms() {
            T::store(atom, value);
        }
        self.wrote()
    }

    /// A copy of the elements, read one after another.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the segment's file was shrunk under this process (the copy
    /// would hold zeros).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let values = self.atoms().iter().map(T::load).collect();
        self.shm().check_intact()?;
        Ok(values)
    }

    /// Writes `values` over the elements, one after another.
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] if `values` has another length than the array (nothing is
    /// written).
    pub fn copy_from_slice(&self, values: &[T]) -> Result<()> {
        let atoms = self.atoms();
        if atoms.len() != values.len() {
            return Err(Error::LengthMismatch {
                name: self.name().clone(),
                len: atoms.len() as u64,
                given: values.len() as u64,
            });
        }
        for (atom, &value) in atoms.iter().zip(values) {
            T::store(atom, value);
        }
        self.wrote()
    }

    /// Records the write, and reports a segment whose file was shrunk under this process.
    fn wrote(&self) -> Result<()> {
        let segment = self.shm();
        segment.note_writer();
        segment.check_intact()
    }

    /// Takes the array's robust lock, for updates of several elements that no other holder of
    /// the lock may see half done (Python's `Array.get_lock()`). The guard dereferences to the
    /// array. Element operations that do not take the lock are not held back by it.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] with the guard if the previous holder died holding the lock:
    /// its update may be half done; set things right, then call
    /// [`ArrayGuard::mark_consistent`]. [`LockError::Poisoned`] if a holder panicked. The
    /// other [`LockError`]s if the lock cannot be had.
    pub fn lock(&self) -> std::result::Result<ArrayGuard<'_, T>, LockError<ArrayGuard<'_, T>>> {
        self.acquire(Wait::Forever)
    }

    /// As [`SharedArray::lock`], but gives up with [`TryLockError::WouldBlock`] if another
    /// holder has it.
    ///
    /// # Errors
    ///
    /// As [`SharedArray::lock`], and `WouldBlock`.
    pub fn try_lock(
        &self,
    ) -> std::result::Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        self.acquire(Wait::Never)
    }

    /// As [`SharedArray::lock`], but gives up with [`TryLockError::Timeout`] after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`SharedArray::lock`], and `Timeout`.
    pub fn try_lock_for(
        &self,
        timeout: std::time::Duration,
    ) -> std::result::Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        self.acquire(Wait::For(timeout))
    }

    fn acquire<'a, E: AcquireError<ArrayGuard<'a, T>>>(
        &'a self,
        wait: Wait,
    ) -> std::result::Result<ArrayGuard<'a, T>, E> {
        acquire(self.shm(), wait, |raw, recovery| ArrayGuard {
            array: self,
            raw,
            recovery,
        })
    }

    /// Runs `update` holding the lock, and returns what it returns. A previous holder that
    /// died (or panicked) holding the lock is not reported: `update` carries on with the
    /// elements as they are, as with Python's `with arr.get_lock():`. Use
    /// [`lock`](SharedArray::lock) to be told.
    ///
    /// # Errors
    ///
    /// If the lock cannot be had (a damaged lock word, for example).
    pub fn with_lock<R>(&self, update: impl FnOnce(&ArrayGuard<'_, T>) -> R) -> Result<R> {
        // Nothing to repair: the holder's elements stay as they are.
        let raw = lock_and_repair(self.shm(), |_| Ok(()))?;
        let guard = ArrayGuard {
            array: self,
            raw,
            recovery: Recovery::Clean,
        };
        Ok(update(&guard))
    }
}

impl<T: Integer> SharedArray<T> {
    /// Adds `value` to the element at `index` (wrapping at `T`'s bounds); returns the element
    /// before.
    ///
    /// # Errors
    ///
    /// As [`SharedArray::get`].
    pub fn fetch_add(&self, index: u64, value: T) -> Result<T> {
        let old = T::fetch_add(self.atom(index)?, value);
        self.wrote()?;
        Ok(old)
    }

    /// Subtracts `value` from the element at `index` (wrapping at `T`'s bounds); returns the
    /// element before.
    ///
    /// # Errors
    ///
    /// As [`SharedArray::get`].
    pub fn fetch_sub(&self, index: u64, value: T) -> Result<T> {
        let old = T::fetch_sub(self.atom(index)?, value);
        self.wrote()?;
        Ok(old)
    }
}

serialize_as_name!(SharedArray<T> where T: Element);

/// The first of the `len` elements of `T` from the start of `segment`'s data area, and their
/// number: checked to lie in the segment, mapped, and aligned for `T::Atom` (see the module's
/// `# Safety`).
fn elements<T: Element>(segment: &Segment, len: u64) -> Result<(NonNull<T::Atom>, usize)> {
    let what = || format!("the array's {len} elements");
    let bytes = len
        .checked_mul(size_of::<T>() as u64)
        .ok_or_else(|| segment.corrupt(format!("{} overflow", what())))?;
    segment.data_range(what, DATA_START, bytes, align_of::<T::Atom>() as u64)?;
    let count =
        usize::try_from(len).map_err(|_| segment.corrupt(format!("{} overflow", what())))?;
    let first = segment
        .mapping()
        .pointer::<T::Atom>(DATA_START)
        .ok_or_else(|| segment.corrupt("the data area is not mapped".into()))?;
    Ok((first, count))
}

/// The array held under its lock: dereferences to the [`SharedArray`], whose operations it
/// makes part of one update no other holder interleaves with. The lock is released when the
/// guard is dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Element> {
    array: &'a SharedArray<T>,
    raw: RawGuard<'a>,
    recovery: Recovery,
}

impl<T: Element> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("array", self.array.name())
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

impl<T: Element> Deref for ArrayGuard<'_, T> {
    type Target = SharedArray<T>;

    fn deref(&self) -> &SharedArray<T> {
        self.array
    }
}

impl<T: Element> ArrayGuard<'_, T> {
    /// If this acquisition took over from a holder that died, the pid that held it.
    #[must_use]
    pub fn previous_owner_died(&self) -> Option<u32> {
        match self.recovery {
            Recovery::OwnerDied { pid } => Some(pid),
            Recovery::Clean => None,
        }
    }

    /// After [`LockError::OwnerDied`]: declares the elements set right.
    ///
    /// # Errors
    ///
    /// An I/O error if the lock was not acquired from a dead owner.
    pub fn mark_consistent(&self) -> std::io::Result<()> {
        self.raw.mark_consistent()
    }

    /// After [`LockError::Poisoned`]: clears the poison flag for every process.
    pub fn clear_poison(&self) {
        self.raw.clear_poison();
    }

    /// After [`LockError::OwnerDied`], when the elements cannot be set right: releases the
    /// lock without declaring them consistent, and without making the lock unrecoverable (as
    /// dropping the guard would). The next locker is told [`LockError::OwnerDied`] again.
    pub fn unlock_unrepaired(self) {
        self.raw.unlock_unrepaired();
    }
}

/// The number of elements of the array in `segment`.
pub(crate) fn len(segment: &Segment) -> u64 {
    segment.kind_area::<ArrayArea>().len.load(Ordering::Relaxed)
}

/// Checks that the elements lie inside the segment.
pub(crate) fn verify(segment: &Segment, report: &mut crate::segment::Report) {
    let area = segment.kind_area::<ArrayArea>();
    let (len, size) = (&area.len, &area.element_size);
    let (len, size) = (len.load(Ordering::Relaxed), size.load(Ordering::Relaxed));
    super::vec::verify_elements(segment, len, size, report);
}
