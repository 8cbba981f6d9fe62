//! The ECMAScript data model (VoiceXML 2.0 §5.1: variables and scopes).
//!
//! [`DataModel`] is the narrow interface the interpreter uses; [`QuickJs`] implements it over
//! rquickjs so another engine (boa) can replace it without touching the interpreter.
//!
//! Scopes (§5.1.2) are a stack of plain JS objects, outermost first: `session` → `application`
//! → `document` → `dialog` → anonymous. Every evaluation runs in sloppy mode inside nested
//! `with` statements over that stack, so reading `x` finds the innermost declaration and
//! assigning `x` updates the scope that declared it. Each named scope object also holds itself
//! under its own name (non-enumerable), so `dialog.x` and `application.lastresult$` resolve.
//! An expression is compiled once per context into a function holding that `with` chain
//! (`__vxml.fns`, the [`CACHED_FUNCTIONS`] most recently used), so a repeated `cond` or `expr`
//! is a call, not a parse. What needs no compiling is not compiled: a plain name path (`x`,
//! `dialog.x`) is read, an `<assign>`'s target and host values are assigned, by bootstrap
//! helpers that resolve the name as the `with` chain would (`__vxml.read`, `__vxml.assignIn`).
//!
//! Assignment to an undeclared variable must raise `error.semantic` (§5.1.1). Sloppy JS would
//! create a global instead; the global object's prototype is therefore a `Proxy` whose `set`
//! trap throws, so the write fails; its `get` trap throws too, so reading an undeclared name
//! is an error. quickjs consults that `get` for `typeof x` as well, so `typeof NAME` is
//! rewritten to read through a guard (`guard_typeof`) and stays `"undefined"`. The price:
//! reading a missing property of the global object itself (`globalThis.nope`) throws too.
//!
//! Read-only values: the session scope once sealed ([`DataModel::seal_scope`]), and every
//! variable whose name ends in `$` (shadow variables `name$`, `application.lastresult$`) when
//! the host declares or assigns it. They are wrapped in `Proxy`s whose write traps throw, so an
//! application's `<assign>` or `<script>` writing them raises `error.semantic`.
//!
//! `<script>` (§5.3.12) runs as a direct `eval` inside the scope chain. Its `var` and `function`
//! declarations are created on the global object before its first statement runs; that first
//! statement (`__vxml.hoist`) moves them onto the innermost scope, so a script declaring a name
//! an outer scope also has gets a NEW inner variable, and its initialisers then assign that one.
//!
//! `<data>` (VoiceXML 2.1 §5.1) documents become a read-only DOM Level 2 Core subset
//! ([`DataModel::declare_dom`]); `dom.js` defines its prototypes once per context, on first use.
//!
//! Runaway scripts are stopped by the engine's interrupt handler after a budget of calls
//! (quickjs-ng calls it about every 10,000 operations), deep recursion by a stack limit and
//! unbounded allocation by a memory limit of the session's own, exact even in a shared runtime
//! ([`ledger`]). No wall clock is read: the budget counts work, not time.

mod bytecode;
mod dom;
pub mod engine;
mod lazy;
pub mod ledger;
pub mod meter;

pub use dom::DataError;
pub use engine::{EngineMemory, ScriptEngine};
pub use lazy::LazyModel;
pub use ledger::{LedgerSummary, SessionMemory};
pub use meter::Meter;

use bytecode::Bytecode;
use ledger::Owner;

use rquickjs::context::EvalOptions;
use rquickjs::{Coerced, Context, Ctx, Function, Object};

/// One of the five VoiceXML variable scopes (VoiceXML 2.0 §5.1.2), outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read-only platform values (`session.connection.*`, request variables).
    Session,
    /// Variables of the application root document; lives across documents of one application.
    Application,
    /// Variables declared at `<vxml>` level.
    Document,
    /// Variables of the current `<form>` (form item variables and form-level `<var>`).
    Dialog,
    /// Variables of one `<block>`, `<filled>` or `<catch>` execution.
    Anonymous,
}

impl Scope {
    /// The name the scope answers to in expressions (`dialog.x`), if it has one.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::Session => Some("session"),
            Self::Application => Some("application"),
            Self::Document => Some("document"),
            Self::Dialog => Some("dialog"),
            Self::Anonymous => None,
        }
    }
}

/// A value handed from the interpreter to the data model.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// ECMAScript `undefined`.
    Undefined,
    /// ECMAScript `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    String(String),
    /// An object with these properties, in order.
    Object(Vec<(String, Self)>),
    /// An array.
    Array(Vec<Self>),
    /// A value given as JSON text (request variables).
    Json(String),
}

impl Value {
    /// This value as an ECMAScript value of `ctx`.
    fn to_js<'js>(&self, ctx: &Ctx<'js>) -> rquickjs::Result<rquickjs::Value<'js>> {
        Ok(match self {
            Self::Undefined => rquickjs::Value::new_undefined(ctx.clone()),
            Self::Null => rquickjs::Value::new_null(ctx.clone()),
            Self::Bool(b) => rquickjs::Value::new_bool(ctx.clone(), *b),
            Self::Number(n) => rquickjs::Value::new_number(ctx.clone(), *n),
            Self::String(s) => rquickjs::String::from_str(ctx.clone(), s)?.into_value(),
            Self::Object(fields) => {
                let object = Object::new(ctx.clone())?;
                for (key, value) in fields {
                    object.set(key.as_str(), value.to_js(ctx)?)?;
                }
                object.into_value()
            }
            Self::Array(items) => {
                let array = rquickjs::Array::new(ctx.clone())?;
                for (i, value) in items.iter().enumerate() {
                    array.set(i, value.to_js(ctx)?)?;
                }
                array.into_value()
            }
            Self::Json(text) => ctx.json_parse(text.as_str())?,
        })
    }
}

/// Appends `s` as a double-quoted JS string literal.
pub(crate) fn push_string_literal(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Why a script or expression failed; the interpreter throws `error.semantic` for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// The code threw (syntax error, reference error, undeclared assignment, ...).
    #[error("{code:?}: {message}")]
    Exception {
        /// The expression or script that failed (shortened).
        code: String,
        /// The ECMAScript error message.
        message: String,
    },
    /// The code ran past its budget (a loop that never ends?).
    #[error(
        "{code:?}: script ran past its budget of {budget} interrupt checks; look for a loop that never ends"
    )]
    BudgetExceeded {
        /// The expression or script that was stopped (shortened).
        code: String,
        /// The budget that was exhausted.
        budget: u32,
    },
    /// The session spent its script budget for the whole call (a runaway script restarted
    /// again and again?). The interpreter ends the session.
    #[error(
        "{code:?}: the session spent its script budget of {budget} interrupt checks for the whole call (vxml.call_script_budget); look for a script that never ends and a <catch> that starts it again"
    )]
    CallBudgetExceeded {
        /// The expression or script that was stopped (shortened).
        code: String,
        /// The session's budget.
        budget: u32,
    },
    /// The platform stopped the session (the call was canceled or hung up).
    #[error("{code:?}: stopped: the call is being ended")]
    Stopped {
        /// The expression or script that was stopped (shortened).
        code: String,
    },
    /// The code allocated more than the engine allows (data that grows without bound?).
    #[error(
        "{code:?}: script ran out of memory (limit {limit} bytes per session); look for data that grows without bound"
    )]
    MemoryExceeded {
        /// The expression or script that was stopped (shortened).
        code: String,
        /// The session's allowance.
        limit: usize,
    },
    /// A `<data>` document could not be made into a DOM; the interpreter throws
    /// `error.badfetch` for it.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A variable name is not an ECMAScript identifier path.
    #[error("{name:?} is not a valid variable name; use letters, digits, '_' and '$'")]
    BadName {
        /// The rejected name.
        name: String,
    },
    /// The engine could not be started.
    #[error("the ECMAScript engine could not start: {0}")]
    Engine(String),
}

