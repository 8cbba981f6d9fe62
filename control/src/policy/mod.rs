//! The policy engine: the rules of the three owners of a call — the requester (the tenant),
//! the callee (the customer called) and the operator running Outdial.
//!
//! Pure functions over the canonical request, the callee's record, the owners' policies and
//! the current time (given, never read): no I/O inside, so every rule is tested in virtual
//! time across quiet hours, time zones and DST changes. The callers fetch the records:
//! - [`at_acceptance`] runs when a request arrives (HTTP, batch, e-mail, campaign rows):
//!   static rules only — opt-outs and destinations. A refusal answers the request.
//! - [`at_dispatch`] runs when the scheduler releases a call: opt-outs again (they may have
//!   changed), the callee's cap, and every calling window. A window that is closed defers the
//!   call to the moment all of them are open; it never fails it.
//!
//! `docs/policy.md` lists every rule with its owner, code and default.

mod callee;
mod decision;
mod destination;
mod evaluate;
mod hours;
mod operator;
mod requester;
mod zones;

#[cfg(test)]
mod tests;

pub use callee::{CalleeRecord, DEFAULT_PERIOD_SECS, MAX_OPT_OUT_TENANTS, MAX_PERIOD_SECS, OptOut};
pub use decision::{Decision, Owner, Refusal};
pub use destination::{DEFAULT_PREMIUM_PREFIXES, e164_digits};
pub use evaluate::{CalleeHistory, OperatorPolicy, at_acceptance, at_dispatch};
pub use hours::{Hours, HoursError, MAX_SPANS, Schedule};
pub use operator::PolicyConfig;
pub use requester::{MAX_PREFIXES, RequesterPolicy, RequesterPolicyError};
pub use zones::zone_for_number;
