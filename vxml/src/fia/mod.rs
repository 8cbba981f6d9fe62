//! The Form Interpretation Algorithm (VoiceXML 2.0 §2.1.6, Appendix C) and executable content.
//!
//! The interpreter is written as `async fn`s used as coroutines: it runs until it needs the
//! platform, then awaits a [`platform::Platform::ask`] whose answer the [`crate::Session`]
//! fills in from an `Input`. So Appendix C reads as the spec writes it (select → collect →
//! process), executable content resumes after a `<script src>` or `<data>` fetch, and a
//! `<subdialog>` is a recursive call in a new execution context.
//!
//! Modules: [`platform`] (requests and outputs), [`grammars`] (the grammar seam), `exec`
//! (executable content and transitions), `items` (the collect and process phases of each
//! form item kind).
//!
//! Every dialog step since the last wait for the caller counts against `max_goto_chain`, so a
//! `<goto>` or `<catch>` loop ends the session with `error.semantic` instead of spinning. Every
//! step also ends the session once its scripts spent their budget for the whole call
//! ([`crate::Limits::call_script_budget`]) or the platform stopped it ([`crate::Session::meter`]).

mod exec;
pub(crate) mod grammars;
mod items;
pub(crate) mod platform;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use url::Url;

use crate::document::{Catch, Document, DocumentCache, ItemKind, Stmt};
use crate::event::{Event, names, select_catch};
use crate::script::{DataModel, LazyModel, Scope, ScriptError, Value};
use crate::session::{FetchPurpose, Limits, Recording, SessionEnd};
use grammars::Compiled;
use platform::{Output, Platform};

/// Deepest `<subdialog>` nesting before `error.semantic`.
const MAX_SUBDIALOG_DEPTH: u32 = 24;

/// Where control goes when a dialog, catch or executable content transfers it.
#[derive(Debug)]
pub(crate) enum Jump {
    /// Another dialog of the current document (`#id`).
    Form(usize),
    /// A form item of the current form (`nextitem`).
    Item(usize),
    /// A (fetched) document, at `fragment` or its first dialog.
    Document {
        /// The document.
        doc: Arc<Document>,
        /// Its application root, if it changes.
        root: RootChoice,
        /// The dialog to start at.
        fragment: Option<String>,
    },
    /// The session ends.
    End(SessionEnd),
    /// `<return>` from a subdialog: values, or an event for the caller.
    Return(Result<Vec<(String, Value)>, Event>),
}

/// What a document transition does to the application root (§1.5.2).
#[derive(Debug)]
pub(crate) enum RootChoice {
    /// Same application: keep the root and the application scope.
    Keep,
    /// A new application (root, or none): fresh application scope.
    Replace(Option<Arc<Document>>),
    /// The target is the application root itself: fresh application scope, same root.
    Reload,
}

/// How executable content ended.
#[derive(Debug)]
pub(crate) enum Flow {
    /// Ran to the end.
    Continue,
    /// Control left the content.
    Jump(Jump),
}

/// How an execution context ended.
#[derive(Debug)]
enum ContextEnd {
    /// The session ends.
    Exit(SessionEnd),
    /// A subdialog returned.
    Return(Result<Vec<(String, Value)>, Event>),
}

/// Input a grammar matched, carried to the form it fills.
#[derive(Debug, Clone)]
pub(crate) struct MatchedInput {
    /// What was said or keyed.
    pub(crate) utterance: String,
    /// `dtmf` or `voice`.
    pub(crate) mode: grammars::Mode,
    /// Recognition confidence.
    pub(crate) confidence: f32,
    /// The interpretation.
    pub(crate) value: grammars::SemValue,
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
    reprompt: bool,
}

/// The VoiceXML interpreter proper.
pub(crate) struct Interp {
    model: LazyModel,
    io: Platform,
    limits: Limits,
    steps: u32,
    root: Option<Arc<Document>>,
    /// The URL the root was requested as (before redirects), also naming it.
    root_requested: Option<Url>,
    doc: Option<Arc<Document>>,
    form: Option<FormState>,
    depth: u32,
    hangup_thrown: bool,
    disconnected: bool,
    prompt_timeout: Option<std::time::Duration>,
    grammar_cache: HashMap<String, Arc<Compiled>>,
    /// Inline grammars with external rule references, linked: (source, linked).
    linked_inline: Vec<(Arc<Compiled>, Arc<Compiled>)>,
    /// A document-scoped dialog's grammar matched elsewhere: its input, for that dialog.
    pending_input: Option<MatchedInput>,
    recordings: HashMap<String, Recording>,
    /// Recordings a prompt can play back, by the number their value carries (`__clip`); the
    /// [`MAX_CLIPS`] most recent.
    clips: HashMap<u64, crate::prompt::Clip>,
    /// The number the next recording gets.
    next_clip: u64,
    documents: Arc<DocumentCache>,
}

