//! The requester's (tenant's) own rules: when it calls, where, how fast, what it needs.

use serde::{Deserialize, Serialize};

use super::destination::check_prefixes;
use super::hours::Schedule;

/// Most prefixes in one list.
pub const MAX_PREFIXES: usize = 1000;

/// A tenant's policy, as `/v1/policy` shows and takes it. Every field has a safe default:
/// premium-rate and international numbers are refused until the tenant allows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequesterPolicy {
    /// When the tenant's calls may be placed, in the callee's local time; empty = any time.
    pub calling_hours: Schedule,
    /// If not empty, only numbers starting with one of these prefixes (E.164, `+` optional).
    pub allow_prefixes: Vec<String>,
    /// Numbers starting with one of these are refused.
    pub deny_prefixes: Vec<String>,
    /// Whether numbers outside the operator's home country may be called.
    pub international: bool,
    /// Whether premium-rate numbers (the operator's list) may be called.
    pub premium_rate: bool,
    /// Calls released per second for this tenant; 0 = only the operator's limits.
    pub calls_per_second: u32,
    /// Calls that may leave at once after an idle period (with `calls_per_second`).
    pub burst: u32,
    /// Check at acceptance that the application URL answers with a well-formed document.
    pub require_application: bool,
    /// With `require_application`, also check that the audio files the document names
    /// (`<audio src>`, at most 20) answer with WAV audio.
    pub require_audio: bool,
}

impl Default for RequesterPolicy {
    fn default() -> Self {
        Self {
            calling_hours: Schedule::default(),
            allow_prefixes: Vec::new(),
            deny_prefixes: Vec::new(),
            international: false,
            premium_rate: false,
            calls_per_second: 0,
            burst: 1,
            require_application: false,
            require_audio: false,
        }
    }
}

/// A tenant policy that cannot be applied, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct RequesterPolicyError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl RequesterPolicy {
    /// Checks the policy's values.
    pub fn check(&self) -> Result<(), RequesterPolicyError> {
        for (field, list) in [
            ("allow_prefixes", &self.allow_prefixes),
            ("deny_prefixes", &self.deny_prefixes),
        ] {
            if list.len() > MAX_PREFIXES {
                return Err(RequesterPolicyError {
                    field,
                    problem: format!("lists more than {MAX_PREFIXES} prefixes"),
                });
            }
            check_prefixes(list).map_err(|problem| RequesterPolicyError { field, problem })?;
        }
        if self.calls_per_second > 100_000 {
            return Err(RequesterPolicyError {
                field: "calls_per_second",
                problem: "is above 100000".to_owned(),
            });
        }
        if self.burst == 0 || self.burst > 100_000 {
            return Err(RequesterPolicyError {
                field: "burst",
                problem: "must be 1 to 100000".to_owned(),
            });
        }
        Ok(())
    }
}
