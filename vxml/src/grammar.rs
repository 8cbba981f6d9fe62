//! DTMF grammars: VoiceXML builtins (Appendix P) and SRGS 1.0 XML form.
//!
//! A [`Grammar`] answers one question for the collector: given the keys pressed so far, is the
//! input a complete match, a match that could still grow, a prefix of a match, or hopeless
//! ([`Match`])? SRGS rules are an expansion tree matched by bounded backtracking. DTMF grammars
//! are tiny, so that is enough here; the tree is the one a later Earley/NFA matcher (and the
//! ABNF form) will share.
//!
//! Semantic results follow SISR's literal form: the text of the last `<tag>` on the matching
//! path, with one level of quotes (and an `out =` prefix) removed. Without tags the result is
//! the key sequence itself.

use std::collections::HashMap;

/// A grammar active for a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// `builtin:dtmf/digits` (VoiceXML 2.0 Appendix P): a string of 0-9 keys.
    Digits {
        /// Fewest keys (`minlength`, or `length`).
        min: usize,
        /// Most keys (`maxlength`, or `length`); `None` for no limit.
        max: Option<usize>,
    },
    /// `builtin:dtmf/boolean`: 1 is true, 2 is false.
    Boolean,
    /// An SRGS grammar in DTMF mode.
    Srgs(SrgsGrammar),
    /// A grammar this slice cannot use for DTMF (voice mode, external `src`); never matches.
    Inactive {
        /// Why it is inactive, for the log.
        reason: String,
    },
}

/// An SRGS 1.0 grammar (XML form).
#[derive(Debug, Clone, PartialEq)]
pub struct SrgsGrammar {
    /// The root rule id.
    pub root: String,
    /// Rules by id.
    pub rules: HashMap<String, Expansion>,
}

/// A rule expansion (SRGS 1.0 §2).
#[derive(Debug, Clone, PartialEq)]
pub enum Expansion {
    /// One DTMF key.
    Token(char),
    /// Expansions in order (`<item>` or rule body).
    Sequence(Vec<Self>),
    /// `<one-of>`: any one alternative.
    OneOf(Vec<Self>),
    /// `repeat="m-n"` around an expansion.
    Repeat {
        /// The repeated expansion.
        body: Box<Self>,
        /// Fewest repetitions.
        min: usize,
        /// Most repetitions (`None` = unbounded).
        max: Option<usize>,
    },
    /// `<ruleref uri="#id">` to a rule of the same grammar.
    RuleRef(String),
    /// `<tag>` content (SISR literal).
    Tag(String),
}

/// What a grammar makes of the keys pressed so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// A match that no further key can extend: done.
    Complete(Interpretation),
    /// A match that more keys could extend: wait for the interdigit timeout or termchar.
    Extendable(Interpretation),
    /// Not a match yet, but more keys could make one.
    Prefix,
    /// No continuation can match.
    NoMatch,
}

/// The semantic result of a match.
#[derive(Debug, Clone, PartialEq)]
pub enum Interpretation {
    /// A string (digits, SRGS tag literal).
    String(String),
    /// A boolean (`builtin:dtmf/boolean`).
    Bool(bool),
}

/// Why a `builtin:` URI or `type` is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The builtin type is not one this slice implements.
    #[error("builtin grammar {0:?} is not supported; use digits or boolean")]
    UnknownBuiltin(String),
    /// A builtin parameter is malformed.
    #[error(
        "builtin grammar parameter {0:?} is malformed; use e.g. digits?minlength=2;maxlength=4"
    )]
    BadParameter(String),
    /// An SRGS construct is malformed or unsupported.
    #[error("SRGS grammar: {0}")]
    Srgs(String),
}

/// Deepest rule reference nesting followed while matching (stops left recursion).
const MAX_DEPTH: usize = 32;

