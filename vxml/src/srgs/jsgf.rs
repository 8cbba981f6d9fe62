//! A voice grammar as JSGF, the grammar format a speech recogniser (pocketsphinx) takes.
//!
//! [`Grammar::to_jsgf`] translates the rule graph of a voice grammar, its linked external
//! grammars and the builtins it references into one JSGF grammar whose public rule `<root>`
//! accepts the same word strings (a superset where noted below). Tags are dropped: the
//! recogniser only has to find the words; the hypothesis is then matched again by the SRGS
//! grammar itself, which computes the SISR value and enforces everything the JSGF only
//! approximates.
//!
//! - Tokens become the words a recogniser's dictionary spells (`3` → `three`, `U.S.A.` →
//!   `u s a`; [`super::spoken`]); the SRGS matcher accepts those words for the token too.
//! - one-of → `|`, with `/weight/` when the grammar gives weights (an alternative of weight
//!   0 is dropped); ruleref → `<rule>` (rules
//!   of external grammars and builtins become extra rules with mangled names); `NULL` →
//!   `<NULL>`; tags → nothing.
//! - `VOID`, and everything that can only match through it, is removed (sphinxbase turns a
//!   `<VOID>` alternative into "accept nothing but silence"); a grammar that matches nothing
//!   is refused.
//! - `GARBAGE` → `<NULL>`. Measured with pocketsphinx 5prealpha (en-us model, espeak-ng, a
//!   10-city grammar between two `GARBAGE`s, 8 phrases such as "I want to go to chicago"):
//!   `<NULL>` gave the city right 7 of 8 times; a loop over the grammar's own words also 7 of 8
//!   but with stray city names in the hypothesis ("tokyo chicago"); a loop over 36 common
//!   short words 5 of 8 (it swallowed "london" whole). The recogniser aligns the extra speech
//!   to silence and filler models, so `<NULL>` is the most accurate choice.
//! - `repeat` m–n up to [`EXPAND_LIMIT`] is written out (`x x [x [x]]`, the body as a helper
//!   rule when it is not a single word or rule); a larger bound becomes `*`/`+` (a superset:
//!   the SRGS re-parse enforces the count).
//! - Recursion: a rule may refer to itself (directly or through others) only as its last
//!   expansion (right recursion), which a finite-state recogniser can follow; other recursion
//!   is refused.
//! - Limits: at most [`MAX_JSGF_BYTES`] of output and [`MAX_JSGF_DEPTH`] nested expansions.

mod builtins;

use std::collections::{HashMap, HashSet};

use super::model::{Model, Node, NodeId, Target};
use super::{Grammar, Kind, Mode};

/// Most bytes of JSGF one grammar may translate to.
pub const MAX_JSGF_BYTES: usize = 1 << 20;

/// Largest repeat count written out; larger ones become `*` / `+`.
pub const EXPAND_LIMIT: u32 = 20;

/// Deepest expansion nesting translated.
pub const MAX_JSGF_DEPTH: usize = 300;

/// A grammar in JSGF, ready for a recogniser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jsgf {
    /// The JSGF text: `#JSGF V1.0;`, `grammar outdial;`, `public <root> = …;` and its rules.
    pub text: String,
    /// Every word the grammar uses, sorted, without duplicates. Check them against the
    /// recogniser's dictionary: pocketsphinx refuses a grammar with a word it has no
    /// pronunciation for ("The word 'x' is missing in the dictionary").
    pub words: Vec<String>,
    /// A stable 64-bit hash (FNV-1a) of `text`, for caches.
    pub key: u64,
}

/// Why a grammar has no JSGF form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsgfError {
    /// DTMF grammars are matched on keys, not by a recogniser.
    #[error(
        "a DTMF grammar has no speech form; only voice grammars (mode=\"voice\") go to the recogniser"
    )]
    Dtmf,
    /// No root rule and no public rule to start from.
    #[error("the grammar has no root rule and no public rule; declare a root rule")]
    NoRoot,
    /// An external grammar was not supplied.
    #[error("the external grammar {0} is not linked; fetch it and link it before translating")]
    Unlinked(String),
    /// Every path goes through `VOID` (or a rule that cannot match).
    #[error(
        "the grammar cannot match any utterance (every path goes through VOID or an unusable rule)"
    )]
    MatchesNothing,
    /// Recursion other than at the end of a rule.
    #[error(
        "rule {0:?} refers to itself before its end; a speech recogniser only follows a rule \
         that refers to itself as its last expansion (right recursion): rewrite it with a repeat"
    )]
    Recursive(String),
    /// The output would be too large.
    #[error(
        "the grammar translates to more than {MAX_JSGF_BYTES} bytes of JSGF; split it or use \
         fewer repeats"
    )]
    TooLarge,
    /// Expansions nest too deeply, or the grammar is too tangled to analyse.
    #[error(
        "the grammar nests expansions more than {MAX_JSGF_DEPTH} deep or is too tangled to translate; \
         simplify it"
    )]
    TooComplex,
}

