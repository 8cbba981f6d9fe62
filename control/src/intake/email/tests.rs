//! [`EmailIntake`] against a real SQLite store: what is answered, and what is (or is not)
//! stored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use super::EmailIntake;
use super::settings::EmailTenant;
use crate::config::Config;
use crate::dispatch::CallControl;
use crate::model::{CallRecord, CallStatus};
use crate::smtp::{Delivery, Envelope, Reply};
use crate::store::sqlite::SqliteStore;
use crate::store::{CallStore, FileStore, ListQuery, NewApiKey, Scope, TenantStore, testing};

/// Counts the calls handed to the scheduler.
#[derive(Default)]
struct Woken(AtomicUsize);

impl CallControl for Woken {
    fn queued(&self, _record: &CallRecord) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn removed(&self, _id: &str) {}
    fn nodes(&self) -> Vec<crate::telephony::NodeLoad> {
        Vec::new()
    }
    fn queued_calls(&self) -> usize {
        0
    }
    fn tenant_cap(&self, _tenant: &str, _cap: Option<usize>) {}
    fn cancel(&self, _id: &str) -> bool {
        false
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    woken: Arc<Woken>,
    intake: EmailIntake,
    /// An API key of `acme` with `calls:create`.
    key: String,
}

const APP: &str = "http://127.0.0.1:9/app.vxml";

fn base_config() -> Config {
    let mut config = Config::default();
    config.email.check_url_timeout_ms = 0;
    config.http.listen = "127.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}"));
    // The tests' tenants call and fetch on loopback: the operator opens it to them.
    for tenant in testing::TENANTS {
        config
            .egress
            .allow
            .insert(tenant.to_owned(), vec!["127.0.0.1/32".to_owned()]);
    }
    config
}

