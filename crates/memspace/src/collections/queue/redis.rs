//! [`RedisQueue`]: the Redis engine of a `Queue`, a Redis stream read through one consumer
//! group.
//!
//! * `put`: a script checks the bound (`XLEN` counts every unacknowledged item), takes the
//!   next sequence number (`INCR memspace:{NAME}:seq`) and `XADD`s the item.
//! * `receive`: first a script takes over items that have been in flight longer than the
//!   queue's lease (their receiver died, or was too slow, or put them back), else `XREADGROUP`
//!   takes new ones (`COUNT` of a batch). The stream's delivery counter is
//!   [`Delivery::deliveries`].
//! * `put_many`: one script checks the bound for the whole batch and `XADD`s every item.
//! * `ack` of a batch: one script `XACK`s and `XDEL`s every item still in flight with its
//!   receiver.
//! * `ack`: `XACK` and `XDEL`, only if the item is still in flight with this receiver.
//! * `nack`: the item's idle time is set far in the past, so the next receive takes it first.
//! * `task_done`: `XACK` and `XDEL` of the oldest item in flight with this process's consumer.
//! * `join`: polls until the stream is empty (every item acknowledged).
//! * `close`: the field `closed` of the meta hash (1, or 2 for an immediate close, which also
//!   deletes the entries not in flight); `put` and `receive` check it in their scripts.
//!
//! Unlike shared memory, a Redis queue cannot see whether a receiver on another machine is
//! alive: an item is redelivered once it has been in flight longer than the lease (30 s, or
//! `?lease_ms=N` in the name). A receiver slower than that gets
//! [`QueueError::NotInFlight`](crate::collections::QueueError::NotInFlight) on `ack`, and the
//! item is processed twice: delivery is at least once.
//!
//! The blocking calls poll: a receiver blocks in the server for at most 100 ms at a time, so
//! that it looks for items whose lease ran out in between; a sender of a full bounded queue
//! asks again every 2 ms, backing off to 50 ms, and so does a joiner. A close is noticed by
//! a waiter at its next poll.
//!
//! [`Delivery::deliveries`]: crate::collections::Delivery::deliveries

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{Script, ScriptInvocation, Value};

use super::QueueError;
use crate::collections::wait::{Next, deadline, next_sleep};
use crate::error::{Error, Result};
use crate::redis::{Object, checked_script, refused};
use crate::sys;

/// How long an item may be in flight before another receiver takes it over.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The consumer group every consumer of a queue belongs to.
pub(crate) const GROUP: &str = "memspace";
/// The idle time given to a nacked item: far past any lease.
const PUT_BACK_IDLE_MS: u64 = 1 << 40;

/// Claims the oldest items whose lease ran out (or that were put back), at most `ARGV[4]`, in
/// the reply shape of `XAUTOCLAIM`. `XAUTOCLAIM ... COUNT 1` looks at no more than 10 pending
/// entries per call, so an item behind 10 others in flight would wait for ever: `XPENDING ...
/// IDLE` filters first. An entry deleted while pending is dropped from the group's list and the
/// next one is tried.
///
/// On a closed queue it answers `{'closed', {}}` instead: at once after an immediate close,
/// else once the stream is empty (nothing is left unacknowledged).
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local closed = redis.call('HGET', KEYS[1], 'closed')
if closed == '2' or (closed and redis.call('XLEN', KEYS[2]) == 0) then
  return {'closed', {}}
end
local max = tonumber(ARGV[4])
local pending = redis.call('XPENDING', KEYS[2], ARGV[1], 'IDLE', ARGV[3], '-', '+', math.max(max, 10))
local taken = {}
for _, row in ipairs(pending) do
  local claimed = redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], ARGV[3], row[1])
  if #claimed > 0 and claimed[1] then
    taken[#taken + 1] = claimed[1]
    if #taken >= max then break end
  else
    redis.call('XACK', KEYS[2], ARGV[1], row[1])
  end
end
return {'0-0', taken}
",
    )
});

