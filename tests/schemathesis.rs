//! The OpenAPI spec matches the server: schemathesis (PyPI `schemathesis`, CLI `st`) generates
//! requests from `docs/openapi.yaml`, sends them to the live binary and runs every check on
//! the answers (status codes, response schemas, headers, acceptance of valid and refusal of
//! invalid data, stateful links). The one check exception, with its reason, is in
//! `tests/schemathesis.toml`; `tests/schemathesis_hooks.py` moves generated times next to the
//! present and keeps generated idempotency keys apart (what a schema cannot say).

use std::process::Command;

use outdial_tests::{Outdial, project_root};

/// Examples per operation and the seed: fixed so a failure reproduces and the run stays short.
const MAX_EXAMPLES: &str = "25";
const SEED: &str = "8";

#[test]
fn the_openapi_spec_matches_the_live_server() {
    // The outbound proxy keeps every generated call on a closed loopback port instead of
    // dialling the hosts in generated `to` URIs; the trunk makes E.164 numbers routable.
    let server = Outdial::start_with_sip(
        "127.0.0.1",
        "trunk = \"sip:127.0.0.1:9\"\noutbound_proxy = \"127.0.0.1:9\"",
        "",
    );
    let root = project_root();
    let output = Command::new("st")
        // Its cache (`.schemathesis/`) goes to the server's temporary directory.
        .current_dir(server.dir.path())
        .arg("--config-file")
        .arg(root.join("tests/schemathesis.toml"))
        .arg("run")
        .arg(root.join("docs/openapi.yaml"))
        .args(["--url", &server.api])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        // A 10,000-call batch (the spec's maximum) takes more than st's default 10 s in a
        // debug build on a loaded machine; this bounds a request, it asserts no speed.
        .args(["--request-timeout", "120"])
        .args(["--workers", "1", "--no-color"])
        .env("OUTDIAL_API_KEY", &server.api_key)
        .env(
            "SCHEMATHESIS_HOOKS",
            root.join("tests/schemathesis_hooks.py"),
        )
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => panic!(
            "cannot run `st` ({e}): install schemathesis with `pip install schemathesis` \
             (bash .ci/run does this when `st` is missing)"
        ),
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Shown with `--nocapture`: the phases and the numbers of generated and passed cases.
    println!("{report}");
    let log = server.log();
    let log_tail: Vec<&str> = log.lines().rev().take(40).collect();
    assert!(
        output.status.success(),
        "schemathesis found mismatches between docs/openapi.yaml and the server:\n{report}\nlast lines of the server log (newest first):\n{}",
        log_tail.join("\n")
    );
    // Guard against a vacuous pass: every operation in the spec was tested, cases were generated.
    let number_after = |label: &str| -> Option<u32> {
        let start = report.find(label)? + label.len();
        report[start..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let selected = number_after("Selected:");
    let tested = number_after("Tested:");
    let generated = number_after("Test cases:");
    assert!(
        selected.is_some_and(|n| n >= 5) && tested == selected,
        "schemathesis did not test every operation (selected {selected:?}, tested {tested:?}):\n{report}"
    );
    assert!(
        generated.is_some_and(|n| n >= 100),
        "schemathesis generated too few cases ({generated:?}):\n{report}"
    );
}
