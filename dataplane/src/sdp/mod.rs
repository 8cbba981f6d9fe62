//! SDP (RFC 4566) and offer/answer (RFC 3264), sans-IO.
//!
//! Outdial is always the offerer: [`build_offer`] writes the INVITE body, and [`negotiate`]
//! reads the 200 OK's answer into a [`Negotiated`] that configures the call's
//! [`MediaSession`](crate::rtp::MediaSession). The answerer's side ([`read_offer`],
//! [`build_answer`]) serves the simulated phones of `outdial bench callee`.
//!
//! The reader is written by hand rather than with `webrtc-sdp`: that crate rejects a whole
//! body for a missing `t=`, for a rejected `m=` line without `c=`, or for one malformed
//! attribute in an unrelated section, and its errors cannot tell "no `c=`" from other faults.
//! Offer/answer only needs `c=`, `m=`, `a=rtpmap` and `a=ptime`, so this reads those and
//! skips the rest.

mod answer;
mod negotiate;
mod offer;
mod origin;
mod parse;

pub use answer::{build_answer, build_answer_directed, read_offer};
pub use negotiate::{MediaDirection, Negotiated, negotiate, negotiate_keeping};
pub use offer::{PTIME_MS, TELEPHONE_EVENT_PAYLOAD_TYPE, build_offer};
pub use origin::{Origin, origin};

/// Why an SDP answer cannot set up the call's audio.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The body is empty or does not start with `v=0`.
    #[error(
        "the answer body is not SDP (it must start with v=0, RFC 4566 §5); \
         check the callee sends Content-Type application/sdp"
    )]
    NotSdp,
    /// A line that negotiation reads is structurally broken.
    #[error("SDP line {line} is malformed: {problem}; the callee's SDP must be fixed")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// No `m=audio` line at all.
    #[error("the answer has no m=audio line; the callee must accept the audio stream we offered")]
    NoAudio,
    /// Every `m=audio` line has port 0 (RFC 3264 §6).
    #[error(
        "the callee rejected our audio stream (m=audio port 0, RFC 3264 §6); \
         enable PCMU or PCMA on the callee"
    )]
    Rejected,
    /// The accepted audio stream is not plain RTP/AVP (e.g. SRTP).
    #[error(
        "the answer's audio uses transport {proto}, but Outdial offers only RTP/AVP; \
         allow unencrypted RTP/AVP on the callee"
    )]
    UnsupportedTransport {
        /// The `<proto>` field of the answer's `m=audio`.
        proto: String,
    },
    /// The answer's audio formats include neither PCMU nor PCMA.
    #[error(
        "the answer's audio formats [{formats}] include neither PCMU (0) nor PCMA (8); \
         enable G.711 on the callee"
    )]
    NoCommonCodec {
        /// The answer's `<fmt>` list, space-separated.
        formats: String,
    },
    /// Neither the audio section nor the session has a `c=` line (RFC 4566 §5.7).
    #[error(
        "the answer has no c= line for its audio stream, at media or session level; \
         the callee must say where to send RTP (RFC 4566 §5.7)"
    )]
    MissingConnection,
    /// The `c=` line in force cannot be used.
    #[error(
        "c= on SDP line {line} is unusable: {problem}; the callee must advertise \
         `c=IN IP4 <address>` or `c=IN IP6 <address>` with a numeric address"
    )]
    BadConnection {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
}
