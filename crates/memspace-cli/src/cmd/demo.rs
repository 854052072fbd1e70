//! `memspace demo`: the tutorial's experiment, three ways.
//!
//! Workers are started and joined one after another; each prints where its list lives, then
//! appends `0..count` under a lock, printing the list after each append, in the tutorial's own
//! format. The same worker function runs in every mode; only the list type and the kind of
//! worker change.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};

use anyhow::Context;
use memspace::spawn::{Mode, StartMethod, Worker};
use memspace::sync::{LockError, LockGuard};
use memspace::{Lock, SharedList};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cli::{DemoArgs, DemoMode, Start};

/// A plain list: threads share it through the `Arc`; a child process gets a copy.
#[derive(Clone, Default, Serialize, Deserialize)]
struct PlainList(Arc<StdMutex<Vec<i64>>>);

/// What the demo needs of a list.
trait DemoList: Clone + Serialize + DeserializeOwned + Send + 'static {
    fn append(&self, value: i64);
    fn values(&self) -> Vec<i64>;
    /// The address of the list in the calling process (0: it lives elsewhere, on Redis).
    fn address(&self) -> usize;
    /// Where the memory at that address comes from.
    fn backing(&self) -> String;
}

impl DemoList for PlainList {
    fn append(&self, value: i64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(value);
    }

    fn values(&self) -> Vec<i64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn address(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    fn backing(&self) -> String {
        format!("private memory of process {}", std::process::id())
    }
}

impl DemoList for SharedList<i64> {
    fn append(&self, value: i64) {
        if let Err(err) = self.push(&value) {
            panic!("appending to shared list `{}`: {err}", self.name());
        }
    }

    fn values(&self) -> Vec<i64> {
        match self.to_vec() {
            Ok(values) => values,
            Err(err) => panic!("reading shared list `{}`: {err}", self.name()),
        }
    }

    fn address(&self) -> usize {
        self.segment().map_or(0, memspace::Segment::base_address)
    }

    fn backing(&self) -> String {
        match self.segment() {
            Some(segment) => format!("shared segment {}, inode {}", self.name(), segment.inode()),
            None => format!("Redis list {}", self.name()),
        }
    }
}

/// An address as the tutorial prints `id()`, or what stands in for one when the list is not in
/// this process's memory.
fn shown(address: usize) -> String {
    if address == 0 {
        "no local address".to_owned()
    } else {
        format!("{address:#x}")
    }
}

/// What a worker reports back: where it saw the list.
#[derive(Debug, Serialize, Deserialize)]
struct Seen {
    pid: u32,
    address: usize,
}

/// A worker's output was closed (`memspace demo | head`): it stopped, and so does the demo,
/// quietly.
#[derive(Debug, Serialize, Deserialize)]
struct OutputClosed;

impl From<OutputClosed> for io::Error {
    fn from(_: OutputClosed) -> Self {
        io::Error::from(io::ErrorKind::BrokenPipe)
    }
}

/// Prints `line` for a worker; a closed output stops the worker, any other failure to write
/// is ignored (the demo's lines are its only output, and the list is checked at the end).
fn say(line: std::fmt::Arguments<'_>) -> Result<(), OutputClosed> {
    match writeln!(super::out(), "{line}") {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Err(OutputClosed),
        _ => Ok(()),
    }
}

/// The arguments of a worker: the list, its number, the lock, how many values, and the word
/// the tutorial prints ("Thread" or "Process").
type Args<L> = (L, u32, Lock, u32, String);

/// Takes the lock; a previous holder that died (or panicked) is reported and the lock kept
/// usable, since the demo's data is re-read after every append anyway.
fn hold(lock: &Lock) -> LockGuard<'_> {
    match lock.lock() {
        Ok(guard) => guard,
        Err(LockError::OwnerDied(guard)) => {
            eprintln!("(the previous holder of the lock died; taking it over)");
            if let Err(err) = guard.mark_consistent() {
                panic!("recovering lock `{}`: {err}", lock.name());
            }
            guard
        }
        Err(LockError::Poisoned(guard)) => {
            guard.clear_poison();
            guard
        }
        Err(err) => panic!("{err}"),
    }
}

