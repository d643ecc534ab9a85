//! `manifest.toml`: what a model package says about itself. The service reads labels and I/O names
//! from here and never hard-codes them.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use super::{ManifestProblem, ModelError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub text_prefix: String,
    pub max_tokens: usize,
    #[serde(default = "default_pad_id")]
    pub pad_id: i64,
    pub files: Files,
    pub onnx: OnnxNames,
    pub labels: Labels,
    #[serde(default)]
    pub metrics: toml::Table,
    #[serde(default)]
    pub golden: Vec<Golden>,
    /// Tensor-parallel stages for single calls; without them every call runs model.onnx.
    #[serde(default)]
    pub parallel: Option<ParallelSection>,
}

fn default_pad_id() -> i64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Files {
    pub model: String,
    pub tokenizer: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxNames {
    pub input_ids: String,
    pub attention_mask: String,
    pub intent: String,
    pub sentiment: String,
    pub embedding: String,
    pub embedding_dim: usize,
    /// The graded-upset head (models from 3.0): probabilities over `labels.upset`.
    #[serde(default)]
    pub upset: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    pub intent: Vec<String>,
    pub sentiment: Vec<String>,
    /// Grades from calm to upset, the last "upset" (with `[onnx] upset`).
    #[serde(default)]
    pub upset: Option<Vec<String>>,
}

/// `[parallel]`: where `models/train/parallel.py` wrote the two-way stages of the encoder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelSection {
    /// Outputs of model.onnx after the embedding: the tokens [batch, seq, hidden] and the
    /// attention bias [batch, 1, 1, seq].
    pub embed_outputs: [String; 2],
    pub layers: usize,
    /// Directory of the stage files, inside the package.
    pub dir: String,
    /// How far the stages' outputs may be from the whole graph's on the load-time check. f32
    /// graphs agree to ~1e-4 (the default 1e-3 leaves room); a package with int8 activations
    /// (`models/train/int8_activations.py`) needs more: a residual sum added in another order
    /// can move one activation across a rounding step, and the step carries to the outputs.
    #[serde(default = "default_parallel_tolerance")]
    pub tolerance: f32,
}

/// Loosest stage check a manifest may ask for: stages sliced wrongly (a stale or mis-cut half)
/// are off by tenths.
pub(super) const MAX_PARALLEL_TOLERANCE: f32 = 0.02;

fn default_parallel_tolerance() -> f32 {
    1e-3
}

/// An example every load must classify as written: a package that fails one is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    pub text: String,
    pub intent: Option<String>,
    pub sentiment: Option<String>,
}

/// Longest sequence the position embeddings of any supported encoder cover.
pub(super) const MAX_SUPPORTED_TOKENS: usize = 512;
/// More layers than any encoder we ship: a bound so a bad manifest cannot ask for endless files.
pub(super) const MAX_PARALLEL_LAYERS: usize = 48;

impl Manifest {
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("manifest.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::Io(path.clone(), e))?;
        let manifest: Manifest =
            toml::from_str(&text).map_err(|source| ModelError::ManifestSyntax {
                path: path.clone(),
                source,
            })?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestProblem> {
        if self.name.trim().is_empty() || self.version.trim().is_empty() {
            return Err(ManifestProblem::Unnamed);
        }
        if self.max_tokens < 4 || self.max_tokens > MAX_SUPPORTED_TOKENS {
            return Err(ManifestProblem::MaxTokens(self.max_tokens));
        }
        let upset = match (&self.onnx.upset, &self.labels.upset) {
            (None, None) => None,
            (Some(_), Some(grades)) if grades.last().is_some_and(|g| g == "upset") => Some(grades),
            _ => return Err(ManifestProblem::UpsetHead),
        };
        for (head, labels) in [
            ("intent", &self.labels.intent),
            ("sentiment", &self.labels.sentiment),
        ]
        .into_iter()
        .chain(upset.map(|grades| ("upset", grades)))
        {
            if labels.len() < 2 {
                return Err(ManifestProblem::TooFewLabels {
                    head,
                    count: labels.len(),
                });
            }
            let unique: HashSet<_> = labels.iter().collect();
            if unique.len() != labels.len() {
                return Err(ManifestProblem::DuplicateLabels(head));
            }
        }
        if !self.labels.sentiment.iter().any(|l| l == "negative") {
            return Err(ManifestProblem::NoNegative);
        }
        if let Some(p) = &self.parallel {
            let inside = Path::new(&p.dir)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if p.dir.is_empty() || !inside {
                return Err(ManifestProblem::ParallelDir(p.dir.clone()));
            }
            if !(1..=MAX_PARALLEL_LAYERS).contains(&p.layers) {
                return Err(ManifestProblem::ParallelLayers(p.layers));
            }
            if !(p.tolerance > 0.0 && p.tolerance <= MAX_PARALLEL_TOLERANCE) {
                return Err(ManifestProblem::ParallelTolerance(p.tolerance));
            }
        }
        for g in &self.golden {
            let expects = [
                ("intent", &g.intent, &self.labels.intent),
                ("sentiment", &g.sentiment, &self.labels.sentiment),
            ];
            for (head, label, labels) in expects {
                if let Some(label) = label.as_ref().filter(|l| !labels.contains(l)) {
                    return Err(ManifestProblem::UnknownGoldenLabel {
                        head,
                        label: label.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../models/handoff-zh-en/2.2.0/manifest.toml");

    fn with(edit: impl Fn(&str) -> String) -> Result<(), ManifestProblem> {
        toml::from_str::<Manifest>(&edit(SHIPPED))
            .unwrap()
            .validate()
    }

    /// The graded-upset head is optional (2.2.0 has none) and, when named, needs its grades.
    #[test]
    fn an_upset_head_needs_its_output_and_grades_ending_in_upset() {
        assert!(with(str::to_string).is_ok());
        let onnx = |s: &str| {
            s.replace(
                "embedding_dim = 384",
                "embedding_dim = 384\nupset = \"upset_probs\"",
            )
        };
        let labels = |s: &str, grades: &str| {
            s.replace(
                "sentiment = [\"negative\"",
                &format!("upset = {grades}\nsentiment = [\"negative\""),
            )
        };
        assert!(with(|s| labels(&onnx(s), r#"["calm", "annoyed", "upset"]"#)).is_ok());
        for broken in [
            onnx(SHIPPED),
            labels(SHIPPED, r#"["calm", "annoyed", "upset"]"#),
            labels(&onnx(SHIPPED), r#"["upset", "calm"]"#),
            labels(&onnx(SHIPPED), r#"["calm", "calm", "upset"]"#),
        ] {
            assert!(with(|_| broken.clone()).is_err(), "{broken}");
        }
    }
}
