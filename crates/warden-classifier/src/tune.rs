//! Fine-tuning the encoder for the classifier (`warden classifier tune`): low-rank updates
//! (LoRA) of the top layers' linear maps, trained together with an MLP head on the windows of
//! the training texts; then the head is fitted again on the tuned embeddings, calibrated and
//! gated exactly as `train.rs` does, and the updates are stored in the head file.
//!
//! Why: a head on the frozen sentence embedding underfits (it encodes a window's topic, not
//! "this asks the reader to do something"). Only the top layers are tuned, so the hidden states
//! after the frozen layers are computed once per window and kept, and each step runs (and
//! differentiates) the top layers only.
//!
//! Training is multiple-instance as in `train.rs`: a short positive's every window is an
//! attack; a longer positive contributes the window the model being tuned scores highest,
//! chosen again each epoch. Negatives are a fresh seeded sample of benign windows each epoch,
//! plus every window of the hard benign texts. Seeded: the same data, settings and encoder
//! give the same updates on the same machine (floating-point sums may differ across CPUs).

use crate::adapters::{encode, Adapters, LayerFile, LoraFile};
use crate::bert::{attention_bias, Dims, LayerAdapters, Lora};
use crate::encoder::{pool, Encoder, DIM};
use crate::mlp::{Mlp, Rng};
use crate::train::{Features, Sample};
use crate::{segment, Error};
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use std::ops::Range;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Top layers tuned.
    pub layers: usize,
    pub rank: usize,
    pub alpha: f32,
    pub epochs: usize,
    /// Benign windows sampled per epoch.
    pub negatives: usize,
    pub lr: f64,
    pub batch: usize,
    pub seed: u64,
}

fn e(what: &'static str) -> impl Fn(candle_core::Error) -> Error {
    move |err| Error::Model(format!("{what}: {err}"))
}

/// The training texts after the frozen layers.
pub struct Frozen {
    /// Per window: hidden states `(len, hidden)`, `[CLS]` and `[SEP]` included.
    windows: Vec<Tensor>,
    /// Each text's windows (a range of `windows`).
    texts: Vec<Range<usize>>,
    /// Each text's windows' static embeddings (for the gate).
    stat: Vec<Vec<[f32; DIM]>>,
}

/// Run every window of `set` through the layers under `first_tuned`.
pub fn freeze(encoder: &Encoder, set: &[Sample], first_tuned: usize) -> Result<Frozen, Error> {
    let model = encoder.model();
    let mut out = Frozen { windows: Vec::new(), texts: Vec::new(), stat: Vec::new() };
    let start = Instant::now();
    for (t, s) in set.iter().enumerate() {
        let (ids, offsets) = encoder.tokens_with_offsets(&s.text)?;
        let ws = segment::windows(&s.text, &offsets);
        out.stat.push(encoder.static_embed(&ids, &ws)?);
        let first = out.windows.len();
        for batch in ws.chunks(16) {
            let slices: Vec<&[u32]> = batch.iter().map(|r| &ids[r.clone()]).collect();
            let (tid, mask) = encoder.batch(&slices)?;
            let bias = attention_bias(&mask).map_err(e("frozen"))?;
            let mut x = model.embed(&tid).map_err(e("frozen"))?;
            for i in 0..first_tuned {
                x = model.layer(i, &x, &bias, None, false).map_err(e("frozen"))?;
            }
            for (k, sl) in slices.iter().enumerate() {
                let row = x.get(k).and_then(|r| r.narrow(0, 0, sl.len() + 2)?.contiguous()).map_err(e("frozen"))?;
                out.windows.push(row);
            }
        }
        out.texts.push(first..out.windows.len());
        if t % 200 == 199 {
            eprintln!("tune: {}/{} texts through the frozen layers ({:.0?})", t + 1, set.len(), start.elapsed());
        }
    }
    Ok(out)
}

/// What is being tuned: the top layers' updates and the head.
struct Tuned {
    layers: Vec<(usize, LayerAdapters)>,
    lora: Vec<(usize, Dims<(Var, Var)>)>,
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

fn var(v: Vec<f32>, shape: (usize, usize)) -> Result<Var, Error> {
    Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).map_err(e("init"))?).map_err(e("init"))
}

