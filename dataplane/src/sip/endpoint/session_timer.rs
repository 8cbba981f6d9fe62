//! Session timers (RFC 4028): a call whose peer vanished without a BYE is ended when its
//! session is not refreshed in time.
//!
//! - Our INVITEs say `Supported: timer` and `Session-Expires: <interval>;refresher=uas`: we
//!   ask the callee to refresh (with a re-INVITE or UPDATE, which we answer anyway). A 2xx
//!   with `Session-Expires` starts the timer; without it there is none.
//! - When the 2xx makes us the refresher (`refresher=uac`), we refresh half-way through
//!   each interval (§10): by UPDATE carrying `Session-Expires` when the peer allows UPDATE,
//!   else by re-INVITE (`refresh_invite.rs`); its 2xx starts the next interval, a 481 or 408
//!   or no answer at all ends the call with a BYE.
//! - When the peer refreshes, each of its re-INVITEs or UPDATEs that carries
//!   `Session-Expires` starts a new interval, and our 2xx echoes the header with
//!   `Require: timer` (§9). Without a refresh before the interval minus
//!   min(32 s, interval / 3), we send BYE (§10).
//! - An incoming call whose INVITE carries `Session-Expires` is answered with it and
//!   `refresher=uac`: the caller refreshes, we watch.

use std::time::{Duration, Instant};

use super::{Endpoint, Owner, random_token};
use crate::api::{CallId, Disposition, Outcome};
use crate::sip::message::{HeaderName, Message, Method};
use crate::sip::transaction::ClientNonInvite;

/// The shortest interval we accept from a peer (RFC 4028 §4: Min-SE is at least 90 s).
pub const MIN_SESSION_EXPIRES: Duration = Duration::from_secs(90);

/// A `Session-Expires` value: the interval and who refreshes.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) struct SessionExpires {
    pub(super) interval: Duration,
    /// `Some(true)`: `refresher=uac`; `Some(false)`: `refresher=uas`; `None`: not said.
    pub(super) refresher_uac: Option<bool>,
}

impl SessionExpires {
    /// Reads `Session-Expires` (or its compact form `x`) of `message`.
    pub(super) fn of(message: &Message<'_>) -> Option<Self> {
        let value = message
            .header(HeaderName::Other("Session-Expires"))
            .or_else(|| message.header(HeaderName::Other("x")))?;
        let mut parts = value.split(';');
        let seconds: u64 = parts.next()?.trim().parse().ok()?;
        let interval = Duration::from_secs(seconds).max(MIN_SESSION_EXPIRES);
        let refresher_uac = parts.find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("refresher")
                .then(|| value.trim().eq_ignore_ascii_case("uac"))
        });
        Some(Self {
            interval,
            refresher_uac,
        })
    }

    /// The header value.
    pub(super) fn header(&self) -> String {
        let refresher = if self.refresher_uac == Some(false) {
            "uas"
        } else {
            "uac"
        };
        format!("{};refresher={refresher}", self.interval.as_secs())
    }
}

/// A running session timer.
pub(super) struct SessionTimer {
    interval: Duration,
    /// We send the refreshes (else the peer does and we watch).
    we_refresh: bool,
    /// When to refresh (we refresh) or give up (the peer does).
    pub(super) deadline: Instant,
    /// The branch of our refresh UPDATE in flight.
    refreshing: Option<String>,
}

/// When a peer that refreshes has run out of time (RFC 4028 §10).
fn expiry(now: Instant, interval: Duration) -> Instant {
    now + interval - (interval / 3).min(Duration::from_secs(32))
}

impl SessionTimer {
    fn new(now: Instant, interval: Duration, we_refresh: bool) -> Self {
        Self {
            interval,
            we_refresh,
            deadline: if we_refresh {
                now + interval / 2
            } else {
                expiry(now, interval)
            },
            refreshing: None,
        }
    }
}

impl Endpoint {
    /// A 2xx to our INVITE (or our 200 to a caller's): starts the call's session timer
    /// when `expires` names one.
    pub(super) fn start_session_timer(
        &mut self,
        now: Instant,
        id: CallId,
        expires: Option<SessionExpires>,
        we_refresh: bool,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.session_timer = expires.map(|e| SessionTimer::new(now, e.interval, we_refresh));
    }

