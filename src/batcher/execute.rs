//! A formed batch on the active model: texts whose caller left or whose deadline passed are
//! skipped, the rest run in length groups (split over two cores when one text is alone in the
//! server), and every answer goes back through its channel, to the shadow tap and into the cache.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use super::{BatchError, Inferred, Job};
use crate::cache::{Cached, ResultCache};
use crate::cpu_slots::CpuSlots;
use crate::model::{Backend, Encoded, ModelError, ModelRegistry};
use crate::shadow::InferenceTap;
use crate::telemetry as t;

/// What a worker shares with the others: where results go, and the cores runs take turns on.
pub(super) struct Sinks<B> {
    pub(super) tap: Option<Arc<dyn InferenceTap<B>>>,
    pub(super) cache: Option<Arc<ResultCache>>,
    pub(super) slots: Arc<CpuSlots>,
}

pub(super) fn run_batch<B: Backend>(
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
            .and_then(|held| model.run_alone(encoded[0], held))
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
