//! Which names a request's variables may take in the `session` scope.
//!
//! A request's `vars` become `session.NAME`, readable unqualified as `NAME` too. The session
//! refuses a name here at start; the control plane checks the same rule when the request
//! arrives, so a call is never accepted only to fail in its application.

/// ECMAScript reserved words (ES5.1 §7.6.1 and the strict-mode future reserved words): a
/// variable by these names could not be read unqualified.
const RESERVED: &[&str] = &[
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "implements",
    "import",
    "in",
    "instanceof",
    "interface",
    "let",
    "new",
    "null",
    "package",
    "private",
    "protected",
    "public",
    "return",
    "static",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
];

/// Names the platform itself defines in the session scope, or that would corrupt the scope
/// object (`__proto__`).
const PLATFORM: &[&str] = &["session", "connection", "__proto__"];

/// Longest variable name, characters.
pub(crate) const MAX_NAME_LEN: usize = 64;

/// Why `name` cannot be a session variable, or `None` when it can.
pub fn session_var_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let identifier = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if !identifier {
        Some("must be an identifier ([A-Za-z_$][A-Za-z0-9_$]*)")
    } else if name.len() > MAX_NAME_LEN {
        Some("must be at most 64 characters")
    } else if PLATFORM.contains(&name) {
        Some("is defined by the platform (session, connection) and cannot be replaced")
    } else if RESERVED.contains(&name) {
        Some("is an ECMAScript reserved word")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_applications_can_read() {
        for ok in ["patient", "_x", "$amount", "a1", "lastresult", "Object"] {
            assert_eq!(session_var_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn names_refused_and_why() {
        for bad in [
            "session",
            "connection",
            "__proto__",
            "var",
            "if",
            "1a",
            "a-b",
            "",
            "é",
        ] {
            assert!(session_var_problem(bad).is_some(), "{bad}");
        }
        assert!(session_var_problem(&"a".repeat(65)).is_some());
    }
}
