//! Escalation policy: turns one classified customer message plus what the conversation so far left
//! in `state` into a decision with reasons. Knows nothing about gRPC or the model runtime.
//!
//! The rules are data (`config/policy.toml`): ordered `when → action, queue, priority` entries over
//! the named signals of `catalog`. The first rule whose condition holds decides; the offer ladder,
//! tiers, channels, queue hours and reply windows then shape the decision.

pub mod catalog;
pub mod config;
pub mod customer;
pub mod expr;
pub mod file;
mod hours;
mod lifecycle;
pub mod phrases;
mod redis_store;
mod redis_target;
pub mod rules;
pub mod state;
pub mod vocab;

use std::collections::HashMap;
use std::ops::Range;

pub use config::{PolicyConfig, QueueHours, RuleAction};
pub use file::SharedPolicy;
use phrases::Phrases;
pub use redis_store::RedisStore;
pub use state::{ConversationState, MemoryStore, RecentTurn, Repair, StateError, StateStore};
pub use vocab::{Action, Channel, Holder, Tier};

pub use catalog::Snapshot;
use catalog::Values;
use config::{ChannelSettings, TierSettings};
use rules::Rule;

/// What the policy knows about this turn.
#[derive(Debug, Clone, Default)]
pub struct Turn<'a> {
    pub message_id: &'a str,
    /// The id this turn's decision gets (a retry answers with the first one's instead).
    pub decision_id: &'a str,
    /// The customer's text: read by the keyword nets only, never logged or stored.
    pub text: &'a str,
    pub intent: &'a str,
    pub intent_score: f32,
    /// Top intent probability minus the second's.
    pub intent_margin: f32,
    /// Probability of `request_human` from the model.
    pub request_human: f32,
    pub negativity: f32,
    /// Probability of the top upset grade (the negativity for a model without the head).
    pub upset: f32,
    pub embedding: &'a [f32],
    pub channel: Channel,
    pub tier: Tier,
    /// Customer attributes from the caller (`attr.NAME` in rules).
    pub attributes: Option<&'a HashMap<String, String>>,
    pub bot_fallbacks: u32,
    pub bot_failed: bool,
    /// The customer accepted the human offered on an earlier turn.
    pub accepted_offer: bool,
    /// The customer declined the human offered on an earlier turn.
    pub declined_offer: bool,
    /// The caller hands the conversation back to the bot with this turn.
    pub handed_back: bool,
    /// Now (seconds since the Unix epoch): queues' opening hours depend on it.
    pub unix_seconds: i64,
    /// When the customer sent the message; reply windows run from it.
    pub sent_unix_seconds: i64,
    /// The customer's other conversations, when the caller named the customer.
    pub history: customer::History,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    pub rule_id: String,
    pub signal: String,
    pub value: f64,
    pub threshold: f64,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub decision_id: String,
    pub action: Action,
    pub queue: String,
    pub priority: i32,
    pub reasons: Vec<Reason>,
    /// Set when the decision was made on this message alone because conversation state was unavailable.
    pub degraded: bool,
    /// Set when the target queue is closed: what happens instead ("callback", "ticket", or a queue).
    pub fallback: String,
    /// Priority was raised because the channel's reply window closes soon.
    pub reply_window_raised: bool,
    /// Whether this is a message decided before (`retry` in the response).
    pub retry: Retry,
    /// What the rules read, for the decision log and replay.
    pub signals: Snapshot,
}

/// A message id seen before in the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retry {
    /// A new message (or no message id).
    #[default]
    No,
    /// Its first answer again, nothing counted.
    Answered,
    /// Counted, but its answer is no longer kept: decided again without changing the state.
    Expired,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("rule {id:?}: {message}")]
    Rule {
        id: String,
        span: Option<Range<usize>>,
        message: String,
    },
    #[error(
        "rule {rule:?} names intent {intent:?}, which the model does not have (labels: {labels})"
    )]
    UnknownIntent {
        intent: String,
        rule: String,
        labels: String,
        span: Range<usize>,
    },
    #[error("{key}: {message}")]
    Setting { key: String, message: String },
    #[error("{what}: {message}")]
    Spanned {
        what: String,
        span: Range<usize>,
        message: String,
    },
}

