//! `/v1/campaigns`: create a campaign, upload its callees (streamed), follow its progress,
//! cancel it. `docs/campaigns.md` is the reference.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::admin::json_body;
use super::{AppState, Tenant, require_api_key};
use crate::campaign::rows::{Format, Row, RowError, RowReader};
use crate::campaign::{CampaignSpec, Pacer};
use crate::error::{Error, RequestError};
use crate::intake::{FieldError, Rule, Validator};
use crate::store::{Campaign, CampaignBatch, Principal, StoreError};

/// Largest upload, bytes (256 MiB: about two million short rows).
pub const MAX_UPLOAD_BYTES: usize = 256 << 20;
/// Most rows in one upload.
pub const MAX_ROWS: u64 = 1_000_000;
/// Rows stored per transaction.
const BATCH_ROWS: usize = 1000;
/// Refused rows described in the answer (the counts cover all).
const MAX_REPORTED: usize = 100;

/// The routes, behind API keys (`calls:create` to write, `calls:read` to read).
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/campaigns", get(list).post(create))
        .route("/v1/campaigns/{id}", get(show).delete(cancel))
        .route("/v1/campaigns/{id}/callees", post(upload))
        .route_layer(middleware::from_fn_with_state(state, require_api_key))
}

fn not_found(id: String) -> Error {
    Error::Refused(StoreError::NotFound {
        what: "campaign",
        id,
    })
}

async fn create(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<Campaign>), Error> {
    let spec: CampaignSpec = json_body(&body)?;
    let now = OffsetDateTime::now_utc();
    spec.check(now)
        .map_err(|problem| RequestError::Field(FieldError::new("", Rule::Range, problem)))?;
    // The fields every call shares are checked now, on a stand-in destination.
    let validator = Validator::for_tenant(&state.config, principal.trunk.as_deref());
    let probe = spec.request(
        "sip:campaign@example.com".to_owned(),
        serde_json::Map::new(),
    );
    validator
        .validate(&tenant, probe, now)
        .map_err(RequestError::from)?;
    let checks = state
        .gate
        .check_applications(&tenant, &[spec.url.as_str()])
        .await?;
    if let Some(Some(refusal)) = checks.into_iter().next() {
        return Err(Error::Policy {
            field: "url".to_owned(),
            refusal,
        });
    }
    let start = spec.start.unwrap_or(now);
    let spec_json = serde_json::to_value(&spec).unwrap_or(Value::Null);
    let campaign = state
        .store
        .create_campaign(&tenant, spec_json, start, now)
        .await?;
    tracing::info!(%tenant, campaign = %campaign.id, "campaign created");
    Ok((StatusCode::CREATED, Json(campaign)))
}

async fn list(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Result<Json<Value>, Error> {
    let campaigns = state.store.campaigns(&tenant).await?;
    Ok(Json(json!({ "campaigns": campaigns })))
}

async fn show(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, Error> {
    state
        .store
        .campaign(&tenant, &id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(id))
}

async fn cancel(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, Error> {
    let canceled = state
        .store
        .cancel_campaign(&tenant, &id, OffsetDateTime::now_utc())
        .await?;
    for call in &canceled {
        state.control.removed(call);
    }
    tracing::info!(%tenant, campaign = %id, canceled = canceled.len(), "campaign canceled");
    show(State(state), Extension(Tenant(tenant)), Path(id)).await
}

/// What an upload did, row by row in the counts, the first refusals in words.
#[derive(Debug, Default)]
struct Report {
    rows: u64,
    accepted: u64,
    skipped: u64,
    invalid: u64,
    errors: Vec<Value>,
}

impl Report {
    fn note(&mut self, error: Value) {
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(error);
        }
    }
}

async fn upload(
    State(state): State<AppState>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, Error> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = match content_type.split(';').next().map(str::trim) {
        Some("text/csv") => Format::Csv,
        Some("application/x-ndjson" | "application/jsonl") => Format::Ndjson,
        _ => return Err(RequestError::UnsupportedMediaType.into()),
    };
    let campaign = state
        .store
        .campaign(&tenant, &id)
        .await?
        .ok_or_else(|| not_found(id.clone()))?;
    if campaign.status != "running" {
        return Err(Error::Refused(StoreError::Invalid(format!(
            "campaign {id} is {}: it takes no more callees",
            campaign.status
        ))));
    }
    let spec: CampaignSpec = serde_json::from_value(campaign.spec.clone())
        .map_err(|e| Error::Store(format!("stored campaign cannot be read: {e}")))?;
    let mut upload = Upload {
        state: &state,
        tenant: &tenant,
        id: &id,
        validator: Validator::for_tenant(&state.config, principal.trunk.as_deref()),
        pacer: Pacer::new(campaign.next_due, spec.calls_per_second),
        spec,
        pending: Vec::new(),
        report: Report::default(),
    };
    let mut reader = RowReader::new(format);
    let mut stream = body.into_data_stream();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RequestError::Field(FieldError::new(
                "",
                Rule::Object,
                format!("the upload broke off: {e}"),
            ))
        })?;
        received += chunk.len();
        if received > MAX_UPLOAD_BYTES {
            // What was stored stays; the answer says where the upload stopped.
            upload.flush().await?;
            upload.report.note(json!({ "row": upload.report.rows + 1, "rule": "range",
                "message": format!("the upload is larger than {MAX_UPLOAD_BYTES} bytes; the rows after this were not read") }));
            return Ok(answer(&id, upload.report));
        }
        upload.pending.extend(reader.feed(&chunk));
        if upload.pending.len() >= BATCH_ROWS {
            upload.flush().await?;
            if upload.report.rows >= MAX_ROWS {
                upload.report.note(json!({ "row": upload.report.rows + 1, "rule": "range",
                    "message": format!("an upload takes at most {MAX_ROWS} rows; upload the rest separately") }));
                return Ok(answer(&id, upload.report));
            }
        }
    }
    upload.pending.extend(reader.finish());
    upload.flush().await?;
    if !reader.has_header() {
        upload.report.note(
            json!({ "row": 0, "rule": "required", "message": "the upload has no header row" }),
        );
    }
    tracing::info!(%tenant, campaign = %id, rows = upload.report.rows, accepted = upload.report.accepted, skipped = upload.report.skipped, invalid = upload.report.invalid, "campaign rows uploaded");
    Ok(answer(&id, upload.report))
}