async fn harness(config: Config) -> Harness {
    let (dir, store) = testing::open_temp();
    let (_, key) = store
        .create_key(
            NewApiKey {
                tenant: "acme".into(),
                scopes: vec![Scope::CallsCreate],
                label: None,
            },
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let woken = Arc::new(Woken::default());
    let intake =
        EmailIntake::new(&config, store.clone(), woken.clone()).unwrap_or_else(|e| panic!("{e}"));
    Harness {
        _dir: dir,
        store,
        woken,
        intake,
        key,
    }
}

fn envelope(to: &str, authenticated: Option<&str>) -> Envelope {
    Envelope {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        helo: "client.example".into(),
        mail_from: "sender@client.example".into(),
        rcpt_to: vec![to.to_owned()],
        authenticated: authenticated.map(str::to_owned),
        tls: false,
    }
}

/// `text` with LF line ends as the CRLF message the session hands over.
fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

fn simple(body: &str) -> Vec<u8> {
    crlf(&format!(
        "From: sender@client.example\nTo: acme@outdial.test\nSubject: call\n\n{body}"
    ))
}

impl Harness {
    async fn send(&self, to: &str, auth: Option<&str>, message: Vec<u8>) -> Reply {
        self.intake.deliver(envelope(to, auth), message).await
    }

    async fn calls(&self) -> Vec<CallRecord> {
        let query = ListQuery {
            limit: 1000,
            ..ListQuery::default()
        };
        self.store
            .list_calls("acme", query)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn code(reply: &Reply) -> (u16, (u8, u16, u16)) {
    (reply.code, reply.enhanced)
}

#[tokio::test]
async fn several_destinations_become_several_stored_calls_before_250() {
    let h = harness(base_config()).await;
    let body = format!(
        "Destination: sip:alice@127.0.0.1:5070, sip:bob@127.0.0.1:5070\nApplication: {APP}\nPriority: 7\nVar-name: Alice\n\nThanks!\n-- \nsig\n"
    );
    let reply = h
        .send("acme@outdial.test", Some("acme"), simple(&body))
        .await;
    assert_eq!(code(&reply), (250, (2, 0, 0)), "{}", reply.text);
    let calls = h.calls().await;
    assert_eq!(calls.len(), 2);
    for call in &calls {
        assert!(
            reply.text.contains(&call.id),
            "{} lacks {}",
            reply.text,
            call.id
        );
        assert_eq!(call.status, CallStatus::Queued);
        assert_eq!(call.url, APP);
        assert_eq!(call.priority, 7);
        assert_eq!(call.vars.get("name"), Some(&Value::from("Alice")));
    }
    let mut to: Vec<&str> = calls.iter().map(|c| c.to.as_str()).collect();
    to.sort_unstable();
    assert_eq!(to, ["sip:alice@127.0.0.1:5070", "sip:bob@127.0.0.1:5070"]);
    assert_eq!(h.woken.0.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn one_refused_destination_refuses_the_message_and_stores_nothing() {
    let h = harness(base_config()).await;
    let body = format!("Destination: sip:a@127.0.0.1, +0123\nApplication: {APP}\n");
    let reply = h.send("acme@x", Some("acme"), simple(&body)).await;
    assert_eq!(code(&reply), (554, (5, 6, 0)));
    assert!(
        reply.text.starts_with("e164: Destination") && reply.text.contains("(destination 2)"),
        "{}",
        reply.text
    );
    assert!(h.calls().await.is_empty());
    assert_eq!(h.woken.0.load(Ordering::SeqCst), 0);

    let cases = [
        (format!("Application: {APP}\n"), "required: Destination"),
        ("Destination: sip:a@b\n".to_owned(), "required: Application"),
        (
            format!("Destination: sip:a@b\nApplication: {APP}\nPriorty: 1\n"),
            "unknown:",
        ),
        (
            format!("Destination: sip:a@b\nApplication: {APP}\nPriority: 12\n"),
            "range: Priority",
        ),
        (
            format!("Destination: sip:a@b\nApplication: {APP}\nAt: soon\n"),
            "date_time: At",
        ),
        (
            "Destination: sip:a@b\nApplication: ftp://x/\n".to_owned(),
            "http_url: Application",
        ),
    ];
    for (body, start) in cases {
        let reply = h.send("acme@x", Some("acme"), simple(&body)).await;
        assert_eq!(code(&reply), (554, (5, 6, 0)), "{body}");
        assert!(reply.text.starts_with(start), "{body}: {}", reply.text);
    }
    assert!(h.calls().await.is_empty());
}

#[tokio::test]
async fn headers_and_mime_encodings_carry_fields() {
    let h = harness(base_config()).await;
    let message = crlf(&format!(
        "From: a@b\nX-Outdial-Destination: sip:a@127.0.0.1\nX-Outdial-Application: {APP}\nX-Outdial-Var-greeting: =?utf-8?q?Gr=C3=BC=C3=9F_Gott?=\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nVar-name: Ren=E9e\n"
    ));
    let reply = h.send("acme@x", Some("acme"), message).await;
    assert_eq!(reply.code, 250, "{}", reply.text);
    let calls = h.calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].vars.get("name"), Some(&Value::from("Renée")));
    assert_eq!(
        calls[0].vars.get("greeting"),
        Some(&Value::from("Grüß Gott"))
    );
}

#[tokio::test]
async fn tenants_are_chosen_and_checked_by_the_recipient_and_auth() {
    let mut config = base_config();
    config.email.tenants.insert(
        "acme".into(),
        EmailTenant {
            applications: [("reminders".to_owned(), APP.to_owned())].into(),
            ..EmailTenant::default()
        },
    );
    let h = harness(config).await;
    let body = simple("Destination: sip:a@127.0.0.1\n");
    let reply = h.send("reminders+acme@x", Some("acme"), body.clone()).await;
    assert_eq!(reply.code, 250, "{}", reply.text);
    assert_eq!(
        h.calls().await.first().map(|c| c.url.clone()),
        Some(APP.to_owned())
    );

    let refusals = [
        ("nobody@x", Some("acme"), (550, (5, 1, 1))),
        ("acme@x", None, (530, (5, 7, 0))),
        ("acme@x", Some("other"), (550, (5, 7, 1))),
        ("games+acme@x", Some("acme"), (550, (5, 1, 1))),
        ("a.b@x", Some("acme"), (553, (5, 1, 3))),
    ];
    for (to, auth, expected) in refusals {
        let at_rcpt = h.intake.check_recipient(&envelope("", auth), to).await;
        let at_rcpt = at_rcpt.err().map(|r| code(&r));
        assert_eq!(at_rcpt, Some(expected), "RCPT {to} {auth:?}");
        let at_data = h.send(to, auth, body.clone()).await;
        assert_eq!(code(&at_data), expected, "DATA {to} {auth:?}");
    }
    assert_eq!(h.calls().await.len(), 1, "no refusal stored anything");

    let mut second = envelope("acme@x", Some("acme"));
    assert!(h.intake.check_recipient(&second, "ACME@x").await.is_ok());
    second.rcpt_to = vec!["reminders+acme@x".into()];
    let other = h.intake.check_recipient(&second, "acme@x").await.err();
    assert_eq!(other.map(|r| code(&r)), Some((452, (4, 5, 3))));

    let disabled = h
        .store
        .set_tenant_disabled("acme", true, time::OffsetDateTime::now_utc())
        .await;
    assert!(disabled.is_ok());
    let reply = h.send("reminders+acme@x", Some("acme"), body).await;
    assert_eq!(code(&reply), (550, (5, 1, 1)), "{}", reply.text);
}

#[tokio::test]
async fn auth_takes_the_tenant_id_and_one_of_its_create_keys() {
    let h = harness(base_config()).await;
    assert_eq!(
        h.intake.authenticate("acme", &h.key).await.as_deref(),
        Some("acme")
    );
    assert_eq!(
        h.intake.authenticate("ACME", &h.key).await.as_deref(),
        Some("acme")
    );
    assert_eq!(h.intake.authenticate("other", &h.key).await, None);
    assert_eq!(h.intake.authenticate("acme", "od_wrong").await, None);
    let (read_only, key) = h
        .store
        .create_key(
            NewApiKey {
                tenant: "acme".into(),
                scopes: vec![Scope::CallsRead],
                label: None,
            },
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        h.intake.authenticate("acme", &key).await,
        None,
        "{}",
        read_only.id
    );
    let now = time::OffsetDateTime::now_utc();
    let infos = h
        .store
        .list_keys(Some("acme".into()))
        .await
        .unwrap_or_default();
    for info in infos {
        let _ = h.store.revoke_key(&info.id, now).await;
    }
    assert_eq!(h.intake.authenticate("acme", &h.key).await, None, "revoked");
}

const VXML: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><audio src="hello.wav"/><goto next="more.vxml"/></block></form>
</vxml>
"#;

fn with_attachments(body: &str, parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    use base64::Engine as _;
    let mut text = format!(
        "From: a@b\nMessage-ID: <{}@b>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=BOUND\n\n--BOUND\nContent-Type: text/plain\n\n{body}\n",
        body.len()
    );
    for (name, content_type, bytes) in parts {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        text.push_str(&format!(
            "--BOUND\nContent-Type: {content_type}\nContent-Disposition: attachment; filename=\"{name}\"\nContent-Transfer-Encoding: base64\n\n{encoded}\n"
        ));
    }
    text.push_str("--BOUND--\n");
    crlf(&text)
}

#[tokio::test]
async fn an_attached_application_is_stored_with_its_siblings_and_served_while_the_call_can_run() {
    let h = harness(base_config()).await;
    let message = with_attachments(
        "Destination: sip:a@127.0.0.1",
        &[
            ("app.vxml", "application/octet-stream", VXML.as_bytes()),
            ("more.vxml", "application/voicexml+xml", VXML.as_bytes()),
            ("hello.wav", "audio/wav", b"RIFF....WAVE"),
        ],
    );
    let reply = h.send("acme@x", Some("acme"), message).await;
    assert_eq!(reply.code, 250, "{}", reply.text);
    let calls = h.calls().await;
    let url = calls.first().map(|c| c.url.clone()).unwrap_or_default();
    let rest = url
        .strip_prefix("http://127.0.0.1:8080/v1/files/")
        .unwrap_or_else(|| panic!("{url}"));
    let (id, main) = rest.split_once('/').unwrap_or_default();
    assert_eq!(main, "app.vxml");
    assert!(id.starts_with("fil_") && id.len() == 30, "{id}");

    let app = crate::api::router(crate::api::AppState {
        store: h.store.clone(),
        gate: crate::policy_gate::PolicyGate::new(
            h.store.clone(),
            base_config().policy.operator_policy(),
        ),
        control: h.woken.clone(),
        config: Arc::new(base_config()),
        metrics: None,
        nonces: Default::default(),
    });
    let get = |path: String| {
        let app = app.clone();
        async move {
            use http_body_util::BodyExt as _;
            use tower::ServiceExt as _;
            let request = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap_or_else(|e| panic!("{e}"));
            let response = app.oneshot(request).await.unwrap_or_else(|e| match e {});
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            (status, content_type, body.unwrap_or_default().to_vec())
        }
    };
    let document = get(format!("/v1/files/{id}/app.vxml")).await;
    assert_eq!(
        document,
        (
            200,
            "application/voicexml+xml".to_owned(),
            VXML.as_bytes().to_vec()
        )
    );
    // The document's relative references resolve to its siblings.
    let audio = url::Url::parse(&url)
        .and_then(|u| u.join("hello.wav"))
        .map(|u| u.path().to_owned())
        .unwrap_or_default();
    assert_eq!(
        get(audio).await,
        (200, "audio/wav".to_owned(), b"RIFF....WAVE".to_vec())
    );
    assert_eq!(get(format!("/v1/files/{id}/missing.wav")).await.0, 404);
    assert_eq!(
        get("/v1/files/fil_0000000000000000000000000/app.vxml".to_owned())
            .await
            .0,
        404
    );

    // Once no call of the request can run, the files are gone from the API.
    let now = time::OffsetDateTime::now_utc();
    for call in &calls {
        let _ = h.store.cancel_queued("acme", &call.id, now).await;
    }
    assert_eq!(get(format!("/v1/files/{id}/app.vxml")).await.0, 404);
    let stored = h.store.request_file(id, "hello.wav").await.ok().flatten();
    assert!(stored.is_none());
}

#[tokio::test]
async fn a_broken_attached_document_or_two_applications_store_nothing() {
    let h = harness(base_config()).await;
    let broken = with_attachments(
        "Destination: sip:a@127.0.0.1",
        &[("app.vxml", "application/voicexml+xml", b"<vxml><form>")],
    );
    let reply = h.send("acme@x", Some("acme"), broken).await;
    assert_eq!(code(&reply), (554, (5, 6, 0)));
    assert!(reply.text.contains("app.vxml"), "{}", reply.text);
    let both = with_attachments(
        &format!("Destination: sip:a@127.0.0.1\nApplication: {APP}"),
        &[("app.vxml", "application/voicexml+xml", VXML.as_bytes())],
    );
    let reply = h.send("acme@x", Some("acme"), both).await;
    assert_eq!(code(&reply), (554, (5, 6, 0)));
    assert!(reply.text.starts_with("duplicate:"), "{}", reply.text);
    assert!(h.calls().await.is_empty());
    let files: i64 = rusqlite::Connection::open(h._dir.path().join("outdial.sqlite"))
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM request_files", [], |r| r.get(0)))
        .unwrap_or(-1);
    assert_eq!(files, 0);
}

#[tokio::test]
async fn the_same_message_sent_again_is_answered_with_the_same_calls() {
    let h = harness(base_config()).await;
    let message = with_attachments(
        "Destination: sip:a@127.0.0.1",
        &[("app.vxml", "application/voicexml+xml", VXML.as_bytes())],
    );
    let first = h.send("acme@x", Some("acme"), message.clone()).await;
    let again = h.send("acme@x", Some("acme"), message.clone()).await;
    assert_eq!(first.code, 250);
    assert_eq!(again.code, 250);
    assert!(
        again.text.starts_with("already accepted 1 call"),
        "{}",
        again.text
    );
    assert_eq!(first.text.rsplit(' ').next(), again.text.rsplit(' ').next());
    assert_eq!(h.calls().await.len(), 1);
    assert_eq!(h.woken.0.load(Ordering::SeqCst), 1);
    // The same Message-ID on a different message is a mistake, not a retry.
    let mut altered = message;
    let at = altered.len() - 20;
    altered[at] ^= 1;
    let reply = h.send("acme@x", Some("acme"), altered).await;
    assert_eq!(code(&reply), (554, (5, 6, 0)), "{}", reply.text);
    assert_eq!(h.calls().await.len(), 1);
}

#[tokio::test]
async fn application_urls_are_checked_for_an_answer() {
    let app = axum::Router::new()
        .route("/app.vxml", axum::routing::get(|| async { VXML }))
        .route(
            "/broken.vxml",
            axum::routing::get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let served = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().unwrap_or_else(|e| panic!("{e}"))
    };
    let mut config = base_config();
    config.email.check_url_timeout_ms = 2000;
    let h = harness(config).await;
    let send = |url: String| {
        let h = &h;
        async move {
            let body = format!("Destination: sip:a@127.0.0.1\nApplication: {url}\n");
            h.send("acme@x", Some("acme"), simple(&body)).await
        }
    };
    assert_eq!(send(format!("http://{served}/app.vxml")).await.code, 250);
    let missing = send(format!("http://{served}/missing.vxml")).await;
    assert_eq!(code(&missing), (554, (5, 6, 0)));
    assert!(
        missing.text.starts_with("reachable:") && missing.text.contains("404"),
        "{}",
        missing.text
    );
    assert_eq!(
        code(&send(format!("http://{served}/broken.vxml")).await),
        (451, (4, 4, 1))
    );
    assert_eq!(
        code(&send(format!("http://{closed}/app.vxml")).await),
        (451, (4, 4, 1))
    );
    assert_eq!(h.calls().await.len(), 1);
}

/// DKIM vector 001 of the mail-auth corpus: the DNS records, then the signed message.
fn dkim_vector() -> (Vec<(String, String)>, Vec<u8>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/mail-auth-vectors/dkim/001.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (records, message) = text.split_once("\n\n").unwrap_or_default();
    let records = records
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    (records, crlf(message))
}

#[tokio::test]
async fn a_tenant_that_requires_dkim_refuses_unsigned_forged_and_extended_mail() {
    let (records, signed) = dkim_vector();
    let mut config = base_config();
    config.email.dkim_keys = records.into_iter().collect();
    config.email.tenants.insert(
        "acme".into(),
        EmailTenant {
            require_auth: false,
            require_dkim: true,
            dkim_domains: vec!["football.example.com".into()],
            ..EmailTenant::default()
        },
    );
    let h = harness(config).await;
    // A correctly signed message passes DKIM; this one then lacks request fields.
    let reply = h.send("acme@x", None, signed.clone()).await;
    assert_eq!(code(&reply), (554, (5, 6, 0)), "{}", reply.text);
    assert!(
        reply.text.starts_with("required: Destination"),
        "{}",
        reply.text
    );

    let dkim_refused = (550, (5, 7, 20));
    let text = String::from_utf8_lossy(&signed).into_owned();
    let altered = text.replace("We lost the game", "We won the game");
    assert_eq!(
        code(&h.send("acme@x", None, altered.into_bytes()).await),
        dkim_refused
    );
    let unsigned: String = text
        .split_inclusive("\r\n")
        .skip_while(|l| !l.starts_with("From:"))
        .collect();
    assert_eq!(
        code(&h.send("acme@x", None, unsigned.into_bytes()).await),
        dkim_refused
    );
    let extended = format!("X-Outdial-Destination: sip:mallory@127.0.0.1\r\n{text}");
    assert_eq!(
        code(&h.send("acme@x", None, extended.into_bytes()).await),
        dkim_refused
    );
    assert!(h.calls().await.is_empty());
}

/// Records what an SMTP server received.
#[derive(Default)]
struct Sink(std::sync::Mutex<Vec<(Envelope, String)>>);

impl Delivery for Sink {
    fn check_recipient<'a>(
        &'a self,
        _envelope: &'a Envelope,
        _recipient: &'a str,
    ) -> crate::smtp::DeliveryFuture<'a, Result<(), Reply>> {
        Box::pin(async { Ok(()) })
    }
    fn authenticate<'a>(
        &'a self,
        _user: &'a str,
        _password: &'a str,
    ) -> crate::smtp::DeliveryFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
    fn deliver(
        &self,
        envelope: Envelope,
        message: Vec<u8>,
    ) -> crate::smtp::DeliveryFuture<'_, Reply> {
        let text = String::from_utf8_lossy(&message).into_owned();
        if let Ok(mut got) = self.0.lock() {
            got.push((envelope, text));
        }
        Box::pin(async { Reply::new(250, (2, 0, 0), "kept") })
    }
}

