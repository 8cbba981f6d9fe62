//! Prompts handed to the platform, and their rendering from `<prompt>` content
//! (VoiceXML 2.0 §4.1, SSML 1.0).
//!
//! Rendering evaluates `<value>`, `<audio expr>` and `<mark nameexpr>` when the prompt is
//! queued, as §4.1.8 requires, resolves audio URIs against the document, and cuts the
//! content into runs of speech between audio clips, breaks and marks, which the platform
//! plays itself. A run that carries SSML markup (`<emphasis>`, `<prosody>`, `<say-as>`,
//! `<sub>`, `<voice>`, `<p>`, `<s>`), or any run of a prompt with `xml:lang`, becomes one
//! complete SSML document ([`PromptItem::Ssml`]); elements open across a cut are closed
//! before it and opened again after it. Other runs stay plain [`PromptItem::Text`]. In SSML,
//! text and `<value>` results are escaped character data: a value never adds markup.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::document::{PromptElement, PromptNode, SsmlElement, SsmlKind, UriSource};
use crate::script::{DataModel, Scope, ScriptError, push_string_literal};

/// The SSML 1.0 namespace (SSML 1.0 §2.1).
const SSML_NS: &str = "http://www.w3.org/2001/10/synthesis";

/// One prompt, played as a unit (barge-in applies to the whole prompt).
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// What to play, in order.
    pub items: Vec<PromptItem>,
    /// Whether caller input may interrupt this prompt.
    pub bargein: bool,
}

/// One piece of a prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptItem {
    /// Text to speak (whitespace normalised, never empty).
    Text(String),
    /// Speech with markup: a complete SSML 1.0 document, `<speak version="1.0"
    /// xmlns="http://www.w3.org/2001/10/synthesis">` with the prompt's `xml:lang` when it
    /// has one (SSML 1.0 §2.1). It always has words; see [`ssml_text`].
    Ssml(String),
    /// An audio file, with text to speak if it cannot be played.
    Audio {
        /// Absolute URL, resolved against the document.
        url: String,
        /// Fallback text from the `<audio>` content.
        fallback: Option<String>,
    },
    /// A recording the session made (`<record>`), played back by `<audio expr>` naming it.
    Recording(Clip),
    /// Silence.
    Break(Duration),
    /// `<mark>` (SSML 1.0 §3.3.2): a named point between the items around it; plays nothing.
    Mark(String),
}

/// A recording as a prompt plays it back: the file `<record>` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    /// Media type of `audio`, e.g. `audio/wav`.
    pub content_type: String,
    /// The recording as a file.
    pub audio: Arc<[u8]>,
    /// Its length.
    pub duration: Duration,
}

/// Prefix of the string `<audio expr>` evaluates to when its value is a recording: never the
/// start of a URL. [`CLIP_MARKER_JS`] is the same as ECMAScript source.
const CLIP_MARKER: &str = "\u{0}clip:";
const CLIP_MARKER_JS: &str = "\\u0000clip:";

impl PromptItem {
    /// The words this item speaks: [`PromptItem::Text`] as it is, [`PromptItem::Ssml`]
    /// through [`ssml_text`]; `None` for audio, breaks and marks.
    pub fn spoken_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Self::Text(text) => Some(Cow::Borrowed(text)),
            Self::Ssml(ssml) => Some(Cow::Owned(ssml_text(ssml))),
            Self::Audio { .. } | Self::Recording(_) | Self::Break(_) | Self::Mark(_) => None,
        }
    }
}

/// The words an SSML document speaks: its text without markup, each `<sub>` replaced by its
/// `alias`, whitespace normalised, with a word break at every element boundary. Of text that
/// is not well-formed XML, only what looks like tags is removed.
pub fn ssml_text(ssml: &str) -> String {
    let mut words = String::new();
    match roxmltree::Document::parse(ssml) {
        Ok(document) => push_words(document.root_element(), &mut words),
        Err(_) => strip_tags(ssml, &mut words),
    }
    normalise_space(&words)
}

