//! SIP over TLS (`sip::tls`): a [`TlsStream`] client against `openssl s_server` over
//! loopback TCP (TLS 1.2 and 1.3, untrusted CA, wrong name, mutual TLS), its server side
//! against `openssl s_client`, and client against server in memory, with no socket, fed one
//! byte at a time. Certificates are made at test time by the `openssl` CLI under
//! `CARGO_TARGET_TMPDIR`.

use std::io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use outdial_dataplane::sip::tls::{
    ClientTlsFiles, MAX_UNREAD_PLAINTEXT, MAX_UNSENT_BYTES, TlsError, TlsStream, client_config,
    server_config,
};
use rustls::{AlertDescription, ProtocolVersion};

const OPTIONS: &str = "OPTIONS sip:ping@sip.test SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-tls-1\r\n\
Max-Forwards: 70\r\n\
From: <sip:outdial@127.0.0.1>;tag=a1\r\n\
To: <sip:ping@sip.test>\r\n\
Call-ID: tls-test-1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

/// Certificates for these tests: a CA, a server certificate it signs for `sip.test` and
/// 127.0.0.1, a client certificate it signs, and an unrelated CA.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn make_ca(dir: &Path, name: &str, subject: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn make_leaf(dir: &Path, name: &str, subject: &str, extensions: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subject,
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("write extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Directories of earlier runs whose process is gone.
        for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix("sip-tls-pki-"));
            if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = tmp.join(format!("sip-tls-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        make_ca(&dir, "ca", "/CN=Outdial test CA");
        make_ca(&dir, "other-ca", "/CN=Someone else's CA");
        make_leaf(
            &dir,
            "server",
            "/CN=sip.test",
            "subjectAltName=DNS:sip.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        );
        make_leaf(
            &dir,
            "client",
            "/CN=outdial.test",
            "subjectAltName=DNS:outdial.test\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        );
        Pki { dir }
    })
}

fn trusting(ca: &str) -> Arc<rustls::ClientConfig> {
    client_config(&ClientTlsFiles {
        ca_file: Some(pki().path(ca)),
        ..ClientTlsFiles::default()
    })
    .expect("client config")
}

/// `openssl s_server -rev` on a free loopback port: it answers each line received with the
/// line reversed, for one connection.
struct SServer {
    child: Child,
    port: u16,
}

impl SServer {
    fn start(extra: &[&str]) -> Self {
        let pki = pki();
        let cert = pki.path("server.pem");
        let key = pki.path("server.key");
        let mut child = Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                "127.0.0.1:0",
                "-naccept",
                "1",
                "-rev",
                "-cert",
            ])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .args(extra)
            .current_dir(&pki.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        // "ACCEPT 127.0.0.1:PORT" once it listens.
        let port = loop {
            let line = lines
                .next()
                .expect("s_server says where it listens")
                .expect("s_server output");
            if let Some(address) = line.strip_prefix("ACCEPT ") {
                let port = address.rsplit(':').next().expect("host:port");
                break port.parse().expect("a port number");
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, port }
    }

    fn connect(&self) -> TcpStream {
        let socket = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to s_server");
        // A guard against a hung test, not a timing assertion.
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        socket
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flush(tls: &mut TlsStream, socket: &mut TcpStream) {
    let mut out = Vec::new();
    if tls.poll_ciphertext(&mut out) > 0 {
        socket.write_all(&out).expect("write to the peer");
    }
}

/// One read from the socket into the stream; `Ok(false)` at EOF.
fn pump(tls: &mut TlsStream, socket: &mut TcpStream) -> Result<bool, TlsError> {
    flush(tls, socket);
    let mut buf = [0u8; 4096];
    let read = match socket.read(&mut buf) {
        Ok(read) => read,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("read from the peer: {e}"),
    };
    if read == 0 {
        tls.receive_eof()?;
        return Ok(false);
    }
    let result = tls.receive_ciphertext(&buf[..read]);
    flush(tls, socket); // answers, and the alert after an error
    result.map(|()| true)
}

fn handshake(tls: &mut TlsStream, socket: &mut TcpStream) -> Result<(), TlsError> {
    while tls.is_handshaking() {
        if !pump(tls, socket)? {
            return Err(TlsError::ClosedDuringHandshake);
        }
    }
    flush(tls, socket);
    Ok(())
}

/// Reads until `expected` has arrived (or the peer fails the connection).
fn read_until(
    tls: &mut TlsStream,
    socket: &mut TcpStream,
    expected: &str,
) -> Result<String, TlsError> {
    let mut received = Vec::new();
    loop {
        tls.read_plaintext(&mut received);
        let text = String::from_utf8_lossy(&received).into_owned();
        if text.contains(expected) {
            return Ok(text);
        }
        if !pump(tls, socket)? {
            tls.read_plaintext(&mut received);
            return Ok(String::from_utf8_lossy(&received).into_owned());
        }
    }
}

/// What `s_server -rev` answers to `text`: each line reversed, ending in "\n".
fn reversed_lines(text: &str) -> String {
    text.split_terminator("\r\n")
        .map(|line| line.chars().rev().collect::<String>() + "\n")
        .collect()
}

fn options_round_trip(server_flags: &[&str], version: ProtocolVersion) {
    let server = SServer::start(server_flags);
    let mut socket = server.connect();
    let mut tls = TlsStream::client(trusting("ca.pem"), "sip.test").expect("client");
    // Written before the handshake: kept and sent once it completes.
    tls.write_plaintext(OPTIONS.as_bytes()).expect("queued");
    assert!(tls.unsent_bytes() >= OPTIONS.len());
    handshake(&mut tls, &mut socket).expect("handshake with s_server");
    assert_eq!(tls.protocol_version(), Some(version));
    let expected = reversed_lines(OPTIONS);
    let echoed = read_until(&mut tls, &mut socket, &expected).expect("echo");
    assert_eq!(echoed, expected);
    // Once more after the handshake.
    tls.write_plaintext(b"BYE sip:ping@sip.test SIP/2.0\r\n")
        .expect("write");
    let echoed =
        read_until(&mut tls, &mut socket, "0.2/PIS tset.pis@gnip:pis EYB\n").expect("echo");
    assert_eq!(echoed, "0.2/PIS tset.pis@gnip:pis EYB\n");
    tls.close();
    flush(&mut tls, &mut socket);
    assert!(matches!(
        tls.write_plaintext(b"late"),
        Err(TlsError::Closed)
    ));
}

#[test]
fn sip_text_crosses_openssl_s_server_over_tls_1_3() {
    options_round_trip(&["-tls1_3"], ProtocolVersion::TLSv1_3);
}

#[test]
fn sip_text_crosses_openssl_s_server_over_tls_1_2() {
    options_round_trip(&["-tls1_2"], ProtocolVersion::TLSv1_2);
}

#[test]
fn an_ip_address_is_checked_against_the_certificate_ip_san() {
    let server = SServer::start(&[]);
    let mut socket = server.connect();
    let mut tls = TlsStream::client(trusting("ca.pem"), "127.0.0.1").expect("client");
    handshake(&mut tls, &mut socket).expect("127.0.0.1 is in the certificate");
}

fn handshake_error(config: Arc<rustls::ClientConfig>, name: &str, flags: &[&str]) -> TlsError {
    let server = SServer::start(flags);
    let mut socket = server.connect();
    let mut tls = TlsStream::client(config, name).expect("client");
    let error = handshake(&mut tls, &mut socket).expect_err("the handshake must fail");
    // The alert telling the server why was already written by `pump`.
    assert!(!tls.wants_write(), "everything polled");
    error
}

#[test]
fn a_certificate_from_an_unknown_ca_fails_with_a_hint_to_set_tls_ca_file() {
    let error = handshake_error(trusting("other-ca.pem"), "sip.test", &[]);
    assert!(matches!(error, TlsError::UntrustedCertificate), "{error:?}");
    assert!(error.to_string().contains("`tls_ca_file`"), "{error}");
}

#[test]
fn a_private_ca_is_not_trusted_through_the_system_roots() {
    let config = client_config(&ClientTlsFiles::default()).expect("this host has CA certificates");
    let error = handshake_error(config, "sip.test", &["-tls1_2"]);
    assert!(matches!(error, TlsError::UntrustedCertificate), "{error:?}");
}

#[test]
fn a_server_name_the_certificate_does_not_list_fails() {
    let error = handshake_error(trusting("ca.pem"), "other.test", &[]);
    assert!(matches!(error, TlsError::WrongServerName), "{error:?}");
    let error = handshake_error(trusting("ca.pem"), "127.0.0.2", &["-tls1_2"]);
    assert!(matches!(error, TlsError::WrongServerName), "{error:?}");
}

#[test]
fn mutual_tls_presents_the_client_certificate_when_asked() {
    let ca = pki().path("ca.pem");
    let ca = ca.to_str().expect("utf-8 path");
    let flags = ["-Verify", "1", "-CAfile", ca, "-tls1_3"];
    let with_cert = client_config(&ClientTlsFiles {
        ca_file: Some(pki().path("ca.pem")),
        cert_file: Some(pki().path("client.pem")),
        key_file: Some(pki().path("client.key")),
    })
    .expect("client config with a certificate");
    let server = SServer::start(&flags);
    let mut socket = server.connect();
    let mut tls = TlsStream::client(with_cert, "sip.test").expect("client");
    tls.write_plaintext(OPTIONS.as_bytes()).expect("queued");
    handshake(&mut tls, &mut socket).expect("handshake");
    let expected = reversed_lines(OPTIONS);
    assert_eq!(
        read_until(&mut tls, &mut socket, &expected).expect("echo"),
        expected
    );

    // Without one, TLS 1.3 ends the client's handshake before the server checks: the refusal
    // arrives as an alert on the first read.
    let server = SServer::start(&flags);
    let mut socket = server.connect();
    let mut tls = TlsStream::client(trusting("ca.pem"), "sip.test").expect("client");
    tls.write_plaintext(OPTIONS.as_bytes()).expect("queued");
    let error = handshake(&mut tls, &mut socket)
        .and_then(|()| read_until(&mut tls, &mut socket, "never").map(|_| ()))
        .expect_err("the server wants a certificate");
    assert!(
        matches!(
            error,
            TlsError::RefusedByPeer(AlertDescription::CertificateRequired)
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("`tls_cert_file`"), "{error}");
}

#[test]
fn the_server_side_answers_openssl_s_client_over_tls_1_2_and_1_3() {
    let config = server_config(&pki().path("server.pem"), &pki().path("server.key"), None)
        .expect("server config");
    for (flag, version) in [
        ("-tls1_3", ProtocolVersion::TLSv1_3),
        ("-tls1_2", ProtocolVersion::TLSv1_2),
    ] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("address").port();
        let mut client = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-verify_return_error",
                flag,
                "-servername",
                "sip.test",
            ])
            .arg("-connect")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-CAfile")
            .arg(pki().path("ca.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client starts");
        let mut stdin = client.stdin.take().expect("piped stdin");
        stdin
            .write_all(OPTIONS.as_bytes())
            .expect("request for s_client to send");
        let (mut socket, _) = listener.accept().expect("s_client connects");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let mut tls = TlsStream::server(Arc::clone(&config)).expect("server");
        let request = read_until(&mut tls, &mut socket, "\r\n\r\n").expect("request");
        assert_eq!(request, OPTIONS);
        assert_eq!(tls.protocol_version(), Some(version));
        tls.write_plaintext(b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
            .expect("answer");
        tls.close();
        flush(&mut tls, &mut socket);
        drop(socket);
        drop(stdin);
        let output = client
            .wait_with_output()
            .expect("s_client ends when we close");
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            printed.contains("SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS"),
            "{flag}: {printed:?}"
        );
    }
}

// In memory: no socket, no openssl process (only its certificates).

fn pair() -> (TlsStream, TlsStream) {
    let server_config = server_config(&pki().path("server.pem"), &pki().path("server.key"), None)
        .expect("server config");
    let client = TlsStream::client(trusting("ca.pem"), "sip.test").expect("client");
    let server = TlsStream::server(server_config).expect("server");
    (client, server)
}

/// Moves ciphertext from `from` to `to` in chunks of `chunk` bytes; returns how many bytes.
fn transfer(from: &mut TlsStream, to: &mut TlsStream, chunk: usize) -> Result<usize, TlsError> {
    let mut wire = Vec::new();
    from.poll_ciphertext(&mut wire);
    for piece in wire.chunks(chunk) {
        to.receive_ciphertext(piece)?;
    }
    Ok(wire.len())
}

fn converse(client: &mut TlsStream, server: &mut TlsStream, chunk: usize) {
    for _ in 0..20 {
        let moved = transfer(client, server, chunk).expect("client to server")
            + transfer(server, client, chunk).expect("server to client");
        if moved == 0 {
            return;
        }
    }
    panic!("the conversation did not settle");
}

#[test]
fn in_memory_handshake_data_both_ways_and_close_notify_one_byte_at_a_time() {
    let (mut client, mut server) = pair();
    client.write_plaintext(OPTIONS.as_bytes()).expect("queued");
    assert!(client.is_handshaking() && server.is_handshaking());
    converse(&mut client, &mut server, 1);
    assert!(!client.is_handshaking() && !server.is_handshaking());
    assert_eq!(client.protocol_version(), Some(ProtocolVersion::TLSv1_3));

    let mut received = Vec::new();
    assert_eq!(server.read_plaintext(&mut received), OPTIONS.len());
    assert_eq!(received, OPTIONS.as_bytes());
    assert_eq!(server.read_plaintext(&mut received), 0, "read once");

    let answer = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    server.write_plaintext(answer).expect("answer");
    converse(&mut client, &mut server, 1);
    let mut received = b"kept: ".to_vec();
    assert_eq!(client.read_plaintext(&mut received), answer.len());
    assert_eq!(&received[6..], answer, "appended");

    client.close();
    assert!(!server.peer_closed());
    converse(&mut client, &mut server, 1);
    assert!(server.peer_closed());
    server
        .receive_eof()
        .expect("closed cleanly: not a truncation");
    assert!(matches!(
        client.write_plaintext(b"x"),
        Err(TlsError::Closed)
    ));
    // The server may still answer a half-closed connection.
    server
        .write_plaintext(b"last")
        .expect("server still writes");
    converse(&mut client, &mut server, 1);
    let mut last = Vec::new();
    client.read_plaintext(&mut last);
    assert_eq!(last, b"last");
}

#[test]
fn in_memory_tls_1_2_and_a_message_larger_than_a_record() {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("TLS 1.2")
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(pki().path("ca.pem")).expect("CA");
        use rustls::pki_types::pem::PemObject as _;
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(&pem).expect("PEM"))
            .expect("CA");
        roots
    })
    .with_no_client_auth();
    let (_, mut server) = pair();
    let mut client = TlsStream::client(Arc::new(config), "sip.test").expect("client");
    converse(&mut client, &mut server, 7);
    assert_eq!(server.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    client.write_plaintext(&big).expect("100 kB");
    converse(&mut client, &mut server, 1000);
    let mut received = Vec::new();
    server.read_plaintext(&mut received);
    assert_eq!(received, big);
}

