//! What SIP messages travel on (RFC 3261 §18): the [`Transport`] names shared by the
//! endpoint and its owner, and [`StreamFramer`], which cuts a TCP (or TLS) byte stream into
//! messages by their Content-Length (§18.3) and picks out keep-alives (RFC 5626 §3.5.1).
//!
//! The framer is sans-IO: the owner of a connection feeds it the bytes it read
//! ([`StreamFramer::extend`]) and takes frames out ([`StreamFramer::next_frame`]). A
//! [`Frame::Message`] goes to `Endpoint::handle_message` with the connection's transport
//! and peer; a [`Frame::Ping`] is answered by writing [`KEEPALIVE_PONG`] on the same
//! connection. Any [`FramingError`] means the stream can no longer be trusted to be in step:
//! close the connection.

use std::ops::Range;

/// What a SIP message is carried on.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Transport {
    /// Datagrams; the transaction layer retransmits (RFC 3261 §17.1.1.2).
    Udp,
    /// A TCP connection; reliable, messages framed by Content-Length (§18.3).
    Tcp,
    /// TLS over TCP; framed like TCP.
    Tls,
}

impl Transport {
    /// The transport token of a Via header (RFC 3261 §20.42): `UDP`, `TCP` or `TLS`.
    pub fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }

    /// The value of a URI's `;transport=` parameter (RFC 3261 §19.1.1).
    pub fn uri_param(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }

    /// True for stream transports: no request or response retransmissions, and Timers D,
    /// I, J and K are zero (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Self::Udp)
    }

    /// Reads a `;transport=` value (case-insensitive); `None` for anything else (`sctp`,
    /// `ws`, garbage), which the endpoint cannot carry.
    pub fn from_uri_param(value: &str) -> Option<Self> {
        [Self::Udp, Self::Tcp, Self::Tls]
            .into_iter()
            .find(|t| value.eq_ignore_ascii_case(t.uri_param()))
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.via_token())
    }
}

/// What the owner writes back for a [`Frame::Ping`]: a single CRLF (RFC 5626 §3.5.1).
pub const KEEPALIVE_PONG: &[u8] = b"\r\n";

/// Why a stream cannot be framed; every one means: close the connection.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum FramingError {
    /// A message without Content-Length; on a stream it is mandatory (RFC 3261 §18.3).
    #[error("a message on a stream has no Content-Length (RFC 3261 §18.3); closing")]
    MissingContentLength,
    /// Two Content-Length headers (equal or not): the body's end is ambiguous.
    #[error("a message on a stream has more than one Content-Length; closing")]
    DuplicateContentLength,
    /// A Content-Length that is not a decimal number.
    #[error("a message on a stream has a Content-Length that is not a number; closing")]
    BadContentLength,
    /// The start line and headers grew past the limit without their blank line.
    #[error("a message's headers exceed the limit of {0} bytes; closing")]
    HeadersTooLong(usize),
    /// The headers and the announced body exceed the limit.
    #[error("a message with its body exceeds the limit of {0} bytes; closing")]
    MessageTooLong(usize),
    /// More unread bytes than the buffer may hold (the owner read past the frames it took).
    #[error("more than {0} bytes are buffered unread on a stream; closing")]
    BufferFull(usize),
}

/// One unit cut from a stream.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Frame {
    /// A complete message: start line, headers, blank line and exactly Content-Length
    /// body bytes; the range is into [`StreamFramer::buffer`] and stays valid until the
    /// next `extend` or `next_frame`.
    Message(Range<usize>),
    /// A keep-alive ping (CRLF CRLF between messages): answer with [`KEEPALIVE_PONG`].
    Ping,
}

/// Cuts SIP messages out of a byte stream (RFC 3261 §18.3): skips CRLF and whitespace
/// between messages, reports a double CRLF there as a keep-alive ping (a lone CRLF, a
/// pong, is skipped), and frames each message by its mandatory Content-Length (compact
/// form `l` too). Holds at most `2 * max_message_bytes` unread bytes; a message's head is
/// searched once however it is split, its Content-Length read once.
#[derive(Clone, Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out or skipped; dropped at the next call.
    consumed: usize,
    max_message_bytes: usize,
    /// A CRLF was skipped just before the unread bytes (a second one makes a ping).
    after_crlf: bool,
    /// Bytes of the message being received already searched for its blank line, so a
    /// message arriving a byte at a time is scanned once, not once per byte.
    scanned: usize,
    /// The length (head plus Content-Length) of the message being received, once its
    /// head is complete.
    pending: Option<usize>,
}

