//! The Python baselines (`multiprocessing.Manager().list()`, threads under a lock,
//! `ShareableList`), measured by `bench_baselines.py` and read back as JSON.
//!
//! The script is compiled into the program, so that `memspace bench` runs them wherever it is
//! installed: each run writes it to a private temporary file, runs `python3` on that file,
//! and removes it. The Python package (crates/memspace-py) carries the same text as its
//! module `memspace._baselines`, for `python -m memspace.bench`: the script imports nothing
//! but the standard library.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// The script's text (`crates/memspace-bench/bench_baselines.py`).
const SCRIPT: &str = include_str!("../bench_baselines.py");

/// Whether `python3` is on the PATH and runs.
pub(crate) fn available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the script (with `--quick` if `quick`) and returns what it printed: an object of
/// rates, keyed by scenario.
pub(crate) fn baselines(quick: bool) -> anyhow::Result<serde_json::Value> {
    let script = TempScript::write(SCRIPT)?;
    let mut command = Command::new("python3");
    // Isolated mode: the script's directory (the shared temporary directory) is not put on
    // the module path, so that a `json.py` someone else left there is never imported; nor are
    // PYTHON* variables or the user's site-packages read.
    command.arg("-I").arg(script.path());
    if quick {
        command.arg("--quick");
    }
    let output = command
        .output()
        .context("running python3 on the Python baselines (bench_baselines.py)")?;
    if !output.status.success() {
        bail!(
            "the Python baselines (bench_baselines.py) failed, {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    serde_json::from_slice(&output.stdout)
        .context("the Python baselines (bench_baselines.py) printed something other than JSON")
}

/// A file of the temporary directory that only this user can read, created for this run and
/// removed when dropped (on success, on error, and on a panic that unwinds).
struct TempScript {
    path: PathBuf,
}

impl TempScript {
    /// Creates a new file holding `text`: the name is fresh (process id, time, attempt), and
    /// it is opened with `O_CREAT | O_EXCL` and mode 0600, so that a file or a symbolic link
    /// already at that name is never followed or reused.
    fn write(text: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for attempt in 0..100u32 {
            let path = dir.join(format!(
                "memspace-bench-{}-{nanos:09}-{attempt}.py",
                std::process::id()
            ));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    // From here on, the file is removed whatever happens.
                    let script = TempScript { path };
                    fill(file, text).with_context(|| {
                        format!("writing the Python baselines to {}", script.path.display())
                    })?;
                    return Ok(script);
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!(
                            "creating a temporary file for the Python baselines in {} \
                             (set TMPDIR to a writable directory, or pass --no-python)",
                            dir.display()
                        )
                    });
                }
            }
        }
        bail!(
            "no free name for the Python baselines' temporary file in {} after 100 tries \
             (set TMPDIR to another directory, or pass --no-python)",
            dir.display()
        )
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

fn fill(mut file: File, text: &str) -> io::Result<()> {
    file.write_all(text.as_bytes())
}

impl Drop for TempScript {
    fn drop(&mut self) {
        // Nothing to report if it is already gone.
        let _ = std::fs::remove_file(&self.path);
    }
}
