//! [`Place`]: where the object behind a handle lives, a shared-memory segment or a Redis
//! object, and the life cycle every handle has in common: open and create by name, the name,
//! the creator's type, the segment, removal.
//!
//! A public handle type holds a `Place` and delegates these to it; its own methods `match` on
//! the place to run the kind's shared-memory engine or its Redis engine (the
//! `redis.rs` beside the kind), the way crossbeam-channel's `Sender` dispatches to its
//! flavors. A kind without a Redis engine uses [`NoRedis`], which has no values: its handles
//! are in shared memory by construction, and its `match`es need no Redis arm.
//!
//! Without the `redis` feature no kind has a Redis engine: each kind's `redis.rs` is not
//! built, its engine's name stands for [`NoRedis`], and its Redis arms are left out with
//! `#[cfg(feature = "redis")]`. The kinds match on [`Place::as_ref`], which then holds a
//! `NoRedis` by value, so a `match` without its Redis arm is still exhaustive; the
//! one `match` on the uninhabited engine is in `as_ref`. A Redis name then reaches the
//! shared-memory side, which refuses it with
//! [`OpenError::RedisDisabled`](crate::OpenError::RedisDisabled).

use std::sync::Arc;

use crate::error::Result;
#[cfg(feature = "redis")]
use crate::redis::{Init, Object};
use crate::segment::{InSegment, Kind, Segment, SegmentName, SegmentOptions};

/// Where one handle's object lives.
///
/// `S` is the shared-memory side (the segment itself, or a typed view of it such as a
/// [`Mutex`](crate::Mutex)); `R` is the kind's Redis engine.
#[derive(Clone)]
pub(crate) enum Place<R = NoRedis, S = Arc<Segment>> {
    /// In a segment of this machine's shared memory.
    Shm(S),
    /// On a Redis server.
    Redis(R),
}

/// A kind's Redis engine: the kind's operations on one Redis `Object`.
#[cfg(feature = "redis")]
pub(crate) trait RedisEngine: Sized {
    /// Whether the kind has a Redis backend at all ([`NoRedis`] says no).
    const EXISTS: bool = true;

    /// The engine of `object`, which was opened or created as this kind.
    fn attach(object: Arc<Object>) -> Self;

    /// The object it works on.
    fn object(&self) -> &Object;
}

/// A boxed engine, for a handle that keeps its shared-memory side inline and small.
#[cfg(feature = "redis")]
impl<R: RedisEngine> RedisEngine for Box<R> {
    const EXISTS: bool = R::EXISTS;

    fn attach(object: Arc<Object>) -> Self {
        Box::new(R::attach(object))
    }

    fn object(&self) -> &Object {
        (**self).object()
    }
}

/// Without the `redis` feature the only engine is [`NoRedis`], which has no values.
#[cfg(not(feature = "redis"))]
pub(crate) trait RedisEngine: Sized {
    /// An engine cannot exist: no place holds one.
    fn absent(&self) -> !;
}

/// The Redis engine of a kind that lives only in shared memory: there is none.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NoRedis {}

#[cfg(feature = "redis")]
impl RedisEngine for NoRedis {
    const EXISTS: bool = false;

    fn attach(_: Arc<Object>) -> Self {
        unreachable!("a place of a kind without a Redis backend is only made in shared memory")
    }

    fn object(&self) -> &Object {
        match *self {}
    }
}

#[cfg(not(feature = "redis"))]
impl RedisEngine for NoRedis {
    fn absent(&self) -> ! {
        match *self {}
    }
}

#[cfg(not(feature = "redis"))]
impl<R: RedisEngine> RedisEngine for Box<R> {
    fn absent(&self) -> ! {
        (**self).absent()
    }
}

/// How a new object is made: what is recorded of it, and its first contents.
pub(crate) struct Blueprint<'a> {
    /// What it is.
    pub(crate) kind: Kind,
    /// Mode and sizes of a new segment (not used on Redis).
    pub(crate) options: &'a SegmentOptions,
    /// Whether the name is removed as soon as the segment is mapped (an anonymous object).
    pub(crate) anonymous: bool,
    /// The item type its creator used, recorded by both backends (empty for a kind that holds
    /// no items).
    pub(crate) type_name: &'a str,
    /// What else a new Redis object records, and its first data.
    #[cfg(feature = "redis")]
    pub(crate) redis: Init<'a>,
}