/// The interpreter's view of the ECMAScript data model.
pub trait DataModel {
    /// Opens a new innermost scope of kind `scope`.
    fn push_scope(&mut self, scope: Scope) -> Result<(), ScriptError>;
    /// Closes every scope at or inside the innermost scope of kind `scope`.
    fn pop_scope(&mut self, scope: Scope);
    /// Whether a scope of this kind is open.
    fn has_scope(&self, scope: Scope) -> bool;
    /// Declares `name` in the innermost scope with the value of `expr` (undefined if `None`).
    fn declare(&mut self, name: &str, expr: Option<&str>) -> Result<(), ScriptError>;
    /// Declares `name` in the innermost scope of kind `scope` with a host value.
    fn declare_value(&mut self, scope: Scope, name: &str, value: &Value)
    -> Result<(), ScriptError>;
    /// Assigns the value of `expr` to the declared variable `name` (`a.b` paths allowed).
    fn assign(&mut self, name: &str, expr: &str) -> Result<(), ScriptError>;
    /// Assigns a host value to the declared variable `name`.
    fn assign_value(&mut self, name: &str, value: &Value) -> Result<(), ScriptError>;
    /// Evaluates `expr` and converts the result with ECMAScript `ToBoolean`.
    fn eval_bool(&mut self, expr: &str) -> Result<bool, ScriptError>;
    /// Evaluates `expr` and converts the result with ECMAScript `ToString`.
    fn eval_string(&mut self, expr: &str) -> Result<String, ScriptError>;
    /// Evaluates `expr`; `None` if the result is `undefined`, else its `ToString`.
    fn eval_optional_string(&mut self, expr: &str) -> Result<Option<String>, ScriptError>;
    /// Runs a `<script>` body; its top-level declarations land in the innermost scope.
    fn run_script(&mut self, source: &str) -> Result<(), ScriptError>;
    /// Makes the innermost scope of kind `scope` and everything in it read-only.
    fn seal_scope(&mut self, scope: Scope) -> Result<(), ScriptError>;
    /// Declares `name` in the innermost scope as a read-only DOM of the XML document `xml`
    /// (`<data name>`, VoiceXML 2.1 §5.1); malformed XML is [`ScriptError::Data`].
    fn declare_dom(&mut self, name: &str, xml: &str) -> Result<(), ScriptError>;
    /// Assigns a read-only DOM of `xml` to the declared variable `name`.
    fn assign_dom(&mut self, name: &str, xml: &str) -> Result<(), ScriptError>;
}

/// Limits of one [`QuickJs`] instance.
///
/// The stack limit is fixed ([`engine::STACK_BYTES`]).
#[derive(Debug, Clone, Copy)]
pub struct ScriptLimits {
    /// Interrupt-handler calls allowed per evaluation (about 10,000 operations each).
    pub budget: u32,
    /// Bytes the session's script context may hold, its intrinsics and bootstrap included
    /// (about 43 KiB); exact even when the runtime is shared ([`ledger`]).
    pub memory_bytes: usize,
}

/// The engine's bootstrap: scope stack helpers, read-only values and the undeclared trap.
static BOOTSTRAP: OwnScript = OwnScript::new(include_str!("script/bootstrap.js"));

/// The `<data>` DOM prototypes, evaluated on a context's first `<data>`.
static DOM: OwnScript = OwnScript::new(include_str!("script/dom.js"));

/// One of the engine's own scripts, compiled once per process (by the first context that runs
/// it) and run in each context from its bytecode, which keeps no source text or line tables
/// (see [`bytecode`]).
struct OwnScript {
    source: &'static str,
    code: std::sync::OnceLock<Bytecode>,
}

impl OwnScript {
    const fn new(source: &'static str) -> Self {
        Self {
            source,
            code: std::sync::OnceLock::new(),
        }
    }

    /// Runs the script in `ctx`, compiling it first if no context has yet.
    fn run(&self, ctx: &Ctx<'_>) -> rquickjs::Result<()> {
        if let Some(code) = self.code.get() {
            return code.run(ctx);
        }
        // A compilation that fails (a session's memory limit) is not kept: the next tries again.
        let code = Bytecode::compile(ctx, &compact_js(self.source))?;
        self.code.get_or_init(|| code).run(ctx)
    }
}

/// Drops comment lines and indentation from our own JS sources before they are compiled (less
/// to parse). Only for sources without multi-line string or template literals.
fn compact_js(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    for line in source.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Compiled expressions a context keeps; the least recently used makes way. Each costs about
/// 0.8 KiB of the session's memory (bytecode, source text, function object), so few are kept:
/// enough for the conditions the FIA re-evaluates on every pass (`docs/benchmarks.md`).
pub const CACHED_FUNCTIONS: usize = 4;

/// What a compiled evaluation does with its expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `!!(expr)`.
    Bool,
    /// `String((expr))`.
    String,
    /// The value itself.
    Value,
}

/// One compiled evaluation: its key and when it was last used.
#[derive(Debug)]
struct Compiled {
    form: Form,
    depth: usize,
    expr: Box<str>,
    last_used: u64,
}

/// Which compiled evaluation each index of the context's `__vxml.fns` holds.
#[derive(Debug, Default)]
struct FunctionCache {
    entries: Vec<Compiled>,
    clock: u64,
}

impl FunctionCache {
    /// The index of the function for this key, if compiled; marks it used.
    fn find(&mut self, form: Form, depth: usize, expr: &str) -> Option<usize> {
        let i = self
            .entries
            .iter()
            .position(|c| c.form == form && c.depth == depth && *c.expr == *expr)?;
        self.clock += 1;
        if let Some(entry) = self.entries.get_mut(i) {
            entry.last_used = self.clock;
        }
        Some(i)
    }

    /// The index a new function goes to: a free one, else the least recently used.
    fn vacancy(&self) -> usize {
        if self.entries.len() < CACHED_FUNCTIONS {
            return self.entries.len();
        }
        self.entries
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.last_used)
            .map_or(0, |(i, _)| i)
    }

    /// Records that index `i` (from [`Self::vacancy`]) now holds this key's function.
    fn store(&mut self, i: usize, form: Form, depth: usize, expr: &str) {
        self.clock += 1;
        let entry = Compiled {
            form,
            depth,
            expr: expr.into(),
            last_used: self.clock,
        };
        match self.entries.get_mut(i) {
            Some(slot) => *slot = entry,
            None => self.entries.push(entry),
        }
    }
}

/// The source of a function evaluating `expr` in `form` inside the first `depth` scopes.
fn function_source(form: Form, depth: usize, expr: &str) -> String {
    let expr = guard_typeof(expr);
    let mut source = String::with_capacity(48 + 16 * depth + expr.len());
    source.push_str("(function(){");
    for i in 0..depth {
        source.push_str("with(__vxml.s[");
        source.push_str(&i.to_string());
        source.push_str("])");
    }
    source.push_str(match form {
        Form::Bool => "{return !!(",
        Form::String => "{return String((",
        Form::Value => "{return (",
    });
    source.push_str(&expr);
    // A newline first, so that a trailing `//` comment in the expression ends there.
    source.push_str(if form == Form::String {
        "\n))}})"
    } else {
        "\n)}})"
    });
    source
}

