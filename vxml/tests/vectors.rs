//! Golden-transcript tests: each `tests/vectors/NAME.script` drives a [`Session`] in virtual
//! time against the documents in `tests/vectors/`, and the transcript of inputs and actions must
//! equal `NAME.expected`. On a mismatch the runner writes `NAME.actual` beside it.
//!
//! The simulated platform:
//! - serves `http://vectors.test/PATH` from `tests/vectors/PATH` (404 if absent), and
//!   `http://vectors.test/empty/...` as an empty 200 response; fetches take `fetch-delay`
//!   (default 0);
//! - plays each prompt for 2 s, in order; a key during a barge-in prompt stops every queued
//!   barge-in prompt (reported `interrupted`); `StopPlayback` stops every queued prompt;
//! - a prompt's items other than marks share its 2 s equally, and a `<mark>` falls where the
//!   items before it end: when a prompt ends or is stopped, the last mark it passed is
//!   reported (`MarkReached`, transcribed `mark #ID NAME +MSms`) before its `PlaybackDone`.
//!
//! Script lines: `start FILE` (default `NAME.vxml`), `var NAME JSON`, `fetch-delay DURATION`,
//! `wait DURATION`, `dtmf KEYS`, `say WORDS` (a recognition, confidence 0.9), `speech-start`
//! (the caller started speaking), `recognition-fails EVENT MESSAGE`, `hangup`,
//! `transfer-outcome NAME` (how transfers end; default busy), `play-fails EVENT MESSAGE` (the
//! prompt playing now could not be rendered: `PlaybackFailed`). A Record is answered at once
//! with a 1.5 s, 800-byte recording ended by `#`. After the last line the runner waits up to
//! 300 s for the session to end.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use outdial_vxml::{
    Action, Fetch, FetchFailure, FetchId, FetchPurpose, Fetched, Input, Limits, PromptItem,
    Recording, Session, SessionConfig, TransferOutcome,
};

const BASE: &str = "http://vectors.test/";
const PLAY_TIME: Duration = Duration::from_secs(2);

/// A prompt's marks and where each falls in its play time.
type Marks = Vec<(String, Duration)>;

struct Platform {
    session: Session,
    dir: PathBuf,
    start: Instant,
    now: Instant,
    fetch_delay: Duration,
    fetches: VecDeque<(Instant, FetchId, Result<Fetched, FetchFailure>)>,
    /// Queued plays: id, barge-in, marks and where they fall.
    plays: VecDeque<(u32, bool, Marks)>,
    play_ends: Option<Instant>,
    ended: bool,
    transcript: String,
    /// Answers to Record and Transfer actions, given at once.
    answers: VecDeque<Input>,
    /// What a transfer ends with (`transfer-outcome NAME`).
    transfer_outcome: TransferOutcome,
}

impl Platform {
    fn record(&mut self, line: &str) {
        let t = self.now - self.start;
        let _ = writeln!(
            self.transcript,
            "[{:>3}.{:03}] {line}",
            t.as_secs(),
            t.subsec_millis()
        );
    }

    fn drain(&mut self) {
        loop {
            self.drain_actions();
            let Some(input) = self.answers.pop_front() else {
                return;
            };
            self.session.handle_input(self.now, input);
        }
    }

