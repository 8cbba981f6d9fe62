//! A session's data model, started only when something needs ECMAScript.
//!
//! Building a QuickJS context (its intrinsics and our bootstrap) was the largest single cost
//! of starting a session: 12 % of `outdial serve`'s CPU in `bench/sip/run.sh` (d), where the
//! application is `<form><block><exit/></block></form>`. Until then the interpreter only
//! opens scopes, declares variables, gives them host values and asks whether a form item's
//! variable is still `undefined`. [`LazyModel`] keeps a record of those calls (the scope stack,
//! each variable and whether it holds `undefined`) and answers from it exactly what QuickJS
//! would; the first call it cannot answer from the record starts the context, replays the
//! record into it in order, and from then on every call goes to [`QuickJs`].
//!
//! What the record answers, and why it is exact: the scope objects are `Object.create(null)`
//! holding only the variables declared in them and the scope's own name (`dialog`, ...), and
//! nothing but these calls writes them before a script runs. So `NAME === undefined`, for a
//! `NAME` the `with` chain would find in a scope, is the value last declared or assigned
//! there. Everything else starts the context: any expression, a name found in no scope (the
//! global object and its `ReferenceError`), a scope's own name (read, or declared: it is a
//! read-only property of its scope), a reserved word, `undefined`
//! declared as a variable, reading or assigning platform-owned names (`x$`, read-only; their
//! declarations are recorded), sealed scopes (read-only proxies), and JSON that does not
//! parse.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{
    DataModel, Meter, QuickJs, RESERVED, Scope, ScriptError, ScriptLimits, SessionMemory, Value,
    is_identifier,
};

/// A session's data model; see the module documentation.
#[derive(Debug)]
pub struct LazyModel {
    state: State,
    /// Set once the context starts; shared with whoever asked ([`Self::started_flag`]).
    started: Arc<AtomicBool>,
}

#[derive(Debug)]
enum State {
    /// No context yet: what has been done, to replay.
    Recorded(Record),
    /// The context, with the record replayed.
    Started(Box<QuickJs>),
}

#[derive(Debug)]
struct Record {
    limits: ScriptLimits,
    meter: Meter,
    calls: Vec<Call>,
    /// Innermost last, as the engine's scope stack.
    scopes: Vec<Shadow>,
}

/// One call to replay.
#[derive(Debug)]
enum Call {
    Push(Scope),
    Pop(Scope),
    Declare(String),
    DeclareValue(Scope, String, Value),
    AssignValue(String, Value),
    Seal(Scope),
}

/// What a scope object holds, as far as the record knows.
#[derive(Debug)]
struct Shadow {
    kind: Scope,
    sealed: bool,
    /// Each declared variable and whether it holds something other than `undefined`.
    vars: Vec<(String, bool)>,
}

impl Shadow {
    fn set(&mut self, name: &str, defined: bool) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(var) => var.1 = defined,
            None => self.vars.push((name.to_owned(), defined)),
        }
    }

    fn get(&self, name: &str) -> Option<bool> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, d)| *d)
    }
}

impl Record {
    /// The scope the `with` chain finds a plain variable `name` in (innermost first), if the
    /// record can tell: `None` when only the engine can.
    fn holder(&self, name: &str) -> Option<usize> {
        if !is_identifier(name)
            || name.ends_with('$')
            || RESERVED.contains(&name)
            || name == "undefined"
            || is_scope_name(name)
        {
            return None;
        }
        self.scopes.iter().rposition(|s| s.get(name).is_some())
    }

    /// Whether `undefined` still means `undefined` in every open scope.
    fn undefined_is_global(&self) -> bool {
        self.scopes.iter().all(|s| s.get("undefined").is_none())
    }
}

/// Whether `name` is a scope's own name (`dialog`, ...): each scope object holds its name as
/// a read-only property, so declaring it there is the engine's to refuse.
fn is_scope_name(name: &str) -> bool {
    [
        Scope::Session,
        Scope::Application,
        Scope::Document,
        Scope::Dialog,
    ]
    .iter()
    .any(|scope| scope.name() == Some(name))
}

