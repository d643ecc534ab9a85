//! `handoff replay`: decide every logged turn again under a candidate policy and say what changes.
//! The rules see the signals as they were logged, so a change to a rule's condition, action, queue
//! or priority, to tiers, channels or queue hours replays exactly. The only conversation state a
//! decision leaves behind is whether a person was offered (`offers_made`) or the conversation escalated
//! (`escalated`): after a turn whose action changes, the rest of that conversation reads those as
//! logged, an approximation the report counts.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use super::entry::{LoggedDecision, Outcome, Verdict};
use super::reader::{DecisionLogData, LogReadError, LogStream, Unreadable};
use crate::policy::Policy;

/// "A person was needed" against "the decision brought one in" (offered or escalated), over the
/// decisions that have feedback.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Confusion {
    pub true_pos: usize,
    pub false_pos: usize,
    pub false_neg: usize,
    pub true_neg: usize,
}

impl Confusion {
    pub fn add(&mut self, brought_human: bool, needed: bool) {
        match (brought_human, needed) {
            (true, true) => self.true_pos += 1,
            (true, false) => self.false_pos += 1,
            (false, true) => self.false_neg += 1,
            (false, false) => self.true_neg += 1,
        }
    }

    pub fn precision(&self) -> Option<f64> {
        ratio(self.true_pos, self.true_pos + self.false_pos)
    }

    pub fn recall(&self) -> Option<f64> {
        ratio(self.true_pos, self.true_pos + self.false_neg)
    }

    pub fn total(&self) -> usize {
        self.true_pos + self.false_pos + self.false_neg + self.true_neg
    }
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// What a candidate policy changes on a log.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub decisions: usize,
    pub changed: usize,
    pub actions_before: BTreeMap<String, usize>,
    pub actions_after: BTreeMap<String, usize>,
    /// Decisions per deciding rule: before, after.
    pub rules: BTreeMap<String, (usize, usize)>,
    /// Action before → action after, for the decisions whose action changed.
    pub transitions: BTreeMap<(String, String), usize>,
    pub feedback_before: Confusion,
    pub feedback_after: Confusion,
    /// Turns after a turn whose action changed, in the same conversation: their offers_made and
    /// escalated are as logged.
    pub approximate: usize,
    /// Decisions per policy version that made them: "before" mixes them when there are several.
    pub policy_versions: BTreeMap<String, usize>,
    /// Turns whose caller sent attributes, under a policy with attribute rules: values are not
    /// logged, so those rules replay without them.
    pub without_attributes: usize,
    /// The first few changed decisions.
    pub examples: Vec<(String, Outcome, Outcome)>,
    pub unreadable_lines: usize,
    pub unreadable: Vec<String>,
}

const EXAMPLES: usize = 10;

/// Replays decisions one at a time, in any order that keeps each conversation's turns in time
/// order (a log stream, or the log in memory), so memory holds the figures, not the log.
pub struct Replayer<'p> {
    candidate: &'p Policy,
    attribute_rules: bool,
    /// Conversations where a turn's action changed: their later turns are approximate.
    diverged: HashSet<String>,
    report: ReplayReport,
}

impl<'p> Replayer<'p> {
    pub fn new(candidate: &'p Policy) -> Self {
        Replayer {
            candidate,
            attribute_rules: candidate.reads_attributes(),
            diverged: HashSet::new(),
            report: ReplayReport::default(),
        }
    }

    pub fn add(&mut self, logged: &LoggedDecision, feedback: Option<Verdict>) {
        let r = &mut self.report;
        r.decisions += 1;
        let before = Outcome::of_logged(logged);
        let after = Outcome::of_decision(&self.candidate.replay(
            &logged.signals,
            logged.clock(),
            logged.degraded,
        ));
        count(&mut r.actions_before, &before.action);
        count(&mut r.actions_after, &after.action);
        r.rules.entry(before.rule.clone()).or_default().0 += 1;
        r.rules.entry(after.rule.clone()).or_default().1 += 1;
        count(&mut r.policy_versions, &logged.policy_version);
        if self.diverged.contains(&logged.conversation) {
            r.approximate += 1;
        }
        if self.attribute_rules && logged.signals.had_attributes {
            r.without_attributes += 1;
        }
        if before != after {
            r.changed += 1;
            if before.action != after.action {
                self.diverged.insert(logged.conversation.clone());
                *r.transitions
                    .entry((before.action.clone(), after.action.clone()))
                    .or_default() += 1;
            }
            if r.examples.len() < EXAMPLES {
                r.examples
                    .push((logged.decision_id.clone(), before.clone(), after.clone()));
            }
        }
        if let Some(f) = feedback {
            let needed = f.human_needed.needed();
            r.feedback_before.add(before.brings_human(), needed);
            r.feedback_after.add(after.brings_human(), needed);
        }
    }

    pub fn finish(mut self, unreadable: &Unreadable) -> ReplayReport {
        self.report.unreadable_lines = unreadable.lines;
        self.report.unreadable = unreadable.named.clone();
        self.report
    }
}

/// One more under `key`.
fn count(map: &mut BTreeMap<String, usize>, key: &str) {
    *super::key_entry(map, key) += 1;
}

/// Replay a log read whole.
pub fn replay(log: &DecisionLogData, candidate: &Policy) -> ReplayReport {
    let mut replayer = Replayer::new(candidate);
    log.for_each(|d, feedback| replayer.add(d, feedback));
    replayer.finish(&log.unreadable)
}

/// Replay a log as it streams from disk: memory stays flat however long the log.
pub fn replay_stream(log: LogStream, candidate: &Policy) -> Result<ReplayReport, LogReadError> {
    let mut replayer = Replayer::new(candidate);
    let unreadable = log.for_each(|d, feedback| {
        replayer.add(d, feedback);
        Ok::<_, LogReadError>(())
    })?;
    Ok(replayer.finish(&unreadable))
}

