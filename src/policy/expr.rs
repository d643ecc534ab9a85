//! Rule conditions: a small language over the signal catalogue, e.g.
//! `(request_human >= 0.5 or keyword_request) and not keyword_negated`.
//!
//! ```text
//! expr    := term ("or" term)*
//! term    := factor ("and" factor)*
//! factor  := "not" factor | "(" expr ")" | "always" | NAME [op literal | "in" "[" literal, … "]"]
//! op      := >= | > | <= | < | == | !=
//! literal := number | 'text' | "text" | true | false
//! ```
//!
//! Conditions are type-checked when the policy loads. `implies` lets the loader prove a rule can never
//! fire because an earlier one always fires first.

use super::catalog::{text_values, Kind, Ref, Signal, Values};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    fn holds(self, v: f64, t: f64) -> bool {
        match self {
            Op::Ge => v >= t,
            Op::Gt => v > t,
            Op::Le => v <= t,
            Op::Lt => v < t,
            Op::Eq => v == t,
            Op::Ne => v != t,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Always,
    Flag(Signal),
    Cmp(Signal, Op, f64),
    /// `x == 'a'` / `x in ['a', 'b']`, or their negation (`!=`, `not in`) when `negated`.
    Text {
        of: Ref,
        values: Vec<String>,
        negated: bool,
    },
    Not(Box<Expr>),
    All(Vec<Expr>),
    Any(Vec<Expr>),
}

impl Expr {
    /// The numeric comparisons of the condition, in a fixed order (`set_threshold` counts the same
    /// way), each with the text conditions it is ANDed with, written as in a policy
    /// (`channel == 'voice'`): moving its threshold only changes decisions where they hold.
    /// Conditions under a `not` are left out of the scope (they would read inverted).
    pub fn comparisons(&self) -> Vec<(Signal, Op, f64, Vec<String>)> {
        type Out = Vec<(Signal, Op, f64, Vec<String>)>;
        fn walk(e: &Expr, scope: &mut Vec<String>, negated: bool, out: &mut Out) {
            match e {
                Expr::Cmp(s, op, t) => out.push((*s, *op, *t, scope.clone())),
                Expr::Not(e) => walk(e, scope, true, out),
                Expr::Any(es) => es.iter().for_each(|e| walk(e, scope, negated, out)),
                Expr::All(es) => {
                    let outer = scope.len();
                    if !negated {
                        scope.extend(es.iter().filter_map(Expr::text_clause));
                    }
                    es.iter().for_each(|e| walk(e, scope, negated, out));
                    scope.truncate(outer);
                }
                Expr::Always | Expr::Flag(_) | Expr::Text { .. } => {}
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), false, &mut out);
        out
    }

    /// A text condition as a policy writes it.
    fn text_clause(&self) -> Option<String> {
        let Expr::Text {
            of,
            values,
            negated,
        } = self
        else {
            return None;
        };
        let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
        Some(match (quoted.as_slice(), negated) {
            ([one], false) => format!("{} == {one}", of.name()),
            ([one], true) => format!("{} != {one}", of.name()),
            (_, false) => format!("{} in [{}]", of.name(), quoted.join(", ")),
            (_, true) => format!("{} not in [{}]", of.name(), quoted.join(", ")),
        })
    }

    /// Set the threshold of comparison `n` (as `comparisons` numbers them); false if there is none.
    pub fn set_threshold(&mut self, n: usize, value: f64) -> bool {
        fn walk(e: &mut Expr, n: &mut usize, value: f64) -> bool {
            match e {
                Expr::Cmp(_, _, t) => {
                    if *n == 0 {
                        *t = value;
                        return true;
                    }
                    *n -= 1;
                    false
                }
                Expr::Not(e) => walk(e, n, value),
                Expr::All(es) | Expr::Any(es) => es.iter_mut().any(|e| walk(e, n, value)),
                Expr::Always | Expr::Flag(_) | Expr::Text { .. } => false,
            }
        }
        walk(self, &mut { n }, value)
    }

    /// The condition reads a caller-supplied attribute (`attr.NAME`) somewhere.
    pub fn reads_attributes(&self) -> bool {
        match self {
            Expr::Text { of, .. } => matches!(of, Ref::Attribute(_)),
            Expr::Not(e) => e.reads_attributes(),
            Expr::All(es) | Expr::Any(es) => es.iter().any(Expr::reads_attributes),
            Expr::Always | Expr::Flag(_) | Expr::Cmp(..) => false,
        }
    }
}

/// A condition that does not parse or type-check; `at` is the byte offset in the condition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub at: usize,
    pub message: String,
}

