//! The engine of [`PodQueue`](super::PodQueue): its words in the segment, and the puts and
//! gets made on them without the segment's lock. It knows items as bytes of the size the
//! segment records, so `inspect` checks a queue without knowing its type.
//!
//! # Layout
//!
//! ```text
//! kind area:  fixed     capacity (a power of two), item size and alignment, closed
//!             tail      the next position a put claims                 (a 128-byte line)
//!             head      the next position a get takes                  (a 128-byte line)
//!             getters   the futex word getters sleep on                (a 128-byte line)
//!             putters   the futex word putters sleep on                (a 128-byte line)
//! data area:  capacity slots of [state][stamp][item words][padding], every one a u64
//! ```
//!
//! A slot takes a 64-byte cache line (or whole lines, for items over 48 bytes): a put filling
//! one slot and a get emptying the one before do not take each other's line. Measured between
//! two processes (`u64` items, one per call), lines of their own moved 10–14 M items a second
//! where 16-byte slots moved 7–10 M; batches were as fast either way.
//!
//! Positions count every put since the queue was made; position `p` lives in slot
//! `p mod capacity`, in its `p / capacity`th *lap*. Producers touch `tail`, consumers `head`,
//! each on a line of its own, so the two sides share only the slots they hand over.
//!
//! # A slot's state word
//!
//! `lap (40 bits) | owner pid (22 bits) | phase (2 bits)`, for the position of that lap:
//!
//! ```text
//! EMPTY(lap)            free for the position of `lap`
//!   -> WRITING(lap, pid)  claimed by a put of process `pid`      (compare-and-swap)
//!   -> FULL(lap)          the item is ready                       (store)
//!   -> READING(lap, pid)  taken by a get of process `pid`        (compare-and-swap; a store
//!                                                                  after a batch's first)
//!   -> EMPTY(lap + 1)     done: free for the position one lap on  (store)
//! EMPTY(lap) with owner 1 (`CLOSED_HERE`): free, and a get reported the queue closed here
//! ```
//!
//! Only a claim is contended, and it is a compare-and-swap on the slot itself: exactly one put wins
//! a free slot and exactly one get a full one (the slots after the first of a get's batch are not
//! contended: see below). The state names the claimant, and the claimant then writes its *stamp*
//! into the slot's second word: the claim (its pid, whether it is a get's, the low 9 bits of its
//! lap) and the low 32 bits of its process's start time. The claims of a slot are a put's and a
//! get's in turn, so the stamp the claim before left never names the current claim. So a slot whose
//! claimant died is recognised, even once its pid is reused, and its claim settled (below).
//!
//! * **A put** claims the slot of `tail` (a batch: the free slots after it too), moves `tail`
//!   past them (`fetch_max`), writes the items and stores `FULL`. A put that finds the slot of
//!   `tail` claimed by another put that has not moved `tail` yet (descheduled, or stopped)
//!   moves `tail` on itself, so no put waits for another. The claim is a compare-and-swap
//!   from the free state, made without reading the slot first: unless the queue is full, the
//!   slot's line is in the cache of the get that freed it a lap before, and a read before the
//!   swap would fetch it twice, once to share and once to own. A get reads first, since it
//!   spins on the slot while the queue is empty, and a swap that fails takes the line from the
//!   put about to fill it.
//! * **A get** claims the slot of `head`, copies the item out, stores `EMPTY(lap + 1)`, then
//!   advances `head`. Gets go one at a time: a get finding the slot of `head` being read waits
//!   for that get to finish, so that a get killed half-way is found at `head` by the next. (A
//!   `try_get` can so report the queue empty while another get takes the item at its front.)
//!   A batch claims the ready slots after the one at `head` with stores: no other get reaches
//!   them before this one frees the slot at `head`, which it does after its claims, and no one
//!   else changes a ready slot (puts claim free slots, settlers and takers swap from a claim,
//!   the closed mark from a free slot). A swap each would cost one locked instruction per
//!   item: batches of `u64` between two processes move 32–37 M items a second with stores,
//!   26–31 M with swaps (a 2.1 GHz virtual machine). The store is a release after an acquire
//!   load: a get that takes over a dead get's claim acquires it, and so sees the bytes the put
//!   released.
//! * A call that finds its position done already moves it on, with a compare-and-swap, and
//!   looks again: its `tail` or `head` was read before another call moved it, or a get freed
//!   the slot (and a put may have claimed it for the next lap) and has not moved `head` yet.
//! * **Closing.** A put looks at `closed` before its claim. A get that finds the slot of `head`
//!   free in a closed queue marks it `CLOSED_HERE` with a compare-and-swap before it reports
//!   the queue closed: a put that claimed the slot first makes the swap fail (its item is
//!   coming), and one that comes later finds the mark and fails. So no put succeeds after a
//!   get reported the queue closed and empty.
//!
//! # Crash safety
//!
//! A put or a get killed at any instruction leaves a slot claimed by a dead process, or
//! nothing:
//!
//! * **A put killed before its `FULL`**: its item was never put (the put did not return).
//!   Whoever waits on the slot (the next get at `head`, or a put waiting for room a lap later)
//!   and finds its owner dead stores `EMPTY(lap + 1)`: the position is skipped, and the queue
//!   goes on.
//! * **A get killed before its `EMPTY(lap + 1)`**: the item is still whole in the slot (a get
//!   only reads it) and the get did not return it. The next get at `head` finds the owner
//!   dead, takes the claim over (a compare-and-swap from the very word it judged) and returns
//!   the item itself: no item is lost or returned twice.
//! * **Killed after its last store** (`tail` or `head` not yet moved): the next call finds the
//!   position done and moves it on.
//!
//! A settler clears the dead claimant's stamp (a compare-and-swap from the stamp it judged)
//! before it settles the state, and settles only if that swap succeeded: a dead claimant's
//! stamp never comes back, so of two settlers that judged the same claim one settles, even
//! when the first took the claim over under the dead one's pid (reused), which makes a state
//! word equal to the dead one's.
//!
//! A claimant is judged dead when the kernel says no such process exists, or it is a zombie
//! whose threads have all ended (a process whose main thread ended while others run is
//! alive), or when the process of that pid started at another time than the slot's stamp
//! says. A waiter looks after its first pause on the slot, then at growing intervals, and
//! before it gives up (a `try_` call, or a timeout); only a
//! definite answer condemns, and only when every user of the segment shares this process's
//! pid namespace (a pid from a container means someone else here). So a queue that a process
//! of another pid namespace uses waits for a dead claimant for ever: its timed calls time
//! out. A claim not stamped yet (its claimant stopped between the claim and the stamp) is
//! judged by the kernel's answer alone. Writing the stamp costs a store per claim: batches of
//! `u64` between two processes went from about 90 M to 72–74 M items a second with it.
//!
//! # Sleeping and waking
//!
//! A get that finds nothing ready spins for a while (the adaptive budget of `wait.rs`), then
//! sleeps on `getters`: it sets the word's `SLEEPERS` bit, looks at the slot (and at
//! `closed`) once more, and sleeps if nothing changed. A put stores its `FULL` with a
//! sequentially consistent store (a batch: a sequentially consistent fence after its stores),
//! then reads `getters`: only if the bit is set does it clear it, bump the word and wake the
//! sleepers (a system call). Either the put sees the bit or the get sees the item, never
//! neither. Puts waiting for room sleep on `putters` the same way, woken by gets. `close`
//! stores `closed`, then bumps both words and wakes everyone. A sleeper killed leaves the bit
//! set: the next waker clears it, so it costs one needless wake-up. A get waiting for another
//! get to free the slot at `head` is woken by no one: it looks again every millisecond at
//! most.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::collections::queue::QueueError;
use crate::collections::wait::{Next, deadline, next_sleep, spin_until};
use crate::collections::words::{load_bytes, store_bytes};
use crate::error::Result;
use crate::failpoint;
use crate::segment::{DATA_START, Segment};
use crate::shm_safe::ShmSafe;
use crate::sys::{self, Wait};

