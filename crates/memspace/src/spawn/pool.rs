//! [`Pool`]: worker processes that run tasks, and survive losing one.
//!
//! Each worker is a child process (started by `fork` or `spawn`) serving tasks framed on a pipe
//! of its own and answering on another, one frame per task, in order. A worker is sent one
//! chunk of tasks at a time (one task, unless [`PoolOptions::chunksize`] says more), so the
//! pool always knows which task each worker runs: the first of its chunk not answered yet. A
//! worker that dies (killed, crashed, `exit` in the task) closes its answer pipe; the pool
//! sees the end of input at once, reaps the worker, reports that task as
//! [`TaskError::WorkerDied`] (or runs it again on another worker, up to [`Pool::retries`]
//! times), queues the rest of its chunk again and starts a replacement. Nothing waits forever
//! for a dead worker, which is how Python's `multiprocessing.Pool` hangs.
//!
//! Tasks are functions `fn(A) -> R` with serializable arguments and results, like
//! [`Process`](super::Process) targets. The pool has no thread of its own: the threads that
//! wait for results drive it. One of them at a time polls the busy workers' answer pipes
//! without holding the pool's lock; the others sleep on a condition variable until it has
//! collected answers, and a thread that sends a task to an idle worker meanwhile wakes the
//! poller through a pipe so that it polls that worker too.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::num::{NonZeroU32, NonZeroUsize};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::child::{self, Order, Outcome, StarTarget, Task, encode_order};
use super::{SpawnError, StartMethod};
use crate::sys;

/// Why a task produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the worker survived and goes on.
    #[error("the task panicked in worker {pid}: {message}")]
    Panicked {
        /// The worker's pid.
        pid: u32,
        /// The panic message.
        message: String,
    },
    /// The worker died while running the task (after any retries); it was replaced.
    #[error("worker {pid} died while running the task ({how}); a new worker replaced it")]
    WorkerDied {
        /// The dead worker's pid.
        pid: u32,
        /// How it ended ("killed by signal 9", "exited with code 3").
        how: String,
    },
    /// The task's arguments or result could not be encoded or decoded.
    #[error("the task failed in worker {pid}: {message}")]
    Failed {
        /// The worker's pid.
        pid: u32,
        /// What went wrong.
        message: String,
    },
}

/// A task waiting for a worker or running on one, kept encoded-ready for a retry.
struct Queued {
    id: u64,
    task: Task,
    /// How many workers died running it.
    attempts: u32,
}

/// What a finished task left: the worker's pid and its encoded outcome, or why there is none.
type Finished = Result<(u32, Vec<u8>), TaskError>;

struct Worker {
    pid: u32,
    tasks: File,
    /// Unbuffered, so that `poll` on it sees every answer not read yet.
    results: File,
    /// The tasks sent to it and not answered yet, in the order it runs them: the first is
    /// the one it runs now.
    running: VecDeque<Queued>,
    /// How many tasks it answered.
    completed: u32,
}

/// Everything that changes, behind the pool's one lock.
struct State {
    workers: Vec<Worker>,
    /// Chunks of tasks not sent yet; a chunk goes to one worker in one frame.
    queue: VecDeque<VecDeque<Queued>>,
    done: HashMap<u64, Finished>,
    /// Tasks whose handles were dropped: their results are thrown away when they come.
    abandoned: HashSet<u64>,
    next_task: u64,
    /// Whether a thread is polling the workers (at most one does; the others wait on
    /// `Pool::changed`).
    driving: bool,
    /// Whether a wake-up byte is in the wake pipe already.
    wake_pending: bool,
    replaced: u64,
    retired: u64,
}

impl State {
    fn finish(&mut self, id: u64, finished: Finished) {
        if !self.abandoned.remove(&id) {
            self.done.insert(id, finished);
        }
    }

    fn busy(&self) -> bool {
        self.workers.iter().any(|w| !w.running.is_empty())
    }
}

