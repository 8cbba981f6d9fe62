//! roxmltree tree → owned [`Document`].
//!
//! Elements are recognised by local name in the VoiceXML namespace or in no namespace (the
//! namespace is optional in the wild). Unknown elements are skipped with a warning; SSML
//! elements inside prompts (`<s>`, `<emphasis>`, `<say-as>`, `<mark>`, ...) are kept as
//! [`PromptNode::Ssml`] and [`PromptNode::Mark`], and other SSML containers
//! (`<phoneme>`, `<lang>`) contribute their text. Missing
//! required attributes and malformed numbers are errors (`error.badfetch`), with position.
//! Grammars are compiled here, once per document, through [`crate::fia::grammars`].

use std::sync::Arc;
use std::time::Duration;

use roxmltree::Node;
use url::Url;

use super::{
    Catch, Choice, Document, DocumentError, FetchAttrs, Field, Filled, Form, FormItem, GotoTarget,
    GrammarElement, ItemKind, Link, Menu, Param, PromptElement, PromptNode, Property, Record,
    SsmlElement, SsmlKind, Stmt, Subdialog, Target, Transfer, UriSource,
};
use crate::fia::grammars::{self, Compiled};
use crate::script::push_string_literal;

/// The VoiceXML 2.x namespace.
const VXML_NS: &str = "http://www.w3.org/2001/vxml";
/// The SRGS 1.0 namespace.
const SRGS_NS: &str = "http://www.w3.org/2001/06/grammar";
/// Most choices a menu numbers with `dtmf="true"` (1 to 9).
const AUTO_DTMF: usize = 9;

/// Parses document text fetched from `url`.
pub(super) fn parse(url: Url, text: &str) -> Result<Document, DocumentError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        nodes_limit: 1_000_000,
        ..roxmltree::ParsingOptions::default()
    };
    let xml = roxmltree::Document::parse_with_options(text, options).map_err(|error| {
        let (line, column) = match error {
            // Reported at 1:1; the problem is where the text stops.
            roxmltree::Error::UnclosedRootNode => end_position(text),
            _ => {
                let pos = error.pos();
                (pos.row, pos.col)
            }
        };
        DocumentError::Xml {
            url: url.to_string(),
            line,
            column,
            message: strip_position(&error.to_string()),
        }
    })?;
    let root = xml.root_element();
    let base = root
        .attribute(("http://www.w3.org/XML/1998/namespace", "base"))
        .and_then(|b| url.join(b).ok())
        .unwrap_or_else(|| url.clone());
    let mut parser = Parser {
        xml: &xml,
        url: &url,
        base: &base,
        warnings: Vec::new(),
        vendor_properties: Vec::new(),
        line_starts: std::cell::OnceCell::new(),
    };
    if !is_vxml(&root) || root.tag_name().name() != "vxml" {
        return Err(parser.invalid(&root, "the root element must be <vxml>"));
    }
    let mut document = Document {
        url: url.clone(),
        base: base.clone(),
        version: root.attribute("version").unwrap_or("2.1").to_owned(),
        application: root.attribute("application").map(str::to_owned),
        declarations: Vec::new(),
        forms: Vec::new(),
        catches: Vec::new(),
        properties: Vec::new(),
        links: Vec::new(),
        warnings: Vec::new(),
        text_bytes: text.len(),
    };
    for child in root.children().filter(Node::is_element) {
        match vxml_name(&child) {
            Some("form") => {
                let index = document.forms.len();
                document.forms.push(parser.form(child, index)?);
            }
            Some("menu") => {
                let index = document.forms.len();
                document.forms.push(parser.menu(child, index)?);
            }
            Some("var" | "script" | "data") => {
                if let Some(stmt) = parser.stmt_element(child)? {
                    document.declarations.push(stmt);
                }
            }
            Some("property") => document.properties.push(parser.property(child)?),
            Some("link") => document.links.push(parser.link(child)?),
            Some("meta" | "metadata") => {}
            Some(name) if catch_events(name).is_some() => {
                document.catches.push(parser.catch(child, name)?);
            }
            _ => parser.unknown(&child),
        }
    }
    parser.foreign_attributes(root);
    document.warnings = parser.warnings;
    Ok(document)
}

