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

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("invalid manifest: {0}")]
    Manifest(String),
    #[error("invalid tokenizer {0}: {1}")]
    Tokenizer(PathBuf, String),
    #[error("invalid ONNX graph {0}: {1}")]
    Onnx(PathBuf, String),
    #[error("graph does not match the manifest: {0}")]
    Mismatch(String),
    #[error("golden example failed: {0}")]
    Golden(String),
    #[error("inference failed: {0}")]
    Inference(String),
}
