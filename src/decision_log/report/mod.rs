//! `handoff report`: one self-contained HTML file about a decision log, for the team that owns the
//! policy. Every plot is inline SVG drawn with plotters (nothing to fetch when the file is opened),
//! and every plot has a table of the same numbers beside it for screen readers.

mod draw;
mod rules;
mod tally;
mod traffic;

use crate::policy::Policy;
use draw::Html;
use rules::{headline, rule_precision, summary, sweeps};
pub use tally::Tally;
use traffic::{confidence, outcomes_by_path, over_time, rates};

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
pub(super) const ACTIONS: [&str; 3] = ["continue_bot", "offer_human", "escalate"];

/// The whole report from a log's figures (see [`Tally::of_stream`]). `policy` is the one whose
/// thresholds are swept (usually the live one).
pub fn render(log: &Tally, policy: &Policy) -> Result<String, ReportError> {
    let mut html = Html::default();
    headline(&mut html, log);
    summary(&mut html, log, policy);
    over_time(&mut html, log)?;
    rates(&mut html, log, policy)?;
    rule_precision(&mut html, log, policy)?;
    sweeps(&mut html, log, policy)?;
    confidence(&mut html, log)?;
    html.section(
        "Shadow agreement",
        "Shadow comparisons are not part of the decision log: see handoff_shadow_comparisons_total \
         on the metrics endpoint and the Grafana dashboard.",
    );
    outcomes_by_path(&mut html, log)?;
    Ok(html.finish())
}

#[cfg(test)]
mod tests {
    use super::draw::utc;
    use super::*;
    use crate::decision_log::reader::DecisionLogData;
    use crate::decision_log::LoggedDecision;

    fn tally(decisions: Vec<LoggedDecision>) -> Tally {
        Tally::of_log(&DecisionLogData {
            decisions,
            ..Default::default()
        })
    }

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
        let html = render(&Tally::of_log(&log), &Policy::builtin()).unwrap();
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
        let mut html = Html::default();
        over_time(&mut html, &tally(decisions)).unwrap();
        assert!(
            html.body
                .contains("(partial: the log ends 0 s in, not drawn)"),
            "{}",
            html.body
        );
        // 0 to 189 min: the last bucket holds 4 of its 5 minutes, drawn and marked.
        let decisions: Vec<_> = (0..190).map(|m| decision_at(m * 60_000)).collect();
        let mut html = Html::default();
        over_time(&mut html, &tally(decisions)).unwrap();
        assert!(
            html.body.contains("(partial: the log ends 240 s in)"),
            "{}",
            html.body
        );
    }

    #[test]
    fn sweeps_name_the_channel_of_a_clause_and_leave_guards_alone() {
        let text = format!(
            "{}\n[[rules]]\nid = \"voice_upset\"\nwhen = \"channel == 'voice' and negativity >= 0.8\"\naction = \"offer_human\"\ndetail = \"upset on a voice call\"\n",
            crate::policy::config::BUILTIN
        );
        let policy = Policy::new(toml::from_str(&text).unwrap()).unwrap();
        let log = DecisionLogData {
            decisions: vec![decision_at(0)],
            ..Default::default()
        };
        let html = render(&Tally::of_log(&log), &policy).unwrap();
        assert!(
            html.contains("Sweep of voice_upset: negativity &gt;= 0.8 (when channel == 'voice')"),
            "the channel is named"
        );
        assert!(html.contains("<h3>voice_upset</h3>\n<p>upset on a voice call</p>"));
        // `repeat_cue and turns >= 1`: a guard, not a knob; `similarity >= 0.79` is a knob.
        assert!(!html.contains("turns &gt;= 1"), "guards are not swept");
        assert!(html.contains("Sweep of repeated_question: similarity &gt;= 0.79"));
    }

    #[test]
    fn a_log_within_one_bucket_is_a_table_not_a_dot() {
        let decisions: Vec<_> = (0..30).map(|s| decision_at(s * 1000)).collect();
        let mut html = Html::default();
        over_time(&mut html, &tally(decisions)).unwrap();
        assert!(html.body.contains("falls within one 1-minute bucket"));
        assert!(!html.body.contains("<svg"));
        // Under two hours the axis counts minutes.
        let decisions: Vec<_> = (0..90).map(|m| decision_at(m * 60_000)).collect();
        let mut html = Html::default();
        over_time(&mut html, &tally(decisions)).unwrap();
        assert!(html.body.contains("minutes since 1970-01-01 00:00 UTC"));
    }

    #[test]
    fn utc_dates_are_civil_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_795_663_047_421), "2026-11-26 03:17 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
