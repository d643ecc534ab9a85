//! Time in decisions: queues' opening hours (a closed queue names its fallback) and channels' reply
//! windows (a person who can only answer near or after the window's end raises the priority).

use super::config::{ChannelSettings, QueueHours};
use super::{reason, Decision, Turn};

pub(super) fn minute_of_day(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

impl QueueHours {
    fn window(&self) -> Option<(u32, u32)> {
        Some((minute_of_day(&self.open)?, minute_of_day(&self.close)?))
    }

    /// Whether the queue is open at `unix_seconds`.
    pub fn is_open(&self, unix_seconds: i64) -> bool {
        let local = unix_seconds + self.utc_offset_minutes as i64 * 60;
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        let Some((open, close)) = self.window() else {
            return false;
        };
        self.days.contains(&weekday(local.div_euclid(86_400))) && open <= minute && minute < close
    }

    /// When the queue next opens at or after `unix_seconds`; `None` if it never does.
    pub fn next_open(&self, unix_seconds: i64) -> Option<i64> {
        if self.is_open(unix_seconds) {
            return Some(unix_seconds);
        }
        let (open, close) = self.window()?;
        if open >= close {
            return None;
        }
        let offset = self.utc_offset_minutes as i64 * 60;
        let today = (unix_seconds + offset).div_euclid(86_400);
        (today..=today + 7)
            .filter(|day| self.days.contains(&weekday(*day)))
            .map(|day| day * 86_400 + open as i64 * 60 - offset)
            .find(|t| *t >= unix_seconds)
    }
}

/// ISO weekday of a day number since the epoch: 1970-01-01 was a Thursday (4).
fn weekday(day: i64) -> u8 {
    ((day + 3).rem_euclid(7) + 1) as u8
}

/// Name the fallback when the decision's queue is closed. Returns when a person on that queue can
/// first pick the conversation up (`None`: the queue never opens).
pub(super) fn apply(queues: &[QueueHours], d: &mut Decision, now: i64) -> Option<i64> {
    let Some(q) = queues.iter().find(|q| *q.name.get_ref() == d.queue) else {
        return Some(now);
    };
    if q.is_open(now) {
        return Some(now);
    }
    d.fallback = q.fallback.clone();
    let detail = format!(
        "queue {} is closed ({}-{}); fallback {}",
        q.name.get_ref(),
        q.open,
        q.close,
        q.fallback
    );
    let signal = format!("queue:{}", q.name.get_ref());
    d.reasons
        .push(reason("after_hours", &signal, 0.0, 1.0, &detail));
    q.next_open(now)
}

/// WhatsApp and WeChat let a business answer only for a while after the customer's message: when a
/// person would answer close to or after the end, raise the priority and say so.
pub(super) fn apply_reply_window(
    c: &ChannelSettings,
    turn: &Turn,
    pickup: Option<i64>,
    d: &mut Decision,
) {
    let Some(hours) = c.reply_window_hours else {
        return;
    };
    let closes = turn.sent_unix_seconds + hours as i64 * 3600;
    let left_minutes = pickup.map_or(f64::NEG_INFINITY, |p| (closes - p) as f64 / 60.0);
    let warning = c.window_warning_minutes as f64;
    if left_minutes > warning {
        return;
    }
    d.priority += c.window_priority_boost;
    d.reply_window_raised = true;
    let channel = turn.channel.as_str();
    let detail = if left_minutes <= 0.0 {
        format!("the {channel} reply window closes before a person can answer")
    } else {
        format!("the {channel} reply window closes {left_minutes:.0} min after a person can answer")
    };
    d.reasons.push(reason(
        "reply_window",
        "reply_window_minutes",
        left_minutes.max(-1e9),
        warning,
        &detail,
    ));
}
