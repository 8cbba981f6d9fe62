//! Blind transfer with REFER (RFC 3515), sans-IO: the REFER we send in a call's dialog and
//! the implicit `refer` subscription whose NOTIFYs carry the transferee's progress as
//! `message/sipfrag` bodies (RFC 3420), e.g. `SIP/2.0 180 Ringing` then `SIP/2.0 200 OK`.
//!
//! [`ReferClient`] is one transfer: the REFER's non-INVITE client transaction (RFC 3261
//! §17.1.2), the wait for a final sipfrag (bounded by the connect timeout once the REFER is
//! accepted), and the mapping of what arrives to a [`TransferOutcome`] or [`TransferError`].
//! The endpoint builds the REFER and routes responses and NOTIFYs here.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::api::{TransferError, TransferOutcome};
use crate::sip::message::{HeaderName, Message};
use crate::sip::transaction::{ClientNonInvite, NonInviteClientState, ResponseAction, Timing};
use crate::sip::transport::Transport;

/// The status line of a `message/sipfrag` body (RFC 3420 §2, RFC 3515 §2.4.5).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Sipfrag<'a> {
    /// The status code, 100–699.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: &'a str,
}

/// Reads the status line at the start of a sipfrag body; any headers after it are ignored.
/// `None` when the body does not start with `SIP/2.0 <code>` (leading blank lines allowed).
pub fn parse_sipfrag(body: &[u8]) -> Option<Sipfrag<'_>> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = body.get(start..)?;
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    // Only the status line is read: whatever follows it may be in any encoding.
    let line = std::str::from_utf8(rest.get(..end)?).ok()?.trim_end();
    let (version, rest) = line.split_once(' ')?;
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    let rest = rest.trim_start();
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let status: u16 = code.parse().ok()?;
    (100..=699).contains(&status).then_some(Sipfrag {
        status,
        reason: reason.trim(),
    })
}

/// The `Subscription-State` of a NOTIFY (RFC 6665 §8.2.3).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SubscriptionState {
    /// `active`.
    Active,
    /// `pending`.
    Pending,
    /// `terminated`: no more NOTIFYs will come.
    Terminated,
    /// Missing or an unknown value (treated as active).
    Other,
}

impl SubscriptionState {
    /// Reads a header value such as `terminated;reason=noresource`.
    pub fn parse(value: Option<&str>) -> Self {
        let state = value
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if state.eq_ignore_ascii_case("active") {
            Self::Active
        } else if state.eq_ignore_ascii_case("pending") {
            Self::Pending
        } else if state.eq_ignore_ascii_case("terminated") {
            Self::Terminated
        } else {
            Self::Other
        }
    }
}

/// Whether an `Event` header names the `refer` package (RFC 3515 §2.4.4; `refer;id=7` too).
pub fn is_refer_event(value: Option<&str>) -> bool {
    value
        .and_then(|v| v.split(';').next())
        .is_some_and(|package| package.trim().eq_ignore_ascii_case("refer"))
}

/// The transfer outcome a final sipfrag status means (VoiceXML 2.0 §2.3.7.2.2 results).
pub fn outcome_of(status: u16) -> TransferOutcome {
    match status {
        200..=299 => TransferOutcome::Transferred,
        486 | 600 => TransferOutcome::Busy,
        408 | 480 | 487 => TransferOutcome::NoAnswer,
        503 => TransferOutcome::NetworkBusy,
        _ => TransferOutcome::Unknown,
    }
}

/// A transfer's end, for the endpoint to report.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct TransferReport {
    /// The transfer's id (from the command).
    pub id: u32,
    /// The outcome, or why it could not be tried.
    pub result: Result<TransferOutcome, TransferError>,
    /// What happened, in words.
    pub detail: String,
}

/// Where a transfer stands.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ReferState {
    /// REFER sent, no final response yet.
    Requested,
    /// REFER accepted (or a NOTIFY came first); waiting for a final sipfrag.
    Accepted,
    /// The outcome is known (or the call ended); only the transaction may still run.
    Done,
}

