//! What crosses between the control plane and a dataplane core.
//!
//! Control sends [`Command`]s to a core; the core answers with [`Event`]s. Both travel
//! through bounded lock-free queues (see [`crate::Dataplane`]); nothing here locks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Identifies one call across control and dataplane. Control assigns it (the store's row id).
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct CallId(pub u64);

/// Linear 16-bit PCM at 8,000 Hz, mono: the one audio format control hands to a core.
/// The core encodes it to the negotiated G.711 law when it packetises.
pub type Pcm8k = Arc<[i16]>;

/// A request to place one outbound call.
#[derive(Clone, Debug)]
pub struct Dial {
    /// The call this dial belongs to.
    pub call: CallId,
    /// Request-URI to dial, e.g. `sip:+15550001@127.0.0.1:5070`.
    pub target: String,
    /// Where to send the INVITE when the target's host is a name that control resolved
    /// (the core does no DNS); `None` = the target's IP address and port.
    pub destination: Option<SocketAddr>,
    /// From URI, e.g. `sip:outdial@127.0.0.1`.
    pub from: String,
    /// Time from sending the INVITE to giving up with CANCEL (status `no-answer`).
    pub ring_timeout: Duration,
    /// Hard limit on an answered call's length; the core sends BYE when it passes.
    pub max_duration: Duration,
}

/// Control → core.
#[derive(Clone, Debug)]
pub enum Command {
    /// Place a call.
    Dial(Box<Dial>),
    /// Queue audio to play on an answered call, after whatever is queued already.
    Play {
        /// The call.
        call: CallId,
        /// Chosen by control; echoed in [`Event::PlaybackDone`].
        id: u32,
        /// The audio.
        audio: Pcm8k,
        /// Whether a DTMF key pressed during this item stops it and flushes the rest of the queue.
        bargein: bool,
        /// The call's barge-in count when the application issued this prompt (see
        /// [`Event::BargeIn`]). A prompt older than the core's count was overtaken by a
        /// barge-in on its way here: the core drops it and reports it interrupted.
        epoch: u32,
    },
    /// Stop what is playing and drop everything queued.
    StopPlayback {
        /// The call.
        call: CallId,
    },
    /// End the call: CANCEL before answer, BYE after. Ends with [`Event::Ended`].
    Hangup {
        /// The call.
        call: CallId,
    },
    /// Record the callee (VoiceXML `<record>`): optionally a beep, then received audio until
    /// one of the bounds ends it (see [`crate::rtp::record`]). Ends with [`Event::Recorded`],
    /// sent before [`Event::Ended`] when the call ends first. A recording in progress ends
    /// (as stopped) before a new one starts.
    Record {
        /// The call.
        call: CallId,
        /// Chosen by control; echoed in [`Event::Recorded`].
        id: u32,
        /// Longest recording (at most [`crate::rtp::record::MAX_RECORD_TIME`]).
        max_time: Duration,
        /// Silence after sound that ends the recording.
        final_silence: Duration,
        /// No sound at all for this long ends the recording as silent.
        no_input: Duration,
        /// Any DTMF key ends the recording, as its `termchar` (it is not reported as a key).
        dtmfterm: bool,
        /// Play a short beep (1 kHz, 200 ms) first; capture starts when it ends.
        beep: bool,
    },
    /// End the recording `id` now, keeping what it captured.
    StopRecording {
        /// The call.
        call: CallId,
        /// The recording's id.
        id: u32,
    },
}

/// Core → control.
#[derive(Clone, Debug)]
pub enum Event {
    /// A provisional response (180/183) arrived.
    Ringing {
        /// The call.
        call: CallId,
    },
    /// 200 OK arrived, ACK sent, media negotiated.
    Answered {
        /// The call.
        call: CallId,
        /// Codec chosen from the answer.
        codec: Codec,
    },
    /// A key stopped a barge-in prompt and flushed the queue; `epoch` is the call's barge-in
    /// count after it. Sent before the `PlaybackDone` and `Dtmf` events the key caused.
    BargeIn {
        /// The call.
        call: CallId,
        /// Barge-ins on this call so far.
        epoch: u32,
    },
    /// A DTMF key: `0-9 * # A-D`.
    Dtmf {
        /// The call.
        call: CallId,
        /// The key.
        digit: char,
    },
    /// A queued [`Command::Play`] item finished or was dropped.
    PlaybackDone {
        /// The call.
        call: CallId,
        /// The id given in [`Command::Play`].
        id: u32,
        /// True when barge-in, [`Command::StopPlayback`] or hangup cut it short.
        interrupted: bool,
    },
    /// A [`Command::Record`] recording ended. A call that is not answered (or no longer
    /// is) answers at once with an empty, silent recording.
    Recorded {
        /// The call.
        call: CallId,
        /// The id given in [`Command::Record`].
        id: u32,
        /// The recording: linear PCM16, 8 kHz, mono.
        pcm: Vec<i16>,
        /// The key that ended it (`dtmfterm`).
        termchar: Option<char>,
        /// Whether `max_time` ended it.
        maxtime: bool,
        /// Whether the callee made no sound (nothing above the sound level).
        silent: bool,
    },
    /// The call is over; the last event for this call.
    Ended {
        /// The call.
        call: CallId,
        /// How it ended.
        outcome: Outcome,
    },
}

/// Audio codec negotiated for a call.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Codec {
    /// G.711 µ-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
}

/// How a call ended.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Outcome {
    /// Classification.
    pub disposition: Disposition,
    /// Final SIP status of the INVITE, when one arrived.
    pub sip_status: Option<u16>,
    /// Human-readable detail, e.g. `486 Busy Here` or `no response to INVITE (Timer B)`.
    pub reason: String,
}

/// Classification of a call's end.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Disposition {
    /// Answered, then hung up by either side.
    Completed,
    /// 486 or 600.
    Busy,
    /// Rang past the ring timeout (we sent CANCEL), or 408/480.
    NoAnswer,
    /// Any other final failure: 4xx-6xx, timeout, unreachable, bad SDP.
    Failed,
    /// Control hung up before answer.
    Canceled,
}
