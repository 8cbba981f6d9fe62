//! Status out: `GET /v1/calls/{id}/events`, and the webhooks given up on
//! (`GET /v1/webhooks/dead-letters`, `POST /v1/webhooks/dead-letters/{id}/redrive`).

use axum::extract::{Path, RawQuery, State};
use axum::middleware;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::Value;
use time::OffsetDateTime;

use super::{AppState, Tenant, require_api_key};
use crate::error::{Error, RequestError};

/// Largest page of dead letters.
pub const MAX_DEAD_LETTER_PAGE: u32 = 100;

/// The routes, behind the tenant's API key (reads need `calls:read`, redrive `calls:create`).
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/calls/{id}/events", get(call_events))
        .route("/v1/webhooks/dead-letters", get(dead_letters))
        .route("/v1/webhooks/dead-letters/{id}/redrive", post(redrive))
        .route_layer(middleware::from_fn_with_state(state, require_api_key))
}

/// `GET /v1/calls/{id}/events`: every status change, oldest first.
async fn call_events(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let events = state.store.call_events(&tenant, &id).await?;
    let events = events.ok_or(Error::NotFound(id))?;
    Ok(Json(serde_json::json!({ "events": events })))
}

/// `GET /v1/webhooks/dead-letters?limit=&before=`: newest first.
async fn dead_letters(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, Error> {
    let (mut limit, mut before) = (20, None);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_DEAD_LETTER_PAGE).contains(n))
                    .ok_or_else(|| {
                        RequestError::InvalidQuery(format!(
                            "`limit` must be a whole number from 1 to {MAX_DEAD_LETTER_PAGE}, not {value:?}"
                        ))
                    })?;
            }
            "before" if !value.is_empty() => before = Some(value.into_owned()),
            "before" => {
                return Err(RequestError::InvalidQuery(
                    "`before` must be a dead letter id (the `next` value of the previous page)"
                        .to_owned(),
                )
                .into());
            }
            other => {
                return Err(RequestError::InvalidQuery(format!(
                    "`{other}` is unknown; use limit and before"
                ))
                .into());
            }
        }
    }
    // A well-formed cursor this tenant does not have is a missing resource, as for calls.
    let mut dead = match state.store.dead_letters(&tenant, limit + 1, before).await {
        Err(crate::store::StoreError::InvalidCursor(cursor)) => {
            return Err(Error::NotFound(cursor));
        }
        other => other?,
    };
    let more = dead.len() > limit as usize;
    dead.truncate(limit as usize);
    let next = more.then(|| dead.last().map(|d| d.id.clone())).flatten();
    Ok(Json(
        serde_json::json!({ "dead_letters": dead, "next": next }),
    ))
}

/// `POST /v1/webhooks/dead-letters/{id}/redrive`: back in the outbox with fresh tries.
async fn redrive(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let dead = state
        .store
        .redrive(&tenant, &id, OffsetDateTime::now_utc())
        .await?;
    Ok(Json(serde_json::to_value(dead).unwrap_or_default()))
}