#[test]
fn a_tcp_end_without_close_notify_is_reported_as_such() {
    let (mut client, mut server) = pair();
    transfer(&mut client, &mut server, 64).expect("ClientHello");
    assert!(matches!(
        server.receive_eof(),
        Err(TlsError::ClosedDuringHandshake)
    ));

    let (mut client, mut server) = pair();
    converse(&mut client, &mut server, 64);
    client.write_plaintext(b"INVITE").expect("write");
    converse(&mut client, &mut server, 64);
    assert!(matches!(server.receive_eof(), Err(TlsError::Truncated)));
    let mut received = Vec::new();
    server.read_plaintext(&mut received);
    assert_eq!(received, b"INVITE", "what came before stays readable");
}

#[test]
fn unsent_bytes_are_bounded_and_a_refused_write_writes_nothing() {
    let (mut client, _server) = pair();
    client.poll_ciphertext(&mut Vec::new()); // the ClientHello, as if written
    // During the handshake: plaintext waits, up to the limit.
    client
        .write_plaintext(&vec![b'a'; MAX_UNSENT_BYTES])
        .expect("exactly the limit");
    assert!(matches!(
        client.write_plaintext(b"b"),
        Err(TlsError::SendBufferFull)
    ));
    assert_eq!(client.unsent_bytes(), MAX_UNSENT_BYTES);

    // After the handshake: ciphertext not polled counts.
    let (mut client, mut server) = pair();
    converse(&mut client, &mut server, 4096);
    let chunk = vec![b'c'; 8192];
    let mut accepted = 0;
    loop {
        match client.write_plaintext(&chunk) {
            Ok(()) => accepted += chunk.len(),
            Err(TlsError::SendBufferFull) => break,
            Err(other) => panic!("unexpected {other:?}"),
        }
        assert!(accepted <= MAX_UNSENT_BYTES, "the limit holds");
    }
    assert!(
        accepted > MAX_UNSENT_BYTES / 2,
        "ciphertext overhead is small: {accepted}"
    );
    let pending = client.unsent_bytes();
    assert!(pending <= MAX_UNSENT_BYTES + 2 * 1024, "{pending}");
    // Once polled, writing works again, and everything accepted arrives.
    transfer(&mut client, &mut server, 16_384).expect("deliver");
    client.write_plaintext(&chunk).expect("room again");
    accepted += chunk.len();
    transfer(&mut client, &mut server, 16_384).expect("deliver");
    let mut received = Vec::new();
    server.read_plaintext(&mut received);
    assert_eq!(received.len(), accepted);
}

