//! The sentence encoder: BERT (MiniLM-L6, 384 dimensions) on the CPU through `candle`, mean
//! pooled over each window's tokens and L2-normalised, as sentence-transformers does; a head's
//! fine-tuning (`adapters`) is applied when the head carries one.

use crate::adapters::Adapters;
use crate::bert::{Bert, Config, LayerAdapters};
use crate::files::ModelFiles;
use crate::Error;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

pub const DIM: usize = 384;

/// Word-piece ids, and each one's byte range in the text.
pub type Tokens = (Vec<u32>, Vec<(usize, usize)>);

fn e(what: &'static str) -> impl Fn(candle_core::Error) -> Error {
    move |err| Error::Model(format!("{what}: {err}"))
}

pub struct Encoder {
    model: Bert,
    tokenizer: Tokenizer,
    cls: u32,
    sep: u32,
    adapters: Vec<Option<LayerAdapters>>,
}

impl Encoder {
    pub fn load(files: ModelFiles) -> Result<Encoder, Error> {
        let config: Config =
            serde_json::from_slice(&files.config).map_err(|err| Error::Model(format!("config.json: {err}")))?;
        let mut tokenizer =
            Tokenizer::from_bytes(&files.tokenizer).map_err(|err| Error::Model(format!("tokenizer.json: {err}")))?;
        // Windows are cut here, not by the tokenizer's own 128-token truncation.
        tokenizer.with_padding(None);
        // "[SEP]" or "[CLS]" written in untrusted text is text, not a control token.
        tokenizer.set_encode_special_tokens(true);
        tokenizer.with_truncation(None).map_err(|err| Error::Model(format!("tokenizer.json: {err}")))?;
        let id = |t: &str| tokenizer.token_to_id(t).ok_or_else(|| Error::Model(format!("tokenizer has no {t}")));
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        let vb = VarBuilder::from_buffered_safetensors(files.weights, DType::F32, &Device::Cpu)
            .map_err(e("model.safetensors"))?;
        let model = Bert::load(vb, &config).map_err(e("model.safetensors"))?;
        Ok(Encoder { model, tokenizer, cls, sep, adapters: Vec::new() })
    }

    /// The text's word-piece ids and each one's byte range in `text`.
    pub fn tokens_with_offsets(&self, text: &str) -> Result<Tokens, Error> {
        let enc = self.tokenizer.encode(text, false).map_err(|err| Error::Model(format!("tokenize: {err}")))?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    /// The cheap embedding of each window: the mean of its word pieces' input vectors
    /// (L2-normalised), no attention; what the gate scores.
    pub fn static_embed(&self, ids: &[u32], windows: &[std::ops::Range<usize>]) -> Result<Vec<[f32; DIM]>, Error> {
        // Window by window (at most 64 rows each): memory stays small however long the text.
        windows
            .iter()
            .map(|r| {
                let mut out = [0f32; DIM];
                let window = ids.get(r.clone()).unwrap_or_default();
                if !window.is_empty() {
                    for row in self.model.word_vectors(window).map_err(e("lookup"))? {
                        out.iter_mut().zip(row).for_each(|(o, x)| *o += x);
                    }
                }
                normalise(&mut out);
                Ok(out)
            })
            .collect()
    }

    /// One embedding per window of word pieces (each at most 510 long); windows of one batch
    /// are padded to the longest.
    pub fn embed(&self, windows: &[&[u32]]) -> Result<Vec<[f32; DIM]>, Error> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, mask) = self.batch(windows)?;
        let hidden = self.model.forward(&ids, &mask, &self.adapters).map_err(e("forward"))?;
        let rows: Vec<Vec<f32>> = pool(&hidden, &mask).and_then(|t| t.to_vec2()).map_err(e("pool"))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut out = [0f32; DIM];
                out.iter_mut().zip(r).for_each(|(o, x)| *o = x);
                out
            })
            .collect())
    }

    /// The encoder's input for `windows`: `[CLS] window [SEP]`, padded to the longest, and the
    /// mask (1 on real tokens).
    pub fn batch(&self, windows: &[&[u32]]) -> Result<(Tensor, Tensor), Error> {
        let longest = windows.iter().map(|w| w.len()).max().unwrap_or(0);
        let len = longest.min(510) + 2;
        let mut ids = Vec::with_capacity(windows.len() * len);
        let mut mask = Vec::with_capacity(windows.len() * len);
        for w in windows {
            let w = &w[..w.len().min(510)];
            ids.push(self.cls);
            ids.extend_from_slice(w);
            ids.push(self.sep);
            ids.extend(std::iter::repeat_n(0, len - w.len() - 2));
            mask.extend(std::iter::repeat_n(1u32, w.len() + 2));
            mask.extend(std::iter::repeat_n(0u32, len - w.len() - 2));
        }
        let dev = &Device::Cpu;
        let shape = (windows.len(), len);
        let ids = Tensor::from_vec(ids, shape, dev).map_err(e("input"))?;
        let mask = Tensor::from_vec(mask, shape, dev).map_err(e("input"))?;
        Ok((ids, mask))
    }

    pub fn model(&self) -> &Bert {
        &self.model
    }

    /// Apply a head's fine-tuning (its layers' low-rank updates) to every later embedding.
    pub fn set_adapters(&mut self, a: &Adapters) -> Result<(), Error> {
        self.adapters = a.tensors(&self.model).map_err(Error::Head)?;
        Ok(())
    }
}

/// Mean over each row's real tokens (`[CLS]` and `[SEP]` included, as sentence-transformers
/// does), L2-normalised: `(batch, len, hidden)` to `(batch, hidden)`. Differentiable.
pub fn pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let sum = hidden.broadcast_mul(&m)?.sum(1)?;
    let mean = sum.broadcast_div(&m.sum(1)?)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    mean.broadcast_div(&norm)
}

fn normalise(v: &mut [f32; DIM]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}
