//! What a run leaves in `--out`: `metrics.json` ([`TrainReport`]), `curves.svg` and `report.md`,
//! all drawn from the same data.

use kiln_metrics::{ConfusionMatrix, GradNormReport, OverfittingVerdict};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::model::Task;
use crate::recorder::{EpochRecord, GradProbe};

/// The run's results (`metrics.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    /// Registry name of the model.
    pub model: String,
    /// Backend it ran on (`flex`, `ndarray`, `wgpu`).
    pub backend: String,
    /// Dataset name or path.
    pub dataset: String,
    /// Classification or reconstruction.
    pub task: Task,
    /// One entry per epoch, resumed epochs included.
    pub epochs: Vec<EpochRecord>,
    /// Accuracy on the test split, as a fraction (classification; `null` otherwise).
    pub test_accuracy: Option<f64>,
    /// Mean loss on the test split (cross-entropy, or the per-pixel MSE of a reconstruction).
    pub test_loss: f64,
    /// Per-pixel mean squared reconstruction error on the test split, in the model's input scale
    /// (reconstruction only).
    pub test_mse: Option<f64>,
    /// Whether early stopping ended the run before `--epochs`.
    pub stopped_early: bool,
    /// Why and when training stopped early.
    pub stop_reason: Option<String>,
    /// The overfitting detector's verdict on the loss curves.
    pub overfitting: Option<OverfittingVerdict>,
    /// Gradient norms on the first batch of the first and the last epoch.
    pub gradient_probes: Vec<GradProbe>,
    /// Fraction of conv / linear weights with |w| < 1e-3 after training.
    pub weight_sparsity: f64,
    /// Trainable parameters (PyTorch's count: BatchNorm statistics excluded).
    pub params: u64,
    /// MACs of one forward pass at batch 1.
    pub macs: u64,
    /// How the data was fed to the model.
    pub input_adaptation: String,
    /// Images in the training / validation / test splits.
    pub split_sizes: [usize; 3],
    /// Test confusion matrix (classification).
    pub confusion: Option<ConfusionMatrix>,
    /// k-means (k = classes) on the encoder's codes of the test split, scored against the labels
    /// (autoencoders).
    pub code_clusters: Option<kiln_unsupervised::kmeans::ClusterReport>,
    /// The configuration of the run.
    pub config: TrainConfig,
}

impl TrainReport {
    /// `metrics.json`'s text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// The last gradient probe's verdict in one line.
    pub fn gradient_verdict(&self) -> String {
        match self.gradient_probes.last() {
            None => "no gradient probe was taken".into(),
            Some(p) => grad_verdict(&p.report),
        }
    }

