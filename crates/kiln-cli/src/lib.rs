//! # kiln-cli
//!
//! The commands behind `cargo xtask`: flag parsing, backend selection, output formatting. Each
//! command calls a library crate for the work. Plugin crates run the same commands over their own
//! [`Registry`] with [`main_with`], so a model they register is analyzed by exactly the code path
//! the built-in ones use.

use std::ffi::OsString;
use std::process::ExitCode;

use burn::tensor::Device;
use clap::{Parser, Subcommand, ValueEnum};

mod args;
mod bench;
mod compress;
mod train;
mod unsupervised;
use kiln_analyze::Report;
use kiln_models::{ModelOptions, Registry};

/// A backend chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// burn-flex, the maintained CPU backend (default: 3-4x faster than ndarray on convolutions
    /// here).
    Flex,
    /// burn-ndarray (deprecated in Burn 0.22, kept supported and tested).
    Ndarray,
    /// wgpu (Vulkan / Metal / DX12; lavapipe on a CPU-only Linux machine).
    Wgpu,
}

impl Backend {
    /// The device for this backend.
    pub fn device(self) -> Result<Device, CliError> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[allow(deprecated)]
            Backend::Ndarray => Ok(Device::ndarray()),
            Backend::Wgpu => wgpu_device(),
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        }
    }
}

fn wgpu_device() -> Result<Device, CliError> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

/// Errors a command reports as one line, with exit code 2 (usage) or 1 (failure).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags, unknown names, malformed shapes.
    #[error("{0}")]
    Usage(String),
    /// The work itself failed.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    fn code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "kiln: build, understand, train and shrink CNNs", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Per-layer and total cost of a model: shapes, params, MACs/FLOPs, memory, receptive field.
    Analyze(AnalyzeArgs),
    /// Run a model on a .npy input with torchvision / timm weights (.pth) or a trained model folder.
    Run(RunArgs),
    /// Train a zoo model on a dataset (burn-train Learner): metrics.json, curves.svg, report.md, model.
    Train(train::TrainArgs),
    /// Compress a trained model: pruning, BN folding, int8 quantization, distillation.
    Compress(compress::CompressArgs),
    /// k-means clustering of a dataset's pixels (purity, NMI, inertia).
    Cluster(unsupervised::ClusterArgs),
    /// Train a Bernoulli RBM with contrastive divergence; filter and sample pictures.
    Rbm(unsupervised::RbmArgs),
    /// Benchmarks, optionally side by side with PyTorch (--compare-torch).
    Bench(bench::BenchArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Model name.
    model: String,
    /// A state_dict saved with torch.save (torchvision / timm key names), or a folder written by
    /// `cargo xtask train` (its model.json / model.bpk; the input is then raw images in the
    /// dataset's pixel range and the saved scaling and input adaptation are applied).
    #[arg(long)]
    weights: std::path::PathBuf,
    /// Input, float32 NCHW .npy.
    #[arg(long)]
    input: std::path::PathBuf,
    /// Output .npy (written only on success).
    #[arg(long)]
    output: std::path::PathBuf,
    /// Number of classes of the checkpoint.
    #[arg(long, default_value_t = 1000)]
    num_classes: usize,
    /// Width multiplier of the checkpoint.
    #[arg(long, default_value_t = 1.0)]
    width_mult: f64,
    /// Backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
}

/// Output format of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Terminal table (like torchinfo).
    Table,
    /// JSON (schema in docs/zoo.md).
    Json,
    /// Markdown.
    Md,
}

