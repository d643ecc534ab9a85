//! Sections on the policy: the headline (hand-offs needed, missed, needless), what the log holds,
//! each rule in words with its precision against feedback, and threshold sweeps of both sides of
//! each trade-off.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::draw::{bar_chart, escape, line_chart, pct, utc, Html};
use super::{ReportError, SWEEP_POINTS, SWEEP_SAMPLE};
use crate::decision_log::entry::{LoggedDecision, Outcome};
use crate::decision_log::reader::DecisionLogData;
use crate::decision_log::replay::Confusion;
use crate::policy::catalog::Kind;
use crate::policy::{Policy, Threshold};

/// What the log holds: its span, feedback, versions, and the policy whose thresholds are swept.
pub(super) fn summary(html: &mut Html, log: &DecisionLogData, policy: &Policy) {
    let d = &log.decisions;
    let (first, last) = (
        d.iter().map(|d| d.ts_ms).min().unwrap_or(0),
        d.iter().map(|d| d.ts_ms).max().unwrap_or(0),
    );
    let versions = |f: fn(&LoggedDecision) -> String| {
        let mut v: Vec<_> = d.iter().map(f).collect();
        v.sort();
        v.dedup();
        v.join(", ")
    };
    let rows = vec![
        vec!["decisions".into(), d.len().to_string()],
        vec!["from".into(), utc(first)],
        vec!["to".into(), utc(last)],
        vec!["with feedback".into(), log.feedback.len().to_string()],
        vec![
            "policy versions".into(),
            versions(|d| d.policy_version.clone()),
        ],
        vec![
            "model versions".into(),
            versions(|d| format!("{} {}", d.model, d.model_version)),
        ],
        vec![
            "thresholds swept from policy".into(),
            if made_any(log, policy) {
                policy.version().to_string()
            } else {
                format!("{} (made none of these decisions)", policy.version())
            },
        ],
        vec![
            "unreadable lines (skipped)".into(),
            match log.unreadable_lines {
                0 => "0".into(),
                n => format!(
                    "{n}: {}{}",
                    log.unreadable.join(", "),
                    if n > log.unreadable.len() {
                        ", …"
                    } else {
                        ""
                    }
                ),
            },
        ],
    ];
    html.body.push_str("<h2>Summary</h2>\n");
    html.table(&["", "value"], &rows);
}

/// Whether `policy` made any of the logged decisions (else its sweeps are a candidate's, not today's).
pub(super) fn made_any(log: &DecisionLogData, policy: &Policy) -> bool {
    log.decisions
        .iter()
        .any(|d| d.policy_version == policy.version())
}

/// Below this many, a share is shown with a warning: 2 of 3 is not 67 %.
const FEW: usize = 30;

/// `num` of `den` as a percentage with both counts, flagged when `den` is small.
pub(super) fn share(num: usize, den: usize) -> String {
    match den {
        0 => "no samples".into(),
        d if d < FEW => format!(
            "{} ({num} of {d}; few samples, read with care)",
            pct(num as f64 / d as f64)
        ),
        d => format!("{} ({num} of {d})", pct(num as f64 / d as f64)),
    }
}

/// What a support lead asks first, from the decisions that have feedback: was a person needed,
/// were the hand-offs made needed (precision), were the needed ones made (recall), and how many
/// were missed or needless.
pub(super) fn headline(html: &mut Html, log: &DecisionLogData) {
    let mut c = Confusion::default();
    for d in &log.decisions {
        if let Some(f) = log.feedback.get(&d.decision_id) {
            c.add(
                Outcome::of_logged(d).brings_human(),
                f.human_needed.needed(),
            );
        }
    }
    html.body.push_str("<h2>At a glance</h2>\n");
    let (made_needed, needless, missed) = (c.true_pos, c.false_pos, c.false_neg);
    let with_feedback = c.total();
    if with_feedback == 0 {
        html.body.push_str("<p>No decision in this log has feedback yet, so nothing can say whether a person was needed: send Feedback for decisions (the Feedback RPC) to see missed and needless hand-offs here.</p>\n");
        return;
    }
    let rows = vec![
        vec![
            "decisions with feedback".into(),
            share(with_feedback, log.decisions.len()),
        ],
        vec![
            "a person was needed".into(),
            share(made_needed + missed, with_feedback),
        ],
        vec![
            "hand-offs that were needed (precision)".into(),
            share(made_needed, made_needed + needless),
        ],
        vec![
            "needed hand-offs that were made (recall)".into(),
            share(made_needed, made_needed + missed),
        ],
        vec![
            "missed hand-offs: kept with the bot, a person was needed".into(),
            missed.to_string(),
        ],
        vec![
            "needless hand-offs: a person brought in, not needed".into(),
            needless.to_string(),
        ],
    ];
    html.table(&["", "value"], &rows);
}

/// A decision's rule in words: the policy's own `detail`, else what the lifecycle ids mean.
pub(super) fn describe(rule: &str, policy: &Policy) -> String {
    if let Some(r) = policy.rules().iter().find(|r| r.id == rule) {
        return r.detail.clone();
    }
    match rule {
        "default" => "no rule fired: kept with the bot",
        "already_escalated" => "a person already held the conversation",
        "offer_declined" => "the customer had declined a person: no offer",
        "escalation_withdrawn" => "the customer took the request for a person back",
        "offer_ladder" => "offered before: escalated",
        "offer_accepted" => "the customer accepted the offer",
        _ => "a rule of another policy version",
    }
    .into()
}