/// Appends the words of `node` and its descendants to `words`.
fn push_words(node: roxmltree::Node<'_, '_>, words: &mut String) {
    for child in node.children() {
        if child.is_text() {
            words.push_str(child.text().unwrap_or_default());
        } else if child.is_element() {
            words.push(' ');
            match child.tag_name().name() {
                "sub" if child.has_attribute("alias") => {
                    words.push_str(child.attribute("alias").unwrap_or_default());
                }
                _ => push_words(child, words),
            }
            words.push(' ');
        }
    }
}

/// Appends `text` to `words` without anything between `<` and `>`, with the five
/// predefined entities (XML 1.0 §4.6) decoded.
fn strip_tags(text: &str, words: &mut String) {
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        words.push_str(&unescape(&rest[..open]));
        words.push(' ');
        rest = rest[open..]
            .find('>')
            .map_or("", |close| &rest[open + close + 1..]);
    }
    words.push_str(&unescape(rest));
}

/// Decodes the five predefined XML entities.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Why a prompt could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// An expression failed (`error.semantic`).
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// An audio URI cannot be resolved (`error.badfetch`).
    #[error("audio URI {uri:?} cannot be resolved against {base}: {reason}")]
    BadUri {
        /// The URI as written or computed.
        uri: String,
        /// The document URL.
        base: String,
        /// The parser's reason.
        reason: String,
    },
}

/// One entry of an `<enumerate>` (VoiceXML 2.0 §2.2.4): a menu choice or field option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Enumerated {
    /// `_prompt`: the choice's text.
    pub(crate) prompt: String,
    /// `_dtmf`: its DTMF sequence, if any.
    pub(crate) dtmf: Option<String>,
}

/// Most elements `<foreach>` renders (bounds a runaway array).
const MAX_FOREACH: usize = 1000;

/// Renders a prompt element; `bargein` is the value of the `bargein` property in scope,
/// `choices` what `<enumerate>` lists, and `clips` the session's recordings by the number a
/// recording's value carries (`__clip`).
pub(crate) fn render(
    element: &PromptElement,
    model: &mut dyn DataModel,
    base: &Url,
    bargein: bool,
    choices: &[Enumerated],
    clips: &std::collections::HashMap<u64, Clip>,
) -> Result<Prompt, RenderError> {
    let mut renderer = Renderer {
        model,
        base,
        choices,
        clips,
        out: Output::new(element.lang.as_deref()),
    };
    renderer.nodes(&element.content)?;
    Ok(Prompt {
        items: renderer.out.finish(),
        bargein: element.bargein.unwrap_or(bargein),
    })
}

/// Rendering context; `'e` is the prompt element's lifetime.
struct Renderer<'a, 'e> {
    model: &'a mut dyn DataModel,
    base: &'a Url,
    clips: &'a std::collections::HashMap<u64, Clip>,
    choices: &'a [Enumerated],
    out: Output<'e>,
}

