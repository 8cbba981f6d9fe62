//! The ABNF form of SRGS 1.0 (`application/srgs`, SRGS 1.0 §2–§4).
//!
//! A self-identifying header `#ABNF 1.0 [charset];`, then declarations (`language`, `mode`,
//! `root`, `tag-format`, `base`, `lexicon`, `meta`, `http-equiv`, header tags), then rule
//! definitions `[public|private] $name = expansion;`. Expansions: tokens (bare or `"quoted"`),
//! `$rule`, `$<uri#rule>[~<media-type>]`, `$NULL` `$VOID` `$GARBAGE`, `|` with `/weight/`,
//! `(groups)`, `[optional]`, `<m-n /prob/>` repeats, `{tag}` and `{!{ tag }!}`, `!lang`
//! attachments, `//` and `/* */` comments. `*`, `+` and `?` are reserved (§2.5) and refused.

use super::model::{Builder, Form, Model, Node, NodeId, PendingRef, TagFormat, parse_repeat};
use super::xml::reference;
use super::{GrammarError, Mode};

/// Deepest nesting of groups read.
const MAX_DEPTH: usize = 128;

/// A lexical token with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Single(String),
    Rule(String),
    Uri(String),
    Angle(String),
    /// `/weight/`, its text.
    Weight(String),
    Tag(String),
    Lang,
    Tilde,
    Semi,
    Eq,
    Bar,
    Open,
    Close,
    OpenOpt,
    CloseOpt,
}

/// Characters that end a bare token or rule name.
fn is_delimiter(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            ';' | '='
                | '|'
                | '('
                | ')'
                | '['
                | ']'
                | '{'
                | '}'
                | '<'
                | '>'
                | '$'
                | '"'
                | '/'
                | '!'
                | '*'
                | '+'
                | '?'
                | '~'
        )
}

struct Lexer<'t> {
    rest: &'t str,
    line: u32,
}

impl<'t> Lexer<'t> {
    fn error(&self, message: impl Into<String>) -> GrammarError {
        GrammarError::Abnf {
            line: self.line,
            message: message.into(),
        }
    }

