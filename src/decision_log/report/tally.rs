//! What the report draws, counted one decision at a time: every section reads these figures, never
//! the log, so a report of a billion decisions holds the same few maps as one of a thousand. The
//! only decisions kept are the threshold sweeps' sample (at most [`SWEEP_SAMPLE`]).

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::{ACTIONS, SWEEP_SAMPLE};
use crate::decision_log::entry::{LoggedDecision, Outcome, Verdict};
use crate::decision_log::key_entry;
use crate::decision_log::reader::{id_hash, DecisionLogData, LogReadError, LogStream, Unreadable};
use crate::decision_log::replay::Confusion;
use crate::policy::{ReplayClock, Snapshot};

/// Histogram bins over [0, 1] for the model's confidence.
pub(super) const BINS: usize = 20;
pub(super) const MINUTE_MS: u64 = 60_000;

/// The bin of `v` among `bins` equal bins over [0, 1] (1.0 in the last).
pub(super) fn bin_of(v: f64, bins: usize) -> usize {
    ((v.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1)
}

/// Feedback by the path a conversation took: decision, then who resolved it.
#[derive(Debug, Default, Clone)]
pub(super) struct PathOutcomes {
    pub n: usize,
    /// Sum and count of CSAT scores, and of waits in seconds.
    pub csat: (f64, usize),
    pub wait: (f64, usize),
}

/// A decision kept for the threshold sweeps: what replaying it needs.
#[derive(Debug)]
pub(super) struct SweepCase {
    /// A hash of the decision id: the sample is the decisions with the smallest keys, an even
    /// sample whatever order the log comes in.
    key: u64,
    pub signals: Snapshot,
    pub clock: ReplayClock,
    pub degraded: bool,
    pub verdict: Option<Verdict>,
}

impl PartialEq for SweepCase {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for SweepCase {}
impl PartialOrd for SweepCase {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for SweepCase {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

#[derive(Debug, Default)]
pub struct Tally {
    pub decisions: usize,
    pub(super) first_ms: Option<u64>,
    pub(super) last_ms: u64,
    /// Decisions per minute since the epoch, by action (in [`ACTIONS`] order).
    pub(super) per_minute: BTreeMap<u64, [usize; 3]>,
    pub(super) policy_versions: BTreeSet<String>,
    pub(super) model_versions: BTreeSet<String>,
    /// Decisions that have feedback in the log (joined or not).
    pub with_feedback: usize,
    pub(super) unreadable: Unreadable,
    /// Brought a person in, against feedback.
    pub(super) confusion: Confusion,
    /// (rule, brings a person) -> (with feedback, person needed)
    pub(super) rule_feedback: BTreeMap<(String, bool), (usize, usize)>,
    pub(super) by_rule: BTreeMap<String, usize>,
    /// Group value -> (decisions, brought a person in)
    pub(super) by_channel: BTreeMap<String, (usize, usize)>,
    pub(super) by_tier: BTreeMap<String, (usize, usize)>,
    pub(super) intent_score: [usize; BINS],
    pub(super) negativity: [usize; BINS],
    pub(super) paths: BTreeMap<String, PathOutcomes>,
    sample: BinaryHeap<SweepCase>,
}

impl Tally {
    pub fn of_log(log: &DecisionLogData) -> Tally {
        let mut t = Tally {
            with_feedback: log.feedback.len(),
            unreadable: log.unreadable.clone(),
            ..Default::default()
        };
        log.for_each(|d, verdict| t.add(d, verdict));
        t
    }

    /// Count a log as it streams from disk.
    pub fn of_stream(log: LogStream) -> Result<Tally, LogReadError> {
        let mut t = Tally {
            with_feedback: log.feedback.len(),
            ..Default::default()
        };
        t.unreadable = log.for_each(|d, verdict| {
            t.add(d, verdict);
            Ok::<_, LogReadError>(())
        })?;
        Ok(t)
    }

    pub fn add(&mut self, d: &LoggedDecision, verdict: Option<Verdict>) {
        self.decisions += 1;
        self.first_ms = Some(self.first_ms.map_or(d.ts_ms, |f| f.min(d.ts_ms)));
        self.last_ms = self.last_ms.max(d.ts_ms);
        let action = ACTIONS.iter().position(|a| *a == d.action);
        if let Some(a) = action {
            self.per_minute.entry(d.ts_ms / MINUTE_MS).or_default()[a] += 1;
        }
        if !self.policy_versions.contains(&d.policy_version) {
            self.policy_versions.insert(d.policy_version.clone());
        }
        let model = format!("{} {}", d.model, d.model_version);
        if !self.model_versions.contains(&model) {
            self.model_versions.insert(model);
        }
        let brings = Outcome::of_logged(d).brings_human();
        *key_entry(&mut self.by_rule, &d.rule) += 1;
        for (map, key) in [
            (&mut self.by_channel, &d.signals.channel),
            (&mut self.by_tier, &d.signals.tier),
        ] {
            let e = key_entry(map, key);
            e.0 += 1;
            e.1 += usize::from(brings);
        }
        self.intent_score[bin_of(d.signals.intent_score.into(), BINS)] += 1;
        self.negativity[bin_of(d.signals.negativity.into(), BINS)] += 1;
        if let Some(f) = verdict {
            let needed = f.human_needed.needed();
            self.confusion.add(brings, needed);
            let e = self
                .rule_feedback
                .entry((d.rule.clone(), brings))
                .or_default();
            e.0 += 1;
            e.1 += usize::from(needed);
            let resolved = f.resolved_by.map_or("unknown", |r| r.as_str());
            let p = key_entry(&mut self.paths, &format!("{} → {resolved}", d.action));
            p.n += 1;
            if let Some(c) = f.csat {
                p.csat.0 += f64::from(c);
                p.csat.1 += 1;
            }
            if let Some(w) = f.wait_seconds {
                p.wait.0 += f64::from(w);
                p.wait.1 += 1;
            }
        }
        self.sample_for_sweeps(d, verdict);
    }

    fn sample_for_sweeps(&mut self, d: &LoggedDecision, verdict: Option<Verdict>) {
        let key = id_hash(&d.decision_id);
        if self.sample.len() >= SWEEP_SAMPLE && self.sample.peek().is_some_and(|top| top.key <= key)
        {
            return;
        }
        self.sample.push(SweepCase {
            key,
            signals: d.signals.clone(),
            clock: d.clock(),
            degraded: d.degraded,
            verdict,
        });
        if self.sample.len() > SWEEP_SAMPLE {
            self.sample.pop();
        }
    }

    /// The decisions the sweeps replay: all of them up to [`SWEEP_SAMPLE`], an even sample beyond.
    pub(super) fn sweep_sample(&self) -> impl Iterator<Item = &SweepCase> {
        self.sample.iter()
    }
}