impl<'a> Blueprint<'a> {
    /// A blueprint of a `kind` whose items are `T`s (the type its creator records).
    pub(crate) fn of<T: ?Sized>(kind: Kind, options: &'a SegmentOptions, anonymous: bool) -> Self {
        Blueprint {
            type_name: std::any::type_name::<T>(),
            ..Self::untyped(kind, options, anonymous)
        }
    }

    /// A blueprint of a `kind` that holds no items (a lock, an event).
    pub(crate) fn untyped(kind: Kind, options: &'a SegmentOptions, anonymous: bool) -> Self {
        Blueprint {
            kind,
            options,
            anonymous,
            type_name: "",
            #[cfg(feature = "redis")]
            redis: Init::default(),
        }
    }
}

impl<R, S> Place<R, S> {
    /// The same place, its shared-memory side turned into `shm` of it (a lock's
    /// [`LockAnchor`], a typed view), its Redis engine into `redis` of it (boxed, say).
    pub(crate) fn map<Q, T>(
        self,
        shm: impl FnOnce(S) -> T,
        redis: impl FnOnce(R) -> Q,
    ) -> Place<Q, T> {
        match self {
            Place::Shm(side) => Place::Shm(shm(side)),
            Place::Redis(engine) => Place::Redis(redis(engine)),
        }
    }
}

impl<R: RedisEngine, S> Place<R, S> {
    /// The place, borrowed, for a `match`: `Place::Shm(&shm)` or `Place::Redis(&engine)`.
    #[cfg(feature = "redis")]
    pub(crate) fn as_ref(&self) -> Place<&R, &S> {
        match self {
            Place::Shm(shm) => Place::Shm(shm),
            Place::Redis(engine) => Place::Redis(engine),
        }
    }

    /// The place, borrowed, for a `match`. Without the `redis` feature its Redis side is a
    /// [`NoRedis`] by value, which has no values, so a `match` needs no Redis arm.
    #[cfg(not(feature = "redis"))]
    pub(crate) fn as_ref(&self) -> Place<NoRedis, &S> {
        match self {
            Place::Shm(shm) => Place::Shm(shm),
            Place::Redis(engine) => engine.absent(),
        }
    }
}

impl<R: RedisEngine, S: InSegment> Place<R, S> {
    /// The object's name (`redis://HOST:PORT/NAME` on Redis).
    pub(crate) fn name(&self) -> &SegmentName {
        match self.as_ref() {
            Place::Shm(shm) => shm.segment().name(),
            #[cfg(feature = "redis")]
            Place::Redis(engine) => engine.object().name(),
        }
    }

    /// The item type recorded by the object's creator (see `recorded_type_name` on the
    /// handles).
    pub(crate) fn recorded_type_name(&self) -> &str {
        match self.as_ref() {
            Place::Shm(shm) => shm.segment().type_name(),
            #[cfg(feature = "redis")]
            Place::Redis(engine) => engine.object().type_name(),
        }
    }

    /// The object's segment, or `None` on Redis, which has none.
    pub(crate) fn segment(&self) -> Option<&Segment> {
        match self.as_ref() {
            Place::Shm(shm) => Some(shm.segment()),
            #[cfg(feature = "redis")]
            Place::Redis(_) => None,
        }
    }

    /// Removes the object's name (see [`Segment::unlink`]; on Redis its keys).
    pub(crate) fn unlink(&self) -> Result<()> {
        match self.as_ref() {
            Place::Shm(shm) => Ok(shm.segment().unlink()?),
            #[cfg(feature = "redis")]
            Place::Redis(engine) => engine.object().remove(),
        }
    }

