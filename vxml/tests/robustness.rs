//! Hostile and random input never panics, and `End` is always the last action.
//!
//! Every document in `tests/vectors/` is (1) truncated at every byte and served as the initial
//! document, and (2) run under seeded random input: keys, hangups, timeouts, playback reports
//! for unknown ids and stale fetch results.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use outdial_vxml::document::Document;
use outdial_vxml::{Action, FetchFailure, FetchId, Fetched, Input, Limits, Session, SessionConfig};

fn documents() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut docs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/vectors must exist")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "vxml"))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "no documents in {}", dir.display());
    docs
}

fn session(now: Instant) -> Session {
    Session::new(
        SessionConfig {
            url: "http://vectors.test/doc.vxml".into(),
            vars: vec![
                ("patient".into(), "\"P\"".into()),
                ("when".into(), "\"W\"".into()),
                ("customer".into(), r#"{"first":"F"}"#.into()),
                ("order".into(), "1".into()),
                ("items".into(), "[]".into()),
            ],
            local_uri: "sip:a@b".into(),
            remote_uri: "sip:c@d".into(),
            answered_by: None,
            limits: Limits {
                script_budget: 20,
                ..Limits::default()
            },
        },
        now,
    )
    .expect("session starts")
}

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Drains actions, checking that nothing follows `End`; returns fetches and plays seen.
fn drain(
    session: &mut Session,
    ended: &mut bool,
    fetches: &mut Vec<FetchId>,
    plays: &mut Vec<u32>,
) {
    while let Some(action) = session.poll_action() {
        assert!(!*ended, "action after End: {action:?}");
        match action {
            Action::End(_) => *ended = true,
            Action::Fetch(fetch) => fetches.push(fetch.id),
            Action::Play { id, .. } => plays.push(id),
            Action::Log { .. }
            | Action::Heard(_)
            | Action::StopPlayback
            | Action::Listen(_)
            | Action::Record(_)
            | Action::Transfer(_)
            | Action::Disconnect { .. } => {}
        }
    }
}

fn fetched(id: FetchId, body: &[u8]) -> Input {
    Input::Fetched {
        id,
        result: Ok(Fetched {
            url: "http://vectors.test/doc.vxml".into(),
            content_type: None,
            body: body.to_vec(),
        }),
    }
}

#[test]
fn every_truncation_of_every_document_is_handled() {
    let url = url::Url::parse("http://vectors.test/doc.vxml").expect("valid URL");
    for path in documents() {
        let body = std::fs::read(&path).expect("readable");
        for cut in 0..=body.len() {
            // The parser sees every prefix; a whole session (costlier) every 16th.
            let _ = Document::parse(url.clone(), None, &body[..cut], 1 << 20);
            if cut % 16 != 0 && cut != body.len() {
                continue;
            }
            let now = Instant::now();
            let mut s = session(now);
            let (mut ended, mut fetches, mut plays) = (false, Vec::new(), Vec::new());
            drain(&mut s, &mut ended, &mut fetches, &mut plays);
            s.handle_input(now, fetched(FetchId(0), &body[..cut]));
            drain(&mut s, &mut ended, &mut fetches, &mut plays);
        }
    }
}

#[test]
fn random_input_never_panics_and_end_is_last() {
    let keys: Vec<char> = "0123456789*#AD".chars().collect();
    let docs = documents();
    for path in &docs {
        let body = std::fs::read(path).expect("readable");
        for seed in 1..=12u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let start = Instant::now();
            let mut now = start;
            let mut s = session(now);
            let (mut ended, mut fetches, mut plays) = (false, Vec::new(), Vec::new());
            drain(&mut s, &mut ended, &mut fetches, &mut plays);
            for _ in 0..120 {
                match rng.below(10) {
                    0..=2 => {
                        let key = keys[rng.below(keys.len() as u64) as usize];
                        s.handle_input(now, Input::Dtmf(key));
                    }
                    3 if rng.below(4) == 0 => {
                        if let Some(id) = plays.pop() {
                            s.handle_input(
                                now,
                                Input::PlaybackFailed {
                                    id,
                                    event: "error.noresource".into(),
                                    message: "text-to-speech failed".into(),
                                },
                            );
                        }
                    }
                    3 => {
                        if let Some(id) = plays.pop() {
                            s.handle_input(
                                now,
                                Input::PlaybackDone {
                                    id,
                                    interrupted: rng.below(2) == 0,
                                },
                            );
                        } else {
                            s.handle_input(
                                now,
                                Input::PlaybackDone {
                                    id: 999,
                                    interrupted: false,
                                },
                            );
                        }
                    }
                    4 => {
                        // Serve the oldest outstanding fetch: the document, a failure or junk.
                        if !fetches.is_empty() {
                            let id = fetches.remove(0);
                            let input = match rng.below(4) {
                                0 => Input::Fetched {
                                    id,
                                    result: Err(FetchFailure {
                                        status: Some(500),
                                        message: "boom".into(),
                                    }),
                                },
                                1 => fetched(id, b"<vxml><form><block>x</block></form>"),
                                _ => fetched(id, &body),
                            };
                            s.handle_input(now, input);
                        }
                    }
                    5 => s.handle_input(now, fetched(FetchId(77), b"<vxml/>")),
                    6 if rng.below(8) == 0 => s.handle_input(now, Input::Hangup),
                    _ => {
                        now += Duration::from_millis(rng.below(4000));
                        if let Some(at) = s.poll_timeout() {
                            if at <= now {
                                s.handle_timeout(now);
                            }
                        } else {
                            s.handle_timeout(now);
                        }
                    }
                }
                drain(&mut s, &mut ended, &mut fetches, &mut plays);
            }
            // Hang up, report every play: the session must end.
            s.handle_input(now, Input::Hangup);
            for id in std::mem::take(&mut plays) {
                s.handle_input(
                    now,
                    Input::PlaybackDone {
                        id,
                        interrupted: true,
                    },
                );
            }
            drain(&mut s, &mut ended, &mut fetches, &mut plays);
            if !ended {
                // Still fetching after the hangup is the only way not to have ended yet.
                for id in std::mem::take(&mut fetches) {
                    s.handle_input(now, fetched(id, &body));
                    drain(&mut s, &mut ended, &mut fetches, &mut plays);
                }
            }
            assert!(ended, "{} seed {seed}: no End after hangup", path.display());
        }
    }
}