/// Whether the engine could refuse `value` (JSON text it would parse).
fn needs_engine(value: &Value) -> bool {
    match value {
        Value::Json(text) => serde_json::from_str::<serde_json::Value>(text).is_err(),
        Value::Object(fields) => fields.iter().any(|(_, v)| needs_engine(v)),
        Value::Array(items) => items.iter().any(needs_engine),
        _ => false,
    }
}

impl LazyModel {
    /// A data model that starts a [`QuickJs`] context with `limits` when first needed.
    pub fn new(limits: ScriptLimits) -> Self {
        Self {
            state: State::Recorded(Record {
                limits,
                meter: Meter::unlimited(),
                calls: Vec::new(),
                scopes: Vec::new(),
            }),
            started: Arc::default(),
        }
    }

    /// Whether the context has been started.
    pub fn started(&self) -> bool {
        matches!(self.state, State::Started(_))
    }

    /// A flag that becomes true when the context starts, for the session's owner: a model that
    /// never started frees nothing in a shared runtime when dropped, so the drop cannot wait.
    pub fn started_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.started)
    }

    /// Draws the session's script work from `meter` (see [`QuickJs::set_meter`]).
    pub fn set_meter(&mut self, meter: Meter) {
        match &mut self.state {
            State::Recorded(record) => record.meter = meter,
            State::Started(js) => js.set_meter(meter),
        }
    }

    /// The meter the session's script work is drawn from.
    pub fn meter(&self) -> &Meter {
        match &self.state {
            State::Recorded(record) => &record.meter,
            State::Started(js) => js.meter(),
        }
    }

    /// What the session's scripts hold now (nothing before the context starts).
    pub fn memory(&self) -> SessionMemory {
        match &self.state {
            State::Recorded(record) => SessionMemory {
                limit: record.limits.memory_bytes,
                ..SessionMemory::default()
            },
            State::Started(js) => js.memory(),
        }
    }

    /// The context, started (and the record replayed into it) if it was not yet. A replay
    /// that fails (the session's memory limit) still leaves the context started, and its
    /// error is the current call's.
    fn engine(&mut self) -> Result<&mut QuickJs, ScriptError> {
        if let State::Recorded(record) = &mut self.state {
            let mut js = QuickJs::new(record.limits)?;
            self.started.store(true, Ordering::Release);
            js.set_meter(record.meter.clone());
            let calls = std::mem::take(&mut record.calls);
            self.state = State::Started(Box::new(js));
            let State::Started(js) = &mut self.state else {
                unreachable!("just started");
            };
            for call in calls {
                match call {
                    Call::Push(scope) => js.push_scope(scope)?,
                    Call::Pop(scope) => js.pop_scope(scope),
                    Call::Declare(name) => js.declare(&name, None)?,
                    Call::DeclareValue(scope, name, value) => {
                        js.declare_value(scope, &name, &value)?;
                    }
                    Call::AssignValue(name, value) => js.assign_value(&name, &value)?,
                    Call::Seal(scope) => js.seal_scope(scope)?,
                }
            }
        }
        match &mut self.state {
            State::Started(js) => Ok(js),
            State::Recorded(_) => unreachable!("started above"),
        }
    }

    fn record(&mut self) -> Option<&mut Record> {
        match &mut self.state {
            State::Recorded(record) => Some(record),
            State::Started(_) => None,
        }
    }

    /// See [`QuickJs::enter_context`].
    pub(crate) fn enter_context(&mut self) -> Result<(), ScriptError> {
        self.engine()?.enter_context()
    }

    /// See [`QuickJs::leave_context`].
    pub(crate) fn leave_context(&mut self) {
        if let Ok(js) = self.engine() {
            js.leave_context();
        }
    }

    /// See [`QuickJs::eval_isolated_json`].
    pub(crate) fn eval_isolated_json(
        &mut self,
        program: &str,
    ) -> Result<Option<String>, ScriptError> {
        self.engine()?.eval_isolated_json(program)
    }
}

impl DataModel for LazyModel {
    fn push_scope(&mut self, scope: Scope) -> Result<(), ScriptError> {
        let Some(record) = self.record() else {
            return self.engine()?.push_scope(scope);
        };
        record.calls.push(Call::Push(scope));
        record.scopes.push(Shadow {
            kind: scope,
            sealed: false,
            vars: Vec::new(),
        });
        Ok(())
    }