/// Appends an item unless the queue is full (0), closed (-1) or was removed; returns its
/// sequence number.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
if redis.call('HEXISTS', KEYS[1], 'closed') == 1 then return -1 end
local capacity = tonumber(ARGV[2])
if capacity > 0 and redis.call('XLEN', KEYS[2]) >= capacity then return 0 end
local seq = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[2], '*', 'seq', seq, 'v', ARGV[1])
return seq
",
    )
});

/// Appends the items `ARGV[3..]` unless the queue has no room for all of them (0), is closed
/// (-1) or was removed; returns the last sequence number.
static PUT_MANY: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
if redis.call('HEXISTS', KEYS[1], 'closed') == 1 then return -1 end
local capacity = tonumber(ARGV[2])
local n = #ARGV - 2
if capacity > 0 and redis.call('XLEN', KEYS[2]) + n > capacity then return 0 end
local seq = 0
for i = 3, #ARGV do
  seq = redis.call('INCR', KEYS[3])
  redis.call('XADD', KEYS[2], '*', 'seq', seq, 'v', ARGV[i])
end
return seq
",
    )
});

/// Acknowledges the items `ARGV[3..]` that are in flight with consumer `ARGV[2]`: for each,
/// 1 if it was, else 0.
static ACK_MANY: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local done = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 0 or p[1][2] ~= ARGV[2] then
    done[#done + 1] = 0
  else
    redis.call('XACK', KEYS[2], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[2], ARGV[i])
    done[#done + 1] = 1
  end
end
return done
",
    )
});

/// Acknowledges an item if it is in flight with this consumer: 1, else 0.
static ACK: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local p = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return 1
",
    )
});

/// Puts an item back if it is in flight with this consumer: 1, else 0. After an immediate
/// close the item is discarded instead.
static NACK: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local p = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
if redis.call('HGET', KEYS[1], 'closed') == '2' then
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
  return 1
end
redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', ARGV[4], 'JUSTID')
return 1
",
    )
});

/// Acknowledges the oldest item in flight with consumer `ARGV[2]` (`task_done`): 1, or 0 if
/// it holds none.
static ACK_OLDEST: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local p = redis.call('XPENDING', KEYS[2], ARGV[1], '-', '+', 1, ARGV[2])
if #p == 0 then return 0 end
redis.call('XACK', KEYS[2], ARGV[1], p[1][1])
redis.call('XDEL', KEYS[2], p[1][1])
return 1
",
    )
});

/// Discards the entries in flight for at least `ARGV[2]` ms (a lease, or more): their
/// receivers died or gave up, and after an immediate close nobody takes them again.
const DISCARD_EXPIRED: &str = r"
local function discard_expired(idle)
  local rows = redis.call('XPENDING', KEYS[2], ARGV[1], 'IDLE', idle, '-', '+', 1000)
  for _, row in ipairs(rows) do
    redis.call('XACK', KEYS[2], ARGV[1], row[1])
    redis.call('XDEL', KEYS[2], row[1])
  end
end
";

/// Closes the queue: the meta field `closed` becomes `ARGV[3]` (1, or 2 for an immediate
/// close, which a later plain close does not undo). An immediate close also discards the
/// entries not in flight (ready ones) and those whose lease (`ARGV[2]` ms) ran out, and the
/// ones put back.
static CLOSE: LazyLock<Script> = LazyLock::new(|| {
    checked_script(&format!(
        r"{DISCARD_EXPIRED}
if redis.call('HGET', KEYS[1], 'closed') ~= '2' then
  redis.call('HSET', KEYS[1], 'closed', ARGV[3])
end
if ARGV[3] == '2' then
  local taken = {{}}
  local n = redis.call('XLEN', KEYS[2])
  for _, row in ipairs(redis.call('XPENDING', KEYS[2], ARGV[1], '-', '+', n + 1)) do
    taken[row[1]] = true
  end
  for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do
    if not taken[entry[1]] then redis.call('XDEL', KEYS[2], entry[1]) end
  end
  discard_expired(ARGV[2])
end
return 1
"
    ))
});

