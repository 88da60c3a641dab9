//! Zero initialization, shown: an MLP whose weights start at zero keeps all its hidden units
//! identical however long it trains (the symmetry never breaks), while Kaiming init breaks it.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor};
use kiln_data::Dataset;
use kiln_train::{InitKind, initialize};

#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    out: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.out.forward(burn::tensor::activation::sigmoid(self.hidden.forward(x)))
    }
}

/// Trains 30 SGD steps and returns the largest difference between any hidden unit's incoming
/// weights and unit 0's, and the final training loss.
fn train(init: InitKind) -> (f32, f32) {
    let device = Device::flex().autodiff();
    let mut mlp = kiln_layers::seeded(&device, 7, || {
        let mlp =
            Mlp { hidden: LinearConfig::new(784, 16).init(&device), out: LinearConfig::new(16, 10).init(&device) };
        initialize(mlp, init)
    });
    let data = Dataset::mnist_5k().unwrap().train;
    let mut optim = SgdConfig::new().init();
    let mut loss_value = 0.0;
    for step in 0..30 {
        let idx: Vec<usize> = (step * 64..(step + 1) * 64).collect();
        let (x, y) = data.batch(&idx, &device);
        let logits = mlp.forward(x.flatten::<2>(1, 3));
        let loss = kiln_regularize::label_smoothing_cross_entropy(logits, y, 0.0);
        loss_value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &mlp);
        mlp = optim.step(0.5f64, mlp, grads);
    }
    // Burn's Linear weight is [in, out]: column j holds hidden unit j's incoming weights.
    let w = mlp.hidden.weight.val();
    let first = w.clone().slice([0..784, 0..1]);
    let spread = (w - first).abs().max().into_scalar::<f32>();
    (spread, loss_value)
}

#[test]
fn zero_init_never_breaks_symmetry_kaiming_does() {
    let (zero_spread, zero_loss) = train(InitKind::Zeros);
    let (kaiming_spread, kaiming_loss) = train(InitKind::Kaiming);
    println!(
        "zeros: spread {zero_spread:e}, loss {zero_loss}; kaiming: spread {kaiming_spread:e}, loss {kaiming_loss}"
    );
    // All 16 hidden units received identical updates: they are still one unit copied 16 times.
    assert!(zero_spread < 1e-6, "zero init: hidden units differ by {zero_spread}");
    // ... although the weights did move away from zero (the output layer and hidden layer learn).
    assert!(kaiming_spread > 0.1, "kaiming init: hidden units differ by only {kaiming_spread}");
    assert!(kaiming_loss < zero_loss, "kaiming {kaiming_loss} should train better than zeros {zero_loss}");
}
