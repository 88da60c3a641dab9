//! `cargo xtask cluster` and `cargo xtask rbm`: flags in, [`kiln_unsupervised`] calls, a table /
//! JSON and pictures out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_data::{Dataset, ImageDataset};
use kiln_models::Registry;
use kiln_unsupervised::kmeans::{ClusterReport, KMeansConfig, KMeansInit};
use kiln_unsupervised::picture::{save_grid_png, save_grid_png_rgb, write_atomic};
use kiln_unsupervised::rbm::{RbmConfig, binarize};
use kiln_unsupervised::{UnsupervisedError, flatten_images};

use crate::{Backend, CliError, Format};

/// Arguments of `cluster`.
#[derive(clap::Args, Debug)]
pub(crate) struct ClusterArgs {
    /// `mnist-5k` (built in) or a dataset folder (MNIST IDX, CIFAR-10 binary, or one subfolder per class).
    #[arg(long, default_value = "mnist-5k")]
    dataset: String,
    /// Which split to cluster: train | test.
    #[arg(long, default_value = "train")]
    split: String,
    /// Use only the first N images of the split.
    #[arg(long)]
    limit: Option<usize>,
    /// Number of clusters.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Independent k-means++ runs; the lowest inertia is kept.
    #[arg(long, default_value_t = 3)]
    restarts: usize,
    /// Maximum Lloyd iterations per run.
    #[arg(long, default_value_t = 300)]
    max_iters: usize,
    /// Relative tolerance on the centroid shift (scikit-learn's `tol`).
    #[arg(long, default_value_t = 1e-4)]
    tol: f64,
    /// Initialisation: plus-plus (k-means++) | random | linear.
    #[arg(long, default_value = "plus-plus")]
    init: String,
    /// Seed of the initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Folder for clusters.json (report + assignments) and centroids.png.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Arguments of `rbm`.
#[derive(clap::Args, Debug)]
pub(crate) struct RbmArgs {
    /// `mnist-5k` (built in) or a dataset folder; pixels are binarised at --threshold.
    #[arg(long, default_value = "mnist-5k")]
    dataset: String,
    /// Use only the first N training images.
    #[arg(long)]
    limit: Option<usize>,
    /// Hidden units.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Passes over the training split.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Gibbs steps per update (CD-k).
    #[arg(long, default_value_t = 1)]
    cd_k: usize,
    /// Persistent contrastive divergence (chains carried across mini-batches).
    #[arg(long)]
    persistent: bool,
    /// Learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// Momentum.
    #[arg(long, default_value_t = 0.5)]
    momentum: f64,
    /// L2 weight decay on the weights.
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Binarisation threshold of the pixels (in [0, 1]).
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Gibbs steps between two rows of samples.png.
    #[arg(long, default_value_t = 100)]
    gibbs_every: usize,
    /// Seed of the weights, shuffling and sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Output folder: metrics.json, filters.png, samples.png.
    #[arg(long)]
    out: PathBuf,
}

fn unsup_err(e: UnsupervisedError) -> CliError {
    match e {
        UnsupervisedError::InvalidArgument(_) | UnsupervisedError::InvalidInput(_) => CliError::Usage(e.to_string()),
        other => CliError::Failed(other.to_string()),
    }
}

fn load(dataset: &str) -> Result<Dataset, CliError> {
    Dataset::load(dataset, None).map_err(|e| CliError::Usage(e.to_string()))
}

fn limited(data: &ImageDataset, limit: Option<usize>) -> Result<ImageDataset, CliError> {
    match limit {
        None => Ok(data.clone()),
        Some(0) => Err(CliError::Usage("--limit must be at least 1".into())),
        Some(n) => {
            let idx: Vec<usize> = (0..n.min(data.len())).collect();
            data.subset(&idx).map_err(|e| CliError::Usage(e.to_string()))
        }
    }
}

fn out_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Failed(format!("cannot create output folder {}: {e}", dir.display())))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(value).expect("serializable") + "\n";
    write_atomic(path, s.as_bytes()).map_err(unsup_err)
}

