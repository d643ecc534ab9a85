//! The labelled conversations (`models/train/data/conversations.jsonl`), replayed through Route on
//! the shipped model and the built-in policy over real gRPC: per-turn agreement with what a
//! supervisor wanted must stay above the floor the model card reports against.

mod common;

use std::path::PathBuf;

/// 2.2.0 with the built-in policy measures 0.911 (the product target is 0.90; 2.1.0 measured 0.901).
/// The floor leaves room for a few turns that sit on a threshold and may flip on another CPU's
/// float rounding; a real regression still fails the suite.
const FLOOR: f64 = 0.88;

#[tokio::test]
async fn labelled_conversations_agree_with_the_supervisor_per_turn() {
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/train/data/conversations.jsonl");
    let conversations = handoff::conversations::load(&file).unwrap();
    assert!(
        conversations.len() >= 40,
        "{} conversations",
        conversations.len()
    );
    let mut client = common::client(common::shared()).await;
    let report = handoff::conversations::run(&mut client, &conversations, false)
        .await
        .unwrap();
    for r in report.results.iter().filter(|r| !r.agree) {
        eprintln!(
            "disagree: {} turn {} expected {:?} got {} ({})",
            r.conversation, r.turn, r.expect, r.action, r.top_reason
        );
    }
    assert!(
        report.agreement() >= FLOOR,
        "per-turn agreement {:.3} ({}/{}) is below {FLOOR}",
        report.agreement(),
        report.agree,
        report.turns
    );
    for (lang, (turns, _)) in &report.by_lang {
        assert!(*turns >= 60, "{lang}: only {turns} turns");
    }
}