/// One fact a condition relied on, for a decision's reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub signal: String,
    pub value: f64,
    pub threshold: f64,
}

impl Expr {
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        let tokens = lex(src)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            end: src.len(),
        };
        let e = p.expr()?;
        match p.peek() {
            None => Ok(e),
            Some((at, t)) => Err(err(
                *at,
                format!("unexpected {t} after a complete condition"),
            )),
        }
    }

    pub fn eval(&self, v: &Values) -> bool {
        match self {
            Expr::Always => true,
            Expr::Flag(s) => v.flag(*s),
            Expr::Cmp(s, op, t) => op.holds(v.number(*s), *t),
            Expr::Text {
                of,
                values,
                negated,
            } => {
                let found = v.text(of).is_some_and(|x| values.iter().any(|w| w == x));
                found != *negated
            }
            Expr::Not(e) => !e.eval(v),
            Expr::All(es) => es.iter().all(|e| e.eval(v)),
            Expr::Any(es) => es.iter().any(|e| e.eval(v)),
        }
    }

    /// The facts that made a condition hold (call only when it does): every comparison, flag and
    /// match in the branches that held. Negated parts are left out: "not X" explains nothing.
    pub fn explain(&self, v: &Values, out: &mut Vec<Fact>) {
        match self {
            Expr::Always | Expr::Not(_) => {}
            Expr::Flag(s) => out.push(Fact {
                signal: v.flag_label(*s),
                value: 1.0,
                threshold: 1.0,
            }),
            Expr::Cmp(s, _, t) => out.push(Fact {
                signal: s.name().to_string(),
                value: v.number(*s),
                threshold: *t,
            }),
            Expr::Text { negated: true, .. } => {}
            Expr::Text { of, .. } => {
                let value = match of {
                    Ref::Signal(Signal::Intent) => v.intent_score as f64,
                    _ => 1.0,
                };
                out.push(Fact {
                    signal: format!("{}:{}", of.name(), v.text(of).unwrap_or_default()),
                    value,
                    threshold: 0.0,
                });
            }
            Expr::All(es) => es.iter().for_each(|e| e.explain(v, out)),
            Expr::Any(es) => es
                .iter()
                .filter(|e| e.eval(v))
                .for_each(|e| e.explain(v, out)),
        }
    }

    /// Every text value compared with `of` (to check intents against the model's labels).
    pub fn texts_of(&self, of: &Ref, out: &mut Vec<String>) {
        match self {
            Expr::Text { of: o, values, .. } if o == of => out.extend(values.iter().cloned()),
            Expr::Not(e) => e.texts_of(of, out),
            Expr::All(es) | Expr::Any(es) => es.iter().for_each(|e| e.texts_of(of, out)),
            _ => {}
        }
    }

    /// Whether `self` holding proves `other` holds (false when unsure: the check is conservative).
    pub fn implies(&self, other: &Expr) -> bool {
        match (self, other) {
            (_, Expr::Always) => true,
            (_, Expr::All(bs)) => bs.iter().all(|b| self.implies(b)),
            (Expr::Any(as_), _) => as_.iter().all(|a| a.implies(other)),
            (Expr::All(as_), _) if as_.iter().any(|a| a.implies(other)) => true,
            (_, Expr::Any(bs)) => bs.iter().any(|b| self.implies(b)),
            (Expr::Not(a), Expr::Not(b)) => b.implies(a),
            (Expr::Cmp(s, ..), Expr::Cmp(t, ..)) if s == t => {
                match (interval(self), interval(other)) {
                    (Some(a), Some(b)) => a.within(&b),
                    _ => self == other,
                }
            }
            (
                Expr::Text {
                    of: a,
                    values: av,
                    negated: an,
                },
                Expr::Text {
                    of: b,
                    values: bv,
                    negated: bn,
                },
            ) if a == b => match (an, bn) {
                (false, false) => av.iter().all(|x| bv.contains(x)),
                (false, true) => av.iter().all(|x| !bv.contains(x)),
                (true, true) => bv.iter().all(|x| av.contains(x)),
                (true, false) => false,
            },
            _ => self == other,
        }
    }

    /// Whether the condition can never hold: a top-level conjunction whose comparisons on one signal
    /// leave no value, or that asks one text to equal two different words.
    pub fn contradicts_itself(&self) -> bool {
        let parts: &[Expr] = match self {
            Expr::All(es) => es,
            e => std::slice::from_ref(e),
        };
        for (i, a) in parts.iter().enumerate() {
            for b in &parts[i + 1..] {
                if let (Some(x), Some(y)) = (interval(a), interval(b)) {
                    if same_signal(a, b) && x.intersect(&y).is_empty() {
                        return true;
                    }
                }
                if let (
                    Expr::Text {
                        of: oa,
                        values: va,
                        negated: false,
                    },
                    Expr::Text {
                        of: ob,
                        values: vb,
                        negated: false,
                    },
                ) = (a, b)
                {
                    if oa == ob && !va.iter().any(|x| vb.contains(x)) {
                        return true;
                    }
                }
                if *a == Expr::Not(Box::new(b.clone())) || *b == Expr::Not(Box::new(a.clone())) {
                    return true;
                }
            }
        }
        false
    }
}

