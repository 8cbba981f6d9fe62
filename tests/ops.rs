//! End-to-end operability: the real `outdial serve` as an operator runs it — one server per
//! data directory, bounded HTTP connections with file descriptors kept for calls, readiness,
//! draining on SIGTERM, and metrics.

use std::time::Duration;

use outdial_tests::{Outdial, Sipp};
use serde_json::json;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A second server on the same data directory refuses to start, names the first one, and
/// leaves the first one's live call alone (it used to mark it `failed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let sipp = Sipp::uas("ring_forever.xml", &[]);
    let outdial = Outdial::start("");
    let (status, created) = outdial
        .create_call(&json!({
            "to": sipp.uri("+15550101"),
            "url": "http://127.0.0.1:9/never-fetched.vxml",
            "ring_timeout": 60,
        }))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let ringing = outdial.wait_status(id, "ringing", CALL_TIMEOUT).await;
    assert_eq!(ringing["status"], "ringing", "{ringing}");

    let (exit, output) = tokio::task::block_in_place(|| outdial.second_on_same_data());
    assert_eq!(exit.code(), Some(1), "{output}");
    assert!(
        output.contains("is in use by another `outdial serve`")
            && output.contains(&format!("pid {}", outdial.pid())),
        "{output}"
    );
    let still = outdial.get_call(id).await;
    assert_eq!(
        still["status"], "ringing",
        "the first server's call is untouched: {still}"
    );

    let (status, body) = outdial.cancel_call(id).await;
    assert_eq!(status, 202, "{body}");
    let call = outdial.wait_final(id, Duration::from_secs(20)).await;
    assert_eq!(call["status"], "canceled", "{call}");
    let (sipp_status, trace) = sipp.finish(Duration::from_secs(10)).await;
    assert!(sipp_status.success(), "{trace}");
}
