//! Offline model tools: classify texts with a package, check a package before it ships.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use handoff::model::Model;

#[derive(Args)]
pub struct ClassifyArgs {
    /// Model package directory.
    #[arg(
        long,
        env = "HANDOFF_MODEL_DIR",
        default_value = handoff::config::DEFAULT_MODEL_DIR
    )]
    model: PathBuf,
    /// Texts to classify, one argument each.
    #[arg(required = true)]
    text: Vec<String>,
}

#[derive(Args)]
pub struct CheckModelArgs {
    /// Model package directory (manifest.toml, model.onnx, tokenizer.json).
    dir: PathBuf,
}

pub fn classify(args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let model =
        Model::load(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    let preds = model.classify(&args.text)?;
    for (t, p) in args.text.iter().zip(preds) {
        let (i, s) = (p.top_intent(), p.top_sentiment());
        println!(
            "{}\t{} {:.3} (margin {:.3})\t{} {:.3}\tnegativity {:.3}",
            t,
            model.intent_labels()[i],
            p.intent_probs[i],
            p.intent_margin(),
            model.sentiment_labels()[s],
            p.sentiment_probs[s],
            model.negativity(&p)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit 1 with the reason when the package would be refused by a server.
pub fn check_model(args: CheckModelArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir;
    match Model::load(&dir) {
        Ok(model) => {
            println!(
                "OK: {} {} ({})",
                model.name(),
                model.version(),
                dir.display()
            );
            for g in model.check_golden()? {
                println!("  pass  {:<40} {}", g.text, g.got);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("REFUSED: {}: {e}", dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
