//! The scripts every write runs through: a guard that lets a script act only on the object a
//! handle opened (see the module docs of `redis`), and what its refusals mean.

use std::sync::LazyLock;

use redis::Script;

use crate::error::{Error, OpenError};
use crate::segment::SegmentName;

/// The error code of a checked script that found its object's meta hash gone: the object was
/// removed while this handle was open ([`OpenError::NotFound`]).
const REMOVED: &str = "MEMSPACE_REMOVED";
/// The error code of a checked script that found another incarnation in the meta hash: the
/// object was removed and created again ([`OpenError::Replaced`]).
const REPLACED: &str = "MEMSPACE_REPLACED";
/// The error code of a checked script that found the meta hash without its `incarnation`
/// field (damage: the creator always writes it; [`Error::Corrupt`](crate::Error::Corrupt)).
const NO_INCARNATION: &str = "MEMSPACE_NO_INCARNATION";

/// What a [`checked_script`]'s refusal to run means for object `name`, if `err` is one; the
/// script did nothing. [`Conn`](super::Conn) reports it in place of the server's error.
pub(crate) fn guard_refusal(err: &redis::RedisError, name: &SegmentName) -> Option<Error> {
    let name = name.clone();
    let refusal = match err.code()? {
        REMOVED => OpenError::NotFound { name },
        REPLACED => OpenError::Replaced { name },
        NO_INCARNATION => {
            return Some(Error::Corrupt {
                name,
                what: "its meta record has no `incarnation` field".to_owned(),
            });
        }
        _ => return None,
    };
    Some(refusal.into())
}

/// A script that acts only on the object this handle opened (every write, and the reads that must
/// tell a removal from damage), run through [`Object::guarded`](super::Object::guarded), which passes the object's meta
/// hash as `KEYS[1]` and the handle's incarnation as an extra first argument. `body` runs only
/// while the meta hash exists and records that incarnation, and sees `ARGV` without it; otherwise
/// the script fails with [`REMOVED`] or [`REPLACED`] having written nothing. Checking inside the
/// script makes the check and the write one atomic step, in one round trip.
pub(crate) fn checked_script(body: &str) -> Script {
    let guard = format!(
        "local incarnation = table.remove(ARGV, 1)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('{REMOVED} the object was removed')
end
local found = redis.call('HGET', KEYS[1], 'incarnation')
if not found then
  return redis.error_reply('{NO_INCARNATION} the meta record has no incarnation')
end
if found ~= incarnation then
  return redis.error_reply('{REPLACED} the object was removed and created again')
end"
    );
    Script::new(&format!("{guard}\n{body}"))
}

/// Sets the string `KEYS[2]` to `ARGV[1]`, through the guard (a value's bytes, an event's flag).
pub(crate) static CHECKED_SET: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
redis.call('SET', KEYS[2], ARGV[1])
return 1
",
    )
});

/// Whether the server refused a command of `err` because a key holds another type.
pub(crate) fn is_wrong_type(err: &Error) -> bool {
    refused(err, &["WRONGTYPE"])
}

/// Whether `err` is the server refusing a command with one of the error `codes`.
pub(crate) fn refused(err: &Error, codes: &[&str]) -> bool {
    matches!(err, Error::Redis { source, .. }
        if source.downcast_ref::<redis::RedisError>().is_some_and(|e| refused_with(e, codes)))
}

/// Whether the server refused a command (or, for a pipeline or transaction, one of its
/// commands) with one of the error `codes`.
pub(crate) fn refused_with(err: &redis::RedisError, codes: &[&str]) -> bool {
    err.clone()
        .into_server_errors()
        .is_some_and(|errors| errors.iter().any(|(_, e)| codes.contains(&e.code())))
}

/// What is wrong, for a damage message that adds its own remedy: an error's `what` when it
/// has one, else the server's complaint.
pub(crate) fn damage_text(err: &Error) -> String {
    match err {
        Error::Corrupt { what, .. } => what.clone(),
        other => deepest_cause(other),
    }
}

/// The text of the deepest cause of `err` (the server's own complaint, for a refused command).
pub(crate) fn deepest_cause(err: &Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
