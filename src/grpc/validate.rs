//! Input limits. Every refusal is INVALID_ARGUMENT naming the field and the limit, in the message
//! and as a `google.rpc.BadRequest` field violation for clients that read error details.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{convert, pb};
use crate::config::Limits;
use crate::policy;

fn invalid(field: &str, message: String) -> Status {
    let details = ErrorDetails::with_bad_request_violation(field, message.clone());
    Status::with_error_details(Code::InvalidArgument, message, details)
}

pub fn text(field: &str, value: &str, limits: &Limits) -> Result<(), Status> {
    if !value.chars().any(visible) {
        return Err(invalid(
            field,
            format!(
            "{field} must hold visible text (it is empty, or only whitespace, control or zero-width characters)"
        )));
    }
    if value.len() > limits.max_text_bytes {
        return Err(invalid(
            field,
            format!(
                "{field} is {} bytes; the limit is {} bytes (UTF-8)",
                value.len(),
                limits.max_text_bytes
            ),
        ));
    }
    Ok(())
}

pub fn texts(field: &str, values: &[String], limits: &Limits) -> Result<(), Status> {
    if values.is_empty() {
        return Err(invalid(field, format!("{field} must hold at least 1 text")));
    }
    if values.len() > limits.max_batch_texts {
        return Err(invalid(
            field,
            format!(
                "{field} holds {} texts; the limit is {} per call",
                values.len(),
                limits.max_batch_texts
            ),
        ));
    }
    for (i, v) in values.iter().enumerate() {
        text(&format!("{field}[{i}]"), v, limits)?;
    }
    Ok(())
}

pub fn id(field: &str, value: &str, required: bool, limits: &Limits) -> Result<(), Status> {
    if required && value.is_empty() {
        return Err(invalid(field, format!("{field} is required")));
    }
    // A blank id would join every caller that sends one into a single conversation.
    if !value.is_empty() && !value.chars().any(visible) {
        return Err(invalid(
            field,
            format!("{field} must hold visible characters, not only whitespace or zero-width ones"),
        ));
    }
    plain(field, value, limits.max_id_bytes)
}

/// A character a person would see: not whitespace, not a control character, not one of the
/// invisible format characters (zero-width spaces and joiners, direction marks, BOM, soft hyphen,
/// variation selectors) that pad "empty" messages.
fn visible(c: char) -> bool {
    !(c.is_whitespace()
        || c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}'))
}

