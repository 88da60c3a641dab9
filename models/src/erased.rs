//! A zoo model behind a trait object that is still a Burn [`Module`]: [`AnyModel`].
//!
//! Registering a model type erases it once (its entry's constructor returns a
//! `Box<dyn ZooModel>`); training, compression, `run` and `analyze` then work on that object, so
//! no command keeps a list of model types or downcasts by trial. Burn's visitors and mappers have
//! const-generic methods and are not object-safe, so they cross the erased boundary the way Burn's
//! own type-erased reparameterizations do (`burn-core`'s `reparameterization_dyn.rs`): the rank
//! travels as a number beside a `dyn Any` parameter, and is dispatched back to the const-generic
//! method on the other side.

use std::any::Any;
use std::path::Path;

use burn::module::{
    Content, Devices, Flag, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor, Param,
};
use burn::tensor::{Bool, Device, Int, Tensor};
use kiln_layers::trace::{Node, Trace, TraceError, Tracer};

use crate::{Hooks, LoadReport, Output, Task, WeightError, ZooModel};

/// The Burn-module side of a [`ZooModel`], object-safe. Implemented for every `Module` that is a
/// `ZooModel`; nothing to write by hand.
pub trait ErasedModule {
    /// A boxed clone.
    fn clone_box(&self) -> Box<dyn ZooModel>;
    /// [`Module::visit`] through an object-safe visitor.
    fn visit_erased(&self, visitor: &mut dyn ErasedVisitor);
    /// [`Module::map`] through an object-safe mapper.
    fn map_erased(self: Box<Self>, mapper: &mut dyn ErasedMapper) -> Box<dyn ZooModel>;
    /// [`Module::collect_devices`].
    fn collect_devices_erased(&self, devices: Devices) -> Devices;
    /// [`Module::fork`].
    fn fork_erased(self: Box<Self>, device: &Device) -> Box<dyn ZooModel>;
    /// [`Module::to_device`].
    fn to_device_erased(self: Box<Self>, device: &Device) -> Box<dyn ZooModel>;
    /// [`Module::train`].
    fn train_erased(self: Box<Self>) -> Box<dyn ZooModel>;
    /// [`Module::valid`].
    fn valid_erased(&self) -> Box<dyn ZooModel>;
    /// [`Module::materialize`].
    fn materialize_erased(self: Box<Self>) -> Box<dyn ZooModel>;
    /// [`ModuleDisplayDefault::content`].
    fn content_erased(&self, content: Content) -> Option<Content>;
    /// The concrete model, for code that needs its own type (e.g. an autoencoder's encoder).
    fn as_any(&self) -> &dyn Any;
}

impl<T: ZooModel + Module + ModuleDisplay + 'static> ErasedModule for T {
    fn clone_box(&self) -> Box<dyn ZooModel> {
        Box::new(self.clone())
    }
    fn visit_erased(&self, visitor: &mut dyn ErasedVisitor) {
        self.visit(&mut VisitorToErased { inner: visitor });
    }
    fn map_erased(self: Box<Self>, mapper: &mut dyn ErasedMapper) -> Box<dyn ZooModel> {
        Box::new((*self).map(&mut MapperToErased { inner: mapper }))
    }
    fn collect_devices_erased(&self, devices: Devices) -> Devices {
        self.collect_devices(devices)
    }
    fn fork_erased(self: Box<Self>, device: &Device) -> Box<dyn ZooModel> {
        Box::new((*self).fork(device))
    }
    fn to_device_erased(self: Box<Self>, device: &Device) -> Box<dyn ZooModel> {
        Box::new((*self).to_device(device))
    }
    fn train_erased(self: Box<Self>) -> Box<dyn ZooModel> {
        Box::new(Module::train(*self))
    }
    fn valid_erased(&self) -> Box<dyn ZooModel> {
        Box::new(self.valid())
    }
    fn materialize_erased(self: Box<Self>) -> Box<dyn ZooModel> {
        Box::new((*self).materialize())
    }
    fn content_erased(&self, content: Content) -> Option<Content> {
        ModuleDisplayDefault::content(self, content)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Dispatches a runtime tensor rank back to a const-generic method.
macro_rules! dispatch_rank {
    ($rank:expr, $d:ident => $body:block) => {
        match $rank {
            1 => {
                const $d: usize = 1;
                $body
            }
            2 => {
                const $d: usize = 2;
                $body
            }
            3 => {
                const $d: usize = 3;
                $body
            }
            4 => {
                const $d: usize = 4;
                $body
            }
            5 => {
                const $d: usize = 5;
                $body
            }
            6 => {
                const $d: usize = 6;
                $body
            }
            other => panic!("kiln's erased modules carry parameters of rank 1..=6, got {other}"),
        }
    };
}

/// Object-safe [`ModuleVisitor`]: `rank` names the `Param<Tensor<rank, K>>` behind `param`.
pub trait ErasedVisitor {
    /// A float parameter.
    fn visit_float(&mut self, rank: usize, param: &dyn Any);
    /// An int parameter.
    fn visit_int(&mut self, rank: usize, param: &dyn Any);
    /// A bool parameter.
    fn visit_bool(&mut self, rank: usize, param: &dyn Any);
    /// A flag.
    fn visit_flag(&mut self, flag: &Param<Flag>);
    /// Entering a child module.
    fn enter_module(&mut self, name: &str, container_type: &str);
    /// Leaving it.
    fn exit_module(&mut self, name: &str, container_type: &str);
}

/// Object-safe [`ModuleMapper`]: `rank` names the `Param<Tensor<rank, K>>` behind `param`.
pub trait ErasedMapper {
    /// A float parameter.
    fn map_float(&mut self, rank: usize, param: Box<dyn Any + Send>) -> Box<dyn Any + Send>;
    /// An int parameter.
    fn map_int(&mut self, rank: usize, param: Box<dyn Any + Send>) -> Box<dyn Any + Send>;
    /// A bool parameter.
    fn map_bool(&mut self, rank: usize, param: Box<dyn Any + Send>) -> Box<dyn Any + Send>;
    /// A flag.
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag>;
    /// Entering a child module.
    fn enter_module(&mut self, name: &str, container_type: &str);
    /// Leaving it.
    fn exit_module(&mut self, name: &str, container_type: &str);
}

struct VisitorToErased<'a> {
    inner: &'a mut dyn ErasedVisitor,
}

