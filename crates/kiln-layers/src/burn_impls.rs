//! [`Trace`] for the Burn layers kiln reuses (convolutions, batch norm, linear, pooling, dropout,
//! pixel unshuffle). Their cost formulas are in [`crate::trace::cost`].

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
use burn::nn::{BatchNorm, Dropout, Linear, PaddingConfig2d, PixelUnshuffle};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::trace::{Node, OpCost, OpKind, Spatial, Trace, TraceError, Tracer, cost};

/// The param ids of a module's float tensors (params and running states), in visit order.
pub fn float_ids<M: Module>(m: &M) -> Vec<u64> {
    struct Ids(Vec<u64>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.id.val());
        }
    }
    let mut ids = Ids(vec![]);
    m.visit(&mut ids);
    ids.0
}

/// Resolves a Burn 2-D padding config to `((top, bottom), (left, right))` for an input size,
/// exactly as Burn's layers do at run time.
pub fn resolve_padding(
    padding: &PaddingConfig2d,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> [(usize, usize); 2] {
    match padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(*top, *bottom), (*left, *right)],
        PaddingConfig2d::Same => {
            let same = |k: usize, s: usize, n: usize| {
                let out = n.div_ceil(s);
                let total = ((out.max(1) - 1) * s + k).saturating_sub(n);
                (total / 2, total - total / 2)
            };
            [same(kernel[0], stride[0], size[0]), same(kernel[1], stride[1], size[1])]
        }
    }
}

fn spatial_out(
    op: &str,
    x: &Node,
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [(usize, usize); 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> Result<[usize; 2], TraceError> {
    Ok([
        cost::window_out(op, x.shape[2], kernel[0], stride[0], pads[0].0 + pads[0].1, dilation[0], ceil_mode)?,
        cost::window_out(op, x.shape[3], kernel[1], stride[1], pads[1].0 + pads[1].1, dilation[1], ceil_mode)?,
    ])
}

fn window(kernel: [usize; 2], stride: [usize; 2], pads: [(usize, usize); 2], dilation: [usize; 2]) -> Spatial {
    Spatial::Window {
        kernel: kernel.to_vec(),
        stride: stride.to_vec(),
        padding: vec![pads[0].0, pads[1].0],
        dilation: dilation.to_vec(),
    }
}

impl Trace for Conv2d {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("Conv2d", 4)?;
        let w = self.weight.lazy_shape().dims::<4>();
        x.expect_channels("Conv2d", w[1] * self.groups)?;
        let pads = resolve_padding(&self.padding, [x.shape[2], x.shape[3]], self.kernel_size, self.stride);
        let [h, wd] = spatial_out("Conv2d", &x, self.kernel_size, self.stride, pads, self.dilation, false)?;
        let out = vec![x.shape[0], w[0], h, wd];
        let (params, macs, flops) = cost::conv(&w, self.bias.is_some(), &out);
        let kind =
            if self.groups > 1 && self.groups == w[0] && w[1] == 1 { OpKind::DepthwiseConv2d } else { OpKind::Conv2d };
        let mut detail = format!("{}->{} k{}x{} s{}", w[1] * self.groups, w[0], w[2], w[3], self.stride[0]);
        if self.dilation != [1, 1] {
            detail += &format!(" d{}", self.dilation[0]);
        }
        if self.groups > 1 {
            detail += &format!(" g{}", self.groups);
        }
        let c = OpCost::new(kind)
            .detail(detail)
            .params(params)
            .macs(macs)
            .flops(flops)
            .spatial(window(self.kernel_size, self.stride, pads, self.dilation))
            .tensor("weight", self.weight.id.val());
        let c = match &self.bias {
            Some(b) => c.tensor("bias", b.id.val()),
            None => c,
        };
        Ok(t.op(None, &[&x], out, c))
    }
}

impl Trace for ConvTranspose2d {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("ConvTranspose2d", 4)?;
        let w = self.weight.lazy_shape().dims::<4>(); // [C_in, C_out/groups, kh, kw]
        x.expect_channels("ConvTranspose2d", w[0])?;
        let size = |i: usize| -> Result<usize, TraceError> {
            let n = x.shape[2 + i];
            let full =
                (n - 1) * self.stride[i] + self.dilation[i] * (self.kernel_size[i] - 1) + self.padding_out[i] + 1;
            full.checked_sub(2 * self.padding[i]).filter(|&v| v > 0).ok_or_else(|| TraceError::Invalid {
                op: "ConvTranspose2d".into(),
                reason: format!("padding {:?} is too large for input {:?}", self.padding, x.shape),
            })
        };
        let out = vec![x.shape[0], w[1] * self.groups, size(0)?, size(1)?];
        let bias = self.bias.as_ref().map(|_| w[1] * self.groups);
        let (params, macs, flops) = cost::conv_transpose(&w, bias, &x.shape, &out);
        let taps = |i: usize| (self.dilation[i] * (self.kernel_size[i] - 1) + 1).div_ceil(self.stride[i]);
        let c = OpCost::new(OpKind::ConvTranspose2d)
            .detail(format!("{}->{} k{}x{} s{}", w[0], out[1], w[2], w[3], self.stride[0]))
            .params(params)
            .macs(macs)
            .flops(flops)
            .spatial(Spatial::Upsample {
                scale: vec![out[2] as f64 / x.shape[2] as f64, out[3] as f64 / x.shape[3] as f64],
                taps: vec![taps(0), taps(1)],
            })
            .tensor("weight", self.weight.id.val());
        let c = match &self.bias {
            Some(b) => c.tensor("bias", b.id.val()),
            None => c,
        };
        Ok(t.op(None, &[&x], out, c))
    }
}

