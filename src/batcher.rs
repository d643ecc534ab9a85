//! Dynamic batching: requests wait in one bounded queue; inference worker threads (one per core by
//! default) each take a batch, run it on the model that is active when the batch starts, and answer
//! every request through its oneshot channel. The async side only enqueues and awaits.
//!
//! A batch closes when it holds `max_batch_size` texts, when the next text would push its padded size
//! past `max_batch_tokens`, or `max_queue_delay` after its first text was queued. Texts are sorted by
//! length inside a batch and run in length groups, so short texts are not padded to a long one.
//!
//! Tokenisation happens on the worker threads as each text is taken from the queue (it is CPU work,
//! up to 64 texts for a ClassifyBatch, and must not stall the async runtime). A result cache in
//! front of the queue answers repeated texts without inference.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use tokio::sync::oneshot;

use crate::cache::{normalise, Cached, ResultCache};
use crate::cpu_slots::CpuSlots;
use crate::model::{Backend, Encoded, Model, ModelError, ModelRegistry, Prediction};
use crate::shadow::InferenceTap;
use crate::telemetry as t;

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

struct Job<B> {
    text: String,
    /// Filled in by the worker that takes the job from the queue.
    encoded: Encoded,
    /// The model whose tokenizer made `encoded`: if a swap happened meanwhile, the worker re-encodes.
    encoded_by: Option<Arc<B>>,
    enqueued: Instant,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Inferred<B>, BatchError>>,
}

/// The work ahead of a new request: texts queued or in a batch not yet answered, and the recent
/// time per text (an exponential average, µs). Lets enqueue tell whether a request can still make
/// its deadline.
#[derive(Default)]
struct Backlog {
    pending: std::sync::atomic::AtomicUsize,
    per_text_us: std::sync::atomic::AtomicU64,
    /// Texts ever queued: a run that sees it move had company arrive meanwhile.
    arrivals: std::sync::atomic::AtomicU64,
    /// Share of recent lone runs (one text, nothing else queued or running) during which no other
    /// text arrived: an exponential average over ~16 runs, in 1/65536ths; see `quiet`.
    undisturbed: std::sync::atomic::AtomicU32,
}

/// A lone text runs split only while at least this share of recent lone runs saw no other text
/// arrive. A split run holds both cores and does ~3/4 of the work per core-second a whole run
/// does, so under steady load it queues the texts that arrive meanwhile: at half of peak (open
/// loop, a request every 4.7 ms) splitting every lone text raised p99 from 15 to 23 ms. A single
/// caller, the case splitting is for, never sends while its call runs.
const QUIET_SHARE: u32 = 58_982; // 0.9 of 65536

impl Backlog {
    fn added(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.pending.fetch_add(1, Relaxed);
        self.arrivals.fetch_add(1, Relaxed);
    }

