//! The admin API (`/v1/admin/...`): tenants and API keys, behind a key with the `admin` scope.
//! The same operations as `outdial tenant ...` and `outdial key ...`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::Value;
use time::OffsetDateTime;

use super::{AppState, require_admin_key};
use crate::config::trunk_host_port;
use crate::error::{Error, RequestError};
use crate::intake::json::whole_number;
use crate::intake::{FieldError, Rule};
use crate::store::{NewApiKey, NewTenant};
use crate::trunk::Trunks;
use crate::trunk::config::is_trunk_name;

/// The admin routes, each requiring the `admin` scope.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tenants", get(list_tenants).post(add_tenant))
        .route("/v1/admin/tenants/{id}", get(get_tenant))
        .route("/v1/admin/tenants/{id}/disable", post(disable_tenant))
        .route("/v1/admin/tenants/{id}/enable", post(enable_tenant))
        .route(
            "/v1/admin/tenants/{id}/signing-secret",
            post(rotate_signing_secret),
        )
        .route(
            "/v1/admin/tenants/{id}/signing",
            get(get_signing).put(put_signing),
        )
        .route("/v1/admin/keys", get(list_keys).post(create_key))
        .route("/v1/admin/keys/{id}", delete(revoke_key))
        .route_layer(middleware::from_fn_with_state(state, require_admin_key))
}

/// Parses a JSON body into `T`, refusing unknown fields with the field's name.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, RequestError> {
    // JSON Schema counts 5.0 as an integer: read whole numbers written with a fraction as such.
    let mut value: Value = serde_json::from_slice(body).map_err(|e| {
        RequestError::Field(FieldError::new(
            "",
            Rule::Object,
            format!("the body is not JSON: {e}"),
        ))
    })?;
    whole_numbers(&mut value);
    serde_json::from_value(value).map_err(|e| {
        RequestError::Field(FieldError::new(
            "",
            Rule::Object,
            format!("the body is not JSON of the expected shape: {e}"),
        ))
    })
}

/// Rewrites every number with a zero fraction (below 2^53) as an integer.
fn whole_numbers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(whole) = n.is_f64().then(|| whole_number(n)).flatten() {
                *value = Value::from(whole);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// Checks a new tenant's settings: its trunk is a `[[trunk]]` name (one of `trunks` when
/// given; the CLI, which may not see the server's configuration, checks only the form) or a
/// `sip:host:port`, its caller ID an E.164 number or a `sip:` URI.
pub fn check_new_tenant(tenant: &NewTenant, trunks: Option<&Trunks>) -> Result<(), RequestError> {
    if let Some(trunk) = &tenant.trunk {
        let named = is_trunk_name(trunk);
        if named && trunks.is_some_and(|t| !t.contains(trunk)) {
            return Err(RequestError::Field(FieldError::new(
                "trunk",
                Rule::Trunk,
                format!("{trunk:?} is not a [[trunk]] in the configuration"),
            )));
        }
        if !named {
            trunk_host_port(trunk).map_err(|problem| {
                RequestError::Field(FieldError::new(
                    "trunk",
                    Rule::SipUri,
                    format!("must name a [[trunk]] or {problem}"),
                ))
            })?;
        }
    }
    if let Some(caller) = &tenant.caller_id {
        let e164 = caller
            .strip_prefix('+')
            .is_some_and(|d| (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
        let sip = crate::config::has_scheme(caller, "sip") && caller.len() > 4;
        if !(e164 || sip) || caller.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RequestError::Field(FieldError::new(
                "caller_id",
                Rule::SipUri,
                format!("must be a sip: URI or an E.164 number, not {caller:?}"),
            )));
        }
    }
    if tenant.max_concurrent == Some(0) {
        return Err(RequestError::Field(FieldError::new(
            "max_concurrent",
            Rule::Range,
            "must be at least 1 (leave it out for no cap)".to_owned(),
        )));
    }
    Ok(())
}

/// `POST /v1/admin/tenants`: 201 with the tenant and its webhook secret (shown once here).
async fn add_tenant(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Error> {
    let new: NewTenant = json_body(&body)?;
    check_new_tenant(&new, Some(&Trunks::new(&state.config)))?;
    let (tenant, secret) = state
        .store
        .add_tenant(new, OffsetDateTime::now_utc())
        .await?;
    let cap = tenant.max_concurrent.and_then(|c| usize::try_from(c).ok());
    state.control.tenant_cap(&tenant.id, cap);
    let mut answer = serde_json::to_value(&tenant).unwrap_or_default();
    answer["webhook_secret"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `GET /v1/admin/tenants`.
async fn list_tenants(State(state): State<AppState>) -> Result<Json<Value>, Error> {
    let tenants = state.store.list_tenants().await?;
    Ok(Json(serde_json::json!({ "tenants": tenants })))
}

/// `GET /v1/admin/tenants/{id}`.
async fn get_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let tenant = state.store.get_tenant(&id).await?;
    let tenant = tenant.ok_or(crate::store::StoreError::NotFound { what: "tenant", id })?;
    Ok(Json(serde_json::to_value(tenant).unwrap_or_default()))
}

async fn set_disabled(state: &AppState, id: &str, disabled: bool) -> Result<Json<Value>, Error> {
    let tenant = state
        .store
        .set_tenant_disabled(id, disabled, OffsetDateTime::now_utc())
        .await?;
    Ok(Json(serde_json::to_value(tenant).unwrap_or_default()))
}

/// `POST /v1/admin/tenants/{id}/disable`: its keys stop working at once.
async fn disable_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    set_disabled(&state, &id, true).await
}

/// `POST /v1/admin/tenants/{id}/enable`.
async fn enable_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    set_disabled(&state, &id, false).await
}

/// `POST /v1/admin/tenants/{id}/signing-secret`: creates or replaces the tenant's request
/// signing secret; 201 with the secret (shown once here). The old secret stops working at once.
async fn rotate_signing_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let secret = crate::signing::new_secret()?;
    state
        .store
        .set_signing_secret(&id, secret.clone(), OffsetDateTime::now_utc())
        .await?;
    let settings = state.store.signing_settings(&id).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "tenant": id,
            "signing_secret": secret,
            "required": settings.required,
        })),
    ))
}

