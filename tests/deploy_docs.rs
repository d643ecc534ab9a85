//! The deploy kit's documents: every Prometheus alert links a runbook section that exists.

use std::path::Path;

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
