//! The session against two corpora read from `../shared/corpus` (never copied in):
//! chasquid's SMTP dialogue scripts and the SMTP smuggling endings.

use std::path::{Path, PathBuf};

use super::tests::{Harness, assert_split_invariant};
use super::*;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus")
        .join(name)
}

/// The server the scripts assume (`config/chasquid.conf`, chasquid's built-in limits): host
/// name `testserver`, 1 MiB messages, the third error closes, TLS certificates present.
fn chasquid_config() -> SessionConfig {
    SessionConfig {
        hostname: "testserver".to_owned(),
        max_message_bytes: 1 << 20,
        max_errors: 3,
        starttls: true,
        ..SessionConfig::default()
    }
}

/// Where Outdial answers with another code than chasquid, on purpose: (script, chasquid's
/// reply, ours). Each follows an RFC where chasquid has its own choice.
const DIFFERENCES: [(&str, &str, &str); 3] = [
    // RFC 5321 §4.2.2 lists 500 for "command line too long"; chasquid says 554.
    ("line_too_long.cmy", "554", "500 5.5.2"),
    // RFC 6531 §3.7.4.1: a non-ASCII address without SMTPUTF8 is 553 5.6.7; chasquid's
    // 550 5.1.3 comes from its own PRECIS check of the local part.
    ("bad_rcpt_to.cmy", "550 5.1.3", "553 5.6.7"),
    // RFC 4954 §4: an unsupported mechanism is 504; chasquid says 534.
    ("auth_multi_dialog.cmy", "534", "504 5.5.4"),
];

/// A Python string expression as the scripts write them: `'…'` literals with `\r`, `\n`,
/// `\\`, `\'` escapes, `+`, `* <integer>` and parentheses.
fn eval(expr: &str) -> Vec<u8> {
    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }
    impl Parser<'_> {
        fn skip(&mut self) {
            while self.s.get(self.i) == Some(&b' ') {
                self.i += 1;
            }
        }
        fn expr(&mut self) -> Vec<u8> {
            let mut out = self.term();
            self.skip();
            while self.s.get(self.i) == Some(&b'+') {
                self.i += 1;
                out.extend(self.term());
                self.skip();
            }
            out
        }
        fn term(&mut self) -> Vec<u8> {
            let mut out = self.factor();
            self.skip();
            while self.s.get(self.i) == Some(&b'*') {
                self.i += 1;
                self.skip();
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
                let n: usize = std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("bad repeat count in {:?}", self.s));
                out = out.repeat(n);
                self.skip();
            }
            out
        }
        fn factor(&mut self) -> Vec<u8> {
            self.skip();
            match self.s.get(self.i) {
                Some(b'(') => {
                    self.i += 1;
                    let inner = self.expr();
                    self.skip();
                    assert_eq!(self.s.get(self.i), Some(&b')'), "unbalanced");
                    self.i += 1;
                    inner
                }
                Some(b'\'') => {
                    self.i += 1;
                    let mut out = Vec::new();
                    loop {
                        match self.s.get(self.i) {
                            Some(b'\'') => {
                                self.i += 1;
                                return out;
                            }
                            Some(b'\\') => {
                                let escaped = self.s.get(self.i + 1).copied();
                                out.push(match escaped {
                                    Some(b'r') => b'\r',
                                    Some(b'n') => b'\n',
                                    Some(other) => other,
                                    None => panic!("dangling escape"),
                                });
                                self.i += 2;
                            }
                            Some(&b) => {
                                out.push(b);
                                self.i += 1;
                            }
                            None => panic!("unterminated string"),
                        }
                    }
                }
                other => panic!(
                    "unexpected {other:?} in {:?}",
                    String::from_utf8_lossy(self.s)
                ),
            }
        }
    }
    let mut parser = Parser {
        s: expr.as_bytes(),
        i: 0,
    };
    let out = parser.expr();
    assert_eq!(parser.i, expr.len(), "trailing text in {expr:?}");
    out
}

