//! The QuickJS runtimes that sessions' script contexts live in.
//!
//! A runtime costs about 28 KiB before any context; a context with the intrinsics VoiceXML
//! needs about 30 KiB more, and the data model's bootstrap and scopes about 17 KiB. One runtime
//! per session (95 KiB) would alone exceed the 64 KiB a live session may cost, so sessions
//! share runtimes: each thread keeps a pool of runtimes of at most [`CONTEXTS_PER_RUNTIME`]
//! contexts ([`ScriptEngine::for_this_thread`]). Contexts in one runtime share atoms (property
//! names), shapes and the class table but each has its own global object and intrinsics, so
//! one session's scripts cannot see or change another's.
//!
//! Why a pool of small runtimes rather than one per thread: QuickJS's cycle collector walks
//! every object of a runtime. With 1,000 contexts in one runtime a collection stalls every
//! session on the thread for about 110 ms; with 32 it is a few milliseconds, for an extra
//! ~0.9 KiB per session (the runtime's own tables shared by fewer sessions). It also bounds
//! how many sessions one memory hog can affect.
//!
//! What becomes per-runtime, and how each per-session guarantee is kept:
//! - **Execution** is serialised by the runtime's lock (rquickjs `parallel`); on a
//!   thread-per-core host all users of a runtime run on its thread, so the lock is uncontended.
//! - **Interrupt budget**: one counter per runtime, re-armed by every evaluation after it takes
//!   the lock, so each evaluation has its own budget.
//! - **Memory limit**: the runtime's limit is the sum of its live sessions' allowances plus
//!   [`HEADROOM_BYTES`]. One session can borrow what others do not use; unbounded allocation still
//!   ends in an out-of-memory exception (`error.semantic`), and garbage is freed at once by
//!   reference counting. A session that *keeps* a huge heap reachable can starve the other
//!   sessions of its runtime until it ends: use [`ScriptEngine::new`] per session where that
//!   matters.
//! - **Stack**: [`STACK_BYTES`] of native stack per evaluation, measured from where each
//!   evaluation enters the engine (rquickjs updates the stack top on every entry).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use rquickjs::context::intrinsic::{Date, Eval, Json, Proxy, RegExp, RegExpCompiler};
use rquickjs::{Context, Runtime};

use super::ScriptError;

/// Native stack one evaluation may use; deeper recursion throws `InternalError: stack
/// overflow`. Host threads need this much stack above the caller (tokio and test threads have
/// 2 MiB).
pub const STACK_BYTES: usize = 256 * 1024;

/// Memory a runtime may use beyond its sessions' allowances (its own tables).
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
    budget_left: Arc<AtomicU32>,
    reserved: Arc<AtomicUsize>,
    contexts: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptEngine")
            .field("reserved", &self.reserved.load(Ordering::Relaxed))
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
    /// A new runtime of its own (isolated memory limit), with no contexts yet.
    pub fn new() -> Result<Self, ScriptError> {
        let runtime = Runtime::new().map_err(|e| ScriptError::Engine(e.to_string()))?;
        runtime.set_max_stack_size(STACK_BYTES);
        runtime.set_memory_limit(HEADROOM_BYTES);
        let budget_left = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&budget_left);
        runtime.set_interrupt_handler(Some(Box::new(move || {
            // Decrement and stop once the budget is spent; never wraps below zero.
            counter
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
        })));
        Ok(Self {
            runtime,
            budget_left,
            reserved: Arc::new(AtomicUsize::new(0)),
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

    /// A context with the intrinsics ES5 code needs (no Promise, typed arrays, Map/Set,
    /// WeakRef), and `bytes` added to the runtime's memory limit until [`Self::release`].
    pub(crate) fn context(&self, bytes: usize) -> Result<Context, ScriptError> {
        self.contexts.fetch_add(1, Ordering::Relaxed);
        let total = self.reserved.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.runtime
            .set_memory_limit(total.saturating_add(HEADROOM_BYTES));
        Context::custom::<(Eval, Json, Proxy, RegExp, RegExpCompiler, Date)>(&self.runtime).map_err(
            |e| {
                self.release(bytes);
                ScriptError::Engine(e.to_string())
            },
        )
    }

    /// Returns a context's allowance.
    pub(crate) fn release(&self, bytes: usize) {
        let _ = self
            .contexts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let before = self
            .reserved
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(bytes))
            })
            .unwrap_or(0);
        self.runtime
            .set_memory_limit(before.saturating_sub(bytes).saturating_add(HEADROOM_BYTES));
    }

    /// Gives the evaluation about to run `budget` interrupt checks. Call with the runtime
    /// locked (inside `Context::with`), so no other evaluation can re-arm it meanwhile.
    pub(crate) fn arm(&self, budget: u32) {
        self.budget_left.store(budget, Ordering::Relaxed);
    }

    /// Whether the running evaluation spent its budget.
    pub(crate) fn budget_spent(&self) -> bool {
        self.budget_left.load(Ordering::Relaxed) == 0
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

    #[test]
    fn a_runtimes_memory_is_its_sessions_allowances() {
        let engine = ScriptEngine::new().unwrap();
        let small = ScriptLimits {
            budget: 50,
            memory_bytes: 256 * 1024,
        };
        let mut a = QuickJs::in_engine(&engine, small).unwrap();
        a.push_scope(Scope::Application).unwrap();
        // 2 MiB of values (16 bytes each) exceed one allowance plus the headroom.
        let grow = "new Array(1 << 17).fill(1.5).length";
        let error = a.eval_string(grow).unwrap_err();
        assert!(
            matches!(error, ScriptError::MemoryExceeded { .. }),
            "{error}"
        );
        let others: Vec<QuickJs> = (0..8)
            .map(|_| QuickJs::in_engine(&engine, small).unwrap())
            .collect();
        assert_eq!(engine.contexts(), 9);
        // Eight more allowances make room for it; their release takes it away again.
        assert_eq!(a.eval_string(grow).unwrap(), "131072");
        drop(others);
        assert_eq!(engine.contexts(), 1);
        assert!(a.eval_string(grow).is_err());
    }
}