fn same_signal(a: &Expr, b: &Expr) -> bool {
    matches!((a, b), (Expr::Cmp(s, ..), Expr::Cmp(t, ..)) if s == t)
}

/// The values a comparison admits, with open or closed ends.
#[derive(Debug, Clone, Copy)]
struct Interval {
    lo: f64,
    lo_open: bool,
    hi: f64,
    hi_open: bool,
}

fn interval(e: &Expr) -> Option<Interval> {
    let Expr::Cmp(_, op, t) = e else { return None };
    let (t, inf) = (*t, f64::INFINITY);
    let iv = |lo, lo_open, hi, hi_open| Interval {
        lo,
        lo_open,
        hi,
        hi_open,
    };
    Some(match op {
        Op::Ge => iv(t, false, inf, false),
        Op::Gt => iv(t, true, inf, false),
        Op::Le => iv(-inf, false, t, false),
        Op::Lt => iv(-inf, false, t, true),
        Op::Eq => iv(t, false, t, false),
        Op::Ne => return None,
    })
}

impl Interval {
    fn within(&self, o: &Interval) -> bool {
        let lo_ok = self.lo > o.lo || (self.lo == o.lo && (self.lo_open || !o.lo_open));
        let hi_ok = self.hi < o.hi || (self.hi == o.hi && (self.hi_open || !o.hi_open));
        lo_ok && hi_ok
    }

    fn intersect(&self, o: &Interval) -> Interval {
        let (lo, lo_open) = if self.lo > o.lo || (self.lo == o.lo && self.lo_open) {
            (self.lo, self.lo_open)
        } else {
            (o.lo, o.lo_open)
        };
        let (hi, hi_open) = if self.hi < o.hi || (self.hi == o.hi && self.hi_open) {
            (self.hi, self.hi_open)
        } else {
            (o.hi, o.hi_open)
        };
        Interval {
            lo,
            lo_open,
            hi,
            hi_open,
        }
    }