#[test]
fn unread_plaintext_is_bounded() {
    let (mut client, mut server) = pair();
    converse(&mut client, &mut server, 4096);
    let chunk = vec![b'r'; 16_000];
    let mut sent = 0;
    let error = loop {
        server.write_plaintext(&chunk).expect("server writes");
        sent += chunk.len();
        // The client receives but never reads.
        if let Err(error) = transfer(&mut server, &mut client, 4096) {
            break error;
        }
        assert!(
            sent <= MAX_UNREAD_PLAINTEXT + chunk.len(),
            "the limit holds"
        );
    };
    assert!(matches!(error, TlsError::ReceiveBufferFull), "{error:?}");
    assert!(sent > MAX_UNREAD_PLAINTEXT, "{sent}");
}

/// xorshift64: reproducible noise.
fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
        .collect()
}

#[test]
fn garbage_ciphertext_is_an_error_never_a_panic() {
    // Plain SIP or HTTP where TLS was expected.
    for (make_client, text) in [(true, "SIP/2.0 400 Bad Request\r\n\r\n"), (false, OPTIONS)] {
        let (mut client, mut server) = pair();
        let stream = if make_client {
            &mut client
        } else {
            &mut server
        };
        let error = stream
            .receive_ciphertext(text.as_bytes())
            .expect_err("not TLS");
        assert!(
            matches!(error, TlsError::NotTls(_) | TlsError::Protocol(_)),
            "{error:?}"
        );
        assert!(error.to_string().contains("speaks TLS"), "{error}");
    }
    // Noise at every stage: fresh, mid-handshake, established.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut errors = 0;
    for round in 0..600 {
        let (mut client, mut server) = pair();
        if round % 3 >= 1 {
            transfer(&mut client, &mut server, 4096).expect("ClientHello");
        }
        if round % 3 == 2 {
            converse(&mut client, &mut server, 4096);
        }
        let len = 1 + (round * 37) % 3000;
        let mut garbage = noise(&mut seed, len);
        if round % 2 == 0 {
            // A plausible record header in front: the content type and version are right.
            garbage.splice(0..0, [23, 3, 3, (len >> 8) as u8, len as u8]);
        }
        let target = if round % 4 < 2 {
            &mut client
        } else {
            &mut server
        };
        if target.receive_ciphertext(&garbage).is_err() {
            errors += 1;
            let _ = target.poll_ciphertext(&mut Vec::new());
        }
        let _ = target.read_plaintext(&mut Vec::new());
        let _ = target.receive_eof();
    }
    assert!(errors > 500, "noise is refused: {errors} of 600");
}

#[test]
fn a_server_name_that_is_not_a_name_is_refused() {
    let error = TlsStream::client(trusting("ca.pem"), "not a host!").expect_err("invalid");
    assert!(matches!(error, TlsError::InvalidServerName(_)), "{error:?}");
    TlsStream::client(trusting("ca.pem"), "[::1]").expect("bracketed IPv6 is accepted");
}
