//! The policy engine's data over HTTP (`docs/policy.md`):
//! - `GET|PUT /v1/policy`: the calling tenant's own rules (requester);
//! - `GET|PUT|DELETE /v1/callees/{number}`: a callee's record (admin scope: the operator keeps
//!   callee records on the callee's behalf, across tenants);
//! - `GET|PUT|DELETE /v1/callees/{number}/opt-out`: the calling tenant's opt-out for one
//!   callee, so a tenant can honour "stop calling me" from its own channels;
//! - `GET|PUT /v1/admin/tenants/{id}/policy`: a tenant's rules, set by the operator;
//! - `GET /v1/admin/policy`: the operator's rules (`[policy]` in the configuration).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::admin::json_body;
use super::{AppState, Tenant, require_admin_key, require_api_key};
use crate::error::{Error, RequestError};
use crate::intake::{FieldError, Rule};
use crate::policy::{CalleeRecord, RequesterPolicy};
use crate::store::OptOutScope;

/// Longest callee key (`to` as written), bytes.
const MAX_NUMBER_BYTES: usize = 256;

/// The routes, each behind its scope.
pub fn router(state: AppState) -> Router<AppState> {
    let tenant = Router::new()
        .route("/v1/policy", get(get_own_policy).put(put_own_policy))
        .route(
            "/v1/callees/{number}/opt-out",
            get(get_opt_out).put(put_opt_out).delete(delete_opt_out),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    let admin = Router::new()
        .route(
            "/v1/callees/{number}",
            get(get_callee).put(put_callee).delete(delete_callee),
        )
        .route(
            "/v1/admin/tenants/{id}/policy",
            get(get_tenant_policy).put(put_tenant_policy),
        )
        .route("/v1/admin/policy", get(get_operator_policy))
        .route_layer(middleware::from_fn_with_state(state, require_admin_key));
    tenant.merge(admin)
}

fn invalid(field: &str, problem: impl Into<String>) -> Error {
    RequestError::Field(FieldError::new(field, Rule::Range, problem)).into()
}

/// A callee key: `to` as requests write it (E.164 or a SIP URI).
fn check_number(number: &str) -> Result<(), Error> {
    if number.is_empty()
        || number.len() > MAX_NUMBER_BYTES
        || number.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(RequestError::Field(FieldError::new(
            "number",
            Rule::E164,
            "must be the callee as requests write `to`: an E.164 number (+15550100) or a sip: URI",
        ))
        .into());
    }
    Ok(())
}

fn policy_from(body: &Bytes) -> Result<RequesterPolicy, Error> {
    let policy: RequesterPolicy = json_body(body)?;
    policy.check().map_err(|e| invalid(e.field, e.problem))?;
    Ok(policy)
}

async fn get_own_policy(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Result<Json<RequesterPolicy>, Error> {
    Ok(Json(state.store.tenant_policy(&tenant).await?))
}

async fn put_own_policy(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    body: Bytes,
) -> Result<Json<RequesterPolicy>, Error> {
    let policy = policy_from(&body)?;
    state
        .store
        .set_tenant_policy(&tenant, policy.clone(), OffsetDateTime::now_utc())
        .await?;
    state.gate.forget(&tenant);
    tracing::info!(%tenant, "tenant policy set");
    Ok(Json(policy))
}

async fn get_tenant_policy(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RequesterPolicy>, Error> {
    if state.store.get_tenant(&id).await?.is_none() {
        return Err(Error::Refused(crate::store::StoreError::NotFound {
            what: "tenant",
            id,
        }));
    }
    Ok(Json(state.store.tenant_policy(&id).await?))
}

async fn put_tenant_policy(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<RequesterPolicy>, Error> {
    let policy = policy_from(&body)?;
    state
        .store
        .set_tenant_policy(&id, policy.clone(), OffsetDateTime::now_utc())
        .await?;
    state.gate.forget(&id);
    tracing::info!(tenant = %id, "tenant policy set by the operator");
    Ok(Json(policy))
}

async fn get_operator_policy(State(state): State<AppState>) -> Json<crate::policy::PolicyConfig> {
    Json(state.config.policy.clone())
}

async fn get_callee(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<Json<CalleeRecord>, Error> {
    check_number(&number)?;
    state.store.callee(&number).await?.map(Json).ok_or_else(|| {
        Error::Refused(crate::store::StoreError::NotFound {
            what: "callee record",
            id: "(the number)".to_owned(),
        })
    })
}

async fn put_callee(
    State(state): State<AppState>,
    Path(number): Path<String>,
    body: Bytes,
) -> Result<Json<CalleeRecord>, Error> {
    check_number(&number)?;
    let record: CalleeRecord = json_body(&body)?;
    record.check().map_err(|problem| invalid("", problem))?;
    state
        .store
        .put_callee(&number, record.clone(), OffsetDateTime::now_utc())
        .await?;
    Ok(Json(record))
}

async fn delete_callee(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<StatusCode, Error> {
    check_number(&number)?;
    if state.store.delete_callee(&number).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::Refused(crate::store::StoreError::NotFound {
            what: "callee record",
            id: "(the number)".to_owned(),
        }))
    }
}

fn opt_out_body(record: &CalleeRecord, tenant: &str) -> Json<Value> {
    Json(json!({
        "opted_out": record.opt_out.refuses(tenant),
        "all": record.opt_out.all,
    }))
}

async fn get_opt_out(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(number): Path<String>,
) -> Result<Json<Value>, Error> {
    check_number(&number)?;
    let record = state.store.callee(&number).await?.unwrap_or_default();
    Ok(opt_out_body(&record, &tenant))
}

async fn put_opt_out(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(number): Path<String>,
) -> Result<Json<Value>, Error> {
    set_opt_out(state, tenant, number, true).await
}

async fn delete_opt_out(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(number): Path<String>,
) -> Result<Json<Value>, Error> {
    set_opt_out(state, tenant, number, false).await
}

async fn set_opt_out(
    state: AppState,
    tenant: String,
    number: String,
    opted_out: bool,
) -> Result<Json<Value>, Error> {
    check_number(&number)?;
    let record = state
        .store
        .set_opt_out(
            &number,
            OptOutScope::Tenant(tenant.clone()),
            opted_out,
            OffsetDateTime::now_utc(),
        )
        .await?;
    tracing::info!(%tenant, opted_out, "callee opt-out changed through the API");
    Ok(opt_out_body(&record, &tenant))
}
