//! `handoff report`: one self-contained HTML file about a decision log, for the team that owns the
//! policy. Every plot is inline SVG drawn with plotters (nothing to fetch when the file is opened),
//! and every plot has a table of the same numbers beside it for screen readers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;

use super::entry::{LoggedDecision, Outcome};
use super::replay::{Confusion, DecisionLogData};
use crate::policy::catalog::Kind;
use crate::policy::{Policy, Threshold};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("drawing a plot: {0}")]
    Plot(String),
}

impl<E: std::error::Error + Send + Sync> From<plotters::drawing::DrawingAreaErrorKind<E>>
    for ReportError
{
    fn from(e: plotters::drawing::DrawingAreaErrorKind<E>) -> Self {
        ReportError::Plot(e.to_string())
    }
}

/// Decisions a threshold sweep replays at most per value (an even sample of the log beyond that).
const SWEEP_SAMPLE: usize = 50_000;
const SWEEP_POINTS: usize = 21;
const ACTIONS: [&str; 3] = ["continue_bot", "offer_human", "escalate"];
const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];
const WIDTH: u32 = 720;
const HEIGHT: u32 = 300;

/// The whole report. `policy` is the one whose thresholds are swept (usually the live one).
pub fn render(log: &DecisionLogData, policy: &Policy) -> Result<String, ReportError> {
    let mut html = Html::default();
    headline(&mut html, log);
    html.summary(log, policy);
    over_time(&mut html, &log.decisions)?;
    rates(&mut html, log)?;
    rule_precision(&mut html, log, policy)?;
    sweeps(&mut html, log, policy)?;
    confidence(&mut html, &log.decisions)?;
    html.section(
        "Shadow agreement",
        "Shadow comparisons are not part of the decision log: see handoff_shadow_comparisons_total \
         on the metrics endpoint and the Grafana dashboard.",
    );
    outcomes_by_path(&mut html, log)?;
    Ok(html.finish())
}

