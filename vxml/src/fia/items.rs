//! The collect and process phases of Appendix C for each form item kind: prompts chosen by
//! the prompt counter, the active grammars (item, form, links, document- and
//! application-scoped dialogs), the platform wait, and filling variables and running
//! `<filled>`.

use std::sync::Arc;
use std::time::Duration;

use super::exec::duration_or;
use super::grammars::{self, Compiled, Mode, SemValue};
use super::platform::{
    Collect, Collected, RecordSpec, Request, Response, SpeechTiming, TransferSpec,
};
use super::{Flow, Interp, Jump, MAX_CLIPS, MAX_SUBDIALOG_DEPTH, RootChoice, no_context, semantic};
use crate::document::{
    Document, FetchAttrs, Filled, Form, FormItem, GrammarElement, ItemKind, Link, PromptElement,
    Subdialog, Target, UriSource,
};
use crate::event::{Event, names};
use crate::script::{DataModel, Scope, Value, push_string_literal};
use crate::session::{FetchPurpose, Method, TransferKind, TransferOutcome};
use crate::srgs;

/// Most external grammars (and linked inline grammars) a session keeps parsed.
const MAX_CACHED_GRAMMARS: usize = 64;
/// Most external grammars one grammar's rule references may pull in.
const MAX_LINKED_GRAMMARS: usize = 32;

/// Which document a grammar's owner is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocSel {
    /// The current (leaf) document.
    Leaf,
    /// The application root.
    Root,
}

/// What a match of an active grammar does.
#[derive(Debug, Clone)]
enum Owner {
    /// Fills the current item.
    Item,
    /// A form-level grammar of the current form: fills slots.
    Form,
    /// A menu choice.
    Choice {
        doc: DocSel,
        form: usize,
        choice: usize,
    },
    /// A `<link>`.
    Link(Link),
    /// A document-scoped form's grammar: go to that form.
    Dialog { doc: DocSel, form: usize },
}

impl Interp {
    /// The collect and process phases for item `item` of form `form`.
    pub(super) async fn collect_item(&mut self, form: usize, item: usize) -> Result<Flow, Event> {
        let doc = self.doc.clone().ok_or_else(no_context)?;
        let form_el = doc.forms.get(form).ok_or_else(no_context)?;
        let item_el = form_el.items.get(item).ok_or_else(no_context)?;
        let skip_prompts = match self.form.as_mut() {
            Some(state) => {
                state.current = Some(item);
                std::mem::take(&mut state.skip_prompts)
            }
            None => false,
        };
        match &item_el.kind {
            ItemKind::Block(content) => {
                self.model
                    .assign_value(&item_el.name, &Value::Bool(true))
                    .map_err(|e| semantic(&e))?;
                self.run_anonymous(content, &[]).await
            }
            ItemKind::Object { classid } => Err(Event::new(
                "error.unsupported.objectname",
                format!("<object classid={classid:?}>: this platform has no objects"),
            )),
            ItemKind::Subdialog(sub) => {
                if !skip_prompts {
                    self.queue_item_prompts(item, &item_el.prompts)?;
                }
                self.subdialog(&doc, form_el, item_el, sub).await
            }
            ItemKind::Record(record) => {
                if let Some(flow) = self.before_wait()? {
                    return Ok(flow);
                }
                if !skip_prompts {
                    self.queue_item_prompts(item, &item_el.prompts)?;
                }
                let spec = RecordSpec {
                    beep: record.beep,
                    max_time: duration_or(record.maxtime.as_deref(), Duration::from_secs(60)),
                    final_silence: duration_or(
                        record.finalsilence.as_deref(),
                        Duration::from_secs(3),
                    ),
                    dtmfterm: record.dtmfterm,
                    timeout: self.collect_timeout(),
                    media_type: record
                        .media_type
                        .clone()
                        .unwrap_or_else(|| "audio/wav".to_owned()),
                };
                let response = self.io.ask(Request::Record(spec)).await;
                self.steps = 0;
                self.recorded(form_el, item, item_el, response).await
            }
            ItemKind::Transfer(transfer) => {
                if let Some(flow) = self.before_wait()? {
                    return Ok(flow);
                }
                if !skip_prompts {
                    self.queue_item_prompts(item, &item_el.prompts)?;
                }
                let dest = match &transfer.dest {
                    Some(dest) => self.uri_value(dest)?,
                    None => {
                        return Err(Event::new(
                            "error.connection.baddestination",
                            "<transfer> has no dest or destexpr",
                        ));
                    }
                };
                let kind = match transfer.kind.as_str() {
                    "bridge" => TransferKind::Bridge,
                    "consultation" => TransferKind::Consultation,
                    _ => TransferKind::Blind,
                };
                let aai = match &transfer.aai {
                    Some(aai) => Some(self.uri_value(aai)?),
                    None => None,
                };
                let spec = TransferSpec {
                    dest,
                    kind,
                    connect_timeout: duration_or(
                        transfer.connecttimeout.as_deref(),
                        Duration::from_secs(30),
                    ),
                    max_time: transfer
                        .maxtime
                        .as_deref()
                        .and_then(crate::document::parse_duration)
                        .filter(|d| !d.is_zero()),
                    aai,
                };
                let response = self.io.ask(Request::Transfer(spec)).await;
                self.steps = 0;
                self.transferred(form_el, item, item_el, response).await
            }
            ItemKind::Field(_) | ItemKind::Initial | ItemKind::Menu(_) => {
                if let Some(flow) = self.before_wait()? {
                    return Ok(flow);
                }
                if !skip_prompts {
                    self.queue_item_prompts(item, &item_el.prompts)?;
                }
                self.listen(&doc, form, form_el, item, item_el).await
            }
        }
    }