/// An empty field (no queue, no fallback) as `(none)`, so "-> " never ends a line.
fn shown(value: &str) -> &str {
    if value.is_empty() {
        "(none)"
    } else {
        value
    }
}

impl ReplayReport {
    /// The same figures for a program: counts, transitions, precision and recall before and after,
    /// and the first changes field by field.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let confusion = |c: &Confusion| {
            json!({
                "with_feedback": c.total(),
                "true_pos": c.true_pos, "false_pos": c.false_pos,
                "false_neg": c.false_neg, "true_neg": c.true_neg,
                "precision": c.precision(), "recall": c.recall(),
            })
        };
        let transitions: Vec<_> = self
            .transitions
            .iter()
            .map(|((from, to), n)| json!({"from": from, "to": to, "decisions": n}))
            .collect();
        let rules: serde_json::Map<String, serde_json::Value> = self
            .rules
            .iter()
            .map(|(rule, (b, a))| (rule.clone(), json!({"before": b, "after": a})))
            .collect();
        let examples: Vec<_> = self
            .examples
            .iter()
            .map(|(id, before, after)| {
                let changes: Vec<_> = before
                    .changes(after)
                    .into_iter()
                    .map(|(field, b, a)| json!({"field": field, "before": b, "after": a}))
                    .collect();
                json!({"decision_id": id, "changes": changes})
            })
            .collect();
        json!({
            "decisions": self.decisions,
            "changed": self.changed,
            "actions_before": self.actions_before,
            "actions_after": self.actions_after,
            "rules": rules,
            "transitions": transitions,
            "feedback_before": confusion(&self.feedback_before),
            "feedback_after": confusion(&self.feedback_after),
            "approximate": self.approximate,
            "policy_versions": self.policy_versions,
            "without_attributes": self.without_attributes,
            "first_changes": examples,
            "unreadable_lines": self.unreadable_lines,
            "unreadable": self.unreadable,
        })
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |x| format!("{:.1} %", 100.0 * x))
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} logged decisions replayed; {} change ({:.1} %)",
            self.decisions,
            self.changed,
            100.0 * self.changed as f64 / self.decisions.max(1) as f64
        )?;
        writeln!(f, "\nby action            before     after")?;
        let actions: std::collections::BTreeSet<_> = self
            .actions_before
            .keys()
            .chain(self.actions_after.keys())
            .collect();
        for a in actions {
            let (b, c) = (
                self.actions_before.get(a).copied().unwrap_or(0),
                self.actions_after.get(a).copied().unwrap_or(0),
            );
            writeln!(f, "  {a:<18} {b:>6}    {c:>6}")?;
        }
        writeln!(f, "\nby deciding rule     before     after")?;
        for (rule, (b, c)) in &self.rules {
            writeln!(f, "  {rule:<18} {b:>6}    {c:>6}")?;
        }
        if !self.transitions.is_empty() {
            writeln!(f, "\naction changes")?;
            for ((from, to), n) in &self.transitions {
                writeln!(f, "  {from} -> {to}: {n}")?;
            }
        }
        let (b, a) = (&self.feedback_before, &self.feedback_after);
        if b.total() > 0 {
            writeln!(
                f,
                "\n\"human needed\" against feedback ({} decisions with feedback)",
                b.total()
            )?;
            writeln!(f, "               precision    recall")?;
            writeln!(
                f,
                "  before      {:>10} {:>9}",
                pct(b.precision()),
                pct(b.recall())
            )?;
            writeln!(
                f,
                "  after       {:>10} {:>9}",
                pct(a.precision()),
                pct(a.recall())
            )?;
        } else {
            writeln!(f, "\nno feedback in the log: precision and recall need it")?;
        }
        if !self.examples.is_empty() {
            writeln!(
                f,
                "\nfirst changes (decision id: each field that changed, before -> after)"
            )?;
            for (id, before, after) in &self.examples {
                let changes: Vec<String> = before
                    .changes(after)
                    .into_iter()
                    .map(|(field, a, b)| format!("{field} {} -> {}", shown(&a), shown(&b)))
                    .collect();
                writeln!(f, "  {id}: {}", changes.join(", "))?;
            }
        }
        writeln!(f, "\nexactness")?;
        writeln!(
            f,
            "  rules read each turn's signals as logged: changes to conditions, actions, queues,\n  priorities, tiers, channels and queue hours replay exactly."
        )?;
        writeln!(
            f,
            "  approximate: {} later turns of conversations where an earlier turn's action changed (their\n  offers_made and escalated are as logged, not as the candidate would leave them).",
            self.approximate
        )?;
        if self.policy_versions.len() > 1 {
            let versions: Vec<_> = self
                .policy_versions
                .iter()
                .map(|(v, n)| format!("{v} ({n})"))
                .collect();
            writeln!(
                f,
                "  the log spans policy versions {}: \"before\" is each decision as its version made it.",
                versions.join(", ")
            )?;
        }
        writeln!(
            f,
            "  [signals] settings (negative_turn, negativity_decay, low_confidence, low_margin) shape the\n  logged streaks and averages: a change to them is not replayed."
        )?;
        if self.without_attributes > 0 {
            writeln!(
                f,
                "  approximate: {} turns carried customer attributes, whose values are never logged; the\n  candidate's attr.* rules saw none.",
                self.without_attributes
            )?;
        }
        if self.unreadable_lines > 0 {
            let more = self.unreadable_lines - self.unreadable.len();
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            writeln!(
                f,
                "  skipped {} unreadable lines: {}{more}",
                self.unreadable_lines,
                self.unreadable.join(", ")
            )?;
        }
        Ok(())
    }
}
