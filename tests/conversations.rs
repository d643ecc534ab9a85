//! The labelled conversations (`models/train/data/conversations/`), replayed through Route on the
//! shipped model and the built-in policy over real gRPC. The held-out and blind sets (not tuned on)
//! are held to floors overall, per phenomenon, and in false and missed hand-offs; the tuning set
//! must not regress; every retry must get its first answer.

mod common;

use std::path::PathBuf;

use handoff::conversations::{self, Report};

fn set(name: &str) -> Vec<conversations::Conversation> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models/train/data/conversations")
        .join(name);
    conversations::load_all(&dir).unwrap()
}

/// Prints the figures; the disagreeing turns too, except for the blind sets still unread (`blind2`,
/// `blind3`), whose turns nobody reads while tuning (the sets' README says why).
fn show(name: &str, report: &Report) {
    let turns = if ["blind2", "blind3"].contains(&name) {
        &[][..]
    } else {
        &report.results[..]
    };
    for r in turns.iter().filter(|r| !r.agree) {
        eprintln!(
            "{name} disagree: {} turn {} expected {:?} got {} ({}) {:?}",
            r.conversation, r.turn, r.expect, r.action, r.top_reason, r.tags
        );
    }
    for (tag, turns, agreement) in report.phenomena(1) {
        eprintln!("{name} {tag:<27} {turns:>4} {agreement:.3}");
    }
    eprintln!(
        "{name}: agreement {:.3} ({}/{}), false hand-offs {:.3} ({}/{}), missed {:.3} ({}/{})",
        report.agreement(),
        report.agree,
        report.turns,
        report.false_handoff_rate(),
        report.false_handoffs,
        report.bot_fine,
        report.missed_handoff_rate(),
        report.missed_handoffs,
        report.human_needed
    );
}

/// The product targets are 0.95 overall, 0.90 per phenomenon with 10 turns or more, 2 % false and
/// 3 % missed hand-offs. The shipped model and builtin-6 measure 0.959 overall on the held-out set,
/// 0.778 on its weakest phenomenon (low_confidence), 3.6 % false and 4.5 % missed hand-offs; 0.965,
/// 0.650 (upset_factual), 1.4 % and 6.6 % on the first blind set; 0.922, 0.714 (threat), 8.1 % and
/// 7.4 % on the unread blind set `blind2`; 0.969 on the tuning set with `zh4`…`en5` (counted
/// attempts and waits as anger cues moved held-out and blind2 by one turn each; the README's "Whole
/// conversations" says what is left and why). The floors sit below those figures, leaving room for a
/// few turns that sit on a threshold and may flip on another CPU's float rounding, while a real
/// regression still fails.
struct Floors {
    agreement: f64,
    phenomenon: f64,
    false_handoffs: f64,
    missed_handoffs: f64,
}

const HELDOUT: Floors = Floors {
    agreement: 0.945,
    phenomenon: 0.75,
    false_handoffs: 0.05,
    missed_handoffs: 0.06,
};
const BLIND: Floors = Floors {
    agreement: 0.95,
    phenomenon: 0.6,
    false_handoffs: 0.03,
    missed_handoffs: 0.085,
};
const BLIND2: Floors = Floors {
    agreement: 0.905,
    phenomenon: 0.6,
    false_handoffs: 0.10,
    missed_handoffs: 0.095,
};
/// blind3 (written 2026-12-07 after builtin-6 and the counted-attempt cues, first measured then):
/// 0.934, 0.700 (paraphrased_repeat), 6.7 % false, 6.4 % missed.
const BLIND3: Floors = Floors {
    agreement: 0.92,
    phenomenon: 0.6,
    false_handoffs: 0.08,
    missed_handoffs: 0.08,
};
const TUNING_AGREEMENT: f64 = 0.965;

