//! The typecodes `Value` and `Array` take: those of Python's `array` module, each with the
//! Rust number type it is stored as (a C `long` is 64 bits on Linux).

/// Calls `$callback! { "b" => I8(i8), ... }` with every typecode, the name of its variant and
/// its Rust type, so that `Value` and `Array` dispatch over one list.
macro_rules! with_typecodes {
    ($callback:ident) => {
        $callback! {
            "b" => I8(i8), "B" => U8(u8), "h" => I16(i16), "H" => U16(u16),
            "i" => I32(i32), "I" => U32(u32), "l" => Long(i64), "L" => ULong(u64),
            "q" => I64(i64), "Q" => U64(u64), "f" => F32(f32), "d" => F64(f64),
        }
    };
}

pub(crate) use with_typecodes;

/// The error for a typecode not in the list `known`.
pub(crate) fn unknown(what: &str, code: &str, known: &str) -> pyo3::PyErr {
    pyo3::exceptions::PyValueError::new_err(format!(
        "unknown typecode {code:?}: memspace's {what} takes one of {known:?} (as the array module)"
    ))
}
