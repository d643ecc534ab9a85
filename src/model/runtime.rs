//! A loaded package: tokenizer + optimised tract plan with symbolic batch and sequence dimensions.
//! `run` is synchronous and CPU-bound: call it from inference worker threads, never from async code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::Tokenizer;
use tract_onnx::prelude::*;

use super::parallel::ParallelRunner;
use super::{optimize, GraphMismatch, Manifest, ModelError};

pub struct Model {
    pub manifest: Manifest,
    pub dir: PathBuf,
    tokenizer: Tokenizer,
    plan: Arc<TypedRunnableModel>,
    /// The package's tensor-parallel stages, when it has them: one message on two threads.
    parallel: Option<ParallelRunner>,
    negative_idx: usize,
    load_id: u64,
    /// Microseconds one text took in warm-up (0: not warmed up): the queue's wait estimate before
    /// any live batch has run.
    warm_per_text_us: std::sync::atomic::AtomicU64,
}

/// Every load gets its own id: caches key on it, so two loads never share results, even of the
/// same package (the files may have changed in between).
static NEXT_LOAD_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Token ids of one text, ready for a batch.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<i64>,
    /// The text was longer than the model's `max_tokens` and was cut.
    pub truncated: bool,
}

/// The model's outputs for one text.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub intent_probs: Vec<f32>,
    pub sentiment_probs: Vec<f32>,
    pub embedding: Vec<f32>,
    /// Over the manifest's upset grades; empty for a model without the head.
    pub upset_probs: Vec<f32>,
}

impl Prediction {
    pub fn top_intent(&self) -> usize {
        argmax(&self.intent_probs)
    }
    pub fn top_sentiment(&self) -> usize {
        argmax(&self.sentiment_probs)
    }
    /// Top intent probability minus the runner-up's: small means the model hesitates between two.
    pub fn intent_margin(&self) -> f32 {
        let top = self.top_intent();
        let second = self
            .intent_probs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != top)
            .map(|(_, p)| *p)
            .fold(0.0, f32::max);
        self.intent_probs[top] - second
    }
}

fn argmax(xs: &[f32]) -> usize {
    xs.iter()
        .enumerate()
        .fold(0, |best, (i, x)| if *x > xs[best] { i } else { best })
}

/// One golden example's outcome, for `check-model`.
#[derive(Debug, Clone)]
pub struct GoldenResult {
    pub text: String,
    pub expected: String,
    pub got: String,
    pub passed: bool,
}

