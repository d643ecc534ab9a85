//! The named signals a policy rule can read, what kind of value each is, and their values for one
//! turn. Rule conditions are checked against this catalogue when the policy is loaded, so a typo in
//! a signal name is an error with a line number, not a rule that silently never fires.
//!
//! A signal is one row of `signals!` (name, kind, how to read it from a `Snapshot`, what it means)
//! and, when it needs its own value, one field of `Snapshot`. Nothing else lists signals.

use std::collections::HashMap;
use std::ops::Deref;

/// What values a signal takes; conditions are type-checked against it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// A number within [min, max].
    Number { min: f64, max: f64 },
    /// A whole number ≥ 0.
    Count,
    /// True or false: used bare (`threat`) or negated (`not threat`).
    Flag,
    /// A word: compared with `==`, `!=`, `in [...]`.
    Text,
}

/// A signal's value in one turn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Numbers, counts, and flags as 0 or 1.
    Number(f64),
    Text(&'a str),
}

fn flag(b: bool) -> Value<'static> {
    Value::Number(if b { 1.0 } else { 0.0 })
}

fn num(x: impl Into<f64>) -> Value<'static> {
    Value::Number(x.into())
}

macro_rules! signals {
    ($($variant:ident $name:literal $kind:expr, $read:expr, $doc:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Signal { $($variant),* }

        impl Signal {
            pub const ALL: &'static [Signal] = &[$(Signal::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Signal::$variant => $name),* }
            }

            pub fn kind(self) -> Kind {
                match self { $(Signal::$variant => $kind),* }
            }

            /// One line on what the signal means, for `handoff signals`.
            pub fn doc(self) -> &'static str {
                match self { $(Signal::$variant => $doc),* }
            }

            pub fn from_name(name: &str) -> Option<Signal> {
                match name { $($name => Some(Signal::$variant),)* _ => None }
            }

            /// This signal's value in `s`.
            pub fn read(self, s: &Snapshot) -> Value<'_> {
                match self {
                    $(Signal::$variant => {
                        let read: fn(&Snapshot) -> Value<'_> = $read;
                        read(s)
                    })*
                }
            }
        }
    };
}

const UNIT: Kind = Kind::Number { min: 0.0, max: 1.0 };
const SIGNED_UNIT: Kind = Kind::Number {
    min: -1.0,
    max: 1.0,
};
/// Priorities are whole numbers, possibly negative.
const PRIORITY: Kind = Kind::Number {
    min: -1000.0,
    max: 1000.0,
};