/// How to start a [`Pool`]: Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild)`, plus the start method, retries and a chunk size for the `map` calls.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), memspace::spawn::SpawnError> {
/// use memspace::spawn::PoolOptions;
///
/// fn greet(name: String) { println!("worker {} ready for {name}", std::process::id()); }
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = PoolOptions::new()
///     .workers(4)
///     .initializer(greet, &"squares".to_owned())
///     .max_tasks_per_child(100)
///     .chunksize(8)
///     .start()?;
/// assert_eq!(pool.apply(square, &7)?, Ok(49));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "options do nothing until `start` is called"]
pub struct PoolOptions {
    workers: usize,
    method: StartMethod,
    retries: u32,
    max_tasks_per_child: Option<NonZeroU32>,
    chunksize: NonZeroUsize,
    initializer: Option<Result<Task, SpawnError>>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolOptions {
    /// One worker per CPU, started by `fork`, no retries, no initializer, workers that live as
    /// long as the pool, chunks of one task.
    pub fn new() -> Self {
        PoolOptions {
            workers: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            method: StartMethod::Fork,
            retries: 0,
            max_tasks_per_child: None,
            chunksize: NonZeroUsize::MIN,
            initializer: None,
        }
    }

    /// How many worker processes (at least one).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// How the workers are started.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// As [`Pool::retries`].
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Runs `initializer(args)` once in each worker, before its first task (Python's
    /// `initializer` and `initargs`): to open a connection, or set up what every task of the
    /// worker uses. A worker whose initializer panics runs no task: each task sent to it
    /// fails with [`TaskError::Failed`] naming the panic.
    pub fn initializer<A, R>(mut self, initializer: fn(A) -> R, args: &A) -> Self
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.initializer = Some(Task::new(initializer, args));
        self
    }

    /// Replaces each worker by a new process after it ran `tasks` tasks (Python's
    /// `maxtasksperchild`): to return what a task leaks. 0 means never, the default.
    pub fn max_tasks_per_child(mut self, tasks: u32) -> Self {
        self.max_tasks_per_child = NonZeroU32::new(tasks);
        self
    }

    /// How many inputs of [`Pool::map`], [`Pool::starmap`], [`Pool::imap`],
    /// [`Pool::imap_unordered`] and [`Pool::map_async`] go to a worker at once (Python's
    /// `chunksize`; 1 by default, 0 counts as 1). Larger chunks cost fewer round trips for
    /// short tasks; a worker still answers each task as soon as it is done, and if it dies,
    /// only the task it was running is charged (the rest of its chunk runs elsewhere).
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = NonZeroUsize::new(chunksize).unwrap_or(NonZeroUsize::MIN);
        self
    }

    /// Starts the pool.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Encode`] if the initializer's arguments cannot be serialized;
    /// [`SpawnError::NotInitialized`] for `Spawn` without [`init()`](crate::init);
    /// [`SpawnError::Os`] if a worker cannot be started.
    pub fn start(self) -> Result<Pool, SpawnError> {
        let (wake_read, wake_write) =
            sys::pipe().map_err(|source| SpawnError::Os { op: "pipe", source })?;
        let pool = Pool {
            method: self.method,
            retries: self.retries,
            max_tasks_per_child: self.max_tasks_per_child,
            chunksize: self.chunksize,
            initializer: self.initializer.transpose()?,
            state: Mutex::new(State {
                workers: Vec::new(),
                queue: VecDeque::new(),
                done: HashMap::new(),
                abandoned: HashSet::new(),
                next_task: 0,
                driving: false,
                wake_pending: false,
                replaced: 0,
                retired: 0,
            }),
            changed: Condvar::new(),
            wake_read: File::from(wake_read),
            wake_write: File::from(wake_write),
        };
        {
            let mut state = pool.lock();
            for _ in 0..self.workers {
                let worker = pool.start_worker(&state)?;
                state.workers.push(worker);
            }
        }
        Ok(pool)
    }
}

/// A pool of worker processes.
///
/// Every method takes `&self`: threads may share a pool (in an `Arc`, or by reference in a
/// scope) and submit and wait at the same time. One waiting thread at a time polls the
/// workers; the others sleep until it has collected results.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), memspace::spawn::SpawnError> {
/// use memspace::spawn::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::new(4)?;
/// let squares: Vec<u64> = pool
///     .map(square, 0..10)?
///     .into_iter()
///     .collect::<Result<_, _>>()
///     .expect("no task failed");
/// assert_eq!(squares[9], 81);
/// # Ok(())
/// # }
/// ```
pub struct Pool {
    method: StartMethod,
    retries: u32,
    max_tasks_per_child: Option<NonZeroU32>,
    chunksize: NonZeroUsize,
    initializer: Option<Task>,
    state: Mutex<State>,
    /// Notified whenever the driving thread collected results or stopped driving.
    changed: Condvar,
    /// A byte in this pipe makes the driving thread look again at which workers are busy
    /// (a task was sent to an idle worker while it polled the others).
    wake_read: File,
    wake_write: File,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Pool")
            .field("method", &self.method)
            .field(
                "workers",
                &state.workers.iter().map(|w| w.pid).collect::<Vec<_>>(),
            )
            .field(
                "queued",
                &state.queue.iter().map(VecDeque::len).sum::<usize>(),
            )
            .field("replaced", &state.replaced)
            .field("retired", &state.retired)
            .finish_non_exhaustive()
    }
}

