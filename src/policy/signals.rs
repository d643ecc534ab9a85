//! Conversation signals that do not need the model: the explicit-request keyword net (with negation),
//! legal/media/regulator threats, and embedding similarity. Pure functions, no state.

/// What the keyword net found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeywordHit {
    None,
    /// The customer asks for a person, e.g. "转人工", "real person".
    Request(&'static str),
    /// The keyword is there but negated, e.g. "不用转人工", "I don't need a human".
    Negated(&'static str),
}

const ZH_REQUEST: &[&str] = &[
    "转人工",
    "人工客服",
    "人工服务",
    "找人工",
    "要人工",
    "接人工",
    "人工坐席",
    "真人",
    "人工",
    // Indirect requests: "找个能管事的来", "有没有活人", pinyin "zhuan ren gong".
    "能管事",
    "管事的",
    "活人",
    "zhuan ren gong",
    "zhuanrengong",
];
const ZH_NEGATION: &[&str] = &[
    "不用",
    "不要",
    "不需要",
    "无需",
    "不想",
    "没必要",
    "不必",
    "别",
];
const EN_REQUEST: &[&[&str]] = &[
    &["real", "person"],
    &["live", "person"],
    &["live", "agent"],
    &["human"],
    &["agent"],
    &["representative"],
    &["rep"],
    &["operator"],
    &["supervisor"],
    &["manager"],
    &["someone", "real"],
    // Indirect requests: "can I speak with someone about this", "is there an actual person".
    &["speak", "with", "someone"],
    &["speak", "to", "someone"],
    &["talk", "to", "someone"],
    &["talk", "with", "someone"],
    &["speak", "to", "somebody"],
    &["talk", "to", "somebody"],
    &["actual", "person"],
    &["talk", "to", "a", "person"],
    &["speak", "to", "a", "person"],
];
const EN_NEGATION: &[&str] = &[
    "don't", "dont", "not", "no", "never", "without", "doesn't", "needn't",
];
/// Words of negation count when they stand this many words (or CJK characters) before the keyword.
const EN_WINDOW: usize = 4;
const ZH_WINDOW: usize = 5;

pub fn explicit_request(text: &str) -> KeywordHit {
    let lower = text.to_lowercase();
    let mut negated = None;
    for kw in ZH_REQUEST {
        for (at, _) in lower.match_indices(kw) {
            if lower[at..].starts_with("人工智能") {
                continue; // "AI", not a person
            }
            let before: String = lower[..at]
                .chars()
                .rev()
                .take(ZH_WINDOW)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            // The keyword itself is part of the window: "不需要人工" matches "要人工" after "不需".
            let window = before + kw;
            if ZH_NEGATION.iter().any(|n| window.contains(n)) {
                negated.get_or_insert(*kw);
            } else {
                return KeywordHit::Request(kw);
            }
        }
    }
    let words: Vec<String> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| w.replace('’', "'"))
        .collect();
    for (i, _) in words.iter().enumerate() {
        for kw in EN_REQUEST {
            if words.len() >= i + kw.len()
                && words[i..i + kw.len()]
                    .iter()
                    .zip(kw.iter())
                    .all(|(w, k)| w == k)
            {
                let start = i.saturating_sub(EN_WINDOW);
                if words[start..i]
                    .iter()
                    .any(|w| EN_NEGATION.contains(&w.as_str()))
                {
                    negated.get_or_insert(kw[0]);
                } else {
                    return KeywordHit::Request(kw[0]);
                }
            }
        }
    }
    negated.map_or(KeywordHit::None, KeywordHit::Negated)
}

const THREATS: &[&str] = &[
    "律师",
    "起诉",
    "法院",
    "12315",
    "消协",
    "工商",
    "曝光",
    "媒体",
    "记者",
    "报警",
    "银保监",
    "监管",
    "315",
    "lawyer",
    "attorney",
    "sue",
    "lawsuit",
    "court",
    "bbb",
    "ftc",
    "regulator",
    "ombudsman",
    "media",
    "journalist",
    "twitter",
    "police",
];

/// A legal, media or regulator threat ("我要去12315投诉", "I will contact my lawyer").
pub fn threat(text: &str) -> Option<&'static str> {
    let lower = text.to_lowercase();
    // ASCII threats are whole ASCII words ("sue", not "pursue"); CJK ones are substrings.
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    THREATS.iter().copied().find(|t| {
        if t.is_ascii() {
            words.contains(t)
        } else {
            lower.contains(t)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_for_a_person_are_found_in_both_languages() {
        for text in [
            "转人工",
            "快点给我转人工[怒]",
            "我要找真人",
            "I want a real person",
            "AGENT!!!",
            "can I talk to a human?",
            "找个能管事的来",
            "can I speak with someone about this",
            "zhuan ren gong pls",
        ] {
            assert!(
                matches!(explicit_request(text), KeywordHit::Request(_)),
                "{text}"
            );
        }
    }

    #[test]
    fn negated_requests_are_not_requests() {
        for text in [
            "不用转人工了，谢谢",
            "不需要人工",
            "别转人工",
            "I don't need a human, just tell me the price",
            "no agent needed",
        ] {
            assert!(
                matches!(explicit_request(text), KeywordHit::Negated(_)),
                "{text}"
            );
        }
        for text in [
            "我的订单到哪了",
            "人工智能是什么",
            "where is my refund",
            "the agenda",
        ] {
            assert_eq!(explicit_request(text), KeywordHit::None, "{text}");
        }
    }

    #[test]
    fn threats_are_found_on_word_boundaries() {
        assert_eq!(threat("再不解决我就去12315投诉"), Some("12315"));
        assert_eq!(threat("I will contact my lawyer"), Some("lawyer"));
        assert_eq!(threat("I will sue you"), Some("sue"));
        assert_eq!(threat("pursue a refund"), None);
        assert_eq!(threat("我的订单到哪了"), None);
    }
}
