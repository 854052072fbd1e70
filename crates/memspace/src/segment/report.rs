//! [`Report`]: what a check of a segment found, filled in by each kind's verifier and shown
//! by `memspace inspect`.

use serde::Serialize;

/// What a check of a segment found (see [`inspect::verify`](crate::inspect::verify)).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Broken invariants: the segment is damaged.
    pub problems: Vec<String>,
    /// Facts worth knowing that are not damage (a lock left by a dead holder, which the next
    /// locker recovers; a poisoned lock).
    pub notes: Vec<String>,
    /// How many items were read and checked.
    pub items_checked: u64,
}

impl Report {
    /// The checks stop after this many problems.
    pub const MAX_PROBLEMS: usize = 20;

    /// Whether no invariant is broken.
    #[must_use]
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }

    /// Records a problem; past [`Report::MAX_PROBLEMS`], notes once that the rest were left out.
    pub(crate) fn problem(&mut self, what: String) {
        if self.problems.len() < Self::MAX_PROBLEMS {
            self.problems.push(what);
        } else if !self.is_full() {
            self.notes.push(Self::LEFT_OUT.to_owned());
        }
    }

    const LEFT_OUT: &'static str = "more problems were found and left out";

    /// Whether the report stopped recording problems.
    pub(crate) fn is_full(&self) -> bool {
        self.notes.iter().any(|note| note == Self::LEFT_OUT)
    }

    pub(crate) fn note(&mut self, what: String) {
        self.notes.push(what);
    }
}
