//! `GET /v1/files/{id}/{name}`: the files that came with a request (an e-mail's attached
//! application and its audio and grammars), for the interpreter to fetch like any URL.
//!
//! No API key: the id (130 random bits) is the capability, and it is given only in the calls'
//! URLs. Read-only, and only while one of the calls that use the files can still run; after
//! that, as for an unknown id, `404`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use crate::error::Error;

/// The route's path.
pub const PATH: &str = "/v1/files/{id}/{name}";

/// The route.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(file))
}

/// `fil_` and 26 characters of the ids' base32 alphabet.
fn is_files_id(text: &str) -> bool {
    text.strip_prefix("fil_").is_some_and(|rest| {
        rest.len() == 26
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    })
}

async fn file(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, Error> {
    if !is_files_id(&id) {
        return Err(Error::NotFound(format!("{id}/{name}")));
    }
    let stored = state
        .store
        .request_file(&id, &name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("{id}/{name}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, stored.content_type),
            (header::CACHE_CONTROL, "private, max-age=300".to_owned()),
        ],
        stored.body,
    )
        .into_response())
}
