//! `outdial bench callee`: a population of simulated phones on one SIP port.
//!
//! Each call is a sans-IO [`phone::Phone`]; [`Population`] is the dataplane core loop's
//! [`Driver`]: it owns the SIP socket and one RTP socket per answered call, routes SIP by
//! Call-ID and RTP by socket, and keeps the phones' deadlines in one heap. The loop is the
//! dataplane's own (`outdial_dataplane::core::run`: io_uring with multishot receive and
//! batched sends, epoll fallback), so the simulator runs on the same I/O path it measures,
//! with no allocation per packet.
//!
//! SIP digest challenges are not simulated yet (the dataplane is gaining digest auth
//! elsewhere; a `--challenge` share belongs here once it has).

pub mod challenge;
pub mod media;
pub mod phone;
pub mod report;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use outdial_dataplane::core::{Driver, Io, SocketId};
use outdial_dataplane::sip::endpoint::{
    MAX_MESSAGE_BYTES, STRANGER_LIMIT, STRANGER_SOURCES, STRANGER_WINDOW,
};
use outdial_dataplane::sip::message::print::reason_phrase;
use outdial_dataplane::sip::message::{Message, Method, Recovered};
use outdial_dataplane::sip::pike::Pike;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use self::media::MAX_RTP;
use self::phone::{Behaviour, Phone, PhoneIds, PhoneSettings, Plan};
use self::report::Summary;
use crate::spec::{DtmfSpec, DtmfTiming, Span};

/// Relative weights of what phones do with a call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shares {
    /// Answer.
    pub answer: f64,
    /// 486 Busy Here.
    pub busy: f64,
    /// Ring without answering.
    pub no_answer: f64,
    /// 603 Decline after ringing.
    pub reject: f64,
    /// Of answered calls, the fraction answered by a machine.
    pub machine: f64,
}

/// A population's settings.
#[derive(Clone, Debug)]
pub struct PopulationConfig {
    /// SIP address to listen on.
    pub listen: SocketAddr,
    /// Phone behaviour shared by all calls.
    pub phone: Arc<PhoneSettings>,
    /// Ring time per call.
    pub ring: Span,
    /// Talk time per answered call (`None`: wait for the caller's BYE).
    pub talk: Option<Span>,
    /// Answering machine greeting length.
    pub greeting: Span,
    /// What happens with calls.
    pub shares: Shares,
    /// Keys pressed.
    pub dtmf: DtmfSpec,
    /// When keys are pressed.
    pub dtmf_timing: DtmfTiming,
    /// Seed of every random draw.
    pub seed: u64,
    /// Stop after this many calls ended.
    pub calls: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Calls at once; more are answered 503.
    pub max_concurrent: usize,
    /// Progress line interval (`None`: no progress line).
    pub progress: Option<Duration>,
    /// Digest credentials a new INVITE must carry (`None`: every INVITE is taken).
    pub challenge: Option<challenge::DigestGate>,
}

/// One call's phone and its sockets.
struct Slot {
    phone: Phone,
    rtp: Option<SocketId>,
    /// The deadline this slot has in the heap.
    armed: Option<Instant>,
}

/// The driver of the population.
pub struct Population {
    config: PopulationConfig,
    rng: SmallRng,
    sip: Option<SocketId>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_call_id: HashMap<String, usize>,
    by_socket: HashMap<SocketId, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    live: usize,
    sip_buf: Vec<u8>,
    rtp_buf: Box<[u8; MAX_RTP]>,
    pike: Pike,
    summary: Summary,
    report: Option<BufWriter<Box<dyn Write + Send>>>,
    report_error: Option<std::io::Error>,
    stop: Arc<AtomicBool>,
    started: Option<Instant>,
    finished_at: Option<Instant>,
    next_progress: Option<Instant>,
    /// The latest time the loop may sleep to (so a stop request is seen).
    tick: Option<Instant>,
    refused: u64,
    done: bool,
}