/// The reply code and, when the pattern has one, the enhanced status code it expects.
fn expected_codes(pattern: &str) -> (String, Option<String>) {
    let mut words = pattern.split(' ');
    let code = words.next().unwrap_or_default().to_owned();
    let enhanced = words
        .next()
        .filter(|w| w.split('.').count() == 3 && w.split('.').all(|p| p.parse::<u16>().is_ok()))
        .map(str::to_owned);
    (code, enhanced)
}

/// Runs one script; returns how many replies it checked, and how many of those were
/// [`DIFFERENCES`].
fn run_script(path: &Path) -> (usize, usize) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let script = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let verify = std::fs::read(path.with_extension("cmy.verify")).ok();
    let mut harness: Option<Harness> = None;
    let mut sent: Vec<u8> = Vec::new();
    let mut pending: VecDeque<String> = VecDeque::new();
    let mut checked = 0;
    let mut differences = 0;
    let mut segments: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut deliveries: Vec<Vec<u8>> = Vec::new();
    let finish = |harness: &mut Option<Harness>,
                  sent: &mut Vec<u8>,
                  segments: &mut Vec<(bool, Vec<u8>)>,
                  deliveries: &mut Vec<Vec<u8>>| {
        if let Some(h) = harness.take() {
            segments.push((h.session.is_tls(), std::mem::take(sent)));
            deliveries.extend(h.pipeline.delivered.into_iter().map(|(_, m)| m));
        }
    };
    for (number, raw) in script.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let at = format!("{name}:{}", number + 1);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let rest = line
            .strip_prefix("c ")
            .unwrap_or_else(|| panic!("{at}: not a client line: {line:?}"));
        let (op, arg) = rest.split_once(' ').unwrap_or((rest, ""));
        match op {
            "tcp_connect" | "tls_connect" => {
                finish(&mut harness, &mut sent, &mut segments, &mut deliveries);
                pending.clear();
                let h = Harness::new(chasquid_config(), "192.0.2.9:40000", op == "tls_connect");
                harness = Some(h);
            }
            "close" => {
                finish(&mut harness, &mut sent, &mut segments, &mut deliveries);
            }
            "->" | ".>" | "~>" => {
                let h = harness
                    .as_mut()
                    .unwrap_or_else(|| panic!("{at}: not connected"));
                let bytes = match op {
                    "->" => format!("{arg}\r\n").into_bytes(),
                    ".>" => arg.as_bytes().to_vec(),
                    _ => eval(arg),
                };
                sent.extend_from_slice(&bytes);
                h.feed(&bytes);
            }
            "<-" | "<~" | "<..." => {
                let h = harness
                    .as_mut()
                    .unwrap_or_else(|| panic!("{at}: not connected"));
                pending.extend(h.take().lines().map(str::to_owned));
                let pattern = arg.trim();
                let reply = if op == "<..." {
                    loop {
                        let next = pending
                            .pop_front()
                            .unwrap_or_else(|| panic!("{at}: no reply matching {pattern:?}"));
                        if next.starts_with(pattern) {
                            break next;
                        }
                    }
                } else {
                    pending
                        .pop_front()
                        .unwrap_or_else(|| panic!("{at}: expected {pattern:?}, got no reply"))
                };
                let (mut code, mut enhanced) = expected_codes(pattern);
                if let Some((_, _, ours)) = DIFFERENCES
                    .iter()
                    .find(|(file, theirs, _)| *file == name && pattern.starts_with(theirs))
                {
                    (code, enhanced) = expected_codes(ours);
                    differences += 1;
                }
                assert!(
                    reply.starts_with(&code),
                    "{at}: expected {pattern:?} (code {code}), got {reply:?}"
                );
                if let Some(enhanced) = enhanced {
                    assert_eq!(
                        reply.get(4..4 + enhanced.len()),
                        Some(enhanced.as_str()),
                        "{at}: expected {pattern:?}, got {reply:?}"
                    );
                }
                // 421, 521 and the 502 to a web request end the session (the README's
                // "and disconnect").
                if ["421", "521"].contains(&code.as_str())
                    || (name == "wrong_proto.cmy" && code == "502")
                {
                    assert!(h.closed, "{at}: {reply:?} must close the connection");
                }
                checked += 1;
            }
            other => panic!("{at}: unknown operation {other:?}"),
        }
    }
    finish(&mut harness, &mut sent, &mut segments, &mut deliveries);
    if let Some(verify) = verify {
        assert_eq!(deliveries.len(), 1, "{name}: one message delivered");
        let got = String::from_utf8_lossy(&deliveries[0]).replace("\r\n", "\n");
        assert_eq!(
            got,
            String::from_utf8_lossy(&verify),
            "{name}: delivered text"
        );
    }
    if name.starts_with("bad_data_dot") {
        assert!(
            deliveries.is_empty(),
            "{name}: smuggling delivered {deliveries:?}"
        );
    }
    // The same bytes sent all at once, byte by byte and split anywhere: the same replies.
    for (tls, bytes) in segments {
        assert_split_invariant(&chasquid_config(), tls, &bytes);
    }
    (checked, differences)
}

