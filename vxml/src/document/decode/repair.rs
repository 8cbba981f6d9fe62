//! Markup repairs: what a lenient platform reads in documents that are not quite XML.
//!
//! Documents written in the wild break XML 1.0 in a handful of ways that still have an obvious
//! meaning. Each is repaired here, before the XML parser sees the text, and logged as a
//! [`Note`] at the author's position:
//!
//! | written | read as | where it comes from |
//! |---|---|---|
//! | a C0 control character (not tab, LF, CR) | a space | DOS end-of-file `^Z`, form feeds |
//! | U+FFFE, U+FFFF | U+FFFD | broken conversions |
//! | `<?xml …?>` | blanked (the text is decoded already) | whitespace before the declaration (JSP, PHP), no `version`, a second declaration from an include |
//! | `&nbsp;`, `&eacute;`, `&rsquo;` … | the character | HTML entities, which the VoiceXML DTD does not define ([`html_entities`](super::html_entities)) |
//! | `&name;` unknown or external | the text `&name;` | entities of a DTD that is never fetched |
//! | `&` starting no reference | `&` | `next="a.jsp?x=1&y=2"`, `cond="a && b"` |
//! | `<` in an attribute value | `<` | `cond="i < 3"` |
//! | `<` starting no markup | `<` | `x < 3` in text |
//! | `<` inside `<script>` without CDATA | `<` | the script is text, as in HTML |
//! | `]]>` in text | `]]>` | |
//! | `%name;` in the internal DTD subset | nothing | parameter entities of an unfetched DTD |
//! | a namespace prefix never declared | a foreign element or attribute (ignored) | vendor elements copied between applications |
//!
//! Lines never move: no repair adds or removes a line break. Columns after a repair on the
//! same line shift by the difference in length. Well-formed documents pass through unchanged
//! and unallocated.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::html_entities;

/// A repair or reading decision, at a byte offset of the decoded text when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Note {
    /// Byte offset in the decoded text.
    pub(super) offset: Option<usize>,
    /// What was found and how it was read.
    pub(super) message: String,
}

/// Most notes one scan records; the rest are counted in a last note.
const MAX_NOTES: usize = 16;

/// Longest entity or character reference looked for after a `&`.
const MAX_REFERENCE: usize = 32;

/// The entities XML 1.0 predefines (§4.6).
const PREDEFINED: [&str; 5] = ["lt", "gt", "amp", "quot", "apos"];

/// Namespace given to prefixes used without a declaration.
const UNDECLARED_NS: &str = "urn:x-outdial:undeclared:";

/// Repairs `text`; borrowed back unchanged when nothing needed repair.
pub(super) fn repair<'a>(text: &'a str, notes: &mut Vec<Note>) -> Cow<'a, str> {
    let text = replace_non_characters(text, notes);
    let mut scanner = Scanner::new(&text);
    scanner.run();
    match scanner.finish(notes) {
        Some(repaired) => Cow::Owned(repaired),
        None => text,
    }
}

/// Whether `c` may not appear in an XML 1.0 document (§2.2). NUL is left for the caller,
/// which treats it as a sign of binary content.
fn is_non_character(c: char) -> bool {
    matches!(c, '\u{1}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

/// Replaces characters XML forbids, keeping every byte offset.
fn replace_non_characters<'a>(text: &'a str, notes: &mut Vec<Note>) -> Cow<'a, str> {
    let Some(first) = text.find(is_non_character) else {
        return Cow::Borrowed(text);
    };
    let mut count = 0_usize;
    let replaced = text
        .chars()
        .map(|c| match c {
            // Same UTF-8 length, so offsets hold.
            '\u{fffe}' | '\u{ffff}' => {
                count += 1;
                '\u{fffd}'
            }
            c if is_non_character(c) => {
                count += 1;
                ' '
            }
            c => c,
        })
        .collect();
    let code = text.get(first..).and_then(|rest| rest.chars().next());
    notes.push(Note {
        offset: Some(first),
        message: format!(
            "{count} character(s) XML does not allow (the first is U+{:04X}) read as spaces; \
             remove them from the document",
            code.map_or(0, u32::from)
        ),
    });
    Cow::Owned(replaced)
}