impl<'e> Renderer<'_, 'e> {
    /// Renders `nodes` into the output.
    fn nodes(&mut self, nodes: &'e [PromptNode]) -> Result<(), RenderError> {
        for node in nodes {
            match node {
                PromptNode::Text(t) => self.out.text(t),
                PromptNode::Value(expr) => {
                    let value = self.model.eval_string(expr)?;
                    self.out.text(&value);
                }
                PromptNode::Break(duration) => self.out.push(PromptItem::Break(*duration)),
                PromptNode::Mark(name) => {
                    let name = match name {
                        UriSource::Literal(name) => name.clone(),
                        UriSource::Expr(expr) => self.model.eval_string(expr)?,
                    };
                    self.out.push(PromptItem::Mark(name));
                }
                PromptNode::Audio {
                    src,
                    expr,
                    fallback,
                } => self.audio(src.as_deref(), expr.as_deref(), fallback)?,
                PromptNode::Enumerate(content) => self.enumerate(content)?,
                PromptNode::Foreach {
                    array,
                    item,
                    content,
                } => self.foreach(array, item, content)?,
                PromptNode::Ssml { element, content } if element.kind == SsmlKind::Sub => {
                    self.sub(element, content)?;
                }
                PromptNode::Ssml { element, content } => {
                    self.out.open(element);
                    self.nodes(content)?;
                    self.out.close();
                }
            }
        }
        Ok(())
    }

    /// `<sub alias>` (SSML 1.0 §3.1.10): its written text stays in the markup, and its words
    /// are the alias.
    fn sub(
        &mut self,
        element: &'e SsmlElement,
        content: &'e [PromptNode],
    ) -> Result<(), RenderError> {
        let mut written = String::new();
        for node in content {
            match node {
                PromptNode::Text(t) => written.push_str(t),
                PromptNode::Value(expr) => written.push_str(&self.model.eval_string(expr)?),
                _ => {}
            }
        }
        self.out.open(element);
        push_text(&mut self.out.run.ssml, &written);
        self.out.close();
        let alias = element.attribute("alias").unwrap_or_default();
        self.out.run.words.push_str(alias);
        Ok(())
    }

    /// `<audio>`: an audio item whose fallback is the words of its content.
    fn audio(
        &mut self,
        src: Option<&str>,
        expr: Option<&str>,
        fallback: &'e [PromptNode],
    ) -> Result<(), RenderError> {
        let uri = match (src, expr) {
            (Some(src), _) => src.to_owned(),
            (None, Some(expr)) => {
                // One evaluation: a recording's number behind a marker, else the URL text.
                let value = self.model.eval_string(&format!(
                    "(function(v){{return (v!==null&&typeof v==='object'&&v.__recording===true)?'{CLIP_MARKER_JS}'+v.__clip:String(v);}})({expr})"
                ))?;
                if let Some(number) = value.strip_prefix(CLIP_MARKER) {
                    // A recording this session no longer holds plays its fallback, as an
                    // audio file that cannot be fetched does.
                    if let Some(clip) = number.parse().ok().and_then(|n| self.clips.get(&n)) {
                        self.out.push(PromptItem::Recording(clip.clone()));
                        return Ok(());
                    }
                }
                value
            }
            (None, None) => String::new(),
        };
        let url = self.base.join(&uri).map_err(|e| RenderError::BadUri {
            uri: uri.clone(),
            base: self.base.to_string(),
            reason: e.to_string(),
        })?;
        let outer = std::mem::replace(&mut self.out, Output::new(None));
        let rendered = self.nodes(fallback);
        let inner = std::mem::replace(&mut self.out, outer);
        rendered?;
        let spoken: Vec<String> = inner
            .finish()
            .into_iter()
            .filter_map(|item| match item {
                PromptItem::Audio { fallback, .. } => fallback,
                other => other.spoken_text().map(Cow::into_owned),
            })
            .collect();
        self.out.push(PromptItem::Audio {
            url: url.to_string(),
            fallback: (!spoken.is_empty()).then(|| spoken.join(" ")),
        });
        Ok(())
    }

    /// `<enumerate>`: each choice through the content with `_prompt` and `_dtmf` declared, or
    /// a default phrasing when there is no content.
    fn enumerate(&mut self, content: &'e [PromptNode]) -> Result<(), RenderError> {
        let speaks = content.iter().any(|node| match node {
            PromptNode::Text(t) => !t.trim().is_empty(),
            _ => true,
        });
        for choice in self.choices {
            if !speaks {
                let phrase = match &choice.dtmf {
                    Some(dtmf) => format!(" For {}, press {dtmf}. ", choice.prompt),
                    None => format!(" {} ", choice.prompt),
                };
                self.out.text(&phrase);
                continue;
            }
            self.model.push_scope(Scope::Anonymous)?;
            let mut prompt = String::new();
            push_string_literal(&mut prompt, &choice.prompt);
            let mut dtmf = String::new();
            match &choice.dtmf {
                Some(keys) => push_string_literal(&mut dtmf, keys),
                None => dtmf.push_str("undefined"),
            }
            let result = self
                .model
                .declare("_prompt", Some(&prompt))
                .and_then(|()| self.model.declare("_dtmf", Some(&dtmf)))
                .map_err(RenderError::from)
                .and_then(|()| self.nodes(content));
            self.model.pop_scope(Scope::Anonymous);
            result?;
        }
        Ok(())
    }

    /// `<foreach>` (VoiceXML 2.1 §6) inside a prompt.
    fn foreach(
        &mut self,
        array: &str,
        item: &str,
        content: &'e [PromptNode],
    ) -> Result<(), RenderError> {
        self.model.push_scope(Scope::Anonymous)?;
        let result = self.foreach_in_scope(array, item, content);
        self.model.pop_scope(Scope::Anonymous);
        result
    }

    /// The body of [`Renderer::foreach`], inside its own scope.
    fn foreach_in_scope(
        &mut self,
        array: &str,
        item: &str,
        content: &'e [PromptNode],
    ) -> Result<(), RenderError> {
        self.model.declare(
            "__foreach",
            Some(&format!("Array.prototype.slice.call({array})")),
        )?;
        let length: usize = self
            .model
            .eval_string("__foreach.length")?
            .parse()
            .unwrap_or(0);
        for index in 0..length.min(MAX_FOREACH) {
            self.model
                .declare(item, Some(&format!("__foreach[{index}]")))?;
            self.nodes(content)?;
        }
        Ok(())
    }
}

