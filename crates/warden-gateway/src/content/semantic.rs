//! The semantic injection classifier in the output stage (`[content.classifier]`, crate
//! `warden-classifier`): loaded once per configuration, shared by every answer, bounded per
//! answer in bytes and time and in how many answers run it at once.
//!
//! Defends against what the classifier defends against (its crate docs), on tool results,
//! resource contents and prompt messages.
//! Does not defend against: text past the byte or time budget, or answers arriving while
//! `max_concurrent` others are being classified: those are left to the patterns, and the
//! audit record and `warden_findings_total{guard="classifier.limit"}` say so. Notifications,
//! sampling requests, instructions and task status messages are checked by the patterns only.

use crate::config::ClassifierConfig;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use warden_classifier::{Classifier, Cut, Limits};
use warden_policy::inject::{Category, Finding};

/// Scores under this are no finding (the classifier's 0.5 is its operating point).
const FLOOR: f32 = 0.2;

pub struct Semantic {
    classifier: Classifier,
    max_bytes: usize,
    budget: Duration,
    max_concurrent: usize,
    running: AtomicUsize,
}

impl Semantic {
    pub fn load(c: &ClassifierConfig, base: &Path) -> Result<Semantic, String> {
        if c.max_classify_bytes == 0 || c.budget_ms == 0 || !(1..=64).contains(&c.max_concurrent) {
            return Err("content.classifier: max_classify_bytes and budget_ms > 0, max_concurrent 1 to 64".into());
        }
        let head = c
            .head
            .as_ref()
            .map(|h| std::fs::read_to_string(base.join(h)).map_err(|e| format!("content.classifier.head: {e}")))
            .transpose()?;
        let classifier =
            Classifier::load(&base.join(&c.model), head.as_deref()).map_err(|e| format!("content.classifier: {e}"))?;
        Ok(Semantic {
            classifier,
            max_bytes: c.max_classify_bytes,
            budget: Duration::from_millis(c.budget_ms),
            max_concurrent: c.max_concurrent,
            running: AtomicUsize::new(0),
        })
    }

    /// A judge for one answer, or `Err("busy")` when `max_concurrent` answers are being judged.
    pub fn begin(&self) -> Result<Option<Judge<'_>>, &'static str> {
        let before = self.running.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_concurrent {
            self.running.fetch_sub(1, Ordering::AcqRel);
            return Err("busy");
        }
        let deadline = Instant::now() + self.budget;
        Ok(Some(Judge { s: self, bytes_left: self.max_bytes, deadline, cut: None }))
    }
}

/// The classifier's share of one answer: what is left of its byte and time budget.
pub struct Judge<'a> {
    s: &'a Semantic,
    bytes_left: usize,
    deadline: Instant,
    /// Why some text was left to the patterns.
    pub cut: Option<&'static str>,
}

impl Drop for Judge<'_> {
    fn drop(&mut self) {
        self.s.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Judge<'_> {
    /// The classifier's finding on one text, if it scores at least [`FLOOR`].
    pub fn judge(&mut self, text: &str) -> Option<Finding> {
        let now = Instant::now();
        if self.bytes_left == 0 || now >= self.deadline {
            self.cut = Some(if self.bytes_left == 0 { "bytes" } else { "time" });
            return None;
        }
        let limits = Limits { max_bytes: self.bytes_left, budget: self.deadline - now };
        match self.s.classifier.score(text, limits) {
            Ok(o) => {
                self.bytes_left -= text.len().min(self.bytes_left);
                if let Some(c) = o.cut {
                    self.cut = Some(if c == Cut::Bytes { "bytes" } else { "time" });
                }
                (o.score >= FLOOR).then(|| Finding {
                    rule: "classifier.semantic",
                    category: Category::Semantic,
                    weight: o.score,
                    at: o.worst.map_or(0, |r| r.start),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "the injection classifier failed; the patterns' verdict stands alone");
                self.cut = Some("error");
                None
            }
        }
    }
}
