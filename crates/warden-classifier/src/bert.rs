//! BERT's encoder (as in Hugging Face `BertModel`) on `candle`'s tensors, with optional low-rank
//! updates (LoRA) of each layer's linear maps:
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
    eps: f64,
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
            eps: c.layer_norm_eps,
        })
    }

    /// The input (word-piece) embedding of each of `ids`: the encoder's lookup table, no layers.
    pub fn word_vectors(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        let ids = Tensor::new(ids, &candle_core::Device::Cpu)?;
        self.words.embeddings().index_select(&ids, 0)?.to_vec2()
    }

    /// Hidden states `(batch, len, hidden)` for `ids` `(batch, len)`; `mask` is 1 on real
    /// tokens, 0 on padding. `adapters[i]`, where given, adds its low-rank updates to layer `i`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, adapters: &[Option<LayerAdapters>]) -> Result<Tensor> {
        let bias = attention_bias(mask)?;
        let mut x = self.embed(ids)?;
        for i in 0..self.layers.len() {
            x = self.layer(i, &x, &bias, adapters.get(i).and_then(Option::as_ref), false)?;
        }
        Ok(x)
    }

    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// The `(out, in)` shape of each linear map of layer `i`.
    pub fn linear_dims(&self, i: usize) -> Dims<(usize, usize)> {
        let l = &self.layers[i];
        let maps =
            Dims { query: &l.query, key: &l.key, value: &l.value, attn_out: &l.attn_out, up: &l.up, down: &l.down };
        maps.map(|l| l.weight().dims2().unwrap_or((0, 0)))
    }

    /// The input to the first layer: word + position + token type embeddings, normalised.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let n = ids.dim(1)?;
        let pos = Tensor::arange(0u32, n as u32, ids.device())?;
        let mut x = self.words.forward(ids)?;
        x = x.broadcast_add(&self.positions.forward(&pos)?)?;
        x = x.broadcast_add(&self.types.forward(&ids.zeros_like()?)?)?;
        self.norm.forward(&x)
    }

    /// Layer `i` on `x` `(batch, len, hidden)`. With `train`, the softmax and layer norms are
    /// the composed (differentiable) ones; without, `candle`'s fused kernels (same values).
    pub fn layer(&self, i: usize, x: &Tensor, bias: &Tensor, a: Option<&LayerAdapters>, train: bool) -> Result<Tensor> {
        let l = &self.layers[i];
        let (b, n, h) = x.dims3()?;
        let hd = h / self.heads;
        let lin = |lin: &Linear, x: &Tensor, pick: fn(&LayerAdapters) -> &Lora| -> Result<Tensor> {
            let y = lin.forward(x)?;
            match a.map(pick) {
                Some(lora) => y + (x.broadcast_matmul(&lora.a.t()?)?.broadcast_matmul(&lora.b.t()?)? * lora.scale)?,
                None => Ok(y),
            }
        };
        let norm = |ln: &LayerNorm, x: &Tensor| -> Result<Tensor> {
            if train {
                let (w, b) = (ln.weight(), ln.bias().ok_or_else(|| candle_core::Error::Msg("layer norm bias".into()))?);
                candle_nn::ops::layer_norm_slow(x, w, b, self.eps as f32)
            } else {
                ln.forward(x)
            }
        };
        let split = |t: Tensor| t.reshape((b, n, self.heads, hd))?.transpose(1, 2)?.contiguous();
        let q = split(lin(&l.query, x, |a| &a.query)?)?;
        let k = split(lin(&l.key, x, |a| &a.key)?)?;
        let v = split(lin(&l.value, x, |a| &a.value)?)?;
        let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?.broadcast_add(bias)?;
        let probs = if train {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.flatten_from(D::Minus2)?;
        let att = norm(&l.attn_norm, &(lin(&l.attn_out, &ctx, |a| &a.attn_out)? + x)?)?;
        let f = lin(&l.down, &lin(&l.up, &att, |a| &a.up)?.gelu_erf()?, |a| &a.down)?;
        norm(&l.out_norm, &(f + att)?)
    }
}

/// What is added before the softmax: 0 on real tokens, a large negative on padding, shaped
/// `(batch, 1, 1, len)`.
pub fn attention_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, n) = mask.dims2()?;
    ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, n))
}

/// A low-rank update of one linear map (LoRA): `x ↦ scale · B (A x)`, `a` `(rank, in)`, `b`
/// `(out, rank)`.
#[derive(Clone, Debug)]
pub struct Lora {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
}

/// Something per linear map of a layer.
#[derive(Clone, Debug)]
pub struct Dims<T> {
    pub query: T,
    pub key: T,
    pub value: T,
    pub attn_out: T,
    pub up: T,
    pub down: T,
}

impl<T> Dims<T> {
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> Dims<U> {
        Dims {
            query: f(&self.query),
            key: f(&self.key),
            value: f(&self.value),
            attn_out: f(&self.attn_out),
            up: f(&self.up),
            down: f(&self.down),
        }
    }
}

/// One layer's updates, one per linear map.
pub type LayerAdapters = Dims<Lora>;
