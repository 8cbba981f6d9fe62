//! End-to-end against hostile and awkward peers (issue 10): strangers injecting RTP, a
//! callee behind NAT, a dead callee host, and a flood of strangers at the SIP port while
//! calls are live. The real `outdial serve`, a real SIPp, real sockets on loopback.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp, free_udp_port, shared_dir};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The reminder application (confirm or cancel by key), shared with the other e2e tests.
const REMINDER: &str = include_str!("apps/reminder.vxml");

/// Asks once; hangs up after 5 s without a key, so a deaf call ends without a result.
const ASK_ONCE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <property name="timeout" value="5s"/>
  <form>
    <field name="confirm" type="boolean">
      <prompt>Press 1.</prompt>
      <noinput><exit/></noinput>
      <filled><submit next="submit" namelist="confirm" method="post"/></filled>
    </field>
  </form>
</vxml>
"#;

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Thank you. Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

fn dtmf_pcap(key: &str) -> String {
    let path = shared_dir().join(format!("corpus/rtp-dtmf-sipp-pcaps/dtmf_2833_{key}.pcap"));
    assert!(path.exists(), "missing test corpus file {}", path.display());
    // invariant: the corpus path is valid UTF-8 (it is built from ASCII names).
    path.canonicalize()
        .expect("canonical path")
        .to_str()
        .expect("utf-8")
        .to_owned()
}

/// One RFC 4733 telephone-event packet (payload type 101) for `key`.
fn key_event(key: u8, seq: u16, end: bool) -> Vec<u8> {
    let mut packet = vec![0x80, 101];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&4_242_000u32.to_be_bytes()); // timestamp: one event
    packet.extend_from_slice(&0x5747_0009u32.to_be_bytes()); // SSRC
    packet.extend_from_slice(&[key, if end { 0x8a } else { 0x0a }, 0x03, 0x20]);
    packet
}

/// `count` datagrams of random length and bytes, half of them starting like RTP version 2.
fn random_datagrams(count: usize, mut seed: u64) -> Vec<Vec<u8>> {
    let mut next = move || {
        // xorshift64*: reproducible noise without a dependency.
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..count)
        .map(|n| {
            let len = (next() % 300) as usize;
            let mut datagram: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if n % 2 == 0
                && let Some(first) = datagram.first_mut()
            {
                *first = 0x80 | (*first & 0x3f);
            }
            datagram
        })
        .collect()
}

async fn create(outdial: &Outdial, body: &Value) -> String {
    let (status, created) = outdial.create_call(body).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("id").to_owned()
}

/// A stranger on the callee's own host, on another port, sprays Outdial's RTP ports as soon
/// as the call is answered and before the callee sends anything: 2,000 random datagrams,
/// then a well-formed key 9. The call hears neither: the callee's real key 1 is submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_callees_host_neither_injects_a_key_nor_deafens_the_call() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "4000".into()),
        ],
    );
    let outdial = Outdial::start("");
    let id = create(
        &outdial,
        &json!({
            "to": sipp.uri("+15550101"),
            "url": app.url("/app.vxml"),
            "vars": { "patient": "Ada" },
        }),
    )
    .await;
    let answered = outdial
        .wait_status(&id, "in-progress", Duration::from_secs(30))
        .await;
    assert_eq!(answered["status"], "in-progress", "{answered}");

    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind stranger");
    let stranger_addr = stranger.local_addr().expect("addr");
    let noise = random_datagrams(2000, 0x0123_4567_89ab_cdef);
    for port in outdial.rtp_ports() {
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        for datagram in &noise {
            let _ = stranger.send_to(datagram, to);
        }
        for seq in 0..8u16 {
            let _ = stranger.send_to(&key_event(9, 1000 + seq, seq >= 5), to);
        }
    }

    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(
        call["result"],
        json!({ "confirm": "true" }),
        "the callee's key, not the stranger's: {call}\n{}",
        outdial.log()
    );
    assert!(sipp_status.success(), "{trace}");
    let log = outdial.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("RTP dropped for its source"))
        .collect();
    assert_eq!(refused.len(), 1, "logged once per call: {refused:?}");
    assert!(
        refused[0].contains(&stranger_addr.to_string()),
        "{refused:?}"
    );
    let dropped = outdial.metric("outdial_rtp_dropped_source_total").await;
    assert!(
        dropped >= 2008.0,
        "2,000 datagrams and 8 keys counted: {dropped}"
    );
}

