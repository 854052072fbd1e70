//! Linux: POSIX shared memory under `/dev/shm`, address-space reservations, futexes, `fork`,
//! pipes and `/proc`.
//!
//! One module per concern. Those that touch raw memory or process state opt in to `unsafe`
//! each, and state in their `# Safety` section the invariants they rely on:
//!
//! * `files`: the shared-memory objects and regular files that back segments;
//! * `memory`: address-space reservations and the shared mappings inside them (unsafe);
//! * `fault`: the `SIGBUS` handler for a peer that shrinks a segment's file (unsafe);
//! * `futex`: sleeping on a shared word and waking its sleepers (unsafe);
//! * `process`: this process's and thread's identity, whether others live, signals (unsafe);
//! * `child`: `fork`, descriptors handed to a child, waiting for children (unsafe).

#![allow(clippy::disallowed_methods)] // we are sys: the one place allowed to call libc directly

mod child;
mod fault;
mod files;
mod futex;
mod memory;
mod process;

pub(crate) use self::child::{
    ExitStatus, FdWriter, Forked, adopt_inherited_fd, child_has_ended, close_inherited, empty_file,
    end_notifier, exit_now, fork, has_ended, is_not_open, keep_fds_across_exec, pipe, raw,
    read_file_start, result_file, try_wait_child, wait_child, wait_readable, wait_readable_pair,
};
pub(crate) use self::fault::{
    FaultFlag, WatchedMapping, fault_flag, mapping_faulted, set_watched_len, unwatch_mapping,
    watch_mapping,
};
pub(crate) use self::files::{
    ELOOP, ENOSPC, FileInfo, allocate, effective_uid, entry_identity, file_create, file_info,
    file_open, lock_file, open_directory, open_entry, read_at, set_mode, shm_create, shm_entry,
    shm_open, unlink_entry, unlock_file,
};
pub(crate) use self::futex::{
    Wait, Woken, futex_wait, futex_wait_counted, futex_wait_low_half, futex_wake,
    futex_wake_counted, futex_wake_low_half,
};
pub(crate) use self::memory::{map_shared_fixed, page_size, reserve_address_space, unmap};
#[cfg(feature = "failpoints")]
pub(crate) use self::process::stop_self;
pub(crate) use self::process::{
    Liveness, SIGKILL, SIGTERM, ThreadStamp, boot_id, liveness, pid, process_liveness,
    process_start_time, send_signal, this_process, this_thread, thread_count,
};
