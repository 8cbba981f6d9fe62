//! The HTTP API (axum): create, read, list and cancel calls; health and metrics.
//!
//! `docs/api.md` is the user's reference and `docs/openapi.yaml` the machine-readable one.
//! A create request is answered `201` only after the store has committed it, so an accepted
//! call survives a crash. Every error is `{"error": {"code", "message"}}` (see [`Error`]).

pub mod admin;
pub mod campaigns;
pub mod cdrs;
pub mod files;
pub mod policy;
#[cfg(test)]
mod signing_tests;
pub mod status;
#[cfg(test)]
mod store_routes_tests;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;

pub mod batch;
pub mod idempotency;

use crate::auth;
use crate::config::Config;
use crate::dispatch::CallControl;
use crate::error::{AuthError, Error, RequestError};
use crate::intake::{self, FieldError, Rule, Validator};
use crate::model::{CallRecord, CallStatus, NewCall};
use crate::store::{self, DataStore, Principal, Scope};

/// Largest request body accepted, bytes (1 MiB); larger bodies get 413 `body_too_large`.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Page size of `GET /v1/calls` when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 20;

/// Largest `limit` of `GET /v1/calls`.
pub const MAX_PAGE: u32 = 100;

pub use crate::intake::MAX_RING_TIMEOUT_SECS;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The durable store.
    pub store: Arc<dyn DataStore>,
    /// The policy engine's acceptance rules (see [`crate::policy_gate`]).
    pub gate: crate::policy_gate::PolicyGate,
    /// The part of the control plane that runs calls.
    pub control: Arc<dyn CallControl>,
    /// The running configuration.
    pub config: Arc<Config>,
    /// Renders `/metrics`; `None` answers 404 there.
    pub metrics: Option<PrometheusHandle>,
    /// Nonces of signed requests seen in the last 5 minutes (see [`crate::signing`]).
    pub nonces: Arc<std::sync::Mutex<crate::signing::NonceCache>>,
}

/// The tenant that the request's API key belongs to.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