impl Population {
    /// A population; `report` receives a JSON line per ended call; `stop` ends the run.
    pub fn new(
        config: PopulationConfig,
        report: Option<Box<dyn Write + Send>>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(config.seed),
            config,
            sip: None,
            slots: Vec::new(),
            free: Vec::new(),
            by_call_id: HashMap::new(),
            by_socket: HashMap::new(),
            timers: BinaryHeap::new(),
            live: 0,
            sip_buf: Vec::with_capacity(4096),
            rtp_buf: Box::new([0; MAX_RTP]),
            pike: Pike::new(STRANGER_LIMIT, STRANGER_WINDOW, STRANGER_SOURCES),
            summary: Summary::new(),
            report: report.map(BufWriter::new),
            report_error: None,
            stop,
            started: None,
            finished_at: None,
            next_progress: None,
            tick: None,
            refused: 0,
            done: false,
        }
    }

    /// What was counted.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Seconds from start to the end of the run.
    pub fn elapsed(&self) -> Duration {
        match (self.started, self.finished_at) {
            (Some(start), Some(end)) => end.saturating_duration_since(start),
            _ => Duration::ZERO,
        }
    }

    /// Flushes the per-call report; the first write error, if any.
    pub fn finish_report(&mut self) -> std::io::Result<()> {
        if let Some(error) = self.report_error.take() {
            return Err(error);
        }
        match self.report.as_mut() {
            Some(report) => report.flush(),
            None => Ok(()),
        }
    }

    /// Draws what a phone does with a call to `user`.
    pub fn draw_plan(&mut self, user: &str) -> Plan {
        let shares = self.config.shares;
        let total = shares.answer + shares.busy + shares.no_answer + shares.reject;
        let pick = self.rng.random::<f64>() * total;
        let behaviour = if pick < shares.answer {
            if self.rng.random::<f64>() < shares.machine {
                Behaviour::Machine
            } else {
                Behaviour::Answer
            }
        } else if pick < shares.answer + shares.busy {
            Behaviour::Busy
        } else if pick < shares.answer + shares.busy + shares.no_answer {
            Behaviour::NoAnswer
        } else {
            Behaviour::Reject
        };
        Plan {
            behaviour,
            ring: self.config.ring.draw(&mut self.rng),
            talk: self.config.talk.map(|talk| talk.draw(&mut self.rng)),
            greeting: self.config.greeting.draw(&mut self.rng),
            keys: self.config.dtmf.keys_for(user, &self.config.dtmf_timing),
        }
    }

    fn ids(&mut self) -> PhoneIds {
        PhoneIds {
            tag: self.rng.random(),
            branch: self.rng.random(),
            ssrc: self.rng.random(),
            seq: self.rng.random(),
            timestamp: self.rng.random(),
        }
    }

    fn on_sip(&mut self, io: &mut impl Io, now: Instant, from: SocketAddr, data: &[u8]) {
        if data.len() > MAX_MESSAGE_BYTES {
            return;
        }
        let message = match Message::parse(data) {
            Ok(message) => message,
            Err(error) => {
                if let Some(recovered) = Recovered::scan(data)
                    && self.pike.allow(now, from.ip())
                {
                    self.stateless(io, from, &recovered, error.status());
                }
                return;
            }
        };
        if message.status().is_none()
            && let Err(error) = message.check_request()
        {
            if message.method() != Some(Method::Ack)
                && let Some(recovered) = Recovered::from_message(&message)
                && self.pike.allow(now, from.ip())
            {
                self.stateless(io, from, &recovered, error.status());
            }
            return;
        }
        let index = message
            .call_id()
            .and_then(|call_id| self.by_call_id.get(call_id))
            .copied();
        if let Some(index) = index {
            if let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) {
                slot.phone.handle_sip(now, from, &message);
            }
            self.drain(io, now, index);
            return;
        }
        let new_invite = message.method() == Some(Method::Invite)
            && message.to().and_then(|to| to.tag()).is_none();
        if new_invite {
            let refusal = match &self.config.challenge {
                None => None,
                Some(gate) => match gate.check(&message) {
                    challenge::Verdict::Pass => None,
                    challenge::Verdict::Challenge(header) => Some((false, header)),
                    challenge::Verdict::Refuse(header) => Some((true, header)),
                },
            };
            match refusal {
                None => self.new_call(io, now, from, &message),
                Some((wrong, header)) => {
                    self.summary.add_challenge(wrong);
                    if let Some(recovered) = Recovered::from_message(&message) {
                        let extra = Some(("WWW-Authenticate", header.as_str()));
                        self.stateless_with(io, from, &recovered, 401, extra);
                    }
                }
            }
            return;
        }
        // A request for no call we know (responses and ACKs are dropped).
        if let Some(method) = message.method()
            && method != Method::Ack
            && let Some(recovered) = Recovered::from_message(&message)
            && self.pike.allow(now, from.ip())
        {
            self.stateless(io, from, &recovered, 481);
        }
    }

    fn new_call(&mut self, io: &mut impl Io, now: Instant, from: SocketAddr, invite: &Message<'_>) {
        if self.live >= self.config.max_concurrent || self.done {
            self.refuse(io, from, invite);
            return;
        }
        let user = invite
            .request_uri()
            .and_then(|uri| uri.sip())
            .and_then(|sip| sip.user)
            .unwrap_or_default();
        let plan = self.draw_plan(user);
        let rtp = if matches!(plan.behaviour, Behaviour::Answer | Behaviour::Machine) {
            match io.bind(SocketAddr::new(self.config.listen.ip(), 0)) {
                Ok(bound) => Some(bound),
                Err(_) => {
                    self.refuse(io, from, invite);
                    return;
                }
            }
        } else {
            None
        };
        let ids = self.ids();
        let phone = Phone::new(
            now,
            Arc::clone(&self.config.phone),
            plan,
            ids,
            invite,
            from,
            rtp.map(|(_, addr)| addr),
        );
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        self.by_call_id.insert(phone.call_id().to_owned(), index);
        if let Some((socket, _)) = rtp {
            self.by_socket.insert(socket, index);
        }
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(Slot {
                phone,
                rtp: rtp.map(|(socket, _)| socket),
                armed: None,
            });
        }
        self.live += 1;
        self.drain(io, now, index);
    }

    /// Sends what a phone has to send, records its end, re-arms its deadline, and frees it
    /// when finished.
    fn drain(&mut self, io: &mut impl Io, now: Instant, index: usize) {
        let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if let Some(sip) = self.sip {
            while let Some(to) = slot.phone.poll_sip(&mut self.sip_buf) {
                io.send(sip, to, &self.sip_buf);
            }
        }
        if let Some(rtp) = slot.rtp {
            while let Some((to, len)) = slot.phone.poll_rtp(&mut self.rtp_buf[..]) {
                if let Some(packet) = self.rtp_buf.get(..len) {
                    io.send(rtp, to, packet);
                }
            }
        }
        if let Some(record) = slot.phone.take_record() {
            if let Some(socket) = slot.rtp.take() {
                io.close(socket);
                self.by_socket.remove(&socket);
            }
            self.live = self.live.saturating_sub(1);
            self.summary.add(&record);
            if let Some(report) = self.report.as_mut()
                && self.report_error.is_none()
            {
                let written = serde_json::to_writer(&mut *report, &record)
                    .map_err(std::io::Error::from)
                    .and_then(|()| report.write_all(b"\n"));
                if let Err(error) = written {
                    self.report_error = Some(error);
                }
            }
            if self
                .config
                .calls
                .is_some_and(|calls| self.summary.ended() >= calls)
            {
                self.done = true;
                self.finished_at.get_or_insert(now);
            }
        }
        let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if slot.phone.is_finished() {
            let call_id = slot.phone.call_id().to_owned();
            self.by_call_id.remove(&call_id);
            if let Some(socket) = slot.rtp.take() {
                io.close(socket);
                self.by_socket.remove(&socket);
            }
            if let Some(entry) = self.slots.get_mut(index) {
                *entry = None;
            }
            self.free.push(index);
            return;
        }
        let deadline = slot.phone.poll_timeout();
        if deadline != slot.armed {
            slot.armed = deadline;
            if let Some(deadline) = deadline {
                self.timers.push(Reverse((deadline, index)));
            }
        }
    }

    /// 503 for a call the population cannot take (at its cap, stopping, or out of sockets).
    fn refuse(&mut self, io: &mut impl Io, from: SocketAddr, invite: &Message<'_>) {
        self.refused += 1;
        if let Some(recovered) = Recovered::from_message(invite) {
            self.stateless(io, from, &recovered, 503);
        }
    }

    fn stateless(
        &mut self,
        io: &mut impl Io,
        to: SocketAddr,
        recovered: &Recovered<'_>,
        status: u16,
    ) {
        self.stateless_with(io, to, recovered, status, None);
    }

    /// A response sent without a transaction, with one extra header if given.
    fn stateless_with(
        &mut self,
        io: &mut impl Io,
        to: SocketAddr,
        recovered: &Recovered<'_>,
        status: u16,
        extra: Option<(&str, &str)>,
    ) {
        let Some(sip) = self.sip else {
            return;
        };
        let tag = format!("{:016x}", self.rng.random::<u64>());
        self.sip_buf.clear();
        let mut writer = recovered.response(&mut self.sip_buf, status, reason_phrase(status), &tag);
        writer.header("Server", &self.config.phone.user_agent);
        if let Some((name, value)) = extra {
            writer.header(name, value);
        }
        writer.finish(None, b"");
        io.send(sip, to, &self.sip_buf);
    }

    fn progress(&mut self, now: Instant) {
        let (Some(interval), Some(start)) = (self.config.progress, self.started) else {
            return;
        };
        if self.next_progress.is_some_and(|at| at > now) {
            return;
        }
        self.next_progress = Some(now + interval);
        let outcomes: Vec<String> = self
            .summary
            .outcomes()
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        eprintln!(
            "callee {:>6.1} s: {} live, {} ended ({}), {} refused, {} rtp packets received",
            now.saturating_duration_since(start).as_secs_f64(),
            self.live,
            self.summary.ended(),
            outcomes.join(", "),
            self.refused,
            self.summary.rx_packets(),
        );
    }

    fn check_end(&mut self, now: Instant) {
        if self.stop.load(Ordering::Relaxed)
            || self
                .config
                .duration
                .zip(self.started)
                .is_some_and(|(duration, start)| now >= start + duration)
        {
            self.done = true;
            self.finished_at.get_or_insert(now);
        }
    }
}

