//! `outdial bench sip`: raw SIP UAC load (INVITE, ACK, BYE, optional RTP), like SIPp's
//! built-in `uac` scenario, at a call rate and/or a concurrency, for a count or a duration.
//!
//! Every call is placed by the dataplane's own sans-IO SIP [`Endpoint`] (the user agent
//! Outdial's cores run), with an optional `MediaSession` sending paced G.711 silence; this
//! driver runs them on the dataplane's core loop and measures setup latency (INVITE sent to
//! 200 received) and outcomes. A call counts as `completed` once the callee answered our
//! BYE with 2xx, as SIPp counts a successful call.

pub mod report;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use outdial_dataplane::api::{CallId, Disposition};
use outdial_dataplane::core::{Driver, Io, SocketId};
use outdial_dataplane::rtp::{MAX_PACKET_LEN, MediaConfig, MediaSession, SourcePolicy};
use outdial_dataplane::sdp::{self, build_offer};
use outdial_dataplane::sip::message::{Message, Method};
use outdial_dataplane::sip::{BorderConfig, DialParams, Endpoint, SipConfig, SipEvent};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use self::report::Summary;

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Request-URI of every INVITE, e.g. `sip:service@127.0.0.1:5070`.
    pub target: String,
    /// Where our SIP socket binds (port 0: any).
    pub local: SocketAddr,
    /// From URI.
    pub from: String,
    /// New calls per second (`None`: as fast as the concurrency allows).
    pub rate: Option<f64>,
    /// Calls at once at most (`None`: no limit).
    pub concurrency: Option<usize>,
    /// Calls to place in all.
    pub calls: Option<u64>,
    /// How long to place calls.
    pub duration: Option<Duration>,
    /// Time from the answer to our BYE.
    pub hold: Duration,
    /// Ring time before CANCEL.
    pub ring_timeout: Duration,
    /// Send (and count received) RTP on answered calls, one port per call.
    pub media: bool,
    /// Progress line interval.
    pub progress: Option<Duration>,
    /// Seed of tags, branches, Call-IDs, SSRCs.
    pub seed: u64,
}

/// Most calls dialled in one loop turn (a late turn catches up over several).
const MAX_DIALS_PER_TURN: u32 = 256;
/// After the last call ended, how long to wait for BYE answers still in flight.
const DRAIN: Duration = Duration::from_secs(5);
/// The loop wakes at least this often (stop requests, progress).
const TICK: Duration = Duration::from_millis(200);

struct LiveCall {
    dialed_at: Instant,
    answered: bool,
    rtp: Option<SocketId>,
    media: Option<MediaSession>,
    armed: Option<Instant>,
}

/// The driver of a run.
pub struct SipLoad {
    config: LoadConfig,
    rng: SmallRng,
    sip: Option<(SocketId, SocketAddr)>,
    endpoint: Option<Endpoint>,
    /// Where the RTP of calls without media goes (one socket, read and counted).
    sink: Option<(SocketId, SocketAddr)>,
    calls: HashMap<CallId, LiveCall>,
    by_socket: HashMap<SocketId, CallId>,
    media_timers: BinaryHeap<Reverse<(Instant, CallId)>>,
    next_id: u64,
    next_dial: Option<Instant>,
    started: Option<Instant>,
    dialing_stopped: Option<Instant>,
    finished_at: Option<Instant>,
    next_progress: Option<Instant>,
    tick: Option<Instant>,
    stop: Arc<AtomicBool>,
    summary: Summary,
    sip_buf: Vec<u8>,
    rtp_buf: Box<[u8; MAX_PACKET_LEN]>,
    done: bool,
}

