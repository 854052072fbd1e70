//! The default run: which comparisons it makes, in which order, and how large each is.

use memspace::collections::{PodQueue, Queue};
use memspace::spawn::StartMethod;

use crate::measure::median_pair;
use crate::progress::Progress;
use crate::report::{Comparison, Names, Scaling};
use crate::{fork, map, python, queues, workloads};

/// Sizes of the runs.
pub(crate) struct Sizes {
    /// How many times the short comparisons run (their medians are reported).
    rounds: u32,
    vec_pushes: u64,
    pub(crate) list_pushes: u64,
    array_adds: u64,
    /// Pushes by each worker at each point of the scaling curve.
    scaling_pushes: u64,
    lock_rounds: u64,
    forks: u32,
    spawns: u32,
    read_elements: u64,
    growth_elements: u64,
    /// Lookups by each reader, and inserts, of the map's comparisons.
    map_gets: u64,
    map_inserts: u64,
    /// Items of each queue scenario.
    queue_items: u64,
}

impl Sizes {
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                rounds: 3,
                vec_pushes: 250_000,
                list_pushes: 50_000,
                array_adds: 250_000,
                scaling_pushes: 100_000,
                lock_rounds: 2_000_000,
                forks: 200,
                spawns: 30,
                read_elements: 10_000_000,
                growth_elements: 10_000_000,
                map_gets: 200_000,
                map_inserts: 50_000,
                queue_items: 200_000,
            }
        } else {
            Sizes {
                rounds: 5,
                vec_pushes: 2_000_000,
                list_pushes: 250_000,
                array_adds: 2_000_000,
                scaling_pushes: 1_000_000,
                lock_rounds: 20_000_000,
                forks: 1000,
                spawns: 200,
                read_elements: 10_000_000,
                growth_elements: 100_000_000,
                map_gets: 5_000_000,
                map_inserts: 1_000_000,
                queue_items: 500_000,
            }
        }
    }
}

/// The comparisons measured so far, and the progress line that announces each.
struct Recorder<'a> {
    rounds: u32,
    progress: &'a mut Progress,
    comparisons: Vec<Comparison>,
}

impl Recorder<'_> {
    /// Announces `step`, then records the medians of alternating runs of `ours` and `theirs`
    /// (see [`median_pair`]), rates where more is better.
    fn median(
        &mut self,
        step: &str,
        names: Names,
        ours: impl FnMut() -> anyhow::Result<f64>,
        theirs: impl FnMut() -> anyhow::Result<f64>,
    ) -> anyhow::Result<()> {
        self.progress.next(step);
        let values = median_pair(self.rounds, ours, theirs)?;
        self.comparisons.push(Comparison::throughput(names, values));
        Ok(())
    }

    /// As [`Recorder::median`], with a description of the scenario (see
    /// [`Comparison::described`]).
    fn median_described(
        &mut self,
        step: &str,
        names: Names,
        description: &'static str,
        ours: impl FnMut() -> anyhow::Result<f64>,
        theirs: impl FnMut() -> anyhow::Result<f64>,
    ) -> anyhow::Result<()> {
        self.median(step, names, ours, theirs)?;
        if let Some(last) = self.comparisons.pop() {
            self.comparisons.push(last.described(description));
        }
        Ok(())
    }

    /// Announces `step`, then records the comparison `measure` makes in one run.
    fn once(
        &mut self,
        step: &str,
        measure: impl FnOnce() -> anyhow::Result<Comparison>,
    ) -> anyhow::Result<()> {
        self.progress.next(step);
        self.comparisons.push(measure()?);
        Ok(())
    }
}