impl PolicyError {
    /// Where in the policy text the problem is, when known.
    pub fn span(&self) -> Option<Range<usize>> {
        match self {
            PolicyError::Rule { span, .. } => span.clone(),
            PolicyError::UnknownIntent { span, .. } | PolicyError::Spanned { span, .. } => {
                Some(span.clone())
            }
            PolicyError::Setting { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    config: PolicyConfig,
    phrases: Phrases,
    rules: Vec<Rule>,
    tiers: HashMap<&'static str, TierSettings>,
    channels: HashMap<&'static str, ChannelSettings>,
}

impl Policy {
    pub fn new(mut config: PolicyConfig) -> Result<Self, PolicyError> {
        let s = &config.signals;
        for (name, v) in [
            ("signals.negative_turn", s.negative_turn),
            ("signals.negativity_decay", s.negativity_decay),
            ("signals.low_confidence", s.low_confidence),
            ("signals.low_margin", s.low_margin),
        ] {
            if !(0.0..=1.0).contains(&v) {
                let message = format!("{v} is outside [0, 1]");
                return Err(PolicyError::Setting {
                    key: name.into(),
                    message,
                });
            }
        }
        let spanned = |what: String, span, message: &str| PolicyError::Spanned {
            what,
            span,
            message: message.into(),
        };
        let mut tiers = HashMap::new();
        for (name, t) in &config.tiers {
            let Some(tier) = [Tier::Standard, Tier::Vip]
                .into_iter()
                .find(|t| t.as_str() == name.get_ref())
            else {
                let what = format!("tiers.{}", name.get_ref());
                return Err(spanned(what, name.span(), "tiers are standard or vip"));
            };
            tiers.insert(tier.as_str(), t.clone());
        }
        let mut channels = HashMap::new();
        for (name, c) in &config.channels {
            let what = format!("channels.{}", name.get_ref());
            let Some(channel) = Channel::ALL.iter().find(|c| c.as_str() == name.get_ref()) else {
                let known: Vec<_> = Channel::ALL.iter().map(|c| c.as_str()).collect();
                let msg = format!("unknown channel; known: {}", known.join(", "));
                return Err(spanned(what, name.span(), &msg));
            };
            if c.reply_window_hours == Some(0) {
                return Err(spanned(what, name.span(), "reply_window_hours must be > 0"));
            }
            if c.reply_window_hours.is_none() && c.window_priority_boost != 0 {
                let msg = "window_priority_boost needs reply_window_hours";
                return Err(spanned(what, name.span(), msg));
            }
            channels.insert(channel.as_str(), c.clone());
        }
        for q in &config.queues {
            let fail =
                |why: &str| spanned(format!("queue {:?}", q.name.get_ref()), q.name.span(), why);
            if hours::minute_of_day(&q.open).is_none() || hours::minute_of_day(&q.close).is_none() {
                return Err(fail("open and close must be \"HH:MM\""));
            }
            if q.days.iter().any(|d| !(1..=7).contains(d)) {
                return Err(fail("days are ISO weekdays 1 (Monday) to 7 (Sunday)"));
            }
            if q.fallback.is_empty() {
                return Err(fail(
                    "fallback must name what happens when the queue is closed",
                ));
            }
        }
        for q in &mut config.queues {
            if let Err(why) = q.resolve() {
                return Err(spanned(
                    format!("queue {:?}", q.name.get_ref()),
                    q.name.span(),
                    &why,
                ));
            }
        }
        let l = &config.lifecycle;
        if l.decline_quiet_turns > state::MAX_QUIET_TURNS || l.waiting_raise_every == 0 {
            let message = format!(
                "decline_quiet_turns is at most {}, waiting_raise_every at least 1",
                state::MAX_QUIET_TURNS
            );
            return Err(PolicyError::Setting {
                key: "lifecycle".into(),
                message,
            });
        }
        let c = &config.customers;
        if c.unhappy_csat > 5 || (c.unhappy_csat > 0) != c.unhappy_queue.is_some() {
            return Err(PolicyError::Setting {
                key: "customers".into(),
                message: "unhappy_csat (1 to 5) and unhappy_queue go together".into(),
            });
        }
        let phrases =
            Phrases::compile(config.keywords.clone()).map_err(|e| PolicyError::Setting {
                key: "keywords".into(),
                message: e.to_string(),
            })?;
        let rules = rules::compile(&config.rules)?;
        Ok(Policy {
            config,
            phrases,
            rules,
            tiers,
            channels,
        })
    }

    pub fn builtin() -> Policy {
        Policy::new(PolicyConfig::builtin()).expect("the built-in policy is valid (unit test)")
    }

    pub fn version(&self) -> &str {
        &self.config.version
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every numeric threshold the rules compare a signal with, rule by rule.
    pub fn thresholds(&self) -> Vec<Threshold> {
        let mut out = Vec::new();
        for (rule, r) in self.rules.iter().enumerate() {
            for (index, (signal, op, value, scope)) in r.when.comparisons().into_iter().enumerate()
            {
                out.push(Threshold {
                    rule,
                    rule_id: r.id.clone(),
                    index,
                    signal,
                    op,
                    value,
                    scope,
                });
            }
        }
        out
    }

    /// This policy with one threshold moved (for sweeps: what would a different value decide?).
    pub fn with_threshold(&self, t: &Threshold, value: f64) -> Policy {
        let mut p = self.clone();
        if let Some(rule) = p.rules.get_mut(t.rule) {
            rule.when.set_threshold(t.index, value);
        }
        p
    }

    /// Some rule reads a customer attribute (`attr.NAME`).
    pub fn reads_attributes(&self) -> bool {
        self.rules.iter().any(|r| r.when.reads_attributes())
    }

    /// Staffing hints per queue, for the capacity gauge.
    pub fn queue_capacities(&self) -> impl Iterator<Item = (&str, u32)> {
        self.config
            .queues
            .iter()
            .filter_map(|q| Some((q.name.get_ref().as_str(), q.capacity?)))
    }

    /// Every intent the rules name must exist in the model's labels.
    pub fn check_labels(&self, intents: &[String]) -> Result<(), PolicyError> {
        for (intent, rule, span) in rules::named_intents(&self.rules, &self.config.rules) {
            if !intents.contains(&intent) {
                return Err(PolicyError::UnknownIntent {
                    intent,
                    rule: rule.into(),
                    labels: intents.join(", "),
                    span,
                });
            }
        }
        Ok(())
    }

    /// Decide this turn with the conversation's state and record it there, atomically. When the store
    /// fails, or is slower than `deadline`, the decision is made from this message alone and says so.
    pub async fn route(
        &self,
        store: &dyn StateStore,
        conversation_id: &str,
        turn: &Turn<'_>,
        deadline: Option<std::time::Instant>,
    ) -> Decision {
        let mut decision = None;
        let stored = store
            .update(
                conversation_id,
                &mut |state| {
                    decision = Some(self.decide_in_state(turn, state));
                },
                deadline,
            )
            .await;
        self.finish(turn, stored, decision)
    }

    /// `route` with the in-process store, without a future (tests, benchmarks).
    pub fn route_in_memory(
        &self,
        store: &MemoryStore,
        conversation_id: &str,
        turn: &Turn<'_>,
    ) -> Decision {
        let mut decision = None;
        let stored = store.update_now(conversation_id, &mut |state| {
            decision = Some(self.decide_in_state(turn, state));
        });
        self.finish(turn, stored, decision)
    }

    /// The decision inside the store's update: a retry gets its first answer and changes nothing;
    /// otherwise read the state, say if the store had to repair it, and record this turn.
    fn decide_in_state(&self, turn: &Turn, state: &mut ConversationState) -> Decision {
        if let Some(answer) = state.answer(turn.message_id) {
            return answer.decision();
        }
        if state.has_message(turn.message_id) {
            // Counted, but its answer is gone: decide it again without counting it twice.
            let mut d = self.decide(turn, state);
            d.retry = Retry::Expired;
            let detail =
                "a retry of a message whose answer is no longer kept: decided again, not counted";
            d.reasons
                .push(reason("retry_expired", "message_id", 0.0, 0.0, detail));
            self.shape(turn, &mut d);
            return d;
        }
        if turn.handed_back {
            state.hand_back();
        }
        let mut v = self.values(turn, state);
        let mut d = self.decide_unrecorded(&v);
        if let Some(repair) = state.repair {
            let detail = match repair {
                Repair::Unreadable => {
                    "stored state was unreadable: the conversation started afresh"
                }
                Repair::Clamped => "stored state was out of range: its values were clamped",
                Repair::Oversized => {
                    "stored state was larger than any state is: reset unread, the conversation started afresh"
                }
                Repair::WrongType => {
                    "stored state was not a value (another kind of key): reset, the conversation started afresh"
                }
            };
            d.reasons
                .push(reason("state_reset", "state", 0.0, 0.0, detail));
        }
        d.decision_id = turn.decision_id.to_string();
        // A waiting conversation keeps the priority the rules gave it, before hours and windows.
        let rules_priority = d.priority;
        self.shape(turn, &mut d);
        self.record(state, turn, &v, &d, rules_priority);
        v.s.had_attributes = v.attributes.is_some_and(|a| !a.is_empty());
        d.signals = std::mem::take(&mut v.s);
        d
    }

    /// Opening hours and reply windows on a decision, or a decision from the message alone when
    /// the store failed.
    fn finish(
        &self,
        turn: &Turn,
        stored: Result<(), StateError>,
        decision: Option<Decision>,
    ) -> Decision {
        match (stored, decision) {
            (Ok(()), Some(d)) => d,
            (result, _) => {
                let mut d = self.decide(turn, &ConversationState::default());
                d.decision_id = turn.decision_id.to_string();
                d.degraded = true;
                let detail = result.err().map(|e| e.to_string()).unwrap_or_default();
                d.reasons
                    .push(reason("state_unavailable", "state", 0.0, 0.0, &detail));
                self.shape(turn, &mut d);
                d
            }
        }
    }

    /// Opening hours and reply windows: they depend on the clock and the channel, not the rules.
    fn shape(&self, turn: &Turn, d: &mut Decision) {
        if d.action != Action::ContinueBot {
            let opens = hours::apply(&self.config.queues, d, turn.unix_seconds);
            if let Some(c) = self.channels.get(turn.channel.as_str()) {
                hours::apply_reply_window(c, turn, opens, d);
            }
        }
    }

    /// Decide a logged turn again from its signals, at the times it was decided: what `route` would
    /// have answered under this policy (multi-turn signals as logged). `degraded` turns were decided
    /// without conversation state and stay so.
    pub fn replay(&self, signals: &Snapshot, at: ReplayClock, degraded: bool) -> Decision {
        let mut d = self.decide_values(&signals.values());
        if degraded {
            d.degraded = true;
        }
        let turn = Turn {
            channel: Channel::parse(&signals.channel).unwrap_or_default(),
            unix_seconds: at.unix_seconds,
            sent_unix_seconds: at.sent_unix_seconds,
            ..Default::default()
        };
        self.shape(&turn, &mut d);
        d
    }

    /// Every signal's value for this turn.
    pub fn values<'a>(&self, turn: &Turn<'a>, state: &ConversationState) -> Values<'a> {
        let read = self.phrases.read(turn.text);
        let sig = &self.config.signals;
        let negative = turn.negativity >= sig.negative_turn;
        let unsure = read.vague
            || turn.intent_score < sig.low_confidence
            || turn.intent_margin < sig.low_margin;
        // Small talk is never unsure: "ok" has no intent to be sure of.
        let low_confidence_turns = match (read.small_talk, unsure) {
            (true, _) | (false, false) => 0,
            (false, true) => state.low_confidence_streak + 1,
        };
        // The rise over the turn two back, so one calm message in between does not hide it.
        let negativity_rise = state
            .recent
            .len()
            .checked_sub(2)
            .map_or(0.0, |i| turn.negativity - state.recent[i].negativity);
        let seen = |id: &u32| state.recent.iter().any(|t| t.info.contains(id));
        let new_info = read.info.iter().any(|id| !seen(id));
        // A repeat is a substantive question asked again: small talk, and a turn that brings an
        // order number or a date the conversation has not seen, repeat nothing.
        let similarity = if read.small_talk || new_info {
            -1.0
        } else {
            state
                .recent
                .iter()
                .filter(|t| !t.small_talk && t.intent == turn.intent)
                .filter(|t| turn.message_id.is_empty() || t.message_id != turn.message_id)
                .map(|t| t.embedding.dot(turn.embedding))
                .fold(-1.0, f32::max)
                // int8 embeddings can put a cosine a hair past 1 (1.0004): it is at most 1.
                .clamp(-1.0, 1.0)
        };
        let holding = state.holder == Holder::Person;
        Values {
            s: Snapshot {
                request_human: turn.request_human,
                keyword: read.keyword,
                keyword_negated: read.keyword_negated,
                other_sense: read.other_sense,
                person_word: read.person_word,
                intent: turn.intent.to_string(),
                intent_score: turn.intent_score,
                intent_margin: turn.intent_margin,
                threat: read.threat,
                fraud_cue: read.fraud_cue,
                about_order: read.about_order,
                negativity: turn.negativity,
                negativity_avg: self.decayed(state, turn.negativity),
                negative_turns: if negative {
                    state.consecutive_negative + 1
                } else {
                    0
                },
                negativity_rise,
                upset: turn.upset,
                upset_cues: read.upset_cues,
                hedged: read.hedged,
                small_talk: read.small_talk,
                vague: read.vague,
                new_info,
                repeat_cue: read.repeat_cue,
                similarity,
                bot_fallbacks: turn.bot_fallbacks,
                bot_failed: turn.bot_failed,
                low_confidence_turns,
                accepted_offer: turn.accepted_offer,
                declined_offer: turn.declined_offer,
                handed_back: turn.handed_back,
                offers_made: state.offers_made,
                offers_declined: state.offers_declined + u32::from(turn.declined_offer),
                offer_quiet: state.offer_quiet,
                holder: state.holder.as_str().to_string(),
                waiting_turns: if holding { state.waiting_turns + 1 } else { 0 },
                held_queue: if holding {
                    state.held_queue.clone()
                } else {
                    String::new()
                },
                held_priority: if holding { state.held_priority } else { 0 },
                escalated: false,
                escalations: state.escalations,
                turns: state.turns,
                channel: turn.channel.as_str().to_string(),
                tier: turn.tier.as_str().to_string(),
                known_customer: turn.history.known,
                contacts_7d: turn.history.contacts_7d,
                same_intent_contacts_3d: turn.history.same_intent_contacts_3d,
                same_intent_contacts_7d: turn.history.same_intent_contacts_7d,
                escalations_30d: turn.history.escalations_30d,
                last_csat: turn.history.last_csat,
                channel_switch: turn.history.channel_switch,
                had_attributes: false,
            },
            attributes: turn.attributes,
            info: read.info,
        }
    }

    /// The first rule that fires decides; its reasons come first.
    pub fn decide(&self, turn: &Turn, state: &ConversationState) -> Decision {
        self.decide_values(&self.values(turn, state))
    }

    /// `decide` on signal values already computed (a live turn, or a logged one being replayed).
    pub fn decide_values(&self, v: &Values) -> Decision {
        let mut d = self.decide_unrecorded(v);
        d.signals = v.snapshot();
        d
    }

    /// The rules, then the lifecycle, without the snapshot of what they read.
    fn decide_unrecorded(&self, v: &Values) -> Decision {
        let mut d = self.decide_rules(v);
        lifecycle::while_held(&self.config.lifecycle, v, &mut d);
        d
    }

    fn decide_rules(&self, v: &Values) -> Decision {
        let Some(first) = self.rules.iter().position(|r| r.fires(v)) else {
            let r = reason(
                "default",
                "intent_score",
                v.intent_score as f64,
                0.0,
                "no escalation rule fired",
            );
            return continue_bot(vec![r]);
        };
        let rule = &self.rules[first];
        let mut reasons = rule_reasons(rule, v);
        let mut action = Action::from(rule.action);
        if action == Action::OfferHuman {
            if let Some(held) = lifecycle::offer_held_back(v) {
                reasons.insert(0, held);
                return continue_bot(reasons);
            }
        }
        let mut priority = rule.priority.unwrap_or(self.config.base_priority);
        let channel = self.channels.get(v.channel.as_str());
        if action == Action::OfferHuman {
            // Everything else that would offer a person explains the offer too.
            for later in &self.rules[first + 1..] {
                if later.action == RuleAction::OfferHuman && later.fires(v) {
                    reasons.extend(rule_reasons(later, v));
                }
            }
            let ladder = &self.config.ladder;
            let max_offers = channel
                .and_then(|c| c.max_offers)
                .unwrap_or(ladder.max_offers);
            // Declined offers do not push a customer up the ladder.
            let open_offers = v.offers_made.saturating_sub(v.offers_declined);
            if open_offers >= max_offers {
                action = Action::Escalate;
                priority += ladder.escalate_priority_boost;
                let r = reason(
                    "offer_ladder",
                    "offers_made",
                    open_offers as f64,
                    max_offers as f64,
                    "offered before; escalating",
                );
                reasons.insert(0, r);
            }
        }
        if action == Action::ContinueBot {
            return continue_bot(reasons);
        }
        let tier = self.tiers.get(v.tier.as_str());
        let customers = &self.config.customers;
        let unhappy = (1..=customers.unhappy_csat).contains(&v.last_csat);
        let queue = rule
            .queue
            .as_ref()
            .or(customers.unhappy_queue.as_ref().filter(|_| unhappy))
            .or(tier.and_then(|t| t.queue.as_ref()))
            .or(channel.and_then(|c| c.queue.as_ref()))
            .unwrap_or(&self.config.default_queue);
        priority += tier.map_or(0, |t| t.priority_boost) + channel.map_or(0, |c| c.priority_boost);
        Decision {
            decision_id: String::new(),
            action,
            queue: queue.clone(),
            priority,
            reasons,
            degraded: false,
            fallback: String::new(),
            reply_window_raised: false,
            retry: Retry::No,
            signals: Snapshot::default(),
        }
    }

    fn decayed(&self, state: &ConversationState, neg: f32) -> f32 {
        let decay = self.config.signals.negativity_decay;
        if state.turns == 0 {
            neg
        } else {
            decay * neg + (1.0 - decay) * state.negativity_avg
        }
    }

    /// This turn into the conversation's state, from the values the decision read.
    fn record(
        &self,
        state: &mut ConversationState,
        turn: &Turn,
        v: &Values,
        d: &Decision,
        rules_priority: i32,
    ) {
        state.negativity_avg = v.negativity_avg;
        state.consecutive_negative = v.negative_turns;
        if !v.small_talk {
            state.low_confidence_streak = v.low_confidence_turns;
        }
        state.turns += 1;
        state.recent.push_back(RecentTurn {
            message_id: turn.message_id.to_string(),
            intent: turn.intent.to_string(),
            embedding: state::CompactEmbedding::new(turn.embedding),
            negativity: turn.negativity,
            small_talk: v.small_talk,
            info: v.info.clone(),
        });
        while state.recent.len() > state::RECENT_TURNS {
            state.recent.pop_front();
        }
        lifecycle::advance(&self.config.lifecycle, state, v, d, rules_priority);
        if !turn.message_id.is_empty() {
            state
                .answers
                .push_back(state::Answer::of(turn.message_id, d));
            while state.answers.len() > state::ANSWERS_KEPT {
                state.answers.pop_front();
            }
        }
    }
}

fn continue_bot(reasons: Vec<Reason>) -> Decision {
    Decision {
        decision_id: String::new(),
        retry: Retry::No,
        action: Action::ContinueBot,
        queue: String::new(),
        priority: 0,
        reasons,
        degraded: false,
        fallback: String::new(),
        reply_window_raised: false,
        signals: Snapshot::default(),
    }
}

/// One comparison of a rule's condition with a number: `signal op value`.
#[derive(Debug, Clone)]
pub struct Threshold {
    pub rule: usize,
    pub rule_id: String,
    /// Which comparison of the rule's condition.
    pub index: usize,
    pub signal: catalog::Signal,
    pub op: expr::Op,
    pub value: f64,
    /// Text conditions the comparison is ANDed with (`channel == 'voice'`), as the policy writes them.
    pub scope: Vec<String>,
}

impl Threshold {
    /// A guard rather than a knob: an equality, or a count compared with 0 or 1 ("any at all",
    /// `turns >= 1`, `offers_made == 0`). Moving it changes what the rule is about, not how strict
    /// it is, so a sweep of it answers no question anyone asks.
    pub fn is_guard(&self) -> bool {
        use expr::Op;
        match (self.signal.kind(), self.op) {
            (_, Op::Eq | Op::Ne) => true,
            (catalog::Kind::Count, _) => self.value <= 1.0,
            (catalog::Kind::Flag | catalog::Kind::Text, _) => true,
            (catalog::Kind::Number { .. }, _) => false,
        }
    }

    /// The comparison as the policy writes it, with its scope: `negativity >= 0.8 (when channel == 'voice')`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {} {}", self.signal.name(), self.op.as_str(), self.value);
        if !self.scope.is_empty() {
            s.push_str(&format!(" (when {})", self.scope.join(" and ")));
        }
        s
    }
}

/// The clock of a logged turn: when it was decided and when the customer sent it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayClock {
    pub unix_seconds: i64,
    pub sent_unix_seconds: i64,
}

/// One reason per fact the rule's condition relied on (at least one, for `always`).
fn rule_reasons(rule: &Rule, v: &Values) -> Vec<Reason> {
    let facts = rule.facts(v);
    if facts.is_empty() {
        return vec![reason(&rule.id, "always", 1.0, 1.0, &rule.detail)];
    }
    facts
        .into_iter()
        .map(|f| Reason {
            rule_id: rule.id.clone(),
            signal: f.signal,
            value: f.value,
            threshold: f.threshold,
            detail: rule.detail.clone(),
        })
        .collect()
}

pub fn reason(rule: &str, signal: &str, value: f64, threshold: f64, detail: &str) -> Reason {
    Reason {
        rule_id: rule.into(),
        signal: signal.into(),
        value,
        threshold,
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests;