/// What to answer a NOTIFY with, and the outcome it settled, if any.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NotifyAnswer {
    /// The response status (200, or 489/400 for a NOTIFY we cannot use).
    pub status: u16,
    /// The transfer's end, when this NOTIFY carried it.
    pub report: Option<TransferReport>,
}

/// What identifies one transfer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ReferParams {
    /// The transfer's id (from the command).
    pub id: u32,
    /// The Refer-To URI.
    pub refer_to: String,
    /// The REFER's Via branch.
    pub branch: String,
    /// How long after acceptance the final sipfrag may take (then `NoAnswer`).
    pub connect_timeout: Duration,
}

/// One blind transfer: its REFER transaction and its `refer` subscription.
#[derive(Clone, Debug)]
pub struct ReferClient {
    params: ReferParams,
    transaction: ClientNonInvite,
    state: ReferState,
    /// When the final sipfrag is due (armed when the REFER is accepted).
    deadline: Option<Instant>,
    /// The last provisional sipfrag, for the no-answer detail.
    progress: Option<u16>,
}

impl ReferClient {
    /// Starts the REFER transaction: `request` (built by the endpoint, top Via branch
    /// `params.branch`) is queued for `destination` on `transport`.
    pub fn new(
        now: Instant,
        timing: Timing,
        transport: Transport,
        destination: SocketAddr,
        request: Vec<u8>,
        params: ReferParams,
    ) -> Self {
        Self {
            params,
            transaction: ClientNonInvite::new(now, timing, transport, destination, request),
            state: ReferState::Requested,
            deadline: None,
            progress: None,
        }
    }

    /// What the REFER travels on.
    pub fn transport(&self) -> Transport {
        self.transaction.transport()
    }

    /// The transfer's id.
    pub fn id(&self) -> u32 {
        self.params.id
    }

    /// The REFER's Via branch.
    pub fn branch(&self) -> &str {
        &self.params.branch
    }

    /// The Refer-To URI.
    pub fn refer_to(&self) -> &str {
        &self.params.refer_to
    }

    /// Where the transfer stands.
    pub fn state(&self) -> ReferState {
        self.state
    }

    /// A response to the REFER (RFC 3515 §2.4.2): 2xx accepts, 3xx–6xx refuses.
    pub fn handle_response(
        &mut self,
        now: Instant,
        response: &Message<'_>,
    ) -> Option<TransferReport> {
        if self.transaction.handle_response(now, response) == ResponseAction::Absorb {
            return None;
        }
        let status = response.status()?;
        match (self.state, status) {
            (_, 100..=199) => None,
            (ReferState::Requested, 200..=299) => {
                self.accept(now);
                None
            }
            (ReferState::Requested, _) => {
                let reason = response.reason().unwrap_or("").trim();
                Some(
                    self.finish(
                        Err(TransferError::Refused { status }),
                        format!("REFER answered {status} {reason}")
                            .trim_end()
                            .to_owned(),
                    ),
                )
            }
            _ => None,
        }
    }

    /// A NOTIFY of this transfer's subscription (RFC 3515 §2.4.5). Every usable NOTIFY is
    /// answered 200; a final sipfrag settles the outcome.
    pub fn handle_notify(&mut self, now: Instant, notify: &Message<'_>) -> NotifyAnswer {
        let answer = |status| NotifyAnswer {
            status,
            report: None,
        };
        if !is_refer_event(notify.header(HeaderName::Other("Event"))) {
            return answer(489);
        }
        let subscription =
            SubscriptionState::parse(notify.header(HeaderName::Other("Subscription-State")));
        let sipfrag = parse_sipfrag(notify.body());
        if self.state == ReferState::Done {
            return answer(200);
        }
        let Some(sipfrag) = sipfrag else {
            if subscription != SubscriptionState::Terminated {
                return answer(400);
            }
            let report = self.finish(
                Ok(TransferOutcome::Unknown),
                "the refer subscription ended without a readable sipfrag".to_owned(),
            );
            return NotifyAnswer {
                status: 200,
                report: Some(report),
            };
        };
        if self.state == ReferState::Requested {
            // The NOTIFY overtook the 202 (RFC 3515 §2.4.4 allows it): the REFER was accepted.
            self.accept(now);
        }
        let report = if sipfrag.status >= 200 {
            let detail = format!("NOTIFY sipfrag {} {}", sipfrag.status, sipfrag.reason);
            Some(self.finish(Ok(outcome_of(sipfrag.status)), detail.trim_end().to_owned()))
        } else if subscription == SubscriptionState::Terminated {
            Some(self.finish(
                Ok(TransferOutcome::Unknown),
                format!(
                    "the refer subscription ended after sipfrag {} without a final status",
                    sipfrag.status
                ),
            ))
        } else {
            self.progress = Some(sipfrag.status);
            None
        };
        NotifyAnswer {
            status: 200,
            report,
        }
    }

