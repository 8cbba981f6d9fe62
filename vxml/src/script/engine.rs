//! The QuickJS runtimes that sessions' script contexts live in.
//!
//! A runtime costs about 28 KiB before any context; a context with the intrinsics VoiceXML
//! needs about 30 KiB more, and the data model's bootstrap, scopes and compiled expressions
//! about 15 KiB. One runtime per session (91 KiB) would alone exceed the 64 KiB a live session
//! may cost, so sessions share runtimes: each thread keeps a pool of runtimes of at most [`CONTEXTS_PER_RUNTIME`]
//! contexts ([`ScriptEngine::for_this_thread`]). Contexts in one runtime share atoms (property
//! names), shapes and the class table but each has its own global object and intrinsics, so
//! one session's scripts cannot see or change another's.
//!
//! Why a pool of small runtimes rather than one per thread: QuickJS's cycle collector walks
//! every object of a runtime. With 1,000 contexts in one runtime a collection stalls every
//! session on the thread for about 110 ms; with 32 it is a few milliseconds, for an extra
//! ~0.9 KiB per session (the runtime's own tables shared by fewer sessions).
//!
//! What becomes per-runtime, and how each per-session guarantee is kept:
//! - **Execution** is serialised by the runtime's lock (rquickjs `parallel`); on a
//!   thread-per-core host all users of a runtime run on its thread, so the lock is uncontended.
//!   Where sessions of one runtime run on several threads, that lock (a `std` mutex) is not
//!   fair: a runaway session that takes it again microseconds after each evaluation kept a
//!   session waiting for a new context for six seconds. So every user takes a turn first
//!   ([`ScriptEngine::turn`]), and sessions that already spent a whole evaluation's budget go
//!   last: a normal session waits at most for the one evaluation running when it asks.
//! - **Interrupt budget**: one counter per runtime, re-armed by every evaluation after it takes
//!   the lock, so each evaluation has its own budget; with it the evaluation's session's
//!   [`Meter`] (its budget for the whole call, and its stop flag), which every check also
//!   draws from.
//! - **Memory limit**: exact per session ([`super::ledger`]). The runtime allocates through an
//!   allocator whose block headers name the session each block is charged to; an evaluation
//!   charges its session, and an allocation past the session's own limit fails in that session
//!   only (`error.semantic` there), whatever the other sessions of the runtime hold. The runtime
//!   itself (its tables, work outside any session) may hold [`HEADROOM_BYTES`], so a runtime
//!   holds at most that plus its live sessions' limits, plus what ended sessions left for the
//!   cycle collector.
//! - **Stack**: [`STACK_BYTES`] of native stack per evaluation, measured from where each
//!   evaluation enters the engine (rquickjs updates the stack top on every entry).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use rquickjs::context::intrinsic::{Date, Eval, Json, Proxy, RegExp, RegExpCompiler};
use rquickjs::{Context, Runtime};

use super::ScriptError;
use super::ledger::{ChargeGuard, Ledger, LedgerSummary, Owner, SessionAllocator, SessionMemory};
use super::meter::Meter;

/// Native stack one evaluation may use; deeper recursion throws `InternalError: stack
/// overflow`. Host threads need this much stack above the caller (tokio and test threads have
/// 2 MiB).
pub const STACK_BYTES: usize = 256 * 1024;

/// Memory a runtime's own account may hold beyond its sessions' (its tables, and work done
/// outside any session).
pub const HEADROOM_BYTES: usize = 1 << 20;

/// Most contexts [`ScriptEngine::for_this_thread`] puts in one runtime.
pub const CONTEXTS_PER_RUNTIME: usize = 32;

thread_local! {
    static THREAD_POOL: RefCell<Vec<ScriptEngine>> = const { RefCell::new(Vec::new()) };
}