impl Model {
    /// Load and fully validate a package directory; a package that fails any check is refused.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let manifest = Manifest::load(dir)?;
        let tok_path = dir.join(&manifest.files.tokenizer);
        let tokenizer =
            Tokenizer::from_file(&tok_path).map_err(|source| ModelError::Tokenizer {
                path: tok_path.clone(),
                source,
            })?;
        let onnx_path = dir.join(&manifest.files.model);
        let graph = load_graph(&onnx_path, &manifest)?;
        let parallel = manifest
            .parallel
            .as_ref()
            .map(|section| ParallelRunner::load(dir, section, &graph))
            .transpose()?;
        let plan = optimize(graph).map_err(|e| ModelError::Onnx {
            path: onnx_path.clone(),
            source: e.into(),
        })?;
        let negative_idx = manifest
            .labels
            .sentiment
            .iter()
            .position(|l| l == "negative")
            .unwrap_or(0);
        let model = Model {
            manifest,
            dir: dir.to_path_buf(),
            tokenizer,
            plan,
            parallel,
            negative_idx,
            load_id: NEXT_LOAD_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            warm_per_text_us: Default::default(),
        };
        let failed: Vec<_> = model
            .check_golden()?
            .into_iter()
            .filter(|g| !g.passed)
            .collect();
        if let Some(g) = failed.first() {
            return Err(ModelError::Golden {
                failed: failed.len(),
                text: g.text.clone(),
                expected: g.expected.clone(),
                got: g.got.clone(),
            });
        }
        model.check_parallel()?;
        Ok(model)
    }

    pub fn load_id(&self) -> u64 {
        self.load_id
    }

    /// Time one text took in warm-up, if it was warmed up.
    pub fn warm_per_text(&self) -> Option<std::time::Duration> {
        match self
            .warm_per_text_us
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => None,
            us => Some(std::time::Duration::from_micros(us)),
        }
    }

    pub fn set_warm_per_text(&self, took: std::time::Duration) {
        let us = (took.as_micros() as u64).max(1);
        self.warm_per_text_us
            .store(us, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }
    pub fn version(&self) -> &str {
        &self.manifest.version
    }
    pub fn intent_labels(&self) -> &[String] {
        &self.manifest.labels.intent
    }
    pub fn sentiment_labels(&self) -> &[String] {
        &self.manifest.labels.sentiment
    }
    /// The upset grades, calmest first; empty for a model without the head.
    pub fn upset_labels(&self) -> &[String] {
        self.manifest.labels.upset.as_deref().unwrap_or_default()
    }
    pub fn negativity(&self, p: &Prediction) -> f32 {
        p.sentiment_probs[self.negative_idx]
    }
    /// Probability of the top upset grade; a model without the head answers its negativity, so
    /// rules reading `upset` work with either.
    pub fn upset(&self, p: &Prediction) -> f32 {
        p.upset_probs
            .last()
            .copied()
            .unwrap_or_else(|| self.negativity(p))
    }
    /// Probability of intent `label`, 0 when the model has no such label.
    pub fn intent_prob(&self, p: &Prediction, label: &str) -> f32 {
        self.intent_labels()
            .iter()
            .position(|l| l == label)
            .map_or(0.0, |i| p.intent_probs[i])
    }

    /// Tokenise with the package's prefix; cut at `max_tokens`, keeping the closing special token.
    pub fn encode(&self, text: &str) -> Result<Encoded, ModelError> {
        let input = format!("{}{}", self.manifest.text_prefix, text);
        let enc = self
            .tokenizer
            .encode(input, true)
            .map_err(ModelError::Tokenize)?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
        let max = self.manifest.max_tokens;
        let truncated = ids.len() > max;
        if truncated {
            let last = *ids.last().expect("non-empty");
            ids.truncate(max - 1);
            ids.push(last);
        }
        Ok(Encoded { ids, truncated })
    }

    /// Tokenise `texts` and run them as one batch, outside the server's batcher (CLI, warm-up,
    /// shadow, benchmarks); any text the tokenizer refuses fails the whole call.
    pub fn classify<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Prediction>, ModelError> {
        let encoded = texts
            .iter()
            .map(|t| self.encode(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        self.run(&encoded.iter().collect::<Vec<_>>())
    }

    /// Run one padded batch. Rows may have different lengths; padding is masked inside the graph.
    pub fn run(&self, batch: &[&Encoded]) -> Result<Vec<Prediction>, ModelError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, mask) = self.padded(batch);
        let outputs = self
            .plan
            .run(tvec!(ids.into(), mask.into()))
            .map_err(|e| ModelError::Run(e.into()))?;
        self.predictions(&outputs, batch.len())
    }

    /// Run one text on two threads through the package's tensor-parallel stages, the second
    /// given back when `give_way` asks; `None` when the package has none or another text is
    /// running split (run it with `run` then).
    pub fn run_split(
        &self,
        text: &Encoded,
        give_way: &dyn super::GiveWay,
    ) -> Option<Result<Prediction, ModelError>> {
        let (ids, mask) = self.padded(&[text]);
        let outputs = self.parallel.as_ref()?.run(ids, mask, give_way)?;
        Some(
            outputs
                .and_then(|o| self.predictions(&o, 1))
                .map(|mut p| p.remove(0)),
        )
    }

    pub fn has_parallel_stages(&self) -> bool {
        self.parallel.is_some()
    }

    /// Ids and attention mask of a batch, padded to its longest row.
    fn padded(&self, batch: &[&Encoded]) -> (Tensor, Tensor) {
        let width = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1).max(1);
        let rows = batch.len();
        let mut ids = vec![self.manifest.pad_id; rows * width];
        let mut mask = vec![0i64; rows * width];
        for (r, e) in batch.iter().enumerate() {
            ids[r * width..r * width + e.ids.len()].copy_from_slice(&e.ids);
            mask[r * width..r * width + e.ids.len()].fill(1);
        }
        let ids = tract_ndarray::Array2::from_shape_vec((rows, width), ids).expect("shape");
        let mask = tract_ndarray::Array2::from_shape_vec((rows, width), mask).expect("shape");
        (Tensor::from(ids), Tensor::from(mask))
    }

    fn predictions(&self, outputs: &[TValue], rows: usize) -> Result<Vec<Prediction>, ModelError> {
        let grades = self.manifest.labels.upset.as_ref().map(Vec::len);
        let heads = [
            (self.manifest.labels.intent.len(), "intent"),
            (self.manifest.labels.sentiment.len(), "sentiment"),
            (self.manifest.onnx.embedding_dim, "embedding"),
        ]
        .into_iter()
        .chain(grades.map(|n| (n, "upset")));
        let mut views = Vec::with_capacity(4);
        for (out, (width, what)) in outputs.iter().zip(heads) {
            let view = out
                .to_plain_array_view::<f32>()
                .map_err(|e| ModelError::Output {
                    head: what,
                    source: e.into(),
                })?;
            if view.shape() != [rows, width] {
                return Err(GraphMismatch::OutputShape {
                    head: what,
                    got: view.shape().to_vec(),
                    rows,
                    width,
                }
                .into());
            }
            views.push(
                view.into_dimensionality::<tract_ndarray::Ix2>()
                    .expect("checked rank 2"),
            );
        }
        Ok((0..rows)
            .map(|r| Prediction {
                intent_probs: views[0].row(r).to_vec(),
                sentiment_probs: views[1].row(r).to_vec(),
                embedding: views[2].row(r).to_vec(),
                upset_probs: views.get(3).map_or_else(Vec::new, |v| v.row(r).to_vec()),
            })
            .collect())
    }

    /// The stages must compute what model.onnx computes: stale stages (a retrained model.onnx,
    /// stages left from before) would answer single calls differently from batches.
    fn check_parallel(&self) -> Result<(), ModelError> {
        let (Some(section), Some(_)) = (&self.manifest.parallel, &self.parallel) else {
            return Ok(());
        };
        let tolerance = section.tolerance;
        // Golden examples are optional: fixed texts (short, long, both languages) always count.
        const ALWAYS: [&str; 3] = [
            "hi",
            "我的订单三天了还没发货，客服也找不到人，到底怎么回事？？",
            "I was charged twice for the same order and the bot keeps sending me the same FAQ link",
        ];
        let texts = self.manifest.golden.iter().map(|g| g.text.as_str());
        for text in texts.chain(ALWAYS) {
            let encoded = self.encode(text)?;
            let whole = self.run(&[&encoded])?.remove(0);
            let Some(split) = self.run_split(&encoded, &super::Never) else {
                continue; // not reachable at load: nothing else runs yet
            };
            let split = split?;
            let diff = [
                (&whole.intent_probs, &split.intent_probs),
                (&whole.sentiment_probs, &split.sentiment_probs),
                (&whole.embedding, &split.embedding),
                (&whole.upset_probs, &split.upset_probs),
            ]
            .iter()
            .flat_map(|(a, b)| a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()))
            .fold(0.0f32, f32::max);
            if diff > tolerance || diff.is_nan() {
                return Err(ModelError::ParallelMismatch {
                    text: text.to_string(),
                    diff,
                    tolerance,
                });
            }
        }
        Ok(())
    }

    /// Run every golden example of the manifest, all in one batch.
    pub fn check_golden(&self) -> Result<Vec<GoldenResult>, ModelError> {
        let texts: Vec<&str> = self
            .manifest
            .golden
            .iter()
            .map(|g| g.text.as_str())
            .collect();
        let preds = self.classify(&texts)?;
        Ok(self
            .manifest
            .golden
            .iter()
            .zip(preds)
            .map(|(g, p)| {
                let intent = &self.intent_labels()[p.top_intent()];
                let sentiment = &self.sentiment_labels()[p.top_sentiment()];
                let intent_ok = g.intent.as_ref().is_none_or(|i| i == intent);
                let sentiment_ok = g.sentiment.as_ref().is_none_or(|s| s == sentiment);
                GoldenResult {
                    text: g.text.clone(),
                    expected: format!(
                        "{}/{}",
                        g.intent.as_deref().unwrap_or("*"),
                        g.sentiment.as_deref().unwrap_or("*")
                    ),
                    got: format!("{intent}/{sentiment}"),
                    passed: intent_ok && sentiment_ok,
                }
            })
            .collect())
    }
}

