//! roxmltree tree → owned [`Document`].
//!
//! Elements are recognised by local name in the VoiceXML namespace or in no namespace (the
//! namespace is optional in the wild). Unknown elements are skipped with a warning; SSML
//! containers inside prompts (`<s>`, `<p>`, `<emphasis>`, ...) contribute their text. Missing
//! required attributes and malformed numbers are errors (`error.badfetch`), with position.

use std::time::Duration;

use roxmltree::Node;
use url::Url;

use super::{
    Catch, Declaration, Document, DocumentError, Field, Filled, Form, FormItem, GotoTarget,
    ItemKind, PromptElement, PromptNode, Property, Stmt, UriSource,
};
use crate::grammar::{Grammar, GrammarError, SrgsGrammar};
use crate::script::push_string_literal;

/// The VoiceXML 2.x namespace.
const VXML_NS: &str = "http://www.w3.org/2001/vxml";
/// The SRGS 1.0 namespace.
const SRGS_NS: &str = "http://www.w3.org/2001/06/grammar";

/// Parses document text fetched from `url`.
pub(super) fn parse(url: Url, text: &str) -> Result<Document, DocumentError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        nodes_limit: 1_000_000,
        ..roxmltree::ParsingOptions::default()
    };
    let xml = roxmltree::Document::parse_with_options(text, options).map_err(|error| {
        let pos = error.pos();
        DocumentError::Xml {
            url: url.to_string(),
            line: pos.row,
            column: pos.col,
            message: strip_position(&error.to_string()),
        }
    })?;
    let mut parser = Parser {
        xml: &xml,
        url: &url,
        warnings: Vec::new(),
    };
    let root = xml.root_element();
    if !is_vxml(&root) || root.tag_name().name() != "vxml" {
        return Err(parser.invalid(&root, "the root element must be <vxml>"));
    }
    let mut document = Document {
        url: url.clone(),
        version: root.attribute("version").unwrap_or("2.1").to_owned(),
        application: root.attribute("application").map(str::to_owned),
        declarations: Vec::new(),
        forms: Vec::new(),
        catches: Vec::new(),
        properties: Vec::new(),
        warnings: Vec::new(),
    };
    for child in root.children().filter(Node::is_element) {
        match vxml_name(&child) {
            Some("form") => {
                let index = document.forms.len();
                document.forms.push(parser.form(child, index)?);
            }
            Some("var" | "script") => {
                if let Some(declaration) = parser.declaration(child)? {
                    document.declarations.push(declaration);
                }
            }
            Some("property") => document.properties.push(parser.property(child)?),
            Some("meta" | "metadata") => {}
            Some(name) if catch_events(name).is_some() => {
                document.catches.push(parser.catch(child, name)?);
            }
            _ => parser.unknown(&child),
        }
    }
    document.warnings = parser.warnings;
    Ok(document)
}

/// roxmltree's message without its trailing " at L:C" (the position is reported separately).
fn strip_position(message: &str) -> String {
    match message.rfind(" at ") {
        Some(at)
            if message[at + 4..]
                .chars()
                .all(|c| c.is_ascii_digit() || c == ':') =>
        {
            message[..at].to_owned()
        }
        _ => message.to_owned(),
    }
}

/// Whether `node` is in the VoiceXML namespace or none.
fn is_vxml(node: &Node<'_, '_>) -> bool {
    matches!(node.tag_name().namespace(), None | Some(VXML_NS))
}

/// The local name of a VoiceXML element, `None` for other namespaces. `<grammar>` may also be
/// in the SRGS namespace (it usually declares it as the default).
fn vxml_name<'a>(node: &Node<'a, '_>) -> Option<&'a str> {
    let name = node.tag_name().name();
    let srgs_grammar = name == "grammar" && node.tag_name().namespace() == Some(SRGS_NS);
    (is_vxml(node) || srgs_grammar).then_some(name)
}