/// The `SharedList` rows: a push against a `SharedVec` push in one process, then sets and pops
/// from 4 processes against `Mutex<Vec>` from 4 threads, and the Python baselines of the three
/// if `python`.
fn list_rows(
    run: &mut Recorder<'_>,
    sizes: &Sizes,
    python: bool,
    quick: bool,
) -> anyhow::Result<()> {
    run.median(
        "SharedList<i64> push against SharedVec<u64> push, one process",
        (
            "shared_list_push_one_process",
            "shared_vec_push_one_process",
            "pushes/s",
        ),
        || workloads::shared_list_push_one_process(sizes.list_pushes),
        || workloads::shared_vec_push_one_process(sizes.list_pushes),
    )?;

    run.progress.next("SharedList<i64> push, 4 processes");
    let list = workloads::shared_list_push(sizes.list_pushes)?;
    run.median(
        "SharedList<i64> set, 4 processes, against Mutex<Vec<i64>>, 4 threads",
        ("shared_list_set", "rust_threads_mutex_vec_set", "sets/s"),
        || workloads::shared_list_set(sizes.list_pushes),
        || Ok(workloads::threads_mutex_vec_set(sizes.list_pushes)),
    )?;
    let set = run.comparisons.last().map_or(0.0, Comparison::memspace);
    run.median(
        "SharedList<i64> pop, 4 processes, against Mutex<Vec<i64>>, 4 threads",
        ("shared_list_pop", "rust_threads_mutex_vec_pop", "pops/s"),
        || workloads::shared_list_pop(sizes.list_pushes),
        || Ok(workloads::threads_mutex_vec_pop(sizes.list_pushes)),
    )?;
    let pop = run.comparisons.last().map_or(0.0, Comparison::memspace);
    if python {
        python_rows(run, sizes, quick, [list, set, pop])?;
    }
    Ok(())
}

/// The steps [`measure`] announces on its progress line: one per comparison measured against
/// its baseline, one for the `SharedList` pushes, and with `python` one for the `SharedArray`
/// additions and one for all the Python baselines. The test of `memspace bench` checks that
/// the progress line ends at this count.
pub(crate) fn steps(python: bool) -> usize {
    28 + 5 * usize::from(cfg!(feature = "ipc-baselines")) + 2 * usize::from(python)
}

/// Every comparison of the default run, with the Python baselines if `python`.
pub(crate) fn measure(
    sizes: &Sizes,
    python: bool,
    quick: bool,
    progress: &mut Progress,
) -> anyhow::Result<Vec<Comparison>> {
    let mut run = Recorder {
        rounds: sizes.rounds,
        progress,
        comparisons: Vec::new(),
    };
    run.median(
        "SharedVec<u64> push, 4 processes, against Mutex<Vec<u64>>, 4 threads",
        ("shared_vec_push", "rust_threads_mutex_vec", "pushes/s"),
        || workloads::shared_vec_push(4, sizes.vec_pushes),
        || Ok(workloads::threads_mutex_vec(4, sizes.vec_pushes)),
    )?;

    list_rows(&mut run, sizes, python, quick)?;

    map_rows(&mut run, sizes)?;

    run.median(
        "Lock vs std::sync::Mutex, uncontended",
        ("lock_uncontended", "std_mutex", "lock+unlock/s"),
        || workloads::lock_uncontended(sizes.lock_rounds),
        || Ok(workloads::std_mutex_uncontended(sizes.lock_rounds)),
    )?;
    run.median(
        "RLock vs std::sync::Mutex, uncontended",
        ("rlock_uncontended", "std_mutex", "lock+unlock/s"),
        || workloads::rlock_uncontended(sizes.lock_rounds),
        || Ok(workloads::std_mutex_uncontended(sizes.lock_rounds)),
    )?;
    run.median(
        "RwLock<u64> read vs std::sync::RwLock, uncontended",
        (
            "rwlock_read_uncontended",
            "std_rwlock_read",
            "lock+unlock/s",
        ),
        || workloads::rwlock_uncontended(sizes.lock_rounds, false),
        || Ok(workloads::std_rwlock_uncontended(sizes.lock_rounds, false)),
    )?;
    run.median(
        "RwLock<u64> write vs std::sync::RwLock, uncontended",
        (
            "rwlock_write_uncontended",
            "std_rwlock_write",
            "lock+unlock/s",
        ),
        || workloads::rwlock_uncontended(sizes.lock_rounds, true),
        || Ok(workloads::std_rwlock_uncontended(sizes.lock_rounds, true)),
    )?;
    run.median(
        "Condvar notify_one with no waiter vs std::sync::Condvar",
        (
            "condvar_notify_unwaited",
            "std_condvar_notify",
            "notifications/s",
        ),
        || workloads::condvar_notify_unwaited(sizes.lock_rounds),
        || Ok(workloads::std_condvar_notify_unwaited(sizes.lock_rounds)),
    )?;
    run.median(
        "Process start+join, fork",
        ("process_start_fork", "raw_fork", "starts/s"),
        || workloads::process_start(StartMethod::Fork, sizes.forks),
        || fork::rate(sizes.forks),
    )?;
    run.median_described(
        "Process start+join, fork, against a fork with a results file",
        ("process_start_fork", "fork_with_results", "starts/s"),
        "Process::start and join with StartMethod::Fork, against the same protocol in bare \
         system calls: a memfd the child writes a 12-byte frame into before _exit, the parent \
         reaping it with waitpid, then reading the file",
        || workloads::process_start(StartMethod::Fork, sizes.forks),
        || fork::rate_with_results(sizes.forks),
    )?;
    run.median(
        "Process start+join, spawn",
        ("process_start_spawn", "command_spawn", "starts/s"),
        || workloads::process_start(StartMethod::Spawn, sizes.spawns),
        || workloads::command_spawn(sizes.spawns),
    )?;

    queue_rows(&mut run, sizes)?;
    pod_queue_rows(&mut run, sizes)?;

    run.once("reading 10 M u64 as a slice", || {
        let names = ("shared_vec_read", "vec_read", "GB/s");
        Ok(Comparison::throughput(
            names,
            workloads::read_slice(sizes.read_elements)?,
        ))
    })?;
    run.once("SharedList memory per item", || {
        let names = ("shared_list_memory", "encoded_size", "bytes/item");
        Ok(Comparison::cost(names, workloads::list_memory(1_000_000)?))
    })?;
    run.once("growth: 2 processes push into one SharedVec", || {
        let names = ("shared_vec_growth", "first_tenth", "ms/M items");
        let (late, early) = workloads::growth(sizes.growth_elements)?;
        Ok(Comparison::cost(names, (late, early)))
    })?;
    Ok(run.comparisons)
}