    fn arrivals(&self) -> u64 {
        self.arrivals.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A lone run ended; `disturbed`: another text arrived while it ran.
    fn lone_run_done(&self, disturbed: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        // Racy read-modify-write on purpose: an average, and a lost update costs nothing.
        let old = self.undisturbed.load(Relaxed);
        let sample = if disturbed { 0 } else { 65_536 };
        self.undisturbed.store((old * 15 + sample) / 16, Relaxed);
    }

    /// Lone runs have recently had the server to themselves: splitting delays almost nobody.
    fn quiet(&self) -> bool {
        self.undisturbed.load(std::sync::atomic::Ordering::Relaxed) >= QUIET_SHARE
    }

    /// `texts` left the queue without running (refused by the tokenizer), or never entered it.
    fn dropped(&self, texts: usize) {
        self.pending
            .fetch_sub(texts, std::sync::atomic::Ordering::Relaxed);
    }

    /// Texts queued or running, this one included.
    fn pending(&self) -> usize {
        self.pending.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A batch of `texts` was answered after `took`.
    fn done(&self, took: Duration, texts: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.pending.fetch_sub(texts, Relaxed);
        let sample = took.as_micros() as u64 / texts.max(1) as u64;
        let old = self.per_text_us.load(Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.per_text_us.store(new, Relaxed);
    }

    /// Expected time until a request queued now starts running; `seed` is the time per text
    /// until a batch has run.
    fn wait(&self, workers: usize, seed: Option<Duration>) -> Duration {
        use std::sync::atomic::Ordering::Relaxed;
        let per_text = match self.per_text_us.load(Relaxed) {
            0 => seed.unwrap_or_default(),
            us => Duration::from_micros(us),
        };
        per_text * (self.pending.load(Relaxed) / workers.max(1)) as u32
    }
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
        let backlog = Arc::new(Backlog::default());
        // A server starts idle.
        backlog
            .undisturbed
            .store(65_536, std::sync::atomic::Ordering::Relaxed);
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

    /// Answer `text` from the cache, or queue it and wait for its batch. A full queue is refused
    /// at once; a request whose caller goes away (this future dropped) is skipped by the worker.
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
            // Refuse now what would wait past its deadline: the caller learns at once, and the
            // workers spend no time on answers nobody waits for any more. The estimate is a mean,
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

/// The longest a refusal is held back (see `held`).
const MAX_HOLD: Duration = Duration::from_millis(100);

/// A shed request's refusal, sent after a pause: the estimated wait, at most half of the caller's
/// remaining deadline and at most `MAX_HOLD`, with the retry hint cut by the time held. A client
/// that sends again at once (many do) would otherwise turn each refusal into its next request: in a
/// storm of 256 such callers on this machine, ~30,000 refusals a second took the cores from
/// inference and only 17 % of the peak was answered. Holding costs a timer, not a core, and leaves
/// the caller half its time to try elsewhere. Other errors are returned as they are.
async fn held(e: BatchError, deadline: Option<Instant>) -> BatchError {
    let wait_ms = match &e {
        BatchError::QueueFull { wait_ms, .. } | BatchError::WouldMissDeadline { wait_ms } => {
            *wait_ms
        }
        _ => return e,
    };
    let now = Instant::now();
    let left = deadline.map_or(MAX_HOLD * 2, |d| d.saturating_duration_since(now));
    let hold = Duration::from_millis(wait_ms).min(left / 2).min(MAX_HOLD);
    tokio::time::sleep(hold).await;
    let wait_ms = wait_ms.saturating_sub(hold.as_millis() as u64);
    match e {
        BatchError::QueueFull { capacity, .. } => BatchError::QueueFull { capacity, wait_ms },
        _ => BatchError::WouldMissDeadline { wait_ms },
    }
}

/// What a worker shares with the others: where results go, and the cores runs take turns on.
struct Sinks<B> {
    tap: Option<Arc<dyn InferenceTap<B>>>,
    cache: Option<Arc<ResultCache>>,
    slots: Arc<CpuSlots>,
}

/// Tokenise a job taken from the queue with the active model. A text the tokenizer refuses is
/// answered with the error at once (and leaves the backlog), so it never reaches a batch.
fn tokenized<B: Backend>(
    mut job: Job<B>,
    registry: &ModelRegistry<B>,
    backlog: &Backlog,
) -> Option<Job<B>> {
    let fail = |job: Job<B>, e: BatchError| {
        let _ = job.reply.send(Err(e));
        backlog.dropped(1);
        None
    };
    let Some(model) = registry.current() else {
        return fail(job, BatchError::NoModel);
    };
    let started = Instant::now();
    match model.encode(&job.text) {
        Ok(encoded) => {
            metrics::histogram!(t::TOKENIZE_TIME).record(started.elapsed().as_secs_f64());
            job.encoded = encoded;
            job.encoded_by = Some(model);
            Some(job)
        }
        Err(e) => fail(job, BatchError::Inference(Arc::new(e))),
    }
}

fn worker_loop<B: Backend>(
    rx: Receiver<Job<B>>,
    registry: Arc<ModelRegistry<B>>,
    config: BatcherConfig,
    sinks: Sinks<B>,
    backlog: &Backlog,
) {
    let mut carry: Option<Job<B>> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => match tokenized(job, &registry, backlog) {
                    Some(job) => job,
                    None => continue,
                },
                Err(_) => return, // queue closed and drained
            },
        };
        let close_at = first.enqueued + config.max_queue_delay;
        let mut longest = first.encoded.ids.len();
        let mut jobs = vec![first];
        while jobs.len() < config.max_batch_size {
            let next = match rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= close_at {
                        break;
                    }
                    match rx.recv_timeout(close_at - now) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let Some(next) = tokenized(next, &registry, backlog) else {
                continue;
            };
            let len = next.encoded.ids.len();
            if (jobs.len() + 1) * longest.max(len) > config.max_batch_tokens {
                carry = Some(next);
                break;
            }
            longest = longest.max(len);
            jobs.push(next);
        }
        metrics::gauge!(t::INFERENCE_QUEUE_DEPTH).set(rx.len() as f64);
        let (started, texts) = (Instant::now(), jobs.len());
        // Nothing queued and nothing running elsewhere: the other core is free for this text.
        let lone = texts == 1 && backlog.pending() == 1;
        let split = config.split_single_calls && lone && backlog.quiet();
        let arrivals = backlog.arrivals();
        run_batch(jobs, &registry, &sinks, split, config.max_padding_percent);
        if lone {
            backlog.lone_run_done(backlog.arrivals() != arrivals);
        }
        backlog.done(started.elapsed(), texts);
    }
}

fn run_batch<B: Backend>(
    jobs: Vec<Job<B>>,
    registry: &ModelRegistry<B>,
    sinks: &Sinks<B>,
    may_split: bool,
    max_padding_percent: usize,
) {
    let started = Instant::now();
    let Some(model) = registry.current() else {
        for job in jobs {
            let _ = job.reply.send(Err(BatchError::NoModel));
        }
        return;
    };
    let mut live: Vec<Job<B>> = Vec::with_capacity(jobs.len());
    for mut job in jobs {
        if job.reply.is_closed() {
            metrics::counter!(t::SKIPPED, "reason" => "cancelled").increment(1);
        } else if job.deadline.is_some_and(|d| d <= started) {
            metrics::counter!(t::SKIPPED, "reason" => "deadline").increment(1);
            let _ = job.reply.send(Err(BatchError::DeadlineExceeded));
        } else {
            if !job
                .encoded_by
                .as_ref()
                .is_some_and(|m| Arc::ptr_eq(m, &model))
            {
                match model.encode(&job.text) {
                    Ok(e) => job.encoded = e,
                    Err(e) => {
                        let _ = job.reply.send(Err(BatchError::Inference(Arc::new(e))));
                        continue;
                    }
                }
            }
            metrics::histogram!(t::INFERENCE_QUEUE_WAIT)
                .record(started.duration_since(job.enqueued).as_secs_f64());
            live.push(job);
        }
    }
    if live.is_empty() {
        return;
    }
    live.sort_by_key(|j| j.encoded.ids.len());
    let batch_size = live.len();
    metrics::histogram!(t::BATCH_SIZE).record(batch_size as f64);
    let groups = length_groups(&live, max_padding_percent);
    for range in groups.into_iter().rev() {
        let group = live.split_off(range.start);
        run_group(group, &model, batch_size, started, sinks, may_split);
    }
}

/// Split length-sorted jobs where padding would add more than `max_padding_percent` to a group's
/// real tokens: on CPU a batch gains little over single runs, so padded tokens are nearly pure
/// waste.
fn length_groups<B>(jobs: &[Job<B>], max_padding_percent: usize) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut real = 0;
    for (i, job) in jobs.iter().enumerate() {
        let len = job.encoded.ids.len();
        let padded = (i - start + 1) * len;
        if i > start && 100 * padded > (100 + max_padding_percent) * (real + len) {
            groups.push(start..i);
            start = i;
            real = 0;
        }
        real += len;
    }
    groups.push(start..jobs.len());
    groups
}

