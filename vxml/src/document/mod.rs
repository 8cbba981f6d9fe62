//! The document model: an owned tree of the VoiceXML 2.0/2.1 elements this interpreter runs.
//!
//! [`Document::parse`] decodes the fetched bytes ([`decode`]), checks well-formedness with
//! roxmltree and converts the tree (`parse`). Everything is owned so a session (or a cache
//! shared by many sessions) can keep documents without borrowing the fetched bytes. Unknown
//! elements are skipped and reported in [`Document::warnings`]; malformed XML is an error
//! naming the line and column.
//!
//! A `<menu>` is modelled as the form it is equivalent to (VoiceXML 2.0 §2.2): a [`Form`]
//! whose only item is an [`ItemKind::Menu`].

pub mod cache;
mod decode;
pub(crate) mod expansion;
mod parse;

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::fia::grammars::Compiled;

pub use cache::{CacheLimits, CacheStats, DocumentCache};
pub use decode::{decode, decode_text};

/// A parsed `<vxml>` document (VoiceXML 2.0 §1.5).
#[derive(Debug, Clone)]
pub struct Document {
    /// Where the document came from (after redirects).
    pub url: Url,
    /// Base for relative URIs: `xml:base` resolved against `url`, else `url`.
    pub base: Url,
    /// The `version` attribute.
    pub version: String,
    /// The `application` attribute: URI of the application root document.
    pub application: Option<String>,
    /// Document-level `<var>`, `<script>` and `<data>`, in document order.
    pub declarations: Vec<Stmt>,
    /// The dialogs (`<form>` and `<menu>`).
    pub forms: Vec<Form>,
    /// Document-level catch elements.
    pub catches: Vec<Catch>,
    /// Document-level `<property>` settings.
    pub properties: Vec<Property>,
    /// Document-level `<link>`s.
    pub links: Vec<Link>,
    /// Elements skipped because this interpreter does not know them.
    pub warnings: Vec<String>,
    /// Bytes of the document's text once its entities are expanded: what the parsed model
    /// holds copies of, and what the document cache charges for it.
    pub text_bytes: usize,
}

/// A `<property name value>` (VoiceXML 2.0 §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// Property name, e.g. `timeout`.
    pub name: String,
    /// Property value as written.
    pub value: String,
}

/// A `<form>` or `<menu>` dialog (VoiceXML 2.0 §2.1, §2.2).
#[derive(Debug, Clone)]
pub struct Form {
    /// The `id` (generated if absent).
    pub id: String,
    /// `scope="document"`: the dialog's grammars are active in the whole document.
    pub document_scope: bool,
    /// Form-level `<var>`, `<script>` and `<data>`.
    pub declarations: Vec<Stmt>,
    /// Form items in document order.
    pub items: Vec<FormItem>,
    /// Form-level `<filled>` elements.
    pub filled: Vec<Filled>,
    /// Form-level catch elements.
    pub catches: Vec<Catch>,
    /// Form-level properties.
    pub properties: Vec<Property>,
    /// Form-level `<link>`s.
    pub links: Vec<Link>,
    /// Form-level grammars (mixed initiative, §2.1.4).
    pub grammars: Vec<GrammarElement>,
}

/// A form item: its variable, guard condition and kind (VoiceXML 2.0 §2.1.2).
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
    /// `<prompt>` elements (and bare prompt content), in order.
    pub prompts: Vec<PromptElement>,
    /// Grammars of an input item.
    pub grammars: Vec<GrammarElement>,
    /// `<filled>` elements of an input item.
    pub filled: Vec<Filled>,
    /// Item-level `<link>`s.
    pub links: Vec<Link>,
    /// What the item does.
    pub kind: ItemKind,
}

