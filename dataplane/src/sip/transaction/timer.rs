//! Transaction timers (RFC 3261 §17, Table 4), kept quinn-style in a fixed table.

use std::time::Instant;

/// A transaction timer. Timer C is proxy-only and absent.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Timer {
    /// INVITE request retransmit, starts at T1 and doubles (RFC 3261 §17.1.1.2).
    A = 0,
    /// INVITE transaction timeout, 64*T1 (RFC 3261 §17.1.1.2).
    B,
    /// Wait time for response retransmits after a non-2xx final, 32 s for UDP
    /// (RFC 3261 §17.1.1.2).
    D,
    /// Non-INVITE request retransmit, T1 doubling up to T2 (RFC 3261 §17.1.2.2).
    E,
    /// Non-INVITE transaction timeout, 64*T1 (RFC 3261 §17.1.2.2).
    F,
    /// INVITE final response retransmit, T1 doubling up to T2 (RFC 3261 §17.2.1).
    G,
    /// Wait time for ACK receipt, 64*T1 (RFC 3261 §17.2.1).
    H,
    /// Wait time for ACK retransmits, T4 (RFC 3261 §17.2.1).
    I,
    /// Wait time for non-INVITE request retransmits, 64*T1 (RFC 3261 §17.2.2).
    J,
    /// Wait time for non-INVITE response retransmits, T4 (RFC 3261 §17.1.2.2).
    K,
    /// Wait time for 2xx retransmits in the Accepted state, 64*T1 (RFC 6026 §8.4).
    M,
}

impl Timer {
    const ALL: [Self; 11] = [
        Self::A,
        Self::B,
        Self::D,
        Self::E,
        Self::F,
        Self::G,
        Self::H,
        Self::I,
        Self::J,
        Self::K,
        Self::M,
    ];
}

/// One optional deadline per [`Timer`].
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct TimerTable {
    data: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// Arms (or re-arms) a timer.
    pub fn set(&mut self, timer: Timer, deadline: Instant) {
        // invariant: every `Timer` discriminant is below `Timer::ALL.len()`.
        self.data[timer as usize] = Some(deadline);
    }

    /// Disarms a timer.
    pub fn stop(&mut self, timer: Timer) {
        // invariant: every `Timer` discriminant is below `Timer::ALL.len()`.
        self.data[timer as usize] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.data = [None; Timer::ALL.len()];
    }

    /// A timer's deadline.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer as usize]
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest timer due at `now`.
    pub fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::ALL
            .into_iter()
            .filter(|&timer| self.get(timer).is_some_and(|deadline| deadline <= now))
            .min_by_key(|&timer| self.get(timer))?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn expires_earliest_first_and_only_when_due() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        table.set(Timer::B, t0 + Duration::from_secs(32));
        table.set(Timer::A, t0 + Duration::from_millis(500));
        assert_eq!(table.next_timeout(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(table.take_expired(t0), None);
        assert_eq!(
            table.take_expired(t0 + Duration::from_secs(40)),
            Some(Timer::A)
        );
        assert_eq!(
            table.take_expired(t0 + Duration::from_secs(40)),
            Some(Timer::B)
        );
        assert_eq!(table.take_expired(t0 + Duration::from_secs(40)), None);
        table.set(Timer::K, t0);
        table.stop_all();
        assert_eq!(table.next_timeout(), None);
    }
}