impl Tuned {
    fn new(encoder: &Encoder, start: &Mlp, s: &Settings) -> Result<Tuned, Error> {
        let model = encoder.model();
        let n = model.layer_count();
        let mut rng = Rng(s.seed);
        let scale = f64::from(s.alpha) / s.rank as f64;
        let mut pair = |(out, inp): (usize, usize)| -> Result<(Var, Var), Error> {
            let bound = 1.0 / (inp as f32).sqrt();
            let a = (0..s.rank * inp).map(|_| (rng.uniform() * 2.0 - 1.0) * bound).collect();
            Ok((var(a, (s.rank, inp))?, var(vec![0.0; out * s.rank], (out, s.rank))?))
        };
        let mut lora = Vec::new();
        for i in n.saturating_sub(s.layers)..n {
            let d = model.linear_dims(i);
            lora.push((
                i,
                Dims {
                    query: pair(d.query)?,
                    key: pair(d.key)?,
                    value: pair(d.value)?,
                    attn_out: pair(d.attn_out)?,
                    up: pair(d.up)?,
                    down: pair(d.down)?,
                },
            ));
        }
        let as_lora = |(a, b): &(Var, Var)| Lora { a: a.as_tensor().clone(), b: b.as_tensor().clone(), scale };
        let layers = lora.iter().map(|(i, d): &(usize, Dims<(Var, Var)>)| (*i, d.map(as_lora))).collect();
        let h = start.hidden();
        Ok(Tuned {
            layers,
            lora,
            w1: var(start.w1.clone(), (h, DIM))?,
            b1: var(start.b1.clone(), (1, h))?,
            w2: var(start.w2.clone(), (h, 1))?,
            b2: var(vec![start.b2], (1, 1))?,
        })
    }

    fn vars(&self) -> Vec<Var> {
        let mut v = vec![self.w1.clone(), self.b1.clone(), self.w2.clone(), self.b2.clone()];
        for (_, d) in &self.lora {
            for (a, b) in [&d.query, &d.key, &d.value, &d.attn_out, &d.up, &d.down] {
                v.extend([a.clone(), b.clone()]);
            }
        }
        v
    }

    /// The tuned layers and pooling on `windows`: `(batch, DIM)` embeddings.
    fn embed(&self, encoder: &Encoder, windows: &[&Tensor], train: bool) -> candle_core::Result<Tensor> {
        let longest = windows.iter().map(|w| w.dim(0)).collect::<candle_core::Result<Vec<_>>>()?;
        let len = longest.iter().copied().max().unwrap_or(0);
        let mut rows = Vec::with_capacity(windows.len());
        let mut mask = Vec::with_capacity(windows.len() * len);
        for (w, &n) in windows.iter().zip(&longest) {
            let row = if n < len {
                Tensor::cat(&[*w, &Tensor::zeros((len - n, DIM), w.dtype(), w.device())?], 0)?
            } else {
                (*w).clone()
            };
            rows.push(row);
            mask.extend(std::iter::repeat_n(1u32, n));
            mask.extend(std::iter::repeat_n(0u32, len - n));
        }
        let mut x = Tensor::stack(&rows, 0)?;
        let mask = Tensor::from_vec(mask, (windows.len(), len), &Device::Cpu)?;
        let bias = attention_bias(&mask)?;
        for (i, a) in &self.layers {
            x = encoder.model().layer(*i, &x, &bias, Some(a), train)?;
        }
        pool(&x, &mask)
    }

    /// The head's logits for embeddings `(batch, DIM)`: `(batch,)`.
    fn logits(&self, emb: &Tensor) -> candle_core::Result<Tensor> {
        let h = emb.matmul(&self.w1.t()?)?.broadcast_add(&self.b1)?.tanh()?;
        h.matmul(&self.w2)?.broadcast_add(&self.b2)?.squeeze(1)
    }

