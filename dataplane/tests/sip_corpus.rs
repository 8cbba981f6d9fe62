//! The SIP parser against public corpora: RFC 4475 and RFC 5118 torture messages, the
//! PROTOS c07-sip robustness suite and the RFC 3665-family call flows. A missing corpus
//! directory fails the test.

use std::fs;
use std::panic::catch_unwind;
use std::path::{Path, PathBuf};

use outdial_dataplane::sip::message::{HeaderName, Host, Message, Recovered};
use outdial_dataplane::sip::parse_message;

fn corpus(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus")
        .join(name);
    assert!(
        dir.is_dir(),
        "corpus {} is missing: run bench/corpora/fetch.sh (README, \"Test it\")",
        dir.display()
    );
    dir
}

/// Rows of an `expected.tsv`: (file, parser verdict).
fn expectations(dir: &Path, verdict_column: usize) -> Vec<(String, String)> {
    let text = fs::read_to_string(dir.join("expected.tsv")).expect("expected.tsv is readable");
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            (columns[0].to_owned(), columns[verdict_column].to_owned())
        })
        .collect()
}

/// The status our parser maps RFC 4475's expectations to (`None`: parses).
fn rfc4475_status(data: &[u8]) -> Result<(), u16> {
    parse_message(data)
        .map(|_| ())
        .map_err(|error| error.status())
}

#[test]
fn rfc4475_torture_messages() {
    let dir = corpus("sip-rfc4475-torture");
    let rows = expectations(&dir, 4);
    assert_eq!(rows.len(), 50);
    let mut liberal_accepted = Vec::new();
    for (file, verdict) in &rows {
        let data = fs::read(dir.join(file)).expect("torture file is readable");
        let result =
            catch_unwind(|| rfc4475_status(&data)).unwrap_or_else(|_| panic!("{file} panicked"));
        match verdict.as_str() {
            "accept" => assert_eq!(result, Ok(()), "{file} must parse"),
            "reject" => assert!(result.is_err(), "{file} must be rejected"),
            "reject-or-liberal" => {
                if result.is_ok() {
                    liberal_accepted.push(file.as_str());
                }
            }
            other => panic!("unknown verdict {other}"),
        }
    }
    // Documented in sip::message: liberal on these three, strict on the other five.
    assert_eq!(
        liberal_accepted,
        ["escruri.dat", "baddate.dat", "badaspec.dat"]
    );
}

#[test]
fn rfc4475_specific_statuses() {
    let dir = corpus("sip-rfc4475-torture");
    let read = |file: &str| fs::read(dir.join(file)).expect("torture file is readable");
    assert_eq!(rfc4475_status(&read("badvers.dat")), Err(505));
    assert_eq!(rfc4475_status(&read("mismatch01.dat")), Err(400));
    assert_eq!(rfc4475_status(&read("mismatch02.dat")), Err(501));
    for (file, status) in [
        ("unkscm.dat", 416),
        ("novelsc.dat", 416),
        ("multi01.dat", 400),
        ("insuf.dat", 400),
    ] {
        let data = read(file);
        let message = parse_message(&data).expect("parses");
        assert_eq!(
            message.check_request().map_err(|e| e.status()),
            Err(status),
            "{file}"
        );
    }
    // The REGISTER of dblreq is one message; the trailing INVITE-like octets are ignored.
    let dblreq = read("dblreq.dat");
    let message = parse_message(&dblreq).expect("parses");
    assert_eq!(message.body(), b"");
    // inv2543 has no Content-Length: the body is the rest of the datagram.
    assert_eq!(
        parse_message(&read("inv2543.dat"))
            .expect("parses")
            .body()
            .len(),
        105
    );
    assert_eq!(
        parse_message(&read("mpart01.dat"))
            .expect("parses")
            .body()
            .len(),
        553
    );
    // wsinv: folded, spaced, compact headers.
    let wsinv = read("wsinv.dat");
    let message = parse_message(&wsinv).expect("parses");
    assert_eq!(message.cseq().map(|c| c.number), Some(9));
    assert_eq!(message.max_forwards(), Some(68));
    assert_eq!(message.via().and_then(|v| v.branch()), Some("390skdjuw"));
    assert_eq!(message.to().and_then(|t| t.tag()), Some("1918181833n"));
    // badvers can still be answered: its Via/From/To/Call-ID/CSeq are recoverable.
    assert!(Recovered::scan(&read("badvers.dat")).is_some());
}

