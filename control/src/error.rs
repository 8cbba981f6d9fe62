//! The control plane's one error type, and how each error reads on the HTTP API.
//!
//! Every error the API returns is `{"error": {"code": "...", "message": "..."}}`. The `code` is
//! stable (clients branch on it); the `message` tells a person what to change.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::intake::{FieldError, Rule};
use crate::store::StoreError;

/// Everything that can go wrong in the control plane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file is unreadable or holds a bad value.
    #[error("configuration: {0}")]
    Config(String),
    /// The SQLite store failed; the request was not persisted.
    #[error("store: {0}")]
    Store(String),
    /// An operating-system I/O error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The dataplane could not start or refused a command.
    #[error("dataplane: {0}")]
    Dataplane(String),
    /// Fetching a VoiceXML document or audio file failed.
    #[error("fetch: {0}")]
    Fetch(String),
    /// A create-call request or a query was rejected before anything was stored.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The request carried no API key, or one that is not known.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The tenant requires signed requests and this one's signature was refused.
    #[error(transparent)]
    Signature(#[from] crate::signing::SignatureError),
    /// No call with this id exists for the caller's tenant.
    #[error("no call with id `{0}`; check the id returned by POST /v1/calls")]
    NotFound(String),
    /// The call already reached a final status, so it cannot be canceled.
    #[error("call `{0}` has already ended; nothing to cancel")]
    AlreadyEnded(String),
    /// The call is between the queue and a dataplane core and cannot be canceled this instant.
    #[error("call `{0}` is being handed to the dataplane; retry the DELETE in a second")]
    CancelPending(String),
    /// The store refused the operation (a conflict, an unknown id, a bad cursor).
    #[error(transparent)]
    Refused(StoreError),
    /// A policy rule refuses the call (`field` is where the destination is in the request).
    #[error("`{field}`: {refusal}")]
    Policy {
        /// The refused destination's place in the request (`to`, `calls[3].to`).
        field: String,
        /// The rule.
        refusal: crate::policy::Refusal,
    },
    /// The API key is valid but lacks the scope this endpoint needs.
    #[error("this API key lacks the `{0}` scope; use a key that has it (see `outdial key create`)")]
    Forbidden(&'static str),
    /// An Outdial server answered the command-line client with an error.
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        /// HTTP status of the answer.
        status: u16,
        /// The stable error code from the answer.
        code: String,
        /// The human-readable message from the answer.
        message: String,
    },
    /// The command-line client could not reach the server or read its answer.
    #[error("HTTP client: {0}")]
    Client(String),
}

/// Why a request to the HTTP API was refused (HTTP 4xx); nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A call request broke a rule; the field, the rule and what to do are in the error.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The same `Idempotency-Key` came with a different request.
    #[error(
        "the Idempotency-Key `{0}` was used within the last 24 hours for a different request; use a new key for a new request"
    )]
    IdempotencyConflict(String),
    /// The `Idempotency-Key` header is unusable.
    #[error("the Idempotency-Key header must be 1 to 255 printable ASCII characters")]
    BadIdempotencyKey,
    /// A query-string parameter is unknown or has a bad value.
    #[error("query parameter {0}")]
    InvalidQuery(String),
    /// The body is not declared as `application/json`.
    #[error("send the body as JSON with `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// The body is larger than the API accepts.
    #[error("the body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// No route matches the path.
    #[error("no such endpoint; see docs/api.md")]
    NoRoute,
    /// The route exists but not for this method.
    #[error("method not allowed on this endpoint; see docs/api.md")]
    MethodNotAllowed,
}

/// Why a request was not authenticated (HTTP 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization: Bearer <key>` header.
    #[error("send the API key as `Authorization: Bearer <key>`")]
    MissingApiKey,
    /// The key is not known to this server.
    #[error(
        "the API key is not valid; check the key (the development key is in <data_dir>/dev-api-key)"
    )]
    InvalidApiKey,
}

