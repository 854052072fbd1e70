//! The progress line on stderr: a bar redrawn in place on a terminal, one line per step
//! otherwise.

use std::io::Write;

/// How far a run is, out of its known number of steps.
#[derive(Debug)]
pub(crate) struct Progress {
    step: usize,
    steps: usize,
    tty: bool,
}

impl Progress {
    /// A run of `steps` steps; `tty` redraws one line in place instead of printing a line per
    /// step.
    pub(crate) fn new(steps: usize, tty: bool) -> Self {
        Progress {
            step: 0,
            steps,
            tty,
        }
    }

    /// Announces the next step, `what`.
    pub(crate) fn next(&mut self, what: &str) {
        self.step += 1;
        let bar_width = 24;
        // Full, not past it, should a run take more steps than announced.
        let filled = (bar_width * (self.step - 1) / self.steps.max(1)).min(bar_width);
        let line = format!(
            "[{}{}] {}/{} {what}",
            "#".repeat(filled),
            "-".repeat(bar_width - filled),
            self.step,
            self.steps
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        // A terminal that went away only loses the progress line.
        let _ = std::io::stderr().flush();
    }

    /// Clears the line of a terminal, so that the results start on a clean one.
    pub(crate) fn done(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}