/// The tutorial's `func`. As in the tutorial, the loop variable `i` shadows the worker's
/// number in the lines printed after each append.
fn worker<L: DemoList>((nums, i, lock, count, label): Args<L>) -> Result<Seen, OutputClosed> {
    let guard = hold(&lock); // the console is a shared resource
    say(format_args!(
        "{label} -{i} :  {} ({})",
        shown(nums.address()),
        nums.backing()
    ))?;
    drop(guard);
    for i in 0..count {
        let _guard = hold(&lock); // the list is a shared resource too
        nums.append(i64::from(i));
        say(format_args!("{label} -{i} :  {:?}", nums.values()))?;
    }
    Ok(Seen {
        pid: std::process::id(),
        address: nums.address(),
    })
}

/// Runs `workers` workers one after another on `nums`; returns what each saw.
fn experiment<L: DemoList>(
    nums: &L,
    mode: Mode,
    workers: u32,
    count: u32,
) -> anyhow::Result<Vec<Seen>> {
    let lock = Lock::new().context("creating the demo's lock")?;
    experiment_with(nums, &lock, mode, workers, count)
}

/// [`experiment`] with the given lock.
fn experiment_with<L: DemoList>(
    nums: &L,
    lock: &Lock,
    mode: Mode,
    workers: u32,
    count: u32,
) -> anyhow::Result<Vec<Seen>> {
    let label = match mode {
        Mode::Thread => "Thread",
        Mode::Process(_) => "Process",
    };
    writeln!(
        super::out(),
        "Main {label} : {} ({})",
        shown(nums.address()),
        nums.backing()
    )?;
    let mut seen = Vec::new();
    for i in 0..workers {
        let args = (nums.clone(), i, lock.clone(), count, label.to_owned());
        let mut worker = Worker::new(mode, worker::<L>, args);
        worker
            .start()
            .with_context(|| format!("starting worker {i}"))?;
        let saw = worker.join().with_context(|| format!("worker {i}"))?;
        seen.push(saw.map_err(io::Error::from)?);
    }
    writeln!(super::out(), "Main {label} : {:?}", nums.values())?;
    Ok(seen)
}

fn addresses(seen: &[Seen]) -> String {
    seen.iter().fold(String::new(), |mut out, s| {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(out, "{:#x}", s.address);
        out
    })
}

fn pids(seen: &[Seen]) -> String {
    seen.iter()
        .map(|s| s.pid.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_threads(workers: u32, count: u32) -> anyhow::Result<()> {
    writeln!(
        super::out(),
        "== thread: {workers} threads append to one plain list =="
    )?;
    let nums = PlainList::default();
    let seen = experiment(&nums, Mode::Thread, workers, count)?;
    let all = nums.values().len() == (workers * count) as usize;
    writeln!(
        super::out(),
        "-> memory shared: {}. The threads all ran in process {} and appended to the list at {:#x}: \
         threads share their process's address space.",
        if all { "yes" } else { "NO (unexpected)" },
        std::process::id(),
        seen.first().map_or(nums.address(), |s| s.address),
    )?;
    Ok(())
}

fn run_processes(workers: u32, count: u32, method: StartMethod) -> anyhow::Result<()> {
    writeln!(
        super::out(),
        "== process ({method}): {workers} child processes append to a plain list passed as an argument =="
    )?;
    let nums = PlainList::default();
    let seen = experiment(&nums, Mode::Process(method), workers, count)?;
    let parent = nums.values();
    let same_address = seen.iter().all(|s| s.address == nums.address());
    let how = match method {
        StartMethod::Fork if same_address => format!(
            "fork gave each child a copy of the parent's memory, so the list kept the parent's \
             address {:#x} in every child: the same virtual address in another process is \
             different memory",
            nums.address()
        ),
        StartMethod::Fork => format!(
            "fork gave each child a copy of the parent's memory (children saw the list at {})",
            addresses(&seen)
        ),
        StartMethod::Spawn => format!(
            "spawn re-ran this program in each child and rebuilt the list from the arguments, at \
             addresses {} of the children's own",
            addresses(&seen)
        ),
    };
    writeln!(
        super::out(),
        "-> memory shared: {}. Each child (pids {}) appended to its own copy of the list, so the \
         parent's list is {parent:?}; {how}.",
        if parent.is_empty() {
            "no"
        } else {
            "YES (unexpected)"
        },
        pids(&seen),
    )?;
    Ok(())
}

fn run_shared(workers: u32, count: u32, method: StartMethod) -> anyhow::Result<()> {
    writeln!(
        super::out(),
        "== shared ({method}): {workers} child processes append to a SharedList =="
    )?;
    let nums = SharedList::<i64>::new().context("creating the demo's shared list")?;
    let seen = experiment(&nums, Mode::Process(method), workers, count)?;
    let all = nums
        .len()
        .context("reading the length of the demo's list")?
        == u64::from(workers * count);
    writeln!(
        super::out(),
        "-> memory shared: {}. The children (pids {}) attached shared segment {} (inode {}, \
         /dev/shm/memspace.{}) and appended to that memory, mapped at {}; the parent maps it at \
         {:#x} and sees every append: the handle travelled as a reference, not a copy.",
        if all { "yes" } else { "NO (unexpected)" },
        pids(&seen),
        nums.name(),
        nums.segment()
            .expect("`new` makes a shared-memory list")
            .inode(),
        nums.name(),
        addresses(&seen),
        nums.address(),
    )?;
    Ok(())
}

/// Removes the demo's Redis objects however the run ends.
struct RedisCleanup(Vec<String>);

impl Drop for RedisCleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            // Best effort: the objects are the demo's own, named after its pid.
            let _ = memspace::remove(name);
        }
    }
}

