//! Futexes: sleeping while a shared word holds a value, and waking the sleepers, across
//! processes (no `FUTEX_PRIVATE_FLAG`).
//!
//! # Safety
//!
//! A futex on the low half of a 64-bit word ([`futex_wait_low_half`]) takes a reference to
//! that half as an `AtomicU32`. It relies on one invariant: memspace never loads or stores
//! through such a reference, which only carries the half's address to the kernel, so Rust code
//! never mixes 32- and 64-bit accesses to one word.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

/// How long a lock attempt may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    Forever,
    Never,
    For(Duration),
}

/// How a [`futex_wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// Woken by a `futex_wake`, or spuriously: re-check the condition.
    Notified,
    /// The word did not hold the expected value: re-check the condition.
    Changed,
    /// The timeout passed.
    TimedOut,
}

/// Sleeps while `word` holds `expected`, at most `timeout`. The futex is *shared* (no
/// `FUTEX_PRIVATE_FLAG`), so wakers in other processes that map the same memory reach it.
#[doc(alias = "FUTEX_WAIT")]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Woken {
    use rustix::thread::futex;
    let timespec = timeout.map(|t| futex::Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match futex::wait(word, futex::Flags::empty(), expected, timespec.as_ref()) {
        Ok(()) | Err(rustix::io::Errno::INTR) => Woken::Notified,
        // EFAULT: the word's page lies past the end of a file a peer shrank; the caller's next
        // access to it faults, the fault handler replaces the page (see `watch_mapping`), and
        // the segment reports the damage. Re-check, as after any change of the word.
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::FAULT) => Woken::Changed,
        Err(rustix::io::Errno::TIMEDOUT) => Woken::TimedOut,
        // EINVAL: the word is ours, mapped and aligned (`Mapping::get` checked), so this is a
        // bug in memspace, not a condition to handle.
        Err(e) => panic!("futex wait failed: {e}"),
    }
}

/// Wakes at most `count` threads sleeping on `word`, in any process; returns how many woke.
#[doc(alias = "FUTEX_WAKE")]
pub(crate) fn futex_wake(word: &AtomicU32, count: u32) -> usize {
    use rustix::thread::futex;
    // The kernel reads the count as a signed int: u32::MAX would be -1 and wake just one.
    let count = count.min(i32::MAX.unsigned_abs());
    futex::wake(word, futex::Flags::empty(), count).unwrap_or(0)
}

/// [`futex_wait`] by a sleeper that counts itself in `sleepers` for the time of its sleep, so
/// that [`futex_wake_counted`] makes a system call only when someone sleeps, or is about to.
///
/// The count goes up, a fence, then `word` is compared: a waker changes `word`, fences, then
/// reads the count. Of two such sequences one sees the other's write, so either this sleeper
/// sees the change (and does not sleep), or the waker sees the count (and wakes it). A sleeper
/// killed while counted leaves the count one too high for good: wakers then make the call
/// every time, as if nobody counted.
///
/// `intact` says whether the mapping still has its pages: one lost to a file shrunk under it
/// reads as zeros of this process's own, which nobody would wake a sleep on (`Changed` then,
/// and the caller's next look reports the damage).
pub(crate) fn futex_wait_counted(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
    intact: impl FnOnce() -> bool,
) -> Woken {
    sleepers.fetch_add(1, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    let woken = if intact() && word.load(Ordering::Relaxed) == expected {
        futex_wait(word, expected, timeout)
    } else {
        Woken::Changed
    };
    sleepers.fetch_sub(1, Ordering::Relaxed);
    woken
}

/// Wakes at most `count` sleepers of [`futex_wait_counted`] on `word`, after the caller changed
/// `word`; no system call when none is counted in `sleepers`. Returns how many woke.
pub(crate) fn futex_wake_counted(word: &AtomicU32, sleepers: &AtomicU32, count: u32) -> usize {
    fence(Ordering::SeqCst);
    if sleepers.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    futex_wake(word, count)
}

/// The 32 bits of `word` that futex calls on it compare and wake on: its low half (the first
/// four bytes on a little-endian machine, the last four on a big-endian one).
fn low_half(word: &AtomicU64) -> &AtomicU32 {
    let half = word
        .as_ptr()
        .cast::<AtomicU32>()
        .wrapping_add(usize::from(cfg!(target_endian = "big")));
    // SAFETY: (1) `word` is a live, 8-aligned `AtomicU64`, so `half` is a live, 4-aligned
    // 4-byte location inside it, valid for the borrow; (2) `AtomicU32` has `u32`'s size and
    // alignment, and lives in an `UnsafeCell` as the 64-bit atomic does, so the two may alias;
    // (3) the reference only carries the address to the kernel (see the module's `# Safety`):
    // no Rust code accesses the half, and the kernel reads it atomically.
    unsafe { &*half }
}

/// [`futex_wait`] on the low half of a 64-bit word (see [`futex_wake_low_half`]): sleeps
/// while those 32 bits hold `expected`.
pub(crate) fn futex_wait_low_half(
    word: &AtomicU64,
    expected: u32,
    timeout: Option<Duration>,
) -> Woken {
    futex_wait(low_half(word), expected, timeout)
}

/// [`futex_wake`] on the low half of a 64-bit word: for a word whose low 32 bits are what
/// sleepers wait on and whose high 32 bits carry more about it, changed together by 64-bit
/// compare-and-swaps (a lock word and its holder's start time, a queue's futex word and its
/// count of sleepers).
pub(crate) fn futex_wake_low_half(word: &AtomicU64, count: u32) -> usize {
    futex_wake(low_half(word), count)
}