#[derive(clap::Args, Debug)]
struct AnalyzeArgs {
    /// Model name (see --list), `op:NAME` for a single registered op, or an ONNX file
    /// (`path/to/model.onnx`; its weights, in the file or beside it, are never read).
    model: Option<String>,
    /// Print the registry: one line per model with params and MACs at its default input.
    #[arg(long)]
    list: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Fold rows into blocks of this many path components (e.g. 2: `features.3`).
    #[arg(long)]
    depth: Option<usize>,
    /// Input shape without batch, e.g. 3x224x224 (default: the model's); for an ONNX file also
    /// with it (1x3x224x224), which a dynamic batch or size needs.
    #[arg(long)]
    input: Option<String>,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Number of classes (default: the model's own, e.g. 1000 for ImageNet nets, 10 for lenet5).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    num_classes: usize,
    /// Width multiplier (MobileNets).
    #[arg(long, default_value_t = 1.0)]
    width_mult: f64,
    /// Backend the model is instantiated on.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Analyze a trained model: a folder written by `cargo xtask train` (or compress); its
    /// architecture, options, weights and input size are used.
    #[arg(long, value_name = "DIR")]
    from: Option<std::path::PathBuf>,
}

/// Parses `3x224x224` (also `3,224,224` or `224`).
pub fn parse_shape(s: &str) -> Result<Vec<usize>, CliError> {
    let bad =
        || CliError::Usage(format!("bad shape '{s}': expected positive integers separated by 'x', e.g. 3x224x224"));
    let dims: Vec<usize> = s
        .split(['x', 'X', ',', '*'])
        .map(|p| p.trim().parse::<usize>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if dims.is_empty() || dims.contains(&0) {
        return Err(bad());
    }
    Ok(dims)
}

/// Runs kiln's CLI over `registry` with the given arguments (the first is the program name) and
/// returns the process exit code. Errors are printed as one line on stderr.
pub fn main_with<I, T>(registry: Registry, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Analyze(a) => run_analyze(&registry, &a).map(|s| print!("{s}")),
        Command::Run(r) => run_run(&registry, &r).map(|s| eprintln!("{s}")),
        Command::Train(a) => train::run(&registry, &a),
        Command::Compress(a) => compress::run(&registry, &a),
        Command::Cluster(a) => unsupervised::run_cluster(&registry, &a),
        Command::Rbm(a) => unsupervised::run_rbm(&registry, &a),
        Command::Bench(a) => bench::run(&registry, &a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code())
        }
    }
}

fn is_trained_model(path: &std::path::Path) -> bool {
    path.is_dir() || matches!(path.extension().and_then(|e| e.to_str()), Some("bpk") | Some("json"))
}

/// `run` on a folder written by `cargo xtask train`.
fn run_trained(registry: &Registry, r: &RunArgs, input: &kiln_models::npy::NpyArray) -> Result<String, CliError> {
    let device = r.backend.device()?;
    let usage = |e: &dyn std::fmt::Display| CliError::Usage(e.to_string());
    let spec = kiln_train::saved::load_spec(&r.weights).map_err(|e| usage(&e))?;
    let asked = registry.get(&r.model).map_err(|e| usage(&e))?.name.clone();
    if asked != spec.model {
        return Err(CliError::Usage(format!(
            "{} holds a trained {}, not {asked}; run it as `cargo xtask run {} --weights ...`",
            r.weights.display(),
            spec.model,
            spec.model
        )));
    }
    let [c, h, w] = spec.input.data_shape;
    if input.shape.len() != 4 || input.shape[1..] != [c, h, w] {
        return Err(CliError::Usage(format!(
            "input shape {:?} does not match the data the model was trained on: expected [N, {c}, {h}, {w}] raw images",
            input.shape
        )));
    }
    let saved = kiln_train::saved::load(registry, &r.weights, &device).map_err(|e| CliError::Failed(e.to_string()))?;
    let shape = [input.shape[0], c, h, w];
    let x = burn::tensor::Tensor::<4>::from_data(burn::tensor::TensorData::new(input.data.clone(), shape), &device);
    let (out_shape, data) = match saved.model.forward(saved.spec.input.apply(x)) {
        kiln_models::Output::Logits(t) => (t.dims().to_vec(), t.into_data()),
        kiln_models::Output::Map(t) => (t.dims().to_vec(), t.into_data()),
    };
    let data = data.convert::<f32>().try_into_vec::<f32>().map_err(|e| CliError::Failed(format!("{e:?}")))?;
    let out = kiln_models::npy::NpyArray { shape: out_shape, data };
    check_output(&out, &r.weights)?;
    kiln_models::npy::write(&r.output, &out).map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(format!(
        "{} (trained, {}): {:?} -> {:?} written to {} ({})",
        spec.model,
        r.weights.display(),
        input.shape,
        out.shape,
        r.output.display(),
        r.backend.name()
    ))
}

