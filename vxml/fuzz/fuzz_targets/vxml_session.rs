//! A `Session` fed the input as its initial document (and as every later fetch, up to a few),
//! then playback completions, a few DTMF keys, its timeouts and a hangup. It must never panic,
//! and it must end exactly once with nothing after `End`.
//!
//! The first input byte picks the keys pressed (and an utterance recognised); the rest is the
//! document. Records and transfers are answered at once.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use outdial_vxml::{
    Action, Fetch, FetchFailure, Fetched, Input, Limits, Recording, Session, SessionConfig,
    TransferOutcome,
};

/// Fetches answered with the input; later ones fail with 404.
const MAX_DOCUMENT_FETCHES: usize = 4;
/// Upper bound on driver steps, far above what the scripted caller needs.
const MAX_STEPS: usize = 200;
/// Key sequences the caller may press.
const KEYS: [&str; 4] = ["1", "12#", "*9", "0000000000#"];
/// Utterances the caller may say.
const UTTERANCES: [&str; 4] = ["yes", "chicago", "order three pizzas", "help"];

struct Driver {
    session: Session,
    now: Instant,
    body: Vec<u8>,
    fetches: usize,
    ended: bool,
}

impl Driver {
    /// Drains actions, answering fetches and completing playback at once.
    fn drain(&mut self) {
        for _ in 0..MAX_STEPS {
            let Some(action) = self.session.poll_action() else {
                return;
            };
            assert!(!self.ended, "action after End: {action:?}");
            let input = match action {
                Action::Fetch(Fetch { id, url, .. }) => {
                    self.fetches += 1;
                    let result = if self.fetches <= MAX_DOCUMENT_FETCHES {
                        Ok(Fetched {
                            url,
                            content_type: Some("application/voicexml+xml".to_owned()),
                            body: self.body.clone(),
                        })
                    } else {
                        Err(FetchFailure {
                            status: Some(404),
                            message: "not found".to_owned(),
                        })
                    };
                    Input::Fetched { id, result }
                }
                Action::Play { id, .. } => Input::PlaybackDone {
                    id,
                    interrupted: false,
                },
                Action::Record(request) => Input::Recorded {
                    id: request.id,
                    result: Ok(Recording {
                        content_type: "audio/wav".to_owned(),
                        audio: vec![0; 64],
                        duration: Duration::from_millis(800),
                        termchar: Some('#'),
                        maxtime: false,
                        silent: false,
                    }),
                },
                Action::Transfer(request) => Input::TransferDone {
                    id: request.id,
                    result: Ok(TransferOutcome::Busy),
                },
                Action::Log { .. }
                | Action::Heard(_)
                | Action::Listen(_)
                | Action::Disconnect { .. }
                | Action::StopPlayback => continue,
                Action::End(_) => {
                    self.ended = true;
                    continue;
                }
            };
            self.session.handle_input(self.now, input);
        }
    }

    fn run_timers(&mut self) {
        for _ in 0..MAX_STEPS {
            let Some(deadline) = self.session.poll_timeout() else {
                return;
            };
            self.now = self.now.max(deadline);
            self.session.handle_timeout(self.now);
            self.drain();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let config = SessionConfig {
        url: "https://fuzz.invalid/app/start.vxml".to_owned(),
        vars: vec![("caller".to_owned(), "\"+15550001\"".to_owned())],
        local_uri: "sip:outdial@192.0.2.1".to_owned(),
        remote_uri: "sip:+15550001@192.0.2.4".to_owned(),
        answered_by: None,
        limits: Limits {
            script_budget: 10,
            call_script_budget: 100,
            script_memory_bytes: 1 << 20,
            max_document_bytes: 64 * 1024,
            max_goto_chain: 100,
            max_fetches: 16,
            max_prompt_chars: 4096,
        },
    };
    let now = Instant::now();
    let session = Session::new(config, now).expect("fixed configuration starts");
    let mut driver = Driver {
        session,
        now,
        body: body.to_vec(),
        fetches: 0,
        ended: false,
    };
    driver.drain();
    for key in KEYS[usize::from(selector) % KEYS.len()].chars() {
        driver.now += Duration::from_millis(300);
        driver.session.handle_input(driver.now, Input::Dtmf(key));
        driver.drain();
    }
    driver.now += Duration::from_millis(300);
    let utterance = UTTERANCES[usize::from(selector / 4) % UTTERANCES.len()];
    driver.session.handle_input(
        driver.now,
        Input::Recognition {
            utterance: utterance.to_owned(),
            confidence: 0.8,
        },
    );
    driver.drain();
    driver.run_timers();
    driver.session.handle_input(driver.now, Input::Hangup);
    driver.drain();
    assert!(driver.ended, "no End after hangup");
});
