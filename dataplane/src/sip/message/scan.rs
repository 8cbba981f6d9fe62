//! A cursor over header text that steps over linear white space (RFC 3261 §25.1: `LWS`,
//! `SWS`). Folded lines arrive here as CR LF followed by SP/HT, so CR and LF count as
//! white space too.

/// RFC 3261 §25.1 `token` characters.
pub(crate) fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// White space inside a header value, folding included.
pub(crate) fn is_ws(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// [`is_ws`] for `str::trim_matches`.
pub(crate) fn is_ws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Reads a header value left to right. Never panics: every slice is taken with `get`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos.min(self.text.len());
    }

    /// The text between two positions (empty when out of range).
    pub(crate) fn slice(&self, start: usize, end: usize) -> &'a str {
        self.text.get(start..end).unwrap_or("")
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// True once only white space is left.
    pub(crate) fn at_end(&self) -> bool {
        self.text
            .as_bytes()
            .get(self.pos..)
            .is_none_or(|rest| rest.iter().all(|&b| is_ws(b)))
    }

    pub(crate) fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// Consumes `byte` with optional white space on both sides (`SWS byte SWS`).
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        let saved = self.pos;
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            self.skip_ws();
            true
        } else {
            self.pos = saved;
            false
        }
    }

    /// Consumes ASCII bytes while `accept` holds and returns them.
    pub(crate) fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii() && accept(b)) {
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    pub(crate) fn token(&mut self) -> &'a str {
        self.take_while(is_token)
    }

    /// Consumes a `quoted-string` (the cursor must be on `"`) and returns what lies between
    /// the quotes, escapes left as they are. `None` when the closing quote is missing.
    pub(crate) fn quoted_string(&mut self) -> Option<&'a str> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.pos + 1;
        let bytes = self.text.as_bytes();
        let mut at = start;
        loop {
            match bytes.get(at)? {
                b'"' => {
                    self.pos = at + 1;
                    return Some(self.slice(start, at));
                }
                // quoted-pair: a backslash and one ASCII octet.
                b'\\' => match bytes.get(at + 1) {
                    Some(next) if next.is_ascii() => at += 2,
                    _ => return None,
                },
                _ => at += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eat_skips_folded_white_space() {
        let mut s = Scanner::new("  ;\r\n  tag = x");
        assert!(s.eat(b';'));
        assert_eq!(s.token(), "tag");
        assert!(s.eat(b'='));
        assert_eq!(s.token(), "x");
        assert!(s.at_end());
    }

    #[test]
    fn quoted_string_handles_escapes_and_reports_unterminated() {
        let mut s = Scanner::new(r#""J Rosenberg \\\"" <"#);
        assert_eq!(s.quoted_string(), Some(r#"J Rosenberg \\\""#));
        assert!(s.eat(b'<'));
        assert_eq!(Scanner::new("\"Mr. J. User <sip:x>").quoted_string(), None);
        assert_eq!(Scanner::new("\"ends in backslash\\").quoted_string(), None);
    }

    #[test]
    fn take_while_stops_at_non_ascii() {
        let mut s = Scanner::new("abé");
        assert_eq!(s.take_while(|_| true), "ab");
        assert!(!s.at_end());
    }
}
