//! The XML form of SRGS 1.0 (`application/srgs+xml`, SRGS 1.0 §2–§4).
//!
//! Reads a `<grammar>` element (standalone, or inline in VoiceXML where it carries the
//! VoiceXML namespace or none) into a [`Model`]. Elements of other namespaces and
//! `<example>`, `<lexicon>`, `<metadata>` are accepted and ignored. A conformance parse
//! (`strict`) also insists on what SRGS makes mandatory for a standalone document: the SRGS
//! namespace, `version="1.0"`, and `xml:lang` on a voice grammar.

use super::builtin::Builtin;
use super::model::{
    Builder, ExternalRef, Form, Model, Node, NodeId, PendingRef, TagFormat, Target,
};
use super::{GrammarError, Mode};

/// The SRGS namespace.
pub(crate) const SRGS_NS: &str = "http://www.w3.org/2001/06/grammar";
const VXML_NS: &str = "http://www.w3.org/2001/vxml";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Deepest element nesting read.
const MAX_DEPTH: usize = 128;

/// Parses a whole SRGS XML document.
pub(crate) fn parse_document(
    text: &str,
    base: Option<&url::Url>,
    strict: bool,
) -> Result<Model, GrammarError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        nodes_limit: 200_000,
        ..roxmltree::ParsingOptions::default()
    };
    let doc =
        roxmltree::Document::parse_with_options(text, options).map_err(|e| GrammarError::Xml {
            line: e.pos().row,
            message: e.to_string(),
        })?;
    parse_element(doc.root_element(), base, strict)
}

/// Parses a `<grammar>` element.
pub(crate) fn parse_element(
    grammar: roxmltree::Node<'_, '_>,
    base: Option<&url::Url>,
    strict: bool,
) -> Result<Model, GrammarError> {
    let line = line_of(grammar);
    if grammar.tag_name().name() != "grammar" {
        return Err(GrammarError::Xml {
            line,
            message: format!(
                "the root element is <{}>, not <grammar>",
                grammar.tag_name().name()
            ),
        });
    }
    let bad = |message: String| GrammarError::Xml { line, message };
    if strict {
        if grammar.tag_name().namespace() != Some(SRGS_NS) {
            return Err(bad(format!("<grammar> must be in the namespace {SRGS_NS}")));
        }
        if grammar.attribute("version").map(str::trim) != Some("1.0") {
            return Err(bad("<grammar> needs version=\"1.0\"".to_owned()));
        }
    }
    let mode = match grammar.attribute("mode").map(str::trim) {
        None | Some("voice") => Mode::Voice,
        Some("dtmf") => Mode::Dtmf,
        Some(other) if strict => {
            return Err(bad(format!("mode={other:?} is neither voice nor dtmf")));
        }
        Some(_) => Mode::Voice,
    };
    if strict && mode == Mode::Voice && grammar.attribute((XML_NS, "lang")).is_none() {
        return Err(bad(
            "a voice grammar needs xml:lang (SRGS 1.0 §4.5); add e.g. xml:lang=\"en-US\""
                .to_owned(),
        ));
    }
    let mut builder = Builder::new(Form::Xml);
    for meta in grammar.children().filter(|n| is_grammar_element(n, "meta")) {
        if let (Some(name), Some(content)) = (meta.attribute("name"), meta.attribute("content")) {
            builder.metas.push((name.to_owned(), content.to_owned()));
        }
    }
    // Base URI precedence (§4.9): xml:base, then <meta name="base">, then the document's.
    let meta_base = builder
        .metas
        .iter()
        .find(|(name, _)| name == "base")
        .map(|(_, content)| content.clone());
    let declared = grammar
        .attribute((XML_NS, "base"))
        .map(str::to_owned)
        .or(meta_base);
    let base = match declared {
        Some(declared) => Some(resolve(base, &declared).map_err(bad)?),
        None => base.cloned(),
    };
    let reader = Reader {
        mode,
        base: base.as_ref(),
        lines: Lines::default(),
    };
    for rule in grammar.children().filter(|n| is_grammar_element(n, "rule")) {
        let rule_line = reader.lines.of(rule);
        let Some(id) = rule.attribute("id") else {
            return Err(GrammarError::Xml {
                line: rule_line,
                message: "<rule> needs an id".to_owned(),
            });
        };
        let public = rule.attribute("scope").map(str::trim) == Some("public");
        let parts = reader.content(rule, &mut builder, 0)?;
        if parts.is_empty() {
            return Err(GrammarError::Xml {
                line: rule_line,
                message: format!(
                    "rule {id:?} is empty; a rule must contain at least one expansion"
                ),
            });
        }
        let body = builder.seq(parts)?;
        builder.rule(id.trim(), public, body, rule_line)?;
    }
    let root = grammar
        .attribute("root")
        .map(|r| (r.trim().to_owned(), line));
    let tag_format = TagFormat::from_declaration(grammar.attribute("tag-format"));
    builder.finish(mode, root, !strict, tag_format)
}

