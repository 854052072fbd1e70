//! Handles travel as references: every handle type serializes as its segment's name, and
//! deserializing one reopens that segment (a child process reattaches the same memory). A
//! handle opened with a wider trust than the default (another owner, a wider mode: see
//! [`SegmentOptions`](crate::SegmentOptions)) carries it after the name, so the child accepts
//! the segment its parent accepted. Only there: a name is read with its trust only while
//! [`decoding_from_own_process`] runs, around the bytes a worker and its parent exchange over
//! their private pipes. Anywhere else (a handle that arrives in a queue, a name in a file), a
//! name with trust in it is refused, so that whoever can write such bytes cannot widen what
//! this process opens.

use std::cell::Cell;

thread_local! {
    static FROM_OWN_PROCESS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `decode` with handles allowed to bring the trust they were opened with (see the
/// module docs): for the arguments and results a worker and its parent send each other.
pub(crate) fn decoding_from_own_process<T>(decode: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            FROM_OWN_PROCESS.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(FROM_OWN_PROCESS.with(|flag| flag.replace(true)));
    decode()
}

/// Whether a name read now may bring trust (inside [`decoding_from_own_process`]).
pub(crate) fn trust_may_travel() -> bool {
    FROM_OWN_PROCESS.with(Cell::get)
}

/// Implements `Serialize` (the segment's name, from `name()`) and `Deserialize` (`open` by that
/// name) for a handle type, under the bounds its `name` and `open` need.
macro_rules! serialize_as_name {
    ($ty:ident $(<$($g:ident),+>)? $(where $($bound:tt)+)?) => {
        impl$(<$($g),+>)? ::serde::Serialize for $ty$(<$($g),+>)? $(where $($bound)+)? {
            /// A handle travels as a reference: its segment's name.
            fn serialize<S: ::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name().to_transport())
            }
        }

        impl<'de $($(, $g)+)?> ::serde::Deserialize<'de> for $ty$(<$($g),+>)?
        $(where $($bound)+)?
        {
            /// Reattaches the named segment in this process.
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let name = <String as ::serde::Deserialize>::deserialize(deserializer)?;
                Self::open(&name).map_err(::serde::de::Error::custom)
            }
        }
    };
}

mod place;

pub(crate) use self::place::{Blueprint, InSegment, NoRedis, Place, RedisEngine};
