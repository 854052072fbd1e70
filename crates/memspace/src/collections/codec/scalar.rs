//! The encoding of a lone integer, boolean or string, written and read without `rmp_serde`.
//!
//! Such items are the most common (a queue of numbers, a map keyed by strings), and for them
//! `rmp_serde`'s set-up costs more than the encoding: its serializer and deserializer go
//! through `io::Write`, configuration and error conversions around the few bytes that matter.
//! A put and a get of a `u64` in one process went from 1 372 instructions to 1 340 (callgrind)
//! and from 76 ns to 72 ns (BENCHMARKS.md, "Twelfth pass").
//!
//! [`encode`] writes exactly the bytes `rmp_serde` writes (the smallest `MessagePack` marker
//! that holds the value, as `rmp` chooses it; pinned by the tests), so that items are equal
//! byte for byte whichever way they were encoded (a map compares its keys by their encoding).
//! [`decode`] reads only what it can decode as `rmp_serde` would; anything else (another type,
//! another marker, bytes left over, a value the type refuses) is [`NotScalar`], and the caller
//! asks `rmp_serde`, which decodes it or says what is wrong.

use std::fmt;

use serde::de::{self, Visitor};
use serde::ser::{self, Impossible, Serialize};

/// Not a value this module encodes or decodes: the caller falls back to `rmp_serde`.
#[derive(Debug)]
pub(super) struct NotScalar;

impl fmt::Display for NotScalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a lone integer, boolean or string")
    }
}

impl std::error::Error for NotScalar {}

impl ser::Error for NotScalar {
    fn custom<T: fmt::Display>(_: T) -> Self {
        NotScalar
    }
}

impl de::Error for NotScalar {
    fn custom<T: fmt::Display>(_: T) -> Self {
        NotScalar
    }
}

/// Where [`encode`] writes: a growing buffer, or one of a fixed size that may refuse bytes.
pub(super) trait Out {
    /// Appends `bytes`; `Err` if they do not fit (nothing is written then).
    fn put(&mut self, bytes: &[u8]) -> Result<(), NotScalar>;
}

/// Encodes `value` into `out` if it is a lone integer, boolean or string, as `rmp_serde`
/// would; [`NotScalar`] otherwise, or if it does not fit (`out` may then hold a marker).
#[inline]
pub(super) fn encode<T: Serialize + ?Sized>(
    value: &T,
    out: &mut impl Out,
) -> Result<(), NotScalar> {
    value.serialize(Scalar { out })
}

/// Decodes `bytes` as a `T` if they are one integer, boolean or string that `T` takes, as
/// `rmp_serde` would; [`NotScalar`] otherwise.
#[inline]
pub(super) fn decode<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<T, NotScalar> {
    T::deserialize(Input { bytes })
}

/// `MessagePack` markers (the specification's names).
mod marker {
    pub(super) const FALSE: u8 = 0xc2;
    pub(super) const TRUE: u8 = 0xc3;
    pub(super) const UINT8: u8 = 0xcc;
    pub(super) const UINT16: u8 = 0xcd;
    pub(super) const UINT32: u8 = 0xce;
    pub(super) const UINT64: u8 = 0xcf;
    pub(super) const INT8: u8 = 0xd0;
    pub(super) const INT16: u8 = 0xd1;
    pub(super) const INT32: u8 = 0xd2;
    pub(super) const INT64: u8 = 0xd3;
    pub(super) const FIXSTR: u8 = 0xa0;
    pub(super) const STR8: u8 = 0xd9;
    pub(super) const STR16: u8 = 0xda;
    pub(super) const STR32: u8 = 0xdb;
}

struct Scalar<'o, O> {
    out: &'o mut O,
}