fn run_redis(workers: u32, count: u32, method: StartMethod, url: &str) -> anyhow::Result<()> {
    // Checked before it is echoed: a URL with a password in it is refused without printing it.
    let backend = memspace::Backend::redis(url).context("reading --redis")?;
    // From here on the URL as shown: its password hidden.
    let url = &*super::shown(url);
    writeln!(
        super::out(),
        "== redis ({method}): {workers} child processes append to a SharedList on {url} =="
    )?;
    let base = format!("demo.{}", std::process::id());
    let list_name = backend.locate(&base);
    let lock_name = backend.locate(&format!("{base}.lock"));
    let nums = match SharedList::<i64>::create(&list_name) {
        Ok(nums) => nums,
        Err(memspace::Error::RedisUnreachable { .. }) => {
            let port = url
                .rsplit(':')
                .next()
                .unwrap_or("6379")
                .trim_end_matches('/');
            anyhow::bail!(
                "no Redis server answers at {url}. Start one with \
                 `redis-server --port {port} --save '' --appendonly yes` (Debian: \
                 `apt-get install redis-server`), or point the demo at another with \
                 `--redis redis://HOST:PORT`"
            );
        }
        Err(err) => return Err(err).context("creating the demo's list on Redis"),
    };
    let _cleanup = RedisCleanup(vec![list_name.clone(), lock_name.clone()]);
    let lock = Lock::create(&lock_name).context("creating the demo's lock on Redis")?;
    let seen = experiment_with(&nums, &lock, Mode::Process(method), workers, count)?;
    let all = nums
        .len()
        .context("reading the length of the demo's list on Redis")?
        == u64::from(workers * count);
    writeln!(
        super::out(),
        "-> memory shared: {} (through Redis). The children (pids {}) opened {} by its URL, \
         which is how the handle travelled to them, and appended there; the parent reads every \
         append back from the server. The same code runs with the list in shared memory \
         (`--mode shared`), or with workers on other machines that reach {url}.",
        if all { "yes" } else { "NO (unexpected)" },
        pids(&seen),
        nums.name(),
    )?;
    Ok(())
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let method = match args.start {
        Start::Fork => StartMethod::Fork,
        Start::Spawn => StartMethod::Spawn,
    };
    let modes = match args.mode {
        Some(mode) => vec![mode],
        None => vec![DemoMode::Thread, DemoMode::Process, DemoMode::Shared],
    };
    for (n, mode) in modes.into_iter().enumerate() {
        if n > 0 {
            writeln!(super::out())?;
        }
        match mode {
            DemoMode::Thread => run_threads(args.workers, args.count)?,
            DemoMode::Process => run_processes(args.workers, args.count, method)?,
            DemoMode::Shared => run_shared(args.workers, args.count, method)?,
            DemoMode::Redis => run_redis(args.workers, args.count, method, &args.redis)?,
        }
    }
    Ok(())
}
