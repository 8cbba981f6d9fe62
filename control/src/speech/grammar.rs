//! A JSGF grammar as the recognizer takes it: its text, a hash that keys the decoders' grammar
//! caches, and the words it can produce (checked against the pronunciation dictionary before
//! the grammar reaches PocketSphinx, which otherwise logs and fails without naming them).

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::SpeechError;

/// Largest JSGF text accepted (the grammars of a VoiceXML field are small; this bounds what a
/// hostile application can make the decoder compile).
pub const MAX_JSGF_BYTES: usize = 64 * 1024;
/// Most distinct words in one grammar.
pub const MAX_JSGF_WORDS: usize = 5_000;

/// A JSGF grammar (`#JSGF V1.0; grammar name; public <rule> = ...;`).
#[derive(Debug, Clone)]
pub struct Jsgf {
    text: String,
    hash: u64,
    words: Vec<String>,
}

impl Jsgf {
    /// Takes JSGF text; fails when it is too large, has too many words or no rule.
    pub fn new(text: impl Into<String>) -> Result<Self, SpeechError> {
        let text = text.into();
        if text.len() > MAX_JSGF_BYTES {
            return Err(SpeechError::Grammar(format!(
                "the grammar is {} bytes; at most {MAX_JSGF_BYTES} are accepted",
                text.len()
            )));
        }
        if text.contains('\0') {
            return Err(SpeechError::Grammar(
                "the grammar contains a NUL byte".into(),
            ));
        }
        let words = words_of(&text)?;
        if words.len() > MAX_JSGF_WORDS {
            return Err(SpeechError::Grammar(format!(
                "the grammar has {} distinct words; at most {MAX_JSGF_WORDS} are accepted",
                words.len()
            )));
        }
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        Ok(Self {
            hash: hasher.finish(),
            text,
            words: words.into_iter().collect(),
        })
    }

    /// The JSGF text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A hash of the text (the grammar cache's key).
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The distinct words the grammar can produce, sorted.
    pub fn words(&self) -> &[String] {
        &self.words
    }
}

/// The words in the rule bodies: everything after `=` up to `;`, less comments, rule
/// references `<...>`, tags `{...}`, weights `/.../` and operators. Quoted tokens count as
/// one word each.
fn words_of(text: &str) -> Result<BTreeSet<String>, SpeechError> {
    let text = strip_comments(text);
    let mut words = BTreeSet::new();
    let mut rules = 0;
    // Statements end with ';'; the header statements (`#JSGF`, `grammar`, `import`) have no '='.
    for statement in text.split(';') {
        let Some((_, body)) = statement.split_once('=') else {
            continue;
        };
        rules += 1;
        let mut chars = body.chars().peekable();
        let mut word = String::new();
        let flush = |word: &mut String, words: &mut BTreeSet<String>| {
            if !word.is_empty() {
                words.insert(std::mem::take(word));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '<' | '{' | '/' | '"' => {
                    flush(&mut word, &mut words);
                    let close = match c {
                        '<' => '>',
                        '{' => '}',
                        other => other,
                    };
                    let mut quoted = String::new();
                    let mut closed = false;
                    for d in chars.by_ref() {
                        if d == close {
                            closed = true;
                            break;
                        }
                        quoted.push(d);
                    }
                    if !closed {
                        return Err(SpeechError::Grammar(format!(
                            "an unclosed `{c}` in the grammar"
                        )));
                    }
                    if c == '"' {
                        for w in quoted.split_whitespace() {
                            words.insert(w.to_owned());
                        }
                    }
                }
                '|' | '(' | ')' | '[' | ']' | '*' | '+' => flush(&mut word, &mut words),
                c if c.is_whitespace() => flush(&mut word, &mut words),
                c => word.push(c),
            }
        }
        flush(&mut word, &mut words);
    }
    if rules == 0 {
        return Err(SpeechError::Grammar(
            "the grammar has no rule (`<name> = ...;`)".into(),
        ));
    }
    Ok(words)
}

/// Removes `// ...` line comments and `/* ... */` block comments (not inside quotes).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
            out.push(' ');
        } else if rest.starts_with('"') {
            let end = rest[1..].find('"').map_or(rest.len(), |i| i + 2);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_skip_rule_references_tags_weights_and_comments() {
        let g = Jsgf::new(
            "#JSGF V1.0;\ngrammar t; // a comment\n/* block = no; */\npublic <r> = (yes | yeah) {ok} \
             | /2/ no [thanks] | <other>;\n<other> = \"new york\"+ ;",
        )
        .unwrap();
        assert_eq!(g.words(), ["new", "no", "thanks", "yeah", "yes", "york"]);
    }

    #[test]
    fn refuses_what_it_cannot_take() {
        assert!(Jsgf::new("#JSGF V1.0; grammar t;").is_err(), "no rule");
        assert!(
            Jsgf::new("#JSGF V1.0; grammar t; public <r> = a {b;").is_err(),
            "unclosed tag"
        );
        assert!(
            Jsgf::new("x".repeat(MAX_JSGF_BYTES + 1)).is_err(),
            "too large"
        );
    }

    #[test]
    fn the_hash_follows_the_text() {
        let a = Jsgf::new("#JSGF V1.0; grammar t; public <r> = yes;").unwrap();
        let b = Jsgf::new("#JSGF V1.0; grammar t; public <r> = no;").unwrap();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), Jsgf::new(a.text()).unwrap().hash());
    }
}
