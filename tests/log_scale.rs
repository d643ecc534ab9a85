//! The decision-log tools stream: `handoff replay` of a log ten times longer holds about the same
//! memory (the figures for ten million decisions, in release, come from `loadgen log-scale`), and
//! streaming gives the same figures as reading the log whole, across replicas' files.

use std::path::{Path, PathBuf};
use std::process::Command;

use handoff::decision_log::reader::{DecisionLogData, LogStream};
use handoff::decision_log::replay::{replay, replay_stream};
use handoff::decision_log::synthetic::{SyntheticLog, Written};
use handoff::policy::Policy;

fn synthetic(name: &str, decisions: usize) -> (PathBuf, Written) {
    let dir = std::env::temp_dir().join(format!("handoff-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let written = SyntheticLog {
        decisions,
        replicas: 3,
        feedback_share: 0.2,
        span_ms: 86_400_000,
        seed: 7,
    }
    .write(&dir)
    .unwrap();
    (dir, written)
}

/// Run `handoff replay --json` on `dir`: its figures and its peak resident memory in bytes.
fn replay_cli(dir: &Path) -> (serde_json::Value, u64) {
    let child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["replay", "--json", "--log"])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    // wait4, not Child::wait: the kernel's peak RSS of exactly this child.
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{out}");
    (
        serde_json::from_str(&out).unwrap(),
        usage.ru_maxrss as u64 * 1024,
    )
}

fn check_figures(figures: &serde_json::Value, written: &Written) {
    assert_eq!(figures["decisions"], written.decisions);
    assert_eq!(figures["changed"], 0, "the policy that made them");
    let fb = &figures["feedback_before"];
    assert_eq!(fb["with_feedback"], written.feedback, "every feedback joined");
    assert_eq!(fb["true_pos"], written.made_needed);
    assert_eq!(fb["false_pos"], written.needless);
    assert_eq!(fb["false_neg"], written.missed);
    for (rule, n) in &written.by_rule {
        assert_eq!(figures["rules"][rule]["before"], *n, "{rule}");
    }
}

#[test]
fn replay_memory_stays_flat_as_the_log_grows_tenfold() {
    let (small, small_written) = synthetic("scale-small", 20_000);
    let (large, large_written) = synthetic("scale-large", 200_000);
    let (small_figures, small_rss) = replay_cli(&small);
    let (large_figures, large_rss) = replay_cli(&large);
    check_figures(&small_figures, &small_written);
    check_figures(&large_figures, &large_written);
    let mb = |b: u64| b as f64 / 1048576.0;
    println!(
        "replay peak RSS: {:.1} MB for {} decisions ({:.0} MB of log), {:.1} MB for {} ({:.0} MB)",
        mb(small_rss),
        small_written.decisions,
        mb(small_written.bytes),
        mb(large_rss),
        large_written.decisions,
        mb(large_written.bytes)
    );
    // Read whole, the larger log alone is ~180 MB of text and more parsed: flat means the ten-fold
    // log costs a few MB more (feedback index, diverged conversations), not ten times as much.
    assert!(
        large_rss < small_rss + 24 * 1048576,
        "{:.1} MB -> {:.1} MB",
        mb(small_rss),
        mb(large_rss)
    );
    std::fs::remove_dir_all(&small).unwrap();
    std::fs::remove_dir_all(&large).unwrap();
}

#[test]
fn streaming_gives_the_figures_of_the_whole_log() {
    let (dir, _) = synthetic("scale-same", 6_000);
    // A candidate that changes decisions, so changes, transitions and approximate turns count.
    let candidate = Policy::new(
        toml::from_str(&handoff::policy::config::BUILTIN.replace("0.79", "0.5")).unwrap(),
    )
    .unwrap();
    for (changes, policy) in [(false, Policy::builtin()), (true, candidate)] {
        let whole = replay(&DecisionLogData::read(&dir, None).unwrap(), &policy);
        let streamed = replay_stream(LogStream::open(&dir, None).unwrap(), &policy).unwrap();
        let (mut whole, mut streamed) = (whole.to_json(), streamed.to_json());
        assert_eq!(streamed["changed"].as_u64().unwrap() > 0, changes);
        assert_eq!(streamed["approximate"].as_u64().unwrap() > 0, changes);
        // The first changes listed are the first met: by conversation whole, by time streamed.
        assert_eq!(
            whole["first_changes"].as_array().unwrap().len(),
            streamed["first_changes"].as_array().unwrap().len()
        );
        whole["first_changes"] = serde_json::Value::Null;
        streamed["first_changes"] = serde_json::Value::Null;
        assert_eq!(whole, streamed);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