    fn bump(&mut self, bytes: usize) -> &'t str {
        let (taken, rest) = self.rest.split_at(bytes.min(self.rest.len()));
        self.line += u32::try_from(taken.matches('\n').count()).unwrap_or(0);
        self.rest = rest;
        taken
    }

    /// Takes text up to `end` (exclusive) and the delimiter itself.
    fn until(&mut self, start: usize, end: &str, what: &str) -> Result<&'t str, GrammarError> {
        let body = self.rest.get(start..).unwrap_or_default();
        let Some(at) = body.find(end) else {
            return Err(self.error(format!("{what} is not closed with {end:?}")));
        };
        let taken = self.bump(start + at + end.len());
        Ok(taken.get(start..start + at).unwrap_or_default())
    }

    fn skip_space_and_comments(&mut self) -> Result<(), GrammarError> {
        loop {
            let trimmed = self.rest.trim_start();
            self.bump(self.rest.len() - trimmed.len());
            if self.rest.starts_with("//") {
                let end = self.rest.find('\n').unwrap_or(self.rest.len());
                self.bump(end);
            } else if self.rest.starts_with("/*") {
                self.until(2, "*/", "a /* comment")?;
            } else {
                return Ok(());
            }
        }
    }

    /// The next token with its line, `None` at the end.
    fn next(&mut self) -> Result<Option<(Tok, u32)>, GrammarError> {
        self.skip_space_and_comments()?;
        let line = self.line;
        let Some(c) = self.rest.chars().next() else {
            return Ok(None);
        };
        let tok = match c {
            ';' | '=' | '|' | '(' | ')' | '[' | ']' | '~' => {
                self.bump(1);
                match c {
                    ';' => Tok::Semi,
                    '=' => Tok::Eq,
                    '|' => Tok::Bar,
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    '[' => Tok::OpenOpt,
                    ']' => Tok::CloseOpt,
                    _ => Tok::Tilde,
                }
            }
            '/' => Tok::Weight(self.until(1, "/", "a /weight/")?.trim().to_owned()),
            '{' if self.rest.starts_with("{!{") => {
                Tok::Tag(self.until(3, "}!}", "a {!{ tag")?.to_owned())
            }
            '{' => Tok::Tag(self.until(1, "}", "a { tag")?.to_owned()),
            '<' => Tok::Angle(self.until(1, ">", "a <…>")?.trim().to_owned()),
            '"' => Tok::Quoted(self.quoted()?),
            '\'' => Tok::Single(self.until(1, "'", "a '…' string")?.to_owned()),
            '$' if self.rest.starts_with("$<") => {
                Tok::Uri(self.until(2, ">", "a $<uri>")?.trim().to_owned())
            }
            '$' => {
                self.bump(1);
                let name = self.word();
                if name.is_empty() {
                    return Err(self.error("$ must be followed by a rule name"));
                }
                Tok::Rule(name.to_owned())
            }
            '!' => {
                self.bump(1);
                if self.word().is_empty() {
                    return Err(self.error("! must be followed by a language tag"));
                }
                Tok::Lang
            }
            '*' | '+' | '?' => {
                return Err(self.error(format!(
                    "{c:?} is reserved in ABNF (SRGS 1.0 §2.5); quote it as a token (\"{c}\") \
                     or use <m-n> for repeats"
                )));
            }
            '}' | '>' => return Err(self.error(format!("unexpected {c:?}"))),
            _ => Tok::Word(self.word().to_owned()),
        };
        Ok(Some((tok, line)))
    }

    fn word(&mut self) -> &'t str {
        let end = self.rest.find(is_delimiter).unwrap_or(self.rest.len());
        self.bump(end)
    }

    /// A `"…"` token; `\"` and `\\` escape.
    fn quoted(&mut self) -> Result<String, GrammarError> {
        let mut out = String::new();
        let mut chars = self.rest.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.bump(i + 1);
                    return Ok(out);
                }
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        out.push(escaped);
                    }
                }
                c => out.push(c),
            }
        }
        Err(self.error("a \"quoted token\" is not closed"))
    }
}

/// Parses an ABNF grammar document (the text after any byte order mark).
pub(crate) fn parse(
    text: &str,
    base: Option<&url::Url>,
    strict: bool,
) -> Result<Model, GrammarError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let header_error = |message: &str| GrammarError::Abnf {
        line: 1,
        message: message.to_owned(),
    };
    let Some(after) = text.strip_prefix("#ABNF") else {
        return Err(header_error(
            "an ABNF grammar must start with the header \"#ABNF 1.0;\"",
        ));
    };
    let Some(end) = after.find(';') else {
        return Err(header_error("the #ABNF header must end with ';'"));
    };
    let (header, rest) = after.split_at(end);
    let mut fields = header.split_whitespace();
    match fields.next() {
        Some("1.0") => {}
        Some(other) => {
            return Err(header_error(&format!(
                "ABNF version {other:?} is not supported; use \"#ABNF 1.0;\""
            )));
        }
        None => return Err(header_error("the #ABNF header needs the version 1.0")),
    }
    if header.lines().count() > 1 || fields.count() > 1 {
        return Err(header_error(
            "the #ABNF header is \"#ABNF 1.0 [encoding];\" on one line",
        ));
    }
    let rest = rest.get(1..).unwrap_or_default();
    if strict {
        let line_end = rest.trim_start_matches([' ', '\t']);
        if !(line_end.is_empty() || line_end.starts_with(['\n', '\r'])) {
            return Err(header_error(
                "the #ABNF header must be alone on its line (SRGS 1.0 §4.1)",
            ));
        }
    }
    let parser = Parser {
        lexer: Lexer { rest, line: 1 },
        peeked: None,
        strict,
        mode: Mode::Voice,
        base: base.cloned(),
        builder: Builder::new(Form::Abnf),
        depth: 0,
    };
    parser.grammar()
}

