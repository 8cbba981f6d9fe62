//! Outdial's VoiceXML 2.1 interpreter, sans-IO.
//!
//! A [`Session`] runs one call's VoiceXML application. The platform drives it with
//! [`Session::handle_input`] and [`Session::handle_timeout`], then drains
//! [`Session::poll_action`] until it returns `None` and arms a timer for
//! [`Session::poll_timeout`]. The session never reads a clock, opens a socket or spawns a
//! thread: time arrives only as the `now` arguments, so tests run in virtual time.
//!
//! Modules, in the order a document flows through them:
//! - [`document`]: fetched bytes → owned document model (roxmltree, encoding_rs).
//! - [`srgs`]: SRGS grammars (XML, ABNF), SISR and the builtin grammars.
//! - [`script`]: the ECMAScript data model and its five scopes (rquickjs).
//! - [`event`]: event names and catch selection.
//! - [`prompt`]: prompts handed to the platform.
//! - `fia`: the Form Interpretation Algorithm and executable content.
//! - [`session`]: the sans-IO boundary: inputs, actions, timers, prompt playback, collection.

pub mod caller;
pub mod document;
pub mod event;
mod fia;
pub mod prompt;
pub mod script;
pub mod session;
mod session_var;
pub mod srgs;

pub use prompt::{Clip, Prompt, PromptItem};
pub use session::{
    Action, DEFAULT_CALL_SCRIPT_BUDGET, DEFAULT_MAX_FETCHES, DEFAULT_MAX_PROMPT_CHARS, Enctype,
    Error, Fetch, FetchFailure, FetchId, FetchPurpose, Fetched, FormFile, Heard, Input, Limits,
    Listen, Method, RecordRequest, Recording, Session, SessionConfig, SessionEnd, SpeechListen,
    SpeechTiming, TransferFailure, TransferKind, TransferOutcome, TransferRequest,
};
pub use session_var::session_var_problem;
pub use srgs::{Grammar, Jsgf, JsgfError};
