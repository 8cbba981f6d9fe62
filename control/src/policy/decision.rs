//! What a policy decides, and who decided it.

use serde::Serialize;
use time::OffsetDateTime;

/// The owner of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// The tenant that asked for the call.
    Requester,
    /// The person called.
    Callee,
    /// The operator running Outdial.
    Operator,
}

impl Owner {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requester => "requester",
            Self::Callee => "callee",
            Self::Operator => "operator",
        }
    }
}

/// Why a call is refused or deferred: a stable `code`, the `owner` and `rule` that decided,
/// and a message that tells the requester what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message} ({owner} rule {rule})", owner = owner.as_str())]
pub struct Refusal {
    /// Stable code (`opted_out`, `premium_rate`, ...).
    pub code: &'static str,
    /// Whose rule.
    pub owner: Owner,
    /// The rule's name (`callee.opt_out`, `requester.destinations`, ...).
    pub rule: &'static str,
    /// In words, for the requester (never the callee's number).
    pub message: String,
}

impl Refusal {
    /// A refusal by `owner`'s `rule`.
    pub fn new(
        code: &'static str,
        owner: Owner,
        rule: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code,
            owner,
            rule,
            message: message.into(),
        }
    }
}

/// The outcome of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Accept,
    /// Not now: try again at `until` (a window opens, a cap frees up).
    Defer {
        /// When every rule that held the call allows it.
        until: OffsetDateTime,
        /// The first rule that held it.
        reason: Refusal,
    },
    /// Never: the call must not be placed.
    Refuse(Refusal),
}
