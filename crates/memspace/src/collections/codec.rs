//! The item encoding: `MessagePack`, with struct fields by name, so that any item can be decoded
//! without its Rust type (the CLI prints items as JSON).

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(value)
}

/// Appends the encoding of `value` to `out` (as [`encode`] would produce it).
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), rmp_serde::encode::Error> {
    rmp_serde::encode::write_named(out, value)
}

/// The most bytes of a per-thread buffer kept from one use to the next: one large item does
/// not hold memory for ever.
const KEPT: usize = 64 * 1024;

/// A slot for a buffer of this thread's, kept from one use to the next (see [`take_kept`]).
pub(crate) type KeptBuffer = std::thread::LocalKey<std::cell::Cell<Vec<u8>>>;

/// Takes the buffer kept in `slot` (an empty one if there is none, or while the thread
/// exits). Taken out while in use, so a nested use gets a fresh one.
#[inline]
pub(crate) fn take_kept(slot: &'static KeptBuffer) -> Vec<u8> {
    slot.try_with(std::cell::Cell::take).unwrap_or_default()
}

/// Keeps `buffer` in `slot` for the next use, unless it grew past [`KEPT`].
#[inline]
pub(crate) fn keep(slot: &'static KeptBuffer, buffer: Vec<u8>) {
    if buffer.capacity() <= KEPT {
        // Gone only while the thread exits: the buffer is dropped then.
        let _ = slot.try_with(|kept| kept.set(buffer));
    }
}

/// Runs `use_it` with an empty buffer of this thread's, kept from one call to the next so that
/// encoding one item allocates nothing: a push encodes into it. The buffer is taken out of the
/// thread-local while `use_it` runs, so a call made meanwhile (a `Serialize` impl that pushes,
/// or a destructor running after the thread-local is gone) gets a fresh one; a buffer grown
/// past 64 KiB is let go afterwards.
pub(crate) fn with_scratch<R>(use_it: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut buffer = take_kept(&SCRATCH);
    buffer.clear();
    let result = use_it(&mut buffer);
    keep(&SCRATCH, buffer);
    result
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}