impl Grammar {
    /// A builtin by type name with parameters: `digits?length=4`, `boolean`.
    pub fn builtin(spec: &str) -> Result<Self, GrammarError> {
        let (name, params) = spec.split_once('?').unwrap_or((spec, ""));
        let mut values = HashMap::new();
        for param in params.split(';').filter(|p| !p.trim().is_empty()) {
            let (key, value) = param
                .split_once('=')
                .ok_or_else(|| GrammarError::BadParameter(param.to_owned()))?;
            let value: usize = value
                .trim()
                .parse()
                .map_err(|_| GrammarError::BadParameter(param.to_owned()))?;
            values.insert(key.trim().to_owned(), value);
        }
        match name.trim() {
            "digits" => {
                let length = values.get("length").copied();
                let min = length
                    .or_else(|| values.get("minlength").copied())
                    .unwrap_or(1);
                let max = length.or_else(|| values.get("maxlength").copied());
                if max.is_some_and(|max| max < min) || max == Some(0) {
                    return Err(GrammarError::BadParameter(params.to_owned()));
                }
                Ok(Self::Digits { min, max })
            }
            "boolean" => Ok(Self::Boolean),
            other => Err(GrammarError::UnknownBuiltin(other.to_owned())),
        }
    }

    /// A `builtin:dtmf/...` URI (`builtin:grammar/...` and voice builtins are refused).
    pub fn builtin_uri(uri: &str) -> Result<Self, GrammarError> {
        match uri.strip_prefix("builtin:dtmf/") {
            Some(spec) => Self::builtin(spec),
            None => Err(GrammarError::UnknownBuiltin(uri.to_owned())),
        }
    }

    /// Matches the DTMF keys pressed so far.
    pub fn matches(&self, keys: &str) -> Match {
        match self {
            Self::Digits { min, max } => {
                let len = keys.chars().count();
                if len == 0 {
                    return Match::Prefix;
                }
                if !keys.chars().all(|c| c.is_ascii_digit()) || max.is_some_and(|m| len > m) {
                    return Match::NoMatch;
                }
                let value = Interpretation::String(keys.to_owned());
                match (len >= *min, *max == Some(len)) {
                    (true, true) => Match::Complete(value),
                    (true, false) => Match::Extendable(value),
                    (false, _) => Match::Prefix,
                }
            }
            Self::Boolean => match keys {
                "" => Match::Prefix,
                "1" => Match::Complete(Interpretation::Bool(true)),
                "2" => Match::Complete(Interpretation::Bool(false)),
                _ => Match::NoMatch,
            },
            Self::Srgs(grammar) => grammar.matches(keys),
            Self::Inactive { .. } => Match::NoMatch,
        }
    }
}

/// Best of several grammars' answers: a complete match wins, then an extendable one, then a
/// prefix. Earlier grammars win ties (VoiceXML 2.0 §3.1.4: document order).
pub fn best_match(grammars: &[Grammar], keys: &str) -> Match {
    let mut best = Match::NoMatch;
    for grammar in grammars {
        let candidate = grammar.matches(keys);
        let rank = |m: &Match| match m {
            Match::Complete(_) => 3,
            Match::Extendable(_) => 2,
            Match::Prefix => 1,
            Match::NoMatch => 0,
        };
        if rank(&candidate) > rank(&best) {
            best = candidate;
        }
    }
    best
}

/// State of one backtracking path: keys consumed and the last tag seen.
#[derive(Debug, Clone)]
struct Path {
    pos: usize,
    tag: Option<String>,
}

impl SrgsGrammar {
    /// Matches `keys` from the root rule.
    pub fn matches(&self, keys: &str) -> Match {
        let keys: Vec<char> = keys.chars().collect();
        let Some(root) = self.rules.get(&self.root) else {
            return Match::NoMatch;
        };
        let mut wants_more = false;
        let ends = self.walk(
            root,
            &keys,
            vec![Path { pos: 0, tag: None }],
            0,
            &mut wants_more,
        );
        let full = ends.into_iter().find(|p| p.pos == keys.len());
        match (full, wants_more) {
            (Some(path), more) => {
                let value = Interpretation::String(
                    path.tag
                        .map_or_else(|| keys.iter().collect(), |tag| literal(&tag)),
                );
                if more {
                    Match::Extendable(value)
                } else {
                    Match::Complete(value)
                }
            }
            (None, true) => Match::Prefix,
            (None, false) => Match::NoMatch,
        }
    }