signals! {
    RequestHuman "request_human" UNIT, |s| num(s.request_human),
        "model probability that the customer asks for a person";
    KeywordRequest "keyword_request" Kind::Flag, |s| flag(s.keyword.is_some() && !s.keyword_negated),
        "the keyword net ([keywords]) reads a request for a person (转人工, talk to an agent …)";
    KeywordNegated "keyword_negated" Kind::Flag, |s| flag(s.keyword_negated),
        "the keyword net reads a negated request (不用转人工, I don't need a human …)";
    OtherSense "other_sense" Kind::Flag, |s| flag(s.other_sense.is_some()),
        "a person word in another sense (delivery agent, human error, 人工智能 …) and no request";
    PersonWord "person_word" Kind::Flag, |s| flag(s.person_word),
        "a word for a person (agent, someone, 人工, 客服 …) outside another sense, asked for or not";
    Intent "intent" Kind::Text, |s| Value::Text(&s.intent),
        "top intent label of this turn (one of the model's labels)";
    IntentScore "intent_score" UNIT, |s| num(s.intent_score), "probability of the top intent";
    IntentMargin "intent_margin" UNIT, |s| num(s.intent_margin),
        "top intent probability minus the second's";
    Threat "threat" Kind::Flag, |s| flag(s.threat.is_some()),
        "the message carries a legal, media or regulator threat (律师, 12315, lawyer, sue …)";
    FraudCue "fraud_cue" Kind::Flag, |s| flag(s.fraud_cue.is_some()),
        "the text says a payment, account or loan was not the customer's (never made, not me, 盗刷 …)";
    AboutOrder "about_order" Kind::Flag, |s| flag(s.about_order),
        "the text names an order, item or booking (order 44120, 订单, reservation …)";
    Negativity "negativity" UNIT, |s| num(s.negativity), "probability that this turn is negative";
    NegativityAvg "negativity_avg" UNIT, |s| num(s.negativity_avg),
        "decayed average negativity over the conversation, this turn included";
    NegativeTurns "negative_turns" Kind::Count, |s| num(s.negative_turns),
        "negative turns in a row, this one included ([signals] negative_turn)";
    NegativityRise "negativity_rise" SIGNED_UNIT, |s| num(s.negativity_rise),
        "this turn's negativity minus the turn two back (0 before then)";
    Upset "upset" UNIT, |s| num(s.upset),
        "probability that the customer is upset (the model's graded head; a model without it gives its negativity)";
    UpsetCues "upset_cues" Kind::Count, |s| num(s.upset_cues),
        "anger cues in the text: !!, ??, 😡, words in capitals, \"third time\", 无语/服了/离谱 …";
    Hedged "hedged" Kind::Flag, |s| flag(s.hedged),
        "the text softens itself (a bit, kinda, 一般吧, 有点 …)";
    Vague "vague" Kind::Flag, |s| flag(s.vague),
        "not small talk, yet only fillers (就是那个嘛, the the thing with my uh): counts as a low-confidence turn";
    SmallTalk "small_talk" Kind::Flag, |s| flag(s.small_talk),
        "greeting, thanks, acknowledgement, \"are you there\", bare punctuation or emoji";
    NewInfo "new_info" Kind::Flag, |s| flag(s.new_info),
        "the turn adds an order number, tracking id, date, email or phone not seen in recent turns";
    RepeatCue "repeat_cue" Kind::Flag, |s| flag(s.repeat_cue),
        "the customer says they are asking again (I already asked, 我问的是, 说了几遍 …)";
    Similarity "similarity" SIGNED_UNIT, |s| num(s.similarity),
        "highest cosine similarity to a recent substantive turn with the same intent (-1 if none, or if this turn is small talk or adds information)";
    BotFallbacks "bot_fallbacks" Kind::Count, |s| num(s.bot_fallbacks),
        "bot fallbacks so far in the conversation, as the caller reports";
    BotFailed "bot_failed" Kind::Flag, |s| flag(s.bot_failed),
        "the caller says the bot could not answer the previous message";
    LowConfidenceTurns "low_confidence_turns" Kind::Count, |s| num(s.low_confidence_turns),
        "low-confidence turns in a row, this one included ([signals] low_confidence, low_margin; small talk does not count)";
    AcceptedOffer "accepted_offer" Kind::Flag, |s| flag(s.accepted_offer),
        "the customer accepted a person offered earlier";
    DeclinedOffer "declined_offer" Kind::Flag, |s| flag(s.declined_offer),
        "the customer declines the person offered earlier (this turn)";
    HandedBack "handed_back" Kind::Flag, |s| flag(s.handed_back),
        "the caller hands the conversation back to the bot with this turn";
    OffersMade "offers_made" Kind::Count, |s| num(s.offers_made),
        "times a person was offered since the bot last took over";
    OffersDeclined "offers_declined" Kind::Count, |s| num(s.offers_declined),
        "offers the customer declined since the bot last took over";
    OfferQuiet "offer_quiet" Kind::Count, |s| num(s.offer_quiet),
        "turns left in which offers are held back after a declined offer ([lifecycle] decline_quiet_turns)";
    Holder "holder" Kind::Text, |s| Value::Text(&s.holder),
        "who holds the conversation before this turn: bot, offered (a person was offered) or person";
    WaitingTurns "waiting_turns" Kind::Count, |s| num(s.waiting_turns),
        "customer turns since the escalation while the conversation is with a person";
    HeldQueue "held_queue" Kind::Text, |s| Value::Text(&s.held_queue),
        "the queue the conversation was escalated to (empty unless holder is person)";
    HeldPriority "held_priority" PRIORITY, |s| num(s.held_priority),
        "the priority it was escalated with (0 unless holder is person)";
    Escalated "escalated" Kind::Flag, |s| flag(s.escalations > 0),
        "the conversation was escalated before (also after a hand-back)";
    Escalations "escalations" Kind::Count, |s| num(s.escalations),
        "times this conversation was escalated, hand-backs included";
    Turns "turns" Kind::Count, |s| num(s.turns), "earlier customer turns in the conversation";
    Channel "channel" Kind::Text, |s| Value::Text(&s.channel),
        "web, app, wechat, whatsapp, sms, email, voice or unspecified";
    Tier "tier" Kind::Text, |s| Value::Text(&s.tier), "standard or vip";
    KnownCustomer "known_customer" Kind::Flag, |s| flag(s.known_customer),
        "the caller named the customer (customer_id) and their memory was read";
    Contacts7d "contacts_7d" Kind::Count, |s| num(s.contacts_7d),
        "the customer's other conversations in the last 7 days, any channel";
    SameIntentContacts3d "same_intent_contacts_3d" Kind::Count, |s| num(s.same_intent_contacts_3d),
        "the customer's other conversations in the last 3 days about this turn's intent";
    SameIntentContacts7d "same_intent_contacts_7d" Kind::Count, |s| num(s.same_intent_contacts_7d),
        "the same, in the last 7 days";
    Escalations30d "escalations_30d" Kind::Count, |s| num(s.escalations_30d),
        "the customer's other conversations escalated in the last 30 days";
    LastCsat "last_csat" Kind::Count, |s| num(s.last_csat),
        "the customer's CSAT in their last feedback that had one, 1 to 5 (0: none)";
    ChannelSwitch "channel_switch" Kind::Flag, |s| flag(s.channel_switch),
        "the customer had another conversation on another channel within [customers] channel_switch_s";
}