/// The form item kinds (VoiceXML 2.0 §2.3).
#[derive(Debug, Clone)]
pub enum ItemKind {
    /// `<block>`: executable content run once.
    Block(Vec<Stmt>),
    /// `<field>`: prompts, then collects input matching its grammars.
    Field(Field),
    /// `<initial>`: prompts for a mixed-initiative form; filled by form-level grammars.
    Initial,
    /// `<subdialog>`: runs another dialog as a subroutine.
    Subdialog(Subdialog),
    /// `<record>`: records the caller.
    Record(Record),
    /// `<transfer>`: connects the caller to a third party.
    Transfer(Transfer),
    /// `<object>`: platform objects; none are supported.
    Object {
        /// `classid`.
        classid: String,
    },
    /// The single item of a `<menu>`.
    Menu(Menu),
}

/// `<field>` specifics (VoiceXML 2.0 §2.3.1).
#[derive(Debug, Clone)]
pub struct Field {
    /// The slot of form-level grammar results that fills this field (default: its name).
    pub slot: String,
    /// `modal="true"`: only the field's own grammars are active.
    pub modal: bool,
    /// `<option>`s, for `<enumerate>`.
    pub options: Vec<Choice>,
}

/// `<subdialog>` specifics (VoiceXML 2.0 §2.3.4).
#[derive(Debug, Clone)]
pub struct Subdialog {
    /// `src`/`srcexpr`.
    pub src: UriSource,
    /// `namelist` (sent with the request).
    pub namelist: Vec<String>,
    /// `method="post"`.
    pub post: bool,
    /// `enctype="multipart/form-data"`.
    pub multipart: bool,
    /// `<param>`s: declared in the subdialog's dialog scope.
    pub params: Vec<Param>,
    /// Fetch attributes.
    pub fetch: FetchAttrs,
}

/// A `<param name expr|value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Name.
    pub name: String,
    /// Value expression (`value` is stored quoted).
    pub expr: String,
}

/// `<record>` specifics (VoiceXML 2.0 §2.3.6).
#[derive(Debug, Clone)]
pub struct Record {
    /// `beep`.
    pub beep: bool,
    /// `maxtime`.
    pub maxtime: Option<String>,
    /// `finalsilence`.
    pub finalsilence: Option<String>,
    /// `dtmfterm` (default true).
    pub dtmfterm: bool,
    /// `type` (media type).
    pub media_type: Option<String>,
}

/// `<transfer>` specifics (VoiceXML 2.0 §2.3.7, 2.1 §9).
#[derive(Debug, Clone)]
pub struct Transfer {
    /// `dest`/`destexpr`.
    pub dest: Option<UriSource>,
    /// `bridge="true"` (2.0), or `type` (2.1): `blind`, `bridge`, `consultation`.
    pub kind: String,
    /// `connecttimeout`.
    pub connecttimeout: Option<String>,
    /// `maxtime`.
    pub maxtime: Option<String>,
    /// `aai`/`aaiexpr`.
    pub aai: Option<UriSource>,
}

/// `<menu>` (VoiceXML 2.0 §2.2).
#[derive(Debug, Clone)]
pub struct Menu {
    /// The choices.
    pub choices: Vec<Choice>,
}

/// A `<choice>` of a menu or an `<option>` of a field.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The DTMF sequence (explicit, or assigned by `dtmf="true"`).
    pub dtmf: Option<String>,
    /// The text content (what `<enumerate>` says; the voice grammar when none is given).
    pub text: String,
    /// `<option value>` (the field's value), or the text.
    pub value: String,
    /// Where a menu choice goes.
    pub target: Option<Target>,
    /// Explicit grammars of the choice.
    pub grammars: Vec<GrammarElement>,
    /// Fetch attributes.
    pub fetch: FetchAttrs,
    /// `accept="approximate"` (on the choice or its menu, VoiceXML 2.0 §2.2.5): a subset of
    /// the text's words is enough to match.
    pub approximate: bool,
}

/// Where a `<choice>` or `<link>` leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `next`/`expr`.
    Uri(UriSource),
    /// `event`/`eventexpr` with `message`/`messageexpr` (as an expression).
    Event {
        /// The event name.
        event: UriSource,
        /// The message expression.
        message: Option<String>,
    },
}

