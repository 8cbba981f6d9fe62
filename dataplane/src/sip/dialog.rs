//! UAC dialog state (RFC 3261 §12): created from a 2xx to our INVITE (§12.1.2), used to
//! build in-dialog requests (§12.2.1.1) and to recognise the peer's (§12.2.2).

use std::net::SocketAddr;

use crate::sip::message::print::Writer;
use crate::sip::message::{Message, Uri};
use crate::sip::transport::Transport;

/// Why a 2xx could not establish a dialog.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum DialogError {
    /// The 2xx has no To tag (RFC 3261 §12.1.1 requires one).
    #[error("2xx has no To tag; the UAS must add one (RFC 3261 §12.1.1)")]
    MissingToTag,
    /// The 2xx has no usable Contact.
    #[error("2xx has no Contact URI; the UAS must send one (RFC 3261 §12.1.1)")]
    MissingContact,
}

/// What we sent in the INVITE that the dialog keeps (RFC 3261 §12.1.2).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LocalParty<'a> {
    /// Call-ID.
    pub call_id: &'a str,
    /// Our From tag.
    pub local_tag: &'a str,
    /// Our From URI.
    pub local_uri: &'a str,
    /// The To URI (the callee's).
    pub remote_uri: &'a str,
    /// CSeq number of the INVITE.
    pub invite_cseq: u32,
}

/// An established UAC dialog.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Dialog {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The callee's To tag.
    pub remote_tag: String,
    /// Our URI.
    pub local_uri: String,
    /// The callee's URI.
    pub remote_uri: String,
    /// Contact URI of the 2xx: where in-dialog requests are addressed.
    pub remote_target: String,
    /// Record-Route URIs of the 2xx, reversed (RFC 3261 §12.1.2).
    pub route_set: Vec<String>,
    /// Last CSeq number we used.
    pub local_cseq: u32,
    /// Highest CSeq number seen from the peer.
    pub remote_cseq: Option<u32>,
    /// What the dialog was set up on (the INVITE's transport); in-dialog requests use it
    /// unless the next hop's URI names another ([`Dialog::next_hop_transport`]).
    pub transport: Transport,
    invite_cseq: u32,
}

impl Dialog {
    /// Builds the dialog from a 2xx to our INVITE (RFC 3261 §12.1.2).
    pub fn from_2xx(local: &LocalParty<'_>, response: &Message<'_>) -> Result<Self, DialogError> {
        let remote_tag = response
            .to()
            .and_then(|to| to.tag())
            .ok_or(DialogError::MissingToTag)?;
        let remote_target = response
            .contact()
            .map(|c| c.uri.as_str())
            .ok_or(DialogError::MissingContact)?;
        let mut route_set: Vec<String> = response
            .record_route()
            .iter()
            .map(|r| r.uri.as_str().to_owned())
            .collect();
        route_set.reverse();
        Ok(Self::new(local, remote_tag, remote_target, route_set))
    }

    /// A dialog from its parts (for a 2xx that lacks a Contact, the caller supplies the
    /// target it dialed).
    pub fn new(
        local: &LocalParty<'_>,
        remote_tag: &str,
        remote_target: &str,
        route_set: Vec<String>,
    ) -> Self {
        Self {
            call_id: local.call_id.to_owned(),
            local_tag: local.local_tag.to_owned(),
            remote_tag: remote_tag.to_owned(),
            local_uri: local.local_uri.to_owned(),
            remote_uri: local.remote_uri.to_owned(),
            remote_target: remote_target.to_owned(),
            route_set,
            local_cseq: local.invite_cseq,
            remote_cseq: None,
            transport: Transport::Udp,
            invite_cseq: local.invite_cseq,
        }
    }

