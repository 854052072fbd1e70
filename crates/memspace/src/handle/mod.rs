//! Handles travel as references: every handle type serializes as its segment's name, and
//! deserializing one reopens that segment (a child process reattaches the same memory). A
//! handle opened with a wider trust than the default (another owner, a wider mode: see
//! [`SegmentOptions`](crate::SegmentOptions)) carries it after the name, so the child accepts
//! the segment its parent accepted. Only there: a name is read with its trust only while
//! [`decoding_from_own_process`] runs, around the bytes a worker and its parent exchange over
//! their private pipes. Anywhere else (a handle that arrives in a queue, a name in a file), a
//! name with trust in it is refused, so that whoever can write such bytes cannot widen what
//! this process opens. The password of a Redis name travels the same way: written out only
//! over those pipes (`encoding_for_own_process`), and shown as `***` everywhere else; a
//! handle's name that arrives from anywhere else does not get `MEMSPACE_REDIS_PASSWORD` sent
//! to the server it names (`opening_received_name`).

pub(crate) use crate::segment::decoding_from_own_process;

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
                serializer.serialize_str(&self.name().to_transport())
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
                $crate::segment::opening_received_name(|| Self::open(&name))
                    .map_err(::serde::de::Error::custom)
            }
        }
    };
}

/// Writes out the life-cycle methods every handle shares, each delegating to the handle's
/// `place` field ([`Place`]): `name`, `segment`, `unlink`, and with `typed` also
/// `recorded_type_name`. `$noun` names the kind in the docs ("list"); `local` says the kind
/// lives only in shared memory.
macro_rules! place_accessors {
    ($noun:literal, local $(, $typed:ident)?) => {
        place_accessors!(@with $noun,
            concat!("The ", $noun, "'s segment name."),
            concat!("The ", $noun, "'s segment (identity, size, address in this process). \
                Always `Some`: it lives only in shared memory (the `Option` is every handle's)."),
            concat!("Removes the ", $noun, "'s name while it still names this ", $noun, "'s \
                segment (see [`Segment::unlink`](crate::Segment::unlink)); handles already \
                open keep working."));
        place_accessors!(@typed $noun, "" $(, $typed)?);
    };
    ($noun:literal $(, $typed:ident)?) => {
        place_accessors!(@with $noun,
            concat!("The ", $noun, "'s name (`redis://HOST:PORT/NAME` for a Redis ", $noun, ")."),
            concat!("The ", $noun, "'s segment (identity, size, address in this process), or \
                `None` for a Redis ", $noun, ", which has none."),
            concat!("Removes the ", $noun, "'s name while it still names this ", $noun, "'s \
                segment (see [`Segment::unlink`](crate::Segment::unlink)); handles already \
                open keep working. A Redis ", $noun, ": deletes its keys, and the handles \
                still open fail their next call."));
        place_accessors!(@typed $noun, " On Redis it is whole." $(, $typed)?);
    };
    (@with $noun:literal, $name_doc:expr, $segment_doc:expr, $unlink_doc:expr) => {
        #[doc = $name_doc]
        #[must_use]
        pub fn name(&self) -> &$crate::segment::SegmentName {
            self.place.name()
        }

        #[doc = $segment_doc]
        #[must_use]
        pub fn segment(&self) -> Option<&$crate::Segment> {
            self.place.segment()
        }

        #[doc = $unlink_doc]
        ///
        /// # Errors
        ///
        /// [`OpenError::NotFound`](crate::OpenError::NotFound) if it was removed already.
        pub fn unlink(&self) -> $crate::Result<()> {
            self.place.unlink()
        }
    };
    (@typed $noun:literal, $redis_note:literal) => {};
    (@typed $noun:literal, $redis_note:literal, typed) => {
        #[doc = concat!("The item type recorded by the ", $noun, "'s creator: \
            [`std::any::type_name`] of the type it used, which need not be this handle's.")]
        ///
        #[doc = concat!("In shared memory the name is cut at \
            [`TYPE_NAME_MAX`](crate::segment::TYPE_NAME_MAX) bytes (see \
            [`Segment::type_name`](crate::Segment::type_name)).", $redis_note, " Tools use it \
            to refuse a write that a program of the creator's type could not read (the \
            `memspace` commands do).")]
        #[must_use]
        pub fn recorded_type_name(&self) -> &str {
            self.place.recorded_type_name()
        }
    };
}

