//! Activation functions of the feed-forward layers, in place over a slice.

use crate::math;

/// The activation a model's `hidden_act` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x·Φ(x)` with the error function (`gelu`).
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Applies the activation to every element of `x`.
    pub fn apply(self, x: &mut [f32]) {
        match self {
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_tanh(x),
            Activation::Relu => relu(x),
        }
    }

    /// As [`Activation::apply`], split across the threads when called in the kernel pool.
    pub fn apply_split(self, x: &mut [f32]) {
        crate::threads::for_chunks(x, 1 << 14, |c| self.apply(c));
    }
}

#[cfg_attr(
    not(feature = "portable"),
    multiversion::multiversion(targets(
        "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+avx+fma",
        "x86_64+avx2+avx+fma",
    ))
)]
fn gelu(x: &mut [f32]) {
    for v in x.iter_mut() {
        let a = *v;
        *v = 0.5 * a * (1.0 + math::erf(a * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[cfg_attr(
    not(feature = "portable"),
    multiversion::multiversion(targets(
        "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+avx+fma",
        "x86_64+avx2+avx+fma",
    ))
)]
fn gelu_tanh(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for v in x.iter_mut() {
        let a = *v;
        *v = 0.5 * a * (1.0 + math::tanh(SQRT_2_OVER_PI * (a + 0.044_715 * a * a * a)));
    }
}

fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_is_exact_gelu() {
        let mut x: Vec<f32> = (-800..800).map(|i| i as f32 * 0.01).collect();
        let input = x.clone();
        Activation::Gelu.apply(&mut x);
        for (a, got) in input.iter().zip(&x) {
            let a64 = *a as f64;
            let want = 0.5 * a64 * (1.0 + libm::erf(a64 / std::f64::consts::SQRT_2));
            assert!(
                (*got as f64 - want).abs() < 1e-6,
                "gelu({a}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_tanh_and_relu() {
        let mut x = vec![-3.0f32, -0.5, 0.0, 0.5, 3.0];
        let mut r = x.clone();
        Activation::GeluTanh.apply(&mut x);
        let want = [-0.003_637_4, -0.154_286, 0.0, 0.345_714, 2.996_363];
        for (got, want) in x.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        Activation::Relu.apply(&mut r);
        assert_eq!(r, [0.0, 0.0, 0.0, 0.5, 3.0]);
    }
}