/// Evaluates `expr` in `form` inside the first `depth` scopes, compiling it on first use; a
/// plain name path (`x`, `dialog.x`) is read without compiling anything.
fn evaluate<'js>(
    ctx: &Ctx<'js>,
    api: &Object<'js>,
    cache: &mut FunctionCache,
    form: Form,
    depth: usize,
    expr: &str,
) -> rquickjs::Result<rquickjs::Value<'js>> {
    let path = expr.trim();
    // The keyword literals need no function (and no memory: `x = null` still works in a
    // session that has run out of it).
    let literal = match path {
        "null" => Some(rquickjs::Value::new_null(ctx.clone())),
        "true" => Some(rquickjs::Value::new_bool(ctx.clone(), true)),
        "false" => Some(rquickjs::Value::new_bool(ctx.clone(), false)),
        _ => None,
    };
    if let Some(value) = literal {
        return match form {
            Form::Value => Ok(value),
            Form::Bool => Ok(rquickjs::Value::new_bool(ctx.clone(), path == "true")),
            Form::String => Ok(rquickjs::String::from_str(ctx.clone(), path)?.into_value()),
        };
    }
    if is_readable_path(path) {
        let value: rquickjs::Value<'js> = api.get::<_, Function<'js>>("read")?.call((path,))?;
        return match form {
            Form::Value => Ok(value),
            Form::Bool => {
                let truth = value.get::<Coerced<bool>>()?.0;
                Ok(rquickjs::Value::new_bool(ctx.clone(), truth))
            }
            Form::String => Ok(value
                .get::<Coerced<rquickjs::String<'js>>>()?
                .0
                .into_value()),
        };
    }
    let functions: rquickjs::Array<'js> = api.get("fns")?;
    let index = match cache.find(form, depth, expr) {
        Some(index) => index,
        None => {
            let mut options = EvalOptions::default();
            options.strict = false;
            let function: Function<'js> =
                ctx.eval_with_options(function_source(form, depth, expr), options)?;
            let index = cache.vacancy();
            functions.set(index, function)?;
            cache.store(index, form, depth, expr);
            index
        }
    };
    functions.get::<Function<'js>>(index)?.call(())
}

/// Words that are not variable names though shaped like one.
#[rustfmt::skip]
const RESERVED: &[&str] = &[
    "await", "break", "case", "catch", "class", "const", "continue", "debugger", "default",
    "delete", "do", "else", "enum", "export", "extends", "false", "finally", "for", "function",
    "if", "import", "in", "instanceof", "let", "new", "null", "return", "super", "switch",
    "this", "throw", "true", "try", "typeof", "var", "void", "while", "with", "yield",
];

/// Whether `expr` is a name path `__vxml.read` can resolve as the expression would.
fn is_readable_path(expr: &str) -> bool {
    is_name_path(expr)
        && expr
            .split('.')
            .next()
            .is_some_and(|head| !RESERVED.contains(&head) && head != "arguments")
}

/// A session's account in its runtime, closed when dropped (after the context it outlives).
struct Lease {
    engine: ScriptEngine,
    owner: Owner,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.engine.release(self.owner);
    }
}

/// The rquickjs data model: one context per session, in a runtime shared with up to
/// [`engine::CONTEXTS_PER_RUNTIME`] sessions of its thread (see [`engine`]).
pub struct QuickJs {
    /// Dropped (in [`Drop`], in its turn at the runtime) before `lease`, so the context's
    /// frees are credited to the session. `None` only while being dropped.
    context: Option<Context>,
    lease: Lease,
    kinds: Vec<Scope>,
    limits: ScriptLimits,
    /// Whether `dom.js` has run in this context.
    dom_ready: bool,
    compiled: FunctionCache,
    /// The session's script work across the call, and its stop flag.
    meter: Meter,
}

impl Drop for QuickJs {
    fn drop(&mut self) {
        // Freeing a context locks the runtime: wait for our turn like an evaluation.
        let _turn = self.lease.engine.turn(false);
        self.context.take();
    }
}

impl std::fmt::Debug for QuickJs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickJs")
            .field("scopes", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl QuickJs {
    /// Starts a context with an empty scope stack in a runtime of this thread's pool.
    pub fn new(limits: ScriptLimits) -> Result<Self, ScriptError> {
        Self::in_engine(&ScriptEngine::for_this_thread()?, limits)
    }

    /// Starts a context with an empty scope stack in `engine`'s runtime.
    pub fn in_engine(engine: &ScriptEngine, limits: ScriptLimits) -> Result<Self, ScriptError> {
        let (context, owner) = engine.context(limits.memory_bytes)?;
        let mut model = Self {
            context: Some(context),
            lease: Lease {
                engine: engine.clone(),
                owner,
            },
            kinds: Vec::new(),
            limits,
            dom_ready: false,
            compiled: FunctionCache::default(),
            meter: Meter::unlimited(),
        };
        model.with_api("bootstrap", |ctx, _, _| BOOTSTRAP.run(ctx))?;
        Ok(model)
    }

    /// Draws this context's script work from `meter` from now on (a session's budget for the
    /// whole call; see [`meter`]).
    pub fn set_meter(&mut self, meter: Meter) {
        self.meter = meter;
    }

    /// The meter this context's script work is drawn from.
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// What this session's scripts hold in its runtime now.
    pub fn memory(&self) -> SessionMemory {
        self.lease.engine.session_memory(self.lease.owner)
    }

    /// The `with(...)` prefix opening every scope on the stack.
    fn with_prefix(&self) -> String {
        let mut prefix = String::with_capacity(20 * self.kinds.len());
        for i in 0..self.kinds.len() {
            prefix.push_str("with(__vxml.s[");
            prefix.push_str(&i.to_string());
            prefix.push_str("])");
        }
        prefix
    }

    /// Evaluates `expr` in `form` inside the scope chain, converting with `convert`.
    fn eval_in_scope<T>(
        &mut self,
        expr: &str,
        form: Form,
        convert: impl for<'js> FnOnce(rquickjs::Value<'js>) -> rquickjs::Result<T>,
    ) -> Result<T, ScriptError> {
        let depth = self.kinds.len();
        self.with_api(expr, |ctx, api, cache| {
            evaluate(ctx, api, cache, form, depth, expr).and_then(convert)
        })
    }

    /// Runs source with no scope chain, discarding the result.
    fn exec(&mut self, source: &str, label: &str) -> Result<(), ScriptError> {
        self.run(source, label, |_| Ok(()))
    }

    /// Evaluates `source` in sloppy global code with a fresh budget.
    fn run<T>(
        &mut self,
        source: &str,
        label: &str,
        convert: impl for<'js> FnOnce(rquickjs::Value<'js>) -> rquickjs::Result<T>,
    ) -> Result<T, ScriptError> {
        self.with_api(label, |ctx, _, _| {
            let mut options = EvalOptions::default();
            options.strict = false;
            ctx.eval_with_options::<rquickjs::Value<'_>, _>(source, options)
                .and_then(convert)
        })
    }

    /// Calls `__vxml[name](args...)`.
    fn call_api<A>(&mut self, name: &str, args: A, label: &str) -> Result<(), ScriptError>
    where
        A: for<'js> rquickjs::function::IntoArgs<'js>,
    {
        self.with_api(label, |_, api, _| {
            api.get::<_, Function<'_>>(name)
                .and_then(|f| f.call::<_, ()>(args))
        })
    }

    /// Runs `f` with the runtime locked, the session charged for what it allocates, the budget
    /// armed and the `__vxml` object at hand; maps a failure to the [`ScriptError`] that
    /// explains it.
    fn with_api<T>(
        &mut self,
        label: &str,
        f: impl for<'js> FnOnce(&Ctx<'js>, &Object<'js>, &mut FunctionCache) -> rquickjs::Result<T>,
    ) -> Result<T, ScriptError> {
        let Self {
            context,
            lease,
            limits,
            compiled,
            meter,
            ..
        } = self;
        let (engine, owner, limits) = (&lease.engine, lease.owner, *limits);
        if meter.stopped() {
            return Err(ScriptError::Stopped {
                code: shorten(label),
            });
        }
        if meter.exhausted() {
            return Err(ScriptError::CallBudgetExceeded {
                code: shorten(label),
                budget: meter.budget(),
            });
        }
        let Some(context) = context.as_ref() else {
            return Err(ScriptError::Engine("the script context is gone".to_owned()));
        };
        // Our turn at the runtime first (a session that spent a whole evaluation's budget
        // already waits for the others), then its lock.
        let _turn = engine.turn(meter.spent() >= limits.budget);
        context.with(|ctx| {
            let _charge = engine.charge_to(owner);
            engine.arm(limits.budget, meter);
            let result = ctx
                .globals()
                .get::<_, Object<'_>>("__vxml")
                .or_else(|_| Object::new(ctx.clone()))
                .and_then(|api| f(&ctx, &api, compiled));
            result.map_err(|error| {
                if meter.stopped() {
                    let _ = ctx.catch();
                    return ScriptError::Stopped {
                        code: shorten(label),
                    };
                }
                if meter.exhausted() {
                    let _ = ctx.catch();
                    return ScriptError::CallBudgetExceeded {
                        code: shorten(label),
                        budget: meter.budget(),
                    };
                }
                if engine.budget_spent() {
                    // Clear the pending uncatchable exception before reporting.
                    let _ = ctx.catch();
                    return ScriptError::BudgetExceeded {
                        code: shorten(label),
                        budget: limits.budget,
                    };
                }
                // From the accounting, not the message: QuickJS may fail to build its
                // out-of-memory error, or the script may catch it and throw something else.
                if engine.refused(owner) {
                    let _ = ctx.catch();
                    return ScriptError::MemoryExceeded {
                        code: shorten(label),
                        limit: limits.memory_bytes,
                    };
                }
                ScriptError::Exception {
                    code: shorten(label),
                    message: exception_message(&ctx, error),
                }
            })
        })
    }

    /// Builds the DOM of `xml` and leaves it in `__vxml.pending` for an assignment to pick up.
    fn stage_dom(&mut self, xml: &str) -> Result<(), ScriptError> {
        if !self.dom_ready {
            self.with_api("<data> DOM", |ctx, _, _| DOM.run(ctx))?;
            self.dom_ready = true;
        }
        dom::parse(xml, |nodes| {
            self.with_api("<data>", |ctx, api, _| {
                let flat = rquickjs::Array::new(ctx.clone())?;
                let mut slot = 0usize;
                for node in nodes {
                    let parent = node.parent.map_or(-1.0, f64::from);
                    flat.set(slot, node.kind as i32)?;
                    for (i, text) in [node.name, node.namespace, node.local, node.value]
                        .into_iter()
                        .enumerate()
                    {
                        flat.set(slot + 1 + i, text)?;
                    }
                    flat.set(slot + 5, parent)?;
                    slot += 6;
                }
                let document: rquickjs::Value<'_> =
                    api.get::<_, Function<'_>>("dom")?.call((flat,))?;
                api.set("pending", document)
            })
        })?
    }
}

