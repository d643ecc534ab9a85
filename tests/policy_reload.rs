//! The policy file reloads without a restart (on change and on SIGHUP); a bad file is refused with
//! its line and the running policy stays in force.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use handoff::grpc::pb::{Action, RouteRequest, RouteResponse};

async fn route(server: &common::Server, message_id: &str, text: &str) -> RouteResponse {
    let mut client = common::client(server).await;
    let req = RouteRequest {
        conversation_id: "reload-conv".into(),
        message_id: message_id.into(),
        text: text.into(),
        ..Default::default()
    };
    client.route(req).await.unwrap().into_inner()
}

fn reload_count(server: &common::Server, result: &str) -> u64 {
    let prefix = format!("handoff_policy_reloads_total{{result=\"{result}\"}} ");
    server
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The built-in policy (every queue always open, whatever the hour of the test) under another
/// version, with `from` replaced by `to`.
fn policy(version: &str, from: &str, to: &str) -> String {
    let builtin = include_str!("../src/policy/builtin.toml");
    assert!(builtin.contains(from), "{from}");
    builtin
        .replace(
            "version = \"builtin-6\"",
            &format!("version = \"{version}\""),
        )
        .replace(from, to)
}

#[tokio::test]
async fn policy_reloads_mid_conversation_and_a_bad_file_keeps_the_running_policy() {
    let path = std::env::temp_dir().join(format!("handoff-reload-{}.toml", std::process::id()));
    let strong = "when = \"not hedged and not small_talk and ((negativity >= 0.5 and upset_cues >= 1) or upset_cues >= 2)\"";
    std::fs::write(&path, policy("t-1", strong, strong)).unwrap();
    let server = common::Server::start(&["--policy", path.to_str().unwrap()]);

    let first = route(&server, "m1", "请问这个有蓝色的吗").await;
    assert_eq!(
        (first.policy_version.as_str(), first.action()),
        ("t-1", Action::ContinueBot)
    );

    // Mid-conversation: any negativity at all now offers a human.
    std::thread::sleep(Duration::from_millis(1100)); // a new mtime, even on coarse file systems
    let anything = "when = \"negativity >= 0.0\"";
    std::fs::write(&path, policy("t-2", strong, anything)).unwrap();
    wait_for("reload of t-2", || reload_count(&server, "ok") == 1).await;
    let second = route(&server, "m2", "那有黑色的吗").await;
    assert_eq!(
        (second.policy_version.as_str(), second.action()),
        ("t-2", Action::OfferHuman)
    );
    assert_eq!(second.reasons[0].rule_id, "upset");

    // A bad file: refused with its line, counted, and t-2 stays in force.
    std::thread::sleep(Duration::from_millis(1100));
    let typo = policy("t-3", strong, "when = \"negativty >= 0.0\"");
    let line = typo.lines().position(|l| l.contains("negativty")).unwrap() + 1;
    std::fs::write(&path, &typo).unwrap();
    wait_for("refusal of t-3", || reload_count(&server, "error") == 1).await;
    assert_eq!(route(&server, "m3", "白色呢").await.policy_version, "t-2");
    assert!(
        server.log_text().contains(&format!(
            ":{line}: rule \"upset\": in `when`: unknown signal \"negativty\""
        )),
        "{}",
        server.log_text()
    );

    // SIGHUP reloads on demand.
    unsafe {
        libc::kill(server.pid() as i32, libc::SIGHUP);
    }
    wait_for("SIGHUP reload", || reload_count(&server, "error") == 2).await;

    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .arg("check-policy")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.starts_with("REFUSED") && stdout.contains(&format!(":{line}:")),
        "{stdout}"
    );
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/policy.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["check-policy", shipped, "--model"])
        .arg(common::model_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
