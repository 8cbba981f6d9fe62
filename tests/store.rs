//! End-to-end: the durable pipeline through the real `outdial serve` — keys made and revoked
//! through the admin API with curl, and a call left live by `kill -9` failed at the restart
//! with its final webhook and its CDR.

use std::process::Command;
use std::time::Duration;

use outdial_tests::{AppServer, Outdial, Sipp};
use serde_json::{Value, json};

fn curl(args: &[&str]) -> (u16, Value) {
    let output = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn bearer(key: &str) -> String {
    format!("Authorization: Bearer {key}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_at_once() {
    let outdial = Outdial::start("");
    let admin = bearer(&outdial.api_key);
    let json_type = "Content-Type: application/json";
    let (status, tenant) = curl(&[
        "-H",
        &admin,
        "-H",
        json_type,
        "-d",
        r#"{"id": "acme"}"#,
        &format!("{}/v1/admin/tenants", outdial.api),
    ]);
    assert_eq!(status, 201, "{tenant}");
    let (status, key) = curl(&[
        "-H",
        &admin,
        "-H",
        json_type,
        "-d",
        r#"{"tenant": "acme", "scopes": ["calls:create", "calls:read"]}"#,
        &format!("{}/v1/admin/keys", outdial.api),
    ]);
    assert_eq!(status, 201, "{key}");
    let user = bearer(key["key"].as_str().expect("key"));
    let calls = format!("{}/v1/calls", outdial.api);
    let (status, listed) = curl(&["-H", &user, &calls]);
    assert_eq!(status, 200, "{listed}");
    let (status, denied) = curl(&["-H", &user, &format!("{}/v1/admin/keys", outdial.api)]);
    assert_eq!(
        (status, denied["error"]["code"].clone()),
        (403, json!("insufficient_scope"))
    );

    let key_url = format!(
        "{}/v1/admin/keys/{}",
        outdial.api,
        key["id"].as_str().expect("id")
    );
    let (status, revoked) = curl(&["-X", "DELETE", "-H", &admin, &key_url]);
    assert_eq!(status, 200, "{revoked}");
    let (status, refused) = curl(&["-H", &user, &calls]);
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (401, json!("invalid_api_key"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_interrupted_by_kill_9_gets_its_final_webhook_and_cdr_after_restart() {
    let sipp = Sipp::uas("ring_forever.xml", &[]);
    let app = AppServer::start().await;
    app.route("/status", 204, "text/plain", "");
    let mut outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550009"),
            "url": "http://127.0.0.1:9/never-fetched.vxml",
            "ring_timeout": 60,
            "status_callback": app.url("/status"),
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let ringing = outdial
        .wait_status(&id, "ringing", Duration::from_secs(60))
        .await;
    assert_eq!(ringing["status"], "ringing", "{ringing}");

    outdial.restart(); // SIGKILL, then a new process on the same data
    let call = outdial.wait_final(&id, Duration::from_secs(30)).await;
    assert_eq!(call["status"], "failed", "{call}");
    assert_eq!(
        call["reason"], "interrupted: the server stopped during the call",
        "{call}"
    );

    // The final webhook leaves from the outbox after the restart.
    let mut statuses = Vec::new();
    for _ in 0..200 {
        statuses = app
            .received()
            .iter()
            .filter(|r| r.path == "/status")
            .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
            .map(|v| v["status"].as_str().unwrap_or_default().to_owned())
            .collect();
        if statuses.iter().any(|s| s == "failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        statuses.iter().any(|s| s == "failed"),
        "webhooks received: {statuses:?}"
    );

    let auth = bearer(&outdial.api_key);
    let (status, events) = curl(&[
        "-H",
        &auth,
        &format!("{}/v1/calls/{id}/events", outdial.api),
    ]);
    assert_eq!(status, 200, "{events}");
    let names: Vec<_> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["status"].clone())
        .collect();
    assert_eq!(
        names,
        vec![
            json!("queued"),
            json!("dialing"),
            json!("ringing"),
            json!("failed")
        ]
    );
    let (status, cdrs) = curl(&["-H", &auth, &format!("{}/v1/cdrs", outdial.api)]);
    assert_eq!(status, 200, "{cdrs}");
    assert_eq!(cdrs["cdrs"].as_array().map(Vec::len), Some(1), "{cdrs}");
    assert_eq!(cdrs["cdrs"][0]["call_id"], json!(id));
    assert_eq!(cdrs["cdrs"][0]["disposition"], "failed");
    assert!(cdrs["cdrs"][0]["ringing_at"].is_string(), "{cdrs}");
    assert!(cdrs["cdrs"][0]["media"].is_null(), "never answered: {cdrs}");
    drop(sipp);
}
