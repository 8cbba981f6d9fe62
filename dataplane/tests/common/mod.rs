//! The SIP endpoint in virtual time, shared by the endpoint and digest-auth tests: a harness
//! that drives one [`Endpoint`] with a virtual clock and records what it sends, and a UAS
//! scripted here (built on the same parser) that answers its requests.

#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use outdial_dataplane::api::{CallId, Disposition};
use outdial_dataplane::sip::message::{HeaderName, Method};
use outdial_dataplane::sip::{
    BorderConfig, DialParams, Endpoint, SipConfig, SipError, SipEvent, Transport, parse_message,
};

pub(crate) const LOCAL: &str = "192.0.2.1:5060";
pub(crate) const UAS: &str = "192.0.2.4:5070";
pub(crate) const SDP_OFFER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\n";
pub(crate) const TARGET: &str = "sip:+15550001@192.0.2.4:5070";
pub(crate) const SDP_ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 192.0.2.4\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\nm=audio 50000 RTP/AVP 0\r\n";

pub(crate) fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

/// The endpoint plus a virtual clock and a log of what it sent.
pub(crate) struct Harness {
    pub(crate) endpoint: Endpoint,
    pub(crate) t0: Instant,
    pub(crate) now: Instant,
    pub(crate) sent: Vec<(Duration, SocketAddr, Vec<u8>)>,
    /// The transport of each message in `sent`, index for index.
    pub(crate) transports: Vec<Transport>,
    pub(crate) events: Vec<SipEvent>,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_border(BorderConfig::default())
    }

    pub(crate) fn with_border(border: BorderConfig) -> Self {
        Self::configured(|config| config.border = border)
    }

    /// An endpoint that takes out-of-dialog INVITEs from `inbound_sources` as incoming calls.
    pub(crate) fn with_inbound(inbound_sources: Vec<ipnet::IpNet>) -> Self {
        Self::configured(|config| config.inbound_sources = inbound_sources)
    }

    /// The default test configuration, changed by `configure`.
    pub(crate) fn configured(configure: impl FnOnce(&mut SipConfig)) -> Self {
        let mut config = SipConfig {
            local: addr(LOCAL),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            user_agent: "outdial-test".into(),
            border: BorderConfig::default(),
            inbound_sources: Vec::new(),
            core: 0,
            max_calls: usize::MAX,
            session_expires: None,
            udp_mtu_switch: outdial_dataplane::sip::endpoint::UDP_MTU_SWITCH,
        };
        configure(&mut config);
        let t0 = Instant::now();
        Self {
            endpoint: Endpoint::new(config, 7),
            t0,
            now: t0,
            sent: Vec::new(),
            transports: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Dials call `call` to [`TARGET`] with [`plain_dial`]'s parameters.
    pub(crate) fn dial(&mut self, call: u64, ring_timeout: u64) -> Result<(), SipError> {
        self.dial_with(call, &plain_dial(ring_timeout))
    }

    pub(crate) fn dial_with(&mut self, call: u64, params: &DialParams<'_>) -> Result<(), SipError> {
        let result = self.endpoint.dial(self.now, CallId(call), params);
        self.drain();
        result
    }

    /// Each call that ended: its id, disposition, SIP status and reason.
    pub(crate) fn ended(&self) -> Vec<(CallId, Disposition, Option<u16>, String)> {
        ended(&self.events)
    }

    pub(crate) fn drain(&mut self) {
        let mut buf = Vec::new();
        while let Some((transport, to)) = self.endpoint.poll_transmit_via(&mut buf) {
            self.sent.push((self.now - self.t0, to, buf.clone()));
            self.transports.push(transport);
        }
        while let Some(event) = self.endpoint.poll_event() {
            self.events.push(event);
        }
    }

    /// Runs every timer up to `at` (virtual), draining after each.
    pub(crate) fn advance_to(&mut self, at: Duration) {
        let end = self.t0 + at;
        while let Some(deadline) = self.endpoint.poll_timeout().filter(|&d| d <= end) {
            self.now = self.now.max(deadline);
            self.endpoint.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    pub(crate) fn deliver(&mut self, data: &[u8]) {
        self.deliver_from(addr(UAS), data);
    }

    /// Feeds `data` as if it came from `from`.
    pub(crate) fn deliver_from(&mut self, from: SocketAddr, data: &[u8]) {
        self.endpoint.handle_datagram(self.now, from, data);
        self.drain();
    }

    /// Feeds `data` as a message that came on `transport` from [`UAS`].
    pub(crate) fn deliver_on(&mut self, transport: Transport, data: &[u8]) {
        self.endpoint
            .handle_message(self.now, transport, addr(UAS), data);
        self.drain();
    }

    pub(crate) fn take_sent(&mut self) -> Vec<(Duration, SocketAddr, Vec<u8>)> {
        self.transports.clear();
        std::mem::take(&mut self.sent)
    }

    /// Like [`Harness::take_sent`], with each message's transport.
    pub(crate) fn take_sent_via(&mut self) -> Vec<(Transport, SocketAddr, Vec<u8>)> {
        let transports = std::mem::take(&mut self.transports);
        std::mem::take(&mut self.sent)
            .into_iter()
            .zip(transports)
            .map(|((_, to, bytes), transport)| (transport, to, bytes))
            .collect()
    }

    pub(crate) fn take_events(&mut self) -> Vec<SipEvent> {
        std::mem::take(&mut self.events)
    }

    /// The last INVITE sent (the UAS answers it).
    pub(crate) fn last_request(&self, method: Method<'_>) -> Vec<u8> {
        self.sent
            .iter()
            .rev()
            .find(|(_, _, bytes)| {
                parse_message(bytes).ok().and_then(|m| m.method()) == Some(method)
            })
            .map(|(_, _, bytes)| bytes.clone())
            .expect("request was sent")
    }
}

/// The scripted UAS: a response to `request` (RFC 3261 §8.2.6).
pub(crate) fn reply(
    request: &[u8],
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> Vec<u8> {
    let request = parse_message(request).expect("our request parses");
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for via in request.header_values(HeaderName::Via) {
        out += &format!("Via: {via}\r\n");
    }
    let to = request.header(HeaderName::To).expect("To");
    let to = match to_tag {
        Some(tag) if !to.contains("tag=") => format!("{to};tag={tag}"),
        _ => to.to_owned(),
    };
    out += &format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}",
        request.header(HeaderName::From).expect("From"),
        request.call_id().expect("Call-ID"),
        request.header(HeaderName::CSeq).expect("CSeq"),
    );
    if !body.is_empty() {
        out += "Content-Type: application/sdp\r\n";
    }
    out += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    out.into_bytes()
}

/// A dial to [`TARGET`] with no credentials or identity headers.
pub(crate) fn plain_dial(ring_timeout: u64) -> DialParams<'static> {
    DialParams {
        target: TARGET,
        destination: None,
        from: "sip:outdial@192.0.2.1",
        sdp_offer: SDP_OFFER,
        ring_timeout: Duration::from_secs(ring_timeout),
        max_duration: Duration::from_secs(3600),
        credentials: None,
        asserted_identity: None,
        privacy: None,
        no_response_timeout: None,
        transport: Transport::Udp,
    }
}

/// Each `Ended` event: the call, disposition, SIP status and reason.
pub(crate) fn ended(events: &[SipEvent]) -> Vec<(CallId, Disposition, Option<u16>, String)> {
    events
        .iter()
        .filter_map(|event| match event {
            SipEvent::Ended { call, outcome } => Some((
                *call,
                outcome.disposition,
                outcome.sip_status,
                outcome.reason.clone(),
            )),
            _ => None,
        })
        .collect()
}
