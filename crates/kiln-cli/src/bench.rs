//! `cargo xtask bench`: times kiln's standard workloads (kiln_benches::workload), optionally side
//! by side with PyTorch (`--compare-torch`), and writes compare.json / compare.md / compare.svg.

use std::path::PathBuf;

use kiln_benches::{CompareOptions, Workload, run_compare, workload};
use kiln_models::Registry;

use crate::{Backend, CliError};

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// Also run every workload in PyTorch (benches/torch/compare_torch.py), interleaved with kiln,
    /// with the same thread count. Skipped with a message when Python / PyTorch is missing.
    #[arg(long)]
    compare_torch: bool,
    /// Also time kiln with its kernels off (Burn's own ops): a before / after column.
    #[arg(long)]
    before_after: bool,
    /// Fewer runs (1 warm-up, 3 timed) for a quick look.
    #[arg(long)]
    quick: bool,
    /// Timed runs per workload and side (default 5; 3 with --quick).
    #[arg(long)]
    repeats: Option<usize>,
    /// Untimed warm-up runs per workload and side.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// kiln's backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Only workloads whose name contains one of these comma-separated words (case-insensitive).
    #[arg(long)]
    filter: Option<String>,
    /// Output folder for compare.json, compare.md and compare.svg.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The Python interpreter that has PyTorch.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Print the workload names and exit.
    #[arg(long)]
    list: bool,
    /// Leave out the dense-GEMM-against-peak section (it runs unless --filter leaves it out:
    /// `--filter gemm` runs it alone).
    #[arg(long)]
    no_gemm: bool,
}

pub(crate) fn run(_registry: &Registry, args: &BenchArgs) -> Result<(), CliError> {
    let mnist = kiln_data::data_dir().join("mnist-5k");
    let mnist = mnist.is_dir().then(|| mnist.to_string_lossy().into_owned());
    if mnist.is_none() {
        eprintln!(
            "note: mnist-5k not found under {} (set KILN_DATA_DIR); the epoch workload is left out",
            kiln_data::data_dir().display()
        );
    }
    let all = workload::standard(mnist.as_deref());
    if args.list {
        for w in &all {
            println!("{}", w.name);
        }
        return Ok(());
    }
    let with_gemm =
        !args.no_gemm && args.filter.as_deref().is_none_or(|f| words(f).iter().any(|w| "gemm".contains(w.as_str())));
    let workloads = select(all, args.filter.as_deref(), with_gemm)?;
    let repeats = args.repeats.unwrap_or(if args.quick { 3 } else { 5 });
    if repeats == 0 {
        return Err(CliError::Usage("--repeats must be at least 1".into()));
    }
    let options = CompareOptions {
        backend: args.backend.name().to_string(),
        device: args.backend.device()?,
        warmup: args.warmup,
        repeats,
        torch: args.compare_torch,
        python: args.python.clone(),
        before_after: args.before_after,
    };
    let mut report = run_compare(&workloads, &options, &mut |line| eprintln!("{line}"))
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if with_gemm {
        eprintln!("measuring the FMA peak and the dense GEMM on ResNet-18 / MobileNetV2 shapes ...");
        let budget = std::time::Duration::from_millis(if args.quick { 150 } else { 500 });
        report.gemm = Some(kiln_benches::roofline::measure(budget, None));
    }
    let paths = report.write(&args.out).map_err(|e| CliError::Failed(e.to_string()))?;
    print!("{}", report.to_markdown());
    eprintln!("wrote {}", paths.map(|p| p.display().to_string()).join(", "));
    Ok(())
}

fn words(filter: &str) -> Vec<String> {
    filter.split(',').map(|w| w.trim().to_lowercase()).filter(|w| !w.is_empty()).collect()
}

fn select(all: Vec<Workload>, filter: Option<&str>, with_gemm: bool) -> Result<Vec<Workload>, CliError> {
    let Some(f) = filter else { return Ok(all) };
    let words = words(f);
    let picked: Vec<Workload> =
        all.into_iter().filter(|w| words.iter().any(|word| w.name.to_lowercase().contains(word))).collect();
    if picked.is_empty() && !with_gemm {
        return Err(CliError::Usage(kiln_benches::BenchError::NoMatch(f.to_string()).to_string()));
    }
    Ok(picked)
}