/// A JSGF expansion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Word(String),
    Seq(Vec<Self>),
    /// Alternatives with optional weights.
    Alt(Vec<(Option<f32>, Self)>),
    Opt(Box<Self>),
    Star(Box<Self>),
    Plus(Box<Self>),
    /// A rule, by index into the translation's rules.
    Rule(usize),
    Null,
    Void,
}

impl Expr {
    /// One word.
    pub(crate) fn word(word: &str) -> Self {
        Self::Word(word.to_owned())
    }

    /// Any one of `words`.
    pub(crate) fn words(words: &[&str]) -> Self {
        alt(words
            .iter()
            .filter(|w| !w.is_empty())
            .map(|w| Self::word(w))
            .collect())
    }

    /// Words in order, written as one string (`"quarter past"`).
    pub(crate) fn phrase(text: &str) -> Self {
        seq(text.split_whitespace().map(Self::word).collect())
    }
}

/// A sequence, simplified: `VOID` anywhere is `VOID`, `NULL`s vanish.
pub(crate) fn seq(parts: Vec<Expr>) -> Expr {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Expr::Void => return Expr::Void,
            Expr::Null => {}
            Expr::Seq(inner) => out.extend(inner),
            other => out.push(other),
        }
    }
    match out.len() {
        0 => Expr::Null,
        1 => out.pop().unwrap_or(Expr::Null),
        _ => Expr::Seq(out),
    }
}

/// Alternatives without weights.
pub(crate) fn alt(alts: Vec<Expr>) -> Expr {
    weighted(alts.into_iter().map(|a| (None, a)).collect())
}

/// Alternatives, simplified: `VOID` ones vanish.
pub(crate) fn weighted(alts: Vec<(Option<f32>, Expr)>) -> Expr {
    let mut out: Vec<(Option<f32>, Expr)> = Vec::with_capacity(alts.len());
    for (weight, a) in alts {
        match (weight, a) {
            (_, Expr::Void) => {}
            (Some(w), _) if w <= 0.0 => {}
            // `(a | b) | c` is `a | b | c` when no weights are involved.
            (None, Expr::Alt(inner)) if inner.iter().all(|(w, _)| w.is_none()) => {
                out.extend(inner);
            }
            (weight, a) => out.push((weight, a)),
        }
    }
    match out.len() {
        0 => Expr::Void,
        1 if out.first().is_some_and(|(w, _)| w.is_none()) => {
            out.pop().map_or(Expr::Void, |(_, a)| a)
        }
        _ => Expr::Alt(out),
    }
}

/// `[e]`.
pub(crate) fn opt(e: Expr) -> Expr {
    match e {
        Expr::Void | Expr::Null => Expr::Null,
        e @ (Expr::Opt(_) | Expr::Star(_)) => e,
        Expr::Plus(inner) => Expr::Star(inner),
        e => Expr::Opt(Box::new(e)),
    }
}

/// `e*`.
pub(crate) fn star(e: Expr) -> Expr {
    match e {
        Expr::Void | Expr::Null => Expr::Null,
        Expr::Opt(inner) | Expr::Star(inner) | Expr::Plus(inner) => Expr::Star(inner),
        e => Expr::Star(Box::new(e)),
    }
}

/// `e+`.
pub(crate) fn plus(e: Expr) -> Expr {
    match e {
        e @ (Expr::Void | Expr::Null | Expr::Plus(_) | Expr::Star(_)) => e,
        Expr::Opt(inner) => Expr::Star(inner),
        e => Expr::Plus(Box::new(e)),
    }
}

/// A rule of the JSGF being built.
#[derive(Debug)]
struct JRule {
    name: String,
    body: Expr,
}

