//! The active model. A batch takes it once (`current`) and keeps that `Arc` until it is done, so a
//! swap never changes the model under a running batch and the old model is freed with its last batch.

use std::sync::{Arc, RwLock};

use super::Model;

pub struct ModelRegistry<B = Model> {
    active: RwLock<Option<Arc<B>>>,
}

impl<B> Default for ModelRegistry<B> {
    fn default() -> Self {
        ModelRegistry {
            active: RwLock::new(None),
        }
    }
}

impl<B> ModelRegistry<B> {
    pub fn current(&self) -> Option<Arc<B>> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Make `model` the one new batches use; returns the one it replaces.
    pub fn activate(&self, model: Arc<B>) -> Option<Arc<B>> {
        self.active
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(model)
    }
}
