//! The answerer's side of offer/answer (RFC 3264 §6), for a UAS such as the simulated
//! phones of `outdial bench callee`: read an offer, write the answer.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::offer::PTIME_MS;
use super::{MediaDirection, Negotiated, SdpError, negotiate};
use crate::api::Codec;

/// Reads an offer: where the offerer receives RTP, the first G.711 law in its (preference)
/// order and its `telephone-event/8000` payload type.
///
/// An offer carries the same lines an answer does, so this is [`negotiate`] read from the
/// other side; its errors name the "answer" but mean the body they are given.
pub fn read_offer(offer: &[u8]) -> Result<Negotiated, SdpError> {
    negotiate(offer)
}

/// Builds the answer to an offer read by [`read_offer`] (RFC 3264 §6.1): one `m=audio` at
/// `local`, with the chosen law, the offer's telephone-event payload type when it had one
/// (same number, §6.1), `a=ptime:20` and `a=sendrecv`.
pub fn build_answer(session_id: u64, local: SocketAddr, offer: &Negotiated) -> Vec<u8> {
    build_answer_directed(
        session_id,
        session_id,
        local,
        offer,
        MediaDirection::SendRecv,
    )
}

/// Like [`build_answer`], with the origin's session `version` (one more for every changed
/// answer in a dialog, RFC 3264 §8) and our `direction` (e.g. `recvonly` to an offer that
/// puts us on hold, RFC 3264 §8.4).
pub fn build_answer_directed(
    session_id: u64,
    version: u64,
    local: SocketAddr,
    offer: &Negotiated,
    direction: MediaDirection,
) -> Vec<u8> {
    let ip = local.ip();
    let address_type = match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let (pt, name) = match offer.codec {
        Codec::Pcmu => (0, "PCMU"),
        Codec::Pcma => (8, "PCMA"),
    };
    let port = local.port();
    let mut sdp = String::with_capacity(320);
    // invariant: writing to a String cannot fail.
    let _ = write!(
        sdp,
        "v=0\r\n\
         o=outdial {session_id} {version} IN {address_type} {ip}\r\n\
         s=outdial\r\n\
         c=IN {address_type} {ip}\r\n\
         t=0 0\r\n"
    );
    match offer.dtmf_payload_type {
        Some(event) => {
            let _ = write!(
                sdp,
                "m=audio {port} RTP/AVP {pt} {event}\r\n\
                 a=rtpmap:{pt} {name}/8000\r\n\
                 a=rtpmap:{event} telephone-event/8000\r\n\
                 a=fmtp:{event} 0-16\r\n"
            );
        }
        None => {
            let _ = write!(
                sdp,
                "m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\n"
            );
        }
    }
    let _ = write!(sdp, "a=ptime:{PTIME_MS}\r\na={}\r\n", direction.as_str());
    sdp.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::build_offer;
    use std::net::Ipv4Addr;

    #[test]
    fn our_offer_reads_back_and_its_answer_negotiates_the_same() {
        let offer = build_offer(1, 1, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40000);
        let read = read_offer(&offer).unwrap();
        assert_eq!(read.remote_rtp, "192.0.2.1:40000".parse().unwrap());
        assert_eq!(read.codec, Codec::Pcmu);
        assert_eq!(read.dtmf_payload_type, Some(101));
        let answer = build_answer(7, "192.0.2.9:30000".parse().unwrap(), &read);
        let back = negotiate(&answer).unwrap();
        assert_eq!(back.remote_rtp, "192.0.2.9:30000".parse().unwrap());
        assert_eq!(back.codec, Codec::Pcmu);
        assert_eq!(back.dtmf_payload_type, Some(101));
    }

    #[test]
    fn an_offer_without_events_gets_an_answer_without_them() {
        let offer = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 8\r\n";
        let read = read_offer(offer).unwrap();
        assert_eq!((read.codec, read.dtmf_payload_type), (Codec::Pcma, None));
        let answer = build_answer(1, "192.0.2.9:30000".parse().unwrap(), &read);
        let text = String::from_utf8(answer).unwrap();
        assert!(text.contains("m=audio 30000 RTP/AVP 8\r\n"), "{text}");
        assert!(!text.contains("telephone-event"), "{text}");
    }

    #[test]
    fn an_offer_without_g711_is_refused() {
        let offer = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 9\r\n";
        assert!(matches!(
            read_offer(offer),
            Err(SdpError::NoCommonCodec { .. })
        ));
    }
}