/// The message of the pending exception, or of a non-exception error.
fn exception_message(ctx: &Ctx<'_>, error: rquickjs::Error) -> String {
    if !error.is_exception() {
        return error.to_string();
    }
    let thrown = ctx.catch();
    if let Some(exception) = thrown.as_exception() {
        let message = exception.message().unwrap_or_default();
        let name: Option<String> = exception.get("name").ok();
        return match name {
            Some(name) if !name.is_empty() => format!("{name}: {message}"),
            _ => message,
        };
    }
    thrown
        .get::<Coerced<String>>()
        .map_or_else(|_| "an exception was thrown".to_owned(), |s| s.0)
}

/// At most 60 characters of code for error messages.
fn shorten(code: &str) -> String {
    let code = code.trim();
    match code.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &code[..i]),
        None => code.to_owned(),
    }
}

/// Rewrites `typeof NAME` (and `typeof(NAME)`) to `typeof __vxml.probe(()=>NAME)` outside
/// string literals and comments, so that `typeof` of an undeclared name stays `"undefined"`
/// while a plain read of it throws. quickjs reads globals through a prototype proxy's `get`
/// without asking `has`, so the trap cannot tell the two apart by itself. Regular expression
/// literals are not recognised; a `typeof` inside one is rewritten too (harmlessly rare).
pub(crate) fn guard_typeof(source: &str) -> std::borrow::Cow<'_, str> {
    if !source.contains("typeof") {
        return std::borrow::Cow::Borrowed(source);
    }
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len() + 32);
    let mut i = 0;
    let mut copied = 0;
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$';
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\'' | b'"' | b'`' => {
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    i += 1;
                    if c == b'\\' {
                        i += 1;
                    } else if c == b {
                        break;
                    }
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while bytes.get(i).is_some()
                    && !(bytes.get(i) == Some(&b'*') && bytes.get(i + 1) == Some(&b'/'))
                {
                    i += 1;
                }
                i += 2;
            }
            _ if is_ident(b) => {
                let start = i;
                while bytes.get(i).copied().is_some_and(is_ident) {
                    i += 1;
                }
                let preceded_by_dot = start > 0 && bytes.get(start - 1) == Some(&b'.');
                if source.get(start..i) != Some("typeof") || preceded_by_dot {
                    continue;
                }
                // Skip spaces and one optional '(' to the operand.
                let mut j = i;
                while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
                    j += 1;
                }
                if bytes.get(j) == Some(&b'(') {
                    j += 1;
                    while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
                        j += 1;
                    }
                }
                let name_start = j;
                while bytes.get(j).copied().is_some_and(is_ident) {
                    j += 1;
                }
                let name = source.get(name_start..j).unwrap_or_default();
                let next = bytes[j..].iter().find(|c| !c.is_ascii_whitespace());
                // Only a lone identifier: `typeof a.b` or `typeof f()` already behave.
                if is_identifier(name) && !matches!(next, Some(b'.' | b'(' | b'[')) {
                    out.push_str(source.get(copied..name_start).unwrap_or_default());
                    out.push_str("__vxml.probe(()=>");
                    out.push_str(name);
                    out.push(')');
                    copied = j;
                }
                i = j.max(i);
            }
            _ => i += 1,
        }
    }
    out.push_str(source.get(copied..).unwrap_or_default());
    std::borrow::Cow::Owned(out)
}

/// Whether `name` is an identifier path such as `x`, `dialog.x` or `name$.utterance`.
fn is_name_path(name: &str) -> bool {
    !name.is_empty() && name.split('.').all(is_identifier)
}

/// Whether `name` is a plain ECMAScript identifier (ASCII subset).
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

impl DataModel for QuickJs {
    fn push_scope(&mut self, scope: Scope) -> Result<(), ScriptError> {
        let kind = scope as u32;
        match scope.name() {
            Some(name) => self.call_api("push", (kind, name), "push scope")?,
            None => self.call_api("push", (kind,), "push scope")?,
        }
        self.kinds.push(scope);
        Ok(())
    }

    fn pop_scope(&mut self, scope: Scope) {
        if let Some(i) = self.kinds.iter().rposition(|k| *k == scope) {
            // The JS side mirrors `kinds`; a failure here leaves both stacks as they were.
            if self.call_api("pop", (scope as u32,), "pop scope").is_ok() {
                self.kinds.truncate(i);
            }
        }
    }

    fn has_scope(&self, scope: Scope) -> bool {
        self.kinds.contains(&scope)
    }

