//! Labelled conversations, replayed through `Route` over gRPC, scored turn by turn against what a
//! supervisor wanted. The file is JSON lines, one conversation each:
//! `{"id", "lang", "channel", "tier", "turns": [{"text", "expect", "bot_failed"?, "accepted_offer"?}]}`
//! with `expect` one of `bot` (CONTINUE_BOT), `offer` (OFFER_HUMAN or ESCALATE are both right) and
//! `escalate` (ESCALATE). Each run uses fresh conversation ids, so state never leaks between runs.

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
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub turns: usize,
    pub agree: usize,
    /// expect → action → count
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// language → (turns, agree)
    pub by_lang: BTreeMap<String, (usize, usize)>,
    pub results: Vec<TurnResult>,
}

impl Report {
    pub fn agreement(&self) -> f64 {
        if self.turns == 0 {
            return 0.0;
        }
        self.agree as f64 / self.turns as f64
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
        for (i, t) in c.turns.iter().enumerate() {
            let request = RouteRequest {
                conversation_id: format!("eval-{}-{}", &run_id[..8], c.id),
                message_id: format!("{}-{i}", c.id),
                text: t.text.clone(),
                channel: channel as i32,
                tier: tier as i32,
                bot_failed: t.bot_failed,
                accepted_offer: t.accepted_offer,
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
            if send_feedback {
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
            report.record(c, i, t.expect, action, agree, &reply.reasons);
        }
    }
    Ok(report)
}

impl Report {
    fn record(
        &mut self,
        c: &Conversation,
        turn: usize,
        expect: Expect,
        action: Action,
        agree: bool,
        reasons: &[crate::grpc::pb::Reason],
    ) {
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
            top_reason: reasons
                .first()
                .map(|r| r.rule_id.clone())
                .unwrap_or_default(),
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
