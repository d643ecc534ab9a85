//! `handoff conversations`: the conversation benchmark against a running server, printed as a table
//! a person reads (disagreements, confusion, per language, per phenomenon) or as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use handoff::conversations::Report;
use handoff::grpc::pb::handoff_client::HandoffClient;

#[derive(Args)]
pub struct ConversationsArgs {
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
}

pub fn run(args: ConversationsArgs) -> anyhow::Result<ExitCode> {
    let conversations = handoff::conversations::load_all(&args.file)?;
    let addr = args.addr;
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut client = HandoffClient::connect(addr.clone())
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            anyhow::Ok(
                handoff::conversations::run(&mut client, &conversations, args.feedback).await?,
            )
        })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.agreement() >= args.min_agreement {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(report: &Report) {
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
