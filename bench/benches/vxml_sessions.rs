//! What a live VoiceXML session costs: 1,000 sessions of one small application (an application
//! root with variables; a form with two `digits` fields, `<filled>` with `<if>`/`<assign>`, and
//! prompts with `<value>`), driven in virtual time until all 1,000 wait for input; then one FIA
//! step each (four keys → `<filled>` → the next field's prompt → listening), then a second one
//! (four keys → `<filled>` → `<submit>`).
//!
//! Reports, for the live sessions: Rust heap per session (a counting global allocator) and
//! QuickJS heap per session (the runtime's own accounting; QuickJS allocates from the system
//! allocator through `script::ledger`, which the Rust global allocator does not see), what the
//! ledger charges each session (the system blocks QuickJS holds, with their headers), the shared
//! document cache's hits and misses (the documents are parsed once, by a warm-up session, and
//! held once: the per-session figures contain no document copies), the time per session start
//! and per FIA step, and a full cycle collection over all contexts. Then the script engine alone, one runtime per session against
//! one shared runtime, which is the measurement behind `script::engine`'s design, and the cost
//! of one evaluation.
//!
//! Run: `cargo bench -p outdial-bench --bench vxml_sessions` (figures: `docs/benchmarks.md`).
//! `OUTDIAL_BENCH_SESSIONS=N` changes the session count (e.g. 10 under callgrind).

// The counting allocator below implements `GlobalAlloc`, which is an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use outdial_vxml::document::Document;
use outdial_vxml::script::ledger::HEADER_BYTES;
use outdial_vxml::script::{DataModel, LedgerSummary, QuickJs, Scope, ScriptEngine, ScriptLimits};
use outdial_vxml::{Action, FetchPurpose, Fetched, Input, Session, SessionConfig};

/// The Rust global allocator, counting live bytes.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

const ROOT_URL: &str = "http://app.test/root.vxml";
const MAIN_URL: &str = "http://app.test/main.vxml";

const ROOT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml">
  <var name="attempts" expr="0"/>
  <var name="customer" expr="'Ann'"/>
  <var name="greeting" expr="'Hello ' + customer"/>
  <catch event="error"><log expr="'error: ' + _event"/><exit/></catch>
</vxml>
"#;

const MAIN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<vxml version="2.1" xmlns="http://www.w3.org/2001/vxml" application="root.vxml">
  <var name="total" expr="0"/>
  <form id="order">
    <field name="account" type="digits?length=4">
      <prompt><value expr="greeting"/>, please enter your account number.</prompt>
      <filled>
        <if cond="account == '0000'">
          <assign name="application.attempts" expr="application.attempts + 1"/>
          <clear namelist="account"/>
        <else/>
          <assign name="total" expr="total + Number(account)"/>
        </if>
      </filled>
    </field>
    <field name="pin" type="digits?length=4">
      <prompt>Account <value expr="account"/>. Now your PIN.</prompt>
      <filled>
        <submit next="http://app.test/done" namelist="account pin total" method="post"/>
      </filled>
    </field>
  </form>
</vxml>
"#;

/// Where a session stopped when its actions ran out.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// Waiting for the caller.
    Listening,
    /// Asked to submit (the benchmark answers nothing further).
    Submitted,
    /// Over, or idle for another reason.
    Other(String),
}

/// Answers fetches and playbacks at `now` until the session waits for something else.
fn drive(session: &mut Session, now: Instant) -> Stop {
    let mut listening = false;
    let mut log = Vec::new();
    while let Some(action) = session.poll_action() {
        match action {
            Action::Fetch(fetch) if fetch.purpose == FetchPurpose::Submit => {
                return Stop::Submitted;
            }
            Action::Fetch(fetch) => {
                let body = match fetch.url.as_str() {
                    ROOT_URL => ROOT,
                    MAIN_URL => MAIN,
                    other => return Stop::Other(format!("unexpected fetch of {other}")),
                };
                session.handle_input(
                    now,
                    Input::Fetched {
                        id: fetch.id,
                        result: Ok(Fetched {
                            url: fetch.url,
                            content_type: Some("application/voicexml+xml".to_owned()),
                            body: body.as_bytes().to_vec(),
                        }),
                    },
                );
            }
            Action::Play { id, .. } => session.handle_input(
                now,
                Input::PlaybackDone {
                    id,
                    interrupted: false,
                },
            ),
            Action::Listen(_) => listening = true,
            Action::End(end) => return Stop::Other(format!("ended: {end:?}")),
            Action::Log { label, text } => log.push(format!("{label:?}: {text}")),
            _ => {}
        }
    }
    // Collecting input arms the noinput timer, whether or not a Listen action says so.
    if listening || session.poll_timeout().is_some() {
        Stop::Listening
    } else {
        Stop::Other(format!("idle without listening; log: {log:?}"))
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        url: MAIN_URL.to_owned(),
        vars: vec![("campaign".to_owned(), r#"{"id":7}"#.to_owned())],
        local_uri: "sip:outdial@192.0.2.1".to_owned(),
        remote_uri: "sip:+15550001@192.0.2.4".to_owned(),
        answered_by: None,
        limits: Default::default(),
    }
}

/// QuickJS heap of one runtime, after a cycle collection.
fn quickjs_bytes(engine: &ScriptEngine) -> i64 {
    engine.collect_garbage();
    engine.memory().malloc_bytes
}

/// QuickJS heap of all this thread's runtimes, after a cycle collection.
fn pool_bytes() -> i64 {
    ScriptEngine::thread_pool().iter().map(quickjs_bytes).sum()
}

/// The ledgers of all this thread's runtimes, summed (call after [`pool_bytes`] collected).
fn pool_ledger() -> LedgerSummary {
    let mut total = LedgerSummary::default();
    for engine in ScriptEngine::thread_pool() {
        let l = engine.ledger();
        total.session_bytes += l.session_bytes;
        total.runtime_bytes += l.runtime_bytes;
        total.orphan_bytes += l.orphan_bytes;
        total.blocks += l.blocks;
        total.sessions += l.sessions;
    }
    total
}

/// The first FIA step of every session: four keys → `<filled>` → the next field listening.
/// A function of its own so that callgrind can count it alone
/// (`--collect-atstart=no --toggle-collect='*fia_step*'`).
#[inline(never)]
fn fia_step(sessions: &mut [Session], now: Instant) {
    for session in sessions {
        for key in ['1', '2', '3', '4'] {
            session.handle_input(now, Input::Dtmf(key));
        }
        assert_eq!(
            drive(session, now),
            Stop::Listening,
            "the PIN field listens"
        );
    }
}

fn per(total: Duration, n: usize) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / n as f64)
}

