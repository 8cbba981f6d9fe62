//! The e-mail intake's path from a received message to validated call requests, without the
//! store or the network: `message::parse` (MIME), the `X-Outdial-*` header and body fields,
//! `fields::read`, the attached application, then the same `Validator` as the HTTP API. Never
//! a panic; a message with fields yields one call per destination, each keeping the tenant,
//! and more destinations than the limit are refused. Each input byte also picks a token of
//! the format (header names, `Destination:`, MIME boundaries, encoded words, base64, …), so
//! random input reaches the field reader and the attachment checks, not just the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outdial_control::config::Config;
use outdial_control::intake::Validator;
use outdial_control::intake::email::{attachments, fields, message};
use time::OffsetDateTime;

/// Most calls one message may ask for (`[email] max_calls_per_message` default scale).
const MAX_CALLS: usize = 20;
/// Largest attached document.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

const TOKENS: [&[u8]; 40] = [
    b"From: a@b.example\r\n",
    b"To: dev@localhost\r\n",
    b"Subject: =?utf-8?b?w6k=?=\r\n",
    b"Message-ID: <m@x>\r\n",
    b"MIME-Version: 1.0\r\n",
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n",
    b"Content-Type: text/plain; charset=utf-8\r\n",
    b"Content-Type: application/voicexml+xml\r\n",
    b"Content-Type: audio/wav; name=\"a.wav\"\r\n",
    b"Content-Disposition: attachment; filename=\"app.vxml\"\r\n",
    b"Content-Disposition: attachment; filename=\"../x\"\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"X-Outdial-Destination: sip:+15550001@127.0.0.1:5070\r\n",
    b"X-Outdial-Var-name: Ada\r\n",
    b"X-Outdial-Priority: 7\r\n",
    b"\r\n",
    b"\r\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"Destination: sip:+15550002@127.0.0.1:5070\r\n",
    b"Destination: +15550003\r\n",
    b"Destination: sip:a@b?x=y\r\n",
    b"Application: http://127.0.0.1:8000/app.vxml\r\n",
    b"At: 2026-12-05T10:00:00Z\r\n",
    b"Not-After: 2026-12-04T10:00:00Z\r\n",
    b"Ring-Timeout: 999999\r\n",
    b"Retry-Attempts: 3\r\n",
    b"Retry-On: busy, no_answer\r\n",
    b"Caller-Id: +15550100\r\n",
    b"Var-session: x\r\n",
    b"PHZ4bWwgdmVyc2lvbj0iMi4xIj48Zm9ybT48YmxvY2svPjwvZm9ybT48L3Z4bWw+\r\n",
    b"<vxml version=\"2.1\"><form><block/></form></vxml>\r\n",
    b"=C3=A9=\r\n",
    b"=?iso-8859-1?q?caf=E9?=",
    b": ",
    b" ",
    b"\n",
    b"\0",
    b"\xff",
];

fn exercise(config: &Config, raw: &[u8]) {
    let Ok(parsed) = message::parse(raw) else {
        return;
    };
    let mut all = parsed.fields.clone();
    if let Some(body) = &parsed.body {
        match fields::body_fields(body) {
            Ok(more) => all.extend(more),
            Err(_) => return,
        }
    }
    let request = match fields::read(&all, MAX_CALLS) {
        Ok(request) => request,
        Err(_) => return,
    };
    assert!(request.destinations.len() <= MAX_CALLS, "{request:?}");
    let attached = attachments::application(parsed.attachments, MAX_DOCUMENT_BYTES);
    let url = match (&attached, &request.application) {
        (Ok(Some(app)), _) => format!("http://127.0.0.1:8080/v1/files/fil_x/{}", app.main),
        (_, Some(url)) => url.clone(),
        _ => "http://127.0.0.1:8000/app.vxml".to_owned(),
    };
    let calls = request.calls(&url);
    assert_eq!(calls.len(), request.destinations.len());
    let validator = Validator::new(config);
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    for call in calls {
        if let Ok(valid) = validator.validate("dev", call, now) {
            assert_eq!(valid.tenant, "dev");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let config = Config::default();
    exercise(&config, data);
    let mut tokens = Vec::with_capacity(data.len() * 16);
    for &byte in data {
        tokens.extend_from_slice(TOKENS[usize::from(byte) % TOKENS.len()]);
    }
    exercise(&config, &tokens);
});