/// The largest item, in bytes: a slot is a cache line or a few, not kilobytes.
pub(super) const MAX_ITEM_BYTES: usize = 1024;
/// The most slots a queue has (the lap field stays meaningful far beyond any run).
pub(super) const MAX_CAPACITY: u64 = 1 << 32;

/// Phases of a slot's state word.
const EMPTY: u64 = 0;
const WRITING: u64 = 1;
const FULL: u64 = 2;
const READING: u64 = 3;
const PHASE_MASK: u64 = 3;
const OWNER_SHIFT: u32 = 2;
/// Linux keeps pids below 2^22 (`PID_MAX_LIMIT` on 64-bit systems).
const OWNER_MASK: u64 = (1 << 22) - 1;
const LAP_SHIFT: u32 = 24;
const LAP_MASK: u64 = (1 << 40) - 1;

/// Words in a cache line: each slot starts on a line of its own.
const LINE_WORDS: usize = 8;
/// A slot's words: its state, its claimant's stamp, then the item.
const STAMP: usize = 1;
const ITEM: usize = 2;
/// The bits of a start time a stamp keeps.
const STAMP_START_MASK: u64 = 0xffff_ffff;

/// The owner field of a free slot on which a get reported the queue closed and empty (a free
/// slot has no owner otherwise): a put that finds it fails as closed, instead of putting an
/// item no get would take.
const CLOSED_HERE: u32 = 1;

/// Set in a futex word while someone sleeps, or is about to, on it.
const SLEEPERS: u32 = 1;

/// The first pause of a call waiting on a slot another process is writing or reading, after
/// its spin; each pause doubles up to [`LONGEST_PAUSE`], and a look at the claimant's life
/// follows each.
const FIRST_PAUSE: Duration = Duration::from_micros(50);
const LONGEST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause of a get waiting for another get to free the slot at `head`, which no
/// one wakes it from: a get descheduled while it copies its item holds up the others by this
/// much at most once it is done.
const LONGEST_UNWOKEN_NAP: Duration = Duration::from_millis(1);

/// Keeps what it holds on a 128-byte line of its own (the pair of 64-byte lines that x86
/// fetches together), so that producers and consumers do not take each other's lines.
#[repr(C, align(128))]
pub(super) struct Line<T>(pub(super) T);

/// The queue's words in the segment's kind area (see the module docs).
#[repr(C)]
pub(super) struct PodQueueArea {
    pub(super) fixed: Line<Fixed>,
    pub(super) tail: Line<AtomicU64>,
    pub(super) head: Line<AtomicU64>,
    pub(super) getters: Line<AtomicU32>,
    pub(super) putters: Line<AtomicU32>,
}

/// What is set when the queue is made, and the closed mark.
#[repr(C)]
pub(super) struct Fixed {
    pub(super) capacity: AtomicU64,
    pub(super) item_size: AtomicU64,
    pub(super) item_align: AtomicU64,
    /// 1 once [`Ring::close`] ran.
    pub(super) closed: AtomicU64,
}

// SAFETY: `#[repr(C)]` structs of fixed-width atomics, aligned to 128 bytes (the kind area's
// offset is a multiple of 128): one layout in every process, any bits are a value (every word
// is checked before it is followed), mutation is atomic, nothing to drop.
#[allow(unsafe_code)]
unsafe impl ShmSafe for PodQueueArea {}

/// A queue's dimensions: slots and item size, checked once when a handle is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    capacity_log2: u32,
    item_bytes: usize,
    /// Words per slot (see [`Shape::slot_words`]), kept: every put and get finds its slot
    /// with it.
    slot_words: usize,
}

impl Shape {
    /// The shape of a queue of `capacity` slots (a power of two) of items of `item_bytes`.
    pub(super) fn new(capacity: u64, item_bytes: u64) -> Option<Self> {
        let item_bytes = usize::try_from(item_bytes).ok()?;
        (capacity.is_power_of_two() && capacity <= MAX_CAPACITY && item_bytes <= MAX_ITEM_BYTES)
            .then_some(Shape {
                capacity_log2: capacity.trailing_zeros(),
                item_bytes,
                slot_words: (ITEM + item_bytes.div_ceil(8)).next_multiple_of(LINE_WORDS),
            })
    }

    pub(super) fn capacity(self) -> u64 {
        1 << self.capacity_log2
    }

    /// Words per slot: the state, the stamp and the item, in whole cache lines (see the module
    /// docs).
    fn slot_words(self) -> usize {
        self.slot_words
    }