fn main() {
    // `cargo bench` passes `--bench` and criterion flags; a bare argument is a filter, as for
    // the criterion benchmarks: run only if it names this one.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "vxml_sessions".contains(f.as_str())) {
        return;
    }
    let n: usize = std::env::var("OUTDIAL_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let now = Instant::now();

    // The parsed documents live once, in the process-wide cache `Session::new` shares
    // (`Session::shared_documents`): the warm-up session below parses and caches them, so the
    // measured sessions hold only `Arc`s to them. What the two would cost if held per session:
    let before = live_bytes();
    let documents: Vec<Document> = [(ROOT_URL, ROOT), (MAIN_URL, MAIN)]
        .into_iter()
        .map(|(url, text)| {
            Document::parse(url.parse().expect("url"), None, text.as_bytes(), 1 << 20)
                .expect("the benchmark's documents parse")
        })
        .collect();
    let document_bytes = live_bytes() - before;
    drop(documents);

    // Warm up: the first session creates the runtime, atoms and lazily built tables, and
    // parses the two documents into the shared cache.
    let cache = Session::shared_documents();
    let cold = cache.stats();
    let mut warm = Session::new(config(), now).expect("session starts");
    assert_eq!(drive(&mut warm, now), Stop::Listening);
    let warmed = cache.stats();

    let rust_before = live_bytes();
    let js_before = pool_bytes();
    let started = Instant::now();
    let mut sessions = Vec::with_capacity(n);
    for _ in 0..n {
        let mut session = Session::new(config(), now).expect("session starts");
        let stop = drive(&mut session, now);
        assert_eq!(
            stop,
            Stop::Listening,
            "every session waits for the account number"
        );
        sessions.push(session);
    }
    let start_time = started.elapsed();
    let measured = cache.stats();
    assert_eq!(
        measured.misses, warmed.misses,
        "the measured sessions parse nothing: every document comes from the shared cache"
    );
    let rust_per_session = (live_bytes() - rust_before) as f64 / n as f64;
    let js_per_session = (pool_bytes() - js_before) as f64 / n as f64;
    let ledger = pool_ledger();
    let charged_per_session = ledger.session_bytes as f64 / ledger.sessions.max(1) as f64;
    let blocks_per_session = ledger.blocks as f64 / ledger.sessions.max(1) as f64;

    // One FIA step each: four keys → <filled> → next field's prompt → listening.
    let started = Instant::now();
    fia_step(&mut sessions, now);
    let step_time = started.elapsed();
    // The pause a cycle collection causes: one runtime's worth of contexts at a time.
    let pool = ScriptEngine::thread_pool();
    let mut gc_max = Duration::ZERO;
    for engine in &pool {
        let started = Instant::now();
        engine.collect_garbage();
        gc_max = gc_max.max(started.elapsed());
    }
    let runtimes = pool.len();
    drop(pool);
    let rust_after_step = (live_bytes() - rust_before) as f64 / n as f64;
    let js_after_step = (pool_bytes() - js_before) as f64 / n as f64;

    // The second step ends in <submit>.
    let started = Instant::now();
    for session in &mut sessions {
        for key in ['9', '8', '7', '6'] {
            session.handle_input(now, Input::Dtmf(key));
        }
        assert_eq!(drive(session, now), Stop::Submitted);
    }
    let submit_time = started.elapsed();
    drop(sessions);
    drop(warm);

    let kib = |rust: f64, js: f64| (rust + js) / 1024.0;
    println!("vxml_sessions: {n} live sessions of one application");
    println!(
        "  shared document cache: the warm-up session parsed {} documents ({} misses); the \
         {n} measured sessions took {} from the cache and parsed {} (held once: {} entries, \
         {document_bytes} B parsed)",
        warmed.misses - cold.misses,
        warmed.misses - cold.misses,
        measured.hits - warmed.hits,
        measured.misses - warmed.misses,
        measured.entries,
    );
    println!(
        "  per session, waiting for the first field: {:.0} B Rust heap + {:.0} B QuickJS heap \
         = {:.1} KiB (goal < 64 KiB; no document copies in it)",
        rust_per_session,
        js_per_session,
        kib(rust_per_session, js_per_session)
    );
    println!(
        "  per session after one step: {:.0} B Rust heap + {:.0} B QuickJS heap = {:.1} KiB",
        rust_after_step,
        js_after_step,
        kib(rust_after_step, js_after_step)
    );
    println!(
        "  charged to each session by the ledger: {charged_per_session:.0} B in \
         {blocks_per_session:.1} system blocks, of which {:.0} B block headers \
         ({HEADER_BYTES} B each); runtimes' own: {} B in all",
        blocks_per_session * HEADER_BYTES as f64,
        ledger.runtime_bytes
    );
    println!(
        "  start to first listen: {} per session; FIA step (4 keys → filled → next field): {}; \
         step ending in <submit>: {}",
        per(start_time, n),
        per(step_time, n),
        per(submit_time, n)
    );
    println!(
        "  {runtimes} runtimes of up to {} contexts; longest cycle collection: {gc_max:.2?}",
        outdial_vxml::script::engine::CONTEXTS_PER_RUNTIME
    );

    engine_only(n);
}

