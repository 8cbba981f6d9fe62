//! Prompts handed to the platform, and their rendering from `<prompt>` content
//! (VoiceXML 2.0 §4.1).
//!
//! Rendering evaluates `<value>` and `<audio expr>` when the prompt is queued, as §4.1.8
//! requires, resolves audio URIs against the document, and normalises whitespace so the
//! platform gets plain text runs between audio clips and breaks.

use std::time::Duration;

use url::Url;

use crate::document::{PromptElement, PromptNode};
use crate::script::{DataModel, ScriptError};

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

/// Renders a prompt element; `bargein` is the value of the `bargein` property in scope.
pub(crate) fn render(
    element: &PromptElement,
    model: &mut dyn DataModel,
    base: &Url,
    bargein: bool,
) -> Result<Prompt, RenderError> {
    let mut items = Vec::new();
    let mut text = String::new();
    render_nodes(&element.content, model, base, &mut items, &mut text)?;
    flush_text(&mut text, &mut items);
    Ok(Prompt {
        items,
        bargein: element.bargein.unwrap_or(bargein),
    })
}

/// Renders `nodes`, accumulating adjacent text in `text`.
fn render_nodes(
    nodes: &[PromptNode],
    model: &mut dyn DataModel,
    base: &Url,
    items: &mut Vec<PromptItem>,
    text: &mut String,
) -> Result<(), RenderError> {
    for node in nodes {
        match node {
            PromptNode::Text(t) => text.push_str(t),
            PromptNode::Value(expr) => text.push_str(&model.eval_string(expr)?),
            PromptNode::Break(duration) => {
                flush_text(text, items);
                items.push(PromptItem::Break(*duration));
            }
            PromptNode::Audio {
                src,
                expr,
                fallback,
            } => {
                flush_text(text, items);
                let uri = match (src, expr) {
                    (Some(src), _) => src.clone(),
                    (None, Some(expr)) => model.eval_string(expr)?,
                    (None, None) => String::new(),
                };
                let url = base.join(&uri).map_err(|e| RenderError::BadUri {
                    uri: uri.clone(),
                    base: base.to_string(),
                    reason: e.to_string(),
                })?;
                let mut fallback_items = Vec::new();
                let mut fallback_text = String::new();
                render_nodes(
                    fallback,
                    model,
                    base,
                    &mut fallback_items,
                    &mut fallback_text,
                )?;
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
            }
        }
    }
    Ok(())
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
            cond: None,
            count: 1,
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
        let prompt = render(&element, &mut js, &base, true).unwrap();
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
            cond: None,
            count: 1,
            content: vec![PromptNode::Value("missing.field".into())],
        };
        let base = Url::parse("http://example.test/").unwrap();
        assert!(matches!(
            render(&element, &mut js, &base, true),
            Err(RenderError::Script(_))
        ));
    }
}
