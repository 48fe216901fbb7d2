//! The heads' file: the classifier (an MLP, `mlp.rs`), the gate (logistic regression on the
//! static embedding, trained here), and the encoder's fine-tuning where it was tuned
//! (`adapters.rs`).
//!
//! The head file records what it was trained on (data digest, seed, counts) and its metrics,
//! so a score can be traced to the data behind it. Scores are calibrated so that 0.5 is the
//! operating point chosen on the training data (the injection threshold's default).

use crate::encoder::DIM;
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "warden-classifier-head/2";
/// The first format: no adapters.
const FORMAT_1: &str = "warden-classifier-head/1";

/// A logistic model on one embedding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Linear {
    pub weights: Vec<f32>,
    pub bias: f32,
}

impl Linear {
    fn check(&self, what: &str) -> Result<(), String> {
        if self.weights.len() != DIM || !self.weights.iter().chain([&self.bias]).all(|w| w.is_finite()) {
            return Err(format!("{what}: expected {DIM} finite weights and a finite bias"));
        }
        Ok(())
    }

    /// The probability that one window is an injection.
    pub fn score(&self, e: &[f32; DIM]) -> f32 {
        sigmoid(self.weights.iter().zip(e).map(|(w, x)| w * x).sum::<f32>() + self.bias)
    }
}

/// The trained heads: `classifier` on the encoder's embedding (calibrated so 0.5 is its
/// operating point), and `gate` on the cheap static embedding: windows the gate scores under
/// `gate_threshold` are not worth the encoder's time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Head {
    pub format: String,
    /// The encoder's weights digest (sha256 of model.safetensors) it was trained on.
    pub encoder: String,
    pub classifier: crate::mlp::Mlp,
    pub gate: Linear,
    pub gate_threshold: f32,
    /// The encoder's fine-tuning the classifier was trained with (none: the published encoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapters: Option<crate::adapters::Adapters>,
    /// Whatever the trainer recorded: data, seed, metrics.
    #[serde(default)]
    pub training: serde_json::Value,
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Head {
    pub fn check(&self, encoder_digest: &str) -> Result<(), String> {
        if self.format != FORMAT && (self.format != FORMAT_1 || self.adapters.is_some()) {
            return Err(format!("head format {:?}, expected {FORMAT:?}", self.format));
        }
        self.classifier.check()?;
        self.gate.check("gate")?;
        if !(0.0..1.0).contains(&self.gate_threshold) {
            return Err("gate_threshold: expected a number in [0, 1)".into());
        }
        if self.encoder != encoder_digest {
            return Err(format!("head was trained on encoder {}, not {encoder_digest}", self.encoder));
        }
        Ok(())
    }
}

/// One training window.
pub struct Example {
    pub x: [f32; DIM],
    pub positive: bool,
}

/// L2-regularised logistic regression, classes weighted to balance, full-batch Adam from zero
/// (deterministic: the same examples in the same order give the same head).
pub fn fit(examples: &[Example], l2: f32, steps: usize) -> Linear {
    let n_pos = examples.iter().filter(|e| e.positive).count().max(1) as f32;
    let n_neg = (examples.len() as f32 - n_pos).max(1.0);
    let (wp, wn) = (0.5 / n_pos, 0.5 / n_neg);
    let mut w = vec![0f32; DIM + 1];
    let (mut m, mut v) = (vec![0f32; DIM + 1], vec![0f32; DIM + 1]);
    let (lr, b1, b2) = (0.05f32, 0.9f32, 0.999f32);
    for t in 1..=steps {
        let mut g = vec![0f32; DIM + 1];
        for e in examples {
            let z = w[..DIM].iter().zip(&e.x).map(|(a, b)| a * b).sum::<f32>() + w[DIM];
            let (y, weight) = if e.positive { (1.0, wp) } else { (0.0, wn) };
            let d = (sigmoid(z) - y) * weight;
            for (gi, xi) in g.iter_mut().zip(&e.x) {
                *gi += d * xi;
            }
            g[DIM] += d;
        }
        for i in 0..DIM {
            g[i] += l2 * w[i];
        }
        for i in 0..=DIM {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let mh = m[i] / (1.0 - b1.powi(t as i32));
            let vh = v[i] / (1.0 - b2.powi(t as i32));
            w[i] -= lr * mh / (vh.sqrt() + 1e-8);
        }
    }
    let bias = w.pop().unwrap_or(0.0);
    Linear { weights: w, bias }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_separates_two_clusters_and_checks_reject_a_foreign_head() {
        let mk = |i: usize, positive: bool| {
            let mut x = [0f32; DIM];
            x[if positive { 0 } else { 1 }] = 1.0;
            x[2 + i % 7] = 0.3;
            Example { x, positive }
        };
        let ex: Vec<Example> = (0..40).map(|i| mk(i, i % 4 == 0)).collect();
        let l = fit(&ex, 1e-3, 200);
        assert!(ex.iter().all(|e| (l.score(&e.x) > 0.5) == e.positive));
        let m = crate::mlp::fit(&ex, 4, 60, 1e-4, 7);
        assert!(ex.iter().all(|e| (m.score(&e.x) > 0.5) == e.positive));
        let h = Head {
            format: FORMAT.into(),
            encoder: "e".into(),
            classifier: m,
            gate: l.clone(),
            gate_threshold: 0.1,
            adapters: None,
            training: Default::default(),
        };
        assert!(h.check("e").is_ok());
        assert!(h.check("other").is_err());
        let bad = Head { gate: Linear { weights: vec![f32::NAN; DIM], bias: 0.0 }, ..h.clone() };
        assert!(bad.check("e").is_err());
    }
}