/// Builds JSGF rules: those of one grammar at a time ([`Translator::load`]), sharing the
/// builtins' rules.
pub(crate) struct Translator<'g> {
    /// Model 0 is the grammar being translated (if SRGS), then its linked ones.
    models: Vec<&'g Model>,
    urls: Vec<Option<&'g url::Url>>,
    /// Prepended to the names of the grammar's rules (`g1_` in a union).
    scope: String,
    rules: Vec<JRule>,
    names: HashSet<String>,
    srgs: HashMap<(usize, usize), usize>,
    named: HashMap<String, usize>,
    pending: Vec<(usize, usize, usize)>,
    depth: usize,
}

impl<'g> Translator<'g> {
    fn new() -> Self {
        Self {
            models: Vec::new(),
            urls: Vec::new(),
            scope: String::new(),
            rules: Vec::new(),
            names: HashSet::new(),
            srgs: HashMap::new(),
            named: HashMap::new(),
            pending: Vec::new(),
            depth: 0,
        }
    }

    /// Starts on `grammar`, its rules named with `scope` first.
    fn load(&mut self, grammar: &'g Grammar, scope: String) {
        self.models.clear();
        self.urls.clear();
        self.srgs.clear();
        self.pending.clear();
        self.scope = scope;
        if let Kind::Srgs(model) = &grammar.kind {
            self.models.push(model.as_ref());
            self.urls.push(None);
        }
        for (url, model) in &grammar.linked {
            self.models.push(model.as_ref());
            self.urls.push(Some(url));
        }
    }