    /// Opens the Redis object `name` as a `kind`, if `name` is a Redis name of a kind with a
    /// Redis backend; `None` for a shared-memory name.
    #[cfg(feature = "redis")]
    pub(crate) fn open_redis(name: &SegmentName, kind: Kind) -> Result<Option<R>> {
        if R::EXISTS && name.is_redis() {
            Ok(Some(R::attach(Object::open(name, kind)?)))
        } else {
            Ok(None)
        }
    }

    /// Without the `redis` feature, always `None`: the shared-memory side refuses a Redis
    /// name.
    #[cfg(not(feature = "redis"))]
    pub(crate) fn open_redis(_: &SegmentName, _: Kind) -> Result<Option<R>> {
        Ok(None)
    }

    /// Creates the Redis object `name` from `blueprint`, if `name` is a Redis name of a kind
    /// with a Redis backend; `None` for a shared-memory name.
    #[cfg(feature = "redis")]
    pub(crate) fn create_redis(name: &SegmentName, blueprint: &Blueprint<'_>) -> Result<Option<R>> {
        if R::EXISTS && name.is_redis() {
            Ok(Some(R::attach(Object::create(
                name,
                blueprint.kind,
                blueprint.type_name,
                &blueprint.redis,
            )?)))
        } else {
            Ok(None)
        }
    }

    /// Without the `redis` feature, always `None`: the shared-memory side refuses a Redis
    /// name.
    #[cfg(not(feature = "redis"))]
    pub(crate) fn create_redis(_: &SegmentName, _: &Blueprint<'_>) -> Result<Option<R>> {
        Ok(None)
    }
}

impl<R: RedisEngine> Place<R> {
    /// Opens the object `name`, which must hold a `kind`.
    pub(crate) fn open(name: &str, kind: Kind) -> Result<Self> {
        let name = SegmentName::new(name)?;
        if let Some(engine) = Self::open_redis(&name, kind)? {
            return Ok(Place::Redis(engine));
        }
        Ok(Place::Shm(Arc::new(Segment::open(&name, Some(kind))?)))
    }

    /// Opens the object `name`, which must hold a `kind`, accepting a segment as `options`
    /// allow (another owner, a wider mode: see [`SegmentOptions::open`]); a Redis object is
    /// opened by its name alone.
    pub(crate) fn open_with(name: &str, kind: Kind, options: &SegmentOptions) -> Result<Self> {
        let name = SegmentName::new(name)?;
        if let Some(engine) = Self::open_redis(&name, kind)? {
            return Ok(Place::Redis(engine));
        }
        Ok(Place::Shm(Arc::new(
            options.open_kind(name.as_str(), kind)?,
        )))
    }

    /// Creates the object `name` from `blueprint`; `init` gives a new segment its first
    /// contents (it starts zero-filled).
    pub(crate) fn create(
        name: &SegmentName,
        blueprint: &Blueprint<'_>,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Self> {
        if let Some(engine) = Self::create_redis(name, blueprint)? {
            return Ok(Place::Redis(engine));
        }
        let segment = Segment::create(
            name,
            blueprint.kind,
            blueprint.type_name,
            blueprint.options,
            blueprint.anonymous,
            init,
        )?;
        Ok(Place::Shm(Arc::new(segment)))
    }

    /// The place of an already open segment, which must hold a `kind` (for the
    /// `from_segment` constructors).
    pub(crate) fn from_segment(segment: Segment, kind: Kind) -> Result<Self> {
        Ok(Place::Shm(Arc::new(segment.expecting(kind)?)))
    }

    /// The segment, on the shared-memory side.
    pub(crate) fn shm(&self) -> Option<&Arc<Segment>> {
        match self.as_ref() {
            Place::Shm(segment) => Some(segment),
            #[cfg(feature = "redis")]
            Place::Redis(_) => None,
        }
    }
}

impl<S> Place<NoRedis, S> {
    /// The shared-memory side of a place of a kind without a Redis backend, which has no
    /// other.
    pub(crate) fn local(&self) -> &S {
        match self {
            Place::Shm(shm) => shm,
            Place::Redis(never) => match *never {},
        }
    }
}
