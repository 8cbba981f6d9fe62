//! `outdial vxml run`: runs a VoiceXML application against a scripted caller, with no call,
//! no server and no telephone, in virtual time ([`outdial_vxml::caller`]).
//!
//! The application is a local file or an `http(s)` URL. Documents, scripts, data and grammars
//! are fetched for real: files from disk (a relative reference in a file resolves against the
//! file's `file://` URL), `http(s)` through the same [`crate::fetch::Fetcher`] calls use,
//! driven by a current-thread tokio runtime owned by the run. Audio clips are fetched the
//! same way (not decoded): the transcript says of each whether it plays, which fallback is
//! spoken instead, or that the prompt fails with `error.badfetch` for want of one, as on a
//! call; a recording played back shows as a recording.
//!
//! Exit status: [`EXIT_OK`] when the session ends normally (`<exit>`, `<disconnect>`, or the
//! caller hanging up), [`EXIT_BAD_ARGUMENTS`] when the command line is unusable,
//! [`EXIT_SESSION_FAILED`] when the session ends with an uncaught error event or is stopped at
//! a limit.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use outdial_vxml::caller::{
    self, AudioPlay, Entry, FileSummary, InputScriptError, RunLimits, ScriptedInputs, Stop,
    Transcript, method_name, purpose_name, transfer_kind_name,
};
use outdial_vxml::{Fetch, FetchFailure, Fetched, Limits, Session, SessionConfig, SessionEnd};
use serde_json::{Value, json};
use url::Url;

use crate::fetch::Fetcher;

/// Exit status: the session ended normally.
pub const EXIT_OK: u8 = 0;
/// Exit status: the command line or the application's location is unusable.
pub const EXIT_BAD_ARGUMENTS: u8 = 1;
/// Exit status: the session ended with an error event, or was stopped at a limit.
pub const EXIT_SESSION_FAILED: u8 = 2;

/// Our SIP URI as the application sees it (`session.connection.local.uri`).
const LOCAL_URI: &str = "sip:outdial@localhost";
/// The caller's SIP URI (`session.connection.remote.uri`).
const REMOTE_URI: &str = "sip:caller@localhost";
/// Total time one HTTP fetch may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// What `outdial vxml run` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// A file path, a `file://` URL or an `http(s)://` URL.
    pub target: String,
    /// The caller's script, e.g. `"1,noinput,2#,hangup"`.
    pub inputs: String,
    /// Session variables: name and value (JSON if it parses, else a string).
    pub vars: Vec<(String, String)>,
    /// Print the transcript as one JSON object.
    pub json: bool,
    /// `session.connection.outdial.answered_by`, as machine detection would set it.
    pub answered_by: Option<String>,
    /// Stop after this much virtual time.
    pub max_time: Duration,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The target is neither a readable file nor a usable URL.
    #[error("cannot run {target:?}: {reason}; give a VoiceXML file path or an http(s):// URL")]
    Target {
        /// The target as given.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// `--input` does not parse.
    #[error("--input: {0}")]
    Inputs(#[from] InputScriptError),
    /// The session refused its start (a bad variable, usually).
    #[error("{0}")]
    Session(#[from] outdial_vxml::Error),
    /// The HTTP client or its runtime could not start.
    #[error("cannot start the HTTP client: {0}")]
    Http(String),
}

/// The application's URL: `http(s)` and `file` URLs as given; anything else is a path,
/// made absolute against `cwd` and required to exist.
pub fn app_url(target: &str, cwd: &Path) -> Result<Url, RunError> {
    let fail = |reason: String| RunError::Target {
        target: target.to_owned(),
        reason,
    };
    if let Ok(url) = Url::parse(target)
        && url.scheme().len() > 1
    {
        return match url.scheme() {
            "http" | "https" | "file" => Ok(url),
            scheme => Err(fail(format!("the {scheme}: scheme is not supported"))),
        };
    }
    let path = cwd.join(target);
    let path = path
        .canonicalize()
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    if !path.is_file() {
        return Err(fail(format!("{} is not a file", path.display())));
    }
    Url::from_file_path(&path).map_err(|()| fail(format!("{} has no file URL", path.display())))
}

/// A `--var` value: the JSON value if the text parses as JSON, else the text as a string.
/// `outdial call` and `outdial vxml run` read `--var` the same way.
pub fn var_value(value: &str) -> Value {
    serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()))
}

/// A `--var` value as JSON text: the value itself if it is JSON, else a JSON string.
pub fn var_json(value: &str) -> String {
    match serde_json::from_str::<Value>(value) {
        Ok(_) => value.to_owned(),
        Err(_) => Value::String(value.to_owned()).to_string(),
    }
}

