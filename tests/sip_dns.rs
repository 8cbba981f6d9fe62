//! RFC 3263 end to end: the real `outdial serve` locates trunk proxies and callee hosts
//! through a real DNS server on loopback (dnsmasq, `sip.dns_servers`), SRV first, and fails
//! over to the next SRV target when the first one refuses the INVITE (an ICMP error).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp, TempDir, free_udp_port, sip_invites};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

/// dnsmasq in the foreground on a free loopback port, answering only for `*.test` from
/// its command line (`--srv-host`, `--host-record`); killed on drop.
struct Dnsmasq {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Dnsmasq {
    /// Starts it on a port free now; another test may take that port first (dnsmasq binds
    /// UDP and TCP), so a start that finds it in use is tried again on another.
    fn start(records: &[String]) -> Self {
        let mut last_log = String::new();
        for _ in 0..5 {
            let mut server = Self::spawn(records, free_udp_port());
            if server.wait_ready() {
                return server;
            }
            last_log = server.log();
            if !last_log.contains("in use") {
                break;
            }
        }
        panic!("dnsmasq did not start:\n{last_log}");
    }

    fn spawn(records: &[String], port: u16) -> Self {
        let dir = TempDir::new("dnsmasq");
        let log = std::fs::File::create(dir.path().join("dnsmasq.log")).expect("log file");
        // Debian puts it in /usr/sbin, which a non-root PATH may lack.
        let program = if Path::new("/usr/sbin/dnsmasq").exists() {
            "/usr/sbin/dnsmasq"
        } else {
            "dnsmasq"
        };
        let child = Command::new(program)
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--local=/test/",
                "--log-queries",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run dnsmasq (apt-get install dnsmasq-base)");
        Self { child, port, dir }
    }

