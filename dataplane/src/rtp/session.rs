//! One call's RTP media: a paced G.711 send stream and DTMF from the received stream.
//!
//! Sending is continuous from [`MediaSession::new`]: slot *n* is due at `start + n × 20 ms`
//! and carries RTP timestamp `initial + 160 n`, so pacing never drifts however late the
//! core wakes. A late core sends the missed slots at once, up to [`MAX_CATCH_UP`]; beyond
//! that the oldest slots are skipped, which keeps timestamps on the clock and sets the M bit
//! as after silence suppression (RFC 3550 §5.1). Slots carry queued audio, else silence.
//!
//! Receiving accepts RTP only from the source the call's [`SourcePolicy`] allows (see
//! [`super::source`]): by default the address and port the peer's SDP named, or with
//! latching the one source the call latched to, which then also receives our RTP. Packets
//! dropped for their source are counted, and the first one is reported once
//! ([`MediaEvent::SourceRefused`]).
//!
//! Recording ([`MediaSession::record`]): after an optional beep, received G.711 audio (either
//! law, by its payload type) is captured by a [`Recorder`] until it ends; the result is a
//! [`MediaEvent::Recorded`]. A key ends a `dtmfterm` recording and is not reported as a key.
//!
//! RTCP ([`MediaSession::enable_rtcp`], RFC 3550 §6): sender reports about our stream with a
//! report block about the remote's (loss, jitter, LSR/DLSR), an SDES CNAME, and a BYE at
//! [`MediaSession::end_rtcp`]; from the remote's reports, the round-trip time and its view of
//! our stream. RTCP is heard only from the remote's RTCP address (its RTP port + 1, the
//! answer's `a=rtcp:`, or the latched source's port + 1) and sent there; see
//! [`RtcpConfig`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::amd::{AmdConfig, AmdEvent, MachineDetector};
use super::dtmf::{DtmfReceiver, parse_telephone_event};
use super::g711;
use super::inband::InbandDetector;
use super::listen::{Heard, ListenParams, Listener, Utterance};
use super::packet::{HEADER_LEN, Header, Packet};
use super::record::{RecordEnd, RecordParams, Recorded, Recorder, beep};
use super::reporter::{OurStream, Reporter, RtcpConfig};
use super::rtcp::Compound;
use super::rx_stats::RxStats;
use super::source::{SourceGuard, SourcePolicy, Verdict, same};
use crate::api::{Codec, Pcm8k};

/// Time between packets: the `a=ptime:20` we offer.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// G.711 samples (and octets) per packet: 20 ms at 8 kHz.
pub const SAMPLES_PER_PACKET: usize = 160;

/// The buffer size [`MediaSession::poll_transmit`] needs: header plus one G.711 frame.
pub const MAX_PACKET_LEN: usize = HEADER_LEN + SAMPLES_PER_PACKET;

/// How many overdue packets a late core sends in one burst before skipping slots (200 ms:
/// what a typical far-end jitter buffer absorbs).
pub const MAX_CATCH_UP: u64 = 10;

/// The parameters of one media session, mostly from SDP negotiation.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct MediaConfig {
    /// Our synchronisation source (random, RFC 3550 §8).
    pub ssrc: u32,
    /// Sequence number of the first packet (random, RFC 3550 §5.1).
    pub initial_seq: u16,
    /// RTP timestamp of the first packet (random, RFC 3550 §5.1).
    pub initial_timestamp: u32,
    /// The negotiated law.
    pub codec: Codec,
    /// Where to send, from the answer; an unspecified IP (hold) sends nothing.
    pub remote: SocketAddr,
    /// The negotiated telephone-event payload type, if any (RFC 4733).
    pub dtmf_payload_type: Option<u8>,
    /// Which sources are heard: the SDP's address only, or symmetric latching.
    pub source: SourcePolicy,
}

/// How long after a key (its last RFC 4733 event packet, or its in-band detection) the
/// listener hears nothing.
pub(crate) const KEY_HOLD_OFF: Duration = Duration::from_millis(200);

/// What a media session reports to its call.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum MediaEvent {
    /// A DTMF key arrived (RFC 4733 event, or in-band tone when no event payload type).
    Dtmf(char),
    /// A [`MediaSession::play`] item finished or was dropped.
    PlaybackDone {
        /// The id given to `play`.
        id: u32,
        /// True when barge-in or [`MediaSession::stop_playback`] cut it short.
        interrupted: bool,
        /// Samples of the item sent before it ended: all of them when it played out, fewer
        /// when it was cut short (what a VoiceXML 2.1 `<mark>` report is measured from).
        played: usize,
    },
    /// A [`MediaSession::record`] recording ended.
    Recorded(Recorded),
    /// The callee started speaking while [`MediaSession::listen`] listened (a prompt that
    /// allows barge-in on speech was stopped just before: its `PlaybackDone` came first).
    SpeechStarted {
        /// The id given to `listen`.
        id: u32,
    },
    /// The utterance [`MediaSession::listen`] waited for is over.
    Utterance {
        /// The id given to `listen`.
        id: u32,
        /// The audio.
        utterance: Utterance,
    },
    /// The first datagram dropped for its source (reported once per session; the rest
    /// are only counted in [`MediaStats::dropped_foreign`]).
    SourceRefused(SocketAddr),
    /// Answering-machine detection ([`MediaSession::detect_machine`]) classified the answer,
    /// or heard (or gave up on) a machine's beep.
    Machine(AmdEvent),
}

/// Plain counters; read with [`MediaSession::stats`].
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct MediaStats {
    /// RTP packets handed out by `poll_transmit`.
    pub packets_sent: u64,
    /// Octets of those packets, headers included.
    pub bytes_sent: u64,
    /// Valid RTP packets accepted from the remote.
    pub packets_received: u64,
    /// Octets of those packets, headers included.
    pub bytes_received: u64,
    /// Datagrams dropped for their source: not the SDP's address and port (or the latched
    /// source's address, port and SSRC). RTP bleed, strays, injection, a peer behind NAT
    /// without latching.
    pub dropped_foreign: u64,
    /// Datagrams from an acceptable address that are not usable RTP (or are RTCP, or,
    /// before latching, carry a payload type that was not negotiated).
    pub dropped_malformed: u64,
    /// Send slots skipped because the core fell more than [`MAX_CATCH_UP`] packets behind.
    pub slots_skipped: u64,
    /// Packets handed out more than 1 ms after their slot was due (by the core's clock when
    /// it woke for them): the pacing deviation, counted without a histogram per packet.
    pub sent_late_1ms: u64,
    /// Packets handed out more than 2 ms late (the dataplane's pacing target is p99 < 2 ms:
    /// `sent_late_2ms / packets_sent < 1 %`).
    pub sent_late_2ms: u64,
    /// Packets handed out more than 10 ms late (half a packet time).
    pub sent_late_10ms: u64,
    /// The latest a packet was handed out after its slot, in microseconds.
    pub max_send_lateness_us: u64,
    /// Packets the remote's sequence numbers say are missing (RFC 3550 §A.3; duplicates do
    /// not make up for them).
    pub packets_lost: u64,
    /// Interarrival jitter of the remote's audio at the end, in microseconds (RFC 3550
    /// §6.4.1; telephone-events, whose timestamps are no sampling instants, excluded).
    pub jitter_us: u64,
    /// The highest that jitter was during the call, in microseconds.
    pub max_jitter_us: u64,
    /// RTCP compounds handed out by `poll_rtcp_transmit` (RFC 3550 §6).
    pub rtcp_sent: u64,
    /// Valid RTCP compounds accepted from the remote's RTCP address.
    pub rtcp_received: u64,
    /// The latest round-trip time from the remote's report blocks about our stream
    /// (RFC 3550 §6.4.1: arrival − LSR − DLSR), in microseconds; 0 while unknown.
    pub round_trip_us: u64,
    /// The latest fraction of our packets the remote reported lost, out of 256.
    pub remote_fraction_lost: u64,
    /// The latest interarrival jitter the remote reported for our stream, in microseconds.
    pub remote_jitter_us: u64,
}

impl MediaStats {
    /// Counts one packet sent `late` after its slot into the `sent_late_*` counters and
    /// `max_send_lateness_us` (also what `outdial bench udp` counts, so both sides of its
    /// comparison mean the same by late).
    pub fn count_send_lateness(&mut self, late: Duration) {
        let late_us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        self.sent_late_1ms += u64::from(late_us > 1_000);
        self.sent_late_2ms += u64::from(late_us > 2_000);
        self.sent_late_10ms += u64::from(late_us > 10_000);
        self.max_send_lateness_us = self.max_send_lateness_us.max(late_us);
    }

    /// All dropped datagrams.
    pub fn dropped(&self) -> u64 {
        self.dropped_foreign + self.dropped_malformed
    }
}