    fn pop_scope(&mut self, scope: Scope) {
        let Some(record) = self.record() else {
            if let Ok(js) = self.engine() {
                js.pop_scope(scope);
            }
            return;
        };
        if let Some(i) = record.scopes.iter().rposition(|s| s.kind == scope) {
            record.scopes.truncate(i);
            record.calls.push(Call::Pop(scope));
        }
    }

    fn has_scope(&self, scope: Scope) -> bool {
        match &self.state {
            State::Recorded(record) => record.scopes.iter().any(|s| s.kind == scope),
            State::Started(js) => js.has_scope(scope),
        }
    }

    fn declare(&mut self, name: &str, expr: Option<&str>) -> Result<(), ScriptError> {
        if let (None, Some(record)) = (expr, self.record())
            && is_identifier(name)
            && !is_scope_name(name)
            && let Some(top) = record.scopes.last_mut()
            && !top.sealed
        {
            top.set(name, false);
            record.calls.push(Call::Declare(name.to_owned()));
            return Ok(());
        }
        self.engine()?.declare(name, expr)
    }

    fn declare_value(
        &mut self,
        scope: Scope,
        name: &str,
        value: &Value,
    ) -> Result<(), ScriptError> {
        if let Some(record) = self.record()
            && is_identifier(name)
            && !is_scope_name(name)
            && !needs_engine(value)
            && let Some(shadow) = record.scopes.iter_mut().rev().find(|s| s.kind == scope)
            && !shadow.sealed
        {
            shadow.set(name, !matches!(value, Value::Undefined));
            record
                .calls
                .push(Call::DeclareValue(scope, name.to_owned(), value.clone()));
            return Ok(());
        }
        self.engine()?.declare_value(scope, name, value)
    }

    fn assign(&mut self, name: &str, expr: &str) -> Result<(), ScriptError> {
        self.engine()?.assign(name, expr)
    }

    fn assign_value(&mut self, name: &str, value: &Value) -> Result<(), ScriptError> {
        if let Some(record) = self.record()
            && !needs_engine(value)
            && let Some(i) = record.holder(name)
            && !record.scopes[i].sealed
        {
            record.scopes[i].set(name, !matches!(value, Value::Undefined));
            record
                .calls
                .push(Call::AssignValue(name.to_owned(), value.clone()));
            return Ok(());
        }
        self.engine()?.assign_value(name, value)
    }

    fn eval_bool(&mut self, expr: &str) -> Result<bool, ScriptError> {
        if let Some(record) = self.record()
            && record.undefined_is_global()
            && let Some(name) = expr.strip_suffix(" === undefined")
            && let Some(i) = record.holder(name)
            && let Some(defined) = record.scopes[i].get(name)
        {
            return Ok(!defined);
        }
        self.engine()?.eval_bool(expr)
    }

    fn eval_string(&mut self, expr: &str) -> Result<String, ScriptError> {
        self.engine()?.eval_string(expr)
    }

    fn eval_optional_string(&mut self, expr: &str) -> Result<Option<String>, ScriptError> {
        self.engine()?.eval_optional_string(expr)
    }

    fn run_script(&mut self, source: &str) -> Result<(), ScriptError> {
        self.engine()?.run_script(source)
    }

    fn seal_scope(&mut self, scope: Scope) -> Result<(), ScriptError> {
        let Some(record) = self.record() else {
            return self.engine()?.seal_scope(scope);
        };
        if let Some(shadow) = record.scopes.iter_mut().rev().find(|s| s.kind == scope) {
            shadow.sealed = true;
        }
        record.calls.push(Call::Seal(scope));
        Ok(())
    }

    fn declare_dom(&mut self, name: &str, xml: &str) -> Result<(), ScriptError> {
        self.engine()?.declare_dom(name, xml)
    }