    /// Every path after matching `expansion` from each of `starts`. Sets `wants_more` when a
    /// path needed a key beyond the input.
    fn walk(
        &self,
        expansion: &Expansion,
        keys: &[char],
        starts: Vec<Path>,
        depth: usize,
        wants_more: &mut bool,
    ) -> Vec<Path> {
        if starts.is_empty() {
            return starts;
        }
        match expansion {
            Expansion::Token(token) => starts
                .into_iter()
                .filter_map(|mut path| match keys.get(path.pos) {
                    Some(key) if key == token => {
                        path.pos += 1;
                        Some(path)
                    }
                    Some(_) => None,
                    None => {
                        *wants_more = true;
                        None
                    }
                })
                .collect(),
            Expansion::Tag(text) => starts
                .into_iter()
                .map(|mut path| {
                    path.tag = Some(text.clone());
                    path
                })
                .collect(),
            Expansion::Sequence(parts) => parts.iter().fold(starts, |paths, part| {
                self.walk(part, keys, paths, depth, wants_more)
            }),
            Expansion::OneOf(alternatives) => alternatives
                .iter()
                .flat_map(|alt| self.walk(alt, keys, starts.clone(), depth, wants_more))
                .collect(),
            Expansion::Repeat { body, min, max } => {
                let mut out = Vec::new();
                let mut current = starts;
                // Each repetition must consume a key, so at most keys.len() + 1 rounds matter.
                let limit = max.unwrap_or(usize::MAX).min(keys.len() + 1);
                for round in 0..=limit {
                    if round >= *min {
                        out.extend(current.iter().cloned());
                    }
                    if round == limit || current.is_empty() {
                        break;
                    }
                    let before: Vec<usize> = current.iter().map(|p| p.pos).collect();
                    current = self.walk(body, keys, current, depth, wants_more);
                    current.retain(|p| !before.contains(&p.pos));
                }
                out
            }
            Expansion::RuleRef(id) => match self.rules.get(id) {
                Some(rule) if depth < MAX_DEPTH => {
                    self.walk(rule, keys, starts, depth + 1, wants_more)
                }
                _ => Vec::new(),
            },
        }
    }

    /// Parses an SRGS XML `<grammar>` element (mode already checked to be DTMF).
    pub(crate) fn from_xml(grammar: roxmltree::Node<'_, '_>) -> Result<Self, GrammarError> {
        let mut rules = HashMap::new();
        let mut first = None;
        for rule in grammar.children().filter(|n| is_srgs(n, "rule")) {
            let id = rule
                .attribute("id")
                .ok_or_else(|| GrammarError::Srgs("<rule> needs an id".to_owned()))?;
            first.get_or_insert_with(|| id.to_owned());
            rules.insert(id.to_owned(), expansion_of(rule)?);
        }
        let root = grammar
            .attribute("root")
            .map(str::to_owned)
            .or(first)
            .ok_or_else(|| GrammarError::Srgs("the grammar has no <rule>".to_owned()))?;
        if !rules.contains_key(&root) {
            return Err(GrammarError::Srgs(format!(
                "root rule {root:?} is not defined"
            )));
        }
        Ok(Self { root, rules })
    }
}

/// Whether `node` is the SRGS (or un-namespaced) element `name`.
fn is_srgs(node: &roxmltree::Node<'_, '_>, name: &str) -> bool {
    node.is_element()
        && node.tag_name().name() == name
        && matches!(
            node.tag_name().namespace(),
            None | Some("http://www.w3.org/2001/06/grammar" | "http://www.w3.org/2001/vxml")
        )
}

