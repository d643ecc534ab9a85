//! Escalation policy: turns one classified customer message plus what the caller knows about the
//! conversation into a decision with reasons. Knows nothing about gRPC or the model runtime.
//!
//! This first policy reads the current message only; rules are checked in order and the first that
//! fires decides. Its thresholds come from the `[policy]` table of the server config.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ContinueBot,
    OfferHuman,
    Escalate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ContinueBot => "continue_bot",
            Action::OfferHuman => "offer_human",
            Action::Escalate => "escalate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Unspecified,
    Web,
    App,
    WeChat,
    WhatsApp,
    Sms,
    Email,
    Voice,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Unspecified => "unspecified",
            Channel::Web => "web",
            Channel::App => "app",
            Channel::WeChat => "wechat",
            Channel::WhatsApp => "whatsapp",
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Voice => "voice",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Standard,
    Vip,
}

/// What the policy knows about this turn.
#[derive(Debug, Clone)]
pub struct Turn<'a> {
    pub intent: &'a str,
    pub intent_score: f32,
    pub negativity: f32,
    pub channel: Channel,
    pub tier: Tier,
    pub bot_fallbacks: u32,
    pub bot_failed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub rule_id: String,
    pub signal: String,
    pub value: f64,
    pub threshold: f64,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub action: Action,
    pub queue: String,
    pub priority: i32,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub version: String,
    /// `request_human` at or above this probability escalates.
    pub request_human_threshold: f32,
    /// Intents that go straight to a person, each with its queue.
    pub high_risk_intents: Vec<HighRiskIntent>,
    pub high_risk_threshold: f32,
    /// Negativity at or above this offers a human.
    pub offer_negativity: f32,
    /// Bot fallbacks at or above this offer a human.
    pub offer_after_fallbacks: u32,
    pub default_queue: String,
    pub vip_queue: String,
    pub base_priority: i32,
    pub high_risk_priority: i32,
    pub vip_priority_boost: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HighRiskIntent {
    pub intent: String,
    pub queue: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            version: "builtin-1".into(),
            request_human_threshold: 0.5,
            high_risk_intents: vec![
                HighRiskIntent {
                    intent: "account_security".into(),
                    queue: "security".into(),
                },
                HighRiskIntent {
                    intent: "complaint".into(),
                    queue: "complaints".into(),
                },
            ],
            high_risk_threshold: 0.6,
            offer_negativity: 0.8,
            offer_after_fallbacks: 2,
            default_queue: "general".into(),
            vip_queue: "senior".into(),
            base_priority: 5,
            high_risk_priority: 7,
            vip_priority_boost: 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy refers to intent {0:?}, which the model does not have (labels: {1})")]
    UnknownIntent(String, String),
    #[error("policy threshold {0} = {1} is outside [0, 1]")]
    Threshold(&'static str, f32),
}

pub struct Policy {
    config: PolicyConfig,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Result<Self, PolicyError> {
        for (name, v) in [
            ("request_human_threshold", config.request_human_threshold),
            ("high_risk_threshold", config.high_risk_threshold),
            ("offer_negativity", config.offer_negativity),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(PolicyError::Threshold(name, v));
            }
        }
        Ok(Policy { config })
    }

    pub fn version(&self) -> &str {
        &self.config.version
    }

    /// Every intent the policy names must exist in the model's labels.
    pub fn check_labels(&self, intents: &[String]) -> Result<(), PolicyError> {
        let named = std::iter::once("request_human").chain(
            self.config
                .high_risk_intents
                .iter()
                .map(|h| h.intent.as_str()),
        );
        for intent in named {
            if !intents.iter().any(|l| l == intent) {
                return Err(PolicyError::UnknownIntent(
                    intent.into(),
                    intents.join(", "),
                ));
            }
        }
        Ok(())
    }

    pub fn decide(&self, turn: &Turn) -> Decision {
        let c = &self.config;
        let vip = turn.tier == Tier::Vip;
        let queue = |q: &str| {
            if vip {
                c.vip_queue.clone()
            } else {
                q.to_string()
            }
        };
        let priority = |p: i32| if vip { p + c.vip_priority_boost } else { p };
        let intent_reason = |rule: &str, threshold: f32, detail: &str| Reason {
            rule_id: rule.into(),
            signal: format!("intent:{}", turn.intent),
            value: turn.intent_score as f64,
            threshold: threshold as f64,
            detail: detail.into(),
        };

        if turn.intent == "request_human" && turn.intent_score >= c.request_human_threshold {
            return Decision {
                action: Action::Escalate,
                queue: queue(&c.default_queue),
                priority: priority(c.base_priority),
                reasons: vec![intent_reason(
                    "explicit_request",
                    c.request_human_threshold,
                    "customer asked for a person",
                )],
            };
        }
        if let Some(h) = c.high_risk_intents.iter().find(|h| h.intent == turn.intent) {
            if turn.intent_score >= c.high_risk_threshold {
                return Decision {
                    action: Action::Escalate,
                    queue: queue(&h.queue),
                    priority: priority(c.high_risk_priority),
                    reasons: vec![intent_reason(
                        "high_risk_intent",
                        c.high_risk_threshold,
                        "high-risk intent",
                    )],
                };
            }
        }
        if turn.negativity >= c.offer_negativity {
            return Decision {
                action: Action::OfferHuman,
                queue: queue(&c.default_queue),
                priority: priority(c.base_priority),
                reasons: vec![Reason {
                    rule_id: "strong_negativity".into(),
                    signal: "negativity".into(),
                    value: turn.negativity as f64,
                    threshold: c.offer_negativity as f64,
                    detail: "customer is strongly negative".into(),
                }],
            };
        }
        if turn.bot_failed || turn.bot_fallbacks >= c.offer_after_fallbacks {
            return Decision {
                action: Action::OfferHuman,
                queue: queue(&c.default_queue),
                priority: priority(c.base_priority),
                reasons: vec![Reason {
                    rule_id: "bot_failure".into(),
                    signal: "bot_fallbacks".into(),
                    value: turn.bot_fallbacks as f64,
                    threshold: c.offer_after_fallbacks as f64,
                    detail: if turn.bot_failed {
                        "bot could not answer".into()
                    } else {
                        "repeated bot fallbacks".into()
                    },
                }],
            };
        }
        Decision {
            action: Action::ContinueBot,
            queue: String::new(),
            priority: 0,
            reasons: vec![intent_reason("default", 0.0, "no escalation rule fired")],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(intent: &str, score: f32, negativity: f32) -> Turn<'_> {
        Turn {
            intent,
            intent_score: score,
            negativity,
            channel: Channel::Web,
            tier: Tier::Standard,
            bot_fallbacks: 0,
            bot_failed: false,
        }
    }

    #[test]
    fn rules_fire_in_order() {
        let p = Policy::new(PolicyConfig::default()).unwrap();
        assert_eq!(
            p.decide(&turn("request_human", 0.9, 0.95)).action,
            Action::Escalate
        );
        let d = p.decide(&turn("account_security", 0.8, 0.1));
        assert_eq!(
            (d.action, d.queue.as_str(), d.priority),
            (Action::Escalate, "security", 7)
        );
        assert_eq!(
            p.decide(&turn("order_status", 0.9, 0.9)).action,
            Action::OfferHuman
        );
        assert_eq!(
            p.decide(&turn("order_status", 0.9, 0.1)).action,
            Action::ContinueBot
        );
        assert_eq!(
            p.decide(&turn("request_human", 0.3, 0.1)).action,
            Action::ContinueBot
        );
    }

    #[test]
    fn vip_goes_to_senior_queue_with_boost() {
        let p = Policy::new(PolicyConfig::default()).unwrap();
        let mut t = turn("request_human", 0.9, 0.0);
        t.tier = Tier::Vip;
        let d = p.decide(&t);
        assert_eq!((d.queue.as_str(), d.priority), ("senior", 7));
    }

    #[test]
    fn bad_config_is_refused() {
        let cfg = PolicyConfig {
            offer_negativity: 1.5,
            ..Default::default()
        };
        assert!(Policy::new(cfg).is_err());
        let p = Policy::new(PolicyConfig::default()).unwrap();
        assert!(p.check_labels(&["request_human".into()]).is_err());
    }
}