/// The items rendered so far and the run of speech being built.
struct Output<'e> {
    /// The prompt's `xml:lang`: when given, every run is SSML.
    lang: Option<&'e str>,
    items: Vec<PromptItem>,
    run: Run,
    /// SSML elements open at this point, outermost first.
    open: Vec<&'e SsmlElement>,
}

/// A run of speech between two non-speech items.
#[derive(Default)]
struct Run {
    /// SSML body: escaped text and tags.
    ssml: String,
    /// The words (plain text, whitespace not yet normalised).
    words: String,
    /// Whether `ssml` holds markup.
    marked: bool,
}

impl<'e> Output<'e> {
    fn new(lang: Option<&'e str>) -> Self {
        Self {
            lang,
            items: Vec::new(),
            run: Run::default(),
            open: Vec::new(),
        }
    }

    /// Speaks `text` (document text or a value's string).
    fn text(&mut self, text: &str) {
        push_text(&mut self.run.ssml, text);
        self.run.words.push_str(text);
    }

    /// Opens an SSML element around what follows.
    fn open(&mut self, element: &'e SsmlElement) {
        push_start_tag(&mut self.run.ssml, element);
        self.run.words.push(' ');
        self.run.marked = true;
        self.open.push(element);
    }

    /// Closes the innermost open SSML element.
    fn close(&mut self) {
        if let Some(element) = self.open.pop() {
            push_end_tag(&mut self.run.ssml, element);
            self.run.words.push(' ');
        }
    }

    /// Ends the current run and appends `item` after it.
    fn push(&mut self, item: PromptItem) {
        self.flush();
        self.items.push(item);
    }

    /// Ends the current run: an item if it has words, and a new run inside the same open
    /// elements.
    fn flush(&mut self) {
        let run = std::mem::take(&mut self.run);
        if !run.words.trim().is_empty() {
            let item = if run.marked || self.lang.is_some() {
                let mut ssml = run.ssml;
                for element in self.open.iter().rev() {
                    push_end_tag(&mut ssml, element);
                }
                PromptItem::Ssml(speak(self.lang, ssml.trim()))
            } else {
                PromptItem::Text(normalise_space(&run.words))
            };
            self.items.push(item);
        }
        for element in &self.open {
            push_start_tag(&mut self.run.ssml, element);
        }
        self.run.marked = !self.open.is_empty();
    }

    /// The items, the last run included.
    fn finish(mut self) -> Vec<PromptItem> {
        self.flush();
        self.items
    }
}