/// One queued [`MediaSession::play`] item.
#[derive(Debug)]
struct QueuedAudio {
    id: u32,
    audio: Pcm8k,
    /// `audio` already in the session's law ([`MediaSession::play_encoded`]): sent by copying.
    encoded: Option<Arc<[u8]>>,
    bargein: bool,
    /// The beep before a recording: not reported; the recording starts when it ends.
    beep: bool,
    /// Samples already sent.
    position: usize,
}

/// A call's RTP media, sans-IO. After every `handle_*` or `play`, drain
/// [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event), then sleep
/// until [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct MediaSession {
    config: MediaConfig,
    /// When slot 0 was due.
    start: Instant,
    /// The latest time given to any `handle_*`/`play` call.
    now: Instant,
    /// The next send slot: due at `start + next_slot × 20 ms`.
    next_slot: u64,
    /// Sequence number of the next packet sent.
    sequence_number: u16,
    /// Set the M bit on the next packet sent (stream start, after skipped slots).
    marker_pending: bool,
    /// Whether the last slot carried queued audio (so the next audio slot is no new talkspurt).
    was_playing: bool,
    /// When the frame being filled finishes playing (a beep ending in it ends then).
    frame_end: Instant,
    queue: VecDeque<QueuedAudio>,
    events: VecDeque<MediaEvent>,
    /// Which sources are heard, and where ours go.
    source: SourceGuard,
    /// A [`MediaEvent::SourceRefused`] was reported.
    refused_reported: bool,
    dtmf: DtmfReceiver,
    inband: InbandDetector,
    /// The recording in progress, if any.
    recorder: Option<Recorder>,
    /// Listening for an utterance, and whether it listens for a hotword.
    listener: Option<(Listener, bool)>,
    /// Until then the listener hears nothing: a key is being pressed (its tone is not
    /// speech).
    keys_until: Instant,
    stats: MediaStats,
    /// Loss and jitter of what the remote sends.
    rx: RxStats,
    /// Answering-machine detection, while it runs, and the answer it is timed from.
    amd: Option<MachineDetector>,
    amd_since: Instant,
    /// RTCP, once [`enable_rtcp`](Self::enable_rtcp) turned it on.
    rtcp: Option<Reporter>,
    /// The peer said it takes no media (hold, RFC 3264 §8.4): slots pass unsent.
    held: bool,
}

impl MediaSession {
    /// Starts the session; the first packet is due at `now`.
    pub fn new(config: MediaConfig, now: Instant) -> Self {
        Self {
            config,
            start: now,
            now,
            next_slot: 0,
            sequence_number: config.initial_seq,
            marker_pending: true,
            was_playing: false,
            frame_end: now,
            queue: VecDeque::new(),
            events: VecDeque::new(),
            source: SourceGuard::new(config.remote, config.source),
            refused_reported: false,
            dtmf: DtmfReceiver::new(),
            inband: InbandDetector::new(),
            recorder: None,
            listener: None,
            keys_until: now,
            stats: MediaStats::default(),
            rx: RxStats::new(now),
            amd: None,
            amd_since: now,
            rtcp: None,
            held: false,
        }
    }

    /// A new offer in the call (re-INVITE or UPDATE, RFC 3264 §8): our RTP goes to `remote`
    /// from now on and is heard from there (the source policy starts again, so a latch is
    /// redone), RTCP goes to `remote_rtcp`; `peer_receives` false is hold: slots pass
    /// unsent, as for a `0.0.0.0` address, until an offer takes media again.
    pub fn renegotiate(
        &mut self,
        remote: SocketAddr,
        remote_rtcp: Option<SocketAddr>,
        peer_receives: bool,
    ) {
        if remote != self.config.remote {
            self.config.remote = remote;
            self.source = SourceGuard::new(remote, self.config.source);
            self.refused_reported = false;
        }
        if let Some(rtcp) = self.rtcp.as_mut() {
            rtcp.set_remote_rtcp(remote_rtcp);
        }
        if self.held && peer_receives {
            // A new talkspurt after the hold (RFC 3551 §4.1).
            self.marker_pending = true;
        }
        self.held = !peer_receives;
    }

    /// Whether the peer has put the call on hold (it takes no media now).
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Turns RTCP on: the first report is due within 2.5 s × [0.5, 1.5] / (e − 3/2)
    /// (RFC 3550 §6.3.1), later ones 5 s × the same. `rtcp.wall_clock_at_start` is the wall
    /// clock at the `now` this session was created with.
    pub fn enable_rtcp(&mut self, rtcp: RtcpConfig) {
        self.rtcp = Some(Reporter::new(rtcp, self.start, self.now));
    }