    /// The root expansion of the loaded `grammar`, its rules translated.
    fn root(&mut self, grammar: &'g Grammar) -> Result<Expr, JsgfError> {
        let root = match &grammar.kind {
            Kind::Builtin { builtin, .. } => builtins::form(self, builtin),
            Kind::Srgs(model) => match model.root {
                Some(root) => self.srgs_rule(0, root),
                None => {
                    let public: Vec<usize> = model
                        .rules
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.public)
                        .map(|(i, _)| i)
                        .collect();
                    if public.is_empty() {
                        return Err(JsgfError::NoRoot);
                    }
                    let alts = public.into_iter().map(|r| self.srgs_rule(0, r)).collect();
                    alt(alts)
                }
            },
        };
        self.drain()?;
        Ok(root)
    }

    /// A new rule with a unique name made from `prefix` and `name`.
    fn add_rule(&mut self, prefix: &str, name: &str, body: Expr) -> usize {
        let clean: String = name
            .chars()
            .take(40)
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut unique = format!("{prefix}{clean}");
        if self.names.contains(&unique) {
            unique = format!("{unique}_{}", self.rules.len());
        }
        self.names.insert(unique.clone());
        self.rules.push(JRule { name: unique, body });
        self.rules.len() - 1
    }

    /// A shared rule `name` (builtin parts), built by `build` the first time.
    pub(crate) fn named(&mut self, name: &str, build: impl FnOnce(&mut Self) -> Expr) -> Expr {
        if let Some(&index) = self.named.get(name) {
            return Expr::Rule(index);
        }
        let index = self.add_rule("b_", name, Expr::Void);
        self.named.insert(name.to_owned(), index);
        let body = build(self);
        if let Some(rule) = self.rules.get_mut(index) {
            rule.body = body;
        }
        Expr::Rule(index)
    }

    /// `e` as something cheap to copy: itself if a word or rule, else a helper rule.
    pub(crate) fn shared(&mut self, e: Expr) -> Expr {
        match e {
            e @ (Expr::Word(_) | Expr::Rule(_) | Expr::Null | Expr::Void) => e,
            e => Expr::Rule(self.add_rule("h", "", e)),
        }
    }

    /// `e` repeated `min..=max` times (`max: None` unbounded); counts over [`EXPAND_LIMIT`]
    /// widen to `*`/`+`.
    pub(crate) fn repeat(&mut self, e: Expr, min: u32, max: Option<u32>) -> Expr {
        match (&e, min, max) {
            (Expr::Void, 0, _) | (Expr::Null, _, _) | (_, _, Some(0)) => return Expr::Null,
            (Expr::Void, _, _) => return Expr::Void,
            (_, 0, Some(1)) => return opt(e),
            (_, 1, Some(1)) => return e,
            (_, 0, None) => return star(e),
            (_, 1, None) => return plus(e),
            _ => {}
        }
        let e = self.shared(e);
        let exact = min.min(EXPAND_LIMIT) as usize;
        let mut parts = vec![e.clone(); exact];
        match max {
            Some(max) if max <= EXPAND_LIMIT => {
                let mut tail = Expr::Null;
                for _ in min..max {
                    tail = opt(seq(vec![e.clone(), tail]));
                }
                parts.push(tail);
            }
            _ => {
                if parts.pop().is_some() {
                    parts.push(plus(e));
                } else {
                    parts.push(star(e));
                }
            }
        }
        seq(parts)
    }

    /// The JSGF rule for rule `rule` of model `g`, queued for translation.
    fn srgs_rule(&mut self, g: usize, rule: usize) -> Expr {
        if let Some(&index) = self.srgs.get(&(g, rule)) {
            return Expr::Rule(index);
        }
        let name = self
            .models
            .get(g)
            .and_then(|m| m.rules.get(rule))
            .map_or("", |r| r.name.as_str())
            .to_owned();
        let prefix = if g == 0 {
            format!("{}r_", self.scope)
        } else {
            format!("{}x{g}_", self.scope)
        };
        let index = self.add_rule(&prefix, &name, Expr::Void);
        self.srgs.insert((g, rule), index);
        self.pending.push((g, rule, index));
        Expr::Rule(index)
    }

    /// Translates queued rules until none is left.
    fn drain(&mut self) -> Result<(), JsgfError> {
        while let Some((g, rule, index)) = self.pending.pop() {
            let Some(body) = self
                .models
                .get(g)
                .and_then(|m| m.rules.get(rule))
                .map(|r| r.body)
            else {
                continue;
            };
            let expr = self.node(g, body)?;
            if let Some(rule) = self.rules.get_mut(index) {
                rule.body = expr;
            }
        }
        Ok(())
    }

    fn node(&mut self, g: usize, id: NodeId) -> Result<Expr, JsgfError> {
        if self.depth >= MAX_JSGF_DEPTH {
            return Err(JsgfError::TooComplex);
        }
        self.depth += 1;
        let out = self.node_inner(g, id);
        self.depth -= 1;
        out
    }

    fn node_inner(&mut self, g: usize, id: NodeId) -> Result<Expr, JsgfError> {
        let Some(&model) = self.models.get(g) else {
            return Ok(Expr::Void);
        };
        Ok(match model.node(id) {
            Node::Token { words, spoken, .. } => {
                let words = spoken.as_ref().unwrap_or(words);
                if words.is_empty() || words.iter().any(|w| !is_plain_word(w)) {
                    // Nothing a recogniser can say (punctuation only): never heard.
                    Expr::Void
                } else {
                    seq(words.iter().map(|w| Expr::word(w)).collect())
                }
            }
            Node::Seq(parts) => {
                let mut out = Vec::with_capacity(parts.len());
                for &part in parts {
                    let e = self.node(g, part)?;
                    if e == Expr::Void {
                        return Ok(Expr::Void);
                    }
                    out.push(e);
                }
                seq(out)
            }
            Node::Alt(alts) => {
                let weights = model.weights_of(id);
                let mut out = Vec::with_capacity(alts.len());
                for (i, &a) in alts.iter().enumerate() {
                    let weight = weights.and_then(|w| w.get(i).copied());
                    out.push((weight, self.node(g, a)?));
                }
                weighted(out)
            }
            Node::Repeat { body, min, max } => {
                let e = self.node(g, *body)?;
                self.repeat(e, *min, *max)
            }
            Node::Ref(Target::Local(rule)) => self.srgs_rule(g, *rule),
            Node::Ref(Target::External(ext)) => {
                let Some(g2) = self.urls.iter().position(|u| *u == Some(&ext.url)) else {
                    return Err(JsgfError::Unlinked(ext.url.to_string()));
                };
                let Some(&other) = self.models.get(g2) else {
                    return Ok(Expr::Void);
                };
                // As the matcher: another mode, form or a private rule never matches.
                let form_ok = match ext.media_type.as_deref().map(str::trim) {
                    Some("application/srgs+xml") => other.form == super::model::Form::Xml,
                    Some("application/srgs") => other.form == super::model::Form::Abnf,
                    _ => true,
                };
                let rule = match &ext.rule {
                    Some(name) => other
                        .rule_named(name)
                        .filter(|&r| other.rules.get(r).is_some_and(|r| r.public)),
                    None => other.root,
                };
                match rule {
                    Some(rule) if other.mode == model.mode && form_ok => self.srgs_rule(g2, rule),
                    _ => Expr::Void,
                }
            }
            Node::Ref(Target::Builtin { builtin, .. }) => builtins::form(self, builtin),
            Node::Tag(_) | Node::Null | Node::Garbage => Expr::Null,
            Node::Void => Expr::Void,
        })
    }
}

