//! Registration with a registrar (RFC 3261 §10.2), sans-IO: one address-of-record bound to
//! our Contact, refreshed before it expires, answered through digest challenges, and tried
//! again after a failure with a growing delay.
//!
//! Drive it like the other machines: after `new`, `handle_response` and `handle_timeout`,
//! drain `poll_transmit` and `poll_event`, then sleep until `poll_timeout`. Responses are
//! matched to it by the top Via branch ([`Registration::branch`]).
//!
//! The endpoint keeps one per `Command::Register` (`Endpoint::register`); control sends one
//! to core 0 for each trunk with `register = true`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::auth::{Authenticator, Credentials, DigestRequest};
use super::message::print::Writer;
use super::message::{HeaderName, Message};
use super::transaction::{ClientNonInvite, ResponseAction, Timing};

/// The longest binding lifetime believed; a longer grant is refreshed as if it were this.
pub const MAX_GRANTED: Duration = Duration::from_secs(86_400);
/// First delay before registering again after a failure; doubles up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(30);
/// Longest delay between attempts after failures.
pub const MAX_RETRY: Duration = Duration::from_secs(1800);
/// A binding is refreshed when this much of it is left (or half of it, if shorter).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// What to register.
#[derive(Clone, Debug)]
pub struct RegistrationConfig {
    /// Request-URI: the registrar's domain, e.g. `sip:carrier.example`.
    pub registrar: String,
    /// The address-of-record (To and From), e.g. `sip:acct-1234@carrier.example`.
    pub aor: String,
    /// Our Contact URI, e.g. `sip:acct-1234@192.0.2.1:5060`.
    pub contact: String,
    /// Where REGISTERs are sent.
    pub destination: SocketAddr,
    /// The registrar's other addresses, tried in turn when one does not answer or says 503
    /// (RFC 3263 §4.3); the list starts over after a retry delay.
    pub alternatives: Vec<SocketAddr>,
    /// Our address for Via.
    pub local: SocketAddr,
    /// The binding lifetime asked for.
    pub expires: Duration,
    /// Digest credentials for 401/407.
    pub credentials: Option<Credentials>,
    /// User-Agent.
    pub user_agent: String,
}

/// What the registration reports.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum RegistrationEvent {
    /// The registrar accepted the binding for this long.
    Registered {
        /// The lifetime granted.
        expires: Duration,
    },
    /// The attempt failed; another follows after `retry_in`.
    Failed {
        /// The final status, when one came (`None`: no answer, Timer F).
        status: Option<u16>,
        /// What happened.
        reason: String,
        /// When the next attempt starts.
        retry_in: Duration,
    },
    /// The binding was removed (a 2xx to `Expires: 0`), or removing it failed; either way
    /// nothing more is sent.
    Unregistered {
        /// The final status, when one came.
        status: Option<u16>,
        /// What happened.
        reason: String,
    },
}

/// One registration binding, kept alive.
pub struct Registration {
    config: RegistrationConfig,
    timing: Timing,
    rng: SmallRng,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The expiry asked for in the next REGISTER (raised by 423 Min-Expires).
    asking: Duration,
    transaction: Option<(String, ClientNonInvite)>,
    auth: Authenticator,
    /// When to send the next REGISTER (refresh or retry), when no transaction is running.
    next_attempt: Option<Instant>,
    failures: u32,
    events: VecDeque<RegistrationEvent>,
    /// Unregistering: no refresh or retry after this REGISTER's outcome.
    ending: bool,
    /// Where REGISTERs go now: `config.destination` (0) or an alternative (1..).
    target: usize,
}

impl Registration {
    /// Starts registering at once. `seed` drives the Call-ID, tags, branches and cnonces.
    pub fn new(now: Instant, config: RegistrationConfig, timing: Timing, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let call_id = format!(
            "{:016x}{:016x}@{}",
            rng.random::<u64>(),
            rng.random::<u64>(),
            config.local.ip()
        );
        let from_tag = format!("{:016x}", rng.random::<u64>());
        let mut registration = Self {
            auth: Authenticator::new(config.credentials.clone()),
            asking: config.expires,
            config,
            timing,
            rng,
            call_id,
            from_tag,
            cseq: 0,
            transaction: None,
            next_attempt: None,
            failures: 0,
            events: VecDeque::new(),
            ending: false,
            target: 0,
        };
        registration.auth.start_request();
        registration.send(now, &[]);
        registration
    }