    /// Takes in one datagram received on the session's RTCP port. Only the remote's RTCP
    /// address is heard (see [`rtcp_peer`](Self::rtcp_peer)); others are dropped for their
    /// source like RTP, and what is not a valid compound is dropped as malformed.
    pub fn handle_rtcp_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.advance(now);
        if !self.rtcp_peer().is_some_and(|peer| same(from, peer)) {
            self.refuse(from);
            return;
        }
        let (Some(reporter), Ok(compound)) = (self.rtcp.as_mut(), Compound::parse(data)) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        reporter.counters.received += 1;
        for packet in compound.packets() {
            reporter.on_packet(now, self.config.ssrc, packet);
        }
    }

    /// Writes the RTCP compound due now into `buf` and returns (destination, length), or
    /// `None` when none is due, RTCP is off, or there is no RTCP peer (hold). A `buf` too
    /// short for it (200 octets always suffice) gets nothing and leaves it due.
    pub fn poll_rtcp_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        // Called after every packet: a not-yet-due report costs one comparison.
        if self.rtcp.as_ref()?.deadline(self.now)? > self.now {
            return None;
        }
        let peer = self.rtcp_peer()?;
        let ours = OurStream {
            ssrc: self.config.ssrc,
            initial_timestamp: self.config.initial_timestamp,
            packets_sent: self.stats.packets_sent,
            payload_octets_sent: self.stats.packets_sent * SAMPLES_PER_PACKET as u64,
        };
        let rx = self.rx.report();
        let len = self.rtcp.as_mut()?.poll_report(self.now, ours, rx, buf)?;
        Some((peer, len))
    }

    /// Queues the final RTCP compound with a BYE (RFC 3550 §6.6), due at once: call it at
    /// hangup, then drain [`poll_rtcp_transmit`](Self::poll_rtcp_transmit). Nothing follows.
    pub fn end_rtcp(&mut self) {
        if let Some(reporter) = self.rtcp.as_mut() {
            reporter.end();
        }
    }

    /// The remote's RTCP address, where ours goes and the only source of RTCP heard: the
    /// latched source's IP and port + 1 once latched, else the answer's `a=rtcp:` (RFC 3605),
    /// else the RTP address's port + 1. `None` on hold or with RTCP off.
    pub fn rtcp_peer(&self) -> Option<SocketAddr> {
        self.rtcp
            .as_ref()?
            .peer(self.config.remote, self.source.latched())
    }

    /// Starts classifying the callee's audio as a person or a machine, timed from `answer`
    /// (the session's start, or the 200 OK after early media); reports
    /// [`MediaEvent::Machine`]. Costs a little per received packet until the detector has
    /// finished.
    pub fn detect_machine(&mut self, config: AmdConfig, answer: Instant) {
        self.amd = Some(MachineDetector::new(config));
        self.amd_since = answer;
    }

    /// Hands the detector's event on, and drops the detector once it has finished.
    fn on_machine_event(&mut self, event: Option<AmdEvent>) {
        if let Some(event) = event {
            self.events.push_back(MediaEvent::Machine(event));
        }
        if self.amd.as_ref().is_some_and(MachineDetector::is_finished) {
            self.amd = None;
        }
    }

    /// Queues `audio` after whatever is queued. With `bargein`, a DTMF key pressed while
    /// this item is current stops it and flushes the queue.
    pub fn play(&mut self, now: Instant, id: u32, audio: Pcm8k, bargein: bool) {
        self.enqueue(now, id, audio, None, bargein);
    }

    /// [`play`](Self::play) with `encoded`, the same samples already in this session's law
    /// (from an [`EncodedCache`](crate::rtp::EncodedCache) shared by the core's calls): each
    /// packet copies its octets instead of encoding. An `encoded` of another length than
    /// `audio` is ignored and the samples are encoded per packet.
    pub fn play_encoded(
        &mut self,
        now: Instant,
        id: u32,
        audio: Pcm8k,
        encoded: Arc<[u8]>,
        bargein: bool,
    ) {
        let encoded = (encoded.len() == audio.len()).then_some(encoded);
        self.enqueue(now, id, audio, encoded, bargein);
    }

    fn enqueue(
        &mut self,
        now: Instant,
        id: u32,
        audio: Pcm8k,
        encoded: Option<Arc<[u8]>>,
        bargein: bool,
    ) {
        self.advance(now);
        self.queue.push_back(QueuedAudio {
            id,
            audio,
            encoded,
            bargein,
            beep: false,
            position: 0,
        });
    }

    /// Starts recording the callee as `id`, after a beep (queued after whatever plays) when
    /// `with_beep`. A recording already in progress ends first (`Stopped`). Allocates the
    /// recording's buffer now; capturing allocates nothing.
    pub fn record(&mut self, now: Instant, id: u32, params: RecordParams, with_beep: bool) {
        self.advance(now);
        self.stop_recording(None);
        if with_beep {
            self.recorder = Some(Recorder::new(id, params, None));
            self.queue.push_back(QueuedAudio {
                id,
                audio: beep(),
                encoded: None,
                bargein: false,
                beep: true,
                position: 0,
            });
        } else {
            self.recorder = Some(Recorder::new(id, params, Some(now)));
        }
    }

    /// Ends the recording in progress with what it has (`Stopped`): any one when `id` is
    /// `None`, else only the one started as `id`.
    pub fn stop_recording(&mut self, id: Option<u32>) {
        if self
            .recorder
            .as_ref()
            .is_some_and(|r| id.is_none_or(|id| r.id() == id))
        {
            self.end_recording(RecordEnd::Stopped);
        }
    }

    /// Whether a recording is in progress.
    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// Listens for one utterance as `id` (see [`super::listen`]): reports
    /// [`MediaEvent::SpeechStarted`] and then [`MediaEvent::Utterance`]. The start of speech
    /// stops a prompt that allows barge-in, as a key does, and speech over a prompt that
    /// does not is not heard; but for a `hotword` listen, speech is heard over every prompt
    /// and stops none (only a grammar match may, which control decides). A listen in
    /// progress is dropped. Allocates the pre-roll ring now and the utterance's buffer once,
    /// when speech starts; nothing per packet.
    pub fn listen(&mut self, now: Instant, id: u32, params: ListenParams, hotword: bool) {
        self.advance(now);
        self.listener = Some((Listener::new(id, params), hotword));
    }

    /// Stops listening (any listen when `id` is `None`, else only `id`), reporting nothing.
    pub fn stop_listening(&mut self, id: Option<u32>) {
        if self
            .listener
            .as_ref()
            .is_some_and(|(l, _)| id.is_none_or(|id| l.id() == id))
        {
            self.listener = None;
        }
    }

    /// Whether a listen is in progress.
    pub fn is_listening(&self) -> bool {
        self.listener.is_some()
    }

    /// Stops the current item and drops the queue: `PlaybackDone { interrupted: true }` for
    /// each, in queue order. Silence follows.
    pub fn stop_playback(&mut self) {
        for item in self.queue.drain(..) {
            if item.beep {
                if let Some(recorder) = self.recorder.as_mut() {
                    recorder.begin(self.now);
                }
                continue;
            }
            self.events.push_back(MediaEvent::PlaybackDone {
                id: item.id,
                interrupted: true,
                played: item.position.min(item.audio.len()),
            });
        }
    }

    /// Takes in one datagram received on the session's RTP port.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.advance(now);
        if !self.source.admits_address(from) {
            self.refuse(from);
            return;
        }
        let Ok(packet) = Packet::parse(data) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let payload_type = packet.header.payload_type;
        let negotiated = payload_type == g711::payload_type(self.config.codec)
            || Some(payload_type) == self.config.dtmf_payload_type;
        match self.source.judge(from, &packet.header, negotiated) {
            Verdict::Accept => {}
            Verdict::Foreign => {
                self.refuse(from);
                return;
            }
            Verdict::Unusable => {
                self.stats.dropped_malformed += 1;
                return;
            }
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += data.len() as u64;
        let header = &packet.header;
        let is_audio = Some(payload_type) != self.config.dtmf_payload_type;
        self.rx.on_packet(
            now,
            header.ssrc,
            header.sequence_number,
            header.timestamp,
            is_audio,
        );

        if let Some(law) = g711_law(payload_type)
            && let Some(recorder) = self.recorder.as_mut()
            && let Some(end) = recorder.capture(now, law, packet.payload)
        {
            self.end_recording(end);
        }
        if let Some(law) = g711_law(payload_type) {
            self.hear(now, law, packet.payload);
        }
        if payload_type == g711::payload_type(self.config.codec)
            && let Some(amd) = self.amd.as_mut()
        {
            let since = now.saturating_duration_since(self.amd_since);
            let event = amd.feed(since, self.config.codec, packet.payload);
            self.on_machine_event(event);
        }
        let key = if Some(payload_type) == self.config.dtmf_payload_type {
            self.mute_listener(now);
            let Some(event) = parse_telephone_event(packet.payload) else {
                self.stats.dropped_malformed += 1;
                return;
            };
            let header = packet.header;
            self.dtmf.on_packet(header.ssrc, header.timestamp, &event)
        } else if payload_type == g711::payload_type(self.config.codec)
            && self.config.dtmf_payload_type.is_none()
        {
            // Without RFC 4733 events the keys can only arrive as tones in the audio.
            self.inband.feed(self.config.codec, packet.payload)
        } else {
            None
        };
        if let Some(key) = key {
            self.on_key(key);
        }
        self.check_recording();
    }

    /// Advances the clock; sends become due through [`poll_transmit`](Self::poll_transmit).
    /// Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.check_recording();
        if let Some(heard) = self.listener.as_mut().and_then(|(l, _)| l.check(now)) {
            self.on_heard(heard);
        }
        if let Some(amd) = self.amd.as_mut() {
            let event = amd.poll(self.now.saturating_duration_since(self.amd_since));
            self.on_machine_event(event);
        }
    }

    /// Writes the next due RTP packet into `buf` and returns (destination, length), or `None`
    /// when nothing is due. `buf` must hold [`MAX_PACKET_LEN`] octets; a shorter one gets
    /// nothing and leaves the packet due.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        loop {
            let due = self.slots_due();
            if self.next_slot >= due {
                return None;
            }
            let overdue = due - self.next_slot;
            if overdue > MAX_CATCH_UP {
                self.stats.slots_skipped += overdue - MAX_CATCH_UP;
                self.next_slot = due - MAX_CATCH_UP;
                self.marker_pending = true;
            }
            let packet = buf.get_mut(..MAX_PACKET_LEN)?;
            let (header, frame) = packet.split_at_mut(HEADER_LEN);
            let slot = self.next_slot;
            self.next_slot += 1;
            self.frame_end = self.slot_time(self.next_slot).unwrap_or(self.now);
            let playing = self.fill_frame(frame);
            let talkspurt_starts = playing && !self.was_playing;
            self.was_playing = playing;
            if self.held || self.config.remote.ip().is_unspecified() {
                // RFC 3264 §8.4 hold: the slot passes (and so does the audio), unsent.
                continue;
            }
            Header {
                marker: self.marker_pending || talkspurt_starts,
                payload_type: g711::payload_type(self.config.codec),
                sequence_number: self.sequence_number,
                // RTP timestamps are modulo 2^32 (RFC 3550 §5.1): truncation is the intent.
                timestamp: self
                    .config
                    .initial_timestamp
                    .wrapping_add((slot as u32).wrapping_mul(SAMPLES_PER_PACKET as u32)),
                ssrc: self.config.ssrc,
            }
            .write(header)?;
            self.marker_pending = false;
            self.sequence_number = self.sequence_number.wrapping_add(1);
            self.count_lateness(slot);
            self.stats.packets_sent += 1;
            self.stats.bytes_sent += MAX_PACKET_LEN as u64;
            return Some((self.source.send_to(), MAX_PACKET_LEN));
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// When the next packet is due (in the past when one is due already), the recording
    /// may end, or the next RTCP report is due, whichever is sooner.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let send = self.slot_time(self.next_slot);
        let recording = self.recorder.as_ref().and_then(Recorder::deadline);
        let listening = self.listener.as_ref().and_then(|(l, _)| l.deadline());
        let machine = self
            .amd
            .as_ref()
            .and_then(MachineDetector::next_deadline)
            .and_then(|after| self.amd_since.checked_add(after));
        let rtcp = self
            .rtcp
            .as_ref()
            .and_then(|r| r.deadline(self.now))
            .filter(|_| self.rtcp_peer().is_some());
        [send, recording, listening, machine, rtcp]
            .into_iter()
            .flatten()
            .min()
    }

    /// The counters so far.
    pub fn stats(&self) -> MediaStats {
        let rx = self.rx.summary();
        let rtcp = self.rtcp.as_ref().map(|r| r.counters).unwrap_or_default();
        MediaStats {
            packets_lost: rx.lost,
            jitter_us: rx.jitter_us,
            max_jitter_us: rx.max_jitter_us,
            rtcp_sent: rtcp.sent,
            rtcp_received: rtcp.received,
            round_trip_us: rtcp.round_trip_us,
            remote_fraction_lost: rtcp.remote_fraction_lost,
            remote_jitter_us: rtcp.remote_jitter_us,
            ..self.stats
        }
    }

    /// The source the session latched to, if latching is on and it has.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.source.latched()
    }

    /// The configuration the session was built with.
    pub fn config(&self) -> &MediaConfig {
        &self.config
    }

    /// When send slot `slot` is due.
    fn slot_time(&self, slot: u64) -> Option<Instant> {
        let offset = Duration::from_millis(slot.saturating_mul(20));
        self.start.checked_add(offset)
    }

    /// Counts how late `slot` is being sent, by the session's clock.
    fn count_lateness(&mut self, slot: u64) {
        let Some(due) = self.slot_time(slot) else {
            return;
        };
        self.stats
            .count_send_lateness(self.now.saturating_duration_since(due));
    }

    /// Counts a datagram dropped for its source; reports the first one.
    fn refuse(&mut self, from: SocketAddr) {
        self.stats.dropped_foreign += 1;
        if !self.refused_reported {
            self.refused_reported = true;
            self.events.push_back(MediaEvent::SourceRefused(from));
        }
    }

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// How many slots are due by `self.now`, counting slot 0.
    fn slots_due(&self) -> u64 {
        let elapsed = self.now.saturating_duration_since(self.start);
        let whole_slots = elapsed.as_millis() / PACKET_INTERVAL.as_millis();
        u64::try_from(whole_slots)
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Fills one frame from the queue, padding the last partial frame of an item with
    /// silence; returns whether it carried queued audio.
    fn fill_frame(&mut self, frame: &mut [u8]) -> bool {
        let silence = g711::silence(self.config.codec);
        while let Some(item) = self.queue.front_mut() {
            let remaining = item.audio.get(item.position..).unwrap_or_default();
            if !remaining.is_empty() {
                let encoded = match item.encoded.as_deref() {
                    Some(octets) => {
                        let octets = octets.get(item.position..).unwrap_or_default();
                        let n = octets.len().min(frame.len());
                        frame[..n].copy_from_slice(&octets[..n]);
                        n
                    }
                    None => g711::encode(self.config.codec, remaining, frame),
                };
                if let Some(padding) = frame.get_mut(encoded..) {
                    padding.fill(silence);
                }
                item.position += encoded;
                if item.position >= item.audio.len() {
                    self.finish_front();
                }
                return true;
            }
            // Only an empty item gets here: a finished one left the queue with its last frame.
            self.finish_front();
        }
        frame.fill(silence);
        false
    }

    fn finish_front(&mut self) {
        if let Some(item) = self.queue.pop_front() {
            if item.beep {
                if let Some(recorder) = self.recorder.as_mut() {
                    recorder.begin(self.frame_end);
                }
                return;
            }
            self.events.push_back(MediaEvent::PlaybackDone {
                id: item.id,
                interrupted: false,
                played: item.position.min(item.audio.len()),
            });
        }
    }

    fn on_key(&mut self, key: char) {
        self.mute_listener(self.now);
        if self.recorder.as_ref().is_some_and(Recorder::ends_on_key) {
            // The key ends the recording (its `termchar`); it is no input of its own.
            self.end_recording(RecordEnd::Key(key));
            return;
        }
        if self.queue.front().is_some_and(|item| item.bargein) {
            self.stop_playback();
        }
        self.events.push_back(MediaEvent::Dtmf(key));
    }

    /// A key is being pressed: what the listener heard so far, and for [`KEY_HOLD_OFF`]
    /// after, is not speech (a phone may send the key's tone in the audio beside its RFC 4733
    /// events, and in-band keys are nothing but tones).
    fn mute_listener(&mut self, now: Instant) {
        self.keys_until = now + KEY_HOLD_OFF;
        if let Some((listener, _)) = self.listener.as_mut() {
            listener.reset();
        }
    }

    /// Audio for the listener: speech over a prompt that may not be interrupted is not heard
    /// (unless listening for a hotword, where every prompt is sent without barge-in), nor
    /// while a key is pressed.
    fn hear(&mut self, now: Instant, law: Codec, payload: &[u8]) {
        let protected = self.queue.front().is_some_and(|item| !item.bargein);
        let keyed = now < self.keys_until;
        let Some((listener, hotword)) = self.listener.as_mut() else {
            return;
        };
        if keyed || protected && !*hotword {
            listener.reset();
            return;
        }
        if let Some(heard) = listener.hear(now, law, payload) {
            self.on_heard(heard);
        }
    }

    fn on_heard(&mut self, heard: Heard) {
        let Some((listener, hotword)) = self.listener.as_ref() else {
            return;
        };
        let id = listener.id();
        match heard {
            Heard::SpeechStarted => {
                if !*hotword && self.queue.front().is_some_and(|item| item.bargein) {
                    self.stop_playback();
                }
                self.events.push_back(MediaEvent::SpeechStarted { id });
            }
            Heard::Utterance(utterance) => {
                self.listener = None;
                self.events
                    .push_back(MediaEvent::Utterance { id, utterance });
            }
        }
    }

    /// Ends the recording if time has ended it.
    fn check_recording(&mut self) {
        if let Some(end) = self.recorder.as_ref().and_then(|r| r.check(self.now)) {
            self.end_recording(end);
        }
    }

    fn end_recording(&mut self, end: RecordEnd) {
        if let Some(recorder) = self.recorder.take() {
            // The beep is moot once the recording is over.
            self.queue.retain(|item| !item.beep);
            self.events
                .push_back(MediaEvent::Recorded(recorder.finish(end)));
        }
    }
}

