//! A job queue worked by a pool of processes: the parent puts twenty jobs in a shared
//! `Queue`, four worker processes of a `Pool` take them until none is left, and each result
//! goes to a second queue. A job is acknowledged only once its result is in: had a worker been
//! killed halfway, its job would have gone back to the queue for another worker.
//!
//! Run with `cargo run --example job_queue`; the last line is `jobs: 20, sum of squares: 2870`.

use std::time::Duration;

use memspace::{Pool, Queue, QueueError};

/// Takes jobs until the queue is empty; returns how many this worker did.
fn work((jobs, results): (Queue<u64>, Queue<u64>)) -> u64 {
    let mut done = 0;
    loop {
        let job = match jobs.try_receive() {
            Ok(job) => job,
            Err(QueueError::Empty { .. }) => return done,
            Err(err) => panic!("taking a job: {err}"),
        };
        let n = *job.value();
        std::thread::sleep(Duration::from_millis(5)); // the job's work
        results.put(&(n * n)).expect("put the result");
        job.ack().expect("acknowledge the job");
        done += 1;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    memspace::init();
    let (jobs, results) = (Queue::<u64>::new()?, Queue::<u64>::new()?);
    for n in 1..=20 {
        jobs.put(&n)?;
    }
    let pool = Pool::new(4)?;
    let shares = pool.map(work, (0..4).map(|_| (jobs.clone(), results.clone())))?;
    for (worker, share) in shares.into_iter().enumerate() {
        println!("worker {worker} did {} jobs", share?);
    }
    pool.join();
    let squares = results.to_vec()?;
    println!(
        "jobs: {}, sum of squares: {}",
        squares.len(),
        squares.iter().sum::<u64>()
    );
    Ok(())
}