/// Known values of the text signals other than `intent` (the model's labels) and `held_queue`
/// (the policy's queues).
pub fn text_values(signal: Signal) -> Option<&'static [&'static str]> {
    use super::vocab;
    match signal {
        Signal::Channel => Some(vocab::Channel::NAMES),
        Signal::Tier => Some(vocab::Tier::NAMES),
        Signal::Holder => Some(vocab::Holder::NAMES),
        _ => None,
    }
}

/// What a condition refers to: a catalogued signal, or a caller-supplied customer attribute
/// (`attr.plan`), which is text and absent unless the caller sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Signal(Signal),
    Attribute(String),
}

impl Ref {
    pub fn name(&self) -> String {
        match self {
            Ref::Signal(s) => s.name().to_string(),
            Ref::Attribute(a) => format!("attr.{a}"),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Ref::Signal(s) => s.kind(),
            Ref::Attribute(_) => Kind::Text,
        }
    }
}

/// Every signal's value for one turn, owned, as the decision log keeps it: enough to decide the turn
/// again under another policy without the model or the text. Attribute values are never kept.
/// Fields added later read as their default from older logs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Snapshot {
    pub request_human: f32,
    /// The phrase the keyword net matched, requested or negated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keyword_negated: bool,
    /// The other-sense phrase that kept a person word from counting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_sense: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub person_word: bool,
    pub intent: String,
    pub intent_score: f32,
    pub intent_margin: f32,
    /// The threat word matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threat: Option<String>,
    /// The fraud phrase matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraud_cue: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub about_order: bool,
    pub negativity: f32,
    pub negativity_avg: f32,
    pub negative_turns: u32,
    pub negativity_rise: f32,
    pub upset: f32,
    #[serde(skip_serializing_if = "is_zero")]
    pub upset_cues: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hedged: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub small_talk: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub vague: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub new_info: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeat_cue: bool,
    pub similarity: f32,
    pub bot_fallbacks: u32,
    pub bot_failed: bool,
    pub low_confidence_turns: u32,
    pub accepted_offer: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub declined_offer: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub handed_back: bool,
    pub offers_made: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub offers_declined: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub offer_quiet: u32,
    /// `bot`, `offered` or `person` (older logs: empty, read as `bot`).
    pub holder: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub waiting_turns: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub held_queue: String,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub held_priority: i32,
    /// Older logs carry `escalated` only; read as one escalation.
    #[serde(skip_serializing)]
    pub escalated: bool,
    pub escalations: u32,
    pub turns: u32,
    pub channel: String,
    pub tier: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub known_customer: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub contacts_7d: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub same_intent_contacts_3d: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub same_intent_contacts_7d: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub escalations_30d: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub last_csat: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub channel_switch: bool,
    /// The caller sent attributes (their values are not kept: rules over `attr.*` replay without them).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub had_attributes: bool,
}

fn is_zero(x: &u32) -> bool {
    *x == 0
}

fn is_zero_i32(x: &i32) -> bool {
    *x == 0
}

impl Snapshot {
    /// The values again, without attributes (a logged turn being replayed).
    pub fn values(&self) -> Values<'static> {
        let mut s = self.clone();
        if s.holder.is_empty() {
            s.holder = "bot".into();
        }
        if s.escalated && s.escalations == 0 {
            s.escalations = 1;
        }
        Values {
            s,
            attributes: None,
            info: Vec::new(),
        }
    }
}

/// Every signal's value for one turn: the snapshot and the caller's attributes.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    pub s: Snapshot,
    pub attributes: Option<&'a HashMap<String, String>>,
    /// Hashes of the turn's identifiers, for the state (never logged).
    pub info: Vec<u32>,
}

impl Deref for Values<'_> {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.s
    }
}

impl Values<'_> {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            had_attributes: self.attributes.is_some_and(|a| !a.is_empty()),
            ..self.s.clone()
        }
    }

    /// Numbers, counts and flags (as 0/1); NaN for text signals.
    pub fn number(&self, s: Signal) -> f64 {
        match s.read(&self.s) {
            Value::Number(x) => x,
            Value::Text(_) => f64::NAN,
        }
    }

    pub fn flag(&self, s: Signal) -> bool {
        self.number(s) > 0.5
    }

    /// Text signals and attributes; `None` for an attribute the caller did not send.
    pub fn text(&self, r: &Ref) -> Option<&str> {
        match r {
            Ref::Signal(s) => match s.read(&self.s) {
                Value::Text(t) => Some(t),
                Value::Number(_) => None,
            },
            Ref::Attribute(a) => self.attributes?.get(a).map(String::as_str),
        }
    }

    /// How a flag appears in a reason: with the word that raised it, when there is one.
    pub fn flag_label(&self, s: Signal) -> String {
        let word = match s {
            Signal::KeywordRequest | Signal::KeywordNegated => Some(("keyword", &self.keyword)),
            Signal::Threat => Some(("threat", &self.threat)),
            Signal::FraudCue => Some(("fraud_cue", &self.fraud_cue)),
            Signal::OtherSense => Some(("other_sense", &self.other_sense)),
            _ => None,
        };
        match word {
            Some((label, Some(w))) => format!("{label}:{w}"),
            _ => s.name().to_string(),
        }
    }
}
