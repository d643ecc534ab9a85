//! `handoff check-model` accepts the shipped package and refuses broken ones with the reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn check(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .arg("check-model")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A copy of the shipped package with its manifest edited by `edit`.
fn broken_copy(name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let src = common::model_dir();
    let dir = std::env::temp_dir().join(format!("handoff-broken-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.onnx", "tokenizer.json", "tp2"] {
        let target = dir.join(f);
        if !target.exists() {
            std::os::unix::fs::symlink(src.join(f), target).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(src.join("manifest.toml")).unwrap();
    std::fs::write(dir.join("manifest.toml"), edit(manifest)).unwrap();
    dir
}

#[test]
fn the_shipped_package_passes_with_its_golden_examples() {
    let (ok, out) = check(&common::model_dir());
    assert!(ok, "{out}");
    assert!(out.starts_with("OK: handoff-zh-en"), "{out}");
    assert!(out.contains("pass  转人工"), "{out}");
}

#[test]
fn broken_packages_are_refused_with_the_reason() {
    // (case, manifest text to replace, replacement, expected reason)
    let cases = [
        (
            "output",
            "intent = \"intent_probs\"",
            "intent = \"intent_logits\"",
            "no output \"intent_logits\"",
        ),
        (
            "labels",
            "\"other\"]",
            "\"other\", \"extra\"]",
            "intent output has shape",
        ),
        (
            "golden",
            "intent = \"request_human\"",
            "intent = \"order_status\"",
            "golden examples failed",
        ),
        (
            "onnx",
            "model = \"model.onnx\"",
            "model = \"tokenizer.json\"",
            "invalid ONNX graph",
        ),
        (
            "parallel-dir",
            "dir = \"tp2\"",
            "dir = \"../tp2\"",
            "parallel.dir = \"../tp2\" must be a directory inside the package",
        ),
        (
            "parallel-tolerance",
            "tolerance = 0.01",
            "tolerance = 0.5",
            "parallel.tolerance = 0.5 is outside (0, 0.02]",
        ),
        (
            "parallel-missing",
            "dir = \"tp2\"",
            "dir = \"tp3\"",
            "tp3/l0_attn_0.onnx",
        ),
    ];
    for (name, from, to, reason) in cases {
        let dir = broken_copy(name, |m| m.replacen(from, to, 1));
        let (ok, out) = check(&dir);
        assert!(!ok, "{name}: accepted a broken package");
        assert!(
            out.contains("REFUSED") && out.contains(reason),
            "{name}: {out}"
        );
    }
}

/// Stages that no longer match model.onnx (here layer 1's feed-forward half where layer 2's should
/// be) would answer single calls differently from batches: the load compares them and refuses.
#[test]
fn stale_tensor_parallel_stages_are_refused() {
    let src = common::model_dir();
    let dir = broken_copy("stale-stages", |m| {
        m.replacen("dir = \"tp2\"", "dir = \"stale\"", 1)
    });
    let stale = dir.join("stale");
    std::fs::create_dir_all(&stale).unwrap();
    for entry in std::fs::read_dir(src.join("tp2")).unwrap() {
        let name = entry.unwrap().file_name();
        let from = match name.to_str().unwrap() {
            "l2_ffn_0.onnx" => "l1_ffn_0.onnx".into(),
            _ => name.clone(),
        };
        let target = stale.join(&name);
        if !target.exists() {
            std::os::unix::fs::symlink(src.join("tp2").join(from), target).unwrap();
        }
    }
    let (ok, out) = check(&dir);
    assert!(!ok, "accepted stale stages");
    assert!(
        out.contains("tensor-parallel stages disagree with the whole graph"),
        "{out}"
    );
}

/// `serve` on a relative model path from another directory: the path tried and the working
/// directory are said once, before the shutdown lines, and the exit is a failure.
#[test]
fn a_missing_relative_model_path_is_said_once_with_the_directory_it_was_read_from() {
    let elsewhere = std::env::temp_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .current_dir(&elsewhere)
        .arg("serve")
        .args(["--grpc-addr", &format!("127.0.0.1:{}", common::free_port())])
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .args(["--model", "models/handoff-zh-en/no-such-version"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "relative to the working directory {}",
            elsewhere.display()
        )),
        "{stderr}"
    );
    let lower = stderr.to_lowercase();
    assert_eq!(lower.matches("no such file").count(), 1, "{stderr}");
    let failed = stderr.find("model failed to load").expect("logged");
    let draining = stderr.find("shutting down").expect("drained");
    assert!(failed < draining, "the cause comes first: {stderr}");
}

/// `serve --help` names the variable of every flag (the `--set` escape hatch excepted), and each
/// variable it names is one the server reads, not a typo it would warn about.
#[test]
fn serve_help_names_the_variable_of_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    // One block per option: from its `--name` line to the next.
    let mut blocks: Vec<String> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with("--") || t.starts_with('-') && t.get(2..4) == Some(", ") {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    let mut named = Vec::new();
    for block in &blocks {
        let flag = block
            .split_whitespace()
            .find(|w| w.starts_with("--"))
            .unwrap();
        if ["--set", "--help"].contains(&flag) {
            continue;
        }
        let start = block
            .find("[env: ")
            .unwrap_or_else(|| panic!("{flag}: {block}"));
        let var: String = block[start + 6..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        named.push(var);
    }
    assert!(named.len() >= 17, "{named:?}\n{help}");
    let unknown = handoff::config::unknown_variables(named.clone());
    assert!(unknown.is_empty(), "{unknown:?} of {named:?}");
}

/// Every argument of every subcommand says what it is in `--help`.
#[test]
fn every_subcommand_argument_has_help_text() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = help(&["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 12, "{top}");
    for command in &commands {
        let text = help(&[command, "--help"]);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let is_argument = t.starts_with("--") || t.starts_with('<') || t.starts_with("-h");
            if !is_argument || t.starts_with("-h, --help") {
                continue;
            }
            // clap puts the help on the same line or, when long, on the next, indented deeper.
            let same_line = t.split("  ").filter(|p| !p.trim().is_empty()).count() > 1;
            let next_line = lines.get(i + 1).is_some_and(|n| {
                n.len() - n.trim_start().len() > line.len() - t.len() && !n.trim().is_empty()
            });
            assert!(
                same_line || next_line,
                "{command}: {t:?} has no help:\n{text}"
            );
        }
    }
}