impl Trace for BatchNorm {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let [c] = self.gamma.lazy_shape().dims::<1>();
        if x.rank() < 2 {
            return Err(TraceError::Rank { op: "BatchNorm".into(), expected: 4, shape: x.shape.clone() });
        }
        x.expect_channels("BatchNorm", c)?;
        let cost = OpCost::new(OpKind::BatchNorm)
            .detail(format!("{c}"))
            .params(2 * c as u64)
            .buffers(2 * c as u64)
            .flops(2 * x.numel())
            .tensor("weight", self.gamma.id.val())
            .tensor("bias", self.beta.id.val())
            .tensor("running_mean", float_ids(&self.running_mean)[0])
            .tensor("running_var", float_ids(&self.running_var)[0]);
        let out = x.shape.clone();
        Ok(t.op(None, &[&x], out, cost))
    }
}

impl Trace for Linear {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let [d_in, d_out] = self.weight.lazy_shape().dims::<2>();
        let last = *x.shape.last().unwrap_or(&0);
        if x.rank() < 2 || last != d_in {
            return Err(TraceError::Invalid {
                op: "Linear".into(),
                reason: format!("expects {d_in} input features in the last dimension, got shape {:?}", x.shape),
            });
        }
        let rows = x.numel() / d_in as u64;
        let (params, macs, flops) = cost::linear(d_in, d_out, self.bias.is_some(), rows);
        let mut out = x.shape.clone();
        *out.last_mut().unwrap() = d_out;
        let c = OpCost::new(OpKind::Linear)
            .detail(format!("{d_in}->{d_out}"))
            .params(params)
            .macs(macs)
            .flops(flops)
            .tensor("weight", self.weight.id.val());
        let c = match &self.bias {
            Some(b) => c.tensor("bias", b.id.val()),
            None => c,
        };
        Ok(t.op(None, &[&x], out, c))
    }
}

impl Trace for MaxPool2d {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("MaxPool2d", 4)?;
        let pads = resolve_padding(&self.padding, [x.shape[2], x.shape[3]], self.kernel_size, self.stride);
        let [h, w] = spatial_out("MaxPool2d", &x, self.kernel_size, self.stride, pads, self.dilation, self.ceil_mode)?;
        let out = vec![x.shape[0], x.shape[1], h, w];
        let k = (self.kernel_size[0] * self.kernel_size[1]) as u64;
        let numel: u64 = out.iter().map(|&d| d as u64).product();
        let c = OpCost::new(OpKind::MaxPool2d)
            .detail(format!("k{}x{} s{}", self.kernel_size[0], self.kernel_size[1], self.stride[0]))
            .flops(numel * (k - 1))
            .spatial(window(self.kernel_size, self.stride, pads, self.dilation));
        Ok(t.op(None, &[&x], out, c))
    }
}

impl Trace for AvgPool2d {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("AvgPool2d", 4)?;
        let pads = resolve_padding(&self.padding, [x.shape[2], x.shape[3]], self.kernel_size, self.stride);
        let [h, w] = spatial_out("AvgPool2d", &x, self.kernel_size, self.stride, pads, [1, 1], self.ceil_mode)?;
        let out = vec![x.shape[0], x.shape[1], h, w];
        let k = (self.kernel_size[0] * self.kernel_size[1]) as u64;
        let numel: u64 = out.iter().map(|&d| d as u64).product();
        let c = OpCost::new(OpKind::AvgPool2d)
            .detail(format!("k{}x{} s{}", self.kernel_size[0], self.kernel_size[1], self.stride[0]))
            .flops(numel * k)
            .spatial(window(self.kernel_size, self.stride, pads, [1, 1]));
        Ok(t.op(None, &[&x], out, c))
    }
}

impl Trace for AdaptiveAvgPool2d {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("AdaptiveAvgPool2d", 4)?;
        let [oh, ow] = self.output_size;
        let out = vec![x.shape[0], x.shape[1], oh, ow];
        let (h, w) = (x.shape[2], x.shape[3]);
        let mut c = OpCost::new(OpKind::AdaptiveAvgPool2d).detail(format!("->{oh}x{ow}"));
        if oh == 1 && ow == 1 {
            c = c.flops(x.numel()).spatial(Spatial::Collapse);
        } else if h % oh == 0 && w % ow == 0 {
            // Uniform windows: an ordinary average pool with kernel = stride = in/out.
            let (kh, kw) = (h / oh, w / ow);
            let numel: u64 = out.iter().map(|&d| d as u64).product();
            c = c.flops(numel * (kh * kw) as u64).spatial(Spatial::Window {
                kernel: vec![kh, kw],
                stride: vec![kh, kw],
                padding: vec![0, 0],
                dilation: vec![1, 1],
            });
        } else {
            // Overlapping, non-uniform windows: no exact single-window formula.
            c = c.flops(x.numel()).spatial(Spatial::Unknown);
        }
        Ok(t.op(None, &[&x], out, c))
    }
}

impl Trace for Dropout {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        let out = x.shape.clone();
        Ok(t.op(None, &[&x], out, OpCost::new(OpKind::Dropout).detail(format!("p={}", self.prob))))
    }
}

impl Trace for PixelUnshuffle {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        x.expect_rank("PixelUnshuffle", 4)?;
        let r = self.downscale_factor;
        if x.shape[2] % r != 0 || x.shape[3] % r != 0 {
            return Err(TraceError::Invalid {
                op: "PixelUnshuffle".into(),
                reason: format!("spatial size {:?} is not divisible by {r}", &x.shape[2..]),
            });
        }
        let out = vec![x.shape[0], x.shape[1] * r * r, x.shape[2] / r, x.shape[3] / r];
        Ok(t.op(None, &[&x], out, OpCost::new("PixelUnshuffle").spatial(Spatial::SpaceToDepth { factor: r })))
    }
}
