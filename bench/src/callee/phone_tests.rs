//! The phone against the dataplane's own SIP endpoint (the user agent Outdial dials with),
//! in virtual time: every datagram goes through both machines, nothing through a socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outdial_dataplane::api::{CallId, Disposition};
use outdial_dataplane::rtp::packet::Packet;
use outdial_dataplane::rtp::parse_telephone_event;
use outdial_dataplane::sdp::build_offer;
use outdial_dataplane::sip::message::Message;
use outdial_dataplane::sip::transaction::Timing;
use outdial_dataplane::sip::{BorderConfig, DialParams, Endpoint, SipConfig, SipEvent};

use super::*;
use crate::callee::media::{MAX_RTP, Sound};
use crate::sounds::Sounds;

const CALLER: &str = "192.0.2.1:5060";
const CALLER_RTP: &str = "192.0.2.1:40000";
const PHONE: &str = "192.0.2.9:5090";
const PHONE_RTP: &str = "192.0.2.9:30000";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn settings(sound: Sound) -> Arc<PhoneSettings> {
    Arc::new(PhoneSettings {
        local_sip: addr(PHONE),
        timing: Timing::default(),
        sound,
        sounds: Arc::new(Sounds::new(None).unwrap()),
        key_duration: Duration::from_millis(100),
        keys_after_prompt: None,
        max_call: Duration::from_secs(3600),
        no_answer_timeout: Duration::from_secs(60),
        user_agent: "test-phone".into(),
    })
}

fn plan(behaviour: Behaviour) -> Plan {
    Plan {
        behaviour,
        ring: Duration::from_secs(2),
        talk: None,
        greeting: Duration::from_secs(3),
        keys: Vec::new(),
    }
}

const IDS: PhoneIds = PhoneIds {
    tag: 0xabc,
    branch: 0xdef,
    ssrc: 77,
    seq: 65534,
    timestamp: 1000,
};

/// One caller (the dataplane's endpoint) and one phone, in virtual time.
struct Net {
    t0: Instant,
    now: Instant,
    caller: Endpoint,
    phone: Option<Phone>,
    settings: Arc<PhoneSettings>,
    plan: Option<Plan>,
    events: Vec<(Duration, SipEvent)>,
    rtp: Vec<(Duration, Vec<u8>)>,
    sip_from_phone: Vec<String>,
    record: Option<CallRecord>,
}

impl Net {
    fn dial(settings: Arc<PhoneSettings>, plan: Plan, user: &str, ring_timeout: u64) -> Self {
        let t0 = Instant::now();
        let mut caller = Endpoint::new(
            SipConfig {
                local: addr(CALLER),
                t1: Duration::from_millis(500),
                t2: Duration::from_secs(4),
                t4: Duration::from_secs(5),
                user_agent: "caller".into(),
                border: BorderConfig::default(),
                inbound_sources: Vec::new(),
                core: 0,
                max_calls: usize::MAX,
                session_expires: None,
                udp_mtu_switch: outdial_dataplane::sip::endpoint::UDP_MTU_SWITCH,
            },
            7,
        );
        let offer = build_offer(1, 1, addr(CALLER_RTP).ip(), 40000);
        let target = format!("sip:{user}@{PHONE}");
        caller
            .dial(
                t0,
                CallId(1),
                &DialParams {
                    target: &target,
                    destination: None,
                    from: "sip:outdial@192.0.2.1",
                    sdp_offer: &offer,
                    ring_timeout: Duration::from_secs(ring_timeout),
                    max_duration: Duration::from_secs(3600),
                    credentials: None,
                    asserted_identity: None,
                    privacy: None,
                    no_response_timeout: None,
                    transport: Transport::Udp,
                },
            )
            .unwrap();
        let mut net = Self {
            t0,
            now: t0,
            caller,
            phone: None,
            settings,
            plan: Some(plan),
            events: Vec::new(),
            rtp: Vec::new(),
            sip_from_phone: Vec::new(),
            record: None,
        };
        net.exchange();
        net
    }

    fn at(&self) -> Duration {
        self.now - self.t0
    }