/// The 1-based line of `node` in its document.
fn line_of(node: roxmltree::Node<'_, '_>) -> u32 {
    Lines::default().of(node)
}

/// Where the lines of a grammar's document start, found once on first use: roxmltree's
/// `text_pos_at` scans from the start of the text on every call, which made a grammar of
/// 40,000 items on one line cost minutes (issue 9).
#[derive(Default)]
struct Lines {
    starts: std::cell::OnceCell<Vec<usize>>,
}

impl Lines {
    /// The 1-based line `node` starts on.
    fn of(&self, node: roxmltree::Node<'_, '_>) -> u32 {
        let starts = self.starts.get_or_init(|| {
            let text = node.document().input_text();
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(at, _)| at + 1))
                .collect()
        });
        let at = node.range().start;
        u32::try_from(starts.partition_point(|start| *start <= at)).unwrap_or(u32::MAX)
    }
}

/// Whether `node` is the grammar-language element `name` (SRGS, VoiceXML or no namespace).
fn is_grammar_element(node: &roxmltree::Node<'_, '_>, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && is_grammar_namespace(node)
}

fn is_grammar_namespace(node: &roxmltree::Node<'_, '_>) -> bool {
    matches!(node.tag_name().namespace(), None | Some(SRGS_NS | VXML_NS))
}

/// Resolves `reference` against `base`.
fn resolve(base: Option<&url::Url>, reference: &str) -> Result<url::Url, String> {
    let reference = reference.trim();
    match base {
        Some(base) => base.join(reference),
        None => url::Url::parse(reference),
    }
    .map_err(|e| format!("cannot resolve the URI {reference:?} ({e}); give the grammar a base URI"))
}

/// Reads rule content with the grammar's mode and base URI.
struct Reader<'u> {
    mode: Mode,
    base: Option<&'u url::Url>,
    /// Line numbers for errors and rule references.
    lines: Lines,
}