/// The events a catch element (or shorthand) handles, `None` if `name` is not one.
fn catch_events(name: &str) -> Option<Option<&'static str>> {
    match name {
        "catch" => Some(None),
        "error" => Some(Some("error")),
        "help" => Some(Some("help")),
        "noinput" => Some(Some("noinput")),
        "nomatch" => Some(Some("nomatch")),
        _ => None,
    }
}

/// Conversion state: the source for positions, and collected warnings.
struct Parser<'a, 'input> {
    xml: &'a roxmltree::Document<'input>,
    url: &'a Url,
    warnings: Vec<String>,
}

impl Parser<'_, '_> {
    /// An [`DocumentError::Invalid`] at `node`.
    fn invalid(&self, node: &Node<'_, '_>, message: impl Into<String>) -> DocumentError {
        let pos = self.xml.text_pos_at(node.range().start);
        DocumentError::Invalid {
            url: self.url.to_string(),
            line: pos.row,
            column: pos.col,
            message: message.into(),
        }
    }

    /// Records a warning at `node`.
    fn warn(&mut self, node: &Node<'_, '_>, message: impl AsRef<str>) {
        let pos = self.xml.text_pos_at(node.range().start);
        self.warnings.push(format!(
            "{}:{}:{}: {}",
            self.url,
            pos.row,
            pos.col,
            message.as_ref()
        ));
    }

    /// Warns that `node` is skipped.
    fn unknown(&mut self, node: &Node<'_, '_>) {
        let name = node.tag_name().name();
        let parent = node
            .parent_element()
            .map_or("document", |p| p.tag_name().name());
        self.warn(
            node,
            format!("ignored unsupported element <{name}> in <{parent}>"),
        );
    }

    /// A required attribute.
    fn required<'a>(&self, node: &Node<'a, '_>, name: &str) -> Result<&'a str, DocumentError> {
        node.attribute(name).ok_or_else(|| {
            self.invalid(
                node,
                format!("<{}> needs a {name} attribute", node.tag_name().name()),
            )
        })
    }