    /// The bytes the slots take.
    pub(super) fn ring_bytes(self) -> u64 {
        self.capacity() * self.slot_words() as u64 * 8
    }

    fn lap(self, position: u64) -> u64 {
        (position >> self.capacity_log2) & LAP_MASK
    }
}

/// A slot's state word.
fn state(lap: u64, owner: u32, phase: u64) -> u64 {
    ((lap & LAP_MASK) << LAP_SHIFT) | ((u64::from(owner) & OWNER_MASK) << OWNER_SHIFT) | phase
}

/// What a slot's state says of the position a call looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Free for the position.
    Free,
    /// The position is being written by a put.
    Writing,
    /// The position's item is ready.
    Ready,
    /// The position's item is being read by a get.
    Reading,
    /// The position is done: its item was taken, or its put skipped.
    Done,
    /// The position is done, and the slot was claimed again for the position one lap on: a
    /// get frees its slot before it moves `head`, and a put may refill the slot meanwhile.
    Later,
    /// The slot still holds the position one lap before (written, ready or being read).
    Previous,
    /// Free, and marked by a get that reported the queue closed and empty: no put claims it.
    ClosedHere,
    /// Anything else: the position was read before the queue moved on, or the slot is
    /// damaged.
    Unexpected,
}

fn classify(word: u64, lap: u64) -> Seen {
    let phase = word & PHASE_MASK;
    let owner = ((word >> OWNER_SHIFT) & OWNER_MASK) as u32;
    let ahead = (word >> LAP_SHIFT).wrapping_sub(lap) & LAP_MASK;
    match (ahead, phase, owner) {
        (0, EMPTY, 0) => Seen::Free,
        (0, EMPTY, CLOSED_HERE) => Seen::ClosedHere,
        (0, WRITING, pid) if pid != 0 => Seen::Writing,
        (0, FULL, 0) => Seen::Ready,
        (0, READING, pid) if pid != 0 => Seen::Reading,
        (1, EMPTY, 0) => Seen::Done,
        (1, WRITING | READING, pid) if pid != 0 => Seen::Later,
        (1, FULL, 0) => Seen::Later,
        (LAP_MASK, WRITING | READING, pid) if pid != 0 => Seen::Previous,
        (LAP_MASK, FULL, 0) => Seen::Previous,
        _ => Seen::Unexpected,
    }
}

/// The error of a queue whose slots are not mapped (a file shrunk under the mapping).
#[cold]
pub(super) fn slots_not_mapped(segment: &Segment, shape: Shape) -> crate::Error {
    segment.corrupt(format!(
        "the queue's {} slots are not mapped",
        shape.capacity()
    ))
}

/// What a state word says, for `inspect` and errors.
pub(super) fn describe(word: u64) -> String {
    let lap = word >> LAP_SHIFT;
    let owner = (word >> OWNER_SHIFT) & OWNER_MASK;
    match word & PHASE_MASK {
        EMPTY if owner == u64::from(CLOSED_HERE) => format!("empty and closed in lap {lap}"),
        EMPTY => format!("empty for lap {lap}"),
        WRITING => format!("being written by pid {owner} in lap {lap}"),
        FULL => format!("ready in lap {lap}"),
        _ => format!("being read by pid {owner} in lap {lap}"),
    }
}

/// The queue in one segment, its slots checked to be mapped.
#[derive(Clone, Copy)]
pub(super) struct Ring<'a> {
    pub(super) segment: &'a Segment,
    area: &'a PodQueueArea,
    slots: &'a [AtomicU64],
    shape: Shape,
}

/// How a wait on a slot that another call holds ended.
enum Waited {
    /// The slot's state changed, or a wake-up came: look again.
    Changed,
    /// Its claimant is dead; the slot's stamp was `stamp` when that was judged.
    OwnerDead { stamp: u64 },
}

/// A process as the claimant of slots: its pid (in the state word) and the low 32 bits of its
/// start time (in the slot's stamp word).
#[derive(Clone, Copy)]
struct Claimant {
    pid: u32,
    start: u64,
}

impl Claimant {
    /// The stamp of this process's claim whose state word is `claim`.
    #[inline]
    fn stamp(self, claim: u64) -> u64 {
        stamp_of(claim) | self.start
    }

    /// Claims `slot`, whose state is `from`, for `phase` (`WRITING` or `READING`) in `lap`,
    /// then stamps it; false if the state was not `from` any more.
    #[inline]
    fn claim(self, slot: &[AtomicU64], from: u64, lap: u64, phase: u64) -> bool {
        self.try_claim(slot, from, lap, phase).is_ok()
    }

    /// Claims `slot` for `phase` in `lap`, then stamps it, as [`Claimant::claim`] does, with a
    /// store. The caller read the slot as `FULL` of `lap` with an acquire load, and no other
    /// call can change it: a get's slots after the one it claimed at `head`.
    #[inline]
    fn claim_unopposed(self, slot: &[AtomicU64], lap: u64, phase: u64) {
        let claim = state(lap, self.pid, phase);
        slot[0].store(claim, Ordering::Release);
        slot[STAMP].store(self.stamp(claim), Ordering::Relaxed);
    }

    /// As [`Claimant::claim`], returning the state found when it was not `from`, as
    /// `compare_exchange` does.
    #[inline]
    fn try_claim(self, slot: &[AtomicU64], from: u64, lap: u64, phase: u64) -> Result<(), u64> {
        let claim = state(lap, self.pid, phase);
        slot[0].compare_exchange(from, claim, Ordering::AcqRel, Ordering::Acquire)?;
        slot[STAMP].store(self.stamp(claim), Ordering::Relaxed);
        Ok(())
    }
}

impl<'a> Ring<'a> {
    /// The queue of `shape` in `segment`, or the error of a segment whose slots are not
    /// mapped.
    pub(super) fn checked(segment: &'a Segment, shape: Shape) -> Result<Self> {
        Ring::new(segment, shape).ok_or_else(|| slots_not_mapped(segment, shape))
    }

