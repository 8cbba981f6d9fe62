//! Speech recognition for fields with voice grammars: PocketSphinx (Debian 12's
//! `libpocketsphinx3` and `pocketsphinx-en-us`, nothing downloaded) constrained by JSGF,
//! over the telephone band.
//!
//! - [`grammar`]: the JSGF text, its cache key and its words.
//! - [`frontend`]: 8 kHz G.711 audio to the model's 16 kHz band.
//! - [`engine`]: one decoder, [`engine::Decoder::recognize`], and the confidence.
//! - [`workers`]: a pool of decoder threads with a bounded queue; a full queue is
//!   [`workers::Busy`] at once, never a wait.
//! - [`ffi`]: the library functions, declared by hand and loaded at run time (why: see that
//!   module).
//! - [`recognizer`]: the call runner's recognizer: a field's grammars to JSGF, the pool.
//!
//! What works over G.711, measured on `bench/speech/` (figures and commands in
//! `docs/benchmarks.md`, "Speech recognition over G.711"): the 16 kHz en-US model cannot
//! read 8 kHz features (`-samprate 8000`: 0-16 % of city names right); upsampled to 16 kHz it
//! gets 76-79 %; with a faint noise fill above 4 kHz ([`frontend`]) 86 %; with an MLLR
//! transform estimated by sphinxtrain on G.711 audio of espeak-ng voices other than the test
//! voices, 94 %; `-wip 0.05` then brings digit strings from 66 % to 81 %. The transform is
//! made by `bench/speech/adapt.sh`, built into the binary (`telephone.mllr`) and loaded with
//! `-mllr`. Confidence (see [`engine`], `Calibration`) weighs the path's acoustic fit, the
//! share of the loud audio its words cover and its length per phone: at 0.5 it keeps false
//! accepts of out-of-grammar sentences at or under 2.8 % on every grammar and rejects 0-25 % of
//! right answers; near-miss phrases ("san francisco" for the cities) can still pass.
//!
//! `libpocketsphinx3` and `libsphinxbase3` (Debian 12) are loaded when speech starts, not
//! linked: the binary builds and runs without them ([`ffi`]).

pub mod engine;
mod ffi;
pub mod frontend;
pub mod grammar;
pub mod recognizer;
pub mod workers;

pub use engine::{Calibration, Decoder, Model, ModelPaths};
pub use grammar::Jsgf;
pub use recognizer::SpeechRecognizer;
pub use workers::{Busy, Workers};

/// What the recognizer heard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hypothesis {
    /// The words of the grammar's best phrase, space-separated; empty when no speech was
    /// recognised (the field's noinput).
    pub text: String,
    /// 0..1; below the field's `confidencelevel` the result is a nomatch.
    pub confidence: f32,
}

/// Why recognition could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpeechError {
    /// The grammar uses words the pronunciation dictionary does not have.
    #[error(
        "the grammar uses words the pronunciation dictionary lacks: {}; use dictionary words (lower case) or add them to the dictionary",
        .0.join(", ")
    )]
    UnknownWords(Vec<String>),
    /// The grammar is not JSGF the recognizer takes.
    #[error("unusable speech grammar: {0}")]
    Grammar(String),
    /// The model or dictionary could not be loaded.
    #[error("speech model: {0}")]
    Model(String),
    /// The utterance is longer than the recognizer takes.
    #[error(
        "the utterance is {seconds} s long; at most {} s is recognised",
        engine::MAX_UTTERANCE_SECONDS
    )]
    TooLong {
        /// Its length.
        seconds: usize,
    },
    /// The library failed during decoding.
    #[error("speech decoder: {0}")]
    Decoder(String),
    /// The worker pool stopped (the process is shutting down).
    #[error("the speech workers have stopped")]
    Stopped,
}

/// Whether `[speech]` can run here: the model's files exist and the libraries load.
pub fn check(config: &crate::config::SpeechConfig) -> Result<(), SpeechError> {
    config.model_paths()?.check()?;
    ffi::load().map_err(SpeechError::Model)
}

/// Starts recognition as `[speech]` says: the model, its decoders and their threads.
pub fn start(config: &crate::config::SpeechConfig) -> Result<SpeechRecognizer, SpeechError> {
    Workers::from_config(config).map(SpeechRecognizer::new)
}
