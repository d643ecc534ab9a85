//! Dynamic batching: requests wait in one bounded queue; inference worker threads (one per core by
//! default) each take a batch, run it on the model that is active when the batch starts, and answer
//! every request through its oneshot channel. The async side only enqueues and awaits.
//!
//! A batch closes when it holds `max_batch_size` texts, or its worker's share of the queue (so a
//! worker freeing up next finds work), when the next text would push its padded size past
//! `max_batch_tokens`, or `max_queue_delay` after its first text was queued. Texts are sorted by
//! length inside a batch and run in length groups, so short texts are not padded to a long one.
//!
//! Tokenisation happens on the worker threads as each text is taken from the queue (it is CPU work,
//! up to 64 texts for a ClassifyBatch, and must not stall the async runtime). A result cache in
//! front of the queue answers repeated texts without inference.
//!
//! - `admission`: what a new request is told at the door (the backlog ahead of it, refusals held
//!   back for the wait they name);
//! - `worker`: the inference threads, each taking texts from the queue, tokenising them and forming a
//!   batch;
//! - `execute`: a formed batch run on the active model, in length groups, split over two cores when it
//!   is one text alone in the server, and its answers sent back.
//!
//! The async side (`Batcher`) only looks in the cache, enqueues and awaits.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use crate::cache::{normalise, Cached, ResultCache};
use crate::cpu_slots::CpuSlots;
use crate::model::{Backend, Encoded, Model, ModelError, ModelRegistry, Prediction};
use crate::shadow::InferenceTap;
use crate::telemetry as t;

mod admission;
mod execute;
#[cfg(test)]
mod tests;
mod worker;

use admission::{held, Backlog};
use execute::Sinks;
use worker::worker_loop;

#[derive(Debug, Clone)]
pub struct BatcherConfig {
    pub workers: usize,
    pub queue_capacity: usize,
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_queue_delay: Duration,
    /// Run a text on two threads (`Backend::run_alone`) when it is the only one in the server.
    pub split_single_calls: bool,
    /// A batch runs in length groups; padding adds at most this share to a group's real tokens.
    pub max_padding_percent: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("inference queue is full ({capacity} requests waiting, about {wait_ms} ms of work); retry with backoff")]
    QueueFull { capacity: usize, wait_ms: u64 },
    #[error("no model is loaded")]
    NoModel,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("deadline passed before the request could run")]
    DeadlineExceeded,
    #[error("the inference queue holds about {wait_ms} ms of work, past this request's deadline; retry with backoff")]
    WouldMissDeadline { wait_ms: u64 },
    /// One error answers every request of the failed batch, hence the `Arc`.
    #[error(transparent)]
    Inference(Arc<ModelError>),
}

/// What a request gets back: its prediction and the model and batch that produced it.
pub struct Inferred<B = Model> {
    pub prediction: Prediction,
    pub model: Arc<B>,
    pub tokens: usize,
    pub truncated: bool,
    pub queue_time: Duration,
    pub inference_time: Duration,
    /// 0 when the result cache answered: no queue, no inference.
    pub batch_size: usize,
}

impl<B> Inferred<B> {
    fn from_cache(hit: Cached, model: Arc<B>) -> Self {
        Inferred {
            prediction: hit.prediction,
            model,
            tokens: hit.tokens,
            truncated: hit.truncated,
            queue_time: Duration::ZERO,
            inference_time: Duration::ZERO,
            batch_size: 0,
        }
    }
}

pub(crate) struct Job<B> {
    text: String,
    /// Filled in by the worker that takes the job from the queue.
    encoded: Encoded,
    /// The model whose tokenizer made `encoded`: if a swap happened meanwhile, the worker re-encodes.
    encoded_by: Option<Arc<B>>,
    enqueued: Instant,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Inferred<B>, BatchError>>,
}

pub struct Batcher<B = Model> {
    sender: Mutex<Option<Sender<Job<B>>>>,
    receiver: Receiver<Job<B>>,
    registry: Arc<ModelRegistry<B>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    capacity: usize,
    worker_count: usize,
    backlog: Arc<Backlog>,
    cache: Option<Arc<ResultCache>>,
}

