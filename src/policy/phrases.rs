//! What a message's words say, without the model: a request for a person (or a negated one, or a
//! person word in another sense), a threat, small talk, new information, anger cues, hedges, and
//! "I asked already". The phrase lists are data (`phrases.toml`, replaceable per list in a policy's
//! `[keywords]`), compiled once per policy. Pure functions of the text, no state.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// The shipped lists.
pub const SHIPPED: &str = include_str!("phrases.toml");

/// Messages that are not requests for a person: a policy whose lists read any of them as one is
/// refused (`Phrases::compile`).
pub const NOT_REQUESTS: &[&str] = &[
    "is the delivery agent bringing it today?",
    "I'm a travel agent booking for a client",
    "it was a human error on my side",
    "my manager approved the purchase last week",
    "our sales rep told me it ships on friday",
    "the operator of the parking lot charged me",
    "人工智能客服能查物流吗",
    "人工费多少钱",
    "我在看真人秀",
    "客服说三天内退款",
    "can someone tell me where my order is",
    "are you a human or a bot?",
    "不用转人工，我问个问题",
    "I don't need a human, just tell me the price",
];

/// Messages that are requests for a person: a policy whose lists miss any of them is refused.
pub const REQUESTS: &[&str] = &[
    "转人工",
    "人工",
    "我要人工",
    "有没有活人",
    "叫你们经理出来",
    "AGENT!!!",
    "human please",
    "I want to talk to an agent",
    "get me someone who can actually help",
    "can I speak to a real person",
];

/// The phrase lists (the shape of `phrases.toml` and of a policy's `[keywords]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhraseLists {
    pub requests: Option<Vec<String>>,
    pub person_words: Option<Vec<String>>,
    pub request_words: Option<Vec<String>>,
    pub fillers: Option<Vec<String>>,
    pub other_senses: Option<Vec<String>>,
    pub negations: Option<Vec<String>>,
    pub threats: Option<Vec<String>>,
    pub threat_other_senses: Option<Vec<String>>,
    pub small_talk: Option<Vec<String>>,
    pub upset_words: Option<Vec<String>>,
    pub hedges: Option<Vec<String>>,
    pub repeat_cues: Option<Vec<String>>,
    pub vague_words: Option<Vec<String>>,
    pub declines: Option<Vec<String>>,
    pub order_words: Option<Vec<String>>,
    pub fraud_cues: Option<Vec<String>>,
    pub person_hints: Option<Vec<String>>,
}

impl PhraseLists {
    pub fn shipped() -> PhraseLists {
        toml::from_str(SHIPPED).expect("the shipped phrase lists parse (unit test)")
    }

    /// These lists where given, the shipped ones elsewhere.
    fn over(self, base: PhraseLists) -> PhraseLists {
        macro_rules! pick {
            ($($f:ident),*) => { PhraseLists { $($f: self.$f.or(base.$f)),* } };
        }
        pick!(
            requests,
            person_words,
            request_words,
            fillers,
            other_senses,
            negations,
            threats,
            threat_other_senses,
            small_talk,
            upset_words,
            hedges,
            repeat_cues,
            vague_words,
            declines,
            order_words,
            fraud_cues,
            person_hints
        )
    }
}

/// FNV-1a: every word of a message is looked up in a dozen lists, and SipHash's protection
/// against chosen keys buys nothing for a fixed vocabulary.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// A list whose entries are removed from a text to see what is left (small talk, fillers,
/// vague words): English entries as word sequences by first word, the others as substrings.
#[derive(Debug, Clone, Default)]
struct List {
    /// First word → the entries starting with it, longest first.
    words: FastMap<String, Vec<Vec<String>>>,
    substrings: Vec<String>,
    /// Leftmost-longest occurrences, for removing entries from a text.
    longest: Option<AhoCorasick>,
}

/// How a list entry is matched.
enum Entry {
    /// English: whole words in order.
    Words(Vec<String>),
    /// Chinese and anything else: a substring of the lower-cased text.
    Substring(String),
}

impl Entry {
    fn of(entry: &str) -> Option<Entry> {
        let e = entry.to_lowercase();
        if e.is_ascii() && e.chars().any(|c| c.is_ascii_alphabetic()) {
            let w: Vec<String> = words(&e).into_iter().map(|w| w.1.to_string()).collect();
            (!w.is_empty()).then_some(Entry::Words(w))
        } else {
            (!e.is_empty()).then_some(Entry::Substring(e))
        }
    }
}