/// The expansion of an element's content: text tokens and child elements in order.
fn expansion_of(node: roxmltree::Node<'_, '_>) -> Result<Expansion, GrammarError> {
    let mut parts = Vec::new();
    for child in node.children() {
        if child.is_text() {
            let text = child.text().unwrap_or_default();
            parts.extend(
                text.chars()
                    .filter(|c| !c.is_whitespace())
                    .map(Expansion::Token),
            );
        } else if child.is_element() {
            parts.push(element_expansion(child)?);
        }
    }
    if parts.len() == 1
        && let Some(only) = parts.pop()
    {
        return Ok(only);
    }
    Ok(Expansion::Sequence(parts))
}

/// The expansion of one child element of a rule or item.
fn element_expansion(node: roxmltree::Node<'_, '_>) -> Result<Expansion, GrammarError> {
    let name = node.tag_name().name();
    let expansion = match name {
        "item" => expansion_of(node)?,
        "one-of" => Expansion::OneOf(
            node.children()
                .filter(|n| is_srgs(n, "item"))
                .map(element_expansion)
                .collect::<Result<_, _>>()?,
        ),
        "tag" => Expansion::Tag(node.text().unwrap_or_default().trim().to_owned()),
        "token" => Expansion::Sequence(
            node.text()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .map(Expansion::Token)
                .collect(),
        ),
        "ruleref" => {
            let uri = node.attribute("uri").unwrap_or_default();
            match uri.strip_prefix('#') {
                Some(id) => Expansion::RuleRef(id.to_owned()),
                None => {
                    return Err(GrammarError::Srgs(format!(
                        "<ruleref uri={uri:?}>: only local references (#id) are supported"
                    )));
                }
            }
        }
        other => {
            return Err(GrammarError::Srgs(format!(
                "<{other}> is not supported in DTMF grammars"
            )));
        }
    };
    match node.attribute("repeat") {
        Some(repeat) if name == "item" => {
            let (min, max) = parse_repeat(repeat)?;
            Ok(Expansion::Repeat {
                body: Box::new(expansion),
                min,
                max,
            })
        }
        _ => Ok(expansion),
    }
}

/// `repeat="n"`, `"m-n"` or `"m-"` (SRGS 1.0 §2.5).
fn parse_repeat(repeat: &str) -> Result<(usize, Option<usize>), GrammarError> {
    let bad = || GrammarError::Srgs(format!("repeat={repeat:?} is malformed; use n, m-n or m-"));
    let number = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
    match repeat.split_once('-') {
        None => number(repeat).map(|n| (n, Some(n))),
        Some((min, "")) => Ok((number(min)?, None)),
        Some((min, max)) => {
            let (min, max) = (number(min)?, number(max)?);
            if max < min {
                return Err(bad());
            }
            Ok((min, Some(max)))
        }
    }
}

