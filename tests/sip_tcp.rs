//! SIP over TCP end to end: the real `outdial serve` dials a SIPp UAS that listens on TCP
//! only (`-t t1`: one socket), through a trunk with `transport = "tcp"`; a SIPp UAC calls an
//! `[[inbound]]` number on Outdial's TCP listener; a trunk to a TCP port where nothing
//! listens fails its call at once, one whose host drops our SYNs at the connect timeout, and
//! a large INVITE refused over TCP goes again over UDP. RTP stays on UDP. TLS (baresip as the callee) is in
//! `sip_tls.rs`.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp, dialed_to_ended, dtmf_pcap, form_pairs};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The reminder application (confirm or cancel by key), shared with the other e2e tests.
const REMINDER: &str = include_str!("apps/reminder.vxml");
const INBOUND_APP: &str = include_str!("apps/inbound.vxml");

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

/// `[sip]` lines making `carrier` the default trunk.
const DEFAULT_TRUNK: &str = "default_trunk = \"carrier\"";

/// A `[[trunk]]` named `carrier`, over TCP, whose edge is `edge`.
fn tcp_trunk(edge: SocketAddr) -> String {
    format!(
        "[[trunk]]\nname = \"carrier\"\nrequest_uri = \"sip:{{number}}@carrier.test\"\n\
         proxy = \"{edge}\"\ntransport = \"tcp\"\n"
    )
}

/// The messages of SIPp's trace (`-trace_msg`), each whole, `\r` removed.
fn messages(trace: &str) -> Vec<String> {
    trace
        .replace('\r', "")
        .split("\n\n")
        .map(|m| m.trim_start().to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

/// The first line of each request SIPp received whose method is `method`, whole.
fn received(trace: &str, method: &str) -> Vec<String> {
    messages(trace)
        .into_iter()
        .filter(|m| m.starts_with(&format!("{method} sip:")))
        .collect()
}

/// The local ports of this host's established TCP connections to 127.0.0.1:`port` (from
/// `/proc/net/tcp`: the connecting side of each).
fn connections_to(port: u16) -> Vec<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st (01 = ESTABLISHED), ...
            let (local, rem, state) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
            (*rem == remote && *state == "01")
                .then(|| u16::from_str_radix(local.rsplit(':').next()?, 16).ok())
                .flatten()
        })
        .collect()
}

/// SIPp calls +15550100 over TCP and presses 7 `delay_ms` after the answer. Requires the
/// call answered and ended by a BYE, and to be the only one listed; returns its final record
/// and SIPp's trace.
async fn call_in_over_tcp_pressing_7(outdial: &Outdial, delay_ms: u32) -> (Value, String) {
    let sipp = Sipp::uac_tcp(
        "call_in_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("7")),
            ("DTMF_DELAY_MS", delay_ms.to_string()),
        ],
        outdial.sip,
        "+15550100",
    );
    let (sipp_status, trace) = sipp.finish(CALL_TIMEOUT).await;
    assert!(
        sipp_status.success(),
        "SIPp's call over TCP was not answered and ended by a BYE:\n{trace}\n{}",
        outdial.log()
    );
    let (status, page) = outdial
        .request(&outdial.api_key, reqwest::Method::GET, "/v1/calls", None)
        .await;
    assert_eq!(status, 200, "{page}");
    let listed = page["calls"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    (outdial.wait_final(&id, CALL_TIMEOUT).await, trace)
}

/// Strangers' connections to `to`, opened in the order of `plan` (COUNT from 127.0.0.HOST
/// for each (HOST, COUNT)), silent and kept open by the caller.
async fn silent_connections(
    to: SocketAddr,
    plan: impl IntoIterator<Item = (u8, usize)>,
) -> Vec<tokio::net::TcpStream> {
    let mut strangers = Vec::new();
    for (host, count) in plan {
        for _ in 0..count {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::from(([127, 0, 0, host], 0)))
                .expect("bind a loopback source address");
            match socket.connect(to).await {
                Ok(stream) => strangers.push(stream),
                Err(e) => panic!("connect {} from 127.0.0.{host}: {e}", strangers.len()),
            }
        }
    }
    strangers
}

