//! The policy file's shape (`config/policy.toml`): ordered rules over named signals, the settings
//! that define the signals kept across turns, the offer ladder, tiers, channels and queue hours.
//! Deserialised as-is; `Policy::new` checks what serde cannot.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The built-in policy, used when no policy file is given: the shipped rules without opening hours.
pub const BUILTIN: &str = include_str!("builtin.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub version: String,
    #[serde(default = "general")]
    pub default_queue: String,
    #[serde(default = "five")]
    pub base_priority: i32,
    #[serde(default)]
    pub signals: SignalSettings,
    #[serde(default)]
    pub ladder: Ladder,
    /// Per tier (`standard`, `vip`): a queue and a priority boost.
    #[serde(default)]
    pub tiers: BTreeMap<Spanned<String>, TierSettings>,
    /// Per channel (`voice`, `whatsapp`, …): overrides of the ladder, queue and priority, and the
    /// channel's reply window.
    #[serde(default)]
    pub channels: BTreeMap<Spanned<String>, ChannelSettings>,
    /// Opening hours per queue; a queue not listed is always open.
    #[serde(default)]
    pub queues: Vec<QueueHours>,
    /// After an escalation and after a declined offer.
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// What a customer's history changes beyond the rules.
    #[serde(default)]
    pub customers: Customers,
    /// Phrase lists of the text signals; a list given replaces the shipped one
    /// (`handoff phrases` prints them).
    #[serde(default)]
    pub keywords: super::phrases::PhraseLists,
    /// Checked in order; the first whose condition holds decides.
    pub rules: Vec<RuleConfig>,
}

/// What happens once a person holds the conversation, and after the customer declines one.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lifecycle {
    /// After a declined offer, offers are held back for this many turns (escalating rules still
    /// fire).
    pub decline_quiet_turns: u32,
    /// While a person holds the conversation, the priority rises by one every this many turns the
    /// customer writes…
    pub waiting_raise_every: u32,
    /// …and by one when a rule fires again, by at most this much in all.
    pub max_waiting_raise: i32,
    /// A customer who declines the person or says they want none ("算了不用转", "don't transfer
    /// me") within this many turns of an escalation withdraws it: the bot has the conversation
    /// again. Later a person is likely talking to them, and only the caller's hand-back ends that.
    /// 0 keeps every escalation until the hand-back.
    pub withdraw_within_turns: u32,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            decline_quiet_turns: 3,
            waiting_raise_every: 3,
            max_waiting_raise: 2,
            withdraw_within_turns: 3,
        }
    }
}

/// A customer whose last CSAT was `unhappy_csat` or lower (1 to 5) is escalated to
/// `unhappy_queue`, unless the rule that fired names its own queue.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Customers {
    pub unhappy_csat: u32,
    pub unhappy_queue: Option<String>,
}

fn general() -> String {
    "general".into()
}

fn five() -> i32 {
    5
}

impl PolicyConfig {
    pub fn builtin() -> PolicyConfig {
        toml::from_str(BUILTIN).expect("the built-in policy parses (checked by a unit test)")
    }
}

/// How the signals kept across turns are counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalSettings {
    /// A turn at least this negative counts towards `negative_turns`.
    pub negative_turn: f32,
    /// Weight of the newest turn in `negativity_avg`.
    pub negativity_decay: f32,
    /// Top intent probability below this, or a top-2 margin below `low_margin`, counts towards
    /// `low_confidence_turns`.
    pub low_confidence: f32,
    pub low_margin: f32,
}

impl Default for SignalSettings {
    fn default() -> Self {
        SignalSettings {
            negative_turn: 0.6,
            negativity_decay: 0.5,
            low_confidence: 0.4,
            low_margin: 0.1,
        }
    }
}

/// The OFFER_HUMAN ladder: a rule that offers a person escalates instead once this many offers
/// were made.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ladder {
    pub max_offers: u32,
    pub escalate_priority_boost: i32,
}

impl Default for Ladder {
    fn default() -> Self {
        Ladder {
            max_offers: 2,
            escalate_priority_boost: 1,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierSettings {
    /// Queue for this tier's escalations, unless the rule names its own.
    pub queue: Option<String>,
    pub priority_boost: i32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelSettings {
    pub max_offers: Option<u32>,
    /// Queue for this channel's escalations, unless the rule or the tier names one.
    pub queue: Option<String>,
    pub priority_boost: i32,
    /// Hours the business may answer after the customer's message (WhatsApp 24, WeChat 48).
    pub reply_window_hours: Option<u32>,
    /// When a person could first answer (now, or when a closed queue opens) this close to the window's
    /// end, or past it, the priority rises by `window_priority_boost`.
    pub window_warning_minutes: u32,
    pub window_priority_boost: i32,
}

/// When a queue is staffed, in its own time zone (a fixed UTC offset), and what to do outside.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueHours {
    pub name: Spanned<String>,
    /// IANA time zone of the hours ("Asia/Shanghai", "Europe/Berlin"): daylight saving moves
    /// them with the local clocks. Without it, the fixed `utc_offset_minutes`.
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// Local dates ("2026-10-01") the queue stays closed all day.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// `time_zone` resolved (by `Policy::new`).
    #[serde(skip)]
    pub zone: Option<jiff::tz::TimeZone>,
    /// `holidays` parsed (by `Policy::new`).
    #[serde(skip)]
    pub closed_on: Vec<jiff::civil::Date>,
    /// ISO weekdays the queue is open: 1 = Monday … 7 = Sunday.
    pub days: Vec<u8>,
    /// "HH:MM", local; `close` is exclusive.
    pub open: String,
    pub close: String,
    /// What the decision names when the queue is closed: "callback", "ticket" or another queue.
    pub fallback: String,
    /// Agents usually staffing the queue: a hint for the caller's routing, echoed in reasons.
    #[serde(default)]
    pub capacity: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    ContinueBot,
    OfferHuman,
    Escalate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub id: Spanned<String>,
    /// A condition over the signals (see `expr`).
    pub when: Spanned<String>,
    pub action: RuleAction,
    /// Defaults to the tier's, then the channel's, then `default_queue`.
    pub queue: Option<String>,
    /// Defaults to `base_priority`.
    pub priority: Option<i32>,
    /// Shown in the decision's reasons.
    #[serde(default)]
    pub detail: String,
}