/// A QuickJS runtime shared by the script contexts of many sessions. Cloning shares it.
#[derive(Clone)]
pub struct ScriptEngine {
    runtime: Runtime,
    ledger: Arc<Ledger>,
    budget_left: Arc<AtomicU32>,
    /// The meter of the session whose evaluation holds the runtime.
    meter: Arc<Mutex<Option<Meter>>>,
    /// Turns at the runtime, in arrival order.
    turns: Arc<Turns>,
    contexts: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptEngine")
            .field("ledger", &self.ledger.summary())
            .field("contexts", &self.contexts.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a runtime holds, from QuickJS's own accounting (`JS_ComputeMemoryUsage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineMemory {
    /// Bytes allocated by the engine, allocator overhead included.
    pub malloc_bytes: i64,
    /// Live JS objects.
    pub objects: i64,
    /// Interned strings (atoms).
    pub atoms: i64,
    /// Bytes of compiled functions.
    pub bytecode_bytes: i64,
}

impl ScriptEngine {
    /// A new runtime of its own, with no contexts yet.
    pub fn new() -> Result<Self, ScriptError> {
        let ledger = Ledger::new(HEADROOM_BYTES);
        let runtime = Runtime::new_with_alloc(SessionAllocator::new(Arc::clone(&ledger)))
            .map_err(|e| ScriptError::Engine(e.to_string()))?;
        runtime.set_max_stack_size(STACK_BYTES);
        let budget_left = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&budget_left);
        let meter: Arc<Mutex<Option<Meter>>> = Arc::new(Mutex::new(None));
        let current = Arc::clone(&meter);
        runtime.set_interrupt_handler(Some(Box::new(move || {
            // Decrement and stop once the budget is spent; never wraps below zero.
            let spent = counter
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err();
            spent
                || current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                    .is_some_and(|meter| !meter.take())
        })));
        Ok(Self {
            runtime,
            ledger,
            budget_left,
            meter,
            turns: Arc::new(Turns::default()),
            contexts: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// A runtime of this thread's pool with room for one more context (fewer than
    /// [`CONTEXTS_PER_RUNTIME`]), created when all are full. Empty runtimes beyond one are
    /// dropped from the pool.
    pub fn for_this_thread() -> Result<Self, ScriptError> {
        THREAD_POOL.with(|cell| {
            let mut pool = cell.borrow_mut();
            let mut kept_idle = false;
            pool.retain(|engine| {
                let idle = engine.contexts() == 0;
                let keep = !idle || !kept_idle;
                kept_idle |= idle;
                keep
            });
            if let Some(engine) = pool
                .iter()
                .find(|engine| engine.contexts() < CONTEXTS_PER_RUNTIME)
            {
                return Ok(engine.clone());
            }
            let engine = Self::new()?;
            pool.push(engine.clone());
            Ok(engine)
        })
    }

    /// The runtimes of this thread's pool (for measurements).
    pub fn thread_pool() -> Vec<Self> {
        THREAD_POOL.with(|cell| cell.borrow().clone())
    }

    /// Live contexts in this runtime.
    pub fn contexts(&self) -> usize {
        self.contexts.load(Ordering::Relaxed)
    }

    /// Walks the whole heap and reports it (slow: for measurements, not per call).
    pub fn memory(&self) -> EngineMemory {
        let usage = self.runtime.memory_usage();
        EngineMemory {
            malloc_bytes: usage.malloc_size,
            objects: usage.obj_count,
            atoms: usage.atom_count,
            bytecode_bytes: usage.js_func_code_size,
        }
    }

    /// Runs the cycle collector now.
    pub fn collect_garbage(&self) {
        self.runtime.run_gc();
    }

    /// Memory charged to each account of this runtime (cheap: no heap walk).
    pub fn ledger(&self) -> LedgerSummary {
        self.ledger.summary()
    }

    /// A context with the intrinsics ES5 code needs (no Promise, typed arrays, Map/Set,
    /// WeakRef), charged with its session's allocations up to `limit` bytes until
    /// [`Self::release`].
    pub(crate) fn context(&self, limit: usize) -> Result<(Context, Owner), ScriptError> {
        let owner = self.ledger.open(limit);
        self.contexts.fetch_add(1, Ordering::Relaxed);
        let created = {
            let _turn = self.turn(false);
            let _charge = self.ledger.charge_to(owner);
            Context::custom::<(Eval, Json, Proxy, RegExp, RegExpCompiler, Date)>(&self.runtime)
        };
        match created {
            Ok(context) => Ok((context, owner)),
            Err(e) => {
                let exceeded = self.ledger.refused(owner);
                self.release(owner);
                Err(if exceeded {
                    ScriptError::Engine(format!(
                        "a script context needs more than the session's {limit} bytes; raise the script memory limit"
                    ))
                } else {
                    ScriptError::Engine(e.to_string())
                })
            }
        }
    }

    /// Ends a context's account; call after its context is dropped.
    pub(crate) fn release(&self, owner: Owner) {
        let _ = self
            .contexts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.ledger.close(owner);
    }

    /// Charges this thread's work in the runtime to `owner` until the guard drops, with no
    /// refusal on record yet. Call with the runtime locked (inside `Context::with`).
    pub(crate) fn charge_to(&self, owner: Owner) -> ChargeGuard {
        self.ledger.clear_refused(owner);
        self.ledger.charge_to(owner)
    }

    /// Whether one of `owner`'s allocations was refused since [`Self::charge_to`].
    pub(crate) fn refused(&self, owner: Owner) -> bool {
        self.ledger.refused(owner)
    }

    /// What `owner` holds now.
    pub(crate) fn session_memory(&self, owner: Owner) -> SessionMemory {
        self.ledger.session(owner)
    }

    /// Waits for this thread's turn at the runtime; the next user's turn comes when the
    /// returned guard drops. A `hot` user (a session that already spent a whole evaluation's
    /// budget) waits until no other user waits. Take it before the runtime's lock, never while
    /// holding a turn already.
    pub(crate) fn turn(&self, hot: bool) -> Turn {
        self.turns.take(hot)
    }

    /// Gives the evaluation about to run `budget` interrupt checks, each also drawn from its
    /// session's `meter`. Call with the runtime locked (inside `Context::with`), so no other
    /// evaluation can re-arm it meanwhile.
    pub(crate) fn arm(&self, budget: u32, meter: &Meter) {
        self.budget_left.store(budget, Ordering::Relaxed);
        *self.meter.lock().unwrap_or_else(PoisonError::into_inner) = Some(meter.clone());
    }

    /// Whether the running evaluation spent its budget.
    pub(crate) fn budget_spent(&self) -> bool {
        self.budget_left.load(Ordering::Relaxed) == 0
    }
}

/// Turns at a runtime: one user at a time, and "hot" users (sessions that have already spent
/// at least a whole evaluation's budget: runaways, or nearly) only when no other user waits.
/// A session sharing a runtime with a runaway thus waits for at most the evaluation running
/// when it asks, not for one after each of its own evaluations.
#[derive(Debug, Default)]
pub(crate) struct Turns {
    state: Mutex<TurnState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct TurnState {
    held: bool,
    /// Users other than hot ones waiting for a turn.
    waiting: usize,
}

impl Turns {
    fn take(self: &Arc<Self>, hot: bool) -> Turn {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !hot {
            state.waiting += 1;
        }
        while state.held || (hot && state.waiting > 0) {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if !hot {
            state.waiting -= 1;
        }
        state.held = true;
        Turn {
            turns: Arc::clone(self),
        }
    }
}

/// A turn at a runtime; the next user is served when it drops.
#[derive(Debug)]
pub(crate) struct Turn {
    turns: Arc<Turns>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut state = self
            .turns
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.held = false;
        drop(state);
        self.turns.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{DataModel, QuickJs, Scope, ScriptLimits};

    const LIMITS: ScriptLimits = ScriptLimits {
        budget: 50,
        memory_bytes: 1 << 20,
    };

    #[test]
    fn turns_are_served_one_at_a_time_and_hot_users_last() {
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let engine = ScriptEngine::new().expect("engine");
        let first = engine.turn(false);
        let (tx, rx) = channel();
        let spawn = |name: &'static str, hot: bool, hold: Duration| {
            let (engine, tx) = (engine.clone(), tx.clone());
            std::thread::spawn(move || {
                let _turn = engine.turn(hot);
                let _ = tx.send(name);
                std::thread::sleep(hold);
            })
        };
        let hot = spawn("hot", true, Duration::ZERO);
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "no second turn while the first is held"
        );
        let cool = spawn("cool", false, Duration::from_millis(50));
        // Wait until the cool user is queued, then end the first turn.
        while engine.turns.state.lock().map_or(0, |s| s.waiting) == 0 {
            std::thread::yield_now();
        }
        drop(first);
        assert_eq!(
            rx.recv().ok(),
            Some("cool"),
            "the waiting normal user goes first"
        );
        assert_eq!(rx.recv().ok(), Some("hot"));
        hot.join().expect("hot");
        cool.join().expect("cool");
        drop(engine.turn(true));
    }

    #[test]
    fn the_thread_pool_fills_runtimes_up_to_the_cap_and_reuses_them() {
        // A fresh thread has an empty pool.
        std::thread::spawn(|| {
            let models: Vec<QuickJs> = (0..=CONTEXTS_PER_RUNTIME)
                .map(|_| QuickJs::new(LIMITS).unwrap())
                .collect();
            let counts: Vec<usize> = ScriptEngine::thread_pool()
                .iter()
                .map(ScriptEngine::contexts)
                .collect();
            assert_eq!(counts, [CONTEXTS_PER_RUNTIME, 1]);
            let second = QuickJs::new(LIMITS).unwrap();
            assert_eq!(ScriptEngine::thread_pool()[1].contexts(), 2);
            drop(models);
            drop(second);
            let again = QuickJs::new(LIMITS).unwrap();
            let pool = ScriptEngine::thread_pool();
            assert_eq!(pool.len(), 1, "idle runtimes beyond one go");
            assert_eq!(pool[0].contexts(), 1);
            drop(again);
        })
        .join()
        .unwrap();
    }

    /// Two sessions of one runtime, each allowed 1 MiB.
    fn two_sessions() -> (ScriptEngine, QuickJs, QuickJs) {
        let engine = ScriptEngine::new().unwrap();
        let mut a = QuickJs::in_engine(&engine, LIMITS).unwrap();
        let mut b = QuickJs::in_engine(&engine, LIMITS).unwrap();
        for js in [&mut a, &mut b] {
            js.push_scope(Scope::Application).unwrap();
        }
        (engine, a, b)
    }

    #[test]
    fn a_runaway_session_runs_out_of_its_own_memory_only() {
        let (engine, mut runaway, mut other) = two_sessions();
        let baseline = runaway.memory().bytes;
        let error = runaway
            .run_script("var big = []; while (true) big.push(new Array(10000).join('x'));")
            .unwrap_err();
        assert!(
            matches!(error, ScriptError::MemoryExceeded { .. }),
            "{error}"
        );
        let held = runaway.memory();
        assert!(held.bytes <= held.limit, "{held:?}");
        assert!(
            held.bytes > held.limit - 64 * 1024,
            "it ran up to its limit: {held:?}"
        );
        // The other session of the runtime still has all of its own allowance.
        other
            .run_script("var s = new Array(500 * 1024 + 1).join('y');")
            .unwrap();
        assert!(other.memory().bytes > 500 * 1024);
        assert_eq!(other.eval_string("s.length").unwrap(), "512000");
        assert_eq!(other.eval_string("s.charAt(9) + 6 * 7").unwrap(), "y42");
        other.assign("s", "null").unwrap();
        // Clearing the runaway's variable gives its memory back.
        runaway.assign("big", "null").unwrap();
        engine.collect_garbage();
        let after = runaway.memory().bytes;
        assert!(
            after < baseline + 16 * 1024,
            "baseline {baseline} B, after {after} B"
        );
        assert_eq!(runaway.eval_string("'ok'").unwrap(), "ok");
    }

    #[test]
    fn a_session_cannot_borrow_what_others_leave_unused() {
        let engine = ScriptEngine::new().unwrap();
        let small = ScriptLimits {
            budget: 50,
            memory_bytes: 256 * 1024,
        };
        let mut a = QuickJs::in_engine(&engine, small).unwrap();
        a.push_scope(Scope::Application).unwrap();
        let _idle: Vec<QuickJs> = (0..8)
            .map(|_| QuickJs::in_engine(&engine, small).unwrap())
            .collect();
        assert_eq!(engine.contexts(), 9);
        // 2 MiB of values (16 bytes each) exceed the 256 KiB allowance, idle neighbours or not.
        let error = a
            .eval_string("new Array(1 << 17).fill(1.5).length")
            .unwrap_err();
        assert!(
            matches!(error, ScriptError::MemoryExceeded { limit, .. } if limit == 256 * 1024),
            "{error}"
        );
        assert_eq!(
            a.eval_string("new Array(1 << 12).fill(1.5).length")
                .unwrap(),
            "4096"
        );
    }

    #[test]
    fn dropping_a_session_returns_its_bytes() {
        let engine = ScriptEngine::new().unwrap();
        let empty = engine.ledger();
        let mut js = QuickJs::in_engine(&engine, LIMITS).unwrap();
        js.push_scope(Scope::Application).unwrap();
        js.run_script("var text = new Array(5000).join('z'); var o = {a: [1, 2]}; o.self = o;")
            .unwrap();
        let live = engine.ledger();
        assert_eq!(live.sessions, 1);
        assert_eq!(live.session_bytes, js.memory().bytes);
        assert!(live.session_bytes > 30 * 1024, "{live:?}");
        drop(js);
        engine.collect_garbage();
        let after = engine.ledger();
        assert_eq!((after.sessions, after.session_bytes), (0, 0));
        let left = after.runtime_bytes + after.orphan_bytes;
        assert!(
            left < empty.runtime_bytes + 8 * 1024,
            "empty runtime {empty:?}; after the session {after:?}"
        );
    }

    #[test]
    fn the_runtime_is_charged_for_its_own_tables_only() {
        let engine = ScriptEngine::new().unwrap();
        let before = engine.ledger();
        assert!(before.runtime_bytes > 0 && before.runtime_bytes < HEADROOM_BYTES);
        let a = QuickJs::in_engine(&engine, LIMITS).unwrap();
        // A context's intrinsics and bootstrap are its session's, not the runtime's.
        assert!(a.memory().bytes > 30 * 1024, "{:?}", a.memory());
        assert!(engine.ledger().runtime_bytes < before.runtime_bytes + 8 * 1024);
    }
}
