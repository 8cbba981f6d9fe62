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
//!
//! Assignment to an undeclared variable must raise `error.semantic` (§5.1.1). Sloppy JS would
//! create a global instead; the global object's prototype is therefore a `Proxy` whose `set`
//! trap throws, so the write fails; its `get` trap throws too, so reading an undeclared name
//! is an error. quickjs consults that `get` for `typeof x` as well, so `typeof NAME` is
//! rewritten to read through a guard (`guard_typeof`) and stays `"undefined"`. The price:
//! reading a missing property of the global object itself (`globalThis.nope`) throws too.
//!
//! The session scope is deep-frozen once set up ([`DataModel::seal_scope`]): writes to
//! `session.*` are silently ignored, as sloppy-mode writes to frozen objects are.
//!
//! `<script>` (§5.3.12) runs as a direct `eval` inside the scope chain; the global variables and
//! functions it declares (eval declarations are deletable) are then moved onto the current
//! scope object.
//!
//! Runaway scripts are stopped by the engine's interrupt handler after a budget of calls
//! (quickjs-ng calls it about every 10,000 operations) and the runtime has a hard memory limit.
//! No wall clock is read: the budget counts work, not time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rquickjs::context::EvalOptions;
use rquickjs::{Coerced, Context, Ctx, Function, Object, Runtime};

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
    /// This value as ECMAScript source text that evaluates to it.
    fn to_source(&self, out: &mut String) {
        match self {
            Self::Undefined => out.push_str("undefined"),
            Self::Null => out.push_str("null"),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Number(n) if n.is_finite() => out.push_str(&n.to_string()),
            Self::Number(n) if n.is_nan() => out.push_str("NaN"),
            Self::Number(n) => out.push_str(if *n > 0.0 { "Infinity" } else { "-Infinity" }),
            Self::String(s) => push_string_literal(out, s),
            Self::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_string_literal(out, k);
                    out.push(':');
                    v.to_source(out);
                }
                out.push('}');
            }
            Self::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.to_source(out);
                }
                out.push(']');
            }
            Self::Json(text) => {
                out.push_str("JSON.parse(");
                push_string_literal(out, text);
                out.push(')');
            }
        }
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
}

/// Limits of one [`QuickJs`] instance.
#[derive(Debug, Clone, Copy)]
pub struct ScriptLimits {
    /// Interrupt-handler calls allowed per evaluation (about 10,000 operations each).
    pub budget: u32,
    /// Bytes the runtime may allocate.
    pub memory_bytes: usize,
}

/// The engine's bootstrap: scope stack helpers and the undeclared-assignment trap.
const BOOTSTRAP: &str = r#"(function () {
  'use strict';
  const G = globalThis;
  const stack = [];
  const kinds = [];
  const api = Object.create(null);
  api.s = stack;
  api.push = function (kind, name) {
    const o = Object.create(null);
    if (name) Object.defineProperty(o, name, { value: o, writable: false, enumerable: false, configurable: true });
    stack.push(o);
    kinds.push(kind);
  };
  api.pop = function (kind) {
    const i = kinds.lastIndexOf(kind);
    if (i >= 0) { stack.length = i; kinds.length = i; }
  };
  api.declareIn = function (kind, name, value) {
    const i = kinds.lastIndexOf(kind);
    if (i < 0) throw new Error('no ' + kind + ' scope is open');
    stack[i][name] = value;
  };
  api.snapshot = function () { return Object.getOwnPropertyNames(G); };
  api.adopt = function (before) {
    const seen = new Set(before);
    const top = stack[stack.length - 1];
    for (const k of Object.getOwnPropertyNames(G)) {
      if (seen.has(k)) continue;
      const v = G[k];
      delete G[k];
      if (top) top[k] = v;
    }
  };
  Object.defineProperty(G, '__vxml', { value: api, enumerable: false });
  api.probe = function (read) {
    try { return read(); } catch (e) { if (e instanceof ReferenceError) return undefined; throw e; }
  };
  api.freeze = function (kind) {
    const seen = new Set();
    const deep = function (o) {
      if (o === null || (typeof o !== 'object' && typeof o !== 'function') || seen.has(o)) return;
      seen.add(o);
      for (const k of Object.getOwnPropertyNames(o)) deep(o[k]);
      Object.freeze(o);
    };
    const i = kinds.lastIndexOf(kind);
    if (i >= 0) deep(stack[i]);
  };
  const trap = new Proxy(Object.create(Object.getPrototypeOf(G)), {
    get(target, key, receiver) {
      if (typeof key !== 'string' || key in target) return Reflect.get(target, key, receiver);
      throw new ReferenceError("'" + key + "' is not defined; declare it with <var>");
    },
    set(target, key) {
      throw new ReferenceError("assignment to undeclared variable '" + String(key) + "'; declare it with <var>");
    },
  });
  Object.setPrototypeOf(G, trap);
})();"#;