fn run_run(registry: &Registry, r: &RunArgs) -> Result<String, CliError> {
    // An unavailable backend is reported before any file is read.
    r.backend.device()?;
    registry.get(&r.model).map_err(|e| CliError::Usage(e.to_string()))?;
    let input = kiln_models::npy::read(&r.input).map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(why) = non_finite(&input.data) {
        return Err(CliError::Usage(format!(
            "{} holds {why}; replace them (e.g. np.nan_to_num) before running",
            r.input.display()
        )));
    }
    let out =
        if is_trained_model(&r.weights) { run_trained(registry, r, &input)? } else { run_zoo(registry, r, &input)? };
    Ok(out)
}

/// `None` when every value is finite; otherwise how many are NaN / Inf and where the first is.
fn non_finite(data: &[f32]) -> Option<String> {
    let first = data.iter().position(|v| !v.is_finite())?;
    let count = data.iter().filter(|v| !v.is_finite()).count();
    Some(format!("{count} NaN / Inf values (the first at flat index {first}: {})", data[first]))
}

/// A finite input gave a non-finite output: the weights are to blame (NaN / Inf in the file, or
/// values so large the forward pass overflows). Nothing is written.
fn check_output(out: &kiln_models::npy::NpyArray, weights: &std::path::Path) -> Result<(), CliError> {
    match non_finite(&out.data) {
        None => Ok(()),
        Some(why) => Err(CliError::Usage(format!(
            "the output holds {why} for a finite input: the weights in {} hold NaN / Inf or overflow; check the file (nothing was written)",
            weights.display()
        ))),
    }
}

fn run_zoo(registry: &Registry, r: &RunArgs, input: &kiln_models::npy::NpyArray) -> Result<String, CliError> {
    use kiln_models::weights::RunError;
    let device = r.backend.device()?;
    let options = ModelOptions { num_classes: r.num_classes, width_mult: r.width_mult, ..Default::default() };
    let out = kiln_models::weights::run_pretrained(registry, &r.model, &options, &r.weights, input, &device).map_err(
        |e| match e {
            RunError::Zoo(_) | RunError::Shape { .. } => CliError::Usage(e.to_string()),
            _ => CliError::Failed(e.to_string()),
        },
    )?;
    check_output(&out, &r.weights)?;
    kiln_models::npy::write(&r.output, &out).map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(format!(
        "{}: {:?} -> {:?} written to {} ({})",
        r.model,
        input.shape,
        out.shape,
        r.output.display(),
        r.backend.name()
    ))
}

/// `analyze` as a function: the text it would print. Library users get the same reports from
/// [`analyze_model`].
fn run_analyze(registry: &Registry, a: &AnalyzeArgs) -> Result<String, CliError> {
    let device = a.backend.device()?;
    if a.list {
        return list(registry, &device);
    }
    if let Some(dir) = &a.from {
        return analyze_trained(registry, a, dir, &device);
    }
    let Some(name) = &a.model else {
        return Err(CliError::Usage("give a model name (or `all`), or --list to see them".into()));
    };
    if name == "all" {
        return compare_all(registry, a, &device);
    }
    if is_onnx(registry, name) {
        return analyze_onnx(a, std::path::Path::new(name));
    }
    if a.batch == 0 {
        return Err(CliError::Usage("--batch must be at least 1".into()));
    }
    let input = a.input.as_deref().map(parse_shape).transpose()?;
    let options = ModelOptions { num_classes: a.num_classes, width_mult: a.width_mult, ..Default::default() };
    let report = analyze_model(registry, name, &options, input, a.batch, &device)?;
    Ok(match a.format {
        Format::Table => report.to_table(a.depth),
        Format::Md => report.to_markdown(a.depth),
        Format::Json => report.to_json() + "\n",
    })
}

