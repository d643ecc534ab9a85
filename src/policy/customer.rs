//! What the service remembers of a customer across conversations and channels: their contacts
//! (one per conversation: when, on which channel, about which intents, whether it was escalated),
//! their last CSAT and how their last feedback said it ended. Kept under a keyed hash of the
//! customer id (the id itself is never stored), bounded in size and age. The policy reads it as the
//! `History` signals (`contacts_7d`, `same_intent_contacts_3d`, `last_csat`, `channel_switch` …).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::state::{Kept, Repair};

/// Contacts kept per customer: the newest; a customer with more in the retention loses the oldest.
pub const MAX_CONTACTS: usize = 32;
/// Intents kept per contact: the first few substantive ones are what the contact was about.
pub const MAX_INTENTS: usize = 4;
/// Intents that say what a contact is not about (a greeting, asking for a person, anything else).
pub const NOT_A_TOPIC: &[&str] = &["greeting_chitchat", "other", "request_human"];
/// Decisions remembered per customer, so feedback can only reach the customer a decision was for.
pub const DECISIONS_KEPT: usize = 16;
/// A top intent below this probability does not name a contact's topic.
pub const TOPIC_SCORE: f32 = 0.5;

const DAY: i64 = 24 * 3600;

/// One conversation of the customer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Contact {
    /// A keyed hash of the conversation id (which may hold a phone number).
    pub conversation: u64,
    /// First and latest turn, seconds since the Unix epoch.
    pub first: i64,
    pub last: i64,
    pub channel: String,
    /// The substantive intents its turns had, first seen first, at most `MAX_INTENTS`, joined by
    /// commas (one allocation per contact, not one per intent).
    pub intents: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub escalated: bool,
}

impl Contact {
    pub fn intents(&self) -> impl Iterator<Item = &str> {
        self.intents.split(',').filter(|i| !i.is_empty())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomerState {
    /// Oldest first, none older than the retention, at most `MAX_CONTACTS`.
    pub contacts: VecDeque<Contact>,
    /// 1 to 5 from the customer's last feedback with a CSAT; 0 = none.
    pub last_csat: u32,
    /// When that feedback came, seconds since the Unix epoch.
    pub last_feedback: i64,
    /// Who resolved the conversation of the last feedback: bot, human or abandoned ("" = unknown).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_resolved_by: String,
    /// The last decisions made for this customer (the low half of their ids), newest last.
    #[serde(skip_serializing_if = "VecDeque::is_empty")]
    pub decisions: VecDeque<u64>,
    #[serde(skip)]
    pub repair: Option<Repair>,
}

impl Kept for CustomerState {
    const KIND: &'static str = "cust";

    fn clamp(&mut self) -> bool {
        let before = self.clone();
        while self.contacts.len() > MAX_CONTACTS {
            self.contacts.pop_front();
        }
        for c in &mut self.contacts {
            if c.intents().count() > MAX_INTENTS {
                c.intents = c.intents().take(MAX_INTENTS).collect::<Vec<_>>().join(",");
            }
            c.last = c.last.max(c.first);
        }
        if self.last_csat > 5 {
            self.last_csat = 0;
        }
        while self.decisions.len() > DECISIONS_KEPT {
            self.decisions.pop_front();
        }
        *self != before
    }

    fn is_empty(&self) -> bool {
        self.contacts.is_empty() && self.last_csat == 0 && self.decisions.is_empty()
    }

    fn repair(&self) -> Option<Repair> {
        self.repair
    }

    fn set_repair(&mut self, repair: Repair) {
        self.repair = Some(repair);
    }
}

/// The customer's history as a turn's signals see it: other conversations only (this one's own
/// turns are the conversation state's business).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct History {
    /// The caller named the customer, and their memory was read.
    pub known: bool,
    pub contacts_7d: u32,
    pub same_intent_contacts_3d: u32,
    pub same_intent_contacts_7d: u32,
    pub escalations_30d: u32,
    pub last_csat: u32,
    pub channel_switch: bool,
}

/// This turn as customer memory records it.
#[derive(Debug, Clone, Copy)]
pub struct Contacted<'a> {
    pub conversation: u64,
    /// The decision this turn gets (the low half of its id).
    pub decision: u64,
    pub channel: &'a str,
    /// The turn's intent when it names a topic (`topic`), else `None`.
    pub topic: Option<&'a str>,
    pub now: i64,
}

