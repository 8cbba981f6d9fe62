//! The call runner's [`Recognizer`]: a collection's voice grammars translated to one JSGF
//! grammar (`vxml`'s SRGS → JSGF, [`outdial_vxml::srgs::jsgf_union`]), handed
//! with the utterance to the [`Workers`]. A full queue or a grammar the recognizer cannot
//! take fails the field at once with its documented event, never a wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use outdial_vxml::srgs::{self, Grammar};

use super::{Jsgf, SpeechError, Workers};
use crate::runner::{Recognition, RecognitionFailure, Recognized, Recognizer};

/// Translated grammars kept (by the hash of their JSGF text) so a grammar's words are checked
/// once, not per utterance.
const TRANSLATED: usize = 256;

/// Recognition for the call runners.
pub struct SpeechRecognizer {
    workers: Workers,
    translated: Mutex<HashMap<u64, Arc<Jsgf>>>,
}

impl std::fmt::Debug for SpeechRecognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechRecognizer")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl SpeechRecognizer {
    /// Recognition on `workers`.
    pub fn new(workers: Workers) -> Self {
        Self {
            workers,
            translated: Mutex::new(HashMap::new()),
        }
    }

    /// Recognizer threads.
    pub fn workers(&self) -> usize {
        self.workers.count()
    }

    /// The recognizer's grammar for `grammars`: their union, translated once per text.
    fn grammar(&self, grammars: &[Grammar]) -> Result<Arc<Jsgf>, RecognitionFailure> {
        let grammars: Vec<&Grammar> = grammars.iter().collect();
        let union = srgs::jsgf_union(&grammars).map_err(|error| RecognitionFailure {
            event: "error.unsupported.format",
            message: format!("the voice grammars cannot go to the recognizer: {error}"),
        })?;
        if let Some(known) = self.lock().get(&union.key) {
            return Ok(Arc::clone(known));
        }
        let jsgf = Arc::new(Jsgf::new(union.text).map_err(|e| failure(&e))?);
        let mut translated = self.lock();
        if translated.len() >= TRANSLATED {
            translated.clear();
        }
        translated.insert(union.key, Arc::clone(&jsgf));
        Ok(jsgf)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Jsgf>>> {
        self.translated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Recognizer for SpeechRecognizer {
    fn recognize(
        &self,
        grammars: &[Grammar],
        pcm: Vec<i16>,
    ) -> Result<Recognition, RecognitionFailure> {
        let grammar = self.grammar(grammars)?;
        let answer = self
            .workers
            .submit(grammar, pcm)
            .map_err(|busy| RecognitionFailure {
                event: "error.noresource",
                message: busy.to_string(),
            })?;
        Ok(Box::pin(async move {
            match answer.await {
                Ok(Ok(hypothesis)) => Ok(Recognized {
                    text: hypothesis.text,
                    confidence: hypothesis.confidence,
                }),
                Ok(Err(error)) => Err(failure(&error)),
                Err(_) => Err(failure(&SpeechError::Stopped)),
            }
        }))
    }
}

/// The event a recognizer error throws.
fn failure(error: &SpeechError) -> RecognitionFailure {
    let event = match error {
        SpeechError::UnknownWords(_) | SpeechError::Grammar(_) => "error.unsupported.format",
        SpeechError::TooLong { .. } => "maxspeechtimeout",
        SpeechError::Model(_) | SpeechError::Decoder(_) | SpeechError::Stopped => {
            "error.noresource"
        }
    };
    RecognitionFailure {
        event,
        message: error.to_string(),
    }
}
