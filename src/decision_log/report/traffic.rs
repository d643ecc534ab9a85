//! Sections on the traffic itself: decisions over time, rates by channel, tier and queue, the
//! model's confidence, and what happened after each path (resolution, CSAT, wait).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::draw::{bar_chart, histogram, line_chart, pct, utc, Html};
use super::rules::{describe, samples, share};
use super::tally::{Tally, BINS, MINUTE_MS as MINUTE};
use super::{ReportError, ACTIONS};
use crate::policy::Policy;

pub(super) fn over_time(html: &mut Html, log: &Tally) -> Result<(), ReportError> {
    // Buckets start on the first decision's minute: the figures are counted per minute.
    let first = log.first_ms.unwrap_or(0) / MINUTE * MINUTE;
    let last = log.last_ms.max(first);
    // The smallest round bucket that keeps the plot within 60 points.
    let bucket = [1, 5, 15, 60, 360, 1440, 10_080]
        .iter()
        .map(|m| m * MINUTE)
        .find(|b| (last - first) / b < 60)
        .unwrap_or(10_080 * MINUTE);
    let n = ((last - first) / bucket + 1) as usize;
    let mut counts: BTreeMap<&str, Vec<f64>> = ACTIONS.iter().map(|a| (*a, vec![0.0; n])).collect();
    for (minute, by_action) in &log.per_minute {
        let i = ((minute * MINUTE - first) / bucket) as usize;
        for (a, c) in ACTIONS.iter().zip(by_action) {
            counts.get_mut(a).expect("every action")[i] += *c as f64;
        }
    }
    // The axis unit follows the span: minutes for a short log, days for a long one.
    let (unit_ms, unit) = match last - first {
        span if span <= 2 * 60 * MINUTE => (MINUTE, "minutes"),
        span if span <= 3 * 1440 * MINUTE => (60 * MINUTE, "hours"),
        _ => (1440 * MINUTE, "days"),
    };
    let since = |i: usize| (i as u64 * bucket) as f64 / unit_ms as f64;
    // The last bucket ends where the log does: drawn with full ones it reads as a sharp drop. One
    // that covers less than half a bucket is left off the chart (the table keeps it, marked).
    let covered = (last - first) % bucket + 1;
    let partial = n > 1 && covered < bucket / 2;
    let drawn = if partial { n - 1 } else { n };
    let series: Vec<(String, Vec<(f64, f64)>)> = ACTIONS
        .iter()
        .map(|a| {
            let pts = counts[a][..drawn]
                .iter()
                .enumerate()
                .map(|(i, c)| (since(i), *c));
            (a.to_string(), pts.collect())
        })
        .collect();
    let max = counts.values().flatten().copied().fold(0.0, f64::max);
    let minutes = bucket / MINUTE;
    let rows: Vec<Vec<String>> = (0..n)
        .map(|i| {
            let mut start = utc(first + i as u64 * bucket);
            if i + 1 == n && covered < bucket {
                let _ = write!(
                    start,
                    " (partial: the log ends {:.0} s in{})",
                    covered as f64 / 1000.0,
                    if partial { ", not drawn" } else { "" }
                );
            }
            let mut row = vec![start];
            row.extend(ACTIONS.iter().map(|a| counts[a][i].to_string()));
            row
        })
        .collect();
    html.body.push_str("<h2>Decisions over time</h2>\n");
    let header = ["bucket start", "continue_bot", "offer_human", "escalate"];
    if n == 1 {
        // One point on an axis says nothing a table does not: say so and show the counts.
        let _ = writeln!(
            html.body,
            "<p>The whole log falls within one {minutes}-minute bucket (from {} to {}): too short to draw over time.</p>",
            utc(first),
            utc(last)
        );
        html.table(&header, &rows);
        return Ok(());
    }
    let svg = line_chart(
        &format!("Decisions per {minutes} min by action"),
        &format!("{unit} since {}", utc(first)),
        "decisions",
        &series,
        max,
        None,
    )?;
    html.figure("Decisions over time, by action", &svg, &header, &rows);
    Ok(())
}

