//! The callee's record: where they are, when they may be called, how often, and who they
//! asked never to call again. Keyed by the number (`to` as requested: E.164, or a SIP URI).

use serde::{Deserialize, Serialize};

use super::hours::Schedule;

/// Who a callee asked not to call them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptOut {
    /// Nobody may call (do-not-call, every tenant).
    pub all: bool,
    /// These tenants may not call.
    pub tenants: Vec<String>,
}

impl OptOut {
    /// Whether `tenant` may not call.
    pub fn refuses(&self, tenant: &str) -> bool {
        self.all || self.tenants.iter().any(|t| t == tenant)
    }
}

/// A callee's record, as `/v1/callees/{number}` shows and takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalleeRecord {
    /// IANA zone (`Europe/Paris`); when absent, the zone of the number's country code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// When calls are welcome (local time); empty = any time other rules allow.
    pub preferred_hours: Schedule,
    /// When never to call (local time), e.g. `["21:00-08:00"]`.
    pub quiet_hours: Schedule,
    /// At most this many calls placed to this number per `period_secs`, all tenants together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// The period of `max_calls`, seconds (0 = the default, one day).
    pub period_secs: u64,
    /// Opt-outs.
    pub opt_out: OptOut,
}

/// Default `period_secs`: a day.
pub const DEFAULT_PERIOD_SECS: u64 = 86_400;
/// Longest `period_secs`: 31 days.
pub const MAX_PERIOD_SECS: u64 = 31 * 86_400;
/// Most tenants in one callee's opt-out list.
pub const MAX_OPT_OUT_TENANTS: usize = 1000;

impl CalleeRecord {
    /// Checks the record's values, with what to write instead.
    pub fn check(&self) -> Result<(), String> {
        if let Some(zone) = &self.time_zone
            && jiff::tz::TimeZone::get(zone).is_err()
        {
            return Err(format!(
                "time_zone {zone:?} is not an IANA time zone; write e.g. \"Europe/Paris\""
            ));
        }
        if self.period_secs > MAX_PERIOD_SECS {
            return Err(format!(
                "period_secs {} is longer than 31 days ({MAX_PERIOD_SECS})",
                self.period_secs
            ));
        }
        if self.opt_out.tenants.len() > MAX_OPT_OUT_TENANTS {
            return Err(format!(
                "opt_out.tenants lists more than {MAX_OPT_OUT_TENANTS} tenants; use opt_out.all"
            ));
        }
        Ok(())
    }

    /// The period of `max_calls`, seconds.
    pub fn period(&self) -> u64 {
        if self.period_secs == 0 {
            DEFAULT_PERIOD_SECS
        } else {
            self.period_secs
        }
    }
}