/// Writes out the constructors that open a handle by name, for a handle type with a
/// constructor `at(Place) -> Self`: `open`, `open_with`, `open_in` and `from_segment`, and with
/// `create_in` also `create_in` (for a type whose `create` takes the name alone).
macro_rules! open_constructors {
    ($kind:expr, $noun:literal $(, $create_in:ident)?) => {
        #[doc = concat!("Opens the existing ", $noun, " `name` (`redis://HOST:PORT/NAME` on a \
            Redis server).")]
        ///
        /// # Errors
        ///
        /// [`OpenError::NotFound`](crate::OpenError::NotFound),
        /// [`OpenError::WrongKind`](crate::OpenError::WrongKind) if it holds something else, or a
        /// header problem.
        pub fn open(name: &str) -> $crate::Result<Self> {
            Ok(Self::at($crate::handle::Place::open(name, $kind)?))
        }

        #[doc = concat!("Opens the ", $noun, " `name`, accepting a segment as `options` allow \
            (another owner, a wider mode: see [`SegmentOptions::open`](crate::SegmentOptions::open)); \
            a Redis ", $noun, " is opened by its name alone.")]
        ///
        /// # Errors
        ///
        /// As `open`, and what [`SegmentOptions::open`](crate::SegmentOptions::open) refuses.
        pub fn open_with(name: &str, options: &$crate::SegmentOptions) -> $crate::Result<Self> {
            Ok(Self::at($crate::handle::Place::open_with(name, $kind, options)?))
        }

        #[doc = concat!("Opens the ", $noun, " `name` in `backend` (see \
            [`Backend::locate`](crate::Backend::locate)).")]
        ///
        /// # Errors
        ///
        /// As `open`.
        pub fn open_in(backend: &$crate::Backend, name: &str) -> $crate::Result<Self> {
            Self::open(&backend.locate(name))
        }

        #[doc = concat!("A ", $noun, " over an already open segment (for example one opened with \
            [`SegmentOptions::open`](crate::SegmentOptions::open), which can accept another \
            user's segment, or [`inspect::observe`](crate::inspect::observe), which does not \
            join its users).")]
        ///
        /// # Errors
        ///
        #[doc = concat!("[`OpenError::WrongKind`](crate::OpenError::WrongKind) if the segment \
            holds no ", $noun, ".")]
        pub fn from_segment(segment: $crate::Segment) -> $crate::Result<Self> {
            Ok(Self::at($crate::handle::Place::from_segment(segment, $kind)?))
        }

        $(open_constructors!(@$create_in $noun);)?
    };
    (@create_in $noun:literal) => {
        #[doc = concat!("Creates the ", $noun, " `name` in `backend` (see \
            [`Backend::locate`](crate::Backend::locate)).")]
        ///
        /// # Errors
        ///
        /// As `create`.
        pub fn create_in(backend: &$crate::Backend, name: &str) -> $crate::Result<Self> {
            Self::create(&backend.locate(name))
        }
    };
}

/// Writes out the constructors that create a handle's object, for a handle type with a
/// constructor `create_segment(&SegmentName, &SegmentOptions, anonymous) -> Result<Self>`:
/// `new` (anonymous), `create` and `create_with` (named).
macro_rules! create_constructors {
    ($noun:literal, local) => {
        create_constructors!(@with $noun, concat!("Creates the ", $noun, " `name` with `options` \
            (mode, initial and maximum size)."));
    };
    ($noun:literal) => {
        create_constructors!(@with $noun, concat!("Creates the ", $noun, " `name` with `options` \
            (mode, initial and maximum size; they do not apply on Redis)."));
    };
    (@with $noun:literal, $create_with_doc:expr) => {
        #[doc = concat!("Creates an anonymous ", $noun, ", removed when the last process using \
            it drops its handles.")]
        ///
        /// # Errors
        ///
        /// What the system refuses when creating the segment (no space, permissions).
        pub fn new() -> $crate::Result<Self> {
            Self::create_segment(
                &$crate::segment::SegmentName::anonymous(),
                &$crate::SegmentOptions::new(),
                true,
            )
        }

        #[doc = concat!("Creates the ", $noun, " `name`, which persists until removed \
            (`memspace rm NAME`, `unlink`).")]
        ///
        /// # Errors
        ///
        /// [`OpenError::AlreadyExists`](crate::OpenError::AlreadyExists),
        /// [`OpenError::InvalidName`](crate::OpenError::InvalidName), or what the system refuses.
        pub fn create(name: &str) -> $crate::Result<Self> {
            Self::create_with(name, &$crate::SegmentOptions::new())
        }

        #[doc = $create_with_doc]
        ///
        /// # Errors
        ///
        /// As `create`.
        pub fn create_with(name: &str, options: &$crate::SegmentOptions) -> $crate::Result<Self> {
            Self::create_segment(&$crate::segment::SegmentName::new(name)?, options, false)
        }
    };
}

/// Implements [`RedisEngine`] for a kind's Redis engine that is its object alone (a struct
/// whose one field is `object: Arc<Object>`).
#[cfg(feature = "redis")]
macro_rules! redis_engine {
    ($engine:ident) => {
        impl $crate::handle::RedisEngine for $engine {
            fn attach(object: ::std::sync::Arc<$crate::redis::Object>) -> Self {
                $engine { object }
            }

            fn object(&self) -> &$crate::redis::Object {
                &self.object
            }
        }
    };
}

mod place;

#[cfg(feature = "redis")]
pub(crate) use self::place::RedisEngine;
pub(crate) use self::place::{Blueprint, NoRedis, Place};
