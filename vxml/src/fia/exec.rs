//! Executable content (VoiceXML 2.0 §5.3, 2.1 §5-6) and the transitions it makes: `<goto>`,
//! `<submit>`, `<return>`, fetches of documents, scripts and data.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::platform::{FetchSpec, Output, Request, Response};
use super::{Flow, Interp, ItemState, Jump, RootChoice, no_context, semantic};
use crate::document::{Document, FetchAttrs, GotoTarget, ItemKind, PromptNode, Stmt, UriSource};
use crate::event::{Event, names};
use crate::prompt::{Enumerated, RenderError, normalise_space, render};
use crate::script::{DataModel, Scope, Value, push_string_literal};
use crate::session::{Enctype, FetchPurpose, Fetched, FormFile, Method, SessionEnd};

/// Most iterations of an executable `<foreach>`.
const MAX_FOREACH: usize = 10_000;

impl Interp {
    /// [`Interp::exec`], boxed for recursion (`<if>`, `<foreach>`).
    pub(super) fn exec_boxed<'a>(
        &'a mut self,
        stmts: &'a [Stmt],
    ) -> Pin<Box<dyn Future<Output = Result<Flow, Event>> + Send + 'a>> {
        Box::pin(self.exec(stmts))
    }

    /// Executes statements in order until one transfers control.
    async fn exec(&mut self, stmts: &[Stmt]) -> Result<Flow, Event> {
        for stmt in stmts {
            if let Flow::Jump(jump) = self.exec_one(stmt).await? {
                return Ok(Flow::Jump(jump));
            }
        }
        Ok(Flow::Continue)
    }

    /// Executes one statement.
    async fn exec_one(&mut self, stmt: &Stmt) -> Result<Flow, Event> {
        let sem = |e: crate::script::ScriptError| semantic(&e);
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
            Stmt::Script { source, src, fetch } => match src {
                None => self.model.run_script(source).map_err(sem)?,
                Some(src) => {
                    let uri = self.uri_value(src)?;
                    let url = self.resolve(&uri)?.0;
                    let spec = self.fetch_spec(url, FetchPurpose::Script, fetch);
                    let fetched = self.fetch(spec).await?;
                    // ECMAScript as fetched, decoded by its charset: not XML, so never repaired.
                    let text = crate::document::decode_text(
                        &fetched.body,
                        fetched.content_type.as_deref(),
                    );
                    self.model.run_script(&text).map_err(sem)?;
                }
            },
            Stmt::If(branches) => {
                for (cond, body) in branches {
                    let taken = match cond {
                        Some(cond) => self.model.eval_bool(cond).map_err(sem)?,
                        None => true,
                    };
                    if taken {
                        return self.exec_boxed(body).await;
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
                        _ => {}
                    }
                }
                self.io.emit(Output::Log {
                    label: label.clone(),
                    text: normalise_space(&text),
                });
            }
            Stmt::Reprompt => {
                if let Some(state) = self.form.as_mut() {
                    state.reprompt = true;
                }
            }
            Stmt::Clear(names) => self.clear(names)?,
            Stmt::Exit { expr, namelist } => {
                let value = match expr {
                    Some(expr) => self.model.eval_optional_string(expr).map_err(sem)?,
                    None if !namelist.is_empty() => {
                        let values = self.namelist_json(namelist)?;
                        Some(values_as_json(&values))
                    }
                    None => None,
                };
                return Ok(Flow::Jump(Jump::End(SessionEnd::Exit { value })));
            }
            Stmt::Disconnect { namelist } => {
                let values = self.namelist_strings(namelist)?;
                self.io.emit(Output::Disconnect { values });
                self.disconnected = true;
                return Err(Event::new(
                    names::HANGUP,
                    "the application ran <disconnect>",
                ));
            }
            Stmt::Throw { event, message } => {
                let name = self.uri_value(event)?;
                let message = match message {
                    Some(expr) => self.model.eval_string(expr).map_err(sem)?,
                    None => String::new(),
                };
                return Err(Event::new(name, message));
            }
            Stmt::Return {
                namelist,
                event,
                message,
            } => {
                if let Some(event) = event {
                    let name = self.uri_value(event)?;
                    let message = match message {
                        Some(expr) => self.model.eval_string(expr).map_err(sem)?,
                        None => String::new(),
                    };
                    return Ok(Flow::Jump(Jump::Return(Err(Event::new(name, message)))));
                }
                let values = self.namelist_json(namelist)?;
                return Ok(Flow::Jump(Jump::Return(Ok(values))));
            }
            Stmt::Goto {
                target: GotoTarget::Item(target),
                ..
            } => {
                let name = self.uri_value(target)?;
                let index = self
                    .doc
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
                return Ok(Flow::Jump(Jump::Item(index)));
            }
            Stmt::Goto {
                target: GotoTarget::Uri(target),
                fetch,
            } => {
                let uri = self.uri_value(target)?;
                return self.goto(&uri, fetch).await.map(Flow::Jump);
            }
            Stmt::Submit {
                next,
                namelist,
                post,
                multipart,
                fetch,
            } => {
                let uri = self.uri_value(next)?;
                let names = if namelist.is_empty() {
                    self.input_item_names()
                } else {
                    namelist.clone()
                };
                let (form, files) = self.form_values(&names)?;
                let (url, fragment) = self.resolve(&uri)?;
                let mut spec = self.fetch_spec(url, FetchPurpose::Submit, fetch);
                spec.method = if *post || !files.is_empty() {
                    Method::Post
                } else {
                    Method::Get
                };
                spec.enctype = if *multipart || !files.is_empty() {
                    Enctype::Multipart
                } else {
                    Enctype::UrlEncoded
                };
                spec.form = form;
                spec.files = files;
                return self.submit(spec, fragment).await.map(Flow::Jump);
            }
            Stmt::Data {
                src,
                name,
                namelist,
                post,
                multipart,
                fetch,
            } => {
                let uri = self.uri_value(src)?;
                let (url, _) = self.resolve(&uri)?;
                let (form, files) = self.form_values(namelist)?;
                let mut spec = self.fetch_spec(url, FetchPurpose::Data, fetch);
                spec.method = if *post { Method::Post } else { Method::Get };
                spec.enctype = if *multipart || !files.is_empty() {
                    Enctype::Multipart
                } else {
                    Enctype::UrlEncoded
                };
                spec.form = form;
                spec.files = files;
                let fetched = self.fetch(spec).await?;
                let text = crate::document::decode(&fetched.body, fetched.content_type.as_deref())
                    .map_err(|encoding| {
                        Event::new(
                            names::BADFETCH,
                            format!("data {} is not valid {encoding} text", fetched.url),
                        )
                    })?;
                let limit = self.limits.max_document_bytes;
                if crate::document::expansion::expanded_len(&text, limit as u64).is_err() {
                    return Err(Event::new(
                        names::BADFETCH,
                        format!(
                            "data {} would grow past {limit} bytes by expanding its entity references (fetch.max_document_bytes); declare smaller entities or reference them fewer times",
                            fetched.url
                        ),
                    ));
                }
                if let Err(e) = roxmltree::Document::parse_with_options(
                    &text,
                    roxmltree::ParsingOptions {
                        allow_dtd: true,
                        ..roxmltree::ParsingOptions::default()
                    },
                ) {
                    return Err(Event::new(
                        names::BADFETCH,
                        format!("data {} is not well-formed XML: {e}", fetched.url),
                    ));
                }
                if let Some(name) = name {
                    self.assign_dom(name, &text)?;
                }
            }
            Stmt::Foreach { array, item, body } => {
                self.model.push_scope(Scope::Anonymous).map_err(sem)?;
                let result = self.foreach(array, item, body).await;
                self.model.pop_scope(Scope::Anonymous);
                return result;
            }
        }
        Ok(Flow::Continue)
    }

    /// The loop of an executable `<foreach>`, inside its own scope.
    async fn foreach(&mut self, array: &str, item: &str, body: &[Stmt]) -> Result<Flow, Event> {
        let sem = |e: crate::script::ScriptError| semantic(&e);
        self.model
            .declare(
                "__foreach",
                Some(&format!("Array.prototype.slice.call({array})")),
            )
            .map_err(sem)?;
        let length: usize = self
            .model
            .eval_string("__foreach.length")
            .map_err(sem)?
            .parse()
            .unwrap_or(0);
        for index in 0..length.min(MAX_FOREACH) {
            self.model
                .declare(item, Some(&format!("__foreach[{index}]")))
                .map_err(sem)?;
            if let Flow::Jump(jump) = self.exec_boxed(body).await? {
                return Ok(Flow::Jump(jump));
            }
        }
        Ok(Flow::Continue)
    }

    /// Declares `name` holding a `<data>` result as a read-only DOM (VoiceXML 2.1 §5).
    fn assign_dom(&mut self, name: &str, xml: &str) -> Result<(), Event> {
        self.model.declare_dom(name, xml).map_err(|e| match e {
            crate::script::ScriptError::Data(_) => Event::new(names::BADFETCH, e.to_string()),
            other => semantic(&other),
        })
    }

    /// Renders one prompt into the outbox; after a disconnect nobody listens, so none is.
    pub(super) fn queue_prompt(
        &mut self,
        prompt: &crate::document::PromptElement,
    ) -> Result<(), Event> {
        let Some(document) = self.doc.clone() else {
            return Ok(());
        };
        if self.io.hung_up() {
            return Ok(());
        }
        let bargein = self.property("bargein").is_none_or(|v| v != "false");
        let choices = self.enumerated();
        match render(
            prompt,
            &mut self.model,
            &document.base,
            bargein,
            &choices,
            &self.clips,
        ) {
            Ok(rendered) => {
                let chars: usize = rendered
                    .items
                    .iter()
                    .map(|item| match item {
                        crate::prompt::PromptItem::Audio {
                            fallback: Some(text),
                            ..
                        } => text.chars().count(),
                        other => other.spoken_text().map_or(0, |text| text.chars().count()),
                    })
                    .sum();
                if chars > self.limits.max_prompt_chars {
                    return Err(Event::new(
                        names::NORESOURCE,
                        format!(
                            "a prompt of {chars} characters is longer than text-to-speech may speak at once ({} characters, vxml.max_prompt_chars); split it or shorten it",
                            self.limits.max_prompt_chars
                        ),
                    ));
                }
                if let Some(timeout) = prompt.timeout {
                    self.prompt_timeout = Some(timeout);
                }
                if !rendered.items.is_empty() {
                    // VoiceXML 2.0 §4.1.5.1: the prompt's bargeintype, else the property.
                    let hotword = prompt.hotword.unwrap_or_else(|| {
                        self.property("bargeintype")
                            .is_some_and(|t| t.trim().eq_ignore_ascii_case("hotword"))
                    });
                    let hotword = hotword && rendered.bargein;
                    self.io.emit(Output::Prompt {
                        prompt: rendered,
                        hotword,
                    });
                }
                Ok(())
            }
            Err(RenderError::Script(e)) => Err(semantic(&e)),
            Err(e @ RenderError::BadUri { .. }) => Err(Event::new(names::BADFETCH, e.to_string())),
        }
    }

    /// What `<enumerate>` lists for the current item: menu choices or field options.
    fn enumerated(&self) -> Vec<Enumerated> {
        let item = self
            .doc
            .as_ref()
            .zip(self.form.as_ref())
            .and_then(|(d, s)| {
                d.forms
                    .get(s.index)
                    .and_then(|f| s.current.and_then(|i| f.items.get(i)))
            });
        let choices = match item.map(|i| &i.kind) {
            Some(ItemKind::Menu(menu)) => &menu.choices,
            Some(ItemKind::Field(field)) => &field.options,
            _ => return Vec::new(),
        };
        choices
            .iter()
            .map(|c| Enumerated {
                prompt: c.text.clone(),
                dtmf: c.dtmf.clone(),
            })
            .collect()
    }

    /// `<goto next>`: a dialog of this document (`#id`) or another document.
    pub(super) async fn goto(&mut self, uri: &str, fetch: &FetchAttrs) -> Result<Jump, Event> {
        if let Some(id) = uri.strip_prefix('#') {
            let document = self.doc.as_ref().ok_or_else(no_context)?;
            return match document.form_index(id) {
                Some(index) => Ok(Jump::Form(index)),
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
        let spec = self.fetch_spec(url, FetchPurpose::Document, fetch);
        self.fetch_document(spec, fragment, false).await
    }

    /// A `<submit>`: the response is the next document; an empty body ends the session.
    async fn submit(&mut self, spec: FetchSpec, fragment: Option<String>) -> Result<Jump, Event> {
        let url = spec.url.clone();
        let fetched = self.fetch(spec).await?;
        if fetched.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Jump::End(SessionEnd::Exit { value: None }));
        }
        let doc = self.parse_document(&url, fetched)?;
        let root = self.root_for(&doc, false, true).await?;
        Ok(Jump::Document {
            doc,
            root,
            fragment,
        })
    }

    /// Fetches and parses a document and, when it names a new application root, the root.
    /// `fresh` starts a new application whatever the current root (initial document,
    /// subdialog).
    pub(super) async fn fetch_document(
        &mut self,
        spec: FetchSpec,
        fragment: Option<String>,
        fresh: bool,
    ) -> Result<Jump, Event> {
        let url = spec.url.clone();
        let fetched = self.fetch(spec).await?;
        let doc = self.parse_document(&url, fetched)?;
        let root = self.root_for(&doc, fresh, false).await?;
        Ok(Jump::Document {
            doc,
            root,
            fragment,
        })
    }

    /// Parses a fetched document.
    fn parse_document(&self, requested: &Url, fetched: Fetched) -> Result<Arc<Document>, Event> {
        let url = Url::parse(&fetched.url).unwrap_or_else(|_| requested.clone());
        self.documents
            .get_or_parse(
                &url,
                fetched.content_type.as_deref(),
                &fetched.body,
                self.limits.max_document_bytes,
            )
            .map_err(|e| Event::new(names::BADFETCH, e.to_string()))
    }

    /// What loading `doc` does to the application root, fetching a new root if needed.
    /// A `<submit>` (`submitted`) to the root itself reloads it; a `<goto>` keeps it.
    async fn root_for(
        &mut self,
        doc: &Document,
        fresh: bool,
        submitted: bool,
    ) -> Result<RootChoice, Event> {
        let (current, requested) = if fresh {
            (None, None)
        } else {
            (
                self.root.as_ref().map(|r| r.url.clone()),
                self.root_requested.clone(),
            )
        };
        let Some(uri) = doc.application.as_deref() else {
            // Leaf to its own root (VoiceXML 2.0 §1.5.2): a <goto> keeps the application;
            // a <submit> loads the root again, so its variables start afresh (IR 73, 74).
            return Ok(if current.as_ref() == Some(&doc.url) {
                if submitted {
                    RootChoice::Reload
                } else {
                    RootChoice::Keep
                }
            } else {
                RootChoice::Replace(None)
            });
        };
        let mut url = doc.base.join(uri).map_err(|e| {
            Event::new(
                names::BADFETCH,
                format!(
                    "application={uri:?} cannot be resolved against {}: {e}",
                    doc.url
                ),
            )
        })?;
        url.set_fragment(None);
        if current.as_ref() == Some(&url) || requested.as_ref() == Some(&url) {
            return Ok(RootChoice::Keep);
        }
        let spec = self.fetch_spec(url.clone(), FetchPurpose::Document, &FetchAttrs::default());
        let fetched = self.fetch(spec).await?;
        let root = self.parse_document(&url, fetched)?;
        // Redirected to the root already loaded: the same application.
        if current.as_ref() == Some(&root.url) {
            return Ok(RootChoice::Keep);
        }
        self.root_requested = Some(url);
        Ok(RootChoice::Replace(Some(root)))
    }

    /// Fetches `spec`; a failure is `error.badfetch` naming the URL and the status.
    pub(super) async fn fetch(&mut self, spec: FetchSpec) -> Result<Fetched, Event> {
        let url = spec.url.to_string();
        match self.io.ask(Request::Fetch(spec)).await {
            Response::Fetched(Ok(fetched)) => Ok(fetched),
            Response::Fetched(Err(failure)) => {
                let status = failure
                    .status
                    .map_or_else(|| "no HTTP status".to_owned(), |s| format!("HTTP {s}"));
                // VoiceXML 2.0 §5.2.6 names the HTTP status in the event.
                let name = match failure.status {
                    Some(code) => format!("{}.http.{code}", names::BADFETCH),
                    None => names::BADFETCH.to_owned(),
                };
                Err(Event::new(
                    name,
                    format!("fetching {url} failed: {status}: {}", failure.message),
                ))
            }
            Response::Hangup => {
                self.hangup_thrown = true;
                Err(Event::new(names::HANGUP, "the caller hung up"))
            }
            Response::Error { event, message } => Err(Event::new(event, message)),
            other => Err(Event::new(
                names::BADFETCH,
                format!("fetching {url}: unexpected platform answer {other:?}"),
            )),
        }
    }

    /// A fetch of `url` with the element's fetch attributes, defaulted from properties.
    pub(super) fn fetch_spec(
        &self,
        url: Url,
        purpose: FetchPurpose,
        attrs: &FetchAttrs,
    ) -> FetchSpec {
        let prefix = match purpose {
            FetchPurpose::Document | FetchPurpose::Submit => "document",
            FetchPurpose::Script => "script",
            FetchPurpose::Data => "data",
            FetchPurpose::Grammar => "grammar",
        };
        let duration = |attr: &Option<String>, property: &str| {
            attr.clone()
                .or_else(|| self.property(property))
                .and_then(|text| crate::document::parse_duration(&text))
        };
        let fetchaudio = attrs
            .fetchaudio
            .clone()
            .or_else(|| self.property("fetchaudio"))
            .filter(|a| !a.trim().is_empty())
            .and_then(|a| self.base().and_then(|b| b.join(&a).ok()))
            .map(|u| u.to_string());
        FetchSpec {
            url,
            method: Method::Get,
            purpose,
            form: Vec::new(),
            files: Vec::new(),
            enctype: Enctype::UrlEncoded,
            timeout: duration(&attrs.timeout, "fetchtimeout"),
            maxage: duration(&attrs.maxage, &format!("{prefix}maxage")),
            maxstale: duration(&attrs.maxstale, &format!("{prefix}maxstale")),
            fetchaudio: if matches!(purpose, FetchPurpose::Document | FetchPurpose::Submit) {
                fetchaudio
            } else {
                None
            },
            // §6.3.5: properties only (no attribute form); the defaults are the platform's.
            fetchaudio_delay: self
                .property("fetchaudiodelay")
                .and_then(|text| crate::document::parse_duration(&text))
                .unwrap_or(crate::session::DEFAULT_FETCHAUDIO_DELAY),
            fetchaudio_minimum: self
                .property("fetchaudiominimum")
                .and_then(|text| crate::document::parse_duration(&text))
                .unwrap_or(crate::session::DEFAULT_FETCHAUDIO_MINIMUM),
        }
    }

    /// The base URL of the current document.
    fn base(&self) -> Option<&Url> {
        self.doc.as_ref().map(|d| &d.base)
    }

    /// Resolves `uri` against the document base, splitting off the fragment.
    pub(super) fn resolve(&self, uri: &str) -> Result<(Url, Option<String>), Event> {
        let base = self.base().ok_or_else(no_context)?;
        let mut url = base.join(uri.trim()).map_err(|e| {
            Event::new(
                names::BADFETCH,
                format!("URI {uri:?} cannot be resolved against {base}: {e}"),
            )
        })?;
        let fragment = url.fragment().filter(|f| !f.is_empty()).map(str::to_owned);
        url.set_fragment(None);
        Ok((url, fragment))
    }

    /// A literal attribute or the string value of its expression form.
    pub(super) fn uri_value(&mut self, source: &UriSource) -> Result<String, Event> {
        match source {
            UriSource::Literal(text) => Ok(text.clone()),
            UriSource::Expr(expr) => self.model.eval_string(expr).map_err(|e| semantic(&e)),
        }
    }

    /// Names of the current form's input item variables (the default `namelist`).
    fn input_item_names(&self) -> Vec<String> {
        self.doc
            .as_ref()
            .zip(self.form.as_ref())
            .and_then(|(d, s)| d.forms.get(s.index))
            .map(|form| {
                form.items
                    .iter()
                    .filter(|i| i.is_input() && !matches!(i.kind, ItemKind::Menu(_)))
                    .map(|i| i.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// String values of `names`; recordings become files.
    fn form_values(&mut self, names: &[String]) -> Result<FormValues, Event> {
        let mut form = Vec::with_capacity(names.len());
        let mut files = Vec::new();
        for name in names {
            if let Some(recording) = self.recordings.get(name)
                && self
                    .model
                    .eval_bool(&format!("typeof {name} === 'object' && {name} !== null && {name}.__recording === true"))
                    .unwrap_or(false)
            {
                files.push(FormFile {
                    name: name.clone(),
                    content_type: recording.content_type.clone(),
                    data: recording.audio.clone(),
                });
                continue;
            }
            let value = match self.model.eval_string(&format!(
                "(function(v){{return (v!==null&&typeof v==='object')?JSON.stringify(v):String(v);}})({name})"
            )) {
                Ok(value) => value,
                // Report the failure against the name as written.
                Err(_) => self.model.eval_string(name).map_err(|e| semantic(&e))?,
            };
            form.push((name.clone(), value));
        }
        Ok((form, files))
    }

    /// `ToString` values of `names` (for `<disconnect namelist>`).
    fn namelist_strings(&mut self, names: &[String]) -> Result<Vec<(String, String)>, Event> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let value = self.model.eval_string(name).map_err(|e| semantic(&e))?;
            out.push((name.clone(), value));
        }
        Ok(out)
    }

    /// Values of `names` carried across execution contexts as JSON.
    pub(super) fn namelist_json(
        &mut self,
        names: &[String],
    ) -> Result<Vec<(String, Value)>, Event> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push((name.clone(), self.json_value(name)?));
        }
        Ok(out)
    }

    /// The value of `expr` as a host value (JSON; `undefined` stays undefined).
    pub(super) fn json_value(&mut self, expr: &str) -> Result<Value, Event> {
        let json = self
            .model
            .eval_optional_string(&format!("JSON.stringify(({expr}))"))
            .map_err(|e| semantic(&e))?;
        Ok(json.map_or(Value::Undefined, Value::Json))
    }

    /// `<clear>` (§5.3.3): undefine the variables and reset their items' counters.
    fn clear(&mut self, names: &[String]) -> Result<(), Event> {
        let document = self.doc.clone().ok_or_else(no_context)?;
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

/// Submitted text values and files.
type FormValues = (Vec<(String, String)>, Vec<FormFile>);

/// `{"name": value, ...}` as JSON text.
fn values_as_json(values: &[(String, Value)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string_literal(&mut out, name);
        out.push(':');
        match value {
            Value::Json(json) => out.push_str(json),
            _ => out.push_str("null"),
        }
    }
    out.push('}');
    out
}

/// Parses a duration attribute, or `default`.
pub(super) fn duration_or(text: Option<&str>, default: Duration) -> Duration {
    text.and_then(crate::document::parse_duration)
        .unwrap_or(default)
}