/// Recordings a session keeps for playback; an older one plays its `<audio>` fallback.
const MAX_CLIPS: u64 = 16;

impl std::fmt::Debug for Interp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interp")
            .field("document", &self.doc.as_ref().map(|d| d.url.as_str()))
            .field("form", &self.form)
            .finish()
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

impl Interp {
    /// An interpreter over a data model whose session scope is already set up.
    pub(crate) fn new(
        model: LazyModel,
        io: Platform,
        limits: Limits,
        documents: Arc<DocumentCache>,
    ) -> Self {
        Self {
            model,
            io,
            limits,
            steps: 0,
            root: None,
            root_requested: None,
            doc: None,
            form: None,
            depth: 0,
            hangup_thrown: false,
            disconnected: false,
            prompt_timeout: None,
            grammar_cache: HashMap::new(),
            linked_inline: Vec::new(),
            pending_input: None,
            recordings: HashMap::new(),
            clips: HashMap::new(),
            next_clip: 0,
            documents,
        }
    }

    /// Runs the application at `url` to its end.
    pub(crate) async fn run(mut self, url: Url) -> SessionEnd {
        let spec = self.fetch_spec(url, FetchPurpose::Document, &Default::default());
        // Boxed: the fetch's state would otherwise take room in this future (which lives as
        // long as the session) long after the fetch is over.
        let first = match Box::pin(self.fetch_document(spec, None, true)).await {
            Ok(jump) => jump,
            Err(event) => return error_end(&event),
        };
        match self.run_context_boxed(first, Vec::new()).await {
            ContextEnd::Exit(end) => end,
            ContextEnd::Return(_) => SessionEnd::Exit { value: None },
        }
    }