    /// The queue of `shape` in `segment`, if its slots are mapped.
    ///
    /// No `Result` on the path of every put and get: one the size of an error made each of
    /// them copy the ring through the stack, which stalls loads of what was just stored.
    #[inline]
    pub(super) fn new(segment: &'a Segment, shape: Shape) -> Option<Self> {
        let area = segment.kind_area::<PodQueueArea>();
        let n = usize::try_from(shape.capacity())
            .ok()
            .and_then(|capacity| capacity.checked_mul(shape.slot_words()))?;
        Some(Ring {
            segment,
            area,
            slots: segment.mapping().words(DATA_START, n)?,
            shape,
        })
    }

    /// Sets up the words of a queue being created (the slots start zero: empty for lap 0).
    pub(super) fn init(segment: &Segment, shape: Shape, item_align: u64) -> Result<()> {
        let area = segment.kind_area::<PodQueueArea>();
        segment.data_range(
            || "the queue's slots".to_owned(),
            DATA_START,
            shape.ring_bytes(),
            8,
        )?;
        let fixed = &area.fixed.0;
        fixed
            .item_size
            .store(shape.item_bytes as u64, Ordering::Relaxed);
        fixed.item_align.store(item_align, Ordering::Relaxed);
        fixed.capacity.store(shape.capacity(), Ordering::Release);
        Ok(())
    }