/// How many items are unacknowledged (the stream's length), after discarding, on a queue
/// closed immediately, the items whose lease (`ARGV[2]` ms) ran out.
static UNFINISHED: LazyLock<Script> = LazyLock::new(|| {
    checked_script(&format!(
        r"{DISCARD_EXPIRED}
if redis.call('HGET', KEYS[1], 'closed') == '2' then discard_expired(ARGV[2]) end
return redis.call('XLEN', KEYS[2])
"
    ))
});

/// The meta field `closed`: 0 open, 1 closed, 2 closed immediately.
static CLOSED_STATE: LazyLock<Script> = LazyLock::new(|| {
    checked_script("return tonumber(redis.call('HGET', KEYS[1], 'closed') or '0')")
});

/// Waiting items (the stream's length less the items in flight) and items in flight.
static COUNTS: LazyLock<Script> = LazyLock::new(|| {
    checked_script(
        r"
local n = redis.call('XLEN', KEYS[2])
local p = redis.call('XPENDING', KEYS[2], ARGV[1])
return {n - p[1], p[1]}
",
    )
});

/// This process's consumer name in the group: `PID-NONCE` (a forked child gets its own).
fn consumer() -> String {
    static NAME: Mutex<Option<(u32, String)>> = Mutex::new(None);
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let pid = sys::pid();
    let mut name = NAME.lock().unwrap_or_else(PoisonError::into_inner);
    match &*name {
        Some((owner, text)) if *owner == pid => text.clone(),
        _ => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let text = format!(
                "{pid}-{nanos:08x}{}",
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            );
            *name = Some((pid, text.clone()));
            text
        }
    }
}

/// An item handed out by [`RedisQueue::receive`].
#[derive(Debug)]
pub(crate) struct Received {
    /// The stream entry's id.
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) deliveries: u32,
    pub(crate) payload: Vec<u8>,
    /// The consumer that received it.
    pub(crate) consumer: String,
}

/// The Redis side of a `Queue`.
#[derive(Debug, Clone)]
pub(crate) struct RedisQueue {
    object: Arc<Object>,
    items: String,
    /// The sequence counter.
    seq: String,
    lease: Duration,
}

/// `[id, [field, value, ...]]` of a stream entry: its id, `seq` and `v`.
fn entry(value: &Value) -> Option<(String, u64, Vec<u8>)> {
    let Value::Array(parts) = value else {
        return None;
    };
    let id = redis::from_redis_value_ref::<String>(parts.first()?).ok()?;
    let fields: Vec<Vec<u8>> = redis::from_redis_value_ref(parts.get(1)?).ok()?;
    let mut seq = 0;
    let mut payload = None;
    for pair in fields.chunks(2) {
        if let [field, value] = pair {
            match field.as_slice() {
                b"seq" => seq = std::str::from_utf8(value).ok()?.parse().ok()?,
                b"v" => payload = Some(value.clone()),
                _ => {}
            }
        }
    }
    Some((id, seq, payload?))
}

impl crate::handle::RedisEngine for RedisQueue {
    fn attach(object: Arc<Object>) -> Self {
        RedisQueue::new(object)
    }

    fn object(&self) -> &Object {
        self.object()
    }
}

impl RedisQueue {
    pub(crate) fn new(object: Arc<Object>) -> Self {
        let lease = object
            .lease_ms()
            .map_or(DEFAULT_LEASE, Duration::from_millis);
        RedisQueue {
            items: object.key("items"),
            seq: object.key("seq"),
            object,
            lease,
        }
    }

    pub(crate) fn object(&self) -> &Object {
        &self.object
    }

    /// Turns the server's "no such stream or group" (`NOGROUP`, or `UNBLOCKED` for a receiver
    /// whose stream was deleted while it waited) into what it means (see
    /// [`Object::explain_missing`]): the queue was removed, or created again, or its stream or
    /// group is damaged.
    fn explain_missing_group(&self, op: &'static str, err: Error) -> Error {
        if !refused(&err, &["NOGROUP", "UNBLOCKED"]) {
            return err;
        }
        self.object.explain_missing(
            op,
            format!(
                "its stream `{}` or the stream's consumer group `{GROUP}` is missing",
                self.items
            ),
        )
    }