#[test]
fn rfc5118_ipv6_messages() {
    let dir = corpus("sip-rfc5118-ipv6-torture");
    for (file, verdict) in expectations(&dir, 3) {
        for set in [dir.clone(), dir.join("wire")] {
            let data = fs::read(set.join(&file)).expect("file is readable");
            let result = catch_unwind(|| parse_message(&data).map(|_| ()).map_err(|e| e.status()))
                .unwrap_or_else(|_| panic!("{file} panicked"));
            if verdict == "reject" {
                assert_eq!(result, Err(400), "{file}");
            } else {
                assert_eq!(result, Ok(()), "{file} in {}", set.display());
            }
        }
    }
    let read = |file: &str| fs::read(dir.join("wire").join(file)).expect("file is readable");
    let ambiguous = read("port-ambiguous.dat");
    let message = parse_message(&ambiguous).expect("parses");
    let uri = message
        .request_uri()
        .and_then(|u| u.sip())
        .expect("SIP URI");
    assert_eq!(
        (uri.host, uri.port),
        (Host::Ipv6("2001:db8::10:5070"), None)
    );
    let unambiguous = read("port-unambiguous.dat");
    let message = parse_message(&unambiguous).expect("parses");
    let uri = message
        .request_uri()
        .and_then(|u| u.sip())
        .expect("SIP URI");
    assert_eq!(
        (uri.host, uri.port),
        (Host::Ipv6("2001:db8::10"), Some(5070))
    );
}

/// PROTOS c07 case file: `<len> <INVITE template><len> <teardown template>`.
fn protos_messages(data: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut rest = data;
    while let Some(space) = rest.iter().position(|&b| b == b' ') {
        let length: usize = std::str::from_utf8(&rest[..space])
            .expect("length")
            .parse()
            .expect("length");
        let template = &rest[space + 1..space + 1 + length];
        rest = &rest[space + 1 + length..];
        messages.push(fill_protos_template(template));
    }
    messages
}

fn fill_protos_template(template: &[u8]) -> Vec<u8> {
    let replacements: &[(&[u8], &[u8])] = &[
        (b"<To>", b"sip:callee@127.0.0.1"),
        (b"<From>", b"sip:protos@127.0.0.1"),
        (b"<From-Address>", b"127.0.0.1"),
        (b"<From-IP>", b"127.0.0.1"),
        (b"<Local-Port>", b"5061"),
        (b"<Branch-ID>", b"z9hG4bKprotos"),
        (b"<Call-ID>", b"protos-call"),
        (b"<CSeq>", b"1"),
        (b"<Teardown-Method>", b"CANCEL"),
    ];
    let mut out = Vec::with_capacity(template.len());
    let mut at = 0;
    'scan: while at < template.len() {
        for (from, to) in replacements {
            if template[at..].starts_with(from) {
                out.extend_from_slice(to);
                at += from.len();
                continue 'scan;
            }
        }
        out.push(template[at]);
        at += 1;
    }
    if let Some(body) = out.windows(4).position(|w| w == b"\r\n\r\n") {
        let length = (out.len() - body - 4).to_string();
        if let Some(marker) = out.windows(16).position(|w| w == b"<Content-Length>") {
            out.splice(marker..marker + 16, length.bytes());
        }
    }
    out
}

#[test]
fn protos_c07_never_panics() {
    let dir = corpus("sip-protos-c07").join("cases");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("cases dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4527);
    let (mut parsed, mut rejected) = (0, 0);
    for path in &files {
        let data = fs::read(path).expect("case is readable");
        for message in protos_messages(&data) {
            let outcome = catch_unwind(|| {
                let result = parse_message(&message).map(|m| m.check_request().is_ok());
                let _ = Recovered::scan(&message);
                result.is_ok()
            });
            match outcome {
                Ok(true) => parsed += 1,
                Ok(false) => rejected += 1,
                Err(_) => panic!("{} panicked", path.display()),
            }
        }
    }
    assert_eq!(parsed + rejected, 2 * 4527);
    // Case 0 is the valid INVITE and must parse.
    let valid = protos_messages(&fs::read(dir.join("0000000")).expect("case 0"));
    let invite = parse_message(&valid[0]).expect("case 0 parses");
    assert!(invite.check_request().is_ok());
    eprintln!("PROTOS: {parsed} parsed, {rejected} rejected");
}

/// Headers other than Content-Length (which `write` recomputes and moves to the end), white
/// space runs collapsed (`write` flattens folded lines).
fn without_length(message: &Message<'_>) -> Vec<(String, String)> {
    message
        .headers()
        .iter()
        .filter(|h| h.name != HeaderName::ContentLength)
        .map(|h| {
            (
                h.name.to_string(),
                h.value
                    .split_ascii_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect()
}

#[test]
fn rfc_call_flows_parse_and_round_trip() {
    let root = corpus("sip-rfc-callflows").join("wire");
    let mut count = 0;
    for rfc in fs::read_dir(&root).expect("wire dir") {
        for file in fs::read_dir(rfc.expect("entry").path()).expect("rfc dir") {
            let path = file.expect("entry").path();
            let data = fs::read(&path).expect("readable");
            let message =
                parse_message(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut out = Vec::new();
            message.write(&mut out);
            let again: Message<'_> =
                parse_message(&out).unwrap_or_else(|e| panic!("{} reprint: {e}", path.display()));
            assert_eq!(
                again.start_line(),
                message.start_line(),
                "{}",
                path.display()
            );
            assert_eq!(
                without_length(&again),
                without_length(&message),
                "{}",
                path.display()
            );
            assert_eq!(again.body(), message.body(), "{}", path.display());
            count += 1;
        }
    }
    assert_eq!(count, 253);
}
