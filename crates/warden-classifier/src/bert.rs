//! BERT's encoder (as in Hugging Face `BertModel`), inference only, on `candle`'s tensors:
//! embeddings (word + position + token type, layer norm), then per layer self-attention with a
//! residual and layer norm, and a GELU feed-forward with a residual and layer norm. Written here
//! (about a hundred lines) rather than taken from `candle-transformers`, whose hundreds of other
//! models would triple the build.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};

/// The fields of `config.json` the encoder reads.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: String,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

pub struct Bert {
    words: Embedding,
    positions: Embedding,
    types: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
}

impl Bert {
    pub fn load(vb: VarBuilder, c: &Config) -> Result<Bert> {
        if c.hidden_act != "gelu" || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!("unsupported BERT config (hidden_act {:?})", c.hidden_act);
        }
        let h = c.hidden_size;
        let e = vb.pp("embeddings");
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            layers.push(Layer {
                query: linear(h, h, a.pp("self.query"))?,
                key: linear(h, h, a.pp("self.key"))?,
                value: linear(h, h, a.pp("self.value"))?,
                attn_out: linear(h, h, a.pp("output.dense"))?,
                attn_norm: layer_norm(h, c.layer_norm_eps, a.pp("output.LayerNorm"))?,
                up: linear(h, c.intermediate_size, l.pp("intermediate.dense"))?,
                down: linear(c.intermediate_size, h, l.pp("output.dense"))?,
                out_norm: layer_norm(h, c.layer_norm_eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Bert {
            words: embedding(c.vocab_size, h, e.pp("word_embeddings"))?,
            positions: embedding(c.max_position_embeddings, h, e.pp("position_embeddings"))?,
            types: embedding(c.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            norm: layer_norm(h, c.layer_norm_eps, e.pp("LayerNorm"))?,
            layers,
            heads: c.num_attention_heads,
        })
    }

    /// The input (word-piece) embedding of each of `ids`: the encoder's lookup table, no layers.
    pub fn word_vectors(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        let ids = Tensor::new(ids, &candle_core::Device::Cpu)?;
        self.words.embeddings().index_select(&ids, 0)?.to_vec2()
    }

    /// Hidden states `(batch, len, hidden)` for `ids` `(batch, len)`; `mask` is 1 on real
    /// tokens, 0 on padding.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, n) = ids.dims2()?;
        let pos = Tensor::arange(0u32, n as u32, ids.device())?;
        let mut x = self.words.forward(ids)?;
        x = x.broadcast_add(&self.positions.forward(&pos)?)?;
        x = x.broadcast_add(&self.types.forward(&ids.zeros_like()?)?)?;
        x = self.norm.forward(&x)?;
        // Padding gets a large negative added before the softmax.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, n))?;
        let hd = x.dim(2)? / self.heads;
        let split = |t: Tensor| t.reshape((b, n, self.heads, hd))?.transpose(1, 2)?.contiguous();
        for l in &self.layers {
            let (q, k, v) = (split(l.query.forward(&x)?)?, split(l.key.forward(&x)?)?, split(l.value.forward(&x)?)?);
            let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.flatten_from(D::Minus2)?;
            let a = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
            let f = l.down.forward(&l.up.forward(&a)?.gelu_erf()?)?;
            x = l.out_norm.forward(&(f + a)?)?;
        }
        Ok(x)
    }
}
