//! The dense-prediction and up/down-sampling nets of the zoo (segnet, deeplab_mobilenet_v2, unet,
//! yolov5_focus_backbone, conv_autoencoder): output shapes, the analyzer against a real forward
//! pass, exact parameter / buffer / MAC counts against PyTorch twins, and a short training run
//! per net showing the gradients flow (the loss falls).
//!
//! Reference numbers: the PyTorch twins given in each model file's docs (torch 2 /
//! torchvision 0.2x; for DeepLab, torchvision's `mobilenet_v2(width_mult).features[:-1]` with
//! blocks 14-17 dilated and torchvision's `ASPP(c, [6, 12, 18], 128)` + `DeepLabHead` layers;
//! for YOLOv5, `models/common.py` of ultralytics/yolov5 v5.0), counted with forward hooks:
//! Conv2d = output elements x in/groups x kh x kw, ConvTranspose2d = input elements x
//! out/groups x kh x kw, Linear = rows x in x out; buffers = BN running mean + var.

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_analyze::{Status, analyze};
use kiln_models::autoencoder::ConvAutoencoderConfig;
use kiln_models::deeplab::DeepLabMobileNetV2Config;
use kiln_models::segnet::SegNetConfig;
use kiln_models::unet::UNetConfig;
use kiln_models::yolov5_focus::YoloV5FocusBackboneConfig;
use kiln_models::{ModelOptions, Registry};

// Burn keeps one random generator per process: every test of this binary draws from it under
// kiln's seeding lock (`kiln_layers::seeded_with`), the training runs included (initial weights,
// lazy parameters, dropout masks), so each seeded test gets the numbers its seed gives whatever
// runs beside it.

/// Uniform `[0, 1)` numbers from a fixed linear congruential sequence (no global RNG, so the
/// data is the same whatever other tests run in parallel).
fn uniform(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn image(seed: u64, shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(uniform(seed, shape.iter().product()), shape), device)
}

/// Per-pixel labels constant over `block x block` tiles (a target a downsampling net can fit),
/// flattened to `[N * H * W]` in `[N, H, W]` order.
fn block_labels(seed: u64, [n, h, w]: [usize; 3], classes: usize, block: usize, device: &Device) -> Tensor<1, Int> {
    let (bh, bw) = (h.div_ceil(block), w.div_ceil(block));
    let tiles = uniform(seed, n * bh * bw);
    let mut labels = Vec::with_capacity(n * h * w);
    for i in 0..n {
        for y in 0..h {
            for x in 0..w {
                let u = tiles[(i * bh + y / block) * bw + x / block];
                labels.push(((u * classes as f32) as i64).min(classes as i64 - 1));
            }
        }
    }
    Tensor::from_data(TensorData::new(labels, [n * h * w]), device)
}

/// Per-pixel cross-entropy of `[N, C, H, W]` scores against `[N * H * W]` labels.
fn pixel_cross_entropy(logits: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [n, c, h, w] = logits.dims();
    let flat = logits.permute([0, 2, 3, 1]).reshape([n * h * w, c]);
    CrossEntropyLossConfig::new().init(&flat.device()).forward(flat, labels)
}

/// Builds a model from `seed` and runs `steps` Adam steps on `loss(model)`; returns the loss
/// before and after. The whole run holds the seeding lock: the initial weights and every dropout
/// mask come from `seed` alone, whatever the tests beside it draw.
fn train<M: Module>(
    device: &Device,
    seed: u64,
    build: impl FnOnce() -> M,
    steps: usize,
    lr: f64,
    loss: impl Fn(&M) -> Tensor<1>,
) -> (f32, f32) {
    kiln_layers::seeded_with(device, seed, || {
        let mut model = build();
        let mut optim = AdamConfig::new().init();
        let mut first = None;
        for _ in 0..steps {
            let l = loss(&model);
            let v = l.clone().into_scalar::<f32>();
            assert!(v.is_finite(), "loss {v}");
            first.get_or_insert(v);
            let grads = GradientsParams::from_grads(l.backward(), &model);
            model = optim.step(lr, model, grads);
        }
        let (before, after) = (first.expect("at least one step"), loss(&model).into_scalar::<f32>());
        eprintln!("{} Adam steps: loss {before:.4} -> {after:.4}", steps);
        (before, after)
    })
}