    /// The slot of `position`: its state word, then the item's words.
    #[inline]
    fn slot(self, position: u64) -> &'a [AtomicU64] {
        let width = self.shape.slot_words();
        // `slots` holds `capacity * width` words: the masked position's slot lies inside.
        let start = (position & (self.shape.capacity() - 1)) as usize * width;
        &self.slots[start..start + width]
    }

    /// The calling process as a claimant.
    #[inline]
    fn me() -> Claimant {
        let process = sys::this_process();
        debug_assert!(
            u64::from(process.tid) <= OWNER_MASK,
            "pid {} beyond Linux's limit",
            process.tid
        );
        Claimant {
            pid: process.tid,
            start: process.start & STAMP_START_MASK,
        }
    }

    pub(super) fn capacity(self) -> u64 {
        self.shape.capacity()
    }

    /// Whether the queue was closed (a sequentially consistent load: see `closed_and_empty`).
    pub(super) fn is_closed(self) -> bool {
        self.area.fixed.0.closed.load(Ordering::SeqCst) != 0
    }

    /// Whether a get may report the queue closed: it is closed, and the slot at `head` (whose
    /// state was `word`, free) is marked [`CLOSED_HERE`] with a compare-and-swap from that
    /// state: a put that claimed the slot first made the swap fail (its item is coming), and
    /// one that comes after finds the mark and fails. So no put succeeds after a get reported
    /// the queue closed and empty.
    fn closed_and_empty(self, slot: &[AtomicU64], word: u64) -> bool {
        self.is_closed()
            && slot[0]
                .compare_exchange(
                    word,
                    word | (u64::from(CLOSED_HERE) << OWNER_SHIFT),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Marks the queue closed and wakes every sleeper, so that each learns it.
    pub(super) fn close(self) {
        self.area.fixed.0.closed.store(1, Ordering::SeqCst);
        for word in [&self.area.getters.0, &self.area.putters.0] {
            word.fetch_add(2, Ordering::SeqCst);
            sys::futex_wake(word, u32::MAX);
        }
    }

    #[cold]
    fn closed(self) -> QueueError {
        QueueError::Closed {
            name: self.segment.name().clone(),
        }
    }

    #[cold]
    fn full(self) -> QueueError {
        QueueError::Full {
            name: self.segment.name().clone(),
            capacity: self.capacity(),
        }
    }

    #[cold]
    fn empty(self) -> QueueError {
        QueueError::Empty {
            name: self.segment.name().clone(),
        }
    }

    #[cold]
    fn damaged(self, position: u64, word: u64) -> QueueError {
        QueueError::Other(self.segment.corrupt(format!(
            "the queue's slot {} is {} ({word:#x}), which position {position} cannot be",
            position & (self.capacity() - 1),
            describe(word)
        )))
    }

    /// Puts `count` items, the bytes of `items` (`item_bytes` each, so empty for zero-sized
    /// items), in order; waits for room as `wait` says. Returns how many it put: all of them,
    /// or fewer with the error that stopped it.
    pub(super) fn put(
        self,
        items: &[u8],
        count: usize,
        wait: Wait,
    ) -> (usize, Result<(), QueueError>) {
        let size = self.shape.item_bytes;
        debug_assert_eq!(items.len(), count * size);
        let mut patience = Patience::new(wait);
        let mut put = 0;
        while put < count {
            let item = |index: usize| &items[(put + index) * size..(put + index + 1) * size];
            match self.put_run(count - put, item, &mut patience) {
                Ok(n) => put += n,
                Err(error) => return (put, Err(error)),
            }
        }
        (put, Ok(()))
    }

    /// Claims up to `count` consecutive free slots from `tail` (at least one, waiting as
    /// `wait` says), writes the items into them and publishes them in order. Returns how many.
    fn put_run<'i>(
        self,
        count: usize,
        item: impl Fn(usize) -> &'i [u8],
        patience: &mut Patience,
    ) -> Result<usize, QueueError> {
        let me = Self::me();
        let tail = &self.area.tail.0;
        loop {
            let position = tail.load(Ordering::Acquire);
            let slot = self.slot(position);
            let lap = self.shape.lap(position);
            if self.is_closed() {
                return Err(self.closed());
            }
            // Claimed at once, as if free: a look first would bring the slot's line from the
            // getter's cache to be read, and then once more to be written.
            let word = match me.try_claim(slot, state(lap, 0, EMPTY), lap, WRITING) {
                Ok(()) => return Ok(self.put_claimed(position, count, me, &item)),
                Err(word) => word,
            };
            match classify(word, lap) {
                // Never: the claim just failed to swap from exactly this state.
                Seen::Free => debug_assert!(false, "a failed claim of a free slot"),
                // Claimed already, by a put that may not have moved `tail` yet (it may be
                // descheduled, or stopped): the next put takes the next slot.
                Seen::Writing | Seen::Ready | Seen::Reading | Seen::Done | Seen::Later => {
                    move_on(tail, position);
                }
                Seen::ClosedHere => return Err(self.closed()),
                Seen::Previous => {
                    if word & PHASE_MASK == WRITING {
                        // A put of the lap before claimed the slot and has not filled it: the
                        // queue is full until a get takes its item, or until it is found dead.
                        let full = || self.full();
                        let putters = Some(&self.area.putters.0);
                        match self.wait_on_claim(slot, word, putters, patience, full)? {
                            Waited::Changed => {}
                            Waited::OwnerDead { stamp } => {
                                self.skip(position.wrapping_sub(self.capacity()), word, stamp);
                            }
                        }
                    } else {
                        self.wait_for(&self.area.putters.0, slot, word, patience, || self.full())?;
                    }
                }
                Seen::Unexpected => {
                    if tail.load(Ordering::Acquire) == position {
                        return Err(self.damaged(position, word));
                    }
                }
            }
        }
    }

    /// Puts one item if the slot at `tail` is free and the queue open, as almost every put of
    /// one item finds them: the first steps of [`Ring::put`], without its loop, its patience
    /// and its error, so that they stay in registers. `false`, having changed nothing,
    /// otherwise: the caller then calls [`Ring::put`], which settles every other case.
    #[inline]
    pub(super) fn put_one_if_free(self, item: &[u8]) -> bool {
        let me = Self::me();
        let position = self.area.tail.0.load(Ordering::Acquire);
        let lap = self.shape.lap(position);
        if self.is_closed() {
            return false;
        }
        // Claimed at once, as in `put_run`.
        let free = state(lap, 0, EMPTY);
        if !me.claim(self.slot(position), free, lap, WRITING) {
            return false;
        }
        self.put_claimed(position, 1, me, &|_| item);
        true
    }

    /// Having claimed the slot of `first` (at `tail`), claims the free slots after it, up to
    /// `count` in all, moves `tail` past them, writes the items and publishes them. Returns
    /// how many.
    #[inline]
    fn put_claimed<'i>(
        self,
        first: u64,
        count: usize,
        me: Claimant,
        item: &impl Fn(usize) -> &'i [u8],
    ) -> usize {
        let claimed = self.claim_more(first, count, me);
        failpoint::hit("pod_queue.claimed");
        // Others may have moved `tail` past the claimed slots already.
        self.area
            .tail
            .0
            .fetch_max(first.wrapping_add(claimed as u64), Ordering::AcqRel);
        self.fill(first, claimed, item);
        self.segment.note_writer();
        claimed
    }

    /// Claims, after `first`, the free slots that follow it, up to `count` in all; returns
    /// how many it holds. Other puts may race for them: a put that finds the slot of `first`
    /// claimed moves `tail` on past it (`move_on`) and claims the next. So each is a
    /// compare-and-swap, and the first that fails ends the run.
    fn claim_more(self, first: u64, count: usize, me: Claimant) -> usize {
        let mut claimed = 1;
        while claimed < count && (claimed as u64) < self.capacity() {
            let position = first.wrapping_add(claimed as u64);
            let lap = self.shape.lap(position);
            if !me.claim(self.slot(position), state(lap, 0, EMPTY), lap, WRITING) {
                break;
            }
            claimed += 1;
        }
        claimed
    }

    /// Writes `count` claimed slots from `first` and publishes them in order, then wakes the
    /// getters if one sleeps.
    fn fill<'i>(self, first: u64, count: usize, item: &impl Fn(usize) -> &'i [u8]) {
        for index in 0..count {
            let position = first.wrapping_add(index as u64);
            let slot = self.slot(position);
            store_bytes(&slot[ITEM..], item(index));
            failpoint::hit("pod_queue.written");
            hand_over(slot, state(self.shape.lap(position), 0, FULL), index, count);
        }
        failpoint::hit("pod_queue.published");
        wake(&self.area.getters.0);
    }

    /// Settles the claim `word` on the slot of `position`, whose put died: the position is
    /// skipped. Moves `tail` past it if the put died before moving it, and wakes the getters
    /// and putters that wait at it.
    fn skip(self, position: u64, word: u64, stamp: u64) {
        let lap = self.shape.lap(position);
        let slot = self.slot(position);
        if settle_stamp(slot, stamp)
            && slot[0]
                .compare_exchange(
                    word,
                    state(lap.wrapping_add(1), 0, EMPTY),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            move_on(&self.area.tail.0, position);
            self.wake_everyone();
        }
    }

    /// Wakes every sleeping getter and putter, to look at the slots again.
    #[cold]
    fn wake_everyone(self) {
        wake_all(&self.area.getters.0);
        wake_all(&self.area.putters.0);
    }

    /// Takes one item into `out` if the slot at `head` holds it ready, as almost every get
    /// finds it while items flow: the first steps of [`Ring::get`], without its loop, its
    /// patience and its error. `false`, having changed nothing, otherwise: the caller then
    /// calls [`Ring::get`], which settles every other case.
    #[inline]
    pub(super) fn get_one_if_ready(self, out: &mut impl FnMut(&[AtomicU64])) -> bool {
        let me = Self::me();
        let position = self.area.head.0.load(Ordering::Acquire);
        let slot = self.slot(position);
        let lap = self.shape.lap(position);
        // `Seen::Ready` is exactly this word.
        let ready = state(lap, 0, FULL);
        if slot[0].load(Ordering::Acquire) != ready || !me.claim(slot, ready, lap, READING) {
            return false;
        }
        self.take(position, 1, me, out);
        true
    }

    /// Takes up to `max` items (at least one, waiting as `wait` says) into `out`, each
    /// `item_bytes` (nothing is written for zero-sized items); returns how many.
    pub(super) fn get(
        self,
        max: usize,
        mut out: impl FnMut(&[AtomicU64]),
        wait: Wait,
    ) -> Result<usize, QueueError> {
        let mut patience = Patience::new(wait);
        let me = Self::me();
        let head = &self.area.head.0;
        loop {
            let position = head.load(Ordering::Acquire);
            let slot = self.slot(position);
            let lap = self.shape.lap(position);
            let word = slot[0].load(Ordering::Acquire);
            match classify(word, lap) {
                Seen::Ready => {
                    if me.claim(slot, word, lap, READING) {
                        return Ok(self.take(position, max, me, &mut out));
                    }
                }
                Seen::Done | Seen::Later => {
                    move_on(head, position);
                }
                Seen::Reading => {
                    // Another get is reading it; gets go one at a time.
                    match self.wait_on_claim(slot, word, None, &mut patience, || self.empty())? {
                        Waited::Changed => {}
                        Waited::OwnerDead { stamp } => {
                            if settle_stamp(slot, stamp) && me.claim(slot, word, lap, READING) {
                                failpoint::hit("pod_queue.taken_over");
                                return Ok(self.take(position, max, me, &mut out));
                            }
                        }
                    }
                }
                Seen::Writing => {
                    let getters = Some(&self.area.getters.0);
                    match self.wait_on_claim(slot, word, getters, &mut patience, || self.empty())? {
                        Waited::Changed => {}
                        Waited::OwnerDead { stamp } => self.skip(position, word, stamp),
                    }
                }
                Seen::ClosedHere => return Err(self.closed()),
                Seen::Free => {
                    if self.closed_and_empty(slot, word) {
                        return Err(self.closed());
                    }
                    self.wait_for(&self.area.getters.0, slot, word, &patience, || self.empty())?;
                }
                Seen::Previous | Seen::Unexpected => {
                    if head.load(Ordering::Acquire) == position {
                        return Err(self.damaged(position, word));
                    }
                }
            }
        }
    }

    /// Having claimed the slot of `first` (at `head`), claims the ready slots after it, up to
    /// `max` in all, hands each item to `out`, frees the slots in order and moves `head` past
    /// them. Returns how many.
    fn take(
        self,
        first: u64,
        max: usize,
        me: Claimant,
        out: &mut impl FnMut(&[AtomicU64]),
    ) -> usize {
        let mut taken = 1;
        while taken < max && (taken as u64) < self.capacity() {
            let position = first.wrapping_add(taken as u64);
            let lap = self.shape.lap(position);
            let slot = self.slot(position);
            // Claimed with a store, not a compare-and-swap: no other call changes a ready slot
            // after the one this get holds at `head` (module docs, "A get").
            if slot[0].load(Ordering::Acquire) != state(lap, 0, FULL) {
                break;
            }
            me.claim_unopposed(slot, lap, READING);
            taken += 1;
        }
        failpoint::hit("pod_queue.claimed_to_read");
        for index in 0..taken {
            let position = first.wrapping_add(index as u64);
            let slot = self.slot(position);
            out(&slot[ITEM..]);
            failpoint::hit("pod_queue.read");
            let done = state(self.shape.lap(position).wrapping_add(1), 0, EMPTY);
            hand_over(slot, done, index, taken);
        }
        failpoint::hit("pod_queue.freed");
        // Only this get moves `head` off the slots it held; a get that found the first freed
        // may have moved it on already, and past them.
        self.area
            .head
            .0
            .fetch_max(first.wrapping_add(taken as u64), Ordering::AcqRel);
        wake(&self.area.putters.0);
        taken
    }

    /// Waits, as `patience` says, for the slot whose state is `word` (nothing ready, or no
    /// room) to change: spins, then sleeps on `sleep_on` until a waker bumps it. `blocked`
    /// is the error of a call that may not wait.
    fn wait_for(
        self,
        sleep_on: &AtomicU32,
        slot: &[AtomicU64],
        word: u64,
        patience: &Patience,
        blocked: impl FnOnce() -> QueueError,
    ) -> Result<(), QueueError> {
        if patience.gives_up_at_once() {
            return Err(blocked());
        }
        if spin_until(
            || slot[0].load(Ordering::Acquire) != word || self.is_closed(),
            patience.deadline,
        ) {
            return Ok(());
        }
        match patience.next_sleep(None) {
            Next::Sleep(timeout) => {
                // `close` stores `closed` before it bumps the word: a close after the look here
                // changes the word, and the futex does not sleep.
                sleep(
                    sleep_on,
                    || slot[0].load(Ordering::SeqCst) == word && !self.is_closed(),
                    timeout,
                );
                Ok(())
            }
            Next::GiveUp => Err(self.timed_out(patience.wait)),
        }
    }

    /// Waits on a slot that a call of process `owner` claimed (its state `word`): spins, then
    /// looks at the owner's life, then pauses (on `sleep_on` if a waker bumps it when the
    /// claim ends, else in `nanosleep`), each pause twice as long as the one before.
    fn wait_on_claim(
        self,
        slot: &[AtomicU64],
        word: u64,
        sleep_on: Option<&AtomicU32>,
        patience: &mut Patience,
        blocked: impl FnOnce() -> QueueError,
    ) -> Result<Waited, QueueError> {
        if spin_until(
            || slot[0].load(Ordering::Acquire) != word,
            patience.deadline,
        ) {
            patience.pause = FIRST_PAUSE;
            return Ok(Waited::Changed);
        }
        let next = patience.next_sleep(Some(patience.pause));
        let giving_up = patience.gives_up_at_once() || matches!(next, Next::GiveUp);
        // A look at the claimant's life (a signal and a read of `/proc`) only once a pause went
        // by, or before the call gives up: most claims end within the spin.
        if patience.pause > FIRST_PAUSE || giving_up {
            let stamp = slot[STAMP].load(Ordering::Acquire);
            if self.claimant_dead(word, stamp) && slot[0].load(Ordering::Acquire) == word {
                return Ok(Waited::OwnerDead { stamp });
            }
        }
        if patience.gives_up_at_once() {
            return Err(blocked());
        }
        let Next::Sleep(nap) = next else {
            return Err(self.timed_out(patience.wait));
        };
        let unchanged = || slot[0].load(Ordering::SeqCst) == word && !self.is_closed();
        match sleep_on {
            Some(sleep_on) => sleep(sleep_on, unchanged, nap),
            // Nobody wakes a get waiting for another get to free the slot: it looks again
            // at least every millisecond.
            None => std::thread::sleep(nap.unwrap_or(patience.pause).min(LONGEST_UNWOKEN_NAP)),
        }
        patience.pause = (patience.pause * 2).min(LONGEST_PAUSE);
        Ok(Waited::Changed)
    }

    /// Whether the claimant named by the state word `claim` of a slot whose stamp word is
    /// `stamp` is definitely gone, as seen from here (see the module docs).
    pub(super) fn claimant_dead(self, claim: u64, stamp: u64) -> bool {
        self.segment.lock_slot().pids_are_ours() && claimant_gone(claim, stamp)
    }

    #[cold]
    fn timed_out(self, wait: Wait) -> QueueError {
        QueueError::Timeout {
            name: self.segment.name().clone(),
            waited: match wait {
                Wait::For(timeout) => timeout,
                _ => Duration::ZERO,
            },
        }
    }

    /// `head`, `tail`, and the state and stamp words of every slot, for `inspect`.
    pub(super) fn snapshot(self) -> (u64, u64, Vec<(u64, u64)>) {
        let head = self.area.head.0.load(Ordering::Acquire);
        let tail = self.area.tail.0.load(Ordering::Acquire);
        let slots = (0..self.capacity())
            .map(|index| {
                let slot = self.slot(index);
                (
                    slot[0].load(Ordering::Acquire),
                    slot[STAMP].load(Ordering::Acquire),
                )
            })
            .collect();
        (head, tail, slots)
    }

    /// Whether a get at `position`, whose slot's state is `word`, would move `head` past it
    /// (the position is done).
    pub(super) fn head_moves_past(self, word: u64, position: u64) -> bool {
        matches!(classify(word, self.lap(position)), Seen::Done | Seen::Later)
    }

    /// Whether a put at `position`, whose slot's state is `word`, would move `tail` past it
    /// (the position was claimed).
    pub(super) fn tail_moves_past(self, word: u64, position: u64) -> bool {
        matches!(
            classify(word, self.lap(position)),
            Seen::Writing | Seen::Ready | Seen::Reading | Seen::Done | Seen::Later
        )
    }

    /// The lap of `position`.
    pub(super) fn lap(self, position: u64) -> u64 {
        self.shape.lap(position)
    }
}