#[test]
fn chasquid_dialogues_get_the_right_replies() {
    let dir = corpus("smtp-dialogues-chasquid");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "cmy"))
        .collect();
    scripts.sort();
    assert_eq!(scripts.len(), 17, "the corpus has 17 scripts");
    let (mut checked, mut differences) = (0, 0);
    for script in &scripts {
        let (replies, differing) = run_script(script);
        checked += replies;
        differences += differing;
    }
    assert_eq!(checked, 114, "the README counts 114 checked replies");
    assert_eq!(
        differences,
        DIFFERENCES.len(),
        "each listed difference is met once"
    );
}

#[test]
fn no_smuggling_ending_gets_a_second_message_in() {
    let table = std::fs::read_to_string(corpus("smtp-smuggling/endings.tsv"))
        .unwrap_or_else(|e| panic!("endings.tsv: {e}"));
    let mut rows = 0;
    for row in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let fields: Vec<&str> = row.split('\t').collect();
        let (name, hex) = (fields[0], fields[1]);
        let ending: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|e| panic!("{name}: {e}"))
            })
            .collect();
        let mut input = b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\n\
RCPT TO:<user@outdial.test>\r\nDATA\r\nSubject: t\r\n\r\nbody"
            .to_vec();
        input.extend_from_slice(&ending);
        input.extend_from_slice(
            b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@outdial.test>\r\nDATA\r\n\
Subject: smuggled\r\n\r\nx\r\n.\r\n",
        );
        let mut h = Harness::new(chasquid_config(), "192.0.2.9:40000", false);
        h.feed(&input);
        let text = h.take();
        let after_354 = text.split("354 ").nth(1).unwrap_or_default();
        let replies: Vec<&str> = after_354.lines().skip(1).collect();
        assert!(
            h.pipeline.delivered.is_empty(),
            "{name}: delivered {:?}",
            h.pipeline.delivered
        );
        assert_eq!(
            replies.len(),
            1,
            "{name}: one reply to the whole DATA: {text}"
        );
        assert!(
            replies[0].starts_with('5'),
            "{name}: refused with 5xx: {text}"
        );
        // The framing is broken by a bare CR or LF: refuse and close. A NUL leaves the
        // framing intact: refuse the message, keep the session.
        let bare = ending
            .windows(2)
            .any(|w| w != b"\r\n" && (w[0] == b'\r' || w[1] == b'\n'))
            || ending.first() == Some(&b'\n')
            || ending.last() == Some(&b'\r');
        if bare {
            assert!(replies[0].starts_with("521 5.5.2 "), "{name}: {text}");
            assert!(h.closed, "{name}");
        } else {
            assert!(replies[0].starts_with("554 5.6.0 "), "{name}: {text}");
        }
        assert_split_invariant(&chasquid_config(), false, &input);
        rows += 1;
    }
    assert_eq!(rows, 13);
}

#[test]
fn the_script_expressions_evaluate_like_python() {
    assert_eq!(eval(r"'.\n'"), b".\n");
    assert_eq!(eval(r"'xxx\r\n.\r\n'"), b"xxx\r\n.\r\n");
    assert_eq!(eval(r"('a' * 3 + '\r\n') * 2"), b"aaa\r\naaa\r\n");
    assert_eq!(eval(r"'b' * 2 + '\r\n'"), b"bb\r\n");
}