fn os(op: &'static str) -> impl FnOnce(std::io::Error) -> SpawnError {
    move |source| SpawnError::Os { op, source }
}

impl Pool {
    /// Starts `workers` worker processes with `fork`.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Os`] if a worker cannot be started.
    pub fn new(workers: usize) -> Result<Self, SpawnError> {
        PoolOptions::new().workers(workers).start()
    }

    /// Starts `workers` (at least one) worker processes with `method`.
    ///
    /// # Errors
    ///
    /// [`SpawnError::NotInitialized`] for `Spawn` without [`init()`](crate::init);
    /// [`SpawnError::Os`] if a worker cannot be started.
    pub fn with_start_method(workers: usize, method: StartMethod) -> Result<Self, SpawnError> {
        PoolOptions::new()
            .workers(workers)
            .start_method(method)
            .start()
    }

    /// Runs a task again on another worker, up to `retries` times, when its worker dies (0 by
    /// default: the task is reported as [`TaskError::WorkerDied`]). Only for tasks that are
    /// safe to run twice.
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; if something did, the state is still consistent
        // between two statements, which is all a poisoned lock could protect.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start_worker(&self, state: &State) -> Result<Worker, SpawnError> {
        let ((pid, mut tasks), results) = match self.method {
            StartMethod::Fork => {
                let mut inherited: Vec<RawFd> = state
                    .workers
                    .iter()
                    .flat_map(|w| [w.tasks.as_raw_fd(), w.results.as_raw_fd()])
                    .collect();
                inherited.extend([self.wake_read.as_raw_fd(), self.wake_write.as_raw_fd()]);
                child::fork_worker(&inherited)?
            }
            StartMethod::Spawn => child::spawn_worker()?,
        };
        if let Some(initializer) = &self.initializer {
            // A worker that died at once refuses it: the first task sent to it finds out.
            let _ = child::write_frame(&mut tasks, &encode_order(&Order::Init(initializer))?);
        }
        Ok(Worker {
            pid,
            tasks,
            results: File::from(results),
            running: VecDeque::new(),
            completed: 0,
        })
    }

    /// The pids of the current workers.
    #[must_use]
    pub fn worker_pids(&self) -> Vec<u32> {
        self.lock().workers.iter().map(|w| w.pid).collect()
    }

    /// How many workers died and were replaced.
    #[must_use]
    pub fn replaced(&self) -> u64 {
        self.lock().replaced
    }

    /// How many workers were replaced after running their
    /// [`max_tasks_per_child`](PoolOptions::max_tasks_per_child) tasks.
    #[must_use]
    pub fn retired(&self) -> u64 {
        self.lock().retired
    }

    /// Queues chunks of tasks, sends what it can to idle workers, and returns the first id.
    fn submit(&self, chunks: Vec<Vec<Task>>) -> Result<std::ops::Range<u64>, SpawnError> {
        let mut state = self.lock();
        let first = state.next_task;
        for chunk in chunks {
            let mut queued = VecDeque::with_capacity(chunk.len());
            for task in chunk {
                queued.push_back(Queued {
                    id: state.next_task,
                    task,
                    attempts: 0,
                });
                state.next_task += 1;
            }
            state.queue.push_back(queued);
        }
        let ids = first..state.next_task;
        if let Err(err) = self.dispatch(&mut state) {
            // No handle is returned for them: their results would never be collected.
            state.abandoned.extend(ids);
            return Err(err);
        }
        if state.driving && !state.wake_pending {
            // The driving thread polls the workers that were busy when it started: tell it to
            // look again. (If the byte cannot be written, it sees the new work after its next
            // answer; nothing is lost.)
            state.wake_pending = (&self.wake_write).write(&[1]).is_ok();
        }
        Ok(ids)
    }

    /// Hands queued chunks to idle workers.
    fn dispatch(&self, state: &mut State) -> Result<(), SpawnError> {
        let mut index = 0;
        while index < state.workers.len() && !state.queue.is_empty() {
            if !state.workers[index].running.is_empty() {
                index += 1;
                continue;
            }
            let mut chunk = state.queue.pop_front().expect("checked non-empty");
            if let Some(max) = self.max_tasks_per_child {
                // Never more than the worker has left to run before it is replaced.
                let left = max
                    .get()
                    .saturating_sub(state.workers[index].completed)
                    .max(1);
                let left = usize::try_from(left).unwrap_or(usize::MAX);
                if chunk.len() > left {
                    let rest = chunk.split_off(left);
                    state.queue.push_front(rest);
                }
            }
            let frame = encode_order(&Order::Run(chunk.iter().map(|q| &q.task).collect()))?;
            let worker = &mut state.workers[index];
            if child::write_frame(&mut worker.tasks, &frame).is_err() {
                // The worker died before taking it: requeue, and replace the worker.
                state.queue.push_front(chunk);
                self.replace(state, index)?;
                continue;
            }
            worker.running = chunk;
            index += 1;
        }
        Ok(())
    }

    /// Reads one answer of worker `pid` (polled readable), or replaces it if it died.
    fn read_answer(&self, state: &mut State, pid: u32) -> Result<(), SpawnError> {
        let Some(index) = state
            .workers
            .iter()
            .position(|w| w.pid == pid && !w.running.is_empty())
        else {
            return Ok(()); // replaced meanwhile by a thread that found it dead
        };
        let worker = &mut state.workers[index];
        if let Ok(Some(outcome)) = child::read_frame(&mut worker.results) {
            let task = worker.running.pop_front().expect("a busy worker");
            worker.completed += 1;
            let idle = worker.running.is_empty();
            let spent = self
                .max_tasks_per_child
                .is_some_and(|max| worker.completed >= max.get());
            state.finish(task.id, Ok((pid, outcome)));
            if idle && spent {
                self.retire(state, index)?;
            }
            Ok(())
        } else {
            // End of input or a torn frame: the worker is gone.
            self.replace(state, index)
        }
    }

    /// Reaps worker `index`, fails or requeues the task it was running (the rest of its chunk
    /// goes back to the queue), and starts a replacement.
    fn replace(&self, state: &mut State, index: usize) -> Result<(), SpawnError> {
        let pid = state.workers[index].pid;
        let _ = sys::send_signal(pid, sys::SIGKILL); // it may be alive but broken
        let how = match sys::wait_child(pid) {
            Ok(sys::ExitStatus::Signaled(signal)) => format!("killed by signal {signal}"),
            Ok(sys::ExitStatus::Exited(code)) => format!("exited with code {code}"),
            Err(err) => format!("could not be reaped: {err}"),
        };
        state.replaced += 1;
        let mut running = std::mem::take(&mut state.workers[index].running);
        if let Some(mut task) = running.pop_front() {
            if task.attempts < self.retries {
                task.attempts += 1;
                running.push_front(task);
            } else {
                state.finish(task.id, Err(TaskError::WorkerDied { pid, how }));
            }
        }
        if !running.is_empty() {
            state.queue.push_front(running);
        }
        let replacement = self.start_worker(state)?;
        state.workers[index] = replacement;
        Ok(())
    }

    /// Asks idle worker `index`, which ran its share of tasks, to exit; starts a new one.
    fn retire(&self, state: &mut State, index: usize) -> Result<(), SpawnError> {
        let worker = &mut state.workers[index];
        let _ = child::write_frame(&mut worker.tasks, &[]); // an empty frame: stop
        let _ = sys::wait_child(worker.pid);
        state.retired += 1;
        let replacement = self.start_worker(state)?;
        state.workers[index] = replacement;
        Ok(())
    }

    /// Drives the pool until `finished` holds of its state, or `deadline` passes (`Ok(None)`).
    /// A deadline already past still collects every answer that is ready.
    fn drive_until(
        &self,
        mut finished: impl FnMut(&State) -> bool,
        deadline: Option<Instant>,
    ) -> Result<Option<MutexGuard<'_, State>>, SpawnError> {
        let mut state = self.lock();
        loop {
            if finished(&state) {
                return Ok(Some(state));
            }
            let now = Instant::now();
            let expired = deadline.is_some_and(|deadline| now >= deadline);
            if state.driving {
                if expired {
                    return Ok(None);
                }
                state = match deadline {
                    None => self
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner),
                    Some(deadline) => {
                        self.changed
                            .wait_timeout(state, deadline - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                };
                continue;
            }
            state = self.drive_once(state, deadline)?;
            if expired || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(finished(&state).then_some(state));
            }
        }
    }

    /// Drives the pool until task `id` is done and takes its result; `Ok(None)` if `deadline`
    /// passed first.
    fn take(&self, id: u64, deadline: Option<Instant>) -> Result<Option<Finished>, SpawnError> {
        loop {
            let Some(mut state) =
                self.drive_until(|state| state.done.contains_key(&id), deadline)?
            else {
                return Ok(None);
            };
            if let Some(finished) = state.done.remove(&id) {
                return Ok(Some(finished));
            }
        }
    }

    /// As [`Pool::take`] without a deadline.
    fn take_waiting(&self, id: u64) -> Result<Finished, SpawnError> {
        loop {
            if let Some(finished) = self.take(id, None)? {
                return Ok(finished);
            }
        }
    }

    /// One round of driving: sends queued work, polls the busy workers without holding the
    /// lock (until one answers or dies, or `deadline`), and collects what they said.
    fn drive_once<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'a, State>, SpawnError> {
        self.dispatch(&mut state)?;
        assert!(
            state.busy(),
            "a task waited for is neither done, queued nor running"
        );
        // Copies of the answer pipes, valid while the lock is released (a worker replaced
        // meanwhile closes only its own descriptors).
        let busy = state
            .workers
            .iter()
            .filter(|w| !w.running.is_empty())
            .map(|w| Ok((w.pid, w.results.try_clone()?)))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(os("dup"))?;
        state.driving = true;
        drop(state);
        let ready = {
            let mut fds: Vec<_> = busy.iter().map(|(_, results)| results.as_fd()).collect();
            fds.push(self.wake_read.as_fd());
            sys::wait_readable(&fds, deadline)
        };
        let mut state = self.lock();
        state.driving = false;
        self.changed.notify_all(); // another waiter may drive next, once we let go
        let ready = ready.map_err(os("poll"))?;
        if ready[busy.len()] {
            let mut bytes = [0u8; 16];
            let _ = (&self.wake_read).read(&mut bytes);
            state.wake_pending = false;
        }
        for ((pid, _), ready) in busy.iter().zip(ready) {
            if ready {
                self.read_answer(&mut state, *pid)?;
            }
        }
        self.dispatch(&mut state)?;
        Ok(state)
    }

    /// Submits `target(args)`, as Python's `apply_async`; the handle tells when it is done and
    /// collects the result.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Encode`] if `args` cannot be serialized; [`SpawnError::Os`] if a worker
    /// that died must be replaced and cannot be.
    pub fn apply_async<A, R>(
        &self,
        target: fn(A) -> R,
        args: &A,
    ) -> Result<TaskHandle<'_, R>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let ids = self.submit(vec![vec![Task::new(target, args)?]])?;
        Ok(TaskHandle {
            pool: self,
            id: ids.start,
            collected: false,
            _result: PhantomData,
        })
    }

    /// Runs `target(args)` on a worker and waits for it.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] if the pool cannot run it (encoding, a replacement worker that cannot
    /// start); the task's own failure is the inner [`TaskError`].
    pub fn apply<A, R>(
        &self,
        target: fn(A) -> R,
        args: &A,
    ) -> Result<Result<R, TaskError>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(target, args)?.wait()
    }

    /// Runs `target` on every input, spread over the workers; the results come back in input
    /// order, each a `Result` so that one failed task does not hide the others.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] if the pool cannot run the tasks.
    pub fn map<A, R>(
        &self,
        target: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Result<Vec<Result<R, TaskError>>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.map_async(target, inputs)?.wait()
    }

    /// As [`map`](Pool::map) without waiting, as Python's `map_async`: the handle waits, with
    /// or without a timeout, and collects the results.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Encode`] if an input cannot be serialized (nothing is submitted then).
    pub fn map_async<A, R>(
        &self,
        target: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Result<MapHandle<'_, R>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let tasks = inputs
            .into_iter()
            .map(|input| Task::new(target, &input))
            .collect::<Result<Vec<_>, _>>()?;
        self.map_tasks(tasks)
    }

    /// Runs `target` with the items of each input tuple as its arguments, as Python's
    /// `starmap`: `starmap(add, [(1, 2), (3, 4)])` runs `add(1, 2)` and `add(3, 4)`. Functions
    /// of two to six arguments, named as a function pointer with its types,
    /// `add as fn(u64, u64) -> u64` (Rust turns a function into a pointer only where the
    /// pointer type is known).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), memspace::spawn::SpawnError> {
    /// use memspace::spawn::Pool;
    ///
    /// fn power(base: u64, exponent: u32) -> u64 { base.pow(exponent) }
    ///
    /// let pool = Pool::new(2)?;
    /// let powers = pool.starmap(power as fn(u64, u32) -> u64, [(2, 10), (3, 2)])?;
    /// assert_eq!(powers, [Ok(1024), Ok(9)]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Pool::map`].
    pub fn starmap<F, T>(
        &self,
        target: F,
        inputs: impl IntoIterator<Item = T>,
    ) -> Result<Vec<Result<F::Output, TaskError>>, SpawnError>
    where
        F: StarTarget<T>,
        T: Serialize,
    {
        self.starmap_async(target, inputs)?.wait()
    }

    /// As [`starmap`](Pool::starmap) without waiting, as Python's `starmap_async`.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_async`].
    pub fn starmap_async<F, T>(
        &self,
        target: F,
        inputs: impl IntoIterator<Item = T>,
    ) -> Result<MapHandle<'_, F::Output>, SpawnError>
    where
        F: StarTarget<T>,
        T: Serialize,
    {
        let tasks = inputs
            .into_iter()
            .map(|input| Task::starred(target, &input))
            .collect::<Result<Vec<_>, _>>()?;
        self.map_tasks(tasks)
    }

    fn map_tasks<R>(&self, tasks: Vec<Task>) -> Result<MapHandle<'_, R>, SpawnError> {
        let ids = self.submit_chunks(tasks)?;
        Ok(MapHandle {
            pool: self,
            ids,
            collected: false,
            _result: PhantomData,
        })
    }

    fn submit_chunks(&self, tasks: Vec<Task>) -> Result<std::ops::Range<u64>, SpawnError> {
        let mut chunks = Vec::new();
        let mut tasks = tasks.into_iter().peekable();
        while tasks.peek().is_some() {
            chunks.push(tasks.by_ref().take(self.chunksize.get()).collect());
        }
        self.submit(chunks)
    }

    /// As [`map`](Pool::map), yielding each result, in input order, as soon as it and those
    /// before it are done.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Encode`] if an input cannot be serialized (nothing is submitted then).
    pub fn imap<A, R>(
        &self,
        target: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Result<Imap<'_, R>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let handle = self.map_async(target, inputs)?;
        let ids = handle.take_ids();
        Ok(Imap {
            pool: self,
            ids,
            _result: PhantomData,
        })
    }

    /// As [`imap`](Pool::imap), yielding `(input index, result)` in the order tasks finish.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap`].
    pub fn imap_unordered<A, R>(
        &self,
        target: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Result<ImapUnordered<'_, R>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let handle = self.map_async(target, inputs)?;
        let ids = handle.take_ids();
        Ok(ImapUnordered {
            pool: self,
            first: ids.start,
            pending: ids.collect(),
            _result: PhantomData,
        })
    }

    /// Throws away the results of `ids`, now or when they come.
    fn abandon(&self, ids: impl IntoIterator<Item = u64>) {
        let mut state = self.lock();
        for id in ids {
            if state.done.remove(&id).is_none() {
                state.abandoned.insert(id);
            }
        }
    }

    /// Asks the workers to exit after their current tasks, and waits for them to. Queued
    /// tasks that were not started are dropped.
    pub fn join(self) {
        self.shut_down(false);
    }

    /// Stops at once: kills every worker (running tasks are lost) and reaps it.
    pub fn terminate(self) {
        self.shut_down(true);
    }

    fn shut_down(&self, kill: bool) {
        let mut state = self.lock();
        state.queue.clear();
        for worker in state.workers.drain(..) {
            if kill {
                let _ = sys::send_signal(worker.pid, sys::SIGKILL);
            }
            // An empty frame asks the worker to exit after its current task. The end of input
            // alone would not do: another pool's worker, or any child forked since this
            // worker started, may hold a copy of the pipe's writing end. (A worker that is
            // gone refuses the frame: nothing to ask.)
            let mut tasks = worker.tasks;
            if !kill {
                let _ = child::write_frame(&mut tasks, &[]);
            }
            drop(tasks);
            let _ = sys::wait_child(worker.pid);
        }
    }
}

