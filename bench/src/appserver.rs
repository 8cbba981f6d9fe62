//! The application server of the bench tools (`outdial bench appserver`, and the one inside
//! `outdial bench load`): serves the carried applications (and files from a directory),
//! answers every submit with a goodbye document, and hands each submit and each status
//! callback to a channel.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::apps;

/// The path status callbacks (webhooks) are posted to.
pub const STATUS_PATH: &str = "/status";

/// Largest request body accepted (submits, webhooks).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What the server received.
#[derive(Debug, Clone, PartialEq)]
pub enum AppEvent {
    /// A `<submit>` (POST form or GET query), answered with [`apps::GOODBYE`].
    Submit {
        /// The path submitted to.
        path: String,
        /// `GET` or `POST`.
        method: String,
        /// The submitted names and values, in order.
        values: Vec<(String, String)>,
        /// When it arrived.
        at: SystemTime,
    },
    /// A status callback: the call record as the server sent it.
    Status {
        /// The record.
        record: Value,
        /// When it arrived.
        at: SystemTime,
    },
}

/// The server's settings.
#[derive(Debug, Clone)]
struct Served {
    dir: Option<PathBuf>,
    events: mpsc::Sender<AppEvent>,
}

/// Binds `listen` and returns the listener with its address (port 0 picks one).
pub async fn bind(listen: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Serves on `listener` until the task is dropped: the carried applications, files under
/// `dir` if given, submits and status callbacks (sent to `events`).
pub async fn serve(
    listener: TcpListener,
    dir: Option<PathBuf>,
    events: mpsc::Sender<AppEvent>,
) -> std::io::Result<()> {
    let app = Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Served { dir, events });
    axum::serve(listener, app).await
}

async fn handle(
    State(served): State<Served>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let at = SystemTime::now();
    if method == Method::POST && path == STATUS_PATH {
        let Ok(record) = serde_json::from_slice::<Value>(&body) else {
            return (
                StatusCode::BAD_REQUEST,
                "a status callback is a JSON call record\n",
            )
                .into_response();
        };
        let _ = served.events.send(AppEvent::Status { record, at }).await;
        return StatusCode::NO_CONTENT.into_response();
    }
    if method == Method::GET {
        if let Some(app) = apps::by_path(&path) {
            return vxml(app.document.to_owned());
        }
        if let Some(file) = served.dir.as_deref().and_then(|d| file_under(d, &path)) {
            return match tokio::fs::read(&file).await {
                Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&file))], bytes).into_response(),
                Err(_) => StatusCode::NOT_FOUND.into_response(),
            };
        }
        let Some(query) = uri.query() else {
            return (
                StatusCode::NOT_FOUND,
                format!("nothing is served at {path}\n"),
            )
                .into_response();
        };
        return submit(&served, path, "GET", form_values(query.as_bytes()), at).await;
    }
    if method == Method::POST {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/x-www-form-urlencoded"));
        let values = if form {
            form_values(&body)
        } else {
            vec![(
                "(body)".to_owned(),
                format!("{} bytes, not a form", body.len()),
            )]
        };
        return submit(&served, path, "POST", values, at).await;
    }
    StatusCode::METHOD_NOT_ALLOWED.into_response()
}

async fn submit(
    served: &Served,
    path: String,
    method: &str,
    values: Vec<(String, String)>,
    at: SystemTime,
) -> Response {
    let event = AppEvent::Submit {
        path,
        method: method.to_owned(),
        values,
        at,
    };
    let _ = served.events.send(event).await;
    vxml(apps::GOODBYE.to_owned())
}

fn vxml(document: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/voicexml+xml")],
        document,
    )
        .into_response()
}

/// `name=value&...` decoded.
pub fn form_values(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The file `path` names under `dir`, if it is a plain relative path to an existing file.
fn file_under(dir: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.trim_start_matches('/'));
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let file = dir.join(relative);
    (plain && !path.is_empty() && file.is_file()).then_some(file)
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("vxml") => "application/voicexml+xml",
        Some("grxml") => "application/srgs+xml",
        Some("wav") => "audio/wav",
        Some("js") => "application/javascript",
        Some("xml") => "application/xml",
        _ => "text/plain",
    }
}

