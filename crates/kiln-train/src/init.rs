//! Weight initialization of a built model (`--init`): Kaiming, Xavier or all zeros, applied to
//! convolution and linear weights (rank ≥ 2) and their biases; normalization layers keep theirs.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::Initializer;
use burn::tensor::Tensor;

use crate::config::InitKind;

/// Re-initializes `module`'s weights with `kind` (the device's seed applies).
pub fn initialize<M: Module>(module: M, kind: InitKind) -> M {
    if kind == InitKind::Default {
        return module;
    }
    let mut mapper = InitMapper { kind, owners: Vec::new() };
    module.map(&mut mapper)
}

struct InitMapper {
    kind: InitKind,
    owners: Vec<String>,
}

/// `(fan_in, fan_out)` of a weight in Burn's layouts: conv `[out, in/groups, k...]`, linear
/// `[in, out]`.
fn fans(shape: &[usize]) -> (usize, usize) {
    if shape.len() == 2 {
        (shape[0], shape[1])
    } else {
        let receptive: usize = shape[2..].iter().product();
        (shape[1] * receptive, shape[0] * receptive)
    }
}

impl ModuleMapper for InitMapper {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.owners.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.owners.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let owner = self.owners.last().map(String::as_str).unwrap_or("");
        if owner.contains("Norm") {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.dims();
        let device = tensor.device();
        let new: Tensor<D> = if D >= 2 {
            let (fan_in, fan_out) = fans(&shape);
            let init = match self.kind {
                InitKind::Kaiming => Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: false },
                InitKind::Xavier => Initializer::XavierUniform { gain: 1.0 },
                InitKind::Zeros | InitKind::Default => Initializer::Zeros,
            };
            init.init_with::<D, _>(shape, Some(fan_in), Some(fan_out), &device).val()
        } else {
            Tensor::zeros(shape, &device)
        };
        let new = if tensor.is_require_grad() { new.require_grad() } else { new };
        Param::from_mapped_value(id, new, mapper)
    }
}
