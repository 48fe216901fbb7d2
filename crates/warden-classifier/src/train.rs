//! Training the heads (`warden classifier train`, run by `scripts/classifier/train.sh`).
//!
//! Labels are per text, but a positive text is mostly benign context with the attack in one
//! window. So training is multiple-instance: first on short positives (bare attacks, whose every
//! window is the attack) against every window of the benign texts; then twice more with each
//! longer positive's worst window (by the model so far) added as a positive. The same is done
//! for the gate on the cheap static embeddings.
//!
//! Operating points come from the training data only: the classifier's threshold is where at
//! most 1 in 200 benign training texts score over it (its bias is shifted so that this point
//! reads 0.5); the gate's is where 99 % of the positive training texts' worst windows still
//! pass it.

use crate::encoder::{Encoder, DIM};
use crate::head::{fit, Example, Head, Linear, FORMAT};
use crate::mlp::Mlp;
use crate::{segment, Error};
use serde_json::json;

/// One labelled text.
pub struct Sample {
    pub text: String,
    pub positive: bool,
    pub kind: String,
}

/// A text's windows, embedded both ways.
pub struct Features {
    pub enc: Vec<[f32; DIM]>,
    pub stat: Vec<[f32; DIM]>,
    pub positive: bool,
    pub kind: String,
}

pub fn featurize(encoder: &Encoder, s: &Sample) -> Result<Features, Error> {
    let (ids, offsets) = encoder.tokens_with_offsets(&s.text)?;
    let windows = segment::windows(&s.text, &offsets);
    let mut enc = Vec::with_capacity(windows.len());
    for batch in windows.chunks(8) {
        let slices: Vec<&[u32]> = batch.iter().map(|r| &ids[r.clone()]).collect();
        enc.extend(encoder.embed(&slices)?);
    }
    let stat = encoder.static_embed(&ids, &windows)?;
    Ok(Features { enc, stat, positive: s.positive, kind: s.kind.clone() })
}

/// Texts whose every window counts as the attack.
const SHORT: usize = 2;

/// A window scorer being trained.
trait Scorer {
    fn score(&self, x: &[f32; DIM]) -> f32;
}
impl Scorer for Linear {
    fn score(&self, x: &[f32; DIM]) -> f32 {
        Linear::score(self, x)
    }
}
impl Scorer for Mlp {
    fn score(&self, x: &[f32; DIM]) -> f32 {
        Mlp::score(self, x)
    }
}

fn mil<S: Scorer>(feats: &[Features], view: fn(&Features) -> &[[f32; DIM]], fit: impl Fn(&[Example]) -> S) -> S {
    let examples = |model: Option<&S>| {
        let mut ex = Vec::new();
        for f in feats {
            let xs = view(f);
            if !f.positive || xs.len() <= SHORT {
                ex.extend(xs.iter().map(|x| Example { x: *x, positive: f.positive }));
            } else if let Some(m) = model {
                let worst = xs.iter().max_by(|a, b| m.score(a).total_cmp(&m.score(b)));
                ex.extend(worst.map(|x| Example { x: *x, positive: true }));
            }
        }
        ex
    };
    let mut model = fit(&examples(None));
    for _round in 0..2 {
        model = fit(&examples(Some(&model)));
    }
    model
}

fn text_score<S: Scorer>(l: &S, xs: &[[f32; DIM]]) -> f32 {
    xs.iter().map(|x| l.score(x)).fold(0.0, f32::max)
}

/// Training settings, recorded in the head.
pub const SEED: u64 = 20261207;
pub const HIDDEN: usize = 128;
pub const EPOCHS: usize = 80;
pub const BENIGN_OVER: f64 = 0.005;

/// What `warden classifier train` may change.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub hidden: usize,
    pub epochs: usize,
    pub benign_over: f64,
}

