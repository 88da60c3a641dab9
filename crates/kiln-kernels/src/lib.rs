//! # kiln-kernels
//!
//! Fast CPU kernels for the ops where Burn's CPU backends are slow, plugged into Burn through its
//! backend-extension mechanism (`#[backend_extension]`), so they work on plain `Tensor<D>` values
//! and under autodiff.
//!
//! - **Depthwise convolution** ([`depthwise_conv2d`], [`conv2d`]): forward, input gradient,
//!   weight gradient and bias gradient as direct loops over `(n, c)` planes, parallel with rayon.
//!   Burn computes the weight gradient of a grouped convolution one group at a time, which for a
//!   depthwise convolution is one tiny convolution per channel; here it is one pass.
//! - **Batch norm** ([`batch_norm`], [`batch_norm_act`]): training mode as one fused forward and
//!   one fused backward (Burn's default is about ten tensor ops), inference as one pass that also
//!   applies a ReLU / ReLU6.
//! - **ReLU6** ([`relu6`], [`clamp_act`]): parallel forward and backward (Burn's `clamp` and its
//!   backward run on one thread).
//! - **Dense convolution** ([`dense_conv2d`]): one-group convolutions as one matrix product per
//!   batch (im2col with the images side by side) forward, input and weight gradients through
//!   im2col / col2im and the backend's matmul.
//! - **Max pooling** ([`max_pool2d`]): forward and backward as one pass per `(n, c)` plane
//!   (flex's pooling recomputes the valid kernel range of every output element).
//! - **Bilinear resizing** ([`interpolate_bilinear`]): separable, per `(n, c)` plane, forward and
//!   backward (flex computes `f64` coordinates and four products per output element).
//! - **Max pooling with indices, max unpooling** ([`max_pool2d_with_indices`], [`max_unpool2d`]):
//!   PyTorch's indices in one branch-free pass; unpooling as a per-plane write (Burn: `scatter`).
//! - **Non-overlapping transposed convolution** ([`conv_transpose2d`]): one matrix product.
//!
//! The kernels run on the `flex` and `ndarray` backends (with or without autodiff) for `f32`
//! tensors; on any other backend or dtype the functions call Burn's own `conv2d`, so callers never
//! branch. `KILN_KERNELS=off` in the environment (or [`set_enabled`]`(false)`) turns the kernels
//! off, which is how the benches measure before / after.
//!
//! ```no_run
//! use burn::tensor::{Device, Distribution, Tensor};
//! use burn::nn::conv::Conv2dConfig;
//!
//! let device = Device::flex().autodiff();
//! let dw = Conv2dConfig::new([32, 32], [3, 3]).with_groups(32).init(&device);
//! let x = Tensor::<4>::random([8, 32, 28, 28], Distribution::Default, &device);
//! let y = kiln_kernels::conv2d(&dw, x); // same result as dw.forward(x), faster
//! let grads = y.sum().backward();
//! ```

use std::sync::atomic::{AtomicU8, Ordering};

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor};

/// Compiles `$body` twice, for the baseline target and with AVX2, and defines `$name` that picks
/// the AVX2 copy at run time when the CPU has it.
macro_rules! multiversion {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*) $(-> $ret:ty)?) => {
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub mod bilinear;
pub mod dense;
pub mod depthwise_cpu;
mod extension;
pub mod gemm;
mod norm_act;
pub mod norm_act_cpu;
pub mod peak;
pub mod pool;
pub mod qgemm;
pub mod unpool;

pub use bilinear::{BilinearBackend, BilinearGeom};
pub use dense::DenseConvBackend;
pub use depthwise_cpu::DwGeom;
pub use extension::DepthwiseConvBackend;
pub use norm_act::NormActBackend;
pub use pool::{MaxPoolBackend, PoolGeom};
pub use unpool::MaxUnpoolBackend;

/// Errors of the kernel entry points that validate their arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The weight / groups / input do not describe a depthwise convolution.
    #[error(
        "not a depthwise convolution: input {input:?}, weight {weight:?}, groups {groups} (need weight [C, 1, kh, kw] and groups == C == input channels)"
    )]
    NotDepthwise {
        /// Input shape.
        input: [usize; 4],
        /// Weight shape.
        weight: [usize; 4],
        /// Groups.
        groups: usize,
    },
    /// Stride / dilation of zero, or a kernel larger than the padded input.
    #[error(
        "depthwise convolution of input {input:?} with kernel {kernel:?} has an empty output (check stride, dilation and padding)"
    )]
    EmptyOutput {
        /// Input shape.
        input: [usize; 4],
        /// Kernel size.
        kernel: [usize; 2],
    },
}