    fn declare(&mut self, name: &str, expr: Option<&str>) -> Result<(), ScriptError> {
        if !is_identifier(name) {
            return Err(ScriptError::BadName {
                name: name.to_owned(),
            });
        }
        let Some(&top) = self.kinds.last() else {
            return Err(ScriptError::Engine("no scope is open".to_owned()));
        };
        let expr = expr.unwrap_or("undefined");
        let depth = self.kinds.len();
        self.with_api(expr, |ctx, api, cache| {
            let value = evaluate(ctx, api, cache, Form::Value, depth, expr)?;
            api.get::<_, Function<'_>>("declareIn")?
                .call::<_, ()>((top as u32, name, value))
        })
    }

    fn declare_value(
        &mut self,
        scope: Scope,
        name: &str,
        value: &Value,
    ) -> Result<(), ScriptError> {
        if !is_identifier(name) {
            return Err(ScriptError::BadName {
                name: name.to_owned(),
            });
        }
        self.with_api(name, |ctx, api, _| {
            api.get::<_, Function<'_>>("declareIn")?.call::<_, ()>((
                scope as u32,
                name,
                value.to_js(ctx)?,
            ))
        })
    }

    fn assign(&mut self, name: &str, expr: &str) -> Result<(), ScriptError> {
        if !is_name_path(name) {
            return Err(ScriptError::BadName {
                name: name.to_owned(),
            });
        }
        let depth = self.kinds.len();
        self.with_api(expr, |ctx, api, cache| {
            let value = evaluate(ctx, api, cache, Form::Value, depth, expr)?;
            api.get::<_, Function<'_>>("assignIn")?
                .call::<_, ()>((name, value))
        })
    }

    fn assign_value(&mut self, name: &str, value: &Value) -> Result<(), ScriptError> {
        if is_identifier(name) && name.ends_with('$') {
            // A platform-owned variable: replaced, not assigned through its read-only guard.
            return self.with_api(name, |ctx, api, _| {
                api.get::<_, Function<'_>>("hostAssign")?
                    .call::<_, ()>((name, value.to_js(ctx)?))
            });
        }
        if !is_name_path(name) {
            return Err(ScriptError::BadName {
                name: name.to_owned(),
            });
        }
        self.with_api(name, |ctx, api, _| {
            api.get::<_, Function<'_>>("assignIn")?
                .call::<_, ()>((name, value.to_js(ctx)?))
        })
    }

    fn eval_bool(&mut self, expr: &str) -> Result<bool, ScriptError> {
        self.eval_in_scope(expr, Form::Bool, |v| Ok(v.as_bool().unwrap_or(false)))
    }

    fn eval_string(&mut self, expr: &str) -> Result<String, ScriptError> {
        self.eval_in_scope(expr, Form::String, |v| {
            v.get::<Coerced<String>>().map(|s| s.0)
        })
    }

    fn eval_optional_string(&mut self, expr: &str) -> Result<Option<String>, ScriptError> {
        self.eval_in_scope(expr, Form::Value, |v| {
            if v.is_undefined() {
                Ok(None)
            } else {
                v.get::<Coerced<String>>().map(|s| Some(s.0))
            }
        })
    }

    fn seal_scope(&mut self, scope: Scope) -> Result<(), ScriptError> {
        self.call_api("seal", (scope as u32,), "seal scope")
    }

    fn declare_dom(&mut self, name: &str, xml: &str) -> Result<(), ScriptError> {
        if !is_identifier(name) {
            return Err(ScriptError::BadName {
                name: name.to_owned(),
            });
        }
        self.stage_dom(xml)?;
        let result = self.declare(name, Some("__vxml.pending"));
        let _ = self.exec("__vxml.pending = undefined", "<data>");
        result
    }

    fn assign_dom(&mut self, name: &str, xml: &str) -> Result<(), ScriptError> {
        if !is_name_path(name) {
            return Err(ScriptError::BadName {
                name: name.to_owned(),
            });
        }
        self.stage_dom(xml)?;
        let result = self.assign(name, "__vxml.pending");
        let _ = self.exec("__vxml.pending = undefined", "<data>");
        result
    }

    fn run_script(&mut self, source: &str) -> Result<(), ScriptError> {
        // A direct, sloppy `eval` at global level: the script sees the scope chain. Its
        // `var`/`function` declarations exist as (deletable) globals before its first statement,
        // which is `hoist`: it moves them onto the innermost scope object, so the script's own
        // statements then read and assign them there.
        let mut code = String::from("__vxml.before=__vxml.snapshot();");
        code.push_str(&self.with_prefix());
        code.push_str("{eval(");
        let mut body = String::from("__vxml.hoist(__vxml.before);");
        body.push_str(&guard_typeof(source));
        push_string_literal(&mut code, &body);
        code.push_str(")}__vxml.hoist(__vxml.before);");
        let result = self.run(&code, source, |_| Ok(()));
        if result.is_err() {
            // Globals a failed script created (a nested `eval`, say) still move off the global object.
            let _ = self.exec("__vxml.hoist(__vxml.before);", "hoist");
        }
        result
    }
}

// --- added for the FIA ---

impl QuickJs {
    /// Starts a new execution context (a `<subdialog>`, VoiceXML 2.0 §2.3.4): every scope but
    /// the outermost (`session`) is set aside until [`QuickJs::leave_context`].
    pub(crate) fn enter_context(&mut self) -> Result<(), ScriptError> {
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .skip(1)
            .map(|k| (*k as u32).to_string())
            .collect();
        let source = format!(
            "(__vxml.saved = __vxml.saved || []).push({{o: __vxml.s.slice(1), k: \"{}\"}});",
            kinds.join(",")
        );
        self.exec(&source, "enter context")?;
        self.truncate_to_outermost();
        Ok(())
    }

    /// Ends the innermost execution context and restores the caller's scopes.
    pub(crate) fn leave_context(&mut self) {
        self.truncate_to_outermost();
        let kinds = self
            .run(
                "(__vxml.saved && __vxml.saved.length) ? __vxml.saved[__vxml.saved.length-1].k : ''",
                "leave context",
                |v| v.get::<Coerced<String>>().map(|s| s.0),
            )
            .unwrap_or_default();
        let all = [
            Scope::Session,
            Scope::Application,
            Scope::Document,
            Scope::Dialog,
            Scope::Anonymous,
        ];
        for (i, code) in kinds.split(',').filter(|k| !k.is_empty()).enumerate() {
            let Some(kind) = code.parse::<usize>().ok().and_then(|n| all.get(n).copied()) else {
                break;
            };
            if self.push_scope(kind).is_err() {
                break;
            }
            let source = format!(
                "__vxml.s[__vxml.s.length-1] = __vxml.saved[__vxml.saved.length-1].o[{i}];"
            );
            let _ = self.exec(&source, "restore scope");
        }
        let _ = self.exec("if (__vxml.saved) __vxml.saved.pop();", "leave context");
    }

    /// Evaluates `program` (an expression, e.g. an SISR program) at global level, outside
    /// every variable scope, and returns its value as JSON text (`None` for `undefined` or a
    /// value JSON cannot express).
    pub(crate) fn eval_isolated_json(
        &mut self,
        program: &str,
    ) -> Result<Option<String>, ScriptError> {
        let source = format!("JSON.stringify((\n{}\n))", guard_typeof(program));
        self.run(&source, program, |v| {
            if v.is_undefined() {
                Ok(None)
            } else {
                v.get::<Coerced<String>>().map(|s| Some(s.0))
            }
        })
    }

