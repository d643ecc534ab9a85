//! Time in decisions: queues' opening hours (a closed queue names its fallback) and channels' reply
//! windows (a person who can only answer near or after the window's end raises the priority).

use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

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

    /// Its IANA zone (daylight saving included), else its fixed `utc_offset_minutes`.
    fn zone(&self) -> TimeZone {
        self.zone.clone().unwrap_or_else(|| {
            self.utc_offset_minutes
                .checked_mul(60)
                .and_then(|s| Offset::from_seconds(s).ok())
                .map_or(TimeZone::UTC, TimeZone::fixed)
        })
    }

    fn open_on(&self, date: Date) -> bool {
        let weekday = date.weekday().to_monday_one_offset() as u8;
        self.days.contains(&weekday) && !self.closed_on.contains(&date)
    }

    /// Whether the queue is open at `unix_seconds`.
    pub fn is_open(&self, unix_seconds: i64) -> bool {
        let (Some((open, close)), Ok(at)) = (self.window(), Timestamp::from_second(unix_seconds))
        else {
            return false;
        };
        let local = at.to_zoned(self.zone());
        let minute = local.hour() as u32 * 60 + local.minute() as u32;
        self.open_on(local.date()) && open <= minute && minute < close
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
        let zone = self.zone();
        let mut date = Timestamp::from_second(unix_seconds)
            .ok()?
            .to_zoned(zone.clone())
            .date();
        // A week, and as many days again as there are holidays, finds the next open day if any.
        for _ in 0..=7 + self.closed_on.len() {
            if self.open_on(date) {
                // An opening inside a daylight-saving gap moves forward, as clocks do.
                let opens = date
                    .at((open / 60) as i8, (open % 60) as i8, 0, 0)
                    .to_zoned(zone.clone())
                    .ok()?
                    .timestamp()
                    .as_second();
                if opens >= unix_seconds {
                    return Some(opens);
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// Resolve `time_zone` and `holidays` (`Policy::new`); the error says what is wrong.
    pub(super) fn resolve(&mut self) -> Result<(), String> {
        if let Some(name) = &self.time_zone {
            if self.utc_offset_minutes != 0 {
                return Err("time_zone and utc_offset_minutes: give one".into());
            }
            let zone = TimeZone::get(name)
                .map_err(|e| format!("time_zone {name:?} is not an IANA time zone: {e}"))?;
            self.zone = Some(zone);
        }
        let seconds = self.utc_offset_minutes.checked_mul(60);
        if seconds.and_then(|s| Offset::from_seconds(s).ok()).is_none() {
            return Err("utc_offset_minutes is out of range".into());
        }
        self.closed_on = self
            .holidays
            .iter()
            .map(|d| {
                d.parse::<Date>()
                    .map_err(|_| format!("holiday {d:?} is not a date (YYYY-MM-DD)"))
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(fields: &str) -> QueueHours {
        let mut q: QueueHours = toml::from_str(&format!(
            "name = \"q\"\nopen = \"09:00\"\nclose = \"17:00\"\nfallback = \"callback\"\n{fields}"
        ))
        .unwrap();
        q.resolve().unwrap();
        q
    }

    fn at(utc: &str) -> i64 {
        utc.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn hours_in_a_time_zone_follow_daylight_saving() {
        let weekdays = "days = [1, 2, 3, 4, 5]\n";
        let new_york = queue(&format!("{weekdays}time_zone = \"America/New_York\""));
        let fixed = queue(&format!("{weekdays}utc_offset_minutes = -300"));
        // Monday 2026-03-09, the day after clocks went forward: 13:30 UTC is 09:30 in New York,
        // while a fixed -05:00 still reads 08:30.
        assert!(new_york.is_open(at("2026-03-09T13:30:00Z")));
        assert!(!fixed.is_open(at("2026-03-09T13:30:00Z")));
        // In January the two agree.
        for q in [&new_york, &fixed] {
            assert!(!q.is_open(at("2026-01-12T13:30:00Z")));
            assert!(q.is_open(at("2026-01-12T14:30:00Z")));
        }
        // From Friday evening before the change, the next opening is Monday 09:00 EDT (13:00 UTC).
        assert_eq!(
            new_york.next_open(at("2026-03-06T23:00:00Z")),
            Some(at("2026-03-09T13:00:00Z"))
        );
    }

    #[test]
    fn holidays_close_the_queue_all_day() {
        let q = queue(
            "days = [1, 2, 3, 4, 5]\ntime_zone = \"Asia/Shanghai\"\nholidays = [\"2026-10-01\", \"2026-10-02\"]",
        );
        // Thursday 2026-10-01, 10:00 in Shanghai: a holiday.
        assert!(!q.is_open(at("2026-10-01T02:00:00Z")));
        assert!(
            q.is_open(at("2026-09-30T02:00:00Z")),
            "the day before is a workday"
        );
        // Friday is a holiday too and the weekend is closed: Monday 09:00 CST (01:00 UTC).
        assert_eq!(
            q.next_open(at("2026-10-01T02:00:00Z")),
            Some(at("2026-10-05T01:00:00Z"))
        );
    }

    #[test]
    fn bad_zones_and_dates_are_refused() {
        for (fields, want) in [
            ("time_zone = \"Mars/Olympus\"", "not an IANA time zone"),
            (
                "time_zone = \"Asia/Shanghai\"\nutc_offset_minutes = 480",
                "give one",
            ),
            ("holidays = [\"1 October\"]", "not a date"),
        ] {
            let mut q: QueueHours = toml::from_str(&format!(
                "name = \"q\"\ndays = [1]\nopen = \"09:00\"\nclose = \"17:00\"\nfallback = \"x\"\n{fields}"
            ))
            .unwrap();
            let e = q.resolve().unwrap_err();
            assert!(e.contains(want), "{fields}: {e}");
        }
    }
}