/// The rquickjs data model: one runtime and context per session.
pub struct QuickJs {
    context: Context,
    kinds: Vec<Scope>,
    budget_left: Arc<AtomicU32>,
    limits: ScriptLimits,
}

impl std::fmt::Debug for QuickJs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickJs")
            .field("scopes", &self.kinds)
            .finish()
    }
}

impl QuickJs {
    /// Starts an engine with an empty scope stack.
    pub fn new(limits: ScriptLimits) -> Result<Self, ScriptError> {
        let runtime = Runtime::new().map_err(|e| ScriptError::Engine(e.to_string()))?;
        runtime.set_memory_limit(limits.memory_bytes);
        let budget_left = Arc::new(AtomicU32::new(limits.budget));
        let counter = Arc::clone(&budget_left);
        runtime.set_interrupt_handler(Some(Box::new(move || {
            // Decrement and stop once the budget is spent; never wraps below zero.
            counter
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
        })));
        let context = Context::full(&runtime).map_err(|e| ScriptError::Engine(e.to_string()))?;
        let mut model = Self {
            context,
            kinds: Vec::new(),
            budget_left,
            limits,
        };
        model.exec(BOOTSTRAP, "bootstrap")?;
        Ok(model)
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

    /// Evaluates `body` (an expression) inside the scope chain, converting with `convert`.
    fn eval_in_scope<T>(
        &mut self,
        expr: &str,
        wrap: (&str, &str),
        convert: impl for<'js> FnOnce(rquickjs::Value<'js>) -> rquickjs::Result<T>,
    ) -> Result<T, ScriptError> {
        let source = format!(
            "{}{{{}({}\n){}}}",
            self.with_prefix(),
            wrap.0,
            guard_typeof(expr),
            wrap.1
        );
        self.run(&source, expr, convert)
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
        self.budget_left
            .store(self.limits.budget, Ordering::Relaxed);
        let budget_left = &self.budget_left;
        let budget = self.limits.budget;
        self.context.with(|ctx| {
            let mut options = EvalOptions::default();
            options.strict = false;
            let result = ctx
                .eval_with_options::<rquickjs::Value<'_>, _>(source, options)
                .and_then(convert);
            result.map_err(|error| {
                if budget_left.load(Ordering::Relaxed) == 0 {
                    // Clear the pending uncatchable exception before reporting.
                    let _ = ctx.catch();
                    ScriptError::BudgetExceeded {
                        code: shorten(label),
                        budget,
                    }
                } else {
                    ScriptError::Exception {
                        code: shorten(label),
                        message: exception_message(&ctx, error),
                    }
                }
            })
        })
    }