    fn drain_actions(&mut self) {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Fetch(Fetch {
                    id,
                    url,
                    method,
                    form,
                    purpose,
                    files,
                    ..
                }) => {
                    let submit = purpose == FetchPurpose::Submit;
                    let form: Vec<String> =
                        form.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                    let files: Vec<String> = files
                        .iter()
                        .map(|f| format!("{}:{}:{} bytes", f.name, f.content_type, f.data.len()))
                        .collect();
                    self.record(&format!(
                        "fetch #{} {method:?} {url}{}{}{}",
                        id.0,
                        if submit { " submit" } else { "" },
                        if form.is_empty() {
                            String::new()
                        } else {
                            format!(" [{}]", form.join(", "))
                        },
                        if files.is_empty() {
                            String::new()
                        } else {
                            format!(" files [{}]", files.join(", "))
                        }
                    ));
                    let result = self.serve(&url);
                    self.fetches
                        .push_back((self.now + self.fetch_delay, id, result));
                }
                Action::Play { id, prompt } => {
                    let items: Vec<String> = prompt
                        .items
                        .iter()
                        .map(|item| match item {
                            PromptItem::Text(t) => format!("{t:?}"),
                            PromptItem::Audio { url, fallback } => match fallback {
                                Some(f) => format!("audio({url}, fallback {f:?})"),
                                None => format!("audio({url})"),
                            },
                            PromptItem::Recording(clip) => format!(
                                "recording({}ms, {} bytes)",
                                clip.duration.as_millis(),
                                clip.audio.len()
                            ),
                            PromptItem::Break(d) => format!("break({}ms)", d.as_millis()),
                            PromptItem::Ssml(ssml) => format!("ssml({ssml})"),
                            PromptItem::Mark(name) => format!("mark({name:?})"),
                        })
                        .collect();
                    self.record(&format!(
                        "play #{id} {}{}",
                        if prompt.bargein { "" } else { "(no bargein) " },
                        items.join(" ")
                    ));
                    let marks = mark_offsets(&prompt.items);
                    self.plays.push_back((id, prompt.bargein, marks));
                    if self.play_ends.is_none() {
                        self.play_ends = Some(self.now + PLAY_TIME);
                    }
                }
                Action::Log { label, text } => match label {
                    Some(label) => self.record(&format!("log [{label}] {text}")),
                    None => self.record(&format!("log {text}")),
                },
                Action::Record(request) => {
                    self.record(&format!(
                        "record #{} beep={} max={}ms",
                        request.id,
                        request.beep,
                        request.max_time.as_millis()
                    ));
                    self.answers.push_back(Input::Recorded {
                        id: request.id,
                        result: Ok(Recording {
                            content_type: "audio/wav".into(),
                            audio: vec![0; 800],
                            duration: Duration::from_millis(1500),
                            termchar: Some('#'),
                            maxtime: false,
                            silent: false,
                        }),
                    });
                }
                Action::Transfer(request) => {
                    self.record(&format!(
                        "transfer #{} {:?} {}",
                        request.id, request.kind, request.dest
                    ));
                    self.answers.push_back(Input::TransferDone {
                        id: request.id,
                        result: Ok(self.transfer_outcome),
                    });
                }
                // Consumed input is already in the transcript as the script's keys.
                Action::Heard(_) => {}
                Action::StopPlayback => {
                    self.record("stop playback");
                    self.report_head_mark();
                    let stopped: Vec<u32> = self.plays.drain(..).map(|(id, ..)| id).collect();
                    self.play_ends = None;
                    for id in stopped {
                        self.session.handle_input(
                            self.now,
                            Input::PlaybackDone {
                                id,
                                interrupted: true,
                            },
                        );
                    }
                }
                Action::Listen(_) | Action::Disconnect { .. } => {}
                Action::End(end) => {
                    self.record(&format!("end {end:?}"));
                    if let Some(submitted) = self.session.submitted() {
                        let line = format!("submitted {submitted:?}");
                        self.record(&line);
                    }
                    self.ended = true;
                }
            }
        }
    }

    fn serve(&self, url: &str) -> Result<Fetched, FetchFailure> {
        let Some(path) = url.strip_prefix(BASE) else {
            return Err(FetchFailure {
                status: None,
                message: "host not found".into(),
            });
        };
        if path.starts_with("empty/") {
            return Ok(Fetched {
                url: url.to_owned(),
                content_type: None,
                body: Vec::new(),
            });
        }
        let path = path.split('?').next().unwrap_or_default();
        match std::fs::read(self.dir.join(path)) {
            Ok(body) => Ok(Fetched {
                url: url.to_owned(),
                content_type: Some("application/voicexml+xml".into()),
                body,
            }),
            Err(_) => Err(FetchFailure {
                status: Some(404),
                message: "Not Found".into(),
            }),
        }
    }

    /// Advances virtual time to `until`, delivering fetch results, playback ends and timeouts.
    fn advance(&mut self, until: Instant) {
        while !self.ended {
            let fetch = self.fetches.front().map(|f| f.0);
            let candidates = [fetch, self.play_ends, self.session.poll_timeout()];
            let Some(next) = candidates.into_iter().flatten().min() else {
                break;
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if fetch == Some(next) {
                if let Some((_, id, result)) = self.fetches.pop_front() {
                    self.session
                        .handle_input(self.now, Input::Fetched { id, result });
                }
            } else if self.play_ends == Some(next) {
                if let Some((id, _, marks)) = self.plays.pop_front() {
                    self.report_mark(id, &marks, PLAY_TIME);
                    self.record(&format!("done #{id}"));
                    self.session.handle_input(
                        self.now,
                        Input::PlaybackDone {
                            id,
                            interrupted: false,
                        },
                    );
                }
                self.play_ends = (!self.plays.is_empty()).then(|| self.now + PLAY_TIME);
            } else {
                self.session.handle_timeout(self.now);
            }
            self.drain();
        }
        if until > self.now {
            self.now = until;
        }
    }

    fn dtmf(&mut self, key: char) {
        self.record(&format!("dtmf {key}"));
        self.barge_in(Input::Dtmf(key));
    }

    /// Delivers caller input; a barge-in prompt playing is stopped with every queued one.
    fn barge_in(&mut self, input: Input) {
        let barged = self.plays.front().is_some_and(|(_, bargein, _)| *bargein);
        let stopped: Vec<u32> = if barged {
            self.report_head_mark();
            self.plays
                .iter()
                .filter(|(_, b, _)| *b)
                .map(|(id, ..)| *id)
                .collect()
        } else {
            Vec::new()
        };
        self.session.handle_input(self.now, input);
        for id in &stopped {
            self.session.handle_input(
                self.now,
                Input::PlaybackDone {
                    id: *id,
                    interrupted: true,
                },
            );
        }
        if !stopped.is_empty() {
            self.plays.retain(|(id, ..)| !stopped.contains(id));
            let ids: Vec<String> = stopped.iter().map(|id| format!("#{id}")).collect();
            self.record(&format!("interrupted {}", ids.join(" ")));
            self.play_ends = (!self.plays.is_empty()).then(|| self.now + PLAY_TIME);
        }
        self.drain();
    }
}