impl Drop for Pool {
    /// A pool dropped without [`join`](Pool::join) terminates its workers, as Python's does:
    /// dropping must not wait for a task that may never end.
    fn drop(&mut self) {
        self.shut_down(true);
    }
}

fn decode<R: DeserializeOwned>(result: Finished) -> Result<R, TaskError> {
    let (pid, bytes) = result?;
    match crate::handle::decoding_from_own_process(|| rmp_serde::from_slice::<Outcome<R>>(&bytes)) {
        Ok(Outcome::Returned(value)) => Ok(value),
        Ok(Outcome::Panicked(message)) => Err(TaskError::Panicked { pid, message }),
        Ok(Outcome::Failed(message)) => Err(TaskError::Failed { pid, message }),
        Err(e) => Err(TaskError::Failed {
            pid,
            message: format!(
                "its result could not be decoded as `{}`: {e}",
                std::any::type_name::<R>()
            ),
        }),
    }
}

/// Whether a finished task returned a value of type `R`.
fn succeeded<R: DeserializeOwned>(finished: &Finished) -> bool {
    match finished {
        Ok((pid, bytes)) => decode::<R>(Ok((*pid, bytes.clone()))).is_ok(),
        Err(_) => false,
    }
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    // A timeout too large for an `Instant` (centuries) is no timeout.
    Instant::now().checked_add(timeout)
}

