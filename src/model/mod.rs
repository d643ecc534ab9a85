//! Model packages (`models/<name>/<version>/`): manifest, tokenizer and tract plan, loaded,
//! validated and run as batches. Knows nothing about gRPC or policy.

mod backend;
mod manifest;
mod registry;
pub mod repository;
mod runtime;

use std::path::PathBuf;

pub use backend::Backend;
pub use manifest::{Golden, Manifest};
pub use registry::ModelRegistry;
pub use runtime::{Encoded, GoldenResult, Model, Prediction};

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
    /// A manifest that parses but describes no usable package: what is wrong with it.
    #[error("invalid manifest: {0}")]
    Manifest(String),
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
    /// The graph's inputs, outputs or shapes are not the ones the manifest names.
    #[error("graph does not match the manifest: {0}")]
    Mismatch(String),
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
}
