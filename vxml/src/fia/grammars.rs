//! The grammar seam: the only place the interpreter touches the grammar engine ([`crate::srgs`]).
//!
//! Everything the FIA needs from grammars goes through here: building a grammar from a
//! `<grammar>` element (SRGS XML, or ABNF text inside it), a `type` builtin, a `builtin:` URI,
//! a `dtmf` attribute or a choice's text; reading a fetched external grammar; matching DTMF
//! keys and recognised utterances against the active grammars. A match's SISR program is not
//! run here: the interpreter evaluates it in an isolated scope ([`SemValue::Script`]).

use std::sync::Arc;

use roxmltree::Node;
use url::Url;

use crate::document::UriSource;
use crate::document::cache::GrammarCache;
use crate::script::push_string_literal;
use crate::srgs::{Grammar, Match, SemanticValue};

pub(crate) use crate::srgs::Mode;

/// A grammar ready to match, or a reference to fetch first.
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    /// A grammar ready to match (its own external rule references may still need linking:
    /// [`Compiled::external_uris`]).
    Ready(Grammar),
    /// An external grammar (`src`/`srcexpr`), fetched when it becomes active.
    External {
        /// The URI (literal already resolved against the document base).
        uri: UriSource,
    },
    /// A grammar that can never match (unusable), with the reason.
    Inactive(String),
}

/// The semantic result of a match (SISR 1.0).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SemValue {
    /// A string.
    String(String),
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// An SISR program whose completion value is the result; it must run in an isolated
    /// scope (no document variables) before use.
    Script(String),
    /// A value already computed, as JSON text.
    Json(String),
}

impl SemValue {
    /// The value as a transcript shows it: a string as it is, anything else as written.
    pub(crate) fn to_text(&self) -> String {
        match self {
            Self::String(text) | Self::Script(text) | Self::Json(text) => text.clone(),
            Self::Bool(b) => b.to_string(),
            Self::Number(n) => n.to_string(),
        }
    }

    /// ECMAScript source that evaluates to this value.
    pub(crate) fn to_js(&self) -> String {
        match self {
            Self::String(s) => {
                let mut out = String::new();
                push_string_literal(&mut out, s);
                out
            }
            Self::Bool(b) => b.to_string(),
            Self::Number(n) if n.is_finite() => n.to_string(),
            Self::Number(_) => "NaN".to_owned(),
            Self::Script(source) => format!("({source})"),
            Self::Json(json) => {
                let mut out = String::from("JSON.parse(");
                push_string_literal(&mut out, json);
                out.push(')');
                out
            }
        }
    }
}

impl From<SemanticValue> for SemValue {
    fn from(value: SemanticValue) -> Self {
        match value {
            SemanticValue::String(s) => Self::String(s),
            SemanticValue::Bool(b) => Self::Bool(b),
            SemanticValue::Number(n) => Self::Number(n),
            SemanticValue::Script(program) => Self::Script(program),
        }
    }
}

/// What the DTMF grammars make of the keys so far.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DtmfOutcome {
    /// Grammar `index` matched and no key can extend it.
    Complete(usize, SemValue),
    /// Grammar `index` matched; more keys could extend it.
    Extendable(usize, SemValue),
    /// More keys could make a match.
    Prefix,
    /// No continuation can match.
    NoMatch,
}

impl Compiled {
    /// The grammar's mode, when known (an external grammar's only once fetched).
    pub(crate) fn mode(&self) -> Option<Mode> {
        match self {
            Self::Ready(grammar) => Some(grammar.mode()),
            Self::External { .. } | Self::Inactive(_) => None,
        }
    }

    /// External grammars this grammar's rule references still need (fetch, then
    /// [`Grammar::link_external`]).
    pub(crate) fn external_uris(&self) -> Vec<Url> {
        match self {
            Self::Ready(grammar) => grammar.external_uris(),
            Self::External { .. } | Self::Inactive(_) => Vec::new(),
        }
    }
}

/// Whether a builtin type has a voice form here: all seven of VoiceXML 2.0 Appendix P
/// (`srgs/voice.rs` reads them, `srgs/jsgf/builtins.rs` gives the recognizer their words).
fn has_voice_form(spec: &str) -> bool {
    let name = spec.split('?').next().unwrap_or_default().trim();
    [
        "boolean", "digits", "number", "currency", "date", "time", "phone",
    ]
    .iter()
    .any(|builtin| name.eq_ignore_ascii_case(builtin))
}