/// The API: `/v1/calls...` behind API-key auth, `/healthz` and `/metrics` open.
pub fn router(state: AppState) -> Router {
    let calls = Router::new()
        .route("/v1/calls", get(list_calls).post(create_call))
        .route(
            batch::PATH,
            axum::routing::post(batch::create_batch)
                .layer(DefaultBodyLimit::max(intake::batch::MAX_BATCH_BODY_BYTES)),
        )
        .route("/v1/calls/{id}", get(get_call).delete(cancel_call))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    let operator = Router::new()
        .route("/v1/nodes", get(list_nodes))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_admin_key,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .merge(calls)
        .merge(operator)
        .merge(status::router(state.clone()))
        .merge(cdrs::router(state.clone()))
        .merge(files::router())
        .merge(admin::router(state.clone()))
        .merge(policy::router(state.clone()))
        .merge(campaigns::router(state.clone()))
        .fallback(|| async { Error::from(RequestError::NoRoute) })
        .method_not_allowed_fallback(|| async { Error::from(RequestError::MethodNotAllowed) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Resolves `Authorization: Bearer <key>` to a tenant, or answers 401; then requires the
/// scope the method needs (reads `calls:read`, writes `calls:create`), or answers 403. The key
/// is looked up in the store on every request: a revoked key fails at once.
pub async fn require_api_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, Error> {
    let scope = if request.method().is_safe() {
        Scope::CallsRead
    } else {
        Scope::CallsCreate
    };
    authorize(&state, request, next, scope).await
}

/// Like [`require_api_key`], for the admin API: the key needs the `admin` scope.
pub async fn require_admin_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, Error> {
    authorize(&state, request, next, Scope::Admin).await
}

async fn authorize(
    state: &AppState,
    request: Request,
    next: Next,
    scope: Scope,
) -> Result<Response, Error> {
    let header = request.headers().get(header::AUTHORIZATION);
    let header = header
        .map(|v| v.to_str().map_err(|_| AuthError::InvalidApiKey))
        .transpose()?;
    let key = auth::bearer_key(header)?;
    let principal: Principal = state
        .store
        .authenticate(key)
        .await?
        .ok_or(AuthError::InvalidApiKey)?;
    if !principal.has(scope) {
        return Err(Error::Forbidden(scope.as_str()));
    }
    let mut request = check_signature(state, &principal.tenant, request).await?;
    request
        .extensions_mut()
        .insert(Tenant(principal.tenant.clone()));
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// When the tenant requires signed requests, checks the signature over the buffered body
/// (see [`crate::signing`] and `docs/security.md`) and hands the request on with that body.
async fn check_signature(
    state: &AppState,
    tenant: &str,
    request: Request,
) -> Result<Request, Error> {
    let settings = state.store.signing_settings(tenant).await?;
    let (true, Some(secret)) = (settings.required, settings.secret) else {
        return Ok(request);
    };
    let (parts, body) = request.into_parts();
    // The largest body any route takes; each route still applies its own limit after this.
    let limit = MAX_BODY_BYTES.max(intake::batch::MAX_BATCH_BODY_BYTES);
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| RequestError::BodyTooLarge(limit))?;
    let text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    let signed = crate::signing::SignedRequest {
        tenant,
        method: parts.method.as_str(),
        target,
        signature: text(crate::signing::SIGNATURE_HEADER),
        content_sha256: text(crate::signing::DIGEST_HEADER),
        body: &body,
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let outcome = {
        let mut nonces = state.nonces.lock().unwrap_or_else(|p| p.into_inner());
        crate::signing::check(&mut nonces, &secret, &signed, now)
    };
    if let Err(refusal) = outcome {
        tracing::info!(tenant, code = refusal.code(), "signed request refused");
        return Err(refusal.into());
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(body)))
}

/// `POST /v1/calls`: validate, store as `queued`, answer 201 after the commit, hand the call
/// to the scheduler. With an `Idempotency-Key`, a repeat of the same request answers the first
/// call again (`Idempotent-Replayed: true`) and places nothing.
async fn create_call(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let body = create_body(&headers, body, MAX_BODY_BYTES)?;
    let idempotency = idempotency::idempotency_key(&headers, "/v1/calls", &body)?;
    let request = intake::json::parse_body(&body).map_err(RequestError::from)?;
    let new = Validator::for_tenant(&state.config, principal.trunk.as_deref())
        .validate(&tenant, request, time::OffsetDateTime::now_utc())
        .map_err(RequestError::from)?;
    if let Err(refused) = state.gate.admit(&tenant, &[new.to.as_str()]).await? {
        return Err(Error::Policy {
            field: "to".to_owned(),
            refusal: refused.refusal,
        });
    }
    let checks = state
        .gate
        .check_applications(&tenant, &[new.url.as_str()])
        .await?;
    if let Some(Some(refusal)) = checks.into_iter().next() {
        return Err(Error::Policy {
            field: "url".to_owned(),
            refusal,
        });
    }
    let created = state
        .store
        .create_calls(
            &tenant,
            vec![new],
            idempotency,
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    let replayed = created.replayed;
    let record = created
        .records
        .into_iter()
        .next()
        .ok_or_else(|| Error::Store("the store created no call".to_owned()))?;
    if !replayed {
        state.control.queued(&record);
        metrics::counter!("outdial_api_calls_created_total").increment(1);
    }
    let location = format!("/v1/calls/{}", record.id);
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(record),
    )
        .into_response();
    if replayed {
        idempotency::mark_replayed(&mut response);
    }
    Ok(response)
}

/// `GET /v1/nodes` (admin): the telephony nodes with their cores, live calls and capacity,
/// and the calls waiting in the scheduler.
async fn list_nodes(State(state): State<AppState>) -> Json<Value> {
    Json(serde_json::json!({
        "nodes": state.control.nodes(),
        "queued": state.control.queued_calls(),
    }))
}

/// `GET /v1/calls/{id}`.
async fn get_call(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<CallRecord>, Error> {
    let record = state.store.get_call(&tenant, &id).await?;
    record.map(Json).ok_or(Error::NotFound(id))
}

/// `GET /v1/calls?status=&limit=&before=`: newest first, `next` is the cursor of the next page.
async fn list_calls(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, Error> {
    let mut query = parse_list_query(query.as_deref().unwrap_or_default())?;
    let page = query.limit;
    // One more than the page, to know whether another page follows.
    query.limit += 1;
    // A well-formed cursor naming no call of this tenant is a resource not found.
    let mut calls = match state.store.list_calls(&tenant, query).await {
        Err(store::StoreError::InvalidCursor(cursor)) => return Err(Error::NotFound(cursor)),
        other => other?,
    };
    let more = calls.len() > page as usize;
    calls.truncate(page as usize);
    let next = if more {
        calls.last().map(|c| c.id.clone())
    } else {
        None
    };
    Ok(Json(serde_json::json!({ "calls": calls, "next": next })))
}

/// `DELETE /v1/calls/{id}`: a queued call is canceled at once (200); a live one is asked to
/// end (202, it ends as `canceled` shortly); a finished one is 409 `already_ended`.
async fn cancel_call(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CallRecord>), Error> {
    let mut record = state
        .store
        .get_call(&tenant, &id)
        .await?
        .ok_or_else(|| Error::NotFound(id.clone()))?;
    if record.status == CallStatus::Queued {
        let now = time::OffsetDateTime::now_utc();
        match state.store.cancel_queued(&tenant, &id, now).await? {
            Some(after) if after.status == CallStatus::Canceled => {
                state.control.removed(&id);
                return Ok((StatusCode::OK, Json(after)));
            }
            // Claimed by the dispatcher in between: cancel it as a live call.
            Some(after) => record = after,
            None => return Err(Error::NotFound(id)),
        }
    }
    if record.status.is_final() {
        return Err(Error::AlreadyEnded(id));
    }
    if state.control.cancel(&record.id) {
        return Ok((StatusCode::ACCEPTED, Json(record)));
    }
    // Not live in this process: it either just ended, or is between the queue and a core.
    match state.store.get_call(&tenant, &id).await? {
        Some(now) if now.status.is_final() => Err(Error::AlreadyEnded(id)),
        _ => Err(Error::CancelPending(id)),
    }
}

/// `GET /healthz`: 200 when the store answers.
async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, Error> {
    state.store.ping().await?;
    Ok(Json(serde_json::json!({ "status": "ok" })))
}

/// `GET /metrics`: Prometheus text exposition.
async fn render_metrics(State(state): State<AppState>) -> Result<Response, Error> {
    let handle = state.metrics.as_ref().ok_or(RequestError::NoRoute)?;
    let content_type = [(
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8",
    )];
    Ok((content_type, handle.render()).into_response())
}

/// A create's body: declared as JSON and read whole within `limit` bytes, or the refusal.
pub(crate) fn create_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, RequestError> {
    if !is_json(headers) {
        return Err(RequestError::UnsupportedMediaType);
    }
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            RequestError::BodyTooLarge(limit)
        } else {
            RequestError::Field(FieldError::new(
                "",
                Rule::Object,
                format!("the body could not be read: {}", rejection.body_text()),
            ))
        }
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// `call_` and 26 lowercase base-36 characters: the shape of every call id.
fn is_call_id(text: &str) -> bool {
    text.strip_prefix("call_").is_some_and(|rest| {
        rest.len() == 26
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    })
}

/// The query string of `GET /v1/calls`, as the store's query (`limit` is the page size).
fn parse_list_query(query: &str) -> Result<store::ListQuery, RequestError> {
    let mut parsed = store::ListQuery {
        limit: DEFAULT_PAGE,
        ..store::ListQuery::default()
    };
    let time = |name: &str, value: &str| {
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    RequestError::InvalidQuery(format!(
                        "`{name}` must be an RFC 3339 date-time with a zone, like 2026-12-24T09:30:00Z, not {value:?}"
                    ))
                })
    };
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "status" => {
                let status = CallStatus::parse(&value).ok_or_else(|| {
                    let names: Vec<_> = CallStatus::ALL.iter().map(|s| s.as_str()).collect();
                    RequestError::InvalidQuery(format!(
                        "`status` must be one of {}, not {value:?}",
                        names.join(", ")
                    ))
                })?;
                parsed.status = Some(status);
            }
            "limit" => {
                parsed.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        RequestError::InvalidQuery(format!(
                            "`limit` must be a whole number from 1 to {MAX_PAGE}, not {value:?}"
                        ))
                    })?;
            }
            "before" if is_call_id(&value) => parsed.before = Some(value.into_owned()),
            "before" => {
                return Err(RequestError::InvalidQuery(format!(
                    "`before` must be a call id (the `next` value of the previous page), not {value:?}"
                )));
            }
            "to" if !value.is_empty() => parsed.to = Some(value.into_owned()),
            "created_after" => parsed.created_after = Some(time("created_after", &value)?),
            "created_before" => parsed.created_before = Some(time("created_before", &value)?),
            other => {
                return Err(RequestError::InvalidQuery(format!(
                    "`{other}` is unknown; use status, to, created_after, created_before, limit and before"
                )));
            }
        }
    }
    Ok(parsed)
}

