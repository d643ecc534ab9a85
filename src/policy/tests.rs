//! Decisions of the built-in policy and the checks a policy file must pass.

use super::*;

/// The built-in policy with `extra` TOML appended (tables, queues or more rules).
fn policy_with(extra: &str) -> Result<Policy, PolicyError> {
    let text = format!("{}\n{extra}", config::BUILTIN);
    Policy::new(toml::from_str(&text).unwrap_or_else(|e| panic!("{e}")))
}

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
        ..Default::default()
    }
}

const E1: [f32; 2] = [1.0, 0.0];
const E2: [f32; 2] = [0.0, 1.0];

#[test]
fn explicit_requests_escalate_and_negated_ones_do_not() {
    let p = Policy::builtin();
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
    let p = Policy::builtin();
    let s = ConversationState::default();
    let d = p.decide(
        &turn("my account was hacked", "security_incident", 0.8, 0.3, &E1),
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
    let mut t = turn("cancel my plan", "cancel_service", 0.95, 0.2, &E1);
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
    let p = Policy::builtin();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    let angry = turn("气死了", "complaint", 0.5, 0.95, &E1);
    let actions: Vec<_> = (0..3)
        .map(|_| p.route_in_memory(&store, "c", &angry).action)
        .collect();
    assert_eq!(
        actions,
        [Action::OfferHuman, Action::OfferHuman, Action::Escalate]
    );
    let mut voice = angry.clone();
    voice.channel = Channel::Voice;
    let actions: Vec<_> = (0..2)
        .map(|_| p.route_in_memory(&store, "v", &voice).action)
        .collect();
    assert_eq!(actions, [Action::OfferHuman, Action::Escalate]);
}

#[test]
fn repeats_count_once_per_message_id() {
    let p = Policy::builtin();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    let mut first = turn("where is my order", "order_status", 0.9, 0.1, &E1);
    first.message_id = "m1";
    assert_eq!(
        p.route_in_memory(&store, "c", &first).action,
        Action::ContinueBot
    );
    assert_eq!(
        p.route_in_memory(&store, "c", &first).action,
        Action::ContinueBot,
        "same message re-sent"
    );
    let mut other = turn(
        "how do I reset my password",
        "security_incident",
        0.3,
        0.1,
        &E2,
    );
    other.message_id = "m2";
    assert_eq!(
        p.route_in_memory(&store, "c", &other).action,
        Action::ContinueBot
    );
    let mut again = turn("my order, where is it??", "order_status", 0.9, 0.1, &E1);
    again.message_id = "m3";
    let d = p.route_in_memory(&store, "c", &again);
    assert_eq!(
        (d.action, d.reasons[0].rule_id.as_str()),
        (Action::OfferHuman, "repeated_question")
    );
}

#[test]
fn closed_queues_name_their_fallback() {
    let p = policy_with(
        "[[queues]]\nname = \"general\"\nutc_offset_minutes = 480\ndays = [1, 2, 3, 4, 5]\nopen = \"09:00\"\nclose = \"21:00\"\nfallback = \"callback\"\n",
    )
    .unwrap();
    let hours = &p.config.queues[0];
    // 2026-11-24 is a Tuesday: 02:00 UTC is 10:00 in UTC+8 (open), 14:00 UTC is 22:00 (closed).
    let tuesday = 1_795_478_400; // 2026-11-24T00:00:00Z
    assert!(hours.is_open(tuesday + 2 * 3600));
    assert!(!hours.is_open(tuesday + 14 * 3600));
    assert!(!hours.is_open(tuesday + 4 * 86_400 + 2 * 3600), "Saturday");
    assert_eq!(
        hours.next_open(tuesday + 14 * 3600),
        Some(tuesday + 86_400 + 3600),
        "Wednesday 09:00 in UTC+8 is 01:00 UTC"
    );
    assert_eq!(
        hours.next_open(tuesday + 3 * 86_400 + 14 * 3600),
        Some(tuesday + 6 * 86_400 + 3600),
        "Friday night → Monday"
    );
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    let mut t = turn("转人工", "request_human", 0.9, 0.1, &E1);
    t.unix_seconds = tuesday + 14 * 3600;
    let d = p.route_in_memory(&store, "late", &t);
    assert_eq!(
        (d.action, d.fallback.as_str()),
        (Action::Escalate, "callback")
    );
    assert_eq!(d.reasons.last().unwrap().rule_id, "after_hours");
    t.unix_seconds = tuesday + 2 * 3600;
    assert_eq!(p.route_in_memory(&store, "day", &t).fallback, "");
}

#[test]
fn reply_windows_raise_priority_when_a_person_would_answer_late() {
    let p = policy_with(
        "[[queues]]\nname = \"general\"\ndays = [1, 2, 3, 4, 5, 6, 7]\nopen = \"09:00\"\nclose = \"18:00\"\nfallback = \"ticket\"\n",
    )
    .unwrap();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    let tuesday = 1_795_478_400;
    let mut t = turn("转人工", "request_human", 0.9, 0.1, &E1);
    t.channel = Channel::WhatsApp;
    // Sent now, queue open: 24 h left, nothing to raise.
    t.unix_seconds = tuesday + 10 * 3600;
    t.sent_unix_seconds = t.unix_seconds;
    let d = p.route_in_memory(&store, "w1", &t);
    assert_eq!(d.priority, 5);
    assert!(d.reasons.iter().all(|r| r.rule_id != "reply_window"));
    // Sent 23 h ago: 60 min left < 120 min warning.
    t.sent_unix_seconds = t.unix_seconds - 23 * 3600;
    let d = p.route_in_memory(&store, "w2", &t);
    assert_eq!(d.priority, 7);
    let r = d
        .reasons
        .iter()
        .find(|r| r.rule_id == "reply_window")
        .unwrap();
    assert_eq!((r.value, r.threshold), (60.0, 120.0));
    // Sent at 20:00, queue closed until 09:00 the next day: 13 h of the 24 are gone by then, fine;
    // sent at 08:00 the day before and asked at 20:00: the window closes before anyone answers.
    t.unix_seconds = tuesday + 20 * 3600;
    t.sent_unix_seconds = t.unix_seconds;
    assert_eq!(p.route_in_memory(&store, "w3", &t).priority, 5);
    t.sent_unix_seconds = tuesday + 8 * 3600;
    let d = p.route_in_memory(&store, "w4", &t);
    assert_eq!((d.priority, d.fallback.as_str()), (7, "ticket"));
    let r = d
        .reasons
        .iter()
        .find(|r| r.rule_id == "reply_window")
        .unwrap();
    assert!(
        r.detail.contains("closes before a person can answer"),
        "{}",
        r.detail
    );
    // WeChat's window is 48 h.
    t.channel = Channel::WeChat;
    assert_eq!(p.route_in_memory(&store, "w5", &t).priority, 5);
}

#[test]
fn low_confidence_turn_after_turn_offers_a_person() {
    let p = Policy::builtin();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    let mut unsure = turn("嗯那个", "other", 0.3, 0.2, &E1);
    assert_eq!(
        p.route_in_memory(&store, "u", &unsure).action,
        Action::ContinueBot
    );
    unsure.embedding = &E2;
    let d = p.route_in_memory(&store, "u", &unsure);
    assert_eq!(
        (d.action, d.reasons[0].rule_id.as_str(), d.reasons[0].value),
        (Action::OfferHuman, "low_confidence", 2.0)
    );
}

#[test]
fn channel_tier_and_attribute_overrides() {
    let p = policy_with(
        "[channels.email]\nqueue = \"email\"\npriority_boost = -1\n\n[[rules]]\nid = \"enterprise_refund\"\nwhen = \"attr.plan == 'enterprise' and intent == 'refund'\"\naction = \"escalate\"\nqueue = \"accounts\"\n",
    )
    .unwrap();
    let s = ConversationState::default();
    let mut t = turn("I want a real person", "request_human", 0.9, 0.1, &E1);
    t.channel = Channel::Email;
    let d = p.decide(&t, &s);
    assert_eq!((d.queue.as_str(), d.priority), ("email", 4));
    t.tier = Tier::Vip;
    let d = p.decide(&t, &s);
    assert_eq!(
        (d.queue.as_str(), d.priority),
        ("senior", 6),
        "tier beats channel"
    );
    let attrs: HashMap<String, String> = [("plan".to_string(), "enterprise".to_string())].into();
    let mut t = turn("refund please", "refund", 0.8, 0.1, &E1);
    assert_eq!(p.decide(&t, &s).action, Action::ContinueBot);
    t.attributes = Some(&attrs);
    let d = p.decide(&t, &s);
    assert_eq!(
        (d.action, d.queue.as_str(), d.reasons[0].signal.as_str()),
        (Action::Escalate, "accounts", "attr.plan:enterprise")
    );
}

#[test]
fn shipped_policies_are_valid() {
    let p = Policy::builtin();
    assert!(p.rules().len() >= 10);
    let example = include_str!("../../config/policy.toml");
    let example = Policy::new(toml::from_str(example).unwrap()).unwrap();
    assert_eq!(example.version(), "example-6");
    assert_eq!(example.queue_capacities().count(), 2);
    assert_eq!(
        p.rules().iter().map(|r| &r.when).collect::<Vec<_>>(),
        example.rules().iter().map(|r| &r.when).collect::<Vec<_>>(),
        "config/policy.toml documents the built-in rules"
    );
}

#[test]
fn bad_policies_are_refused_with_the_reason() {
    let err = |extra: &str| policy_with(extra).unwrap_err().to_string();
    let e = err("[[rules]]\nid = \"late\"\nwhen = \"similarity >= 0.9\"\naction = \"escalate\"\n");
    assert!(
        e.contains("unreachable") && e.contains("\"repeated_question\""),
        "{e}"
    );
    let e = err("[[rules]]\nid = \"typo\"\nwhen = \"negativty >= 0.9\"\naction = \"escalate\"\n");
    assert!(e.contains("unknown signal \"negativty\""), "{e}");
    let e = err(
        "[[rules]]\nid = \"never\"\nwhen = \"turns >= 3 and turns < 2\"\naction = \"escalate\"\n",
    );
    assert!(e.contains("contradicts itself"), "{e}");
    let e = err("[[rules]]\nid = \"explicit_request\"\nwhen = \"threat\"\naction = \"escalate\"\n");
    assert!(e.contains("used twice"), "{e}");
    let e = err("[channels.fax]\nmax_offers = 1\n");
    assert!(e.contains("unknown channel"), "{e}");
    let e = err("[tiers.gold]\npriority_boost = 1\n");
    assert!(e.contains("standard or vip"), "{e}");
    let text = config::BUILTIN.replace("negative_turn = 0.6", "negative_turn = 1.5");
    assert!(Policy::new(toml::from_str(&text).unwrap()).is_err());
    let p = Policy::builtin();
    let e = p.check_labels(&["request_human".into()]).unwrap_err();
    assert!(e.to_string().contains("security_incident"), "{e}");
}

#[test]
fn three_negative_turns_in_a_row_offer_a_person() {
    // Moderately negative (above negative_turn, below strong_negativity) and alternating
    // embeddings so no turn reads as a repeat: only the streak can fire.
    let p = Policy::builtin();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    let mut outcomes = Vec::new();
    for (i, neg) in [0.65, 0.62, 0.66].into_iter().enumerate() {
        let e = if i % 2 == 0 { &E1 } else { &E2 };
        let t = turn("still waiting", "order_status", 0.9, neg, e);
        let d = p.route_in_memory(&store, "streak", &t);
        outcomes.push((d.action, d.reasons[0].rule_id.clone()));
    }
    assert_eq!(outcomes[0].0, Action::ContinueBot);
    assert_eq!(outcomes[1].0, Action::ContinueBot);
    assert_eq!(
        outcomes[2],
        (Action::OfferHuman, "consecutive_negative".to_string())
    );
}

fn with_id<'a>(mut t: Turn<'a>, id: &'a str) -> Turn<'a> {
    t.message_id = id;
    t.decision_id = id;
    t
}

#[test]
fn after_an_escalation_every_turn_escalates_to_the_same_queue_until_handed_back() {
    let p = Policy::builtin();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    let first = p.route_in_memory(&store, "c", &turn("转人工", "request_human", 0.9, 0.1, &E1));
    assert_eq!(first.action, Action::Escalate);
    let mut priorities = Vec::new();
    for text in ["在吗", "hello?", "还要等多久", "?", "在吗", "ok"] {
        let d = p.route_in_memory(&store, "c", &turn(text, "greeting_chitchat", 0.9, 0.1, &E2));
        assert_eq!(
            (d.action, d.queue.as_str(), d.reasons[0].rule_id.as_str()),
            (Action::Escalate, first.queue.as_str(), "already_escalated"),
            "{text}"
        );
        priorities.push(d.priority);
    }
    // +1 every 3 waiting turns, at most +2.
    assert_eq!(priorities, [5, 5, 6, 6, 6, 7]);
    let d = p.route_in_memory(
        &store,
        "c",
        &turn("我要投诉，气死了", "complaint", 0.9, 0.95, &E1),
    );
    assert_eq!((d.action, d.priority), (Action::Escalate, 7), "at most +2");

    let mut back = turn("thanks, that's all", "greeting_chitchat", 0.9, 0.1, &E2);
    back.handed_back = true;
    let d = p.route_in_memory(&store, "c", &back);
    assert_eq!(d.action, Action::ContinueBot, "{:?}", d.reasons);
    assert_eq!(
        (d.signals.escalations, d.signals.holder.as_str()),
        (1, "bot")
    );
    assert_eq!(d.signals.offers_made, 0, "offers start afresh");
}

#[test]
fn a_declined_offer_is_not_made_again_for_a_few_turns_unless_something_escalates() {
    let p = Policy::builtin();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    let angry = turn("气死了，还没到", "complaint", 0.6, 0.95, &E1);
    assert_eq!(
        p.route_in_memory(&store, "c", &angry).action,
        Action::OfferHuman
    );
    let mut no = turn("不用了，我再等等吧", "other", 0.6, 0.7, &E2);
    no.declined_offer = true;
    let d = p.route_in_memory(&store, "c", &no);
    assert_eq!(d.action, Action::ContinueBot);
    for _ in 0..3 {
        let d = p.route_in_memory(&store, "c", &angry);
        assert_eq!(
            (d.action, d.reasons[0].rule_id.as_str()),
            (Action::ContinueBot, "offer_declined")
        );
    }
    let d = p.route_in_memory(&store, "c", &angry);
    assert_eq!(d.action, Action::OfferHuman, "quiet turns are over");
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    p.route_in_memory(&store, "d", &angry);
    p.route_in_memory(&store, "d", &no);
    let d = p.route_in_memory(&store, "d", &turn("转人工", "request_human", 0.9, 0.5, &E1));
    assert_eq!(d.action, Action::Escalate, "an explicit request is new");
}

#[test]
fn a_customer_who_takes_the_request_back_soon_after_an_escalation_is_with_the_bot_again() {
    let p = Policy::builtin();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    let ask = turn("转人工", "request_human", 0.9, 0.5, &E1);
    assert_eq!(
        p.route_in_memory(&store, "c", &ask).action,
        Action::Escalate
    );
    let back = turn("算了 不用转人工了 我自己看看", "other", 0.6, 0.3, &E2);
    let d = p.route_in_memory(&store, "c", &back);
    assert_eq!(
        (d.action, d.reasons[0].rule_id.as_str(), d.queue.as_str()),
        (Action::ContinueBot, "escalation_withdrawn", "")
    );
    let angry = turn("气死了，还没到", "complaint", 0.6, 0.95, &E1);
    let d = p.route_in_memory(&store, "c", &angry);
    assert_eq!(
        (
            d.action,
            d.reasons[0].rule_id.as_str(),
            d.signals.holder.as_str()
        ),
        (Action::ContinueBot, "offer_declined", "bot"),
        "withdrawn like a declined offer: offers held back"
    );

    // Later a person is talking to the customer: only the caller's hand-back ends that.
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    p.route_in_memory(&store, "d", &ask);
    for _ in 0..3 {
        p.route_in_memory(
            &store,
            "d",
            &turn("在吗", "greeting_chitchat", 0.9, 0.1, &E2),
        );
    }
    let d = p.route_in_memory(&store, "d", &back);
    assert_eq!(
        (d.action, d.reasons[0].rule_id.as_str()),
        (Action::Escalate, "already_escalated")
    );

    // A decline that comes with a threat stays escalated.
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    p.route_in_memory(&store, "e", &ask);
    let mut threat = turn(
        "不用转了，我直接去12315投诉你们，气死了",
        "complaint",
        0.9,
        0.95,
        &E1,
    );
    threat.declined_offer = true;
    assert_eq!(
        p.route_in_memory(&store, "e", &threat).action,
        Action::Escalate
    );

    // An operator can keep every escalation until the hand-back.
    let keep = policy_with("[lifecycle]\nwithdraw_within_turns = 0\n").unwrap();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    keep.route_in_memory(&store, "f", &ask);
    assert_eq!(
        keep.route_in_memory(&store, "f", &back).action,
        Action::Escalate
    );
}

#[test]
fn a_retried_message_gets_its_first_answer_and_counts_nothing() {
    let p = Policy::builtin();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    let angry = |id| with_id(turn("气死了！！", "complaint", 0.6, 0.95, &E1), id);
    let d1 = p.route_in_memory(&store, "c", &angry("m1"));
    assert_eq!(d1.action, Action::OfferHuman);
    for _ in 0..3 {
        let again = p.route_in_memory(&store, "c", &angry("m1"));
        assert_eq!(again.retry, Retry::Answered);
        assert_eq!(
            (again.action, &again.decision_id, &again.reasons),
            (d1.action, &d1.decision_id, &d1.reasons)
        );
    }
    // Offers counted once: the next new message is the second offer, not the ladder's escalation.
    let d2 = p.route_in_memory(&store, "c", &angry("m2"));
    assert_eq!((d2.action, d2.signals.offers_made), (Action::OfferHuman, 1));
    // Answers are kept for the last 3 messages; an older one of the last 5 is decided read-only.
    for id in ["m3", "m4", "m5"] {
        p.route_in_memory(
            &store,
            "c",
            &with_id(turn("ok", "other", 0.9, 0.1, &E2), id),
        );
    }
    let old = p.route_in_memory(&store, "c", &angry("m2"));
    assert_eq!(old.retry, Retry::Expired);
    let turns = p.route_in_memory(
        &store,
        "c",
        &with_id(turn("ok", "other", 0.9, 0.1, &E2), "m6"),
    );
    assert_eq!(turns.signals.turns, 5, "the expired retry was not counted");
}

#[test]
fn small_talk_and_new_information_are_not_repeats() {
    let p = Policy::builtin();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    for text in ["hi", "hello", "ok", "ok", "你好", "在吗", "好的", "好的"] {
        let d = p.route_in_memory(&store, "c", &turn(text, "greeting_chitchat", 0.9, 0.1, &E1));
        assert_eq!(d.action, Action::ContinueBot, "{text}: {:?}", d.reasons);
        assert!(d.signals.small_talk, "{text}");
    }
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    p.route_in_memory(
        &store,
        "c",
        &turn("where is my order 12345", "order_status", 0.9, 0.1, &E1),
    );
    let d = p.route_in_memory(
        &store,
        "c",
        &turn(
            "the tracking number is 1Z999",
            "order_status",
            0.9,
            0.1,
            &E1,
        ),
    );
    assert!(d.signals.new_info);
    assert_eq!(d.action, Action::ContinueBot, "{:?}", d.reasons);
    let d = p.route_in_memory(
        &store,
        "c",
        &turn("so where is order 12345??", "order_status", 0.9, 0.1, &E1),
    );
    assert_eq!(
        d.action,
        Action::OfferHuman,
        "the same question again: {:?}",
        d.reasons
    );
}

#[test]
fn person_words_in_other_senses_do_not_escalate() {
    let p = Policy::builtin();
    let s = ConversationState::default();
    for text in [
        "is the delivery agent bringing it today?",
        "I'm a travel agent booking for a client",
        "it was a human error on my side",
    ] {
        // Even when the model reads a request for a person into it.
        let d = p.decide(&turn(text, "request_human", 0.7, 0.1, &E1), &s);
        assert_eq!(d.action, Action::ContinueBot, "{text}: {:?}", d.reasons);
    }
}

#[test]
fn lifecycle_turns_replay_from_their_signals() {
    let p = Policy::builtin();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    let mut logged = Vec::new();
    for (text, intent, neg) in [
        ("气死了", "complaint", 0.95),
        ("转人工", "request_human", 0.5),
        ("在吗", "greeting_chitchat", 0.1),
        ("??", "other", 0.2),
        ("hello?", "greeting_chitchat", 0.1),
    ] {
        let d = p.route_in_memory(&store, "c", &turn(text, intent, 0.9, neg, &E1));
        logged.push(d);
    }
    for d in &logged {
        let again = p.replay(&d.signals, ReplayClock::default(), false);
        assert_eq!(
            (again.action, &again.queue, again.priority, &again.reasons),
            (d.action, &d.queue, d.priority, &d.reasons)
        );
    }
}

#[test]
fn decisions_logged_before_the_lifecycle_replay() {
    // A builtin-3 era log line's signals: no holder, `escalated` instead of `escalations`.
    let old = r#"{"request_human":0.97,"keyword":"转人工","intent":"request_human","intent_score":0.97,
        "intent_margin":0.9,"negativity":0.1,"negativity_avg":0.1,"negative_turns":0,
        "negativity_rise":0.0,"similarity":-1.0,"bot_fallbacks":0,"bot_failed":false,
        "low_confidence_turns":0,"accepted_offer":false,"offers_made":0,"escalated":true,
        "turns":2,"channel":"web","tier":"standard"}"#;
    let snapshot: Snapshot = serde_json::from_str(old).unwrap();
    let v = snapshot.values();
    assert_eq!((v.holder.as_str(), v.escalations), ("bot", 1));
    let d = Policy::builtin().replay(&snapshot, ReplayClock::default(), false);
    assert_eq!(
        (d.action, d.reasons[0].rule_id.as_str()),
        (Action::Escalate, "explicit_request")
    );
}

#[test]
fn similarity_stays_within_its_range() {
    let p = Policy::builtin();
    let store = MemoryStore::new(std::time::Duration::from_secs(60), 100);
    // Unnormalised on purpose: the int8 copy's dot product with itself lands above 1.
    let long = [0.7f32, 0.72];
    p.route_in_memory(
        &store,
        "c",
        &turn("where is my order", "order_status", 0.9, 0.1, &long),
    );
    let d = p.route_in_memory(
        &store,
        "c",
        &turn("where's my order", "order_status", 0.9, 0.1, &long),
    );
    assert!(d.signals.similarity <= 1.0, "{}", d.signals.similarity);
}