    /// Refuses an element carrying more than one of mutually exclusive attributes.
    fn at_most_one(&self, node: &Node<'_, '_>, names: &[&str]) -> Result<(), DocumentError> {
        let present: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| node.has_attribute(*n))
            .collect();
        if present.len() > 1 {
            return Err(self.invalid(
                node,
                format!(
                    "<{}> takes only one of {}",
                    node.tag_name().name(),
                    present.join(" and ")
                ),
            ));
        }
        Ok(())
    }

    /// An optional unsigned attribute (`count`).
    fn count(&self, node: &Node<'_, '_>) -> Result<u32, DocumentError> {
        match node.attribute("count") {
            None => Ok(1),
            Some(text) => text.trim().parse().map_err(|_| {
                self.invalid(
                    node,
                    format!("count={text:?} is not a positive whole number"),
                )
            }),
        }
    }

    /// `<var>` or `<script>` at document or form level.
    fn declaration(&mut self, node: Node<'_, '_>) -> Result<Option<Declaration>, DocumentError> {
        Ok(match self.stmt_element(node)? {
            Some(Stmt::Var { name, expr }) => Some(Declaration::Var { name, expr }),
            Some(Stmt::Script(source)) => Some(Declaration::Script(source)),
            _ => None,
        })
    }

    /// `<property>`.
    fn property(&self, node: Node<'_, '_>) -> Result<Property, DocumentError> {
        Ok(Property {
            name: self.required(&node, "name")?.to_owned(),
            value: self.required(&node, "value")?.to_owned(),
        })
    }

    /// A catch element or one of its shorthands.
    fn catch(&mut self, node: Node<'_, '_>, name: &str) -> Result<Catch, DocumentError> {
        let events = match catch_events(name).flatten() {
            Some(event) => vec![event.to_owned()],
            None => node
                .attribute("event")
                .unwrap_or_default()
                .split_whitespace()
                .map(|e| e.trim_end_matches(".*").trim_end_matches('.').to_owned())
                .collect(),
        };
        Ok(Catch {
            events,
            count: self.count(&node)?,
            cond: node.attribute("cond").map(str::to_owned),
            content: self.stmts(node)?,
        })
    }

    /// `<form>`.
    fn form(&mut self, node: Node<'_, '_>, index: usize) -> Result<Form, DocumentError> {
        let mut form = Form {
            id: node
                .attribute("id")
                .map_or_else(|| format!("__form{index}"), str::to_owned),
            declarations: Vec::new(),
            items: Vec::new(),
            filled: Vec::new(),
            catches: Vec::new(),
            properties: Vec::new(),
        };
        for child in node.children().filter(Node::is_element) {
            match vxml_name(&child) {
                Some("block") => {
                    let content = self.stmts(child)?;
                    let item = self.item(child, form.items.len(), ItemKind::Block(content))?;
                    form.items.push(item);
                }
                Some("field") => {
                    let field = self.field(child)?;
                    let item = self.item(child, form.items.len(), ItemKind::Field(field))?;
                    form.items.push(item);
                }
                Some("var" | "script") => {
                    if let Some(declaration) = self.declaration(child)? {
                        form.declarations.push(declaration);
                    }
                }
                Some("filled") => form.filled.push(self.filled(child)?),
                Some("property") => form.properties.push(self.property(child)?),
                Some(name) if catch_events(name).is_some() => {
                    form.catches.push(self.catch(child, name)?);
                }
                _ => self.unknown(&child),
            }
        }
        Ok(form)
    }

    /// The common part of a form item; catches and properties are collected from children.
    fn item(
        &mut self,
        node: Node<'_, '_>,
        index: usize,
        kind: ItemKind,
    ) -> Result<FormItem, DocumentError> {
        let name = node
            .attribute("name")
            .map_or_else(|| format!("__item{index}"), str::to_owned);
        if !crate::script::is_identifier(&name) {
            return Err(self.invalid(&node, format!("name={name:?} is not a valid variable name")));
        }
        let mut catches = Vec::new();
        let mut properties = Vec::new();
        for child in node.children().filter(Node::is_element) {
            match vxml_name(&child) {
                Some("property") => properties.push(self.property(child)?),
                Some(name) if catch_events(name).is_some() => {
                    catches.push(self.catch(child, name)?);
                }
                _ => {}
            }
        }
        Ok(FormItem {
            name,
            expr: node.attribute("expr").map(str::to_owned),
            cond: node.attribute("cond").map(str::to_owned),
            catches,
            properties,
            kind,
        })
    }

    /// `<field>` content other than catches and properties.
    fn field(&mut self, node: Node<'_, '_>) -> Result<Field, DocumentError> {
        let mut field = Field {
            prompts: Vec::new(),
            grammars: Vec::new(),
            filled: Vec::new(),
        };
        if let Some(builtin) = node.attribute("type") {
            field.grammars.push(match Grammar::builtin(builtin) {
                Ok(grammar) => grammar,
                Err(GrammarError::UnknownBuiltin(_)) => {
                    self.warn(
                        &node,
                        format!(
                            "type={builtin:?} is not supported; the field only reports nomatch"
                        ),
                    );
                    Grammar::Inactive {
                        reason: format!("builtin {builtin}"),
                    }
                }
                Err(error) => return Err(self.invalid(&node, error.to_string())),
            });
        }
        let mut bare = Vec::new();
        for child in node.children() {
            if child.is_text() {
                self.prompt_node(child, &mut bare)?;
                continue;
            }
            if !child.is_element() {
                continue;
            }
            match vxml_name(&child) {
                Some("prompt") => {
                    flush_bare(&mut bare, &mut field.prompts);
                    field.prompts.push(self.prompt(child)?);
                }
                Some("audio" | "value" | "break" | "enumerate") => {
                    self.prompt_node(child, &mut bare)?;
                }
                Some("grammar") => field.grammars.push(self.grammar(child)?),
                Some("filled") => field.filled.push(self.filled(child)?),
                Some("property") => {}
                Some(name) if catch_events(name).is_some() => {}
                _ => self.unknown(&child),
            }
        }
        flush_bare(&mut bare, &mut field.prompts);
        Ok(field)
    }

    /// `<grammar>`: builtin URI, inline SRGS in DTMF mode, or inactive.
    fn grammar(&mut self, node: Node<'_, '_>) -> Result<Grammar, DocumentError> {
        self.at_most_one(&node, &["src", "srcexpr"])?;
        if let Some(expr) = node.attribute("srcexpr") {
            self.warn(
                &node,
                format!("grammar srcexpr={expr:?} is not supported yet"),
            );
            return Ok(Grammar::Inactive {
                reason: expr.to_owned(),
            });
        }
        if let Some(src) = node.attribute("src") {
            if src.starts_with("builtin:") {
                return match Grammar::builtin_uri(src) {
                    Ok(grammar) => Ok(grammar),
                    Err(GrammarError::UnknownBuiltin(_)) => {
                        self.warn(&node, format!("grammar {src:?} is not supported"));
                        Ok(Grammar::Inactive {
                            reason: src.to_owned(),
                        })
                    }
                    Err(error) => Err(self.invalid(&node, error.to_string())),
                };
            }
            self.warn(
                &node,
                format!("external grammar {src:?} is not supported yet"),
            );
            return Ok(Grammar::Inactive {
                reason: src.to_owned(),
            });
        }
        if node.attribute("mode") != Some("dtmf") {
            return Ok(Grammar::Inactive {
                reason: "voice grammar".to_owned(),
            });
        }
        SrgsGrammar::from_xml(node)
            .map(Grammar::Srgs)
            .map_err(|error| self.invalid(&node, error.to_string()))
    }

    /// `<filled mode namelist>`.
    fn filled(&mut self, node: Node<'_, '_>) -> Result<Filled, DocumentError> {
        Ok(Filled {
            any: node.attribute("mode") == Some("any"),
            namelist: names(node.attribute("namelist")),
            content: self.stmts(node)?,
        })
    }

    /// `<prompt>`.
    fn prompt(&mut self, node: Node<'_, '_>) -> Result<PromptElement, DocumentError> {
        let bargein = match node.attribute("bargein") {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(self.invalid(&node, format!("bargein={other:?} must be true or false")));
            }
        };
        let mut content = Vec::new();
        for child in node.children() {
            self.prompt_node(child, &mut content)?;
        }
        Ok(PromptElement {
            bargein,
            cond: node.attribute("cond").map(str::to_owned),
            count: self.count(&node)?,
            content,
        })
    }

    /// One node of prompt content, appended to `out`.
    fn prompt_node(
        &mut self,
        node: Node<'_, '_>,
        out: &mut Vec<PromptNode>,
    ) -> Result<(), DocumentError> {
        if node.is_text() {
            out.push(PromptNode::Text(node.text().unwrap_or_default().to_owned()));
            return Ok(());
        }
        if !node.is_element() {
            return Ok(());
        }
        match node.tag_name().name() {
            "value" => out.push(PromptNode::Value(self.required(&node, "expr")?.to_owned())),
            "audio" => {
                let mut fallback = Vec::new();
                for child in node.children() {
                    self.prompt_node(child, &mut fallback)?;
                }
                let src = node.attribute("src").map(str::to_owned);
                let expr = node.attribute("expr").map(str::to_owned);
                if src.is_none() == expr.is_none() {
                    return Err(self.invalid(&node, "<audio> needs exactly one of src and expr"));
                }
                out.push(PromptNode::Audio {
                    src,
                    expr,
                    fallback,
                });
            }
            "break" => out.push(PromptNode::Break(self.break_duration(&node)?)),
            "mark" | "metadata" | "desc" => {}
            "sub" => {
                let alias = node.attribute("alias").unwrap_or_default();
                out.push(PromptNode::Text(format!(" {alias} ")));
            }
            "p" | "s" | "emphasis" | "prosody" | "say-as" | "voice" | "phoneme" | "lang"
            | "speak" => {
                out.push(PromptNode::Text(" ".to_owned()));
                for child in node.children() {
                    self.prompt_node(child, out)?;
                }
                out.push(PromptNode::Text(" ".to_owned()));
            }
            _ => self.unknown(&node),
        }
        Ok(())
    }

    /// `<break time|strength>` (SSML 1.0 §3.2.3).
    fn break_duration(&self, node: &Node<'_, '_>) -> Result<Duration, DocumentError> {
        if let Some(time) = node.attribute("time") {
            return super::parse_duration(time).ok_or_else(|| {
                self.invalid(
                    node,
                    format!("time={time:?} is not a duration such as 500ms or 1.5s"),
                )
            });
        }
        let millis = match node.attribute("strength").unwrap_or("medium") {
            "none" => 0,
            "x-weak" => 100,
            "weak" => 250,
            "medium" => 500,
            "strong" => 1000,
            "x-strong" => 1500,
            other => {
                return Err(self.invalid(
                    node,
                    format!("strength={other:?} is not an SSML break strength"),
                ));
            }
        };
        Ok(Duration::from_millis(millis))
    }

    /// Executable content of `node`'s children.
    fn stmts(&mut self, node: Node<'_, '_>) -> Result<Vec<Stmt>, DocumentError> {
        let children: Vec<Node<'_, '_>> = node.children().collect();
        self.stmts_of(&children)
    }

    /// One executable element; `None` (with a warning) if unknown.
    fn stmt_element(&mut self, node: Node<'_, '_>) -> Result<Option<Stmt>, DocumentError> {
        let attr = |name: &str| node.attribute(name).map(str::to_owned);
        let stmt = match node.tag_name().name() {
            "prompt" => Stmt::Prompt(self.prompt(node)?),
            "var" => {
                let name = self.required(&node, "name")?;
                if !crate::script::is_identifier(name) {
                    return Err(
                        self.invalid(&node, format!("name={name:?} is not a valid variable name"))
                    );
                }
                Stmt::Var {
                    name: name.to_owned(),
                    expr: attr("expr"),
                }
            }
            "assign" => Stmt::Assign {
                name: self.required(&node, "name")?.to_owned(),
                expr: self.required(&node, "expr")?.to_owned(),
            },
            "if" => self.if_stmt(node)?,
            "goto" => Stmt::Goto(self.goto(&node)?),
            "submit" => Stmt::Submit {
                next: self.uri_source(&node, "next", "expr")?,
                namelist: names(node.attribute("namelist")),
                post: node
                    .attribute("method")
                    .is_some_and(|m| m.eq_ignore_ascii_case("post")),
            },
            "disconnect" => Stmt::Disconnect,
            "exit" => Stmt::Exit { expr: attr("expr") },
            "clear" => Stmt::Clear(names(node.attribute("namelist"))),
            "reprompt" => Stmt::Reprompt,
            "log" => {
                let mut content = Vec::new();
                if let Some(expr) = node.attribute("expr") {
                    content.push(PromptNode::Value(expr.to_owned()));
                }
                for child in node.children() {
                    match child.tag_name().name() {
                        "value" if child.is_element() => content
                            .push(PromptNode::Value(self.required(&child, "expr")?.to_owned())),
                        _ if child.is_text() => content.push(PromptNode::Text(
                            child.text().unwrap_or_default().to_owned(),
                        )),
                        _ => {}
                    }
                }
                Stmt::Log {
                    label: attr("label"),
                    content,
                }
            }
            "throw" => {
                let message = match (node.attribute("message"), node.attribute("messageexpr")) {
                    (Some(text), _) => {
                        let mut literal = String::new();
                        push_string_literal(&mut literal, text);
                        Some(literal)
                    }
                    (None, expr) => expr.map(str::to_owned),
                };
                Stmt::Throw {
                    event: self.uri_source(&node, "event", "eventexpr")?,
                    message,
                }
            }
            "script" => {
                self.at_most_one(&node, &["src", "srcexpr"])?;
                if let Some(src) = node.attribute("src").or_else(|| node.attribute("srcexpr")) {
                    self.warn(
                        &node,
                        format!("external <script> ({src:?}) is not supported yet; skipped"),
                    );
                    return Ok(None);
                }
                Stmt::Script(node.children().filter_map(|c| c.text()).collect::<String>())
            }
            _ => {
                self.unknown(&node);
                return Ok(None);
            }
        };
        Ok(Some(stmt))
    }

    /// `<if>` with its `<elseif>`/`<else>` separators.
    fn if_stmt(&mut self, node: Node<'_, '_>) -> Result<Stmt, DocumentError> {
        let mut branches: Vec<(Option<String>, Vec<Node<'_, '_>>)> =
            vec![(Some(self.required(&node, "cond")?.to_owned()), Vec::new())];
        for child in node.children() {
            match (child.is_element(), vxml_name(&child)) {
                (true, Some("elseif")) => {
                    branches.push((Some(self.required(&child, "cond")?.to_owned()), Vec::new()));
                }
                (true, Some("else")) => branches.push((None, Vec::new())),
                _ => {
                    if let Some(branch) = branches.last_mut() {
                        branch.1.push(child);
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(branches.len());
        for (cond, nodes) in branches {
            out.push((cond, self.stmts_of(&nodes)?));
        }
        Ok(Stmt::If(out))
    }

    /// Executable content of a run of sibling nodes.
    fn stmts_of(&mut self, nodes: &[Node<'_, '_>]) -> Result<Vec<Stmt>, DocumentError> {
        let mut stmts = Vec::new();
        let mut bare = Vec::new();
        for child in nodes.iter().copied() {
            if child.is_text() {
                self.prompt_node(child, &mut bare)?;
                continue;
            }
            if !child.is_element() {
                continue;
            }
            match vxml_name(&child) {
                Some("audio" | "value" | "break") => self.prompt_node(child, &mut bare)?,
                // Catch elements and properties belong to the enclosing item, not its content.
                Some("property") => {}
                Some(name) if catch_events(name).is_some() => {}
                Some(_) => {
                    let mut prompts = Vec::new();
                    flush_bare(&mut bare, &mut prompts);
                    stmts.extend(prompts.into_iter().map(Stmt::Prompt));
                    if let Some(stmt) = self.stmt_element(child)? {
                        stmts.push(stmt);
                    }
                }
                None => self.unknown(&child),
            }
        }
        let mut prompts = Vec::new();
        flush_bare(&mut bare, &mut prompts);
        stmts.extend(prompts.into_iter().map(Stmt::Prompt));
        Ok(stmts)
    }

    /// `<goto next|expr|nextitem|expritem>`.
    fn goto(&self, node: &Node<'_, '_>) -> Result<GotoTarget, DocumentError> {
        if node.has_attribute("nextitem") || node.has_attribute("expritem") {
            return self
                .uri_source(node, "nextitem", "expritem")
                .map(GotoTarget::Item);
        }
        self.uri_source(node, "next", "expr").map(GotoTarget::Uri)
    }

    /// Exactly one of a literal and an expression attribute.
    fn uri_source(
        &self,
        node: &Node<'_, '_>,
        literal: &str,
        expr: &str,
    ) -> Result<UriSource, DocumentError> {
        match (node.attribute(literal), node.attribute(expr)) {
            (Some(value), None) => Ok(UriSource::Literal(value.to_owned())),
            (None, Some(value)) => Ok(UriSource::Expr(value.to_owned())),
            _ => Err(self.invalid(
                node,
                format!(
                    "<{}> needs exactly one of {literal} and {expr}",
                    node.tag_name().name()
                ),
            )),
        }
    }
}

/// Turns collected bare prompt content into a prompt, if it says anything.
fn flush_bare(bare: &mut Vec<PromptNode>, out: &mut Vec<PromptElement>) {
    let speaks = bare.iter().any(|node| match node {
        PromptNode::Text(text) => !text.trim().is_empty(),
        _ => true,
    });
    if speaks {
        out.push(PromptElement {
            bargein: None,
            cond: None,
            count: 1,
            content: std::mem::take(bare),
        });
    }
    bare.clear();
}

/// A whitespace-separated name list.
fn names(list: Option<&str>) -> Vec<String> {
    list.unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Document, DocumentError> {
        parse(
            Url::parse("http://example.test/app/doc.vxml").unwrap(),
            text,
        )
    }

    #[test]
    fn namespace_is_optional_and_other_namespaces_are_skipped() {
        let plain =
            parse_str(r#"<vxml version="2.1"><form id="f"><block/></form></vxml>"#).unwrap();
        let namespaced = parse_str(
            r#"<vxml xmlns="http://www.w3.org/2001/vxml" xmlns:x="urn:x" version="2.0">
                 <form id="f"><block/><x:block/></form></vxml>"#,
        )
        .unwrap();
        assert_eq!(plain.forms[0].items.len(), 1);
        assert_eq!(namespaced.forms[0].items.len(), 1);
        assert_eq!(namespaced.version, "2.0");
        assert_eq!(namespaced.warnings.len(), 1, "{:?}", namespaced.warnings);
        assert!(
            namespaced.warnings[0].contains(":2:"),
            "{:?}",
            namespaced.warnings
        );
    }

    #[test]
    fn if_branches_split_at_elseif_and_else() {
        let doc = parse_str(
            r#"<vxml><form><block>
                 <if cond="a"><log>1</log><log>2</log>
                 <elseif cond="b"/><log>3</log>
                 <else/><exit/></if></block></form></vxml>"#,
        )
        .unwrap();
        let ItemKind::Block(stmts) = &doc.forms[0].items[0].kind else {
            panic!("expected a block");
        };
        let [Stmt::If(branches)] = stmts.as_slice() else {
            panic!("expected one <if>: {stmts:?}");
        };
        let shape: Vec<(Option<&str>, usize)> = branches
            .iter()
            .map(|(cond, body)| (cond.as_deref(), body.len()))
            .collect();
        assert_eq!(shape, [(Some("a"), 2), (Some("b"), 1), (None, 1)]);
    }

    #[test]
    fn bare_text_and_catches_inside_items_are_separated() {
        let doc = parse_str(
            r#"<vxml><form><field name="f" type="boolean">Yes or no?
                 <nomatch count="2">Again.</nomatch><property name="timeout" value="2s"/>
               </field></form></vxml>"#,
        )
        .unwrap();
        let item = &doc.forms[0].items[0];
        let ItemKind::Field(field) = &item.kind else {
            panic!("expected a field");
        };
        assert_eq!(field.prompts.len(), 1);
        assert_eq!(field.grammars, [Grammar::Boolean]);
        assert_eq!(item.catches.len(), 1);
        assert_eq!(item.catches[0].events, ["nomatch"]);
        assert_eq!(item.catches[0].count, 2);
        assert_eq!(item.properties[0].value, "2s");
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let error = parse_str("<vxml>\n  <form><block>\n    <goto/>\n  </block></form></vxml>")
            .unwrap_err();
        let DocumentError::Invalid { line, column, .. } = &error else {
            panic!("expected Invalid, got {error:?}");
        };
        assert_eq!((*line, *column), (3, 5));
        assert!(error.to_string().contains("next and expr"), "{error}");

        let error = parse_str("<vxml>\n<form>\n</vxml>").unwrap_err();
        let DocumentError::Xml { line, .. } = &error else {
            panic!("expected Xml, got {error:?}");
        };
        assert_eq!(*line, 3);
        assert!(
            !error.to_string().contains(" at 3:"),
            "position given once: {error}"
        );

        assert!(matches!(
            parse_str("<html/>"),
            Err(DocumentError::Invalid { .. })
        ));
        assert!(matches!(
            parse_str(r#"<vxml><form><block><prompt count="x">a</prompt></block></form></vxml>"#),
            Err(DocumentError::Invalid { .. })
        ));
    }

    #[test]
    fn durations() {
        use super::super::parse_duration;
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 250 "), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("1e300s"), None);
    }
}
