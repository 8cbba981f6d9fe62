//! Every Prometheus series `outdial serve` exports, described once: its type, its help text,
//! histogram buckets, and a zero value from start, so dashboards and alerts see each series
//! before the first event (a counter that appears only when it first moves hides its first
//! increase from `rate()`).

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::CallStatus;

/// The type of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution with buckets.
    Histogram,
}

/// One series family.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    /// The metric name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn series(name: &'static str, kind: Kind, help: &'static str) -> Series {
    Series { name, kind, help }
}

/// Every series, with its type and help.
pub const SERIES: &[Series] = &[
    series(
        "outdial_build_info",
        Kind::Gauge,
        "Always 1; the labels say which build runs (version, profile, target).",
    ),
    series(
        "outdial_api_calls_created_total",
        Kind::Counter,
        "Calls accepted by POST /v1/calls.",
    ),
    series(
        "outdial_inbound_calls_total",
        Kind::Counter,
        "Incoming calls offered by the cores, by outcome (accepted, no_route, busy).",
    ),
    series(
        "outdial_calls_dialed_total",
        Kind::Counter,
        "INVITEs handed to a dataplane core.",
    ),
    series(
        "outdial_calls_ended_total",
        Kind::Counter,
        "Calls that reached a final status, by status.",
    ),
    series(
        "outdial_scheduler_queued_calls",
        Kind::Gauge,
        "Accepted calls waiting in the scheduler (not yet due, or due and waiting for a slot or the release rate).",
    ),
    series(
        "outdial_scheduler_expired_total",
        Kind::Counter,
        "Calls not placed before their not_after, ended expired.",
    ),
    series(
        "outdial_calls_in_flight",
        Kind::Gauge,
        "Calls dialing, ringing or in progress (at most calls.max_concurrent).",
    ),
    series(
        "outdial_call_setup_seconds",
        Kind::Histogram,
        "From a call's creation to its INVITE being handed to a core.",
    ),
    series(
        "outdial_post_dial_delay_seconds",
        Kind::Histogram,
        "From the INVITE to the first 180/183, or to the 200 OK when no ringing came first.",
    ),
    series(
        "outdial_answer_to_prompt_seconds",
        Kind::Histogram,
        "From the 200 OK to the first prompt's audio handed to the core.",
    ),
    series(
        "outdial_core_live_calls",
        Kind::Gauge,
        "Calls assigned to each dataplane core.",
    ),
    series(
        "outdial_core_alive",
        Kind::Gauge,
        "1 while a dataplane core's thread runs, 0 once it has stopped.",
    ),
    series(
        "outdial_core_turns_total",
        Kind::Counter,
        "Turns each dataplane core's loop has run (one per wake-up).",
    ),
    series(
        "outdial_core_long_turns_total",
        Kind::Counter,
        "Turns of each dataplane core that ran longer than `over` (1ms, 2ms, 10ms): each delays every packet and timer due during it.",
    ),
    series(
        "outdial_core_busy_ratio",
        Kind::Gauge,
        "Share of the last second each dataplane core spent in its turns (not waiting).",
    ),
    series(
        "outdial_rtp_dropped_source_total",
        Kind::Counter,
        "RTP datagrams dropped for their source (not the address the callee's SDP named, or not the latched source), counted when each call ends.",
    ),
    series(
        "outdial_rtp_dropped_malformed_total",
        Kind::Counter,
        "RTP datagrams from the callee's address that were not usable RTP, counted when each call ends.",
    ),
    series(
        "outdial_rtp_packets_sent_total",
        Kind::Counter,
        "RTP packets the dataplane sent, counted when each call ends.",
    ),
    series(
        "outdial_rtp_packets_received_total",
        Kind::Counter,
        "RTP packets accepted from callees, counted when each call ends.",
    ),
    series(
        "outdial_rtp_sent_late_total",
        Kind::Counter,
        "RTP packets sent more than `over` (1ms, 2ms, 10ms) after their 20 ms slot was due, by the core's clock, counted when each call ends. Pacing holds its target while the 2ms count stays under 1 % of outdial_rtp_packets_sent_total.",
    ),
    series(
        "outdial_rtcp_packets_sent_total",
        Kind::Counter,
        "RTCP compounds (sender or receiver reports, BYE) the dataplane sent, counted when each call ends.",
    ),
    series(
        "outdial_rtcp_packets_received_total",
        Kind::Counter,
        "RTCP compounds accepted from callees, counted when each call ends.",
    ),
    series(
        "outdial_rtcp_round_trip_seconds",
        Kind::Histogram,
        "Round-trip time to the callee from its RTCP reports (RFC 3550 6.4.1), the latest of each call that had one, observed when it ends.",
    ),
    series(
        "outdial_hep_packets_total",
        Kind::Counter,
        "HEP copies of SIP messages sent to sip.hep_capture by all cores.",
    ),
    series(
        "outdial_hep_dropped_total",
        Kind::Counter,
        "SIP messages not copied to sip.hep_capture: over sip.hep_max_per_second on their core, or too large for a HEP packet.",
    ),
    series(
        "outdial_sip_connections_closed_total",
        Kind::Counter,
        "SIP connections others opened that were closed by reason: per_source (over sip.tcp_connections_per_source from one address), no_message (no SIP message within sip.tcp_first_message_timeout_ms), idlest (the quietest, to let a new one in when accepted connections fill their share of a core's 1,024), no_room (closed as accepted: the share was full and every accepted connection carried a call).",
    ),
    series(
        "outdial_machine_detection_total",
        Kind::Counter,
        "Answering-machine detection verdicts, by answered_by (human, machine, unknown).",
    ),
    series(
        "outdial_store_batch_jobs",
        Kind::Histogram,
        "Store jobs committed per SQLite transaction (group commit).",
    ),
    series(
        "outdial_webhooks_delivered_total",
        Kind::Counter,
        "Status webhook deliveries answered 2xx.",
    ),
    series(
        "outdial_webhook_failures_total",
        Kind::Counter,
        "Status webhook tries that failed; each is retried from the outbox.",
    ),
    series(
        "outdial_webhook_dead_letters_total",
        Kind::Counter,
        "Status webhooks given up after the last try (dead letters).",
    ),
    series(
        "outdial_http_connections",
        Kind::Gauge,
        "HTTP connections open now.",
    ),
    series(
        "outdial_http_connections_max",
        Kind::Gauge,
        "The HTTP connection cap (http.max_connections, or what the descriptor limit leaves).",
    ),
    series(
        "outdial_http_connections_refused_total",
        Kind::Counter,
        "HTTP connections refused with 503 because the cap was reached.",
    ),
    series(
        "outdial_vxml_documents_cached",
        Kind::Gauge,
        "Parsed VoiceXML documents in the cache all calls share.",
    ),
    series(
        "outdial_vxml_document_cache_bytes",
        Kind::Gauge,
        "Bytes of the parsed-document cache.",
    ),
    series(
        "outdial_vxml_document_parses_total",
        Kind::Counter,
        "VoiceXML documents parsed (parsed-document cache misses).",
    ),
    series(
        "outdial_vxml_document_cache_hits_total",
        Kind::Counter,
        "VoiceXML documents served from the parsed-document cache.",
    ),
    series(
        "outdial_vxml_grammars_cached",
        Kind::Gauge,
        "Parsed external grammars in the cache all calls share.",
    ),
    series(
        "outdial_vxml_grammar_cache_bytes",
        Kind::Gauge,
        "Bytes of the parsed-grammar cache.",
    ),
    series(
        "outdial_vxml_grammar_parses_total",
        Kind::Counter,
        "External grammars parsed (grammar cache misses).",
    ),
    series(
        "outdial_vxml_grammar_cache_hits_total",
        Kind::Counter,
        "External grammars served from the grammar cache.",
    ),
];