struct Expect {
    name: &'static str,
    opts: ModelOptions,
    params: u64,
    buffers: u64,
    /// `(input [N, C, H, W], MACs of the PyTorch twin at that input, its output shape)`
    at: &'static [([usize; 4], u64, [usize; 4])],
}

fn opts(num_classes: usize, width_mult: f64, in_channels: usize) -> ModelOptions {
    ModelOptions { num_classes, width_mult, in_channels, dropout: None }
}

fn expectations() -> Vec<Expect> {
    vec![
        Expect {
            name: "segnet",
            opts: opts(21, 1.0, 3),
            params: 149_429,
            buffers: 800,
            at: &[
                ([1, 3, 64, 64], 99_090_432, [1, 21, 64, 64]),
                ([1, 3, 48, 64], 74_317_824, [1, 21, 48, 64]),
                ([1, 3, 45, 61], 64_955_520, [1, 21, 45, 61]),
            ],
        },
        Expect {
            name: "unet",
            opts: opts(2, 1.0, 3),
            params: 1_942_594,
            buffers: 2_944,
            at: &[
                ([1, 3, 64, 64], 189_595_648, [1, 2, 64, 64]),
                ([1, 3, 48, 64], 142_196_736, [1, 2, 48, 64]),
                ([1, 3, 45, 61], 114_484_048, [1, 2, 45, 61]),
            ],
        },
        Expect {
            name: "deeplab_mobilenet_v2",
            opts: opts(21, 1.0, 3),
            params: 3_233_429,
            buffers: 33_344,
            at: &[([1, 3, 64, 64], 59_295_744, [1, 21, 64, 64]), ([1, 3, 48, 64], 44_482_048, [1, 21, 48, 64])],
        },
        Expect {
            name: "deeplab_mobilenet_v2",
            opts: opts(21, 0.5, 3),
            params: 1_308_117,
            buffers: 17_776,
            at: &[([1, 3, 64, 64], 23_602_688, [1, 21, 64, 64]), ([1, 3, 48, 64], 17_707_136, [1, 21, 48, 64])],
        },
        Expect {
            name: "yolov5_focus_backbone",
            opts: opts(1000, 1.0, 3),
            params: 1_056_736,
            buffers: 5_408,
            at: &[
                ([1, 3, 64, 64], 14_483_456, [1, 256, 2, 2]),
                ([1, 3, 48, 64], 11_616_256, [1, 256, 2, 2]),
                ([1, 3, 224, 224], 177_422_336, [1, 256, 7, 7]),
            ],
        },
        // width_mult 2 -> width_multiple 0.5, yolov5s's widths.
        Expect {
            name: "yolov5_focus_backbone",
            opts: opts(1000, 2.0, 3),
            params: 4_212_672,
            buffers: 10_816,
            at: &[([1, 3, 64, 64], 54_394_880, [1, 512, 2, 2])],
        },
        Expect {
            name: "conv_autoencoder",
            opts: opts(10, 1.0, 1),
            params: 61_329,
            buffers: 0,
            at: &[([1, 1, 28, 28], 558_208, [1, 1, 28, 28])],
        },
    ]
}

#[test]
fn counts_and_shapes_match_pytorch_twins_and_a_real_forward_pass() {
    let device = Device::flex();
    kiln_layers::seeded_with(&device, 0, || {
        let reg = Registry::builtin();
        for e in expectations() {
            let model = reg.build(e.name, &e.opts, &device).unwrap();
            for &(input, macs, out) in e.at {
                let rep = analyze(model.as_ref(), e.name, &input).unwrap();
                let t = &rep.total;
                let what = format!("{} (width {}) at {:?}", e.name, e.opts.width_mult, input);
                assert_eq!(t.params, e.params, "{what} params");
                assert_eq!(t.buffers, e.buffers, "{what} buffers");
                assert_eq!(t.macs, macs, "{what} macs");
                assert_eq!(t.output_shape, out.to_vec(), "{what} analyzer output");
                assert_eq!(t.status, Status::Complete, "{what}: every op has a formula ({:?})", t.partial_ops);
                // A real forward pass at batch 2 agrees with the analyzer.
                let batch = [2, input[1], input[2], input[3]];
                let rep2 = analyze(model.as_ref(), e.name, &batch).unwrap();
                let y = model.forward(image(7, batch, &device));
                assert_eq!(y.dims(), rep2.total.output_shape, "{what} forward vs analyzer");
                assert_eq!(y.dims(), vec![2, out[1], out[2], out[3]], "{what} forward");
                assert_eq!(model.num_params() as u64, t.params + t.buffers, "{what} num_params");
            }
        }
    });
}

