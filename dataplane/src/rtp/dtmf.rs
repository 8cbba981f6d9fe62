//! RFC 4733 telephone-events: DTMF keys carried as RTP named events.
//!
//! One key press is one *event*: a run of packets sharing one RTP timestamp (the event's
//! start, §2.3.1), the first with the M bit, each with a growing duration, and the last sent
//! three times with the E bit (§2.5.1.4). [`DtmfReceiver`] reports each key once per event,
//! on the first packet of it that arrives, so a lost start is recovered from any later
//! update and the repeated end packets add nothing.

/// The 4-octet event payload (RFC 4733 §2.3).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct TelephoneEvent {
    /// Event code (§3.2): 0–9 digits, 10 `*`, 11 `#`, 12–15 `A`–`D`, 16 flash.
    pub event: u8,
    /// E bit: this packet ends the event.
    pub end: bool,
    /// Power level in −dBm0, 0–63.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units (8 kHz ticks).
    pub duration: u16,
}

impl TelephoneEvent {
    /// The DTMF key this event is, if it is one (§3.2, Table 3).
    pub fn key(&self) -> Option<char> {
        Some(match self.event {
            digit @ 0..=9 => char::from(b'0' + digit),
            10 => '*',
            11 => '#',
            letter @ 12..=15 => char::from(b'A' + (letter - 12)),
            _ => return None,
        })
    }

    /// The event code of a DTMF key (`0`–`9`, `*`, `#`, `A`–`D`, case-insensitive), the
    /// inverse of [`TelephoneEvent::key`].
    pub fn code_of(key: char) -> Option<u8> {
        Some(match key.to_ascii_uppercase() {
            digit @ '0'..='9' => digit as u8 - b'0',
            '*' => 10,
            '#' => 11,
            letter @ 'A'..='D' => letter as u8 - b'A' + 12,
            _ => return None,
        })
    }

    /// Writes the 4-octet payload (§2.3) at the start of `buf`; returns 4, or `None` when
    /// `buf` is shorter. The volume is masked to its 6 bits.
    pub fn write(&self, buf: &mut [u8]) -> Option<usize> {
        let payload = buf.get_mut(..4)?;
        let [high, low] = self.duration.to_be_bytes();
        payload.copy_from_slice(&[
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            high,
            low,
        ]);
        Some(4)
    }
}

/// Reads a telephone-event payload. Returns `None` when it is shorter than 4 octets.
///
/// Only the first event block is read: further blocks come from RFC 2198 redundancy, which
/// Outdial does not negotiate.
pub fn parse_telephone_event(payload: &[u8]) -> Option<TelephoneEvent> {
    let &[event, flags, duration_high, duration_low, ..] = payload else {
        return None;
    };
    Some(TelephoneEvent {
        event,
        end: flags & 0x80 != 0,
        volume: flags & 0x3f,
        duration: u16::from_be_bytes([duration_high, duration_low]),
    })
}

/// How many recent events are remembered to suppress late duplicates.
const REMEMBERED_EVENTS: usize = 8;

/// Turns a stream of telephone-event packets into keys, one per event.
///
/// Events are keyed by (SSRC, RTP timestamp). The last few keys are remembered, so a
/// retransmitted end packet arriving after the next key began is still recognised.
#[derive(Clone, Debug, Default)]
pub struct DtmfReceiver {
    recent: [Option<(u32, u32)>; REMEMBERED_EVENTS],
    next_slot: usize,
}