    /// Where the REGISTERs go now: the registrar, whose INVITEs are incoming calls.
    pub fn destination(&self) -> SocketAddr {
        match self.target {
            0 => self.config.destination,
            n => self
                .config
                .alternatives
                .get(n - 1)
                .copied()
                .unwrap_or(self.config.destination),
        }
    }

    /// Whether `ip` is one of the registrar's addresses (its INVITEs are incoming calls).
    pub fn is_registrar(&self, ip: std::net::IpAddr) -> bool {
        std::iter::once(&self.config.destination)
            .chain(&self.config.alternatives)
            .any(|a| a.ip() == ip)
    }

    /// Removes the binding (RFC 3261 §10.2.2: `Expires: 0`), through challenges as usual;
    /// nothing is sent again after its outcome, [`RegistrationEvent::Unregistered`].
    pub fn unregister(&mut self, now: Instant) {
        if self.ending {
            return;
        }
        self.ending = true;
        self.asking = Duration::ZERO;
        self.next_attempt = None;
        self.auth.start_request();
        self.send(now, &[]);
    }

    /// The branch of the REGISTER in flight, to route its responses here.
    pub fn branch(&self) -> Option<&str> {
        self.transaction.as_ref().map(|(branch, _)| branch.as_str())
    }

    /// Feeds a response whose top Via branch is [`Registration::branch`].
    pub fn handle_response(&mut self, now: Instant, response: &Message<'_>) {
        let Some((branch, transaction)) = self.transaction.as_mut() else {
            return;
        };
        if response.via().and_then(|v| v.branch()) != Some(branch.as_str())
            || transaction.handle_response(now, response) != ResponseAction::Deliver
        {
            return;
        }
        let Some(status) = response.status() else {
            return;
        };
        match status {
            100..=199 => {}
            200..=299 if self.ending => {
                self.transaction = None;
                self.events.push_back(RegistrationEvent::Unregistered {
                    status: Some(status),
                    reason: format!("{status} {}", response.reason().unwrap_or("").trim()),
                });
            }
            200..=299 => {
                self.transaction = None;
                self.failures = 0;
                let granted = self.granted(response);
                let margin = REFRESH_MARGIN.min(granted / 2);
                self.next_attempt = Some(now + granted.saturating_sub(margin));
                self.events
                    .push_back(RegistrationEvent::Registered { expires: granted });
            }
            401 | 407 => {
                let request = DigestRequest {
                    method: "REGISTER",
                    uri: &self.config.registrar,
                    body: b"",
                };
                let cnonce = format!("{:016x}", self.rng.random::<u64>());
                match self.auth.respond(response, &request, &cnonce) {
                    Ok(headers) => self.send(now, &headers),
                    Err(e) => self.fail(now, Some(status), format!("{status}: {e}"), None),
                }
            }
            // A removal (Expires: 0) cannot be too brief; a 423 to it is a failure.
            423 if self.ending => self.fail(now, Some(423), "423 to Expires: 0".to_owned(), None),
            423 => {
                let min = response
                    .header(HeaderName::Other("Min-Expires"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .filter(|&min| min > self.asking && min <= Duration::from_secs(86_400));
                match min {
                    Some(min) => {
                        self.asking = min;
                        self.auth.start_request();
                        self.send(now, &[]);
                    }
                    None => self.fail(
                        now,
                        Some(423),
                        "423 without a usable Min-Expires".to_owned(),
                        None,
                    ),
                }
            }
            _ => {
                let retry_after = response
                    .header(HeaderName::Other("Retry-After"))
                    .and_then(|v| v.split(';').next()?.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let reason = response.reason().unwrap_or("").trim();
                self.fail(now, Some(status), format!("{status} {reason}"), retry_after);
            }
        }
    }

    /// Runs the transaction's timers and starts a due refresh or retry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, transaction)) = self.transaction.as_mut()
            && transaction.handle_timeout(now)
        {
            let reason = format!("no response from {} (Timer F)", self.config.destination);
            self.fail(now, None, reason, None);
        }
        if self.next_attempt.is_some_and(|at| at <= now) {
            self.next_attempt = None;
            self.auth.start_request();
            self.send(now, &[]);
        }
    }

    /// The next REGISTER (or its retransmission).
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.transaction.as_mut()?.1.poll_transmit(buf)
    }

    /// When `handle_timeout` should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let transaction = self
            .transaction
            .as_ref()
            .and_then(|(_, t)| t.poll_timeout());
        [transaction, self.next_attempt].into_iter().flatten().min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }

