//! The rule graph both grammar forms compile to (SRGS 1.0 §2–§4).
//!
//! A grammar is an arena of expansion [`Node`]s plus a list of [`Rule`]s whose bodies point
//! into it. The XML form (§2 elements) and the ABNF form (§2 symbols) build the same graph
//! through [`Builder`], which also enforces the checks both forms share: unique rule names,
//! no redefinition of the special rules, local references that resolve, a defined root, no
//! left recursion.

use std::collections::HashMap;

use super::builtin::Builtin;
use super::{GrammarError, Mode};

/// Index of a node in [`Model::nodes`].
pub(crate) type NodeId = u32;

/// Most repetitions a `repeat` may ask for; larger counts are refused.
pub(crate) const MAX_REPEAT: u32 = 1000;

/// Most nodes one grammar may have (bounds memory for hostile input).
pub(crate) const MAX_NODES: usize = 100_000;

/// Which of the two SRGS forms a grammar was written in (SRGS 1.0 §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// `application/srgs+xml`.
    Xml,
    /// `application/srgs`.
    Abnf,
}

/// How `<tag>` contents are read (SISR 1.0 §1.3, `tag-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagFormat {
    /// `semantics/1.0` (and `semantics/1.0.2006`): every tag is ECMAScript.
    Script,
    /// `semantics/1.0-literals`: every tag is a string literal.
    Literals,
    /// No (or an unknown) `tag-format`: a tag that is just a string (or a bare word) is a
    /// literal, anything else is script in the style of the 2003 drafts (`$`, top-level
    /// `var`s become properties of the result).
    Sniff,
}

impl TagFormat {
    /// The format named by a `tag-format` declaration.
    pub(crate) fn from_declaration(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some(v) if v.starts_with("semantics/1.0-literals") => Self::Literals,
            Some(v) if v.starts_with("semantics/1.0") => Self::Script,
            _ => Self::Sniff,
        }
    }
}

/// A rule expansion (SRGS 1.0 §2).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// A token (§2.1): one or more words that must appear in order. `text` is as written
    /// (whitespace normalised); `words` are the lower-cased words matched against input;
    /// `spoken`, for a voice token not written as plain words (`3`, `U.S.A.`), the words a
    /// recogniser returns for it (`three`, `u s a`), matched too ([`super::spoken`]).
    Token {
        text: String,
        words: Vec<String>,
        spoken: Option<Vec<String>>,
    },
    /// Expansions in order (§2.3).
    Seq(Vec<NodeId>),
    /// Alternatives (§2.4); their weights, if any, are in [`Model::weights`].
    Alt(Vec<NodeId>),
    /// `repeat="m-n"` / `<m-n>` (§2.5); `max: None` is unbounded.
    Repeat {
        body: NodeId,
        min: u32,
        max: Option<u32>,
    },
    /// A rule reference (§2.2).
    Ref(Target),
    /// A tag (§2.6), content as written.
    Tag(String),
    /// `NULL` (§2.2.3): matches without consuming.
    Null,
    /// `VOID` (§2.2.3): never matches.
    Void,
    /// `GARBAGE` (§2.2.3): any (possibly empty) run of tokens.
    Garbage,
}

/// What a rule reference points at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    /// A rule of the same grammar, by index into [`Model::rules`].
    Local(usize),
    /// A rule of another grammar (§2.2.2).
    External(ExternalRef),
    /// A VoiceXML builtin (`builtin:dtmf/digits`).
    Builtin { uri: String, builtin: Builtin },
}

/// A reference to another grammar's rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExternalRef {
    /// The URI as written (printed in the logical parse structure).
    pub(crate) written: String,
    /// The grammar's absolute URI, fragment removed.
    pub(crate) url: url::Url,
    /// The rule named by the fragment; `None` is the root rule.
    pub(crate) rule: Option<String>,
    /// The `type` the reference expects (`application/srgs+xml`, `application/srgs`).
    pub(crate) media_type: Option<String>,
}

/// A rule definition (§3).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    /// The rule name (`id`, `$name`).
    pub(crate) name: String,
    /// `scope="public"`: other grammars may reference it.
    pub(crate) public: bool,
    /// The rule's expansion.
    pub(crate) body: NodeId,
}

