//! Our SDP offer (RFC 3264 §5): one audio stream, G.711 either law, RFC 4733 events.

use std::fmt::Write as _;
use std::net::IpAddr;

/// The payload type we offer for `telephone-event/8000` (RFC 4733 §7.1.1; dynamic range).
pub const TELEPHONE_EVENT_PAYLOAD_TYPE: u8 = 101;

/// The packetisation time we offer and send, in milliseconds (RFC 4566 §6 `a=ptime`).
pub const PTIME_MS: u32 = 20;

/// Builds our offer: one `m=audio` with PCMU (0), PCMA (8), telephone-event/8000 (101,
/// `fmtp 0-16`), `a=ptime:20`, `a=sendrecv`, addressed to `local_ip`:`rtp_port`.
///
/// `session_id` and `session_version` fill the `o=` line (RFC 4566 §5.2); a re-offer in
/// the same session keeps the id and increments the version (RFC 3264 §8).
pub fn build_offer(
    session_id: u64,
    session_version: u64,
    local_ip: IpAddr,
    rtp_port: u16,
) -> Vec<u8> {
    let address_type = match local_ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let pt = TELEPHONE_EVENT_PAYLOAD_TYPE;
    let mut sdp = String::with_capacity(320);
    // invariant: writing to a String cannot fail.
    write!(
        sdp,
        "v=0\r\n\
         o=outdial {session_id} {session_version} IN {address_type} {local_ip}\r\n\
         s=outdial\r\n\
         c=IN {address_type} {local_ip}\r\n\
         t=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 8 {pt}\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:{pt} telephone-event/8000\r\n\
         a=fmtp:{pt} 0-16\r\n\
         a=ptime:{PTIME_MS}\r\n\
         a=sendrecv\r\n"
    )
    .expect("invariant: writing to a String cannot fail");
    sdp.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn offer_lines_are_crlf_terminated_and_in_rfc_4566_order() {
        let offer = build_offer(7, 9, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 40000);
        let text = std::str::from_utf8(&offer).unwrap();
        assert!(text.ends_with("\r\n"));
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "bare LF in {text:?}"
        );
        let kinds: String = text.lines().map(|l| l.as_bytes()[0] as char).collect();
        assert_eq!(kinds, "vosctmaaaaaa");
        assert!(text.contains("o=outdial 7 9 IN IP4 192.0.2.7\r\n"));
        assert!(text.contains("c=IN IP4 192.0.2.7\r\n"));
        assert!(text.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"));
        assert!(text.contains("a=fmtp:101 0-16\r\n"));
    }

    #[test]
    fn ipv6_offer_uses_ip6_address_type() {
        let offer = build_offer(1, 1, IpAddr::V6(Ipv6Addr::LOCALHOST), 5004);
        let text = std::str::from_utf8(&offer).unwrap();
        assert!(text.contains("c=IN IP6 ::1\r\n"));
        assert!(text.contains("o=outdial 1 1 IN IP6 ::1\r\n"));
    }
}