impl Reader<'_> {
    /// The expansions of an element's content, in order.
    fn content(
        &self,
        node: roxmltree::Node<'_, '_>,
        b: &mut Builder,
        depth: usize,
    ) -> Result<Vec<NodeId>, GrammarError> {
        if depth > MAX_DEPTH {
            return Err(GrammarError::Xml {
                line: self.lines.of(node),
                message: format!("elements nest deeper than {MAX_DEPTH}"),
            });
        }
        let mut parts = Vec::new();
        for child in node.children() {
            if child.is_text() {
                self.text_tokens(child.text().unwrap_or_default(), b, &mut parts)?;
            } else if child.is_element()
                && is_grammar_namespace(&child)
                && let Some(part) = self.element(child, b, depth + 1)?
            {
                parts.push(part);
            }
        }
        Ok(parts)
    }

    /// Tokens of character data: whitespace-separated, `"…"` quoting a multi-word token.
    fn text_tokens(
        &self,
        text: &str,
        b: &mut Builder,
        parts: &mut Vec<NodeId>,
    ) -> Result<(), GrammarError> {
        for (i, piece) in text.split('"').enumerate() {
            if i % 2 == 1 {
                parts.extend(b.token(piece, self.mode)?);
            } else {
                for word in piece.split_whitespace() {
                    parts.extend(b.token(word, self.mode)?);
                }
            }
        }
        Ok(())
    }

    /// The expansion of one grammar element, `None` for elements with no expansion.
    fn element(
        &self,
        node: roxmltree::Node<'_, '_>,
        b: &mut Builder,
        depth: usize,
    ) -> Result<Option<NodeId>, GrammarError> {
        let line = self.lines.of(node);
        let id = match node.tag_name().name() {
            "item" => {
                let parts = self.content(node, b, depth)?;
                let body = b.seq(parts)?;
                match node.attribute("repeat") {
                    None => body,
                    Some(repeat) => {
                        let (min, max) = super::model::parse_repeat(repeat).ok_or_else(|| {
                            GrammarError::Xml {
                                line,
                                message: format!(
                                    "repeat={repeat:?} is malformed; use n, m-n or m- \
                                     (at most {})",
                                    super::model::MAX_REPEAT
                                ),
                            }
                        })?;
                        b.push(Node::Repeat { body, min, max })?
                    }
                }
            }
            "one-of" => {
                let mut alternatives = Vec::new();
                let mut weights = Vec::new();
                for item in node.children().filter(|n| is_grammar_element(n, "item")) {
                    if let Some(alt) = self.element(item, b, depth + 1)? {
                        alternatives.push(alt);
                        weights.push(
                            item.attribute("weight")
                                .and_then(|w| w.trim().parse::<f32>().ok()),
                        );
                    }
                }
                if alternatives.is_empty() {
                    return Err(GrammarError::Xml {
                        line,
                        message: "<one-of> needs at least one <item>".to_owned(),
                    });
                }
                if alternatives.len() == 1 {
                    alternatives.pop().unwrap_or_default()
                } else {
                    b.alternatives(alternatives, &weights)?
                }
            }
            "token" => {
                let text = node.text().unwrap_or_default();
                let text = text.trim().trim_matches('"');
                match b.token(text, self.mode)? {
                    Some(id) => id,
                    None => return Ok(None),
                }
            }
            "tag" => {
                let text: String = node
                    .children()
                    .filter_map(|c| c.text())
                    .collect::<Vec<_>>()
                    .concat();
                b.push(Node::Tag(text.trim().to_owned()))?
            }
            "ruleref" => self.ruleref(node, b, line)?,
            // Accepted and without expansion: <example>, <lexicon>, <meta>, <metadata>,
            // and anything unknown (a lenient processor ignores it).
            _ => return Ok(None),
        };
        Ok(Some(id))
    }

    fn ruleref(
        &self,
        node: roxmltree::Node<'_, '_>,
        b: &mut Builder,
        line: u32,
    ) -> Result<NodeId, GrammarError> {
        let bad = |message: String| GrammarError::Xml { line, message };
        if let Some(special) = node.attribute("special") {
            return match special.trim() {
                "NULL" => b.push(Node::Null),
                "VOID" => b.push(Node::Void),
                "GARBAGE" => b.push(Node::Garbage),
                other => Err(bad(format!(
                    "special={other:?} is not NULL, VOID or GARBAGE"
                ))),
            };
        }
        let Some(uri) = node.attribute("uri").map(str::trim) else {
            return Err(bad("<ruleref> needs uri or special".to_owned()));
        };
        let reference =
            reference(uri, node.attribute("type"), self.base, self.mode).map_err(|e| match e {
                GrammarError::Invalid(message) => bad(message),
                other => other,
            })?;
        match reference {
            PendingRef::Local { name, .. } => b.reference(PendingRef::Local { name, line }),
            done => b.reference(done),
        }
    }
}