    /// Whether an incoming request belongs here: same Call-ID, its To tag ours and its From
    /// tag theirs (RFC 3261 §12.2.2).
    pub fn matches(&self, request: &Message<'_>) -> bool {
        request.call_id() == Some(self.call_id.as_str())
            && request.to().and_then(|to| to.tag()) == Some(self.local_tag.as_str())
            && request.from().and_then(|from| from.tag()) == Some(self.remote_tag.as_str())
    }

    /// Records an in-dialog request's CSeq; false if it is lower than one already seen
    /// (RFC 3261 §12.2.2: answer 500).
    pub fn accept_remote_cseq(&mut self, cseq: u32) -> bool {
        if self.remote_cseq.is_some_and(|seen| cseq < seen) {
            return false;
        }
        self.remote_cseq = Some(cseq);
        true
    }

    /// Where in-dialog requests go: the first route, else the remote target, when its host
    /// is an IP literal. `None` means the caller should reuse the INVITE's destination.
    pub fn next_hop(&self) -> Option<SocketAddr> {
        let hop = self.route_set.first().unwrap_or(&self.remote_target);
        Uri::parse(hop).ok()?.sip()?.socket_addr()
    }

    /// What in-dialog requests travel on: the `;transport=` of the first route (or of the
    /// remote target without routes), else [`Dialog::transport`]. The flag is true when
    /// the URI named it (then a large request is not moved off UDP, RFC 3261 §18.1.1).
    pub fn next_hop_transport(&self) -> (Transport, bool) {
        let hop = self.route_set.first().unwrap_or(&self.remote_target);
        let named = Uri::parse(hop)
            .ok()
            .and_then(|uri| uri.sip().and_then(crate::sip::target::transport_param));
        match named {
            Some(transport) => (transport, true),
            None => (self.transport, false),
        }
    }

    /// The Request-URI of in-dialog requests: the remote target, or the first route when
    /// it is a strict router (RFC 3261 §12.2.1.1).
    pub fn request_uri(&self) -> &str {
        match self.route_set.first() {
            Some(first) if self.is_strict() => first,
            _ => &self.remote_target,
        }
    }

    fn is_strict(&self) -> bool {
        self.route_set.first().is_some_and(|first| {
            Uri::parse(first)
                .ok()
                .and_then(|uri| uri.sip().map(|sip| sip.param("lr").is_none()))
                .unwrap_or(false)
        })
    }

    /// The ACK for the 2xx: CSeq number of the INVITE (RFC 3261 §13.2.2.4), a new branch.
    pub fn write_ack(&self, buf: &mut Vec<u8>, sent_by: SocketAddr, branch: &str) {
        self.write_ack_cseq(buf, sent_by, branch, self.invite_cseq);
    }

    /// The ACK for the 2xx to a re-INVITE of CSeq number `cseq`.
    pub fn write_ack_cseq(&self, buf: &mut Vec<u8>, sent_by: SocketAddr, branch: &str, cseq: u32) {
        self.write(buf, "ACK", cseq, sent_by, branch, &[], None);
    }

    /// A new in-dialog request (BYE): next local CSeq (RFC 3261 §12.2.1.1).
    pub fn write_request(
        &mut self,
        buf: &mut Vec<u8>,
        method: &str,
        sent_by: SocketAddr,
        branch: &str,
        user_agent: &str,
    ) {
        self.write_request_with(buf, method, sent_by, branch, user_agent, &[]);
    }

    /// Like [`Dialog::write_request`], with `extra` headers after CSeq (e.g. REFER's
    /// Refer-To, Referred-By and Contact, RFC 3515 §2.4.1).
    pub fn write_request_with(
        &mut self,
        buf: &mut Vec<u8>,
        method: &str,
        sent_by: SocketAddr,
        branch: &str,
        user_agent: &str,
        extra: &[(&str, &str)],
    ) {
        self.write_request_with_body(buf, method, sent_by, branch, user_agent, extra, None);
    }