impl List {
    fn new(entries: &[String]) -> List {
        let mut l = List::default();
        for e in entries.iter().filter_map(|e| Entry::of(e)) {
            match e {
                Entry::Words(w) => l.words.entry(w[0].clone()).or_default().push(w),
                Entry::Substring(s) => l.substrings.push(s),
            }
        }
        for v in l.words.values_mut() {
            v.sort_by_key(|w| std::cmp::Reverse(w.len()));
        }
        if !l.substrings.is_empty() {
            let build = |kind| {
                AhoCorasickBuilder::new()
                    .match_kind(kind)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&l.substrings)
                    .expect("phrase lists are small")
            };
            l.longest = Some(build(MatchKind::LeftmostLongest));
        }
        l
    }

    /// The longest entry of this list starting at word `i`: its length in words.
    fn word_match_at(&self, ws: &[Word<'_>], i: usize) -> Option<usize> {
        self.words
            .get(ws[i].1)?
            .iter()
            .find(|p| {
                ws.len() >= i + p.len()
                    && ws[i + 1..i + p.len()].iter().all(|w| w.2)
                    && ws[i..i + p.len()]
                        .iter()
                        .zip(p.iter())
                        .all(|(w, e)| w.1 == e.as_str())
            })
            .map(Vec::len)
    }
}

/// Compiled phrase lists.
#[derive(Debug, Clone)]
pub struct Phrases {
    /// The lists read on every message, matched in one pass.
    index: Index,
    fillers: List,
    small_talk: List,
    /// Vague words and small talk together.
    vague: List,
}

/// The lists `Index` matches in one pass over a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L {
    Requests,
    PersonWords,
    RequestWords,
    OtherSenses,
    Negations,
    Threats,
    ThreatOtherSenses,
    UpsetWords,
    Hedges,
    RepeatCues,
    Declines,
    OrderWords,
    FraudCues,
    PersonHints,
}

const LISTS: usize = 14;

/// Every entry of the scanned lists: substrings in one automaton, English phrases by first word.
/// One pass finds what a dozen passes, one per list, would.
#[derive(Debug, Clone, Default)]
struct Index {
    entries: Vec<String>,
    /// Substring patterns: (list, entry).
    patterns: Vec<(L, u32)>,
    automaton: Option<AhoCorasick>,
    /// First word → (list, words, entry), longest first.
    words: FastMap<String, Vec<(L, Vec<String>, u32)>>,
}

/// Where each list matched in one message: (byte start, byte end, entry).
struct Hits {
    per: [Vec<(usize, usize, u32)>; LISTS],
}

impl Hits {
    fn of(&self, l: L) -> &[(usize, usize, u32)] {
        &self.per[l as usize]
    }

    /// Some match of `l` lies within bytes `from..to`.
    fn within(&self, l: L, from: usize, to: usize) -> bool {
        self.of(l).iter().any(|&(a, b, _)| a >= from && b <= to)
    }
}

impl Index {
    fn new(lists: &[(L, &[String])]) -> Index {
        let mut ix = Index::default();
        let mut substrings = Vec::new();
        for (l, entries) in lists {
            for e in entries.iter().filter_map(|e| Entry::of(e)) {
                let id = ix.entries.len() as u32;
                match e {
                    Entry::Words(w) => {
                        ix.entries.push(w.join(" "));
                        ix.words.entry(w[0].clone()).or_default().push((*l, w, id));
                    }
                    Entry::Substring(s) => {
                        ix.entries.push(s.clone());
                        ix.patterns.push((*l, id));
                        substrings.push(s);
                    }
                }
            }
        }
        for v in ix.words.values_mut() {
            v.sort_by_key(|(_, w, _)| std::cmp::Reverse(w.len()));
        }
        if !substrings.is_empty() {
            ix.automaton = Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&substrings)
                    .expect("phrase lists are small"),
            );
        }
        ix
    }

    fn hits(&self, lower: &str, ws: &[Word<'_>]) -> Hits {
        let mut per: [Vec<(usize, usize, u32)>; LISTS] = Default::default();
        if let Some(ac) = &self.automaton {
            for m in ac.find_overlapping_iter(lower) {
                let (l, id) = self.patterns[m.pattern().as_usize()];
                per[l as usize].push((m.start(), m.end(), id));
            }
        }
        for i in 0..ws.len() {
            let Some(candidates) = self.words.get(ws[i].1) else {
                continue;
            };
            let mut seen = [false; LISTS];
            for (l, p, id) in candidates {
                let fits = ws.len() >= i + p.len()
                    && ws[i + 1..i + p.len()].iter().all(|w| w.2)
                    && ws[i..i + p.len()]
                        .iter()
                        .zip(p)
                        .all(|(w, e)| w.1 == e.as_str());
                // The longest entry of each list starting here.
                if fits && !seen[*l as usize] {
                    seen[*l as usize] = true;
                    let last = &ws[i + p.len() - 1];
                    per[*l as usize].push((ws[i].0, last.0 + last.1.len(), *id));
                }
            }
        }
        Hits { per }
    }

    fn entry(&self, id: u32) -> String {
        self.entries[id as usize].clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PhrasesError {
    #[error(
        "the keyword lists read {0:?}, which is not a request for a person, as one (shipped check)"
    )]
    ReadsNonRequest(&'static str),
    #[error("the keyword lists miss {0:?}, a request for a person (shipped check)")]
    MissesRequest(&'static str),
}

/// What the net found about a request for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeywordHit {
    None,
    Request(String),
    Negated(String),
}

/// What a message's words say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub keyword: Option<String>,
    pub keyword_negated: bool,
    pub other_sense: Option<String>,
    /// A word for a person (agent, someone, 人工, 客服 …) outside another sense: the model's
    /// request_human is trusted at lower confidence when the words name a person at all.
    pub person_word: bool,
    pub threat: Option<String>,
    /// A phrase that says a payment, account or loan was not the customer's (never made, 盗刷 …).
    pub fraud_cue: Option<String>,
    /// The text names an order, item or booking: "cancel order 44120" is not cancelling a service.
    pub about_order: bool,
    pub small_talk: bool,
    /// Hashes of the identifiers (order numbers, tracking ids, dates, emails) in the text.
    pub info: Vec<u32>,
    pub upset_cues: u32,
    pub hedged: bool,
    pub repeat_cue: bool,
    /// Not small talk, yet nothing but fillers ("就是那个嘛", "the the thing with my uh").
    pub vague: bool,
}

