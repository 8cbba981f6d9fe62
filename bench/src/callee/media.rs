//! A simulated phone's RTP, sans-IO: what it sends (echo, a tone, a prompt, silence, or an
//! answering machine's greeting and beep), the keys it presses (RFC 4733 events, or in-band
//! tones when no event payload type was negotiated), and what it measures of what it
//! receives ([`RxStats`]). Sending is paced like the dataplane's `MediaSession`: slot *n* is
//! due at `start + n × 20 ms`; a late caller gets at most [`MAX_CATCH_UP`] overdue slots.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outdial_dataplane::api::Codec;
use outdial_dataplane::rtp::packet::{HEADER_LEN, Header, Packet};
use outdial_dataplane::rtp::{
    DtmfReceiver, MAX_CATCH_UP, PACKET_INTERVAL, SAMPLES_PER_PACKET, TelephoneEvent, g711,
    parse_telephone_event,
};

use crate::sounds::{Sounds, inband_frame};
use outdial_dataplane::rtp::rx_stats::RxStats;

/// Largest payload echoed back (60 ms of G.711); longer ones are counted, not echoed.
pub const ECHO_MAX: usize = 480;
/// Buffer a caller of [`PhoneMedia::poll_transmit`] must provide.
pub const MAX_RTP: usize = HEADER_LEN + ECHO_MAX;
/// End-of-event packets sent per key (RFC 4733 §2.5.1.4: three).
const END_PACKETS: u64 = 3;
/// Keys received that a record keeps.
const MAX_KEYS_RECEIVED: usize = 64;
/// Mean absolute sample value above which a received frame is the caller speaking (about
/// -40 dBov); G.711 silence decodes to 0 or ±8.
const LOUD: u32 = 300;

/// Keys held back until the caller's prompt ends: pressed in answer to it.
#[derive(Clone, Debug)]
struct PromptWait {
    /// Silence after audio that ends a prompt.
    silence: Duration,
    /// The keys, as offsets from the prompt's end.
    keys: Vec<(Duration, char)>,
    /// When the caller's audio was last loud (none yet: no prompt heard).
    last_loud: Option<Instant>,
}

/// What a phone sends while nobody presses keys.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Sound {
    /// Each received audio packet straight back (as SIPp's `-rtp_echo`); nothing otherwise.
    Echo,
    /// A continuous 440 Hz tone.
    Tone,
    /// The `--prompt` file, looped.
    Prompt,
    /// G.711 silence.
    Silence,
    /// An answering machine: greeting bursts for this many slots, the beep, then silence.
    Machine {
        /// Slots of greeting.
        greeting_slots: u64,
    },
}

/// The negotiated stream and the phone's own RTP identity.
#[derive(Clone, Copy, Debug)]
pub struct MediaParams {
    /// Where the caller receives RTP (from its offer).
    pub remote: SocketAddr,
    /// The law chosen.
    pub codec: Codec,
    /// The caller's telephone-event payload type, if it offered one.
    pub event_payload_type: Option<u8>,
    /// Our SSRC.
    pub ssrc: u32,
    /// First sequence number.
    pub initial_seq: u16,
    /// First timestamp.
    pub initial_timestamp: u32,
}

/// A key being sent: its slot range and RTP timestamp.
#[derive(Clone, Copy, Debug)]
struct KeyInFlight {
    key: char,
    code: u8,
    first_slot: u64,
}

/// One answered call's media.
#[derive(Debug)]
pub struct PhoneMedia {
    params: MediaParams,
    sound: Sound,
    sounds: Arc<Sounds>,
    start: Instant,
    now: Instant,
    next_slot: u64,
    seq: u16,
    marker: bool,
    /// Keys still to press, as (slot, key), in order.
    keys: Vec<(u64, char)>,
    next_key: usize,
    key_slots: u64,
    in_flight: Option<KeyInFlight>,
    keys_sent: String,
    echo_len: Option<usize>,
    echo: [u8; ECHO_MAX],
    rx: RxStats,
    dtmf: DtmfReceiver,
    keys_received: String,
    tx_packets: u64,
    dropped: u64,
    /// Keys waiting for the caller's prompt to end (`--dtmf-after-prompt`).
    prompt_wait: Option<PromptWait>,
    /// The slot the first key started in.
    first_key_slot: Option<u64>,
}