#[test]
fn segmentation_nets_keep_the_input_resolution() {
    let device = Device::flex();
    kiln_layers::seeded_with(&device, 0, || {
        let reg = Registry::builtin();
        for name in ["segnet", "deeplab_mobilenet_v2", "unet"] {
            let model = reg.build(name, &opts(5, 1.0, 3), &device).unwrap();
            for [h, w] in [[64, 64], [48, 64], [33, 47]] {
                let y = model.forward(image(1, [1, 3, h, w], &device));
                assert_eq!(y.dims(), vec![1, 5, h, w], "{name} at {h}x{w}");
                let rep = analyze(model.as_ref(), name, &[1, 3, h, w]).unwrap();
                assert_eq!(rep.total.output_shape, vec![1, 5, h, w], "{name} analyzer at {h}x{w}");
            }
        }
    });
}

#[test]
fn layer_rows_carry_the_pytorch_names() {
    let device = Device::flex();
    kiln_layers::seeded_with(&device, 0, || {
        let reg = Registry::builtin();
        let rows = |name: &str, o: ModelOptions, input: &[usize]| {
            let m = reg.build(name, &o, &device).unwrap();
            analyze(m.as_ref(), name, input).unwrap().layers
        };
        let find = |layers: &[kiln_analyze::Layer], n: &str| {
            layers.iter().find(|l| l.name == n).unwrap_or_else(|| panic!("no row {n}")).clone()
        };
        // DeepLab: dilated last stages at output stride 16, torchvision's ASPP names.
        let l = rows("deeplab_mobilenet_v2", opts(21, 1.0, 3), &[1, 3, 64, 64]);
        assert_eq!(find(&l, "backbone.14.conv.1.0").detail, "576->576 k3x3 s1 d2 g576");
        assert_eq!(find(&l, "backbone.13.conv.1.0").detail, "576->576 k3x3 s1 g576");
        assert_eq!(find(&l, "backbone.17.conv.2").output_shape, vec![1, 320, 4, 4]);
        assert_eq!(find(&l, "classifier.0.convs.3.0").detail, "320->128 k3x3 s1 d18");
        assert_eq!(find(&l, "classifier.0.convs.4.1").output_shape, vec![1, 128, 1, 1]);
        assert_eq!(find(&l, "classifier.0.project.0").output_shape, vec![1, 128, 4, 4]);
        assert_eq!(find(&l, "classifier.4").output_shape, vec![1, 21, 4, 4]);
        // U-Net: milesial names.
        let l = rows("unet", opts(2, 1.0, 3), &[1, 3, 64, 64]);
        assert_eq!(find(&l, "down4.maxpool_conv.1.double_conv.3").output_shape, vec![1, 256, 4, 4]);
        assert_eq!(find(&l, "up1.up").op, "ConvTranspose2d");
        assert_eq!(find(&l, "up1.cat").output_shape, vec![1, 256, 8, 8]);
        assert_eq!(find(&l, "outc.conv").output_shape, vec![1, 2, 64, 64]);
        // YOLOv5: model.N paths.
        let l = rows("yolov5_focus_backbone", opts(1000, 1.0, 3), &[1, 3, 64, 64]);
        assert_eq!(find(&l, "model.0.conv.conv").output_shape, vec![1, 16, 32, 32]);
        assert_eq!(find(&l, "model.4.m.2.cv2.bn").output_shape, vec![1, 32, 8, 8]);
        assert_eq!(find(&l, "model.8.m.2").detail, "k13x13 s1");
        assert_eq!(find(&l, "model.9.cv3.act").output_shape, vec![1, 256, 2, 2]);
        // SegNet: unpooling mirrors the pools.
        let l = rows("segnet", opts(21, 1.0, 3), &[1, 3, 45, 61]);
        assert_eq!(find(&l, "pool2").output_shape, vec![1, 64, 5, 7]);
        assert_eq!(find(&l, "unpool2").output_shape, vec![1, 64, 11, 15]);
        assert_eq!(find(&l, "unpool0").output_shape, vec![1, 16, 45, 61]);
    });
}

