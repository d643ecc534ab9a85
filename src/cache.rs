//! Bounded cache of model outputs in front of the batcher: customers send the same short messages
//! over and over ("转人工", "在吗", "hi", "thanks"), and those should cost no inference.
//!
//! Keys are (model load id, normalised text). Every `Model::load` gets a fresh id, so after a swap
//! or rollback no entry of another model (or another load of the same version) can ever be served;
//! stale entries simply age out of the LRU. Entries hold the model's outputs, never the model: a
//! swapped-out model's memory is released once its last batch ends, not when its last entry ages
//! out. `Route` still reads and updates conversation state on a hit.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::model::Prediction;
use crate::telemetry as t;

/// What a hit returns: the prediction and how the text was read (by the model of the key's load id).
#[derive(Clone)]
pub struct Cached {
    pub prediction: Prediction,
    pub tokens: usize,
    pub truncated: bool,
}

pub struct ResultCache {
    entries: Mutex<LruCache<(u64, String), Cached>>,
    max_text_bytes: usize,
}

impl ResultCache {
    /// `capacity` entries (0 disables the cache). Texts longer than `max_text_bytes` are not cached:
    /// long messages rarely repeat, and they would dominate the cache's memory.
    pub fn new(capacity: usize, max_text_bytes: usize) -> Option<Arc<Self>> {
        metrics::gauge!(t::CACHE_CAPACITY).set(capacity as f64);
        Some(Arc::new(ResultCache {
            entries: Mutex::new(LruCache::new(NonZeroUsize::new(capacity)?)),
            max_text_bytes,
        }))
    }

    /// The outputs the model loaded as `load_id` gave for `text`, if cached.
    pub fn get(&self, load_id: u64, text: &str) -> Option<Cached> {
        if text.len() > self.max_text_bytes {
            return None;
        }
        let hit = self.lock().get(&(load_id, text.to_owned())).cloned();
        let result = if hit.is_some() { "hit" } else { "miss" };
        metrics::counter!(t::CACHE_LOOKUPS, "result" => result).increment(1);
        hit
    }

    pub fn put(&self, load_id: u64, text: &str, value: Cached) {
        if text.len() > self.max_text_bytes {
            return;
        }
        let mut entries = self.lock();
        entries.put((load_id, text.to_owned()), value);
        metrics::gauge!(t::CACHE_ENTRIES).set(entries.len() as f64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<(u64, String), Cached>> {
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
