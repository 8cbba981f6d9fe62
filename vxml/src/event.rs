//! Events and catch selection (VoiceXML 2.0 §5.2).
//!
//! An event name matches a catch's event name when the catch name is a dot-separated prefix of
//! it (§5.2.4: `error` catches `error.badfetch.http.404`). Selection: order the catches by
//! scope (innermost first) and document order, drop those that do not match or whose `cond`
//! is false, find the highest `count` not above the event's counter, and take the first catch
//! with that count.

use crate::document::Catch;

/// Event names the interpreter throws itself.
pub mod names {
    /// No input before the `timeout` property ran out.
    pub const NOINPUT: &str = "noinput";
    /// Input that matched no active grammar.
    pub const NOMATCH: &str = "nomatch";
    /// The caller hung up, or `<disconnect>` ran.
    pub const HANGUP: &str = "connection.disconnect.hangup";
    /// A fetch failed or a document could not be used.
    pub const BADFETCH: &str = "error.badfetch";
    /// A run-time error in an expression, script or element.
    pub const SEMANTIC: &str = "error.semantic";
    /// A platform resource the application asked for is beyond what it may have (a prompt too
    /// long to speak).
    pub const NORESOURCE: &str = "error.noresource";
    /// A field has grammars, but none in a format this platform reads (§5.2.6).
    pub const UNSUPPORTED_FORMAT: &str = "error.unsupported.format";
}

/// A thrown event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The full event name, e.g. `error.badfetch`.
    pub name: String,
    /// `_message`: what went wrong, for the log and the `SessionEnd`.
    pub message: String,
}

impl Event {
    /// An event with a message.
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            message: message.into(),
        }
    }
}

/// Whether a catch for `catch_name` handles `event` (prefix match on whole name tokens).
pub fn event_matches(catch_name: &str, event: &str) -> bool {
    let catch_name = catch_name.trim_end_matches('.');
    catch_name.is_empty()
        || event == catch_name
        || event
            .strip_prefix(catch_name)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Selects the catch for `event` seen `count` times from `scopes` (innermost first).
/// `cond` evaluates a catch condition; a failing condition counts as false.
pub fn select_catch<'a>(
    scopes: &[&'a [Catch]],
    event: &str,
    count: u32,
    mut cond: impl FnMut(&str) -> bool,
) -> Option<&'a Catch> {
    let candidates: Vec<&Catch> = scopes
        .iter()
        .flat_map(|catches| catches.iter())
        .filter(|c| c.events.is_empty() || c.events.iter().any(|e| event_matches(e, event)))
        .filter(|c| c.cond.as_deref().is_none_or(&mut cond))
        .collect();
    let correct = candidates
        .iter()
        .map(|c| c.count)
        .filter(|n| *n <= count)
        .max()?;
    candidates.into_iter().find(|c| c.count == correct)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catch(events: &[&str], count: u32, tag: &str) -> Catch {
        Catch {
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            count,
            cond: Some(tag.to_owned()),
            content: Vec::new(),
        }
    }

    #[test]
    fn prefix_matching_is_by_whole_tokens() {
        assert!(event_matches("error", "error.badfetch.http.404"));
        assert!(event_matches("error.badfetch", "error.badfetch"));
        assert!(event_matches("", "anything"));
        assert!(!event_matches("error.bad", "error.badfetch"));
        assert!(!event_matches("noinput", "nomatch"));
    }

    #[test]
    fn highest_count_not_above_the_counter_wins_across_scopes() {
        let item = [
            catch(&["noinput"], 1, "item1"),
            catch(&["noinput"], 3, "item3"),
        ];
        let form = [catch(&["noinput"], 2, "form2")];
        let scopes: [&[Catch]; 2] = [&item, &form];
        let pick =
            |count| select_catch(&scopes, "noinput", count, |_| true).and_then(|c| c.cond.clone());
        assert_eq!(pick(1).as_deref(), Some("item1"));
        assert_eq!(pick(2).as_deref(), Some("form2"));
        assert_eq!(pick(3).as_deref(), Some("item3"));
        assert_eq!(pick(7).as_deref(), Some("item3"));
        assert_eq!(pick(0), None);
    }

    #[test]
    fn inner_scope_wins_ties_and_false_conditions_drop_out() {
        let item = [catch(&["error"], 1, "item")];
        let doc = [catch(&[], 1, "doc")];
        let scopes: [&[Catch]; 2] = [&item, &doc];
        let chosen = select_catch(&scopes, "error.semantic", 1, |_| true).unwrap();
        assert_eq!(chosen.cond.as_deref(), Some("item"));
        let chosen = select_catch(&scopes, "error.semantic", 1, |c| c != "item").unwrap();
        assert_eq!(chosen.cond.as_deref(), Some("doc"));
        assert!(select_catch(&scopes[..1], "nomatch", 1, |_| true).is_none());
    }
}