/// A `<link>` (VoiceXML 2.0 §2.5).
#[derive(Debug, Clone)]
pub struct Link {
    /// What matching it does.
    pub target: Target,
    /// Its grammars (a `dtmf` attribute adds one).
    pub grammars: Vec<GrammarElement>,
    /// Fetch attributes.
    pub fetch: FetchAttrs,
}

/// A grammar element or an equivalent (`type`, `dtmf`, `<option>`, `<choice>`).
#[derive(Debug, Clone)]
pub struct GrammarElement {
    /// Where it comes from, as written (for messages).
    pub origin: String,
    /// The compiled grammar (engine-specific).
    pub(crate) compiled: Arc<Compiled>,
}

/// Fetch attributes of an element (VoiceXML 2.0 §6.1.1); `None` means "use the property".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchAttrs {
    /// `fetchtimeout`.
    pub timeout: Option<String>,
    /// `maxage`.
    pub maxage: Option<String>,
    /// `maxstale`.
    pub maxstale: Option<String>,
    /// `fetchaudio` (a URI).
    pub fetchaudio: Option<String>,
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
    /// `bargeintype`, when given: `Some(true)` for `hotword`, `Some(false)` for `speech`.
    pub hotword: Option<bool>,
    /// Guard condition.
    pub cond: Option<String>,
    /// Minimum prompt count (§4.1.6), default 1.
    pub count: u32,
    /// `timeout`: the noinput timeout of the next collection.
    pub timeout: Option<Duration>,
    /// `xml:lang` given on the prompt itself: the language of all its speech (§4.1).
    pub lang: Option<String>,
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
    /// `<enumerate>` with its content (empty: the platform's default phrasing).
    Enumerate(Vec<Self>),
    /// `<foreach array item>` (VoiceXML 2.1) inside a prompt.
    Foreach {
        /// The array expression.
        array: String,
        /// The item variable.
        item: String,
        /// Content repeated per element.
        content: Vec<Self>,
    },
    /// An SSML element that shapes how its content is spoken (SSML 1.0 §3.1, §3.2).
    Ssml {
        /// The element and its attributes.
        element: SsmlElement,
        /// Its content.
        content: Vec<Self>,
    },
    /// `<mark name|nameexpr>` (SSML 1.0 §3.3.2; `nameexpr` is VoiceXML 2.1 §4).
    Mark(UriSource),
}

/// An SSML 1.0 element kept in a prompt, with the attributes SSML defines for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmlElement {
    /// Which element.
    pub kind: SsmlKind,
    /// Its SSML attributes as written (names from [`SsmlKind::attributes`]), in that order.
    pub attributes: Vec<(&'static str, String)>,
}

impl SsmlElement {
    /// The value of attribute `name`, if given.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The SSML 1.0 elements a prompt keeps (SSML 1.0 §3.1.7–§3.2.4); others are read for
/// their text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsmlKind {
    /// `<p>` (§3.1.7).
    Paragraph,
    /// `<s>` (§3.1.7).
    Sentence,
    /// `<say-as interpret-as format detail>` (§3.1.8).
    SayAs,
    /// `<sub alias>` (§3.1.10): `alias` is spoken instead of the content.
    Sub,
    /// `<voice gender age variant name xml:lang>` (§3.2.1).
    Voice,
    /// `<emphasis level>` (§3.2.2).
    Emphasis,
    /// `<prosody pitch contour range rate duration volume>` (§3.2.4).
    Prosody,
}

impl SsmlKind {
    /// The element for an SSML tag name (`paragraph` and `sentence` are VoiceXML 2.0
    /// spellings of `p` and `s`).
    pub fn from_tag(tag: &str) -> Option<Self> {
        Some(match tag {
            "p" | "paragraph" => Self::Paragraph,
            "s" | "sentence" => Self::Sentence,
            "say-as" => Self::SayAs,
            "sub" => Self::Sub,
            "voice" => Self::Voice,
            "emphasis" => Self::Emphasis,
            "prosody" => Self::Prosody,
            _ => return None,
        })
    }

