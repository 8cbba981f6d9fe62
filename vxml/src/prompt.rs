//! Prompts handed to the platform, and their rendering from `<prompt>` content
//! (VoiceXML 2.0 §4.1).
//!
//! Rendering evaluates `<value>` and `<audio expr>` when the prompt is queued, as §4.1.8
//! requires, resolves audio URIs against the document, and normalises whitespace so the
//! platform gets plain text runs between audio clips and breaks.

use std::time::Duration;

use url::Url;

use crate::document::{PromptElement, PromptNode};
use crate::script::{DataModel, Scope, ScriptError, push_string_literal};

/// One prompt, played as a unit (barge-in applies to the whole prompt).
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// What to play, in order.
    pub items: Vec<PromptItem>,
    /// Whether caller input may interrupt this prompt.
    pub bargein: bool,
}

/// One piece of a prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptItem {
    /// Text to speak (whitespace normalised, never empty).
    Text(String),
    /// An audio file, with text to speak if it cannot be played.
    Audio {
        /// Absolute URL, resolved against the document.
        url: String,
        /// Fallback text from the `<audio>` content.
        fallback: Option<String>,
    },
    /// Silence.
    Break(Duration),
}

/// Why a prompt could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// An expression failed (`error.semantic`).
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// An audio URI cannot be resolved (`error.badfetch`).
    #[error("audio URI {uri:?} cannot be resolved against {base}: {reason}")]
    BadUri {
        /// The URI as written or computed.
        uri: String,
        /// The document URL.
        base: String,
        /// The parser's reason.
        reason: String,
    },
}

/// One entry of an `<enumerate>` (VoiceXML 2.0 §2.2.4): a menu choice or field option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Enumerated {
    /// `_prompt`: the choice's text.
    pub(crate) prompt: String,
    /// `_dtmf`: its DTMF sequence, if any.
    pub(crate) dtmf: Option<String>,
}

/// Most elements `<foreach>` renders (bounds a runaway array).
const MAX_FOREACH: usize = 1000;

/// Renders a prompt element; `bargein` is the value of the `bargein` property in scope and
/// `choices` what `<enumerate>` lists.
pub(crate) fn render(
    element: &PromptElement,
    model: &mut dyn DataModel,
    base: &Url,
    bargein: bool,
    choices: &[Enumerated],
) -> Result<Prompt, RenderError> {
    let mut items = Vec::new();
    let mut text = String::new();
    let mut renderer = Renderer {
        model,
        base,
        choices,
    };
    renderer.nodes(&element.content, &mut items, &mut text)?;
    flush_text(&mut text, &mut items);
    Ok(Prompt {
        items,
        bargein: element.bargein.unwrap_or(bargein),
    })
}

/// Rendering context.
struct Renderer<'a> {
    model: &'a mut dyn DataModel,
    base: &'a Url,
    choices: &'a [Enumerated],
}

