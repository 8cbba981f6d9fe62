//! Hostile documents (`tests/hostile/`): each must end its session with the error event that
//! names the limit it ran into, never hang or take the process with it. Each document is also a
//! seed of the `vxml_session` fuzz corpus.
//!
//! The platform here serves `http://hostile.test/PATH` from `tests/hostile/PATH` and answers
//! everything else at once (prompts played, no caller input).

use std::path::Path;
use std::time::{Duration, Instant};

use outdial_vxml::{
    Action, FetchFailure, Fetched, Input, Limits, Session, SessionConfig, SessionEnd,
};

const BASE: &str = "http://hostile.test/";

fn config(file: &str, limits: Limits) -> SessionConfig {
    SessionConfig {
        url: format!("{BASE}{file}"),
        vars: Vec::new(),
        local_uri: "sip:outdial@192.0.2.1".into(),
        remote_uri: "sip:callee@192.0.2.2".into(),
        answered_by: None,
        limits,
    }
}

fn serve(url: &str) -> Result<Fetched, FetchFailure> {
    let path = url.strip_prefix(BASE).unwrap_or("");
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    match std::fs::read(dir.join(path)) {
        Ok(body) if !path.is_empty() && !path.contains("..") => Ok(Fetched {
            url: url.to_owned(),
            content_type: None,
            body,
        }),
        _ => Err(FetchFailure {
            status: Some(404),
            message: "Not Found".into(),
        }),
    }
}

/// Runs the session until it ends (or `max_actions` actions pass); its end and log lines.
fn run(session: &mut Session, max_actions: usize) -> (Option<SessionEnd>, Vec<String>) {
    let now = Instant::now();
    let mut logs = Vec::new();
    for _ in 0..max_actions {
        let Some(action) = session.poll_action() else {
            match session.poll_timeout() {
                Some(at) => {
                    session.handle_timeout(at.max(now));
                    continue;
                }
                None => return (None, logs),
            }
        };
        let input = match action {
            Action::Fetch(fetch) => Input::Fetched {
                id: fetch.id,
                result: serve(&fetch.url),
            },
            Action::Play { id, .. } => Input::PlaybackDone {
                id,
                interrupted: false,
            },
            Action::Log { text, .. } => {
                logs.push(text);
                continue;
            }
            Action::End(end) => return (Some(end), logs),
            _ => continue,
        };
        session.handle_input(now, input);
    }
    (None, logs)
}

#[test]
fn a_runaway_script_restarted_by_its_catch_ends_at_the_call_budget() {
    let limits = Limits {
        script_budget: 10,
        call_script_budget: 45,
        ..Limits::default()
    };
    let mut session = Session::new(config("runaway_catch_loop.vxml", limits), Instant::now())
        .expect("session starts");
    let (end, logs) = run(&mut session, 10_000);
    let Some(SessionEnd::Error { event, message }) = end else {
        panic!("the session must end with an error, not {end:?}");
    };
    assert_eq!(event, "error.semantic");
    assert!(
        message.contains("45 interrupt checks") && message.contains("vxml.call_script_budget"),
        "the reason names the budget: {message}"
    );
    // 45 checks at 10 per script: four scripts stopped by their own budget and caught, the
    // fifth stopped by the call's; after that no expression runs, not even the catch's.
    assert_eq!(logs.iter().filter(|l| *l == "again").count(), 4, "{logs:?}");
    assert_eq!(session.meter().spent(), 45);
}

#[test]
fn stopping_the_meter_ends_a_running_script_and_its_session() {
    let limits = Limits {
        script_budget: u32::MAX,
        call_script_budget: u32::MAX,
        ..Limits::default()
    };
    let mut session = Session::new(config("runaway_script.vxml", limits), Instant::now())
        .expect("session starts");
    let meter = session.meter();
    // The platform's cancel, from another thread while the script spins (or before it
    // starts: either way it must end the session instead of running forever).
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        meter.stop();
    });
    let (end, _) = run(&mut session, 100);
    stopper.join().expect("stopper thread");
    let Some(SessionEnd::Error { event, message }) = end else {
        panic!("a stopped session must end with an error, not {end:?}");
    };
    assert_eq!(event, "error.semantic");
    assert!(message.contains("stopped"), "{message}");
}

