//! The data loop end to end: a real server logs every decision of the scenario suite and a few
//! more, takes feedback over gRPC, stops gracefully (flushing its log), and `handoff replay` on the
//! written log reproduces every decision with the unchanged policy and reports exactly the
//! decisions a changed threshold moves.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use handoff::decision_log::reader::DecisionLogData;
use handoff::decision_log::replay::replay;
use handoff::grpc::pb::{self, FeedbackRequest, HumanNeeded, ResolvedBy, RouteRequest};
use tonic::Code;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("handoff-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `config/policy.toml` with `bot_fallbacks >= 2` raised to 4.
fn candidate_policy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_file("config/policy.toml")).unwrap();
    let changed = text.replace("bot_fallbacks >= 2", "bot_fallbacks >= 4");
    assert_ne!(
        text, changed,
        "config/policy.toml has no bot_fallbacks >= 2 rule"
    );
    let path = dir.join("candidate.toml");
    std::fs::write(&path, changed).unwrap();
    path
}

fn replay_cli(policy: &Path, log: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["replay", "--policy"])
        .arg(policy)
        .arg("--log")
        .arg(log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

// Two threads: the client's connection must see the server's GOAWAY while this one waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_decisions_replay_exactly_and_a_changed_threshold_shows_its_effect() {
    let dir = temp_dir("data-loop");
    let log_dir = dir.join("log");
    let policy = repo_file("config/policy.toml");
    let config = dir.join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "policy_file = \"{}\"\n[decision_log]\ndir = \"{}\"\nreplica = \"test-a\"\n",
            policy.display(),
            log_dir.display()
        ),
    )
    .unwrap();
    let mut server = common::Server::start(&["--config", config.to_str().unwrap()]);
    let mut client = common::client(&server).await;

    let failures = common::scenarios::run(&mut client, "loop").await;
    assert!(failures.is_empty(), "{failures:?}");
    let mut routed = common::scenarios::decided_turns();

    // A conversation the bot keeps failing: 1, 2, 3 and 4 fallbacks.
    let mut fallback_decisions = Vec::new();
    let questions = [
        "what colours does the jacket come in",
        "do you deliver to Hangzhou on weekends",
        "can I pay with a gift card",
        "is there a student discount",
    ];
    for (fallbacks, text) in (1..=4).zip(questions) {
        let resp = client
            .route(RouteRequest {
                conversation_id: "loop-fallbacks".into(),
                text: text.into(),
                bot_fallbacks: fallbacks,
                channel: pb::Channel::App as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        routed += 1;
        fallback_decisions.push(resp);
    }
    let offered = &fallback_decisions[1];
    assert_eq!(offered.reasons[0].rule_id, "bot_failure", "{offered:?}");

    // Feedback: a person was not needed for the offer at 2 fallbacks, was needed at 4.
    let feedback = |id: &str, needed: HumanNeeded| FeedbackRequest {
        decision_id: id.to_string(),
        human_needed: needed as i32,
        resolved_by: ResolvedBy::Bot as i32,
        csat: 4,
        wait_seconds: 0,
        ..Default::default()
    };
    let first = feedback(&offered.decision_id, HumanNeeded::NotNeeded);
    let resp = client.feedback(first.clone()).await.unwrap().into_inner();
    assert!(resp.recorded);
    // The same feedback again is a no-op; different feedback for it is refused.
    let again = client.feedback(first.clone()).await.unwrap().into_inner();
    assert!(!again.recorded);
    let conflict = client
        .feedback(feedback(&offered.decision_id, HumanNeeded::Needed))
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists, "{conflict:?}");
    let last = &fallback_decisions[3];
    client
        .feedback(feedback(&last.decision_id, HumanNeeded::Needed))
        .await
        .unwrap();
    // The id in another form a UUID takes is the same decision (and is logged canonically).
    let upper = client
        .feedback(feedback(
            &last.decision_id.to_uppercase(),
            HumanNeeded::Needed,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!upper.recorded, "the same feedback again");
    let malformed = client
        .feedback(feedback("not-a-decision", HumanNeeded::Needed))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(malformed.message().contains("decision_id"), "{malformed:?}");
    // Unknown ids and bad values get clear statuses.
    let unknown = client
        .feedback(feedback(
            "6f1c1a4e-0000-4000-8000-000000000000",
            HumanNeeded::Needed,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let bad_csat = client
        .feedback(FeedbackRequest {
            csat: 9,
            ..first.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_csat.code(), Code::InvalidArgument);
    assert!(bad_csat.message().contains("csat"), "{bad_csat:?}");
    let no_verdict = client
        .feedback(FeedbackRequest {
            human_needed: 0,
            ..first.clone()
        })
        .await
        .unwrap_err();
    assert!(
        no_verdict.message().contains("human_needed"),
        "{no_verdict:?}"
    );

    // A graceful stop flushes the log: every decision served is in it.
    drop(client);
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    let log = DecisionLogData::read(&log_dir, None).unwrap();
    assert_eq!(log.decisions.len(), routed);
    assert_eq!(log.unreadable.lines, 0);
    assert_eq!(log.feedback.len(), 2, "{:?}", log.feedback);
    for d in &fallback_decisions {
        let logged = log
            .decisions
            .iter()
            .find(|l| l.decision_id == d.decision_id)
            .expect("decision logged");
        assert_eq!(
            logged.action,
            d.action()
                .as_str_name()
                .trim_start_matches("ACTION_")
                .to_lowercase()
        );
        assert_eq!(logged.priority, d.priority);
        assert_eq!(logged.text, None, "text is kept only when opted in");
    }

    // Unchanged policy: every decision reproduced.
    let unchanged = handoff::policy::file::load(&policy, None).unwrap();
    let same = replay(&log, &unchanged);
    assert_eq!(same.changed, 0, "{same}");
    assert_eq!(same.decisions, routed);
    let printed = replay_cli(&policy, &log_dir);
    assert!(
        printed.contains(&format!("{routed} logged decisions replayed; 0 change")),
        "{printed}"
    );

    // bot_fallbacks >= 4: exactly the decisions bot_failure made (directly, or through the offer
    // ladder) on 2 or 3 fallbacks alone move.
    let decided_by = |d: &handoff::decision_log::LoggedDecision| {
        d.reasons
            .iter()
            .map(|r| r.rule_id.clone())
            .find(|r| r != "offer_ladder")
            .unwrap_or_default()
    };
    let expected: Vec<_> = log
        .decisions
        .iter()
        .filter(|d| {
            decided_by(d) == "bot_failure"
                && !d.signals.bot_failed
                && (2..4).contains(&d.signals.bot_fallbacks)
        })
        .map(|d| d.decision_id.clone())
        .collect();
    assert!(expected.len() >= 3, "{expected:?}");
    let candidate = handoff::policy::file::load(&candidate_policy(&dir), None).unwrap();
    let moved = replay(&log, &candidate);
    assert_eq!(moved.changed, expected.len(), "{moved}");
    for (id, before, after) in &moved.examples {
        assert!(
            expected.contains(id),
            "{id} changed unexpectedly: {before:?} -> {after:?}"
        );
        assert_ne!(after.rule, "bot_failure");
    }
    assert!(moved.transitions.values().sum::<usize>() >= 1, "{moved}");
    // With feedback on two decisions: the offer nobody needed is gone, the needed one stays.
    assert_eq!(moved.feedback_before.total(), 2);
    assert_eq!(moved.feedback_before.false_pos, 1);
    assert_eq!(moved.feedback_after.false_pos, 0);
    assert_eq!(moved.feedback_after.true_pos, 1);
    let printed = replay_cli(&candidate_policy(&dir), &log_dir);
    assert!(
        printed.contains(&format!("{} change", expected.len())),
        "{printed}"
    );
    assert!(printed.contains("precision"), "{printed}");
    // Each first change names the fields that changed.
    assert!(printed.contains("rule bot_failure -> "), "{printed}");
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["replay", "--json", "--policy"])
        .arg(candidate_policy(&dir))
        .arg("--log")
        .arg(&log_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["changed"], expected.len(), "{json}");
    assert_eq!(json["feedback_after"]["true_pos"], 1, "{json}");
    let first = &json["first_changes"][0];
    assert!(expected.contains(&first["decision_id"].as_str().unwrap().to_string()));
    assert!(
        first["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "rule" && c["before"] == "bot_failure"),
        "{first}"
    );

    // A torn line is skipped and named by file and line; a line with an action no policy makes
    // stops the replay, named the same way.
    let file = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("decisions-")
        })
        .unwrap();
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    let text = std::fs::read_to_string(&file).unwrap();
    let lines = text.lines().count();
    std::fs::write(&file, format!("{text}{{\"decision_id\": \"torn")).unwrap();
    let printed = replay_cli(&policy, &log_dir);
    assert!(
        printed.contains(&format!("skipped 1 unreadable lines: {name}:{}", lines + 1)),
        "{printed}"
    );
    let teleport = text.replacen("\"action\":\"continue_bot\"", "\"action\":\"teleport\"", 1);
    assert_ne!(teleport, text, "a continue_bot decision to change");
    std::fs::write(&file, &teleport).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["replay", "--policy"])
        .arg(&policy)
        .arg("--log")
        .arg(&log_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let at = teleport
        .lines()
        .position(|l| l.contains("teleport"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("{name}:{at}: unknown action \"teleport\"")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
