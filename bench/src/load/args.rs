//! `outdial bench load`'s command line, and what it means checked into a [`Plan`] and the
//! rest of a run's settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::pace::{Pace, Plan};
use crate::apps::{self, App};

/// Where the development key is when none is given (`outdial serve`'s default data directory).
pub const DEFAULT_KEY_FILE: &str = "./outdial-data/dev-api-key";

/// Largest batch `POST /v1/calls/batch` takes.
pub const MAX_BATCH: u64 = 10_000;

/// `outdial bench load`.
#[derive(Debug, Clone, Args)]
#[command(after_help = LOAD_HELP)]
pub struct LoadArgs {
    /// The SIP address of the simulated phones (`outdial bench callee`, or a SIPp uas):
    /// each call dials sip:press-<keys>@ADDRESS.
    #[arg(long, value_name = "HOST:PORT")]
    pub callee: String,
    /// Base URL of the Outdial API under test.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// API key [default: $OUTDIAL_API_KEY, else the contents of --api-key-file].
    #[arg(
        long,
        value_name = "KEY",
        env = "OUTDIAL_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// File holding the API key when --api-key is not given.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_KEY_FILE)]
    pub api_key_file: PathBuf,
    /// The application each call runs, served by this tool: survey (digits then #),
    /// reminder (1 confirms, 2 cancels), long-prompt (the survey behind a long prompt), key
    /// (a short prompt and one key) or hangup (exits at once: setup and teardown only, no
    /// keys, for any UAS such as SIPp's).
    #[arg(long, value_name = "NAME", default_value = "survey", value_parser = ["survey", "reminder", "long-prompt", "key", "hangup"])]
    pub app: String,
    /// Calls per second, steady (the default pace, 10/s, when no pace is given).
    #[arg(long, value_name = "CALLS", group = "pace")]
    pub rate: Option<f64>,
    /// Calls per second rising (or falling) linearly from FROM to TO over --duration.
    #[arg(long, value_name = "FROM:TO", group = "pace", requires = "duration", value_parser = parse_ramp)]
    pub ramp: Option<(f64, f64)>,
    /// Keep this many calls in flight (asked for and not yet ended) at all times.
    #[arg(long, value_name = "CALLS", group = "pace")]
    pub concurrency: Option<u64>,
    /// Stop asking for calls after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Stop asking for calls after this many (default 100 when no --duration).
    #[arg(long, value_name = "CALLS")]
    pub count: Option<u64>,
    /// Calls per create request: 1 posts each to /v1/calls, more posts batches to
    /// /v1/calls/batch (up to 10000).
    #[arg(long, value_name = "CALLS", default_value_t = 1)]
    pub batch: u64,
    /// Ask for calls by e-mail through the SMTP gateway at HOST:PORT (one message per call,
    /// AUTH as --tenant with the API key) instead of POST /v1/calls.
    #[arg(long, value_name = "HOST:PORT")]
    pub smtp: Option<String>,
    /// The tenant the API key belongs to (the SMTP AUTH user and the recipient), for --smtp.
    #[arg(long, value_name = "ID", default_value = "dev")]
    pub tenant: String,
    /// How many random keys the callee is asked to press per call (survey, long-prompt).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub digits: usize,
    /// Dial sip:press-<DIGITS>@… for every call and expect DIGITS submitted: for callees
    /// that press fixed keys (a SIPp scenario) instead of the ones in their URI. With
    /// --app reminder, 1 or 2.
    #[arg(long, value_name = "DIGITS")]
    pub expect_digits: Option<String>,
    /// Seconds a call has, from its request, to reach a final status; later it is lost.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub call_timeout: u64,
    /// Final statuses other than completed that do not fail the run (comma-separated:
    /// busy, no-answer, failed, canceled, expired), for callees that refuse some calls.
    #[arg(long, value_name = "STATUS,...", value_delimiter = ',')]
    pub allow_outcome: Vec<String>,
    /// Ask for each call's final status webhook only (`status_callback_events: ["final"]`),
    /// as a client placing calls at volume would: one delivery per call instead of one per
    /// status change. Request -> INVITE then comes from the final record, when the call ends.
    #[arg(long)]
    pub final_callbacks_only: bool,
    /// Where this tool's application server listens (it serves the application and
    /// receives submits and status callbacks).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The host Outdial should use to reach the application server [default: the
    /// --listen address].
    #[arg(long, value_name = "HOST")]
    pub app_host: Option<String>,
    /// Seed for the random keys (default: from the clock); the same seed dials the same keys.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Print the report as JSON on standard output (the text report goes to standard error).
    #[arg(long)]
    pub json: bool,
    /// Also write the timeline (rates, request -> INVITE) as an SVG plot to FILE.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

const LOAD_HELP: &str = "\
Every call is checked: the callee is asked (by its URI) to press random keys then #, the
application submits what it heard, and the submitted value and the call's stored result must
equal the keys. Exit status: 0 when every call passed, 1 for unusable arguments or an
unreachable server, 2 when any call was refused, lost (no final status within
--call-timeout), mismatched, completed without a submit, or ended with a status not allowed.

Examples:
  outdial bench load --callee 127.0.0.1:5070 --rate 20 --duration 30
  outdial bench load --callee 127.0.0.1:5070 --ramp 5:50 --duration 60 --plot ramp.svg
  outdial bench load --callee 127.0.0.1:5070 --smtp 127.0.0.1:2525 --rate 20 --count 200
  outdial bench load --callee 127.0.0.1:5070 --concurrency 100 --count 1000 --json > run.json
  outdial bench load --callee 127.0.0.1:5070 --batch 500 --rate 500 --count 5000";

fn parse_ramp(s: &str) -> Result<(f64, f64), String> {
    let (from, to) = s
        .split_once(':')
        .ok_or_else(|| format!("a ramp is FROM:TO in calls per second, like 5:50, not {s:?}"))?;
    let rate = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| format!("{v:?} is not a rate (calls per second, 0 or more)"))
    };
    Ok((rate(from)?, rate(to)?))
}

