//! What the load tool knows about each call it asked for, and the verdict on it: did it end
//! as expected, with the keys the callee was asked to press submitted and stored?

use std::time::{Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use crate::apps::App;

/// One call asked for.
#[derive(Debug, Clone)]
pub struct Call {
    /// The keys the callee is asked to press (`sip:press-<keys>@…`).
    pub keys: String,
    /// The value the application must submit for them.
    pub expected: String,
    /// When the create request was sent.
    pub requested: Instant,
    /// The call's id, once created.
    pub id: Option<String>,
    /// Why the create request failed, if it did.
    pub refused: Option<String>,
    /// The call record with a final status, once seen.
    pub final_record: Option<Value>,
    /// Whether its request -> INVITE time has been recorded.
    pub setup_seen: bool,
    /// Submits received for this call: (values, arrival).
    pub submits: Vec<(Vec<(String, String)>, SystemTime)>,
}

impl Call {
    /// A call just asked for.
    pub fn new(keys: String, expected: String, requested: Instant) -> Self {
        Self {
            keys,
            expected,
            requested,
            id: None,
            refused: None,
            final_record: None,
            setup_seen: false,
            submits: Vec::new(),
        }
    }

    /// True once nothing more is awaited for it (refused, or final).
    pub fn settled(&self) -> bool {
        self.refused.is_some() || self.final_record.is_some()
    }

    /// The verdict, with `app` telling which submitted field to check and `allowed` the final
    /// statuses other than `completed` that pass (without a submit).
    pub fn verdict(&self, app: &App, allowed: &[String]) -> Verdict {
        if let Some(why) = &self.refused {
            return Verdict::Refused(why.clone());
        }
        let Some(record) = &self.final_record else {
            return Verdict::Lost;
        };
        let status = record["status"].as_str().unwrap_or("?");
        if status != "completed" {
            return if allowed.iter().any(|a| a == status) {
                Verdict::Allowed(status.to_owned())
            } else {
                Verdict::Unexpected(status.to_owned())
            };
        }
        if app.field.is_empty() {
            // An application that submits nothing: completed is the whole check.
            return if self.submits.is_empty() {
                Verdict::Ok
            } else {
                Verdict::Mismatch(format!(
                    "{} submits from an app that has none",
                    self.submits.len()
                ))
            };
        }
        let [(values, _)] = self.submits.as_slice() else {
            return if self.submits.is_empty() {
                Verdict::NoSubmit
            } else {
                Verdict::Mismatch(format!("{} submits for one call", self.submits.len()))
            };
        };
        let submitted = values
            .iter()
            .find(|(k, _)| k == app.field)
            .map(|(_, v)| v.as_str());
        if submitted != Some(self.expected.as_str()) {
            let submitted = submitted.map_or_else(|| "nothing".to_owned(), |v| format!("{v:?}"));
            return Verdict::Mismatch(format!(
                "pressed {:?}: expected {}={:?}, submitted {submitted}",
                self.keys, app.field, self.expected
            ));
        }
        let stored = record["result"][app.field].as_str();
        if stored != Some(self.expected.as_str()) {
            return Verdict::Mismatch(format!(
                "pressed {:?}: submitted {}={:?}, but the call's result holds {:?}",
                self.keys, app.field, self.expected, record["result"]
            ));
        }
        Verdict::Ok
    }
}

/// How one call went, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Completed; the expected value was submitted once and stored.
    Ok,
    /// Ended with a final status listed in `--allow-outcome`.
    Allowed(String),
    /// The create request was refused or failed.
    Refused(String),
    /// No final status before the deadline.
    Lost,
    /// Completed without a submit.
    NoSubmit,
    /// A wrong or duplicated submit, or a stored result that differs.
    Mismatch(String),
    /// Ended with a final status other than `completed` that is not allowed.
    Unexpected(String),
}

impl Verdict {
    /// True when the call counts against the run.
    pub fn fails(&self) -> bool {
        !matches!(self, Self::Ok | Self::Allowed(_))
    }
}

