//! What runs in a child process: the fork path, the spawn protocol, and [`init`].
//!
//! # The spawn protocol
//!
//! The parent re-executes `/proc/self/exe` (the very file it runs, even if it was replaced on
//! disk) with its own command-line arguments and `MEMSPACE_SPAWN=R,W` in the environment,
//! where `R` and `W` are two inherited descriptors: `R` a pipe, `W` a pipe for a pool's worker
//! or the result file of a [`Process`](super::Process) (below). Through `R` it sends a
//! [`Task`]: the target and a monomorphised trampoline, as offsets from an anchor function,
//! plus the serialized arguments. The child's `main` calls [`init`], which reads the payload,
//! calls the trampoline, writes an [`Outcome`] to `W` and exits. Function *offsets* survive the
//! re-exec because the child runs the same binary; only the load address differs (ASLR).
//!
//! # The result file
//!
//! A `Process` child, forked or spawned, writes its outcome as one frame (a length, then the
//! bytes) into a new file in memory (a memfd) that its parent made for it alone, and exits;
//! the parent waits for the exit in `waitpid`, reads the file with one `pread` (two for a
//! result larger than 512 bytes), and empties it. A file never blocks its writer, whatever the
//! result's size, so the parent need not read while it waits, and it wakes once, at the exit.
//! A write is only ever cut short at its end (the file then ends early), so a frame that is
//! not whole is seen by its length, never decoded.
//!
//! # Safety
//!
//! Three operations here are `unsafe`:
//!
//! 1. `sys::fork`: the child runs the target and leaves through `sys::exit_now`, never
//!    returning into the caller's stack frames; the single-thread caveat is documented for
//!    users on [`StartMethod::Fork`](super::StartMethod::Fork).
//! 2. Turning an address back into a function pointer: the address is the anchor's address in
//!    this process plus an offset computed by the parent from the same binary (checked by a
//!    fingerprint, the distance between two functions of this crate), and the trampoline casts
//!    it back to the exact type `fn(A) -> R` it was created from.
//! 3. `std::env::remove_var`, which is unsound only if another thread reads the environment at
//!    the same time; `init` is documented to run first in `main`, before any thread exists.

#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{SpawnError, panic_message};
use crate::sys;

/// The environment variable that marks a spawned child.
const ENV: &str = "MEMSPACE_SPAWN";
/// Exit code of a child whose target panicked (as Rust's own).
const PANIC_EXIT: i32 = 101;
/// Exit code of a child that could not run its target at all (`EX_SOFTWARE`).
const PROTOCOL_EXIT: i32 = 70;

/// The command line a spawned child is started with: recorded by `init`, replaced by
/// `set_child_args`.
static ARGS: Mutex<Option<Vec<OsString>>> = Mutex::new(None);

fn child_args() -> Option<Vec<OsString>> {
    ARGS.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// `arg` with the password of every URL in it hidden (`redis://app:***@HOST`): a spawned
/// child's command line, which `ps` shows every user, never repeats one. The child runs its
/// target from [`init`], before reading any argument.
fn hide_passwords(arg: OsString) -> OsString {
    match arg.to_str() {
        Some(text) => match crate::segment::redact_credentials(text) {
            std::borrow::Cow::Borrowed(_) => arg,
            std::borrow::Cow::Owned(hidden) => hidden.into(),
        },
        None => arg,
    }
}

/// Replaces the command line that [`StartMethod::Spawn`](super::StartMethod::Spawn) children
/// are started with (by default the parent's own, recorded by [`init`], with the password of
/// every URL in it shown as `***`); the first item is the
/// program name (`argv[0]`). The program's `main` must still call [`init`] first.
///
/// Test harnesses need this: a test that spawns re-runs its test binary, and should run only
/// itself there (`--exact NAME`), not the whole suite.
///
/// # Examples
///
/// ```no_run
/// memspace::init();
/// memspace::spawn::set_child_args(["my-tests", "--exact", "spawn_test", "--nocapture"]);
/// ```
pub fn set_child_args<I, S>(args: I)
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args = args.into_iter().map(Into::into).collect();
    *ARGS.lock().unwrap_or_else(PoisonError::into_inner) = Some(args);
}

