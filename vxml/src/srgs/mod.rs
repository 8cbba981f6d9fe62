//! SRGS 1.0 grammars (XML and ABNF forms), SISR 1.0 semantic interpretation, and the
//! VoiceXML builtin grammars (VoiceXML 2.0 Appendix P).
//!
//! A [`Grammar`] is parsed once and shared (it is cheap to clone: the rule graph sits behind
//! an `Arc`). External grammars it references are fetched by the caller and supplied with
//! [`Grammar::link_external`]. [`Grammar::match_tokens`] judges a whole token sequence:
//! complete, complete-but-extendable, a prefix, or hopeless ([`Match`]), and interprets a
//! match ([`Interpretation`]).
//!
//! Modules, in the order a grammar flows through them:
//! - `xml`, `abnf`: the two forms → the rule graph (`model`).
//! - `matcher`: memoised chart over (expansion, position) → parse tree ([`ParseNode`]).
//! - `sisr`: parse tree → semantic value (literal, or a generated ECMAScript program).
//! - `builtin`: boolean, digits, number, currency, date, time, phone (keys); `voice`: their
//!   spoken forms.
//! - `spoken` and `jsgf`: a voice grammar as JSGF for a speech recogniser
//!   ([`Grammar::to_jsgf`]); `spoken` spells written tokens as the words a recogniser returns.

mod abnf;
mod builtin;
mod jsgf;
mod matcher;
mod model;
mod sisr;
mod spoken;
mod tree;
mod voice;
mod xml;

use std::sync::Arc;

use builtin::{Builtin, BuiltinMatch};
pub use jsgf::{EXPAND_LIMIT, Jsgf, JsgfError, MAX_JSGF_BYTES, MAX_JSGF_DEPTH, jsgf_union};
use model::{Form, Model};
pub use spoken::spoken_form;
pub use tree::{ParseNode, RuleMatch, RuleName};

/// The input mode of a grammar (SRGS 1.0 §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// DTMF keys `0-9 * # A-D`, one key per token.
    Dtmf,
    /// Speech: whitespace-separated words, matched case-insensitively.
    Voice,
}

/// The semantic value of a match.
#[derive(Debug, Clone, PartialEq)]
pub enum SemanticValue {
    /// A string: a token text, a literal tag, a builtin's string value.
    String(String),
    /// A boolean (`boolean` builtin).
    Bool(bool),
    /// A number (`number` builtin).
    Number(f64),
    /// SISR script: ECMAScript source whose completion value, run in a fresh isolated
    /// function scope, is the interpretation (objects come out as objects).
    Script(String),
}

/// The interpretation of a match.
#[derive(Debug, Clone, PartialEq)]
pub struct Interpretation {
    /// The input tokens joined by a space (DTMF: keys joined without spaces).
    pub utterance: String,
    /// The semantic value.
    pub value: SemanticValue,
}

/// What a grammar makes of a token sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// A match that no longer input can extend.
    Complete(Interpretation),
    /// A match that a longer input could also match (wait for a termchar or timeout).
    Extendable(Interpretation),
    /// No match yet, but more input could make one.
    Prefix,
    /// No continuation can match.
    NoMatch,
}

/// Why a grammar could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The XML form is malformed or breaks an SRGS rule.
    #[error("SRGS XML grammar, line {line}: {message}")]
    Xml {
        /// 1-based line of the problem.
        line: u32,
        /// What is wrong.
        message: String,
    },
    /// The ABNF form is malformed or breaks an SRGS rule.
    #[error("SRGS ABNF grammar, line {line}: {message}")]
    Abnf {
        /// 1-based line of the problem.
        line: u32,
        /// What is wrong.
        message: String,
    },
    /// The grammar as a whole breaks an SRGS rule.
    #[error("SRGS grammar: {0}")]
    Invalid(String),
    /// A builtin type that does not exist.
    #[error(
        "builtin grammar {0:?} is not known; use boolean, currency, date, digits, number, phone or time"
    )]
    UnknownBuiltin(String),
    /// A builtin parameter is malformed.
    #[error(
        "builtin grammar parameter {0:?} is malformed; use e.g. digits?minlength=2;maxlength=4 or boolean?y=1;n=2"
    )]
    BadParameter(String),
    /// The text is neither form.
    #[error(
        "the grammar is neither SRGS XML (<grammar …>) nor ABNF (#ABNF 1.0;); check its content type"
    )]
    UnknownFormat,
}