    /// `report.md`'s text.
    pub fn to_markdown(&self) -> String {
        let mut s = format!("# Training report: {} on {}\n\n", self.model, self.dataset);
        let c = &self.config;
        s += "| | |\n|---|---|\n";
        s += &format!("| backend | {} |\n", self.backend);
        s += &format!(
            "| optimizer | {} (lr {}, batch {}, weight decay {}, L1 {}) |\n",
            c.optimizer,
            c.lr(),
            if c.optimizer == crate::OptimizerKind::Gd { "full".to_string() } else { c.batch_size.to_string() },
            c.weight_decay,
            c.l1
        );
        s += &format!("| init / seed | {} / {} |\n", c.init.name(), c.seed);
        if let Some(t) = &c.teacher {
            s += &format!("| distillation | from {} (α {}, T {}) |\n", t.display(), c.kd_alpha, c.kd_temperature);
        }
        s += &format!("| augmentation | {} |\n", c.augment.as_deref().unwrap_or("none"));
        s += &format!("| input | {} |\n", self.input_adaptation);
        s += &format!(
            "| images | {} train / {} validation / {} test |\n",
            self.split_sizes[0], self.split_sizes[1], self.split_sizes[2]
        );
        s += &format!("| parameters / MACs | {} / {} |\n", self.params, self.macs);
        s += &format!("| epochs run | {} of {} |\n\n", self.epochs.len(), c.epochs);

        s += "## Result\n\n";
        match self.test_accuracy {
            Some(a) => s += &format!("- **Test accuracy: {:.4}** (test loss {:.4})\n", a, self.test_loss),
            None => {
                s += &format!(
                    "- **Test reconstruction MSE: {:.5}** per pixel\n",
                    self.test_mse.unwrap_or(self.test_loss)
                )
            }
        }
        match (&self.stopped_early, &self.stop_reason) {
            (true, Some(r)) => s += &format!("- Early stopping: {r}\n"),
            _ => s += "- Early stopping: did not trigger\n",
        }
        match &self.overfitting {
            Some(v) if v.overfitting => s += &format!("- **Overfitting**: {}\n", v.reason),
            Some(v) => s += &format!("- Overfitting: none detected ({})\n", v.reason),
            None => s += "- Overfitting: not assessed\n",
        }
        s += &format!("- Gradient health: {}\n", self.gradient_verdict());
        if let Some(c) = &self.code_clusters {
            s += &format!(
                "- Codes clustered with k-means (k = {}): purity {:.3}, NMI {:.3} (![reconstructions](reconstructions.png))\n",
                c.k,
                c.purity.unwrap_or(f64::NAN),
                c.nmi.unwrap_or(f64::NAN)
            );
        }
        s += &format!("- Weight sparsity (|w| < 1e-3): {:.2} %\n\n", 100.0 * self.weight_sparsity);

        s += "## Curves\n\n![curves](curves.svg)\n\n";
        s += "| epoch | train loss | val loss | train acc | val acc | lr | seconds |\n";
        s += "|---:|---:|---:|---:|---:|---:|---:|\n";
        let acc = |a: Option<f64>| a.map_or("-".to_string(), |v| format!("{v:.4}"));
        for e in &self.epochs {
            s += &format!(
                "| {} | {:.4} | {:.4} | {} | {} | {} | {:.1} |\n",
                e.epoch,
                e.train_loss,
                e.val_loss,
                acc(e.train_accuracy),
                acc(e.val_accuracy),
                e.lr,
                e.seconds
            );
        }
        if let Some(cm) = &self.confusion {
            s += "\n## Per class (test split)\n\n";
            s += &cm.report().to_markdown();
            s += "\n## Confusion matrix (rows: true class, columns: predicted)\n\n";
            s += &cm.to_markdown();
        }
        for p in &self.gradient_probes {
            s += &format!("\n## Gradient norms, first batch of epoch {}\n\n", p.epoch);
            s += &format!("{}\n\n", grad_verdict(&p.report));
            s += &p.report.to_markdown();
        }
        s
    }

    /// `curves.svg`: loss and accuracy per epoch, train and validation.
    pub fn to_svg(&self) -> String {
        let epochs: Vec<f64> = self.epochs.iter().map(|e| e.epoch as f64).collect();
        let train_loss: Vec<f64> = self.epochs.iter().map(|e| e.train_loss).collect();
        let val_loss: Vec<f64> = self.epochs.iter().map(|e| e.val_loss).collect();
        let mut panels = vec![Panel {
            title: if self.task == Task::Classification { "loss (cross-entropy)" } else { "loss (MSE)" },
            legend_bottom: false,
            series: vec![("train", "#1f77b4", train_loss), ("validation", "#d62728", val_loss)],
        }];
        if self.task == Task::Classification {
            let ta = self.epochs.iter().map(|e| e.train_accuracy.unwrap_or(f64::NAN)).collect();
            let va = self.epochs.iter().map(|e| e.val_accuracy.unwrap_or(f64::NAN)).collect();
            panels.push(Panel {
                title: "accuracy",
                legend_bottom: true,
                series: vec![("train", "#1f77b4", ta), ("validation", "#d62728", va)],
            });
        }
        svg_chart(&format!("{} on {} ({})", self.model, self.dataset, self.backend), &epochs, &panels)
    }
}

fn grad_verdict(r: &GradNormReport) -> String {
    let strip = |v: &[String]| v.iter().map(|p| strip_variant(p)).collect::<Vec<_>>().join(", ");
    let mut parts = vec![];
    if !r.vanishing.is_empty() {
        parts.push(format!("vanishing (< {:e}) in {}", r.vanishing_threshold, strip(&r.vanishing)));
    }
    if !r.exploding.is_empty() {
        parts.push(format!("exploding (> {:e}) in {}", r.exploding_threshold, strip(&r.exploding)));
    }
    if !r.non_finite.is_empty() {
        parts.push(format!("non-finite in {}", strip(&r.non_finite)));
    }
    if parts.is_empty() {
        format!("healthy: every layer's gradient norm is within [1e-7, 1e3] (total {:.3e})", r.total_norm)
    } else {
        parts.join("; ")
    }
}

