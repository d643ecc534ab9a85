//! Batcher and policy results → proto messages.

use std::time::Instant;

use super::pb;
use crate::batcher::Inferred;
use crate::model::Model;
use crate::policy;

fn scored(labels: &[String], probs: &[f32]) -> Vec<pb::LabelScore> {
    let mut out: Vec<_> = labels
        .iter()
        .zip(probs)
        .map(|(l, p)| pb::LabelScore {
            label: l.clone(),
            score: *p,
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

pub fn classification(inf: &Inferred) -> pb::Classification {
    let m = &inf.model;
    let p = &inf.prediction;
    let (i, s) = (p.top_intent(), p.top_sentiment());
    pb::Classification {
        intent: m.intent_labels()[i].clone(),
        intent_score: p.intent_probs[i],
        intents: scored(m.intent_labels(), &p.intent_probs),
        sentiment: m.sentiment_labels()[s].clone(),
        sentiment_score: p.sentiment_probs[s],
        sentiments: scored(m.sentiment_labels(), &p.sentiment_probs),
        negativity: m.negativity(p),
        tokens: inf.tokens as u32,
        truncated: inf.truncated,
        upset: m.upset(p),
        upset_grades: scored(m.upset_labels(), &p.upset_probs),
    }
}

pub fn model_ref(m: &Model) -> pb::ModelRef {
    pb::ModelRef {
        name: m.name().to_string(),
        version: m.version().to_string(),
    }
}

pub fn timing<'a>(started: Instant, results: impl IntoIterator<Item = &'a Inferred>) -> pb::Timing {
    let mut t = pb::Timing {
        total_us: started.elapsed().as_micros() as u64,
        ..Default::default()
    };
    for r in results {
        t.queue_us = t.queue_us.max(r.queue_time.as_micros() as u64);
        t.inference_us = t.inference_us.max(r.inference_time.as_micros() as u64);
        t.batch_size = t.batch_size.max(r.batch_size as u32);
    }
    t
}

pub fn channel(c: pb::Channel) -> policy::Channel {
    match c {
        pb::Channel::Unspecified => policy::Channel::Unspecified,
        pb::Channel::Web => policy::Channel::Web,
        pb::Channel::App => policy::Channel::App,
        pb::Channel::Wechat => policy::Channel::WeChat,
        pb::Channel::Whatsapp => policy::Channel::WhatsApp,
        pb::Channel::Sms => policy::Channel::Sms,
        pb::Channel::Email => policy::Channel::Email,
        pb::Channel::Voice => policy::Channel::Voice,
    }
}

pub fn tier(t: pb::CustomerTier) -> policy::Tier {
    match t {
        pb::CustomerTier::Vip => policy::Tier::Vip,
        pb::CustomerTier::Standard | pb::CustomerTier::Unspecified => policy::Tier::Standard,
    }
}

pub fn action(a: policy::Action) -> pb::Action {
    match a {
        policy::Action::ContinueBot => pb::Action::ContinueBot,
        policy::Action::OfferHuman => pb::Action::OfferHuman,
        policy::Action::Escalate => pb::Action::Escalate,
    }
}

pub fn reason(r: policy::Reason) -> pb::Reason {
    pb::Reason {
        rule_id: r.rule_id,
        signal: r.signal,
        value: r.value,
        threshold: r.threshold,
        detail: r.detail,
    }
}

pub fn route_response(
    decision: policy::Decision,
    inf: &Inferred,
    policy_version: &str,
    started: Instant,
) -> pb::RouteResponse {
    pb::RouteResponse {
        decision_id: decision.decision_id,
        retry: decision.retry == policy::Retry::Answered,
        action: action(decision.action) as i32,
        queue: decision.queue,
        priority: decision.priority,
        reasons: decision.reasons.into_iter().map(reason).collect(),
        classification: Some(classification(inf)),
        model: Some(model_ref(&inf.model)),
        policy_version: policy_version.to_string(),
        timing: Some(timing(started, [inf])),
        fallback: decision.fallback,
    }
}
