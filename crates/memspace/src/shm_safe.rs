//! The contract a type meets to be read in place from a segment.
//!
//! # Safety
//!
//! The `unsafe impl`s below are for fixed-width integers, their atomics, and the segment
//! header (a `#[repr(C)]` struct of atomics), which are
//! `#[repr(transparent)]` or primitive, valid for every bit pattern, own nothing and need no
//! `Drop`: exactly what [`ShmSafe`] asks.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64};

/// Types that may live in a segment and be read while other processes write to it.
///
/// # Safety
///
/// Implementors guarantee that:
/// * the type is `#[repr(C)]` or `#[repr(transparent)]` and has the same layout in every process
///   (fixed-width integers; no `usize`, pointers, references, `bool` or enums);
/// * every bit pattern is a valid value (a crashed writer can leave anything behind);
/// * all mutation goes through atomics, or through `UnsafeCell` under one of our locks;
/// * the type needs no `Drop` and owns nothing outside the segment (offsets, not pointers).
pub(crate) unsafe trait ShmSafe: Sync {}

// SAFETY: primitive fixed-width integers: any bits are valid, no drop, no pointers; shared
// references to them are only formed over memory nobody mutates non-atomically (header fields
// written once before the segment is published as ready).
unsafe impl ShmSafe for u32 {}
// SAFETY: as for `u32`.
unsafe impl ShmSafe for u64 {}
// SAFETY: atomics have the layout of their integer, accept any bits, and mutate atomically.
unsafe impl ShmSafe for AtomicU32 {}
// SAFETY: as for `AtomicU32`.
unsafe impl ShmSafe for AtomicU64 {}
// SAFETY: arrays of `ShmSafe` elements keep every property element-wise.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
// SAFETY: `#[repr(C)]`, only fixed-width atomics (any bits valid, atomic mutation, no drop).
unsafe impl ShmSafe for crate::segment::Header {}
// SAFETY: `#[repr(C)]` structs of atomics only.
unsafe impl ShmSafe for crate::segment::Users {}
// SAFETY: as above.
unsafe impl ShmSafe for crate::segment::Meta {}
// SAFETY: `#[repr(C)]`, atomics only.
unsafe impl ShmSafe for crate::sync::LockSlot {}
// SAFETY: as above.
unsafe impl ShmSafe for crate::sync::EventArea {}
// SAFETY: as above.
unsafe impl ShmSafe for crate::sync::ValueShape {}
// SAFETY: as above.
unsafe impl ShmSafe for crate::sync::CondvarArea {}
// SAFETY: as above (the holder slots are `#[repr(C)]` atomics too).
unsafe impl ShmSafe for crate::sync::SemaphoreArea {}
// SAFETY: as above.
unsafe impl ShmSafe for crate::sync::BarrierArea {}
// SAFETY: as above.
unsafe impl ShmSafe for crate::sync::RwLockArea {}
// SAFETY: as above.
unsafe impl ShmSafe for crate::collections::VecArea {}
// SAFETY: as above.
unsafe impl ShmSafe for crate::collections::QueueArea {}
// SAFETY: as above.
unsafe impl ShmSafe for crate::collections::QueueEntry {}