/// The maps' comparisons: `SharedMap` and `SharedPodMap` lookups from two processes against
/// one, and lookups and inserts against `RwLock<HashMap>` and `Mutex<HashMap>`.
fn map_rows(run: &mut Recorder<'_>, sizes: &Sizes) -> anyhow::Result<()> {
    run.median(
        "SharedMap<u64, u64> get, 2 processes against 1 process",
        (
            "shared_map_get_2_processes",
            "shared_map_get_1_process",
            "gets/s",
        ),
        || map::get_processes(2, sizes.map_gets),
        || map::get_processes(1, sizes.map_gets),
    )?;
    run.median(
        "SharedMap<u64, u64> get against RwLock<HashMap<u64, u64>>, one thread",
        ("shared_map_get", "rwlock_hash_map_get", "gets/s"),
        || map::get_one_thread(sizes.map_gets),
        || Ok(map::rwlock_hash_map_get(sizes.map_gets)),
    )?;
    run.median(
        "SharedMap<u64, u64> insert against Mutex<HashMap<u64, u64>>, one thread",
        ("shared_map_insert", "mutex_hash_map_insert", "inserts/s"),
        || map::insert_one_thread(sizes.map_inserts),
        || Ok(map::mutex_hash_map_insert(sizes.map_inserts)),
    )?;
    run.median(
        "SharedPodMap<u64, u64> get, 2 processes against 1 process",
        (
            "shared_pod_map_get_2_processes",
            "shared_pod_map_get_1_process",
            "gets/s",
        ),
        || map::pod_get_processes(2, sizes.map_gets),
        || map::pod_get_processes(1, sizes.map_gets),
    )?;
    run.median(
        "SharedPodMap<u64, u64> get against RwLock<HashMap<u64, u64>>, one thread",
        ("shared_pod_map_get", "rwlock_hash_map_get", "gets/s"),
        || map::pod_get_one_thread(sizes.map_gets),
        || Ok(map::rwlock_hash_map_get(sizes.map_gets)),
    )?;
    run.median(
        "SharedPodMap<u64, u64> insert against Mutex<HashMap<u64, u64>>, one thread",
        (
            "shared_pod_map_insert",
            "mutex_hash_map_insert",
            "inserts/s",
        ),
        || map::pod_insert_one_thread(sizes.map_inserts),
        || Ok(map::mutex_hash_map_insert(sizes.map_inserts)),
    )?;
    Ok(())
}