static ENABLED: AtomicU8 = AtomicU8::new(0); // 0: not read yet, 1: on, 2: off

/// Whether the fast kernels are used (default: yes, unless `KILN_KERNELS` is `off`, `0` or
/// `false`).
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let off = std::env::var("KILN_KERNELS")
                .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "off" | "0" | "false"))
                .unwrap_or(false);
            ENABLED.store(if off { 2 } else { 1 }, Ordering::Relaxed);
            !off
        }
    }
}

/// Turns the fast kernels on or off for the whole process (Burn's ops are used when off).
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// The number of threads the kernels run on (rayon's global pool; `RAYON_NUM_THREADS` sets it).
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}

/// Whether `device` (autodiff or not) is a backend the kernels are registered for.
pub fn has_kernels(device: &Device) -> bool {
    #[allow(unused_imports)]
    use burn::backend::DispatchDevice;
    let inner = device.clone().inner();
    #[allow(unreachable_patterns)]
    match inner.as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        DispatchDevice::NdArray(_) => true,
        _ => false,
    }
}

/// Checks that `x` / `weight` / `options` describe a depthwise convolution and returns its
/// geometry.
pub fn depthwise_geometry(
    x_shape: [usize; 4],
    weight_shape: [usize; 4],
    options: &ConvOptions<2>,
) -> Result<DwGeom, KernelError> {
    let c = x_shape[1];
    if weight_shape[0] != c || weight_shape[1] != 1 || options.groups != c {
        return Err(KernelError::NotDepthwise { input: x_shape, weight: weight_shape, groups: options.groups });
    }
    DwGeom::new(x_shape, [weight_shape[2], weight_shape[3]], options.stride, options.padding, options.dilation)
        .ok_or(KernelError::EmptyOutput { input: x_shape, kernel: [weight_shape[2], weight_shape[3]] })
}

/// A depthwise convolution: `x` `[N, C, H, W]`, `weight` `[C, 1, kh, kw]`, `bias` `[C]`,
/// `options.groups == C`; returns `[N, C, OH, OW]`. Same result as
/// `burn::tensor::module::conv2d(x, weight, bias, options)`; on flex / ndarray with `f32` tensors
/// it runs the kiln kernel (autodiff included), elsewhere Burn's convolution.
///
/// # Panics
/// When the arguments are not a depthwise convolution (see [`try_depthwise_conv2d`]).
pub fn depthwise_conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    try_depthwise_conv2d(x, weight, bias, options).unwrap_or_else(|e| panic!("{e}"))
}

/// [`depthwise_conv2d`] that reports a non-depthwise or empty configuration as an error.
pub fn try_depthwise_conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Result<Tensor<4>, KernelError> {
    depthwise_geometry(x.dims(), weight.dims(), &options)?;
    if !use_kernel(&x, &weight, bias.as_ref()) {
        return Ok(burn::tensor::module::conv2d(x, weight, bias, options));
    }
    let out = <burn::backend::Dispatch as DepthwiseConvBackend>::depthwise_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        options,
    );
    let out: Tensor<4> = Tensor::from_dispatch(out);
    // The extension op has no bias (depthwise convolutions are followed by a batch norm in the
    // zoo); a bias is one broadcast add, differentiated by Burn.
    Ok(match bias {
        Some(b) => {
            let c = b.dims()[0];
            out + b.reshape([1, c, 1, 1])
        }
        None => out,
    })
}

fn use_kernel(x: &Tensor<4>, weight: &Tensor<4>, bias: Option<&Tensor<1>>) -> bool {
    enabled()
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.is_none_or(|b| b.dtype() == DType::F32)
        && has_kernels(&x.device())
}

/// Whether a Burn `Conv2d` module is a depthwise convolution (`groups == in == out channels`).
pub fn is_depthwise(conv: &Conv2d) -> bool {
    let [out_c, in_per_group, _, _] = conv.weight.dims();
    in_per_group == 1 && conv.groups == out_c && conv.groups > 1
}