/// The intent of a turn when it says what the contact is about.
pub fn topic(intent: &str, score: f32) -> Option<&str> {
    (score >= TOPIC_SCORE && !NOT_A_TOPIC.contains(&intent)).then_some(intent)
}

impl CustomerState {
    /// Read the history this turn sees, then record the turn: forgets contacts older than
    /// `retention_s`, and counts a contact on another channel within `switch_window_s` as a
    /// channel switch.
    pub fn observe(&mut self, turn: Contacted, retention_s: i64, switch_window_s: i64) -> History {
        self.contacts.retain(|c| c.last >= turn.now - retention_s);
        let others = || {
            self.contacts
                .iter()
                .filter(|c| c.conversation != turn.conversation)
        };
        let within = |c: &Contact, seconds: i64| c.last >= turn.now - seconds;
        let about = |c: &Contact| turn.topic.is_some_and(|t| c.intents().any(|i| i == t));
        let count = |keep: &dyn Fn(&Contact) -> bool| others().filter(|c| keep(c)).count() as u32;
        let history = History {
            known: true,
            contacts_7d: count(&|c| within(c, 7 * DAY)),
            same_intent_contacts_3d: count(&|c| within(c, 3 * DAY) && about(c)),
            same_intent_contacts_7d: count(&|c| within(c, 7 * DAY) && about(c)),
            escalations_30d: count(&|c| within(c, 30 * DAY) && c.escalated),
            last_csat: self.last_csat,
            channel_switch: others()
                .any(|c| within(c, switch_window_s) && c.channel != turn.channel),
        };
        self.record(turn);
        self.decisions.push_back(turn.decision);
        while self.decisions.len() > DECISIONS_KEPT {
            self.decisions.pop_front();
        }
        history
    }

    fn record(&mut self, turn: Contacted) {
        let contact = match self
            .contacts
            .iter_mut()
            .find(|c| c.conversation == turn.conversation)
        {
            Some(c) => c,
            None => {
                if self.contacts.len() == MAX_CONTACTS {
                    self.contacts.pop_front();
                }
                self.contacts.push_back(Contact {
                    conversation: turn.conversation,
                    first: turn.now,
                    last: turn.now,
                    channel: turn.channel.to_string(),
                    ..Default::default()
                });
                self.contacts.back_mut().expect("just pushed")
            }
        };
        contact.last = contact.last.max(turn.now);
        if let Some(t) = turn.topic {
            if contact.intents().count() < MAX_INTENTS && !contact.intents().any(|i| i == t) {
                if !contact.intents.is_empty() {
                    contact.intents.push(',');
                }
                contact.intents.push_str(t);
            }
        }
    }

    /// The conversation was escalated (counted once per conversation).
    pub fn escalated(&mut self, conversation: u64) {
        if let Some(c) = self
            .contacts
            .iter_mut()
            .find(|c| c.conversation == conversation)
        {
            c.escalated = true;
        }
    }

    /// Feedback on `decision`: a CSAT (1–5, 0 = not asked) and who resolved it. Taken only for one
    /// of this customer's last decisions, so a caller cannot mark another customer unhappy; false
    /// when it was not.
    pub fn feedback(&mut self, decision: u64, csat: u32, resolved_by: &str, now: i64) -> bool {
        if !self.decisions.contains(&decision) {
            return false;
        }
        if (1..=5).contains(&csat) {
            self.last_csat = csat;
        }
        if !resolved_by.is_empty() {
            self.last_resolved_by = resolved_by.to_string();
        }
        self.last_feedback = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(
        conversation: u64,
        channel: &'static str,
        topic: Option<&'static str>,
        now: i64,
    ) -> Contacted<'static> {
        Contacted {
            conversation,
            decision: conversation * 1000 + now as u64,
            channel,
            topic,
            now,
        }
    }