impl PhoneMedia {
    /// Starts at `now` (the answer). `keys` are offsets after it, or, with
    /// `after_prompt = Some(silence)`, after the end of the caller's first prompt (its audio
    /// heard, then `silence` without it); `key_duration` is how long each is held.
    pub fn new(
        now: Instant,
        params: MediaParams,
        sound: Sound,
        sounds: Arc<Sounds>,
        keys: &[(Duration, char)],
        key_duration: Duration,
        after_prompt: Option<Duration>,
    ) -> Self {
        let key_slots = slot_of(key_duration).max(1);
        let (keys_at, prompt_wait) = match after_prompt {
            Some(silence) if !keys.is_empty() => (
                Vec::new(),
                Some(PromptWait {
                    silence,
                    keys: keys.to_vec(),
                    last_loud: None,
                }),
            ),
            _ => (schedule(keys, 0, key_slots), None),
        };
        Self {
            params,
            sound,
            sounds,
            start: now,
            now,
            next_slot: 0,
            seq: params.initial_seq,
            marker: true,
            keys: keys_at,
            next_key: 0,
            key_slots,
            in_flight: None,
            keys_sent: String::new(),
            echo_len: None,
            echo: [0; ECHO_MAX],
            rx: RxStats::new(now),
            dtmf: DtmfReceiver::new(),
            keys_received: String::new(),
            tx_packets: 0,
            dropped: 0,
            prompt_wait,
            first_key_slot: None,
        }
    }