/// The settings without the secret.
async fn signing_view(state: &AppState, id: String) -> Result<Json<Value>, Error> {
    let settings = state.store.signing_settings(&id).await?;
    let rotated_at = settings.rotated_at.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    Ok(Json(serde_json::json!({
        "tenant": id,
        "required": settings.required,
        "has_secret": settings.secret.is_some(),
        "rotated_at": rotated_at,
    })))
}

/// `GET /v1/admin/tenants/{id}/signing`: whether signatures are required (never the secret).
async fn get_signing(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    if state.store.get_tenant(&id).await?.is_none() {
        return Err(crate::store::StoreError::NotFound { what: "tenant", id }.into());
    }
    signing_view(&state, id).await
}

/// The body of `PUT /v1/admin/tenants/{id}/signing`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningBody {
    required: bool,
}

/// `PUT /v1/admin/tenants/{id}/signing` with `{"required": true|false}`.
async fn put_signing(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Error> {
    let SigningBody { required } = json_body(&body)?;
    state.store.set_signing_required(&id, required).await?;
    signing_view(&state, id).await
}

/// `POST /v1/admin/keys`: 201 with the key itself (shown once) and its id.
async fn create_key(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Error> {
    let new: NewApiKey = json_body(&body)?;
    let (info, key) = state
        .store
        .create_key(new, OffsetDateTime::now_utc())
        .await?;
    let mut answer = serde_json::to_value(&info).unwrap_or_default();
    answer["key"] = Value::String(key);
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `GET /v1/admin/keys?tenant=`.
async fn list_keys(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, Error> {
    let mut tenant = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "tenant" => tenant = Some(value.into_owned()),
            other => {
                return Err(RequestError::InvalidQuery(format!(
                    "`{other}` is unknown; use tenant"
                ))
                .into());
            }
        }
    }
    let keys = state.store.list_keys(tenant).await?;
    Ok(Json(serde_json::json!({ "keys": keys })))
}

/// `DELETE /v1/admin/keys/{id}`: revoked at once; answers the key's record.
async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let info = state
        .store
        .revoke_key(&id, OffsetDateTime::now_utc())
        .await?;
    Ok(Json(serde_json::to_value(info).unwrap_or_default()))
}
