//! Registration (`sip::register::Registration`), sans-IO: the input is a sequence of
//! responses to whatever REGISTER is in flight, split on `@@@@`, each after a pause given
//! by its first byte (in seconds, so refreshes and retries come due). `@@b` and `@@c` are
//! replaced by the branch and Call-ID of the REGISTER in flight. A response starting with
//! `UNREG` instead asks to unregister. Never a panic; every datagram written is a REGISTER
//! that parses, to the registrar, with a CSeq above the last; `Unregistered` is reported at
//! most once, and nothing is sent after it.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::sip::auth::Credentials;
use outdial_dataplane::sip::message::Method;
use outdial_dataplane::sip::parse_message;
use outdial_dataplane::sip::register::{Registration, RegistrationConfig, RegistrationEvent};
use outdial_dataplane::sip::transaction::Timing;

const REGISTRAR: &str = "192.0.2.9:5060";
const ALTERNATIVE: &str = "192.0.2.10:5060";

struct Harness {
    registration: Registration,
    now: Instant,
    buf: Vec<u8>,
    /// The last datagram checked: a retransmission (the same bytes) is not parsed again,
    /// which keeps an input's hour of virtual time cheap.
    checked: Vec<u8>,
    last_cseq: u32,
    call_id: String,
    unregistered: usize,
    sent_after_unregistered: bool,
}

impl Harness {
    fn drain(&mut self) {
        while let Some(to) = self.registration.poll_transmit(&mut self.buf) {
            assert!(
                to == REGISTRAR.parse().expect("fixed address")
                    || to == ALTERNATIVE.parse().expect("fixed address")
            );
            if self.buf == self.checked {
                continue;
            }
            self.checked.clone_from(&self.buf);
            if self.unregistered > 0 {
                assert!(self.sent_after_unregistered_ok(), "a new REGISTER after Unregistered");
            }
            let message = parse_message(&self.buf).expect("we write REGISTERs that parse");
            assert_eq!(message.method(), Some(Method::Register));
            let cseq = message.cseq().expect("CSeq").number;
            assert!(cseq >= self.last_cseq, "CSeq went down: {cseq} < {}", self.last_cseq);
            self.last_cseq = cseq;
            self.call_id = message.call_id().unwrap_or("").to_owned();
        }
        while let Some(event) = self.registration.poll_event() {
            if let RegistrationEvent::Unregistered { .. } = event {
                self.unregistered += 1;
                assert_eq!(self.unregistered, 1, "Unregistered reported twice");
            }
        }
    }

    /// Retransmissions of the removal's last REGISTER may still leave after its outcome;
    /// nothing new (a higher CSeq) may.
    fn sent_after_unregistered_ok(&mut self) -> bool {
        let cseq = parse_message(&self.buf)
            .ok()
            .and_then(|m| m.cseq().map(|c| c.number))
            .unwrap_or(0);
        if cseq > self.last_cseq {
            self.sent_after_unregistered = true;
            return false;
        }
        true
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        let mut steps = 0;
        while let Some(deadline) = self.registration.poll_timeout().filter(|&d| d <= end) {
            self.now = self.now.max(deadline);
            self.registration.handle_timeout(self.now);
            self.drain();
            steps += 1;
            assert!(steps < 10_000, "timers never settle");
        }
        self.now = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let config = RegistrationConfig {
        registrar: "sip:carrier.example".into(),
        aor: "sip:acct@carrier.example".into(),
        contact: "sip:acct@192.0.2.1:5060".into(),
        destination: REGISTRAR.parse().expect("fixed address"),
        alternatives: vec![ALTERNATIVE.parse().expect("fixed address")],
        local: "192.0.2.1:5060".parse().expect("fixed address"),
        expires: Duration::from_secs(600),
        credentials: Some(Credentials {
            username: "acct".into(),
            password: "pw".into(),
            realm: None,
        }),
        user_agent: "outdial-fuzz".into(),
    };
    let mut h = Harness {
        registration: Registration::new(t0, config, Timing::default(), 5),
        now: t0,
        buf: Vec::new(),
        checked: Vec::new(),
        last_cseq: 0,
        call_id: String::new(),
        unregistered: 0,
        sent_after_unregistered: false,
    };
    h.drain();
    for chunk in data.split_inner(b"@@@@") {
        let Some((&pause, rest)) = chunk.split_first() else {
            continue;
        };
        h.advance(Duration::from_secs(u64::from(pause)));
        if rest.starts_with(b"UNREG") {
            h.registration.unregister(h.now);
            h.drain();
            continue;
        }
        let branch = h.registration.branch().unwrap_or("none").to_owned();
        let text = String::from_utf8_lossy(rest)
            .replace("@@b", &branch)
            .replace("@@c", &h.call_id);
        if let Ok(response) = parse_message(text.as_bytes()) {
            h.registration.handle_response(h.now, &response);
            h.drain();
        }
    }
    h.advance(Duration::from_secs(4_000));
    assert!(!h.sent_after_unregistered);
});

/// Splitting on a separator (std has it for `str` only).
trait SplitInner {
    fn split_inner<'a>(&'a self, separator: &'a [u8]) -> Vec<&'a [u8]>;
}

impl SplitInner for [u8] {
    fn split_inner<'a>(&'a self, separator: &'a [u8]) -> Vec<&'a [u8]> {
        let mut parts = Vec::new();
        let mut rest = self;
        while let Some(at) = rest.windows(separator.len()).position(|w| w == separator) {
            parts.push(&rest[..at]);
            rest = &rest[at + separator.len()..];
        }
        parts.push(rest);
        parts
    }
}
