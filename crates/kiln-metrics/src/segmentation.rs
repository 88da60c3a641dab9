//! Semantic-segmentation metrics: per-class intersection over union and mIoU.
//!
//! IoU of class `c` is `TP / (TP + FP + FN)` over all pixels. A class that occurs in neither the
//! prediction nor the target has no IoU (`None`) and is left out of the mean (torchmetrics' /
//! mmsegmentation's `nanmean`). Target pixels equal to `ignore_index` (e.g. 255 in Pascal VOC) are
//! skipped, whatever the prediction says there.

use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::classification::ConfusionMatrix;
use crate::{MetricsError, read_i64};

/// Per-class IoU, mIoU and pixel accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IouReport {
    /// IoU per class; `None` for a class absent from both prediction and target.
    pub per_class: Vec<Option<f64>>,
    /// Mean IoU over the classes that have one (0 if none has).
    pub miou: f64,
    /// Fraction of (non-ignored) pixels predicted correctly.
    pub pixel_accuracy: f64,
    /// Number of pixels counted (ignored ones excluded).
    pub pixels: u64,
}

impl IouReport {
    /// The IoU report of an accumulated confusion matrix (rows: target class, columns: predicted
    /// class), e.g. one summed over a validation set with [`ConfusionMatrix::add`].
    pub fn from_confusion(cm: &ConfusionMatrix) -> Self {
        let per_class: Vec<Option<f64>> = (0..cm.num_classes).map(|c| cm.iou(c)).collect();
        let present: Vec<f64> = per_class.iter().flatten().copied().collect();
        let miou = if present.is_empty() { 0.0 } else { present.iter().sum::<f64>() / present.len() as f64 };
        IouReport { per_class, miou, pixel_accuracy: cm.accuracy(), pixels: cm.total() }
    }

    /// The report as a Markdown table (class, IoU with 4 decimals or `-`), then mIoU and pixel
    /// accuracy.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("| class | IoU |\n|---|---:|\n");
        for (c, iou) in self.per_class.iter().enumerate() {
            match iou {
                Some(v) => s.push_str(&format!("| {c} | {v:.4} |\n")),
                None => s.push_str(&format!("| {c} | - |\n")),
            }
        }
        s.push_str(&format!("| mIoU | {:.4} |\n", self.miou));
        s.push_str(&format!("| pixel accuracy | {:.4} |\n", self.pixel_accuracy));
        s
    }
}

/// Confusion matrix of flat label maps, skipping target pixels equal to `ignore_index`.
fn confusion_of_maps(
    prediction: &[i64],
    target: &[i64],
    num_classes: usize,
    ignore_index: Option<i64>,
) -> Result<ConfusionMatrix, MetricsError> {
    if prediction.len() != target.len() {
        return Err(MetricsError::LengthMismatch { what: "prediction", expected: target.len(), got: prediction.len() });
    }
    let mut cm = ConfusionMatrix::new(num_classes)?;
    let n = num_classes as i64;
    for (&p, &t) in prediction.iter().zip(target) {
        if Some(t) == ignore_index {
            continue;
        }
        for v in [p, t] {
            if v < 0 || v >= n {
                return Err(MetricsError::LabelOutOfRange { label: v, num_classes });
            }
        }
        cm.counts[t as usize][p as usize] += 1;
    }
    Ok(cm)
}

/// Per-class IoU and mIoU of flat predicted / target label maps (any layout, same length).
///
/// # Errors
/// [`MetricsError::LengthMismatch`], [`MetricsError::LabelOutOfRange`] for a label outside
/// `0..num_classes` (other than an ignored target), [`MetricsError::InvalidArgument`] for zero
/// classes.
pub fn segmentation_iou(
    prediction: &[usize],
    target: &[usize],
    num_classes: usize,
    ignore_index: Option<usize>,
) -> Result<IouReport, MetricsError> {
    let p: Vec<i64> = prediction.iter().map(|&v| v as i64).collect();
    let t: Vec<i64> = target.iter().map(|&v| v as i64).collect();
    let cm = confusion_of_maps(&p, &t, num_classes, ignore_index.map(|v| v as i64))?;
    Ok(IouReport::from_confusion(&cm))
}

/// Per-class IoU and mIoU of Burn label maps of the same shape (e.g. `[N, H, W]`).
///
/// # Errors
/// As [`segmentation_iou`], plus [`MetricsError::InvalidArgument`] for different shapes and
/// [`MetricsError::TensorRead`].
pub fn iou_from_label_maps<const D: usize>(
    prediction: &Tensor<D, Int>,
    target: &Tensor<D, Int>,
    num_classes: usize,
    ignore_index: Option<i64>,
) -> Result<IouReport, MetricsError> {
    if prediction.dims() != target.dims() {
        return Err(MetricsError::InvalidArgument(format!(
            "prediction shape {:?} differs from target shape {:?}",
            prediction.dims(),
            target.dims()
        )));
    }
    let cm = confusion_of_maps(&read_i64(prediction)?, &read_i64(target)?, num_classes, ignore_index)?;
    Ok(IouReport::from_confusion(&cm))
}

/// Per-class IoU and mIoU of segmentation logits `[N, C, H, W]` (argmax over `C`) against target
/// label maps `[N, H, W]`.
///
/// # Errors
/// As [`iou_from_label_maps`].
pub fn iou_from_logits(
    logits: &Tensor<4>,
    target: &Tensor<3, Int>,
    ignore_index: Option<i64>,
) -> Result<IouReport, MetricsError> {
    let [n, c, h, w] = logits.dims();
    let prediction: Tensor<3, Int> = logits.clone().argmax(1).reshape([n, h, w]);
    iou_from_label_maps(&prediction, target, c, ignore_index)
}
