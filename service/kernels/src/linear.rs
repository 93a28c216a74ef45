//! Dense layers: `y = x·Wᵀ + b` over a block of rows, bias and residual fused into the product.

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
use crate::skinny;
use crate::{
    activation::Activation,
    amx::AmxPanels,
    int8::{Int8Micro, Int8Panels, Int8Rows},
    panel::{Base, Finish, Micro, Panels},
    rows, threads,
};

thread_local! {
    /// Each thread's buffer of quantized input rows, reused from product to product.
    static QUANTIZED_ROWS: std::cell::RefCell<Int8Rows> = std::cell::RefCell::default();
}

/// How a layer writes its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `y = x·Wᵀ + b`.
    Overwrite,
    /// `y += x·Wᵀ + b`: the residual connection, without a separate pass.
    Accumulate,
}

/// The kernel a layer's products run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The weight packed once into panels for one of this crate's micro-kernels
    /// ([`crate::panel`]): the choice on CPUs with AVX2 + FMA or AVX-512.
    Panels(Micro),
    /// The weight kept in PyTorch's layout for the `gemm` crate (its AVX-512 kernels where
    /// present), with the skinny kernel for a few rows where AVX2 is present: the choice
    /// elsewhere (its NEON kernels on aarch64).
    Gemm,
    /// The weight quantized to int8 ([`crate::int8`]): opt-in, never chosen by itself.
    Int8(Int8Micro),
    /// The weight split into two bf16 halves for AMX tiles ([`crate::amx`]): f32 in and out,
    /// products within ~2⁻¹⁶ of f32 ones; where the CPU and OS run AMX.
    Amx,
}

impl Kernel {
    /// The kernel the process's configuration ([`crate::config`]) asks for, resolved on this
    /// CPU; [`Kernel::best`] when nothing is asked.
    pub fn detect() -> Self {
        crate::config::current().dense.resolve()
    }

    /// The fastest kernel on this CPU: AMX where the CPU and OS run it, else the panels on the
    /// fastest micro-kernel where that is AVX-512 or AVX2 + FMA, else `gemm`.
    pub fn best() -> Self {
        if crate::amx::available() {
            return Self::Amx;
        }
        match Micro::best() {
            Micro::Portable => Self::Gemm,
            micro => Self::Panels(micro),
        }
    }

    /// Its name: `gemm`, or `panels/` or `int8/` and the micro-kernel's.
    pub fn name(self) -> String {
        match self {
            Self::Gemm => "gemm".into(),
            Self::Panels(micro) => format!("panels/{}", micro.name()),
            Self::Int8(micro) => format!("int8/{}", micro.name()),
            Self::Amx => "amx/bf16x3".into(),
        }
    }
}

/// A layer's weight, in the layout its kernel reads.
#[derive(Debug, Clone)]
enum Weight {
    Panels(Panels),
    /// PyTorch's layout: one row of `inputs` per output. Measured against the transposed
    /// layout, `gemm` packs this one into its panels ~20% faster on single inputs.
    Torch(Vec<f32>),
    /// Quantized to int8.
    Int8(Int8Panels),
    /// Split for AMX tiles.
    Amx(AmxPanels),
}

