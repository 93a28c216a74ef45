//! BERT on this project's CPU kernels, over *packed* batches: the tokens of every input are laid
//! end to end (no padding), dense layers run once over all of them, and attention runs per input.
//! A batch of one 10-token and one 128-token text costs 138 token rows, not 256.

use std::{
    ops::Range,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

use akidb_kernels::{
    activation::Activation,
    attention::{attention, Heads},
    linear::{Linear, Output},
    norm::LayerNorm,
    threads,
};
use candle_core::{bail, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};

use crate::engine::{
    arch::Encoder,
    error::{EngineError, Result},
    layout::{ModelLayout, CONFIG_FILE},
    pooling::Pooling,
    quantization::lowest_between,
    tokenizer::TokenBatch,
};

/// One transformer layer.
struct Layer {
    /// Query, key and value projections as one product.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// A BERT encoder on packed batches.
pub struct PackedBert {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: Heads,
    activation: Activation,
    config: Config,
    device: Device,
    /// Idle workspaces: one per pass running at once.
    workspaces: Mutex<Vec<Workspace>>,
}

/// Buffers of one pass, reused by later passes.
///
/// Kept by the model, not per thread: a pool thread waiting inside one pass may run another
/// model's pass (work stealing), so a thread-local buffer could be borrowed twice.
#[derive(Default)]
struct Workspace {
    qkv: Vec<f32>,
    context: Vec<f32>,
    intermediate: Vec<f32>,
}

/// `buffer` resized to `len` (contents unspecified: every user overwrites it).
fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(len, 0.0);
    &mut buffer[..len]
}

fn tensor(vb: &VarBuilder, shape: &[usize], name: &str) -> candle_core::Result<Vec<f32>> {
    vb.get(shape, name)?.flatten_all()?.to_vec1::<f32>()
}

fn linear(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Linear> {
    let weight = tensor(&vb, &[outputs, inputs], "weight")?;
    let bias = tensor(&vb, &[outputs], "bias")?;
    Ok(Linear::from_torch(&weight, bias, inputs))
}

fn layer_norm(vb: VarBuilder, width: usize, eps: f64) -> candle_core::Result<LayerNorm> {
    Ok(LayerNorm {
        gamma: tensor(&vb, &[width], "weight")?,
        beta: tensor(&vb, &[width], "bias")?,
        eps: eps as f32,
    })
}

impl PackedBert {
    /// Loads `model.safetensors` with the shapes `config.json` gives.
    pub fn load(layout: &ModelLayout) -> Result<Self> {
        let config = super::config(layout)?;
        let device = Device::Cpu;
        let (hidden, heads) = (config.hidden_size, config.num_attention_heads);
        if heads == 0 || hidden % heads != 0 {
            return Err(EngineError::invalid(
                layout.file(CONFIG_FILE),
                format!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}"),
            ));
        }
        let vb = super::weights(layout, &config, &device, candle_core::DType::F32)?;
        let built = Self::build(&vb, &config).map_err(|e| super::corrupt(layout, e))?;
        Ok(built)
    }

    /// The same encoder with every dense layer's weight quantized to int8
    /// ([`akidb_kernels::int8`]); embeddings, LayerNorms and attention stay in f32.
    ///
    /// The query/key/value projection's input, a LayerNorm's output, has a few channels far
    /// larger than the rest, which one scale per row quantizes badly (all-MiniLM-L6-v2's 36
    /// reference items: lowest cosine 0.9836 quantized plainly, 0.9906 left in f32). So it is
    /// smoothed first (SmoothQuant): each channel's range is measured on `calibration` in f32
    /// and part of it (`α` in log scale) moves into the weight. The best `α` differs from model
    /// to model: each of [`SMOOTHING_ALPHAS`] is tried on `calibration` and the one whose
    /// vectors stay closest to f32 is kept, unless they stay further than
    /// [`SMOOTHING_MIN_COSINE`], where the projection stays in f32.
    pub fn into_int8(self, calibration: &TokenBatch) -> Result<Self> {
        self.into_int8_keeping(calibration, SMOOTHING_MIN_COSINE)
    }

    /// [`PackedBert::into_int8`], quantizing the query/key/value projection only when its
    /// vectors keep `min_cosine` to f32.
    fn into_int8_keeping(mut self, calibration: &TokenBatch, min_cosine: f32) -> Result<Self> {
        let (reference, input_max) = self.calibrate(calibration)?;
        for layer in &mut self.layers {
            for linear in [
                &mut layer.attention_out,
                &mut layer.intermediate,
                &mut layer.output,
            ] {
                *linear = linear.to_int8();
            }
        }
        let f32_qkv: Vec<Linear> = self.layers.iter().map(|l| l.qkv.clone()).collect();
        // The closest so far: its strength, its lowest cosine, its projections.
        let mut best: Option<(f32, f32, Vec<Linear>)> = None;
        for &alpha in &SMOOTHING_ALPHAS {
            for (layer, (qkv, input_max)) in
                self.layers.iter_mut().zip(f32_qkv.iter().zip(&input_max))
            {
                layer.qkv = qkv.to_int8_smoothed(input_max, alpha);
            }
            let lowest = lowest_between(&self.calibrate(calibration)?.0, &reference);
            tracing::debug!(alpha, lowest, "int8 query/key/value smoothing tried");
            if best.as_ref().is_none_or(|(_, b, _)| lowest > *b) {
                let tried = self.layers.iter().map(|l| l.qkv.clone()).collect();
                best = Some((alpha, lowest, tried));
            }
        }
        let kept = match best {
            Some((alpha, lowest, smoothed)) if lowest >= min_cosine => {
                tracing::info!(alpha, lowest, "int8 query/key/value projection smoothed");
                smoothed
            }
            other => {
                tracing::info!(
                    lowest = other.map(|(_, l, _)| l),
                    "int8: the query/key/value projection stays in f32 (smoothing fell short)"
                );
                f32_qkv
            }
        };
        for (layer, qkv) in self.layers.iter_mut().zip(kept) {
            layer.qkv = qkv;
        }
        Ok(self)
    }

    /// One vector per input of `batch` (its token states' mean, in this encoder's precision),
    /// and, per layer, the largest magnitude of each channel of the query/key/value
    /// projection's input over the batch's tokens.
    fn calibrate(&self, batch: &TokenBatch) -> Result<Calibration> {
        let hidden = self.config.hidden_size;
        let (mut x, ranges) = self.embedded(batch)?;
        let mut input_max = vec![vec![0f32; hidden]; self.layers.len()];
        let mut ws = Workspace::default();
        threads::serial(|| self.encode(&mut x, &ranges, &mut ws, Some(&mut input_max)));
        let vectors = ranges
            .iter()
            .map(|r| Pooling::Mean.pool_rows(&x[r.start * hidden..r.end * hidden], hidden))
            .collect();
        Ok((vectors, input_max))
    }

    fn build(vb: &VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        let emb = vb.pp("embeddings");
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp(format!("encoder.layer.{i}"));
                let att = vb.pp("attention");
                let parts =
                    ["query", "key", "value"].map(|p| linear(att.pp("self").pp(p), hidden, hidden));
                let [q, k, v] = parts;
                Ok(Layer {
                    qkv: Linear::concat(&[q?, k?, v?]),
                    attention_out: linear(att.pp("output.dense"), hidden, hidden)?,
                    attention_norm: layer_norm(att.pp("output.LayerNorm"), hidden, eps)?,
                    intermediate: linear(
                        vb.pp("intermediate.dense"),
                        hidden,
                        config.intermediate_size,
                    )?,
                    output: linear(vb.pp("output.dense"), config.intermediate_size, hidden)?,
                    output_norm: layer_norm(vb.pp("output.LayerNorm"), hidden, eps)?,
                })
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            word: tensor(&emb, &[config.vocab_size, hidden], "word_embeddings.weight")?,
            position: tensor(
                &emb,
                &[config.max_position_embeddings, hidden],
                "position_embeddings.weight",
            )?,
            token_type: tensor(
                &emb,
                &[config.type_vocab_size, hidden],
                "token_type_embeddings.weight",
            )?,
            embedding_norm: layer_norm(emb.pp("LayerNorm"), hidden, eps)?,
            layers,
            heads: Heads {
                count: config.num_attention_heads,
                dim: hidden / config.num_attention_heads,
            },
            activation: match config.hidden_act {
                HiddenAct::Gelu => Activation::Gelu,
                HiddenAct::GeluApproximate => Activation::GeluTanh,
                HiddenAct::Relu => Activation::Relu,
            },
            config: config.clone(),
            device: Device::Cpu,
            workspaces: Mutex::default(),
        })
    }

    /// Token states of the inputs of `batch`, packed: the rows of input *i* are `ranges[i]`.
    fn packed_states(
        &self,
        batch: &TokenBatch,
    ) -> candle_core::Result<(Vec<f32>, Vec<Range<usize>>)> {
        let hidden = self.config.hidden_size;
        let (mut x, ranges) = self.embedded(batch)?;
        let parts = parts(&ranges, threads::count());
        if parts.len() > 1 {
            // Enough inputs to give every pool thread whole inputs: each part runs every layer
            // on its own thread, with no wait between the threads until the pass ends.
            let mut pieces = Vec::with_capacity(parts.len());
            let mut rest = x.as_mut_slice();
            for part in &parts {
                let first = ranges[part.start].start;
                let rows = ranges[part.end - 1].end - first;
                let (piece, tail) = rest.split_at_mut(rows * hidden);
                rest = tail;
                let local: Vec<Range<usize>> = ranges[part.clone()]
                    .iter()
                    .map(|r| r.start - first..r.end - first)
                    .collect();
                pieces.push((piece, local));
            }
            // A part whose thread was shared with other work (the server's I/O, a neighbour)
            // falls behind: once one part is done, the rest split their kernels over the pool,
            // so that the free thread takes a share instead of waiting.
            let free = AtomicBool::new(false);
            threads::run(true, || {
                use rayon::prelude::*;
                pieces.into_par_iter().for_each(|(piece, local)| {
                    let mut ws = self.idle_workspaces().pop().unwrap_or_default();
                    threads::serial_until(&free, || self.encode(piece, &local, &mut ws, None));
                    free.store(true, Ordering::Release);
                    self.idle_workspaces().push(ws);
                });
            });
        } else {
            // Every pass goes to the pool: measured on 2 cores, even one 10-token input runs
            // 1.6× faster split across it (both cores stream the weights).
            let mut ws = self.idle_workspaces().pop().unwrap_or_default();
            threads::run(true, || self.encode(&mut x, &ranges, &mut ws, None));
            self.idle_workspaces().push(ws);
        }
        Ok((x, ranges))
    }

    /// The embeddings of `batch`'s tokens (before their LayerNorm), packed, and each input's
    /// rows.
    fn embedded(&self, batch: &TokenBatch) -> candle_core::Result<(Vec<f32>, Vec<Range<usize>>)> {
        let hidden = self.config.hidden_size;
        let mut ranges = Vec::with_capacity(batch.len());
        let mut start = 0;
        for &len in &batch.lengths {
            if len > self.config.max_position_embeddings {
                bail!(
                    "an input of {len} tokens exceeds the model's {} positions",
                    self.config.max_position_embeddings
                );
            }
            ranges.push(start..start + len);
            start += len;
        }
        let tokens = start;
        let mut x = vec![0f32; tokens * hidden];
        for (b, range) in ranges.iter().enumerate() {
            let row = b * batch.seq_len;
            for (pos, t) in range.clone().enumerate() {
                let (id, ty) = (
                    batch.ids[row + pos] as usize,
                    batch.type_ids[row + pos] as usize,
                );
                if id >= self.config.vocab_size || ty >= self.config.type_vocab_size {
                    bail!("token id {id} or type id {ty} is outside the model's tables");
                }
                let out = &mut x[t * hidden..(t + 1) * hidden];
                let w = &self.word[id * hidden..(id + 1) * hidden];
                let p = &self.position[pos * hidden..(pos + 1) * hidden];
                let y = &self.token_type[ty * hidden..(ty + 1) * hidden];
                for (((o, w), p), y) in out.iter_mut().zip(w).zip(p).zip(y) {
                    *o = w + p + y;
                }
            }
        }
        Ok((x, ranges))
    }

    fn idle_workspaces(&self) -> std::sync::MutexGuard<'_, Vec<Workspace>> {
        // A panic in a pass cannot leave a workspace half-updated in the list (it is out of the
        // list while in use), so a poisoned lock is still sound.
        self.workspaces.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the embedding LayerNorm and every layer over the packed rows `x`, in place; kernels
    /// split their work across the pool where `threads::splitting` says so. With `input_max`,
    /// each layer's query/key/value input raises that layer's per-channel maxima there.
    fn encode(
        &self,
        x: &mut [f32],
        ranges: &[Range<usize>],
        ws: &mut Workspace,
        mut input_max: Option<&mut Vec<Vec<f32>>>,
    ) {
        let hidden = self.config.hidden_size;
        let tokens = x.len() / hidden;
        self.embedding_norm.apply(x);
        for (index, layer) in self.layers.iter().enumerate() {
            if let Some(maxima) = input_max.as_deref_mut() {
                for row in x.chunks_exact(hidden) {
                    for (m, v) in maxima[index].iter_mut().zip(row) {
                        *m = m.max(v.abs());
                    }
                }
            }
            let qkv = sized(&mut ws.qkv, tokens * layer.qkv.outputs());
            layer.qkv.forward(x, qkv, Output::Overwrite);
            let context = sized(&mut ws.context, tokens * hidden);
            attention(qkv, ranges, self.heads, context, threads::splitting());
            layer.attention_out.forward(context, x, Output::Accumulate);
            layer.attention_norm.apply(x);
            let inner = sized(&mut ws.intermediate, tokens * layer.intermediate.outputs());
            layer.intermediate.forward_activated(
                x,
                inner,
                Output::Overwrite,
                Some(self.activation),
            );
            layer.output.forward(inner, x, Output::Accumulate);
            layer.output_norm.apply(x);
        }
    }
}

