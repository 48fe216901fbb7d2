//! Warden's semantic prompt-injection classifier: a small sentence encoder (all-MiniLM-L6-v2,
//! 6 layers, 384 dimensions) run in process on the CPU with `candle`, no network and no native
//! runtime, and a head (a small MLP, with a logistic gate in front) trained by
//! `scripts/classifier/train.sh` on BIPIA's train split, the project's own cases and public
//! injection and documentation texts (`head.json` records the data, seed and metrics).
//!
//! A text is tokenized once and cut into sentence windows (`segment`); the gate scores every
//! window on cheap static embeddings, the windows it passes are embedded by the encoder and
//! scored; the text's score is its worst window's. Only the first `max_bytes` of a text are
//! classified, and windows stop being scored when the time budget is spent: the outcome says
//! which limit cut it short, so the caller can let the pattern result stand alone and count it.
//!
//! Defends against: injections that read as instructions or requests addressed to whoever
//! reads the text (a task slipped into an email: "Write a poem about the sea", "Explain the
//! theory of relativity"), paraphrased overrides no phrase list names, and exfiltration or
//! tool-use requests in plain words.
//! Does not defend against: text past `max_bytes` or past the time budget; languages the
//! encoder barely knows (it was trained on English); encodings and ciphers it cannot read
//! (base64, heavy leetspeak); instructions spread thinly across many sentences; an attacker who
//! tunes text against this exact model (it is public). Its errors are statistical: BENCHMARKS.md
//! gives recall and false positives measured on data it was not trained on.
//!
//! Model files are read whole and checked against pinned digests (`files`); the head must name
//! the encoder it was trained on. One `Classifier` is shared by all threads (`&self` only).

pub mod adapters;
pub mod bert;
pub mod cli;
pub mod encoder;
pub mod files;
pub mod head;
pub mod mlp;
pub mod segment;
pub mod train;
pub mod tune;

use encoder::Encoder;
use head::Head;
use std::path::Path;
use std::time::{Duration, Instant};

/// The head trained by `scripts/classifier/train.sh`, shipped with Warden.
pub const BUNDLED_HEAD: &str = include_str!("../head.json");

/// The score the head is calibrated at (training shifts its bias so that 1 in 200 benign
/// training texts scores over it); lower scores are no finding.
pub const OPERATING_POINT: f32 = 0.5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("classifier model files: {0}")]
    Files(String),
    #[error("classifier model: {0}")]
    Model(String),
    #[error("classifier head: {0}")]
    Head(String),
}

/// How much of one text may be classified.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of text classified (cut at a character boundary).
    pub max_bytes: usize,
    /// Time spent on one text; windows left when it is spent are not scored.
    pub budget: Duration,
}

/// Which limit cut a text short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Bytes,
    Time,
}

/// One text's classification.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The worst window's score, in [0, 1]; 0.5 is the trained operating point.
    pub score: f32,
    /// Windows the encoder scored (those the gate passed, within the budget), and windows the
    /// text had within `max_bytes`.
    pub scored: usize,
    pub windows: usize,
    pub cut: Option<Cut>,
    /// The worst window's byte range in the text.
    pub worst: Option<std::ops::Range<usize>>,
}

/// Windows embedded together.
const BATCH: usize = 8;

pub struct Classifier {
    encoder: Encoder,
    head: Head,
}

impl Classifier {
    /// Load the encoder from `dir` (verified) and the head (the bundled one when `None`).
    pub fn load(dir: &Path, head: Option<&str>) -> Result<Classifier, Error> {
        let files = files::read_verified(dir)?;
        let digest = files::MINILM_L6_V2[2].1;
        let head: Head = serde_json::from_str(head.unwrap_or(BUNDLED_HEAD)).map_err(|e| Error::Head(e.to_string()))?;
        head.check(digest).map_err(Error::Head)?;
        let mut encoder = Encoder::load(files)?;
        if let Some(a) = &head.adapters {
            encoder.set_adapters(a)?;
        }
        Ok(Classifier { encoder, head })
    }

    /// Load the encoder only (for training a head).
    pub fn encoder(dir: &Path) -> Result<Encoder, Error> {
        Encoder::load(files::read_verified(dir)?)
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Score one text within `limits`: every window through the gate, and the windows it
    /// passes through the encoder (in text order, until the time budget is spent).
    pub fn score(&self, text: &str, limits: Limits) -> Result<Outcome, Error> {
        let start = Instant::now();
        let mut out = Outcome::default();
        let mut end = text.len().min(limits.max_bytes);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end < text.len() {
            out.cut = Some(Cut::Bytes);
        }
        let text = &text[..end];
        let (ids, offsets) = self.encoder.tokens_with_offsets(text)?;
        let windows = segment::windows(text, &offsets);
        out.windows = windows.len();
        let stat = self.encoder.static_embed(&ids, &windows)?;
        let suspect: Vec<&std::ops::Range<usize>> = windows
            .iter()
            .zip(&stat)
            .filter(|(_, s)| self.head.gate.score(s) >= self.head.gate_threshold)
            .map(|(w, _)| w)
            .collect();
        for batch in suspect.chunks(BATCH) {
            if start.elapsed() >= limits.budget {
                out.cut = Some(Cut::Time);
                break;
            }
            let slices: Vec<&[u32]> = batch.iter().map(|r| &ids[(*r).clone()]).collect();
            for (r, e) in batch.iter().zip(self.encoder.embed(&slices)?) {
                let s = self.head.classifier.score(&e);
                if s > out.score || out.worst.is_none() {
                    out.score = s;
                    out.worst = Some(offsets[r.start].0..offsets[r.end - 1].1);
                }
            }
            out.scored += batch.len();
        }
        Ok(out)
    }
}
