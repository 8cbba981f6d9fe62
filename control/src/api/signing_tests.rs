//! Request signing through the whole router and a real store: the admin routes that create
//! the secret and require signatures, then each refusal with its own code.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, router};
use crate::config::Config;
use crate::dispatch::CallControl;
use crate::signing;
use crate::store::{TenantStore as _, testing};

struct NoControl;

impl CallControl for NoControl {
    fn queued(&self, _record: &crate::model::CallRecord) {}
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

/// How to sign one request (or not).
enum Sign<'a> {
    No,
    /// With this secret, this timestamp offset from now and this nonce.
    With(&'a str, i64, &'a str),
    /// Signed over `signed_body` but sending another body.
    OtherBody(&'a str, &'a str),
}

async fn send(
    app: &axum::Router,
    key: &str,
    method: Method,
    uri: &str,
    body: &str,
    sign: Sign<'_>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match sign {
        Sign::No => {}
        Sign::With(secret, offset, nonce) => {
            let value = signing::signature_header(
                secret,
                method.as_str(),
                uri,
                now + offset,
                nonce,
                body.as_bytes(),
            );
            request = request.header(signing::SIGNATURE_HEADER, value).header(
                signing::DIGEST_HEADER,
                signing::body_sha256(body.as_bytes()),
            );
        }
        Sign::OtherBody(secret, signed_body) => {
            let value = signing::signature_header(
                secret,
                method.as_str(),
                uri,
                now,
                "other-body-nonce-01",
                signed_body.as_bytes(),
            );
            request = request.header(signing::SIGNATURE_HEADER, value).header(
                signing::DIGEST_HEADER,
                signing::body_sha256(signed_body.as_bytes()),
            );
        }
    }
    let request = request
        .body(Body::from(body.to_owned()))
        .unwrap_or_else(|e| panic!("{e}"));
    let response = app
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        parts.status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn code(answer: &(StatusCode, Value)) -> (StatusCode, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn a_tenant_that_requires_signatures_gets_each_refusal_by_its_code() {
    let (dir, store) = testing::open_temp();
    let key = store
        .ensure_dev_tenant(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let app = router(AppState {
        store: store.clone(),
        gate: crate::policy_gate::PolicyGate::new(
            store.clone(),
            Config::default().policy.operator_policy(),
        ),
        control: Arc::new(NoControl),
        config: Arc::new(Config::default()),
        metrics: None,
        nonces: Default::default(),
    });
    let put = json!({ "required": true }).to_string();
    let uri = "/v1/admin/tenants/dev/signing";

    // Requiring signatures before there is a secret is refused.
    let early = send(&app, &key, Method::PUT, uri, &put, Sign::No).await;
    assert_eq!(code(&early), (StatusCode::BAD_REQUEST, "invalid_value"));
    let missing_tenant = "/v1/admin/tenants/nobody/signing-secret";
    let none = send(&app, &key, Method::POST, missing_tenant, "", Sign::No).await;
    assert_eq!(code(&none), (StatusCode::NOT_FOUND, "not_found"));

    let created = send(
        &app,
        &key,
        Method::POST,
        "/v1/admin/tenants/dev/signing-secret",
        "",
        Sign::No,
    )
    .await;
    assert_eq!(created.0, StatusCode::CREATED);
    let secret = created.1["signing_secret"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(secret.starts_with(signing::SECRET_PREFIX), "{created:?}");
    let required = send(&app, &key, Method::PUT, uri, &put, Sign::No).await;
    assert_eq!(required.0, StatusCode::OK);
    assert_eq!(required.1["required"], json!(true));
    assert_eq!(required.1["has_secret"], json!(true));
    assert_eq!(
        required.1.get("signing_secret"),
        None,
        "the secret is shown once"
    );

    let list = "/v1/calls?limit=5";
    let unsigned = send(&app, &key, Method::GET, list, "", Sign::No).await;
    assert_eq!(
        code(&unsigned),
        (StatusCode::UNAUTHORIZED, "missing_signature")
    );
    let ok = send(
        &app,
        &key,
        Method::GET,
        list,
        "",
        Sign::With(&secret, 0, "nonce-aaaaaaaaaaaa"),
    )
    .await;
    assert_eq!(ok.0, StatusCode::OK, "{ok:?}");
    let again = send(
        &app,
        &key,
        Method::GET,
        list,
        "",
        Sign::With(&secret, 0, "nonce-aaaaaaaaaaaa"),
    )
    .await;
    assert_eq!(code(&again), (StatusCode::UNAUTHORIZED, "replayed_nonce"));
    let stale = send(
        &app,
        &key,
        Method::GET,
        list,
        "",
        Sign::With(&secret, -400, "nonce-bbbbbbbbbbbb"),
    )
    .await;
    assert_eq!(code(&stale), (StatusCode::UNAUTHORIZED, "stale_timestamp"));
    let future = send(
        &app,
        &key,
        Method::GET,
        list,
        "",
        Sign::With(&secret, 400, "nonce-cccccccccccc"),
    )
    .await;
    assert_eq!(code(&future), (StatusCode::UNAUTHORIZED, "stale_timestamp"));
    let wrong = "odsig_not-the-secret";
    let bad = send(
        &app,
        &key,
        Method::GET,
        list,
        "",
        Sign::With(wrong, 0, "nonce-dddddddddddd"),
    )
    .await;
    assert_eq!(code(&bad), (StatusCode::UNAUTHORIZED, "bad_signature"));

    let call =
        json!({ "to": "sip:+15550100@127.0.0.1:5060", "url": "http://127.0.0.1:8000/a.vxml" })
            .to_string();
    let altered = call.replace("+15550100", "+15550199");
    let mismatch = send(
        &app,
        &key,
        Method::POST,
        "/v1/calls",
        &altered,
        Sign::OtherBody(&secret, &call),
    )
    .await;
    assert_eq!(
        code(&mismatch),
        (StatusCode::UNAUTHORIZED, "body_digest_mismatch")
    );
    let placed = send(
        &app,
        &key,
        Method::POST,
        "/v1/calls",
        &call,
        Sign::With(&secret, 0, "nonce-eeeeeeeeeeee"),
    )
    .await;
    assert_eq!(placed.0, StatusCode::CREATED, "{placed:?}");
    assert_eq!(placed.1["to"], json!("sip:+15550100@127.0.0.1:5060"));

    // Rotation: the old secret stops working at once.
    let rotated = send(
        &app,
        &key,
        Method::POST,
        "/v1/admin/tenants/dev/signing-secret",
        "",
        Sign::With(&secret, 0, "nonce-ffffffffffff"),
    )
    .await;
    assert_eq!(rotated.0, StatusCode::CREATED, "{rotated:?}");
    let new_secret = rotated.1["signing_secret"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert_ne!(new_secret, secret);
    let old = send(
        &app,
        &key,
        Method::GET,
        list,
        "",
        Sign::With(&secret, 0, "nonce-gggggggggggg"),
    )
    .await;
    assert_eq!(code(&old), (StatusCode::UNAUTHORIZED, "bad_signature"));

    // Turning the requirement off (a signed request) lets unsigned requests through again.
    let off = json!({ "required": false }).to_string();
    let off = send(
        &app,
        &key,
        Method::PUT,
        uri,
        &off,
        Sign::With(&new_secret, 0, "nonce-hhhhhhhhhhhh"),
    )
    .await;
    assert_eq!(off.1["required"], json!(false), "{off:?}");
    let unsigned = send(&app, &key, Method::GET, list, "", Sign::No).await;
    assert_eq!(unsigned.0, StatusCode::OK);
    assert!(store.get_tenant("dev").await.ok().flatten().is_some());
}