    #[test]
    fn a_repeat_contact_about_the_same_topic_counts_by_window() {
        let mut c = CustomerState::default();
        let t0 = 1_800_000_000;
        let first = c.observe(
            turn(1, "web", Some("refund_return"), t0),
            30 * DAY,
            4 * 3600,
        );
        assert_eq!(
            first,
            History {
                known: true,
                ..Default::default()
            }
        );
        // Same conversation again: not a repeat of itself.
        let again = c.observe(
            turn(1, "web", Some("refund_return"), t0 + 60),
            30 * DAY,
            4 * 3600,
        );
        assert_eq!(again.contacts_7d, 0);
        // Two days later, on WeChat, about the same refund.
        let later = c.observe(
            turn(2, "wechat", Some("refund_return"), t0 + 2 * DAY),
            30 * DAY,
            4 * 3600,
        );
        assert_eq!(
            (
                later.contacts_7d,
                later.same_intent_contacts_3d,
                later.same_intent_contacts_7d
            ),
            (1, 1, 1)
        );
        assert!(
            !later.channel_switch,
            "two days is not within the 4 h switch window"
        );
        // Five days after the first: outside 3 days, inside 7.
        let week = c.observe(
            turn(3, "web", Some("refund_return"), t0 + 5 * DAY),
            30 * DAY,
            4 * 3600,
        );
        assert_eq!(
            (week.same_intent_contacts_3d, week.same_intent_contacts_7d),
            (1, 2)
        );
        // An hour after conversation 3 on another channel: a switch.
        let switch = c.observe(
            turn(4, "app", None, t0 + 5 * DAY + 3600),
            30 * DAY,
            4 * 3600,
        );
        assert!(switch.channel_switch);
        assert_eq!(
            switch.same_intent_contacts_3d, 0,
            "no topic, no same-topic contacts"
        );
    }

    #[test]
    fn old_contacts_are_forgotten_and_the_list_is_bounded() {
        let mut c = CustomerState::default();
        for i in 0..(MAX_CONTACTS as u64 + 10) {
            c.observe(
                turn(i, "web", Some("order_status"), 1000 + i as i64),
                30 * DAY,
                3600,
            );
        }
        assert_eq!(c.contacts.len(), MAX_CONTACTS);
        let h = c.observe(turn(999, "web", None, 1000 + 31 * DAY), 30 * DAY, 3600);
        assert_eq!(h.contacts_7d, 0);
        assert_eq!(
            c.contacts.len(),
            1,
            "everything older than the retention went"
        );
    }

    #[test]
    fn escalations_and_feedback_are_remembered() {
        let mut c = CustomerState::default();
        c.observe(turn(1, "web", Some("complaint"), 100), 30 * DAY, 3600);
        c.escalated(1);
        let decision = 1000 + 100;
        assert!(
            !c.feedback(42, 1, "human", 200),
            "not one of this customer's decisions"
        );
        assert_eq!(c.last_csat, 0);
        assert!(c.feedback(decision, 1, "human", 200));
        let h = c.observe(turn(2, "web", Some("complaint"), 300), 30 * DAY, 3600);
        assert_eq!((h.escalations_30d, h.last_csat), (1, 1));
        c.feedback(decision, 0, "", 400);
        assert_eq!(c.last_csat, 1, "feedback without a CSAT keeps the last one");
        assert!(CustomerState::default().is_empty());
        assert!(!c.is_empty());
    }

    #[test]
    fn only_substantive_confident_intents_name_a_topic() {
        assert_eq!(topic("refund_return", 0.9), Some("refund_return"));
        assert_eq!(topic("refund_return", 0.3), None);
        assert_eq!(topic("greeting_chitchat", 0.99), None);
        assert_eq!(topic("request_human", 0.99), None);
    }

    #[test]
    fn stored_memory_out_of_range_is_clamped() {
        let mut c = CustomerState {
            last_csat: 9,
            ..Default::default()
        };
        for i in 0..40 {
            c.contacts.push_back(Contact {
                conversation: i,
                intents: ["a"; 9].join(","),
                ..Default::default()
            });
        }
        let bytes = serde_json::to_vec(&c).unwrap();
        let back = CustomerState::from_stored(&bytes);
        assert_eq!(back.repair, Some(Repair::Clamped));
        assert_eq!((back.contacts.len(), back.last_csat), (MAX_CONTACTS, 0));
        assert!(back
            .contacts
            .iter()
            .all(|c| c.intents().count() <= MAX_INTENTS));
    }
}
