//! Several active voice grammars as one JSGF grammar: a recognizer decodes against all of
//! them at once (VoiceXML 2.0 §3.1.4: every active grammar is in scope), and our SRGS engine
//! then picks the first grammar in priority order that accepts the hypothesis.
//!
//! Each grammar's rules keep their bodies; their names get the grammar's index as a prefix
//! (`<root>` of the second grammar becomes `<g1_root>`), and a new public `<root>` is the
//! alternation of the grammars' roots. JSGF rule names are only ever written `<name>`, and
//! words never contain `<`, so renaming is a textual rewrite of the references.

use super::{Jsgf, JsgfError, MAX_JSGF_BYTES, fnv1a};

impl Jsgf {
    /// One grammar accepting what any of `parts` accepts; `parts` itself when there is one.
    pub fn union(parts: &[Self]) -> Result<Self, JsgfError> {
        match parts {
            [] => Err(JsgfError::MatchesNothing),
            [one] => Ok(one.clone()),
            _ => {
                let mut text = String::from("#JSGF V1.0;\ngrammar outdial;\npublic <root> = ");
                let roots: Vec<String> = (0..parts.len()).map(|i| format!("<g{i}_root>")).collect();
                text.push_str(&roots.join(" | "));
                text.push_str(";\n");
                let mut words = Vec::new();
                for (i, part) in parts.iter().enumerate() {
                    for line in part.text.lines() {
                        let line = line.trim();
                        if line.starts_with("#JSGF")
                            || line.starts_with("grammar ")
                            || line.is_empty()
                        {
                            continue;
                        }
                        let line = line.strip_prefix("public ").unwrap_or(line);
                        rename_rules(line, i, &mut text);
                        text.push('\n');
                    }
                    words.extend(part.words.iter().cloned());
                    if text.len() > MAX_JSGF_BYTES {
                        return Err(JsgfError::TooLarge);
                    }
                }
                words.sort_unstable();
                words.dedup();
                let key = fnv1a(text.as_bytes());
                Ok(Self { text, words, key })
            }
        }
    }
}

/// Appends `line` with every rule reference `<name>` but `<NULL>` and `<VOID>` written as
/// `<g{index}_name>`.
fn rename_rules(line: &str, index: usize, out: &mut String) {
    let mut rest = line;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            out.push_str(&rest[open..]);
            return;
        };
        let name = &after[..close];
        if name == "NULL" || name == "VOID" {
            out.push('<');
            out.push_str(name);
            out.push('>');
        } else {
            out.push_str(&format!("<g{index}_{name}>"));
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use crate::srgs::{Grammar, Mode};

    use super::*;

    fn jsgf(abnf: &str) -> Jsgf {
        Grammar::parse(abnf, None, None).unwrap().to_jsgf().unwrap()
    }

    #[test]
    fn one_grammar_is_itself_and_none_is_an_error() {
        let a = jsgf("#ABNF 1.0; mode voice; root $r; $r = red | green;");
        assert_eq!(Jsgf::union(std::slice::from_ref(&a)).unwrap(), a);
        assert_eq!(Jsgf::union(&[]), Err(JsgfError::MatchesNothing));
    }

    #[test]
    fn the_union_accepts_either_grammar_with_rules_kept_apart() {
        let a = jsgf("#ABNF 1.0; mode voice; root $r; $r = red | $c; $c = green;");
        let b = jsgf("#ABNF 1.0; mode voice; root $r; $r = blue [$NULL] | $c; $c = yellow;");
        let yes = Grammar::builtin("boolean", Mode::Voice)
            .unwrap()
            .to_jsgf()
            .unwrap();
        let u = Jsgf::union(&[a.clone(), b, yes]).unwrap();
        assert!(u.text.starts_with("#JSGF V1.0;\ngrammar outdial;\npublic <root> = <g0_root> | <g1_root> | <g2_root>;\n"), "{}", u.text);
        assert_eq!(u.text.matches("public").count(), 1, "{}", u.text);
        assert!(
            u.text.contains("<g0_r_c> = green;") && u.text.contains("<g1_r_c> = yellow;"),
            "{}",
            u.text
        );
        for word in ["red", "green", "blue", "yellow", "yes", "no"] {
            assert!(u.words.iter().any(|w| w == word), "{word}: {:?}", u.words);
        }
        assert_ne!(u.key, a.key);
    }

    #[test]
    fn special_rules_are_not_renamed() {
        let mut out = String::new();
        rename_rules("<x> = a <NULL> | <VOID> | <y> b;", 3, &mut out);
        assert_eq!(out, "<g3_x> = a <NULL> | <VOID> | <g3_y> b;");
    }
}