/// The grammars of a field `type` (VoiceXML 2.0 Appendix P): the DTMF form and the voice
/// form.
pub(crate) fn builtin_type(spec: &str) -> Result<Vec<Compiled>, String> {
    let mut out = vec![Compiled::Ready(
        Grammar::builtin(spec, Mode::Dtmf).map_err(|e| e.to_string())?,
    )];
    if has_voice_form(spec) {
        out.push(Compiled::Ready(
            Grammar::builtin(spec, Mode::Voice).map_err(|e| e.to_string())?,
        ));
    }
    Ok(out)
}

/// A `builtin:dtmf/...`, `builtin:voice/...` or `builtin:grammar/...` URI (the last, and a
/// URI without a mode, give both forms).
pub(crate) fn builtin_uri(uri: &str) -> Result<Vec<Compiled>, String> {
    let spec = uri.strip_prefix("builtin:").unwrap_or(uri);
    let (mode, spec) = match spec.split_once('/') {
        Some((mode @ ("dtmf" | "voice" | "grammar"), spec)) => (mode, spec),
        _ => ("grammar", spec),
    };
    let all = builtin_type(spec)?;
    Ok(all
        .into_iter()
        .filter(|g| match mode {
            "dtmf" => g.mode() == Some(Mode::Dtmf),
            "voice" => g.mode() == Some(Mode::Voice),
            _ => true,
        })
        .collect())
}

/// A `<grammar>` element of a document: `src`/`srcexpr` (external or builtin), inline SRGS
/// XML, or inline ABNF text.
/// Why a grammar in a format this platform does not read (JSGF, GSL, …) is ignored, naming the
/// format; `None` for SRGS (XML or ABNF) or a type that does not say. `media_type` is the
/// `type` attribute or Content-Type; `text` the grammar's text (its first characters decide
/// for JSGF, whatever the type says).
pub(crate) fn unsupported_format(media_type: Option<&str>, text: &str) -> Option<String> {
    let media = media_type
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| !m.is_empty());
    let start = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    let readable = "this platform reads SRGS 1.0 grammars (XML or ABNF)";
    if start.starts_with("#JSGF") || media.as_deref().is_some_and(|m| m.contains("jsgf")) {
        let named = media
            .as_deref()
            .filter(|m| m.contains("jsgf"))
            .unwrap_or("#JSGF header");
        return Some(format!(
            "a JSGF grammar ({named}) is not supported and is ignored: {readable}"
        ));
    }
    let media = media?;
    let srgs = media == "application/srgs"
        || media.ends_with("xml")
        || media.starts_with("text/")
        || media == "application/octet-stream";
    (!srgs && !start.starts_with('<') && !start.starts_with("#ABNF"))
        .then(|| format!("a grammar of type {media} is not supported and is ignored: {readable}"))
}

pub(crate) fn from_element(node: Node<'_, '_>, base: &Url) -> Result<Vec<Compiled>, String> {
    if let Some(expr) = node.attribute("srcexpr") {
        return Ok(vec![Compiled::External {
            uri: UriSource::Expr(expr.to_owned()),
        }]);
    }
    if let Some(src) = node.attribute("src") {
        let src = src.trim();
        if src.starts_with("builtin:") {
            return builtin_uri(src);
        }
        let uri = base
            .join(src)
            .map_err(|e| format!("src={src:?} cannot be resolved: {e}"))?;
        return Ok(vec![Compiled::External {
            uri: UriSource::Literal(uri.to_string()),
        }]);
    }
    let has_rules = node
        .children()
        .any(|c| c.is_element() && c.tag_name().name() == "rule");
    if has_rules {
        return Grammar::from_element(node, Some(base))
            .map(|g| vec![Compiled::Ready(g)])
            .map_err(|e| e.to_string());
    }
    let text: String = node.children().filter_map(|c| c.text()).collect();
    let text = text.trim();
    if let Some(reason) = unsupported_format(node.attribute("type"), text) {
        return Ok(vec![Compiled::Inactive(reason)]);
    }
    if text.is_empty() {
        return Err("the <grammar> has no rules, no ABNF text and no src".to_owned());
    }
    let abnf = if text.starts_with("#ABNF") {
        text.to_owned()
    } else {
        // An ABNF body without its header (seen in the wild): the header is implied.
        let mode = match node.attribute("mode").map(str::trim) {
            Some("dtmf") => "mode dtmf;\n",
            _ => "",
        };
        format!("#ABNF 1.0;\n{mode}{text}")
    };
    let mut grammar =
        Grammar::parse(&abnf, Some("application/srgs"), Some(base)).map_err(|e| e.to_string())?;
    if node.attribute("mode").map(str::trim) == Some("dtmf") && grammar.mode() != Mode::Dtmf {
        // `<grammar mode="dtmf">` around ABNF without a mode header.
        let with_mode = abnf.replacen(';', ";\nmode dtmf;", 1);
        grammar = Grammar::parse(&with_mode, Some("application/srgs"), Some(base))
            .map_err(|e| e.to_string())?;
    }
    Ok(vec![Compiled::Ready(grammar)])
}

