//! Escalation policy: turns one classified customer message plus what the caller knows about the
//! conversation into a decision with reasons. Knows nothing about gRPC or the model runtime.
//!
//! Rules are checked in order and the first that fires decides; every rule reads named signals of
//! this turn and of the conversation so far (`state`), and says which ones in its reasons. Thresholds
//! come from the `[policy]` table of the server config.

pub mod file;
mod redis_store;
pub mod signals;
pub mod state;

use serde::Deserialize;

pub use file::SharedPolicy;
pub use redis_store::RedisStore;
use signals::KeywordHit;
pub use state::{ConversationState, MemoryStore, RecentTurn, StateError, StateStore};

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
    pub message_id: &'a str,
    /// The customer's text: read by the keyword net only, never logged or stored.
    pub text: &'a str,
    pub intent: &'a str,
    pub intent_score: f32,
    /// Top intent probability minus the second's.
    pub intent_margin: f32,
    /// Probability of `request_human` from the model.
    pub request_human: f32,
    pub negativity: f32,
    pub embedding: &'a [f32],
    pub channel: Channel,
    pub tier: Tier,
    pub bot_fallbacks: u32,
    pub bot_failed: bool,
    /// The customer accepted the human offered on an earlier turn.
    pub accepted_offer: bool,
    /// When the turn happens (seconds since the Unix epoch): queues' opening hours depend on it.
    pub unix_seconds: i64,
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
    /// Set when the decision was made on this message alone because conversation state was unavailable.
    pub degraded: bool,
    /// Set when the target queue is closed: what happens instead ("callback", "ticket", or a queue).
    pub fallback: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub version: String,
    /// `request_human` at or above this probability escalates (unless the keyword net sees a negation).
    pub request_human_threshold: f32,
    /// Intents that go straight to a person, each with its queue.
    pub high_risk_intents: Vec<HighRiskIntent>,
    pub high_risk_threshold: f32,
    /// A complaint carrying a legal, media or regulator threat escalates to this queue.
    pub threat_queue: String,
    /// VIPs who want to cancel escalate (retention).
    pub vip_cancel_escalates: bool,
    /// This turn's negativity at or above this offers a human.
    pub offer_negativity: f32,
    /// A turn at or above this negativity counts as negative.
    pub negative_turn: f32,
    /// Decayed average negativity (weight of the newest turn) and the level that offers a human.
    pub negativity_decay: f32,
    pub offer_negativity_avg: f32,
    /// Consecutive negative turns that offer a human.
    pub offer_consecutive_negative: u32,
    /// Rise of negativity over the last turns that offers a human.
    pub offer_negativity_rise: f32,
    /// Cosine similarity at or above which a turn with the same intent repeats an earlier one
    /// (e5 embeddings: paraphrases measure 0.91-0.98, unrelated messages up to ~0.90).
    pub repeat_similarity: f32,
    /// Bot fallbacks at or above this offer a human.
    pub offer_after_fallbacks: u32,
    /// Top intent probability below this, or top-2 margin below `low_margin`, is low confidence;
    /// `low_confidence_turns` such turns in a row offer a human.
    pub low_confidence: f32,
    pub low_margin: f32,
    pub low_confidence_turns: u32,
    /// Offers before the policy escalates instead of offering again.
    pub max_offers: u32,
    /// Voice escalates sooner: negativity thresholds drop by this much and one offer is the most.
    pub voice_threshold_drop: f32,
    pub default_queue: String,
    pub vip_queue: String,
    pub base_priority: i32,
    pub high_risk_priority: i32,
    pub vip_priority_boost: i32,
    /// Opening hours per queue; a queue not listed is always open.
    pub queues: Vec<QueueHours>,
}

/// When a queue is staffed, in its own time zone (a fixed UTC offset), and what to do outside.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueHours {
    pub name: String,
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// ISO weekdays the queue is open: 1 = Monday … 7 = Sunday.
    pub days: Vec<u8>,
    /// "HH:MM", local; `close` is exclusive.
    pub open: String,
    pub close: String,
    /// What the decision names when the queue is closed: "callback", "ticket" or another queue.
    pub fallback: String,
}