/// Share of decisions in each group that brought a person in (offered or escalated).
pub(super) fn rates(html: &mut Html, log: &Tally, policy: &Policy) -> Result<(), ReportError> {
    html.body.push_str("<h2>Escalation rates</h2>\n<p>Which rule made each decision, and by channel and customer tier the share of decisions that brought a person in (offer or escalate).</p>\n");
    let total = log.decisions.max(1) as f64;
    let by_rule = &log.by_rule;
    let items: Vec<(String, f64)> = by_rule
        .iter()
        .map(|(r, n)| (r.clone(), *n as f64 / total))
        .collect();
    let rows: Vec<Vec<String>> = by_rule
        .iter()
        .map(|(r, n)| {
            vec![
                r.clone(),
                describe(r, policy),
                n.to_string(),
                pct(*n as f64 / total),
            ]
        })
        .collect();
    let svg = bar_chart(
        "Share of decisions by deciding rule",
        "share of all decisions",
        &items,
    )?;
    html.figure(
        "Decisions by deciding rule",
        &svg,
        &["rule", "what it means", "decisions", "share"],
        &rows,
    );
    // Not by queue: only offers and escalations have one, so its rate is 0 or 100 % by definition.
    for (name, counts) in [("channel", &log.by_channel), ("tier", &log.by_tier)] {
        let items: Vec<(String, f64)> = counts
            .iter()
            .map(|(k, (n, h))| (k.clone(), *h as f64 / *n as f64))
            .collect();
        let rows: Vec<Vec<String>> = counts
            .iter()
            .map(|(k, (n, h))| vec![k.clone(), n.to_string(), h.to_string(), share(*h, *n)])
            .collect();
        let svg = bar_chart(
            &format!("Escalation rate by {name}"),
            "share offered or escalated",
            &items,
        )?;
        html.figure(
            &format!("Escalation rate by {name}"),
            &svg,
            &[name, "decisions", "offered or escalated", "rate"],
            &rows,
        );
    }
    Ok(())
}

pub(super) fn confidence(html: &mut Html, log: &Tally) -> Result<(), ReportError> {
    html.body.push_str("<h2>Model confidence</h2>\n");
    let heads = [
        ("Top intent probability", "intent_score", &log.intent_score),
        ("Negativity", "negativity", &log.negativity),
    ];
    for (title, signal, counts) in heads {
        let svg = histogram(&format!("{title} per decision"), signal, counts.as_slice())?;
        let rows: Vec<Vec<String>> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let lo = i as f64 / BINS as f64;
                vec![
                    format!("{lo:.2}–{:.2}", lo + 1.0 / BINS as f64),
                    c.to_string(),
                ]
            })
            .collect();
        html.figure(
            &format!("Histogram of {signal}"),
            &svg,
            &[signal, "decisions"],
            &rows,
        );
    }
    Ok(())
}

/// CSAT and wait by path: what the service decided, and who resolved the conversation.
pub(super) fn outcomes_by_path(html: &mut Html, log: &Tally) -> Result<(), ReportError> {
    html.body.push_str("<h2>CSAT and wait time by path</h2>\n");
    let paths = &log.paths;
    if paths.is_empty() {
        html.body.push_str(
            "<p>No feedback in the log: CSAT and wait time come from the Feedback RPC.</p>\n",
        );
        return Ok(());
    }
    let mean = |(sum, n): (f64, usize)| (n > 0).then(|| sum / n as f64);
    let csat: Vec<(String, f64)> = paths
        .iter()
        .filter_map(|(p, a)| Some((p.clone(), mean(a.csat)?)))
        .collect();
    let wait: Vec<(String, f64)> = paths
        .iter()
        .filter_map(|(p, a)| Some((p.clone(), mean(a.wait)?)))
        .collect();
    let rows: Vec<Vec<String>> = paths
        .iter()
        .map(|(p, a)| {
            vec![
                p.clone(),
                a.n.to_string(),
                mean(a.csat).map_or("-".into(), |c| format!("{c:.2} ({})", samples(a.csat.1))),
                mean(a.wait).map_or("-".into(), |w| format!("{w:.0} s ({})", samples(a.wait.1))),
            ]
        })
        .collect();
    let header = [
        "decision → resolved by",
        "with feedback",
        "mean CSAT (n)",
        "mean wait (n)",
    ];
    // Feedback without the field draws no empty axes: a sentence says what is missing.
    if csat.is_empty() {
        html.body.push_str("<p>No feedback carries a CSAT score: send <code>csat</code> (1–5) with Feedback to see it by path.</p>\n");
    } else {
        let svg = bar_chart("Mean CSAT (1–5) by path", "mean CSAT", &csat)?;
        html.figure("Mean CSAT by path", &svg, &header, &rows);
    }
    if wait.is_empty() {
        html.body.push_str("<p>No feedback carries a wait time: send <code>wait_seconds</code> with Feedback to see it by path.</p>\n");
    } else {
        let svg = bar_chart("Mean wait for a person by path", "seconds", &wait)?;
        html.figure("Mean wait by path", &svg, &header, &rows);
    }
    Ok(())
}