/// A fetched external grammar, from `cache` (shared by every session) or parsed into it
/// there: XML or ABNF by its content when that is plain, else by content type. The result is
/// unlinked; the caller links what its rule references name.
pub(crate) fn from_fetched(
    cache: &GrammarCache,
    bytes: &[u8],
    content_type: Option<&str>,
    url: &Url,
) -> Result<Grammar, crate::srgs::GrammarError> {
    cache.get_or_parse(url, content_type, bytes)
}

/// A grammar whose root is the public rule `rule` of `grammar` (fetched from `url`).
pub(crate) fn rule_of(grammar: Grammar, url: &Url, rule: &str) -> Result<Grammar, String> {
    if !grammar.public_rules().contains(&rule) {
        return Err(format!(
            "the grammar has no public rule {rule:?}; name one of {:?}",
            grammar.public_rules()
        ));
    }
    let mode = match grammar.mode() {
        Mode::Dtmf => "mode dtmf;\n",
        Mode::Voice => "",
    };
    let mut target = url.clone();
    target.set_fragment(Some(rule));
    let wrapper = format!("#ABNF 1.0;\n{mode}root $main;\npublic $main = $<{target}>;");
    let mut root =
        Grammar::parse(&wrapper, Some("application/srgs"), Some(url)).map_err(|e| e.to_string())?;
    root.link_external(url, grammar);
    Ok(root)
}

/// Escapes text for an XML element or attribute.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A one-rule grammar in `mode` whose body is `body` (already SRGS XML) and whose value is
/// the literal `value`.
fn literal_grammar(mode: Mode, body: &str, value: &str) -> Option<Grammar> {
    let mode = match mode {
        Mode::Dtmf => "dtmf",
        Mode::Voice => "voice",
    };
    let text = format!(
        "<grammar mode=\"{mode}\" root=\"r\" tag-format=\"semantics/1.0-literals\">\
         <rule id=\"r\">{body}<tag>{}</tag></rule></grammar>",
        xml_escape(value)
    );
    Grammar::parse(&text, Some("application/srgs+xml"), None).ok()
}

/// The grammars of a `<choice>`/`<option>`/`<link dtmf>`: its DTMF sequence and its text as
/// a phrase, both returning `value`. With `approximate` (`accept="approximate"`, VoiceXML 2.0
/// §2.2.5) any in-order subset of the phrase's words matches.
pub(crate) fn phrase_grammars(
    dtmf: Option<&str>,
    text: &str,
    value: &str,
    approximate: bool,
) -> Vec<Compiled> {
    let mut out = Vec::new();
    if let Some(keys) = dtmf {
        let keys: Vec<String> = keys
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| xml_escape(&c.to_string()))
            .collect();
        if !keys.is_empty()
            && let Some(grammar) = literal_grammar(Mode::Dtmf, &keys.join(" "), value)
        {
            out.push(Compiled::Ready(grammar));
        }
    }
    let words: Vec<String> = words(text).iter().map(|w| xml_escape(w)).collect();
    if !words.is_empty() {
        let body = if approximate && words.len() > 1 {
            // One alternative per required word: the words before and after it optional.
            let mut alternatives = String::from("<one-of>");
            for required in 0..words.len() {
                alternatives.push_str("<item>");
                for (i, word) in words.iter().enumerate() {
                    if i == required {
                        alternatives.push_str(&format!(" {word} "));
                    } else {
                        alternatives.push_str(&format!("<item repeat=\"0-1\">{word}</item>"));
                    }
                }
                alternatives.push_str("</item>");
            }
            alternatives.push_str("</one-of>");
            alternatives
        } else {
            words.join(" ")
        };
        if let Some(grammar) = literal_grammar(Mode::Voice, &body, value) {
            out.push(Compiled::Ready(grammar));
        }
    }
    out
}

