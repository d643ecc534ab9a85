//! `handoff` command line: `serve`, `classify TEXT...`, `check-model DIR`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use handoff::config::ServerConfig;
use handoff::model::Model;

#[derive(Parser)]
#[command(
    name = "handoff",
    version,
    about = "Decides when a customer-service bot hands over to a human agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service.
    Serve(Box<ServeArgs>),
    /// Classify texts with a model package and print the results (no server).
    Classify {
        #[arg(
            long,
            env = "HANDOFF_MODEL_DIR",
            default_value = "models/handoff-zh-en/1.0.0"
        )]
        model: PathBuf,
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Validate a model package and print the verdict and its golden examples.
    CheckModel { dir: PathBuf },
    /// List the signals policy rules can read, with what each means.
    Signals,
    /// Print the SHA-256 to put in [[auth.api_keys]] for the API key read from stdin.
    HashKey,
    /// Validate a policy file offline (with --model, also the intents it names).
    CheckPolicy {
        file: PathBuf,
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

/// Each flag overrides the config file; each has a `HANDOFF_*` environment variable.
#[derive(Args)]
struct ServeArgs {
    /// TOML config file (see config/handoff.toml).
    #[arg(long, env = "HANDOFF_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "HANDOFF_GRPC_ADDR")]
    grpc_addr: Option<SocketAddr>,
    #[arg(long, env = "HANDOFF_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    #[arg(long, env = "HANDOFF_MODEL_DIR")]
    model: Option<PathBuf>,
    /// Repository of `<name>/<version>/` packages for swaps.
    #[arg(long, env = "HANDOFF_MODEL_REPOSITORY")]
    model_repository: Option<PathBuf>,
    /// How often to look for new model versions, in ms (0 = never).
    #[arg(long, env = "HANDOFF_WATCH_INTERVAL_MS")]
    watch_interval_ms: Option<u64>,
    /// Activate new versions the watcher finds.
    #[arg(long, env = "HANDOFF_AUTO_ACTIVATE")]
    auto_activate: Option<bool>,
    /// Policy file, reloaded on change or SIGHUP (replaces `[policy]` of the config).
    #[arg(long, env = "HANDOFF_POLICY_FILE")]
    policy: Option<PathBuf>,
    /// Conversation state: "memory" or "redis://host:port[/db]".
    #[arg(long, env = "HANDOFF_STATE")]
    state: Option<String>,
    /// Inference worker threads (0 = one per core).
    #[arg(long, env = "HANDOFF_WORKERS")]
    workers: Option<usize>,
    #[arg(long, env = "HANDOFF_QUEUE_CAPACITY")]
    queue_capacity: Option<usize>,
    #[arg(long, env = "HANDOFF_MAX_BATCH_SIZE")]
    max_batch_size: Option<usize>,
    #[arg(long, env = "HANDOFF_MAX_BATCH_TOKENS")]
    max_batch_tokens: Option<usize>,
    #[arg(long, env = "HANDOFF_MAX_QUEUE_DELAY_US")]
    max_queue_delay_us: Option<u64>,
    #[arg(long, env = "HANDOFF_DRAIN_MS")]
    drain_ms: Option<u64>,
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let mut c = match &self.config {
            Some(path) => ServerConfig::from_file(path)?,
            None => ServerConfig::default(),
        };
        macro_rules! set {
            ($($field:ident => $target:ident),*) => { $(if let Some(v) = self.$field { c.$target = v; })* };
        }
        set!(grpc_addr => grpc_addr, metrics_addr => metrics_addr, model => model_dir, workers => workers,
             queue_capacity => queue_capacity, max_batch_size => max_batch_size, max_batch_tokens => max_batch_tokens,
             max_queue_delay_us => max_queue_delay_us, drain_ms => drain_ms, model_repository => model_repository,
             watch_interval_ms => watch_interval_ms, auto_activate => auto_activate, state => state);
        if let Some(p) = self.policy {
            c.policy_file = Some(p);
        }
        c.validate()?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    handoff::telemetry::init_tracing();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.into_config()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(handoff::server::run(config, shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Classify { model, text } => {
            let model =
                Model::load(&model).with_context(|| format!("loading {}", model.display()))?;
            let encoded = text
                .iter()
                .map(|t| model.encode(t))
                .collect::<Result<Vec<_>, _>>()?;
            let preds = model.run(&encoded.iter().collect::<Vec<_>>())?;
            for (t, p) in text.iter().zip(preds) {
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
        Command::HashKey => {
            let mut key = String::new();
            std::io::stdin().read_line(&mut key)?;
            if key.trim().is_empty() {
                anyhow::bail!("no key on stdin (make one with: openssl rand -hex 32)");
            }
            println!("{}", handoff::security::auth::hash_key(&key));
            Ok(ExitCode::SUCCESS)
        }
        Command::Signals => {
            use handoff::policy::catalog::{Kind, Signal};
            for s in Signal::ALL {
                let kind = match s.kind() {
                    Kind::Number { min, max } => format!("number in [{min}, {max}]"),
                    Kind::Count => "count".into(),
                    Kind::Flag => "flag".into(),
                    Kind::Text => "text".into(),
                };
                println!("{:<22} {kind:<18} {}", s.name(), s.doc());
            }
            println!(
                "{:<22} {:<18} customer attribute NAME sent by the caller (absent unless sent)",
                "attr.NAME", "text"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckPolicy { file, model } => {
            let labels = match model {
                Some(dir) => Some(
                    Model::load(&dir)
                        .with_context(|| format!("loading {}", dir.display()))?
                        .intent_labels()
                        .to_vec(),
                ),
                None => None,
            };
            match handoff::policy::file::load(&file, labels.as_deref()) {
                Ok(p) => {
                    println!("OK: {} (policy version {})", file.display(), p.version());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("REFUSED: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::CheckModel { dir } => match Model::load(&dir) {
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
        },
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