    /// Runs expired timers: Timer F of the REFER (no response), then the connect timeout.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TransferReport> {
        let timed_out = self.transaction.handle_timeout(now);
        if timed_out && self.state == ReferState::Requested {
            return Some(self.finish(
                Err(TransferError::NoResponse),
                "no response to REFER (Timer F)".to_owned(),
            ));
        }
        if self.state == ReferState::Accepted && self.deadline.is_some_and(|d| d <= now) {
            let detail = match self.progress {
                Some(status) => format!(
                    "no final NOTIFY within {} ms (last sipfrag {status})",
                    self.params.connect_timeout.as_millis()
                ),
                None => format!(
                    "no NOTIFY within {} ms",
                    self.params.connect_timeout.as_millis()
                ),
            };
            return Some(self.finish(Ok(TransferOutcome::NoAnswer), detail));
        }
        None
    }

    /// The call ended: no outcome will be reported; the REFER transaction runs out.
    pub fn abandon(&mut self) {
        self.state = ReferState::Done;
        self.deadline = None;
    }

    /// Writes the REFER (or its retransmission) into `buf` when one is due.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        self.transaction.poll_transmit(buf)
    }

    /// The next deadline: the transaction's timers or the connect timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.transaction.poll_timeout(), self.deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Settled and the REFER transaction is over: nothing left to run.
    pub fn is_finished(&self) -> bool {
        self.state == ReferState::Done
            && self.transaction.state() == NonInviteClientState::Terminated
    }

    fn accept(&mut self, now: Instant) {
        self.state = ReferState::Accepted;
        self.deadline = Some(now + self.params.connect_timeout);
    }

    fn finish(
        &mut self,
        result: Result<TransferOutcome, TransferError>,
        detail: String,
    ) -> TransferReport {
        self.state = ReferState::Done;
        self.deadline = None;
        TransferReport {
            id: self.params.id,
            result,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_message;

    fn client(t0: Instant) -> ReferClient {
        ReferClient::new(
            t0,
            Timing::default(),
            Transport::Udp,
            "192.0.2.4:5070".parse().unwrap(),
            b"REFER sip:bob@192.0.2.4:5070 SIP/2.0\r\n\r\n".to_vec(),
            ReferParams {
                id: 9,
                refer_to: "sip:agent@192.0.2.9".into(),
                branch: "z9hG4bKrefer".into(),
                connect_timeout: Duration::from_secs(20),
            },
        )
    }

    fn response(status: &str) -> Vec<u8> {
        format!("SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKrefer\r\nCSeq: 2 REFER\r\n\r\n").into_bytes()
    }

    fn notify(event: &str, state: &str, body: &str) -> Vec<u8> {
        format!(
            "NOTIFY sip:outdial@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKn\r\n\
             From: <sip:bob@192.0.2.4>;tag=R\r\nTo: <sip:outdial@192.0.2.1>;tag=L\r\nCall-ID: c\r\n\
             CSeq: 1 NOTIFY\r\nEvent: {event}\r\nSubscription-State: {state}\r\n\
             Content-Type: message/sipfrag\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn feed_notify(
        refer: &mut ReferClient,
        now: Instant,
        event: &str,
        state: &str,
        body: &str,
    ) -> NotifyAnswer {
        let bytes = notify(event, state, body);
        let message = parse_message(&bytes).unwrap();
        refer.handle_notify(now, &message)
    }

    #[test]
    fn sipfrag_status_lines_parse_and_junk_does_not() {
        assert_eq!(
            parse_sipfrag(b"SIP/2.0 486 Busy Here\r\n"),
            Some(Sipfrag {
                status: 486,
                reason: "Busy Here"
            })
        );
        assert_eq!(
            parse_sipfrag(b"\r\nSIP/2.0 200 OK\r\nContact: <sip:a@b>\r\n\r\n").map(|f| f.status),
            Some(200)
        );
        assert_eq!(parse_sipfrag(b"SIP/2.0 100").map(|f| f.reason), Some(""));
        assert_eq!(
            parse_sipfrag(b"SIP/2.0 180 Ringing\r\nSubject: \xe9t\xe9\r\n").map(|f| f.status),
            Some(180),
            "bytes after the status line do not matter"
        );
        for junk in [
            &b""[..],
            b"HTTP/1.1 200 OK",
            b"SIP/2.0 20 OK",
            b"SIP/2.0 2000 OK",
            b"SIP/2.0 099 Low",
            b"SIP/2.0 700 High",
            b"SIP/2.0 2x0 OK",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_sipfrag(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn event_and_subscription_state_headers_are_read_leniently() {
        assert!(is_refer_event(Some("refer")));
        assert!(is_refer_event(Some("Refer;id=93809824")));
        assert!(!is_refer_event(Some("presence")));
        assert!(!is_refer_event(None));
        assert_eq!(
            SubscriptionState::parse(Some("terminated;reason=noresource")),
            SubscriptionState::Terminated
        );
        assert_eq!(
            SubscriptionState::parse(Some(" Active ;expires=60")),
            SubscriptionState::Active
        );
        assert_eq!(SubscriptionState::parse(None), SubscriptionState::Other);
    }

    #[test]
    fn final_statuses_map_to_voicexml_outcomes() {
        assert_eq!(outcome_of(200), TransferOutcome::Transferred);
        assert_eq!(outcome_of(202), TransferOutcome::Transferred);
        for busy in [486, 600] {
            assert_eq!(outcome_of(busy), TransferOutcome::Busy);
        }
        for no_answer in [408, 480, 487] {
            assert_eq!(outcome_of(no_answer), TransferOutcome::NoAnswer);
        }
        assert_eq!(outcome_of(503), TransferOutcome::NetworkBusy);
        assert_eq!(outcome_of(404), TransferOutcome::Unknown);
    }

    #[test]
    fn accepted_then_trying_then_ok_is_transferred() {
        let t0 = Instant::now();
        let mut refer = client(t0);
        assert!(refer.poll_transmit(&mut Vec::new()).is_some());
        let accepted = response("202 Accepted");
        assert_eq!(
            refer.handle_response(t0, &parse_message(&accepted).unwrap()),
            None
        );
        assert_eq!(refer.state(), ReferState::Accepted);
        let t1 = t0 + Duration::from_secs(1);
        let trying = feed_notify(&mut refer, t1, "refer", "active", "SIP/2.0 100 Trying\r\n");
        assert_eq!((trying.status, trying.report), (200, None));
        let ok = feed_notify(
            &mut refer,
            t1,
            "refer",
            "terminated;reason=noresource",
            "SIP/2.0 200 OK\r\n",
        );
        assert_eq!(ok.status, 200);
        let report = ok.report.unwrap();
        assert_eq!(
            (report.id, report.result),
            (9, Ok(TransferOutcome::Transferred))
        );
        assert!(report.detail.contains("200 OK"), "{}", report.detail);
        // A late NOTIFY is still answered, and settles nothing.
        let late = feed_notify(&mut refer, t1, "refer", "terminated", "SIP/2.0 200 OK");
        assert_eq!((late.status, late.report), (200, None));
        // The transaction runs out Timer K (T4) and then the transfer is forgotten.
        assert!(!refer.is_finished());
        refer.handle_timeout(t0 + Duration::from_secs(5));
        assert!(refer.is_finished());
    }

    #[test]
    fn a_busy_sipfrag_is_busy_and_a_notify_before_the_202_counts() {
        let t0 = Instant::now();
        let mut refer = client(t0);
        let busy = feed_notify(
            &mut refer,
            t0,
            "refer",
            "terminated",
            "SIP/2.0 486 Busy Here",
        );
        assert_eq!(busy.report.unwrap().result, Ok(TransferOutcome::Busy));
        let accepted = response("202 Accepted");
        assert_eq!(
            refer.handle_response(t0, &parse_message(&accepted).unwrap()),
            None,
            "the 202 after the outcome changes nothing"
        );
    }

    #[test]
    fn unusable_notifies_are_refused_and_settle_nothing() {
        let t0 = Instant::now();
        let mut refer = client(t0);
        let wrong_event = feed_notify(&mut refer, t0, "presence", "active", "SIP/2.0 200 OK");
        assert_eq!((wrong_event.status, wrong_event.report), (489, None));
        let garbled = feed_notify(&mut refer, t0, "refer", "active", "hello");
        assert_eq!((garbled.status, garbled.report), (400, None));
        assert_eq!(refer.state(), ReferState::Requested);
        let ended = feed_notify(&mut refer, t0, "refer", "terminated", "hello");
        assert_eq!(ended.status, 200);
        assert_eq!(ended.report.unwrap().result, Ok(TransferOutcome::Unknown));
    }

    #[test]
    fn a_refused_refer_reports_its_status() {
        let t0 = Instant::now();
        let mut refer = client(t0);
        let trying = response("100 Trying");
        assert_eq!(
            refer.handle_response(t0, &parse_message(&trying).unwrap()),
            None
        );
        let refused = response("405 Method Not Allowed");
        let report = refer
            .handle_response(t0, &parse_message(&refused).unwrap())
            .unwrap();
        assert_eq!(report.result, Err(TransferError::Refused { status: 405 }));
        assert_eq!(report.detail, "REFER answered 405 Method Not Allowed");
        assert_eq!(refer.state(), ReferState::Done);
    }

    #[test]
    fn no_response_is_timer_f_and_no_final_notify_is_no_answer() {
        let t0 = Instant::now();
        let mut refer = client(t0);
        let mut report = None;
        while report.is_none() {
            let Some(at) = refer.poll_timeout() else {
                break;
            };
            report = refer.handle_timeout(at);
            if report.is_some() {
                assert_eq!(at - t0, Duration::from_secs(32), "Timer F is 64*T1");
            }
        }
        assert_eq!(report.unwrap().result, Err(TransferError::NoResponse));
        assert!(refer.is_finished());

        let mut refer = client(t0);
        let accepted = response("202 Accepted");
        let t1 = t0 + Duration::from_secs(1);
        refer.handle_response(t1, &parse_message(&accepted).unwrap());
        feed_notify(&mut refer, t1, "refer", "active", "SIP/2.0 180 Ringing");
        assert_eq!(refer.handle_timeout(t1 + Duration::from_secs(19)), None);
        let report = refer.handle_timeout(t1 + Duration::from_secs(20)).unwrap();
        assert_eq!(report.result, Ok(TransferOutcome::NoAnswer));
        assert!(report.detail.contains("180"), "{}", report.detail);
    }

    #[test]
    fn an_abandoned_transfer_reports_nothing() {
        let t0 = Instant::now();
        let mut refer = client(t0);
        let accepted = response("202 Accepted");
        refer.handle_response(t0, &parse_message(&accepted).unwrap());
        refer.abandon();
        assert_eq!(refer.handle_timeout(t0 + Duration::from_secs(60)), None);
        assert!(refer.is_finished());
    }
}