/// Matches DTMF keys against `grammars`: a complete match wins, then an extendable one,
/// then a prefix; earlier grammars win ties (VoiceXML 2.0 §3.1.4).
pub(crate) fn match_dtmf(grammars: &[Arc<Compiled>], keys: &str) -> DtmfOutcome {
    let mut best = DtmfOutcome::NoMatch;
    let rank = |m: &DtmfOutcome| match m {
        DtmfOutcome::Complete(..) => 3,
        DtmfOutcome::Extendable(..) => 2,
        DtmfOutcome::Prefix => 1,
        DtmfOutcome::NoMatch => 0,
    };
    let tokens: Vec<&str> = keys.chars().map(key_str).collect();
    for (index, grammar) in grammars.iter().enumerate() {
        let Compiled::Ready(grammar) = grammar.as_ref() else {
            continue;
        };
        if grammar.mode() != Mode::Dtmf {
            continue;
        }
        let candidate = match grammar.match_tokens(&tokens) {
            Match::Complete(i) => DtmfOutcome::Complete(index, i.value.into()),
            Match::Extendable(i) => DtmfOutcome::Extendable(index, i.value.into()),
            Match::Prefix => DtmfOutcome::Prefix,
            Match::NoMatch => DtmfOutcome::NoMatch,
        };
        if rank(&candidate) > rank(&best) {
            best = candidate;
            if rank(&best) == 3 {
                break;
            }
        }
    }
    best
}

/// A DTMF key as a one-character token (`?`, which no grammar has, for anything else).
fn key_str(key: char) -> &'static str {
    const KEYS: [&str; 16] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "A", "B", "C", "D",
    ];
    let index = match key {
        '0'..='9' => key as usize - '0' as usize,
        '*' => 10,
        '#' => 11,
        'A'..='D' => 12 + (key as usize - 'A' as usize),
        'a'..='d' => 12 + (key as usize - 'a' as usize),
        _ => return "?",
    };
    KEYS.get(index).copied().unwrap_or("?")
}

/// Matches a recognised utterance against the voice grammars; the first grammar (in
/// priority order) that accepts the whole utterance wins.
pub(crate) fn match_voice(
    grammars: &[Arc<Compiled>],
    utterance: &str,
) -> Option<(usize, SemValue)> {
    let words = words(utterance);
    let tokens: Vec<&str> = words.iter().map(String::as_str).collect();
    if tokens.is_empty() {
        return None;
    }
    grammars
        .iter()
        .enumerate()
        .find_map(|(index, grammar)| match grammar.as_ref() {
            Compiled::Ready(grammar) if grammar.mode() == Mode::Voice => {
                match grammar.match_tokens(&tokens) {
                    Match::Complete(i) | Match::Extendable(i) => {
                        Some((index, as_spoken(i.value.into(), &tokens, utterance)))
                    }
                    Match::Prefix | Match::NoMatch => None,
                }
            }
            _ => None,
        })
}

/// A value that is just the matched words (no tag gave one) is the utterance as the caller
/// said it (SISR 1.0 §3.3.1: the default is the text recognised), not as the grammar spells
/// its tokens.
fn as_spoken(value: SemValue, tokens: &[&str], utterance: &str) -> SemValue {
    match value {
        SemValue::String(text) if words(&text) == tokens => {
            let spoken: Vec<&str> = utterance
                .split(|c: char| {
                    c.is_whitespace() || (c.is_ascii_punctuation() && c != '\'' && c != '-')
                })
                .filter(|w| !w.is_empty())
                .collect();
            SemValue::String(spoken.join(" "))
        }
        other => other,
    }
}

