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

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}
