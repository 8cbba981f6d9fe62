//! Semantic Interpretation for Speech Recognition (SISR 1.0) over a parse tree.
//!
//! Two paths:
//! - no script tag on the parse (no tags, `semantics/1.0-literals`, or the older literal form
//!   where a tag is just a string): the value is computed here. A rule's value is its last
//!   literal tag, else the value of its last rule reference (`rules.latest()`), else the text
//!   of its tokens (SISR 1.0 §3.3, default assignment).
//! - otherwise an ECMAScript program is generated ([`SemanticValue::Script`]). Each rule
//!   expansion becomes a function scope with the rule variable `out` (initially `{}`),
//!   `rules.<name>` / `rules.latest()` for referenced rules, and `meta.current().text`,
//!   `meta.<name>.text`, `meta.latest()` (SISR 1.0 §6). The program's completion value is the
//!   root rule's `out`. Without a `tag-format` the 2003 draft style also works: `$` is the
//!   rule variable, `$name` a referenced rule's value, and top-level `var`s in a rule's tags
//!   become properties of its result when nothing else was assigned.

use std::fmt::Write as _;

use super::model::TagFormat;
use super::tree::{ParseNode, RuleMatch, RuleName};
use super::{Mode, SemanticValue};

/// The interpretation of a complete parse from `root`.
pub(crate) fn interpret(root: &RuleMatch, mode: Mode) -> SemanticValue {
    let separator = match mode {
        Mode::Dtmf => "",
        Mode::Voice => " ",
    };
    if has_script(root) {
        let mut program = String::new();
        rule_program(root, separator, &mut program);
        SemanticValue::Script(program)
    } else {
        literal_value(root, separator)
    }
}

/// Whether `text` is read as a literal under `format`.
fn is_literal(text: &str, format: TagFormat) -> bool {
    match format {
        TagFormat::Literals => true,
        TagFormat::Script => false,
        TagFormat::Sniff => {
            let t = text.trim().trim_end_matches(';').trim();
            quoted(t).is_some()
                || (!t.is_empty()
                    && t.chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' ' | ':' | '/')))
        }
    }
}

/// The inside of `'…'` or `"…"` when `text` is exactly one quoted string.
fn quoted(text: &str) -> Option<&str> {
    ['\'', '"'].into_iter().find_map(|q| {
        let inner = text.strip_prefix(q)?.strip_suffix(q)?;
        (!inner.contains(q)).then_some(inner)
    })
}

/// The string a literal tag stands for.
fn literal(text: &str) -> String {
    let t = text.trim().trim_end_matches(';').trim();
    quoted(t).unwrap_or(t).to_owned()
}

fn has_script(rule: &RuleMatch) -> bool {
    rule.children.iter().any(|child| match child {
        ParseNode::Tag(text) => !is_literal(text, rule.format),
        ParseNode::Rule(inner) => has_script(inner),
        _ => false,
    })
}

fn literal_value(rule: &RuleMatch, separator: &str) -> SemanticValue {
    let mut tagged = None;
    let mut latest = None;
    for child in &rule.children {
        match child {
            ParseNode::Tag(text) => tagged = Some(SemanticValue::String(literal(text))),
            ParseNode::Rule(inner) => latest = Some(literal_value(inner, separator)),
            ParseNode::Builtin { value, .. } => latest = Some(value.clone()),
            ParseNode::Token(_) => {}
        }
    }
    tagged
        .or(latest)
        .unwrap_or_else(|| SemanticValue::String(rule.text(separator)))
}

/// `s` as an ECMAScript string literal.
pub(crate) fn js_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::script::push_string_literal(&mut out, s);
    out
}

/// A value as an ECMAScript expression.
fn js_value(value: &SemanticValue) -> String {
    match value {
        SemanticValue::String(s) => js_string(s),
        SemanticValue::Bool(b) => b.to_string(),
        SemanticValue::Number(n) if n.is_finite() => format!("{n}"),
        SemanticValue::Number(_) => "NaN".to_owned(),
        SemanticValue::Script(source) => format!("({source})"),
    }
}

