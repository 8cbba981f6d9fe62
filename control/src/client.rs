//! A small client for the Outdial HTTP API, used by `outdial call`.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::model::{CallRecord, CallRequest};
use crate::signing;
use crate::store::CallEvent;

/// Where `outdial call` looks for a key when none is given: the development key that
/// `outdial serve` writes with the default `store.data_dir`.
pub const DEFAULT_DEV_KEY_FILE: &str = "./outdial-data/dev-api-key";

/// Consecutive transport failures tolerated while polling before giving up.
const MAX_POLL_FAILURES: u32 = 10;

/// An authenticated connection to one Outdial server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: url::Url,
    key: String,
    /// Signs every request with this secret when set (see `docs/security.md`).
    signing_secret: Option<String>,
}

impl ApiClient {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:8080`) using API key `key`.
    pub fn new(base: &str, key: String) -> Result<Self, Error> {
        Self::configured(base, key, None, None)
    }

    /// Like [`ApiClient::new`], trusting the PEM certificates in `cacert` for HTTPS besides
    /// the system's, and signing every request with `signing_secret` when given.
    pub fn configured(
        base: &str,
        key: String,
        cacert: Option<&Path>,
        signing_secret: Option<String>,
    ) -> Result<Self, Error> {
        let mut base = url::Url::parse(base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                Error::Client(format!(
                    "--api must be an http:// or https:// URL, not {base:?}"
                ))
            })?;
        // Paths are joined onto the base, so a base path must end in `/`.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("outdial-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = cacert {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Client(format!("cannot read --cacert {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Client(format!("--cacert {} is not PEM: {e}", path.display()))
            })?;
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| Error::Client(e.to_string()))?;
        Ok(Self {
            http,
            base,
            key,
            signing_secret,
        })
    }

    /// `POST /v1/calls`.
    pub async fn create_call(&self, request: &CallRequest) -> Result<CallRecord, Error> {
        self.send(Method::POST, "v1/calls", Some(request)).await
    }

    /// `GET /v1/calls/{id}`.
    pub async fn get_call(&self, id: &str) -> Result<CallRecord, Error> {
        self.send(Method::GET, &format!("v1/calls/{id}"), None::<&()>)
            .await
    }

    /// `DELETE /v1/calls/{id}`.
    pub async fn cancel_call(&self, id: &str) -> Result<CallRecord, Error> {
        self.send(Method::DELETE, &format!("v1/calls/{id}"), None::<&()>)
            .await
    }

    /// Polls call `id` every `interval` until it reaches a final status; `on_change` sees the
    /// record each time its status differs from the last one seen (the first poll included).
    /// `GET /v1/calls/{id}/events`: the call's status history, oldest first.
    pub async fn call_events(&self, id: &str) -> Result<Vec<CallEvent>, Error> {
        #[derive(serde::Deserialize)]
        struct Events {
            events: Vec<CallEvent>,
        }
        let events: Events = self
            .send(Method::GET, &format!("v1/calls/{id}/events"), None::<&()>)
            .await?;
        Ok(events.events)
    }

    /// Polls the call every `interval` until its status is final, handing `on_event` every
    /// status change of its history once, in order: read from the recorded history, so a
    /// change between two polls is never missed.
    pub async fn wait_for_final(
        &self,
        id: &str,
        interval: Duration,
        mut on_event: impl FnMut(&CallEvent),
    ) -> Result<CallRecord, Error> {
        let (mut last, mut shown, mut failures) = (None, 0, 0);
        loop {
            let polled = async {
                let record = self.get_call(id).await?;
                let events = if last == Some(record.status) {
                    None
                } else {
                    Some(self.call_events(id).await?)
                };
                Ok::<_, Error>((record, events))
            };
            match polled.await {
                Ok((record, events)) => {
                    failures = 0;
                    last = Some(record.status);
                    for event in events.iter().flatten().skip(shown) {
                        on_event(event);
                        shown += 1;
                    }
                    if record.status.is_final() {
                        return Ok(record);
                    }
                }
                // The server may be restarting: keep trying for a while.
                Err(Error::Client(e)) if failures < MAX_POLL_FAILURES => {
                    failures += 1;
                    tracing::debug!(error = %e, "poll failed; retrying");
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, Error> {
        let body = match body {
            Some(body) => serde_json::to_vec(body)
                .map_err(|e| Error::Client(format!("cannot encode the request: {e}")))?,
            None => Vec::new(),
        };
        self.send_bytes(method, path, "application/json", body)
            .await
    }

    /// Sends `body` of `content_type` (none when empty), signed when a secret is set; reads
    /// a JSON answer.
    pub async fn send_bytes<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<T, Error> {
        let url = self
            .base
            .join(path)
            .map_err(|e| Error::Client(e.to_string()))?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&self.key);
        if let Some(secret) = &self.signing_secret {
            let target = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            };
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let nonce = crate::auth::random_base32(26)?;
            let header =
                signing::signature_header(secret, method.as_str(), &target, now, &nonce, &body);
            request = request
                .header(signing::SIGNATURE_HEADER, header)
                .header(signing::DIGEST_HEADER, signing::body_sha256(&body));
        }
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::Client(format!("cannot reach {url}: {e}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::Client(format!("reading the answer from {url}: {e}")))?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Client(format!("unexpected answer from {url}: {e}")))
    }
}

/// The API key to use: the one given (flag or `OUTDIAL_API_KEY`), else the development key file.
pub fn resolve_api_key(given: Option<String>, dev_key_file: &Path) -> Result<String, Error> {
    if let Some(key) = given.map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()) {
        return Ok(key);
    }
    match std::fs::read_to_string(dev_key_file) {
        Ok(key) if !key.trim().is_empty() => Ok(key.trim().to_owned()),
        _ => Err(Error::Client(format!(
            "no API key: pass --api-key, set OUTDIAL_API_KEY, or run from the directory where \
             `outdial serve` created {}",
            dev_key_file.display()
        ))),
    }
}

/// An error answer as [`Error::Api`], reading the `{"error": {code, message}}` body.
fn api_error(status: StatusCode, body: &[u8]) -> Error {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v["error"][name].as_str())
            .map(str::to_owned)
    };
    let text = String::from_utf8_lossy(body);
    Error::Api {
        status: status.as_u16(),
        code: field("code").unwrap_or_else(|| "http_error".to_owned()),
        message: field("message").unwrap_or_else(|| text.chars().take(200).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_reads_code_and_message() {
        let body = br#"{"error":{"code":"no_trunk","message":"set sip.trunk"}}"#;
        let e = api_error(StatusCode::BAD_REQUEST, body);
        assert_eq!(e.to_string(), "no_trunk: set sip.trunk (HTTP 400)");
        let e = api_error(StatusCode::BAD_GATEWAY, b"<html>proxy</html>");
        assert!(matches!(e, Error::Api { status: 502, ref code, .. } if code == "http_error"));
    }

    #[test]
    fn key_resolution_prefers_the_given_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("dev-api-key");
        assert!(resolve_api_key(None, &file).is_err_and(|e| e.to_string().contains("--api-key")));
        let _ = std::fs::write(&file, "od_dev_fromfile\n");
        assert_eq!(
            resolve_api_key(None, &file).ok().as_deref(),
            Some("od_dev_fromfile")
        );
        assert_eq!(
            resolve_api_key(Some(" k ".into()), &file).ok().as_deref(),
            Some("k")
        );
        assert_eq!(
            resolve_api_key(Some(String::new()), &file).ok().as_deref(),
            Some("od_dev_fromfile")
        );
    }

    #[test]
    fn base_url_must_be_http() {
        assert!(ApiClient::new("ftp://127.0.0.1", "k".into()).is_err());
        assert!(ApiClient::new("127.0.0.1:8080", "k".into()).is_err());
        assert!(ApiClient::new("http://127.0.0.1:8080", "k".into()).is_ok());
    }
}