/// The bits of a stamp that name the claim whose state word is `claim`: its claimant's pid,
/// whether it is a get's, and the low 9 bits of its lap. Consecutive claims of a slot are a
/// put's and a get's in turn, so a stamp left by the claim before never names this one.
fn stamp_of(claim: u64) -> u64 {
    let reading = u64::from(claim & PHASE_MASK == READING);
    let lap = (claim >> LAP_SHIFT) & 0x1ff;
    (u64::from(claimant_of(claim)) << 42) | (reading << 41) | (lap << 32)
}

/// Whether the claimant of the claim `claim` (a state word) with the stamp word `stamp` has
/// ended: no such process runs, or the process of that pid started at another time than the
/// stamp says (the pid was reused). A stamp of another claim (the one before, or none yet)
/// leaves only the first test.
pub(super) fn claimant_gone(claim: u64, stamp: u64) -> bool {
    match sys::process_liveness(claimant_of(claim)) {
        sys::Liveness::Gone => true,
        sys::Liveness::Running { start: Some(start) } => {
            let stamped =
                stamp & !STAMP_START_MASK == stamp_of(claim) && stamp & STAMP_START_MASK != 0;
            stamped && stamp & STAMP_START_MASK != start & STAMP_START_MASK
        }
        sys::Liveness::Running { start: None } => false,
    }
}