/// `conv.forward(x)`: through the depthwise kernel when `conv` is depthwise (see
/// [`is_depthwise`]), as a matmul for some `1 x 1` convolutions, through [`dense_conv2d`] for
/// one-group `k x k` convolutions, and through Burn's `Conv2d::forward` otherwise (other
/// backends, dtypes and grouped convolutions). Padding is resolved exactly as Burn's module does
/// (`Same`, `Valid`, `Explicit`).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if enabled() && is_pointwise(conv) && x.dims()[1] == conv.weight.dims()[1] && pointwise_as_matmul(&x) {
        return pointwise_conv2d(conv, x);
    }
    let [_, _, h, w] = x.dims();
    let padding = [
        pad_pair(&conv.padding, 0, h, conv.kernel_size[0], conv.stride[0]),
        pad_pair(&conv.padding, 1, w, conv.kernel_size[1], conv.stride[1]),
    ];
    if enabled()
        && let Some(chunk) = dense_chunk(conv, &x)
    {
        let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, 1);
        let (weight, bias) = (conv.weight.val(), conv.bias.as_ref().map(|b| b.val()));
        if x.dims()[0] <= chunk {
            return dense_conv2d(x, weight, bias, options);
        }
        // A batch whose patch matrix would pass the bound runs in slices of `chunk` images.
        let parts: Vec<_> = x
            .split(chunk, 0)
            .into_iter()
            .map(|part| dense_conv2d(part, weight.clone(), bias.clone(), options.clone()))
            .collect();
        return Tensor::cat(parts, 0);
    }
    if !is_depthwise(conv) || !enabled() || x.dims()[1] != conv.groups || burn_depthwise_forward(&x.device()) {
        return conv.forward(x);
    }
    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
    let weight = conv.weight.val();
    let bias = conv.bias.as_ref().map(|b| b.val());
    match try_depthwise_conv2d(x.clone(), weight, bias, options) {
        Ok(y) => y,
        // Not reachable for a module Burn accepted; keep Burn's behaviour (and its message).
        Err(_) => conv.forward(x),
    }
}

/// Fewest output channels for which a `1 x 1` convolution takes the dense path in inference.
const POINTWISE_DENSE_MIN_OUT: usize = 64;

/// Largest patch matrix (`N * OH * OW * Cin * kh * kw` elements) the dense backward builds.
const DENSE_MAX_COLS: usize = 8 << 20;

/// Whether `conv` on `x` takes [`dense_conv2d`], and in slices of how many images: one group,
/// not `1 x 1` under autodiff, kernels on the device, `f32`, and a patch matrix of at most [`DENSE_MAX_COLS`]
/// elements per slice. kiln's dense forward is one matrix product per slice where flex computes
/// one small product per image (ResNet-18 @224, batch 1: 247 -> 124 ms); its backward is faster
/// than Burn's for small convolutions (LeNet-5).
fn dense_chunk(conv: &Conv2d, x: &Tensor<4>) -> Option<usize> {
    let [_, cin, h, w] = x.dims();
    let [_, wc, kh, kw] = conv.weight.dims();
    // `1 x 1` convolutions take it in inference when they have enough output channels for the
    // AVX-512 GEMM to repay the copy of the input into its panels (ResNet-50's bottlenecks); with
    // few (MobileNetV2's 144 -> 24 projections) flex's product on the input in place is faster.
    // Under autodiff they stay on the matmul path or Burn's.
    let [cout, ..] = conv.weight.dims();
    if conv.groups != 1
        || wc != cin
        || ([kh, kw] == [1, 1] && (x.device().is_autodiff() || cout < POINTWISE_DENSE_MIN_OUT))
    {
        return None;
    }
    let (oh, ow) = (h.div_ceil(conv.stride[0].max(1)), w.div_ceil(conv.stride[1].max(1)));
    let per_image = (oh * ow * cin * kh * kw).max(1);
    (per_image <= DENSE_MAX_COLS && use_kernel(x, &conv.weight.val(), conv.bias.as_ref().map(|b| b.val()).as_ref()))
        .then_some(DENSE_MAX_COLS / per_image)
}