    /// The id, sequence number and payload of a stream entry (see [`entry`]).
    fn stream_entry(&self, value: &Value) -> Result<(String, u64, Vec<u8>)> {
        entry(value).ok_or_else(|| Error::Corrupt {
            name: self.object.name().clone(),
            what: "a stream entry has no item".to_owned(),
        })
    }

    /// Runs `script` on the stream with the group's name as its first argument and what
    /// `args` adds after it, explaining a missing stream or group (see
    /// [`RedisQueue::explain_missing_group`]). A script that can be repeated (`retried`) is
    /// retried like a read.
    fn on_group<V: redis::FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        retried: bool,
        args: impl Fn(&mut ScriptInvocation<'_>),
    ) -> Result<V> {
        let object = &self.object;
        let run = |c: &mut crate::redis::Link| {
            let mut invocation = object.guarded(script);
            invocation.key(&self.items).arg(GROUP);
            args(&mut invocation);
            invocation.invoke(c)
        };
        let answer = if retried {
            object.conn().read(object.name(), op, run)
        } else {
            object.conn().write(object.name(), op, run)
        };
        answer.map_err(|err| self.explain_missing_group(op, err))
    }

    /// [`QueueError::Closed`] for this queue.
    fn closed_error(&self) -> QueueError {
        QueueError::Closed {
            name: self.object.name().clone(),
        }
    }

