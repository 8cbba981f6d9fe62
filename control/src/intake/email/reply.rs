//! The SMTP replies the intake answers: each names the rule in its text, after an RFC 3463
//! enhanced status code that says what kind of refusal it is.

use crate::intake::FieldError;
use crate::smtp::Reply;

/// Longest reply text, bytes: well inside RFC 5321's 512-byte reply line.
const MAX_TEXT: usize = 400;

/// One line of text, at most [`MAX_TEXT`] bytes, no control characters.
pub(super) fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len().min(MAX_TEXT));
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if line.len() + c.len_utf8() > MAX_TEXT - 3 {
            line.push_str("...");
            break;
        }
        line.push(c);
    }
    line
}

/// `code enhanced rule: text`.
pub(super) fn refusal(code: u16, enhanced: (u8, u16, u16), rule: &str, text: &str) -> Reply {
    Reply::new(code, enhanced, one_line(&format!("{rule}: {text}")))
}

/// `554 5.6.0`: the content of the message breaks a rule of the request format.
pub(super) fn content(rule: &str, text: &str) -> Reply {
    refusal(554, (5, 6, 0), rule, text)
}

/// A refused request field, in the words of the e-mail format (`Destination`, not `to`).
pub(super) fn field(error: &FieldError) -> Reply {
    let key = super::fields::email_key(&error.field);
    let text = if key.is_empty() {
        error.problem.clone()
    } else {
        format!("{key} {}", error.problem)
    };
    content(error.rule.as_str(), &text)
}

/// `451 4.3.0`: the store cannot take the message now; the client should try again later.
pub(super) fn unavailable(problem: &str) -> Reply {
    refusal(
        451,
        (4, 3, 0),
        "store",
        &format!("the request could not be stored ({problem}); try again later"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_one_bounded_line() {
        let reply = content("range", &format!("a\r\nb{}", "x".repeat(1000)));
        assert_eq!((reply.code, reply.enhanced), (554, (5, 6, 0)));
        assert!(reply.text.starts_with("range: a  bx"), "{}", reply.text);
        assert!(reply.text.len() <= MAX_TEXT && reply.text.ends_with("..."));
        assert!(!reply.text.contains(['\r', '\n']));
    }
}
