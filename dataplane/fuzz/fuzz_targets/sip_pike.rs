//! The stranger rate limit (`sip::pike::Pike`) under arbitrary sources and time steps:
//! never a panic, the table never exceeds its capacity, and no source is allowed more than
//! `limit` requests inside one window. Each input pair of bytes is (source, time step):
//! the source is one of 16 addresses, the step 0-255 ms.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use outdial_dataplane::sip::pike::Pike;

const LIMIT: u32 = 3;
const WINDOW: Duration = Duration::from_millis(500);
const CAPACITY: usize = 8;

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let mut pike = Pike::new(LIMIT, WINDOW, CAPACITY);
    // Per source: times of allowed requests (a sliding check over the fixed windows).
    let mut allowed: HashMap<IpAddr, Vec<Instant>> = HashMap::new();
    for pair in data.chunks_exact(2) {
        now += Duration::from_millis(u64::from(pair[1]));
        let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, pair[0] & 0x0f));
        if pike.allow(now, ip) {
            let times = allowed.entry(ip).or_default();
            times.push(now);
            // Windows are fixed, not sliding: at most `limit` in any window means at most
            // 2 * limit in any span of one window length.
            let recent = times
                .iter()
                .filter(|&&t| now.saturating_duration_since(t) < WINDOW)
                .count();
            assert!(recent <= 2 * LIMIT as usize, "{recent} allowed within one window");
        }
        assert!(pike.tracked() <= CAPACITY);
    }
});
