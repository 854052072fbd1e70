//! A counter shared by processes: four child processes each add 1 to one `Value` a thousand
//! times. `update` changes the value under its lock, so no increment is lost, as it would be
//! with a read followed by a write.
//!
//! Run with `cargo run --example shared_counter`; the last line is `counter: 4000`.

use memspace::{Process, Value};

#[allow(
    clippy::needless_pass_by_value,
    reason = "a worker's target takes its arguments by value: that is how workers receive them"
)]
fn count(counter: Value<u64>) {
    for _ in 0..1000 {
        counter.update(|n| *n += 1).expect("update the counter");
    }
}

fn main() -> memspace::Result<()> {
    memspace::init();
    let counter = Value::new(0_u64)?;
    let mut workers: Vec<Process<Value<u64>>> = (0..4)
        .map(|_| Process::new(count, counter.clone()))
        .collect();
    for worker in &mut workers {
        worker.start()?;
    }
    for worker in &mut workers {
        worker.join()?;
    }
    println!("counter: {}", counter.get()?);
    Ok(())
}
