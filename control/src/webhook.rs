//! Status webhooks: the call record POSTed to `status_callback`, signed per Standard Webhooks,
//! delivered from the store's outbox.
//!
//! The store writes an outbox row in the same transaction as each status change; this worker
//! posts due rows, deletes them on a 2xx, and otherwise reschedules them after 1 s, 5 s, 30 s,
//! 2 min, 10 min and 1 h (the schedule lives in the store, so it survives restarts); after the
//! last try the row is a dead letter, listed by `GET /v1/webhooks/dead-letters`. Each delivery
//! carries `webhook-id` (the same on every try), `webhook-timestamp` (Unix seconds at that try)
//! and `webhook-signature: v1,<base64 HMAC-SHA256>` over `id.timestamp.body`, keyed with the
//! tenant's secret (`whsec_` + base64 key). Deliveries are independent and at least once: a
//! receiver orders them by the record's `status` and times, and drops repeated ids.
//!
//! A `mailto:` callback ([`mail`]) is delivered from the same outbox as one result mail when
//! the call is final, queued in the reply-mail outbox (at least once: a crash between the two
//! writes sends it again).

pub mod mail;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::auth;
use crate::error::Error;
use crate::store::{DataStore, OutboxItem};

/// Waits before the tries that follow a failed first try; after the last, a dead letter.
pub const RETRY_DELAYS: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

/// Time limit for one delivery attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Deliveries in flight at once.
pub const MAX_IN_FLIGHT: usize = 64;

