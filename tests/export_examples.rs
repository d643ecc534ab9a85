//! `handoff export-examples`: feedback-confirmed messages become intent examples in the training
//! layout, contradicted ones go to review, and nothing without kept text or feedback is exported.

use std::process::Command;

use handoff::decision_log::{FeedbackEntry, HumanNeeded, LoggedDecision};
use handoff::policy::Snapshot;

fn decision(
    i: usize,
    action: &str,
    intent: &str,
    score: f32,
    text: Option<&str>,
) -> LoggedDecision {
    LoggedDecision {
        tenant: None,
        decision_id: format!("00000000-0000-4000-8000-{i:012}"),
        ts_ms: 1_795_000_000_000 + i as u64,
        conversation: format!("{i:016x}"),
        action: action.into(),
        rule: "r".into(),
        queue: String::new(),
        priority: 0,
        fallback: String::new(),
        degraded: false,
        reasons: Vec::new(),
        model: "handoff-zh-en".into(),
        model_version: "2.2.0".into(),
        policy_version: "p".into(),
        unix_s: 0,
        sent_unix_s: 0,
        signals: Snapshot {
            intent: intent.into(),
            intent_score: score,
            ..Default::default()
        },
        text: text.map(str::to_string),
    }
}

fn feedback(i: usize, needed: bool) -> FeedbackEntry {
    FeedbackEntry {
        tenant: None,
        decision_id: format!("00000000-0000-4000-8000-{i:012}"),
        ts_ms: 0,
        human_needed: if needed {
            HumanNeeded::Needed
        } else {
            HumanNeeded::NotNeeded
        },
        resolved_by: None,
        csat: None,
        wait_seconds: None,
        caller: "t".into(),
    }
}

#[test]
fn confirmed_messages_become_examples_and_contradicted_ones_go_to_review() {
    let dir = std::env::temp_dir().join(format!("handoff-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let decisions = [
        // Escalated, a person was needed: confirmed.
        decision(
            0,
            "escalate",
            "security_incident",
            0.95,
            Some("someone used my card [card] twice"),
        ),
        // Kept with the bot, not needed: confirmed (Chinese).
        decision(
            1,
            "continue_bot",
            "order_status",
            0.9,
            Some("我的快递到哪了\n三天了"),
        ),
        // Kept with the bot but a person was needed: for review.
        decision(
            2,
            "continue_bot",
            "product_inquiry",
            0.9,
            Some("this is the third time I ask"),
        ),
        // Confirmed but the model was unsure: skipped.
        decision(3, "continue_bot", "other", 0.4, Some("hmm ok")),
        // No kept text, or no feedback: skipped.
        decision(4, "escalate", "complaint", 0.99, None),
        decision(5, "escalate", "complaint", 0.99, Some("never got feedback")),
        // Escalated but no person was needed: for review.
        decision(
            6,
            "escalate",
            "complaint",
            0.9,
            Some("ok fine, the parcel came"),
        ),
    ];
    let lines: String = decisions
        .iter()
        .map(|d| serde_json::to_string(d).unwrap() + "\n")
        .collect();
    std::fs::write(dir.join("decisions-a-1-0001.jsonl"), lines).unwrap();
    let fb: String = [
        (0, true),
        (1, false),
        (2, true),
        (3, false),
        (4, true),
        (6, false),
    ]
    .iter()
    .map(|(i, n)| serde_json::to_string(&feedback(*i, *n)).unwrap() + "\n")
    .collect();
    std::fs::write(dir.join("feedback-a-1-0001.jsonl"), fb).unwrap();

    let out = dir.join("exported");
    let run = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .args(["export-examples", "--log"])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let printed = String::from_utf8(run.stdout).unwrap();
    assert!(printed.contains("2 confirmed examples"), "{printed}");

    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    assert!(read("intents/en/security_incident.txt")
        .lines()
        .any(|l| l == "someone used my card [card] twice"));
    // One line per message: the line break inside it is folded.
    assert!(read("intents/zh/order_status.txt")
        .lines()
        .any(|l| l == "我的快递到哪了 三天了"));
    let review = read("review.tsv");
    assert_eq!(review.lines().count(), 3, "{review}");
    assert!(
        review.contains("\tneeded\tthis is the third time I ask"),
        "{review}"
    );
    // Spelled as the feedback log spells it.
    assert!(
        review.contains("\tnot_needed\tok fine, the parcel came"),
        "{review}"
    );
    assert!(!out.join("intents/en/other.txt").exists());
    assert!(!out.join("intents/en/complaint.txt").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
