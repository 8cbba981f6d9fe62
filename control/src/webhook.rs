//! Status webhooks: the call record POSTed to `status_callback`, signed per Standard Webhooks.
//!
//! Each delivery carries `webhook-id` (the same on every retry), `webhook-timestamp` (Unix
//! seconds at that attempt) and `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `id.timestamp.body`, keyed with the tenant's secret (`whsec_` + base64 key). A delivery that
//! gets no 2xx (redirects included) is retried after 1 s, 5 s and 30 s, then given up.
//! Deliveries are independent: a receiver orders them by the record's `status` and times.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::auth;
use crate::error::Error;
use crate::model::CallRecord;
use crate::store::Store;

/// Waits before the retries that follow a failed first attempt.
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
];

/// Time limit for one delivery attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends status webhooks in background tasks; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    store: Store,
    retry_delays: Arc<[Duration]>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("retry_delays", &self.retry_delays)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// A sender that signs with each tenant's secret from `store`.
    pub fn new(store: Store) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Outdial/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Client(format!("cannot build the webhook HTTP client: {e}")))?;
        Ok(Self {
            client,
            store,
            retry_delays: Arc::new(RETRY_DELAYS),
        })
    }

    /// The same sender with other retry delays (tests use short ones).
    pub fn with_retry_delays(mut self, delays: &[Duration]) -> Self {
        self.retry_delays = delays.into();
        self
    }

    /// Posts `record` to its `status_callback`, if it has one, in a background task.
    /// Outside a tokio runtime the notification is dropped with a warning.
    pub fn notify(&self, record: &CallRecord) {
        if record.status_callback.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(call = %record.id, "webhook dropped: no async runtime");
            return;
        };
        let webhooks = self.clone();
        let record = record.clone();
        runtime.spawn(async move {
            if let Err(e) = webhooks.deliver(&record).await {
                metrics::counter!("outdial_webhook_failures_total").increment(1);
                tracing::warn!(call = %record.id, status = %record.status, error = %e, "webhook not delivered");
            }
        });
    }

    /// Delivers one notification now, with retries; returns the last failure if all fail.
    pub async fn deliver(&self, record: &CallRecord) -> Result<(), Error> {
        let Some(url) = &record.status_callback else {
            return Ok(());
        };
        let body = serde_json::to_vec(record)
            .map_err(|e| Error::Client(format!("cannot encode the record: {e}")))?;
        let secret = self.store.tenant_webhook_secret(&record.tenant).await?;
        let msg_id = format!("msg_{}", auth::random_base32(26)?);
        let mut delays = self.retry_delays.iter();
        loop {
            let outcome = self.attempt(url, &secret, &msg_id, &body).await;
            let error = match outcome {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let Some(delay) = delays.next() else {
                return Err(error);
            };
            tracing::debug!(call = %record.id, error = %error, retry_in_ms = delay.as_millis() as u64, "webhook attempt failed");
            tokio::time::sleep(*delay).await;
        }
    }

    async fn attempt(
        &self,
        url: &str,
        secret: &str,
        msg_id: &str,
        body: &[u8],
    ) -> Result<(), Error> {
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = sign(secret, msg_id, timestamp, body)?;
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| Error::Client(format!("POST {url}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Error::Client(format!("POST {url}: answered {status}")))
        }
    }
}

/// The `webhook-signature` value: `v1,` + base64(HMAC-SHA256(key, `id.timestamp.body`)),
/// where the key is the base64 text after `whsec_` in `secret`.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, Error> {
    let tag = mac(secret, msg_id, timestamp, body)?
        .finalize()
        .into_bytes();
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    ))
}

/// True when one of the space-separated signatures in `header` is a valid `v1` signature of
/// `id.timestamp.body` (constant-time comparison). Receivers should also refuse timestamps
/// more than 5 minutes from their clock.
pub fn verify(secret: &str, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|encoded| {
            let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
                return false;
            };
            mac(secret, msg_id, timestamp, body).is_ok_and(|m| m.verify_slice(&tag).is_ok())
        })
}

