//! End-to-end HTTPS: a self-signed certificate made with `openssl`, calls created over HTTPS by
//! curl (`--cacert`) and by `outdial call --cacert`, the certificate replaced and reloaded on
//! SIGHUP (seen by a new connection), and a reload of bad files keeping the old certificate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use outdial_tests::{Outdial, TempDir, outdial_bin};
use serde_json::{Value, json};

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A private authority (self-signed, P-256) and a certificate for 127.0.0.1 it signed, named
/// `cn`: returns (authority PEM, certificate PEM, key PEM). rustls (the CLI's client) does not
/// take a CA certificate as a server's own, so the server gets a leaf.
fn make_cert(dir: &Path, cn: &str) -> (PathBuf, PathBuf, PathBuf) {
    let file = |ext: &str| {
        dir.join(format!("{cn}.{ext}"))
            .to_string_lossy()
            .into_owned()
    };
    let (ca, ca_key, csr) = (file("ca.pem"), file("ca.key"), file("csr"));
    let (cert, key, ext) = (file("pem"), file("key"), file("ext"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let subject = format!("/CN={cn} authority");
    let leaf_subject = format!("/CN={cn}");
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", &subject],
        ]
        .concat()
        .into_iter()
        .chain(["-keyout", &ca_key, "-out", &ca])
        .collect::<Vec<_>>(),
    );
    openssl(
        &[
            &["req", "-new"][..],
            &ec,
            &["-subj", &leaf_subject, "-keyout", &key, "-out", &csr],
        ]
        .concat(),
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write ext");
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    (ca.into(), cert.into(), key.into())
}

/// curl with `args`; returns (HTTP status, 0 when no answer; curl's exit code; JSON body).
fn curl(args: &[&str]) -> (u16, i32, Value) {
    let output = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        output.status.code().unwrap_or(-1),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// Opens one TLS connection (argv: CA file, port), sends `GET /healthz` and prints the status
/// line; waits for a line on stdin, then does it again on the same connection.
const HELD_CONNECTION: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2]))), server_hostname="127.0.0.1")
def get():
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = [int(l.split(b":")[1]) for l in lines if l.lower().startswith(b"content-length")]
    while len(rest) < (length[0] if length else 0):
        rest += s.recv(4096)
    print(lines[0].decode(), flush=True)
get()
sys.stdin.readline()
get()
"#;

fn hangup(outdial: &Outdial) {
    let status = Command::new("kill")
        .args(["-HUP", &outdial.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Waits until the server's log has `count` lines containing `text`.
fn wait_log(outdial: &Outdial, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while outdial.log().matches(text).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the log:\n{}",
            outdial.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_api_serves_https_and_reloads_its_certificate_on_sighup() {
    let dir = TempDir::new("https");
    let (ca1, cert1, key1) = make_cert(dir.path(), "outdial-test-1");
    let live_cert = dir.path().join("api.pem");
    let live_key = dir.path().join("api.key");
    std::fs::copy(&cert1, &live_cert).expect("copy cert");
    std::fs::copy(&key1, &live_key).expect("copy key");
    let outdial = Outdial::start(&format!(
        "[https]\ncert = \"{}\"\nkey = \"{}\"\n",
        live_cert.display(),
        live_key.display()
    ));
    let api = outdial.api.replace("http://", "https://");
    let auth = format!("Authorization: Bearer {}", outdial.api_key);
    let at = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let body =
        json!({ "to": "sip:+15550100@127.0.0.1:9", "url": "http://127.0.0.1:9/a.vxml", "at": at })
            .to_string();
    let calls = format!("{api}/v1/calls");
    let cacert1 = ca1.to_string_lossy().into_owned();
    let create = |cacert: &str| {
        curl(&[
            "--cacert",
            cacert,
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
            &calls,
        ])
    };
    let created = create(&cacert1);
    assert_eq!(created.0, 201, "{created:?}");
    assert_eq!(created.2["status"], "queued");
    // Plain HTTP on the HTTPS port gets no API answer.
    let plain = curl(&["-H", &auth, &outdial.api.replace("https://", "http://")]);
    assert_ne!(plain.0, 200, "{plain:?}");

    // The outdial CLI over HTTPS, trusting the certificate with --cacert.
    let cli = Command::new(outdial_bin())
        .args([
            "call",
            "--api",
            &api,
            "--no-wait",
            "--json",
            "--cacert",
            &cacert1,
        ])
        .args([
            "--to",
            "sip:+15550100@127.0.0.1:9",
            "--url",
            "http://127.0.0.1:9/a.vxml",
        ])
        .env("OUTDIAL_API_KEY", &outdial.api_key)
        .output()
        .expect("run outdial call");
    assert!(
        cli.status.success(),
        "{}{}",
        String::from_utf8_lossy(&cli.stdout),
        String::from_utf8_lossy(&cli.stderr)
    );

    // A connection open across the reload keeps working (Python's ssl, one keep-alive socket).
    let port = api.rsplit(':').next().expect("port").to_owned();
    let mut held = Command::new("python3")
        .args(["-c", HELD_CONNECTION, &cacert1, &port])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut held_out = std::io::BufReader::new(held.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut held_out, &mut line).expect("first answer");
    assert_eq!(line.trim(), "HTTP/1.1 200 OK", "before the reload");

    // Replace the certificate and SIGHUP: a new connection sees the new one.
    let (ca2, cert2, key2) = make_cert(dir.path(), "outdial-test-2");
    std::fs::copy(&cert2, &live_cert).expect("copy cert");
    std::fs::copy(&key2, &live_key).expect("copy key");
    hangup(&outdial);
    wait_log(&outdial, "HTTPS certificate reloaded", 1);
    std::io::Write::write_all(&mut held.stdin.take().expect("stdin"), b"go\n").expect("signal");
    line.clear();
    std::io::BufRead::read_line(&mut held_out, &mut line).expect("second answer");
    assert_eq!(
        line.trim(),
        "HTTP/1.1 200 OK",
        "the same connection after the reload"
    );
    assert!(held.wait().expect("python3").success());
    let cacert2 = ca2.to_string_lossy().into_owned();
    let with_new = create(&cacert2);
    assert_eq!(with_new.0, 201, "{with_new:?}");
    let with_old = create(&cacert1);
    assert_eq!(
        (with_old.0, with_old.1),
        (0, 60),
        "the old certificate is no longer served"
    );

    // A reload of files that do not load keeps the certificate in use.
    std::fs::write(&live_cert, "not a certificate\n").expect("write");
    hangup(&outdial);
    wait_log(&outdial, "HTTPS certificate reload failed", 1);
    let still = create(&cacert2);
    assert_eq!(still.0, 201, "{still:?}");
}