/// A dense (one group) convolution: on flex / ndarray with `f32` tensors, forward and backward
/// through im2col and matrix products ([`dense`]), faster than Burn's for the convolutions of
/// LeNet-5, ResNet and the mobile nets' stems. Same result as
/// `burn::tensor::module::conv2d(x, weight, bias, options)` (`options.groups` must be 1).
pub fn dense_conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: ConvOptions<2>) -> Tensor<4> {
    if options.groups != 1 || !use_kernel(&x, &weight, bias.as_ref()) {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let out =
        <burn::backend::Dispatch as DenseConvBackend>::dense_conv2d(x.into_dispatch(), weight.into_dispatch(), options);
    let out: Tensor<4> = Tensor::from_dispatch(out);
    match bias {
        Some(b) => {
            let c = b.dims()[0];
            out + b.reshape([1, c, 1, 1])
        }
        None => out,
    }
}

/// `pool.forward(x)` for `x` `[N, C, H, W]`: on flex / ndarray with `f32` tensors (with or
/// without autodiff) through kiln's max-pool kernel ([`pool`]), elsewhere (other backends or
/// dtypes, a kernel that does not fit) Burn's `MaxPool2d::forward`. Same values and
/// gradients as Burn's.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    if !(enabled() && x.dtype() == DType::F32 && has_kernels(&x.device())) {
        return pool.forward(x);
    }
    let [_, _, h, w] = x.dims();
    let (k, s) = (pool.kernel_size, pool.stride);
    let geom = PoolGeom {
        kernel: k,
        stride: s,
        padding: [pad_pair(&pool.padding, 0, h, k[0], s[0]), pad_pair(&pool.padding, 1, w, k[1], s[1])],
        dilation: pool.dilation,
        ceil_mode: pool.ceil_mode,
    };
    if !kernel_pools(&geom, h, w) {
        return pool.forward(x);
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as MaxPoolBackend>::kiln_max_pool2d(x.into_dispatch(), geom))
}

/// Whether kiln's pool kernel takes `geom` on an `h x w` input: Burn refuses padding wider than
/// half the kernel, zero strides / dilations and empty outputs, so those (and their messages)
/// are left to it.
fn kernel_pools(geom: &PoolGeom, h: usize, w: usize) -> bool {
    (0..2).all(|a| {
        let half = geom.kernel[a] / 2;
        geom.kernel[a] > 0
            && geom.stride[a] > 0
            && geom.dilation[a] > 0
            && geom.padding[a].0 <= half
            && geom.padding[a].1 <= half
    }) && geom.out(0, h).is_some_and(|o| o > 0)
        && geom.out(1, w).is_some_and(|o| o > 0)
}

/// Max pooling that also returns PyTorch's indices (`ih * W + iw` in each input plane), as
/// `burn::tensor::module::max_pool2d_with_indices` with symmetric `padding` and dilation 1: on
/// flex / ndarray `f32` tensors through kiln's pool kernel (values, with its backward) and one
/// more pass for the indices (flex's own routine recomputes each output's window range and was
/// 2.6x PyTorch's time for a pool + unpool of 8x64x56x56), through Burn elsewhere and for
/// windows Burn refuses (its message).
pub fn max_pool2d_with_indices(
    x: Tensor<4>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> (Tensor<4>, Tensor<4, burn::tensor::Int>) {
    let [_, _, h, w] = x.dims();
    let geom = PoolGeom {
        kernel,
        stride,
        padding: [(padding[0], padding[0]), (padding[1], padding[1])],
        dilation: [1, 1],
        ceil_mode: false,
    };
    // Indices travel as f32 inside the kernel: exact below 2^24 elements per plane.
    let fits = kernel_pools(&geom, h, w) && h * w < 1 << 24;
    if !(enabled() && fits && x.dtype() == DType::F32 && has_kernels(&x.device())) {
        let opts = burn::tensor::ops::MaxPoolOptions::new(kernel)
            .with_stride(stride)
            .with_padding_pairs([(padding[0], padding[0]), (padding[1], padding[1])]);
        return burn::tensor::module::max_pool2d_with_indices(x, opts);
    }
    let y: Tensor<4> = Tensor::from_dispatch(<burn::backend::Dispatch as MaxPoolBackend>::kiln_max_pool2d(
        x.clone().into_dispatch(),
        geom,
    ));
    let idx: Tensor<4> = Tensor::from_dispatch(<burn::backend::Dispatch as MaxPoolBackend>::kiln_max_pool2d_argmax(
        x.into_dispatch(),
        geom,
    ));
    (y, idx.int())
}

/// Max unpooling: `[N, C, OH, OW]` zeros with `x`'s values at `indices` (PyTorch's
/// `max_unpool2d`; `x` and `indices` `[N, C, H, W]`, indices into the `OH x OW` planes as
/// [`max_pool2d_with_indices`] gives them). On flex / ndarray `f32` tensors through kiln's
/// kernel ([`unpool`]), with its backward (a gather); elsewhere Burn's `scatter`.
///
/// # Panics
/// If `indices` and `x` differ in shape, or (on the kernel path) an index is outside the
/// output plane.
pub fn max_unpool2d(x: Tensor<4>, indices: Tensor<4, burn::tensor::Int>, size: [usize; 2]) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    assert_eq!(
        indices.dims(),
        [n, c, h, w],
        "max unpool: indices {:?} must have the shape of the values {:?}",
        indices.dims(),
        x.dims()
    );
    let [oh, ow] = size;
    if !(enabled() && x.dtype() == DType::F32 && has_kernels(&x.device())) || oh * ow >= 1 << 24 {
        let out = Tensor::<3>::zeros([n, c, oh * ow], &x.device());
        return out
            .scatter(
                2,
                indices.reshape([n, c, h * w]),
                x.reshape([n, c, h * w]),
                burn::tensor::IndexingUpdateOp::Assign,
            )
            .reshape([n, c, oh, ow]);
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as MaxUnpoolBackend>::kiln_max_unpool2d(
        x.into_dispatch(),
        indices.into_dispatch(),
        size,
    ))
}