/// Marks that end a clause: a negation or request word before one is about something else.
const CLAUSE_ENDS: &str = ",.!?;，。！？；\n";

/// A turn at least this much filler (by words and Chinese characters) is vague.
const VAGUE_SHARE: f64 = 0.7;

/// Words of negation or request count when they stand this many words (English) or characters
/// (Chinese) before the keyword.
const EN_WINDOW: usize = 8;
const ZH_WINDOW: usize = 12;

impl Phrases {
    /// The lists of `lists` where given, the shipped ones elsewhere; refused when they misread the
    /// shipped examples of requests and non-requests.
    pub fn compile(lists: PhraseLists) -> Result<Phrases, PhrasesError> {
        let p = Phrases::compile_unchecked(lists);
        for text in NOT_REQUESTS {
            if let KeywordHit::Request(_) = p.request(text) {
                return Err(PhrasesError::ReadsNonRequest(text));
            }
        }
        for text in REQUESTS {
            if !matches!(p.request(text), KeywordHit::Request(_)) {
                return Err(PhrasesError::MissesRequest(text));
            }
        }
        Ok(p)
    }

    fn compile_unchecked(lists: PhraseLists) -> Phrases {
        let l = lists.over(PhraseLists::shipped());
        let v = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
        let scanned = [
            (L::Requests, v(&l.requests)),
            (L::PersonWords, v(&l.person_words)),
            (L::RequestWords, v(&l.request_words)),
            (L::OtherSenses, v(&l.other_senses)),
            (L::Negations, v(&l.negations)),
            (L::Threats, v(&l.threats)),
            (L::ThreatOtherSenses, v(&l.threat_other_senses)),
            (L::UpsetWords, v(&l.upset_words)),
            (L::Hedges, v(&l.hedges)),
            (L::RepeatCues, v(&l.repeat_cues)),
            (L::Declines, v(&l.declines)),
            (L::OrderWords, v(&l.order_words)),
            (L::FraudCues, v(&l.fraud_cues)),
            (L::PersonHints, v(&l.person_hints)),
        ];
        let refs: Vec<(L, &[String])> = scanned.iter().map(|(l, e)| (*l, e.as_slice())).collect();
        let mut vague = v(&l.vague_words);
        vague.extend(v(&l.small_talk));
        Phrases {
            index: Index::new(&refs),
            fillers: List::new(&v(&l.fillers)),
            small_talk: List::new(&v(&l.small_talk)),
            vague: List::new(&vague),
        }
    }

