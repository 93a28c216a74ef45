//! Dense layers: `y = x·Wᵀ + b` over a block of rows, bias and residual fused into the product.

#[cfg(target_arch = "x86_64")]
use crate::skinny;
use crate::{rows, threads};

/// How a layer writes its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `y = x·Wᵀ + b`.
    Overwrite,
    /// `y += x·Wᵀ + b`: the residual connection, without a separate pass.
    Accumulate,
}

/// A dense layer, its weight in PyTorch's layout (one row of `inputs` per output).
///
/// Measured against the transposed layout, the `gemm` crate packs this one into its panels and
/// runs ~20% faster on single inputs (its column reads of a transposed weight stride by a row).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    /// A layer from a PyTorch-layout weight (outputs × inputs, row-major) and its bias.
    ///
    /// # Panics
    /// When `weight` is not `bias.len() × inputs`.
    pub fn from_torch(weight: &[f32], bias: Vec<f32>, inputs: usize) -> Self {
        let outputs = bias.len();
        assert_eq!(
            weight.len(),
            outputs * inputs,
            "weight is not outputs × inputs"
        );
        Self {
            weight: weight.to_vec(),
            bias,
            inputs,
            outputs,
        }
    }

    /// One layer computing all of `parts` side by side (their outputs concatenated), e.g. the
    /// query, key and value projections as one product.
    ///
    /// # Panics
    /// When the parts differ in inputs.
    pub fn concat(parts: &[Linear]) -> Self {
        let inputs = parts[0].inputs;
        assert!(
            parts.iter().all(|p| p.inputs == inputs),
            "parts differ in inputs"
        );
        Self {
            weight: parts
                .iter()
                .flat_map(|p| p.weight.iter().copied())
                .collect(),
            bias: parts.iter().flat_map(|p| p.bias.iter().copied()).collect(),
            inputs,
            outputs: parts.iter().map(|p| p.outputs).sum(),
        }
    }

    /// Width of an input row.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Width of an output row.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Applies the layer to the rows of `x` (each `inputs` wide), writing the rows of `y`.
    ///
    /// # Panics
    /// When `x` and `y` do not hold the same number of rows of the right widths.
    pub fn forward(&self, x: &[f32], y: &mut [f32], output: Output) {
        let m = rows(x, self.inputs);
        assert_eq!(
            y.len(),
            m * self.outputs,
            "output rows do not match input rows"
        );
        for row in y.chunks_exact_mut(self.outputs) {
            match output {
                Output::Overwrite => row.copy_from_slice(&self.bias),
                Output::Accumulate => row.iter_mut().zip(&self.bias).for_each(|(v, b)| *v += b),
            }
        }
        let (n, k) = (self.outputs, self.inputs);
        #[cfg(target_arch = "x86_64")]
        if m <= skinny::MAX_ROWS && skinny::available() {
            self.forward_skinny(x, m, y);
            return;
        }
        // SAFETY: the three buffers hold m×k, n×k and m×n elements (checked above and at
        // construction), row-major, and `y` does not alias `x` or the weight.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                y.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                self.weight.as_ptr(),
                k as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                threads::gemm_parallelism(m, n, k),
            );
        }
    }

    /// The product for a few rows; in the pool, the outputs are split across the threads.
    #[cfg(target_arch = "x86_64")]
    fn forward_skinny(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let (n, k) = (self.outputs, self.inputs);
        let (x, w, y) = (
            x.as_ptr() as usize,
            self.weight.as_ptr() as usize,
            y.as_mut_ptr() as usize,
        );
        // SAFETY: `available()` was checked; sizes as in `forward`; each task writes its own
        // output columns.
        let part = |outputs: std::ops::Range<usize>| unsafe {
            skinny::accumulate(
                x as *const f32,
                m,
                k,
                w as *const f32,
                outputs,
                y as *mut f32,
                n,
            )
        };
        let threads = rayon::current_num_threads();
        if rayon::current_thread_index().is_some() && threads > 1 {
            // Chunks of 48 outputs: a multiple of the kernel's 3, and enough chunks to balance.
            let chunks = n.div_ceil(48);
            rayon::prelude::ParallelIterator::for_each(
                rayon::prelude::IntoParallelIterator::into_par_iter(0..chunks),
                |c| part(c * 48..((c + 1) * 48).min(n)),
            );
        } else {
            part(0..n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], b: &[f32], inputs: usize) -> Vec<f32> {
        let outputs = b.len();
        x.chunks(inputs)
            .flat_map(|row| {
                (0..outputs).map(move |o| {
                    b[o] + row
                        .iter()
                        .zip(&w[o * inputs..(o + 1) * inputs])
                        .map(|(a, c)| a * c)
                        .sum::<f32>()
                })
            })
            .collect()
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn overwrite_and_accumulate_match_a_plain_product() {
        let (m, k, n) = (5, 19, 11);
        let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
        let layer = Linear::from_torch(&w, b.clone(), k);
        let want = naive(&x, &w, &b, k);
        let mut y = vec![f32::NAN; m * n];
        layer.forward(&x, &mut y, Output::Overwrite);
        for (g, w) in y.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4);
        }
        let residual = values(m * n, 4);
        let mut y = residual.clone();
        layer.forward(&x, &mut y, Output::Accumulate);
        for ((g, w), r) in y.iter().zip(&want).zip(&residual) {
            assert!((g - (w + r)).abs() < 1e-4);
        }
    }

    #[test]
    fn few_and_many_rows_agree() {
        // Up to `skinny::MAX_ROWS` rows take the skinny kernel, more take `gemm`: both must
        // give the plain product, including a width that is not a multiple of eight.
        for (m, k, n) in [
            (1, 16, 7),
            (11, 384, 100),
            (16, 37, 9),
            (17, 384, 100),
            (40, 40, 13),
        ] {
            let (x, w, b) = (values(m * k, 5), values(n * k, 6), values(n, 7));
            let layer = Linear::from_torch(&w, b.clone(), k);
            let want = naive(&x, &w, &b, k);
            let mut y = vec![0f32; m * n];
            layer.forward(&x, &mut y, Output::Overwrite);
            for (g, w) in y.iter().zip(&want) {
                assert!((g - w).abs() < 1e-3, "m={m} k={k} n={n}: {g} vs {w}");
            }
            let mut y = vec![0f32; m * n];
            threads::run(true, || layer.forward(&x, &mut y, Output::Overwrite));
            for (g, w) in y.iter().zip(&want) {
                assert!((g - w).abs() < 1e-3, "in the pool, m={m} k={k} n={n}");
            }
        }
    }

    #[test]
    fn concatenated_layers_compute_each_part() {
        let (m, k) = (3, 8);
        let parts: Vec<Linear> = [4, 6, 5]
            .iter()
            .enumerate()
            .map(|(i, &n)| Linear::from_torch(&values(n * k, i), values(n, 10 + i), k))
            .collect();
        let x = values(m * k, 7);
        let fused = Linear::concat(&parts);
        let mut y = vec![0f32; m * fused.outputs()];
        fused.forward(&x, &mut y, Output::Overwrite);
        let mut offset = 0;
        for p in &parts {
            let mut part = vec![0f32; m * p.outputs()];
            p.forward(&x, &mut part, Output::Overwrite);
            for r in 0..m {
                let got = &y[r * fused.outputs() + offset..][..p.outputs()];
                assert_eq!(got, &part[r * p.outputs()..(r + 1) * p.outputs()]);
            }
            offset += p.outputs();
        }
    }

    #[test]
    fn large_products_in_the_pool_match_serial_ones() {
        let (m, k, n) = (64, 384, 384);
        let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
        let layer = Linear::from_torch(&w, b, k);
        let mut serial = vec![0f32; m * n];
        layer.forward(&x, &mut serial, Output::Overwrite);
        let mut parallel = vec![0f32; m * n];
        threads::run(true, || layer.forward(&x, &mut parallel, Output::Overwrite));
        for (a, b) in serial.iter().zip(&parallel) {
            assert!((a - b).abs() < 1e-4);
        }
    }
}
