//! The recipe: `cargo xtask train lenet5 --epochs 10 --optimizer momentum --lr 0.05
//! --batch-size 64` on mnist-5k reaches test accuracy >= 0.95 on flex and on ndarray (PyTorch with
//! the same recipe on the same split: 0.958). The same runs check the outputs, the saved model and
//! that the overfitting detector stays quiet on a healthy run.

mod common;

use burn::tensor::Device;
use kiln_models::Registry;
use kiln_train::{OptimizerKind, saved};

fn recipe(backend: &str, device: Device) {
    let mut cfg = common::config("lenet5", &format!("recipe-{backend}"));
    cfg.epochs = 10;
    cfg.optimizer = OptimizerKind::Momentum;
    cfg.lr = Some(0.05);
    cfg.batch_size = 64;
    let registry = Registry::builtin();
    let out = kiln_train::train(&registry, &cfg, backend, &device).expect("training runs");
    let r = &out.report;
    let acc = r.test_accuracy.expect("classification");
    println!(
        "{backend}: test accuracy {acc:.4}, epochs {:?}",
        r.epochs.iter().map(|e| e.val_accuracy).collect::<Vec<_>>()
    );
    assert!(acc >= 0.95, "{backend}: test accuracy {acc} < 0.95");
    assert_eq!(r.epochs.len(), 10);
    assert_eq!(r.split_sizes, [3600, 400, 1000]);
    assert!(!r.stopped_early);
    // LeNet-5's exact size (PyTorch's count) and MACs at 1x28x28.
    assert_eq!(r.params, 61_706);
    assert_eq!(r.macs, 416_520);
    // A healthy run: the detector is quiet and no layer's gradient vanishes or explodes.
    let verdict = r.overfitting.as_ref().expect("verdict");
    assert!(!verdict.overfitting, "{}", verdict.reason);
    assert!(r.gradient_probes.iter().all(|p| p.report.vanishing.is_empty() && p.report.exploding.is_empty()));
    // Training loss falls from the first epoch to the last.
    assert!(r.epochs[9].train_loss < 0.5 * r.epochs[0].train_loss);

    // The files, and metrics.json's schema.
    for f in ["metrics.json", "curves.svg", "report.md", "model.json", "model.bpk"] {
        assert!(cfg.out.join(f).is_file(), "{f} missing");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cfg.out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(json["model"], "lenet5");
    assert_eq!(json["backend"], backend);
    assert_eq!(json["stopped_early"], false);
    assert!((json["test_accuracy"].as_f64().unwrap() - acc).abs() < 1e-12);
    let e0 = &json["epochs"][0];
    for k in ["epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds"] {
        assert!(!e0[k].is_null(), "epochs[0].{k} missing");
    }
    assert_eq!(e0["lr"].as_f64(), Some(0.05));
    let svg = std::fs::read_to_string(cfg.out.join("curves.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 4, "train/val loss and accuracy curves");
    let md = std::fs::read_to_string(cfg.out.join("report.md")).unwrap();
    assert!(md.contains("Confusion matrix") && md.contains("Test accuracy"));

    // The saved model reloads and gives the same test accuracy.
    let loaded = saved::load(&registry, &cfg.out, &device).expect("reload");
    let test = kiln_data::Dataset::mnist_5k().unwrap().test.unwrap();
    let mut correct = 0;
    kiln_train::data::for_each_batch(&(), &test, &loaded.spec.input, 250, &device, |_, x, labels, _| {
        let kiln_models::Output::Logits(logits) = loaded.model.forward(x) else { panic!("logits") };
        let pred = logits.argmax(1).into_data().convert::<i64>().try_into_vec::<i64>().unwrap();
        correct += pred.iter().zip(&labels).filter(|(p, l)| **p as usize == **l).count();
    });
    assert!((correct as f64 / 1000.0 - acc).abs() < 1e-9, "reloaded accuracy {} vs {acc}", correct as f64 / 1000.0);
    let _ = std::fs::remove_dir_all(&cfg.out);
}

#[test]
fn lenet5_recipe_flex() {
    recipe("flex", Device::flex());
}

#[test]
#[allow(deprecated)]
fn lenet5_recipe_ndarray() {
    recipe("ndarray", Device::ndarray());
}