/// Bilinear resizing of `x` `[N, C, H, W]` to `[N, C, OH, OW]` with PyTorch's `align_corners`:
/// the same values and gradients as `burn::tensor::module::interpolate` with
/// `InterpolateMode::Bilinear` (and PyTorch's `F.interpolate(size=..., mode="bilinear")`), through
/// kiln's kernel ([`bilinear`]) on flex / ndarray with `f32` tensors (with or without autodiff),
/// through Burn elsewhere (and for empty sizes, whose message stays Burn's).
pub fn interpolate_bilinear(x: Tensor<4>, size: [usize; 2], align_corners: bool) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if !(enabled() && x.dtype() == DType::F32 && has_kernels(&x.device())) || h == 0 || w == 0 || size.contains(&0) {
        use burn::tensor::module::interpolate;
        use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
        let mut opts = InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size(size);
        opts.align_corners = align_corners;
        return interpolate(x, opts);
    }
    let geom = BilinearGeom { out: size, align_corners };
    Tensor::from_dispatch(<burn::backend::Dispatch as BilinearBackend>::kiln_bilinear(x.into_dispatch(), geom))
}

/// Whether a transposed convolution is the non-overlapping kind (`kernel == stride`, no padding,
/// dilation 1, one group): U-Net's `2 x 2` / 2 upsampling. Each input pixel then writes its own
/// `kh x kw` output patch, so the whole layer is one matrix product.
pub fn is_patch_transpose(conv: &ConvTranspose2d) -> bool {
    conv.kernel_size == conv.stride
        && conv.padding == [0, 0]
        && conv.padding_out == [0, 0]
        && conv.dilation == [1, 1]
        && conv.groups == 1
}

/// `conv.forward(x)`. A non-overlapping transposed convolution ([`is_patch_transpose`]) on flex /
/// ndarray `f32` tensors is computed as `Wᵀ [Cout·kh·kw, Cin] x xₙ [Cin, H·W]` per image and one
/// reordering of the result into patches, with Burn's matmul and its autodiff (Burn's transposed
/// convolution computes its backward as general convolutions: 2.8x PyTorch's time on
/// 8x64x28x28, 2x2 / 2, 64 -> 32); every other case is Burn's `ConvTranspose2d::forward`.
pub fn conv_transpose2d(conv: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    let [n, cin, h, w] = x.dims();
    let [wi, cout, kh, kw] = conv.weight.dims();
    if !(enabled() && is_patch_transpose(conv) && cin == wi && x.dtype() == DType::F32 && has_kernels(&x.device()))
        || n * h * w == 0
    {
        return conv.forward(x);
    }
    let wt = conv.weight.val().reshape([cin, cout * kh * kw]).transpose().unsqueeze::<3>();
    let y = wt.matmul(x.reshape([n, cin, h * w]));
    // [N, Cout, kh, kw, H, W] -> [N, Cout, H, kh, W, kw]
    let y: Tensor<4> =
        y.reshape([n, cout, kh, kw, h, w]).permute([0, 1, 4, 2, 5, 3]).reshape([n, cout, h * kh, w * kw]);
    match &conv.bias {
        Some(b) => y + b.val().reshape([1, cout, 1, 1]),
        None => y,
    }
}