    pub fn shipped() -> &'static Phrases {
        static SHIPPED: OnceLock<Phrases> = OnceLock::new();
        SHIPPED.get_or_init(|| {
            Phrases::compile(PhraseLists::default()).expect("the shipped lists pass their checks")
        })
    }

    /// Everything the words say.
    pub fn read(&self, text: &str) -> Reading {
        let lower = lowered(text);
        let ws = words(&lower);
        let hits = self.index.hits(&lower, &ws);
        let (keyword, keyword_negated) = match self.request_in(&lower, &ws, &hits) {
            KeywordHit::None => (None, false),
            KeywordHit::Request(k) => (Some(k), false),
            KeywordHit::Negated(k) => (Some(k), true),
        };
        let other_sense = match keyword {
            Some(_) => None,
            None => hits
                .of(L::OtherSenses)
                .first()
                .map(|h| self.index.entry(h.2)),
        };
        let small_talk = self.is_small_talk(&lower);
        let masked = hits.of(L::OtherSenses);
        let outside_other =
            |&&(a, b, _): &&(usize, usize, u32)| !masked.iter().any(|&(s, e, _)| a >= s && b <= e);
        let person_word = keyword.is_some()
            || hits.of(L::PersonWords).iter().any(|h| outside_other(&h))
            || hits.of(L::Requests).iter().any(|h| outside_other(&h))
            || hits.of(L::PersonHints).iter().any(|h| outside_other(&h));
        Reading {
            keyword,
            keyword_negated,
            other_sense,
            person_word,
            threat: self.threat_in(&hits),
            fraud_cue: hits.of(L::FraudCues).first().map(|h| self.index.entry(h.2)),
            about_order: !hits.of(L::OrderWords).is_empty(),
            small_talk,
            vague: !small_talk && lower.len() <= 120 && self.filler_share(&lower) >= VAGUE_SHARE,
            info: identifiers(text),
            upset_cues: upset_cues(
                text,
                hits.of(L::UpsetWords).len() + persistence_cues(&lower),
            ),
            // "还好意思涨价" holds the hedge "还好" inside an anger cue: not a hedge.
            hedged: hits.of(L::Hedges).iter().any(|&(a, b, _)| {
                !hits
                    .of(L::UpsetWords)
                    .iter()
                    .any(|&(s, e, _)| a >= s && b <= e)
            }),
            repeat_cue: !hits.of(L::RepeatCues).is_empty(),
        }
    }

    /// A request for a person, a negated one, or neither.
    pub fn request(&self, text: &str) -> KeywordHit {
        let lower = lowered(text);
        let ws = words(&lower);
        let hits = self.index.hits(&lower, &ws);
        self.request_in(&lower, &ws, &hits)
    }

    fn request_in(&self, lower: &str, ws: &[Word<'_>], hits: &Hits) -> KeywordHit {
        let masked = hits.of(L::OtherSenses);
        // A request that shares words with another sense is that sense: "要人工抄表" asks for a
        // meter reader, "人工客服电话是多少" for a number.
        let inside_other = |a: usize, b: usize| masked.iter().any(|&(s, e, _)| a < e && b > s);
        let mut candidates: Vec<(usize, usize, u32)> = hits
            .of(L::Requests)
            .iter()
            .copied()
            .filter(|(a, b, _)| !inside_other(*a, *b))
            .collect();
        for &(a, b, id) in hits.of(L::PersonWords) {
            if inside_other(a, b) {
                continue;
            }
            let (from, to) = self.window_before(lower, ws, a, b);
            let asked = hits.within(L::RequestWords, from, a);
            // "不用人工", "no human needed": a negated person word is a declined request.
            let refused = hits.within(L::Negations, negation_from(lower, from, a), to);
            if asked || refused || self.is_bare(lower, a, b) {
                candidates.push((a, b, id));
            }
        }
        candidates.sort_by_key(|c| c.0);
        // "不用转", "别转人工", "don't transfer me": declined, with or without a person word.
        let declines = hits.of(L::Declines);
        let mut negated = declines.first().map(|d| self.index.entry(d.2));
        for (a, b, id) in candidates {
            let (from, to) = self.window_before(lower, ws, a, b);
            // A decline earlier in the same clause covers the request after it: "don't bother
            // putting me through to some call centre agent".
            let declined = declines.iter().any(|d| {
                d.0 < b && !lower[d.1.min(a)..a].contains(|c: char| CLAUSE_ENDS.contains(c))
            });
            if declined || hits.within(L::Negations, negation_from(lower, from, a), to) {
                negated.get_or_insert(self.index.entry(id));
            } else {
                return KeywordHit::Request(self.index.entry(id));
            }
        }
        negated.map_or(KeywordHit::None, KeywordHit::Negated)
    }

    /// The bytes just before a match at `at..end` where a negation or request word counts: a few
    /// words (English) or characters (Chinese) of the same clause, up to the match's start for
    /// English and its end for Chinese, where "不需要人工" holds "要人工" after "不需".
    fn window_before(&self, lower: &str, ws: &[Word<'_>], at: usize, end: usize) -> (usize, usize) {
        // A negation or request word in an earlier clause is about something else:
        // "特别着急，转人工", "no, I want an agent".
        let clause = clause_start(lower, at);
        if lower[at..end].is_ascii() {
            let i = ws.iter().position(|w| w.0 >= at).unwrap_or(ws.len());
            let first = ws.iter().position(|w| w.0 >= clause).unwrap_or(i).min(i);
            let start = i.saturating_sub(EN_WINDOW).max(first);
            // English words around Chinese read the English ones only ("报销要用 我的 manager":
            // 要 asks for no manager).
            let english = lower[..at]
                .char_indices()
                .rev()
                .find(|(_, c)| !c.is_ascii() && c.is_alphanumeric())
                .map_or(0, |(i, c)| i + c.len_utf8());
            (ws.get(start).map_or(at, |w| w.0.min(at)).max(english), at)
        } else {
            // Chinese chat separates clauses with spaces as often as with commas.
            let part = &lower[clause.min(at)..at];
            let cut = part
                .char_indices()
                .zip(part.chars().skip(1))
                .filter(|((_, c), next)| !c.is_ascii() && next.is_whitespace())
                .map(|((i, c), _)| i + c.len_utf8())
                .last()
                .unwrap_or(0);
            let base = clause.min(at) + cut;
            let chars: Vec<usize> = lower[base..at]
                .char_indices()
                .map(|(i, _)| base + i)
                .collect();
            let from = chars
                .len()
                .checked_sub(ZH_WINDOW)
                .map_or(base, |k| chars[k]);
            (from, end)
        }
    }

    /// The message is the person word and nothing else but fillers, punctuation and emoji
    /// ("AGENT!!!", "人工", "human pls").
    fn is_bare(&self, lower: &str, a: usize, b: usize) -> bool {
        let rest = format!("{} {}", &lower[..a], &lower[b..]);
        self.only(&rest, &self.fillers)
    }

    /// `text` holds nothing but entries of `list`, punctuation, emoji and WeChat codes.
    fn only(&self, text: &str, list: &List) -> bool {
        let mut rest = strip_codes(text);
        if let Some(ac) = &list.longest {
            rest = ac.replace_all(&rest, &vec![" "; list.substrings.len()]);
        }
        // Anything left that is not ASCII words (Chinese, other scripts) is not in the list.
        if rest.chars().any(|c| !c.is_ascii() && c.is_alphanumeric()) {
            return false;
        }
        let ws = words(&rest);
        let mut i = 0;
        while i < ws.len() {
            match list.word_match_at(&ws, i) {
                Some(n) => i += n,
                None => return false,
            }
        }
        true
    }

    fn is_small_talk(&self, lower: &str) -> bool {
        // Small talk is short: a long message is never only greetings and thanks.
        lower.len() <= 80 && self.only(lower, &self.small_talk)
    }

    fn threat_in(&self, hits: &Hits) -> Option<String> {
        let masked = hits.of(L::ThreatOtherSenses);
        hits.of(L::Threats)
            .iter()
            .filter(|(a, b, _)| !masked.iter().any(|&(s, e, _)| *a >= s && *b <= e))
            .min_by_key(|m| m.0)
            .map(|m| self.index.entry(m.2))
    }

    /// The share of a text's words and Chinese characters that are fillers or small talk (0 for a
    /// text with none of either).
    fn filler_share(&self, lower: &str) -> f64 {
        let text = strip_codes(lower);
        let cjk = |t: &str| {
            t.chars()
                .filter(|c| !c.is_ascii() && c.is_alphanumeric())
                .count()
        };
        let total_cjk = cjk(&text);
        let rest = match &self.vague.longest {
            Some(ac) => ac.replace_all(&text, &vec![" "; self.vague.substrings.len()]),
            None => text.clone(),
        };
        let covered_cjk = total_cjk - cjk(&rest);
        let ws = words(&rest);
        let mut covered_words = 0;
        let mut i = 0;
        while i < ws.len() {
            match self.vague.word_match_at(&ws, i) {
                Some(n) => {
                    covered_words += n;
                    i += n;
                }
                None => i += 1,
            }
        }
        let total = total_cjk + ws.len();
        if total == 0 {
            return 0.0;
        }
        (covered_cjk + covered_words) as f64 / total as f64
    }
}

/// Anger cues: `words` matches of the upset words, and !!, ??, angry emoji and words in capitals.
fn upset_cues(text: &str, words: usize) -> u32 {
    let mut cues = words as u32;
    cues += runs(text, &['!', '！']).min(2);
    cues += runs(text, &['?', '？']).min(1);
    cues += text
        .chars()
        .filter(|c| ANGRY_EMOJI.contains(c))
        .count()
        .min(2) as u32;
    // Words in capitals, not codes ("RIDE50OFF") or acronyms ("VIP", "PDF").
    let shouted = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| w.len() >= 4 && w.chars().all(|c| c.is_ascii_uppercase()))
        .filter(|w| !ACRONYMS.contains(w))
        .count() as u32;
    cues += shouted.min(2);
    cues.min(10)
}

