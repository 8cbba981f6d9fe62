//! Matching a token sequence against a rule graph.
//!
//! A memoised chart over (expansion, start position): for every expansion reached, the set of
//! input positions where it can end. Sets are `u128` bitsets over positions `0..=n` plus one
//! extra position ω that stands for "past the end of the input": a token met at the end of
//! the input ends at ω, and everything but `VOID` continues from ω to ω. So the root reaching
//! `n` is a complete match and the root reaching ω means a longer input could match (the
//! input is a proper prefix of a sentence). Memoisation keeps the work polynomial (each
//! expansion is evaluated once per start position); left recursion is refused when the
//! grammar is built, and a reference met again at the same position (only possible across
//! grammars) yields nothing. A step budget and a depth bound cap hostile grammars.
//!
//! The parse tree is rebuilt top-down from the chart: the first alternative in document
//! order, sequence splits and repetition counts chosen greedily (earlier parts as long as
//! possible, as few repetitions as the input allows).

use std::collections::HashMap;

use super::Mode;
use super::builtin::{Builtin, BuiltinMatch};
use super::model::{Model, Node, NodeId, Target};
use super::tree::{ParseNode, RuleMatch, RuleName};

/// Most input tokens matched (positions must fit the `u128` sets with ω).
pub(crate) const MAX_TOKENS: usize = 126;

/// Chart entries evaluated before a match is abandoned as too costly.
const BUDGET: u32 = 400_000;

/// Deepest evaluation nesting (bounds the stack).
const MAX_DEPTH: u32 = 600;

type Set = u128;

fn bit(pos: usize) -> Set {
    1u128
        .checked_shl(u32::try_from(pos).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

fn has(set: Set, pos: usize) -> bool {
    set & bit(pos) != 0
}

/// The positions in `set`, ascending.
fn positions(set: Set) -> impl DoubleEndedIterator<Item = usize> {
    (0..128usize).filter(move |&p| has(set, p))
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Busy,
    Done(Set),
}

/// The outcome of matching from a set of start rules.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The parse of the first start rule that matches the whole input.
    pub(crate) tree: Option<RuleMatch>,
    /// Whether some longer input would match.
    pub(crate) more: bool,
}

/// One match of one input against a set of linked grammars.
pub(crate) struct Matcher<'a> {
    models: &'a [&'a Model],
    links: &'a [(url::Url, usize)],
    raw: &'a [&'a str],
    tokens: Vec<String>,
    omega: usize,
    memo: HashMap<(u16, NodeId, u32, u8), Entry>,
    spent: u32,
    depth: u32,
}

