//! Multi-turn conversations over real gRPC, Chinese and English, with the expected decision at each
//! turn: every signal and rule kind of the conversation-aware policy.

mod common;

use handoff::grpc::pb::{self, Action, RouteRequest};

use Action::{ContinueBot as Bot, Escalate};

#[tokio::test]
async fn every_scenario_gets_the_expected_decision_at_each_turn() {
    let mut client = common::client(common::shared()).await;
    let failures = common::scenarios::run(&mut client, "scenario").await;
    assert!(
        failures.is_empty(),
        "{} turns decided wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A policy file beyond the built-in one: a queue that is closed at any hour, a rule over a customer
/// attribute, and a channel override.
const EXTRA_POLICY: &str = r#"
[channels.email]
queue = "email"
priority_boost = -1

[[queues]]
name = "general"
days = []
open = "09:00"
close = "21:00"
fallback = "ticket"
capacity = 3

[[rules]]
id = "enterprise_refund"
when = "attr.plan == 'enterprise' and intent == 'refund_return'"
action = "escalate"
queue = "accounts"
detail = "enterprise customers' refunds go to their account team"
"#;

#[tokio::test]
async fn a_policy_file_adds_closed_queues_attribute_rules_and_channel_overrides() {
    let path = std::env::temp_dir().join(format!("handoff-extra-{}.toml", std::process::id()));
    let builtin = include_str!("../src/policy/builtin.toml");
    std::fs::write(&path, format!("{builtin}\n{EXTRA_POLICY}")).unwrap();
    let server = common::Server::start(&["--policy", path.to_str().unwrap()]);
    let mut client = common::client(&server).await;
    let route = |conversation: &str, text: &str, channel: pb::Channel, plan: &str| {
        let req = RouteRequest {
            conversation_id: conversation.into(),
            text: text.into(),
            channel: channel as i32,
            attributes: [("plan".to_string(), plan.to_string())].into(),
            ..Default::default()
        };
        let mut client = client.clone();
        async move { client.route(req).await.unwrap().into_inner() }
    };
    let resp = route("night", "转人工", pb::Channel::Web, "basic").await;
    assert_eq!(
        (resp.action(), resp.queue.as_str(), resp.fallback.as_str()),
        (Escalate, "general", "ticket")
    );
    assert!(
        resp.reasons
            .iter()
            .any(|r| r.rule_id == "after_hours" && r.signal == "queue:general"),
        "{:?}",
        resp.reasons
    );
    let security = route("night2", "my account was hacked", pb::Channel::Web, "").await;
    assert_eq!(
        (security.queue.as_str(), security.fallback.as_str()),
        ("security", ""),
        "other queues stay open"
    );
    let refund = "I want to return this and get my money back";
    let basic = route("refund-basic", refund, pb::Channel::Web, "basic").await;
    assert_eq!(basic.action(), Bot, "{:?}", basic.reasons);
    let enterprise = route("refund-ent", refund, pb::Channel::Web, "enterprise").await;
    assert_eq!(
        (enterprise.action(), enterprise.queue.as_str()),
        (Escalate, "accounts")
    );
    assert_eq!(enterprise.reasons[0].rule_id, "enterprise_refund");
    let email = route("mail", "I want a real person", pb::Channel::Email, "").await;
    assert_eq!((email.queue.as_str(), email.priority), ("email", 4));
    assert!(server
        .metrics()
        .lines()
        .any(|l| l == "handoff_queue_capacity{queue=\"general\"} 3"));

    // Bad input on the new fields is refused by name.
    let mut bad = RouteRequest {
        conversation_id: "bad".into(),
        text: "hi".into(),
        attributes: [("Plan!".to_string(), "x".to_string())].into(),
        ..Default::default()
    };
    let status = client.route(bad.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("attributes"),
        "{}",
        status.message()
    );
    bad.attributes.clear();
    bad.sent_at_unix_ms = u64::MAX;
    let status = client.route(bad).await.unwrap_err();
    assert!(
        status.message().contains("sent_at_unix_ms"),
        "{}",
        status.message()
    );
}
