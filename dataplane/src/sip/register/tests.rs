use super::*;
use crate::sip::message::{Method, parse_message};

const REGISTRAR: &str = "192.0.2.9:5060";

fn config(credentials: bool) -> RegistrationConfig {
    RegistrationConfig {
        registrar: "sip:carrier.example".into(),
        aor: "sip:acct@carrier.example".into(),
        contact: "sip:acct@192.0.2.1:5060".into(),
        destination: REGISTRAR.parse().unwrap(),
        alternatives: Vec::new(),
        local: "192.0.2.1:5060".parse().unwrap(),
        expires: Duration::from_secs(600),
        credentials: credentials.then(|| Credentials {
            username: "acct".into(),
            password: "pw".into(),
            realm: None,
        }),
        user_agent: "outdial-test".into(),
    }
}

struct Harness {
    registration: Registration,
    t0: Instant,
    now: Instant,
    sent: Vec<(Duration, Vec<u8>)>,
    events: Vec<(Duration, RegistrationEvent)>,
}

impl Harness {
    fn new(credentials: bool) -> Self {
        let t0 = Instant::now();
        let registration = Registration::new(t0, config(credentials), Timing::default(), 5);
        let mut h = Self {
            registration,
            t0,
            now: t0,
            sent: Vec::new(),
            events: Vec::new(),
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        let mut buf = Vec::new();
        while let Some(to) = self.registration.poll_transmit(&mut buf) {
            assert_eq!(to, REGISTRAR.parse().unwrap());
            self.sent.push((self.now - self.t0, buf.clone()));
        }
        while let Some(event) = self.registration.poll_event() {
            self.events.push((self.now - self.t0, event));
        }
    }

    fn advance_to(&mut self, at: Duration) {
        let end = self.t0 + at;
        while let Some(deadline) = self.registration.poll_timeout().filter(|&d| d <= end) {
            self.now = self.now.max(deadline);
            self.registration.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    fn last(&self) -> Vec<u8> {
        self.sent
            .last()
            .map(|(_, b)| b.clone())
            .expect("a REGISTER was sent")
    }

    fn answer(&mut self, status: u16, extra: &str) {
        let request = self.last();
        let request = parse_message(&request).unwrap();
        let text = format!(
            "SIP/2.0 {status} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=reg\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
            request.header(HeaderName::Via).unwrap(),
            request.header(HeaderName::From).unwrap(),
            request.header(HeaderName::To).unwrap(),
            request.call_id().unwrap(),
            request.header(HeaderName::CSeq).unwrap(),
        );
        drop(request);
        self.registration
            .handle_response(self.now, &parse_message(text.as_bytes()).unwrap());
        self.drain();
    }
}

fn header(bytes: &[u8], name: &str) -> Option<String> {
    parse_message(bytes)
        .unwrap()
        .header(HeaderName::Other(name))
        .map(str::to_owned)
}

const CHALLENGE: &str =
    "WWW-Authenticate: Digest realm=\"carrier.example\", nonce=\"r1\", qop=\"auth\"\r\n";

#[test]
fn registers_through_a_challenge_and_refreshes_before_expiry() {
    let mut h = Harness::new(true);
    let first = h.last();
    let message = parse_message(&first).unwrap();
    assert_eq!(message.method(), Some(Method::Register));
    assert_eq!(
        message.request_uri().unwrap().as_str(),
        "sip:carrier.example"
    );
    assert_eq!(message.cseq().unwrap().number, 1);
    assert_eq!(header(&first, "Expires").as_deref(), Some("600"));
    let call_id = message.call_id().unwrap().to_owned();
    let from_tag = message.from().unwrap().tag().unwrap().to_owned();
    drop(message);

    h.answer(401, CHALLENGE);
    let retry = h.last();
    let message = parse_message(&retry).unwrap();
    assert_eq!(message.cseq().unwrap().number, 2);
    assert_eq!(message.call_id(), Some(call_id.as_str()));
    let authorization = header(&retry, "Authorization").expect("Authorization");
    assert!(
        authorization.contains("uri=\"sip:carrier.example\""),
        "{authorization}"
    );
    assert!(authorization.contains("nc=00000001"), "{authorization}");
    drop(message);

    h.answer(
        200,
        "Contact: <sip:acct@192.0.2.1:5060>;expires=120\r\nExpires: 600\r\n",
    );
    assert_eq!(
        h.events,
        [(
            Duration::ZERO,
            RegistrationEvent::Registered {
                expires: Duration::from_secs(120)
            }
        )],
        "our Contact's expires wins over Expires"
    );
    let sent = h.sent.len();
    h.advance_to(Duration::from_secs(89));
    assert_eq!(h.sent.len(), sent, "nothing before the refresh");
    h.advance_to(Duration::from_secs(90));
    assert_eq!(
        h.sent.len(),
        sent + 1,
        "refreshed 30 s before the 120 s expire"
    );
    let refresh = h.last();
    let message = parse_message(&refresh).unwrap();
    assert_eq!(message.cseq().unwrap().number, 3);
    assert_eq!(message.call_id(), Some(call_id.as_str()));
    assert_eq!(message.from().unwrap().tag(), Some(from_tag.as_str()));
    drop(message);
    // The refresh is challenged with the same nonce: a new request may answer it again.
    h.answer(401, CHALLENGE);
    let again = header(&h.last(), "Authorization").expect("Authorization");
    assert!(again.contains("nc=00000002"), "{again}");
    h.answer(200, "Expires: 20\r\n");
    assert_eq!(
        h.events.last().map(|(_, e)| e.clone()),
        Some(RegistrationEvent::Registered {
            expires: Duration::from_secs(20)
        })
    );
    h.advance_to(Duration::from_secs(100));
    assert_eq!(
        h.sent.last().map(|(at, _)| *at),
        Some(Duration::from_secs(100)),
        "a 20 s binding is refreshed after half of it"
    );
}

#[test]
fn failures_are_retried_with_a_growing_delay_and_retry_after() {
    let mut h = Harness::new(false);
    h.answer(403, "");
    assert_eq!(
        h.events.last().map(|(_, e)| e.clone()),
        Some(RegistrationEvent::Failed {
            status: Some(403),
            reason: "403 X".into(),
            retry_in: FIRST_RETRY
        })
    );
    h.advance_to(Duration::from_secs(30));
    assert_eq!(h.sent.len(), 2, "re-registered after 30 s");
    h.answer(503, "Retry-After: 120\r\n");
    assert!(matches!(
        h.events.last(),
        Some((_, RegistrationEvent::Failed { retry_in, .. })) if *retry_in == Duration::from_secs(120)
    ));
    h.advance_to(Duration::from_secs(150));
    assert_eq!(h.sent.len(), 3);
    h.answer(500, "");
    assert!(
        matches!(
            h.events.last(),
            Some((_, RegistrationEvent::Failed { retry_in, .. })) if *retry_in == Duration::from_secs(120)
        ),
        "third failure: 30 s doubled twice"
    );
    h.advance_to(Duration::from_secs(270));
    h.answer(200, "");
    assert_eq!(
        h.events.last().map(|(_, e)| e.clone()),
        Some(RegistrationEvent::Registered {
            expires: Duration::from_secs(600)
        })
    );
    // Challenged without credentials: a failure, not a loop.
    h.advance_to(Duration::from_secs(270 + 570));
    h.answer(401, CHALLENGE);
    assert!(
        matches!(
            h.events.last(),
            Some((_, RegistrationEvent::Failed { status: Some(401), retry_in, .. })) if *retry_in == FIRST_RETRY
        ),
        "{:?}",
        h.events.last()
    );
}

#[test]
fn no_answer_fails_by_timer_f_and_is_tried_again() {
    let mut h = Harness::new(false);
    h.advance_to(Duration::from_secs(32));
    let retransmissions = h.sent.len();
    assert_eq!(
        retransmissions, 11,
        "Timer E: 0, 0.5, 1.5, 3.5, then every 4 s to 31.5"
    );
    assert!(
        matches!(
            h.events.as_slice(),
            [(at, RegistrationEvent::Failed { status: None, reason, .. })]
                if *at == Duration::from_secs(32) && reason.contains("Timer F")
        ),
        "{:?}",
        h.events
    );
    h.advance_to(Duration::from_secs(62));
    assert_eq!(h.sent.len(), retransmissions + 1);
    assert_eq!(parse_message(&h.last()).unwrap().cseq().unwrap().number, 2);
}

#[test]
fn wrong_credentials_and_a_brief_interval() {
    let mut h = Harness::new(true);
    h.answer(423, "Min-Expires: 3600\r\n");
    assert_eq!(header(&h.last(), "Expires").as_deref(), Some("3600"));
    h.answer(401, CHALLENGE);
    h.answer(401, CHALLENGE);
    assert!(
        matches!(
            h.events.as_slice(),
            [(_, RegistrationEvent::Failed { status: Some(401), reason, .. })] if reason.contains("refused")
        ),
        "{:?}",
        h.events
    );
    assert_eq!(
        h.sent.len(),
        3,
        "one REGISTER per challenge, none after the refusal"
    );
}

#[test]
fn unregistering_sends_expires_0_through_a_challenge_and_then_nothing_more() {
    let mut h = Harness::new(true);
    h.answer(200, "Expires: 600\r\n");
    assert!(matches!(
        h.events.last(),
        Some((_, RegistrationEvent::Registered { .. }))
    ));
    h.advance_to(Duration::from_secs(10));
    let registered_cseq = parse_message(&h.last()).unwrap().cseq().unwrap().number;
    h.registration.unregister(h.now);
    h.drain();
    let removal = h.last();
    let message = parse_message(&removal).unwrap();
    assert_eq!(message.cseq().unwrap().number, registered_cseq + 1);
    assert_eq!(header(&removal, "Expires").as_deref(), Some("0"));
    drop(message);
    h.registration.unregister(h.now);
    h.drain();
    assert_eq!(
        parse_message(&h.last()).unwrap().cseq().unwrap().number,
        registered_cseq + 1,
        "a second unregister sends nothing new"
    );
    // A challenge is answered as for a registration.
    h.answer(401, CHALLENGE);
    let retry = h.last();
    assert_eq!(header(&retry, "Expires").as_deref(), Some("0"));
    assert!(header(&retry, "Authorization").is_some());
    h.answer(200, "");
    assert!(matches!(
        h.events.last(),
        Some((
            _,
            RegistrationEvent::Unregistered {
                status: Some(200),
                ..
            }
        ))
    ));
    // The refresh that was due at 570 s never goes.
    let sent = h.sent.len();
    h.advance_to(Duration::from_secs(4000));
    assert_eq!(h.sent.len(), sent, "nothing after the binding is removed");
    assert_eq!(h.registration.poll_timeout(), None);
}

#[test]
fn a_failed_unregistration_is_reported_and_not_retried() {
    let mut h = Harness::new(false);
    h.answer(200, "");
    h.registration.unregister(h.now);
    h.drain();
    h.answer(503, "Retry-After: 60\r\n");
    assert!(matches!(
        h.events.last(),
        Some((
            _,
            RegistrationEvent::Unregistered {
                status: Some(503),
                ..
            }
        ))
    ));
    let sent = h.sent.len();
    h.advance_to(Duration::from_secs(4000));
    assert_eq!(h.sent.len(), sent);
}

#[test]
fn a_423_to_the_removal_ends_it_without_registering_again() {
    let mut h = Harness::new(false);
    h.answer(200, "");
    h.registration.unregister(h.now);
    h.drain();
    let sent = h.sent.len();
    h.answer(423, "Min-Expires: 1200\r\n");
    assert_eq!(
        h.sent.len(),
        sent,
        "no REGISTER asking for 1200 s at shutdown"
    );
    assert!(matches!(
        h.events.last(),
        Some((
            _,
            RegistrationEvent::Unregistered {
                status: Some(423),
                ..
            }
        ))
    ));
}

/// A 503 to the REGISTER in flight of `registration`.
fn busy(registration: &Registration) -> Vec<u8> {
    let branch = registration.branch().expect("a REGISTER in flight");
    format!(
        "SIP/2.0 503 Busy\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
         From: <sip:acct@carrier.example>;tag=x\r\nTo: <sip:acct@carrier.example>;tag=r\r\n\
         Call-ID: c\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn a_silent_or_503_registrar_address_gives_way_to_the_next_at_once() {
    let t0 = Instant::now();
    let mut config = config(false);
    let second: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let third: SocketAddr = "192.0.2.11:5060".parse().unwrap();
    config.alternatives = vec![second, third];
    let mut registration = Registration::new(t0, config, Timing::default(), 5);
    let mut buf = Vec::new();
    let mut sent_to = |r: &mut Registration| {
        let mut to = Vec::new();
        while let Some(d) = r.poll_transmit(&mut buf) {
            to.push(d);
        }
        to
    };
    assert_eq!(sent_to(&mut registration), [REGISTRAR.parse().unwrap()]);
    // Timer F on the first address: the second at once, not after the 30 s retry delay.
    let mut now = t0;
    while let Some(deadline) = registration
        .poll_timeout()
        .filter(|&d| d <= t0 + Duration::from_secs(32))
    {
        now = deadline;
        registration.handle_timeout(now);
        sent_to(&mut registration);
    }
    assert_eq!(registration.destination(), second);
    assert!(registration.is_registrar(second.ip()) && registration.is_registrar(third.ip()));
    assert!(
        registration.poll_event().is_none(),
        "no failure while addresses remain"
    );
    // A 503 from the second: the third, at once.
    registration.handle_response(now, &parse_message(&busy(&registration)).unwrap());
    assert_eq!(sent_to(&mut registration), [third]);
    assert!(registration.poll_event().is_none());
    // A 503 from the last: a failure, retried after the delay from the first address.
    registration.handle_response(now, &parse_message(&busy(&registration)).unwrap());
    assert!(matches!(
        registration.poll_event(),
        Some(RegistrationEvent::Failed {
            status: Some(503),
            ..
        })
    ));
    assert_eq!(registration.destination(), REGISTRAR.parse().unwrap());
    assert!(sent_to(&mut registration).is_empty());
}

#[test]
fn a_grant_is_believed_up_to_a_day() {
    // Found by the sip_register fuzz target: `Expires` near u64::MAX put the refresh past
    // the end of `Instant` (a panic).
    for (expires, believed) in [
        ("Expires: 18446744073709551615\r\n", 86_400),
        ("Expires: 90000\r\n", 86_400),
        ("Expires: 7200\r\n", 7_200),
    ] {
        let mut h = Harness::new(false);
        h.answer(200, expires);
        assert_eq!(
            h.events.last().map(|(_, e)| e.clone()),
            Some(RegistrationEvent::Registered {
                expires: Duration::from_secs(believed)
            }),
            "{expires}"
        );
    }
}