    fn assign_dom(&mut self, name: &str, xml: &str) -> Result<(), ScriptError> {
        self.engine()?.assign_dom(name, xml)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ScriptLimits = ScriptLimits {
        budget: 200,
        memory_bytes: 1 << 20,
    };

    /// The calls a session makes before its first expression, on both models.
    fn opened(model: &mut dyn DataModel) {
        let connection = Value::Object(vec![(
            "remote".to_owned(),
            Value::Object(vec![("uri".to_owned(), Value::String("sip:c@d".into()))]),
        )]);
        let steps = [
            model.push_scope(Scope::Session),
            model.declare_value(Scope::Session, "connection", &connection),
            model.declare_value(Scope::Session, "name", &Value::Json(r#""Ada""#.into())),
            model.declare_value(Scope::Session, "gone", &Value::Undefined),
            model.seal_scope(Scope::Session),
            model.push_scope(Scope::Application),
            model.push_scope(Scope::Document),
            model.declare("shared", None),
            model.push_scope(Scope::Dialog),
            model.declare("intro", None),
            model.declare("shared", None),
            model.assign_value("intro", &Value::Bool(true)),
        ];
        for step in steps {
            step.unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// What both models answer for `NAME === undefined`, `Err` as its message's presence.
    fn undefined(model: &mut dyn DataModel, name: &str) -> Result<bool, ()> {
        model
            .eval_bool(&format!("{name} === undefined"))
            .map_err(|_| ())
    }

    #[test]
    fn answers_what_the_engine_answers_without_starting_it() {
        let mut lazy = LazyModel::new(LIMITS);
        let mut js = QuickJs::new(LIMITS).unwrap_or_else(|e| panic!("{e}"));
        opened(&mut lazy);
        opened(&mut js);
        // Answered by the record: declared and assigned, declared only, shadowing, and a
        // session value.
        for name in ["intro", "shared", "name", "gone", "connection"] {
            assert_eq!(
                undefined(&mut lazy, name),
                undefined(&mut js, name),
                "{name}"
            );
        }
        assert!(!lazy.started(), "nothing so far needed the engine");
        assert_eq!(undefined(&mut lazy, "intro"), Ok(false));
        assert_eq!(undefined(&mut lazy, "shared"), Ok(true));
        // A re-declaration resets to undefined, as `var` with no `expr` does.
        for model in [&mut lazy as &mut dyn DataModel, &mut js] {
            model
                .declare("intro", None)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(undefined(&mut lazy, "intro"), Ok(true));
        assert_eq!(undefined(&mut js, "intro"), Ok(true));
        assert!(!lazy.started());
        // Assigning to a name no scope declares is the engine's error to give.
        assert_eq!(
            lazy.assign_value("nowhere", &Value::Bool(true)).is_err(),
            js.assign_value("nowhere", &Value::Bool(true)).is_err()
        );
        assert!(lazy.started(), "only the engine knows the global object");
    }

    #[test]
    fn names_only_the_engine_can_resolve_start_it_with_the_record_replayed() {
        for name in ["dialog", "undeclared", "if", "Math", "lastresult$"] {
            let mut lazy = LazyModel::new(LIMITS);
            let mut js = QuickJs::new(LIMITS).unwrap_or_else(|e| panic!("{e}"));
            opened(&mut lazy);
            opened(&mut js);
            assert_eq!(
                undefined(&mut lazy, name),
                undefined(&mut js, name),
                "{name}"
            );
            assert!(lazy.started(), "{name} needs the engine");
            // The replay left the same variables behind.
            for model in [&mut lazy as &mut dyn DataModel, &mut js] {
                assert_eq!(
                    model
                        .eval_string(
                            "intro + ',' + shared + ',' + name + ',' + connection.remote.uri"
                        )
                        .ok(),
                    Some("true,undefined,Ada,sip:c@d".to_owned()),
                    "{name}"
                );
            }
        }
    }

    /// Random sequences of the calls a session makes, on both models: every answer, error and
    /// final variable must be the same, whenever the lazy one starts its engine.
    #[test]
    fn random_call_sequences_answer_as_the_engine_does() {
        const SCOPES: [Scope; 5] = [
            Scope::Session,
            Scope::Application,
            Scope::Document,
            Scope::Dialog,
            Scope::Anonymous,
        ];
        // Mostly names the record can answer for; the rest send the lazy model to its engine.
        const ANSWERABLE: [&str; 3] = ["a", "b", "item"];
        const ENGINE_ONLY: [&str; 4] = ["x$", "dialog", "undefined", "if"];
        let values = [
            Value::Undefined,
            Value::Bool(true),
            Value::Json("1".into()),
            Value::Json("null".into()),
            Value::String("s".into()),
        ];
        let mut seed: u64 = 0x5eed;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(seed >> 33).unwrap_or(0) % n
        };
        let mut started = 0;
        let mut recorded = 0;
        const ROUNDS: usize = 300;
        for round in 0..ROUNDS {
            let mut lazy = LazyModel::new(LIMITS);
            let mut js = QuickJs::new(LIMITS).unwrap_or_else(|e| panic!("{e}"));
            let mut log = Vec::new();
            for model in [&mut lazy as &mut dyn DataModel, &mut js] {
                model
                    .push_scope(Scope::Document)
                    .unwrap_or_else(|e| panic!("{e}"));
                for name in ["a", "b", "item"] {
                    model.declare(name, None).unwrap_or_else(|e| panic!("{e}"));
                }
            }
            for _ in 0..12 {
                let scope = SCOPES[next(SCOPES.len())];
                let name = if next(4) > 0 {
                    ANSWERABLE[next(ANSWERABLE.len())]
                } else {
                    ENGINE_ONLY[next(ENGINE_ONLY.len())]
                };
                let value = &values[next(values.len())];
                let step = next(8);
                log.push(format!("{step} {scope:?} {name} {value:?}"));
                recorded += usize::from(!lazy.started());
                let models: [&mut dyn DataModel; 2] = [&mut lazy, &mut js];
                let answers: Vec<Result<Option<bool>, ()>> = models
                    .into_iter()
                    .map(|m| {
                        let done = |r: Result<(), ScriptError>| r.map(|()| None).map_err(|_| ());
                        match step {
                            0 => done(m.push_scope(scope)),
                            1 => {
                                m.pop_scope(scope);
                                Ok(None)
                            }
                            2 => done(m.declare(name, None)),
                            3 => done(m.declare_value(scope, name, value)),
                            4 => done(m.assign_value(name, value)),
                            5 => done(m.seal_scope(scope)),
                            6 => Ok(Some(m.has_scope(scope))),
                            _ => m
                                .eval_bool(&format!("{name} === undefined"))
                                .map(Some)
                                .map_err(|_| ()),
                        }
                    })
                    .collect();
                assert_eq!(answers[0], answers[1], "round {round}: {log:#?}");
            }
            started += usize::from(lazy.started());
            for name in ["a", "b", "item"] {
                let probe = format!("typeof {name} + ':' + String({name})");
                assert_eq!(
                    lazy.eval_string(&probe).ok(),
                    js.eval_string(&probe).ok(),
                    "round {round}, {name}: {log:#?}"
                );
            }
        }
        // Both paths were exercised: many calls answered from the record, and rounds that
        // started the engine part-way (and replayed) as well as rounds that never did.
        assert!(recorded > 1_000, "only {recorded} calls met the record");
        assert!(
            (1..ROUNDS).contains(&started),
            "{started} of {ROUNDS} rounds started the engine"
        );
    }

    #[test]
    fn sealed_scopes_and_a_variable_named_undefined_go_to_the_engine() {
        let mut lazy = LazyModel::new(LIMITS);
        opened(&mut lazy);
        // `name` lives in the sealed session scope: assigning it is refused by the engine.
        assert!(lazy.assign_value("name", &Value::Bool(true)).is_err());
        assert!(lazy.started());

        let mut lazy = LazyModel::new(LIMITS);
        opened(&mut lazy);
        lazy.declare("undefined", None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(undefined(&mut lazy, "intro"), Ok(false));
        assert!(lazy.started(), "`undefined` may no longer mean undefined");

        let mut lazy = LazyModel::new(LIMITS);
        lazy.push_scope(Scope::Session)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            lazy.declare_value(Scope::Session, "bad", &Value::Json("{not json".into()))
                .is_err(),
            "JSON the engine cannot parse is refused where it is declared"
        );
    }
}