/// Replays the set `name` and holds it to `floors`: overall, per phenomenon with 10 turns or more,
/// false and missed hand-offs; the set itself must be as large as it was written (per language too).
async fn holds(
    name: &str,
    floors: &Floors,
    min_conversations: usize,
    min_turns: usize,
    min_lang: usize,
) {
    let convs = set(name);
    let turns: usize = convs.iter().map(|c| c.turns.len()).sum();
    assert!(
        convs.len() >= min_conversations && turns >= min_turns,
        "{name}: {} conversations, {turns} turns",
        convs.len()
    );
    let mut client = common::client(common::shared()).await;
    let report = conversations::run(&mut client, &convs, false)
        .await
        .unwrap();
    show(name, &report);
    assert_eq!(report.retry_mismatches, 0, "a retry got a different answer");
    assert!(
        report.agreement() >= floors.agreement,
        "{name}: agreement {:.3}",
        report.agreement()
    );
    for (tag, turns, agreement) in report.phenomena(10) {
        assert!(
            agreement >= floors.phenomenon,
            "{name}: {tag}: {agreement:.3} over {turns} turns"
        );
    }
    assert!(
        report.false_handoff_rate() <= floors.false_handoffs,
        "{name}: false hand-offs {:.3}",
        report.false_handoff_rate()
    );
    assert!(
        report.missed_handoff_rate() <= floors.missed_handoffs,
        "{name}: missed hand-offs {:.3}",
        report.missed_handoff_rate()
    );
    for (lang, (turns, _)) in &report.by_lang {
        assert!(*turns >= min_lang, "{name}: {lang}: only {turns} turns");
    }
}

#[tokio::test]
async fn held_out_conversations_hold_their_floors_per_phenomenon() {
    holds("heldout", &HELDOUT, 150, 600, 100).await;
}

#[tokio::test]
async fn blind_conversations_hold_their_floors_per_phenomenon() {
    holds("blind", &BLIND, 120, 550, 40).await;
}

#[tokio::test]
async fn unread_blind_conversations_hold_their_floors_per_phenomenon() {
    holds("blind2", &BLIND2, 120, 590, 40).await;
}

#[tokio::test]
async fn third_unread_blind_conversations_hold_their_floors_per_phenomenon() {
    holds("blind3", &BLIND3, 120, 620, 40).await;
}

#[tokio::test]
async fn tuning_conversations_do_not_regress() {
    let convs = set("tuning");
    let mut client = common::client(common::shared()).await;
    let report = conversations::run(&mut client, &convs, false)
        .await
        .unwrap();
    show("tuning", &report);
    assert_eq!(report.retry_mismatches, 0, "a retry got a different answer");
    assert!(
        report.agreement() >= TUNING_AGREEMENT,
        "agreement {:.3}",
        report.agreement()
    );
}

use handoff::grpc::pb::{Action, Channel, RouteRequest, RouteResponse};

async fn say(
    client: &mut handoff::grpc::pb::handoff_client::HandoffClient<tonic::transport::Channel>,
    conversation: &str,
    message_id: &str,
    text: &str,
    tweak: impl FnOnce(&mut RouteRequest),
) -> RouteResponse {
    let mut req = RouteRequest {
        conversation_id: conversation.to_string(),
        message_id: message_id.to_string(),
        text: text.to_string(),
        channel: Channel::Web as i32,
        ..Default::default()
    };
    tweak(&mut req);
    client.route(req).await.unwrap().into_inner()
}