/// A task submitted with [`Pool::apply_async`], as Python's `AsyncResult`: ask whether it is
/// [`ready`](TaskHandle::ready), wait for it with or without a timeout, and collect its result
/// with [`wait`](TaskHandle::wait). It borrows its pool, so it cannot outlive it or be waited
/// for with another. Dropping it throws the result away when it comes.
///
/// ```compile_fail,E0505
/// # fn main() -> Result<(), memspace::spawn::SpawnError> {
/// use memspace::spawn::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::new(1)?;
/// let handle = pool.apply_async(square, &3)?;
/// pool.join(); // refused: the handle borrows the pool
/// let _ = handle.wait();
/// # Ok(())
/// # }
/// ```
#[must_use = "a submitted task's result is only collected by waiting for it"]
pub struct TaskHandle<'pool, R> {
    pool: &'pool Pool,
    id: u64,
    collected: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for TaskHandle<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("task", &self.id)
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> TaskHandle<'_, R> {
    /// Waits for the task and returns its result (Python's `get()`).
    ///
    /// # Errors
    ///
    /// [`SpawnError`] if the pool cannot go on (a replacement worker cannot start); the task's
    /// own failure is the inner [`TaskError`].
    pub fn wait(mut self) -> Result<Result<R, TaskError>, SpawnError> {
        let finished = self.pool.take_waiting(self.id)?;
        self.collected = true;
        Ok(decode(finished))
    }

    /// Waits at most `timeout` for the task to finish (Python's `wait(timeout)`); whether it
    /// did. Collect the result with [`wait`](TaskHandle::wait), which then returns at once.
    ///
    /// # Errors
    ///
    /// As [`TaskHandle::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, SpawnError> {
        let id = self.id;
        Ok(self
            .pool
            .drive_until(
                |state| state.done.contains_key(&id),
                deadline_after(timeout),
            )?
            .is_some())
    }

    /// Whether the task finished (Python's `ready()`); collects what the workers have
    /// answered, without waiting.
    ///
    /// # Errors
    ///
    /// As [`TaskHandle::wait`].
    pub fn ready(&self) -> Result<bool, SpawnError> {
        self.wait_timeout(Duration::ZERO)
    }

    /// Whether the task returned a value rather than failing (Python's `successful()`).
    ///
    /// # Errors
    ///
    /// [`SpawnError::NotReady`] if the task has not finished (see
    /// [`ready`](TaskHandle::ready)); otherwise as [`TaskHandle::wait`].
    pub fn successful(&self) -> Result<bool, SpawnError> {
        if !self.ready()? {
            return Err(SpawnError::NotReady { tasks: 1 });
        }
        let state = self.pool.lock();
        Ok(state.done.get(&self.id).is_some_and(succeeded::<R>))
    }
}

