//! Outdial's load tools, run as `outdial bench …`: a population of simulated phones
//! ([`callee`]), a raw SIP UAC load generator ([`sip`]), and what they share (receive
//! statistics, percentiles, sounds, option values). The criterion micro-benchmarks live in
//! `benches/`.
//!
//! Both tools are sans-IO machines (the phone, the dataplane's SIP endpoint) driven by the
//! dataplane's own core loop on one thread.

pub mod callee;
pub mod cli;
pub mod percentiles;
pub mod rx_stats;
pub mod sip;
pub mod sounds;
pub mod spec;