impl SipLoad {
    /// A run; `stop` ends it early (calls in progress are hung up and drained).
    pub fn new(config: LoadConfig, stop: Arc<AtomicBool>) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(config.seed),
            config,
            sip: None,
            endpoint: None,
            sink: None,
            calls: HashMap::new(),
            by_socket: HashMap::new(),
            media_timers: BinaryHeap::new(),
            next_id: 0,
            next_dial: None,
            started: None,
            dialing_stopped: None,
            finished_at: None,
            next_progress: None,
            tick: None,
            stop,
            summary: Summary::new(),
            sip_buf: Vec::with_capacity(4096),
            rtp_buf: Box::new([0; MAX_PACKET_LEN]),
            done: false,
        }
    }

    /// What was counted.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// From the first INVITE to the end of the run.
    pub fn elapsed(&self) -> Duration {
        match (self.started, self.finished_at) {
            (Some(start), Some(end)) => end.saturating_duration_since(start),
            _ => Duration::ZERO,
        }
    }

    fn may_dial(&self) -> bool {
        self.dialing_stopped.is_none()
            && self
                .config
                .concurrency
                .is_none_or(|limit| self.calls.len() < limit)
    }

    fn dial_due(&mut self, io: &mut impl Io, now: Instant) {
        for _ in 0..MAX_DIALS_PER_TURN {
            if !self.may_dial() {
                return;
            }
            if let Some(rate) = self.config.rate {
                let next = *self.next_dial.get_or_insert(now);
                if next > now {
                    return;
                }
                self.next_dial = Some(next + Duration::from_secs_f64(1.0 / rate));
            }
            self.dial(io, now);
            if self
                .config
                .calls
                .is_some_and(|calls| self.summary.dialed() >= calls)
            {
                self.dialing_stopped = Some(now);
                return;
            }
        }
    }

    fn dial(&mut self, io: &mut impl Io, now: Instant) {
        let Some((_, sip_addr)) = self.sip else {
            return;
        };
        let ip = sip_addr.ip();
        let rtp = if self.config.media {
            match io.bind(SocketAddr::new(ip, 0)) {
                Ok(bound) => Some(bound),
                Err(_) => {
                    self.summary.local_failure();
                    return;
                }
            }
        } else {
            None
        };
        let rtp_port = rtp.or(self.sink).map_or(9, |(_, addr)| addr.port());
        let offer = build_offer(self.rng.random(), 1, ip, rtp_port);
        let id = CallId(self.next_id);
        self.next_id += 1;
        let params = DialParams {
            target: &self.config.target,
            destination: None,
            from: &self.config.from,
            sdp_offer: &offer,
            ring_timeout: self.config.ring_timeout,
            max_duration: self.config.hold,
            credentials: None,
            asserted_identity: None,
            privacy: None,
            no_response_timeout: None,
            transport: outdial_dataplane::sip::Transport::Udp,
        };
        let Some(endpoint) = self.endpoint.as_mut() else {
            return;
        };
        if endpoint.dial(now, id, &params).is_err() {
            if let Some((socket, _)) = rtp {
                io.close(socket);
            }
            self.summary.local_failure();
            return;
        }
        self.summary.dialed_one();
        if let Some((socket, _)) = rtp {
            self.by_socket.insert(socket, id);
        }
        self.calls.insert(
            id,
            LiveCall {
                dialed_at: now,
                answered: false,
                rtp: rtp.map(|(socket, _)| socket),
                media: None,
                armed: None,
            },
        );
    }

    fn drain_sip(&mut self, io: &mut impl Io, now: Instant) {
        let (Some(endpoint), Some((sip, _))) = (self.endpoint.as_mut(), self.sip) else {
            return;
        };
        while let Some(to) = endpoint.poll_transmit(&mut self.sip_buf) {
            io.send(sip, to, &self.sip_buf);
        }
        while let Some(event) = self.endpoint.as_mut().and_then(Endpoint::poll_event) {
            self.on_event(io, now, event);
        }
    }

    fn on_event(&mut self, io: &mut impl Io, now: Instant, event: SipEvent) {
        match event {
            // No inbound sources are configured: the load generator takes no calls.
            SipEvent::Incoming { .. } => {}
            // The load generator sends no media and takes no new offers.
            SipEvent::Reoffer { call, .. } => {
                if let Some(endpoint) = self.endpoint.as_mut() {
                    endpoint.answer_reoffer(now, call, Err(488));
                }
            }
            SipEvent::Ringing { call } => {
                if let Some(live) = self.calls.get(&call) {
                    self.summary
                        .ringing(now.saturating_duration_since(live.dialed_at));
                }
            }
            SipEvent::Answered {
                call, sdp: answer, ..
            } => {
                let Some(live) = self.calls.get_mut(&call) else {
                    return;
                };
                live.answered = true;
                self.summary
                    .answered(now.saturating_duration_since(live.dialed_at));
                if live.rtp.is_some()
                    && let Ok(negotiated) = sdp::negotiate(&answer)
                {
                    live.media = Some(MediaSession::new(
                        MediaConfig {
                            ssrc: self.rng.random(),
                            initial_seq: self.rng.random(),
                            initial_timestamp: self.rng.random(),
                            codec: negotiated.codec,
                            remote: negotiated.remote_rtp,
                            dtmf_payload_type: negotiated.dtmf_payload_type,
                            source: SourcePolicy::Sdp,
                        },
                        now,
                    ));
                    self.drain_media(io, call);
                }
            }
            SipEvent::Ended { call, outcome } => {
                if let Some(live) = self.calls.remove(&call) {
                    if let Some(socket) = live.rtp {
                        io.close(socket);
                        self.by_socket.remove(&socket);
                    }
                    if let Some(media) = &live.media {
                        self.summary.media(media.stats());
                    }
                    let answered = live.answered && outcome.disposition == Disposition::Completed;
                    self.summary.ended(&outcome, answered);
                }
            }
            // The load generator's media starts at the answer.
            SipEvent::EarlyMedia { .. }
            | SipEvent::TransferDone { .. }
            | SipEvent::Registration { .. } => {}
        }
    }

    fn drain_media(&mut self, io: &mut impl Io, call: CallId) {
        let Some(live) = self.calls.get_mut(&call) else {
            return;
        };
        let (Some(media), Some(socket)) = (live.media.as_mut(), live.rtp) else {
            return;
        };
        while let Some((to, len)) = media.poll_transmit(&mut self.rtp_buf[..]) {
            if let Some(packet) = self.rtp_buf.get(..len) {
                io.send(socket, to, packet);
            }
        }
        while media.poll_event().is_some() {}
        let deadline = media.poll_timeout();
        if deadline != live.armed {
            live.armed = deadline;
            if let Some(deadline) = deadline {
                self.media_timers.push(Reverse((deadline, call)));
            }
        }
    }

    /// Counts the 2xx answers to our BYEs (the endpoint ends a call when it sends BYE).
    fn watch_response(&mut self, data: &[u8]) {
        // Only a 2xx can count: skip the second parse for everything else.
        if !data.starts_with(b"SIP/2.0 2") {
            return;
        }
        if let Ok(message) = Message::parse(data)
            && message.status().is_some_and(|s| (200..300).contains(&s))
            && message.cseq().is_some_and(|c| c.method == Method::Bye)
        {
            self.summary.bye_answered();
        }
    }

    fn check_end(&mut self, io: &mut impl Io, now: Instant) {
        let stop = self.stop.load(Ordering::Relaxed)
            || self
                .config
                .duration
                .zip(self.started)
                .is_some_and(|(d, start)| now >= start + d);
        if stop && self.dialing_stopped.is_none() {
            self.dialing_stopped = Some(now);
        }
        if stop && let Some(endpoint) = self.endpoint.as_mut() {
            // Hang up what is still up; the loop drains the BYEs and CANCELs.
            let live: Vec<CallId> = self.calls.keys().copied().collect();
            for call in live {
                endpoint.hangup(now, call);
            }
            self.drain_sip(io, now);
        }
        let Some(stopped) = self.dialing_stopped else {
            return;
        };
        if self.calls.is_empty() {
            let ended_at = *self.finished_at.get_or_insert(now);
            let byes_done = self.summary.byes_answered() >= self.summary.answered_count();
            if byes_done || now >= ended_at.max(stopped) + DRAIN {
                self.done = true;
            }
        }
    }

    fn progress(&mut self, now: Instant) {
        let (Some(interval), Some(start)) = (self.config.progress, self.started) else {
            return;
        };
        if self.next_progress.is_some_and(|at| at > now) {
            return;
        }
        self.next_progress = Some(now + interval);
        eprintln!(
            "{}",
            self.summary
                .progress_line(now.saturating_duration_since(start), self.calls.len())
        );
    }
}

