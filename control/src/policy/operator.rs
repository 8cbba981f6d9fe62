//! `[policy]`: the operator's rules, as the configuration file writes them.

use serde::{Deserialize, Serialize};

use super::destination::check_prefixes;
use super::evaluate::OperatorPolicy;
use super::hours::Schedule;

/// `[policy]` in the configuration: the operator's own rules over every tenant's calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The home country calling code, digits (`"1"`, `"44"`): numbers outside it are
    /// international, refused unless a tenant's policy allows them.
    pub home_country: String,
    /// Premium-rate prefixes (E.164), refused unless a tenant's policy allows premium rate.
    pub premium_prefixes: Vec<String>,
    /// Prefixes no tenant may call.
    pub deny_prefixes: Vec<String>,
    /// Hours in the callee's local time when calls may be placed (`["08:00-21:00"]`);
    /// empty = any time. Calls due outside wait for the hours to open.
    pub calling_hours: Vec<String>,
    /// Zone of callees whose zone is unknown (no record, a country code not in the table, SIP
    /// URIs).
    pub default_time_zone: String,
    /// Percent of each telephony node's capacity the dispatcher fills (10–100).
    pub max_load_percent: u32,
    /// Nodes sampled per call, the least loaded wins: 1 = random, 2 = power of two choices,
    /// more = closer to always the least loaded.
    pub dispatch_choices: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            home_country: "1".to_owned(),
            premium_prefixes: super::DEFAULT_PREMIUM_PREFIXES
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            deny_prefixes: Vec::new(),
            calling_hours: Vec::new(),
            default_time_zone: "UTC".to_owned(),
            max_load_percent: 100,
            dispatch_choices: 2,
        }
    }
}

impl PolicyConfig {
    /// Checks every key; the message names the key and what to write.
    pub fn validate(&self) -> Result<(), String> {
        let home = &self.home_country;
        if home.is_empty() || home.len() > 3 || !home.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`policy.home_country` {home:?} is not a country calling code; write its digits, e.g. \"1\" or \"44\""
            ));
        }
        check_prefixes(&self.premium_prefixes)
            .map_err(|e| format!("`policy.premium_prefixes`: {e}"))?;
        check_prefixes(&self.deny_prefixes).map_err(|e| format!("`policy.deny_prefixes`: {e}"))?;
        Schedule::parse(&self.calling_hours).map_err(|e| format!("`policy.calling_hours`: {e}"))?;
        jiff::tz::TimeZone::get(&self.default_time_zone).map_err(|_| {
            format!(
                "`policy.default_time_zone` {:?} is not an IANA time zone; write e.g. \"UTC\" or \"Europe/Paris\"",
                self.default_time_zone
            )
        })?;
        if !(10..=100).contains(&self.max_load_percent) {
            return Err(format!(
                "`policy.max_load_percent` must be 10 to 100, not {}",
                self.max_load_percent
            ));
        }
        if !(1..=8).contains(&self.dispatch_choices) {
            return Err(format!(
                "`policy.dispatch_choices` must be 1 to 8, not {}",
                self.dispatch_choices
            ));
        }
        Ok(())
    }

    /// The rules the engine applies (call after [`Self::validate`]; bad values fall back to
    /// the defaults).
    pub fn operator_policy(&self) -> OperatorPolicy {
        OperatorPolicy {
            home_country: self.home_country.clone(),
            premium_prefixes: self.premium_prefixes.clone(),
            deny_prefixes: self.deny_prefixes.clone(),
            calling_hours: Schedule::parse(&self.calling_hours).unwrap_or_default(),
            default_time_zone: jiff::tz::TimeZone::get(&self.default_time_zone)
                .unwrap_or(jiff::tz::TimeZone::UTC),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_keys_are_named() {
        assert!(PolicyConfig::default().validate().is_ok());
        for (config, key) in [
            (
                PolicyConfig {
                    home_country: "+1".into(),
                    ..Default::default()
                },
                "policy.home_country",
            ),
            (
                PolicyConfig {
                    calling_hours: vec!["8-9".into()],
                    ..Default::default()
                },
                "policy.calling_hours",
            ),
            (
                PolicyConfig {
                    default_time_zone: "Paris".into(),
                    ..Default::default()
                },
                "policy.default_time_zone",
            ),
            (
                PolicyConfig {
                    max_load_percent: 5,
                    ..Default::default()
                },
                "policy.max_load_percent",
            ),
            (
                PolicyConfig {
                    dispatch_choices: 0,
                    ..Default::default()
                },
                "policy.dispatch_choices",
            ),
            (
                PolicyConfig {
                    deny_prefixes: vec!["x".into()],
                    ..Default::default()
                },
                "policy.deny_prefixes",
            ),
        ] {
            let error = config.validate().expect_err(key);
            assert!(error.contains(key), "{error}");
        }
    }
}
