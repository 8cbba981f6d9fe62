//! The `o=` line (RFC 4566 §5.2): what tells two SDP bodies of one session apart. RFC 3264
//! §8 has a changed session description carry a higher `<sess-version>`, so a body whose
//! origin is the same as an earlier one's describes the same session (used for the 2xx after
//! early media).

/// The origin of an SDP body: username, session id, version, network type, address type
/// and address, as written (`None` without one, or when the body is not text).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Origin(String);

/// The first `o=` line of `sdp`, normalised to single spaces.
pub fn origin(sdp: &[u8]) -> Option<Origin> {
    let text = std::str::from_utf8(sdp).ok()?;
    let line = text
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("o="))?;
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    (fields.len() == 6).then(|| Origin(fields.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_origin_is_the_same_session_and_a_new_version_is_not() {
        let early = origin(b"v=0\r\no=- 42 1 IN IP4 192.0.2.4\r\ns=-\r\n");
        assert!(early.is_some());
        assert_eq!(
            early,
            origin(b"v=0\no=-  42 1 IN IP4 192.0.2.4\nc=IN IP4 192.0.2.9\n")
        );
        assert_ne!(early, origin(b"v=0\r\no=- 42 2 IN IP4 192.0.2.4\r\n"));
        assert_ne!(early, origin(b"v=0\r\no=- 43 1 IN IP4 192.0.2.4\r\n"));
        assert_eq!(origin(b"v=0\r\ns=-\r\n"), None);
        assert_eq!(origin(b"v=0\r\no=- 42 1\r\n"), None, "too few fields");
        assert_eq!(origin(b""), None);
        assert_eq!(origin(&[0xff, 0xfe]), None);
    }
}
