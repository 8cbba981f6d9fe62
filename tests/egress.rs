//! The outbound-connection policy end to end (docs/security.md): a tenant other than the
//! development tenant cannot make Outdial connect to loopback — not as `to`, not as its
//! application (by address or by a name resolving there; redirects are tested in `fetch.rs`), not as its
//! status callback — and the refusal names the rule; once the operator opens loopback to the
//! tenant (`egress.allow`), the same call completes.

use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp};
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

const GOODBYE: &str = r#"<?xml version="1.0"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <form><block><prompt>Goodbye.</prompt><disconnect/></block></form>
</vxml>
"#;

async fn send(
    outdial: &Outdial,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| ("application/json", b.to_string()));
    outdial.request(key, method, path, body).await
}

/// Adds tenant `id` and returns a key for it.
async fn tenant(outdial: &Outdial, id: &str) -> String {
    let admin = &outdial.api_key;
    let (status, body) = send(
        outdial,
        admin,
        reqwest::Method::POST,
        "/v1/admin/tenants",
        Some(json!({"id": id})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let scopes = json!({"tenant": id, "scopes": ["calls:create", "calls:read"]});
    let (status, key) = send(
        outdial,
        admin,
        reqwest::Method::POST,
        "/v1/admin/keys",
        Some(scopes),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    key["key"].as_str().expect("key").to_owned()
}

async fn wait_final(outdial: &Outdial, key: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + CALL_TIMEOUT;
    loop {
        let (_, record) = send(
            outdial,
            key,
            reqwest::Method::GET,
            &format!("/v1/calls/{id}"),
            None,
        )
        .await;
        if outdial_tests::is_final(&record) {
            return record;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not final: {record}\n{}",
            outdial.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_refused_to_a_tenant_until_the_operator_opens_it() {
    // Calls to E.164 numbers go through the operator's trunk (trusted): SIPp here.
    let sipp = Sipp::uas_calls("answer_wait_bye.xml", &[], 4);
    let outdial = Outdial::start_with_sip(
        "127.0.0.1",
        &format!("trunk = \"sip:{}\"", sipp.addr),
        "[egress.allow]\nopened = [\"127.0.0.1/32\"]\n",
    );
    let app = AppServer::start().await;
    app.vxml("/app.vxml", GOODBYE);
    let closed = tenant(&outdial, "closed").await;
    let opened = tenant(&outdial, "opened").await;
    let post = reqwest::Method::POST;

    // `to`: a sip: URI at a loopback address, and at a name that resolves to loopback.
    for to in [
        sipp.uri("alice"),
        format!("sip:alice@localhost:{}", sipp.addr.port()),
    ] {
        let (status, body) = send(
            &outdial,
            &closed,
            post.clone(),
            "/v1/calls",
            Some(json!({"to": to, "url": app.url("/app.vxml")})),
        )
        .await;
        assert_eq!(status, 422, "{to}: {body}");
        assert_eq!(
            (
                &body["error"]["code"],
                &body["error"]["rule"],
                &body["error"]["owner"]
            ),
            (
                &json!("destination_forbidden"),
                &json!("egress.loopback"),
                &json!("operator")
            ),
            "{body}"
        );
    }

    // The application at loopback: the call is answered, the fetch refused, the call fails
    // with the rule in its reason; the status callback at loopback is refused too.
    let body = json!({"to": "+15550150", "url": app.url("/app.vxml"), "status_callback": app.url("/status")});
    let (status, created) = send(
        &outdial,
        &closed,
        post.clone(),
        "/v1/calls",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let record = wait_final(&outdial, &closed, created["id"].as_str().expect("id")).await;
    assert_eq!(record["status"], "failed", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .is_some_and(|r| r.contains("egress.loopback")),
        "the reason names the rule: {record}"
    );
    // By name: `localhost` resolves to loopback, refused when resolved.
    let by_name = app.url("/app.vxml").replace("127.0.0.1", "localhost");
    let (_, created) = send(
        &outdial,
        &closed,
        post.clone(),
        "/v1/calls",
        Some(json!({"to": "+15550151", "url": by_name})),
    )
    .await;
    let record = wait_final(&outdial, &closed, created["id"].as_str().expect("id")).await;
    assert!(
        record["reason"]
            .as_str()
            .is_some_and(|r| r.contains("egress.loopback")),
        "{record}"
    );

    // The opened tenant: the same call completes, and its callbacks are delivered.
    let (status, created) = send(&outdial, &opened, post.clone(), "/v1/calls", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let opened_id = created["id"].as_str().expect("id").to_owned();
    let record = wait_final(&outdial, &opened, &opened_id).await;
    assert_eq!(record["status"], "completed", "{record}\n{}", outdial.log());
    let received = app.received();
    let fetches = received.iter().filter(|r| r.path == "/app.vxml").count();
    assert_eq!(
        fetches, 1,
        "only the opened tenant's fetch reached the server"
    );
    let callbacks: Vec<_> = received.iter().filter(|r| r.path == "/status").collect();
    assert!(
        !callbacks.is_empty(),
        "the opened tenant's callbacks arrived"
    );
    assert!(
        callbacks.iter().all(|r| r.body.contains(&opened_id)),
        "no callback of the closed tenant reached loopback"
    );
}
