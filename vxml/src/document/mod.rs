//! The document model: an owned tree of the VoiceXML elements this interpreter understands.
//!
//! [`Document::parse`] decodes the fetched bytes ([`decode`]), checks well-formedness with
//! roxmltree and converts the tree (`parse`). Everything is owned so a session can keep
//! documents without borrowing the fetched bytes. Unknown elements are skipped and reported in
//! [`Document::warnings`]; malformed XML is an error naming the line and column.

mod decode;
mod parse;

use std::time::Duration;

use url::Url;

use crate::grammar::Grammar;

pub use decode::decode;

/// A parsed `<vxml>` document (VoiceXML 2.0 §1.5).
#[derive(Debug, Clone)]
pub struct Document {
    /// Where the document came from (after redirects); base for relative URIs.
    pub url: Url,
    /// The `version` attribute.
    pub version: String,
    /// The `application` attribute: URI of the application root document.
    pub application: Option<String>,
    /// Document-level `<var>` and `<script>`, in document order.
    pub declarations: Vec<Declaration>,
    /// The dialogs.
    pub forms: Vec<Form>,
    /// Document-level catch elements.
    pub catches: Vec<Catch>,
    /// Document-level `<property>` settings.
    pub properties: Vec<Property>,
    /// Elements skipped because this interpreter does not know them.
    pub warnings: Vec<String>,
}

/// `<var>` or `<script>` outside executable content (document or form level).
#[derive(Debug, Clone, PartialEq)]
pub enum Declaration {
    /// `<var name expr>`.
    Var {
        /// Variable name.
        name: String,
        /// Initial value expression.
        expr: Option<String>,
    },
    /// Inline `<script>` body.
    Script(String),
}

/// A `<property name value>` (VoiceXML 2.0 §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// Property name, e.g. `timeout`.
    pub name: String,
    /// Property value as written.
    pub value: String,
}

/// A `<form>` dialog (VoiceXML 2.0 §2.1).
#[derive(Debug, Clone)]
pub struct Form {
    /// The `id` (generated if absent).
    pub id: String,
    /// Form-level `<var>` and `<script>`.
    pub declarations: Vec<Declaration>,
    /// Form items in document order.
    pub items: Vec<FormItem>,
    /// Form-level `<filled>` elements.
    pub filled: Vec<Filled>,
    /// Form-level catch elements.
    pub catches: Vec<Catch>,
    /// Form-level properties.
    pub properties: Vec<Property>,
}

/// A form item: its guard variable, guard condition and kind (VoiceXML 2.0 §2.1.2).
#[derive(Debug, Clone)]
pub struct FormItem {
    /// The form item variable (generated for anonymous items).
    pub name: String,
    /// Initial value of the form item variable.
    pub expr: Option<String>,
    /// Guard condition; the item is selectable only when it is true.
    pub cond: Option<String>,
    /// Catch elements of this item.
    pub catches: Vec<Catch>,
    /// Item-level properties.
    pub properties: Vec<Property>,
    /// What the item does.
    pub kind: ItemKind,
}

/// The form item kinds of this slice.
#[derive(Debug, Clone)]
pub enum ItemKind {
    /// `<block>`: executable content run once.
    Block(Vec<Stmt>),
    /// `<field>`: prompts, then collects input matching its grammars.
    Field(Field),
}

/// A `<field>` (VoiceXML 2.0 §2.3.1).
#[derive(Debug, Clone)]
pub struct Field {
    /// `<prompt>` elements (and bare prompt content), in order.
    pub prompts: Vec<PromptElement>,
    /// Grammars: from `type` and from `<grammar>` children.
    pub grammars: Vec<Grammar>,
    /// `<filled>` elements.
    pub filled: Vec<Filled>,
}

/// A `<filled>` element (VoiceXML 2.0 §2.4).
#[derive(Debug, Clone)]
pub struct Filled {
    /// `mode="any"` (otherwise `all`); form-level only.
    pub any: bool,
    /// `namelist` (form-level only); empty means every input item.
    pub namelist: Vec<String>,
    /// Executable content.
    pub content: Vec<Stmt>,
}

/// A `<catch>`, or one of its shorthands `<error>`, `<help>`, `<noinput>`, `<nomatch>`
/// (VoiceXML 2.0 §5.2.2).
#[derive(Debug, Clone)]
pub struct Catch {
    /// Event names (prefixes) caught; empty catches every event.
    pub events: Vec<String>,
    /// Minimum event count for this catch to apply.
    pub count: u32,
    /// Guard condition.
    pub cond: Option<String>,
    /// Executable content.
    pub content: Vec<Stmt>,
}

/// A `<prompt>` (VoiceXML 2.0 §4.1); bare text in executable content becomes one too.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptElement {
    /// `bargein`, when given.
    pub bargein: Option<bool>,
    /// Guard condition.
    pub cond: Option<String>,
    /// Minimum prompt count (§4.1.6), default 1.
    pub count: u32,
    /// Content.
    pub content: Vec<PromptNode>,
}

