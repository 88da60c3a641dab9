//! Upsampling: nearest and bilinear on 4-D input (Burn's `interpolate`), nearest and trilinear on
//! 5-D input (separable: bilinear over `H, W`, then linear over `D`).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::trace::{Node, OpCost, Spatial, Trace, TraceError, Tracer};

/// Interpolation mode of an [`Upsample`].
#[derive(Config, Debug, Copy, PartialEq)]
pub enum UpsampleMode {
    /// Nearest neighbour (PyTorch `mode="nearest"`: source index `floor(dst * in / out)`).
    Nearest,
    /// Bilinear on `[N, C, H, W]`.
    Bilinear,
    /// Trilinear on `[N, C, D, H, W]`.
    Trilinear,
}

/// Configuration of an [`Upsample`]: give `scale_factor` or `size`.
#[derive(Config, Debug)]
pub struct UpsampleConfig {
    /// Mode.
    pub mode: UpsampleMode,
    /// Scale factor applied to every spatial dimension.
    #[config(default = "None")]
    pub scale_factor: Option<f64>,
    /// Output spatial size (2 values for 4-D input, 3 for 5-D).
    #[config(default = "None")]
    pub size: Option<Vec<usize>>,
    /// PyTorch's `align_corners` (default false, as in PyTorch).
    #[config(default = false)]
    pub align_corners: bool,
}

impl UpsampleConfig {
    /// Initializes the module.
    pub fn init(&self) -> Upsample {
        Upsample {
            mode: self.mode,
            scale_factor: self.scale_factor,
            size: self.size.clone(),
            align_corners: self.align_corners,
        }
    }
}

/// Upsampling layer.
///
/// - 4-D input `[N, C, H, W]` (nearest, bilinear) -> `[N, C, H', W']`
/// - 5-D input `[N, C, D, H, W]` (nearest, trilinear) -> `[N, C, D', H', W']`
/// - PyTorch: `nn.Upsample(size, scale_factor, mode, align_corners)`.
#[derive(Module, Debug)]
pub struct Upsample {
    /// Mode.
    #[module(skip)]
    pub mode: UpsampleMode,
    /// Scale factor.
    pub scale_factor: Option<f64>,
    /// Output size.
    pub size: Option<Vec<usize>>,
    /// Align corners.
    pub align_corners: bool,
}

impl Upsample {
    /// Output spatial size for an input spatial size.
    pub fn output_size(&self, input: &[usize]) -> Result<Vec<usize>, TraceError> {
        let err = |reason: String| TraceError::Invalid { op: "Upsample".into(), reason };
        match (&self.size, self.scale_factor) {
            (Some(s), None) if s.len() == input.len() => Ok(s.clone()),
            (Some(s), None) => {
                Err(err(format!("size {s:?} has {} dims, input has {} spatial dims", s.len(), input.len())))
            }
            (None, Some(f)) if f > 0.0 => Ok(input.iter().map(|&d| (d as f64 * f).floor() as usize).collect()),
            _ => Err(err("set exactly one of scale_factor (> 0) or size".into())),
        }
    }

    fn mode2d(&self) -> InterpolateMode {
        match self.mode {
            UpsampleMode::Nearest => InterpolateMode::Nearest,
            UpsampleMode::Bilinear | UpsampleMode::Trilinear => InterpolateMode::Bilinear,
        }
    }

    fn interp(&self, x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        if matches!(self.mode2d(), InterpolateMode::Bilinear) {
            // kiln's separable kernel on flex / ndarray (also gives ndarray a backward), Burn's
            // interpolate elsewhere; the same values either way.
            return kiln_kernels::interpolate_bilinear(x, size, self.align_corners);
        }
        let mut opts = InterpolateOptions::new(self.mode2d()).with_output_size(size);
        opts.align_corners = self.align_corners;
        interpolate(x, opts)
    }

