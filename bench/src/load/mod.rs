//! `outdial bench load`: asks a deployment for calls through its public HTTP API at a paced
//! rate, serves the application those calls run, receives what they submit and their status
//! callbacks, and checks every call against the keys its callee was asked to press.

pub mod args;
pub mod calls;
mod mail;
pub mod pace;
pub mod plot;
pub mod prom;
pub mod report;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Semaphore, mpsc};

use crate::appserver::{self, AppEvent};
pub use args::LoadArgs;
use args::{Checked, MAX_BATCH};
use calls::{Call, Checks, Verdict};
use report::{Report, Second, Settings, Summary, histogram, record_ms};

/// Exit status: every call passed.
pub const EXIT_PASS: u8 = 0;
/// Exit status: unusable arguments, or the server or application server could not be used.
pub const EXIT_ERROR: u8 = 1;
/// Exit status: some call failed its check.
pub const EXIT_FAILED: u8 = 2;

/// Create requests in flight at once; past it the tool falls behind its pace (and says so in
/// the achieved rate) rather than piling up connections.
const MAX_OUTSTANDING: usize = 256;
/// `GET`s in flight at once for the events pass and late calls.
const MAX_READS: usize = 16;
/// The histogram behind the answer → first prompt figure.
const ANSWER_TO_PROMPT: &str = "outdial_answer_to_prompt_seconds";

/// Runs the tool; returns the exit status.
pub async fn run(args: LoadArgs) -> u8 {
    match run_inner(&args).await {
        Ok(report) => {
            use std::io::Write as _;
            let text = report.text();
            // A closed standard output (`| head`) is not an error of the run.
            let mut out = std::io::stdout().lock();
            if args.json {
                eprint!("{text}");
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => {
                        let _ = writeln!(out, "{json}");
                    }
                    Err(e) => eprintln!("error: cannot write the JSON report: {e}"),
                }
            } else {
                let _ = write!(out, "{text}");
            }
            drop(out);
            if let Some(path) = &args.plot {
                let title = format!("outdial bench load: {}", report.settings.pace);
                if let Err(e) = plot::write(path, &title, &report.timeline) {
                    eprintln!("error: {e}");
                    return EXIT_ERROR;
                }
            }
            if report.passed {
                EXIT_PASS
            } else {
                EXIT_FAILED
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            EXIT_ERROR
        }
    }
}

/// What a create request came back with.
struct Created {
    first: usize,
    count: usize,
    sent: Instant,
    result: Result<Vec<String>, String>,
}

/// A late call's record, read with `GET /v1/calls/{id}`.
struct Polled {
    index: usize,
    record: Option<Value>,
}

/// The API under test.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
    /// `--smtp`: creates go by e-mail.
    mail: Option<Arc<mail::MailIntake>>,
}

impl Api {
    async fn create(&self, bodies: Vec<Value>) -> Result<Vec<String>, String> {
        if let Some(mail) = &self.mail {
            return mail.create(bodies).await;
        }
        let batch = bodies.len() > 1;
        let (path, body) = if batch {
            ("/v1/calls/batch", json!({ "calls": bodies }))
        } else {
            ("/v1/calls", bodies.into_iter().next().unwrap_or_default())
        };
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        if status.as_u16() != 201 {
            let code = answer["error"]["code"].as_str().unwrap_or("?");
            let message = answer["error"]["message"].as_str().unwrap_or("");
            return Err(format!("POST {path}: {status} {code}: {message}"));
        }
        let ids = if batch {
            answer["calls"]
                .as_array()
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| c["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or(None)
        } else {
            answer["id"].as_str().map(|id| vec![id.to_owned()])
        };
        ids.ok_or_else(|| format!("POST {path}: {status} without call ids: {answer}"))
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    async fn metrics(&self) -> Option<String> {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())?;
        response.text().await.ok()
    }
}

/// Everything the run loop keeps.
struct Run {
    checked: Checked,
    run_id: String,
    app_url: String,
    status_url: String,
    calls: Vec<Call>,
    settled: u64,
    /// Calls given up on (past their deadline); `Some(true)` once polled.
    gave_up: Vec<bool>,
    create_requests: u64,
    create_latency: Histogram<u64>,
    setup_live: Histogram<u64>,
    second: SecondCounts,
    timeline: Vec<Second>,
    live_errors: u64,
}

/// This second's counts.
struct SecondCounts {
    requested: u64,
    ended: u64,
    errors: u64,
    setup: Histogram<u64>,
}

impl SecondCounts {
    fn new() -> Self {
        Self {
            requested: 0,
            ended: 0,
            errors: 0,
            setup: histogram(),
        }
    }
}

impl Run {
    fn in_flight(&self) -> u64 {
        self.calls.len() as u64 - self.settled
    }