/// Whether any grammar of `grammars` is in `mode`.
/// The usable voice grammars among `grammars`, in order, for a recognizer.
pub(crate) fn voice_grammars(grammars: &[Arc<Compiled>]) -> Vec<Grammar> {
    grammars
        .iter()
        .filter_map(|grammar| match grammar.as_ref() {
            Compiled::Ready(grammar) if grammar.mode() == Mode::Voice => Some(grammar.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn any_in_mode(grammars: &[Arc<Compiled>], mode: Mode) -> bool {
    grammars.iter().any(|g| g.mode() == Some(mode))
}

/// Lower-case words of `text` (punctuation other than `'` and `-` separates).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\'' && c != '-'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(xml: &str) -> Vec<Compiled> {
        let doc = roxmltree::Document::parse(xml).unwrap();
        let base = Url::parse("http://example.test/app/doc.vxml").unwrap();
        from_element(doc.root_element(), &base).unwrap()
    }

    fn arcs(compiled: Vec<Compiled>) -> Vec<Arc<Compiled>> {
        compiled.into_iter().map(Arc::new).collect()
    }

    #[test]
    fn voice_grammar_matches_words_case_insensitively_with_tags() {
        let grammars = arcs(element(
            r#"<grammar root="c"><rule id="c"><one-of>
                 <item>Chicago<tag>'alpha'</tag></item><item>new york</item>
               </one-of></rule></grammar>"#,
        ));
        assert_eq!(
            match_voice(&grammars, "new  York."),
            Some((0, SemValue::String("new York".into())))
        );
        assert_eq!(
            match_voice(&grammars, "chicago"),
            Some((0, SemValue::String("alpha".into())))
        );
        assert_eq!(match_voice(&grammars, "london"), None);
        assert_eq!(match_voice(&grammars, ""), None);
    }

    #[test]
    fn script_tags_come_back_as_programs() {
        let grammars = arcs(element(
            r#"<grammar root="c" tag-format="semantics/1.0"><rule id="c">
                 go <tag>out.city = 'x'; out.n = 2;</tag></rule></grammar>"#,
        ));
        let Some((0, SemValue::Script(program))) = match_voice(&grammars, "go") else {
            panic!("expected a script value");
        };
        assert!(program.contains("out.city"), "{program}");
    }

    #[test]
    fn inline_abnf_with_and_without_header() {
        let with = arcs(element(
            "<grammar mode=\"dtmf\">#ABNF 1.0;\nmode dtmf;\nroot $r;\n$r = 1 2 {sales};</grammar>",
        ));
        assert_eq!(
            match_dtmf(&with, "12"),
            DtmfOutcome::Complete(0, SemValue::String("sales".into()))
        );
        let without = arcs(element(
            "<grammar mode=\"dtmf\">root $r;\n$r = 3 | 4;</grammar>",
        ));
        assert!(matches!(
            match_dtmf(&without, "4"),
            DtmfOutcome::Complete(0, _)
        ));
        assert_eq!(match_dtmf(&without, "5"), DtmfOutcome::NoMatch);
    }

    #[test]
    fn dtmf_sources_and_external_references() {
        let dtmf = element(
            r#"<grammar mode="dtmf" root="r"><rule id="r">1 2<tag>'x'</tag></rule></grammar>"#,
        );
        assert_eq!(dtmf.first().and_then(Compiled::mode), Some(Mode::Dtmf));
        let external = element(r#"<grammar src="g.grxml"/>"#);
        let [Compiled::External { uri }] = external.as_slice() else {
            panic!("expected an external grammar");
        };
        assert_eq!(
            uri,
            &UriSource::Literal("http://example.test/app/g.grxml".into())
        );
        let builtin = element(r#"<grammar src="builtin:dtmf/boolean"/>"#);
        assert_eq!(builtin.len(), 1);
        let linked = element(
            r#"<grammar root="r"><rule id="r"><ruleref uri="cities.grxml#c"/></rule></grammar>"#,
        );
        assert_eq!(
            linked.first().map(Compiled::external_uris),
            Some(vec![
                Url::parse("http://example.test/app/cities.grxml").unwrap()
            ])
        );
    }

    #[test]
    fn a_fragment_picks_the_public_rule_of_a_fetched_grammar() {
        let url = Url::parse("http://example.test/g.gram").unwrap();
        let fetched = from_fetched(
            &GrammarCache::default(),
            b"#ABNF 1.0;\nmode dtmf;\nroot $a;\npublic $a = 1;\npublic $b = 2 {two};\n$c = 3;",
            Some("text/plain"),
            &url,
        )
        .unwrap();
        let b = arcs(vec![Compiled::Ready(
            rule_of(fetched.clone(), &url, "b").unwrap(),
        )]);
        assert_eq!(
            match_dtmf(&b, "2"),
            DtmfOutcome::Complete(0, SemValue::String("two".into()))
        );
        assert_eq!(match_dtmf(&b, "1"), DtmfOutcome::NoMatch);
        assert!(rule_of(fetched, &url, "c").is_err());
    }

    #[test]
    fn choices_match_by_key_and_by_phrase() {
        let grammars = arcs(phrase_grammars(Some("2"), "Sports news", "sports", false));
        assert_eq!(
            match_dtmf(&grammars, "2"),
            DtmfOutcome::Complete(0, SemValue::String("sports".into()))
        );
        assert_eq!(match_dtmf(&grammars, "3"), DtmfOutcome::NoMatch);
        assert!(match_voice(&grammars, "sports news").is_some());
        assert!(match_voice(&grammars, "sports").is_none());
    }

    #[test]
    fn approximate_choices_match_a_subset_of_their_words_in_order() {
        let grammars = arcs(phrase_grammars(None, "Stock & bond quotes", "q", true));
        for said in ["stock", "quotes", "bond quotes", "stock bond quotes"] {
            assert_eq!(
                match_voice(&grammars, said),
                Some((0, SemValue::String("q".into()))),
                "{said}"
            );
        }
        assert_eq!(match_voice(&grammars, "quotes stock"), None);
        assert_eq!(match_voice(&grammars, "weather"), None);
    }

    #[test]
    fn builtin_forms_by_type_and_uri() {
        let boolean = arcs(builtin_type("boolean?y=7;n=9").unwrap());
        assert_eq!(boolean.len(), 2);
        assert_eq!(
            match_dtmf(&boolean, "9"),
            DtmfOutcome::Complete(0, SemValue::Bool(false))
        );
        assert_eq!(
            match_voice(&boolean, "Yes"),
            Some((1, SemValue::Bool(true)))
        );
        let digits = arcs(builtin_type("digits?length=3").unwrap());
        assert_eq!(match_dtmf(&digits, "12"), DtmfOutcome::Prefix);
        assert_eq!(
            match_dtmf(&digits, "123"),
            DtmfOutcome::Complete(0, SemValue::String("123".into()))
        );
        for spec in ["number", "currency", "date", "time", "phone"] {
            let both = builtin_uri(&format!("builtin:grammar/{spec}")).unwrap();
            assert_eq!(both.len(), 2, "{spec}: a DTMF and a voice form");
            let voice = builtin_uri(&format!("builtin:voice/{spec}")).unwrap();
            assert_eq!(voice.len(), 1, "{spec}");
            assert_eq!(voice[0].mode(), Some(Mode::Voice), "{spec}");
        }
        let number = arcs(builtin_type("number").unwrap());
        assert_eq!(
            match_voice(&number, "two hundred forty five"),
            Some((1, SemValue::Number(245.0)))
        );
        let date = arcs(builtin_uri("builtin:dtmf/date").unwrap());
        assert!(matches!(
            match_dtmf(&date, "20240229"),
            DtmfOutcome::Complete(0, _) | DtmfOutcome::Extendable(0, _)
        ));
        assert!(builtin_type("colour").is_err());
        assert!(builtin_uri("builtin:voice/colour").is_err());
    }

    /// Sessions sharing one [`DocumentCache`](crate::document::DocumentCache) (so one
    /// [`GrammarCache`]), served by a fetcher whose bodies a test can change between calls.
    mod shared_across_sessions {
        use std::time::Instant;

        use crate::caller::{self, Fetcher, RunLimits, ScriptedInputs};
        use crate::document::DocumentCache;
        use crate::session::{
            Fetch, FetchFailure, FetchPurpose, Fetched, Limits, Session, SessionConfig,
        };

        const APP: &str = "http://app.test/main.vxml";
        const TOP: &str = "http://app.test/top.gram";
        const KEYS: &str = "http://app.test/keys.gram";

        const DOCUMENT: &str = r#"<vxml version="2.1"><form><field name="k">
            <grammar src="top.gram"/><prompt>Keys?</prompt>
            <nomatch><prompt>No match.</prompt><exit/></nomatch>
            <filled><prompt>Got <value expr="k"/>.</prompt></filled>
          </field></form></vxml>"#;
        /// The top grammar: its only rule refers to a public rule of another grammar.
        const TOP_GRAMMAR: &str =
            "#ABNF 1.0;\nmode dtmf;\nroot $top;\npublic $top = $<keys.gram#pair> {matched};";

        fn keys_grammar(keys: &str) -> String {
            format!("#ABNF 1.0;\nmode dtmf;\npublic $pair = {keys};")
        }

        /// Serves the app; counts grammar fetches.
        struct App {
            keys: String,
            grammar_fetches: usize,
        }

        impl Fetcher for App {
            fn fetch(&mut self, request: &Fetch) -> Result<Fetched, FetchFailure> {
                if request.purpose == FetchPurpose::Grammar {
                    self.grammar_fetches += 1;
                }
                let (content_type, body) = match request.url.as_str() {
                    APP => ("application/voicexml+xml", DOCUMENT.to_owned()),
                    TOP => ("application/srgs", TOP_GRAMMAR.to_owned()),
                    KEYS => ("text/plain", self.keys.clone()),
                    _ => {
                        return Err(FetchFailure {
                            status: Some(404),
                            message: "Not Found".to_owned(),
                        });
                    }
                };
                Ok(Fetched {
                    url: request.url.clone(),
                    content_type: Some(content_type.to_owned()),
                    body: body.into_bytes(),
                })
            }
        }

        /// Runs one call pressing `keys`; what it said.
        fn call(cache: &std::sync::Arc<DocumentCache>, app: &mut App, keys: &str) -> String {
            let start = Instant::now();
            let config = SessionConfig {
                url: APP.to_owned(),
                vars: vec![],
                local_uri: "sip:a@b".to_owned(),
                remote_uri: "sip:c@d".to_owned(),
                answered_by: None,
                limits: Limits::default(),
            };
            let session = Session::with_cache(config, std::sync::Arc::clone(cache), start)
                .expect("the session starts");
            let mut caller = ScriptedInputs::parse(keys).expect("keys");
            let transcript = caller::run(session, start, app, &mut caller, RunLimits::default());
            transcript.prompt_texts().collect::<Vec<_>>().join(" | ")
        }

        #[test]
        fn many_sessions_fetch_an_external_grammar_but_parse_it_once() {
            let cache = std::sync::Arc::new(DocumentCache::default());
            let mut app = App {
                keys: keys_grammar("1 2"),
                grammar_fetches: 0,
            };
            let sessions = 20;
            for _ in 0..sessions {
                let said = call(&cache, &mut app, "12");
                assert!(said.contains("Got matched."), "{said}");
            }
            // Each session still fetches both grammars (HTTP caching is the platform's job)...
            assert_eq!(app.grammar_fetches, 2 * sessions);
            // ...but only the first parses them.
            let stats = cache.grammars().stats();
            assert_eq!((stats.misses, stats.entries), (2, 2));
            assert_eq!(stats.hits, 2 * (sessions as u64 - 1));
            assert_eq!(cache.stats().misses, 1, "one document parse too");
        }

        #[test]
        fn a_changed_referenced_grammar_is_parsed_again_and_linked_per_session() {
            let cache = std::sync::Arc::new(DocumentCache::default());
            let mut app = App {
                keys: keys_grammar("1 2"),
                grammar_fetches: 0,
            };
            assert!(call(&cache, &mut app, "12").contains("Got matched."));
            // The top grammar's body is unchanged (a cache hit); the one its rule reference
            // names now has other keys: the session must see the new rule, not the old link.
            app.keys = keys_grammar("3 4");
            let said = call(&cache, &mut app, "12");
            assert!(said.contains("No match."), "{said}");
            let said = call(&cache, &mut app, "34");
            assert!(said.contains("Got matched."), "{said}");
            let stats = cache.grammars().stats();
            assert_eq!(stats.misses, 3, "top once, each keys body once");
            assert_eq!(stats.hits, 3);
        }
    }

    #[test]
    fn odd_keys_never_match_and_never_panic() {
        let digits = arcs(builtin_type("digits").unwrap());
        assert_eq!(match_dtmf(&digits, "1é"), DtmfOutcome::NoMatch);
        assert_eq!(key_str('d'), "D");
        assert_eq!(key_str('x'), "?");
    }
}
