//! Offline policy tools: validate a policy file, and list what its rules can read (signals and the
//! shipped phrase lists).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use handoff::model::Model;
use handoff::policy::catalog::{Kind, Signal};

#[derive(Args)]
pub struct CheckPolicyArgs {
    /// The policy file (TOML).
    file: PathBuf,
    /// A model package: also check that every intent the rules name exists in it.
    #[arg(long)]
    model: Option<PathBuf>,
}

/// Exit 1 with the reason (and line) when a server would refuse the file.
pub fn check_policy(args: CheckPolicyArgs) -> anyhow::Result<ExitCode> {
    let labels = match args.model {
        Some(dir) => Some(
            Model::load(&dir)
                .with_context(|| format!("loading {}", dir.display()))?
                .intent_labels()
                .to_vec(),
        ),
        None => None,
    };
    match handoff::policy::file::load(&args.file, labels.as_deref()) {
        Ok(p) => {
            println!(
                "OK: {} (policy version {})",
                args.file.display(),
                p.version()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("REFUSED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn phrases() -> anyhow::Result<ExitCode> {
    print!("{}", handoff::policy::phrases::SHIPPED);
    Ok(ExitCode::SUCCESS)
}

pub fn signals() -> anyhow::Result<ExitCode> {
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
