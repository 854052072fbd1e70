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
    // The baselines of the same two loops: `std_mutex` is the loop of `memspace bench`'s
    // `lock_uncontended` row (a lock and an unlock, nothing between), `std_mutex_increment`
    // the baseline of `memspace_mutex_increment`. Comparing `memspace_lock` with the increment
    // loop instead once made criterion report 0.80x where `memspace bench` reported 0.64x.
    let std_mutex = std::sync::Mutex::new(0u64);
    group.bench_function("std_mutex", |b| {
        b.iter(|| drop(std_mutex.lock().expect("lock")));
    });
    group.bench_function("std_mutex_increment", |b| {
        b.iter(|| *std_mutex.lock().expect("lock") += 1);
    });
    group.finish();
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