    /// Like [`Dialog::write_request_with`], with a body and its media type (a re-INVITE's
    /// SDP offer).
    #[allow(clippy::too_many_arguments)]
    pub fn write_request_with_body(
        &mut self,
        buf: &mut Vec<u8>,
        method: &str,
        sent_by: SocketAddr,
        branch: &str,
        user_agent: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) {
        self.local_cseq = self.local_cseq.saturating_add(1);
        let mut headers: smallvec::SmallVec<[(&str, &str); 4]> = extra.iter().copied().collect();
        headers.push(("User-Agent", user_agent));
        self.write(
            buf,
            method,
            self.local_cseq,
            sent_by,
            branch,
            &headers,
            body,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        buf: &mut Vec<u8>,
        method: &str,
        cseq: u32,
        sent_by: SocketAddr,
        branch: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) {
        // RFC 3261 §12.2.1.1: loose routing when the first route has `lr`, strict otherwise.
        let strict = self.is_strict();
        let (request_uri, routes): (&str, &[String]) = match self.route_set.split_first() {
            Some((first, rest)) if strict => (first, rest),
            _ => (&self.remote_target, &self.route_set),
        };
        buf.clear();
        let mut writer = Writer::request(buf, method, request_uri);
        writer
            .header_fmt(
                "Via",
                format_args!(
                    "SIP/2.0/{} {sent_by};branch={branch};rport",
                    self.next_hop_transport().0.via_token()
                ),
            )
            .header("Max-Forwards", "70");
        for route in routes {
            writer.header_fmt("Route", format_args!("<{route}>"));
        }
        if strict {
            writer.header_fmt("Route", format_args!("<{}>", self.remote_target));
        }
        writer
            .header_fmt(
                "From",
                format_args!("<{}>;tag={}", self.local_uri, self.local_tag),
            )
            .header_fmt(
                "To",
                format_args!("<{}>;tag={}", self.remote_uri, self.remote_tag),
            )
            .header("Call-ID", &self.call_id)
            .header_fmt("CSeq", format_args!("{cseq} {method}"));
        for (name, value) in headers {
            writer.header(name, value);
        }
        match body {
            Some((media_type, body)) => writer.finish(Some(media_type), body),
            None => writer.finish(None, b""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_message;

    const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKi\r\n\
Record-Route: <sip:p2.example.com;lr>, <sip:192.0.2.7:5080;lr>\r\n\
From: <sip:outdial@192.0.2.1>;tag=L\r\n\
To: <sip:bob@192.0.2.4>;tag=R\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:bob@192.0.2.4:5070>\r\n\
Content-Length: 0\r\n\r\n";

    fn local() -> LocalParty<'static> {
        LocalParty {
            call_id: "c1",
            local_tag: "L",
            local_uri: "sip:outdial@192.0.2.1",
            remote_uri: "sip:bob@192.0.2.4",
            invite_cseq: 1,
        }
    }

    #[test]
    fn dialog_from_2xx_reverses_record_route() {
        let dialog = Dialog::from_2xx(&local(), &parse_message(OK).unwrap()).unwrap();
        assert_eq!(dialog.remote_tag, "R");
        assert_eq!(dialog.remote_target, "sip:bob@192.0.2.4:5070");
        assert_eq!(
            dialog.route_set,
            ["sip:192.0.2.7:5080;lr", "sip:p2.example.com;lr"]
        );
        assert_eq!(dialog.next_hop(), Some("192.0.2.7:5080".parse().unwrap()));
        assert_eq!(dialog.next_hop_transport(), (Transport::Udp, false));
    }

    #[test]
    fn a_tcp_remote_target_or_dialog_puts_in_dialog_requests_on_tcp() {
        let mut dialog = Dialog::new(&local(), "R", "sip:bob@192.0.2.4;transport=TCP", Vec::new());
        assert_eq!(dialog.next_hop_transport(), (Transport::Tcp, true));
        let mut bye = Vec::new();
        dialog.write_request(
            &mut bye,
            "BYE",
            "192.0.2.1:5060".parse().unwrap(),
            "z9hG4bKb",
            "ua",
        );
        let bye = parse_message(&bye).unwrap();
        assert_eq!(bye.via().unwrap().transport, "TCP");
        dialog.remote_target = "sip:bob@192.0.2.4".into();
        dialog.transport = Transport::Tcp;
        assert_eq!(dialog.next_hop_transport(), (Transport::Tcp, false));
    }

    #[test]
    fn ack_keeps_invite_cseq_and_bye_increments() {
        let mut dialog = Dialog::from_2xx(&local(), &parse_message(OK).unwrap()).unwrap();
        let sent_by: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let mut buf = Vec::new();
        dialog.write_ack(&mut buf, sent_by, "z9hG4bKa");
        let ack = parse_message(&buf).unwrap();
        assert_eq!(
            ack.request_uri().unwrap().as_str(),
            "sip:bob@192.0.2.4:5070"
        );
        assert_eq!(ack.cseq().unwrap().number, 1);
        let routes: Vec<_> = ack
            .header_values(crate::sip::message::HeaderName::Route)
            .collect();
        assert_eq!(
            routes,
            ["<sip:192.0.2.7:5080;lr>", "<sip:p2.example.com;lr>"]
        );
        drop(ack);
        dialog.write_request(&mut buf, "BYE", sent_by, "z9hG4bKb", "ua");
        let bye = parse_message(&buf).unwrap();
        assert_eq!(bye.cseq().unwrap().number, 2);
        assert_eq!(bye.to().unwrap().tag(), Some("R"));
        assert_eq!(bye.from().unwrap().tag(), Some("L"));
    }

    #[test]
    fn strict_route_becomes_the_request_uri() {
        let mut dialog = Dialog::from_2xx(&local(), &parse_message(OK).unwrap()).unwrap();
        dialog.route_set = vec!["sip:strict.example.com".into()];
        let mut buf = Vec::new();
        dialog.write_request(
            &mut buf,
            "BYE",
            "192.0.2.1:5060".parse().unwrap(),
            "z9hG4bKc",
            "ua",
        );
        let bye = parse_message(&buf).unwrap();
        assert_eq!(
            bye.request_uri().unwrap().as_str(),
            "sip:strict.example.com"
        );
        assert_eq!(
            bye.header(crate::sip::message::HeaderName::Route),
            Some("<sip:bob@192.0.2.4:5070>")
        );
    }

    #[test]
    fn matches_and_cseq_order() {
        let mut dialog = Dialog::from_2xx(&local(), &parse_message(OK).unwrap()).unwrap();
        let bye = b"BYE sip:outdial@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKq\r\nFrom: <sip:bob@192.0.2.4>;tag=R\r\nTo: <sip:outdial@192.0.2.1>;tag=L\r\nCall-ID: c1\r\nCSeq: 7 BYE\r\n\r\n";
        assert!(dialog.matches(&parse_message(bye).unwrap()));
        let other = String::from_utf8_lossy(bye).replace("tag=R", "tag=X");
        assert!(!dialog.matches(&parse_message(other.as_bytes()).unwrap()));
        assert!(dialog.accept_remote_cseq(7));
        assert!(!dialog.accept_remote_cseq(6));
    }

    #[test]
    fn missing_tag_or_contact_is_an_error() {
        let no_tag = String::from_utf8_lossy(OK).replace(";tag=R", "");
        assert_eq!(
            Dialog::from_2xx(&local(), &parse_message(no_tag.as_bytes()).unwrap()),
            Err(DialogError::MissingToTag)
        );
        let no_contact =
            String::from_utf8_lossy(OK).replace("Contact: <sip:bob@192.0.2.4:5070>\r\n", "");
        assert_eq!(
            Dialog::from_2xx(&local(), &parse_message(no_contact.as_bytes()).unwrap()),
            Err(DialogError::MissingContact)
        );
    }
}
