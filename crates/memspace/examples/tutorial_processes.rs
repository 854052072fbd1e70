//! The tutorial's experiment with processes, ported to memspace: three child processes append
//! to one `SharedList` under one `Lock`, and the parent sees every append.
//!
//! `examples/tutorial_threads.rs` is this file with `Process` changed to `Thread`; the output
//! is the same. Run with `cargo run --example tutorial_processes`.

use memspace::{Lock, Process, SharedList};

fn func((nums, i, lock): (SharedList<i64>, usize, Lock)) {
    let guard = lock.lock().expect("lock"); // the console is a shared resource: take the lock
    println!(
        "Process -{i} :  {:#x}",
        nums.segment()
            .expect("`new` makes a shared-memory list")
            .base_address()
    );
    drop(guard); // release the lock
    for i in 0..3 {
        let _guard = lock.lock().expect("lock"); // nums is shared too: take the lock
        nums.push(&i).expect("push");
        println!("Process -{i} :  {:?}", nums.to_vec().expect("read"));
    } // each guard releases the lock as it goes out of scope
}

fn main() -> memspace::Result<()> {
    memspace::init();
    let lock = Lock::new()?;
    let nums = SharedList::<i64>::new()?;
    println!(
        "Main Process : {:#x}",
        nums.segment()
            .expect("`new` makes a shared-memory list")
            .base_address()
    );
    for i in 0..3 {
        let mut p = Process::new(func, (nums.clone(), i, lock.clone()));
        p.start()?;
        p.join()?;
    }
    println!("Main Process : {:?}", nums.to_vec()?);
    Ok(())
}