    /// The lifetime the registrar granted: our Contact's `expires`, else `Expires`, else
    /// what we asked for; at most [`MAX_GRANTED`] (an absurd value would put the refresh
    /// past the end of time; refreshing a longer binding early does no harm).
    fn granted(&self, response: &Message<'_>) -> Duration {
        let ours = response
            .contact()
            .filter(|c| c.uri.as_str() == self.config.contact)
            .and_then(|c| c.param("expires").flatten())
            .and_then(|v| v.parse::<u64>().ok());
        let header = response
            .header(HeaderName::Other("Expires"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        ours.or(header)
            .map(Duration::from_secs)
            .filter(|d| !d.is_zero())
            .map_or(self.asking, |granted| granted.min(MAX_GRANTED))
    }

    fn fail(&mut self, now: Instant, status: Option<u16>, reason: String, after: Option<Duration>) {
        self.transaction = None;
        // RFC 3263 §4.3: silence or 503 moves on to the registrar's next address at once.
        let next_address =
            matches!(status, None | Some(503)) && self.target < self.config.alternatives.len();
        if next_address {
            self.target += 1;
            self.auth.start_request();
            self.send(now, &[]);
            return;
        }
        self.target = 0;
        if self.ending {
            self.events
                .push_back(RegistrationEvent::Unregistered { status, reason });
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let backoff = FIRST_RETRY
            .saturating_mul(1 << self.failures.saturating_sub(1).min(10))
            .min(MAX_RETRY);
        let retry_in = after.map_or(backoff, |after| after.clamp(FIRST_RETRY, MAX_RETRY));
        self.next_attempt = Some(now + retry_in);
        self.events.push_back(RegistrationEvent::Failed {
            status,
            reason,
            retry_in,
        });
    }

    /// Sends a REGISTER with the next CSeq and `auth` credentials headers.
    fn send(&mut self, now: Instant, auth: &[(&'static str, String)]) {
        self.cseq = self.cseq.saturating_add(1);
        let branch = format!("z9hG4bK{:016x}", self.rng.random::<u64>());
        let config = &self.config;
        let mut request = Vec::new();
        let mut writer = Writer::request(&mut request, "REGISTER", &config.registrar);
        writer
            .header_fmt(
                "Via",
                format_args!("SIP/2.0/UDP {};branch={branch};rport", config.local),
            )
            .header("Max-Forwards", "70")
            .header_fmt(
                "From",
                format_args!("<{}>;tag={}", config.aor, self.from_tag),
            )
            .header_fmt("To", format_args!("<{}>", config.aor))
            .header("Call-ID", &self.call_id)
            .header_fmt("CSeq", format_args!("{} REGISTER", self.cseq))
            .header_fmt("Contact", format_args!("<{}>", config.contact))
            .header_fmt("Expires", format_args!("{}", self.asking.as_secs()));
        for (name, value) in auth {
            writer.header(name, value);
        }
        writer.header("User-Agent", &config.user_agent);
        writer.finish(None, b"");
        let destination = self.destination();
        // Registrations stay on UDP (a REGISTER is far below the MTU switch).
        let transaction = ClientNonInvite::new(
            now,
            self.timing,
            crate::sip::transport::Transport::Udp,
            destination,
            request,
        );
        self.transaction = Some((branch, transaction));
    }
}

#[cfg(test)]
mod tests;
