//! The encoder's fine-tuning, as stored in the head file: low-rank updates (LoRA) of the top
//! layers' linear maps, trained by `warden classifier tune` (`tune.rs`). The published weights
//! stay as they are (and verified by digest); the updates are small (about 0.4 MB for two
//! layers at rank 8) and checked here before use: rank, layer, shape, finite values.

use crate::bert::{Bert, LayerAdapters, Lora};
use base64::Engine;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// The largest rank accepted.
pub const MAX_RANK: usize = 64;

/// One linear map's update: `a` `(rank, in)` and `b` `(out, rank)`, f32 little-endian, base64.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoraFile {
    pub a: String,
    pub b: String,
}

/// One layer's updates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerFile {
    pub index: usize,
    pub query: LoraFile,
    pub key: LoraFile,
    pub value: LoraFile,
    pub attn_out: LoraFile,
    pub up: LoraFile,
    pub down: LoraFile,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Adapters {
    pub rank: usize,
    /// The updates are scaled by `alpha / rank`.
    pub alpha: f32,
    pub layers: Vec<LayerFile>,
}

pub fn encode(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode(s: &str, len: usize, what: &str) -> Result<Vec<f32>, String> {
    // Checked before decoding: a huge string is refused without allocating for it.
    if s.len() != (len * 4).div_ceil(3) * 4 {
        return Err(format!("{what}: expected {len} values"));
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| format!("{what}: {e}"))?;
    let v: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    if v.len() != len || !v.iter().all(|x| x.is_finite()) {
        return Err(format!("{what}: expected {len} finite values"));
    }
    Ok(v)
}

impl Adapters {
    /// The updates as tensors, one entry per layer of `bert` (`None` where not tuned).
    pub fn tensors(&self, bert: &Bert) -> Result<Vec<Option<LayerAdapters>>, String> {
        if !(1..=MAX_RANK).contains(&self.rank) || !self.alpha.is_finite() {
            return Err(format!("adapters: rank 1 to {MAX_RANK} and a finite alpha expected"));
        }
        let scale = f64::from(self.alpha) / self.rank as f64;
        let mut out: Vec<Option<LayerAdapters>> = vec![None; bert.layer_count()];
        for l in &self.layers {
            let slot = out.get_mut(l.index).ok_or_else(|| format!("adapters: no layer {}", l.index))?;
            if slot.is_some() {
                return Err(format!("adapters: layer {} twice", l.index));
            }
            let dims = bert.linear_dims(l.index);
            let one = |f: &LoraFile, (out_dim, in_dim): (usize, usize), name: &str| -> Result<Lora, String> {
                let what = format!("adapters: layer {} {name}", l.index);
                let a = decode(&f.a, self.rank * in_dim, &what)?;
                let b = decode(&f.b, out_dim * self.rank, &what)?;
                let t = |v: Vec<f32>, shape: (usize, usize)| {
                    Tensor::from_vec(v, shape, &Device::Cpu).map_err(|e| format!("{what}: {e}"))
                };
                Ok(Lora { a: t(a, (self.rank, in_dim))?, b: t(b, (out_dim, self.rank))?, scale })
            };
            *slot = Some(LayerAdapters {
                query: one(&l.query, dims.query, "query")?,
                key: one(&l.key, dims.key, "key")?,
                value: one(&l.value, dims.value, "value")?,
                attn_out: one(&l.attn_out, dims.attn_out, "attn_out")?,
                up: one(&l.up, dims.up, "up")?,
                down: one(&l.down, dims.down, "down")?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_a_wrong_length_or_a_nan_is_refused() {
        let v = vec![0.5f32, -1.25, 3.0];
        assert_eq!(decode(&encode(&v), 3, "x").unwrap(), v);
        assert!(decode(&encode(&v), 4, "x").is_err());
        assert!(decode(&encode(&[f32::NAN, 0.0, 0.0]), 3, "x").is_err());
        assert!(decode("!!!!!!!!!!!!!!!!", 3, "x").is_err());
    }
}