/// Where the clause holding byte `at` starts: after the last clause end before it, else 0.
fn clause_start(lower: &str, at: usize) -> usize {
    lower[..at]
        .char_indices()
        .rev()
        .find(|(_, c)| CLAUSE_ENDS.contains(*c))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

/// Where a negation of the person word at `at` may start: its window, or a few bytes before it
/// across Chinese in mixed text ("no need 转 agent 哈"), where the window reads English words only.
fn negation_from(lower: &str, from: usize, at: usize) -> usize {
    const REACH: usize = 16;
    let mut reach = at.saturating_sub(REACH).max(clause_start(lower, at));
    while !lower.is_char_boundary(reach) {
        reach += 1;
    }
    from.min(reach)
}

/// Counted attempts and waits, the way a customer who has run out of patience states facts: "the
/// fourth time I'm calling", "third email", "waited 2 days for an answer", "not one reply", "第五次打电话",
/// "今天第五天了", "等了两个礼拜", "一条回复都没有". Numbers vary too much for a phrase list, so these
/// are patterns; a cue alone offers a person only when the model reads the turn as negative.
fn persistence_cues(lower: &str) -> usize {
    static PATTERNS: OnceLock<Regex> = OnceLock::new();
    let re = PATTERNS.get_or_init(|| {
        const N: &str = r"(?:\d+|a few|few|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|several|many|multiple)";
        const ORD: &str = r"(?:\d+(?:st|nd|rd|th)|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth)";
        const ZH_N: &str = r"[一二两三四五六七八九十几半\d]+";
        const ZH_SPAN: &str = r"(?:天|周|个?星期|个?礼拜|个月|个工作日|小时)";
        let patterns = [
            // "third email", "second replacement", "4th call", "third late delivery"
            format!(r"\b{ORD}\s+(?:[a-z]+\s+)?(?:e-?mails?|mails?|calls?|messages?|chats?|requests?|tickets?|attempts?|replacements?|reminders?|complaints?|tries|deliver(?:y|ies)|letters?)\b"),
            // "five days to get a reply", "8 days and counting", "two weeks now"
            format!(r"\b{N}\s+(?:business\s+|working\s+|whole\s+|full\s+)?(?:days|weeks|months|hours)\s+(?:and counting|now|later|already|of waiting|of chasing|on hold|to get|without)\b"),
            // "waited 2 days", "been waiting for three weeks", "on hold for 40 minutes"
            format!(r"\b(?:waited|waiting|chasing|on hold)\s+(?:for\s+)?(?:over\s+|more than\s+|almost\s+|nearly\s+)?{N}\b"),
            // "not one reply", "no response", "nobody ever called back"
            r"\b(?:not (?:one|a single)|zero|no) (?:reply|replies|response|responses|answer|answers|call ?backs?|callbacks?|updates?)\b".to_string(),
            r"\b(?:nobody|no one|no-one|noone) (?:ever )?(?:replied|replies|answered|answers|called|calls|got back|gets back|responded|responds|came|showed up|turned up|bothered)\b".to_string(),
            // 第五次打电话, 第三回, 第二封
            r"第[二两三四五六七八九十\d]+(?:次|回|遍|封|通|趟)".to_string(),
            // 我说了三遍了, 问了好几次, 催了两回
            r"(?:说|问|打|发|讲|催|找)了?[两三四五六七八九十几好\d]+(?:遍|次|回)".to_string(),
            // 今天第五天了, 第九个工作日
            format!(r"第[二三四五六七八九十\d]+{ZH_SPAN}"),
            // Not a bare span ("提交20天了", "都45天了"): stated alone it reads as a report.
            // 等了两个礼拜, 等了整整三天
            format!(r"等了(?:整整|快|都|好|足足|将近)?{ZH_N}"),
            // 一条回复都没有, 影子都没有, 一点动静没有, 没人回
            r"(?:回复|回音|消息|电话|动静|影子|人影|下文|答复|说法)(?:都|也)?没(?:有)?".to_string(),
            r"没(?:有)?(?:人|一个人)(?:回|理|管|联系|处理|接)".to_string(),
        ];
        Regex::new(&patterns.join("|")).expect("valid regex")
    });
    re.find_iter(lower).count().min(2)
}

const ACRONYMS: &[&str] = &[
    "HTTP", "HTML", "JSON", "WIFI", "USPS", "FEDEX", "IBAN", "SWIFT", "HDMI", "VISA", "ASAP",
    "IMEI",
];

const ANGRY_EMOJI: &[char] = &[
    '😡', '😠', '🤬', '💢', '😤', '🙄', '🙃', '😒', '👎', '😑', '😩', '😫',
];

/// Lower case, with typographic apostrophes as ASCII ones ("don’t").
fn lowered(text: &str) -> String {
    let lower = text.to_lowercase();
    if lower.contains('’') {
        lower.replace('’', "'")
    } else {
        lower
    }
}

/// Runs of two or more of `marks` in a row ("!!", "？？？").
fn runs(text: &str, marks: &[char]) -> u32 {
    let (mut n, mut len) = (0, 0);
    for c in text.chars().chain(std::iter::once(' ')) {
        if marks.contains(&c) {
            len += 1;
        } else {
            n += u32::from(len >= 2);
            len = 0;
        }
    }
    n
}

/// Lower-case words of a text with their byte offsets: runs of ASCII letters, digits and
/// apostrophes (Chinese is matched by substring, not here).
/// One word of a text: where it starts, the word, and whether only spaces and punctuation
/// separate it from the word before (in "ok 有点慢 but" the two English words are not adjacent).
type Word<'a> = (usize, &'a str, bool);

