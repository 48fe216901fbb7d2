//! The semantic injection classifier in the output stage (`[content.classifier]`, crate
//! `warden-classifier`): loaded once per configuration, shared by every answer, bounded per
//! answer in bytes and time and in how many answers run it at once.
//!
//! Defends against what the classifier defends against (its crate docs), on tool results,
//! resource contents and prompt messages.
//! Does not defend against: text past the byte or time budget (one budget per answer, spent in
//! the order the answer's strings come: filler first leaves a later injection unread), answers
//! arriving while `max_concurrent` others are being classified, or a classifier error: those are
//! left to the patterns (fail open, to the patterns' verdict), and the audit record's finding
//! `classifier.limit:bytes|time|busy|error` and `warden_guard_findings_total{guard="classifier.limit"}`
//! say so. Upstream errors, notifications, sampling requests, instructions and task status
//! messages are checked by the patterns only. Scores under the operating point (0.5) count for
//! nothing, neither towards the injection threshold nor towards taint.

use crate::config::ClassifierConfig;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_classifier::{Classifier, Cut, Limits};
use warden_policy::inject::{Category, Finding};

/// Scores under this are no finding: the head is calibrated at its operating point (0.5) only,
/// so lower scores neither add to the patterns' nor taint a session.
const FLOOR: f32 = warden_classifier::OPERATING_POINT;
/// Bounds on the settings (a larger byte budget only holds a blocking thread longer).
const MAX_BYTES: usize = 256 << 10;
const MAX_BUDGET_MS: u64 = 10_000;

/// The largest head file read.
const MAX_HEAD: u64 = 16 << 20;

fn read_head(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_HEAD + 1).read_to_string(&mut s))
        .map_err(|e| format!("content.classifier.head: {}: {e}", path.display()))?;
    if s.len() as u64 > MAX_HEAD {
        return Err(format!("content.classifier.head: {} is over {MAX_HEAD} bytes", path.display()));
    }
    Ok(s)
}

/// A classifier loaded from a model directory with a head (`None`: the bundled one).
struct Loaded {
    model: PathBuf,
    head: Option<String>,
    classifier: Arc<Classifier>,
}

/// The last classifier loaded: validating a config and then building it, or reloading one whose
/// classifier did not change, loads the model once.
static LAST: Mutex<Option<Loaded>> = Mutex::new(None);

fn loaded(model: &Path, head: Option<String>) -> Result<Arc<Classifier>, String> {
    let mut last = LAST.lock();
    if let Some(l) = last.as_ref().filter(|l| l.model == model && l.head == head) {
        return Ok(l.classifier.clone());
    }
    let classifier =
        Arc::new(Classifier::load(model, head.as_deref()).map_err(|e| format!("content.classifier: {e}"))?);
    *last = Some(Loaded { model: model.to_path_buf(), head, classifier: classifier.clone() });
    Ok(classifier)
}

pub struct Semantic {
    classifier: Arc<Classifier>,
    max_bytes: usize,
    budget: Duration,
    max_concurrent: usize,
    running: AtomicUsize,
}

impl Semantic {
    pub fn load(c: &ClassifierConfig, base: &Path) -> Result<Semantic, String> {
        if !(1..=MAX_BYTES).contains(&c.max_classify_bytes)
            || !(1..=MAX_BUDGET_MS).contains(&c.budget_ms)
            || !(1..=64).contains(&c.max_concurrent)
        {
            return Err(format!(
                "content.classifier: max_classify_bytes 1 to {MAX_BYTES}, budget_ms 1 to {MAX_BUDGET_MS}, max_concurrent 1 to 64"
            ));
        }
        let head = c.head.as_ref().map(|h| read_head(&base.join(h))).transpose()?;
        let classifier = loaded(&base.join(&c.model), head)?;
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