impl GrammarError {
    /// An error at `line` of a grammar in `form`.
    pub(crate) fn at(form: Form, line: u32, message: String) -> Self {
        match form {
            Form::Xml => Self::Xml { line, message },
            Form::Abnf => Self::Abnf { line, message },
        }
    }
}

/// A parsed SRGS grammar (XML or ABNF) or a VoiceXML builtin.
#[derive(Debug, Clone, PartialEq)]
pub struct Grammar {
    kind: Kind,
    /// External grammars supplied so far, by URI without fragment (flattened: the externals
    /// of externals are here too).
    linked: Vec<(url::Url, Arc<Model>)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Srgs(Arc<Model>),
    Builtin { builtin: Builtin, mode: Mode },
}

impl Grammar {
    fn srgs(model: Model) -> Self {
        Self {
            kind: Kind::Srgs(Arc::new(model)),
            linked: Vec::new(),
        }
    }

    /// An inline `<grammar>` element of a VoiceXML document (namespace optional). Lenient as
    /// VoiceXML platforms are: no `version`, `xml:lang` or namespace needed, and without a
    /// `root` the first rule is the root.
    pub fn from_element(
        node: roxmltree::Node<'_, '_>,
        base: Option<&url::Url>,
    ) -> Result<Self, GrammarError> {
        xml::parse_element(node, base, false).map(Self::srgs)
    }

    /// A fetched or inline grammar text: XML (`<grammar`, after an optional BOM or XML
    /// declaration) or ABNF (`#ABNF 1.0`), chosen by content type (`application/srgs+xml`,
    /// `application/srgs`) or by sniffing. Lenient as [`Grammar::from_element`].
    pub fn parse(
        text: &str,
        content_type: Option<&str>,
        base: Option<&url::Url>,
    ) -> Result<Self, GrammarError> {
        Self::parse_with(text, content_type, base, false)
    }

    /// Like [`Grammar::parse`] but as a conforming SRGS 1.0 processor reads a standalone
    /// document: the SRGS namespace, `version`, a language for voice grammars and a
    /// well-formed ABNF header are required, duplicate or unknown declarations are refused,
    /// and a grammar without `root` has no root rule (only its public rules can be used).
    pub fn parse_conformant(
        text: &str,
        content_type: Option<&str>,
        base: Option<&url::Url>,
    ) -> Result<Self, GrammarError> {
        Self::parse_with(text, content_type, base, true)
    }

    /// Decodes fetched bytes ([`decode`]) and parses them as [`Grammar::parse`] does.
    pub fn parse_bytes(
        bytes: &[u8],
        content_type: Option<&str>,
        base: Option<&url::Url>,
    ) -> Result<Self, GrammarError> {
        Self::parse(&decode(bytes, content_type), content_type, base)
    }

