//! A conversation's lifecycle: with the bot, offered a person, with a person until the caller hands
//! it back. Decided from the signals alone (`holder`, `waiting_turns`, `held_queue`, `offer_quiet`
//! …), so a logged turn replays the same; `advance` moves the state on after a decision.

use super::catalog::Values;
use super::config::Lifecycle;
use super::state::ConversationState;
use super::vocab::{Action, Holder};
use super::{reason, Decision, Reason};

/// While a person holds the conversation every turn is ESCALATE to the queue it waits in. The
/// priority rises by one per `waiting_raise_every` turns the customer writes while waiting and by
/// one when a rule fires again (the customer grows angrier, threatens …), by at most
/// `max_waiting_raise`.
pub(super) fn while_held(l: &Lifecycle, v: &Values, d: &mut Decision) {
    if v.holder != Holder::Person.as_str() {
        return;
    }
    if withdrawn(l, v, d) {
        let signal = if v.declined_offer {
            "declined_offer"
        } else {
            "keyword_negated"
        };
        let detail = "the customer no longer wants a person: the hand-off is withdrawn";
        d.reasons = vec![reason("escalation_withdrawn", signal, 1.0, 1.0, detail)];
        d.action = Action::ContinueBot;
        d.queue.clear();
        d.priority = 0;
        return;
    }
    let fired = d.action != Action::ContinueBot;
    let raise = (v.waiting_turns / l.waiting_raise_every.max(1)) as i32 + i32::from(fired);
    let raise = raise.min(l.max_waiting_raise).max(0);
    let queue = if v.held_queue.is_empty() {
        std::mem::take(&mut d.queue)
    } else {
        v.held_queue.clone()
    };
    let mut reasons = vec![reason(
        "already_escalated",
        "waiting_turns",
        v.waiting_turns as f64,
        0.0,
        "a person holds the conversation until the caller hands it back",
    )];
    if fired {
        reasons.append(&mut d.reasons);
    }
    d.action = Action::Escalate;
    d.queue = queue;
    d.priority = v.held_priority + raise;
    d.reasons = reasons;
}

/// Soon after an escalation, a customer who declines the person or says they want none takes the
/// request back, unless something on this very turn escalates again (a threat, fraud).
fn withdrawn(l: &Lifecycle, v: &Values, d: &Decision) -> bool {
    (v.declined_offer || v.keyword_negated)
        && v.waiting_turns <= l.withdraw_within_turns
        && d.action != Action::Escalate
}

/// An offer the customer just declined, or declined a few turns ago, is not made again.
pub(super) fn offer_held_back(v: &Values) -> Option<Reason> {
    if v.declined_offer {
        let detail = "the customer declined the person offered: not offered again now";
        return Some(reason("offer_declined", "declined_offer", 1.0, 1.0, detail));
    }
    if v.keyword_negated {
        let detail = "the customer says they do not want a person: not offered now";
        return Some(reason(
            "offer_declined",
            "keyword_negated",
            1.0,
            1.0,
            detail,
        ));
    }
    (v.offer_quiet > 0).then(|| {
        let detail = "the customer declined a person recently: offers are held back";
        reason(
            "offer_declined",
            "offer_quiet",
            v.offer_quiet as f64,
            0.0,
            detail,
        )
    })
}

/// Who holds the conversation after this decision, and what the next turns must remember.
pub(super) fn advance(
    l: &Lifecycle,
    state: &mut ConversationState,
    v: &Values,
    d: &Decision,
    rules_priority: i32,
) {
    state.offers_declined = v.offers_declined;
    let withdrawn = state.holder == Holder::Person && d.action == Action::ContinueBot;
    state.offer_quiet = if v.declined_offer || withdrawn {
        l.decline_quiet_turns
    } else {
        v.offer_quiet.saturating_sub(1)
    };
    match (state.holder, d.action) {
        // Only a withdrawal answers CONTINUE_BOT while a person holds the conversation.
        (Holder::Person, Action::ContinueBot) => {
            state.holder = Holder::Bot;
            state.held_queue.clear();
            state.held_priority = 0;
            state.waiting_turns = 0;
        }
        (Holder::Person, _) => state.waiting_turns = v.waiting_turns,
        (_, Action::Escalate) => {
            state.holder = Holder::Person;
            state.escalations += 1;
            state.held_queue = d.queue.clone();
            state.held_priority = rules_priority;
            state.waiting_turns = 0;
        }
        (_, Action::OfferHuman) => {
            state.holder = Holder::Offered;
            state.offers_made += 1;
        }
        (_, Action::ContinueBot) => state.holder = Holder::Bot,
    }
}
