//! Personal data out of audit records: e-mail addresses, phone numbers (Chinese mobiles and
//! international numbers), Chinese resident ID numbers and card numbers become placeholders. Applied
//! to every string the API caller filled, so an id holding a phone number is caught too. It errs
//! towards redacting: any run of 7 or more digits goes. Text is matched in its NFKC form, so
//! full-width letters, digits and `＠` (common in Chinese input) are the same data as ASCII ones.

use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+").expect("pattern")
});
/// A run of digits, grouped by up to two spaces, dashes, dots or brackets at a time (`+1 (415)
/// 555-2671`), maybe with a leading + or bracket and a trailing X (resident IDs): classified by `kind`.
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\(?[0-9](?:[ \-().]{0,2}[0-9])*[Xx]?").expect("pattern"));

/// What a run of digits is, if it is personal data.
fn kind(run: &str) -> Option<&'static str> {
    let digits: String = run.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len();
    let plain = run.chars().all(|c| c.is_ascii_alphanumeric());
    let id_x = run.ends_with(['X', 'x']);
    if plain && (n == 18 || (n == 17 && id_x)) {
        return Some("[id]");
    }
    let mobile =
        |d: &str| d.len() == 11 && d.starts_with('1') && matches!(d.as_bytes()[1], b'3'..=b'9');
    if mobile(&digits) || (digits.starts_with("86") && mobile(&digits[2..])) {
        return Some("[phone]");
    }
    if run.starts_with('+') && n >= 7 {
        return Some("[phone]");
    }
    if (13..=19).contains(&n) {
        return Some("[card]");
    }
    (n >= 7).then_some("[number]")
}

pub fn redact(text: &str) -> String {
    let text: String = text.nfkc().collect();
    let text = EMAIL.replace_all(&text, "[email]");
    NUMBER
        .replace_all(&text, |c: &regex::Captures| {
            let run = &c[0];
            match kind(run) {
                // A trailing X that is not part of an ID stays text.
                Some(k) => k.to_string(),
                None => run.to_string(),
            }
        })
        .into_owned()
}

/// Redact every string in a JSON value, keys included.
pub fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => *s = redact(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_json),
        serde_json::Value::Object(o) => {
            let entries = std::mem::take(o);
            for (k, mut v) in entries {
                redact_json(&mut v);
                o.insert(redact(&k), v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn personal_data_in_both_formats_is_redacted() {
        for (text, want) in [
            ("call me on 13812345678 please", "call me on [phone] please"),
            ("手机+86 138-1234-5678谢谢", "手机[phone]谢谢"),
            ("my number is +44 20 7946 0958", "my number is [phone]"),
            ("邮箱 zhang.san@example.com.cn", "邮箱 [email]"),
            ("身份证11010519491231002X", "身份证[id]"),
            ("card 4111 1111 1111 1111 exp", "card [card] exp"),
            ("卡号6222020200112233445", "卡号[card]"),
            ("order A20231108 costs 35.50", "order A[number] costs 35.50"),
            ("ZHANG.SAN＠EXAMPLE.COM", "[email]"),
            ("手机１３８１２３４５６７８", "手机[phone]"),
            ("call +1 (415) 555-2671 today", "call [phone] today"),
            ("call (415) 555-2671 today", "call [number] today"),
            ("+49 (0)30 1234 5678", "[phone]"),
            ("+33 1 23 45 67 89", "[phone]"),
            ("2 items, 3 left", "2 items, 3 left"),
        ] {
            assert_eq!(redact(text), want, "{text}");
        }
        assert_eq!(redact("转人工"), "转人工");
    }
}