/// Bytes of XML names (and of entity names), loosely: anything but ASCII punctuation and space.
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b':' | b'.' | b'-') || byte >= 0x80
}

/// Bytes that may start an element name.
fn is_name_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || matches!(byte, b'_' | b':') || byte >= 0x80
}

/// The local part of a qualified name.
fn local_name(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, local)| local)
}

/// Whether `#NNN` or `#xHHH` names a character XML allows (§2.2, §4.1).
fn is_valid_char_ref(reference: &str) -> bool {
    let number = match reference.strip_prefix('x') {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => reference.parse(),
    };
    number
        .ok()
        .and_then(char::from_u32)
        .is_some_and(|c| matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !is_non_character(c)))
}

/// One pass over the text, copying it into `out` from the first repair on.
struct Scanner<'t> {
    text: &'t str,
    bytes: &'t [u8],
    /// The repaired text up to `copied`; empty until the first repair.
    out: String,
    /// Bytes of `text` before this offset are in `out` (or need no copy yet).
    copied: usize,
    edited: bool,
    notes: Vec<Note>,
    dropped_notes: usize,
    /// Entities the internal DTD subset declares with a literal value.
    entities: Vec<&'t str>,
    /// Namespace prefixes used on elements and attributes, with where first seen.
    prefixes_used: Vec<(&'t str, usize)>,
    /// Prefixes some `xmlns:prefix` declares.
    prefixes_declared: Vec<&'t str>,
    /// Offset in the output just after the root element's name.
    root_name_end: Option<usize>,
    /// No `</script` follows this offset (keeps many unclosed scripts linear).
    no_script_end_after: usize,
}

