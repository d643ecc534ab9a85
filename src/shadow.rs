//! Shadow evaluation: a candidate model runs on a share of live traffic, off the hot path, and its
//! agreement with the live model is counted per head (intent, sentiment, upset, route action).
//!
//! The inference workers hand samples over after the live replies are sent, through a bounded queue
//! that never blocks them: when the shadow worker is busy, samples are dropped and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::model::{Model, Prediction};
use crate::policy::{ConversationState, Policy, SharedPolicy};
use crate::telemetry as t;

/// Something that wants to see every live prediction (the batcher calls it after replying).
pub trait InferenceTap<B = Model>: Send + Sync {
    fn observe(&self, text: &str, prediction: &Prediction, model: &Arc<B>);
}

struct Sample {
    text: String,
    live: Prediction,
    live_model: Arc<Model>,
}

#[derive(Clone)]
pub struct Candidate {
    pub model: Arc<Model>,
    pub share: f32,
}

pub struct Shadow {
    candidate: Arc<RwLock<Option<Candidate>>>,
    tx: Sender<Sample>,
    seen: AtomicU64,
}

const SHADOW_BATCH: usize = 16;

impl Shadow {
    pub fn start(queue_capacity: usize, policy: Arc<SharedPolicy>) -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::bounded(queue_capacity.max(1));
        let candidate: Arc<RwLock<Option<Candidate>>> = Arc::default();
        let c = candidate.clone();
        std::thread::Builder::new()
            .name("shadow".into())
            .spawn(move || {
                lower_priority();
                shadow_loop(rx, c, policy)
            })
            .expect("spawn shadow worker");
        Arc::new(Shadow {
            candidate,
            tx,
            seen: AtomicU64::new(0),
        })
    }

    pub fn set(&self, candidate: Option<Candidate>) {
        *self.candidate.write().unwrap_or_else(|e| e.into_inner()) = candidate;
    }

    pub fn current(&self) -> Option<Candidate> {
        self.candidate
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl InferenceTap for Shadow {
    fn observe(&self, text: &str, prediction: &Prediction, model: &Arc<Model>) {
        let Some(candidate) = self.current() else {
            return;
        };
        // Deterministic sampling: every request counts, a share of them is sent.
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        let take = ((n + 1) as f64 * candidate.share as f64).floor()
            > (n as f64 * candidate.share as f64).floor();
        if !take || Arc::ptr_eq(&candidate.model, model) {
            return;
        }
        let sample = Sample {
            text: text.to_string(),
            live: prediction.clone(),
            live_model: model.clone(),
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(sample)
        {
            metrics::counter!(t::SHADOW_DROPPED).increment(1);
        }
    }
}

/// The shadow thread yields the CPU to the inference workers: on a busy machine shadow samples wait
/// (and are dropped when the queue is full) instead of live requests.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id; failure only leaves the priority as is.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

fn shadow_loop(
    rx: Receiver<Sample>,
    candidate: Arc<RwLock<Option<Candidate>>>,
    policy: Arc<SharedPolicy>,
) {
    while let Ok(first) = rx.recv() {
        let mut samples = vec![first];
        while samples.len() < SHADOW_BATCH {
            match rx.try_recv() {
                Ok(s) => samples.push(s),
                Err(_) => break,
            }
        }
        let Some(c) = candidate.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            continue;
        };
        let texts: Vec<&str> = samples.iter().map(|s| s.text.as_str()).collect();
        let Ok(preds) = c.model.classify(&texts) else {
            metrics::counter!(t::SHADOW_ERRORS).increment(1);
            continue;
        };
        for (s, p) in samples.iter().zip(&preds) {
            compare(&policy.get(), &s.text, &s.live_model, &s.live, &c.model, p);
        }
    }
}

fn compare(
    policy: &Policy,
    text: &str,
    live_model: &Model,
    live: &Prediction,
    cand_model: &Model,
    cand: &Prediction,
) {
    let live_intent = &live_model.intent_labels()[live.top_intent()];
    let cand_intent = &cand_model.intent_labels()[cand.top_intent()];
    let live_sentiment = &live_model.sentiment_labels()[live.top_sentiment()];
    let cand_sentiment = &cand_model.sentiment_labels()[cand.top_sentiment()];
    // The first turn of a conversation: shadow compares the models, not conversation histories.
    let action = |model: &Model, p: &Prediction| {
        let turn = crate::route::turn(model, p, text);
        policy.decide(&turn, &ConversationState::default()).action
    };
    let agree = [
        ("intent", live_intent == cand_intent),
        ("sentiment", live_sentiment == cand_sentiment),
        (
            "action",
            action(live_model, live) == action(cand_model, cand),
        ),
        // Both read the customer as upset, or both not: a model without the graded head stands in
        // with its negativity, as the `upset` signal does.
        (
            "upset",
            (live_model.upset(live) >= 0.5) == (cand_model.upset(cand) >= 0.5),
        ),
    ];
    for (head, same) in agree {
        metrics::counter!(
            t::SHADOW_COMPARISONS,
            "live_version" => live_model.version().to_string(),
            "candidate_version" => cand_model.version().to_string(),
            "head" => head,
            "agree" => if same { "true" } else { "false" }
        )
        .increment(1);
    }
}