/// Prepares this program for memspace's spawn start method. Call it as the first statement of
/// `main`.
///
/// In a normal run it records the command line, its passwords hidden (the spawn start method
/// re-executes the program with it) and returns at once. In a child started by
/// [`StartMethod::Spawn`](super::StartMethod::Spawn) it runs the requested target with its
/// arguments, reports the result to the parent and exits: it does not return.
///
/// # Examples
///
/// ```no_run
/// memspace::init(); // first in `main`
/// // ... the program, which may start `Process`es with StartMethod::Spawn
/// ```
pub fn init() {
    static RAN: AtomicBool = AtomicBool::new(false);
    if RAN.swap(true, Ordering::AcqRel) {
        return; // only the first call records the command line or runs a spawned target
    }
    {
        let mut args = ARGS.lock().unwrap_or_else(PoisonError::into_inner);
        if args.is_none() {
            *args = Some(std::env::args_os().map(hide_passwords).collect());
        }
    }
    let Some(spec) = std::env::var_os(ENV) else {
        return;
    };
    // SAFETY: `init` runs first in `main`, before the program starts any thread, so nothing
    // reads the environment concurrently (see the module's `# Safety`, point 3). Removing the
    // variable keeps it from leaking into this child's own children.
    unsafe { std::env::remove_var(ENV) };
    let code = match run_spawned(&spec) {
        Ok(code) => code,
        Err(message) => {
            crate::diag::error(format_args!(
                "this process was started as a spawned worker but {message}"
            ));
            PROTOCOL_EXIT
        }
    };
    sys::exit_now(code)
}

/// What the child sends back.
#[derive(Serialize, Deserialize)]
pub(crate) enum Outcome<R> {
    Returned(R),
    Panicked(String),
    Failed(String),
}

/// Encodes what a worker and its parent send each other over their private pipes and files:
/// handles to Redis objects travel with their passwords (and nowhere else: see
/// `to_transport`).
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    crate::segment::encoding_for_own_process(|| rmp_serde::to_vec(value))
}

/// Decodes the first frame of what a child sent back.
pub(crate) fn decode_outcome<R: DeserializeOwned>(bytes: &[u8]) -> Option<Outcome<R>> {
    // In place: the frame is not copied out.
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let frame = rest.get(..u32::from_le_bytes(*len) as usize)?;
    if size_of::<R>() == 0 {
        // A result of no size carries no handle, so it needs none of the trust that decoding
        // grants, and this thread writes no thread-local (after a fork, each page written is
        // faulted in first).
        return rmp_serde::from_slice(frame).ok();
    }
    crate::handle::decoding_from_own_process(|| rmp_serde::from_slice(frame)).ok()
}

/// The length of the first frame of `bytes` with its header, if `bytes` holds all of it.
pub(crate) fn frame_len(bytes: &[u8]) -> Option<usize> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    (rest.len() >= len).then_some(4 + len)
}

/// Sends `payload` as one frame: a little-endian `u32` length, then the payload. Every frame
/// a parent or a child sends goes through here: the length and the payload leave together in
/// one `writev`, so a task or a result costs one system call, and the loop resumes a write a
/// signal cut short (a frame larger than a pipe's buffer may be taken in parts; a file takes a
/// write whole unless it is full).
pub(crate) fn write_frame(out: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a task or result of 4 GiB or more cannot be sent",
        )
    })?;
    let len = len.to_le_bytes();
    let mut parts = [IoSlice::new(&len), IoSlice::new(payload)];
    let mut left = &mut parts[..];
    while !left.is_empty() {
        match out.write_vectored(left) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the reader took no more of the frame",
                ));
            }
            Ok(written) => IoSlice::advance_slices(&mut left, written),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.flush()
}