/// An ONNX file: named `.onnx`, or an existing file that is not a registered name.
fn is_onnx(registry: &Registry, name: &str) -> bool {
    let p = std::path::Path::new(name);
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) || (registry.get(name).is_err() && p.is_file())
}

/// `analyze path/to/model.onnx`.
fn analyze_onnx(a: &AnalyzeArgs, path: &std::path::Path) -> Result<String, CliError> {
    if a.batch == 0 {
        return Err(CliError::Usage("--batch must be at least 1".into()));
    }
    if !path.is_file() {
        return Err(CliError::Usage(format!(
            "{}: no such file (give the path of an .onnx file, or a model name from --list)",
            path.display()
        )));
    }
    let input = a.input.as_deref().map(parse_shape).transpose()?;
    let report = kiln_analyze::onnx::analyze_file(path, input.as_deref(), a.batch)
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    Ok(match a.format {
        Format::Table => report.to_table(a.depth),
        Format::Md => report.to_markdown(a.depth),
        Format::Json => report.to_json() + "\n",
    })
}

fn analyze_trained(
    registry: &Registry,
    a: &AnalyzeArgs,
    dir: &std::path::Path,
    device: &Device,
) -> Result<String, CliError> {
    let usage = |e: &dyn std::fmt::Display| CliError::Usage(e.to_string());
    let saved = kiln_train::saved::load(registry, dir, device).map_err(|e| usage(&e))?;
    if let Some(name) = &a.model {
        let asked = registry.get(name).map_err(|e| usage(&e))?.name.clone();
        if asked != saved.spec.model {
            return Err(CliError::Usage(format!(
                "{} holds a trained {}, not {asked}",
                dir.display(),
                saved.spec.model
            )));
        }
    }
    let mut shape = saved.spec.input_shape(a.batch.max(1));
    if let Some(s) = a.input.as_deref() {
        shape = vec![a.batch.max(1)];
        shape.extend(parse_shape(s)?);
    }
    let report = kiln_analyze::analyze(saved.model.as_ref(), &saved.spec.model, &shape).map_err(|e| usage(&e))?;
    Ok(match a.format {
        Format::Table => report.to_table(a.depth),
        Format::Md => report.to_markdown(a.depth),
        Format::Json => report.to_json() + "\n",
    })
}

/// Builds `name` from the registry (or `op:NAME`) and analyzes it at `input` (`[C, H, W]`;
/// default: the entry's) with batch `batch`.
pub fn analyze_model(
    registry: &Registry,
    name: &str,
    options: &ModelOptions,
    input: Option<Vec<usize>>,
    batch: usize,
    device: &Device,
) -> Result<Report, CliError> {
    let usage = |e: &dyn std::fmt::Display| CliError::Usage(e.to_string());
    let (canonical, default_input, model): (String, [usize; 3], Box<dyn kiln_layers::Trace>) =
        if let Some(op) = name.strip_prefix("op:") {
            let e = registry.get_op(op).map_err(|e| usage(&e))?;
            (format!("op:{}", e.name), e.example_input, (e.build)(device))
        } else {
            let e = registry.get(name).map_err(|e| usage(&e))?;
            let m = registry.build(name, options, device).map_err(|e| usage(&e))?;
            (e.name.clone(), e.default_input, Box::new(TraceBox(m)))
        };
    let mut shape = vec![batch];
    let mut sample = input.unwrap_or_else(|| default_input.to_vec());
    if options.in_channels != 0 && sample == default_input {
        sample[0] = options.in_channels;
    }
    shape.extend(sample);
    kiln_analyze::analyze(model.as_ref(), &canonical, &shape).map_err(|e| usage(&e))
}

struct TraceBox(Box<dyn kiln_models::ZooModel>);

impl kiln_layers::Trace for TraceBox {
    fn trace(
        &self,
        t: &mut dyn kiln_layers::Tracer,
        x: kiln_layers::Node,
    ) -> Result<kiln_layers::Node, kiln_layers::TraceError> {
        self.0.trace(t, x)
    }
}

