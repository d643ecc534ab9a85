//! `loadgen log-scale`: the offline log tools on a synthetic log of many decisions (ten million by
//! default, ~9 GB): time per million decisions, peak resident memory and cores used, per tool.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use handoff::decision_log::synthetic::SyntheticLog;

/// A finished child's peak RSS and CPU seconds (user + system), from wait4.
fn wait_measured(child: std::process::Child) -> anyhow::Result<(u64, f64)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unwaited child; status and usage are valid for writes.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    anyhow::ensure!(
        reaped == pid,
        "wait4 on {pid}: {}",
        std::io::Error::last_os_error()
    );
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the tool failed (status {status})"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        usage.ru_maxrss as u64 * 1024,
        secs(usage.ru_utime) + secs(usage.ru_stime),
    ))
}

pub(crate) fn run(decisions: usize, dir: Option<PathBuf>, keep: bool) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("handoff-log-scale"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let started = Instant::now();
    let written = SyntheticLog {
        decisions,
        replicas: 4,
        feedback_share: 0.1,
        span_ms: 7 * 86_400_000,
        seed: 42,
    }
    .write(&dir)?;
    println!(
        "log-scale: {} decisions and {} feedback on 4 replicas over 7 days, {:.2} GB, written in {:.0} s",
        written.decisions,
        written.feedback,
        written.bytes as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    let millions = written.decisions as f64 / 1e6;
    let exe = std::env::current_exe()?.with_file_name("handoff");
    let out = |name: &str| dir.with_file_name(format!("handoff-log-scale-{name}"));
    let tools: [(&str, Vec<std::ffi::OsString>); 3] = [
        ("replay", vec!["replay".into(), "--json".into()]),
        (
            "report",
            vec!["report".into(), "--out".into(), out("report.html").into()],
        ),
        (
            "export parquet",
            vec![
                "export".into(),
                "--format".into(),
                "parquet".into(),
                "--out".into(),
                out("log.parquet").into(),
            ],
        ),
    ];
    println!(
        "{:<16} {:>9} {:>14} {:>14} {:>10}",
        "tool", "seconds", "s / million", "peak RSS MB", "cores"
    );
    for (name, args) in tools {
        let started = Instant::now();
        let child = Command::new(&exe)
            .args(&args)
            .arg("--log")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let (rss, cpu) = wait_measured(child).with_context(|| name.to_string())?;
        let wall = started.elapsed().as_secs_f64();
        println!(
            "{name:<16} {wall:>9.1} {:>14.2} {:>14.0} {:>10.2}",
            wall / millions,
            rss as f64 / 1048576.0,
            cpu / wall
        );
    }
    for file in ["report.html", "log.parquet"] {
        let bytes = std::fs::metadata(out(file)).map_or(0, |m| m.len());
        println!("{file}: {:.1} MB", bytes as f64 / 1e6);
    }
    if !keep {
        remove(&dir);
        remove(&out("report.html"));
        remove(&out("log.parquet"));
    }
    Ok(())
}

fn remove(path: &Path) {
    let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
}
