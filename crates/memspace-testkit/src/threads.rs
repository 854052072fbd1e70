//! Ending a process's main thread while its other threads run on (`pthread_exit` in `main`):
//! `/proc` then shows the main thread, and so the process's own entry, as a zombie, while the
//! process lives on in its other threads.
//!
//! # Safety
//!
//! The thread ends by the `exit` system call (of the calling thread alone) in a signal
//! handler, which is async-signal-safe; the handler is installed with an all-zero
//! `sigaction` (no flags, an empty mask), a valid value. Nothing of the ended thread is
//! touched afterwards: its stack and thread-locals are simply abandoned, as `pthread_exit`
//! abandons them.

#![allow(unsafe_code)]

use crate::children::Parent;
use crate::procfs;

/// Ends the calling process's main thread (see [`end_the_main_thread`]) and runs `then` on
/// another thread once `/proc` shows the main thread ended. That thread leaves (by a panic)
/// if the test process `parent` is gone before the main thread has ended. Call it from the
/// main thread: it does not return.
pub fn go_on_without_the_main_thread(parent: Parent, then: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        wait_for_the_main_thread_to_end(Some(parent));
        then();
    });
    end_the_main_thread();
}

/// Waits until `/proc` shows the calling process's main thread ended (the process's own
/// entry a zombie); leaves (by a panic) if the test process `parent` is gone meanwhile.
pub fn wait_for_the_main_thread_to_end(parent: Option<Parent>) {
    let me = std::process::id();
    while procfs::process_state(me) != Some('Z') {
        if let Some(parent) = parent {
            parent.exit_if_gone();
        }
        std::thread::yield_now();
    }
}

/// Ends the calling process's main thread, by sending it `SIGUSR1` with a handler that ends
/// the thread it runs on. Call it from the main thread, or know where the main thread stands:
/// it ends there, with whatever it holds (the allocator's lock, stdout's). The handler stays
/// installed for the rest of the process, and the process ends when its last other thread
/// does.
///
/// # Panics
///
/// If the process's id does not fit a `pid_t` (it always does on Linux).
#[allow(
    clippy::disallowed_methods,
    reason = "a test's own signal handler, and the exit of one thread, which no wrapper offers"
)]
pub fn end_the_main_thread() {
    extern "C" fn end_this_thread(_: libc::c_int) {
        // SAFETY: `exit` of the calling thread alone, async-signal-safe; it never returns.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
    }
    // SAFETY: all zeros is a valid `sigaction`: no flags, an empty mask.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = end_this_thread as *const () as usize;
    // SAFETY: the handler only ends the thread it runs on; no old action is asked for.
    unsafe { libc::sigaction(libc::SIGUSR1, &raw const action, std::ptr::null_mut()) };
    let pid = libc::pid_t::try_from(std::process::id()).expect("a pid");
    // SAFETY: `tgkill` sends the signal to the main thread (its id is the pid) alone.
    unsafe { libc::syscall(libc::SYS_tgkill, pid, pid, libc::SIGUSR1) };
}