#[derive(Default)]
struct Html {
    body: String,
    figures: usize,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Html {
    fn summary(&mut self, log: &DecisionLogData, policy: &Policy) {
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
        self.body.push_str("<h2>Summary</h2>\n");
        self.table(&["", "value"], &rows);
    }

    fn section(&mut self, title: &str, text: &str) {
        let _ = writeln!(
            self.body,
            "<h2>{}</h2>\n<p>{}</p>",
            escape(title),
            escape(text)
        );
    }

    /// A plot with its caption and the same numbers as a table.
    fn figure(&mut self, title: &str, svg: &str, header: &[&str], rows: &[Vec<String>]) {
        self.figures += 1;
        let id = format!("fig{}", self.figures);
        let _ = writeln!(
            self.body,
            "<figure id=\"{id}\">\n<figcaption id=\"{id}-cap\">{}</figcaption>\n<div class=\"plot\" role=\"img\" aria-labelledby=\"{id}-cap\">{svg}</div>",
            escape(title)
        );
        self.table(header, rows);
        self.body.push_str("</figure>\n");
    }

    fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.body.push_str("<table>\n<thead><tr>");
        for h in header {
            let _ = write!(self.body, "<th scope=\"col\">{}</th>", escape(h));
        }
        self.body.push_str("</tr></thead>\n<tbody>\n");
        for row in rows {
            self.body.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                let tag = if i == 0 { "th scope=\"row\"" } else { "td" };
                let close = if i == 0 { "th" } else { "td" };
                let _ = write!(self.body, "<{tag}>{}</{close}>", escape(cell));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody></table>\n");
    }

    fn finish(self) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>handoff decision report</title>\n<style>\nbody{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}\nfigure{{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start;margin:1.5em 0;border-top:1px solid #ddd;padding-top:1em}}\nfigcaption{{width:100%;font-weight:bold}}\ntable{{border-collapse:collapse;font-size:0.85em}}\nth,td{{border:1px solid #ccc;padding:2px 6px;text-align:right}}\nth[scope=row]{{text-align:left}}\n</style></head>\n<body>\n<h1>handoff decision report</h1>\n{}</body></html>\n",
            self.body
        )
    }
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM UTC` (days to civil date: Howard Hinnant's algorithm).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

/// Lines over a numeric x; `marker` draws a vertical line (today's threshold).
fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    y_max: f64,
    marker: Option<f64>,
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let xs = series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x));
        let (mut x0, mut x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        if let Some(m) = marker {
            (x0, x1) = (x0.min(m), x1.max(m));
        }
        if x0 >= x1 {
            (x0, x1) = (x0.min(0.0), x0.max(0.0) + 1.0);
        }
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(x0..x1, 0f64..y_max.max(1e-9) * 1.05)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            // Points too, so a series of one point (a log shorter than one bucket) still shows.
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
        if let Some(m) = marker {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(m, 0.0), (m, y_max * 1.05)],
                    BLACK.stroke_width(1),
                )))?
                .label("today's value")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Horizontal bars, one per named value, first on top.
fn bar_chart(title: &str, x_desc: &str, items: &[(String, f64)]) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let n = items.len().max(1);
        let height = (60 + 26 * n as u32).max(160);
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = items.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1e-9);
        let labels: Vec<String> = items.iter().map(|(l, _)| l.clone()).collect();
        let label = move |y: &f64| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                labels.get(n - 1 - i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(150)
            .build_cartesian_2d(0f64..max * 1.1, -0.5f64..(n as f64 - 0.5))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&label)
            .x_desc(x_desc)
            .draw()?;
        chart.draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            let y = (n - 1 - i) as f64;
            Rectangle::new([(0.0, y - 0.35), (*v, y + 0.35)], PALETTE[0].filled())
        }))?;
        root.present()?;
    }
    Ok(svg)
}

/// How many of `values` fall in each of `bins` equal bins over [0, 1].
fn bin_counts(values: &[f64], bins: usize) -> Vec<usize> {
    let mut counts = vec![0usize; bins];
    for v in values {
        let b = (v.clamp(0.0, 1.0) * bins as f64) as usize;
        counts[b.min(bins - 1)] += 1;
    }
    counts
}

/// Bars over [0, 1], one per bin of `counts`.
fn histogram(title: &str, x_desc: &str, counts: &[usize]) -> Result<String, ReportError> {
    let bins = counts.len().max(1);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..1f64, 0f64..max * 1.05)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("decisions")
            .draw()?;
        let w = 1.0 / bins as f64;
        chart.draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x = i as f64 * w;
            Rectangle::new([(x, 0.0), (x + w * 0.9, *c as f64)], PALETTE[0].filled())
        }))?;
        root.present()?;
    }
    Ok(svg)
}

fn over_time(html: &mut Html, decisions: &[LoggedDecision]) -> Result<(), ReportError> {
    let (first, last) = (
        decisions.iter().map(|d| d.ts_ms).min().unwrap_or(0),
        decisions.iter().map(|d| d.ts_ms).max().unwrap_or(0),
    );
    // The smallest round bucket that keeps the plot within 60 points.
    const MINUTE: u64 = 60_000;
    let bucket = [1, 5, 15, 60, 360, 1440, 10_080]
        .iter()
        .map(|m| m * MINUTE)
        .find(|b| (last - first) / b < 60)
        .unwrap_or(10_080 * MINUTE);
    let n = ((last - first) / bucket + 1) as usize;
    let mut counts: BTreeMap<&str, Vec<f64>> = ACTIONS.iter().map(|a| (*a, vec![0.0; n])).collect();
    for d in decisions {
        if let Some(c) = counts.get_mut(d.action.as_str()) {
            c[((d.ts_ms - first) / bucket) as usize] += 1.0;
        }
    }
    let hours = |i: usize| (i as u64 * bucket) as f64 / 3_600_000.0;
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
                .map(|(i, c)| (hours(i), *c));
            (a.to_string(), pts.collect())
        })
        .collect();
    let max = counts.values().flatten().copied().fold(0.0, f64::max);
    let minutes = bucket / MINUTE;
    let svg = line_chart(
        &format!("Decisions per {minutes} min by action"),
        &format!("hours since {}", utc(first)),
        "decisions",
        &series,
        max,
        None,
    )?;
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
    html.figure(
        "Decisions over time, by action",
        &svg,
        &["bucket start", "continue_bot", "offer_human", "escalate"],
        &rows,
    );
    Ok(())
}

/// Share of decisions in each group that brought a person in (offered or escalated).
fn rates(html: &mut Html, log: &DecisionLogData) -> Result<(), ReportError> {
    html.body.push_str("<h2>Escalation rates</h2>\n<p>The share of decisions that brought a person in (offer or escalate), by group; by rule, the share of all decisions each rule made.</p>\n");
    let total = log.decisions.len().max(1) as f64;
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    for d in &log.decisions {
        *by_rule.entry(d.rule.clone()).or_default() += 1;
    }
    let items: Vec<(String, f64)> = by_rule
        .iter()
        .map(|(r, n)| (r.clone(), *n as f64 / total))
        .collect();
    let rows: Vec<Vec<String>> = by_rule
        .iter()
        .map(|(r, n)| vec![r.clone(), n.to_string(), pct(*n as f64 / total)])
        .collect();
    let svg = bar_chart(
        "Share of decisions by deciding rule",
        "share of all decisions",
        &items,
    )?;
    html.figure(
        "Decisions by deciding rule",
        &svg,
        &["rule", "decisions", "share"],
        &rows,
    );
    type Key = fn(&LoggedDecision) -> String;
    let groups: [(&str, Key); 3] = [
        ("channel", |d| d.signals.channel.clone()),
        ("tier", |d| d.signals.tier.clone()),
        ("queue", |d| {
            if d.queue.is_empty() {
                "(none: bot)".to_string()
            } else {
                d.queue.clone()
            }
        }),
    ];
    for (name, key) in groups {
        let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for d in &log.decisions {
            let e = counts.entry(key(d)).or_default();
            e.0 += 1;
            e.1 += usize::from(Outcome::of_logged(d).brings_human());
        }
        let items: Vec<(String, f64)> = counts
            .iter()
            .map(|(k, (n, h))| (k.clone(), *h as f64 / *n as f64))
            .collect();
        let rows: Vec<Vec<String>> = counts
            .iter()
            .map(|(k, (n, h))| {
                vec![
                    k.clone(),
                    n.to_string(),
                    h.to_string(),
                    pct(*h as f64 / *n as f64),
                ]
            })
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

/// Whether `policy` made any of the logged decisions (else its sweeps are a candidate's, not today's).
fn made_any(log: &DecisionLogData, policy: &Policy) -> bool {
    log.decisions
        .iter()
        .any(|d| d.policy_version == policy.version())
}

/// Below this many, a share is shown with a warning: 2 of 3 is not 67 %.
const FEW: usize = 30;

/// `num` of `den` as a percentage with both counts, flagged when `den` is small.
fn share(num: usize, den: usize) -> String {
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
fn headline(html: &mut Html, log: &DecisionLogData) {
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
fn describe(rule: &str, policy: &Policy) -> String {
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

fn rule_precision(
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
fn sweep_values(t: &Threshold) -> Vec<f64> {
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

fn sweeps(html: &mut Html, log: &DecisionLogData, policy: &Policy) -> Result<(), ReportError> {
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

fn confidence(html: &mut Html, decisions: &[LoggedDecision]) -> Result<(), ReportError> {
    html.body.push_str("<h2>Model confidence</h2>\n");
    type Get = fn(&LoggedDecision) -> f64;
    let heads: [(&str, &str, Get); 2] = [
        ("Top intent probability", "intent_score", |d| {
            d.signals.intent_score as f64
        }),
        ("Negativity", "negativity", |d| d.signals.negativity as f64),
    ];
    const BINS: usize = 20;
    for (title, signal, get) in heads {
        let values: Vec<f64> = decisions.iter().map(get).collect();
        let counts = bin_counts(&values, BINS);
        let svg = histogram(&format!("{title} per decision"), signal, &counts)?;
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
fn outcomes_by_path(html: &mut Html, log: &DecisionLogData) -> Result<(), ReportError> {
    html.body.push_str("<h2>CSAT and wait time by path</h2>\n");
    #[derive(Default)]
    struct Acc {
        n: usize,
        csat: (f64, usize),
        wait: (f64, usize),
    }
    let mut paths: BTreeMap<String, Acc> = BTreeMap::new();
    for d in &log.decisions {
        let Some(f) = log.feedback.get(&d.decision_id) else {
            continue;
        };
        let resolved = f
            .resolved_by
            .map_or("unknown".to_string(), |r| format!("{r:?}").to_lowercase());
        let a = paths
            .entry(format!("{} → {resolved}", d.action))
            .or_default();
        a.n += 1;
        if let Some(c) = f.csat {
            a.csat.0 += f64::from(c);
            a.csat.1 += 1;
        }
        if let Some(w) = f.wait_seconds {
            a.wait.0 += f64::from(w);
            a.wait.1 += 1;
        }
    }
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
                mean(a.csat).map_or("-".into(), |c| format!("{c:.2} ({})", a.csat.1)),
                mean(a.wait).map_or("-".into(), |w| format!("{w:.0} s ({})", a.wait.1)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decision_at(ts_ms: u64) -> LoggedDecision {
        serde_json::from_value(serde_json::json!({
            "decision_id": format!("d{ts_ms}"), "ts_ms": ts_ms, "conversation": "c",
            "action": "continue_bot", "rule": "default", "priority": 0, "reasons": [],
            "model": "m", "model_version": "1", "policy_version": "p",
            "unix_s": 0, "sent_unix_s": 0, "signals": {},
        }))
        .unwrap()
    }

    #[test]
    fn another_policy_and_missing_feedback_fields_are_said_in_words() {
        let log = DecisionLogData {
            decisions: vec![decision_at(0)],
            feedback: [(
                "d0".to_string(),
                serde_json::from_value(serde_json::json!({
                    "decision_id": "d0", "ts_ms": 1, "human_needed": "not_needed",
                    "caller": "t",
                }))
                .unwrap(),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let html = render(&log, &Policy::builtin()).unwrap();
        assert!(
            html.contains("made none of these decisions"),
            "policy p made them"
        );
        assert!(html.contains("No feedback carries a CSAT score"));
        assert!(html.contains("No feedback carries a wait time"));
        assert!(html.contains("few samples, read with care"), "1 of 1");
    }

    #[test]
    fn a_last_bucket_the_log_barely_reaches_is_marked_and_not_drawn() {
        // 0 to 190 min, one a minute: 5-minute buckets, the last one 1 ms long.
        let decisions: Vec<_> = (0..=190).map(|m| decision_at(m * 60_000)).collect();
        let mut html = Html {
            body: String::new(),
            figures: 0,
        };
        over_time(&mut html, &decisions).unwrap();
        assert!(
            html.body
                .contains("(partial: the log ends 0 s in, not drawn)"),
            "{}",
            html.body
        );
        // 0 to 189 min: the last bucket holds 4 of its 5 minutes, drawn and marked.
        let decisions: Vec<_> = (0..190).map(|m| decision_at(m * 60_000)).collect();
        let mut html = Html {
            body: String::new(),
            figures: 0,
        };
        over_time(&mut html, &decisions).unwrap();
        assert!(
            html.body.contains("(partial: the log ends 240 s in)"),
            "{}",
            html.body
        );
    }

    #[test]
    fn utc_dates_are_civil_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_795_663_047_421), "2026-11-26 03:17 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