/// The value that `q` of `v` lie at or under.
fn quantile(mut v: Vec<f32>, q: f64) -> f32 {
    if v.is_empty() {
        return 0.5;
    }
    v.sort_by(f32::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Fit the heads on `feats`; the operating point is set on the benign texts of `calibration`
/// when given (texts kept out of every fit), else on those of `feats`.
pub fn train(
    feats: &[Features],
    calibration: Option<&[Features]>,
    encoder_digest: &str,
    training: serde_json::Value,
    s: Settings,
) -> Head {
    let mut classifier = mil(feats, |f| &f.enc, |ex| crate::mlp::fit(ex, s.hidden, s.epochs, 1e-4, SEED));
    let negatives: Vec<f32> =
        calibration.unwrap_or(feats).iter().filter(|f| !f.positive).map(|f| text_score(&classifier, &f.enc)).collect();
    let t = quantile(negatives, 1.0 - s.benign_over).clamp(1e-4, 1.0 - 1e-4);
    classifier.b2 -= (t / (1.0 - t)).ln();
    let gate = mil(feats, |f| &f.stat, |ex| fit(ex, 1e-4, 300));
    // The gate must pass the window the classifier would flag.
    let passing: Vec<f32> = feats
        .iter()
        .filter(|f| f.positive)
        .filter_map(|f| {
            let i = (0..f.enc.len())
                .max_by(|&a, &b| classifier.score(&f.enc[a]).total_cmp(&classifier.score(&f.enc[b])))?;
            Some(gate.score(&f.stat[i]))
        })
        .collect();
    let gate_threshold = quantile(passing, 0.01).clamp(0.0, 0.99);
    let mut head = Head {
        format: FORMAT.into(),
        encoder: encoder_digest.into(),
        classifier,
        gate,
        gate_threshold,
        adapters: None,
        training,
    };
    head.training["train_metrics"] = metrics(&head, feats);
    head
}

/// Detection per kind at 0.5 with and without the gate, and the share of benign windows the
/// gate lets through to the encoder.
pub fn metrics(h: &Head, feats: &[Features]) -> serde_json::Value {
    let mut kinds = std::collections::BTreeMap::<&str, (usize, usize, usize)>::new();
    let (mut benign_windows, mut passed) = (0usize, 0usize);
    for f in feats {
        let full = text_score(&h.classifier, &f.enc) >= 0.5;
        let gated =
            f.enc.iter().zip(&f.stat).any(|(e, s)| h.gate.score(s) >= h.gate_threshold && h.classifier.score(e) >= 0.5);
        let k = kinds.entry(&f.kind).or_default();
        k.0 += 1;
        k.1 += full as usize;
        k.2 += gated as usize;
        if !f.positive {
            benign_windows += f.stat.len();
            passed += f.stat.iter().filter(|s| h.gate.score(s) >= h.gate_threshold).count();
        }
    }
    let by_kind: serde_json::Map<String, serde_json::Value> = kinds
        .into_iter()
        .map(|(k, (n, full, gated))| (k.to_string(), json!({"texts": n, "flagged": full, "flagged_with_gate": gated})))
        .collect();
    json!({"by_kind": by_kind, "benign_windows": benign_windows, "benign_windows_through_gate": passed})
}

/// Embeddings saved for retraining: the data's digest, then per text its window count and its
/// windows' two embeddings, little-endian.
pub fn save_cache(path: &std::path::Path, key: &str, feats: &[Features]) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(key.as_bytes());
    for f in feats {
        out.extend_from_slice(&(f.enc.len() as u32).to_le_bytes());
        for x in f.enc.iter().chain(&f.stat).flatten() {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, out)
}

pub fn load_cache(path: &std::path::Path, key: &str, set: &[Sample]) -> Option<Vec<Features>> {
    let bytes = std::fs::read(path).ok()?;
    let mut rest = bytes.strip_prefix(key.as_bytes())?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = (rest.get(..n)?, rest.get(n..)?);
        rest = b;
        Some(a)
    };
    let mut out = Vec::with_capacity(set.len());
    for s in set {
        let n = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let mut read = |k: usize| -> Option<Vec<[f32; DIM]>> {
            (0..k)
                .map(|_| {
                    let mut v = [0f32; DIM];
                    for x in v.iter_mut() {
                        *x = f32::from_le_bytes(take(4)?.try_into().ok()?);
                    }
                    Some(v)
                })
                .collect()
        };
        let enc = read(n)?;
        let stat = read(n)?;
        out.push(Features { enc, stat, positive: s.positive, kind: s.kind.clone() });
    }
    Some(out)
}