    /// Delivers every datagram either side has until both are quiet.
    fn exchange(&mut self) {
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            while let Some(_to) = self.caller.poll_transmit(&mut buf) {
                moved = true;
                let message = Message::parse(&buf).unwrap();
                match self.phone.as_mut() {
                    Some(phone) => phone.handle_sip(self.now, addr(CALLER), &message),
                    None => {
                        self.phone = Some(Phone::new(
                            self.now,
                            Arc::clone(&self.settings),
                            self.plan.take().unwrap(),
                            IDS,
                            &message,
                            addr(CALLER),
                            Some(addr(PHONE_RTP)),
                        ));
                    }
                }
            }
            while let Some(event) = self.caller.poll_event() {
                self.events.push((self.at(), event));
            }
            if let Some(phone) = self.phone.as_mut() {
                while let Some(to) = phone.poll_sip(&mut buf) {
                    moved = true;
                    assert_eq!(to, addr(CALLER));
                    self.sip_from_phone
                        .push(String::from_utf8(buf.clone()).unwrap());
                    self.caller.handle_datagram(self.now, addr(PHONE), &buf);
                }
                let mut packet = [0u8; MAX_RTP];
                while let Some((to, len)) = phone.poll_rtp(&mut packet) {
                    assert_eq!(to, addr(CALLER_RTP));
                    self.rtp.push((self.now - self.t0, packet[..len].to_vec()));
                }
                if let Some(record) = phone.take_record() {
                    self.record = Some(record);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Runs both machines until `until` after the start.
    fn run_until(&mut self, until: Duration) {
        let end = self.t0 + until;
        loop {
            let next = [
                self.caller.poll_timeout(),
                self.phone.as_ref().and_then(Phone::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|next| *next <= end) else {
                self.now = end;
                return;
            };
            self.now = next.max(self.now);
            self.caller.handle_timeout(self.now);
            if let Some(phone) = self.phone.as_mut() {
                phone.handle_timeout(self.now);
            }
            self.exchange();
        }
    }

    fn statuses(&self) -> Vec<u16> {
        self.sip_from_phone
            .iter()
            .filter_map(|text| Message::parse(text.as_bytes()).ok()?.status())
            .collect()
    }

    fn ended(&self) -> Option<&(Duration, SipEvent)> {
        self.events
            .iter()
            .find(|(_, e)| matches!(e, SipEvent::Ended { .. }))
    }

    fn disposition(&self) -> Option<Disposition> {
        match self.ended()? {
            (_, SipEvent::Ended { outcome, .. }) => Some(outcome.disposition),
            _ => None,
        }
    }
}

#[test]
fn a_call_rings_answers_presses_its_keys_at_their_offsets_and_the_caller_hangs_up() {
    let mut plan = plan(Behaviour::Answer);
    plan.keys = vec![
        (Duration::from_millis(1000), '4'),
        (Duration::from_millis(1300), '2'),
    ];
    let mut net = Net::dial(settings(Sound::Tone), plan, "press-42", 30);
    assert_eq!(net.statuses(), [180], "rings at once");
    assert!(matches!(net.events[0].1, SipEvent::Ringing { .. }));
    net.run_until(Duration::from_secs(5));
    let answered = net
        .events
        .iter()
        .find(|(_, e)| matches!(e, SipEvent::Answered { .. }))
        .expect("answered");
    assert_eq!(
        answered.0,
        Duration::from_secs(2),
        "answers after the ring time"
    );

    // Keys: RFC 4733 events (PT 101) starting 1 s and 1.3 s after the answer.
    let events: Vec<(Duration, bool, u8, bool, u16)> = net
        .rtp
        .iter()
        .filter_map(|(at, bytes)| {
            let packet = Packet::parse(bytes).ok()?;
            (packet.header.payload_type == 101).then(|| {
                let e = parse_telephone_event(packet.payload).unwrap();
                (*at, packet.header.marker, e.event, e.end, e.duration)
            })
        })
        .collect();
    let starts: Vec<_> = events.iter().filter(|e| e.1).map(|e| (e.0, e.2)).collect();
    assert_eq!(
        starts,
        [
            (Duration::from_millis(3000), 4),
            (Duration::from_millis(3300), 2)
        ]
    );
    // Each key: 5 packets growing by 160, then 3 end packets repeating the full duration.
    let four: Vec<_> = events
        .iter()
        .filter(|e| e.2 == 4)
        .map(|e| (e.3, e.4))
        .collect();
    assert_eq!(
        four,
        [
            (false, 160),
            (false, 320),
            (false, 480),
            (false, 640),
            (true, 800),
            (true, 800),
            (true, 800),
            (true, 800)
        ]
    );
    // Audio between keys is the tone, every 20 ms from the answer, with one sequence.
    let audio: Vec<_> = net
        .rtp
        .iter()
        .filter(|(_, b)| Packet::parse(b).unwrap().header.payload_type == 0)
        .collect();
    assert_eq!(audio[0].0, Duration::from_secs(2));
    let seqs: Vec<u16> = net
        .rtp
        .iter()
        .map(|(_, b)| Packet::parse(b).unwrap().header.sequence_number)
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    assert_eq!(
        net.rtp.len(),
        151,
        "one packet per 20 ms slot from 2 s to 5 s"
    );

    net.caller.hangup(net.now, CallId(1));
    net.exchange();
    let record = net.record.take().expect("record at the caller's BYE");
    assert_eq!(record.outcome, Outcome::Answered);
    assert_eq!((record.ended_by, record.status), ("caller", 200));
    assert_eq!((record.ring_ms, record.talk_ms), (2000, 3000));
    assert_eq!(
        (record.keys_sent.as_str(), record.user.as_str()),
        ("42", "press-42")
    );
    assert_eq!(record.tx_packets, 151);
    assert_eq!(*net.statuses().last().unwrap(), 200, "BYE answered");
    net.run_until(Duration::from_secs(40));
    assert!(net.phone.as_ref().unwrap().is_finished());
}

#[test]
fn the_phone_hangs_up_after_its_talk_time_and_measures_what_it_received() {
    let mut plan = plan(Behaviour::Answer);
    plan.ring = Duration::ZERO;
    plan.talk = Some(Duration::from_secs(3));
    let mut net = Net::dial(settings(Sound::Echo), plan, "alice", 30);
    net.run_until(Duration::from_millis(10));
    // The caller sends 50 packets, 20 ms apart, with one lost (seq 10): each is echoed.
    for n in (0..50u16).filter(|n| *n != 10) {
        net.now = net.t0 + Duration::from_millis(20) + Duration::from_millis(20) * u32::from(n);
        let mut packet = vec![0u8; 172];
        outdial_dataplane::rtp::packet::Header {
            marker: false,
            payload_type: 0,
            sequence_number: n,
            timestamp: 160 * u32::from(n),
            ssrc: 5,
        }
        .write(&mut packet)
        .unwrap();
        packet[12..].fill(n as u8);
        let phone = net.phone.as_mut().unwrap();
        phone.handle_rtp(net.now, addr(CALLER_RTP), &packet);
        phone.handle_rtp(net.now, addr("198.51.100.7:4000"), &packet);
        net.exchange();
    }
    assert_eq!(
        net.rtp.len(),
        49,
        "every received packet echoed, nothing else"
    );
    assert!(
        net.rtp
            .iter()
            .all(|(_, b)| Packet::parse(b).unwrap().header.ssrc == 77)
    );
    assert_eq!(Packet::parse(&net.rtp[3].1).unwrap().payload, [3u8; 160]);
    net.run_until(Duration::from_secs(10));
    let (at, _) = net.ended().expect("caller saw the BYE");
    assert_eq!(*at, Duration::from_secs(3));
    assert_eq!(net.disposition(), Some(Disposition::Completed));
    let record = net.record.take().unwrap();
    assert_eq!((record.ended_by, record.talk_ms), ("callee", 3000));
    assert_eq!(
        (record.rx.packets, record.rx.expected, record.rx.lost),
        (49, 50, 1)
    );
    assert_eq!(
        (record.rx.max_gap_ms, record.rx.gaps, record.rx_dropped),
        (40, 0, 49)
    );
    assert_eq!(record.first_packet_ms, Some(20));
}

#[test]
fn busy_is_486_at_once_and_reject_is_603_after_ringing() {
    let mut net = Net::dial(settings(Sound::Echo), plan(Behaviour::Busy), "bob", 30);
    assert_eq!(net.statuses(), [486]);
    assert_eq!(net.disposition(), Some(Disposition::Busy));
    let record = net.record.take().unwrap();
    assert_eq!((record.outcome, record.ended_by), (Outcome::Busy, "final"));
    net.run_until(Duration::from_secs(40));
    assert!(
        net.phone.as_ref().unwrap().is_finished(),
        "ACK absorbed, Timer I ran out"
    );

    let mut net = Net::dial(settings(Sound::Echo), plan(Behaviour::Reject), "bob", 30);
    net.run_until(Duration::from_secs(5));
    assert_eq!(net.statuses(), [180, 603]);
    assert_eq!(net.ended().unwrap().0, Duration::from_secs(2));
    assert_eq!(net.disposition(), Some(Disposition::Failed));
    assert_eq!(net.record.take().unwrap().outcome, Outcome::Rejected);
}

#[test]
fn no_answer_rings_until_cancel_or_gives_up_with_480() {
    let mut net = Net::dial(settings(Sound::Echo), plan(Behaviour::NoAnswer), "carol", 5);
    net.run_until(Duration::from_secs(10));
    assert_eq!(
        net.statuses(),
        [180, 200, 487],
        "180, 200 to CANCEL, 487 to INVITE"
    );
    assert_eq!(net.disposition(), Some(Disposition::NoAnswer));
    let record = net.record.take().unwrap();
    assert_eq!(
        (record.outcome, record.ended_by),
        (Outcome::Canceled, "caller")
    );
    assert_eq!(record.ring_ms, 5000);

    // A caller that rings longer than the phone's no-answer timeout (60 s) gets 480.
    let mut net = Net::dial(
        settings(Sound::Echo),
        plan(Behaviour::NoAnswer),
        "carol",
        90,
    );
    net.run_until(Duration::from_secs(70));
    assert_eq!(net.statuses(), [180, 480]);
    assert_eq!(net.record.take().unwrap().outcome, Outcome::NoAnswer);
    assert_eq!(net.disposition(), Some(Disposition::NoAnswer));
}

#[test]
fn an_answering_machine_plays_its_greeting_then_the_beep_then_silence() {
    let mut plan = plan(Behaviour::Machine);
    plan.ring = Duration::ZERO;
    plan.greeting = Duration::from_secs(1);
    let mut net = Net::dial(settings(Sound::Echo), plan, "dave", 30);
    net.run_until(Duration::from_millis(1500));
    let sounds = Sounds::new(None).unwrap();
    let payloads: Vec<&[u8]> = net.rtp.iter().map(|(_, b)| &b[12..]).collect();
    use outdial_dataplane::api::Codec;
    assert_eq!(payloads[0], sounds.greeting.frame(Codec::Pcmu, 0));
    assert_eq!(
        payloads[50],
        sounds.beep.frame(Codec::Pcmu, 0),
        "beep after 1 s"
    );
    assert_eq!(payloads[59], sounds.beep.frame(Codec::Pcmu, 9));
    assert!(
        payloads[60].iter().all(|&b| b == 0xff),
        "silence after the beep"
    );
    net.caller.hangup(net.now, CallId(1));
    net.exchange();
    assert_eq!(net.record.take().unwrap().outcome, Outcome::Machine);
}

#[test]
fn an_offer_without_g711_is_refused_with_488() {
    let t0 = Instant::now();
    let invite = format!(
        "INVITE sip:x@{PHONE} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK1\r\n\
From: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:x@{PHONE}>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\nContent-Length: 66\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 4 RTP/AVP 9\r\n"
    );
    let message = Message::parse(invite.as_bytes()).unwrap();
    let mut phone = Phone::new(
        t0,
        settings(Sound::Echo),
        plan(Behaviour::Answer),
        IDS,
        &message,
        addr(CALLER),
        Some(addr(PHONE_RTP)),
    );
    let mut buf = Vec::new();
    phone.poll_sip(&mut buf).unwrap();
    assert_eq!(Message::parse(&buf).unwrap().status(), Some(488));
    let record = phone.take_record().unwrap();
    assert_eq!((record.outcome, record.status), (Outcome::Failed, 488));
}