impl<'t> Scanner<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            out: String::new(),
            copied: 0,
            edited: false,
            notes: Vec::new(),
            dropped_notes: 0,
            entities: Vec::new(),
            prefixes_used: Vec::new(),
            prefixes_declared: Vec::new(),
            root_name_end: None,
            no_script_end_after: usize::MAX,
        }
    }

    /// Scans content from the start; stops where the markup is too broken to follow (the XML
    /// parser then reports it).
    fn run(&mut self) {
        let mut pos = 0;
        while let Some(at) = self.find_any(pos, self.bytes.len(), b"<&]") {
            let next = match self.bytes.get(at) {
                Some(b'<') => self.markup(at),
                Some(b'&') => Some(self.reference(at, self.bytes.len())),
                _ => Some(self.close_bracket(at)),
            };
            match next {
                Some(next) => pos = next,
                None => return,
            }
        }
    }

    /// The repaired text, or `None` if nothing changed; moves the notes into `notes`.
    fn finish(mut self, notes: &mut Vec<Note>) -> Option<String> {
        let declarations = self.declare_undeclared_prefixes();
        if self.dropped_notes > 0 {
            self.notes.push(Note {
                offset: None,
                message: format!("{} more repairs like the above", self.dropped_notes),
            });
        }
        notes.append(&mut self.notes);
        if !self.edited && declarations.is_empty() {
            return None;
        }
        let mut out = self.out;
        out.push_str(self.text.get(self.copied..).unwrap_or_default());
        if let Some(at) = self.root_name_end.filter(|at| out.is_char_boundary(*at)) {
            out.insert_str(at, &declarations);
        }
        Some(out)
    }

    /// `xmlns:p="…"` for every prefix used but never declared, noting each.
    fn declare_undeclared_prefixes(&mut self) -> String {
        let mut declarations = String::new();
        if self.root_name_end.is_none() {
            return declarations;
        }
        let mut done: Vec<&str> = Vec::new();
        for (prefix, at) in std::mem::take(&mut self.prefixes_used) {
            if self.prefixes_declared.contains(&prefix) || done.contains(&prefix) {
                continue;
            }
            done.push(prefix);
            let _ = write!(declarations, " xmlns:{prefix}=\"{UNDECLARED_NS}{prefix}\"");
            self.note(
                at,
                format!(
                    "namespace prefix '{prefix}' is never declared; its elements and \
                     attributes are read as foreign and ignored"
                ),
            );
        }
        declarations
    }

    /// Records a note at `at`.
    fn note(&mut self, at: usize, message: impl Into<String>) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(Note {
                offset: Some(at),
                message: message.into(),
            });
        } else {
            self.dropped_notes += 1;
        }
    }

    /// Replaces `text[start..end]` with `with`.
    fn edit(&mut self, start: usize, end: usize, with: &str) {
        let Some(before) = self.text.get(self.copied..start) else {
            return;
        };
        if !self.edited {
            self.out.reserve(self.text.len() + 64);
            self.edited = true;
        }
        self.out.push_str(before);
        self.out.push_str(with);
        self.copied = end;
    }

    /// The output offset `at` will have (for `at` not before the last repair).
    fn out_offset(&self, at: usize) -> usize {
        self.out.len() + at.saturating_sub(self.copied)
    }

    fn starts(&self, at: usize, pattern: &str) -> bool {
        self.bytes
            .get(at..)
            .is_some_and(|rest| rest.starts_with(pattern.as_bytes()))
    }

    /// The first offset at or after `from` where `pattern` starts.
    fn find(&self, from: usize, pattern: &str) -> Option<usize> {
        let pattern = pattern.as_bytes();
        self.bytes
            .get(from..)?
            .windows(pattern.len())
            .position(|window| window == pattern)
            .map(|i| from + i)
    }

    /// The first offset in `from..to` holding one of `set`.
    fn find_any(&self, from: usize, to: usize, set: &[u8]) -> Option<usize> {
        self.bytes
            .get(from..to)?
            .iter()
            .position(|byte| set.contains(byte))
            .map(|i| from + i)
    }

    fn name_end(&self, from: usize) -> usize {
        self.bytes
            .get(from..)
            .and_then(|rest| rest.iter().position(|b| !is_name_byte(*b)))
            .map_or(self.bytes.len(), |i| from + i)
    }

    fn skip_space(&self, from: usize) -> usize {
        self.bytes
            .get(from..)
            .and_then(|rest| rest.iter().position(|b| !b.is_ascii_whitespace()))
            .map_or(self.bytes.len(), |i| from + i)
    }

    /// Markup at a `<`; returns where scanning resumes.
    fn markup(&mut self, at: usize) -> Option<usize> {
        if self.starts(at, "<!--") {
            return self.find(at + 4, "-->").map(|end| end + 3);
        }
        if self.starts(at, "<![CDATA[") {
            return self.find(at + 9, "]]>").map(|end| end + 3);
        }
        if self.starts(at, "<?") {
            return self.processing_instruction(at);
        }
        if self.starts(at, "<!DOCTYPE") {
            return self.doctype(at + 9);
        }
        if self.starts(at, "</") || self.starts(at, "<!") {
            return self.find(at + 2, ">").map(|end| end + 1);
        }
        match self.bytes.get(at + 1) {
            Some(byte) if is_name_start(*byte) => self.start_tag(at),
            _ => {
                self.edit(at, at + 1, "&lt;");
                self.note(
                    at,
                    "a '<' that starts no markup is read as text; write &lt; (or use CDATA)",
                );
                Some(at + 1)
            }
        }
    }

    /// `<?target …?>`; an XML declaration is blanked wherever it is.
    fn processing_instruction(&mut self, at: usize) -> Option<usize> {
        let end = self.find(at + 2, "?>")? + 2;
        let target = self.text.get(at + 2..self.name_end(at + 2))?;
        if target.eq_ignore_ascii_case("xml") {
            let declaration = self.text.get(at..end)?;
            let blank: String = declaration
                .chars()
                .map(|c| if c == '\n' || c == '\r' { c } else { ' ' })
                .collect();
            self.edit(at, end, &blank);
            let first = self
                .text
                .get(..at)
                .is_some_and(|before| before.trim().is_empty());
            if !first {
                self.note(
                    at,
                    "an XML declaration after the start of the document is ignored",
                );
            }
        }
        Some(end)
    }

    /// The rest of `<!DOCTYPE` from `from`: records the internal subset's entities.
    fn doctype(&mut self, mut at: usize) -> Option<usize> {
        loop {
            match *self.bytes.get(at)? {
                quote @ (b'"' | b'\'') => {
                    at = self.find_any(at + 1, self.bytes.len(), &[quote])? + 1
                }
                b'[' => at = self.internal_subset(at + 1)?,
                b'>' => return Some(at + 1),
                _ => at += 1,
            }
        }
    }

    /// The internal DTD subset from `at`; returns the offset after its `]`.
    fn internal_subset(&mut self, mut at: usize) -> Option<usize> {
        loop {
            match *self.bytes.get(at)? {
                b']' => return Some(at + 1),
                quote @ (b'"' | b'\'') => {
                    at = self.find_any(at + 1, self.bytes.len(), &[quote])? + 1
                }
                b'<' if self.starts(at, "<!--") => at = self.find(at + 4, "-->")? + 3,
                b'<' if self.starts(at, "<!ENTITY") => at = self.entity_declaration(at + 8)?,
                b'%' => at = self.parameter_reference(at),
                _ => at += 1,
            }
        }
    }

    /// `<!ENTITY name "value">` from after `<!ENTITY`; returns the offset after its `>`.
    fn entity_declaration(&mut self, from: usize) -> Option<usize> {
        let mut at = self.skip_space(from);
        if self.bytes.get(at) != Some(&b'%') {
            let name_end = self.name_end(at);
            let name = self.text.get(at..name_end)?;
            at = self.skip_space(name_end);
            if matches!(self.bytes.get(at), Some(b'"' | b'\'')) && !name.is_empty() {
                self.entities.push(name);
            }
        }
        loop {
            match *self.bytes.get(at)? {
                quote @ (b'"' | b'\'') => {
                    at = self.find_any(at + 1, self.bytes.len(), &[quote])? + 1
                }
                b'>' => return Some(at + 1),
                _ => at += 1,
            }
        }
    }

    /// `%name;` in the internal subset: removed (the external DTD is never fetched).
    fn parameter_reference(&mut self, at: usize) -> usize {
        let end = self.name_end(at + 1);
        if end == at + 1 || self.bytes.get(end) != Some(&b';') {
            return at + 1;
        }
        let name = self.text.get(at + 1..end).unwrap_or_default();
        let blank = " ".repeat(name.chars().count() + 2);
        self.edit(at, end + 1, &blank);
        self.note(
            at,
            format!("parameter entity %{name}; is not expanded: external DTDs are not fetched"),
        );
        end + 1
    }

    /// A start tag at `at`; repairs its attribute values.
    fn start_tag(&mut self, at: usize) -> Option<usize> {
        let name_end = self.name_end(at + 1);
        let name = self.text.get(at + 1..name_end)?;
        self.use_prefix(name, at + 1);
        if self.root_name_end.is_none() {
            self.root_name_end = Some(self.out_offset(name_end));
        }
        let mut pos = name_end;
        loop {
            pos = self.skip_space(pos);
            match *self.bytes.get(pos)? {
                b'>' => return Some(self.element_content(name, pos + 1)),
                b'/' if self.bytes.get(pos + 1) == Some(&b'>') => return Some(pos + 2),
                byte if !is_name_byte(byte) => {
                    pos += 1;
                    continue;
                }
                _ => {}
            }
            let attribute_end = self.name_end(pos);
            let attribute = self.text.get(pos..attribute_end)?;
            if let Some(prefix) = attribute.strip_prefix("xmlns:") {
                self.prefixes_declared.push(prefix);
            } else {
                self.use_prefix(attribute, pos);
            }
            pos = self.skip_space(attribute_end);
            if self.bytes.get(pos) != Some(&b'=') {
                continue;
            }
            pos = self.skip_space(pos + 1);
            let quote = *self.bytes.get(pos)?;
            if quote != b'"' && quote != b'\'' {
                continue;
            }
            let close = self.find_any(pos + 1, self.bytes.len(), &[quote])?;
            self.attribute_value(attribute, pos + 1, close);
            pos = close + 1;
        }
    }

    /// Records the prefix of a qualified name.
    fn use_prefix(&mut self, name: &'t str, at: usize) {
        if let Some((prefix, _)) = name.split_once(':')
            && !prefix.is_empty()
            && prefix != "xml"
            && prefix != "xmlns"
        {
            self.prefixes_used.push((prefix, at));
        }
    }

    /// An attribute value in `start..end`.
    fn attribute_value(&mut self, attribute: &str, start: usize, end: usize) {
        let mut pos = start;
        while let Some(at) = self.find_any(pos, end, b"<&") {
            if self.bytes.get(at) == Some(&b'<') {
                self.edit(at, at + 1, "&lt;");
                self.note(
                    at,
                    format!("a '<' in the value of {attribute} is read as text; write &lt;"),
                );
                pos = at + 1;
            } else {
                pos = self.reference(at, end);
            }
        }
    }

    /// Content after the start tag `name`, ending at `from`: a `<script>` whose text holds a
    /// `<` outside CDATA is read as text up to `</script`. Returns where scanning resumes.
    fn element_content(&mut self, name: &str, from: usize) -> usize {
        if local_name(name) != "script" {
            return from;
        }
        if from >= self.no_script_end_after {
            return from;
        }
        let Some(end) = self.find(from, &format!("</{name}")) else {
            if name == "script" {
                self.no_script_end_after = from;
            }
            return from;
        };
        let Some(body) = self.text.get(from..end) else {
            return from;
        };
        if !body.contains('<') || body.contains("<![CDATA[") || body.contains("<!--") {
            return from;
        }
        self.note(
            from,
            "a '<' in <script> is read as script text; wrap scripts in <![CDATA[ … ]]>",
        );
        let mut pos = from;
        while let Some(at) = self.find_any(pos, end, b"<&") {
            if self.bytes.get(at) == Some(&b'<') {
                self.edit(at, at + 1, "&lt;");
                pos = at + 1;
            } else {
                pos = self.reference(at, end);
            }
        }
        end
    }

    /// A `&` at `at` (references end before `limit`); returns where scanning resumes.
    fn reference(&mut self, at: usize, limit: usize) -> usize {
        let window = limit.min(at + 1 + MAX_REFERENCE);
        let semicolon = self
            .bytes
            .get(at + 1..window)
            .and_then(|rest| rest.iter().position(|b| !is_name_byte(*b) && *b != b'#'))
            .map(|i| at + 1 + i)
            .filter(|end| *end > at + 1 && self.bytes.get(*end) == Some(&b';'));
        let Some(name) = semicolon.and_then(|end| self.text.get(at + 1..end)) else {
            // `&&` (a script's "and") is one mistake, not two.
            let end = if self.starts(at, "&&") && at + 2 <= limit {
                at + 2
            } else {
                at + 1
            };
            self.edit(at, end, &"&amp;".repeat(end - at));
            self.note(
                at,
                "a '&' that starts no entity reference is read as text; write &amp;",
            );
            return end;
        };
        let after = at + name.len() + 2;
        if let Some(number) = name.strip_prefix('#') {
            if !is_valid_char_ref(number) {
                self.edit(at, at + 1, "&amp;");
                self.note(
                    at,
                    format!("&{name}; is not a character XML allows; kept as text"),
                );
            }
            return after;
        }
        if PREDEFINED.contains(&name) || self.entities.contains(&name) {
            return after;
        }
        if let Some(c) = html_entities::lookup(name) {
            self.edit(at, after, &format!("&#{};", u32::from(c)));
            self.note(
                at,
                format!(
                    "HTML entity &{name}; read as U+{:04X}; the VoiceXML DTD does not define it",
                    u32::from(c)
                ),
            );
            return after;
        }
        self.edit(at, at + 1, "&amp;");
        self.note(
            at,
            format!(
                "entity &{name}; is not defined here (external DTDs are not fetched); kept as text"
            ),
        );
        after
    }

    /// A `]` in text: `]]>` may not appear there.
    fn close_bracket(&mut self, at: usize) -> usize {
        if !self.starts(at, "]]>") {
            return at + 1;
        }
        self.edit(at + 2, at + 3, "&gt;");
        self.note(at, "']]>' in text is read as text; write ]]&gt;");
        at + 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repairs `text`, returning the result and the note messages.
    fn repaired(text: &str) -> (String, Vec<String>) {
        let mut notes = Vec::new();
        let out = repair(text, &mut notes).into_owned();
        (out, notes.into_iter().map(|n| n.message).collect())
    }

    #[test]
    fn well_formed_text_is_borrowed_unchanged() {
        let text = "<!DOCTYPE vxml [<!ENTITY e \"x\">]>\n<vxml a=\"1 &amp; 2\"><!-- & < -->\
                    <![CDATA[ a < b && c ]]><script>if (a &lt; b) x();</script>&e;&#233;</vxml>";
        let mut notes = Vec::new();
        assert!(matches!(repair(text, &mut notes), Cow::Borrowed(_)));
        assert_eq!(notes, []);
    }

    #[test]
    fn html_entities_become_character_references() {
        let (out, notes) = repaired("<vxml a='x&eacute;'>caf&eacute;&nbsp;&rsquo;</vxml>");
        assert_eq!(out, "<vxml a='x&#233;'>caf&#233;&#160;&#8217;</vxml>");
        assert_eq!(notes.len(), 4, "{notes:?}");
        assert!(notes[0].contains("&eacute;"), "{notes:?}");
    }

    #[test]
    fn stray_ampersands_and_angle_brackets_are_escaped() {
        let (out, notes) = repaired(
            "<vxml><if cond=\"a && b < 3\"/><goto next='a.jsp?x=1&y=2'/>x < 3 &bogus; ]]></vxml>",
        );
        assert_eq!(
            out,
            "<vxml><if cond=\"a &amp;&amp; b &lt; 3\"/><goto next='a.jsp?x=1&amp;y=2'/>\
             x &lt; 3 &amp;bogus; ]]&gt;</vxml>"
        );
        assert_eq!(notes.len(), 6, "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("&bogus;")), "{notes:?}");
    }

    #[test]
    fn script_without_cdata_is_read_as_text() {
        let (out, notes) =
            repaired("<vxml><script>for (i = 0; i < n && ok; i++) {}</script><x:y/></vxml>");
        assert!(
            out.starts_with("<vxml xmlns:x=\"urn:x-outdial:undeclared:x\"><script>for (i = 0; i &lt; n &amp;&amp; ok; i++) {}</script>"),
            "{out}"
        );
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes[2].contains("prefix 'x'"), "{notes:?}");
    }

    #[test]
    fn declarations_are_blanked_and_lines_kept() {
        let text = "\r\n<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\r\n<vxml/>\n<?xml ?>";
        let (out, notes) = repaired(text);
        assert_eq!(out.len(), text.len());
        assert_eq!(out.matches('\n').count(), text.matches('\n').count());
        assert_eq!(out.trim(), "<vxml/>");
        assert_eq!(
            notes.len(),
            1,
            "only the late declaration is noted: {notes:?}"
        );
    }

    #[test]
    fn control_characters_and_parameter_entities() {
        let (out, notes) = repaired(
            "<!DOCTYPE vxml PUBLIC 'p' 's' [<!ENTITY % dtd SYSTEM 'x.ent'> %dtd;]><vxml>\u{c}a\u{1a}</vxml>",
        );
        assert!(
            out.ends_with("[<!ENTITY % dtd SYSTEM 'x.ent'>      ]><vxml> a </vxml>"),
            "{out}"
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn notes_are_capped() {
        let text = format!("<vxml>{}</vxml>", "& ".repeat(100));
        let (out, notes) = repaired(&text);
        assert_eq!(out.matches("&amp;").count(), 100);
        assert_eq!(notes.len(), MAX_NOTES + 1);
        assert!(notes[MAX_NOTES].contains("84 more"), "{notes:?}");
    }

    #[test]
    fn broken_markup_stops_the_scan_without_panicking() {
        for text in [
            "<vxml a='",
            "<!DOCTYPE [",
            "<!-- ",
            "<?xml",
            "<",
            "&",
            "&#",
            "]]",
            "<a b=\"&é",
        ] {
            let _ = repaired(text);
        }
    }
}