/// A SISR literal: `'x'`, `"x"`, `out = 'x';` or bare text.
fn literal(tag: &str) -> String {
    let mut text = tag.trim().trim_end_matches(';').trim();
    if let Some(rest) = text.strip_prefix("out")
        && let Some(value) = rest.trim_start().strip_prefix('=')
    {
        text = value.trim();
    }
    for quote in ['\'', '"'] {
        if let Some(inner) = text.strip_prefix(quote).and_then(|t| t.strip_suffix(quote)) {
            return inner.to_owned();
        }
    }
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srgs(xml: &str) -> SrgsGrammar {
        let doc = roxmltree::Document::parse(xml).unwrap();
        SrgsGrammar::from_xml(doc.root_element()).unwrap()
    }

    #[test]
    fn digits_lengths_decide_prefix_extendable_complete() {
        let g = Grammar::builtin("digits?minlength=2;maxlength=3").unwrap();
        assert_eq!(g.matches("1"), Match::Prefix);
        assert_eq!(
            g.matches("12"),
            Match::Extendable(Interpretation::String("12".into()))
        );
        assert_eq!(
            g.matches("123"),
            Match::Complete(Interpretation::String("123".into()))
        );
        assert_eq!(g.matches("1234"), Match::NoMatch);
        assert_eq!(g.matches("1*"), Match::NoMatch);
        let exact = Grammar::builtin_uri("builtin:dtmf/digits?length=4").unwrap();
        assert_eq!(
            exact,
            Grammar::Digits {
                min: 4,
                max: Some(4)
            }
        );
        assert!(Grammar::builtin("digits?maxlength=x").is_err());
        assert!(Grammar::builtin("digits?minlength=3;maxlength=2").is_err());
        assert!(Grammar::builtin("currency").is_err());
    }

    #[test]
    fn boolean_is_one_key() {
        assert_eq!(
            Grammar::Boolean.matches("1"),
            Match::Complete(Interpretation::Bool(true))
        );
        assert_eq!(
            Grammar::Boolean.matches("2"),
            Match::Complete(Interpretation::Bool(false))
        );
        assert_eq!(Grammar::Boolean.matches("3"), Match::NoMatch);
    }

    #[test]
    fn srgs_alternatives_with_tags() {
        let g = srgs(
            r#"<grammar xmlns="http://www.w3.org/2001/06/grammar" mode="dtmf" root="menu">
                 <rule id="menu"><one-of>
                   <item>1<tag>'sales'</tag></item>
                   <item>1 2<tag>out = "support";</tag></item>
                   <item>3 3 3</item>
                 </one-of></rule></grammar>"#,
        );
        assert_eq!(
            g.matches("1"),
            Match::Extendable(Interpretation::String("sales".into()))
        );
        assert_eq!(
            g.matches("12"),
            Match::Complete(Interpretation::String("support".into()))
        );
        assert_eq!(g.matches("33"), Match::Prefix);
        assert_eq!(
            g.matches("333"),
            Match::Complete(Interpretation::String("333".into()))
        );
        assert_eq!(g.matches("4"), Match::NoMatch);
    }

    #[test]
    fn srgs_repeat_and_ruleref() {
        let g = srgs(
            r##"<grammar root="pin"><rule id="pin"><item repeat="2-3"><ruleref uri="#d"/></item>#</rule>
               <rule id="d"><one-of><item>1</item><item>2</item></one-of></rule></grammar>"##,
        );
        assert_eq!(g.matches("1"), Match::Prefix);
        assert_eq!(g.matches("12"), Match::Prefix);
        assert_eq!(
            g.matches("12#"),
            Match::Complete(Interpretation::String("12#".into()))
        );
        assert_eq!(g.matches("1#"), Match::NoMatch);
        assert_eq!(g.matches("1212#"), Match::NoMatch);
    }

    #[test]
    fn left_recursion_terminates() {
        let g = srgs(r##"<grammar root="a"><rule id="a"><ruleref uri="#a"/>1</rule></grammar>"##);
        assert_eq!(g.matches("1"), Match::NoMatch);
    }

    #[test]
    fn malformed_srgs_is_an_error() {
        let doc =
            roxmltree::Document::parse(r#"<grammar root="x"><rule id="y">1</rule></grammar>"#)
                .unwrap();
        assert!(SrgsGrammar::from_xml(doc.root_element()).is_err());
        let doc = roxmltree::Document::parse(
            r#"<grammar><rule id="y"><item repeat="3-1">1</item></rule></grammar>"#,
        )
        .unwrap();
        assert!(SrgsGrammar::from_xml(doc.root_element()).is_err());
    }

    #[test]
    fn best_match_prefers_complete() {
        let grammars = [Grammar::builtin("digits").unwrap(), Grammar::Boolean];
        assert_eq!(
            best_match(&grammars, "1"),
            Match::Complete(Interpretation::Bool(true))
        );
        assert_eq!(best_match(&grammars, ""), Match::Prefix);
    }
}