    /// The body of one create request for call `index`.
    fn body(&self, index: usize) -> Value {
        let keys = &self.calls[index].keys;
        let user = if self.checked.app.field.is_empty() {
            "bench".to_owned()
        } else {
            format!("press-{keys}")
        };
        let mut body = json!({
            "to": format!("sip:{user}@{}", self.checked.callee),
            "url": self.app_url,
            "vars": { "bench_call": format!("{}-{index}", self.run_id) },
            "status_callback": self.status_url,
        });
        if self.checked.final_callbacks_only {
            body["status_callback_events"] = json!(["final"]);
        }
        body
    }

    /// The call a `bench_call` value names, if it is this run's.
    fn index_of(&self, tag: &str) -> Option<usize> {
        let (run, index) = tag.rsplit_once('-')?;
        let index: usize = index.parse().ok()?;
        (run == self.run_id && index < self.calls.len()).then_some(index)
    }

    fn settle(&mut self, index: usize) {
        self.settled += 1;
        self.second.ended += 1;
        let verdict = self.calls[index].verdict(&self.checked.app, &self.checked.allowed);
        if verdict.fails() {
            self.live_errors += 1;
            self.second.errors += 1;
        }
    }

    fn on_created(&mut self, created: Created) {
        record_ms(
            &mut self.create_latency,
            created.sent.elapsed().as_secs_f64() * 1000.0,
        );
        match created.result {
            Ok(ids) => {
                for (offset, id) in ids.into_iter().enumerate().take(created.count) {
                    self.calls[created.first + offset].id = Some(id);
                }
            }
            Err(why) => {
                for index in created.first..created.first + created.count {
                    if !self.calls[index].settled() && !self.gave_up[index] {
                        self.calls[index].refused = Some(why.clone());
                        self.settle(index);
                    }
                }
            }
        }
    }

    fn on_app_event(&mut self, event: AppEvent) {
        match event {
            AppEvent::Status { record, .. } => {
                let Some(index) = record["vars"]["bench_call"]
                    .as_str()
                    .and_then(|t| self.index_of(t))
                else {
                    return;
                };
                let status = record["status"].as_str().unwrap_or_default();
                // From the `dialing` webhook, or the final one when that is all there is.
                if (status == "dialing" || is_final(status))
                    && !self.calls[index].setup_seen
                    && let Some(ms) = between_ms(&record["created_at"], &record["dialed_at"])
                {
                    self.calls[index].setup_seen = true;
                    record_ms(&mut self.setup_live, ms);
                    record_ms(&mut self.second.setup, ms);
                }
                if is_final(status) && !self.calls[index].settled() && !self.gave_up[index] {
                    self.calls[index].final_record = Some(record);
                    self.settle(index);
                }
            }
            AppEvent::Submit { values, at, .. } => {
                let index = values
                    .iter()
                    .find(|(k, _)| k == "call")
                    .and_then(|(_, v)| self.index_of(v));
                if let Some(index) = index {
                    self.calls[index].submits.push((values, at));
                }
            }
        }
    }

    fn on_polled(&mut self, polled: Polled) {
        let index = polled.index;
        if self.calls[index].settled() {
            return;
        }
        match polled.record {
            Some(record) if record["status"].as_str().is_some_and(is_final) => {
                self.calls[index].final_record = Some(record);
            }
            _ => self.gave_up[index] = true,
        }
        self.settle(index);
    }