impl Platform {
    /// Reports the last mark the playing prompt has passed by now.
    fn report_head_mark(&mut self) {
        let (Some((id, _, marks)), Some(ends)) = (self.plays.front(), self.play_ends) else {
            return;
        };
        let played = PLAY_TIME.saturating_sub(ends.saturating_duration_since(self.now));
        let (id, marks) = (*id, marks.clone());
        self.report_mark(id, &marks, played);
    }

    /// Reports the last of `marks` at or before `played` into play `id`.
    fn report_mark(&mut self, id: u32, marks: &[(String, Duration)], played: Duration) {
        let Some((name, offset)) = marks.iter().rev().find(|(_, at)| *at <= played) else {
            return;
        };
        let since = played.saturating_sub(*offset);
        self.record(&format!("mark #{id} {name} +{}ms", since.as_millis()));
        let mark = Input::MarkReached {
            id,
            name: name.clone(),
            since,
        };
        self.session.handle_input(self.now, mark);
    }
}

/// Where each mark falls in a prompt's [`PLAY_TIME`]: the other items share it equally.
fn mark_offsets(items: &[PromptItem]) -> Vec<(String, Duration)> {
    let spoken = items
        .iter()
        .filter(|item| !matches!(item, PromptItem::Mark(_)))
        .count();
    let share = PLAY_TIME / u32::try_from(spoken.max(1)).expect("few items");
    let mut passed = 0u32;
    let mut marks = Vec::new();
    for item in items {
        match item {
            PromptItem::Mark(name) => marks.push((name.clone(), share * passed)),
            _ => passed += 1,
        }
    }
    marks
}

fn parse_duration(text: &str) -> Duration {
    if let Some(ms) = text.strip_suffix("ms") {
        Duration::from_millis(ms.parse().expect("duration in ms"))
    } else if let Some(s) = text.strip_suffix('s') {
        Duration::from_secs_f64(s.parse().expect("duration in s"))
    } else {
        panic!("bad duration {text:?}")
    }
}