/// The queue's comparisons: in one process against `std::sync::mpsc`, batches against single
/// items between two processes, and (with the feature `ipc-baselines`) single items between
/// two processes against `ipc-channel` and iceoryx2.
fn queue_rows(run: &mut Recorder<'_>, sizes: &Sizes) -> anyhow::Result<()> {
    let n = sizes.queue_items;
    run.median_described(
        "Queue<u64> put+get in one process, against std::sync::mpsc",
        ("queue_put_get", "std_mpsc", "put+get/s"),
        "one thread: put(u64) then get() (received and acknowledged at once) on an unbounded \
         queue, against send(u64) then recv() on std::sync::mpsc::channel",
        || queues::put_get_in_process::<Queue<u64>>(n),
        || queues::mpsc_in_process(n),
    )?;
    run.median_described(
        "Queue<u64> between two processes: batches against single items",
        (
            "queue_two_processes_batched",
            "queue_two_processes",
            "items/s",
        ),
        "a producer process puts u64 items, this process takes them: batched, put_many of 64 \
         and get_many of up to 256 (each batch acknowledged under one lock), against one put \
         and one get per item; a get that finds nothing spins for an adaptive budget, then \
         sleeps on a futex until a put wakes it; timed from the first item received to the last",
        || queues::two_processes_batched::<Queue<u64>>(n),
        || queues::two_processes::<Queue<u64>>(n),
    )?;
    run.median_described(
        "Queue<u64> between two processes: batches received at least once against single items",
        (
            "queue_two_processes_receive_many",
            "queue_two_processes",
            "items/s",
        ),
        "as queue_two_processes_batched, with the items taken in flight by receive_many of up \
         to 256 and acknowledged by one ack per batch (at least once) instead of get_many",
        || queues::two_processes_received_in_batches(n),
        || queues::two_processes::<Queue<u64>>(n),
    )?;
    #[cfg(feature = "ipc-baselines")]
    {
        run.median_described(
            "Queue<u64> between two processes, against ipc-channel",
            ("queue_two_processes", "ipc_channel", "items/s"),
            "a producer process sends u64 items one at a time, this process receives them one \
             at a time, blocking: Queue put and get (acknowledged), against ipc-channel \
             IpcSender<u64>::send and IpcReceiver::recv (a Unix socket); timed from the first \
             item received to the last",
            || queues::two_processes::<Queue<u64>>(n),
            || crate::ipc::ipc_channel(n),
        )?;
        run.median_described(
            "Queue<u64> between two processes, against iceoryx2 publish-subscribe",
            ("queue_two_processes", "iceoryx2_pubsub", "items/s"),
            "a producer process sends u64 items one at a time, this process receives them one \
             at a time: Queue put and get (acknowledged; an empty get spins, then sleeps on a \
             futex), against iceoryx2 publish-subscribe (loan_uninit, write_payload, send; safe \
             overflow off, a subscriber buffer of 256, the publisher retrying while it is \
             full; the subscriber busy-polls receive); timed from the first item received to \
             the last",
            || queues::two_processes::<Queue<u64>>(n),
            || crate::ipc::iceoryx2_publish_subscribe(n),
        )?;
        run.median_described(
            "Queue<u64> batches between two processes, against iceoryx2 publish-subscribe",
            ("queue_two_processes_batched", "iceoryx2_pubsub", "items/s"),
            "as queue_two_processes against iceoryx2_pubsub, with memspace's items put 64 per \
             put_many and taken up to 256 per get_many; iceoryx2 still sends one sample per \
             item (zero-copy, no batching API for single values)",
            || queues::two_processes_batched::<Queue<u64>>(n),
            || crate::ipc::iceoryx2_publish_subscribe(n),
        )?;
    }
    Ok(())
}