    /// Upsamples a 4-D tensor (nearest or bilinear).
    ///
    /// # Panics
    /// If the mode is trilinear (use [`Self::forward3d`]) or the size is invalid; check with
    /// [`Trace::trace`] first to get an error instead.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        assert!(self.mode != UpsampleMode::Trilinear, "trilinear upsampling needs a 5-D input: use forward3d");
        let [_, _, h, w] = x.dims();
        let s = self.output_size(&[h, w]).expect("valid upsample size");
        self.interp(x, [s[0], s[1]])
    }

    /// Upsamples a 5-D tensor (nearest or trilinear), separably: `(H, W)` first, then `D`.
    /// Interpolating along one axis with the other axis's size unchanged is exact, so the result
    /// equals PyTorch's trilinear / nearest 3-D interpolation.
    pub fn forward3d(&self, x: Tensor<5>) -> Tensor<5> {
        assert!(self.mode != UpsampleMode::Bilinear, "bilinear upsampling needs a 4-D input: use forward");
        let [n, c, d, h, w] = x.dims();
        let s = self.output_size(&[d, h, w]).expect("valid upsample size");
        let (od, oh, ow) = (s[0], s[1], s[2]);
        // (H, W): fold D into the batch.
        let y = self.interp(x.reshape([n * c * d, 1, h, w]), [oh, ow]);
        // D: view as [N*C, 1, D, H'*W'] and interpolate rows only.
        let y = self.interp(y.reshape([n * c, 1, d, oh * ow]), [od, oh * ow]);
        y.reshape([n, c, od, oh, ow])
    }
}

impl Trace for Upsample {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let (rank, per_elem, taps) = match self.mode {
            UpsampleMode::Nearest if x.rank() == 4 || x.rank() == 5 => (x.rank(), 0, 1),
            UpsampleMode::Bilinear => (4, 7, 2),
            UpsampleMode::Trilinear => (5, 15, 2),
            UpsampleMode::Nearest => (4, 0, 1),
        };
        x.expect_rank("Upsample", rank)?;
        let spatial_in = &x.shape[2..];
        let size = self.output_size(spatial_in)?;
        let mut out = x.shape[..2].to_vec();
        out.extend(&size);
        let numel: u64 = out.iter().map(|&d| d as u64).product();
        let c = OpCost::new(format!("Upsample({:?})", self.mode))
            .detail(format!("{:?}->{:?}", spatial_in, size))
            .flops(per_elem * numel)
            .spatial(Spatial::Upsample {
                scale: size.iter().zip(spatial_in).map(|(&o, &i)| o as f64 / i as f64).collect(),
                taps: vec![taps; size.len()],
            });
        Ok(t.op(None, &[&x], out, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{a:?}\n vs {b:?}");
        }
    }

    #[test]
    fn nearest_repeats_pixels() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 2, 2]), &device);
        let up = UpsampleConfig::new(UpsampleMode::Nearest).with_scale_factor(Some(2.0)).init();
        let y = up.forward(x).into_data().try_to_vec::<f32>().unwrap();
        close(&y, &[1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.], 0.0);
    }

    #[test]
    fn bilinear_half_pixel_matches_pytorch() {
        // torch.nn.functional.interpolate([[0, 1]], scale_factor=2, mode="bilinear",
        // align_corners=False) along W gives [0, 0.25, 0.75, 1].
        let device = Device::flex();
        let x = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 1, 1, 2]), &device);
        let up = UpsampleConfig::new(UpsampleMode::Bilinear).with_size(Some(vec![1, 4])).init();
        close(&up.forward(x).into_data().try_to_vec::<f32>().unwrap(), &[0.0, 0.25, 0.75, 1.0], 1e-6);
    }

    #[test]
    fn trilinear_on_5d_input() {
        // f(d, h, w) = d + 10h + 100w on a 2x2x2 cube is trilinear, so with align_corners the
        // 3x3x3 output samples it exactly at half steps.
        let device = Device::flex();
        let mut v = vec![];
        for d in 0..2 {
            for h in 0..2 {
                for w in 0..2 {
                    v.push((d + 10 * h + 100 * w) as f32);
                }
            }
        }
        let x = Tensor::<5>::from_data(TensorData::new(v, [1, 1, 2, 2, 2]), &device);
        let up =
            UpsampleConfig::new(UpsampleMode::Trilinear).with_size(Some(vec![3, 3, 3])).with_align_corners(true).init();
        let y = up.forward3d(x);
        assert_eq!(y.dims(), [1, 1, 3, 3, 3]);
        let mut expect = vec![];
        for d in 0..3 {
            for h in 0..3 {
                for w in 0..3 {
                    expect.push(0.5 * (d as f32 + 10.0 * h as f32 + 100.0 * w as f32));
                }
            }
        }
        close(&y.into_data().try_to_vec::<f32>().unwrap(), &expect, 1e-4);
        // align_corners=False, scale 2 along D only: PyTorch gives [0, 0.25, 0.75, 1] * 1.
        let x = Tensor::<5>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 1, 2, 1, 1]), &device);
        let up = UpsampleConfig::new(UpsampleMode::Trilinear).with_size(Some(vec![4, 1, 1])).init();
        close(&up.forward3d(x).into_data().try_to_vec::<f32>().unwrap(), &[0.0, 0.25, 0.75, 1.0], 1e-6);
    }
}