    /// One datagram on the call's RTP socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.now = self.now.max(now);
        if from.ip().to_canonical() != self.params.remote.ip().to_canonical() {
            self.dropped += 1;
            return;
        }
        let Ok(packet) = Packet::parse(data) else {
            self.dropped += 1;
            return;
        };
        let header = packet.header;
        let is_event = Some(header.payload_type) == self.params.event_payload_type;
        self.rx.on_packet(
            now,
            header.ssrc,
            header.sequence_number,
            header.timestamp,
            !is_event,
        );
        if !is_event
            && let Some(wait) = self.prompt_wait.as_mut()
            && is_loud(self.params.codec, packet.payload)
        {
            wait.last_loud = Some(now);
        }
        if is_event {
            if let Some(event) = parse_telephone_event(packet.payload)
                && let Some(key) = self.dtmf.on_packet(header.ssrc, header.timestamp, &event)
                && self.keys_received.len() < MAX_KEYS_RECEIVED
            {
                self.keys_received.push(key);
            }
            return;
        }
        if self.sound == Sound::Echo
            && self.in_flight.is_none()
            && header.payload_type == g711::payload_type(self.params.codec)
        {
            match self.echo.get_mut(..packet.payload.len()) {
                Some(slot) => {
                    slot.copy_from_slice(packet.payload);
                    self.echo_len = Some(packet.payload.len());
                }
                None => self.dropped += 1,
            }
        }
    }

    /// Advances the clock.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.check_prompt_end();
    }

    /// Once the caller's prompt has been heard and has ended, the held keys get their slots.
    fn check_prompt_end(&mut self) {
        let Some(wait) = &self.prompt_wait else {
            return;
        };
        let Some(ended) = wait.last_loud.and_then(|t| t.checked_add(wait.silence)) else {
            return;
        };
        if self.now < ended {
            return;
        }
        // invariant: checked just above.
        let wait = self.prompt_wait.take().expect("a prompt wait");
        let first = self.slots_due().max(self.next_slot);
        self.keys = schedule(&wait.keys, first, self.key_slots);
        self.next_key = 0;
    }

    /// The next packet to send into `buf` (at least [`MAX_RTP`] octets): destination and
    /// length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        self.check_prompt_end();
        if let Some(len) = self.echo_len.take() {
            let slot = self.slots_due().saturating_sub(1);
            let payload_type = g711::payload_type(self.params.codec);
            buf.get_mut(HEADER_LEN..HEADER_LEN + len)?
                .copy_from_slice(self.echo.get(..len)?);
            let header = self.write_header(buf, payload_type, self.timestamp(slot))?;
            return Some((self.params.remote, header + len));
        }
        let due = self.slots_due();
        loop {
            if self.next_slot >= due {
                return None;
            }
            if due - self.next_slot > MAX_CATCH_UP {
                self.next_slot = due - MAX_CATCH_UP;
                self.marker = true;
            }
            if self.sound == Sound::Echo && self.in_flight.is_none() {
                // Nothing is paced in echo mode except keys: jump to the next one.
                let next_key = self.keys.get(self.next_key).map_or(u64::MAX, |(s, _)| *s);
                if next_key > self.next_slot {
                    self.next_slot = next_key.min(due);
                    continue;
                }
            }
            let slot = self.next_slot;
            self.next_slot += 1;
            if let Some(len) = self.write_slot(slot, buf) {
                return Some((self.params.remote, len));
            }
        }
    }

    /// When the next paced packet is due, or the prompt being waited for would end (`None`
    /// in echo mode with no key left).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let prompt_end = self
            .prompt_wait
            .as_ref()
            .and_then(|w| w.last_loud?.checked_add(w.silence));
        let slot = if self.sound == Sound::Echo && self.in_flight.is_none() {
            self.keys
                .get(self.next_key)
                .map(|k| k.0.max(self.next_slot))
        } else {
            Some(self.next_slot)
        };
        let send = slot.and_then(|slot| {
            self.start
                .checked_add(PACKET_INTERVAL.saturating_mul(u32::try_from(slot).ok()?))
        });
        match (send, prompt_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Keys sent so far (a key counts once its first packet left).
    pub fn keys_sent(&self) -> &str {
        &self.keys_sent
    }

    /// Milliseconds from the answer to the first key pressed, once one was.
    pub fn first_key_ms(&self) -> Option<u64> {
        self.first_key_slot
            .map(|slot| slot.saturating_mul(PACKET_INTERVAL.as_millis() as u64))
    }

    /// Keys received as RFC 4733 events.
    pub fn keys_received(&self) -> &str {
        &self.keys_received
    }

    /// Receive statistics.
    pub fn rx(&self) -> &RxStats {
        &self.rx
    }

    /// Packets sent.
    pub fn tx_packets(&self) -> u64 {
        self.tx_packets
    }

    /// Datagrams dropped: from a foreign address, not RTP, or too long to echo.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Slots due by now, counting slot 0.
    fn slots_due(&self) -> u64 {
        let elapsed = self.now.saturating_duration_since(self.start);
        (elapsed.as_millis() / PACKET_INTERVAL.as_millis()) as u64 + 1
    }

    fn timestamp(&self, slot: u64) -> u32 {
        // RTP timestamps are modulo 2^32 (RFC 3550 §5.1): truncation is the intent.
        self.params
            .initial_timestamp
            .wrapping_add((slot as u32).wrapping_mul(SAMPLES_PER_PACKET as u32))
    }

    fn write_header(&mut self, buf: &mut [u8], payload_type: u8, timestamp: u32) -> Option<usize> {
        let len = Header {
            marker: std::mem::take(&mut self.marker),
            payload_type,
            sequence_number: self.seq,
            timestamp,
            ssrc: self.params.ssrc,
        }
        .write(buf)?;
        self.seq = self.seq.wrapping_add(1);
        self.tx_packets += 1;
        Some(len)
    }

    /// Writes slot `slot`'s packet; `None` when the slot sends nothing.
    fn write_slot(&mut self, slot: u64, buf: &mut [u8]) -> Option<usize> {
        if self.in_flight.is_none()
            && let Some(&(at, key)) = self.keys.get(self.next_key)
            && at <= slot
        {
            self.next_key += 1;
            if let Some(code) = TelephoneEvent::code_of(key) {
                self.in_flight = Some(KeyInFlight {
                    key,
                    code,
                    first_slot: slot,
                });
                self.keys_sent.push(key);
                self.first_key_slot.get_or_insert(slot);
            }
        }
        if let Some(key) = self.in_flight {
            let index = slot - key.first_slot;
            let last = index + 1 >= self.key_slots + END_PACKETS;
            if last {
                self.in_flight = None;
            }
            match self.params.event_payload_type {
                Some(payload_type) => {
                    let end = index + 1 >= self.key_slots;
                    let duration = (index + 1).min(self.key_slots) * SAMPLES_PER_PACKET as u64;
                    let event = TelephoneEvent {
                        event: key.code,
                        end,
                        volume: 10,
                        duration: u16::try_from(duration).unwrap_or(u16::MAX),
                    };
                    // RFC 4733 §2.5.1.2: the first packet of an event has the M bit.
                    self.marker |= index == 0;
                    let ts = self.timestamp(key.first_slot);
                    let header = self.write_header(buf, payload_type, ts)?;
                    let body = event.write(buf.get_mut(header..)?)?;
                    return Some(header + body);
                }
                None if index < self.key_slots => {
                    let payload_type = g711::payload_type(self.params.codec);
                    let ts = self.timestamp(slot);
                    let header = self.write_header(buf, payload_type, ts)?;
                    let frame = buf.get_mut(header..header + SAMPLES_PER_PACKET)?;
                    let offset = index * SAMPLES_PER_PACKET as u64;
                    inband_frame(self.params.codec, key.key, offset, frame);
                    return Some(header + SAMPLES_PER_PACKET);
                }
                None => {}
            }
        }
        if self.sound == Sound::Echo {
            return None;
        }
        let codec = self.params.codec;
        let ts = self.timestamp(slot);
        let header = self.write_header(buf, g711::payload_type(codec), ts)?;
        let out = buf.get_mut(header..header + SAMPLES_PER_PACKET)?;
        let sounds = &self.sounds;
        let frame: Option<&[u8]> = match self.sound {
            Sound::Echo | Sound::Silence => None,
            Sound::Tone => Some(sounds.tone.frame(codec, slot)),
            Sound::Prompt => sounds.prompt.as_ref().map(|p| p.frame(codec, slot)),
            Sound::Machine { greeting_slots } if slot < greeting_slots => {
                Some(sounds.greeting.frame(codec, slot))
            }
            Sound::Machine { greeting_slots } => {
                let beep = slot - greeting_slots;
                (beep < sounds.beep.frames() as u64).then(|| sounds.beep.frame(codec, beep))
            }
        };
        match frame {
            Some(frame) if frame.len() == SAMPLES_PER_PACKET => out.copy_from_slice(frame),
            _ => out.fill(g711::silence(codec)),
        }
        Some(header + SAMPLES_PER_PACKET)
    }
}