/// A complete SSML 1.0 document around `body` (SSML 1.0 §2.1).
fn speak(lang: Option<&str>, body: &str) -> String {
    let mut ssml = format!(r#"<speak version="1.0" xmlns="{SSML_NS}""#);
    if let Some(lang) = lang {
        ssml.push_str(r#" xml:lang=""#);
        push_attribute(&mut ssml, lang);
        ssml.push('"');
    }
    ssml.push('>');
    ssml.push_str(body);
    ssml.push_str("</speak>");
    ssml
}

fn push_start_tag(ssml: &mut String, element: &SsmlElement) {
    ssml.push('<');
    ssml.push_str(element.kind.tag());
    for (name, value) in &element.attributes {
        ssml.push(' ');
        ssml.push_str(name);
        ssml.push_str("=\"");
        push_attribute(ssml, value);
        ssml.push('"');
    }
    ssml.push('>');
}

fn push_end_tag(ssml: &mut String, element: &SsmlElement) {
    ssml.push_str("</");
    ssml.push_str(element.kind.tag());
    ssml.push('>');
}

/// Appends `text` as XML character data: `&`, `<` and `>` escaped, characters XML 1.0
/// forbids (§2.2) replaced by a space, runs of whitespace collapsed to one space.
fn push_text(ssml: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => ssml.push_str("&amp;"),
            '<' => ssml.push_str("&lt;"),
            '>' => ssml.push_str("&gt;"),
            c if c.is_whitespace() || !is_xml_char(c) => {
                if !ssml.ends_with(' ') {
                    ssml.push(' ');
                }
            }
            c => ssml.push(c),
        }
    }
}

/// Appends `value` as the content of a double-quoted XML attribute value.
fn push_attribute(ssml: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => ssml.push_str("&amp;"),
            '<' => ssml.push_str("&lt;"),
            '>' => ssml.push_str("&gt;"),
            '"' => ssml.push_str("&quot;"),
            c if c.is_whitespace() || !is_xml_char(c) => ssml.push(' '),
            c => ssml.push(c),
        }
    }
}