/// What [`PackedBert::calibrate`] measures: one vector per input, and per layer the largest
/// magnitude of each channel of the query/key/value projection's input.
type Calibration = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// SmoothQuant's migration strengths tried for the query/key/value input: 0.5 moves half of
/// each channel's range (in log scale) into the weight, 0.9 nearly all of it.
const SMOOTHING_ALPHAS: [f32; 5] = [0.5, 0.6, 0.7, 0.8, 0.9];

/// The lowest cosine to f32 on the smoothing texts a smoothed query/key/value projection must
/// keep to be quantized: what int8 promises (which the model is checked against again, on other
/// texts, once loaded).
const SMOOTHING_MIN_COSINE: f32 = 0.99;

/// The inputs of a pass cut into one contiguous part per pool thread, of about equal tokens;
/// one part, the whole pass, when there are fewer inputs than threads or the inputs cannot be
/// shared out evenly (one long text among short ones would run on one thread alone, at half
/// the speed the whole pass runs split product by product).
///
/// Measured on 2 cores (`docs/BENCHMARKS.md`): parts that each run every layer on one thread
/// beat every product split across the threads by 13–15% at 8 and 32 inputs of 10 tokens in
/// process, and hold 1,800 req/s served where the split held under 1,700; two parts per thread
/// did as well in process and worse served (each part streams the weights once more).
fn parts(ranges: &[Range<usize>], threads: usize) -> Vec<Range<usize>> {
    if threads < 2 || ranges.len() < threads {
        #[allow(clippy::single_range_in_vec_init)] // one part: the whole pass
        return vec![0..ranges.len()];
    }
    let total = ranges.last().map_or(0, |r| r.end);
    let mut parts = Vec::with_capacity(threads);
    let mut start = 0;
    for k in 1..threads {
        // The cut (after `end` inputs) nearest an even share, leaving an input for each part
        // still to come.
        let target = total * k / threads;
        let end = (start + 1..=ranges.len() - (threads - k))
            .min_by_key(|&end| ranges[end - 1].end.abs_diff(target))
            .unwrap_or(start + 1);
        parts.push(start..end);
        start = end;
    }
    parts.push(start..ranges.len());
    let tokens = |part: &Range<usize>| ranges[part.end - 1].end - ranges[part.start].start;
    let largest = parts.iter().map(tokens).max().unwrap_or(0);
    // Parts at most a quarter over an even share; else the threads would wait for one.
    if 4 * threads * largest > 5 * total {
        #[allow(clippy::single_range_in_vec_init)] // one part: the whole pass
        return vec![0..ranges.len()];
    }
    parts
}