/// Adds an ended call's dropped RTP datagrams to the counters.
pub fn media_ended(media: &outdial_dataplane::api::MediaStats) {
    metrics::counter!("outdial_rtp_dropped_source_total").increment(media.dropped_foreign);
    metrics::counter!("outdial_rtp_dropped_malformed_total").increment(media.dropped_malformed);
    metrics::counter!("outdial_rtp_packets_sent_total").increment(media.packets_sent);
    metrics::counter!("outdial_rtp_packets_received_total").increment(media.packets_received);
    metrics::counter!("outdial_rtcp_packets_sent_total").increment(media.rtcp_sent);
    metrics::counter!("outdial_rtcp_packets_received_total").increment(media.rtcp_received);
    if media.round_trip_us > 0 {
        metrics::histogram!("outdial_rtcp_round_trip_seconds")
            .record(media.round_trip_us as f64 / 1e6);
    }
    for (over, count) in [
        ("1ms", media.sent_late_1ms),
        ("2ms", media.sent_late_2ms),
        ("10ms", media.sent_late_10ms),
    ] {
        metrics::counter!("outdial_rtp_sent_late_total", "over" => over).increment(count);
    }
}

/// Buckets for the `_seconds` histograms: 5 ms to 1 min.
const SECONDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Buckets for jobs per store transaction.
const JOBS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The exporter's builder with our buckets (histograms, not summaries).
pub fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS)?
        .set_buckets_for_metric(Matcher::Full("outdial_store_batch_jobs".to_owned()), &JOBS)
}

