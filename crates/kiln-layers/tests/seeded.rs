//! `seeded` under concurrent callers. This test lives in its own binary on purpose: `seeded` holds
//! back other `seeded` callers only, and the crate's unit tests draw from Burn's process-wide
//! generator (`Tensor::random`, lazy `init`) without the lock, in parallel, which would change
//! the weights drawn here and make the assertion depend on test scheduling.

use burn::nn::LinearConfig;
use burn::tensor::Device;

#[test]
fn same_seed_same_weights_under_concurrent_draws() {
    let device = Device::flex();
    let reference = kiln_layers::seeded(&device, 3, || LinearConfig::new(64, 64).init(&device)).weight.val();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let device = device.clone();
            std::thread::spawn(move || {
                (0..20)
                    .map(|_| kiln_layers::seeded(&device, 3 + i % 2, || LinearConfig::new(64, 64).init(&device)))
                    .map(|l| l.weight.val())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        for w in t.join().unwrap() {
            let diff = (w - reference.clone()).abs().max().into_scalar::<f32>();
            if i % 2 == 0 {
                assert_eq!(diff, 0.0, "seed 3 gave other weights");
            } else {
                assert!(diff > 0.0, "seed 4 gave seed 3's weights");
            }
        }
    }
}
