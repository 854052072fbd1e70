//! Handles travel as references: every handle type serializes as its segment's name, and
//! deserializing one reopens that segment (a child process reattaches the same memory). A
//! handle opened with a wider trust than the default (another owner, a wider mode: see
//! [`SegmentOptions`](crate::SegmentOptions)) carries it after the name, so the child accepts
//! the segment its parent accepted.

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