/// Runs [`ASK_ONCE`] against a SIPp callee whose SDP names one port while its RTP (key 1)
/// comes from another, as behind NAT; returns the call record and the server.
async fn natted_callee(sip_lines: &str) -> (Value, Outdial, AppServer) {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", ASK_ONCE);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas(
        "answer_dtmf_natted.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "1500".into()),
            ("SDP_PORT", free_udp_port().to_string()),
        ],
    );
    let outdial = Outdial::start_with_sip("127.0.0.1", sip_lines, "");
    let id = create(
        &outdial,
        &json!({ "to": sipp.uri("+15550102"), "url": app.url("/app.vxml") }),
    )
    .await;
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert!(sipp_status.success(), "{trace}");
    (call, outdial, app)
}

/// Without `media_latching` a callee whose RTP does not come from its SDP's address is not
/// heard: its key is dropped (counted, logged once) and the application times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_natted_callee_is_not_heard_without_latching() {
    let (call, outdial, app) = natted_callee("").await;
    assert!(call["result"].is_null(), "nothing heard: {call}");
    assert!(
        app.received().iter().all(|r| r.path != "/submit"),
        "no key submitted"
    );
    assert_eq!(
        outdial.log().matches("RTP dropped for its source").count(),
        1,
        "{}",
        outdial.log()
    );
    let dropped = outdial.metric("outdial_rtp_dropped_source_total").await;
    assert!(dropped >= 5.0, "the key's packets are counted: {dropped}");
}

/// With `media_latching = true` the same callee is heard: the call latches to the source
/// its RTP comes from (the signalling peer's IP) and submits its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_natted_callee_is_heard_with_latching() {
    let (call, outdial, _app) = natted_callee("media_latching = true").await;
    assert_eq!(
        call["result"],
        json!({ "confirm": "true" }),
        "{call}\n{}",
        outdial.log()
    );
    assert!(
        !outdial.log().contains("RTP dropped for its source"),
        "{}",
        outdial.log()
    );
}

/// A callee host that takes the INVITE and never answers, not even `100 Trying` (a socket
/// that reads nothing): the call is given up after `sip.no_response_timeout_ms` as
/// `unreachable`, not after Timer B's 32 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_callee_host_is_given_up_after_the_no_response_timeout() {
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let outdial = Outdial::start_with_sip("127.0.0.1", "no_response_timeout_ms = 1000", "");
    let id = create(
        &outdial,
        &json!({
            "to": format!("sip:+15550104@127.0.0.1:{port}"),
            "url": "http://127.0.0.1:9/never-fetched.vxml",
        }),
    )
    .await;
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    assert_eq!(call["status"], "failed", "{call}");
    assert_eq!(call["disposition"], "unreachable", "{call}");
    let reason = call["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("within 1000 ms") && reason.contains("no_response_timeout_ms"),
        "{call}"
    );
    let mut buf = [0u8; 2048];
    silent.set_nonblocking(true).expect("nonblocking");
    let got = silent.recv(&mut buf).expect("the INVITE arrived");
    assert!(
        buf[..got].starts_with(b"INVITE "),
        "the host did get the INVITE"
    );
}

/// A callee address where nothing listens: the kernel's ICMP port unreachable fails the
/// INVITE at once, and the call's reason says the host refused it (not Timer B's timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_callee_host_fails_the_call_with_a_reason_that_says_so() {
    let outdial = Outdial::start("");
    let dead = free_udp_port();
    let id = create(
        &outdial,
        &json!({
            "to": format!("sip:+15550103@127.0.0.1:{dead}"),
            "url": "http://127.0.0.1:9/never-fetched.vxml",
        }),
    )
    .await;
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    assert_eq!(call["status"], "failed", "{call}");
    assert_eq!(call["disposition"], "unreachable", "{call}");
    assert!(call["sip_status"].is_null(), "{call}");
    let reason = call["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("127.0.0.1:{dead} refused the INVITE"))
            && reason.contains("ICMP port unreachable"),
        "{call}"
    );
    assert!(call["answered_at"].is_null(), "{call}");
}

