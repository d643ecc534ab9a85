//! The scenario table: multi-turn conversations in Chinese and English with the expected decision
//! at each turn. Run by `tests/scenarios.rs`, and by `tests/privacy.rs` to grep the logs it leaves.

use handoff::grpc::pb::handoff_client::HandoffClient;
use handoff::grpc::pb::{self, Action, RouteRequest};
use tonic::transport::Channel;

/// One customer turn and what the policy must answer.
pub struct Step {
    pub text: &'static str,
    pub message_id: &'static str,
    pub channel: pb::Channel,
    pub tier: pb::CustomerTier,
    pub bot_fallbacks: u32,
    pub bot_failed: bool,
    pub accepted_offer: bool,
    /// How long ago the customer sent the message (reply windows run from then).
    pub sent_hours_ago: u64,
    pub action: Action,
    /// Rule id of the first reason.
    pub rule: &'static str,
    pub queue: &'static str,
    /// Expected priority (0: not checked).
    pub priority: i32,
    /// A rule id that must be among the reasons too ("": none).
    pub also: &'static str,
}

impl Step {
    /// This step as a Route request in `conversation`.
    pub fn request(&self, conversation: &str) -> RouteRequest {
        RouteRequest {
            conversation_id: conversation.into(),
            message_id: self.message_id.into(),
            text: self.text.into(),
            channel: self.channel as i32,
            tier: self.tier as i32,
            bot_fallbacks: self.bot_fallbacks,
            bot_failed: self.bot_failed,
            accepted_offer: self.accepted_offer,
            sent_at_unix_ms: sent_at_ms(self.sent_hours_ago),
            ..Default::default()
        }
    }
}

pub const fn step(text: &'static str, action: Action, rule: &'static str) -> Step {
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

pub fn scenarios() -> Vec<(&'static str, Vec<Step>)> {
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
                step("气死我了，什么破服务[怒]", Offer, "upset"),
                step("太差劲了，真的很生气[怒]", Offer, "upset"),
                step("垃圾，烦死了[怒]", Escalate, "offer_ladder"),
            ],
        ),
        (
            "en offer accepted",
            vec![
                step(
                    "this is the worst service ever, I'm furious",
                    Offer,
                    "upset",
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
                    ..step("I'm so angry right now, this is ridiculous", Offer, "upset")
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
                step("怎么弄", Bot, "default"),
                // Asked again in other words: the repeat is the first reason, the model's doubt the second.
                Step {
                    also: "low_confidence",
                    ..step("要怎么弄", Offer, "repeated_question")
                },
            ],
        ),
        (
            "vague turn after turn",
            vec![
                step("请问这个有蓝色的吗", Bot, "default"),
                step("那个呢", Bot, "default"),
                step("还是不行啊", Offer, "low_confidence"),
            ],
        ),
        (
            "hedged complaints stay with the bot",
            vec![
                step("体验一般吧，物流有点慢", Bot, "default"),
                step("your new app update is kinda annoying tbh", Bot, "default"),
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
                // Already with a person: the same queue, one priority up as a rule fires again.
                Step {
                    tier: pb::CustomerTier::Vip,
                    queue: "senior",
                    priority: 10,
                    also: "explicit_request",
                    ..step("转人工", Escalate, "already_escalated")
                },
            ],
        ),
    ]
}

/// Turns that make a new decision: a step re-sending the previous step's message id is a retry,
/// answered with the first decision and not recorded again.
#[allow(dead_code)] // not every test binary counts them
pub fn decided_turns() -> usize {
    scenarios()
        .iter()
        .map(|(_, steps)| {
            let retries = steps
                .windows(2)
                .filter(|w| !w[1].message_id.is_empty() && w[1].message_id == w[0].message_id)
                .count();
            steps.len() - retries
        })
        .sum()
}

pub fn sent_at_ms(hours_ago: u64) -> u64 {
    if hours_ago == 0 {
        return 0;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (now.as_secs() - hours_ago * 3600) * 1000
}

/// Play every scenario on `client` (conversation ids start with `prefix`); what went wrong, if anything.
pub async fn run(client: &mut HandoffClient<Channel>, prefix: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for (n, (name, steps)) in scenarios().into_iter().enumerate() {
        let conversation = format!("{prefix}-{n}");
        for (i, s) in steps.iter().enumerate() {
            let resp = client
                .route(s.request(&conversation))
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
    failures
}