/// Content of a prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptNode {
    /// Text to speak (whitespace not yet normalised).
    Text(String),
    /// `<value expr>`: the expression's string value.
    Value(String),
    /// `<audio src|expr>` with fallback content.
    Audio {
        /// `src`.
        src: Option<String>,
        /// `expr` (evaluated to the URI).
        expr: Option<String>,
        /// Content played if the audio cannot be.
        fallback: Vec<Self>,
    },
    /// `<break time|strength>`.
    Break(Duration),
}

/// Executable content (VoiceXML 2.0 §5.3).
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// Queue a prompt.
    Prompt(PromptElement),
    /// `<var name expr>`.
    Var {
        /// Variable name.
        name: String,
        /// Initial value.
        expr: Option<String>,
    },
    /// `<assign name expr>`.
    Assign {
        /// Declared variable to assign.
        name: String,
        /// Value expression.
        expr: String,
    },
    /// `<if>`/`<elseif>`/`<else>`: the first branch whose condition holds (`None` = else).
    If(Vec<(Option<String>, Vec<Self>)>),
    /// `<goto>`.
    Goto(GotoTarget),
    /// `<submit next|expr namelist method>`.
    Submit {
        /// Where to submit.
        next: UriSource,
        /// Variables to send.
        namelist: Vec<String>,
        /// `method="post"`.
        post: bool,
    },
    /// `<disconnect>`.
    Disconnect,
    /// `<exit expr>`.
    Exit {
        /// Value returned to the platform.
        expr: Option<String>,
    },
    /// `<clear namelist>` (empty = every form item).
    Clear(Vec<String>),
    /// `<reprompt>`.
    Reprompt,
    /// `<log label expr>` with its content.
    Log {
        /// `label`.
        label: Option<String>,
        /// Text and `<value>` parts, joined.
        content: Vec<PromptNode>,
    },
    /// `<throw event|eventexpr message|messageexpr>`.
    Throw {
        /// Event name or expression.
        event: UriSource,
        /// Message expression, if any (`message` is stored quoted).
        message: Option<String>,
    },
    /// Inline `<script>`.
    Script(String),
}

/// A URI given literally or as an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriSource {
    /// Literal attribute (`next`, `src`, `event`).
    Literal(String),
    /// Expression attribute (`expr`, `srcexpr`, `eventexpr`).
    Expr(String),
}

/// Where a `<goto>` goes (VoiceXML 2.0 §5.3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GotoTarget {
    /// `next`/`expr`: a URI, `#dialog` or `doc#dialog`.
    Uri(UriSource),
    /// `nextitem`/`expritem`: a form item of the current form.
    Item(UriSource),
}

/// Why a document could not be used (thrown as `error.badfetch`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The body is larger than the configured limit.
    #[error(
        "document {url} is {size} bytes, over the limit of {limit}; serve a smaller document or raise the limit"
    )]
    TooLarge {
        /// Document URL.
        url: String,
        /// Body size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The bytes are not text in the declared encoding.
    #[error("document {url} is not valid {encoding} text")]
    Encoding {
        /// Document URL.
        url: String,
        /// Encoding used to decode.
        encoding: String,
    },
    /// Not well-formed XML.
    #[error("document {url} is not well-formed XML: {message} (line {line}, column {column})")]
    Xml {
        /// Document URL.
        url: String,
        /// Line of the error (1-based).
        line: u32,
        /// Column of the error (1-based).
        column: u32,
        /// The parser's message.
        message: String,
    },
    /// Well-formed, but not a VoiceXML document this interpreter can run.
    #[error("document {url} is not usable VoiceXML: {message} (line {line}, column {column})")]
    Invalid {
        /// Document URL.
        url: String,
        /// Line of the offending element.
        line: u32,
        /// Column of the offending element.
        column: u32,
        /// What is wrong.
        message: String,
    },
}

impl Document {
    /// Decodes and parses a fetched document.
    pub fn parse(
        url: Url,
        content_type: Option<&str>,
        body: &[u8],
        max_bytes: usize,
    ) -> Result<Self, DocumentError> {
        if body.len() > max_bytes {
            return Err(DocumentError::TooLarge {
                url: url.to_string(),
                size: body.len(),
                limit: max_bytes,
            });
        }
        let text = decode(body, content_type).map_err(|encoding| DocumentError::Encoding {
            url: url.to_string(),
            encoding,
        })?;
        parse::parse(url, &text)
    }

    /// The form with this `id`.
    pub fn form_index(&self, id: &str) -> Option<usize> {
        self.forms.iter().position(|f| f.id == id)
    }
}

/// A CSS2/SSML time designation: `500ms`, `1.5s`, `3s` (VoiceXML 2.0 §6.5). Bare numbers are
/// taken as milliseconds, as many platforms do.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1000.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().ok()?;
    let millis = value * scale;
    (millis.is_finite() && (0.0..=86_400_000.0).contains(&millis))
        .then(|| Duration::from_micros((millis * 1000.0).round() as u64))
}

impl Form {
    /// The item whose form item variable is `name`.
    pub fn item_index(&self, name: &str) -> Option<usize> {
        self.items.iter().position(|i| i.name == name)
    }
}
