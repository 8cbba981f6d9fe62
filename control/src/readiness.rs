//! `GET /readyz`: whether a load balancer should send this server calls. Ready means the
//! store answers, every dataplane core is running, the HTTP listener is up, and the server is
//! not draining. `/healthz` (is the process alive) stays as it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::store::DataStore;

/// The live cores and all cores, as reported by the dataplane.
pub type CoreCount = dyn Fn() -> (usize, usize) + Send + Sync;

/// What `/readyz` checks; cheap to clone.
#[derive(Clone)]
pub struct Readiness {
    store: Arc<dyn DataStore>,
    cores: Arc<CoreCount>,
    listening: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    /// Readiness over `store` and the cores `cores` reports; not listening, not draining.
    pub fn new(store: Arc<dyn DataStore>, cores: Arc<CoreCount>) -> Self {
        Self {
            store,
            cores,
            listening: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The HTTP listener is bound and serving.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Relaxed);
    }

    /// The server has begun to drain: from now on it is not ready.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// True once draining has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The `/readyz` route.
    pub fn router(self) -> Router {
        Router::new().route("/readyz", get(readyz)).with_state(self)
    }
}

async fn readyz(State(ready): State<Readiness>) -> (StatusCode, Json<Value>) {
    let store = match ready.store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.to_string(),
    };
    let (alive, cores) = (ready.cores)();
    let listening = ready.listening.load(Ordering::Relaxed);
    let draining = ready.is_draining();
    let is_ready = store == "ok" && alive == cores && cores > 0 && listening && !draining;
    let status = match (is_ready, draining) {
        (true, _) => "ready",
        (false, true) => "draining",
        (false, false) => "not_ready",
    };
    let code = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "store": store,
        "cores_alive": alive,
        "cores": cores,
        "listening": listening,
        "draining": draining,
    });
    (code, Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    async fn get_readyz(ready: &Readiness) -> (StatusCode, Value) {
        let request = axum::http::Request::get("/readyz")
            .body(axum::body::Body::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        let response = ready
            .clone()
            .router()
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn ready_only_when_listening_with_every_core_alive_and_not_draining() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn DataStore> = Arc::new(
            crate::store::sqlite::SqliteStore::open(&dir.path().join("outdial.sqlite"))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let alive = Arc::new(AtomicUsize::new(2));
        let seen = Arc::clone(&alive);
        let ready = Readiness::new(store, Arc::new(move || (seen.load(Ordering::Relaxed), 2)));

        let (status, body) = get_readyz(&ready).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "not_ready");
        assert_eq!(body["listening"], false);

        ready.set_listening();
        let (status, body) = get_readyz(&ready).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ready");
        assert_eq!(body["store"], "ok");

        alive.store(1, Ordering::Relaxed);
        let (status, body) = get_readyz(&ready).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["cores_alive"], 1);

        alive.store(2, Ordering::Relaxed);
        ready.set_draining();
        let (status, body) = get_readyz(&ready).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "draining");
    }
}
