//! `handoff report` on a generated decision log, opened in headless Chromium: the page renders, its
//! plots are drawn (SVG bars, lines and labels in the rendered DOM; a screenshot that is not blank
//! and shows the plot colour), and each plot has its table.

use std::path::{Path, PathBuf};
use std::process::Command;

use handoff::decision_log::synthetic::{SyntheticLog, Written};
use handoff::policy::Policy;

/// Turns of 5-turn conversations over three hours on two replicas, decided by the built-in policy,
/// 40 % with feedback that mostly agrees with the signals.
fn generate_log(dir: &Path) -> Written {
    SyntheticLog {
        decisions: 3000,
        replicas: 2,
        feedback_share: 0.4,
        span_ms: 3 * 3_600_000,
        seed: 13,
    }
    .write(dir)
    .unwrap()
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    let found = std::env::var_os("HANDOFF_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            ["chromium", "chromium-browser", "google-chrome"]
                .iter()
                .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
                .find(|p| p.is_file())
        });
    found.expect(
        "headless Chromium is needed (Debian package chromium; scripts/test.sh installs it)",
    )
}

fn headless(args: &[&str], page: &Path) -> std::process::Output {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn the_report_renders_in_headless_chromium_with_every_plot_drawn() {
    let dir = std::env::temp_dir().join(format!("handoff-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let truth = generate_log(&dir);
    let page = dir.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["report", "--log"])
        .arg(&dir)
        .arg("--out")
        .arg(&page)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing to fetch.
    for fetch in ["src=\"http", "href=\"http", "@import", "<script"] {
        assert!(
            !html.contains(fetch),
            "the report fetches something: {fetch}"
        );
    }
    let policy = Policy::builtin();
    let thresholds = policy.thresholds().iter().filter(|t| !t.is_guard()).count();
    assert!(thresholds >= 5, "{thresholds}");
    assert!(thresholds < policy.thresholds().len(), "some are guards");
    // Over time; decisions by rule, rates by channel and tier (not by queue: true by definition);
    // rules that bring a person and rules that keep the bot, apart; one sweep per threshold that is
    // not a guard; 2 histograms; CSAT and wait.
    let plots = 1 + 3 + 2 + thresholds + 2 + 2;
    assert!(!html.contains("Escalation rate by queue"));
    assert_eq!(count(&html, "<svg"), plots, "plots");
    assert_eq!(count(&html, "<figure"), plots, "every plot is a figure");
    assert_eq!(
        count(&html, "<table"),
        plots + 2,
        "a table beside every plot, the headline and the summary"
    );
    // The headline first, with the numbers the feedback gives.
    let row =
        |label: &str, value: String| format!("<th scope=\"row\">{label}</th><td>{value}</td>");
    assert!(html.find("At a glance") < html.find("Summary"));
    assert!(
        html.contains(&row(
            "missed hand-offs: kept with the bot, a person was needed",
            truth.missed.to_string()
        )),
        "missed {}",
        truth.missed
    );
    assert!(html.contains(&row(
        "needless hand-offs: a person brought in, not needed",
        truth.needless.to_string()
    )));
    let made = truth.made_needed + truth.needless;
    assert!(
        html.contains(&format!("({} of {made})</td>", truth.made_needed)),
        "precision over {made} hand-offs with feedback"
    );
    // Rules in words, from the policy's own detail.
    assert!(html.contains("<td>customer asked for a person</td>"));
    assert!(html.contains("<td>no rule fired: kept with the bot</td>"));
    assert_eq!(count(&html, "role=\"img\""), plots);

    // Rendered by the browser, the plots are there.
    let dom = String::from_utf8(headless(&["--dump-dom"], &page).stdout).unwrap();
    assert_eq!(
        count(&dom, "<svg"),
        plots,
        "svg elements in the rendered page"
    );
    assert!(count(&dom, "<polyline") >= 3 + thresholds, "line series");
    assert!(count(&dom, "<rect") > 100, "bars");
    assert!(count(&dom, "<text") > 200, "axis labels and captions");
    assert!(dom.contains("brought a person in") && dom.contains("today's value"));
    assert!(dom.contains("precision (feedback)") && dom.contains("recall (feedback)"));
    assert!(dom.contains("precision, higher is better") && dom.contains("misses, lower is better"));
    assert!(dom.contains("At a glance") && dom.contains("(recall)"));

    // `HANDOFF_REPORT_SCREENSHOT=docs/report-top.png` redraws the README's picture of the top.
    if let Ok(top) = std::env::var("HANDOFF_REPORT_SCREENSHOT") {
        headless(
            &[
                &format!("--screenshot={top}"),
                "--window-size=1100,900",
                "--hide-scrollbars",
            ],
            &page,
        );
    }

    // And they are visible: the screenshot is not blank and shows the plot colour.
    let shot = dir.join("shot.png");
    headless(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400",
            "--hide-scrollbars",
        ],
        &page,
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let non_white = pixels.iter().filter(|p| p[..3] != [255, 255, 255]).count();
    let plot_blue = pixels
        .iter()
        .filter(|p| {
            (p[0] as i32 - 31).abs() < 12
                && (p[1] as i32 - 119).abs() < 12
                && (p[2] as i32 - 180).abs() < 12
        })
        .count();
    assert!(
        non_white * 50 > pixels.len(),
        "screenshot is nearly blank: {non_white} of {} pixels drawn",
        pixels.len()
    );
    assert!(plot_blue > 500, "plot colour missing: {plot_blue} pixels");
    let _ = std::fs::remove_dir_all(&dir);
}
