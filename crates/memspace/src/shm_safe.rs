//! The contract a type meets to be read in place from a segment.
//!
//! Each type laid out in shared memory implements [`ShmSafe`] beside its definition, with a
//! `SAFETY` comment saying why it qualifies. Here are only the building blocks: the atomics
//! and arrays of them. Plain integers (`u32`, `u64`) are deliberately not `ShmSafe`: another
//! process may write any word of a segment at any time, so a shared reference to a plain
//! integer there would be a data race; words are read through atomics, or copied out.
//!
//! # Safety
//!
//! The `unsafe impl`s below are for fixed-width atomics, which have the layout of their
//! integer, are valid for every bit pattern, mutate atomically, own nothing and need no
//! `Drop`, and for arrays of `ShmSafe` elements, which keep those properties element-wise:
//! exactly what [`ShmSafe`] asks.

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

// SAFETY: atomics have the layout of their integer, accept any bits, and mutate atomically.
unsafe impl ShmSafe for AtomicU32 {}
// SAFETY: as for `AtomicU32`.
unsafe impl ShmSafe for AtomicU64 {}
// SAFETY: arrays of `ShmSafe` elements keep every property element-wise.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
