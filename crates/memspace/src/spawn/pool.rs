//! [`Pool`]: worker processes that run tasks, and survive losing one.
//!
//! Each worker is a child process (started by `fork` or `spawn`) serving tasks framed on a pipe
//! of its own and answering on another: one task at a time, so the pool always knows which
//! task each worker runs. A worker that dies (killed, crashed, `exit` in the task) closes its
//! answer pipe; the pool sees the end of input at once, reaps the worker, reports that task as
//! [`TaskError::WorkerDied`] (or runs it again on another worker, up to
//! [`Pool::retries`] times) and starts a replacement. Nothing waits forever for a dead worker,
//! which is how Python's `multiprocessing.Pool` hangs.
//!
//! Tasks are functions `fn(A) -> R` with serializable arguments and results, like
//! [`Process`](super::Process) targets. The pool is driven by the calling thread: results are
//! collected while `map`, `imap` or [`TaskHandle::wait`] run.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::child::{self, Outcome, Task};
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

struct Worker {
    pid: u32,
    tasks: File,
    results: BufReader<File>,
    /// The task it runs now, with its encoded form for a retry.
    running: Option<(u64, Vec<u8>, u32)>,
}

/// A pool of worker processes.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), memspace::spawn::SpawnError> {
/// use memspace::spawn::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let mut pool = Pool::new(4)?;
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
    /// Unique among the pools of this process and its forks (see `Pool::unique_id`): every
    /// handle carries it, so that a handle is only honoured by the pool that made it.
    id: u64,
    method: StartMethod,
    workers: Vec<Worker>,
    queue: VecDeque<(u64, Vec<u8>, u32)>,
    done: HashMap<u64, Result<(u32, Vec<u8>), TaskError>>,
    next_task: u64,
    retries: u32,
    replaced: u64,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("method", &self.method)
            .field("workers", &self.worker_pids())
            .field("queued", &self.queue.len())
            .field("replaced", &self.replaced)
            .finish_non_exhaustive()
    }
}

/// A task submitted with [`Pool::apply_async`]; [`wait`](TaskHandle::wait) for its result.
#[derive(Debug)]
#[must_use = "a submitted task's result is only collected by waiting for it"]
pub struct TaskHandle<R> {
    /// The `id` of the pool that made it: task numbers mean something only in their own pool.
    pool: u64,
    id: u64,
    _result: PhantomData<fn() -> R>,
}

impl Pool {
    /// Starts `workers` worker processes with `fork`.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Os`] if a worker cannot be started.
    pub fn new(workers: usize) -> Result<Self, SpawnError> {
        Self::with_start_method(workers, StartMethod::Fork)
    }

