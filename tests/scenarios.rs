//! Multi-turn conversations over real gRPC, Chinese and English, with the expected decision at each
//! turn: every signal and rule kind of the conversation-aware policy.

mod common;

use handoff::grpc::pb::{self, Action, RouteRequest};

/// One customer turn and what the policy must answer.
struct Step {
    text: &'static str,
    message_id: &'static str,
    channel: pb::Channel,
    tier: pb::CustomerTier,
    bot_fallbacks: u32,
    accepted_offer: bool,
    action: Action,
    /// Rule id of the first reason.
    rule: &'static str,
    queue: &'static str,
}

const fn step(text: &'static str, action: Action, rule: &'static str) -> Step {
    Step {
        text,
        message_id: "",
        channel: pb::Channel::Web,
        tier: pb::CustomerTier::Standard,
        bot_fallbacks: 0,
        accepted_offer: false,
        action,
        rule,
        queue: "",
    }
}

use Action::{ContinueBot as Bot, Escalate, OfferHuman as Offer};

fn scenarios() -> Vec<(&'static str, Vec<Step>)> {
    vec![
        (
            "zh explicit request",
            vec![
                step("我的订单到哪了", Bot, "default"),
                step("转人工", Escalate, "explicit_request"),
            ],
        ),
        (
            "en explicit request",
            vec![step("I want a real person", Escalate, "explicit_request")],
        ),
        (
            "zh negated request",
            vec![step("不用转人工了，已经好了谢谢", Bot, "default")],
        ),
        (
            "en negated request",
            vec![step(
                "I don't need a human, just tell me the price",
                Bot,
                "default",
            )],
        ),
        (
            "zh paraphrased repeat",
            vec![
                step("我的订单到哪了", Bot, "default"),
                step("我的快递到哪了", Offer, "repeated_question"),
            ],
        ),
        (
            "en paraphrased repeat",
            vec![
                step("where is my order", Bot, "default"),
                step(
                    "my order hasn't arrived, where is it?",
                    Offer,
                    "repeated_question",
                ),
            ],
        ),
        (
            "re-sent message counts once",
            vec![
                Step {
                    message_id: "m1",
                    ..step("where is my order", Bot, "default")
                },
                Step {
                    message_id: "m1",
                    ..step("where is my order", Bot, "default")
                },
            ],
        ),
        (
            "zh negativity ladder",
            vec![
                step("气死我了，什么破服务[怒]", Offer, "strong_negativity"),
                step("太差劲了，真的很生气[怒]", Offer, "strong_negativity"),
                step("垃圾，烦死了[怒]", Escalate, "offer_ladder"),
            ],
        ),
        (
            "en offer accepted",
            vec![
                step(
                    "this is the worst service ever, I'm furious",
                    Offer,
                    "strong_negativity",
                ),
                Step {
                    accepted_offer: true,
                    ..step("yes please", Escalate, "offer_accepted")
                },
            ],
        ),
        (
            "voice escalates sooner",
            vec![
                Step {
                    channel: pb::Channel::Voice,
                    ..step(
                        "I'm so angry right now, this is ridiculous",
                        Offer,
                        "strong_negativity",
                    )
                },
                Step {
                    channel: pb::Channel::Voice,
                    ..step(
                        "you people are useless, I'm furious",
                        Escalate,
                        "offer_ladder",
                    )
                },
            ],
        ),
        (
            "bot failures",
            vec![Step {
                bot_fallbacks: 2,
                ..step("what about the thing I asked", Offer, "bot_failure")
            }],
        ),
        (
            "high-risk intent",
            vec![Step {
                queue: "security",
                ..step(
                    "我的账号被盗了，有人在转我的钱",
                    Escalate,
                    "high_risk_intent",
                )
            }],
        ),
        (
            "complaint with a legal threat",
            vec![Step {
                queue: "complaints",
                ..step(
                    "this is fraud, I will contact my lawyer and sue you",
                    Escalate,
                    "complaint_threat",
                )
            }],
        ),
        (
            "VIP routing",
            vec![
                Step {
                    tier: pb::CustomerTier::Vip,
                    queue: "senior",
                    ..step("cancel my subscription please", Escalate, "vip_cancel")
                },
                Step {
                    tier: pb::CustomerTier::Vip,
                    queue: "senior",
                    ..step("转人工", Escalate, "explicit_request")
                },
            ],
        ),
    ]
}

#[tokio::test]
async fn every_scenario_gets_the_expected_decision_at_each_turn() {
    let server = common::shared();
    let mut client = common::client(server).await;
    let mut failures = Vec::new();
    for (n, (name, steps)) in scenarios().into_iter().enumerate() {
        let conversation = format!("scenario-{n}");
        for (i, s) in steps.iter().enumerate() {
            let resp = client
                .route(RouteRequest {
                    conversation_id: conversation.clone(),
                    message_id: s.message_id.into(),
                    text: s.text.into(),
                    channel: s.channel as i32,
                    tier: s.tier as i32,
                    bot_fallbacks: s.bot_fallbacks,
                    bot_failed: false,
                    accepted_offer: s.accepted_offer,
                })
                .await
                .unwrap()
                .into_inner();
            let rule = resp
                .reasons
                .first()
                .map(|r| r.rule_id.as_str())
                .unwrap_or("");
            let queue_ok = s.queue.is_empty() || resp.queue == s.queue;
            if resp.action() != s.action || rule != s.rule || !queue_ok {
                failures.push(format!(
                    "{name}, turn {i} {:?}: expected {:?}/{}/{}, got {:?}/{rule}/{} (intent {} {:.2}, negativity {:.2})",
                    s.text,
                    s.action,
                    s.rule,
                    s.queue,
                    resp.action(),
                    resp.queue,
                    resp.classification.as_ref().unwrap().intent,
                    resp.classification.as_ref().unwrap().intent_score,
                    resp.classification.as_ref().unwrap().negativity,
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} turns decided wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_closed_queue_names_its_after_hours_fallback() {
    let config = std::env::temp_dir().join(format!("handoff-closed-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[policy]\nqueues = [{ name = \"general\", days = [], open = \"09:00\", close = \"21:00\", fallback = \"ticket\" }]\n",
    )
    .unwrap();
    let server = common::Server::start(&["--config", config.to_str().unwrap()]);
    let mut client = common::client(&server).await;
    let resp = client
        .route(RouteRequest {
            conversation_id: "night".into(),
            text: "转人工".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
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
    let security = client
        .route(RouteRequest {
            conversation_id: "night2".into(),
            text: "my account was hacked".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (security.queue.as_str(), security.fallback.as_str()),
        ("security", ""),
        "other queues stay open"
    );
}