impl DtmfReceiver {
    /// A receiver that has seen no event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one telephone-event packet; returns its key the first time its event is seen.
    pub fn on_packet(&mut self, ssrc: u32, timestamp: u32, event: &TelephoneEvent) -> Option<char> {
        let key = event.key()?;
        let id = Some((ssrc, timestamp));
        if self.recent.contains(&id) {
            return None;
        }
        if let Some(slot) = self.recent.get_mut(self.next_slot) {
            *slot = id;
        }
        self.next_slot = (self.next_slot + 1) % REMEMBERED_EVENTS;
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(code: u8, end: bool, duration: u16) -> TelephoneEvent {
        TelephoneEvent {
            event: code,
            end,
            volume: 10,
            duration,
        }
    }

    #[test]
    fn payload_fields_are_decoded() {
        let e = parse_telephone_event(&[11, 0x8a, 0x08, 0xc0]).unwrap();
        assert_eq!(e, event(11, true, 2240));
        assert_eq!(e.key(), Some('#'));
        let reserved_bit_ignored = parse_telephone_event(&[5, 0x4a, 0, 0]).unwrap();
        assert_eq!(
            (reserved_bit_ignored.end, reserved_bit_ignored.volume),
            (false, 10)
        );
    }

    #[test]
    fn short_payloads_are_not_events() {
        for len in 0..4 {
            assert_eq!(parse_telephone_event(&[1, 2, 3, 4][..len]), None);
        }
        assert!(parse_telephone_event(&[1, 2, 3, 4]).is_some());
    }

    #[test]
    fn every_event_code_maps_to_its_key() {
        let keys: String = (0..=16).filter_map(|c| event(c, false, 0).key()).collect();
        assert_eq!(keys, "0123456789*#ABCD");
        assert_eq!(event(16, false, 0).key(), None, "flash is not a key");
    }

    #[test]
    fn written_payloads_read_back_and_keys_map_both_ways() {
        let mut buf = [0u8; 4];
        for e in [
            event(11, true, 2240),
            event(0, false, 0),
            event(15, false, 65535),
        ] {
            assert_eq!(e.write(&mut buf), Some(4));
            assert_eq!(parse_telephone_event(&buf), Some(e));
        }
        assert_eq!(event(1, false, 0).write(&mut [0u8; 3]), None);
        for key in "0123456789*#ABCD".chars() {
            let code = TelephoneEvent::code_of(key).unwrap();
            assert_eq!(event(code, false, 0).key(), Some(key));
        }
        assert_eq!(TelephoneEvent::code_of('b'), Some(13));
        assert_eq!(TelephoneEvent::code_of('x'), None);
    }

    #[test]
    fn one_key_per_timestamp_including_triple_end() {
        let mut rx = DtmfReceiver::new();
        let mut keys = String::new();
        for (ts, e) in [
            (100, event(1, false, 0)),
            (100, event(1, false, 160)),
            (100, event(1, true, 320)),
            (100, event(1, true, 320)),
            (100, event(1, true, 320)),
            (900, event(1, false, 0)),
            (900, event(1, true, 160)),
        ] {
            keys.extend(rx.on_packet(7, ts, &e));
        }
        assert_eq!(keys, "11", "two presses of the same key are two events");
    }

    #[test]
    fn a_late_end_packet_of_an_earlier_event_is_not_a_new_key() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(rx.on_packet(7, 100, &event(4, false, 0)), Some('4'));
        assert_eq!(rx.on_packet(7, 900, &event(5, false, 0)), Some('5'));
        assert_eq!(rx.on_packet(7, 100, &event(4, true, 800)), None);
    }

    #[test]
    fn only_the_end_packet_surviving_still_gives_the_key() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(rx.on_packet(7, 100, &event(9, true, 2240)), Some('9'));
    }

    #[test]
    fn memory_is_bounded_and_oldest_is_forgotten() {
        let mut rx = DtmfReceiver::new();
        for ts in 0..=REMEMBERED_EVENTS as u32 {
            assert_eq!(rx.on_packet(1, ts * 1000, &event(0, false, 0)), Some('0'));
        }
        assert_eq!(rx.on_packet(1, 0, &event(0, false, 0)), Some('0'));
        assert_eq!(rx.on_packet(1, 8000, &event(0, false, 0)), None);
    }

    #[test]
    fn a_new_ssrc_with_the_same_timestamp_is_a_new_event() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(rx.on_packet(1, 100, &event(2, false, 0)), Some('2'));
        assert_eq!(rx.on_packet(2, 100, &event(2, false, 0)), Some('2'));
    }
}