impl Encoder for PackedBert {
    fn forward(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (n, seq_len) = ids.dims2()?;
        let mask = mask.to_vec2::<u32>()?;
        let lengths: Vec<usize> = mask
            .iter()
            .map(|m| m.iter().take_while(|&&v| v == 1).count())
            .collect();
        let batch = TokenBatch {
            ids: ids.flatten_all()?.to_vec1()?,
            type_ids: type_ids.flatten_all()?.to_vec1()?,
            mask: mask.concat(),
            lengths,
            seq_len,
        };
        let hidden = self.config.hidden_size;
        let (packed, ranges) = self.packed_states(&batch)?;
        let mut padded = vec![0f32; n * seq_len * hidden];
        for (b, range) in ranges.iter().enumerate() {
            let rows = &packed[range.start * hidden..range.end * hidden];
            padded[b * seq_len * hidden..][..rows.len()].copy_from_slice(rows);
        }
        Tensor::from_vec(padded, (n, seq_len, hidden), &self.device)
    }

    fn pooled(
        &self,
        batch: &TokenBatch,
        pooling: &[Pooling],
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let hidden = self.config.hidden_size;
        let (states, ranges) = self.packed_states(batch)?;
        Ok(ranges
            .iter()
            .zip(pooling)
            .map(|(range, pooling)| {
                pooling.pool_rows(&states[range.start * hidden..range.end * hidden], hidden)
            })
            .collect())
    }