/// A parsed SRGS grammar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Model {
    pub(crate) form: Form,
    pub(crate) mode: Mode,
    /// The root rule (§4.7); `None` when undeclared in a conformance parse.
    pub(crate) root: Option<usize>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) tag_format: TagFormat,
    /// `<meta name content>` / `meta 'n' is 'c';` pairs in document order (§4.11.1).
    pub(crate) metas: Vec<(String, String)>,
    /// Weights of the alternatives of an `Alt` node, when any was given (§2.4.1; an
    /// alternative without one weighs 1). Only speech recognition uses them.
    pub(crate) weights: HashMap<NodeId, Vec<f32>>,
}

impl Model {
    /// The node with id `id`.
    pub(crate) fn node(&self, id: NodeId) -> &Node {
        // invariant: every NodeId stored in a Model was returned by Builder::push on it.
        &self.nodes[id as usize]
    }

    /// The rule named `name`.
    pub(crate) fn rule_named(&self, name: &str) -> Option<usize> {
        self.rules.iter().position(|rule| rule.name == name)
    }

    /// The weights of the alternatives of `Alt` node `id`, if given.
    pub(crate) fn weights_of(&self, id: NodeId) -> Option<&[f32]> {
        self.weights.get(&id).map(Vec::as_slice)
    }

    /// Every external reference in the grammar.
    pub(crate) fn external_refs(&self) -> impl Iterator<Item = &ExternalRef> {
        self.nodes.iter().filter_map(|node| match node {
            Node::Ref(Target::External(ext)) => Some(ext),
            _ => None,
        })
    }
}

/// A rule reference as parsed, before rule names are resolved.
#[derive(Debug, Clone)]
pub(crate) enum PendingRef {
    /// `#name` / `$name`, with the source line for the error message.
    Local { name: String, line: u32 },
    /// Resolved already.
    Done(Target),
}

/// Builds a [`Model`]: collects nodes and rules, then resolves names and checks.
#[derive(Debug)]
pub(crate) struct Builder {
    form: Form,
    nodes: Vec<Node>,
    pending: Vec<(NodeId, String, u32)>,
    rules: Vec<(Rule, u32)>,
    pub(crate) metas: Vec<(String, String)>,
    weights: HashMap<NodeId, Vec<f32>>,
}

impl Builder {
    /// An empty builder for a grammar in `form`.
    pub(crate) fn new(form: Form) -> Self {
        Self {
            form,
            nodes: Vec::new(),
            pending: Vec::new(),
            rules: Vec::new(),
            metas: Vec::new(),
            weights: HashMap::new(),
        }
    }

    /// Adds a node.
    pub(crate) fn push(&mut self, node: Node) -> Result<NodeId, GrammarError> {
        if self.nodes.len() >= MAX_NODES {
            return Err(GrammarError::Invalid(format!(
                "the grammar has more than {MAX_NODES} expansions; split it into smaller grammars"
            )));
        }
        let id = NodeId::try_from(self.nodes.len())
            .map_err(|_| GrammarError::Invalid("too many expansions".to_owned()))?;
        self.nodes.push(node);
        Ok(id)
    }

    /// Adds a token node, splitting `text` into words.
    pub(crate) fn token(&mut self, text: &str, mode: Mode) -> Result<Option<NodeId>, GrammarError> {
        let words = token_words(text, mode);
        if words.is_empty() {
            return Ok(None);
        }
        let (text, spoken) = match mode {
            Mode::Dtmf => (words.join(" "), None),
            Mode::Voice => (
                text.split_whitespace().collect::<Vec<_>>().join(" "),
                super::spoken::spoken_words(&words).filter(|s| !s.is_empty()),
            ),
        };
        self.push(Node::Token {
            text,
            words,
            spoken,
        })
        .map(Some)
    }

    /// Adds alternatives with their weights as written (`None`: not given or not a number).
    pub(crate) fn alternatives(
        &mut self,
        alts: Vec<NodeId>,
        weights: &[Option<f32>],
    ) -> Result<NodeId, GrammarError> {
        let id = self.push(Node::Alt(alts))?;
        if weights.iter().any(Option::is_some) {
            let weights = weights
                .iter()
                .map(|w| w.filter(|w| w.is_finite() && *w >= 0.0).unwrap_or(1.0))
                .collect();
            self.weights.insert(id, weights);
        }
        Ok(id)
    }

