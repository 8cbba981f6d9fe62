//! The Form Interpretation Algorithm (VoiceXML 2.0 §2.1.6, Appendix C) and executable content.
//!
//! [`Interpreter`] owns the document, the form state and the data model. It runs until it must
//! wait for the platform and returns that as a [`Suspend`]: fetch a document, collect input
//! for a field, or end. Prompts and logs produced on the way go to an outbox the session
//! drains. Each loop iteration is one *select → collect → process* step of Appendix C; events
//! are handled by [`Interpreter::throw`] with the catch selection of [`crate::event`].
//!
//! Every step since the last wait for caller input counts against `max_goto_chain`, so goto or
//! catch loops end the session instead of spinning.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::document::{
    Catch, Declaration, Document, FormItem, GotoTarget, ItemKind, PromptElement, PromptNode, Stmt,
    UriSource, parse_duration,
};
use crate::event::{Event, names, select_catch};
use crate::grammar::{Grammar, Interpretation};
use crate::prompt::{Prompt, RenderError, normalise_space, render};
use crate::script::{DataModel, QuickJs, Scope, ScriptError, Value};
use crate::session::SessionEnd;

/// What the interpreter waits for.
#[derive(Debug)]
pub(crate) enum Suspend {
    /// Fetch a document.
    Fetch(FetchRequest),
    /// Collect input for the current field.
    Collect(Collect),
    /// The session is over.
    End(SessionEnd),
}

/// A document fetch.
#[derive(Debug)]
pub(crate) struct FetchRequest {
    /// Absolute URL without fragment.
    pub(crate) url: Url,
    /// `method="post"`.
    pub(crate) post: bool,
    /// Submitted namelist values (empty for a plain fetch).
    pub(crate) form: Vec<(String, String)>,
    /// Whether this is a `<submit>`.
    pub(crate) submit: bool,
    /// The dialog to start in the fetched document.
    pub(crate) fragment: Option<String>,
    /// When this fetches an application root: the leaf document waiting for it.
    pub(crate) root_for: Option<Box<Document>>,
}

/// Input collection for a field.
#[derive(Debug)]
pub(crate) struct Collect {
    /// The field's grammars.
    pub(crate) grammars: Vec<Grammar>,
    /// `timeout` property: silence before `noinput`.
    pub(crate) timeout: Duration,
    /// `interdigittimeout` property.
    pub(crate) interdigit: Duration,
    /// `termchar` property (`None` when empty).
    pub(crate) termchar: Option<char>,
}

/// Output produced while running, in order.
#[derive(Debug)]
pub(crate) enum Output {
    /// A prompt for the queue.
    Prompt(Prompt),
    /// A `<log>` or a warning.
    Log {
        /// Label.
        label: Option<String>,
        /// Text.
        text: String,
    },
}

/// The next step of the interpreter loop.
enum Next {
    /// FIA select phase in the current form.
    Select,
    /// Handle an event in the current context.
    Throw(Event),
    /// Enter the form at this index of the current document.
    EnterForm(usize),
    /// Wait for the platform.
    Suspend(Suspend),
}

/// How executable content ended.
enum Flow {
    /// Ran to the end.
    Continue,
    /// Control left the content.
    Jump(Next),
}

/// Per-form-item counters (§2.3.1, §5.2.2).
#[derive(Debug, Default, Clone)]
struct ItemState {
    prompt_count: u32,
    event_counts: HashMap<String, u32>,
}

/// State of the active form.
#[derive(Debug)]
struct FormState {
    index: usize,
    items: Vec<ItemState>,
    form_events: HashMap<String, u32>,
    current: Option<usize>,
    next_item: Option<usize>,
    skip_prompts: bool,
}

/// Interpreter limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepLimit(pub(crate) u32);

/// The VoiceXML interpreter proper.
pub(crate) struct Interpreter {
    model: QuickJs,
    root: Option<Arc<Document>>,
    document: Option<Arc<Document>>,
    form: Option<FormState>,
    outbox: Vec<Output>,
    steps: u32,
    max_steps: StepLimit,
    disconnect: Option<SessionEnd>,
    reprompted: bool,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("document", &self.document.as_ref().map(|d| d.url.as_str()))
            .field("form", &self.form)
            .finish()
    }
}

impl Interpreter {
    /// An interpreter over a data model whose session scope is already set up.
    pub(crate) fn new(model: QuickJs, max_steps: StepLimit) -> Self {
        Self {
            model,
            root: None,
            document: None,
            form: None,
            outbox: Vec::new(),
            steps: 0,
            max_steps,
            disconnect: None,
            reprompted: false,
        }
    }

