//! Starting and joining a worker: memspace's `Process` (fork and spawn) beside a raw
//! `fork` + `waitpid`, and `Thread` beside `std::thread::spawn`.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use memspace::spawn::{Process, StartMethod, Thread};

fn nothing((): ()) {}

fn start_join(c: &mut Criterion) {
    memspace::init();
    let mut group = c.benchmark_group("start_join");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("process_fork", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for _ in 0..n {
                let mut p = Process::new(nothing, ()).start_method(StartMethod::Fork);
                p.start().expect("start");
                p.join().expect("join");
            }
            start.elapsed()
        });
    });
    group.bench_function("raw_fork_waitpid", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for _ in 0..n {
                memspace::spawn::raw_fork_and_wait().expect("fork");
            }
            start.elapsed()
        });
    });
    group.bench_function("thread", |b| {
        b.iter(|| {
            let mut t = Thread::new(nothing, ());
            t.start().expect("start");
            t.join().expect("join");
        });
    });
    group.bench_function("std_thread", |b| {
        b.iter(|| std::thread::spawn(|| ()).join().expect("join"));
    });
    group.finish();
}

criterion_group!(benches, start_join);
criterion_main!(benches);