    /// The SSML tag name.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Paragraph => "p",
            Self::Sentence => "s",
            Self::SayAs => "say-as",
            Self::Sub => "sub",
            Self::Voice => "voice",
            Self::Emphasis => "emphasis",
            Self::Prosody => "prosody",
        }
    }

    /// The attributes SSML 1.0 defines for the element.
    pub fn attributes(self) -> &'static [&'static str] {
        match self {
            Self::Paragraph | Self::Sentence => &["xml:lang"],
            Self::SayAs => &["interpret-as", "format", "detail"],
            Self::Sub => &["alias"],
            Self::Voice => &["xml:lang", "gender", "age", "variant", "name"],
            Self::Emphasis => &["level"],
            Self::Prosody => &["pitch", "contour", "range", "rate", "duration", "volume"],
        }
    }
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
    Goto {
        /// Where to.
        target: GotoTarget,
        /// Fetch attributes.
        fetch: FetchAttrs,
    },
    /// `<submit next|expr namelist method enctype>`.
    Submit {
        /// Where to submit.
        next: UriSource,
        /// Variables to send (empty: every input item variable of the form).
        namelist: Vec<String>,
        /// `method="post"`.
        post: bool,
        /// `enctype="multipart/form-data"`.
        multipart: bool,
        /// Fetch attributes.
        fetch: FetchAttrs,
    },
    /// `<disconnect namelist>`.
    Disconnect {
        /// Values handed to the platform.
        namelist: Vec<String>,
    },
    /// `<exit expr namelist>`.
    Exit {
        /// Value returned to the platform.
        expr: Option<String>,
        /// Variables returned to the platform.
        namelist: Vec<String>,
    },
    /// `<return namelist event eventexpr message messageexpr>` (§2.3.4).
    Return {
        /// Variables returned to the caller.
        namelist: Vec<String>,
        /// Event thrown in the caller instead.
        event: Option<UriSource>,
        /// Message expression of that event.
        message: Option<String>,
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
    /// `<script>`: inline source, or fetched from `src`/`srcexpr`.
    Script {
        /// Inline source.
        source: String,
        /// External source.
        src: Option<UriSource>,
        /// Fetch attributes.
        fetch: FetchAttrs,
    },
    /// `<data src|srcexpr name namelist method>` (VoiceXML 2.1 §5).
    Data {
        /// Where to fetch.
        src: UriSource,
        /// The variable receiving the DOM (none: fetched and discarded).
        name: Option<String>,
        /// Variables sent.
        namelist: Vec<String>,
        /// `method="post"`.
        post: bool,
        /// `enctype="multipart/form-data"`.
        multipart: bool,
        /// Fetch attributes.
        fetch: FetchAttrs,
    },
    /// `<foreach array item>` (VoiceXML 2.1 §6).
    Foreach {
        /// The array expression.
        array: String,
        /// The item variable.
        item: String,
        /// Content run per element.
        body: Vec<Self>,
    },
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
    /// Its entity references would expand past the limit (an entity-expansion bomb?).
    #[error(
        "document {url} would grow past {limit} bytes by expanding its entity references (fetch.max_document_bytes); declare smaller entities or reference them fewer times"
    )]
    ExpansionTooLarge {
        /// Document URL.
        url: String,
        /// The limit: the largest document accepted.
        limit: usize,
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
    /// Decodes (leniently) and parses a fetched document; the decoder's warnings come
    /// first in [`Document::warnings`]. [`DocumentCache`] shares the result between sessions.
    pub fn parse(
        url: Url,
        content_type: Option<&str>,
        body: &[u8],
        max_bytes: usize,
    ) -> Result<Self, DocumentError> {
        cache::parse_fetched(url, content_type, body, max_bytes)
    }

    /// The dialog with this `id`.
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

impl FormItem {
    /// Whether this is an input item (it collects, records or transfers; §2.3).
    pub fn is_input(&self) -> bool {
        !matches!(self.kind, ItemKind::Block(_) | ItemKind::Initial)
    }
}