/// Installs the global recorder, describes every series and gives it a value.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = builder()?.install_recorder()?;
    describe_and_zero();
    Ok(handle)
}

/// Describes every series in [`SERIES`] to the current recorder and registers it at zero
/// (`outdial_build_info` at 1, per-status counters for every final status).
pub fn describe_and_zero() {
    for series in SERIES {
        let (name, help) = (series.name, series.help);
        match series.kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
        match (series.name, series.kind) {
            ("outdial_build_info", _) => metrics::gauge!(
                name,
                "version" => env!("CARGO_PKG_VERSION"),
                "profile" => if cfg!(debug_assertions) { "debug" } else { "release" },
                "target" => format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            )
            .set(1.0),
            ("outdial_calls_ended_total", _) => {
                for status in CallStatus::ALL.iter().filter(|s| s.is_final()) {
                    metrics::counter!(name, "status" => status.as_str()).absolute(0);
                }
            }
            ("outdial_machine_detection_total", _) => {
                for answered_by in ["human", "machine", "unknown"] {
                    metrics::counter!(name, "answered_by" => answered_by).absolute(0);
                }
            }
            ("outdial_sip_connections_closed_total", _) => {
                for reason in ["per_source", "no_message", "idlest", "no_room"] {
                    metrics::counter!(name, "reason" => reason).absolute(0);
                }
            }
            // Per-core series appear with the cores, a second after start at the latest.
            (
                "outdial_core_live_calls"
                | "outdial_core_alive"
                | "outdial_core_turns_total"
                | "outdial_core_long_turns_total"
                | "outdial_core_busy_ratio",
                _,
            ) => {}
            (_, Kind::Counter) => metrics::counter!(name).absolute(0),
            (_, Kind::Gauge) => metrics::gauge!(name).set(0.0),
            (_, Kind::Histogram) => {
                let _ = metrics::histogram!(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_only_counters_end_in_total() {
        for series in SERIES {
            assert_eq!(
                series.name.ends_with("_total"),
                series.kind == Kind::Counter,
                "{}",
                series.name
            );
            assert!(series.name.starts_with("outdial_"), "{}", series.name);
        }
    }

    #[test]
    fn every_series_renders_with_help_and_type_before_any_event() {
        let recorder = builder().unwrap_or_else(|e| panic!("{e}")).build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, describe_and_zero);
        let text = handle.render();
        for series in SERIES {
            if series.name.starts_with("outdial_core_") {
                continue;
            }
            let kind = match series.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            assert!(
                text.contains(&format!("# TYPE {} {kind}\n", series.name)),
                "{}:\n{text}",
                series.name
            );
            assert!(
                text.contains(&format!("# HELP {} {}\n", series.name, series.help)),
                "{}:\n{text}",
                series.name
            );
        }
        assert!(
            text.contains("outdial_calls_ended_total{status=\"no-answer\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("outdial_call_setup_seconds_bucket{le=\"0.005\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
    }
}
