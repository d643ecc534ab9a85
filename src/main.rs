//! `handoff` command line: `serve`, `classify TEXT...`, `check-model DIR`, `conversations FILE`, ...
//! Parsing and dispatch only: each command group lives in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli::{conversations, decision_log, model, policy, serve};

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
    Serve(Box<serve::ServeArgs>),
    /// Classify texts with a model package and print the results (no server).
    Classify(model::ClassifyArgs),
    /// Replay labelled conversations through a running server's Route and print per-turn agreement.
    Conversations(conversations::ConversationsArgs),
    /// Ask a running server's gRPC health service; exit 0 when SERVING (container health checks).
    Health(serve::HealthArgs),
    /// Validate a model package and print the verdict and its golden examples.
    CheckModel(model::CheckModelArgs),
    /// Print the shipped phrase lists of the text signals (a policy's [keywords] replaces any of them).
    Phrases,
    /// List the signals policy rules can read, with what each means.
    Signals,
    /// Print the SHA-256 to put in [[auth.api_keys]] for the API key read from stdin.
    HashKey,
    /// Decide every turn of a decision log again under a candidate policy and print what changes
    /// (no model needed: the log holds the signals each decision read).
    Replay(decision_log::ReplayArgs),
    /// Write one self-contained HTML report of a decision log: decisions over time, escalation
    /// rates, per-rule precision against feedback, threshold sweeps, confidence, CSAT and wait.
    Report(decision_log::ReportArgs),
    /// Write feedback-confirmed real messages (kept with keep_redacted_text) in the layout
    /// models/train reads, and contradicted ones to review.tsv for labelling.
    ExportExamples(decision_log::ExportArgs),
    /// Write a decision log as one table for DuckDB, Spark or Trino (Parquet: a row per decision,
    /// its signals and feedback as columns).
    Export(decision_log::ExportLogArgs),
    /// Validate a policy file offline (with --model, also the intents it names).
    CheckPolicy(policy::CheckPolicyArgs),
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json_logs = cli.log_format == LogFormat::Json;
    // The server starts logging inside its runtime (the OTLP exporter needs one); the tools now.
    if !matches!(cli.command, Command::Serve(_)) {
        handoff::telemetry::init_tracing(json_logs, None);
    }
    match cli.command {
        Command::Serve(args) => serve::serve(*args, json_logs),
        Command::Health(args) => serve::health(args),
        Command::HashKey => serve::hash_key(),
        Command::Classify(args) => model::classify(args),
        Command::CheckModel(args) => model::check_model(args),
        Command::CheckPolicy(args) => policy::check_policy(args),
        Command::Phrases => policy::phrases(),
        Command::Signals => policy::signals(),
        Command::Conversations(args) => conversations::run(args),
        Command::Replay(args) => decision_log::replay(args),
        Command::Report(args) => decision_log::report(args),
        Command::ExportExamples(args) => decision_log::export_examples(args),
        Command::Export(args) => decision_log::export(args),
    }
}
