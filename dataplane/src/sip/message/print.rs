//! Printing requests and responses into a caller's buffer (RFC 3261 §7).

use std::fmt::{self, Write as _};

/// Appends one message to a buffer: start line, headers, then [`Writer::finish`] adds
/// Content-Type, Content-Length and the body.
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
}

impl<'b> Writer<'b> {
    /// Starts a request: `METHOD uri SIP/2.0`.
    pub fn request(buf: &'b mut Vec<u8>, method: &str, uri: &str) -> Self {
        let mut writer = Self { buf };
        writer.text(method);
        writer.buf.push(b' ');
        writer.text(uri);
        writer.buf.extend_from_slice(b" SIP/2.0\r\n");
        writer
    }

    /// Starts a response: `SIP/2.0 status reason`.
    pub fn response(buf: &'b mut Vec<u8>, status: u16, reason: &str) -> Self {
        let mut writer = Self { buf };
        writer.fmt(format_args!("SIP/2.0 {status} "));
        writer.text(reason);
        writer.buf.extend_from_slice(b"\r\n");
        writer
    }

    /// Appends `name: value`. Line breaks in `value` (folding, or injected) become spaces.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.text(name);
        self.buf.extend_from_slice(b": ");
        self.text(value);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Appends `name: value` with a formatted value.
    pub fn header_fmt(&mut self, name: &str, value: fmt::Arguments<'_>) -> &mut Self {
        self.text(name);
        self.buf.extend_from_slice(b": ");
        self.fmt(value);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Ends the headers: Content-Type (when there is a body), Content-Length, the empty
    /// line and the body.
    pub fn finish(mut self, content_type: Option<&str>, body: &[u8]) {
        if let (Some(content_type), false) = (content_type, body.is_empty()) {
            self.header("Content-Type", content_type);
        }
        self.header_fmt("Content-Length", format_args!("{}", body.len()));
        self.buf.extend_from_slice(b"\r\n");
        self.buf.extend_from_slice(body);
    }

    fn text(&mut self, text: &str) {
        self.buf.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    }

    fn fmt(&mut self, args: fmt::Arguments<'_>) {
        let mut sink = Sink(self.buf);
        // invariant: writing into a Vec never fails.
        let _ = sink.write_fmt(args);
    }
}

/// Writes formatted text into a `Vec<u8>`, line breaks replaced by spaces.
struct Sink<'v>(&'v mut Vec<u8>);

impl fmt::Write for Sink<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        Ok(())
    }
}

/// The RFC 3261 §21 reason phrase for the statuses a user agent sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_request_with_body() {
        let mut buf = b"old".to_vec();
        buf.clear();
        let mut writer = Writer::request(&mut buf, "INVITE", "sip:bob@192.0.2.4");
        writer
            .header("Max-Forwards", "70")
            .header_fmt("CSeq", format_args!("{} INVITE", 1));
        writer.finish(Some("application/sdp"), b"v=0\r\n");
        assert_eq!(
            buf,
            b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\nMax-Forwards: 70\r\nCSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"
        );
    }

    #[test]
    fn line_breaks_cannot_inject_headers() {
        let mut buf = Vec::new();
        let mut writer = Writer::response(&mut buf, 200, "OK\r\nX: evil");
        writer.header("To", "<sip:a@b>\r\n ;tag=1\r\nInjected: yes");
        writer.finish(None, b"");
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.matches("\r\n").count(), 4, "{text}");
        assert!(text.starts_with("SIP/2.0 200 OK  X: evil\r\n"));
    }
}