    /// Checks the caller is still there before a wait: once gone, the hangup event is thrown
    /// once, and a later wait ends the session.
    fn before_wait(&mut self) -> Result<Option<Flow>, Event> {
        if !(self.io.hung_up() || self.disconnected) {
            return Ok(None);
        }
        if !self.hangup_thrown {
            self.hangup_thrown = true;
            return Err(Event::new(names::HANGUP, "the caller hung up"));
        }
        Ok(Some(Flow::Jump(Jump::End(self.hangup_end()))))
    }

    /// Queues the prompts the prompt counter selects (§4.1.6), then counts the visit.
    fn queue_item_prompts(&mut self, item: usize, prompts: &[PromptElement]) -> Result<(), Event> {
        let count = match self.form.as_mut().and_then(|f| f.items.get_mut(item)) {
            Some(state) => {
                state.prompt_count = state.prompt_count.saturating_add(1);
                state.prompt_count
            }
            None => 1,
        };
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

    /// The `confidencelevel` property (§6.3.2): 0.0 to 1.0, default 0.5.
    fn confidence_level(&self) -> f32 {
        const DEFAULT: f32 = 0.5;
        match self.property("confidencelevel") {
            None => DEFAULT,
            Some(text) => match text.trim().parse::<f32>() {
                Ok(level) if (0.0..=1.0).contains(&level) => level,
                _ => {
                    self.io.emit(super::platform::Output::Log {
                        label: Some("vxml.warning".to_owned()),
                        text: format!(
                            "property confidencelevel={text:?} is not a number from 0.0 to 1.0; using {DEFAULT}"
                        ),
                    });
                    DEFAULT
                }
            },
        }
    }

    /// The `timeout` for the next collection: a queued prompt's `timeout`, else the property.
    fn collect_timeout(&mut self) -> Duration {
        let property = self.duration_property("timeout", Duration::from_secs(5));
        self.prompt_timeout.take().unwrap_or(property)
    }

    /// Collects input for a field, `<initial>` or menu and processes it.
    async fn listen(
        &mut self,
        doc: &Arc<Document>,
        form: usize,
        form_el: &Form,
        item: usize,
        item_el: &FormItem,
    ) -> Result<Flow, Event> {
        let active = self.active_grammars(doc, form, form_el, item_el).await?;
        if !active.is_empty()
            && active
                .iter()
                .all(|(grammar, _)| matches!(grammar.as_ref(), Compiled::Inactive(_)))
        {
            // §5.2.6: grammars, but none this platform can use.
            let reasons: Vec<&str> = active
                .iter()
                .filter_map(|(grammar, _)| match grammar.as_ref() {
                    Compiled::Inactive(reason) => Some(reason.as_str()),
                    _ => None,
                })
                .collect();
            return Err(Event::new(
                names::UNSUPPORTED_FORMAT,
                format!("no usable grammar is active: {}", reasons.join("; ")),
            ));
        }
        let inputmodes = self
            .property("inputmodes")
            .unwrap_or_else(|| "dtmf voice".to_owned());
        let grammars: Vec<Arc<Compiled>> = active.iter().map(|(g, _)| Arc::clone(g)).collect();
        let collect = Collect {
            dtmf: inputmodes.contains("dtmf") && grammars::any_in_mode(&grammars, Mode::Dtmf),
            voice: inputmodes.contains("voice") && grammars::any_in_mode(&grammars, Mode::Voice),
            grammars,
            timeout: self.collect_timeout(),
            interdigit: self.duration_property("interdigittimeout", Duration::from_secs(3)),
            termchar: self
                .property("termchar")
                .map_or(Some('#'), |t| t.trim().chars().next()),
            termtimeout: self.duration_property("termtimeout", Duration::ZERO),
            confidence_level: self.confidence_level(),
            speech: SpeechTiming {
                complete: self.duration_property("completetimeout", SpeechTiming::DEFAULT.complete),
                incomplete: self
                    .duration_property("incompletetimeout", SpeechTiming::DEFAULT.incomplete),
                max_speech: self
                    .duration_property("maxspeechtimeout", SpeechTiming::DEFAULT.max_speech),
            },
        };
        let response = self.io.ask(Request::Collect(collect)).await;
        self.steps = 0;
        let collected = match response {
            Response::Collected(collected) => collected,
            Response::Hangup => {
                self.hangup_thrown = true;
                return Err(Event::new(names::HANGUP, "the caller hung up"));
            }
            Response::Error { event, message } => return Err(Event::new(event, message)),
            other => {
                return Err(Event::new(
                    names::SEMANTIC,
                    format!("unexpected platform answer to a collection: {other:?}"),
                ));
            }
        };
        match collected {
            Collected::NoInput => Err(Event::new(names::NOINPUT, "no input before the timeout")),
            Collected::NoMatch { utterance, mode } => {
                self.set_lastresult(&utterance, mode, 0.0, &SemValue::String(utterance.clone()))?;
                Err(Event::new(
                    names::NOMATCH,
                    "the input matched no active grammar",
                ))
            }
            Collected::Matched {
                grammar,
                utterance,
                mode,
                confidence,
                value,
            } => {
                let Some((_, owner)) = active.into_iter().nth(grammar) else {
                    return Err(Event::new(names::NOMATCH, "the input matched no grammar"));
                };
                let value = self.interpret(value)?;
                self.set_lastresult(&utterance, mode, confidence, &value)?;
                self.process_match(
                    doc, form_el, item, item_el, owner, &utterance, mode, confidence, &value,
                )
                .await
            }
        }
    }

    /// The grammars active for `item_el`, in precedence order, with what each does.
    async fn active_grammars(
        &mut self,
        doc: &Arc<Document>,
        form: usize,
        form_el: &Form,
        item_el: &FormItem,
    ) -> Result<Vec<(Arc<Compiled>, Owner)>, Event> {
        let mut active: Vec<(Arc<Compiled>, Owner)> = Vec::new();
        let modal = matches!(&item_el.kind, ItemKind::Field(f) if f.modal);
        match &item_el.kind {
            ItemKind::Menu(menu) => {
                for (index, choice) in menu.choices.iter().enumerate() {
                    for grammar in &choice.grammars {
                        let owner = Owner::Choice {
                            doc: DocSel::Leaf,
                            form,
                            choice: index,
                        };
                        active.push((self.ready(grammar).await?, owner));
                    }
                }
            }
            ItemKind::Initial => {}
            _ => {
                for grammar in &item_el.grammars {
                    active.push((self.ready(grammar).await?, Owner::Item));
                }
            }
        }
        if modal {
            return Ok(active);
        }
        for link in &item_el.links {
            for grammar in &link.grammars {
                active.push((self.ready(grammar).await?, Owner::Link(link.clone())));
            }
        }
        for grammar in &form_el.grammars {
            active.push((self.ready(grammar).await?, Owner::Form));
        }
        for link in &form_el.links {
            for grammar in &link.grammars {
                active.push((self.ready(grammar).await?, Owner::Link(link.clone())));
            }
        }
        let root = self.root.clone().filter(|r| r.url != doc.url);
        let scopes: Vec<(DocSel, Arc<Document>)> = [
            Some((DocSel::Leaf, Arc::clone(doc))),
            root.map(|r| (DocSel::Root, r)),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (sel, document) in scopes {
            for link in &document.links {
                for grammar in &link.grammars {
                    active.push((self.ready(grammar).await?, Owner::Link(link.clone())));
                }
            }
            for (index, other) in document.forms.iter().enumerate() {
                if !other.document_scope || (sel == DocSel::Leaf && index == form) {
                    continue;
                }
                for item in &other.items {
                    if let ItemKind::Menu(menu) = &item.kind {
                        for (choice_index, choice) in menu.choices.iter().enumerate() {
                            for grammar in &choice.grammars {
                                let owner = Owner::Choice {
                                    doc: sel,
                                    form: index,
                                    choice: choice_index,
                                };
                                active.push((self.ready(grammar).await?, owner));
                            }
                        }
                    }
                }
                for grammar in &other.grammars {
                    let owner = Owner::Dialog {
                        doc: sel,
                        form: index,
                    };
                    active.push((self.ready(grammar).await?, owner));
                }
            }
        }
        Ok(active)
    }

    /// A grammar ready to match: an external grammar is fetched (once per URL and session)
    /// and parsed; the external grammars its rule references name are fetched and linked.
    async fn ready(&mut self, grammar: &GrammarElement) -> Result<Arc<Compiled>, Event> {
        let compiled = &grammar.compiled;
        match compiled.as_ref() {
            Compiled::External { uri } => {
                let uri = match uri {
                    UriSource::Literal(uri) => uri.clone(),
                    UriSource::Expr(expr) => {
                        let text = self.model.eval_string(expr).map_err(|e| semantic(&e))?;
                        let text = text.trim();
                        if text.starts_with("builtin:") {
                            let compiled = grammars::builtin_uri(text).map_err(|e| {
                                Event::new(names::BADFETCH, format!("grammar {text:?}: {e}"))
                            })?;
                            return Ok(Arc::new(compiled.into_iter().next().unwrap_or_else(
                                || Compiled::Inactive(format!("builtin {text} has no form")),
                            )));
                        }
                        self.resolve(text)?.0.to_string()
                    }
                };
                if let Some(cached) = self.grammar_cache.get(&uri) {
                    return Ok(Arc::clone(cached));
                }
                let mut url = url::Url::parse(&uri).map_err(|e| {
                    Event::new(names::BADFETCH, format!("grammar URI {uri:?}: {e}"))
                })?;
                let rule = url.fragment().filter(|f| !f.is_empty()).map(str::to_owned);
                url.set_fragment(None);
                let mut fetched = match self.fetch_grammar(&url).await? {
                    Ok(grammar) => grammar,
                    Err(reason) => {
                        // A format this platform does not read: ignored, like an inline one.
                        self.io.emit(super::platform::Output::Log {
                            label: Some("vxml.warning".to_owned()),
                            text: format!("grammar {uri}: {reason}"),
                        });
                        let inactive = Arc::new(Compiled::Inactive(reason));
                        if self.grammar_cache.len() < MAX_CACHED_GRAMMARS {
                            self.grammar_cache.insert(uri, Arc::clone(&inactive));
                        }
                        return Ok(inactive);
                    }
                };
                if let Some(rule) = rule {
                    // `src="g.grxml#rule"`: that public rule is the root (VoiceXML 2.0 §3.1.1.2).
                    fetched = grammars::rule_of(fetched, &url, &rule)
                        .map_err(|e| Event::new(names::BADFETCH, format!("grammar {uri}: {e}")))?;
                }
                let linked = Arc::new(Compiled::Ready(self.link_grammar(fetched).await?));
                if self.grammar_cache.len() < MAX_CACHED_GRAMMARS {
                    self.grammar_cache.insert(uri, Arc::clone(&linked));
                }
                Ok(linked)
            }
            Compiled::Ready(inline) if !compiled.external_uris().is_empty() => {
                if let Some((_, linked)) = self
                    .linked_inline
                    .iter()
                    .find(|(source, _)| Arc::ptr_eq(source, compiled))
                {
                    return Ok(Arc::clone(linked));
                }
                let linked = Arc::new(Compiled::Ready(self.link_grammar(inline.clone()).await?));
                if self.linked_inline.len() < MAX_CACHED_GRAMMARS {
                    // Holding the source keeps its address from being reused by another.
                    self.linked_inline
                        .push((Arc::clone(compiled), Arc::clone(&linked)));
                }
                Ok(linked)
            }
            _ => Ok(Arc::clone(compiled)),
        }
    }

    /// Fetches and parses the grammar at `url`; a failed fetch or a malformed grammar is
    /// `error.badfetch` naming it. A grammar in a format this platform does not read (JSGF,
    /// or no known form at all) is `Ok(Err(why))`: the fetch succeeded, the grammar is
    /// ignored.
    async fn fetch_grammar(
        &mut self,
        url: &url::Url,
    ) -> Result<Result<srgs::Grammar, String>, Event> {
        let spec = self.fetch_spec(url.clone(), FetchPurpose::Grammar, &FetchAttrs::default());
        let fetched = self.fetch(spec).await?;
        let final_url = url::Url::parse(&fetched.url).unwrap_or_else(|_| url.clone());
        let content_type = fetched.content_type.as_deref();
        let head = String::from_utf8_lossy(&fetched.body[..fetched.body.len().min(64)]);
        if let Some(reason) = grammars::unsupported_format(content_type, &head) {
            return Ok(Err(reason));
        }
        match grammars::from_fetched(
            self.documents.grammars(),
            &fetched.body,
            content_type,
            &final_url,
        ) {
            Ok(grammar) => Ok(Ok(grammar)),
            Err(srgs::GrammarError::UnknownFormat) => Ok(Err(format!(
                "the grammar ({}) is neither SRGS XML nor ABNF and is ignored: this platform reads SRGS 1.0 grammars",
                content_type.unwrap_or("no content type")
            ))),
            Err(e) => Err(Event::new(names::BADFETCH, format!("grammar {url}: {e}"))),
        }
    }

    /// Fetches and links every external grammar `grammar`'s rule references need, and
    /// theirs in turn (at most [`MAX_LINKED_GRAMMARS`]).
    async fn link_grammar(&mut self, mut grammar: srgs::Grammar) -> Result<srgs::Grammar, Event> {
        let mut fetched = 0;
        loop {
            let uris = grammar.external_uris();
            if uris.is_empty() {
                return Ok(grammar);
            }
            for uri in uris {
                fetched += 1;
                if fetched > MAX_LINKED_GRAMMARS {
                    return Err(Event::new(
                        names::BADFETCH,
                        format!(
                            "grammar {uri}: more than {MAX_LINKED_GRAMMARS} external grammars referenced; look for a reference cycle"
                        ),
                    ));
                }
                let external = self.fetch_grammar(&uri).await?.map_err(|reason| {
                    Event::new(
                        names::UNSUPPORTED_FORMAT,
                        format!("grammar {uri}: {reason}"),
                    )
                })?;
                grammar.link_external(&uri, external);
            }
        }
    }

    /// Runs an SISR program in an isolated scope (SISR 1.0 §6: the grammar's scripts see
    /// none of the document's variables) and keeps its value as JSON; other values stay.
    fn interpret(&mut self, value: SemValue) -> Result<SemValue, Event> {
        let SemValue::Script(program) = &value else {
            return Ok(value);
        };
        match self.model.eval_isolated_json(program) {
            Ok(Some(json)) => Ok(SemValue::Json(json)),
            Ok(None) => Ok(SemValue::Json("null".to_owned())),
            Err(e) => Err(Event::new(
                names::SEMANTIC,
                format!("the grammar's semantic interpretation failed: {e}"),
            )),
        }
    }

    /// `application.lastresult$` for the latest recognition (§5.1.5).
    fn set_lastresult(
        &mut self,
        utterance: &str,
        mode: Mode,
        confidence: f32,
        value: &SemValue,
    ) -> Result<(), Event> {
        if !self.model.has_scope(Scope::Application) {
            return Ok(());
        }
        let result = self.result_value(utterance, mode, confidence, value)?;
        self.model
            .declare_value(
                Scope::Application,
                "lastresult$",
                &Value::Array(vec![result]),
            )
            .map_err(|e| semantic(&e))
    }

    /// A result object `{utterance, inputmode, confidence, interpretation}` (§2.3.1), with
    /// `markname` and `marktime` when a mark was played before the input (VoiceXML 2.1 §4).
    fn result_value(
        &mut self,
        utterance: &str,
        mode: Mode,
        confidence: f32,
        value: &SemValue,
    ) -> Result<Value, Event> {
        let interpretation = self.json_value(&value.to_js())?;
        let confidence = if confidence.is_finite() {
            f64::from(confidence.clamp(0.0, 1.0))
        } else {
            1.0
        };
        let mode = match mode {
            Mode::Dtmf => "dtmf",
            Mode::Voice => "voice",
        };
        let mut result = vec![
            ("utterance".to_owned(), Value::String(utterance.to_owned())),
            ("inputmode".to_owned(), Value::String(mode.to_owned())),
            ("confidence".to_owned(), Value::Number(confidence)),
            ("interpretation".to_owned(), interpretation),
        ];
        // VoiceXML 2.1 §4: the last mark played before the input; undefined when none was.
        if let Some(mark) = self.io.lock().mark.clone() {
            let millis = u32::try_from(mark.since.as_millis()).unwrap_or(u32::MAX);
            result.push(("markname".to_owned(), Value::String(mark.name)));
            result.push(("marktime".to_owned(), Value::Number(f64::from(millis))));
        }
        Ok(Value::Object(result))
    }

    /// The process phase for a match of an active grammar.
    #[allow(clippy::too_many_arguments)]
    async fn process_match(
        &mut self,
        doc: &Arc<Document>,
        form_el: &Form,
        item: usize,
        item_el: &FormItem,
        owner: Owner,
        utterance: &str,
        mode: Mode,
        confidence: f32,
        value: &SemValue,
    ) -> Result<Flow, Event> {
        match owner {
            Owner::Item => {
                let ItemKind::Field(field) = &item_el.kind else {
                    return Ok(Flow::Continue);
                };
                let js = value.to_js();
                let slot = &field.slot;
                let extract = format!(
                    "(function(v){{return (v!==null&&typeof v==='object'&&!Array.isArray(v)&&({slot:?} in v))?v[{slot:?}]:v;}})({js})"
                );
                self.fill_field(&item_el.name, &extract, utterance, mode, confidence, value)?;
                self.run_filled(form_el, &[item]).await
            }
            Owner::Form => {
                let input = super::MatchedInput {
                    utterance: utterance.to_owned(),
                    mode,
                    confidence,
                    value: value.clone(),
                };
                self.fill_from_form_grammar(form_el, Some(item), &input)
                    .await
            }
            Owner::Choice {
                doc: sel,
                form,
                choice,
            } => {
                let document = match sel {
                    DocSel::Leaf => Arc::clone(doc),
                    DocSel::Root => self.root.clone().ok_or_else(no_context)?,
                };
                let choice_el = document
                    .forms
                    .get(form)
                    .and_then(|f| f.items.first())
                    .and_then(|i| match &i.kind {
                        ItemKind::Menu(menu) => menu.choices.get(choice),
                        _ => None,
                    })
                    .ok_or_else(no_context)?;
                let target = choice_el.target.clone().ok_or_else(no_context)?;
                let fetch = choice_el.fetch.clone();
                self.follow(sel, &target, &fetch).await
            }
            Owner::Link(link) => self.follow(DocSel::Leaf, &link.target, &link.fetch).await,
            Owner::Dialog { doc: sel, form } => {
                // §3.1.6.1: the input goes with the transition and fills the form's fields.
                self.pending_input = Some(super::MatchedInput {
                    utterance: utterance.to_owned(),
                    mode,
                    confidence,
                    value: value.clone(),
                });
                self.dialog_jump(sel, form)
            }
        }
    }

    /// The jump to dialog `form` of the leaf or root document.
    fn dialog_jump(&self, sel: DocSel, form: usize) -> Result<Flow, Event> {
        match sel {
            DocSel::Leaf => Ok(Flow::Jump(Jump::Form(form))),
            DocSel::Root => {
                let root = self.root.clone().ok_or_else(no_context)?;
                let fragment = root.forms.get(form).map(|f| f.id.clone());
                Ok(Flow::Jump(Jump::Document {
                    doc: root,
                    root: RootChoice::Keep,
                    fragment,
                }))
            }
        }
    }

    /// Fills the form's fields from a form-level grammar's result (§3.1.6.1, mixed
    /// initiative): each field whose slot the result names; a result that is not an object
    /// fills `item` (else the first unfilled field). Then every `<initial>` counts as filled
    /// and the `<filled>` actions run.
    pub(super) async fn fill_from_form_grammar(
        &mut self,
        form_el: &Form,
        item: Option<usize>,
        input: &super::MatchedInput,
    ) -> Result<Flow, Event> {
        let super::MatchedInput {
            utterance,
            mode,
            confidence,
            value,
        } = input;
        let js = value.to_js();
        self.model
            .declare("__mixed", Some(&js))
            .map_err(|e| semantic(&e))?;
        let whole_target = match item {
            Some(item) => Some(item),
            None => {
                let mut first = None;
                for (index, other) in form_el.items.iter().enumerate() {
                    if matches!(other.kind, ItemKind::Field(_))
                        && self
                            .model
                            .eval_bool(&format!("{} === undefined", other.name))
                            .map_err(|e| semantic(&e))?
                    {
                        first = Some(index);
                        break;
                    }
                }
                first
            }
        };
        let mut filled = Vec::new();
        for (index, other) in form_el.items.iter().enumerate() {
            let ItemKind::Field(field) = &other.kind else {
                continue;
            };
            let slot = &field.slot;
            let present = self
                .model
                .eval_bool(&format!(
                    "__mixed!==null&&typeof __mixed==='object'&&({slot:?} in __mixed)&&__mixed[{slot:?}]!==undefined"
                ))
                .map_err(|e| semantic(&e))?;
            let whole = !present
                && whole_target == Some(index)
                && self
                    .model
                    .eval_bool("__mixed===null||typeof __mixed!=='object'")
                    .map_err(|e| semantic(&e))?;
            if present || whole {
                let expr = if present {
                    format!("__mixed[{slot:?}]")
                } else {
                    "__mixed".to_owned()
                };
                self.fill_field(&other.name, &expr, utterance, *mode, *confidence, value)?;
                filled.push(index);
            }
        }
        if filled.is_empty() {
            return Err(Event::new(
                names::NOMATCH,
                "the form grammar's result fills no field",
            ));
        }
        for other in &form_el.items {
            if matches!(other.kind, ItemKind::Initial) {
                self.model
                    .assign_value(&other.name, &Value::Bool(true))
                    .map_err(|e| semantic(&e))?;
            }
        }
        self.run_filled(form_el, &filled).await
    }

    /// Follows a choice's or link's target: a transition or an event.
    async fn follow(
        &mut self,
        sel: DocSel,
        target: &Target,
        fetch: &FetchAttrs,
    ) -> Result<Flow, Event> {
        match target {
            Target::Event { event, message } => {
                let name = self.uri_value(event)?;
                let message = match message {
                    Some(expr) => self.model.eval_string(expr).map_err(|e| semantic(&e))?,
                    None => String::new(),
                };
                Err(Event::new(name, message))
            }
            Target::Uri(uri) => {
                let uri = self.uri_value(uri)?;
                if sel == DocSel::Root
                    && let Some(id) = uri.strip_prefix('#')
                {
                    let root = self.root.clone().ok_or_else(no_context)?;
                    return Ok(Flow::Jump(Jump::Document {
                        doc: root,
                        root: RootChoice::Keep,
                        fragment: Some(id.to_owned()),
                    }));
                }
                self.goto(&uri, fetch).await.map(Flow::Jump)
            }
        }
    }

    /// Assigns a field's value (from `expr`) and its shadow variables.
    fn fill_field(
        &mut self,
        name: &str,
        expr: &str,
        utterance: &str,
        mode: Mode,
        confidence: f32,
        value: &SemValue,
    ) -> Result<(), Event> {
        let shadow = self.result_value(utterance, mode, confidence, value)?;
        self.model
            .assign(name, expr)
            .and_then(|()| self.model.assign_value(&format!("{name}$"), &shadow))
            .map_err(|e| semantic(&e))
    }

    /// Runs the `<filled>` actions triggered by the items `just` filled (Appendix C): those
    /// of each item, then the form-level ones whose conditions hold.
    async fn run_filled(&mut self, form_el: &Form, just: &[usize]) -> Result<Flow, Event> {
        for &index in just {
            let Some(item) = form_el.items.get(index) else {
                continue;
            };
            for filled in &item.filled {
                if let Flow::Jump(jump) = self.run_anonymous(&filled.content, &[]).await? {
                    return Ok(Flow::Jump(jump));
                }
            }
        }
        let just_names: Vec<&str> = just
            .iter()
            .filter_map(|i| form_el.items.get(*i))
            .map(|i| i.name.as_str())
            .collect();
        for filled in &form_el.filled {
            if self.filled_triggers(form_el, filled, &just_names)?
                && let Flow::Jump(jump) = self.run_anonymous(&filled.content, &[]).await?
            {
                return Ok(Flow::Jump(jump));
            }
        }
        Ok(Flow::Continue)
    }

    /// Whether a form-level `<filled>` runs (§2.4): one of its items was just filled, and for
    /// `mode="all"` every one of them is filled.
    fn filled_triggers(
        &mut self,
        form_el: &Form,
        filled: &Filled,
        just: &[&str],
    ) -> Result<bool, Event> {
        let listed: Vec<&str> = if filled.namelist.is_empty() {
            form_el
                .items
                .iter()
                .filter(|i| i.is_input() && !matches!(i.kind, ItemKind::Menu(_)))
                .map(|i| i.name.as_str())
                .collect()
        } else {
            filled.namelist.iter().map(String::as_str).collect()
        };
        if !listed.iter().any(|n| just.contains(n)) {
            return Ok(false);
        }
        if filled.any {
            return Ok(true);
        }
        for name in &listed {
            if self
                .model
                .eval_bool(&format!("{name} === undefined"))
                .map_err(|e| semantic(&e))?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `<subdialog>` (§2.3.4): a new execution context; its `<return>` fills the item.
    async fn subdialog(
        &mut self,
        doc: &Arc<Document>,
        form_el: &Form,
        item_el: &FormItem,
        sub: &Subdialog,
    ) -> Result<Flow, Event> {
        let item = form_el.item_index(&item_el.name).unwrap_or(0);
        if self.depth >= MAX_SUBDIALOG_DEPTH {
            return Err(Event::new(
                names::SEMANTIC,
                format!(
                    "<subdialog name={:?}>: subdialogs nested more than {MAX_SUBDIALOG_DEPTH} deep; look for a subdialog that calls itself",
                    item_el.name
                ),
            ));
        }
        let src = self.uri_value(&sub.src)?;
        let prior_requested = self.root_requested.clone();
        let mut params = Vec::with_capacity(sub.params.len());
        for param in &sub.params {
            params.push((param.name.clone(), self.json_value(&param.expr)?));
        }
        let first = if let Some(id) = src.strip_prefix('#') {
            if doc.form_index(id).is_none() {
                return Err(Event::new(
                    names::BADFETCH,
                    format!(
                        "<subdialog src=\"#{id}\">: {} has no dialog with that id",
                        doc.url
                    ),
                ));
            }
            Jump::Document {
                doc: Arc::clone(doc),
                root: RootChoice::Replace(self.root.clone()),
                fragment: Some(id.to_owned()),
            }
        } else {
            let (url, fragment) = self.resolve(&src)?;
            let mut spec = self.fetch_spec(url, FetchPurpose::Document, &sub.fetch);
            if !sub.namelist.is_empty() {
                let mut form = Vec::new();
                for name in &sub.namelist {
                    let value = self.model.eval_string(name).map_err(|e| semantic(&e))?;
                    form.push((name.clone(), value));
                }
                spec.form = form;
            }
            spec.method = if sub.post { Method::Post } else { Method::Get };
            if sub.multipart {
                spec.enctype = crate::session::Enctype::Multipart;
            }
            let first = self.fetch_document(spec, fragment, true).await;
            self.root_requested = prior_requested;
            first?
        };
        let saved_root = self.root.take();
        let saved_requested = self.root_requested.take();
        let saved_doc = self.doc.take();
        let saved_form = self.form.take();
        if let Err(e) = self.model.enter_context() {
            self.root = saved_root;
            self.root_requested = saved_requested;
            self.doc = saved_doc;
            self.form = saved_form;
            return Err(semantic(&e));
        }
        self.depth += 1;
        let end = self.run_context_boxed(first, params).await;
        self.depth -= 1;
        self.model.leave_context();
        self.root = saved_root;
        self.root_requested = saved_requested;
        self.doc = saved_doc;
        self.form = saved_form;
        match end {
            super::ContextEnd::Exit(end) => Ok(Flow::Jump(Jump::End(end))),
            super::ContextEnd::Return(Err(event)) => Err(event),
            super::ContextEnd::Return(Ok(values)) => {
                let mut object = String::from("({");
                for (i, (name, value)) in values.iter().enumerate() {
                    if i > 0 {
                        object.push(',');
                    }
                    push_string_literal(&mut object, name);
                    object.push(':');
                    match value {
                        Value::Json(json) => {
                            object.push_str("JSON.parse(");
                            push_string_literal(&mut object, json);
                            object.push(')');
                        }
                        _ => object.push_str("undefined"),
                    }
                }
                object.push_str("})");
                self.model
                    .assign(&item_el.name, &object)
                    .map_err(|e| semantic(&e))?;
                self.run_filled(form_el, &[item]).await
            }
        }
    }

    /// A `<record>` finished (§2.3.6): the variable, its shadow variables, `<filled>`.
    async fn recorded(
        &mut self,
        form_el: &Form,
        item: usize,
        item_el: &FormItem,
        response: Response,
    ) -> Result<Flow, Event> {
        let recording = match response {
            Response::Recorded(Ok(recording)) => recording,
            Response::Recorded(Err(reason)) => {
                return Err(Event::new(
                    "error.noresource",
                    format!("the recording failed: {reason}"),
                ));
            }
            Response::Hangup => {
                self.hangup_thrown = true;
                return Err(Event::new(names::HANGUP, "the caller hung up"));
            }
            Response::Error { event, message } => return Err(Event::new(event, message)),
            other => {
                return Err(Event::new(
                    names::SEMANTIC,
                    format!("unexpected platform answer to a recording: {other:?}"),
                ));
            }
        };
        if recording.silent {
            return Err(Event::new(names::NOINPUT, "the caller said nothing"));
        }
        let name = &item_el.name;
        let mut media = String::new();
        push_string_literal(&mut media, &recording.content_type);
        let duration = recording.duration.as_millis();
        let size = recording.audio.len();
        let termchar = match recording.termchar {
            Some(c) => Value::String(c.to_string()),
            None => Value::Null,
        };
        let clip = self.next_clip;
        self.next_clip += 1;
        self.clips.remove(&clip.wrapping_sub(MAX_CLIPS));
        self.clips.insert(
            clip,
            crate::prompt::Clip {
                content_type: recording.content_type.clone(),
                audio: recording.audio.as_slice().into(),
                duration: recording.duration,
            },
        );
        let value = format!(
            "({{__recording: true, __clip: {clip}, size: {size}, duration: {duration}, type: {media}, toString: function(){{return '[recording ' + this.size + ' bytes]';}}}})"
        );
        let shadow = Value::Object(vec![
            ("duration".to_owned(), Value::Number(duration as f64)),
            ("size".to_owned(), Value::Number(size as f64)),
            ("termchar".to_owned(), termchar),
            ("maxtime".to_owned(), Value::Bool(recording.maxtime)),
        ]);
        self.model
            .assign(name, &value)
            .and_then(|()| self.model.assign_value(&format!("{name}$"), &shadow))
            .map_err(|e| semantic(&e))?;
        self.recordings.insert(name.clone(), recording);
        self.run_filled(form_el, &[item]).await
    }

    /// A `<transfer>` finished (§2.3.7): the outcome in the variable, or an event.
    async fn transferred(
        &mut self,
        form_el: &Form,
        item: usize,
        item_el: &FormItem,
        response: Response,
    ) -> Result<Flow, Event> {
        let outcome = match response {
            Response::Transferred(Ok(outcome)) => outcome,
            Response::Transferred(Err(failure)) => {
                return Err(Event::new(failure.event, failure.message));
            }
            Response::Hangup => {
                self.hangup_thrown = true;
                return Err(Event::new(names::HANGUP, "the caller hung up"));
            }
            Response::Error { event, message } => return Err(Event::new(event, message)),
            other => {
                return Err(Event::new(
                    names::SEMANTIC,
                    format!("unexpected platform answer to a transfer: {other:?}"),
                ));
            }
        };
        let word = match outcome {
            TransferOutcome::Transferred => {
                self.disconnected = true;
                self.hangup_thrown = true;
                return Err(Event::new(
                    "connection.disconnect.transfer",
                    "the call was transferred",
                ));
            }
            other => other.name(),
        };
        let name = &item_el.name;
        self.model
            .assign(name, &format!("'{word}'"))
            .and_then(|()| {
                self.model.assign_value(
                    &format!("{name}$"),
                    &Value::Object(vec![("duration".to_owned(), Value::Number(0.0))]),
                )
            })
            .map_err(|e| semantic(&e))?;
        self.run_filled(form_el, &[item]).await
    }
}