/// Reads one frame; `None` at a clean end of input (the other side closed its end).
pub(crate) fn read_frame(input: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
    input.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

/// Runs the target, catching a panic; returns the encoded outcome and the exit code a child
/// should end with.
fn run_to_outcome<A, R: Serialize>(target: impl FnOnce(A) -> R, args: A) -> (Vec<u8>, i32) {
    let (outcome, code) = catch_outcome(target, args);
    encode_outcome(&outcome, code)
}

/// Runs the target, catching a panic: what it returned or the panic's message, and the exit
/// code a child should end with.
fn catch_outcome<A, R>(target: impl FnOnce(A) -> R, args: A) -> (Outcome<R>, i32) {
    match catch_unwind(AssertUnwindSafe(|| target(args))) {
        Ok(value) => (Outcome::Returned(value), 0),
        Err(payload) => (Outcome::Panicked(panic_message(&*payload)), PANIC_EXIT),
    }
}

fn encode_outcome<R: Serialize>(outcome: &Outcome<R>, code: i32) -> (Vec<u8>, i32) {
    match encode(outcome) {
        Ok(bytes) => (bytes, code),
        Err(e) => (
            rmp_serde::to_vec(&unencodable::<R>(&e)).unwrap_or_default(),
            PROTOCOL_EXIT,
        ),
    }
}

/// The outcome reported when a result of type `R` could not be encoded.
fn unencodable<R>(error: &rmp_serde::encode::Error) -> Outcome<()> {
    Outcome::Failed(format!(
        "its result of type `{}` could not be serialized: {error}",
        std::any::type_name::<R>()
    ))
}

/// Writes a forked child's outcome into its result file as one frame. When the file cannot
/// take all of it (memory or `RLIMIT_FSIZE` ran out) the child says why on stderr and ends
/// with [`PROTOCOL_EXIT`]; its parent sees a frame cut short.
fn report(bytes: &[u8], results: &OwnedFd, code: i32) -> i32 {
    match write_frame(&mut sys::FdWriter(results.as_fd()), bytes) {
        Ok(()) => code,
        Err(e) => {
            crate::diag::error_in_forked_child(format_args!(
                "process {} could not write its result of {} bytes for its parent: {e}",
                sys::pid(),
                bytes.len()
            ));
            PROTOCOL_EXIT
        }
    }
}

/// Why the bytes read from a result file are not a whole frame, if they are not: the child
/// ended while writing its result (or could not write all of it).
pub(crate) fn cut_short(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() || frame_len(bytes).is_some() {
        return None;
    }
    let written = match bytes.split_first_chunk::<4>() {
        Some((len, rest)) => format!(
            "{} of its {} bytes were written",
            rest.len(),
            u32::from_le_bytes(*len)
        ),
        None => "its length was not written whole".to_owned(),
    };
    Some(format!(
        "its result was cut short: {written}; it ran out of memory or of the file size its \
         RLIMIT_FSIZE allows (its standard error says which)"
    ))
}

/// The most bytes of an outcome a forked child encodes on its stack.
const STACK_OUTCOME: usize = 512;

/// An encoding buffer on the stack while its bytes fit and moved to the heap when they outgrow
/// it, so that a payload is encoded once (and sent with [`write_frame`]).
struct StackFirst {
    stack: [u8; STACK_OUTCOME],
    /// Bytes used of `stack`.
    used: usize,
    /// All the bytes once they outgrew the stack (then `stack` is unused).
    heap: Vec<u8>,
}

impl StackFirst {
    fn new() -> Self {
        StackFirst {
            stack: [0; STACK_OUTCOME],
            used: 0,
            heap: Vec::new(),
        }
    }

    /// The bytes written so far.
    fn bytes(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.stack[..self.used]
        } else {
            &self.heap
        }
    }
}

impl Write for StackFirst {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.heap.is_empty() && self.used + bytes.len() <= STACK_OUTCOME {
            self.stack[self.used..self.used + bytes.len()].copy_from_slice(bytes);
            self.used += bytes.len();
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.stack[..self.used]);
            }
            self.heap.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `target` in a forked child, writes its outcome into the result file and returns the
/// exit code. A small outcome is encoded on the stack: every page a forked child writes is
/// copied for it first, and the heap's pages (the allocator's state, a buffer) would be copied
/// for nothing but this frame.
fn run_and_report<A, R: Serialize>(target: fn(A) -> R, args: A, results: &OwnedFd) -> i32 {
    let (outcome, mut code) = catch_outcome(target, args);
    let mut encoded = StackFirst::new();
    let written = crate::segment::encoding_for_own_process(|| {
        rmp_serde::encode::write(&mut encoded, &outcome)
    });
    if let Err(e) = written {
        encoded = StackFirst::new();
        let _ = rmp_serde::encode::write(&mut encoded, &unencodable::<R>(&e));
        code = PROTOCOL_EXIT;
    }
    if u32::try_from(encoded.bytes().len()).is_ok() {
        return report(encoded.bytes(), results, code);
    }
    report(&too_large(), results, PROTOCOL_EXIT)
}