impl<O: Out> Scalar<'_, O> {
    /// `marker`, then `bytes` (a big-endian number), in one write.
    fn marked<const N: usize>(self, marker: u8, bytes: [u8; N]) -> Result<(), NotScalar> {
        const { assert!(N <= 8) };
        let mut all = [0; 9];
        all[0] = marker;
        all[1..=N].copy_from_slice(&bytes);
        self.out.put(&all[..=N])
    }

    /// `rmp::encode::write_uint`'s choice: a positive fixint below 128, else the smallest
    /// unsigned marker.
    fn uint(self, value: u64) -> Result<(), NotScalar> {
        if value < 128 {
            self.out.put(&[value as u8])
        } else if value < 1 << 8 {
            self.marked(marker::UINT8, [value as u8])
        } else if value < 1 << 16 {
            self.marked(marker::UINT16, (value as u16).to_be_bytes())
        } else if value < 1 << 32 {
            self.marked(marker::UINT32, (value as u32).to_be_bytes())
        } else {
            self.marked(marker::UINT64, value.to_be_bytes())
        }
    }

    /// `rmp::encode::write_sint`'s choice: a value of at least 0 as [`Scalar::uint`], a
    /// negative fixint from -32, else the smallest signed marker.
    #[allow(
        clippy::cast_sign_loss,
        reason = "a value of at least 0, and the two's-complement byte of a negative fixint"
    )]
    fn sint(self, value: i64) -> Result<(), NotScalar> {
        if value >= 0 {
            self.uint(value as u64)
        } else if value >= -32 {
            self.out.put(&[value as u8])
        } else if value >= -(1 << 7) {
            self.marked(marker::INT8, (value as i8).to_be_bytes())
        } else if value >= -(1 << 15) {
            self.marked(marker::INT16, (value as i16).to_be_bytes())
        } else if value >= -(1 << 31) {
            self.marked(marker::INT32, (value as i32).to_be_bytes())
        } else {
            self.marked(marker::INT64, value.to_be_bytes())
        }
    }
}

/// Every other shape of value is [`NotScalar`].
macro_rules! not_scalar {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(
            fn $method(self, $(_: $arg),*) -> Result<$ret, NotScalar> {
                Err(NotScalar)
            }
        )*
    };
}

/// Serializer methods that write an integer widened to 64 bits, as `rmp_serde`'s do.
macro_rules! widened {
    ($($method:ident($narrow:ty) => $write:ident($wide:ty),)*) => {
        $(
            fn $method(self, value: $narrow) -> Result<(), NotScalar> {
                self.$write(<$wide>::from(value))
            }
        )*
    };
}

impl<O: Out> ser::Serializer for Scalar<'_, O> {
    type Ok = ();
    type Error = NotScalar;
    type SerializeSeq = Impossible<(), NotScalar>;
    type SerializeTuple = Impossible<(), NotScalar>;
    type SerializeTupleStruct = Impossible<(), NotScalar>;
    type SerializeTupleVariant = Impossible<(), NotScalar>;
    type SerializeMap = Impossible<(), NotScalar>;
    type SerializeStruct = Impossible<(), NotScalar>;
    type SerializeStructVariant = Impossible<(), NotScalar>;

    /// As `rmp_serde`'s: a type that writes itself one way for people and another for
    /// machines (an `IpAddr`: a string, or its bytes) takes the machines' way, which is not a
    /// lone scalar.
    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), NotScalar> {
        self.out
            .put(&[if v { marker::TRUE } else { marker::FALSE }])
    }

    widened! {
        serialize_i8(i8) => sint(i64), serialize_i16(i16) => sint(i64),
        serialize_i32(i32) => sint(i64), serialize_i64(i64) => sint(i64),
        serialize_u8(u8) => uint(u64), serialize_u16(u16) => uint(u64),
        serialize_u32(u32) => uint(u64), serialize_u64(u64) => uint(u64),
    }

    /// `rmp::encode::write_str`: a fixstr below 32 bytes, else the smallest length marker.
    fn serialize_str(self, v: &str) -> Result<(), NotScalar> {
        let len = v.len();
        if len < 32 {
            self.out.put(&[marker::FIXSTR | len as u8])?;
        } else if len < 1 << 8 {
            self.out.put(&[marker::STR8, len as u8])?;
        } else if len < 1 << 16 {
            let [high, low] = (len as u16).to_be_bytes();
            self.out.put(&[marker::STR16, high, low])?;
        } else {
            let len = u32::try_from(len).map_err(|_| NotScalar)?;
            let mut header = [marker::STR32; 5];
            header[1..].copy_from_slice(&len.to_be_bytes());
            self.out.put(&header)?;
        }
        self.out.put(v.as_bytes())
    }

    not_scalar! {
        serialize_i128(i128) -> ();
        serialize_u128(u128) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize)
            -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize)
            -> Self::SerializeStructVariant;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), NotScalar> {
        Err(NotScalar)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), NotScalar> {
        Err(NotScalar)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), NotScalar> {
        Err(NotScalar)
    }
}

/// `bytes` if there are exactly `N` of them.
fn exactly<const N: usize>(bytes: &[u8]) -> Result<[u8; N], NotScalar> {
    bytes.try_into().map_err(|_| NotScalar)
}