/// Reads a rule reference URI (shared with the ABNF form): `#rule` (local), `builtin:…`, or
/// another grammar's URI with an optional `#rule`.
pub(crate) fn reference(
    uri: &str,
    media_type: Option<&str>,
    base: Option<&url::Url>,
    mode: Mode,
) -> Result<PendingRef, GrammarError> {
    if let Some(name) = uri.strip_prefix('#') {
        return Ok(PendingRef::Local {
            name: name.to_owned(),
            line: 0,
        });
    }
    if let Some(rest) = uri.strip_prefix("builtin:") {
        let (builtin_mode, spec) = match rest.split_once('/') {
            Some(("dtmf", spec)) => (Mode::Dtmf, spec),
            Some(("voice" | "grammar", spec)) => (Mode::Voice, spec),
            _ => (mode, rest),
        };
        let builtin = Builtin::parse(spec, builtin_mode)?;
        return Ok(PendingRef::Done(Target::Builtin {
            uri: uri.to_owned(),
            builtin,
        }));
    }
    let mut url = resolve(base, uri).map_err(GrammarError::Invalid)?;
    let rule = url.fragment().map(str::to_owned);
    url.set_fragment(None);
    Ok(PendingRef::Done(Target::External(ExternalRef {
        written: uri.to_owned(),
        url,
        rule,
        media_type: media_type.map(str::to_owned),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, strict: bool) -> Result<Model, GrammarError> {
        parse_document(
            text,
            url::Url::parse("file:///g/x.grxml").ok().as_ref(),
            strict,
        )
    }

    #[test]
    fn errors_name_the_line_they_are_on() {
        let text = "<grammar xmlns=\"http://www.w3.org/2001/06/grammar\" version=\"1.0\" root=\"a\">\n<rule id=\"a\">one</rule>\n\n<rule id=\"b\"><item repeat=\"x\">two</item></rule></grammar>";
        let error = parse(text, false).expect_err("a malformed repeat");
        assert!(
            matches!(&error, GrammarError::Xml { line: 4, .. }),
            "{error:?}"
        );
        let one_line = text.replace('\n', " ");
        let error = parse(&one_line, false).expect_err("a malformed repeat");
        assert!(
            matches!(&error, GrammarError::Xml { line: 1, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn reads_rules_tokens_and_references() {
        let m = parse(
            r##"<grammar xmlns="http://www.w3.org/2001/06/grammar" version="1.0" xml:lang="en"
                  root="main" tag-format="semantics/1.0">
                 <meta name="in.1" content="a"/>
                 <rule id="main" scope="public">please "San Francisco" <ruleref uri="#x"/>
                   <ruleref uri="other.grxml#r" type="application/srgs+xml"/><tag> out=1 </tag></rule>
                 <rule id="x"><one-of><item>a</item><item repeat="0-1">b</item></one-of></rule>
               </grammar>"##,
            true,
        )
        .unwrap();
        assert_eq!(m.rules.len(), 2);
        assert_eq!(m.root, Some(0));
        assert_eq!(m.tag_format, TagFormat::Script);
        assert_eq!(m.metas, [("in.1".to_owned(), "a".to_owned())]);
        let ext: Vec<_> = m.external_refs().collect();
        assert_eq!(ext.len(), 1);
        assert_eq!(ext[0].url.as_str(), "file:///g/other.grxml");
        assert_eq!(ext[0].rule.as_deref(), Some("r"));
        let tokens: Vec<_> = m
            .nodes
            .iter()
            .filter_map(|n| match n {
                Node::Token { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(tokens, ["please", "San Francisco", "a", "b"]);
    }

    #[test]
    fn strict_parse_requires_namespace_version_and_language() {
        let body = r#"<rule id="x">hi</rule>"#;
        let ok = format!(
            r#"<grammar xmlns="{SRGS_NS}" version="1.0" xml:lang="en" root="x">{body}</grammar>"#
        );
        assert!(parse(&ok, true).is_ok());
        for missing in [
            format!(r#"<grammar version="1.0" xml:lang="en" root="x">{body}</grammar>"#),
            format!(r#"<grammar xmlns="{SRGS_NS}" xml:lang="en" root="x">{body}</grammar>"#),
            format!(r#"<grammar xmlns="{SRGS_NS}" version="1.0" root="x">{body}</grammar>"#),
        ] {
            assert!(parse(&missing, true).is_err(), "{missing}");
            assert!(parse(&missing, false).is_ok(), "{missing}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("<grammar>\n<rule id=\"x\">\n</rule></grammar>", false).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = parse("<grammar><rule id=\"x\">a</rule>\n<oops></grammar>", false).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(
            parse(
                r##"<grammar><rule id="x"><ruleref uri="#y"/></rule></grammar>"##,
                false
            )
            .is_err()
        );
        assert!(
            parse(
                r##"<grammar><rule id="x"><ruleref uri="builtin:nope"/></rule></grammar>"##,
                false
            )
            .is_err()
        );
    }
}