/// The 1-based line and column just past the end of `text`.
fn end_position(text: &str) -> (u32, u32) {
    let line = text.matches('\n').count().saturating_add(1);
    let last = text.rsplit('\n').next().unwrap_or_default();
    let column = last.chars().count().saturating_add(1);
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

/// The XML Schema instance namespace (`xsi:schemaLocation` is part of ordinary documents).
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The XML namespace (`xml:lang`, `xml:base`).
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The properties VoiceXML 2.0 §6.3 and 2.1 define; others are vendor properties.
const KNOWN_PROPERTIES: &[&str] = &[
    "audiofetchhint",
    "audiomaxage",
    "audiomaxstale",
    "bargein",
    "bargeintype",
    "completetimeout",
    "confidencelevel",
    "datafetchhint",
    "datamaxage",
    "datamaxstale",
    "documentfetchhint",
    "documentmaxage",
    "documentmaxstale",
    "fetchaudio",
    "fetchaudiodelay",
    "fetchaudiominimum",
    "fetchtimeout",
    "grammarfetchhint",
    "grammarmaxage",
    "grammarmaxstale",
    "incompletetimeout",
    "inputmodes",
    "interdigittimeout",
    "maxnbest",
    "maxspeechtimeout",
    "objectfetchhint",
    "objectmaxage",
    "objectmaxstale",
    "recordutterance",
    "recordutterancetype",
    "scriptfetchhint",
    "scriptmaxage",
    "scriptmaxstale",
    "sensitivity",
    "speedvsaccuracy",
    "termchar",
    "termtimeout",
    "timeout",
    "universals",
];

/// roxmltree's message without its trailing " at L:C" (the position is reported separately).
fn strip_position(message: &str) -> String {
    match message.rfind(" at ") {
        Some(at)
            if message
                .get(at + 4..)
                .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == ':')) =>
        {
            message.get(..at).unwrap_or(message).to_owned()
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

/// Whether `name` is prompt content (VoiceXML 2.x §4.1, SSML 1.0, VoiceXML 1.0 §4.1) that
/// may also stand outside a `<prompt>` as an implicit one.
fn is_prompt_content(name: &str) -> bool {
    SsmlKind::from_tag(name).is_some()
        || matches!(
            name,
            "audio"
                | "value"
                | "break"
                | "enumerate"
                | "mark"
                | "phoneme"
                | "lang"
                | "emp"
                | "pros"
                | "sayas"
                | "div"
        )
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
    base: &'a Url,
    warnings: Vec<String>,
    /// Vendor property names already warned about.
    vendor_properties: Vec<String>,
    /// Where each line of the text starts, found on first use (roxmltree's `text_pos_at`
    /// scans from the start of the text on every call: quadratic for a document of many
    /// grammars on few lines).
    line_starts: std::cell::OnceCell<Vec<usize>>,
}

/// The parts of an input item collected from its children.
#[derive(Default)]
struct ItemParts {
    catches: Vec<Catch>,
    properties: Vec<Property>,
    prompts: Vec<PromptElement>,
    grammars: Vec<GrammarElement>,
    filled: Vec<Filled>,
    links: Vec<Link>,
    options: Vec<Choice>,
    params: Vec<Param>,
}

impl Parser<'_, '_> {
    /// An [`DocumentError::Invalid`] at `node`.
    fn invalid(&self, node: &Node<'_, '_>, message: impl Into<String>) -> DocumentError {
        let (line, column) = self.line_column(node);
        DocumentError::Invalid {
            url: self.url.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    /// `line:column` of `node`.
    fn position(&self, node: &Node<'_, '_>) -> String {
        let (line, column) = self.line_column(node);
        format!("{line}:{column}")
    }

    /// The 1-based line and column (in characters) where `node` starts.
    fn line_column(&self, node: &Node<'_, '_>) -> (u32, u32) {
        let text = self.xml.input_text();
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(at, _)| at + 1))
                .collect()
        });
        let at = node.range().start.min(text.len());
        let line = starts.partition_point(|start| *start <= at);
        let start = starts.get(line.saturating_sub(1)).copied().unwrap_or(0);
        let column = text.get(start..at).map_or(0, |s| s.chars().count()) + 1;
        (
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(column).unwrap_or(u32::MAX),
        )
    }

    /// Records a warning at `node`.
    fn warn(&mut self, node: &Node<'_, '_>, message: impl AsRef<str>) {
        let position = self.position(node);
        self.warnings
            .push(format!("{}:{position}: {}", self.url, message.as_ref()));
    }

    /// Warns that `node` is skipped.
    fn unknown(&mut self, node: &Node<'_, '_>) {
        let name = node.tag_name().name();
        let parent = node
            .parent_element()
            .map_or("document", |p| p.tag_name().name());
        let message = match node.tag_name().namespace().filter(|ns| *ns != VXML_NS) {
            Some(namespace) => {
                let prefix = node.lookup_prefix(namespace).unwrap_or("(default)");
                format!(
                    "ignored vendor element <{name}> of prefix {prefix} (namespace {namespace}) in <{parent}>"
                )
            }
            None => format!("ignored unsupported element <{name}> in <{parent}>"),
        };
        self.warn(node, message);
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

    /// `<property>`.
    /// A `<property>`; a name outside the VoiceXML list is kept (a vendor's platform may
    /// want it) and logged once per document.
    fn property(&mut self, node: Node<'_, '_>) -> Result<Property, DocumentError> {
        let name = self.required(&node, "name")?.trim().to_owned();
        let value = self.required(&node, "value")?.to_owned();
        if !KNOWN_PROPERTIES.contains(&name.as_str()) && !self.vendor_properties.contains(&name) {
            self.warn(
                &node,
                format!("property {name:?} is not a VoiceXML property; kept, but this platform ignores it"),
            );
            self.vendor_properties.push(name.clone());
        }
        Ok(Property { name, value })
    }

    /// Warns once for each attribute in a foreign namespace (`voxeo:voice`) on the VoiceXML
    /// elements under `root` (elements of other namespaces are skipped as a whole).
    fn foreign_attributes(&mut self, root: Node<'_, '_>) {
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            for attribute in node.attributes() {
                let Some(namespace) = attribute.namespace() else {
                    continue;
                };
                if [VXML_NS, SRGS_NS, XML_NS, XSI_NS].contains(&namespace) {
                    continue;
                }
                let prefix = node.lookup_prefix(namespace).unwrap_or("?");
                self.warn(
                    &node,
                    format!(
                        "ignored attribute {prefix}:{} (namespace {namespace}) on <{}>",
                        attribute.name(),
                        node.tag_name().name()
                    ),
                );
            }
            stack.extend(
                node.children()
                    .rev()
                    .filter(|c| c.is_element() && vxml_name(c).is_some()),
            );
        }
    }

    /// Fetch attributes of `node`.
    fn fetch_attrs(node: &Node<'_, '_>) -> FetchAttrs {
        let attr = |name: &str| node.attribute(name).map(str::to_owned);
        FetchAttrs {
            timeout: attr("fetchtimeout"),
            maxage: attr("maxage"),
            maxstale: attr("maxstale"),
            fetchaudio: attr("fetchaudio"),
        }
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
            document_scope: node.attribute("scope") == Some("document"),
            declarations: Vec::new(),
            items: Vec::new(),
            filled: Vec::new(),
            catches: Vec::new(),
            properties: Vec::new(),
            links: Vec::new(),
            grammars: Vec::new(),
        };
        for child in node.children().filter(Node::is_element) {
            let name = vxml_name(&child);
            if let Some(kind) = name.filter(|n| is_item(n)) {
                let item = self.item(child, kind, form.items.len())?;
                form.items.push(item);
                continue;
            }
            match name {
                Some("var" | "script" | "data") => {
                    if let Some(stmt) = self.stmt_element(child)? {
                        form.declarations.push(stmt);
                    }
                }
                Some("filled") => form.filled.push(self.filled(child)?),
                Some("property") => form.properties.push(self.property(child)?),
                Some("link") => form.links.push(self.link(child)?),
                Some("grammar") => form.grammars.extend(self.grammar(child)?),
                Some(name) if catch_events(name).is_some() => {
                    form.catches.push(self.catch(child, name)?);
                }
                _ => self.unknown(&child),
            }
        }
        Ok(form)
    }

    /// `<menu>` as the form it stands for (VoiceXML 2.0 §2.2).
    fn menu(&mut self, node: Node<'_, '_>, index: usize) -> Result<Form, DocumentError> {
        let auto_dtmf = node.attribute("dtmf") == Some("true");
        let menu_approximate = node.attribute("accept").map(str::trim) == Some("approximate");
        let mut catches = Vec::new();
        let mut properties = Vec::new();
        let mut prompts = Vec::new();
        let mut choices = Vec::new();
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
                    flush_bare(&mut bare, &mut prompts);
                    prompts.push(self.prompt(child)?);
                }
                Some("audio" | "value" | "break" | "enumerate") => {
                    self.prompt_node(child, &mut bare)?;
                }
                Some("choice") => {
                    let mut choice = self.choice(child)?;
                    if !child.has_attribute("accept") {
                        choice.approximate = menu_approximate;
                    }
                    choices.push(choice);
                }
                Some("property") => properties.push(self.property(child)?),
                Some(name) if catch_events(name).is_some() => {
                    catches.push(self.catch(child, name)?);
                }
                _ => self.unknown(&child),
            }
        }
        flush_bare(&mut bare, &mut prompts);
        if auto_dtmf {
            let unnumbered = choices.iter_mut().filter(|c| c.dtmf.is_none());
            for (key, choice) in (1..=AUTO_DTMF).zip(unnumbered) {
                choice.dtmf = Some(key.to_string());
            }
        }
        for choice in &mut choices {
            if choice.grammars.is_empty() {
                let compiled = grammars::phrase_grammars(
                    choice.dtmf.as_deref(),
                    &choice.text,
                    &choice.value,
                    choice.approximate,
                );
                choice.grammars = self.wrap(&node, compiled);
            } else if let Some(keys) = &choice.dtmf {
                let compiled = grammars::phrase_grammars(Some(keys), "", &choice.value, false);
                let extra = self.wrap(&node, compiled);
                choice.grammars.extend(extra);
            }
        }
        let grammars = choices.iter().flat_map(|c| c.grammars.clone()).collect();
        Ok(Form {
            id: node
                .attribute("id")
                .map_or_else(|| format!("__menu{index}"), str::to_owned),
            document_scope: node.attribute("scope") == Some("document"),
            declarations: Vec::new(),
            items: vec![FormItem {
                name: format!("__menu{index}"),
                expr: None,
                cond: None,
                catches: Vec::new(),
                properties: Vec::new(),
                prompts,
                grammars,
                filled: Vec::new(),
                links: Vec::new(),
                kind: ItemKind::Menu(Menu { choices }),
            }],
            filled: Vec::new(),
            catches,
            properties,
            links: Vec::new(),
            grammars: Vec::new(),
        })
    }

    /// Wraps compiled grammars as elements originating at `node`.
    fn wrap(&self, node: &Node<'_, '_>, compiled: Vec<Compiled>) -> Vec<GrammarElement> {
        let origin = format!("<{}> at {}", node.tag_name().name(), self.position(node));
        compiled
            .into_iter()
            .map(|c| GrammarElement {
                origin: origin.clone(),
                compiled: Arc::new(c),
            })
            .collect()
    }

    /// `<choice>` (menu) or `<option>` (field).
    fn choice(&mut self, node: Node<'_, '_>) -> Result<Choice, DocumentError> {
        let mut text = String::new();
        let mut grammars = Vec::new();
        for child in node.children() {
            if child.is_text() {
                text.push_str(child.text().unwrap_or_default());
            } else if child.is_element() {
                match vxml_name(&child) {
                    Some("grammar") => grammars.extend(self.grammar(child)?),
                    _ => text.push_str(&descendant_text(child)),
                }
            }
        }
        let text = crate::prompt::normalise_space(&text);
        let target = if node.tag_name().name() == "choice" {
            Some(self.target(&node)?)
        } else {
            None
        };
        Ok(Choice {
            dtmf: node.attribute("dtmf").map(str::to_owned),
            value: node
                .attribute("value")
                .map_or_else(|| text.clone(), str::to_owned),
            text,
            target,
            grammars,
            fetch: Self::fetch_attrs(&node),
            approximate: node.attribute("accept").map(str::trim) == Some("approximate"),
        })
    }

    /// `next|expr|event|eventexpr` with `message|messageexpr` of a choice or link.
    fn target(&self, node: &Node<'_, '_>) -> Result<Target, DocumentError> {
        self.at_most_one(node, &["next", "expr", "event", "eventexpr"])?;
        if node.has_attribute("event") || node.has_attribute("eventexpr") {
            return Ok(Target::Event {
                event: self.uri_source(node, "event", "eventexpr")?,
                message: message_expr(node),
            });
        }
        self.uri_source(node, "next", "expr").map(Target::Uri)
    }

    /// `<link>`.
    fn link(&mut self, node: Node<'_, '_>) -> Result<Link, DocumentError> {
        let target = self.target(&node)?;
        let mut grammars = Vec::new();
        for child in node.children().filter(Node::is_element) {
            match vxml_name(&child) {
                Some("grammar") => grammars.extend(self.grammar(child)?),
                _ => self.unknown(&child),
            }
        }
        if let Some(keys) = node.attribute("dtmf") {
            let compiled = grammars::phrase_grammars(Some(keys), "", keys, false);
            grammars.extend(self.wrap(&node, compiled));
        }
        Ok(Link {
            target,
            grammars,
            fetch: Self::fetch_attrs(&node),
        })
    }

    /// A form item of kind `kind`.
    fn item(
        &mut self,
        node: Node<'_, '_>,
        kind: &str,
        index: usize,
    ) -> Result<FormItem, DocumentError> {
        let name = node
            .attribute("name")
            .map_or_else(|| format!("__item{index}"), str::to_owned);
        if !crate::script::is_identifier(&name) {
            return Err(self.invalid(&node, format!("name={name:?} is not a valid variable name")));
        }
        let mut parts = ItemParts::default();
        let kind = match kind {
            "block" => {
                self.item_parts(node, &mut parts, false)?;
                ItemKind::Block(self.stmts(node)?)
            }
            "initial" => {
                self.item_parts(node, &mut parts, true)?;
                ItemKind::Initial
            }
            "field" => {
                if let Some(builtin) = node.attribute("type") {
                    match grammars::builtin_type(builtin) {
                        Ok(compiled) => parts.grammars.extend(self.wrap(&node, compiled)),
                        Err(reason) => self.warn(
                            &node,
                            format!("type={builtin:?}: {reason}; the field only reports nomatch"),
                        ),
                    }
                }
                self.item_parts(node, &mut parts, true)?;
                let options = std::mem::take(&mut parts.options);
                for option in &options {
                    let compiled = grammars::phrase_grammars(
                        option.dtmf.as_deref(),
                        &option.text,
                        &option.value,
                        option.approximate,
                    );
                    parts.grammars.extend(self.wrap(&node, compiled));
                }
                ItemKind::Field(Field {
                    slot: node.attribute("slot").unwrap_or(&name).to_owned(),
                    modal: node.attribute("modal") == Some("true"),
                    options,
                })
            }
            "subdialog" => {
                self.item_parts(node, &mut parts, true)?;
                self.at_most_one(&node, &["src", "srcexpr"])?;
                ItemKind::Subdialog(Subdialog {
                    src: self.uri_source(&node, "src", "srcexpr")?,
                    namelist: names(node.attribute("namelist")),
                    post: is_post(&node),
                    multipart: is_multipart(&node),
                    params: std::mem::take(&mut parts.params),
                    fetch: Self::fetch_attrs(&node),
                })
            }
            "record" => {
                self.item_parts(node, &mut parts, true)?;
                ItemKind::Record(Record {
                    beep: node.attribute("beep") == Some("true"),
                    maxtime: node.attribute("maxtime").map(str::to_owned),
                    finalsilence: node.attribute("finalsilence").map(str::to_owned),
                    dtmfterm: node.attribute("dtmfterm") != Some("false"),
                    media_type: node.attribute("type").map(str::to_owned),
                })
            }
            "transfer" => {
                self.item_parts(node, &mut parts, true)?;
                self.at_most_one(&node, &["dest", "destexpr"])?;
                self.at_most_one(&node, &["aai", "aaiexpr"])?;
                let dest = match (node.attribute("dest"), node.attribute("destexpr")) {
                    (Some(d), _) => Some(UriSource::Literal(d.to_owned())),
                    (None, Some(e)) => Some(UriSource::Expr(e.to_owned())),
                    (None, None) => None,
                };
                let aai = match (node.attribute("aai"), node.attribute("aaiexpr")) {
                    (Some(d), _) => Some(UriSource::Literal(d.to_owned())),
                    (None, Some(e)) => Some(UriSource::Expr(e.to_owned())),
                    (None, None) => None,
                };
                let kind = match (node.attribute("type"), node.attribute("bridge")) {
                    (Some(t), _) => t.to_ascii_lowercase(),
                    (None, Some("true")) => "bridge".to_owned(),
                    _ => "blind".to_owned(),
                };
                ItemKind::Transfer(Transfer {
                    dest,
                    kind,
                    connecttimeout: node.attribute("connecttimeout").map(str::to_owned),
                    maxtime: node.attribute("maxtime").map(str::to_owned),
                    aai,
                })
            }
            _ => {
                self.item_parts(node, &mut parts, true)?;
                ItemKind::Object {
                    classid: node.attribute("classid").unwrap_or_default().to_owned(),
                }
            }
        };
        Ok(FormItem {
            name,
            expr: node.attribute("expr").map(str::to_owned),
            cond: node.attribute("cond").map(str::to_owned),
            catches: parts.catches,
            properties: parts.properties,
            prompts: parts.prompts,
            grammars: parts.grammars,
            filled: parts.filled,
            links: parts.links,
            kind,
        })
    }

    /// Collects an item's catches, properties, prompts, grammars, filled, links, options and
    /// params. Executable content (for a `<block>`) is read separately; `prompts` says whether
    /// bare prompt content belongs to the item's prompts.
    fn item_parts(
        &mut self,
        node: Node<'_, '_>,
        parts: &mut ItemParts,
        prompts: bool,
    ) -> Result<(), DocumentError> {
        let mut bare = Vec::new();
        for child in node.children() {
            if child.is_text() {
                if prompts {
                    self.prompt_node(child, &mut bare)?;
                }
                continue;
            }
            if !child.is_element() {
                continue;
            }
            match vxml_name(&child) {
                Some("property") => parts.properties.push(self.property(child)?),
                Some(name) if catch_events(name).is_some() => {
                    parts.catches.push(self.catch(child, name)?);
                }
                _ if !prompts => {}
                Some("prompt") => {
                    flush_bare(&mut bare, &mut parts.prompts);
                    parts.prompts.push(self.prompt(child)?);
                }
                Some("audio" | "value" | "break" | "enumerate") => {
                    self.prompt_node(child, &mut bare)?;
                }
                Some("grammar") => {
                    let grammars = self.grammar(child)?;
                    parts.grammars.extend(grammars);
                }
                Some("filled") => parts.filled.push(self.filled(child)?),
                Some("link") => parts.links.push(self.link(child)?),
                Some("option") => parts.options.push(self.choice(child)?),
                Some("param") => parts.params.push(self.param(child)?),
                _ => self.unknown(&child),
            }
        }
        flush_bare(&mut bare, &mut parts.prompts);
        Ok(())
    }

    /// `<param name expr|value>`.
    fn param(&self, node: Node<'_, '_>) -> Result<Param, DocumentError> {
        let name = self.required(&node, "name")?.to_owned();
        let expr = match (node.attribute("expr"), node.attribute("value")) {
            (Some(expr), _) => expr.to_owned(),
            (None, Some(value)) => {
                let mut literal = String::new();
                push_string_literal(&mut literal, value);
                literal
            }
            (None, None) => "undefined".to_owned(),
        };
        Ok(Param { name, expr })
    }

    /// `<grammar>`: compiled now; a grammar that cannot be used is kept inactive with a
    /// warning, so the rest of the dialog still runs.
    fn grammar(&mut self, node: Node<'_, '_>) -> Result<Vec<GrammarElement>, DocumentError> {
        self.at_most_one(&node, &["src", "srcexpr"])?;
        let external = node.has_attribute("src") || node.has_attribute("srcexpr");
        let inline = node
            .children()
            .any(|c| c.is_element() || c.text().is_some_and(|t| !t.trim().is_empty()));
        if external && inline {
            return Err(self.invalid(
                &node,
                "<grammar> has both a src/srcexpr and inline content; keep one",
            ));
        }
        if !external && !inline {
            // VoiceXML 2.1 §2: exactly one of src, srcexpr or inline content.
            return Err(self.invalid(
                &node,
                "<grammar> is empty; give it a src, a srcexpr or inline rules",
            ));
        }
        let compiled = match grammars::from_element(node, self.base) {
            Ok(compiled) => compiled,
            Err(reason) => {
                self.warn(&node, format!("grammar not usable: {reason}"));
                vec![Compiled::Inactive(reason)]
            }
        };
        for grammar in &compiled {
            if let Compiled::Inactive(reason) = grammar {
                let reason = reason.clone();
                self.warn(&node, format!("grammar inactive: {reason}"));
            }
        }
        Ok(self.wrap(&node, compiled))
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
        let timeout = match node.attribute("timeout") {
            None => None,
            Some(text) => Some(super::parse_duration(text).ok_or_else(|| {
                self.invalid(
                    &node,
                    format!("timeout={text:?} is not a duration such as 500ms or 5s"),
                )
            })?),
        };
        let mut content = Vec::new();
        for child in node.children() {
            self.prompt_node(child, &mut content)?;
        }
        let hotword = match node.attribute("bargeintype").map(str::trim) {
            None => None,
            Some(t) if t.eq_ignore_ascii_case("hotword") => Some(true),
            Some(t) if t.eq_ignore_ascii_case("speech") => Some(false),
            Some(other) => {
                self.warn(
                    &node,
                    format!(
                        "bargeintype={other:?} is neither speech nor hotword; using the property"
                    ),
                );
                None
            }
        };
        Ok(PromptElement {
            bargein,
            hotword,
            cond: node.attribute("cond").map(str::to_owned),
            count: self.count(&node)?,
            timeout,
            lang: node.attribute((XML_NS, "lang")).map(str::to_owned),
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
            "enumerate" => {
                let mut content = Vec::new();
                for child in node.children() {
                    self.prompt_node(child, &mut content)?;
                }
                out.push(PromptNode::Enumerate(content));
            }
            "foreach" => {
                let array = self.required(&node, "array")?.to_owned();
                let item = self.required(&node, "item")?.to_owned();
                let mut content = Vec::new();
                for child in node.children() {
                    self.prompt_node(child, &mut content)?;
                }
                out.push(PromptNode::Foreach {
                    array,
                    item,
                    content,
                });
            }
            "mark" => match (node.attribute("name"), node.attribute("nameexpr")) {
                (Some(name), _) => out.push(PromptNode::Mark(UriSource::Literal(name.to_owned()))),
                (None, Some(expr)) => out.push(PromptNode::Mark(UriSource::Expr(expr.to_owned()))),
                (None, None) => self.warn(&node, "ignored <mark> without name or nameexpr"),
            },
            "metadata" | "desc" | "meta" | "lexicon" => {}
            "sub" if node.attribute("alias").is_none() => {
                self.warn(&node, "<sub> has no alias; its content is spoken");
                for child in node.children() {
                    self.prompt_node(child, out)?;
                }
            }
            // VoiceXML 1.0 prompt elements (VoiceXML 1.0 §4.1): their SSML successors.
            "emp" => out.push(self.ssml_element(node, SsmlKind::Emphasis)?),
            "pros" => out.push(self.ssml_element(node, SsmlKind::Prosody)?),
            "sayas" if node.attribute("sub").is_some() => {
                let sub = node.attribute("sub").unwrap_or_default();
                out.push(PromptNode::Text(format!(" {sub} ")));
            }
            "phoneme" | "lang" | "speak" | "prompt" | "sayas" | "div" => {
                out.push(PromptNode::Text(" ".to_owned()));
                for child in node.children() {
                    self.prompt_node(child, out)?;
                }
                out.push(PromptNode::Text(" ".to_owned()));
            }
            tag => match SsmlKind::from_tag(tag) {
                Some(kind) => out.push(self.ssml_element(node, kind)?),
                None => self.unknown(&node),
            },
        }
        Ok(())
    }

    /// An SSML element kept with its SSML attributes and content (SSML 1.0 §3.1, §3.2).
    fn ssml_element(
        &mut self,
        node: Node<'_, '_>,
        kind: SsmlKind,
    ) -> Result<PromptNode, DocumentError> {
        let attributes = kind
            .attributes()
            .iter()
            .filter_map(|&name| {
                let value = match name {
                    "xml:lang" => node.attribute((XML_NS, "lang")),
                    _ => node.attribute(name),
                };
                value.map(|value| (name, value.to_owned()))
            })
            .collect();
        let mut content = Vec::new();
        for child in node.children() {
            self.prompt_node(child, &mut content)?;
        }
        Ok(PromptNode::Ssml {
            element: SsmlElement { kind, attributes },
            content,
        })
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
        let millis = match node
            .attribute("strength")
            .or_else(|| node.attribute("size"))
            .unwrap_or("medium")
        {
            "none" => 0,
            "x-weak" | "x-small" => 100,
            "weak" | "small" => 250,
            "medium" => 500,
            "strong" | "large" => 1000,
            "x-strong" | "x-large" => 1500,
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
            "goto" => Stmt::Goto {
                target: self.goto(&node)?,
                fetch: Self::fetch_attrs(&node),
            },
            "submit" => Stmt::Submit {
                next: self.uri_source(&node, "next", "expr")?,
                namelist: names(node.attribute("namelist")),
                post: is_post(&node),
                multipart: is_multipart(&node),
                fetch: Self::fetch_attrs(&node),
            },
            "disconnect" => Stmt::Disconnect {
                namelist: names(node.attribute("namelist")),
            },
            "exit" => {
                self.at_most_one(&node, &["expr", "namelist"])?;
                Stmt::Exit {
                    expr: attr("expr"),
                    namelist: names(node.attribute("namelist")),
                }
            }
            "return" => Stmt::Return {
                namelist: names(node.attribute("namelist")),
                event: match (node.attribute("event"), node.attribute("eventexpr")) {
                    (Some(e), _) => Some(UriSource::Literal(e.to_owned())),
                    (None, Some(e)) => Some(UriSource::Expr(e.to_owned())),
                    (None, None) => None,
                },
                message: message_expr(&node),
            },
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
            "throw" => Stmt::Throw {
                event: self.uri_source(&node, "event", "eventexpr")?,
                message: message_expr(&node),
            },
            "script" => {
                self.at_most_one(&node, &["src", "srcexpr"])?;
                let src = match (node.attribute("src"), node.attribute("srcexpr")) {
                    (Some(s), _) => Some(UriSource::Literal(s.to_owned())),
                    (None, Some(e)) => Some(UriSource::Expr(e.to_owned())),
                    (None, None) => None,
                };
                Stmt::Script {
                    source: node.children().filter_map(|c| c.text()).collect::<String>(),
                    src,
                    fetch: Self::fetch_attrs(&node),
                }
            }
            "data" => {
                self.at_most_one(&node, &["src", "srcexpr"])?;
                let name = attr("name");
                if let Some(name) = &name
                    && !crate::script::is_identifier(name)
                {
                    return Err(
                        self.invalid(&node, format!("name={name:?} is not a valid variable name"))
                    );
                }
                Stmt::Data {
                    src: self.uri_source(&node, "src", "srcexpr")?,
                    name,
                    namelist: names(node.attribute("namelist")),
                    post: is_post(&node),
                    multipart: is_multipart(&node),
                    fetch: Self::fetch_attrs(&node),
                }
            }
            "foreach" => {
                let item = self.required(&node, "item")?;
                if !crate::script::is_identifier(item) {
                    return Err(
                        self.invalid(&node, format!("item={item:?} is not a valid variable name"))
                    );
                }
                Stmt::Foreach {
                    array: self.required(&node, "array")?.to_owned(),
                    item: item.to_owned(),
                    body: self.stmts(node)?,
                }
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
                // Prompt content outside a <prompt> is an implicit prompt, SSML and VoiceXML
                // 1.0 elements included (authors put <emphasis> straight in a <block>).
                Some(name) if is_prompt_content(name) => {
                    self.prompt_node(child, &mut bare)?;
                }
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
        self.at_most_one(node, &["next", "expr", "nextitem", "expritem"])?;
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

/// Whether `name` is a form item element.
fn is_item(name: &str) -> bool {
    matches!(
        name,
        "block" | "field" | "initial" | "subdialog" | "record" | "transfer" | "object"
    )
}

/// `method="post"`.
fn is_post(node: &Node<'_, '_>) -> bool {
    node.attribute("method")
        .is_some_and(|m| m.eq_ignore_ascii_case("post"))
}

/// `enctype="multipart/form-data"`.
fn is_multipart(node: &Node<'_, '_>) -> bool {
    node.attribute("enctype")
        .is_some_and(|m| m.eq_ignore_ascii_case("multipart/form-data"))
}

/// `message` (quoted) or `messageexpr` as an expression.
fn message_expr(node: &Node<'_, '_>) -> Option<String> {
    match (node.attribute("message"), node.attribute("messageexpr")) {
        (Some(text), _) => {
            let mut literal = String::new();
            push_string_literal(&mut literal, text);
            Some(literal)
        }
        (None, expr) => expr.map(str::to_owned),
    }
}

/// All text below `node`.
fn descendant_text(node: Node<'_, '_>) -> String {
    node.descendants()
        .filter(Node::is_text)
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join(" ")
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
            hotword: None,
            cond: None,
            count: 1,
            timeout: None,
            lang: None,
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
        assert_eq!(item.prompts.len(), 1);
        assert_eq!(item.grammars.len(), 2, "DTMF and voice boolean");
        assert_eq!(item.catches.len(), 1);
        assert_eq!(item.catches[0].events, ["nomatch"]);
        assert_eq!(item.catches[0].count, 2);
        assert_eq!(item.properties[0].value, "2s");
    }

    #[test]
    fn menus_become_one_item_forms_with_numbered_choices() {
        let doc = parse_str(
            r##"<vxml><menu id="m" dtmf="true" scope="document"><prompt>Say one of <enumerate/></prompt>
                 <choice next="#a">Sports</choice><choice dtmf="0" event="help">Help</choice>
                 <choice expr="'#b'">Weather report</choice></menu></vxml>"##,
        )
        .unwrap();
        let form = &doc.forms[0];
        assert!(form.document_scope);
        let ItemKind::Menu(menu) = &form.items[0].kind else {
            panic!("expected a menu item");
        };
        let keys: Vec<Option<&str>> = menu.choices.iter().map(|c| c.dtmf.as_deref()).collect();
        assert_eq!(keys, [Some("1"), Some("0"), Some("2")]);
        assert_eq!(menu.choices[2].text, "Weather report");
        assert!(matches!(menu.choices[1].target, Some(Target::Event { .. })));
        assert_eq!(form.items[0].grammars.len(), 6);
    }

    #[test]
    fn every_form_item_kind_is_read() {
        let doc = parse_str(
            r#"<vxml><form><initial name="i"/><subdialog name="s" src="sub.vxml" namelist="a b">
                 <param name="p" value="v"/></subdialog>
                 <record name="r" beep="true" maxtime="10s"/><transfer name="t" dest="tel:+1" bridge="true"/>
                 <object name="o" classid="x"/><field name="f"><option dtmf="1" value="v">red</option></field>
                 <block><foreach item="x" array="[1]"><log expr="x"/></foreach><data name="d" src="d.xml"/>
                   <return namelist="a"/></block></form></vxml>"#,
        )
        .unwrap();
        let kinds: Vec<&str> = doc.forms[0]
            .items
            .iter()
            .map(|i| match &i.kind {
                ItemKind::Initial => "initial",
                ItemKind::Subdialog(s) if s.params.len() == 1 && s.namelist.len() == 2 => {
                    "subdialog"
                }
                ItemKind::Record(r) if r.beep => "record",
                ItemKind::Transfer(t) if t.kind == "bridge" => "transfer",
                ItemKind::Object { .. } => "object",
                ItemKind::Field(f) if f.options.len() == 1 => "field",
                ItemKind::Block(b) if b.len() == 3 => "block",
                _ => "?",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "initial",
                "subdialog",
                "record",
                "transfer",
                "object",
                "field",
                "block"
            ]
        );
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
    fn ssml_in_prompts_keeps_its_elements_and_defined_attributes() {
        let doc = parse_str(
            r#"<vxml xmlns="http://www.w3.org/2001/vxml" xml:lang="en-US"><form><block>
                 <prompt xml:lang="de-DE"><emphasis level="strong" x="1">Hallo</emphasis>
                   <mark nameexpr="'m' + 1"/><sub>no alias</sub>
                   <voice xml:lang="fr" gender="female">Salut</voice></prompt>
                 <prompt>plain</prompt></block></form></vxml>"#,
        )
        .unwrap();
        let ItemKind::Block(stmts) = &doc.forms[0].items[0].kind else {
            panic!("expected a block");
        };
        let [Stmt::Prompt(ssml), Stmt::Prompt(plain)] = stmts.as_slice() else {
            panic!("expected two prompts: {stmts:?}");
        };
        assert_eq!(ssml.lang.as_deref(), Some("de-DE"));
        assert_eq!(plain.lang, None, "only the prompt's own xml:lang");
        let elements: Vec<&SsmlElement> = ssml
            .content
            .iter()
            .filter_map(|node| match node {
                PromptNode::Ssml { element, .. } => Some(element),
                _ => None,
            })
            .collect();
        assert_eq!(elements.len(), 2, "{:?}", ssml.content);
        assert_eq!(elements[0].kind, SsmlKind::Emphasis);
        assert_eq!(elements[0].attributes, [("level", "strong".to_owned())]);
        assert_eq!(elements[1].kind, SsmlKind::Voice);
        assert_eq!(elements[1].attribute("xml:lang"), Some("fr"));
        assert_eq!(elements[1].attribute("gender"), Some("female"));
        assert!(
            ssml.content
                .contains(&PromptNode::Mark(UriSource::Expr("'m' + 1".into())))
        );
        assert!(
            ssml.content
                .iter()
                .any(|node| matches!(node, PromptNode::Text(t) if t == "no alias")),
            "a <sub> without alias speaks its content"
        );
        assert!(
            doc.warnings
                .iter()
                .any(|w| w.contains("<sub> has no alias"))
        );
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