impl<R> Drop for TaskHandle<'_, R> {
    fn drop(&mut self) {
        if !self.collected {
            self.pool.abandon([self.id]);
        }
    }
}

/// Tasks submitted with [`Pool::map_async`] or [`Pool::starmap_async`], as Python's
/// `MapResult`: the same calls as [`TaskHandle`], for all the tasks at once.
#[must_use = "submitted tasks' results are only collected by waiting for them"]
pub struct MapHandle<'pool, R> {
    pool: &'pool Pool,
    ids: std::ops::Range<u64>,
    collected: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for MapHandle<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapHandle")
            .field("tasks", &self.ids)
            .finish_non_exhaustive()
    }
}

impl<R> MapHandle<'_, R> {
    fn all_done(ids: &std::ops::Range<u64>) -> impl Fn(&State) -> bool + '_ {
        move |state| ids.clone().all(|id| state.done.contains_key(&id))
    }

    /// Hands the tasks over to an iterator, which collects them instead.
    fn take_ids(mut self) -> std::ops::Range<u64> {
        self.collected = true;
        self.ids.clone()
    }
}

impl<R: DeserializeOwned> MapHandle<'_, R> {
    /// Waits for every task and returns the results in input order (Python's `get()`).
    ///
    /// # Errors
    ///
    /// As [`TaskHandle::wait`].
    pub fn wait(mut self) -> Result<Vec<Result<R, TaskError>>, SpawnError> {
        let results = self
            .ids
            .clone()
            .map(|id| self.pool.take_waiting(id).map(decode))
            .collect::<Result<Vec<_>, _>>();
        // On an error the pool is broken; what was not taken is thrown away by `drop`.
        self.collected = results.is_ok();
        results
    }

    /// Waits at most `timeout` for every task to finish; whether they did.
    ///
    /// # Errors
    ///
    /// As [`TaskHandle::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, SpawnError> {
        Ok(self
            .pool
            .drive_until(Self::all_done(&self.ids), deadline_after(timeout))?
            .is_some())
    }

    /// Whether every task finished, without waiting.
    ///
    /// # Errors
    ///
    /// As [`TaskHandle::wait`].
    pub fn ready(&self) -> Result<bool, SpawnError> {
        self.wait_timeout(Duration::ZERO)
    }

    /// Whether every task returned a value.
    ///
    /// # Errors
    ///
    /// [`SpawnError::NotReady`] if some task has not finished; otherwise as
    /// [`TaskHandle::wait`].
    pub fn successful(&self) -> Result<bool, SpawnError> {
        if !self.ready()? {
            let state = self.pool.lock();
            let tasks = self
                .ids
                .clone()
                .filter(|id| !state.done.contains_key(id))
                .count();
            return Err(SpawnError::NotReady { tasks });
        }
        let state = self.pool.lock();
        Ok(self
            .ids
            .clone()
            .all(|id| state.done.get(&id).is_some_and(succeeded::<R>)))
    }
}

