//! Sections on the policy: the headline (hand-offs needed, missed, needless), what the log holds,
//! each rule in words with its precision against feedback, and threshold sweeps of both sides of
//! each trade-off.

use std::fmt::Write as _;

use super::draw::{bar_chart, escape, line_chart, pct, utc, Html};
use super::tally::Tally;
use super::{ReportError, SWEEP_POINTS};
use crate::decision_log::entry::Outcome;
use crate::decision_log::replay::Confusion;
use crate::policy::catalog::Kind;
use crate::policy::{Policy, Threshold};

/// What the log holds: its span, feedback, versions, and the policy whose thresholds are swept.
pub(super) fn summary(html: &mut Html, log: &Tally, policy: &Policy) {
    let join = |v: &std::collections::BTreeSet<String>| {
        v.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
    };
    let rows = vec![
        vec!["decisions".into(), log.decisions.to_string()],
        vec!["from".into(), utc(log.first_ms.unwrap_or(0))],
        vec!["to".into(), utc(log.last_ms)],
        vec!["with feedback".into(), log.with_feedback.to_string()],
        vec!["policy versions".into(), join(&log.policy_versions)],
        vec!["model versions".into(), join(&log.model_versions)],
        vec![
            "policy whose thresholds the sweeps move".into(),
            if made_any(log, policy) {
                policy.version().to_string()
            } else {
                format!("{} (made none of these decisions)", policy.version())
            },
        ],
        vec![
            "log lines that could not be read (left out)".into(),
            match log.unreadable.lines {
                0 => "0".into(),
                n => format!(
                    "{n}: {}{}",
                    log.unreadable.named.join(", "),
                    if n > log.unreadable.named.len() {
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
pub(super) fn made_any(log: &Tally, policy: &Policy) -> bool {
    log.policy_versions.contains(policy.version())
}

/// Below this many, a figure is shown with a warning: 2 of 3 is not 67 %.
const FEW: usize = 30;

/// A sample size as the report shows it beside a figure: flagged when small.
pub(super) fn samples(n: usize) -> String {
    if n < FEW {
        format!("{n}; few samples, read with care")
    } else {
        n.to_string()
    }
}

/// `num` of `den` as a percentage with both counts, flagged when `den` is small.
pub(super) fn share(num: usize, den: usize) -> String {
    match den {
        0 => "no samples".into(),
        d => format!("{} ({num} of {})", pct(num as f64 / d as f64), samples(d)),
    }
}

/// What a support lead asks first, from the decisions that have feedback: was a person needed,
/// were the hand-offs made needed (precision), were the needed ones made (recall), and how many
/// were missed or needless.
pub(super) fn headline(html: &mut Html, log: &Tally) {
    let c = log.confusion;
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
            share(with_feedback, log.decisions),
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

/// Each rule against feedback, in two charts because the share means opposite things: for rules
/// that bring a person it is their precision (higher is better), for rules that keep the bot it is
/// their miss rate (lower is better).
pub(super) fn rule_precision(
    html: &mut Html,
    log: &Tally,
    policy: &Policy,
) -> Result<(), ReportError> {
    let by_rule = &log.rule_feedback;
    html.body.push_str("<h2>Rules against feedback</h2>\n");
    if by_rule.is_empty() {
        html.body.push_str(
            "<p>No feedback in the log: per-rule precision needs the Feedback RPC.</p>\n",
        );
        return Ok(());
    }
    let sides = [
        (
            true,
            "Rules that bring a person: share where one was needed (precision, higher is better)",
            "precision: a person was needed",
        ),
        (
            false,
            "Rules that keep the bot: share where a person was needed (misses, lower is better)",
            "missed: a person was needed",
        ),
    ];
    for (brings, title, axis) in sides {
        let side: Vec<(&String, usize, usize)> = by_rule
            .iter()
            .filter(|((_, b), _)| *b == brings)
            .map(|((r, _), (n, needed))| (r, *n, *needed))
            .collect();
        if side.is_empty() {
            continue;
        }
        let items: Vec<(String, f64)> = side
            .iter()
            .map(|(r, n, needed)| ((*r).clone(), *needed as f64 / *n as f64))
            .collect();
        let rows: Vec<Vec<String>> = side
            .iter()
            .map(|(r, n, needed)| {
                vec![
                    (*r).clone(),
                    describe(r, policy),
                    n.to_string(),
                    needed.to_string(),
                    share(*needed, *n),
                ]
            })
            .collect();
        let svg = bar_chart(title, axis, &items)?;
        html.figure(
            title,
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
    }
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

pub(super) fn sweeps(html: &mut Html, log: &Tally, policy: &Policy) -> Result<(), ReportError> {
    html.body.push_str("<h2>Threshold sweeps</h2>\n<p>Each threshold of the policy moved across its range, every logged decision replayed (as <code>handoff replay</code> does, multi-turn signals as logged). Both sides of the trade-off: how often a person is brought in and, against feedback, the share of those hand-offs that were needed (precision) and the share of needed hand-offs that were made (recall), with the missed and needless counts in the table. The black line marks today's value. Guards (a count compared with 0 or 1, an equality) are not swept: moving them changes what a rule is about, not how strict it is.</p>\n");
    if !made_any(log, policy) {
        let _ = writeln!(
            html.body,
            "<p><strong>The swept policy, {}, made none of these decisions</strong>: today's values are its values, and every sweep shows what it would change on this log.</p>",
            escape(policy.version())
        );
    }
    let sample: Vec<_> = log.sweep_sample().collect();
    if log.decisions > sample.len() {
        let _ = writeln!(
            html.body,
            "<p>The sweeps replay an even sample of {} of the log's {} decisions.</p>",
            sample.len(),
            log.decisions
        );
    }
    let thresholds: Vec<Threshold> = policy
        .thresholds()
        .into_iter()
        .filter(|t| !t.is_guard())
        .collect();
    let jobs: Vec<(usize, f64)> = thresholds
        .iter()
        .enumerate()
        .flat_map(|(i, t)| sweep_values(t).into_iter().map(move |v| (i, v)))
        .collect();
    let outcomes = replay_all(&jobs, |(i, v)| {
        let candidate = policy.with_threshold(&thresholds[*i], *v);
        let mut c = Confusion::default();
        let mut human = 0;
        for d in &sample {
            let out = Outcome::of_decision(&candidate.replay(&d.signals, d.clock, d.degraded));
            human += usize::from(out.brings_human());
            if let Some(f) = d.verdict {
                c.add(out.brings_human(), f.human_needed.needed());
            }
        }
        (human, c)
    });
    let mut by_threshold: Vec<Vec<(f64, usize, Confusion)>> = vec![Vec::new(); thresholds.len()];
    for ((i, v), (human, c)) in jobs.iter().zip(outcomes) {
        by_threshold[*i].push((*v, human, c));
    }
    let mut last_rule = None;
    for (t, results) in thresholds.iter().zip(by_threshold) {
        let mut rate = Vec::new();
        let mut precision = Vec::new();
        let mut recall = Vec::new();
        let mut rows = Vec::new();
        for (v, human, c) in results {
            let r = human as f64 / sample.len().max(1) as f64;
            rate.push((v, r));
            let (made, needed) = (c.true_pos + c.false_pos, c.true_pos + c.false_neg);
            if made > 0 {
                precision.push((v, c.true_pos as f64 / made as f64));
            }
            if needed > 0 {
                recall.push((v, c.true_pos as f64 / needed as f64));
            }
            let mark = if v == t.value { " (today)" } else { "" };
            rows.push(vec![
                format!("{v:.3}{mark}"),
                pct(r),
                share(c.true_pos, made),
                share(c.true_pos, needed),
                c.false_neg.to_string(),
                c.false_pos.to_string(),
            ]);
        }
        let mut series = vec![("brought a person in".to_string(), rate)];
        if !precision.is_empty() {
            series.push(("precision (feedback)".to_string(), precision));
        }
        if !recall.is_empty() {
            series.push(("recall (feedback)".to_string(), recall));
        }
        let title = format!("{}: {}", t.rule_id, t.describe());
        let svg = line_chart(
            &title,
            t.signal.name(),
            "share",
            &series,
            1.0,
            Some(t.value),
        )?;
        if last_rule.replace(t.rule) != Some(t.rule) {
            let _ = writeln!(
                html.body,
                "<h3>{}</h3>\n<p>{}</p>",
                escape(&t.rule_id),
                escape(&describe(&t.rule_id, policy))
            );
        }
        html.figure(
            &format!("Sweep of {title}"),
            &svg,
            &[
                "threshold",
                "brought a person in",
                "precision",
                "recall",
                "missed",
                "needless",
            ],
            &rows,
        );
    }
    Ok(())
}

/// `f` of every job, in the jobs' order, on as many threads as there are cores: a sweep replays
/// its sample once per value, the bulk of a report's time.
fn replay_all<J: Sync, R: Send>(jobs: &[J], f: impl Fn(&J) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else {
                            return mine;
                        };
                        mine.push((i, f(job)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a sweep thread panicked"))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}