    /// Calls `__vxml[name](args...)`.
    fn call_api<A>(&mut self, name: &str, args: A, label: &str) -> Result<(), ScriptError>
    where
        A: for<'js> rquickjs::function::IntoArgs<'js>,
    {
        self.budget_left
            .store(self.limits.budget, Ordering::Relaxed);
        self.context.with(|ctx| {
            let result = ctx
                .globals()
                .get::<_, Object<'_>>("__vxml")
                .and_then(|api| api.get::<_, Function<'_>>(name))
                .and_then(|f| f.call::<_, ()>(args));
            result.map_err(|error| ScriptError::Exception {
                code: shorten(label),
                message: exception_message(&ctx, error),
            })
        })
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
        let source = format!(
            "{}{{__vxml.declareIn({}, \"{}\", ({}\n))}}",
            self.with_prefix(),
            top as u32,
            name,
            guard_typeof(expr)
        );
        self.run(&source, expr, |_| Ok(()))
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
        let mut source = format!("__vxml.declareIn({}, \"{}\", ", scope as u32, name);
        value.to_source(&mut source);
        source.push(')');
        self.run(&source, name, |_| Ok(()))
    }

    fn assign(&mut self, name: &str, expr: &str) -> Result<(), ScriptError> {
        if !is_name_path(name) {
            return Err(ScriptError::BadName {
                name: name.to_owned(),
            });
        }
        let source = format!(
            "{}{{{} = ({}\n)}}",
            self.with_prefix(),
            name,
            guard_typeof(expr)
        );
        self.run(&source, expr, |_| Ok(()))
    }

    fn assign_value(&mut self, name: &str, value: &Value) -> Result<(), ScriptError> {
        let mut expr = String::new();
        value.to_source(&mut expr);
        self.assign(name, &expr)
    }

    fn eval_bool(&mut self, expr: &str) -> Result<bool, ScriptError> {
        self.eval_in_scope(expr, ("!!", ""), |v| Ok(v.as_bool().unwrap_or(false)))
    }

    fn eval_string(&mut self, expr: &str) -> Result<String, ScriptError> {
        self.eval_in_scope(expr, ("String", ""), |v| {
            v.get::<Coerced<String>>().map(|s| s.0)
        })
    }

    fn eval_optional_string(&mut self, expr: &str) -> Result<Option<String>, ScriptError> {
        self.eval_in_scope(expr, ("", ""), |v| {
            if v.is_undefined() {
                Ok(None)
            } else {
                v.get::<Coerced<String>>().map(|s| Some(s.0))
            }
        })
    }

    fn seal_scope(&mut self, scope: Scope) -> Result<(), ScriptError> {
        self.call_api("freeze", (scope as u32,), "seal scope")
    }

    fn run_script(&mut self, source: &str) -> Result<(), ScriptError> {
        // A direct, sloppy `eval` at global level: the script sees the scope chain, and its
        // `var`/`function` declarations become deletable globals that `adopt` moves onto the
        // innermost scope object.
        let mut code = String::from("__vxml.before=__vxml.snapshot();");
        code.push_str(&self.with_prefix());
        code.push_str("{eval(");
        push_string_literal(&mut code, &guard_typeof(source));
        code.push_str(")}__vxml.adopt(__vxml.before);");
        let result = self.run(&code, source, |_| Ok(()));
        if result.is_err() {
            // Declarations made before the failure still move off the global object.
            let _ = self.exec("__vxml.adopt(__vxml.before);", "adopt");
        }
        result
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
    fn memory_limit_turns_into_an_error() {
        let mut js = model();
        let error = js
            .eval_string(
                "(function(){let a=[];for(let i=0;i<1e7;i++)a.push('x'+i);return a.length})()",
            )
            .unwrap_err();
        assert!(matches!(
            error,
            ScriptError::Exception { .. } | ScriptError::BudgetExceeded { .. }
        ));
        assert_eq!(js.eval_string("'ok'").unwrap(), "ok");
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
    fn sealed_session_scope_ignores_writes() {
        let mut js = model();
        js.pop_scope(Scope::Application);
        js.declare_value(
            Scope::Session,
            "connection",
            &Value::Json(r#"{"protocol":{"name":"sip"}}"#.to_owned()),
        )
        .unwrap();
        js.seal_scope(Scope::Session).unwrap();
        js.push_scope(Scope::Application).unwrap();
        js.assign("session.connection.protocol.name", "'x'")
            .unwrap();
        assert_eq!(js.eval_string("connection.protocol.name").unwrap(), "sip");
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
}