/// The package's graph with its inputs and outputs named and typed, not yet optimised: the whole
/// plan is made from it, and the parallel runner cuts its embedding stage out of a copy.
fn load_graph(path: &Path, m: &Manifest) -> Result<InferenceModel, ModelError> {
    let err = |e: anyhow::Error| ModelError::Onnx {
        path: path.to_path_buf(),
        source: e.into(),
    };
    super::require_file(path)?;
    let mut model = tract_onnx::onnx().model_for_path(path).map_err(err)?;
    let names = |model: &InferenceModel, outputs: bool| -> Vec<String> {
        let outlets = if outputs {
            model.output_outlets()
        } else {
            model.input_outlets()
        };
        outlets
            .map(|o| o.iter().map(|o| model.node(o.node).name.clone()).collect())
            .unwrap_or_default()
    };
    let inputs = [m.onnx.input_ids.as_str(), m.onnx.attention_mask.as_str()];
    // The upset head last, as the parallel head stage gives it.
    let outputs: Vec<&str> = [
        m.onnx.intent.as_str(),
        m.onnx.sentiment.as_str(),
        m.onnx.embedding.as_str(),
    ]
    .into_iter()
    .chain(m.onnx.upset.as_deref())
    .collect();
    for (want, have, what) in [
        (&inputs[..], names(&model, false), "input"),
        (&outputs[..], names(&model, true), "output"),
    ] {
        if let Some(missing) = want.iter().find(|w| !have.iter().any(|h| h == *w)) {
            return Err(GraphMismatch::MissingName {
                what,
                missing: missing.to_string(),
                have,
            }
            .into());
        }
    }
    model.set_input_names(inputs).map_err(err)?;
    model.select_outputs_by_name(outputs).map_err(err)?;
    let batch = model.symbols.sym("batch");
    let seq = model.symbols.sym("seq");
    for i in 0..2 {
        model = model
            .with_input_fact(
                i,
                InferenceFact::dt_shape(i64::datum_type(), tvec!(batch.to_dim(), seq.to_dim())),
            )
            .map_err(err)?;
    }
    Ok(model)
}
