//! Compiled rules: conditions parsed and type-checked, and the order checked for rules that can
//! never decide (an earlier rule always fires first, or the condition contradicts itself).

use std::ops::Range;

use super::catalog::{Ref, Signal, Values};
use super::config::{RuleAction, RuleConfig};
use super::expr::{Expr, Fact};
use super::PolicyError;

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub when: Expr,
    pub action: RuleAction,
    pub queue: Option<String>,
    pub priority: Option<i32>,
    pub detail: String,
}

impl Rule {
    pub fn fires(&self, v: &Values) -> bool {
        self.when.eval(v)
    }

    pub fn facts(&self, v: &Values) -> Vec<Fact> {
        let mut out = Vec::new();
        self.when.explain(v, &mut out);
        out
    }
}

/// Parse every rule and check the order. Errors carry the span of the offending text.
pub fn compile(configs: &[RuleConfig]) -> Result<Vec<Rule>, PolicyError> {
    if configs.is_empty() {
        return Err(PolicyError::Setting {
            key: "rules".into(),
            message: "the policy has no [[rules]]: every message would stay with the bot".into(),
        });
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(configs.len());
    for (i, c) in configs.iter().enumerate() {
        let id = c.id.get_ref().clone();
        let fail = |span: Range<usize>, message: String| PolicyError::Rule {
            id: id.clone(),
            span: Some(span),
            message,
        };
        if id.is_empty() || !id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            return Err(fail(
                c.id.span(),
                "rule ids are non-empty and use a-z, 0-9 and _".into(),
            ));
        }
        if let Some(j) = configs[..i].iter().position(|o| o.id.get_ref() == &id) {
            let msg = format!(
                "rule id {id:?} is used twice (rule {} and {})",
                j + 1,
                i + 1
            );
            return Err(fail(c.id.span(), msg));
        }
        // The span covers the quoted value; offsets inside the condition start one byte later.
        let when_span = c.when.span();
        let when = Expr::parse(c.when.get_ref()).map_err(|e| {
            let at = when_span.start + 1 + e.at;
            fail(at..at + 1, format!("in `when`: {}", e.message))
        })?;
        if when.contradicts_itself() {
            return Err(fail(
                when_span,
                "unreachable: the condition contradicts itself and can never hold".into(),
            ));
        }
        if let Some(earlier) = rules.iter().find(|r| when.implies(&r.when)) {
            return Err(fail(
                when_span,
                format!(
                    "unreachable: rule {:?} comes first and fires whenever this one would",
                    earlier.id
                ),
            ));
        }
        if c.action == RuleAction::ContinueBot && (c.queue.is_some() || c.priority.is_some()) {
            return Err(fail(
                c.id.span(),
                "a continue_bot rule names no queue or priority".into(),
            ));
        }
        rules.push(Rule {
            id,
            when,
            action: c.action,
            queue: c.queue.clone(),
            priority: c.priority,
            detail: c.detail.clone(),
        });
    }
    Ok(rules)
}

/// Every intent the rules compare with, and the span of the rule naming it.
pub fn named_intents<'a>(
    rules: &'a [Rule],
    configs: &'a [RuleConfig],
) -> impl Iterator<Item = (String, &'a str, Range<usize>)> + 'a {
    rules.iter().zip(configs).flat_map(|(r, c)| {
        let mut intents = Vec::new();
        r.when.texts_of(&Ref::Signal(Signal::Intent), &mut intents);
        intents
            .into_iter()
            .map(move |i| (i, r.id.as_str(), c.when.span()))
    })
}