fn words(lower: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    let mut linked = true;
    for (i, c) in lower
        .char_indices()
        .chain(std::iter::once((lower.len(), ' ')))
    {
        let part = c.is_ascii_alphanumeric() || c == '\'';
        match (part, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                let w = lower[s..i].trim_matches('\'');
                if !w.is_empty() {
                    out.push((s, w, linked));
                    linked = true;
                }
                start = None;
            }
            _ => {}
        }
        if !part && !c.is_ascii() && c.is_alphanumeric() {
            linked = false;
        }
    }
    out
}

/// WeChat codes such as "[微笑]" or "[OK]" are emoji, not words.
fn strip_codes(text: &str) -> String {
    if !text.contains('[') {
        return text.to_string();
    }
    static CODE: OnceLock<Regex> = OnceLock::new();
    let re = CODE.get_or_init(|| Regex::new(r"\[[^\[\]\s]{1,6}\]").expect("valid regex"));
    re.replace_all(text, " ").into_owned()
}

/// Identifiers a turn keeps, the first in the text: enough to tell new information, and a state
/// stays a few KiB whatever the text holds.
pub const MAX_IDENTIFIERS: usize = 16;

/// Hashes of the identifiers in a text: order numbers, tracking ids, phone numbers, amounts of
/// three digits or more, dates and email addresses, at most `MAX_IDENTIFIERS`. Only hashes are
/// kept in state, never the text.
pub fn identifiers(text: &str) -> Vec<u32> {
    if !text.bytes().any(|b| b.is_ascii_digit() || b == b'@') {
        return Vec::new();
    }
    static PATTERNS: OnceLock<Regex> = OnceLock::new();
    let re = PATTERNS.get_or_init(|| {
        Regex::new(concat!(
            r"[\w.+-]+@[\w-]+\.[\w.]+",               // email
            r"|\d{1,4}[/.-]\d{1,2}(?:[/.-]\d{1,4})?", // 3/12, 2026-01-05
            r"|\d{1,2}\s*月\s*\d{1,2}\s*[日号]",      // 12月3日
            r"|[A-Za-z0-9#_-]*\d[A-Za-z0-9#_-]*",     // tokens with digits, filtered below
        ))
        .expect("valid regex")
    });
    let mut out: Vec<u32> = re
        .find_iter(text)
        .map(|m| m.as_str())
        .filter(|t| {
            let digits = t.chars().filter(char::is_ascii_digit).count();
            let letters = t.chars().filter(char::is_ascii_alphabetic).count();
            t.contains('@')
                || t.contains('月')
                || t.contains(['/', '-'].as_ref()) && digits >= 2
                || digits >= 3
                || (digits >= 1 && letters >= 1 && t.len() >= 5)
        })
        .map(|t| {
            let mut h = DefaultHasher::new();
            t.to_lowercase().hash(&mut h);
            h.finish() as u32
        })
        .take(MAX_IDENTIFIERS)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Phrases {
        Phrases::shipped()
    }

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
            "有没有活人啊",
            "get me someone who can actually help",
            "human please",
            "人工！！",
        ] {
            assert!(
                matches!(p().request(text), KeywordHit::Request(_)),
                "{text}"
            );
        }
    }

    #[test]
    fn negated_requests_and_other_senses_are_not_requests() {
        for text in [
            "不用转人工了，谢谢",
            "不需要人工",
            "别转人工",
            "I don't need a human, just tell me the price",
            "no agent needed",
        ] {
            assert!(
                matches!(p().request(text), KeywordHit::Negated(_)),
                "{text}"
            );
        }
        for text in
            NOT_REQUESTS
                .iter()
                .chain(&["我的订单到哪了", "where is my refund", "the agenda"])
        {
            assert!(
                !matches!(p().request(text), KeywordHit::Request(_)),
                "{text}"
            );
        }
        assert_eq!(
            p().read("is the delivery agent bringing it today?")
                .other_sense
                .as_deref(),
            Some("delivery agent")
        );
    }

    #[test]
    fn a_list_that_reads_a_shipped_non_request_as_a_request_is_refused() {
        let lists = PhraseLists {
            requests: Some(vec!["agent".into()]),
            other_senses: Some(vec![]),
            ..Default::default()
        };
        let err = Phrases::compile(lists).unwrap_err();
        assert!(err.to_string().contains("not a request"), "{err}");
        let lists = PhraseLists {
            requests: Some(vec![]),
            person_words: Some(vec![]),
            ..Default::default()
        };
        assert!(matches!(
            Phrases::compile(lists),
            Err(PhrasesError::MissesRequest(_))
        ));
    }

    #[test]
    fn small_talk_is_greetings_thanks_and_acknowledgements_only() {
        for text in [
            "hi",
            "hello",
            "ok",
            "OK!",
            "thanks!!",
            "👍",
            "?",
            "？？",
            "在吗",
            "你好",
            "好的",
            "嗯嗯",
            "谢谢[微笑]",
            "are you there?",
            "hello??",
            "ok thanks bye",
            "好的 谢谢",
        ] {
            assert!(p().read(text).small_talk, "{text}");
        }
        for text in [
            "where is my order",
            "好的，那退款呢",
            "hi, my card was charged twice",
            "在吗 我的快递呢",
            "no I want a refund",
        ] {
            assert!(!p().read(text).small_talk, "{text}");
        }
    }

    #[test]
    fn identifiers_threats_cues() {
        assert_eq!(identifiers("where is my order 12345").len(), 1);
        assert_eq!(identifiers("the tracking number is 1Z999").len(), 1);
        assert!(identifiers("I have 2 items").is_empty());
        assert_eq!(identifiers("订单SC20481，12月3日下的").len(), 2);
        assert_eq!(identifiers("mail me at a.b@example.com").len(), 1);
        assert_eq!(
            p().read("再不解决我就去12315投诉").threat.as_deref(),
            Some("12315")
        );
        assert_eq!(p().read("I will sue you").threat.as_deref(), Some("sue"));
        assert_eq!(p().read("pursue a refund").threat, None);
        assert_eq!(p().read("I saw your ad on twitter").threat, None);
        assert!(p().read("I was charged TWICE!! 😡").upset_cues >= 3);
        assert_eq!(p().read("where is my parcel").upset_cues, 0);
        assert!(matches!(
            p().request("no need 转 agent 哈 就一个 quick question"),
            KeywordHit::Negated(_)
        ));
        // Counted attempts and waits are cues; a plain time or count is not.
        for upset in [
            "this is my third email about order 30912",
            "I already waited 2 days for an answer",
            "five days to get a reply. for a cracked jug.",
            "nothing. not one reply",
            "喂 我这是第五次打电话了",
            "说好24小时发货 今天第五天了",
            "等了两个礼拜一件没发",
            "我说了三遍了 快递员没打电话就点了签收",
            "周一就提交了 一条回复都没有",
        ] {
            assert!(p().read(upset).upset_cues >= 1, "{upset}");
        }
        for calm in [
            "delivery takes 5 days?",
            "my second order arrived today",
            "我买了两件",
            "三天内能发货吗",
            "what time do you open",
        ] {
            assert_eq!(p().read(calm).upset_cues, 0, "{calm}");
        }
        assert!(p().read("体验一般吧，物流有点慢").hedged);
        assert!(p().read("我问的是退款多久到账").repeat_cue);
        // A hedge inside an anger cue is not a hedge: 还好 in 还好意思.
        assert!(!p().read("电梯坏了半个月 你们还好意思涨价").hedged);
        assert_eq!(
            p().read("Our legal counsel is copied on this email.")
                .threat
                .as_deref(),
            Some("legal counsel")
        );
        assert_eq!(p().read("家里烟雾报警器半夜误报").threat, None);
        assert_eq!(p().read("想订个离法院附近的酒店").threat, None);
    }

    #[test]
    fn person_words_fraud_and_orders_are_read() {
        for text in [
            "can someone from billing call me",
            "你让个管红包的人跟我说",
            "找个人帮我订吧",
        ] {
            assert!(p().read(text).person_word, "{text}");
        }
        for text in [
            "ref TRV-55821",
            "Premier customer here",
            "里程怎么转给家人",
            "嗯 来电了",
            "is the delivery agent bringing it today?",
        ] {
            assert!(!p().read(text).person_word, "{text}");
        }
        assert_eq!(
            p().read("there's a direct debit I never set up")
                .fraud_cue
                .as_deref(),
            Some("never set up")
        );
        assert!(p()
            .read("我没办过贷款 为什么收到还款提醒")
            .fraud_cue
            .is_some());
        assert_eq!(p().read("保修卡丢了还能保修吗").fraud_cue, None);
        // Calling the company's practice fraud is a complaint, not a report of fraud.
        assert_eq!(p().read("this is fraud, I will sue you").fraud_cue, None);
        assert_eq!(p().read("你们这是诈骗").fraud_cue, None);
        assert!(p().read("can you cancel order 77120").about_order);
        assert!(p().read("帮我取消一下刚下的那个订单").about_order);
        assert!(!p().read("I want to cancel my membership").about_order);
        // A request that shares words with another sense is that sense.
        assert_eq!(p().request("我家燃气表要人工抄表吗"), KeywordHit::None);
        assert_eq!(
            p().request("我要人工"),
            KeywordHit::Request("要人工".into())
        );
    }
}