/// The G.711 law of a static payload type (RFC 3551 Table 4), whichever was negotiated:
/// a callee that sends the other law is still recorded.
fn g711_law(payload_type: u8) -> Option<Codec> {
    match payload_type {
        0 => Some(Codec::Pcmu),
        8 => Some(Codec::Pcma),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    const REMOTE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), 4000);

    fn config(codec: Codec) -> MediaConfig {
        MediaConfig {
            ssrc: 0x1234_5678,
            initial_seq: 65530,
            initial_timestamp: u32::MAX - 200,
            codec,
            remote: REMOTE,
            dtmf_payload_type: Some(101),
            source: SourcePolicy::Sdp,
        }
    }

    /// Runs the session in virtual time until `until`, collecting every packet with its send time.
    fn run(session: &mut MediaSession, from: Instant, until: Instant) -> Vec<(Instant, Vec<u8>)> {
        let mut sent = Vec::new();
        let mut now = from;
        let mut buf = [0u8; MAX_PACKET_LEN];
        while now <= until {
            session.handle_timeout(now);
            while let Some((to, len)) = session.poll_transmit(&mut buf) {
                assert_eq!(to, REMOTE);
                sent.push((now, buf[..len].to_vec()));
            }
            now = session
                .poll_timeout()
                .unwrap()
                .max(now + Duration::from_micros(1));
        }
        sent
    }

    fn header(packet: &[u8]) -> Header {
        Packet::parse(packet).unwrap().header
    }

    fn events(session: &mut MediaSession) -> Vec<MediaEvent> {
        std::iter::from_fn(|| session.poll_event()).collect()
    }

    fn tone(samples: usize) -> Pcm8k {
        (0..samples)
            .map(|i| if i % 2 == 0 { 8000 } else { -8000 })
            .collect::<Arc<[i16]>>()
    }

    #[test]
    fn silence_flows_from_the_start_with_one_marker() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcma), t0);
        let sent = run(&mut s, t0, t0 + Duration::from_millis(99));
        assert_eq!(sent.len(), 5, "slots at 0, 20, 40, 60, 80 ms");
        assert!(header(&sent[0].1).marker);
        assert!(sent[1..].iter().all(|(_, p)| !header(p).marker));
        assert!(
            sent.iter()
                .all(|(_, p)| p[HEADER_LEN..].iter().all(|&b| b == 0xd5))
        );
        assert_eq!(s.stats().packets_sent, 5);
        assert_eq!(s.stats().bytes_sent, 5 * MAX_PACKET_LEN as u64);
    }

    #[test]
    fn sequence_and_timestamp_wrap_modulo_their_width() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        let sent = run(&mut s, t0, t0 + Duration::from_millis(200));
        for pair in sent.windows(2) {
            let (a, b) = (header(&pair[0].1), header(&pair[1].1));
            assert_eq!(b.sequence_number, a.sequence_number.wrapping_add(1));
            assert_eq!(b.timestamp, a.timestamp.wrapping_add(160));
        }
        assert!(
            sent.iter().any(|(_, p)| header(p).sequence_number == 0),
            "seq wrapped"
        );
    }

    #[test]
    fn late_core_catches_up_with_consistent_timestamps() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        let mut buf = [0u8; MAX_PACKET_LEN];
        s.handle_timeout(t0 + Duration::from_millis(70));
        let burst: Vec<Header> =
            std::iter::from_fn(|| s.poll_transmit(&mut buf).map(|_| header(&buf))).collect();
        assert_eq!(burst.len(), 4, "slots 0, 20, 40, 60 ms");
        let ts0 = burst[0].timestamp;
        for (n, h) in burst.iter().enumerate() {
            assert_eq!(h.timestamp, ts0.wrapping_add(160 * n as u32));
        }
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(80)));
    }

    #[test]
    fn pre_encoded_audio_sends_the_same_packets_as_samples_encoded_per_packet() {
        let t0 = Instant::now();
        let audio = tone(1000);
        let mut encoded = vec![0u8; 1000];
        g711::encode(Codec::Pcma, &audio, &mut encoded);
        let mut by_samples = MediaSession::new(config(Codec::Pcma), t0);
        by_samples.play(t0, 1, audio.clone(), false);
        let mut by_octets = MediaSession::new(config(Codec::Pcma), t0);
        by_octets.play_encoded(t0, 1, audio.clone(), Arc::from(encoded), false);
        let until = t0 + Duration::from_millis(200);
        let (a, b) = (
            run(&mut by_samples, t0, until),
            run(&mut by_octets, t0, until),
        );
        assert_eq!(a, b);
        assert_eq!(events(&mut by_samples), events(&mut by_octets));
        // A mismatched encoding is ignored, not sent.
        let mut wrong = MediaSession::new(config(Codec::Pcma), t0);
        wrong.play_encoded(t0, 1, audio, Arc::from(vec![0u8; 10]), false);
        assert_eq!(run(&mut wrong, t0, until), a);
    }

    #[test]
    fn lateness_is_counted_per_packet_against_its_slot() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        let mut buf = [0u8; MAX_PACKET_LEN];
        let mut send_at = |s: &mut MediaSession, ms: u64, us: u64| {
            s.handle_timeout(t0 + Duration::from_millis(ms) + Duration::from_micros(us));
            std::iter::from_fn(|| s.poll_transmit(&mut buf)).count()
        };
        assert_eq!(send_at(&mut s, 0, 0), 1, "slot 0 on time");
        assert_eq!(send_at(&mut s, 20, 1_500), 1, "slot 1, 1.5 ms late");
        assert_eq!(send_at(&mut s, 40, 2_500), 1, "slot 2, 2.5 ms late");
        // Woken at 72 ms: slot 3 (60 ms) is 12 ms late.
        assert_eq!(send_at(&mut s, 72, 0), 1);
        let stats = s.stats();
        assert_eq!(stats.packets_sent, 4);
        assert_eq!(
            (
                stats.sent_late_1ms,
                stats.sent_late_2ms,
                stats.sent_late_10ms
            ),
            (3, 2, 1)
        );
        assert_eq!(stats.max_send_lateness_us, 12_000);
    }

    #[test]
    fn a_long_stall_skips_slots_and_marks_the_resumption() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        let mut buf = [0u8; MAX_PACKET_LEN];
        s.handle_timeout(t0);
        assert!(s.poll_transmit(&mut buf).is_some());
        let first = header(&buf);
        s.handle_timeout(t0 + Duration::from_millis(1000));
        let burst: Vec<Header> =
            std::iter::from_fn(|| s.poll_transmit(&mut buf).map(|_| header(&buf))).collect();
        assert_eq!(burst.len() as u64, MAX_CATCH_UP);
        assert!(burst[0].marker && !burst[1].marker);
        assert_eq!(
            burst[0].sequence_number,
            first.sequence_number.wrapping_add(1)
        );
        let last_slot = 50;
        assert_eq!(
            burst[burst.len() - 1].timestamp,
            first.timestamp.wrapping_add(160 * last_slot)
        );
        assert_eq!(s.stats().slots_skipped, 50 - MAX_CATCH_UP);
    }

    #[test]
    fn queued_audio_plays_in_order_with_partial_frames_padded() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        s.play(t0, 1, tone(200), false);
        s.play(t0, 2, Arc::from(Vec::new()), false);
        s.play(t0, 3, tone(160), false);
        let sent = run(&mut s, t0, t0 + Duration::from_millis(60));
        let frames: Vec<&[u8]> = sent.iter().map(|(_, p)| &p[HEADER_LEN..]).collect();
        let loud = g711::silence(Codec::Pcmu) != frames[0][0];
        assert!(loud && frames[0].iter().all(|&b| b != 0xff));
        assert!(
            frames[1][..40].iter().all(|&b| b != 0xff),
            "item 1's last 40 samples"
        );
        assert!(
            frames[1][40..].iter().all(|&b| b == 0xff),
            "padded with silence"
        );
        assert!(
            frames[2].iter().all(|&b| b != 0xff),
            "item 3 starts on a fresh frame"
        );
        assert!(frames[3].iter().all(|&b| b == 0xff));
        let done = |id, played| MediaEvent::PlaybackDone {
            id,
            interrupted: false,
            played,
        };
        assert_eq!(events(&mut s), [done(1, 200), done(2, 0), done(3, 160)]);
        assert!(!header(&sent[1].1).marker && !header(&sent[2].1).marker);
    }

    #[test]
    fn audio_after_silence_starts_a_talkspurt() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        run(&mut s, t0, t0 + Duration::from_millis(40));
        let t1 = t0 + Duration::from_millis(50);
        s.play(t1, 9, tone(320), false);
        let sent = run(&mut s, t1, t0 + Duration::from_millis(120));
        let markers: Vec<bool> = sent.iter().map(|(_, p)| header(p).marker).collect();
        assert_eq!(markers, [true, false, false, false]);
    }

    #[test]
    fn stop_playback_interrupts_everything_queued() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcma), t0);
        s.play(t0, 1, tone(800), true);
        s.play(t0, 2, tone(800), false);
        let frames = run(&mut s, t0, t0 + Duration::from_millis(20)).len();
        assert!(frames > 0, "some of item 1 went out before the stop");
        s.stop_playback();
        let interrupted = |id, played| MediaEvent::PlaybackDone {
            id,
            interrupted: true,
            played,
        };
        assert_eq!(
            events(&mut s),
            [interrupted(1, frames * 160), interrupted(2, 0)],
            "item 1 reports the samples that were sent, item 2 none"
        );
        let sent = run(
            &mut s,
            t0 + Duration::from_millis(40),
            t0 + Duration::from_millis(40),
        );
        assert!(sent[0].1[HEADER_LEN..].iter().all(|&b| b == 0xd5));
    }

    fn event_packet(seq: u16, timestamp: u32, key: u8, end: bool) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN + 4];
        Header {
            marker: false,
            payload_type: 101,
            sequence_number: seq,
            timestamp,
            ssrc: 77,
        }
        .write(&mut p)
        .unwrap();
        p[HEADER_LEN..].copy_from_slice(&[key, if end { 0x8a } else { 0x0a }, 0, 160]);
        p
    }

    #[test]
    fn dtmf_with_bargein_flushes_the_queue_first() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        s.play(t0, 1, tone(8000), true);
        s.play(t0, 2, tone(8000), false);
        s.handle_datagram(t0, REMOTE, &event_packet(1, 500, 5, false));
        assert_eq!(
            events(&mut s),
            [
                MediaEvent::PlaybackDone {
                    id: 1,
                    interrupted: true,
                    played: 0,
                },
                MediaEvent::PlaybackDone {
                    id: 2,
                    interrupted: true,
                    played: 0,
                },
                MediaEvent::Dtmf('5'),
            ]
        );
    }

    #[test]
    fn dtmf_without_bargein_leaves_playback_alone() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        s.play(t0, 1, tone(8000), false);
        s.play(t0, 2, tone(8000), true);
        s.handle_datagram(t0, REMOTE, &event_packet(1, 500, 11, true));
        assert_eq!(events(&mut s), [MediaEvent::Dtmf('#')]);
    }

    #[test]
    fn only_the_sdp_address_and_port_are_heard_and_the_first_refusal_is_reported_once() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        let stranger = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 4000);
        s.handle_datagram(t0, stranger, &event_packet(1, 100, 1, false));
        // Same host as the callee, another port: a stranger injecting a key first.
        let same_host = SocketAddr::new(REMOTE.ip(), 31337);
        s.handle_datagram(t0, same_host, &event_packet(2, 200, 9, false));
        s.handle_datagram(t0, REMOTE, &event_packet(3, 300, 3, false));
        let mapped: SocketAddr = "[::ffff:192.0.2.9]:4000".parse().unwrap();
        s.handle_datagram(t0, mapped, &event_packet(4, 400, 4, false));
        assert_eq!(
            events(&mut s),
            [
                MediaEvent::SourceRefused(stranger),
                MediaEvent::Dtmf('3'),
                MediaEvent::Dtmf('4')
            ]
        );
        let stats = s.stats();
        assert_eq!((stats.dropped_foreign, stats.packets_received), (2, 2));
        assert_eq!(stats.bytes_received, 2 * (HEADER_LEN as u64 + 4));
        assert_eq!(s.latched(), None);
    }

    #[test]
    fn garbage_from_a_stranger_is_foreign_and_from_the_remote_malformed() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        let other_port = SocketAddr::new(REMOTE.ip(), 9);
        for len in 0..HEADER_LEN {
            s.handle_datagram(t0, REMOTE, &vec![0x80; len]);
        }
        s.handle_datagram(t0, REMOTE, &[0x40; 40]); // version 1
        s.handle_datagram(t0, REMOTE, &[0x8f; 30]); // CC=15, header runs past the end
        s.handle_datagram(t0, REMOTE, &[0x80; 1600]); // larger than any MTU
        assert_eq!(s.stats().dropped_malformed, 15);
        // Valid RTP carrying a truncated event: dropped as malformed.
        s.handle_datagram(t0, REMOTE, &event_packet(1, 1, 1, false)[..HEADER_LEN + 2]);
        for n in 0..2000u16 {
            s.handle_datagram(t0, other_port, &event_packet(n, 3, 8, false));
        }
        s.handle_datagram(t0, REMOTE, &event_packet(2, 2, 7, false));
        assert_eq!(
            events(&mut s),
            [MediaEvent::SourceRefused(other_port), MediaEvent::Dtmf('7')]
        );
        let stats = s.stats();
        assert_eq!((stats.dropped_malformed, stats.dropped_foreign), (16, 2000));
        assert_eq!(stats.dropped(), 2016);
    }

    #[test]
    fn a_natted_peer_is_heard_only_with_latching_and_then_gets_our_rtp() {
        let t0 = Instant::now();
        let nat = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20)), 40_002);
        let mut buf = [0u8; MAX_PACKET_LEN];
        // Without latching: every packet from the NAT's address is dropped.
        let mut strict = MediaSession::new(config(Codec::Pcmu), t0);
        for n in 0..5 {
            strict.handle_datagram(t0, nat, &event_packet(n, 100, 1, n == 4));
        }
        assert_eq!(events(&mut strict), [MediaEvent::SourceRefused(nat)]);
        assert_eq!(strict.stats().dropped_foreign, 5);

        let mut cfg = config(Codec::Pcmu);
        cfg.source = SourcePolicy::Latch {
            signalling_ip: nat.ip(),
        };
        let mut s = MediaSession::new(cfg, t0);
        s.handle_timeout(t0);
        assert_eq!(s.poll_transmit(&mut buf).map(|(to, _)| to), Some(REMOTE));
        // A stranger elsewhere never latches; the NAT's first packet is probation.
        let stranger = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)), 40_002);
        s.handle_datagram(t0, stranger, &event_packet(0, 100, 9, false));
        s.handle_datagram(t0, nat, &event_packet(1, 100, 1, false));
        s.handle_datagram(t0, nat, &event_packet(2, 100, 1, false));
        assert_eq!(s.latched(), Some(nat));
        assert_eq!(
            events(&mut s),
            [MediaEvent::SourceRefused(stranger), MediaEvent::Dtmf('1')]
        );
        let later = t0 + PACKET_INTERVAL;
        s.handle_timeout(later);
        assert_eq!(s.poll_transmit(&mut buf).map(|(to, _)| to), Some(nat));
        // Latched: the SDP's own address is now a stranger too.
        s.handle_datagram(later, REMOTE, &event_packet(3, 900, 5, false));
        assert_eq!(events(&mut s), []);
        assert_eq!(s.stats().dropped_foreign, 2);
    }

    #[test]
    fn hold_sends_nothing_but_playback_still_completes() {
        let t0 = Instant::now();
        let mut cfg = config(Codec::Pcmu);
        cfg.remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 4000);
        let mut s = MediaSession::new(cfg, t0);
        s.play(t0, 4, tone(160), false);
        let mut buf = [0u8; MAX_PACKET_LEN];
        s.handle_timeout(t0 + Duration::from_millis(100));
        assert_eq!(s.poll_transmit(&mut buf), None);
        assert_eq!(
            events(&mut s),
            [MediaEvent::PlaybackDone {
                id: 4,
                interrupted: false,
                played: 160,
            }]
        );
        assert_eq!(s.stats().packets_sent, 0);
    }

    fn audio_packet(seq: u16, level: i16) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN + 160];
        Header {
            marker: false,
            payload_type: 0,
            sequence_number: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 77,
        }
        .write(&mut p)
        .unwrap();
        let pcm: Vec<i16> = (0..160)
            .map(|n| if n % 4 < 2 { level } else { -level })
            .collect();
        g711::encode(Codec::Pcmu, &pcm, &mut p[HEADER_LEN..]);
        p
    }

    /// Sends `count` packets at `level` from `seq`, 20 ms apart from `at`; the time after.
    fn speak(s: &mut MediaSession, at: Instant, seq: u16, count: u16, level: i16) -> Instant {
        let mut now = at;
        for n in 0..count {
            s.handle_timeout(now);
            s.handle_datagram(now, REMOTE, &audio_packet(seq.wrapping_add(n), level));
            now += Duration::from_millis(20);
        }
        now
    }

    const LISTEN: ListenParams = ListenParams {
        max_speech: Duration::from_secs(5),
        end_silence: Duration::from_millis(400),
    };

    #[test]
    fn speech_barges_into_a_bargein_prompt_and_the_utterance_follows_the_silence() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        s.play(t0, 1, tone(80_000), true);
        s.listen(t0, 9, LISTEN, false);
        assert!(s.is_listening());
        let t = speak(&mut s, t0, 0, 10, 10);
        assert!(events(&mut s).is_empty());
        let t = speak(&mut s, t, 10, 3, 6000);
        let got = events(&mut s);
        assert!(
            matches!(
                got.as_slice(),
                [
                    MediaEvent::PlaybackDone {
                        id: 1,
                        interrupted: true,
                        ..
                    },
                    MediaEvent::SpeechStarted { id: 9 }
                ]
            ),
            "the prompt stops on the third loud packet, then speech is reported: {got:?}"
        );
        let t = speak(&mut s, t, 13, 20, 6000);
        let _ = speak(&mut s, t, 33, 30, 10);
        let got = events(&mut s);
        let [MediaEvent::Utterance { id: 9, utterance }] = got.as_slice() else {
            panic!("one utterance: {got:?}");
        };
        assert!(!utterance.max_speech);
        // All 13 packets before the onset (less than the 300 ms pre-roll), 20 more loud
        // packets, and the 19 quiet ones heard before 400 ms had passed.
        assert_eq!(utterance.pcm.len(), 13 * 160 + 20 * 160 + 19 * 160);
        assert!(!s.is_listening(), "one utterance per listen");
    }

    #[test]
    fn speech_over_a_prompt_without_bargein_is_not_heard_unless_listening_for_a_hotword() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        s.play(t0, 1, tone(80_000), false);
        s.listen(t0, 2, LISTEN, false);
        let t = speak(&mut s, t0, 0, 5, 10);
        let t = speak(&mut s, t, 5, 40, 6000);
        assert!(
            events(&mut s).is_empty(),
            "not heard over a protected prompt"
        );
        // A hotword listen hears it and stops nothing.
        s.listen(t, 3, LISTEN, true);
        let t = speak(&mut s, t, 45, 5, 10);
        let _ = speak(&mut s, t, 50, 5, 6000);
        assert_eq!(events(&mut s), [MediaEvent::SpeechStarted { id: 3 }]);
        assert!(!s.queue.is_empty(), "the prompt still plays");
        s.stop_listening(Some(4));
        assert!(s.is_listening(), "another id stops nothing");
        s.stop_listening(Some(3));
        assert!(!s.is_listening());
    }

    #[test]
    fn a_key_is_not_speech_even_with_its_tone_in_the_audio() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        s.listen(t0, 4, LISTEN, false);
        let t = speak(&mut s, t0, 0, 5, 10);
        // The phone sends the key as RFC 4733 events and its tone in the audio together.
        let mut now = t;
        for n in 0..6u16 {
            s.handle_datagram(now, REMOTE, &event_packet(n, 8000, 5, n == 5));
            s.handle_datagram(now, REMOTE, &audio_packet(5 + n, 6000));
            now += Duration::from_millis(20);
        }
        let got = events(&mut s);
        assert_eq!(
            got,
            [MediaEvent::Dtmf('5')],
            "the key, and no speech: {got:?}"
        );
        // Speech after the hold-off is heard again.
        let _ = speak(&mut s, now + KEY_HOLD_OFF, 20, 4, 6000);
        assert_eq!(events(&mut s), [MediaEvent::SpeechStarted { id: 4 }]);
    }

    #[test]
    fn received_audio_is_measured_for_loss_and_jitter() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        // 50 packets 20 ms apart, seq 10..15 missing, every other one 4 ms late.
        for seq in (0..50u16).filter(|n| !(10..15).contains(n)) {
            let late = Duration::from_millis(if seq % 2 == 1 { 4 } else { 0 });
            let at = t0 + Duration::from_millis(20 * u64::from(seq)) + late;
            s.handle_datagram(at, REMOTE, &audio_packet(seq, 1000));
        }
        let stats = s.stats();
        assert_eq!((stats.packets_received, stats.packets_lost), (45, 5));
        assert!(
            stats.jitter_us > 1_000 && stats.max_jitter_us >= stats.jitter_us,
            "{stats:?}"
        );
        // A stranger's packets are dropped before they count for loss or jitter.
        let stranger = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 4000);
        s.handle_datagram(t0, stranger, &audio_packet(1000, 1000));
        assert_eq!(s.stats().packets_lost, 5);
        assert_eq!(s.stats().dropped_foreign, 1);
    }

    #[test]
    fn machine_detection_hears_the_callee_beside_telephone_events_and_reports_once() {
        let t0 = Instant::now();
        // RFC 4733 negotiated (config's payload type 101): the audio still reaches the detector.
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        s.detect_machine(AmdConfig::default(), t0);
        // "Hello?": 400 ms of voice (noise-like, no single tone), then nothing arrives.
        let mut state = 1u32;
        for seq in 0..20u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(seq));
            let mut p = audio_packet(seq, 0);
            let pcm: Vec<i16> = (0..160)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    ((state >> 16) as i16) / 8
                })
                .collect();
            g711::encode(Codec::Pcmu, &pcm, &mut p[HEADER_LEN..]);
            s.handle_datagram(at, REMOTE, &p);
        }
        assert!(events(&mut s).is_empty());
        let mut verdicts = Vec::new();
        let mut now = t0 + Duration::from_millis(400);
        while now < t0 + Duration::from_secs(6) {
            // The session's own deadline says when the silence decides.
            now = s.poll_timeout().unwrap_or(now).max(now) + Duration::from_millis(1);
            s.handle_timeout(now);
            verdicts.extend(events(&mut s));
            while s.poll_transmit(&mut [0u8; MAX_PACKET_LEN]).is_some() {}
        }
        let [
            MediaEvent::Machine(AmdEvent::Classified {
                answered_by, after, ..
            }),
        ] = verdicts.as_slice()
        else {
            panic!("one verdict: {verdicts:?}");
        };
        assert_eq!(*answered_by, super::super::amd::AnsweredBy::Human);
        assert!(*after < Duration::from_millis(1_400), "{after:?}");
        // The detector is gone once it has decided: no deadline of its own remains.
        assert!(s.amd.is_none());
    }

    const RECORD: RecordParams = RecordParams {
        max_time: Duration::from_secs(5),
        final_silence: Duration::from_secs(1),
        no_input: Duration::from_secs(3),
        dtmfterm: false,
    };

    #[test]
    fn a_new_recording_ends_the_one_in_progress_and_stopping_the_beep_starts_capture() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        s.record(t0, 1, RECORD, true);
        assert!(s.is_recording());
        s.handle_datagram(t0, REMOTE, &audio_packet(1, 5000));
        s.stop_playback();
        assert_eq!(events(&mut s), [], "the beep is no prompt");
        s.handle_datagram(t0, REMOTE, &audio_packet(2, 5000));
        s.record(t0, 2, RECORD, false);
        let got = events(&mut s);
        let [MediaEvent::Recorded(first)] = got.as_slice() else {
            panic!("{got:?}");
        };
        assert_eq!((first.id, first.pcm.len(), first.silent), (1, 160, false));
        assert_eq!(
            s.poll_timeout(),
            Some(t0),
            "the send slot is sooner than the noinput deadline"
        );
        let later = t0 + RECORD.no_input;
        s.handle_timeout(later);
        let got = events(&mut s);
        let [MediaEvent::Recorded(second)] = got.as_slice() else {
            panic!("{got:?}");
        };
        assert!(second.id == 2 && second.silent && second.pcm.is_empty());
        assert!(!s.is_recording());
    }

    #[test]
    fn the_beep_is_sent_before_capture_begins() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        s.record(t0, 1, RECORD, true);
        let sent = run(&mut s, t0, t0 + Duration::from_millis(199));
        assert_eq!(sent.len(), 10);
        let beep = sent
            .iter()
            .filter(|(_, p)| p[HEADER_LEN..].iter().any(|&b| b != 0xff))
            .count();
        assert_eq!(beep, 10, "200 ms of beep");
        s.handle_datagram(
            t0 + Duration::from_millis(199),
            REMOTE,
            &audio_packet(1, 5000),
        );
        run(
            &mut s,
            t0 + Duration::from_millis(200),
            t0 + Duration::from_millis(200),
        );
        s.handle_datagram(
            t0 + Duration::from_millis(201),
            REMOTE,
            &audio_packet(2, 5000),
        );
        s.stop_recording(Some(9));
        assert!(s.is_recording(), "another id stops nothing");
        s.stop_recording(None);
        let got = events(&mut s);
        let [MediaEvent::Recorded(done)] = got.as_slice() else {
            panic!("{got:?}");
        };
        assert_eq!(done.pcm.len(), 160, "only the packet after the beep");
    }

    #[test]
    fn a_short_buffer_gets_nothing_and_the_packet_stays_due() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(config(Codec::Pcmu), t0);
        assert_eq!(s.poll_transmit(&mut [0u8; MAX_PACKET_LEN - 1]), None);
        assert_eq!(s.poll_timeout(), Some(t0));
        assert!(s.poll_transmit(&mut [0u8; 2048]).is_some());
    }

    mod rtcp {
        use super::*;
        use crate::rtp::rtcp::{Compound, Packet as RtcpPacket};
        use std::time::SystemTime;

        const A: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4000);
        const B: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 5000);

        fn rtcp_of(rtp: SocketAddr) -> SocketAddr {
            SocketAddr::new(rtp.ip(), rtp.port() + 1)
        }

        fn session(
            ssrc: u32,
            remote: SocketAddr,
            t0: Instant,
            wall: u64,
            seed: u64,
        ) -> MediaSession {
            let mut s = MediaSession::new(
                MediaConfig {
                    ssrc,
                    remote,
                    ..config(Codec::Pcmu)
                },
                t0,
            );
            s.enable_rtcp(RtcpConfig {
                wall_clock_at_start: SystemTime::UNIX_EPOCH + Duration::from_secs(wall),
                cname: RtcpConfig::cname_from([ssrc as u8; 12]),
                seed,
                remote_rtcp: None,
            });
            s
        }

        /// A datagram in flight: when it lands, at which session (0 = A), on which port.
        struct InFlight {
            at: Instant,
            to: usize,
            rtcp: bool,
            data: Vec<u8>,
        }

        /// Runs A and B against each other for `duration` with `delay` each way; every
        /// `drop_every`-th RTP packet from A to B is lost. Returns the RTCP compounds B got.
        fn talk(
            pair: &mut [MediaSession; 2],
            t0: Instant,
            duration: Duration,
            delay: Duration,
            drop_every: u64,
        ) -> Vec<Vec<u8>> {
            let addrs = [A, B];
            let mut flight: Vec<InFlight> = Vec::new();
            let mut got_by_b = Vec::new();
            let mut now = t0;
            let mut sent_a = 0u64;
            let mut buf = [0u8; 1500];
            while now <= t0 + duration {
                for (n, s) in pair.iter_mut().enumerate() {
                    s.handle_timeout(now);
                    while let Some((to, len)) = s.poll_transmit(&mut buf) {
                        assert_eq!(to, addrs[1 - n]);
                        if n == 0 {
                            sent_a += 1;
                            if drop_every > 0 && sent_a.is_multiple_of(drop_every) {
                                continue;
                            }
                        }
                        flight.push(InFlight {
                            at: now + delay,
                            to: 1 - n,
                            rtcp: false,
                            data: buf[..len].to_vec(),
                        });
                    }
                    while let Some((to, len)) = s.poll_rtcp_transmit(&mut buf) {
                        assert_eq!(to, rtcp_of(addrs[1 - n]));
                        flight.push(InFlight {
                            at: now + delay,
                            to: 1 - n,
                            rtcp: true,
                            data: buf[..len].to_vec(),
                        });
                    }
                    while s.poll_event().is_some() {}
                }
                let (due, later): (Vec<InFlight>, Vec<InFlight>) =
                    flight.drain(..).partition(|d| d.at <= now);
                flight = later;
                for d in due {
                    let from = addrs[1 - d.to];
                    if d.rtcp {
                        if d.to == 1 {
                            got_by_b.push(d.data.clone());
                        }
                        pair[d.to].handle_rtcp_datagram(now, rtcp_of(from), &d.data);
                    } else {
                        pair[d.to].handle_datagram(now, from, &d.data);
                    }
                }
                let next = [pair[0].poll_timeout(), pair[1].poll_timeout()]
                    .into_iter()
                    .flatten()
                    .chain(flight.iter().map(|d| d.at))
                    .min()
                    .unwrap();
                now = next.max(now + Duration::from_micros(1));
            }
            got_by_b
        }

        #[test]
        fn two_sessions_report_both_ways_and_measure_the_injected_round_trip() {
            let t0 = Instant::now();
            // Clocks an hour apart: the round trip does not depend on them agreeing.
            let mut pair = [
                session(0xaaaa, B, t0, 1_700_000_000, 1),
                session(0xbbbb, A, t0, 1_700_003_600, 2),
            ];
            let delay = Duration::from_millis(35);
            let got = talk(&mut pair, t0, Duration::from_secs(30), delay, 10);
            let (a, b) = (pair[0].stats(), pair[1].stats());
            // 30 s at one report per 4.1 s on average, the first within 3.1 s.
            for stats in [a, b] {
                assert!((4..=12).contains(&stats.rtcp_sent), "{stats:?}");
                assert!(stats.rtcp_received >= 3, "{stats:?}");
                let rtt = stats.round_trip_us.abs_diff(70_000);
                assert!(
                    rtt < 1_000,
                    "RTT {} µs, injected 70 ms",
                    stats.round_trip_us
                );
                assert_eq!((stats.dropped_foreign, stats.dropped_malformed), (0, 0));
            }
            // B lost one packet in ten of A's: A learns it from B's reports.
            assert!((20..=32).contains(&a.remote_fraction_lost), "{a:?}");
            assert_eq!(b.remote_fraction_lost, 0, "{b:?}");
            assert_eq!(a.remote_jitter_us, 0, "a fixed delay has no jitter");
            // What B received: SRs about A's stream with A's CNAME, each a valid compound.
            let first = Compound::parse(&got[0]).unwrap();
            let packets: Vec<RtcpPacket<'_>> = first.packets().collect();
            assert!(
                matches!(packets[0], RtcpPacket::SenderReport { ssrc: 0xaaaa, .. }),
                "{packets:?}"
            );
            assert!(
                matches!(packets[1], RtcpPacket::SourceDescription { ssrc: Some(0xaaaa), cname: Some(c) } if c.len() == 16)
            );

            // Hangup: each side's last compound carries a BYE, and nothing follows it.
            let mut buf = [0u8; 256];
            pair[0].end_rtcp();
            assert_eq!(
                pair[0].poll_timeout(),
                Some(pair[0].now),
                "the BYE is due at once"
            );
            let (to, len) = pair[0].poll_rtcp_transmit(&mut buf).unwrap();
            assert_eq!(to, rtcp_of(B));
            let last: Vec<RtcpPacket<'_>> =
                Compound::parse(&buf[..len]).unwrap().packets().collect();
            assert!(
                matches!(
                    last.last(),
                    Some(RtcpPacket::Goodbye {
                        ssrc: Some(0xaaaa),
                        count: 1
                    })
                ),
                "{last:?}"
            );
            pair[0].handle_timeout(pair[0].now + Duration::from_secs(60));
            assert_eq!(pair[0].poll_rtcp_transmit(&mut buf), None);
            pair[0].end_rtcp();
            assert_eq!(pair[0].poll_rtcp_transmit(&mut buf), None, "one BYE only");
        }

        #[test]
        fn the_sender_report_describes_our_stream() {
            let t0 = Instant::now();
            let mut s = session(0x1111, B, t0, 1_700_000_000, 9);
            let mut buf = [0u8; MAX_PACKET_LEN];
            let mut now = t0;
            let report = loop {
                s.handle_timeout(now);
                while s.poll_transmit(&mut buf).is_some() {}
                if s.poll_rtcp_transmit(&mut [0u8; 256]).is_some() {
                    break now;
                }
                now = s
                    .poll_timeout()
                    .unwrap()
                    .max(now + Duration::from_micros(1));
            };
            assert!(
                report - t0 <= Duration::from_millis(3_078),
                "{:?}",
                report - t0
            );
            // Re-read the compound just sent via a fresh session at the same point.
            let mut again = session(0x1111, B, t0, 1_700_000_000, 9);
            let mut rtcp = [0u8; 256];
            let mut t = t0;
            let (len, at) = loop {
                again.handle_timeout(t);
                while again.poll_transmit(&mut buf).is_some() {}
                if let Some((_, len)) = again.poll_rtcp_transmit(&mut rtcp) {
                    break (len, t);
                }
                t = again
                    .poll_timeout()
                    .unwrap()
                    .max(t + Duration::from_micros(1));
            };
            assert_eq!(at, report, "seeded: the same schedule");
            let packets: Vec<RtcpPacket<'_>> =
                Compound::parse(&rtcp[..len]).unwrap().packets().collect();
            let RtcpPacket::SenderReport { info, blocks, .. } = packets[0] else {
                panic!("{packets:?}");
            };
            let elapsed = at - t0;
            let sent = again.stats().packets_sent;
            assert_eq!(u64::from(info.packet_count), sent);
            assert_eq!(u64::from(info.octet_count), sent * 160);
            let ticks = (elapsed.as_micros() * 8 / 1000) as u32;
            assert_eq!(
                info.rtp_timestamp,
                config(Codec::Pcmu).initial_timestamp.wrapping_add(ticks)
            );
            let unix = 1_700_000_000 + elapsed.as_secs();
            assert_eq!(info.ntp_timestamp >> 32, unix + 2_208_988_800);
            assert!(blocks.is_empty(), "nothing received: no report block");
            // A short buffer gets nothing and the report stays due.
            assert_eq!(again.poll_rtcp_transmit(&mut [0u8; 4]), None);
        }

        #[test]
        fn rtcp_is_heard_only_from_the_remotes_rtcp_address() {
            let t0 = Instant::now();
            let mut s = session(0x1111, B, t0, 1_700_000_000, 9);
            let rr = [0x80, 201, 0, 1, 0, 0, 0, 7];
            s.handle_rtcp_datagram(t0, rtcp_of(B), &rr);
            s.handle_rtcp_datagram(t0, B, &rr); // the RTP port
            s.handle_rtcp_datagram(
                t0,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)), 5001),
                &rr,
            );
            s.handle_rtcp_datagram(t0, rtcp_of(B), &rr[..7]);
            s.handle_rtcp_datagram(t0, rtcp_of(B), &[0x81, 202, 0, 0]);
            let stats = s.stats();
            assert_eq!(
                (
                    stats.rtcp_received,
                    stats.dropped_foreign,
                    stats.dropped_malformed
                ),
                (1, 2, 2)
            );
            assert_eq!(events(&mut s), [MediaEvent::SourceRefused(B)]);

            // The answer's a=rtcp: port replaces port + 1.
            let mut explicit = MediaSession::new(
                MediaConfig {
                    remote: B,
                    ..config(Codec::Pcmu)
                },
                t0,
            );
            let elsewhere: SocketAddr = "10.0.0.2:7777".parse().unwrap();
            explicit.enable_rtcp(RtcpConfig {
                wall_clock_at_start: SystemTime::UNIX_EPOCH,
                cname: [b'x'; 16],
                seed: 1,
                remote_rtcp: Some(elsewhere),
            });
            assert_eq!(explicit.rtcp_peer(), Some(elsewhere));
            explicit.handle_rtcp_datagram(t0, rtcp_of(B), &rr);
            explicit.handle_rtcp_datagram(t0, elsewhere, &rr);
            assert_eq!(
                (
                    explicit.stats().rtcp_received,
                    explicit.stats().dropped_foreign
                ),
                (1, 1)
            );

            // On hold nothing is sent or heard.
            let hold = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5000);
            let mut held = session(0x1111, hold, t0, 1_700_000_000, 9);
            held.handle_timeout(t0 + Duration::from_secs(20));
            assert_eq!(held.poll_rtcp_transmit(&mut [0u8; 256]), None);
            held.handle_rtcp_datagram(t0, rtcp_of(B), &rr);
            assert_eq!(held.stats().rtcp_received, 0);
        }

        #[test]
        fn with_latching_rtcp_follows_the_latched_source() {
            let t0 = Instant::now();
            let nat: SocketAddr = "198.51.100.20:40002".parse().unwrap();
            let mut cfg = config(Codec::Pcmu);
            cfg.source = SourcePolicy::Latch {
                signalling_ip: nat.ip(),
            };
            let mut s = MediaSession::new(cfg, t0);
            s.enable_rtcp(RtcpConfig {
                wall_clock_at_start: SystemTime::UNIX_EPOCH,
                cname: [b'x'; 16],
                seed: 1,
                remote_rtcp: None,
            });
            assert_eq!(s.rtcp_peer(), Some(rtcp_of(REMOTE)));
            s.handle_datagram(t0, nat, &event_packet(1, 100, 1, false));
            s.handle_datagram(t0, nat, &event_packet(2, 100, 1, false));
            assert_eq!(s.latched(), Some(nat));
            assert_eq!(s.rtcp_peer(), Some(rtcp_of(nat)));
            let rr = [0x80, 201, 0, 1, 0, 0, 0, 7];
            s.handle_rtcp_datagram(t0, rtcp_of(REMOTE), &rr);
            s.handle_rtcp_datagram(t0, rtcp_of(nat), &rr);
            assert_eq!((s.stats().rtcp_received, s.stats().dropped_foreign), (1, 1));
        }
    }
}