/// Validates a `POST /v1/calls` body into a call to store for a tenant on the default
/// trunk, at the current time. Nothing is stored on error.
pub fn parse_call_request(
    body: &[u8],
    tenant: &str,
    config: &Config,
) -> Result<NewCall, RequestError> {
    let request = intake::json::parse_body(body)?;
    Ok(Validator::new(config).validate(tenant, request, time::OffsetDateTime::now_utc())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use axum::body::Body;
    use axum::http::Method;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::store::sqlite::SqliteStore;
    use crate::store::{CallStore as _, TenantStore as _, Transition, testing};

    /// Records what the API asked of the call runner.
    #[derive(Default)]
    struct TestControl {
        wakes: AtomicUsize,
        removed: Mutex<Vec<String>>,
        cancels: Mutex<Vec<String>>,
        refuse_cancel: AtomicBool,
    }

    impl CallControl for TestControl {
        fn queued(&self, _record: &CallRecord) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
        }
        fn removed(&self, id: &str) {
            if let Ok(mut removed) = self.removed.lock() {
                removed.push(id.to_owned());
            }
        }
        fn nodes(&self) -> Vec<crate::telephony::NodeLoad> {
            Vec::new()
        }
        fn queued_calls(&self) -> usize {
            0
        }
        fn tenant_cap(&self, _tenant: &str, _cap: Option<usize>) {}
        fn cancel(&self, id: &str) -> bool {
            if let Ok(mut cancels) = self.cancels.lock() {
                cancels.push(id.to_owned());
            }
            !self.refuse_cancel.load(Ordering::SeqCst)
        }
    }

    struct Harness {
        _dir: tempfile::TempDir,
        app: Router,
        store: Arc<SqliteStore>,
        control: Arc<TestControl>,
        key: String,
    }

    const APP: &str = "http://127.0.0.1:8000/app.vxml";

    async fn harness(trunk: Option<&str>) -> Harness {
        let (dir, store) = testing::open_temp();
        let key = store
            .ensure_dev_tenant(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let control = Arc::new(TestControl::default());
        let mut config = Config::default();
        config.sip.trunk = trunk.map(str::to_owned);
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let state = AppState {
            store: store.clone(),
            gate: crate::policy_gate::PolicyGate::new(
                store.clone(),
                config.policy.operator_policy(),
            ),
            control: control.clone(),
            config: Arc::new(config),
            metrics: Some(metrics),
            nonces: Default::default(),
        };
        Harness {
            _dir: dir,
            app: router(state),
            store,
            control,
            key,
        }
    }

    impl Harness {
        async fn send(
            &self,
            method: Method,
            uri: &str,
            auth: Option<&str>,
            content_type: Option<&str>,
            body: impl Into<Body>,
        ) -> (StatusCode, HeaderMap, Value) {
            let mut request = Request::builder().method(method).uri(uri);
            if let Some(auth) = auth {
                request = request.header(header::AUTHORIZATION, auth);
            }
            if let Some(content_type) = content_type {
                request = request.header(header::CONTENT_TYPE, content_type);
            }
            let request = request.body(body.into()).unwrap_or_else(|e| panic!("{e}"));
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
            let json = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            (parts.status, parts.headers, json)
        }

        async fn call(
            &self,
            method: Method,
            uri: &str,
            body: Option<Value>,
        ) -> (StatusCode, Value) {
            let bearer = format!("Bearer {}", self.key);
            let (status, _, json) = match body {
                Some(body) => {
                    let body = body.to_string();
                    self.send(method, uri, Some(&bearer), Some("application/json"), body)
                        .await
                }
                None => {
                    self.send(method, uri, Some(&bearer), None, Body::empty())
                        .await
                }
            };
            (status, json)
        }

        async fn create(&self, body: Value) -> (StatusCode, Value) {
            self.call(Method::POST, "/v1/calls", Some(body)).await
        }

        async fn stored(&self) -> usize {
            self.store
                .list_calls(
                    "dev",
                    store::ListQuery {
                        limit: 1000,
                        ..store::ListQuery::default()
                    },
                )
                .await
                .map(|v| v.len())
                .unwrap_or(0)
        }

        fn wakes(&self) -> usize {
            self.control.wakes.load(Ordering::SeqCst)
        }
    }

    fn code(body: &Value) -> &str {
        body["error"]["code"].as_str().unwrap_or("<no code>")
    }

    #[tokio::test]
    async fn create_answers_201_with_the_stored_record_and_wakes_dispatch() {
        let h = harness(None).await;
        let body = serde_json::json!({
            "to": "sip:alice@127.0.0.1:5080",
            "url": APP,
            "vars": {"name": "Alice", "amount": 12.5, "vip": true},
            "status_callback": "https://hooks.example.com/outdial",
            "ring_timeout": 20
        });
        let bearer = format!("Bearer {}", h.key);
        let (status, headers, record) = h
            .send(
                Method::POST,
                "/v1/calls",
                Some(&bearer),
                Some("application/json; charset=utf-8"),
                body.to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{record}");
        assert_eq!(record["status"], "queued");
        assert_eq!(record["to"], "sip:alice@127.0.0.1:5080");
        assert_eq!(record["target_uri"], "sip:alice@127.0.0.1:5080");
        assert_eq!(record["vars"]["amount"], 12.5);
        assert_eq!(record["ring_timeout"], 20);
        assert!(record["from"].is_null());
        let id = record["id"].as_str().unwrap_or_default().to_owned();
        assert!(id.starts_with("call_"));
        let location = headers.get(header::LOCATION).and_then(|v| v.to_str().ok());
        assert_eq!(location, Some(format!("/v1/calls/{id}").as_str()));
        assert_eq!(h.wakes(), 1);

        let (status, fetched) = h.call(Method::GET, &format!("/v1/calls/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fetched, record);
    }

    #[tokio::test]
    async fn e164_numbers_go_through_the_trunk() {
        let h = harness(Some("sip:192.0.2.10:5060")).await;
        let (status, record) = h
            .create(serde_json::json!({"to": "+15551234567", "from": "+15550000001", "url": APP}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{record}");
        assert_eq!(record["to"], "+15551234567");
        assert_eq!(record["target_uri"], "sip:+15551234567@192.0.2.10:5060");
        assert_eq!(record["from"], "sip:+15550000001@127.0.0.1");
    }

    #[tokio::test]
    async fn every_validation_error_has_its_code_and_stores_nothing() {
        let h = harness(None).await;
        let ok_to = "sip:bob@127.0.0.1";
        let cases: Vec<(Value, &str)> = vec![
            (serde_json::json!([1, 2]), "malformed_json"),
            (serde_json::json!({"url": APP}), "missing_field"),
            (serde_json::json!({"to": ok_to}), "missing_field"),
            (
                serde_json::json!({"to": ok_to, "url": null}),
                "missing_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "callerId": "x"}),
                "unknown_field",
            ),
            (
                serde_json::json!({"to": "sips:bob@example.com", "url": APP}),
                "unsupported_scheme",
            ),
            (
                serde_json::json!({"to": "tel:+15551234567", "url": APP}),
                "unsupported_scheme",
            ),
            (
                serde_json::json!({"to": ok_to, "from": "tel:+1555", "url": APP}),
                "unsupported_scheme",
            ),
            (
                serde_json::json!({"to": "+15551234567", "url": APP}),
                "no_trunk",
            ),
            (
                serde_json::json!({"to": "+05551234567", "url": APP}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": "+1555123456789012", "url": APP}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": "5551234567", "url": APP}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": "sip:", "url": APP}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": "sip:bob@", "url": APP}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": "sip:bob smith@host", "url": APP}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": 15551234567_u64, "url": APP}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": "ftp://127.0.0.1/app.vxml"}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": "/app.vxml"}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "vars": [1]}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "vars": {"a": {"b": 1}}}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "vars": {"a": null}}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "vars": {"1a": "x"}}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "vars": {"a-b": "x"}}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "vars": {"connection": "x"}}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "status_callback": "hooks"}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "ring_timeout": 0}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "ring_timeout": 601}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "ring_timeout": "30"}),
                "invalid_field",
            ),
            (
                serde_json::json!({"to": ok_to, "url": APP, "ring_timeout": 2.5}),
                "invalid_field",
            ),
        ];
        for (body, expected) in cases {
            let (status, answer) = h.create(body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
            assert_eq!(code(&answer), expected, "{body} → {answer}");
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }

        let bearer = format!("Bearer {}", h.key);
        let raw: [(&[u8], Option<&str>, StatusCode, &str); 5] = [
            (
                b"{\"to\":",
                Some("application/json"),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                b"",
                Some("application/json"),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                b"\xff\xfe",
                Some("application/json"),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                b"{}",
                Some("text/plain"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                b"{}",
                None,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
        ];
        for (body, content_type, expected_status, expected_code) in raw {
            let (status, _, answer) = h
                .send(
                    Method::POST,
                    "/v1/calls",
                    Some(&bearer),
                    content_type,
                    body.to_vec(),
                )
                .await;
            assert_eq!(
                (status, code(&answer)),
                (expected_status, expected_code),
                "{body:?}"
            );
        }
        let deep = "[".repeat(10_000);
        let (status, _, answer) = h
            .send(
                Method::POST,
                "/v1/calls",
                Some(&bearer),
                Some("application/json"),
                deep,
            )
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::BAD_REQUEST, "malformed_json")
        );

        let huge = format!(
            "{{\"to\":\"sip:bob@127.0.0.1\",\"url\":\"{APP}\",\"vars\":{{\"pad\":\"{}\"}}}}",
            "x".repeat(MAX_BODY_BYTES)
        );
        let (status, _, answer) = h
            .send(
                Method::POST,
                "/v1/calls",
                Some(&bearer),
                Some("application/json"),
                huge,
            )
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
        );

        assert_eq!(h.stored().await, 0, "a refused request was stored");
        assert_eq!(h.wakes(), 0);
    }

    #[tokio::test]
    async fn auth_is_required_on_calls_but_not_health_or_metrics() {
        let h = harness(None).await;
        let body = serde_json::json!({"to": "sip:bob@127.0.0.1", "url": APP}).to_string();
        let json = Some("application/json");
        let (status, _, answer) = h
            .send(Method::POST, "/v1/calls", None, json, body.clone())
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::UNAUTHORIZED, "missing_api_key")
        );
        let (status, headers, answer) = h
            .send(
                Method::POST,
                "/v1/calls",
                Some("Bearer od_dev_nope"),
                json,
                body.clone(),
            )
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::UNAUTHORIZED, "invalid_api_key")
        );
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        let (status, _, answer) = h
            .send(
                Method::GET,
                "/v1/calls",
                Some("Basic dXNlcjpwYXNz"),
                None,
                Body::empty(),
            )
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::UNAUTHORIZED, "missing_api_key")
        );
        let (status, _, answer) = h
            .send(
                Method::GET,
                "/v1/calls/call_x",
                Some("Bearer wrong"),
                None,
                Body::empty(),
            )
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::UNAUTHORIZED, "invalid_api_key")
        );
        assert_eq!(h.stored().await, 0);

        let (status, _, answer) = h
            .send(Method::GET, "/healthz", None, None, Body::empty())
            .await;
        assert_eq!(
            (status, answer),
            (StatusCode::OK, serde_json::json!({"status": "ok"}))
        );
        let (status, headers, _) = h
            .send(Method::GET, "/metrics", None, None, Body::empty())
            .await;
        assert_eq!(status, StatusCode::OK);
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        assert!(content_type.is_some_and(|t| t.starts_with("text/plain")));
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_json() {
        let h = harness(None).await;
        let (status, _, answer) = h
            .send(Method::GET, "/v2/things", None, None, Body::empty())
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::NOT_FOUND, "not_found")
        );
        let (status, answer) = h.call(Method::PUT, "/v1/calls", None).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        );
        let (status, answer) = h.call(Method::GET, "/v1/calls/call_missing", None).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::NOT_FOUND, "not_found")
        );
    }

    #[tokio::test]
    async fn calls_of_another_tenant_are_invisible() {
        let h = harness(None).await;
        let other = testing::insert(h.store.as_ref(), testing::new_call("other", 1)).await;
        let uri = format!("/v1/calls/{}", other.id);
        assert_eq!(
            h.call(Method::GET, &uri, None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            h.call(Method::DELETE, &uri, None).await.0,
            StatusCode::NOT_FOUND
        );
        let (_, list) = h.call(Method::GET, "/v1/calls", None).await;
        assert_eq!(list["calls"].as_array().map(Vec::len), Some(0));
    }

    #[tokio::test]
    async fn list_pages_newest_first_and_filters() {
        let h = harness(None).await;
        let mut ids = Vec::new();
        for n in 0..5 {
            let (_, record) = h
                .create(serde_json::json!({"to": format!("sip:c{n}@127.0.0.1"), "url": APP}))
                .await;
            ids.push(record["id"].as_str().unwrap_or_default().to_owned());
        }
        let mut seen = Vec::new();
        let mut uri = "/v1/calls?limit=2".to_owned();
        let mut pages = 0;
        loop {
            let (status, page) = h.call(Method::GET, &uri, None).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            pages += 1;
            for call in page["calls"].as_array().into_iter().flatten() {
                seen.push(call["id"].as_str().unwrap_or_default().to_owned());
            }
            match page["next"].as_str() {
                Some(next) => uri = format!("/v1/calls?limit=2&before={next}"),
                None => break,
            }
            assert!(pages < 10, "pagination does not end");
        }
        ids.reverse();
        assert_eq!(seen, ids);
        assert_eq!(pages, 3);

        // Default page holds all five; an exact fit has no next page.
        let (_, page) = h.call(Method::GET, "/v1/calls?limit=5", None).await;
        assert!(page["next"].is_null());

        let first = ids.last().cloned().unwrap_or_default();
        h.call(Method::DELETE, &format!("/v1/calls/{first}"), None)
            .await;
        let (_, canceled) = h.call(Method::GET, "/v1/calls?status=canceled", None).await;
        let canceled: Vec<_> = canceled["calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["id"].clone())
            .collect();
        assert_eq!(canceled, vec![Value::String(first)]);

        for bad in [
            "/v1/calls?limit=0",
            "/v1/calls?limit=101",
            "/v1/calls?limit=x",
            "/v1/calls?status=ended",
            "/v1/calls?page=2",
            "/v1/calls?before=call_unknown",
            "/v1/calls?before=call_0000000000000000000000000A",
        ] {
            let (status, answer) = h.call(Method::GET, bad, None).await;
            assert_eq!(
                (status, code(&answer)),
                (StatusCode::BAD_REQUEST, "invalid_query"),
                "{bad}"
            );
        }
        let unknown = "/v1/calls?before=call_00000000000000000000000000";
        let (status, answer) = h.call(Method::GET, unknown, None).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::NOT_FOUND, "not_found")
        );
    }

    #[tokio::test]
    async fn cancel_queued_live_and_ended_calls() {
        let h = harness(None).await;
        let new = |n: u32| serde_json::json!({"to": format!("sip:c{n}@127.0.0.1"), "url": APP});
        let (_, queued) = h.create(new(1)).await;
        let uri = format!("/v1/calls/{}", queued["id"].as_str().unwrap_or_default());
        let (status, canceled) = h.call(Method::DELETE, &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{canceled}");
        assert_eq!(canceled["status"], "canceled");
        assert!(canceled["ended_at"].is_string());
        let removed = h
            .control
            .removed
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        assert_eq!(
            removed,
            [canceled["id"].as_str().unwrap_or("?")],
            "the scheduler forgets it"
        );
        let (status, again) = h.call(Method::DELETE, &uri, None).await;
        assert_eq!(
            (status, code(&again)),
            (StatusCode::CONFLICT, "already_ended")
        );
        assert!(
            h.control
                .cancels
                .lock()
                .map(|c| c.is_empty())
                .unwrap_or(false)
        );

        // A live call is handed to the call runner.
        h.create(new(2)).await;
        let (_, listed) = h.call(Method::GET, "/v1/calls?status=queued", None).await;
        let queued_id = listed["calls"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let claimed = testing::claim(h.store.as_ref(), "node-a", &queued_id).await;
        let live = claimed.record.clone();
        let ringing = Transition {
            status: CallStatus::Ringing,
            at: time::OffsetDateTime::now_utc(),
            cause: None,
            sip_status: Some(180),
        };
        h.store
            .record_transition(&live.id, claimed.attempt, ringing)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let uri = format!("/v1/calls/{}", live.id);
        let (status, record) = h.call(Method::DELETE, &uri, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{record}");
        assert_eq!(record["status"], "ringing");
        assert_eq!(
            h.control
                .cancels
                .lock()
                .map(|c| c.clone())
                .unwrap_or_default(),
            vec![live.id.clone()]
        );

        // Not live in this process and not final: the client should retry.
        h.control.refuse_cancel.store(true, Ordering::SeqCst);
        let (status, answer) = h.call(Method::DELETE, &uri, None).await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::CONFLICT, "cancel_pending")
        );
    }

    #[test]
    fn list_query_defaults_and_decoding() {
        assert_eq!(
            parse_list_query(""),
            Ok(store::ListQuery {
                status: None,
                limit: DEFAULT_PAGE,
                ..store::ListQuery::default()
            })
        );
        assert_eq!(
            parse_list_query(
                "status=in-progress&limit=100&before=call_a%62000000000000000000000000"
            ),
            Ok(store::ListQuery {
                status: Some(CallStatus::InProgress),
                limit: 100,
                before: Some("call_ab000000000000000000000000".to_owned()),
                ..store::ListQuery::default()
            })
        );
        let filtered = parse_list_query(
            "to=%2B15550001&created_after=2026-12-01T00:00:00Z&created_before=2026-12-02T00:00:00%2B01:00",
        );
        let filtered = filtered.unwrap_or_default();
        assert_eq!(filtered.to.as_deref(), Some("+15550001"));
        assert_eq!(
            filtered.created_after.map(|t| t.unix_timestamp()),
            Some(1_796_083_200)
        );
        assert_eq!(
            filtered.created_before.map(|t| t.unix_timestamp()),
            Some(1_796_166_000)
        );
        assert!(parse_list_query("created_after=yesterday").is_err());
    }

    /// The policy engine at acceptance: each rule answers 422 with its code, owner and rule,
    /// stores nothing, and the tenant's own policy and opt-outs change the outcome.
    #[tokio::test]
    async fn policy_refusals_name_code_owner_and_rule() {
        let h = harness(Some("sip:127.0.0.1:5099")).await;
        let create = |to: &str| json!({ "to": to, "url": APP });
        let (status, body) = h.create(create("+19005550100")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            (
                &body["error"]["code"],
                &body["error"]["owner"],
                &body["error"]["rule"],
                &body["error"]["field"]
            ),
            (
                &json!("premium_rate"),
                &json!("requester"),
                &json!("requester.premium_rate"),
                &json!("to")
            )
        );
        let (status, body) = h.create(create("+33612345678")).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "international")
        );
        assert_eq!(h.stored().await, 0);

        // The tenant opens international calls and denies a range of its own.
        let policy = json!({ "international": true, "deny_prefixes": ["+1555019"] });
        let (status, body) = h.call(Method::PUT, "/v1/policy", Some(policy)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = h.call(Method::GET, "/v1/policy", None).await;
        assert_eq!(
            (status, &body["international"]),
            (StatusCode::OK, &json!(true))
        );
        assert_eq!(
            h.create(create("+33612345678")).await.0,
            StatusCode::CREATED
        );
        let (status, body) = h.create(create("+15550199")).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "destination_denied")
        );
        let bad = json!({ "deny_prefixes": ["+1-555"] });
        let (status, body) = h.call(Method::PUT, "/v1/policy", Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

        // The callee opts out of this tenant: refused, with the callee as owner.
        let (status, body) = h
            .call(Method::PUT, "/v1/callees/+15550100/opt-out", None)
            .await;
        assert_eq!((status, &body["opted_out"]), (StatusCode::OK, &json!(true)));
        let (status, body) = h.create(create("+15550100")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            (code(&body), &body["error"]["owner"]),
            ("opted_out", &json!("callee"))
        );

        // A per-item batch refuses that item only; all-or-nothing refuses the batch.
        let batch =
            json!({ "mode": "per_item", "calls": [create("+15550101"), create("+15550100")] });
        let (status, body) = h.call(Method::POST, "/v1/calls/batch", Some(batch)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!((&body["created"], &body["refused"]), (&json!(1), &json!(1)));
        assert_eq!(body["results"][1]["error"]["code"], "opted_out");
        assert_eq!(body["results"][1]["error"]["field"], "calls[1].to");
        let stored = h.stored().await;
        let batch = json!({ "calls": [create("+15550102"), create("+15550100")] });
        let (status, body) = h.call(Method::POST, "/v1/calls/batch", Some(batch)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "opted_out")
        );
        assert_eq!(
            h.stored().await,
            stored,
            "nothing of a refused batch is stored"
        );

        // Lifting the opt-out lets the call through again.
        let (status, body) = h
            .call(Method::DELETE, "/v1/callees/+15550100/opt-out", None)
            .await;
        assert_eq!(
            (status, &body["opted_out"]),
            (StatusCode::OK, &json!(false))
        );
        assert_eq!(h.create(create("+15550100")).await.0, StatusCode::CREATED);
    }

    #[tokio::test]
    async fn callee_records_are_checked_and_kept_by_the_operator() {
        let h = harness(None).await;
        let record =
            json!({ "time_zone": "Europe/Paris", "quiet_hours": ["21:00-08:00"], "max_calls": 3 });
        let (status, body) = h
            .call(Method::PUT, "/v1/callees/+33612345678", Some(record))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = h.call(Method::GET, "/v1/callees/+33612345678", None).await;
        assert_eq!(
            (status, &body["quiet_hours"]),
            (StatusCode::OK, &json!(["21:00-08:00"]))
        );
        for bad in [
            json!({ "time_zone": "Mars/Olympus" }),
            json!({ "quiet_hours": ["9pm-8am"] }),
            json!({ "colour": "blue" }),
        ] {
            let (status, body) = h
                .call(Method::PUT, "/v1/callees/+33612345678", Some(bad.clone()))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} gave {body}");
        }
        let (status, _) = h
            .call(Method::DELETE, "/v1/callees/+33612345678", None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = h.call(Method::GET, "/v1/callees/+33612345678", None).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
        let (status, body) = h.call(Method::GET, "/v1/admin/policy", None).await;
        assert_eq!(
            (status, &body["home_country"]),
            (StatusCode::OK, &json!("1"))
        );
    }
}