    /// Starts `workers` (at least one) worker processes with `method`.
    ///
    /// # Errors
    ///
    /// [`SpawnError::NotInitialized`] for `Spawn` without [`init()`](crate::init);
    /// [`SpawnError::Os`] if a worker cannot be started.
    pub fn with_start_method(workers: usize, method: StartMethod) -> Result<Self, SpawnError> {
        let mut pool = Pool {
            id: Self::unique_id(),
            method,
            workers: Vec::new(),
            queue: VecDeque::new(),
            done: HashMap::new(),
            next_task: 0,
            retries: 0,
            replaced: 0,
        };
        for _ in 0..workers.max(1) {
            let worker = pool.start_worker()?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// A number no other pool of this process has had: the pid (a forked child's pools
    /// differ from those it inherited) and a count of the pools created in the process.
    fn unique_id() -> u64 {
        static CREATED: AtomicU32 = AtomicU32::new(0);
        (u64::from(std::process::id()) << 32) | u64::from(CREATED.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs a task again on another worker, up to `retries` times, when its worker dies (0 by
    /// default: the task is reported as [`TaskError::WorkerDied`]). Only for tasks that are
    /// safe to run twice.
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    fn start_worker(&self) -> Result<Worker, SpawnError> {
        let ((pid, tasks), results) = match self.method {
            StartMethod::Fork => {
                let inherited: Vec<RawFd> = self
                    .workers
                    .iter()
                    .flat_map(|w| [w.tasks.as_raw_fd(), w.results.get_ref().as_raw_fd()])
                    .collect();
                child::fork_worker(&inherited)?
            }
            StartMethod::Spawn => child::spawn_worker()?,
        };
        Ok(Worker {
            pid,
            tasks,
            results: BufReader::new(File::from(results)),
            running: None,
        })
    }

    /// The pids of the current workers.
    #[must_use]
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.pid).collect()
    }

    /// How many workers died and were replaced.
    #[must_use]
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    /// Submits `target(args)`; the result is collected by [`TaskHandle::wait`].
    ///
    /// # Errors
    ///
    /// [`SpawnError::Encode`] if `args` cannot be serialized.
    pub fn apply_async<A, R>(
        &mut self,
        target: fn(A) -> R,
        args: &A,
    ) -> Result<TaskHandle<R>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let task = Task::new(target, args)?.encode()?;
        let id = self.next_task;
        self.next_task += 1;
        self.queue.push_back((id, task, 0));
        self.dispatch()?;
        Ok(TaskHandle {
            pool: self.id,
            id,
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
        &mut self,
        target: fn(A) -> R,
        args: &A,
    ) -> Result<Result<R, TaskError>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(target, args)?.wait(self)
    }

    /// Runs `target` on every input, spread over the workers; the results come back in input
    /// order, each a `Result` so that one failed task does not hide the others.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] if the pool cannot run the tasks.
    pub fn map<A, R>(
        &mut self,
        target: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Result<Vec<Result<R, TaskError>>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap(target, inputs)?.collect()
    }

    /// As [`map`](Pool::map), yielding each result, in input order, as soon as it and those
    /// before it are done.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Encode`] if an input cannot be serialized (nothing is submitted then).
    pub fn imap<A, R>(
        &mut self,
        target: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Result<Imap<'_, R>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let ids = self.submit_all(target, inputs)?;
        Ok(Imap {
            pool: self,
            ids: ids.into(),
            _result: PhantomData,
        })
    }

    /// As [`imap`](Pool::imap), yielding `(input index, result)` in the order tasks finish.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap`].
    pub fn imap_unordered<A, R>(
        &mut self,
        target: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Result<ImapUnordered<'_, R>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let ids = self.submit_all(target, inputs)?;
        let first = ids.first().copied().unwrap_or(0);
        Ok(ImapUnordered {
            pool: self,
            pending: ids.into_iter().collect(),
            first,
            _result: PhantomData,
        })
    }

    fn submit_all<A, R>(
        &mut self,
        target: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
    ) -> Result<Vec<u64>, SpawnError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let tasks = inputs
            .into_iter()
            .map(|input| Task::new(target, &input)?.encode())
            .collect::<Result<Vec<_>, _>>()?;
        let first = self.next_task;
        self.next_task += tasks.len() as u64;
        for (offset, task) in (0u64..).zip(tasks) {
            self.queue.push_back((first + offset, task, 0));
        }
        self.dispatch()?;
        Ok((first..self.next_task).collect())
    }

    /// Hands queued tasks to idle workers.
    fn dispatch(&mut self) -> Result<(), SpawnError> {
        let mut index = 0;
        while index < self.workers.len() && !self.queue.is_empty() {
            if self.workers[index].running.is_none() {
                let (id, task, attempts) = self.queue.pop_front().expect("checked non-empty");
                let worker = &mut self.workers[index];
                if child::write_frame(&mut worker.tasks, &task).is_err() {
                    // The worker died before taking it: requeue, and let `collect` replace it.
                    self.queue.push_front((id, task, attempts));
                    self.replace(index, None)?;
                    continue;
                }
                worker.running = Some((id, task, attempts));
            }
            index += 1;
        }
        Ok(())
    }

    /// Waits until at least one busy worker answers or dies, and records what happened.
    fn collect(&mut self) -> Result<(), SpawnError> {
        let busy: Vec<usize> = (0..self.workers.len())
            .filter(|&i| self.workers[i].running.is_some())
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        let ready = {
            let fds: Vec<_> = busy
                .iter()
                .map(|&i| self.workers[i].results.get_ref().as_fd())
                .collect();
            sys::wait_readable(&fds).map_err(|source| SpawnError::Os { op: "poll", source })?
        };
        for (&index, ready) in busy.iter().zip(ready) {
            if !ready {
                continue;
            }
            let worker = &mut self.workers[index];
            if let Ok(Some(outcome)) = child::read_frame(&mut worker.results) {
                let (id, _, _) = worker.running.take().expect("a busy worker");
                self.done.insert(id, Ok((worker.pid, outcome)));
            } else {
                // End of input or a torn frame: the worker is gone.
                let running = worker.running.take();
                self.replace(index, running)?;
            }
        }
        self.dispatch()
    }

    /// Reaps worker `index`, fails or requeues its task, and starts a replacement.
    fn replace(
        &mut self,
        index: usize,
        running: Option<(u64, Vec<u8>, u32)>,
    ) -> Result<(), SpawnError> {
        let pid = self.workers[index].pid;
        let _ = sys::send_signal(pid, sys::SIGKILL); // it may be alive but broken
        let how = match sys::wait_child(pid) {
            Ok(sys::ExitStatus::Signaled(signal)) => format!("killed by signal {signal}"),
            Ok(sys::ExitStatus::Exited(code)) => format!("exited with code {code}"),
            Err(err) => format!("could not be reaped: {err}"),
        };
        self.replaced += 1;
        if let Some((id, task, attempts)) = running {
            if attempts < self.retries {
                self.queue.push_front((id, task, attempts + 1));
            } else {
                self.done
                    .insert(id, Err(TaskError::WorkerDied { pid, how }));
            }
        }
        let replacement = self.start_worker()?;
        self.workers[index] = replacement;
        Ok(())
    }

    /// Drives the pool until task `id` is done.
    fn wait_for(&mut self, id: u64) -> Result<Result<(u32, Vec<u8>), TaskError>, SpawnError> {
        loop {
            if let Some(result) = self.done.remove(&id) {
                return Ok(result);
            }
            self.dispatch()?;
            self.collect()?;
        }
    }

    /// Asks the workers to exit after their current tasks, and waits for them to. Queued
    /// tasks that were not started are dropped.
    pub fn join(mut self) {
        self.shut_down(false);
    }

    /// Stops at once: kills every worker (running tasks are lost) and reaps it.
    pub fn terminate(mut self) {
        self.shut_down(true);
    }

    fn shut_down(&mut self, kill: bool) {
        self.queue.clear();
        for worker in self.workers.drain(..) {
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

fn decode<R: DeserializeOwned>(result: Result<(u32, Vec<u8>), TaskError>) -> Result<R, TaskError> {
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

impl<R: DeserializeOwned> TaskHandle<R> {
    /// Waits for the task (driving `pool` meanwhile) and returns its result.
    ///
    /// # Errors
    ///
    /// [`SpawnError::ForeignTask`] at once if `pool` is not the pool that returned this
    /// handle; [`SpawnError`] if the pool cannot go on (a replacement worker cannot start).
    pub fn wait(self, pool: &mut Pool) -> Result<Result<R, TaskError>, SpawnError> {
        if self.pool != pool.id {
            return Err(SpawnError::ForeignTask { task: self.id });
        }
        Ok(decode(pool.wait_for(self.id)?))
    }
}

impl Drop for Pool {
    /// A pool dropped without [`join`](Pool::join) terminates its workers, as Python's does:
    /// dropping must not wait for a task that may never end.
    fn drop(&mut self) {
        self.shut_down(true);
    }
}

/// Results of [`Pool::imap`], in input order.
#[derive(Debug)]
pub struct Imap<'a, R> {
    pool: &'a mut Pool,
    ids: VecDeque<u64>,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Iterator for Imap<'_, R> {
    type Item = Result<Result<R, TaskError>, SpawnError>;

    fn next(&mut self) -> Option<Self::Item> {
        let id = self.ids.pop_front()?;
        Some(self.pool.wait_for(id).map(decode))
    }
}

/// Results of [`Pool::imap_unordered`], as tasks finish: `(input index, result)`.
#[derive(Debug)]
pub struct ImapUnordered<'a, R> {
    pool: &'a mut Pool,
    pending: std::collections::BTreeSet<u64>,
    first: u64,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Iterator for ImapUnordered<'_, R> {
    type Item = Result<(usize, Result<R, TaskError>), SpawnError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pending.is_empty() {
            return None;
        }
        loop {
            if let Some(&id) = self
                .pending
                .iter()
                .find(|id| self.pool.done.contains_key(id))
            {
                self.pending.remove(&id);
                let result = self.pool.done.remove(&id).expect("found above");
                let index = usize::try_from(id - self.first).unwrap_or(usize::MAX);
                return Some(Ok((index, decode(result))));
            }
            if let Err(err) = self.pool.dispatch().and_then(|()| self.pool.collect()) {
                return Some(Err(err));
            }
        }
    }
}
