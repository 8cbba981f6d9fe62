//! Tests of the admin, status and CDR routes through the whole router, against a real store.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower::ServiceExt;

use super::{AppState, router};
use crate::config::Config;
use crate::dispatch::CallControl;
use crate::model::{CallStatus, Next};
use crate::store::sqlite::SqliteStore;
use crate::store::{AttemptEnd, CallStore as _, TenantStore as _, testing};

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

struct Harness {
    _dir: tempfile::TempDir,
    app: Router,
    store: Arc<SqliteStore>,
    dev_key: String,
}

async fn harness() -> Harness {
    let (dir, store) = testing::open_temp();
    let dev_key = store
        .ensure_dev_tenant(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let state = AppState {
        store: store.clone(),
        gate: crate::policy_gate::PolicyGate::new(
            store.clone(),
            Config::default().policy.operator_policy(),
        ),
        control: Arc::new(NoControl),
        config: Arc::new(Config::default()),
        metrics: None,
        nonces: Default::default(),
    };
    Harness {
        _dir: dir,
        app: router(state),
        store,
        dev_key,
    }
}

impl Harness {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        key: &str,
        body: Option<Value>,
        accept: Option<&str>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {key}"));
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let request = request.body(body).unwrap_or_else(|e| panic!("{e}"));
        let response = self
            .app
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
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    async fn json(
        &self,
        method: Method,
        uri: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, text) = self.send(method, uri, key, body, None).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

const CALL: &str = "http://127.0.0.1:8000/app.vxml";

#[tokio::test]
async fn admin_makes_tenants_and_keys_and_revocation_is_immediate() {
    let h = harness().await;
    let dev = h.dev_key.clone();
    let (status, tenant) = h
        .json(
            Method::POST,
            "/v1/admin/tenants",
            &dev,
            Some(json!({"id": "newco", "max_concurrent": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    assert!(
        tenant["webhook_secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_"))
    );
    let (status, again) = h
        .json(
            Method::POST,
            "/v1/admin/tenants",
            &dev,
            Some(json!({"id": "newco"})),
        )
        .await;
    assert_eq!(
        (status, code(&again)),
        (StatusCode::CONFLICT, "already_exists")
    );
    let (status, bad) = h
        .json(
            Method::POST,
            "/v1/admin/tenants",
            &dev,
            Some(json!({"id": "x", "trunk": "http://x"})),
        )
        .await;
    assert_eq!(
        (status, code(&bad)),
        (StatusCode::BAD_REQUEST, "invalid_field")
    );
    // A trunk name must be a [[trunk]] of the running configuration (this one has none).
    let (status, bad) = h
        .json(
            Method::POST,
            "/v1/admin/tenants",
            &dev,
            Some(json!({"id": "x", "trunk": "carrier"})),
        )
        .await;
    assert_eq!((status, code(&bad)), (StatusCode::BAD_REQUEST, "no_trunk"));
    let (status, bad) = h
        .json(
            Method::POST,
            "/v1/admin/tenants",
            &dev,
            Some(json!({"id": "x", "colour": 1})),
        )
        .await;
    assert_eq!(
        (status, code(&bad)),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );

    let (status, key) = h
        .json(
            Method::POST,
            "/v1/admin/keys",
            &dev,
            Some(json!({"tenant": "newco", "scopes": ["calls:create", "calls:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let secret = key["key"].as_str().unwrap_or_default().to_owned();
    let key_id = key["id"].as_str().unwrap_or_default().to_owned();

    // The new key places calls for its tenant, but is not an admin key.
    let (status, call) = h
        .json(
            Method::POST,
            "/v1/calls",
            &secret,
            Some(json!({"to": "sip:a@127.0.0.1", "url": CALL})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    let (status, denied) = h
        .json(Method::GET, "/v1/admin/tenants", &secret, None)
        .await;
    assert_eq!(
        (status, code(&denied)),
        (StatusCode::FORBIDDEN, "insufficient_scope")
    );
    let (_, listed) = h
        .json(Method::GET, "/v1/admin/keys?tenant=newco", &dev, None)
        .await;
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(1));
    assert!(
        listed.to_string().find(&secret).is_none(),
        "keys are never listed"
    );

    // Disabling the tenant stops its key at once; enabling brings it back.
    let (status, _) = h
        .json(Method::POST, "/v1/admin/tenants/newco/disable", &dev, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = h.json(Method::GET, "/v1/calls", &secret, None).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );
    h.json(Method::POST, "/v1/admin/tenants/newco/enable", &dev, None)
        .await;
    assert_eq!(
        h.json(Method::GET, "/v1/calls", &secret, None).await.0,
        StatusCode::OK
    );

    // Revoking stops it at once.
    let (status, revoked) = h
        .json(
            Method::DELETE,
            &format!("/v1/admin/keys/{key_id}"),
            &dev,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    let (status, refused) = h.json(Method::GET, "/v1/calls", &secret, None).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::UNAUTHORIZED, "invalid_api_key")
    );
    let (status, missing) = h
        .json(Method::DELETE, "/v1/admin/keys/key_nope", &dev, None)
        .await;
    assert_eq!(
        (status, code(&missing)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn a_read_only_key_cannot_create_calls() {
    let h = harness().await;
    let (_, key) = h
        .json(
            Method::POST,
            "/v1/admin/keys",
            &h.dev_key,
            Some(json!({"tenant": "acme", "scopes": ["calls:read"]})),
        )
        .await;
    let reader = key["key"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        h.json(Method::GET, "/v1/calls", &reader, None).await.0,
        StatusCode::OK
    );
    let (status, refused) = h
        .json(
            Method::POST,
            "/v1/calls",
            &reader,
            Some(json!({"to": "sip:a@127.0.0.1", "url": CALL})),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::FORBIDDEN, "insufficient_scope")
    );
}

#[tokio::test]
async fn events_are_served_to_the_calls_tenant_only() {
    let h = harness().await;
    let (_, call) = h
        .json(
            Method::POST,
            "/v1/calls",
            &h.dev_key,
            Some(json!({"to": "sip:a@127.0.0.1", "url": CALL})),
        )
        .await;
    let id = call["id"].as_str().unwrap_or_default().to_owned();
    testing::claim(h.store.as_ref(), "n", &id).await;
    let (status, events) = h
        .json(
            Method::GET,
            &format!("/v1/calls/{id}/events"),
            &h.dev_key,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let statuses: Vec<_> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!("queued"), json!("dialing")]);
    assert_eq!(events["events"][1]["attempt"], 1);
    let (_, key) = h
        .json(
            Method::POST,
            "/v1/admin/keys",
            &h.dev_key,
            Some(json!({"tenant": "acme", "scopes": ["calls:read"]})),
        )
        .await;
    let other = key["key"].as_str().unwrap_or_default().to_owned();
    let (status, missing) = h
        .json(Method::GET, &format!("/v1/calls/{id}/events"), &other, None)
        .await;
    assert_eq!(
        (status, code(&missing)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, dead) = h
        .json(Method::GET, "/v1/webhooks/dead-letters", &h.dev_key, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dead, json!({"dead_letters": [], "next": null}));
    let (status, missing) = h
        .json(
            Method::POST,
            "/v1/webhooks/dead-letters/msg_x/redrive",
            &h.dev_key,
            None,
        )
        .await;
    assert_eq!(
        (status, code(&missing)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn cdrs_come_as_json_pages_or_csv_with_a_next_link() {
    let h = harness().await;
    for n in 0..3 {
        let call = testing::insert(h.store.as_ref(), testing::new_call("dev", n)).await;
        testing::claim(h.store.as_ref(), "n", &call.id).await;
        let end = AttemptEnd {
            media: None,
            status: CallStatus::Busy,
            ended_at: OffsetDateTime::now_utc(),
            sip_status: Some(486),
            disposition: Some("busy".to_owned()),
            reason: "486 Busy Here".to_owned(),
            core: Some(0),
            sip_call_id: None,
            result: None,
        };
        h.store
            .finish_attempt(
                &call.id,
                1,
                end,
                Next::Final {
                    status: CallStatus::Busy,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (status, page) = h
        .json(
            Method::GET,
            "/v1/cdrs?limit=2&from=2020-01-01T00:00:00Z",
            &h.dev_key,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["cdrs"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["cdrs"][0]["sip_status"], 486);
    let next = page["next"].as_str().unwrap_or_default().to_owned();
    let (_, rest) = h
        .json(
            Method::GET,
            &format!("/v1/cdrs?limit=2&cursor={next}"),
            &h.dev_key,
            None,
        )
        .await;
    assert_eq!(rest["cdrs"].as_array().map(Vec::len), Some(1));
    assert!(rest["next"].is_null());

    let (status, headers, csv) = h
        .send(
            Method::GET,
            "/v1/cdrs?limit=2",
            &h.dev_key,
            None,
            Some("text/csv"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/csv"))
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let link = headers
        .get(header::LINK)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        link.starts_with("</v1/cdrs?limit=2&cursor=cdr_") && link.ends_with("rel=\"next\""),
        "{link}"
    );

    let (status, bad) = h
        .json(Method::GET, "/v1/cdrs?from=yesterday", &h.dev_key, None)
        .await;
    assert_eq!(
        (status, code(&bad)),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );
    let (status, bad) = h
        .json(Method::GET, "/v1/cdrs?cursor=nope", &h.dev_key, None)
        .await;
    assert_eq!(
        (status, code(&bad)),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );
    // Another tenant's key sees none of them.
    let (_, key) = h
        .json(
            Method::POST,
            "/v1/admin/keys",
            &h.dev_key,
            Some(json!({"tenant": "acme", "scopes": ["calls:read"]})),
        )
        .await;
    let other = key["key"].as_str().unwrap_or_default().to_owned();
    let (_, none) = h.json(Method::GET, "/v1/cdrs", &other, None).await;
    assert_eq!(none["cdrs"], json!([]));
}
