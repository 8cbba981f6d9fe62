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

use crate::rx_stats::RxStats;
use crate::sounds::{Sounds, inband_frame};

/// Largest payload echoed back (60 ms of G.711); longer ones are counted, not echoed.
pub const ECHO_MAX: usize = 480;
/// Buffer a caller of [`PhoneMedia::poll_transmit`] must provide.
pub const MAX_RTP: usize = HEADER_LEN + ECHO_MAX;
/// End-of-event packets sent per key (RFC 4733 §2.5.1.4: three).
const END_PACKETS: u64 = 3;
/// Keys received that a record keeps.
const MAX_KEYS_RECEIVED: usize = 64;

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
}

impl PhoneMedia {
    /// Starts at `now` (the answer). `keys` are offsets after it; `key_duration` how long
    /// each is held.
    pub fn new(
        now: Instant,
        params: MediaParams,
        sound: Sound,
        sounds: Arc<Sounds>,
        keys: &[(Duration, char)],
        key_duration: Duration,
    ) -> Self {
        let slot = |at: Duration| (at.as_millis() / PACKET_INTERVAL.as_millis()) as u64;
        let key_slots = slot(key_duration).max(1);
        // Keys closer than one event's length are pushed back so events never overlap.
        let mut keys_at: Vec<(u64, char)> = Vec::with_capacity(keys.len());
        for &(at, key) in keys {
            let earliest = keys_at
                .last()
                .map_or(0, |(s, _)| s + key_slots + END_PACKETS);
            keys_at.push((slot(at).max(earliest), key));
        }
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
    }

    /// The next packet to send into `buf` (at least [`MAX_RTP`] octets): destination and
    /// length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
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

    /// When the next paced packet is due (`None` in echo mode with no key left).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let slot = if self.sound == Sound::Echo && self.in_flight.is_none() {
            self.keys.get(self.next_key)?.0.max(self.next_slot)
        } else {
            self.next_slot
        };
        self.start
            .checked_add(PACKET_INTERVAL.saturating_mul(u32::try_from(slot).ok()?))
    }

    /// Keys sent so far (a key counts once its first packet left).
    pub fn keys_sent(&self) -> &str {
        &self.keys_sent
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
