//! Bounded cache of model outputs in front of the batcher: customers send the same short messages
//! over and over ("转人工", "在吗", "hi", "thanks"), and those should cost no inference.
//!
//! Keys are (model load id, normalised text). Every `Model::load` gets a fresh id, so after a swap
//! or rollback no entry of another model (or another load of the same version) can ever be served;
//! stale entries simply age out of the LRU. Only the model's outputs are cached: `Route` still
//! reads and updates conversation state on a hit.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::model::{Backend, Model, Prediction};
use crate::telemetry as t;

/// What a hit returns: the prediction and how the text was read.
pub struct Cached<B = Model> {
    pub prediction: Prediction,
    pub model: Arc<B>,
    pub tokens: usize,
    pub truncated: bool,
}

// Not derived: a derive would require `B: Clone`, and only the `Arc` is cloned.
impl<B> Clone for Cached<B> {
    fn clone(&self) -> Self {
        Cached {
            prediction: self.prediction.clone(),
            model: self.model.clone(),
            tokens: self.tokens,
            truncated: self.truncated,
        }
    }
}

pub struct ResultCache<B = Model> {
    entries: Mutex<LruCache<(u64, String), Cached<B>>>,
    max_text_bytes: usize,
}

impl<B: Backend> ResultCache<B> {
    /// `capacity` entries (0 disables the cache). Texts longer than `max_text_bytes` are not cached:
    /// long messages rarely repeat, and they would dominate the cache's memory.
    pub fn new(capacity: usize, max_text_bytes: usize) -> Option<Arc<Self>> {
        metrics::gauge!(t::CACHE_CAPACITY).set(capacity as f64);
        Some(Arc::new(ResultCache {
            entries: Mutex::new(LruCache::new(NonZeroUsize::new(capacity)?)),
            max_text_bytes,
        }))
    }

    pub fn get(&self, model: &B, text: &str) -> Option<Cached<B>> {
        if text.len() > self.max_text_bytes {
            return None;
        }
        let hit = self
            .lock()
            .get(&(model.load_id(), text.to_owned()))
            .cloned();
        let result = if hit.is_some() { "hit" } else { "miss" };
        metrics::counter!(t::CACHE_LOOKUPS, "result" => result).increment(1);
        hit
    }

    pub fn put(&self, text: &str, value: Cached<B>) {
        if text.len() > self.max_text_bytes {
            return;
        }
        let mut entries = self.lock();
        entries.put((value.model.load_id(), text.to_owned()), value);
        metrics::gauge!(t::CACHE_ENTRIES).set(entries.len() as f64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<(u64, String), Cached<B>>> {
        // A panic while holding the lock cannot leave the LRU half-updated in a way that matters
        // for a cache: keep serving.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The text the model reads and the cache keys on: surrounding whitespace trimmed and inner runs of
/// whitespace made one space, so "转人工 " and "转人工" share an entry and an answer.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn normalise_trims_and_collapses_whitespace_only() {
        assert_eq!(normalise("  转人工 \n"), "转人工");
        assert_eq!(normalise("where   is\tmy order"), "where is my order");
        assert_eq!(normalise("Hi"), "Hi");
    }
}