    /// Adds a rule reference.
    pub(crate) fn reference(&mut self, reference: PendingRef) -> Result<NodeId, GrammarError> {
        match reference {
            PendingRef::Done(target) => self.push(Node::Ref(target)),
            PendingRef::Local { name, line } => match name.as_str() {
                "NULL" => self.push(Node::Null),
                "VOID" => self.push(Node::Void),
                "GARBAGE" => self.push(Node::Garbage),
                _ => {
                    let id = self.push(Node::Void)?;
                    self.pending.push((id, name, line));
                    Ok(id)
                }
            },
        }
    }

    /// A sequence of `parts` (a single part stands for itself; none is `NULL`).
    pub(crate) fn seq(&mut self, mut parts: Vec<NodeId>) -> Result<NodeId, GrammarError> {
        match parts.len() {
            0 => self.push(Node::Null),
            1 => Ok(parts.pop().unwrap_or_default()),
            _ => self.push(Node::Seq(parts)),
        }
    }

    /// Defines a rule.
    pub(crate) fn rule(
        &mut self,
        name: &str,
        public: bool,
        body: NodeId,
        line: u32,
    ) -> Result<(), GrammarError> {
        if matches!(name, "NULL" | "VOID" | "GARBAGE") {
            return Err(GrammarError::at(
                self.form,
                line,
                format!("rule {name:?} redefines a special rule; choose another name"),
            ));
        }
        if self.rules.iter().any(|(rule, _)| rule.name == name) {
            return Err(GrammarError::at(
                self.form,
                line,
                format!("rule {name:?} is defined twice; rule names must be unique"),
            ));
        }
        self.rules.push((
            Rule {
                name: name.to_owned(),
                public,
                body,
            },
            line,
        ));
        Ok(())
    }

    /// Resolves names and checks the grammar. `root` is the declared root rule name (with its
    /// line); without one, `default_root` picks the first rule (the VoiceXML habit).
    pub(crate) fn finish(
        mut self,
        mode: Mode,
        root: Option<(String, u32)>,
        default_root: bool,
        tag_format: TagFormat,
    ) -> Result<Model, GrammarError> {
        if self.rules.is_empty() {
            return Err(GrammarError::Invalid(
                "the grammar defines no rule; add at least one".to_owned(),
            ));
        }
        let index: HashMap<&str, usize> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, (rule, _))| (rule.name.as_str(), i))
            .collect();
        for (node, name, line) in std::mem::take(&mut self.pending) {
            let Some(&rule) = index.get(name.as_str()) else {
                return Err(GrammarError::at(
                    self.form,
                    line,
                    format!("reference to undefined rule {name:?}; define it or fix the name"),
                ));
            };
            if let Some(slot) = self.nodes.get_mut(node as usize) {
                *slot = Node::Ref(Target::Local(rule));
            }
        }
        let root = match root {
            Some((name, line)) => Some(*index.get(name.as_str()).ok_or_else(|| {
                GrammarError::at(
                    self.form,
                    line,
                    format!("the root rule {name:?} is not defined; define it or fix the root"),
                )
            })?),
            None if default_root => Some(0),
            None => None,
        };
        let model = Model {
            form: self.form,
            mode,
            root,
            rules: self.rules.into_iter().map(|(rule, _)| rule).collect(),
            nodes: self.nodes,
            tag_format,
            metas: self.metas,
            weights: self.weights,
        };
        check_left_recursion(&model)?;
        Ok(model)
    }
}

/// The words of a token as matched against input: lower-cased, whitespace separated. In DTMF
/// mode a run of keys written together (`123`) is one key per token, and `star`/`pound`
/// (SRGS 1.0 Appendix D) and `dtmf-x` name `*`, `#` and `x`.
pub(crate) fn token_words(text: &str, mode: Mode) -> Vec<String> {
    match mode {
        Mode::Voice => text.split_whitespace().map(str::to_lowercase).collect(),
        Mode::Dtmf => {
            let mut words = Vec::new();
            for word in text.split_whitespace() {
                let lower = word.to_lowercase();
                let word = lower.strip_prefix("dtmf-").unwrap_or(&lower);
                match word {
                    "star" => words.push("*".to_owned()),
                    "pound" => words.push("#".to_owned()),
                    w if w.chars().count() > 1 && w.chars().all(is_dtmf_key) => {
                        words.extend(w.chars().map(String::from));
                    }
                    w => words.push(w.to_owned()),
                }
            }
            words
        }
    }
}