/// The outcome sent instead of a result too large for a frame (4 GiB or more).
fn too_large() -> Vec<u8> {
    let failed =
        Outcome::<()>::Failed("its result is 4 GiB or more, which cannot be sent".to_owned());
    rmp_serde::to_vec(&failed).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// fork

/// Warns once per process that forking a process with other threads is risky (through `log`,
/// or on stderr without a logger; `MEMSPACE_FORK_WARNING=0` silences it).
///
/// Called by the parent just after the fork (the fork leaves its threads as they were): the
/// count's system call then runs while the child starts, and the warning is written by the
/// parent alone.
fn warn_if_threaded() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if WARNED.load(Ordering::Relaxed) {
        return; // said once; counting threads costs a system call per fork
    }
    let threads = sys::thread_count();
    if threads > 1
        && std::env::var_os("MEMSPACE_FORK_WARNING").is_none_or(|v| v != "0")
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        crate::diag::warn(format_args!(
            "process {} forks while it runs {threads} threads; only the forking thread exists \
             in the child, and a lock another thread holds stays locked there forever. Start \
             workers before other threads, or use StartMethod::Spawn (MEMSPACE_FORK_WARNING=0 \
             silences this)",
            sys::pid()
        ));
    }
}

/// Forks; the child runs `target(args)`, writes its outcome into the result file (module
/// docs) and exits; the parent gets the child's pid and the file.
pub(crate) fn fork_and_run<A, R: Serialize>(
    target: fn(A) -> R,
    args: A,
) -> Result<(u32, OwnedFd), SpawnError> {
    let os = |op| move |source| SpawnError::Os { op, source };
    let results = sys::result_file().map_err(os("memfd_create"))?;
    // SAFETY: the child branch below only runs the target and leaves with `exit_now`; it never
    // returns into our callers' frames (module `# Safety`, point 1).
    match unsafe { sys::fork() }.map_err(os("fork"))? {
        sys::Forked::Child => run_forked(target, args, &results),
        sys::Forked::Parent(pid) => {
            // The child owns its copy of `args`; ours is dropped here, as a moved value would be.
            drop(args);
            warn_if_threaded();
            Ok((pid, results))
        }
    }
}

/// The child's side of [`fork_and_run`]. Not inlined there: its frame (the outcome's buffer)
/// would make the parent's deeper too, and the parent writes a page of stack more after each
/// fork.
#[inline(never)]
fn run_forked<A, R: Serialize>(target: fn(A) -> R, args: A, results: &OwnedFd) -> ! {
    exit_without_unwinding(|| run_and_report(target, args, results))
}

/// Runs `work` in a forked child and ends the child with the exit code it returns. A panic
/// that escapes `work` (a result's `Serialize`, which runs after the target's own catch) ends
/// it with [`PROTOCOL_EXIT`]: nothing may unwind into the frames the child copied from its
/// parent (module `# Safety`, point 1).
fn exit_without_unwinding(work: impl FnOnce() -> i32) -> ! {
    sys::exit_now(catch_unwind(AssertUnwindSafe(work)).unwrap_or(PROTOCOL_EXIT))
}

/// Forks a worker that serves the tasks framed on its input until the input closes (see
/// [`serve`]). `inherited` are descriptors of other workers that the child must close, so that
/// each pipe has exactly one writer and one reader and a worker's death is seen as end of input.
pub(crate) fn fork_worker(
    inherited: &[std::os::fd::RawFd],
) -> Result<((u32, std::fs::File), OwnedFd), SpawnError> {
    let os = |op| move |source| SpawnError::Os { op, source };
    let (tasks_read, tasks_write) = sys::pipe().map_err(os("pipe"))?;
    let (results_read, results_write) = sys::pipe().map_err(os("pipe"))?;
    // SAFETY: the child branch only serves tasks and leaves with `exit_now`; it never returns
    // into our callers' frames (module `# Safety`, point 1).
    match unsafe { sys::fork() }.map_err(os("fork"))? {
        sys::Forked::Child => {
            drop(tasks_write);
            drop(results_read);
            for &fd in inherited {
                // SAFETY: these belong to the parent's other workers, whose owners (in this
                // child's copy of the parent's memory) never run again: we `exit_now` below.
                unsafe { sys::close_inherited(fd) };
            }
            exit_without_unwinding(|| match serve(tasks_read, results_write) {
                Ok(code) => code,
                Err(message) => {
                    crate::diag::error_in_forked_child(format_args!(
                        "a pool worker stopped: {message}"
                    ));
                    PROTOCOL_EXIT
                }
            })
        }
        sys::Forked::Parent(pid) => {
            drop(tasks_read);
            drop(results_write);
            warn_if_threaded();
            Ok(((pid, std::fs::File::from(tasks_write)), results_read))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// spawn

/// A function and its serialized arguments, runnable in any process that runs this same
/// binary: the function travels as offsets from an anchor function (see the module docs).
///
/// Tasks are only ever read from pipes that the parent created for this child alone; a task is
/// as trusted as the parent that wrote it, which is also why `run` may call through it.
#[derive(Serialize, Deserialize)]
#[allow(
    clippy::unsafe_derive_deserialize,
    reason = "tasks come from this program's own parent over a private pipe"
)]
pub(crate) struct Task {
    fingerprint: u64,
    trampoline: u64,
    target: u64,
    args: Vec<u8>,
}

type Trampoline = fn(usize, &[u8]) -> (Vec<u8>, i32);

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("args", &format_args!("{} bytes", self.args.len()))
            .finish_non_exhaustive()
    }
}

