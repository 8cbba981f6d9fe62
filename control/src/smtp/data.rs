//! The `DATA` reader: finds the end of a message, removes dot-stuffing and refuses every line
//! ending that is not CRLF.
//!
//! RFC 5321 §4.1.1.4: the only end of data is `<CRLF>.<CRLF>`; §2.3.8: CR and LF only occur
//! together. A server that takes `<LF>.<LF>` (or any of the other false endings of "SMTP
//! smuggling", CVE-2023-51764) as the end lets a sender hide a second message in the first.
//! This reader never ends a message anywhere else, and it remembers every bare CR, bare LF and
//! NUL it saw so the session can refuse the whole message. It is fed any split of the input
//! and gives the same result for every split (tested at every offset).

/// How the bytes of one message ended, once [`DataReader::feed`] found `<CRLF>.<CRLF>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataEnd {
    /// A clean message: CRLF line endings, dot-stuffing removed, within the size limit.
    Message(Vec<u8>),
    /// A CR or LF that was not part of a CRLF pair: the framing cannot be trusted.
    BareLineEnding,
    /// The message was larger than the limit; the rest was read and dropped.
    TooBig,
    /// The message carried a NUL octet (RFC 5322 §2.3 and RFC 6152 forbid it).
    Nul,
}

/// Where the reader is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// At the start of a line (also right after `354`).
    LineStart,
    /// After a `.` at the start of a line.
    Dot,
    /// After `.` and CR at the start of a line: an LF now ends the message.
    DotCr,
    /// Inside a line.
    Text,
    /// After a CR inside a line.
    TextCr,
}

/// Reads the body of one `DATA` command, in any number of pieces.
#[derive(Debug)]
pub struct DataReader {
    at: At,
    message: Vec<u8>,
    limit: usize,
    too_big: bool,
    bare: bool,
    nul: bool,
}

impl DataReader {
    /// A reader for a message of at most `limit` bytes (after dot-stuffing is removed).
    pub fn new(limit: usize) -> Self {
        Self {
            at: At::LineStart,
            message: Vec::new(),
            limit,
            too_big: false,
            bare: false,
            nul: false,
        }
    }

    /// Bytes of the message kept so far.
    pub fn len(&self) -> usize {
        self.message.len()
    }

    /// Whether nothing of the message has been kept yet.
    pub fn is_empty(&self) -> bool {
        self.message.is_empty()
    }