/// Whether `c` is a DTMF key (lower-case letters included, input is lower-cased).
pub(crate) fn is_dtmf_key(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'a'..='d' | 'A'..='D')
}

/// Refuses rules that can reach themselves without consuming a token (SRGS 1.0 §2.2.1 lets
/// processors refuse left recursion; the matcher relies on it).
fn check_left_recursion(model: &Model) -> Result<(), GrammarError> {
    let nullable = nullable_rules(model);
    // For every rule, the local rules it can start with (after nullable prefixes).
    let first: Vec<Vec<usize>> = model
        .rules
        .iter()
        .map(|rule| {
            let mut out = Vec::new();
            left_corners(model, rule.body, &nullable, &mut out, 0);
            out
        })
        .collect();
    // Depth-first search for a cycle in the left-corner graph.
    let mut state = vec![0u8; model.rules.len()];
    for start in 0..model.rules.len() {
        if let Some(rule) = find_cycle(start, &first, &mut state) {
            let name = model.rules.get(rule).map_or("?", |r| r.name.as_str());
            return Err(GrammarError::Invalid(format!(
                "rule {name:?} is left-recursive (it can reach itself before any token); \
                 rewrite it with right recursion or a repeat"
            )));
        }
    }
    Ok(())
}

/// Iterative-deepening-free DFS over the left-corner graph; returns a rule on a cycle.
fn find_cycle(start: usize, first: &[Vec<usize>], state: &mut [u8]) -> Option<usize> {
    if state.get(start).copied() != Some(0) {
        return None;
    }
    // Explicit stack of (rule, next edge index) so deep graphs do not overflow.
    let mut stack = vec![(start, 0usize)];
    if let Some(s) = state.get_mut(start) {
        *s = 1;
    }
    while let Some((rule, edge)) = stack.last_mut() {
        let rule = *rule;
        let next = first.get(rule).and_then(|edges| edges.get(*edge)).copied();
        *edge += 1;
        match next {
            None => {
                if let Some(s) = state.get_mut(rule) {
                    *s = 2;
                }
                stack.pop();
            }
            Some(to) => match state.get(to).copied() {
                Some(1) => return Some(to),
                Some(0) => {
                    if let Some(s) = state.get_mut(to) {
                        *s = 1;
                    }
                    stack.push((to, 0));
                }
                _ => {}
            },
        }
    }
    None
}

/// Which rules can match the empty sequence (fixpoint over local references).
pub(crate) fn nullable_rules(model: &Model) -> Vec<bool> {
    let mut nullable = vec![false; model.rules.len()];
    loop {
        let mut changed = false;
        for (i, rule) in model.rules.iter().enumerate() {
            if !nullable.get(i).copied().unwrap_or(true)
                && node_nullable(model, rule.body, &nullable, 0)
            {
                if let Some(n) = nullable.get_mut(i) {
                    *n = true;
                }
                changed = true;
            }
        }
        if !changed {
            return nullable;
        }
    }
}

/// Deepest expansion nesting walked by the static analyses.
const MAX_NEST: usize = 256;

fn node_nullable(model: &Model, id: NodeId, nullable: &[bool], depth: usize) -> bool {
    if depth > MAX_NEST {
        return false;
    }
    match model.node(id) {
        Node::Token { .. } | Node::Void => false,
        Node::Tag(_) | Node::Null | Node::Garbage => true,
        Node::Seq(parts) => parts
            .iter()
            .all(|&p| node_nullable(model, p, nullable, depth + 1)),
        Node::Alt(alts) => alts
            .iter()
            .any(|&a| node_nullable(model, a, nullable, depth + 1)),
        Node::Repeat { body, min, .. } => {
            *min == 0 || node_nullable(model, *body, nullable, depth + 1)
        }
        Node::Ref(Target::Local(rule)) => nullable.get(*rule).copied().unwrap_or(false),
        // Other grammars and builtins are not followed: they cannot reach back here by a
        // local name, and the matcher bounds cross-grammar cycles itself.
        Node::Ref(_) => false,
    }
}