/// The owner field of a state word (0 for a free or ready slot).
fn claimant_of(word: u64) -> u32 {
    ((word >> OWNER_SHIFT) & OWNER_MASK) as u32
}

/// The process a state word names as its claimant (`None` for a free or ready slot), or
/// `Err` for a word no put or get stores.
pub(super) fn claimant(word: u64) -> std::result::Result<Option<u32>, ()> {
    let owner = ((word >> OWNER_SHIFT) & OWNER_MASK) as u32;
    match (word & PHASE_MASK, owner) {
        (EMPTY | FULL, 0) | (EMPTY, CLOSED_HERE) => Ok(None),
        (WRITING | READING, pid) if pid != 0 => Ok(Some(pid)),
        _ => Err(()),
    }
}

pub(super) fn is_ready(word: u64) -> bool {
    word & PHASE_MASK == FULL
}

pub(super) fn is_reading(word: u64) -> bool {
    word & PHASE_MASK == READING
}

/// What is wrong with a slot holding `word` for `position`, read while the queue stood still:
/// `None` if it fits. A position before the tail (`claimed`) has been claimed: its slot is
/// being written, ready, being read or done. One at or after the tail is free, claimed by a
/// put that has not moved the tail yet, or skipped.
pub(super) fn fits(
    ring: Ring<'_>,
    word: u64,
    position: u64,
    claimed: bool,
) -> Option<&'static str> {
    let seen = classify(word, ring.lap(position));
    let fits = match seen {
        Seen::Writing | Seen::Done => true,
        Seen::Ready | Seen::Reading | Seen::Later => claimed,
        Seen::Free | Seen::ClosedHere => !claimed,
        Seen::Previous | Seen::Unexpected => false,
    };
    (!fits).then_some(if claimed {
        "was put: it is being written, ready, being read or taken"
    } else {
        "is not put yet: its slot is free or being claimed"
    })
}