impl StreamFramer {
    /// A framer for messages of at most `max_message_bytes` (headers plus body).
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            consumed: 0,
            max_message_bytes,
            after_crlf: false,
            scanned: 0,
            pending: None,
        }
    }

    /// Appends bytes read from the connection. Refuses (appending nothing) when the unread
    /// bytes would exceed twice the message limit: take frames out first, or close.
    pub fn extend(&mut self, data: &[u8]) -> Result<(), FramingError> {
        self.compact();
        let cap = self.max_message_bytes.saturating_mul(2);
        if self.buf.len().saturating_add(data.len()) > cap {
            return Err(FramingError::BufferFull(cap));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The bytes a [`Frame::Message`] range indexes.
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes received and not yet handed out in a frame or skipped.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// The next frame, `None` when more bytes are needed, or an error (then close the
    /// connection; the framer stays in error). Work per call is bounded by the buffer.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FramingError>> {
        self.compact();
        // Skip what separates messages; a CRLF right after another is a ping.
        loop {
            let rest = &self.buf[self.consumed..];
            match rest {
                [b'\r', b'\n', ..] => {
                    self.consumed += 2;
                    if std::mem::take(&mut self.after_crlf) {
                        return Some(Ok(Frame::Ping));
                    }
                    self.after_crlf = true;
                }
                [b'\r'] => return None,
                [b' ' | b'\t' | b'\r' | b'\n', ..] => {
                    self.consumed += 1;
                    self.after_crlf = false;
                }
                [] => return None,
                _ => break,
            }
        }
        let start = self.consumed;
        let rest = &self.buf[start..];
        let total = match self.pending {
            Some(total) => total,
            None => {
                let limit = rest.len().min(self.max_message_bytes);
                // The blank line may straddle what was already searched.
                let from = self.scanned.saturating_sub(3);
                let Some(head_len) = find_blank_line(&rest[from..limit]).map(|end| from + end)
                else {
                    self.scanned = limit;
                    if rest.len() >= self.max_message_bytes {
                        return Some(Err(FramingError::HeadersTooLong(self.max_message_bytes)));
                    }
                    return None;
                };
                let body_len = match content_length(&rest[..head_len]) {
                    Ok(length) => length,
                    Err(error) => return Some(Err(error)),
                };
                let total = head_len.saturating_add(body_len);
                if total > self.max_message_bytes {
                    return Some(Err(FramingError::MessageTooLong(self.max_message_bytes)));
                }
                self.pending = Some(total);
                total
            }
        };
        if rest.len() < total {
            return None;
        }
        self.consumed = start + total;
        self.after_crlf = false;
        self.scanned = 0;
        self.pending = None;
        Some(Ok(Frame::Message(start..start + total)))
    }

    /// Drops bytes already handed out, so ranges index from the front again.
    fn compact(&mut self) {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
    }
}