#[test]
fn autoencoder_encodes_and_decodes() {
    let device = Device::flex();
    kiln_layers::seeded_with(&device, 0, || {
        let ae = ConvAutoencoderConfig::new().init(&device);
        let x = image(3, [4, 1, 28, 28], &device);
        let code = ae.encode(x.clone());
        assert_eq!(code.dims(), [4, 16]);
        let y = ae.decode(code);
        assert_eq!(y.dims(), [4, 1, 28, 28]);
        let v = y.clone().into_data().try_to_vec::<f32>().unwrap();
        assert!(v.iter().all(|&p| p > 0.0 && p < 1.0));
        let direct = ae.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v, direct);
        let ae = ConvAutoencoderConfig::new().with_code_size(8).with_in_channels(3).with_image_size(32).init(&device);
        assert_eq!(ae.encode(image(3, [1, 3, 32, 32], &device)).dims(), [1, 8]);
        assert_eq!(ae.forward(image(3, [1, 3, 32, 32], &device)).dims(), [1, 3, 32, 32]);
    });
}

#[test]
fn train_segnet() {
    let device = Device::flex().autodiff();
    let x = image(21, [2, 3, 32, 32], &device);
    let labels = block_labels(22, [2, 32, 32], 4, 8, &device);
    let (before, after) = train(
        &device,
        11,
        || SegNetConfig::new().with_num_classes(4).init(&device),
        8,
        1e-2,
        |m| pixel_cross_entropy(m.forward(x.clone()), labels.clone()),
    );
    assert!(after < 0.9 * before, "segnet loss {before} -> {after}");
}

#[test]
fn train_deeplab() {
    let device = Device::flex().autodiff();
    let x = image(31, [2, 3, 64, 64], &device);
    let labels = block_labels(32, [2, 64, 64], 4, 16, &device);
    let (before, after) = train(
        &device,
        12,
        || DeepLabMobileNetV2Config::new().with_num_classes(4).with_width_mult(0.5).init(&device),
        8,
        1e-2,
        |m| pixel_cross_entropy(m.forward(x.clone()), labels.clone()),
    );
    assert!(after < 0.9 * before, "deeplab loss {before} -> {after}");
}

#[test]
fn train_unet() {
    let device = Device::flex().autodiff();
    let x = image(41, [2, 3, 32, 32], &device);
    let labels = block_labels(42, [2, 32, 32], 4, 8, &device);
    let (before, after) = train(
        &device,
        13,
        || UNetConfig::new().with_num_classes(4).with_depth(3).init(&device),
        8,
        1e-2,
        |m| pixel_cross_entropy(m.forward(x.clone()), labels.clone()),
    );
    assert!(after < 0.9 * before, "unet loss {before} -> {after}");
}

#[test]
fn train_yolov5_backbone() {
    let device = Device::flex().autodiff();
    let x = image(51, [2, 3, 64, 64], &device);
    let target = image(52, [2, 256, 2, 2], &device);
    let (before, after) = train(
        &device,
        14,
        || YoloV5FocusBackboneConfig::new().init(&device),
        8,
        1e-2,
        |m| MseLoss::new().forward(m.forward(x.clone()), target.clone(), Reduction::Mean),
    );
    assert!(after < 0.9 * before, "yolov5 loss {before} -> {after}");
}

#[test]
fn train_autoencoder() {
    let device = Device::flex().autodiff();
    let x = image(61, [2, 1, 28, 28], &device);
    let (before, after) = train(
        &device,
        15,
        || ConvAutoencoderConfig::new().init(&device),
        8,
        1e-2,
        |m| MseLoss::new().forward(m.forward(x.clone()), x.clone(), Reduction::Mean),
    );
    assert!(after < 0.9 * before, "autoencoder loss {before} -> {after}");
}