#[inline(never)]
fn anchor() -> u32 {
    0x6d65_6d73
}

#[inline(never)]
fn fingerprint_mark() -> u32 {
    0x7370_6163
}

fn anchor_address() -> usize {
    let anchor: fn() -> u32 = anchor;
    anchor as usize
}

/// The distance from the anchor to `address`, modulo 2^64 (either may come first).
fn offset_of(address: usize) -> u64 {
    address.wrapping_sub(anchor_address()) as u64
}

fn address_of(offset: u64) -> usize {
    anchor_address().wrapping_add(offset as usize)
}

fn fingerprint() -> u64 {
    let mark: fn() -> u32 = fingerprint_mark;
    offset_of(mark as usize)
}

/// Runs in the worker: decodes the arguments as `A`, runs `target`, encodes the outcome.
fn trampoline<A: DeserializeOwned, R: Serialize>(target: usize, args: &[u8]) -> (Vec<u8>, i32) {
    // SAFETY: `target` is the address of a `fn(A) -> R` in this binary: `Task::new` computed
    // its offset from exactly this instantiation's `fn(A) -> R`, and `Task::run` checked the
    // fingerprint, so the binary is the same (module `# Safety`, point 2).
    let target = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    match crate::handle::decoding_from_own_process(|| rmp_serde::from_slice::<A>(args)) {
        Ok(args) => run_to_outcome(target, args),
        Err(e) => encode_outcome(
            &Outcome::<()>::Failed(format!(
                "its arguments could not be decoded as `{}`: {e}",
                std::any::type_name::<A>()
            )),
            PROTOCOL_EXIT,
        ),
    }
}

impl Task {
    /// Packs `target(args)` for another process.
    pub(crate) fn new<A: Serialize + DeserializeOwned, R: Serialize>(
        target: fn(A) -> R,
        args: &A,
    ) -> Result<Self, SpawnError> {
        let trampoline: Trampoline = trampoline::<A, R>;
        Ok(Task {
            fingerprint: fingerprint(),
            trampoline: offset_of(trampoline as usize),
            target: offset_of(target as usize),
            args: encode(args).map_err(|source| SpawnError::Encode {
                type_name: std::any::type_name::<A>(),
                source,
            })?,
        })
    }

    /// Packs `target(args...)`, the items of the tuple `args` as its arguments.
    pub(crate) fn starred<F: StarTarget<T>, T: Serialize>(
        target: F,
        args: &T,
    ) -> Result<Self, SpawnError> {
        let (target, trampoline) = target.addresses();
        Ok(Task {
            fingerprint: fingerprint(),
            trampoline: offset_of(trampoline),
            target: offset_of(target),
            args: encode(args).map_err(|source| SpawnError::Encode {
                type_name: std::any::type_name::<T>(),
                source,
            })?,
        })
    }

    /// Runs the task here; returns the encoded outcome and the exit code a child would end
    /// with, or why it cannot run.
    pub(crate) fn run(&self) -> Result<(Vec<u8>, i32), String> {
        if self.fingerprint != fingerprint() {
            return Err("the parent runs a different build of this program".to_owned());
        }
        // SAFETY: the offset was computed by `Task::new` in a process running this same binary
        // (fingerprint checked above), from a `Trampoline` (module `# Safety`, point 2).
        let trampoline =
            unsafe { std::mem::transmute::<usize, Trampoline>(address_of(self.trampoline)) };
        Ok(trampoline(address_of(self.target), &self.args))
    }
}