fn left_corners(model: &Model, id: NodeId, nullable: &[bool], out: &mut Vec<usize>, depth: usize) {
    if depth > MAX_NEST {
        return;
    }
    match model.node(id) {
        Node::Ref(Target::Local(rule)) if !out.contains(rule) => out.push(*rule),
        Node::Seq(parts) => {
            for &part in parts {
                left_corners(model, part, nullable, out, depth + 1);
                if !node_nullable(model, part, nullable, 0) {
                    break;
                }
            }
        }
        Node::Alt(alts) => {
            for &alt in alts {
                left_corners(model, alt, nullable, out, depth + 1);
            }
        }
        Node::Repeat { body, max, .. } if *max != Some(0) => {
            left_corners(model, *body, nullable, out, depth + 1);
        }
        _ => {}
    }
}

/// Parses `repeat` (SRGS 1.0 §2.5): `n`, `m-n` or `m-`.
pub(crate) fn parse_repeat(text: &str) -> Option<(u32, Option<u32>)> {
    let number = |s: &str| {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok().filter(|&n| n <= MAX_REPEAT)
    };
    match text.split_once('-') {
        None => number(text).map(|n| (n, Some(n))),
        Some((min, max)) if max.trim().is_empty() => number(min).map(|m| (m, None)),
        Some((min, max)) => {
            let (min, max) = (number(min)?, number(max)?);
            (min <= max).then_some((min, Some(max)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_forms() {
        assert_eq!(parse_repeat("3"), Some((3, Some(3))));
        assert_eq!(parse_repeat("0-1"), Some((0, Some(1))));
        assert_eq!(parse_repeat(" 2- "), Some((2, None)));
        assert_eq!(parse_repeat("3-1"), None);
        assert_eq!(parse_repeat("-1"), None);
        assert_eq!(parse_repeat("x"), None);
        assert_eq!(parse_repeat("100000"), None);
    }

    #[test]
    fn dtmf_words_split_keys_and_name_star_and_pound() {
        assert_eq!(
            token_words("12 star Pound dtmf-3", Mode::Dtmf),
            ["1", "2", "*", "#", "3"]
        );
        assert_eq!(
            token_words("San  Francisco", Mode::Voice),
            ["san", "francisco"]
        );
    }

    fn grammar_with(rules: &[(&str, Vec<Node>)]) -> Result<Model, GrammarError> {
        let mut b = Builder::new(Form::Abnf);
        for (name, body) in rules {
            let mut parts = Vec::new();
            for node in body {
                parts.push(b.push(node.clone()).unwrap());
            }
            let body = b.seq(parts).unwrap();
            b.rule(name, true, body, 1)?;
        }
        b.finish(Mode::Voice, None, true, TagFormat::Sniff)
    }

    #[test]
    fn left_recursion_through_a_nullable_prefix_is_refused() {
        let mut b = Builder::new(Form::Abnf);
        let null = b.push(Node::Null).unwrap();
        let self_ref = b
            .reference(PendingRef::Local {
                name: "a".into(),
                line: 1,
            })
            .unwrap();
        let word = b.token("x", Mode::Voice).unwrap().unwrap();
        let body = b.seq(vec![null, self_ref, word]).unwrap();
        b.rule("a", true, body, 1).unwrap();
        let err = b
            .finish(Mode::Voice, None, true, TagFormat::Sniff)
            .unwrap_err();
        assert!(err.to_string().contains("left-recursive"), "{err}");
    }

    #[test]
    fn duplicate_and_special_rule_names_are_refused() {
        let dup = grammar_with(&[("a", vec![Node::Null]), ("a", vec![Node::Null])]);
        assert!(dup.is_err());
        let special = grammar_with(&[("VOID", vec![Node::Null])]);
        assert!(special.is_err());
        assert!(grammar_with(&[("a", vec![Node::Null])]).is_ok());
    }
}