    fn parse_with(
        text: &str,
        content_type: Option<&str>,
        base: Option<&url::Url>,
        strict: bool,
    ) -> Result<Self, GrammarError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let media = content_type.map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        let form = match media.as_deref() {
            Some("application/srgs") => Form::Abnf,
            Some(m) if m.ends_with("xml") => Form::Xml,
            _ => {
                let start = text.trim_start();
                if start.starts_with("#ABNF") {
                    Form::Abnf
                } else if start.starts_with('<') {
                    Form::Xml
                } else {
                    return Err(GrammarError::UnknownFormat);
                }
            }
        };
        match form {
            Form::Xml => xml::parse_document(text, base, strict),
            Form::Abnf => abnf::parse(text.trim_start(), base, strict),
        }
        .map(Self::srgs)
    }

    /// A VoiceXML builtin by `type` value: `digits?minlength=3;maxlength=5`,
    /// `boolean?y=7;n=9`, `number`, `currency`, `date`, `time`, `phone` (VoiceXML 2.0
    /// Appendix P) in `mode`. Voice forms read spoken phrases (`march third`, `three thirty
    /// p m`; see [`Grammar::to_jsgf`] for what a recogniser is given).
    pub fn builtin(spec: &str, mode: Mode) -> Result<Self, GrammarError> {
        Ok(Self {
            kind: Kind::Builtin {
                builtin: Builtin::parse(spec, mode)?,
                mode,
            },
            linked: Vec::new(),
        })
    }

    /// `builtin:dtmf/digits?length=4`, `builtin:grammar/boolean`, `builtin:voice/…`.
    pub fn builtin_uri(uri: &str) -> Result<Self, GrammarError> {
        let rest = uri
            .strip_prefix("builtin:")
            .ok_or_else(|| GrammarError::UnknownBuiltin(uri.to_owned()))?;
        match rest.split_once('/') {
            Some(("dtmf", spec)) => Self::builtin(spec, Mode::Dtmf),
            Some(("grammar" | "voice", spec)) => Self::builtin(spec, Mode::Voice),
            _ => Err(GrammarError::UnknownBuiltin(uri.to_owned())),
        }
    }

    /// The grammar's mode.
    pub fn mode(&self) -> Mode {
        match &self.kind {
            Kind::Srgs(model) => model.mode,
            Kind::Builtin { mode, .. } => *mode,
        }
    }

    /// The root rule's name, if the grammar has one.
    pub fn root_rule(&self) -> Option<&str> {
        match &self.kind {
            Kind::Srgs(model) => model
                .root
                .and_then(|r| model.rules.get(r))
                .map(|r| r.name.as_str()),
            Kind::Builtin { .. } => None,
        }
    }

    /// Names of the public rules, in document order.
    pub fn public_rules(&self) -> Vec<&str> {
        match &self.kind {
            Kind::Srgs(model) => model
                .rules
                .iter()
                .filter(|r| r.public)
                .map(|r| r.name.as_str())
                .collect(),
            Kind::Builtin { .. } => Vec::new(),
        }
    }

    /// The `meta` name/content pairs, in document order.
    pub fn metas(&self) -> &[(String, String)] {
        match &self.kind {
            Kind::Srgs(model) => &model.metas,
            Kind::Builtin { .. } => &[],
        }
    }

    /// Absolute URIs (without fragment) of external grammars referenced by `<ruleref uri>` /
    /// `$<uri>`, here or in linked grammars, that are still to be fetched and linked.
    pub fn external_uris(&self) -> Vec<url::Url> {
        let mut out: Vec<url::Url> = Vec::new();
        let models = self.models();
        for model in models {
            for ext in model.external_refs() {
                if !self.linked.iter().any(|(u, _)| *u == ext.url) && !out.contains(&ext.url) {
                    out.push(ext.url.clone());
                }
            }
        }
        out
    }

    /// Supplies a fetched external grammar for `uri` (its fragment is ignored: the fragment
    /// of each reference picks the rule). Builtins cannot be linked and are ignored.
    pub fn link_external(&mut self, uri: &url::Url, grammar: Self) {
        let mut uri = uri.clone();
        uri.set_fragment(None);
        if let Kind::Srgs(model) = grammar.kind
            && !self.linked.iter().any(|(u, _)| *u == uri)
        {
            self.linked.push((uri, model));
        }
        for (u, model) in grammar.linked {
            if !self.linked.iter().any(|(known, _)| *known == u) {
                self.linked.push((u, model));
            }
        }
    }

    fn models(&self) -> Vec<&Model> {
        let mut models = Vec::with_capacity(1 + self.linked.len());
        if let Kind::Srgs(model) = &self.kind {
            models.push(model.as_ref());
        }
        models.extend(self.linked.iter().map(|(_, m)| m.as_ref()));
        models
    }

    /// Matches a whole token sequence from the root rule (a conformant parse without a root
    /// activates its public rules instead).
    pub fn match_tokens(&self, tokens: &[&str]) -> Match {
        let mut owned = split_tokens(tokens);
        if self.mode() == Mode::Dtmf {
            // Keys may arrive run together ("123"): one key per token.
            owned = owned
                .iter()
                .flat_map(|t| {
                    if t.chars().count() > 1 && t.chars().all(model::is_dtmf_key) {
                        t.chars().map(String::from).collect()
                    } else {
                        vec![t.clone()]
                    }
                })
                .collect();
        }
        let tokens: Vec<&str> = owned.iter().map(String::as_str).collect();
        let mode = self.mode();
        let utterance = match mode {
            Mode::Dtmf => tokens.concat(),
            Mode::Voice => tokens.join(" "),
        };
        let interpretation = |value| Interpretation {
            utterance: utterance.clone(),
            value,
        };
        match &self.kind {
            Kind::Builtin { builtin, mode } => {
                let lower: Vec<String> = tokens.iter().map(|t| t.to_lowercase()).collect();
                let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
                match builtin.judge(&lower, *mode) {
                    BuiltinMatch::Complete(v) => Match::Complete(interpretation(v)),
                    BuiltinMatch::Extendable(v) => Match::Extendable(interpretation(v)),
                    BuiltinMatch::Prefix => Match::Prefix,
                    BuiltinMatch::NoMatch => Match::NoMatch,
                }
            }
            Kind::Srgs(model) => {
                let starts = match model.root {
                    Some(root) => vec![root],
                    None => public_indexes(model),
                };
                let (tree, more) = self.run(&starts, &tokens);
                match (tree, more) {
                    (Some(tree), false) => {
                        Match::Complete(interpretation(sisr::interpret(&tree, mode)))
                    }
                    (Some(tree), true) => {
                        Match::Extendable(interpretation(sisr::interpret(&tree, mode)))
                    }
                    (None, true) => Match::Prefix,
                    (None, false) => Match::NoMatch,
                }
            }
        }
    }

    /// The logical parse structure of `tokens` from the root rule (or, without a root, the
    /// first public rule that matches), if the whole input matches.
    pub fn parse_tree(&self, tokens: &[&str]) -> Option<RuleMatch> {
        let Kind::Srgs(model) = &self.kind else {
            return None;
        };
        let starts = match model.root {
            Some(root) => vec![root],
            None => public_indexes(model),
        };
        self.parse_tree_from(&starts_names(model, &starts), tokens)
    }

    /// Like [`Grammar::parse_tree`] with the named rules active in parallel (first match in
    /// the given order wins).
    pub fn parse_tree_from(&self, rules: &[&str], tokens: &[&str]) -> Option<RuleMatch> {
        let Kind::Srgs(model) = &self.kind else {
            return None;
        };
        let starts: Vec<usize> = rules.iter().filter_map(|r| model.rule_named(r)).collect();
        let owned = split_tokens(tokens);
        let tokens: Vec<&str> = owned.iter().map(String::as_str).collect();
        self.run(&starts, &tokens).0
    }

    fn run(&self, starts: &[usize], tokens: &[&str]) -> (Option<RuleMatch>, bool) {
        let models = self.models();
        let links: Vec<(url::Url, usize)> = self
            .linked
            .iter()
            .enumerate()
            .map(|(i, (u, _))| (u.clone(), i + 1))
            .collect();
        let outcome = matcher::Matcher::new(&models, &links, tokens).run(starts);
        (outcome.tree, outcome.more)
    }
}

