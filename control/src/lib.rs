//! Outdial's control plane: the HTTP API, the store, the scheduler and dispatcher, and the
//! call runner that drives a VoiceXML session for each call on a dataplane core.

pub mod admin_cli;
pub mod api;
pub mod auth;
pub mod call_timing;
pub mod campaign;
pub mod cli;
pub mod client;
pub mod config;
pub mod data_lock;
pub mod dispatch;
pub mod egress;
pub mod error;
pub mod fetch;
pub mod http_server;
pub mod http_tls;
pub mod intake;
pub mod model;
pub mod policy;
pub mod policy_cli;
pub mod policy_gate;
pub mod prompts;
pub mod readiness;
pub mod redact;
pub mod runner;
pub mod scheduler;
pub mod serve;
pub mod signing;
pub mod smtp;
pub mod store;
pub mod telemetry;
pub mod telephony;
pub mod trunk;
pub mod vxml_fetch;
pub mod vxml_run;
pub mod webhook;
