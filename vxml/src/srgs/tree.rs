//! The logical parse structure of a match (SRGS 1.0 Appendix, "logical parse structure").
//!
//! Printed with [`std::fmt::Display`] in the notation of the SRGS test set:
//! `$main[$fruit["oranges"]]`, external references as `$<uri#rule>[...]`, tags as
//! `{!{content}!}`.

use std::fmt;

use super::SemanticValue;
use super::model::TagFormat;

/// Which rule a [`RuleMatch`] expanded.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleName {
    /// A rule of the grammar that holds the reference (`$name`).
    Local(String),
    /// A rule of another grammar (`$<uri>`): the URI as written and as resolved.
    External {
        /// The reference as written in the grammar.
        written: String,
        /// The absolute URI, with the fragment naming the rule if any.
        resolved: url::Url,
    },
}

/// One rule expansion in a parse.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMatch {
    /// The rule.
    pub name: RuleName,
    /// What it matched, in order.
    pub children: Vec<ParseNode>,
    pub(crate) format: TagFormat,
}

/// One element of a parse.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseNode {
    /// A grammar token as written (a quoted multi-word token stays one).
    Token(String),
    /// A tag's content as written.
    Tag(String),
    /// A rule reference and its expansion.
    Rule(RuleMatch),
    /// A VoiceXML builtin grammar referenced as a rule, with its value.
    Builtin {
        /// The `builtin:` URI.
        uri: String,
        /// The input tokens it consumed.
        tokens: Vec<String>,
        /// Its semantic value.
        value: SemanticValue,
    },
}

impl RuleMatch {
    /// The tokens this expansion matched, joined by `sep`.
    pub(crate) fn text(&self, sep: &str) -> String {
        let mut words = Vec::new();
        collect_text(&self.children, &mut words);
        words.join(sep)
    }
}

fn collect_text<'a>(nodes: &'a [ParseNode], out: &mut Vec<&'a str>) {
    for node in nodes {
        match node {
            ParseNode::Token(t) => out.push(t),
            ParseNode::Tag(_) => {}
            ParseNode::Rule(rule) => collect_text(&rule.children, out),
            ParseNode::Builtin { tokens, .. } => out.extend(tokens.iter().map(String::as_str)),
        }
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(name) => write!(f, "${name}"),
            Self::External { written, .. } => write!(f, "$<{written}>"),
        }
    }
}

impl fmt::Display for RuleMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.name)?;
        for (i, child) in self.children.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{child}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Display for ParseNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(t) => write!(f, "\"{t}\""),
            Self::Tag(t) => write!(f, "{{!{{{t}}}!}}"),
            Self::Rule(rule) => write!(f, "{rule}"),
            Self::Builtin { uri, tokens, .. } => {
                write!(f, "$<{uri}>[")?;
                for (i, t) in tokens.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "\"{t}\"")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notation_matches_the_test_set() {
        let tree = RuleMatch {
            name: RuleName::Local("main".into()),
            children: vec![
                ParseNode::Token("San Francisco".into()),
                ParseNode::Tag("x".into()),
                ParseNode::Rule(RuleMatch {
                    name: RuleName::External {
                        written: "a.gram#b".into(),
                        resolved: url::Url::parse("file:///g/a.gram#b").unwrap(),
                    },
                    children: vec![],
                    format: TagFormat::Sniff,
                }),
            ],
            format: TagFormat::Sniff,
        };
        assert_eq!(
            tree.to_string(),
            r#"$main["San Francisco",{!{x}!},$<a.gram#b>[]]"#
        );
        assert_eq!(tree.text(" "), "San Francisco");
    }
}
