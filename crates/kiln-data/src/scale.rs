//! Feature scaling: fitted on the training split, applied to any split or batch, saved with a
//! model as JSON.
//!
//! ```json
//! {"kind":"z-score","mean":[0.1308599],"std":[0.30801556]}
//! ```

use std::path::Path;

use burn::tensor::{Tensor, TensorData};

use crate::dataset::{ImageDataset, Split};
use crate::error::{DataError, Result, io_err, one_line};

/// Which scaling to fit (the parameter-free [`Scaler`] variants need no fitting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleKind {
    /// Values unchanged.
    Identity,
    /// Per-channel `(x - min) / (max - min)`: the training split spans `[0, 1]`.
    MinMax,
    /// Per-channel `(x - mean) / std`: the training split has mean 0 and standard deviation 1.
    ZScore,
    /// `ln(1 + x)` element-wise.
    Log1p,
    /// `1 - e^(-x)` element-wise.
    OneMinusExp,
}

impl ScaleKind {
    /// The name `FromStr` accepts and `Display` prints.
    pub fn name(self) -> &'static str {
        match self {
            ScaleKind::Identity => "none",
            ScaleKind::MinMax => "minmax",
            ScaleKind::ZScore => "zscore",
            ScaleKind::Log1p => "log",
            ScaleKind::OneMinusExp => "exp",
        }
    }
}

impl std::fmt::Display for ScaleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ScaleKind {
    type Err = DataError;

    /// Accepts `none`/`identity`, `minmax`/`min-max`, `zscore`/`z-score`/`standard`,
    /// `log`/`log1p`, `exp`/`1-exp`/`one-minus-exp` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "identity" => Ok(ScaleKind::Identity),
            "minmax" | "min-max" => Ok(ScaleKind::MinMax),
            "zscore" | "z-score" | "standard" => Ok(ScaleKind::ZScore),
            "log" | "log1p" => Ok(ScaleKind::Log1p),
            "exp" | "1-exp" | "one-minus-exp" => Ok(ScaleKind::OneMinusExp),
            other => Err(DataError::InvalidArgument(format!(
                "unknown scaling {other:?}; use one of none, minmax, zscore, log, exp"
            ))),
        }
    }
}

/// A fitted feature scaling, applied to pixel values (`[0, 1]` as the readers give them).
///
/// Serialises (serde) as a tagged JSON object, so that it can be saved next to a model's weights
/// and applied unchanged at inference.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Scaler {
    /// Values unchanged.
    Identity,
    /// `(x - min[c]) / (max[c] - min[c])` for channel `c`.
    MinMax {
        /// Per-channel minimum of the training split.
        min: Vec<f32>,
        /// Per-channel maximum of the training split (`min + 1` where the channel is constant).
        max: Vec<f32>,
    },
    /// `(x - mean[c]) / std[c]` for channel `c`.
    ZScore {
        /// Per-channel mean of the training split.
        mean: Vec<f32>,
        /// Per-channel population standard deviation of the training split (1 where the
        /// channel is constant).
        std: Vec<f32>,
    },
    /// `ln(1 + x)`.
    Log1p,
    /// `1 - e^(-x)`.
    OneMinusExp,
}

impl Scaler {
    /// Fits a scaler of `kind` on `train`, which must be the training split (fitting on
    /// validation or test data leaks them into the model); any split can then be scaled.
    pub fn fit(kind: ScaleKind, train: &ImageDataset) -> Result<Self> {
        if train.split() != Split::Train {
            return Err(DataError::InvalidArgument(format!(
                "a scaler is fitted on the train split only, not on the {} split",
                train.split()
            )));
        }
        if train.is_empty() && matches!(kind, ScaleKind::MinMax | ScaleKind::ZScore) {
            return Err(DataError::InvalidArgument("cannot fit a scaler on an empty dataset".into()));
        }
        Ok(match kind {
            ScaleKind::Identity => Scaler::Identity,
            ScaleKind::Log1p => Scaler::Log1p,
            ScaleKind::OneMinusExp => Scaler::OneMinusExp,
            ScaleKind::MinMax => {
                let (min, mut max) = train.channel_min_max();
                for (hi, lo) in max.iter_mut().zip(&min) {
                    if *hi <= *lo {
                        *hi = *lo + 1.0;
                    }
                }
                Scaler::MinMax { min, max }
            }
            ScaleKind::ZScore => {
                let (mean, std) = train.channel_stats();
                Scaler::ZScore {
                    mean: mean.iter().map(|&m| m as f32).collect(),
                    std: std.iter().map(|&s| if s > 1e-12 { s as f32 } else { 1.0 }).collect(),
                }
            }
        })
    }

