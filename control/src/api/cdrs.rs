//! `GET /v1/cdrs`: call detail records of the key's tenant by time range, as JSON cursor pages
//! or as CSV (`Accept: text/csv`, the next page in a `Link: <...>; rel="next"` header).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{AppState, Tenant, require_api_key};
use crate::error::{Error, RequestError};
use crate::store::{Cdr, CdrQuery};

/// Page size when `limit` is not given.
pub const DEFAULT_CDR_PAGE: u32 = 100;

/// Largest `limit`.
pub const MAX_CDR_PAGE: u32 = 1000;

/// The route, behind the tenant's API key (`calls:read`).
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/cdrs", get(list_cdrs))
        .route_layer(middleware::from_fn_with_state(state, require_api_key))
}

/// Parses `from`, `to` (RFC 3339), `cursor` and `limit`.
pub fn parse_query(query: &str) -> Result<CdrQuery, RequestError> {
    let mut parsed = CdrQuery {
        from: None,
        to: None,
        cursor: None,
        limit: DEFAULT_CDR_PAGE,
    };
    let time = |name: &str, value: &str| {
        OffsetDateTime::parse(value, &Rfc3339).map_err(|_| {
            RequestError::InvalidQuery(format!(
                "`{name}` must be an RFC 3339 time like 2026-12-01T00:00:00Z, not {value:?}"
            ))
        })
    };
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "from" => parsed.from = Some(time("from", &value)?),
            "to" => parsed.to = Some(time("to", &value)?),
            "cursor" if !value.is_empty() => parsed.cursor = Some(value.into_owned()),
            "cursor" => {
                return Err(RequestError::InvalidQuery(
                    "`cursor` must be the `next` value of the previous page".to_owned(),
                ));
            }
            "limit" => {
                parsed.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_CDR_PAGE).contains(n))
                    .ok_or_else(|| {
                        RequestError::InvalidQuery(format!(
                            "`limit` must be a whole number from 1 to {MAX_CDR_PAGE}, not {value:?}"
                        ))
                    })?;
            }
            other => {
                return Err(RequestError::InvalidQuery(format!(
                    "`{other}` is unknown; use from, to, cursor and limit"
                )));
            }
        }
    }
    Ok(parsed)
}

/// The CSV text of `cdrs`: a header line, then one line per record.
pub fn to_csv(cdrs: &[Cdr]) -> String {
    let mut text = String::with_capacity(64 + cdrs.len() * 256);
    text.push_str(Cdr::CSV_HEADER);
    text.push_str("\r\n");
    for cdr in cdrs {
        text.push_str(&cdr.csv_row());
        text.push_str("\r\n");
    }
    text
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .any(|t| t.split(';').next().unwrap_or_default().trim() == "text/csv")
        })
}

/// `GET /v1/cdrs?from=&to=&cursor=&limit=`.
async fn list_cdrs(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Error> {
    let raw = raw.unwrap_or_default();
    let query = parse_query(&raw)?;
    let page = state.store.cdrs(Some(tenant), query).await?;
    if !wants_csv(&headers) {
        return Ok(
            Json(serde_json::json!({ "cdrs": page.cdrs, "next": page.next })).into_response(),
        );
    }
    let mut response = (
        [(
            header::CONTENT_TYPE,
            "text/csv; charset=utf-8; header=present",
        )],
        to_csv(&page.cdrs),
    )
        .into_response();
    if let Some(next) = page.next {
        let others: Vec<_> = url::form_urlencoded::parse(raw.as_bytes())
            .filter(|(name, _)| name != "cursor")
            .collect();
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &others {
            link.append_pair(name, value);
        }
        link.append_pair("cursor", &next);
        let value = format!("</v1/cdrs?{}>; rel=\"next\"", link.finish());
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}