/// How often the loop wakes at least, to notice a stop request.
const TICK: Duration = Duration::from_millis(200);

impl Driver for Population {
    fn start(&mut self, io: &mut impl Io, now: Instant) -> std::io::Result<()> {
        let (socket, bound) = io.bind(self.config.listen)?;
        // Standard error, so scripts and tests can wait for it (the report is on stdout).
        eprintln!("callee listening on udp:{bound}");
        self.sip = Some(socket);
        self.started = Some(now);
        self.tick = Some(now + TICK);
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
        if Some(socket) == self.sip {
            self.on_sip(io, now, from, data);
        } else if let Some(&index) = self.by_socket.get(&socket) {
            if let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) {
                slot.phone.handle_rtp(now, from, data);
            }
            self.drain(io, now, index);
        }
    }

    fn handle_timeout(&mut self, io: &mut impl Io, now: Instant) {
        while let Some(&Reverse((deadline, index))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slots.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            if slot.armed != Some(deadline) {
                continue;
            }
            slot.armed = None;
            slot.phone.handle_timeout(now);
            self.drain(io, now, index);
        }
        self.check_end(now);
        self.progress(now);
        self.tick = Some(now + TICK);
    }

    fn handle_wake(&mut self, _io: &mut impl Io, now: Instant) {
        self.check_end(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let phones = self.timers.peek().map(|Reverse((deadline, _))| *deadline);
        [phones, self.tick].into_iter().flatten().min()
    }

    fn should_stop(&self) -> bool {
        self.done || self.stop.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callee::media::Sound;
    use crate::sounds::Sounds;
    use outdial_dataplane::sip::transaction::Timing;

    fn population(seed: u64, shares: Shares) -> Population {
        let config = PopulationConfig {
            listen: "127.0.0.1:5090".parse().unwrap(),
            phone: Arc::new(PhoneSettings {
                local_sip: "127.0.0.1:5090".parse().unwrap(),
                timing: Timing::default(),
                sound: Sound::Echo,
                sounds: Arc::new(Sounds::new(None).unwrap()),
                key_duration: Duration::from_millis(100),
                keys_after_prompt: None,
                max_call: Duration::from_secs(60),
                no_answer_timeout: Duration::from_secs(60),
                user_agent: "t".into(),
            }),
            ring: "1..3".parse().unwrap(),
            talk: None,
            greeting: "4..8".parse().unwrap(),
            shares,
            dtmf: DtmfSpec::FromUri,
            dtmf_timing: DtmfTiming {
                delay: Duration::from_secs(1),
                gap: Duration::from_millis(300),
                duration: Duration::from_millis(100),
            },
            seed,
            calls: None,
            duration: None,
            max_concurrent: 10,
            progress: None,
            challenge: None,
        };
        Population::new(config, None, Arc::new(AtomicBool::new(false)))
    }

    const SHARES: Shares = Shares {
        answer: 5.0,
        busy: 2.0,
        no_answer: 2.0,
        reject: 1.0,
        machine: 0.2,
    };

    #[test]
    fn a_seeded_population_draws_the_shares_and_repeats_itself() {
        let mut counts: HashMap<&str, u32> = HashMap::new();
        let mut draws = population(42, SHARES);
        let mut again = population(42, SHARES);
        let mut other = population(43, SHARES);
        let mut differs = false;
        for _ in 0..20_000 {
            let plan = draws.draw_plan("press-1");
            let name = match plan.behaviour {
                Behaviour::Answer => "answer",
                Behaviour::Machine => "machine",
                Behaviour::Busy => "busy",
                Behaviour::NoAnswer => "no-answer",
                Behaviour::Reject => "reject",
            };
            *counts.entry(name).or_default() += 1;
            assert!((Duration::from_secs(1)..=Duration::from_secs(3)).contains(&plan.ring));
            assert_eq!(plan.keys.iter().map(|k| k.1).collect::<String>(), "1#");
            let repeat = again.draw_plan("press-1");
            assert_eq!((repeat.behaviour, repeat.ring), (plan.behaviour, plan.ring));
            differs |= other.draw_plan("press-1").ring != plan.ring;
        }
        assert!(differs, "another seed draws another population");
        let share = |name| f64::from(counts.get(name).copied().unwrap_or(0)) / 20_000.0;
        for (name, expected) in [
            ("answer", 0.4),
            ("machine", 0.1),
            ("busy", 0.2),
            ("no-answer", 0.2),
            ("reject", 0.1),
        ] {
            assert!(
                (share(name) - expected).abs() < 0.015,
                "{name}: {} vs {expected}",
                share(name)
            );
        }
    }

    #[test]
    fn zero_weights_are_never_drawn() {
        let mut only_busy = population(
            1,
            Shares {
                answer: 0.0,
                busy: 1.0,
                no_answer: 0.0,
                reject: 0.0,
                machine: 1.0,
            },
        );
        for _ in 0..1000 {
            assert_eq!(only_busy.draw_plan("x").behaviour, Behaviour::Busy);
        }
    }
}