impl<B: Backend> Batcher<B> {
    /// `tap` sees every live prediction after its batch ran (shadow evaluation uses it); `cache`
    /// answers repeated texts and learns every result the workers produce.
    pub fn start(
        config: BatcherConfig,
        registry: Arc<ModelRegistry<B>>,
        tap: Option<Arc<dyn InferenceTap<B>>>,
        cache: Option<Arc<ResultCache>>,
    ) -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity.max(1));
        let backlog = Arc::new(Backlog::idle());
        // One slot per worker; a split run needs two even when there is one worker (its helper
        // thread is the second; the config turns splitting off on a one-core machine).
        let cores = config
            .workers
            .max(1)
            .max(if config.split_single_calls { 2 } else { 1 });
        let slots = Arc::new(CpuSlots::new(cores));
        let workers = (0..config.workers.max(1))
            .map(|i| {
                let rx = rx.clone();
                let registry = registry.clone();
                let config = config.clone();
                let backlog = backlog.clone();
                let sinks = Sinks {
                    tap: tap.clone(),
                    cache: cache.clone(),
                    slots: slots.clone(),
                };
                std::thread::Builder::new()
                    .name(format!("inference-{i}"))
                    .spawn(move || worker_loop(rx, registry, config, sinks, &backlog))
                    .expect("spawn inference worker")
            })
            .collect();
        Arc::new(Batcher {
            sender: Mutex::new(Some(tx)),
            receiver: rx,
            registry,
            workers: Mutex::new(workers),
            capacity: config.queue_capacity.max(1),
            worker_count: config.workers.max(1),
            backlog,
            cache,
        })
    }

    /// The cached answer for `text` from the active model, if any.
    fn cached(&self, text: &str) -> Option<Inferred<B>> {
        let cache = self.cache.as_ref()?;
        let model = self.registry.current()?;
        let hit = cache.get(model.load_id(), text)?;
        Some(Inferred::from_cache(hit, model))
    }

    pub fn registry(&self) -> &Arc<ModelRegistry<B>> {
        &self.registry
    }

    /// Answer `text` from the cache, or queue it and wait for its batch. A full queue, or one too
    /// long for the deadline, is refused after the pause `held` sets; a request whose caller goes
    /// away (this future dropped) is skipped by the worker.
    pub async fn infer(
        &self,
        text: String,
        deadline: Option<Instant>,
    ) -> Result<Inferred<B>, BatchError> {
        let text = normalise(&text);
        if let Some(hit) = self.cached(&text) {
            return Ok(hit);
        }
        let rx = match self.enqueue(text, deadline) {
            Ok(rx) => rx,
            Err(e) => return Err(held(e, deadline).await),
        };
        rx.await.unwrap_or(Err(BatchError::ShuttingDown))
    }

    /// Queue every text the cache cannot answer, then wait for all: they spread over the batches of
    /// all workers. Results come back in request order.
    pub async fn infer_many(
        &self,
        texts: Vec<String>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Inferred<B>>, BatchError> {
        let texts: Vec<String> = texts.iter().map(|t| normalise(t)).collect();
        let hits: Vec<Option<Inferred<B>>> = texts.iter().map(|t| self.cached(t)).collect();
        let misses = hits.iter().filter(|h| h.is_none()).count();
        if self.capacity - self.receiver.len() < misses {
            metrics::counter!(t::SHED, "reason" => "queue_full").increment(1);
            return Err(held(self.queue_full(), deadline).await);
        }
        let pending = texts
            .into_iter()
            .zip(hits)
            .map(|(text, hit)| match hit {
                Some(hit) => Ok(Err(hit)),
                None => self.enqueue(text, deadline).map(Ok),
            })
            .collect::<Result<Vec<_>, _>>();
        let pending = match pending {
            Ok(pending) => pending,
            Err(e) => return Err(held(e, deadline).await),
        };
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Err(hit) => hit,
                Ok(rx) => rx.await.unwrap_or(Err(BatchError::ShuttingDown))?,
            });
        }
        Ok(out)
    }

    /// A full queue, with how long its work would take (the caller's retry hint).
    fn queue_full(&self) -> BatchError {
        let seed = self.registry.current().and_then(|m| m.warm_per_text());
        BatchError::QueueFull {
            capacity: self.capacity,
            wait_ms: self.backlog.wait(self.worker_count, seed).as_millis() as u64,
        }
    }

    fn enqueue(
        &self,
        text: String,
        deadline: Option<Instant>,
    ) -> Result<oneshot::Receiver<Result<Inferred<B>, BatchError>>, BatchError> {
        let Some(model) = self.registry.current() else {
            return Err(BatchError::NoModel);
        };
        if let Some(deadline) = deadline {
            // Refuse what would wait past its deadline: the caller learns within its deadline, and
            // the workers spend no time on answers nobody waits for any more. The estimate is a mean,
            // so a request is admitted only if it would use at most half the time it has left.
            let now = Instant::now();
            if now >= deadline {
                return Err(BatchError::DeadlineExceeded); // spent before it got here
            }
            let wait = self.backlog.wait(self.worker_count, model.warm_per_text());
            if now + wait * 2 > deadline {
                metrics::counter!(t::SHED, "reason" => "deadline").increment(1);
                return Err(BatchError::WouldMissDeadline {
                    wait_ms: wait.as_millis() as u64,
                });
            }
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            text,
            encoded: Encoded {
                ids: Vec::new(),
                truncated: false,
            },
            encoded_by: None,
            enqueued: Instant::now(),
            deadline,
            reply,
        };
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let sender = sender.ok_or(BatchError::ShuttingDown)?;
        // Counted before it is sent: a worker may take it at once, and must see it as pending
        // (the count tells a lone text from one with company, and must never go below zero).
        self.backlog.added();
        match sender.try_send(job) {
            Ok(()) => {
                metrics::gauge!(t::INFERENCE_QUEUE_DEPTH).set(self.receiver.len() as f64);
                Ok(rx)
            }
            Err(TrySendError::Full(_)) => {
                self.backlog.dropped(1);
                metrics::counter!(t::SHED, "reason" => "queue_full").increment(1);
                Err(self.queue_full())
            }
            Err(TrySendError::Disconnected(_)) => {
                self.backlog.dropped(1);
                Err(BatchError::ShuttingDown)
            }
        }
    }

    /// Stop taking requests, let the workers answer everything already queued, and wait for them.
    pub fn shutdown(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in workers {
            let _ = w.join();
        }
    }
}