/// Fetches from files and over HTTP(S) for the scripted run.
pub struct CliFetcher {
    http: Fetcher,
    runtime: tokio::runtime::Runtime,
    max_bytes: usize,
}

impl CliFetcher {
    /// A fetcher with its own current-thread runtime; call it only outside async code.
    pub fn new(max_bytes: usize) -> Result<Self, RunError> {
        let http = Fetcher::new(concat!("Outdial/", env!("CARGO_PKG_VERSION")), HTTP_TIMEOUT)
            .map_err(|e| RunError::Http(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RunError::Http(e.to_string()))?;
        Ok(Self {
            http,
            runtime,
            max_bytes,
        })
    }

    fn file(&self, request: &Fetch) -> Result<Fetched, FetchFailure> {
        let failure = |message: String| FetchFailure {
            status: None,
            message,
        };
        let url = Url::parse(&request.url).map_err(|e| failure(e.to_string()))?;
        let path = url
            .to_file_path()
            .map_err(|()| failure(format!("{} names no local file", request.url)))?;
        let body = std::fs::read(&path).map_err(|e| FetchFailure {
            status: (e.kind() == std::io::ErrorKind::NotFound).then_some(404),
            message: format!("{}: {e}", path.display()),
        })?;
        if body.len() > self.max_bytes {
            return Err(failure(format!(
                "{} is larger than {} bytes",
                path.display(),
                self.max_bytes
            )));
        }
        let mut final_url = url;
        final_url.set_query(None);
        final_url.set_fragment(None);
        Ok(Fetched {
            url: final_url.into(),
            content_type: None,
            body,
        })
    }
}

impl caller::Fetcher for CliFetcher {
    fn fetch(&mut self, request: &Fetch) -> Result<Fetched, FetchFailure> {
        if request.url.starts_with("file:") {
            return self.file(request);
        }
        self.runtime.block_on(crate::vxml_fetch::perform(
            &self.http,
            request,
            self.max_bytes,
        ))
    }

    fn fetch_audio(&mut self, url: &str) -> Result<(), String> {
        let max_bytes = crate::config::FetchConfig::default().max_audio_bytes;
        if url.starts_with("file:") {
            let path = Url::parse(url)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| format!("{url} names no local file"))?;
            let size = std::fs::metadata(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
            return if size > max_bytes as u64 {
                Err(format!(
                    "{} is larger than {max_bytes} bytes",
                    path.display()
                ))
            } else {
                Ok(())
            };
        }
        self.runtime
            .block_on(self.http.get(url, max_bytes))
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Runs the application and returns its transcript. Blocking: call it outside async code.
pub fn run(options: &RunOptions, cwd: &Path) -> Result<Transcript, RunError> {
    let url = app_url(&options.target, cwd)?;
    let mut caller = ScriptedInputs::parse(&options.inputs)?;
    let limits = Limits::default();
    let mut fetcher = CliFetcher::new(limits.max_document_bytes)?;
    let start = Instant::now();
    let session = Session::new(
        SessionConfig {
            url: url.into(),
            vars: options
                .vars
                .iter()
                .map(|(name, value)| (name.clone(), var_json(value)))
                .collect(),
            local_uri: LOCAL_URI.to_owned(),
            remote_uri: REMOTE_URI.to_owned(),
            answered_by: options.answered_by.clone(),
            limits,
        },
        start,
    )?;
    let run_limits = RunLimits {
        max_virtual_time: options.max_time,
        ..RunLimits::default()
    };
    Ok(caller::run(
        session,
        start,
        &mut fetcher,
        &mut caller,
        run_limits,
    ))
}

/// The exit status for a finished run.
pub fn exit_status(transcript: &Transcript) -> u8 {
    match transcript.end() {
        Some(SessionEnd::Exit { .. } | SessionEnd::Disconnect | SessionEnd::Hangup)
            if transcript.stopped().is_none() =>
        {
            EXIT_OK
        }
        _ => EXIT_SESSION_FAILED,
    }
}

/// Runs `outdial vxml run`, printing the transcript to `out` and problems to `err`; returns
/// the exit status. Blocking.
pub fn command(options: &RunOptions, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_default();
    let transcript = match run(options, &cwd) {
        Ok(transcript) => transcript,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return EXIT_BAD_ARGUMENTS;
        }
    };
    let printed = if options.json {
        writeln!(out, "{}", transcript_json(&transcript))
    } else {
        write!(out, "{transcript}")
    };
    if let Err(e) = printed {
        let _ = writeln!(err, "error: cannot print the transcript: {e}");
        return EXIT_BAD_ARGUMENTS;
    }
    let status = exit_status(&transcript);
    if status != EXIT_OK {
        let why = match (transcript.end(), transcript.stopped()) {
            (Some(SessionEnd::Error { event, message }), _) => format!("{event}: {message}"),
            (_, Some(stop)) => stop.to_string(),
            _ => "the session did not end".to_owned(),
        };
        let _ = writeln!(err, "error: the session failed: {why}");
    }
    status
}

fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

fn pairs(values: &[(String, String)]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect(),
    )
}

fn end_json(end: &SessionEnd) -> Value {
    match end {
        SessionEnd::Exit { value } => json!({ "reason": "exit", "value": value }),
        SessionEnd::Disconnect => json!({ "reason": "disconnect" }),
        SessionEnd::Hangup => json!({ "reason": "hangup" }),
        SessionEnd::Error { event, message } => {
            json!({ "reason": "error", "event": event, "message": message })
        }
    }
}

fn stop_name(stop: Stop) -> &'static str {
    match stop {
        Stop::VirtualTime => "virtual_time_limit",
        Stop::Actions => "action_limit",
        Stop::Stalled => "stalled",
    }
}