/// Whether `word` can stand in JSGF as it is (letters, digits, apostrophes).
fn is_plain_word(word: &str) -> bool {
    word.chars().all(|c| c.is_alphanumeric() || c == '\'')
}

impl Grammar {
    /// This voice grammar as JSGF for a speech recogniser (see the [module docs](self) for
    /// what is kept and what is approximated). External grammars must be linked first.
    pub fn to_jsgf(&self) -> Result<Jsgf, JsgfError> {
        if self.mode() == Mode::Dtmf {
            return Err(JsgfError::Dtmf);
        }
        let mut t = Translator::new();
        t.load(self, String::new());
        let root = t.root(self)?;
        finish(t, root)
    }
}

/// The voice grammars among `grammars` (all active at once, as a field's, its form's and
/// document's grammars are) as one JSGF whose root accepts what any of them accepts; DTMF
/// grammars are left out. Each grammar's rules are named with `g<i>_` (its index here)
/// first; builtins' rules are shared. An error in any voice grammar fails the whole (call
/// [`Grammar::to_jsgf`] on each to see which); without a voice grammar it is
/// [`JsgfError::Dtmf`].
pub fn jsgf_union(grammars: &[&Grammar]) -> Result<Jsgf, JsgfError> {
    let mut t = Translator::new();
    let mut roots = Vec::new();
    for (i, grammar) in grammars.iter().enumerate() {
        if grammar.mode() == Mode::Voice {
            t.load(grammar, format!("g{i}_"));
            roots.push(t.root(grammar)?);
        }
    }
    if roots.is_empty() {
        return Err(JsgfError::Dtmf);
    }
    finish(t, alt(roots))
}

/// Prunes rules that cannot match, checks recursion, renders.
fn finish(mut t: Translator<'_>, root: Expr) -> Result<Jsgf, JsgfError> {
    let root_index = t.add_rule("", "root", root);
    let productive = productive_rules(&t.rules)?;
    let names: Vec<String> = t.rules.iter().map(|r| r.name.clone()).collect();
    let rules: Vec<Expr> = t
        .rules
        .iter()
        .map(|r| prune(&r.body, &productive))
        .collect();
    if rules.get(root_index).is_none_or(|r| *r == Expr::Void) {
        return Err(JsgfError::MatchesNothing);
    }
    let reachable = reachable_rules(&rules, root_index);
    check_recursion(&rules, &reachable, &names)?;
    let mut text = String::from("#JSGF V1.0;\ngrammar outdial;\n");
    let mut words = Vec::new();
    let order =
        std::iter::once(root_index).chain(reachable.iter().copied().filter(|&r| r != root_index));
    for index in order {
        let Some(body) = rules.get(index) else {
            continue;
        };
        let name = names.get(index).map_or("", String::as_str);
        if index == root_index {
            text.push_str("public ");
        }
        text.push('<');
        text.push_str(name);
        text.push_str("> = ");
        render(body, &names, &mut text, &mut words, true);
        text.push_str(";\n");
        if text.len() > MAX_JSGF_BYTES {
            return Err(JsgfError::TooLarge);
        }
    }
    words.sort_unstable();
    words.dedup();
    let key = fnv1a(text.as_bytes());
    Ok(Jsgf { text, words, key })
}

/// Which rules can match some word string (fixpoint; rules are visited last-made first, so
/// a rule usually comes after the ones it references and few passes are needed).
fn productive_rules(rules: &[JRule]) -> Result<Vec<bool>, JsgfError> {
    let mut productive = vec![false; rules.len()];
    for _ in 0..64 {
        let mut changed = false;
        for (i, rule) in rules.iter().enumerate().rev() {
            if !productive.get(i).copied().unwrap_or(true) && can_match(&rule.body, &productive) {
                if let Some(p) = productive.get_mut(i) {
                    *p = true;
                }
                changed = true;
            }
        }
        if !changed {
            return Ok(productive);
        }
    }
    Err(JsgfError::TooComplex)
}

