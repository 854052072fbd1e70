//! The tutorial's experiment with threads, ported to memspace: three threads append to one
//! `SharedList` under one `Lock`.
//!
//! `examples/tutorial_processes.rs` is this file with `Thread` changed to `Process`; the
//! output is the same. Run with `cargo run --example tutorial_threads`.

use memspace::{Lock, SharedList, Thread};

fn func((nums, i, lock): (SharedList<i64>, usize, Lock)) {
    let guard = lock.lock().expect("lock"); // the console is a shared resource: take the lock
    println!(
        "Thread -{i} :  {:#x}",
        nums.segment()
            .expect("`new` makes a shared-memory list")
            .base_address()
    );
    drop(guard); // release the lock
    for i in 0..3 {
        let _guard = lock.lock().expect("lock"); // nums is shared too: take the lock
        nums.push(&i).expect("push");
        println!("Thread -{i} :  {:?}", nums.to_vec().expect("read"));
    } // each guard releases the lock as it goes out of scope
}

fn main() -> memspace::Result<()> {
    memspace::init();
    let lock = Lock::new()?;
    let nums = SharedList::<i64>::new()?;
    println!(
        "Main Thread : {:#x}",
        nums.segment()
            .expect("`new` makes a shared-memory list")
            .base_address()
    );
    for i in 0..3 {
        let mut p = Thread::new(func, (nums.clone(), i, lock.clone()));
        p.start()?;
        p.join()?;
    }
    println!("Main Thread : {:?}", nums.to_vec()?);
    Ok(())
}
