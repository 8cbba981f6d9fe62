//! HEP capture end to end: the real `outdial serve`, with `sip.hep_capture` pointed at a UDP
//! socket of this test, places a call to a SIPp UAS. The test decodes the HEP v3 copies (the
//! INVITE, the 200 OK and the BYE, with their addresses, ports, agent id and password) and
//! hands each one on to sngrep listening for HEP (`sngrep -N -L udp:…`), a capture tool
//! written by others, whose pcap must hold the same messages between the same ends.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use outdial_tests::{AppServer, Outdial, Sipp, TempDir, free_udp_port};
use serde_json::json;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const AGENT_ID: u32 = 4242;
const PASSWORD: &str = "capture-pw";

/// One SIP message as a capture saw it: who sent it to whom, and its text.
#[derive(Clone, Debug)]
struct Seen {
    source: SocketAddr,
    destination: SocketAddr,
    sip: String,
}

impl Seen {
    fn first_line(&self) -> &str {
        self.sip.lines().next().unwrap_or_default()
    }

    fn cseq(&self) -> &str {
        self.sip
            .lines()
            .find_map(|l| l.strip_prefix("CSeq:"))
            .map(str::trim)
            .unwrap_or_default()
    }
}

/// What a HEP packet says besides the message.
#[derive(Debug)]
struct Hep {
    seen: Seen,
    seconds: u32,
    agent_id: u32,
    password: Option<String>,
    protocol_type: u8,
    /// 17 (UDP) or 6 (TCP, also for TLS).
    ip_protocol: u8,
}

