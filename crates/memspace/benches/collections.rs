//! Single-process operation costs of the shared collections, each beside its std counterpart
//! behind a `std::sync::Mutex` (what threads would use).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use memspace::SharedList;
use memspace::collections::{PodQueue, Queue, SharedMap, SharedVec};

fn push(c: &mut Criterion) {
    let mut group = c.benchmark_group("push_u64");
    let vec = SharedVec::<u64>::new().expect("vec");
    group.bench_function("shared_vec", |b| {
        b.iter(|| vec.push(black_box(7)).expect("push"));
    });
    let list = SharedList::<u64>::new().expect("list");
    group.bench_function("shared_list", |b| {
        b.iter(|| list.push(&black_box(7)).expect("push"));
    });
    let std_vec = Mutex::new(Vec::new());
    group.bench_function("std_mutex_vec", |b| {
        b.iter(|| std_vec.lock().expect("lock").push(black_box(7u64)));
    });
    group.finish();
}

fn map(c: &mut Criterion) {
    let mut group = c.benchmark_group("map_u64");
    let shared = SharedMap::<u64, u64>::new().expect("map");
    let std_map = Mutex::new(HashMap::new());
    for i in 0..10_000u64 {
        shared.insert(&i, &i).expect("insert");
        std_map.lock().expect("lock").insert(i, i);
    }
    let mut key = 0u64;
    group.bench_function("shared_map_get", |b| {
        b.iter(|| {
            key = (key + 7919) % 10_000;
            black_box(shared.get(&key).expect("get"))
        });
    });
    group.bench_function("std_mutex_hash_map_get", |b| {
        b.iter(|| {
            key = (key + 7919) % 10_000;
            black_box(std_map.lock().expect("lock").get(&key).copied())
        });
    });
    group.bench_function("shared_map_insert", |b| {
        b.iter(|| {
            key = (key + 7919) % 10_000;
            shared.insert(&key, &key).expect("insert")
        });
    });
    group.bench_function("std_mutex_hash_map_insert", |b| {
        b.iter(|| {
            key = (key + 7919) % 10_000;
            std_map.lock().expect("lock").insert(key, key)
        });
    });
    group.finish();
}

fn queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_put_get");
    let shared = Queue::<u64>::new().expect("queue");
    group.bench_function("shared_queue", |b| {
        b.iter(|| {
            shared.put(&black_box(1)).expect("put");
            shared.get().expect("get")
        });
    });
    let pod = PodQueue::<u64>::new(1024).expect("pod queue");
    group.bench_function("pod_queue", |b| {
        b.iter(|| {
            pod.put(black_box(1)).expect("put");
            pod.get().expect("get")
        });
    });
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    group.bench_function("std_mpsc", |b| {
        b.iter(|| {
            tx.send(black_box(1)).expect("send");
            rx.recv().expect("recv")
        });
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_1m_u64");
    let data: Vec<u64> = (0..1_000_000).collect();
    let shared = SharedVec::<u64>::new().expect("vec");
    shared.extend_from_slice(&data).expect("fill");
    group.bench_function("shared_vec_slice_sum", |b| {
        b.iter_batched(
            || (),
            |()| shared.as_slice().expect("slice").iter().sum::<u64>(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("vec_sum", |b| b.iter(|| data.iter().sum::<u64>()));
    group.finish();
}

criterion_group!(benches, push, map, queue, read);
criterion_main!(benches);