impl Error {
    /// The stable machine-readable code used in the API's JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Store(_) => "store_unavailable",
            Self::Io(_) => "io",
            Self::Dataplane(_) => "dataplane",
            Self::Fetch(_) => "fetch",
            Self::Request(e) => e.code(),
            Self::Auth(AuthError::MissingApiKey) => "missing_api_key",
            Self::Auth(AuthError::InvalidApiKey) => "invalid_api_key",
            Self::Signature(e) => e.code(),
            Self::NotFound(_) => "not_found",
            Self::AlreadyEnded(_) => "already_ended",
            Self::CancelPending(_) => "cancel_pending",
            Self::Refused(e) => match e {
                StoreError::IdempotencyConflict(_) => "idempotency_conflict",
                StoreError::NotFound { .. } => "not_found",
                StoreError::AlreadyExists { .. } => "already_exists",
                StoreError::InvalidCursor(_) => "invalid_query",
                StoreError::Invalid(_) => "invalid_value",
                StoreError::Unavailable(_) | StoreError::NewerSchema { .. } => "store_unavailable",
            },
            Self::Forbidden(_) => "insufficient_scope",
            Self::Policy { refusal, .. } => refusal.code,
            Self::Api { .. } => "api",
            Self::Client(_) => "client",
        }
    }

    /// The HTTP status the API answers with for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::Request(e) => e.http_status(),
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::Signature(crate::signing::SignatureError::NonceCacheFull) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::AlreadyEnded(_) | Self::CancelPending(_) => StatusCode::CONFLICT,
            Self::Refused(e) => match e {
                StoreError::IdempotencyConflict(_) => StatusCode::UNPROCESSABLE_ENTITY,
                StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
                StoreError::AlreadyExists { .. } => StatusCode::CONFLICT,
                StoreError::InvalidCursor(_) | StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
                StoreError::Unavailable(_) | StoreError::NewerSchema { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            },
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Policy { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Api { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Self::Config(_)
            | Self::Io(_)
            | Self::Dataplane(_)
            | Self::Fetch(_)
            | Self::Client(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Error {
    /// The inside of the error body: `code`, `message`, and for a refused field its `field`
    /// and `rule`.
    pub fn body(&self) -> serde_json::Value {
        let mut error = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        if let Self::Request(RequestError::Field(field)) = self {
            error["field"] = field.field.clone().into();
            error["rule"] = field.rule.as_str().into();
        }
        if let Self::Policy { field, refusal } = self {
            error["field"] = field.clone().into();
            error["owner"] = refusal.owner.as_str().into();
            error["rule"] = refusal.rule.into();
        }
        error
    }
}

impl RequestError {
    /// The stable machine-readable code for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Field(e) => match e.rule {
                Rule::Object => "malformed_json",
                Rule::Required => "missing_field",
                Rule::Unknown => "unknown_field",
                Rule::Scheme => "unsupported_scheme",
                Rule::Trunk => "no_trunk",
                _ => "invalid_field",
            },
            Self::IdempotencyConflict(_) => "idempotency_conflict",
            Self::BadIdempotencyKey => "invalid_idempotency_key",
            Self::InvalidQuery(_) => "invalid_query",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::NoRoute => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
        }
    }

    /// The HTTP status for this refusal.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::IdempotencyConflict(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(message) => Self::Store(message),
            newer @ StoreError::NewerSchema { .. } => Self::Store(newer.to_string()),
            other => Self::Refused(other),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.http_status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "API request failed");
        }
        let body = serde_json::json!({ "error": self.body() });
        let mut response = (status, Json(body)).into_response();
        if let Self::Auth(_) = self {
            // RFC 6750 §3: a 401 names the scheme the client should use.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(e: Error) -> (StatusCode, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes());
        let value = serde_json::from_slice(&bytes.unwrap_or_default()).unwrap_or_default();
        (status, value)
    }

    #[tokio::test]
    async fn error_body_carries_code_and_message() {
        let missing = FieldError::new("url", Rule::Required, "is required");
        let (status, body) = body_of(RequestError::from(missing).into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "missing_field");
        assert_eq!(body["error"]["message"], "`url` is required");
        assert_eq!(body["error"]["field"], "url");
        assert_eq!(body["error"]["rule"], "required");
    }

    #[tokio::test]
    async fn auth_errors_are_401() {
        let (status, body) = body_of(AuthError::InvalidApiKey.into()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }

    #[test]
    fn store_failures_are_503_so_clients_retry() {
        let e = Error::Store("disk full".into());
        assert_eq!(e.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), "store_unavailable");
    }

    #[test]
    fn no_trunk_message_names_the_config_key() {
        let e = Error::from(RequestError::from(FieldError::new(
            "to",
            Rule::Trunk,
            "is a telephone number but no trunk is configured; set `sip.trunk`",
        )));
        assert!(e.to_string().contains("sip.trunk"));
        assert_eq!(e.code(), "no_trunk");
    }

    #[test]
    fn every_api_error_code_is_documented_with_its_status() {
        use crate::signing::SignatureError;
        let api_md = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"));
        let openapi = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"));
        let field = "to";
        let errors: Vec<Error> = vec![
            RequestError::from(FieldError::new(field, Rule::Object, "")).into(),
            RequestError::from(FieldError::new(field, Rule::Required, "")).into(),
            RequestError::from(FieldError::new(field, Rule::Unknown, "")).into(),
            RequestError::from(FieldError::new(field, Rule::Range, "")).into(),
            RequestError::from(FieldError::new(field, Rule::Scheme, "")).into(),
            RequestError::from(FieldError::new(field, Rule::Trunk, "")).into(),
            RequestError::IdempotencyConflict(String::new()).into(),
            RequestError::BadIdempotencyKey.into(),
            RequestError::InvalidQuery(String::new()).into(),
            RequestError::UnsupportedMediaType.into(),
            RequestError::BodyTooLarge(1).into(),
            RequestError::NoRoute.into(),
            RequestError::MethodNotAllowed.into(),
            AuthError::MissingApiKey.into(),
            AuthError::InvalidApiKey.into(),
            Error::NotFound(String::new()),
            Error::AlreadyEnded(String::new()),
            Error::CancelPending(String::new()),
            Error::Store(String::new()),
            StoreError::IdempotencyConflict(String::new()).into(),
            StoreError::AlreadyExists {
                what: "tenant",
                id: String::new(),
            }
            .into(),
            StoreError::Invalid(String::new()).into(),
            Error::Forbidden("admin"),
            SignatureError::Missing.into(),
            SignatureError::Bad("").into(),
            SignatureError::Stale.into(),
            SignatureError::Replayed.into(),
            SignatureError::DigestMismatch.into(),
            SignatureError::NonceCacheFull.into(),
        ];
        for e in errors {
            let (code, status) = (e.code(), e.http_status().as_u16());
            let row = format!("| `{code}` | {status} |");
            assert!(api_md.contains(&row), "docs/api.md lacks the row {row}");
            assert!(
                openapi.contains(&format!("- {code}\n")),
                "openapi.yaml lacks {code}"
            );
        }
    }

    #[test]
    fn remote_api_error_keeps_its_status() {
        let e = Error::Api {
            status: 404,
            code: "not_found".into(),
            message: "x".into(),
        };
        assert_eq!(e.http_status(), StatusCode::NOT_FOUND);
    }
}
