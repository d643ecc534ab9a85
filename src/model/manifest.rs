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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    pub intent: Vec<String>,
    pub sentiment: Vec<String>,
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
        for (head, labels) in [
            ("intent", &self.labels.intent),
            ("sentiment", &self.labels.sentiment),
        ] {
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