/// The script engine alone: one runtime per session against one shared runtime, each context
/// with a bootstrap, four scopes and a few variables; and the cost of one evaluation.
fn engine_only(n: usize) {
    let limits = ScriptLimits {
        budget: 200,
        memory_bytes: 1 << 20,
    };
    let fill = |js: &mut QuickJs| {
        for scope in [
            Scope::Session,
            Scope::Application,
            Scope::Document,
            Scope::Dialog,
        ] {
            js.push_scope(scope).expect("scope");
        }
        js.declare("account", Some("'1234'")).expect("declare");
        js.declare("total", Some("0")).expect("declare");
    };

    // One runtime holding every context (what the thread pool caps).
    let shared = ScriptEngine::new().expect("engine");
    let base = quickjs_bytes(&shared);
    let rust_before = live_bytes();
    let mut models = Vec::with_capacity(n);
    for _ in 0..n {
        let mut js = QuickJs::in_engine(&shared, limits).expect("context");
        fill(&mut js);
        models.push(js);
    }
    let shared_js = (quickjs_bytes(&shared) - base) as f64 / n as f64;
    let shared_charged = shared.ledger().session_bytes as f64 / n as f64;
    let shared_rust = (live_bytes() - rust_before) as f64 / n as f64;
    let model = models.first_mut().expect("n > 0");
    let evals = 20_000;
    let started = Instant::now();
    for i in 0..evals {
        if i % 2 == 0 {
            model.assign("total", "total + 1").expect("assign");
        } else {
            black_box(
                model
                    .eval_bool("account == '1234' && total > 5")
                    .expect("eval"),
            );
        }
    }
    let eval_time = started.elapsed();
    let started = Instant::now();
    for _ in 0..evals {
        black_box(model.eval_bool("total > 5").expect("eval"));
    }
    let simple_time = started.elapsed();
    // Every expression new: what an evaluation costs before its compiled form is cached.
    let fresh = 2_000;
    let started = Instant::now();
    for i in 0..fresh {
        black_box(model.eval_bool(&format!("total > {i}")).expect("eval"));
    }
    let fresh_time = started.elapsed();
    let gc_started = Instant::now();
    shared.collect_garbage();
    let shared_gc = gc_started.elapsed();
    drop(models);

    let rust_before = live_bytes();
    let mut own = Vec::with_capacity(n);
    let mut own_js = 0i64;
    for _ in 0..n {
        let engine = ScriptEngine::new().expect("engine");
        let mut js = QuickJs::in_engine(&engine, limits).expect("context");
        fill(&mut js);
        own_js += quickjs_bytes(&engine);
        own.push((engine, js));
    }
    let own_rust = (live_bytes() - rust_before) as f64 / n as f64;
    drop(own);

    println!("script engine alone ({n} contexts, 4 scopes, 2 variables each):");
    println!(
        "  shared runtime: {shared_js:.0} B QuickJS + {shared_rust:.0} B Rust per context; \
         runtime per session: {:.0} B QuickJS + {own_rust:.0} B Rust",
        own_js as f64 / n as f64
    );
    println!("  shared runtime, charged per context by the ledger: {shared_charged:.0} B");
    println!("  cycle collection of one runtime holding all {n}: {shared_gc:.2?}");
    println!(
        "  one <assign> or cond evaluation in the scope chain: {}; a simple cond (`total > 5`): \
         {}; a cond never seen before (compiled, then cached): {}",
        per(eval_time, evals),
        per(simple_time, evals),
        per(fresh_time, fresh)
    );
}
