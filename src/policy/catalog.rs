//! The named signals a policy rule can read, what kind of value each is, and their values for one
//! turn. Rule conditions are checked against this catalogue when the policy is loaded, so a typo in
//! a signal name is an error with a line number, not a rule that silently never fires.

use std::collections::HashMap;

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

macro_rules! signals {
    ($($variant:ident $name:literal $kind:expr, $doc:literal;)*) => {
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
        }
    };
}

const UNIT: Kind = Kind::Number { min: 0.0, max: 1.0 };
const SIGNED_UNIT: Kind = Kind::Number {
    min: -1.0,
    max: 1.0,
};

signals! {
    RequestHuman "request_human" UNIT, "model probability that the customer asks for a person";
    KeywordRequest "keyword_request" Kind::Flag, "the keyword net sees a request for a person (转人工, real person …)";
    KeywordNegated "keyword_negated" Kind::Flag, "the keyword net sees a negated request (不用转人工, I don't need a human …)";
    Intent "intent" Kind::Text, "top intent label of this turn (one of the model's labels)";
    IntentScore "intent_score" UNIT, "probability of the top intent";
    IntentMargin "intent_margin" UNIT, "top intent probability minus the second's";
    Threat "threat" Kind::Flag, "the message carries a legal, media or regulator threat (律师, 12315, lawyer, sue …)";
    Negativity "negativity" UNIT, "probability that this turn is negative";
    NegativityAvg "negativity_avg" UNIT, "decayed average negativity over the conversation, this turn included";
    NegativeTurns "negative_turns" Kind::Count, "negative turns in a row, this one included ([signals] negative_turn)";
    NegativityRise "negativity_rise" SIGNED_UNIT, "this turn's negativity minus the turn two back (0 before then)";
    Similarity "similarity" SIGNED_UNIT, "highest cosine similarity to a recent turn with the same intent (-1 if none)";
    BotFallbacks "bot_fallbacks" Kind::Count, "bot fallbacks so far in the conversation, as the caller reports";
    BotFailed "bot_failed" Kind::Flag, "the caller says the bot could not answer the previous message";
    LowConfidenceTurns "low_confidence_turns" Kind::Count, "low-confidence turns in a row, this one included ([signals] low_confidence, low_margin)";
    AcceptedOffer "accepted_offer" Kind::Flag, "the customer accepted a person offered earlier";
    OffersMade "offers_made" Kind::Count, "times a person was offered in this conversation";
    Escalated "escalated" Kind::Flag, "the conversation was escalated before";
    Turns "turns" Kind::Count, "earlier customer turns in the conversation";
    Channel "channel" Kind::Text, "web, app, wechat, whatsapp, sms, email, voice or unspecified";
    Tier "tier" Kind::Text, "standard or vip";
}

/// Known values of the text signals other than `intent` (whose values are the model's labels).
pub fn text_values(signal: Signal) -> Option<&'static [&'static str]> {
    match signal {
        Signal::Channel => Some(&[
            "unspecified",
            "web",
            "app",
            "wechat",
            "whatsapp",
            "sms",
            "email",
            "voice",
        ]),
        Signal::Tier => Some(&["standard", "vip"]),
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

/// Every signal's value for one turn.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    pub request_human: f32,
    /// The keyword the net matched, requested or negated.
    pub keyword: Option<&'a str>,
    pub keyword_negated: bool,
    pub intent: &'a str,
    pub intent_score: f32,
    pub intent_margin: f32,
    /// The threat word matched.
    pub threat: Option<&'a str>,
    pub negativity: f32,
    pub negativity_avg: f32,
    pub negative_turns: u32,
    pub negativity_rise: f32,
    pub similarity: f32,
    pub bot_fallbacks: u32,
    pub bot_failed: bool,
    pub low_confidence_turns: u32,
    pub accepted_offer: bool,
    pub offers_made: u32,
    pub escalated: bool,
    pub turns: u32,
    pub channel: &'a str,
    pub tier: &'a str,
    pub attributes: Option<&'a HashMap<String, String>>,
}

/// Every signal's value for one turn, owned, as the decision log keeps it: enough to decide the turn
/// again under another policy without the model or the text. Attribute values are never kept.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub request_human: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyword: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keyword_negated: bool,
    pub intent: String,
    pub intent_score: f32,
    pub intent_margin: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat: Option<String>,
    pub negativity: f32,
    pub negativity_avg: f32,
    pub negative_turns: u32,
    pub negativity_rise: f32,
    pub similarity: f32,
    pub bot_fallbacks: u32,
    pub bot_failed: bool,
    pub low_confidence_turns: u32,
    pub accepted_offer: bool,
    pub offers_made: u32,
    pub escalated: bool,
    pub turns: u32,
    pub channel: String,
    pub tier: String,
    /// The caller sent attributes (their values are not kept: rules over `attr.*` replay without them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub had_attributes: bool,
}

