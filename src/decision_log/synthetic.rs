//! A synthetic decision log, written as replicas write theirs: turns of 5-turn conversations spread
//! over replicas, decided by the built-in policy on random signals, with feedback that mostly
//! agrees with the signals. For trying the log tools at any size (the load generator's `log-scale`
//! writes ten million decisions) and for their tests, which compare the tools' figures with what
//! was written ([`Written`]).

use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};

use super::entry::{FeedbackEntry, HumanNeeded, LoggedDecision, LoggedReason, Outcome, ResolvedBy};
use crate::policy::{Policy, ReplayClock, Snapshot};

const CHANNELS: [&str; 4] = ["web", "app", "wechat", "whatsapp"];
const INTENTS: [&str; 5] = [
    "order_status",
    "complaint",
    "request_human",
    "security_incident",
    "product_inquiry",
];
const START_MS: u64 = 1_795_000_000_000;

#[derive(Debug, Clone)]
pub struct SyntheticLog {
    pub decisions: usize,
    /// Replicas the turns are spread over, round robin (each its own files).
    pub replicas: usize,
    /// Share of decisions that get feedback.
    pub feedback_share: f64,
    /// The span the decisions cover, evenly.
    pub span_ms: u64,
    pub seed: u64,
}

/// What was written, to check the tools against.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub decisions: usize,
    pub feedback: usize,
    /// Against feedback: hand-offs made and needed, made and not needed, needed and not made.
    pub made_needed: usize,
    pub needless: usize,
    pub missed: usize,
    /// Decisions per deciding rule.
    pub by_rule: std::collections::BTreeMap<String, usize>,
    pub bytes: u64,
}

impl SyntheticLog {
    /// Write the log into `dir` (which must exist).
    pub fn write(&self, dir: &Path) -> std::io::Result<Written> {
        let replicas = self.replicas.max(1);
        let open = |kind: &str, r: usize| {
            let name = format!("{kind}-synthetic{r}-{START_MS:013}-0001.jsonl");
            std::fs::File::create(dir.join(name))
                .map(|f| std::io::BufWriter::with_capacity(1 << 20, f))
        };
        let mut decision_files = (0..replicas)
            .map(|r| open("decisions", r))
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut feedback_files = (0..replicas)
            .map(|r| open("feedback", r))
            .collect::<std::io::Result<Vec<_>>>()?;
        let policy = Policy::builtin();
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mut written = Written::default();
        let mut line = Vec::with_capacity(2048);
        for i in 0..self.decisions {
            let ts_ms =
                START_MS + (i as u128 * self.span_ms as u128 / self.decisions as u128) as u64;
            let negativity: f32 = rng.gen::<f32>().powi(2);
            // One turn in ten asks for a person in words that name one.
            let asks = rng.gen_bool(0.1);
            let signals = Snapshot {
                request_human: if asks { 0.9 } else { 0.02 },
                person_word: asks,
                intent: INTENTS[rng.gen_range(0..INTENTS.len())].to_string(),
                intent_score: rng.gen_range(0.3..1.0),
                intent_margin: rng.gen_range(0.0..0.9),
                negativity,
                negativity_avg: negativity * 0.8,
                negative_turns: u32::from(negativity > 0.6),
                similarity: rng.gen_range(-0.2..1.0),
                bot_fallbacks: rng.gen_range(0..3),
                offers_made: rng.gen_range(0..2),
                turns: (i % 5) as u32,
                channel: CHANNELS[rng.gen_range(0..CHANNELS.len())].to_string(),
                tier: if rng.gen_bool(0.15) {
                    "vip"
                } else {
                    "standard"
                }
                .to_string(),
                ..Default::default()
            };
            let clock = ReplayClock {
                unix_seconds: (ts_ms / 1000) as i64,
                sent_unix_seconds: (ts_ms / 1000) as i64,
            };
            let d = policy.replay(&signals, clock, false);
            let outcome = Outcome::of_decision(&d);
            *written.by_rule.entry(outcome.rule.clone()).or_default() += 1;
            let logged = LoggedDecision {
                tenant: None,
                decision_id: format!("00000000-0000-4000-8000-{i:012}"),
                ts_ms,
                conversation: format!("{:016x}", i / 5),
                action: outcome.action.clone(),
                rule: outcome.rule.clone(),
                queue: outcome.queue.clone(),
                priority: outcome.priority,
                fallback: outcome.fallback.clone(),
                degraded: false,
                reasons: d.reasons.iter().map(LoggedReason::from).collect(),
                model: "handoff-zh-en".into(),
                model_version: "2.2.0".into(),
                policy_version: policy.version().into(),
                unix_s: clock.unix_seconds,
                sent_unix_s: clock.sent_unix_seconds,
                signals,
                text: None,
            };
            let replica = i % replicas;
            line.clear();
            serde_json::to_writer(&mut line, &logged).map_err(std::io::Error::other)?;
            line.push(b'\n');
            decision_files[replica].write_all(&line)?;
            written.decisions += 1;
            written.bytes += line.len() as u64;
            if !rng.gen_bool(self.feedback_share) {
                continue;
            }
            let needed = negativity > 0.5 || rng.gen_bool(0.2);
            let human = outcome.brings_human();
            match (human, needed) {
                (true, true) => written.made_needed += 1,
                (true, false) => written.needless += 1,
                (false, true) => written.missed += 1,
                (false, false) => {}
            }
            let entry = FeedbackEntry {
                tenant: None,
                decision_id: logged.decision_id.clone(),
                ts_ms: ts_ms + 600_000,
                human_needed: if needed {
                    HumanNeeded::Needed
                } else {
                    HumanNeeded::NotNeeded
                },
                resolved_by: Some(if human {
                    ResolvedBy::Human
                } else if rng.gen_bool(0.8) {
                    ResolvedBy::Bot
                } else {
                    ResolvedBy::Abandoned
                }),
                csat: Some(rng.gen_range(1..=5)),
                wait_seconds: human.then(|| rng.gen_range(10..600)),
                caller: "chat-backend".into(),
            };
            line.clear();
            serde_json::to_writer(&mut line, &entry).map_err(std::io::Error::other)?;
            line.push(b'\n');
            feedback_files[replica].write_all(&line)?;
            written.feedback += 1;
            written.bytes += line.len() as u64;
        }
        for f in decision_files.iter_mut().chain(feedback_files.iter_mut()) {
            f.flush()?;
        }
        Ok(written)
    }
}
