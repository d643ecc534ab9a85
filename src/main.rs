//! `handoff` command line: `serve`, `classify TEXT...`, `check-model DIR`, `conversations FILE`, ...

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use handoff::config::ServerConfig;
use handoff::model::Model;
use handoff::telemetry::otel::Exporter;
use tonic_health::pb::health_check_response::ServingStatus;

#[derive(Parser)]
#[command(
    name = "handoff",
    version,
    about = "Decides when a customer-service bot hands over to a human agent"
)]
struct Cli {
    /// Log lines as text or as one JSON object each (for log pipelines that index fields).
    #[arg(long, global = true, value_enum, env = "HANDOFF_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service.
    Serve(Box<ServeArgs>),
    /// Classify texts with a model package and print the results (no server).
    Classify {
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
    },
    /// Replay labelled conversations through a running server's Route and print per-turn agreement.
    Conversations {
        /// A JSON-lines file of conversations, or a directory of them (the held-out set by default;
        /// `models/train/data/conversations/tuning` is the set rules are tuned on).
        #[arg(default_value = "models/train/data/conversations/heldout")]
        file: PathBuf,
        /// The server's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Exit non-zero when agreement is below this share.
        #[arg(long, default_value_t = 0.0)]
        min_agreement: f64,
        /// Also send each turn's label as Feedback (for a server with a decision log to replay).
        #[arg(long)]
        feedback: bool,
    },
    /// Ask a running server's gRPC health service; exit 0 when SERVING (container health checks).
    Health {
        /// host:port or http://host:port (plain text: the probe runs beside the server).
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        /// "handoff.v1.Handoff" (readiness: a model is loaded, not draining) or "" (liveness).
        #[arg(long, default_value = "handoff.v1.Handoff")]
        service: String,
        /// Give up after this long.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Validate a model package and print the verdict and its golden examples.
    CheckModel {
        /// Model package directory (manifest.toml, model.onnx, tokenizer.json).
        dir: PathBuf,
    },
    /// Print the shipped phrase lists of the text signals (a policy's [keywords] replaces any of them).
    Phrases,
    /// List the signals policy rules can read, with what each means.
    Signals,
    /// Print the SHA-256 to put in [[auth.api_keys]] for the API key read from stdin.
    HashKey,
    /// Decide every turn of a decision log again under a candidate policy and print what changes
    /// (no model needed: the log holds the signals each decision read).
    Replay {
        /// Candidate policy file; without it, the built-in policy.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Directory of decisions-*.jsonl and feedback-*.jsonl files (one or more replicas').
        #[arg(long)]
        log: PathBuf,
        /// Print the figures as one JSON object (for scripts) instead of text.
        #[arg(long)]
        json: bool,
        /// Only this tenant's decisions and feedback (`default`: a server without tenants).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write one self-contained HTML report of a decision log: decisions over time, escalation
    /// rates, per-rule precision against feedback, threshold sweeps, confidence, CSAT and wait.
    Report {
        /// Directory of decisions-*.jsonl and feedback-*.jsonl files (one or more replicas').
        #[arg(long)]
        log: PathBuf,
        /// The HTML file to write.
        #[arg(long, default_value = "report.html")]
        out: PathBuf,
        /// Policy whose thresholds are swept; without it, the built-in policy.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Only this tenant's decisions and feedback (`default`: a server without tenants).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write feedback-confirmed real messages (kept with keep_redacted_text) in the layout
    /// models/train reads, and contradicted ones to review.tsv for labelling.
    ExportExamples {
        /// Directory of decisions-*.jsonl and feedback-*.jsonl files (one or more replicas').
        #[arg(long)]
        log: PathBuf,
        /// Directory to write intents/<lang>/<intent>.txt and review.tsv into.
        #[arg(long, default_value = "exported-examples")]
        out: PathBuf,
        /// Only this tenant's decisions and feedback (`default`: a server without tenants).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Validate a policy file offline (with --model, also the intents it names).
    CheckPolicy {
        /// The policy file (TOML).
        file: PathBuf,
        /// A model package: also check that every intent the rules name exists in it.
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

/// A decision log directory, with only `tenant`'s records when one is named.
fn read_log(
    log: &std::path::Path,
    tenant: Option<&str>,
) -> anyhow::Result<handoff::decision_log::reader::DecisionLogData> {
    let mut data = handoff::decision_log::reader::DecisionLogData::read(log)?;
    if let Some(tenant) = tenant {
        data.only_tenant(tenant);
    }
    Ok(data)
}

/// Settings come in layers: defaults < `--config` file < `HANDOFF_*` variables < these flags <
/// `--set`. Every key has a variable (`HANDOFF_LIMITS__MAX_TEXT_BYTES`) and can be given with `--set`.
#[derive(Args)]
struct ServeArgs {
    /// TOML config file (see config/handoff.toml).
    #[arg(long, env = "HANDOFF_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, help = about("grpc_addr", "gRPC listen address", DEFAULTS.grpc_addr))]
    grpc_addr: Option<SocketAddr>,
    #[arg(long, help = about("metrics_addr", "Prometheus /metrics listen address", DEFAULTS.metrics_addr))]
    metrics_addr: Option<SocketAddr>,
    #[arg(long, help = about("model_dir", "Model package served at startup (a directory, or NAME@VERSION / NAME@latest in the repository)", DEFAULTS.model_dir.display()))]
    model: Option<PathBuf>,
    #[arg(long, help = about("model_repository", "Repository of <name>/<version>/ packages for swaps", DEFAULTS.model_repository.display()))]
    model_repository: Option<PathBuf>,
    #[arg(long, help = about("watch_interval_ms", "How often to look for new model versions, in ms (0 = never)", DEFAULTS.watch_interval_ms))]
    watch_interval_ms: Option<u64>,
    #[arg(long, help = about("auto_activate", "Activate new versions the watcher finds", DEFAULTS.auto_activate))]
    auto_activate: Option<bool>,
    #[arg(long, help = about("policy_file", "Policy file, reloaded on change or SIGHUP", "none: the built-in policy"))]
    policy: Option<PathBuf>,
    #[arg(long, help = about("state", "Conversation state: \"memory\" or \"redis://host:port[/db]\"", &DEFAULTS.state))]
    state: Option<String>,
    #[arg(long, help = about("workers", "Inference worker threads (0 = one per core)", DEFAULTS.workers))]
    workers: Option<usize>,
    #[arg(long, help = about("queue_capacity", "Texts waiting for inference at most; beyond: RESOURCE_EXHAUSTED", DEFAULTS.queue_capacity))]
    queue_capacity: Option<usize>,
    #[arg(long, help = about("max_batch_size", "Texts per inference batch at most", DEFAULTS.max_batch_size))]
    max_batch_size: Option<usize>,
    #[arg(long, help = about("max_batch_tokens", "Padded tokens per batch at most", DEFAULTS.max_batch_tokens))]
    max_batch_tokens: Option<usize>,
    #[arg(long, help = about("max_queue_delay_us", "How long a batch waits for company, in µs (0 = run what is queued)", DEFAULTS.max_queue_delay_us))]
    max_queue_delay_us: Option<u64>,
    #[arg(long, help = about("drain_ms", "On SIGTERM, NOT_SERVING for this long before listeners close, in ms", DEFAULTS.drain_ms))]
    drain_ms: Option<u64>,
    #[arg(long, help = about("cache_capacity", "Model results kept for repeated texts (0 = no result cache)", DEFAULTS.cache_capacity))]
    cache_capacity: Option<usize>,
    #[arg(
        long,
        env = "HANDOFF_OTLP_ENDPOINT",
        help = "OTLP/gRPC collector for spans, e.g. http://otel-collector:4317 or https://… (TLS; CA: [tracing] otlp_ca) [default: none: no spans exported]"
    )]
    otlp_endpoint: Option<String>,
    /// Any config key, as a dotted path and a TOML value: --set decision_log.dir=/var/lib/handoff
    /// --set limits.max_text_bytes=8192 (repeatable; beats every other layer).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

static DEFAULTS: std::sync::LazyLock<ServerConfig> =
    std::sync::LazyLock::new(ServerConfig::default);

/// Help text that names the variable setting config `key` and the value used when no layer sets it.
/// The variable is read by the config layers (`ServerConfig::load`), not by clap, so the flag, the
/// variable, the file and `--set` keep one order of precedence.
fn about(key: &str, text: &str, default: impl std::fmt::Display) -> String {
    let var = handoff::config::variable_for(key);
    format!("{text} [env: {var}] [default: {default}]")
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        use figment::value::Value;
        let mut flags: Vec<(String, Value)> = Vec::new();
        let mut flag = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                flags.push((key.to_string(), v));
            }
        };
        let text = |v: Option<String>| v.map(Value::from);
        let path = |v: Option<PathBuf>| v.map(|p| Value::from(p.display().to_string()));
        let num = |v: Option<u64>| v.map(Value::from);
        flag("grpc_addr", text(self.grpc_addr.map(|a| a.to_string())));
        flag(
            "metrics_addr",
            text(self.metrics_addr.map(|a| a.to_string())),
        );
        flag("model_dir", path(self.model));
        flag("model_repository", path(self.model_repository));
        flag("watch_interval_ms", num(self.watch_interval_ms));
        flag("auto_activate", self.auto_activate.map(Value::from));
        flag("policy_file", path(self.policy));
        flag("state", text(self.state));
        flag("workers", num(self.workers.map(|n| n as u64)));
        flag("queue_capacity", num(self.queue_capacity.map(|n| n as u64)));
        flag("max_batch_size", num(self.max_batch_size.map(|n| n as u64)));
        flag(
            "max_batch_tokens",
            num(self.max_batch_tokens.map(|n| n as u64)),
        );
        flag("max_queue_delay_us", num(self.max_queue_delay_us));
        flag("drain_ms", num(self.drain_ms));
        flag("cache_capacity", num(self.cache_capacity.map(|n| n as u64)));
        flag("tracing.otlp_endpoint", text(self.otlp_endpoint));
        let c = ServerConfig::load(self.config.as_deref(), flags, &self.set)?;
        c.validate()?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", handoff::telemetry::explain::explain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The policy file given to an offline command, else the built-in policy.
fn policy_or_builtin(path: Option<&std::path::Path>) -> anyhow::Result<handoff::policy::Policy> {
    Ok(match path {
        Some(path) => handoff::policy::file::load(path, None)?,
        None => handoff::policy::Policy::builtin(),
    })
}

/// Said once at start, where an operator looking for why a setting did not take looks first.
fn warn_unknown_variables() {
    let names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    for (var, nearest) in handoff::config::unknown_variables(names) {
        match nearest {
            Some(meant) => tracing::warn!("{var} is not a setting and is ignored: did you mean {meant}?"),
            None => tracing::warn!("{var} is not a setting and is ignored (settings: `handoff serve --help`, README Configuration)"),
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.log_format == LogFormat::Json;
    if !matches!(cli.command, Command::Serve(_)) {
        handoff::telemetry::init_tracing(json, None);
    }
    match cli.command {
        Command::Serve(args) => {
            let config = args.into_config()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                // The OTLP channel needs the runtime, so logging starts inside it.
                let (exporter, tracer) = match Exporter::build(&config.tracing)? {
                    Some((exporter, tracer)) => (Some(exporter), Some(tracer)),
                    None => (None, None),
                };
                handoff::telemetry::init_tracing(json, tracer);
                warn_unknown_variables();
                let served = handoff::server::run(config, shutdown_signal()).await;
                if let Some(exporter) = exporter {
                    tokio::task::spawn_blocking(move || exporter.shutdown()).await?;
                }
                served
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Health {
            addr,
            service,
            timeout_ms,
        } => {
            let status = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(health(&addr, &service, Duration::from_millis(timeout_ms)))?;
            println!("{}", status.as_str_name());
            Ok(if status == ServingStatus::Serving {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Classify { model, text } => {
            let model =
                Model::load(&model).with_context(|| format!("loading {}", model.display()))?;
            let preds = model.classify(&text)?;
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
        Command::Conversations {
            file,
            addr,
            json,
            min_agreement,
            feedback,
        } => {
            let conversations = handoff::conversations::load_all(&file)?;
            let report = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async {
                    let mut client =
                        handoff::grpc::pb::handoff_client::HandoffClient::connect(addr.clone())
                            .await
                            .with_context(|| format!("connecting to {addr}"))?;
                    anyhow::Ok(
                        handoff::conversations::run(&mut client, &conversations, feedback).await?,
                    )
                })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_conversation_report(&report);
            }
            Ok(if report.agreement() >= min_agreement {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
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
        Command::Phrases => {
            print!("{}", handoff::policy::phrases::SHIPPED);
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
        Command::Replay {
            policy,
            log,
            json,
            tenant,
        } => {
            let candidate = policy_or_builtin(policy.as_deref())?;
            let data = read_log(&log, tenant.as_deref())?;
            let report = handoff::decision_log::replay::replay(&data, &candidate);
            if json {
                let mut value = report.to_json();
                value["candidate_policy"] = candidate.version().into();
                println!("{value}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "candidate policy {} ({})",
                candidate.version(),
                policy
                    .as_ref()
                    .map_or("built-in".to_string(), |p| p.display().to_string())
            );
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            log,
            out,
            policy,
            tenant,
        } => {
            let policy = policy_or_builtin(policy.as_deref())?;
            let data = read_log(&log, tenant.as_deref())?;
            let html = handoff::decision_log::report::render(&data, &policy)?;
            std::fs::write(&out, html).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({} decisions, {} with feedback)",
                out.display(),
                data.decisions.len(),
                data.feedback.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ExportExamples { log, out, tenant } => {
            let data = read_log(&log, tenant.as_deref())?;
            let summary = handoff::decision_log::export::export(&data, &out)?;
            print!("{summary}");
            println!("written to {}", out.display());
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

fn print_conversation_report(report: &handoff::conversations::Report) {
    for r in report.results.iter().filter(|r| !r.agree) {
        println!(
            "disagree  {:<8} turn {}  expected {:<8} got {:<12} ({})",
            r.conversation,
            r.turn,
            format!("{:?}", r.expect).to_lowercase(),
            r.action,
            r.top_reason
        );
    }
    println!(
        "\nexpected \\ got   {:>12} {:>12} {:>12}",
        "CONTINUE_BOT", "OFFER_HUMAN", "ESCALATE"
    );
    for (expect, row) in &report.confusion {
        let n = |a: &str| row.get(a).copied().unwrap_or(0);
        println!(
            "{expect:<15} {:>12} {:>12} {:>12}",
            n("CONTINUE_BOT"),
            n("OFFER_HUMAN"),
            n("ESCALATE")
        );
    }
    for (lang, (turns, agree)) in &report.by_lang {
        println!(
            "{lang}: {agree}/{turns} turns agree ({:.3})",
            *agree as f64 / *turns as f64
        );
    }
    println!("\nphenomenon                  turns  agreement");
    for (tag, (turns, agree)) in &report.by_tag {
        println!(
            "{tag:<27} {turns:>5}  {:.3}{}",
            *agree as f64 / *turns as f64,
            if *turns < 10 {
                "  (under 10 turns)"
            } else {
                ""
            }
        );
    }
    println!(
        "\nfalse hand-offs: {}/{} bot-fine turns = {:.3}",
        report.false_handoffs,
        report.bot_fine,
        report.false_handoff_rate()
    );
    println!(
        "missed hand-offs: {}/{} human-needed turns = {:.3}",
        report.missed_handoffs,
        report.human_needed,
        report.missed_handoff_rate()
    );
    println!("retries answered differently: {}", report.retry_mismatches);
    println!(
        "per-turn agreement: {}/{} = {:.3}",
        report.agree,
        report.turns,
        report.agreement()
    );
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

/// One `grpc.health.v1.Health/Check` call.
async fn health(addr: &str, service: &str, timeout: Duration) -> anyhow::Result<ServingStatus> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let channel = tonic::transport::Endpoint::from_shared(uri)?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .with_context(|| format!("health check of {service:?} at {addr}"))?;
    Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
}