    /// Takes the prompts and logs produced so far.
    pub(crate) fn drain_outbox(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outbox)
    }

    /// Starts a fetched document at `fragment` (or its first form). A document naming an
    /// application root that is not the current one first fetches that root (§1.5.2).
    pub(crate) fn load(&mut self, document: Document, fragment: Option<String>) -> Suspend {
        self.log_warnings(&document);
        let root_url = match document.application.as_deref() {
            None => None,
            Some(uri) => match document.url.join(uri) {
                Ok(mut url) => {
                    url.set_fragment(None);
                    Some(url)
                }
                Err(e) => {
                    let event = Event::new(
                        names::BADFETCH,
                        format!(
                            "application={uri:?} cannot be resolved against {}: {e}",
                            document.url
                        ),
                    );
                    return self.run(Next::Throw(event));
                }
            },
        };
        let current_root = self.root.as_ref().map(|root| &root.url);
        // Moving into the root document itself also stays in the application.
        let same_application = match &root_url {
            Some(url) => current_root == Some(url),
            None => current_root == Some(&document.url),
        };
        if let Some(url) = root_url
            && !same_application
        {
            return Suspend::Fetch(FetchRequest {
                url,
                post: false,
                form: Vec::new(),
                submit: false,
                fragment,
                root_for: Some(Box::new(document)),
            });
        }
        if !same_application {
            self.root = None;
            if let Err(event) = self.reset_application(&[]) {
                return self.run(Next::Throw(event));
            }
        }
        self.start(document, fragment)
    }

    /// Installs a fetched application root, then starts the leaf document that named it.
    pub(crate) fn load_root(
        &mut self,
        root: Document,
        leaf: Document,
        fragment: Option<String>,
    ) -> Suspend {
        self.log_warnings(&root);
        let root = Arc::new(root);
        self.root = Some(Arc::clone(&root));
        if let Err(event) = self.reset_application(&root.declarations) {
            return self.run(Next::Throw(event));
        }
        self.start(leaf, fragment)
    }

    /// Logs the elements a document's parser skipped.
    fn log_warnings(&mut self, document: &Document) {
        for warning in &document.warnings {
            self.outbox.push(Output::Log {
                label: Some("vxml.warning".to_owned()),
                text: warning.clone(),
            });
        }
    }

    /// A fresh application scope with the root's declarations.
    fn reset_application(&mut self, declarations: &[Declaration]) -> Result<(), Event> {
        self.model.pop_scope(Scope::Application);
        self.model
            .push_scope(Scope::Application)
            .map_err(|e| semantic(&e))?;
        self.declare_all(declarations)
    }

    /// Makes `document` current with a fresh document scope and enters its first dialog.
    fn start(&mut self, document: Document, fragment: Option<String>) -> Suspend {
        let document = Arc::new(document);
        self.document = Some(Arc::clone(&document));
        self.form = None;
        self.model.pop_scope(Scope::Document);
        let declared = self
            .model
            .push_scope(Scope::Document)
            .map_err(|e| semantic(&e))
            .and_then(|()| self.declare_all(&document.declarations));
        let next = match declared {
            Err(event) => Next::Throw(event),
            Ok(()) => match fragment {
                Some(id) => match document.form_index(&id) {
                    Some(index) => Next::EnterForm(index),
                    None => Next::Throw(Event::new(
                        names::BADFETCH,
                        format!("document {} has no dialog with id {id:?}", document.url),
                    )),
                },
                None if document.forms.is_empty() => {
                    Next::Suspend(Suspend::End(SessionEnd::Exit { value: None }))
                }
                None => Next::EnterForm(0),
            },
        };
        self.run(next)
    }

    /// Throws `event` in the current context (fetch failure, noinput, nomatch, hangup).
    pub(crate) fn throw(&mut self, event: Event) -> Suspend {
        if event.name == names::HANGUP && self.disconnect.is_none() {
            self.disconnect = Some(SessionEnd::Hangup);
        }
        self.run(Next::Throw(event))
    }

    /// The current field matched `keys` with `value`: fill it and continue (Appendix C,
    /// process phase).
    pub(crate) fn filled(&mut self, keys: &str, value: &Interpretation) -> Suspend {
        self.steps = 0;
        let next = self.fill_current(keys, value).unwrap_or_else(Next::Throw);
        self.run(next)
    }

    /// Runs steps until the interpreter must wait.
    fn run(&mut self, mut next: Next) -> Suspend {
        loop {
            self.steps = self.steps.saturating_add(1);
            if self.steps > self.max_steps.0 {
                return Suspend::End(SessionEnd::Error {
                    event: names::SEMANTIC.to_owned(),
                    message: format!(
                        "more than {} dialog steps without waiting for the caller; look for a <goto> or <catch> loop",
                        self.max_steps.0
                    ),
                });
            }
            next = match next {
                Next::Select => self.select(),
                Next::Throw(event) => self.handle_event(event),
                Next::EnterForm(index) => self.enter_form(index),
                Next::Suspend(suspend) => {
                    if matches!(suspend, Suspend::Collect(_)) {
                        self.steps = 0;
                    }
                    return suspend;
                }
            };
        }
    }

    /// Initialises the form at `index` (§2.1.6.1): a fresh dialog scope with its variables.
    fn enter_form(&mut self, index: usize) -> Next {
        let Some(document) = self.document.clone() else {
            return Next::Suspend(Suspend::End(SessionEnd::Exit { value: None }));
        };
        let Some(form) = document.forms.get(index) else {
            return Next::Suspend(Suspend::End(SessionEnd::Exit { value: None }));
        };
        self.model.pop_scope(Scope::Dialog);
        self.form = Some(FormState {
            index,
            items: vec![ItemState::default(); form.items.len()],
            form_events: HashMap::new(),
            current: None,
            next_item: None,
            skip_prompts: false,
        });
        if let Err(e) = self.model.push_scope(Scope::Dialog) {
            return Next::Throw(semantic(&e));
        }
        for item in &form.items {
            if let Err(e) = self.model.declare(&item.name, item.expr.as_deref()) {
                return Next::Throw(semantic(&e));
            }
            if matches!(item.kind, ItemKind::Field(_)) {
                let shadow = format!("{}$", item.name);
                if let Err(e) = self.model.declare(&shadow, None) {
                    return Next::Throw(semantic(&e));
                }
            }
        }
        match self.declare_all(&form.declarations) {
            Ok(()) => Next::Select,
            Err(event) => Next::Throw(event),
        }
    }

    /// Runs `<var>`/`<script>` declarations in the innermost scope.
    fn declare_all(&mut self, declarations: &[Declaration]) -> Result<(), Event> {
        for declaration in declarations {
            match declaration {
                Declaration::Var { name, expr } => self.model.declare(name, expr.as_deref()),
                Declaration::Script(source) => self.model.run_script(source),
            }
            .map_err(|e| semantic(&e))?;
        }
        Ok(())
    }

    /// The select phase: the first item whose variable is undefined and whose `cond` holds.
    fn select(&mut self) -> Next {
        let (Some(document), Some(state)) = (self.document.clone(), self.form.as_mut()) else {
            return Next::Suspend(Suspend::End(SessionEnd::Exit { value: None }));
        };
        let Some(form) = document.forms.get(state.index) else {
            return Next::Suspend(Suspend::End(SessionEnd::Exit { value: None }));
        };
        let chosen = match state.next_item.take() {
            Some(index) => Some(index),
            None => {
                let mut chosen = None;
                for (index, item) in form.items.iter().enumerate() {
                    match self.selectable(item) {
                        Ok(true) => {
                            chosen = Some(index);
                            break;
                        }
                        Ok(false) => {}
                        Err(event) => return Next::Throw(event),
                    }
                }
                chosen
            }
        };
        let Some(index) = chosen else {
            // §2.1.6.2.1: no item left and no transition: the form, and the session, exit.
            return Next::Suspend(Suspend::End(SessionEnd::Exit { value: None }));
        };
        let Some(item) = form.items.get(index) else {
            return Next::Suspend(Suspend::End(SessionEnd::Exit { value: None }));
        };
        let Some(state) = self.form.as_mut() else {
            return Next::Suspend(Suspend::End(SessionEnd::Exit { value: None }));
        };
        state.current = Some(index);
        let skip_prompts = std::mem::take(&mut state.skip_prompts);
        match &item.kind {
            ItemKind::Block(content) => {
                if let Err(e) = self.model.assign_value(&item.name, &Value::Bool(true)) {
                    return Next::Throw(semantic(&e));
                }
                self.bump_prompt_count(index);
                match self.run_anonymous(content, &[]) {
                    Ok(Flow::Continue) => Next::Select,
                    Ok(Flow::Jump(next)) => next,
                    Err(event) => Next::Throw(event),
                }
            }
            ItemKind::Field(field) => {
                if !skip_prompts {
                    let count = self.bump_prompt_count(index);
                    if let Err(event) = self.queue_counted_prompts(&field.prompts, count) {
                        return Next::Throw(event);
                    }
                }
                if let Some(end) = self.disconnect.clone() {
                    return Next::Suspend(Suspend::End(end));
                }
                Next::Suspend(Suspend::Collect(Collect {
                    grammars: field.grammars.clone(),
                    timeout: self.duration_property("timeout", Duration::from_secs(5)),
                    interdigit: self.duration_property("interdigittimeout", Duration::from_secs(3)),
                    termchar: self
                        .property("termchar")
                        .map_or(Some('#'), |t| t.chars().next()),
                }))
            }
        }
    }

    /// Whether `item` is selectable: variable undefined and `cond` true.
    fn selectable(&mut self, item: &FormItem) -> Result<bool, Event> {
        let undefined = self
            .model
            .eval_bool(&format!("{} === undefined", item.name))
            .map_err(|e| semantic(&e))?;
        if !undefined {
            return Ok(false);
        }
        match &item.cond {
            Some(cond) => self.model.eval_bool(cond).map_err(|e| semantic(&e)),
            None => Ok(true),
        }
    }

    /// Increments and returns the prompt counter of item `index`.
    fn bump_prompt_count(&mut self, index: usize) -> u32 {
        let Some(item) = self.form.as_mut().and_then(|f| f.items.get_mut(index)) else {
            return 1;
        };
        item.prompt_count = item.prompt_count.saturating_add(1);
        item.prompt_count
    }

    /// Queues the prompts selected by the prompt counter (§4.1.6): among those whose `cond`
    /// holds, the ones with the highest `count` not above `count`.
    fn queue_counted_prompts(
        &mut self,
        prompts: &[PromptElement],
        count: u32,
    ) -> Result<(), Event> {
        let mut eligible = Vec::new();
        for prompt in prompts {
            let ok = match &prompt.cond {
                Some(cond) => self.model.eval_bool(cond).map_err(|e| semantic(&e))?,
                None => true,
            };
            if ok && prompt.count <= count {
                eligible.push(prompt);
            }
        }
        let Some(best) = eligible.iter().map(|p| p.count).max() else {
            return Ok(());
        };
        for prompt in eligible.into_iter().filter(|p| p.count == best) {
            self.queue_prompt(prompt)?;
        }
        Ok(())
    }

    /// Renders one prompt into the outbox; after a disconnect nobody listens, so none is.
    fn queue_prompt(&mut self, prompt: &PromptElement) -> Result<(), Event> {
        let Some(document) = self.document.clone() else {
            return Ok(());
        };
        if self.disconnect.is_some() {
            return Ok(());
        }
        let bargein = self.property("bargein").is_none_or(|v| v != "false");
        match render(prompt, &mut self.model, &document.url, bargein) {
            Ok(rendered) if rendered.items.is_empty() => Ok(()),
            Ok(rendered) => {
                self.outbox.push(Output::Prompt(rendered));
                Ok(())
            }
            Err(RenderError::Script(e)) => Err(semantic(&e)),
            Err(e @ RenderError::BadUri { .. }) => Err(Event::new(names::BADFETCH, e.to_string())),
        }
    }

    /// A property in scope: current item, then form, then document (§6.3).
    fn property(&self, name: &str) -> Option<String> {
        let document = self.document.as_ref()?;
        let state = self.form.as_ref();
        let form = state.and_then(|s| document.forms.get(s.index));
        let item = state
            .and_then(|s| s.current)
            .and_then(|i| form.and_then(|f| f.items.get(i)));
        let lists = [
            item.map(|i| i.properties.as_slice()),
            form.map(|f| f.properties.as_slice()),
            Some(document.properties.as_slice()),
            self.root.as_ref().map(|r| r.properties.as_slice()),
        ];
        lists.into_iter().flatten().find_map(|list| {
            list.iter()
                .rev()
                .find(|p| p.name == name)
                .map(|p| p.value.clone())
        })
    }

    /// A duration property, or `default` if absent or malformed.
    fn duration_property(&mut self, name: &str, default: Duration) -> Duration {
        match self.property(name) {
            None => default,
            Some(text) => parse_duration(&text).unwrap_or_else(|| {
                self.outbox.push(Output::Log {
                    label: Some("vxml.warning".to_owned()),
                    text: format!("property {name}={text:?} is not a duration; using {default:?}"),
                });
                default
            }),
        }
    }

    /// Fills the current field and runs `<filled>` (item level, then form level).
    fn fill_current(&mut self, keys: &str, value: &Interpretation) -> Result<Next, Event> {
        let document = self.document.clone().ok_or_else(no_context)?;
        let state = self.form.as_ref().ok_or_else(no_context)?;
        let form = document.forms.get(state.index).ok_or_else(no_context)?;
        let index = state.current.ok_or_else(no_context)?;
        let item = form.items.get(index).ok_or_else(no_context)?;
        let ItemKind::Field(field) = &item.kind else {
            return Err(no_context());
        };
        let interpretation = match value {
            Interpretation::String(s) => Value::String(s.clone()),
            Interpretation::Bool(b) => Value::Bool(*b),
        };
        let result = || {
            Value::Object(vec![
                ("utterance".to_owned(), Value::String(keys.to_owned())),
                ("inputmode".to_owned(), Value::String("dtmf".to_owned())),
                ("confidence".to_owned(), Value::Number(1.0)),
                ("interpretation".to_owned(), interpretation.clone()),
            ])
        };
        let model = &mut self.model;
        model
            .assign_value(&item.name, &interpretation)
            .and_then(|()| model.assign_value(&format!("{}$", item.name), &result()))
            .and_then(|()| {
                model.declare_value(
                    Scope::Application,
                    "lastresult$",
                    &Value::Array(vec![result()]),
                )
            })
            .and_then(|()| {
                model.run_script(
                    "(function(r){r.utterance=r[0].utterance;r.inputmode=r[0].inputmode;\
                     r.confidence=r[0].confidence;r.interpretation=r[0].interpretation;})\
                     (application.lastresult$)",
                )
            })
            .map_err(|e| semantic(&e))?;
        for filled in &field.filled {
            if let Flow::Jump(next) = self.run_anonymous(&filled.content, &[])? {
                return Ok(next);
            }
        }
        for filled in &form.filled {
            let listed: Vec<&str> = if filled.namelist.is_empty() {
                form.items
                    .iter()
                    .filter(|i| matches!(i.kind, ItemKind::Field(_)))
                    .map(|i| i.name.as_str())
                    .collect()
            } else {
                filled.namelist.iter().map(String::as_str).collect()
            };
            if !listed.contains(&item.name.as_str()) {
                continue;
            }
            let run = if filled.any {
                true
            } else {
                let mut all = true;
                for name in &listed {
                    if self
                        .model
                        .eval_bool(&format!("{name} === undefined"))
                        .map_err(|e| semantic(&e))?
                    {
                        all = false;
                        break;
                    }
                }
                all
            };
            if run && let Flow::Jump(next) = self.run_anonymous(&filled.content, &[])? {
                return Ok(next);
            }
        }
        Ok(Next::Select)
    }

    /// Handles `event` in the current context (§5.2.4); default handlers per §5.2.5.
    fn handle_event(&mut self, event: Event) -> Next {
        let document = self.document.clone();
        let root = self.root.clone();
        let count = self.count_event(&event.name);
        let chosen: Option<Catch> = document.as_ref().and_then(|document| {
            let state = self.form.as_ref();
            let form = state.and_then(|s| document.forms.get(s.index));
            let item = state
                .and_then(|s| s.current)
                .and_then(|i| form.and_then(|f| f.items.get(i)));
            let scopes: Vec<&[Catch]> = [
                item.map(|i| i.catches.as_slice()),
                form.map(|f| f.catches.as_slice()),
                Some(document.catches.as_slice()),
                root.as_ref().map(|r| r.catches.as_slice()),
            ]
            .into_iter()
            .flatten()
            .collect();
            let model = &mut self.model;
            select_catch(&scopes, &event.name, count, |cond| {
                model.eval_bool(cond).unwrap_or(false)
            })
            .cloned()
        });
        let Some(catch) = chosen else {
            return self.default_handler(event);
        };
        self.reprompted = false;
        let mut message = String::new();
        crate::script::push_string_literal(&mut message, &event.message);
        let mut name = String::new();
        crate::script::push_string_literal(&mut name, &event.name);
        let locals = [("_event", name.as_str()), ("_message", message.as_str())];
        match self.run_anonymous(&catch.content, &locals) {
            Ok(Flow::Jump(next)) => next,
            Err(event) => Next::Throw(event),
            Ok(Flow::Continue) => {
                if let Some(end) = self.disconnect.clone() {
                    return Next::Suspend(Suspend::End(end));
                }
                let reprompted = self.reprompted;
                if let Some(state) = self.form.as_mut() {
                    state.skip_prompts = !reprompted;
                    Next::Select
                } else {
                    Next::Suspend(Suspend::End(SessionEnd::Exit { value: None }))
                }
            }
        }
    }

    /// Default handling of an uncaught event (§5.2.5).
    fn default_handler(&mut self, event: Event) -> Next {
        match event.name.as_str() {
            names::NOINPUT | names::NOMATCH | "help" if self.form.is_some() => {
                if let Some(end) = self.disconnect.clone() {
                    return Next::Suspend(Suspend::End(end));
                }
                Next::Select
            }
            names::HANGUP => Next::Suspend(Suspend::End(
                self.disconnect.clone().unwrap_or(SessionEnd::Hangup),
            )),
            _ => Next::Suspend(Suspend::End(SessionEnd::Error {
                event: event.name,
                message: event.message,
            })),
        }
    }

    /// Increments the counter of `name` for the current item (or form) and returns it.
    fn count_event(&mut self, name: &str) -> u32 {
        let Some(state) = self.form.as_mut() else {
            return 1;
        };
        let counts = match state.current.and_then(|i| state.items.get_mut(i)) {
            Some(item) => &mut item.event_counts,
            None => &mut state.form_events,
        };
        let count = counts.entry(name.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// Runs content in a fresh anonymous scope with `locals` (name, expression) declared.
    fn run_anonymous(&mut self, content: &[Stmt], locals: &[(&str, &str)]) -> Result<Flow, Event> {
        self.model
            .push_scope(Scope::Anonymous)
            .map_err(|e| semantic(&e))?;
        let mut result = Ok(Flow::Continue);
        for (name, expr) in locals {
            if let Err(e) = self.model.declare(name, Some(expr)) {
                result = Err(semantic(&e));
            }
        }
        if result.is_ok() {
            result = self.exec(content);
        }
        self.model.pop_scope(Scope::Anonymous);
        result
    }

    /// Executes statements in order until one transfers control.
    fn exec(&mut self, stmts: &[Stmt]) -> Result<Flow, Event> {
        for stmt in stmts {
            if let Flow::Jump(next) = self.exec_one(stmt)? {
                return Ok(Flow::Jump(next));
            }
        }
        Ok(Flow::Continue)
    }

    /// Executes one statement.
    fn exec_one(&mut self, stmt: &Stmt) -> Result<Flow, Event> {
        let sem = |e: ScriptError| semantic(&e);
        match stmt {
            Stmt::Prompt(prompt) => {
                let speak = match &prompt.cond {
                    Some(cond) => self.model.eval_bool(cond).map_err(sem)?,
                    None => true,
                };
                if speak {
                    self.queue_prompt(prompt)?;
                }
            }
            Stmt::Var { name, expr } => self.model.declare(name, expr.as_deref()).map_err(sem)?,
            Stmt::Assign { name, expr } => self.model.assign(name, expr).map_err(sem)?,
            Stmt::Script(source) => self.model.run_script(source).map_err(sem)?,
            Stmt::If(branches) => {
                for (cond, body) in branches {
                    let taken = match cond {
                        Some(cond) => self.model.eval_bool(cond).map_err(sem)?,
                        None => true,
                    };
                    if taken {
                        return self.exec(body);
                    }
                }
            }
            Stmt::Log { label, content } => {
                let mut text = String::new();
                for part in content {
                    match part {
                        PromptNode::Text(t) => text.push_str(t),
                        PromptNode::Value(expr) => {
                            text.push_str(&self.model.eval_string(expr).map_err(sem)?);
                        }
                        PromptNode::Audio { .. } | PromptNode::Break(_) => {}
                    }
                }
                self.outbox.push(Output::Log {
                    label: label.clone(),
                    text: normalise_space(&text),
                });
            }
            Stmt::Reprompt => self.reprompted = true,
            Stmt::Clear(names) => self.clear(names)?,
            Stmt::Exit { expr } => {
                let value = match expr {
                    Some(expr) => self.model.eval_optional_string(expr).map_err(sem)?,
                    None => None,
                };
                return Ok(Flow::Jump(Next::Suspend(Suspend::End(SessionEnd::Exit {
                    value,
                }))));
            }
            Stmt::Disconnect => {
                self.disconnect = Some(SessionEnd::Disconnect);
                return Ok(Flow::Jump(Next::Throw(Event::new(
                    names::HANGUP,
                    "the application ran <disconnect>",
                ))));
            }
            Stmt::Throw { event, message } => {
                let name = self.uri_value(event)?;
                let message = match message {
                    Some(expr) => self.model.eval_string(expr).map_err(sem)?,
                    None => String::new(),
                };
                return Ok(Flow::Jump(Next::Throw(Event::new(name, message))));
            }
            Stmt::Goto(GotoTarget::Item(target)) => {
                let name = self.uri_value(target)?;
                let index = self
                    .document
                    .as_ref()
                    .zip(self.form.as_ref())
                    .and_then(|(d, s)| d.forms.get(s.index))
                    .and_then(|f| f.item_index(&name))
                    .ok_or_else(|| {
                        Event::new(
                            names::BADFETCH,
                            format!("<goto nextitem={name:?}>: the form has no such item"),
                        )
                    })?;
                if let Some(state) = self.form.as_mut() {
                    state.next_item = Some(index);
                }
                return Ok(Flow::Jump(Next::Select));
            }
            Stmt::Goto(GotoTarget::Uri(target)) => {
                let uri = self.uri_value(target)?;
                return self.goto(&uri).map(Flow::Jump);
            }
            Stmt::Submit {
                next,
                namelist,
                post,
            } => {
                let uri = self.uri_value(next)?;
                let names = if namelist.is_empty() {
                    self.field_names()
                } else {
                    namelist.clone()
                };
                let mut form = Vec::with_capacity(names.len());
                for name in names {
                    let value = self.model.eval_string(&name).map_err(sem)?;
                    form.push((name, value));
                }
                let (url, fragment) = self.resolve(&uri)?;
                return Ok(Flow::Jump(Next::Suspend(Suspend::Fetch(FetchRequest {
                    url,
                    post: *post,
                    form,
                    submit: true,
                    fragment,
                    root_for: None,
                }))));
            }
        }
        Ok(Flow::Continue)
    }

    /// `<goto next>`: a dialog of this document (`#id`) or another document.
    fn goto(&mut self, uri: &str) -> Result<Next, Event> {
        if let Some(id) = uri.strip_prefix('#') {
            let document = self.document.as_ref().ok_or_else(no_context)?;
            return match document.form_index(id) {
                Some(index) => Ok(Next::EnterForm(index)),
                None => Err(Event::new(
                    names::BADFETCH,
                    format!(
                        "<goto next=\"#{id}\">: {} has no dialog with that id",
                        document.url
                    ),
                )),
            };
        }
        let (url, fragment) = self.resolve(uri)?;
        Ok(Next::Suspend(Suspend::Fetch(FetchRequest {
            url,
            post: false,
            form: Vec::new(),
            submit: false,
            fragment,
            root_for: None,
        })))
    }

    /// Resolves `uri` against the document, splitting off the fragment.
    fn resolve(&self, uri: &str) -> Result<(Url, Option<String>), Event> {
        let document = self.document.as_ref().ok_or_else(no_context)?;
        let mut url = document.url.join(uri).map_err(|e| {
            Event::new(
                names::BADFETCH,
                format!(
                    "URI {uri:?} cannot be resolved against {}: {e}",
                    document.url
                ),
            )
        })?;
        let fragment = url.fragment().filter(|f| !f.is_empty()).map(str::to_owned);
        url.set_fragment(None);
        Ok((url, fragment))
    }

    /// A literal attribute or the string value of its expression form.
    fn uri_value(&mut self, source: &UriSource) -> Result<String, Event> {
        match source {
            UriSource::Literal(text) => Ok(text.clone()),
            UriSource::Expr(expr) => self.model.eval_string(expr).map_err(|e| semantic(&e)),
        }
    }

    /// Names of the current form's fields (default `namelist`).
    fn field_names(&self) -> Vec<String> {
        self.document
            .as_ref()
            .zip(self.form.as_ref())
            .and_then(|(d, s)| d.forms.get(s.index))
            .map(|form| {
                form.items
                    .iter()
                    .filter(|i| matches!(i.kind, ItemKind::Field(_)))
                    .map(|i| i.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `<clear>` (§5.3.3): undefine the variables and reset their items' counters.
    fn clear(&mut self, names: &[String]) -> Result<(), Event> {
        let document = self.document.clone().ok_or_else(no_context)?;
        let Some(state) = self.form.as_ref() else {
            return Ok(());
        };
        let Some(form) = document.forms.get(state.index) else {
            return Ok(());
        };
        let targets: Vec<String> = if names.is_empty() {
            form.items.iter().map(|i| i.name.clone()).collect()
        } else {
            names.to_vec()
        };
        for name in &targets {
            self.model
                .assign_value(name, &Value::Undefined)
                .map_err(|e| semantic(&e))?;
            if let Some(index) = form.item_index(name)
                && let Some(item) = self.form.as_mut().and_then(|s| s.items.get_mut(index))
            {
                *item = ItemState::default();
            }
        }
        Ok(())
    }
}

/// `error.semantic` for a script failure.
fn semantic(error: &ScriptError) -> Event {
    Event::new(names::SEMANTIC, error.to_string())
}

/// `error.semantic` for an element that needs a form or document context it lacks.
fn no_context() -> Event {
    Event::new(
        names::SEMANTIC,
        "this element needs an active form; it ran outside one",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::ScriptLimits;

    fn interpreter(max_steps: u32) -> Interpreter {
        let mut model = QuickJs::new(ScriptLimits {
            budget: 50,
            memory_bytes: 1 << 20,
        })
        .unwrap();
        model.push_scope(Scope::Session).unwrap();
        Interpreter::new(model, StepLimit(max_steps))
    }

    fn load(interpreter: &mut Interpreter, xml: &str) -> Suspend {
        let url = Url::parse("http://example.test/app/doc.vxml").unwrap();
        let document = Document::parse(url, None, xml.as_bytes(), 1 << 20).unwrap();
        interpreter.load(document, None)
    }

    #[test]
    fn collect_takes_its_timing_from_properties_in_scope() {
        let mut fia = interpreter(100);
        let suspend = load(
            &mut fia,
            r#"<vxml><property name="timeout" value="7s"/><form>
                 <property name="termchar" value=""/>
                 <field name="f" type="digits">
                   <property name="interdigittimeout" value="250ms"/></field></form></vxml>"#,
        );
        let Suspend::Collect(collect) = suspend else {
            panic!("expected Collect, got {suspend:?}");
        };
        assert_eq!(collect.timeout, Duration::from_secs(7));
        assert_eq!(collect.interdigit, Duration::from_millis(250));
        assert_eq!(collect.termchar, None);
    }

    #[test]
    fn filling_the_last_field_runs_filled_and_exits_with_its_value() {
        let mut fia = interpreter(100);
        let suspend = load(
            &mut fia,
            r#"<vxml><form><field name="f" type="boolean"/>
                 <filled><exit expr="f + ':' + f$.utterance + ':' + lastresult$.inputmode"/></filled>
               </form></vxml>"#,
        );
        assert!(matches!(suspend, Suspend::Collect(_)));
        let suspend = fia.filled("2", &Interpretation::Bool(false));
        let Suspend::End(SessionEnd::Exit { value }) = suspend else {
            panic!("expected Exit, got {suspend:?}");
        };
        assert_eq!(value.as_deref(), Some("false:2:dtmf"));
    }

    #[test]
    fn goto_to_a_missing_item_is_badfetch() {
        let mut fia = interpreter(100);
        let suspend = load(
            &mut fia,
            r#"<vxml><form><block><goto nextitem="nope"/></block></form></vxml>"#,
        );
        let Suspend::End(SessionEnd::Error { event, message }) = suspend else {
            panic!("expected an error end, got {suspend:?}");
        };
        assert_eq!(event, names::BADFETCH);
        assert!(message.contains("nope"), "{message}");
    }

    #[test]
    fn clear_loops_stop_at_the_step_limit() {
        let mut fia = interpreter(25);
        let suspend = load(
            &mut fia,
            r#"<vxml><form><block name="b"><clear namelist="b"/></block></form></vxml>"#,
        );
        let Suspend::End(SessionEnd::Error { event, message }) = suspend else {
            panic!("expected an error end, got {suspend:?}");
        };
        assert_eq!(event, names::SEMANTIC);
        assert!(message.contains("25"), "{message}");
    }

    #[test]
    fn catch_variables_are_scoped_to_the_handler() {
        let mut fia = interpreter(100);
        let suspend = load(
            &mut fia,
            r#"<vxml><form>
                 <catch event="custom"><var name="inside" expr="_event"/><assign name="seen" expr="inside + '/' + _message"/></catch>
                 <var name="seen"/>
                 <block name="b1"><throw event="custom.x" message="m"/></block>
                 <block name="b2"><exit expr="seen + '/' + typeof inside + '/' + typeof _event"/></block>
               </form></vxml>"#,
        );
        let Suspend::End(SessionEnd::Exit { value }) = suspend else {
            panic!("expected Exit, got {suspend:?}");
        };
        assert_eq!(value.as_deref(), Some("custom.x/m/undefined/undefined"));
    }
}