/// Places a call to `to` through the default trunk; returns its final record.
async fn call_through_trunk(outdial: &Outdial, to: &str, url: &str) -> Value {
    let (status, created) = outdial.create_call(&json!({"to": to, "url": url})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    outdial.wait_final(&id, CALL_TIMEOUT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_trunk_call_is_answered_hears_the_key_and_completes() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas_tcp(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "1500".into()),
        ],
        1,
    );
    let outdial = Outdial::start_with_sip("127.0.0.1", DEFAULT_TRUNK, &tcp_trunk(sipp.addr));
    let call = call_through_trunk(&outdial, "+15550001", &app.url("/app.vxml")).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(
        call["status"],
        "completed",
        "{call}\n{trace}\n{}",
        outdial.log()
    );
    assert_eq!(call["sip_status"], 200, "{call}");
    assert_eq!(call["result"], json!({ "confirm": "true" }), "{call}");
    let submits: Vec<_> = app
        .received()
        .into_iter()
        .filter(|r| r.path == "/submit")
        .collect();
    assert_eq!(submits.len(), 1, "{submits:?}");
    assert_eq!(
        form_pairs(&submits[0].body),
        vec![("confirm".to_owned(), "true".to_owned())]
    );
    assert!(sipp_status.success(), "{trace}");
    // SIPp listened on TCP only, so everything it received came over TCP; what we wrote
    // says so too.
    let invites = received(&trace, "INVITE");
    assert_eq!(invites.len(), 1, "{trace}");
    for wanted in ["Via: SIP/2.0/TCP ", ";transport=tcp>"] {
        assert!(invites[0].contains(wanted), "{wanted}:\n{}", invites[0]);
    }
    let byes = received(&trace, "BYE");
    assert_eq!(byes.len(), 1, "{trace}");
    assert!(byes[0].contains("Via: SIP/2.0/TCP "), "{}", byes[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_to_one_tcp_peer_share_one_connection() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas_tcp(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "1000".into()),
        ],
        2,
    );
    // Connections belong to a core: with one core, both calls are its.
    let outdial = Outdial::start_with_sip(
        "127.0.0.1",
        DEFAULT_TRUNK,
        &format!("{}\n[dataplane]\ncores = 1\n", tcp_trunk(sipp.addr)),
    );
    // The connection outlives a call (it closes after 10 idle minutes): the second call
    // finds the first one's, from the same local port, and no other. (Sampled while each
    // call is up: SIPp closes its end once its last call is over.)
    let mut ours = Vec::new();
    for number in ["+15550002", "+15550003"] {
        let (status, created) = outdial
            .create_call(&json!({"to": number, "url": app.url("/app.vxml")}))
            .await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().expect("id").to_owned();
        let up = outdial.wait_status(&id, "in-progress", CALL_TIMEOUT).await;
        ours.push(connections_to(sipp.addr.port()));
        assert_eq!(up["status"], "in-progress", "{up}");
        let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
        assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    }
    assert_eq!(ours[0].len(), 1, "one connection to SIPp: {ours:?}");
    assert_eq!(
        ours[0], ours[1],
        "the second call reused the first's connection"
    );
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");
    assert_eq!(received(&trace, "INVITE").len(), 2, "{trace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_tcp_is_answered_and_recorded_inbound() {
    let app = AppServer::start().await;
    app.vxml("/in.vxml", INBOUND_APP);
    app.vxml("/submit", GOODBYE);
    let outdial = Outdial::start_with_sip(
        "127.0.0.1",
        "inbound_sources = [\"127.0.0.1\"]",
        &format!(
            "[[inbound]]\nnumber = \"+15550100\"\nurl = \"{}\"\n",
            app.url("/in.vxml")
        ),
    );
    let (call, trace) = call_in_over_tcp_pressing_7(&outdial, 1500).await;
    assert_eq!(call["direction"], "inbound", "{call}");
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(call["result"]["choice"], "7", "{call}");
    // Our 200 and BYE came back over TCP (SIPp's UAC has no UDP socket for SIP).
    let byes = received(&trace, "BYE");
    assert_eq!(byes.len(), 1, "{trace}");
    assert!(byes[0].contains("Via: SIP/2.0/TCP "), "{}", byes[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_trunk_where_nothing_listens_fails_the_call_at_once_as_unreachable() {
    // A port nobody listens on: bound then released.
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind TCP");
    let outdial = Outdial::start_with_sip("127.0.0.1", DEFAULT_TRUNK, &tcp_trunk(dead));
    let (status, created) = outdial
        .create_call(&json!({"to": "+15550009", "url": "http://127.0.0.1:9/never.vxml"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let took = dialed_to_ended(&call);
    assert_eq!(call["status"], "failed", "{call}\n{}", outdial.log());
    assert_eq!(call["disposition"], "unreachable", "{call}");
    let reason = call["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("{dead} refused the TCP connection")),
        "the reason says TCP was refused: {call}"
    );
    assert!(
        took < Duration::from_secs(1),
        "ended in {took:?}, not at once: {call}"
    );
}

/// A `sip:` target naming `;transport=tcp` is dialled over TCP with no trunk saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_naming_transport_tcp_is_dialled_over_tcp() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas_tcp(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "1000".into()),
        ],
        1,
    );
    let outdial = Outdial::start("");
    let to = format!("{};transport=tcp", sipp.uri("+15550004"));
    let (status, created) = outdial
        .create_call(&json!({"to": to, "url": app.url("/app.vxml")}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(
        call["status"],
        "completed",
        "{call}\n{trace}\n{}",
        outdial.log()
    );
    assert_eq!(call["result"], json!({ "confirm": "true" }), "{call}");
    assert!(sipp_status.success(), "{trace}");
    let invites = received(&trace, "INVITE");
    assert_eq!(invites.len(), 1, "{trace}");
    assert!(invites[0].contains("Via: SIP/2.0/TCP "), "{}", invites[0]);
}

/// `sip.udp_mtu_switch` (RFC 3261 §18.1.1): an INVITE with its offer is longer than 500
/// bytes, so to a plain `sip:` target it leaves over TCP (SIPp listens on nothing else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_udp_mtu_switch_goes_over_tcp() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas_tcp(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "1000".into()),
        ],
        1,
    );
    let outdial = Outdial::start_with_sip("127.0.0.1", "udp_mtu_switch = 500", "");
    let (status, created) = outdial
        .create_call(&json!({"to": sipp.uri("+15550005"), "url": app.url("/app.vxml")}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(
        call["status"],
        "completed",
        "{call}\n{trace}\n{}",
        outdial.log()
    );
    assert!(sipp_status.success(), "{trace}");
    let invites = received(&trace, "INVITE");
    assert_eq!(invites.len(), 1, "{trace}");
    assert!(invites[0].contains("Via: SIP/2.0/TCP "), "{}", invites[0]);
}

/// The callee's own BYE comes back on the connection we opened (SIPp `-t t1` has one) and
/// ends the call; our 200 goes back on it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_callees_bye_on_our_connection_ends_the_call() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    let sipp = Sipp::uas_tcp(
        "callee_hangs_up.xml",
        &[("HANGUP_AFTER_MS", "1000".into())],
        1,
    );
    let outdial = Outdial::start_with_sip("127.0.0.1", DEFAULT_TRUNK, &tcp_trunk(sipp.addr));
    let call = call_through_trunk(&outdial, "+15550006", &app.url("/app.vxml")).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "completed", "{call}\n{trace}");
    assert!(
        call["reason"]
            .as_str()
            .is_some_and(|r| r.contains("callee hung up")),
        "{call}"
    );
    assert!(
        sipp_status.success(),
        "SIPp expected our 200 OK to its BYE:\n{trace}"
    );
}

/// RFC 3261 §18.1.1: an INVITE moved to TCP for its size (`udp_mtu_switch`) whose TCP
/// connection is refused goes again over UDP, where SIPp (UDP only) answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_invite_refused_over_tcp_goes_again_over_udp() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "1000".into()),
        ],
    );
    let outdial = Outdial::start_with_sip("127.0.0.1", "udp_mtu_switch = 500", "");
    let (status, created) = outdial
        .create_call(&json!({"to": sipp.uri("+15550006"), "url": app.url("/app.vxml")}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(
        call["status"],
        "completed",
        "{call}\n{trace}\n{}",
        outdial.log()
    );
    assert_eq!(call["result"], json!({ "confirm": "true" }), "{call}");
    assert!(sipp_status.success(), "{trace}");
    let invites = received(&trace, "INVITE");
    assert!(!invites.is_empty(), "{trace}");
    assert!(
        invites.iter().all(|i| i.contains("Via: SIP/2.0/UDP ")),
        "every INVITE SIPp got came over UDP: {invites:?}"
    );
    assert!(
        invites[0].len() > 500,
        "the INVITE was large: {}",
        invites[0]
    );
}

/// A TCP listener that never completes a connection: its accept queue (backlog 0) is held
/// full by one connection nobody accepts, so the kernel drops every later SYN. Python holds
/// it (std cannot set the backlog); killed on drop.
struct Blackhole {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Blackhole {
    fn start() -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket, time\n\
                 s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)\n\
                 port = s.getsockname()[1]\n\
                 held = socket.create_connection(('127.0.0.1', port))\n\
                 print(port, flush=True)\n\
                 time.sleep(120)\n",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the port");
        let port: u16 = line.trim().parse().expect("a port");
        Self {
            child,
            addr: ([127, 0, 0, 1], port).into(),
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP trunk whose host drops our SYNs fails the call at `sip.tcp_connect_timeout_ms`,
/// saying so, not after the kernel's SYN retries or the no-response timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_trunk_that_never_accepts_fails_the_call_at_the_connect_timeout() {
    let hole = Blackhole::start();
    let outdial = Outdial::start_with_sip(
        "127.0.0.1",
        &format!("{DEFAULT_TRUNK}\ntcp_connect_timeout_ms = 1000\nno_response_timeout_ms = 20000"),
        &tcp_trunk(hole.addr),
    );
    let (status, created) = outdial
        .create_call(&json!({"to": "+15550010", "url": "http://127.0.0.1:9/never.vxml"}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let call = outdial.wait_final(&id, CALL_TIMEOUT).await;
    assert_eq!(call["status"], "failed", "{call}\n{}", outdial.log());
    assert_eq!(call["disposition"], "unreachable", "{call}");
    let reason = call["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "{} did not accept the TCP connection within 1000 ms",
            hole.addr
        )),
        "{call}"
    );
    let took = dialed_to_ended(&call);
    assert!(
        took < Duration::from_secs(10),
        "ended after {took:?}: the 20 s no-response timeout did not end it: {call}"
    );
}

/// Bad neighbours: strangers open more TCP connections to the SIP port than a core holds
/// (1,024), say nothing and keep them open: one address 100 of them, then 40 others 30 each.
/// A call through the TCP trunk must still get its connection and complete; one address
/// keeps at most 32 (`sip.tcp_connections_per_source`), and all of them together at most 896
/// (the core keeps an eighth for the connections it opens): past 896 each newcomer replaces
/// the quietest. The closes are counted by reason. (`sip.tcp_first_message_timeout_ms` is
/// set to its longest here so that none is closed for silence, however slowly the strangers
/// connect; closing the silent ones is the unit tests' part.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_holding_more_connections_than_a_core_has_do_not_stop_a_tcp_trunk_call() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", REMINDER);
    app.vxml("/submit", GOODBYE);
    let sipp = Sipp::uas_tcp(
        "answer_dtmf.xml",
        &[
            ("DTMF_PCAP", dtmf_pcap("1")),
            ("DTMF_DELAY_MS", "500".into()),
        ],
        1,
    );
    let outdial = Outdial::start_with_sip(
        "127.0.0.1",
        &format!("{DEFAULT_TRUNK}\ntcp_first_message_timeout_ms = 600000"),
        &format!("{}\n[dataplane]\ncores = 1\n", tcp_trunk(sipp.addr)),
    );
    let plan = std::iter::once((2u8, 100)).chain((3u8..43).map(|host| (host, 30)));
    let strangers = silent_connections(outdial.sip, plan).await;
    // The 68 over 127.0.0.2's 32 are closed as accepted; the 1,232 others are accepted,
    // the 336 past 896 each in place of the quietest.
    let closed = |reason: &'static str| {
        let outdial = &outdial;
        async move {
            let line = format!("outdial_sip_connections_closed_total{{reason=\"{reason}\"}} ");
            let text = outdial.metrics_text().await;
            text.lines()
                .find_map(|l| l.strip_prefix(&line)?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {line:?} in\n{text}"))
        }
    };
    // Let the core accept (and close) them all before the call: a connection still in the
    // kernel's accept queue is established on the client's side too, and would be counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while closed("per_source").await + closed("idlest").await < 68 + 336 {
        assert!(
            std::time::Instant::now() < deadline,
            "the core did not take in every stranger's connection within 30 s:\n{}",
            outdial.metrics_text().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let held = connections_to(outdial.sip.port()).len();
    assert!(
        (800..=896).contains(&held),
        "strangers hold {held} connections"
    );
    let call = call_through_trunk(&outdial, "+15550009", &app.url("/app.vxml")).await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(call["result"], json!({ "confirm": "true" }), "{call}");
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");
    assert_eq!(closed("per_source").await, 68);
    assert_eq!(closed("idlest").await, 336);
    assert_eq!(closed("no_message").await, 0);
    assert_eq!(
        closed("no_room").await,
        0,
        "an idle connection always made way"
    );
    drop(strangers);
}

/// A good caller behind bad neighbours: strangers from 40 addresses hold more connections
/// than the accepted share (1,200 of 896), silent, with the first-message limit at its
/// longest. A caller that connects over TCP next takes the place of the quietest of them, is
/// answered, and its call completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_caller_gets_in_while_strangers_hold_every_accepted_connection() {
    let app = AppServer::start().await;
    app.vxml("/in.vxml", INBOUND_APP);
    app.vxml("/submit", GOODBYE);
    let outdial = Outdial::start_with_sip(
        "127.0.0.1",
        "inbound_sources = [\"127.0.0.1\"]\ntcp_first_message_timeout_ms = 600000",
        &format!(
            "[[inbound]]\nnumber = \"+15550100\"\nurl = \"{}\"\n\n[dataplane]\ncores = 1\n",
            app.url("/in.vxml")
        ),
    );
    let strangers = silent_connections(outdial.sip, (2u8..42).map(|host| (host, 30))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (call, _) = call_in_over_tcp_pressing_7(&outdial, 1000).await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    assert_eq!(call["result"]["choice"], "7", "{call}");
    // 304 strangers made room for others, and one more for the caller.
    let text = outdial.metrics_text().await;
    let line = "outdial_sip_connections_closed_total{reason=\"idlest\"} ";
    let idlest = text
        .lines()
        .find_map(|l| l.strip_prefix(line)?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {line:?} in\n{text}"));
    assert_eq!(idlest, 305, "{text}");
    drop(strangers);
}