    fn skips_padding(&self) -> bool {
        true
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn pad_token_id(&self) -> u32 {
        self.config.pad_token_id as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packed row ranges of inputs of these token counts.
    fn ranges(lengths: &[usize]) -> Vec<Range<usize>> {
        let mut start = 0;
        lengths
            .iter()
            .map(|&len| {
                start += len;
                start - len..start
            })
            .collect()
    }

    fn tokens(ranges: &[Range<usize>], part: &Range<usize>) -> usize {
        ranges[part.clone()].iter().map(|r| r.len()).sum()
    }

    #[test]
    fn a_pass_is_cut_into_one_contiguous_part_per_thread_of_about_equal_tokens() {
        for (lengths, threads) in [
            (vec![10; 32], 2),
            (vec![10; 8], 4),
            (vec![128, 10, 10, 10, 10, 128], 2),
            (vec![4, 5, 6], 3),
            (vec![10, 10, 10, 10, 10, 10, 128, 128, 128], 2),
        ] {
            let ranges = ranges(&lengths);
            let parts = parts(&ranges, threads);
            assert_eq!(parts.len(), threads, "{lengths:?} on {threads}");
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts.last().map(|p| p.end), Some(lengths.len()));
            assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
            assert!(parts.iter().all(|p| !p.is_empty()), "{parts:?}");
        }
        let even = ranges(&[10; 32]);
        let halves = parts(&even, 2);
        assert_eq!(tokens(&even, &halves[0]), tokens(&even, &halves[1]));
        let long_ends = ranges(&[128, 10, 10, 10, 10, 128]);
        assert_eq!(parts(&long_ends, 2), [0..3, 3..6]);
    }

    /// A two-layer BERT of width 32 with weights drawn from a fixed sequence.
    fn tiny_bert() -> PackedBert {
        let config: Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 40, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0, "max_position_embeddings": 16, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "classifier_dropout": null, "model_type": "bert"
        }))
        .unwrap();
        let mut tensors = std::collections::HashMap::new();
        let mut seed = 1u64;
        let mut put = |name: String, shape: &[usize], around: f32| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    around + ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4
                })
                .collect();
            tensors.insert(name, Tensor::from_vec(values, shape, &Device::Cpu).unwrap());
        };
        let (h, i) = (32, 64);
        put("embeddings.word_embeddings.weight".into(), &[40, h], 0.0);
        put(
            "embeddings.position_embeddings.weight".into(),
            &[16, h],
            0.0,
        );
        put(
            "embeddings.token_type_embeddings.weight".into(),
            &[2, h],
            0.0,
        );
        for layer in 0..2 {
            let p = format!("encoder.layer.{layer}");
            for part in ["query", "key", "value"] {
                put(format!("{p}.attention.self.{part}.weight"), &[h, h], 0.0);
                put(format!("{p}.attention.self.{part}.bias"), &[h], 0.0);
            }
            put(format!("{p}.attention.output.dense.weight"), &[h, h], 0.0);
            put(format!("{p}.attention.output.dense.bias"), &[h], 0.0);
            put(format!("{p}.intermediate.dense.weight"), &[i, h], 0.0);
            put(format!("{p}.intermediate.dense.bias"), &[i], 0.0);
            put(format!("{p}.output.dense.weight"), &[h, i], 0.0);
            put(format!("{p}.output.dense.bias"), &[h], 0.0);
        }
        let norms = ["embeddings.LayerNorm".to_string()]
            .into_iter()
            .chain((0..2).flat_map(|l| {
                [
                    format!("encoder.layer.{l}.attention.output.LayerNorm"),
                    format!("encoder.layer.{l}.output.LayerNorm"),
                ]
            }));
        for norm in norms {
            put(format!("{norm}.weight"), &[h], 1.0);
            put(format!("{norm}.bias"), &[h], 0.0);
        }
        let vb = VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu);
        PackedBert::build(&vb, &config).unwrap()
    }

    /// Three inputs of 3, 5 and 2 tokens.
    fn batch() -> TokenBatch {
        batch_of(vec![3, 5, 2])
    }

    /// Inputs of `lengths` tokens.
    fn batch_of(lengths: Vec<usize>) -> TokenBatch {
        let seq_len = lengths.iter().copied().max().unwrap_or(0);
        let mut ids = vec![0u32; lengths.len() * seq_len];
        let mut mask = vec![0u32; ids.len()];
        for (b, &len) in lengths.iter().enumerate() {
            for t in 0..len {
                ids[b * seq_len + t] = (1 + 7 * b + 3 * t) as u32 % 40;
                mask[b * seq_len + t] = 1;
            }
        }
        TokenBatch {
            type_ids: vec![0; ids.len()],
            ids,
            mask,
            lengths,
            seq_len,
        }
    }

    fn qkv_in_int8(bert: &PackedBert) -> Vec<bool> {
        bert.layers
            .iter()
            .map(|l| matches!(l.qkv.kernel(), akidb_kernels::linear::Kernel::Int8(_)))
            .collect()
    }

    #[test]
    fn int8_quantizes_the_query_key_value_projection_only_when_smoothing_keeps_the_cosine() {
        let kept = tiny_bert().into_int8_keeping(&batch(), -1.0).unwrap();
        assert_eq!(qkv_in_int8(&kept), [true, true]);
        let refused = tiny_bert().into_int8_keeping(&batch(), 1.5).unwrap();
        assert_eq!(qkv_in_int8(&refused), [false, false]);
        for bert in [&kept, &refused] {
            assert!(bert
                .layers
                .iter()
                .all(|l| matches!(l.output.kernel(), akidb_kernels::linear::Kernel::Int8(_))));
        }
        // Either way the vectors stay close to f32's.
        let reference = tiny_bert().calibrate(&batch()).unwrap().0;
        for bert in [&kept, &refused] {
            let lowest = lowest_between(&bert.calibrate(&batch()).unwrap().0, &reference);
            assert!(lowest > 0.99 && lowest < 1.0, "{lowest}");
        }
    }

    #[test]
    fn a_part_finished_by_the_whole_pool_has_the_bits_of_one_finished_on_its_thread() {
        // Enough rows (200) that the products split across the pool once they may.
        let bert = tiny_bert();
        let batch = batch_of(vec![5; 40]);
        let encoded = |helped: bool| {
            let (mut x, ranges) = bert.embedded(&batch).unwrap();
            let mut ws = Workspace::default();
            let encode = || bert.encode(&mut x, &ranges, &mut ws, None);
            if helped {
                let free = AtomicBool::new(true);
                threads::run(true, || threads::serial_until(&free, encode));
            } else {
                threads::serial(encode);
            }
            x
        };
        let (alone, helped) = (encoded(false), encoded(true));
        assert!(alone.iter().all(|v| v.is_finite()));
        assert_eq!(
            alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            helped.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "the vectors must not depend on which thread computed what"
        );
    }

    #[test]
    fn fewer_inputs_than_threads_one_thread_or_uneven_inputs_make_one_part() {
        for (lengths, threads) in [
            (vec![10; 3], 4),
            (vec![10; 32], 1),
            (vec![10], 2),
            // One long text among short ones: it would hold one thread while the other idles.
            (vec![10, 10, 128], 2),
            (vec![1, 1, 500], 2),
        ] {
            let whole = parts(&ranges(&lengths), threads);
            assert_eq!(whole.len(), 1, "{lengths:?} on {threads}");
            assert_eq!(whole[0], 0..lengths.len());
        }
    }
}