/// Stores `word` into the state of `slot`, the `index`th of the `count` slots a call hands
/// over to the other side: one alone with a sequentially consistent store, several with
/// release stores and, after the last, a sequentially consistent fence. Either way the stores
/// are ordered before the call's look at the other side's futex word, where a sleeper may wait
/// on any of the slots.
#[inline]
fn hand_over(slot: &[AtomicU64], word: u64, index: usize, count: usize) {
    if count == 1 {
        slot[0].store(word, Ordering::SeqCst);
    } else {
        slot[0].store(word, Ordering::Release);
        if index + 1 == count {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
    }
}

/// Clears the stamp `stamp` of a dead claimant from `slot`, first of a settlement: only the
/// settler whose swap succeeds settles (a dead claimant's stamp never comes back, so two
/// settlers cannot both succeed, even when the second takes over with the same pid).
fn settle_stamp(slot: &[AtomicU64], stamp: u64) -> bool {
    slot[STAMP]
        .compare_exchange(stamp, 0, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

/// Moves `tail` or `head` from `position` to the next, unless another call did.
fn move_on(word: &AtomicU64, position: u64) {
    let _ = word.compare_exchange(
        position,
        position.wrapping_add(1),
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
}

/// How long a blocked call waits: as its caller said, and how long its next pause on a
/// claimed slot lasts.
struct Patience {
    wait: Wait,
    deadline: Option<Instant>,
    pause: Duration,
}

impl Patience {
    fn new(wait: Wait) -> Self {
        Patience {
            wait,
            deadline: match wait {
                Wait::For(timeout) => deadline(Some(timeout)),
                _ => None,
            },
            pause: FIRST_PAUSE,
        }
    }

    /// Whether the call gives up at once: a `try_` form, or a timeout of zero (which reports
    /// the queue full or empty rather than timed out, as `Queue` does).
    fn gives_up_at_once(&self) -> bool {
        match self.wait {
            Wait::Never => true,
            Wait::For(timeout) => timeout.is_zero(),
            Wait::Forever => false,
        }
    }

    /// How long the next sleep may last, at most `at_most`.
    fn next_sleep(&self, at_most: Option<Duration>) -> Next {
        let timeout = match self.wait {
            Wait::For(timeout) => Some(timeout),
            _ => None,
        };
        next_sleep(timeout, self.deadline, at_most)
    }
}

/// Sleeps on `word` while `still` holds, at most `timeout`: sets [`SLEEPERS`], then looks
/// (with `still`, a sequentially consistent load) and sleeps only if nothing changed.
fn sleep(word: &AtomicU32, still: impl Fn() -> bool, timeout: Option<Duration>) {
    let seen = word.fetch_or(SLEEPERS, Ordering::SeqCst) | SLEEPERS;
    if still() {
        sys::futex_wait(word, seen, timeout);
    }
}

/// Wakes the sleepers on `word`, if its [`SLEEPERS`] bit says there are any: clears the bit,
/// bumps the word and wakes them all (each looks again, and sleeps again if it must).
#[inline]
fn wake(word: &AtomicU32) {
    if word.load(Ordering::SeqCst) & SLEEPERS != 0 {
        wake_all(word);
    }
}

#[cold]
fn wake_all(word: &AtomicU32) {
    let mut seen = word.load(Ordering::SeqCst);
    loop {
        match word.compare_exchange_weak(
            seen,
            (seen & !SLEEPERS).wrapping_add(2),
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(now) => seen = now,
        }
    }
    sys::futex_wake(word, u32::MAX);
}

/// Copies an item's words into `out`, out of line: inlined into a get's loop, the copy made
/// batches of `u64` between two processes a third slower in a scratch loop (36–48 M against
/// 62–68 M items a second, three runs each).
#[inline(never)]
pub(super) fn copy_item(words: &[AtomicU64], out: &mut [u8]) {
    load_bytes(words, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_relative_to_a_position() {
        let lap = 7;
        assert_eq!(classify(state(lap, 0, EMPTY), lap), Seen::Free);
        assert_eq!(
            classify(state(lap, CLOSED_HERE, EMPTY), lap),
            Seen::ClosedHere
        );
        assert_eq!(classify(state(lap, 42, WRITING), lap), Seen::Writing);
        assert_eq!(classify(state(lap, 0, FULL), lap), Seen::Ready);
        assert_eq!(classify(state(lap, 42, READING), lap), Seen::Reading);
        assert_eq!(classify(state(lap + 1, 0, EMPTY), lap), Seen::Done);
        assert_eq!(classify(state(lap + 1, 0, FULL), lap), Seen::Later);
        assert_eq!(classify(state(lap + 1, 4, WRITING), lap), Seen::Later);
        assert_eq!(classify(state(lap - 1, 0, FULL), lap), Seen::Previous);
        assert_eq!(classify(state(lap - 1, 9, READING), lap), Seen::Previous);
        assert_eq!(classify(state(lap - 1, 9, WRITING), lap), Seen::Previous);
        // A free slot of the lap before, and claims without an owner, are damage.
        assert_eq!(classify(state(lap - 1, 0, EMPTY), lap), Seen::Unexpected);
        assert_eq!(classify(state(lap, 0, WRITING), lap), Seen::Unexpected);
        assert_eq!(classify(state(lap, 3, FULL), lap), Seen::Unexpected);
        assert_eq!(classify(state(lap + 2, 0, EMPTY), lap), Seen::Unexpected);
    }

    #[test]
    fn a_stamp_tells_a_reused_pid_from_its_claimant() {
        let me = Ring::me();
        let claim = state(5, me.pid, WRITING);
        assert!(
            !claimant_gone(claim, me.stamp(claim)),
            "this process, stamped"
        );
        assert!(!claimant_gone(claim, 0), "this process, not stamped yet");
        assert!(
            claimant_gone(claim, me.stamp(claim) ^ 1),
            "a claimant of this pid that started at another time has ended"
        );
        let get = state(5, me.pid, READING);
        assert!(
            !claimant_gone(get, me.stamp(claim) ^ 1),
            "the stamp of the put before names another claim"
        );
        let next_lap = state(6, me.pid, WRITING);
        assert!(!claimant_gone(next_lap, me.stamp(get) ^ 1), "a lap before");
        assert!(
            claimant_gone(state(5, OWNER_MASK as u32, WRITING), 0) || OWNER_MASK as u32 == me.pid,
            "no such process"
        );
    }

    #[test]
    fn laps_wrap_around_their_forty_bits() {
        let last = LAP_MASK;
        assert_eq!(classify(state(0, 0, EMPTY), last), Seen::Done);
        assert_eq!(classify(state(last, 0, FULL), 0), Seen::Previous);
        let shape = Shape::new(1024, 8).expect("a shape");
        assert_eq!(shape.lap(1024 * (LAP_MASK + 1) + 5), 0);
    }

    #[test]
    fn shapes_hold_powers_of_two_and_bounded_items() {
        let shape = Shape::new(8, 12).expect("a shape");
        assert_eq!((shape.capacity(), shape.slot_words()), (8, 8));
        assert_eq!(shape.ring_bytes(), 8 * 64);
        assert_eq!(Shape::new(8, 48).map(Shape::slot_words), Some(8));
        assert_eq!(Shape::new(8, 49).map(Shape::slot_words), Some(16));
        assert!(Shape::new(6, 8).is_none());
        assert!(Shape::new(0, 8).is_none());
        assert!(Shape::new(8, 2000).is_none());
        assert!(Shape::new(MAX_CAPACITY * 2, 8).is_none());
        assert_eq!(Shape::new(4, 0).map(Shape::slot_words), Some(8));
    }
}