impl Driver for SipLoad {
    fn start(&mut self, io: &mut impl Io, now: Instant) -> std::io::Result<()> {
        let (socket, bound) = io.bind(self.config.local)?;
        // A wildcard bind cannot go in Via and Contact: use loopback of its family.
        let public = if bound.ip().is_unspecified() {
            let ip: IpAddr = if bound.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(ip, bound.port())
        } else {
            bound
        };
        self.sip = Some((socket, public));
        if !self.config.media {
            self.sink = Some(io.bind(SocketAddr::new(public.ip(), 0))?);
        }
        self.endpoint = Some(Endpoint::new(
            SipConfig {
                local: public,
                t1: Duration::from_millis(500),
                t2: Duration::from_secs(4),
                t4: Duration::from_secs(5),
                user_agent: format!("outdial-bench/{}", env!("CARGO_PKG_VERSION")),
                border: BorderConfig::default(),
                inbound_sources: Vec::new(),
                core: 0,
                max_calls: usize::MAX,
                session_expires: None,
                udp_mtu_switch: outdial_dataplane::sip::endpoint::UDP_MTU_SWITCH,
            },
            self.config.seed,
        ));
        self.started = Some(now);
        self.tick = Some(now);
        Ok(())
    }

    fn handle_datagram(
        &mut self,
        io: &mut impl Io,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        data: &[u8],
    ) {
        if self.sip.is_some_and(|(sip, _)| sip == socket) {
            self.watch_response(data);
            if let Some(endpoint) = self.endpoint.as_mut() {
                endpoint.handle_datagram(now, from, data);
            }
            self.drain_sip(io, now);
            // A call that ended frees a place at once under a concurrency limit.
            if self.config.rate.is_none() {
                self.dial_due(io, now);
                self.drain_sip(io, now);
            }
        } else if self.sink.is_some_and(|(sink, _)| sink == socket) {
            self.summary.sink_packet();
        } else if let Some(&call) = self.by_socket.get(&socket) {
            if let Some(media) = self.calls.get_mut(&call).and_then(|c| c.media.as_mut()) {
                media.handle_datagram(now, from, data);
            }
            self.drain_media(io, call);
        }
    }