fn file_json(file: &FileSummary) -> Value {
    json!({ "name": file.name, "content_type": file.content_type, "bytes": file.bytes })
}

fn audio_json(clip: &AudioPlay) -> Value {
    match clip {
        AudioPlay::Played(url) => json!({ "url": url, "played": true }),
        AudioPlay::Recording {
            duration,
            bytes,
            content_type,
        } => json!({
            "recording": true, "played": true, "seconds": seconds(*duration),
            "bytes": bytes, "content_type": content_type,
        }),
        AudioPlay::Fallback { url, reason, text } => {
            json!({ "url": url, "played": false, "error": reason, "fallback": text })
        }
        AudioPlay::Failed { url, reason } => {
            json!({ "url": url, "played": false, "error": reason, "fallback": null })
        }
    }
}

fn entry_json(entry: &Entry) -> Value {
    match entry {
        Entry::Prompt {
            text,
            audio,
            bargein,
        } => json!({
            "type": "prompt", "text": text, "bargein": bargein,
            "audio": audio.iter().map(audio_json).collect::<Vec<_>>(),
        }),
        Entry::Listen {
            dtmf,
            voice,
            timeout,
        } => {
            json!({ "type": "listen", "dtmf": dtmf, "voice": voice, "timeout": seconds(*timeout) })
        }
        Entry::Input(text) => json!({ "type": "input", "input": text }),
        Entry::Heard(heard) => json!({
            "type": "heard",
            "mode": heard.mode,
            "input": heard.input,
            "typeahead": heard.typeahead,
            "matched": heard.matched,
        }),
        Entry::FetchAudio {
            url,
            delay,
            minimum,
        } => json!({
            "type": "fetchaudio", "url": url,
            "delay": seconds(*delay), "minimum": seconds(*minimum),
        }),
        Entry::Fetch {
            url,
            method,
            purpose,
            error,
        } => json!({
            "type": "fetch", "url": url, "method": method_name(*method),
            "purpose": purpose_name(*purpose), "error": error,
        }),
        Entry::Submit {
            url,
            method,
            values,
            files,
            error,
        } => json!({
            "type": "submit", "url": url, "method": method_name(*method), "values": pairs(values),
            "files": files.iter().map(file_json).collect::<Vec<_>>(), "error": error,
        }),
        Entry::Record {
            beep,
            max_time,
            result,
        } => {
            json!({ "type": "record", "beep": beep, "max_time": seconds(*max_time), "result": result })
        }
        Entry::Transfer {
            dest,
            kind,
            outcome,
        } => json!({
            "type": "transfer", "dest": dest, "kind": transfer_kind_name(*kind), "outcome": outcome,
        }),
        Entry::Log { label, text } => json!({ "type": "log", "label": label, "text": text }),
        Entry::Disconnect { values } => json!({ "type": "disconnect", "values": pairs(values) }),
        Entry::End(end) => {
            let mut value = end_json(end);
            if let Value::Object(map) = &mut value {
                map.insert("type".to_owned(), json!("end"));
            }
            value
        }
        Entry::Stopped(stop) => json!({ "type": "stopped", "reason": stop_name(*stop) }),
    }
}