/// Draws `images` (`[C, H, W]` each) as a grid: grayscale for 1 channel, RGB for 3, the channel
/// mean otherwise.
fn save_images(
    path: &Path,
    images: &[Vec<f32>],
    [c, h, w]: [usize; 3],
    cols: usize,
    scale: usize,
) -> Result<(), CliError> {
    let r = match c {
        1 => save_grid_png(path, images, h, w, cols, scale),
        3 => save_grid_png_rgb(path, images, h, w, cols, scale),
        _ => {
            let gray: Vec<Vec<f32>> = images
                .iter()
                .map(|im| (0..h * w).map(|p| (0..c).map(|ch| im[ch * h * w + p]).sum::<f32>() / c as f32).collect())
                .collect();
            save_grid_png(path, &gray, h, w, cols, scale)
        }
    };
    r.map_err(unsup_err)
}

fn scale_for(h: usize) -> usize {
    (56 / h.max(1)).clamp(1, 4)
}

pub(crate) fn run_cluster(_registry: &Registry, args: &ClusterArgs) -> Result<(), CliError> {
    let init = match args.init.as_str() {
        "plus-plus" | "k-means++" | "kmeans++" | "++" => KMeansInit::PlusPlus,
        "random" => KMeansInit::Random,
        "linear" => KMeansInit::Linear,
        other => {
            return Err(CliError::Usage(format!("unknown --init '{other}': expected plus-plus, random or linear")));
        }
    };
    let config = KMeansConfig {
        k: args.k,
        max_iters: args.max_iters,
        tol: args.tol,
        restarts: args.restarts,
        seed: args.seed,
        init,
    };
    let data = load(&args.dataset)?;
    let split = match args.split.as_str() {
        "train" => &data.train,
        "test" => data.test().map_err(|e| CliError::Usage(e.to_string()))?,
        other => return Err(CliError::Usage(format!("unknown --split '{other}': expected train or test"))),
    };
    let split = limited(split, args.limit)?;
    let device = args.backend.device()?;
    let start = Instant::now();
    let fit = config.fit(flatten_images(&split, &device)).map_err(unsup_err)?;
    let seconds = start.elapsed().as_secs_f64();
    let report = fit.report(Some(split.labels())).map_err(unsup_err)?;
    // The report's fields, with what was run next to them.
    let mut output = serde_json::to_value(&report).expect("serializable");
    output["dataset"] = args.dataset.clone().into();
    output["split"] = args.split.clone().into();
    output["backend"] = args.backend.name().into();
    output["config"] = serde_json::to_value(&config).expect("serializable");
    output["seconds"] = seconds.into();

    if let Some(dir) = &args.out {
        out_dir(dir)?;
        let mut v = output.clone();
        v["assignments"] = serde_json::to_value(&fit.assignments).expect("serializable");
        write_json(&dir.join("clusters.json"), &v)?;
        let [k, d] = fit.centroids.dims();
        let cents = fit
            .centroids
            .clone()
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| CliError::Failed(format!("{e:?}")))?;
        let images: Vec<Vec<f32>> = cents.chunks(d).map(|c| c.to_vec()).collect();
        debug_assert_eq!(images.len(), k);
        save_images(&dir.join("centroids.png"), &images, split.image_shape(), k.min(10), scale_for(split.height()))?;
    }

    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&output).expect("serializable") + "\n",
        Format::Table | Format::Md => cluster_table(args, &split, &report, seconds, args.format == Format::Md),
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    if let Some(dir) = &args.out {
        eprintln!("wrote {} and {}", dir.join("clusters.json").display(), dir.join("centroids.png").display());
    }
    Ok(())
}