/// The bytes of one item, read as a lone integer, boolean or string.
struct Input<'de> {
    bytes: &'de [u8],
}

impl<'de> Input<'de> {
    /// Visits the one integer the bytes hold (nothing left over) at its marker's width, as
    /// `rmp_serde` does: `visit_u8` for a positive fixint or a `uint 8`, `visit_i8` for a
    /// negative fixint or an `int 8`, and so on.
    fn visit_int<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotScalar> {
        let (&first, rest) = self.bytes.split_first().ok_or(NotScalar)?;
        match first {
            0x00..=0x7f if rest.is_empty() => visitor.visit_u8(first),
            0xe0..=0xff if rest.is_empty() => visitor.visit_i8(first.cast_signed()),
            marker::UINT8 => visitor.visit_u8(u8::from_be_bytes(exactly(rest)?)),
            marker::UINT16 => visitor.visit_u16(u16::from_be_bytes(exactly(rest)?)),
            marker::UINT32 => visitor.visit_u32(u32::from_be_bytes(exactly(rest)?)),
            marker::UINT64 => visitor.visit_u64(u64::from_be_bytes(exactly(rest)?)),
            marker::INT8 => visitor.visit_i8(i8::from_be_bytes(exactly(rest)?)),
            marker::INT16 => visitor.visit_i16(i16::from_be_bytes(exactly(rest)?)),
            marker::INT32 => visitor.visit_i32(i32::from_be_bytes(exactly(rest)?)),
            marker::INT64 => visitor.visit_i64(i64::from_be_bytes(exactly(rest)?)),
            _ => Err(NotScalar),
        }
    }

    /// The one string the bytes hold, valid UTF-8, nothing left over.
    fn str(&self) -> Result<&'de str, NotScalar> {
        let bytes: &'de [u8] = self.bytes;
        let (&first, rest) = bytes.split_first().ok_or(NotScalar)?;
        let (len, text) = match first {
            0xa0..=0xbf => (usize::from(first & 0x1f), rest),
            marker::STR8 => {
                let (&len, text) = rest.split_first().ok_or(NotScalar)?;
                (usize::from(len), text)
            }
            marker::STR16 => {
                let (len, text) = rest.split_first_chunk::<2>().ok_or(NotScalar)?;
                (usize::from(u16::from_be_bytes(*len)), text)
            }
            marker::STR32 => {
                let (len, text) = rest.split_first_chunk::<4>().ok_or(NotScalar)?;
                (u32::from_be_bytes(*len) as usize, text)
            }
            _ => return Err(NotScalar),
        };
        if text.len() != len {
            return Err(NotScalar);
        }
        std::str::from_utf8(text).map_err(|_| NotScalar)
    }
}