    /// [`Interp::run_context`], boxed for the recursion through `<subdialog>`.
    fn run_context_boxed(
        &mut self,
        first: Jump,
        params: Vec<(String, Value)>,
    ) -> Pin<Box<dyn Future<Output = ContextEnd> + Send + '_>> {
        Box::pin(self.run_context(first, params))
    }

    /// Runs one execution context (the application, or a subdialog) from `first`.
    async fn run_context(&mut self, first: Jump, mut params: Vec<(String, Value)>) -> ContextEnd {
        let mut jump = first;
        loop {
            if let Some(end) = self.step() {
                return ContextEnd::Exit(end);
            }
            jump = match jump {
                Jump::Document {
                    doc,
                    root,
                    fragment,
                } => self.enter_document(doc, root, fragment).await,
                Jump::Form(index) => self.run_form(index, std::mem::take(&mut params)).await,
                Jump::Item(index) => {
                    // Only reachable when an item jump escapes its form: treat as that form.
                    let form = self.form.as_ref().map_or(0, |f| f.index);
                    if let Some(state) = self.form.as_mut() {
                        state.next_item = Some(index);
                    }
                    Jump::Form(form)
                }
                Jump::End(end) => return ContextEnd::Exit(end),
                Jump::Return(result) => return ContextEnd::Return(result),
            };
        }
    }

    /// Counts a dialog step; the session end when there were too many without a wait, when
    /// the session's scripts spent their budget for the call, or when the platform stopped it.
    fn step(&mut self) -> Option<SessionEnd> {
        let meter = self.model.meter();
        if meter.stopped() {
            return Some(SessionEnd::Error {
                event: names::SEMANTIC.to_owned(),
                message: "the platform stopped the session: the call is being ended".to_owned(),
            });
        }
        if meter.exhausted() {
            return Some(SessionEnd::Error {
                event: names::SEMANTIC.to_owned(),
                message: format!(
                    "the session's scripts spent its script budget for the whole call ({} interrupt checks, vxml.call_script_budget); look for a script that never ends and a <catch> that starts it again",
                    meter.budget()
                ),
            });
        }
        self.steps = self.steps.saturating_add(1);
        if self.steps <= self.limits.max_goto_chain {
            return None;
        }
        let place = match (&self.doc, &self.form) {
            (Some(doc), Some(state)) => {
                let form = doc.forms.get(state.index);
                let item = state
                    .current
                    .and_then(|i| form.and_then(|f| f.items.get(i)));
                format!(
                    " (last in dialog {:?}{} of {})",
                    form.map_or("", |f| f.id.as_str()),
                    item.map_or_else(String::new, |i| format!(", item {:?}", i.name)),
                    doc.url
                )
            }
            (Some(doc), None) => format!(" (last in {})", doc.url),
            _ => String::new(),
        };
        Some(SessionEnd::Error {
            event: names::SEMANTIC.to_owned(),
            message: format!(
                "more than {} dialog steps without waiting for the caller{place}; look for a <goto>, <clear> or <catch> loop",
                self.limits.max_goto_chain
            ),
        })
    }

    /// Logs the elements a document's parser skipped.
    fn log_warnings(&self, document: &Document) {
        for warning in &document.warnings {
            self.io.emit(Output::Log {
                label: Some("vxml.warning".to_owned()),
                text: warning.clone(),
            });
        }
    }

    /// Makes `doc` current (§1.5.2): a fresh application scope when the application
    /// changes, a fresh document scope, its declarations; then its first (or named) dialog.
    async fn enter_document(
        &mut self,
        doc: Arc<Document>,
        root: RootChoice,
        fragment: Option<String>,
    ) -> Jump {
        self.form = None;
        let root = match root {
            RootChoice::Reload => RootChoice::Replace(Some(Arc::clone(&doc))),
            other => other,
        };
        if let RootChoice::Replace(root) = root {
            self.model.pop_scope(Scope::Application);
            if let Err(e) = self.model.push_scope(Scope::Application) {
                return Jump::End(error_end(&semantic(&e)));
            }
            if root.is_none() {
                self.root_requested = None;
            }
            self.root.clone_from(&root);
            self.doc = None;
            if let Some(root) = root {
                self.log_warnings(&root);
                // The root's variables and scripts run in the application scope.
                self.doc = Some(Arc::clone(&root));
                if let Err(event) = self.declare(&root.declarations).await {
                    return self.handle_outside_form(event).await;
                }
            }
        }
        self.log_warnings(&doc);
        self.doc = Some(Arc::clone(&doc));
        self.model.pop_scope(Scope::Document);
        if let Err(e) = self.model.push_scope(Scope::Document) {
            return Jump::End(error_end(&semantic(&e)));
        }
        let is_root = self.root.as_ref().is_some_and(|r| r.url == doc.url);
        if !is_root && let Err(event) = self.declare(&doc.declarations).await {
            return self.handle_outside_form(event).await;
        }
        match fragment {
            Some(id) => match doc.form_index(&id) {
                Some(index) => Jump::Form(index),
                None => {
                    let event = Event::new(
                        names::BADFETCH,
                        format!("document {} has no dialog with id {id:?}", doc.url),
                    );
                    self.handle_outside_form(event).await
                }
            },
            None if doc.forms.is_empty() => Jump::End(SessionEnd::Exit { value: None }),
            None => Jump::Form(0),
        }
    }

    /// Runs declarations (`<var>`, `<script>`, `<data>`) in the innermost scope.
    async fn declare(&mut self, declarations: &[Stmt]) -> Result<(), Event> {
        match self.exec_boxed(declarations).await? {
            Flow::Continue => Ok(()),
            Flow::Jump(_) => Ok(()),
        }
    }

    /// Handles an event thrown while no form is active (document or root declarations).
    async fn handle_outside_form(&mut self, event: Event) -> Jump {
        match self.handle_event(event).await {
            Flow::Jump(jump) => jump,
            Flow::Continue => Jump::End(SessionEnd::Exit { value: None }),
        }
    }

    /// Runs the dialog at `index` of the current document: initialisation (§2.1.6.1), then the
    /// FIA main loop until control leaves the form.
    async fn run_form(&mut self, index: usize, params: Vec<(String, Value)>) -> Jump {
        let Some(doc) = self.doc.clone() else {
            return Jump::End(SessionEnd::Exit { value: None });
        };
        let Some(form) = doc.forms.get(index) else {
            return Jump::End(SessionEnd::Exit { value: None });
        };
        self.model.pop_scope(Scope::Dialog);
        self.form = Some(FormState {
            index,
            items: vec![ItemState::default(); form.items.len()],
            form_events: HashMap::new(),
            current: None,
            next_item: None,
            skip_prompts: false,
            reprompt: false,
        });
        let pending = self.pending_input.take();
        if let Err(event) = self.init_form(index, &params).await {
            match self.handle_event(event).await {
                Flow::Jump(jump) => return jump,
                Flow::Continue => {}
            }
        }
        if let Some(input) = pending {
            let flow = match self.fill_from_form_grammar(form, None, &input).await {
                Ok(flow) => flow,
                Err(event) => self.handle_event(event).await,
            };
            if let Flow::Jump(jump) = flow
                && let Some(jump) = self.within_form(jump)
            {
                return jump;
            }
        }
        loop {
            if let Some(end) = self.step() {
                return Jump::End(end);
            }
            let selected = match self.select(index) {
                Ok(Some(item)) => item,
                Ok(None) => return Jump::End(SessionEnd::Exit { value: None }),
                Err(event) => match self.handle_event(event).await {
                    Flow::Jump(jump) => match self.within_form(jump) {
                        Some(jump) => return jump,
                        None => continue,
                    },
                    Flow::Continue => continue,
                },
            };
            let flow = match self.collect_item(index, selected).await {
                Ok(flow) => flow,
                Err(event) => self.handle_event(event).await,
            };
            if let Flow::Jump(jump) = flow
                && let Some(jump) = self.within_form(jump)
            {
                return jump;
            }
        }
    }

    /// A jump that stays in the form (`nextitem`) is recorded and `None` returned.
    fn within_form(&mut self, jump: Jump) -> Option<Jump> {
        match jump {
            Jump::Item(item) => {
                if let Some(state) = self.form.as_mut() {
                    state.next_item = Some(item);
                }
                None
            }
            other => Some(other),
        }
    }

    /// Declares the form's variables in a fresh dialog scope: form item variables (and shadow
    /// variables), `<param>` values of a subdialog, then `<var>`/`<script>` in order.
    async fn init_form(&mut self, index: usize, params: &[(String, Value)]) -> Result<(), Event> {
        let doc = self.doc.clone().ok_or_else(no_context)?;
        let form = doc.forms.get(index).ok_or_else(no_context)?;
        self.model
            .push_scope(Scope::Dialog)
            .map_err(|e| semantic(&e))?;
        for item in &form.items {
            self.model
                .declare(&item.name, item.expr.as_deref())
                .map_err(|e| semantic(&e))?;
            if matches!(
                item.kind,
                ItemKind::Field(_) | ItemKind::Record(_) | ItemKind::Transfer(_)
            ) {
                self.model
                    .declare(&format!("{}$", item.name), None)
                    .map_err(|e| semantic(&e))?;
            }
        }
        for stmt in &form.declarations {
            match stmt {
                Stmt::Var { name, .. } if params.iter().any(|(p, _)| p == name) => {
                    self.model.declare(name, None).map_err(|e| semantic(&e))?;
                }
                other => {
                    self.exec_boxed(std::slice::from_ref(other)).await?;
                }
            }
        }
        for (name, value) in params {
            self.model
                .declare_value(Scope::Dialog, name, value)
                .map_err(|e| semantic(&e))?;
        }
        Ok(())
    }

    /// The select phase (Appendix C): the `nextitem` target, else the first item whose
    /// variable is undefined and whose `cond` holds.
    fn select(&mut self, index: usize) -> Result<Option<usize>, Event> {
        let doc = self.doc.clone().ok_or_else(no_context)?;
        let form = doc.forms.get(index).ok_or_else(no_context)?;
        if let Some(item) = self.form.as_mut().and_then(|f| f.next_item.take()) {
            return Ok(Some(item));
        }
        for (i, item) in form.items.iter().enumerate() {
            let undefined = self
                .model
                .eval_bool(&format!("{} === undefined", item.name))
                .map_err(|e| semantic(&e))?;
            if !undefined {
                continue;
            }
            let guard = match &item.cond {
                Some(cond) => self.model.eval_bool(cond).map_err(|e| semantic(&e))?,
                None => true,
            };
            if guard {
                return Ok(Some(i));
            }
        }
        Ok(None)
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

    /// Handles `event` (§5.2.4): the catch selected as if copied into the current item, from
    /// item, form, document and application root scopes, else the platform default (§5.2.5).
    /// An event thrown by the handler is handled the same way.
    async fn handle_event(&mut self, event: Event) -> Flow {
        let mut event = event;
        loop {
            if let Some(end) = self.step() {
                return Flow::Jump(Jump::End(end));
            }
            if event.name == names::HANGUP {
                self.hangup_thrown = true;
            }
            let count = self.count_event(&event.name);
            let Some(catch) = self.select_catch(&event, count) else {
                return self.default_handler(event);
            };
            if let Some(state) = self.form.as_mut() {
                state.reprompt = false;
            }
            let mut name = String::new();
            crate::script::push_string_literal(&mut name, &event.name);
            let mut message = String::new();
            crate::script::push_string_literal(&mut message, &event.message);
            let locals = [("_event", name.as_str()), ("_message", message.as_str())];
            match self.run_anonymous(&catch.content, &locals).await {
                Ok(Flow::Jump(jump)) => return Flow::Jump(jump),
                Ok(Flow::Continue) => {
                    let Some(state) = self.form.as_mut() else {
                        return Flow::Jump(Jump::End(SessionEnd::Exit { value: None }));
                    };
                    state.skip_prompts = !state.reprompt;
                    return Flow::Continue;
                }
                Err(next) => event = next,
            }
        }
    }

    /// The catch for `event` seen `count` times, cloned out of the documents.
    fn select_catch(&mut self, event: &Event, count: u32) -> Option<Catch> {
        let doc = self.doc.clone()?;
        let root = self.root.clone();
        let state = self.form.as_ref();
        let form = state.and_then(|s| doc.forms.get(s.index));
        let item = state
            .and_then(|s| s.current)
            .and_then(|i| form.and_then(|f| f.items.get(i)));
        let scopes: Vec<&[Catch]> = [
            item.map(|i| i.catches.as_slice()),
            form.map(|f| f.catches.as_slice()),
            Some(doc.catches.as_slice()),
            root.as_ref()
                .filter(|r| r.url != doc.url)
                .map(|r| r.catches.as_slice()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let model = &mut self.model;
        select_catch(&scopes, &event.name, count, |cond| {
            model.eval_bool(cond).unwrap_or(false)
        })
        .cloned()
    }

    /// The platform's default handler (§5.2.5).
    fn default_handler(&mut self, event: Event) -> Flow {
        let name = event.name.as_str();
        let is = |prefix: &str| crate::event::event_matches(prefix, name);
        if is(names::NOINPUT) || is(names::NOMATCH) || is("help") || is("maxspeechtimeout") {
            if self.form.is_none() {
                return Flow::Jump(Jump::End(SessionEnd::Exit { value: None }));
            }
            if let Some(state) = self.form.as_mut() {
                state.skip_prompts = false;
            }
            return Flow::Continue;
        }
        if is("cancel") {
            if let Some(state) = self.form.as_mut() {
                state.skip_prompts = true;
            }
            return Flow::Continue;
        }
        if is("connection.disconnect") {
            return Flow::Jump(Jump::End(self.hangup_end()));
        }
        if is("exit") {
            return Flow::Jump(Jump::End(SessionEnd::Exit { value: None }));
        }
        Flow::Jump(Jump::End(error_end(&event)))
    }

    /// How the session ends once the caller is gone.
    fn hangup_end(&self) -> SessionEnd {
        if self.disconnected {
            SessionEnd::Disconnect
        } else {
            SessionEnd::Hangup
        }
    }

    /// Runs content in a fresh anonymous scope with `locals` (name, expression) declared.
    async fn run_anonymous(
        &mut self,
        content: &[Stmt],
        locals: &[(&str, &str)],
    ) -> Result<Flow, Event> {
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
            result = self.exec_boxed(content).await;
        }
        self.model.pop_scope(Scope::Anonymous);
        result
    }

    /// A property in scope: current item, then form, then document, then root (§6.3).
    fn property(&self, name: &str) -> Option<String> {
        let document = self.doc.as_ref()?;
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

    /// A duration property, or `default` if absent or malformed (with a warning).
    fn duration_property(&self, name: &str, default: std::time::Duration) -> std::time::Duration {
        match self.property(name) {
            None => default,
            Some(text) => crate::document::parse_duration(&text).unwrap_or_else(|| {
                self.io.emit(Output::Log {
                    label: Some("vxml.warning".to_owned()),
                    text: format!("property {name}={text:?} is not a duration; using {default:?}"),
                });
                default
            }),
        }
    }
}

/// The session end for an uncaught event. `error.badfetch.http.404` and its kin end as
/// `error.badfetch` (the status is in the message), so platforms see one stable name.
fn error_end(event: &Event) -> SessionEnd {
    let name = if event.name.starts_with("error.badfetch.") {
        names::BADFETCH.to_owned()
    } else {
        event.name.clone()
    };
    SessionEnd::Error {
        event: name,
        message: event.message.clone(),
    }
}