/// At most `max_bytes`, no control characters: ids and attribute values.
fn plain(field: &str, value: &str, max_bytes: usize) -> Result<(), Status> {
    if value.len() > max_bytes {
        return Err(invalid(
            field,
            format!(
                "{field} is {} bytes; the limit is {max_bytes} bytes",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// Proto3 keeps unknown enum numbers as plain integers: refuse them instead of guessing.
pub fn enum_value<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E, Status> {
    E::try_from(value)
        .map_err(|_| invalid(field, format!("{field} = {value} is not a known value")))
}

pub fn attributes(
    field: &str,
    values: &std::collections::HashMap<String, String>,
    limits: &Limits,
) -> Result<(), Status> {
    if values.len() > limits.max_attributes {
        return Err(invalid(
            field,
            format!(
                "{field} holds {} entries; the limit is {}",
                values.len(),
                limits.max_attributes
            ),
        ));
    }
    for (k, v) in values {
        let name_ok = !k.is_empty()
            && k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            // Echo at most 64 characters: a huge name must not make the error too big to send.
            let shown: String = k.chars().take(64).collect();
            let more = if shown.len() < k.len() { "…" } else { "" };
            return Err(invalid(
                field,
                format!(
                    "{field} names are 1 to 64 bytes of a-z, 0-9 and _; got {shown:?}{more} ({} bytes)",
                    k.len()
                ),
            ));
        }
        plain(&format!("{field}[{k}]"), v, limits.max_attribute_bytes)?;
    }
    Ok(())
}

/// What a valid `RouteRequest` means beyond its own fields.
pub struct RouteInput {
    pub channel: policy::Channel,
    pub tier: policy::Tier,
    /// Now, seconds since the Unix epoch.
    pub now: i64,
    /// When the customer sent the message (now if the caller did not say).
    pub sent: i64,
}

pub fn route(req: &pb::RouteRequest, limits: &Limits) -> Result<RouteInput, Status> {
    id("conversation_id", &req.conversation_id, true, limits)?;
    id("message_id", &req.message_id, false, limits)?;
    id("customer_id", &req.customer_id, false, limits)?;
    text("text", &req.text, limits)?;
    let channel: pb::Channel = enum_value("channel", req.channel)?;
    let tier: pb::CustomerTier = enum_value("tier", req.tier)?;
    attributes("attributes", &req.attributes, limits)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok(RouteInput {
        channel: convert::channel(channel),
        tier: convert::tier(tier),
        now,
        sent: sent_at("sent_at_unix_ms", req.sent_at_unix_ms, now)?,
    })
}

/// Longest wait a Feedback call may report: a week, past which the number is a mistake.
pub const MAX_WAIT_SECONDS: u32 = 7 * 24 * 3600;

/// The decision id parsed (any form a UUID takes) and the entry to log, with the id written the
/// way the decision log writes it, so the two join.
pub fn feedback(
    req: &pb::FeedbackRequest,
    limits: &Limits,
) -> Result<(uuid::Uuid, crate::decision_log::FeedbackEntry), Status> {
    use crate::decision_log::{FeedbackEntry, HumanNeeded, ResolvedBy};
    id("decision_id", &req.decision_id, true, limits)?;
    id("customer_id", &req.customer_id, false, limits)?;
    let decision_id = uuid::Uuid::parse_str(&req.decision_id).map_err(|_| {
        invalid(
            "decision_id",
            "decision_id is not a decision id (the UUID a RouteResponse carries)".into(),
        )
    })?;
    let human_needed = match enum_value("human_needed", req.human_needed)? {
        pb::HumanNeeded::Unspecified => {
            return Err(invalid(
                "human_needed",
                "human_needed is required (NEEDED, NOT_NEEDED or NEEDED_EARLIER)".into(),
            ))
        }
        pb::HumanNeeded::Needed => HumanNeeded::Needed,
        pb::HumanNeeded::NotNeeded => HumanNeeded::NotNeeded,
        pb::HumanNeeded::NeededEarlier => HumanNeeded::NeededEarlier,
    };
    let resolved_by = match enum_value("resolved_by", req.resolved_by)? {
        pb::ResolvedBy::Unspecified => None,
        pb::ResolvedBy::Bot => Some(ResolvedBy::Bot),
        pb::ResolvedBy::Human => Some(ResolvedBy::Human),
        pb::ResolvedBy::Abandoned => Some(ResolvedBy::Abandoned),
    };
    if req.csat > 5 {
        return Err(invalid(
            "csat",
            format!("csat = {} is outside 1..=5 (0 = not asked)", req.csat),
        ));
    }
    if req.wait_seconds > MAX_WAIT_SECONDS {
        return Err(invalid(
            "wait_seconds",
            format!(
                "wait_seconds = {}; the limit is {MAX_WAIT_SECONDS} (7 days)",
                req.wait_seconds
            ),
        ));
    }
    Ok((
        decision_id,
        FeedbackEntry {
            tenant: None,
            decision_id: decision_id.hyphenated().to_string(),
            ts_ms: crate::decision_log::now_ms(),
            human_needed,
            resolved_by,
            csat: (req.csat > 0).then_some(req.csat as u8),
            wait_seconds: (req.wait_seconds > 0).then_some(req.wait_seconds),
            caller: String::new(),
        },
    ))
}

/// When the customer sent the message (ms since the epoch; 0 = now), in seconds. Refuses the future
/// beyond a clock-skew allowance, so a bad clock cannot stretch a reply window.
pub fn sent_at(field: &str, unix_ms: u64, now_seconds: i64) -> Result<i64, Status> {
    const SKEW_S: i64 = 300;
    if unix_ms == 0 {
        return Ok(now_seconds);
    }
    let seconds = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX);
    if seconds > now_seconds + SKEW_S {
        return Err(invalid(
            field,
            format!(
                "{field} = {unix_ms} is {} s in the future; the limit is {SKEW_S} s",
                seconds.saturating_sub(now_seconds)
            ),
        ));
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_anything_visible_is_refused_naming_the_field() {
        let limits = Limits::default();
        for blank in [
            "",
            "   ",
            "\0\0\0",
            "\u{200B}\u{200B}",
            "\u{FEFF}\u{1}\u{7}",
            "\u{3000}\n",
        ] {
            let err = text("text", blank, &limits).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{blank:?}");
            assert!(err.message().starts_with("text "), "{}", err.message());
        }
        for fine in ["转人工", "??", "👍", " hi\u{200B}"] {
            assert!(text("text", fine, &limits).is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn a_blank_conversation_id_is_refused() {
        let limits = Limits::default();
        for blank in ["   ", "\u{200B}", "\t"] {
            let err = id("conversation_id", blank, true, &limits).unwrap_err();
            assert!(
                err.message().starts_with("conversation_id "),
                "{}",
                err.message()
            );
        }
        assert!(id("message_id", "", false, &limits).is_ok());
        assert!(id("conversation_id", "c-1", true, &limits).is_ok());
    }
}