impl Renderer<'_> {
    /// Renders `nodes`, accumulating adjacent text in `text`.
    fn nodes(
        &mut self,
        nodes: &[PromptNode],
        items: &mut Vec<PromptItem>,
        text: &mut String,
    ) -> Result<(), RenderError> {
        for node in nodes {
            match node {
                PromptNode::Text(t) => text.push_str(t),
                PromptNode::Value(expr) => text.push_str(&self.model.eval_string(expr)?),
                PromptNode::Break(duration) => {
                    flush_text(text, items);
                    items.push(PromptItem::Break(*duration));
                }
                PromptNode::Audio {
                    src,
                    expr,
                    fallback,
                } => self.audio(src.as_deref(), expr.as_deref(), fallback, items, text)?,
                PromptNode::Enumerate(content) => self.enumerate(content, items, text)?,
                PromptNode::Foreach {
                    array,
                    item,
                    content,
                } => self.foreach(array, item, content, items, text)?,
            }
        }
        Ok(())
    }

    /// `<audio>`: an audio item whose fallback is its content's text.
    fn audio(
        &mut self,
        src: Option<&str>,
        expr: Option<&str>,
        fallback: &[PromptNode],
        items: &mut Vec<PromptItem>,
        text: &mut String,
    ) -> Result<(), RenderError> {
        flush_text(text, items);
        let uri = match (src, expr) {
            (Some(src), _) => src.to_owned(),
            (None, Some(expr)) => self.model.eval_string(expr)?,
            (None, None) => String::new(),
        };
        let url = self.base.join(&uri).map_err(|e| RenderError::BadUri {
            uri: uri.clone(),
            base: self.base.to_string(),
            reason: e.to_string(),
        })?;
        let mut fallback_items = Vec::new();
        let mut fallback_text = String::new();
        self.nodes(fallback, &mut fallback_items, &mut fallback_text)?;
        flush_text(&mut fallback_text, &mut fallback_items);
        let spoken: Vec<String> = fallback_items
            .into_iter()
            .filter_map(|item| match item {
                PromptItem::Text(t) => Some(t),
                PromptItem::Audio { fallback, .. } => fallback,
                PromptItem::Break(_) => None,
            })
            .collect();
        items.push(PromptItem::Audio {
            url: url.to_string(),
            fallback: (!spoken.is_empty()).then(|| spoken.join(" ")),
        });
        Ok(())
    }

    /// `<enumerate>`: each choice through the content with `_prompt` and `_dtmf` declared, or
    /// a default phrasing when there is no content.
    fn enumerate(
        &mut self,
        content: &[PromptNode],
        items: &mut Vec<PromptItem>,
        text: &mut String,
    ) -> Result<(), RenderError> {
        let speaks = content.iter().any(|node| match node {
            PromptNode::Text(t) => !t.trim().is_empty(),
            _ => true,
        });
        for choice in self.choices {
            if !speaks {
                text.push(' ');
                match &choice.dtmf {
                    Some(dtmf) => text.push_str(&format!("For {}, press {dtmf}.", choice.prompt)),
                    None => text.push_str(&choice.prompt),
                }
                text.push(' ');
                continue;
            }
            self.model.push_scope(Scope::Anonymous)?;
            let mut prompt = String::new();
            push_string_literal(&mut prompt, &choice.prompt);
            let mut dtmf = String::new();
            match &choice.dtmf {
                Some(keys) => push_string_literal(&mut dtmf, keys),
                None => dtmf.push_str("undefined"),
            }
            let result = self
                .model
                .declare("_prompt", Some(&prompt))
                .and_then(|()| self.model.declare("_dtmf", Some(&dtmf)))
                .map_err(RenderError::from)
                .and_then(|()| self.nodes(content, items, text));
            self.model.pop_scope(Scope::Anonymous);
            result?;
        }
        Ok(())
    }

    /// `<foreach>` (VoiceXML 2.1 §4) inside a prompt.
    fn foreach(
        &mut self,
        array: &str,
        item: &str,
        content: &[PromptNode],
        items: &mut Vec<PromptItem>,
        text: &mut String,
    ) -> Result<(), RenderError> {
        self.model.push_scope(Scope::Anonymous)?;
        let result = self.foreach_in_scope(array, item, content, items, text);
        self.model.pop_scope(Scope::Anonymous);
        result
    }

    /// The body of [`Renderer::foreach`], inside its own scope.
    fn foreach_in_scope(
        &mut self,
        array: &str,
        item: &str,
        content: &[PromptNode],
        items: &mut Vec<PromptItem>,
        text: &mut String,
    ) -> Result<(), RenderError> {
        self.model.declare(
            "__foreach",
            Some(&format!("Array.prototype.slice.call({array})")),
        )?;
        let length: usize = self
            .model
            .eval_string("__foreach.length")?
            .parse()
            .unwrap_or(0);
        for index in 0..length.min(MAX_FOREACH) {
            self.model
                .declare(item, Some(&format!("__foreach[{index}]")))?;
            self.nodes(content, items, text)?;
        }
        Ok(())
    }
}

/// Moves accumulated text into `items` as one normalised [`PromptItem::Text`].
fn flush_text(text: &mut String, items: &mut Vec<PromptItem>) {
    let normalised = normalise_space(text);
    if !normalised.is_empty() {
        items.push(PromptItem::Text(normalised));
    }
    text.clear();
}

/// Collapses runs of whitespace to one space and trims both ends.
pub(crate) fn normalise_space(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{QuickJs, Scope, ScriptLimits};

    #[test]
    fn values_audio_and_breaks_render_in_order() {
        let mut js = QuickJs::new(ScriptLimits {
            budget: 50,
            memory_bytes: 1 << 20,
        })
        .unwrap();
        js.push_scope(Scope::Document).unwrap();
        js.declare("n", Some("'Ann'")).unwrap();
        js.declare("clip", Some("'clips/b.wav'")).unwrap();
        let element = PromptElement {
            bargein: Some(false),
            hotword: None,
            cond: None,
            count: 1,
            timeout: None,
            content: vec![
                PromptNode::Text("\n  Hello ".into()),
                PromptNode::Value("n".into()),
                PromptNode::Text(",  welcome.\n".into()),
                PromptNode::Break(Duration::from_millis(300)),
                PromptNode::Audio {
                    src: None,
                    expr: Some("clip".into()),
                    fallback: vec![PromptNode::Text(" beep  beep ".into())],
                },
                PromptNode::Audio {
                    src: Some("/abs.wav".into()),
                    expr: None,
                    fallback: vec![],
                },
            ],
        };
        let base = Url::parse("http://example.test/app/doc.vxml").unwrap();
        let prompt = render(&element, &mut js, &base, true, &[]).unwrap();
        assert!(!prompt.bargein, "the element's bargein beats the property");
        assert_eq!(
            prompt.items,
            vec![
                PromptItem::Text("Hello Ann, welcome.".into()),
                PromptItem::Break(Duration::from_millis(300)),
                PromptItem::Audio {
                    url: "http://example.test/app/clips/b.wav".into(),
                    fallback: Some("beep beep".into()),
                },
                PromptItem::Audio {
                    url: "http://example.test/abs.wav".into(),
                    fallback: None,
                },
            ]
        );
    }

    #[test]
    fn failing_value_is_a_script_error() {
        let mut js = QuickJs::new(ScriptLimits {
            budget: 50,
            memory_bytes: 1 << 20,
        })
        .unwrap();
        js.push_scope(Scope::Document).unwrap();
        let element = PromptElement {
            bargein: None,
            hotword: None,
            cond: None,
            count: 1,
            timeout: None,
            content: vec![PromptNode::Value("missing.field".into())],
        };
        let base = Url::parse("http://example.test/").unwrap();
        assert!(matches!(
            render(&element, &mut js, &base, true, &[]),
            Err(RenderError::Script(_))
        ));
    }
}