#[test]
fn the_call_budget_is_spent_only_by_work_so_a_normal_script_leaves_it_whole() {
    let mut session = Session::new(
        config("runaway_script.vxml", Limits::default()),
        Instant::now(),
    )
    .expect("session starts");
    // Before the document arrives no script has run.
    assert_eq!(session.meter().spent(), 0);
    let (end, _) = run(&mut session, 100);
    assert!(
        matches!(&end, Some(SessionEnd::Error { message, .. }) if message.contains("budget of 200")),
        "one runaway script is stopped by its own budget first: {end:?}"
    );
    assert!(
        (200..=201).contains(&session.meter().spent()),
        "it spent its own budget from the call's: {}",
        session.meter().spent()
    );
}

#[test]
fn entity_bombs_end_the_session_with_error_badfetch_naming_the_limit() {
    for file in ["entity_bomb.vxml", "billion_laughs.vxml", "data_bomb.vxml"] {
        let mut session =
            Session::new(config(file, Limits::default()), Instant::now()).expect("session starts");
        let (end, _) = run(&mut session, 100);
        let Some(SessionEnd::Error { event, message }) = end else {
            panic!("{file}: must end with an error, not {end:?}");
        };
        assert_eq!(event, "error.badfetch", "{file}: {message}");
        assert!(
            message.contains("fetch.max_document_bytes") && message.contains("entity"),
            "{file}: the reason names the limit: {message}"
        );
    }
}

#[test]
fn fetches_past_the_call_limit_fail_with_error_badfetch_naming_it() {
    let limits = Limits {
        max_fetches: 20,
        ..Limits::default()
    };
    let mut session =
        Session::new(config("fetch_loop.vxml", limits), Instant::now()).expect("session starts");
    let mut fetches = 0;
    let now = Instant::now();
    let end = loop {
        match session.poll_action() {
            Some(Action::Fetch(fetch)) => {
                fetches += 1;
                assert!(fetches <= 20, "a fetch past the limit was asked for");
                session.handle_input(
                    now,
                    Input::Fetched {
                        id: fetch.id,
                        result: serve(&fetch.url),
                    },
                );
            }
            Some(Action::End(end)) => break end,
            Some(_) => {}
            None => panic!("the session waits for nothing"),
        }
    };
    assert_eq!(fetches, 20);
    let SessionEnd::Error { event, message } = end else {
        panic!("must end with an error, not {end:?}");
    };
    assert_eq!(event, "error.badfetch");
    assert!(message.contains("vxml.max_fetches_per_call"), "{message}");
}

#[test]
fn a_prompt_too_long_to_speak_throws_error_noresource_naming_the_limit() {
    let mut session = Session::new(
        config("long_prompt.vxml", Limits::default()),
        Instant::now(),
    )
    .expect("session starts");
    let mut played = 0;
    let now = Instant::now();
    let end = loop {
        match session.poll_action() {
            Some(Action::Fetch(fetch)) => session.handle_input(
                now,
                Input::Fetched {
                    id: fetch.id,
                    result: serve(&fetch.url),
                },
            ),
            Some(Action::Play { id, .. }) => {
                played += 1;
                session.handle_input(
                    now,
                    Input::PlaybackDone {
                        id,
                        interrupted: false,
                    },
                );
            }
            Some(Action::End(end)) => break end,
            Some(_) => {}
            None => panic!("the session waits for nothing"),
        }
    };
    assert_eq!(played, 0, "no part of the prompt is spoken");
    let SessionEnd::Error { event, message } = end else {
        panic!("must end with an error, not {end:?}");
    };
    assert_eq!(event, "error.noresource");
    assert!(
        message.contains("60019 characters") && message.contains("vxml.max_prompt_chars"),
        "{message}"
    );
}

#[test]
fn a_grammar_of_many_alternatives_on_one_line_loads_and_matches() {
    let mut session = Session::new(
        config("many_alternatives.vxml", Limits::default()),
        Instant::now(),
    )
    .expect("session starts");
    let now = Instant::now();
    let end = loop {
        match session.poll_action() {
            Some(Action::Fetch(fetch)) => session.handle_input(
                now,
                Input::Fetched {
                    id: fetch.id,
                    result: serve(&fetch.url),
                },
            ),
            Some(Action::Play { id, .. }) => session.handle_input(
                now,
                Input::PlaybackDone {
                    id,
                    interrupted: false,
                },
            ),
            Some(Action::Listen(_)) => {
                for key in "11999#".chars() {
                    session.handle_input(now, Input::Dtmf(key));
                }
            }
            Some(Action::End(end)) => break end,
            Some(_) => {}
            None => panic!("the session waits for nothing"),
        }
    };
    assert!(
        matches!(&end, SessionEnd::Exit { value: Some(v) } if v.contains('1') && v.contains('9')),
        "the keys match the grammar: {end:?}"
    );
}