impl<R> Drop for MapHandle<'_, R> {
    fn drop(&mut self) {
        if !self.collected {
            self.pool.abandon(self.ids.clone());
        }
    }
}

/// Results of [`Pool::imap`], in input order. Dropping it throws the rest away.
#[derive(Debug)]
pub struct Imap<'pool, R> {
    pool: &'pool Pool,
    ids: std::ops::Range<u64>,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Imap<'_, R> {
    /// The next result, waiting at most `timeout` for it (Python's `next(timeout)`):
    /// `Ok(None)` when it is not ready then, `None` when there is none left.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<Option<Result<R, TaskError>>, SpawnError>> {
        let id = self.ids.start;
        if self.ids.is_empty() {
            return None;
        }
        Some(self.pool.take(id, deadline_after(timeout)).map(|finished| {
            let finished = finished?;
            self.ids.start += 1;
            Some(decode(finished))
        }))
    }
}

impl<R: DeserializeOwned> Iterator for Imap<'_, R> {
    type Item = Result<Result<R, TaskError>, SpawnError>;

    fn next(&mut self) -> Option<Self::Item> {
        let id = self.ids.start;
        if self.ids.is_empty() {
            return None;
        }
        Some(self.pool.take_waiting(id).map(|finished| {
            self.ids.start += 1;
            decode(finished)
        }))
    }
}