/// Length of the head (start line, headers and the blank line) in `data`, if it ends there.
fn find_blank_line(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The one Content-Length (or `l`) of a head, RFC 3261 §18.3 and §20.14.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found = None;
    // Header lines after the start line; folded continuation lines start with SP/HTAB.
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line.first().is_some_and(|b| matches!(b, b' ' | b'\t')) {
            continue;
        }
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        if found.is_some() {
            return Err(FramingError::DuplicateContentLength);
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::BadContentLength);
        }
        let length = value
            .iter()
            .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
        found = Some(length);
    }
    found.ok_or(FramingError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:a@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\nv=0\r\n";
    const BYE: &[u8] = b"BYE sip:a@192.0.2.4 SIP/2.0\r\nl: 0\r\nCall-ID: x\r\n\r\n";

    /// Feeds `chunks` one at a time, draining frames after each; returns what came out.
    fn frames(cap: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, FramingError>> {
        let mut framer = StreamFramer::new(cap);
        let mut out = Vec::new();
        for chunk in chunks {
            if let Err(e) = framer.extend(chunk) {
                out.push(Err(e));
                return out;
            }
            while let Some(frame) = framer.next_frame() {
                match frame {
                    Ok(Frame::Message(range)) => out.push(Ok(framer.buffer()[range].to_vec())),
                    Ok(Frame::Ping) => out.push(Ok(b"PING".to_vec())),
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn transport_names() {
        assert_eq!(Transport::Tcp.via_token(), "TCP");
        assert_eq!(Transport::Tls.uri_param(), "tls");
        assert!(!Transport::Udp.is_reliable() && Transport::Tcp.is_reliable());
        assert_eq!(Transport::from_uri_param("TCP"), Some(Transport::Tcp));
        assert_eq!(Transport::from_uri_param("udp"), Some(Transport::Udp));
        assert_eq!(Transport::from_uri_param("sctp"), None);
    }

    #[test]
    fn a_message_split_at_every_byte_boundary_comes_out_whole_once() {
        let mut stream = INVITE.to_vec();
        stream.extend_from_slice(BYE);
        for cut in 0..=stream.len() {
            let got = frames(8192, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(got, [Ok(INVITE.to_vec()), Ok(BYE.to_vec())], "cut at {cut}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            frames(8192, &bytes),
            [Ok(INVITE.to_vec()), Ok(BYE.to_vec())]
        );
    }

    #[test]
    fn pipelined_messages_in_one_chunk_and_whitespace_between() {
        let mut stream = b"\r\n \t".to_vec();
        stream.extend_from_slice(INVITE);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(BYE);
        stream.extend_from_slice(INVITE);
        let got = frames(8192, &[&stream]);
        assert_eq!(
            got,
            [Ok(INVITE.to_vec()), Ok(BYE.to_vec()), Ok(INVITE.to_vec())]
        );
    }

    #[test]
    fn double_crlf_is_a_ping_and_a_lone_crlf_a_pong() {
        assert_eq!(frames(8192, &[b"\r\n\r\n"]), [Ok(b"PING".to_vec())]);
        assert_eq!(frames(8192, &[b"\r\n", b"\r\n"]), [Ok(b"PING".to_vec())]);
        assert_eq!(
            frames(8192, &[b"\r", b"\n\r", b"\n"]),
            [Ok(b"PING".to_vec())]
        );
        assert_eq!(frames(8192, &[b"\r\n"]), []);
        let mut stream = b"\r\n".to_vec();
        stream.extend_from_slice(BYE);
        stream.extend_from_slice(b"\r\n\r\n\r\n\r\n");
        assert_eq!(
            frames(8192, &[&stream]),
            [Ok(BYE.to_vec()), Ok(b"PING".to_vec()), Ok(b"PING".to_vec())]
        );
        assert_eq!(KEEPALIVE_PONG, b"\r\n");
    }

    #[test]
    fn each_error_closes() {
        let cases: [(&[u8], FramingError); 6] = [
            (
                b"BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n",
                FramingError::MissingContentLength,
            ),
            (
                b"BYE sip:a@b SIP/2.0\r\nContent-Length: 0\r\nl: 0\r\n\r\n",
                FramingError::DuplicateContentLength,
            ),
            (
                b"BYE sip:a@b SIP/2.0\r\nContent-Length: 0\r\ncontent-length: 4\r\n\r\n",
                FramingError::DuplicateContentLength,
            ),
            (
                b"BYE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
                FramingError::BadContentLength,
            ),
            (
                b"BYE sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n",
                FramingError::BadContentLength,
            ),
            (
                b"BYE sip:a@b SIP/2.0\r\nContent-Length: 200\r\n\r\n",
                FramingError::MessageTooLong(128),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(frames(128, &[input]), [Err(want)], "{input:?}");
        }
        let endless = [b'a'; 200];
        assert_eq!(
            frames(128, &[&endless[..100], &endless[100..128]]),
            [Err(FramingError::HeadersTooLong(128))]
        );
        assert_eq!(
            frames(128, &[&[b'a'; 300]]),
            [Err(FramingError::BufferFull(256))]
        );
    }

    #[test]
    fn a_head_arriving_a_byte_at_a_time_is_searched_once() {
        let mut framer = StreamFramer::new(8192);
        for (i, byte) in INVITE.iter().enumerate() {
            framer.extend(&[*byte]).unwrap();
            match framer.next_frame() {
                None => {
                    let head_done = framer.pending.is_some();
                    assert!(
                        head_done || framer.scanned == i + 1,
                        "searched up to byte {i}"
                    );
                }
                Some(frame) => {
                    assert_eq!(i + 1, INVITE.len());
                    assert_eq!(frame, Ok(Frame::Message(0..INVITE.len())));
                }
            }
        }
        assert_eq!(
            (framer.scanned, framer.pending, framer.buffered()),
            (0, None, 0)
        );
    }

    #[test]
    fn a_body_is_taken_by_length_even_when_it_looks_like_a_message() {
        let message = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\n\r\n\r\n";
        assert_eq!(frames(8192, &[message]), [Ok(message.to_vec())]);
    }
}
