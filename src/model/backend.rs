//! What the batcher needs from a model, and nothing more: turn a text into tokens and run a padded
//! batch. `Model` (tract) is the real one; the batcher's own tests use a fake, so its decisions
//! (batch closing, length groups, deadline admission) are tested without loading a model.

use std::time::Duration;

use super::{Encoded, GiveWay, ModelError, Prediction};

pub trait Backend: Send + Sync + 'static {
    fn encode(&self, text: &str) -> Result<Encoded, ModelError>;
    fn run(&self, batch: &[&Encoded]) -> Result<Vec<Prediction>, ModelError>;
    /// Whether `run_alone` can spread one text over two cores (the batcher then reserves both).
    fn splits(&self) -> bool {
        false
    }
    /// Run one text when nothing else is running, over two cores, giving one back when
    /// `give_way` asks. `None` when it cannot now (the caller runs it with `run`).
    fn run_alone(
        &self,
        _text: &Encoded,
        _give_way: &dyn GiveWay,
    ) -> Option<Result<Prediction, ModelError>> {
        None
    }
    /// Different for every load, even of the same package: results are cached per load.
    fn load_id(&self) -> u64;
    /// Time one text took in warm-up: the queue's wait estimate before any batch has run.
    fn warm_per_text(&self) -> Option<Duration>;
}

impl Backend for super::Model {
    fn encode(&self, text: &str) -> Result<Encoded, ModelError> {
        super::Model::encode(self, text)
    }
    fn run(&self, batch: &[&Encoded]) -> Result<Vec<Prediction>, ModelError> {
        super::Model::run(self, batch)
    }
    fn splits(&self) -> bool {
        self.has_parallel_stages()
    }
    fn run_alone(
        &self,
        text: &Encoded,
        give_way: &dyn GiveWay,
    ) -> Option<Result<Prediction, ModelError>> {
        super::Model::run_split(self, text, give_way)
    }
    fn load_id(&self) -> u64 {
        super::Model::load_id(self)
    }
    fn warm_per_text(&self) -> Option<Duration> {
        super::Model::warm_per_text(self)
    }
}