fn public_indexes(model: &Model) -> Vec<usize> {
    model
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.public)
        .map(|(i, _)| i)
        .collect()
}

fn starts_names<'m>(model: &'m Model, starts: &[usize]) -> Vec<&'m str> {
    starts
        .iter()
        .filter_map(|&i| model.rules.get(i))
        .map(|r| r.name.as_str())
        .collect()
}

/// Input tokens with any embedded whitespace split out.
fn split_tokens(tokens: &[&str]) -> Vec<String> {
    tokens
        .iter()
        .flat_map(|t| t.split_whitespace())
        .map(str::to_owned)
        .collect()
}

/// Best over several active grammars: a complete match beats an extendable one, which beats
/// a prefix; the first grammar in document order wins ties (VoiceXML 2.0 §3.1.4).
pub fn best_match(grammars: &[&Grammar], tokens: &[&str]) -> Match {
    let rank = |m: &Match| match m {
        Match::Complete(_) => 3,
        Match::Extendable(_) => 2,
        Match::Prefix => 1,
        Match::NoMatch => 0,
    };
    let mut best = Match::NoMatch;
    for grammar in grammars {
        let candidate = grammar.match_tokens(tokens);
        if rank(&candidate) > rank(&best) {
            best = candidate;
            if rank(&best) == 3 {
                break;
            }
        }
    }
    best
}