/// The slot an offset falls in.
fn slot_of(at: Duration) -> u64 {
    (at.as_millis() / PACKET_INTERVAL.as_millis()) as u64
}

/// Slots for `keys` (offsets from slot `first`); keys closer than one event's length are
/// pushed back so events never overlap.
fn schedule(keys: &[(Duration, char)], first: u64, key_slots: u64) -> Vec<(u64, char)> {
    let mut keys_at: Vec<(u64, char)> = Vec::with_capacity(keys.len());
    for &(at, key) in keys {
        let earliest = keys_at
            .last()
            .map_or(first, |(s, _)| s + key_slots + END_PACKETS);
        keys_at.push(((first + slot_of(at)).max(earliest), key));
    }
    keys_at
}

/// Whether a G.711 payload carries sound: mean absolute sample above [`LOUD`].
fn is_loud(codec: Codec, payload: &[u8]) -> bool {
    if payload.is_empty() {
        return false;
    }
    let sum: u32 = payload
        .iter()
        .map(|&code| u32::from(g711::decode_sample(codec, code).unsigned_abs()))
        .sum();
    sum / payload.len() as u32 > LOUD
}

#[cfg(test)]
mod tests {
    use super::*;

    const REMOTE: &str = "192.0.2.1:40000";
    const MS20: Duration = Duration::from_millis(20);