impl ModuleVisitor for VisitorToErased<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.inner.visit_float(D, param);
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.inner.visit_int(D, param);
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        self.inner.visit_bool(D, param);
    }
    fn visit_flag(&mut self, flag: &Param<Flag>) {
        self.inner.visit_flag(flag);
    }
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.inner.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.inner.exit_module(name, container_type);
    }
}

fn back<T: 'static>(b: Box<dyn Any + Send>) -> T {
    *b.downcast::<T>().expect("an erased parameter keeps its rank and kind")
}

struct MapperToErased<'a> {
    inner: &'a mut dyn ErasedMapper,
}

impl ModuleMapper for MapperToErased<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        back(self.inner.map_float(D, Box::new(param)))
    }
    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        back(self.inner.map_int(D, Box::new(param)))
    }
    fn map_bool<const D: usize>(&mut self, param: Param<Tensor<D, Bool>>) -> Param<Tensor<D, Bool>> {
        back(self.inner.map_bool(D, Box::new(param)))
    }
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        self.inner.map_flag(flag)
    }
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.inner.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.inner.exit_module(name, container_type);
    }
}

fn param<T: 'static>(p: &dyn Any) -> &T {
    p.downcast_ref::<T>().expect("an erased parameter keeps its rank and kind")
}

struct ErasedToVisitor<'a, V> {
    visitor: &'a mut V,
}

impl<V: ModuleVisitor> ErasedVisitor for ErasedToVisitor<'_, V> {
    fn visit_float(&mut self, rank: usize, p: &dyn Any) {
        dispatch_rank!(rank, D => { self.visitor.visit_float(param::<Param<Tensor<D>>>(p)) })
    }
    fn visit_int(&mut self, rank: usize, p: &dyn Any) {
        dispatch_rank!(rank, D => { self.visitor.visit_int(param::<Param<Tensor<D, Int>>>(p)) })
    }
    fn visit_bool(&mut self, rank: usize, p: &dyn Any) {
        dispatch_rank!(rank, D => { self.visitor.visit_bool(param::<Param<Tensor<D, Bool>>>(p)) })
    }
    fn visit_flag(&mut self, flag: &Param<Flag>) {
        self.visitor.visit_flag(flag);
    }
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.visitor.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.visitor.exit_module(name, container_type);
    }
}

struct ErasedToMapper<'a, M> {
    mapper: &'a mut M,
}

impl<M: ModuleMapper> ErasedMapper for ErasedToMapper<'_, M> {
    fn map_float(&mut self, rank: usize, p: Box<dyn Any + Send>) -> Box<dyn Any + Send> {
        dispatch_rank!(rank, D => { Box::new(self.mapper.map_float(back::<Param<Tensor<D>>>(p))) as Box<dyn Any + Send> })
    }
    fn map_int(&mut self, rank: usize, p: Box<dyn Any + Send>) -> Box<dyn Any + Send> {
        dispatch_rank!(rank, D => { Box::new(self.mapper.map_int(back::<Param<Tensor<D, Int>>>(p))) as Box<dyn Any + Send> })
    }
    fn map_bool(&mut self, rank: usize, p: Box<dyn Any + Send>) -> Box<dyn Any + Send> {
        dispatch_rank!(rank, D => { Box::new(self.mapper.map_bool(back::<Param<Tensor<D, Bool>>>(p))) as Box<dyn Any + Send> })
    }
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        self.mapper.map_flag(flag)
    }
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.mapper.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.mapper.exit_module(name, container_type);
    }
}

