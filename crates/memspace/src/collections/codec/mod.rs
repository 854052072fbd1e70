//! The item encoding: `MessagePack`, with struct fields by name, so that any item can be decoded
//! without its Rust type (the CLI prints items as JSON).

mod scalar;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut out = Vec::new();
    encode_into(&mut out, value)?;
    Ok(out)
}

/// Appends the encoding of `value` to `out`: a lone integer, boolean or string by `scalar`,
/// without `rmp_serde`'s set-up; anything else by `rmp_serde`.
#[inline]
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), rmp_serde::encode::Error> {
    let before = out.len();
    if scalar::encode(value, out).is_ok() {
        return Ok(());
    }
    // What `scalar` wrote before it gave up.
    out.truncate(before);
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

/// The most bytes of an item [`with_encoded`] encodes on the stack.
const ON_STACK: usize = 128;

/// Encodes `value` and runs `use_it` with its bytes: encoded on the stack when they fit in
/// [`ON_STACK`] bytes, which most items do (a number, a short string, a small struct), so that
/// a push touches no thread-local and no heap (a lone integer, boolean or string by `scalar`,
/// without `rmp_serde`'s set-up); in this thread's kept buffer otherwise (see
/// [`with_scratch`]), encoded again from the start (a larger value is serialized twice, as
/// by a serializer that measures first; a writer that moved the bytes on to the heap instead
/// cost a small push 17% more instructions). A value that cannot be encoded is the error
/// `encode_error` makes of the encoder's.
#[inline]
pub(crate) fn with_encoded<T: Serialize + ?Sized, R>(
    value: &T,
    encode_error: impl FnOnce(rmp_serde::encode::Error) -> Error,
    use_it: impl FnOnce(&[u8]) -> Result<R>,
) -> Result<R> {
    let mut stack = StackBytes {
        bytes: [0; ON_STACK],
        used: 0,
    };
    if scalar::encode(value, &mut stack).is_ok() {
        return use_it(&stack.bytes[..stack.used]);
    }
    stack.used = 0;
    // Fails when the bytes outgrow the stack (or for a value that cannot be encoded at all,
    // which the second try reports).
    if rmp_serde::encode::write_named(&mut stack, value).is_ok() {
        return use_it(&stack.bytes[..stack.used]);
    }
    with_scratch(|buffer| {
        encode_into(buffer, value).map_err(encode_error)?;
        use_it(buffer)
    })
}

/// A writer into a fixed array that refuses what does not fit. Unlike `&mut [u8]`, it takes
/// all of a write or none of it, so the encoder's writes of a few bytes each stay copies of a
/// known length (no call to `memcpy`).
struct StackBytes {
    bytes: [u8; ON_STACK],
    used: usize,
}

impl scalar::Out for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), scalar::NotScalar> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

impl scalar::Out for StackBytes {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), scalar::NotScalar> {
        let end = self.used + bytes.len();
        let free = self
            .bytes
            .get_mut(self.used..end)
            .ok_or(scalar::NotScalar)?;
        free.copy_from_slice(bytes);
        self.used = end;
        Ok(())
    }
}

impl std::io::Write for StackBytes {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        scalar::Out::put(self, bytes)
            .map(|()| bytes.len())
            .map_err(|scalar::NotScalar| std::io::ErrorKind::WriteZero.into())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write(bytes).map(drop)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes an item: a lone integer, boolean or string by `scalar`, without `rmp_serde`'s
/// set-up; anything else, and anything `scalar` cannot read, by `rmp_serde`, which also says
/// what is wrong.
#[inline]
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    scalar::decode(bytes).or_else(|scalar::NotScalar| rmp_serde::from_slice(bytes))
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::{ON_STACK, encode, with_encoded};
    use crate::error::Error;

    /// The bytes `rmp_serde` makes of `value`.
    fn rmp<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        rmp_serde::to_vec_named(value).unwrap()
    }

    /// The bytes `with_encoded` hands over.
    fn encoded<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        with_encoded(
            value,
            |_| unreachable!("encodes"),
            |bytes| Ok(bytes.to_vec()),
        )
        .unwrap()
    }

    #[test]
    fn items_on_the_stack_and_past_it_are_encoded_as_rmp_serde_does() {
        #[derive(Serialize)]
        struct Point {
            x: i64,
            label: String,
        }
        assert_eq!(encoded(&7i64), rmp(&7i64));
        assert_eq!(encoded(&-70_000i64), rmp(&-70_000i64));
        let point = Point {
            x: -3,
            label: "p".repeat(ON_STACK),
        };
        assert_eq!(encoded(&point), rmp(&point));
        assert_eq!(encode(&point).unwrap(), rmp(&point));
        assert_eq!(encode(&7u8).unwrap(), rmp(&7u8));
        // A string's encoding is its length's marker and the bytes: around the stack's size.
        for len in [
            0,
            ON_STACK - 3,
            ON_STACK - 2,
            ON_STACK - 1,
            ON_STACK,
            10 * ON_STACK,
        ] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            assert_eq!(encoded(&text), rmp(&text), "{len} bytes");
            assert_eq!(encode(&text).unwrap(), rmp(&text), "{len} bytes");
        }
    }

    #[test]
    fn a_value_that_cannot_be_encoded_is_the_callers_error() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("refused"))
            }
        }
        let result = with_encoded(
            &Refuses,
            |source| Error::Encode {
                name: crate::segment::SegmentName::new("refused").unwrap(),
                type_name: "Refuses",
                source,
            },
            |_| -> crate::error::Result<()> { panic!("nothing was encoded") },
        );
        let refused = matches!(
            &result,
            Err(Error::Encode { source, .. }) if source.to_string().contains("refused")
        );
        assert!(refused, "{result:?}");
    }
}