struct Parser<'t> {
    lexer: Lexer<'t>,
    peeked: Option<(Tok, u32)>,
    strict: bool,
    mode: Mode,
    base: Option<url::Url>,
    builder: Builder,
    depth: usize,
}

/// Declarations read from the header section.
#[derive(Default)]
struct Header {
    language: Option<String>,
    mode: Option<Mode>,
    root: Option<(String, u32)>,
    tag_format: Option<String>,
    base: Option<String>,
    meta_base: Option<String>,
}

impl Parser<'_> {
    /// The next token, without taking it.
    fn peek(&mut self) -> Result<Option<Tok>, GrammarError> {
        if self.peeked.is_none() {
            self.peeked = self.lexer.next()?;
        }
        Ok(self.peeked.as_ref().map(|(t, _)| t.clone()))
    }

    fn take(&mut self) -> Result<Option<(Tok, u32)>, GrammarError> {
        match self.peeked.take() {
            Some(t) => Ok(Some(t)),
            None => self.lexer.next(),
        }
    }

    fn line(&self) -> u32 {
        self.peeked.as_ref().map_or(self.lexer.line, |(_, l)| *l)
    }

    fn error(&self, message: impl Into<String>) -> GrammarError {
        GrammarError::Abnf {
            line: self.line(),
            message: message.into(),
        }
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), GrammarError> {
        match self.take()? {
            Some((tok, _)) if tok == *want => Ok(()),
            Some((tok, line)) => Err(GrammarError::Abnf {
                line,
                message: format!("expected {what}, found {tok:?}"),
            }),
            None => Err(self.error(format!("expected {what} before the end"))),
        }
    }

    fn grammar(mut self) -> Result<Model, GrammarError> {
        let header = self.header()?;
        self.mode = header.mode.unwrap_or(Mode::Voice);
        if self.strict && self.mode == Mode::Voice && header.language.is_none() {
            return Err(self.error(
                "a voice grammar needs a language declaration (SRGS 1.0 §4.5), e.g. \"language en-US;\"",
            ));
        }
        if let Some(declared) = header.base.or(header.meta_base) {
            let joined = match &self.base {
                Some(base) => base.join(&declared),
                None => url::Url::parse(&declared),
            };
            self.base =
                Some(joined.map_err(|e| {
                    self.error(format!("base {declared:?} is not a usable URI ({e})"))
                })?);
        }
        while self.peek()?.is_some() {
            self.rule()?;
        }
        let tag_format = TagFormat::from_declaration(header.tag_format.as_deref());
        self.builder
            .finish(self.mode, header.root, !self.strict, tag_format)
    }

    /// Reads declarations up to the first rule definition.
    fn header(&mut self) -> Result<Header, GrammarError> {
        let mut header = Header::default();
        loop {
            let keyword = match self.peek()? {
                Some(Tok::Word(w)) if !matches!(w.as_str(), "public" | "private") => w.clone(),
                Some(Tok::Tag(_)) => {
                    // A header tag (SISR global code): accepted, not run.
                    self.take()?;
                    self.expect(&Tok::Semi, "';' after a header tag")?;
                    continue;
                }
                _ => return Ok(header),
            };
            let line = self.line();
            self.take()?;
            let duplicate = |seen: bool, parser: &Self| -> Result<(), GrammarError> {
                if seen && parser.strict {
                    Err(GrammarError::Abnf {
                        line,
                        message: format!("{keyword} is declared twice"),
                    })
                } else {
                    Ok(())
                }
            };
            match keyword.as_str() {
                "language" => {
                    duplicate(header.language.is_some(), self)?;
                    let value = self.value()?;
                    header.language.get_or_insert(value);
                }
                "mode" => {
                    duplicate(header.mode.is_some(), self)?;
                    let mode = match self.value()?.as_str() {
                        "voice" => Mode::Voice,
                        "dtmf" => Mode::Dtmf,
                        other => {
                            return Err(
                                self.error(format!("mode {other:?} is neither voice nor dtmf"))
                            );
                        }
                    };
                    header.mode.get_or_insert(mode);
                }
                "root" => {
                    duplicate(header.root.is_some(), self)?;
                    match self.take()? {
                        Some((Tok::Rule(name), _)) => {
                            header.root.get_or_insert((name, line));
                        }
                        _ => return Err(self.error("root needs a rule name: \"root $main;\"")),
                    }
                }
                "tag-format" => {
                    duplicate(header.tag_format.is_some(), self)?;
                    let value = self.value()?;
                    header.tag_format.get_or_insert(value);
                }
                "base" => {
                    duplicate(header.base.is_some(), self)?;
                    let value = self.value()?;
                    header.base.get_or_insert(value);
                }
                "lexicon" => {
                    self.value()?;
                    if self.peek()? == Some(Tok::Tilde) {
                        self.take()?;
                        self.value()?;
                    }
                }
                "meta" | "http-equiv" => {
                    let name = self.string()?;
                    match self.take()? {
                        Some((Tok::Word(is), _)) if is == "is" => {}
                        _ => return Err(self.error(format!("{keyword} needs 'name' is 'content'"))),
                    }
                    let content = self.string()?;
                    if keyword == "meta" {
                        if name == "base" {
                            header.meta_base.get_or_insert_with(|| content.clone());
                        }
                        self.builder.metas.push((name, content));
                    }
                }
                other => {
                    if self.strict {
                        return Err(GrammarError::Abnf {
                            line,
                            message: format!("unknown declaration {other:?}"),
                        });
                    }
                    // Lenient: skip an unknown (vendor) declaration up to its ';'.
                    while !matches!(self.peek()?, Some(Tok::Semi) | None) {
                        self.take()?;
                    }
                }
            }
            match self.peek()? {
                Some(Tok::Semi) => {
                    self.take()?;
                }
                _ if !self.strict => {}
                _ => {
                    return Err(self.error(format!("expected ';' after the {keyword} declaration")));
                }
            }
        }
    }

    /// A declaration value: a word, `<uri>` or quoted string.
    fn value(&mut self) -> Result<String, GrammarError> {
        match self.take()? {
            Some((Tok::Word(v) | Tok::Angle(v) | Tok::Quoted(v) | Tok::Single(v), _)) => Ok(v),
            _ => Err(self.error("a declaration needs a value")),
        }
    }

    fn string(&mut self) -> Result<String, GrammarError> {
        match self.take()? {
            Some((Tok::Quoted(v) | Tok::Single(v), _)) => Ok(v),
            _ => Err(self.error("expected a quoted string")),
        }
    }

    fn rule(&mut self) -> Result<(), GrammarError> {
        let mut public = false;
        if let Some(Tok::Word(scope)) = self.peek()? {
            match scope.as_str() {
                "public" => public = true,
                "private" => {}
                other => {
                    return Err(self.error(format!("expected a rule definition, found {other:?}")));
                }
            }
            self.take()?;
        }
        let (name, line) = match self.take()? {
            Some((Tok::Rule(name), line)) => (name, line),
            Some((tok, line)) => {
                return Err(GrammarError::Abnf {
                    line,
                    message: format!("expected a rule definition \"$name = …;\", found {tok:?}"),
                });
            }
            None => return Err(self.error("expected a rule definition")),
        };
        self.expect(&Tok::Eq, "'=' after the rule name")?;
        if self.peek()? == Some(Tok::Semi) {
            return Err(self.error(format!("rule ${name} is empty; a rule needs an expansion")));
        }
        let body = self.alternatives()?;
        self.expect(&Tok::Semi, "';' at the end of the rule")?;
        self.builder.rule(&name, public, body, line)
    }

    fn alternatives(&mut self) -> Result<NodeId, GrammarError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("groups nest deeper than {MAX_DEPTH}")));
        }
        let (weight, first) = self.sequence()?;
        let mut alts = vec![first];
        let mut weights = vec![weight];
        while self.peek()? == Some(Tok::Bar) {
            self.take()?;
            let (weight, alt) = self.sequence()?;
            alts.push(alt);
            weights.push(weight);
        }
        self.depth -= 1;
        if alts.len() == 1 {
            Ok(alts.pop().unwrap_or_default())
        } else {
            self.builder.alternatives(alts, &weights)
        }
    }

    /// One alternative, with its weight if written.
    fn sequence(&mut self) -> Result<(Option<f32>, NodeId), GrammarError> {
        let mut weight = None;
        if let Some(Tok::Weight(text)) = self.peek()? {
            weight = text.parse::<f32>().ok();
            self.take()?;
        }
        let mut parts = Vec::new();
        while let Some(part) = self.unary()? {
            parts.push(part);
        }
        if parts.is_empty() {
            return Err(self.error("an alternative is empty; write $NULL for \"nothing\""));
        }
        Ok((weight, self.builder.seq(parts)?))
    }

    /// A primary with its repeats and language attachments; `None` at a sequence end.
    fn unary(&mut self) -> Result<Option<NodeId>, GrammarError> {
        let Some(mut id) = self.primary()? else {
            return Ok(None);
        };
        loop {
            match self.peek()? {
                Some(Tok::Angle(_)) => {
                    let Some((Tok::Angle(repeat), line)) = self.take()? else {
                        continue;
                    };
                    let count = repeat.split('/').next().unwrap_or_default();
                    let (min, max) = parse_repeat(count).ok_or_else(|| GrammarError::Abnf {
                        line,
                        message: format!("repeat <{repeat}> is malformed; use <n>, <m-n> or <m->"),
                    })?;
                    id = self.builder.push(Node::Repeat { body: id, min, max })?;
                }
                Some(Tok::Lang) => {
                    self.take()?;
                }
                _ => return Ok(Some(id)),
            }
        }
    }

    fn primary(&mut self) -> Result<Option<NodeId>, GrammarError> {
        let mode = self.mode;
        let id = match self.peek()? {
            Some(Tok::Word(_) | Tok::Quoted(_) | Tok::Single(_)) => {
                let Some((Tok::Word(t) | Tok::Quoted(t) | Tok::Single(t), _)) = self.take()? else {
                    return Ok(None);
                };
                match self.builder.token(&t, mode)? {
                    Some(id) => id,
                    None => self.builder.push(Node::Null)?,
                }
            }
            Some(Tok::Tag(_)) => {
                let Some((Tok::Tag(t), _)) = self.take()? else {
                    return Ok(None);
                };
                self.builder.push(Node::Tag(t))?
            }
            Some(Tok::Rule(_)) => {
                let Some((Tok::Rule(name), line)) = self.take()? else {
                    return Ok(None);
                };
                self.builder.reference(PendingRef::Local { name, line })?
            }
            Some(Tok::Uri(_)) => {
                let Some((Tok::Uri(uri), line)) = self.take()? else {
                    return Ok(None);
                };
                let mut media_type = None;
                if self.peek()? == Some(Tok::Tilde) {
                    self.take()?;
                    media_type = Some(self.value()?);
                }
                let pending = reference(&uri, media_type.as_deref(), self.base.as_ref(), mode)
                    .map_err(|e| match e {
                        GrammarError::Invalid(message) => GrammarError::Abnf { line, message },
                        other => other,
                    })?;
                let pending = match pending {
                    PendingRef::Local { name, .. } => PendingRef::Local { name, line },
                    done => done,
                };
                self.builder.reference(pending)?
            }
            Some(Tok::Open) => {
                self.take()?;
                if self.peek()? == Some(Tok::Close) {
                    self.take()?;
                    return self.builder.push(Node::Null).map(Some);
                }
                let inner = self.alternatives()?;
                self.expect(&Tok::Close, "')'")?;
                inner
            }
            Some(Tok::OpenOpt) => {
                self.take()?;
                let inner = self.alternatives()?;
                self.expect(&Tok::CloseOpt, "']'")?;
                self.builder.push(Node::Repeat {
                    body: inner,
                    min: 0,
                    max: Some(1),
                })?
            }
            Some(Tok::Weight(_)) if !self.strict => {
                self.take()?;
                return self.primary();
            }
            _ => return Ok(None),
        };
        Ok(Some(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Model {
        parse(
            text,
            url::Url::parse("file:///g/x.gram").ok().as_ref(),
            true,
        )
        .unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse(
            text,
            url::Url::parse("file:///g/x.gram").ok().as_ref(),
            true,
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn header_declarations_and_rules() {
        let m = parse_ok(
            "#ABNF 1.0 UTF-8;\nlanguage en-US; mode voice; root $main; tag-format <semantics/1.0>;\n\
             base <sub/>; lexicon <lex.pls>~<application/pls+xml>; http-equiv 'Expires' is '0';\n\
             meta 'in.1' is \"it's\";\n\
             public $main = /2/ please $city {out=1} | $<places.gram#city>~<application/srgs> !en-GB;\n\
             $city = \"New York\" | Boston<0-1 /0.5/> | (a b)<2-> | [c] | ();",
        );
        assert_eq!(m.rules.len(), 2);
        assert_eq!(m.metas, [("in.1".to_owned(), "it's".to_owned())]);
        assert_eq!(m.tag_format, TagFormat::Script);
        let ext: Vec<_> = m.external_refs().collect();
        assert_eq!(ext[0].url.as_str(), "file:///g/sub/places.gram");
        assert_eq!(ext[0].media_type.as_deref(), Some("application/srgs"));
    }

    #[test]
    fn tags_may_hold_braces_as_their_delimiters_allow() {
        let m = parse_ok("#ABNF 1.0;\nlanguage en; root $a;\n$a = {!{ x { } y }!} b {c { d};");
        let tags: Vec<_> = m
            .nodes
            .iter()
            .filter_map(|n| match n {
                Node::Tag(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(tags, [" x { } y ", "c { d"]);
        assert!(parse_err("#ABNF 1.0;\nlanguage en;\n$a = {x } y} b;").contains("line 3"));
    }

    #[test]
    fn header_and_reserved_symbol_errors() {
        assert!(parse_err("#ABNF ;\nlanguage en;\n$a = b;").contains("version"));
        assert!(parse_err("#ABNF 2.0;\nlanguage en;\n$a = b;").contains("2.0"));
        assert!(parse_err("language en;\n$a = b;").contains("#ABNF"));
        assert!(parse_err("#ABNF 1.0;\nlanguage en;\n$a = b*;").contains("reserved"));
        assert!(parse_err("#ABNF 1.0;\nlanguage en;\n$a = ;").contains("empty"));
        assert!(parse_err("#ABNF 1.0;\nmode voice;\n$a = b;").contains("language"));
        assert!(parse_err("#ABNF 1.0;\nlanguage en; root $a; root $a;\n$a = b;").contains("twice"));
        assert!(parse_err("#ABNF 1.0;\nlanguage en; bogus x;\n$a = b;").contains("bogus"));
        assert!(parse_err("#ABNF 1.0; language en;\n$a = b;").contains("alone"));
        // The same documents are accepted by a lenient (VoiceXML) parse.
        assert!(parse("#ABNF 1.0;\nmode voice; bogus x;\n$a = b;", None, false).is_ok());
    }

    #[test]
    fn dtmf_star_must_be_quoted_or_named() {
        assert!(parse_err("#ABNF 1.0;\nmode dtmf;\n$a = *;").contains("reserved"));
        let m = parse_ok("#ABNF 1.0;\nmode dtmf;\n$a = \"*\" star pound 1;");
        let words: Vec<_> = m
            .nodes
            .iter()
            .filter_map(|n| match n {
                Node::Token { words, .. } => Some(words.concat()),
                _ => None,
            })
            .collect();
        assert_eq!(words, ["*", "*", "#", "1"]);
    }
}