mod sealed {
    /// Implemented only by this module's function-pointer types.
    pub trait Sealed<Args> {
        /// The function's address and that of the trampoline that calls it with `Args`.
        fn addresses(self) -> (usize, usize);
    }
}

/// A function of several arguments that [`Pool::starmap`](super::Pool::starmap) calls with the
/// items of a tuple: `fn(A, B) -> R` with `(A, B)` inputs, up to six arguments.
///
/// Implemented for function pointers: name a function as one with its types
/// (`add as fn(u64, u64) -> u64`), as Rust only turns a function into a pointer where the
/// pointer type is known.
pub trait StarTarget<Args>: sealed::Sealed<Args> + Copy {
    /// What the function returns.
    type Output: Serialize + DeserializeOwned;
}

macro_rules! star_targets {
    ($($trampoline:ident: $($arg:ident),+;)+) => {$(
        /// Runs in the worker: decodes the arguments as a tuple, calls `target` with its items.
        fn $trampoline<$($arg: DeserializeOwned,)+ R: Serialize>(
            target: usize,
            args: &[u8],
        ) -> (Vec<u8>, i32) {
            // SAFETY: `target` is the address of a `fn($($arg),+) -> R` in this binary:
            // `Task::starred` computed its offset from exactly this instantiation's function
            // type (see `Sealed::addresses` below), and `Task::run` checked the fingerprint,
            // so the binary is the same (module `# Safety`, point 2).
            let target = unsafe { std::mem::transmute::<usize, fn($($arg),+) -> R>(target) };
            match crate::handle::decoding_from_own_process(|| {
                rmp_serde::from_slice::<($($arg,)+)>(args)
            }) {
                #[allow(non_snake_case, reason = "the items are named after their types")]
                Ok(($($arg,)+)) => run_to_outcome(|()| target($($arg),+), ()),
                Err(e) => encode_outcome(
                    &Outcome::<()>::Failed(format!(
                        "its arguments could not be decoded as `{}`: {e}",
                        std::any::type_name::<($($arg,)+)>()
                    )),
                    PROTOCOL_EXIT,
                ),
            }
        }

        impl<$($arg,)+ R> sealed::Sealed<($($arg,)+)> for fn($($arg),+) -> R
        where
            $($arg: Serialize + DeserializeOwned,)+
            R: Serialize + DeserializeOwned,
        {
            fn addresses(self) -> (usize, usize) {
                let trampoline: Trampoline = $trampoline::<$($arg,)+ R>;
                (self as usize, trampoline as usize)
            }
        }

        impl<$($arg,)+ R> StarTarget<($($arg,)+)> for fn($($arg),+) -> R
        where
            $($arg: Serialize + DeserializeOwned,)+
            R: Serialize + DeserializeOwned,
        {
            type Output = R;
        }
    )+};
}

star_targets! {
    trampoline2: A, B;
    trampoline3: A, B, C;
    trampoline4: A, B, C, D;
    trampoline5: A, B, C, D, E;
    trampoline6: A, B, C, D, E, G;
}

/// Re-executes this program as a child that runs `target(args)` and writes its outcome into
/// the result file (module docs); returns the child's pid and the file.
pub(crate) fn spawn_and_run<A: Serialize + DeserializeOwned, R: Serialize>(
    target: fn(A) -> R,
    args: &A,
) -> Result<(u32, OwnedFd), SpawnError> {
    let task = Task::new(target, args)?;
    let task = encode_order(&Order::Run(vec![&task]))?;
    let results = sys::result_file().map_err(|source| SpawnError::Os {
        op: "memfd_create",
        source,
    })?;
    let (pid, mut tasks) = exec_worker(&results)?;
    // A child that dies before reading makes this write fail (EPIPE; Rust ignores SIGPIPE);
    // `join` then reports how it ended. Closing our end tells the child it has one task only.
    let _ = write_frame(&mut tasks, &task);
    drop(tasks);
    Ok((pid, results))
}

