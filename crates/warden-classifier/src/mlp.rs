//! The classifier's head: one hidden layer (tanh) on a window's embedding, and its training by
//! minibatch Adam with a seeded shuffle (the same data and seed give the same head).

use crate::encoder::DIM;
use crate::head::{sigmoid, Example};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mlp {
    /// `hidden × DIM`, row by row.
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    pub b2: f32,
}

impl Mlp {
    pub fn hidden(&self) -> usize {
        self.b1.len()
    }

    pub fn check(&self) -> Result<(), String> {
        let h = self.hidden();
        let finite = self.w1.iter().chain(&self.b1).chain(&self.w2).chain([&self.b2]).all(|w| w.is_finite());
        if h == 0 || h > 1024 || self.w1.len() != h * DIM || self.w2.len() != h || !finite {
            return Err(format!("classifier: expected 1 to 1024 hidden units over {DIM} inputs, finite"));
        }
        Ok(())
    }

    fn hidden_out(&self, x: &[f32; DIM], out: &mut [f32]) {
        for (j, o) in out.iter_mut().enumerate() {
            let row = &self.w1[j * DIM..(j + 1) * DIM];
            *o = (row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + self.b1[j]).tanh();
        }
    }

    /// The logit for one window.
    pub fn logit(&self, x: &[f32; DIM]) -> f32 {
        let mut h = vec![0f32; self.hidden()];
        self.hidden_out(x, &mut h);
        h.iter().zip(&self.w2).map(|(a, b)| a * b).sum::<f32>() + self.b2
    }

    /// The probability that one window is an injection.
    pub fn score(&self, x: &[f32; DIM]) -> f32 {
        sigmoid(self.logit(x))
    }
}

/// A small deterministic generator (SplitMix64) for initialisation and shuffling.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Train on `examples` (classes weighted to balance) for `epochs` passes of minibatches of 32.
pub fn fit(examples: &[Example], hidden: usize, epochs: usize, l2: f32, seed: u64) -> Mlp {
    let mut rng = Rng(seed);
    let scale = (1.0 / DIM as f32).sqrt();
    let mut p = Mlp {
        w1: (0..hidden * DIM).map(|_| (rng.uniform() * 2.0 - 1.0) * scale).collect(),
        b1: vec![0.0; hidden],
        w2: (0..hidden).map(|_| (rng.uniform() * 2.0 - 1.0) * (1.0 / hidden as f32).sqrt()).collect(),
        b2: 0.0,
    };
    let n_pos = examples.iter().filter(|e| e.positive).count().max(1) as f32;
    let n_neg = (examples.len() as f32 - n_pos).max(1.0);
    let (wp, wn) = (examples.len() as f32 / (2.0 * n_pos), examples.len() as f32 / (2.0 * n_neg));
    let size = hidden * DIM + 2 * hidden + 1;
    let (mut m, mut v) = (vec![0f32; size], vec![0f32; size]);
    let (lr, b1, b2) = (3e-3f32, 0.9f32, 0.999f32);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut t = 0;
    let mut h = vec![0f32; hidden];
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        for batch in order.chunks(32) {
            let mut g = vec![0f32; size];
            for &k in batch {
                let e = &examples[k];
                p.hidden_out(&e.x, &mut h);
                let z = h.iter().zip(&p.w2).map(|(a, b)| a * b).sum::<f32>() + p.b2;
                let (y, w) = if e.positive { (1.0, wp) } else { (0.0, wn) };
                let d = (sigmoid(z) - y) * w / batch.len() as f32;
                for j in 0..hidden {
                    g[hidden * DIM + hidden + j] += d * h[j];
                    let dh = d * p.w2[j] * (1.0 - h[j] * h[j]);
                    g[hidden * DIM + j] += dh;
                    for (gi, xi) in g[j * DIM..(j + 1) * DIM].iter_mut().zip(&e.x) {
                        *gi += dh * xi;
                    }
                }
                g[size - 1] += d;
            }
            t += 1;
            let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
            let params =
                p.w1.iter_mut().chain(p.b1.iter_mut()).chain(p.w2.iter_mut()).chain(std::iter::once(&mut p.b2));
            for (i, w) in params.enumerate() {
                let gi = g[i] + l2 * *w;
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                *w -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
            }
        }
    }
    p
}
