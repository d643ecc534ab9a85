//! Labelled conversations, replayed through `Route` over gRPC, scored turn by turn against what a
//! supervisor wanted, overall, per phenomenon (the turns' tags) and as false and missed hand-offs.
//! The file is JSON lines, one conversation each:
//! `{"id", "lang", "channel", "tier", "turns": [{"text", "expect", "tags", "bot_failed"?,
//! "accepted_offer"?, "declined_offer"?, "handed_back"?, "retry"?}]}` with `expect` one of `bot`
//! (CONTINUE_BOT), `offer` (OFFER_HUMAN or ESCALATE are both right) and `escalate` (ESCALATE). A
//! `retry` turn re-sends the previous turn's message id (a network retry). The labelling rules are
//! in `models/train/data/conversations/README.md`. Each run uses fresh conversation ids, so state
//! never leaks between runs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tonic::transport::Channel as GrpcChannel;

use crate::grpc::pb::handoff_client::HandoffClient;
use crate::grpc::pb::{Action, Channel, CustomerTier, FeedbackRequest, HumanNeeded, RouteRequest};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: {source}")]
    Parse {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("conversation {id}: unknown {field} {value:?}")]
    Unknown {
        id: String,
        field: &'static str,
        value: String,
    },
    #[error("conversation {id}, turn {turn}: Route failed: {status}")]
    Route {
        id: String,
        turn: usize,
        #[source]
        status: Box<tonic::Status>,
    },
    #[error("conversation {id}, turn {turn}: Feedback failed: {status}")]
    Feedback {
        id: String,
        turn: usize,
        #[source]
        status: Box<tonic::Status>,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub lang: String,
    pub channel: String,
    #[serde(default = "standard")]
    pub tier: String,
    pub turns: Vec<Turn>,
}

fn standard() -> String {
    "standard".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct Turn {
    pub text: String,
    pub expect: Expect,
    #[serde(default)]
    pub bot_failed: bool,
    #[serde(default)]
    pub accepted_offer: bool,
    #[serde(default)]
    pub declined_offer: bool,
    #[serde(default)]
    pub handed_back: bool,
    /// The previous turn sent again with the same message id.
    #[serde(default)]
    pub retry: bool,
    /// The phenomena the turn exercises (greeting, waiting_after_escalation, …).
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Bot,
    Offer,
    Escalate,
}

impl Expect {
    /// Whether the service's action is one the supervisor would accept.
    pub fn accepts(self, action: Action) -> bool {
        match self {
            Expect::Bot => action == Action::ContinueBot,
            Expect::Offer => matches!(action, Action::OfferHuman | Action::Escalate),
            Expect::Escalate => action == Action::Escalate,
        }
    }
}

/// Every `.jsonl` file of a directory (in name order), or one file.
pub fn load_all(path: &Path) -> Result<Vec<Conversation>, Error> {
    if !path.is_dir() {
        return load(path);
    }
    let read_err = |source| Error::Read {
        path: path.display().to_string(),
        source,
    };
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        out.extend(load(&f)?);
    }
    Ok(out)
}

pub fn load(path: &Path) -> Result<Vec<Conversation>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| Error::Parse {
                line: i + 1,
                source,
            })
        })
        .collect()
}

fn channel(c: &Conversation) -> Result<Channel, Error> {
    Channel::from_str_name(&format!("CHANNEL_{}", c.channel.to_uppercase())).ok_or_else(|| {
        Error::Unknown {
            id: c.id.clone(),
            field: "channel",
            value: c.channel.clone(),
        }
    })
}

fn tier(c: &Conversation) -> Result<CustomerTier, Error> {
    CustomerTier::from_str_name(&format!("CUSTOMER_TIER_{}", c.tier.to_uppercase())).ok_or_else(
        || Error::Unknown {
            id: c.id.clone(),
            field: "tier",
            value: c.tier.clone(),
        },
    )
}