/// Decodes grammar bytes: a byte order mark, then the content type's `charset`, then the
/// XML declaration's or ABNF header's encoding, then UTF-8 (windows-1252 if that fails).
pub fn decode(bytes: &[u8], content_type: Option<&str>) -> String {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let body = bytes.get(bom..).unwrap_or_default();
        return encoding.decode_without_bom_handling(body).0.into_owned();
    }
    match bytes {
        [0, b'<' | b'#', ..] => {
            return encoding_rs::UTF_16BE
                .decode_without_bom_handling(bytes)
                .0
                .into_owned();
        }
        [b'<' | b'#', 0, ..] => {
            return encoding_rs::UTF_16LE
                .decode_without_bom_handling(bytes)
                .0
                .into_owned();
        }
        _ => {}
    }
    let declared = content_type
        .and_then(|ct| {
            ct.split(';').skip(1).find_map(|p| {
                p.trim()
                    .strip_prefix("charset=")
                    .map(|c| c.trim_matches('"').to_owned())
            })
        })
        .or_else(|| declared_encoding(bytes));
    let encoding = declared
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
        .filter(|e| *e != encoding_rs::UTF_16LE && *e != encoding_rs::UTF_16BE);
    match encoding {
        Some(encoding) => encoding.decode_without_bom_handling(bytes).0.into_owned(),
        None => match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
                .into_owned(),
        },
    }
}