/// Counts of verdicts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checks {
    /// Completed with the right value.
    pub ok: u64,
    /// Ended with an allowed other outcome.
    pub allowed_outcome: u64,
    /// Create refused or failed.
    pub refused: u64,
    /// No final status in time.
    pub lost: u64,
    /// Completed without a submit.
    pub no_submit: u64,
    /// Wrong value submitted or stored.
    pub mismatch: u64,
    /// Not completed, and not allowed.
    pub unexpected_outcome: u64,
}

impl Checks {
    /// Counts `verdict`.
    pub fn add(&mut self, verdict: &Verdict) {
        let slot = match verdict {
            Verdict::Ok => &mut self.ok,
            Verdict::Allowed(_) => &mut self.allowed_outcome,
            Verdict::Refused(_) => &mut self.refused,
            Verdict::Lost => &mut self.lost,
            Verdict::NoSubmit => &mut self.no_submit,
            Verdict::Mismatch(_) => &mut self.mismatch,
            Verdict::Unexpected(_) => &mut self.unexpected_outcome,
        };
        *slot += 1;
    }

    /// Every call counted.
    pub fn total(&self) -> u64 {
        self.ok
            + self.allowed_outcome
            + self.refused
            + self.lost
            + self.no_submit
            + self.mismatch
            + self.unexpected_outcome
    }

    /// Calls that fail the run.
    pub fn failed(&self) -> u64 {
        self.total() - self.ok - self.allowed_outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::SURVEY;
    use serde_json::json;

    fn call() -> Call {
        Call::new("4711".into(), "4711".into(), Instant::now())
    }

    fn submit(call: &mut Call, digits: &str) {
        let values = vec![
            ("call".to_owned(), "0".to_owned()),
            ("digits".to_owned(), digits.to_owned()),
        ];
        call.submits.push((values, SystemTime::now()));
    }

    #[test]
    fn verdicts_cover_every_way_a_call_can_go() {
        let allowed = vec!["busy".to_owned()];
        let mut c = call();
        assert_eq!(c.verdict(&SURVEY, &allowed), Verdict::Lost);
        assert!(!c.settled());

        c.final_record = Some(json!({"status": "completed", "result": {"digits": "4711"}}));
        assert!(c.settled());
        assert_eq!(c.verdict(&SURVEY, &allowed), Verdict::NoSubmit);
        submit(&mut c, "4711");
        assert_eq!(c.verdict(&SURVEY, &allowed), Verdict::Ok);
        submit(&mut c, "4711");
        assert!(
            matches!(c.verdict(&SURVEY, &allowed), Verdict::Mismatch(m) if m.contains("2 submits"))
        );

        let mut wrong = call();
        wrong.final_record = Some(json!({"status": "completed", "result": {"digits": "471"}}));
        submit(&mut wrong, "471");
        assert!(
            matches!(wrong.verdict(&SURVEY, &allowed), Verdict::Mismatch(m) if m.contains("\"471\""))
        );
        let mut unstored = call();
        unstored.final_record = Some(json!({"status": "completed", "result": null}));
        submit(&mut unstored, "4711");
        assert!(
            matches!(unstored.verdict(&SURVEY, &allowed), Verdict::Mismatch(m) if m.contains("result holds"))
        );

        let mut busy = call();
        busy.final_record = Some(json!({"status": "busy"}));
        assert_eq!(
            busy.verdict(&SURVEY, &allowed),
            Verdict::Allowed("busy".into())
        );
        busy.final_record = Some(json!({"status": "failed"}));
        assert_eq!(
            busy.verdict(&SURVEY, &allowed),
            Verdict::Unexpected("failed".into())
        );

        let mut refused = call();
        refused.refused = Some("429".into());
        assert!(refused.settled());
        assert_eq!(
            refused.verdict(&SURVEY, &allowed),
            Verdict::Refused("429".into())
        );

        let mut checks = Checks::default();
        for v in [
            Verdict::Ok,
            Verdict::Allowed("busy".into()),
            Verdict::Lost,
            Verdict::NoSubmit,
        ] {
            checks.add(&v);
        }
        assert_eq!((checks.total(), checks.failed()), (4, 2));
        assert!(Verdict::Lost.fails() && !Verdict::Allowed("busy".into()).fails());
    }
}