/// Re-executes this program as a worker that runs the tasks framed on its input until the
/// input closes. Returns the worker's pid with the task writer, and the results reader.
pub(crate) fn spawn_worker() -> Result<((u32, std::fs::File), OwnedFd), SpawnError> {
    let (results_read, results_write) =
        sys::pipe().map_err(|source| SpawnError::Os { op: "pipe", source })?;
    let worker = exec_worker(&results_write)?;
    drop(results_write);
    Ok((worker, results_read))
}

/// Re-executes this program as a worker that reads its tasks from a new pipe and writes its
/// outcomes to `results`; returns its pid and the task writer.
fn exec_worker(results: &OwnedFd) -> Result<(u32, std::fs::File), SpawnError> {
    let command_line = child_args().ok_or(SpawnError::NotInitialized)?;
    let os = |op| move |source| SpawnError::Os { op, source };
    let (args_read, args_write) = sys::pipe().map_err(os("pipe"))?;
    // `/proc/self/exe` names this program in the child that executes it. Whether `/proc` is
    // there is asked of this thread's own entry: the process's `exe` is gone once its main
    // thread has ended while other threads run on, this thread's is not.
    let own_exe = format!("/proc/self/task/{}/exe", sys::this_thread().tid);
    let exe = if std::path::Path::new(&own_exe).exists() {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().map_err(os("current_exe"))?
    };
    let mut command = Command::new(exe);
    if let Some((program, rest)) = command_line.split_first() {
        command.arg0(program).args(rest);
    }
    let fds = [sys::raw(&args_read), sys::raw(results)];
    command.env(ENV, format!("{},{}", fds[0], fds[1]));
    sys::keep_fds_across_exec(&mut command, fds);
    let child = command.spawn().map_err(os("exec"))?;
    drop(args_read);
    Ok((child.id(), std::fs::File::from(args_write)))
}

/// In a spawned child: reads the payload and runs it. An error is its caller's to report.
fn run_spawned(spec: &std::ffi::OsStr) -> Result<i32, String> {
    let spec = spec
        .to_str()
        .ok_or("its MEMSPACE_SPAWN value is not text")?;
    let (read, write) = spec
        .split_once(',')
        .and_then(|(r, w)| Some((r.parse().ok()?, w.parse().ok()?)))
        .ok_or_else(|| format!("MEMSPACE_SPAWN={spec} is not two descriptor numbers"))?;
    let read = sys::adopt_inherited_fd(read).map_err(|e| e.to_string())?;
    let write = sys::adopt_inherited_fd(write).map_err(|e| e.to_string())?;
    serve(read, write)
}

/// What a worker is told in one frame (an empty frame asks it to stop).
#[derive(Serialize, Deserialize)]
pub(crate) enum Order<T> {
    /// Run this once, before any task: the pool's initializer.
    Init(T),
    /// Run these tasks in order, answering each with a frame as soon as it is done.
    Run(Vec<T>),
}

/// Encodes an order for a worker.
pub(crate) fn encode_order(order: &Order<&Task>) -> Result<Vec<u8>, SpawnError> {
    encode(order).map_err(|source| SpawnError::Encode {
        type_name: "task",
        source,
    })
}

/// Why an encoded outcome is not a returned value, if it is not.
fn failure_of(outcome: &[u8]) -> Option<String> {
    match rmp_serde::from_slice::<Outcome<serde::de::IgnoredAny>>(outcome) {
        Ok(Outcome::Returned(_)) => None,
        Ok(Outcome::Panicked(message)) => Some(format!("it panicked: {message}")),
        Ok(Outcome::Failed(message)) => Some(message),
        Err(e) => Some(format!("its outcome could not be decoded: {e}")),
    }
}

