//! The inference worker threads: each takes a text from the queue, tokenises it, and gathers its
//! share of the texts queued behind it into a batch (up to `max_batch_size`, `max_batch_tokens`
//! padded, or `max_queue_delay` after the first was queued), then runs it (`execute`).

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::admission::Backlog;
use super::execute::{run_batch, Sinks};
use super::{BatchError, BatcherConfig, Job};
use crate::model::{Backend, ModelRegistry};
use crate::telemetry as t;

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

/// How many texts a worker takes into its batch when `queued` more wait behind the one it took: its
/// share, leaving the other workers theirs. A worker that took every queued text would run them one
/// after another on its core while the next worker to free up found nothing: at half of the peak
/// (open loop, model 2.2.2) p99 was 9.0x the single-call p50 that way, 6.3x with shares (5.7x one
/// text a batch, which loses batching where it pays: 108 against 94 ms at 75 %). A long queue
/// still makes full batches. (Not with a queue delay: batches are then asked to wait for company.)
pub(super) fn batch_limit(queued: usize, workers: usize, max_batch_size: usize) -> usize {
    (1 + queued)
        .div_ceil(workers.max(1))
        .clamp(1, max_batch_size.max(1))
}

pub(super) fn worker_loop<B: Backend>(
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
        // With a queue delay the operator asked batches to wait for company: no share then.
        let limit = if config.max_queue_delay.is_zero() {
            batch_limit(rx.len(), config.workers, config.max_batch_size)
        } else {
            config.max_batch_size
        };
        while jobs.len() < limit {
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
