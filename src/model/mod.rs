//! Model packages (`models/<name>/<version>/`): manifest, tokenizer and tract plan, loaded,
//! validated and run as batches. Knows nothing about gRPC or policy.

mod backend;
mod manifest;
mod parallel;
mod quantize;
mod registry;
pub mod repository;
mod runtime;

use std::path::PathBuf;
use std::sync::Arc;

use tract_onnx::prelude::*;

pub use backend::Backend;
pub use manifest::{Golden, Manifest, ParallelSection};
pub use parallel::{GiveWay, Never};
pub use registry::ModelRegistry;
pub use runtime::{Encoded, GoldenResult, Model, Prediction};

/// A manifest that parses but describes no usable package.
#[derive(Debug, thiserror::Error)]
pub enum ManifestProblem {
    #[error("name and version must not be empty")]
    Unnamed,
    #[error("max_tokens = {0} is outside 4..={max}", max = manifest::MAX_SUPPORTED_TOKENS)]
    MaxTokens(usize),
    #[error("labels.{head} needs at least 2 labels, has {count}")]
    TooFewLabels { head: &'static str, count: usize },
    #[error("labels.{0} has duplicate labels")]
    DuplicateLabels(&'static str),
    #[error("labels.sentiment must include \"negative\" (negativity derives from it)")]
    NoNegative,
    #[error(
        "an upset head needs both [onnx] upset and [labels] upset, its grades ending in \"upset\""
    )]
    UpsetHead,
    #[error("parallel.dir = {0:?} must be a directory inside the package")]
    ParallelDir(String),
    #[error("parallel.layers = {0} is outside 1..={max}", max = manifest::MAX_PARALLEL_LAYERS)]
    ParallelLayers(usize),
    #[error("parallel.tolerance = {0} is outside (0, {max}]: a looser check would pass stages that compute something else", max = manifest::MAX_PARALLEL_TOLERANCE)]
    ParallelTolerance(f32),
    #[error("golden example expects unknown {head} {label:?}")]
    UnknownGoldenLabel { head: &'static str, label: String },
}

/// The graph's inputs, outputs or shapes are not the ones the manifest names.
#[derive(Debug, thiserror::Error)]
pub enum GraphMismatch {
    #[error("graph has no {what} {missing:?} (it has {have:?})")]
    MissingName {
        what: &'static str,
        missing: String,
        have: Vec<String>,
    },
    #[error("{head} output has shape {got:?}, expected [{rows}, {width}]")]
    OutputShape {
        head: &'static str,
        got: Vec<usize>,
        rows: usize,
        width: usize,
    },
}

/// A package file that must exist, refused with its path before tract reads it.
fn require_file(path: &std::path::Path) -> Result<(), ModelError> {
    if path.is_file() {
        return Ok(());
    }
    let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
    Err(ModelError::Io(path.to_path_buf(), missing))
}

/// An error from a library below us (tokenizers, tract), kept as the source of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("invalid manifest {path}: {source}")]
    ManifestSyntax {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestProblem),
    #[error("invalid tokenizer {path}: {source}")]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
    #[error("invalid ONNX graph {path}: {source}")]
    Onnx {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
    #[error("graph does not match the manifest: {0}")]
    Mismatch(#[from] GraphMismatch),
    #[error(
        "{failed} of the golden examples failed, first {text:?}: expected {expected}, got {got}"
    )]
    Golden {
        failed: usize,
        text: String,
        expected: String,
        got: String,
    },
    #[error("tokenizer failed: {0}")]
    Tokenize(#[source] BoxError),
    #[error("inference failed: {0}")]
    Run(#[source] BoxError),
    #[error("inference failed: reading the {head} output: {source}")]
    Output {
        head: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("inference failed: the model panicked")]
    Panicked,
    #[error("inference failed: parallel stages: {0}")]
    Parallel(&'static str),
    #[error("the tensor-parallel stages disagree with the whole graph on {text:?}: outputs differ by {diff} (at most {tolerance}); rewrite them with models/train/parallel.py")]
    ParallelMismatch {
        text: String,
        diff: f32,
        tolerance: f32,
    },
}

/// A graph (whole, or one tensor-parallel stage) as the plan it runs: tract's optimiser, then the
/// faster int8 rounding (`quantize`), so every plan of a package runs the same ops.
fn optimize(model: InferenceModel) -> TractResult<Arc<TypedRunnableModel>> {
    quantize::faster_quantize(model.into_optimized()?)?.into_runnable()
}