/// `PodQueue`'s comparisons: in one process against `std::sync::mpsc`, between two processes
/// against `Queue`, batches against single items, and (with the feature `ipc-baselines`)
/// against iceoryx2 and `ipc-channel`.
fn pod_queue_rows(run: &mut Recorder<'_>, sizes: &Sizes) -> anyhow::Result<()> {
    let n = sizes.queue_items;
    run.median_described(
        "PodQueue<u64> put+get in one process, against std::sync::mpsc",
        ("pod_queue_put_get", "std_mpsc", "put+get/s"),
        "one thread: put(u64) then get() on a PodQueue of 4096 slots, against send(u64) then \
         recv() on std::sync::mpsc::channel",
        || queues::put_get_in_process::<PodQueue<u64>>(n),
        || queues::mpsc_in_process(n),
    )?;
    run.median_described(
        "PodQueue<u64> between two processes, against Queue<u64>",
        ("pod_queue_two_processes", "queue_two_processes", "items/s"),
        "a producer process puts u64 items one put at a time, this process takes them one get \
         at a time: a PodQueue of 4096 slots (a put that finds it full, or a get that finds it \
         empty, spins for an adaptive budget, then sleeps on a futex), against an unbounded \
         Queue; timed from the first item received to the last",
        || queues::two_processes::<PodQueue<u64>>(n),
        || queues::two_processes::<Queue<u64>>(n),
    )?;
    run.median_described(
        "PodQueue<u64> between two processes: batches against single items",
        (
            "pod_queue_two_processes_batched",
            "pod_queue_two_processes",
            "items/s",
        ),
        "as pod_queue_two_processes, with put_many of 64 and get_many of up to 256 against one \
         put and one get per item",
        || queues::two_processes_batched::<PodQueue<u64>>(n),
        || queues::two_processes::<PodQueue<u64>>(n),
    )?;
    #[cfg(feature = "ipc-baselines")]
    {
        run.median_described(
            "PodQueue<u64> between two processes, against iceoryx2 publish-subscribe",
            ("pod_queue_two_processes", "iceoryx2_pubsub", "items/s"),
            "as queue_two_processes against iceoryx2_pubsub, with a PodQueue of 4096 slots",
            || queues::two_processes::<PodQueue<u64>>(n),
            || crate::ipc::iceoryx2_publish_subscribe(n),
        )?;
        run.median_described(
            "PodQueue<u64> between two processes, against ipc-channel",
            ("pod_queue_two_processes", "ipc_channel", "items/s"),
            "as queue_two_processes against ipc_channel, with a PodQueue of 4096 slots",
            || queues::two_processes::<PodQueue<u64>>(n),
            || crate::ipc::ipc_channel(n),
        )?;
    }
    Ok(())
}

/// The comparisons with Python's own tools (`bench_baselines.py`): memspace's list `push`,
/// `set` and `pop` rates (`list`, as measured above), and `SharedArray` additions, measured
/// here for them alone.
fn python_rows(
    run: &mut Recorder<'_>,
    sizes: &Sizes,
    quick: bool,
    [list, set, pop]: [f64; 3],
) -> anyhow::Result<()> {
    // Measured only for its comparison with Python's `Array`.
    run.progress.next("SharedArray<u64> fetch_add, 4 processes");
    let array = workloads::shared_array_add(sizes.array_adds)?;
    run.progress.next("Python baselines");
    let py = python::baselines(quick)?;
    let rows = [
        (
            "shared_list_push",
            list,
            "python_manager_list",
            "manager_list_append",
            "appends/s",
        ),
        (
            "shared_list_push",
            list,
            "python_threads_lock",
            "threads_lock_append",
            "appends/s",
        ),
        (
            "shared_list_push",
            list,
            "python_shareable_list",
            "shareable_list_write",
            "appends/s",
        ),
        (
            "shared_list_set",
            set,
            "python_manager_list_set",
            "manager_list_set",
            "sets/s",
        ),
        (
            "shared_list_pop",
            pop,
            "python_manager_list_pop",
            "manager_list_pop",
            "pops/s",
        ),
        (
            "shared_array_add",
            array,
            "python_array_locked_add",
            "array_locked_add",
            "adds/s",
        ),
    ];
    for (scenario, ours, baseline, key, unit) in rows {
        if let Some(value) = py.get(key).and_then(serde_json::Value::as_f64) {
            let names = (scenario, baseline, unit);
            run.comparisons
                .push(Comparison::throughput(names, (ours, value)));
        }
    }
    Ok(())
}

/// The scaling curve of `--plot`: u64 pushes per second from 1, 2, 4 and 8 workers, processes
/// into a `SharedVec` and threads into a `Mutex<Vec>`, each the median of alternating rounds.
/// Each point is timed from the moment every worker has started (see
/// [`workloads::shared_vec_push_started`]), so that it shows pushes, not process starts.
pub(crate) fn scaling(sizes: &Sizes, progress: &mut Progress) -> anyhow::Result<Vec<Scaling>> {
    let n = sizes.scaling_pushes;
    let mut points = Vec::new();
    for workers in [1, 2, 4, 8] {
        progress.next(&format!("scaling, {workers} workers"));
        let (shared_vec, mutex_vec) = median_pair(
            sizes.rounds,
            || workloads::shared_vec_push_started(workers, n),
            || Ok(workloads::threads_mutex_vec_started(workers, n)),
        )?;
        points.push(Scaling {
            workers,
            shared_vec,
            mutex_vec,
        });
    }
    Ok(points)
}