fn can_match(e: &Expr, productive: &[bool]) -> bool {
    match e {
        Expr::Word(_) | Expr::Null | Expr::Opt(_) | Expr::Star(_) => true,
        Expr::Void => false,
        Expr::Seq(parts) => parts.iter().all(|p| can_match(p, productive)),
        Expr::Alt(alts) => alts.iter().any(|(_, a)| can_match(a, productive)),
        Expr::Plus(inner) => can_match(inner, productive),
        Expr::Rule(r) => productive.get(*r).copied().unwrap_or(false),
    }
}

/// `e` with references to rules that cannot match replaced by `VOID`, simplified.
fn prune(e: &Expr, productive: &[bool]) -> Expr {
    match e {
        Expr::Rule(r) if !productive.get(*r).copied().unwrap_or(false) => Expr::Void,
        Expr::Word(_) | Expr::Rule(_) | Expr::Null | Expr::Void => e.clone(),
        Expr::Seq(parts) => seq(parts.iter().map(|p| prune(p, productive)).collect()),
        Expr::Alt(alts) => weighted(
            alts.iter()
                .map(|(w, a)| (*w, prune(a, productive)))
                .collect(),
        ),
        Expr::Opt(inner) => opt(prune(inner, productive)),
        Expr::Star(inner) => star(prune(inner, productive)),
        Expr::Plus(inner) => plus(prune(inner, productive)),
    }
}

/// Rules reachable from `root`, in first-reached order.
fn reachable_rules(rules: &[Expr], root: usize) -> Vec<usize> {
    let mut seen = vec![false; rules.len()];
    let mut order = Vec::new();
    let mut stack = vec![root];
    while let Some(r) = stack.pop() {
        if seen.get(r).copied().unwrap_or(true) {
            continue;
        }
        if let Some(s) = seen.get_mut(r) {
            *s = true;
        }
        order.push(r);
        let mut refs = Vec::new();
        if let Some(body) = rules.get(r) {
            references(body, true, &mut refs);
        }
        stack.extend(refs.into_iter().rev().map(|(to, _)| to));
    }
    order
}

/// The rules `e` references, each with whether it is in tail position (nothing can follow
/// it within the rule).
fn references(e: &Expr, tail: bool, out: &mut Vec<(usize, bool)>) {
    match e {
        Expr::Rule(r) => out.push((*r, tail)),
        Expr::Word(_) | Expr::Null | Expr::Void => {}
        Expr::Seq(parts) => {
            let last = parts.len().saturating_sub(1);
            for (i, p) in parts.iter().enumerate() {
                references(p, tail && i == last, out);
            }
        }
        Expr::Alt(alts) => alts.iter().for_each(|(_, a)| references(a, tail, out)),
        Expr::Opt(inner) => references(inner, tail, out),
        Expr::Star(inner) | Expr::Plus(inner) => references(inner, false, out),
    }
}

/// Refuses a reference that is not in tail position and lies on a cycle.
fn check_recursion(rules: &[Expr], reachable: &[usize], names: &[String]) -> Result<(), JsgfError> {
    let n = rules.len();
    let mut edges: Vec<Vec<(usize, bool)>> = vec![Vec::new(); n];
    for &r in reachable {
        if let (Some(body), Some(out)) = (rules.get(r), edges.get_mut(r)) {
            references(body, true, out);
        }
    }
    let component = strongly_connected(&edges, reachable);
    for &r in reachable {
        for &(to, tail) in edges.get(r).map_or(&[][..], Vec::as_slice) {
            let same = component
                .get(r)
                .is_some_and(|c| Some(c) == component.get(to));
            if same && !tail {
                // Name a grammar rule of the cycle (not a helper made for a repeat).
                let cycle = component.get(to);
                let rule = std::iter::once(to)
                    .chain(reachable.iter().copied())
                    .filter(|&r| component.get(r) == cycle)
                    .filter_map(|r| names.get(r))
                    .find_map(|name| grammar_rule_name(name))
                    .unwrap_or("?");
                return Err(JsgfError::Recursive(rule.to_owned()));
            }
        }
    }
    Ok(())
}