/// A run's checked settings.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Pace and stop.
    pub plan: Plan,
    /// The application.
    pub app: App,
    /// `rate 10/s`, `ramp 5/s to 50/s`, `concurrency 100`.
    pub pace_label: String,
    /// The dial target's host part.
    pub callee: String,
    /// Final statuses allowed besides completed.
    pub allowed: Vec<String>,
    /// Whether calls ask for their final status webhook only.
    pub final_callbacks_only: bool,
}

/// Final statuses a call can end in.
const FINAL: [&str; 7] = [
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
    "expired",
    "refused",
];

impl LoadArgs {
    /// Checks the arguments together; the message says what to change.
    pub fn check(&self) -> Result<Checked, String> {
        let app = apps::by_name(&self.app).ok_or_else(|| format!("unknown --app {}", self.app))?;
        let positive = |name: &str, v: f64| {
            (v.is_finite() && v > 0.0)
                .then_some(v)
                .ok_or_else(|| format!("{name} must be a number above 0, not {v}"))
        };
        let duration = self
            .duration
            .map(|d| positive("--duration", d).map(Duration::from_secs_f64))
            .transpose()?;
        let (pace, pace_label) = match (self.rate, self.ramp, self.concurrency) {
            (_, Some((from, to)), _) => {
                let over = duration.ok_or("--ramp needs --duration (the ramp's length)")?;
                if from == 0.0 && to == 0.0 {
                    return Err("a ramp from 0 to 0 asks for no calls".into());
                }
                (
                    Pace::Ramp { from, to, over },
                    format!("ramp {from}/s to {to}/s"),
                )
            }
            (_, _, Some(0)) => return Err("--concurrency must be at least 1".into()),
            (_, _, Some(n)) => (Pace::Concurrency(n), format!("concurrency {n}")),
            (rate, _, _) => {
                let rate = positive("--rate", rate.unwrap_or(10.0))?;
                (Pace::Rate(rate), format!("rate {rate}/s"))
            }
        };
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(format!(
                "--batch must be 1 to {MAX_BATCH}, not {}",
                self.batch
            ));
        }
        if self.count == Some(0) {
            return Err("--count must be at least 1".into());
        }
        let count = match (self.count, duration) {
            (None, None) => Some(100),
            (count, _) => count,
        };
        if !(1..=32).contains(&self.digits) {
            return Err(format!("--digits must be 1 to 32, not {}", self.digits));
        }
        if let Some(d) = &self.expect_digits {
            let ok = match app.field {
                "confirm" => d == "1" || d == "2",
                "key" => d.len() == 1 && d.bytes().all(|b| b.is_ascii_digit()),
                _ => !d.is_empty() && d.len() <= 32 && d.bytes().all(|b| b.is_ascii_digit()),
            };
            if !ok {
                return Err(format!(
                    "--expect-digits {d:?} is not something --app {} can submit (digits 0-9; 1 or 2 for reminder; one digit for key)",
                    app.name
                ));
            }
        }
        let callee = self.callee.trim().to_owned();
        if callee.is_empty() || callee.contains(['@', ' ', '<', '>', ';', '?']) {
            return Err(format!(
                "--callee is the phones' SIP address, HOST:PORT (like 127.0.0.1:5070), not {:?}",
                self.callee
            ));
        }
        for status in &self.allow_outcome {
            if !FINAL.contains(&status.as_str()) || status == "completed" {
                return Err(format!(
                    "--allow-outcome takes busy, no-answer, failed, canceled or expired, not {status:?}"
                ));
            }
        }
        Ok(Checked {
            plan: Plan {
                pace,
                duration,
                count,
                batch: self.batch,
            },
            app,
            pace_label,
            callee,
            allowed: self.allow_outcome.clone(),
            final_callbacks_only: self.final_callbacks_only,
        })
    }

    /// The API key: --api-key (or $OUTDIAL_API_KEY), else the key file's contents.
    pub fn key(&self) -> Result<String, String> {
        if let Some(key) = &self.api_key {
            return Ok(key.clone());
        }
        std::fs::read_to_string(&self.api_key_file)
            .map(|k| k.trim().to_owned())
            .map_err(|e| {
                format!(
                    "no API key: give --api-key or OUTDIAL_API_KEY, or run from where `outdial serve` \
                     keeps its data ({} could not be read: {e})",
                    self.api_key_file.display()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn parse(args: &str) -> Result<Checked, String> {
        let argv = std::iter::once("load").chain(args.split_whitespace());
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        cli.load.check()
    }

    #[test]
    fn paces_and_stops_are_read_and_checked() {
        let c = parse("--callee 127.0.0.1:5070").expect("defaults");
        assert_eq!(c.plan.pace, Pace::Rate(10.0));
        assert_eq!(
            (c.plan.count, c.plan.duration, c.plan.batch),
            (Some(100), None, 1)
        );
        assert_eq!(c.app.name, "survey");

        let c = parse("--callee h:1 --ramp 5:50 --duration 60").expect("ramp");
        assert_eq!(
            c.plan.pace,
            Pace::Ramp {
                from: 5.0,
                to: 50.0,
                over: Duration::from_secs(60)
            }
        );
        assert_eq!(c.plan.count, None);
        let c = parse("--callee h:1 --concurrency 8 --count 50 --batch 4").expect("conc");
        assert_eq!(
            (c.plan.pace, c.plan.count, c.plan.batch),
            (Pace::Concurrency(8), Some(50), 4)
        );

        for (bad, why) in [
            ("--callee h:1 --ramp 5:50", "--duration"),
            ("--callee h:1 --ramp 5-50 --duration 9", "FROM:TO"),
            (
                "--callee h:1 --rate 5 --concurrency 3",
                "cannot be used with",
            ),
            ("--callee h:1 --rate 0", "above 0"),
            ("--callee h:1 --concurrency 0", "at least 1"),
            ("--callee h:1 --batch 10001", "--batch"),
            ("--callee h:1 --count 0", "--count"),
            ("--callee sip:x@h:1", "HOST:PORT"),
            ("--callee h:1 --allow-outcome completed", "--allow-outcome"),
            ("--callee h:1 --allow-outcome busy,nope", "--allow-outcome"),
            ("--callee h:1 --expect-digits 12a", "--expect-digits"),
            (
                "--callee h:1 --app reminder --expect-digits 3",
                "--expect-digits",
            ),
            (
                "--callee h:1 --app key --expect-digits 12",
                "--expect-digits",
            ),
            ("--callee h:1 --app other", "invalid value"),
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(parse("--callee h:1 --app key --expect-digits 7").is_ok());
        let c = parse("--callee h:1 --allow-outcome busy,no-answer").expect("allowed");
        assert_eq!(c.allowed, ["busy", "no-answer"]);
    }
}