/// Whether a depthwise convolution without autodiff is better left to Burn: flex's own depthwise
/// forward is faster than kiln's loops (measured on 8x144x56x56, 3x3: 9.6 ms against 11.6 ms
/// stride 1, 9.3 against 12.3 ms stride 2); kiln's kernel wins by its backward pass, so autodiff
/// devices (and ndarray, whose grouped convolution is slow) keep it.
fn burn_depthwise_forward(device: &Device) -> bool {
    #[allow(unused_imports)]
    use burn::backend::DispatchDevice;
    let inner = device.clone().inner();
    #[allow(unreachable_patterns)]
    match inner.as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => !device.is_autodiff(),
        _ => false,
    }
}

/// Whether a Burn `Conv2d` module is a plain `1 x 1` convolution (stride 1, no padding, one group).
pub fn is_pointwise(conv: &Conv2d) -> bool {
    let zero_pad = match conv.padding {
        PaddingConfig2d::Valid | PaddingConfig2d::Same => true,
        PaddingConfig2d::Explicit(a, b, c, d) => a + b + c + d == 0,
    };
    conv.kernel_size == [1, 1] && conv.stride == [1, 1] && conv.groups == 1 && zero_pad
}

/// Whether `1 x 1` convolutions are computed as a matrix product (one per image) for `x`.
/// Measured on 8x144x56x56 -> 24, forward + backward: ndarray's convolution 11.7 s, the matmul
/// 73 ms; flex's convolution 197 ms, the matmul 86 ms. Forward only, flex's convolution is as
/// fast as the matmul, and on small maps (ShuffleNetV2 / MobileNetV2 at 32x32, down to 1x1) it
/// is faster, as one product over the whole batch (ShuffleNetV2 training step at b32 32x32:
/// 257-284 ms with the per-image matmul everywhere against 191-220 ms with Burn's). So flex uses
/// the matmul only under autodiff and for maps of at least 28x28; ndarray always.
fn pointwise_as_matmul(x: &Tensor<4>) -> bool {
    #[allow(unused_imports)]
    use burn::backend::DispatchDevice;
    let device = x.device();
    let [_, _, h, w] = x.dims();
    let inner = device.clone().inner();
    #[allow(unreachable_patterns)]
    match inner.as_dispatch() {
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        DispatchDevice::NdArray(_) => true,
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => device.is_autodiff() && h * w >= 28 * 28,
        _ => false,
    }
}

/// A `1 x 1` convolution as `W [C_out, C_in] x X [N, C_in, H*W]` (Burn's matmul, differentiated by
/// Burn), plus the bias.
pub fn pointwise_conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [n, cin, h, w] = x.dims();
    let cout = conv.weight.dims()[0];
    let wm = conv.weight.val().reshape([1, cout, cin]);
    let y = wm.matmul(x.reshape([n, cin, h * w])).reshape([n, cout, h, w]);
    match &conv.bias {
        Some(b) => y + b.val().reshape([1, cout, 1, 1]),
        None => y,
    }
}

/// `(begin, end)` padding of spatial axis `axis` (0: height, 1: width), as `burn-nn` computes it.
fn pad_pair(p: &PaddingConfig2d, axis: usize, size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    match p {
        PaddingConfig2d::Valid => (0, 0),
        PaddingConfig2d::Explicit(top, left, bottom, right) => {
            if axis == 0 {
                (*top, *bottom)
            } else {
                (*left, *right)
            }
        }
        PaddingConfig2d::Same => {
            let out = size.div_ceil(stride);
            let total = if out > 0 { ((out - 1) * stride + kernel).saturating_sub(size) } else { 0 };
            (total / 2, total - total / 2)
        }
    }
}