/// The SRGS rule name inside a mangled JSGF rule name (`r_main`, `x2_city`), if it is one.
fn grammar_rule_name(mangled: &str) -> Option<&str> {
    // A union's scope first: `g2_`.
    let mangled = mangled
        .strip_prefix('g')
        .and_then(|rest| rest.split_once('_'))
        .filter(|(digits, _)| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .map_or(mangled, |(_, rest)| rest);
    if let Some(name) = mangled.strip_prefix("r_") {
        return Some(name);
    }
    let (prefix, name) = mangled.split_once('_')?;
    let digits = prefix.strip_prefix('x')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(name)
}

/// Strongly connected components (Kosaraju, iterative): a component number per rule.
fn strongly_connected(edges: &[Vec<(usize, bool)>], nodes: &[usize]) -> Vec<usize> {
    let n = edges.len();
    let mut visited = vec![false; n];
    let mut finish_order = Vec::with_capacity(nodes.len());
    for &start in nodes {
        if visited.get(start).copied().unwrap_or(true) {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        if let Some(v) = visited.get_mut(start) {
            *v = true;
        }
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            let edge = edges
                .get(node)
                .and_then(|e| e.get(*next))
                .map(|(to, _)| *to);
            *next += 1;
            match edge {
                Some(to) => {
                    if !visited.get(to).copied().unwrap_or(true) {
                        if let Some(v) = visited.get_mut(to) {
                            *v = true;
                        }
                        stack.push((to, 0));
                    }
                }
                None => {
                    finish_order.push(node);
                    stack.pop();
                }
            }
        }
    }
    let mut reverse: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (from, out) in edges.iter().enumerate() {
        for &(to, _) in out {
            if let Some(r) = reverse.get_mut(to) {
                r.push(from);
            }
        }
    }
    let mut component = vec![usize::MAX; n];
    let mut count = 0;
    for &start in finish_order.iter().rev() {
        if component.get(start).copied() != Some(usize::MAX) {
            continue;
        }
        let mut stack = vec![start];
        if let Some(c) = component.get_mut(start) {
            *c = count;
        }
        while let Some(node) = stack.pop() {
            for &from in reverse.get(node).map_or(&[][..], Vec::as_slice) {
                if component.get(from).copied() == Some(usize::MAX) {
                    if let Some(c) = component.get_mut(from) {
                        *c = count;
                    }
                    stack.push(from);
                }
            }
        }
        count += 1;
    }
    component
}

/// Writes `e`; `top` when it is a whole rule body (alternatives need no parentheses). Stops
/// early once `out` is over [`MAX_JSGF_BYTES`] (the caller refuses it).
fn render(e: &Expr, names: &[String], out: &mut String, words: &mut Vec<String>, top: bool) {
    if out.len() > MAX_JSGF_BYTES {
        return;
    }
    match e {
        Expr::Word(w) => {
            out.push_str(w);
            words.push(w.clone());
        }
        Expr::Rule(r) => {
            out.push('<');
            out.push_str(names.get(*r).map_or("VOID", String::as_str));
            out.push('>');
        }
        Expr::Null => out.push_str("<NULL>"),
        Expr::Void => out.push_str("<VOID>"),
        Expr::Seq(parts) => {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                render(p, names, out, words, false);
            }
        }
        Expr::Alt(alts) => {
            if !top {
                out.push('(');
            }
            let weights = alts.iter().any(|(w, _)| w.is_some());
            for (i, (w, a)) in alts.iter().enumerate() {
                if i > 0 {
                    out.push_str(" | ");
                }
                if weights {
                    out.push_str(&format!("/{}/ ", w.unwrap_or(1.0)));
                }
                render(a, names, out, words, false);
            }
            if !top {
                out.push(')');
            }
        }
        Expr::Opt(inner) => {
            out.push('[');
            render(inner, names, out, words, true);
            out.push(']');
        }
        Expr::Star(inner) | Expr::Plus(inner) => {
            let atom = matches!(**inner, Expr::Word(_) | Expr::Rule(_) | Expr::Alt(_));
            if !atom {
                out.push('(');
            }
            render(inner, names, out, words, false);
            if !atom {
                out.push(')');
            }
            out.push(if matches!(e, Expr::Star(_)) { '*' } else { '+' });
        }
    }
}

/// FNV-1a, 64-bit: stable across runs and builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
