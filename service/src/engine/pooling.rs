//! Pooling of token states into one sentence vector, and L2 normalisation.

use std::{fmt, str::FromStr};

use candle_core::{Tensor, D};

/// How token states become one sentence vector (sentence-transformers' `1_Pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average of the token states, padding excluded.
    Mean,
    /// The state of the first (`[CLS]`) token.
    Cls,
}

impl Pooling {
    /// Pools `hidden` (batch, seq, dim) under `mask` (batch, seq; 1 for real tokens) to (batch, dim).
    pub fn pool(self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
            Pooling::Mean => {
                let mask = mask.to_dtype(hidden.dtype())?;
                let summed = hidden.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)?;
                // An input always has at least [CLS] and [SEP], so the count is never 0; the clamp
                // only guards hand-made masks.
                let counts = mask.sum_keepdim(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)
            }
        }
    }

    /// Pools the token states of one input, `rows` (its real tokens only, `hidden` values each,
    /// token after token), to one vector.
    pub fn pool_rows(self, rows: &[f32], hidden: usize) -> Vec<f32> {
        match self {
            Pooling::Cls => rows[..hidden.min(rows.len())].to_vec(),
            Pooling::Mean => {
                let mut sum = vec![0f32; hidden];
                for row in rows.chunks_exact(hidden) {
                    sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                }
                let n = (rows.len() / hidden.max(1)).max(1) as f32;
                sum.iter_mut().for_each(|s| *s /= n);
                sum
            }
        }
    }

    /// The name used in APIs and configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a pooling name that is neither `mean` nor `cls`.
#[derive(Debug, thiserror::Error)]
#[error("unknown pooling {0:?}: expected \"mean\" or \"cls\"")]
pub struct UnknownPooling(pub String);

impl FromStr for Pooling {
    type Err = UnknownPooling;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            other => Err(UnknownPooling(other.to_string())),
        }
    }
}

/// Scales `v` to unit L2 norm; an all-zero vector stays zero.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn mean_pooling_ignores_padding() {
        let hidden = Tensor::new(&[[[1f32, 2.], [3., 4.], [100., 100.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu).unwrap();
        let pooled = Pooling::Mean.pool(&hidden, &mask).unwrap();
        assert_eq!(pooled.to_vec2::<f32>().unwrap(), vec![vec![2., 3.]]);
    }

    #[test]
    fn cls_pooling_takes_first_token() {
        let hidden = Tensor::new(&[[[1f32, 2.], [3., 4.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1]], &Device::Cpu).unwrap();
        let pooled = Pooling::Cls.pool(&hidden, &mask).unwrap();
        assert_eq!(pooled.to_vec2::<f32>().unwrap(), vec![vec![1., 2.]]);
    }

    #[test]
    fn pooling_rows_agrees_with_pooling_the_padded_tensor() {
        let rows = [1f32, 2., 3., 4., 5., 9.];
        let hidden =
            Tensor::new(&[[[1f32, 2.], [3., 4.], [5., 9.], [7., 7.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1, 0]], &Device::Cpu).unwrap();
        for pooling in [Pooling::Mean, Pooling::Cls] {
            let padded = pooling
                .pool(&hidden, &mask)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            assert_eq!(pooling.pool_rows(&rows, 2), padded[0], "{pooling}");
        }
        assert_eq!(Pooling::Mean.pool_rows(&rows, 2), vec![3., 5.]);
    }

    #[test]
    fn l2_normalize_gives_unit_rows_and_keeps_zero_rows() {
        let mut unit = [3f32, 4.];
        l2_normalize(&mut unit);
        assert_eq!(unit, [0.6, 0.8]);
        let mut zero = [0f32, 0.];
        l2_normalize(&mut zero);
        assert_eq!(zero, [0., 0.]);
    }

    #[test]
    fn parses_names_and_rejects_others() {
        assert_eq!("mean".parse::<Pooling>().unwrap(), Pooling::Mean);
        assert_eq!("cls".parse::<Pooling>().unwrap(), Pooling::Cls);
        assert!("max"
            .parse::<Pooling>()
            .unwrap_err()
            .to_string()
            .contains("max"));
    }
}