pub(super) fn rule_precision(
    html: &mut Html,
    log: &DecisionLogData,
    policy: &Policy,
) -> Result<(), ReportError> {
    let mut by_rule: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for d in &log.decisions {
        if let Some(f) = log.feedback.get(&d.decision_id) {
            let e = by_rule.entry(d.rule.clone()).or_default();
            e.0 += 1;
            e.1 += usize::from(f.human_needed.needed());
        }
    }
    html.body.push_str("<h2>Rules against feedback</h2>\n");
    if by_rule.is_empty() {
        html.body.push_str(
            "<p>No feedback in the log: per-rule precision needs the Feedback RPC.</p>\n",
        );
        return Ok(());
    }
    let items: Vec<(String, f64)> = by_rule
        .iter()
        .map(|(r, (n, needed))| (r.clone(), *needed as f64 / *n as f64))
        .collect();
    let rows: Vec<Vec<String>> = by_rule
        .iter()
        .map(|(r, (n, needed))| {
            vec![
                r.clone(),
                describe(r, policy),
                n.to_string(),
                needed.to_string(),
                share(*needed, *n),
            ]
        })
        .collect();
    let svg = bar_chart(
        "Share of each rule's decisions where a person was needed",
        "person needed (precision for rules that bring one; misses for default)",
        &items,
    )?;
    html.figure(
        "Per-rule precision against feedback",
        &svg,
        &[
            "rule",
            "what it means",
            "with feedback",
            "person needed",
            "share",
        ],
        &rows,
    );
    Ok(())
}

/// Values a sweep tries for one threshold: across the signal's range, today's value included.
pub(super) fn sweep_values(t: &Threshold) -> Vec<f64> {
    let (lo, hi) = match t.signal.kind() {
        Kind::Number { min, max } => (min, max),
        Kind::Count => (0.0, (2.0 * t.value).max(6.0).ceil()),
        Kind::Flag | Kind::Text => return vec![t.value],
    };
    let mut v: Vec<f64> = if matches!(t.signal.kind(), Kind::Count) {
        (lo as usize..=hi as usize).map(|x| x as f64).collect()
    } else {
        (0..SWEEP_POINTS)
            .map(|i| lo + (hi - lo) * i as f64 / (SWEEP_POINTS - 1) as f64)
            .collect()
    };
    v.push(t.value);
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

pub(super) fn sweeps(
    html: &mut Html,
    log: &DecisionLogData,
    policy: &Policy,
) -> Result<(), ReportError> {
    html.body.push_str("<h2>Threshold sweeps</h2>\n<p>Each numeric threshold of the policy moved across its range, every logged decision replayed (as <code>handoff replay</code> does, multi-turn signals as logged): the escalation rate, and precision against feedback where there is feedback. The black line marks today's value.</p>\n");
    if !made_any(log, policy) {
        let _ = writeln!(
            html.body,
            "<p><strong>The swept policy, {}, made none of these decisions</strong>: today's values are its values, and every sweep shows what it would change on this log.</p>",
            escape(policy.version())
        );
    }
    let step = log.decisions.len().div_ceil(SWEEP_SAMPLE).max(1);
    let sample: Vec<&LoggedDecision> = log.decisions.iter().step_by(step).collect();
    for t in policy.thresholds() {
        let values = sweep_values(&t);
        let mut rate = Vec::new();
        let mut precision = Vec::new();
        let mut rows = Vec::new();
        for v in &values {
            let candidate = policy.with_threshold(&t, *v);
            let (mut human, mut with_fb, mut true_pos, mut brought_fb) = (0, 0, 0, 0);
            for d in &sample {
                let out =
                    Outcome::of_decision(&candidate.replay(&d.signals, d.clock(), d.degraded));
                let brings = out.brings_human();
                human += usize::from(brings);
                if let Some(f) = log.feedback.get(&d.decision_id) {
                    with_fb += 1;
                    if brings {
                        brought_fb += 1;
                        true_pos += usize::from(f.human_needed.needed());
                    }
                }
            }
            let r = human as f64 / sample.len().max(1) as f64;
            rate.push((*v, r));
            let p = (brought_fb > 0).then(|| true_pos as f64 / brought_fb as f64);
            if let Some(p) = p {
                precision.push((*v, p));
            }
            let mark = if *v == t.value { " (today)" } else { "" };
            rows.push(vec![
                format!("{v:.3}{mark}"),
                pct(r),
                p.map_or_else(|| "-".into(), pct),
                with_fb.to_string(),
            ]);
        }
        let mut series = vec![("escalation rate".to_string(), rate)];
        if !precision.is_empty() {
            series.push(("precision (feedback)".to_string(), precision));
        }
        let title = format!(
            "{}: {} {} {}",
            t.rule_id,
            t.signal.name(),
            t.op.as_str(),
            t.value
        );
        let svg = line_chart(
            &title,
            t.signal.name(),
            "share",
            &series,
            1.0,
            Some(t.value),
        )?;
        html.figure(
            &format!("Sweep of {title}"),
            &svg,
            &[
                "threshold",
                "escalation rate",
                "precision",
                "decisions with feedback",
            ],
            &rows,
        );
    }
    Ok(())
}
