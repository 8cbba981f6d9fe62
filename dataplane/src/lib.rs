//! Outdial's telephony dataplane.
//!
//! Protocol logic is sans-IO: [`sip`], [`sdp`] and [`rtp`] are state machines fed bytes,
//! events and the current time, handing back datagrams, timer deadlines and events. They
//! never read a clock, open a socket or spawn a thread. [`core`] is the only I/O: one loop
//! per CPU core, pinned, on io_uring (epoll fallback), driving those machines.
//!
//! Control talks to the cores through [`api::Command`] and [`api::Event`] over bounded
//! lock-free queues.
//!
//! Panic policy: a panic is a bug, never a response to input. Any `unwrap` or `expect`
//! carries an `// invariant:` comment saying why it cannot fail.

pub mod agent;
pub mod api;
pub mod core;
pub mod icmp;
pub mod rtp;
pub mod runtime;
pub mod sdp;
pub mod sip;