/// A worker's loop: runs every task framed on `tasks` and answers each with a framed outcome
/// on `results` (a pipe, or a `Process`'s result file), until `tasks` closes or an empty frame
/// asks it to stop. Returns the exit code of the last task (0 if there was none).
///
/// If the initializer fails, the worker stays and answers every task with that failure: a pool
/// whose workers died of it would start new ones forever.
pub(crate) fn serve(tasks: OwnedFd, results: OwnedFd) -> Result<i32, String> {
    let mut tasks = std::io::BufReader::new(std::fs::File::from(tasks));
    let mut results = std::fs::File::from(results);
    let mut code = 0;
    let mut initializer_failed = None;
    while let Some(frame) =
        read_frame(&mut tasks).map_err(|e| format!("reading its task failed: {e}"))?
    {
        if frame.is_empty() {
            break; // the pool's request to stop (an order is never empty)
        }
        let order: Order<Task> = rmp_serde::from_slice(&frame)
            .map_err(|e| format!("its task could not be decoded: {e}"))?;
        match order {
            Order::Init(initializer) => {
                let (outcome, _) = initializer.run()?;
                initializer_failed = failure_of(&outcome).map(|why| {
                    rmp_serde::to_vec(&Outcome::<()>::Failed(format!(
                        "the pool's initializer failed in this worker, which runs no task: {why}"
                    )))
                    .unwrap_or_default()
                });
            }
            Order::Run(batch) => {
                for task in batch {
                    let outcome = if let Some(failed) = &initializer_failed {
                        failed.clone()
                    } else {
                        let (outcome, exit) = task.run()?;
                        code = exit;
                        if u32::try_from(outcome.len()).is_ok() {
                            outcome
                        } else {
                            code = PROTOCOL_EXIT;
                            too_large()
                        }
                    };
                    match write_frame(&mut results, &outcome) {
                        Ok(()) => {}
                        // The parent is gone: nobody to work for.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(code),
                        Err(e) => {
                            return Err(format!(
                                "could not write its result of {} bytes: {e}",
                                outcome.len()
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use std::io::{IoSlice, Write};

    use super::{read_frame, write_frame};
    use crate::sys;

    /// A writer that records each call, taking at most `limit` bytes of it (a pipe whose
    /// reader is slow, or a write cut short by a signal), and refusing the first call with
    /// `EINTR` when `interrupt` is set.
    struct Recorder {
        limit: usize,
        interrupt: bool,
        calls: usize,
        bytes: Vec<u8>,
    }

    impl Recorder {
        fn new(limit: usize) -> Self {
            Recorder {
                limit,
                interrupt: false,
                calls: 0,
                bytes: Vec::new(),
            }
        }
    }

    impl Write for Recorder {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.write_vectored(&[IoSlice::new(bytes)])
        }

        fn write_vectored(&mut self, parts: &[IoSlice<'_>]) -> std::io::Result<usize> {
            self.calls += 1;
            if std::mem::take(&mut self.interrupt) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let mut room = self.limit;
            for part in parts {
                let taken = part.len().min(room);
                self.bytes.extend_from_slice(&part[..taken]);
                room -= taken;
            }
            Ok(self.limit - room)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut frame = u32::try_from(payload.len()).unwrap().to_le_bytes().to_vec();
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn a_frame_is_sent_with_one_write() {
        for payload in [&b""[..], b"x", &[7; 3000]] {
            let mut out = Recorder::new(usize::MAX);
            write_frame(&mut out, payload).unwrap();
            assert_eq!(out.calls, 1, "a {}-byte frame", payload.len());
            assert_eq!(out.bytes, framed(payload));
        }
    }

    #[test]
    fn a_frame_cut_short_is_resumed_where_it_stopped() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i.to_le_bytes()[0]).collect();
        for limit in [1, 3, 4, 5, 999] {
            let mut out = Recorder::new(limit);
            out.interrupt = true;
            write_frame(&mut out, &payload).unwrap();
            assert_eq!(out.bytes, framed(&payload), "at most {limit} bytes a write");
        }
    }

    #[test]
    fn a_frame_larger_than_a_pipe_crosses_it_whole() {
        let (read, write) = sys::pipe().unwrap();
        // Larger than a pipe's 64 KiB buffer: the reader must drain it while it is written.
        let big: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        let reader = std::thread::spawn(move || {
            let mut input = std::fs::File::from(read);
            let mut frames = Vec::new();
            while let Some(frame) = read_frame(&mut input).unwrap() {
                frames.push(frame);
            }
            frames
        });
        // As a forked child sends its outcome.
        let mut out = sys::FdWriter(std::os::fd::AsFd::as_fd(&write));
        write_frame(&mut out, &big).unwrap();
        write_frame(&mut out, b"after").unwrap();
        write_frame(&mut out, b"").unwrap();
        drop(write);
        let frames = reader.join().unwrap();
        assert_eq!(frames.len(), 3);
        assert!(frames[0] == big, "the large frame arrived changed");
        assert_eq!(frames[1], b"after");
        assert!(frames[2].is_empty());
    }
}