/// Whether `name` can be a plain ECMAScript identifier (for the draft-style `$name`).
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The name `rules.<name>` uses for a referenced rule.
fn rule_key(name: &RuleName) -> Option<String> {
    match name {
        RuleName::Local(n) => Some(n.clone()),
        RuleName::External { resolved, .. } => resolved.fragment().map(str::to_owned),
    }
}

/// Names declared by top-level-looking `var` statements in `code` (draft-style results).
fn declared_vars(code: &str, out: &mut Vec<String>) {
    let mut rest = code;
    while let Some(at) = rest.find("var") {
        let before = rest.get(..at).and_then(|b| b.chars().last());
        let after = rest.get(at + 3..).unwrap_or_default();
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '.') {
            continue;
        }
        if !after.starts_with(char::is_whitespace) {
            continue;
        }
        let name: String = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
            .collect();
        if is_identifier(&name) && !out.contains(&name) {
            out.push(name);
        }
    }
}

/// Appends `(function(){ … })()` computing `rule`'s value.
fn rule_program(rule: &RuleMatch, separator: &str, out: &mut String) {
    let text = js_string(&rule.text(separator));
    let _ = writeln!(
        out,
        "(function(){{var out={{}};var __init=out;var $=out;var __tagged=false;var __ref=false;\
         var __latest;var __latestMeta;var __text={text};\
         var rules={{latest:function(){{return __latest;}}}};\
         var meta={{current:function(){{return {{text:__text,score:1}};}},\
         latest:function(){{return __latestMeta;}}}};"
    );
    let mut vars = Vec::new();
    for child in &rule.children {
        match child {
            ParseNode::Token(_) => {}
            ParseNode::Tag(code) if is_literal(code, rule.format) => {
                let _ = writeln!(out, "__tagged=true;out={};", js_string(&literal(code)));
            }
            ParseNode::Tag(code) => {
                if rule.format == TagFormat::Sniff {
                    declared_vars(code, &mut vars);
                }
                let _ = write!(out, "__tagged=true;\n{code}\n;\n");
            }
            ParseNode::Rule(inner) => {
                out.push_str("__ref=true;__latest=");
                rule_program(inner, separator, out);
                let inner_text = js_string(&inner.text(separator));
                let _ = write!(out, ";__latestMeta={{text:{inner_text},score:1}};");
                if let Some(key) = rule_key(&inner.name) {
                    let key_js = js_string(&key);
                    let _ = write!(out, "rules[{key_js}]=__latest;meta[{key_js}]=__latestMeta;");
                    if is_identifier(&key) {
                        let _ = write!(out, "var ${key}=__latest;");
                    }
                }
                out.push('\n');
            }
            ParseNode::Builtin { tokens, value, .. } => {
                let inner_text = js_string(&tokens.join(separator));
                let _ = writeln!(
                    out,
                    "__ref=true;__latest={};__latestMeta={{text:{inner_text},score:1}};",
                    js_value(value)
                );
            }
        }
    }
    for var in &vars {
        let _ = write!(
            out,
            "if(out===__init&&$===__init&&typeof {var}!=='undefined'){{out[{}]={var};}}",
            js_string(var)
        );
    }
    out.push_str(
        "if($!==__init){out=$;}\
         if(!__tagged){out=__ref?__latest:__text;}\
         return out;})()",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, format: TagFormat, children: Vec<ParseNode>) -> RuleMatch {
        RuleMatch {
            name: RuleName::Local(name.into()),
            children,
            format,
        }
    }

    fn token(t: &str) -> ParseNode {
        ParseNode::Token(t.into())
    }

    fn tag(t: &str) -> ParseNode {
        ParseNode::Tag(t.into())
    }

    /// Runs a generated program in a raw QuickJS context and returns JSON of its value.
    fn run(program: &str) -> String {
        let runtime = rquickjs::Runtime::new().unwrap();
        let context = rquickjs::Context::full(&runtime).unwrap();
        context.with(|ctx| {
            let source = format!("JSON.stringify({program})");
            match ctx.eval::<String, _>(source) {
                Ok(json) => json,
                Err(e) => {
                    let detail = ctx.catch();
                    panic!("{e}: {detail:?}\n{program}")
                }
            }
        })
    }

    fn script(value: SemanticValue) -> String {
        match value {
            SemanticValue::Script(program) => run(&program),
            other => panic!("expected a script, got {other:?}"),
        }
    }

    #[test]
    fn literal_tags_and_defaults_need_no_script() {
        let inner = rule("yes", TagFormat::Sniff, vec![token("yeah"), tag("'true'")]);
        let root = rule(
            "main",
            TagFormat::Sniff,
            vec![token("oh"), ParseNode::Rule(inner)],
        );
        assert_eq!(
            interpret(&root, Mode::Voice),
            SemanticValue::String("true".into())
        );
        let plain = rule("main", TagFormat::Script, vec![token("1"), token("2")]);
        assert_eq!(
            interpret(&plain, Mode::Dtmf),
            SemanticValue::String("12".into())
        );
        let literals = rule("main", TagFormat::Literals, vec![token("x"), tag("sales")]);
        assert_eq!(
            interpret(&literals, Mode::Voice),
            SemanticValue::String("sales".into())
        );
    }

    #[test]
    fn sisr_out_properties_rules_and_meta() {
        let city = rule(
            "city",
            TagFormat::Script,
            vec![token("new"), token("york"), tag("out = 'NYC';")],
        );
        let root = rule(
            "main",
            TagFormat::Script,
            vec![
                token("to"),
                ParseNode::Rule(city),
                tag(
                    "out.dest = rules.city; out.said = meta.city.text; out.all = meta.current().text;",
                ),
                tag("out.last = rules.latest()"),
            ],
        );
        assert_eq!(
            script(interpret(&root, Mode::Voice)),
            r#"{"dest":"NYC","said":"new york","all":"to new york","last":"NYC"}"#
        );
    }

    #[test]
    fn untagged_rules_default_to_text_or_latest_reference() {
        let digit = rule("digit", TagFormat::Script, vec![token("7")]);
        let root = rule(
            "main",
            TagFormat::Script,
            vec![
                ParseNode::Rule(digit),
                tag("out.n = Number(rules.digit) + 1; out.k = typeof rules.digit"),
            ],
        );
        assert_eq!(
            script(interpret(&root, Mode::Dtmf)),
            r#"{"n":8,"k":"string"}"#
        );
        let wrapper = rule(
            "wrap",
            TagFormat::Script,
            vec![ParseNode::Rule(rule(
                "inner",
                TagFormat::Script,
                vec![token("x"), tag("out = {a: 1}")],
            ))],
        );
        assert_eq!(script(interpret(&wrapper, Mode::Voice)), r#"{"a":1}"#);
    }

    #[test]
    fn draft_style_dollar_and_vars() {
        let root = rule(
            "main",
            TagFormat::Sniff,
            vec![token("chicago"), tag("$ = \"alpha\"")],
        );
        assert_eq!(script(interpret(&root, Mode::Voice)), r#""alpha""#);
        let keys = rule(
            "main",
            TagFormat::Sniff,
            vec![
                token("chicago"),
                tag("var a='valA'; var b=new Object(); b.c='valC'; "),
            ],
        );
        assert_eq!(
            script(interpret(&keys, Mode::Voice)),
            r#"{"a":"valA","b":{"c":"valC"}}"#
        );
    }

    #[test]
    fn builtin_values_flow_into_scripts() {
        let root = rule(
            "main",
            TagFormat::Script,
            vec![
                ParseNode::Builtin {
                    uri: "builtin:dtmf/boolean".into(),
                    tokens: vec!["1".into()],
                    value: SemanticValue::Bool(true),
                },
                tag("out = {ok: rules.latest(), said: meta.latest().text}"),
            ],
        );
        assert_eq!(
            script(interpret(&root, Mode::Dtmf)),
            r#"{"ok":true,"said":"1"}"#
        );
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(js_string("a\"b\\c\n\u{2028}"), r#""a\"b\\c\n\u2028""#);
        assert!(is_literal("'x'", TagFormat::Sniff));
        assert!(is_literal("TAG-CONTENT-1", TagFormat::Sniff));
        assert!(!is_literal("out.x = 1", TagFormat::Sniff));
        assert!(!is_literal("'x'", TagFormat::Script));
    }
}