/// One scored turn, without the customer's text (reports may be shared).
#[derive(Debug, Clone, Serialize)]
pub struct TurnResult {
    pub conversation: String,
    pub turn: usize,
    pub expect: Expect,
    pub action: String,
    pub agree: bool,
    pub top_reason: String,
    pub tags: Vec<String>,
    /// The answer said `retry`.
    pub retry: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub turns: usize,
    pub agree: usize,
    /// expect → action → count
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// language → (turns, agree)
    pub by_lang: BTreeMap<String, (usize, usize)>,
    /// phenomenon (tag) → (turns, agree)
    pub by_tag: BTreeMap<String, (usize, usize)>,
    /// Turns where the bot was fine, and of those, the ones a person was offered or escalated on.
    pub bot_fine: usize,
    pub false_handoffs: usize,
    /// Turns where a person was needed, and of those, the ones left with the bot.
    pub human_needed: usize,
    pub missed_handoffs: usize,
    /// Retry turns whose answer did not say `retry`, or differed from the first answer.
    pub retry_mismatches: usize,
    pub results: Vec<TurnResult>,
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl Report {
    pub fn agreement(&self) -> f64 {
        share(self.agree, self.turns)
    }

    /// Share of bot-fine turns where a person was offered or escalated.
    pub fn false_handoff_rate(&self) -> f64 {
        share(self.false_handoffs, self.bot_fine)
    }

    /// Share of human-needed turns left with the bot.
    pub fn missed_handoff_rate(&self) -> f64 {
        share(self.missed_handoffs, self.human_needed)
    }

    /// Agreement per phenomenon with at least `min_turns` turns.
    pub fn phenomena(&self, min_turns: usize) -> Vec<(&str, usize, f64)> {
        self.by_tag
            .iter()
            .filter(|(_, (n, _))| *n >= min_turns)
            .map(|(t, (n, a))| (t.as_str(), *n, share(*a, *n)))
            .collect()
    }
}

/// Route every turn of every conversation, in order, and score each decision. With `send_feedback`,
/// each turn's label also goes back as Feedback (a person needed unless the label is `bot`), so a
/// server with a decision log can be replayed against the labels (`handoff replay`).
pub async fn run(
    client: &mut HandoffClient<GrpcChannel>,
    conversations: &[Conversation],
    send_feedback: bool,
) -> Result<Report, Error> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut report = Report::default();
    for c in conversations {
        let (channel, tier) = (channel(c)?, tier(c)?);
        let mut message = 0;
        let mut previous: Option<(String, Action, i32)> = None;
        for (i, t) in c.turns.iter().enumerate() {
            if !t.retry {
                message = i;
            }
            let request = RouteRequest {
                conversation_id: format!("eval-{}-{}", &run_id[..8], c.id),
                message_id: format!("{}-{message}", c.id),
                text: t.text.clone(),
                channel: channel as i32,
                tier: tier as i32,
                bot_failed: t.bot_failed,
                accepted_offer: t.accepted_offer,
                declined_offer: t.declined_offer,
                handed_back: t.handed_back,
                ..Default::default()
            };
            let reply = client
                .route(request)
                .await
                .map_err(|status| Error::Route {
                    id: c.id.clone(),
                    turn: i + 1,
                    status: Box::new(status),
                })?
                .into_inner();
            let first = (reply.decision_id.clone(), reply.action(), reply.priority);
            if t.retry && (!reply.retry || previous.as_ref() != Some(&first)) {
                report.retry_mismatches += 1;
            }
            previous = Some(first);
            if send_feedback && !reply.retry {
                let needed = match t.expect {
                    Expect::Bot => HumanNeeded::NotNeeded,
                    Expect::Offer | Expect::Escalate => HumanNeeded::Needed,
                };
                let feedback = FeedbackRequest {
                    decision_id: reply.decision_id.clone(),
                    human_needed: needed as i32,
                    ..Default::default()
                };
                client
                    .feedback(feedback)
                    .await
                    .map_err(|status| Error::Feedback {
                        id: c.id.clone(),
                        turn: i + 1,
                        status: Box::new(status),
                    })?;
            }
            let action = reply.action();
            let agree = t.expect.accepts(action);
            report.record(c, i, t, action, agree, &reply);
        }
    }
    Ok(report)
}

impl Report {
    fn record(
        &mut self,
        c: &Conversation,
        turn: usize,
        t: &Turn,
        action: Action,
        agree: bool,
        reply: &crate::grpc::pb::RouteResponse,
    ) {
        let expect = t.expect;
        for tag in &t.tags {
            let e = self.by_tag.entry(tag.clone()).or_default();
            e.0 += 1;
            e.1 += usize::from(agree);
        }
        if expect == Expect::Bot {
            self.bot_fine += 1;
            self.false_handoffs += usize::from(action != Action::ContinueBot);
        } else {
            self.human_needed += 1;
            self.missed_handoffs += usize::from(action == Action::ContinueBot);
        }
        let action_name = action
            .as_str_name()
            .trim_start_matches("ACTION_")
            .to_string();
        self.turns += 1;
        self.agree += usize::from(agree);
        let lang = self.by_lang.entry(c.lang.clone()).or_default();
        lang.0 += 1;
        lang.1 += usize::from(agree);
        *self
            .confusion
            .entry(format!("{expect:?}").to_lowercase())
            .or_default()
            .entry(action_name.clone())
            .or_default() += 1;
        self.results.push(TurnResult {
            conversation: c.id.clone(),
            turn: turn + 1,
            expect,
            action: action_name,
            agree,
            top_reason: reply
                .reasons
                .first()
                .map(|r| r.rule_id.clone())
                .unwrap_or_default(),
            tags: t.tags.clone(),
            retry: reply.retry,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_accepts_either_human_action_and_bot_only_the_bot() {
        assert!(Expect::Offer.accepts(Action::OfferHuman));
        assert!(Expect::Offer.accepts(Action::Escalate));
        assert!(!Expect::Offer.accepts(Action::ContinueBot));
        assert!(Expect::Bot.accepts(Action::ContinueBot));
        assert!(!Expect::Bot.accepts(Action::OfferHuman));
        assert!(!Expect::Escalate.accepts(Action::OfferHuman));
    }
}