/// A dense layer.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    /// A layer from a PyTorch-layout weight (outputs × inputs, row-major) and its bias, on the
    /// kernel [`Kernel::detect`] picks.
    ///
    /// # Panics
    /// When `weight` is not `bias.len() × inputs`.
    pub fn from_torch(weight: &[f32], bias: Vec<f32>, inputs: usize) -> Self {
        Self::with_kernel(weight, bias, inputs, Kernel::detect())
    }

    /// As [`Linear::from_torch`], on a chosen kernel.
    ///
    /// # Panics
    /// When `weight` is not `bias.len() × inputs`, or the kernel cannot run on this CPU.
    pub fn with_kernel(weight: &[f32], bias: Vec<f32>, inputs: usize, kernel: Kernel) -> Self {
        let outputs = bias.len();
        assert_eq!(
            weight.len(),
            outputs * inputs,
            "weight is not outputs × inputs"
        );
        let weight = match kernel {
            Kernel::Panels(micro) => {
                Weight::Panels(Panels::pack_for(weight, inputs, outputs, micro))
            }
            Kernel::Gemm => Weight::Torch(weight.to_vec()),
            Kernel::Int8(micro) => {
                Weight::Int8(Int8Panels::pack_for(weight, inputs, outputs, micro))
            }
            Kernel::Amx => {
                assert!(crate::amx::available(), "this CPU or OS does not run AMX");
                Weight::Amx(AmxPanels::pack(weight, inputs, outputs))
            }
        };
        Self {
            weight,
            bias,
            inputs,
            outputs,
        }
    }

    /// The kernel this layer runs on.
    pub fn kernel(&self) -> Kernel {
        match &self.weight {
            Weight::Panels(p) => Kernel::Panels(p.micro()),
            Weight::Torch(_) => Kernel::Gemm,
            Weight::Int8(q) => Kernel::Int8(q.micro()),
            Weight::Amx(_) => Kernel::Amx,
        }
    }

    /// The same layer with its weight quantized to int8, for the fastest int8 micro-kernel
    /// here (from the f32 weight: quantize a layer once, after [`Linear::concat`]).
    pub fn to_int8(&self) -> Self {
        Self::with_kernel(
            &self.torch_weight(),
            self.bias.clone(),
            self.inputs,
            Kernel::Int8(Int8Micro::best()),
        )
    }

    /// As [`Linear::to_int8`], smoothed for inputs whose largest magnitudes per input are
    /// `input_max` ([`Int8Panels::pack_smoothed`]).
    pub fn to_int8_smoothed(&self, input_max: &[f32], alpha: f32) -> Self {
        Self {
            weight: Weight::Int8(Int8Panels::pack_smoothed(
                &self.torch_weight(),
                self.inputs,
                self.outputs,
                input_max,
                alpha,
                Int8Micro::best(),
            )),
            bias: self.bias.clone(),
            inputs: self.inputs,
            outputs: self.outputs,
        }
    }

    /// The weight in PyTorch's layout.
    fn torch_weight(&self) -> Vec<f32> {
        match &self.weight {
            Weight::Panels(p) => p.unpack(),
            Weight::Torch(w) => w.clone(),
            Weight::Int8(q) => q.unpack(),
            Weight::Amx(a) => a.unpack(),
        }
    }

    /// One layer computing all of `parts` side by side (their outputs concatenated), e.g. the
    /// query, key and value projections as one product, on the first part's kernel.
    ///
    /// # Panics
    /// When the parts differ in inputs.
    pub fn concat(parts: &[Linear]) -> Self {
        let inputs = parts[0].inputs;
        assert!(
            parts.iter().all(|p| p.inputs == inputs),
            "parts differ in inputs"
        );
        let weight: Vec<f32> = parts.iter().flat_map(|p| p.torch_weight()).collect();
        let bias = parts.iter().flat_map(|p| p.bias.iter().copied()).collect();
        Self::with_kernel(&weight, bias, inputs, parts[0].kernel())
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
    /// Inside the kernel pool the product is split across its threads.
    ///
    /// # Panics
    /// When `x` and `y` do not hold the same number of rows of the right widths.
    pub fn forward(&self, x: &[f32], y: &mut [f32], output: Output) {
        self.forward_activated(x, y, output, None)
    }

    /// As [`Linear::forward`], then `activation` over the output: on panels (f32 and int8),
    /// fused into the product (each piece of output as soon as it is complete); on `gemm`, a
    /// pass split across the pool's threads.
    ///
    /// # Panics
    /// As [`Linear::forward`].
    pub fn forward_activated(
        &self,
        x: &[f32],
        y: &mut [f32],
        output: Output,
        activation: Option<Activation>,
    ) {
        let m = rows(x, self.inputs);
        assert_eq!(
            y.len(),
            m * self.outputs,
            "output rows do not match input rows"
        );
        // On panels (f32 and int8) the bias goes in as the product is written and the
        // activation runs on each block of rows while it is in L2: no passes of their own.
        let base = match output {
            Output::Overwrite => Base::Bias(&self.bias),
            Output::Accumulate => Base::OutputAndBias(&self.bias),
        };
        let finish = activation.map(|a| move |piece: &mut [f32]| a.apply(piece));
        let finish = finish.as_ref().map(|f| f as Finish<'_>);
        let weight = match &self.weight {
            Weight::Panels(panels) => return panels.product(x, y, base, true, finish),
            Weight::Amx(split) => return split.product(x, y, base, true, finish),
            Weight::Int8(quantized) => {
                // Taken out while in use, not borrowed: a thread waiting in the pool may run
                // another product meanwhile.
                let mut rows = QUANTIZED_ROWS.take();
                quantized.product(x, y, base, &mut rows, true, finish);
                QUANTIZED_ROWS.set(rows);
                return;
            }
            Weight::Torch(weight) => {
                self.write_bias(y, output);
                weight
            }
        };
        self.forward_gemm(weight, x, y);
        if let Some(activation) = activation {
            activation.apply_split(y);
        }
    }

    /// Writes the bias into each output row (`Overwrite`) or adds it (`Accumulate`).
    fn write_bias(&self, y: &mut [f32], output: Output) {
        for row in y.chunks_exact_mut(self.outputs) {
            match output {
                Output::Overwrite => row.copy_from_slice(&self.bias),
                Output::Accumulate => row.iter_mut().zip(&self.bias).for_each(|(v, b)| *v += b),
            }
        }
    }

    /// `y += x·Wᵀ` on `gemm` (the skinny kernel for a few rows).
    fn forward_gemm(&self, weight: &[f32], x: &[f32], y: &mut [f32]) {
        let m = rows(x, self.inputs);
        let (n, k) = (self.outputs, self.inputs);
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        if m <= skinny::MAX_ROWS && skinny::available() {
            self.forward_skinny(weight, x, m, y);
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
                weight.as_ptr(),
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
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    fn forward_skinny(&self, weight: &[f32], x: &[f32], m: usize, y: &mut [f32]) {
        let (n, k) = (self.outputs, self.inputs);
        let (x, w, y) = (
            x.as_ptr() as usize,
            weight.as_ptr() as usize,
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
        if crate::threads::splitting() && threads > 1 {
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

    use crate::test_values as values;

    /// Every kernel this CPU can run.
    fn kernels() -> Vec<Kernel> {
        let mut all = vec![Kernel::Gemm];
        for micro in Micro::ALL {
            if micro.available() {
                all.push(Kernel::Panels(micro));
            } else {
                println!("skipped: this CPU or build cannot run the {micro:?} micro-kernel");
            }
        }
        all
    }

    #[test]
    fn overwrite_and_accumulate_match_a_plain_product() {
        let (m, k, n) = (5, 19, 11);
        let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
        let want = naive(&x, &w, &b, k);
        for kernel in kernels() {
            let layer = Linear::with_kernel(&w, b.clone(), k, kernel);
            let mut y = vec![f32::NAN; m * n];
            layer.forward(&x, &mut y, Output::Overwrite);
            for (g, w) in y.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{kernel:?}");
            }
            let residual = values(m * n, 4);
            let mut y = residual.clone();
            layer.forward(&x, &mut y, Output::Accumulate);
            for ((g, w), r) in y.iter().zip(&want).zip(&residual) {
                assert!((g - (w + r)).abs() < 1e-4, "{kernel:?}");
            }
        }
    }

    #[test]
    fn few_and_many_rows_agree() {
        // On `gemm`, up to `skinny::MAX_ROWS` rows take the skinny kernel and more take
        // `gemm`; on panels, few rows split the panels across threads and more split the rows.
        // All must give the plain product, including widths that are not a multiple of eight.
        for (m, k, n, kernel) in [
            (1, 16, 7),
            (11, 384, 100),
            (16, 37, 9),
            (17, 384, 100),
            (40, 40, 13),
            (97, 800, 70),
        ]
        .into_iter()
        .flat_map(|shape| {
            kernels()
                .into_iter()
                .map(move |k| (shape.0, shape.1, shape.2, k))
        }) {
            let (x, w, b) = (values(m * k, 5), values(n * k, 6), values(n, 7));
            let layer = Linear::with_kernel(&w, b.clone(), k, kernel);
            let want = naive(&x, &w, &b, k);
            let mut y = vec![0f32; m * n];
            layer.forward(&x, &mut y, Output::Overwrite);
            for (g, w) in y.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-3,
                    "{kernel:?} m={m} k={k} n={n}: {g} vs {w}"
                );
            }
            let mut y = vec![0f32; m * n];
            threads::run(true, || layer.forward(&x, &mut y, Output::Overwrite));
            for (g, w) in y.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-3,
                    "{kernel:?} in the pool, m={m} k={k} n={n}"
                );
            }
        }
    }

    #[test]
    fn concatenated_layers_compute_each_part() {
        for kernel in kernels() {
            concatenated_on(kernel);
        }
    }

    fn concatenated_on(kernel: Kernel) {
        let (m, k) = (3, 8);
        let parts: Vec<Linear> = [4, 6, 5]
            .iter()
            .enumerate()
            .map(|(i, &n)| Linear::with_kernel(&values(n * k, i), values(n, 10 + i), k, kernel))
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
    fn an_activated_product_is_the_product_then_the_activation() {
        // Rows enough to split into blocks on panels, and an output large enough for `gemm`'s
        // activation pass to split across the pool.
        let (m, k, n) = (70, 64, 300);
        let (x, w, b) = (values(m * k, 8), values(n * k, 9), values(n, 10));
        for kernel in kernels() {
            let layer = Linear::with_kernel(&w, b.clone(), k, kernel);
            let mut want = vec![0f32; m * n];
            layer.forward(&x, &mut want, Output::Overwrite);
            Activation::Gelu.apply(&mut want);
            for parallel in [false, true] {
                let mut got = vec![0f32; m * n];
                threads::run(parallel, || {
                    layer.forward_activated(&x, &mut got, Output::Overwrite, Some(Activation::Gelu))
                });
                assert_eq!(got, want, "{kernel:?}, parallel {parallel}");
            }
        }
    }

    #[test]
    fn a_cloned_layer_computes_what_the_original_did() {
        // The clone's packed weight is a new allocation, which the micro-kernels read with
        // aligned loads; the original is dropped first so that nothing of it is read.
        let (m, k, n) = (20, 200, 150);
        let (x, w, b) = (values(m * k, 11), values(n * k, 12), values(n, 13));
        for kernel in kernels() {
            let layer = Linear::with_kernel(&w, b.clone(), k, kernel);
            let mut want = vec![0f32; m * n];
            layer.forward(&x, &mut want, Output::Overwrite);
            let mut clones = vec![layer.clone()];
            drop(layer);
            for _ in 0..8 {
                let next = clones.last().unwrap().clone();
                clones.push(next);
            }
            for clone in &clones {
                assert_eq!(clone.kernel(), kernel);
                let mut got = vec![0f32; m * n];
                threads::run(true, || clone.forward(&x, &mut got, Output::Overwrite));
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-4, "{kernel:?}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn large_products_in_the_pool_match_serial_ones() {
        let (m, k, n) = (64, 384, 384);
        let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
        for kernel in kernels() {
            let layer = Linear::with_kernel(&w, b.clone(), k, kernel);
            assert_eq!(layer.kernel(), kernel);
            let mut serial = vec![0f32; m * n];
            layer.forward(&x, &mut serial, Output::Overwrite);
            let mut parallel = vec![0f32; m * n];
            threads::run(true, || layer.forward(&x, &mut parallel, Output::Overwrite));
            for (a, b) in serial.iter().zip(&parallel) {
                assert!((a - b).abs() < 1e-4, "{kernel:?}");
            }
        }
    }

    #[test]
    fn an_int8_layer_overwrites_accumulates_and_activates_as_its_f32_one_within_quantization() {
        let (m, k, n) = (9, 384, 200);
        let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
        let f32_layer = Linear::with_kernel(&w, b.clone(), k, Kernel::best());
        let int8 = f32_layer.to_int8();
        assert_eq!(int8.kernel(), Kernel::Int8(Int8Micro::best()));
        assert_eq!((int8.inputs(), int8.outputs()), (k, n));
        let residual = values(m * n, 4);
        for (output, activation) in [
            (Output::Overwrite, None),
            (Output::Accumulate, None),
            (Output::Overwrite, Some(Activation::Gelu)),
        ] {
            let (mut want, mut got) = (residual.clone(), residual.clone());
            threads::run(true, || {
                f32_layer.forward_activated(&x, &mut want, output, activation);
                int8.forward_activated(&x, &mut got, output, activation);
            });
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 0.02 * scale,
                    "{output:?} {activation:?}: {g} vs {w}"
                );
            }
            assert_ne!(got, want, "{output:?}: the int8 product is not the f32 one");
        }
        // Dequantized, the weight is within half a step of the original everywhere.
        for (q, o) in int8.torch_weight().chunks_exact(k).zip(w.chunks_exact(k)) {
            let step = o.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
            assert!(q
                .iter()
                .zip(o)
                .all(|(q, o)| (q - o).abs() <= step / 2.0 + 1e-6));
        }
    }
}