fn answer(id: &str, report: Report) -> Json<Value> {
    Json(json!({
        "campaign": id,
        "rows": report.rows,
        "accepted": report.accepted,
        "skipped": report.skipped,
        "invalid": report.invalid,
        "errors": report.errors,
    }))
}

/// One upload in progress: where it goes, how its rows become calls, what it did so far.
struct Upload<'a> {
    state: &'a AppState,
    tenant: &'a str,
    id: &'a str,
    spec: CampaignSpec,
    validator: Validator,
    pacer: Pacer,
    /// Rows read and not yet stored.
    pending: Vec<Result<Row, RowError>>,
    report: Report,
}

impl Upload<'_> {
    /// Validates, applies the acceptance rules to, paces and stores the pending rows in one
    /// transaction, and hands the calls to the scheduler.
    async fn flush(&mut self) -> Result<(), Error> {
        let Self {
            state,
            tenant,
            id,
            spec,
            validator,
            pacer,
            pending,
            report,
        } = self;
        let (state, tenant, id) = (*state, *tenant, *id);
        let now = OffsetDateTime::now_utc();
        let mut valid = Vec::with_capacity(pending.len());
        let mut invalid = 0u64;
        for row in pending.drain(..) {
            match row {
                Err(e) if e.row == 0 => {
                    return Err(
                        RequestError::Field(FieldError::new("", Rule::Object, e.problem)).into(),
                    );
                }
                Err(e) => {
                    report.rows = report.rows.max(e.row);
                    invalid += 1;
                    report.note(json!({ "row": e.row, "rule": "object", "message": e.problem }));
                }
                Ok(row) => {
                    report.rows = report.rows.max(row.number);
                    match validator.validate(tenant, spec.request(row.to, row.vars), now) {
                        Ok(call) => valid.push((row.number, call)),
                        Err(e) => {
                            invalid += 1;
                            report.note(json!({ "row": row.number, "field": e.field, "rule": e.rule.as_str(), "message": e.to_string() }));
                        }
                    }
                }
            }
        }
        let destinations: Vec<&str> = valid.iter().map(|(_, c)| c.to.as_str()).collect();
        let decisions = state.gate.decide(tenant, &destinations).await?;
        let mut calls = Vec::with_capacity(valid.len());
        let mut skipped = 0u64;
        for ((number, mut call), decision) in valid.into_iter().zip(decisions) {
            match decision {
                Some(refusal) => {
                    skipped += 1;
                    report.note(json!({ "row": number, "code": refusal.code, "owner": refusal.owner.as_str(), "rule": refusal.rule, "message": refusal.message }));
                }
                None => {
                    call.at = Some(pacer.next_due(now));
                    calls.push(call);
                }
            }
        }
        let accepted = u64::try_from(calls.len()).unwrap_or(0);
        let batch = CampaignBatch {
            calls,
            skipped,
            invalid,
            next_due: pacer.cursor(),
        };
        let records = state
            .store
            .add_campaign_batch(tenant, id, batch, now)
            .await?;
        for record in &records {
            state.control.queued(record);
        }
        metrics::counter!("outdial_campaign_rows_total", "outcome" => "accepted")
            .increment(accepted);
        metrics::counter!("outdial_campaign_rows_total", "outcome" => "skipped").increment(skipped);
        metrics::counter!("outdial_campaign_rows_total", "outcome" => "invalid").increment(invalid);
        report.accepted += accepted;
        report.skipped += skipped;
        report.invalid += invalid;
        Ok(())
    }
}