    /// A caller's audio packet at slot `n`: a loud square wave, or G.711 silence.
    fn caller_packet(n: u16, loud: bool) -> Vec<u8> {
        let mut packet = vec![0u8; HEADER_LEN + SAMPLES_PER_PACKET];
        Header {
            marker: false,
            payload_type: 0,
            sequence_number: n,
            timestamp: u32::from(n) * 160,
            ssrc: 7,
        }
        .write(&mut packet);
        let pcm: Vec<i16> = (0..SAMPLES_PER_PACKET)
            .map(|i| {
                if !loud {
                    0
                } else if i % 20 < 10 {
                    6000
                } else {
                    -6000
                }
            })
            .collect();
        g711::encode(Codec::Pcmu, &pcm, &mut packet[HEADER_LEN..]);
        packet
    }

    /// A caller offering RFC 4733 events at [`REMOTE`].
    fn params(codec: Codec) -> MediaParams {
        MediaParams {
            remote: REMOTE.parse().expect("address"),
            codec,
            event_payload_type: Some(101),
            ssrc: 1,
            initial_seq: 1,
            initial_timestamp: 0,
        }
    }

    #[test]
    fn keys_in_answer_to_a_prompt_wait_for_its_end_then_follow_their_offsets() {
        let t0 = Instant::now();
        let params = params(Codec::Pcmu);
        let mut media = PhoneMedia::new(
            t0,
            params,
            Sound::Echo,
            Arc::new(Sounds::new(None).expect("sounds")),
            &[(Duration::ZERO, '4'), (Duration::from_millis(300), '2')],
            Duration::from_millis(100),
            Some(Duration::from_millis(500)),
        );
        // Two seconds of prompt, then silence; the phone runs its own clock between packets.
        let mut first_event_at = None;
        let mut buf = [0u8; MAX_RTP];
        for n in 0..250u16 {
            let now = t0 + MS20 * u32::from(n);
            media.handle_timeout(now);
            media.handle_datagram(now, params.remote, &caller_packet(n, n < 100));
            while let Some((_, len)) = media.poll_transmit(&mut buf) {
                let header = Packet::parse(&buf[..len]).expect("rtp").header;
                if header.payload_type == 101 && first_event_at.is_none() {
                    first_event_at = Some(now);
                }
            }
        }
        // The prompt's last loud packet is slot 99 (1.98 s); it ended 500 ms later.
        let first = first_event_at.expect("the keys were pressed");
        let prompt_end = t0 + MS20 * 99 + Duration::from_millis(500);
        assert!(
            first >= prompt_end && first < prompt_end + Duration::from_millis(60),
            "first key {:?} after the answer, the prompt ended at {:?}",
            first - t0,
            prompt_end - t0
        );
        assert_eq!(media.keys_sent(), "42");
        let first_ms = media.first_key_ms().expect("pressed");
        assert_eq!(Duration::from_millis(first_ms), first - t0);
    }

    #[test]
    fn without_a_prompt_heard_keys_held_for_one_are_never_pressed() {
        let t0 = Instant::now();
        let params = params(Codec::Pcma);
        let mut media = PhoneMedia::new(
            t0,
            params,
            Sound::Silence,
            Arc::new(Sounds::new(None).expect("sounds")),
            &[(Duration::ZERO, '1')],
            Duration::from_millis(100),
            Some(Duration::from_millis(500)),
        );
        let mut buf = [0u8; MAX_RTP];
        for n in 0..200u16 {
            let now = t0 + MS20 * u32::from(n);
            media.handle_timeout(now);
            let mut quiet = caller_packet(n, false);
            // A-law silence is 0xd5, not the µ-law encoding of 0.
            quiet[HEADER_LEN..].fill(g711::silence(Codec::Pcma));
            media.handle_datagram(now, params.remote, &quiet);
            while media.poll_transmit(&mut buf).is_some() {}
        }
        assert_eq!(media.keys_sent(), "");
        assert!(media.tx_packets() > 150, "silence still flows");
    }
}