fn mac(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<Hmac<Sha256>, Error> {
    let encoded = secret
        .strip_prefix(auth::WEBHOOK_SECRET_PREFIX)
        .unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| Error::Config("the webhook secret is not whsec_ + base64".to_owned()))?;
    // invariant: HMAC accepts keys of any length, so this never fails.
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| Error::Config("the webhook secret is empty".to_owned()))?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use crate::model::NewCall;

    /// From the Standard Webhooks specification's reference vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_reference_vector() {
        assert_eq!(
            sign(SECRET, MSG_ID, TIMESTAMP, PAYLOAD).ok().as_deref(),
            Some(SIGNATURE)
        );
    }

    #[test]
    fn verify_accepts_only_the_exact_message() {
        assert!(verify(SECRET, MSG_ID, TIMESTAMP, PAYLOAD, SIGNATURE));
        assert!(verify(
            SECRET,
            MSG_ID,
            TIMESTAMP,
            PAYLOAD,
            &format!("v1,AAAA {SIGNATURE}")
        ));
        assert!(!verify(SECRET, MSG_ID, TIMESTAMP + 1, PAYLOAD, SIGNATURE));
        assert!(!verify(SECRET, "msg_other", TIMESTAMP, PAYLOAD, SIGNATURE));
        assert!(!verify(
            SECRET,
            MSG_ID,
            TIMESTAMP,
            br#"{"test": 2432232315}"#,
            SIGNATURE
        ));
        assert!(!verify(SECRET, MSG_ID, TIMESTAMP, PAYLOAD, "v2,g0hM9SsE"));
        assert!(!verify("whsec_AAAA", MSG_ID, TIMESTAMP, PAYLOAD, SIGNATURE));
    }

    #[derive(Debug, Clone)]
    struct Received {
        headers: HeaderMap,
        body: Vec<u8>,
    }

    /// A receiver on 127.0.0.1:0 that answers 500 to the first `failures` posts, then 204.
    async fn receiver(failures: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = Arc::clone(&received);
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let log = Arc::clone(&log);
                async move {
                    let mut log = log
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    log.push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    if log.len() <= failures {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook"), received)
    }

    async fn stored_call(store: &Store, callback: &str) -> CallRecord {
        let new = NewCall {
            tenant: "acme".to_owned(),
            to: "sip:bob@127.0.0.1".to_owned(),
            target_uri: "sip:bob@127.0.0.1".to_owned(),
            from: None,
            url: "http://127.0.0.1/app.vxml".to_owned(),
            vars: serde_json::Map::new(),
            status_callback: Some(callback.to_owned()),
            ring_timeout_secs: None,
        };
        store
            .insert_call(new)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn header<'a>(received: &'a Received, name: &str) -> &'a str {
        received
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn delivery_is_signed_and_retried_with_the_same_id() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store =
            Store::open(&dir.path().join("outdial.sqlite")).unwrap_or_else(|e| panic!("{e}"));
        let (url, received) = receiver(2).await;
        let record = stored_call(&store, &url).await;
        let webhooks = Webhooks::new(store.clone())
            .unwrap_or_else(|e| panic!("{e}"))
            .with_retry_delays(&[Duration::from_millis(10); 3]);
        webhooks
            .deliver(&record)
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let received = received.lock().map(|r| r.clone()).unwrap_or_default();
        assert_eq!(received.len(), 3, "two failures, then success");
        let secret = store
            .tenant_webhook_secret("acme")
            .await
            .unwrap_or_default();
        let first_id = header(&received[0], "webhook-id").to_owned();
        assert!(first_id.starts_with("msg_"));
        for delivery in &received {
            assert_eq!(
                header(delivery, "webhook-id"),
                first_id,
                "id must not change on retry"
            );
            assert_eq!(header(delivery, "content-type"), "application/json");
            let timestamp: i64 = header(delivery, "webhook-timestamp").parse().unwrap_or(0);
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            assert!(
                (now - timestamp).abs() < 300,
                "timestamp {timestamp} vs now {now}"
            );
            let signature = header(delivery, "webhook-signature");
            assert!(verify(
                &secret,
                &first_id,
                timestamp,
                &delivery.body,
                signature
            ));
            assert!(!verify(
                "whsec_AAAAAAAA",
                &first_id,
                timestamp,
                &delivery.body,
                signature
            ));
            let body: serde_json::Value =
                serde_json::from_slice(&delivery.body).unwrap_or_default();
            assert_eq!(body, serde_json::to_value(&record).unwrap_or_default());
        }
    }

    #[tokio::test]
    async fn gives_up_after_the_last_retry() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store =
            Store::open(&dir.path().join("outdial.sqlite")).unwrap_or_else(|e| panic!("{e}"));
        let (url, received) = receiver(usize::MAX).await;
        let record = stored_call(&store, &url).await;
        let webhooks = Webhooks::new(store)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_retry_delays(&[Duration::from_millis(5); 3]);
        let result = webhooks.deliver(&record).await;
        assert!(result.is_err_and(|e| e.to_string().contains("500")));
        assert_eq!(
            received.lock().map(|r| r.len()).unwrap_or_default(),
            4,
            "1 try + 3 retries"
        );
    }

    #[tokio::test]
    async fn notify_posts_in_the_background() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store =
            Store::open(&dir.path().join("outdial.sqlite")).unwrap_or_else(|e| panic!("{e}"));
        let (url, received) = receiver(0).await;
        let record = stored_call(&store, &url).await;
        let webhooks = Webhooks::new(store).unwrap_or_else(|e| panic!("{e}"));
        webhooks.notify(&record);
        let mut waited = 0;
        while received.lock().map(|r| r.is_empty()).unwrap_or(true) {
            assert!(waited < 500, "no webhook within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        let mut no_callback = record.clone();
        no_callback.status_callback = None;
        webhooks.notify(&no_callback); // nothing to send, nothing spawned
    }
}
