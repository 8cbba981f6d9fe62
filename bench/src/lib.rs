//! Outdial's load tools, run as `outdial bench …`: the load generator that drives a
//! deployment through its HTTP API and checks every call ([`load`]), the application server it
//! and the quickstart use ([`appserver`]) with the applications they carry ([`apps`]), a
//! population of simulated phones ([`callee`]), a raw SIP UAC load generator ([`sip`]), an SMTP load client for the e-mail intake
//! ([`smtp`]), the bare paced UDP sender media is measured against ([`udp`]), and what they
//! share (receive statistics, percentiles, sounds, option values). The criterion
//! micro-benchmarks live in `benches/`.
//!
//! The phones and the SIP load are sans-IO machines (the phone, the dataplane's SIP endpoint)
//! driven by the dataplane's own core loop on one thread; `load` and `appserver` are tokio
//! clients and servers of the public HTTP API.

pub mod apps;
pub mod appserver;
pub mod callee;
pub mod cli;
pub mod load;
pub mod percentiles;
pub mod sip;
pub mod smtp;
pub mod sounds;
pub mod spec;
pub mod udp;