    /// Reads from `input` until the end of the message. Returns how many bytes were used and,
    /// when the end marker was among them, how the message ended; bytes after the marker are
    /// left for the command reader.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<DataEnd>) {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            match self.at {
                At::LineStart | At::Text => {
                    if self.at == At::LineStart && byte == b'.' {
                        self.at = At::Dot;
                        i += 1;
                        continue;
                    }
                    // The run of plain text up to the next CR, LF or NUL goes in at once.
                    let run =
                        memchr::memchr3(b'\r', b'\n', 0, &input[i..]).unwrap_or(input.len() - i);
                    if run > 0 {
                        self.keep(&input[i..i + run]);
                        i += run;
                        self.at = At::Text;
                        continue;
                    }
                    i += 1;
                    self.special(byte);
                }
                At::Dot => {
                    i += 1;
                    match byte {
                        b'\r' => self.at = At::DotCr,
                        // `.` then LF: a bare LF (`\n.\n` is the classic false ending).
                        b'\n' => {
                            self.bare = true;
                            self.at = At::Text;
                        }
                        // A stuffed line: the leading dot is dropped (RFC 5321 §4.5.2).
                        _ => {
                            self.at = At::Text;
                            if byte == 0 {
                                self.nul = true;
                            }
                            self.keep(&[byte]);
                        }
                    }
                }
                At::DotCr => {
                    i += 1;
                    if byte == b'\n' {
                        return (i, Some(self.finish()));
                    }
                    // `.` CR then anything but LF: a bare CR.
                    self.bare = true;
                    self.at = At::Text;
                    self.special_or_text(byte);
                }
                At::TextCr => {
                    i += 1;
                    if byte == b'\n' {
                        self.keep(b"\r\n");
                        self.at = At::LineStart;
                    } else {
                        self.bare = true;
                        self.at = At::Text;
                        self.special_or_text(byte);
                    }
                }
            }
        }
        (i, None)
    }

    /// A CR, LF or NUL inside a line.
    fn special(&mut self, byte: u8) {
        match byte {
            b'\r' => self.at = At::TextCr,
            // A bare LF does not start a line: only CRLF does, so only `<CRLF>.<CRLF>` ends.
            b'\n' => {
                self.bare = true;
                self.at = At::Text;
            }
            _ => {
                self.nul = true;
                self.at = At::Text;
                self.keep(&[byte]);
            }
        }
    }

    fn special_or_text(&mut self, byte: u8) {
        if matches!(byte, b'\r' | b'\n' | 0) {
            self.special(byte);
        } else {
            self.keep(&[byte]);
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.too_big {
            return;
        }
        if self.message.len() + bytes.len() > self.limit {
            self.too_big = true;
            self.message = Vec::new();
            return;
        }
        self.message.extend_from_slice(bytes);
    }

    fn finish(&mut self) -> DataEnd {
        if self.bare {
            DataEnd::BareLineEnding
        } else if self.too_big {
            DataEnd::TooBig
        } else if self.nul {
            DataEnd::Nul
        } else {
            DataEnd::Message(std::mem::take(&mut self.message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` whole, and split at every offset: all give the same end and length used.
    fn read(input: &[u8], limit: usize) -> (usize, Option<DataEnd>) {
        let mut whole = DataReader::new(limit);
        let expected = whole.feed(input);
        for split in 0..=input.len() {
            let mut reader = DataReader::new(limit);
            let (used, end) = reader.feed(&input[..split]);
            let got = if end.is_some() {
                (used, end)
            } else {
                let (more, end) = reader.feed(&input[split..]);
                (used + more, end)
            };
            assert_eq!(got, expected, "split at {split} of {input:?}");
        }
        expected
    }

    #[test]
    fn a_plain_message_ends_at_crlf_dot_crlf_and_leaves_the_rest() {
        let input = b"Subject: a\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        let (used, end) = read(input, 1000);
        assert_eq!(used, input.len() - b"QUIT\r\n".len());
        assert_eq!(
            end,
            Some(DataEnd::Message(b"Subject: a\r\n\r\nbody\r\n".to_vec()))
        );
    }

    #[test]
    fn an_empty_message_is_just_the_marker() {
        assert_eq!(read(b".\r\n", 10), (3, Some(DataEnd::Message(Vec::new()))));
    }

    #[test]
    fn leading_dots_are_unstuffed() {
        let (_, end) = read(b".a\r\n..\r\n...b\r\nc.d\r\n.\r\n", 1000);
        assert_eq!(
            end,
            Some(DataEnd::Message(b"a\r\n.\r\n..b\r\nc.d\r\n".to_vec()))
        );
    }

    #[test]
    fn bare_line_endings_never_end_the_message_and_poison_it() {
        for ending in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\r.\n",
            b"\n.\r",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\r\n.\r",
        ] {
            let mut input = b"body".to_vec();
            input.extend_from_slice(ending);
            input.extend_from_slice(b"MAIL FROM:<x@y>\r\nsmuggled\r\n.\r\n");
            let (used, end) = read(&input, 1000);
            assert_eq!(used, input.len(), "{ending:?}");
            assert_eq!(end, Some(DataEnd::BareLineEnding), "{ending:?}");
        }
    }

    #[test]
    fn a_nul_is_refused_but_framing_is_kept() {
        let input = b"a\r\n\0.\r\nMAIL FROM:<x@y>\r\n.\r\n";
        assert_eq!(read(input, 1000), (input.len(), Some(DataEnd::Nul)));
        let input = b"a\r\n.\0\r\n.\r\n";
        assert_eq!(read(input, 1000), (input.len(), Some(DataEnd::Nul)));
    }

    #[test]
    fn over_the_limit_is_read_to_the_end_and_refused() {
        let input = b"0123456789\r\n0123456789\r\n.\r\nNOOP\r\n";
        assert_eq!(
            read(input, 24),
            (
                input.len() - 6,
                Some(DataEnd::Message(input[..24].to_vec()))
            )
        );
        assert_eq!(read(input, 23), (input.len() - 6, Some(DataEnd::TooBig)));
    }

    #[test]
    fn a_bare_line_ending_after_the_limit_still_wins() {
        let input = b"0123456789\r\n.\nMORE\r\n.\r\n";
        assert_eq!(read(input, 4).1, Some(DataEnd::BareLineEnding));
    }

    #[test]
    fn unfinished_input_asks_for_more() {
        let mut reader = DataReader::new(100);
        assert_eq!(reader.feed(b"abc\r\n.\r"), (7, None));
        assert_eq!(reader.len(), 5);
        assert_eq!(
            reader.feed(b"\n"),
            (1, Some(DataEnd::Message(b"abc\r\n".to_vec())))
        );
    }
}