/// The transcript as one JSON object: `{"entries": [{"at": seconds, "type": ..., ...}],
/// "end": {...} | null, "stopped": reason | null}`.
pub fn transcript_json(transcript: &Transcript) -> Value {
    let entries: Vec<Value> = transcript
        .entries
        .iter()
        .map(|stamped| {
            let mut value = entry_json(&stamped.entry);
            if let Value::Object(map) = &mut value {
                map.insert("at".to_owned(), json!(seconds(stamped.at)));
            }
            value
        })
        .collect();
    json!({
        "entries": entries,
        "end": transcript.end().map(end_json),
        "stopped": transcript.stopped().map(stop_name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::Router;
    use axum::extract::Form;
    use axum::routing::{get, post};

    const MENU: &str = r#"<?xml version="1.0"?>
<vxml version="2.1">
  <form id="menu">
    <field name="choice" type="digits?length=1">
      <prompt>Hello <value expr="session.name"/>. Press a key.</prompt>
      <noinput>I heard nothing.</noinput>
    </field>
    <block>
      <prompt>You pressed <value expr="choice"/>.</prompt>
      <goto next="second.vxml"/>
    </block>
  </form>
</vxml>"#;

    const SECOND: &str = r#"<vxml version="2.1"><form><block>
      <prompt>Goodbye.</prompt><exit/></block></form></vxml>"#;

    fn options(target: &str, inputs: &str) -> RunOptions {
        RunOptions {
            target: target.to_owned(),
            inputs: inputs.to_owned(),
            vars: vec![("name".to_owned(), "Alice".to_owned())],
            json: false,
            answered_by: None,
            max_time: Duration::from_secs(600),
        }
    }

    /// Runs the command, returning its status, standard output and standard error.
    fn command_output(options: &RunOptions) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = command(options, &mut out, &mut err);
        (
            status,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[test]
    fn vars_are_json_when_they_parse_and_strings_otherwise() {
        assert_eq!(var_json("42"), "42");
        assert_eq!(var_json(r#"{"a":[1]}"#), r#"{"a":[1]}"#);
        assert_eq!(var_json("Alice"), r#""Alice""#);
        assert_eq!(var_json(r#"say "hi""#), r#""say \"hi\"""#);
    }

    #[test]
    fn targets_are_urls_or_existing_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("app.vxml"), MENU).unwrap_or_else(|e| panic!("{e}"));
        let url = app_url("app.vxml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.scheme(), "file");
        assert!(url.path().ends_with("/app.vxml"), "{url}");
        assert!(app_url("https://example.com/a.vxml", dir.path()).is_ok());
        let missing = app_url("missing.vxml", dir.path());
        assert!(
            matches!(&missing, Err(RunError::Target { reason, .. }) if reason.contains("missing.vxml")),
            "{missing:?}"
        );
        assert!(app_url("ftp://example.com/a.vxml", dir.path()).is_err());
    }

    #[test]
    fn answered_by_plays_a_classified_call() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let app = r#"<vxml version="2.1"><form><block>
          <log expr="'by ' + session.connection.outdial.answered_by"/><exit/></block></form></vxml>"#;
        std::fs::write(dir.path().join("amd.vxml"), app).unwrap_or_else(|e| panic!("{e}"));
        let target = dir.path().join("amd.vxml").display().to_string();
        let mut machine = options(&target, "");
        machine.answered_by = Some("machine".to_owned());
        let (status, out, err) = command_output(&machine);
        assert_eq!(status, EXIT_OK, "{out}{err}");
        assert!(out.contains("by machine"), "{out}{err}");
    }

    #[test]
    fn a_file_application_runs_with_relative_links_vars_and_inputs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("app.vxml"), MENU).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("second.vxml"), SECOND).unwrap_or_else(|e| panic!("{e}"));
        let target = dir.path().join("app.vxml").display().to_string();
        let (status, out, err) = command_output(&options(&target, "noinput,7"));
        assert_eq!(status, EXIT_OK, "{out}{err}");
        let order: Vec<Option<usize>> = [
            "prompt \"Hello Alice. Press a key.\"",
            "input noinput",
            "prompt \"I heard nothing.\"",
            "input dtmf 7",
            "prompt \"You pressed 7.\"",
            "prompt \"Goodbye.\"",
            "end: exit",
        ]
        .iter()
        .map(|line| out.find(line))
        .collect();
        assert!(order.iter().all(Option::is_some), "{out}");
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
        // The relative <goto> resolved against the file's URL.
        let second = Url::from_file_path(
            dir.path()
                .join("second.vxml")
                .canonicalize()
                .unwrap_or_default(),
        )
        .map(String::from)
        .unwrap_or_default();
        assert!(
            out.contains(&format!("fetch GET {second} (document)\n")),
            "{out}"
        );

        let mut json_options = options(&target, "3");
        json_options.json = true;
        let (status, out, _) = command_output(&json_options);
        assert_eq!(status, EXIT_OK);
        let value: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(value["end"]["reason"], "exit");
        let entries = value["entries"].as_array().cloned().unwrap_or_default();
        assert!(
            entries
                .iter()
                .any(|e| e["type"] == "input" && e["input"] == "dtmf 3"),
            "{out}"
        );
        assert!(entries.iter().all(|e| e["at"].is_number()), "{out}");
    }

    /// Plays a clip that exists, one that does not with fallback text, and one that does
    /// not without: the last fails the prompt with error.badfetch, caught and logged.
    const AUDIO: &str = r#"<vxml version="2.1"><form>
        <catch event="error.badfetch"><log label="caught"><value expr="_message"/></log><exit/></catch>
        <block>
          <prompt><audio src="hello.wav"/> and <audio src="gone.wav">the fallback</audio></prompt>
          <prompt><audio src="gone.wav"/></prompt>
        </block>
        <field name="k" type="digits"/>
      </form></vxml>"#;

    #[test]
    fn audio_is_fetched_and_the_transcript_says_what_played() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("app.vxml"), AUDIO).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("hello.wav"), b"RIFF").unwrap_or_else(|e| panic!("{e}"));
        let target = dir.path().join("app.vxml").display().to_string();
        let (status, out, err) = command_output(&options(&target, ""));
        assert_eq!(status, EXIT_OK, "{out}{err}");
        let hello = Url::from_file_path(
            dir.path()
                .join("hello.wav")
                .canonicalize()
                .unwrap_or_default(),
        )
        .map(String::from)
        .unwrap_or_default();
        assert!(out.contains(&format!("audio({hello})")), "{out}");
        assert!(
            out.contains("gone.wav unplayable: ") && out.contains("; fallback \"the fallback\")"),
            "{out}"
        );
        assert!(out.contains("; no fallback)"), "{out}");
        assert!(
            out.contains("log [caught] audio file:") && out.contains("has no fallback"),
            "the third clip failed its prompt with error.badfetch: {out}"
        );

        let mut json_options = options(&target, "");
        json_options.json = true;
        let (_, out, _) = command_output(&json_options);
        let value: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let clips: Vec<Value> = value["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["type"] == "prompt")
            .flat_map(|e| e["audio"].as_array().cloned().unwrap_or_default())
            .collect();
        assert_eq!(clips.len(), 3, "{out}");
        assert_eq!(clips[0]["played"], true, "{out}");
        assert_eq!(clips[1]["fallback"], "the fallback", "{out}");
        assert_eq!(clips[2]["played"], false, "{out}");
        assert!(clips[2]["fallback"].is_null(), "{out}");
    }

    #[test]
    fn errors_exit_non_zero_naming_the_event_and_bad_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("app.vxml"), MENU).unwrap_or_else(|e| panic!("{e}"));
        let target = dir.path().join("app.vxml").display().to_string();
        // second.vxml is missing: the goto fails with error.badfetch.
        let (status, out, err) = command_output(&options(&target, "5"));
        assert_eq!(status, EXIT_SESSION_FAILED, "{out}{err}");
        assert!(err.contains("error.badfetch"), "{err}");
        assert!(out.contains("second.vxml (document) failed"), "{out}");

        let (status, _, err) = command_output(&options(&target, "1,x9"));
        assert_eq!(status, EXIT_BAD_ARGUMENTS);
        assert!(err.contains("input 2"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_http_application_is_fetched_and_its_submit_posted() {
        let app = r#"<vxml version="2.1"><form>
            <field name="pin" type="digits?length=4"><prompt>Your PIN?</prompt></field>
            <block><submit next="/done" method="post" namelist="pin"/></block>
          </form></vxml>"#;
        let router = Router::new()
            .route(
                "/app.vxml",
                get(move || async move {
                    ([("content-type", "application/voicexml+xml")], app)
                }),
            )
            .route(
                "/done",
                post(|Form(form): Form<Vec<(String, String)>>| async move {
                    let pin = form
                        .iter()
                        .find(|(k, _)| k == "pin")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    format!(
                        r#"<vxml version="2.1"><form><block><prompt>Got {pin}.</prompt><exit/></block></form></vxml>"#
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        let options = options(&format!("http://{addr}/app.vxml"), "1234");
        let (status, out, err) = tokio::task::spawn_blocking(move || command_output(&options))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, EXIT_OK, "{out}{err}");
        assert!(
            out.contains(&format!("submit POST http://{addr}/done pin=\"1234\"")),
            "{out}"
        );
        assert!(out.contains("prompt \"Got 1234.\""), "{out}");
    }
}