/// The encoding named in the first line: `<?xml … encoding="X"?>` or `#ABNF 1.0 X;`.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = bytes.get(..bytes.len().min(200)).unwrap_or_default();
    let head: String = head.iter().map(|&b| char::from(b)).collect();
    if let Some(abnf) = head.strip_prefix("#ABNF") {
        let header = abnf.split(';').next()?;
        return header.split_whitespace().nth(1).map(str::to_owned);
    }
    let decl = head.strip_prefix("<?xml")?.split("?>").next()?;
    let at = decl.find("encoding")?;
    let rest = decl
        .get(at + "encoding".len()..)?
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = rest.get(1..)?.split(quote).next()?;
    Some(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> url::Url {
        url::Url::parse("file:///g/main.grxml").unwrap()
    }

    fn xml(body: &str) -> Grammar {
        Grammar::parse(body, None, Some(&base())).unwrap()
    }

    fn value(m: &Match) -> Option<&SemanticValue> {
        match m {
            Match::Complete(i) | Match::Extendable(i) => Some(&i.value),
            _ => None,
        }
    }

    #[test]
    fn dtmf_grammar_prefix_extendable_complete() {
        let g = xml(r#"<grammar mode="dtmf" root="menu"><rule id="menu"><one-of>
                 <item>1<tag>'sales'</tag></item>
                 <item>1 2<tag>out = "support";</tag></item>
                 <item>3 3 3</item>
               </one-of></rule></grammar>"#);
        assert_eq!(g.mode(), Mode::Dtmf);
        assert_eq!(
            g.match_tokens(&["1"]),
            Match::Extendable(Interpretation {
                utterance: "1".into(),
                value: SemanticValue::String("sales".into()),
            })
        );
        assert!(matches!(g.match_tokens(&["1", "2"]), Match::Complete(_)));
        assert_eq!(g.match_tokens(&["3", "3"]), Match::Prefix);
        assert_eq!(
            value(&g.match_tokens(&["3", "3", "3"])),
            Some(&SemanticValue::String("333".into()))
        );
        assert_eq!(g.match_tokens(&["4"]), Match::NoMatch);
        assert_eq!(g.match_tokens(&[]), Match::Prefix);
        assert_eq!(
            value(&g.match_tokens(&["333"])),
            Some(&SemanticValue::String("333".into()))
        );
    }

    #[test]
    fn voice_tokens_ignore_case_and_multiword_tokens_span_words() {
        let g = xml(
            r#"<grammar xml:lang="en" root="c"><rule id="c">fly to <one-of>
                 <item>"San Francisco"</item><item><token>New York</token></item></one-of></rule></grammar>"#,
        );
        assert!(matches!(
            g.match_tokens(&["FLY", "to", "san", "francisco"]),
            Match::Complete(_)
        ));
        assert!(matches!(g.match_tokens(&["fly to new"]), Match::Prefix));
        assert_eq!(g.match_tokens(&["fly", "to", "san"]), Match::Prefix);
        let tree = g.parse_tree(&["fly", "to", "New", "York"]).unwrap();
        assert_eq!(tree.to_string(), r#"$c["fly","to","New York"]"#);
    }

    #[test]
    fn external_grammars_link_by_uri() {
        let mut g = Grammar::parse(
            "#ABNF 1.0;\nlanguage en; root $main;\npublic $main = to $<places.gram#city>;",
            None,
            Some(&url::Url::parse("file:///g/main.gram").unwrap()),
        )
        .unwrap();
        let uris = g.external_uris();
        assert_eq!(uris, [url::Url::parse("file:///g/places.gram").unwrap()]);
        assert_eq!(g.match_tokens(&["to", "boston"]), Match::NoMatch);
        let places = Grammar::parse(
            "#ABNF 1.0;\nlanguage en;\npublic $city = boston {'BOS'} | $hidden;\n$hidden = york;",
            None,
            Some(&uris[0]),
        )
        .unwrap();
        g.link_external(&uris[0], places);
        assert!(g.external_uris().is_empty());
        let m = g.match_tokens(&["to", "boston"]);
        assert_eq!(value(&m), Some(&SemanticValue::String("BOS".into())));
        let tree = g.parse_tree(&["to", "Boston"]).unwrap();
        assert_eq!(
            tree.to_string(),
            r#"$main["to",$<places.gram#city>["boston",{!{'BOS'}!}]]"#
        );
    }

    #[test]
    fn private_external_rules_and_mode_mismatch_do_not_match() {
        let mut g = Grammar::parse(
            "#ABNF 1.0;\nlanguage en; root $main;\npublic $main = $<o.gram#p>;",
            None,
            Some(&url::Url::parse("file:///g/main.gram").unwrap()),
        )
        .unwrap();
        let other =
            Grammar::parse("#ABNF 1.0;\nlanguage en;\nprivate $p = x;", None, None).unwrap();
        g.link_external(&url::Url::parse("file:///g/o.gram").unwrap(), other);
        assert_eq!(g.match_tokens(&["x"]), Match::NoMatch);
        let mut d = Grammar::parse(
            "#ABNF 1.0;\nmode dtmf; root $main;\npublic $main = $<o.gram#p>;",
            None,
            Some(&url::Url::parse("file:///g/main.gram").unwrap()),
        )
        .unwrap();
        let voice = Grammar::parse("#ABNF 1.0;\nlanguage en;\npublic $p = 1;", None, None).unwrap();
        d.link_external(&url::Url::parse("file:///g/o.gram").unwrap(), voice);
        assert_eq!(d.match_tokens(&["1"]), Match::NoMatch);
    }

    #[test]
    fn builtins_as_grammars_and_as_rule_references() {
        let g = Grammar::builtin_uri("builtin:dtmf/digits?length=3").unwrap();
        assert_eq!(g.match_tokens(&["1", "2"]), Match::Prefix);
        assert_eq!(
            value(&g.match_tokens(&["1", "2", "3"])),
            Some(&SemanticValue::String("123".into()))
        );
        let b = Grammar::builtin("boolean", Mode::Dtmf).unwrap();
        assert_eq!(
            value(&b.match_tokens(&["2"])),
            Some(&SemanticValue::Bool(false))
        );
        assert!(Grammar::builtin_uri("builtin:dtmf/colour").is_err());
        let pin = xml(
            r##"<grammar mode="dtmf"><rule id="r"><ruleref uri="builtin:dtmf/digits?length=2"/> #</rule></grammar>"##,
        );
        assert_eq!(pin.match_tokens(&["1", "2"]), Match::Prefix);
        assert_eq!(
            value(&pin.match_tokens(&["1", "2", "#"])),
            Some(&SemanticValue::String("12".into()))
        );
        assert_eq!(pin.match_tokens(&["1", "#"]), Match::NoMatch);
    }

    #[test]
    fn garbage_null_void_and_repeats() {
        let g = Grammar::parse(
            "#ABNF 1.0;\nlanguage en;\n$m = $GARBAGE help $NULL | never $VOID | go <2-3>;",
            None,
            None,
        )
        .unwrap();
        // GARBAGE could swallow "help" too and wait for another one: extendable.
        assert!(matches!(
            g.match_tokens(&["please", "help"]),
            Match::Extendable(_)
        ));
        assert!(matches!(
            g.match_tokens(&["help"]),
            Match::Complete(_) | Match::Extendable(_)
        ));
        // "never" cannot finish its own alternative, but GARBAGE may still be followed by "help".
        assert_eq!(g.match_tokens(&["never"]), Match::Prefix);
        assert!(matches!(
            g.match_tokens(&["go", "go"]),
            Match::Extendable(_)
        ));
        assert!(matches!(
            g.match_tokens(&["go", "go", "go"]),
            Match::Complete(_) | Match::Extendable(_)
        ));
        assert_eq!(g.match_tokens(&["go", "go", "go", "go"]), Match::Prefix);
    }

    #[test]
    fn best_match_prefers_complete_then_document_order() {
        let digits = Grammar::builtin("digits", Mode::Dtmf).unwrap();
        let boolean = Grammar::builtin("boolean", Mode::Dtmf).unwrap();
        assert_eq!(
            value(&best_match(&[&digits, &boolean], &["1"])),
            Some(&SemanticValue::Bool(true))
        );
        assert_eq!(best_match(&[&digits, &boolean], &[]), Match::Prefix);
        let one = Grammar::builtin("digits?length=1", Mode::Dtmf).unwrap();
        assert_eq!(
            value(&best_match(&[&one, &boolean], &["1"])),
            Some(&SemanticValue::String("1".into()))
        );
    }

    #[test]
    fn hostile_grammars_stay_bounded() {
        // Nested unbounded repeats of nullable, ambiguous expansions over the longest input.
        let g = Grammar::parse(
            "#ABNF 1.0;\nlanguage en;\n$m = ((a | $GARBAGE | $NULL | a a)<0-> ($m2)<0->)<1-> b;\n\
             $m2 = (a<0-> | $GARBAGE)<0-5> [$m3];\n$m3 = a $m3 | a;",
            None,
            None,
        )
        .unwrap();
        let long = vec!["a"; matcher::MAX_TOKENS];
        let m = g.match_tokens(&long);
        assert!(matches!(m, Match::Prefix | Match::NoMatch), "{m:?}");
        let mut with_end = long.clone();
        with_end.pop();
        with_end.push("b");
        let m = g.match_tokens(&with_end);
        assert!(!matches!(m, Match::Prefix), "{m:?}");
        // Over the limit: refused without work.
        let too_long = vec!["a"; matcher::MAX_TOKENS + 1];
        assert_eq!(g.match_tokens(&too_long), Match::NoMatch);
        // Deep right recursion ends.
        let r = Grammar::parse("#ABNF 1.0;\nlanguage en;\n$r = a [$r];", None, None).unwrap();
        assert!(matches!(
            r.match_tokens(&long),
            Match::Extendable(_) | Match::NoMatch
        ));
        assert!(matches!(r.match_tokens(&long[..40]), Match::Extendable(_)));
    }

    #[test]
    fn decoding_follows_bom_charset_and_declarations() {
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("#ABNF 1.0;".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode(&utf16, None), "#ABNF 1.0;");
        assert_eq!(
            decode(b"#ABNF 1.0 ISO-8859-1;\n$a = r\xe4tt;", None),
            "#ABNF 1.0 ISO-8859-1;\n$a = rätt;"
        );
        assert_eq!(
            decode(
                b"<?xml version='1.0' encoding='ISO-8859-1'?><g>\xe4</g>",
                None
            ),
            "<?xml version='1.0' encoding='ISO-8859-1'?><g>ä</g>"
        );
        assert_eq!(
            decode(
                "<g>ä</g>".as_bytes(),
                Some("application/srgs+xml; charset=utf-8")
            ),
            "<g>ä</g>"
        );
        assert_eq!(decode(b"<g>\xe4</g>", None), "<g>ä</g>");
    }
}