/// Whether XML 1.0 (§2.2, `Char`) allows `c` in a document.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Collapses runs of whitespace to one space and trims both ends.
pub(crate) fn normalise_space(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{QuickJs, Scope, ScriptLimits};

    #[test]
    fn values_audio_and_breaks_render_in_order() {
        let mut js = QuickJs::new(ScriptLimits {
            budget: 50,
            memory_bytes: 1 << 20,
        })
        .unwrap();
        js.push_scope(Scope::Document).unwrap();
        js.declare("n", Some("'Ann'")).unwrap();
        js.declare("clip", Some("'clips/b.wav'")).unwrap();
        let element = PromptElement {
            bargein: Some(false),
            hotword: None,
            cond: None,
            count: 1,
            timeout: None,
            lang: None,
            content: vec![
                PromptNode::Text("\n  Hello ".into()),
                PromptNode::Value("n".into()),
                PromptNode::Text(",  welcome.\n".into()),
                PromptNode::Break(Duration::from_millis(300)),
                PromptNode::Audio {
                    src: None,
                    expr: Some("clip".into()),
                    fallback: vec![PromptNode::Text(" beep  beep ".into())],
                },
                PromptNode::Audio {
                    src: Some("/abs.wav".into()),
                    expr: None,
                    fallback: vec![],
                },
            ],
        };
        let base = Url::parse("http://example.test/app/doc.vxml").unwrap();
        let prompt = render(&element, &mut js, &base, true, &[], &Default::default()).unwrap();
        assert!(!prompt.bargein, "the element's bargein beats the property");
        assert_eq!(
            prompt.items,
            vec![
                PromptItem::Text("Hello Ann, welcome.".into()),
                PromptItem::Break(Duration::from_millis(300)),
                PromptItem::Audio {
                    url: "http://example.test/app/clips/b.wav".into(),
                    fallback: Some("beep beep".into()),
                },
                PromptItem::Audio {
                    url: "http://example.test/abs.wav".into(),
                    fallback: None,
                },
            ]
        );
    }

    #[test]
    fn failing_value_is_a_script_error() {
        let mut js = QuickJs::new(ScriptLimits {
            budget: 50,
            memory_bytes: 1 << 20,
        })
        .unwrap();
        js.push_scope(Scope::Document).unwrap();
        let element = PromptElement {
            bargein: None,
            hotword: None,
            cond: None,
            count: 1,
            timeout: None,
            lang: None,
            content: vec![PromptNode::Value("missing.field".into())],
        };
        let base = Url::parse("http://example.test/").unwrap();
        assert!(matches!(
            render(&element, &mut js, &base, true, &[], &Default::default()),
            Err(RenderError::Script(_))
        ));
    }

    fn js() -> QuickJs {
        let mut js = QuickJs::new(ScriptLimits {
            budget: 50,
            memory_bytes: 1 << 20,
        })
        .unwrap();
        js.push_scope(Scope::Document).unwrap();
        js
    }

    fn ssml(
        kind: SsmlKind,
        attributes: &[(&'static str, &str)],
        content: Vec<PromptNode>,
    ) -> PromptNode {
        PromptNode::Ssml {
            element: SsmlElement {
                kind,
                attributes: attributes
                    .iter()
                    .map(|&(name, value)| (name, value.to_owned()))
                    .collect(),
            },
            content,
        }
    }

    fn text(t: &str) -> PromptNode {
        PromptNode::Text(t.to_owned())
    }

    fn render_content(
        js: &mut QuickJs,
        lang: Option<&str>,
        content: Vec<PromptNode>,
    ) -> Vec<PromptItem> {
        let element = PromptElement {
            bargein: None,
            hotword: None,
            cond: None,
            count: 1,
            timeout: None,
            lang: lang.map(str::to_owned),
            content,
        };
        let base = Url::parse("http://example.test/app/doc.vxml").unwrap();
        render(&element, js, &base, true, &[], &Default::default())
            .unwrap()
            .items
    }

    /// The SSML of an item, checked to be a well-formed SSML 1.0 document.
    fn document(item: &PromptItem) -> roxmltree::Document<'_> {
        let PromptItem::Ssml(ssml) = item else {
            panic!("expected SSML, got {item:?}");
        };
        let document = roxmltree::Document::parse(ssml)
            .unwrap_or_else(|e| panic!("not well-formed ({e}): {ssml}"));
        let root = document.root_element();
        assert_eq!(root.tag_name().name(), "speak");
        assert_eq!(root.tag_name().namespace(), Some(SSML_NS));
        assert_eq!(root.attribute("version"), Some("1.0"));
        document
    }

    #[test]
    fn values_are_character_data_in_ssml_never_markup() {
        let mut js = js();
        let hostile = "Tom </emphasis><audio src='x'/> &amp; <\u{1}> \"Jerry\"";
        let mut literal = String::new();
        push_string_literal(&mut literal, hostile);
        js.declare("who", Some(&literal)).unwrap();
        let items = render_content(
            &mut js,
            None,
            vec![
                text("Hello "),
                ssml(
                    SsmlKind::Emphasis,
                    &[("level", "strong")],
                    vec![PromptNode::Value("who".into())],
                ),
                text("."),
            ],
        );
        assert_eq!(items.len(), 1, "{items:?}");
        let document = document(&items[0]);
        let elements: Vec<_> = document
            .root_element()
            .descendants()
            .filter(|n| n.is_element())
            .collect();
        assert_eq!(elements.len(), 2, "only <speak> and <emphasis>: {items:?}");
        let emphasis = elements[1];
        assert_eq!(emphasis.attribute("level"), Some("strong"));
        // The value comes back as written, but for the control character XML cannot carry.
        assert_eq!(
            emphasis.text(),
            Some(hostile.replace('\u{1}', " ").as_str())
        );
        assert_eq!(
            items[0].spoken_text().unwrap(),
            normalise_space(&format!("Hello {} .", hostile.replace('\u{1}', " ")))
        );
    }

    #[test]
    fn elements_open_across_a_cut_are_closed_and_reopened() {
        let mut js = js();
        js.declare("mark", Some("'m2'")).unwrap();
        let items = render_content(
            &mut js,
            None,
            vec![ssml(
                SsmlKind::Prosody,
                &[("rate", "slow")],
                vec![
                    text("one "),
                    PromptNode::Break(Duration::from_millis(200)),
                    ssml(
                        SsmlKind::Sentence,
                        &[],
                        vec![
                            text("two"),
                            PromptNode::Mark(UriSource::Literal("m1".into())),
                            text("three"),
                        ],
                    ),
                    PromptNode::Mark(UriSource::Expr("mark".into())),
                    PromptNode::Audio {
                        src: Some("a.wav".into()),
                        expr: None,
                        fallback: vec![ssml(SsmlKind::Emphasis, &[], vec![text(" clip ")])],
                    },
                ],
            )],
        );
        let shape: Vec<String> = items
            .iter()
            .map(|item| match item {
                PromptItem::Ssml(_) => {
                    let document = document(item);
                    let path: Vec<&str> = document
                        .descendants()
                        .filter(|n| n.is_element())
                        .map(|n| n.tag_name().name())
                        .collect();
                    format!("{} {:?}", path.join(">"), item.spoken_text().unwrap())
                }
                PromptItem::Break(d) => format!("break {}", d.as_millis()),
                PromptItem::Mark(name) => format!("mark {name}"),
                PromptItem::Audio { url, fallback } => format!("audio {url} {fallback:?}"),
                PromptItem::Recording(clip) => format!("recording {}", clip.audio.len()),
                PromptItem::Text(t) => format!("text {t}"),
            })
            .collect();
        assert_eq!(
            shape,
            [
                r#"speak>prosody "one""#,
                "break 200",
                r#"speak>prosody>s "two""#,
                "mark m1",
                r#"speak>prosody>s "three""#,
                "mark m2",
                r#"audio http://example.test/app/a.wav Some("clip")"#,
            ]
        );
        for item in &items {
            if let PromptItem::Ssml(ssml) = item {
                assert!(ssml.contains(r#"<prosody rate="slow">"#), "{ssml}");
            }
        }
    }

    #[test]
    fn plain_runs_stay_text_unless_the_prompt_has_a_language() {
        let mut js = js();
        let content = || {
            vec![
                text(" Press  one. "),
                PromptNode::Break(Duration::ZERO),
                text("Bye"),
            ]
        };
        assert_eq!(
            render_content(&mut js, None, content()),
            [
                PromptItem::Text("Press one.".into()),
                PromptItem::Break(Duration::ZERO),
                PromptItem::Text("Bye".into()),
            ]
        );
        let french = render_content(&mut js, Some("fr-FR"), content());
        assert_eq!(french.len(), 3);
        let document = document(&french[0]);
        assert_eq!(
            document
                .root_element()
                .attribute(("http://www.w3.org/XML/1998/namespace", "lang")),
            Some("fr-FR")
        );
        assert_eq!(french[0].spoken_text().unwrap(), "Press one.");
    }

    #[test]
    fn sub_keeps_the_written_text_and_speaks_the_alias() {
        let mut js = js();
        let items = render_content(
            &mut js,
            None,
            vec![
                text("Ask the "),
                ssml(
                    SsmlKind::Sub,
                    &[("alias", "World Wide Web Consortium")],
                    vec![text("W3C")],
                ),
                ssml(SsmlKind::Emphasis, &[], vec![]),
            ],
        );
        let [item] = items.as_slice() else {
            panic!("{items:?}");
        };
        let document = document(item);
        let sub = document
            .descendants()
            .find(|n| n.has_tag_name((SSML_NS, "sub")))
            .unwrap();
        assert_eq!(sub.text(), Some("W3C"));
        assert_eq!(
            item.spoken_text().unwrap(),
            "Ask the World Wide Web Consortium"
        );
        // Markup without words makes no item.
        assert!(
            render_content(
                &mut js,
                None,
                vec![ssml(SsmlKind::Sentence, &[], vec![text("  ")])]
            )
            .is_empty()
        );
    }

    #[test]
    fn ssml_text_drops_markup() {
        assert_eq!(
            ssml_text(r#"<speak>A<s>B</s><sub alias="C D">x</sub> &lt;&amp;</speak>"#),
            "A B C D <&"
        );
        // Not well-formed: tags are dropped, entities decoded.
        assert_eq!(ssml_text("<speak>A &amp; <b>B"), "A & B");
        assert_eq!(ssml_text("no markup"), "no markup");
    }
}
