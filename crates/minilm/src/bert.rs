//! The BERT encoder's forward pass on the CPU, as Hugging Face's `BertModel` computes it
//! (without the pooler, which sentence-transformers does not use).

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Linear, Module};

use crate::Error;
use crate::config::BertConfig;
use crate::weights::Weights;

/// Layer normalisation over the last dimension, with the mean removed before the variance is
/// taken (two passes, as PyTorch does; more precise than one pass over sums and squares).
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(weights: &mut Weights, prefix: &str, size: usize, eps: f64) -> Result<Self, Error> {
        Ok(Self {
            weight: weights.tensor(&format!("{prefix}.weight"), &[size])?,
            bias: weights.tensor(&format!("{prefix}.bias"), &[size])?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normalised = centred.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        normalised
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

fn linear(weights: &mut Weights, prefix: &str, out: usize, inp: usize) -> Result<Linear, Error> {
    Ok(Linear::new(
        weights.tensor(&format!("{prefix}.weight"), &[out, inp])?,
        Some(weights.tensor(&format!("{prefix}.bias"), &[out])?),
    ))
}

/// One transformer layer.
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(weights: &mut Weights, index: usize, config: &BertConfig) -> Result<Self, Error> {
        let p = format!("encoder.layer.{index}");
        let h = config.hidden_size;
        let i = config.intermediate_size;
        let eps = config.layer_norm_eps;
        Ok(Self {
            query: linear(weights, &format!("{p}.attention.self.query"), h, h)?,
            key: linear(weights, &format!("{p}.attention.self.key"), h, h)?,
            value: linear(weights, &format!("{p}.attention.self.value"), h, h)?,
            attention_out: linear(weights, &format!("{p}.attention.output.dense"), h, h)?,
            attention_norm: LayerNorm::load(
                weights,
                &format!("{p}.attention.output.LayerNorm"),
                h,
                eps,
            )?,
            intermediate: linear(weights, &format!("{p}.intermediate.dense"), i, h)?,
            output: linear(weights, &format!("{p}.output.dense"), h, i)?,
            output_norm: LayerNorm::load(weights, &format!("{p}.output.LayerNorm"), h, eps)?,
        })
    }

    /// `x`: (batch, len, hidden); `bias`: (batch, 1, 1, len), 0 for tokens and a huge negative
    /// number for padding.
    fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        heads: usize,
        head_dim: usize,
    ) -> candle_core::Result<Tensor> {
        let (batch, len, hidden) = x.dims3()?;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((batch, len, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(bias)?)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, len, hidden))?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + x)?)?;
        let inner = self.intermediate.forward(&attended)?.gelu_erf()?;
        self.output_norm
            .forward(&(self.output.forward(&inner)? + attended)?)
    }
}

/// The encoder: embeddings and transformer layers.
pub(crate) struct Bert {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    /// Row 0 of the token-type embeddings: every token of a single text has type 0.
    token_type: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
}

impl Bert {
    /// Reads the encoder's weights.
    pub(crate) fn load(weights: &mut Weights, config: &BertConfig) -> Result<Self, Error> {
        let h = config.hidden_size;
        let word_embeddings =
            weights.tensor("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position_embeddings = weights.tensor(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let token_type = weights
            .tensor(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, h],
            )?
            .get(0)?;
        let embedding_norm =
            LayerNorm::load(weights, "embeddings.LayerNorm", h, config.layer_norm_eps)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(weights, i, config))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            word_embeddings,
            position_embeddings,
            token_type,
            embedding_norm,
            layers,
            heads: config.num_attention_heads,
            head_dim: config.head_dim(),
        })
    }

    /// Runs the encoder on `batch` texts padded to `len` tokens: `ids` and `mask` are row-major
    /// `batch × len` (mask 1 for a token, 0 for padding). Returns the last hidden states,
    /// row-major `batch × len × hidden`.
    pub(crate) fn forward(
        &self,
        ids: Vec<u32>,
        mask: &[bool],
        batch: usize,
        len: usize,
    ) -> candle_core::Result<Vec<f32>> {
        let device = Device::Cpu;
        let hidden = self.word_embeddings.dim(1)?;
        let ids = Tensor::from_vec(ids, batch * len, &device)?;
        let words = self
            .word_embeddings
            .index_select(&ids, 0)?
            .reshape((batch, len, hidden))?;
        let positions = self.position_embeddings.narrow(0, 0, len)?;
        let embedded = words
            .broadcast_add(&self.token_type)?
            .broadcast_add(&positions)?;
        let mut x = self.embedding_norm.forward(&embedded)?;
        // What Hugging Face adds to the attention scores: (1 - mask) × f32::MIN.
        let bias: Vec<f32> = mask
            .iter()
            .map(|&token| if token { 0.0 } else { f32::MIN })
            .collect();
        let bias = Tensor::from_vec(bias, (batch, 1, 1, len), &device)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias, self.heads, self.head_dim)?;
        }
        x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
    }
}