/// Any registered zoo model — built-in or a plugin's — as one Burn module: what the trainer's
/// `Learner`, its optimizer and checkpoints, and every compression pass work on. Build it with
/// [`AnyModel::new`] from what [`crate::Registry::build`] returns; reach the model's abilities
/// through [`AnyModel::as_zoo`]; it is itself a [`ZooModel`] (every
/// call goes to the model inside), so code generic over zoo models takes it too.
#[derive(Debug)]
pub struct AnyModel {
    inner: Box<dyn ZooModel>,
}

impl AnyModel {
    /// Wraps a built model (an `AnyModel` passed in boxed is taken as it is, not nested).
    pub fn new(model: Box<dyn ZooModel>) -> Self {
        if model.as_any().is::<AnyModel>() {
            return *model.into_any().downcast::<AnyModel>().expect("checked above");
        }
        Self { inner: model }
    }

    /// The model: forward, logits, trace, hooks, save.
    pub fn as_zoo(&self) -> &dyn ZooModel {
        &*self.inner
    }

    /// The model, mutably (BN folding, group sync).
    pub fn as_zoo_mut(&mut self) -> &mut dyn ZooModel {
        &mut *self.inner
    }

    /// The boxed model.
    pub fn into_zoo(self) -> Box<dyn ZooModel> {
        self.inner
    }

    /// The concrete model, when it is a `T`.
    pub fn downcast<T: 'static>(self) -> Result<T, Self> {
        if self.inner.as_any().is::<T>() {
            Ok(*self.inner.into_any().downcast::<T>().expect("checked above"))
        } else {
            Err(self)
        }
    }
}

impl From<Box<dyn ZooModel>> for AnyModel {
    fn from(model: Box<dyn ZooModel>) -> Self {
        Self::new(model)
    }
}

impl Clone for AnyModel {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone_box() }
    }
}

impl Module for AnyModel {
    fn collect_devices(&self, devices: Devices) -> Devices {
        self.inner.collect_devices_erased(devices)
    }
    fn fork(self, device: &Device) -> Self {
        Self { inner: self.inner.fork_erased(device) }
    }
    fn to_device(self, device: &Device) -> Self {
        Self { inner: self.inner.to_device_erased(device) }
    }
    fn train(self) -> Self {
        Self { inner: self.inner.train_erased() }
    }
    fn valid(&self) -> Self {
        Self { inner: self.inner.valid_erased() }
    }
    fn materialize(self) -> Self {
        Self { inner: self.inner.materialize_erased() }
    }
    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        self.inner.visit_erased(&mut ErasedToVisitor { visitor });
    }
    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        Self { inner: self.inner.map_erased(&mut ErasedToMapper { mapper }) }
    }
}

impl ModuleDisplayDefault for AnyModel {
    fn content(&self, content: Content) -> Option<Content> {
        self.inner.content_erased(content)
    }
}

impl ModuleDisplay for AnyModel {}

impl Trace for AnyModel {
    fn trace(&self, t: &mut dyn Tracer, x: Node) -> Result<Node, TraceError> {
        self.inner.trace(t, x)
    }
}

impl Hooks for AnyModel {
    fn features(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        self.inner.features(x)
    }
    fn fold_bn(&mut self) -> usize {
        self.inner.fold_bn()
    }
    fn sync_groups(&mut self) {
        self.inner.sync_groups()
    }
    fn unshare_running_stats(&mut self) {
        self.inner.unshare_running_stats()
    }
    fn has_dropout(&self) -> bool {
        self.inner.has_dropout()
    }
    fn task_override(&self) -> Option<Task> {
        self.inner.task_override()
    }
    fn encode(&self, x: Tensor<4>) -> Option<Tensor<2>> {
        self.inner.encode(x)
    }
}

impl ZooModel for AnyModel {
    fn forward(&self, x: Tensor<4>) -> Output {
        self.inner.forward(x)
    }
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.inner.logits(x)
    }
    fn task(&self) -> Task {
        self.inner.task()
    }
    fn num_params(&self) -> usize {
        self.inner.num_params()
    }
    fn load_pytorch(&mut self, path: &Path, input: &[usize]) -> Result<LoadReport, WeightError> {
        self.inner.load_pytorch(path, input)
    }
    fn save_file(&self, path: &Path) -> Result<(), WeightError> {
        self.inner.save_file(path)
    }
    fn load_file(&mut self, path: &Path) -> Result<(), WeightError> {
        self.inner.load_file(path)
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        // Itself, as `as_any` gives it; `AnyModel::downcast` reaches the model inside.
        self
    }
}
