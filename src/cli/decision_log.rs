//! Offline decision-log tools: replay a log under a candidate policy, draw the report, export
//! feedback-confirmed examples for training. None needs a model or a server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use handoff::decision_log::reader::{DecisionLogData, LogStream};
use handoff::decision_log::report::Tally;
use handoff::policy::file::load_or_builtin;

/// Where the log is and whose records to read: the same two flags on every log tool.
#[derive(Args)]
pub struct LogArgs {
    /// Directory of decisions-*.jsonl and feedback-*.jsonl files (one or more replicas').
    #[arg(long)]
    log: PathBuf,
    /// Only this tenant's decisions and feedback (`default`: a server without tenants).
    #[arg(long)]
    tenant: Option<String>,
}

impl LogArgs {
    /// The whole log in memory: for the tools whose output is as large as their input.
    fn read(&self) -> anyhow::Result<DecisionLogData> {
        Ok(DecisionLogData::read(&self.log, self.tenant.as_deref())?)
    }

    /// The log as a stream: memory stays flat however long it is.
    fn stream(&self) -> anyhow::Result<LogStream> {
        Ok(LogStream::open(&self.log, self.tenant.as_deref())?)
    }
}

#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    log: LogArgs,
    /// Candidate policy file; without it, the built-in policy.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Print the figures as one JSON object (for scripts) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    log: LogArgs,
    /// The HTML file to write.
    #[arg(long, default_value = "report.html")]
    out: PathBuf,
    /// Policy whose thresholds are swept; without it, the built-in policy.
    #[arg(long)]
    policy: Option<PathBuf>,
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    log: LogArgs,
    /// Directory to write intents/<lang>/<intent>.txt and review.tsv into.
    #[arg(long, default_value = "exported-examples")]
    out: PathBuf,
}

/// Formats `handoff export` writes.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// One Parquet table, a row per decision with its feedback (schema in the README).
    Parquet,
}

#[derive(Args)]
pub struct ExportLogArgs {
    #[command(flatten)]
    log: LogArgs,
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let candidate = load_or_builtin(args.policy.as_deref())?;
    let report = handoff::decision_log::replay::replay_stream(args.log.stream()?, &candidate)?;
    if args.json {
        let mut value = report.to_json();
        value["candidate_policy"] = candidate.version().into();
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "candidate policy {} ({})",
        candidate.version(),
        args.policy
            .as_deref()
            .map_or("built-in".to_string(), |p| p.display().to_string())
    );
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}

pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let policy = load_or_builtin(args.policy.as_deref())?;
    let tally = Tally::of_stream(args.log.stream()?)?;
    let html = handoff::decision_log::report::render(&tally, &policy)?;
    write(&args.out, html)?;
    println!(
        "wrote {} ({} decisions, {} with feedback)",
        args.out.display(),
        tally.decisions,
        tally.with_feedback
    );
    Ok(ExitCode::SUCCESS)
}

pub fn export_examples(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let data = args.log.read()?;
    let summary = handoff::decision_log::export::export(&data, &args.out)?;
    print!("{summary}");
    println!("written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, contents: String) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

pub fn export(args: ExportLogArgs) -> anyhow::Result<ExitCode> {
    let ExportFormat::Parquet = args.format;
    let summary = handoff::decision_log::parquet::export_parquet(args.log.stream()?, &args.out)?;
    println!(
        "wrote {} ({} decisions, {} with feedback{})",
        args.out.display(),
        summary.rows,
        summary.with_feedback,
        match summary.unreadable.lines {
            0 => String::new(),
            n => format!("; {n} unreadable lines skipped"),
        }
    );
    Ok(ExitCode::SUCCESS)
}