/// One line for `outdial bench appserver`'s output.
pub fn describe(event: &AppEvent) -> String {
    match event {
        AppEvent::Submit {
            path,
            method,
            values,
            ..
        } => {
            let pairs: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("submit {method} {path} {}", pairs.join(" "))
        }
        AppEvent::Status { record, .. } => {
            let field = |name: &str| record[name].as_str().unwrap_or("?").to_owned();
            let mut line = format!("status {} {}", field("id"), field("status"));
            if let Some(code) = record["sip_status"].as_u64() {
                line.push_str(&format!(" sip={code}"));
            }
            if !record["result"].is_null() {
                line.push_str(&format!(" result={}", record["result"]));
            }
            if let Some(reason) = record["reason"].as_str() {
                line.push_str(&format!(" reason={reason:?}"));
            }
            line
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start(dir: Option<PathBuf>) -> (String, mpsc::Receiver<AppEvent>) {
        let (listener, addr) = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(serve(listener, dir, tx));
        (format!("http://{addr}"), rx)
    }

    #[tokio::test]
    async fn serves_apps_and_files_and_reports_submits_and_statuses() {
        let dir = std::env::temp_dir().join(format!("outdial-appserver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("mine.vxml"), "<vxml/>").expect("write");
        let (base, mut rx) = start(Some(dir.clone())).await;
        let http = reqwest::Client::new();

        let survey = http
            .get(format!("{base}/survey.vxml"))
            .send()
            .await
            .expect("get");
        assert_eq!(survey.status(), 200);
        assert_eq!(
            survey.headers()[header::CONTENT_TYPE],
            "application/voicexml+xml"
        );
        assert_eq!(survey.text().await.expect("body"), apps::SURVEY.document);
        let mine = http
            .get(format!("{base}/mine.vxml"))
            .send()
            .await
            .expect("get");
        assert_eq!(mine.text().await.expect("body"), "<vxml/>");
        let escape = http
            .get(format!("{base}/..%2f..%2fetc/passwd"))
            .send()
            .await;
        assert_eq!(escape.expect("get").status(), 404);
        let missing = http.get(format!("{base}/none.vxml")).send().await;
        assert_eq!(missing.expect("get").status(), 404);

        let answer = http
            .post(format!("{base}/submit"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("call=7&digits=0042&t=1")
            .send()
            .await
            .expect("post");
        assert_eq!(answer.status(), 200);
        assert!(answer.text().await.expect("body").contains("<disconnect/>"));
        match rx.recv().await {
            Some(AppEvent::Submit { path, values, .. }) => {
                assert_eq!(path, "/submit");
                let expected = [("call", "7"), ("digits", "0042"), ("t", "1")]
                    .map(|(k, v)| (k.to_owned(), v.to_owned()));
                assert_eq!(values, expected);
            }
            other => panic!("expected a submit, got {other:?}"),
        }
        let get_submit = http.get(format!("{base}/answer?code=9")).send().await;
        assert_eq!(get_submit.expect("get").status(), 200);
        assert!(matches!(
            rx.recv().await,
            Some(AppEvent::Submit { method, .. }) if method == "GET"
        ));

        let record = serde_json::json!({"id": "call_X", "status": "completed", "sip_status": 200});
        let status = http
            .post(format!("{base}{STATUS_PATH}"))
            .json(&record)
            .send()
            .await
            .expect("post");
        assert_eq!(status.status(), 204);
        let event = rx.recv().await.expect("status event");
        assert_eq!(describe(&event), "status call_X completed sip=200");
        let garbage = http
            .post(format!("{base}{STATUS_PATH}"))
            .body("{")
            .send()
            .await;
        assert_eq!(garbage.expect("post").status(), 400);
        let _ = std::fs::remove_dir_all(dir);
    }
}