    /// Scores (logits) of `ids` windows, no gradient kept.
    fn score(&self, encoder: &Encoder, f: &Frozen, ids: &[usize]) -> Result<Vec<f32>, Error> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(32) {
            let ws: Vec<&Tensor> = chunk.iter().map(|&i| &f.windows[i]).collect();
            let z = self.embed(encoder, &ws, false).and_then(|m| self.logits(&m.detach())).map_err(e("score"))?;
            out.extend(z.to_vec1::<f32>().map_err(e("score"))?);
        }
        Ok(out)
    }

    fn adapters(&self, s: &Settings) -> Result<Adapters, Error> {
        let file = |(a, b): &(Var, Var)| -> Result<LoraFile, Error> {
            let flat = |v: &Var| v.as_tensor().flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(e("save"));
            Ok(LoraFile { a: encode(&flat(a)?), b: encode(&flat(b)?) })
        };
        let layers = self
            .lora
            .iter()
            .map(|(i, d)| {
                Ok(LayerFile {
                    index: *i,
                    query: file(&d.query)?,
                    key: file(&d.key)?,
                    value: file(&d.value)?,
                    attn_out: file(&d.attn_out)?,
                    up: file(&d.up)?,
                    down: file(&d.down)?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Adapters { rank: s.rank, alpha: s.alpha, layers })
    }
}

/// Texts whose every window counts as the attack (as in `train.rs`).
const SHORT: usize = 2;

/// Tune, starting from `start` (the frozen encoder's head); returns the updates and every
/// text's tuned features (for fitting the final head).
pub fn tune(
    encoder: &Encoder,
    set: &[Sample],
    f: &Frozen,
    start: &Mlp,
    s: &Settings,
) -> Result<(Adapters, Vec<Features>), Error> {
    let t0 = Instant::now();
    let tuned = Tuned::new(encoder, start, s)?;
    let mut opt = AdamW::new(tuned.vars(), ParamsAdamW { lr: s.lr, weight_decay: 1e-4, ..Default::default() })
        .map_err(e("optimizer"))?;
    let mut rng = Rng(s.seed ^ 0x5eed);
    let benign: Vec<usize> =
        set.iter().zip(&f.texts).filter(|(x, _)| !x.positive).flat_map(|(_, r)| r.clone()).collect();
    let hard: Vec<usize> = set
        .iter()
        .zip(&f.texts)
        .filter(|(x, _)| !x.positive && x.kind == "benign_hard")
        .flat_map(|(_, r)| r.clone())
        .collect();
    for epoch in 0..s.epochs {
        // The positives: short ones whole, long ones by their worst window now.
        let mut examples: Vec<(usize, bool)> = Vec::new();
        for (x, r) in set.iter().zip(&f.texts) {
            if !x.positive || r.is_empty() {
                continue;
            }
            if r.len() <= SHORT {
                examples.extend(r.clone().map(|i| (i, true)));
            } else {
                let ids: Vec<usize> = r.clone().collect();
                let sc = tuned.score(encoder, f, &ids)?;
                let best = (0..ids.len()).max_by(|&a, &b| sc[a].total_cmp(&sc[b])).unwrap_or(0);
                examples.push((ids[best], true));
            }
        }
        let n_pos = examples.len();
        let mut pool_ids = benign.clone();
        for i in (1..pool_ids.len()).rev() {
            pool_ids.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        examples.extend(pool_ids.into_iter().take(s.negatives).map(|i| (i, false)));
        examples.extend(hard.iter().map(|&i| (i, false)));
        let n_neg = examples.len() - n_pos;
        let (wp, wn) = (examples.len() as f32 / (2.0 * n_pos as f32), examples.len() as f32 / (2.0 * n_neg as f32));
        for i in (1..examples.len()).rev() {
            examples.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let (mut total, mut steps) = (0f32, 0usize);
        for batch in examples.chunks(s.batch) {
            let ws: Vec<&Tensor> = batch.iter().map(|(i, _)| &f.windows[*i]).collect();
            let y: Vec<f32> = batch.iter().map(|(_, p)| if *p { 1.0 } else { 0.0 }).collect();
            let w: Vec<f32> = batch.iter().map(|(_, p)| if *p { wp } else { wn }).collect();
            let wsum: f32 = w.iter().sum();
            let loss = (|| -> candle_core::Result<Tensor> {
                let z = tuned.logits(&tuned.embed(encoder, &ws, true)?)?;
                let y = Tensor::from_vec(y, batch.len(), &Device::Cpu)?;
                let w = Tensor::from_vec(w, batch.len(), &Device::Cpu)?;
                // Weighted binary cross-entropy on logits: softplus(z) − y·z.
                let softplus = (z.relu()? + ((z.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
                let l = (softplus - (y * &z)?)?;
                (l * w)?.sum_all()? / f64::from(wsum)
            })()
            .map_err(e("loss"))?;
            opt.backward_step(&loss).map_err(e("backward"))?;
            total += loss.to_scalar::<f32>().map_err(e("loss"))?;
            steps += 1;
            if steps % 50 == 0 {
                eprintln!(
                    "tune: epoch {} step {steps}/{} loss {:.4} ({:.0?})",
                    epoch + 1,
                    examples.len().div_ceil(s.batch),
                    total / steps as f32,
                    t0.elapsed()
                );
            }
        }
        eprintln!(
            "tune: epoch {} done: {n_pos} positive, {n_neg} negative windows, mean loss {:.4} ({:.0?})",
            epoch + 1,
            total / steps.max(1) as f32,
            t0.elapsed()
        );
    }
    // Every text's windows through the tuned layers, for the final head.
    let mut feats = Vec::with_capacity(set.len());
    for ((x, r), stat) in set.iter().zip(&f.texts).zip(&f.stat) {
        let mut enc = Vec::with_capacity(r.len());
        let ids: Vec<usize> = r.clone().collect();
        for chunk in ids.chunks(32) {
            let ws: Vec<&Tensor> = chunk.iter().map(|&i| &f.windows[i]).collect();
            let m = tuned.embed(encoder, &ws, false).and_then(|m| m.to_vec2::<f32>()).map_err(e("embed"))?;
            enc.extend(m.into_iter().map(|row| {
                let mut out = [0f32; DIM];
                out.iter_mut().zip(row).for_each(|(o, v)| *o = v);
                out
            }));
        }
        feats.push(Features { enc, stat: stat.clone(), positive: x.positive, kind: x.kind.clone() });
    }
    Ok((tuned.adapters(s)?, feats))
}