    /// Closes every scope but the outermost.
    fn truncate_to_outermost(&mut self) {
        while self.kinds.len() > 1 {
            let before = self.kinds.len();
            if let Some(&kind) = self.kinds.last() {
                self.pop_scope(kind);
            }
            if self.kinds.len() == before {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> QuickJs {
        let mut js = QuickJs::new(ScriptLimits {
            budget: 50,
            memory_bytes: 1 << 20,
        })
        .unwrap();
        for scope in [
            Scope::Session,
            Scope::Application,
            Scope::Document,
            Scope::Dialog,
        ] {
            js.push_scope(scope).unwrap();
        }
        js
    }

    #[test]
    fn assignment_updates_the_declaring_scope_not_the_innermost() {
        let mut js = model();
        js.pop_scope(Scope::Dialog);
        js.declare("x", Some("1")).unwrap(); // document scope
        js.push_scope(Scope::Dialog).unwrap();
        js.push_scope(Scope::Anonymous).unwrap();
        js.assign("x", "x + 41").unwrap();
        js.pop_scope(Scope::Anonymous);
        assert_eq!(js.eval_string("document.x").unwrap(), "42");
        assert_eq!(js.eval_string("typeof dialog.x").unwrap(), "undefined");
    }

    #[test]
    fn inner_declaration_shadows_and_disappears_with_its_scope() {
        let mut js = model();
        js.declare("x", Some("'dialog'")).unwrap();
        js.push_scope(Scope::Anonymous).unwrap();
        js.declare("x", Some("'anon'")).unwrap();
        assert_eq!(js.eval_string("x").unwrap(), "anon");
        js.pop_scope(Scope::Anonymous);
        assert_eq!(js.eval_string("x").unwrap(), "dialog");
    }

    #[test]
    fn assignment_to_undeclared_variable_fails_and_creates_nothing() {
        let mut js = model();
        let error = js.assign("nope", "1").unwrap_err();
        assert!(error.to_string().contains("undeclared"), "{error}");
        let error = js.run_script("y = 5;").unwrap_err();
        assert!(error.to_string().contains("undeclared"), "{error}");
        assert_eq!(
            js.eval_string("typeof nope + typeof y").unwrap(),
            "undefinedundefined"
        );
        assert!(
            js.eval_string("nope").is_err(),
            "reading undeclared must throw"
        );
        assert!(js.eval_bool("typeof(nope) == 'undefined'").unwrap());
        assert!(js.eval_bool("typeof nope.x === 'undefined'").is_err());
    }

    #[test]
    fn script_declarations_land_in_the_current_scope() {
        let mut js = model();
        js.declare("base", Some("10")).unwrap();
        js.run_script("var z = base + 1; function twice(n) { return 2 * n; }")
            .unwrap();
        assert_eq!(js.eval_string("dialog.z").unwrap(), "11");
        assert_eq!(js.eval_string("twice(z)").unwrap(), "22");
        assert!(
            !js.eval_bool("Object.getOwnPropertyNames(globalThis).includes('z')")
                .unwrap()
        );
        js.pop_scope(Scope::Dialog);
        assert_eq!(js.eval_string("typeof z").unwrap(), "undefined");
    }

    #[test]
    fn runaway_code_is_stopped_and_the_engine_stays_usable() {
        let mut js = model();
        let error = js.eval_string("(function(){while(true){}})()").unwrap_err();
        assert!(
            matches!(error, ScriptError::BudgetExceeded { .. }),
            "{error}"
        );
        let error = js.run_script("for(;;){}").unwrap_err();
        assert!(
            matches!(error, ScriptError::BudgetExceeded { .. }),
            "{error}"
        );
        assert_eq!(js.eval_string("1 + 1").unwrap(), "2");
    }

    #[test]
    fn unbounded_allocation_and_recursion_are_errors_and_the_engine_stays_usable() {
        let mut js = model();
        let error = js
            .run_script(
                "var big = []; while (true) big.push(new Array(10000).join('x') + big.length);",
            )
            .unwrap_err();
        assert!(
            matches!(error, ScriptError::MemoryExceeded { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("grows without bound"), "{error}");
        js.assign("big", "null").unwrap();
        let error = js
            .eval_string("(function deep(n) { return deep(n + 1) + 1; })(0)")
            .unwrap_err();
        assert!(
            matches!(&error, ScriptError::Exception { message, .. } if message.contains("stack")),
            "{error}"
        );
        assert_eq!(js.eval_string("'ok'").unwrap(), "ok");
    }

    #[test]
    fn running_out_of_memory_is_told_by_the_accounting_even_when_the_script_masks_it() {
        let mut js = model();
        let grow =
            "var a = []; try { while (true) a.push(new Array(10000).join('x') + a.length); }";
        let error = js
            .run_script(&format!(
                "{grow} catch (e) {{ a = null; throw new Error('masked'); }}"
            ))
            .unwrap_err();
        assert!(
            matches!(error, ScriptError::MemoryExceeded { .. }),
            "{error}"
        );
        // A later failure of another kind is not blamed on memory.
        let error = js.eval_string("missing").unwrap_err();
        assert!(matches!(error, ScriptError::Exception { .. }), "{error}");
        // A script that handles running out itself carries on.
        js.run_script(&format!("{grow} catch (e) {{ a = 'recovered'; }}"))
            .unwrap();
        assert_eq!(js.eval_string("a").unwrap(), "recovered");
    }

    #[test]
    fn compiled_expressions_are_reused_follow_the_scope_stack_and_make_way() {
        let mut js = model();
        js.declare("x", Some("1")).unwrap();
        assert_eq!(js.eval_string("x + 1").unwrap(), "2");
        js.assign("x", "x + 1").unwrap();
        let compiled = js.compiled.entries.len();
        assert_eq!(js.eval_string("x + 1").unwrap(), "3");
        assert_eq!(js.compiled.entries.len(), compiled, "compiled once");
        // The same depth with new scope objects: the function reads the current ones.
        js.pop_scope(Scope::Dialog);
        js.push_scope(Scope::Dialog).unwrap();
        js.declare("x", Some("10")).unwrap();
        assert_eq!(js.eval_string("x + 1").unwrap(), "11");
        js.push_scope(Scope::Anonymous).unwrap();
        js.declare("x", Some("100")).unwrap();
        assert_eq!(js.eval_string("x + 1").unwrap(), "101");
        js.pop_scope(Scope::Anonymous);
        assert_eq!(js.eval_string("x + 1").unwrap(), "11");
        // More distinct expressions than the cache holds: the least recently used make way.
        for i in 0..2 * CACHED_FUNCTIONS {
            let expr = format!("x + {i}");
            assert_eq!(js.eval_string(&expr).unwrap(), (10 + i).to_string());
            if i % 2 == 0 {
                assert_eq!(js.eval_string("x * 2").unwrap(), "20");
            }
        }
        assert_eq!(js.compiled.entries.len(), CACHED_FUNCTIONS);
        assert!(
            js.compiled.entries.iter().any(|c| &*c.expr == "x * 2"),
            "a frequently used expression stays"
        );
        assert_eq!(js.eval_string("x + 1").unwrap(), "11");
        js.assign_value("x", &Value::String("s".to_owned()))
            .unwrap();
        js.assign_value("x", &Value::Number(5.0)).unwrap();
        assert_eq!(js.eval_string("x + 1").unwrap(), "6");
    }

    #[test]
    fn assignments_by_name_path_behave_as_sloppy_code_would() {
        let mut js = model();
        js.declare("s", Some("'abc'")).unwrap();
        js.declare("o", Some("Object.freeze({a: 1})")).unwrap();
        js.declare("u", None).unwrap();
        // Writes sloppy code drops silently are dropped, not thrown.
        js.assign("s.length", "5").unwrap();
        js.assign("o.a", "2").unwrap();
        assert_eq!(js.eval_string("s.length + ',' + o.a").unwrap(), "3,1");
        let error = js.assign("u.x", "1").unwrap_err();
        assert!(error.to_string().contains("cannot set"), "{error}");
        // A global the application did not declare is assignable as in a `with` chain.
        js.assign("NaN", "1").unwrap();
        assert!(js.eval_bool("isNaN(NaN)").unwrap());
        js.assign_value("dialog.s", &Value::String("d".to_owned()))
            .unwrap();
        assert_eq!(js.eval_string("s").unwrap(), "d");
    }

    #[test]
    fn host_values_round_trip() {
        let mut js = model();
        js.declare_value(
            Scope::Session,
            "caller",
            &Value::Json(r#"{"name":"Ann \"A\"","n":[1,2]}"#.to_owned()),
        )
        .unwrap();
        js.declare_value(
            Scope::Application,
            "lastresult$",
            &Value::Array(vec![Value::Object(vec![
                ("utterance".to_owned(), Value::String("1\n2".to_owned())),
                ("confidence".to_owned(), Value::Number(1.0)),
            ])]),
        )
        .unwrap();
        assert_eq!(js.eval_string("caller.name").unwrap(), "Ann \"A\"");
        assert_eq!(js.eval_string("session.caller.n[1]").unwrap(), "2");
        assert_eq!(
            js.eval_string("application.lastresult$[0].utterance")
                .unwrap(),
            "1\n2"
        );
        assert!(js.eval_bool("lastresult$[0].confidence === 1").unwrap());
        assert_eq!(js.eval_optional_string("undefined").unwrap(), None);
    }

    #[test]
    fn typeof_guard_rewrites_only_lone_identifiers_in_code() {
        assert_eq!(
            guard_typeof("typeof x == 'u'"),
            "typeof __vxml.probe(()=>x) == 'u'"
        );
        assert_eq!(guard_typeof("typeof( x )"), "typeof( __vxml.probe(()=>x) )");
        assert_eq!(
            guard_typeof("typeof a.b + typeof f()"),
            "typeof a.b + typeof f()"
        );
        assert_eq!(
            guard_typeof("'typeof x' // typeof y"),
            "'typeof x' // typeof y"
        );
        assert_eq!(guard_typeof("o.typeof x"), "o.typeof x");
        assert_eq!(guard_typeof("mytypeof x"), "mytypeof x");
        assert_eq!(
            guard_typeof("\"a\\\"typeof z\" + typeof"),
            "\"a\\\"typeof z\" + typeof"
        );
    }

    #[test]
    fn sealed_session_scope_is_read_only() {
        let mut js = model();
        js.pop_scope(Scope::Application);
        js.declare_value(
            Scope::Session,
            "connection",
            &Value::Json(r#"{"protocol":{"name":"sip"},"aai":[1]}"#.to_owned()),
        )
        .unwrap();
        js.seal_scope(Scope::Session).unwrap();
        js.push_scope(Scope::Application).unwrap();
        for (name, expr) in [
            ("session.connection.protocol.name", "'x'"),
            ("connection.protocol", "1"),
            ("connection", "1"),
            ("session.extra", "1"),
            ("session.session.connection.aai", "[]"),
        ] {
            let error = js
                .assign(name, expr)
                .map(|()| js.eval_string(name))
                .expect_err(name);
            assert!(error.to_string().contains("read-only"), "{name}: {error}");
        }
        for script in [
            "delete session.connection",
            "session.connection.aai.push(2)",
            "Object.defineProperty(session.connection, 'p', {value: 1})",
        ] {
            assert!(js.run_script(script).is_err(), "{script} must fail");
        }
        assert_eq!(js.eval_string("connection.protocol.name").unwrap(), "sip");
        assert_eq!(
            js.eval_string("session.connection.aai.length").unwrap(),
            "1"
        );
        assert!(
            js.eval_bool("Array.isArray(session.connection.aai)")
                .unwrap()
        );
        assert_eq!(
            js.eval_string("JSON.stringify(session.connection)")
                .unwrap(),
            r#"{"protocol":{"name":"sip"},"aai":[1]}"#
        );
    }

    #[test]
    fn shadow_variables_and_lastresult_are_set_by_the_host_only() {
        let mut js = model();
        js.declare("pin", None).unwrap();
        js.declare("pin$", None).unwrap();
        let result = || {
            Value::Object(vec![
                ("utterance".to_owned(), Value::String("1 2".to_owned())),
                ("confidence".to_owned(), Value::Number(0.5)),
            ])
        };
        js.assign_value("pin", &Value::String("12".to_owned()))
            .unwrap();
        js.assign_value("pin$", &result()).unwrap();
        js.declare_value(
            Scope::Application,
            "lastresult$",
            &Value::Array(vec![result()]),
        )
        .unwrap();
        assert_eq!(js.eval_string("pin$.utterance").unwrap(), "1 2");
        assert_eq!(
            js.eval_string("application.lastresult$.confidence")
                .unwrap(),
            "0.5",
            "lastresult$ carries the properties of lastresult$[0]"
        );
        for (name, expr) in [
            ("pin$", "1"),
            ("pin$.utterance", "'9'"),
            ("application.lastresult$", "[]"),
            ("lastresult$[0].confidence", "1"),
        ] {
            assert!(js.assign(name, expr).is_err(), "{name} must be read-only");
        }
        assert!(js.run_script("lastresult$.utterance = 'x'").is_err());
        // Writing the value already held is allowed (as defineProperty allows it).
        js.run_script("lastresult$.utterance = lastresult$[0].utterance")
            .unwrap();
        js.assign("pin", "'34'").unwrap();
        js.assign_value("pin$", &Value::Object(vec![])).unwrap();
        assert_eq!(
            js.eval_string("typeof pin$.utterance + pin").unwrap(),
            "undefined34"
        );
        assert!(
            js.assign_value("nope$", &Value::Null).is_err(),
            "the host too assigns only declared names"
        );
    }

    #[test]
    fn bad_names_and_syntax_errors_are_errors() {
        let mut js = model();
        assert!(matches!(
            js.declare("a b", None),
            Err(ScriptError::BadName { .. })
        ));
        assert!(matches!(
            js.assign("x; evil()", "1"),
            Err(ScriptError::BadName { .. })
        ));
        let error = js.eval_bool("1 +").unwrap_err();
        assert!(error.to_string().contains("SyntaxError"), "{error}");
    }
    #[test]
    fn script_declaring_an_outer_name_creates_an_inner_variable() {
        let mut js = model();
        js.pop_scope(Scope::Dialog);
        js.declare("x", Some("1")).unwrap(); // document scope
        js.push_scope(Scope::Dialog).unwrap();
        js.run_script("var x = 5; x = x + 1; function get() { return x; }")
            .unwrap();
        assert_eq!(
            js.eval_string("dialog.x + ',' + document.x").unwrap(),
            "6,1"
        );
        js.pop_scope(Scope::Dialog);
        assert_eq!(js.eval_string("x").unwrap(), "1");
    }

    #[test]
    fn script_functions_see_later_changes_and_redeclaration_keeps_values() {
        let mut js = model();
        js.run_script("var count = 0; function inc() { count++; return count; }")
            .unwrap();
        js.assign("count", "10").unwrap();
        js.run_script("inc();").unwrap();
        assert_eq!(js.eval_string("dialog.count").unwrap(), "11");
        js.run_script("var count; if (true) { function inner() { return count; } }")
            .unwrap();
        assert_eq!(js.eval_string("inner()").unwrap(), "11");
        js.push_scope(Scope::Anonymous).unwrap();
        js.run_script("inc();").unwrap();
        assert_eq!(js.eval_string("count").unwrap(), "12");
    }

    #[test]
    fn reads_of_undeclared_names_fail_and_qualified_names_resolve() {
        let mut js = model();
        js.pop_scope(Scope::Dialog);
        js.pop_scope(Scope::Document);
        js.declare("a", Some("'app'")).unwrap();
        js.push_scope(Scope::Document).unwrap();
        js.declare("a", Some("'doc'")).unwrap();
        js.push_scope(Scope::Dialog).unwrap();
        assert_eq!(
            js.eval_string("a + application.a + document.a").unwrap(),
            "docappdoc"
        );
        js.assign("application.a", "'APP'").unwrap();
        assert_eq!(js.eval_string("application.a + a").unwrap(), "APPdoc");
        let error = js.eval_string("missing + 1").unwrap_err();
        assert!(error.to_string().contains("not defined"), "{error}");
        assert!(js.eval_string("dialog.missing").unwrap() == "undefined");
    }

    #[test]
    fn contexts_sharing_a_runtime_are_isolated() {
        let engine = ScriptEngine::new().unwrap();
        let limits = ScriptLimits {
            budget: 50,
            memory_bytes: 1 << 20,
        };
        let mut a = QuickJs::in_engine(&engine, limits).unwrap();
        let mut b = QuickJs::in_engine(&engine, limits).unwrap();
        for js in [&mut a, &mut b] {
            js.push_scope(Scope::Application).unwrap();
        }
        a.declare("secret", Some("42")).unwrap();
        a.run_script("Object.prototype.leak = 1; Array.prototype.push = null;")
            .unwrap();
        assert!(b.eval_string("secret").is_err());
        assert_eq!(b.eval_string("typeof ({}).leak").unwrap(), "undefined");
        assert_eq!(b.eval_string("[1].concat([2]).push(3)").unwrap(), "3");
        let error = a.eval_string("(function(){while(true){}})()").unwrap_err();
        assert!(matches!(error, ScriptError::BudgetExceeded { .. }));
        let error = b.assign("secret", "1").unwrap_err();
        assert!(error.to_string().contains("undeclared"), "{error}");
        drop(a);
        assert_eq!(b.eval_string("6 * 7").unwrap(), "42");
    }

    const DATA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE quote [<!ENTITY co "Example Co.">]>
<quote xmlns:q="urn:example:quote" source="&co;">
  <!-- prices in USD -->
  <q:ticker q:exchange="NYSE">ABC</q:ticker>
  <price>10.5</price>
  <price currency="EUR"><![CDATA[9 < 10]]></price>
</quote>"#;

    fn dom_model() -> QuickJs {
        let mut js = model();
        js.declare_dom("quote", DATA).unwrap();
        js
    }

    #[test]
    fn data_dom_navigates_elements_attributes_and_text() {
        let mut js = dom_model();
        let cases = [
            ("quote.nodeType + ' ' + quote.nodeName", "9 #document"),
            ("quote.documentElement.tagName", "quote"),
            (
                "quote.documentElement.getAttribute('source')",
                "Example Co.",
            ),
            ("quote.documentElement.getAttribute('none')", ""),
            ("quote.documentElement.hasAttribute('source')", "true"),
            ("quote.getElementsByTagName('price').length", "2"),
            (
                "quote.getElementsByTagName('price').item(1).firstChild.data",
                "9 < 10",
            ),
            (
                "quote.getElementsByTagName('price')[0].firstChild.nodeValue",
                "10.5",
            ),
            ("quote.getElementsByTagName('*').length", "4"),
            ("quote.getElementsByTagName('price').item(7)", "null"),
            ("quote.documentElement.childNodes.length", "9"),
            ("quote.documentElement.childNodes.item(1).nodeType", "8"),
            (
                "quote.documentElement.firstChild.nextSibling.data",
                " prices in USD ",
            ),
            (
                "quote.documentElement.lastChild.previousSibling.tagName",
                "price",
            ),
            ("quote.documentElement.firstChild.previousSibling", "null"),
            ("quote.documentElement.parentNode === quote", "true"),
            ("quote.documentElement.ownerDocument === quote", "true"),
            ("quote.ownerDocument", "null"),
            ("quote.documentElement.attributes.length", "1"),
            (
                "quote.documentElement.attributes.getNamedItem('source').value",
                "Example Co.",
            ),
            (
                "quote.documentElement.getAttributeNode('source').ownerElement.tagName",
                "quote",
            ),
            (
                "quote.documentElement.getAttributeNode('source').specified",
                "true",
            ),
            (
                "quote.documentElement.getAttributeNode('source').nodeType",
                "2",
            ),
            (
                "quote.getElementsByTagName('price')[1].firstChild.length",
                "6",
            ),
            (
                "quote.getElementsByTagName('price')[0].hasChildNodes()",
                "true",
            ),
            (
                "quote.getElementsByTagName('price')[0].hasAttributes()",
                "false",
            ),
            ("quote.documentElement.nodeValue", "null"),
        ];
        for (expr, expected) in cases {
            assert_eq!(js.eval_string(expr).unwrap(), expected, "{expr}");
        }
    }

    #[test]
    fn data_dom_reports_namespaces_as_written() {
        let mut js = dom_model();
        let cases = [
            ("quote.getElementsByTagName('q:ticker').length", "1"),
            (
                "quote.getElementsByTagNameNS('urn:example:quote', 'ticker')[0].nodeName",
                "q:ticker",
            ),
            (
                "quote.getElementsByTagNameNS('*', 'ticker')[0].localName",
                "ticker",
            ),
            ("quote.getElementsByTagName('q:ticker')[0].prefix", "q"),
            (
                "quote.getElementsByTagName('q:ticker')[0].namespaceURI",
                "urn:example:quote",
            ),
            (
                "quote.getElementsByTagName('price')[0].namespaceURI",
                "null",
            ),
            ("quote.getElementsByTagName('price')[0].prefix", "null"),
            (
                "quote.getElementsByTagName('q:ticker')[0].getAttributeNS('urn:example:quote', 'exchange')",
                "NYSE",
            ),
            (
                "quote.getElementsByTagName('q:ticker')[0].attributes.item(0).name",
                "q:exchange",
            ),
        ];
        for (expr, expected) in cases {
            assert_eq!(js.eval_string(expr).unwrap(), expected, "{expr}");
        }
    }

    #[test]
    fn data_dom_is_read_only_and_reassignable() {
        let mut js = dom_model();
        js.run_script(
            "quote.documentElement.tagName = 'x'; \
             try { quote.getElementsByTagName('price').push(1); } catch (e) {}",
        )
        .unwrap();
        assert_eq!(
            js.eval_string(
                "quote.documentElement.tagName + quote.getElementsByTagName('price').length"
            )
            .unwrap(),
            "quote2"
        );
        js.assign_dom("quote", "<other/>").unwrap();
        assert_eq!(
            js.eval_string("quote.documentElement.tagName").unwrap(),
            "other"
        );
        assert_eq!(
            js.eval_string("typeof __vxml.pending").unwrap(),
            "undefined"
        );
    }

    #[test]
    fn malformed_data_is_a_data_error_and_declares_nothing() {
        let mut js = model();
        let error = js.declare_dom("d", "<a><b></a>").unwrap_err();
        assert!(matches!(error, ScriptError::Data(_)), "{error}");
        assert!(error.to_string().contains("not well-formed"), "{error}");
        assert_eq!(js.eval_string("typeof d").unwrap(), "undefined");
        assert!(matches!(
            js.assign_dom("undeclared", "<a/>"),
            Err(ScriptError::Exception { .. })
        ));
    }
}