/// The outbox worker's handle; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    /// One client per set of outbound-connection rules (see [`crate::egress`]).
    clients: crate::egress::Scoped<reqwest::Client>,
    store: Arc<dyn DataStore>,
    retry_delays: Vec<Duration>,
    wake: Notify,
    /// Outbox rows being delivered now.
    busy: Mutex<HashSet<i64>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("retry_delays", &self.inner.retry_delays)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// A worker over `store`'s outbox with the standard retry schedule, keeping each
    /// tenant's deliveries to `egress`.
    pub fn new(
        store: Arc<dyn DataStore>,
        egress: crate::egress::EgressPolicy,
    ) -> Result<Self, Error> {
        Self::with_retry_delays(store, &RETRY_DELAYS, egress)
    }

    /// A worker with another retry schedule (tests use short ones).
    pub fn with_retry_delays(
        store: Arc<dyn DataStore>,
        retry_delays: &[Duration],
        egress: crate::egress::EgressPolicy,
    ) -> Result<Self, Error> {
        let build = |rules: Option<Arc<crate::egress::TenantEgress>>| {
            let builder = reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("Outdial/", env!("CARGO_PKG_VERSION")));
            match rules {
                Some(rules) => crate::egress::restrict(builder, &rules),
                None => builder,
            }
            .build()
        };
        // The unrestricted client is built now, so a broken TLS setup fails at start.
        let plain = build(None)
            .map_err(|e| Error::Client(format!("cannot build the webhook HTTP client: {e}")))?;
        let clients = crate::egress::Scoped::new(egress, move |rules| {
            if rules.is_unrestricted() {
                return plain.clone();
            }
            build(Some(Arc::clone(&rules))).unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot build a restricted webhook client; deliveries to this tenant fail");
                reqwest::Client::builder()
                    .dns_resolver(crate::egress::PolicyResolver::new(Arc::new(
                        crate::egress::TenantEgress::deny_all(),
                    )))
                    .build()
                    .unwrap_or_default()
            })
        });
        Ok(Self {
            inner: Arc::new(Inner {
                clients,
                store,
                retry_delays: retry_delays.to_vec(),
                wake: Notify::new(),
                busy: Mutex::default(),
            }),
        })
    }

    /// Something was written to the outbox: look now rather than at the next poll.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Delivers due rows for as long as the process runs: when woken, when the next row is
    /// due, and at least once a second. Rows due but already in flight do not make it poll:
    /// a finished delivery wakes it.
    pub async fn run(self) {
        loop {
            let started = match self.deliver_due().await {
                Ok(started) => started,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the webhook outbox");
                    0
                }
            };
            let wait = match self.inner.store.next_webhook_at().await {
                Ok(Some(next)) if started == 0 && next <= OffsetDateTime::now_utc() => {
                    Duration::from_secs(1)
                }
                Ok(Some(next)) => {
                    let until = next - OffsetDateTime::now_utc();
                    Duration::try_from(until)
                        .unwrap_or(Duration::ZERO)
                        .clamp(Duration::from_millis(10), Duration::from_secs(1))
                }
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts a delivery task for each due row not already in flight; returns how many.
    pub async fn deliver_due(&self) -> Result<usize, Error> {
        let busy: Vec<i64> = self.busy().iter().copied().collect();
        let room = MAX_IN_FLIGHT.saturating_sub(busy.len());
        if room == 0 {
            return Ok(0);
        }
        let now = OffsetDateTime::now_utc();
        let due = self
            .inner
            .store
            .due_webhooks(now, u32::try_from(room).unwrap_or(u32::MAX), busy)
            .await?;
        let started = due.len();
        for item in due {
            if !self.busy().insert(item.seq) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let seq = item.seq;
                me.deliver(item).await;
                me.busy().remove(&seq);
                me.wake();
            });
        }
        Ok(started)
    }

    /// One try of one row, and its outcome written back to the outbox.
    async fn deliver(&self, item: OutboxItem) {
        let outcome = if crate::config::has_scheme(&item.url, "mailto") {
            self.queue_result_mail(&item).await
        } else {
            self.attempt(
                &item.tenant,
                &item.url,
                &item.secret,
                &item.msg_id,
                item.body.as_bytes(),
            )
            .await
        };
        let store = &self.inner.store;
        let written = match outcome {
            Ok(()) => {
                metrics::counter!("outdial_webhooks_delivered_total").increment(1);
                store.webhook_delivered(item.seq).await
            }
            Err(e) => {
                let now = OffsetDateTime::now_utc();
                let delay = usize::try_from(item.tries)
                    .ok()
                    .and_then(|tries| self.inner.retry_delays.get(tries));
                let retry_at = delay.map(|d| now + *d);
                metrics::counter!("outdial_webhook_failures_total").increment(1);
                if retry_at.is_none() {
                    metrics::counter!("outdial_webhook_dead_letters_total").increment(1);
                    tracing::warn!(call = %item.call_id, webhook = %item.msg_id, error = %e, "webhook given up: now a dead letter");
                } else {
                    tracing::debug!(call = %item.call_id, webhook = %item.msg_id, error = %e, "webhook try failed");
                }
                store
                    .webhook_failed(item.seq, e.to_string(), retry_at, now)
                    .await
            }
        };
        if let Err(e) = written {
            tracing::error!(call = %item.call_id, error = %e, "cannot record a webhook delivery");
        }
    }

    /// A `mailto:` callback's row: the result mail queued when the record is final; other
    /// status changes are done with at once.
    async fn queue_result_mail(&self, item: &OutboxItem) -> Result<(), Error> {
        let callback = mail::MailCallback::parse(&item.url)
            .map_err(|e| Error::Client(format!("status callback: {e}")))?;
        let record: serde_json::Value = serde_json::from_str(&item.body)
            .map_err(|e| Error::Client(format!("webhook body is not JSON: {e}")))?;
        let Some(result) = callback.result_mail(&record) else {
            return Ok(());
        };
        self.inner
            .store
            .enqueue_reply(result, OffsetDateTime::now_utc())
            .await
            .map_err(|e| Error::Client(format!("cannot queue the result mail: {e}")))?;
        metrics::counter!("outdial_result_mails_queued_total").increment(1);
        Ok(())
    }

    fn busy(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn attempt(
        &self,
        tenant: &str,
        url: &str,
        secret: &str,
        msg_id: &str,
        body: &[u8],
    ) -> Result<(), Error> {
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let signature = sign(secret, msg_id, timestamp, body)?;
        let (client, rules) = self.inner.clients.for_tenant(tenant);
        if let Ok(parsed) = reqwest::Url::parse(url)
            && let Err(refusal) = crate::egress::check_url(&rules, &parsed)
        {
            return Err(Error::Client(format!("POST {url}: refused: {refusal}")));
        }
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| match crate::egress::refusal_in(&e) {
                Some(refusal) => Error::Client(format!("POST {url}: refused: {refusal}")),
                None => Error::Client(format!("POST {url}: {e}")),
            })?;
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

    use crate::model::CallRecord;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{OutboxStore as _, TenantStore as _, testing};

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

    /// A call with `callback` claimed by `node-a`: its `dialing` webhook is in the outbox.
    async fn claimed_call(store: &SqliteStore, callback: &str) -> CallRecord {
        let mut new = testing::new_call("acme", 1);
        new.status_callback = Some(callback.to_owned());
        let record = testing::insert(store, new).await;
        testing::claim(store, "node-a", &record.id).await.record
    }

    fn header<'a>(received: &'a Received, name: &str) -> &'a str {
        received
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Waits (up to 10 s, polling) for `done`; panics with `what` if it never holds.
    async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
        for _ in 0..1000 {
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what} did not happen within 10 s");
    }

    fn count(received: &Mutex<Vec<Received>>) -> usize {
        received.lock().map(|r| r.len()).unwrap_or_default()
    }

    #[tokio::test]
    async fn delivery_is_signed_and_retried_with_the_same_id() {
        let (_dir, store) = testing::open_temp();
        let (url, received) = receiver(2).await;
        let record = claimed_call(&store, &url).await;
        let webhooks = Webhooks::with_retry_delays(
            store.clone(),
            &[Duration::from_millis(10); 3],
            crate::egress::EgressPolicy::unrestricted(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(webhooks.clone().run());
        until("three tries", async || count(&received) == 3).await;
        until("the outbox to empty", async || {
            store.next_webhook_at().await.ok() == Some(None)
        })
        .await;

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
            let now = OffsetDateTime::now_utc().unix_timestamp();
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
            assert_eq!(body["status"], "dialing");
        }
    }

    #[tokio::test]
    async fn the_last_failure_makes_a_dead_letter_that_can_be_redriven() {
        let (_dir, store) = testing::open_temp();
        let (url, received) = receiver(4).await;
        let record = claimed_call(&store, &url).await;
        let webhooks = Webhooks::with_retry_delays(
            store.clone(),
            &[Duration::from_millis(5); 3],
            crate::egress::EgressPolicy::unrestricted(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(webhooks.clone().run());
        until("a dead letter", async || {
            store
                .dead_letters("acme", 10, None)
                .await
                .is_ok_and(|d| d.len() == 1)
        })
        .await;
        assert_eq!(count(&received), 4, "1 try + 3 retries");
        let dead = store
            .dead_letters("acme", 10, None)
            .await
            .unwrap_or_default();
        assert_eq!(dead[0].call_id, record.id);
        assert_eq!(dead[0].tries, 4);
        assert!(
            dead[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("500"))
        );
        assert_eq!(dead[0].body["status"], "dialing");
        assert_eq!(
            store.next_webhook_at().await.ok(),
            Some(None),
            "nothing pending"
        );
        // Other tenants do not see it, nor can they redrive it.
        assert_eq!(
            store
                .dead_letters("other", 10, None)
                .await
                .map(|d| d.len())
                .ok(),
            Some(0)
        );
        let now = OffsetDateTime::now_utc();
        assert!(store.redrive("other", &dead[0].id, now).await.is_err());

        store
            .redrive("acme", &dead[0].id, now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        webhooks.wake();
        until("the redriven delivery", async || count(&received) == 5).await;
        until("the outbox to empty", async || {
            store.next_webhook_at().await.ok() == Some(None)
        })
        .await;
        assert_eq!(
            store
                .dead_letters("acme", 10, None)
                .await
                .map(|d| d.len())
                .ok(),
            Some(0)
        );
    }

    #[tokio::test]
    async fn pending_retries_survive_a_store_reopen() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("outdial.sqlite");
        let (url, received) = receiver(1).await;
        {
            let store = Arc::new(SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}")));
            store
                .tenant_webhook_secret("acme")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            claimed_call(&store, &url).await;
            let webhooks = Webhooks::with_retry_delays(
                store.clone(),
                &[Duration::from_millis(300)],
                crate::egress::EgressPolicy::unrestricted(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            // One try (it fails); the retry is written to the store, then the process "stops".
            assert_eq!(webhooks.deliver_due().await.ok(), Some(1));
            until("the failed try to be recorded", async || {
                webhooks.busy().is_empty()
            })
            .await;
            assert_eq!(count(&received), 1);
            assert!(store.next_webhook_at().await.ok().flatten().is_some());
        }
        let store = Arc::new(SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}")));
        let webhooks = Webhooks::new(store.clone(), crate::egress::EgressPolicy::unrestricted())
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(webhooks.run());
        until("the retry after reopening", async || count(&received) == 2).await;
        let received = received.lock().map(|r| r.clone()).unwrap_or_default();
        assert_eq!(
            header(&received[0], "webhook-id"),
            header(&received[1], "webhook-id"),
            "the same delivery, not a new one"
        );
        until("the outbox to empty", async || {
            store.next_webhook_at().await.ok() == Some(None)
        })
        .await;
    }
}