    fn close_second(&mut self, t: u64) -> &Second {
        let s = std::mem::replace(&mut self.second, SecondCounts::new());
        let p =
            |q: f64| (!s.setup.is_empty()).then(|| s.setup.value_at_quantile(q) as f64 / 1000.0);
        self.timeline.push(Second {
            t,
            requested: s.requested,
            ended: s.ended,
            errors: s.errors,
            in_flight: self.in_flight(),
            setup_p50_ms: p(0.5),
            setup_p99_ms: p(0.99),
        });
        // invariant: just pushed.
        self.timeline.last().expect("a second")
    }
}

fn is_final(status: &str) -> bool {
    matches!(
        status,
        "completed" | "busy" | "no-answer" | "failed" | "canceled" | "expired" | "refused"
    )
}

/// Milliseconds from RFC 3339 time `from` to `to`.
fn between_ms(from: &Value, to: &Value) -> Option<f64> {
    let parse = |v: &Value| OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok();
    let d = parse(to)? - parse(from)?;
    Some(d.as_seconds_f64() * 1000.0)
}

/// The keys a call's callee presses and the value the app must submit for them.
fn keys_for(checked: &Checked, args: &LoadArgs, rng: &mut impl Rng) -> (String, String) {
    let keys = match &args.expect_digits {
        None if checked.app.field.is_empty() => String::new(),
        Some(d) => d.clone(),
        None if checked.app.field == "confirm" => {
            if rng.random_bool(0.5) { "1" } else { "2" }.to_owned()
        }
        None if checked.app.field == "key" => {
            char::from(b'0' + rng.random_range(0..10u8)).to_string()
        }
        None => (0..args.digits)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect(),
    };
    let expected = match (checked.app.field, keys.as_str()) {
        ("confirm", "1") => "true".to_owned(),
        ("confirm", _) => "false".to_owned(),
        _ => keys.clone(),
    };
    (keys, expected)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, Linux {}", kernel.trim())
}

async fn run_inner(args: &LoadArgs) -> Result<Report, String> {
    let checked = args.check()?;
    let key = args.key()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(MAX_OUTSTANDING)
        .user_agent(concat!("outdial-bench/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let mail = match &args.smtp {
        Some(server) => Some(Arc::new(mail::MailIntake::new(server, &args.tenant, &key)?)),
        None => None,
    };
    let api = Api {
        http,
        base: args.api.trim_end_matches('/').to_owned(),
        key,
        mail,
    };
    let metrics_before = api.metrics().await;
    let health = api.get("/v1/calls?limit=1").await;
    if health.is_none() {
        return Err(format!(
            "the API at {} does not answer GET /v1/calls with this key: start `outdial serve`, \
             or give --api and --api-key",
            api.base
        ));
    }

    let (listener, addr) = appserver::bind(args.listen).await.map_err(|e| {
        format!(
            "cannot listen on {} for the application server: {e}",
            args.listen
        )
    })?;
    let host = args.app_host.clone().unwrap_or_else(|| match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    });
    let base = format!("http://{host}:{}", addr.port());
    let (app_tx, mut app_rx) = mpsc::channel(65_536);
    let server = tokio::spawn(appserver::serve(listener, None, app_tx));

    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let run_id = format!("r{:08x}", rng.random::<u32>());
    let started_at = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let mut run = Run {
        app_url: format!("{base}{}", checked.app.path),
        status_url: format!("{base}{}", appserver::STATUS_PATH),
        checked: checked.clone(),
        run_id,
        calls: Vec::new(),
        settled: 0,
        gave_up: Vec::new(),
        create_requests: 0,
        create_latency: histogram(),
        setup_live: histogram(),
        second: SecondCounts::new(),
        timeline: Vec::new(),
        live_errors: 0,
    };

    let (created_tx, mut created_rx) = mpsc::unbounded_channel::<Created>();
    let (polled_tx, mut polled_rx) = mpsc::unbounded_channel::<Polled>();
    let outstanding = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    let reads = Arc::new(Semaphore::new(MAX_READS));
    let timeout = Duration::from_secs(args.call_timeout);
    let plan = checked.plan;
    let start = Instant::now();
    let mut asking_secs = None;
    let mut oldest_open = 0usize;
    let mut pace_tick = tokio::time::interval(Duration::from_millis(5));
    pace_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut second_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;

    loop {
        tokio::select! {
            _ = pace_tick.tick() => {
                if asking_secs.is_none() {
                    let elapsed = start.elapsed();
                    let requested = run.calls.len() as u64;
                    if interrupted || plan.finished(elapsed, requested) {
                        asking_secs = Some(elapsed);
                    } else {
                        let mut wanted = plan.to_request(elapsed, requested, run.in_flight());
                        while wanted > 0 {
                            let Ok(permit) = outstanding.clone().try_acquire_owned() else { break };
                            let n = wanted.min(plan.batch).min(MAX_BATCH) as usize;
                            let first = run.calls.len();
                            for _ in 0..n {
                                let (keys, expected) = keys_for(&checked, args, &mut rng);
                                run.calls.push(Call::new(keys, expected, Instant::now()));
                                run.gave_up.push(false);
                            }
                            let bodies: Vec<Value> = (first..first + n).map(|i| run.body(i)).collect();
                            run.second.requested += n as u64;
                            run.create_requests += 1;
                            wanted -= n as u64;
                            let (api, tx) = (api.clone(), created_tx.clone());
                            tokio::spawn(async move {
                                let sent = Instant::now();
                                let result = api.create(bodies).await;
                                drop(permit);
                                let _ = tx.send(Created { first, count: n, sent, result });
                            });
                        }
                    }
                }
                if asking_secs.is_some() && run.settled == run.calls.len() as u64 {
                    break;
                }
            }
            Some(created) = created_rx.recv() => run.on_created(created),
            Some(event) = app_rx.recv() => run.on_app_event(event),
            Some(polled) = polled_rx.recv() => run.on_polled(polled),
            _ = second_tick.tick() => {
                // Calls past their deadline: read each once more (its webhook may be late),
                // then give up on it.
                let now = Instant::now();
                while oldest_open < run.calls.len() && run.calls[oldest_open].requested + timeout <= now {
                    let index = oldest_open;
                    oldest_open += 1;
                    if run.calls[index].settled() || run.gave_up[index] {
                        continue;
                    }
                    match run.calls[index].id.clone() {
                        Some(id) => {
                            let (api, tx, reads) = (api.clone(), polled_tx.clone(), reads.clone());
                            tokio::spawn(async move {
                                let _permit = reads.acquire().await;
                                let record = api.get(&format!("/v1/calls/{id}")).await;
                                let _ = tx.send(Polled { index, record });
                            });
                        }
                        None => {
                            run.gave_up[index] = true;
                            run.settle(index);
                        }
                    }
                }
                let t = start.elapsed().as_secs();
                let live_p99 = (!run.setup_live.is_empty())
                    .then(|| run.setup_live.value_at_quantile(0.99) as f64 / 1000.0);
                let (asked, errors, settled) = (run.calls.len(), run.live_errors, run.settled);
                let second = run.close_second(t);
                if !args.quiet {
                    let p99 = live_p99.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"));
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(
                        err,
                        "[{t:>5}s] asked {asked} ({}/s)  ended {settled} ({}/s)  in flight {}  errors {errors}  setup p99 {p99}",
                        second.requested, second.ended, second.in_flight
                    );
                }
            }
            _ = &mut ctrl_c => {
                if interrupted {
                    break;
                }
                interrupted = true;
                eprintln!("interrupted: asking for no more calls, waiting for those in flight (Ctrl-C again to stop now)");
                ctrl_c.set(tokio::signal::ctrl_c());
            }
        }
    }
    let total_secs = start.elapsed().as_secs_f64();
    let asking_secs = asking_secs.unwrap_or_default().as_secs_f64();
    server.abort();

    // Post-dial delay from each answered call's events (the records carry no ringing time).
    let mut post_dial = histogram();
    let mut tasks = tokio::task::JoinSet::new();
    for call in &run.calls {
        let Some(id) = call.id.clone() else { continue };
        if call
            .final_record
            .as_ref()
            .is_none_or(|r| r["dialed_at"].is_null())
        {
            continue;
        }
        let (api, reads) = (api.clone(), reads.clone());
        tasks.spawn(async move {
            let _permit = reads.acquire().await;
            api.get(&format!("/v1/calls/{id}/events")).await
        });
    }
    while let Some(events) = tasks.join_next().await {
        if let Some(ms) = events.ok().flatten().and_then(|e| post_dial_ms(&e)) {
            record_ms(&mut post_dial, ms);
        }
    }
    let metrics_after = api.metrics().await;
    Ok(finish(
        &run,
        args,
        started_at,
        asking_secs,
        total_secs,
        post_dial,
        metrics_before.zip(metrics_after),
    ))
}

/// Dialing → first ringing or in-progress, from a call's events page.
fn post_dial_ms(page: &Value) -> Option<f64> {
    let events = page["events"].as_array()?;
    let dialing = events.iter().rev().find(|e| e["status"] == "dialing")?;
    let progress = events.iter().find(|e| {
        (e["status"] == "ringing" || e["status"] == "in-progress")
            && e["attempt"] == dialing["attempt"]
    })?;
    between_ms(&dialing["at"], &progress["at"])
}

fn finish(
    run: &Run,
    args: &LoadArgs,
    started_at: String,
    asking_secs: f64,
    total_secs: f64,
    post_dial: Histogram<u64>,
    metrics: Option<(String, String)>,
) -> Report {
    let app = &run.checked.app;
    let mut checks = Checks::default();
    let mut failures = Vec::new();
    let mut outcomes = BTreeMap::new();
    let mut setup = histogram();
    let mut dtmf_to_submit = histogram();
    let mut hold = histogram();
    let mut created = 0;
    for (index, call) in run.calls.iter().enumerate() {
        created += u64::from(call.id.is_some());
        let verdict = call.verdict(app, &run.checked.allowed);
        checks.add(&verdict);
        if verdict.fails() && failures.len() < 20 {
            let who = call.id.clone().unwrap_or_else(|| format!("call #{index}"));
            failures.push(format!(
                "{who}: {}",
                describe(&verdict, run.checked.callee.as_str(), call)
            ));
        }
        if let Some(record) = &call.final_record {
            let status = record["status"].as_str().unwrap_or("?").to_owned();
            *outcomes.entry(status).or_insert(0) += 1;
            if let Some(ms) = between_ms(&record["created_at"], &record["dialed_at"]) {
                record_ms(&mut setup, ms);
            }
            if let Some(ms) = between_ms(&record["answered_at"], &record["ended_at"]) {
                record_ms(&mut hold, ms);
            }
        }
        for (values, at) in &call.submits {
            let t = values
                .iter()
                .find(|(k, _)| k == "t")
                .and_then(|(_, v)| v.parse::<f64>().ok());
            let arrived = at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
            if let Some(t) = t {
                record_ms(&mut dtmf_to_submit, (arrived - t).max(0.0));
            }
        }
    }
    let mut latency_ms = BTreeMap::new();
    for (key, h) in [
        ("create_request", &run.create_latency),
        ("request_to_invite", &setup),
        ("post_dial_delay", &post_dial),
        ("dtmf_to_submit", &dtmf_to_submit),
        ("answered_to_ended", &hold),
    ] {
        if let Some(s) = Summary::of(h) {
            latency_ms.insert(key.to_owned(), s);
        }
    }
    let answer_to_first_prompt_ms = metrics.and_then(|(before, after)| {
        let before = prom::Buckets::parse(&before, ANSWER_TO_PROMPT);
        prom::Buckets::parse(&after, ANSWER_TO_PROMPT)
            .since(&before)
            .summary()
    });
    let requested = run.calls.len() as u64;
    Report {
        tool: format!("outdial bench load {}", env!("CARGO_PKG_VERSION")),
        started_at,
        machine: machine(),
        settings: Settings {
            api: args.api.clone(),
            callee: run.checked.callee.clone(),
            app: app.name.to_owned(),
            pace: run.checked.pace_label.clone(),
            batch: run.checked.plan.batch,
            duration_secs: run.checked.plan.duration.map(|d| d.as_secs_f64()),
            count: run.checked.plan.count,
            call_timeout_secs: args.call_timeout,
        },
        asking_secs,
        total_secs,
        requested,
        created,
        create_requests: run.create_requests,
        created_per_sec: if asking_secs > 0.0 {
            created as f64 / asking_secs
        } else {
            0.0
        },
        outcomes,
        passed: requested > 0 && checks.failed() == 0,
        checks,
        failures,
        latency_ms,
        answer_to_first_prompt_ms,
        timeline: run.timeline.clone(),
    }
}

fn describe(verdict: &Verdict, callee: &str, call: &Call) -> String {
    match verdict {
        Verdict::Ok => "ok".into(),
        Verdict::Allowed(s) => format!("ended {s} (allowed)"),
        Verdict::Refused(why) => format!("not created: {why}"),
        Verdict::Lost => format!(
            "no final status within --call-timeout (dialled sip:press-{}@{callee})",
            call.keys
        ),
        Verdict::NoSubmit => format!("completed without a submit (pressed {:?})", call.keys),
        Verdict::Mismatch(m) => m.clone(),
        Verdict::Unexpected(s) => {
            let reason = call
                .final_record
                .as_ref()
                .and_then(|r| r["reason"].as_str())
                .unwrap_or("");
            format!("ended {s}: {reason}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_dial_delay_is_dialing_to_first_progress_of_the_last_attempt() {
        let page = json!({"events": [
            {"status": "queued", "at": "2026-12-04T10:00:00Z", "attempt": null},
            {"status": "dialing", "at": "2026-12-04T10:00:01Z", "attempt": 1},
            {"status": "ringing", "at": "2026-12-04T10:00:01.250Z", "attempt": 1},
            {"status": "in-progress", "at": "2026-12-04T10:00:03Z", "attempt": 1},
        ]});
        let ms = post_dial_ms(&page).expect("delay");
        assert!((ms - 250.0).abs() < 1e-6, "{ms}");
        let unanswered = json!({"events": [
            {"status": "dialing", "at": "2026-12-04T10:00:01Z", "attempt": 1},
            {"status": "busy", "at": "2026-12-04T10:00:02Z", "attempt": 1},
        ]});
        assert_eq!(post_dial_ms(&unanswered), None);
        assert_eq!(
            between_ms(&json!("x"), &json!("2026-12-04T10:00:02Z")),
            None
        );
    }

    #[test]
    fn keys_and_expected_values_follow_the_app() {
        let parse = |s: &str| {
            use clap::Parser;
            #[derive(Parser)]
            struct Cli {
                #[command(flatten)]
                load: LoadArgs,
            }
            let cli = Cli::try_parse_from(std::iter::once("x").chain(s.split_whitespace()))
                .expect("parse");
            (cli.load.check().expect("check"), cli.load)
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let (checked, args) = parse("--callee h:1 --digits 6");
        let (keys, expected) = keys_for(&checked, &args, &mut rng);
        assert_eq!(keys.len(), 6);
        assert!(keys.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(keys, expected);
        let (checked, args) = parse("--callee h:1 --app reminder");
        for _ in 0..10 {
            let (keys, expected) = keys_for(&checked, &args, &mut rng);
            assert_eq!(expected, if keys == "1" { "true" } else { "false" });
        }
        let (checked, args) = parse("--callee h:1 --expect-digits 1");
        assert_eq!(
            keys_for(&checked, &args, &mut rng),
            ("1".into(), "1".into())
        );
    }
}
