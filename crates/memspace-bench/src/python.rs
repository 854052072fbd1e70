//! The Python baselines (`multiprocessing.Manager().list()`, threads under a lock,
//! `ShareableList`), measured by `scripts/bench_baselines.py` and read back as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

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
    let script = locate_script()?;
    let mut command = Command::new("python3");
    command.arg(&script);
    if quick {
        command.arg("--quick");
    }
    let output = command
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// The script, looked for below the working directory, beside the running program's build
/// directory, and in this checkout.
fn locate_script() -> anyhow::Result<PathBuf> {
    let relative = Path::new("scripts/bench_baselines.py");
    let mut candidates = vec![relative.to_path_buf()];
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/memspace -> the checkout
        for ancestor in exe.ancestors().skip(1).take(4) {
            candidates.push(ancestor.join(relative));
        }
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(relative),
    );
    candidates
        .into_iter()
        .find(|p| p.exists())
        .context("scripts/bench_baselines.py not found; run from the memspace checkout")
}
