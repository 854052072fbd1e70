//! Uncontended lock and unlock: memspace's robust cross-process `Lock` and `Mutex<T>` beside
//! `std::sync::Mutex` in the same group.

use criterion::{Criterion, criterion_group, criterion_main};

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("lock_uncontended");
    let lock = memspace::Lock::new().expect("lock");
    group.bench_function("memspace_lock", |b| {
        // No `black_box`: the lock and unlock are atomic operations on shared memory, which
        // the compiler may not remove; boxing the guard would only time a copy of it.
        b.iter(|| drop(lock.lock().expect("lock")));
    });
    let mutex = memspace::Mutex::new(0u64).expect("mutex");
    group.bench_function("memspace_mutex_increment", |b| {
        b.iter(|| *mutex.lock().expect("lock") += 1);
    });
    let std_mutex = std::sync::Mutex::new(0u64);
    group.bench_function("std_mutex_increment", |b| {
        b.iter(|| *std_mutex.lock().expect("lock") += 1);
    });
    group.finish();
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
