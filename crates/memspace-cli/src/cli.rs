//! The command line, as clap sees it.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Share memory between processes the way threads do.
#[derive(Debug, Parser)]
#[command(name = "memspace", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Also open segments owned by USER (a user name or uid). By default only your own
    /// segments are opened: whoever owns a segment can change anything in it.
    #[arg(long, global = true, value_name = "USER")]
    pub(crate) trust_owner: Option<String>,
    /// Also open segments whose mode grants up to these permission bits (octal, default 600):
    /// every user a segment's mode lets in can change it.
    #[arg(long, global = true, value_name = "MODE", value_parser = parse_mode)]
    pub(crate) accept_mode: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the threads-versus-processes experiment and show which memory is shared.
    Demo(DemoArgs),
    /// Create, append to and read shared lists.
    #[command(subcommand)]
    List(ListCommand),
    /// Create, change and read shared maps (keys and values as JSON).
    #[command(subcommand)]
    Map(MapCommand),
    /// Create shared queues, put items in and get them out (items as JSON).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Remove segments by name (processes that have them open keep using them), or Redis
    /// objects by URL (`redis://HOST:PORT/NAME`).
    ///
    /// Only memspace segments are removed: a
    /// symbolic link, a directory or a file without a segment's header stays where it is.
    /// Every name is tried; each one that could not be removed is reported, and the exit
    /// status is then 1.
    Rm {
        /// The segments or Redis objects to remove.
        #[arg(required = true)]
        names: Vec<String>,
        /// Ignore names that do not exist, as `rm -f` does (other failures still count).
        #[arg(short, long)]
        force: bool,
    },
    /// List the memspace segments in /dev/shm, or the objects memspace keeps on a Redis
    /// server (`--redis redis://HOST:PORT`).
    ///
    /// Exits 3 if a segment is damaged (a corrupt header,
    /// a file shorter than its committed size), after listing them all.
    Ls {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// List the objects on this Redis server instead of /dev/shm: `redis://HOST[:PORT][/DB]`,
        /// with `USER:PASSWORD@` before the host to log in (or the password in
        /// `MEMSPACE_REDIS_PASSWORD`, which `ps` does not show), `rediss://` for TLS, or
        /// `unix:///PATH[?db=N]`.
        #[arg(long, value_name = "redis://HOST:PORT")]
        redis: Option<String>,
    },
    /// Show a segment's header, lock, users and consistency, and optionally its items; or a
    /// Redis object's kind, keys and state.
    ///
    /// Exits 0 if the segment is healthy, 3 if `verify`
    /// found damage, 1 if it could not be read (waiting at most a second for a held lock).
    Inspect {
        /// The segment (`NAME`, or `file:PATH`) or Redis object (`redis://HOST:PORT/NAME`).
        name: String,
        /// Also print the items, as JSON, one per line.
        #[arg(long)]
        items: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove anonymous segments whose every user is dead, and segments whose creator died
    /// while creating them.
    Gc {
        /// Only consider these segments (all memspace segments in /dev/shm if none are given).
        names: Vec<String>,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON array of what was (or would be) removed.
        #[arg(long)]
        json: bool,
    },
    /// Measure memspace against its baselines (Rust threads, raw fork, Python) on this machine.
    Bench(BenchArgs),
    /// Run a command while holding a named cross-process lock (created if missing), like
    /// flock(1); exits with the command's status.
    Lock {
        /// The lock's name, or `redis://HOST:PORT/NAME` for a lease on a Redis server (renewed
        /// while the command runs).
        name: String,
        /// Give up after this many seconds (exit status 75) instead of waiting forever.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Print the script that completes memspace's subcommands and flags in SHELL.
    ///
    /// bash: `memspace completions bash > ~/.local/share/bash-completion/completions/memspace`;
    /// zsh: `memspace completions zsh > ~/.zfunc/_memspace` (with `~/.zfunc` in `fpath`);
    /// fish: `memspace completions fish > ~/.config/fish/completions/memspace.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Which experiment to run; all three, one after another, if not given.
    #[arg(long, value_enum)]
    pub(crate) mode: Option<DemoMode>,
    /// How many workers, started and joined one after another.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) workers: u32,
    /// How many values each worker appends (0, 1, ... COUNT-1).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub(crate) count: u32,
    /// How worker processes are started.
    #[arg(long = "start", value_enum, default_value_t = Start::Fork)]
    pub(crate) start: Start,
    /// The Redis server of `--mode redis`.
    #[arg(
        long,
        value_name = "redis://HOST:PORT",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub(crate) redis: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DemoMode {
    /// Threads share one plain list.
    Thread,
    /// Processes each get a copy of a plain list.
    Process,
    /// Processes share a `SharedList`.
    Shared,
    /// Processes share a `SharedList` kept on a Redis server (`--redis`); not part of the
    /// default run, since it needs a server.
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Start {
    /// `fork()`: the child is a copy-on-write copy of the parent.
    Fork,
    /// Re-execute this program and send it the arguments.
    Spawn,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ListCommand {
    /// Create an empty list; it persists until `memspace rm NAME`.
    Create {
        /// The list's name (letters, digits, `.`, `_`, `-`), `file:PATH` for a list kept in a
        /// file (it survives a reboot), or `redis://HOST:PORT/NAME` for a list on a Redis
        /// server (`--max-size` and `--mode` do not apply there).
        name: String,
        /// The largest size the list may grow to: bytes, or a number with a unit (`64KiB`,
        /// `512M`, `1.5G`; `--help` says more).
        #[arg(long, value_name = "SIZE", value_parser = parse_size, long_help = MAX_SIZE_HELP)]
        max_size: Option<u64>,
        /// The permission bits, in octal (default 600: this user only).
        #[arg(long, value_parser = parse_mode)]
        mode: Option<u32>,
    },
    /// Append JSON values, all under one lock acquisition.
    ///
    /// With `-`, the values are read from standard input, one JSON document per line (blank
    /// lines are skipped). All are read and checked before any is appended: a line that is
    /// not JSON is an error naming its number, and nothing is appended.
    Push {
        /// The list's name.
        name: String,
        /// The values, each a JSON document (`1`, `-2.5`, `'"text"'`, `'{"a": [1, 2]}'`), or
        /// `-` to read them from standard input.
        #[arg(required = true, allow_negative_numbers = true)]
        values: Vec<String>,
        /// Write even a value that a program using the list's recorded item type (shown by
        /// `memspace inspect`) could not read back.
        #[arg(long)]
        force: bool,
    },
    /// Print the list as a JSON array, or the item at INDEX.
    Get {
        /// The list's name.
        name: String,
        /// The item's position: from 0 at the front, or from -1 (the last item) at the back.
        #[arg(allow_negative_numbers = true)]
        index: Option<i64>,
    },
    /// Print the number of items.
    Len {
        /// The list's name.
        name: String,
    },
    /// Replace the item at INDEX by a JSON value.
    Set {
        /// The list's name.
        name: String,
        /// The item's position: from 0 at the front, or from -1 (the last item) at the back.
        #[arg(allow_negative_numbers = true)]
        index: i64,
        /// The new value, a JSON document.
        #[arg(allow_negative_numbers = true)]
        value: String,
        /// Write even a value that a program using the list's recorded item type (shown by
        /// `memspace inspect`) could not read back.
        #[arg(long)]
        force: bool,
    },
    /// Remove the last item and print it as JSON (an error if the list is empty).
    Pop {
        /// The list's name.
        name: String,
    },
    /// Remove the item at INDEX, moving the items after it one place down, and print it as
    /// JSON.
    Remove {
        /// The list's name.
        name: String,
        /// The item's position: from 0 at the front, or from -1 (the last item) at the back.
        #[arg(allow_negative_numbers = true)]
        index: i64,
    },
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("`{text}` is not an octal mode such as 600 or 640"))
}

/// `--max-size` in `--help`.
const MAX_SIZE_HELP: &str = "The largest size the segment may grow to (64 GiB if not given). \
Bytes (`65536`), or a number with a unit, as in `dd` and `truncate`: K, M, G, T (and KiB, MiB, \
GiB, TiB) are powers of 1024; KB, MB, GB, TB are powers of 1000; `1.5M` and `64 KiB` are \
accepted. At least 12 KiB (a segment's two control pages and one page of data), at most 64 TiB; \
rounded up to whole pages.";

/// The smallest `--max-size`: the library's smallest segment.
pub(crate) const MIN_MAX_SIZE: u64 = memspace::segment::MIN_SIZE;

/// The largest `--max-size`: the address space the library reserves at most for a segment.
pub(crate) const MAX_MAX_SIZE: u64 = 64 << 40;

/// Parses a `--max-size`: bytes, or a number (a decimal fraction allowed) and a unit
/// (`64KiB`, `512M`, `1.5 GB`; see [`MAX_SIZE_HELP`]), from [`MIN_MAX_SIZE`] to [`MAX_MAX_SIZE`].
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let bytes = size_in_bytes(text)?;
    if bytes < MIN_MAX_SIZE {
        return Err(format!(
            "{bytes} bytes is less than the smallest segment, {} KiB ({MIN_MAX_SIZE} bytes)",
            MIN_MAX_SIZE >> 10
        ));
    }
    if bytes > MAX_MAX_SIZE {
        return Err(format!(
            "{bytes} bytes is more than the largest segment, 64 TiB ({MAX_MAX_SIZE} bytes)"
        ));
    }
    Ok(bytes)
}

/// `text` (`4096`, `64KiB`, `1.5M`, `2 GB`) as a whole number of bytes.
fn size_in_bytes(text: &str) -> Result<u64, String> {
    let invalid = |why: &str| {
        format!(
            "`{text}` is not a size: {why}; give bytes (`65536`) or a unit (`64KiB`, `512M`, `1G`)"
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(invalid(
                "the unit is not one of K, M, G, T, KiB ... TiB, KB ... TB",
            ));
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(invalid("it has no number"));
    }
    if fraction.contains('.') {
        return Err(invalid("it has two decimal points"));
    }
    // digits / 10^places, times the unit, computed exactly.
    let digits: String = [whole, fraction].concat();
    let too_large = || invalid("it is too large");
    let digits: u128 = digits.parse().map_err(|_| too_large())?;
    let places = u32::try_from(fraction.len()).map_err(|_| too_large())?;
    let scale = 10u128.checked_pow(places).ok_or_else(too_large)?;
    let scaled = digits
        .checked_mul(u128::from(multiplier))
        .ok_or_else(too_large)?;
    if scaled % scale != 0 {
        return Err(invalid("it is not a whole number of bytes"));
    }
    u64::try_from(scaled / scale).map_err(|_| too_large())
}

#[derive(Debug, Subcommand)]
pub(crate) enum MapCommand {
    /// Create an empty map; it persists until `memspace rm NAME`.
    Create {
        /// The map's name, `file:PATH`, or `redis://HOST:PORT/NAME`.
        name: String,
        /// The largest size the map may grow to: bytes, or a number with a unit (`64KiB`,
        /// `512M`, `1.5G`; `--help` says more).
        #[arg(long, value_name = "SIZE", value_parser = parse_size, long_help = MAX_SIZE_HELP)]
        max_size: Option<u64>,
        /// The permission bits, in octal (default 600: this user only).
        #[arg(long, value_parser = parse_mode)]
        mode: Option<u32>,
    },
    /// Set KEY to VALUE (both JSON).
    Set {
        /// The map's name.
        name: String,
        /// The key, as JSON (`'"ada"'`, `7`, `'[1, 2]'`).
        #[arg(allow_negative_numbers = true)]
        key: String,
        /// The value, as JSON.
        #[arg(allow_negative_numbers = true)]
        value: String,
        /// Write even a value that a program using the map's recorded item type (shown by
        /// `memspace inspect`) could not read back.
        #[arg(long)]
        force: bool,
    },
    /// Print the value of KEY, or every entry as a JSON array of [key, value] pairs.
    ///
    /// Exits 4 if the map has no KEY (1 for other errors).
    Get {
        /// The map's name.
        name: String,
        /// The key, as JSON.
        #[arg(allow_negative_numbers = true)]
        key: Option<String>,
    },
    /// Remove KEY and print its value.
    ///
    /// Exits 4 if the map has no KEY (1 for other errors).
    Remove {
        /// The map's name.
        name: String,
        /// The key, as JSON.
        #[arg(allow_negative_numbers = true)]
        key: String,
    },
    /// Print the number of entries.
    Len {
        /// The map's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// Create an empty queue; it persists until `memspace rm NAME`.
    Create {
        /// The queue's name, `file:PATH`, or `redis://HOST:PORT/NAME`.
        name: String,
        /// Hold at most this many unacknowledged items (unbounded if not given).
        #[arg(long)]
        capacity: Option<u64>,
        /// The largest size the queue may grow to: bytes, or a number with a unit (`64KiB`,
        /// `512M`, `1.5G`; `--help` says more).
        #[arg(long, value_name = "SIZE", value_parser = parse_size, long_help = MAX_SIZE_HELP)]
        max_size: Option<u64>,
        /// The permission bits, in octal (default 600: this user only).
        #[arg(long, value_parser = parse_mode)]
        mode: Option<u32>,
    },
    /// Put JSON values at the back, in order, waiting while a bounded queue is full.
    ///
    /// With `--timeout`, exits 75 when a value found no room in time, after saying how many
    /// values were put before it.
    ///
    /// With `-`, the values are read from standard input, one JSON document per line (blank
    /// lines are skipped), and each is put as soon as it is read. A line that is not JSON is
    /// an error naming its number (exit 1): the values of the lines before it were put, none
    /// after it.
    Put {
        /// The queue's name.
        name: String,
        /// The values, each a JSON document, or `-` to read them from standard input.
        #[arg(required = true, allow_negative_numbers = true)]
        values: Vec<String>,
        /// Write even a value that a program using the queue's recorded item type (shown by
        /// `memspace inspect`) could not read back.
        #[arg(long)]
        force: bool,
        /// Wait at most this many seconds for room for each value in a bounded queue (exit
        /// status 75 if there was none) instead of waiting forever.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
    },
    /// Take the item at the front and print it as JSON, waiting for one if the queue is empty.
    Get {
        /// The queue's name.
        name: String,
        /// Give up after this many seconds (exit status 75) instead of waiting forever.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
    },
    /// Feed items to a command, one at a time: each goes to COMMAND as one line of JSON on its
    /// standard input, and is acknowledged if the command exits 0, else put back in its place
    /// for the next receiver (at least once: an item is gone only once a command succeeded).
    ///
    /// Waits for each item. Runs the command COUNT times (an item put back and received again
    /// counts again), or for ever. The command sees `MEMSPACE_DELIVERIES`: how many times its
    /// item has been handed out, 1 the first time. If this process is killed while the command
    /// runs, the item goes to another receiver.
    ///
    /// Exits with the status of the last command that failed (128 + N for a command killed by
    /// signal N), if one did; else 75 if `--timeout` expired before COUNT items came (with
    /// `--forever`, a timeout is the normal end); else 0. A command that cannot be started is
    /// an error (exit 1), its item put back. A queue closed with `queue close` ends the work
    /// once no item is left (exit status as above, 75 only if COUNT items did not come).
    Work {
        /// The queue's name.
        name: String,
        /// How many items to receive.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// Receive items until killed, or until the queue stayed empty for `--timeout`.
        #[arg(long, conflicts_with = "count")]
        forever: bool,
        /// Stop when no item came within this many seconds.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        /// The command and its arguments, after `--`.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Print the number of items waiting.
    Len {
        /// The queue's name.
        name: String,
    },
    /// Wait until every item put has been acknowledged (by `queue get`, `queue work` or a
    /// program), as Python's `JoinableQueue.join()`.
    ///
    /// Exits 0 at once if nothing is unacknowledged; with `--timeout`, exits 75 if items were
    /// still unacknowledged when it expired, after saying how many.
    Join {
        /// The queue's name.
        name: String,
        /// Give up after this many seconds (exit status 75) instead of waiting forever.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
    },
    /// Close the queue for good, as Python's `Queue.shutdown()`: puts fail from now on, and
    /// receivers (`queue get`, `queue work`, programs) take the items left, then stop.
    Close {
        /// The queue's name.
        name: String,
        /// Also discard the items waiting, and make receivers stop at once
        /// (`shutdown(immediate=True)`).
        #[arg(long)]
        immediate: bool,
    },
}

#[allow(
    clippy::struct_excessive_bools,
    reason = "each is a switch of the command line, independent of the others"
)]
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Smaller runs: done in well under a minute.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Print a JSON array, one object per comparison (with --plot, also one per point of the
    /// scaling curve, with its number of workers).
    #[arg(long)]
    pub(crate) json: bool,
    /// Also measure 1, 2, 4 and 8 workers, timed once all have started, and draw the scaling
    /// curve into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<std::path::PathBuf>,
    /// Skip the Python baselines even if python3 is on the PATH.
    #[arg(long)]
    pub(crate) no_python: bool,
    /// Instead, compare shared memory with the Redis server at this URL (list pushes one at a
    /// time and batched, lock, queue).
    #[arg(long, value_name = "redis://HOST:PORT")]
    pub(crate) redis: Option<String>,
    /// With --redis, also push to 30 objects from 6 threads on the Redis Cluster this node
    /// belongs to, against the same on the --redis server.
    #[arg(long, value_name = "redis://HOST:PORT", requires = "redis")]
    pub(crate) redis_cluster: Option<String>,
    /// Instead, measure insert latencies (p50, p99.9, longest) while two processes grow a map
    /// to 10 M keys and a list to 100 M items (with --quick: 250 000 keys, 1 M items).
    #[arg(long, conflicts_with = "redis")]
    pub(crate) growth: bool,
}

#[cfg(test)]
mod tests {
    use super::{MAX_MAX_SIZE, MIN_MAX_SIZE, parse_size, size_in_bytes};

    #[test]
    fn sizes_with_units() {
        for (text, bytes) in [
            ("4096", 4096),
            ("0", 0),
            ("64KiB", 64 << 10),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("64 KiB", 64 << 10),
            ("512M", 512 << 20),
            ("512MiB", 512 << 20),
            ("1G", 1 << 30),
            ("1gib", 1 << 30),
            ("2T", 2 << 40),
            ("64KB", 64_000),
            ("5MB", 5_000_000),
            ("1GB", 1_000_000_000),
            ("1TB", 1_000_000_000_000),
            ("1.5MiB", 3 << 19),
            ("1.5M", 3 << 19),
            ("0.5K", 512),
            (".5K", 512),
            ("2.K", 2048),
            ("100B", 100),
        ] {
            assert_eq!(size_in_bytes(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn sizes_that_are_not_sizes() {
        for (text, why) in [
            ("", "no number"),
            ("K", "no number"),
            (".", "no number"),
            ("1.2.3K", "two decimal points"),
            ("1.1", "not a whole number of bytes"),
            ("0.0001K", "not a whole number of bytes"),
            ("12X", "the unit is not one of"),
            ("-1K", "the unit is not one of"),
            ("1e3", "the unit is not one of"),
            ("64KiBs", "the unit is not one of"),
            ("99999999999999999999999999999999999999999", "too large"),
            ("20000000T", "too large"),
        ] {
            let err = size_in_bytes(text).expect_err(text);
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.contains(&format!("`{text}`")), "{text}: {err}");
        }
    }

    #[test]
    fn max_size_is_between_the_smallest_and_the_largest_segment() {
        assert_eq!(parse_size("12K"), Ok(MIN_MAX_SIZE));
        assert_eq!(parse_size("64T"), Ok(MAX_MAX_SIZE));
        let err = parse_size("10").expect_err("10 bytes");
        assert!(err.contains("12 KiB (12288 bytes)"), "{err}");
        let err = parse_size("12287").expect_err("12287 bytes");
        assert!(err.contains("less than the smallest"), "{err}");
        let err = parse_size("65T").expect_err("65 TiB");
        assert!(err.contains("more than the largest"), "{err}");
    }
}