/// The border (docs/sip.md): while a stranger on the callee's own IP floods Outdial's SIP
/// port with OPTIONS, stranger INVITEs, garbage and oversized datagrams, two live calls run
/// their application and submit the callee's key. The stranger's INVITEs are never answered
/// and its OPTIONS only up to its per-source limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_strangers_does_not_disturb_live_calls() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const CALLS: usize = 2;
    const LIMIT: usize = 20; // sip.stranger_limit's default
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas_calls(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "2500".into()),
        ],
        CALLS as u32,
    );
    let outdial = Outdial::start("");
    let target = outdial.sip;
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind flooder");
            socket.set_nonblocking(true).expect("nonblocking");
            let local = socket.local_addr().expect("addr");
            let (mut sent, mut answers) = (0u64, Vec::<String>::new());
            let mut buf = [0u8; 4096];
            let mut n = 0u64;
            let oversized = vec![b'A'; 9000];
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let request = |method: &str| {
                    format!(
                        "{method} sip:x@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-f{n}\r\n\
                         Max-Forwards: 70\r\nFrom: <sip:f@{local}>;tag=f{n}\r\nTo: <sip:x@{target}>\r\n\
                         Call-ID: flood{n}-{method}@{local}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
                    )
                    .into_bytes()
                };
                for datagram in [
                    request("OPTIONS"),
                    request("INVITE"),
                    b"\x00garbage, not SIP\r\n\r\n".to_vec(),
                    oversized.clone(),
                ] {
                    if socket.send_to(&datagram, target).is_ok() {
                        sent += 1;
                    }
                }
                while let Ok(len) = socket.recv(&mut buf) {
                    answers.push(String::from_utf8_lossy(&buf[..len]).into_owned());
                }
                // Up to ~4,000 datagrams a second: far above the per-source limit, below
                // what fills the kernel's socket buffer (a volume flood is the network's
                // problem, not the border's).
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(300));
            while let Ok(len) = socket.recv(&mut buf) {
                answers.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
            (sent, answers)
        })
    };

    let mut ids = Vec::new();
    for n in 0..CALLS {
        let id = create(
            &outdial,
            &json!({
                "to": sipp.uri(&format!("+1555002{n}")),
                "url": app.url("/app.vxml"),
                "vars": { "patient": "Ada" },
            }),
        )
        .await;
        ids.push(id);
    }
    let mut calls = Vec::new();
    for id in &ids {
        calls.push(outdial.wait_final(id, CALL_TIMEOUT).await);
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, answers) = flooder.join().expect("flooder");
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    for call in &calls {
        assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
        assert_eq!(call["result"], json!({ "confirm": "true" }), "{call}");
    }
    assert!(sipp_status.success(), "{trace}");
    assert!(
        answers.iter().all(|a| a.starts_with("SIP/2.0 200")),
        "only OPTIONS may be answered, never a stranger's INVITE: {:?}",
        answers.iter().find(|a| !a.starts_with("SIP/2.0 200"))
    );
    assert!(
        (1..=LIMIT).contains(&answers.len()),
        "{} answers to {sent} datagrams: the flooding source is held to its limit",
        answers.len()
    );
    assert!(
        sent > 4 * LIMIT as u64,
        "the flood was too thin to test the limit: {sent} datagrams"
    );
}

/// With `answer_stranger_invite = true` a stranger's INVITE gets one `404`, never
/// retransmitted (the read timeout is four times T1, when Timer G would have resent it);
/// the same INVITE again gets the identical answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_stranger_invite_gets_one_404_never_retransmitted() {
    let outdial = Outdial::start_with_sip("127.0.0.1", "answer_stranger_invite = true", "");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let local = socket.local_addr().expect("addr");
    let sip = outdial.sip;
    let invite = format!(
        "INVITE sip:probe@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-s1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t@{local}>;tag=t1\r\nTo: <sip:probe@{sip}>\r\n\
         Call-ID: stranger@{local}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let mut buf = [0u8; 4096];
    socket.send_to(invite.as_bytes(), sip).expect("send");
    let len = socket.recv(&mut buf).expect("one answer");
    let first = buf[..len].to_vec();
    assert!(
        first.starts_with(b"SIP/2.0 404"),
        "{}",
        String::from_utf8_lossy(&first)
    );
    assert!(socket.recv(&mut buf).is_err(), "no retransmission");
    socket.send_to(invite.as_bytes(), sip).expect("send");
    let len = socket.recv(&mut buf).expect("answered again");
    assert_eq!(&buf[..len], &first[..], "the same answer, no state kept");
}
