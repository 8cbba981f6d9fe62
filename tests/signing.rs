//! End-to-end request signing: the real `outdial serve`, the secret made and required through
//! the admin API with curl, signed requests sent by an independent Python client
//! (`tests/sign.py`, stdlib hmac/hashlib) and by `outdial call`, refusals seen by curl.

use std::process::Command;

use outdial_tests::{Outdial, outdial_bin, project_root};
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

/// Runs `tests/sign.py send` with `args`; returns (status, JSON answer).
fn python(args: &[&str]) -> (u16, Value) {
    let output = Command::new("python3")
        .arg(project_root().join("tests/sign.py"))
        .arg("send")
        .args(args)
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (code, body) = text.split_once('\n').unwrap_or(("0", ""));
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or(""))
}

#[test]
fn the_python_client_checks_the_published_vectors() {
    let output = Command::new("python3")
        .arg(project_root().join("tests/sign.py"))
        .arg("check-vectors")
        .arg(project_root().join("docs/security/vectors.json"))
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("4 vectors ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_requiring_signatures_takes_signed_requests_only() {
    let outdial = Outdial::start("");
    let auth = format!("Authorization: Bearer {}", outdial.api_key);
    let admin = format!("{}/v1/admin/tenants/dev", outdial.api);
    let made = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        &format!("{admin}/signing-secret"),
    ]);
    assert_eq!(made.0, 201, "{:?}", made.1);
    let secret = made.1["signing_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let json_type = "Content-Type: application/json";
    let required = curl(&[
        "-X",
        "PUT",
        "-H",
        &auth,
        "-H",
        json_type,
        "-d",
        r#"{"required":true}"#,
        &format!("{admin}/signing"),
    ]);
    assert_eq!((required.0, &required.1["required"]), (200, &json!(true)));

    // A call due in an hour: it stays queued, so no SIP peer is needed.
    let at = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let body = json!({
        "to": "sip:+15550100@127.0.0.1:9",
        "url": "http://127.0.0.1:9/app.vxml",
        "at": at,
    })
    .to_string();
    let calls = format!("{}/v1/calls", outdial.api);

    let unsigned = curl(&["-H", &auth, "-H", json_type, "-d", &body, &calls]);
    assert_eq!(code(&unsigned), (401, "missing_signature"));

    let key = outdial.api_key.clone();
    let base = ["--url", &calls, "--api-key", &key, "--data", &body];
    let signed = python(&[&base[..], &["--secret", &secret]].concat());
    assert_eq!(signed.0, 201, "{:?}", signed.1);
    let id = signed.1["id"].as_str().expect("id").to_owned();

    let now = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let fixed = [
        "--secret",
        &secret,
        "--timestamp",
        &now,
        "--nonce",
        "e2e-replayed-nonce-1",
    ];
    let first = python(&[&base[..], &fixed[..]].concat());
    assert_eq!(first.0, 201, "{:?}", first.1);
    let replay = python(&[&base[..], &fixed[..]].concat());
    assert_eq!(code(&replay), (401, "replayed_nonce"));

    let old = (time::OffsetDateTime::now_utc().unix_timestamp() - 600).to_string();
    let stale = python(&[&base[..], &["--secret", &secret, "--timestamp", &old]].concat());
    assert_eq!(code(&stale), (401, "stale_timestamp"));
    let wrong = python(&[&base[..], &["--secret", "odsig_wrong"]].concat());
    assert_eq!(code(&wrong), (401, "bad_signature"));

    let get = format!("{calls}/{id}");
    let read = python(&[
        "--url",
        &get,
        "--api-key",
        &key,
        "--secret",
        &secret,
        "--method",
        "GET",
    ]);
    assert_eq!(
        (read.0, &read.1["status"]),
        (200, &json!("queued")),
        "{:?}",
        read.1
    );

    // A digest that is not the body's, by curl with hand-written headers.
    let other_digest = format!("Outdial-Content-SHA256: {}", "0".repeat(64));
    let signature = format!(
        "Outdial-Signature: t={now},n=e2e-digest-nonce-01,v1={}",
        "a".repeat(64)
    );
    let mismatch = curl(&[
        "-H",
        &auth,
        "-H",
        json_type,
        "-H",
        &other_digest,
        "-H",
        &signature,
        "-d",
        &body,
        &calls,
    ]);
    assert_eq!(code(&mismatch), (401, "body_digest_mismatch"));

    // The Rust command-line client signs too.
    let cli = Command::new(outdial_bin())
        .args(["call", "--api", &outdial.api, "--no-wait", "--json"])
        .args([
            "--to",
            "sip:+15550100@127.0.0.1:9",
            "--url",
            "http://127.0.0.1:9/a.vxml",
        ])
        .env("OUTDIAL_API_KEY", &key)
        .env("OUTDIAL_SIGNING_SECRET", &secret)
        .output()
        .expect("run outdial call");
    assert!(
        cli.status.success(),
        "{}{}",
        String::from_utf8_lossy(&cli.stdout),
        String::from_utf8_lossy(&cli.stderr)
    );
    let unsigned_cli = Command::new(outdial_bin())
        .args(["call", "--api", &outdial.api, "--no-wait"])
        .args([
            "--to",
            "sip:+15550100@127.0.0.1:9",
            "--url",
            "http://127.0.0.1:9/a.vxml",
        ])
        .env("OUTDIAL_API_KEY", &key)
        .env_remove("OUTDIAL_SIGNING_SECRET")
        .output()
        .expect("run outdial call");
    assert!(!unsigned_cli.status.success());
    assert!(
        String::from_utf8_lossy(&unsigned_cli.stderr).contains("missing_signature"),
        "{}",
        String::from_utf8_lossy(&unsigned_cli.stderr)
    );
}