    /// Waits until dnsmasq logs that it started (it binds its port before that line);
    /// `false` when it exited instead or took over 10 s.
    fn wait_ready(&mut self) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.log().contains("started, version") {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    /// The `[sip]` line that points outdial at this server.
    fn sip_line(&self) -> String {
        format!("dns_servers = [\"127.0.0.1:{}\"]\n", self.port)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--srv-host=<name>,<target>,<port>,<priority>,<weight>`.
fn srv(name: &str, target: &str, port: u16, priority: u16, weight: u16) -> String {
    format!("--srv-host={name},{target},{port},{priority},{weight}")
}

fn host(name: &str, ip: &str) -> String {
    format!("--host-record={name},{ip}")
}

/// A `[[trunk]]` named `carrier` (the default trunk) whose proxy is the name `carrier.test`.
const CARRIER: &str = "[[trunk]]\nname = \"carrier\"\nrequest_uri = \"sip:{number}@carrier.test\"\n\
                       proxy = \"carrier.test\"\n";

fn start_outdial(dns: &Dnsmasq) -> Outdial {
    let sip = format!("{}default_trunk = \"carrier\"\n", dns.sip_line());
    Outdial::start_with_sip("127.0.0.1", &sip, CARRIER)
}

async fn place(outdial: &Outdial, body: &Value) -> Value {
    let (status, created) = outdial.create_call(body).await;
    assert_eq!(status, 201, "{created}");
    outdial
        .wait_final(created["id"].as_str().expect("id"), CALL_TIMEOUT)
        .await
}

/// `proxy = "carrier.test"` has no address of its own: only its SRV record says where the
/// edge is (another name, on SIPp's port). The INVITE gets there, Request-URI unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_proxy_name_is_found_through_its_srv_record() {
    let sipp = Sipp::uas("busy.xml", &[]);
    let dns = Dnsmasq::start(&[
        srv(
            "_sip._udp.carrier.test",
            "edge.test",
            sipp.addr.port(),
            10,
            0,
        ),
        host("edge.test", "127.0.0.1"),
    ]);
    let outdial = start_outdial(&dns);
    let call = place(
        &outdial,
        &json!({"to": "+15550070", "url": "http://127.0.0.1:9/x.vxml"}),
    )
    .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert_eq!(call["status"], "busy", "{call}\n{}", outdial.log());
    assert!(sipp_status.success(), "{trace}");
    let uris: Vec<String> = sip_invites(&trace)
        .into_iter()
        .map(|(uri, _)| uri)
        .collect();
    assert_eq!(uris, ["sip:+15550070@carrier.test"], "{trace}");
    let queries = dns.log();
    assert!(
        queries.contains("query[NAPTR] carrier.test")
            && queries.contains("query[SRV] _sip._udp.carrier.test"),
        "NAPTR, then SRV:\n{queries}"
    );
}

/// The first SRV target (priority 10) is a port nothing listens on: its ICMP error ends
/// that INVITE at once, and the call goes on to the second (priority 20), SIPp, within the
/// same attempt, and completes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_target_fails_over_to_the_next_and_the_call_completes() {
    let app = AppServer::start().await;
    app.vxml("/app.vxml", GOODBYE);
    let sipp = Sipp::uas("answer_wait_bye.xml", &[]);
    let edge = sipp.addr.port();
    let dead = free_udp_port();
    let dns = Dnsmasq::start(&[
        srv("_sip._udp.carrier.test", "dead.test", dead, 10, 0),
        srv("_sip._udp.carrier.test", "edge.test", edge, 20, 0),
        host("dead.test", "127.0.0.1"),
        host("edge.test", "127.0.0.1"),
    ]);
    let outdial = start_outdial(&dns);
    let started = std::time::Instant::now();
    let call = place(
        &outdial,
        &json!({"to": "+15550071", "url": app.url("/app.vxml")}),
    )
    .await;
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    let log = outdial.log();
    assert_eq!(call["status"], "completed", "{call}\n{log}");
    assert_eq!(call["attempts"], 1, "one attempt, two addresses: {call}");
    assert!(sipp_status.success(), "{trace}");
    assert_eq!(sip_invites(&trace).len(), 1, "{trace}");
    assert!(
        log.contains("failing over to the next address")
            && log.contains(&format!("destination=127.0.0.1:{edge}")),
        "{log}"
    );
    // The ICMP error, not Timer B (32 s), moved the call on.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// Every SRV target refuses: the call fails once the list is used up, and its reason says
/// how many addresses were tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_target_is_dead_the_reason_counts_them() {
    let (first, second) = (free_udp_port(), free_udp_port());
    let dns = Dnsmasq::start(&[
        srv("_sip._udp.carrier.test", "dead.test", first, 10, 0),
        srv("_sip._udp.carrier.test", "dead.test", second, 20, 0),
        host("dead.test", "127.0.0.1"),
    ]);
    let outdial = start_outdial(&dns);
    let call = place(
        &outdial,
        &json!({"to": "+15550072", "url": "http://127.0.0.1:9/x.vxml"}),
    )
    .await;
    assert_eq!(call["status"], "failed", "{call}");
    let reason = call["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("127.0.0.1:{second} refused the INVITE"))
            && reason.contains("2 addresses tried"),
        "{call}"
    );
}

/// A callee URI's host name is located too: with a port, by its A record only; without
/// one, by its SRV record. The Request-URI keeps the name. A name DNS does not know fails
/// the call, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_host_names_are_located_by_a_or_srv() {
    let sipp = Sipp::uas_calls("busy.xml", &[], 2);
    let port = sipp.addr.port();
    let dns = Dnsmasq::start(&[
        host("callee.test", "127.0.0.1"),
        srv("_sip._udp.pbx.test", "callee.test", port, 10, 0),
    ]);
    let outdial = Outdial::start_with_sip("127.0.0.1", &dns.sip_line(), "");
    let with_port = format!("sip:+15550080@callee.test:{port}");
    let by_srv = "sip:+15550081@pbx.test";
    for to in [with_port.as_str(), by_srv] {
        let call = place(
            &outdial,
            &json!({"to": to, "url": "http://127.0.0.1:9/x.vxml"}),
        )
        .await;
        assert_eq!(call["status"], "busy", "{to}: {call}\n{}", outdial.log());
    }
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");
    let uris: Vec<String> = sip_invites(&trace)
        .into_iter()
        .map(|(uri, _)| uri)
        .collect();
    assert_eq!(uris, [with_port.as_str(), by_srv], "{trace}");
    let queries = dns.log();
    assert!(
        !queries.contains("query[SRV] _sip._udp.callee.test"),
        "an explicit port skips SRV (RFC 3263 §4.2):\n{queries}"
    );

    let call = place(
        &outdial,
        &json!({"to": "sip:bob@no-such-host.test", "url": "http://127.0.0.1:9/x.vxml"}),
    )
    .await;
    assert_eq!(call["status"], "failed", "{call}");
    assert!(
        call["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no-such-host.test")),
        "{call}"
    );
}

/// A `503` from the first SRV target moves the call on to the second (RFC 3263 §4.3), which
/// ends it busy; the reason counts both addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_from_the_first_target_fails_over_to_the_next() {
    let unavailable = Sipp::uas("unavailable.xml", &[]);
    let busy = Sipp::uas("busy.xml", &[]);
    let dns = Dnsmasq::start(&[
        srv(
            "_sip._udp.carrier.test",
            "edge.test",
            unavailable.addr.port(),
            10,
            0,
        ),
        srv(
            "_sip._udp.carrier.test",
            "edge.test",
            busy.addr.port(),
            20,
            0,
        ),
        host("edge.test", "127.0.0.1"),
    ]);
    let outdial = start_outdial(&dns);
    let call = place(
        &outdial,
        &json!({"to": "+15550073", "url": "http://127.0.0.1:9/x.vxml"}),
    )
    .await;
    let (first_status, first_trace) = unavailable.finish(Duration::from_secs(10)).await;
    let (second_status, second_trace) = busy.finish(Duration::from_secs(10)).await;
    assert!(first_status.success(), "{first_trace}");
    assert!(second_status.success(), "{second_trace}");
    assert_eq!(call["status"], "busy", "{call}\n{}", outdial.log());
    assert_eq!(call["sip_status"], 486, "{call}");
    assert!(
        call["reason"]
            .as_str()
            .is_some_and(|r| r.ends_with("; 2 addresses tried")),
        "{call}"
    );
}

/// A callee that rang (180) may have been heard: its `503` ends the call there, and the
/// next SRV target is never tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failover_once_the_first_target_rang() {
    let rings = Sipp::uas("ring_then_unavailable.xml", &[]);
    let never = free_udp_port();
    let dns = Dnsmasq::start(&[
        srv(
            "_sip._udp.carrier.test",
            "edge.test",
            rings.addr.port(),
            10,
            0,
        ),
        srv("_sip._udp.carrier.test", "edge.test", never, 20, 0),
        host("edge.test", "127.0.0.1"),
    ]);
    let outdial = start_outdial(&dns);
    let call = place(
        &outdial,
        &json!({"to": "+15550074", "url": "http://127.0.0.1:9/x.vxml"}),
    )
    .await;
    let (sipp_status, trace) = rings.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");
    let log = outdial.log();
    assert_eq!(call["status"], "failed", "{call}\n{log}");
    assert_eq!(call["sip_status"], 503, "{call}");
    assert!(!log.contains("failing over"), "{log}");
    assert!(
        !call["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("addresses tried"),
        "{call}"
    );
}