impl<R> Drop for Imap<'_, R> {
    fn drop(&mut self) {
        self.pool.abandon(self.ids.clone());
    }
}

/// Results of [`Pool::imap_unordered`], as tasks finish: `(input index, result)`. Dropping it
/// throws the rest away.
#[derive(Debug)]
pub struct ImapUnordered<'pool, R> {
    pool: &'pool Pool,
    pending: BTreeSet<u64>,
    first: u64,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Iterator for ImapUnordered<'_, R> {
    type Item = Result<(usize, Result<R, TaskError>), SpawnError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pending.is_empty() {
            return None;
        }
        let pending = &self.pending;
        let waited = self.pool.drive_until(
            |state| pending.iter().any(|id| state.done.contains_key(id)),
            None,
        );
        Some(waited.map(|state| {
            let mut state = state.expect("a wait without a deadline ends with one done");
            let id = *self
                .pending
                .iter()
                .find(|id| state.done.contains_key(id))
                .expect("checked one done");
            self.pending.remove(&id);
            let result = state.done.remove(&id).expect("found above");
            let index = usize::try_from(id - self.first).unwrap_or(usize::MAX);
            (index, decode(result))
        }))
    }
}

impl<R> Drop for ImapUnordered<'_, R> {
    fn drop(&mut self) {
        self.pool.abandon(std::mem::take(&mut self.pending));
    }
}
