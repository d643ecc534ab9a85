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
    bot_failed: bool,
    accepted_offer: bool,
    /// How long ago the customer sent the message (reply windows run from then).
    sent_hours_ago: u64,
    action: Action,
    /// Rule id of the first reason.
    rule: &'static str,
    queue: &'static str,
    /// Expected priority (0: not checked).
    priority: i32,
    /// A rule id that must be among the reasons too ("": none).
    also: &'static str,
}

const fn step(text: &'static str, action: Action, rule: &'static str) -> Step {
    Step {
        text,
        message_id: "",
        channel: pb::Channel::Web,
        tier: pb::CustomerTier::Standard,
        bot_fallbacks: 0,
        bot_failed: false,
        accepted_offer: false,
        sent_hours_ago: 0,
        action,
        rule,
        queue: "",
        priority: 0,
        also: "",
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
            "the bot could not answer",
            vec![Step {
                bot_failed: true,
                ..step("hello? is anyone there", Offer, "bot_failure")
            }],
        ),
        (
            "zh low confidence turn after turn",
            vec![
                step("优惠券和物流还有会员", Bot, "default"),
                step("优惠券、物流、会员", Offer, "low_confidence"),
            ],
        ),
        (
            "worsening sentiment",
            vec![
                step("请问这个有蓝色的吗", Bot, "default"),
                step("那个呢", Bot, "default"),
                step("还是不行啊", Offer, "worsening"),
            ],
        ),
        (
            "sustained negativity",
            vec![
                step("还是不行啊", Bot, "default"),
                step("还是不行啊", Offer, "sustained_negativity"),
            ],
        ),
        (
            "consecutive negative turns",
            vec![
                step("whatever about it", Bot, "default"),
                step("有点慢", Bot, "default"),
                step("whatever about it", Offer, "consecutive_negative"),
            ],
        ),
        (
            "WhatsApp reply window about to close",
            vec![Step {
                channel: pb::Channel::Whatsapp,
                sent_hours_ago: 23,
                priority: 7,
                also: "reply_window",
                ..step("I want a real person", Escalate, "explicit_request")
            }],
        ),
        (
            "WeChat's window is 48 h",
            vec![Step {
                channel: pb::Channel::Wechat,
                sent_hours_ago: 23,
                priority: 5,
                ..step("转人工", Escalate, "explicit_request")
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

fn sent_at_ms(hours_ago: u64) -> u64 {
    if hours_ago == 0 {
        return 0;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (now.as_secs() - hours_ago * 3600) * 1000
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
                    bot_failed: s.bot_failed,
                    accepted_offer: s.accepted_offer,
                    sent_at_unix_ms: sent_at_ms(s.sent_hours_ago),
                    ..Default::default()
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
            let priority_ok = s.priority == 0 || resp.priority == s.priority;
            let also_ok = s.also.is_empty() || resp.reasons.iter().any(|r| r.rule_id == s.also);
            if resp.action() != s.action || rule != s.rule || !queue_ok || !priority_ok || !also_ok
            {
                let got: Vec<_> = resp.reasons.iter().map(|r| r.rule_id.as_str()).collect();
                failures.push(format!(
                    "{name}, turn {i} {:?}: expected {:?}/{}/{}/p{} (+{}), got {:?}/{}/{}/p{} {got:?} (intent {} {:.2}, negativity {:.2})",
                    s.text,
                    s.action,
                    s.rule,
                    s.queue,
                    s.priority,
                    s.also,
                    resp.action(),
                    rule,
                    resp.queue,
                    resp.priority,
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