fn cluster_table(args: &ClusterArgs, split: &ImageDataset, r: &ClusterReport, seconds: f64, md: bool) -> String {
    let names = split.class_names();
    let label_name = |l: usize| names.get(l).cloned().unwrap_or_else(|| l.to_string());
    let mut s = format!(
        "k-means on {} ({}: {} x {}), k = {}, {} restart(s), {}\n\n",
        args.dataset,
        args.split,
        r.n,
        r.dim,
        r.k,
        r.restarts_inertia.len(),
        args.backend.name()
    );
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
    let rows = [
        ("inertia", format!("{:.2}", r.inertia)),
        (
            "iterations",
            format!("{}{}", r.iterations, if r.converged { " (converged)" } else { " (max-iters reached)" }),
        ),
        ("restarts inertia", r.restarts_inertia.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")),
        ("purity", opt(r.purity)),
        ("NMI", opt(r.nmi)),
        ("ARI", opt(r.ari)),
        ("time", format!("{seconds:.2} s")),
    ];
    if md {
        s += "| metric | value |\n|---|---:|\n";
        for (k, v) in rows {
            s += &format!("| {k} | {v} |\n");
        }
        s += "\n| cluster | size | majority label |\n|---:|---:|---|\n";
    } else {
        for (k, v) in rows {
            s += &format!("{k:<18} {v}\n");
        }
        s += &format!("\n{:>7}  {:>6}  {}\n", "cluster", "size", "majority label");
    }
    for (c, size) in r.cluster_sizes.iter().enumerate() {
        let maj = r.majority_label.as_ref().map(|m| label_name(m[c])).unwrap_or_else(|| "-".into());
        if md {
            s += &format!("| {c} | {size} | {maj} |\n");
        } else {
            s += &format!("{c:>7}  {size:>6}  {maj}\n");
        }
    }
    s
}

pub(crate) fn run_rbm(_registry: &Registry, args: &RbmArgs) -> Result<(), CliError> {
    if !(0.0..=1.0).contains(&args.threshold) {
        return Err(CliError::Usage(format!("--threshold must be in [0, 1], got {}", args.threshold)));
    }
    if args.gibbs_every == 0 {
        return Err(CliError::Usage("--gibbs-every must be at least 1".into()));
    }
    let config = RbmConfig {
        hidden: args.hidden,
        k: args.cd_k,
        persistent: args.persistent,
        lr: args.lr,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        batch_size: args.batch_size,
        epochs: args.epochs,
        seed: args.seed,
        ..RbmConfig::default()
    };
    config.validate().map_err(unsup_err)?;
    let data = load(&args.dataset)?;
    let train = limited(&data.train, args.limit)?;
    let shape = train.image_shape();
    let device = args.backend.device()?;
    let x = binarize(flatten_images(&train, &device), args.threshold);
    let val = data.test.as_ref().map(|t| binarize(flatten_images(t, &device), args.threshold));
    out_dir(&args.out)?;
    let start = Instant::now();
    let epochs = args.epochs;
    let fit = config
        .fit(x.clone(), val.clone(), |e| {
            let val = e.free_energy_val.map(|v| format!("  F(val) {v:.2}")).unwrap_or_default();
            let _ = writeln!(
                std::io::stdout(),
                "epoch {}/{epochs}  recon error {:.5}  F(train) {:.2}{val}  ({:.1} s)",
                e.epoch,
                e.reconstruction_error,
                e.free_energy_train,
                e.seconds
            );
        })
        .map_err(unsup_err)?;
    let seconds = start.elapsed().as_secs_f64();

    let filters = fit.rbm.filters().map_err(unsup_err)?;
    let scale = scale_for(shape[1]);
    save_images(&args.out.join("filters.png"), &filters, shape, (args.hidden as f64).sqrt().ceil() as usize, scale)?;

    // Gibbs chains from 10 held-out images (training ones when there is no test split): the first
    // row is the data, each next row `gibbs_every` steps further.
    let source = val.clone().unwrap_or(x);
    let [n, v] = source.dims();
    let chains = n.min(10);
    let v0 = source.slice([0..chains, 0..v]);
    let mut rows = vec![v0.clone()];
    rows.extend(fit.rbm.gibbs_chain(v0, 8, args.gibbs_every, args.seed.wrapping_add(1)));
    let mut images = Vec::with_capacity(rows.len() * chains);
    for r in rows {
        let vals = r.into_data().try_into_vec_as::<f32>().map_err(|e| CliError::Failed(format!("{e:?}")))?;
        images.extend(vals.chunks(v).map(|c| c.to_vec()));
    }
    save_images(&args.out.join("samples.png"), &images, shape, chains, scale)?;

    let output = serde_json::json!({
        "dataset": args.dataset,
        "backend": args.backend.name(),
        "config": config,
        "threshold": args.threshold,
        "train_samples": train.len(),
        "val_samples": data.test.as_ref().map_or(0, |t| t.len()),
        "seconds": seconds,
        "history": fit.history,
    });
    write_json(&args.out.join("metrics.json"), &output)?;
    eprintln!("wrote metrics.json, filters.png and samples.png to {}", args.out.display());
    Ok(())
}
