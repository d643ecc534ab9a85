//! `handoff export-examples`: real customer messages, labelled by what happened, in the layout the
//! training pipeline reads (`models/train`: `intents/<lang>/<label>.txt`, one text per line).
//!
//! Only decisions whose text the operator chose to keep (redacted) and that got feedback are used.
//! Feedback says whether a person was needed, not which intent a message had, so a message becomes an
//! intent example only when the feedback confirms the decision built on the model's reading (a person
//! brought in and needed, or kept with the bot and not needed) and the model was confident. Messages
//! whose feedback contradicts the decision go to `review.tsv` for a person to label: those are the
//! ones the next model most needs to learn.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::entry::Outcome;
use super::reader::DecisionLogData;

/// Intent probability a confirmed message needs to become an example.
pub const MIN_INTENT_SCORE: f32 = 0.8;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing {0}")]
    Write(PathBuf, #[source] std::io::Error),
}

#[derive(Debug, Default)]
pub struct ExportSummary {
    /// Examples written per (language, intent).
    pub examples: BTreeMap<(String, String), usize>,
    pub review: usize,
    pub without_text: usize,
    pub without_feedback: usize,
    pub low_confidence: usize,
}

impl std::fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: usize = self.examples.values().sum();
        writeln!(f, "{total} confirmed examples:")?;
        for ((lang, intent), n) in &self.examples {
            writeln!(f, "  {lang} {intent}: {n}")?;
        }
        writeln!(
            f,
            "{} contradicted decisions for review (review.tsv)",
            self.review
        )?;
        writeln!(
            f,
            "skipped: {} without kept text (keep_redacted_text off), {} without feedback, {} below intent score {MIN_INTENT_SCORE}",
            self.without_text, self.without_feedback, self.low_confidence
        )
    }
}

/// Chinese when the text has any CJK ideograph; English otherwise (the model's two languages).
fn language(text: &str) -> &'static str {
    if text
        .chars()
        .any(|c| ('\u{4E00}'..='\u{9FFF}').contains(&c) || ('\u{3400}'..='\u{4DBF}').contains(&c))
    {
        "zh"
    } else {
        "en"
    }
}

/// One line per text: line breaks and tabs inside a message would split it.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn export(log: &DecisionLogData, out: &Path) -> Result<ExportSummary, ExportError> {
    let mut summary = ExportSummary::default();
    let mut examples: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut review = String::from("decision_id\tlang\tmodel_intent\taction\thuman_needed\ttext\n");
    for d in &log.decisions {
        let Some(text) = d.text.as_deref().map(one_line).filter(|t| !t.is_empty()) else {
            summary.without_text += 1;
            continue;
        };
        let Some(f) = log.feedback.get(&d.decision_id) else {
            summary.without_feedback += 1;
            continue;
        };
        let lang = language(&text);
        let confirmed = Outcome::of_logged(d).brings_human() == f.human_needed.needed();
        if !confirmed {
            summary.review += 1;
            let needed = f.human_needed.as_str();
            let _ = writeln!(
                review,
                "{}\t{lang}\t{}\t{}\t{needed}\t{text}",
                d.decision_id, d.signals.intent, d.action
            );
        } else if d.signals.intent_score < MIN_INTENT_SCORE {
            summary.low_confidence += 1;
        } else {
            examples
                .entry((lang.to_string(), d.signals.intent.clone()))
                .or_default()
                .insert(text);
        }
    }
    let write = |path: PathBuf, text: &str| -> Result<(), ExportError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ExportError::Write(dir.to_path_buf(), e))?;
        }
        std::fs::write(&path, text).map_err(|e| ExportError::Write(path.clone(), e))
    };
    for ((lang, intent), texts) in &examples {
        let mut body = String::from(
            "# exported by handoff export-examples: real traffic, redacted, confirmed by feedback\n",
        );
        for t in texts {
            body.push_str(t);
            body.push('\n');
        }
        write(
            out.join("intents").join(lang).join(format!("{intent}.txt")),
            &body,
        )?;
        summary
            .examples
            .insert((lang.clone(), intent.clone()), texts.len());
    }
    write(out.join("review.tsv"), &review)?;
    write(
        out.join("SOURCE.txt"),
        "Customer messages from a handoff decision log (keep_redacted_text on), personal data\n\
         redacted, labelled by the model's intent where feedback confirmed the decision.\n\
         Your customers' data: check consent and retention before training on it.\n\
         Train with: python models/train/train.py --extra THIS_DIR ...\n",
    )?;
    Ok(summary)
}