impl Snapshot {
    /// The values again, without attributes.
    pub fn values(&self) -> Values<'_> {
        Values {
            request_human: self.request_human,
            keyword: self.keyword.as_deref(),
            keyword_negated: self.keyword_negated,
            intent: &self.intent,
            intent_score: self.intent_score,
            intent_margin: self.intent_margin,
            threat: self.threat.as_deref(),
            negativity: self.negativity,
            negativity_avg: self.negativity_avg,
            negative_turns: self.negative_turns,
            negativity_rise: self.negativity_rise,
            similarity: self.similarity,
            bot_fallbacks: self.bot_fallbacks,
            bot_failed: self.bot_failed,
            low_confidence_turns: self.low_confidence_turns,
            accepted_offer: self.accepted_offer,
            offers_made: self.offers_made,
            escalated: self.escalated,
            turns: self.turns,
            channel: &self.channel,
            tier: &self.tier,
            attributes: None,
        }
    }
}

impl Values<'_> {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            request_human: self.request_human,
            keyword: self.keyword.map(str::to_string),
            keyword_negated: self.keyword_negated,
            intent: self.intent.to_string(),
            intent_score: self.intent_score,
            intent_margin: self.intent_margin,
            threat: self.threat.map(str::to_string),
            negativity: self.negativity,
            negativity_avg: self.negativity_avg,
            negative_turns: self.negative_turns,
            negativity_rise: self.negativity_rise,
            similarity: self.similarity,
            bot_fallbacks: self.bot_fallbacks,
            bot_failed: self.bot_failed,
            low_confidence_turns: self.low_confidence_turns,
            accepted_offer: self.accepted_offer,
            offers_made: self.offers_made,
            escalated: self.escalated,
            turns: self.turns,
            channel: self.channel.to_string(),
            tier: self.tier.to_string(),
            had_attributes: self.attributes.is_some_and(|a| !a.is_empty()),
        }
    }

    /// Numbers, counts and flags (as 0/1).
    pub fn number(&self, s: Signal) -> f64 {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        match s {
            Signal::RequestHuman => self.request_human as f64,
            Signal::KeywordRequest => flag(self.keyword.is_some() && !self.keyword_negated),
            Signal::KeywordNegated => flag(self.keyword_negated),
            Signal::IntentScore => self.intent_score as f64,
            Signal::IntentMargin => self.intent_margin as f64,
            Signal::Threat => flag(self.threat.is_some()),
            Signal::Negativity => self.negativity as f64,
            Signal::NegativityAvg => self.negativity_avg as f64,
            Signal::NegativeTurns => self.negative_turns as f64,
            Signal::NegativityRise => self.negativity_rise as f64,
            Signal::Similarity => self.similarity as f64,
            Signal::BotFallbacks => self.bot_fallbacks as f64,
            Signal::BotFailed => flag(self.bot_failed),
            Signal::LowConfidenceTurns => self.low_confidence_turns as f64,
            Signal::AcceptedOffer => flag(self.accepted_offer),
            Signal::OffersMade => self.offers_made as f64,
            Signal::Escalated => flag(self.escalated),
            Signal::Turns => self.turns as f64,
            Signal::Intent | Signal::Channel | Signal::Tier => f64::NAN,
        }
    }

    pub fn flag(&self, s: Signal) -> bool {
        self.number(s) > 0.5
    }

    /// Text signals and attributes; `None` for an attribute the caller did not send.
    pub fn text(&self, r: &Ref) -> Option<&str> {
        match r {
            Ref::Signal(Signal::Intent) => Some(self.intent),
            Ref::Signal(Signal::Channel) => Some(self.channel),
            Ref::Signal(Signal::Tier) => Some(self.tier),
            Ref::Signal(_) => None,
            Ref::Attribute(a) => self.attributes?.get(a).map(String::as_str),
        }
    }

    /// How a flag appears in a reason: with the word that raised it, when there is one.
    pub fn flag_label(&self, s: Signal) -> String {
        match (s, self.keyword, self.threat) {
            (Signal::KeywordRequest | Signal::KeywordNegated, Some(kw), _) => {
                format!("keyword:{kw}")
            }
            (Signal::Threat, _, Some(t)) => format!("threat:{t}"),
            _ => s.name().to_string(),
        }
    }
}