/// `clamp(x, lo, hi)` as an activation (ReLU6: [`relu6`]): one parallel pass forward and one
/// backward (Burn's `clamp` and its backward run single-threaded on flex). Same result as
/// `x.clamp(lo, hi)`; the gradient is passed where `lo < x < hi` (PyTorch's `hardtanh`).
pub fn clamp_act<const D: usize>(x: Tensor<D>, lo: f32, hi: f32) -> Tensor<D> {
    if !(enabled() && x.dtype() == DType::F32 && has_kernels(&x.device())) {
        return match (lo.is_finite(), hi.is_finite()) {
            (true, true) => x.clamp(lo, hi),
            (true, false) => x.clamp_min(lo),
            (false, true) => x.clamp_max(hi),
            (false, false) => x,
        };
    }
    let out = <burn::backend::Dispatch as NormActBackend>::clamp_act(x.into_dispatch(), lo, hi);
    Tensor::from_dispatch(out)
}

/// ReLU6, `clamp(x, 0, 6)`, through [`clamp_act`].
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    clamp_act(x, 0.0, 6.0)
}

/// `bn.forward(x)`: see [`batch_norm_act`] (no activation).
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    batch_norm_act(bn, x, f32::NEG_INFINITY, f32::INFINITY)
}

/// `clamp(bn.forward(x), lo, hi)` (`lo = 0, hi = 6`: ReLU6; `0, inf`: ReLU; `-inf, inf`: none)
/// for `x` `[N, C, ...]`, with Burn's semantics: batch statistics and a running-statistics update
/// when the device is autodiff and the module is training, the running statistics otherwise.
///
/// On flex / ndarray with `f32` tensors: training mode is one fused kernel forward (statistics,
/// then normalise) and one backward, with a hand-written autodiff backward; inference (no
/// autodiff) is one pass that also applies the activation. Elsewhere Burn's `BatchNorm`.
pub fn batch_norm_act<const D: usize>(bn: &BatchNorm, x: Tensor<D>, lo: f32, hi: f32) -> Tensor<D> {
    let device = x.device();
    let f32s = x.dtype() == DType::F32 && bn.gamma.val().dtype() == DType::F32 && bn.beta.val().dtype() == DType::F32;
    if !(enabled() && f32s && has_kernels(&device) && D >= 2) {
        return clamp_act(bn.forward(x), lo, hi);
    }
    let [c] = bn.gamma.dims();
    assert_eq!(x.dims()[1], c, "batch norm over {c} channels applied to an input of shape {:?}", x.dims());
    if device.is_autodiff() && bn.training.is_enabled() {
        let (out, mean, var) = <burn::backend::Dispatch as NormActBackend>::bn_train(
            x.into_dispatch(),
            bn.gamma.val().into_dispatch(),
            bn.beta.val().into_dispatch(),
            bn.epsilon,
        );
        let (out, mean, var): (Tensor<D>, Tensor<1>, Tensor<1>) =
            (Tensor::from_dispatch(out), Tensor::from_dispatch(mean), Tensor::from_dispatch(var));
        // The running-statistics update of Burn's `BatchNorm::forward_train`.
        let running_mean = bn.running_mean.value_sync().to_device(&device);
        let running_var = bn.running_var.value_sync().to_device(&device);
        let running_mean = running_mean.mul_scalar(1.0 - bn.momentum).add(mean.detach().mul_scalar(bn.momentum));
        let running_var = running_var.mul_scalar(1.0 - bn.momentum).add(var.detach().mul_scalar(bn.momentum));
        bn.running_mean.update(running_mean.detach());
        bn.running_var.update(running_var.detach());
        return clamp_act(out, lo, hi);
    }
    if device.is_autodiff() {
        // Inference statistics on an autodiff device: Burn's (differentiable) batch norm.
        return clamp_act(bn.forward(x), lo, hi);
    }
    let mean = bn.running_mean.value().to_device(&device);
    let var = bn.running_var.value().to_device(&device);
    if mean.dtype() != DType::F32 || var.dtype() != DType::F32 {
        return clamp_act(bn.forward(x), lo, hi);
    }
    let out = <burn::backend::Dispatch as NormActBackend>::bn_act(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        mean.into_dispatch(),
        var.into_dispatch(),
        bn.epsilon,
        lo,
        hi,
    );
    Tensor::from_dispatch(out)
}