fn run_case(dir: &Path, name: &str, script: &str) -> String {
    let mut start = format!("{name}.vxml");
    let mut vars = Vec::new();
    let mut steps = Vec::new();
    for line in script.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        match command {
            "start" => start = rest.to_owned(),
            "var" => {
                let (var, json) = rest.split_once(' ').expect("var NAME JSON");
                vars.push((var.to_owned(), json.to_owned()));
            }
            _ => steps.push((command.to_owned(), rest.to_owned())),
        }
    }
    let epoch = Instant::now();
    let session = Session::new(
        SessionConfig {
            url: format!("{BASE}{start}"),
            vars,
            local_uri: "sip:outdial@10.0.0.1".into(),
            remote_uri: "sip:+15551234@carrier.example".into(),
            answered_by: None,
            limits: Limits::default(),
        },
        epoch,
    )
    .expect("session starts");
    let mut platform = Platform {
        session,
        dir: dir.to_owned(),
        start: epoch,
        now: epoch,
        fetch_delay: Duration::ZERO,
        fetches: VecDeque::new(),
        plays: VecDeque::new(),
        play_ends: None,
        ended: false,
        transcript: String::new(),
        answers: VecDeque::new(),
        transfer_outcome: TransferOutcome::Busy,
    };
    for (command, rest) in steps {
        match command.as_str() {
            "fetch-delay" => platform.fetch_delay = parse_duration(&rest),
            "wait" => {
                let until = platform.now + parse_duration(&rest);
                platform.drain();
                platform.advance(until);
            }
            "dtmf" => {
                platform.drain();
                platform.advance(platform.now);
                for key in rest.chars() {
                    platform.dtmf(key);
                }
            }
            "say" => {
                platform.drain();
                platform.advance(platform.now);
                platform.record(&format!("say {rest:?}"));
                platform.barge_in(Input::Recognition {
                    utterance: rest.clone(),
                    confidence: 0.9,
                });
            }
            "speech-start" => {
                platform.drain();
                platform.advance(platform.now);
                platform.record("speech started");
                platform
                    .session
                    .handle_input(platform.now, Input::SpeechStarted);
                platform.drain();
            }
            "recognition-fails" => {
                platform.drain();
                platform.advance(platform.now);
                let (event, message) = rest.split_once(' ').unwrap_or((rest.as_str(), ""));
                platform.record(&format!("recognition failed {event}"));
                platform.session.handle_input(
                    platform.now,
                    Input::RecognitionFailed {
                        event: event.to_owned(),
                        message: message.to_owned(),
                    },
                );
                platform.drain();
            }
            "transfer-outcome" => {
                platform.transfer_outcome = match rest.as_str() {
                    "busy" => TransferOutcome::Busy,
                    "noanswer" => TransferOutcome::NoAnswer,
                    "transferred" => TransferOutcome::Transferred,
                    "far_end_disconnect" => TransferOutcome::FarEndDisconnect,
                    other => panic!("{name}.script: unknown transfer outcome {other:?}"),
                }
            }
            "play-fails" => {
                platform.drain();
                platform.advance(platform.now);
                let (event, message) = rest.split_once(' ').unwrap_or((rest.as_str(), ""));
                let Some((id, ..)) = platform.plays.pop_front() else {
                    panic!("{name}.script: play-fails with nothing playing");
                };
                platform.record(&format!("failed #{id} {event}"));
                platform.play_ends = (!platform.plays.is_empty()).then(|| platform.now + PLAY_TIME);
                platform.session.handle_input(
                    platform.now,
                    Input::PlaybackFailed {
                        id,
                        event: event.to_owned(),
                        message: message.to_owned(),
                    },
                );
                platform.drain();
            }
            "hangup" => {
                platform.drain();
                platform.advance(platform.now);
                platform.record("hangup");
                platform.plays.clear();
                platform.play_ends = None;
                platform.session.handle_input(platform.now, Input::Hangup);
                platform.drain();
            }
            other => panic!("{name}.script: unknown command {other:?}"),
        }
    }
    platform.drain();
    let limit = platform.now + Duration::from_secs(300);
    platform.advance(limit);
    if !platform.ended {
        platform.record("(no end within 300 s)");
    }
    platform.transcript
}

#[test]
fn vectors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/vectors must exist")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "script"))
        .collect();
    scripts.sort();
    let mut failures = Vec::new();
    for script_path in &scripts {
        let name = script_path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name");
        let script = std::fs::read_to_string(script_path).expect("readable script");
        let actual = run_case(&dir, name, &script);
        let expected_path = script_path.with_extension("expected");
        let actual_path = script_path.with_extension("actual");
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected == actual {
            let _ = std::fs::remove_file(&actual_path);
        } else {
            std::fs::write(&actual_path, &actual).expect("write .actual");
            failures.push(name.to_owned());
        }
    }
    assert!(!scripts.is_empty(), "no vectors found in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {} vectors differ (see tests/vectors/*.actual): {failures:?}",
        failures.len(),
        scripts.len()
    );
}