    fn handle_timeout(&mut self, io: &mut impl Io, now: Instant) {
        if let Some(endpoint) = self.endpoint.as_mut() {
            endpoint.handle_timeout(now);
        }
        self.drain_sip(io, now);
        while let Some(&Reverse((deadline, call))) = self.media_timers.peek() {
            if deadline > now {
                break;
            }
            self.media_timers.pop();
            let Some(live) = self.calls.get_mut(&call) else {
                continue;
            };
            if live.armed != Some(deadline) {
                continue;
            }
            live.armed = None;
            if let Some(media) = live.media.as_mut() {
                media.handle_timeout(now);
            }
            self.drain_media(io, call);
        }
        self.dial_due(io, now);
        self.drain_sip(io, now);
        self.check_end(io, now);
        self.progress(now);
        self.tick = Some(now + TICK);
    }

    fn handle_wake(&mut self, io: &mut impl Io, now: Instant) {
        self.check_end(io, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let sip = self.endpoint.as_ref().and_then(Endpoint::poll_timeout);
        let media = self.media_timers.peek().map(|Reverse((d, _))| *d);
        let dial = if self.may_dial() {
            // With no rate the concurrency refills at once; the tick paces the check.
            self.next_dial.or(self.tick)
        } else {
            None
        };
        [sip, media, dial, self.tick].into_iter().flatten().min()
    }

    fn should_stop(&self) -> bool {
        self.done
    }
}