    /// The peer refreshed the session with a request carrying `expires`: a new interval,
    /// with the refresher it names (`refresher=uac` there means the peer, the request's
    /// sender).
    pub(super) fn session_refreshed(&mut self, now: Instant, id: CallId, expires: SessionExpires) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let peer_refreshes = expires.refresher_uac != Some(false);
        call.session_timer = Some(SessionTimer::new(now, expires.interval, !peer_refreshes));
    }

    /// Runs the session timer of `id` at `now`: a refresh is due, or the session expired.
    pub(super) fn session_timeout(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.ended {
            call.session_timer = None;
            return;
        }
        let Some(timer) = call.session_timer.as_mut() else {
            return;
        };
        if timer.deadline > now {
            return;
        }
        if timer.we_refresh && timer.refreshing.is_none() {
            let interval = timer.interval;
            let use_update = call.peer_allows_update;
            let expires = SessionExpires {
                interval,
                refresher_uac: Some(true),
            }
            .header();
            let sent = if use_update {
                self.send_refresh_update(now, id, &expires)
            } else {
                self.send_refresh_invite(now, id, &expires)
            };
            let Some(timer) = self
                .calls
                .get_mut(&id)
                .and_then(|call| call.session_timer.as_mut())
            else {
                return;
            };
            match sent {
                Some(branch) => {
                    // If no answer comes, the session ends when it would have expired.
                    timer.deadline =
                        now + interval / 2 - (interval / 3).min(Duration::from_secs(32));
                    timer.refreshing = Some(branch.clone());
                    self.by_branch.insert(branch, id);
                }
                // Another offer is under way: try again shortly.
                None => timer.deadline = now + Duration::from_secs(1),
            }
            return;
        }
        let status = call.final_status;
        let interval = timer.interval.as_secs();
        call.session_timer = None;
        self.send_bye(now, id);
        self.end(
            id,
            Outcome {
                disposition: Disposition::Completed,
                sip_status: status,
                reason: format!(
                    "the session was not refreshed within its {interval} s interval (RFC 4028 \
                     session timer); the peer is presumed gone"
                ),
            },
        );
        self.touch(Owner::Call(id));
    }

    /// Our refresh re-INVITE got no response at all: end the session with BYE now.
    pub(super) fn refresh_timed_out(&mut self, now: Instant, id: CallId) {
        let Some(timer) = self
            .calls
            .get_mut(&id)
            .and_then(|call| call.session_timer.as_mut())
        else {
            return;
        };
        timer.refreshing = None;
        timer.deadline = now;
        timer.we_refresh = false;
        self.session_timeout(now, id);
    }

    /// Sends a refresh UPDATE for `id` carrying `session_expires`; its branch.
    fn send_refresh_update(
        &mut self,
        now: Instant,
        id: CallId,
        session_expires: &str,
    ) -> Option<String> {
        let local = self.config.local;
        let branch = format!("z9hG4bK{}", random_token(&mut self.rng));
        let call = self.calls.get_mut(&id)?;
        let dialog = call.dialog.as_mut()?;
        let mut update = Vec::new();
        dialog.write_request_with(
            &mut update,
            "UPDATE",
            local,
            &branch,
            &self.config.user_agent,
            &[("Session-Expires", session_expires), ("Supported", "timer")],
        );
        let destination = dialog.next_hop().unwrap_or(call.destination);
        let transport = super::switch_if_large(dialog, self.config.udp_mtu_switch, &mut update);
        call.pracks.push((
            branch.clone(),
            ClientNonInvite::new(now, self.timing, transport, destination, update),
        ));
        Some(branch)
    }

    /// The final response to our refresh (UPDATE or re-INVITE) `branch`: a 2xx starts the
    /// next interval; 481 or 408 means the session is gone (BYE); 491 retries after the
    /// glare delay; 405 or 501 to an UPDATE retries at once by re-INVITE; anything else
    /// leaves the deadline.
    pub(super) fn refresh_answered(&mut self, now: Instant, id: CallId, response: &Message<'_>) {
        let Some(status) = response.status().filter(|&s| s >= 200) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(timer) = call.session_timer.as_mut() else {
            return;
        };
        let branch = response.via().and_then(|v| v.branch());
        if timer.refreshing.as_deref() != branch {
            return;
        }
        timer.refreshing = None;
        match status {
            200..=299 => {
                let interval = SessionExpires::of(response).map_or(timer.interval, |e| e.interval);
                *timer = SessionTimer::new(now, interval, true);
            }
            408 | 481 => {
                timer.deadline = now;
                timer.we_refresh = false;
                self.session_timeout(now, id);
            }
            491 => {
                let delay = self.glare_delay(id);
                if let Some(timer) = self
                    .calls
                    .get_mut(&id)
                    .and_then(|call| call.session_timer.as_mut())
                {
                    timer.deadline = now + delay;
                }
                self.touch(Owner::Call(id));
            }
            405 | 501
                if response
                    .cseq()
                    .is_some_and(|c| c.method == Method::Other("UPDATE")) =>
            {
                call.peer_allows_update = false;
                timer.deadline = now;
                self.session_timeout(now, id);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse_message;

    fn expires(header: &str) -> Option<SessionExpires> {
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\n\
             From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             {header}Content-Length: 0\r\n\r\n"
        );
        let message = parse_message(text.as_bytes()).expect("parses");
        SessionExpires::of(&message)
    }

    #[test]
    fn session_expires_is_read_with_its_refresher_and_a_floor() {
        let uac = expires("Session-Expires: 1800;refresher=uac\r\n").expect("read");
        assert_eq!(uac.interval, Duration::from_secs(1800));
        assert_eq!(uac.refresher_uac, Some(true));
        assert_eq!(uac.header(), "1800;refresher=uac");
        let uas = expires("x: 600 ; refresher = UAS\r\n").expect("compact form");
        assert_eq!(uas.refresher_uac, Some(false));
        assert_eq!(uas.header(), "600;refresher=uas");
        let short = expires("Session-Expires: 10\r\n").expect("read");
        assert_eq!(
            short.interval, MIN_SESSION_EXPIRES,
            "below Min-SE is raised"
        );
        assert_eq!(short.refresher_uac, None);
        assert_eq!(expires("Session-Expires: soon\r\n"), None);
        assert_eq!(expires(""), None);
    }

    #[test]
    fn a_watched_session_expires_a_third_or_32_s_early() {
        let t0 = Instant::now();
        assert_eq!(
            expiry(t0, Duration::from_secs(1800)),
            t0 + Duration::from_secs(1768)
        );
        assert_eq!(
            expiry(t0, Duration::from_secs(90)),
            t0 + Duration::from_secs(60)
        );
    }
}