impl<'a> Matcher<'a> {
    /// A matcher over `models` (index 0 holds the start rules; `links` maps external grammar
    /// URIs to indexes) for `raw` tokens (at most [`MAX_TOKENS`]).
    pub(crate) fn new(
        models: &'a [&'a Model],
        links: &'a [(url::Url, usize)],
        raw: &'a [&'a str],
    ) -> Self {
        Self {
            models,
            links,
            raw,
            tokens: raw.iter().map(|t| t.to_lowercase()).collect(),
            omega: raw.len() + 1,
            memo: HashMap::new(),
            spent: 0,
            depth: 0,
        }
    }

    fn n(&self) -> usize {
        self.omega - 1
    }

    /// Matches the whole input from each of `starts` (model 0's rules) in order.
    pub(crate) fn run(&mut self, starts: &[usize]) -> Outcome {
        let mut more = false;
        let mut tree = None;
        if self.raw.len() > MAX_TOKENS {
            return Outcome { tree, more };
        }
        let Some(&model) = self.models.first() else {
            return Outcome { tree, more };
        };
        for &start in starts {
            let Some(rule) = model.rules.get(start) else {
                continue;
            };
            let ends = self.ends(0, rule.body, 0, 0);
            if self.spent > BUDGET {
                return Outcome {
                    tree: None,
                    more: false,
                };
            }
            more |= has(ends, self.omega);
            if tree.is_none() && has(ends, self.n()) {
                let mut children = Vec::new();
                if self.build(0, rule.body, 0, self.n(), &mut children) {
                    tree = Some(RuleMatch {
                        name: RuleName::Local(rule.name.clone()),
                        children,
                        format: model.tag_format,
                    });
                }
            }
        }
        Outcome { tree, more }
    }

    fn model(&self, g: u16) -> Option<&'a Model> {
        self.models.get(usize::from(g)).copied()
    }

    /// Where expansion `node` (from its `sub`-th part, for sequences) can end from `pos`.
    fn ends(&mut self, g: u16, node: NodeId, sub: u32, pos: usize) -> Set {
        let Ok(pos8) = u8::try_from(pos) else {
            return 0;
        };
        let key = (g, node, sub, pos8);
        match self.memo.get(&key) {
            Some(Entry::Done(set)) => return *set,
            Some(Entry::Busy) => return 0,
            None => {}
        }
        self.spent += 1;
        if self.spent > BUDGET || self.depth > MAX_DEPTH {
            return 0;
        }
        self.memo.insert(key, Entry::Busy);
        self.depth += 1;
        let set = self.evaluate(g, node, sub, pos);
        self.depth -= 1;
        self.memo.insert(key, Entry::Done(set));
        set
    }

    fn evaluate(&mut self, g: u16, node: NodeId, sub: u32, pos: usize) -> Set {
        let Some(model) = self.model(g) else {
            return 0;
        };
        let omega = self.omega;
        match model.node(node) {
            Node::Token { words, spoken, .. } => {
                if pos == omega {
                    return bit(omega);
                }
                let written = self.words_end(words, pos);
                match spoken {
                    Some(spoken) => written | self.words_end(spoken, pos),
                    None => written,
                }
            }
            Node::Tag(_) | Node::Null => bit(pos),
            Node::Void => 0,
            Node::Garbage => {
                if pos == omega {
                    bit(omega)
                } else {
                    (pos..=omega).fold(0, |set, p| set | bit(p))
                }
            }
            Node::Seq(parts) => {
                let Some(&part) = parts.get(sub as usize) else {
                    return bit(pos);
                };
                let first = self.ends(g, part, 0, pos);
                positions(first).fold(0, |set, p| set | self.ends(g, node, sub + 1, p))
            }
            Node::Alt(alts) => alts
                .iter()
                .fold(0, |set, &alt| set | self.ends(g, alt, 0, pos)),
            Node::Repeat { body, min, max } => {
                let (levels, stable) = self.levels(g, *body, *max, pos);
                let mut set = 0;
                for (i, level) in levels.iter().enumerate() {
                    if i as u64 >= u64::from(*min) {
                        set |= level;
                    }
                }
                if stable && ((levels.len() - 1) as u64) < u64::from(*min) {
                    set |= levels.last().copied().unwrap_or(0);
                }
                set
            }
            Node::Ref(Target::Builtin { builtin, .. }) => {
                self.builtin_ends(builtin, model.mode, pos)
            }
            Node::Ref(target) => match self.resolve(g, target) {
                Some((g2, body, _)) => self.ends(g2, body, 0, pos),
                None => 0,
            },
        }
    }

    /// Where `words` in order, from `pos` (not ω), end: nowhere, a position, or ω when the
    /// input ends inside them.
    fn words_end(&self, words: &[String], pos: usize) -> Set {
        let mut at = pos;
        for word in words {
            match self.tokens.get(at) {
                None => return bit(self.omega),
                Some(token) if token == word => at += 1,
                Some(_) => return 0,
            }
        }
        bit(at)
    }

    /// Position sets after 0, 1, 2, … repetitions of `body` from `pos`. `true` when the last
    /// set repeats for ever (a fixed point), `false` when it is the last reachable one.
    fn levels(&mut self, g: u16, body: NodeId, max: Option<u32>, pos: usize) -> (Vec<Set>, bool) {
        let mut levels = vec![bit(pos)];
        // Without a fixed point positions strictly advance, so this many levels suffice.
        let limit = 2 * (self.omega + 2);
        loop {
            let done = levels.len() - 1;
            let current = levels.last().copied().unwrap_or(0);
            if current == 0 || max.is_some_and(|m| done as u64 >= u64::from(m)) {
                return (levels, false);
            }
            let next = positions(current).fold(0, |set, p| set | self.ends(g, body, 0, p));
            if next == current {
                return (levels, true);
            }
            if levels.len() > limit {
                return (levels, false);
            }
            levels.push(next);
        }
    }

    fn builtin_ends(&self, builtin: &Builtin, mode: Mode, pos: usize) -> Set {
        if pos == self.omega {
            return bit(self.omega);
        }
        let mut set = 0;
        for end in pos..=self.n() {
            let words: Vec<&str> = self
                .tokens
                .get(pos..end)
                .unwrap_or_default()
                .iter()
                .map(String::as_str)
                .collect();
            match builtin.judge(&words, mode) {
                BuiltinMatch::Complete(_) => set |= bit(end),
                BuiltinMatch::Extendable(_) => set |= bit(end) | bit(self.omega),
                BuiltinMatch::Prefix => set |= bit(self.omega),
                BuiltinMatch::NoMatch => {}
            }
        }
        // Only the judgement of the whole remaining input can say "wants more".
        let rest: Vec<&str> = self
            .tokens
            .get(pos..)
            .unwrap_or_default()
            .iter()
            .map(String::as_str)
            .collect();
        if !matches!(
            builtin.judge(&rest, mode),
            BuiltinMatch::Prefix | BuiltinMatch::Extendable(_)
        ) {
            set &= !bit(self.omega);
        }
        set
    }

    /// The grammar, body and printed name a (non-builtin) reference in grammar `g` leads to.
    fn resolve(&self, g: u16, target: &Target) -> Option<(u16, NodeId, RuleName)> {
        let model = self.model(g)?;
        match target {
            Target::Local(rule) => {
                let rule = model.rules.get(*rule)?;
                Some((g, rule.body, RuleName::Local(rule.name.clone())))
            }
            Target::External(ext) => {
                let &(_, index) = self.links.iter().find(|(url, _)| *url == ext.url)?;
                let g2 = u16::try_from(index).ok()?;
                let other = self.model(g2)?;
                if other.mode != model.mode {
                    return None;
                }
                match ext.media_type.as_deref().map(str::trim) {
                    Some("application/srgs+xml") if other.form != super::model::Form::Xml => {
                        return None;
                    }
                    Some("application/srgs") if other.form != super::model::Form::Abnf => {
                        return None;
                    }
                    _ => {}
                }
                let rule = match &ext.rule {
                    Some(name) => other
                        .rule_named(name)
                        .filter(|&r| other.rules.get(r).is_some_and(|r| r.public))?,
                    None => other.root?,
                };
                let mut resolved = ext.url.clone();
                resolved.set_fragment(ext.rule.as_deref());
                Some((
                    g2,
                    other.rules.get(rule)?.body,
                    RuleName::External {
                        written: ext.written.clone(),
                        resolved,
                    },
                ))
            }
            Target::Builtin { .. } => None,
        }
    }

    /// Appends the parse of `node` from `from` to `to` to `out`; `false` if there is none.
    fn build(
        &mut self,
        g: u16,
        node: NodeId,
        from: usize,
        to: usize,
        out: &mut Vec<ParseNode>,
    ) -> bool {
        if !has(self.ends(g, node, 0, from), to) || self.depth > MAX_DEPTH {
            return false;
        }
        let Some(model) = self.model(g) else {
            return false;
        };
        self.depth += 1;
        let built = match model.node(node) {
            Node::Token { text, .. } => {
                out.push(ParseNode::Token(text.clone()));
                true
            }
            Node::Tag(text) => {
                out.push(ParseNode::Tag(text.clone()));
                true
            }
            Node::Null | Node::Garbage => true,
            Node::Void => false,
            Node::Seq(parts) => self.build_seq(g, node, parts.len(), 0, from, to, out),
            Node::Alt(alts) => {
                let alt = alts
                    .iter()
                    .copied()
                    .find(|&alt| has(self.ends(g, alt, 0, from), to));
                alt.is_some_and(|alt| self.build(g, alt, from, to, out))
            }
            Node::Repeat { body, min, max } => {
                self.build_repeat(g, *body, *min, *max, from, to, out)
            }
            Node::Ref(Target::Builtin { uri, builtin }) => {
                let words: Vec<&str> = self
                    .tokens
                    .get(from..to)
                    .unwrap_or_default()
                    .iter()
                    .map(String::as_str)
                    .collect();
                match builtin.judge(&words, model.mode) {
                    BuiltinMatch::Complete(value) | BuiltinMatch::Extendable(value) => {
                        let tokens = self
                            .raw
                            .get(from..to)
                            .unwrap_or_default()
                            .iter()
                            .map(|t| (*t).to_owned())
                            .collect();
                        out.push(ParseNode::Builtin {
                            uri: uri.clone(),
                            tokens,
                            value,
                        });
                        true
                    }
                    _ => false,
                }
            }
            Node::Ref(target) => match self.resolve(g, target) {
                Some((g2, body, name)) => {
                    let mut children = Vec::new();
                    let ok = self.build(g2, body, from, to, &mut children);
                    let format = self.model(g2).map_or(model.tag_format, |m| m.tag_format);
                    out.push(ParseNode::Rule(RuleMatch {
                        name,
                        children,
                        format,
                    }));
                    ok
                }
                None => false,
            },
        };
        self.depth -= 1;
        built
    }

    #[allow(clippy::too_many_arguments)]
    fn build_seq(
        &mut self,
        g: u16,
        node: NodeId,
        len: usize,
        sub: usize,
        from: usize,
        to: usize,
        out: &mut Vec<ParseNode>,
    ) -> bool {
        if sub >= len {
            return from == to;
        }
        let Some(Node::Seq(parts)) = self.model(g).map(|m| m.node(node)) else {
            return false;
        };
        let Some(&part) = parts.get(sub) else {
            return false;
        };
        let Ok(next) = u32::try_from(sub + 1) else {
            return false;
        };
        let firsts = self.ends(g, part, 0, from);
        // Greedy: the longest first part that still lets the rest end at `to`.
        let split = positions(firsts)
            .rev()
            .filter(|&m| m <= to)
            .find(|&m| has(self.ends(g, node, next, m), to));
        match split {
            Some(m) => {
                self.build(g, part, from, m, out)
                    && self.build_seq(g, node, len, sub + 1, m, to, out)
            }
            None => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn build_repeat(
        &mut self,
        g: u16,
        body: NodeId,
        min: u32,
        max: Option<u32>,
        from: usize,
        to: usize,
        out: &mut Vec<ParseNode>,
    ) -> bool {
        let (levels, stable) = self.levels(g, body, max, from);
        let last = levels.len() - 1;
        let level = |k: usize| -> Set {
            match levels.get(k) {
                Some(set) => *set,
                None if stable => levels.get(last).copied().unwrap_or(0),
                None => 0,
            }
        };
        let top = if stable {
            max.map_or_else(|| last.max(min as usize), |m| m as usize)
        } else {
            last
        };
        // The fewest repetitions that reach `to`.
        let Some(count) = (min as usize..=top).find(|&k| has(level(k), to)) else {
            return false;
        };
        // Walk back from `to`, choosing the latest possible start of each repetition.
        let mut cuts = vec![to; count + 1];
        for j in (1..=count).rev() {
            let end = cuts.get(j).copied().unwrap_or(to);
            let start = positions(level(j - 1))
                .rev()
                .filter(|&p| p <= end)
                .find(|&p| has(self.ends(g, body, 0, p), end));
            match (start, cuts.get_mut(j - 1)) {
                (Some(p), Some(slot)) => *slot = p,
                _ => return false,
            }
        }
        let mut empty_seen = false;
        for pair in cuts.windows(2) {
            let [a, b] = pair else { continue };
            if a == b {
                // Repetitions that consume nothing add nothing to the parse but their tags;
                // keep the first.
                if empty_seen {
                    continue;
                }
                empty_seen = true;
            }
            if !self.build(g, body, *a, *b, out) {
                return false;
            }
        }
        true
    }
}