fn minute_of_day(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

impl QueueHours {
    /// Whether the queue is open at `unix_seconds`.
    pub fn is_open(&self, unix_seconds: i64) -> bool {
        let local = unix_seconds + self.utc_offset_minutes as i64 * 60;
        let day = local.div_euclid(86_400);
        let weekday = ((day + 3).rem_euclid(7) + 1) as u8; // 1970-01-01 was a Thursday (ISO 4)
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        let (Some(open), Some(close)) = (minute_of_day(&self.open), minute_of_day(&self.close))
        else {
            return false;
        };
        self.days.contains(&weekday) && open <= minute && minute < close
    }
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
            version: "builtin-2".into(),
            request_human_threshold: 0.5,
            high_risk_intents: vec![HighRiskIntent {
                intent: "account_security".into(),
                queue: "security".into(),
            }],
            high_risk_threshold: 0.6,
            threat_queue: "complaints".into(),
            vip_cancel_escalates: true,
            offer_negativity: 0.85,
            negative_turn: 0.6,
            negativity_decay: 0.5,
            offer_negativity_avg: 0.7,
            offer_consecutive_negative: 3,
            offer_negativity_rise: 0.5,
            repeat_similarity: 0.91,
            offer_after_fallbacks: 2,
            low_confidence: 0.4,
            low_margin: 0.1,
            low_confidence_turns: 2,
            max_offers: 2,
            voice_threshold_drop: 0.15,
            default_queue: "general".into(),
            vip_queue: "senior".into(),
            base_priority: 5,
            high_risk_priority: 7,
            vip_priority_boost: 2,
            queues: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy refers to intent {0:?}, which the model does not have (labels: {1})")]
    UnknownIntent(String, String),
    #[error("policy threshold {0} = {1} is outside [0, 1]")]
    Threshold(&'static str, f32),
    #[error("queue {0:?}: {1}")]
    Queue(String, String),
}

#[derive(Debug)]
pub struct Policy {
    config: PolicyConfig,
}

/// Intents the rules below name besides the configured high-risk ones.
const NAMED_INTENTS: &[&str] = &["request_human", "complaint", "cancel_service"];

impl Policy {
    pub fn new(config: PolicyConfig) -> Result<Self, PolicyError> {
        for (name, v) in [
            ("request_human_threshold", config.request_human_threshold),
            ("high_risk_threshold", config.high_risk_threshold),
            ("offer_negativity", config.offer_negativity),
            ("negative_turn", config.negative_turn),
            ("negativity_decay", config.negativity_decay),
            ("offer_negativity_avg", config.offer_negativity_avg),
            ("offer_negativity_rise", config.offer_negativity_rise),
            ("repeat_similarity", config.repeat_similarity),
            ("low_confidence", config.low_confidence),
            ("low_margin", config.low_margin),
            ("voice_threshold_drop", config.voice_threshold_drop),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(PolicyError::Threshold(name, v));
            }
        }
        for q in &config.queues {
            let bad = |why: &str| Err(PolicyError::Queue(q.name.clone(), why.into()));
            if minute_of_day(&q.open).is_none() || minute_of_day(&q.close).is_none() {
                return bad("open and close must be \"HH:MM\"");
            }
            if q.days.iter().any(|d| !(1..=7).contains(d)) {
                return bad("days are ISO weekdays 1 (Monday) to 7 (Sunday)");
            }
            if q.fallback.is_empty() {
                return bad("fallback must name what happens when the queue is closed");
            }
        }
        Ok(Policy { config })
    }

    pub fn version(&self) -> &str {
        &self.config.version
    }

    /// Every intent the policy names must exist in the model's labels.
    pub fn check_labels(&self, intents: &[String]) -> Result<(), PolicyError> {
        let named = NAMED_INTENTS.iter().copied().chain(
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

    /// Decide this turn with the conversation's state and record it there, atomically. When the store
    /// fails, the decision is made from this message alone and says so.
    pub fn route(&self, store: &dyn StateStore, conversation_id: &str, turn: &Turn) -> Decision {
        let mut d = self.route_in_state(store, conversation_id, turn);
        self.apply_hours(&mut d, turn.unix_seconds);
        d
    }

    /// A decision for a closed queue names the fallback and says why.
    fn apply_hours(&self, d: &mut Decision, unix_seconds: i64) {
        if d.action == Action::ContinueBot {
            return;
        }
        if let Some(q) = self.config.queues.iter().find(|q| q.name == d.queue) {
            if !q.is_open(unix_seconds) {
                d.fallback = q.fallback.clone();
                let detail = format!(
                    "queue {} is closed ({}-{}); fallback {}",
                    q.name, q.open, q.close, q.fallback
                );
                d.reasons.push(reason(
                    "after_hours",
                    &format!("queue:{}", q.name),
                    0.0,
                    1.0,
                    &detail,
                ));
            }
        }
    }

    fn route_in_state(
        &self,
        store: &dyn StateStore,
        conversation_id: &str,
        turn: &Turn,
    ) -> Decision {
        let mut decision = None;
        let stored = store.update(conversation_id, &mut |state| {
            let d = self.decide(turn, state);
            if !state.has_message(turn.message_id) {
                self.record(state, turn, &d);
            }
            decision = Some(d);
        });
        match (stored, decision) {
            (Ok(()), Some(d)) => d,
            (result, _) => {
                let mut d = self.decide(turn, &ConversationState::default());
                d.degraded = true;
                let detail = result.err().map(|e| e.to_string()).unwrap_or_default();
                d.reasons
                    .push(reason("state_unavailable", "state", 0.0, 0.0, &detail));
                d
            }
        }
    }

    /// Ordered rules: the first that fires decides; its reason comes first.
    pub fn decide(&self, turn: &Turn, state: &ConversationState) -> Decision {
        let c = &self.config;
        let voice = turn.channel == Channel::Voice;
        let drop = if voice { c.voice_threshold_drop } else { 0.0 };
        let max_offers = if voice { 1 } else { c.max_offers };
        let vip = turn.tier == Tier::Vip;
        let decision =
            |action: Action, queue: &str, priority: i32, reasons: Vec<Reason>| Decision {
                action,
                queue: if action == Action::ContinueBot {
                    String::new()
                } else if vip {
                    c.vip_queue.clone()
                } else {
                    queue.to_string()
                },
                priority: if action == Action::ContinueBot {
                    0
                } else if vip {
                    priority + c.vip_priority_boost
                } else {
                    priority
                },
                reasons,
                degraded: false,
                fallback: String::new(),
            };

        // 1. Explicit request for a person: the model, with the keyword net as safety net (it catches
        //    what the model misses) and as veto (a negated request is a refusal, whatever the model says).
        let keyword = signals::explicit_request(turn.text);
        let negated = matches!(keyword, KeywordHit::Negated(_));
        if turn.request_human >= c.request_human_threshold && !negated {
            let mut reasons = vec![reason(
                "explicit_request",
                "intent:request_human",
                turn.request_human as f64,
                c.request_human_threshold as f64,
                "customer asked for a person",
            )];
            if let KeywordHit::Request(kw) = keyword {
                reasons.push(reason(
                    "explicit_request",
                    &format!("keyword:{kw}"),
                    1.0,
                    1.0,
                    "keyword",
                ));
            }
            return decision(Action::Escalate, &c.default_queue, c.base_priority, reasons);
        }
        if let KeywordHit::Request(kw) = keyword {
            let r = reason(
                "explicit_request",
                &format!("keyword:{kw}"),
                1.0,
                1.0,
                "customer asked for a person",
            );
            return decision(Action::Escalate, &c.default_queue, c.base_priority, vec![r]);
        }
        // 2. The customer accepted an offer made earlier.
        if turn.accepted_offer && state.offers_made > 0 {
            let r = reason(
                "offer_accepted",
                "offers_made",
                state.offers_made as f64,
                1.0,
                "customer accepted the offer",
            );
            return decision(Action::Escalate, &c.default_queue, c.base_priority, vec![r]);
        }
        // 3. High-risk intents.
        if turn.intent_score >= c.high_risk_threshold {
            if let Some(h) = c.high_risk_intents.iter().find(|h| h.intent == turn.intent) {
                let r = self.intent_reason(
                    "high_risk_intent",
                    turn,
                    c.high_risk_threshold,
                    "high-risk intent",
                );
                return decision(Action::Escalate, &h.queue, c.high_risk_priority, vec![r]);
            }
            if turn.intent == "complaint" {
                if let Some(t) = signals::threat(turn.text) {
                    let r = reason(
                        "complaint_threat",
                        &format!("threat:{t}"),
                        turn.intent_score as f64,
                        c.high_risk_threshold as f64,
                        "complaint with a legal, media or regulator threat",
                    );
                    return decision(
                        Action::Escalate,
                        &c.threat_queue,
                        c.high_risk_priority,
                        vec![r],
                    );
                }
            }
            if turn.intent == "cancel_service" && vip && c.vip_cancel_escalates {
                let r = self.intent_reason(
                    "vip_cancel",
                    turn,
                    c.high_risk_threshold,
                    "VIP wants to cancel",
                );
                return decision(
                    Action::Escalate,
                    &c.default_queue,
                    c.high_risk_priority,
                    vec![r],
                );
            }
        }

        // 4. Signals that offer a human; after `max_offers` offers the next one escalates.
        let mut offers = self.offer_reasons(turn, state, drop);
        if offers.is_empty() {
            return decision(
                Action::ContinueBot,
                "",
                0,
                vec![reason(
                    "default",
                    "intent",
                    turn.intent_score as f64,
                    0.0,
                    "no escalation rule fired",
                )],
            );
        }
        if state.offers_made >= max_offers {
            offers.insert(
                0,
                reason(
                    "offer_ladder",
                    "offers_made",
                    state.offers_made as f64,
                    max_offers as f64,
                    "offered before; escalating",
                ),
            );
            return decision(
                Action::Escalate,
                &c.default_queue,
                c.base_priority + 1,
                offers,
            );
        }
        decision(
            Action::OfferHuman,
            &c.default_queue,
            c.base_priority,
            offers,
        )
    }

    fn intent_reason(&self, rule: &str, turn: &Turn, threshold: f32, detail: &str) -> Reason {
        reason(
            rule,
            &format!("intent:{}", turn.intent),
            turn.intent_score as f64,
            threshold as f64,
            detail,
        )
    }

    /// Every offer rule that fires on this turn, in rule order.
    fn offer_reasons(&self, turn: &Turn, state: &ConversationState, drop: f32) -> Vec<Reason> {
        let c = &self.config;
        let mut out = Vec::new();
        let neg = turn.negativity;
        if neg >= c.offer_negativity - drop {
            out.push(reason(
                "strong_negativity",
                "negativity",
                neg as f64,
                (c.offer_negativity - drop) as f64,
                "customer is strongly negative",
            ));
        }
        let avg = self.decayed(state, neg);
        if state.turns > 0 && avg >= c.offer_negativity_avg - drop {
            out.push(reason(
                "sustained_negativity",
                "negativity_avg",
                avg as f64,
                (c.offer_negativity_avg - drop) as f64,
                "negative over the conversation",
            ));
        }
        let (consecutive, low_streak) = self.streaks(state, turn, drop);
        if consecutive >= c.offer_consecutive_negative {
            out.push(reason(
                "consecutive_negative",
                "negative_turns",
                consecutive as f64,
                c.offer_consecutive_negative as f64,
                "negative turns in a row",
            ));
        }
        // The rise over the turn two back, so one calm message in between does not hide it.
        if let Some(earlier) = state.recent.len().checked_sub(2).map(|i| &state.recent[i]) {
            let rise = neg - earlier.negativity;
            if rise >= c.offer_negativity_rise {
                out.push(reason(
                    "worsening",
                    "negativity_rise",
                    rise as f64,
                    c.offer_negativity_rise as f64,
                    "sentiment is getting worse",
                ));
            }
        }
        let best = state
            .recent
            .iter()
            .filter(|t| t.intent == turn.intent)
            .filter(|t| turn.message_id.is_empty() || t.message_id != turn.message_id)
            .map(|t| signals::similarity(&t.embedding, turn.embedding))
            .fold(f32::MIN, f32::max);
        if best >= c.repeat_similarity {
            out.push(reason(
                "repeated_question",
                "similarity",
                best as f64,
                c.repeat_similarity as f64,
                "customer repeats an earlier question",
            ));
        }
        if turn.bot_failed || turn.bot_fallbacks >= c.offer_after_fallbacks {
            let detail = if turn.bot_failed {
                "bot could not answer"
            } else {
                "repeated bot fallbacks"
            };
            out.push(reason(
                "bot_failure",
                "bot_fallbacks",
                turn.bot_fallbacks as f64,
                c.offer_after_fallbacks as f64,
                detail,
            ));
        }
        if low_streak >= c.low_confidence_turns {
            out.push(reason(
                "low_confidence",
                "intent_score",
                turn.intent_score as f64,
                c.low_confidence as f64,
                "the model is unsure, turn after turn",
            ));
        }
        out
    }

    /// Negative turns and low-confidence turns in a row, counting this one.
    fn streaks(&self, state: &ConversationState, turn: &Turn, drop: f32) -> (u32, u32) {
        let c = &self.config;
        let negative = turn.negativity >= c.negative_turn - drop;
        let low = turn.intent_score < c.low_confidence || turn.intent_margin < c.low_margin;
        (
            if negative {
                state.consecutive_negative + 1
            } else {
                0
            },
            if low {
                state.low_confidence_streak + 1
            } else {
                0
            },
        )
    }

    fn decayed(&self, state: &ConversationState, neg: f32) -> f32 {
        if state.turns == 0 {
            neg
        } else {
            self.config.negativity_decay * neg
                + (1.0 - self.config.negativity_decay) * state.negativity_avg
        }
    }

    fn record(&self, state: &mut ConversationState, turn: &Turn, decision: &Decision) {
        state.negativity_avg = self.decayed(state, turn.negativity);
        (state.consecutive_negative, state.low_confidence_streak) = self.streaks(state, turn, 0.0);
        state.turns += 1;
        state.recent.push_back(RecentTurn {
            message_id: turn.message_id.to_string(),
            intent: turn.intent.to_string(),
            embedding: turn.embedding.to_vec(),
            negativity: turn.negativity,
        });
        while state.recent.len() > state::RECENT_TURNS {
            state.recent.pop_front();
        }
        match decision.action {
            Action::OfferHuman => state.offers_made += 1,
            Action::Escalate => state.escalated = true,
            Action::ContinueBot => {}
        }
    }
}

fn reason(rule: &str, signal: &str, value: f64, threshold: f64, detail: &str) -> Reason {
    Reason {
        rule_id: rule.into(),
        signal: signal.into(),
        value,
        threshold,
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn<'a>(
        text: &'a str,
        intent: &'a str,
        score: f32,
        negativity: f32,
        embedding: &'a [f32],
    ) -> Turn<'a> {
        Turn {
            message_id: "",
            text,
            intent,
            intent_score: score,
            intent_margin: score,
            request_human: if intent == "request_human" {
                score
            } else {
                0.0
            },
            negativity,
            embedding,
            channel: Channel::Web,
            tier: Tier::Standard,
            bot_fallbacks: 0,
            bot_failed: false,
            accepted_offer: false,
            unix_seconds: 0,
        }
    }

    const E1: [f32; 2] = [1.0, 0.0];
    const E2: [f32; 2] = [0.0, 1.0];

    #[test]
    fn explicit_requests_escalate_and_negated_ones_do_not() {
        let p = Policy::new(PolicyConfig::default()).unwrap();
        let s = ConversationState::default();
        assert_eq!(
            p.decide(&turn("转人工", "request_human", 0.9, 0.1, &E1), &s)
                .action,
            Action::Escalate
        );
        let d = p.decide(&turn("我要找真人", "other", 0.9, 0.1, &E1), &s);
        assert_eq!(
            (d.action, d.reasons[0].signal.as_str()),
            (Action::Escalate, "keyword:真人")
        );
        let d = p.decide(&turn("不用转人工了", "request_human", 0.8, 0.1, &E1), &s);
        assert_eq!(d.action, Action::ContinueBot);
    }

    #[test]
    fn high_risk_threats_and_vip_routing() {
        let p = Policy::new(PolicyConfig::default()).unwrap();
        let s = ConversationState::default();
        let d = p.decide(
            &turn("my account was hacked", "account_security", 0.8, 0.3, &E1),
            &s,
        );
        assert_eq!(
            (d.action, d.queue.as_str(), d.priority),
            (Action::Escalate, "security", 7)
        );
        let d = p.decide(&turn("我要去12315投诉你们", "complaint", 0.9, 0.5, &E1), &s);
        assert_eq!(
            (d.action, d.reasons[0].rule_id.as_str()),
            (Action::Escalate, "complaint_threat")
        );
        let mut t = turn("cancel my plan", "cancel_service", 0.9, 0.2, &E1);
        assert_eq!(p.decide(&t, &s).action, Action::ContinueBot);
        t.tier = Tier::Vip;
        let d = p.decide(&t, &s);
        assert_eq!(
            (d.action, d.queue.as_str(), d.priority),
            (Action::Escalate, "senior", 9)
        );
    }

    #[test]
    fn the_offer_ladder_escalates_after_max_offers_and_voice_sooner() {
        let p = Policy::new(PolicyConfig::default()).unwrap();
        let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
        let angry = turn("气死了", "complaint", 0.5, 0.95, &E1);
        let actions: Vec<_> = (0..3)
            .map(|_| p.route(&store, "c", &angry).action)
            .collect();
        assert_eq!(
            actions,
            [Action::OfferHuman, Action::OfferHuman, Action::Escalate]
        );
        let mut voice = angry.clone();
        voice.channel = Channel::Voice;
        let actions: Vec<_> = (0..2)
            .map(|_| p.route(&store, "v", &voice).action)
            .collect();
        assert_eq!(actions, [Action::OfferHuman, Action::Escalate]);
    }

    #[test]
    fn repeats_count_once_per_message_id() {
        let p = Policy::new(PolicyConfig::default()).unwrap();
        let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
        let mut first = turn("where is my order", "order_status", 0.9, 0.1, &E1);
        first.message_id = "m1";
        assert_eq!(p.route(&store, "c", &first).action, Action::ContinueBot);
        assert_eq!(
            p.route(&store, "c", &first).action,
            Action::ContinueBot,
            "same message re-sent"
        );
        let mut other = turn(
            "how do I reset my password",
            "account_security",
            0.3,
            0.1,
            &E2,
        );
        other.message_id = "m2";
        assert_eq!(p.route(&store, "c", &other).action, Action::ContinueBot);
        let mut again = turn("my order, where is it??", "order_status", 0.9, 0.1, &E1);
        again.message_id = "m3";
        let d = p.route(&store, "c", &again);
        assert_eq!(
            (d.action, d.reasons[0].rule_id.as_str()),
            (Action::OfferHuman, "repeated_question")
        );
    }

    #[test]
    fn closed_queues_name_their_fallback() {
        let hours = QueueHours {
            name: "general".into(),
            utc_offset_minutes: 8 * 60,
            days: vec![1, 2, 3, 4, 5],
            open: "09:00".into(),
            close: "21:00".into(),
            fallback: "callback".into(),
        };
        // 2026-11-24 is a Tuesday: 02:00 UTC is 10:00 in UTC+8 (open), 14:00 UTC is 22:00 (closed).
        let tuesday = 1_795_478_400; // 2026-11-24T00:00:00Z
        assert!(hours.is_open(tuesday + 2 * 3600));
        assert!(!hours.is_open(tuesday + 14 * 3600));
        assert!(!hours.is_open(tuesday + 4 * 86_400 + 2 * 3600), "Saturday");
        let p = Policy::new(PolicyConfig {
            queues: vec![hours],
            ..Default::default()
        })
        .unwrap();
        let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
        let mut t = turn("转人工", "request_human", 0.9, 0.1, &E1);
        t.unix_seconds = tuesday + 14 * 3600;
        let d = p.route(&store, "late", &t);
        assert_eq!(
            (d.action, d.fallback.as_str()),
            (Action::Escalate, "callback")
        );
        assert_eq!(d.reasons.last().unwrap().rule_id, "after_hours");
        t.unix_seconds = tuesday + 2 * 3600;
        assert_eq!(p.route(&store, "day", &t).fallback, "");
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
