//! A cache shared by processes: four worker processes of a `Pool` need the Collatz length of
//! the numbers 1 to 300, and each looks in a shared `SharedMap` before it computes one; what
//! one process computed, the others find there.
//!
//! `cargo run --example map_cache` keeps the map in shared memory; with a Redis URL,
//! `cargo run --example map_cache -- redis://127.0.0.1:6379`, the same program keeps it on
//! that server, where workers on other machines could share it too. Either way the last line
//! is `keys: 300, sum of lengths: 14167`.

use memspace::{Backend, Pool, SharedMap};

/// The number of steps of the Collatz sequence from `n` down to 1: the expensive function
/// the cache saves calls of (a millisecond stands for its cost).
fn collatz_length(mut n: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(1));
    let mut steps = 0;
    while n != 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

/// Looks up each number, computing and storing the ones the cache does not have yet; returns
/// how many were found and how many computed.
fn work((cache, numbers): (SharedMap<u64, u64>, Vec<u64>)) -> (u64, u64) {
    let (mut found, mut computed) = (0, 0);
    for n in numbers {
        if cache.get(&n).expect("read the cache").is_some() {
            found += 1;
        } else {
            cache
                .insert(&n, &collatz_length(n))
                .expect("write the cache");
            computed += 1;
        }
    }
    (found, computed)
}

/// Removes the cache when the program ends, however it ends.
struct Removed(String);

impl Drop for Removed {
    fn drop(&mut self) {
        if let Err(err) = memspace::remove(&self.0) {
            eprintln!("removing the cache: {err}");
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    memspace::init();
    let backend = match std::env::args().nth(1) {
        Some(url) => Backend::redis(&url)?,
        None => Backend::SharedMemory,
    };
    let name = backend.locate(&format!("map-cache.{}", std::process::id()));
    let cache = SharedMap::<u64, u64>::create(&name)?;
    let _removed = Removed(name);

    // Every worker needs every number, each starting at another place.
    let workers = 4;
    let shares = (0..workers).map(|worker| {
        let numbers = (1..=300).cycle().skip(worker * 75).take(300).collect();
        (cache.clone(), numbers)
    });
    let mut pool = Pool::new(workers)?;
    for (worker, share) in pool.map(work, shares)?.into_iter().enumerate() {
        let (found, computed) = share?;
        println!("worker {worker}: {found} found in the cache, {computed} computed");
    }
    pool.join();
    let mut sum = 0;
    for n in 1..=300 {
        sum += cache.get(&n)?.ok_or("a number missing from the cache")?;
    }
    println!("keys: {}, sum of lengths: {sum}", cache.len()?);
    Ok(())
}