    fn is_empty(&self) -> bool {
        self.lo > self.hi || (self.lo == self.hi && (self.lo_open || self.hi_open))
    }

    fn overlaps(&self, min: f64, max: f64) -> bool {
        !self
            .intersect(&Interval {
                lo: min,
                lo_open: false,
                hi: max,
                hi_open: false,
            })
            .is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Num(f64),
    Str(String),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Name(n) => write!(f, "{n:?}"),
            Tok::Num(n) => write!(f, "{n}"),
            Tok::Str(s) => write!(f, "'{s}'"),
            Tok::Op(o) => write!(f, "{o:?}"),
            Tok::LParen => f.write_str("\"(\""),
            Tok::RParen => f.write_str("\")\""),
            Tok::LBracket => f.write_str("\"[\""),
            Tok::RBracket => f.write_str("\"]\""),
            Tok::Comma => f.write_str("\",\""),
        }
    }
}

fn err(at: usize, message: String) -> ExprError {
    ExprError { at, message }
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let two = |s: &str| src[i..].starts_with(s);
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b',' => Tok::Comma,
            _ if two(">=") || two("<=") || two("==") || two("!=") => {
                i += 1;
                Tok::Op(match &src[start..start + 2] {
                    ">=" => Op::Ge,
                    "<=" => Op::Le,
                    "==" => Op::Eq,
                    _ => Op::Ne,
                })
            }
            b'>' => Tok::Op(Op::Gt),
            b'<' => Tok::Op(Op::Lt),
            b'\'' | b'"' => {
                let close = src[i + 1..]
                    .find(c as char)
                    .ok_or_else(|| err(start, "text is not closed with a quote".into()))?;
                i += close + 1;
                Tok::Str(src[start + 1..i].to_string())
            }
            b'0'..=b'9' | b'-' | b'.' => {
                while i + 1 < b.len() && matches!(b[i + 1], b'0'..=b'9' | b'.' | b'-' | b'e') {
                    i += 1;
                }
                let text = &src[start..=i];
                Tok::Num(
                    text.parse()
                        .map_err(|_| err(start, format!("{text:?} is not a number")))?,
                )
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                while i + 1 < b.len()
                    && (b[i + 1].is_ascii_alphanumeric() || b"_.".contains(&b[i + 1]))
                {
                    i += 1;
                }
                Tok::Name(src[start..=i].to_string())
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(err(start, format!("unexpected character {ch:?}")));
            }
        };
        out.push((start, tok));
        i += 1;
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&(usize, Tok)> {
        self.tokens.get(self.pos)
    }

    fn at(&self) -> usize {
        self.peek().map_or(self.end, |(at, _)| *at)
    }

    fn next(&mut self) -> Option<(usize, Tok)> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some((_, Tok::Name(n))) if n == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: Tok) -> Result<(), ExprError> {
        match self.next() {
            Some((_, t)) if t == want => Ok(()),
            Some((at, t)) => Err(err(at, format!("expected {want}, found {t}"))),
            None => Err(err(self.end, format!("expected {want} at the end"))),
        }
    }

    fn expr(&mut self) -> Result<Expr, ExprError> {
        let mut parts = vec![self.term()?];
        while self.keyword("or") {
            parts.push(self.term()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Any(parts)
        })
    }

    fn term(&mut self) -> Result<Expr, ExprError> {
        let mut parts = vec![self.factor()?];
        while self.keyword("and") {
            parts.push(self.factor()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::All(parts)
        })
    }

    fn factor(&mut self) -> Result<Expr, ExprError> {
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.factor()?)));
        }
        if self.keyword("always") {
            return Ok(Expr::Always);
        }
        match self.next() {
            Some((_, Tok::LParen)) => {
                let e = self.expr()?;
                self.expect(Tok::RParen)?;
                Ok(e)
            }
            Some((at, Tok::Name(name))) => self.condition(at, &name),
            Some((at, t)) => Err(err(at, format!("expected a signal name, found {t}"))),
            None => Err(err(self.end, "the condition ends too early".into())),
        }
    }

    fn condition(&mut self, at: usize, name: &str) -> Result<Expr, ExprError> {
        let of = match name.strip_prefix("attr.") {
            Some(a) if !a.is_empty() => Ref::Attribute(a.to_string()),
            _ => Ref::Signal(Signal::from_name(name).ok_or_else(|| {
                let known: Vec<_> = Signal::ALL.iter().map(|s| s.name()).collect();
                err(
                    at,
                    format!(
                        "unknown signal {name:?}; known: {}, or attr.NAME",
                        known.join(", ")
                    ),
                )
            })?),
        };
        let kind = of.kind();
        let op_at = self.at();
        let negated_in = matches!(self.tokens.get(self.pos..self.pos + 2),
            Some([(_, Tok::Name(n)), (_, Tok::Name(i))]) if n == "not" && i == "in");
        if negated_in || self.keyword("in") {
            if negated_in {
                self.pos += 2;
            }
            if kind != Kind::Text {
                return Err(err(
                    op_at,
                    format!("{} is not text: `in` needs text", of.name()),
                ));
            }
            self.expect(Tok::LBracket)?;
            let mut values = vec![self.text_literal(&of)?];
            while matches!(self.peek(), Some((_, Tok::Comma))) {
                self.pos += 1;
                values.push(self.text_literal(&of)?);
            }
            self.expect(Tok::RBracket)?;
            return Ok(Expr::Text {
                of,
                values,
                negated: negated_in,
            });
        }
        let op = match self.peek() {
            Some((_, Tok::Op(op))) => *op,
            _ => {
                return match (kind, &of) {
                    (Kind::Flag, Ref::Signal(s)) => Ok(Expr::Flag(*s)),
                    _ => Err(err(
                        op_at,
                        format!("{} needs a comparison (>=, <, ==, in [...])", of.name()),
                    )),
                }
            }
        };
        self.pos += 1;
        match (kind, &of) {
            (Kind::Text, _) => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return Err(err(
                        op_at,
                        format!("{} is text: use == or != or in", of.name()),
                    ));
                }
                Ok(Expr::Text {
                    values: vec![self.text_literal(&of)?],
                    of,
                    negated: op == Op::Ne,
                })
            }
            (Kind::Flag, Ref::Signal(s)) => {
                let lit_at = self.at();
                let value = match self.next() {
                    Some((_, Tok::Name(b))) if b == "true" => true,
                    Some((_, Tok::Name(b))) if b == "false" => false,
                    _ => return Err(err(lit_at, format!("{} is true or false", s.name()))),
                };
                match op {
                    Op::Eq if value => Ok(Expr::Flag(*s)),
                    Op::Ne if !value => Ok(Expr::Flag(*s)),
                    Op::Eq | Op::Ne => Ok(Expr::Not(Box::new(Expr::Flag(*s)))),
                    _ => Err(err(
                        op_at,
                        format!("{} is true or false: use == or !=", s.name()),
                    )),
                }
            }
            (Kind::Number { .. } | Kind::Count, Ref::Signal(s)) => {
                let lit_at = self.at();
                let t = match self.next() {
                    Some((_, Tok::Num(n))) => n,
                    Some((at, t)) => {
                        return Err(err(
                            at,
                            format!("{} compares with a number, found {t}", s.name()),
                        ))
                    }
                    None => {
                        return Err(err(lit_at, format!("{} compares with a number", s.name())))
                    }
                };
                let (min, max) = match kind {
                    Kind::Number { min, max } => (min, max),
                    _ => (0.0, f64::INFINITY),
                };
                let e = Expr::Cmp(*s, op, t);
                if interval(&e).is_some_and(|iv| !iv.overlaps(min, max)) {
                    return Err(err(
                        lit_at,
                        format!(
                            "{} {op:?} {t} can never hold: {} is in [{min}, {max}]",
                            s.name(),
                            s.name()
                        ),
                    ));
                }
                Ok(e)
            }
            (_, Ref::Attribute(_)) => unreachable!("attributes are text"),
        }
    }

    fn text_literal(&mut self, of: &Ref) -> Result<String, ExprError> {
        match self.next() {
            Some((at, Tok::Str(s))) => {
                if let Ref::Signal(sig) = of {
                    if let Some(known) = text_values(*sig) {
                        if !known.contains(&s.as_str()) {
                            return Err(err(
                                at,
                                format!(
                                    "{} is never {s:?}; it is one of {}",
                                    sig.name(),
                                    known.join(", ")
                                ),
                            ));
                        }
                    }
                }
                Ok(s)
            }
            Some((at, t)) => Err(err(at, format!("expected quoted text, found {t}"))),
            None => Err(err(self.end, "expected quoted text at the end".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Expr {
        Expr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_and_evaluates() {
        let e = p("(request_human >= 0.5 or keyword_request) and not keyword_negated");
        let mut v = Values::default();
        v.s.request_human = 0.7;
        assert!(e.eval(&v));
        v.s.keyword_negated = true;
        assert!(!e.eval(&v));
        let e = p("intent in ['complaint', 'refund'] and tier != 'vip' and attr.plan == 'gold'");
        let attrs = [("plan".to_string(), "gold".to_string())].into();
        let v = Values {
            s: crate::policy::Snapshot {
                intent: "refund".into(),
                tier: "standard".into(),
                ..Default::default()
            },
            attributes: Some(&attrs),
            ..Default::default()
        };
        assert!(e.eval(&v));
        assert!(p("bot_failed == false").eval(&v));
        assert!(!p("attr.region == 'eu'").eval(&v), "absent attribute");
    }

    #[test]
    fn errors_name_the_place_and_the_problem() {
        let e = Expr::parse("negativty >= 0.8").unwrap_err();
        assert_eq!(e.at, 0);
        assert!(e.message.contains("unknown signal \"negativty\""), "{e}");
        let e = Expr::parse("negativity >= 1.5").unwrap_err();
        assert!(e.message.contains("never hold"), "{e}");
        let e = Expr::parse("channel == 'fax'").unwrap_err();
        assert!(e.message.contains("never \"fax\""), "{e}");
        assert!(Expr::parse("intent >= 0.5").is_err());
        assert!(Expr::parse("negativity >= 0.5 and").is_err());
        assert!(Expr::parse("(threat").is_err());
        assert!(Expr::parse("negativity").is_err());
    }

    #[test]
    fn implication_finds_shadowed_conditions() {
        assert!(p("negativity >= 0.9").implies(&p("negativity >= 0.85")));
        assert!(!p("negativity >= 0.8").implies(&p("negativity >= 0.85")));
        assert!(p("negativity >= 0.9 and turns >= 1").implies(&p("negativity > 0.5")));
        assert!(p("threat").implies(&p("threat or bot_failed")));
        assert!(!p("threat or bot_failed").implies(&p("threat")));
        assert!(p("intent == 'refund'").implies(&p("intent in ['refund', 'complaint']")));
        assert!(p("tier == 'vip'").implies(&p("tier != 'standard'")));
        assert!(p("threat").implies(&p("always")));
        assert!(p("negativity >= 0.5 and negativity < 0.4").contradicts_itself());
        assert!(p("tier == 'vip' and tier == 'standard'").contradicts_itself());
        assert!(p("threat and not threat").contradicts_itself());
        assert!(!p("negativity >= 0.5 and negativity < 0.9").contradicts_itself());
    }
}
