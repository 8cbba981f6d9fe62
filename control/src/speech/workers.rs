//! Recognizer threads off the dataplane cores and the tokio runtime, fed through a bounded
//! queue. A full queue is refused at once ([`Busy`]): the caller turns it into the field's
//! documented error event instead of a call that waits.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::{Decoder, Hypothesis, Jsgf, Model, SpeechError};

/// The answer to one submitted utterance.
pub type Answer = Result<Hypothesis, SpeechError>;

/// Every recognizer is busy and the queue is full; submit nothing more for this utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "all {workers} speech recognizers are busy and {queued} utterances are queued; raise [speech] workers or queue_per_worker, or add CPUs"
)]
pub struct Busy {
    /// Recognizer threads.
    pub workers: usize,
    /// Queue capacity.
    pub queued: usize,
}

struct Job {
    grammar: Arc<Jsgf>,
    pcm8k: Vec<i16>,
    reply: oneshot::Sender<Answer>,
}

/// A pool of decoder threads.
pub struct Workers {
    queue: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    busy: Busy,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("workers", &self.busy.workers)
            .finish()
    }
}

impl Workers {
    /// The default number of recognizer threads: one per two CPUs, at least one.
    pub fn default_count() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    /// Starts `workers` threads (at least one), each with its own decoder, and a queue of
    /// `workers * queue_per_worker` utterances. Loading a decoder takes about 0.2 s each;
    /// call this at start-up, not on a call's path.
    pub fn start(
        model: &Arc<Model>,
        workers: usize,
        queue_per_worker: usize,
    ) -> Result<Self, SpeechError> {
        let workers = workers.max(1);
        let capacity = workers * queue_per_worker.max(1);
        let decoders = (0..workers)
            .map(|_| Decoder::new(Arc::clone(model)))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(workers);
        for (i, decoder) in decoders.into_iter().enumerate() {
            let rx = Arc::clone(&rx);
            let thread = std::thread::Builder::new()
                .name(format!("speech-{i}"))
                .spawn(move || run(decoder, &rx))
                .map_err(|e| {
                    SpeechError::Model(format!("cannot start a recognizer thread: {e}"))
                })?;
            threads.push(thread);
        }
        Ok(Self {
            queue: Some(tx),
            threads,
            busy: Busy {
                workers,
                queued: capacity,
            },
        })
    }

    /// Loads the model `[speech]` names and starts its recognizer threads (about 0.2 s per
    /// thread; call at start-up, off the async runtime).
    pub fn from_config(config: &crate::config::SpeechConfig) -> Result<Self, SpeechError> {
        let model = Model::load(
            config.model_paths()?,
            super::engine::DEFAULT_FILL_RMS,
            super::Calibration::default(),
        )?;
        Self::start(&model, config.worker_count(), config.queue_per_worker)
    }

    /// Queues one utterance (8 kHz PCM16) for recognition against `grammar`; the answer
    /// arrives on the returned receiver. Never blocks: a full queue is [`Busy`].
    pub fn submit(
        &self,
        grammar: Arc<Jsgf>,
        pcm8k: Vec<i16>,
    ) -> Result<oneshot::Receiver<Answer>, Busy> {
        let (reply, answer) = oneshot::channel();
        let Some(queue) = &self.queue else {
            return Err(self.busy);
        };
        match queue.try_send(Job {
            grammar,
            pcm8k,
            reply,
        }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(self.busy),
        }
    }

    /// Recognizer threads.
    pub fn count(&self) -> usize {
        self.busy.workers
    }
}

/// One recognizer thread: takes jobs until the pool is dropped.
fn run(mut decoder: Decoder, queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while decoding.
        let job = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if job.reply.is_closed() {
            continue; // the call hung up or the field ended; skip the work
        }
        let answer = decoder.recognize(&job.grammar, &job.pcm8k);
        let _ = job.reply.send(answer);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the queue ends every thread after its current job.
        self.queue = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speech::engine::tests::{CITIES, g711_utterance};

    #[tokio::test]
    async fn answers_and_refuses_when_full() {
        let config = crate::config::SpeechConfig {
            workers: 1,
            queue_per_worker: 1,
            ..Default::default()
        };
        let workers = Workers::from_config(&config).expect("workers");
        let grammar = Arc::new(Jsgf::new(CITIES).expect("grammar"));
        let chicago = g711_utterance("chicago", "en-us", "u-law");
        // One thread and a queue of one: of ten utterances submitted at once (each takes
        // milliseconds to decode, submitting takes microseconds), some are refused.
        let mut accepted = Vec::new();
        let mut refused = 0;
        for _ in 0..10 {
            match workers.submit(Arc::clone(&grammar), chicago.clone()) {
                Ok(answer) => accepted.push(answer),
                Err(busy) => {
                    assert_eq!(
                        busy,
                        Busy {
                            workers: 1,
                            queued: 1
                        }
                    );
                    refused += 1;
                }
            }
        }
        assert!(refused > 0 && !accepted.is_empty(), "refused {refused}");
        for answer in accepted {
            assert_eq!(
                answer.await.expect("answered").expect("recognised").text,
                "chicago"
            );
        }
        // Once drained, the pool takes work again.
        let answer = workers.submit(grammar, chicago).expect("room again");
        assert_eq!(
            answer.await.expect("answered").expect("recognised").text,
            "chicago"
        );
    }
}