/// Drops the enum-variant prefix (`LeNet5.conv1.weight` -> `conv1.weight`).
pub(crate) fn strip_variant(path: &str) -> &str {
    match path.split_once('.') {
        Some((head, rest)) if head.chars().next().is_some_and(char::is_uppercase) => rest,
        _ => path,
    }
}

struct Panel {
    title: &'static str,
    /// Legend in the lower right corner (curves that rise), else the upper right.
    legend_bottom: bool,
    series: Vec<(&'static str, &'static str, Vec<f64>)>,
}

fn nice_step(range: f64) -> f64 {
    let raw = range / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f < 1.5 {
        1.0
    } else if f < 3.0 {
        2.0
    } else if f < 7.0 {
        5.0
    } else {
        10.0
    }
}

fn svg_chart(title: &str, x: &[f64], panels: &[Panel]) -> String {
    let (pw, ph, ml, mr, mt, mb) = (440.0, 300.0, 60.0, 20.0, 50.0, 50.0);
    let width = panels.len() as f64 * (pw + ml + mr);
    let height = ph + mt + mb;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        width / 2.0,
        escape(title)
    );
    let (xmin, xmax) = (x.first().copied().unwrap_or(0.0), x.last().copied().unwrap_or(1.0));
    let xspan = if xmax > xmin { xmax - xmin } else { 1.0 };
    for (pi, panel) in panels.iter().enumerate() {
        let ox = pi as f64 * (pw + ml + mr) + ml;
        let vals: Vec<f64> = panel.series.iter().flat_map(|s| s.2.iter().copied()).filter(|v| v.is_finite()).collect();
        let (mut lo, mut hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        if vals.is_empty() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-12 {
            hi = lo + 1.0;
        }
        let step = nice_step(hi - lo);
        let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let px = |v: f64| ox + (v - xmin) / xspan * pw;
        let py = |v: f64| mt + ph - (v - lo) / (hi - lo) * ph;
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
            ox + pw / 2.0,
            mt - 10.0,
            panel.title
        );
        s += &format!("<rect x=\"{ox}\" y=\"{mt}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>\n");
        let mut t = lo;
        while t <= hi + step * 1e-6 {
            let y = py(t);
            s += &format!(
                "<line x1=\"{ox}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                ox + pw,
                ox - 6.0,
                y + 4.0,
                trim_float(t)
            );
            t += step;
        }
        let xstep = nice_step(xspan).max(1.0);
        let mut e = (xmin / xstep).ceil() * xstep;
        while e <= xmax + 1e-9 {
            let xp = px(e);
            s += &format!(
                "<line x1=\"{xp:.1}\" y1=\"{}\" x2=\"{xp:.1}\" y2=\"{}\" stroke=\"#444\"/>\
                 <text x=\"{xp:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                mt + ph,
                mt + ph + 5.0,
                mt + ph + 18.0,
                trim_float(e)
            );
            e += xstep;
        }
        s += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">epoch</text>\n", ox + pw / 2.0, mt + ph + 36.0);
        for (si, (name, color, ys)) in panel.series.iter().enumerate() {
            let pts: Vec<String> = x
                .iter()
                .zip(ys)
                .filter(|(_, y)| y.is_finite())
                .map(|(&xv, &yv)| format!("{:.1},{:.1}", px(xv), py(yv)))
                .collect();
            s += &format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
                pts.join(" ")
            );
            for p in &pts {
                let (a, b) = p.split_once(',').unwrap_or(("0", "0"));
                s += &format!("<circle cx=\"{a}\" cy=\"{b}\" r=\"2.5\" fill=\"{color}\"/>");
            }
            let rows = panel.series.len() as f64;
            let ly = if panel.legend_bottom {
                mt + ph - 12.0 - (rows - 1.0 - si as f64) * 16.0
            } else {
                mt + 16.0 + si as f64 * 16.0
            };
            s += &format!(
                "\n<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"/>\
                 <text x=\"{}\" y=\"{}\">{name}</text>\n",
                ox + pw - 110.0,
                ox + pw - 90.0,
                ox + pw - 85.0,
                ly + 4.0
            );
        }
    }
    s += "</svg>\n";
    s
}

fn trim_float(v: f64) -> String {
    let s = format!("{:.4}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