    /// The kind of this scaler.
    pub fn kind(&self) -> ScaleKind {
        match self {
            Scaler::Identity => ScaleKind::Identity,
            Scaler::MinMax { .. } => ScaleKind::MinMax,
            Scaler::ZScore { .. } => ScaleKind::ZScore,
            Scaler::Log1p => ScaleKind::Log1p,
            Scaler::OneMinusExp => ScaleKind::OneMinusExp,
        }
    }

    /// The channel count the scaler was fitted on (`None` for the element-wise kinds).
    pub fn channels(&self) -> Option<usize> {
        match self {
            Scaler::MinMax { min, .. } => Some(min.len()),
            Scaler::ZScore { mean, .. } => Some(mean.len()),
            _ => None,
        }
    }

    /// Per-channel `(shift, factor)` with `y = (x - shift) * factor`, for the affine kinds.
    fn affine(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        match self {
            Scaler::MinMax { min, max } => {
                Some((min.clone(), min.iter().zip(max).map(|(lo, hi)| 1.0 / (hi - lo)).collect()))
            }
            Scaler::ZScore { mean, std } => Some((mean.clone(), std.iter().map(|s| 1.0 / s).collect())),
            _ => None,
        }
    }

    fn check_channels(&self, c: usize) -> Result<()> {
        match self.channels() {
            Some(k) if k != c => Err(DataError::InvalidArgument(format!(
                "the scaler was fitted on {k}-channel images, not {c}-channel ones"
            ))),
            _ => Ok(()),
        }
    }

    /// Scales images on the CPU, in place: `data` holds any number of `[C, H, W]` images
    /// (`shape = [C, H, W]`). Errors when `C` is not the fitted channel count or `data` is not
    /// a whole number of images.
    pub fn apply_images(&self, data: &mut [f32], [c, h, w]: [usize; 3]) -> Result<()> {
        self.check_channels(c)?;
        let hw = h * w;
        if hw == 0 || c == 0 || data.len() % (c * hw) != 0 {
            return Err(DataError::InvalidArgument(format!(
                "{} values are not a whole number of [{c}, {h}, {w}] images",
                data.len()
            )));
        }
        match self {
            Scaler::Identity => {}
            Scaler::Log1p => data.iter_mut().for_each(|x| *x = x.ln_1p()),
            Scaler::OneMinusExp => data.iter_mut().for_each(|x| *x = -(-*x).exp_m1()),
            _ => {
                let (shift, factor) = self.affine().expect("affine kinds");
                for (k, plane) in data.chunks_exact_mut(hw).enumerate() {
                    let ch = k % c;
                    for x in plane {
                        *x = (*x - shift[ch]) * factor[ch];
                    }
                }
            }
        }
        Ok(())
    }

    /// Scales a whole dataset in place (its pixels become f32).
    pub fn apply_in_place(&self, data: &mut ImageDataset) -> Result<()> {
        let shape = data.image_shape();
        self.check_channels(shape[0])?;
        let buf = data.pixels_mut().make_f32();
        self.apply_images(buf, shape)
    }

    /// Scales a batch `[N, C, H, W]` on its device; returns `[N, C, H, W]`.
    ///
    /// Panics when `C` is not the fitted channel count (check [`channels`](Self::channels)).
    pub fn apply_batch(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Scaler::Identity => x,
            Scaler::Log1p => x.log1p(),
            Scaler::OneMinusExp => x.neg().exp().neg().add_scalar(1.0),
            _ => {
                let (shift, factor) = self.affine().expect("affine kinds");
                let c = shift.len();
                let [_, xc, _, _] = x.dims();
                assert_eq!(xc, c, "the scaler was fitted on {c}-channel images, the batch has {xc}");
                let device = x.device();
                let s = Tensor::<4>::from_data(TensorData::new(shift, [1, c, 1, 1]), &device);
                let f = Tensor::<4>::from_data(TensorData::new(factor, [1, c, 1, 1]), &device);
                (x - s) * f
            }
        }
    }

    /// The scaler as JSON (`{"kind":"z-score","mean":[..],"std":[..]}`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a scaler always serialises")
    }

    /// Parses [`to_json`](Self::to_json)'s output.
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| DataError::InvalidArgument(one_line(&format!("bad scaler JSON: {e}"))))
    }

    /// Writes the scaler as JSON to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_atomic(path, self.to_json().as_bytes()).map_err(io_err(path))
    }

    /// Reads a scaler saved by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Self> {
        let s = std::fs::read_to_string(path).map_err(io_err(path))?;
        serde_json::from_str(&s)
            .map_err(|e| DataError::Decode { path: path.to_path_buf(), reason: one_line(&format!("scaler JSON: {e}")) })
    }
}
