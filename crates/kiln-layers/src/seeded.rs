//! Reproducible initialization when several threads build models in one process.
//!
//! Burn's CPU backends keep one random generator per process, and Burn initializes parameters
//! lazily (on first use): `device.seed(s)` then `Config::init(&device)` gives the same weights only
//! if no other thread draws from that generator before every parameter has been touched (parallel
//! tests, a server building models concurrently). [`seeded`] holds a process-wide lock from seeding
//! until the module's parameters are materialized, so every caller that goes through it gets
//! weights that depend on its seed alone.

use std::cell::Cell;
use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bool, Device, Int, Tensor};

static RNG: Mutex<()> = Mutex::new(());

thread_local! {
    /// Whether this thread holds [`RNG`].
    static HELD: Cell<bool> = const { Cell::new(false) };
}

/// Seeds `device`'s generator with `seed`, builds the module with `init` and initializes all of its
/// (lazy) parameters while no other [`seeded`] / [`seeded_with`] call can draw from the generator.
/// Random draws made elsewhere (dropout masks, `Tensor::random`) are not held back.
///
/// ```
/// use burn::nn::conv::Conv2dConfig;
/// use burn::tensor::Device;
///
/// let device = Device::flex();
/// let a = kiln_layers::seeded(&device, 7, || Conv2dConfig::new([3, 8], [3, 3]).init(&device));
/// let b = kiln_layers::seeded(&device, 7, || Conv2dConfig::new([3, 8], [3, 3]).init(&device));
/// let diff = (a.weight.val() - b.weight.val()).abs().max().into_scalar::<f32>();
/// assert_eq!(diff, 0.0);
/// ```
pub fn seeded<M: Module>(device: &Device, seed: u64, init: impl FnOnce() -> M) -> M {
    seeded_with(device, seed, || {
        let module = init();
        materialize(&module);
        module
    })
}

/// [`seeded`] for closures that return something other than a module (a `Result`, a boxed model):
/// call [`materialize`] on what they build before returning, or its lazy parameters draw later,
/// outside the lock.
///
/// The lock is reentrant on its thread: a seeded training run may reseed (see [`reseed`]) or
/// build further models under the lock it already holds.
pub fn seeded_with<R>(device: &Device, seed: u64, f: impl FnOnce() -> R) -> R {
    if HELD.with(Cell::get) {
        device.seed(seed);
        return f();
    }
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            HELD.with(|h| h.set(false));
        }
    }
    let _guard = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    HELD.with(|h| h.set(true));
    let _release = Release;
    device.seed(seed);
    f()
}

/// Seeds `device`'s generator with `seed` under the same lock (so a reseed never lands in the
/// middle of another thread's seeded build). A training run reseeds at the start of every epoch
/// from its seed and the epoch's number, so a resumed run draws the dropout masks the
/// uninterrupted one drew.
pub fn reseed(device: &Device, seed: u64) {
    seeded_with(device, seed, || ());
}

/// Initializes every lazily-initialized parameter of `module` now (Burn runs a parameter's
/// initializer on its first use).
pub fn materialize<M: Module>(module: &M) {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
        fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
            let _ = param.val();
        }
        fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}
