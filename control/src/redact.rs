//! Personal data kept out of logs at every level: callee numbers, the application's `<log>`
//! text, what the callee entered, and the query of fetched URLs. `[log] redact = true` (the default) masks them; the process sets it once at start.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

static REDACT: AtomicBool = AtomicBool::new(true);

/// Turns redaction on or off for the whole process (`[log] redact`).
pub fn set(on: bool) {
    REDACT.store(on, Ordering::Relaxed);
}

/// True while redaction is on.
pub fn enabled() -> bool {
    REDACT.load(Ordering::Relaxed)
}

/// A callee (`sip:user@host`, `+15551234567`) as info logs show it: the user part masked
/// but its last two characters, the host kept (it says which trunk or peer was dialled).
pub fn callee(uri: &str) -> Cow<'_, str> {
    if !enabled() {
        return Cow::Borrowed(uri);
    }
    let (scheme, rest) = match uri.split_once(':') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sip") => (Some(scheme), rest),
        _ => (None, uri),
    };
    let (user, host) = match rest.split_once('@') {
        Some((user, host)) => (user, Some(host)),
        None if scheme.is_some() => ("", Some(rest)),
        None => (rest, None),
    };
    let masked = mask(user);
    let mut out = String::with_capacity(uri.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push(':');
    }
    out.push_str(&masked);
    if let Some(host) = host {
        if !user.is_empty() {
            out.push('@');
        }
        out.push_str(host);
    }
    Cow::Owned(out)
}

/// Application-supplied text (`<log>`) as info logs show it: its length only.
pub fn text(text: &str) -> Cow<'_, str> {
    if enabled() {
        Cow::Owned(format!("[redacted: {} characters]", text.chars().count()))
    } else {
        Cow::Borrowed(text)
    }
}

/// What the callee entered (keys, recognised words: maybe a PIN) as logs show it: nothing
/// but the fact, while redaction is on.
pub fn input(value: &dyn std::fmt::Debug) -> String {
    if enabled() {
        "[redacted input]".to_owned()
    } else {
        format!("{value:?}")
    }
}

/// A fetched URL as logs show it: without its query and fragment (a `<submit method="get">`
/// or `<data>` carries the caller's values there) while redaction is on.
pub fn url(url: &str) -> Cow<'_, str> {
    match url.find(['?', '#']) {
        Some(at) if enabled() => Cow::Owned(format!("{}?[redacted]", &url[..at])),
        _ => Cow::Borrowed(url),
    }
}

fn mask(user: &str) -> String {
    let chars: Vec<char> = user.chars().collect();
    let keep = if chars.len() > 4 { 2 } else { 0 };
    let mut out = String::with_capacity(user.len());
    for (i, c) in chars.iter().enumerate() {
        let visible = i >= chars.len() - keep || (i == 0 && *c == '+');
        out.push(if visible { *c } else { '*' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the switch is process-wide.
    #[test]
    fn callees_and_log_text_are_masked_only_while_on() {
        set(true);
        assert_eq!(
            callee("sip:+15550001234@192.0.2.10:5060"),
            "sip:+*********34@192.0.2.10:5060"
        );
        assert_eq!(callee("+15550001234"), "+*********34");
        assert_eq!(callee("sip:bob@example.com"), "sip:***@example.com");
        assert_eq!(callee("sip:example.com"), "sip:example.com");
        assert_eq!(text("PIN is 1234"), "[redacted: 11 characters]");
        assert_eq!(input(&'7'), "[redacted input]");
        assert_eq!(url("http://h/s?pin=1234#x"), "http://h/s?[redacted]");
        assert_eq!(url("http://h/s"), "http://h/s");
        set(false);
        assert_eq!(input(&'7'), "'7'");
        assert_eq!(url("http://h/s?pin=1234"), "http://h/s?pin=1234");
        assert_eq!(callee("sip:+15550001234@h"), "sip:+15550001234@h");
        assert_eq!(text("PIN is 1234"), "PIN is 1234");
        set(true);
    }
}
