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
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which reads its rusage"
)]
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
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{out}"
    );
    (
        serde_json::from_str(&out).unwrap(),
        usage.ru_maxrss as u64 * 1024,
    )
}

fn check_figures(figures: &serde_json::Value, written: &Written) {
    assert_eq!(figures["decisions"], written.decisions);
    assert_eq!(figures["changed"], 0, "the policy that made them");
    let fb = &figures["feedback_before"];
    assert_eq!(
        fb["with_feedback"], written.feedback,
        "every feedback joined"
    );
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

/// The SQL block after `<!-- duckdb: NAME -->` in the README, reading `parquet` instead of
/// `decisions.parquet`.
fn readme_query(name: &str, parquet: &Path) -> String {
    let readme = include_str!("../README.md");
    let marker = format!("<!-- duckdb: {name} -->\n```sql\n");
    let start = readme.find(&marker).expect("the query is in the README") + marker.len();
    let end = start + readme[start..].find("```").unwrap();
    readme[start..end].replace("'decisions.parquet'", &format!("'{}'", parquet.display()))
}

/// Rows of a query as JSON arrays, run by DuckDB's Python package (`HANDOFF_PYTHON`, as
/// scripts/test.sh sets it).
fn duckdb(query: &str) -> Vec<Vec<serde_json::Value>> {
    let python = std::env::var("HANDOFF_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args([
            "-c",
            "import duckdb, json, sys\nprint(json.dumps(duckdb.sql(sys.argv[1]).fetchall()))",
            query,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "DuckDB failed (its Python package: scripts/test.sh installs it, HANDOFF_PYTHON names the interpreter): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The rows of the report's table under `caption`: each row's cells, the header cell first.
fn report_table(html: &str, caption: &str) -> Vec<Vec<String>> {
    let start = html
        .find(&format!("-cap\">{caption}</figcaption>"))
        .unwrap_or_else(|| panic!("{caption} in the report"));
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    let cell = regex::Regex::new(r"<t[hd][^>]*>([^<]*)</t[hd]>").unwrap();
    table
        .split("<tr>")
        .skip(2) // before the header, the header
        .map(|row| cell.captures_iter(row).map(|c| c[1].to_string()).collect())
        .collect()
}

fn percent(cell: &str) -> f64 {
    cell.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn the_parquet_export_opens_in_duckdb_and_matches_the_report() {
    let (dir, written) = synthetic("scale-parquet", 3_000);
    let parquet = dir.join("decisions.parquet");
    let page = dir.join("report.html");
    for args in [
        vec!["export", "--format", "parquet", "--out"],
        vec!["report", "--out"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(&args)
            .arg(if args[0] == "export" { &parquet } else { &page })
            .arg("--log")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let html = std::fs::read_to_string(&page).unwrap();

    let by_rule = duckdb(&readme_query("decisions by rule", &parquet));
    let report = report_table(&html, "Decisions by deciding rule");
    assert_eq!(by_rule.len(), written.by_rule.len());
    assert_eq!(by_rule.len(), report.len());
    for (sql, cells) in by_rule.iter().zip(&report) {
        // rule | what it means | decisions | share
        assert_eq!(sql[0], cells[0]);
        assert_eq!(sql[1], written.by_rule[&cells[0]]);
        assert_eq!(sql[1].to_string(), cells[2]);
        assert!(
            (sql[2].as_f64().unwrap() - percent(&cells[3])).abs() < 0.051,
            "{sql:?} {cells:?}"
        );
    }

    let by_channel = duckdb(&readme_query("escalation rate by channel", &parquet));
    let report = report_table(&html, "Escalation rate by channel");
    assert_eq!(by_channel.len(), 4);
    assert_eq!(by_channel.len(), report.len());
    for (sql, cells) in by_channel.iter().zip(&report) {
        // channel | decisions | offered or escalated | rate
        assert_eq!(sql[0], cells[0]);
        assert_eq!(sql[1].to_string(), cells[1]);
        assert_eq!(sql[2].to_string(), cells[2]);
        assert!(
            (sql[3].as_f64().unwrap() - percent(&cells[3])).abs() < 0.051,
            "{sql:?} {cells:?}"
        );
    }

    // Feedback joined in: every feedback line is a row's verdict, and signals are typed columns.
    let joined = duckdb(&format!(
        "SELECT count(human_needed), count(*) FILTER (WHERE human_needed = 'needed' AND action <> 'continue_bot'), \
         typeof(any_value(negativity)), typeof(any_value(turns)), typeof(any_value(person_word)) FROM '{}'",
        parquet.display()
    ));
    assert_eq!(joined[0][0], written.feedback);
    assert_eq!(joined[0][1], written.made_needed);
    assert_eq!(joined[0][2], "DOUBLE");
    assert_eq!(joined[0][3], "BIGINT");
    assert_eq!(joined[0][4], "BOOLEAN");
    std::fs::remove_dir_all(&dir).unwrap();
}