fn run_group<B: Backend>(
    group: Vec<Job<B>>,
    model: &Arc<B>,
    batch_size: usize,
    started: Instant,
    sinks: &Sinks<B>,
    may_split: bool,
) {
    let encoded: Vec<&Encoded> = group.iter().map(|j| &j.encoded).collect();
    let width = encoded.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    metrics::histogram!(t::BATCH_TOKENS).record((width * encoded.len()) as f64);
    // Slots are taken before the clock starts: waiting for a core is queueing, not inference.
    let two = (may_split && encoded.len() == 1 && model.splits())
        .then(|| sinks.slots.try_two())
        .flatten();
    let one = two.is_none().then(|| sinks.slots.one());
    let t0 = Instant::now();
    // A panic inside tract must not kill the worker and strand the queue: answer with an error.
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // A split run that fails (a stage error, a starved helper) is run again whole: the
        // caller gets an answer if the whole graph can give one.
        let split = two
            .as_ref()
            .and_then(|_| model.run_alone(encoded[0]))
            .and_then(|r| {
                r.map_err(|e| tracing::warn!(error = %e, "split run failed; running it whole"))
                    .ok()
            })
            .map(Ok);
        metrics::counter!(t::INFERENCE_RUNS, "mode" => if split.is_some() { "split" } else { "whole" })
            .increment(1);
        split.map_or_else(|| model.run(&encoded), |r| r.map(|p| vec![p]))
    }))
    .unwrap_or_else(|_| Err(ModelError::Panicked));
    let inference_time = t0.elapsed();
    drop((one, two));
    metrics::histogram!(t::INFERENCE_TIME).record(inference_time.as_secs_f64());
    match result {
        Ok(preds) => {
            for (job, prediction) in group.into_iter().zip(preds) {
                if let Some(tap) = &sinks.tap {
                    tap.observe(&job.text, &prediction, model);
                }
                if let Some(cache) = &sinks.cache {
                    let value = Cached {
                        prediction: prediction.clone(),
                        tokens: job.encoded.ids.len(),
                        truncated: job.encoded.truncated,
                    };
                    cache.put(model.load_id(), &job.text, value);
                }
                let inferred = Inferred {
                    prediction,
                    model: model.clone(),
                    tokens: job.encoded.ids.len(),
                    truncated: job.encoded.truncated,
                    queue_time: started.duration_since(job.enqueued),
                    inference_time,
                    batch_size,
                };
                let _ = job.reply.send(Ok(inferred));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for job in group {
                let _ = job.reply.send(Err(BatchError::Inference(e.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A backend whose texts are as many tokens as they have words, which records the row lengths
    /// of every batch it runs and can hold its first batch until the test has queued the rest.
    #[derive(Default)]
    struct Fake {
        runs: Mutex<Vec<Vec<usize>>>,
        gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
        running: AtomicBool,
        per_text: Duration,
        /// Texts (token counts) run through `run_alone`.
        alone: Mutex<Vec<usize>>,
    }

    impl Backend for Fake {
        fn encode(&self, text: &str) -> Result<Encoded, ModelError> {
            Ok(Encoded {
                ids: vec![1; text.split(' ').count()],
                truncated: false,
            })
        }
        fn run(&self, batch: &[&Encoded]) -> Result<Vec<Prediction>, ModelError> {
            self.record(batch)
        }
        fn splits(&self) -> bool {
            true
        }
        fn run_alone(&self, text: &Encoded) -> Option<Result<Prediction, ModelError>> {
            self.alone.lock().unwrap().push(text.ids.len());
            Some(self.record(&[text]).map(|mut p| p.remove(0)))
        }
        fn load_id(&self) -> u64 {
            1
        }
        fn warm_per_text(&self) -> Option<Duration> {
            (!self.per_text.is_zero()).then_some(self.per_text)
        }
    }

    impl Fake {
        fn record(&self, batch: &[&Encoded]) -> Result<Vec<Prediction>, ModelError> {
            self.running.store(true, Ordering::SeqCst);
            let gate = self.gate.lock().unwrap().take();
            if let Some(gate) = gate {
                let _ = gate.recv();
            }
            std::thread::sleep(self.per_text * batch.len() as u32);
            let lens: Vec<usize> = batch.iter().map(|e| e.ids.len()).collect();
            self.runs.lock().unwrap().push(lens.clone());
            Ok(lens
                .iter()
                .map(|&n| Prediction {
                    intent_probs: vec![n as f32],
                    sentiment_probs: vec![1.0],
                    embedding: Vec::new(),
                    upset_probs: Vec::new(),
                })
                .collect())
        }
    }

    fn config(max_batch_size: usize, max_batch_tokens: usize, delay_ms: u64) -> BatcherConfig {
        BatcherConfig {
            workers: 1,
            queue_capacity: 256,
            max_batch_size,
            max_batch_tokens,
            max_queue_delay: Duration::from_millis(delay_ms),
            split_single_calls: false,
            max_padding_percent: 25,
        }
    }

    fn start(config: BatcherConfig, fake: Fake) -> (Arc<Batcher<Fake>>, Arc<Fake>) {
        let fake = Arc::new(fake);
        let registry = Arc::new(ModelRegistry::default());
        registry.activate(fake.clone());
        (Batcher::start(config, registry, None, None), fake)
    }

    /// A text of `n` words (tokens), unique by `tag`.
    fn words(n: usize, tag: usize) -> String {
        let mut w = vec!["w".to_string(); n];
        w[n - 1] = format!("t{tag}");
        w.join(" ")
    }

    /// Hold the worker in a one-text batch, queue `texts` behind it, then let it go: the batches
    /// that follow are formed from a full queue. Returns each request's answer and the batches run
    /// after the held one.
    async fn queued_behind_a_held_batch(
        batcher: &Arc<Batcher<Fake>>,
        fake: &Fake,
        texts: Vec<String>,
        deadline: Option<Instant>,
    ) -> (Vec<Result<Inferred<Fake>, BatchError>>, Vec<Vec<usize>>) {
        let (release, gate) = std::sync::mpsc::channel();
        *fake.gate.lock().unwrap() = Some(gate);
        let held = {
            let b = batcher.clone();
            tokio::spawn(async move { b.infer("held".into(), None).await })
        };
        while !fake.running.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let n = texts.len();
        let mut answers = Vec::new();
        let mut pending = Vec::new();
        for text in texts {
            match batcher.enqueue(text, deadline) {
                Ok(rx) => pending.push(Some(rx)),
                Err(e) => {
                    answers.push((pending.len(), Err(e)));
                    pending.push(None);
                }
            }
        }
        let queued = pending.iter().filter(|p| p.is_some()).count();
        while batcher.receiver.len() < queued {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        let mut out: Vec<Option<Result<Inferred<Fake>, BatchError>>> =
            (0..n).map(|_| None).collect();
        for (i, e) in answers {
            out[i] = Some(e);
        }
        for (i, p) in pending.into_iter().enumerate() {
            if let Some(rx) = p {
                out[i] = Some(rx.await.unwrap());
            }
        }
        let runs = fake.runs.lock().unwrap()[1..].to_vec();
        (out.into_iter().map(Option::unwrap).collect(), runs)
    }

    fn rows(runs: &[Vec<usize>]) -> Vec<usize> {
        runs.iter().map(Vec::len).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_text_alone_in_the_server_runs_split() {
        let config = BatcherConfig {
            split_single_calls: true,
            ..config(32, 4096, 0)
        };
        let (batcher, fake) = start(config, Fake::default());
        batcher.infer(words(2, 0), None).await.unwrap();
        assert_eq!(*fake.alone.lock().unwrap(), [2]);
        fake.running.store(false, Ordering::SeqCst);
        // The held text is alone too; the three queued behind it run as one batch, not split.
        let texts = (1..4).map(|i| words(3, i)).collect();
        let (answers, runs) = queued_behind_a_held_batch(&batcher, &fake, texts, None).await;
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(rows(&runs[1..]), [3]);
        assert_eq!(fake.alone.lock().unwrap().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_closes_at_max_batch_size() {
        let (batcher, fake) = start(config(4, 4096, 0), Fake::default());
        let texts = (0..10).map(|i| words(3, i)).collect();
        let (answers, runs) = queued_behind_a_held_batch(&batcher, &fake, texts, None).await;
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(rows(&runs), [4, 4, 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_closes_before_its_padded_tokens_pass_the_budget() {
        let (batcher, fake) = start(config(32, 20, 0), Fake::default());
        let texts = (0..5).map(|i| words(8, i)).collect();
        let (answers, runs) = queued_behind_a_held_batch(&batcher, &fake, texts, None).await;
        assert!(answers.iter().all(Result::is_ok));
        // 3 texts of 8 tokens would be 24 padded tokens: over 20.
        assert_eq!(rows(&runs), [2, 2, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_waits_up_to_the_queue_delay_for_company() {
        let (batcher, fake) = start(config(32, 4096, 300), Fake::default());
        let first = {
            let b = batcher.clone();
            tokio::spawn(async move { b.infer(words(2, 1), None).await })
        };
        let second = batcher.infer(words(3, 2), None).await.unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(second.batch_size, 2, "both texts in one batch");
        assert_eq!(rows(&fake.runs.lock().unwrap()), [2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_texts_are_not_padded_to_a_long_one() {
        let (batcher, fake) = start(config(32, 4096, 0), Fake::default());
        let texts = vec![words(2, 0), words(10, 1), words(2, 2), words(2, 3)];
        let (answers, runs) = queued_behind_a_held_batch(&batcher, &fake, texts, None).await;
        // Each answer is its own text's (the fake predicts its length), in request order.
        let lens: Vec<f32> = answers
            .iter()
            .map(|a| a.as_ref().unwrap().prediction.intent_probs[0])
            .collect();
        assert_eq!(lens, [2.0, 10.0, 2.0, 2.0]);
        // One batch of four, run as two length groups, the long one first.
        assert_eq!(runs, [vec![10], vec![2, 2, 2]]);
        assert!(answers.iter().all(|a| a.as_ref().unwrap().batch_size == 4));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_that_cannot_make_their_deadline_are_refused_up_front() {
        // 10 ms a text (from warm-up, before any batch ran); a request is admitted only if the
        // queue ahead of it takes at most half of the 200 ms it has.
        let fake = Fake {
            per_text: Duration::from_millis(10),
            ..Default::default()
        };
        let (batcher, fake) = start(config(1, 4096, 0), fake);
        let texts = (0..30).map(|i| words(2, i)).collect();
        let deadline = Some(Instant::now() + Duration::from_millis(200));
        let (answers, _) = queued_behind_a_held_batch(&batcher, &fake, texts, deadline).await;
        let refused: Vec<bool> = answers
            .iter()
            .map(|a| matches!(a, Err(BatchError::WouldMissDeadline { .. })))
            .collect();
        let first_refused = refused.iter().position(|&r| r).expect("some refused");
        assert!(first_refused > 0, "the first requests fit");
        assert!(
            refused[first_refused..].iter().all(|&r| r),
            "once the queue is too long, every later request is refused: {refused:?}"
        );
        assert!(
            first_refused <= 11,
            "admitted {first_refused} x 10 ms for 200 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_held_for_the_wait_at_most_half_the_time_left() {
        let started = tokio::time::Instant::now();
        let deadline = Some(Instant::now() + Duration::from_millis(100));
        let e = held(BatchError::WouldMissDeadline { wait_ms: 80 }, deadline).await;
        // Half of the time left (a little under 100 ms by now), and the hint cut by as much.
        assert!(
            matches!(e, BatchError::WouldMissDeadline { wait_ms: 30..=31 }),
            "{e:?}"
        );
        let hold = started.elapsed();
        assert!(
            hold > Duration::from_millis(45) && hold <= Duration::from_millis(50),
            "{hold:?}"
        );
        // A short wait is held only that long; no deadline: at most MAX_HOLD.
        let started = tokio::time::Instant::now();
        let e = held(BatchError::WouldMissDeadline { wait_ms: 20 }, deadline).await;
        assert!(
            matches!(e, BatchError::WouldMissDeadline { wait_ms: 0 }),
            "{e:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(20));
        let started = tokio::time::Instant::now();
        let full = BatchError::QueueFull {
            capacity: 8,
            wait_ms: 900,
        };
        let e = held(full, None).await;
        assert!(
            matches!(e, BatchError::QueueFull { wait_ms: 800, .. }),
            "{e:?}"
        );
        assert_eq!(started.elapsed(), MAX_HOLD);
        // Other errors are not held.
        let started = tokio::time::Instant::now();
        assert!(matches!(
            held(BatchError::NoModel, deadline).await,
            BatchError::NoModel
        ));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_whose_deadline_passes_in_the_queue_is_not_run() {
        let (batcher, fake) = start(config(32, 4096, 0), Fake::default());
        let (release, gate) = std::sync::mpsc::channel();
        *fake.gate.lock().unwrap() = Some(gate);
        let held = {
            let b = batcher.clone();
            tokio::spawn(async move { b.infer("held".into(), None).await })
        };
        while !fake.running.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let rx = batcher
            .enqueue(
                words(2, 1),
                Some(Instant::now() + Duration::from_millis(20)),
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert!(matches!(
            rx.await.unwrap(),
            Err(BatchError::DeadlineExceeded)
        ));
        assert_eq!(
            rows(&fake.runs.lock().unwrap()),
            [1],
            "only the held batch ran"
        );
    }
}
