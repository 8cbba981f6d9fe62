//! RTP (RFC 3550) media sessions, RFC 4733 telephone-events and G.711, sans-IO.
//!
//! [`MediaSession`] is a call's media: it paces a continuous G.711 stream (queued prompts,
//! else silence) and turns received telephone-events, or in-band tones when no event
//! payload type was negotiated, into DTMF keys with barge-in, and records received audio
//! for `<record>` ([`record`]). It reads no clock and opens
//! no socket: the core feeds it datagrams and `now`, and sends what it hands back.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use outdial_dataplane::api::Codec;
//! use outdial_dataplane::rtp::{MAX_PACKET_LEN, MediaConfig, MediaEvent, MediaSession, SourcePolicy};
//!
//! let t0 = Instant::now();
//! let config = MediaConfig {
//!     ssrc: 1,
//!     initial_seq: 2,
//!     initial_timestamp: 3,
//!     codec: Codec::Pcmu,
//!     remote: "192.0.2.1:4000".parse().unwrap(),
//!     dtmf_payload_type: Some(101),
//!     source: SourcePolicy::Sdp,
//! };
//! let mut media = MediaSession::new(config, t0);
//! media.play(t0, 7, vec![0i16; 160].into(), true);
//! let mut buf = [0u8; MAX_PACKET_LEN];
//! let mut now = t0;
//! for _ in 0..2 {
//!     media.handle_timeout(now);
//!     while let Some((to, len)) = media.poll_transmit(&mut buf) {
//!         // socket.send_to(&buf[..len], to)
//!         assert_eq!((to.port(), len), (4000, 172));
//!     }
//!     now = media.poll_timeout().unwrap();
//! }
//! assert_eq!(now, t0 + Duration::from_millis(40));
//! assert_eq!(media.poll_event(), Some(MediaEvent::PlaybackDone { id: 7, interrupted: false, played: 160 }));
//! ```

pub mod amd;
pub mod dtmf;
pub mod encoded;
pub mod g711;
pub mod inband;
pub mod listen;
pub mod packet;
pub mod record;
mod reporter;
pub mod rtcp;
pub mod rx_stats;
mod session;
pub mod source;

pub use dtmf::{DtmfReceiver, TelephoneEvent, parse_telephone_event};
pub use encoded::EncodedCache;
pub use listen::{Heard, ListenParams, Listener, Utterance};
pub use record::{RecordEnd, RecordParams, Recorded, Recorder};
pub use reporter::{MIN_INTERVAL as RTCP_MIN_INTERVAL, RtcpConfig};
pub use session::{
    MAX_CATCH_UP, MAX_PACKET_LEN, MediaConfig, MediaEvent, MediaSession, MediaStats,
    PACKET_INTERVAL, SAMPLES_PER_PACKET,
};
pub use source::SourcePolicy;