fn fresh(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

/// The examples, as a new user tried them.
#[tokio::test]
async fn small_talk_and_follow_ups_with_new_information_stay_with_the_bot() {
    let mut client = common::client(common::shared()).await;
    for pair in [
        ["hi", "hello"],
        ["ok", "ok"],
        ["你好", "在吗"],
        ["好的", "好的"],
        ["where is my order 12345", "the tracking number is 1Z999"],
    ] {
        let c = fresh("small");
        for (i, text) in pair.iter().enumerate() {
            let r = say(&mut client, &c, &format!("m{i}"), text, |_| {}).await;
            assert_eq!(
                r.action(),
                Action::ContinueBot,
                "{pair:?} turn {i}: {:?}",
                r.reasons
            );
        }
    }
}

#[tokio::test]
async fn a_waiting_customer_stays_escalated_until_handed_back() {
    let mut client = common::client(common::shared()).await;
    for (ask, waiting) in [("I want a human", "hello?"), ("转人工", "在吗")] {
        let c = fresh("wait");
        let first = say(&mut client, &c, "m0", ask, |_| {}).await;
        assert_eq!(first.action(), Action::Escalate);
        let r = say(&mut client, &c, "m1", waiting, |_| {}).await;
        assert_eq!(
            (r.action(), r.queue.as_str(), r.reasons[0].rule_id.as_str()),
            (Action::Escalate, first.queue.as_str(), "already_escalated")
        );
        let back = say(&mut client, &c, "m2", "thanks, bye", |r| {
            r.handed_back = true
        })
        .await;
        assert_eq!(back.action(), Action::ContinueBot, "{:?}", back.reasons);
    }
}

#[tokio::test]
async fn person_words_in_other_senses_stay_with_the_bot() {
    let mut client = common::client(common::shared()).await;
    for text in [
        "is the delivery agent bringing it today?",
        "I'm a travel agent booking for a client",
        "it was a human error on my side",
    ] {
        let r = say(&mut client, &fresh("sense"), "m0", text, |_| {}).await;
        assert_eq!(r.action(), Action::ContinueBot, "{text}: {:?}", r.reasons);
    }
}

#[tokio::test]
async fn a_retried_offer_comes_back_as_the_same_offer() {
    let mut client = common::client(common::shared()).await;
    let c = fresh("retry");
    let angry = "THIS IS RIDICULOUS, you charged me twice and nobody fixes it!! 😡";
    let first = say(&mut client, &c, "m0", angry, |_| {}).await;
    assert_eq!(first.action(), Action::OfferHuman, "{:?}", first.reasons);
    assert!(!first.retry);
    for _ in 0..3 {
        let again = say(&mut client, &c, "m0", angry, |_| {}).await;
        assert!(again.retry);
        assert_eq!(
            (
                again.decision_id.as_str(),
                again.action(),
                again.priority,
                &again.reasons
            ),
            (
                first.decision_id.as_str(),
                first.action(),
                first.priority,
                &first.reasons
            )
        );
    }
    let declined = say(&mut client, &c, "m1", "no thanks, I'll wait", |r| {
        r.declined_offer = true
    })
    .await;
    assert_eq!(
        declined.action(),
        Action::ContinueBot,
        "{:?}",
        declined.reasons
    );
}

/// builtin-6's signals at the Route boundary: a VIP cancelling an order is not leaving, a payment the
/// customer never set up goes to `security` whatever intent the model reads, and a short text the
/// model reads as a request without naming anyone stays with the bot.
#[tokio::test]
async fn orders_fraud_and_nameless_requests_decide_as_a_person_would() {
    use handoff::grpc::pb::CustomerTier;
    let mut client = common::client(common::shared()).await;
    let vip = |r: &mut RouteRequest| r.tier = CustomerTier::Vip as i32;
    let order = say(
        &mut client,
        &fresh("order"),
        "m0",
        "hey, can you cancel order 77120? ordered the wrong size",
        vip,
    )
    .await;
    assert_eq!(order.action(), Action::ContinueBot, "{:?}", order.reasons);
    let leave = say(
        &mut client,
        &fresh("leave"),
        "m0",
        "I want to cancel my membership today",
        vip,
    )
    .await;
    assert_eq!(
        (leave.action(), leave.reasons[0].rule_id.as_str()),
        (Action::Escalate, "vip_cancel"),
        "{:?}",
        leave.reasons
    );
    let fraud = say(
        &mut client,
        &fresh("fraud"),
        "m0",
        "there's a direct debit to GymNation I never set up, £35 a month since January",
        |_| {},
    )
    .await;
    assert_eq!(
        (fraud.action(), fraud.queue.as_str()),
        (Action::Escalate, "security"),
        "{:?}",
        fraud.reasons
    );
    for text in ["ref TRV-55821", "嗯 来电了"] {
        let r = say(&mut client, &fresh("nameless"), "m0", text, |_| {}).await;
        assert_eq!(r.action(), Action::ContinueBot, "{text}: {:?}", r.reasons);
    }
}