/// Acknowledgements and rejections go through the outbox to a real SMTP server (Outdial's
/// own listener, recording what it receives); a relay that is down leaves them queued for a
/// retry.
#[tokio::test]
async fn replies_are_sent_from_the_outbox_through_the_relay() {
    use crate::store::ReplyStore as _;
    let sink = Arc::new(Sink::default());
    let smtp = crate::config::SmtpConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..crate::config::SmtpConfig::default()
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let server = crate::smtp::spawn(&smtp, sink.clone(), stopped)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = base_config();
    config.email.reply_relay = server.local_addr().to_string();
    config.email.reply_from = "outdial@calls.example".into();
    let h = harness(config).await;
    let accepted = crlf(&format!(
        "From: s@client.example\nSubject: Tomorrow\nMessage-ID: <m1@client.example>\n\nDestination: sip:a@127.0.0.1\nApplication: {APP}\n"
    ));
    let reply = h.send("acme@x", Some("acme"), accepted).await;
    assert_eq!(reply.code, 250);
    let refused = simple("Destination: +0123\nApplication: http://x/a.vxml\n");
    assert_eq!(
        h.send("acme@x", Some("acme"), refused.clone()).await.code,
        554
    );
    // An unauthenticated sender hears its refusal only in the SMTP reply.
    assert_eq!(h.send("acme@x", None, refused).await.code, 530);

    let sender = super::ReplySender::new(
        h.store.clone(),
        &server.local_addr().to_string(),
        "outdial@calls.example",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(sender.send_due(now).await, 2);
    let got = sink.0.lock().map(|g| g.clone()).unwrap_or_default();
    assert_eq!(got.len(), 2, "{got:?}");
    let call_id = h
        .calls()
        .await
        .first()
        .map(|c| c.id.clone())
        .unwrap_or_default();
    let (envelope, ack) = &got[0];
    assert_eq!(envelope.rcpt_to, ["sender@client.example"]);
    assert_eq!(envelope.mail_from, "outdial@calls.example");
    assert!(ack.contains("Subject: Accepted: Tomorrow"), "{ack}");
    assert!(ack.contains("Auto-Submitted: auto-replied"), "{ack}");
    assert!(ack.contains("In-Reply-To: <m1@client.example>"), "{ack}");
    assert!(ack.contains(&call_id), "{ack}");
    assert!(
        got[1].1.contains("554 5.6.0 e164: Destination"),
        "{}",
        got[1].1
    );
    assert_eq!(
        h.store.due_replies(now, 10).await.map(|d| d.len()).ok(),
        Some(0)
    );

    // The relay is down: the reply stays, due again after the first backoff.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let down = super::ReplySender::new(
        h.store.clone(),
        &closed.to_string(),
        "outdial@calls.example",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let message = crlf(&format!(
        "From: s@c\n\nDestination: sip:b@127.0.0.1\nApplication: {APP}\n"
    ));
    assert_eq!(h.send("acme@x", Some("acme"), message).await.code, 250);
    let now = time::OffsetDateTime::now_utc();
    let store = h.store.clone();
    let due = |at| {
        let store = store.clone();
        async move { store.due_replies(at, 10).await.map(|d| d.len()).ok() }
    };
    assert_eq!(due(now).await, Some(1));
    assert_eq!(down.send_due(now).await, 0);
    assert_eq!(due(now).await, Some(0));
    let later = now + super::replies::BACKOFF[0];
    let retried = h.store.due_replies(later, 10).await.unwrap_or_default();
    assert_eq!(retried.iter().map(|r| r.tries).collect::<Vec<_>>(), [1]);
    assert_eq!(sender.send_due(later).await, 1);
}

/// `Result-Mail: yes` makes each call's status callback a `mailto:` to the sender, threaded
/// under the request; it needs the operator's relay, and it is one place or a `Callback`.
#[tokio::test]
async fn result_mail_becomes_a_mailto_callback_to_the_sender() {
    let mut config = base_config();
    config.email.reply_relay = "127.0.0.1:2525".into();
    let h = harness(config).await;
    let message = crlf(&format!(
        "From: sender@client.example\nSubject: Tomorrow\nMessage-ID: <m7@client.example>\n\nDestination: sip:a@127.0.0.1, sip:b@127.0.0.1\nApplication: {APP}\nResult-Mail: yes\n"
    ));
    let reply = h.send("acme@x", Some("acme"), message).await;
    assert_eq!(reply.code, 250, "{}", reply.text);
    let calls = h.calls().await;
    assert_eq!(calls.len(), 2);
    for call in &calls {
        let callback = call.status_callback.as_deref().unwrap_or_default();
        assert_eq!(
            callback,
            "mailto:sender@client.example?subject=Tomorrow&in-reply-to=m7%40client.example"
        );
        let parsed = crate::webhook::mail::MailCallback::parse(callback).expect("valid");
        assert_eq!(parsed.in_reply_to.as_deref(), Some("m7@client.example"));
    }

    let both = simple(&format!(
        "Destination: sip:a@127.0.0.1\nApplication: {APP}\nResult-Mail: yes\nCallback: http://127.0.0.1:9/cb\n"
    ));
    let refused = h.send("acme@x", Some("acme"), both).await;
    assert_eq!(refused.code / 100, 5, "{}", refused.text);
    assert!(refused.text.contains("not both"), "{}", refused.text);
    let maybe = simple(&format!(
        "Destination: sip:a@127.0.0.1\nApplication: {APP}\nResult-Mail: maybe\n"
    ));
    let refused = h.send("acme@x", Some("acme"), maybe).await;
    assert!(refused.text.contains("yes or no"), "{}", refused.text);
    assert_eq!(h.calls().await.len(), 2, "refused messages store nothing");
}

#[tokio::test]
async fn result_mail_without_a_relay_is_refused_naming_the_setting() {
    let h = harness(base_config()).await;
    let message = simple(&format!(
        "Destination: sip:a@127.0.0.1\nApplication: {APP}\nResult-Mail: yes\n"
    ));
    let refused = h.send("acme@x", Some("acme"), message).await;
    assert_eq!(refused.code / 100, 5, "{}", refused.text);
    assert!(
        refused.text.contains("email.reply_relay"),
        "{}",
        refused.text
    );
    assert!(h.calls().await.is_empty());
}

/// A config whose tenant `acme` requires SPF or DMARC for `client.example`, with the
/// domain's records pinned (`email.dns_txt`): SPF allows `spf_ip`, DMARC says reject.
fn sender_auth_config(spf_ip: &str, require_spf: bool, require_dmarc: bool) -> Config {
    let mut config = base_config();
    config
        .email
        .dns_txt
        .insert("client.example".into(), format!("v=spf1 ip4:{spf_ip} -all"));
    config.email.dns_txt.insert(
        "_dmarc.client.example".into(),
        "v=DMARC1; p=reject; psd=n".into(),
    );
    config.email.tenants.insert(
        "acme".into(),
        EmailTenant {
            require_spf,
            require_dmarc,
            sender_domains: vec!["client.example".into()],
            ..EmailTenant::default()
        },
    );
    config
}

/// SPF (RFC 7208) for the envelope sender from the connecting address, where the tenant
/// requires it; the refusal names the rule with 5.7.23.
#[tokio::test]
async fn spf_is_checked_for_tenants_that_require_it() {
    let message = || {
        crlf(&format!(
            "From: sender@client.example\nSubject: s\n\nDestination: sip:a@127.0.0.1\nApplication: {APP}\n"
        ))
    };
    let h = harness(sender_auth_config("127.0.0.1", true, false)).await;
    let reply = h.send("acme@x", Some("acme"), message()).await;
    assert_eq!(reply.code, 250, "{}", reply.text);

    let h = harness(sender_auth_config("192.0.2.1", true, false)).await;
    let reply = h.send("acme@x", Some("acme"), message()).await;
    assert_eq!(code(&reply), (550, (5, 7, 23)), "{}", reply.text);
    assert!(reply.text.starts_with("spf:"), "{}", reply.text);
    assert!(h.calls().await.is_empty());
}

/// DMARC (RFC 7489) for the author's domain: SPF aligned with `From:` passes; a `From:` at
/// another domain, or SPF failing, is refused naming the rule.
#[tokio::test]
async fn dmarc_is_checked_for_tenants_that_require_it() {
    let message = |from: &str| {
        crlf(&format!(
            "From: {from}\nSubject: s\n\nDestination: sip:a@127.0.0.1\nApplication: {APP}\n"
        ))
    };
    let h = harness(sender_auth_config("127.0.0.1", false, true)).await;
    let reply = h
        .send("acme@x", Some("acme"), message("sender@client.example"))
        .await;
    assert_eq!(reply.code, 250, "{}", reply.text);
    let reply = h
        .send("acme@x", Some("acme"), message("boss@elsewhere.example"))
        .await;
    assert_eq!(code(&reply), (550, (5, 7, 1)), "{}", reply.text);
    assert!(reply.text.starts_with("dmarc:"), "{}", reply.text);

    let h = harness(sender_auth_config("192.0.2.1", false, true)).await;
    let reply = h
        .send("acme@x", Some("acme"), message("sender@client.example"))
        .await;
    assert_eq!(code(&reply), (550, (5, 7, 1)), "{}", reply.text);
    assert!(h.calls().await.is_empty());
}

#[tokio::test]
async fn a_tenant_that_requires_signatures_refuses_unsigned_altered_and_replayed_mail() {
    use crate::signing;
    use crate::store::SigningStore as _;
    let h = harness(base_config()).await;
    let secret = "odsig_mail-test-secret";
    let now = time::OffsetDateTime::now_utc();
    h.store
        .set_signing_secret("acme", secret.to_owned(), now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.store
        .set_signing_required("acme", true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let to = "acme@outdial.test";
    let body = format!("Destination: sip:alice@127.0.0.1:5070\nApplication: {APP}\n");
    let fields = vec![
        (
            "Destination".to_owned(),
            "sip:alice@127.0.0.1:5070".to_owned(),
        ),
        ("Application".to_owned(), APP.to_owned()),
    ];
    let text = signing::mail_fields(&fields);
    assert_eq!(
        text,
        format!("destination: sip:alice@127.0.0.1:5070\napplication: {APP}\n")
    );
    let header = |nonce: &str| {
        signing::signature_header(
            secret,
            "MAIL",
            &signing::mail_target("ACME@outdial.test"),
            now.unix_timestamp(),
            nonce,
            text.as_bytes(),
        )
    };
    let signed = |signature: &str, body: &str| {
        crlf(&format!(
            "From: sender@client.example\nTo: {to}\nSubject: call\nX-Outdial-Signature: {signature}\n\n{body}"
        ))
    };

    let unsigned = h.send(to, Some("acme"), simple(&body)).await;
    assert_eq!(code(&unsigned), (550, (5, 7, 1)), "{}", unsigned.text);
    assert!(
        unsigned.text.contains("X-Outdial-Signature"),
        "{}",
        unsigned.text
    );

    let good = header("mail-nonce-000001");
    let accepted = h.send(to, Some("acme"), signed(&good, &body)).await;
    assert_eq!(code(&accepted), (250, (2, 0, 0)), "{}", accepted.text);
    assert_eq!(h.calls().await.len(), 1);

    let replayed = h.send(to, Some("acme"), signed(&good, &body)).await;
    assert_eq!(code(&replayed), (550, (5, 7, 1)));
    assert!(replayed.text.contains("nonce"), "{}", replayed.text);

    let altered = body.replace("alice", "mallory");
    let forged = h
        .send(
            to,
            Some("acme"),
            signed(&header("mail-nonce-000002"), &altered),
        )
        .await;
    assert_eq!(code(&forged), (550, (5, 7, 1)));
    assert!(forged.text.contains("not valid"), "{}", forged.text);
    assert_eq!(h.calls().await.len(), 1, "refused mail stores nothing");
}