/// Deserializer methods that read an integer (see [`Input::visit_int`]).
macro_rules! integers {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotScalar> {
                self.visit_int(visitor)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Input<'de> {
    type Error = NotScalar;

    /// As `rmp_serde`'s (see the serializer's).
    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, NotScalar> {
        Err(NotScalar)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotScalar> {
        match self.bytes {
            [marker::FALSE] => visitor.visit_bool(false),
            [marker::TRUE] => visitor.visit_bool(true),
            _ => Err(NotScalar),
        }
    }

    integers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotScalar> {
        visitor.visit_borrowed_str(self.str()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotScalar> {
        visitor.visit_borrowed_str(self.str()?)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 f32 f64 char bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::{NotScalar, Out, decode, encode};

    /// A buffer that refuses a write past its limit (the second field), as the caller's
    /// stack buffer does.
    struct Buffer(Vec<u8>, usize);

    impl Out for Buffer {
        fn put(&mut self, bytes: &[u8]) -> Result<(), NotScalar> {
            if self.0.len() + bytes.len() > self.1 {
                return Err(NotScalar);
            }
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }

    fn encoded<T: Serialize + ?Sized>(value: &T) -> Option<Vec<u8>> {
        let mut out = Buffer(Vec::new(), usize::MAX);
        encode(value, &mut out).ok().map(|()| out.0)
    }

    /// Every power of two and its neighbours, both signs, and each type's limits.
    fn interesting() -> Vec<i128> {
        let mut values = vec![0, i128::from(i64::MIN), i128::from(u64::MAX)];
        for shift in 0..64 {
            let power = 1i128 << shift;
            for v in [power - 1, power, power + 1] {
                values.extend([v, -v]);
            }
        }
        values.retain(|&v| v >= i128::from(i64::MIN) && v <= i128::from(u64::MAX));
        values
    }

    fn check_as<T>(v: i128)
    where
        T: TryFrom<i128>
            + Serialize
            + for<'de> Deserialize<'de>
            + PartialEq
            + std::fmt::Debug
            + Copy,
    {
        let Ok(value) = T::try_from(v) else {
            return;
        };
        let theirs = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(encoded(&value).as_deref(), Some(&theirs[..]), "{value:?}");
        assert_eq!(decode::<T>(&theirs).ok(), Some(value), "{value:?}");
    }

    #[test]
    fn integers_are_encoded_and_decoded_as_rmp_serde_does() {
        for v in interesting() {
            check_as::<u8>(v);
            check_as::<u16>(v);
            check_as::<u32>(v);
            check_as::<u64>(v);
            check_as::<i8>(v);
            check_as::<i16>(v);
            check_as::<i32>(v);
            check_as::<i64>(v);
        }
    }

    #[test]
    fn an_integer_is_decoded_from_any_marker_that_holds_it_as_rmp_serde_does() {
        // Each value as each of the wider markers, not only the smallest.
        for v in interesting() {
            let mut forms = Vec::new();
            if let Ok(v) = u64::try_from(v) {
                forms.push([vec![0xcf], v.to_be_bytes().to_vec()].concat());
                if let Ok(v) = u32::try_from(v) {
                    forms.push([vec![0xce], v.to_be_bytes().to_vec()].concat());
                }
            }
            if let Ok(v) = i64::try_from(v) {
                forms.push([vec![0xd3], v.to_be_bytes().to_vec()].concat());
                if let Ok(v) = i16::try_from(v) {
                    forms.push([vec![0xd1], v.to_be_bytes().to_vec()].concat());
                }
            }
            for bytes in forms {
                let ours = decode::<i64>(&bytes).ok();
                assert_eq!(
                    ours,
                    rmp_serde::from_slice::<i64>(&bytes).ok(),
                    "{bytes:x?}"
                );
                let ours = decode::<u32>(&bytes).ok();
                assert_eq!(
                    ours,
                    rmp_serde::from_slice::<u32>(&bytes).ok(),
                    "{bytes:x?}"
                );
            }
        }
    }

    /// Which `visit_*` a deserializer calls for an integer.
    #[derive(Debug, PartialEq)]
    struct Visited(&'static str);

    impl<'de> Deserialize<'de> for Visited {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Names;
            impl serde::de::Visitor<'_> for Names {
                type Value = Visited;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an integer")
                }
                fn visit_u8<E>(self, _: u8) -> Result<Visited, E> {
                    Ok(Visited("u8"))
                }
                fn visit_u16<E>(self, _: u16) -> Result<Visited, E> {
                    Ok(Visited("u16"))
                }
                fn visit_u32<E>(self, _: u32) -> Result<Visited, E> {
                    Ok(Visited("u32"))
                }
                fn visit_u64<E>(self, _: u64) -> Result<Visited, E> {
                    Ok(Visited("u64"))
                }
                fn visit_i8<E>(self, _: i8) -> Result<Visited, E> {
                    Ok(Visited("i8"))
                }
                fn visit_i16<E>(self, _: i16) -> Result<Visited, E> {
                    Ok(Visited("i16"))
                }
                fn visit_i32<E>(self, _: i32) -> Result<Visited, E> {
                    Ok(Visited("i32"))
                }
                fn visit_i64<E>(self, _: i64) -> Result<Visited, E> {
                    Ok(Visited("i64"))
                }
            }
            deserializer.deserialize_u64(Names)
        }
    }

    /// Whatever `decode` reads, `rmp_serde` reads the same: every first byte, followed by
    /// nothing or by up to 8 bytes of a few patterns, as each type `decode` serves.
    #[test]
    fn every_item_decode_reads_rmp_serde_reads_the_same() {
        fn same<T>(bytes: &[u8]) -> usize
        where
            T: for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
        {
            let Ok(ours) = decode::<T>(bytes) else {
                return 0;
            };
            let theirs = rmp_serde::from_slice::<T>(bytes);
            assert_eq!(Some(&ours), theirs.as_ref().ok(), "{bytes:x?}");
            1
        }
        let mut read = 0;
        for first in 0..=u8::MAX {
            for len in 0..=8 {
                for fill in [0x00, 0x01, 0x41, 0x7f, 0x80, 0xff] {
                    let bytes: Vec<u8> = std::iter::once(first)
                        .chain(std::iter::repeat_n(fill, len))
                        .collect();
                    read += same::<u8>(&bytes)
                        + same::<u16>(&bytes)
                        + same::<u32>(&bytes)
                        + same::<u64>(&bytes)
                        + same::<i8>(&bytes)
                        + same::<i16>(&bytes)
                        + same::<i32>(&bytes)
                        + same::<i64>(&bytes)
                        + same::<bool>(&bytes)
                        + same::<String>(&bytes)
                        + same::<Visited>(&bytes)
                        + same::<std::net::Ipv4Addr>(&bytes);
                }
            }
        }
        // The fast path did read: the test is not vacuous.
        assert!(read > 5_000, "{read} items read");
    }

    #[test]
    fn types_that_write_themselves_otherwise_for_machines_are_written_as_for_machines() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
        let v4 = Ipv4Addr::new(1, 2, 3, 4);
        let socket = SocketAddr::new(IpAddr::V4(v4), 80);
        assert_eq!(encoded(&v4), None);
        assert_eq!(encoded(&IpAddr::V6(Ipv6Addr::LOCALHOST)), None);
        assert_eq!(encoded(&socket), None);
        let theirs = rmp_serde::to_vec_named(&v4).unwrap();
        assert!(decode::<Ipv4Addr>(&theirs).is_err());
        // As a string, it is not an `Ipv4Addr` to `rmp_serde`: nor to `decode`.
        let text = rmp_serde::to_vec_named("1.2.3.4").unwrap();
        assert!(rmp_serde::from_slice::<Ipv4Addr>(&text).is_err());
        assert!(decode::<Ipv4Addr>(&text).is_err());
    }

    #[test]
    fn strings_and_booleans_are_encoded_and_decoded_as_rmp_serde_does() {
        for len in [0, 1, 31, 32, 255, 256, 65_535, 65_536, 100_000] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let theirs = rmp_serde::to_vec_named(&text).unwrap();
            assert_eq!(encoded(&text).as_deref(), Some(&theirs[..]), "{len} bytes");
            assert_eq!(encoded(text.as_str()).as_deref(), Some(&theirs[..]));
            assert_eq!(decode::<String>(&theirs).ok(), Some(text), "{len} bytes");
        }
        for value in [false, true] {
            let theirs = rmp_serde::to_vec_named(&value).unwrap();
            assert_eq!(encoded(&value).as_deref(), Some(&theirs[..]));
            assert_eq!(decode::<bool>(&theirs).ok(), Some(value));
        }
    }

    #[test]
    fn what_is_not_a_lone_scalar_is_left_to_rmp_serde() {
        #[derive(Serialize, Deserialize)]
        struct Point {
            x: i64,
        }
        #[derive(Serialize)]
        struct Meters(u32);
        #[derive(Serialize)]
        enum Unit {
            Only,
        }
        assert_eq!(encoded(&Point { x: 1 }), None);
        assert_eq!(encoded(&Some(1u64)), None);
        assert_eq!(encoded(&1.5f64), None);
        assert_eq!(encoded(&vec![1u8]), None);
        assert_eq!(encoded(&'x'), None);
        assert_eq!(encoded(&1u128), None);
        assert_eq!(encoded(&Meters(1)), None);
        assert_eq!(encoded(&Unit::Only), None);
        assert_eq!(encoded(&()), None);
        let point = rmp_serde::to_vec_named(&Point { x: 1 }).unwrap();
        assert!(decode::<Point>(&point).is_err());
        assert!(decode::<u64>(&point).is_err());
        // Bytes left over, a value out of the type's range, a negative value for an unsigned
        // type, a string that is not UTF-8, a length past the end, nothing at all.
        for bytes in [
            &[0x01, 0x02][..],
            &[0xcd, 0x01, 0x00][..],
            &[0xff][..],
            &[0xa1, 0xff][..],
            &[0xa2, b'a'][..],
            &[][..],
        ] {
            assert!(decode::<u8>(bytes).is_err(), "{bytes:x?}");
            assert!(decode::<String>(bytes).is_err(), "{bytes:x?}");
        }
    }

    #[test]
    fn what_does_not_fit_the_output_is_refused() {
        let mut out = Buffer(Vec::new(), 4);
        assert!(encode(&u64::MAX, &mut out).is_err());
        assert!(encode(&(1u32 << 20), &mut out).is_err());
        assert!(encode(&70u16, &mut out).is_ok());
        assert_eq!(out.0, [70]);
        assert!(encode("hello", &mut Buffer(Vec::new(), 5)).is_err());
    }
}
