//! Starting and joining a worker: memspace's `Process` (fork and spawn) beside a raw
//! `fork` + `waitpid`, and `Thread` beside `std::thread::spawn`.
//!
//! # Safety
//!
//! The raw baseline's child of `fork` holds a copy of one thread only, so a lock another
//! thread held at the fork stays locked in it; the child calls nothing but `_exit`, which is
//! async-signal-safe and takes no lock.

#![allow(unsafe_code)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use memspace::spawn::{Process, StartMethod, Thread};

fn nothing((): ()) {}

/// The cheapest possible child: `fork`, `_exit(0)` in the child, `waitpid` in the parent.
fn raw_fork_and_wait() {
    // SAFETY: the child only calls `_exit` (module `# Safety`).
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        // SAFETY: `_exit` has no preconditions; the parent's destructors and stdio are its own.
        0 => unsafe { libc::_exit(0) },
        pid => {
            let mut status = 0;
            // SAFETY: `status` is a valid, writable int on the stack.
            let reaped = unsafe { libc::waitpid(pid, &raw mut status, 0) };
            assert_eq!(reaped, pid, "waitpid: {}", std::io::Error::last_os_error());
        }
    }
}

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
                raw_fork_and_wait();
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