    /// The lease in milliseconds, as the scripts take it.
    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// Appends `payload` (see [`RedisQueue::put`]), polling a full queue until a place frees
    /// up; `false` once `timeout` has passed first (at once for a zero timeout).
    pub(crate) fn put_until(
        &self,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<bool, QueueError> {
        let deadline = deadline(timeout);
        let mut pause = Duration::from_millis(2);
        loop {
            if self.put(payload)? {
                return Ok(true);
            }
            match next_sleep(timeout, deadline, Some(pause)) {
                Next::Sleep(sleep) => std::thread::sleep(sleep.unwrap_or(pause)),
                Next::GiveUp => return Ok(false),
            }
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Takes an item (see [`RedisQueue::receive`]), blocking in the server for at most 100 ms
    /// at a time, so that items whose lease ran out are looked for in between; `None` once
    /// `timeout` has passed first (after one look for a zero timeout).
    pub(crate) fn receive_until(
        &self,
        timeout: Option<Duration>,
    ) -> std::result::Result<Option<Received>, QueueError> {
        Ok(self
            .receive_many_until(timeout, 1)?
            .and_then(|mut items| items.pop()))
    }

    /// Takes up to `max` items (see [`RedisQueue::receive`]) as [`RedisQueue::receive_until`]
    /// takes one.
    pub(crate) fn receive_many_until(
        &self,
        timeout: Option<Duration>,
        max: usize,
    ) -> std::result::Result<Option<Vec<Received>>, QueueError> {
        const CHUNK: Duration = Duration::from_millis(100);
        let deadline = deadline(timeout);
        loop {
            let block = match next_sleep(timeout, deadline, Some(CHUNK)) {
                Next::Sleep(block) => block.filter(|b| !b.is_zero()),
                Next::GiveUp => None,
            };
            let items = self.receive(block, max)?;
            if !items.is_empty() {
                return Ok(Some(items));
            }
            if let Next::GiveUp = next_sleep(timeout, deadline, Some(CHUNK)) {
                return Ok(None);
            }
        }
    }

    /// Waits until no item is left unacknowledged, polling every 2 ms backing off to 50 ms;
    /// `false` once `timeout` has passed first. After an immediate close, items whose lease
    /// ran out are discarded meanwhile.
    pub(crate) fn join_until(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = deadline(timeout);
        let mut pause = Duration::from_millis(2);
        loop {
            let lease = self.lease_ms();
            let unfinished: u64 = self.on_group("joining", &UNFINISHED, true, |script| {
                script.arg(lease);
            })?;
            if unfinished == 0 {
                return Ok(true);
            }
            match next_sleep(timeout, deadline, Some(pause)) {
                Next::Sleep(sleep) => std::thread::sleep(sleep.unwrap_or(pause)),
                Next::GiveUp => return Ok(false),
            }
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Closes the queue, immediately or not (see [`CLOSE`]). Waiters notice within their
    /// polling interval.
    pub(crate) fn close(&self, immediately: bool) -> Result<()> {
        let lease = self.lease_ms();
        let _: u64 = self.on_group("closing", &CLOSE, false, |script| {
            script.arg(lease).arg(if immediately { 2 } else { 1 });
        })?;
        Ok(())
    }

    /// Whether the queue was closed: `Some(true)` immediately.
    pub(crate) fn closed(&self) -> Result<Option<bool>> {
        let object = &self.object;
        let state: u64 = object.conn().read(object.name(), "reading", |c| {
            object.guarded(&CLOSED_STATE).invoke(c)
        })?;
        Ok(match state {
            0 => None,
            1 => Some(false),
            _ => Some(true),
        })
    }

    /// Acknowledges the oldest item in flight with this process (`task_done`): `false` if it
    /// holds none.
    pub(crate) fn ack_oldest(&self) -> Result<bool> {
        let consumer = consumer();
        let done: u64 = self.on_group("marking done", &ACK_OLDEST, false, |script| {
            script.arg(&consumer);
        })?;
        Ok(done == 1)
    }

    /// Appends `payloads` in one script, all or none, polling a bounded queue until it has
    /// room for all of them (as [`RedisQueue::put_until`]); `false` once `timeout` has passed
    /// first.
    pub(crate) fn put_many_until(
        &self,
        payloads: &[&[u8]],
        timeout: Option<Duration>,
    ) -> std::result::Result<bool, QueueError> {
        let object = &self.object;
        let capacity = object.capacity();
        if capacity != 0 && payloads.len() as u64 > capacity {
            return Err(QueueError::Full {
                name: object.name().clone(),
                capacity,
            });
        }
        let deadline = deadline(timeout);
        let mut pause = Duration::from_millis(2);
        loop {
            let seq: i64 = object.conn().write(object.name(), "putting", |c| {
                let mut invocation = object.guarded(&PUT_MANY);
                invocation
                    .key(&self.items)
                    .key(&self.seq)
                    .arg(0)
                    .arg(capacity);
                for payload in payloads {
                    invocation.arg(*payload);
                }
                invocation.invoke(c)
            })?;
            if seq < 0 {
                return Err(self.closed_error());
            }
            if seq != 0 {
                return Ok(true);
            }
            match next_sleep(timeout, deadline, Some(pause)) {
                Next::Sleep(sleep) => std::thread::sleep(sleep.unwrap_or(pause)),
                Next::GiveUp => return Ok(false),
            }
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Appends an item unless the queue is at its capacity; returns whether it was added.
    /// Fails with `OpenError::NotFound` if the queue was removed, [`QueueError::Closed`] if it
    /// was closed.
    pub(crate) fn put(&self, payload: &[u8]) -> std::result::Result<bool, QueueError> {
        let object = &self.object;
        let seq: i64 = object.conn().write(object.name(), "putting", |c| {
            object
                .guarded(&PUT)
                .key(&self.items)
                .key(&self.seq)
                .arg(payload)
                .arg(object.capacity())
                .invoke(c)
        })?;
        if seq < 0 {
            return Err(self.closed_error());
        }
        Ok(seq != 0)
    }

    /// Takes an item: one whose lease ran out (or that was put back) first, else a new one,
    /// waiting up to `block` for it.
    /// [`QueueError::Closed`] if the queue was closed (see [`CLAIM`]).
    pub(crate) fn receive(
        &self,
        block: Option<Duration>,
        max: usize,
    ) -> std::result::Result<Vec<Received>, QueueError> {
        let consumer = consumer();
        let object = &self.object;
        let lease_ms = self.lease_ms();
        let claimed: Value = self.on_group("receiving", &CLAIM, false, |script| {
            script.arg(&consumer).arg(lease_ms).arg(max.max(1));
        })?;
        if let Value::Array(parts) = &claimed
            && parts.first().is_some_and(|tag| {
                redis::from_redis_value_ref::<String>(tag).is_ok_and(|t| t == "closed")
            })
        {
            return Err(self.closed_error());
        }
        if let Value::Array(parts) = &claimed
            && let Some(Value::Array(entries)) = parts.get(1)
            && !entries.is_empty()
        {
            let entries = entries
                .iter()
                .map(|value| self.stream_entry(value))
                .collect::<Result<Vec<_>>>()?;
            let (first, last) = (&entries[0].0, &entries[entries.len() - 1].0);
            // The delivery counts, in one call: `[id, consumer, idle, deliveries]` rows.
            let pending: Value = object.conn().read(object.name(), "receiving", |c| {
                redis::cmd("XPENDING")
                    .arg(&self.items)
                    .arg(GROUP)
                    .arg(first)
                    .arg(last)
                    .arg(entries.len().max(1) * 4)
                    .arg(&consumer)
                    .query(c)
            })?;
            let mut counts = std::collections::HashMap::new();
            if let Value::Array(rows) = &pending {
                for row in rows {
                    if let Value::Array(fields) = row
                        && let (Some(id), Some(count)) = (fields.first(), fields.get(3))
                        && let (Ok(id), Ok(count)) = (
                            redis::from_redis_value_ref::<String>(id),
                            redis::from_redis_value_ref::<u32>(count),
                        )
                    {
                        counts.insert(id, count);
                    }
                }
            }
            let mut items: Vec<Received> = entries
                .into_iter()
                .map(|(id, seq, payload)| Received {
                    deliveries: counts.get(&id).copied().unwrap_or(2),
                    id,
                    seq,
                    payload,
                    consumer: consumer.clone(),
                })
                .collect();
            // Room left in the batch: new items too, without waiting for them.
            if items.len() < max {
                items.extend(self.read_new(&consumer, None, max - items.len())?);
            }
            return Ok(items);
        }
        self.read_new(&consumer, block, max)
    }

    /// Takes up to `max` items never delivered (`XREADGROUP`), waiting up to `block` for one.
    fn read_new(
        &self,
        consumer: &str,
        block: Option<Duration>,
        max: usize,
    ) -> std::result::Result<Vec<Received>, QueueError> {
        let object = &self.object;
        let read: Value = object
            .conn()
            .write(object.name(), "receiving", |c| {
                let mut command = redis::cmd("XREADGROUP");
                command
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(consumer)
                    .arg("COUNT")
                    .arg(max.max(1));
                if let Some(block) = block {
                    let ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1);
                    command.arg("BLOCK").arg(ms);
                }
                command.arg("STREAMS").arg(&self.items).arg(">").query(c)
            })
            .map_err(|err| self.explain_missing_group("receiving", err))?;
        // [[stream, [[id, fields]]]] (RESP2) or a map stream -> entries (RESP3).
        let entries = match &read {
            Value::Nil => return Ok(Vec::new()),
            Value::Array(streams) => streams.first().and_then(|s| match s {
                Value::Array(pair) => pair.get(1),
                _ => None,
            }),
            Value::Map(streams) => streams.first().map(|(_, entries)| entries),
            _ => None,
        };
        let Some(Value::Array(entries)) = entries else {
            return Ok(Vec::new());
        };
        entries
            .iter()
            .map(|value| {
                let (id, seq, payload) = self.stream_entry(value)?;
                Ok(Received {
                    id,
                    seq,
                    deliveries: 1,
                    payload,
                    consumer: consumer.to_owned(),
                })
            })
            .collect::<Result<Vec<_>>>()
            .map_err(QueueError::from)
    }

    /// Acknowledges `items` in one script: for each, whether it was still in flight with its
    /// receiver (and is now acknowledged).
    pub(crate) fn ack_many(&self, items: &[Received]) -> Result<Vec<bool>> {
        let Some(first) = items.first() else {
            return Ok(Vec::new());
        };
        let done: Vec<u64> = self.on_group("acknowledging", &ACK_MANY, true, |invocation| {
            invocation.arg(&first.consumer);
            for item in items {
                invocation.arg(&item.id);
            }
        })?;
        Ok(done.into_iter().map(|d| d == 1).collect())
    }

    /// Puts `items` back, one script each (see [`RedisQueue::nack`]).
    pub(crate) fn nack_many(&self, items: &[Received]) -> Result<Vec<bool>> {
        items.iter().map(|item| self.nack(item)).collect()
    }

    /// Acknowledges `item`; `false` if it is no longer in flight with its receiver.
    pub(crate) fn ack(&self, item: &Received) -> Result<bool> {
        self.settle("acknowledging", &ACK, item, &[])
    }

    /// Puts `item` back for the next receiver; `false` if it is no longer in flight with its
    /// receiver.
    pub(crate) fn nack(&self, item: &Received) -> Result<bool> {
        self.settle("putting back", &NACK, item, &[PUT_BACK_IDLE_MS])
    }

    /// Runs `script` ([`ACK`] or [`NACK`]) on `item`, with `extra` arguments after the item's
    /// id and consumer: whether the item was still in flight with its receiver. A compare-and-
    /// settle can be repeated, so it is retried like a read.
    fn settle(
        &self,
        op: &'static str,
        script: &Script,
        item: &Received,
        extra: &[u64],
    ) -> Result<bool> {
        let done: u64 = self.on_group(op, script, true, |invocation| {
            invocation.arg(&item.id).arg(&item.consumer).arg(extra);
        })?;
        Ok(done == 1)
    }

    fn counts(&self) -> Result<(u64, u64)> {
        let counts: Vec<u64> = self.on_group("counting", &COUNTS, true, |_| {})?;
        Ok((
            counts.first().copied().unwrap_or(0),
            counts.get(1).copied().unwrap_or(0),
        ))
    }

    /// Items waiting to be received (items put back count as in flight until taken again).
    pub(crate) fn len(&self) -> Result<u64> {
        Ok(self.counts()?.0)
    }

    /// Items received and not yet acknowledged.
    pub(crate) fn in_flight(&self) -> Result<u64> {
        Ok(self.counts()?.1)
    }

    /// The items not yet delivered, oldest first.
    pub(crate) fn waiting(&self) -> Result<Vec<Vec<u8>>> {
        let mut range = redis::cmd("XRANGE");
        range.arg(&self.items).arg("-").arg("+");
        let mut in_flight = redis::cmd("XPENDING");
        in_flight
            .arg(&self.items)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(u32::MAX);
        // One transaction: the stream and what is in flight at one moment.
        let mut answers = self
            .object
            .read_checked_bulk("reading", &[range, in_flight])
            .map_err(|err| self.explain_missing_group("reading", err))?
            .into_iter();
        let (all, pending) = (
            answers.next().unwrap_or(Value::Nil),
            answers.next().unwrap_or(Value::Nil),
        );
        let mut taken = std::collections::HashSet::new();
        if let Value::Array(rows) = &pending {
            for row in rows {
                if let Value::Array(fields) = row
                    && let Some(id) = fields.first()
                    && let Ok(id) = redis::from_redis_value_ref::<String>(id)
                {
                    taken.insert(id);
                }
            }
        }
        let mut items = Vec::new();
        if let Value::Array(entries) = &all {
            for value in entries {
                let (id, _, payload) = self.stream_entry(value)?;
                if !taken.contains(&id) {
                    items.push(payload);
                }
            }
        }
        Ok(items)
    }
}
