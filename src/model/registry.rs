//! The active model. A batch takes it once (`current`) and keeps that `Arc` until it is done, so a
//! swap never changes the model under a running batch and the old model is freed with its last batch.

use std::sync::{Arc, RwLock};

use super::Model;

#[derive(Default)]
pub struct ModelRegistry {
    active: RwLock<Option<Arc<Model>>>,
}

impl ModelRegistry {
    pub fn current(&self) -> Option<Arc<Model>> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Make `model` the one new batches use; returns the one it replaces.
    pub fn activate(&self, model: Arc<Model>) -> Option<Arc<Model>> {
        self.active
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(model)
    }
}