/// Decodes a HEP v3 packet strictly: `HEP3`, a total length equal to the datagram's, chunks
/// that tile the rest, each generic chunk of its type's size.
fn decode(packet: &[u8]) -> Result<Hep, String> {
    if packet.get(..4) != Some(b"HEP3".as_slice()) {
        return Err("no HEP3 magic".into());
    }
    let u16_at = |at: usize| -> Result<u16, String> {
        packet
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated".to_owned())
    };
    if usize::from(u16_at(4)?) != packet.len() {
        return Err(format!("total length {} != {}", u16_at(4)?, packet.len()));
    }
    let (mut family, mut protocol, mut protocol_type) = (0u8, 0u8, 0u8);
    let (mut source_ip, mut destination_ip) = (None, None);
    let (mut source_port, mut destination_port) = (None, None);
    let (mut seconds, mut agent_id, mut password, mut payload) = (None, None, None, None);
    let mut at = 6;
    while at < packet.len() {
        let (vendor, kind, len) = (u16_at(at)?, u16_at(at + 2)?, usize::from(u16_at(at + 4)?));
        let value = packet
            .get(at + 6..at + len)
            .filter(|_| len >= 6)
            .ok_or_else(|| format!("chunk {kind} of length {len} does not fit"))?;
        at += len;
        if vendor != 0 {
            continue;
        }
        let exact = |n: usize| {
            (value.len() == n)
                .then_some(value)
                .ok_or_else(|| format!("chunk {kind} has {} bytes, not {n}", value.len()))
        };
        match kind {
            1 => family = exact(1)?[0],
            2 => protocol = exact(1)?[0],
            3 => {
                source_ip = Some(IpAddr::from(
                    <[u8; 4]>::try_from(exact(4)?).unwrap_or_default(),
                ))
            }
            4 => {
                destination_ip = Some(IpAddr::from(
                    <[u8; 4]>::try_from(exact(4)?).unwrap_or_default(),
                ))
            }
            5 => {
                source_ip = Some(IpAddr::from(
                    <[u8; 16]>::try_from(exact(16)?).unwrap_or_default(),
                ))
            }
            6 => {
                destination_ip = Some(IpAddr::from(
                    <[u8; 16]>::try_from(exact(16)?).unwrap_or_default(),
                ))
            }
            7 => source_port = Some(u16::from_be_bytes(exact(2)?.try_into().unwrap_or_default())),
            8 => {
                destination_port =
                    Some(u16::from_be_bytes(exact(2)?.try_into().unwrap_or_default()))
            }
            9 => seconds = Some(u32::from_be_bytes(exact(4)?.try_into().unwrap_or_default())),
            10 => {
                let micros = u32::from_be_bytes(exact(4)?.try_into().unwrap_or_default());
                if micros >= 1_000_000 {
                    return Err(format!("{micros} microseconds"));
                }
            }
            11 => protocol_type = exact(1)?[0],
            12 => agent_id = Some(u32::from_be_bytes(exact(4)?.try_into().unwrap_or_default())),
            14 => password = Some(String::from_utf8_lossy(value).into_owned()),
            15 => payload = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
    if protocol != 17 && protocol != 6 {
        return Err(format!("IP protocol {protocol}, not UDP or TCP"));
    }
    let expected_family = match source_ip {
        Some(IpAddr::V4(_)) => 2,
        _ => 10,
    };
    if family != expected_family {
        return Err(format!("family {family} for {source_ip:?}"));
    }
    let missing = |what: &str| format!("no {what} chunk");
    Ok(Hep {
        seen: Seen {
            source: SocketAddr::new(
                source_ip.ok_or_else(|| missing("source"))?,
                source_port.ok_or_else(|| missing("source port"))?,
            ),
            destination: SocketAddr::new(
                destination_ip.ok_or_else(|| missing("destination"))?,
                destination_port.ok_or_else(|| missing("destination port"))?,
            ),
            sip: payload.ok_or_else(|| missing("payload"))?,
        },
        seconds: seconds.ok_or_else(|| missing("timestamp"))?,
        agent_id: agent_id.ok_or_else(|| missing("agent id"))?,
        password,
        protocol_type,
        ip_protocol: protocol,
    })
}

/// The UDP datagrams of a pcap file of Ethernet (or Linux cooked) frames, as [`Seen`].
fn read_pcap(path: &Path) -> Vec<Seen> {
    let data = std::fs::read(path).unwrap_or_default();
    let Some(header) = data.get(..24) else {
        return Vec::new();
    };
    let little = header[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let word = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let link = word(&header[20..24]);
    let mut seen = Vec::new();
    let mut at = 24;
    while let Some(record) = data.get(at..at + 16) {
        let len = word(&record[8..12]) as usize;
        let Some(frame) = data.get(at + 16..at + 16 + len) else {
            break;
        };
        at += 16 + len;
        let (ethertype, ip) = match link {
            1 => (u16::from_be_bytes([frame[12], frame[13]]), &frame[14..]),
            113 => (u16::from_be_bytes([frame[14], frame[15]]), &frame[16..]),
            _ => continue,
        };
        let (source, destination, udp) = match ethertype {
            0x0800 => {
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                let addr =
                    |o: usize| IpAddr::from(Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]));
                (addr(12), addr(16), &ip[ihl..])
            }
            0x86dd => {
                let addr = |o: usize| {
                    IpAddr::from(Ipv6Addr::from(
                        <[u8; 16]>::try_from(&ip[o..o + 16]).unwrap_or_default(),
                    ))
                };
                (addr(8), addr(24), &ip[40..])
            }
            _ => continue,
        };
        let port = |o: usize| u16::from_be_bytes([udp[o], udp[o + 1]]);
        seen.push(Seen {
            source: SocketAddr::new(source, port(0)),
            destination: SocketAddr::new(destination, port(2)),
            sip: String::from_utf8_lossy(&udp[8..]).into_owned(),
        });
    }
    seen
}

/// `sngrep` listening for HEP on `port` and writing what it gets to `pcap`.
fn sngrep(port: u16, pcap: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("sngrep log");
    Command::new("sngrep")
        .args(["-N", "-q", "-L", &format!("udp:127.0.0.1:{port}"), "-O"])
        .arg(pcap)
        .env("TERM", "dumb")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone"))
        .stderr(log)
        .spawn()
        .expect("spawn sngrep: install it with `apt-get install sngrep`")
}

/// The messages of a call, in order: INVITE, its 200 OK, BYE and its 200 OK.
fn call_messages(seen: &[Seen]) -> [Option<&Seen>; 4] {
    let find = |first: &str, cseq: &str| {
        seen.iter()
            .find(|s| s.first_line().starts_with(first) && s.cseq().ends_with(cseq))
    };
    [
        find("INVITE ", "INVITE"),
        find("SIP/2.0 200", "INVITE"),
        find("BYE ", "BYE"),
        find("SIP/2.0 200", "BYE"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sip_message_of_a_call_reaches_the_capture_server_as_hep() {
    let capture = UdpSocket::bind("127.0.0.1:0").expect("bind the capture socket");
    capture
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let capture_addr = capture.local_addr().expect("addr");
    let dir = TempDir::new("sngrep");
    let sngrep_port = free_udp_port();
    let pcap = dir.path().join("capture.pcap");
    let mut sngrep = sngrep(sngrep_port, &pcap, &dir.path().join("sngrep.log"));

    let app = AppServer::start().await;
    app.vxml(
        "/bye.vxml",
        r#"<vxml version="2.1"><form><block><exit/></block></form></vxml>"#,
    );
    let sip_lines = format!(
        "hep_capture = \"{capture_addr}\"\nhep_agent_id = {AGENT_ID}\nhep_password = \"{PASSWORD}\""
    );
    let outdial = Outdial::start_with_sip("127.0.0.1", &sip_lines, "[dataplane]\ncores = 1\n");
    assert!(
        !outdial.log().contains(PASSWORD),
        "the HEP password is in the log"
    );
    let sipp = Sipp::uas("answer_wait_bye.xml", &[]);
    let (us, callee) = (outdial.sip, sipp.addr);
    let (status, created) = outdial
        .create_call(&json!({ "to": sipp.uri("+15550042"), "url": app.url("/bye.vxml") }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");

    // Every copy, until the capture socket stays quiet.
    let mut packets = Vec::new();
    let mut buf = vec![0u8; 65_535];
    let quiet_until = Instant::now() + Duration::from_secs(10);
    while let Ok(len) = capture.recv(&mut buf) {
        packets.push(buf[..len].to_vec());
        assert!(Instant::now() < quiet_until, "the copies never stop");
    }
    let decoded: Vec<Hep> = packets
        .iter()
        .map(|p| decode(p).unwrap_or_else(|e| panic!("a copy is not HEP v3: {e}: {p:?}")))
        .collect();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for hep in &decoded {
        assert_eq!(hep.agent_id, AGENT_ID);
        assert_eq!(hep.password.as_deref(), Some(PASSWORD));
        assert_eq!(hep.protocol_type, 1, "SIP");
        assert_eq!(hep.ip_protocol, 17, "UDP");
        assert!(
            now.abs_diff(u64::from(hep.seconds)) < 120,
            "{} is not the time of the call",
            hep.seconds
        );
    }
    let seen: Vec<Seen> = decoded.into_iter().map(|h| h.seen).collect();
    let [invite, ok, bye, bye_ok] = call_messages(&seen);
    for (what, message, from, to) in [
        ("INVITE", invite, us, callee),
        ("200 OK to the INVITE", ok, callee, us),
        ("BYE", bye, us, callee),
        ("200 OK to the BYE", bye_ok, callee, us),
    ] {
        let message = message.unwrap_or_else(|| panic!("no {what} among the copies: {seen:#?}"));
        assert_eq!(
            (message.source, message.destination),
            (from, to),
            "{what}: {message:?}"
        );
    }
    let sent_invite = trace
        .split("INVITE sip:")
        .nth(1)
        .and_then(|rest| rest.lines().find(|l| l.starts_with("Call-ID:")))
        .map(str::to_owned);
    if let Some(call_id) = sent_invite {
        assert!(
            invite.is_some_and(|i| i.sip.contains(&call_id)),
            "the INVITE copy is the INVITE SIPp got ({call_id})"
        );
    }

    // The counters say the same, once published (every second).
    let deadline = Instant::now() + Duration::from_secs(5);
    while outdial.metric("outdial_hep_packets_total").await < packets.len() as f64 {
        assert!(
            Instant::now() < deadline,
            "outdial_hep_packets_total stays under {}",
            packets.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        outdial.metric("outdial_hep_packets_total").await,
        packets.len() as f64
    );
    assert_eq!(outdial.metric("outdial_hep_dropped_total").await, 0.0);

    // sngrep, a capture server written by others, reads the same copies.
    let relay = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for packet in &packets {
        relay
            .send_to(packet, ("127.0.0.1", sngrep_port))
            .expect("send to sngrep");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut from_sngrep;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        from_sngrep = read_pcap(&pcap);
        if call_messages(&from_sngrep).iter().all(Option::is_some) || Instant::now() > deadline {
            break;
        }
    }
    if !call_messages(&from_sngrep).iter().all(Option::is_some) {
        // It may hold its pcap until it exits.
        let _ = Command::new("kill")
            .args(["-TERM", &sngrep.id().to_string()])
            .status();
        let _ = sngrep.wait();
        from_sngrep = read_pcap(&pcap);
    }
    let _ = sngrep.kill();
    let _ = sngrep.wait();
    let sngrep_log = std::fs::read_to_string(dir.path().join("sngrep.log")).unwrap_or_default();
    let [invite, ok, bye, bye_ok] = call_messages(&from_sngrep);
    for (what, message, from, to) in [
        ("INVITE", invite, us, callee),
        ("200 OK to the INVITE", ok, callee, us),
        ("BYE", bye, us, callee),
        ("200 OK to the BYE", bye_ok, callee, us),
    ] {
        let message = message.unwrap_or_else(|| {
            panic!("sngrep's pcap has no {what}: {from_sngrep:#?}\nsngrep says: {sngrep_log}")
        });
        assert_eq!(
            (message.source, message.destination),
            (from, to),
            "sngrep's {what}: {message:?}"
        );
    }
}

/// Over TCP the copies are the framed messages, marked TCP (IP protocol 6), between our SIP
/// address and the callee's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_tcp_is_copied_as_hep_marked_tcp() {
    let capture = UdpSocket::bind("127.0.0.1:0").expect("bind the capture socket");
    capture
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let capture_addr = capture.local_addr().expect("addr");
    let app = AppServer::start().await;
    app.vxml(
        "/bye.vxml",
        r#"<vxml version="2.1"><form><block><exit/></block></form></vxml>"#,
    );
    let sip_lines = format!("hep_capture = \"{capture_addr}\"\nhep_agent_id = {AGENT_ID}");
    let outdial = Outdial::start_with_sip("127.0.0.1", &sip_lines, "[dataplane]\ncores = 1\n");
    let sipp = Sipp::uas_tcp("answer_wait_bye.xml", &[], 1);
    let (us, callee) = (outdial.sip, sipp.addr);
    let to = format!("{};transport=tcp", sipp.uri("+15550043"));
    let (status, created) = outdial
        .create_call(&json!({ "to": to, "url": app.url("/bye.vxml") }))
        .await;
    assert_eq!(status, 201, "{created}");
    let call = outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await;
    assert_eq!(call["status"], "completed", "{call}\n{}", outdial.log());
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");

    let mut decoded = Vec::new();
    let mut buf = vec![0u8; 65_535];
    let quiet_until = Instant::now() + Duration::from_secs(10);
    while let Ok(len) = capture.recv(&mut buf) {
        decoded.push(decode(&buf[..len]).unwrap_or_else(|e| panic!("not HEP v3: {e}")));
        assert!(Instant::now() < quiet_until, "the copies never stop");
    }
    assert!(
        decoded.iter().all(|hep| hep.ip_protocol == 6),
        "every copy says TCP: {decoded:#?}"
    );
    let seen: Vec<Seen> = decoded.into_iter().map(|h| h.seen).collect();
    let [invite, ok, bye, bye_ok] = call_messages(&seen);
    for (what, message, from, to) in [
        ("INVITE", invite, us, callee),
        ("200 OK to the INVITE", ok, callee, us),
        ("BYE", bye, us, callee),
        ("200 OK to the BYE", bye_ok, callee, us),
    ] {
        let message = message.unwrap_or_else(|| panic!("no {what} among the copies: {seen:#?}"));
        assert_eq!(
            (message.source, message.destination),
            (from, to),
            "{what}: {message:?}"
        );
        assert!(
            message.sip.contains("Via: SIP/2.0/TCP "),
            "{what}: {message:?}"
        );
    }
}
