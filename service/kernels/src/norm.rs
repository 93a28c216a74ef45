//! LayerNorm over rows, in place.

/// A LayerNorm's learned scale and shift.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// Scale per feature (`weight`, γ).
    pub gamma: Vec<f32>,
    /// Shift per feature (`bias`, β).
    pub beta: Vec<f32>,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    /// Normalises each row of `x` (rows of `gamma.len()` features) in place.
    /// In the kernel pool, blocks of rows are spread over its threads.
    pub fn apply(&self, x: &mut [f32]) {
        /// Rows per task: ~64 µs of work on 384 features.
        const ROWS: usize = 256;
        let width = self.gamma.len();
        crate::threads::for_chunks(x, ROWS * width, |rows| {
            for row in rows.chunks_exact_mut(width) {
                normalize_row(row, &self.gamma, &self.beta, self.eps);
            }
        });
    }
}

/// Sum of `x` in 16 independent lanes, so that it vectorises without reassociation rules.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += f(*v);
        }
    }
    acc.iter().sum::<f32>() + tail.iter().map(|v| f(*v)).sum::<f32>()
}

#[cfg_attr(
    not(feature = "portable"),
    multiversion::multiversion(targets(
        "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+avx+fma",
        "x86_64+avx2+avx+fma",
    ))
)]
fn normalize_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = lane_sum(row, |v| v) / n;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_layer_norm() {
        let width = 37;
        let ln = LayerNorm {
            gamma: (0..width).map(|i| 0.5 + i as f32 * 0.1).collect(),
            beta: (0..width).map(|i| i as f32 * -0.05).collect(),
            eps: 1e-12,
        };
        let mut x: Vec<f32> = (0..width * 3)
            .map(|i| ((i * 7919) % 101) as f32 * 0.37 - 12.0)
            .collect();
        let input = x.clone();
        ln.apply(&mut x);
        for (row_in, row_out) in input.chunks(width).zip(x.chunks(width)) {
            let mean = row_in.iter().map(|v| *v as f64).sum::<f64>() / width as f64;
            let var = row_in
                .iter()
                .map(|v| (*v as f64 - mean).powi(2))
                .sum::<f64>()
                / width as f64;
            for (i, (a, got)) in row_in.iter().zip(row_out).enumerate() {
                let want = (*a as f64 - mean) / (var + 1e-12).sqrt() * ln.gamma[i] as f64
                    + ln.beta[i] as f64;
                assert!((*got as f64 - want).abs() < 1e-5, "{got} vs {want}");
            }
        }
    }
}