/// `analyze all`: one row per registered model at its default input.
fn compare_all(registry: &Registry, a: &AnalyzeArgs, device: &Device) -> Result<String, CliError> {
    let mut reports = vec![];
    for e in registry.models() {
        let options = ModelOptions { num_classes: a.num_classes, ..Default::default() };
        reports.push(analyze_model(registry, &e.name, &options, None, a.batch, device)?);
    }
    Ok(match a.format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = reports
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(&r.total).expect("serializable");
                    v["model"] = serde_json::Value::from(r.model.clone());
                    v["input"] = serde_json::to_value(&r.input).expect("serializable");
                    v
                })
                .collect();
            serde_json::to_string_pretty(&rows).expect("serializable") + "\n"
        }
        Format::Md => compare_markdown(&reports),
        Format::Table => compare_table(&reports),
    })
}

fn compare_cells(r: &Report) -> [String; 7] {
    let t = &r.total;
    [
        r.model.clone(),
        r.input[1..].iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"),
        kiln_analyze::thousands(t.params),
        kiln_analyze::thousands(t.macs),
        format!("{}", t.receptive_field),
        t.effective_stride.to_string(),
        format!("{:.2}", t.weight_bytes as f64 / 1e6),
    ]
}

const COMPARE_HEADER: [&str; 7] = ["model", "input", "params", "MACs", "RF", "stride", "weights (MB)"];

/// The comparison as a Markdown table.
pub fn compare_markdown(reports: &[Report]) -> String {
    let mut s = format!("| {} |\n|---|---|---:|---:|---:|---:|---:|\n", COMPARE_HEADER.join(" | "));
    for r in reports {
        s += &format!("| {} |\n", compare_cells(r).join(" | "));
    }
    s
}

fn compare_table(reports: &[Report]) -> String {
    let rows: Vec<[String; 7]> = reports.iter().map(compare_cells).collect();
    let mut w: Vec<usize> = COMPARE_HEADER.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(
                |(i, c)| {
                    if i < 2 { format!("{c:<width$}", width = w[i]) } else { format!("{c:>width$}", width = w[i]) }
                },
            )
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut s = line(COMPARE_HEADER.iter().map(|h| h.to_string()).collect()) + "\n";
    s += &"-".repeat(w.iter().sum::<usize>() + 2 * (w.len() - 1));
    s.push('\n');
    for r in rows {
        s += &line(r.to_vec());
        s.push('\n');
    }
    s
}

fn list(registry: &Registry, device: &Device) -> Result<String, CliError> {
    let mut s = format!("{:<22} {:>14} {:>16}  {:<12} {}\n", "model", "params", "MACs", "input", "description");
    for e in registry.models() {
        let r = analyze_model(registry, &e.name, &ModelOptions::default(), None, 1, device)?;
        let input = format!("{}x{}x{}", e.default_input[0], e.default_input[1], e.default_input[2]);
        let mut desc = e.summary.clone();
        if !e.aliases.is_empty() {
            desc += &format!(" [alias: {}]", e.aliases.join(", "));
        }
        s += &format!(
            "{:<22} {:>14} {:>16}  {:<12} {}\n",
            e.name,
            kiln_analyze::thousands(r.total.params),
            kiln_analyze::thousands(r.total.macs),
            input,
            desc
        );
    }
    if !registry.ops().is_empty() {
        s += "\nops (analyze op:NAME):\n";
        for o in registry.ops() {
            s += &format!("  op:{:<20} {} (PyTorch: {})\n", o.name, o.summary, o.pytorch);
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_counted_and_located() {
        assert_eq!(non_finite(&[0.0, 1.5, -2.0]), None);
        let why = non_finite(&[0.0, f32::NAN, 1.0, f32::NEG_INFINITY]).unwrap();
        assert_eq!(why, "2 NaN / Inf values (the first at flat index 1: NaN)");
        let out = kiln_models::npy::NpyArray { shape: vec![1, 2], data: vec![f32::INFINITY, 0.0] };
        let e = check_output(&out, std::path::Path::new("w.pth")).unwrap_err();
        assert_eq!(e.code(), 2);
        assert!(e.to_string().contains("the weights in w.pth hold NaN / Inf"), "{e}");
    }
}
